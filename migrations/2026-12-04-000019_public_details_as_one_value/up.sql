-- What others are shown of a user besides their presence and `last_seen` (the custom
-- status, the dnd end) becomes one JSON value, the Rust type `StatusDetails`: as last told
-- (`users.published_details`) and in each event (`presence_events.details`). The outbox
-- compares, stores and publishes it whole, so a field others are shown is added in Rust
-- alone. `NULL` is no details, what others are shown of an offline user: the sweep's
-- events store none.
DROP VIEW unpublished_events;

ALTER TABLE users ADD COLUMN published_details JSONB;
UPDATE users SET published_details = jsonb_strip_nulls(jsonb_build_object(
        'status_text', published_status_text, 'status_emoji', published_status_emoji,
        'dnd_until', published_dnd_until))
    WHERE (published_status_text, published_status_emoji, published_dnd_until)
          IS DISTINCT FROM (NULL, NULL, NULL);
ALTER TABLE users DROP COLUMN published_status_text, DROP COLUMN published_status_emoji,
    DROP COLUMN published_dnd_until;

ALTER TABLE presence_events ADD COLUMN details JSONB;
UPDATE presence_events SET details = jsonb_strip_nulls(jsonb_build_object(
        'status_text', status_text, 'status_emoji', status_emoji, 'dnd_until', dnd_until))
    WHERE (status_text, status_emoji, dnd_until) IS DISTINCT FROM (NULL, NULL, NULL);
ALTER TABLE presence_events DROP COLUMN status_text, DROP COLUMN status_emoji,
    DROP COLUMN dnd_until;

CREATE VIEW unpublished_events AS
    SELECT * FROM presence_events WHERE revision IS NULL
    UNION ALL
    SELECT * FROM presence_events
    WHERE revision > (SELECT sent_through FROM event_publication);
