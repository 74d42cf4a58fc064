//! PostgreSQL: for partners running several instances. Natively async
//! (`tokio-postgres`, a `deadpool` pool); every statement is short and no transaction
//! is held while a refresh talks to Class. The refresh lease is two columns of the row,
//! taken by one conditional `UPDATE` against the database's clock (so instances with
//! skewed clocks agree), released by the refresh's final write. Every connection sets
//! `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`, so
//! nothing waits forever.
//!
//! **Connecting** ([`PostgresOptions`]): a libpq connection string (URL or key-value) or
//! the application's own `tokio_postgres::Config`. TLS is rustls on *ring*, with libpq's
//! `sslmode` (`disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`),
//! `sslrootcert` (a PEM file, or `system`), `sslcert` and `sslkey`, so the connection
//! string a managed service (Azure, RDS, Neon, Supabase, Cloud SQL) hands out works as
//! given; prefer `verify-full` with the service's CA.
//!
//! **Migrations** ship with the crate (`migrations/postgres/*.sql`, also
//! [`PostgresStore::migrations`]) and are recorded in `class_oauth_migrations`. The
//! store applies the missing ones when it connects, under a session advisory lock
//! (instances starting together do not race), or, with
//! [`PostgresOptions::apply_migrations`]`(false)`, only checks that they were applied.
//! [`PostgresOptions::schema`] keeps the tables in a schema of their own.
//!
//! Async callers use [`PostgresStore::connect`] / [`PostgresStore::connect_with`] on
//! their tokio runtime. Blocking callers use [`PostgresStore::connect_blocking`] /
//! [`PostgresStore::connect_blocking_with`]: the store then owns a one-thread runtime,
//! every call runs there, and the caller runs the call's future to completion with a
//! `block_on`.

mod migrate;
mod options;
mod tls;

pub use options::{PostgresOptions, SslMode};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A statement prepared once per connection (each use is then one round trip, not two).
async fn prepared(
    c: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    c.prepare_cached(sql).await.map_err(pg)
}

use crate::row::{
    CLAIM_NOTICE_SQL, DELETE_SQL, GRANT_COLUMNS, LIST_SQL, PENDING_PURGE_SQL, PENDING_PUT_SQL,
    PENDING_TAKE_SQL, RELEASE_SQL, REPLACE_SQL, UPSERT_SQL, decode_grant, decode_pending,
    encode_grant, encode_pending, pending_lookup, summary, update_sql,
};
use crate::{
    Encryption, GrantQuery, GrantSummary, GrantUpdate, Lease, LeaseOutcome, OwnedUpdate,
    StoreError, StoredGrant, TenantKey, TokenStore, last_error, unix_now,
};

/// The database's clock in milliseconds since the Unix epoch.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Per-connection limits: no statement, lock wait or idle transaction lasts forever.
const SESSION_OPTIONS: &str =
    "-c statement_timeout=15000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=30000";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(message(&e))
}

/// The Display of a database error is only "db error"; keep its code and message.
fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

struct Inner {
    pool: Pool,
    enc: Encryption,
    /// The runtime the pool's connections live on.
    handle: tokio::runtime::Handle,
    /// Set by `connect_blocking`: the store's own runtime (calls are spawned onto it).
    own: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}

/// A token store in PostgreSQL. Cheap to clone (a shared pool).
#[derive(Clone)]
pub struct PostgresStore(Arc<Inner>);

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("own_runtime", &self.0.own.is_some())
            .finish_non_exhaustive()
    }
}

fn pool(options: &PostgresOptions) -> Result<Pool, StoreError> {
    options.check()?;
    let mut config = options.config.clone();
    let mut session = SESSION_OPTIONS.to_owned();
    if let Some(schema) = &options.schema {
        session.push_str(" -c search_path=");
        session.push_str(schema);
    }
    let session = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {session}"),
        _ => session,
    };
    config.options(&session);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    // tokio_postgres knows disable, prefer and require; the verification is the
    // connector's.
    config.ssl_mode(match options.ssl_mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls::client_config(options)? {
        None => Manager::from_config(config, NoTls, recycling),
        Some(tls) => Manager::from_config(config, MakeRustlsConnect::new(tls), recycling),
    };
    Pool::builder(manager)
        .max_size(options.pool_size.max(1) as usize)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Config(format!("PostgreSQL pool: {e}")))
}

/// A pool's failure to hand out a connection, with what TLS refused when that is why.
fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    if let Some(hint) = tls::hint(&e) {
        return StoreError::Backend(format!("{e}; {hint}"));
    }
    match &e {
        // The server refused the connection (pg_hba.conf, authentication): its words,
        // not tokio_postgres's "db error".
        deadpool_postgres::PoolError::Backend(pe) if pe.as_db_error().is_some() => {
            StoreError::Backend(format!("could not connect to PostgreSQL: {}", message(pe)))
        }
        _ => backend(e),
    }
}

impl PostgresStore {
    /// Connects on the current tokio runtime with a pool of `pool_size` connections and
    /// applies the migrations. `url` is a libpq connection string, TLS parameters
    /// included ([`PostgresOptions::from_url`]).
    ///
    /// # Errors
    /// [`StoreError::Config`] for a bad connection string or TLS file, no tokio runtime
    /// or a bad schema; [`StoreError::Backend`] when the database cannot be reached (a
    /// refused certificate says so) or a migration fails.
    pub async fn connect(
        url: &str,
        pool_size: u32,
        encryption: Encryption,
    ) -> Result<Self, StoreError> {
        Self::connect_with(
            PostgresOptions::from_url(url)?.pool_size(pool_size),
            encryption,
        )
        .await
    }

    /// Connects on the current tokio runtime as `options` say.
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub async fn connect_with(
        options: PostgresOptions,
        encryption: Encryption,
    ) -> Result<Self, StoreError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Config(
                "PostgresStore::connect needs a tokio runtime; blocking callers use connect_blocking".into(),
            )
        })?;
        let store = Self::open(&options, encryption, handle, None)?;
        store.migrate(&options).await?;
        Ok(store)
    }

    /// Connects for blocking callers: the store runs its own one-thread runtime, and every
    /// call (blocking, or async from any executor) runs there.
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub fn connect_blocking(
        url: &str,
        pool_size: u32,
        encryption: Encryption,
    ) -> Result<Self, StoreError> {
        Self::connect_blocking_with(
            PostgresOptions::from_url(url)?.pool_size(pool_size),
            encryption,
        )
    }

    /// Connects for blocking callers as `options` say (see [`Self::connect_blocking`]).
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub fn connect_blocking_with(
        options: PostgresOptions,
        encryption: Encryption,
    ) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("class-oauth-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("a runtime for the PostgreSQL store: {e}")))?;
        let store = Self::open(&options, encryption, rt.handle().clone(), Some(rt))?;
        pollster::block_on(store.migrate(&options))?;
        Ok(store)
    }

    /// The store over a new pool for `options`, its connections on `handle` (`own`: the
    /// store's own runtime, for blocking callers).
    fn open(
        options: &PostgresOptions,
        enc: Encryption,
        handle: tokio::runtime::Handle,
        own: Option<tokio::runtime::Runtime>,
    ) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(Inner {
            pool: pool(options)?,
            enc,
            handle,
            own,
        })))
    }

    /// Runs `f` where the pool's connections live: on the store's own runtime when it
    /// has one ([`Self::connect_blocking`]); in place when called on a tokio runtime;
    /// otherwise (a blocking caller's `block_on` on a thread without a runtime) spawned
    /// onto the runtime the store was connected on, this caller waiting for it.
    async fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let handle = match &self.0.own {
            Some(rt) => rt.handle(),
            None if tokio::runtime::Handle::try_current().is_ok() => return f.await,
            None => &self.0.handle,
        };
        handle
            .spawn(f)
            .await
            .map_err(|e| backend(format!("store task failed: {e}")))?
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.0.pool.get().await.map_err(pool_error)
    }

    async fn read(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        let c = self.client().await?;
        let st = prepared(
            &c,
            &format!("SELECT {GRANT_COLUMNS} FROM class_oauth_grants WHERE storage_key = $1"),
        )
        .await?;
        let row = c.query_opt(&st, &[&key.storage_key()]).await.map_err(pg)?;
        row.map(|r| decode_grant(&self.0.enc, key, r.get(0), r.get(1), r.get(2), r.get(3)))
            .transpose()
    }

    async fn write_login(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let row = encode_grant(&self.0.enc, key, tokens, id_claims)?;
        let now = unix_now() as i64;
        let c = self.client().await?;
        match expected {
            Some(e) => {
                let n = c
                    .execute(
                        &prepared(&c, REPLACE_SQL).await?,
                        &[
                            &row.storage_key,
                            &row.business_code,
                            &row.scope,
                            &row.expires_at,
                            &row.key_id,
                            &row.sealed,
                            &now,
                            &(e as i64),
                            &row.received_at,
                        ],
                    )
                    .await
                    .map_err(pg)?;
                if n == 0 {
                    return Err(StoreError::Conflict { expected: e });
                }
                Ok(e + 1)
            }
            None => {
                let r = c
                    .query_one(
                        &prepared(&c, UPSERT_SQL).await?,
                        &[
                            &row.storage_key,
                            &key.client_id(),
                            &key.tenant(),
                            &key.subject(),
                            &key.scope(),
                            &row.business_code,
                            &row.scope,
                            &row.expires_at,
                            &row.key_id,
                            &row.sealed,
                            &now,
                            &row.received_at,
                        ],
                    )
                    .await
                    .map_err(pg)?;
                Ok(r.get::<_, i64>(0) as u64)
            }
        }
    }

    async fn write_update(&self, key: &TenantKey, update: OwnedUpdate) -> Result<u64, StoreError> {
        let (status, reason) = update.status.as_parts();
        let now = unix_now() as i64;
        let expected = update.expected_version as i64;
        let sql = update_sql(&update.as_grant_update());
        let c = self.client().await?;
        let n = match &update.tokens {
            Some((tokens, claims)) => {
                let row = encode_grant(&self.0.enc, key, tokens, claims.as_ref())?;
                let params: [&(dyn ToSql + Sync); 12] = [
                    &status,
                    &reason,
                    &now,
                    &update.release_lease_of,
                    &row.business_code,
                    &row.scope,
                    &row.expires_at,
                    &row.key_id,
                    &row.sealed,
                    &row.storage_key,
                    &expected,
                    &row.received_at,
                ];
                c.execute(&prepared(&c, &sql).await?, &params).await
            }
            None => {
                let storage_key = key.storage_key();
                let params: [&(dyn ToSql + Sync); 6] = [
                    &status,
                    &reason,
                    &now,
                    &update.release_lease_of,
                    &storage_key,
                    &expected,
                ];
                c.execute(&prepared(&c, &sql).await?, &params).await
            }
        }
        .map_err(pg)?;
        if n == 0 {
            return Err(StoreError::Conflict {
                expected: update.expected_version,
            });
        }
        Ok(update.expected_version + 1)
    }

    async fn take_lease(&self, key: &TenantKey, lease: Lease) -> Result<LeaseOutcome, StoreError> {
        let c = self.client().await?;
        let ttl = i64::try_from(lease.ttl.as_millis()).unwrap_or(i64::MAX / 2);
        // The in-doubt mark, when asked for, in the same statement: applied only when the
        // row still has the version the mark names (-1: no mark).
        let (mark_version, mark_status, mark_reason) = match &lease.mark {
            Some((v, status)) => {
                let (name, reason) = status.as_parts();
                (i64::try_from(*v).unwrap_or(-1), name, reason)
            }
            None => (-1, "", ""),
        };
        // One statement: the old lease is read under the row lock the UPDATE takes, so
        // two instances can never both see it free.
        let take = prepared(
            &c,
            &format!(
                    "WITH old AS (SELECT storage_key, lease_owner, version FROM class_oauth_grants WHERE storage_key = $1 FOR UPDATE) \
                     UPDATE class_oauth_grants g SET lease_owner = $2, lease_until = {DB_NOW_MS} + $3, \
                       status = CASE WHEN g.version = $4 THEN $5 ELSE g.status END, \
                       status_reason = CASE WHEN g.version = $4 THEN $6 ELSE g.status_reason END, \
                       version = CASE WHEN g.version = $4 THEN g.version + 1 ELSE g.version END FROM old \
                     WHERE g.storage_key = old.storage_key AND (g.lease_owner IS NULL OR g.lease_until <= {DB_NOW_MS}) \
                     RETURNING g.sealed, g.status, g.status_reason, g.version, old.lease_owner IS NOT NULL, old.version = $4"
            ),
        )
        .await?;
        let taken = c
            .query_opt(
                &take,
                &[
                    &key.storage_key(),
                    &lease.owner,
                    &ttl,
                    &mark_version,
                    &mark_status,
                    &mark_reason,
                ],
            )
            .await
            .map_err(pg)?;
        if let Some(r) = taken {
            let grant = decode_grant(&self.0.enc, key, r.get(0), r.get(1), r.get(2), r.get(3))?;
            return Ok(LeaseOutcome::Acquired {
                grant,
                took_over_expired: r.get(4),
                marked: r.get(5),
            });
        }
        let remaining = prepared(
            &c,
            &format!("SELECT GREATEST(lease_until - {DB_NOW_MS}, 0) FROM class_oauth_grants WHERE storage_key = $1"),
        )
        .await?;
        let held = c
            .query_opt(&remaining, &[&key.storage_key()])
            .await
            .map_err(pg)?;
        Ok(match held {
            None => LeaseOutcome::Missing,
            Some(r) => LeaseOutcome::Held {
                remaining: Duration::from_millis(
                    r.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64
                ),
            },
        })
    }
}

#[async_trait::async_trait]
impl TokenStore for PostgresStore {
    async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        let key = key.clone();
        let s = self.clone();
        self.run(async move { s.read(&key).await }).await
    }

    async fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let (key, tokens, id_claims) = (key.clone(), tokens.clone(), id_claims.cloned());
        let s = self.clone();
        self.run(async move {
            s.write_login(&key, &tokens, id_claims.as_ref(), expected)
                .await
        })
        .await
    }

    async fn update(&self, key: &TenantKey, update: &GrantUpdate<'_>) -> Result<u64, StoreError> {
        let (key, update) = (key.clone(), OwnedUpdate::from(update));
        let s = self.clone();
        self.run(async move { s.write_update(&key, update).await })
            .await
    }

    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        let key = key.clone();
        let s = self.clone();
        self.run(async move {
            let n = s
                .client()
                .await?
                .execute(DELETE_SQL, &[&key.storage_key()])
                .await
                .map_err(pg)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list(&self, query: &GrantQuery) -> Result<Vec<GrantSummary>, StoreError> {
        let query = query.clone();
        let s = self.clone();
        self.run(async move {
            let c = s.client().await?;
            let rows = c
                .query(
                    &prepared(&c, LIST_SQL).await?,
                    &[&query.after, &query.status, &query.sql_limit()],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| {
                    summary(
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        r.get(6),
                        r.get(7),
                        r.get(8),
                        r.get(9),
                        r.get(10),
                        r.get(11),
                        r.get(12),
                        r.get(13),
                        r.get(14),
                        r.get(15),
                    )
                })
                .collect())
        })
        .await
    }

    async fn acquire_lease(
        &self,
        key: &TenantKey,
        lease: &Lease,
    ) -> Result<LeaseOutcome, StoreError> {
        let (key, lease) = (key.clone(), lease.clone());
        let s = self.clone();
        self.run(async move { s.take_lease(&key, lease).await })
            .await
    }

    async fn release_lease(
        &self,
        key: &TenantKey,
        owner: &str,
        failure: Option<&str>,
    ) -> Result<(), StoreError> {
        let (key, owner) = (key.clone(), owner.to_owned());
        let failure = failure.map(last_error);
        let s = self.clone();
        self.run(async move {
            let c = s.client().await?;
            let st = prepared(&c, RELEASE_SQL).await?;
            c.execute(
                &st,
                &[&key.storage_key(), &owner, &failure, &(unix_now() as i64)],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
        .await
    }

    async fn claim_lapse_notice(
        &self,
        key: &TenantKey,
        lapses_at: u64,
        lead: Duration,
    ) -> Result<bool, StoreError> {
        let key = key.clone();
        let (at, lead) = (lapses_at as i64, lead.as_secs() as i64);
        let s = self.clone();
        self.run(async move {
            let c = s.client().await?;
            let st = prepared(&c, CLAIM_NOTICE_SQL).await?;
            let n = c
                .execute(&st, &[&key.storage_key(), &at, &lead])
                .await
                .map_err(pg)?;
            Ok(n == 1)
        })
        .await
    }

    async fn put_pending(
        &self,
        lookup: &str,
        pending: PendingAuthorization,
    ) -> Result<(), StoreError> {
        let lookup = lookup.to_owned();
        let s = self.clone();
        self.run(async move {
            let (hashed, sealed, expires_at) = encode_pending(&s.0.enc, &lookup, &pending)?;
            let c = s.client().await?;
            c.execute(PENDING_PURGE_SQL, &[&(unix_now() as i64)])
                .await
                .map_err(pg)?;
            c.execute(PENDING_PUT_SQL, &[&hashed, &expires_at, &sealed])
                .await
                .map_err(pg)?;
            Ok(())
        })
        .await
    }

    async fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let lookup = lookup.to_owned();
        let s = self.clone();
        self.run(async move {
            let row = s
                .client()
                .await?
                .query_opt(PENDING_TAKE_SQL, &[&pending_lookup(&lookup)])
                .await
                .map_err(pg)?;
            match row {
                Some(r) if r.get::<_, i64>(1) >= class_oauth_core::time::to_unix(now) as i64 => {
                    decode_pending(&s.0.enc, &lookup, r.get(0)).map(Some)
                }
                _ => Ok(None),
            }
        })
        .await
    }
}
