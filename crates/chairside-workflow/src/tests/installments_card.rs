//! In-house installments of a card-on-file practice: the schedule charges the saved card the
//! patient agreed to have the installments charged to (set at creation, or on the schedule once
//! the card is saved after it); a declined or unauthenticated installment is the invoice's own
//! pay link for the patient and a task for staff.

use super::*;

fn card_practice() -> WorkflowConfig {
    let mut c = config(0, true, PartialApprovalRule::StopForStaff);
    c.payment_preference = PaymentPreference::CardOnFile;
    c
}

/// Every lender declines; the patient accepts the in-house plan ($1,000 in 6 monthly
/// installments, no deposit); the Stripe customer is ready: returns the transition of the
/// customer step.
fn accepted(config: WorkflowConfig) -> (Run, Transition) {
    let mut run = Run::new(config);
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    run.on(declined("sunbit"));
    let t = run.on(accept());
    assert_eq!(actions(&t), vec![&Action::EnsureCustomer]);
    let t = run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    (run, t)
}

fn agree(run: &mut Run, installments: bool) -> Transition {
    run.on(Event::CardAuthorized {
        wording: "I authorize Smile Dental to save my card with Stripe and to charge it the 6 installments of my plan".into(),
        installments,
    })
}

fn save(run: &mut Run) -> Transition {
    run.on(Event::Payment(PaymentFact::CardSetupCompleted {
        session_id: "cs_setup_1".into(),
        setup_intent: "seti_1".into(),
    }));
    run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    })
}

/// Card setup link made, schedule created without a card (none saved yet), summary sent.
fn scheduled_without_card() -> Run {
    let (mut run, t) = accepted(card_practice());
    assert_eq!(
        actions(&t),
        vec![&Action::CreateCardSetupLink],
        "card on file with installments ahead: the card-saving link first, even without a deposit"
    );
    let t = run.on(Event::CardSetupLinkCreated {
        session_id: "cs_setup_1".into(),
        url: "https://pay.test/cs_setup_1".into(),
    });
    let [Action::CreateInstallmentSchedule { payment_method, .. }] = actions(&t)[..] else {
        panic!("expected the schedule, got {t:?}")
    };
    assert_eq!(payment_method, &None, "no card saved yet: Stripe invoices");
    let t = run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::FinancingSummary
        }]
    );
    run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::Done);
    run
}

#[test]
fn a_card_saved_after_the_schedule_is_set_on_that_schedule_once() {
    // Arrange
    let mut run = scheduled_without_card();
    agree(&mut run, true);

    // Act
    let t = save(&mut run);
    let again = run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });

    // Assert: the schedule is switched to the card, not re-created; no deposit to charge.
    assert_eq!(
        actions(&t),
        vec![&Action::SetScheduleCard {
            schedule_id: "sub_sched_1".into(),
            payment_method: "pm_1".into(),
        }]
    );
    assert!(actions(&again).is_empty(), "{again:?}");
    assert_eq!(run.state.stripe.schedule_card.as_deref(), Some("pm_1"));
    let t = run.on(Event::ScheduleCardSet {
        schedule_id: "sub_sched_1".into(),
    });
    assert!(!t.ignored);
    assert!(run.state.installments_for_card().is_none());
}

#[test]
fn a_card_saved_while_the_schedule_step_waits_for_staff_is_set_once_it_exists() {
    // Arrange: creating the schedule failed (a task); the patient saves the card meanwhile.
    let (mut run, _) = accepted(card_practice());
    let t = run.on(Event::CardSetupLinkCreated {
        session_id: "cs_setup_1".into(),
        url: "https://pay.test/cs_setup_1".into(),
    });
    let create = t.commands[0].action.clone();
    let t = run.on(Event::EffectFailed {
        action: create.clone(),
        reason: "stripe: 500".into(),
    });
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::SystemError));
    agree(&mut run, true);
    let t = save(&mut run);
    assert!(
        !actions(&t)
            .iter()
            .any(|a| matches!(a, Action::SetScheduleCard { .. })),
        "no schedule yet"
    );

    // Act: staff retry; the schedule is created.
    let t = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    assert_eq!(actions(&t), vec![&create], "the same call (its key) again");
    let t = run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });

    // Assert: the card is set on it.
    assert!(
        actions(&t).contains(&&Action::SetScheduleCard {
            schedule_id: "sub_sched_1".into(),
            payment_method: "pm_1".into(),
        }),
        "{t:?}"
    );
}

#[test]
fn a_card_saved_while_the_schedule_is_being_created_is_set_when_it_answers() {
    // Arrange: the schedule creation is under way (no card), then the card is saved.
    let (mut run, _) = accepted(card_practice());
    run.on(Event::CardSetupLinkCreated {
        session_id: "cs_setup_1".into(),
        url: "https://pay.test/cs_setup_1".into(),
    });
    agree(&mut run, true);
    let t = save(&mut run);
    assert!(actions(&t).is_empty(), "no schedule yet to set it on");

    // Act
    let t = run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });

    // Assert
    assert_eq!(
        actions(&t)[0],
        &Action::SetScheduleCard {
            schedule_id: "sub_sched_1".into(),
            payment_method: "pm_1".into(),
        }
    );
}

#[test]
fn an_agreement_that_did_not_name_the_installments_leaves_them_on_invoices() {
    // Arrange
    let mut run = scheduled_without_card();
    agree(&mut run, false);

    // Act
    let t = save(&mut run);

    // Assert
    assert!(actions(&t).is_empty(), "{t:?}");
    assert_eq!(run.state.stripe.schedule_card, None);
}

#[test]
fn a_pay_link_practice_never_puts_installments_on_a_card() {
    let (mut run, t) = accepted(config(0, true, PartialApprovalRule::StopForStaff));
    let [Action::CreateInstallmentSchedule { payment_method, .. }] = actions(&t)[..] else {
        panic!("expected the schedule, got {t:?}")
    };
    assert_eq!(payment_method, &None);
    run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });
    assert!(run.state.installments_for_card().is_none());
    let t = run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });
    assert!(
        !actions(&t)
            .iter()
            .any(|a| matches!(a, Action::SetScheduleCard { .. }))
    );
}

#[test]
fn a_cancelled_or_ended_schedule_takes_no_card() {
    // Cancelled
    let mut run = scheduled_without_card();
    agree(&mut run, true);
    run.on(Event::Staff {
        action: StaffAction::Cancel,
    });
    let t = run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });
    assert!(actions(&t).is_empty(), "{t:?}");

    // Ended in Stripe
    let mut run = scheduled_without_card();
    agree(&mut run, true);
    run.on(Event::Payment(PaymentFact::ScheduleEnded {
        schedule_id: "sub_sched_1".into(),
        aborted: false,
    }));
    let t = save(&mut run);
    assert!(
        !actions(&t)
            .iter()
            .any(|a| matches!(a, Action::SetScheduleCard { .. })),
        "{t:?}"
    );
}

#[test]
fn a_declined_installment_is_its_invoice_pay_link_for_the_patient_and_a_task_once() {
    // Arrange
    let mut run = scheduled_without_card();
    agree(&mut run, true);
    save(&mut run);
    run.on(Event::ScheduleCardSet {
        schedule_id: "sub_sched_1".into(),
    });

    // Act: Stripe reports the installment unpaid (its hosted page), then the failure; the
    // failure arrives twice (a redelivery).
    run.on(Event::Payment(PaymentFact::InstallmentUnpaid {
        invoice_id: "in_2".into(),
        url: "https://invoice.test/in_2".into(),
        amount: Money::usd(16_666),
    }));
    let t = run.on(Event::Payment(PaymentFact::Failed {
        stripe_id: "in_2".into(),
    }));
    let again = run.on(Event::Payment(PaymentFact::Failed {
        stripe_id: "in_2".into(),
    }));

    // Assert
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::PaymentFailed
        }]
    );
    let task = t.raise_task.expect("a task");
    assert_eq!(task.kind, TaskKind::PaymentFailed);
    assert!(
        task.reason
            .contains("the saved card was not charged for an installment of $166.66"),
        "{}",
        task.reason
    );
    assert!(actions(&again).is_empty() && again.raise_task.is_none());
    assert_eq!(
        run.state
            .stripe
            .installment_pay_link
            .as_ref()
            .map(|l| l.url.as_str()),
        Some("https://invoice.test/in_2")
    );

    // The patient pays it on the invoice's page: the link is gone, the payment noted once.
    let t = run.on(Event::Payment(PaymentFact::Paid {
        stripe_id: "in_2".into(),
        amount: Money::usd(16_666),
    }));
    assert_eq!(run.state.stripe.installment_pay_link, None);
    assert_eq!(t.commands.len(), 1);
}

#[test]
fn an_emailed_invoice_failing_is_not_a_card_pay_link() {
    let mut run = scheduled_without_card();
    let t = run.on(Event::Payment(PaymentFact::InstallmentUnpaid {
        invoice_id: "in_1".into(),
        url: "https://invoice.test/in_1".into(),
        amount: Money::usd(16_670),
    }));
    assert!(t.ignored);
    assert_eq!(run.state.stripe.installment_pay_link, None);
}

#[test]
fn setting_the_card_refused_by_stripe_is_a_task_with_retry_that_sets_it_again() {
    // Arrange
    let mut run = scheduled_without_card();
    agree(&mut run, true);
    let t = save(&mut run);
    let action = t.commands[0].action.clone();

    // Act: Stripe refuses (a definite failure).
    let t = run.on(Event::EffectFailed {
        action: action.clone(),
        reason: "stripe: 400".into(),
    });

    // Assert: a task; the schedule still invoices by email; Retry repeats the same call.
    assert_eq!(t.raise_task.map(|t| t.kind), Some(TaskKind::SystemError));
    assert_eq!(run.state.stripe.schedule_card, None);
    let t = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    assert_eq!(actions(&t), vec![&action]);
    run.on(Event::ScheduleCardSet {
        schedule_id: "sub_sched_1".into(),
    });
    assert_eq!(run.state.status, Status::Done);
}
