-- Altered, not made anew as `up.sql` makes it: a database taken down and up again is
-- for development, where the partitions made meanwhile converting rows costs nothing.
DROP VIEW unpublished_events;

ALTER TABLE presence_events ADD COLUMN status_text TEXT, ADD COLUMN status_emoji TEXT,
    ADD COLUMN dnd_until TIMESTAMPTZ;
UPDATE presence_events SET status_text = details ->> 'status_text',
    status_emoji = details ->> 'status_emoji',
    dnd_until = (details ->> 'dnd_until')::timestamptz
    WHERE details IS NOT NULL;
ALTER TABLE presence_events DROP COLUMN details;

ALTER TABLE users ADD COLUMN published_status_text TEXT,
    ADD COLUMN published_status_emoji TEXT, ADD COLUMN published_dnd_until TIMESTAMPTZ;
UPDATE users SET published_status_text = published_details ->> 'status_text',
    published_status_emoji = published_details ->> 'status_emoji',
    published_dnd_until = (published_details ->> 'dnd_until')::timestamptz
    WHERE published_details IS NOT NULL;
ALTER TABLE users DROP COLUMN published_details;

CREATE VIEW unpublished_events AS
    SELECT * FROM presence_events WHERE revision IS NULL
    UNION ALL
    SELECT * FROM presence_events
    WHERE revision > (SELECT sent_through FROM event_publication);
