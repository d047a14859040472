//! The patient-report role (`PatientReportStore`) on both stores: a patient's report of a
//! link-only lender's decision raises one task, a second replaces it, staff's "Not confirmed"
//! closes it once, and the report is sealed at rest.

use chairside_engine::staff::Refusal;
use chairside_engine::store::NewWorkflow;
use chairside_engine::store::patient_report::{NewPatientReport, ReportLimit, ReportRefusal};
use chairside_engine::store::prelude::*;
use chairside_workflow::patient_report::{NotAccepted, PatientReport};
use chairside_workflow::{
    CurrentApplication, LenderPhase, LenderSession, Stage, TaskKind, WorkflowId, WorkflowKey,
    WorkflowState,
};
use chrono::{DateTime, Utc};
use financing_core::{
    ApplicationHandle, Language, LenderId, LenderLocation, LenderReference, LocationId, Money,
    PatientId, PlanId, PracticeId, UsState,
};

use crate::backend::{Backend, TestDb, both};
use crate::harness::{practice_id, t0};

fn mins(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::minutes(n)
}

fn cherry() -> LenderId {
    LenderId::new("cherry")
}

/// A workflow waiting for Cherry's decision on $640.00 until a day after `t0`.
async fn at_cherry(store: &dyn Store) -> WorkflowId {
    let key = WorkflowKey {
        practice_id: practice_id(),
        plan_id: PlanId::new("tx-1"),
        revision: "1".into(),
    };
    let mut state = WorkflowState::new(key, PatientId::new("pat-1"), t0());
    let first = state.start();
    state.stage = Stage::Financing(CurrentApplication {
        lender: cherry(),
        amount: Money::usd(64_000),
        contacted_at: t0(),
        phase: LenderPhase::AwaitingPatient {
            handle: ApplicationHandle {
                reference: chairside_workflow::application_reference(&state.id, &cherry(), 1),
                lender_reference: LenderReference::new("link-only"),
                location: LenderLocation {
                    practice_id: practice_id(),
                    location_id: LocationId::new("1"),
                    state: UsState::TX,
                },
                amount: Money::usd(64_000),
            },
            link: "https://pay.withcherry.test/smile".into(),
            reminders_sent: 0,
            session: LenderSession {
                decide_by: Some(t0() + chrono::Duration::days(1)),
                ..LenderSession::default()
            },
        },
    });
    store
        .record_poll(
            &practice_id(),
            "fakepms",
            "1",
            vec![NewWorkflow { state, first }],
            vec![],
            t0(),
        )
        .await
        .unwrap()
        .remove(0)
}

fn approved(cents: i64) -> NewPatientReport {
    NewPatientReport {
        lender: cherry(),
        lender_name: "Cherry".into(),
        report: PatientReport::Approved {
            amount: Money::usd(cents),
        },
        language: Language::En,
    }
}

async fn open_report_tasks(store: &dyn Store) -> Vec<(i64, String)> {
    store
        .tasks(None, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.task.kind == TaskKind::PatientReport)
        .map(|t| (t.id, t.task.reason))
        .collect()
}

async fn a_second_report_replaces_the_first_and_not_confirmed_closes_it_once(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let store = &*db.store;
    let id = at_cherry(store).await;
    let limit = ReportLimit::default();

    // Act
    let first = store
        .record_patient_report(&id, &approved(90_000), limit, mins(1))
        .await
        .unwrap()
        .unwrap();
    let second = store
        .record_patient_report(&id, &approved(64_000), limit, mins(2))
        .await
        .unwrap()
        .unwrap();

    // Assert: one open task, the second's words; the pending report is the second.
    assert_eq!(second.replaced, Some(first.task));
    assert_eq!(
        open_report_tasks(store).await,
        vec![(
            second.task,
            "Patient reports Cherry approved $640.00: check the Cherry portal and confirm".into()
        )]
    );
    // Each report's task is a `workflow.needs_staff` event, as any task the workflow raises,
    // so staff alerts and subscribers hear of it.
    let raised: Vec<String> = store
        .outbound_events(id.as_str())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "workflow.needs_staff")
        .map(|e| String::from_utf8(e.payload).unwrap())
        .collect();
    assert_eq!(raised.len(), 2, "{raised:?}");
    assert!(
        raised
            .iter()
            .all(|p| p.contains("\"task\":\"patient_report\"")),
        "{raised:?}"
    );
    let pending = store.pending_patient_report(&id).await.unwrap().unwrap();
    assert_eq!(pending.task, second.task);
    assert_eq!(pending.report, approved(64_000));
    assert_eq!(pending.reported_at, mins(2));
    // Sealed at rest: neither the lender nor the amount is in the stored bytes.
    let blobs = db.raw.blobs("SELECT report FROM patient_reports").await;
    assert_eq!(blobs.len(), 2);
    for blob in &blobs {
        let text = String::from_utf8_lossy(blob);
        assert!(
            !text.contains("cherry") && !text.contains("64000"),
            "{text}"
        );
    }

    // Another practice's staff, the replaced task: refused, nothing written.
    let foreign = store
        .dismiss_patient_report(
            &id,
            second.task,
            Some(&PracticeId::new("other")),
            "staff:eve",
            mins(3),
        )
        .await
        .unwrap();
    assert_eq!(foreign, Err(Refusal::UnknownWorkflow(id.clone())));
    let replaced = store
        .dismiss_patient_report(&id, first.task, None, "staff:bob", mins(3))
        .await
        .unwrap();
    assert!(
        matches!(replaced, Err(Refusal::StaleTask { .. })),
        "{replaced:?}"
    );
    let dismissed = store
        .dismiss_patient_report(&id, second.task, Some(&practice_id()), "staff:bob", mins(3))
        .await
        .unwrap()
        .unwrap();
    let twice = store
        .dismiss_patient_report(&id, second.task, None, "staff:bob", mins(4))
        .await
        .unwrap();

    assert_eq!(dismissed.report, approved(64_000));
    assert!(matches!(twice, Err(Refusal::StaleTask { .. })), "{twice:?}");
    assert!(open_report_tasks(store).await.is_empty());
    assert_eq!(store.pending_patient_report(&id).await.unwrap(), None);
    let audit: Vec<(String, String, String)> = store
        .audit(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "patient_report" || a.kind == "staff_action")
        .map(|a| (a.actor, a.kind, a.detail))
        .collect();
    assert_eq!(
        audit,
        vec![
            (
                "patient".into(),
                "patient_report".into(),
                "patient reports cherry approved $900.00 on the patient page (en)".into()
            ),
            (
                "patient".into(),
                "patient_report".into(),
                format!(
                    "patient reports cherry approved $640.00 on the patient page (en); replaces the report of task {}",
                    first.task
                )
            ),
            (
                "staff:bob".into(),
                "staff_action".into(),
                "patient_report_not_confirmed: cherry approved $640.00".into()
            ),
        ]
    );
}

async fn reports_past_the_limit_or_the_wait_or_for_another_lender_write_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = &*db.store;
    let id = at_cherry(store).await;
    let limit = ReportLimit {
        max: 2,
        window: chrono::Duration::minutes(10),
    };
    for n in 0..2 {
        store
            .record_patient_report(&id, &approved(64_000), limit, mins(n))
            .await
            .unwrap()
            .unwrap();
    }
    let third = store
        .record_patient_report(&id, &approved(64_000), limit, mins(5))
        .await
        .unwrap();
    assert_eq!(third, Err(ReportRefusal::RateLimited(id.clone())));
    // The window moves on.
    store
        .record_patient_report(&id, &approved(64_000), limit, mins(11))
        .await
        .unwrap()
        .unwrap();
    let other = NewPatientReport {
        lender: LenderId::new("alphaeon"),
        ..approved(64_000)
    };
    assert_eq!(
        store
            .record_patient_report(&id, &other, limit, mins(30))
            .await
            .unwrap(),
        Err(ReportRefusal::NotAccepted {
            workflow: id.clone(),
            why: NotAccepted::NotLive(LenderId::new("alphaeon"))
        })
    );
    assert_eq!(
        store
            .record_patient_report(&id, &approved(64_000), limit, mins(24 * 60))
            .await
            .unwrap(),
        Err(ReportRefusal::NotAccepted {
            workflow: id.clone(),
            why: NotAccepted::WaitOver(cherry())
        })
    );
    let unknown = WorkflowId::new("wf_missing");
    assert_eq!(
        store
            .record_patient_report(&unknown, &approved(64_000), limit, mins(30))
            .await
            .unwrap(),
        Err(ReportRefusal::UnknownWorkflow(unknown))
    );
    assert_eq!(open_report_tasks(store).await.len(), 1);
    assert_eq!(
        db.raw.count("SELECT COUNT(*) FROM patient_reports").await,
        3,
        "refusals wrote nothing"
    );
}

async fn rotate_key_reseals_a_report_and_it_reads_back_without_the_old_key(backend: Backend) {
    // Arrange: a report sealed under key A (the test store's key).
    let db = TestDb::new(backend).await;
    let id = at_cherry(&*db.store).await;
    db.store
        .record_patient_report(&id, &approved(64_000), ReportLimit::default(), mins(1))
        .await
        .unwrap()
        .unwrap();

    // Act: rotate to key B.
    let rotating = crate::rotation::Concrete::open(&db, crate::rotation::rotating()).await;
    let report = rotating.rotate_key(100).await.unwrap();

    // Assert: the report's row was re-sealed, and with key A gone it opens equal.
    assert!(
        report.resealed.contains(&("patient_reports", 1)),
        "{report:?}"
    );
    let only_b = db
        .reopen(chairside_engine::store::crypto::Keyring::new(
            1,
            crate::rotation::key_b(),
        ))
        .await;
    let pending = only_b.pending_patient_report(&id).await.unwrap().unwrap();
    assert_eq!(pending.report, approved(64_000));
}

both!(
    a_second_report_replaces_the_first_and_not_confirmed_closes_it_once,
    reports_past_the_limit_or_the_wait_or_for_another_lender_write_nothing,
    rotate_key_reseals_a_report_and_it_reads_back_without_the_old_key,
);
