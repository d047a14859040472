//! Lender settlement through the runner: the charge runs on the treatment date, once (also when
//! the lender's answer is lost), and reaches the ledger; a lender without a charge API is a dated
//! staff task.

use chairside_workflow::{SettlementState, Status, TaskKind};
use financing_core::{ErrorKind, Money, TreatmentPlan};

use crate::fakes::{Answer, Fault};
use crate::harness::{World, patient, plan, t0};

/// Plan 1 ($800.00 financed by CareCredit) with its treatment `days` after acceptance.
fn booked(w: &World, days: u64) -> chairside_workflow::WorkflowId {
    let treatment = t0().date_naive() + chrono::Days::new(days);
    w.accept_plan(
        TreatmentPlan {
            treatment_date: Some(treatment),
            ..plan(1, 150_000, 50_000)
        },
        patient(1),
    )
}

#[tokio::test]
async fn the_lender_charge_runs_on_the_treatment_date_once_and_is_noted() {
    // Arrange: treatment in 40 days (more than CareCredit's 30-day window).
    let w = World::new();
    let id = booked(&w, 40);
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;

    // Act: run to rest before the date, then let the clock reach it.
    runner.run_until_idle(100).await.unwrap();
    let mut before = Vec::new();
    for _ in 0..50 {
        runner.run_until_idle(100).await.unwrap();
        match w.next_due(&runner).await {
            Some(at) if at.date_naive() < t0().date_naive() + chrono::Days::new(40) => {
                w.clock.set(at.max(w.clock.now_utc()));
            }
            _ => break,
        }
    }
    before.extend(w.carecredit.purchases());
    let waiting = w.row(&runner, &id).await.state;
    w.settle(&runner).await;

    // Assert
    assert!(
        before.is_empty(),
        "nothing is charged before the treatment date"
    );
    assert_eq!(waiting.status, Status::Done);
    assert!(
        matches!(
            waiting.settlement.as_ref().map(|s| &s.state),
            Some(SettlementState::Scheduled { day }) if *day == t0().date_naive() + chrono::Days::new(40)
        ),
        "{:?}",
        waiting.settlement
    );
    assert_eq!(w.carecredit.purchases(), vec![Money::usd(80_000)]);
    assert_eq!(w.carecredit.script.count("settle"), 1);
    let state = w.row(&runner, &id).await.state;
    assert!(matches!(
        state.settlement.as_ref().map(|s| &s.state),
        Some(SettlementState::Charged { .. })
    ));
    let notes = w.pms.notes_for(&id);
    assert_eq!(notes.len(), 2, "the outcome, then the charge: {notes:?}");
    assert!(
        notes[1].text.contains("CareCredit charged $800.00"),
        "{}",
        notes[1].text
    );
    assert!(w.tasks(&runner).await.is_empty());
}

#[tokio::test]
async fn a_charge_whose_answer_was_lost_is_repeated_under_the_same_reference_and_charged_once() {
    // Arrange: the lender charges, then the answer is lost.
    let w = World::new();
    let id = booked(&w, 3);
    w.carecredit.on_status(Answer::Approve);
    w.carecredit
        .script
        .fault("settle", Fault::FailAfterApplying(ErrorKind::TRANSIENT), 1);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    assert_eq!(
        w.carecredit.script.count("settle"),
        2,
        "the call was repeated"
    );
    let calls = w.carecredit.script.calls("settle");
    assert_eq!(calls[0], calls[1], "with the same reference");
    assert_eq!(
        w.carecredit.purchases(),
        vec![Money::usd(80_000)],
        "charged once"
    );
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
}

#[tokio::test]
async fn a_lender_without_a_charge_api_gets_a_task_on_the_day_with_amount_and_reference() {
    // Arrange
    let w = World::new();
    let id = booked(&w, 5);
    w.carecredit.on_status(Answer::Approve);
    w.carecredit.settles_by_hand();
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.kind, TaskKind::Settlement);
    let reason = &tasks[0].task.reason;
    assert!(reason.contains("$800.00"), "{reason}");
    assert!(reason.contains(&format!("{id}-carecredit")), "{reason}");
    let day = (t0().date_naive() + chrono::Days::new(5)).to_string();
    assert!(reason.contains(&day), "{reason}");
    assert!(tasks[0].created_at.date_naive() >= t0().date_naive() + chrono::Days::new(5));
    assert!(w.carecredit.purchases().is_empty());
}

#[tokio::test]
async fn a_permanent_lender_failure_is_noted_and_becomes_a_task() {
    // Arrange
    let w = World::new();
    let id = booked(&w, 2);
    w.carecredit.on_status(Answer::Approve);
    w.carecredit.script.fail("settle", ErrorKind::Permanent, 1);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::WaitingOnStaff);
    assert!(matches!(
        state.settlement.as_ref().map(|s| &s.state),
        Some(SettlementState::Failed { .. })
    ));
    let notes = w.pms.notes_for(&id);
    assert!(notes.iter().any(|n| n.text.contains("FAILED")), "{notes:?}");
    let tasks = w.tasks(&runner).await;
    assert!(tasks.iter().any(|t| {
        t.task.kind == TaskKind::SystemError
            && t.task
                .reason
                .contains("CareCredit charge of $800.00 failed")
    }));
}
