-- What others are shown of a user besides their presence and `last_seen` (the custom
-- status, the dnd end) becomes one JSON value, the Rust type `StatusDetails`: as last told
-- (`users.published_details`) and in each event (`presence_events.details`). The outbox
-- compares, stores and publishes it whole, so a field others are shown is added in Rust
-- alone. `NULL` is no details, what others are shown of an offline user: the sweep's
-- events store none.
ALTER TABLE users ADD COLUMN published_details JSONB;
UPDATE users SET published_details = jsonb_strip_nulls(jsonb_build_object(
        'status_text', published_status_text, 'status_emoji', published_status_emoji,
        'dnd_until', published_dnd_until))
    WHERE (published_status_text, published_status_emoji, published_dnd_until)
          IS DISTINCT FROM (NULL, NULL, NULL);
ALTER TABLE users DROP COLUMN published_status_text, DROP COLUMN published_status_emoji,
    DROP COLUMN published_dnd_until;

-- presence_events is made anew, not altered: a column dropped from a partitioned table
-- stays in its row layout while the partitions made later have none, and every row
-- inserted would then be converted from one layout to the other (a mass sweep measured
-- 8 % slower so). The rows are copied into partitions of the same names and bounds.
DROP VIEW unpublished_events;
ALTER TABLE presence_events RENAME TO presence_events_old;
ALTER INDEX presence_events_revision_idx RENAME TO presence_events_old_revision_idx;
ALTER INDEX presence_events_unnumbered_idx RENAME TO presence_events_old_unnumbered_idx;
ALTER INDEX presence_events_user_id_idx RENAME TO presence_events_old_user_id_idx;

-- The old layout less the three columns, with its defaults, identity and checks: a
-- table made LIKE one with dropped columns has none.
CREATE TABLE presence_events_layout
    (LIKE presence_events_old INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS);
ALTER TABLE presence_events_layout DROP COLUMN status_text, DROP COLUMN status_emoji,
    DROP COLUMN dnd_until, ADD COLUMN details JSONB;
CREATE TABLE presence_events (
    LIKE presence_events_layout INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS
) PARTITION BY RANGE (at);
DROP TABLE presence_events_layout;

DO $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'presence_events_old'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', part.name, part.name || '_old');
        EXECUTE format('CREATE TABLE %I PARTITION OF presence_events %s', part.name, part.bound);
    END LOOP;
END
$$;

INSERT INTO presence_events (id, user_id, from_status, to_status, reason, at, recorded_at,
                             revision_at, last_seen, revision, details)
    OVERRIDING SYSTEM VALUE
    SELECT id, user_id, from_status, to_status, reason, at, recorded_at, revision_at,
           last_seen, revision,
           CASE WHEN (status_text, status_emoji, dnd_until) IS DISTINCT FROM (NULL, NULL, NULL)
                THEN jsonb_strip_nulls(jsonb_build_object('status_text', status_text,
                         'status_emoji', status_emoji, 'dnd_until', dnd_until))
           END
    FROM presence_events_old;
-- Ids go on from the last one given, not from the last one kept.
SELECT setval(pg_get_serial_sequence('presence_events', 'id'),
              coalesce(pg_sequence_last_value(pg_get_serial_sequence('presence_events_old', 'id')), 1),
              pg_sequence_last_value(pg_get_serial_sequence('presence_events_old', 'id')) IS NOT NULL);
DROP TABLE presence_events_old;

CREATE INDEX presence_events_revision_idx ON presence_events (revision)
    WHERE revision IS NOT NULL;
CREATE INDEX presence_events_unnumbered_idx ON presence_events (id) WHERE revision IS NULL;
CREATE INDEX presence_events_user_id_idx ON presence_events (user_id, id);
CREATE INDEX presence_events_default_at_idx ON presence_events_default (at);

CREATE VIEW unpublished_events AS
    SELECT * FROM presence_events WHERE revision IS NULL
    UNION ALL
    SELECT * FROM presence_events
    WHERE revision > (SELECT sent_through FROM event_publication);
