//! Staff alerts end to end: a task the runner raises goes through the outbox to the practice's
//! staff mailbox on the sandbox's SMTP stand-in, once, with the practice's name and a dashboard
//! link, and without the patient's name, phone or email; tasks raised together are one digest
//! email listing them all (the demo's digest window is one second).

use std::time::Duration;

use chairside::demo::world::{PRACTICES, World, WorldOptions};
use sandbox::{EmailRecord, Persona};

/// Waits (30 s at most) until the mailbox holds `count` messages, then a moment more so that a
/// duplicate would show. Generous: with the whole suite running beside it on two CPUs, 10 s were
/// once not enough (the digest then also waited out a 5 s retry backoff past its 1 s window, which
/// it no longer does).
async fn mailbox(world: &World, address: &str, count: usize) -> Vec<EmailRecord> {
    for _ in 0..300 {
        if world.sandbox.smtp().messages_to(address).len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.sandbox.smtp().messages_to(address)
}

/// Nothing of a seeded patient: their family names (`Testpatient{n}`), emails
/// (`…@example.test`) and phones (the fictional `55501xx`/`55502xx` ranges).
fn assert_no_patient_data(mail: &EmailRecord) {
    let all = format!(
        "{}\n{}\n{}",
        mail.subject.as_deref().unwrap_or_default(),
        mail.text,
        mail.html.as_deref().unwrap_or_default()
    );
    for needle in ["Testpatient", "example.test", "55501", "55502"] {
        assert!(!all.contains(needle), "{needle} in the alert: {all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_raised_by_the_runner_reaches_the_staff_mailbox_once_without_patient_data() {
    // Arrange: a patient who never finishes the application becomes a "patient quiet" task.
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = WorldOptions {
        staff_alerts: true,
        ..WorldOptions::default()
    };
    let mut world = World::start(dir.path(), options)
        .await
        .expect("world starts");
    let practice = &PRACTICES[0];
    world.seed(practice, Persona::NeverCompletes).expect("seed");
    let staff = format!("staff@{}.example", practice.id);

    // Act
    let settled = world.drive(Duration::from_secs(90)).await.expect("driving");
    let mails = mailbox(&world, &staff, 1).await;

    // Assert
    assert!(settled);
    assert_eq!(mails.len(), 1, "one alert for the one task: {mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, vec![staff.clone()]);
    let subject = mail.subject.as_deref().unwrap_or_default();
    assert!(
        subject.contains(practice.name) && subject.contains("needs attention"),
        "{subject}"
    );
    assert!(mail.text.contains("staff/workflows/wf_"), "{}", mail.text);
    assert!(mail.text.contains("patient quiet"), "{}", mail.text);
    assert_no_patient_data(mail);
    // Other practices' mailboxes heard nothing.
    for other in &PRACTICES[1..] {
        let theirs = world
            .sandbox
            .smtp()
            .messages_to(&format!("staff@{}.example", other.id));
        assert!(theirs.is_empty(), "{}", other.id);
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_raised_together_reach_the_staff_mailbox_as_one_digest() {
    // Arrange: three plans whose insurance exceeds the fee, detected in one poll: three bad-data
    // tasks at once.
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = WorldOptions {
        staff_alerts: true,
        ..WorldOptions::default()
    };
    let mut world = World::start(dir.path(), options)
        .await
        .expect("world starts");
    let practice = &PRACTICES[0];
    for _ in 0..3 {
        world
            .seed(practice, Persona::InsuranceAboveFee)
            .expect("seed");
    }
    let staff = format!("staff@{}.example", practice.id);

    // Act
    let settled = world.drive(Duration::from_secs(90)).await.expect("driving");
    let mails = mailbox(&world, &staff, 1).await;

    // Assert
    assert!(settled);
    assert_eq!(mails.len(), 1, "one digest for the three tasks: {mails:?}");
    let mail = &mails[0];
    let subject = mail.subject.as_deref().unwrap_or_default();
    assert!(
        subject.contains(practice.name) && subject.contains("3 patients need attention"),
        "{subject}"
    );
    assert_eq!(mail.text.matches("(bad data)").count(), 3, "{}", mail.text);
    assert_eq!(
        mail.text.matches("staff/workflows/wf_").count(),
        3,
        "{}",
        mail.text
    );
    assert_no_patient_data(mail);
    world.stop().await;
}
