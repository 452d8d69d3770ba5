-- The sweep no longer reads every user others are told is not offline (a million rows
-- locked a minute at a million connected users) to find the few whose shown presence
-- time alone changed. It takes the users it disconnects, and the connected users told
-- online whose last activity has passed the away timeout: this index holds exactly
-- those candidates, by `active_at`. (The index on everyone told not offline served only
-- the old way.)
DROP INDEX users_published_not_offline_idx;
CREATE INDEX users_told_online_active_at_idx ON users (active_at)
    WHERE online_status = 'online' AND published_presence = 'online';
