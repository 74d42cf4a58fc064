-- Grant health: why the last refresh of the grant failed, and when (Unix seconds), when
-- it failed without ending the grant (a network error, Class unavailable); cleared by
-- the next write of tokens.
ALTER TABLE class_oauth_grants ADD COLUMN last_error TEXT;
ALTER TABLE class_oauth_grants ADD COLUMN last_error_at INTEGER;
