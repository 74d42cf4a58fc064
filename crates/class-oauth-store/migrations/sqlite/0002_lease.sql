ALTER TABLE class_oauth_grants ADD COLUMN lease_owner TEXT;
ALTER TABLE class_oauth_grants ADD COLUMN lease_until INTEGER;
