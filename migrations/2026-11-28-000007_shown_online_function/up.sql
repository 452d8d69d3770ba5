-- The one rule of what readers are shown: the stored flag, but never online once
-- `last_seen` is older than the presence window (so readers stay right if the sweep
-- stops). Every query uses it, and it is simple enough for PostgreSQL to inline, so a
-- filter on it still uses the partial index of online users by `last_seen`.
CREATE FUNCTION presence_shown_online(status text, last_seen timestamptz, presence_window interval)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT status = 'online' AND last_seen >= now() - presence_window $$;

-- The same rule over time: users it showed online at `since` and no longer does, with no
-- write at all (time moved them past the window's edge). Written as a range on
-- `last_seen`, for the same index.
CREATE FUNCTION presence_went_offline_since(
    status text, last_seen timestamptz, presence_window interval, since timestamptz)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT status = 'online' AND last_seen >= since - presence_window
                               AND last_seen < now() - presence_window $$;
