ALTER TABLE sweep_runs DROP COLUMN swept_by;
