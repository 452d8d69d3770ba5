-- One row per executed inactivity sweep. The unique tick time is what makes a tick run
-- once across all worker replicas: the first to insert it sweeps, the rest skip.
CREATE TABLE sweep_runs (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tick_at              TIMESTAMPTZ NOT NULL UNIQUE,
    started_at           TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at          TIMESTAMPTZ,
    users_marked_offline INTEGER
);

-- Every online/offline transition, appended by the worker from the presence-changes queue.
CREATE TABLE presence_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    from_status TEXT        NOT NULL CHECK (from_status IN ('online', 'offline')),
    to_status   TEXT        NOT NULL CHECK (to_status IN ('online', 'offline')),
    reason      TEXT        NOT NULL
        CHECK (reason IN ('login', 'logout', 'heartbeat', 'activity', 'sweep')),
    at          TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Serves "a user's newest transitions first", and makes a redelivered job a no-op: one
-- user cannot make the same transition twice at the same instant.
CREATE UNIQUE INDEX presence_events_user_at_key ON presence_events (user_id, at, to_status);
