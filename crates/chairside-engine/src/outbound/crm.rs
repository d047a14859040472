//! The CRM as a [`Subscriber`]: HubSpot deals for follow-up of consultations that did not convert
//! and of financing outcomes.
//!
//! An event is a trigger; what is written is the workflow's current truth, so deliveries that
//! arrive out of order still leave the deal at the right stage ([`stage_for`], pure):
//!
//! | the workflow | deal stage |
//! |---|---|
//! | cancelled (plan withdrawn, staff cancelled) | not converted |
//! | a payment received | paid |
//! | financed by a lender or the in-house plan | financed |
//! | no financing found (staff task `no_financing`) | declined |
//! | the patient went quiet (staff task `patient_quiet`) | not converted |
//! | otherwise | applying |
//!
//! Declined and not-converted consultations also get a follow-up task on the contact, once per
//! event. Only what follow-up needs crosses: the patient's name, email and phone (the contact),
//! a deal named after the plan's id, its stage, and the amount asked of lenders only when the
//! practice turned amounts on. Never procedure codes, clinical data or the task's wording.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{ErrorKind, PracticeId};
use hubspot_client::{ContactInput, DealInput, StageId, TaskInput};

use super::events::{EventType, FinancingOutcome, OutboundEvent};
use super::{DeliveryError, Subscriber};
use crate::store::Store;
use crate::store::outbox::StoredEvent;
use chairside_workflow::{Status, TaskKind, WorkflowState};

/// A deal's stage, by outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DealStage {
    /// The consultation did not convert (quiet patient, withdrawn, cancelled).
    NotConverted,
    /// Financing under way.
    Applying,
    /// Financed (a lender or the in-house plan).
    Financed,
    /// No financing found.
    Declined,
    /// Money received.
    Paid,
}

/// The account's internal stage ids for each outcome (HubSpot's pipelines API lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrmStages {
    /// Not converted.
    pub not_converted: StageId,
    /// Applying.
    pub applying: StageId,
    /// Financed.
    pub financed: StageId,
    /// Declined.
    pub declined: StageId,
    /// Paid.
    pub paid: StageId,
}

impl CrmStages {
    fn of(&self, stage: DealStage) -> &StageId {
        match stage {
            DealStage::NotConverted => &self.not_converted,
            DealStage::Applying => &self.applying,
            DealStage::Financed => &self.financed,
            DealStage::Declined => &self.declined,
            DealStage::Paid => &self.paid,
        }
    }
}

/// The deal stage a workflow stands at (the table in the module documentation).
pub fn stage_for(state: &WorkflowState) -> DealStage {
    let task = state.staff_task.as_ref().map(|t| t.kind);
    if state.status == Status::Cancelled {
        DealStage::NotConverted
    } else if !state.stripe.payments_noted.is_empty() {
        DealStage::Paid
    } else if state
        .result
        .as_ref()
        .is_some_and(|r| r.financed.is_some() || r.in_house.is_some())
    {
        DealStage::Financed
    } else if task == Some(TaskKind::NoFinancing) {
        DealStage::Declined
    } else if task == Some(TaskKind::PatientQuiet) {
        DealStage::NotConverted
    } else {
        DealStage::Applying
    }
}

/// The follow-up an event asks for, if any: (subject, body), without patient or clinical data.
fn follow_up(event: &OutboundEvent) -> Option<(&'static str, &'static str)> {
    if event.kind != EventType::NeedsStaff {
        return None;
    }
    match event.data.task.as_deref() {
        Some("no_financing") => Some((
            "Follow up: financing declined",
            "No lender approved the plan. Call the patient about other ways to pay.",
        )),
        Some("patient_quiet") => Some((
            "Follow up: consultation not converted",
            "The patient did not finish the financing application. Call to see whether they still want to go ahead.",
        )),
        _ => None,
    }
}

/// HubSpot, fed from the outbound events.
#[derive(Clone)]
pub struct HubSpotSubscriber {
    id: String,
    client: hubspot_client::Client,
    store: Arc<dyn Store>,
    stages: CrmStages,
    pipeline: Option<String>,
    amounts: bool,
    practices: Option<HashSet<PracticeId>>,
}

impl fmt::Debug for HubSpotSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotSubscriber")
            .field("id", &self.id)
            .field("amounts", &self.amounts)
            .finish_non_exhaustive()
    }
}

impl HubSpotSubscriber {
    /// A subscriber (`crm:hubspot`) writing through `client`, reading workflows and contacts from
    /// `store`.
    pub fn new(client: hubspot_client::Client, store: Arc<dyn Store>, stages: CrmStages) -> Self {
        Self {
            id: "crm:hubspot".into(),
            client,
            store,
            stages,
            pipeline: None,
            amounts: false,
            practices: None,
        }
    }

    /// The pipeline deals go in, when the account has several.
    #[must_use]
    pub fn pipeline(mut self, pipeline: Option<String>) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// Whether deals carry the amount asked of lenders (off by default).
    #[must_use]
    pub fn amounts(mut self, on: bool) -> Self {
        self.amounts = on;
        self
    }

    /// Only these practices' workflows (default all).
    #[must_use]
    pub fn practices(mut self, practices: impl IntoIterator<Item = PracticeId>) -> Self {
        self.practices = Some(practices.into_iter().collect());
        self
    }
}

fn failed(e: &hubspot_client::Error) -> DeliveryError {
    let reason = format!("HubSpot: {e}");
    match e.kind() {
        ErrorKind::Permanent => DeliveryError::give_up(e.status(), reason),
        ErrorKind::Transient { retry_after } => DeliveryError {
            retry: Some(retry_after),
            status: e.status(),
            reason,
            not_yet: false,
        },
        // A task create that may have happened: the next attempt searches before creating.
        _ => DeliveryError::retry(e.status(), reason),
    }
}

#[async_trait]
impl Subscriber for HubSpotSubscriber {
    fn id(&self) -> &str {
        &self.id
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        let practice_ok = self
            .practices
            .as_ref()
            .is_none_or(|p| p.contains(&PracticeId::new(event.practice_id.as_str())));
        let kind_ok = match EventType::from_label(&event.kind) {
            Some(
                EventType::WorkflowStarted
                | EventType::PaymentReceived
                | EventType::WorkflowCancelled,
            ) => true,
            Some(EventType::FinancingDecided) => OutboundEvent::from_payload(&event.payload)
                .is_ok_and(|e| e.data.outcome != Some(FinancingOutcome::NotFinanced)),
            Some(EventType::NeedsStaff) => {
                OutboundEvent::from_payload(&event.payload).is_ok_and(|e| follow_up(&e).is_some())
            }
            _ => false,
        };
        practice_ok && kind_ok
    }

    async fn deliver(
        &self,
        event: &StoredEvent,
        _attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<u16>, DeliveryError> {
        let parsed = OutboundEvent::from_payload(&event.payload)
            .map_err(|_| DeliveryError::give_up(None, "the event payload does not read"))?;
        let workflow = chairside_workflow::WorkflowId::new(event.workflow_id.as_str());
        let state = match self.store.workflow(&workflow).await {
            Ok(Some(row)) => row.state,
            Ok(None) => return Err(DeliveryError::give_up(None, "the workflow is gone")),
            Err(e) if e.is_unreadable() => {
                return Err(DeliveryError::give_up(None, "the workflow cannot be read"));
            }
            Err(_) => return Err(DeliveryError::retry(None, "the store failed")),
        };
        let contact = self
            .store
            .patient(&state.key.practice_id, &state.patient_id)
            .await
            .map_err(|_| DeliveryError::retry(None, "the store failed"))?;
        let contact_id = match contact.as_ref().and_then(|c| {
            c.email
                .as_ref()
                .filter(|e| !e.trim().is_empty())
                .map(|email| ContactInput {
                    email: email.clone(),
                    first_name: c.first_name.clone(),
                    last_name: c.last_name.clone(),
                    phone: c.mobile_phone.clone(),
                })
        }) {
            // HubSpot keys contacts by email: without one, the deal still records the outcome.
            Some(input) => Some(
                self.client
                    .upsert_contact(&input)
                    .await
                    .map_err(|e| failed(&e))?,
            ),
            None => None,
        };
        let deal = DealInput {
            key: state.id.as_str().to_owned(),
            name: format!("Chairside plan {}", state.key.plan_id),
            stage: self.stages.of(stage_for(&state)).clone(),
            pipeline: self.pipeline.clone(),
            amount: if self.amounts {
                state.financing_amount
            } else {
                None
            },
        };
        let deal_id = self
            .client
            .upsert_deal(&deal)
            .await
            .map_err(|e| failed(&e))?;
        if let Some(contact_id) = &contact_id {
            self.client
                .associate_deal_with_contact(&deal_id, contact_id)
                .await
                .map_err(|e| failed(&e))?;
            if let Some((subject, body)) = follow_up(&parsed) {
                let task = TaskInput {
                    subject: format!("{subject} [chairside {}]", parsed.id),
                    body: body.to_owned(),
                    due: now + chrono::Duration::days(1),
                    contact: contact_id.clone(),
                };
                self.client
                    .ensure_task(&task)
                    .await
                    .map_err(|e| failed(&e))?;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chairside_workflow::{FinancingResult, StaffTask, WorkflowKey};
    use financing_core::{LenderId, Money, PatientId, PlanId};

    fn state() -> WorkflowState {
        WorkflowState::new(
            WorkflowKey {
                practice_id: PracticeId::new("p"),
                plan_id: PlanId::new("tx-1"),
                revision: "1".into(),
            },
            PatientId::new("pat-1"),
            "2026-06-02T15:00:00Z".parse().unwrap(),
        )
    }

    #[test]
    fn the_stage_follows_the_table_whatever_order_the_events_came_in() {
        let mut s = state();
        assert_eq!(stage_for(&s), DealStage::Applying);
        s.staff_task = Some(StaffTask {
            kind: TaskKind::PatientQuiet,
            reason: String::new(),
        });
        assert_eq!(stage_for(&s), DealStage::NotConverted);
        s.staff_task = Some(StaffTask {
            kind: TaskKind::NoFinancing,
            reason: String::new(),
        });
        assert_eq!(stage_for(&s), DealStage::Declined);
        s.staff_task = None;
        s.result = Some(FinancingResult {
            financed: Some((LenderId::new("sunbit"), Money::usd(1))),
            deposit: Money::usd(0),
            in_house: None,
            path: String::new(),
        });
        assert_eq!(stage_for(&s), DealStage::Financed);
        s.stripe.payments_noted.push("pi_1".into());
        assert_eq!(stage_for(&s), DealStage::Paid);
        s.status = Status::Cancelled;
        assert_eq!(stage_for(&s), DealStage::NotConverted);
    }
}
