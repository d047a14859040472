//! Patient messages: email over SMTP, SMS over Twilio, templates with lender-approved disclosure
//! text, and TCPA consent and STOP handling.
//!
//! # Quick start
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use financing_core::{Language, PracticeId};
//! use messaging::{
//!     AccountSid, ConsentLedger, DEFAULT_MAX_SEGMENTS, EmailAddress, EmailFrom, EmailSender,
//!     FinancingSummary, InMemoryConsentLedger, OutgoingSms, PhoneNumber, SmsClient, SmsFrom,
//!     SmsOutcome, SmtpConfig, SmtpSecurity, Templates,
//! };
//! use secrecy::SecretString;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let templates = Templates::load()?;
//! let summary = FinancingSummary::sample();
//!
//! // Email, through the practice's SMTP server.
//! let email = templates.render_email(Language::En, &summary)?;
//! let sender = EmailSender::new(
//!     &SmtpConfig::new("smtp.example.test", 587, SmtpSecurity::StartTls)
//!         .with_credentials("frontdesk", SecretString::from("app-password")),
//!     EmailFrom {
//!         name: "Bright Smiles Dental".into(),
//!         address: EmailAddress::parse("frontdesk@example.test")?,
//!     },
//! )?;
//! let message_id = sender.send(&EmailAddress::parse("alex@example.test")?, &email).await?;
//!
//! // SMS, after the caller's policy check of consent type and quiet hours.
//! let ledger: Arc<dyn ConsentLedger> = Arc::new(InMemoryConsentLedger::new());
//! let sms = SmsClient::builder(
//!     AccountSid::new("AC00000000000000000000000000000000"),
//!     SecretString::from("auth-token"),
//!     ledger,
//! )
//! .build()?;
//! let text = templates.render_sms(Language::En, &summary, DEFAULT_MAX_SEGMENTS)?;
//! let outcome = sms
//!     .send(&OutgoingSms {
//!         practice: PracticeId::new("bright-smiles"),
//!         to: PhoneNumber::parse("+15555550123")?,
//!         from: SmsFrom::Number(PhoneNumber::parse("+15555550100")?),
//!         body: text.text,
//!         status_callback: None,
//!     })
//!     .await?;
//! match outcome {
//!     SmsOutcome::Sent(sent) => tracing::info!(%message_id, sid = %sent.sid, "summary sent"),
//!     SmsOutcome::Suppressed { .. } | SmsOutcome::RecipientOptedOut => { /* email only */ }
//!     _ => {}
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What lives where
//!
//! - [`Templates`]: the embedded English and Spanish templates, validated at load, rendered into
//!   a [`RenderedEmail`] or a [`ComposedSms`] from a typed context ([`FinancingSummary`],
//!   [`ApplicationLink`], [`Reminder`], [`PaymentFailed`], [`InhouseOffer`], [`StaffAlert`],
//!   [`StaffDigest`], [`PayLinkReissued`], [`HelpReply`], [`IntakeLink`]).
//! - [`EmailSender`]: SMTP with STARTTLS or TLS, multipart text + HTML.
//! - [`SmsClient`]: Twilio `Messages.json`; refuses to text a number the [`ConsentLedger`] marks
//!   opted out; [`SmsClient::list_messages_to`] reconciles indeterminate sends.
//! - [`WebhookVerifier`]: `X-Twilio-Signature` checks, then [`StatusCallback`] and
//!   [`InboundMessage`]; [`apply_inbound`] turns STOP / START / HELP and free-text refusals into
//!   ledger changes.
//! - [`segment_info`] and [`compose_sms`]: GSM-7 / UCS-2 segment counting; links are never cut.
//! - [`check_reg_z`]: the Reg Z trigger-term guard.
//!
//! Logs carry message ids, never bodies, phone numbers or addresses. Every error's `Display`
//! names the operation and status only; [`Error::kind`] classifies it.

mod consent;
mod email;
mod error;
mod ids;
mod regz;
mod segments;
mod sms;
mod templates;
mod webhook;

pub use connector_transport::RetryPolicy;
pub use consent::{
    ConsentAction, ConsentChange, ConsentEntry, ConsentKind, ConsentLedger, ConsentSource,
    InMemoryConsentLedger, InboundIntent, LedgerError, OptOutState, PATIENT_PAGE_WORDING,
    PATIENT_PAGE_WORDING_ES, STAFF_IN_PERSON_WORDING, STAFF_INTAKE_FORM_WORDING, Standing,
    classify_inbound, patient_page_wording, practice_system_wording, sources, supersedes,
};
pub use email::{EmailFrom, EmailSender, SmtpConfig, SmtpSecurity};
pub use error::{Error, Operation, Result, SmtpFailure};
pub use ids::{
    AccountSid, AddressError, EmailAddress, EmailMessageId, MessageSid, MessagingServiceSid,
    PhoneNumber, TwilioErrorCode,
};
pub use regz::{RegZViolation, TriggerTerm, check_reg_z, find_trigger_terms};
pub use segments::{
    ComposeError, ComposedSms, GSM7_MULTI, GSM7_SINGLE, SegmentInfo, SmsEncoding, UCS2_MULTI,
    UCS2_SINGLE, compose_sms, segment_info,
};
pub use sms::{
    DEFAULT_BASE_URL, MessageRecord, MessageStatus, OutgoingSms, SentSms, SmsClient,
    SmsClientBuilder, SmsFrom, SmsOutcome, body_digest,
};
pub use templates::{
    ApplicationLink, ApprovedTerms, DEFAULT_MAX_SEGMENTS, EmailContext, FinancingSummary,
    HelpReply, InhouseOffer, InhousePlan, IntakeLink, LANGUAGES, MessageContext, PayLinkReissued,
    PaymentFailed, RegZClass, Reminder, RenderedEmail, RequiredConsent, SmsContext, StaffAlert,
    StaffDigest, StaffDigestTask, TemplateId, TemplatePart, Templates, TemplatesBuilder,
    embedded_source,
};
pub use webhook::{
    InboundMessage, InboundOutcome, OptOutType, SIGNATURE_HEADER, StatusCallback, VerifiedForm,
    WebhookVerifier, apply_inbound, compute_signature,
};
