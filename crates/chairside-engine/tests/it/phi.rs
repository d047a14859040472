//! No PHI in logs or in clear at rest: a seeded patient's name, phone and email never reach the log
//! output, at any level, nor the database file outside the encrypted contact column.

use chairside_workflow::Status;
use financing_core::ErrorKind;

use crate::fakes::{Answer, Fault};
use crate::harness::{World, contains, database_bytes, logs, patient};

#[tokio::test]
async fn a_seeded_patient_never_appears_in_the_logs_or_in_clear_in_the_database() {
    // Arrange: the binary's log capture is on (every level, every test's runner).
    let w = World::new();
    let seeded = patient(42);
    let id = w.accept(42, 150_000, 50_000);
    // A failed poll, a retried Stripe call, a lost note response: the paths that log.
    w.pms.script.fail("changed_plans", ErrorKind::TRANSIENT, 1);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.stripe
        .script
        .fail("create_schedule", ErrorKind::TRANSIENT, 1);
    w.pms.script.fault(
        "write_note",
        Fault::FailAfterApplying(ErrorKind::Indeterminate),
        1,
    );
    let runner = w.runner("runner-phi").await;

    // Act
    assert_eq!(runner.poll().await.unwrap(), 0, "the first poll fails");
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
    let text = logs().text();
    assert!(text.contains("poll failed"), "the capture works");
    assert!(
        text.contains("accepted plans detected"),
        "the capture works"
    );
    assert!(
        text.contains("sqlx::query"),
        "the capture includes the store's statements"
    );
    let phone = seeded.mobile_phone.clone().unwrap();
    let email = seeded.email.clone().unwrap();
    let street = seeded.address.as_ref().unwrap().lines[0].clone();
    let phi = [
        seeded.first_name.as_str(),
        seeded.last_name.as_str(),
        phone.as_str(),
        &phone[2..],
        email.as_str(),
        street.as_str(),
        "Testville",
    ];
    let db = database_bytes(&w.path);
    for value in phi {
        assert!(!text.contains(value), "{value} reached the logs");
        assert!(!contains(&db, value), "{value} is stored in clear");
    }
}
