//! Staff "Retry" on a failed payment, through `StaffActions` and the runner over the fakes: a
//! fresh pay link for the deposit still owed (never a second live link, never an expired or paid
//! one again), the patient told once through the message path, the decision audited; refused with
//! the reason when nothing is owed; a crash between the Stripe call and the commit creates one
//! session.

use std::time::Duration;

use chairside_engine::ports::MessageContent;
use chairside_engine::runner::Runner;
use chairside_engine::staff::{Refusal, StaffActions, StaffError};
use chairside_workflow::{Event, PayLinkRefusal, PaymentFact, Status, TaskKind, WorkflowId};

use crate::fakes::{Answer, Fault};
use crate::harness::{LEASE, World, patient};

/// An approved plan with a $200 deposit link (done), then Stripe reports the deposit's payment
/// failed (an async method bounced): a payment-failed task beside the finished financing.
async fn failed_deposit(w: &World) -> (WorkflowId, Runner, String) {
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let session = w.stripe.sessions_for(&id)[0].id.clone();
    webhook(
        w,
        &runner,
        &id,
        "evt_failed",
        PaymentFact::Failed {
            stripe_id: "pi_failed_1".into(),
        },
    )
    .await;
    w.settle(&runner).await;
    let tasks = w.tasks_besides_settlement(&runner).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].task.kind, TaskKind::PaymentFailed);
    (id, runner, session)
}

async fn webhook(w: &World, runner: &Runner, id: &WorkflowId, event: &str, fact: PaymentFact) {
    runner
        .store()
        .record_webhook(
            "stripe",
            event,
            vec![(id.clone(), Event::Payment(fact))],
            w.clock.now_utc(),
        )
        .await
        .unwrap();
}

/// The payment messages the patient received: (amount named, page link, a fresh pay link rather
/// than a failure).
fn payment_messages(w: &World) -> Vec<(Option<financing_core::Money>, String, bool)> {
    w.messenger
        .sent_to(&patient(1).id)
        .into_iter()
        .filter_map(|s| match s.content {
            MessageContent::PaymentFailed { amount, page_link } => Some((amount, page_link, false)),
            MessageContent::PayLinkReissued { deposit, page_link } => {
                Some((Some(deposit), page_link, true))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn retry_on_a_failed_deposit_issues_one_fresh_link_tells_the_patient_once_and_is_audited() {
    // Arrange: the deposit's session is dead in Stripe (its payment failed; then it expired).
    let w = World::new();
    let (id, runner, first) = failed_deposit(&w).await;
    w.stripe.expire_session(&first);
    assert_eq!(payment_messages(&w).len(), 1, "told of the failure once");
    let store = runner.store();
    let staff = StaffActions::new(&**store, "staff:alice");

    // Act
    let receipt = staff
        .retry(&id, w.clock.now_utc())
        .await
        .expect("retry admitted");
    w.settle(&runner).await;

    // Assert: one fresh session under the retry's own key, the dead one retired.
    assert_eq!(receipt.tasks_resolved, 1);
    let sessions = w.stripe.sessions_for(&id);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[1].amount, financing_core::Money::usd(20_000));
    assert_ne!(sessions[1].key, sessions[0].key);
    assert!(
        sessions[1].key.contains("reissue_deposit_link"),
        "{}",
        sessions[1].key
    );
    assert_eq!(
        w.stripe.script.calls("deposit_link_state"),
        vec![first.clone()]
    );
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    assert_eq!(
        state.stripe.checkout_session_id.as_deref(),
        Some(sessions[1].id.as_str())
    );
    assert_eq!(
        state.stripe.checkout_url.as_deref(),
        Some(sessions[1].url.as_str())
    );
    assert!(state.stripe.expired_sessions.contains(&first));
    assert!(!state.stripe.staff_pay_link && !state.stripe.reissuing_deposit_link);
    // The patient gets the page's link once more, naming the deposit; never Stripe's URL.
    let messages = payment_messages(&w);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[1].0, Some(financing_core::Money::usd(20_000)));
    assert!(
        !messages[0].2 && messages[1].2,
        "the failure, then the fresh link in its own words: {messages:?}"
    );
    assert!(
        !messages[1].1.contains("checkout.stripe"),
        "{}",
        messages[1].1
    );
    // Audited, the task closed; a second click finds no open task.
    let audit = store.audit(&id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.kind == "staff_action" && a.actor == "staff:alice" && a.detail == "retry"),
        "{audit:?}"
    );
    assert!(w.tasks_besides_settlement(&runner).await.is_empty());
    let again = staff.retry(&id, w.clock.now_utc()).await;
    assert!(
        matches!(
            again,
            Err(StaffError::Refused(Refusal::NotWaitingOnStaff { .. }))
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn retry_while_the_last_link_is_still_open_sends_it_again_and_creates_nothing() {
    // Arrange: the session is still open in Stripe.
    let w = World::new();
    let (id, runner, first) = failed_deposit(&w).await;
    let store = runner.store();

    // Act
    StaffActions::new(&**store, "staff:alice")
        .retry(&id, w.clock.now_utc())
        .await
        .unwrap();
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.stripe.sessions_for(&id).len(), 1, "no second live link");
    assert_eq!(w.stripe.script.count("create_deposit_link"), 1);
    let state = w.row(&runner, &id).await.state;
    assert_eq!(
        state.stripe.checkout_session_id.as_deref(),
        Some(first.as_str())
    );
    assert!(state.stripe.expired_sessions.is_empty());
    assert_eq!(payment_messages(&w).len(), 2);
}

#[tokio::test]
async fn retry_of_a_link_stripe_reports_paid_records_the_payment_and_sends_nothing() {
    // Arrange: the patient paid the link; the webhook is not here yet.
    let w = World::new();
    let (id, runner, first) = failed_deposit(&w).await;
    w.stripe.pay_session(&first);
    let store = runner.store();

    // Act
    StaffActions::new(&**store, "staff:alice")
        .retry(&id, w.clock.now_utc())
        .await
        .unwrap();
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.stripe.sessions_for(&id).len(), 1);
    let state = w.row(&runner, &id).await.state;
    assert!(state.stripe.deposit_paid);
    assert_eq!(state.status, Status::Done);
    assert_eq!(payment_messages(&w).len(), 1, "nothing owed: no message");
}

#[tokio::test]
async fn retry_when_the_deposit_is_paid_is_refused_with_the_reason_and_writes_nothing() {
    // Arrange: the failure, then the deposit paid through its session after all.
    let w = World::new();
    let (id, runner, first) = failed_deposit(&w).await;
    webhook(
        &w,
        &runner,
        &id,
        "evt_paid",
        PaymentFact::CheckoutCompleted { session_id: first },
    )
    .await;
    w.settle(&runner).await;
    let store = runner.store();
    let audit_before = store.audit(&id).await.unwrap().len();

    // Act
    let result = StaffActions::new(&**store, "staff:alice")
        .retry(&id, w.clock.now_utc())
        .await;

    // Assert
    let err = result.expect_err("nothing is owed");
    assert!(
        matches!(
            err,
            StaffError::Refused(Refusal::NoPayLink {
                why: PayLinkRefusal::AlreadyPaid,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("the deposit is already paid"),
        "{err}"
    );
    assert_eq!(store.audit(&id).await.unwrap().len(), audit_before);
    assert_eq!(
        w.tasks_besides_settlement(&runner).await.len(),
        1,
        "the task stays open"
    );
    assert!(w.store().await.inbox_events(&id).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_stripe_call_and_the_commit_creates_one_fresh_session() {
    // Arrange: the fresh session is created in Stripe, then the runner dies before recording it.
    let w = World::new();
    let (id, runner, first) = failed_deposit(&w).await;
    w.stripe.expire_session(&first);
    let store = runner.store();
    StaffActions::new(&**store, "staff:alice")
        .retry(&id, w.clock.now_utc())
        .await
        .unwrap();
    w.stripe
        .script
        .fault("create_deposit_link", Fault::HangAfterApplying, 1);
    let doomed = w.runner("doomed").await;
    let task = tokio::spawn(async move { doomed.run_until_idle(100).await });
    w.stripe.script.gate.entered().await;
    task.abort();
    let _ = task.await;

    // Act: another runner takes over after the lease.
    w.clock.advance(LEASE + Duration::from_secs(1));
    let heir = w.runner("heir").await;
    w.settle(&heir).await;

    // Assert: the same key twice, so Stripe replayed the session it made; one message.
    let keys = w.stripe.script.calls("create_deposit_link");
    assert_eq!(
        keys.len(),
        3,
        "first link, the crashed call, its repeat: {keys:?}"
    );
    assert_eq!(keys[1], keys[2]);
    let sessions = w.stripe.sessions_for(&id);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let state = w.row(&heir, &id).await.state;
    assert_eq!(
        state.stripe.checkout_session_id.as_deref(),
        Some(sessions[1].id.as_str())
    );
    assert_eq!(payment_messages(&w).len(), 2);
}
