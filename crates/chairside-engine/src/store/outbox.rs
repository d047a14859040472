//! The outbound events' role: fan each event out to its subscribers, claim due deliveries under a
//! lease, record each attempt's outcome, and list deliveries for the dashboard.
//!
//! The events themselves are written by [`WorkflowStore::commit`](super::WorkflowStore::commit),
//! in the step's own transaction ([`crate::outbound::events::derive`]).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Result;

/// An event as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Row id (the fan-out cursor's unit).
    pub row: i64,
    /// `evt_…`: the `webhook-id`.
    pub event_id: String,
    /// The type label (`financing.decided`).
    pub kind: String,
    /// The workflow.
    pub workflow_id: String,
    /// The practice.
    pub practice_id: String,
    /// The exact body to send.
    pub payload: Vec<u8>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// A claimed delivery.
#[derive(Clone, Debug)]
pub struct DeliveryJob {
    /// Row id.
    pub id: i64,
    /// The subscriber's id.
    pub subscriber: String,
    /// This attempt's number (1 for the first); counted at claim, so a crash mid-call counts.
    pub attempt: u32,
    /// The event.
    pub event: StoredEvent,
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The subscriber took it.
    Delivered {
        /// The HTTP status, when there was one.
        status: Option<u16>,
    },
    /// Try again at `at`.
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// Why, without PHI.
        error: String,
    },
    /// Not due at the subscriber yet (a staff digest waiting for its window): try again at `at`,
    /// and the attempt just made does not count towards the bound.
    Wait {
        /// When.
        at: DateTime<Utc>,
        /// What it waits for, without PHI.
        reason: String,
    },
    /// Given up: staff see it on the dashboard.
    Failed {
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// Why, without PHI.
        error: String,
    },
}

/// What a delivery row records for an attempt's outcome ([`AttemptOutcome::columns`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutcomeColumns<'a> {
    /// `delivered`, `pending` or `failed`.
    pub(crate) status: &'static str,
    /// The next attempt, for a retry.
    pub(crate) next: Option<DateTime<Utc>>,
    /// The HTTP status, when there was one.
    pub(crate) code: Option<u16>,
    /// Why it did not go through.
    pub(crate) error: Option<&'a str>,
    /// When it was settled (delivered or given up).
    pub(crate) done: Option<DateTime<Utc>>,
    /// 1 when the attempt just made does not count (a wait), else 0: taken off `attempts`.
    pub(crate) uncounted: i64,
}

impl AttemptOutcome {
    /// What the delivery row records for this outcome at `now`. Shared by every store.
    pub(crate) fn columns(&self, now: DateTime<Utc>) -> OutcomeColumns<'_> {
        let (status, next, code, error, done) = match self {
            Self::Delivered { status } => ("delivered", None, *status, None, Some(now)),
            Self::Retry { at, status, error } => {
                ("pending", Some(*at), *status, Some(error.as_str()), None)
            }
            Self::Wait { at, reason } => ("pending", Some(*at), None, Some(reason.as_str()), None),
            Self::Failed { status, error } => {
                ("failed", None, *status, Some(error.as_str()), Some(now))
            }
        };
        OutcomeColumns {
            status,
            next,
            code,
            error,
            done,
            uncounted: i64::from(matches!(self, Self::Wait { .. })),
        }
    }
}

/// One line of the delivery log.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryRow {
    /// Row id.
    pub id: i64,
    /// The subscriber.
    pub subscriber: String,
    /// `evt_…`.
    pub event_id: String,
    /// The type label.
    pub kind: String,
    /// The workflow.
    pub workflow_id: String,
    /// The practice.
    pub practice_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Its HTTP status.
    pub last_status: Option<u16>,
    /// Its error.
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    pub done_at: Option<DateTime<Utc>>,
}

/// Counts by status, for the dashboard's banner and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    /// Waiting for an attempt.
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Given up.
    pub failed: u64,
}

/// What the outbound dispatcher does with the outbox.
#[async_trait]
pub trait OutboxStore: Send + Sync + std::fmt::Debug + 'static {
    /// Events after `subscriber`'s cursor, oldest first, at most `limit`. A subscriber seen for the
    /// first time starts at the newest event (it is not sent the history).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn events_after_cursor(
        &self,
        subscriber: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// In one transaction: queues a delivery of each of `wanted` to `subscriber` (once: a row that
    /// exists is left alone) and moves its cursor to `through`.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn enqueue_deliveries(
        &self,
        subscriber: &str,
        wanted: &[&StoredEvent],
        through: i64,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Claims up to `limit` due deliveries for `lease`, counting the attempt.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeliveryJob>>;

    /// Records an attempt's outcome, if `owner` still holds the delivery's lease at that attempt.
    /// Returns false when it did not (another dispatcher took it over; nothing was written).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn finish_delivery(
        &self,
        job: &DeliveryJob,
        owner: &str,
        outcome: &AttemptOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Puts a failed delivery back in the queue (a staff action), with its attempts reset. Returns
    /// false when the delivery is not failed.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn requeue_delivery(&self, id: i64, now: DateTime<Utc>) -> Result<bool>;

    /// The latest deliveries, newest first, of one practice or all, of one status or all.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn deliveries(
        &self,
        practice: Option<&str>,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>>;

    /// Deliveries by status.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn delivery_counts(&self) -> Result<DeliveryCounts>;

    /// The events of one workflow, oldest first (tests, the audit).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn outbound_events(&self, workflow_id: &str) -> Result<Vec<StoredEvent>>;

    /// The events of `practice_id` of type `kind` written in `[from, until)` that no staff alert
    /// digest holds yet, oldest first, at most `limit` (the staff alert digest's candidates).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn undigested_events(
        &self,
        practice_id: &str,
        kind: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// In one transaction, all or nothing: records that the staff alert digest `key` covers
    /// `event_ids`, led (sent) by `lead`'s delivery. Returns false, writing nothing, when any of
    /// them is already in a digest.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn collect_digest(
        &self,
        key: &str,
        practice_id: &str,
        lead: &str,
        event_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// The staff alert digest holding `event_id`, if any: its key, its lead event's id and its
    /// events, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn digest_of(&self, event_id: &str) -> Result<Option<Digest>>;
}

/// A staff alert digest as collected ([`OutboxStore::collect_digest`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    /// The message key its email is journalled and sent under.
    pub key: String,
    /// The event whose delivery sends it.
    pub lead: String,
    /// Its events, oldest first.
    pub events: Vec<StoredEvent>,
}
