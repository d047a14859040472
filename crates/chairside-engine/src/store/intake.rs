//! The intake role: new-patient intakes (docs/intake.md) and the one workflow each may start.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{Money, PatientContact, PracticeId};
use serde::Serialize;

use super::{NewWorkflow, Result};

/// Where an intake was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntakeOrigin {
    /// Staff started it on the dashboard and gave the patient the intake link.
    Staff,
    /// The patient filled in the practice's public intake page.
    Public,
}

impl IntakeOrigin {
    /// A stable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Public => "public",
        }
    }
}

/// A new intake.
#[derive(Clone)]
pub struct NewIntake {
    /// Its id (`in_…`).
    pub id: String,
    /// The practice.
    pub practice_id: PracticeId,
    /// SHA-256 of the patient's link token.
    pub token_hash: [u8; 32],
    /// Where it was started.
    pub origin: IntakeOrigin,
    /// The amount proposed for financing, when known.
    pub amount: Option<Money>,
    /// The consultation summary or proposed treatment (staff-facing; sealed).
    pub summary: Option<String>,
    /// What staff typed of the patient's name and contact, or what the patient typed.
    pub contact: Option<PatientContact>,
    /// True when `contact` is the patient's own (the public page), false for staff's.
    pub details_from_patient: bool,
    /// Who started it (`staff:alice`, `patient`).
    pub created_by: String,
}

impl std::fmt::Debug for NewIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewIntake")
            .field("id", &self.id)
            .field("practice_id", &self.practice_id)
            .finish_non_exhaustive()
    }
}

/// An intake as stored.
#[derive(Clone, Serialize)]
pub struct IntakeRow {
    /// Its id.
    pub id: String,
    /// The practice.
    pub practice_id: PracticeId,
    /// Where it was started.
    pub origin: IntakeOrigin,
    /// The amount proposed for financing, when entered.
    pub amount: Option<Money>,
    /// The consultation summary (staff-facing).
    pub summary: Option<String>,
    /// When the patient submitted their details.
    pub details_at: Option<DateTime<Utc>>,
    /// The workflow it started, once started.
    pub workflow_id: Option<String>,
    /// Who started it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for IntakeRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeRow")
            .field("id", &self.id)
            .field("practice_id", &self.practice_id)
            .finish_non_exhaustive()
    }
}

/// New-patient intakes. Every method is one transaction.
#[async_trait]
pub trait IntakeStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new intake, and its contact (sealed, under `intake-{id}`) when given.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn create_intake(&self, new: &NewIntake, now: DateTime<Utc>) -> Result<()>;

    /// One intake of the practice.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database), [`StoreError::Sealed`](super::StoreError::Sealed).
    async fn intake(&self, practice: &PracticeId, id: &str) -> Result<Option<IntakeRow>>;

    /// The intake whose patient link token hashes to `token_hash`.
    ///
    /// # Errors
    /// As [`Self::intake`].
    async fn intake_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<IntakeRow>>;

    /// The practice's intakes, newest first.
    ///
    /// # Errors
    /// As [`Self::intake`].
    async fn intakes(&self, practice: &PracticeId, limit: u32) -> Result<Vec<IntakeRow>>;

    /// Records the details the patient typed (their contact, replacing what staff typed), once:
    /// `false` when they were already submitted (nothing changes).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn submit_intake_details(
        &self,
        practice: &PracticeId,
        id: &str,
        contact: &PatientContact,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Sets the proposed amount and summary, while no workflow has started: `false` after.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn set_intake_proposal(
        &self,
        practice: &PracticeId,
        id: &str,
        amount: Money,
        summary: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Starts the intake's workflow, once: in one transaction the intake records the workflow
    /// and the workflow is created with its first command. `false` when it had started already.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn start_intake(
        &self,
        practice: &PracticeId,
        id: &str,
        new: NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Admits one public intake submission under every `(key, limit)` unless a key already has
    /// `limit` submissions in the `window` before `now`: then `false` and nothing is recorded.
    /// In one transaction, shared by every instance on the database; rows older than the window
    /// are pruned. Keys are stored as SHA-256 hashes (a client address never in clear).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn admit_intake_submission(
        &self,
        keys: &[(String, u32)],
        window: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

/// The stored form of a rate-limit key.
pub(crate) fn limit_key_hash(key: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(format!("chairside-intake-limit:{key}").as_bytes()).to_vec()
}

/// The start of the window ending at `now`, in Unix ms.
pub(crate) fn window_start_ms(window: std::time::Duration, now: DateTime<Utc>) -> i64 {
    now.timestamp_millis()
        .saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
}
