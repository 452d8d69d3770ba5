-- Every write of users' rows is announced on `user_facts_changed`, from the writing
-- statement (delivered at commit, not at all on rollback), naming the ids written
-- (comma-separated, 300 to a notification: under NOTIFY's 8000-byte payload). It is how
-- every API replica learns which users it holds in memory changed, whoever wrote them: a
-- trigger, so no write can forget it.
CREATE FUNCTION announce_user_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('user_facts_changed', string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / 300 AS chunk FROM written) AS ids
    GROUP BY chunk;
    RETURN NULL;
END $$;

CREATE TRIGGER users_updated_announced AFTER UPDATE ON users
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION announce_user_changes();

CREATE TRIGGER users_deleted_announced AFTER DELETE ON users
    REFERENCING OLD TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION announce_user_changes();
