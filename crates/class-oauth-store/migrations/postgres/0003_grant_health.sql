-- Grant health: when the stored tokens were received (the refresh token's age starts
-- there; a login or a refresh), when the grant was made (the last login) and when it
-- was last refreshed (NULL until its first refresh). NULL for rows written before this
-- migration, until their next write of tokens.
ALTER TABLE class_oauth_grants ADD COLUMN IF NOT EXISTS tokens_received_at BIGINT;
ALTER TABLE class_oauth_grants ADD COLUMN IF NOT EXISTS granted_at BIGINT;
ALTER TABLE class_oauth_grants ADD COLUMN IF NOT EXISTS refreshed_at BIGINT;
CREATE INDEX IF NOT EXISTS class_oauth_grants_status ON class_oauth_grants (status, storage_key);
