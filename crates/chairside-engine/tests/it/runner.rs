//! The runner end to end over the fakes and a SQLite file: every path to its end, faults of each
//! class, withdrawals, webhooks, two runners on one file, and a runner that dies mid-call.

use std::time::Duration;

use chairside_engine::ports::{Channel, MessageContent};
use chairside_workflow::{
    Event, LenderPhase, PaymentFact, StaffAction, Stage, Status, TaskKind, WorkflowId,
};
use financing_core::{
    AttemptOutcome, ErrorKind, LenderId, LenderSlot, Money, PatientContact, PlanId, Waterfall,
    WaterfallPolicy,
};
use sqlx::Row;

use crate::fakes::{Answer, FakeLender, Fault};
use crate::harness::{
    LEASE, World, logs, patient, plan, plan_with_code, practice_id, raw_pool, t0,
};

fn mins(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

/// The message kinds a patient received, in order.
fn kinds(sent: &[crate::fakes::Sent]) -> Vec<&'static str> {
    sent.iter()
        .map(|s| match &s.content {
            MessageContent::ApplicationLink { .. } => "application_link",
            MessageContent::Reminder { .. } => "reminder",
            MessageContent::FinancingSummary(_) => "summary",
            MessageContent::PaymentFailed { .. } => "payment_failed",
            MessageContent::PayLinkReissued { .. } => "pay_link_reissued",
            MessageContent::InHouseOffer(_) => "in_house_offer",
            MessageContent::IntakeLink { .. } => "intake_link",
        })
        .collect()
}

#[tokio::test]
async fn an_accepted_plan_runs_to_done_with_one_customer_one_deposit_link_and_one_ledger_note() {
    // Arrange: $1,500 fee, $500 insurance: $1,000 portion, $200 deposit, $800 financed.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let row = w.row(&runner, &id).await;
    assert_eq!(row.state.status, Status::Done);
    assert_eq!(row.next_due_at, None, "nothing left scheduled");
    let customers = w.stripe.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].patient, patient(1).id);
    let sessions = w.stripe.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].amount, Money::usd(20_000));
    assert_eq!(sessions[0].customer, customers[0].id);
    assert_eq!(sessions[0].workflow, id);
    assert!(w.stripe.schedules().is_empty());

    let notes = w.pms.notes();
    assert_eq!(notes.len(), 1);
    let note = &notes[0].text;
    assert!(
        note.contains("financing arranged (CareCredit approved)"),
        "{note}"
    );
    assert!(note.contains("Financed by CareCredit: $800.00"), "{note}");
    assert!(note.contains("Deposit: $200.00"), "{note}");
    assert!(
        note.contains(&customers[0].id) && note.contains(&sessions[0].id),
        "{note}"
    );
    assert!(
        notes[0].marker.starts_with(id.as_str()),
        "the marker names the workflow"
    );
    assert!(!note.contains("D2740"), "no procedure codes in the note");

    // Operatory-to-ledger: accepted 5 minutes before t0, approved at the first poll 10 minutes in.
    assert_eq!(row.state.ledger_written_at, Some(t0() + mins(10)));
    assert_eq!(row.state.operatory_to_ledger(), Some(mins(15)));
    let pool = raw_pool(&w.path).await;
    let stored: Option<i64> = sqlx::query_scalar("SELECT ledger_written_at FROM workflows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, Some((t0() + mins(10)).timestamp_millis()));

    let sent = w.messenger.sent_to(&patient(1).id);
    assert_eq!(kinds(&sent), vec!["application_link", "summary"]);
    assert_eq!(sent[0].channels, vec![Channel::Email, Channel::Sms]);
    let MessageContent::FinancingSummary(summary) = &sent[1].content else {
        unreachable!()
    };
    assert_eq!(summary.patient_portion, Money::usd(100_000));
    assert_eq!(summary.deposit, Money::usd(20_000));
    assert_eq!(
        summary.deposit_link.as_deref(),
        Some(sessions[0].url.as_str())
    );
    // The lender by its display name, and its terms as it reported them with the approval.
    assert_eq!(
        summary.financed,
        Some(("CareCredit".into(), Money::usd(80_000)))
    );
    assert_eq!(
        summary.lender_terms.as_ref().and_then(|t| t.term_months),
        Some(12)
    );

    // The lender saw the amount only: no prefill and no lookup in Texas without counsel.
    let requests = w.carecredit.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].amount, Money::usd(80_000));
    assert!(requests[0].prefill.is_none() && requests[0].lookup.is_none());
    assert_eq!(
        w.sunbit.script.total(),
        0,
        "the second lender is never asked"
    );
    let audit = runner.store().audit(&id).await.unwrap();
    assert!(
        audit.iter().any(|a| a.kind == "disclosure"
            && a.detail == "application (amount only) sent to carecredit"),
        "{audit:?}"
    );
    assert!(w.tasks_besides_settlement(&runner).await.is_empty());
}

#[tokio::test]
async fn the_application_link_and_its_reminders_point_to_the_patient_page_never_the_lender() {
    // Arrange: the patient never finishes, so every reminder goes out.
    let w = World::new();
    let _id = w.accept(1, 150_000, 50_000);
    let runner = w.runner("runner-1").await;
    // Act
    w.settle(&runner).await;
    // Assert
    let sent = w.messenger.sent_to(&patient(1).id);
    let links: Vec<&str> = sent
        .iter()
        .filter_map(|s| match &s.content {
            MessageContent::ApplicationLink { link, .. }
            | MessageContent::Reminder { link, .. } => Some(link.as_str()),
            _ => None,
        })
        .collect();
    assert!(links.len() >= 2, "{sent:?}");
    for link in links {
        assert!(
            link.starts_with("https://pay.smile.example.test/p/"),
            "{link}"
        );
        assert!(!link.contains("lender.test"), "{link}");
    }
}

#[tokio::test]
async fn a_message_is_journaled_attempting_by_the_commit_before_its_send_and_sent_after() {
    // Arrange: a messenger that prepares its messages.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;
    let pool = raw_pool(&w.path).await;
    let _ = w.messenger.prepare_on.set(pool.clone());

    // Act
    w.settle(&runner).await;

    // Assert: the workflow ends as without preparing; messages went out prepared, each finding
    // every channel already journaled `attempting` (by the commit that journaled its intent),
    // and each is journaled `sent` by its own step's commit.
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
    let journaled = w.messenger.journal_at_send.lock().unwrap().clone();
    assert!(!journaled.is_empty(), "no message was sent prepared");
    for (key, records) in &journaled {
        assert!(!records.is_empty());
        for record in records {
            assert_eq!(record.as_deref(), Some("attempting"), "{key}");
        }
        let sent = w
            .messenger
            .sent()
            .into_iter()
            .filter(|s| &s.key == key)
            .count();
        assert_eq!(sent, 1, "{key} sent once");
        let states: Vec<String> =
            sqlx::query_scalar("SELECT state FROM message_sends WHERE message_key = ?")
                .bind(key)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(states.len(), records.len(), "{key}");
        assert!(states.iter().all(|s| s == "sent"), "{key}: {states:?}");
    }
}

#[tokio::test]
async fn a_decline_moves_to_the_second_lender_which_approves() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    let outcomes: Vec<(&str, &AttemptOutcome)> = state
        .attempts
        .iter()
        .map(|a| (a.lender.as_str(), &a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("carecredit", &AttemptOutcome::Declined),
            (
                "sunbit",
                &AttemptOutcome::Approved {
                    amount: Money::usd(80_000)
                }
            )
        ]
    );
    assert_eq!(
        state.result.and_then(|r| r.financed),
        Some((LenderId::new("sunbit"), Money::usd(80_000)))
    );
    assert_eq!(w.stripe.sessions().len(), 1);
    assert!(w.stripe.schedules().is_empty());
    let notes = w.pms.notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0]
            .text
            .contains("Lenders asked: CareCredit declined, Sunbit approved.")
    );
}

fn offering(row: &chairside_engine::store::WorkflowRow) -> bool {
    matches!(row.state.stage, Stage::OfferingInHouse { .. })
}

/// The patient's answer, queued as the patient page queues it.
async fn answer(
    runner: &chairside_engine::runner::Runner,
    id: &WorkflowId,
    accepted: bool,
    at: chrono::DateTime<chrono::Utc>,
) {
    let event = Event::InHouseAnswered {
        accepted,
        wording: "Accept the payment plan pay Smile $800.00 in installments".into(),
    };
    let queued = runner
        .store()
        .queue_patient_answer(id, &event, "patient answered", at)
        .await
        .unwrap();
    assert!(queued);
}

#[tokio::test]
async fn when_every_lender_declines_the_in_house_plan_is_offered_and_set_up_once_accepted() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.messenger
        .quiet_on_in_house
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let runner = w.runner("runner-1").await;

    // Act: every lender declines; the plan is offered and nothing is set up at Stripe.
    w.settle_until(&runner, &id, offering).await;
    assert_eq!(
        w.stripe.script.total(),
        0,
        "nothing at Stripe before the patient accepts"
    );
    let sent = w.messenger.sent_to(&patient(1).id);
    assert_eq!(kinds(&sent).last(), Some(&"in_house_offer"));
    let pending = |runner: &chairside_engine::runner::Runner| {
        let (store, id) = (runner.store().clone(), id.clone());
        async move { store.patient_answer_pending(&id).await.unwrap() }
    };
    assert!(!pending(&runner).await, "no answer queued yet");
    // A second answer while the first waits writes nothing.
    answer(&runner, &id, true, w.clock.now_utc()).await;
    assert!(pending(&runner).await, "the answer waits for the runner");
    let again = runner
        .store()
        .queue_patient_answer(
            &id,
            &Event::InHouseAnswered {
                accepted: true,
                wording: "again".into(),
            },
            "again",
            w.clock.now_utc(),
        )
        .await
        .unwrap();
    assert!(!again);
    w.settle(&runner).await;

    // Assert
    assert!(!pending(&runner).await, "the answer was applied");
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    assert_eq!(w.stripe.script.count("create_schedule"), 1);
    let schedules = w.stripe.schedules_for(&id);
    assert_eq!(w.stripe.schedules().len(), 1);
    assert_eq!(schedules.len(), 1);
    assert_eq!(
        schedules[0].key,
        w.stripe.script.calls("create_schedule")[0]
    );
    let offer = &schedules[0].offer;
    assert_eq!(offer.total, Money::usd(80_000));
    assert_eq!(offer.installments.len(), 6);
    assert_eq!(
        offer.installments.iter().map(|m| m.minor()).sum::<i64>(),
        80_000
    );
    assert_eq!(schedules[0].customer, w.stripe.customers()[0].id);
    assert_eq!(
        w.stripe.sessions_for(&id).len(),
        1,
        "the deposit still goes by link"
    );
    assert_eq!(
        state.stripe.schedule_id.as_deref(),
        Some(schedules[0].id.as_str())
    );
    let sent = w.messenger.sent_to(&patient(1).id);
    let Some(MessageContent::FinancingSummary(summary)) = sent.last().map(|s| &s.content) else {
        panic!("the summary is the last message: {sent:?}");
    };
    assert_eq!(summary.installments, Some(6));
    assert_eq!(summary.financed, None);
    let acceptance = state
        .in_house_acceptance
        .expect("the acceptance is recorded");
    assert!(
        acceptance.wording.contains("$800.00"),
        "{}",
        acceptance.wording
    );
    let notes = w.pms.notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0]
            .text
            .contains("In-house plan: $800.00 in 6 installments"),
        "{}",
        notes[0].text
    );
}

#[tokio::test]
async fn an_in_house_offer_nobody_answers_is_reminded_then_given_to_staff_and_bills_nothing() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.messenger
        .quiet_on_in_house
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let runner = w.runner("runner-1").await;

    // Act: the patient never answers.
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::WaitingOnStaff);
    assert_eq!(
        w.stripe.script.total(),
        0,
        "nothing billed without an answer"
    );
    let sent = w.messenger.sent_to(&patient(1).id);
    let offers = kinds(&sent)
        .into_iter()
        .filter(|k| *k == "in_house_offer")
        .count();
    assert_eq!(
        offers,
        1 + w.config.reminder_delays.len(),
        "the offer and every reminder"
    );
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.kind, TaskKind::PatientQuiet);
}

#[tokio::test]
async fn a_declined_in_house_offer_is_a_staff_task_and_bills_nothing() {
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.messenger
        .quiet_on_in_house
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let runner = w.runner("runner-1").await;
    w.settle_until(&runner, &id, offering).await;
    answer(&runner, &id, false, w.clock.now_utc()).await;
    w.settle(&runner).await;
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::WaitingOnStaff);
    assert_eq!(w.stripe.script.total(), 0);
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks[0].task.kind, TaskKind::NoFinancing);
    assert!(
        tasks[0].task.reason.contains("declined"),
        "{}",
        tasks[0].task.reason
    );
}

#[tokio::test]
async fn a_partial_approval_is_a_counteroffer_for_staff_and_nothing_is_charged() {
    // Arrange: CareCredit approves $500 of the $800 asked; the practice stops for staff.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::ApproveCents(50_000));
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::WaitingOnStaff);
    assert_eq!(
        state.attempts[0].outcome,
        AttemptOutcome::PartiallyApproved {
            approved: Money::usd(50_000)
        }
    );
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.kind, TaskKind::Counteroffer);
    let reason = &tasks[0].task.reason;
    assert!(
        reason.contains("$500.00") && reason.contains("$300.00 short"),
        "{reason}"
    );
    assert_eq!(w.sunbit.script.total(), 0);
    assert_eq!(w.stripe.script.total(), 0);
}

#[tokio::test]
async fn a_partial_approval_with_the_remainder_in_house_finances_both_parts() {
    // Arrange: keep looking for full coverage; none comes, so the remainder goes in house.
    let mut w = World::new();
    let slots = w.config.waterfall.slots().to_vec();
    w.config.waterfall = Waterfall::new(
        slots,
        WaterfallPolicy {
            on_partial: financing_core::PartialApprovalRule::ContinueForFullCoverage,
            in_house_fallback: true,
        },
    );
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::ApproveCents(50_000));
    w.sunbit.on_start(Answer::Decline);
    w.messenger
        .quiet_on_in_house
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let runner = w.runner("runner-1").await;

    // Act: the remainder is offered in house; the patient accepts it.
    w.settle_until(&runner, &id, offering).await;
    assert_eq!(w.stripe.script.total(), 0);
    answer(&runner, &id, true, w.clock.now_utc()).await;
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    let result = state.result.unwrap();
    assert_eq!(
        result.financed,
        Some((LenderId::new("carecredit"), Money::usd(50_000)))
    );
    let schedules = w.stripe.schedules_for(&id);
    assert_eq!(schedules.len(), 1);
    assert_eq!(
        schedules[0].offer.total,
        Money::usd(30_000),
        "the remainder only"
    );
    assert_eq!(w.stripe.sessions_for(&id).len(), 1);
    assert!(w.tasks_besides_settlement(&runner).await.is_empty());
}

#[tokio::test]
async fn a_quiet_patient_gets_every_reminder_then_becomes_a_staff_task() {
    // Arrange: CareCredit answers "pending" forever.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let sent = w.messenger.sent_to(&patient(1).id);
    assert_eq!(
        kinds(&sent),
        vec!["application_link", "reminder", "reminder"]
    );
    assert!(
        w.carecredit.script.count("application_status") >= 5,
        "polled while waiting"
    );
    assert_eq!(w.carecredit.script.count("cancel_application"), 1);
    assert_eq!(
        w.sunbit.script.total(),
        0,
        "a quiet patient is not sent to the next lender"
    );
    assert_eq!(w.stripe.script.total(), 0);
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.kind, TaskKind::PatientQuiet);
    // The lender by the name patients know, never its id.
    assert!(
        tasks[0].task.reason.contains("CareCredit application"),
        "{}",
        tasks[0].task.reason
    );
    assert!(tasks[0].task.reason.contains("call the patient"));
    // Reminders at +30 min and +90 min, then give up 60 min after the last one.
    assert_eq!(tasks[0].created_at, t0() + mins(150));
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::WaitingOnStaff);
    assert_eq!(state.attempts[0].outcome, AttemptOutcome::Abandoned);
    let notes = w.pms.notes();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].text.contains("needs staff"), "{}", notes[0].text);
}

#[tokio::test]
async fn resend_link_to_a_quiet_patient_opens_a_fresh_lender_session_under_a_new_reference() {
    // Arrange: the patient went quiet at CareCredit; staff have the task.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    assert_eq!(w.tasks(&runner).await.len(), 1);
    let first: Vec<_> = w
        .carecredit
        .requests()
        .into_iter()
        .map(|r| r.reference)
        .collect();
    assert_eq!(first.len(), 1);

    // Act: "Resend link", through the one staff service, then the runner carries it out; the
    // patient finishes this time.
    let store = w.store().await;
    chairside_engine::staff::StaffActions::new(&*store, "staff:alice")
        .act(
            chairside_engine::staff::StaffActions::new(&*store, "staff:alice")
                .request(&id, chairside_workflow::StaffAction::ResendLink),
            w.clock.now_utc(),
        )
        .await
        .expect("resend admitted");
    w.carecredit.on_status(Answer::ApproveCents(100_000));
    w.settle(&runner).await;

    // Assert: a second application under a new reference (a new session at the lender, not the
    // lapsed one found again), a fresh link to the patient, and the plan financed.
    let refs: Vec<_> = w
        .carecredit
        .requests()
        .into_iter()
        .map(|r| r.reference)
        .collect();
    assert_eq!(refs.len(), 2, "{refs:?}");
    assert_ne!(refs[0], refs[1]);
    for r in &refs {
        let parsed = chairside_workflow::parse_application_reference(r.as_str()).expect("parses");
        assert_eq!(parsed.workflow, id);
        assert_eq!(parsed.lender, LenderId::new("carecredit"));
        assert!(parsed.seq.is_some());
    }
    let sent = kinds(&w.messenger.sent_to(&patient(1).id));
    assert_eq!(
        sent.iter().filter(|k| **k == "application_link").count(),
        2,
        "{sent:?}"
    );
    let state = w.row(&runner, &id).await.state;
    assert_eq!(
        state.result.as_ref().and_then(|r| r.financed.clone()),
        Some((LenderId::new("carecredit"), Money::usd(80_000)))
    );
    assert!(w.tasks_besides_settlement(&runner).await.is_empty());
    let audit = chairside_engine::store::ReportStore::audit(&*store, &id)
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.kind == "staff_action" && a.actor == "staff:alice"),
        "the resend is audited with who"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_idempotency_key_and_create_one_object() {
    // Arrange: two 503s on the deposit link, then success.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.stripe
        .script
        .fail("create_deposit_link", ErrorKind::TRANSIENT, 2);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
    let keys = w.stripe.script.calls("create_deposit_link");
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert!(keys[0].starts_with(id.as_str()) && keys[0].contains("create_deposit_link"));
    assert_eq!(w.stripe.sessions().len(), 1);
    assert_eq!(w.stripe.sessions()[0].key, keys[0]);
    // The journal shows each attempt with the same key and its outcome.
    let pool = raw_pool(&w.path).await;
    let rows = sqlx::query(
        "SELECT attempt, idempotency_key, outcome FROM effects
         WHERE action = 'create_deposit_link' ORDER BY attempt",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let journal: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.get("attempt"), r.get("idempotency_key"), r.get("outcome")))
        .collect();
    assert_eq!(journal.len(), 3, "{journal:?}");
    assert_eq!(
        journal.iter().map(|j| j.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(journal.iter().all(|j| j.1 == keys[0]));
    assert!(journal[0].2.starts_with("transient"), "{journal:?}");
    assert_eq!(journal[2].2, "deposit_link_created");
}

#[tokio::test]
async fn a_retry_after_from_the_server_delays_the_retry_at_least_that_long() {
    // Arrange: a 429 with Retry-After: 120 on the customer.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    let slow = ErrorKind::Transient {
        retry_after: Some(Duration::from_secs(120)),
    };
    w.stripe.script.fail("ensure_customer", slow, 1);
    let runner = w.runner("runner-1").await;

    // Act
    runner.run_until_idle(100).await.unwrap();
    let waiting = w.row(&runner, &id).await;
    w.settle(&runner).await;

    // Assert
    assert_eq!(waiting.next_action.as_deref(), Some("ensure_customer"));
    assert_eq!(
        waiting.next_due_at,
        Some(t0() + chrono::Duration::seconds(120))
    );
    assert_eq!(w.stripe.script.count("ensure_customer"), 2);
    assert_eq!(w.stripe.customers().len(), 1);
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
}

#[tokio::test]
async fn an_indeterminate_note_write_is_reconciled_by_its_marker_so_one_note_exists() {
    // Arrange: the practice system writes the note, then the response is lost.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.pms.script.fault(
        "write_note",
        Fault::FailAfterApplying(ErrorKind::Indeterminate),
        1,
    );
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.pms.notes_for(&id).len(), 1);
    assert_eq!(
        w.pms.script.count("write_note"),
        1,
        "never written blindly a second time"
    );
    assert_eq!(
        w.pms.script.count("find_note"),
        2,
        "checked before each attempt"
    );
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    assert!(state.ledger_written_at.is_some());
}

#[tokio::test]
async fn a_stripe_response_lost_after_creation_does_not_create_a_second_schedule() {
    // Arrange: the in-house path; the schedule is created but the response is lost.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.stripe.script.fault(
        "create_schedule",
        Fault::FailAfterApplying(ErrorKind::Indeterminate),
        1,
    );
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let keys = w.stripe.script.calls("create_schedule");
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0], keys[1],
        "the repeat carries the same idempotency key"
    );
    assert_eq!(w.stripe.schedules().len(), 1);
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    assert_eq!(
        state.stripe.schedule_id,
        Some(w.stripe.schedules()[0].id.clone())
    );
}

#[tokio::test]
async fn a_permanent_stripe_failure_becomes_a_staff_task_with_a_clear_reason_and_nothing_more_is_created()
 {
    // Arrange: Stripe refuses the deposit link with a 400.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.stripe
        .script
        .fail("create_deposit_link", ErrorKind::Permanent, 1);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    assert_eq!(
        w.stripe.script.count("create_deposit_link"),
        1,
        "a permanent failure is not retried"
    );
    assert!(w.stripe.sessions().is_empty() && w.stripe.schedules().is_empty());
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.kind, TaskKind::SystemError);
    let reason = &tasks[0].task.reason;
    assert!(
        reason.contains("create_deposit_link failed") && reason.contains("HTTP 400"),
        "{reason}"
    );
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::WaitingOnStaff);
    assert_eq!(
        kinds(&w.messenger.sent_to(&patient(1).id)),
        Vec::<&str>::new(),
        "no summary"
    );
    let notes = w.pms.notes();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].text.contains("needs staff"), "{}", notes[0].text);
}

#[tokio::test]
async fn a_staff_retry_after_a_permanent_failure_finishes_the_workflow() {
    // Arrange: the deposit link failed for good once; staff fixed the cause.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.stripe
        .script
        .fail("create_deposit_link", ErrorKind::Permanent, 1);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;

    // Act
    runner
        .store()
        .enqueue(
            &id,
            "staff:test",
            &Event::Staff {
                action: StaffAction::Retry,
            },
            w.clock.now_utc(),
        )
        .await
        .unwrap();
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    assert_eq!(w.stripe.sessions().len(), 1);
    assert_eq!(w.stripe.customers().len(), 1);
    assert_eq!(kinds(&w.messenger.sent_to(&patient(1).id)), vec!["summary"]);
    assert_eq!(
        w.pms.notes_for(&id).len(),
        2,
        "one note per outcome: the task, then the result"
    );
}

/// Runs `w` with one runner and checks that the workflow went to staff for `kind` before any lender
/// or Stripe call; returns the task's reason.
async fn goes_to_staff_untouched(w: &World, id: &WorkflowId, kind: TaskKind) -> String {
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let state = w.row(&runner, id).await.state;
    assert_eq!(state.status, Status::WaitingOnStaff);
    assert_eq!(
        w.carecredit.script.total() + w.sunbit.script.total(),
        0,
        "no lender call"
    );
    assert_eq!(w.stripe.script.total(), 0, "no Stripe call");
    assert!(w.messenger.sent().is_empty());
    assert_eq!(
        w.pms.notes_for(id).len(),
        1,
        "staff see it in the ledger too"
    );
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.kind, kind);
    tasks[0].task.reason.clone()
}

#[tokio::test]
async fn insurance_above_the_fee_becomes_a_bad_data_task_without_any_lender_or_stripe_call() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 50_000, 60_000);

    // Act
    let reason = goes_to_staff_untouched(&w, &id, TaskKind::BadData).await;

    // Assert
    assert!(
        reason.contains("insurance estimates") && reason.contains("above its fee"),
        "{reason}"
    );
}

#[tokio::test]
async fn an_unreadable_practice_system_record_becomes_a_bad_data_task() {
    // Arrange: the patient endpoint answers with a shape the adapter cannot decode (an unreadable
    // plan is caught earlier, by detection: tests/it/detect.rs).
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.pms.script.fail("patient", ErrorKind::Permanent, 1);

    // Act
    let reason = goes_to_staff_untouched(&w, &id, TaskKind::BadData).await;

    // Assert
    assert!(reason.contains("could not be read"), "{reason}");
}

#[tokio::test]
async fn an_unreachable_patient_becomes_a_staff_task_without_any_lender_or_stripe_call() {
    // Arrange
    let w = World::new();
    let contact = PatientContact {
        mobile_phone: None,
        email: None,
        ..patient(1)
    };
    let id = w.accept_plan(plan(1, 150_000, 50_000), contact);

    // Act
    let reason = goes_to_staff_untouched(&w, &id, TaskKind::Unreachable).await;

    // Assert
    assert!(
        reason.contains("neither a mobile phone nor an email"),
        "{reason}"
    );
}

#[tokio::test]
async fn an_unknown_lender_id_in_the_order_becomes_a_staff_task_naming_it() {
    // Arrange: the practice's order names a lender that is not configured.
    let mut w = World::new();
    let slot = LenderSlot {
        lender: LenderId::new("acme-credit"),
        limits: financing_core::AmountLimits::NONE,
    };
    w.config.waterfall = Waterfall::new(vec![slot], WaterfallPolicy::default());
    let id = w.accept(1, 150_000, 50_000);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let tasks = w.tasks(&runner).await;
    assert!(
        tasks.iter().any(|t| t.task.reason.contains("acme-credit")),
        "staff must learn that the lender is not configured: {tasks:?}"
    );
    assert_ne!(w.row(&runner, &id).await.state.status, Status::Active);
}

#[tokio::test]
async fn a_plan_rejected_after_acceptance_cancels_the_schedule_and_expires_the_link() {
    // Arrange: the in-house path ran to its end.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    assert_eq!(w.stripe.schedules().len(), 1);

    // Act: the practice system reports the plan rejected (twice, as feeds do).
    w.pms.reject(&PlanId::new("tx-1"), "1", &patient(1).id);
    w.pms.reject(&PlanId::new("tx-1"), "1", &patient(1).id);
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(state.stage, Stage::Settled);
    assert_eq!(w.stripe.script.count("cancel_schedule"), 1);
    assert!(w.stripe.schedules()[0].cancelled);
    assert_eq!(w.stripe.script.count("expire_deposit_link"), 1);
    assert!(w.stripe.sessions()[0].expired);
    let notes = w.pms.notes_for(&id);
    assert_eq!(notes.len(), 2, "the outcome note and the cancellation note");
    assert!(
        notes[1].text.contains("financing cancelled"),
        "{}",
        notes[1].text
    );
    assert_eq!(w.stripe.schedules().len(), 1, "nothing new created");
}

#[tokio::test]
async fn a_plan_rejected_while_the_patient_applies_withdraws_the_application() {
    // Arrange: the link went out, the patient has not finished.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    let runner = w.runner("runner-1").await;
    runner.run_until_idle(100).await.unwrap();
    assert!(matches!(
        w.row(&runner, &id).await.state.stage,
        Stage::Financing(ref c) if matches!(c.phase, LenderPhase::AwaitingPatient { .. })
    ));

    // Act
    w.pms.reject(&PlanId::new("tx-1"), "1", &patient(1).id);
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(w.carecredit.script.count("cancel_application"), 1);
    assert_eq!(w.stripe.script.total(), 0);
    assert_eq!(
        kinds(&w.messenger.sent_to(&patient(1).id)),
        vec!["application_link"]
    );
    assert!(w.tasks_besides_settlement(&runner).await.is_empty());
}

#[tokio::test]
async fn a_payment_webhook_delivered_twice_writes_one_payment_note() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let session = w.stripe.sessions()[0].id.clone();
    let paid = || {
        vec![(
            id.clone(),
            Event::Payment(PaymentFact::Paid {
                stripe_id: session.clone(),
                amount: Money::usd(20_000),
            }),
        )]
    };
    let store = runner.store();
    let now = w.clock.now_utc();

    // Act: the same delivery twice, and a second event about the same payment.
    assert!(
        store
            .record_webhook("stripe", "evt_1", paid(), now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_webhook("stripe", "evt_1", paid(), now)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_webhook("stripe", "evt_2", paid(), now)
            .await
            .unwrap()
    );
    w.settle(&runner).await;

    // Assert
    let notes = w.pms.notes_for(&id);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[1].text.contains(&format!(
            "payment of $200.00 received through Stripe ({session})"
        )),
        "{}",
        notes[1].text
    );
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
}

#[tokio::test]
async fn a_final_failed_installment_messages_the_patient_with_the_page_link_and_tasks_staff_once() {
    // Arrange: the in-house schedule is running (every lender declined).
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    assert_eq!(w.stripe.schedules().len(), 1);
    let before = w.messenger.sent_to(&patient(1).id).len();
    let last_retry_failed = || {
        vec![(
            id.clone(),
            Event::Payment(PaymentFact::FinalFailure {
                stripe_id: "in_last".into(),
            }),
        )]
    };
    let store = runner.store();
    let now = w.clock.now_utc();

    // Act: Stripe's last retry failed (invoice.payment_failed without a next attempt), then the
    // same invoice is marked uncollectible (another event about the same failure).
    assert!(
        store
            .record_webhook("stripe", "evt_final", last_retry_failed(), now)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_webhook("stripe", "evt_uncollectible", last_retry_failed(), now)
            .await
            .unwrap()
    );
    w.settle(&runner).await;

    // Assert: one message naming the patient page, one task.
    let sent = w.messenger.sent_to(&patient(1).id);
    let failed: Vec<_> = sent[before..]
        .iter()
        .filter_map(|s| match &s.content {
            MessageContent::PaymentFailed { page_link, .. } => Some(page_link.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", kinds(&sent));
    assert!(
        failed[0].contains("/p/"),
        "the patient page link: {}",
        failed[0]
    );
    let tasks: Vec<_> = w
        .tasks_besides_settlement(&runner)
        .await
        .into_iter()
        .filter(|t| t.task.kind == TaskKind::PaymentFailed)
        .collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert!(tasks[0].task.reason.contains("will not try again"));
}

#[tokio::test]
async fn partial_refunds_are_noted_once_each_with_their_own_amount_where_the_ledger_takes_no_payments()
 {
    // Arrange: a workflow with a Stripe customer (the fake practice system takes no payments,
    // as Dentrix Ascend: reversals are notes).
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let notes_before = w.pms.notes_for(&id).len();
    let refunded = |cents| {
        vec![(
            id.clone(),
            Event::Payment(PaymentFact::Refunded {
                stripe_id: "ch_1".into(),
                amount: Money::usd(cents),
                refunds: None,
            }),
        )]
    };
    let store = runner.store();
    let now = w.clock.now_utc();

    // Act: $50 refunded, the same event again, then $25 more (total $75).
    for (event, cents) in [("evt_r1", 5_000), ("evt_r1b", 5_000), ("evt_r2", 7_500)] {
        store
            .record_webhook("stripe", event, refunded(cents), now)
            .await
            .unwrap();
    }
    w.settle(&runner).await;

    // Assert
    let notes = w.pms.notes_for(&id);
    let refunds: Vec<_> = notes[notes_before..]
        .iter()
        .filter(|n| n.text.contains("refund of"))
        .map(|n| n.text.clone())
        .collect();
    assert_eq!(refunds.len(), 2, "{refunds:?}");
    assert!(
        refunds[0].contains("refund of $50.00 through Stripe (ch_1; $50.00 refunded in total)"),
        "{}",
        refunds[0]
    );
    assert!(
        refunds[1].contains("refund of $25.00 through Stripe (ch_1; $75.00 refunded in total)"),
        "{}",
        refunds[1]
    );
}

#[tokio::test]
async fn refunds_are_reversed_once_each_by_their_stripe_ids_and_by_the_total_when_the_lookup_fails()
{
    // Arrange: as above; Stripe lists the charge's refunds.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let notes_before = w.pms.notes_for(&id).len();
    let refunded = |cents| {
        vec![(
            id.clone(),
            Event::Payment(PaymentFact::Refunded {
                stripe_id: "ch_1".into(),
                amount: Money::usd(cents),
                refunds: None,
            }),
        )]
    };
    let store = runner.store();
    let now = w.clock.now_utc();

    // Act: $30 refunded; two more refunds ($20, $10) before the next event; the first event
    // redelivered under another id; then a fourth refund ($5) whose lookup fails.
    w.stripe.refund("ch_1", "re_1", 3_000);
    store
        .record_webhook("stripe", "evt_r1", refunded(3_000), now)
        .await
        .unwrap();
    w.settle(&runner).await;
    w.stripe.refund("ch_1", "re_2", 2_000);
    w.stripe.refund("ch_1", "re_3", 1_000);
    for (event, cents) in [("evt_r3", 6_000), ("evt_r1b", 3_000)] {
        store
            .record_webhook("stripe", event, refunded(cents), now)
            .await
            .unwrap();
    }
    w.settle(&runner).await;
    w.stripe.refund("ch_1", "re_4", 500);
    w.stripe
        .script
        .fail("list_refunds", ErrorKind::TRANSIENT, 1);
    store
        .record_webhook("stripe", "evt_r4", refunded(6_500), now)
        .await
        .unwrap();
    w.settle(&runner).await;

    // Assert: one note per refund, each naming its refund id; the fallback names the total.
    let notes = w.pms.notes_for(&id);
    let refunds: Vec<_> = notes[notes_before..]
        .iter()
        .filter(|n| n.text.contains("refund of"))
        .map(|n| n.text.clone())
        .collect();
    assert_eq!(refunds.len(), 4, "{refunds:?}");
    for (text, want) in refunds.iter().zip([
        "refund of $30.00 through Stripe (re_1 of ch_1;",
        "refund of $20.00 through Stripe (re_2 of ch_1;",
        "refund of $10.00 through Stripe (re_3 of ch_1;",
        "refund of $5.00 through Stripe (ch_1; $65.00 refunded in total)",
    ]) {
        assert!(text.contains(want), "{text} should contain {want}");
    }
}

#[tokio::test]
async fn a_returning_cardholder_with_enough_credit_skips_the_application() {
    // Arrange: counsel approved lookups for this Texas practice.
    let mut w = World::new();
    w.policy.prefill_approved_by_counsel = true;
    w.carecredit.cardholder(Money::usd(500_000));
    let id = w.accept(1, 150_000, 50_000);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    assert_eq!(w.carecredit.script.count("lookup_cardholder"), 1);
    assert_eq!(w.carecredit.script.count("start_application"), 0);
    assert!(w.carecredit.requests()[0].lookup.is_some());
    assert_eq!(
        state.attempts[0].outcome,
        AttemptOutcome::Approved {
            amount: Money::usd(80_000)
        }
    );
    assert_eq!(kinds(&w.messenger.sent_to(&patient(1).id)), vec!["summary"]);
}

#[tokio::test]
async fn a_california_patient_is_never_looked_up_or_prefilled_even_where_counsel_approved() {
    // Arrange: a Texas practice with counsel-approved prefill; the patient lives in California.
    let mut w = World::new();
    w.policy.prefill_approved_by_counsel = true;
    w.carecredit.cardholder(Money::usd(500_000));
    w.carecredit.on_start(Answer::Approve);
    let mut contact = patient(1);
    if let Some(address) = contact.address.as_mut() {
        address.state = Some(financing_core::UsState::CA);
    }
    let id = w.accept_plan(plan(1, 150_000, 50_000), contact);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
    assert_eq!(w.carecredit.script.count("lookup_cardholder"), 0);
    let requests = w.carecredit.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].prefill.is_none() && requests[0].lookup.is_none());
    let audit = runner.store().audit(&id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.detail == "application (amount only) sent to carecredit")
    );
}

#[tokio::test]
async fn sedation_on_the_acceptance_day_defers_every_lender_contact_to_the_next_day() {
    // Arrange: nitrous (D9230) on the plan; accepted at 10:55 in New York.
    let w = World::new();
    let id = w.accept_plan(plan_with_code(1, 150_000, 50_000, "D9230"), patient(1));
    w.carecredit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;
    let midnight_in_new_york = "2026-06-03T04:00:00Z".parse().unwrap();

    // Act
    runner.run_until_idle(100).await.unwrap();
    let deferred = w.row(&runner, &id).await;
    w.settle(&runner).await;

    // Assert
    assert_eq!(deferred.state.stage, Stage::Deferred);
    assert_eq!(deferred.next_due_at, Some(midnight_in_new_york));
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    assert_eq!(w.carecredit.script.count("start_application"), 1);
    assert!(state.attempts[0].contacted_at >= midnight_in_new_york);
}

#[tokio::test]
async fn an_opted_out_phone_gets_email_only_and_a_consenting_one_gets_both() {
    // Arrange
    let w = World::new();
    let quiet = w.accept(1, 150_000, 50_000);
    let _ = w.accept(2, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.carecredit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;
    let phone = patient(1).mobile_phone.unwrap();
    runner
        .store()
        .set_sms_opt_out(&practice_id(), &phone, true, "twilio:STOP", t0())
        .await
        .unwrap();

    // Act
    w.settle(&runner).await;

    // Assert
    assert_eq!(w.row(&runner, &quiet).await.state.status, Status::Done);
    let opted_out = w.messenger.sent_to(&patient(1).id);
    let consenting = w.messenger.sent_to(&patient(2).id);
    assert!(!opted_out.is_empty() && !consenting.is_empty());
    assert!(opted_out.iter().all(|s| s.channels == vec![Channel::Email]));
    assert!(
        consenting
            .iter()
            .all(|s| s.channels == vec![Channel::Email, Channel::Sms])
    );
}

#[tokio::test]
async fn a_text_only_patient_is_not_texted_at_night_but_at_nine_the_next_morning() {
    // Arrange: 02:00 in New York; the patient has a phone and consent but no email.
    let w = World::new();
    w.clock.set("2026-06-03T06:00:00Z".parse().unwrap());
    let contact = PatientContact {
        email: None,
        ..patient(1)
    };
    let id = w.accept_plan(plan(1, 150_000, 50_000), contact);
    w.carecredit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;
    let nine_in_new_york = "2026-06-03T13:00:00Z".parse().unwrap();

    // Act
    runner.run_until_idle(100).await.unwrap();
    let waiting = w.row(&runner, &id).await;
    w.settle(&runner).await;

    // Assert
    assert_eq!(waiting.next_action.as_deref(), Some("send_message"));
    assert_eq!(waiting.next_due_at, Some(nine_in_new_york));
    let sent = w.messenger.sent_to(&patient(1).id);
    assert_eq!(kinds(&sent), vec!["summary"]);
    assert_eq!(sent[0].channels, vec![Channel::Sms]);
    assert_eq!(
        w.row(&runner, &id).await.state.ledger_written_at,
        Some(nine_in_new_york)
    );
}

#[tokio::test]
async fn a_failed_poll_keeps_the_cursor_and_a_plan_seen_twice_starts_one_workflow() {
    // Arrange
    let w = World::new();
    w.accept(1, 150_000, 50_000);
    w.pms.script.fail("changed_plans", ErrorKind::TRANSIENT, 1);
    let runner = w.runner("runner-1").await;
    let store = runner.store();

    // Act / Assert
    assert_eq!(
        runner.poll().await.unwrap(),
        0,
        "the practice system failed this round"
    );
    assert_eq!(store.cursor(&practice_id(), "fakepms").await.unwrap(), None);
    assert_eq!(runner.poll().await.unwrap(), 1);
    assert_eq!(
        store
            .cursor(&practice_id(), "fakepms")
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );
    w.pms
        .ignore_cursor
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        runner.poll().await.unwrap(),
        0,
        "the same plan again starts nothing"
    );
    assert_eq!(store.workflows(None, None, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_racing_on_one_file_never_duplicate_stripe_objects_or_notes() {
    // Arrange: 20 plans; every lender opens a link and approves at the first poll.
    let mut w = World::new();
    w.carecredit = std::sync::Arc::new(FakeLender::answering(
        "carecredit",
        "CareCredit",
        Answer::Link,
        Answer::Approve,
    ));
    let ids: Vec<WorkflowId> = (1..=20).map(|n| w.accept(n, 150_000, 50_000)).collect();
    let alpha = w.runner_with("alpha", 3).await;
    let beta = w.runner_with("beta", 3).await;

    // Act: both runners poll and tick at the same time; the clock moves only between rounds.
    for _ in 0..50 {
        let (a, b) = (alpha.clone(), beta.clone());
        let a = tokio::spawn(async move { a.run_until_idle(100).await });
        let b = tokio::spawn(async move { b.run_until_idle(100).await });
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        match w.next_due(&alpha).await {
            None => break,
            Some(at) if at > w.clock.now_utc() => w.clock.set(at),
            Some(_) => {}
        }
    }

    // Assert
    let store = alpha.store();
    assert_eq!(store.workflows(None, None, 100).await.unwrap().len(), 20);
    for (n, id) in (1..=20).zip(&ids) {
        assert_eq!(
            w.row(&alpha, id).await.state.status,
            Status::Done,
            "workflow {n}"
        );
        assert_eq!(w.stripe.sessions_for(id).len(), 1, "workflow {n}");
        assert_eq!(w.pms.notes_for(id).len(), 1, "workflow {n}");
    }
    assert_eq!(w.stripe.customers().len(), 20, "one customer per patient");
    assert_eq!(w.stripe.sessions().len(), 20);
    // Leases held: no external call was made twice.
    for op in ["ensure_customer", "create_deposit_link"] {
        assert_eq!(w.stripe.script.count(op), 20, "{op}");
    }
    assert_eq!(w.pms.script.count("write_note"), 20);
    assert_eq!(w.carecredit.script.count("start_application"), 20);
    assert_eq!(w.carecredit.applications(), 20);
    let sent = w.messenger.sent();
    assert_eq!(sent.len(), 40, "one link and one summary each");
    let keys: std::collections::HashSet<&str> = sent.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys.len(), 40, "each message has its own outbox key");
    let steps = alpha
        .stats()
        .steps
        .load(std::sync::atomic::Ordering::Relaxed)
        + beta
            .stats()
            .steps
            .load(std::sync::atomic::Ordering::Relaxed);
    assert!(steps >= 20 * 8, "{steps} steps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_arriving_after_the_lease_moved_is_discarded_and_the_new_owner_finishes() {
    // Arrange: the in-house path; the first runner's schedule call is slow beyond its lease.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.stripe
        .script
        .fault("create_schedule", Fault::HangAfterApplying, 1);
    let slow = w.runner("slow").await;
    let slow_task = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.run_until_idle(100).await })
    };
    w.stripe.script.gate.entered().await;

    // Act: the lease expires, another runner takes over and finishes; then the slow call returns.
    w.clock.advance(LEASE + Duration::from_secs(1));
    let rescuer = w.runner("rescuer").await;
    w.settle(&rescuer).await;
    let finished = w.row(&rescuer, &id).await;
    w.stripe.script.gate.open();
    slow_task.await.unwrap().unwrap();

    // Assert
    assert_eq!(finished.state.status, Status::Done);
    assert_eq!(
        slow.stats()
            .lost_leases
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let keys = w.stripe.script.calls("create_schedule");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
    assert_eq!(w.stripe.schedules().len(), 1);
    assert_eq!(w.pms.notes_for(&id).len(), 1);
    let after = w.row(&rescuer, &id).await;
    assert_eq!(
        after.state, finished.state,
        "the stale result changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_dies_mid_call_is_replaced_after_its_lease_and_nothing_is_created_twice() {
    for op in [
        "ensure_customer",
        "create_deposit_link",
        "create_schedule",
        "write_note",
    ] {
        // Arrange: the in-house path (customer, deposit link, schedule, note); `op` takes effect and
        // then the process dies before it can record the result.
        let w = World::new();
        let id = w.accept(1, 150_000, 50_000);
        w.carecredit.on_start(Answer::Decline);
        w.sunbit.on_start(Answer::Decline);
        let script = if op == "write_note" {
            &w.pms.script
        } else {
            &w.stripe.script
        };
        script.fault(op, Fault::HangAfterApplying, 1);
        let doomed = w.runner("doomed").await;
        let task = tokio::spawn(async move { doomed.run_until_idle(100).await });
        script.gate.entered().await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());

        // Act: a new runner finds the lease held, then takes over once it expires.
        let heir = w.runner("heir").await;
        heir.run_until_idle(100).await.unwrap();
        let before_expiry = w.row(&heir, &id).await.state;
        w.clock.advance(LEASE + Duration::from_secs(1));
        w.settle(&heir).await;

        // Assert
        assert_eq!(
            before_expiry.status,
            Status::Active,
            "{op}: held by the dead runner"
        );
        let state = w.row(&heir, &id).await.state;
        assert_eq!(state.status, Status::Done, "{op}");
        assert_eq!(w.stripe.customers().len(), 1, "{op}");
        assert_eq!(w.stripe.sessions().len(), 1, "{op}");
        assert_eq!(w.stripe.schedules().len(), 1, "{op}");
        assert_eq!(w.pms.notes().len(), 1, "{op}");
        if op == "write_note" {
            assert_eq!(w.pms.script.count("write_note"), 1, "found by its marker");
        } else {
            let keys = w.stripe.script.calls(op);
            assert_eq!(keys.len(), 2, "{op}");
            assert_eq!(
                keys[0], keys[1],
                "{op}: the heir reuses the idempotency key"
            );
        }
    }
}

/// A step whose commit the database refuses for a moment (SQLite busy here; a deadlock broken or
/// a lock timeout on PostgreSQL) is released at once and run again, not left to its lease.
#[tokio::test]
async fn a_step_the_store_was_too_busy_to_commit_runs_again_at_once_not_after_its_lease() {
    // Arrange: the in-house path; the schedule is created and its answer held back while another
    // process takes the database's write lock.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.stripe
        .script
        .fault("create_schedule", Fault::HangAfterApplying, 1);
    let runner = w.runner("runner-1").await;
    let task = tokio::spawn(async move {
        let ran = runner.run_until_idle(100).await;
        (ran, runner)
    });
    w.stripe.script.gate.entered().await;
    let raw = raw_pool(&w.path).await;
    let mut other = raw.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *other)
        .await
        .unwrap();

    // Act: the answer arrives; the step's commit waits out the store's 5 s busy timeout and is
    // refused; then the other process lets go (after 15 s at most, for a runner that says
    // nothing). The clock does not move.
    w.stripe.script.gate.open();
    let refused =
        |line: &str| line.contains("store busy while processing") && line.contains(id.as_str());
    for _ in 0..750 {
        if logs().text().lines().any(refused) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("COMMIT").execute(&mut *other).await.unwrap();
    let (ran, runner) = task.await.unwrap();

    // Assert: the same pass finished the workflow, repeating the schedule call under its key,
    // with one of everything at Stripe.
    ran.unwrap();
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done, "not left to its lease");
    assert_eq!(w.stripe.schedules().len(), 1);
    let keys = w.stripe.script.calls("create_schedule");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "the repeat reuses the idempotency key");
    assert_eq!(w.pms.notes().len(), 1);
}

#[tokio::test]
async fn a_plan_rejected_while_a_stripe_creation_awaits_its_retry_leaves_nothing_live_at_stripe() {
    // Arrange: the in-house path; the schedule call got a 503 and waits for its retry.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.stripe
        .script
        .fail("create_schedule", ErrorKind::TRANSIENT, 1);
    let runner = w.runner("runner-1").await;
    runner.run_until_idle(100).await.unwrap();
    assert_eq!(
        w.row(&runner, &id).await.next_action.as_deref(),
        Some("create_schedule")
    );

    // Act: the plan is rejected before the retry.
    w.pms.reject(&PlanId::new("tx-1"), "1", &patient(1).id);
    w.settle(&runner).await;

    // Assert: whatever exists at Stripe for this workflow is cancelled or expired.
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Cancelled);
    for s in w.stripe.schedules_for(&id) {
        assert!(
            s.cancelled,
            "schedule {} still charges the patient of a rejected plan",
            s.id
        );
    }
    for s in w.stripe.sessions_for(&id) {
        assert!(
            s.expired,
            "deposit link {} still open for a rejected plan",
            s.id
        );
    }
}

#[tokio::test]
async fn an_edit_after_financing_is_done_is_a_staff_task_and_tears_nothing_down() {
    // Arrange: revision 1 ran to its end on the in-house plan.
    let w = World::new();
    let first = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    assert_eq!(w.row(&runner, &first).await.state.status, Status::Done);
    let messages = w.messenger.sent().len();

    // Act: the practice edits what is financed (a lower fee) on the finished case.
    let edited = financing_core::TreatmentPlan {
        revision: "2".into(),
        ..plan(1, 120_000, 50_000)
    };
    let second = w.accept_plan(edited, patient(1));
    w.settle(&runner).await;

    // Assert: the finished workflow and its schedule stand, nothing new started, nobody was
    // messaged again, and staff have a task naming the plan.
    assert_ne!(first, second);
    assert_eq!(w.row(&runner, &first).await.state.status, Status::Done);
    assert!(runner.store().workflow(&second).await.unwrap().is_none());
    let live: Vec<_> = w
        .stripe
        .schedules()
        .into_iter()
        .filter(|s| !s.cancelled)
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].workflow, first);
    assert_eq!(w.messenger.sent().len(), messages);
    let tasks = runner.store().detection_tasks(None, false).await.unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].task.plan_id, "tx-1");
    assert!(
        tasks[0]
            .task
            .problem
            .contains("after financing was completed")
    );
}

#[tokio::test]
async fn a_workflow_of_a_practice_the_runner_does_not_serve_is_not_claimed_over_and_over() {
    // Arrange: a workflow recorded for a practice that is no longer in this runner's configuration.
    let w = World::new();
    let runner = w.runner("runner-1").await;
    let mut state = chairside_workflow::WorkflowState::new(
        chairside_workflow::WorkflowKey {
            practice_id: financing_core::PracticeId::new("closed-practice"),
            plan_id: PlanId::new("tx-9"),
            revision: "1".into(),
        },
        patient(9).id,
        t0(),
    );
    let first = state.start();
    runner
        .store()
        .record_poll(
            &financing_core::PracticeId::new("closed-practice"),
            "fakepms",
            "1",
            vec![chairside_engine::store::NewWorkflow { state, first }],
            vec![],
            t0(),
        )
        .await
        .unwrap();

    // Act
    runner.run_until_idle(10).await.unwrap();
    let claimed_again = runner.tick().await.unwrap();

    // Assert: not a hot loop, and nothing lost.
    assert_eq!(
        claimed_again, 0,
        "the runner keeps claiming a workflow it cannot process"
    );
    assert_eq!(
        runner
            .store()
            .workflows(None, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_command_queued_behind_one_awaiting_its_retry_does_not_keep_the_workflow_hot() {
    // Arrange: no reminders, give up after an hour; withdrawing the application gets a 503, which
    // leaves the ledger note queued behind the deferred cancel.
    let mut w = World::new();
    w.config.reminder_delays = vec![];
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit
        .script
        .fail("cancel_application", ErrorKind::TRANSIENT, 1);
    let runner = w.runner("runner-1").await;
    runner.run_until_idle(100).await.unwrap();
    w.clock.advance(Duration::from_secs(60 * 60));

    // Act
    runner.run_until_idle(100).await.unwrap();
    let row = w.row(&runner, &id).await;
    let claimed_again = runner.tick().await.unwrap();

    // Assert
    assert_eq!(row.state.status, Status::WaitingOnStaff);
    assert_eq!(w.carecredit.script.count("cancel_application"), 1);
    assert_eq!(
        claimed_again, 0,
        "claimed while nothing can run (next due {:?})",
        row.next_due_at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_repeated_after_a_crash_is_journaled_as_a_second_intent() {
    // Arrange: the deposit link is created, then the runner dies before recording it.
    let w = World::new();
    w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.stripe
        .script
        .fault("create_deposit_link", Fault::HangAfterApplying, 1);
    let doomed = w.runner("doomed").await;
    let task = tokio::spawn(async move { doomed.run_until_idle(100).await });
    w.stripe.script.gate.entered().await;
    task.abort();
    let _ = task.await;

    // Act
    w.clock.advance(LEASE + Duration::from_secs(1));
    let heir = w.runner("heir").await;
    w.settle(&heir).await;

    // Assert: two calls went out with one key; the journal shows both intents, one per epoch.
    assert_eq!(w.stripe.script.count("create_deposit_link"), 2);
    let pool = raw_pool(&w.path).await;
    let epochs: Vec<i64> = sqlx::query_scalar(
        "SELECT epoch FROM effects WHERE action = 'create_deposit_link' ORDER BY intent_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(epochs.len(), 2, "one intent per call: {epochs:?}");
    assert!(epochs[0] < epochs[1], "{epochs:?}");
}

#[tokio::test]
async fn texts_follow_the_consent_record_not_the_practice_systems_last_word() {
    // Arrange: patient 1's practice system records consent; patient 2's records none.
    let w = World::new();
    let _ = w.accept(1, 150_000, 50_000);
    let silent = PatientContact {
        sms_consent: financing_core::SmsConsent::None,
        ..patient(2)
    };
    let _ = w.accept_plan(plan(2, 150_000, 50_000), silent);
    w.carecredit.on_start(Answer::Approve);
    w.carecredit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert: the practice's word is on record as its attestation, and texts went out on it.
    let store = runner.store();
    let phone = patient(1).mobile_phone.unwrap();
    let history = store
        .sms_consent_history(&practice_id(), &phone)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "one attestation, not one per read");
    assert_eq!(history[0].entry.source, "practice_system:fakepms");
    assert_eq!(history[0].entry.recorded_by, "runner");
    assert!(history[0].entry.wording.contains("pms"));
    let consenting = w.messenger.sent_to(&patient(1).id);
    assert!(!consenting.is_empty());
    assert!(
        consenting
            .iter()
            .all(|s| s.channels == vec![Channel::Email, Channel::Sms])
    );
    // No record, no texts.
    let silent_sent = w.messenger.sent_to(&patient(2).id);
    assert!(!silent_sent.is_empty());
    assert!(
        silent_sent
            .iter()
            .all(|s| s.channels == vec![Channel::Email])
    );
    let none = store
        .sms_consent(&practice_id(), &patient(2).mobile_phone.unwrap())
        .await
        .unwrap();
    assert_eq!(none, None);
}

/// Queues a staff Retry for `id`, as the dashboard does.
async fn staff_retry(w: &World, runner: &chairside_engine::runner::Runner, id: &WorkflowId) {
    runner
        .store()
        .enqueue(
            id,
            "staff:test",
            &Event::Staff {
                action: StaffAction::Retry,
            },
            w.clock.now_utc(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_staff_retry_of_a_failed_step_that_in_fact_succeeded_does_not_do_it_twice() {
    // Arrange: every attempt at the deposit link creates it at Stripe and then loses the answer,
    // until the runner gives up and hands the step to staff.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.stripe.script.fault(
        "create_deposit_link",
        Fault::FailAfterApplying(ErrorKind::Indeterminate),
        5,
    );
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let waiting = w.row(&runner, &id).await.state;
    assert_eq!(waiting.status, Status::WaitingOnStaff);
    let keys_before = w.stripe.script.calls("create_deposit_link");
    assert_eq!(keys_before.len(), 5);
    assert!(keys_before.iter().all(|k| k == &keys_before[0]));

    // Act
    staff_retry(&w, &runner, &id).await;
    w.settle(&runner).await;

    // Assert: the retry reused the key, so Stripe answered with the session it had made.
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    let keys = w.stripe.script.calls("create_deposit_link");
    assert_eq!(keys.len(), 6);
    assert_eq!(keys[5], keys_before[0], "the staff retry kept the key");
    assert_eq!(w.stripe.sessions_for(&id).len(), 1, "one deposit link");
}

#[tokio::test]
async fn a_staff_retry_after_a_definite_failure_uses_a_fresh_key() {
    // Arrange: Stripe refused the call (nothing was created).
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.stripe
        .script
        .fail("create_deposit_link", ErrorKind::Permanent, 1);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;

    // Act
    staff_retry(&w, &runner, &id).await;
    w.settle(&runner).await;

    // Assert: a replay of the same key would replay the refusal; a fresh one is asked.
    let keys = w.stripe.script.calls("create_deposit_link");
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
    assert_eq!(w.stripe.sessions_for(&id).len(), 1);
}

#[tokio::test]
async fn a_staff_retry_of_a_ledger_note_that_was_in_fact_written_finds_it_by_its_marker() {
    // Arrange: the outcome note is written but the answer is lost; every later marker lookup
    // times out until the runner gives up and hands the step to staff.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.pms.script.fault(
        "write_note",
        Fault::FailAfterApplying(ErrorKind::Indeterminate),
        1,
    );
    w.pms.script.fault("find_note", Fault::Pass, 1);
    w.pms
        .script
        .fault("find_note", Fault::Fail(ErrorKind::Indeterminate), 4);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    assert_eq!(
        w.row(&runner, &id).await.state.status,
        Status::WaitingOnStaff
    );
    assert_eq!(w.pms.notes_for(&id).len(), 1, "written once, answer lost");

    // Act
    staff_retry(&w, &runner, &id).await;
    w.settle(&runner).await;

    // Assert: the retry looked for the same marker, found the note and wrote none.
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
    let markers = w.pms.script.calls("find_note");
    assert!(markers.iter().all(|m| m == &markers[0]), "{markers:?}");
    assert_eq!(w.pms.script.count("write_note"), 1);
    assert_eq!(w.pms.notes_for(&id).len(), 1, "one outcome note");
}

#[tokio::test]
async fn a_runner_killed_between_its_claim_and_the_call_loses_and_doubles_nothing() {
    // Arrange: the deposit link fails once (a retry is scheduled); when the retry comes due,
    // another runner claims it, which journals the call's intent in its claim, and dies before
    // the call.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    w.stripe
        .script
        .fail("create_deposit_link", ErrorKind::TRANSIENT, 1);
    let runner = w.runner("live").await;
    let stripe = w.stripe.clone();
    w.settle_until(&runner, &id, |_| {
        stripe.script.calls("create_deposit_link").len() == 1
    })
    .await;
    let retry_at = w.next_due(&runner).await.expect("the retry is scheduled");
    w.clock.set(retry_at);
    let dead = runner
        .store()
        .claim_due("dead", retry_at, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let intent = dead
        .begun
        .clone()
        .expect("the claim journaled the retry's intent");
    assert_eq!(intent.attempt, 2);

    // Act: its lease runs out; the live runner takes over.
    w.clock.advance(LEASE + Duration::from_secs(1));
    w.settle(&runner).await;

    // Assert: one call after the failed one (the dead claim made none), one session, one key;
    // the journal keeps the dead claim's intent open between the two calls.
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Done);
    let keys = w.stripe.script.calls("create_deposit_link");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| *k == intent.key), "{keys:?}");
    assert_eq!(w.stripe.sessions().len(), 1);
    let pool = raw_pool(&w.path).await;
    let journal: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT attempt, idempotency_key, outcome FROM effects
         WHERE action = 'create_deposit_link' ORDER BY attempt",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        journal
            .iter()
            .map(|(a, k, o)| (
                *a,
                k == &intent.key,
                o.as_deref()
                    .map(|o| o.split(':').next().unwrap_or(o).to_owned())
            ))
            .collect::<Vec<_>>(),
        vec![
            (1, true, Some("transient".to_owned())),
            (2, true, None),
            (3, true, Some("deposit_link_created".to_owned())),
        ]
    );
}
