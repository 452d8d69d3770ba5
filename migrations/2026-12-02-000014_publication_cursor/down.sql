DROP VIEW unpublished_events;
DROP INDEX presence_events_unnumbered_idx;
ALTER TABLE presence_events RENAME COLUMN revision_at TO published_at;
UPDATE presence_events SET published_at = NULL
WHERE revision > (SELECT sent_through FROM event_publication);
CREATE INDEX presence_events_unpublished_idx ON presence_events (id) WHERE published_at IS NULL;
DROP TABLE event_publication;
