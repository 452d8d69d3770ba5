-- What the operator page charts over the last hour and day: one sample per sweep tick,
-- taken by the worker that ran the sweep, right after it. The worker deletes samples
-- older than a day and an hour, so the table holds ~1,500 rows at a tick a minute.
CREATE TABLE presence_samples (
    -- The sweep's tick.
    at                       TIMESTAMPTZ PRIMARY KEY,
    -- Connected users by presence as admins see it (invisible users by their true one).
    online                   INTEGER     NOT NULL,
    away                     INTEGER     NOT NULL,
    dnd                      INTEGER     NOT NULL,
    -- The tick's sweep: how long it took, and how many users it took offline.
    sweep_ms                 INTEGER     NOT NULL,
    swept                    INTEGER     NOT NULL,
    -- How old the oldest transition not yet published was (0: none was waiting).
    publish_lag_ms           INTEGER     NOT NULL,
    -- Streams open on the API replicas that reported; NULL when Redis could not say.
    streams_open             INTEGER,
    -- The publisher's cursor: the transitions published after the previous sample's,
    -- up to this one, are counted below by reason (each exactly once).
    published_through        BIGINT      NOT NULL,
    transitions_login        INTEGER     NOT NULL,
    transitions_logout       INTEGER     NOT NULL,
    transitions_heartbeat    INTEGER     NOT NULL,
    transitions_activity     INTEGER     NOT NULL,
    transitions_idle         INTEGER     NOT NULL,
    transitions_manual       INTEGER     NOT NULL,
    transitions_expiry       INTEGER     NOT NULL,
    transitions_sweep        INTEGER     NOT NULL,
    transitions_status_text  INTEGER     NOT NULL
);
