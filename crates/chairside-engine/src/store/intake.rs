//! The intake role: new-patient intakes (docs/intake.md) and the one workflow each may start.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{Money, PatientContact, PracticeId};
use serde::Serialize;

use super::{NewWorkflow, Result, SentChannel};

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
    /// Queue the first send of the patient's intake link (seq 0), in the same transaction.
    pub send_link: bool,
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

/// A send of an intake's link claimed by the runner: the first send (seq 0) or a staff re-send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntakeLinkSend {
    /// The intake.
    pub intake_id: String,
    /// Its practice.
    pub practice_id: PracticeId,
    /// 0 for the first send, 1, 2, ... for re-sends.
    pub seq: u32,
    /// This attempt (1 for the first); counted at claim, so a crash mid-send counts.
    pub attempt: u32,
}

impl IntakeLinkSend {
    /// The message key: the same on every attempt of this send, a new one per re-send. The
    /// message journal keeps one key from going out twice on a channel.
    pub fn message_key(&self) -> String {
        format!("intake:{}:link:{}", self.intake_id, self.seq)
    }
}

/// What one attempt at sending an intake's link came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkSendOutcome {
    /// It went out on these channels (`email`, `email,sms`).
    Sent {
        /// The channels.
        channels: String,
        /// Each channel that went out with the provider's id: journalled `sent` in the same
        /// transaction as the send's outcome (the messenger leaves them `attempting` for its
        /// caller to record, as a workflow step's commit does).
        sent: Vec<SentChannel>,
    },
    /// Try again at `at` (a transient failure, quiet hours).
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// Why, without patient data.
        error: String,
    },
    /// Given up: staff see why on the intake's page and give the link another way.
    Failed {
        /// Why, without patient data.
        error: String,
    },
}

/// One send of an intake's link, for the intake's page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IntakeLinkSendRow {
    /// 0 for the first send.
    pub seq: u32,
    /// Who asked for it.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The channels it went out on.
    pub channels: Option<String>,
    /// Why the last attempt did not go out.
    pub last_error: Option<String>,
    /// When it was sent or given up.
    pub done_at: Option<DateTime<Utc>>,
}

/// What a request to send an intake's link again came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkResend {
    /// Queued as send `seq`.
    Queued {
        /// The send's number.
        seq: u32,
    },
    /// Too soon or too often ([`chairside_workflow::intake::check_link_resend`]).
    Refused(chairside_workflow::intake::LinkResendRefused),
    /// The patient already submitted their details: the link has done its job.
    Complete,
    /// No such intake at the practice.
    NotFound,
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

    /// Staff ask for the intake's link to be sent again: unless the patient already submitted
    /// their details or [`check_link_resend`](chairside_workflow::intake::check_link_resend)
    /// refuses, queues the next send, sets the intake's link token hash to `token_hash` (the link
    /// as rebuilt under the current key, so the sent link opens the intake even after a key
    /// rotation) and writes the audit line, all in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn queue_intake_link_resend(
        &self,
        practice: &PracticeId,
        id: &str,
        actor: &str,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<LinkResend>;

    /// Claims up to `limit` due link sends for `lease`, counting the attempt.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn claim_intake_link_sends(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<IntakeLinkSend>>;

    /// Records an attempt's outcome (and, for a send, its audit line), if the send is still at
    /// that attempt and pending: `false` when another runner took it over (nothing written).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn finish_intake_link_send(
        &self,
        send: &IntakeLinkSend,
        outcome: &LinkSendOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// The sends of one intake's link, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn intake_link_sends(
        &self,
        practice: &PracticeId,
        id: &str,
    ) -> Result<Vec<IntakeLinkSendRow>>;
}

/// The row an outcome writes: status, next attempt, channels, error, done.
pub(crate) struct LinkOutcomeColumns<'a> {
    pub(crate) status: &'static str,
    pub(crate) next_ms: Option<i64>,
    pub(crate) channels: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    pub(crate) done_ms: Option<i64>,
}

impl LinkSendOutcome {
    /// What the send's row records for this outcome at `now_ms`. Shared by every store.
    pub(crate) fn columns(&self, now_ms: i64) -> LinkOutcomeColumns<'_> {
        match self {
            Self::Sent { channels, .. } => LinkOutcomeColumns {
                status: "sent",
                next_ms: None,
                channels: Some(channels),
                error: None,
                done_ms: Some(now_ms),
            },
            Self::Retry { at, error } => LinkOutcomeColumns {
                status: "pending",
                next_ms: Some(at.timestamp_millis()),
                channels: None,
                error: Some(error),
                done_ms: None,
            },
            Self::Failed { error } => LinkOutcomeColumns {
                status: "failed",
                next_ms: None,
                channels: None,
                error: Some(error),
                done_ms: Some(now_ms),
            },
        }
    }

    /// The audit line of a send that went out, or gave up.
    pub(crate) fn audit(&self, seq: u32) -> Option<(&'static str, String)> {
        match self {
            Self::Sent { channels, .. } => Some((
                "intake_link_sent",
                format!("intake link send #{seq} sent by {channels}"),
            )),
            Self::Failed { error } => Some((
                "intake_link_not_sent",
                format!("intake link send #{seq} not sent: {error}"),
            )),
            Self::Retry { .. } => None,
        }
    }
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
