//! Refunds, disputes, schedules that end early and a final failed installment.

use super::*;

/// A workflow whose in-house schedule `sub_sched_1` exists (every lender declined).
fn on_schedule() -> Run {
    let mut run = Run::new(config(0, true, PartialApprovalRule::StopForStaff));
    run.on(loaded(100_000, 0));
    run.on(opened("carecredit"));
    run.on(declined("carecredit"));
    run.on(opened("sunbit"));
    run.on(declined("sunbit"));
    run.on(accept());
    run.on(Event::CustomerReady {
        customer_id: "cus_1".into(),
    });
    run.on(Event::ScheduleCreated {
        schedule_id: "sub_sched_1".into(),
    });
    assert_eq!(run.state.stripe.schedule_id.as_deref(), Some("sub_sched_1"));
    run
}

#[test]
fn each_refund_reverses_its_own_amount_once() {
    // Arrange
    let mut run = on_schedule();
    let refund = |cents| {
        Event::Payment(PaymentFact::Refunded {
            stripe_id: "ch_1".into(),
            amount: Money::usd(cents),
            refunds: None,
        })
    };

    // Act: $50 refunded, the same event again, then a second refund bringing the total to
    // $166.67, then the first event delivered late.
    let first = run.on(refund(5_000));
    let again = run.on(refund(5_000));
    let more = run.on(refund(16_667));
    let late = run.on(refund(5_000));

    // Assert
    assert_eq!(
        actions(&first),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Reversal {
                stripe_id: "ch_1".into(),
                amount: Money::usd(5_000),
                dispute: false,
                reversed: Some(Money::usd(5_000)),
                refund_id: None,
            }
        }]
    );
    let task = first.raise_task.unwrap();
    assert_eq!(task.kind, TaskKind::PaymentReversed);
    assert!(task.reason.contains("$50.00"), "{}", task.reason);
    assert!(again.ignored && again.commands.is_empty());
    assert_eq!(
        actions(&more),
        vec![&Action::WriteLedgerNote {
            note: NoteKind::Reversal {
                stripe_id: "ch_1".into(),
                amount: Money::usd(16_667),
                dispute: false,
                reversed: Some(Money::usd(11_667)),
                refund_id: None,
            }
        }],
        "a further partial refund reverses only what it adds"
    );
    assert!(
        more.raise_task.unwrap().reason.contains("$116.67"),
        "the task names this refund's amount"
    );
    assert!(late.ignored && late.commands.is_empty());
    assert_eq!(
        run.state.stripe.reversals_handled,
        vec!["ch_1:5000".to_owned(), "ch_1:16667".to_owned()]
    );
}

fn listed(entries: &[(&str, i64)]) -> Option<Vec<crate::refunds::ListedRefund>> {
    Some(
        entries
            .iter()
            .map(|(id, a)| crate::refunds::ListedRefund {
                id: (*id).to_owned(),
                amount: Money::usd(*a),
                returns_money: true,
            })
            .collect(),
    )
}

fn reversal_ids(t: &Transition) -> Vec<(Option<String>, Option<Money>)> {
    actions(t)
        .iter()
        .filter_map(|a| match a {
            Action::WriteLedgerNote {
                note:
                    NoteKind::Reversal {
                        refund_id,
                        reversed,
                        ..
                    },
            } => Some((refund_id.clone(), *reversed)),
            _ => None,
        })
        .collect()
}

#[test]
fn listed_refunds_are_reversed_by_their_ids_once_each_with_the_cumulative_rule_as_fallback() {
    // Arrange
    let mut run = on_schedule();
    let refund = |cents, refunds| {
        Event::Payment(PaymentFact::Refunded {
            stripe_id: "ch_1".into(),
            amount: Money::usd(cents),
            refunds,
        })
    };

    // Act: $30 refunded (listed); its event again; two more refunds arriving in one event
    // ($20 and $10, listed); a fourth refund whose lookup failed (cumulative: $70 in total);
    // the second event delivered late, listed.
    let first = run.on(refund(3_000, listed(&[("re_1", 3_000)])));
    let again = run.on(refund(3_000, listed(&[("re_1", 3_000)])));
    let two = run.on(refund(
        6_000,
        listed(&[("re_3", 1_000), ("re_2", 2_000), ("re_1", 3_000)]),
    ));
    let fallback = run.on(refund(7_000, None));
    let late = run.on(refund(
        6_000,
        listed(&[
            ("re_4", 1_000),
            ("re_3", 1_000),
            ("re_2", 2_000),
            ("re_1", 3_000),
        ]),
    ));

    // Assert
    assert_eq!(
        reversal_ids(&first),
        [(Some("re_1".to_owned()), Some(Money::usd(3_000)))]
    );
    assert!(again.ignored && again.commands.is_empty());
    assert_eq!(
        reversal_ids(&two),
        [
            (Some("re_2".to_owned()), Some(Money::usd(2_000))),
            (Some("re_3".to_owned()), Some(Money::usd(1_000)))
        ],
        "one reversal per refund, oldest first"
    );
    let task = two.raise_task.unwrap().reason;
    assert!(
        task.contains("$20.00 (re_2)") && task.contains("$10.00 (re_3)"),
        "{task}"
    );
    assert_eq!(
        reversal_ids(&fallback),
        [(None, Some(Money::usd(1_000)))],
        "the lookup failed: only the rise, keyed by the total"
    );
    assert!(
        late.ignored && late.commands.is_empty(),
        "re_4 was reversed by the fallback: {late:?}"
    );
    assert_eq!(
        crate::refunds::reversed_so_far(&run.state.stripe.reversals_handled, "ch_1"),
        7_000
    );
}

#[test]
fn a_note_recorded_before_ledger_reversals_still_reads() {
    // A Reversal stored without `reversed` (older rows) decodes as a note-only reversal.
    let mut old = serde_json::to_value(NoteKind::Reversal {
        stripe_id: "ch_1".into(),
        amount: Money::usd(5_000),
        dispute: false,
        reversed: Some(Money::usd(5_000)),
        refund_id: None,
    })
    .unwrap();
    assert!(old.as_object_mut().unwrap().remove("reversed").is_some());
    let Ok(NoteKind::Reversal { reversed, .. }) = serde_json::from_value::<NoteKind>(old.clone())
    else {
        panic!("an older reversal note must decode: {old}");
    };
    assert_eq!(reversed, None);
}

#[test]
fn a_dispute_is_a_note_and_a_task() {
    let mut run = on_schedule();
    let t = run.on(Event::Payment(PaymentFact::Disputed {
        stripe_id: "dp_1".into(),
        amount: Money::usd(16_667),
        reason: Some("product_not_received".into()),
    }));
    assert!(matches!(
        actions(&t)[..],
        [Action::WriteLedgerNote {
            note: NoteKind::Reversal { dispute: true, .. }
        }]
    ));
    let task = t.raise_task.unwrap();
    assert!(task.reason.contains("disputed"), "{}", task.reason);
    assert!(task.reason.contains("$166.67"), "{}", task.reason);
    assert!(
        task.reason.contains("reason: product not received"),
        "{}",
        task.reason
    );
}

#[test]
fn a_schedule_canceled_outside_chairside_is_a_task_and_is_not_cancelled_again() {
    // Arrange
    let mut run = on_schedule();

    // Act
    let t = run.on(Event::Payment(PaymentFact::ScheduleEnded {
        schedule_id: "sub_sched_1".into(),
        aborted: false,
    }));
    let later_withdrawal = run.on(Event::PlanWithdrawn {
        reason: "rejected".into(),
    });

    // Assert
    assert!(t.raise_task.unwrap().reason.contains("not by Chairside"));
    assert!(run.state.stripe.schedule_ended);
    assert!(
        !actions(&later_withdrawal)
            .iter()
            .any(|a| matches!(a, Action::CancelSchedule { .. })),
        "the workflow knows its schedule is gone"
    );
}

#[test]
fn our_own_cancellation_echoed_by_stripe_is_no_task() {
    let mut run = on_schedule();
    run.on(Event::PlanWithdrawn {
        reason: "rejected".into(),
    });
    let t = run.on(Event::Payment(PaymentFact::ScheduleEnded {
        schedule_id: "sub_sched_1".into(),
        aborted: false,
    }));
    assert!(t.raise_task.is_none());
    assert!(run.state.stripe.schedule_ended);
}

#[test]
fn an_aborted_schedule_is_a_task_and_another_schedule_is_ignored() {
    let mut run = on_schedule();
    let other = run.on(Event::Payment(PaymentFact::ScheduleEnded {
        schedule_id: "sub_sched_other".into(),
        aborted: true,
    }));
    let t = run.on(Event::Payment(PaymentFact::ScheduleEnded {
        schedule_id: "sub_sched_1".into(),
        aborted: true,
    }));
    assert!(other.ignored);
    assert!(
        t.raise_task
            .unwrap()
            .reason
            .contains("after failed payments")
    );
}

#[test]
fn a_final_failed_installment_tells_the_patient_and_staff_once() {
    let mut run = on_schedule();
    let fail = Event::Payment(PaymentFact::FinalFailure {
        stripe_id: "in_9".into(),
    });
    let t = run.on(fail.clone());
    assert_eq!(
        actions(&t),
        vec![&Action::SendMessage {
            message: MessageKind::PaymentFailed
        }]
    );
    let task = t.raise_task.unwrap();
    assert_eq!(task.kind, TaskKind::PaymentFailed);
    assert!(task.reason.contains("will not try again"));
    assert!(run.on(fail).ignored);
}

#[test]
fn the_payment_intent_of_a_paid_installment_is_recorded_once() {
    let mut run = on_schedule();
    let paid_by = || {
        Event::Payment(PaymentFact::InvoicePaymentIntent {
            invoice_id: "in_1".into(),
            payment_intent: "pi_1".into(),
        })
    };
    let first = run.on(paid_by());
    let again = run.on(paid_by());
    assert!(first.commands.is_empty() && !first.ignored);
    assert!(again.ignored);
    assert_eq!(
        run.state.stripe.invoice_payment_intents,
        vec!["pi_1".to_owned()]
    );
}
