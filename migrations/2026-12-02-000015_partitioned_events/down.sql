DROP FUNCTION drop_event_partitions(TIMESTAMPTZ, INTERVAL, BIGINT);
DROP FUNCTION prepare_event_partitions(TIMESTAMPTZ, INTERVAL, INTERVAL);
DROP VIEW unpublished_events;
ALTER TABLE event_publication DROP COLUMN dropped_through;
CREATE TABLE presence_events_unpartitioned (
    LIKE presence_events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS,
    PRIMARY KEY (id),
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
INSERT INTO presence_events_unpartitioned OVERRIDING SYSTEM VALUE SELECT * FROM presence_events;
SELECT setval(pg_get_serial_sequence('presence_events_unpartitioned', 'id'),
              greatest(1, (SELECT max(id) FROM presence_events)));
DROP TABLE presence_events;
DROP TABLE event_partitions;
ALTER TABLE presence_events_unpartitioned RENAME TO presence_events;
ALTER INDEX presence_events_unpartitioned_pkey RENAME TO presence_events_pkey;
CREATE UNIQUE INDEX presence_events_revision_key ON presence_events (revision);
CREATE INDEX presence_events_unnumbered_idx ON presence_events (id) WHERE revision IS NULL;
CREATE INDEX presence_events_user_id_idx ON presence_events (user_id, id);
CREATE VIEW unpublished_events AS
    SELECT * FROM presence_events WHERE revision IS NULL
    UNION ALL
    SELECT * FROM presence_events
    WHERE revision > (SELECT sent_through FROM event_publication);
