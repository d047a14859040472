//! Staff alerts as a [`Subscriber`]: each new staff task (`workflow.needs_staff`) emails the
//! practice's staff address, at most once per task.
//!
//! What the alert says is minimum necessary (COMPLIANCE.md §6): the patient's initials, the plan's
//! id in the practice system, the task's reason (reasons carry no PHI: amounts, lender names,
//! what to do) and a link to the dashboard, where staff sign in for the rest. Never a name, a
//! phone, an email or a procedure.
//!
//! At most once: the dispatcher delivers each event once per subscriber (and again only after a
//! crash mid-call); the send is journalled under the event's id before it goes out
//! ([`DeliveryStore`]), so an attempt whose outcome is unknown is taken as sent, never repeated.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{Language, PracticeId};
use messaging::{EmailAddress, EmailSender, StaffAlert, Templates};
use url::Url;

use super::events::{EventType, OutboundEvent};
use super::{DeliveryError, Subscriber};
use crate::store::outbox::StoredEvent;
use crate::store::{DeliveryStore, SendRecord, Store};
use chairside_workflow::{TaskKind, WorkflowState};

/// The journal channel of staff alerts.
const CHANNEL: &str = "staff_alert";

/// One practice's alert settings.
#[derive(Clone)]
pub struct AlertRoute {
    /// The practice's name, as staff know it.
    pub practice_name: String,
    /// Where alerts go: the practice's own staff mailbox.
    pub to: EmailAddress,
    /// The practice's SMTP sender.
    pub sender: Arc<EmailSender>,
    /// Only these task kinds (labels, `counteroffer`, `patient_quiet`, ...); `None` for all.
    pub kinds: Option<Vec<String>>,
}

impl fmt::Debug for AlertRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertRoute")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

/// Emails each practice's staff address about new tasks. See the [module documentation](self).
pub struct StaffAlerts {
    routes: HashMap<PracticeId, AlertRoute>,
    store: Arc<dyn Store>,
    journal: Arc<dyn DeliveryStore>,
    templates: Arc<Templates>,
    dashboard: Url,
}

impl fmt::Debug for StaffAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffAlerts")
            .field("practices", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl StaffAlerts {
    /// Alerts for the practices in `routes`, read from `store`, each send journalled in `journal`
    /// (at most once), linking to the dashboard under `public_base_url`
    /// (`{base}staff/workflows/{id}`).
    ///
    /// # Errors
    /// A message when the shipped templates do not load.
    pub fn new(
        routes: HashMap<PracticeId, AlertRoute>,
        store: Arc<dyn Store>,
        journal: Arc<dyn DeliveryStore>,
        public_base_url: Url,
    ) -> Result<Self, String> {
        let templates = Templates::load().map_err(|e| format!("staff alert templates: {e}"))?;
        Ok(Self {
            routes,
            store,
            journal,
            templates: Arc::new(templates),
            dashboard: public_base_url,
        })
    }
}

/// What a task kind asks of staff, for an alert whose task is no longer on the workflow (raised
/// beside it, or already answered): never the patient's details.
pub fn kind_reason(kind: &str) -> String {
    let what = match kind {
        "bad_data" => "the plan's data cannot be priced; correct it in the practice system",
        "unreachable" => "the patient cannot be reached; add a phone or email",
        "counteroffer" => "a lender made a counteroffer to discuss with the patient",
        "patient_quiet" => "the patient did not finish; call them, then resend the link",
        "no_financing" => "no lender approved; discuss payment with the patient",
        "payment_failed" => "a payment failed; the patient was told",
        "payment_reversed" => "a payment was refunded, disputed or its schedule ended",
        "system_error" => "an external call failed; retry once the cause is fixed",
        "consent_refusal" => "the patient refused texts in their own words",
        "settlement" => "a lender charge is for staff to run",
        "lender_needs_staff" => "a lender needs a person",
        _ => "a task needs a person",
    };
    what.to_owned()
}

/// The alert for `task` (its label) on `state`: the plan's id and the task's reason when the
/// workflow still carries that task, else what the kind asks. Pure.
pub fn alert_reason(state: &WorkflowState, task: &str) -> String {
    let reason = state
        .staff_task
        .as_ref()
        .filter(|t| t.kind.label() == task)
        .map_or_else(|| kind_reason(task), |t| t.reason.clone());
    format!(
        "plan {} ({}): {reason}",
        state.key.plan_id,
        task.replace('_', " ")
    )
}

fn store_failed() -> DeliveryError {
    DeliveryError::retry(None, "the store failed")
}

#[async_trait]
impl Subscriber for StaffAlerts {
    fn id(&self) -> &str {
        "staff-alerts"
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        let Some(route) = self
            .routes
            .get(&PracticeId::new(event.practice_id.as_str()))
        else {
            return false;
        };
        if EventType::from_label(&event.kind) != Some(EventType::NeedsStaff) {
            return false;
        }
        match &route.kinds {
            None => true,
            Some(kinds) => OutboundEvent::from_payload(&event.payload)
                .ok()
                .and_then(|e| e.data.task)
                .is_some_and(|t| kinds.contains(&t)),
        }
    }

    async fn deliver(
        &self,
        event: &StoredEvent,
        _attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<u16>, DeliveryError> {
        let route = self
            .routes
            .get(&PracticeId::new(event.practice_id.as_str()))
            .ok_or_else(|| DeliveryError::give_up(None, "no staff alert address"))?;
        let parsed = OutboundEvent::from_payload(&event.payload)
            .map_err(|_| DeliveryError::give_up(None, "the event payload does not read"))?;
        let task = parsed
            .data
            .task
            .unwrap_or_else(|| TaskKind::SystemError.label().to_owned());
        let key = format!("staff-alert:{}", event.event_id);
        match self
            .journal
            .send_record(&key, CHANNEL)
            .await
            .map_err(|_| store_failed())?
        {
            // Sent, or an attempt whose outcome is unknown: at most once.
            Some(SendRecord::Sent { .. } | SendRecord::Attempting { .. }) => return Ok(None),
            None => {}
        }
        let workflow = chairside_workflow::WorkflowId::new(event.workflow_id.as_str());
        let state = match self.store.workflow(&workflow).await {
            Ok(Some(row)) => row.state,
            Ok(None) => return Err(DeliveryError::give_up(None, "the workflow is gone")),
            Err(e) if e.is_unreadable() => {
                return Err(DeliveryError::give_up(None, "the workflow cannot be read"));
            }
            Err(_) => return Err(store_failed()),
        };
        let initials = self
            .store
            .patient(&state.key.practice_id, &state.patient_id)
            .await
            .map_err(|_| store_failed())?
            .map_or_else(|| "?".to_owned(), |c| c.initials());
        let link = self
            .dashboard
            .join(&format!("staff/workflows/{}", state.id))
            .map_err(|_| DeliveryError::give_up(None, "the dashboard link does not parse"))?;
        let email = self
            .templates
            .render_email(
                Language::En,
                &StaffAlert {
                    practice_name: route.practice_name.clone(),
                    patient_initials: initials,
                    reason: alert_reason(&state, &task),
                    dashboard_link: link,
                },
            )
            .map_err(|e| DeliveryError::give_up(None, format!("the alert did not render: {e}")))?;
        self.journal
            .begin_send(&key, CHANNEL, None, now)
            .await
            .map_err(|_| store_failed())?;
        match route.sender.send_keyed(&route.to, &email, &key).await {
            Ok(id) => {
                self.journal
                    .finish_send(&key, CHANNEL, true, Some(id.as_ref()), now)
                    .await
                    .map_err(|_| store_failed())?;
                Ok(None)
            }
            Err(e) if e.kind() == financing_core::ErrorKind::Indeterminate => {
                // The server may have it: taken as sent (the journal keeps the attempt).
                Ok(None)
            }
            Err(e) => {
                self.journal
                    .finish_send(&key, CHANNEL, false, None, now)
                    .await
                    .map_err(|_| store_failed())?;
                Err(DeliveryError::retry(
                    None,
                    format!("the staff alert email failed ({:?})", e.kind()),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chairside_workflow::{StaffTask, WorkflowKey};
    use financing_core::{PatientId, PlanId};

    fn state(task: Option<StaffTask>) -> WorkflowState {
        let mut s = WorkflowState::new(
            WorkflowKey {
                practice_id: PracticeId::new("smile"),
                plan_id: PlanId::new("tx-77"),
                revision: "1".into(),
            },
            PatientId::new("pat-1"),
            DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
        );
        s.staff_task = task;
        s
    }

    #[test]
    fn an_alert_names_the_plan_and_the_tasks_own_reason_and_nothing_about_the_patient() {
        let s = state(Some(StaffTask {
            kind: TaskKind::Counteroffer,
            reason: "CareCredit approved $600.00, $400.00 short of the amount asked".into(),
        }));
        assert_eq!(
            alert_reason(&s, "counteroffer"),
            "plan tx-77 (counteroffer): CareCredit approved $600.00, $400.00 short of the amount asked"
        );
    }

    #[test]
    fn a_task_raised_beside_the_workflow_is_described_by_its_kind() {
        let s = state(None);
        assert_eq!(
            alert_reason(&s, "payment_failed"),
            "plan tx-77 (payment failed): a payment failed; the patient was told"
        );
        assert_eq!(kind_reason("new_kind"), "a task needs a person");
    }
}
