-- When the row's presence (status or last_seen) was last written, by the database clock:
-- what `all-users?changed_since=` pages through, so that a poll for changes costs in
-- proportion to the changes, not to the number of users.
ALTER TABLE users ADD COLUMN changed_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX users_changed_at_idx ON users (changed_at);
