-- The keeper's lapse notices: the lapse (Unix seconds) and the shortest lead (seconds)
-- announced for it, so that of several instances one announces each lead once.
ALTER TABLE class_oauth_grants ADD COLUMN lapse_notice_at INTEGER;
ALTER TABLE class_oauth_grants ADD COLUMN lapse_notice_lead INTEGER;
