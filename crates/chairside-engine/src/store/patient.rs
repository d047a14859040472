//! The patient role: contact data (encrypted at rest) and SMS consent.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{PatientContact, PatientId, PracticeId};

use super::{Result, SmsConsentLogRow, SmsConsentRecord};

/// Patients' contact data and their SMS consent. The only role that ever sees PHI in clear.
#[async_trait]
pub trait PatientStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a patient's contact data, encrypted.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn put_patient(
        &self,
        practice: &PracticeId,
        contact: &PatientContact,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Reads a patient's contact data.
    ///
    /// # Errors
    /// [`StoreError::Crypto`](super::StoreError::Crypto) for a wrong key,
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn patient(
        &self,
        practice: &PracticeId,
        patient: &PatientId,
    ) -> Result<Option<PatientContact>>;

    /// Records an SMS opt-out (`true`) or opt-in for a phone number: an opt-out is a withdrawal
    /// from `source`, an opt-in an informational grant from `source` (see
    /// [`Self::record_sms_consent`], which this calls with a short wording).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn set_sms_opt_out(
        &self,
        practice: &PracticeId,
        phone: &str,
        opted_out: bool,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Whether a phone number opted out of texts at this practice.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn sms_opted_out(&self, practice: &PracticeId, phone: &str) -> Result<bool>;

    /// The latest consent change on record for a phone number at this practice.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn sms_consent(
        &self,
        practice: &PracticeId,
        phone: &str,
    ) -> Result<Option<SmsConsentRecord>>;

    /// Appends `entry` to the number's consent history and folds it into its standing with
    /// [`messaging::supersedes`] (a withdrawal always wins; an attestation never overrides a
    /// withdrawal), in one transaction. Returns the standing after it.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn record_sms_consent(
        &self,
        practice: &PracticeId,
        phone: &str,
        entry: &messaging::ConsentEntry,
        now: DateTime<Utc>,
    ) -> Result<SmsConsentRecord>;

    /// The number's consent history at this practice, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn sms_consent_history(
        &self,
        practice: &PracticeId,
        phone: &str,
    ) -> Result<Vec<SmsConsentLogRow>>;
}
