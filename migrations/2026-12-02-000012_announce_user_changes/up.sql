-- Every write of what an API replica holds in memory of a user (their account and the
-- facts the shown-presence rule reads) is announced on `user_facts_changed` with the
-- user's id, from the writing statement (delivered at commit, not at all on rollback).
-- It is how every replica learns which users it holds changed, whoever wrote them: a
-- trigger, so no write can forget it.
--
-- Not announced (the trigger's WHEN is false, so it costs no call): writes of the
-- outbox's `published_*` columns and of `changed_at` alone (no replica holds them), and
-- of the connection flag alone, which only the sweep makes, to users the window already
-- shows offline (a replica computes the same from the `last_seen` it holds). So neither a
-- sweep nor the recording of its transitions sends a notification.
CREATE FUNCTION announce_user_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('user_facts_changed', OLD.id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER users_updated_announced AFTER UPDATE ON users FOR EACH ROW
    WHEN ((OLD.username, OLD.is_admin, OLD.last_seen, OLD.active_at, OLD.availability,
           OLD.availability_until, OLD.invisible_since, OLD.status_text, OLD.status_emoji,
           OLD.status_expires_at)
          IS DISTINCT FROM
          (NEW.username, NEW.is_admin, NEW.last_seen, NEW.active_at, NEW.availability,
           NEW.availability_until, NEW.invisible_since, NEW.status_text, NEW.status_emoji,
           NEW.status_expires_at))
    EXECUTE FUNCTION announce_user_change();

CREATE TRIGGER users_deleted_announced AFTER DELETE ON users FOR EACH ROW
    EXECUTE FUNCTION announce_user_change();
