//! A patient's report of a link-only lender's decision on the dashboard: the task's buttons
//! ("Confirm", "Not confirmed") and what they do (docs/lenders.md, "The patient's report").
//! Correcting a report is the workflow page's decision form, pre-filled with it.

use axum::response::Response;
use chairside_engine::patient_report::PatientReports;
use chairside_engine::staff::{Refusal, StaffError};
use chairside_engine::store::StoreError;
use chairside_engine::store::patient_report::PendingReport;
use chairside_workflow::patient_report::{PatientReport, accepts};
use chairside_workflow::{WorkflowId, WorkflowState};

use super::{ActionButton, ActionForm, Session, answer, plain_dollars};
use crate::HttpState;

/// Records exactly what the patient reported, through `record_lender_decision`.
const CONFIRM: ActionButton = ActionButton {
    value: "confirm_patient_report",
    label: "Confirm",
};
/// Closes the report; the workflow keeps waiting for the lender.
const NOT_CONFIRMED: ActionButton = ActionButton {
    value: "dismiss_patient_report",
    label: "Not confirmed",
};

/// The report task `task`'s buttons on a workflow in `state`: "Confirm" only while it would be
/// taken (the report is this task's, it names a decision, the workflow still waits for that
/// lender), "Not confirmed" always.
pub(super) fn buttons(
    state: &WorkflowState,
    pending: Option<&PendingReport>,
    task: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<ActionButton> {
    let confirmable = pending.is_some_and(|p| {
        p.task == task
            && p.report.report.staff_report().is_some()
            && accepts(state, &p.report.lender, now).is_ok()
    });
    if confirmable {
        vec![CONFIRM, NOT_CONFIRMED]
    } else {
        vec![NOT_CONFIRMED]
    }
}

/// The workflow's pending report.
pub(super) async fn pending(
    state: &HttpState,
    workflow: &WorkflowId,
) -> Result<Option<PendingReport>, StoreError> {
    PatientReports::new(&*state.store, &*state.store)
        .pending(workflow)
        .await
}

/// The decision form's pre-filled outcome and amount (plain dollars) for a pending report.
pub(super) fn prefill(report: &PendingReport) -> Option<(&'static str, String)> {
    match report.report.report {
        PatientReport::Approved { amount } => Some(("approved", plain_dollars(Some(amount)))),
        PatientReport::Declined => Some(("declined", String::new())),
        PatientReport::StillWaiting => None,
    }
}

/// `confirm_patient_report` and `dismiss_patient_report` from the workflow's actions form;
/// `None` for every other action. Both need the task the page showed: a stale or double click
/// is 409 and changes nothing.
pub(super) async fn act(
    state: &HttpState,
    s: &Session,
    wf: &WorkflowId,
    form: &ActionForm,
    actor: &str,
) -> Option<Response> {
    let confirm = match form.action.as_str() {
        "confirm_patient_report" => true,
        "dismiss_patient_report" => false,
        _ => return None,
    };
    let Some(task) = form.task else {
        return Some(state.pages.error(axum::http::StatusCode::BAD_REQUEST, "en"));
    };
    let reports = PatientReports::new(&*state.store, &*state.store);
    let now = state.now();
    let outcome: Result<(), StaffError> = if confirm {
        reports
            .confirm(wf, task, Some(&s.practice), actor, now)
            .await
            .map(|_| ())
    } else {
        reports
            .dismiss(wf, task, Some(&s.practice), actor, now)
            .await
            .map(|_| ())
    };
    Some(match outcome {
        // "Still waiting" confirms nothing: say so rather than a bare conflict.
        Err(StaffError::Refused(refusal @ Refusal::NothingToConfirm { .. })) => {
            state.pages.refused(&refusal.to_string())
        }
        other => answer(state, other),
    })
}
