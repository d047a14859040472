//! Lender settlement: the charge runs on the treatment date, never before the lender allows,
//! once; what the lender's API cannot do is a dated staff task with the amount and reference.

use chrono::{Days, NaiveDate};
use financing_core::Settlement;

use super::*;

fn day(offset: u64) -> NaiveDate {
    t0().date_naive() + Days::new(offset)
}

/// Answers every command with its ordinary success until the workflow settles; returns the
/// actions performed.
fn run_to_rest(run: &mut Run, mut pending: Vec<Action>) -> Vec<Action> {
    let mut done = Vec::new();
    while let Some(action) = (!pending.is_empty()).then(|| pending.remove(0)) {
        let event = match &action {
            Action::EnsureCustomer => Event::CustomerReady {
                customer_id: "cus_1".into(),
            },
            Action::SendMessage { message } => Event::MessageSent {
                message: message.clone(),
            },
            Action::WriteLedgerNote { note } => Event::NoteWritten {
                note: note.clone(),
                at: run.now,
            },
            Action::CreateDepositLink { .. } => Event::DepositLinkCreated {
                session_id: "cs_1".into(),
                url: "https://pay.test/cs_1".into(),
            },
            _ => {
                done.push(action);
                continue;
            }
        };
        done.push(action);
        let t = run.on(event);
        pending.extend(t.commands.into_iter().map(|c| c.action));
    }
    done
}

/// CareCredit approves $800.00 of a plan whose treatment is `treatment`; runs to the outcome note.
fn financed(lender_id: &str, treatment: Option<NaiveDate>) -> (Run, Transition) {
    financed_in(
        Run::new(config(0, false, PartialApprovalRule::StopForStaff)),
        lender_id,
        treatment,
    )
}

/// As [`financed`], in `run` (its configuration and clock).
fn financed_in(mut run: Run, lender_id: &str, treatment: Option<NaiveDate>) -> (Run, Transition) {
    run.on(Event::PlanLoaded {
        plan: TreatmentPlan {
            treatment_date: treatment,
            ..plan(100_000, 20_000, "D2740")
        },
        facts: facts(true, false),
    });
    if lender_id == "sunbit" {
        run.on(opened("carecredit"));
        run.on(declined("carecredit"));
    }
    run.on(opened(lender_id));
    let t = run.on(approved(lender_id, 80_000));
    let mut pending: Vec<Action> = t.commands.into_iter().map(|c| c.action).collect();
    // Up to the outcome note, then return the transition of the note's result.
    loop {
        let action = pending.remove(0);
        let event = match &action {
            Action::SendMessage { message } => Event::MessageSent {
                message: message.clone(),
            },
            Action::EnsureCustomer => Event::CustomerReady {
                customer_id: "cus_1".into(),
            },
            Action::WriteLedgerNote { note } => {
                let t = run.on(Event::NoteWritten {
                    note: note.clone(),
                    at: run.now,
                });
                return (run, t);
            }
            other => panic!("unexpected {other:?}"),
        };
        let t = run.on(event);
        pending.extend(t.commands.into_iter().map(|c| c.action));
    }
}

fn settlement_note(t: &Transition) -> Option<&SettlementState> {
    t.commands.iter().find_map(|c| match &c.action {
        Action::WriteLedgerNote {
            note: NoteKind::Settlement { state, .. },
        } => Some(state),
        _ => None,
    })
}

#[test]
fn a_financed_plan_schedules_the_lender_charge_on_the_treatment_date() {
    // Arrange + Act
    let (run, t) = financed("carecredit", Some(day(45)));

    // Assert: done, the charge scheduled for the treatment day (not 30 days before: the day of
    // treatment), a Settle timer that morning, and a ledger note saying so.
    assert_eq!(run.state.status, Status::Done);
    let s = run.state.settlement.as_ref().unwrap();
    assert_eq!(s.lender, lender("carecredit"));
    assert_eq!(s.amount, Money::usd(80_000));
    assert_eq!(s.state, SettlementState::Scheduled { day: day(45) });
    let (kind, at) = t.set_timers[0];
    assert_eq!(kind, TimerKind::Settle);
    assert_eq!(at.date_naive(), day(45));
    assert_eq!(
        settlement_note(&t),
        None,
        "the ledger hears when the money moves"
    );
    assert!(
        run.state.stage_label().contains("due"),
        "{}",
        run.state.stage_label()
    );
    assert!(
        !actions(&t)
            .iter()
            .any(|a| matches!(a, Action::SettleWithLender { .. }))
    );
}

#[test]
fn the_charge_runs_on_the_day_once_and_is_noted() {
    // Arrange
    let (mut run, _) = financed("sunbit", Some(day(3)));

    // Act: a timer that fires a day early waits; on the day the charge runs.
    run.now = t0() + chrono::Duration::days(2);
    let early = run.on(Event::TimerFired {
        timer: TimerKind::Settle,
    });
    run.now = t0() + chrono::Duration::days(3) + chrono::Duration::hours(16);
    let due = run.on(Event::TimerFired {
        timer: TimerKind::Settle,
    });
    let again = run.on(Event::TimerFired {
        timer: TimerKind::Settle,
    });
    let settled = run.on(Event::LenderSettled {
        lender: lender("sunbit"),
        settlement: Settlement::Charged {
            purchase: LenderReference::new("purchase-9"),
        },
    });
    let late = run.on(Event::LenderSettled {
        lender: lender("sunbit"),
        settlement: Settlement::Charged {
            purchase: LenderReference::new("purchase-9"),
        },
    });

    // Assert
    assert!(early.commands.is_empty());
    assert_eq!(early.set_timers[0].0, TimerKind::Settle);
    assert_eq!(
        actions(&due),
        vec![&Action::SettleWithLender {
            lender: lender("sunbit"),
            amount: Money::usd(80_000)
        }]
    );
    assert!(again.ignored && again.commands.is_empty(), "never twice");
    assert!(matches!(
        settlement_note(&settled),
        Some(SettlementState::Charged { purchase, .. }) if purchase == "purchase-9"
    ));
    assert!(late.ignored);
    assert_eq!(run.state.status, Status::Done);
    assert!(
        run.state.stage_label().ends_with("settled"),
        "{}",
        run.state.stage_label()
    );
}

#[test]
fn carecredit_without_a_treatment_date_is_a_staff_task_with_amount_and_reference() {
    // Arrange + Act
    let (mut run, t) = financed("carecredit", None);

    // Assert: the financing is done; the charge is a task beside it.
    assert_eq!(run.state.status, Status::Done);
    let task = t.raise_task.as_ref().unwrap();
    assert_eq!(task.kind, TaskKind::Settlement);
    assert!(task.reason.contains("$800.00"), "{}", task.reason);
    assert!(
        task.reason
            .contains(&format!("{}-carecredit", run.state.id)),
        "{}",
        task.reason
    );
    assert!(task.reason.contains("30 days"), "{}", task.reason);
    assert_eq!(
        run.state.settlement.as_ref().unwrap().state,
        SettlementState::Manual { day: None }
    );
    assert!(t.set_timers.is_empty());

    // Staff ran it in the portal.
    let handled = run.on(Event::Staff {
        action: StaffAction::MarkHandled,
    });
    assert!(!handled.ignored);
    assert_eq!(run.state.status, Status::Done);
    assert!(matches!(
        run.state.settlement.as_ref().unwrap().state,
        SettlementState::HandledByStaff { .. }
    ));
}

#[test]
fn a_lender_whose_api_takes_no_charge_gets_a_task_dated_on_the_treatment_day() {
    // Arrange
    let (mut run, _) = financed("carecredit", Some(day(0)));
    run.now = t0() + chrono::Duration::hours(20);
    run.on(Event::TimerFired {
        timer: TimerKind::Settle,
    });

    // Act
    let t = run.on(Event::LenderSettled {
        lender: lender("carecredit"),
        settlement: Settlement::Manual,
    });

    // Assert
    let task = t.raise_task.as_ref().unwrap();
    assert_eq!(task.kind, TaskKind::Settlement);
    assert!(task.reason.contains(&day(0).to_string()), "{}", task.reason);
    assert!(task.reason.contains("$800.00"), "{}", task.reason);
    assert_eq!(
        run.state.settlement.as_ref().unwrap().state,
        SettlementState::Manual { day: Some(day(0)) }
    );
    assert_eq!(run.state.status, Status::Done);
}

#[test]
fn a_failed_charge_is_noted_and_a_staff_retry_repeats_the_same_call() {
    // Arrange
    let (mut run, _) = financed("sunbit", Some(day(0)));
    run.now = t0() + chrono::Duration::hours(20);
    let due = run.on(Event::TimerFired {
        timer: TimerKind::Settle,
    });
    let call = due.commands[0].action.clone();

    // Act
    let failed = run.on(Event::EffectFailed {
        action: call.clone(),
        reason: "HTTP 422".into(),
    });
    let retried = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    run.on(Event::LenderSettled {
        lender: lender("sunbit"),
        settlement: Settlement::Charged {
            purchase: LenderReference::new("p-1"),
        },
    });

    // Assert
    assert!(matches!(
        settlement_note(&failed),
        Some(SettlementState::Failed { .. })
    ));
    assert_eq!(
        failed.raise_task.as_ref().unwrap().kind,
        TaskKind::SystemError
    );
    assert_eq!(actions(&retried), vec![&call]);
    assert_eq!(run.state.status, Status::Done);
    assert!(matches!(
        run.state.settlement.as_ref().unwrap().state,
        SettlementState::Charged { .. }
    ));
}

#[test]
fn a_ledger_outage_after_scheduling_keeps_the_charge_scheduled() {
    // Arrange: the charge is scheduled; a payment note then fails for good.
    let (mut run, _) = financed("carecredit", Some(day(10)));

    // Act
    let failed = run.on(Event::EffectFailed {
        action: Action::WriteLedgerNote {
            note: NoteKind::Payment {
                stripe_id: "pi_1".into(),
                amount: Money::usd(100),
            },
        },
        reason: "HTTP 503".into(),
    });

    // Assert: the timer is cleared with the others and set again.
    assert!(failed.clear_timers.contains(&TimerKind::Settle));
    assert_eq!(failed.set_timers.len(), 1);
    assert_eq!(failed.set_timers[0].0, TimerKind::Settle);
    assert_eq!(failed.set_timers[0].1.date_naive(), day(10));
}

#[test]
fn a_plan_without_a_lender_has_nothing_to_settle() {
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    let t = run.on(loaded(50_000, 50_000));
    run_to_rest(&mut run, t.commands.into_iter().map(|c| c.action).collect());
    assert_eq!(run.state.status, Status::Done);
    assert!(run.state.settlement.is_none());
}

#[test]
fn an_old_stored_state_without_settlement_fields_still_loads() {
    let mut value = serde_json::to_value(state()).unwrap();
    let obj = value.as_object_mut().unwrap();
    obj.remove("settlement");
    obj.remove("treatment_date");
    let back: WorkflowState = serde_json::from_value(value).unwrap();
    assert!(back.settlement.is_none());
}

mod practice_time_zone {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, 0, 0))
            .map(|t| t.and_utc())
            .unwrap_or_default()
    }

    fn los_angeles() -> Run {
        let mut c = config(0, false, PartialApprovalRule::StopForStaff);
        c.time_zone = Some("America/Los_Angeles".into());
        Run::new(c)
    }

    fn settle_now(t: &Transition) -> bool {
        actions(t)
            .iter()
            .any(|a| matches!(a, Action::SettleWithLender { .. }))
    }

    #[test]
    fn the_evening_before_treatment_in_the_practice_is_not_yet_the_treatment_day() {
        // Arrange: 8 p.m. in California on June 9 is already June 10 in UTC.
        let treatment = NaiveDate::from_ymd_opt(2026, 6, 10).unwrap_or_default();
        let evening_before = utc(2026, 6, 10, 3);
        let mut run = los_angeles();
        run.now = evening_before;
        // Act
        let (mut run, t) = financed_in(run, "sunbit", Some(treatment));
        // Assert: scheduled for 10:00 in California on June 10 (17:00 UTC), not run now.
        assert_eq!(timer_at(&t, TimerKind::Settle), Some(utc(2026, 6, 10, 17)));
        assert!(!settle_now(&t));
        // A timer that fires that evening (a restart, a clock skew) waits for the day.
        let t = run.on(Event::TimerFired {
            timer: TimerKind::Settle,
        });
        assert!(!settle_now(&t), "{:?}", actions(&t));
        assert_eq!(timer_at(&t, TimerKind::Settle), Some(utc(2026, 6, 10, 17)));
        // The morning of the treatment day in California: the charge runs.
        run.now = utc(2026, 6, 10, 17);
        let t = run.on(Event::TimerFired {
            timer: TimerKind::Settle,
        });
        assert!(settle_now(&t), "{:?}", actions(&t));
    }

    #[test]
    fn at_five_in_the_afternoon_in_california_the_utc_day_edge_decides_nothing() {
        // 17:00 PDT on June 9 is 00:00 UTC on June 10: the first instant of UTC's next day.
        let five_pm = utc(2026, 6, 10, 0);
        // Treatment tomorrow (June 10, local): waits for 10:00 local that day.
        let mut run = los_angeles();
        run.now = five_pm;
        let tomorrow = NaiveDate::from_ymd_opt(2026, 6, 10).unwrap_or_default();
        let (_, t) = financed_in(run, "sunbit", Some(tomorrow));
        assert!(!settle_now(&t));
        assert_eq!(timer_at(&t, TimerKind::Settle), Some(utc(2026, 6, 10, 17)));
        // Treatment today (June 9, local; already "yesterday" in UTC): runs at once, today.
        let mut run = los_angeles();
        run.now = five_pm;
        let today = NaiveDate::from_ymd_opt(2026, 6, 9).unwrap_or_default();
        let (_, t) = financed_in(run, "sunbit", Some(today));
        assert_eq!(timer_at(&t, TimerKind::Settle), Some(five_pm));
    }

    #[test]
    fn without_a_time_zone_the_same_evening_counts_as_the_utc_day() {
        // The contrast the practice's zone fixes: UTC's June 10 has begun, so the charge runs.
        let treatment = NaiveDate::from_ymd_opt(2026, 6, 10).unwrap_or_default();
        let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
        run.now = utc(2026, 6, 10, 3);
        let (_, t) = financed_in(run, "sunbit", Some(treatment));
        assert_eq!(timer_at(&t, TimerKind::Settle), Some(utc(2026, 6, 10, 3)));
    }

    #[test]
    fn an_unknown_zone_name_falls_back_to_utc_days_rather_than_failing() {
        let mut c = config(0, false, PartialApprovalRule::StopForStaff);
        c.time_zone = Some("Mars/Olympus_Mons".into());
        let mut run = Run::new(c);
        run.now = utc(2026, 6, 1, 12);
        let treatment = NaiveDate::from_ymd_opt(2026, 6, 10).unwrap_or_default();
        let (_, t) = financed_in(run, "sunbit", Some(treatment));
        assert_eq!(timer_at(&t, TimerKind::Settle), Some(utc(2026, 6, 10, 15)));
    }
}
