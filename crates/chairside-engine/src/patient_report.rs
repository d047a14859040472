//! A patient's own report of a link-only lender's decision (Cherry approved $X, declined, still
//! waiting), from the patient page, and what staff do with it on the dashboard (docs/lenders.md,
//! "The patient's report").
//!
//! A report never decides anything by itself: it raises one staff task
//! ([`chairside_workflow::TaskKind::PatientReport`]). Staff then
//! - **confirm** it ([`PatientReports::confirm`]): exactly the reported decision goes through the
//!   one path a decision read in the lender's portal takes
//!   ([`StaffActions::act`] with [`StaffRequest::lender_decision`]), same checks, same audit;
//! - **correct** it: the workflow page's decision form, pre-filled with the report
//!   (`record_lender_decision` with what the portal shows);
//! - or mark it **not confirmed** ([`PatientReports::dismiss`]): the task closes, audited with
//!   who, and the patient page offers the application and the report form again.
//!
//! ```no_run
//! # async fn run(store: &dyn chairside_engine::store::Store, id: chairside_workflow::WorkflowId)
//! # -> Result<(), chairside_engine::staff::StaffError> {
//! use chairside_engine::patient_report::PatientReports;
//!
//! let reports = PatientReports::new(store, store);
//! if let Some(pending) = reports.pending(&id).await? {
//!     reports.confirm(&id, pending.task, None, "staff:alice", chrono::Utc::now()).await?;
//! }
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use financing_core::PracticeId;

use crate::staff::{Refusal, StaffActions, StaffError, StaffReceipt, StaffRequest};
use crate::store::patient_report::{
    NewPatientReport, PatientReportStore, PendingReport, ReportLimit, ReportReceipt, ReportRefusal,
};
use crate::store::{StaffStore, StoreError};
use chairside_workflow::WorkflowId;

/// The reason a confirmation carries in the audit trail.
pub const CONFIRMED: &str = "confirmed the patient's report";

/// Patients' reports and staff's answers to them, over the stores.
#[derive(Debug, Clone, Copy)]
pub struct PatientReports<'a> {
    reports: &'a dyn PatientReportStore,
    staff: &'a dyn StaffStore,
}

impl<'a> PatientReports<'a> {
    /// Over the report and staff roles (one store implements both).
    pub fn new(reports: &'a dyn PatientReportStore, staff: &'a dyn StaffStore) -> Self {
        Self { reports, staff }
    }

    /// Takes the patient's report from the page, within the default rate limit
    /// ([`ReportLimit::default`]): one task, replacing an earlier report's.
    ///
    /// # Errors
    /// The store's; a refusal is `Ok(Err(_))` and wrote nothing.
    pub async fn report(
        &self,
        workflow: &WorkflowId,
        report: &NewPatientReport,
        now: DateTime<Utc>,
    ) -> Result<Result<ReportReceipt, ReportRefusal>, StoreError> {
        let outcome = self
            .reports
            .record_patient_report(workflow, report, ReportLimit::default(), now)
            .await?;
        match &outcome {
            Ok(receipt) => tracing::info!(
                workflow = %workflow,
                lender = %report.lender,
                task = receipt.task,
                replaced = receipt.replaced.is_some(),
                "patient report taken"
            ),
            Err(refusal) => tracing::info!(%refusal, "patient report refused"),
        }
        Ok(outcome)
    }

    /// The workflow's report still waiting for staff, if any.
    ///
    /// # Errors
    /// The store's.
    pub async fn pending(
        &self,
        workflow: &WorkflowId,
    ) -> Result<Option<PendingReport>, StoreError> {
        self.reports.pending_patient_report(workflow).await
    }

    /// Staff's "Confirm" on report task `task`: records exactly the reported decision through
    /// `record_lender_decision` ([`StaffActions::act`]), answering that task, so the same checks
    /// apply (the workflow still waits for that lender, no decision queued) and the same audit
    /// line is written, with [`CONFIRMED`] as its reason.
    ///
    /// # Errors
    /// [`Refusal::StaleTask`] when `task` is not the open report's (a newer report replaced it,
    /// someone already answered it), [`Refusal::NothingToConfirm`] for "still waiting", and every
    /// refusal of a staff-recorded lender decision; nothing is written then.
    pub async fn confirm(
        &self,
        workflow: &WorkflowId,
        task: i64,
        practice: Option<&PracticeId>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<StaffReceipt, StaffError> {
        let stale = || {
            StaffError::Refused(Refusal::StaleTask {
                workflow: workflow.clone(),
                task,
            })
        };
        let Some(pending) = self.reports.pending_patient_report(workflow).await? else {
            return Err(stale());
        };
        if pending.task != task {
            return Err(stale());
        }
        let Some(decision) = pending.report.report.staff_report() else {
            return Err(StaffError::Refused(Refusal::NothingToConfirm {
                workflow: workflow.clone(),
            }));
        };
        let mut request =
            StaffRequest::lender_decision(workflow.clone(), pending.report.lender, decision, actor)
                .answering(task)
                .because(CONFIRMED);
        if let Some(practice) = practice {
            request = request.within(practice.clone());
        }
        // The task id is checked again inside the decision's transaction: a report replaced
        // between the read above and this write closed `task`, and the decision is refused.
        StaffActions::new(self.staff, actor).act(request, now).await
    }

    /// Staff's "Not confirmed" on report task `task`: closes it, audited with who; the workflow
    /// keeps waiting for the lender's decision.
    ///
    /// # Errors
    /// [`Refusal::StaleTask`] (already answered or replaced), [`Refusal::UnknownWorkflow`]
    /// (another practice's); nothing is written then.
    pub async fn dismiss(
        &self,
        workflow: &WorkflowId,
        task: i64,
        practice: Option<&PracticeId>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<PendingReport, StaffError> {
        let dismissed = self
            .reports
            .dismiss_patient_report(workflow, task, practice, actor, now)
            .await??;
        tracing::info!(workflow = %workflow, task, "patient report not confirmed");
        Ok(dismissed)
    }
}
