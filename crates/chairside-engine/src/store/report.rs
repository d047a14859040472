//! The reporting role: workflows, staff tasks and the audit trail as people read them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;

use super::{AuditRow, Result, TaskRow, WorkflowRow};

/// How many workflows (newest first) [`ReportStore::workflow_by_payment`] reads.
pub const PAYMENT_SEARCH_LIMIT: u32 = 100_000;

/// When a workflow was accepted and when its ledger note was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerNoteTime {
    /// The workflow.
    pub id: WorkflowId,
    /// Accepted in the practice system.
    pub accepted_at: DateTime<Utc>,
    /// The outcome note written to the ledger.
    pub written_at: DateTime<Utc>,
}
use chairside_workflow::{Status, WorkflowId};

/// Workflows, staff tasks and the audit trail, for the dashboard, the patient page,
/// `chairside status` and the metrics; and audit lines appended outside a step (disclosures).
#[async_trait]
pub trait ReportStore: Send + Sync + std::fmt::Debug + 'static {
    /// One workflow.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode).
    async fn workflow(&self, id: &WorkflowId) -> Result<Option<WorkflowRow>>;

    /// One workflow, when `generation` is its current patient link generation
    /// ([`LinkStore::link_generation`](super::LinkStore::link_generation)); `None` for an older
    /// generation or an unknown workflow. What the patient page checks a token against, read
    /// together where the store can (SQLite: one hop to its reader thread).
    ///
    /// # Errors
    /// As [`ReportStore::workflow`].
    async fn workflow_at_generation(
        &self,
        id: &WorkflowId,
        generation: u64,
    ) -> Result<Option<WorkflowRow>>;

    /// The workflow that recorded the Stripe payment `stripe_id` (a `pi_…` it noted, one that
    /// paid an installment invoice, or its saved card's charge), if any: how a dispute, which carries no workflow metadata, finds its
    /// workflow. States are sealed at rest, so this reads them (newest first, at most
    /// [`PAYMENT_SEARCH_LIMIT`]): disputes are rare; a store with an index may do better.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode).
    async fn workflow_by_payment(&self, stripe_id: &str) -> Result<Option<WorkflowId>> {
        if stripe_id.is_empty() {
            return Ok(None);
        }
        let rows = self.workflows(None, None, PAYMENT_SEARCH_LIMIT).await?;
        Ok(rows.into_iter().map(|r| r.state).find_map(|s| {
            let stripe = &s.stripe;
            let recorded = stripe.payments_noted.iter().any(|p| p == stripe_id)
                || stripe.invoice_payment_intents.iter().any(|p| p == stripe_id)
                || stripe.card_charges.iter().any(|c| {
                    matches!(&c.state, chairside_workflow::CardChargeState::Paid { payment_intent } if payment_intent == stripe_id)
                });
            recorded.then_some(s.id)
        }))
    }

    /// Workflows, newest first, optionally of one practice or status.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode).
    async fn workflows(
        &self,
        practice: Option<&PracticeId>,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<WorkflowRow>>;

    /// How many workflows there are in each status (statuses with none are left out, and
    /// quarantined workflows are not counted under any): one aggregate over the status column,
    /// nothing decoded. For the metrics.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn workflow_counts(&self) -> Result<Vec<(Status, u64)>>;

    /// Workflows whose ledger note was written after the `after` mark (`(written at, id)`, or
    /// from the start), oldest note first, at most `limit`: their id, acceptance and note times,
    /// read from columns, nothing decoded. For the operatory-to-ledger histogram.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn ledger_notes_after(
        &self,
        after: Option<&(DateTime<Utc>, WorkflowId)>,
        limit: u32,
    ) -> Result<Vec<LedgerNoteTime>>;

    /// Staff tasks, open ones only unless `include_resolved`.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn tasks(
        &self,
        practice: Option<&PracticeId>,
        include_resolved: bool,
    ) -> Result<Vec<TaskRow>>;

    /// A workflow's audit trail, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn audit(&self, workflow: &WorkflowId) -> Result<Vec<AuditRow>>;

    /// Appends one audit line (disclosures to the patient; staff actions go through
    /// [`StaffStore`](super::StaffStore), which writes theirs in the same transaction).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn append_audit(
        &self,
        workflow: &WorkflowId,
        actor: &str,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;
}
