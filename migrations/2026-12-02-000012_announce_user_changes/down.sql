DROP TRIGGER users_deleted_announced ON users;
DROP TRIGGER users_updated_announced ON users;
DROP FUNCTION announce_user_change();
