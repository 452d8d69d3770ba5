-- Which worker replica executed the tick: shows that replicas share the ticks, and helps
-- an operator find the log of a sweep.
ALTER TABLE sweep_runs ADD COLUMN swept_by TEXT;
