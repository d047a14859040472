//! Transition tests and property tests of the pure machine. No I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use financing_core::{
    AmountLimits, ApplicationHandle, ApplicationRef, CdtCode, Decision, DepositRule, InHouseTerms,
    InstallmentInterval, LenderId, LenderLocation, LenderReference, LocationId, Money, Offer,
    PartialApprovalRule, PatientId, PlanId, PlannedProcedure, PracticeId, TreatmentPlan, UsState,
    Waterfall, WaterfallPolicy,
};
use proptest::prelude::*;

use crate::machine::{Transition, apply};
use crate::*;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
}

fn lender(id: &str) -> LenderId {
    LenderId::new(id)
}

fn config(deposit_bps: u32, in_house: bool, on_partial: PartialApprovalRule) -> WorkflowConfig {
    let slot = |id: &str| financing_core::LenderSlot {
        lender: lender(id),
        limits: AmountLimits::NONE,
    };
    WorkflowConfig {
        waterfall: Waterfall::new(
            vec![slot("carecredit"), slot("sunbit")],
            WaterfallPolicy {
                on_partial,
                in_house_fallback: in_house,
            },
        ),
        deposit: if deposit_bps == 0 {
            DepositRule::None
        } else {
            DepositRule::BasisPoints(deposit_bps)
        },
        in_house: in_house.then_some(InHouseTerms {
            deposit: DepositRule::None,
            installments: 6,
            interval: InstallmentInterval::MONTHLY,
        }),
        reminder_delays: vec![Duration::from_secs(3600), Duration::from_secs(86_400)],
        give_up_after: Duration::from_secs(172_800),
        poll_interval: Duration::from_secs(600),
        lender_schedules: Vec::new(),
        payment_preference: PaymentPreference::PayLink,
        time_zone: None,
        lender_names: Vec::new(),
    }
}

fn state() -> WorkflowState {
    let key = WorkflowKey {
        practice_id: PracticeId::new("smile-dental"),
        plan_id: PlanId::new("tx-1"),
        revision: "1".into(),
    };
    WorkflowState::new(key, PatientId::new("pat-1"), t0())
}

fn plan(fee: i64, estimate: i64, code: &str) -> TreatmentPlan {
    TreatmentPlan {
        id: PlanId::new("tx-1"),
        revision: "1".into(),
        patient_id: PatientId::new("pat-1"),
        accepted_at: t0(),
        treatment_date: None,
        procedures: vec![PlannedProcedure {
            code: CdtCode::new(code),
            fee: Money::usd(fee),
            primary_estimate: Some(Money::usd(estimate)),
            secondary_estimate: None,
        }],
    }
}

fn facts(reachable: bool, lookup: bool) -> PatientFacts {
    PatientFacts {
        reachable,
        state: Some(UsState::TX),
        lookup_allowed: lookup,
        financing_not_before: t0(),
    }
}

fn loaded(fee: i64, estimate: i64) -> Event {
    Event::PlanLoaded {
        plan: plan(fee, estimate, "D2740"),
        facts: facts(true, false),
    }
}

fn handle(reference: &str) -> ApplicationHandle {
    ApplicationHandle {
        reference: ApplicationRef::new("ref"),
        lender_reference: LenderReference::new(reference),
        location: LenderLocation {
            practice_id: PracticeId::new("smile-dental"),
            location_id: LocationId::new("1"),
            state: UsState::TX,
        },
        amount: Money::usd(100_000),
    }
}

fn opened(id: &str) -> Event {
    Event::ApplicationOpened {
        lender: lender(id),
        handle: handle("sess-1"),
        link: format!("https://{id}.test/apply/1"),
        expires_at: None,
    }
}

fn offer(id: &str, cents: i64) -> Offer {
    Offer {
        lender: lender(id),
        amount: Money::usd(cents),
        promotion: Some("12 months".into()),
        term_months: Some(12),
        apr_bps: None,
        expires_at: None,
        lender_reference: None,
    }
}

fn decided(id: &str, decision: Decision) -> Event {
    Event::LenderDecided {
        lender: lender(id),
        decision,
    }
}

fn approved(id: &str, cents: i64) -> Event {
    decided(
        id,
        Decision::Approved {
            offer: offer(id, cents),
            raw_status: "Completed".into(),
        },
    )
}

fn declined(id: &str) -> Event {
    decided(
        id,
        Decision::Declined {
            reason: None,
            raw_status: "Declined".into(),
        },
    )
}

/// The patient's acceptance of the in-house offer, as the patient page queues it.
fn accept() -> Event {
    Event::InHouseAnswered {
        accepted: true,
        wording: "I agree to pay $1,000.00 in 6 monthly payments".into(),
    }
}

fn actions(t: &Transition) -> Vec<&Action> {
    t.commands.iter().map(|c| &c.action).collect()
}

struct Run {
    state: WorkflowState,
    config: WorkflowConfig,
    now: DateTime<Utc>,
}

impl Run {
    fn new(config: WorkflowConfig) -> Self {
        Self {
            state: state(),
            config,
            now: t0(),
        }
    }

    fn on(&mut self, event: Event) -> Transition {
        apply(&mut self.state, event, &self.config, self.now)
    }
}

#[test]
fn a_new_workflow_starts_by_loading_the_plan() {
    let mut s = state();
    assert_eq!(
        s.start(),
        Command {
            seq: 1,
            action: Action::LoadPlan
        }
    );
    assert_eq!(s.next_seq, 2);
}

#[test]
fn workflow_ids_and_idempotency_keys_are_deterministic() {
    let a = state();
    let b = state();
    assert_eq!(a.id, b.id);
    assert!(a.id.as_str().starts_with("wf_"));
    assert_eq!(
        a.id.idempotency_key("create_schedule", 7),
        format!("{}:create_schedule:7", a.id)
    );
    let mut other = a.key.clone();
    other.revision = "2".into();
    assert_ne!(
        WorkflowId::derive(&other),
        a.id,
        "an edited plan is a new workflow"
    );
}

#[test]
fn a_priced_plan_asks_the_first_lender_for_the_portion_minus_the_deposit() {
    let mut run = Run::new(config(2_000, true, PartialApprovalRule::StopForStaff));
    let t = run.on(loaded(150_000, 50_000));
    assert_eq!(
        actions(&t),
        vec![&Action::StartApplication {
            lender: lender("carecredit"),
            amount: Money::usd(80_000)
        }]
    );
    assert_eq!(run.state.deposit, Some(Money::usd(20_000)));
}

#[test]
fn a_cardholder_lookup_comes_first_where_the_policy_allows_it() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    let t = run.on(Event::PlanLoaded {
        plan: plan(100_000, 0, "D2740"),
        facts: facts(true, true),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::LookupCardholder {
            lender: lender("carecredit"),
            amount: Money::usd(100_000)
        }]
    );
    let t = run.on(Event::CardholderLookedUp {
        lender: lender("carecredit"),
        found: Some(Decision::Cardholder {
            available_credit: Money::usd(500_000),
            lender_reference: None,
        }),
    });
    // Financed in full with no deposit and no in-house part: straight to the summary.
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::FinancingSummary
        }]
    );
    assert_eq!(
        run.state.result.as_ref().and_then(|r| r.financed.clone()),
        Some((lender("carecredit"), Money::usd(100_000)))
    );
}

#[test]
fn no_account_found_opens_an_application() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(Event::PlanLoaded {
        plan: plan(100_000, 0, "D2740"),
        facts: facts(true, true),
    });
    let t = run.on(Event::CardholderLookedUp {
        lender: lender("carecredit"),
        found: None,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::StartApplication {
            lender: lender("carecredit"),
            amount: Money::usd(100_000)
        }]
    );
}

#[test]
fn an_opened_application_sends_the_link_and_sets_poll_and_reminder_timers() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    let t = run.on(opened("carecredit"));
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::ApplicationLink {
                lender: lender("carecredit"),
                link: "https://carecredit.test/apply/1".into()
            }
        }]
    );
    // No schedule configured for the lender: the default one, 5 s while the patient is on the page.
    assert_eq!(
        t.set_timers,
        vec![
            (TimerKind::Poll, t0() + Duration::from_secs(5)),
            (TimerKind::Reminder, t0() + Duration::from_secs(3600))
        ]
    );
    // A poll timer asks the lender; a pending answer with the lender's own floor waits for it.
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Poll,
    });
    assert!(matches!(actions(&t)[..], [Action::PollApplication { .. }]));
    let t = run.on(decided(
        "carecredit",
        Decision::Pending {
            poll_after: Some(Duration::from_secs(1200)),
            raw_status: "Pending".into(),
        },
    ));
    assert_eq!(
        t.set_timers,
        vec![(TimerKind::Poll, t0() + Duration::from_secs(1200))]
    );
}

#[test]
fn a_quiet_patient_gets_every_reminder_then_becomes_a_staff_task() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let first = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });
    assert!(matches!(
        actions(&first)[..],
        [Action::SendMessage {
            message: MessageKind::Reminder { number: 1, .. }
        }]
    ));
    assert_eq!(
        first.set_timers,
        vec![(TimerKind::Reminder, t0() + Duration::from_secs(86_400))]
    );
    let second = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });
    assert!(matches!(
        actions(&second)[..],
        [Action::SendMessage {
            message: MessageKind::Reminder { number: 2, .. }
        }]
    ));
    assert_eq!(
        second.set_timers,
        vec![(TimerKind::GiveUp, t0() + Duration::from_secs(172_800))]
    );
    let gave_up = run.on(Event::TimerFired {
        timer: TimerKind::GiveUp,
    });
    assert!(matches!(
        actions(&gave_up)[..],
        [
            Action::CancelApplication { .. },
            Action::WriteLedgerNote {
                note: NoteKind::Outcome
            }
        ]
    ));
    assert_eq!(
        gave_up.raise_task.map(|t| t.kind),
        Some(TaskKind::PatientQuiet)
    );
    assert_eq!(run.state.status, Status::WaitingOnStaff);
}

#[test]
fn a_submitted_application_under_review_is_never_given_up_as_a_quiet_patient() {
    // Arrange: the link went out and the patient submitted; the lender is reviewing.
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let review = || {
        decided(
            "carecredit",
            Decision::UnderReview {
                poll_after: None,
                raw_status: "Pending".into(),
            },
        )
    };

    // Act
    let submitted = run.on(review());
    let again = run.on(review());
    let reminder = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });
    let give_up = run.on(Event::TimerFired {
        timer: TimerKind::GiveUp,
    });

    // Assert: no more reminders or give-up, polls go on, the patient reads "pending".
    assert!(submitted.clear_timers.contains(&TimerKind::Reminder));
    assert!(submitted.clear_timers.contains(&TimerKind::GiveUp));
    assert!(
        submitted
            .set_timers
            .iter()
            .any(|(k, _)| *k == TimerKind::Poll),
        "the lender is still read"
    );
    assert!(
        again.clear_timers.is_empty(),
        "the first review answer is the one that counts"
    );
    assert!(reminder.commands.is_empty() && reminder.ignored);
    assert!(give_up.commands.is_empty() && give_up.ignored);
    assert!(give_up.raise_task.is_none());
    assert_eq!(run.state.status, Status::Active);
    assert_eq!(run.state.patient_status(run.now).label(), "pending");
    assert!(
        run.state
            .restartable_lender(run.now + Duration::from_secs(86_400 * 30))
            .is_none(),
        "a submitted application is never offered to start again"
    );

    // Act + Assert: the lender's decision still ends it.
    run.on(approved("carecredit", 100_000));
    assert!(matches!(
        run.state.stage,
        Stage::Payments(_) | Stage::Notifying | Stage::Settled
    ));
}

#[test]
fn a_patient_who_has_not_submitted_is_still_reminded_while_the_lender_reads_pending() {
    // Arrange
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(decided(
        "carecredit",
        Decision::Pending {
            poll_after: None,
            raw_status: "Created".into(),
        },
    ));

    // Act
    let reminder = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });

    // Assert
    assert!(matches!(
        actions(&reminder)[..],
        [Action::SendMessage {
            message: MessageKind::Reminder { number: 1, .. }
        }]
    ));
}

#[test]
fn a_decline_moves_to_the_next_lender_and_an_approval_runs_to_done() {
    let mut run = Run::new(config(2_000, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let t = run.on(declined("carecredit"));
    assert_eq!(
        actions(&t),
        vec![&Action::StartApplication {
            lender: lender("sunbit"),
            amount: Money::usd(80_000)
        }]
    );
    assert_eq!(
        t.clear_timers,
        vec![TimerKind::Poll, TimerKind::Reminder, TimerKind::GiveUp]
    );
    run.on(opened("sunbit"));
    let t = run.on(approved("sunbit", 80_000));
    assert_eq!(actions(&t), vec![&Action::EnsureCustomer]);
    let t = run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::CreateDepositLink {
            amount: Money::usd(20_000)
        }]
    );
    let t = run.on(Event::DepositLinkCreated {
        session_id: "cs_1".into(),
        url: "https://pay.test/cs_1".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::FinancingSummary
        }]
    );
    let t = run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Outcome
        }]
    );
    run.now = t0() + Duration::from_secs(42);
    let at = run.now;
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at,
    });
    assert_eq!(run.state.status, Status::Done);
    assert_eq!(
        run.state.operatory_to_ledger(),
        Some(chrono::Duration::seconds(42))
    );
    assert_eq!(
        run.state.attempts.len(),
        2,
        "both lenders are in the disclosure record"
    );
}

#[test]
fn a_partial_approval_with_continue_puts_the_remainder_on_the_in_house_plan() {
    let mut run = Run::new(config(
        0,
        true,
        PartialApprovalRule::ContinueForFullCoverage,
    ));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let partial = Decision::PartiallyApproved {
        offer: offer("carecredit", 60_000),
        requested: Money::usd(100_000),
        raw_status: "PreApproved".into(),
    };
    run.on(decided("carecredit", partial));
    run.on(opened("sunbit"));
    let t = run.on(declined("sunbit"));
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::InHouseOffer { number: 0 }
        }],
        "the remainder is offered, nothing is set up at Stripe yet"
    );
    let t = run.on(accept());
    assert_eq!(actions(&t), vec![&Action::EnsureCustomer]);
    let t = run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    let [Action::CreateInstallmentSchedule { offer, .. }] = actions(&t)[..] else {
        panic!("expected a schedule, got {t:?}")
    };
    assert_eq!(offer.total, Money::usd(40_000));
    assert_eq!(offer.installments.len(), 6);
}

#[test]
fn a_partial_approval_stops_for_staff_when_the_practice_says_so() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let partial = Decision::PartiallyApproved {
        offer: offer("carecredit", 60_000),
        requested: Money::usd(100_000),
        raw_status: "PreApproved".into(),
    };
    let t = run.on(decided("carecredit", partial));
    let task = t.raise_task.expect("a counteroffer task");
    assert_eq!(task.kind, TaskKind::Counteroffer);
    assert_eq!(
        task.reason,
        "CareCredit approved $600.00, $400.00 short of the amount asked; discuss the counteroffer with the patient"
    );
}

#[test]
fn every_lender_declining_offers_the_in_house_plan_or_a_task() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    let t = run.on(declined("sunbit"));
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::InHouseOffer { number: 0 }
        }]
    );
    assert_eq!(
        run.state.result.as_ref().map(|r| r.path.as_str()),
        Some("in-house plan")
    );

    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    let t = run.on(declined("sunbit"));
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::NoFinancing));
}

#[test]
fn bad_data_and_unreachable_patients_become_staff_tasks_with_a_note() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    let t = run.on(loaded(100_000, 120_000));
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Outcome
        }]
    );
    let task = t.raise_task.expect("bad data task");
    assert_eq!(task.kind, TaskKind::BadData);
    assert!(task.reason.contains("above its fee"), "{}", task.reason);

    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    let t = run.on(Event::PlanLoaded {
        plan: plan(100_000, 0, "D2740"),
        facts: facts(false, false),
    });
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::Unreachable));
    assert!(
        !t.commands
            .iter()
            .any(|c| matches!(c.action, Action::StartApplication { .. })),
        "no lender is contacted"
    );
}

#[test]
fn a_plan_fully_covered_by_insurance_needs_no_lender_and_no_stripe() {
    let mut run = Run::new(config(2_000, true, PartialApprovalRule::StopForStaff));
    let t = run.on(loaded(50_000, 50_000));
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Outcome
        }],
        "no zero-dollar message: the note alone"
    );
    assert_eq!(
        run.state.result.as_ref().map(|r| r.path.as_str()),
        Some("covered by insurance")
    );
}

#[test]
fn sedation_on_the_acceptance_day_defers_the_first_lender() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    let later = t0() + Duration::from_secs(8 * 3600);
    let t = run.on(Event::PlanLoaded {
        plan: plan(100_000, 0, "D9230"),
        facts: PatientFacts {
            financing_not_before: later,
            ..facts(true, false)
        },
    });
    assert!(t.commands.is_empty());
    assert_eq!(t.set_timers, vec![(TimerKind::Resume, later)]);
    run.now = later;
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Resume,
    });
    assert!(matches!(actions(&t)[..], [Action::StartApplication { .. }]));
}

#[test]
fn a_withdrawn_plan_cancels_the_schedule_and_the_link_then_notes_it() {
    let mut run = Run::new(config(2_000, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    run.on(declined("sunbit"));
    run.on(accept());
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    run.on(Event::DepositLinkCreated {
        session_id: "cs_1".into(),
        url: "u".into(),
    });
    run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });
    let t = run.on(Event::PlanWithdrawn {
        reason: "rejected".into(),
    });
    assert_eq!(
        actions(&t),
        vec![
            &Action::CancelSchedule {
                schedule_id: "sub_sched_1".into()
            },
            &Action::ExpireDepositLink {
                session_id: "cs_1".into()
            }
        ]
    );
    assert!(
        run.on(Event::Undone {
            action: "cancel_schedule".into()
        })
        .commands
        .is_empty()
    );
    let t = run.on(Event::Undone {
        action: "expire_deposit_link".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Outcome
        }]
    );
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::Cancelled);
    assert!(
        run.on(Event::PlanWithdrawn {
            reason: "rejected".into()
        })
        .ignored
    );
}

#[test]
fn payment_facts_after_the_fact_are_handled_once() {
    let mut run = Run::new(config(2_000, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 80_000));
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    let failed = Event::Payment(PaymentFact::Failed {
        stripe_id: "in_1".into(),
    });
    let t = run.on(failed.clone());
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::PaymentFailed
        }]
    );
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::PaymentFailed));
    assert!(
        run.on(failed).ignored,
        "a redelivered webhook changes nothing"
    );
    let paid = Event::Payment(PaymentFact::Paid {
        stripe_id: "cs_1".into(),
        amount: Money::usd(20_000),
    });
    let t = run.on(paid.clone());
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Payment {
                stripe_id: "cs_1".into(),
                amount: Money::usd(20_000)
            }
        }]
    );
    assert!(run.on(paid).ignored);
}

#[test]
fn duplicate_and_late_events_are_ignored() {
    let mut run = Run::new(config(2_000, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    assert!(run.on(loaded(100_000, 0)).ignored);
    run.on(opened("carecredit"));
    assert!(run.on(opened("carecredit")).ignored);
    assert!(
        run.on(approved("sunbit", 80_000)).ignored,
        "not the current lender"
    );
    run.on(approved("carecredit", 80_000));
    assert!(run.on(approved("carecredit", 80_000)).ignored);
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    assert!(
        run.on(Event::CustomerReady {
            customer_id: "cus_2".into()
        })
        .ignored
    );
    assert_eq!(run.state.stripe.customer_id.as_deref(), Some("cus_1"));
}

#[test]
fn a_failed_stripe_call_goes_to_staff_and_a_retry_repeats_it() {
    let mut run = Run::new(config(2_000, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 80_000));
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    let t = run.on(Event::EffectFailed {
        action: Action::CreateDepositLink {
            amount: Money::usd(20_000),
        },
        reason: "HTTP 400".into(),
    });
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::SystemError));
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    let t = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::CreateDepositLink {
            amount: Money::usd(20_000)
        }]
    );
    assert_eq!(run.state.status, Status::Active);
}

#[test]
fn a_staff_retry_keeps_the_key_after_an_unknown_outcome_and_takes_a_fresh_one_after_a_refusal() {
    let deposit = Action::CreateDepositLink {
        amount: Money::usd(20_000),
    };
    let to_staff = |run: &mut Run, event: Event| {
        run.on(event);
        run.on(Event::NoteWritten {
            note: NoteKind::Outcome,
            at: t0(),
        });
        assert_eq!(run.state.status, Status::WaitingOnStaff);
        let t = run.on(Event::Staff {
            action: StaffAction::Retry,
        });
        assert_eq!(actions(&t), vec![&deposit]);
        t.commands[0].clone()
    };
    let mut run = Run::new(config(2_000, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 80_000));
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });

    // The call timed out at attempt seq 7: the retry (a new seq) derives its key from 7.
    let retried = to_staff(
        &mut run,
        Event::EffectIndeterminate {
            action: deposit.clone(),
            seq: 7,
            reason: "timed out".into(),
        },
    );
    assert_ne!(retried.seq, 7);
    assert_eq!(run.state.key_seq(retried.seq), 7);
    assert_eq!(
        run.state.command_key(&retried),
        run.state.id.idempotency_key("create_deposit_link", 7)
    );

    // It timed out again: still the first attempt's key.
    let again = to_staff(
        &mut run,
        Event::EffectIndeterminate {
            action: deposit.clone(),
            seq: retried.seq,
            reason: "timed out".into(),
        },
    );
    assert_eq!(run.state.key_seq(again.seq), 7);

    // Then Stripe refused it: nothing was created, so the next retry asks under a fresh key.
    let fresh = to_staff(
        &mut run,
        Event::EffectFailed {
            action: deposit.clone(),
            reason: "HTTP 400".into(),
        },
    );
    assert_eq!(run.state.key_seq(fresh.seq), fresh.seq);
}

#[test]
fn an_unwritable_ledger_stops_at_a_task_instead_of_looping() {
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(50_000, 50_000));
    run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    let t = run.on(Event::EffectFailed {
        action: Action::WriteLedgerNote {
            note: NoteKind::Outcome,
        },
        reason: "HTTP 403".into(),
    });
    assert!(t.commands.is_empty());
    assert_eq!(run.state.status, Status::WaitingOnStaff);
}

// ---------------------------------------------------------------- property tests

/// A simulated runner: performs commands with outcomes drawn from `choices`, and mixes in
/// duplicates, timers, withdrawals and payment facts.
fn drive(
    config: &WorkflowConfig,
    choices: &[u8],
    lookup: bool,
) -> (WorkflowState, Vec<Action>, bool) {
    let mut s = state();
    let mut now = t0();
    let mut queue: Vec<Command> = vec![s.start()];
    let mut timers: BTreeMap<TimerKind, DateTime<Utc>> = BTreeMap::new();
    let mut emitted: Vec<Action> = vec![Action::LoadPlan];
    let mut delivered: Vec<Event> = Vec::new();
    let mut withdrew = false;
    let mut pick = choices.iter().copied().cycle();
    let apply_event = |s: &mut WorkflowState,
                       e: Event,
                       now: DateTime<Utc>,
                       queue: &mut Vec<Command>,
                       timers: &mut BTreeMap<TimerKind, DateTime<Utc>>,
                       emitted: &mut Vec<Action>| {
        let t = apply(s, e, config, now);
        for k in t.clear_timers {
            timers.remove(&k);
        }
        for (k, at) in t.set_timers {
            timers.insert(k, at);
        }
        emitted.extend(t.commands.iter().map(|c| c.action.clone()));
        queue.extend(t.commands);
    };
    for _ in 0..2_000 {
        let c = pick.next().unwrap_or(0);
        let event = if c.is_multiple_of(11) && !delivered.is_empty() {
            // A duplicate of something already delivered.
            Some(delivered[usize::from(c) % delivered.len()].clone())
        } else if c == 253 && !withdrew {
            withdrew = true;
            Some(Event::PlanWithdrawn {
                reason: "rejected".into(),
            })
        } else if c.is_multiple_of(13) {
            Some(Event::Payment(if c.is_multiple_of(2) {
                PaymentFact::Failed {
                    stripe_id: format!("in_{c}"),
                }
            } else {
                PaymentFact::Paid {
                    stripe_id: format!("in_{c}"),
                    amount: Money::usd(100),
                }
            }))
        } else if queue.is_empty() && matches!(s.stage, Stage::OfferingInHouse { .. }) && c % 4 != 3
        {
            // The patient answers the in-house offer (or, for c % 4 == 3, stays quiet).
            Some(Event::InHouseAnswered {
                accepted: c % 4 != 2,
                wording: "terms".into(),
            })
        } else if !queue.is_empty() {
            let cmd = queue.remove(0);
            Some(outcome_of(&cmd.action, c))
        } else if let Some((&kind, &at)) = timers.iter().min_by_key(|(_, at)| **at) {
            timers.remove(&kind);
            now = now.max(at);
            Some(Event::TimerFired { timer: kind })
        } else {
            None
        };
        let Some(event) = event else { break };
        delivered.push(event.clone());
        apply_event(&mut s, event, now, &mut queue, &mut timers, &mut emitted);
    }
    let _ = lookup;
    (s, emitted, withdrew)
}

fn outcome_of(action: &Action, c: u8) -> Event {
    match action {
        Action::LoadPlan => match c % 9 {
            0 => Event::PlanLoaded {
                plan: plan(100_000, 120_000, "D2740"),
                facts: facts(true, false),
            },
            1 => Event::PlanUnreadable {
                reason: "decode".into(),
            },
            2 => Event::PlanLoaded {
                plan: plan(100_000, 0, "D2740"),
                facts: facts(true, true),
            },
            3 => Event::PlanLoaded {
                plan: TreatmentPlan {
                    treatment_date: Some(t0().date_naive() + chrono::Days::new(20)),
                    ..plan(100_000, 10_000, "D2740")
                },
                facts: facts(true, false),
            },
            _ => Event::PlanLoaded {
                plan: plan(100_000, 10_000, "D2740"),
                facts: facts(true, false),
            },
        },
        Action::LookupCardholder { lender: l, .. } => Event::CardholderLookedUp {
            lender: l.clone(),
            found: c.is_multiple_of(2).then(|| Decision::Cardholder {
                available_credit: Money::usd(i64::from(c) * 1_000),
                lender_reference: None,
            }),
        },
        Action::StartApplication { lender: l, .. } => match c % 5 {
            0 => Event::LenderFailed {
                lender: l.clone(),
                reason: "HTTP 422".into(),
            },
            1 => declined(l.as_str()),
            _ => Event::ApplicationOpened {
                lender: l.clone(),
                handle: handle("s"),
                link: "https://l.test/a".into(),
                // Some sessions lapse within the drive, some never do.
                expires_at: c
                    .is_multiple_of(3)
                    .then(|| t0() + Duration::from_secs(u64::from(c) * 60)),
            },
        },
        Action::PollApplication { lender: l, .. } => match c % 8 {
            0 => approved(l.as_str(), 1_000_000),
            1 => declined(l.as_str()),
            2 => decided(
                l.as_str(),
                Decision::PartiallyApproved {
                    offer: offer(l.as_str(), 30_000),
                    requested: Money::usd(90_000),
                    raw_status: "x".into(),
                },
            ),
            3 => decided(
                l.as_str(),
                Decision::Expired {
                    raw_status: "Expired".into(),
                },
            ),
            4 => decided(
                l.as_str(),
                Decision::Prequalified {
                    offer: offer(l.as_str(), 500_000),
                    requested: Money::usd(90_000),
                    raw_status: "PREQUAL_APPROVED".into(),
                },
            ),
            5 if c.is_multiple_of(3) => decided(
                l.as_str(),
                Decision::NeedsStaff {
                    instruction: "call the lender".into(),
                    raw_status: "CallForAuth".into(),
                },
            ),
            _ => decided(
                l.as_str(),
                Decision::Pending {
                    poll_after: None,
                    raw_status: "Pending".into(),
                },
            ),
        },
        Action::CancelApplication { .. }
        | Action::CancelSchedule { .. }
        | Action::ExpireDepositLink { .. } => Event::Undone {
            action: action.label().into(),
        },
        Action::EnsureCustomer => Event::CustomerReady {
            customer_id: "cus_1".into(),
        },
        Action::CreateDepositLink { .. } | Action::ReissueDepositLink { .. } => {
            if c.is_multiple_of(7) {
                Event::EffectFailed {
                    action: action.clone(),
                    reason: "HTTP 400".into(),
                }
            } else {
                Event::DepositLinkCreated {
                    session_id: "cs_1".into(),
                    url: "u".into(),
                }
            }
        }
        Action::CreateInstallmentSchedule { .. } => Event::ScheduleCreated {
            schedule_id: "sub_sched_1".into(),
        },
        Action::SetScheduleCard { schedule_id, .. } => Event::ScheduleCardSet {
            schedule_id: schedule_id.clone(),
        },
        Action::CreatePayLink { purpose, .. } => Event::PayLinkCreated {
            purpose: purpose.clone(),
            session_id: "cs_pay_1".into(),
            url: "u".into(),
        },
        Action::SendMessage { message } => {
            if c.is_multiple_of(10) {
                Event::MessageUndeliverable {
                    message: message.clone(),
                    reason: "no channel".into(),
                }
            } else {
                Event::MessageSent {
                    message: message.clone(),
                }
            }
        }
        Action::WriteLedgerNote { note } => Event::NoteWritten {
            note: note.clone(),
            at: t0(),
        },
        Action::CreateCardSetupLink => Event::CardSetupLinkCreated {
            session_id: "cs_setup_1".into(),
            url: "u".into(),
        },
        Action::ReadSavedCard { .. } => Event::CardSaved {
            payment_method: "pm_1".into(),
        },
        Action::ChargeCard { purpose, amount } => match c % 3 {
            0 => Event::CardCharged {
                purpose: purpose.clone(),
                payment_intent: "pi_card_1".into(),
                amount: *amount,
            },
            1 => Event::CardDeclined {
                purpose: purpose.clone(),
                payment_intent: Some("pi_card_1".into()),
                reason: "card_declined: generic_decline".into(),
                authentication: c.is_multiple_of(2),
            },
            _ => Event::EffectIndeterminate {
                action: action.clone(),
                seq: 0,
                reason: "timeout".into(),
            },
        },
        Action::SettleWithLender { lender: l, .. } => match c % 3 {
            0 => Event::LenderSettled {
                lender: l.clone(),
                settlement: financing_core::Settlement::Charged {
                    purchase: LenderReference::new("purchase-1"),
                },
            },
            1 => Event::LenderSettled {
                lender: l.clone(),
                settlement: financing_core::Settlement::Manual,
            },
            _ => Event::EffectFailed {
                action: action.clone(),
                reason: "HTTP 422".into(),
            },
        },
        Action::WritePracticePlan => match c % 3 {
            0 => Event::PracticePlanWritten {
                plan_id: "18".into(),
                created: c.is_multiple_of(2),
            },
            1 => Event::PracticePlanForStaff {
                reason: "enter the plan".into(),
            },
            _ => Event::EffectFailed {
                action: action.clone(),
                reason: "HTTP 400".into(),
            },
        },
        Action::EnsurePracticePatient => match c % 3 {
            0 => Event::PracticePatientReady {
                patient_id: PatientId::new("pms-1"),
                created: c.is_multiple_of(2),
            },
            1 => Event::PracticePatientForStaff {
                reason: "create the patient".into(),
            },
            _ => Event::EffectFailed {
                action: action.clone(),
                reason: "HTTP 400".into(),
            },
        },
    }
}

fn policies() -> impl Strategy<Value = WorkflowConfig> {
    (
        prop_oneof![Just(0_u32), Just(2_000)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(bps, in_house, cont, card)| {
            let mut c = config(
                bps,
                in_house,
                if cont {
                    PartialApprovalRule::ContinueForFullCoverage
                } else {
                    PartialApprovalRule::StopForStaff
                },
            );
            if card {
                c.payment_preference = PaymentPreference::CardOnFile;
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_event_sequence_ends_settled_without_double_stripe_creations(
        config in policies(),
        choices in prop::collection::vec(any::<u8>(), 1..64),
        lookup in any::<bool>(),
    ) {
        let (s, emitted, withdrew) = drive(&config, &choices, lookup);
        let count = |f: fn(&Action) -> bool| emitted.iter().filter(|a| f(a)).count();
        let failures = usize::from(s.failed_action.as_ref().is_some_and(Action::creates_stripe_object));
        prop_assert!(count(|a| matches!(a, Action::CreateDepositLink { .. })) <= 1 + failures, "{emitted:?}");
        prop_assert!(count(|a| matches!(a, Action::CreateInstallmentSchedule { .. })) <= 1, "{emitted:?}");
        prop_assert!(count(|a| matches!(a, Action::EnsureCustomer)) <= 1, "{emitted:?}");
        // Never a lender charge twice (no staff retry here).
        prop_assert!(count(|a| matches!(a, Action::SettleWithLender { .. })) <= 1, "{emitted:?}");
        // Never a card charged twice, never a card-saving link twice, never without agreement.
        prop_assert!(count(|a| matches!(a, Action::ChargeCard { .. })) <= 1, "{emitted:?}");
        prop_assert!(count(|a| matches!(a, Action::CreateCardSetupLink)) <= 1, "{emitted:?}");
        prop_assert!(
            count(|a| matches!(a, Action::ChargeCard { .. })) == 0
                || s.stripe.card_authorization.is_some(),
            "{emitted:?}"
        );
        // Offers are offered: no schedule without the patient's recorded acceptance.
        prop_assert!(
            count(|a| matches!(a, Action::CreateInstallmentSchedule { .. })) == 0
                || s.in_house_acceptance.is_some(),
            "{emitted:?}"
        );
        let outcome_notes = count(|a| matches!(a, Action::WriteLedgerNote { note: NoteKind::Outcome }));
        prop_assert!(outcome_notes <= 1 + usize::from(withdrew), "{outcome_notes} outcome notes: {emitted:?}");
        // With the queue drained and no timers left the workflow has settled.
        prop_assert!(
            matches!(s.status, Status::Done | Status::Cancelled | Status::WaitingOnStaff) || s.stage != Stage::Settled,
            "status {:?} at stage {:?}", s.status, s.stage
        );
    }

    #[test]
    fn a_workflow_driven_to_the_end_is_done_cancelled_or_with_staff(
        config in policies(),
        choices in prop::collection::vec(1_u8..=250, 1..64),
    ) {
        // No duplicates (multiples of 11), payments (of 13) or withdrawal here: pure progress.
        let choices: Vec<u8> = choices.into_iter().filter(|c| c % 11 != 0 && c % 13 != 0).collect();
        prop_assume!(!choices.is_empty());
        let (s, emitted, _) = drive(&config, &choices, false);
        let held = matches!(&s.stage, Stage::Financing(c) if matches!(c.phase, LenderPhase::HeldForStaff { .. }));
        if held {
            // Held for staff with the lender's instruction: no note, nothing pending, a person acts.
            prop_assert_eq!(s.status, Status::WaitingOnStaff);
            prop_assert_eq!(s.staff_task.as_ref().map(|t| t.kind), Some(TaskKind::LenderNeedsStaff));
            return Ok(());
        }
        prop_assert_eq!(&s.stage, &Stage::Settled, "stuck at {:?} after {} commands", s.stage, emitted.len());
        prop_assert!(matches!(s.status, Status::Done | Status::Cancelled | Status::WaitingOnStaff));
        prop_assert_eq!(emitted.iter().filter(|a| matches!(a, Action::WriteLedgerNote { note: NoteKind::Outcome })).count(), 1);
        if s.status == Status::Done {
            prop_assert!(s.ledger_written_at.is_some());
        }
    }
}

#[test]
fn a_huge_poll_or_reminder_duration_saturates_the_timer_instead_of_panicking() {
    let mut huge = config(0, true, PartialApprovalRule::StopForStaff);
    huge.poll_interval = Duration::MAX;
    huge.lender_schedules = vec![(
        lender("carecredit"),
        financing_core::PollSchedule {
            steps: vec![],
            then_every: Duration::MAX,
            session_life: None,
            remind_before_expiry: Duration::MAX,
            staff_decides_within: None,
        },
    )];
    huge.reminder_delays = vec![Duration::from_secs(u64::MAX / 2)];
    let mut run = Run::new(huge);
    run.on(loaded(100_000, 0));

    let t = run.on(opened("carecredit"));

    assert_eq!(
        t.set_timers,
        vec![
            (TimerKind::Poll, DateTime::<Utc>::MAX_UTC),
            (TimerKind::Reminder, DateTime::<Utc>::MAX_UTC)
        ]
    );
}

fn result_with(deposit: i64, installments: Option<Vec<i64>>) -> FinancingResult {
    FinancingResult {
        financed: None,
        deposit: Money::usd(deposit),
        in_house: installments.map(|cents| financing_core::InHouseOffer {
            total: Money::usd(deposit + cents.iter().sum::<i64>()),
            deposit: Money::usd(deposit),
            installments: cents.into_iter().map(Money::usd).collect(),
            interval: InstallmentInterval::MONTHLY,
        }),
        path: "test".into(),
    }
}

#[test]
fn a_failed_payment_names_a_regular_installment_of_the_in_house_plan_else_the_deposit_else_nothing()
{
    let cases = [
        // The first installment carries the remainder cents: a regular one is named.
        (
            result_with(0, Some(vec![16_668, 16_666, 16_666])),
            Some(16_666),
        ),
        (result_with(5_000, Some(vec![16_668, 16_666])), Some(16_666)),
        (result_with(0, Some(vec![50_000])), Some(50_000)),
        (result_with(12_000, None), Some(12_000)),
        // Nothing to name: no made-up $0.00.
        (result_with(0, None), None),
    ];
    for (result, expected) in cases {
        assert_eq!(
            result.failed_payment_amount(),
            expected.map(Money::usd),
            "{result:?}"
        );
    }
}

#[test]
fn a_workflow_without_a_result_names_no_failed_amount() {
    let mut state = WorkflowState::new(
        WorkflowKey {
            practice_id: PracticeId::new("p"),
            plan_id: PlanId::new("tx"),
            revision: "1".into(),
        },
        PatientId::new("pat"),
        t0(),
    );
    assert_eq!(state.failed_payment_amount(), None);
    state.result = Some(result_with(7_500, None));
    assert_eq!(state.failed_payment_amount(), Some(Money::usd(7_500)));
}

proptest! {
    #[test]
    fn a_named_failed_amount_is_never_zero_and_is_one_the_patient_owes(
        deposit in 0i64..100_000,
        installments in proptest::option::of(proptest::collection::vec(1i64..100_000, 1..24)),
    ) {
        let result = result_with(deposit, installments.clone());
        if let Some(amount) = result.failed_payment_amount() {
            prop_assert!(!amount.is_zero());
            let owed: Vec<Money> = match &installments {
                Some(i) => i.iter().copied().map(Money::usd).collect(),
                None => vec![Money::usd(deposit)],
            };
            prop_assert!(owed.contains(&amount));
        } else {
            prop_assert!(installments.is_none() && deposit == 0);
        }
    }
}

mod copay;
mod installments_card;
mod link_only;
mod reversals;
mod settlement;
mod staffpage;
mod undelivered;
// ---- Lenders at real speed, amounts read right, statuses that need a person. ----

/// CareCredit's real schedule (as `carecredit-client` ships it): a 30-minute session.
fn carecredit_schedule() -> financing_core::PollSchedule {
    financing_core::PollSchedule {
        steps: vec![
            financing_core::PollStep {
                until: Duration::from_secs(600),
                every: Duration::from_secs(5),
            },
            financing_core::PollStep {
                until: Duration::from_secs(35 * 60),
                every: Duration::from_secs(20),
            },
        ],
        then_every: Duration::from_secs(300),
        session_life: Some(Duration::from_secs(30 * 60)),
        remind_before_expiry: Duration::from_secs(600),
        staff_decides_within: None,
    }
}

/// The shipped practice defaults: reminders after 1 and 3 days, a task 2 days later, polls at
/// most every 15 minutes; CareCredit first with its real schedule, then Sunbit.
fn real_timings() -> WorkflowConfig {
    let mut c = config(0, true, PartialApprovalRule::StopForStaff);
    c.reminder_delays = vec![Duration::from_secs(86_400), Duration::from_secs(3 * 86_400)];
    c.give_up_after = Duration::from_secs(2 * 86_400);
    c.poll_interval = Duration::from_secs(15 * 60);
    c.lender_schedules = vec![(lender("carecredit"), carecredit_schedule())];
    c
}

fn timer_at(t: &Transition, kind: TimerKind) -> Option<DateTime<Utc>> {
    t.set_timers
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, at)| *at)
}

fn minutes(m: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::minutes(m)
}

#[test]
fn a_carecredit_session_at_real_timings_is_polled_fast_reminded_before_it_lapses_then_sunbit_is_offered()
 {
    let mut run = Run::new(real_timings());
    run.on(loaded(100_000, 0));
    // Arrange: the link goes out at t0.
    let t = run.on(opened("carecredit"));
    // The patient is likely on CareCredit's page: the pullback is read within seconds.
    assert_eq!(
        timer_at(&t, TimerKind::Poll),
        Some(t0() + Duration::from_secs(5))
    );
    // The practice's first reminder (a day) would come after the 30-minute session: brought
    // forward to 10 minutes before the lapse.
    assert_eq!(timer_at(&t, TimerKind::Reminder), Some(t0() + minutes(20)));

    // Twelve minutes in, still pending: the slower step (20 s).
    run.now = t0() + minutes(12);
    let t = run.on(decided(
        "carecredit",
        Decision::Pending {
            poll_after: None,
            raw_status: "Created".into(),
        },
    ));
    assert_eq!(
        timer_at(&t, TimerKind::Poll),
        Some(run.now + Duration::from_secs(20))
    );

    // The reminder goes out before the session lapses, then no other reminder for this session;
    // the give-up keeps its own horizon (a finished application may be pending past the lapse).
    run.now = t0() + minutes(20);
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });
    assert!(matches!(
        actions(&t)[..],
        [Action::SendMessage {
            message: MessageKind::Reminder { number: 1, .. }
        }]
    ));
    let lapse = t0() + minutes(30) + Duration::from_secs(1);
    assert_eq!(
        timer_at(&t, TimerKind::GiveUp),
        Some(run.now + Duration::from_secs(2 * 86_400))
    );
    assert_eq!(timer_at(&t, TimerKind::Reminder), None);

    // A read 10 s before the lapse schedules the next one at the lapse, not 20 s later.
    run.now = t0() + minutes(30) - Duration::from_secs(10);
    let t = run.on(decided(
        "carecredit",
        Decision::Pending {
            poll_after: None,
            raw_status: "Created".into(),
        },
    ));
    assert_eq!(timer_at(&t, TimerKind::Poll), Some(lapse));
    let (_, _, session) = run.state.lender_session().unwrap();
    assert!(!session.expired(run.now));
    assert!(session.expired(lapse));

    // A stray reminder after the lapse never resends the lapsed link.
    run.now = lapse;
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });
    assert!(t.ignored && t.commands.is_empty());

    // CareCredit reports the lapse: the waterfall moves on and Sunbit is offered.
    let t = run.on(decided(
        "carecredit",
        Decision::Expired {
            raw_status: "Expired".into(),
        },
    ));
    assert!(matches!(
        actions(&t)[..],
        [Action::StartApplication { lender: l, .. }] if l == &lender("sunbit")
    ));
    assert_eq!(
        run.state.attempts[0].outcome,
        financing_core::AttemptOutcome::Expired
    );
    assert_eq!(run.state.status, Status::Active);
}

#[test]
fn an_application_finished_before_the_lapse_may_stay_pending_after_it() {
    // Arrange: the patient finished at minute 25; CareCredit reviews past the 30-minute session.
    let mut run = Run::new(real_timings());
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.now = t0() + minutes(31);
    // Act
    let t = run.on(decided(
        "carecredit",
        Decision::Pending {
            poll_after: None,
            raw_status: "Pending".into(),
        },
    ));
    // Assert: still this lender, read again on its schedule (20 s until 35 minutes).
    assert_eq!(
        timer_at(&t, TimerKind::Poll),
        Some(run.now + Duration::from_secs(20))
    );
    assert!(run.state.attempts.is_empty());
    run.now = t0() + minutes(40);
    let t = run.on(approved("carecredit", 100_000));
    assert!(matches!(
        actions(&t)[..],
        [Action::SendMessage {
            message: MessageKind::FinancingSummary
        }]
    ));
}

#[test]
fn a_lender_supplied_expiry_wins_over_the_schedule_and_the_last_lapse_is_a_quiet_patient() {
    let mut run = Run::new(real_timings());
    run.on(loaded(100_000, 0));
    // CareCredit says its session ends in 10 minutes: no reminder fits before it.
    let t = run.on(Event::ApplicationOpened {
        lender: lender("carecredit"),
        handle: handle("sess-1"),
        link: "https://carecredit.test/apply/1".into(),
        expires_at: Some(t0() + minutes(10)),
    });
    assert_eq!(timer_at(&t, TimerKind::Reminder), None);
    assert!(timer_at(&t, TimerKind::GiveUp).is_some());
    run.on(decided(
        "carecredit",
        Decision::Expired {
            raw_status: "Expired".into(),
        },
    ));
    // Sunbit's link lapses too, with nothing decided anywhere: staff call the patient.
    run.on(opened("sunbit"));
    let t = run.on(decided(
        "sunbit",
        Decision::Expired {
            raw_status: "PREQUAL_ABORTED".into(),
        },
    ));
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::PatientQuiet));
}

#[test]
fn a_prequalification_is_not_financing_and_the_lower_purchase_is_a_counteroffer() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    // Prequalified for more than asked: still waiting, nothing financed, polls go on.
    let t = run.on(decided(
        "carecredit",
        Decision::Prequalified {
            offer: offer("carecredit", 250_000),
            requested: Money::usd(100_000),
            raw_status: "PREQUAL_APPROVED".into(),
        },
    ));
    assert!(t.commands.is_empty(), "{t:?}");
    assert!(timer_at(&t, TimerKind::Poll).is_some());
    assert!(run.state.result.is_none() && run.state.attempts.is_empty());
    let (_, _, session) = run.state.lender_session().unwrap();
    assert_eq!(
        session.prequalified.as_ref().map(|o| o.amount),
        Some(Money::usd(250_000))
    );
    // The purchase completes for less than asked: a counteroffer for staff, the gap named.
    let t = run.on(decided(
        "carecredit",
        Decision::from_approval(
            offer("carecredit", 70_000),
            Money::usd(100_000),
            "COMPLETED",
        ),
    ));
    let task = t.raise_task.expect("a counteroffer task");
    assert_eq!(task.kind, TaskKind::Counteroffer);
    assert!(
        task.reason.contains("$700.00") && task.reason.contains("$300.00"),
        "{}",
        task.reason
    );
    assert!(
        run.state.result.is_none(),
        "a counteroffer is not financing"
    );
}

#[test]
fn a_counteroffer_with_continue_finances_the_approval_and_puts_the_gap_on_the_in_house_plan() {
    let mut run = Run::new(config(
        0,
        true,
        PartialApprovalRule::ContinueForFullCoverage,
    ));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    run.on(decided(
        "sunbit",
        Decision::from_approval(offer("sunbit", 64_000), Money::usd(100_000), "COMPLETED"),
    ));
    let result = run.state.result.clone().expect("financed");
    assert_eq!(
        result.financed,
        Some((lender("sunbit"), Money::usd(64_000)))
    );
    let gap: i64 = result
        .in_house
        .expect("the gap goes to the in-house plan")
        .installments
        .iter()
        .map(|m| m.minor())
        .sum();
    assert_eq!(gap, 36_000);
}

#[test]
fn call_for_auth_holds_the_waterfall_for_staff_with_the_lenders_instruction() {
    let mut run = Run::new(real_timings());
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let instruction = "call CareCredit at 800-859-9975 and quote session sess-1";
    // Act
    let t = run.on(decided(
        "carecredit",
        Decision::NeedsStaff {
            instruction: instruction.into(),
            raw_status: "CallForAuth".into(),
        },
    ));
    // Assert: a task with the instruction, no next lender, no note, nothing left ticking.
    let task = t.raise_task.clone().expect("a staff task");
    assert_eq!(task.kind, TaskKind::LenderNeedsStaff);
    assert_eq!(task.reason, instruction);
    assert!(t.commands.is_empty(), "{t:?}");
    assert!(
        t.clear_timers.contains(&TimerKind::Poll) && t.clear_timers.contains(&TimerKind::Reminder)
    );
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    assert!(
        run.state.attempts.is_empty(),
        "the waterfall did not move on"
    );
    // A late decision while held is left to the staff retry, which reads the lender again.
    assert!(run.on(approved("carecredit", 100_000)).ignored);
    let t = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    assert!(matches!(actions(&t)[..], [Action::PollApplication { .. }]));
    assert_eq!(run.state.status, Status::Active);
    let t = run.on(approved("carecredit", 100_000));
    assert!(matches!(
        actions(&t)[..],
        [Action::SendMessage {
            message: MessageKind::FinancingSummary
        }]
    ));
}

#[test]
fn an_unknown_status_holds_for_staff_and_cancel_withdraws_the_held_application() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let t = run.on(decided(
        "carecredit",
        Decision::Unknown("Frobnicated".into()),
    ));
    let task = t.raise_task.expect("a staff task");
    assert_eq!(task.kind, TaskKind::LenderNeedsStaff);
    assert!(
        task.reason.contains("Frobnicated") && task.reason.contains("sess-1"),
        "{}",
        task.reason
    );
    assert!(run.state.attempts.is_empty());
    let t = run.on(Event::Staff {
        action: StaffAction::Cancel,
    });
    assert!(matches!(
        actions(&t)[..],
        [Action::CancelApplication { .. }]
    ));
}

#[test]
fn marking_a_held_lender_handled_closes_the_workflow() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(decided(
        "carecredit",
        Decision::NeedsStaff {
            instruction: "look at the duplicate QuickScreen".into(),
            raw_status: "DupQS".into(),
        },
    ));
    run.on(Event::Staff {
        action: StaffAction::MarkHandled,
    });
    assert_eq!(run.state.status, Status::Done);
    assert_eq!(run.state.stage, Stage::Settled);
}

/// All lenders decline with an in-house plan configured: the machine is at the offer.
fn at_in_house_offer(deposit_bps: u32) -> Run {
    let mut run = Run::new(config(deposit_bps, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    run.on(declined("sunbit"));
    assert!(matches!(
        run.state.stage,
        Stage::OfferingInHouse { reminders_sent: 0 }
    ));
    run
}

#[test]
fn the_in_house_plan_is_offered_and_nothing_bills_before_the_patient_accepts() {
    let mut run = at_in_house_offer(2_000);
    assert!(run.state.stripe.customer_id.is_none());
    assert!(run.state.in_house_acceptance.is_none());
    // Stripe facts before acceptance change nothing.
    assert!(
        run.on(Event::Payment(PaymentFact::Paid {
            stripe_id: "in_x".into(),
            amount: Money::usd(100),
        }))
        .ignored
    );
    // A schedule creation arriving now (a forged or stray result) is not taken.
    assert!(
        run.on(Event::ScheduleCreated {
            schedule_id: "sub_sched_x".into()
        })
        .ignored
    );
    run.now = t0() + Duration::from_secs(60);
    let t = run.on(accept());
    assert_eq!(actions(&t), vec![&Action::EnsureCustomer]);
    assert!(t.clear_timers.contains(&TimerKind::Reminder));
    assert!(t.clear_timers.contains(&TimerKind::GiveUp));
    let acceptance = run.state.in_house_acceptance.clone().expect("recorded");
    assert_eq!(acceptance.at, run.now, "the time of the acceptance is kept");
    assert_eq!(
        acceptance.wording,
        "I agree to pay $1,000.00 in 6 monthly payments"
    );
    assert!(
        t.audit
            .iter()
            .any(|l| l.contains("accepted the in-house plan"))
    );
    let t = run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    assert!(matches!(
        actions(&t)[..],
        [Action::CreateDepositLink { .. }]
    ));
    run.on(Event::DepositLinkCreated {
        session_id: "cs_1".into(),
        url: "u".into(),
    });
    assert!(matches!(
        run.state.stage,
        Stage::Payments(PaymentStep::Schedule)
    ));
    // A second acceptance (a double click that reached the runner twice) is ignored.
    assert!(run.on(accept()).ignored);
}

#[test]
fn an_unanswered_offer_is_reminded_then_handed_to_staff_and_a_resend_offers_it_again() {
    let mut run = at_in_house_offer(0);
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::InHouseOffer { number: 1 }
        }]
    );
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::InHouseOffer { number: 2 }
        }]
    );
    assert!(
        t.set_timers.iter().any(|(k, _)| *k == TimerKind::GiveUp),
        "after the last reminder, the give-up timer"
    );
    let t = run.on(Event::TimerFired {
        timer: TimerKind::GiveUp,
    });
    let task = t.raise_task.clone().expect("a task for staff");
    assert_eq!(task.kind, TaskKind::PatientQuiet);
    assert!(task.reason.contains("in-house"), "{}", task.reason);
    assert!(
        !actions(&t)
            .iter()
            .any(|a| a.creates_stripe_object() || matches!(a, Action::EnsureCustomer)),
        "going quiet bills nothing"
    );
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    // An answer after the hand-over is not taken: the offer is no longer standing.
    assert!(run.on(accept()).ignored);
    // Staff resend: the offer goes out again with a fresh reminder schedule.
    let t = run.on(Event::Staff {
        action: StaffAction::ResendLink,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::InHouseOffer { number: 0 }
        }]
    );
    assert_eq!(run.state.status, Status::Active);
    assert!(run.state.staff_task.is_none());
    assert!(t.set_timers.iter().any(|(k, _)| *k == TimerKind::Reminder));
    let t = run.on(accept());
    assert_eq!(actions(&t), vec![&Action::EnsureCustomer]);
}

#[test]
fn a_declined_offer_becomes_a_staff_task_and_bills_nothing() {
    let mut run = at_in_house_offer(2_000);
    let t = run.on(Event::InHouseAnswered {
        accepted: false,
        wording: "I do not want the plan".into(),
    });
    let task = t.raise_task.clone().expect("a task");
    assert_eq!(task.kind, TaskKind::NoFinancing);
    assert!(
        task.reason.contains("declined the in-house"),
        "{}",
        task.reason
    );
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Outcome
        }]
    );
    assert!(run.state.in_house_acceptance.is_none());
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    assert!(t.clear_timers.contains(&TimerKind::GiveUp));
}

#[test]
fn a_withdrawal_during_the_offer_undoes_nothing_and_refuses_a_later_acceptance() {
    let mut run = at_in_house_offer(0);
    let t = run.on(Event::PlanWithdrawn {
        reason: "rejected".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Outcome
        }]
    );
    assert!(t.drop_pending_messages);
    assert!(run.on(accept()).ignored);
}

/// CareCredit approved with a 20 % deposit; the deposit link is out and the workflow is done.
fn with_deposit_link() -> Run {
    let mut run = Run::new(config(2_000, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 80_000));
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    run.on(Event::DepositLinkCreated {
        session_id: "cs_1".into(),
        url: "https://checkout.test/cs_1".into(),
    });
    run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::Done);
    run
}

#[test]
fn an_expired_deposit_link_is_replaced_once_when_the_patient_asks_and_never_after_payment() {
    let mut run = with_deposit_link();
    // Nothing to replace while the link is open.
    assert!(run.on(Event::DepositLinkRequested).ignored);
    // Another session's expiry changes nothing.
    assert!(
        run.on(Event::Payment(PaymentFact::CheckoutExpired {
            session_id: "cs_other".into()
        }))
        .ignored
    );
    let t = run.on(Event::Payment(PaymentFact::CheckoutExpired {
        session_id: "cs_1".into(),
    }));
    assert!(
        t.commands.is_empty(),
        "nothing is created until the patient asks"
    );
    assert!(run.state.stripe.checkout_url.is_none());
    assert_eq!(run.state.stripe.expired_sessions, vec!["cs_1".to_owned()]);
    let t = run.on(Event::DepositLinkRequested);
    assert_eq!(
        actions(&t),
        vec![&Action::CreateDepositLink {
            amount: Money::usd(20_000)
        }]
    );
    // A second click while it is being created creates nothing more.
    assert!(run.on(Event::DepositLinkRequested).ignored);
    run.on(Event::DepositLinkCreated {
        session_id: "cs_2".into(),
        url: "https://checkout.test/cs_2".into(),
    });
    assert_eq!(
        run.state.stripe.checkout_session_id.as_deref(),
        Some("cs_2")
    );
    assert_eq!(
        run.state.status,
        Status::Done,
        "the workflow itself is untouched"
    );
    // Paid: a late expiry of the old link and further requests change nothing.
    run.on(Event::Payment(PaymentFact::CheckoutCompleted {
        session_id: "cs_2".into(),
    }));
    assert!(run.state.stripe.deposit_paid);
    assert!(
        run.on(Event::Payment(PaymentFact::CheckoutExpired {
            session_id: "cs_2".into()
        }))
        .ignored
    );
    assert!(run.on(Event::DepositLinkRequested).ignored);
}

#[test]
fn a_cancelled_workflow_gets_no_fresh_deposit_link() {
    let mut run = with_deposit_link();
    run.on(Event::Payment(PaymentFact::CheckoutExpired {
        session_id: "cs_1".into(),
    }));
    run.on(Event::Staff {
        action: StaffAction::Cancel,
    });
    assert!(run.on(Event::DepositLinkRequested).ignored);
}

/// CareCredit approves $600 of $1,000; the practice stops for staff.
fn at_counteroffer(in_house: bool) -> Run {
    let mut run = Run::new(config(0, in_house, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let partial = Decision::PartiallyApproved {
        offer: offer("carecredit", 60_000),
        requested: Money::usd(100_000),
        raw_status: "PreApproved".into(),
    };
    run.on(decided("carecredit", partial));
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    run
}

#[test]
fn staff_accepting_a_counteroffer_finances_its_amount_and_offers_the_remainder_in_house() {
    let mut run = at_counteroffer(true);
    let t = run.on(Event::Staff {
        action: StaffAction::AcceptCounteroffer,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::InHouseOffer { number: 0 }
        }]
    );
    let result = run.state.result.clone().expect("a result");
    assert_eq!(
        result.financed,
        Some((lender("carecredit"), Money::usd(60_000)))
    );
    assert_eq!(
        result.in_house.map(|o| o.total),
        Some(Money::usd(40_000)),
        "the remainder, offered"
    );
    assert_eq!(run.state.status, Status::Active);
    // Without an in-house plan: the lender's part alone; the rest of the portion is due on the
    // treatment day, so the Stripe customer (for its pay link) before the summary.
    let mut run = at_counteroffer(false);
    let t = run.on(Event::Staff {
        action: StaffAction::AcceptCounteroffer,
    });
    assert_eq!(actions(&t), vec![&Action::EnsureCustomer]);
}

#[test]
fn staff_passing_on_a_counteroffer_asks_the_next_lender_and_keeps_the_record() {
    let mut run = at_counteroffer(true);
    let t = run.on(Event::Staff {
        action: StaffAction::NextLender,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::StartApplication {
            lender: lender("sunbit"),
            amount: Money::usd(100_000)
        }]
    );
    assert!(
        matches!(
            run.state.attempts[0].outcome,
            financing_core::AttemptOutcome::PartiallyApproved { .. }
        ),
        "the counteroffer stays in the record"
    );
    // Sunbit declines too: the whole amount goes to the in-house offer.
    run.on(opened("sunbit"));
    let t = run.on(declined("sunbit"));
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::InHouseOffer { number: 0 }
        }]
    );
    // A counteroffer action with no counteroffer open is ignored.
    assert!(
        run.on(Event::Staff {
            action: StaffAction::AcceptCounteroffer
        })
        .ignored
    );
}

fn intake_run(config: WorkflowConfig) -> Run {
    let mut run = Run::new(config);
    run.state = WorkflowState::from_intake(PracticeId::new("smile-dental"), "in_1", t0());
    run
}

fn intake_loaded(fee: i64) -> Event {
    Event::PlanLoaded {
        plan: crate::intake::intake_plan("in_1", Money::usd(fee), t0(), None),
        facts: facts(true, false),
    }
}

#[test]
fn an_accepted_intake_case_matches_the_patient_before_any_note_then_writes_the_held_notes() {
    // Arrange: an intake financed by the first lender, with a deposit paid before the outcome.
    let mut run = intake_run(config(2_000, false, PartialApprovalRule::StopForStaff));
    assert_eq!(run.state.ledger_patient(), None);
    run.on(intake_loaded(100_000));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 80_000));
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    run.on(Event::DepositLinkCreated {
        session_id: "cs_1".into(),
        url: "https://pay.test/cs_1".into(),
    });
    // The deposit is paid before the summary went out: its note waits for the patient record.
    let t = run.on(Event::Payment(PaymentFact::Paid {
        stripe_id: "pi_1".into(),
        amount: Money::usd(20_000),
    }));
    assert!(actions(&t).is_empty(), "no note before the patient exists");

    // Act: the summary goes out: the case is accepted.
    let t = run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });

    // Assert: the patient is matched or created first, then the case's plan is recorded, then
    // both notes go to that patient.
    assert_eq!(actions(&t), vec![&Action::EnsurePracticePatient]);
    let t = run.on(Event::PracticePatientReady {
        patient_id: PatientId::new("od-77"),
        created: true,
    });
    assert_eq!(actions(&t), vec![&Action::WritePracticePlan]);
    let plan = crate::intake::case_plan(&run.state).expect("an intake case has a plan");
    assert_eq!(plan.amount, Money::usd(100_000));
    assert!(
        plan.summary.contains("$800.00 financed by carecredit"),
        "{}",
        plan.summary
    );
    assert!(plan.summary.contains("deposit $200.00"), "{}", plan.summary);
    let t = run.on(Event::PracticePlanWritten {
        plan_id: "18".into(),
        created: true,
    });
    assert!(t.raise_task.is_none());
    assert_eq!(
        actions(&t),
        vec![
            &Action::WriteLedgerNote {
                note: NoteKind::Outcome
            },
            &Action::WriteLedgerNote {
                note: NoteKind::Payment {
                    stripe_id: "pi_1".into(),
                    amount: Money::usd(20_000)
                }
            }
        ]
    );
    assert_eq!(run.state.ledger_patient(), Some(&PatientId::new("od-77")));
    // A repeated answer changes nothing.
    let t = run.on(Event::PracticePatientReady {
        patient_id: PatientId::new("od-78"),
        created: true,
    });
    assert!(t.ignored);
    assert_eq!(run.state.ledger_patient(), Some(&PatientId::new("od-77")));
    let at = run.now;
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at,
    });
    assert_eq!(run.state.status, Status::Done);
}

#[test]
fn a_declined_intake_leaves_no_record_in_the_practice_system() {
    // Arrange: every lender declines and the practice has no in-house plan.
    let mut run = intake_run(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(intake_loaded(100_000));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));

    // Act
    let t = run.on(declined("sunbit"));

    // Assert: a task for staff, no practice-system call, the outcome recorded in Chairside only.
    assert_eq!(
        t.raise_task.as_ref().map(|t| t.kind),
        Some(TaskKind::NoFinancing)
    );
    assert!(actions(&t).is_empty(), "{:?}", actions(&t));
    assert_eq!(run.state.stage, Stage::Settled);
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    assert_eq!(run.state.ledger_written_at, None);
}

#[test]
fn a_practice_system_without_patient_creation_hands_the_record_to_staff_and_a_failure_is_retried() {
    let mut run = intake_run(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(intake_loaded(100_000));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 100_000));
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    let t = run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    assert_eq!(actions(&t), vec![&Action::EnsurePracticePatient]);

    // A failure of the match goes to staff without a note (there is no chart to write to).
    let t = run.on(Event::EffectFailed {
        action: Action::EnsurePracticePatient,
        reason: "opendental: 400".into(),
    });
    assert_eq!(
        t.raise_task.as_ref().map(|t| t.kind),
        Some(TaskKind::SystemError)
    );
    assert!(actions(&t).is_empty());
    // The retry repeats the match.
    let t = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    assert_eq!(actions(&t), vec![&Action::EnsurePracticePatient]);

    // Dentrix Ascend: the record is for staff to create.
    let t = run.on(Event::PracticePatientForStaff {
        reason: "create the patient".into(),
    });
    assert_eq!(
        t.raise_task.as_ref().map(|t| t.kind),
        Some(TaskKind::PatientRecord)
    );
    assert!(actions(&t).is_empty());
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    run.on(Event::Staff {
        action: StaffAction::MarkHandled,
    });
    assert_eq!(run.state.status, Status::Done);
}

/// An intake financed in full by CareCredit whose summary went out: the case is accepted and
/// the practice-system patient step is asked for.
fn accepted_intake_case() -> Run {
    let mut run = intake_run(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(intake_loaded(100_000));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 100_000));
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    run
}

#[test]
fn a_practice_system_without_plan_writes_hands_the_plan_to_staff_beside_a_finished_workflow() {
    // Arrange: NexHealth creates the patient but takes no plans.
    let mut run = accepted_intake_case();
    let t = run.on(Event::PracticePatientReady {
        patient_id: PatientId::new("nx-5"),
        created: false,
    });
    assert_eq!(actions(&t), vec![&Action::WritePracticePlan]);

    // Act
    let t = run.on(Event::PracticePlanForStaff {
        reason: "enter the plan".into(),
    });

    // Assert: a task beside the workflow, and the outcome note still goes to the patient.
    assert_eq!(
        t.raise_task.as_ref().map(|t| t.kind),
        Some(TaskKind::PlanRecord)
    );
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Outcome
        }]
    );
    assert!(run.state.staff_task.is_none());
    // A late duplicate answer is ignored (never a second task or note).
    let t = run.on(Event::PracticePlanWritten {
        plan_id: "9".into(),
        created: true,
    });
    assert!(t.ignored);
    let at = run.now;
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at,
    });
    assert_eq!(run.state.status, Status::Done);
}

#[test]
fn a_failed_plan_write_stops_before_the_note_and_a_staff_retry_writes_it_again() {
    let mut run = accepted_intake_case();
    run.on(Event::PracticePatientReady {
        patient_id: PatientId::new("od-77"),
        created: true,
    });

    // Act: the write's outcome is unknown (a 502 after Open Dental may have created it).
    let t = run.on(Event::EffectIndeterminate {
        action: Action::WritePracticePlan,
        seq: 0,
        reason: "opendental: 502".into(),
    });

    // Assert: staff see it, no note is written yet; the retry asks again (the marker lookup
    // finds a plan an earlier attempt created).
    assert_eq!(
        t.raise_task.as_ref().map(|t| t.kind),
        Some(TaskKind::SystemError)
    );
    assert!(actions(&t).is_empty());
    let t = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    assert_eq!(actions(&t), vec![&Action::WritePracticePlan]);
    let t = run.on(Event::PracticePlanWritten {
        plan_id: "18".into(),
        created: false,
    });
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Outcome
        }]
    );
}

// ---- Card on file ----

fn card_on_file() -> WorkflowConfig {
    let mut c = config(2_000, false, PartialApprovalRule::StopForStaff);
    c.payment_preference = PaymentPreference::CardOnFile;
    c
}

/// A card-on-file workflow financed by CareCredit, summary sent and noted: the card-saving
/// link exists, the deposit ($200 of $1,000) is due.
fn card_on_file_done() -> Run {
    let mut run = Run::new(card_on_file());
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 80_000));
    let t = run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::CreateCardSetupLink],
        "card on file: a card-saving link, no pay link"
    );
    let t = run.on(Event::CardSetupLinkCreated {
        session_id: "cs_setup_1".into(),
        url: "https://pay.test/cs_setup_1".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::FinancingSummary
        }]
    );
    run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::Done);
    run
}

fn card_saved(run: &mut Run) -> Transition {
    run.on(Event::CardAuthorized {
        wording: "I authorize Smile Dental to charge $200.00".into(),
        installments: false,
    });
    let t = run.on(Event::Payment(PaymentFact::CardSetupCompleted {
        session_id: "cs_setup_1".into(),
        setup_intent: "seti_1".into(),
    }));
    assert_eq!(
        actions(&t),
        vec![&Action::ReadSavedCard {
            setup_intent: "seti_1".into()
        }]
    );
    run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    })
}

#[test]
fn a_saved_card_is_charged_the_deposit_off_session_once_and_the_payment_noted_once() {
    // Arrange
    let mut run = card_on_file_done();
    // Act
    let t = card_saved(&mut run);
    // Assert
    assert_eq!(
        actions(&t),
        vec![&Action::ChargeCard {
            purpose: "deposit".into(),
            amount: Money::usd(20_000)
        }]
    );
    let seq = t.commands[0].seq;
    assert_eq!(
        run.state.command_key(&t.commands[0]),
        format!("{}:charge_card:{seq}", run.state.id),
        "the charge's idempotency key is the workflow's deterministic key"
    );
    // A second save report (a redelivered webhook) charges nothing.
    let again = run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });
    assert!(again.ignored && again.commands.is_empty());
    let t = run.on(Event::CardCharged {
        purpose: "deposit".into(),
        payment_intent: "pi_1".into(),
        amount: Money::usd(20_000),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Payment {
                stripe_id: "pi_1".into(),
                amount: Money::usd(20_000)
            }
        }]
    );
    assert!(run.state.stripe.deposit_paid);
    // Stripe's own `payment_intent.succeeded` for the same charge is not noted again.
    let t = run.on(Event::Payment(PaymentFact::Paid {
        stripe_id: "pi_1".into(),
        amount: Money::usd(20_000),
    }));
    assert!(t.commands.is_empty());
    assert_eq!(run.state.status, Status::Done);
}

#[test]
fn a_card_saved_without_the_patients_recorded_agreement_is_not_charged() {
    let mut run = card_on_file_done();
    run.on(Event::Payment(PaymentFact::CardSetupCompleted {
        session_id: "cs_setup_1".into(),
        setup_intent: "seti_1".into(),
    }));
    let t = run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });
    assert!(t.commands.is_empty());
    assert_eq!(run.state.stripe.payment_method.as_deref(), Some("pm_1"));
}

#[test]
fn a_declined_card_sends_a_pay_link_and_raises_a_task_naming_the_decline_code() {
    // Arrange
    let mut run = card_on_file_done();
    card_saved(&mut run);
    // Act
    let t = run.on(Event::CardDeclined {
        purpose: "deposit".into(),
        payment_intent: Some("pi_2".into()),
        reason: "card_declined: insufficient_funds".into(),
        authentication: false,
    });
    // Assert
    assert_eq!(
        actions(&t),
        vec![
            &Action::CreateDepositLink {
                amount: Money::usd(20_000)
            },
            &Action::SendMessage {
                message: MessageKind::PaymentFailed
            }
        ]
    );
    let task = t.raise_task.expect("a task");
    assert_eq!(task.kind, TaskKind::PaymentFailed);
    assert!(
        task.reason.contains("insufficient_funds"),
        "{}",
        task.reason
    );
    assert!(task.reason.contains("$200.00"), "{}", task.reason);
    // The pay link lands without touching the finished workflow's stage.
    run.on(Event::DepositLinkCreated {
        session_id: "cs_pay_1".into(),
        url: "https://pay.test/cs_pay_1".into(),
    });
    assert_eq!(
        run.state.stripe.checkout_url.as_deref(),
        Some("https://pay.test/cs_pay_1")
    );
    assert_eq!(run.state.stage, Stage::Settled);
    assert_eq!(run.state.status, Status::Done);
    // Stripe's `payment_intent.payment_failed` for the same attempt sends no second message.
    let t = run.on(Event::Payment(PaymentFact::Failed {
        stripe_id: "pi_2".into(),
    }));
    assert!(t.commands.is_empty());
}

#[test]
fn an_authentication_request_is_a_pay_link_and_a_task_that_says_so() {
    let mut run = card_on_file_done();
    card_saved(&mut run);
    let t = run.on(Event::CardDeclined {
        purpose: "deposit".into(),
        payment_intent: Some("pi_3".into()),
        reason: "authentication_required".into(),
        authentication: true,
    });
    assert!(actions(&t).contains(&&Action::SendMessage {
        message: MessageKind::PaymentFailed
    }));
    let task = t.raise_task.expect("a task");
    assert!(task.reason.contains("authenticate"), "{}", task.reason);
    assert!(matches!(
        run.state.stripe.card_charge("deposit").map(|c| &c.state),
        Some(CardChargeState::Failed {
            authentication: true,
            ..
        })
    ));
}

#[test]
fn an_open_pay_link_means_the_saved_card_is_not_charged_too() {
    // The patient asked for a pay link first (saving a card is never a precondition).
    let mut run = card_on_file_done();
    let t = run.on(Event::DepositLinkRequested);
    assert_eq!(
        actions(&t),
        vec![&Action::CreateDepositLink {
            amount: Money::usd(20_000)
        }]
    );
    run.on(Event::DepositLinkCreated {
        session_id: "cs_pay_1".into(),
        url: "https://pay.test/cs_pay_1".into(),
    });
    let t = card_saved(&mut run);
    assert!(t.commands.is_empty(), "never both a pay link and a charge");
}

#[test]
fn an_indeterminate_charge_is_retried_by_staff_under_the_same_key() {
    let mut run = card_on_file_done();
    let t = card_saved(&mut run);
    let charge = t.commands[0].clone();
    let t = run.on(Event::EffectIndeterminate {
        action: charge.action.clone(),
        seq: charge.seq,
        reason: "timeout".into(),
    });
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::SystemError));
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    assert_eq!(
        run.state.stage,
        Stage::Settled,
        "the outcome is not rewritten"
    );
    let t = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    assert_eq!(actions(&t), vec![&charge.action]);
    assert_eq!(
        run.state.command_key(&t.commands[0]),
        run.state.command_key(&charge),
        "the retry reconciles under the first attempt's key"
    );
    run.on(Event::CardCharged {
        purpose: "deposit".into(),
        payment_intent: "pi_1".into(),
        amount: Money::usd(20_000),
    });
    assert_eq!(run.state.status, Status::Done);
    assert!(run.state.stripe.deposit_paid);
}

#[test]
fn a_withdrawn_plan_expires_an_unused_card_saving_link() {
    let mut run = card_on_file_done();
    let t = run.on(Event::PlanWithdrawn {
        reason: "rejected".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::ExpireDepositLink {
            session_id: "cs_setup_1".into()
        }]
    );
    // A setup completed after the withdrawal is not used.
    let t = run.on(Event::Payment(PaymentFact::CardSetupCompleted {
        session_id: "cs_setup_1".into(),
        setup_intent: "seti_1".into(),
    }));
    assert!(t.commands.is_empty());
}

#[test]
fn a_lapsed_card_saving_link_is_made_again_when_the_patient_agrees_on_the_page() {
    let mut run = card_on_file_done();
    run.on(Event::Payment(PaymentFact::CheckoutExpired {
        session_id: "cs_setup_1".into(),
    }));
    assert_eq!(run.state.stripe.card_setup_url, None);
    let t = run.on(Event::CardAuthorized {
        wording: "I authorize".into(),
        installments: false,
    });
    assert_eq!(actions(&t), vec![&Action::CreateCardSetupLink]);
    run.on(Event::CardSetupLinkCreated {
        session_id: "cs_setup_2".into(),
        url: "https://pay.test/cs_setup_2".into(),
    });
    assert_eq!(
        run.state.stripe.card_setup_session_id.as_deref(),
        Some("cs_setup_2")
    );
    assert_eq!(run.state.stage, Stage::Settled);
}

#[test]
fn a_pay_link_practice_never_makes_a_card_saving_link() {
    let mut run = Run::new(config(2_000, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(approved("carecredit", 80_000));
    let t = run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::CreateDepositLink {
            amount: Money::usd(20_000)
        }]
    );
    let t = run.on(Event::CardAuthorized {
        wording: "I authorize".into(),
        installments: false,
    });
    assert!(t.ignored);
}

/// A done financing with a $120.00 deposit whose payment failed.
fn failed_deposit_state() -> WorkflowState {
    let mut s = state();
    s.status = Status::Done;
    s.stage = Stage::Settled;
    s.result = Some(result_with(12_000, None));
    s.stripe.customer_id = Some("cus_1".into());
    s.stripe.checkout_session_id = Some("cs_1".into());
    s.stripe.failures_handled = vec!["pi_1".into()];
    s
}

#[test]
fn a_pay_link_is_reissued_only_for_a_deposit_still_owed_after_a_failure() {
    use crate::PayLinkRefusal as R;
    let owed = failed_deposit_state();
    assert_eq!(owed.pay_link_retry(), Ok(Money::usd(12_000)));
    type Change = fn(&mut WorkflowState);
    let cases: [(Change, R); 6] = [
        (|s| s.stripe.deposit_paid = true, R::AlreadyPaid),
        (|s| s.status = Status::Cancelled, R::Cancelled),
        (|s| s.stripe.failures_handled.clear(), R::NoFailedPayment),
        (
            |s| s.result = Some(result_with(0, Some(vec![10_000]))),
            R::InstallmentOnly,
        ),
        (|s| s.stripe.customer_id = None, R::NoCustomer),
        (|s| s.stripe.staff_pay_link = true, R::AlreadyIssuing),
    ];
    for (change, why) in cases {
        let mut s = failed_deposit_state();
        change(&mut s);
        assert_eq!(s.pay_link_retry(), Err(why));
    }
}

#[test]
fn a_staff_retry_of_a_failed_deposit_asks_for_one_link_then_sends_the_page_once() {
    let cfg = config(2_000, false, PartialApprovalRule::StopForStaff);
    let mut s = failed_deposit_state();
    let retry = apply(
        &mut s,
        Event::Staff {
            action: StaffAction::Retry,
        },
        &cfg,
        t0(),
    );
    assert_eq!(
        actions(&retry),
        vec![&Action::ReissueDepositLink {
            amount: Money::usd(12_000),
            previous: Some("cs_1".into())
        }]
    );
    // A second retry while the first is under way asks for nothing.
    let again = apply(
        &mut s,
        Event::Staff {
            action: StaffAction::Retry,
        },
        &cfg,
        t0(),
    );
    assert!(again.ignored && again.commands.is_empty());
    let created = Event::DepositLinkCreated {
        session_id: "cs_2".into(),
        url: "https://checkout.test/cs_2".into(),
    };
    let t = apply(&mut s, created.clone(), &cfg, t0());
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::PayLinkReissued
        }]
    );
    assert_eq!(s.stripe.checkout_session_id.as_deref(), Some("cs_2"));
    assert_eq!(s.stripe.expired_sessions, vec!["cs_1".to_owned()]);
    assert_eq!(s.status, Status::Done);
    // The same answer again (a replay) sends nothing more.
    let replay = apply(&mut s, created, &cfg, t0());
    assert!(replay.commands.is_empty());
}

#[test]
fn staff_corrected_amounts_price_the_plan_again_and_the_first_lender_is_asked_for_them() {
    // Arrange: insurance above the fee: a bad-data task once the note is written.
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 120_000));
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    let correction = crate::correction::Correction {
        total: Money::usd(100_000),
        insurance: Money::usd(20_000),
        deposit: Money::usd(10_000),
    };

    // Act
    let t = run.on(Event::AmountsCorrected { correction });

    // Assert: $800 portion, $100 deposit from staff, $700 asked of the first lender.
    assert!(!t.ignored);
    assert_eq!(run.state.status, Status::Active);
    assert_eq!(run.state.staff_task, None);
    assert_eq!(run.state.deposit, Some(Money::usd(10_000)));
    assert_eq!(run.state.financing_amount, Some(Money::usd(70_000)));
    assert!(
        t.commands.iter().any(|c| matches!(
            &c.action,
            Action::StartApplication { amount, .. } | Action::LookupCardholder { amount, .. }
                if *amount == Money::usd(70_000)
        )),
        "{:?}",
        t.commands
    );
    assert!(
        t.audit.iter().any(|a| a.contains(
            // The plan could not be priced: nothing was known before.
            "amounts corrected by staff: plan total none -> $1,000.00, insurance estimate none -> $200.00, deposit none -> $100.00"
        )),
        "{:?}",
        t.audit
    );

    // A second correction now (a lender is being asked for the corrected amount) is ignored.
    let again = run.on(Event::AmountsCorrected { correction });
    assert!(again.ignored && again.commands.is_empty());
}

#[test]
fn a_failed_staff_pay_link_marked_handled_leaves_no_link_in_flight_so_a_later_retry_works() {
    // Arrange: staff retried a failed deposit; the re-issue failed and became a task.
    let cfg = config(2_000, false, PartialApprovalRule::StopForStaff);
    let mut s = failed_deposit_state();
    let retry = Event::Staff {
        action: StaffAction::Retry,
    };
    apply(&mut s, retry.clone(), &cfg, t0());
    assert!(s.stripe.staff_pay_link);
    let failed = apply(
        &mut s,
        Event::EffectFailed {
            action: Action::ReissueDepositLink {
                amount: Money::usd(12_000),
                previous: Some("cs_1".into()),
            },
            reason: "HTTP 400".into(),
        },
        &cfg,
        t0(),
    );
    assert!(!failed.ignored);

    // Act: staff mark it handled (they called the patient).
    let handled = apply(
        &mut s,
        Event::Staff {
            action: StaffAction::MarkHandled,
        },
        &cfg,
        t0(),
    );

    // Assert: no link is taken as being issued; a later retry asks for one again.
    assert!(!handled.ignored, "{handled:?}");
    assert!(!s.stripe.staff_pay_link && !s.stripe.reissuing_deposit_link);
    assert_eq!(s.status, Status::Done);
    assert_eq!(s.pay_link_retry(), Ok(Money::usd(12_000)));
    let again = apply(&mut s, retry, &cfg, t0());
    assert_eq!(
        actions(&again),
        vec![&Action::ReissueDepositLink {
            amount: Money::usd(12_000),
            previous: Some("cs_1".into())
        }]
    );
}
