DROP INDEX sessions_revoked_at_idx;
DROP INDEX presence_events_user_id_idx;
DROP INDEX presence_events_unpublished_idx;
ALTER TABLE presence_events DROP COLUMN published_at;
CREATE UNIQUE INDEX presence_events_user_at_key ON presence_events (user_id, at, to_status);
