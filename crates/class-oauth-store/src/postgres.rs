//! PostgreSQL: for partners running several instances. The refresh lock is a
//! transaction-scoped advisory lock on the tenant's key (`pg_advisory_xact_lock`), the row
//! is re-read after the lock is taken, and the write is a compare-and-swap on the
//! version. Migrations ship with the crate and are applied on connect (under a global
//! advisory lock, so instances starting together do not race).

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

use crate::row::{decode_grant, decode_pending, encode_grant, encode_pending, pending_lookup};
use crate::{
    Encryption, GrantStatus, GrantSummary, RefreshGuard, StoreError, StoredGrant, TenantKey,
    TokenStore, unix_now,
};

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/postgres/0001_init.sql"))];
const MIGRATION_LOCK: i64 = 0x636c_6173_735f_6f61; // "class_oa"

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Owns the pool. The sync `postgres` client closes its connection with a `block_on` of
/// its own runtime, which panics on an async runtime's worker thread; so the last owner
/// drops the pool on a thread of its own, wherever it is dropped.
struct PoolHolder(Option<Pool>);

impl Drop for PoolHolder {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

/// A token store in PostgreSQL.
#[derive(Clone)]
pub struct PostgresStore {
    pool: std::sync::Arc<PoolHolder>,
    enc: std::sync::Arc<Encryption>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects with a pool of `pool_size` connections and applies the migrations.
    /// (Plain TCP: put the database on a private network or a TLS-terminating proxy.)
    pub fn connect(url: &str, pool_size: u32, encryption: Encryption) -> Result<Self, StoreError> {
        let config = postgres::Config::from_str(url)
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .map_err(backend)?;
        let store = Self {
            pool: std::sync::Arc::new(PoolHolder(Some(pool))),
            enc: std::sync::Arc::new(encryption),
        };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool
            .0
            .as_ref()
            .ok_or_else(|| backend("the pool is closed"))?
            .get()
            .map_err(backend)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(backend)?;
        let result = (|| {
            c.batch_execute("CREATE TABLE IF NOT EXISTS class_oauth_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")?;
            for (version, sql) in MIGRATIONS {
                let done = c.query_opt(
                    "SELECT version FROM class_oauth_migrations WHERE version = $1",
                    &[version],
                )?;
                if done.is_none() {
                    let mut tx = c.transaction()?;
                    tx.batch_execute(sql)?;
                    tx.execute(
                        "INSERT INTO class_oauth_migrations (version, applied_at) VALUES ($1, $2)",
                        &[version, &(unix_now() as i64)],
                    )?;
                    tx.commit()?;
                }
            }
            Ok::<(), postgres::Error>(())
        })();
        let unlock = c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
        result.map_err(backend)?;
        unlock.map_err(backend)?;
        Ok(())
    }

    /// Begins a transaction, takes the tenant's advisory lock with `sql` (blocking, or
    /// `pg_try_...` returning false when held elsewhere), and re-reads the row under it.
    fn lock_with(
        &self,
        key: &TenantKey,
        sql: &str,
    ) -> Result<Option<Box<dyn RefreshGuard>>, StoreError> {
        let mut conn = self.conn()?;
        conn.batch_execute("BEGIN").map_err(backend)?;
        let result = (|| {
            let row = conn
                .query_one(sql, &[&key.storage_key()])
                .map_err(backend)?;
            // pg_advisory_xact_lock returns void (NULL); the try variant a boolean.
            let got = row
                .try_get::<_, Option<bool>>(0)
                .ok()
                .flatten()
                .unwrap_or(true);
            if !got {
                return Ok(None);
            }
            self.read(&mut conn, key).map(Some)
        })();
        match result {
            Ok(Some(current)) => Ok(Some(Box::new(PgGuard {
                store: self.clone(),
                conn: Some(conn),
                key: key.clone(),
                current,
            }))),
            Ok(None) => {
                let _ = conn.batch_execute("ROLLBACK");
                Ok(None)
            }
            Err(e) => {
                let _ = conn.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    }

    fn read(&self, c: &mut Conn, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        let row = c
            .query_opt("SELECT sealed, status, status_reason, version FROM class_oauth_grants WHERE storage_key = $1", &[&key.storage_key()])
            .map_err(backend)?;
        row.map(|r| decode_grant(&self.enc, key, r.get(0), r.get(1), r.get(2), r.get(3)))
            .transpose()
    }

    fn write(
        &self,
        c: &mut Conn,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let row = encode_grant(&self.enc, key, tokens, id_claims)?;
        let now = unix_now() as i64;
        match expected {
            Some(e) => {
                let e = e as i64;
                let n = c
                    .execute(
                        "UPDATE class_oauth_grants SET business_code = $2, scope = $3, expires_at = $4, status = 'active', status_reason = '', \
                         version = version + 1, key_id = $5, sealed = $6, updated_at = $7 WHERE storage_key = $1 AND version = $8",
                        &[&row.storage_key, &row.business_code, &row.scope, &row.expires_at, &row.key_id, &row.sealed, &now, &e],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::Conflict { expected: e as u64 });
                }
                Ok((e + 1) as u64)
            }
            None => {
                let r = c
                    .query_one(
                        "INSERT INTO class_oauth_grants (storage_key, client_id, tenant, subject, scope_key, business_code, scope, expires_at, status, status_reason, version, key_id, sealed, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', '', 1, $9, $10, $11) \
                         ON CONFLICT (storage_key) DO UPDATE SET business_code = excluded.business_code, scope = excluded.scope, expires_at = excluded.expires_at, \
                         status = 'active', status_reason = '', version = class_oauth_grants.version + 1, key_id = excluded.key_id, sealed = excluded.sealed, updated_at = excluded.updated_at \
                         RETURNING version",
                        &[&row.storage_key, &key.client_id(), &key.tenant(), &key.subject(), &key.scope(), &row.business_code, &row.scope, &row.expires_at, &row.key_id, &row.sealed, &now],
                    )
                    .map_err(backend)?;
                Ok(r.get::<_, i64>(0) as u64)
            }
        }
    }
}

struct PgGuard {
    store: PostgresStore,
    conn: Option<Conn>,
    key: TenantKey,
    current: Option<StoredGrant>,
}

impl RefreshGuard for PgGuard {
    fn current(&self) -> Option<&StoredGrant> {
        self.current.as_ref()
    }

    fn commit(
        mut self: Box<Self>,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
    ) -> Result<u64, StoreError> {
        let mut conn = self
            .conn
            .take()
            .ok_or_else(|| backend("guard already used"))?;
        let expected = self
            .current
            .as_ref()
            .map(|g| g.version)
            .ok_or(StoreError::Conflict { expected: 0 });
        match expected.and_then(|e| {
            self.store
                .write(&mut conn, &self.key, tokens, id_claims, Some(e))
        }) {
            Ok(v) => {
                conn.batch_execute("COMMIT").map_err(backend)?;
                Ok(v)
            }
            Err(e) => {
                let _ = conn.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl Drop for PgGuard {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.batch_execute("ROLLBACK");
        }
    }
}

impl TokenStore for PostgresStore {
    fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        let mut c = self.conn()?;
        self.read(&mut c, key)
    }

    fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn()?;
        self.write(&mut c, key, tokens, id_claims, expected_version)
    }

    fn set_status(&self, key: &TenantKey, status: &GrantStatus) -> Result<(), StoreError> {
        let (s, reason) = status.as_parts();
        self.conn()?
            .execute(
                "UPDATE class_oauth_grants SET status = $2, status_reason = $3, version = version + 1, updated_at = $4 WHERE storage_key = $1",
                &[&key.storage_key(), &s, &reason, &(unix_now() as i64)],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute(
                "DELETE FROM class_oauth_grants WHERE storage_key = $1",
                &[&key.storage_key()],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT client_id, tenant, subject, scope_key, business_code, scope, expires_at, status, status_reason, version, updated_at FROM class_oauth_grants ORDER BY storage_key",
                &[],
            )
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| GrantSummary {
                key: TenantKey::from_parts(
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                ),
                business_code: r.get(4),
                scope: r.get(5),
                expires_at: r.get::<_, Option<i64>>(6).map(|v| v.max(0) as u64),
                status: GrantStatus::from_parts(r.get(7), r.get(8)),
                version: r.get::<_, i64>(9).max(0) as u64,
                updated_at: r.get::<_, i64>(10).max(0) as u64,
            })
            .collect())
    }

    fn lock(&self, key: &TenantKey) -> Result<Box<dyn RefreshGuard>, StoreError> {
        self.lock_with(key, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .map(|g| g.expect("a blocking lock always returns a guard"))
    }

    fn try_lock(&self, key: &TenantKey) -> Result<Option<Box<dyn RefreshGuard>>, StoreError> {
        self.lock_with(
            key,
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
        )
    }

    fn put_pending(&self, lookup: &str, pending: &PendingAuthorization) -> Result<(), StoreError> {
        let (hashed, sealed, expires_at) = encode_pending(&self.enc, lookup, pending)?;
        let mut c = self.conn()?;
        c.execute(
            "DELETE FROM class_oauth_pending WHERE expires_at < $1",
            &[&(unix_now() as i64)],
        )
        .map_err(backend)?;
        c.execute(
            "INSERT INTO class_oauth_pending (lookup, expires_at, sealed) VALUES ($1, $2, $3) ON CONFLICT (lookup) DO UPDATE SET expires_at = excluded.expires_at, sealed = excluded.sealed",
            &[&hashed, &expires_at, &sealed],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "DELETE FROM class_oauth_pending WHERE lookup = $1 RETURNING sealed, expires_at",
                &[&pending_lookup(lookup)],
            )
            .map_err(backend)?;
        match row {
            Some(r) if r.get::<_, i64>(1) >= class_oauth_core::time::to_unix(now) as i64 => {
                decode_pending(&self.enc, lookup, r.get(0)).map(Some)
            }
            _ => Ok(None),
        }
    }
}
