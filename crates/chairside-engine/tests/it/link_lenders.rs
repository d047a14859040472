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

// The patient's own report (docs/lenders.md, "The patient's report"): one task, never a decision
// by itself; staff confirm (the same `record_lender_decision` path), correct or refuse it.

mod patient_report {
    use super::*;
    use chairside_engine::patient_report::PatientReports;
    use chairside_engine::store::patient_report::{NewPatientReport, ReportRefusal};
    use chairside_workflow::patient_report::{NotAccepted, PatientReport};
    use financing_core::Language;

    fn report(report: PatientReport) -> NewPatientReport {
        NewPatientReport {
            lender: cherry(),
            lender_name: "Cherry".into(),
            report,
            language: Language::Es,
        }
    }

    fn approved(cents: i64) -> NewPatientReport {
        report(PatientReport::Approved {
            amount: Money::usd(cents),
        })
    }

    async fn open_report_tasks(w: &World, runner: &Runner) -> Vec<(i64, String)> {
        w.tasks(runner)
            .await
            .into_iter()
            .filter(|t| t.task.kind == TaskKind::PatientReport)
            .map(|t| (t.id, t.task.reason))
            .collect()
    }

    #[tokio::test]
    async fn a_report_raises_one_task_and_staff_confirm_it_into_the_financing_chain() {
        // Arrange: the workflow waits for Cherry's decision on $800.00.
        let (w, runner, id) = world_with_cherry().await;
        w.settle_until(&runner, &id, at_cherry).await;
        let store = runner.store();
        let reports = PatientReports::new(store.as_ref(), store.as_ref());

        // Act: the patient reports $900, then corrects it to $800 (the second replaces the first).
        let first = reports
            .report(&id, &approved(90_000), w.clock.now_utc())
            .await
            .unwrap()
            .unwrap();
        let second = reports
            .report(&id, &approved(80_000), w.clock.now_utc())
            .await
            .unwrap()
            .unwrap();
        // Everything due now runs (not the clock to the end of the wait).
        runner.run_until_idle(100).await.unwrap();

        // Assert: one open task with the new wording; nothing decided by the report itself.
        assert_eq!(second.replaced, Some(first.task));
        assert_eq!(
            open_report_tasks(&w, &runner).await,
            vec![(
                second.task,
                "Patient reports Cherry approved $800.00: check the Cherry portal and confirm"
                    .to_owned()
            )]
        );
        let row = w.row(&runner, &id).await;
        assert!(
            at_cherry(&row),
            "still waiting for Cherry: {:?}",
            row.state.stage
        );
        assert_eq!(row.state.status, Status::Active);
        let patient_lines: Vec<String> = store
            .audit(&id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.kind == "patient_report")
            .map(|a| format!("{}: {}", a.actor, a.detail))
            .collect();
        assert_eq!(
            patient_lines,
            vec![
                "patient: patient reports cherry approved $900.00 on the patient page (es)"
                    .to_owned(),
                format!(
                    "patient: patient reports cherry approved $800.00 on the patient page (es); replaces the report of task {}",
                    first.task
                ),
            ]
        );

        // A click on the replaced report's task is stale; the current one confirms.
        let stale = reports
            .confirm(&id, first.task, None, "staff:alice", w.clock.now_utc())
            .await;
        assert!(
            matches!(stale, Err(StaffError::Refused(Refusal::StaleTask { .. }))),
            "{stale:?}"
        );
        reports
            .confirm(&id, second.task, None, "staff:alice", w.clock.now_utc())
            .await
            .unwrap();
        let again = reports
            .confirm(&id, second.task, None, "staff:alice", w.clock.now_utc())
            .await;
        assert!(
            matches!(again, Err(StaffError::Refused(Refusal::StaleTask { .. }))),
            "{again:?}"
        );
        w.settle(&runner).await;

        // Cherry finances the plan as if staff had typed the decision: deposit, summary, note.
        let state = w.row(&runner, &id).await.state;
        assert_eq!(state.status, Status::Done);
        assert_eq!(
            state.result.as_ref().and_then(|r| r.financed.clone()),
            Some((cherry(), Money::usd(80_000)))
        );
        assert_eq!(
            staff_audit(&runner, &id).await,
            vec![
                "record_lender_decision: cherry approved $800.00; reason: confirmed the patient's report"
            ]
        );
        assert!(state.stripe.customer_id.is_some(), "the deposit is set up");
        let sent = w.messenger.sent_to(&patient(1).id);
        assert!(
            sent.iter()
                .any(|s| matches!(s.content, MessageContent::FinancingSummary(_))),
            "{sent:?}"
        );
        let notes = w.pms.notes();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].text.contains("cherry approved"),
            "{}",
            notes[0].text
        );
        assert!(open_report_tasks(&w, &runner).await.is_empty());
        assert_eq!(reports.pending(&id).await.unwrap(), None);

        // After the decision, a report is refused and raises nothing.
        let late = reports
            .report(&id, &report(PatientReport::Declined), w.clock.now_utc())
            .await
            .unwrap();
        assert!(
            matches!(late, Err(ReportRefusal::NotAccepted { .. })),
            "{late:?}"
        );
        assert!(open_report_tasks(&w, &runner).await.is_empty());
    }

    #[tokio::test]
    async fn not_confirmed_closes_the_task_with_who_and_the_workflow_keeps_waiting() {
        let (w, runner, id) = world_with_cherry().await;
        w.settle_until(&runner, &id, at_cherry).await;
        let store = runner.store();
        let reports = PatientReports::new(store.as_ref(), store.as_ref());
        let taken = reports
            .report(&id, &report(PatientReport::Declined), w.clock.now_utc())
            .await
            .unwrap()
            .unwrap();

        let dismissed = reports
            .dismiss(&id, taken.task, None, "staff:bob", w.clock.now_utc())
            .await
            .unwrap();
        let twice = reports
            .dismiss(&id, taken.task, None, "staff:bob", w.clock.now_utc())
            .await;
        runner.run_until_idle(100).await.unwrap();

        assert_eq!(dismissed.report.report, PatientReport::Declined);
        assert!(
            matches!(twice, Err(StaffError::Refused(Refusal::StaleTask { .. }))),
            "{twice:?}"
        );
        assert!(open_report_tasks(&w, &runner).await.is_empty());
        assert_eq!(reports.pending(&id).await.unwrap(), None);
        let row = w.row(&runner, &id).await;
        assert!(at_cherry(&row), "still waiting for Cherry");
        assert_eq!(
            staff_audit(&runner, &id).await,
            vec!["patient_report_not_confirmed: cherry declined"]
        );
        let who: Vec<String> = store
            .audit(&id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.kind == "staff_action")
            .map(|a| a.actor)
            .collect();
        assert_eq!(who, vec!["staff:bob"]);
        // Confirming what was not confirmed: nothing left to confirm.
        let confirm = reports
            .confirm(&id, taken.task, None, "staff:alice", w.clock.now_utc())
            .await;
        assert!(
            matches!(confirm, Err(StaffError::Refused(Refusal::StaleTask { .. }))),
            "{confirm:?}"
        );
        // The patient may report again.
        let again = reports
            .report(&id, &approved(80_000), w.clock.now_utc())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.replaced, None);
        assert_eq!(open_report_tasks(&w, &runner).await.len(), 1);
    }

    #[tokio::test]
    async fn a_still_waiting_report_confirms_nothing_and_a_short_approval_confirms_as_a_counteroffer()
     {
        let (w, runner, id) = world_with_cherry().await;
        w.settle_until(&runner, &id, at_cherry).await;
        let store = runner.store();
        let reports = PatientReports::new(store.as_ref(), store.as_ref());
        let waiting = reports
            .report(&id, &report(PatientReport::StillWaiting), w.clock.now_utc())
            .await
            .unwrap()
            .unwrap();
        let nothing = reports
            .confirm(&id, waiting.task, None, "staff:alice", w.clock.now_utc())
            .await;
        assert!(
            matches!(
                nothing,
                Err(StaffError::Refused(Refusal::NothingToConfirm { .. }))
            ),
            "{nothing:?}"
        );
        assert_eq!(open_report_tasks(&w, &runner).await.len(), 1);

        // $700 of the $800 asked: confirmed, it goes down the counteroffer path as a staff
        // record of $700 would.
        let short = reports
            .report(&id, &approved(70_000), w.clock.now_utc())
            .await
            .unwrap()
            .unwrap();
        reports
            .confirm(&id, short.task, None, "staff:alice", w.clock.now_utc())
            .await
            .unwrap();
        w.settle(&runner).await;
        let state = w.row(&runner, &id).await.state;
        assert_eq!(
            state.attempts.last().map(|a| (&a.lender, &a.outcome)),
            Some((
                &cherry(),
                &AttemptOutcome::PartiallyApproved {
                    approved: Money::usd(70_000)
                }
            ))
        );
    }

    #[tokio::test]
    async fn reports_are_refused_with_a_decision_queued_on_a_cancelled_workflow_and_past_the_limit()
    {
        let (w, runner, id) = world_with_cherry().await;
        w.settle_until(&runner, &id, at_cherry).await;
        let store = runner.store();
        let reports = PatientReports::new(store.as_ref(), store.as_ref());
        let now = w.clock.now_utc();

        // Five an hour; the sixth is refused and the one open task stays.
        for n in 0..5 {
            reports
                .report(&id, &approved(80_000 + n), now)
                .await
                .unwrap()
                .unwrap();
        }
        let sixth = reports.report(&id, &approved(80_000), now).await.unwrap();
        assert!(
            matches!(sixth, Err(ReportRefusal::RateLimited(_))),
            "{sixth:?}"
        );
        assert_eq!(open_report_tasks(&w, &runner).await.len(), 1);
        // Another lender than the live one.
        let other = NewPatientReport {
            lender: LenderId::new("alphaeon"),
            ..approved(80_000)
        };
        let later = now + chrono::Duration::hours(2);
        assert!(matches!(
            reports.report(&id, &other, later).await.unwrap(),
            Err(ReportRefusal::NotAccepted {
                why: NotAccepted::NotLive(_),
                ..
            })
        ));

        // Staff cancel: queued, then applied; a report is refused both times.
        StaffActions::new(store.as_ref(), "staff:alice")
            .cancel(&id, later)
            .await
            .unwrap();
        assert!(
            open_report_tasks(&w, &runner).await.is_empty(),
            "cancel closes it"
        );
        let queued = reports.report(&id, &approved(80_000), later).await.unwrap();
        assert!(
            matches!(queued, Err(ReportRefusal::DecisionQueued(_))),
            "{queued:?}"
        );
        w.settle(&runner).await;
        let cancelled = reports.report(&id, &approved(80_000), later).await.unwrap();
        assert!(
            matches!(
                cancelled,
                Err(ReportRefusal::NotAccepted {
                    why: NotAccepted::Cancelled,
                    ..
                })
            ),
            "{cancelled:?}"
        );
        assert!(open_report_tasks(&w, &runner).await.is_empty());
    }
}
