//! The day-of-service co-pay of a card-on-file practice: charged to the saved card on the
//! treatment day (practice time), once; a decline or an authentication request becomes a pay
//! link and a task; nothing for zero; without a date or a card, a person collects it.

use chrono::{Days, NaiveDate};

use super::*;
use crate::due::{COPAY, CopayState};
use crate::machine::DEPOSIT;

fn day(offset: u64) -> NaiveDate {
    t0().date_naive() + Days::new(offset)
}

fn card_practice(deposit_bps: u32) -> WorkflowConfig {
    let mut c = config(deposit_bps, false, PartialApprovalRule::StopForStaff);
    c.payment_preference = PaymentPreference::CardOnFile;
    c
}

/// Answers the set-up commands with their ordinary success until the workflow rests; returns
/// the last transition (the outcome note's).
fn rest(run: &mut Run, first: Transition) -> Transition {
    let mut last = first.clone();
    let mut pending: Vec<Action> = first.commands.into_iter().map(|c| c.action).collect();
    while let Some(action) = (!pending.is_empty()).then(|| pending.remove(0)) {
        let event = match &action {
            Action::EnsureCustomer => Event::CustomerReady {
                customer_id: "cus_1".into(),
            },
            Action::CreateDepositLink { .. } => Event::DepositLinkCreated {
                session_id: "cs_deposit".into(),
                url: "https://pay.test/cs_deposit".into(),
            },
            Action::CreateCardSetupLink => Event::CardSetupLinkCreated {
                session_id: "cs_setup_1".into(),
                url: "https://pay.test/cs_setup_1".into(),
            },
            Action::SendMessage { message } => Event::MessageSent {
                message: message.clone(),
            },
            Action::WriteLedgerNote { note } => Event::NoteWritten {
                note: note.clone(),
                at: run.now,
            },
            other => panic!("unexpected {other:?}"),
        };
        last = run.on(event);
        pending.extend(last.commands.iter().map(|c| c.action.clone()));
    }
    last
}

/// A $1,000 plan (no insurance) treated on `treatment`; the practice takes a `deposit_bps`
/// deposit; CareCredit approves $500 of what was asked and staff take the counteroffer (no
/// in-house plan): the rest of the portion is due on the treatment day.
fn counteroffer_taken(config: WorkflowConfig, treatment: Option<NaiveDate>) -> (Run, Transition) {
    let mut run = Run::new(config);
    run.on(Event::PlanLoaded {
        plan: TreatmentPlan {
            treatment_date: treatment,
            ..plan(100_000, 0, "D2740")
        },
        facts: facts(true, false),
    });
    run.on(opened("carecredit"));
    let asked = run.state.financing_amount.unwrap();
    run.on(decided(
        "carecredit",
        Decision::PartiallyApproved {
            offer: offer("carecredit", 50_000),
            requested: asked,
            raw_status: "PreApproved".into(),
        },
    ));
    run.on(Event::NoteWritten {
        note: NoteKind::Outcome,
        at: t0(),
    });
    let t = run.on(Event::Staff {
        action: StaffAction::AcceptCounteroffer,
    });
    let last = rest(&mut run, t);
    assert_eq!(run.state.status, Status::Done);
    (run, last)
}

/// The patient agrees on the page and saves a card: the deposit (if any) is charged and paid.
fn save_card(run: &mut Run) {
    run.on(Event::CardAuthorized {
        wording: "I authorize Smile Dental to save my card and charge it".into(),
        installments: false,
    });
    run.on(Event::Payment(PaymentFact::CardSetupCompleted {
        session_id: "cs_setup_1".into(),
        setup_intent: "seti_1".into(),
    }));
    let t = run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });
    for c in &t.commands {
        if let Action::ChargeCard { purpose, amount } = &c.action {
            run.on(Event::CardCharged {
                purpose: purpose.clone(),
                payment_intent: format!("pi_{purpose}"),
                amount: *amount,
            });
        }
    }
}

fn fire(run: &mut Run) -> Transition {
    run.on(Event::TimerFired {
        timer: TimerKind::Copay,
    })
}

fn copay_state(run: &Run) -> Option<&CopayState> {
    run.state.copay.as_ref().map(|c| &c.state)
}

#[test]
fn a_counteroffer_taken_without_an_in_house_plan_charges_the_rest_to_the_saved_card_on_the_treatment_day_once()
 {
    // Arrange: $200 deposit, $500 financed, $300 left for the day of treatment, in 40 days.
    let (mut run, t) = counteroffer_taken(card_practice(2_000), Some(day(40)));
    let copay = run.state.copay.clone().expect("a co-pay planned");
    assert_eq!(copay.amount, Money::usd(30_000));
    assert_eq!(copay.day, Some(day(40)));
    let at = timer_at(&t, TimerKind::Copay).expect("a co-pay timer");
    assert_eq!(at.date_naive(), day(40), "that morning, not before");
    save_card(&mut run);
    assert!(run.state.stripe.deposit_paid, "the deposit is charged now");
    assert!(
        run.state.stripe.card_charge(COPAY).is_none(),
        "the co-pay is not charged before its day"
    );

    // Act: the day comes.
    run.now = at;
    let t = fire(&mut run);

    // Assert: one off-session charge of exactly the co-pay, under the deterministic key.
    assert_eq!(
        actions(&t),
        vec![&Action::ChargeCard {
            purpose: COPAY.into(),
            amount: Money::usd(30_000)
        }]
    );
    let seq = t.commands[0].seq;
    assert_eq!(
        run.state.command_key(&t.commands[0]),
        format!("{}:charge_card:{seq}", run.state.id)
    );
    // A timer delivered twice (a crash between the fire and its commit) charges nothing more.
    let again = fire(&mut run);
    assert!(again.ignored && again.commands.is_empty());
    let t = run.on(Event::CardCharged {
        purpose: COPAY.into(),
        payment_intent: "pi_copay".into(),
        amount: Money::usd(30_000),
    });
    assert_eq!(
        actions(&t),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Payment {
                stripe_id: "pi_copay".into(),
                amount: Money::usd(30_000)
            }
        }]
    );
    assert_eq!(
        copay_state(&run),
        Some(&CopayState::Paid {
            stripe_id: "pi_copay".into()
        })
    );
    // Stripe's own `payment_intent.succeeded` is not noted a second time.
    let t = run.on(Event::Payment(PaymentFact::Paid {
        stripe_id: "pi_copay".into(),
        amount: Money::usd(30_000),
    }));
    assert!(t.commands.is_empty());
    assert_eq!(run.state.status, Status::Done);
}

#[test]
fn the_treatment_day_is_the_practices_so_an_early_evening_timer_waits_for_the_morning() {
    // Arrange: a California practice; treatment on day 40.
    let mut config = card_practice(2_000);
    config.time_zone = Some("America/Los_Angeles".into());
    let (mut run, t) = counteroffer_taken(config, Some(day(40)));
    let morning = timer_at(&t, TimerKind::Copay).unwrap();
    assert_eq!(
        morning,
        day(40).and_hms_opt(17, 0, 0).unwrap().and_utc(),
        "10:00 in California (PDT) is 17:00 UTC"
    );
    save_card(&mut run);

    // Act: fired at 20:00 local the evening before (already day 40 in UTC).
    run.now = day(40).and_hms_opt(3, 0, 0).unwrap().and_utc();
    let early = fire(&mut run);

    // Assert: nothing charged; the timer set again for the morning.
    assert!(early.commands.is_empty());
    assert_eq!(timer_at(&early, TimerKind::Copay), Some(morning));
    assert_eq!(copay_state(&run), Some(&CopayState::Scheduled));
    run.now = morning;
    assert_eq!(fire(&mut run).commands.len(), 1);
}

#[test]
fn a_treatment_day_already_here_charges_at_once() {
    let (run, t) = counteroffer_taken(card_practice(2_000), Some(day(0)));
    assert_eq!(timer_at(&t, TimerKind::Copay), Some(run.now));
}

#[test]
fn a_declined_co_pay_sends_the_patient_a_pay_link_and_staff_a_task() {
    // Arrange
    let (mut run, _) = counteroffer_taken(card_practice(2_000), Some(day(10)));
    save_card(&mut run);
    run.now = t0() + Days::new(10);
    fire(&mut run);

    // Act
    let t = run.on(Event::CardDeclined {
        purpose: COPAY.into(),
        payment_intent: Some("pi_copay_2".into()),
        reason: "card_declined: insufficient_funds".into(),
        authentication: false,
    });

    // Assert: a pay link for exactly the co-pay, the payment-failed message, a task.
    assert_eq!(
        actions(&t),
        vec![
            &Action::CreatePayLink {
                purpose: COPAY.into(),
                amount: Money::usd(30_000)
            },
            &Action::SendMessage {
                message: MessageKind::PaymentFailed
            },
        ]
    );
    let task = t.raise_task.expect("a task");
    assert_eq!(task.kind, TaskKind::PaymentFailed);
    assert!(
        task.reason.contains("co-pay charge of $300.00"),
        "{}",
        task.reason
    );
    assert!(task.reason.contains("insufficient_funds"));
    // Stripe's `payment_intent.payment_failed` for it sends no second message.
    let t = run.on(Event::Payment(PaymentFact::Failed {
        stripe_id: "pi_copay_2".into(),
    }));
    assert!(t.commands.is_empty());
    // The link exists: the page shows it; paying it settles the co-pay, never twice.
    run.on(Event::PayLinkCreated {
        purpose: COPAY.into(),
        session_id: "cs_copay".into(),
        url: "https://pay.test/cs_copay".into(),
    });
    assert!(matches!(
        copay_state(&run),
        Some(CopayState::LinkSent { session_id, .. }) if session_id == "cs_copay"
    ));
    assert!(
        run.on(Event::PayLinkCreated {
            purpose: COPAY.into(),
            session_id: "cs_copay_b".into(),
            url: "u".into(),
        })
        .ignored,
        "a second link is never recorded"
    );
    run.on(Event::Payment(PaymentFact::CheckoutCompleted {
        session_id: "cs_copay".into(),
    }));
    assert_eq!(
        copay_state(&run),
        Some(&CopayState::Paid {
            stripe_id: "cs_copay".into()
        })
    );
    assert_eq!(
        run.state.stripe.checkout_session_id, None,
        "the co-pay's link is not recorded as the deposit's"
    );
}

#[test]
fn a_bank_asking_for_authentication_gets_a_pay_link_and_a_task_saying_so() {
    let (mut run, _) = counteroffer_taken(card_practice(2_000), Some(day(3)));
    save_card(&mut run);
    run.now = t0() + Days::new(3);
    fire(&mut run);
    let t = run.on(Event::CardDeclined {
        purpose: COPAY.into(),
        payment_intent: Some("pi_copay_3".into()),
        reason: "authentication_required".into(),
        authentication: true,
    });
    assert!(actions(&t).contains(&&Action::CreatePayLink {
        purpose: COPAY.into(),
        amount: Money::usd(30_000)
    }));
    let reason = t.raise_task.unwrap().reason;
    assert!(
        reason.contains("authenticate the co-pay charge"),
        "{reason}"
    );
}

#[test]
fn without_a_saved_card_on_the_day_the_patient_gets_a_pay_link_and_staff_a_task() {
    // Arrange: the patient never saved a card.
    let (mut run, _) = counteroffer_taken(card_practice(2_000), Some(day(5)));
    run.now = t0() + Days::new(5);

    // Act
    let t = fire(&mut run);

    // Assert: no charge, a link, a task naming the amount.
    assert_eq!(
        actions(&t),
        vec![&Action::CreatePayLink {
            purpose: COPAY.into(),
            amount: Money::usd(30_000)
        }]
    );
    let reason = t.raise_task.unwrap().reason;
    assert!(
        reason.contains("$300.00") && reason.contains("no card"),
        "{reason}"
    );
    // A card saved while the link is open is not charged for it (never both).
    save_card(&mut run);
    assert!(run.state.stripe.card_charge(COPAY).is_none());
}

#[test]
fn a_card_declined_for_the_deposit_is_not_tried_again_for_the_co_pay() {
    let (mut run, _) = counteroffer_taken(card_practice(2_000), Some(day(5)));
    run.on(Event::CardAuthorized {
        wording: "I authorize".into(),
        installments: false,
    });
    run.on(Event::Payment(PaymentFact::CardSetupCompleted {
        session_id: "cs_setup_1".into(),
        setup_intent: "seti_1".into(),
    }));
    run.on(Event::CardSaved {
        payment_method: "pm_1".into(),
    });
    run.on(Event::CardDeclined {
        purpose: DEPOSIT.into(),
        payment_intent: Some("pi_d".into()),
        reason: "card_declined: generic_decline".into(),
        authentication: false,
    });
    run.now = t0() + Days::new(5);
    let t = fire(&mut run);
    assert!(
        !actions(&t)
            .iter()
            .any(|a| matches!(a, Action::ChargeCard { .. }))
    );
    assert!(actions(&t).contains(&&Action::CreatePayLink {
        purpose: COPAY.into(),
        amount: Money::usd(30_000)
    }));
}

#[test]
fn without_a_treatment_date_the_co_pay_is_a_task_and_never_charged() {
    let (mut run, t) = counteroffer_taken(card_practice(2_000), None);
    assert_eq!(timer_at(&t, TimerKind::Copay), None);
    assert_eq!(copay_state(&run), Some(&CopayState::ForStaff));
    let task = t.raise_task.expect("a task");
    assert!(task.reason.contains("$300.00"), "{}", task.reason);
    save_card(&mut run);
    assert!(fire(&mut run).ignored);
    assert!(run.state.stripe.card_charge(COPAY).is_none());
}

#[test]
fn a_fully_financed_plan_plans_no_zero_dollar_co_pay() {
    let mut run = Run::new(card_practice(2_000));
    run.on(Event::PlanLoaded {
        plan: TreatmentPlan {
            treatment_date: Some(day(10)),
            ..plan(100_000, 0, "D2740")
        },
        facts: facts(true, false),
    });
    run.on(opened("carecredit"));
    let t = run.on(approved("carecredit", 80_000));
    let t = rest(&mut run, t);
    assert_eq!(run.state.status, Status::Done);
    assert!(run.state.copay.is_none());
    assert_eq!(timer_at(&t, TimerKind::Copay), None);
}

#[test]
fn a_co_pay_alone_still_asks_for_a_card_and_charges_only_on_the_day() {
    // Arrange: no deposit; $500 of $1,000 financed, $500 left for the day.
    let (mut run, _) = counteroffer_taken(card_practice(0), Some(day(7)));
    assert!(
        run.state.stripe.card_setup_session_id.is_some(),
        "a card-saving link even without a deposit"
    );
    assert_eq!(run.state.copay.as_ref().unwrap().amount, Money::usd(50_000));

    // Act: the card is saved now; nothing is due until the day.
    save_card(&mut run);
    assert!(run.state.stripe.card_charges.is_empty());
    run.now = t0() + Days::new(7);
    let t = fire(&mut run);

    // Assert
    assert_eq!(
        actions(&t),
        vec![&Action::ChargeCard {
            purpose: COPAY.into(),
            amount: Money::usd(50_000)
        }]
    );
}

#[test]
fn a_pay_link_practice_gets_the_co_pay_as_a_pay_link_on_the_treatment_day() {
    // Arrange: no saved card to charge; the rest of the portion is due on day 3.
    let mut config = card_practice(2_000);
    config.payment_preference = PaymentPreference::PayLink;
    let (mut run, t) = counteroffer_taken(config, Some(day(3)));
    assert_eq!(
        run.state.copay.as_ref().map(|c| c.amount),
        Some(Money::usd(30_000))
    );
    let at = timer_at(&t, TimerKind::Copay).expect("a co-pay timer");
    assert_eq!(at.date_naive(), day(3));

    // Act: the timer fires early (nothing yet), then on the day.
    run.now = t0() + Days::new(1);
    let early = fire(&mut run);
    run.now = at;
    let t = fire(&mut run);

    // Assert: a pay link for exactly the co-pay, no charge, no task (nothing failed).
    assert!(early.commands.is_empty());
    assert_eq!(
        actions(&t),
        vec![&Action::CreatePayLink {
            purpose: COPAY.into(),
            amount: Money::usd(30_000)
        }]
    );
    assert!(t.raise_task.is_none());
    run.on(Event::PayLinkCreated {
        purpose: COPAY.into(),
        session_id: "cs_copay".into(),
        url: "https://pay.test/cs_copay".into(),
    });
    assert!(matches!(
        run.state.copay.as_ref().map(|c| &c.state),
        Some(CopayState::LinkSent { .. })
    ));
    // A repeat of the timer asks for nothing more.
    assert!(fire(&mut run).commands.is_empty());
}

#[test]
fn a_pay_link_practice_without_a_treatment_date_leaves_the_co_pay_to_the_visit() {
    let mut config = card_practice(2_000);
    config.payment_preference = PaymentPreference::PayLink;
    let (run, t) = counteroffer_taken(config, None);
    assert_eq!(timer_at(&t, TimerKind::Copay), None);
    let task = t.raise_task.expect("a task");
    assert!(
        task.reason
            .contains("the co-pay of $300.00 gets no pay link; collect it at the visit"),
        "{}",
        task.reason
    );
    assert_eq!(
        run.state.copay.as_ref().map(|c| &c.state),
        Some(&CopayState::ForStaff)
    );
}

#[test]
fn mark_handled_on_a_failed_co_pay_closes_its_link_and_charges_nothing_more() {
    // Arrange: the saved card is declined for the co-pay; its pay link is out.
    let (mut run, _) = counteroffer_taken(card_practice(2_000), Some(day(2)));
    save_card(&mut run);
    run.now = t0() + Days::new(2);
    let t = fire(&mut run);
    assert_eq!(t.commands.len(), 1);
    run.on(Event::CardDeclined {
        purpose: COPAY.into(),
        payment_intent: Some("pi_copay".into()),
        reason: "card_declined: insufficient_funds".into(),
        authentication: false,
    });
    run.on(Event::PayLinkCreated {
        purpose: COPAY.into(),
        session_id: "cs_copay".into(),
        url: "https://pay.test/cs_copay".into(),
    });

    // Act: staff collected it at the desk and mark the task handled.
    let t = run.on(Event::Staff {
        action: StaffAction::MarkHandled,
    });

    // Assert: the link is closed; nothing is charged again, by a timer, a retry or a repeat.
    assert_eq!(
        actions(&t),
        vec![&Action::ExpireDepositLink {
            session_id: "cs_copay".into()
        }]
    );
    assert_eq!(
        run.state.copay.as_ref().map(|c| &c.state),
        Some(&CopayState::HandledByStaff)
    );
    let charges = |t: &Transition| {
        t.commands
            .iter()
            .filter(|c| {
                matches!(
                    c.action,
                    Action::ChargeCard { .. } | Action::CreatePayLink { .. }
                )
            })
            .count()
    };
    assert_eq!(charges(&fire(&mut run)), 0);
    assert_eq!(
        charges(&run.on(Event::Staff {
            action: StaffAction::Retry,
        })),
        0
    );
    assert!(
        run.on(Event::Staff {
            action: StaffAction::MarkHandled,
        })
        .commands
        .is_empty()
    );
    assert_eq!(
        run.state
            .stripe
            .card_charges
            .iter()
            .filter(|c| c.purpose == COPAY)
            .count(),
        1,
        "the one declined attempt"
    );
}

#[test]
fn mark_handled_while_the_co_pay_link_is_being_made_closes_it_when_it_arrives() {
    // Arrange
    let (mut run, _) = counteroffer_taken(card_practice(2_000), Some(day(2)));
    save_card(&mut run);
    run.now = t0() + Days::new(2);
    fire(&mut run);
    run.on(Event::CardDeclined {
        purpose: COPAY.into(),
        payment_intent: None,
        reason: "authentication_required".into(),
        authentication: true,
    });
    run.on(Event::Staff {
        action: StaffAction::MarkHandled,
    });

    // Act: the link asked for before arrives.
    let t = run.on(Event::PayLinkCreated {
        purpose: COPAY.into(),
        session_id: "cs_late".into(),
        url: "https://pay.test/cs_late".into(),
    });

    // Assert
    assert_eq!(
        actions(&t),
        vec![&Action::ExpireDepositLink {
            session_id: "cs_late".into()
        }]
    );
}

#[test]
fn a_cancelled_workflow_charges_no_co_pay() {
    let (mut run, _) = counteroffer_taken(card_practice(2_000), Some(day(3)));
    save_card(&mut run);
    run.on(Event::Staff {
        action: StaffAction::Cancel,
    });
    run.now = t0() + Days::new(3);
    let t = fire(&mut run);
    assert!(t.commands.is_empty());
}

#[test]
fn an_unknown_charge_outcome_is_retried_by_staff_under_the_same_key() {
    // Arrange
    let (mut run, _) = counteroffer_taken(card_practice(2_000), Some(day(2)));
    save_card(&mut run);
    run.now = t0() + Days::new(2);
    let t = fire(&mut run);
    let first = t.commands[0].clone();

    // Act: the answer was lost for good (Stripe kept failing).
    let failed = run.on(Event::EffectIndeterminate {
        action: first.action.clone(),
        seq: first.seq,
        reason: "timeout".into(),
    });
    assert_eq!(failed.raise_task.unwrap().kind, TaskKind::SystemError);
    let retry = run.on(Event::Staff {
        action: StaffAction::Retry,
    });

    // Assert: the same charge under the first attempt's key (Stripe replays it, never twice).
    assert_eq!(actions(&retry), vec![&first.action]);
    assert_eq!(
        run.state.command_key(&retry.commands[0]),
        run.state.command_key(&first)
    );
    run.on(Event::CardCharged {
        purpose: COPAY.into(),
        payment_intent: "pi_copay".into(),
        amount: Money::usd(30_000),
    });
    assert_eq!(run.state.status, Status::Done);
    assert!(matches!(copay_state(&run), Some(CopayState::Paid { .. })));
}
