//! Patient messaging as the [`Messenger`] port, through the `messaging` crate; and the SMS consent
//! ledger that `messaging` consults, kept in the store.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use financing_core::{ErrorKind, PatientContact, PracticeId};
use messaging::{
    ConsentAction, ConsentChange, ConsentLedger, ConsentSource, EmailAddress, EmailSender,
    LedgerError, OptOutState, OutgoingSms, PhoneNumber, SmsClient, SmsFrom, SmsOutcome, Templates,
};
use url::Url;

use super::{external, invalid};
use crate::ports::{
    Channel, Delivery, ExternalError, MessageContent, Messenger, PracticeProfile, PreparedSend,
};
use crate::store::{DeliveryStore, PatientStore, SendRecord};

/// The SMS opt-out ledger on the store: STOP anywhere blocks every later send.
#[derive(Debug, Clone)]
pub struct StoreConsentLedger {
    store: Arc<dyn PatientStore>,
}

impl StoreConsentLedger {
    /// A ledger over `store` (an `Arc<dyn Store>` converts).
    pub fn new(store: Arc<dyn PatientStore>) -> Self {
        Self { store }
    }
}

fn source_label(source: ConsentSource) -> &'static str {
    match source {
        ConsentSource::InboundKeyword => "inbound_keyword",
        ConsentSource::InboundFreeText => "inbound_free_text",
        ConsentSource::CarrierOptOut => "carrier_opt_out",
        _ => "staff",
    }
}

fn source_from(label: &str) -> ConsentSource {
    match label {
        "inbound_keyword" => ConsentSource::InboundKeyword,
        "inbound_free_text" => ConsentSource::InboundFreeText,
        "carrier_opt_out" => ConsentSource::CarrierOptOut,
        _ => ConsentSource::Staff,
    }
}

#[async_trait]
impl ConsentLedger for StoreConsentLedger {
    async fn opt_out_state(
        &self,
        practice: &PracticeId,
        phone: &PhoneNumber,
    ) -> Result<OptOutState, LedgerError> {
        let record = self
            .store
            .sms_consent(practice, phone.as_e164())
            .await
            .map_err(|e| LedgerError::new(ErrorKind::TRANSIENT, e.to_string()))?;
        Ok(match record {
            Some(r) if r.opted_out => OptOutState::OptedOut {
                at: r.at,
                source: source_from(&r.source),
            },
            _ => OptOutState::NotOptedOut,
        })
    }

    async fn record(
        &self,
        practice: &PracticeId,
        phone: &PhoneNumber,
        change: &ConsentChange,
    ) -> Result<OptOutState, LedgerError> {
        let opted_out = matches!(change.action, ConsentAction::OptOut);
        self.store
            .set_sms_opt_out(
                practice,
                phone.as_e164(),
                opted_out,
                source_label(change.source),
                change.at,
            )
            .await
            .map_err(|e| LedgerError::new(ErrorKind::TRANSIENT, e.to_string()))?;
        self.opt_out_state(practice, phone).await
    }
}

/// One practice's senders.
#[derive(Debug, Clone)]
pub struct PracticeChannels {
    /// Email through the practice's SMTP server.
    pub email: Option<Arc<EmailSender>>,
    /// SMS through Twilio.
    pub sms: Option<(SmsClient, SmsFrom)>,
}

/// Email and SMS through the `messaging` crate, rendered with its approved templates.
#[derive(Clone)]
pub struct PatientMessenger {
    templates: Arc<Templates>,
    channels: Arc<std::collections::HashMap<PracticeId, PracticeChannels>>,
    ledger: Arc<dyn ConsentLedger>,
    journal: Option<Arc<dyn DeliveryStore>>,
    /// A channel that went out stays `attempting` in the journal: the caller records it `sent`
    /// in the step's own commit ([`with_sent_recorded_by_step`](Self::with_sent_recorded_by_step)).
    sent_by_step: bool,
}

impl std::fmt::Debug for PatientMessenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatientMessenger")
            .field("practices", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl PatientMessenger {
    /// A messenger with each practice's channels.
    ///
    /// # Errors
    /// A template that does not load is a permanent error.
    pub fn new(
        channels: std::collections::HashMap<PracticeId, PracticeChannels>,
        ledger: Arc<dyn ConsentLedger>,
    ) -> Result<Self, ExternalError> {
        let templates = Templates::load().map_err(external)?;
        Ok(Self {
            templates: Arc::new(templates),
            channels: Arc::new(channels),
            ledger,
            journal: None,
            sent_by_step: false,
        })
    }

    /// Journals every channel's send in `journal` before it goes out, so that each message goes
    /// out at most once per channel whatever fails: a text whose answer was lost is looked up at
    /// Twilio before any resend, and an email whose outcome is unknown is not resent (SMTP cannot
    /// be asked; see `docs/messaging.md`). Without a journal, a message is sent at least once.
    #[must_use]
    pub fn with_journal(mut self, journal: Arc<dyn DeliveryStore>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Leaves the journal's `sent` record of a channel that went out to the caller, which writes
    /// it in the transaction that commits the step ([`StepFacts::sent`](crate::store::StepFacts),
    /// what the runner does): one transaction less per channel sent. Until that commit the
    /// channel reads `attempting`, which is safe on its own: an email in that state is never sent
    /// again and a text is looked up at Twilio before any resend.
    #[must_use]
    pub fn with_sent_recorded_by_step(mut self) -> Self {
        self.sent_by_step = true;
        self
    }
}

const EMAIL: &str = "email";
const SMS: &str = "sms";

fn journal_error(e: &crate::store::StoreError) -> ExternalError {
    ExternalError::new(ErrorKind::TRANSIENT, format!("message journal: {e}"))
}

fn url(link: &str) -> Result<Url, ExternalError> {
    Url::parse(link).map_err(|_| invalid("a message link is not a URL"))
}

impl PatientMessenger {
    fn render_email(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
    ) -> Result<messaging::RenderedEmail, ExternalError> {
        let lang = patient.preferred_language;
        let t = &self.templates;
        let practice_name = practice.name.clone();
        let patient_first_name = patient.first_name.clone();
        let r = match content {
            MessageContent::ApplicationLink { lender_name, link } => t.render_email(
                lang,
                &messaging::ApplicationLink {
                    practice_name,
                    patient_first_name,
                    lender_name: lender_name.clone(),
                    application_link: url(link)?,
                },
            ),
            MessageContent::Reminder { lender_name, link } => t.render_email(
                lang,
                &messaging::Reminder {
                    practice_name,
                    patient_first_name,
                    lender_name: lender_name.clone(),
                    application_link: url(link)?,
                },
            ),
            MessageContent::PaymentFailed { page_link, amount } => t.render_email(
                lang,
                &messaging::PaymentFailed {
                    practice_name,
                    patient_first_name,
                    amount_due: *amount,
                    update_payment_link: url(page_link)?,
                },
            ),
            MessageContent::PayLinkReissued { page_link, deposit } => t.render_email(
                lang,
                &messaging::PayLinkReissued {
                    practice_name,
                    patient_first_name,
                    deposit: *deposit,
                    pay_link: url(page_link)?,
                },
            ),
            MessageContent::InHouseOffer(s) => match in_house_plan(practice, s) {
                Some(plan) => t.render_email(
                    lang,
                    &messaging::InhouseOffer {
                        practice_name,
                        patient_first_name,
                        plan,
                        offer_link: url(&s.page_link)?,
                    },
                ),
                None => return Err(invalid("the in-house offer has no plan")),
            },
            MessageContent::FinancingSummary(s) => {
                t.render_email(lang, &summary_context(practice, patient, s)?)
            }
            MessageContent::IntakeLink { link } => t.render_email(
                lang,
                &messaging::IntakeLink {
                    practice_name,
                    patient_first_name,
                    intake_link: url(link)?,
                },
            ),
        };
        r.map_err(external)
    }

    fn render_sms(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
    ) -> Result<String, ExternalError> {
        let lang = patient.preferred_language;
        let t = &self.templates;
        let max = messaging::DEFAULT_MAX_SEGMENTS;
        let practice_name = practice.name.clone();
        let patient_first_name = patient.first_name.clone();
        let r = match content {
            MessageContent::ApplicationLink { lender_name, link } => t.render_sms(
                lang,
                &messaging::ApplicationLink {
                    practice_name,
                    patient_first_name,
                    lender_name: lender_name.clone(),
                    application_link: url(link)?,
                },
                max,
            ),
            MessageContent::Reminder { lender_name, link } => t.render_sms(
                lang,
                &messaging::Reminder {
                    practice_name,
                    patient_first_name,
                    lender_name: lender_name.clone(),
                    application_link: url(link)?,
                },
                max,
            ),
            MessageContent::PaymentFailed { page_link, amount } => t.render_sms(
                lang,
                &messaging::PaymentFailed {
                    practice_name,
                    patient_first_name,
                    amount_due: *amount,
                    update_payment_link: url(page_link)?,
                },
                max,
            ),
            MessageContent::PayLinkReissued { page_link, deposit } => t.render_sms(
                lang,
                &messaging::PayLinkReissued {
                    practice_name,
                    patient_first_name,
                    deposit: *deposit,
                    pay_link: url(page_link)?,
                },
                max,
            ),
            MessageContent::InHouseOffer(s) => match in_house_plan(practice, s) {
                Some(plan) => t.render_sms(
                    lang,
                    &messaging::InhouseOffer {
                        practice_name,
                        patient_first_name,
                        plan,
                        offer_link: url(&s.page_link)?,
                    },
                    max,
                ),
                None => return Err(invalid("the in-house offer has no plan")),
            },
            MessageContent::FinancingSummary(s) => {
                t.render_sms(lang, &summary_context(practice, patient, s)?, max)
            }
            MessageContent::IntakeLink { link } => t.render_sms(
                lang,
                &messaging::IntakeLink {
                    practice_name,
                    patient_first_name,
                    intake_link: url(link)?,
                },
                max,
            ),
        };
        r.map(|c| c.text).map_err(external)
    }
}

/// The numbers of the practice's own plan, when the summary is an in-house offer (no lender):
/// the templates word them in the patient's language.
fn in_house_plan(
    practice: &PracticeProfile,
    s: &crate::ports::SummaryContent,
) -> Option<messaging::InhousePlan> {
    match (s.installments, s.first_installment, s.installment_interval) {
        (Some(installments), Some((first_amount, _)), Some(interval)) => {
            Some(messaging::InhousePlan {
                installments,
                first_amount,
                interval,
                practice_phone: practice.phone.clone(),
                approval_reference: format!("{}-in-house", practice.id),
            })
        }
        _ => None,
    }
}

fn summary_context(
    practice: &PracticeProfile,
    patient: &PatientContact,
    s: &crate::ports::SummaryContent,
) -> Result<messaging::FinancingSummary, ExternalError> {
    // Without a lender the practice itself collects the portion (deposit only, or nothing).
    let (lender_name, approved_amount) = s
        .financed
        .clone()
        .unwrap_or_else(|| (practice.name.clone(), s.patient_portion));
    let (first_payment_amount, first_payment_due) = match s.first_installment {
        Some((amount, due)) if s.deposit.is_zero() => (amount, due),
        // The deposit is due today: the practice's today, not UTC's.
        _ => (
            s.deposit,
            crate::note::local_date(
                Utc::now(),
                practice
                    .time_zone
                    .parse()
                    .unwrap_or(chrono_tz::America::New_York),
            ),
        ),
    };
    Ok(messaging::FinancingSummary {
        practice_name: practice.name.clone(),
        patient_first_name: patient.first_name.clone(),
        // The lender's terms as it reported them, in the patient's language (email only: the
        // text links to the page, which shows them).
        promotional_terms: s.financed.as_ref().and_then(|_| {
            let t = s.lender_terms.as_ref()?;
            messaging::ApprovedTerms::reported_by_lender(
                patient.preferred_language,
                &lender_name,
                t.promotion.as_deref(),
                t.term_months,
                t.apr_bps,
                t.reference.as_deref(),
            )
        }),
        lender_name,
        approved_amount,
        first_payment_amount,
        first_payment_due,
        patient_page_link: url(&s.page_link)?,
    })
}

impl PatientMessenger {
    /// Journals the email and the text of message `key` in one transaction when neither channel
    /// has a record yet (the first attempt). Returns the text's rendered body when it did; `None`
    /// (nothing written) when a channel has a record, there is no journal or the text does not
    /// render: each channel then journals on its own as before.
    async fn begin_both(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        key: &str,
    ) -> Result<Option<String>, ExternalError> {
        let Some(journal) = &self.journal else {
            return Ok(None);
        };
        let Ok(body) = self.render_sms(practice, patient, content) else {
            return Ok(None);
        };
        for channel in [EMAIL, SMS] {
            if journal
                .send_record(key, channel)
                .await
                .map_err(|e| journal_error(&e))?
                .is_some()
            {
                return Ok(None);
            }
        }
        let digest = messaging::body_digest(&body);
        journal
            .begin_sends(key, &[(EMAIL, None), (SMS, Some(&digest))], Utc::now())
            .await
            .map_err(|e| journal_error(&e))?;
        Ok(Some(body))
    }

    /// Sends the email of message `key` at most once.
    async fn send_email(
        &self,
        sender: &EmailSender,
        to: &EmailAddress,
        email: &messaging::RenderedEmail,
        key: &str,
        begun: bool,
    ) -> Result<Option<String>, ExternalError> {
        let Some(journal) = &self.journal else {
            let id = sender.send_keyed(to, email, key).await.map_err(external)?;
            return Ok(Some(id.to_string()));
        };
        let record = if begun {
            None
        } else {
            journal
                .send_record(key, EMAIL)
                .await
                .map_err(|e| journal_error(&e))?
        };
        match record {
            Some(SendRecord::Sent { provider_id }) => return Ok(provider_id),
            Some(SendRecord::Attempting { .. }) => {
                // An earlier attempt's outcome is unknown and SMTP cannot be asked: at most once,
                // so it is taken as sent, not sent again.
                tracing::warn!(
                    key,
                    "email outcome unknown after an earlier attempt; taken as sent, not resent"
                );
                let id = sender.message_id_for(key).to_string();
                journal
                    .finish_send(key, EMAIL, true, Some(&id), Utc::now())
                    .await
                    .map_err(|e| journal_error(&e))?;
                return Ok(Some(id));
            }
            None => {}
        }
        if !begun {
            journal
                .begin_send(key, EMAIL, None, Utc::now())
                .await
                .map_err(|e| journal_error(&e))?;
        }
        match sender.send_keyed(to, email, key).await {
            Ok(id) if self.sent_by_step => Ok(Some(id.to_string())),
            Ok(id) => {
                let id = id.to_string();
                journal
                    .finish_send(key, EMAIL, true, Some(&id), Utc::now())
                    .await
                    .map_err(|e| journal_error(&e))?;
                Ok(Some(id))
            }
            Err(e) => {
                if e.kind() != ErrorKind::Indeterminate {
                    // Refused or never connected: nothing was delivered, a retry may send.
                    journal
                        .finish_send(key, EMAIL, false, None, Utc::now())
                        .await
                        .map_err(|e| journal_error(&e))?;
                }
                Err(external(e))
            }
        }
    }

    /// Sends the text of message `key`, after looking up an earlier attempt whose answer was
    /// lost. `Ok(None)` when nothing went out and nothing should (opted out).
    async fn send_sms(
        &self,
        client: &SmsClient,
        sms: &OutgoingSms,
        key: &str,
        begun: bool,
    ) -> Result<Option<String>, ExternalError> {
        // A journal the store cannot answer is transient, as for the email: the step is retried
        // from its journal later. (Reported as a configuration error it was permanent, and one
        // store hiccup ended the workflow in an `unreachable` staff task.)
        let journal_err = |e: crate::store::StoreError| journal_error(&e);
        if let Some(journal) = self.journal.as_ref().filter(|_| !begun) {
            match journal.send_record(key, SMS).await.map_err(journal_err)? {
                Some(SendRecord::Sent { provider_id }) => return Ok(provider_id),
                Some(SendRecord::Attempting { at, body_digest }) => {
                    // Twilio has no idempotency key: find the earlier attempt before sending.
                    let since = at - chrono::Duration::minutes(2);
                    let found = client
                        .list_messages_to(&sms.to, since)
                        .await
                        .map_err(external)?;
                    let earlier = body_digest.as_deref().and_then(|d| {
                        found
                            .iter()
                            .find(|m| m.body_digest_matches(d) && !m.status.is_failure())
                    });
                    if let Some(m) = earlier {
                        let sid = m.sid.to_string();
                        tracing::info!(key, message_sid = %sid, "earlier text found at Twilio; not resent");
                        journal
                            .finish_send(key, SMS, true, Some(&sid), Utc::now())
                            .await
                            .map_err(journal_err)?;
                        return Ok(Some(sid));
                    }
                }
                None => {}
            }
            journal
                .begin_send(
                    key,
                    SMS,
                    Some(&messaging::body_digest(&sms.body)),
                    Utc::now(),
                )
                .await
                .map_err(journal_err)?;
        }
        let outcome = client.send(sms).await;
        if let Some(journal) = &self.journal {
            let finished = match &outcome {
                // Recorded `sent` by the step's commit.
                Ok(SmsOutcome::Sent(_)) if self.sent_by_step => Ok(()),
                Ok(SmsOutcome::Sent(s)) => {
                    journal
                        .finish_send(key, SMS, true, Some(s.sid.as_str()), Utc::now())
                        .await
                }
                // Indeterminate: left as attempting, so the next attempt looks it up.
                Err(e) if e.kind() == ErrorKind::Indeterminate => Ok(()),
                _ => journal.finish_send(key, SMS, false, None, Utc::now()).await,
            };
            finished.map_err(journal_err)?;
        }
        match outcome.map_err(external)? {
            SmsOutcome::Sent(s) => Ok(Some(s.sid.to_string())),
            SmsOutcome::RecipientOptedOut => {
                // Twilio 21610: the carrier says the number opted out; remember it.
                let change = ConsentChange::opt_out(Utc::now(), ConsentSource::CarrierOptOut);
                if let Err(e) = self.ledger.record(&sms.practice, &sms.to, &change).await {
                    tracing::warn!(practice = %sms.practice, error = %e, "could not record a carrier opt-out");
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// What [`PatientMessenger::prepare`](Messenger::prepare) rendered: the message's email (its
/// address checked) and text, for each channel it journals.
struct Rendered {
    email: Option<(EmailAddress, messaging::RenderedEmail)>,
    sms: Option<String>,
}

impl PatientMessenger {
    /// `send`, with the journal's records of every channel attempted already written when
    /// `ready` is given (by `prepare`'s caller, or by `begin_both` here).
    async fn send_with(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        key: &str,
        ready: Option<Rendered>,
    ) -> Result<Delivery, ExternalError> {
        let senders = self
            .channels
            .get(&practice.id)
            .ok_or_else(|| invalid("no messaging configured for the practice"))?;
        let mut sent = Vec::new();
        // Both channels of a message nobody tried yet: journaled in one transaction, before the
        // email goes out (the text's body rendered now, for its digest).
        let texted = channels.contains(&Channel::Sms)
            && senders.sms.is_some()
            && patient.mobile_phone.is_some();
        let emailed = channels.contains(&Channel::Email)
            && senders.email.is_some()
            && patient.email.is_some();
        let (begun, mut ready_email, pre_begun) = match ready {
            Some(r) => (true, r.email, r.sms),
            None if texted && emailed => {
                let body = self.begin_both(practice, patient, content, key).await?;
                (body.is_some(), None, body)
            }
            None => (false, None, None),
        };
        // Email first. With the journal, a retry of the whole message skips what already went
        // out, on either channel.
        if channels.contains(&Channel::Email)
            && let (Some(sender), Some(address)) = (&senders.email, patient.email.as_deref())
        {
            let (to, email) = match ready_email.take() {
                Some(rendered) => rendered,
                None => (
                    EmailAddress::parse(address)
                        .map_err(|_| invalid("the patient's email address is not valid"))?,
                    self.render_email(practice, patient, content)?,
                ),
            };
            match self.send_email(sender, &to, &email, key, begun).await {
                Ok(Some(id)) => sent.push((Channel::Email, id)),
                Ok(None) => {}
                Err(e) => {
                    if begun
                        && e.kind() != ErrorKind::Indeterminate
                        && let Some(journal) = &self.journal
                    {
                        // The text was journaled with the email and never tried: a retry sends
                        // it without a lookup.
                        if let Err(e) = journal.finish_send(key, SMS, false, None, Utc::now()).await
                        {
                            tracing::warn!(error = %e, "could not clear a text never tried");
                        }
                    }
                    return Err(e);
                }
            }
        }
        if channels.contains(&Channel::Sms)
            && let (Some((client, from)), Some(phone)) =
                (&senders.sms, patient.mobile_phone.as_deref())
        {
            let to = PhoneNumber::parse(phone)
                .map_err(|_| invalid("the patient's mobile number is not valid"))?;
            let body = match pre_begun {
                Some(body) => body,
                None => self.render_sms(practice, patient, content)?,
            };
            let sms = OutgoingSms {
                practice: practice.id.clone(),
                to: to.clone(),
                from: from.clone(),
                body,
                status_callback: None,
            };
            match self.send_sms(client, &sms, key, begun).await {
                Ok(Some(sid)) => sent.push((Channel::Sms, sid)),
                Ok(None) => {}
                // With the journal a retry is safe (the email is not sent again); a refusal
                // after the email went out is logged, and the email stands.
                Err(e)
                    if !sent.is_empty()
                        && (self.journal.is_none() || e.kind() == ErrorKind::Permanent) =>
                {
                    tracing::warn!(practice = %practice.id, kind = %e.kind(), "text not sent; email delivered")
                }
                Err(e) => return Err(e),
            }
        }
        if sent.is_empty() {
            return Err(invalid("no channel could deliver the message"));
        }
        Ok(Delivery { sent })
    }
}

#[async_trait]
impl Messenger for PatientMessenger {
    async fn went_out(&self, key: &str) -> Result<bool, ExternalError> {
        let Some(journal) = &self.journal else {
            return Ok(false);
        };
        // Any record of the email: sent, or attempted with its outcome unknown (never resent).
        // A refused email leaves no record.
        Ok(journal
            .send_record(key, EMAIL)
            .await
            .map_err(|e| journal_error(&e))?
            .is_some())
    }

    async fn send(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        key: &str,
    ) -> Result<Delivery, ExternalError> {
        self.send_with(practice, patient, content, channels, key, None)
            .await
    }

    async fn prepare(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        key: &str,
    ) -> Result<Option<PreparedSend>, ExternalError> {
        let (Some(journal), Some(senders)) = (&self.journal, self.channels.get(&practice.id))
        else {
            return Ok(None);
        };
        // Everything that could fail before a send is done now: what is journaled here is then
        // sent, or its failure recorded as `send` records it.
        let email = match (&senders.email, patient.email.as_deref()) {
            (Some(_), Some(address)) if channels.contains(&Channel::Email) => {
                let (Ok(to), Ok(email)) = (
                    EmailAddress::parse(address),
                    self.render_email(practice, patient, content),
                ) else {
                    return Ok(None);
                };
                Some((to, email))
            }
            _ => None,
        };
        let sms = match (&senders.sms, patient.mobile_phone.as_deref()) {
            (Some(_), Some(phone)) if channels.contains(&Channel::Sms) => {
                let (Ok(_), Ok(body)) = (
                    PhoneNumber::parse(phone),
                    self.render_sms(practice, patient, content),
                ) else {
                    return Ok(None);
                };
                Some(body)
            }
            _ => None,
        };
        let mut records = Vec::with_capacity(2);
        if email.is_some() {
            records.push((EMAIL, None));
        }
        if let Some(body) = &sms {
            records.push((SMS, Some(messaging::body_digest(body))));
        }
        if records.is_empty() {
            return Ok(None);
        }
        // A channel with a record was tried before: `send` reconciles it first.
        for (channel, _) in &records {
            if journal
                .send_record(key, channel)
                .await
                .map_err(|e| journal_error(&e))?
                .is_some()
            {
                return Ok(None);
            }
        }
        Ok(Some(PreparedSend {
            journal: records,
            rendered: Box::new(Rendered { email, sms }),
        }))
    }

    async fn send_prepared(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        key: &str,
        prepared: PreparedSend,
    ) -> Result<Delivery, ExternalError> {
        // Not this messenger's own: sent as any message, journaling as it goes.
        let ready = prepared.rendered.downcast::<Rendered>().ok().map(|r| *r);
        self.send_with(practice, patient, content, channels, key, ready)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::NaiveDate;
    use financing_core::{
        InstallmentInterval, Language, LocationId, Money, PatientId, SmsConsent, UsState,
    };

    use super::*;
    use crate::ports::SummaryContent;

    /// A ledger nobody asks: rendering never consults consent.
    struct NoLedger;

    #[async_trait]
    impl ConsentLedger for NoLedger {
        async fn opt_out_state(
            &self,
            _practice: &PracticeId,
            _phone: &PhoneNumber,
        ) -> Result<OptOutState, LedgerError> {
            Ok(OptOutState::NotOptedOut)
        }

        async fn record(
            &self,
            _practice: &PracticeId,
            _phone: &PhoneNumber,
            _change: &ConsentChange,
        ) -> Result<OptOutState, LedgerError> {
            Ok(OptOutState::NotOptedOut)
        }
    }

    fn messenger() -> PatientMessenger {
        PatientMessenger::new(HashMap::new(), Arc::new(NoLedger)).expect("templates load")
    }

    fn practice() -> PracticeProfile {
        PracticeProfile {
            id: PracticeId::new("smile-dental-test"),
            name: "Smile Dental".into(),
            state: UsState::TX,
            time_zone: "America/Chicago".into(),
            location_id: LocationId::new("loc-1"),
            phone: "(555) 010-0100".into(),
            email: "frontdesk@example.test".into(),
        }
    }

    fn patient(lang: Language) -> PatientContact {
        PatientContact {
            id: PatientId::new("pat-1"),
            first_name: "Testa".into(),
            last_name: "Patient".into(),
            date_of_birth: None,
            mobile_phone: None,
            email: Some("testa@example.test".into()),
            address: None,
            preferred_language: lang,
            time_zone: None,
            sms_consent: SmsConsent::None,
        }
    }

    /// Every lender declined: $1,200.02 on the practice's plan, 6 monthly installments, offered.
    fn in_house_summary() -> MessageContent {
        MessageContent::InHouseOffer(Box::new(SummaryContent {
            total: Money::usd(150_002),
            insurance: Money::usd(30_000),
            patient_portion: Money::usd(120_002),
            financed: None,
            deposit: Money::usd(0),
            deposit_link: None,
            first_installment: Some((
                Money::usd(20_002),
                NaiveDate::from_ymd_opt(2026, 6, 2).expect("date"),
            )),
            installments: Some(6),
            installment_interval: Some(InstallmentInterval::MONTHLY),
            page_link: "https://pay.example.test/p/TOKEN".into(),
            lender_terms: None,
        }))
    }

    #[test]
    fn a_spanish_speaking_patients_in_house_summary_states_the_plan_in_spanish_with_its_numbers() {
        let email = messenger()
            .render_email(&practice(), &patient(Language::Es), &in_house_summary())
            .expect("render");
        for body in [&email.text, &email.html] {
            assert!(
                body.contains("6 pagos, el primero de $200.02, cobrados por Smile Dental."),
                "{body}"
            );
            assert!(
                body.contains("Plan de pagos de Smile Dental. Preguntas: (555) 010-0100."),
                "{body}"
            );
            for english in [
                "payments",
                "the first of",
                "billed by",
                "payment plan",
                "Questions",
            ] {
                assert!(!body.contains(english), "English `{english}` in: {body}");
            }
        }
    }

    #[test]
    fn an_english_speaking_patients_in_house_summary_keeps_todays_wording() {
        let email = messenger()
            .render_email(&practice(), &patient(Language::En), &in_house_summary())
            .expect("render");
        for body in [&email.text, &email.html] {
            assert!(
                body.contains("6 payments, the first of $200.02, billed by Smile Dental."),
                "{body}"
            );
            assert!(
                body.contains("Smile Dental payment plan. Questions: (555) 010-0100."),
                "{body}"
            );
        }
    }

    /// Sunbit financed $1,200.02 on a 12-month plan at 9.99 % APR, as it reported them.
    fn financed_summary() -> MessageContent {
        MessageContent::FinancingSummary(Box::new(SummaryContent {
            total: Money::usd(150_002),
            insurance: Money::usd(30_000),
            patient_portion: Money::usd(120_002),
            financed: Some(("Sunbit".into(), Money::usd(120_002))),
            deposit: Money::usd(0),
            deposit_link: None,
            first_installment: None,
            installments: None,
            installment_interval: None,
            page_link: "https://pay.example.test/p/TOKEN".into(),
            lender_terms: Some(crate::ports::LenderTerms {
                promotion: None,
                term_months: Some(12),
                apr_bps: Some(999),
                reference: Some("p-1".into()),
            }),
        }))
    }

    #[test]
    fn the_summary_email_states_the_lenders_reported_terms_in_the_patients_language_and_the_text_does_not()
     {
        let m = messenger();
        for (lang, wanted) in [
            (
                Language::En,
                "Your terms, as Sunbit reported them: a 12-month term; 9.99% APR.",
            ),
            (
                Language::Es,
                "Sus condiciones, según las informó Sunbit: plazo de 12 meses; tasa de porcentaje anual (APR) del 9.99 %.",
            ),
        ] {
            let email = m
                .render_email(&practice(), &patient(lang), &financed_summary())
                .expect("render email");
            for body in [&email.text, &email.html] {
                assert!(body.contains(wanted), "{lang:?}: {body}");
                assert!(body.contains("Sunbit"), "{lang:?}: {body}");
            }
            let sms = m
                .render_sms(&practice(), &patient(lang), &financed_summary())
                .expect("render sms");
            assert!(
                !sms.contains("APR") && !sms.contains('%'),
                "{lang:?}: {sms}"
            );
        }
    }

    #[test]
    fn a_payment_failure_without_an_amount_names_no_dollar_figure() {
        let content = MessageContent::PaymentFailed {
            page_link: "https://pay.example.test/p/TOKEN".into(),
            amount: None,
        };
        let m = messenger();
        for lang in [Language::En, Language::Es] {
            let email = m
                .render_email(&practice(), &patient(lang), &content)
                .expect("render email");
            let sms = m
                .render_sms(&practice(), &patient(lang), &content)
                .expect("render sms");
            for body in [&email.text, &email.html, &sms] {
                assert!(!body.contains('$'), "{lang:?}: {body}");
            }
        }
    }
}
