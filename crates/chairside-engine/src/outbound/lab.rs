//! The practice's dental lab as a [`Subscriber`]: when a financed case has its treatment date
//! (`case.scheduled`), the lab's address gets one email naming the case reference, the patient's
//! initials and the date. No amounts, lender, procedures or contact details (docs/outbound.md).
//!
//! Once: the dispatcher delivers each event once per subscriber; the email's `Message-ID` derives
//! from the event id, so the rare resend after a crash mid-send (SMTP has no lookup) carries the
//! same `Message-ID` and a mail system that deduplicates shows one message.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{ErrorKind, PracticeId};
use messaging::{EmailAddress, EmailSender, RenderedEmail};

use super::events::EventType;
use super::{DeliveryError, Subscriber};
use crate::store::Store;
use crate::store::outbox::StoredEvent;

/// One practice's lab.
pub struct LabSubscriber {
    id: String,
    practice: PracticeId,
    practice_name: String,
    to: EmailAddress,
    sender: Arc<EmailSender>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for LabSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabSubscriber")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LabSubscriber {
    /// The lab of `practice` (named `practice_name` in the email) at `to`, written to through the
    /// practice's own SMTP sender.
    pub fn new(
        practice: PracticeId,
        practice_name: impl Into<String>,
        to: EmailAddress,
        sender: Arc<EmailSender>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            id: format!("lab:{practice}"),
            practice,
            practice_name: practice_name.into(),
            to,
            sender,
            store,
        }
    }
}

/// The lab's email: the case reference, the initials, the date; nothing financial.
pub fn lab_email(
    practice_name: &str,
    reference: &str,
    initials: &str,
    day: chrono::NaiveDate,
) -> RenderedEmail {
    let date = day.format("%A %-d %B %Y").to_string();
    let text = format!(
        "Upcoming case from {practice_name}\n\nCase reference: {reference}\nPatient: {initials}\nTreatment date: {date}\n"
    );
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let html = format!(
        "<p>Upcoming case from {}</p><p>Case reference: {}<br>Patient: {}<br>Treatment date: {}</p>",
        esc(practice_name),
        esc(reference),
        esc(initials),
        esc(&date)
    );
    RenderedEmail {
        subject: format!("Upcoming case {reference} on {}", day.format("%Y-%m-%d")),
        text,
        html,
    }
}

#[async_trait]
impl Subscriber for LabSubscriber {
    fn id(&self) -> &str {
        &self.id
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        event.practice_id == self.practice.as_str()
            && EventType::from_label(&event.kind) == Some(EventType::CaseScheduled)
    }

    async fn deliver(
        &self,
        event: &StoredEvent,
        _attempt: u32,
        _now: DateTime<Utc>,
    ) -> Result<Option<u16>, DeliveryError> {
        let workflow = chairside_workflow::WorkflowId::new(event.workflow_id.as_str());
        let state = match self.store.workflow(&workflow).await {
            Ok(Some(row)) => row.state,
            Ok(None) => return Err(DeliveryError::give_up(None, "the workflow is gone")),
            Err(e) if e.is_unreadable() => {
                return Err(DeliveryError::give_up(None, "the workflow cannot be read"));
            }
            Err(_) => return Err(DeliveryError::retry(None, "the store failed")),
        };
        let Some(day) = state.treatment_date else {
            return Err(DeliveryError::give_up(
                None,
                "the case has no treatment date",
            ));
        };
        let initials = match self
            .store
            .patient(&state.key.practice_id, &state.patient_id)
            .await
        {
            Ok(c) => c.map_or_else(|| "-".to_owned(), |c| c.initials()),
            Err(_) => return Err(DeliveryError::retry(None, "the store failed")),
        };
        let email = lab_email(
            &self.practice_name,
            &format!("{} ({})", state.key.plan_id, state.id),
            &initials,
            day,
        );
        match self
            .sender
            .send_keyed(&self.to, &email, &event.event_id)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::Permanent => {
                Err(DeliveryError::give_up(None, format!("smtp: {e}")))
            }
            Err(e) => Err(DeliveryError::retry(None, format!("smtp: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_email_names_the_case_the_initials_and_the_date_and_nothing_financial() {
        let day = chrono::NaiveDate::from_ymd_opt(2027, 3, 15).unwrap();
        let e = lab_email("Smile Dental", "tx-1 (wf_1)", "R.Q.", day);
        for part in [&e.subject, &e.text, &e.html] {
            assert!(!part.contains('$'), "no amounts: {part}");
            assert!(!part.to_lowercase().contains("carecredit"));
        }
        assert!(e.text.contains("Case reference: tx-1 (wf_1)"));
        assert!(e.text.contains("Patient: R.Q."));
        assert!(e.text.contains("Monday 15 March 2027"));
        assert_eq!(e.subject, "Upcoming case tx-1 (wf_1) on 2027-03-15");
    }
}
