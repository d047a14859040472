//! The pure state machine: `apply(state, event) -> transition`. No I/O, no clock: `now` is given.
//!
//! Every handler first checks that the event fits the stage; an event that does not (a duplicate,
//! a late callback, a reordered webhook) is ignored and audited, which is what makes the machine
//! safe under at-least-once delivery.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use financing_core::{
    ApplicationHandle, Attempt, AttemptOutcome, CoverageSplit, Decision, DepositRule, InHouseOffer,
    InHouseTerms, LenderId, Money, SettleOn, Settlement, SettlementRule, Step, WaterfallOutcome,
    settle_on,
};

use crate::due::{COPAY, Copay, CopayState};
use crate::{
    Action, CardCharge, CardChargeState, Command, CurrentApplication, Event, FinancingResult,
    InHouseAcceptance, LenderPhase, LenderSession, LenderSettlement, MessageKind, NoteKind,
    PaymentFact, PaymentPreference, PaymentStep, SettlementState, StaffAction, StaffTask, Stage,
    Status, TaskKind, TimerKind, WorkflowConfig, WorkflowState,
};

/// How long after a session's lapse its status is read: the lender has had time to mark it
/// expired.
const LAPSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What applying one event asks of the runner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transition {
    /// External effects, in order.
    pub commands: Vec<Command>,
    /// Timers to set (replacing a timer of the same kind).
    pub set_timers: Vec<(TimerKind, DateTime<Utc>)>,
    /// Timers to clear.
    pub clear_timers: Vec<TimerKind>,
    /// A staff task to open, in the same transaction as the new state.
    pub raise_task: Option<StaffTask>,
    /// Drop messages still waiting in the outbox (the workflow was cancelled).
    pub drop_pending_messages: bool,
    /// Lines for the audit trail (no PHI).
    pub audit: Vec<String>,
    /// True when the event did not fit the stage and changed nothing.
    pub ignored: bool,
}

const ALL_TIMERS: [TimerKind; 5] = [
    TimerKind::Resume,
    TimerKind::Poll,
    TimerKind::Reminder,
    TimerKind::GiveUp,
    TimerKind::Settle,
];

struct Ctx<'a> {
    state: &'a mut WorkflowState,
    config: &'a WorkflowConfig,
    now: DateTime<Utc>,
    out: Transition,
}

impl Ctx<'_> {
    fn command(&mut self, action: Action) {
        let seq = self.state.next_seq;
        self.state.next_seq += 1;
        self.out.commands.push(Command { seq, action });
    }

    fn timer(&mut self, kind: TimerKind, at: DateTime<Utc>) {
        self.out.set_timers.push((kind, at));
    }

    fn clear_lender_timers(&mut self) {
        self.out
            .clear_timers
            .extend([TimerKind::Poll, TimerKind::Reminder, TimerKind::GiveUp]);
    }

    fn audit(&mut self, line: impl Into<String>) {
        self.out.audit.push(line.into());
    }

    fn ignore(&mut self, why: &str) {
        self.out.ignored = true;
        self.audit(format!("ignored: {why}"));
    }
}

/// Applies `event` to `state` under the practice's `config` at time `now`.
pub fn apply(
    state: &mut WorkflowState,
    event: Event,
    config: &WorkflowConfig,
    now: DateTime<Utc>,
) -> Transition {
    let mut cx = Ctx {
        state,
        config,
        now,
        out: Transition::default(),
    };
    match event {
        Event::PlanLoaded { plan, facts } => {
            if cx.state.stage != Stage::LoadingPlan {
                cx.ignore("plan already loaded");
            } else {
                cx.state.facts = Some(facts.clone());
                cx.state.treatment_date = plan.treatment_date;
                match CoverageSplit::from_plan(&plan) {
                    Err(e) => to_staff(&mut cx, TaskKind::BadData, e.to_string()),
                    Ok(split) => {
                        priced(&mut cx, split, facts.reachable, facts.financing_not_before)
                    }
                }
            }
        }
        Event::PlanUnreadable { reason } => {
            if cx.state.stage == Stage::LoadingPlan {
                to_staff(
                    &mut cx,
                    TaskKind::BadData,
                    format!("the practice system's record could not be read: {reason}"),
                );
            } else {
                cx.ignore("plan already loaded");
            }
        }
        Event::TimerFired {
            timer: TimerKind::Settle,
        } => settle_due(&mut cx),
        Event::TimerFired {
            timer: TimerKind::Copay,
        } => copay_due(&mut cx),
        Event::PayLinkCreated {
            purpose,
            session_id,
            url,
        } => pay_link_created(&mut cx, &purpose, session_id, url),
        Event::TimerFired { timer } => timer_fired(&mut cx, timer),
        Event::LenderSettled { lender, settlement } => lender_settled(&mut cx, &lender, settlement),
        Event::CardholderLookedUp { lender, found } => {
            match current(&cx, &lender, |p| matches!(p, LenderPhase::LookingUp)) {
                None => cx.ignore("no lookup under way for this lender"),
                Some(amount) => match found {
                    Some(decision @ Decision::Cardholder { .. }) => {
                        let outcome = AttemptOutcome::from_decision(&decision, amount)
                            .unwrap_or(AttemptOutcome::Declined);
                        if matches!(outcome, AttemptOutcome::Declined) {
                            start_application(&mut cx, lender, amount);
                        } else {
                            cx.audit(format!("{lender}: returning cardholder"));
                            finish_lender(&mut cx, outcome);
                        }
                    }
                    _ => start_application(&mut cx, lender, amount),
                },
            }
        }
        Event::LenderDecided { lender, decision } => lender_decided(&mut cx, &lender, &decision),
        Event::LenderFailed { lender, reason } => {
            if current(&cx, &lender, |_| true).is_some() {
                cx.audit(format!("{lender}: failed: {reason}"));
                finish_lender(&mut cx, AttemptOutcome::Failed { reason });
            } else {
                cx.ignore("lender is not the current one");
            }
        }
        Event::LenderUnanswered { lender, reason } => {
            if current(&cx, &lender, |p| {
                matches!(p, LenderPhase::AwaitingPatient { .. })
            })
            .is_some()
            {
                // A read that got no answer says nothing about the patient's application: it
                // stays open (the patient may be filling it in right now) and is read again.
                cx.audit(format!(
                    "{lender}: no answer to the status read ({reason}); the application stays open"
                ));
                next_poll(&mut cx, None);
            } else {
                cx.ignore("no open application at this lender");
            }
        }
        Event::CustomerReady { customer_id } => {
            if cx.state.stage == Stage::Payments(PaymentStep::Customer) {
                cx.state.stripe.customer_id = Some(customer_id);
                next_payment_step(&mut cx);
            } else {
                cx.ignore("no customer step under way");
            }
        }
        Event::DepositLinkCreated { session_id, url }
            if cx.state.stripe.staff_pay_link && cx.state.status != Status::Cancelled =>
        {
            staff_pay_link_created(&mut cx, &session_id, url);
        }
        Event::DepositLinkCreated { session_id, url } => {
            if cx.state.stripe.reissuing_deposit_link
                && cx.state.stripe.checkout_session_id.is_none()
                && cx.state.status != Status::Cancelled
            {
                // A fresh link after an expiry: the workflow's stage is not touched.
                cx.state.stripe.reissuing_deposit_link = false;
                cx.state.stripe.checkout_session_id = Some(session_id);
                cx.state.stripe.checkout_url = Some(url);
                cx.audit("fresh deposit link issued");
                if cx.state.stage == Stage::Payments(PaymentStep::DepositLink) {
                    // A staff retry of a failed reissue put the stage back: carry on from it.
                    next_payment_step(&mut cx);
                }
            } else if cx.state.stage == Stage::Payments(PaymentStep::DepositLink)
                && cx.state.stripe.checkout_session_id.is_none()
            {
                cx.state.stripe.checkout_session_id = Some(session_id);
                cx.state.stripe.checkout_url = Some(url);
                next_payment_step(&mut cx);
            } else if cx.state.status == Status::Cancelled {
                // A creation that was already queued when the plan was withdrawn: undo it too.
                cx.state
                    .stripe
                    .checkout_session_id
                    .get_or_insert(session_id.clone());
                compensate(&mut cx, Action::ExpireDepositLink { session_id });
            } else {
                cx.ignore("no deposit link step under way");
            }
        }
        Event::ScheduleCreated { schedule_id } => {
            if cx.state.stage == Stage::Payments(PaymentStep::Schedule)
                && cx.state.stripe.schedule_id.is_none()
            {
                cx.state.stripe.schedule_id = Some(schedule_id);
                // A card saved while the schedule was being created: set it on the schedule.
                schedule_card_due(&mut cx);
                next_payment_step(&mut cx);
            } else if cx.state.status == Status::Cancelled {
                cx.state.stripe.schedule_creating = false;
                cx.state
                    .stripe
                    .schedule_id
                    .get_or_insert(schedule_id.clone());
                compensate(&mut cx, Action::CancelSchedule { schedule_id });
            } else if cx.state.stripe.schedule_creating && cx.state.stripe.schedule_id.is_none() {
                // Created once the patient decided (the card, or emailed invoices): beside the
                // flow, which went on without it.
                cx.state.stripe.schedule_creating = false;
                cx.audit(format!("installment schedule {schedule_id} created"));
                cx.state.stripe.schedule_id = Some(schedule_id);
                schedule_card_due(&mut cx);
                reopen_after_retry(&mut cx);
            } else {
                cx.ignore("no schedule step under way");
            }
        }
        Event::MessageSent { message } => message_done(&mut cx, &message, None),
        Event::MessageUndeliverable { message, reason } => {
            message_done(&mut cx, &message, Some(reason))
        }
        Event::NoteWritten { note, at } => note_written(&mut cx, &note, at),
        Event::ApplicationOpened {
            lender,
            handle,
            link,
            expires_at,
        } => application_opened(&mut cx, lender, handle, link, expires_at),
        Event::Undone { action } => {
            if let Stage::Undoing { outstanding } = cx.state.stage {
                cx.audit(format!("undone: {action}"));
                let left = outstanding.saturating_sub(1);
                cx.state.stage = Stage::Undoing { outstanding: left };
                if left == 0 {
                    write_outcome_note(&mut cx);
                }
            } else {
                cx.ignore("nothing being undone");
            }
        }
        Event::Payment(fact) => payment_fact(&mut cx, fact),
        Event::PlanWithdrawn { reason } => withdraw(&mut cx, &reason),
        Event::Staff { action } => staff(&mut cx, action),
        Event::EffectFailed { action, reason } => effect_failed(&mut cx, action, &reason, None),
        Event::EffectIndeterminate {
            action,
            seq,
            reason,
        } => {
            let key_seq = cx.state.key_seq(seq);
            effect_failed(
                &mut cx,
                action,
                &format!("{reason} (outcome unknown; a retry reconciles first)"),
                Some(key_seq),
            );
        }
        Event::InHouseAnswered { accepted, wording } => {
            in_house_answered(&mut cx, accepted, wording)
        }
        Event::DepositLinkRequested => deposit_link_requested(&mut cx),
        Event::AmountsCorrected { correction } => amounts_corrected(&mut cx, correction),
        Event::PracticePatientReady {
            patient_id,
            created,
        } => practice_patient_ready(&mut cx, patient_id, created),
        Event::PracticePatientForStaff { reason } => {
            if cx.state.stage == Stage::WritingNote
                && cx
                    .state
                    .intake
                    .as_ref()
                    .is_some_and(|l| l.practice_patient.is_none())
            {
                let task = StaffTask {
                    kind: TaskKind::PatientRecord,
                    reason,
                };
                cx.audit("practice-system patient left to staff");
                cx.state.staff_task = Some(task.clone());
                cx.state.status = Status::WaitingOnStaff;
                cx.state.stage = Stage::Settled;
                cx.out.raise_task = Some(task);
            } else {
                cx.ignore("no practice-system patient step under way");
            }
        }
        Event::PracticePlanWritten { plan_id, created } => {
            practice_plan_answered(&mut cx, plan_id, None, created)
        }
        Event::PracticePlanForStaff { reason } => practice_plan_answered(
            &mut cx,
            crate::intake::PLAN_FOR_STAFF.to_owned(),
            Some(reason),
            false,
        ),
        Event::CardSetupLinkCreated { session_id, url } => {
            card_setup_link_created(&mut cx, session_id, url)
        }
        Event::CardAuthorized {
            wording,
            installments,
        } => card_authorized(&mut cx, wording, installments),
        Event::InstallmentInvoicesChosen { wording } => invoices_chosen(&mut cx, wording),
        Event::ScheduleCardSet { schedule_id } => {
            if cx.state.stripe.schedule_id.as_deref() == Some(schedule_id.as_str()) {
                cx.audit(format!(
                    "installment schedule {schedule_id} charges the saved card"
                ));
                reopen_after_retry(&mut cx);
            } else {
                cx.ignore("not this workflow's schedule");
            }
        }
        Event::CardSaved { payment_method } => card_saved(&mut cx, payment_method),
        Event::CardCharged {
            purpose,
            payment_intent,
            amount,
        } => card_charged(&mut cx, &purpose, payment_intent, amount),
        Event::CardDeclined {
            purpose,
            payment_intent,
            reason,
            authentication,
        } => card_declined(&mut cx, &purpose, payment_intent, &reason, authentication),
        Event::LenderSessionRequested => match cx.state.restartable_lender(now).cloned() {
            Some(lender) => {
                cx.audit("patient asked to start the application again");
                fresh_session(&mut cx, lender);
            }
            None => cx.ignore("no lapsed lender session to start again"),
        },
    }
    cx.out
}

/// Asks for a ledger note: written at once for a detected plan; for an intake, once its patient is
/// in the practice system. An intake's outcome note is the case acceptance: when financing is
/// arranged ([`crate::intake::creates_record`]) the patient is matched or created first; when it
/// is not, the practice system gets no record and the outcome stays in Chairside.
fn ledger_note(cx: &mut Ctx<'_>, note: NoteKind) {
    let Some(link) = &cx.state.intake else {
        return cx.command(Action::WriteLedgerNote { note });
    };
    if link.practice_patient.is_some() {
        return cx.command(Action::WriteLedgerNote { note });
    }
    if note != NoteKind::Outcome {
        if let Some(link) = &mut cx.state.intake {
            link.held_notes.push(note);
        }
        return;
    }
    if crate::intake::creates_record(
        cx.state.result.as_ref(),
        cx.state.in_house_acceptance.is_some(),
        cx.state.status,
    ) {
        if let Some(link) = &mut cx.state.intake {
            link.held_notes.insert(0, NoteKind::Outcome);
        }
        cx.audit("case accepted: matching the patient in the practice system");
        cx.command(Action::EnsurePracticePatient);
    } else {
        cx.audit("consultation not converted: no practice-system record");
        outcome_recorded(cx, None);
    }
}

fn practice_patient_ready(cx: &mut Ctx<'_>, patient: financing_core::PatientId, created: bool) {
    let Some(link) = &mut cx.state.intake else {
        return cx.ignore("not an intake workflow");
    };
    if link.practice_patient.is_some() {
        return cx.ignore("practice-system patient already known");
    }
    link.practice_patient = Some(patient);
    let case_accepted =
        link.held_notes.contains(&NoteKind::Outcome) && link.practice_plan.is_none();
    cx.audit(if created {
        "patient created in the practice system"
    } else {
        "patient matched in the practice system"
    });
    if case_accepted {
        // The case's treatment plan goes to the practice system before its outcome note.
        cx.command(Action::WritePracticePlan);
    } else {
        release_held_notes(cx);
    }
}

/// The case plan is recorded (by the system, or handed to staff): the held notes follow.
fn practice_plan_answered(
    cx: &mut Ctx<'_>,
    plan_id: String,
    for_staff: Option<String>,
    created: bool,
) {
    let Some(link) = &mut cx.state.intake else {
        return cx.ignore("not an intake workflow");
    };
    if link.practice_patient.is_none() || link.practice_plan.is_some() {
        return cx.ignore("no case plan step under way");
    }
    link.practice_plan = Some(plan_id);
    match for_staff {
        Some(reason) => {
            cx.audit("case plan left to staff");
            // Beside the workflow, like a failed installment: the ledger note still goes.
            cx.out.raise_task = Some(StaffTask {
                kind: TaskKind::PlanRecord,
                reason,
            });
        }
        None => cx.audit(if created {
            "case plan written to the practice system"
        } else {
            "case plan already in the practice system"
        }),
    }
    release_held_notes(cx);
}

fn release_held_notes(cx: &mut Ctx<'_>) {
    let held = cx
        .state
        .intake
        .as_mut()
        .map(|l| std::mem::take(&mut l.held_notes))
        .unwrap_or_default();
    for note in held {
        cx.command(Action::WriteLedgerNote { note });
    }
}

/// The amount of the current lender's application, when `lender` is current and its phase fits.
fn current(
    cx: &Ctx<'_>,
    lender: &LenderId,
    phase_ok: impl Fn(&LenderPhase) -> bool,
) -> Option<Money> {
    match &cx.state.stage {
        Stage::Financing(c) if &c.lender == lender && phase_ok(&c.phase) => Some(c.amount),
        _ => None,
    }
}

fn deposit_for(rule: DepositRule, portion: Money) -> Money {
    let zero = Money::zero(portion.currency());
    match rule {
        DepositRule::None => zero,
        DepositRule::Fixed(m) if m.currency() == portion.currency() => m.max(zero).min(portion),
        DepositRule::Fixed(_) => zero,
        DepositRule::BasisPoints(bps) => portion.basis_points(bps.min(10_000)).unwrap_or(zero),
    }
}

fn priced(cx: &mut Ctx<'_>, split: CoverageSplit, reachable: bool, not_before: DateTime<Utc>) {
    priced_with(cx, split, None, reachable, not_before);
}

/// Staff corrected the amounts (`correction.rs` says whether they may): priced again from them,
/// with the deposit staff gave, and on from there as after the plan was read.
fn amounts_corrected(cx: &mut Ctx<'_>, correction: crate::correction::Correction) {
    if let Err(why) = crate::correction::correctable(cx.state) {
        return cx.ignore(&format!("amounts not corrected: {why}"));
    }
    if let Err(why) = correction.check() {
        return cx.ignore(&format!("amounts not corrected: {why}"));
    }
    let Some(facts) = cx.state.facts.clone() else {
        return cx.ignore("amounts not corrected: the plan was never read");
    };
    cx.audit(format!(
        "amounts corrected by staff: {}",
        correction.audit_line(cx.state)
    ));
    cx.state.staff_task = None;
    cx.state.status = Status::Active;
    cx.state.result = None;
    cx.state.failed_action = None;
    cx.state.failed_key_seq = None;
    cx.out.clear_timers.extend(ALL_TIMERS);
    let split = CoverageSplit {
        total: correction.total,
        insurance: correction.insurance,
        patient_portion: correction.portion(),
    };
    priced_with(
        cx,
        split,
        Some(correction.deposit),
        facts.reachable,
        facts.financing_not_before,
    );
}

fn priced_with(
    cx: &mut Ctx<'_>,
    split: CoverageSplit,
    deposit: Option<Money>,
    reachable: bool,
    not_before: DateTime<Utc>,
) {
    cx.state.split = Some(split);
    cx.audit(format!("priced: {split}"));
    if !reachable {
        return to_staff(cx, TaskKind::Unreachable, "the patient has neither a mobile phone nor an email address on file; add one and retry".into());
    }
    let portion = split.patient_portion;
    let deposit = deposit.unwrap_or_else(|| deposit_for(cx.config.deposit, portion));
    let amount = portion.checked_sub(deposit).unwrap_or(portion);
    cx.state.deposit = Some(deposit);
    cx.state.financing_amount = Some(amount);
    if amount.is_zero() {
        let path = if portion.is_zero() {
            "covered by insurance"
        } else {
            "deposit only"
        };
        cx.state.result = Some(FinancingResult {
            financed: None,
            deposit,
            in_house: None,
            path: path.into(),
        });
        if portion.is_zero() {
            // Nothing to finance and nothing to pay: no "approved financing of $0.00" message;
            // the ledger note records the outcome.
            cx.audit("nothing for the patient to pay; no financing message");
            return write_outcome_note(cx);
        }
        return start_payments(cx);
    }
    if not_before > cx.now {
        cx.state.stage = Stage::Deferred;
        cx.audit("financing deferred to the next day (sedation on the acceptance day)");
        cx.timer(TimerKind::Resume, not_before);
        return;
    }
    next_lender(cx);
}

fn next_lender(cx: &mut Ctx<'_>) {
    let Some(amount) = cx.state.financing_amount else {
        return;
    };
    // Counteroffers staff passed on route as declines; the record keeps what happened.
    let routing: Vec<Attempt> = cx
        .state
        .attempts
        .iter()
        .map(|a| match a.outcome {
            AttemptOutcome::PartiallyApproved { .. }
                if cx.state.passed_counteroffers.contains(&a.lender) =>
            {
                Attempt {
                    outcome: AttemptOutcome::Declined,
                    ..a.clone()
                }
            }
            _ => a.clone(),
        })
        .collect();
    // A lender asked again (a fresh session after a lapse) routes by its latest attempt; the
    // record keeps every one.
    let routing: Vec<Attempt> = routing
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !routing[i + 1..]
                .iter()
                .any(|later| later.lender == a.lender)
        })
        .map(|(_, a)| a.clone())
        .collect();
    match cx.config.waterfall.next(amount, &routing) {
        Step::Ask { lender, amount } => {
            remember_name(cx, &lender);
            let lookup = cx.state.facts.as_ref().is_some_and(|f| f.lookup_allowed);
            cx.state.stage = Stage::Financing(CurrentApplication {
                lender: lender.clone(),
                amount,
                contacted_at: cx.now,
                phase: if lookup {
                    LenderPhase::LookingUp
                } else {
                    LenderPhase::Starting
                },
            });
            if lookup {
                cx.command(Action::LookupCardholder { lender, amount });
            } else {
                cx.command(Action::StartApplication { lender, amount });
            }
        }
        Step::Finished(outcome) => waterfall_finished(cx, outcome),
    }
}

/// Records `lender`'s display name in the state, once, when it is first asked.
fn remember_name(cx: &mut Ctx<'_>, lender: &LenderId) {
    if !cx.state.lender_names.iter().any(|(id, _)| id == lender) {
        let name = cx.config.lender_name(lender);
        cx.state.lender_names.push((lender.clone(), name));
    }
}

/// The display name of `lender`, for what staff and patients read.
fn name(cx: &Ctx<'_>, lender: &LenderId) -> String {
    cx.config.lender_name(lender)
}

/// Keeps the offer a lender approved (in full or in part) as the lender reported it: its terms
/// are the plan's terms if this lender finances it. The latest per lender.
fn remember_offer(cx: &mut Ctx<'_>, decision: &Decision) {
    if let Decision::Approved { offer, .. } | Decision::PartiallyApproved { offer, .. } = decision {
        cx.state.offers.retain(|o| o.lender != offer.lender);
        cx.state.offers.push(offer.clone());
    }
}

/// Opens a fresh session at `lender` (the patient's "start again" after a lapse, or staff's
/// "Resend link" to a patient who went quiet there): a new `StartApplication` command, so a new
/// reference and a new session at the lender; the lapsed session is left to lapse. The workflow
/// waits on the patient again, with reminders anew once the link is out.
fn fresh_session(cx: &mut Ctx<'_>, lender: LenderId) {
    let amount = match &cx.state.stage {
        Stage::Financing(c) if c.lender == lender => Some(c.amount),
        _ => cx
            .state
            .attempts
            .iter()
            .rev()
            .find(|a| a.lender == lender)
            .map(|a| a.amount)
            .or(cx.state.financing_amount),
    };
    let Some(amount) = amount else {
        return cx.ignore("nothing to finance");
    };
    cx.clear_lender_timers();
    if cx.state.status == Status::WaitingOnStaff {
        cx.state.staff_task = None;
        cx.state.status = Status::Active;
        cx.state.ledger_written_at = None;
    }
    match &mut cx.state.stage {
        Stage::Financing(c) if c.lender == lender => c.phase = LenderPhase::Starting,
        _ => {
            cx.state.stage = Stage::Financing(CurrentApplication {
                lender: lender.clone(),
                amount,
                contacted_at: cx.now,
                phase: LenderPhase::Starting,
            });
        }
    }
    remember_name(cx, &lender);
    cx.audit(format!("{lender}: fresh application session"));
    cx.command(Action::StartApplication { lender, amount });
}

fn start_application(cx: &mut Ctx<'_>, lender: LenderId, amount: Money) {
    if let Stage::Financing(c) = &mut cx.state.stage {
        c.phase = LenderPhase::Starting;
    }
    cx.command(Action::StartApplication { lender, amount });
}

fn lender_decided(cx: &mut Ctx<'_>, lender: &LenderId, decision: &Decision) {
    let Some(amount) = current(cx, lender, |p| !matches!(p, LenderPhase::LookingUp)) else {
        return cx.ignore("decision from a lender that is not the current one");
    };
    if matches!(&cx.state.stage, Stage::Financing(c) if matches!(c.phase, LenderPhase::HeldForStaff { .. }))
    {
        // Staff have the lender's request; their Retry reads the lender again, so nothing the
        // lender says meanwhile is lost.
        return cx.ignore("held for staff; a staff retry reads the lender again");
    }
    let awaiting = matches!(&cx.state.stage, Stage::Financing(c) if matches!(c.phase, LenderPhase::AwaitingPatient { .. }));
    match decision {
        Decision::ApplicationStarted { .. } => {
            cx.ignore("an application start must arrive as ApplicationOpened");
        }
        Decision::Pending { poll_after, .. } => {
            if !awaiting {
                return cx.ignore("pending before any application");
            }
            next_poll(cx, *poll_after);
        }
        Decision::UnderReview { poll_after, .. } => {
            if !awaiting {
                return cx.ignore("under review before any application");
            }
            if let Stage::Financing(c) = &mut cx.state.stage
                && let LenderPhase::AwaitingPatient { session, .. } = &mut c.phase
                && session.submitted_at.is_none()
            {
                session.submitted_at = Some(cx.now);
                let shown = name(cx, lender);
                cx.audit(format!(
                    "{shown}: the patient submitted the application; waiting for the lender's decision"
                ));
                // The patient did their part: no more reminders, and no give-up as "the patient
                // did not finish". The lender's own answer (or its expiry) ends the wait.
                cx.out
                    .clear_timers
                    .extend([TimerKind::Reminder, TimerKind::GiveUp]);
            }
            next_poll(cx, *poll_after);
        }
        Decision::Prequalified {
            offer, requested, ..
        } => {
            if !awaiting {
                return cx.ignore("prequalification before any application");
            }
            // Not financing: remember it (the page shows it) and keep waiting for the purchase or
            // the application's decision.
            cx.audit(format!(
                "{lender}: prequalified up to {} of {requested} asked; waiting for the real decision",
                offer.amount
            ));
            if let Stage::Financing(c) = &mut cx.state.stage
                && let LenderPhase::AwaitingPatient { session, .. } = &mut c.phase
            {
                session.prequalified = Some(offer.clone());
            }
            next_poll(cx, None);
        }
        Decision::NeedsStaff {
            instruction,
            raw_status,
        } => {
            cx.audit(format!("{lender}: {raw_status} needs staff"));
            hold_for_staff(cx, instruction.clone());
        }
        Decision::Unknown(raw) => {
            let raw: String = raw.chars().take(64).collect();
            let shown = name(cx, lender);
            cx.audit(format!("{lender}: unknown status {raw:?}"));
            let reference = match &cx.state.stage {
                Stage::Financing(c) => match &c.phase {
                    LenderPhase::AwaitingPatient { handle, .. } => {
                        format!(" (reference {})", handle.lender_reference)
                    }
                    _ => String::new(),
                },
                _ => String::new(),
            };
            hold_for_staff(
                cx,
                format!(
                    "{shown} answered \"{raw}\", a status this version of Chairside does not know: look the application up with {shown}{reference}, then press Retry to read it again, or mark the task handled"
                ),
            );
        }
        final_decision => {
            remember_offer(cx, final_decision);
            let outcome = AttemptOutcome::from_decision(final_decision, amount).unwrap_or(
                AttemptOutcome::Unrecognized {
                    raw_status: final_decision.label().into(),
                },
            );
            cx.audit(format!("{lender}: {}", outcome.label()));
            finish_lender(cx, outcome);
        }
    }
}

/// Holds the current lender's application for staff with the lender's instruction: no polls, no
/// reminders, no next lender, until staff act (see [`LenderPhase::HeldForStaff`]).
fn hold_for_staff(cx: &mut Ctx<'_>, instruction: String) {
    let Stage::Financing(c) = &mut cx.state.stage else {
        return;
    };
    let resume = std::mem::replace(&mut c.phase, LenderPhase::LookingUp);
    c.phase = LenderPhase::HeldForStaff {
        instruction: instruction.clone(),
        resume: Box::new(resume),
    };
    let task = StaffTask {
        kind: TaskKind::LenderNeedsStaff,
        reason: instruction,
    };
    cx.state.staff_task = Some(task.clone());
    cx.state.status = Status::WaitingOnStaff;
    cx.clear_lender_timers();
    cx.audit("staff task: lender_needs_staff; the waterfall holds");
    cx.out.raise_task = Some(task);
}

/// The current lender's session and schedule, when an application is open.
fn open_session(cx: &Ctx<'_>) -> Option<(LenderId, LenderSession)> {
    match &cx.state.stage {
        Stage::Financing(c) => match &c.phase {
            LenderPhase::AwaitingPatient { session, .. } => {
                Some((c.lender.clone(), session.clone()))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Sets the next status read from the lender's schedule: fast while the patient is likely on the
/// lender's page, slower later, never longer than the practice's `poll_interval`, never sooner
/// than the lender's own `poll_after`, and right after the session lapses so the waterfall moves
/// on within seconds.
fn next_poll(cx: &mut Ctx<'_>, floor: Option<std::time::Duration>) {
    let Some((lender, session)) = open_session(cx) else {
        return;
    };
    if let Some(deadline) = session.decide_by {
        // A link-only lender is never read: the one timer is the end of the wait for staff.
        return cx.timer(TimerKind::Poll, deadline);
    }
    let schedule = cx.config.schedule_for(&lender);
    let opened = session.opened_at.unwrap_or(cx.now);
    let elapsed = (cx.now - opened).to_std().unwrap_or_default();
    let wait = schedule
        .interval_at(elapsed)
        .min(cx.config.poll_interval)
        .max(floor.unwrap_or_default());
    let mut at = later(cx.now, wait);
    if let Some(lapse) = session.expires_at.map(|e| later(e, LAPSE_GRACE))
        && lapse > cx.now
        && at > lapse
    {
        at = lapse;
    }
    cx.timer(TimerKind::Poll, at);
}

fn application_opened(
    cx: &mut Ctx<'_>,
    lender: LenderId,
    handle: ApplicationHandle,
    link: String,
    expires_at: Option<DateTime<Utc>>,
) {
    if cx.state.status == Status::Cancelled {
        return compensate(cx, Action::CancelApplication { lender, handle });
    }
    if current(cx, &lender, |p| matches!(p, LenderPhase::Starting)).is_none() {
        return cx.ignore("no application being opened at this lender");
    }
    forget_undelivered_link(cx);
    let schedule = cx.config.schedule_for(&lender);
    let decide_by = schedule.staff_decides_within.map(|w| later(cx.now, w));
    let session = LenderSession {
        opened_at: Some(cx.now),
        expires_at: expires_at.or_else(|| schedule.session_life.map(|l| later(cx.now, l))),
        prequalified: None,
        decide_by,
        submitted_at: None,
    };
    if let Stage::Financing(c) = &mut cx.state.stage {
        c.phase = LenderPhase::AwaitingPatient {
            handle,
            link: link.clone(),
            reminders_sent: 0,
            session,
        };
    }
    cx.audit(format!("{lender}: application opened"));
    cx.command(Action::SendMessage {
        message: MessageKind::ApplicationLink { lender, link },
    });
    next_poll(cx, None);
    if decide_by.is_some() {
        // A link-only lender: Chairside cannot see whether the patient applied, so no "finish
        // your application" reminders (staff resend the link when the patient asks).
        cx.audit("waiting for staff to record the lender's decision");
        return;
    }
    schedule_reminder(cx, 0);
}

fn effect_failed(cx: &mut Ctx<'_>, action: Action, reason: &str, key_seq: Option<u64>) {
    if cx.state.status == Status::WaitingOnStaff && cx.state.failed_action.as_ref() == Some(&action)
    {
        // The same failure reported twice: staff already have the task and the note.
        return cx.ignore("failure already handed to staff");
    }
    let label = action.label();
    cx.audit(format!("{label} failed: {reason}"));
    let reason = format!("{label} failed: {reason}");
    if cx.state.status == Status::Cancelled {
        // Undoing after a withdrawal: staff finish the undo by hand; nothing is retried blindly.
        cx.state.staff_task = Some(StaffTask {
            kind: TaskKind::SystemError,
            reason: reason.clone(),
        });
        cx.out.raise_task = Some(StaffTask {
            kind: TaskKind::SystemError,
            reason,
        });
        if let Stage::Undoing { outstanding } = cx.state.stage {
            let left = outstanding.saturating_sub(1);
            cx.state.stage = Stage::Undoing { outstanding: left };
            if left == 0 {
                write_outcome_note(cx);
            }
        }
        return;
    }
    if let Action::SettleWithLender { .. } = &action {
        return settlement_failed(cx, action, &reason);
    }
    if matches!(
        action,
        Action::ChargeCard { .. }
            | Action::ReadSavedCard { .. }
            | Action::CreatePayLink { .. }
            | Action::SetScheduleCard { .. }
    ) || (matches!(action, Action::CreateInstallmentSchedule { .. })
        && cx.state.stripe.schedule_creating)
    {
        return card_effect_failed(cx, action, reason, key_seq);
    }
    let note_failed = matches!(
        action,
        Action::WriteLedgerNote { .. } | Action::EnsurePracticePatient | Action::WritePracticePlan
    );
    cx.state.failed_action = Some(action);
    cx.state.failed_key_seq = key_seq;
    if note_failed {
        // The ledger itself is unreachable: open the task and stop, or the note would fail again.
        let task = StaffTask {
            kind: TaskKind::SystemError,
            reason,
        };
        cx.state.staff_task = Some(task.clone());
        cx.state.status = Status::WaitingOnStaff;
        cx.state.stage = Stage::Settled;
        cx.out.clear_timers.extend(ALL_TIMERS);
        keep_settlement_timer(cx);
        cx.out.raise_task = Some(task);
        return;
    }
    to_staff(cx, TaskKind::SystemError, reason);
}

/// Sets the next reminder (after `sent` reminders), or the give-up timer when none is left.
///
/// A lender whose session lapses (CareCredit: 30 minutes) bounds the reminders: one that would come
/// after `expires_at - remind_before_expiry` is brought forward to that moment (once), and none is
/// sent after it (a reminder never carries a lapsed link). The lapse itself is the lender's to
/// report (a status read is set for it, see `next_poll`): an application the patient finished is
/// still pending review after the portal session ends, so the give-up keeps its own horizon.
fn schedule_reminder(cx: &mut Ctx<'_>, sent: u32) {
    let session = open_session(cx);
    let expires = session.as_ref().and_then(|(_, s)| s.expires_at);
    let last_call = session.as_ref().and_then(|(lender, s)| {
        let before = cx.config.schedule_for(lender).remind_before_expiry;
        let before = chrono::TimeDelta::from_std(before).unwrap_or(chrono::TimeDelta::MAX);
        s.expires_at.and_then(|e| e.checked_sub_signed(before))
    });
    let reminder = cx
        .config
        .reminder_delays
        .get(sent as usize)
        .and_then(|delay| {
            let at = later(cx.now, *delay);
            match (expires, last_call) {
                (None, _) => Some(at),
                (Some(_), Some(last)) if at <= last => Some(at),
                (Some(_), Some(last)) if last > cx.now => Some(last),
                _ => None,
            }
        });
    match reminder {
        Some(at) => cx.timer(TimerKind::Reminder, at),
        None => cx.timer(TimerKind::GiveUp, later(cx.now, cx.config.give_up_after)),
    }
}

/// `now + wait`, saturating at the latest representable instant: a duration from the
/// configuration or a lender's `poll_after` never panics the machine.
fn later(now: DateTime<Utc>, wait: std::time::Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(wait)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn finish_lender(cx: &mut Ctx<'_>, outcome: AttemptOutcome) {
    let Stage::Financing(c) = &cx.state.stage else {
        return;
    };
    let attempt = Attempt {
        lender: c.lender.clone(),
        amount: c.amount,
        contacted_at: c.contacted_at,
        outcome,
    };
    cx.state.attempts.push(attempt);
    cx.clear_lender_timers();
    next_lender(cx);
}

fn timer_fired(cx: &mut Ctx<'_>, timer: TimerKind) {
    match (timer, &cx.state.stage) {
        (TimerKind::Resume, Stage::Deferred) => next_lender(cx),
        (TimerKind::Poll, Stage::Financing(c)) => match &c.phase {
            LenderPhase::AwaitingPatient { session, .. } if session.decide_by.is_some() => {
                no_staff_decision(cx);
            }
            LenderPhase::AwaitingPatient { handle, .. } => {
                let (lender, handle) = (c.lender.clone(), handle.clone());
                cx.command(Action::PollApplication { lender, handle });
            }
            _ => cx.ignore("poll without an application"),
        },
        (TimerKind::Reminder, Stage::Financing(c)) => match &c.phase {
            LenderPhase::AwaitingPatient { session, .. } if session.submitted_at.is_some() => {
                cx.ignore("the patient submitted the application; the lender is reviewing it");
            }
            LenderPhase::AwaitingPatient { session, .. } if session.expired(cx.now) => {
                cx.ignore("the lender's session has lapsed; its link is never sent again");
            }
            LenderPhase::AwaitingPatient {
                link,
                reminders_sent,
                ..
            } => {
                let (lender, link, number) = (c.lender.clone(), link.clone(), reminders_sent + 1);
                if let Stage::Financing(c) = &mut cx.state.stage
                    && let LenderPhase::AwaitingPatient { reminders_sent, .. } = &mut c.phase
                {
                    *reminders_sent = number;
                }
                cx.command(Action::SendMessage {
                    message: MessageKind::Reminder {
                        lender,
                        link,
                        number,
                    },
                });
                schedule_reminder(cx, number);
            }
            _ => cx.ignore("reminder without an application"),
        },
        (TimerKind::GiveUp, Stage::Financing(c)) => match &c.phase {
            LenderPhase::AwaitingPatient { session, .. } if session.submitted_at.is_some() => {
                cx.ignore("the patient submitted the application; the lender is reviewing it");
            }
            LenderPhase::AwaitingPatient { handle, .. } => {
                let (lender, handle) = (c.lender.clone(), handle.clone());
                cx.audit(format!("{lender}: patient did not finish the application"));
                cx.command(Action::CancelApplication { lender, handle });
                finish_lender(cx, AttemptOutcome::Abandoned);
            }
            _ => cx.ignore("give-up without an application"),
        },
        (TimerKind::Reminder, Stage::OfferingInHouse { reminders_sent }) => {
            let number = reminders_sent + 1;
            cx.state.stage = Stage::OfferingInHouse {
                reminders_sent: number,
            };
            cx.command(Action::SendMessage {
                message: MessageKind::InHouseOffer { number },
            });
            schedule_reminder(cx, number);
        }
        (TimerKind::GiveUp, _)
            if cx.state.stripe.schedule_awaits_card && cx.state.status != Status::Cancelled =>
        {
            cx.audit("no card saved for the installments in time: Stripe emails their invoices");
            cx.state.stripe.installments_by_invoice = Some(InHouseAcceptance {
                at: cx.now,
                wording: "no card was saved for the installments while the schedule waited: invoices by email".into(),
            });
            installments_decided(cx);
        }
        (TimerKind::GiveUp, Stage::OfferingInHouse { .. }) => {
            cx.audit("the patient did not answer the in-house plan offer");
            to_staff(
                cx,
                TaskKind::PatientQuiet,
                "the patient did not answer the in-house payment plan offer after every reminder; call the patient, then resend the offer or cancel".into(),
            );
        }
        _ => cx.ignore("timer does not fit the stage"),
    }
}

/// The wait for staff to record a link-only lender's decision ended (or a poll timer fired
/// early: it is set again for the deadline). The waterfall moves on as after a decline, and staff
/// get a task to look the application up in the lender's portal: the patient may have been
/// approved there. The task stays with the workflow (it ends waiting on staff) until handled.
fn no_staff_decision(cx: &mut Ctx<'_>) {
    let Some((lender, session)) = open_session(cx) else {
        return;
    };
    let Some(deadline) = session.decide_by else {
        return;
    };
    if cx.now < deadline {
        return cx.timer(TimerKind::Poll, deadline);
    }
    cx.audit(format!(
        "{lender}: no decision recorded by staff by {deadline}; next lender"
    ));
    let task = StaffTask {
        kind: TaskKind::LenderNoDecision,
        reason: format!(
            "no {lender} decision was recorded by {}, so Chairside moved on to the next option; look the application up in the {lender} portal and, if the patient was approved there, settle it with them before anything else is charged",
            deadline.format("%Y-%m-%d %H:%M UTC")
        ),
    };
    cx.state.staff_task = Some(task.clone());
    cx.out.raise_task = Some(task.clone());
    finish_lender(cx, AttemptOutcome::NoDecision);
    // The waterfall may have ended in a task of its own (no financing at all): one task says both.
    if let Some(other) = cx.out.raise_task.as_mut().filter(|t| **t != task) {
        other.reason = format!("{}; also: {}", other.reason, task.reason);
        cx.state.staff_task = Some(other.clone());
    }
}

/// Offers the in-house plan of `result`: nothing is created at Stripe until the patient accepts
/// (DESIGN.md: offers are offered). The offer goes out now, reminders follow on the practice's
/// schedule, and staff get a task when the patient stays silent.
fn offer_in_house(cx: &mut Ctx<'_>, result: FinancingResult) {
    cx.state.result = Some(result);
    cx.state.in_house_acceptance = None;
    cx.state.stage = Stage::OfferingInHouse { reminders_sent: 0 };
    cx.audit("in-house plan offered; waiting for the patient's answer");
    cx.command(Action::SendMessage {
        message: MessageKind::InHouseOffer { number: 0 },
    });
    schedule_reminder(cx, 0);
}

fn in_house_answered(cx: &mut Ctx<'_>, accepted: bool, wording: String) {
    if !matches!(cx.state.stage, Stage::OfferingInHouse { .. }) || cx.state.status != Status::Active
    {
        return cx.ignore("no in-house offer awaiting an answer");
    }
    cx.out
        .clear_timers
        .extend([TimerKind::Reminder, TimerKind::GiveUp]);
    if accepted {
        cx.audit(format!("patient accepted the in-house plan: {wording}"));
        cx.state.in_house_acceptance = Some(crate::InHouseAcceptance {
            at: cx.now,
            wording,
        });
        start_payments(cx);
    } else {
        cx.audit(format!("patient declined the in-house plan: {wording}"));
        to_staff(
            cx,
            TaskKind::NoFinancing,
            "the patient declined the in-house payment plan; discuss payment with the patient"
                .into(),
        );
    }
}

fn in_house_offer(cx: &mut Ctx<'_>, amount: Money) -> Result<Option<InHouseOffer>, String> {
    match cx.config.in_house {
        None => Ok(None),
        Some(terms) => {
            let terms = InHouseTerms {
                deposit: DepositRule::None,
                ..terms
            };
            InHouseOffer::compute(amount, &terms)
                .map(Some)
                .map_err(|e| format!("the in-house plan cannot be set up: {e}"))
        }
    }
}

fn waterfall_finished(cx: &mut Ctx<'_>, outcome: WaterfallOutcome) {
    let deposit = cx.state.deposit.unwrap_or(Money::usd(0));
    let result = |financed, in_house, path: String| FinancingResult {
        financed,
        deposit,
        in_house,
        path,
    };
    match outcome {
        WaterfallOutcome::Financed { lender, amount } => {
            // A lender may approve more than asked (a credit line); it finances what was asked.
            let amount = cx
                .state
                .financing_amount
                .map_or(amount, |asked| amount.min(asked));
            cx.state.result = Some(result(
                Some((lender.clone(), amount)),
                None,
                format!("{lender} approved"),
            ));
            start_payments(cx);
        }
        WaterfallOutcome::CounterofferWithRemainder {
            lender,
            approved,
            remainder,
            in_house,
        } => {
            if in_house {
                match in_house_offer(cx, remainder) {
                    Ok(Some(offer)) => offer_in_house(
                        cx,
                        result(
                            Some((lender.clone(), approved)),
                            Some(offer),
                            format!("{lender} partial + in-house"),
                        ),
                    ),
                    Ok(None) => counteroffer_task(cx, &lender, approved, remainder),
                    Err(reason) => to_staff(cx, TaskKind::Counteroffer, reason),
                }
            } else {
                counteroffer_task(cx, &lender, approved, remainder);
            }
        }
        WaterfallOutcome::CounterofferForStaff {
            lender,
            approved,
            requested,
        } => {
            let remainder = requested.checked_sub(approved).unwrap_or(requested);
            counteroffer_task(cx, &lender, approved, remainder);
        }
        WaterfallOutcome::PatientInactive { lender } => {
            let shown = name(cx, &lender);
            to_staff(
                cx,
                TaskKind::PatientQuiet,
                format!(
                    "the patient did not finish the {shown} application after every reminder; call the patient, then Resend link (a fresh {shown} session) or cancel"
                ),
            );
        }
        WaterfallOutcome::NoLenderApproved { in_house } => {
            let amount = cx.state.financing_amount.unwrap_or(deposit);
            match (in_house, in_house_offer(cx, amount)) {
                (true, Ok(Some(offer))) => {
                    offer_in_house(cx, result(None, Some(offer), "in-house plan".into()));
                }
                (true, Err(reason)) => to_staff(cx, TaskKind::NoFinancing, reason),
                _ => to_staff(cx, TaskKind::NoFinancing, "no lender approved and the practice has no in-house plan; discuss payment with the patient".into()),
            }
        }
        other => to_staff(
            cx,
            TaskKind::SystemError,
            format!("the waterfall ended in a way this version does not handle: {other:?}"),
        ),
    }
}

fn counteroffer_task(cx: &mut Ctx<'_>, lender: &LenderId, approved: Money, remainder: Money) {
    let shown = name(cx, lender);
    to_staff(
        cx,
        TaskKind::Counteroffer,
        format!(
            "{shown} approved {approved}, {remainder} short of the amount asked; discuss the counteroffer with the patient"
        ),
    );
}

fn start_payments(cx: &mut Ctx<'_>) {
    let deposit = cx
        .state
        .result
        .as_ref()
        .map_or(Money::usd(0), |r| r.deposit);
    let schedule = cx
        .state
        .result
        .as_ref()
        .is_some_and(|r| r.in_house.is_some())
        && cx.state.in_house_acceptance.is_some();
    // A co-pay ahead needs the Stripe customer either way: the saved card's charge, or (pay
    // link) the treatment day's pay link.
    let copay = !copay_amount(cx).is_zero();
    if deposit.is_zero() && !schedule && !copay {
        return notify(cx);
    }
    cx.state.stage = Stage::Payments(PaymentStep::Customer);
    cx.command(Action::EnsureCustomer);
}

fn next_payment_step(cx: &mut Ctx<'_>) {
    let Some(result) = cx.state.result.clone() else {
        return notify(cx);
    };
    let installments_ahead = result.in_house.is_some() && cx.state.in_house_acceptance.is_some();
    if cx.config.payment_preference == PaymentPreference::CardOnFile
        && (!result.deposit.is_zero() || !copay_amount(cx).is_zero() || installments_ahead)
        && cx.state.stripe.checkout_session_id.is_none()
        && cx.state.stripe.card_setup_session_id.is_none()
        && cx.state.stripe.payment_method.is_none()
        && !cx.state.stripe.deposit_paid
    {
        // Card on file: the patient saves a card from the patient page (nothing is charged
        // until they do, and agree); the deposit is charged off-session then, a co-pay on the
        // treatment day. No pay link up front; the page offers one on request.
        cx.state.stage = Stage::Payments(PaymentStep::CardSetup);
        cx.state.stripe.card_on_file = true;
        return cx.command(Action::CreateCardSetupLink);
    }
    if cx.config.payment_preference == PaymentPreference::CardOnFile
        && !result.deposit.is_zero()
        && !cx.state.stripe.deposit_paid
        && cx.state.stripe.payment_method.is_some()
    {
        // A card already saved (a staff retry of a later step): charge it, then carry on.
        charge_due(cx);
    } else if cx.config.payment_preference == PaymentPreference::PayLink
        && !result.deposit.is_zero()
        && cx.state.stripe.checkout_session_id.is_none()
        && cx.state.stripe.expired_sessions.is_empty()
    {
        cx.state.stage = Stage::Payments(PaymentStep::DepositLink);
        return cx.command(Action::CreateDepositLink {
            amount: result.deposit,
        });
    }
    // The schedule bills the patient: only after the patient accepted the offer.
    if let Some(offer) = result.in_house
        && cx.state.in_house_acceptance.is_some()
        && cx.state.stripe.schedule_id.is_none()
    {
        if installments_wait_for_card(cx) {
            // Card on file: the schedule is created once the patient saved a card for the
            // installments (or confirmed the saved one) or chose emailed invoices, so that the
            // first installment is charged to the card, never emailed. The summary goes out
            // meanwhile (its link is where the patient saves the card). Not forever: after
            // `give_up_after` the installments are invoiced by email (the timer below).
            if !cx.state.stripe.schedule_awaits_card {
                cx.state.stripe.schedule_awaits_card = true;
                cx.audit("the installment schedule waits for the patient's card or their choice of emailed invoices");
                cx.timer(TimerKind::GiveUp, cx.now + cx.config.give_up_after);
            }
            return notify(cx);
        }
        cx.state.stage = Stage::Payments(PaymentStep::Schedule);
        // Card on file, saved with the patient's agreement naming the installments: the
        // schedule charges it; otherwise Stripe emails each installment's invoice.
        let payment_method = installment_card(cx);
        if let Some(pm) = &payment_method {
            cx.state.stripe.schedule_card = Some(pm.clone());
            cx.audit("installments charged to the saved card");
        }
        return cx.command(Action::CreateInstallmentSchedule {
            offer,
            payment_method,
        });
    }
    notify(cx);
}

fn notify(cx: &mut Ctx<'_>) {
    cx.state.stage = Stage::Notifying;
    cx.command(Action::SendMessage {
        message: MessageKind::FinancingSummary,
    });
}

fn message_done(cx: &mut Ctx<'_>, message: &MessageKind, failure: Option<String>) {
    if let Some(reason) = &failure {
        cx.audit(format!("{} undeliverable: {reason}", message.label()));
    }
    match (message, &cx.state.stage) {
        (MessageKind::FinancingSummary, Stage::Notifying) => {
            if let Some(reason) = failure {
                // The financing is arranged: the note still goes to the ledger, and staff pass the
                // summary on by hand.
                let task = StaffTask {
                    kind: TaskKind::Unreachable,
                    reason: format!("the summary could not be sent: {reason}"),
                };
                cx.state.staff_task = Some(task.clone());
                cx.out.raise_task = Some(task);
            }
            write_outcome_note(cx);
        }
        (MessageKind::FinancingSummary, _) => cx.ignore("summary already handled"),
        (MessageKind::ApplicationLink { lender, .. } | MessageKind::Reminder { lender, .. }, _)
            if failure.is_some() =>
        {
            link_undelivered(cx, lender, failure.as_deref().unwrap_or_default());
        }
        // Already on the audit trail as undeliverable above; nothing else waits on it.
        _ if failure.is_some() => {}
        _ => cx.audit(format!("{} sent", message.label())),
    }
}

/// A lender's link (or a reminder carrying it) could not be sent. The application at the lender
/// stays open, and whatever the lender decides is taken as usual: the patient may have the link
/// anyway (their page, the desk, a send that went out but was not confirmed). Staff get one task
/// beside the running financing to hand the link over or correct the contact details and resend
/// it; a later failed reminder does not raise another while that task is on the workflow.
fn link_undelivered(cx: &mut Ctx<'_>, lender: &financing_core::LenderId, reason: &str) {
    if current(cx, lender, |p| {
        matches!(p, LenderPhase::AwaitingPatient { .. })
    })
    .is_none()
    {
        return cx.ignore("no open application at this lender");
    }
    if cx
        .state
        .staff_task
        .as_ref()
        .is_some_and(|t| t.kind == TaskKind::Unreachable)
    {
        return cx.audit("staff already have the undelivered link; the application stays open");
    }
    let task = StaffTask {
        kind: TaskKind::Unreachable,
        reason: format!(
            "the {} application link could not be sent ({reason}); the application stays open: \
             give the patient the link on their page, or correct their phone or email and resend it",
            cx.state.lender_name(lender)
        ),
    };
    cx.audit(format!(
        "staff task: {} (beside the open application)",
        task.kind.label()
    ));
    cx.state.staff_task = Some(task.clone());
    cx.out.raise_task = Some(task);
}

/// A new link is on its way (another lender's, a fresh session's, or the same one resent by staff):
/// an undelivered earlier link's task is no longer the workflow's current task, so this link's
/// failure raises its own. The earlier task stays open until staff close it.
fn forget_undelivered_link(cx: &mut Ctx<'_>) {
    if cx.state.status == Status::Active
        && cx
            .state
            .staff_task
            .as_ref()
            .is_some_and(|t| t.kind == TaskKind::Unreachable)
    {
        cx.state.staff_task = None;
    }
}

fn write_outcome_note(cx: &mut Ctx<'_>) {
    cx.state.stage = Stage::WritingNote;
    ledger_note(cx, NoteKind::Outcome);
}

fn note_written(cx: &mut Ctx<'_>, note: &NoteKind, at: DateTime<Utc>) {
    match note {
        NoteKind::Outcome if cx.state.stage == Stage::WritingNote => outcome_recorded(cx, Some(at)),
        NoteKind::Outcome => cx.ignore("outcome note already written"),
        NoteKind::Payment { stripe_id, .. } => cx.audit(format!("payment {stripe_id} noted")),
        NoteKind::Reversal { stripe_id, .. } => cx.audit(format!("reversal {stripe_id} noted")),
        NoteKind::Settlement { lender, .. } => cx.audit(format!("{lender} settlement noted")),
    }
}

/// The outcome is on record: in the ledger (`at`, when the note was written) or, for an intake
/// that did not convert, in Chairside only (`None`: operatory-to-ledger time does not end).
fn outcome_recorded(cx: &mut Ctx<'_>, at: Option<DateTime<Utc>>) {
    if let Some(at) = at {
        cx.state.ledger_written_at.get_or_insert(at);
    }
    cx.state.stage = Stage::Settled;
    if cx.state.status == Status::Active {
        cx.state.status = if cx
            .state
            .staff_task
            .as_ref()
            .is_some_and(|t| t.kind != TaskKind::Unreachable)
        {
            Status::WaitingOnStaff
        } else {
            Status::Done
        };
    }
    cx.audit(format!(
        "{}; workflow {}",
        if at.is_some() {
            "ledger note written"
        } else {
            "outcome recorded"
        },
        cx.state.status.label()
    ));
    plan_settlement(cx);
    plan_copay(cx);
}

fn to_staff(cx: &mut Ctx<'_>, kind: TaskKind, reason: String) {
    let task = StaffTask { kind, reason };
    cx.state.staff_task = Some(task.clone());
    cx.state.status = Status::WaitingOnStaff;
    cx.out.clear_timers.extend(ALL_TIMERS);
    cx.audit(format!("staff task: {}", kind.label()));
    cx.out.raise_task = Some(task);
    cx.state.stage = Stage::WritingNote;
    ledger_note(cx, NoteKind::Outcome);
}

fn undo_actions(cx: &Ctx<'_>) -> Vec<Action> {
    let mut undo = Vec::new();
    if let Stage::Financing(c) = &cx.state.stage {
        let phase = match &c.phase {
            LenderPhase::HeldForStaff { resume, .. } => resume.as_ref(),
            phase => phase,
        };
        if let LenderPhase::AwaitingPatient { handle, .. } = phase {
            undo.push(Action::CancelApplication {
                lender: c.lender.clone(),
                handle: handle.clone(),
            });
        }
    }
    if let Some(schedule_id) = &cx.state.stripe.schedule_id
        && !cx.state.stripe.schedule_ended
    {
        undo.push(Action::CancelSchedule {
            schedule_id: schedule_id.clone(),
        });
    }
    if let Some(session_id) = &cx.state.stripe.checkout_session_id {
        undo.push(Action::ExpireDepositLink {
            session_id: session_id.clone(),
        });
    }
    if let Some(session_id) = &cx.state.stripe.card_setup_session_id
        && cx.state.stripe.payment_method.is_none()
    {
        undo.push(Action::ExpireDepositLink {
            session_id: session_id.clone(),
        });
    }
    undo
}

fn withdraw(cx: &mut Ctx<'_>, reason: &str) {
    if cx.state.status == Status::Cancelled {
        return cx.ignore("already cancelled");
    }
    cx.audit(format!("plan withdrawn in the practice system: {reason}"));
    cancel(cx);
}

/// Undoes something that came into existence after the workflow was cancelled (a call that was
/// already queued, or in its retry wait, when the plan was withdrawn).
fn compensate(cx: &mut Ctx<'_>, undo: Action) {
    cx.audit(format!(
        "created after cancellation; undoing: {}",
        undo.label()
    ));
    if let Stage::Undoing { outstanding } = cx.state.stage {
        cx.state.stage = Stage::Undoing {
            outstanding: outstanding + 1,
        };
    }
    cx.command(undo);
}

fn cancel(cx: &mut Ctx<'_>) {
    let undo = undo_actions(cx);
    cx.state.status = Status::Cancelled;
    cx.state.staff_task = None;
    cx.out.clear_timers.extend(ALL_TIMERS);
    // Queued messages (a summary, a reminder) must not reach the patient of a withdrawn plan;
    // queued creations still run and are undone when their result arrives (`compensate`).
    cx.out.drop_pending_messages = true;
    if undo.is_empty() {
        write_outcome_note(cx);
        return;
    }
    cx.state.stage = Stage::Undoing {
        outstanding: undo.len() as u32,
    };
    for action in undo {
        cx.command(action);
    }
}

fn payment_fact(cx: &mut Ctx<'_>, fact: PaymentFact) {
    if cx.state.stripe.customer_id.is_none() {
        return cx.ignore("payment for a workflow without Stripe objects");
    }
    match fact {
        PaymentFact::Paid { stripe_id, amount } => {
            if cx
                .state
                .stripe
                .installment_pay_link
                .as_ref()
                .is_some_and(|l| l.invoice_id == stripe_id)
            {
                // The failed installment was paid (its page, or Stripe's retry): no link left.
                cx.state.stripe.installment_pay_link = None;
            }
            if cx.state.stripe.payments_noted.contains(&stripe_id) {
                return cx.ignore("payment already noted");
            }
            cx.state.stripe.payments_noted.push(stripe_id.clone());
            ledger_note(cx, NoteKind::Payment { stripe_id, amount });
        }
        PaymentFact::Failed { stripe_id } => {
            if cx.state.stripe.failures_handled.contains(&stripe_id) {
                return cx.ignore("failure already handled");
            }
            let on_card = cx
                .state
                .stripe
                .installment_pay_link
                .as_ref()
                .filter(|l| l.invoice_id == stripe_id)
                .map(|l| l.amount);
            cx.state.stripe.failures_handled.push(stripe_id);
            cx.command(Action::SendMessage {
                message: MessageKind::PaymentFailed,
            });
            let reason = match on_card {
                Some(amount) => format!(
                    "the saved card was not charged for an installment of {amount} (declined, or the bank asked the patient to authenticate); Stripe retries it, and the patient was sent the installment's pay link. Call the patient if it stays unpaid"
                ),
                None => {
                    "a scheduled payment failed; Stripe retries it, and the patient was told".into()
                }
            };
            cx.out.raise_task = Some(StaffTask {
                kind: TaskKind::PaymentFailed,
                reason,
            });
        }
        PaymentFact::InstallmentUnpaid {
            invoice_id,
            url,
            amount,
        } => {
            if cx.state.stripe.schedule_card.is_none() || cx.state.status == Status::Cancelled {
                // Emailed invoices carry their own link; a cancelled plan collects nothing.
                return cx.ignore("not an installment charged to the saved card");
            }
            if cx.state.stripe.payments_noted.contains(&invoice_id) {
                return cx.ignore("installment already paid");
            }
            cx.audit(format!(
                "installment {invoice_id} of {amount} not paid by the saved card: its pay link is on the patient page"
            ));
            cx.state.stripe.installment_pay_link = Some(crate::InstallmentPayLink {
                invoice_id,
                url,
                amount,
            });
        }
        PaymentFact::InvoicePaymentIntent {
            invoice_id,
            payment_intent,
        } => {
            if cx
                .state
                .stripe
                .invoice_payment_intents
                .contains(&payment_intent)
            {
                return cx.ignore("invoice payment already recorded");
            }
            cx.state
                .stripe
                .invoice_payment_intents
                .push(payment_intent.clone());
            cx.audit(format!("installment {invoice_id} paid by {payment_intent}"));
        }
        PaymentFact::ScheduleCompleted => cx.audit("installment schedule completed"),
        PaymentFact::CheckoutCompleted { session_id } if copay_link_is(cx, &session_id) => {
            if let Some(c) = &mut cx.state.copay {
                c.state = CopayState::Paid {
                    stripe_id: session_id.clone(),
                };
            }
            cx.audit(format!("co-pay paid through {session_id}"));
        }
        PaymentFact::CheckoutExpired { session_id } if copay_link_is(cx, &session_id) => {
            copay_link_expired(cx, &session_id);
        }
        PaymentFact::CheckoutCompleted { session_id } => {
            if cx.state.stripe.checkout_session_id.as_deref() != Some(session_id.as_str()) {
                return cx.ignore("not the deposit's Checkout Session");
            }
            if cx.state.stripe.deposit_paid {
                return cx.ignore("deposit already paid");
            }
            cx.state.stripe.deposit_paid = true;
            cx.audit(format!("deposit paid through {session_id}"));
            if cx.state.stripe.staff_pay_link {
                // A staff retry found the link paid in Stripe: nothing to re-issue or send.
                cx.state.stripe.staff_pay_link = false;
                cx.state.stripe.reissuing_deposit_link = false;
                if cx.state.status == Status::Active && cx.state.stage == Stage::Settled {
                    cx.state.status = Status::Done;
                }
            }
        }
        PaymentFact::CheckoutExpired { session_id }
            if cx.state.stripe.card_setup_session_id.as_deref() == Some(session_id.as_str()) =>
        {
            // The card-saving link lapsed unused: the page makes a fresh one on the next click.
            cx.state.stripe.card_setup_session_id = None;
            cx.state.stripe.card_setup_url = None;
            cx.audit(format!("card-saving link {session_id} expired unused"));
        }
        PaymentFact::CardSetupCompleted {
            session_id,
            setup_intent,
        } => {
            if cx.state.stripe.card_setup_session_id.as_deref() != Some(session_id.as_str()) {
                return cx.ignore("not this workflow's card-saving session");
            }
            if cx.state.stripe.payment_method.is_some() {
                return cx.ignore("card already saved");
            }
            if cx.state.status == Status::Cancelled {
                return cx.ignore("cancelled: the saved card is not used");
            }
            cx.audit(format!("card saved through {session_id}"));
            cx.command(Action::ReadSavedCard { setup_intent });
        }
        PaymentFact::CheckoutExpired { session_id } => {
            if cx.state.stripe.checkout_session_id.as_deref() != Some(session_id.as_str())
                || cx.state.stripe.deposit_paid
            {
                return cx.ignore("not the deposit's open Checkout Session");
            }
            // The link is dead: the page offers a fresh one on the patient's click.
            cx.state.stripe.checkout_session_id = None;
            cx.state.stripe.checkout_url = None;
            cx.state.stripe.expired_sessions.push(session_id.clone());
            cx.audit(format!("deposit link {session_id} expired unpaid"));
        }
        PaymentFact::FinalFailure { stripe_id } => {
            if cx.state.stripe.failures_handled.contains(&stripe_id) {
                return cx.ignore("failure already handled");
            }
            cx.state.stripe.failures_handled.push(stripe_id);
            cx.command(Action::SendMessage {
                message: MessageKind::PaymentFailed,
            });
            cx.out.raise_task = Some(StaffTask {
                kind: TaskKind::PaymentFailed,
                reason: "the last retry of a payment failed: Stripe will not try again; the patient was told, call them for another card".into(),
            });
        }
        PaymentFact::Refunded {
            stripe_id,
            amount,
            refunds,
        } => refunded(cx, stripe_id, amount, refunds.as_deref()),
        PaymentFact::Disputed {
            stripe_id,
            amount,
            reason,
        } => disputed(cx, stripe_id, amount, reason.as_deref()),
        PaymentFact::ScheduleEnded {
            schedule_id,
            aborted,
        } => schedule_ended(cx, &schedule_id, aborted),
    }
}

/// The pay link of a staff retry exists: the deposit's link is this one (a session still open in
/// Stripe comes back as itself; a fresh one retires the dead one), and the patient is sent the
/// page's link once.
fn staff_pay_link_created(cx: &mut Ctx<'_>, session_id: &str, url: String) {
    let stripe = &mut cx.state.stripe;
    stripe.staff_pay_link = false;
    stripe.reissuing_deposit_link = false;
    if stripe.deposit_paid {
        return cx.ignore("the deposit was paid meanwhile; the link is not sent");
    }
    match stripe.checkout_session_id.replace(session_id.to_owned()) {
        Some(old) if old == session_id => {
            cx.audit(format!(
                "deposit link {session_id} still open in Stripe: sent again"
            ));
        }
        Some(old) => {
            if !stripe.expired_sessions.contains(&old) {
                stripe.expired_sessions.push(old.clone());
            }
            cx.audit(format!("fresh deposit link {session_id} replaces {old}"));
        }
        None => cx.audit(format!("fresh deposit link {session_id} issued")),
    }
    cx.state.stripe.checkout_url = Some(url);
    if cx.state.status == Status::Active && cx.state.stage == Stage::Settled {
        // A staff retry of a failed reissue reopened the workflow: it is done again.
        cx.state.status = Status::Done;
    }
    cx.command(Action::SendMessage {
        message: MessageKind::PayLinkReissued,
    });
}

/// The patient asked for a fresh deposit link (the last one expired unpaid): one Checkout
/// Session at a time, never for a paid deposit, a cancelled workflow, or before the first link.
fn deposit_link_requested(cx: &mut Ctx<'_>) {
    let deposit = cx.state.result.as_ref().map(|r| r.deposit);
    let stripe = &cx.state.stripe;
    let wanted = cx.state.status != Status::Cancelled
        && !stripe.deposit_paid
        && !stripe.reissuing_deposit_link
        && stripe.checkout_session_id.is_none()
        && stripe.customer_id.is_some()
        && (!stripe.expired_sessions.is_empty()
            || cx.config.payment_preference == PaymentPreference::CardOnFile)
        && !matches!(
            stripe.card_charge(DEPOSIT).map(|c| &c.state),
            Some(CardChargeState::Charging)
        );
    match deposit {
        Some(amount) if wanted && !amount.is_zero() => {
            cx.state.stripe.reissuing_deposit_link = true;
            cx.audit("patient asked for a fresh deposit link");
            cx.command(Action::CreateDepositLink { amount });
        }
        _ => cx.ignore("no expired deposit link to replace"),
    }
}

fn staff(cx: &mut Ctx<'_>, action: StaffAction) {
    match action {
        StaffAction::Cancel => {
            if cx.state.status == Status::Cancelled {
                return cx.ignore("already cancelled");
            }
            cx.audit("cancelled by staff");
            cancel(cx);
        }
        StaffAction::MarkHandled => {
            if cx.state.status != Status::WaitingOnStaff && !settlement_open(cx) && !copay_open(cx)
            {
                return cx.ignore("no open task");
            }
            copay_handled(cx);
            cx.state.staff_task = None;
            cx.state.status = Status::Done;
            if matches!(
                cx.state.failed_action,
                Some(Action::ReissueDepositLink { .. } | Action::CreateDepositLink { .. })
            ) {
                // A deposit link that failed to be made, handled outside: none is being issued
                // any more, so a later staff retry or patient request asks for one again.
                cx.state.stripe.staff_pay_link = false;
                cx.state.stripe.reissuing_deposit_link = false;
                cx.state.failed_action = None;
                cx.state.failed_key_seq = None;
            }
            if matches!(cx.state.stage, Stage::Financing(_)) {
                // A held lender handled outside Chairside: nothing more is asked of anyone.
                cx.state.stage = Stage::Settled;
                cx.out.clear_timers.extend(ALL_TIMERS);
            }
            cx.audit("task handled by staff");
            if let Some(s) = &mut cx.state.settlement
                && matches!(
                    s.state,
                    SettlementState::Manual { .. } | SettlementState::Failed { .. }
                )
            {
                s.state = SettlementState::HandledByStaff { at: cx.now };
                cx.out.clear_timers.push(TimerKind::Settle);
                cx.audit("lender charge run by staff");
            }
        }
        StaffAction::RecordLenderDecision => {
            cx.ignore("a lender decision arrives as lender_decided, not as a staff event");
        }
        StaffAction::CorrectAmounts => {
            cx.ignore("a correction arrives as amounts_corrected, not as a staff event");
        }
        StaffAction::Retry if cx.state.status == Status::Done => {
            // A failed payment beside a finished financing: a pay link for the deposit owed.
            match cx.state.pay_link_retry() {
                Ok(amount) => {
                    cx.state.stripe.reissuing_deposit_link = true;
                    cx.state.stripe.staff_pay_link = true;
                    cx.audit(format!(
                        "staff retry of a failed payment: a pay link for the deposit of {amount}"
                    ));
                    let previous = cx.state.stripe.checkout_session_id.clone();
                    cx.command(Action::ReissueDepositLink { amount, previous });
                }
                Err(why) => cx.ignore(&format!("no pay link to re-issue: {why}")),
            }
        }
        StaffAction::Retry => {
            if cx.state.status != Status::WaitingOnStaff {
                return cx.ignore("nothing to retry");
            }
            if cx
                .state
                .staff_task
                .as_ref()
                .is_some_and(|t| t.kind == TaskKind::LenderNoDecision)
            {
                // Starting over would ask every lender again: the task is answered by marking it
                // handled once the lender's portal was checked.
                return cx.ignore("a lender without a decision is not retried; mark it handled");
            }
            let kind = cx.state.staff_task.as_ref().map(|t| t.kind);
            cx.state.staff_task = None;
            cx.state.status = Status::Active;
            cx.audit("retried by staff");
            let reuse = cx.state.failed_key_seq.take();
            if resume_held_lender(cx) {
                return;
            }
            match (kind, cx.state.failed_action.take()) {
                (Some(TaskKind::SystemError), Some(action)) => {
                    restore_stage_for(cx, &action);
                    if let Action::ChargeCard { purpose, .. } = &action
                        && let Some(c) = cx
                            .state
                            .stripe
                            .card_charges
                            .iter_mut()
                            .rev()
                            .find(|c| &c.purpose == purpose)
                    {
                        c.state = CardChargeState::Charging;
                    }
                    let seq = cx.state.next_seq;
                    cx.command(action);
                    if let Some(key_seq) = reuse {
                        // The earlier attempt may have succeeded: repeat it under its key and
                        // marker, so the call reconciles instead of acting twice.
                        cx.state.key_seqs.insert(seq, key_seq);
                        cx.audit(format!("retried under the key of attempt {key_seq}"));
                    }
                }
                _ => {
                    // Bad data, an unreachable patient, a quiet patient: start again from the plan.
                    let attempts = std::mem::take(&mut cx.state.attempts);
                    cx.audit(format!(
                        "starting over; {} earlier lender attempts kept in the audit trail",
                        attempts.len()
                    ));
                    cx.state.stage = Stage::LoadingPlan;
                    cx.state.split = None;
                    cx.state.result = None;
                    cx.state.in_house_acceptance = None;
                    cx.state.ledger_written_at = None;
                    cx.command(Action::LoadPlan);
                }
            }
        }
        StaffAction::AcceptCounteroffer | StaffAction::NextLender => {
            let Some((lender, approved)) = open_counteroffer(cx) else {
                return cx.ignore("no counteroffer waiting on staff");
            };
            cx.state.staff_task = None;
            cx.state.status = Status::Active;
            cx.state.ledger_written_at = None;
            if action == StaffAction::NextLender {
                cx.audit(format!(
                    "staff passed on the {lender} counteroffer; next lender"
                ));
                cx.state.passed_counteroffers.push(lender);
                return next_lender(cx);
            }
            cx.audit(format!(
                "staff accepted the {lender} counteroffer of {approved}"
            ));
            let asked = cx.state.financing_amount.unwrap_or(approved);
            let remainder = asked.checked_sub(approved).unwrap_or(asked);
            let deposit = cx.state.deposit.unwrap_or(Money::usd(0));
            let financed = Some((lender.clone(), approved.min(asked)));
            match in_house_offer(cx, remainder) {
                Ok(Some(offer)) if !remainder.is_zero() => offer_in_house(
                    cx,
                    FinancingResult {
                        financed,
                        deposit,
                        in_house: Some(offer),
                        path: format!("{lender} counteroffer + in-house"),
                    },
                ),
                Err(reason) if !remainder.is_zero() => to_staff(cx, TaskKind::Counteroffer, reason),
                _ => {
                    cx.state.result = Some(FinancingResult {
                        financed,
                        deposit,
                        in_house: None,
                        path: format!("{lender} counteroffer accepted"),
                    });
                    start_payments(cx);
                }
            }
        }
        StaffAction::ResendLink if in_house_unanswered(cx) => {
            // The in-house offer again: back to waiting on the patient, reminders anew.
            cx.state.staff_task = None;
            cx.state.status = Status::Active;
            cx.audit("in-house plan offer sent again");
            let result = cx.state.result.clone();
            if let Some(result) = result {
                offer_in_house(cx, result);
            }
        }
        StaffAction::ResendLink if cx.state.restartable_lender(cx.now).is_some() => {
            // A lapsed session's link is never sent again: a fresh session, whose link goes out
            // as soon as the lender opens it; the workflow waits on the patient again.
            if let Some(lender) = cx.state.restartable_lender(cx.now).cloned() {
                cx.audit("staff resent the application link: fresh session");
                fresh_session(cx, lender);
            }
        }
        StaffAction::ResendLink => match &cx.state.stage {
            Stage::Financing(c) => match &c.phase {
                LenderPhase::AwaitingPatient { link, .. } => {
                    let message = MessageKind::ApplicationLink {
                        lender: c.lender.clone(),
                        link: link.clone(),
                    };
                    forget_undelivered_link(cx);
                    cx.command(Action::SendMessage { message });
                }
                _ => cx.ignore("no link to resend"),
            },
            _ => cx.ignore("no link to resend"),
        },
    }
}

/// The lender and amount of the counteroffer an open Counteroffer task is about: the last
/// partial approval in the record.
fn open_counteroffer(cx: &Ctx<'_>) -> Option<(financing_core::LenderId, Money)> {
    if cx.state.status != Status::WaitingOnStaff
        || cx.state.staff_task.as_ref().map(|t| t.kind) != Some(TaskKind::Counteroffer)
    {
        return None;
    }
    cx.state
        .attempts
        .iter()
        .rev()
        .find_map(|a| match a.outcome {
            AttemptOutcome::PartiallyApproved { approved }
                if !cx.state.passed_counteroffers.contains(&a.lender) =>
            {
                Some((a.lender.clone(), approved))
            }
            _ => None,
        })
}

/// Staff acted on a held lender: read it again from where it stood. False when nothing is held.
fn resume_held_lender(cx: &mut Ctx<'_>) -> bool {
    let Stage::Financing(c) = &mut cx.state.stage else {
        return false;
    };
    let LenderPhase::HeldForStaff { resume, .. } = &mut c.phase else {
        return false;
    };
    let phase = std::mem::replace(resume.as_mut(), LenderPhase::LookingUp);
    let (lender, amount) = (c.lender.clone(), c.amount);
    c.phase = phase.clone();
    match phase {
        LenderPhase::AwaitingPatient {
            handle,
            reminders_sent,
            ..
        } => {
            cx.audit(format!("{lender}: read again after staff acted"));
            cx.command(Action::PollApplication { lender, handle });
            schedule_reminder(cx, reminders_sent);
        }
        LenderPhase::LookingUp => cx.command(Action::LookupCardholder { lender, amount }),
        LenderPhase::Starting | LenderPhase::HeldForStaff { .. } => {
            start_application(cx, lender, amount);
        }
    }
    true
}

/// True while an in-house offer stands unanswered: being offered, or handed to staff because the
/// patient went quiet on it.
fn in_house_unanswered(cx: &Ctx<'_>) -> bool {
    let offered = cx
        .state
        .result
        .as_ref()
        .is_some_and(|r| r.in_house.is_some());
    let unanswered = offered && cx.state.in_house_acceptance.is_none();
    match (&cx.state.stage, cx.state.status) {
        (Stage::OfferingInHouse { .. }, Status::Active) => unanswered,
        (_, Status::WaitingOnStaff) => {
            unanswered
                && cx
                    .state
                    .staff_task
                    .as_ref()
                    .is_some_and(|t| t.kind == TaskKind::PatientQuiet)
        }
        _ => false,
    }
}

/// Puts the stage back where a retried action expects it.
fn restore_stage_for(cx: &mut Ctx<'_>, action: &Action) {
    cx.state.stage = match action {
        Action::LoadPlan => Stage::LoadingPlan,
        Action::EnsureCustomer => Stage::Payments(PaymentStep::Customer),
        Action::CreateDepositLink { .. } => Stage::Payments(PaymentStep::DepositLink),
        // Created beside the flow once the patient decided: the stage is not the schedule's.
        Action::CreateInstallmentSchedule { .. } if !cx.state.stripe.schedule_creating => {
            Stage::Payments(PaymentStep::Schedule)
        }
        Action::CreateCardSetupLink => Stage::Payments(PaymentStep::CardSetup),
        Action::SendMessage {
            message: MessageKind::FinancingSummary,
        } => Stage::Notifying,
        Action::WriteLedgerNote {
            note: NoteKind::Outcome,
        }
        | Action::EnsurePracticePatient
        | Action::WritePracticePlan => Stage::WritingNote,
        _ => cx.state.stage.clone(),
    };
}

/// The hour (UTC) a settlement day's charge runs: 15:00 UTC is the morning in every US time zone
/// (10:00 Eastern, 07:00 Pacific), inside lender business hours.
const SETTLE_HOUR_UTC: u32 = 15;

/// The local hour a settlement day's charge runs in a practice with a time zone: the morning,
/// inside lender business hours.
const SETTLE_HOUR_LOCAL: u32 = 10;

fn practice_tz(config: &WorkflowConfig) -> Option<financing_core::Tz> {
    config.time_zone.as_deref().and_then(|z| z.parse().ok())
}

/// The practice's calendar day at `now` (UTC's without a time zone): "the treatment day" is the
/// practice's, so 8 p.m. in California the evening before is not yet the day.
fn practice_day(config: &WorkflowConfig, now: DateTime<Utc>) -> NaiveDate {
    match practice_tz(config) {
        Some(tz) => now.with_timezone(&tz).date_naive(),
        None => now.date_naive(),
    }
}

/// When the charge of settlement day `day` runs: 10:00 practice time, or 15:00 UTC without a
/// time zone (a gap in local time moves it an hour later).
fn settle_time(config: &WorkflowConfig, day: NaiveDate) -> DateTime<Utc> {
    use chrono::TimeZone as _;
    if let Some(tz) = practice_tz(config) {
        let local = day
            .and_time(NaiveTime::from_hms_opt(SETTLE_HOUR_LOCAL, 0, 0).unwrap_or(NaiveTime::MIN));
        if let Some(at) = tz.from_local_datetime(&local).earliest().or_else(|| {
            tz.from_local_datetime(&(local + chrono::TimeDelta::hours(1)))
                .earliest()
        }) {
            return at.with_timezone(&Utc);
        }
    }
    day.and_time(NaiveTime::from_hms_opt(SETTLE_HOUR_UTC, 0, 0).unwrap_or(NaiveTime::MIN))
        .and_utc()
}

/// `{workflow}-{lender}`: the reference the lender's purchase (or the staff task) carries.
fn settlement_reference(cx: &Ctx<'_>, lender: &LenderId) -> String {
    format!("{}-{lender}", cx.state.id)
}

/// After the outcome note of a financed plan: schedule the lender charge on the treatment date,
/// or hand it to staff when no treatment date is known.
fn plan_settlement(cx: &mut Ctx<'_>) {
    if cx.state.status != Status::Done || cx.state.settlement.is_some() {
        return;
    }
    let Some((lender, amount)) = cx.state.result.as_ref().and_then(|r| r.financed.clone()) else {
        return;
    };
    let rule = SettlementRule::for_lender(&lender);
    let today = practice_day(cx.config, cx.now);
    match settle_on(rule, today, cx.state.treatment_date) {
        SettleOn::Day { day } => {
            cx.state.settlement = Some(LenderSettlement {
                lender: lender.clone(),
                amount,
                state: SettlementState::Scheduled { day },
            });
            // Treatment today (or past): the charge runs now; later, that morning.
            let at = if day <= today {
                cx.now
            } else {
                settle_time(cx.config, day)
            };
            cx.timer(TimerKind::Settle, at);
            // The ledger hears of the settlement when the money moves (or fails to), not when
            // it is scheduled: the dashboard shows the date meanwhile.
            cx.audit(format!("{lender} charge scheduled for {day}"));
        }
        SettleOn::NoTreatmentDate => {
            let reference = settlement_reference(cx, &lender);
            let window = rule
                .max_days_before_treatment
                .map_or_else(String::new, |d| {
                    format!(" (not more than {d} days before it)")
                });
            manual_settlement(
                cx,
                lender,
                amount,
                None,
                format!(
                    "no treatment date on the plan: charge {amount} on the patient's account at the lender on the treatment day{window}, reference {reference}"
                ),
            );
        }
    }
}

fn manual_settlement(
    cx: &mut Ctx<'_>,
    lender: LenderId,
    amount: Money,
    day: Option<NaiveDate>,
    reason: String,
) {
    cx.audit(format!("staff task: {lender} settlement"));
    cx.state.settlement = Some(LenderSettlement {
        lender,
        amount,
        state: SettlementState::Manual { day },
    });
    // The financing itself is done: like a failed installment, the task is raised beside the
    // workflow's status, and marking it handled records that staff ran the charge.
    cx.out.raise_task = Some(StaffTask {
        kind: TaskKind::Settlement,
        reason,
    });
}

/// The settlement day came: run the charge, unless the lender's rule does not allow it yet
/// (a timer that fired early): then wait for the first allowed day.
fn settle_due(cx: &mut Ctx<'_>) {
    let Some(s) = cx.state.settlement.clone() else {
        return cx.ignore("no settlement scheduled");
    };
    let SettlementState::Scheduled { day } = s.state else {
        return cx.ignore("settlement not scheduled");
    };
    if cx.state.status == Status::Cancelled {
        return cx.ignore("cancelled: no lender charge");
    }
    let today = practice_day(cx.config, cx.now);
    let rule = SettlementRule::for_lender(&s.lender);
    let allowed = cx
        .state
        .treatment_date
        .is_none_or(|t| rule.allows(today, t));
    if today < day || !allowed {
        cx.timer(TimerKind::Settle, settle_time(cx.config, day));
        return cx.audit(format!("{} charge waits for {day}", s.lender));
    }
    if let Some(current) = &mut cx.state.settlement {
        current.state = SettlementState::Charging { day };
    }
    cx.command(Action::SettleWithLender {
        lender: s.lender,
        amount: s.amount,
    });
}

fn lender_settled(cx: &mut Ctx<'_>, lender: &LenderId, settlement: Settlement) {
    let Some(s) = cx.state.settlement.clone() else {
        return cx.ignore("no settlement under way");
    };
    let day = match s.state {
        SettlementState::Charging { day } => day,
        // A staff retry after a failure.
        SettlementState::Failed { .. } => practice_day(cx.config, cx.now),
        _ => return cx.ignore("no settlement under way"),
    };
    if &s.lender != lender {
        return cx.ignore("settlement of another lender");
    }
    match settlement {
        Settlement::Charged { purchase } => {
            let state = SettlementState::Charged {
                purchase: purchase.as_str().to_owned(),
                at: cx.now,
            };
            cx.state.settlement = Some(LenderSettlement {
                state: state.clone(),
                ..s.clone()
            });
            // Settled after a staff retry: nothing is left to do.
            if cx.state.status == Status::Active {
                cx.state.status = Status::Done;
            }
            cx.audit(format!("{lender} charge settled"));
            ledger_note(
                cx,
                NoteKind::Settlement {
                    lender: lender.clone(),
                    amount: s.amount,
                    state,
                },
            );
        }
        _ => {
            let reference = settlement_reference(cx, lender);
            manual_settlement(
                cx,
                lender.clone(),
                s.amount,
                Some(day),
                format!(
                    "treatment day {day}: charge {} on the patient's account in the {} portal, reference {reference}",
                    s.amount,
                    name(cx, lender)
                ),
            );
        }
    }
}

fn settlement_failed(cx: &mut Ctx<'_>, action: Action, reason: &str) {
    let Some(s) = cx.state.settlement.clone() else {
        return cx.ignore("no settlement under way");
    };
    let state = SettlementState::Failed {
        reason: reason.to_owned(),
    };
    cx.state.settlement = Some(LenderSettlement {
        state: state.clone(),
        ..s.clone()
    });
    cx.state.failed_action = Some(action);
    let task = StaffTask {
        kind: TaskKind::SystemError,
        reason: format!(
            "the {} charge of {} failed: {reason}; retry, or run it in the lender's portal (reference {}) and mark handled",
            name(cx, &s.lender),
            s.amount,
            settlement_reference(cx, &s.lender)
        ),
    };
    cx.state.staff_task = Some(task.clone());
    cx.state.status = Status::WaitingOnStaff;
    cx.out.raise_task = Some(task);
    ledger_note(
        cx,
        NoteKind::Settlement {
            lender: s.lender,
            amount: s.amount,
            state,
        },
    );
}

/// A scheduled lender charge survives a ledger outage: the timer cleared with the others is set
/// again (the runner clears before it sets).
fn keep_settlement_timer(cx: &mut Ctx<'_>) {
    if let Some(LenderSettlement {
        state: SettlementState::Scheduled { day },
        ..
    }) = &cx.state.settlement
    {
        let at = settle_time(cx.config, *day);
        cx.timer(TimerKind::Settle, at);
    }
}

/// A lender charge staff have to run (or re-run) by hand.
/// A co-pay staff were asked about (the saved card failed, no card, no date, its link expired):
/// Mark handled answers it.
fn copay_open(cx: &Ctx<'_>) -> bool {
    cx.state.copay.as_ref().is_some_and(|c| {
        matches!(
            c.state,
            CopayState::LinkRequested | CopayState::LinkSent { .. } | CopayState::ForStaff
        )
    })
}

/// Staff marked the co-pay handled: nothing more is charged for it (no later timer, no retry),
/// and an open pay link is closed so the patient cannot pay it a second time.
fn copay_handled(cx: &mut Ctx<'_>) {
    if !copay_open(cx) {
        return;
    }
    let Some(c) = &mut cx.state.copay else {
        return;
    };
    let open_link = match &c.state {
        CopayState::LinkSent { session_id, .. } => Some(session_id.clone()),
        _ => None,
    };
    c.state = CopayState::HandledByStaff;
    cx.audit("co-pay handled by staff: nothing more is charged for it");
    if let Some(session_id) = open_link {
        cx.command(Action::ExpireDepositLink { session_id });
    }
}

fn settlement_open(cx: &Ctx<'_>) -> bool {
    cx.state.settlement.as_ref().is_some_and(|s| {
        matches!(
            s.state,
            SettlementState::Manual { .. } | SettlementState::Failed { .. }
        )
    })
}

/// A refund or a dispute: a ledger note and a task, once per (object, amount) (a second partial
/// refund of the same charge is a new amount).
/// A refund: what it adds to the charge's refunded total is reversed in the ledger (once per
/// refund, [`crate::refunds`]), with a note and a task as for a dispute.
fn refunded(
    cx: &mut Ctx<'_>,
    charge: String,
    refunded_so_far: Money,
    listed: Option<&[crate::refunds::ListedRefund]>,
) {
    if let Some(by_id) = listed.and_then(|l| {
        crate::refunds::refunds_by_id(
            &cx.state.stripe.reversals_handled,
            &charge,
            refunded_so_far,
            l,
        )
    }) {
        return refunded_by_id(cx, &charge, refunded_so_far, by_id);
    }
    let Some(reversal) = crate::refunds::refund_to_reverse(
        &cx.state.stripe.reversals_handled,
        &charge,
        refunded_so_far,
    ) else {
        return cx.ignore("refund already reversed");
    };
    cx.state.stripe.reversals_handled.push(reversal.key);
    let now = reversal.amount;
    cx.audit(format!("charge refunded: {now} to reverse"));
    cx.out.raise_task = Some(StaffTask {
        kind: TaskKind::PaymentReversed,
        reason: format!(
            "{now} was refunded in Stripe ({charge}, {refunded_so_far} refunded in total): Chairside reverses it in the practice ledger where the system takes payments, else notes it; check the patient's plan"
        ),
    });
    ledger_note(
        cx,
        NoteKind::Reversal {
            stripe_id: charge,
            amount: refunded_so_far,
            dispute: false,
            reversed: Some(now),
            refund_id: None,
        },
    );
}

/// The refunds Stripe listed for the charge, each reversed once by its id: a ledger reversal per
/// refund, one task naming them.
fn refunded_by_id(
    cx: &mut Ctx<'_>,
    charge: &str,
    refunded_so_far: Money,
    reversals: Vec<crate::refunds::RefundReversal>,
) {
    if reversals.is_empty() {
        return cx.ignore("refund already reversed");
    }
    let mut named = Vec::new();
    for r in &reversals {
        cx.state
            .stripe
            .reversals_handled
            .push(crate::refunds::handled_by_id(charge, &r.key, r.amount));
        cx.audit(format!("refund {} of {}: to reverse", r.key, r.amount));
        named.push(format!("{} ({})", r.amount, r.key));
    }
    cx.out.raise_task = Some(StaffTask {
        kind: TaskKind::PaymentReversed,
        reason: format!(
            "refunded in Stripe: {} ({charge}, {refunded_so_far} refunded in total): Chairside reverses each in the practice ledger where the system takes payments, else notes it; check the patient's plan",
            named.join(", ")
        ),
    });
    for r in reversals {
        ledger_note(
            cx,
            NoteKind::Reversal {
                stripe_id: charge.to_owned(),
                amount: refunded_so_far,
                dispute: false,
                reversed: Some(r.amount),
                refund_id: Some(r.key),
            },
        );
    }
}

/// A dispute opened on one of the workflow's charges: a task to answer it and a ledger note, once per
/// charge and amount (refunds go through `refunded`, which reverses the ledger).
fn disputed(cx: &mut Ctx<'_>, stripe_id: String, amount: Money, why: Option<&str>) {
    let key = format!("{stripe_id}:{}", amount.minor());
    if cx.state.stripe.reversals_handled.contains(&key) {
        return cx.ignore("reversal already handled");
    }
    cx.state.stripe.reversals_handled.push(key);
    let reason = format!(
        "the patient disputed a charge of {amount} with their card issuer ({stripe_id}{}): answer the dispute in Stripe before its deadline",
        why.filter(|r| r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .map_or_else(String::new, |r| format!(
                ", reason: {}",
                r.replace('_', " ")
            ))
    );
    cx.audit("charge disputed");
    cx.out.raise_task = Some(StaffTask {
        kind: TaskKind::PaymentReversed,
        reason,
    });
    ledger_note(
        cx,
        NoteKind::Reversal {
            stripe_id,
            amount,
            dispute: true,
            reversed: None,
            refund_id: None,
        },
    );
}

/// The schedule ended early. After our own cancellation it is expected; otherwise someone ended
/// it in Stripe's dashboard, or Stripe aborted it after failed payments: staff are told.
fn schedule_ended(cx: &mut Ctx<'_>, schedule_id: &str, aborted: bool) {
    if cx.state.stripe.schedule_id.as_deref() != Some(schedule_id) {
        return cx.ignore("not this workflow's schedule");
    }
    if cx.state.stripe.schedule_ended {
        return cx.ignore("schedule already ended");
    }
    cx.state.stripe.schedule_ended = true;
    if cx.state.status == Status::Cancelled && !aborted {
        return cx.audit("installment schedule canceled (by Chairside)");
    }
    let reason = if aborted {
        "Stripe ended the installment schedule after failed payments: the remaining installments will not be collected"
    } else {
        "the installment schedule was canceled in Stripe, not by Chairside: the remaining installments will not be collected"
    };
    cx.audit(if aborted {
        "installment schedule aborted"
    } else {
        "installment schedule canceled outside Chairside"
    });
    cx.out.raise_task = Some(StaffTask {
        kind: TaskKind::PaymentReversed,
        reason: reason.into(),
    });
}

/// The purpose of the deposit's off-session charge (its metadata and its ledger line).
pub const DEPOSIT: &str = "deposit";

fn card_setup_link_created(cx: &mut Ctx<'_>, session_id: String, url: String) {
    if cx.state.status == Status::Cancelled {
        cx.state
            .stripe
            .card_setup_session_id
            .get_or_insert(session_id.clone());
        return compensate(cx, Action::ExpireDepositLink { session_id });
    }
    if cx.state.stripe.card_setup_session_id.is_some() || cx.state.stripe.payment_method.is_some() {
        return cx.ignore("a card-saving link already exists");
    }
    cx.state.stripe.card_setup_session_id = Some(session_id);
    cx.state.stripe.card_setup_url = Some(url);
    cx.audit("card-saving link created");
    if cx.state.stage == Stage::Payments(PaymentStep::CardSetup) {
        next_payment_step(cx);
    }
}

/// The patient agreed on the page: recorded once, with the wording. When the card-saving link
/// lapsed (or was never made), a fresh one is made for the patient waiting on the page.
fn card_authorized(cx: &mut Ctx<'_>, wording: String, installments: bool) {
    if cx.config.payment_preference != PaymentPreference::CardOnFile
        || cx.state.status == Status::Cancelled
        || cx.state.stripe.customer_id.is_none()
    {
        return cx.ignore("no card to save for this workflow");
    }
    // The installments already on emailed invoices by the patient's choice: the first answer
    // stands (a page open in another tab), the agreement is recorded for the other charges.
    let installments = installments && cx.state.stripe.installments_by_invoice.is_none();
    let widens = installments && !cx.state.stripe.card_covers_installments;
    if cx.state.stripe.card_authorization.is_none() || widens {
        // The first agreement, or one that also names the installments (the plan was accepted
        // after an agreement for the deposit alone): the later wording is the one on record.
        cx.audit(format!("patient authorized card charges: {wording}"));
        cx.state.stripe.card_authorization = Some(InHouseAcceptance {
            at: cx.now,
            wording,
        });
        cx.state.stripe.card_covers_installments |= installments;
        if cx.state.stripe.payment_method.is_some() {
            schedule_card_due(cx);
            // The saved card confirmed for the installments: the waiting schedule goes ahead.
            installments_decided(cx);
        }
    }
    if cx.state.stripe.card_setup_session_id.is_none()
        && cx.state.stripe.payment_method.is_none()
        && !matches!(cx.state.stage, Stage::Payments(PaymentStep::CardSetup))
    {
        cx.command(Action::CreateCardSetupLink);
    }
}

fn card_saved(cx: &mut Ctx<'_>, payment_method: String) {
    if cx.state.stripe.payment_method.is_some() {
        return cx.ignore("card already saved");
    }
    if cx.state.status == Status::Cancelled {
        return cx.ignore("cancelled: the saved card is not used");
    }
    cx.state.stripe.payment_method = Some(payment_method);
    cx.state.stripe.card_setup_url = None;
    cx.audit("saved card on file");
    if cx.state.status == Status::WaitingOnStaff
        && matches!(cx.state.failed_action, Some(Action::ReadSavedCard { .. }))
    {
        // A staff retry read it: the task is answered.
        cx.state.failed_action = None;
    }
    charge_due(cx);
    schedule_card_due(cx);
    installments_decided(cx);
}

/// Card on file, the in-house plan accepted, no schedule yet: it waits while no card is saved
/// under an agreement naming the installments and the patient has not chosen emailed invoices.
fn installments_wait_for_card(cx: &Ctx<'_>) -> bool {
    cx.config.payment_preference == PaymentPreference::CardOnFile
        && cx.state.stripe.card_on_file
        && cx.state.stripe.installments_by_invoice.is_none()
        && installment_card(cx).is_none()
}

/// The schedule waiting for the patient's card ([`StripeRecord::schedule_awaits_card`]) may go
/// ahead: with the card, or with emailed invoices. Created beside the workflow's flow (which
/// went on to the summary and the outcome note), once. Anything else leaves the wait as it is.
fn installments_decided(cx: &mut Ctx<'_>) {
    if !cx.state.stripe.schedule_awaits_card
        || cx.state.status == Status::Cancelled
        || cx.state.stripe.schedule_id.is_some()
        || installments_wait_for_card(cx)
    {
        return;
    }
    let Some(offer) = cx.state.result.as_ref().and_then(|r| r.in_house.clone()) else {
        return;
    };
    cx.state.stripe.schedule_awaits_card = false;
    cx.state.stripe.schedule_creating = true;
    cx.out.clear_timers.push(TimerKind::GiveUp);
    let payment_method = installment_card(cx);
    if let Some(pm) = &payment_method {
        cx.state.stripe.schedule_card = Some(pm.clone());
        cx.audit("installments charged to the saved card");
    }
    cx.command(Action::CreateInstallmentSchedule {
        offer,
        payment_method,
    });
}

/// The patient chose emailed invoices for the installments instead of a saved card: recorded
/// once, with the wording; a waiting schedule is created with emailed invoices.
fn invoices_chosen(cx: &mut Ctx<'_>, wording: String) {
    if cx.config.payment_preference != PaymentPreference::CardOnFile
        || cx.state.status == Status::Cancelled
        || cx.state.in_house_acceptance.is_none()
    {
        return cx.ignore("no installments to arrange for this workflow");
    }
    if cx.state.stripe.installments_by_invoice.is_some()
        || cx.state.stripe.schedule_id.is_some()
        || installment_card(cx).is_some()
    {
        // A double click, or a card already agreed for them: the first answer stands.
        return cx.ignore("the installments are already arranged");
    }
    cx.audit(format!(
        "patient chose emailed invoices for the installments: {wording}"
    ));
    cx.state.stripe.installments_by_invoice = Some(InHouseAcceptance {
        at: cx.now,
        wording,
    });
    installments_decided(cx);
}

/// The saved card the installments may be charged to: card on file, a card saved with an
/// agreement that named the installments.
fn installment_card(cx: &Ctx<'_>) -> Option<String> {
    let stripe = &cx.state.stripe;
    (cx.config.payment_preference == PaymentPreference::CardOnFile
        && stripe.card_authorization.is_some()
        && stripe.card_covers_installments)
        .then(|| stripe.payment_method.clone())
        .flatten()
}

/// The card was saved (or the agreement widened) after the schedule was created: the schedule
/// charges it from now on (set on the schedule, never a second schedule). Once.
fn schedule_card_due(cx: &mut Ctx<'_>) {
    let Some(schedule_id) = cx.state.stripe.schedule_id.clone() else {
        return;
    };
    if cx.state.status == Status::Cancelled
        || cx.state.stripe.schedule_ended
        || cx.state.stripe.schedule_card.is_some()
    {
        return;
    }
    let Some(payment_method) = installment_card(cx) else {
        return;
    };
    cx.state.stripe.schedule_card = Some(payment_method.clone());
    cx.audit("setting the saved card on the installment schedule");
    cx.command(Action::SetScheduleCard {
        schedule_id,
        payment_method,
    });
}

/// Charges the deposit to the saved card when it is due: a card saved with the patient's
/// agreement, the deposit unpaid, no charge of it under way or done, and no pay link open (the
/// patient may be paying through it: never both).
fn charge_due(cx: &mut Ctx<'_>) {
    let stripe = &cx.state.stripe;
    let Some(deposit) = cx.state.result.as_ref().map(|r| r.deposit) else {
        return;
    };
    if deposit.is_zero()
        || stripe.deposit_paid
        || stripe.payment_method.is_none()
        || stripe.checkout_session_id.is_some()
        || stripe.reissuing_deposit_link
        || stripe.card_charge(DEPOSIT).is_some()
    {
        return;
    }
    if stripe.card_authorization.is_none() {
        // Offers are offered: the agreement is recorded from the page before the card is
        // saved; a card saved without it (Stripe's dashboard, another flow) is not charged.
        return cx.audit("card saved without the patient's recorded agreement: not charged");
    }
    cx.state.stripe.card_charges.push(CardCharge {
        purpose: DEPOSIT.into(),
        amount: deposit,
        state: CardChargeState::Charging,
    });
    cx.audit(format!("charging the saved card {deposit} for the deposit"));
    cx.command(Action::ChargeCard {
        purpose: DEPOSIT.into(),
        amount: deposit,
    });
}

fn set_charge_state(cx: &mut Ctx<'_>, purpose: &str, state: CardChargeState) -> bool {
    match cx
        .state
        .stripe
        .card_charges
        .iter_mut()
        .rev()
        .find(|c| c.purpose == purpose)
    {
        Some(c) if c.state == CardChargeState::Charging => {
            c.state = state;
            true
        }
        _ => false,
    }
}

fn card_charged(cx: &mut Ctx<'_>, purpose: &str, payment_intent: String, amount: Money) {
    if !set_charge_state(
        cx,
        purpose,
        CardChargeState::Paid {
            payment_intent: payment_intent.clone(),
        },
    ) {
        return cx.ignore("no charge of the saved card under way");
    }
    if purpose == DEPOSIT {
        cx.state.stripe.deposit_paid = true;
    }
    if purpose == COPAY
        && let Some(c) = &mut cx.state.copay
    {
        c.state = CopayState::Paid {
            stripe_id: payment_intent.clone(),
        };
    }
    cx.audit(format!("saved card charged {amount} ({purpose})"));
    reopen_after_retry(cx);
    if cx.state.stripe.payments_noted.contains(&payment_intent) {
        return cx.audit("payment already noted");
    }
    cx.state.stripe.payments_noted.push(payment_intent.clone());
    cx.command(Action::WriteLedgerNote {
        note: NoteKind::Payment {
            stripe_id: payment_intent,
            amount,
        },
    });
}

/// A declined off-session charge, or one the bank wants authenticated: the patient gets a pay
/// link (through the payment-failed message and the page) and staff a task naming Stripe's
/// reason. Never card data.
fn card_declined(
    cx: &mut Ctx<'_>,
    purpose: &str,
    payment_intent: Option<String>,
    reason: &str,
    authentication: bool,
) {
    if !set_charge_state(
        cx,
        purpose,
        CardChargeState::Failed {
            reason: reason.to_owned(),
            authentication,
        },
    ) {
        return cx.ignore("no charge of the saved card under way");
    }
    reopen_after_retry(cx);
    let amount = cx
        .state
        .stripe
        .card_charge(purpose)
        .map(|c| c.amount)
        .unwrap_or(Money::usd(0));
    cx.audit(format!("saved card not charged ({purpose}): {reason}"));
    if purpose == DEPOSIT
        && !cx.state.stripe.deposit_paid
        && cx.state.stripe.checkout_session_id.is_none()
        && !cx.state.stripe.reissuing_deposit_link
    {
        cx.state.stripe.reissuing_deposit_link = true;
        cx.command(Action::CreateDepositLink { amount });
    }
    if purpose == COPAY {
        request_copay_link(cx);
    }
    let handled = payment_intent
        .as_ref()
        .is_some_and(|pi| cx.state.stripe.failures_handled.contains(pi));
    if let Some(pi) = payment_intent
        && !handled
    {
        // Stripe also reports `payment_intent.payment_failed`: this is the one message.
        cx.state.stripe.failures_handled.push(pi);
    }
    if !handled {
        cx.command(Action::SendMessage {
            message: MessageKind::PaymentFailed,
        });
    }
    let purpose = purpose_label(purpose);
    let what = if authentication {
        format!(
            "the patient's bank asked the patient to authenticate the {purpose} charge of {amount} on the saved card ({reason})"
        )
    } else {
        format!("the saved card was declined for the {purpose} charge of {amount} ({reason})")
    };
    cx.out.raise_task = Some(StaffTask {
        kind: TaskKind::PaymentFailed,
        reason: format!(
            "{what}; the patient was sent a pay link. Call the patient if it stays unpaid"
        ),
    });
}

/// A staff retry of a card step put the workflow back to active: a settled workflow is done
/// again once the step answered.
fn reopen_after_retry(cx: &mut Ctx<'_>) {
    if cx.state.status == Status::Active
        && cx.state.stage == Stage::Settled
        && cx.state.staff_task.is_none()
    {
        cx.state.status = Status::Done;
    }
}

/// A card step failed for good (Stripe refused the request itself, or its outcome stayed
/// unknown): a task and a Retry, without touching the workflow's stage or its outcome note.
fn card_effect_failed(cx: &mut Ctx<'_>, action: Action, reason: String, key_seq: Option<u64>) {
    if let Action::ChargeCard { purpose, .. } = &action {
        let purpose = purpose.clone();
        if let Some(c) = cx
            .state
            .stripe
            .card_charges
            .iter_mut()
            .rev()
            .find(|c| c.purpose == purpose)
            && key_seq.is_none()
        {
            // A definite failure: nothing was charged; a retry charges anew.
            c.state = CardChargeState::Failed {
                reason: reason.clone(),
                authentication: false,
            };
        }
    }
    if matches!(action, Action::SetScheduleCard { .. }) && key_seq.is_none() {
        // A definite failure: the schedule still emails its invoices (a staff Retry sets the
        // card again).
        cx.state.stripe.schedule_card = None;
    }
    cx.state.failed_action = Some(action);
    cx.state.failed_key_seq = key_seq;
    let task = StaffTask {
        kind: TaskKind::SystemError,
        reason,
    };
    cx.state.staff_task = Some(task.clone());
    if cx.state.status != Status::Cancelled {
        cx.state.status = Status::WaitingOnStaff;
    }
    cx.out.raise_task = Some(task);
}

// ---- The day-of-service co-pay (card on file) ----

/// What the patient owes on the treatment day ([`crate::due::due`]); zero before financing
/// ended, and for an in-house plan the patient has not accepted (nothing is collected for an
/// offer still open: staff discuss it).
fn copay_amount(cx: &Ctx<'_>) -> Money {
    let (Some(split), Some(result)) = (&cx.state.split, &cx.state.result) else {
        return Money::usd(0);
    };
    if result.in_house.is_some() && cx.state.in_house_acceptance.is_none() {
        return Money::zero(split.patient_portion.currency());
    }
    crate::due::due(split, result).on_treatment_day
}

/// The words staff read for a charge's purpose.
fn purpose_label(purpose: &str) -> &str {
    if purpose == COPAY { "co-pay" } else { purpose }
}

/// After the outcome note of a card-on-file workflow that leaves a co-pay for the treatment day:
/// a timer that morning (practice time), at once when the day is today or past; without a
/// treatment date, a task for staff to collect it at the visit. Nothing for zero.
fn plan_copay(cx: &mut Ctx<'_>) {
    if cx.state.status != Status::Done
        || cx.state.copay.is_some()
        || cx.state.stripe.customer_id.is_none()
    {
        return;
    }
    let amount = copay_amount(cx);
    if amount.is_zero() || amount.is_negative() {
        return;
    }
    let today = practice_day(cx.config, cx.now);
    match cx.state.treatment_date {
        Some(day) => {
            cx.state.copay = Some(Copay {
                amount,
                day: Some(day),
                state: CopayState::Scheduled,
            });
            let at = if day <= today {
                cx.now
            } else {
                settle_time(cx.config, day)
            };
            cx.timer(TimerKind::Copay, at);
            cx.audit(format!("co-pay of {amount} due on the treatment day {day}"));
        }
        None => {
            cx.state.copay = Some(Copay {
                amount,
                day: None,
                state: CopayState::ForStaff,
            });
            cx.audit("co-pay for staff: no treatment date");
            let how = if cx.config.payment_preference == PaymentPreference::CardOnFile {
                "is not charged to the saved card"
            } else {
                "gets no pay link"
            };
            cx.out.raise_task = Some(StaffTask {
                kind: TaskKind::PaymentFailed,
                reason: format!(
                    "no treatment date on the plan: the co-pay of {amount} {how}; collect it at the visit"
                ),
            });
        }
    }
}

/// The treatment day came: charge the saved card the co-pay, or, without a card the patient
/// agreed to have charged (or with one just declined for the deposit), a pay link and a task.
fn copay_due(cx: &mut Ctx<'_>) {
    let Some(copay) = cx.state.copay.clone() else {
        return cx.ignore("no co-pay planned");
    };
    if copay.state != CopayState::Scheduled {
        return cx.ignore("co-pay not waiting for its day");
    }
    if cx.state.status == Status::Cancelled {
        return cx.ignore("cancelled: no co-pay charged");
    }
    if let Some(day) = copay.day
        && practice_day(cx.config, cx.now) < day
    {
        // A timer that fired early (a clock change, a time zone): that morning again.
        cx.timer(TimerKind::Copay, settle_time(cx.config, day));
        return cx.audit(format!("co-pay waits for {day}"));
    }
    if let Some(c) = &mut cx.state.copay {
        c.state = CopayState::Due;
    }
    if cx.config.payment_preference == PaymentPreference::PayLink {
        // A pay-link practice: the treatment day's pay link, on the patient page. Nothing
        // failed, so no task; an unpaid link that expires becomes one.
        cx.audit(format!(
            "treatment day: a pay link for the co-pay of {}",
            copay.amount
        ));
        return request_copay_link(cx);
    }
    let stripe = &cx.state.stripe;
    let deposit_declined = matches!(
        stripe.card_charge(DEPOSIT).map(|c| &c.state),
        Some(CardChargeState::Failed { .. })
    );
    let usable =
        stripe.payment_method.is_some() && stripe.card_authorization.is_some() && !deposit_declined;
    if stripe.card_charge(COPAY).is_some() {
        return cx.ignore("co-pay already charged to the saved card");
    }
    if usable {
        cx.state.stripe.card_charges.push(CardCharge {
            purpose: COPAY.into(),
            amount: copay.amount,
            state: CardChargeState::Charging,
        });
        cx.audit(format!(
            "charging the saved card {} for the co-pay",
            copay.amount
        ));
        return cx.command(Action::ChargeCard {
            purpose: COPAY.into(),
            amount: copay.amount,
        });
    }
    let why = if deposit_declined {
        "the saved card was declined for the deposit"
    } else {
        "no card the patient agreed to have charged is saved"
    };
    cx.audit(format!("co-pay not charged: {why}"));
    request_copay_link(cx);
    cx.out.raise_task = Some(StaffTask {
        kind: TaskKind::PaymentFailed,
        reason: format!(
            "treatment day: {why}, so the co-pay of {} was not charged; the patient page shows a pay link. Collect it at the visit if it stays unpaid",
            copay.amount
        ),
    });
}

/// A pay link for the co-pay (once: never while one is asked for or open, never for a paid one).
fn request_copay_link(cx: &mut Ctx<'_>) {
    let Some(c) = &mut cx.state.copay else {
        return;
    };
    if !matches!(c.state, CopayState::Due | CopayState::Scheduled) {
        return;
    }
    c.state = CopayState::LinkRequested;
    let amount = c.amount;
    cx.command(Action::CreatePayLink {
        purpose: COPAY.into(),
        amount,
    });
}

fn copay_link_is(cx: &Ctx<'_>, session: &str) -> bool {
    matches!(
        cx.state.copay.as_ref().map(|c| &c.state),
        Some(CopayState::LinkSent { session_id, .. }) if session_id == session
    )
}

fn pay_link_created(cx: &mut Ctx<'_>, purpose: &str, session_id: String, url: String) {
    if purpose != COPAY {
        return cx.ignore("a pay link for a purpose this version does not know");
    }
    if cx.state.status == Status::Cancelled {
        // Asked for before the withdrawal: close it too.
        return compensate(cx, Action::ExpireDepositLink { session_id });
    }
    match &mut cx.state.copay {
        Some(c) if c.state == CopayState::LinkRequested => {
            c.state = CopayState::LinkSent { session_id, url };
            cx.audit("co-pay pay link created");
            reopen_after_retry(cx);
        }
        Some(c) if c.state == CopayState::HandledByStaff => {
            // Asked for before staff marked the co-pay handled: closed, never paid twice.
            cx.audit("co-pay handled by staff: its late pay link is closed");
            cx.command(Action::ExpireDepositLink { session_id });
        }
        _ => cx.ignore("no co-pay pay link asked for"),
    }
}

/// The co-pay's pay link lapsed unpaid: staff collect it (a fresh link every day would chase
/// the patient; a person decides).
fn copay_link_expired(cx: &mut Ctx<'_>, session_id: &str) {
    let Some(c) = &mut cx.state.copay else {
        return;
    };
    c.state = CopayState::ForStaff;
    let amount = c.amount;
    cx.audit(format!("co-pay pay link {session_id} expired unpaid"));
    cx.out.raise_task = Some(StaffTask {
        kind: TaskKind::PaymentFailed,
        reason: format!(
            "the co-pay pay link ({amount}) expired unpaid: collect it from the patient"
        ),
    });
}
