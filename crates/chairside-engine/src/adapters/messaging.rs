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
use crate::ports::{Channel, Delivery, ExternalError, MessageContent, Messenger, PracticeProfile};
use crate::store::PatientStore;

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
        })
    }
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
        lender_name,
        approved_amount,
        promotional_terms: None,
        first_payment_amount,
        first_payment_due,
        patient_page_link: url(&s.page_link)?,
    })
}

#[async_trait]
impl Messenger for PatientMessenger {
    async fn send(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        _key: &str,
    ) -> Result<Delivery, ExternalError> {
        let senders = self
            .channels
            .get(&practice.id)
            .ok_or_else(|| invalid("no messaging configured for the practice"))?;
        let mut sent = Vec::new();
        // Email first: if it fails, nothing went out yet and the whole message is retried.
        if channels.contains(&Channel::Email)
            && let (Some(sender), Some(address)) = (&senders.email, patient.email.as_deref())
        {
            let to = EmailAddress::parse(address)
                .map_err(|_| invalid("the patient's email address is not valid"))?;
            let email = self.render_email(practice, patient, content)?;
            let id = sender.send(&to, &email).await.map_err(external)?;
            sent.push((Channel::Email, id.to_string()));
        }
        if channels.contains(&Channel::Sms)
            && let (Some((client, from)), Some(phone)) =
                (&senders.sms, patient.mobile_phone.as_deref())
        {
            let to = PhoneNumber::parse(phone)
                .map_err(|_| invalid("the patient's mobile number is not valid"))?;
            let body = self.render_sms(practice, patient, content)?;
            let sms = OutgoingSms {
                practice: practice.id.clone(),
                to: to.clone(),
                from: from.clone(),
                body,
                status_callback: None,
            };
            match client.send(&sms).await {
                Ok(SmsOutcome::Sent(s)) => sent.push((Channel::Sms, s.sid.to_string())),
                Ok(SmsOutcome::RecipientOptedOut) => {
                    // Twilio 21610: the carrier says the number opted out; remember it.
                    let change = ConsentChange::opt_out(Utc::now(), ConsentSource::CarrierOptOut);
                    if let Err(e) = self.ledger.record(&practice.id, &to, &change).await {
                        tracing::warn!(practice = %practice.id, error = %e, "could not record a carrier opt-out");
                    }
                }
                Ok(_) => {}
                // After an email went out, a failed text is not retried (the email would be sent
                // again): it is logged, and the email stands.
                Err(e) if !sent.is_empty() => {
                    tracing::warn!(practice = %practice.id, kind = %e.kind(), "text not sent; email delivered")
                }
                Err(e) => return Err(external(e)),
            }
        }
        if sent.is_empty() {
            return Err(invalid("no channel could deliver the message"));
        }
        Ok(Delivery { sent })
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
