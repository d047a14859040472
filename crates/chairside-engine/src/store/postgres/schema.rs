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
            write_transactions: self.writes.load(Ordering::Relaxed),
            skipped_undecodable: self.skipped.load(Ordering::Relaxed),
        }
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
