//! The schema and health role on SQLite.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::{MIGRATOR, SqliteStore};
use crate::store::{Result, SchemaStore, StoreCounters};

#[async_trait]
impl SchemaStore for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        // Rows written in clear before migration 0003 are sealed now, before anything reads them.
        self.seal_legacy_rows().await?;
        Ok(())
    }

    async fn ready(&self) -> Result<bool> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
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
