//! Link-only lenders (Cherry, Alphaeon, LendingClub): the link goes out, staff record the
//! decision, or the configured wait ends and the waterfall moves on with a task.

use super::*;
use financing_core::AttemptOutcome;

const WAIT: Duration = Duration::from_secs(3 * 86_400);

/// CareCredit, Sunbit, then Cherry (staff decide within three days), in-house last.
fn with_cherry(in_house: bool) -> WorkflowConfig {
    let mut c = config(0, in_house, PartialApprovalRule::StopForStaff);
    let slot = |id: &str| financing_core::LenderSlot {
        lender: lender(id),
        limits: AmountLimits::NONE,
    };
    c.waterfall = Waterfall::new(
        vec![slot("carecredit"), slot("sunbit"), slot("cherry")],
        c.waterfall.policy(),
    );
    c.lender_schedules = vec![(
        lender("cherry"),
        financing_core::PollSchedule {
            staff_decides_within: Some(WAIT),
            ..financing_core::PollSchedule::default()
        },
    )];
    c
}

/// Up to Cherry's link going out: CareCredit and Sunbit declined.
fn at_cherry(in_house: bool) -> (Run, Transition) {
    let mut run = Run::new(with_cherry(in_house));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    let t = run.on(declined("sunbit"));
    assert_eq!(
        actions(&t),
        vec![&Action::StartApplication {
            lender: lender("cherry"),
            amount: Money::usd(100_000)
        }]
    );
    let t = run.on(opened("cherry"));
    (run, t)
}

#[test]
fn a_link_only_lender_gets_the_link_and_one_deadline_and_is_never_polled_or_reminded() {
    let (run, t) = at_cherry(true);
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::ApplicationLink {
                lender: lender("cherry"),
                link: "https://cherry.test/apply/1".into()
            }
        }]
    );
    // The only timer is the end of the wait: no status reads, no "finish your application".
    assert_eq!(t.set_timers, vec![(TimerKind::Poll, t0() + WAIT)]);
    let (_, link, session) = run.state.lender_session().expect("the link is live");
    assert_eq!(link, "https://cherry.test/apply/1");
    assert_eq!(session.decide_by, Some(t0() + WAIT));
    assert!(run.state.stage_label().contains("waiting for staff"));
}

#[test]
fn a_staff_recorded_approval_finances_the_plan() {
    let (mut run, _) = at_cherry(true);
    run.now = t0() + chrono::TimeDelta::hours(5);
    let decision = financing_core::link_only::StaffReport::Approved {
        amount: Money::usd(100_000),
    }
    .decision(&lender("cherry"), Money::usd(100_000))
    .unwrap();
    let t = run.on(decided("cherry", decision));
    assert!(t.clear_timers.contains(&TimerKind::Poll));
    assert_eq!(
        run.state.result.as_ref().map(|r| r.path.as_str()),
        Some("cherry approved")
    );
    assert_eq!(
        run.state.attempts.last().map(|a| &a.outcome),
        Some(&AttemptOutcome::Approved {
            amount: Money::usd(100_000)
        })
    );
}

#[test]
fn a_staff_recorded_counteroffer_stops_for_staff_like_any_lenders() {
    let (mut run, _) = at_cherry(true);
    let decision = financing_core::link_only::StaffReport::Counteroffer {
        amount: Money::usd(60_000),
    }
    .decision(&lender("cherry"), Money::usd(100_000))
    .unwrap();
    let t = run.on(decided("cherry", decision));
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::Counteroffer));
}

#[test]
fn no_decision_by_the_deadline_moves_on_to_in_house_with_a_task_that_stays() {
    let (mut run, _) = at_cherry(true);
    // A timer that fires early (a clock step) only sets the deadline again.
    run.now = t0() + chrono::TimeDelta::hours(1);
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Poll,
    });
    assert!(t.commands.is_empty() && t.raise_task.is_none());
    assert_eq!(t.set_timers, vec![(TimerKind::Poll, t0() + WAIT)]);

    run.now = t0() + WAIT;
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Poll,
    });
    let task = t.raise_task.clone().expect("a task");
    assert_eq!(task.kind, TaskKind::LenderNoDecision);
    assert!(task.reason.contains("cherry portal"), "{}", task.reason);
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::InHouseOffer { number: 0 }
        }]
    );
    assert_eq!(
        run.state.attempts.last().map(|a| &a.outcome),
        Some(&AttemptOutcome::NoDecision)
    );
    // A late staff decision for Cherry no longer applies.
    let late = run.on(approved("cherry", 100_000));
    assert!(late.ignored);

    // The patient takes the in-house plan; the workflow ends waiting on staff (the portal check).
    run.on(accept());
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });
    run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: run.now,
    });
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    // Retry would ask every lender again: ignored; marking it handled closes the workflow.
    assert!(
        run.on(Event::Staff {
            action: StaffAction::Retry
        })
        .ignored
    );
    run.on(Event::Staff {
        action: StaffAction::MarkHandled,
    });
    assert_eq!(run.state.status, Status::Done);
}

#[test]
fn no_decision_and_no_in_house_plan_makes_one_task_that_says_both() {
    let (mut run, _) = at_cherry(false);
    run.now = t0() + WAIT;
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Poll,
    });
    let task = t.raise_task.expect("a task");
    assert_eq!(task.kind, TaskKind::NoFinancing);
    assert!(
        task.reason.contains("no lender approved") && task.reason.contains("cherry portal"),
        "{}",
        task.reason
    );
    assert_eq!(run.state.staff_task, Some(task));
}

#[test]
fn every_task_kind_reads_back_from_its_label() {
    for kind in TaskKind::ALL {
        assert_eq!(TaskKind::from_label(kind.label()), Some(kind));
    }
    assert_eq!(TaskKind::from_label("nonsense"), None);
}
