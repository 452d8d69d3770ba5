-- presence_events gains a row per transition, millions a day at a million users, and its
-- indexes sit under every write and every resume. It becomes a table partitioned by the
-- time of the transition (`at`), so the worker drops whole partitions past the retention
-- (no DELETE, no bloat, no vacuum of dead rows) and new rows only ever touch the newest
-- partition's indexes.
--
-- `event_partitions` lists the partitions the worker made, with their ranges: it makes
-- them ahead of time (prepare_event_partitions), each a width long. What finds no
-- partition (nobody made one in time) lands in the default partition, so a write never
-- fails for want of one; rows there are deleted past the retention, in batches.
DROP VIEW unpublished_events;
ALTER TABLE presence_events RENAME TO presence_events_unpartitioned;
ALTER INDEX presence_events_pkey RENAME TO presence_events_unpartitioned_pkey;
ALTER INDEX presence_events_revision_key RENAME TO presence_events_unpartitioned_revision_key;
ALTER INDEX presence_events_unnumbered_idx RENAME TO presence_events_unpartitioned_unnumbered_idx;
ALTER INDEX presence_events_user_id_idx RENAME TO presence_events_unpartitioned_user_id_idx;

CREATE TABLE presence_events (
    LIKE presence_events_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS,
    CONSTRAINT presence_events_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) PARTITION BY RANGE (at);
-- A key must hold the partitioning column; ids and revisions come from sequences, so
-- they are unique without one.
CREATE INDEX presence_events_id_idx ON presence_events (id);
CREATE INDEX presence_events_revision_idx ON presence_events (revision);
CREATE INDEX presence_events_unnumbered_idx ON presence_events (id) WHERE revision IS NULL;
CREATE INDEX presence_events_user_id_idx ON presence_events (user_id, id);

CREATE TABLE presence_events_default PARTITION OF presence_events DEFAULT;
-- For the retention's batches, and for a new partition to start after what is here.
CREATE INDEX presence_events_default_at_idx ON presence_events_default (at);

CREATE TABLE event_partitions (
    name TEXT PRIMARY KEY,
    starts TIMESTAMPTZ NOT NULL,
    ends TIMESTAMPTZ NOT NULL UNIQUE,
    -- When it passed the retention: it is dropped a grace later (see drop_event_partitions).
    condemned_at TIMESTAMPTZ,
    CHECK (starts < ends)
);

-- Everything so far, in one partition that ends now.
DO $$
BEGIN
    EXECUTE format(
        'CREATE TABLE presence_events_history PARTITION OF presence_events '
        'FOR VALUES FROM (MINVALUE) TO (%L)', now());
    INSERT INTO event_partitions (name, starts, ends)
    VALUES ('presence_events_history', '-infinity', now());
END
$$;
INSERT INTO presence_events OVERRIDING SYSTEM VALUE SELECT * FROM presence_events_unpartitioned;
SELECT setval(pg_get_serial_sequence('presence_events', 'id'),
              greatest(1, (SELECT max(id) FROM presence_events_unpartitioned)));
DROP TABLE presence_events_unpartitioned;

-- Revisions at or below this went with a dropped partition: a resume from before it
-- cannot be answered from the log.
ALTER TABLE event_publication ADD COLUMN dropped_through BIGINT NOT NULL DEFAULT 0;

CREATE VIEW unpublished_events AS
    SELECT * FROM presence_events WHERE revision IS NULL
    UNION ALL
    SELECT * FROM presence_events
    WHERE revision > (SELECT sent_through FROM event_publication);

-- Makes the partitions from the last one's end (or from what the default partition
-- holds, if later) until `at` + `ahead`, each ending on a multiple of `width` since the
-- epoch; returns how many it made. Serialised across workers by an advisory lock.
CREATE FUNCTION prepare_event_partitions(at TIMESTAMPTZ, width INTERVAL, ahead INTERVAL)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    seconds DOUBLE PRECISION := extract(epoch FROM width);
    starts TIMESTAMPTZ;
    ends TIMESTAMPTZ;
    made INTEGER := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7070617274); -- "ppart"
    PERFORM set_config('lock_timeout', '2s', true);
    starts := greatest(
        (SELECT max(p.ends) FROM event_partitions p),
        (SELECT max(d.at) + interval '1 microsecond' FROM presence_events_default d),
        to_timestamp(floor(extract(epoch FROM at) / seconds) * seconds));
    WHILE starts < at + ahead LOOP
        ends := to_timestamp((floor(extract(epoch FROM starts) / seconds) + 1) * seconds);
        EXECUTE format('CREATE TABLE %I PARTITION OF presence_events FOR VALUES FROM (%L) TO (%L)',
                       'presence_events_' || to_char(starts AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS"_"US'),
                       starts, ends);
        INSERT INTO event_partitions (name, starts, ends)
        VALUES ('presence_events_' || to_char(starts AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS"_"US'),
                starts, ends);
        made := made + 1;
        starts := ends;
    END LOOP;
    RETURN made;
END
$$;

-- Retention: condemns the partitions that ended by `before` and hold nothing still to be
-- sent (raising dropped_through to their greatest revision), and drops those condemned
-- at least `grace` ago; deletes up to `batch` rows of the default partition recorded
-- before `before`. Returns the partitions dropped.
--
-- The grace is what keeps a resume exact: dropping a table is not transactional for a
-- reader that took its snapshot before, so a resume that read the old dropped_through
-- must not find a partition missing. A resume's transaction lasts milliseconds; the grace
-- is the worker's purge interval.
CREATE FUNCTION drop_event_partitions(before TIMESTAMPTZ, grace INTERVAL, batch BIGINT)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    part RECORD;
    sent BIGINT := (SELECT sent_through FROM event_publication);
    top BIGINT;
    unsent BOOLEAN;
    dropped INTEGER := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7070617274);
    PERFORM set_config('lock_timeout', '2s', true);
    FOR part IN SELECT name FROM event_partitions
                WHERE condemned_at <= now() - grace ORDER BY ends LOOP
        EXECUTE format('DROP TABLE %I', part.name);
        DELETE FROM event_partitions WHERE name = part.name;
        dropped := dropped + 1;
    END LOOP;
    FOR part IN SELECT name FROM event_partitions
                WHERE ends <= before AND condemned_at IS NULL ORDER BY ends LOOP
        EXECUTE format('SELECT max(revision), bool_or(revision IS NULL OR revision > $1) FROM %I',
                       part.name) INTO top, unsent USING sent;
        -- Still to be sent (Redis was down for the whole retention): kept, with all after.
        EXIT WHEN unsent;
        UPDATE event_publication SET dropped_through = greatest(dropped_through, top);
        UPDATE event_partitions SET condemned_at = now() WHERE name = part.name;
    END LOOP;
    WITH gone AS (
        DELETE FROM presence_events_default WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM presence_events_default
            WHERE at < before AND revision <= sent ORDER BY at LIMIT batch))
        RETURNING revision)
    UPDATE event_publication SET dropped_through = greatest(dropped_through, deleted.greatest)
    FROM (SELECT max(revision) AS greatest FROM gone) AS deleted
    WHERE deleted.greatest IS NOT NULL;
    RETURN dropped;
END
$$;
