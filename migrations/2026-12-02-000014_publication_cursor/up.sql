-- Publishing marked every event it sent by updating its row: a second row version and
-- four index entries per event, and finding the numbered rows not yet sent scanned the
-- revision index past every row ever published (a 500,000-event backlog took minutes).
-- Instead the publisher keeps one cursor, the last revision it has sent: an event is
-- published once its revision is at most `sent_through`. Its one row is written once per
-- batch; the rows themselves are written once, when they are given their revision.
CREATE TABLE event_publication (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    sent_through BIGINT NOT NULL
);
INSERT INTO event_publication (sent_through)
SELECT coalesce(max(revision), 0) FROM presence_events WHERE published_at IS NOT NULL;

-- The column now says when an event was given its revision (and so became readable to
-- a resume): what the resume reach is measured from.
ALTER TABLE presence_events RENAME COLUMN published_at TO revision_at;
UPDATE presence_events SET revision_at = now() WHERE revision IS NOT NULL AND revision_at IS NULL;

DROP INDEX presence_events_unpublished_idx;
CREATE INDEX presence_events_unnumbered_idx ON presence_events (id) WHERE revision IS NULL;

-- What the publisher has still to send, in one place for the worker's backlog gauges,
-- the tests and the benchmarks: rows without a revision, and rows numbered past the
-- cursor (a publisher stopped between numbering and sending). Two index range scans.
CREATE VIEW unpublished_events AS
    SELECT * FROM presence_events WHERE revision IS NULL
    UNION ALL
    SELECT * FROM presence_events
    WHERE revision > (SELECT sent_through FROM event_publication);
