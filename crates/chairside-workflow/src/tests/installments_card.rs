//! In-house installments of a card-on-file practice: the schedule waits for the card the patient
//! agrees to have the installments charged to, and is created charging it from the first
//! installment (or with emailed invoices, by the patient's choice or after the wait); an older
//! workflow's schedule created before the card takes it once saved; a declined or
//! unauthenticated installment is the invoice's own pay link for the patient and a task for
//! staff.

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

/// The card-saving link exists: the schedule waits for the patient's card (or their choice)
/// while the summary goes out and the outcome is noted.
fn waiting(config: WorkflowConfig) -> Run {
    let (mut run, t) = accepted(config);
    assert_eq!(
        actions(&t),
        vec![&Action::CreateCardSetupLink],
        "card on file with installments ahead: the card-saving link first, even without a deposit"
    );
    let t = run.on(Event::CardSetupLinkCreated {
        session_id: "cs_setup_1".into(),
        url: "https://pay.test/cs_setup_1".into(),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::FinancingSummary
        }],
        "no schedule yet; the summary (its page link is where the card is saved)"
    );
    assert!(run.state.stripe.schedule_awaits_card);
    assert_eq!(
        t.set_timers,
        vec![(TimerKind::GiveUp, t0() + run.config.give_up_after)],
        "the wait is bounded"
    );
    run.on(Event::MessageSent {
        message: MessageKind::FinancingSummary,
    });
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    assert_eq!(run.state.status, Status::Done);
    assert!(
        run.state
            .stage_label()
            .contains("installments wait for the patient's card"),
        "{}",
        run.state.stage_label()
    );
    run
}

fn choose_invoices(run: &mut Run) -> Transition {
    run.on(Event::InstallmentInvoicesChosen {
        wording: "I prefer to pay each installment of my payment plan (6 × $166.67, monthly) by the invoice emailed to me".into(),
    })
}

fn schedule_action(t: &Transition) -> (&InHouseOffer, &Option<String>) {
    match actions(t)[..] {
        [
            Action::CreateInstallmentSchedule {
                offer,
                payment_method,
            },
        ] => (offer, payment_method),
        _ => panic!("expected the schedule alone, got {t:?}"),
    }
}

/// The schedule created beside the finished flow: recorded, no second summary or note.
fn finish(run: &mut Run) {
    let t = run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });
    assert!(actions(&t).is_empty(), "{t:?}");
    assert!(!t.ignored);
    assert_eq!(run.state.stripe.schedule_id.as_deref(), Some("sub_sched_1"));
    assert!(!run.state.stripe.schedule_awaits_card);
    assert_eq!(run.state.status, Status::Done);
    let again = run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });
    assert!(again.ignored && again.commands.is_empty());
}

#[test]
fn the_schedule_waits_for_the_card_and_is_created_charging_it_from_the_first_installment() {
    // Arrange
    let mut run = waiting(card_practice());
    agree(&mut run, true);

    // Act
    let t = save(&mut run);

    // Assert: created on the card (collection charge_automatically), never switched later.
    let (_, payment_method) = schedule_action(&t);
    assert_eq!(payment_method.as_deref(), Some("pm_1"));
    assert!(t.clear_timers.contains(&TimerKind::GiveUp));
    assert_eq!(run.state.stripe.schedule_card.as_deref(), Some("pm_1"));
    finish(&mut run);
    assert!(run.state.installments_for_card().is_none());
    let again = run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });
    assert!(actions(&again).is_empty(), "{again:?}");
}

#[test]
fn a_patient_who_declines_to_save_a_card_gets_emailed_invoices_and_the_choice_is_recorded() {
    // Arrange
    let mut run = waiting(card_practice());

    // Act: the choice, then a double click.
    let t = choose_invoices(&mut run);
    let again = choose_invoices(&mut run);

    // Assert
    let (_, payment_method) = schedule_action(&t);
    assert_eq!(payment_method, &None, "Stripe emails the invoices");
    assert!(
        t.audit
            .iter()
            .any(|l| l.contains("chose emailed invoices")
                && l.contains("by the invoice emailed to me")),
        "{:?}",
        t.audit
    );
    let choice = run
        .state
        .stripe
        .installments_by_invoice
        .as_ref()
        .expect("recorded");
    assert!(choice.wording.contains("invoice emailed to me"));
    assert!(again.ignored && again.commands.is_empty());
    assert!(
        run.state.installments_for_card().is_none(),
        "the page no longer asks for a card for them"
    );
    finish(&mut run);
}

#[test]
fn a_card_agreement_after_the_invoice_choice_does_not_move_the_installments() {
    // The invoice choice, then (another tab) an agreement naming the installments and a card:
    // the first answer stands; no schedule update, no second schedule.
    let mut run = waiting(card_practice());
    choose_invoices(&mut run);
    agree(&mut run, true);
    let t = save(&mut run);
    assert!(actions(&t).is_empty(), "{t:?}");
    assert!(!run.state.stripe.card_covers_installments);
    finish(&mut run);
}

#[test]
fn an_invoice_choice_after_the_card_was_agreed_and_saved_changes_nothing() {
    let mut run = waiting(card_practice());
    agree(&mut run, true);
    let t = save(&mut run);
    let (_, pm) = schedule_action(&t);
    assert_eq!(pm.as_deref(), Some("pm_1"));
    let t = choose_invoices(&mut run);
    assert!(t.ignored && t.commands.is_empty());
    assert_eq!(run.state.stripe.installments_by_invoice, None);
}

#[test]
fn a_card_saved_for_the_deposit_alone_is_used_for_the_installments_only_once_confirmed() {
    // Arrange: a deposit; the patient agrees to the deposit only and saves the card.
    let mut c = card_practice();
    c.deposit = DepositRule::BasisPoints(1_000);
    let mut run = waiting(c);
    agree(&mut run, false);
    let t = save(&mut run);
    assert!(
        matches!(actions(&t)[..], [Action::ChargeCard { .. }]),
        "the deposit is charged, the schedule still waits: {t:?}"
    );
    assert!(run.state.stripe.schedule_awaits_card);
    assert!(
        run.state.installments_for_card().is_some(),
        "the page asks to confirm"
    );

    // Act: one click confirms the saved card for the installments.
    let t = agree(&mut run, true);

    // Assert: the schedule on that card, the confirmation's wording on record.
    let (_, pm) = schedule_action(&t);
    assert_eq!(pm.as_deref(), Some("pm_1"));
    assert!(run.state.stripe.card_covers_installments);
    assert!(
        t.audit.iter().any(|l| l.contains("6 installments")),
        "{:?}",
        t.audit
    );
    let again = agree(&mut run, true);
    assert!(again.commands.is_empty(), "{again:?}");
}

#[test]
fn no_answer_in_time_invoices_the_installments_by_email_and_a_late_timer_does_nothing() {
    // Arrange
    let mut run = waiting(card_practice());

    // Act
    run.now = t0() + run.config.give_up_after;
    let t = run.on(Event::TimerFired {
        timer: TimerKind::GiveUp,
    });

    // Assert
    let (_, pm) = schedule_action(&t);
    assert_eq!(pm, &None);
    assert!(
        run.state
            .stripe
            .installments_by_invoice
            .as_ref()
            .is_some_and(|c| c.wording.contains("no card was saved"))
    );
    let again = run.on(Event::TimerFired {
        timer: TimerKind::GiveUp,
    });
    assert!(again.ignored && again.commands.is_empty());
    finish(&mut run);
}

#[test]
fn the_timer_after_the_card_was_saved_creates_nothing_more() {
    let mut run = waiting(card_practice());
    agree(&mut run, true);
    save(&mut run);
    let t = run.on(Event::TimerFired {
        timer: TimerKind::GiveUp,
    });
    assert!(t.ignored && t.commands.is_empty(), "{t:?}");
}

#[test]
fn a_schedule_whose_creation_outcome_is_unknown_is_retried_under_the_same_key_on_the_card() {
    // A crash or a lost answer while the schedule on the card is created: staff Retry repeats
    // the same command (its sequence number, so its idempotency key), never a new one.
    let mut run = waiting(card_practice());
    agree(&mut run, true);
    let t = save(&mut run);
    let cmd = t.commands[0].clone();
    run.on(Event::EffectIndeterminate {
        action: cmd.action.clone(),
        seq: cmd.seq,
        reason: "timeout".into(),
    });
    let t = run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });
    assert!(
        t.commands.is_empty(),
        "a repeat of the card changes nothing"
    );
    let t = run.on(Event::Staff {
        action: StaffAction::Retry,
    });
    assert_eq!(t.commands.len(), 1, "{t:?}");
    assert_eq!(t.commands[0].action, cmd.action);
    assert_eq!(
        run.state.key_seq(t.commands[0].seq),
        cmd.seq,
        "the same idempotency key"
    );
    finish(&mut run);
}

#[test]
fn a_plan_cancelled_while_the_schedule_waits_creates_no_schedule() {
    let mut run = waiting(card_practice());
    run.on(Event::Staff {
        action: StaffAction::Cancel,
    });
    assert_eq!(run.state.status, Status::Cancelled);
    agree(&mut run, true);
    let t = save(&mut run);
    assert!(
        !actions(&t)
            .iter()
            .any(|a| matches!(a, Action::CreateInstallmentSchedule { .. })),
        "{t:?}"
    );
    assert!(choose_invoices(&mut run).commands.is_empty());
    assert!(
        run.on(Event::TimerFired {
            timer: TimerKind::GiveUp
        })
        .commands
        .is_empty()
    );
}

/// A workflow whose schedule was created before the card-first rule (it emails its invoices)
/// and that persisted no invoice choice: the card saved afterwards is set on that schedule.
fn scheduled_without_card() -> Run {
    let mut run = waiting(card_practice());
    let t = choose_invoices(&mut run);
    assert_eq!(schedule_action(&t).1, &None);
    finish(&mut run);
    // As such a workflow's state reads: the field did not exist (serde default).
    run.state.stripe.installments_by_invoice = None;
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
    // Arrange: an older workflow creating its schedule without a card failed (a task); the
    // patient saves the card meanwhile.
    let mut run = waiting(card_practice());
    let t = choose_invoices(&mut run);
    run.state.stripe.installments_by_invoice = None;
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
    // Arrange: an older workflow's schedule creation is under way (no card), then the card is
    // saved.
    let mut run = waiting(card_practice());
    choose_invoices(&mut run);
    run.state.stripe.installments_by_invoice = None;
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
