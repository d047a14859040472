//! Link-only lenders in a running waterfall: CareCredit -> Sunbit -> Cherry -> in-house, through
//! the runner over a SQLite file. Cherry has no API (docs INTEGRATIONS.md, "Other lenders"): the
//! patient gets the practice's Cherry link, and staff record Cherry's decision on the dashboard
//! (`StaffActions::record_lender_decision`), or the wait ends and the waterfall moves on with a
//! task.

use std::sync::Arc;
use std::time::Duration;

use chairside_engine::link_lender::LinkOnlyProvider;
use chairside_engine::ports::MessageContent;
use chairside_engine::runner::Runner;
use chairside_engine::staff::{Refusal, StaffActions, StaffError};
use chairside_workflow::{Stage, Status, TaskKind, WorkflowId};
use financing_core::link_only::{LinkOnlyTerms, StaffReport};
use financing_core::{
    AmountLimits, AttemptOutcome, FinancingProvider, LenderId, LenderSlot, Money, Waterfall,
};

use crate::fakes::Answer;
use crate::harness::{World, patient};

const WAIT: Duration = Duration::from_secs(2 * 24 * 60 * 60);
const CHERRY_LINK: &str = "https://pay.withcherry.test/smile-dental-test";

fn cherry() -> LenderId {
    LenderId::new("cherry")
}

/// CareCredit and Sunbit decline; Cherry is third; the in-house plan is last.
async fn world_with_cherry() -> (World, Runner, WorkflowId) {
    let mut w = World::new();
    let policy = w.config.waterfall.policy();
    w.config.waterfall = Waterfall::new(
        ["carecredit", "sunbit", "cherry"]
            .into_iter()
            .map(|id| LenderSlot {
                lender: LenderId::new(id),
                limits: AmountLimits::NONE,
            })
            .collect(),
        policy,
    );
    let provider = Arc::new(LinkOnlyProvider::new(LinkOnlyTerms {
        lender: cherry(),
        display_name: "Cherry".into(),
        application_link: url::Url::parse(CHERRY_LINK).unwrap(),
        decide_within: WAIT,
        limits: AmountLimits::NONE,
    }));
    // As the engine builder does: each lender's schedule from its provider.
    w.config
        .lender_schedules
        .push((cherry(), provider.poll_schedule()));
    let mut rt = w.runtime();
    rt.lenders.insert(cherry(), provider);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.messenger
        .quiet_on_in_house
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let id = w.accept(1, 150_000, 50_000);
    let runner = w.runner_tuned("runner-1", vec![rt], |_| {}).await;
    (w, runner, id)
}

fn at_cherry(row: &chairside_engine::store::WorkflowRow) -> bool {
    row.state
        .lender_session()
        .is_some_and(|(lender, _, _)| lender == &cherry())
}

async fn staff_audit(runner: &Runner, id: &WorkflowId) -> Vec<String> {
    runner
        .store()
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "staff_action")
        .map(|a| a.detail)
        .collect()
}

#[tokio::test]
async fn cherry_third_in_the_waterfall_gets_the_link_and_staff_confirm_its_approval() {
    let (w, runner, id) = world_with_cherry().await;

    // CareCredit and Sunbit decline; Cherry's link goes out, nothing else reaches Cherry.
    w.settle_until(&runner, &id, at_cherry).await;
    let sent = w.messenger.sent_to(&patient(1).id);
    let cherry_links: Vec<&str> = sent
        .iter()
        .filter_map(|s| match &s.content {
            MessageContent::ApplicationLink { lender_name, link } if lender_name == "Cherry" => {
                Some(link.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(cherry_links.len(), 1, "one Cherry link message: {sent:?}");
    let row = w.row(&runner, &id).await;
    let (_, link, session) = row.state.lender_session().unwrap();
    assert_eq!(
        link, CHERRY_LINK,
        "the patient page offers the practice's link"
    );
    assert!(session.decide_by.is_some());
    let disclosures: Vec<String> = runner
        .store()
        .audit(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "disclosure" && a.detail.contains("cherry"))
        .map(|a| a.detail)
        .collect();
    assert_eq!(
        disclosures,
        vec!["nothing (the practice's link only) sent to cherry"]
    );

    // A day later staff see the approval in Cherry's portal. Nonsense is refused first.
    w.clock.advance(Duration::from_secs(86_400));
    let store = runner.store();
    let staff = StaffActions::new(store.as_ref(), "staff:alice");
    let asked = Money::usd(80_000);
    let refused = staff
        .record_lender_decision(
            &id,
            &LenderId::new("sunbit"),
            StaffReport::Declined,
            w.clock.now_utc(),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(StaffError::Refused(Refusal::NotAwaitingLender { .. }))
        ),
        "{refused:?}"
    );
    let refused = staff
        .record_lender_decision(
            &id,
            &cherry(),
            StaffReport::Counteroffer { amount: asked },
            w.clock.now_utc(),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(StaffError::Refused(Refusal::BadLenderDecision { .. }))
        ),
        "{refused:?}"
    );
    staff
        .record_lender_decision(
            &id,
            &cherry(),
            StaffReport::Approved { amount: asked },
            w.clock.now_utc(),
        )
        .await
        .unwrap();
    // A double click: the first is still queued.
    let again = staff
        .record_lender_decision(
            &id,
            &cherry(),
            StaffReport::Approved { amount: asked },
            w.clock.now_utc(),
        )
        .await;
    assert!(
        matches!(
            again,
            Err(StaffError::Refused(Refusal::AlreadyQueued { .. }))
        ),
        "{again:?}"
    );
    w.settle(&runner).await;

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
            ("sunbit", &AttemptOutcome::Declined),
            ("cherry", &AttemptOutcome::Approved { amount: asked }),
        ]
    );
    assert_eq!(
        state.result.and_then(|r| r.financed),
        Some((cherry(), asked))
    );
    assert!(w.stripe.schedules().is_empty(), "no in-house plan");
    assert_eq!(
        staff_audit(&runner, &id).await,
        vec!["record_lender_decision: cherry approved $800.00"]
    );
    let notes = w.pms.notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].text.contains("cherry approved"),
        "{}",
        notes[0].text
    );
    // The lender charge is Cherry's portal's: a task for staff, no API call.
    let tasks = w.tasks(&runner).await;
    assert_eq!(
        tasks.iter().map(|t| t.task.kind).collect::<Vec<_>>(),
        vec![TaskKind::Settlement]
    );
}

#[tokio::test]
async fn cherry_without_a_decision_moves_on_to_in_house_with_a_task_after_the_wait() {
    let (w, runner, id) = world_with_cherry().await;
    w.settle_until(&runner, &id, at_cherry).await;
    let opened = w.clock.now_utc();

    // Nobody records Cherry's decision: at the end of the wait the in-house plan is offered.
    w.settle_until(&runner, &id, |row| {
        matches!(row.state.stage, Stage::OfferingInHouse { .. })
    })
    .await;
    assert!(
        w.clock.now_utc() >= opened + WAIT,
        "not before the configured wait"
    );
    let state = w.row(&runner, &id).await.state;
    assert_eq!(
        state.attempts.last().map(|a| (&a.lender, &a.outcome)),
        Some((&cherry(), &AttemptOutcome::NoDecision))
    );
    let tasks = w.tasks(&runner).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.kind, TaskKind::LenderNoDecision);
    assert!(
        tasks[0].task.reason.contains("cherry portal"),
        "{}",
        tasks[0].task.reason
    );
    let sent = w.messenger.sent_to(&patient(1).id);
    assert!(matches!(
        sent.last().map(|s| &s.content),
        Some(MessageContent::InHouseOffer(_))
    ));
    // Cherry never got a "finish your application" reminder: only the link.
    assert!(
        !sent
            .iter()
            .any(|s| matches!(&s.content, MessageContent::Reminder { lender_name, .. } if lender_name == "Cherry"))
    );

    // A decision recorded late is refused: the waterfall moved on.
    let store = runner.store();
    let late = StaffActions::new(store.as_ref(), "staff:alice")
        .record_lender_decision(
            &id,
            &cherry(),
            StaffReport::Approved {
                amount: Money::usd(80_000),
            },
            w.clock.now_utc(),
        )
        .await;
    assert!(
        matches!(
            late,
            Err(StaffError::Refused(Refusal::NotAwaitingLender { .. }))
        ),
        "{late:?}"
    );
}
