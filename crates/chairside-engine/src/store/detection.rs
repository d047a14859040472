//! The detection role: what the poller records beyond workflows: the install baseline, staff
//! tasks about plans that could not be read or checked, plans waiting for a retry of their
//! details, and each practice system's health.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{PlanId, PracticeId};
use serde::Serialize;

use super::{NewWorkflow, Result};
use crate::ports::PlanSummary;
use chairside_workflow::WorkflowId;

/// A staff task about a plan that detection could not use. Names the plan and the field path,
/// never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewDetectionTask {
    /// The plan (or `row N` when its id could not be read).
    pub plan_id: String,
    /// The version of the record (its change marker or content fingerprint).
    pub marker: String,
    /// The field path.
    pub field: String,
    /// What is wrong and what to do, without the value.
    pub problem: String,
}

/// A detection task as listed for staff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetectionTask {
    /// Row id (for resolving it).
    pub id: i64,
    /// The practice.
    pub practice_id: PracticeId,
    /// `dentrix`, `nexhealth`, `opendental`.
    pub source: String,
    /// What the task is about.
    #[serde(flatten)]
    pub task: NewDetectionTask,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When staff resolved it.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A plan whose details failed to load, waiting for its next try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPlan {
    /// The change feed's summary.
    pub summary: PlanSummary,
    /// Tries so far.
    pub attempts: u32,
    /// When to try again.
    pub next_at: DateTime<Utc>,
    /// The last failure's kind and description (no patient data).
    pub last_error: String,
}

/// A plan rejected or deleted in the practice system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    /// The plan.
    pub plan_id: PlanId,
    /// `rejected` or `deleted`.
    pub reason: &'static str,
    /// The change marker of the record that said so.
    pub marker: String,
}

/// Everything one poll of one practice system decided, recorded in one transaction.
#[derive(Clone, Debug, Default)]
pub struct DetectionBatch {
    /// The cursor to store (already clamped to now).
    pub cursor: String,
    /// The first poll of this practice system: record `baseline` and the install time.
    pub baseline_poll: bool,
    /// Plans accepted before the install (first poll only).
    pub baseline: Vec<PlanId>,
    /// Workflows to start. A plan already known at the same revision is skipped; a live workflow
    /// of another revision is withdrawn (`edited`); a finished one is left alone and a staff task
    /// says the plan changed after financing was done.
    pub new: Vec<NewWorkflow>,
    /// Plans rejected or deleted: every workflow of the plan that is not cancelled is withdrawn,
    /// whatever its revision (the machine decides what a finished one undoes, as for any
    /// withdrawal).
    pub withdrawn: Vec<Withdrawal>,
    /// Staff tasks to open (once per plan, marker and field).
    pub tasks: Vec<NewDetectionTask>,
    /// Plans to retry later (inserted or updated).
    pub pending: Vec<PendingPlan>,
    /// Plans no longer waiting for a retry.
    pub cleared: Vec<PlanId>,
}

/// One practice system's detection health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetectionHealth {
    /// The practice.
    pub practice_id: PracticeId,
    /// `dentrix`, `nexhealth`, `opendental`.
    pub source: String,
    /// When the install baseline was taken (the first poll).
    pub baseline_at: Option<DateTime<Utc>>,
    /// The last poll that was recorded.
    pub last_good_poll_at: Option<DateTime<Utc>>,
    /// Polls failed in a row since then.
    pub consecutive_failures: u32,
    /// The kind of the last failure (no content).
    pub last_failure: Option<String>,
    /// Open detection tasks (records that could not be read or checked).
    pub unreadable_records: u32,
    /// Plans waiting for a retry of their details.
    pub pending_plans: u32,
}

/// Detection's records.
#[async_trait]
pub trait DetectionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Which of `plans` were accepted before the practice went live (in the baseline).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn in_baseline(
        &self,
        practice: &PracticeId,
        source: &str,
        plans: &[PlanId],
    ) -> Result<Vec<PlanId>>;

    /// Records one poll in one transaction (see [`DetectionBatch`]), marks the poll good in the
    /// health, and returns the ids of the workflows created.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn record_detection(
        &self,
        practice: &PracticeId,
        source: &str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>>;

    /// Records a poll that failed as a whole (`failure`: its kind, no content).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn record_poll_failure(
        &self,
        practice: &PracticeId,
        source: &str,
        failure: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Plans of this practice system waiting for a retry that is due at `now`.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode).
    async fn due_pending(
        &self,
        practice: &PracticeId,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<PendingPlan>>;

    /// Detection health of every practice system polled so far.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn detection_health(&self) -> Result<Vec<DetectionHealth>>;

    /// Detection tasks, open ones only unless `include_resolved`, newest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn detection_tasks(
        &self,
        practice: Option<&PracticeId>,
        include_resolved: bool,
    ) -> Result<Vec<DetectionTask>>;

    /// Resolves an open detection task of `practice`. Returns `false` when there is none.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn resolve_detection_task(
        &self,
        practice: &PracticeId,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

/// The staff task opened instead of a new workflow when a plan is edited after its financing
/// was completed: nothing finished is torn down automatically, a person decides. Shared by every
/// store.
pub(crate) fn edited_after_done(plan_id: &str, revision: &str) -> NewDetectionTask {
    NewDetectionTask {
        plan_id: plan_id.to_owned(),
        marker: revision.to_owned(),
        field: "plan.procedures".into(),
        problem: "what is financed changed after financing was completed; nothing was \
                  cancelled or restarted: review the plan with the patient"
            .into(),
    }
}
