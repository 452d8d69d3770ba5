-- Richer presence: activity apart from connection, manual availability with an end,
-- invisible, a custom status, and the presence others were last told.
--
-- `online_status` keeps its meaning as a stored flag: the user is *connected* (some
-- session heartbeats or makes requests inside the window). On top of it:
ALTER TABLE users
    -- The latest time the user really used the app, on a session still connected: the
    -- automatic presence is `online` while it is inside AWAY_AFTER_SECS, `away` after.
    ADD COLUMN active_at TIMESTAMPTZ,
    -- The manual status, which beats the automatic one and is never overwritten by it.
    ADD COLUMN availability TEXT NOT NULL DEFAULT 'auto'
        CONSTRAINT users_availability_valid
        CHECK (availability IN ('auto', 'away', 'dnd', 'invisible')),
    ADD COLUMN availability_until TIMESTAMPTZ,
    -- When the user went invisible: the `last_seen` everyone else is shown meanwhile, as
    -- if they had logged out at that moment.
    ADD COLUMN invisible_since TIMESTAMPTZ,
    ADD COLUMN status_text TEXT
        CONSTRAINT users_status_text_length CHECK (char_length(status_text) <= 100),
    ADD COLUMN status_emoji TEXT
        CONSTRAINT users_status_emoji_length CHECK (char_length(status_emoji) <= 32),
    ADD COLUMN status_expires_at TIMESTAMPTZ,
    -- What others were last told, by the user's last recorded transition. A write records
    -- a transition exactly when what others are shown now differs from it.
    ADD COLUMN published_presence TEXT NOT NULL DEFAULT 'offline'
        CONSTRAINT users_published_presence_valid
        CHECK (published_presence IN ('online', 'away', 'dnd', 'offline')),
    ADD COLUMN published_status_text TEXT,
    ADD COLUMN published_status_emoji TEXT,
    ADD COLUMN published_dnd_until TIMESTAMPTZ,
    ADD CONSTRAINT users_until_only_for_away_and_dnd
        CHECK (availability_until IS NULL OR availability IN ('away', 'dnd')),
    ADD CONSTRAINT users_invisible_since_iff_invisible
        CHECK ((availability = 'invisible') = (invisible_since IS NOT NULL));

UPDATE users SET active_at = last_seen, published_presence = online_status;

-- Per session: when it was last really used (a heartbeat may say the page sits idle).
ALTER TABLE sessions ADD COLUMN active_at TIMESTAMPTZ NOT NULL DEFAULT now();
UPDATE sessions SET active_at = last_seen;

-- What the sweep looks at besides online users: whose manual status or custom status
-- has ended, and who others are told is not offline.
CREATE INDEX users_availability_until_idx ON users (availability_until)
    WHERE availability_until IS NOT NULL;
CREATE INDEX users_status_expires_at_idx ON users (status_expires_at)
    WHERE status_expires_at IS NOT NULL;
CREATE INDEX users_published_not_offline_idx ON users (id)
    WHERE published_presence <> 'offline';
-- `all-users?changed_since=` finds connected users who went away with no write at all.
CREATE INDEX users_online_active_at_idx ON users (active_at) WHERE online_status = 'online';

-- Transitions in the new vocabulary, each with the status others are shown after it.
ALTER TABLE presence_events
    DROP CONSTRAINT presence_events_from_status_check,
    DROP CONSTRAINT presence_events_to_status_check,
    DROP CONSTRAINT presence_events_reason_check,
    ADD CONSTRAINT presence_events_from_valid
        CHECK (from_status IN ('online', 'away', 'dnd', 'offline')),
    ADD CONSTRAINT presence_events_to_valid
        CHECK (to_status IN ('online', 'away', 'dnd', 'offline')),
    ADD CONSTRAINT presence_events_reason_valid CHECK (reason IN (
        'login', 'logout', 'heartbeat', 'activity', 'idle', 'manual', 'expiry', 'sweep',
        'status_text')),
    ADD COLUMN last_seen TIMESTAMPTZ,
    ADD COLUMN status_text TEXT,
    ADD COLUMN status_emoji TEXT,
    ADD COLUMN dnd_until TIMESTAMPTZ;

-- The one rule of a user's presence as of `at`, before privacy: offline unless
-- connected; then a manual away or dnd that has not ended; then online while the user
-- was active within `away_after`, away after. Reads pass now(); the sweep passes the
-- time its promises reach (see `presence::sweep`). Inlined by PostgreSQL.
CREATE FUNCTION presence_of(
    status text, last_seen timestamptz, active_at timestamptz, availability text,
    availability_until timestamptz, presence_window interval, away_after interval,
    at timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT CASE
    WHEN status <> 'online' OR last_seen IS NULL OR last_seen < at - presence_window
        THEN 'offline'
    WHEN availability IN ('away', 'dnd')
         AND (availability_until IS NULL OR availability_until > at) THEN availability
    WHEN active_at >= at - away_after THEN 'online'
    ELSE 'away' END $$;

-- The same, as everyone but the user and admins are shown it: invisible is offline.
CREATE FUNCTION presence_public(
    status text, last_seen timestamptz, active_at timestamptz, availability text,
    availability_until timestamptz, presence_window interval, away_after interval,
    at timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN availability = 'invisible' THEN 'offline'
    ELSE presence_of(status, last_seen, active_at, availability, availability_until,
                     presence_window, away_after, at) END $$;
