//! The schema and health role on PostgreSQL.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::{MIGRATOR, PostgresStore};
use crate::store::{Result, SchemaStore, StoreCounters};

#[async_trait]
impl SchemaStore for PostgresStore {
    async fn migrate(&self) -> Result<()> {
        // sqlx holds an advisory lock while it migrates: instances starting together apply each
        // migration once. No row was ever written in clear here, so nothing is sealed after.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<bool> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(0);
        Ok(applied as usize >= MIGRATOR.iter().count())
    }

    fn counters(&self) -> StoreCounters {
        StoreCounters {
            write_transactions: self.writes.total(),
            commits: self.commits(),
            skipped_undecodable: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn write_sites(&self) -> Vec<(String, u64)> {
        self.writes.by_site()
    }
}

impl PostgresStore {
    /// The value of a server setting as this store's connections see it (`synchronous_commit`,
    /// `lock_timeout`), for operators and tests.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::store::StoreError::Database).
    pub async fn setting(&self, name: &str) -> Result<String> {
        Ok(sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
    }
}

/// Whether `name` is safe as an unquoted database name.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

fn bad_name() -> crate::store::StoreError {
    crate::store::StoreError::Database(sqlx::Error::Configuration(
        "a database name is lowercase letters, digits and '_'".into(),
    ))
}

impl PostgresStore {
    /// Creates the empty database `name` (lowercase letters, digits, `_`) on the server
    /// `admin_url` names, as its role (which must be allowed to create databases), and returns
    /// the URL of the new database. For tests and the benchmark: each run gets its own.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::store::StoreError::Database).
    pub async fn create_database(admin_url: &str, name: &str) -> Result<String> {
        use sqlx::Connection as _;
        if !plain_name(name) {
            return Err(bad_name());
        }
        let mut url =
            url::Url::parse(admin_url).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await.ok();
        url.set_path(name);
        Ok(url.to_string())
    }

    /// Drops the database `name` on the server `admin_url` names, closing its connections.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::store::StoreError::Database).
    pub async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
        use sqlx::Connection as _;
        if !plain_name(name) {
            return Err(bad_name());
        }
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        conn.close().await.ok();
        Ok(())
    }

    /// The size on disk of this store's database (`pg_database_size`), in bytes.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::store::StoreError::Database).
    pub async fn database_size(&self) -> Result<u64> {
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(size).unwrap_or(0))
    }
}
