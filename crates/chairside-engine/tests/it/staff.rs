//! `StaffActions` against `SqliteStore` on a temporary file: a decision is checked and recorded in
//! one transaction (queued event, resolved task, audit line), a wrong-state or stale decision is
//! refused and writes nothing, and two concurrent clicks apply once.

use std::sync::Arc;

use chairside_engine::staff::{Refusal, StaffActions, StaffError};
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::prelude::*;
use chairside_engine::store::{Consumed, NewWorkflow, SqliteStore};
use chairside_workflow::machine::Transition;
use chairside_workflow::{
    Event, StaffAction, StaffTask, Stage, Status, TaskKind, WorkflowId, WorkflowKey, WorkflowState,
};
use chrono::{DateTime, Utc};
use financing_core::{PatientId, PlanId, PracticeId};

use crate::harness::{KEY_HEX, LEASE, practice_id, raw_pool, t0};

fn mins(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::minutes(n)
}

struct Db {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<SqliteStore>,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, DataKey::parse(KEY_HEX).unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Db {
        _dir: dir,
        path,
        store: Arc::new(store),
    }
}

/// Records an accepted plan and, under a claim, commits it as `status`, raising `task` if given.
async fn workflow(db: &Db, status: Status, task: Option<StaffTask>) -> WorkflowId {
    let key = WorkflowKey {
        practice_id: practice_id(),
        plan_id: PlanId::new("tx-1"),
        revision: "1".into(),
    };
    let mut state = WorkflowState::new(key, PatientId::new("pat-1"), t0());
    let first = state.start();
    let id = db
        .store
        .record_poll(
            &practice_id(),
            "fakepms",
            "1",
            vec![NewWorkflow { state, first }],
            vec![],
            t0(),
        )
        .await
        .unwrap()
        .remove(0);
    let claim = db
        .store
        .claim_due("runner", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let mut state = db.store.load(&claim, t0()).await.unwrap().state;
    state.status = status;
    state.stage = Stage::Settled;
    state.staff_task.clone_from(&task);
    let transition = Transition {
        raise_task: task,
        ..Transition::default()
    };
    let consumed = Consumed::Command {
        seq: 1,
        attempt: 1,
        outcome: "test".into(),
    };
    db.store
        .commit(&claim, &state, consumed, "test", &transition, t0())
        .await
        .unwrap();
    db.store.release(&claim, t0()).await.unwrap();
    id
}

fn bad_data() -> StaffTask {
    StaffTask {
        kind: TaskKind::BadData,
        reason: "procedure 1 has insurance estimates above its fee".into(),
    }
}

/// Everything a staff decision writes: queued events, open tasks, audit lines.
#[derive(Debug, PartialEq, Eq)]
struct Written {
    inbox: Vec<Event>,
    open_tasks: usize,
    staff_audit: Vec<(String, String)>,
}

async fn written(db: &Db, id: &WorkflowId) -> Written {
    Written {
        inbox: db.store.inbox_events(id).await.unwrap(),
        open_tasks: db.store.tasks(None, false).await.unwrap().len(),
        staff_audit: db
            .store
            .audit(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.kind == "staff_action")
            .map(|a| (a.actor, a.detail))
            .collect(),
    }
}

#[tokio::test]
async fn retry_on_a_workflow_waiting_on_staff_is_queued_once() {
    // Arrange
    let db = db().await;
    let id = workflow(&db, Status::WaitingOnStaff, Some(bad_data())).await;
    let staff = StaffActions::new(&*db.store, "staff:alice");

    // Act
    let first = staff.retry(&id, mins(1)).await;
    let second = staff.retry(&id, mins(2)).await;

    // Assert
    let receipt = first.expect("the first retry applies");
    assert_eq!(receipt.action, StaffAction::Retry);
    assert_eq!(receipt.tasks_resolved, 1);
    assert!(
        matches!(
            second,
            Err(StaffError::Refused(Refusal::AlreadyQueued {
                queued: StaffAction::Retry,
                ..
            }))
        ),
        "{second:?}"
    );
    assert_eq!(
        written(&db, &id).await,
        Written {
            inbox: vec![Event::Staff {
                action: StaffAction::Retry
            }],
            open_tasks: 0,
            staff_audit: vec![("staff:alice".into(), "retry".into())],
        }
    );
    let resolved = db.store.tasks(None, true).await.unwrap();
    assert_eq!(resolved[0].resolved_at, Some(mins(1)));
}

#[tokio::test]
async fn retry_on_a_done_or_cancelled_workflow_is_refused_and_writes_nothing() {
    for status in [Status::Done, Status::Cancelled] {
        // Arrange
        let db = db().await;
        let id = workflow(&db, status, None).await;
        let before = written(&db, &id).await;
        let writes = db.store.counters().write_transactions;

        // Act
        let result = StaffActions::new(&*db.store, "cli")
            .retry(&id, mins(1))
            .await;

        // Assert
        let err = result.expect_err("a finished workflow cannot be retried");
        assert!(
            matches!(
                &err,
                StaffError::Refused(Refusal::NotWaitingOnStaff { status: s, .. }) if *s == status
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("only a workflow waiting on staff can take a retry"),
            "{err}"
        );
        assert_eq!(written(&db, &id).await, before);
        assert_eq!(db.store.counters().write_transactions, writes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_cancels_apply_once_and_refuse_the_other() {
    // Arrange
    let db = db().await;
    let id = workflow(&db, Status::WaitingOnStaff, Some(bad_data())).await;
    let (a, b) = (db.store.clone(), db.store.clone());
    let (ida, idb) = (id.clone(), id.clone());

    // Act: two tasks, so the two transactions really race.
    let one = tokio::spawn(async move {
        StaffActions::new(&*a, "staff:alice")
            .cancel(&ida, mins(1))
            .await
    });
    let two = tokio::spawn(async move {
        StaffActions::new(&*b, "staff:bob")
            .cancel(&idb, mins(1))
            .await
    });
    let results = [one.await.unwrap(), two.await.unwrap()];

    // Assert
    let applied = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(StaffError::Refused(Refusal::AlreadyQueued {
                    queued: StaffAction::Cancel,
                    ..
                }))
            )
        })
        .count();
    assert_eq!((applied, refused), (1, 1), "{results:?}");
    let after = written(&db, &id).await;
    assert_eq!(
        after.inbox,
        vec![Event::Staff {
            action: StaffAction::Cancel
        }]
    );
    assert_eq!(after.open_tasks, 0);
    assert_eq!(after.staff_audit.len(), 1);
}

#[tokio::test]
async fn a_failed_audit_write_rolls_back_the_queued_event_and_the_task() {
    // Arrange: the audit table refuses every new line, so the last write of the decision fails.
    let db = db().await;
    let id = workflow(&db, Status::WaitingOnStaff, Some(bad_data())).await;
    let before = written(&db, &id).await;
    let pool = raw_pool(&db.path).await;
    sqlx::query(
        "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    // Act
    let result = StaffActions::new(&*db.store, "cli")
        .retry(&id, mins(1))
        .await;

    // Assert: nothing half-written.
    assert!(matches!(result, Err(StaffError::Store(_))), "{result:?}");
    assert_eq!(written(&db, &id).await, before);
    assert_eq!(before.open_tasks, 1);
}

#[tokio::test]
async fn a_decision_on_a_task_no_longer_open_is_refused_as_stale() {
    // Arrange
    let db = db().await;
    let id = workflow(&db, Status::WaitingOnStaff, Some(bad_data())).await;
    let task = db.store.tasks(None, false).await.unwrap()[0].id;
    let staff = StaffActions::new(&*db.store, "staff:alice");

    // Act
    let stale = staff
        .act(
            staff
                .request(&id, StaffAction::MarkHandled)
                .answering(task + 1),
            mins(1),
        )
        .await;
    let current = staff
        .act(
            staff
                .request(&id, StaffAction::MarkHandled)
                .answering(task)
                .because("called the lab"),
            mins(2),
        )
        .await;

    // Assert
    assert!(
        matches!(stale, Err(StaffError::Refused(Refusal::StaleTask { task: t, .. })) if t == task + 1),
        "{stale:?}"
    );
    assert_eq!(current.expect("the open task").tasks_resolved, 1);
    assert_eq!(
        written(&db, &id).await.staff_audit,
        vec![(
            "staff:alice".into(),
            "mark_handled; reason: called the lab".into()
        )]
    );
}

#[tokio::test]
async fn another_practices_or_an_unknown_workflow_is_refused_as_unknown() {
    // Arrange
    let db = db().await;
    let id = workflow(&db, Status::WaitingOnStaff, Some(bad_data())).await;
    let staff = StaffActions::new(&*db.store, "staff:eve");

    // Act
    let theirs = staff
        .act(
            staff
                .request(&id, StaffAction::Cancel)
                .within(PracticeId::new("other")),
            mins(1),
        )
        .await;
    let unknown = staff.cancel(&WorkflowId::new("wf_nothing"), mins(1)).await;

    // Assert
    assert!(
        matches!(theirs, Err(StaffError::Refused(Refusal::UnknownWorkflow(ref w))) if w == &id),
        "{theirs:?}"
    );
    assert!(
        matches!(
            unknown,
            Err(StaffError::Refused(Refusal::UnknownWorkflow(_)))
        ),
        "{unknown:?}"
    );
    assert_eq!(written(&db, &id).await.open_tasks, 1);
}

#[tokio::test]
async fn a_payment_task_beside_a_finished_workflow_can_be_marked_handled_and_nothing_else_changes()
{
    // Arrange: a done workflow with a failed-payment task raised beside it.
    let db = db().await;
    let failed = StaffTask {
        kind: TaskKind::PaymentFailed,
        reason: "a scheduled payment failed; Stripe retries it, and the patient was told".into(),
    };
    let id = workflow(&db, Status::Done, Some(failed)).await;
    let actions = StaffActions::new(&*db.store, "staff:alice");

    // Act
    let retry = actions.retry(&id, mins(1)).await;
    let handled = actions
        .act(actions.request(&id, StaffAction::MarkHandled), mins(2))
        .await;

    // Assert: a retry is refused (no payment of the workflow failed: no pay link to issue),
    // marking handled closes the task with an audit row by the actor; a second click is refused
    // (the first is queued; once applied, no task is left to close).
    assert!(
        matches!(
            retry,
            Err(StaffError::Refused(Refusal::NoPayLink {
                why: chairside_workflow::PayLinkRefusal::NoFailedPayment,
                ..
            }))
        ),
        "{retry:?}"
    );
    let receipt = handled.expect("mark handled");
    assert_eq!(receipt.tasks_resolved, 1);
    let after = written(&db, &id).await;
    assert_eq!(after.open_tasks, 0);
    assert_eq!(after.staff_audit.len(), 1);
    assert_eq!(after.staff_audit[0].0, "staff:alice");
    let again = actions
        .act(actions.request(&id, StaffAction::MarkHandled), mins(3))
        .await;
    assert!(matches!(again, Err(StaffError::Refused(_))), "{again:?}");
}

#[tokio::test]
async fn resend_link_on_a_task_with_no_link_is_refused_instead_of_closing_the_task() {
    // Arrange: bad data waits on staff; there is no link to resend.
    let db = db().await;
    let id = workflow(&db, Status::WaitingOnStaff, Some(bad_data())).await;
    let before = written(&db, &id).await;
    let actions = StaffActions::new(&*db.store, "staff:alice");

    // Act
    let result = actions
        .act(actions.request(&id, StaffAction::ResendLink), mins(1))
        .await;

    // Assert: refused, and the task is still open.
    assert!(
        matches!(
            result,
            Err(StaffError::Refused(Refusal::NothingToResend { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(written(&db, &id).await, before);
}
