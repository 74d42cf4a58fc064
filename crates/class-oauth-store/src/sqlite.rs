//! SQLite: the embedded default. One file (created with mode 0600), WAL mode with
//! `synchronous=FULL` (a committed rotation survives power loss), one connection per
//! store value, its statements taken in turn (SQLite runs one writer at a time anyway,
//! and the manager's reads come from its own cache). The refresh lease is columns of the row (owner, expiry, and the holding
//! process: boot, pid, start time), taken and released by short write transactions;
//! nothing is held while a refresh talks to Class, so other processes using the same
//! file are never blocked for longer than one statement. A lease whose holding process
//! is gone (killed, crashed) is taken over at once by the next process on the host
//! instead of waiting out its expiry (Linux; elsewhere the expiry applies).

use std::path::Path;
use std::time::{Duration, SystemTime};

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;
use rusqlite::{OptionalExtension, params};

use crate::row::{
    CLAIM_NOTICE_SQL, DELETE_SQL, GRANT_COLUMNS, LIST_SQL, PENDING_PURGE_SQL, PENDING_PUT_SQL,
    PENDING_TAKE_SQL, RELEASE_SQL, REPLACE_SQL, UPSERT_SQL, decode_grant, decode_pending,
    encode_grant, encode_pending, pending_lookup, sqlite, summary, update_sql,
};
use crate::{
    Encryption, GrantQuery, GrantSummary, GrantUpdate, Lease, LeaseOutcome, StoreError,
    StoredGrant, TenantKey, TokenStore, last_error, unix_now,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_lease.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_lease_holder.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_grant_health.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_last_error.sql")),
    (
        6,
        include_str!("../migrations/sqlite/0006_lapse_notice.sql"),
    ),
];

/// How long a statement waits for another connection's write transaction. Every write
/// transaction here is one or two statements long, so this is generous.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Conn<'a> = std::sync::MutexGuard<'a, rusqlite::Connection>;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn unix_millis() -> i64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "lease expiry is the store's own clock"
    )]
    let now = SystemTime::now();
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A grant with its lease's owner and expiry (milliseconds).
type LeasedRow = (StoredGrant, Option<String>, Option<i64>);

/// A token store in an SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    enc: std::sync::Arc<Encryption>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Creates the database file readable by its owner only (0600), if it does not exist.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(backend(format!("creating {}: {e}", path.display()))),
    }
}

/// The database file must be writable by its owner (a store that opens read-only could
/// not keep a rotated refresh token), and SQLite's side files (`-wal`, `-shm`) are as
/// private as the store: 0600. SQLite creates them with the database's mode, so a store
/// once used while it was 0400 leaves a 0400 `-shm` behind that would keep it read-only
/// after the user restored 0600: such a file is put back to 0600, or named in the error.
/// The mode bits are checked, not `access(2)`, so the answer is the same for root.
#[cfg(unix)]
fn check_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    let db = mode(path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
    if db & 0o200 == 0 {
        return Err(StoreError::ReadOnly(format!(
            "{} has mode {db:04o}, which its owner cannot write; restore it with `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = Path::new(&side);
        let Ok(m) = mode(side) else { continue };
        if m != 0o600 {
            std::fs::set_permissions(side, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    StoreError::ReadOnly(format!(
                        "{} (SQLite's side file of the store) has mode {m:04o} and could not be made 0600: {e}",
                        side.display()
                    ))
                },
            )?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_files(path: &Path) -> Result<(), StoreError> {
    let meta = std::fs::metadata(path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
    if meta.permissions().readonly() {
        return Err(StoreError::ReadOnly(format!(
            "{} is read-only",
            path.display()
        )));
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600) the database file and applies the
    /// migrations. A database (or a side file) that cannot be written is
    /// [`StoreError::ReadOnly`], naming the file.
    pub fn open(path: impl AsRef<Path>, encryption: Encryption) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(backend)?;
        }
        create_private(path)?;
        check_files(path)?;
        let conn = rusqlite::Connection::open(path).map_err(backend)?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::ReadOnly(format!(
                "{} opened read-only (check its owner and mode, and those of its directory)",
                path.display()
            )));
        }
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(backend)?;
        let store = Self {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
            enc: std::sync::Arc::new(encryption),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Runs one operation's statements: on tokio's blocking pool when called on a tokio
    /// runtime (feature `tokio`), so file I/O and SQLite's busy wait never block the
    /// executor; in place elsewhere (a blocking caller's thread).
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        #[cfg(feature = "tokio")]
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let s = self.clone();
            return handle
                .spawn_blocking(move || f(&s))
                .await
                .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?;
        }
        f(self)
    }

    /// The connection. A panic in another holder leaves nothing half-done (an open
    /// transaction rolls back when dropped), so a poisoned lock is taken as it is.
    fn conn(&self) -> Result<Conn<'_>, StoreError> {
        Ok(self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
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

    fn read(
        &self,
        c: &rusqlite::Connection,
        key: &TenantKey,
    ) -> Result<Option<LeasedRow>, StoreError> {
        type Row = (String, String, String, i64, Option<String>, Option<i64>);
        let row: Option<Row> = c
            .query_row(
                &format!("SELECT {GRANT_COLUMNS}, lease_owner, lease_until FROM class_oauth_grants WHERE storage_key = ?1"),
                params![key.storage_key()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()
            .map_err(backend)?;
        row.map(|(sealed, status, reason, version, owner, until)| {
            decode_grant(&self.enc, key, &sealed, &status, &reason, version)
                .map(|g| (g, owner, until))
        })
        .transpose()
    }
}

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
    async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        let key = key.clone();
        self.call(move |s| {
            let key = &key;
            let c = s.conn()?;
            Ok(s.read(&c, key)?.map(|(g, _, _)| g))
        })
        .await
    }

    async fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        let (key, tokens, id_claims) = (key.clone(), tokens.clone(), id_claims.cloned());
        self.call(move |s| {
            let (key, tokens, id_claims) = (&key, &tokens, id_claims.as_ref());
            let row = encode_grant(&s.enc, key, tokens, id_claims)?;
            let now = unix_now() as i64;
            let c = s.conn()?;
            match expected_version {
                Some(e) => {
                    let n = c
                        .execute(
                            &sqlite(REPLACE_SQL),
                            params![
                                row.storage_key,
                                row.business_code,
                                row.scope,
                                row.expires_at,
                                row.key_id,
                                row.sealed,
                                now,
                                e as i64,
                                row.received_at
                            ],
                        )
                        .map_err(backend)?;
                    if n == 0 {
                        return Err(StoreError::Conflict { expected: e });
                    }
                    Ok(e + 1)
                }
                None => c
                    .query_row(
                        &sqlite(UPSERT_SQL),
                        params![
                            row.storage_key,
                            key.client_id(),
                            key.tenant(),
                            key.subject(),
                            key.scope(),
                            row.business_code,
                            row.scope,
                            row.expires_at,
                            row.key_id,
                            row.sealed,
                            now,
                            row.received_at
                        ],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|v| v as u64)
                    .map_err(backend),
            }
        })
        .await
    }

    async fn update(&self, key: &TenantKey, update: &GrantUpdate<'_>) -> Result<u64, StoreError> {
        let (key, update) = (key.clone(), crate::OwnedUpdate::from(update));
        self.call(move |s| {
            let (key, update) = (&key, &update.as_grant_update());
            let (status, reason) = update.status.as_parts();
            let now = unix_now() as i64;
            let sql = sqlite(&update_sql(update));
            let c = s.conn()?;
            let expected = update.expected_version as i64;
            let n = match update.tokens {
                Some((tokens, claims)) => {
                    let row = encode_grant(&s.enc, key, tokens, claims)?;
                    c.execute(
                        &sql,
                        params![
                            status,
                            reason,
                            now,
                            update.release_lease_of,
                            row.business_code,
                            row.scope,
                            row.expires_at,
                            row.key_id,
                            row.sealed,
                            row.storage_key,
                            expected,
                            row.received_at
                        ],
                    )
                }
                None => c.execute(
                    &sql,
                    params![
                        status,
                        reason,
                        now,
                        update.release_lease_of,
                        key.storage_key(),
                        expected
                    ],
                ),
            }
            .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::Conflict {
                    expected: update.expected_version,
                });
            }
            Ok(update.expected_version + 1)
        })
        .await
    }

    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.call(move |s| {
            let key = &key;
            let n = s
                .conn()?
                .execute(&sqlite(DELETE_SQL), params![key.storage_key()])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list(&self, query: &GrantQuery) -> Result<Vec<GrantSummary>, StoreError> {
        let query = query.clone();
        self.call(move |s| {
            let c = s.conn()?;
            let mut stmt = c.prepare_cached(&sqlite(LIST_SQL)).map_err(backend)?;
            let rows = stmt
                .query_map(params![query.after, query.status, query.sql_limit()], |r| {
                    Ok(summary(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        &r.get::<_, String>(7)?,
                        &r.get::<_, String>(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                        r.get(13)?,
                        r.get(14)?,
                        r.get(15)?,
                    ))
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn acquire_lease(
        &self,
        key: &TenantKey,
        lease: &Lease,
    ) -> Result<LeaseOutcome, StoreError> {
        let (key, lease) = (key.clone(), lease.clone());
        self.call(move |s| {
            let (key, lease) = (&key, &lease);
            let mut c = s.conn()?;
            // One short write transaction: read the lease, take it when free or expired.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some((mut grant, owner, until)) = s.read(&tx, key)? else {
                return Ok(LeaseOutcome::Missing);
            };
            let now = unix_millis();
            let took_over_expired = match (owner, until) {
                (Some(_), Some(until)) if until > now => {
                    // A live lease, unless its holder process is provably gone.
                    let holder: Option<String> = tx
                        .query_row(
                            "SELECT lease_holder FROM class_oauth_grants WHERE storage_key = ?1",
                            params![key.storage_key()],
                            |r| r.get(0),
                        )
                        .map_err(backend)?;
                    if !holder.as_deref().is_some_and(crate::holder::is_gone) {
                        return Ok(LeaseOutcome::Held {
                            remaining: Duration::from_millis((until - now) as u64),
                        });
                    }
                    tracing::info!(tenant = %key, "took over the refresh lease of a process that is gone");
                    true
                }
                (Some(_), _) => true,
                _ => false,
            };
            let ttl = i64::try_from(lease.ttl.as_millis()).unwrap_or(i64::MAX / 2);
            tx.execute(
                "UPDATE class_oauth_grants SET lease_owner = ?2, lease_until = ?3, lease_holder = ?4 WHERE storage_key = ?1",
                params![
                    key.storage_key(),
                    lease.owner,
                    now.saturating_add(ttl),
                    crate::holder::this_process()
                ],
            )
            .map_err(backend)?;
            let marked = match &lease.mark {
                Some((version, status)) if *version == grant.version => {
                    let (name, reason) = status.as_parts();
                    tx.execute(
                        "UPDATE class_oauth_grants SET status = ?2, status_reason = ?3, version = version + 1, updated_at = ?4 WHERE storage_key = ?1 AND version = ?5",
                        params![key.storage_key(), name, reason, unix_now() as i64, *version as i64],
                    )
                    .map_err(backend)?
                        == 1
                }
                _ => false,
            };
            tx.commit().map_err(backend)?;
            if marked {
                if let Some((_, status)) = &lease.mark {
                    grant.status = status.clone();
                    grant.version += 1;
                }
            }
            Ok(LeaseOutcome::Acquired {
                grant,
                took_over_expired,
                marked,
            })
        })
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
        self.call(move |s| {
            let (key, owner) = (&key, owner.as_str());
            s.conn()?
                .execute(
                    &sqlite(RELEASE_SQL),
                    params![key.storage_key(), owner, failure, unix_now() as i64],
                )
                .map_err(backend)?;
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
        self.call(move |s| {
            let n = s
                .conn()?
                .execute(
                    &sqlite(CLAIM_NOTICE_SQL),
                    params![key.storage_key(), at, lead],
                )
                .map_err(backend)?;
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
        self.call(move |s| {
            let lookup = lookup.as_str();
            let (hashed, sealed, expires_at) = encode_pending(&s.enc, lookup, &pending)?;
            let c = s.conn()?;
            c.execute(&sqlite(PENDING_PURGE_SQL), params![unix_now() as i64])
                .map_err(backend)?;
            c.execute(
                &sqlite(PENDING_PUT_SQL),
                params![hashed, expires_at, sealed],
            )
            .map_err(backend)?;
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
        self.call(move |s| {
            let lookup = lookup.as_str();
            let row: Option<(String, i64)> = s
                .conn()?
                .query_row(
                    &sqlite(PENDING_TAKE_SQL),
                    params![pending_lookup(lookup)],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            match row {
                Some((sealed, expires_at))
                    if expires_at >= class_oauth_core::time::to_unix(now) as i64 =>
                {
                    decode_pending(&s.enc, lookup, &sealed).map(Some)
                }
                _ => Ok(None),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed rotation must survive power loss: WAL with `synchronous=FULL` syncs
    /// the log on every commit (NORMAL does not).
    #[test]
    fn every_connection_syncs_on_commit() {
        let dir = std::env::temp_dir().join(format!("class-oauth-sync-{}", std::process::id()));
        let store = SqliteStore::open(dir.join("g.sqlite3"), Encryption::Refuse).unwrap();
        let c = store.conn().unwrap();
        let (mode, sync): (String, i64) = (
            c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap(),
            c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap(),
        );
        assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
        drop(c);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(all(test, unix))]
mod permissions {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    /// A store made read-only is an error naming the file; a `-shm` left 0400 from that
    /// time is made private again (0600) once the store is writable, instead of keeping
    /// the store read-only; the side files are as private as the store.
    #[test]
    fn a_read_only_store_names_its_file_and_side_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("grants.sqlite3");
        drop(SqliteStore::open(&db, Encryption::DangerPlaintext).unwrap());
        let side = |s: &str| dir.path().join(format!("grants.sqlite3{s}"));
        chmod(&db, 0o400);
        let err = SqliteStore::open(&db, Encryption::DangerPlaintext).unwrap_err();
        assert!(
            matches!(&err, StoreError::ReadOnly(m) if m.contains("grants.sqlite3") && m.contains("0400")),
            "{err}"
        );
        assert!(!err.is_transient());
        // The user restores the store; a side file still has the old mode.
        chmod(&db, 0o600);
        std::fs::write(side("-shm"), b"").unwrap();
        chmod(&side("-shm"), 0o400);
        let store = SqliteStore::open(&db, Encryption::DangerPlaintext).unwrap();
        assert!(
            pollster::block_on(store.list(&GrantQuery::all()))
                .unwrap()
                .is_empty()
        );
        for s in ["-wal", "-shm"] {
            if side(s).exists() {
                assert_eq!(mode(&side(s)), 0o600, "{s}");
            }
        }
        assert_eq!(mode(&db), 0o600);
    }
}
