CREATE TABLE IF NOT EXISTS class_oauth_grants (
    storage_key   TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    scope_key     TEXT NOT NULL,
    business_code TEXT,
    scope         TEXT NOT NULL,
    expires_at    INTEGER,
    status        TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    version       INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    sealed        TEXT NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS class_oauth_pending (
    lookup     TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    sealed     TEXT NOT NULL
);
