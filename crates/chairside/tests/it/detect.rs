//! A plan the practice system sends as garbage, the whole way over the sandbox: Dentrix Ascend
//! lists the accepted case with a status that is not text, so detection cannot read it and opens
//! a staff task before any workflow exists. The practice's staff mailbox (the sandbox's SMTP) gets
//! one alert saying what happened and what to do, and no second one while the poller lists the
//! same record again and again.

use std::time::{Duration, Instant};

use chairside::demo::world::{PRACTICES, World, WorldOptions};
use sandbox::Persona;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_plan_from_the_practice_system_is_one_alert_email_to_the_staff_not_two_after_re_polls()
 {
    // Arrange: a Dentrix Ascend practice with staff alerts on; its accepted case listed with a
    // status of the wrong type.
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut world = World::start(
        dir.path(),
        WorldOptions {
            staff_alerts: true,
            ..WorldOptions::default()
        },
    )
    .await
    .expect("the world starts");
    let spec = &PRACTICES[0];
    assert_eq!(spec.pms, sandbox::Pms::Dentrix);
    world.seed(spec, Persona::InstantApproval).expect("seeded");
    let case = world.cases[0].seeded.clone();
    world
        .sandbox
        .override_listed_plan(case.plan.key, "status", serde_json::json!(42))
        .expect("the listing is tampered with");
    let staff = format!("staff@{}.example", spec.id);

    // Act: the runner's loops poll every 100 ms; wait for the alert, then keep polling. The
    // subscribers' cursors started when the world was built, so the polls start at once.
    let running = world.run();
    let started = Instant::now();
    while world.sandbox.smtp().messages_to(&staff).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no staff alert within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let polls_after = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    running.stop().await.expect("the loops stop");

    // Assert: one task, no workflow, and one alert email, however many polls saw the record.
    let practice = &world.cases[0].practice;
    let tasks = world
        .store
        .detection_tasks(Some(practice), false)
        .await
        .expect("tasks");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].task.plan_id, case.plan.pms_id);
    assert!(
        world
            .store
            .workflows(Some(practice), None, 100)
            .await
            .expect("workflows")
            .is_empty(),
        "an unreadable plan starts nothing"
    );
    let mails = world.sandbox.smtp().messages_to(&staff);
    assert_eq!(
        mails.len(),
        1,
        "one alert, not one per poll ({:?} of polls after it): {mails:?}",
        polls_after.elapsed()
    );
    let mail = &mails[0];
    for part in [
        format!("plan {} (unreadable record, dentrix", case.plan.pms_id),
        "Open the plan in the practice system".to_owned(),
        "staff#detection".to_owned(),
    ] {
        assert!(mail.text.contains(&part), "`{part}` missing: {}", mail.text);
    }
    assert!(
        !mail.raw.contains("Testpatient"),
        "no patient name in the alert (the sandbox's patients are all `Testpatient{{n}}`)"
    );
    world.stop().await;
}
