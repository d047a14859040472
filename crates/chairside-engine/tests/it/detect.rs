//! Detection (src/detect.rs): go-live from now and backfill, a bad record as a task and not an
//! outage, per-plan retries, checks before anyone is contacted, revisions that mean something
//! (touch, edit, reject, delete before, during and after financing), and health.

use std::time::Duration;

use chairside_engine::detect::{DetectConfig, GoLive};
use chairside_engine::ports::{MessageContent, UnreadableRecord};
use chairside_engine::runner::Runner;
use chairside_engine::store::prelude::*;
use chairside_workflow::{Status, TaskKind};
use financing_core::{ErrorKind, PatientContact, PlanId, TreatmentPlan};

use crate::fakes::Answer;
use crate::harness::{World, patient, plan, practice_id, t0};

/// A runner as a fresh install has it: go-live from now.
async fn fresh_runner(w: &World) -> Runner {
    w.runner("runner-1").await.with_detection(DetectConfig {
        go_live: GoLive::FromNow,
        ..DetectConfig::default()
    })
}

fn application_links(w: &World) -> usize {
    w.messenger
        .sent()
        .iter()
        .filter(|s| matches!(s.content, MessageContent::ApplicationLink { .. }))
        .count()
}

#[tokio::test]
async fn a_fresh_install_starts_from_now_and_backfill_starts_older_plans_on_purpose() {
    // Arrange: two plans accepted long before the install.
    let w = World::new();
    let old = w.accept(1, 150_000, 50_000);
    w.accept(2, 90_000, 10_000);
    w.carecredit.on_status(Answer::Approve);
    let runner = fresh_runner(&w).await;

    // Act: the install's first polls, then a patient accepts after go-live.
    runner.poll().await.unwrap();
    runner.poll().await.unwrap();
    let new = w.accept(3, 120_000, 20_000);
    w.settle(&runner).await;

    // Assert: only the plan accepted after go-live started; no old patient was contacted.
    assert!(runner.store().workflow(&old).await.unwrap().is_none());
    assert_eq!(w.row(&runner, &new).await.state.status, Status::Done);
    assert_eq!(
        w.store()
            .await
            .workflows(None, None, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(application_links(&w), 1);
    let health = runner.store().detection_health().await.unwrap();
    assert!(health[0].baseline_at.is_some());

    // Act: a dry run lists what a backfill would start (ids and dates only), then the backfill.
    let listed = runner
        .backfill(None, t0() - chrono::Duration::days(1), true)
        .await
        .unwrap();
    let mut ids: Vec<_> = listed.iter().map(|i| i.plan_id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["tx-1", "tx-2"]);
    assert!(
        runner.store().workflow(&old).await.unwrap().is_none(),
        "a dry run starts nothing"
    );
    let too_late = runner
        .backfill(None, t0() + chrono::Duration::days(1), true)
        .await
        .unwrap();
    assert!(
        too_late.is_empty(),
        "--since after every acceptance lists nothing"
    );
    let started = runner
        .backfill(None, t0() - chrono::Duration::days(1), false)
        .await
        .unwrap();
    assert_eq!(started.len(), 2);
    w.carecredit.on_status(Answer::Approve);
    w.carecredit.on_status(Answer::Approve);
    w.settle(&runner).await;

    // Assert: the backfilled plans ran; a second backfill finds nothing left to start.
    assert_eq!(w.row(&runner, &old).await.state.status, Status::Done);
    assert_eq!(application_links(&w), 3);
    assert!(
        runner
            .backfill(None, t0() - chrono::Duration::days(1), true)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_unreadable_record_is_one_task_per_version_and_the_good_plans_go_on() {
    // Arrange: the feed holds a record it cannot read beside a good plan.
    let w = World::new();
    w.pms.unreadable(UnreadableRecord {
        plan_id: Some(PlanId::new("tx-77")),
        marker: "2026-06-02T14:00:00".into(),
        field: "treatplan row 3, field DateTSigned: malformed date".into(),
    });
    let good = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;

    // Act: many polls see the bad record again.
    for _ in 0..5 {
        runner.poll().await.unwrap();
    }
    w.settle(&runner).await;

    // Assert: the good plan completed; one task names the plan and the field; health says so.
    assert_eq!(w.row(&runner, &good).await.state.status, Status::Done);
    let tasks = runner.store().detection_tasks(None, false).await.unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].task.plan_id, "tx-77");
    assert!(tasks[0].task.field.contains("DateTSigned"));
    let health = runner.store().detection_health().await.unwrap();
    assert_eq!(health[0].unreadable_records, 1);
    assert_eq!(health[0].consecutive_failures, 0);
    assert!(health[0].last_good_poll_at.is_some());

    // A new version of the same bad record is a new task; resolving closes it.
    w.pms.unreadable(UnreadableRecord {
        plan_id: Some(PlanId::new("tx-77")),
        marker: "2026-06-02T16:00:00".into(),
        field: "treatplan row 3, field DateTSigned: malformed date".into(),
    });
    runner.poll().await.unwrap();
    let tasks = runner.store().detection_tasks(None, false).await.unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(
        runner
            .store()
            .resolve_detection_task(&practice_id(), tasks[0].id, w.clock.now_utc())
            .await
            .unwrap()
    );
    assert_eq!(
        runner
            .store()
            .detection_tasks(None, false)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_plan_whose_details_fail_is_retried_with_backoff_without_holding_up_the_others() {
    // Arrange: the first plan's details fail once (an estimate endpoint down).
    let w = World::new();
    let slow = w.accept(1, 150_000, 50_000);
    let other = w.accept(2, 90_000, 10_000);
    w.carecredit.on_status(Answer::Approve);
    w.carecredit.on_status(Answer::Approve);
    w.pms.script.fail("plan", ErrorKind::TRANSIENT, 1);
    let runner = w.runner("runner-1").await;

    // Act
    runner.poll().await.unwrap();

    // Assert: the other plan started at once; the failing one waits for its retry.
    assert!(runner.store().workflow(&other).await.unwrap().is_some());
    assert!(runner.store().workflow(&slow).await.unwrap().is_none());
    assert_eq!(
        runner.store().detection_health().await.unwrap()[0].pending_plans,
        1
    );
    runner.poll().await.unwrap();
    assert!(
        runner.store().workflow(&slow).await.unwrap().is_none(),
        "not retried before its backoff"
    );

    // Act: past the backoff.
    w.clock.advance(Duration::from_secs(120));
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.row(&runner, &slow).await.state.status, Status::Done);
    assert_eq!(w.row(&runner, &other).await.state.status, Status::Done);
    assert_eq!(
        runner.store().detection_health().await.unwrap()[0].pending_plans,
        0
    );
}

#[tokio::test]
async fn a_plan_whose_details_keep_failing_becomes_a_task_after_the_bound() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.pms.script.fail("plan", ErrorKind::TRANSIENT, 1_000);
    let runner = w.runner("runner-1").await;

    // Act: poll through the retries.
    for _ in 0..20 {
        runner.poll().await.unwrap();
        w.clock.advance(Duration::from_secs(20 * 60));
    }

    // Assert: a bounded number of tries, then one task; nothing started.
    let tries = w.pms.script.count("plan");
    assert_eq!(tries, DetectConfig::default().retry.max_attempts as usize);
    let tasks = runner.store().detection_tasks(None, false).await.unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert!(tasks[0].task.problem.contains("failed to load"));
    assert!(runner.store().workflow(&id).await.unwrap().is_none());
    assert_eq!(
        runner.store().detection_health().await.unwrap()[0].pending_plans,
        0
    );
}

#[tokio::test]
async fn a_failing_feed_shows_in_the_health_and_recovers() {
    // Arrange
    let w = World::new();
    w.pms.script.fail("changed_plans", ErrorKind::TRANSIENT, 3);
    let runner = w.runner("runner-1").await;

    // Act
    for _ in 0..3 {
        runner.poll().await.unwrap();
    }

    // Assert
    let h = &runner.store().detection_health().await.unwrap()[0];
    assert_eq!(h.consecutive_failures, 3);
    assert!(h.last_good_poll_at.is_none());
    assert_eq!(h.last_failure.as_deref(), Some("transient"));
    runner.poll().await.unwrap();
    let h = &runner.store().detection_health().await.unwrap()[0];
    assert_eq!(h.consecutive_failures, 0);
    assert!(h.last_good_poll_at.is_some());
}

#[tokio::test]
async fn a_trillion_dollar_fee_is_a_task_and_no_lender_is_asked() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 100_000_000_000_000, 0);
    let good = w.accept(2, 90_000, 10_000);
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    assert!(runner.store().workflow(&id).await.unwrap().is_none());
    assert_eq!(w.row(&runner, &good).await.state.status, Status::Done);
    let tasks = runner.store().detection_tasks(None, false).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.plan_id, "tx-1");
    assert_eq!(tasks[0].task.field, "plan.procedures[0].fee");
    assert!(!format!("{tasks:?}").contains("100000000000000"));
    assert_eq!(w.carecredit.applications(), 1, "only the good plan");
}

async fn patient_goes_to_staff(answer: PatientContact, field: &str) {
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.pms.set_patient(&patient(1).id, answer);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::WaitingOnStaff);
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.kind, TaskKind::BadData);
    assert!(tasks[0].task.reason.contains(field), "{tasks:?}");
    assert_eq!(
        w.carecredit.script.total() + w.sunbit.script.total() + w.stripe.script.total(),
        0
    );
    assert!(w.messenger.sent().is_empty());
}

#[tokio::test]
async fn another_patient_returned_is_a_task_and_nobody_is_contacted() {
    patient_goes_to_staff(
        PatientContact {
            id: patient(2).id,
            ..patient(2)
        },
        "patient.id",
    )
    .await;
}

#[tokio::test]
async fn a_ten_thousand_character_name_is_a_task_and_nobody_is_contacted() {
    patient_goes_to_staff(
        PatientContact {
            first_name: "N".repeat(10_000),
            ..patient(1)
        },
        "patient.first_name",
    )
    .await;
}

#[tokio::test]
async fn control_characters_are_cleaned_before_the_patient_is_stored_or_messaged() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.pms.set_patient(
        &patient(1).id,
        PatientContact {
            first_name: "Tes\u{0}ta\r\nBcc: x@example.test".into(),
            ..patient(1)
        },
    );
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
    let stored = runner
        .store()
        .patient(&practice_id(), &patient(1).id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.first_name, "TestaBcc: x@example.test");
    assert!(stored.first_name.chars().all(|c| !c.is_control()));
}

fn touched(p: TreatmentPlan, marker: &str) -> TreatmentPlan {
    TreatmentPlan {
        revision: marker.into(),
        accepted_at: t0(),
        ..p
    }
}

#[tokio::test]
async fn a_touch_changes_nothing_before_during_or_after_financing() {
    // Arrange: the plan accepted, then touched before the first poll.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.accept_plan(touched(plan(1, 150_000, 50_000), "t1"), patient(1));
    let runner = w.runner("runner-1").await;

    // Act: detection, one step (the application link), a touch during financing.
    runner.poll().await.unwrap();
    runner.tick().await.unwrap();
    w.accept_plan(touched(plan(1, 150_000, 50_000), "t2"), patient(1));
    w.carecredit.on_status(Answer::Approve);
    w.settle(&runner).await;
    let messages = w.messenger.sent().len();
    // ... and after.
    w.accept_plan(touched(plan(1, 150_000, 50_000), "t3"), patient(1));
    w.settle(&runner).await;

    // Assert: one workflow, done, no second round of messages, no task.
    let rows = runner.store().workflows(None, None, 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state.id, id);
    assert_eq!(rows[0].state.status, Status::Done);
    assert_eq!(application_links(&w), 1);
    assert_eq!(w.messenger.sent().len(), messages);
    assert!(
        runner
            .store()
            .detection_tasks(None, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(w.tasks(&runner).await.is_empty());
}

#[tokio::test]
async fn an_edit_during_financing_withdraws_the_live_workflow_and_starts_the_new_revision() {
    // Arrange: detected, the application link sent, the lender still deciding.
    let w = World::new();
    let first = w.accept(1, 150_000, 50_000);
    let runner = w.runner("runner-1").await;
    runner.poll().await.unwrap();
    runner.tick().await.unwrap();

    // Act: the fee is edited.
    let second = w.accept_plan(touched(plan(1, 120_000, 50_000), "e1"), patient(1));
    w.carecredit.on_status(Answer::Approve);
    w.settle(&runner).await;

    // Assert
    assert_ne!(first, second);
    assert_eq!(w.row(&runner, &first).await.state.status, Status::Cancelled);
    assert_eq!(w.row(&runner, &second).await.state.status, Status::Done);
}

#[tokio::test]
async fn a_rejection_or_deletion_withdraws_the_live_workflow_whatever_its_revision() {
    // Arrange: plan 1 accepted, touched (a newer marker), in financing; plan 2 likewise.
    let w = World::new();
    let one = w.accept(1, 150_000, 50_000);
    let two = w.accept(2, 90_000, 10_000);
    let runner = w.runner("runner-1").await;
    runner.poll().await.unwrap();
    runner.tick().await.unwrap();
    w.accept_plan(touched(plan(1, 150_000, 50_000), "t9"), patient(1));
    runner.poll().await.unwrap();

    // Act: rejected under a marker no workflow carries; the other deleted.
    w.pms
        .reject(&PlanId::new("tx-1"), "2026-06-02T18:00:00Z", &patient(1).id);
    w.pms.delete(&PlanId::new("tx-2"), &patient(2).id);
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.row(&runner, &one).await.state.status, Status::Cancelled);
    assert_eq!(w.row(&runner, &two).await.state.status, Status::Cancelled);
}
