CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT        NOT NULL
        CONSTRAINT users_username_format
        CHECK (char_length(username) BETWEEN 3 AND 150 AND username ~ '^[A-Za-z0-9@.+_-]+$'),
    password_hash TEXT        NOT NULL,
    is_admin      BOOLEAN     NOT NULL DEFAULT false,
    online_status TEXT        NOT NULL DEFAULT 'offline'
        CONSTRAINT users_online_status_valid CHECK (online_status IN ('online', 'offline')),
    last_seen     TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- An online user has always been seen: the read-time window rule relies on it.
    CONSTRAINT users_online_has_last_seen CHECK (online_status = 'offline' OR last_seen IS NOT NULL)
);

-- Usernames are unique regardless of case ("Alice" and "alice" are one user).
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

-- The inactivity sweep and the online count only look at online users by last_seen:
-- a partial index keeps both an index scan however many users are offline.
CREATE INDEX users_online_last_seen_idx ON users (last_seen) WHERE online_status = 'online';

CREATE TABLE sessions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the bearer token: a leaked table does not leak usable tokens.
    token_hash BYTEA       NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);

-- Logout asks "does this user have another live session?".
CREATE INDEX sessions_live_by_user_idx ON sessions (user_id, last_seen) WHERE revoked_at IS NULL;
