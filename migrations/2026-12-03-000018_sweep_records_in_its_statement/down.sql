DROP TRIGGER users_deleted_history ON users;
DROP FUNCTION delete_history_of_deleted_users();
ALTER TABLE presence_events ADD CONSTRAINT presence_events_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
DROP INDEX presence_events_revision_idx;
CREATE INDEX presence_events_revision_idx ON presence_events (revision);
CREATE INDEX presence_events_id_idx ON presence_events (id);
DROP FUNCTION presence_public_last_seen(text, timestamptz, timestamptz);
