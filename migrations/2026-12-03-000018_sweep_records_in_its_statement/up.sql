-- The sweep disconnects the users silent for a window and records what others are then
-- shown of them in one statement (see `sweeps::disconnect_silent`), so each such user's
-- row is written once, not three times (disconnected, locked, told), and recording an
-- event costs less.

-- What others are shown as the `last_seen` of a user: frozen, while they are invisible,
-- at the moment they went invisible. The Rust rule is `ShownRow::from_facts`;
-- `tests/rule.rs` proves the two agree. Inlined by PostgreSQL.
CREATE FUNCTION presence_public_last_seen(
    availability text, invisible_since timestamptz, last_seen timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN availability = 'invisible' THEN invisible_since ELSE last_seen END $$;

-- Each new event wrote four index entries; two serve nobody. Events are found by id only
-- while unnumbered (the partial index of unnumbered ids), and by revision only once
-- numbered.
DROP INDEX presence_events_id_idx;
DROP INDEX presence_events_revision_idx;
CREATE INDEX presence_events_revision_idx ON presence_events (revision)
    WHERE revision IS NOT NULL;

-- The foreign key looked up every new event's user once more, row by row: half of what
-- recording a mass sweep's transitions cost. Every event is inserted by the transaction
-- that has just written or locked its user's row, so that lookup can never fail. Deleting
-- a user still deletes their history, once per statement.
ALTER TABLE presence_events DROP CONSTRAINT presence_events_user_id_fkey;

CREATE FUNCTION delete_history_of_deleted_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM presence_events e USING deleted_users d WHERE e.user_id = d.id;
    RETURN NULL;
END $$;

CREATE TRIGGER users_deleted_history AFTER DELETE ON users
    REFERENCING OLD TABLE AS deleted_users FOR EACH STATEMENT
    EXECUTE FUNCTION delete_history_of_deleted_users();
