ALTER TABLE users DROP COLUMN changed_at;
