//! Staff decisions on a workflow (retry, cancel, mark handled, resend the link), from the command
//! line and the dashboard alike.
//!
//! One decision is one store transaction ([`StaffStore::act_as_staff`]): the workflow's current
//! state, its open tasks and any decision still queued are read, [`admit`] says whether the
//! decision applies, and only then is `Event::Staff` queued for the runner (which applies it
//! through `chairside_workflow::machine::apply` under its lease, like every other event), the open
//! tasks resolved and the audit line appended. A stale or wrong-state decision is refused with a
//! [`Refusal`] and writes nothing; two concurrent clicks serialize on the transaction, and the
//! second sees the first one queued.
//!
//! ```no_run
//! # async fn run(store: &dyn chairside_engine::store::StaffStore, id: chairside_workflow::WorkflowId)
//! # -> Result<(), chairside_engine::staff::StaffError> {
//! use chairside_engine::staff::StaffActions;
//!
//! let staff = StaffActions::new(store, "staff:alice");
//! staff.retry(&id, chrono::Utc::now()).await?;
//! # Ok(()) }
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use financing_core::link_only::{STAFF_RAW_STATUS, StaffReport};
use financing_core::{Decision, LenderId, PracticeId};

use crate::store::{StaffStore, StoreError};
use chairside_workflow::correction::{Correction, NotCorrectable};
use chairside_workflow::{
    Event, LenderPhase, PayLinkRefusal, StaffAction, Stage, Status, WorkflowId, WorkflowState,
};

/// The audit `kind` of a staff decision.
pub const AUDIT_KIND: &str = "staff_action";

/// The action's name in the audit trail, the task resolution and messages (`mark_handled`).
pub fn action_label(action: StaffAction) -> &'static str {
    match action {
        StaffAction::Retry => "retry",
        StaffAction::Cancel => "cancel",
        StaffAction::MarkHandled => "mark_handled",
        StaffAction::ResendLink => "resend_link",
        StaffAction::AcceptCounteroffer => "accept_counteroffer",
        StaffAction::NextLender => "next_lender",
        StaffAction::RecordLenderDecision => "record_lender_decision",
        StaffAction::CorrectAmounts => "correct_amounts",
    }
}

/// One staff decision, as asked.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffRequest {
    /// The workflow.
    pub workflow: WorkflowId,
    /// What staff decided.
    pub action: StaffAction,
    /// Who, as the audit trail shows it (`cli`, `staff:alice`).
    pub actor: String,
    /// Only a workflow of this practice (the dashboard's session); any other is unknown.
    pub practice: Option<PracticeId>,
    /// The open task the decision answers, as the form showed it: once resolved, the decision is
    /// stale and refused.
    pub task: Option<i64>,
    /// Why, in staff's words, for the audit trail. Keep patient data out of it.
    pub reason: Option<String>,
    /// For [`StaffAction::RecordLenderDecision`]: the lender and what staff read in its portal.
    pub lender_decision: Option<(LenderId, StaffReport)>,
    /// For [`StaffAction::CorrectAmounts`]: the corrected amounts.
    pub correction: Option<Correction>,
}

// Hand-written: the reason is free text that staff type.
impl fmt::Debug for StaffRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffRequest")
            .field("workflow", &self.workflow)
            .field("action", &self.action)
            .field("actor", &self.actor)
            .field("practice", &self.practice)
            .field("task", &self.task)
            .field("lender_decision", &self.lender_decision)
            .field("correction", &self.correction)
            .finish_non_exhaustive()
    }
}

impl StaffRequest {
    /// `action` on `workflow` by `actor`, for any practice, whatever task is open.
    pub fn new(workflow: WorkflowId, action: StaffAction, actor: impl Into<String>) -> Self {
        Self {
            workflow,
            action,
            actor: actor.into(),
            practice: None,
            task: None,
            reason: None,
            lender_decision: None,
            correction: None,
        }
    }

    /// Corrects the plan total, the insurance estimate and the deposit of a workflow whose
    /// amounts came in wrong ([`StaffAction::CorrectAmounts`]); `reason` is required.
    pub fn correction(
        workflow: WorkflowId,
        correction: Correction,
        actor: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            correction: Some(correction),
            reason: Some(reason.into()),
            ..Self::new(workflow, StaffAction::CorrectAmounts, actor)
        }
    }

    /// Records what staff read in a link-only lender's portal: `lender` decided `report` on the
    /// application the workflow has open there ([`StaffAction::RecordLenderDecision`]).
    pub fn lender_decision(
        workflow: WorkflowId,
        lender: LenderId,
        report: StaffReport,
        actor: impl Into<String>,
    ) -> Self {
        Self {
            lender_decision: Some((lender, report)),
            ..Self::new(workflow, StaffAction::RecordLenderDecision, actor)
        }
    }

    /// Only if the workflow belongs to `practice`.
    #[must_use]
    pub fn within(mut self, practice: PracticeId) -> Self {
        self.practice = Some(practice);
        self
    }

    /// Only while task `task` is still open.
    #[must_use]
    pub fn answering(mut self, task: i64) -> Self {
        self.task = Some(task);
        self
    }

    /// With staff's reason, for the audit trail.
    #[must_use]
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The audit line's detail: the action, and the reason if one was given.
    pub fn audit_detail(&self) -> String {
        let label = match &self.lender_decision {
            Some((lender, report)) => format!("{}: {lender} {report}", action_label(self.action)),
            None => action_label(self.action).to_owned(),
        };
        match self.reason.as_deref().map(str::trim) {
            Some(reason) if !reason.is_empty() => format!("{label}; reason: {reason}"),
            _ => label.to_owned(),
        }
    }
}

/// The audit line of an admitted `request` on `state`: [`StaffRequest::audit_detail`], and for a
/// correction each amount before and after. Pure; both stores call it inside their transaction.
pub fn audit_detail(state: &WorkflowState, request: &StaffRequest) -> String {
    match (&request.correction, request.action) {
        (Some(c), StaffAction::CorrectAmounts) => {
            let detail = format!("correct_amounts: {}", c.audit_line(state));
            match request.reason.as_deref().map(str::trim) {
                Some(reason) if !reason.is_empty() => format!("{detail}; reason: {reason}"),
                _ => detail,
            }
        }
        _ => request.audit_detail(),
    }
}

/// What the store read about the workflow, inside the transaction, for [`admit`].
#[derive(Debug, Clone, Copy)]
pub struct StaffSnapshot<'a> {
    /// The workflow's current state.
    pub state: &'a WorkflowState,
    /// Its open tasks' ids.
    pub open_tasks: &'a [i64],
    /// Their kinds' labels ([`chairside_workflow::TaskKind::label`]), in the same order.
    pub open_kinds: &'a [String],
    /// A staff decision queued and not yet applied by the runner.
    pub queued: Option<StaffAction>,
}

/// Why a staff decision was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No such workflow (or not the practice's own).
    #[error("there is no workflow {0}")]
    UnknownWorkflow(WorkflowId),
    /// Another decision is queued and the runner has not applied it yet (a double click, two
    /// people at once).
    #[error(
        "a {} is already queued for workflow {workflow}; it is carried out within seconds",
        action_label(*queued)
    )]
    AlreadyQueued {
        /// The workflow.
        workflow: WorkflowId,
        /// The decision already queued.
        queued: StaffAction,
    },
    /// The task the decision answered is no longer open: someone acted on it already.
    #[error(
        "task {task} of workflow {workflow} is no longer open: someone already acted on it; reload to see where it stands"
    )]
    StaleTask {
        /// The workflow.
        workflow: WorkflowId,
        /// The task the request named.
        task: i64,
    },
    /// Retry and mark handled need a workflow waiting on staff.
    #[error(
        "workflow {workflow} is {}: only a workflow waiting on staff can take a {}",
        status.label(),
        action_label(*action)
    )]
    NotWaitingOnStaff {
        /// The workflow.
        workflow: WorkflowId,
        /// The decision.
        action: StaffAction,
        /// Where it stands.
        status: Status,
    },
    /// Cancel of a workflow already cancelled.
    #[error("workflow {0} is already cancelled; nothing to do")]
    AlreadyCancelled(WorkflowId),
    /// A resend on a task that has no link to resend (bad data, a counteroffer, a system error):
    /// it would close the task and change nothing.
    #[error(
        "workflow {workflow} waits on staff for something other than a quiet patient; there is no link to resend"
    )]
    NothingToResend {
        /// The workflow.
        workflow: WorkflowId,
    },
    /// A lender decision for a lender the workflow is not waiting on for staff: the waterfall
    /// moved on (a decision came, the wait ended), or the lender has an API of its own.
    #[error(
        "workflow {workflow} is not waiting for staff to record a {lender} decision; reload to see where it stands"
    )]
    NotAwaitingLender {
        /// The workflow.
        workflow: WorkflowId,
        /// The lender named.
        lender: LenderId,
    },
    /// The recorded decision does not make sense for the application (a zero amount, a
    /// "counteroffer" at or above the amount asked).
    #[error("the {lender} decision cannot be recorded for workflow {workflow}: {reason}")]
    BadLenderDecision {
        /// The workflow.
        workflow: WorkflowId,
        /// The lender.
        lender: LenderId,
        /// Why, without PHI.
        reason: String,
    },
    /// A lender decision without the lender and the decision.
    #[error("a lender decision for workflow {0} must name the lender and what it decided")]
    MissingLenderDecision(WorkflowId),
    /// A retry of a failed payment with no pay link to issue: nothing is owed any more, or
    /// what failed is for Stripe to retry.
    #[error("workflow {workflow}: no pay link to re-issue: {why}")]
    NoPayLink {
        /// The workflow.
        workflow: WorkflowId,
        /// Why (the pure rule's answer).
        why: PayLinkRefusal,
    },
    /// A correction of amounts that may no longer be corrected.
    #[error("the amounts of workflow {workflow} can no longer be corrected: {why}")]
    NotCorrectable {
        /// The workflow.
        workflow: WorkflowId,
        /// Why (the pure rule's answer).
        why: NotCorrectable,
    },
    /// A correction whose values do not make sense (or none were given, or no reason).
    #[error("the correction cannot be made: {0}")]
    BadCorrection(String),
    /// "Confirm" on a patient's report that confirms nothing (the patient is still waiting for
    /// the lender): staff record the decision from the lender's portal, or mark it not confirmed.
    #[error(
        "workflow {workflow}: the patient reports still waiting; there is no decision to confirm"
    )]
    NothingToConfirm {
        /// The workflow.
        workflow: WorkflowId,
    },
    /// Nothing to resend to: the workflow is over.
    #[error("workflow {workflow} is {}; there is no link to resend", status.label())]
    Finished {
        /// The workflow.
        workflow: WorkflowId,
        /// Done or cancelled.
        status: Status,
    },
}

/// Whether `request` applies to the workflow as `snapshot` shows it. Pure: the store calls it
/// inside its transaction, so what it judges is what gets written.
///
/// The machine stays the final judge when it applies the event (it ignores a decision that no
/// longer fits); this refuses up front what it would ignore, so staff hear why.
///
/// # Errors
/// The [`Refusal`].
pub fn admit(snapshot: &StaffSnapshot<'_>, request: &StaffRequest) -> Result<(), Refusal> {
    let state = snapshot.state;
    let workflow = request.workflow.clone();
    if request
        .practice
        .as_ref()
        .is_some_and(|p| p != &state.key.practice_id)
    {
        return Err(Refusal::UnknownWorkflow(workflow));
    }
    if let Some(queued) = snapshot.queued {
        return Err(Refusal::AlreadyQueued { workflow, queued });
    }
    if let Some(task) = request.task
        && !snapshot.open_tasks.contains(&task)
    {
        return Err(Refusal::StaleTask { workflow, task });
    }
    // A lender charge for staff is a task beside a finished financing: marking it handled
    // records that staff ran it.
    let settlement_open = state.settlement.as_ref().is_some_and(|s| {
        matches!(
            s.state,
            chairside_workflow::SettlementState::Manual { .. }
                | chairside_workflow::SettlementState::Failed { .. }
        )
    });
    // A task raised beside a finished workflow (a failed payment, a refund or dispute, a schedule
    // ended in Stripe): marking it handled closes the task and leaves the workflow as it is.
    let task_beside = state.status == Status::Done && !snapshot.open_tasks.is_empty();
    if request.action == StaffAction::RecordLenderDecision {
        return lender_decision_event(state, request).map(|_| ());
    }
    if request.action == StaffAction::CorrectAmounts {
        return correction_event(state, request).map(|_| ());
    }
    match (request.action, state.status) {
        (StaffAction::MarkHandled, Status::Done) if settlement_open || task_beside => Ok(()),
        (StaffAction::MarkHandled, Status::Active)
            if undelivered_link_pressed(snapshot, request) =>
        {
            Ok(())
        }
        // A failed payment beside a finished financing: a fresh pay link for what is owed.
        (StaffAction::Retry, Status::Done)
            if snapshot
                .open_kinds
                .iter()
                .any(|k| k == chairside_workflow::TaskKind::PaymentFailed.label()) =>
        {
            state
                .pay_link_retry()
                .map(|_| ())
                .map_err(|why| Refusal::NoPayLink { workflow, why })
        }
        (
            StaffAction::Retry
            | StaffAction::MarkHandled
            | StaffAction::AcceptCounteroffer
            | StaffAction::NextLender,
            status,
        ) if status != Status::WaitingOnStaff => Err(Refusal::NotWaitingOnStaff {
            workflow,
            action: request.action,
            status,
        }),
        (StaffAction::Cancel, Status::Cancelled) => Err(Refusal::AlreadyCancelled(workflow)),
        (StaffAction::ResendLink, status @ (Status::Done | Status::Cancelled)) => {
            Err(Refusal::Finished { workflow, status })
        }
        // Waiting on staff, a resend only answers a patient who went quiet (a lender's
        // application or the in-house offer): a fresh session, or the offer again.
        (StaffAction::ResendLink, Status::WaitingOnStaff)
            if state.staff_task.as_ref().map(|t| t.kind)
                != Some(chairside_workflow::TaskKind::PatientQuiet) =>
        {
            Err(Refusal::NothingToResend { workflow })
        }
        _ => Ok(()),
    }
}

/// The one kind of open task an admitted `request` resolves, when it answers only that kind: a
/// retry of a failed payment beside a finished financing closes the payment-failed task and
/// leaves any other (the lender charge's settlement task) open. `None`: every open task of the
/// workflow. Pure; both stores call it inside their transaction.
pub fn resolves_only(state: &WorkflowState, request: &StaffRequest) -> Option<&'static str> {
    (request.action == StaffAction::Retry && state.status == Status::Done)
        .then_some(chairside_workflow::TaskKind::PaymentFailed.label())
}

/// The one open task an admitted `request` resolves when staff pressed it on a task: "Mark
/// handled" closes the task it was pressed on, not every open task of the workflow. `None`: as
/// [`resolves_only`] says. Pure; both stores call it inside their transaction.
pub fn resolves_task(request: &StaffRequest) -> Option<i64> {
    (request.action == StaffAction::MarkHandled)
        .then_some(request.task)
        .flatten()
}

/// Whether an admitted `request` goes to the runner. Marking a failed or reversed payment's task
/// handled beside a finished workflow only closes that task: queued, the machine would take it
/// for a lender charge that staff ran (a settlement task open beside it). Pure; both stores call
/// it inside their transaction.
pub fn needs_runner(snapshot: &StaffSnapshot<'_>, request: &StaffRequest) -> bool {
    if undelivered_link_pressed(snapshot, request) {
        // The financing runs on; staff handed the link over themselves.
        return false;
    }
    if request.action != StaffAction::MarkHandled || snapshot.state.status != Status::Done {
        return true;
    }
    let Some(task) = request.task else {
        return true;
    };
    let kind = snapshot
        .open_tasks
        .iter()
        .position(|t| *t == task)
        .and_then(|i| snapshot.open_kinds.get(i));
    let beside = [
        chairside_workflow::TaskKind::PaymentFailed.label(),
        chairside_workflow::TaskKind::PaymentReversed.label(),
    ];
    !kind.is_some_and(|k| beside.contains(&k.as_str()))
}

/// "Mark handled" pressed on an open task raised because a lender's link could not be sent
/// while the financing runs on (an unreachable-patient task beside an active workflow): it
/// closes that task and leaves the workflow as it is.
fn undelivered_link_pressed(snapshot: &StaffSnapshot<'_>, request: &StaffRequest) -> bool {
    if request.action != StaffAction::MarkHandled || snapshot.state.status != Status::Active {
        return false;
    }
    let Some(task) = request.task else {
        return false;
    };
    snapshot
        .open_tasks
        .iter()
        .position(|t| *t == task)
        .and_then(|i| snapshot.open_kinds.get(i))
        .is_some_and(|k| k == chairside_workflow::TaskKind::Unreachable.label())
}

/// The event an admitted `request` queues for the runner: [`Event::Staff`], or for a link-only
/// lender's decision the [`Event::LenderDecided`] it makes (the machine routes it like any
/// lender's answer). Pure; every store calls it inside its transaction after [`admit`].
///
/// # Errors
/// The [`Refusal`] for a lender decision that does not apply.
pub fn queued_event(state: &WorkflowState, request: &StaffRequest) -> Result<Event, Refusal> {
    if request.action == StaffAction::RecordLenderDecision {
        return lender_decision_event(state, request);
    }
    if request.action == StaffAction::CorrectAmounts {
        return correction_event(state, request);
    }
    Ok(Event::Staff {
        action: request.action,
    })
}

/// The staff decision an inbox event stands for, if it is one still queued: what both stores
/// read to refuse a second decision while the first waits for the runner.
pub fn queued_staff_action(event: &Event) -> Option<StaffAction> {
    match event {
        Event::Staff { action } => Some(*action),
        Event::AmountsCorrected { .. } => Some(StaffAction::CorrectAmounts),
        e if is_staff_lender_decision(e) => Some(StaffAction::RecordLenderDecision),
        _ => None,
    }
}

/// True for an event queued by [`queued_event`] for a lender decision: a store that looks for a
/// staff decision still queued counts it as [`StaffAction::RecordLenderDecision`].
pub fn is_staff_lender_decision(event: &Event) -> bool {
    match event {
        Event::LenderDecided { decision, .. } => matches!(
            decision,
            Decision::Approved { raw_status, .. }
                | Decision::PartiallyApproved { raw_status, .. }
                | Decision::Declined { raw_status, .. }
                if raw_status == STAFF_RAW_STATUS
        ),
        _ => false,
    }
}

/// The event a correction queues, when the workflow's amounts may still be corrected and the
/// new values make sense, with a reason given.
fn correction_event(state: &WorkflowState, request: &StaffRequest) -> Result<Event, Refusal> {
    let workflow = request.workflow.clone();
    let Some(correction) = request.correction else {
        return Err(Refusal::BadCorrection("no amounts were given".into()));
    };
    if request
        .reason
        .as_deref()
        .is_none_or(|r| r.trim().is_empty())
    {
        return Err(Refusal::BadCorrection(
            "say why the amounts are corrected (for the audit trail)".into(),
        ));
    }
    chairside_workflow::correction::correctable(state)
        .map_err(|why| Refusal::NotCorrectable { workflow, why })?;
    correction
        .check()
        .map_err(|e| Refusal::BadCorrection(e.to_string()))?;
    Ok(Event::AmountsCorrected { correction })
}

/// The decision a link-only lender's report makes, when the workflow waits on staff for that
/// lender's decision (its application open, the wait not over).
fn lender_decision_event(state: &WorkflowState, request: &StaffRequest) -> Result<Event, Refusal> {
    let workflow = request.workflow.clone();
    let Some((lender, report)) = &request.lender_decision else {
        return Err(Refusal::MissingLenderDecision(workflow));
    };
    let awaiting = match &state.stage {
        Stage::Financing(c) if &c.lender == lender && state.status != Status::Cancelled => {
            match &c.phase {
                LenderPhase::AwaitingPatient { session, .. } if session.decide_by.is_some() => {
                    Some(c.amount)
                }
                _ => None,
            }
        }
        _ => None,
    };
    let Some(asked) = awaiting else {
        return Err(Refusal::NotAwaitingLender {
            workflow,
            lender: lender.clone(),
        });
    };
    let decision = report
        .decision(lender, asked)
        .map_err(|e| Refusal::BadLenderDecision {
            workflow,
            lender: lender.clone(),
            reason: e.to_string(),
        })?;
    Ok(Event::LenderDecided {
        lender: lender.clone(),
        decision,
    })
}

/// What an accepted decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffReceipt {
    /// The workflow.
    pub workflow: WorkflowId,
    /// The decision queued for the runner.
    pub action: StaffAction,
    /// How many open tasks it resolved.
    pub tasks_resolved: u64,
}

/// A staff decision that was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaffError {
    /// Refused: the workflow's state or task does not admit it. Nothing was written.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed; the transaction was rolled back.
    #[error("recording the staff decision: {0}")]
    Store(#[from] StoreError),
}

/// Staff decisions by one actor over a store.
#[derive(Debug, Clone, Copy)]
pub struct StaffActions<'a> {
    store: &'a dyn StaffStore,
    actor: &'a str,
}

impl<'a> StaffActions<'a> {
    /// Decisions recorded as `actor` (`cli`, `staff:alice`).
    pub fn new(store: &'a dyn StaffStore, actor: &'a str) -> Self {
        Self { store, actor }
    }

    /// A request for `action` on `workflow` by this actor, to refine and pass to [`Self::act`].
    pub fn request(&self, workflow: &WorkflowId, action: StaffAction) -> StaffRequest {
        StaffRequest::new(workflow.clone(), action, self.actor)
    }

    /// Carries out `request` (its actor is replaced by this one's) in one transaction.
    ///
    /// # Errors
    /// [`StaffError::Refused`] (nothing written), [`StaffError::Store`].
    pub async fn act(
        &self,
        mut request: StaffRequest,
        now: DateTime<Utc>,
    ) -> Result<StaffReceipt, StaffError> {
        self.actor.clone_into(&mut request.actor);
        let receipt = self.store.act_as_staff(&request, now).await??;
        tracing::info!(
            workflow = %receipt.workflow,
            action = action_label(receipt.action),
            tasks_resolved = receipt.tasks_resolved,
            "staff decision queued"
        );
        Ok(receipt)
    }

    /// Retries the failed step of a workflow waiting on staff; beside a finished financing with a
    /// failed payment, issues a fresh pay link for the deposit still owed and sends the patient
    /// the patient page's link ([`WorkflowState::pay_link_retry`]).
    ///
    /// # Errors
    /// As [`Self::act`]; refused unless the workflow waits on staff or has a failed payment with
    /// a deposit still owed ([`Refusal::NoPayLink`]).
    pub async fn retry(
        &self,
        workflow: &WorkflowId,
        now: DateTime<Utc>,
    ) -> Result<StaffReceipt, StaffError> {
        self.act(self.request(workflow, StaffAction::Retry), now)
            .await
    }

    /// Records a link-only lender's decision, read in its portal (Cherry approved $X, declined,
    /// counteroffer $Y): the waterfall goes on from it like from any lender's answer.
    ///
    /// # Errors
    /// As [`Self::act`]; refused unless the workflow waits for that lender's decision, or when the
    /// decision does not fit the application (see [`StaffReport::decision`]).
    pub async fn record_lender_decision(
        &self,
        workflow: &WorkflowId,
        lender: &LenderId,
        report: StaffReport,
        now: DateTime<Utc>,
    ) -> Result<StaffReceipt, StaffError> {
        let request =
            StaffRequest::lender_decision(workflow.clone(), lender.clone(), report, self.actor);
        self.act(request, now).await
    }

    /// Corrects the plan total, the insurance estimate and the deposit of a workflow whose
    /// amounts came in wrong, with staff's reason; the audit trail records each value before and
    /// after, who and when. The workflow is priced again from the corrected values.
    ///
    /// # Errors
    /// As [`Self::act`]; refused ([`Refusal::NotCorrectable`]) once a lender was asked for the
    /// old amount or money moved, and ([`Refusal::BadCorrection`]) for values that do not make
    /// sense or without a reason.
    pub async fn correct_amounts(
        &self,
        workflow: &WorkflowId,
        correction: Correction,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<StaffReceipt, StaffError> {
        let request = StaffRequest::correction(workflow.clone(), correction, self.actor, reason);
        self.act(request, now).await
    }

    /// Cancels a workflow and undoes what it set up.
    ///
    /// # Errors
    /// As [`Self::act`]; refused for a cancelled workflow.
    pub async fn cancel(
        &self,
        workflow: &WorkflowId,
        now: DateTime<Utc>,
    ) -> Result<StaffReceipt, StaffError> {
        self.act(self.request(workflow, StaffAction::Cancel), now)
            .await
    }
}
