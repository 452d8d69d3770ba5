DROP INDEX presence_events_revision_key;
ALTER TABLE presence_events DROP COLUMN revision;
DROP SEQUENCE presence_revision;
