DROP INDEX users_told_online_active_at_idx;
CREATE INDEX users_published_not_offline_idx ON users (id)
    WHERE published_presence <> 'offline';
