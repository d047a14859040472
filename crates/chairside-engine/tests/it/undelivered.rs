//! A lender's link that could not be sent and a lender that does not answer a status read, run
//! over the fakes: the application stays open, its decision is taken, and staff get one task
//! they can close without stopping the financing.

use std::time::Duration;

use chairside_engine::ports::MessageContent;
use chairside_engine::staff::{Refusal, StaffActions, StaffError};
use chairside_workflow::{LenderPhase, StaffAction, Stage, Status, TaskKind};
use financing_core::{Backoff, ErrorKind};

use crate::fakes::Answer;
use crate::harness::{World, patient, raw_pool};

/// A runner whose retries come due at once, so `run_until_idle` gives up on a call without the
/// clock moving (and without the lender's poll or reminder timers coming due).
async fn runner_retrying_at_once(w: &World) -> chairside_engine::runner::Runner {
    w.runner_tuned("runner-1", vec![w.runtime()], |c| {
        c.backoff = Backoff {
            base: Duration::ZERO,
            cap: Duration::ZERO,
            max_attempts: 3,
        };
    })
    .await
}

fn awaiting_carecredit(stage: &Stage) -> bool {
    matches!(stage, Stage::Financing(c)
        if c.lender.as_str() == "carecredit" && matches!(c.phase, LenderPhase::AwaitingPatient { .. }))
}

async fn assert_financed_by_carecredit(
    w: &World,
    runner: &chairside_engine::runner::Runner,
    id: &chairside_workflow::WorkflowId,
) {
    let state = w.row(runner, id).await.state;
    assert_eq!(state.status, Status::Done);
    assert_eq!(
        state.result.map(|r| r.path),
        Some("carecredit approved".to_owned())
    );
}

#[tokio::test]
async fn an_unsent_link_is_a_task_beside_the_open_application_whose_approval_is_taken() {
    // Arrange: every try of the application link's send fails.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.messenger.script.fail("send", ErrorKind::TRANSIENT, 3);
    let runner = runner_retrying_at_once(&w).await;

    // Act
    runner.run_until_idle(100).await.unwrap();

    // Assert: one unreachable task naming the lender; the workflow still active, CareCredit's
    // application open (not cancelled), no ledger note.
    let row = w.row(&runner, &id).await;
    assert_eq!(row.state.status, Status::Active);
    assert!(
        awaiting_carecredit(&row.state.stage),
        "{:?}",
        row.state.stage
    );
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].task.kind, TaskKind::Unreachable);
    assert!(
        tasks[0].task.reason.contains("CareCredit"),
        "{}",
        tasks[0].task.reason
    );
    assert_eq!(w.carecredit.script.count("cancel_application"), 0);
    assert!(w.pms.notes().is_empty());

    // Staff handed the link over at the desk: Retry is refused (nothing is waiting on staff),
    // marking the task handled closes it and queues nothing for the runner.
    let staff = StaffActions::new(&**runner.store(), "staff:alice");
    let retry = staff.retry(&id, w.clock.now_utc()).await;
    assert!(
        matches!(
            retry,
            Err(StaffError::Refused(Refusal::NotWaitingOnStaff { .. }))
        ),
        "{retry:?}"
    );
    let handled = staff
        .act(
            staff
                .request(&id, StaffAction::MarkHandled)
                .answering(tasks[0].id),
            w.clock.now_utc(),
        )
        .await
        .expect("the task is closed");
    assert_eq!(handled.tasks_resolved, 1);
    assert!(w.tasks(&runner).await.is_empty());
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE workflow_id = ?")
        .bind(id.as_str())
        .fetch_one(&raw_pool(&w.path).await)
        .await
        .unwrap();
    assert_eq!(queued, 0, "nothing queued for the runner");

    // The patient applied anyway: CareCredit's approval is read and the chain runs to its end.
    w.carecredit.on_status(Answer::Approve);
    w.settle(&runner).await;
    assert_financed_by_carecredit(&w, &runner, &id).await;
    assert_eq!(w.pms.notes().len(), 1, "one ledger note");
    let sent = w.messenger.sent_to(&patient(1).id);
    assert!(
        sent.iter()
            .any(|s| matches!(s.content, MessageContent::FinancingSummary(_))),
        "the summary went out"
    );
}

#[tokio::test]
async fn a_status_read_that_gets_no_answer_is_read_again_and_the_lender_is_not_given_up() {
    // Arrange: the application is open and its link went out.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    let runner = runner_retrying_at_once(&w).await;
    runner.run_until_idle(100).await.unwrap();
    assert!(awaiting_carecredit(&w.row(&runner, &id).await.state.stage));
    // Every try of the next status read fails, then CareCredit approves.
    w.carecredit
        .script
        .fail("application_status", ErrorKind::TRANSIENT, 3);
    w.carecredit.on_status(Answer::Approve);

    // Act
    w.settle(&runner).await;

    // Assert: CareCredit was read again after the unanswered read and its approval taken; Sunbit
    // was never asked; no task.
    assert_financed_by_carecredit(&w, &runner, &id).await;
    assert_eq!(w.carecredit.script.count("application_status"), 4);
    assert_eq!(w.sunbit.script.total(), 0);
    assert!(w.tasks_besides_settlement(&runner).await.is_empty());
    let audit = runner.store().audit(&id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.kind == "lender_unanswered" && a.detail.contains("stays open")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_link_whose_email_went_out_while_its_text_kept_failing_is_sent_not_a_task() {
    // Arrange: every try fails (the text), but the email went out on the first.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.messenger.script.fail("send", ErrorKind::TRANSIENT, 3);
    w.messenger
        .email_went_out
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let runner = runner_retrying_at_once(&w).await;

    // Act
    runner.run_until_idle(100).await.unwrap();

    // Assert: no task; the link is on record as sent and the application open.
    let row = w.row(&runner, &id).await;
    assert!(w.tasks(&runner).await.is_empty());
    assert_eq!(row.state.status, Status::Active);
    assert!(awaiting_carecredit(&row.state.stage));
    let audit = runner.store().audit(&id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.kind == "message_sent" && a.detail.contains("application_link sent")),
        "{audit:?}"
    );
    assert!(!audit.iter().any(|a| a.kind == "message_undeliverable"));
}
