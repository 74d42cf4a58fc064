-- Grant health: when the stored tokens were received (the refresh token's age starts
-- there; a login or a refresh), when the grant was made (the last login) and when it
-- was last refreshed (NULL until its first refresh). NULL for rows written before this
-- migration, until their next write of tokens.
ALTER TABLE class_oauth_grants ADD COLUMN tokens_received_at INTEGER;
ALTER TABLE class_oauth_grants ADD COLUMN granted_at INTEGER;
ALTER TABLE class_oauth_grants ADD COLUMN refreshed_at INTEGER;
CREATE INDEX IF NOT EXISTS class_oauth_grants_status ON class_oauth_grants (status, storage_key);
