//! The outbound events, version 1: which changes of a workflow become an event, and the JSON a
//! subscriber receives. Pure: derived from the state before and after a committed step, so the
//! store writes them in the step's own transaction.
//!
//! A payload carries ids and states only: no names, contact details, procedure codes, clinical
//! data or amounts. A subscriber that needs more (the CRM, the lab) reads it itself, under its own
//! rules, when it delivers.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use chairside_workflow::{StaffTask, Stage, Status, WorkflowState};

/// The payload's version. A change that removes or renames a field is a new version.
pub const PAYLOAD_VERSION: u32 = 1;

/// The kinds of outbound event (the payload's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventType {
    /// The plan was read and the chain began (`workflow.started`).
    #[serde(rename = "workflow.started")]
    WorkflowStarted,
    /// Financing ended: financed by a lender, the in-house plan, or not financed
    /// (`financing.decided`).
    #[serde(rename = "financing.decided")]
    FinancingDecided,
    /// A staff task was opened; `no_financing` is the declined case (`workflow.needs_staff`).
    #[serde(rename = "workflow.needs_staff")]
    NeedsStaff,
    /// A payment (the deposit, an installment) was received (`payment.received`).
    #[serde(rename = "payment.received")]
    PaymentReceived,
    /// The financing summary went to the patient (`summary.sent`).
    #[serde(rename = "summary.sent")]
    SummarySent,
    /// The outcome note is in the practice's ledger (`note.written`).
    #[serde(rename = "note.written")]
    NoteWritten,
    /// The plan was withdrawn or staff cancelled (`workflow.cancelled`).
    #[serde(rename = "workflow.cancelled")]
    WorkflowCancelled,
    /// A financed case has its treatment date (`case.scheduled`): the lab is told.
    #[serde(rename = "case.scheduled")]
    CaseScheduled,
    /// A plan could not be started (unreadable, failing a check, edited after financing was
    /// done): a detection task for staff, before any workflow exists (`plan.needs_staff`).
    #[serde(rename = "plan.needs_staff")]
    PlanNeedsStaff,
}

impl EventType {
    /// Every type, in the order a workflow usually meets them.
    pub const ALL: [Self; 9] = [
        Self::WorkflowStarted,
        Self::FinancingDecided,
        Self::NeedsStaff,
        Self::PaymentReceived,
        Self::SummarySent,
        Self::NoteWritten,
        Self::WorkflowCancelled,
        Self::CaseScheduled,
        Self::PlanNeedsStaff,
    ];

    /// The label, as in the payload's `type`.
    pub fn label(self) -> &'static str {
        match self {
            Self::WorkflowStarted => "workflow.started",
            Self::FinancingDecided => "financing.decided",
            Self::NeedsStaff => "workflow.needs_staff",
            Self::PaymentReceived => "payment.received",
            Self::SummarySent => "summary.sent",
            Self::NoteWritten => "note.written",
            Self::WorkflowCancelled => "workflow.cancelled",
            Self::CaseScheduled => "case.scheduled",
            Self::PlanNeedsStaff => "plan.needs_staff",
        }
    }

    /// Parses a label.
    pub fn from_label(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.label() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How financing ended, as `financing.decided` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinancingOutcome {
    /// A lender finances the patient's portion (`lender` names it).
    Financed,
    /// The practice's in-house plan.
    InHouse,
    /// Nothing financed (nothing to finance, or the patient pays otherwise).
    NotFinanced,
}

/// The `data` of an event: ids and states, nothing about the patient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// Chairside's workflow id; absent from `plan.needs_staff` (no workflow exists yet).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow_id: String,
    /// The practice.
    pub practice_id: String,
    /// The treatment plan's id in the practice system.
    pub plan_id: String,
    /// The plan's revision (`plan.needs_staff`: the version of the record the task is about).
    pub revision: String,
    /// The workflow's status after the change (`active`, `waiting_on_staff`, `done`,
    /// `cancelled`); absent from `plan.needs_staff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// `financing.decided`: how financing ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<FinancingOutcome>,
    /// `financing.decided` when financed: the lender's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lender: Option<String>,
    /// `workflow.needs_staff`: the task's kind (`no_financing`, `patient_quiet`, ...);
    /// `plan.needs_staff`: the problem's kind (`unreadable_record`, `plan_check`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// `plan.needs_staff`: the practice system (`dentrix`, `nexhealth`, `opendental`, `intake`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `plan.needs_staff`: the detection task's id (the dashboard's detection section lists it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_task: Option<i64>,
    /// `payment.received`: Stripe's id of the payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
}

/// One event, as written to the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundEvent {
    /// Stable id (`evt_` and 24 hex digits), derived from the workflow and what happened: the
    /// `webhook-id` every delivery of it carries, whatever the attempt.
    pub id: String,
    /// The type.
    pub kind: EventType,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The data.
    pub data: EventData,
}

/// The JSON document sent (Standard Webhooks' `{type, timestamp, data}`, plus `version`).
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: EventType,
    timestamp: String,
    version: u32,
    #[serde(borrow)]
    id: &'a str,
    data: EventData,
}

impl EventData {
    /// The ids every event carries, and nothing else yet.
    fn ids(
        workflow_id: &str,
        practice_id: &str,
        plan_id: &str,
        revision: &str,
        status: &str,
    ) -> Self {
        Self {
            workflow_id: workflow_id.to_owned(),
            practice_id: practice_id.to_owned(),
            plan_id: plan_id.to_owned(),
            revision: revision.to_owned(),
            status: status.to_owned(),
            outcome: None,
            lender: None,
            task: None,
            source: None,
            detection_task: None,
            payment_id: None,
        }
    }
}

impl OutboundEvent {
    fn new(state: &WorkflowState, kind: EventType, key: &str, at: DateTime<Utc>) -> Self {
        Self {
            id: event_id(state.id.as_str(), key),
            kind,
            at,
            data: EventData::ids(
                state.id.as_str(),
                state.key.practice_id.as_str(),
                state.key.plan_id.as_str(),
                &state.key.revision,
                state.status.label(),
            ),
        }
    }

    /// The bytes sent: written once into the outbox, so every retry sends the identical body the
    /// signature covers.
    pub fn payload(&self) -> Vec<u8> {
        let envelope = Envelope {
            kind: self.kind,
            timestamp: self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            version: PAYLOAD_VERSION,
            id: &self.id,
            data: self.data.clone(),
        };
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Reads a payload back (subscribers that act on the data).
    ///
    /// # Errors
    /// The bytes are not a version-1 payload.
    pub fn from_payload(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let envelope: Envelope<'_> = serde_json::from_slice(bytes)?;
        if envelope.version != PAYLOAD_VERSION {
            return Err(serde::de::Error::custom("unknown payload version"));
        }
        let at = DateTime::parse_from_rfc3339(&envelope.timestamp)
            .map_err(serde::de::Error::custom)?
            .with_timezone(&Utc);
        Ok(Self {
            id: envelope.id.to_owned(),
            kind: envelope.kind,
            at,
            data: envelope.data,
        })
    }
}

/// `evt_` and the first 24 hex digits of SHA-256(workflow id, what happened): the same change
/// always has the same id, so a step re-run after a crash cannot write it twice. No `.` in it
/// (Standard Webhooks signs `id.timestamp.body`).
pub fn event_id(workflow_id: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(workflow_id.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    format!("evt_{}", &hex::encode(h.finalize())[..24])
}

/// A workflow set aside because its stored data does not read (quarantined), as its row's plain
/// columns say: the state itself may not open, so nothing is read from it.
#[derive(Clone, Copy, Debug)]
pub struct SetAside<'a> {
    /// Chairside's workflow id.
    pub workflow_id: &'a str,
    /// The practice.
    pub practice_id: &'a str,
    /// The treatment plan's id in the practice system.
    pub plan_id: &'a str,
    /// The plan's revision.
    pub revision: &'a str,
    /// The status column of the row.
    pub status: &'a str,
}

/// The `workflow.needs_staff` event of a quarantined workflow's `system_error` task. Pure. Its id
/// is derived from the workflow alone (a workflow is set aside once), so writing it again is a
/// no-op.
pub fn set_aside_needs_staff(w: SetAside<'_>, at: DateTime<Utc>) -> OutboundEvent {
    OutboundEvent {
        id: event_id(w.workflow_id, "set_aside"),
        kind: EventType::NeedsStaff,
        at,
        data: EventData {
            task: Some(chairside_workflow::TaskKind::SystemError.label().to_owned()),
            ..EventData::ids(
                w.workflow_id,
                w.practice_id,
                w.plan_id,
                w.revision,
                w.status,
            )
        },
    }
}

/// A detection task just opened, as [`plan_needs_staff`] reads it: ids and the problem's kind.
#[derive(Clone, Copy, Debug)]
pub struct PlanTask<'a> {
    /// The practice.
    pub practice_id: &'a str,
    /// The practice system.
    pub source: &'a str,
    /// The plan's id in the practice system (or what stands for it when it could not be read).
    pub plan_id: &'a str,
    /// The record's version.
    pub marker: &'a str,
    /// The field path (in the event's id only, not in its data).
    pub field: &'a str,
    /// The problem's kind (a `DetectionKind` label).
    pub kind: &'a str,
    /// The detection task's row id.
    pub row: i64,
}

/// The `plan.needs_staff` event of a detection task. Pure. Its id is derived from the practice,
/// the practice system, the plan, the record's version and the field (the task's own identity),
/// so the same task always has the same event id.
pub fn plan_needs_staff(task: PlanTask<'_>, at: DateTime<Utc>) -> OutboundEvent {
    let id = event_id(
        &format!(
            "plan\0{}\0{}\0{}",
            task.practice_id, task.source, task.plan_id
        ),
        &format!("task\0{}\0{}", task.marker, task.field),
    );
    OutboundEvent {
        id,
        kind: EventType::PlanNeedsStaff,
        at,
        data: EventData {
            task: Some(task.kind.to_owned()),
            source: Some(task.source.to_owned()),
            detection_task: Some(task.row),
            ..EventData::ids("", task.practice_id, task.plan_id, task.marker, "")
        },
    }
}

/// The events of one committed step: what changed from `before` to `after`. `raised` is the staff
/// task the step opened with its number among the workflow's tasks (1 for the first), which keeps
/// two tasks of one kind apart.
pub fn derive(
    before: &WorkflowState,
    after: &WorkflowState,
    raised: Option<(&StaffTask, i64)>,
    at: DateTime<Utc>,
) -> Vec<OutboundEvent> {
    let mut out = Vec::new();
    if before.stage == Stage::LoadingPlan && after.stage != Stage::LoadingPlan {
        out.push(OutboundEvent::new(
            after,
            EventType::WorkflowStarted,
            "started",
            at,
        ));
    }
    if before.result.is_none()
        && let Some(result) = &after.result
    {
        let mut e = OutboundEvent::new(after, EventType::FinancingDecided, "financing", at);
        let (outcome, lender) = match (&result.financed, &result.in_house) {
            (Some((lender, _)), _) => {
                (FinancingOutcome::Financed, Some(lender.as_str().to_owned()))
            }
            (None, Some(_)) => (FinancingOutcome::InHouse, None),
            (None, None) => (FinancingOutcome::NotFinanced, None),
        };
        e.data.outcome = Some(outcome);
        e.data.lender = lender;
        out.push(e);
    }
    if let Some((task, n)) = raised {
        let mut e = OutboundEvent::new(after, EventType::NeedsStaff, &format!("task:{n}"), at);
        e.data.task = Some(task.kind.label().to_owned());
        out.push(e);
    }
    for paid in after
        .stripe
        .payments_noted
        .iter()
        .filter(|p| !before.stripe.payments_noted.contains(p))
    {
        let mut e = OutboundEvent::new(
            after,
            EventType::PaymentReceived,
            &format!("payment:{paid}"),
            at,
        );
        e.data.payment_id = Some(paid.clone());
        out.push(e);
    }
    let summary_failed = raised.is_some_and(|(t, _)| {
        t.kind == chairside_workflow::TaskKind::Unreachable && before.stage == Stage::Notifying
    });
    if before.stage == Stage::Notifying && after.stage == Stage::WritingNote && !summary_failed {
        out.push(OutboundEvent::new(
            after,
            EventType::SummarySent,
            "summary",
            at,
        ));
    }
    if before.ledger_written_at.is_none() && after.ledger_written_at.is_some() {
        out.push(OutboundEvent::new(
            after,
            EventType::NoteWritten,
            "note",
            at,
        ));
    }
    if !scheduled(before) && scheduled(after) {
        out.push(OutboundEvent::new(
            after,
            EventType::CaseScheduled,
            "scheduled",
            at,
        ));
    }
    if before.status != Status::Cancelled && after.status == Status::Cancelled {
        out.push(OutboundEvent::new(
            after,
            EventType::WorkflowCancelled,
            "cancelled",
            at,
        ));
    }
    out
}

/// A financed case with its treatment date: financing arranged (a lender, or the in-house plan the
/// patient accepted), a treatment date known, and not withdrawn.
pub fn scheduled(s: &WorkflowState) -> bool {
    s.status != Status::Cancelled
        && s.treatment_date.is_some()
        && s.result.as_ref().is_some_and(|r| {
            r.financed.is_some() || (r.in_house.is_some() && s.in_house_acceptance.is_some())
        })
}

#[cfg(test)]
mod tests;
