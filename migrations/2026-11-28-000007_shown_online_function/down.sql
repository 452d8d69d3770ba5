DROP FUNCTION presence_went_offline_since(text, timestamptz, interval, timestamptz);
DROP FUNCTION presence_shown_online(text, timestamptz, interval);
