//! Lender names and reported terms, the patient's live status, and a fresh lender session after
//! a lapse (the patient's "start again", staff's "Resend link").

use super::*;

fn named() -> WorkflowConfig {
    let mut c = config(0, true, PartialApprovalRule::StopForStaff);
    c.lender_names = vec![(lender("carecredit"), "CareCredit".into())];
    c
}

fn start_seqs(t: &Transition) -> Vec<u64> {
    t.commands
        .iter()
        .filter(|c| matches!(c.action, Action::StartApplication { .. }))
        .map(|c| c.seq)
        .collect()
}

fn note_written(run: &mut Run) {
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: run.now,
    });
}

#[test]
fn lenders_are_named_as_patients_know_them_in_tasks_and_outcomes_never_by_id() {
    // Arrange: CareCredit's client names it; Sunbit has no name given (the shipped default).
    let mut run = Run::new(named());
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    // Act: a counteroffer for staff.
    let t = run.on(decided(
        "carecredit",
        Decision::PartiallyApproved {
            offer: offer("carecredit", 60_000),
            requested: Money::usd(100_000),
            raw_status: "Completed".into(),
        },
    ));
    // Assert
    let reason = t.raise_task.map(|t| t.reason).unwrap_or_default();
    assert!(
        reason.starts_with("CareCredit approved $600.00"),
        "{reason}"
    );
    assert_eq!(run.state.lender_name(&lender("carecredit")), "CareCredit");
    assert_eq!(run.state.lender_name(&lender("sunbit")), "Sunbit");
    assert_eq!(
        run.state.lender_name(&lender("acme-lending")),
        "acme-lending"
    );
}

#[test]
fn the_financed_lenders_reported_terms_are_kept_with_the_outcome() {
    // Arrange
    let mut run = Run::new(named());
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    let mut terms = offer("sunbit", 100_000);
    terms.promotion = None;
    terms.term_months = Some(24);
    terms.apr_bps = Some(999);
    // Act
    run.on(decided(
        "sunbit",
        Decision::Approved {
            offer: terms.clone(),
            raw_status: "COMPLETED".into(),
        },
    ));
    // Assert
    assert_eq!(run.state.financed_offer(), Some(&terms));
    assert_eq!(
        run.state.outcome_label().as_deref(),
        Some("Sunbit approved")
    );
    assert_eq!(
        run.state.result.as_ref().map(|r| r.path.as_str()),
        Some("sunbit approved"),
        "the stable path keeps the id"
    );
}

#[test]
fn a_cardholder_approval_has_no_terms_to_report() {
    let mut run = Run::new(named());
    run.on(Event::PlanLoaded {
        plan: plan(100_000, 0, "D2740"),
        facts: facts(true, true),
    });
    run.on(Event::CardholderLookedUp {
        lender: lender("carecredit"),
        found: Some(Decision::Cardholder {
            available_credit: Money::usd(500_000),
            lender_reference: None,
        }),
    });
    assert!(
        run.state
            .result
            .as_ref()
            .is_some_and(|r| r.financed.is_some())
    );
    assert_eq!(run.state.financed_offer(), None);
}

#[test]
fn application_references_are_one_per_attempt_and_parse_back_unambiguously() {
    let wf = state().id;
    let r = application_reference(&wf, &lender("acme-lending"), 12);
    assert_eq!(r.as_str(), format!("{wf}-12-acme-lending"));
    assert_eq!(
        parse_application_reference(r.as_str()),
        Some(ParsedReference {
            workflow: wf.clone(),
            lender: lender("acme-lending"),
            seq: Some(12)
        })
    );
    // The older form, without an attempt.
    assert_eq!(
        parse_application_reference(&format!("{wf}-sunbit")),
        Some(ParsedReference {
            workflow: wf.clone(),
            lender: lender("sunbit"),
            seq: None
        })
    );
    for bad in [
        String::new(),
        wf.to_string(),
        format!("{wf}-"),
        format!("{wf}-12-"),
        "wf_nothex-3-sunbit".to_owned(),
        "other-3-sunbit".to_owned(),
        format!("{wf}-99999999999999999999999-sunbit"),
    ] {
        assert_eq!(parse_application_reference(&bad), None, "{bad}");
    }
}

#[test]
fn after_a_lapse_start_again_opens_a_fresh_session_under_a_new_reference() {
    // Arrange: CareCredit's 30-minute session, opened at t0.
    let mut run = Run::new(real_timings());
    run.on(loaded(100_000, 0));
    let first = start_seqs(&run.on(Event::Staff {
        action: StaffAction::Retry,
    }));
    assert!(first.is_empty(), "a retry with no task does nothing");
    let opened_at = run.state.next_seq;
    run.on(Event::ApplicationOpened {
        lender: lender("carecredit"),
        handle: handle("sess-1"),
        link: "https://carecredit.test/apply/1".into(),
        expires_at: Some(t0() + minutes(30)),
    });
    assert_eq!(
        run.state.patient_status(run.now).label(),
        "applying",
        "live session"
    );
    // Before the lapse there is nothing to start again.
    let t = run.on(Event::LenderSessionRequested);
    assert!(t.ignored);
    // Act: 31 minutes later the session has lapsed; the lender has not said so yet.
    run.now = t0() + minutes(31);
    assert_eq!(
        run.state.patient_status(run.now),
        PatientStatus::SessionLapsed {
            lender: lender("carecredit")
        }
    );
    let t = run.on(Event::LenderSessionRequested);
    // Assert: a new StartApplication command, whose sequence number (so reference) is new.
    let seqs = start_seqs(&t);
    assert_eq!(seqs.len(), 1, "{t:?}");
    assert!(seqs[0] >= opened_at);
    let old = application_reference(&run.state.id, &lender("carecredit"), 2);
    let new = application_reference(&run.state.id, &lender("carecredit"), seqs[0]);
    assert_ne!(old, new);
    assert!(t.clear_timers.contains(&TimerKind::Poll));
    assert!(matches!(
        &run.state.stage,
        Stage::Financing(c) if c.phase == LenderPhase::Starting
    ));
    // A second click while it opens does nothing more.
    assert!(run.on(Event::LenderSessionRequested).ignored);
    // The fresh session's link goes to the patient; the status is live again.
    let t = run.on(Event::ApplicationOpened {
        lender: lender("carecredit"),
        handle: handle("sess-2"),
        link: "https://carecredit.test/apply/2".into(),
        expires_at: Some(run.now + minutes(30)),
    });
    assert!(matches!(
        actions(&t)[..],
        [Action::SendMessage {
            message: MessageKind::ApplicationLink { .. }
        }]
    ));
    assert_eq!(run.state.patient_status(run.now).label(), "applying");
}

/// Both lenders' sessions lapse with nothing decided: a quiet patient, task raised, note written.
fn quiet_at_sunbit() -> Run {
    let mut run = Run::new(named());
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    let t = run.on(decided(
        "sunbit",
        Decision::Expired {
            raw_status: "PREQUAL_ABORTED".into(),
        },
    ));
    let task = t.raise_task.expect("task");
    assert_eq!(task.kind, TaskKind::PatientQuiet);
    assert!(
        task.reason.contains("Sunbit application"),
        "{}",
        task.reason
    );
    note_written(&mut run);
    assert_eq!(run.state.status, Status::WaitingOnStaff);
    run
}

#[test]
fn resend_link_to_a_patient_who_went_quiet_opens_a_fresh_session_and_waits_again() {
    // Arrange
    let mut run = quiet_at_sunbit();
    // Act
    let t = run.on(Event::Staff {
        action: StaffAction::ResendLink,
    });
    // Assert: Sunbit again, for the same amount, the workflow waiting on the patient.
    assert_eq!(
        actions(&t),
        vec![&Action::StartApplication {
            lender: lender("sunbit"),
            amount: Money::usd(100_000)
        }]
    );
    assert_eq!(run.state.status, Status::Active);
    assert_eq!(run.state.staff_task, None);
    // An approval now finances the plan as usual.
    run.on(opened("sunbit"));
    run.on(approved("sunbit", 100_000));
    assert_eq!(
        run.state.result.as_ref().map(|r| r.path.as_str()),
        Some("sunbit approved")
    );
}

#[test]
fn the_patients_start_again_after_going_quiet_does_what_staff_resend_does() {
    let mut run = quiet_at_sunbit();
    assert_eq!(
        run.state.patient_status(run.now),
        PatientStatus::SessionLapsed {
            lender: lender("sunbit")
        }
    );
    let t = run.on(Event::LenderSessionRequested);
    assert_eq!(start_seqs(&t).len(), 1);
    assert_eq!(run.state.status, Status::Active);
}

#[test]
fn resend_link_on_a_task_that_is_not_a_quiet_patient_changes_nothing() {
    let mut run = Run::new(config(0, false, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    run.on(declined("sunbit"));
    note_written(&mut run);
    assert_eq!(run.state.patient_status(run.now), PatientStatus::Declined);
    let t = run.on(Event::Staff {
        action: StaffAction::ResendLink,
    });
    assert!(t.ignored && t.commands.is_empty());
    assert!(run.on(Event::LenderSessionRequested).ignored);
}

#[test]
fn the_patient_status_follows_the_workflow_from_preparing_to_paid() {
    let mut run = Run::new(config(2_000, true, PartialApprovalRule::StopForStaff));
    assert_eq!(run.state.patient_status(run.now), PatientStatus::Preparing);
    run.on(loaded(100_000, 0));
    assert_eq!(
        run.state.patient_status(run.now),
        PatientStatus::Applying {
            lender: lender("carecredit")
        }
    );
    run.on(opened("carecredit"));
    run.on(decided(
        "carecredit",
        Decision::NeedsStaff {
            instruction: "call".into(),
            raw_status: "CallForAuth".into(),
        },
    ));
    assert_eq!(
        run.state.patient_status(run.now),
        PatientStatus::InReview {
            lender: lender("carecredit")
        }
    );
    run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    run.on(approved("carecredit", 80_000));
    assert_eq!(run.state.patient_status(run.now), PatientStatus::Approved);
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    run.on(Event::DepositLinkCreated {
        session_id: "cs_1".into(),
        url: "https://checkout.test/cs_1".into(),
    });
    assert_eq!(run.state.patient_status(run.now), PatientStatus::Approved);
    run.on(Event::Payment(PaymentFact::CheckoutCompleted {
        session_id: "cs_1".into(),
    }));
    assert_eq!(run.state.patient_status(run.now), PatientStatus::Paid);
}

#[test]
fn an_in_house_offer_reads_as_offered_and_insurance_cover_as_nothing_due() {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    run.on(declined("sunbit"));
    assert_eq!(
        run.state.patient_status(run.now),
        PatientStatus::PlanOffered
    );
    let mut covered = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    covered.on(loaded(100_000, 100_000));
    note_written(&mut covered);
    assert_eq!(
        covered.state.patient_status(covered.now),
        PatientStatus::NothingDue
    );
}
