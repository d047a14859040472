//! A lender's link that could not be sent, and a lender that does not answer a status read: the
//! application at the lender stays open and its decision is taken as usual.

use super::*;

fn link_undeliverable(id: &str) -> Event {
    Event::MessageUndeliverable {
        message: MessageKind::ApplicationLink {
            lender: lender(id),
            link: format!("https://{id}.test/apply/1"),
        },
        reason: "gave up after 6 attempts: create message: HTTP 503".into(),
    }
}

fn awaiting(run: &Run, id: &str) -> bool {
    matches!(&run.state.stage, Stage::Financing(c)
        if c.lender == lender(id) && matches!(c.phase, LenderPhase::AwaitingPatient { .. }))
}

#[test]
fn an_undelivered_link_raises_one_task_beside_the_open_application_and_its_approval_is_taken() {
    // Arrange: CareCredit's application is open, its link goes out.
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));

    // Act: the link could not be sent.
    let t = run.on(link_undeliverable("carecredit"));

    // Assert: one task for staff naming the lender and the failure; nothing cancelled, no note,
    // the workflow still active and waiting on the patient.
    let task = t.raise_task.clone().expect("a task for staff");
    assert_eq!(task.kind, TaskKind::Unreachable);
    assert!(task.reason.contains("CareCredit"), "{}", task.reason);
    assert!(task.reason.contains("HTTP 503"), "{}", task.reason);
    assert!(task.reason.contains("stays open"), "{}", task.reason);
    assert!(actions(&t).is_empty(), "{:?}", actions(&t));
    assert!(t.clear_timers.is_empty(), "{:?}", t.clear_timers);
    assert_eq!(run.state.status, Status::Active);
    assert!(awaiting(&run, "carecredit"));

    // A reminder that cannot be sent either raises no second task.
    let t = run.on(Event::TimerFired {
        timer: TimerKind::Reminder,
    });
    let Some(Action::SendMessage { message }) = actions(&t).first().copied().cloned() else {
        panic!("a reminder goes out: {:?}", actions(&t));
    };
    let t = run.on(Event::MessageUndeliverable {
        message,
        reason: "no channel".into(),
    });
    assert!(t.raise_task.is_none());
    assert!(awaiting(&run, "carecredit"));

    // The patient applied anyway (the link on their page): CareCredit's approval is taken.
    let t = run.on(approved("carecredit", 100_000));
    assert!(!t.ignored);
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::FinancingSummary
        }]
    );
    assert_eq!(
        run.state.result.as_ref().map(|r| r.path.as_str()),
        Some("carecredit approved")
    );
}

#[test]
fn the_next_lenders_undelivered_link_raises_its_own_task() {
    // Arrange: CareCredit's link could not be sent, then CareCredit declined.
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    assert!(
        run.on(link_undeliverable("carecredit"))
            .raise_task
            .is_some()
    );
    run.on(declined("carecredit"));

    // Act: Sunbit's application opens and its link cannot be sent either.
    run.on(opened("sunbit"));
    let t = run.on(link_undeliverable("sunbit"));

    // Assert: a task naming Sunbit, and Sunbit's application still open.
    let task = t.raise_task.expect("a task for Sunbit's link");
    assert!(task.reason.contains("Sunbit"), "{}", task.reason);
    assert!(awaiting(&run, "sunbit"));
    assert_eq!(run.state.status, Status::Active);
}

#[test]
fn a_staff_resend_sends_the_link_again_and_its_failure_raises_a_fresh_task() {
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(link_undeliverable("carecredit"));

    // Act: staff corrected the phone and pressed Resend link.
    let t = run.on(Event::Staff {
        action: StaffAction::ResendLink,
    });

    // Assert
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::ApplicationLink {
                lender: lender("carecredit"),
                link: "https://carecredit.test/apply/1".into()
            }
        }]
    );
    assert_eq!(run.state.staff_task, None);
    let t = run.on(link_undeliverable("carecredit"));
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::Unreachable));
}

#[test]
fn a_link_undelivered_after_its_lender_decided_changes_nothing() {
    // Arrange: CareCredit declined before the send gave up; Sunbit is being asked.
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    let before = run.state.clone();

    // Act
    let t = run.on(link_undeliverable("carecredit"));

    // Assert
    assert!(t.ignored);
    assert!(t.raise_task.is_none());
    assert_eq!(run.state.stage, before.stage);
    assert_eq!(run.state.status, Status::Active);
}

#[test]
fn a_quiet_patient_whose_link_never_arrived_still_ends_with_staff_after_the_reminders() {
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(link_undeliverable("carecredit"));
    for _ in 0..2 {
        run.on(Event::TimerFired {
            timer: TimerKind::Reminder,
        });
    }

    // Act
    let t = run.on(Event::TimerFired {
        timer: TimerKind::GiveUp,
    });

    // Assert: the open application is cancelled and staff take over the quiet patient.
    assert!(matches!(
        actions(&t)[..],
        [
            Action::CancelApplication { .. },
            Action::WriteLedgerNote { .. }
        ]
    ));
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::PatientQuiet));
    assert_eq!(run.state.status, Status::WaitingOnStaff);
}

#[test]
fn a_status_read_without_an_answer_keeps_the_application_and_reads_it_again() {
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    let polled = run.on(Event::TimerFired {
        timer: TimerKind::Poll,
    });
    assert!(matches!(
        actions(&polled)[..],
        [Action::PollApplication { .. }]
    ));
    let attempts = run.state.attempts.len();

    // Act: every retry of the read failed.
    let t = run.on(Event::LenderUnanswered {
        lender: lender("carecredit"),
        reason: "gave up after 6 attempts: HTTP 503".into(),
    });

    // Assert: no lender moved on, no task, and the next read is scheduled.
    assert!(!t.ignored);
    assert!(t.raise_task.is_none());
    assert!(actions(&t).is_empty(), "{:?}", actions(&t));
    assert_eq!(
        t.set_timers,
        vec![(TimerKind::Poll, t0() + Duration::from_secs(5))]
    );
    assert!(awaiting(&run, "carecredit"));
    assert_eq!(run.state.attempts.len(), attempts);
    // The read after it is answered as usual.
    let t = run.on(approved("carecredit", 100_000));
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::FinancingSummary
        }]
    );

    // An unanswered read from a lender that is not the current one changes nothing.
    let t = run.on(Event::LenderUnanswered {
        lender: lender("sunbit"),
        reason: "timeout".into(),
    });
    assert!(t.ignored);
}
