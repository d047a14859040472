//! The inbound role: what the poller and the webhooks bring in.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;

use super::{NewWorkflow, Result};
use chairside_workflow::{Event, WorkflowId};

/// What arrives from outside: polls of the practice systems, webhook deliveries, queued events.
/// The runner applies what is queued here under its lease.
#[async_trait]
pub trait InboundStore: Send + Sync + std::fmt::Debug + 'static {
    /// Records what one poll of a practice system found, in one transaction: the new workflows
    /// (a plan already known is skipped), events for known workflows (a plan rejected after
    /// acceptance), and the advanced cursor. Returns the ids of the workflows created.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn record_poll(
        &self,
        practice: &PracticeId,
        source: &str,
        cursor: &str,
        new: Vec<NewWorkflow>,
        events: Vec<(WorkflowId, Event)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>>;

    /// The cursor of a practice's source, if any poll was recorded.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn cursor(&self, practice: &PracticeId, source: &str) -> Result<Option<String>>;

    /// Queues an event for a workflow; it is applied under the lease by the runner.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn enqueue(
        &self,
        workflow: &WorkflowId,
        source: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Records a verified webhook delivery and its events in one transaction. Returns `false`
    /// (and writes nothing) when the provider's event id was already recorded.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn record_webhook(
        &self,
        provider: &str,
        event_id: &str,
        events: Vec<(WorkflowId, Event)>,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}
