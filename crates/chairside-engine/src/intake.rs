//! New-patient intake (docs/intake.md): staff start one from the dashboard (or the patient opens
//! the practice's public intake page), the patient types their own details on Chairside's intake
//! page, and once the details and the proposed amount are both in, the intake starts the same
//! financing workflow a detected plan does ([`chairside_workflow::intake`] decides what differs).
//!
//! Only what the lender application and the practice-system record need is asked: name, date of
//! birth, mobile phone and/or email, state of residence, and the patient's own SMS consent with
//! the exact wording shown in the language of the page ([`messaging::patient_page_wording`],
//! source [`messaging::sources::INTAKE_PAGE`]). The language the patient used
//! ([`PatientDetails::language`]) is the patient's language from then on.

use std::sync::Arc;

use base64::Engine as _;
use chairside_workflow::WorkflowState;
use chairside_workflow::intake::{self as rules, IntakeProblem};
use chrono::{DateTime, NaiveDate, Utc};
use financing_core::{
    Language, Money, PatientContact, PostalAddress, PracticeId, SmsConsent, UsState,
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::store::{
    IntakeOrigin, IntakeRow, LinkResend, NewIntake, NewWorkflow, Store, StoreError,
};

/// The largest amount an intake may propose, by default ($100,000).
pub const DEFAULT_MAX_AMOUNT: Money = Money::usd(10_000_000);

/// Why an intake action was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// What was typed is incomplete or wrong (shown to whoever typed it).
    #[error("{0}")]
    Invalid(#[from] IntakeProblem),
    /// No such intake (or link).
    #[error("no such intake")]
    NotFound,
    /// The details were already submitted, or the workflow already started.
    #[error("this intake is already complete")]
    AlreadyDone,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a person typed of the patient: names, date of birth, contact, state. PHI: `Debug` shows
/// nothing of it.
#[derive(Clone, Default)]
pub struct PatientDetails {
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth (the patient's own entry; staff do not enter it).
    pub date_of_birth: Option<NaiveDate>,
    /// Mobile phone as typed.
    pub mobile_phone: String,
    /// Email as typed.
    pub email: String,
    /// State of residence.
    pub state: Option<UsState>,
    /// Preferred language: what staff chose on the start form, or the language of the page the
    /// patient typed their details on (which wins).
    pub language: Language,
}

impl std::fmt::Debug for PatientDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatientDetails").finish_non_exhaustive()
    }
}

impl PatientDetails {
    /// The details as the intake's [`PatientContact`] (`intake-{id}`): blank fields are absent;
    /// a phone that is not a US mobile number is kept as typed so [`rules::check_details`] names it.
    pub fn to_contact(&self, intake: &str) -> PatientContact {
        let blank = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        PatientContact {
            id: rules::patient_id(intake),
            first_name: self.first_name.trim().to_owned(),
            last_name: self.last_name.trim().to_owned(),
            date_of_birth: self.date_of_birth,
            mobile_phone: blank(&self.mobile_phone).map(|p| rules::us_mobile(&p).unwrap_or(p)),
            email: blank(&self.email),
            address: self.state.map(|state| PostalAddress {
                lines: Vec::new(),
                city: String::new(),
                state: Some(state),
                postal_code: String::new(),
            }),
            preferred_language: self.language,
            time_zone: None,
            sms_consent: SmsConsent::None,
        }
    }
}

/// A new intake link: the intake's id and the token of its patient page (`/i/{token}`), shown
/// once to staff; Chairside also sends it to the patient (the runner, from the send queued with
/// the intake).
#[derive(Clone)]
pub struct IntakeLink {
    /// The intake.
    pub id: String,
    /// The patient's link token (never stored; only its hash is; rebuilt from the id with
    /// [`intake_link_token`] for each send).
    pub token: String,
}

impl std::fmt::Debug for IntakeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeLink")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The hash an intake token is stored and found by.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of intake `intake`'s patient link (`/i/{token}`): HMAC-SHA256 of the intake id
/// under the patient-link key. Unguessable without the key, never stored (only its SHA-256 is),
/// and rebuilt identically for the first send and every re-send. Rotating the key changes it: a
/// re-send after a rotation stores the new link's hash
/// ([`IntakeStore::queue_intake_link_resend`](crate::store::IntakeStore::queue_intake_link_resend)).
pub fn intake_link_token(intake: &str, key: &SecretString) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"chairside-intake-link:");
    mac.update(intake.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..24])
}

/// The token of practice `practice`'s public intake page (`/intake/{practice}/{token}`):
/// HMAC-SHA256 of the practice id under the patient-link key, so it is unguessable, needs no
/// storage, and changes when the key is rotated.
pub fn practice_page_token(practice: &PracticeId, key: &SecretString) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"chairside-intake-page:");
    mac.update(practice.as_str().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
}

/// True when `token` is practice `practice`'s public intake page token (constant time).
pub fn verify_practice_page_token(practice: &PracticeId, token: &str, key: &SecretString) -> bool {
    use subtle::ConstantTimeEq;
    practice_page_token(practice, key)
        .as_bytes()
        .ct_eq(token.as_bytes())
        .into()
}

fn random_id(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0_u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    )
}

/// The intake service: every entry point checks what was typed, stores it, and starts the
/// workflow once the intake is complete.
#[derive(Clone)]
pub struct Intakes {
    store: Arc<dyn Store>,
    max_amount: Money,
    link_key: SecretString,
}

impl std::fmt::Debug for Intakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intakes")
            .field("max_amount", &self.max_amount)
            .finish_non_exhaustive()
    }
}

impl Intakes {
    /// The service over `store`; patient links are derived under `link_key` (the patient-link
    /// key, `http.patient_link_key`, the same the runner rebuilds them with).
    pub fn new(store: Arc<dyn Store>, link_key: SecretString) -> Self {
        Self {
            store,
            max_amount: DEFAULT_MAX_AMOUNT,
            link_key,
        }
    }

    /// Staff start an intake: the patient's name and a way to reach them, and, when known, the
    /// proposed amount and the consultation summary. Returns the patient's intake link, and
    /// queues its first send to the patient in the same transaction (the runner sends it: email
    /// always, a text only with the patient's written consent on record).
    ///
    /// # Errors
    /// [`IntakeError::Invalid`] for a missing name or contact, or an amount out of bounds;
    /// [`IntakeError::Store`].
    pub async fn start_by_staff(
        &self,
        practice: &PracticeId,
        actor: &str,
        details: &PatientDetails,
        amount: Option<Money>,
        summary: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<IntakeLink, IntakeError> {
        let id = random_id("in_", 12);
        let contact = details.to_contact(&id);
        if contact.first_name.is_empty() {
            return Err(IntakeProblem::Missing("first name").into());
        }
        if contact.last_name.is_empty() {
            return Err(IntakeProblem::Missing("last name").into());
        }
        if contact.mobile_phone.is_none() && contact.email.is_none() {
            return Err(IntakeProblem::Missing("a mobile phone or an email").into());
        }
        if let Some(amount) = amount {
            rules::check_amount(amount, self.max_amount)?;
        }
        let token = intake_link_token(&id, &self.link_key);
        self.store
            .create_intake(
                &NewIntake {
                    id: id.clone(),
                    practice_id: practice.clone(),
                    token_hash: token_hash(&token),
                    origin: IntakeOrigin::Staff,
                    amount,
                    summary: summary.filter(|s| !s.trim().is_empty()),
                    contact: Some(contact),
                    details_from_patient: false,
                    created_by: actor.to_owned(),
                    send_link: true,
                },
                now,
            )
            .await?;
        Ok(IntakeLink { id, token })
    }

    /// The patient filled in the practice's public intake page: the intake is created with their
    /// details (and their SMS consent when ticked, recorded with the wording in
    /// `details.language`, the page's language); staff add the proposed amount.
    ///
    /// # Errors
    /// [`IntakeError::Invalid`] naming the first problem; [`IntakeError::Store`].
    pub async fn open_public(
        &self,
        practice: &PracticeId,
        details: &PatientDetails,
        sms_consent: bool,
        now: DateTime<Utc>,
    ) -> Result<String, IntakeError> {
        let id = random_id("in_", 12);
        let contact = details.to_contact(&id);
        rules::check_details(&contact, now.date_naive())?;
        self.record_consent(practice, &contact, sms_consent, now)
            .await?;
        let token = random_id("", 24);
        self.store
            .create_intake(
                &NewIntake {
                    id: id.clone(),
                    practice_id: practice.clone(),
                    token_hash: token_hash(&token),
                    origin: IntakeOrigin::Public,
                    amount: None,
                    summary: None,
                    contact: Some(contact),
                    details_from_patient: true,
                    created_by: "patient".into(),
                    // The patient is on the page already: nothing to send.
                    send_link: false,
                },
                now,
            )
            .await?;
        Ok(id)
    }

    /// The intake behind a patient link token.
    ///
    /// # Errors
    /// [`IntakeError::Store`].
    pub async fn by_token(&self, token: &str) -> Result<Option<IntakeRow>, IntakeError> {
        Ok(self.store.intake_by_token(&token_hash(token)).await?)
    }

    /// What staff typed of the patient, to fill the patient's form (they correct it).
    ///
    /// # Errors
    /// [`IntakeError::Store`].
    pub async fn prefill(&self, row: &IntakeRow) -> Result<Option<PatientContact>, IntakeError> {
        Ok(self
            .store
            .patient(&row.practice_id, &rules::patient_id(&row.id))
            .await?)
    }

    /// The patient submitted their details on their intake link. Starts the workflow when the
    /// amount is known. `details.language` is the language of the page they typed on: it is
    /// stored as the patient's language, and `sms_consent` is recorded with the texts wording in
    /// that language (the caller shows the wording of [`messaging::patient_page_wording`]).
    ///
    /// # Errors
    /// [`IntakeError::NotFound`], [`IntakeError::AlreadyDone`], [`IntakeError::Invalid`],
    /// [`IntakeError::Store`].
    pub async fn submit(
        &self,
        token: &str,
        details: &PatientDetails,
        sms_consent: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<chairside_workflow::WorkflowId>, IntakeError> {
        let row = self.by_token(token).await?.ok_or(IntakeError::NotFound)?;
        if row.details_at.is_some() {
            return Err(IntakeError::AlreadyDone);
        }
        // The language the patient used on the page (`details.language`: the page opens in the
        // one staff chose, and the patient may switch) becomes the language of everything that
        // follows: the workflow's messages and the patient page.
        let contact = details.to_contact(&row.id);
        rules::check_details(&contact, now.date_naive())?;
        self.record_consent(&row.practice_id, &contact, sms_consent, now)
            .await?;
        if !self
            .store
            .submit_intake_details(&row.practice_id, &row.id, &contact, now)
            .await?
        {
            return Err(IntakeError::AlreadyDone);
        }
        self.start_if_complete(&row.practice_id, &row.id, now).await
    }

    /// Staff enter (or correct) the proposed amount and summary. Starts the workflow when the
    /// patient's details are in.
    ///
    /// # Errors
    /// [`IntakeError::NotFound`], [`IntakeError::AlreadyDone`] once the workflow started,
    /// [`IntakeError::Invalid`], [`IntakeError::Store`].
    pub async fn set_proposal(
        &self,
        practice: &PracticeId,
        id: &str,
        amount: Money,
        summary: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<chairside_workflow::WorkflowId>, IntakeError> {
        rules::check_amount(amount, self.max_amount)?;
        if self.store.intake(practice, id).await?.is_none() {
            return Err(IntakeError::NotFound);
        }
        let summary = summary.map(str::trim).filter(|s| !s.is_empty());
        if !self
            .store
            .set_intake_proposal(practice, id, amount, summary, now)
            .await?
        {
            return Err(IntakeError::AlreadyDone);
        }
        self.start_if_complete(practice, id, now).await
    }

    /// Staff send the patient their intake link again (the dashboard's "Send the link again"):
    /// a new send with its own message key, audited, at most once per 10 minutes and 5 times a
    /// day ([`rules::check_link_resend`]), and only while the patient has not submitted their
    /// details.
    ///
    /// # Errors
    /// [`IntakeError::Store`]; the refusals are [`LinkResend`] values.
    pub async fn resend_link(
        &self,
        practice: &PracticeId,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<LinkResend, IntakeError> {
        let hash = token_hash(&intake_link_token(id, &self.link_key));
        Ok(self
            .store
            .queue_intake_link_resend(practice, id, actor, &hash, now)
            .await?)
    }

    /// Starts the intake's workflow when both the details and the amount are in (once).
    async fn start_if_complete(
        &self,
        practice: &PracticeId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<chairside_workflow::WorkflowId>, IntakeError> {
        let Some(row) = self.store.intake(practice, id).await? else {
            return Err(IntakeError::NotFound);
        };
        if row.details_at.is_none() || row.amount.is_none() || row.workflow_id.is_some() {
            return Ok(None);
        }
        let mut state = WorkflowState::from_intake(practice.clone(), id, now);
        let first = state.start();
        let wf = state.id.clone();
        let started = self
            .store
            .start_intake(practice, id, NewWorkflow { state, first }, now)
            .await?;
        Ok(started.then_some(wf))
    }

    async fn record_consent(
        &self,
        practice: &PracticeId,
        contact: &PatientContact,
        agreed: bool,
        now: DateTime<Utc>,
    ) -> Result<(), IntakeError> {
        let (true, Some(phone)) = (agreed, contact.mobile_phone.as_deref()) else {
            return Ok(());
        };
        // The wording the patient read: the page shows it in the language they use there.
        let entry = messaging::ConsentEntry::grant(
            messaging::ConsentKind::Written,
            messaging::sources::INTAKE_PAGE,
            messaging::patient_page_wording(contact.preferred_language),
            "patient",
            now,
        );
        self.store
            .record_sms_consent(practice, phone, &entry, now)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_practice_page_token_is_per_practice_and_per_key() {
        let key = SecretString::from("k1".repeat(16));
        let other = SecretString::from("k2".repeat(16));
        let a = PracticeId::new("lone-star-dental");
        let b = PracticeId::new("bay-dental");
        let t = practice_page_token(&a, &key);
        assert!(t.len() >= 24);
        assert!(verify_practice_page_token(&a, &t, &key));
        assert!(!verify_practice_page_token(&b, &t, &key));
        assert!(!verify_practice_page_token(&a, &t, &other));
        assert!(!verify_practice_page_token(&a, "", &key));
    }

    #[test]
    fn the_intake_link_token_is_per_intake_and_per_key_and_rebuilds_identically() {
        let key = SecretString::from("k1".repeat(16));
        let other = SecretString::from("k2".repeat(16));
        let t = intake_link_token("in_a", &key);
        assert_eq!(t, intake_link_token("in_a", &key));
        assert_ne!(t, intake_link_token("in_b", &key));
        assert_ne!(t, intake_link_token("in_a", &other));
        assert_eq!(t.len(), 32);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn typed_details_become_the_intake_contact() {
        let d = PatientDetails {
            first_name: " Rosa ".into(),
            last_name: "Quintero".into(),
            date_of_birth: NaiveDate::from_ymd_opt(1984, 5, 12),
            mobile_phone: "(512) 555-0188".into(),
            email: " ".into(),
            state: Some(UsState::TX),
            language: Language::En,
        };
        let c = d.to_contact("in_x");
        assert_eq!(c.id.as_str(), "intake-in_x");
        assert_eq!(c.first_name, "Rosa");
        assert_eq!(c.mobile_phone.as_deref(), Some("+15125550188"));
        assert_eq!(c.email, None);
        assert_eq!(c.state(), Some(UsState::TX));
        assert_eq!(format!("{d:?}"), "PatientDetails { .. }");
    }
}
