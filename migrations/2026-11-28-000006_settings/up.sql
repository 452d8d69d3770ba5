-- Settings every process of a deployment must share, stored once: the presence window
-- (`offline_after_secs`) is set by the API and read by the worker's sweep, so the two can
-- never silently judge silence by different windows.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
