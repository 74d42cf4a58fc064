ALTER TABLE class_oauth_grants ADD COLUMN IF NOT EXISTS lease_owner TEXT;
ALTER TABLE class_oauth_grants ADD COLUMN IF NOT EXISTS lease_until BIGINT;
