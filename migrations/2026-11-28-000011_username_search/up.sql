-- The operator page searches users by the start of their name, case-insensitively: an
-- index scan of this prefix at any number of users.
CREATE INDEX users_username_lower_prefix_idx ON users (lower(username) text_pattern_ops);
