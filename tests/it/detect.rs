//! Detection over real HTTP against the stand-ins: hostile Open Dental, Dentrix Ascend and
//! NexHealth records beside good plans (each bad one a task naming it, the good ones complete),
//! and Dentrix Ascend and NexHealth plans touched, edited and rejected before, during and after
//! financing.

use std::time::Duration;

use chairside::demo::world::{Case, PRACTICES, World, WorldOptions};
use chairside_workflow::{Status, TaskKind, WorkflowState};
use financing_core::Money;
use sandbox::{Persona, ProcTpsAnswer};
use serde_json::json;

async fn start() -> (tempfile::TempDir, World) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let world = World::start(dir.path(), WorldOptions::default())
        .await
        .expect("world starts");
    (dir, world)
}

fn last(world: &World) -> Case {
    world.cases.last().expect("a case").clone()
}

async fn workflow(world: &World, case: &Case) -> Option<WorkflowState> {
    world.workflow_of(case).await.expect("store")
}

/// Polls and ticks until `done` holds or `rounds` pass.
async fn turn_until(world: &World, rounds: usize, done: impl AsyncFn(&World) -> bool) {
    for _ in 0..rounds {
        world.runner.poll().await.expect("poll");
        world.runner.tick().await.expect("tick");
        if done(world).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn hostile_open_dental_records_become_tasks_and_the_good_plans_beside_them_complete() {
    // Arrange: at the Open Dental practice, two good plans and one plan per kind of bad record.
    let (_dir, mut world) = start().await;
    let od = &PRACTICES[1];
    let seed = |world: &mut World| {
        world.seed(od, Persona::InstantApproval).expect("seed");
        last(world)
    };
    let good = [seed(&mut world), seed(&mut world)];
    let five_decimals = seed(&mut world);
    let formatted = seed(&mut world);
    let other_date = seed(&mut world);
    let odd_bool = seed(&mut world);
    let truncated = seed(&mut world);
    let failing = seed(&mut world);
    let trillion = seed(&mut world);
    let wrong_patient = seed(&mut world);
    let long_name = seed(&mut world);
    let control = seed(&mut world);
    let duplicate = seed(&mut world);
    let sb = &world.sandbox;
    let plan = |c: &Case| c.seeded.plan.key;
    sb.od_override_procedures(plan(&five_decimals), "FeeAmt", json!("1300.00001"))
        .unwrap();
    sb.od_override_procedures(plan(&formatted), "FeeAmt", json!("$1,300.00"))
        .unwrap();
    sb.od_override_plan(
        plan(&other_date),
        "DateTSigned",
        json!("06/02/2026 10:00 AM"),
    )
    .unwrap();
    sb.od_override_plan(plan(&odd_bool), "isSigned", json!("yes"))
        .unwrap();
    sb.od_extra_plan_row(serde_json::Value::Null);
    sb.od_answer_procedures(plan(&truncated), ProcTpsAnswer::Truncated)
        .unwrap();
    sb.od_answer_procedures(plan(&failing), ProcTpsAnswer::Status(500))
        .unwrap();
    sb.od_override_procedures(plan(&trillion), "FeeAmt", json!("1000000000000.00"))
        .unwrap();
    sb.od_override_patient(
        wrong_patient.seeded.patient.key,
        "PatNum",
        json!(good[0].seeded.patient.pms_id.parse::<u64>().unwrap()),
    )
    .unwrap();
    sb.od_override_patient(
        long_name.seeded.patient.key,
        "FName",
        json!("N".repeat(10_000)),
    )
    .unwrap();
    sb.od_override_patient(
        control.seeded.patient.key,
        "LName",
        json!("Exam\u{0}ple\r\nBcc: someone@example.test"),
    )
    .unwrap();
    // Another patient's plan served under the first good plan's number... of a third plan.
    let duplicate_of = seed(&mut world);
    world
        .sandbox
        .od_override_plan(
            plan(&duplicate),
            "TreatPlanNum",
            json!(duplicate_of.seeded.plan.pms_id.parse::<u64>().unwrap()),
        )
        .unwrap();

    // Act (the plan whose estimates keep failing never settles: the drive ends at its deadline)
    world.drive(Duration::from_secs(30)).await.expect("drive");

    // Assert: the good plans and the one with control characters completed.
    for case in good.iter().chain([&control]) {
        let state = workflow(&world, case).await.expect("started");
        assert_eq!(state.status, Status::Done, "{}", case.seeded.plan.pms_id);
    }
    let practice = financing_core::PracticeId::new(od.id);
    let stored = world
        .store
        .patient(
            &practice,
            &financing_core::PatientId::new(&control.seeded.patient.pms_id),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(stored.last_name.chars().all(|c| !c.is_control()), "cleaned");

    // Each bad plan is a detection task naming the plan and the field, and was never started.
    let tasks = world
        .store
        .detection_tasks(Some(&practice), false)
        .await
        .unwrap();
    let task_for = |c: &Case| {
        tasks
            .iter()
            .find(|t| t.task.plan_id == c.seeded.plan.pms_id)
            .unwrap_or_else(|| panic!("no task for plan {}: {tasks:#?}", c.seeded.plan.pms_id))
            .task
            .field
            .clone()
    };
    for (case, field) in [
        (&five_decimals, "FeeAmt"),
        (&formatted, "FeeAmt"),
        (&other_date, "DateTSigned"),
        (&odd_bool, "isSigned"),
        (&truncated, "proctp"),
        (&trillion, "plan.procedures[0].fee"),
        (&duplicate_of, "proctp"),
    ] {
        let named = task_for(case);
        assert!(
            named.contains(field),
            "plan {}: {named}",
            case.seeded.plan.pms_id
        );
        assert!(
            !named.contains("1300.00001") && !named.contains("$1,300"),
            "{named}"
        );
        assert!(
            workflow(&world, case).await.is_none(),
            "{} started",
            case.seeded.plan.pms_id
        );
    }
    assert!(
        tasks
            .iter()
            .any(|t| t.task.plan_id.starts_with("(unreadable id")),
        "the null row is a task too: {tasks:#?}"
    );
    // The failing estimate endpoint is retried with backoff, holding up nobody.
    assert!(workflow(&world, &failing).await.is_none());
    let health = world.store.detection_health().await.unwrap();
    let od_health = health
        .iter()
        .find(|h| h.practice_id == practice)
        .expect("health");
    assert_eq!(od_health.consecutive_failures, 0);
    assert!(od_health.pending_plans >= 1, "{od_health:?}");
    // The patient checks: a workflow task naming the field, nobody contacted.
    for (case, field) in [
        (&wrong_patient, "patient.id"),
        (&long_name, "patient.first_name"),
    ] {
        let state = workflow(&world, case).await.expect("started");
        assert_eq!(state.status, Status::WaitingOnStaff);
        let task = world
            .store
            .tasks(Some(&practice), false)
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.workflow_id == state.id)
            .expect("a task");
        assert_eq!(task.task.kind, TaskKind::BadData);
        assert!(task.task.reason.contains(field), "{}", task.task.reason);
        assert!(!task.task.reason.contains("NNNN"));
    }
    world.stop().await;
}

/// Dentrix Ascend (`txcases`) and NexHealth (`treatment_plans`) listings with bad records beside
/// good plans: each listing is read record by record, so every bad record is a detection task
/// naming the plan and the field (never the value), and the good plans complete.
#[tokio::test]
async fn hostile_ascend_and_nexhealth_records_become_tasks_and_the_good_plans_beside_them_complete()
{
    // (practice, the listing's time field, its procedure-list field)
    for (spec, time_field, list_field) in [
        (&PRACTICES[0], "lastModified", "procedures"),
        (&PRACTICES[2], "updated_at", "procedures"),
    ] {
        // Arrange: two good plans and one per kind of bad record.
        let (_dir, mut world) = start().await;
        let seed = |world: &mut World| {
            world.seed(spec, Persona::InstantApproval).expect("seed");
            last(world)
        };
        let good = [seed(&mut world), seed(&mut world)];
        let odd_status = seed(&mut world);
        let bad_time = seed(&mut world);
        let bad_list = seed(&mut world);
        let sb = &world.sandbox;
        let plan = |c: &Case| c.seeded.plan.key;
        sb.override_listed_plan(plan(&odd_status), "status", json!(7))
            .unwrap();
        sb.override_listed_plan(plan(&bad_time), time_field, json!(["Jane Doe"]))
            .unwrap();
        sb.override_listed_plan(plan(&bad_list), list_field, json!("Jane Doe"))
            .unwrap();
        sb.extra_listed_plan_row(spec.pms, serde_json::Value::Null);

        // Act
        world.drive(Duration::from_secs(30)).await.expect("drive");

        // Assert: the good plans completed.
        for case in &good {
            let state = workflow(&world, case).await.expect("started");
            assert_eq!(
                state.status,
                Status::Done,
                "{}: {}",
                spec.id,
                case.seeded.plan.pms_id
            );
        }
        // Each bad plan is a task naming the plan and the field, and was never started.
        let practice = financing_core::PracticeId::new(spec.id);
        let tasks = world
            .store
            .detection_tasks(Some(&practice), false)
            .await
            .unwrap();
        for (case, field) in [
            (&odd_status, "status"),
            (&bad_time, time_field),
            (&bad_list, list_field),
        ] {
            let task = tasks
                .iter()
                .find(|t| t.task.plan_id == case.seeded.plan.pms_id)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no task for plan {}: {tasks:#?}",
                        spec.id, case.seeded.plan.pms_id
                    )
                });
            assert!(
                task.task.field.contains(field),
                "{}: plan {}: {}",
                spec.id,
                case.seeded.plan.pms_id,
                task.task.field
            );
            assert!(
                !format!("{task:?}").contains("Jane"),
                "no value in the task: {task:?}"
            );
            assert!(
                workflow(&world, case).await.is_none(),
                "{}: {} started",
                spec.id,
                case.seeded.plan.pms_id
            );
        }
        assert!(
            tasks
                .iter()
                .any(|t| t.task.plan_id.starts_with("(unreadable id")),
            "{}: the null row is a task too: {tasks:#?}",
            spec.id
        );
        let health = world.store.detection_health().await.unwrap();
        let h = health
            .iter()
            .find(|h| h.practice_id == practice)
            .expect("health");
        assert_eq!(h.consecutive_failures, 0, "{}: {h:?}", spec.id);
        assert!(h.unreadable_records >= 4, "{}: {h:?}", spec.id);
        world.stop().await;
    }
}

#[tokio::test]
async fn dentrix_and_nexhealth_touch_edit_and_reject_during_and_after_financing() {
    for spec in [&PRACTICES[0], &PRACTICES[2]] {
        let (_dir, mut world) = start().await;
        // During financing: the patient never finishes the lender's application.
        world.seed(spec, Persona::NeverCompletes).unwrap();
        let during = last(&world);
        turn_until(&world, 200, async |w| {
            workflow(w, &during)
                .await
                .is_some_and(|s| !s.attempts.is_empty())
        })
        .await;
        let first = workflow(&world, &during).await.expect("started");

        // A touch during financing changes nothing.
        world.sandbox.touch_plan(during.seeded.plan.key).unwrap();
        turn_until(&world, 5, async |_| false).await;
        let again = workflow(&world, &during).await.unwrap();
        assert_eq!(
            again.id, first.id,
            "{}: a touch started a new workflow",
            spec.id
        );
        assert_ne!(again.status, Status::Cancelled);

        // An edit during financing withdraws it and starts the new revision.
        world
            .sandbox
            .edit_plan_fee(during.seeded.plan.key, 0, Money::usd(120_000))
            .unwrap();
        turn_until(&world, 200, async |w| {
            workflow(w, &during).await.is_some_and(|s| s.id != first.id)
        })
        .await;
        let edited = workflow(&world, &during).await.unwrap();
        assert_ne!(
            edited.id, first.id,
            "{}: the edit started no new revision",
            spec.id
        );
        let old = world.store.workflow(&first.id).await.unwrap().unwrap();
        turn_until(&world, 50, async |w| {
            w.store
                .workflow(&first.id)
                .await
                .unwrap()
                .is_some_and(|r| r.state.status == Status::Cancelled)
        })
        .await;
        assert_eq!(
            world
                .store
                .workflow(&first.id)
                .await
                .unwrap()
                .unwrap()
                .state
                .status,
            Status::Cancelled,
            "{}: {:?}",
            spec.id,
            old.state.status
        );

        // A rejection reaches the live revision.
        world
            .sandbox
            .set_plan_status(during.seeded.plan.key, sandbox::PlanStatus::Rejected)
            .unwrap();
        turn_until(&world, 200, async |w| {
            workflow(w, &during)
                .await
                .is_some_and(|s| s.status == Status::Cancelled)
        })
        .await;
        assert_eq!(
            workflow(&world, &during).await.unwrap().status,
            Status::Cancelled
        );

        // After financing: a touch changes nothing; an edit is a staff task, nothing torn down.
        world.seed(spec, Persona::InstantApproval).unwrap();
        let after = last(&world);
        turn_until(&world, 400, async |w| {
            workflow(w, &after)
                .await
                .is_some_and(|s| s.status == Status::Done)
        })
        .await;
        let done = workflow(&world, &after).await.expect("started");
        assert_eq!(done.status, Status::Done, "{}", spec.id);
        world.sandbox.touch_plan(after.seeded.plan.key).unwrap();
        turn_until(&world, 5, async |_| false).await;
        world
            .sandbox
            .edit_plan_fee(after.seeded.plan.key, 0, Money::usd(110_000))
            .unwrap();
        turn_until(&world, 5, async |_| false).await;
        let still = workflow(&world, &after).await.unwrap();
        assert_eq!(still.id, done.id, "{}", spec.id);
        assert_eq!(still.status, Status::Done, "{}", spec.id);
        let practice = financing_core::PracticeId::new(spec.id);
        let tasks = world
            .store
            .detection_tasks(Some(&practice), false)
            .await
            .unwrap();
        assert!(
            tasks
                .iter()
                .any(|t| t.task.plan_id == after.seeded.plan.pms_id
                    && t.task.problem.contains("after financing was completed")),
            "{}: {tasks:#?}",
            spec.id
        );
        world.stop().await;
    }
}

#[tokio::test]
async fn dentrix_and_nexhealth_touch_edit_and_reject_before_financing() {
    for spec in [&PRACTICES[0], &PRACTICES[2]] {
        let (_dir, mut world) = start().await;

        // Seen, not yet financed: one poll records the workflow; no lender has been asked.
        world.seed(spec, Persona::NeverCompletes).unwrap();
        let seen = last(&world);
        world.runner.poll().await.expect("poll");
        let first = workflow(&world, &seen).await.expect("detected");
        assert!(first.attempts.is_empty(), "{}: {first:?}", spec.id);

        // A touch before financing changes nothing.
        world.sandbox.touch_plan(seen.seeded.plan.key).unwrap();
        world.runner.poll().await.expect("poll");
        assert_eq!(
            workflow(&world, &seen).await.unwrap().id,
            first.id,
            "{}: a touch started a new workflow",
            spec.id
        );

        // An edit before any lender was asked withdraws the seen revision (no lender ever
        // asked for it) and starts the new one.
        world
            .sandbox
            // A fee no persona is seeded with, so the plan really changes.
            .edit_plan_fee(seen.seeded.plan.key, 0, Money::usd(123_456))
            .unwrap();
        turn_until(&world, 200, async |w| {
            workflow(w, &seen)
                .await
                .is_some_and(|s| s.id != first.id && !s.attempts.is_empty())
        })
        .await;
        let edited = workflow(&world, &seen).await.unwrap();
        assert_ne!(
            edited.id, first.id,
            "{}: the edit started no new revision",
            spec.id
        );
        assert!(!edited.attempts.is_empty(), "{}: {edited:?}", spec.id);
        let old = world
            .store
            .workflow(&first.id)
            .await
            .unwrap()
            .unwrap()
            .state;
        assert_eq!(old.status, Status::Cancelled, "{}: {old:?}", spec.id);
        assert!(
            old.attempts.is_empty(),
            "{}: the withdrawn revision reached a lender: {:?}",
            spec.id,
            old.attempts
        );

        // A plan rejected before Chairside first sees it starts nothing.
        world.seed(spec, Persona::InstantApproval).unwrap();
        let rejected = last(&world);
        world
            .sandbox
            .set_plan_status(rejected.seeded.plan.key, sandbox::PlanStatus::Rejected)
            .unwrap();
        turn_until(&world, 30, async |_| false).await;
        assert!(
            workflow(&world, &rejected).await.is_none(),
            "{}: a plan rejected before detection started a workflow",
            spec.id
        );
        world.stop().await;
    }
}

#[tokio::test]
async fn backfill_dry_run_lists_ids_and_dates_and_starts_nothing_then_starts_them() {
    // Arrange: a plan accepted after go-live but not yet polled.
    let (_dir, mut world) = start().await;
    world.seed(&PRACTICES[2], Persona::InstantApproval).unwrap();
    let case = last(&world);
    let since = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();

    // Act
    let mut out = Vec::new();
    let code = chairside::cli::backfill_with(&world.runner, None, since, true, &mut out)
        .await
        .unwrap();

    // Assert: ids and a date, nothing started.
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0);
    assert!(
        text.contains(&format!(
            "empire-dental\tplan {}\tpatient {}\taccepted ",
            case.seeded.plan.pms_id, case.seeded.patient.pms_id
        )),
        "{text}"
    );
    assert!(text.ends_with("would start 1 plan\n"), "{text}");
    assert!(workflow(&world, &case).await.is_none());

    // Act: for real.
    let mut out = Vec::new();
    chairside::cli::backfill_with(&world.runner, None, since, false, &mut out)
        .await
        .unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .ends_with("started 1 plan\n")
    );
    assert!(workflow(&world, &case).await.is_some());
    world.stop().await;
}
