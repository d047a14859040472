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

/// What kind of problem a detection task is about: what the staff alert and the
/// `plan.needs_staff` event name (`task`), so staff read what happened and what to do in their
/// language. Stored with the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionKind {
    /// A record of the practice system's change feed could not be read (garbage, a missing
    /// patient, an unreadable amount...).
    UnreadableRecord,
    /// The plan's details could not be read (the practice system answered something unusable).
    UnreadablePlan,
    /// The plan's details failed to load too many times in a row (or during a backfill).
    PlanNotLoading,
    /// The plan was read but fails a check (another plan or patient than asked for, an amount
    /// negative or above the ceiling, too many procedures).
    PlanCheck,
    /// What is financed changed after financing was completed.
    EditedAfterDone,
}

impl DetectionKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [
        Self::UnreadableRecord,
        Self::UnreadablePlan,
        Self::PlanNotLoading,
        Self::PlanCheck,
        Self::EditedAfterDone,
    ];

    /// The label (the event's `task`, the `[practices.staff_alerts] tasks` name).
    pub fn label(self) -> &'static str {
        match self {
            Self::UnreadableRecord => "unreadable_record",
            Self::UnreadablePlan => "unreadable_plan",
            Self::PlanNotLoading => "plan_not_loading",
            Self::PlanCheck => "plan_check",
            Self::EditedAfterDone => "edited_after_done",
        }
    }

    /// Parses a label.
    pub fn from_label(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == s)
    }
}

/// A staff task about a plan that detection could not use. Names the plan and the field path,
/// never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewDetectionTask {
    /// What kind of problem it is.
    pub kind: DetectionKind,
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

    /// One detection task of `practice` by its row id, open or resolved (a staff alert reads it
    /// when it goes out: a task resolved by then is not alerted).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn detection_task(&self, practice: &PracticeId, id: i64)
    -> Result<Option<DetectionTask>>;

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
        kind: DetectionKind::EditedAfterDone,
        plan_id: plan_id.to_owned(),
        marker: revision.to_owned(),
        field: "plan.procedures".into(),
        problem: "what is financed changed after financing was completed; nothing was \
                  cancelled or restarted: review the plan with the patient"
            .into(),
    }
}

/// The `plan.needs_staff` event of a detection task just opened as row `row`: written in the
/// task's transaction, by every store. Its id is derived from the practice, the practice system,
/// the plan, the record's version and the field, so a task raised again for the same version
/// (which the task table refuses anyway) could never write a second event.
pub(crate) fn task_event(
    practice: &PracticeId,
    source: &str,
    row: i64,
    task: &NewDetectionTask,
    now: DateTime<Utc>,
) -> crate::outbound::events::OutboundEvent {
    crate::outbound::events::plan_needs_staff(
        crate::outbound::events::PlanTask {
            practice_id: practice.as_str(),
            source,
            plan_id: &task.plan_id,
            marker: &task.marker,
            field: &task.field,
            kind: task.kind.label(),
            row,
        },
        now,
    )
}

/// A `detection_tasks` row (every column, `kind` included) as a [`DetectionTask`]: the same on
/// every store.
pub(crate) fn detection_task_from_row<R>(r: &R) -> Result<DetectionTask>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = r.try_get("kind")?;
    let at = |v: i64| DateTime::from_timestamp_millis(v).unwrap_or_default();
    Ok(DetectionTask {
        id: r.try_get("id")?,
        practice_id: PracticeId::new(r.try_get::<String, _>("practice_id")?),
        source: r.try_get("source")?,
        task: NewDetectionTask {
            // Written by this code only; an unknown label reads as the most general kind.
            kind: DetectionKind::from_label(&kind).unwrap_or(DetectionKind::UnreadableRecord),
            plan_id: r.try_get("plan_id")?,
            marker: r.try_get("marker")?,
            field: r.try_get("field")?,
            problem: r.try_get("problem")?,
        },
        created_at: at(r.try_get("created_at")?),
        resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(at),
    })
}
