use chrono::{DateTime, Utc};
use financing_core::{LenderId, Money, PatientId, PlanId, PracticeId};

use super::*;
use chairside_workflow::{FinancingResult, StaffTask, TaskKind, WorkflowKey};

fn at() -> DateTime<Utc> {
    "2026-06-02T15:00:00Z".parse().unwrap()
}

fn state() -> WorkflowState {
    WorkflowState::new(
        WorkflowKey {
            practice_id: PracticeId::new("smile-dental-test"),
            plan_id: PlanId::new("tx-1"),
            revision: "1".into(),
        },
        PatientId::new("pat-1"),
        at(),
    )
}

fn kinds(events: &[OutboundEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.label()).collect()
}

#[test]
fn leaving_the_plan_reading_stage_starts_the_workflow_once() {
    let before = state();
    let mut after = before.clone();
    after.stage = Stage::Notifying;
    assert_eq!(
        kinds(&derive(&before, &after, None, at())),
        ["workflow.started"]
    );
    // A later step from Notifying does not start it again.
    let mut later = after.clone();
    later.stage = Stage::WritingNote;
    assert!(!kinds(&derive(&after, &later, None, at())).contains(&"workflow.started"));
}

#[test]
fn a_financed_result_names_the_lender_and_no_amount() {
    let mut before = state();
    before.stage = Stage::Notifying;
    let mut after = before.clone();
    after.result = Some(FinancingResult {
        financed: Some((LenderId::new("sunbit"), Money::usd(123_400))),
        deposit: Money::usd(20_000),
        in_house: None,
        path: "sunbit approved".into(),
    });
    let events = derive(&before, &after, None, at());
    assert_eq!(kinds(&events), ["financing.decided"]);
    assert_eq!(events[0].data.outcome, Some(FinancingOutcome::Financed));
    assert_eq!(events[0].data.lender.as_deref(), Some("sunbit"));
    let body = String::from_utf8(events[0].payload()).unwrap();
    assert!(!body.contains("1234"), "no amount in {body}");
    assert!(!body.contains("pat-1"), "no patient id in {body}");
    assert!(body.contains(r#""type":"financing.decided""#), "{body}");
    assert!(body.contains(r#""version":1"#), "{body}");
}

#[test]
fn each_staff_task_is_its_own_event_with_its_kind() {
    let before = state();
    let mut after = before.clone();
    after.status = Status::WaitingOnStaff;
    let task = StaffTask {
        kind: TaskKind::NoFinancing,
        reason: "no lender approved".into(),
    };
    let first = derive(&before, &after, Some((&task, 1)), at());
    let second = derive(&before, &after, Some((&task, 2)), at());
    assert_eq!(kinds(&first), ["workflow.needs_staff"]);
    assert_eq!(first[0].data.task.as_deref(), Some("no_financing"));
    assert_ne!(first[0].id, second[0].id);
    let body = String::from_utf8(first[0].payload()).unwrap();
    assert!(!body.contains("no lender approved"), "no free text: {body}");
}

#[test]
fn the_summary_is_sent_only_when_notifying_ends_without_a_delivery_task() {
    let mut before = state();
    before.stage = Stage::Notifying;
    let mut after = before.clone();
    after.stage = Stage::WritingNote;
    assert_eq!(
        kinds(&derive(&before, &after, None, at())),
        ["summary.sent"]
    );
    let undeliverable = StaffTask {
        kind: TaskKind::Unreachable,
        reason: "no channel".into(),
    };
    assert_eq!(
        kinds(&derive(&before, &after, Some((&undeliverable, 1)), at())),
        ["workflow.needs_staff"]
    );
}

#[test]
fn notes_payments_and_cancellation_are_events_once_each() {
    let mut before = state();
    before.stage = Stage::WritingNote;
    before.stripe.payments_noted = vec!["pi_1".into()];
    let mut after = before.clone();
    after.stage = Stage::Settled;
    after.ledger_written_at = Some(at());
    after.stripe.payments_noted.push("in_2".into());
    after.status = Status::Cancelled;
    let events = derive(&before, &after, None, at());
    assert_eq!(
        kinds(&events),
        ["payment.received", "note.written", "workflow.cancelled"]
    );
    assert_eq!(events[0].data.payment_id.as_deref(), Some("in_2"));
    assert!(derive(&after, &after, None, at()).is_empty());
}

#[test]
fn the_id_is_stable_and_the_payload_reads_back() {
    let before = state();
    let mut after = before.clone();
    after.stage = Stage::Notifying;
    let a = derive(&before, &after, None, at());
    let b = derive(&before, &after, None, at());
    assert_eq!(a[0].id, b[0].id);
    assert!(a[0].id.starts_with("evt_") && !a[0].id.contains('.'));
    assert_eq!(OutboundEvent::from_payload(&a[0].payload()).unwrap(), a[0]);
}

#[test]
fn a_financed_case_with_its_treatment_date_is_scheduled_once_and_never_when_withdrawn() {
    // Arrange: financing decided on a plan with a treatment date.
    let mut before = state();
    before.stage = Stage::Notifying;
    before.treatment_date = chrono::NaiveDate::from_ymd_opt(2026, 7, 1);
    let mut after = before.clone();
    after.result = Some(FinancingResult {
        financed: Some((LenderId::new("carecredit"), Money::usd(90_000))),
        deposit: Money::usd(10_000),
        in_house: None,
        path: "carecredit approved".into(),
    });

    // Act + Assert
    let events = derive(&before, &after, None, at());
    assert_eq!(kinds(&events), ["financing.decided", "case.scheduled"]);
    let body = String::from_utf8(events[1].payload()).unwrap();
    assert!(
        !body.contains("2026-07-01"),
        "the date stays out of the payload: {body}"
    );
    // The next step does not schedule it again.
    let mut later = after.clone();
    later.stage = Stage::WritingNote;
    assert!(!kinds(&derive(&after, &later, None, at())).contains(&"case.scheduled"));
    // No treatment date, or not financed: nothing for the lab.
    let mut undated = after.clone();
    undated.treatment_date = None;
    assert!(!kinds(&derive(&before, &undated, None, at())).contains(&"case.scheduled"));
    let mut declined = after.clone();
    declined.result = Some(FinancingResult {
        financed: None,
        deposit: Money::usd(0),
        in_house: None,
        path: "no financing".into(),
    });
    assert!(!kinds(&derive(&before, &declined, None, at())).contains(&"case.scheduled"));
}

#[test]
fn a_plan_task_event_is_stable_per_task_and_carries_ids_and_its_kind_only() {
    let task = |marker: &'static str, field: &'static str| PlanTask {
        practice_id: "smile-dental-test",
        source: "dentrix",
        plan_id: "10002",
        marker,
        field,
        kind: "unreadable_record",
        row: 17,
    };
    let e = plan_needs_staff(task("m1", "data[0].status"), at());
    assert_eq!(
        e.id,
        plan_needs_staff(task("m1", "data[0].status"), at()).id
    );
    assert_ne!(
        e.id,
        plan_needs_staff(task("m2", "data[0].status"), at()).id
    );
    assert_ne!(e.id, plan_needs_staff(task("m1", "data[0].fee"), at()).id);
    let body = String::from_utf8(e.payload()).unwrap();
    assert!(body.contains(r#""type":"plan.needs_staff""#), "{body}");
    assert!(body.contains(r#""task":"unreadable_record""#), "{body}");
    assert!(body.contains(r#""detection_task":17"#), "{body}");
    assert!(
        !body.contains("workflow_id") && !body.contains("status"),
        "{body}"
    );
    assert_eq!(OutboundEvent::from_payload(&e.payload()).unwrap(), e);
}
