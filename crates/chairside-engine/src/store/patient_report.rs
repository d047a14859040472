//! The patient-report role: a patient's own report of a link-only lender's decision from the
//! patient page, the one staff task it raises, and staff's "Not confirmed" (docs/lenders.md).
//!
//! A report never decides anything: staff confirm it through
//! [`StaffActions`](crate::staff::StaffActions) (`record_lender_decision`, the same path and
//! audit as a decision read in the lender's portal), which closes the report's task with the
//! workflow's other open tasks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{Language, LenderId, PracticeId};
use serde::{Deserialize, Serialize};

use super::Result;
use crate::staff::Refusal;
use chairside_workflow::WorkflowId;
use chairside_workflow::patient_report::{NotAccepted, PatientReport};

/// The audit `kind` of a patient's report.
pub const REPORT_AUDIT_KIND: &str = "patient_report";

/// The actor a patient's report is audited as.
pub const PATIENT_ACTOR: &str = "patient";

/// The task resolution of a report replaced by the patient's next one.
pub const REPLACED: &str = "replaced by the patient's next report";

/// A report as the patient page took it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPatientReport {
    /// The link-only lender the patient says they applied with.
    pub lender: LenderId,
    /// The lender's name as the page and the task show it (`Cherry`).
    pub lender_name: String,
    /// What the patient says it decided.
    pub report: PatientReport,
    /// The page's language when the patient reported.
    pub language: Language,
}

/// How many reports one workflow takes within a window (the page's rate limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportLimit {
    /// At most this many reports...
    pub max: u32,
    /// ...within this window.
    pub window: chrono::Duration,
}

impl Default for ReportLimit {
    /// Five an hour: enough to correct a typo twice, too few to flood the task list.
    fn default() -> Self {
        Self {
            max: 5,
            window: chrono::Duration::hours(1),
        }
    }
}

/// A report taken and its task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportReceipt {
    /// The staff task raised for it.
    pub task: i64,
    /// The open task of an earlier report it replaced (closed as [`REPLACED`]).
    pub replaced: Option<i64>,
}

/// Why a report was not taken. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportRefusal {
    /// No such workflow.
    #[error("there is no workflow {0}")]
    UnknownWorkflow(WorkflowId),
    /// The workflow does not take a report about that lender now.
    #[error("workflow {workflow}: no report taken: {why}")]
    NotAccepted {
        /// The workflow.
        workflow: WorkflowId,
        /// Why (the pure rule's answer).
        why: NotAccepted,
    },
    /// Staff already queued a decision (or a cancel) the runner has not applied yet.
    #[error("workflow {0}: a staff decision is already queued")]
    DecisionQueued(WorkflowId),
    /// Too many reports within [`ReportLimit::window`].
    #[error("workflow {0}: too many reports; try again later")]
    RateLimited(WorkflowId),
}

/// A report whose task is still open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingReport {
    /// Its staff task.
    pub task: i64,
    /// The report.
    pub report: NewPatientReport,
    /// When the patient sent it.
    pub reported_at: DateTime<Utc>,
}

/// Patients' reports of link-only lenders' decisions.
#[async_trait]
pub trait PatientReportStore: Send + Sync + std::fmt::Debug + 'static {
    /// In one transaction: reads the workflow, refuses unless
    /// [`chairside_workflow::patient_report::accepts`] takes a report about `report.lender` at
    /// `now`, no staff decision is queued and the workflow took fewer than `limit.max` reports
    /// within `limit.window`; then closes the open task of an earlier report (if any), raises one
    /// [`chairside_workflow::TaskKind::PatientReport`] task worded by
    /// [`PatientReport::task_reason`], keeps the report (sealed) and appends the audit line.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode). A refusal is `Ok(Err(_))`.
    async fn record_patient_report(
        &self,
        workflow: &WorkflowId,
        report: &NewPatientReport,
        limit: ReportLimit,
        now: DateTime<Utc>,
    ) -> Result<Result<ReportReceipt, ReportRefusal>>;

    /// The workflow's report whose task is still open, if any.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode).
    async fn pending_patient_report(&self, workflow: &WorkflowId) -> Result<Option<PendingReport>>;

    /// Staff's "Not confirmed": in one transaction, closes report task `task` of `workflow`
    /// (only within `practice`, when given) as `not_confirmed by {actor}` and appends the audit
    /// line with who. The workflow goes on waiting for the lender's decision. Refused with
    /// [`Refusal::StaleTask`] when the task is no longer open (a double click, a newer report,
    /// a decision recorded), [`Refusal::UnknownWorkflow`] for another practice's workflow.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode). A refusal is `Ok(Err(_))`.
    async fn dismiss_patient_report(
        &self,
        workflow: &WorkflowId,
        task: i64,
        practice: Option<&PracticeId>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<PendingReport, Refusal>>;
}

/// The audit line of a report taken.
pub fn report_audit_detail(report: &NewPatientReport, replaced: Option<i64>) -> String {
    let mut detail = format!(
        "patient reports {} {} on the patient page ({})",
        report.lender,
        report.report,
        report.language.tag()
    );
    if let Some(task) = replaced {
        detail.push_str(&format!("; replaces the report of task {task}"));
    }
    detail
}

/// The audit line of staff's "Not confirmed".
pub fn dismiss_audit_detail(report: &NewPatientReport) -> String {
    format!(
        "patient_report_not_confirmed: {} {}",
        report.lender, report.report
    )
}

// Used as a trait object, like every role.
#[cfg(test)]
fn _obj_safe(_: &dyn PatientReportStore) {}
