-- The order streams deliver transitions in. Rows commit out of id order (ids are taken
-- at insert, transactions commit later), so a subscriber resuming "after id R" could miss
-- a row with a smaller id that committed late. A revision is instead given at
-- publication, under the publisher's lock, in one transaction that commits before the
-- row is sent to Redis: every revision a subscriber has seen is already readable, and
-- revisions only grow in the order they are published.
CREATE SEQUENCE presence_revision;
ALTER TABLE presence_events ADD COLUMN revision BIGINT;
UPDATE presence_events SET revision = id WHERE published_at IS NOT NULL;
SELECT setval('presence_revision', greatest(1, (SELECT max(id) FROM presence_events)));
CREATE UNIQUE INDEX presence_events_revision_key ON presence_events (revision);
