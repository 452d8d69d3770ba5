-- The outbox: every transition is inserted in the transaction that makes it, and
-- published from here, so that a Redis outage, a lost job or a killed process delays a
-- published transition but never loses it. `published_at` stays NULL until the worker
-- has published the row.
ALTER TABLE presence_events ADD COLUMN published_at TIMESTAMPTZ;
-- Rows recorded before the outbox were published by the worker that recorded them.
UPDATE presence_events SET published_at = recorded_at;
CREATE INDEX presence_events_unpublished_idx ON presence_events (id) WHERE published_at IS NULL;

-- Rows are no longer written by redelivered jobs, so nothing needs de-duplicating; a
-- user's history is read in id order, which is the order their transitions happened in
-- (each is inserted under the user's row lock).
DROP INDEX presence_events_user_at_key;
CREATE INDEX presence_events_user_id_idx ON presence_events (user_id, id);

-- Revocations missed while an API replica's LISTEN connection was down are looked up by
-- time when it reconnects.
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
