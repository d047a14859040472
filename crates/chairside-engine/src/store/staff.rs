//! The staff role: one decision, checked and recorded in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Result;
use crate::staff::{Refusal, StaffReceipt, StaffRequest};

/// Staff decisions on a workflow. Callers go through
/// [`StaffActions`](crate::staff::StaffActions); this is what a store implements for it.
#[async_trait]
pub trait StaffStore: Send + Sync + std::fmt::Debug + 'static {
    /// In one transaction: reads the workflow, its open tasks and any staff decision still
    /// queued, asks [`crate::staff::admit`] whether `request` applies, and if so queues
    /// `Event::Staff` for the runner (which applies it through the machine under its lease),
    /// resolves the open tasks and appends the audit line. A refusal writes nothing.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode). A refusal is `Ok(Err(_))`.
    async fn act_as_staff(
        &self,
        request: &StaffRequest,
        now: DateTime<Utc>,
    ) -> Result<Result<StaffReceipt, Refusal>>;
}
