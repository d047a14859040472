//! The schema and health role: migrations, readiness, counters.

use async_trait::async_trait;

use super::{Result, StoreCounters};

/// The schema and the store's health: what start-up, `chairside migrate` and `/ready` need.
#[async_trait]
pub trait SchemaStore: Send + Sync + std::fmt::Debug + 'static {
    /// Applies pending schema migrations.
    ///
    /// # Errors
    /// [`StoreError::Migrate`](super::StoreError::Migrate).
    async fn migrate(&self) -> Result<()>;

    /// True when the database answers and the schema is current.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn ready(&self) -> Result<bool>;

    /// Counters for benchmarks and metrics.
    fn counters(&self) -> StoreCounters;

    /// Write transactions committed since start, by the place in the store's code that
    /// committed each (`sqlite/links.rs:61`), sorted by site. For the benchmark's count of writes
    /// by kind; empty when the store does not count them.
    fn write_sites(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}
