DROP TABLE presence_events;
DROP TABLE sweep_runs;
