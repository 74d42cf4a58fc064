//! The schema: the store's migrations, applied under an advisory lock (or only checked,
//! when an application applies them with a tool of its own).

use super::*;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_lease.sql")),
    (
        3,
        include_str!("../../migrations/postgres/0003_grant_health.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_last_error.sql"),
    ),
    (
        5,
        include_str!("../../migrations/postgres/0005_lapse_notice.sql"),
    ),
];
const MIGRATION_LOCK: i64 = 0x636c_6173_735f_6f61; // "class_oa"

impl PostgresStore {
    /// The store's migrations in order: each version and its SQL, as shipped in the
    /// crate's `migrations/postgres/`. The store records each applied version in
    /// `class_oauth_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`
    /// (applied_at in Unix seconds); a migration tool of your own records them there too
    /// when the store's are off ([`PostgresOptions::apply_migrations`]).
    #[must_use]
    pub fn migrations() -> &'static [(i64, &'static str)] {
        MIGRATIONS
    }

    pub(super) async fn migrate(&self, options: &PostgresOptions) -> Result<(), StoreError> {
        let s = self.clone();
        let (schema, apply) = (options.schema.clone(), options.apply_migrations);
        self.run(async move {
            if apply {
                s.migrate_inline(schema.as_deref()).await
            } else {
                s.check_migrations().await
            }
        })
        .await
    }

    /// With the store's migrations off: every one must be recorded.
    pub(super) async fn check_migrations(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        let applied: Vec<i64> = match c
            .query("SELECT version FROM class_oauth_migrations", &[])
            .await
        {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            // 42P01: undefined_table.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                Vec::new()
            }
            Err(e) => return Err(pg(e)),
        };
        let missing: Vec<String> = MIGRATIONS
            .iter()
            .filter(|(v, _)| !applied.contains(v))
            .map(|(v, _)| v.to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(StoreError::Config(format!(
            "the database lacks the store's migrations {} (recorded in class_oauth_migrations) and applying them is off: apply PostgresStore::migrations() (the crate's migrations/postgres/*.sql), or let the store apply them",
            missing.join(", ")
        )))
    }

    pub(super) async fn migrate_inline(&self, schema: Option<&str>) -> Result<(), StoreError> {
        let mut c = self.0.pool.get().await.map_err(pool_error)?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        let result = async {
            if let Some(schema) = schema {
                // Checked first, so a role without CREATE on the database can use a
                // schema made for it. (`schema` is a checked identifier.)
                let exists = c
                    .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
                    .await?
                    .is_some();
                if !exists {
                    c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                        .await?;
                }
            }
            c.batch_execute("CREATE TABLE IF NOT EXISTS class_oauth_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)").await?;
            for (version, sql) in MIGRATIONS {
                let done = c
                    .query_opt(
                        "SELECT version FROM class_oauth_migrations WHERE version = $1",
                        &[version],
                    )
                    .await?;
                if done.is_none() {
                    let tx = c.transaction().await?;
                    tx.batch_execute(sql).await?;
                    tx.execute(
                        "INSERT INTO class_oauth_migrations (version, applied_at) VALUES ($1, $2)",
                        &[version, &(unix_now() as i64)],
                    )
                    .await?;
                    tx.commit().await?;
                }
            }
            Ok::<(), tokio_postgres::Error>(())
        }
        .await;
        let unlock = c
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result.map_err(pg)?;
        unlock.map_err(pg)?;
        Ok(())
    }
}
