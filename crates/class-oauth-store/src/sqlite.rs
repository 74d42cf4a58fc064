//! SQLite: the embedded default. A file, WAL mode, a small connection pool; the refresh
//! lock is a `BEGIN IMMEDIATE` transaction (SQLite's write lock, which also serializes
//! other processes using the same file).

use std::path::Path;
use std::time::{Duration, SystemTime};

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OptionalExtension, params};

use crate::row::{decode_grant, decode_pending, encode_grant, encode_pending, pending_lookup};
use crate::{
    Encryption, GrantStatus, GrantSummary, RefreshGuard, StoreError, StoredGrant, TenantKey,
    TokenStore, unix_now,
};

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_init.sql"))];

type Pool = r2d2::Pool<SqliteConnectionManager>;
type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A token store in an SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool,
    enc: std::sync::Arc<Encryption>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

const COLUMNS: &str = "sealed, status, status_reason, version";

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies the migrations.
    pub fn open(path: impl AsRef<Path>, encryption: Encryption) -> Result<Self, StoreError> {
        if let Some(parent) = path.as_ref().parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(backend)?;
        }
        let manager = SqliteConnectionManager::file(path.as_ref()).with_init(|c| {
            c.busy_timeout(Duration::from_secs(30))?;
            c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        });
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .map_err(backend)?;
        let store = Self {
            pool,
            enc: std::sync::Arc::new(encryption),
        };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(backend)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS class_oauth_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)").map_err(backend)?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> = tx
                .query_row(
                    "SELECT version FROM class_oauth_migrations WHERE version = ?1",
                    params![version],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if done.is_none() {
                tx.execute_batch(sql).map_err(backend)?;
                tx.execute(
                    "INSERT INTO class_oauth_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, unix_now() as i64],
                )
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    /// Reads the row inside the transaction just begun and wraps it in a guard.
    fn locked(&self, conn: Conn, key: &TenantKey) -> Result<Box<dyn RefreshGuard>, StoreError> {
        match self.read(&conn, key) {
            Ok(current) => Ok(Box::new(SqliteGuard {
                store: self.clone(),
                conn: Some(conn),
                key: key.clone(),
                current,
            })),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn read(
        &self,
        c: &rusqlite::Connection,
        key: &TenantKey,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let row: Option<(String, String, String, i64)> = c
            .query_row(
                &format!("SELECT {COLUMNS} FROM class_oauth_grants WHERE storage_key = ?1"),
                params![key.storage_key()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(backend)?;
        row.map(|(sealed, status, reason, version)| {
            decode_grant(&self.enc, key, &sealed, &status, &reason, version)
        })
        .transpose()
    }

    fn write(
        &self,
        c: &rusqlite::Connection,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let row = encode_grant(&self.enc, key, tokens, id_claims)?;
        let now = unix_now() as i64;
        let version: i64 = match expected {
            Some(e) => {
                let e = e as i64;
                let n = c
                    .execute(
                        "UPDATE class_oauth_grants SET business_code = ?2, scope = ?3, expires_at = ?4, status = 'active', status_reason = '', \
                         version = version + 1, key_id = ?5, sealed = ?6, updated_at = ?7 WHERE storage_key = ?1 AND version = ?8",
                        params![row.storage_key, row.business_code, row.scope, row.expires_at, row.key_id, row.sealed, now, e],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::Conflict { expected: e as u64 });
                }
                e + 1
            }
            None => c
                .query_row(
                    "INSERT INTO class_oauth_grants (storage_key, client_id, tenant, subject, scope_key, business_code, scope, expires_at, status, status_reason, version, key_id, sealed, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', '', 1, ?9, ?10, ?11) \
                     ON CONFLICT (storage_key) DO UPDATE SET business_code = excluded.business_code, scope = excluded.scope, expires_at = excluded.expires_at, \
                     status = 'active', status_reason = '', version = class_oauth_grants.version + 1, key_id = excluded.key_id, sealed = excluded.sealed, updated_at = excluded.updated_at \
                     RETURNING version",
                    params![row.storage_key, key.client_id(), key.tenant(), key.subject(), key.scope(), row.business_code, row.scope, row.expires_at, row.key_id, row.sealed, now],
                    |r| r.get(0),
                )
                .map_err(backend)?,
        };
        Ok(version as u64)
    }
}

struct SqliteGuard {
    store: SqliteStore,
    conn: Option<Conn>,
    key: TenantKey,
    current: Option<StoredGrant>,
}

impl RefreshGuard for SqliteGuard {
    fn current(&self) -> Option<&StoredGrant> {
        self.current.as_ref()
    }

    fn commit(
        mut self: Box<Self>,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
    ) -> Result<u64, StoreError> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| backend("guard already used"))?;
        let expected = self
            .current
            .as_ref()
            .map(|g| g.version)
            .ok_or(StoreError::Conflict { expected: 0 });
        let result = expected.and_then(|e| {
            self.store
                .write(&conn, &self.key, tokens, id_claims, Some(e))
        });
        match result {
            Ok(v) => {
                conn.execute_batch("COMMIT").map_err(backend)?;
                Ok(v)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl Drop for SqliteGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

impl TokenStore for SqliteStore {
    fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        let c = self.conn()?;
        self.read(&c, key)
    }

    fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        let c = self.conn()?;
        self.write(&c, key, tokens, id_claims, expected_version)
    }

    fn set_status(&self, key: &TenantKey, status: &GrantStatus) -> Result<(), StoreError> {
        let (s, reason) = status.as_parts();
        self.conn()?
            .execute(
                "UPDATE class_oauth_grants SET status = ?2, status_reason = ?3, version = version + 1, updated_at = ?4 WHERE storage_key = ?1",
                params![key.storage_key(), s, reason, unix_now() as i64],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute(
                "DELETE FROM class_oauth_grants WHERE storage_key = ?1",
                params![key.storage_key()],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        let c = self.conn()?;
        let mut stmt = c
            .prepare("SELECT client_id, tenant, subject, scope_key, business_code, scope, expires_at, status, status_reason, version, updated_at FROM class_oauth_grants ORDER BY storage_key")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(GrantSummary {
                    key: TenantKey::from_parts(
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ),
                    business_code: r.get(4)?,
                    scope: r.get(5)?,
                    expires_at: r.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
                    status: GrantStatus::from_parts(
                        &r.get::<_, String>(7)?,
                        &r.get::<_, String>(8)?,
                    ),
                    version: r.get::<_, i64>(9)?.max(0) as u64,
                    updated_at: r.get::<_, i64>(10)?.max(0) as u64,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    fn try_lock(&self, key: &TenantKey) -> Result<Option<Box<dyn RefreshGuard>>, StoreError> {
        let conn = self.conn()?;
        conn.busy_timeout(Duration::ZERO).map_err(backend)?;
        let begun = conn.execute_batch("BEGIN IMMEDIATE");
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(backend)?;
        match begun {
            Ok(()) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                return Ok(None);
            }
            Err(e) => return Err(backend(e)),
        }
        self.locked(conn, key).map(Some)
    }

    fn lock(&self, key: &TenantKey) -> Result<Box<dyn RefreshGuard>, StoreError> {
        let conn = self.conn()?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
        self.locked(conn, key)
    }

    fn put_pending(&self, lookup: &str, pending: &PendingAuthorization) -> Result<(), StoreError> {
        let (hashed, sealed, expires_at) = encode_pending(&self.enc, lookup, pending)?;
        let c = self.conn()?;
        c.execute(
            "DELETE FROM class_oauth_pending WHERE expires_at < ?1",
            params![unix_now() as i64],
        )
        .map_err(backend)?;
        c.execute(
            "INSERT INTO class_oauth_pending (lookup, expires_at, sealed) VALUES (?1, ?2, ?3) ON CONFLICT (lookup) DO UPDATE SET expires_at = excluded.expires_at, sealed = excluded.sealed",
            params![hashed, expires_at, sealed],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let row: Option<(String, i64)> = self
            .conn()?
            .query_row(
                "DELETE FROM class_oauth_pending WHERE lookup = ?1 RETURNING sealed, expires_at",
                params![pending_lookup(lookup)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        match row {
            Some((sealed, expires_at))
                if expires_at >= class_oauth_core::time::to_unix(now) as i64 =>
            {
                decode_pending(&self.enc, lookup, &sealed).map(Some)
            }
            _ => Ok(None),
        }
    }
}
