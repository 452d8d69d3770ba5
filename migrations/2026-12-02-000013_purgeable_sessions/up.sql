-- The worker purges sessions nobody can use any more in small batches (`purges.rs`):
-- revoked ones are found by `sessions_revoked_at_idx`, expired ones by this index.
CREATE INDEX sessions_unrevoked_last_seen_idx ON sessions (last_seen) WHERE revoked_at IS NULL;
-- And old sweep runs, oldest first.
CREATE INDEX sweep_runs_started_at_idx ON sweep_runs (started_at);
