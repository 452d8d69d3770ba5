-- Each API replica's promise: "all activity I saw before `flushed_through` is written".
-- The sweep only takes users silent for a window before the oldest promise of a replica
-- that reported within the last window, so activity an API could not write during a
-- PostgreSQL outage (or a partition) never gets its users swept before it lands.
CREATE TABLE activity_flushes (
    replica         TEXT        PRIMARY KEY,
    flushed_through TIMESTAMPTZ NOT NULL,
    reported_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
