DROP FUNCTION presence_public(text, timestamptz, timestamptz, text, timestamptz, interval, interval, timestamptz);
DROP FUNCTION presence_of(text, timestamptz, timestamptz, text, timestamptz, interval, interval, timestamptz);
DELETE FROM presence_events WHERE reason NOT IN ('login', 'logout', 'heartbeat', 'activity', 'sweep');
UPDATE presence_events SET from_status = CASE WHEN from_status = 'offline' THEN 'offline' ELSE 'online' END,
                           to_status = CASE WHEN to_status = 'offline' THEN 'offline' ELSE 'online' END;
ALTER TABLE presence_events
    DROP COLUMN last_seen, DROP COLUMN status_text, DROP COLUMN status_emoji, DROP COLUMN dnd_until,
    DROP CONSTRAINT presence_events_from_valid, DROP CONSTRAINT presence_events_to_valid,
    DROP CONSTRAINT presence_events_reason_valid,
    ADD CONSTRAINT presence_events_from_status_check CHECK (from_status IN ('online', 'offline')),
    ADD CONSTRAINT presence_events_to_status_check CHECK (to_status IN ('online', 'offline')),
    ADD CONSTRAINT presence_events_reason_check
        CHECK (reason IN ('login', 'logout', 'heartbeat', 'activity', 'sweep'));
DROP INDEX users_online_active_at_idx;
DROP INDEX users_published_not_offline_idx;
DROP INDEX users_status_expires_at_idx;
DROP INDEX users_availability_until_idx;
ALTER TABLE sessions DROP COLUMN active_at;
ALTER TABLE users
    DROP COLUMN active_at, DROP COLUMN availability, DROP COLUMN availability_until,
    DROP COLUMN invisible_since, DROP COLUMN status_text, DROP COLUMN status_emoji,
    DROP COLUMN status_expires_at, DROP COLUMN published_presence,
    DROP COLUMN published_status_text, DROP COLUMN published_status_emoji,
    DROP COLUMN published_dnd_until;
