//! Chairside sends a new patient their intake link (docs/intake.md, "The link goes to the
//! patient"): each send (the first, queued with the intake; each staff re-send) is a row the
//! runner claims under a lease, performs through the [`Messenger`](crate::ports::Messenger) with
//! the send's stable message key (`intake:{id}:link:{seq}`), and settles.
//!
//! Exactly once: the messenger journals each channel before it sends (`message_sends`), and the
//! channels that went out are journalled `sent` in the transaction that records the send's
//! outcome (the runner's messenger leaves that to its caller). A crash
//! between the send and the record of its outcome leaves the row pending; once its lease runs
//! out the next claim performs it again under the same key, and the journal answers "already
//! sent" (an email is never sent twice; a text is looked up at Twilio before any resend).
//!
//! Which channels (COMPLIANCE.md section 5, TCPA): the email always, when the patient gave a
//! usable address. A text only when the number's consent record holds the patient's prior express
//! **written** consent (the link invites them to apply for financing, so it counts as a
//! promotional text, `SmsPurpose::Promotional`), the number has not opted out, and it is inside
//! the texting window (09:00-20:00 local). Outside the window an email goes alone; a patient
//! reachable only by text waits for it. A new patient usually has no consent record yet, so the
//! email carries the link, and staff can still give the link in person (the dashboard shows it
//! once, and why a send did not go out).

use std::time::{Duration, Instant};

use chairside_workflow::delivery::{
    Delivery, DeliveryFacts, Undeliverable, is_usable_email, plan_delivery,
};
use chairside_workflow::intake as rules;
use chrono::{DateTime, Utc};
use financing_core::{Backoff, ErrorKind, Policy, SmsConsent, SmsPurpose};

use crate::ports::{Channel, MessageContent};
use crate::runner::{PracticeRuntime, Runner};
use crate::store::{IntakeLinkSend, LinkSendOutcome, SentChannel, StoreError};

/// How long a claimed send is this runner's: longer than one SMTP or Twilio call.
const LEASE: Duration = Duration::from_secs(120);
/// Sends claimed per round.
const BATCH: u32 = 16;
/// A send that fails transiently is tried again on this schedule, then given up (staff see why
/// on the intake's page and can send it again): 30 s doubling to 30 min, 10 attempts (about 3
/// hours).
const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(30),
    cap: Duration::from_secs(1800),
    max_attempts: 10,
};

impl Runner {
    /// Sends every due intake link (see the module docs). Returns how many sends were attempted.
    /// One send's failure never stops another's: each ends sent, retried later or given up.
    ///
    /// # Errors
    /// [`StoreError`] from claiming.
    pub async fn send_intake_links(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let claimed = self
            .store
            .claim_intake_link_sends(now, LEASE, BATCH)
            .await?;
        for send in &claimed {
            let outcome = self.perform_intake_link(send).await;
            match self
                .store
                .finish_intake_link_send(send, &outcome, self.clock.now())
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    intake = %send.intake_id,
                    seq = send.seq,
                    "intake link send taken over by another runner; its outcome was not recorded"
                ),
                Err(e) => tracing::error!(
                    intake = %send.intake_id,
                    seq = send.seq,
                    error = %e,
                    "could not record an intake link send; it is tried again under the same key"
                ),
            }
        }
        Ok(claimed.len())
    }

    /// Performs one claimed send and says what it came to, without recording it: the caller
    /// records it ([`IntakeStore::finish_intake_link_send`](crate::store::IntakeStore::finish_intake_link_send)).
    /// Public so a test can stop between the send and its record, as a crash would.
    pub async fn perform_intake_link(&self, send: &IntakeLinkSend) -> LinkSendOutcome {
        let now = self.clock.now();
        match self.try_intake_link(send, now).await {
            Ok(outcome) => outcome,
            Err(Failure::Permanent(error)) => LinkSendOutcome::Failed { error },
            Err(Failure::Transient(kind, error)) => {
                match BACKOFF.delay(send.attempt, kind, rand::random::<f64>()) {
                    Some(delay) => LinkSendOutcome::Retry {
                        at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                        error,
                    },
                    None => LinkSendOutcome::Failed {
                        error: format!("{error} (gave up after {} attempts)", send.attempt),
                    },
                }
            }
        }
    }

    async fn try_intake_link(
        &self,
        send: &IntakeLinkSend,
        now: DateTime<Utc>,
    ) -> Result<LinkSendOutcome, Failure> {
        let rt = self
            .practices
            .get(&send.practice_id)
            .ok_or_else(|| Failure::Permanent("the practice is not configured".into()))?;
        let intake = self
            .store
            .intake(&send.practice_id, &send.intake_id)
            .await
            .map_err(|e| Failure::store(&e))?
            .ok_or_else(|| Failure::Permanent("the intake no longer exists".into()))?;
        if intake.details_at.is_some() {
            // The patient is past the link (they reached the page another way): nothing to send.
            return Ok(LinkSendOutcome::Failed {
                error: "not needed: the patient already submitted their details".into(),
            });
        }
        let mut contact = self
            .store
            .patient(&send.practice_id, &rules::patient_id(&send.intake_id))
            .await
            .map_err(|e| Failure::store(&e))?
            .ok_or_else(|| Failure::Permanent("the intake has no contact on file".into()))?;
        // The consent record decides a text (COMPLIANCE.md section 5): a withdrawal always wins,
        // and a record the store cannot read never counts as consent.
        let (opted_out, consent) = match contact.mobile_phone.as_deref() {
            Some(phone) => match self
                .store
                .sms_consent(&send.practice_id, phone)
                .await
                .map_err(|e| Failure::store(&e))?
            {
                Some(record) => (record.opted_out, record.to_sms_consent()),
                None => (false, SmsConsent::None),
            },
            None => (true, SmsConsent::None),
        };
        contact.sms_consent = consent;
        let facts = DeliveryFacts {
            has_usable_email: is_usable_email(contact.email.as_deref()),
            has_phone: contact.mobile_phone.is_some(),
            sms_opted_out: opted_out,
            // The link invites the patient to apply for financing: a text needs prior express
            // written consent (COMPLIANCE.md section 5; the template declares the same).
            sms_verdict: policy(rt, &contact).sms_verdict(&contact, SmsPurpose::Promotional, now),
        };
        let channels = match plan_delivery(&facts) {
            Delivery::Send { channels } => channels,
            Delivery::WaitUntil(at) => {
                return Ok(LinkSendOutcome::Retry {
                    at,
                    error: "waiting for the texting window (09:00-20:00)".into(),
                });
            }
            Delivery::Undeliverable(why) => {
                return Ok(LinkSendOutcome::Failed {
                    error: undeliverable(why),
                });
            }
        };
        let content = MessageContent::IntakeLink {
            link: rt.patient_links.intake_link(&send.intake_id).to_string(),
        };
        let started = Instant::now();
        let sent = rt
            .messenger
            .send(
                &rt.profile,
                &contact,
                &content,
                &channels,
                &send.message_key(),
            )
            .await;
        self.count_call(started);
        match sent {
            Ok(delivery) => {
                let sent: Vec<SentChannel> = delivery
                    .sent
                    .into_iter()
                    .map(|(c, provider_id)| SentChannel {
                        key: send.message_key(),
                        channel: match c {
                            Channel::Email => "email",
                            Channel::Sms => "sms",
                        },
                        provider_id,
                    })
                    .collect();
                let names: Vec<&str> = sent.iter().map(|s| s.channel).collect();
                Ok(LinkSendOutcome::Sent {
                    channels: names.join(","),
                    sent,
                })
            }
            Err(e) if e.kind() == ErrorKind::Permanent => Err(Failure::Permanent(e.to_string())),
            // Transient, or indeterminate: the journal makes a retry under the same key safe.
            Err(e) => Err(Failure::Transient(transient(e.kind()), e.to_string())),
        }
    }
}

/// Why an attempt did not go out.
enum Failure {
    /// Retrying cannot help.
    Permanent(String),
    /// Try again later.
    Transient(ErrorKind, String),
}

impl Failure {
    fn store(e: &StoreError) -> Self {
        Self::Transient(ErrorKind::TRANSIENT, format!("store: {e}"))
    }
}

/// A kind the backoff retries: a transient kind keeps its `Retry-After`.
fn transient(kind: ErrorKind) -> ErrorKind {
    if kind.is_transient() {
        kind
    } else {
        ErrorKind::TRANSIENT
    }
}

fn policy(rt: &PracticeRuntime, contact: &financing_core::PatientContact) -> Policy {
    Policy::new(
        rt.profile.state,
        contact.state(),
        rt.profile
            .time_zone
            .parse()
            .unwrap_or(chrono_tz::America::New_York),
        rt.policy,
    )
}

fn undeliverable(why: Undeliverable) -> String {
    format!("not sent: {why}; give the patient the link another way")
}
