//! Outbound events: what Chairside tells other systems, exactly once per subscriber.
//!
//! 1. A committed workflow step writes its events ([`events::derive`]: started, financing
//!    decided, staff needed, payment received, summary sent, note written, cancelled) into the
//!    outbox table in the step's own transaction ([`OutboxStore`]).
//! 2. The [`Dispatcher`] fans each new event out to the [`Subscriber`]s that want it (one
//!    delivery row per event and subscriber), claims due deliveries under a lease and hands each
//!    to its subscriber: a signed webhook endpoint ([`webhook::WebhookEndpoint`], Standard
//!    Webhooks), the CRM, the lab's email.
//! 3. An attempt that fails is retried on a capped exponential schedule (honouring
//!    `Retry-After`); after the last attempt the delivery is `failed`, shown on the staff
//!    dashboard's delivery log, where staff can queue it again.
//!
//! A delivery interrupted between the call and the record of its outcome (a crash) is claimed
//! again when its lease runs out and sent again with the same `webhook-id`: receivers deduplicate
//! on it, as the spec asks.

pub mod crm;
pub mod events;
pub mod lab;
pub mod sign;
pub mod staff_alert;
pub mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{Backoff, ErrorKind};

use crate::clock::Clock;
use crate::store::OutboxStore;
use crate::store::outbox::{AttemptOutcome, DeliveryJob, StoredEvent};

/// Why an attempt failed. Carries no PHI: a status, a kind, a short reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryError {
    /// Retry (with the server's `Retry-After` when it gave one) or give up now.
    pub retry: Option<Option<Duration>>,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// Why, without PHI (never the response body).
    pub reason: String,
    /// Not a failure: the event is not due at the subscriber yet (a staff digest waiting for its
    /// window to close). Tried again after exactly `retry`'s wait, without the backoff, without
    /// counting the attempt towards the bound and without a warning ([`DeliveryError::not_yet`]).
    pub not_yet: bool,
}

impl DeliveryError {
    /// Not due yet: try again after `wait`, as if this attempt had not been made.
    pub fn not_yet(wait: Duration, reason: impl Into<String>) -> Self {
        Self {
            retry: Some(Some(wait)),
            status: None,
            reason: reason.into(),
            not_yet: true,
        }
    }

    /// A failure worth another attempt.
    pub fn retry(status: Option<u16>, reason: impl Into<String>) -> Self {
        Self {
            retry: Some(None),
            status,
            reason: reason.into(),
            not_yet: false,
        }
    }

    /// A failure no retry can mend (the endpoint is gone, the subscriber refuses the event).
    pub fn give_up(status: Option<u16>, reason: impl Into<String>) -> Self {
        Self {
            retry: None,
            status,
            reason: reason.into(),
            not_yet: false,
        }
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} (HTTP {s})", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Something that receives outbound events: a webhook endpoint, the CRM, the lab.
#[async_trait]
pub trait Subscriber: Send + Sync + fmt::Debug {
    /// A stable id (`webhook:billing`, `crm:hubspot`, `lab`): deliveries and the fan-out cursor
    /// are kept under it, so renaming it starts afresh.
    fn id(&self) -> &str;

    /// Whether it wants `event` (its types, its practices).
    fn wants(&self, event: &StoredEvent) -> bool;

    /// Delivers one event; `attempt` is 1 for the first try. The same event may come again after a
    /// crash: a subscriber acts idempotently on `event.event_id`.
    ///
    /// # Errors
    /// [`DeliveryError`]: retry, or give up.
    async fn deliver(
        &self,
        event: &StoredEvent,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<u16>, DeliveryError>;
}

/// A subscriber shared by the dispatcher.
pub type SharedSubscriber = Arc<dyn Subscriber>;

/// The dispatcher's settings.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// Who claims (the runner's owner name with `/outbound`).
    pub owner: String,
    /// How long a claimed delivery is ours: longer than one call's timeout.
    pub lease: Duration,
    /// Deliveries claimed per round.
    pub batch: u32,
    /// The retry schedule; `max_attempts` bounds the attempts before giving up.
    pub backoff: Backoff,
}

impl Default for DispatchConfig {
    /// Claims 32 at a time for 60 s; retries from 5 s doubling to at most 1 h, 12 attempts in
    /// all (about 7 hours, then staff see the failure).
    fn default() -> Self {
        Self {
            owner: "chairside/outbound".into(),
            lease: Duration::from_secs(60),
            batch: 32,
            backoff: Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(3600),
                max_attempts: 12,
            },
        }
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Deliveries queued by the fan-out.
    pub queued: usize,
    /// Attempts made.
    pub attempted: usize,
    /// Of those, delivered.
    pub delivered: usize,
    /// Of those, given up.
    pub failed: usize,
}

/// Fans events out and delivers them. Cloning is cheap.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn OutboxStore>,
    subscribers: Arc<Vec<SharedSubscriber>>,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field(
                "subscribers",
                &self.subscribers.iter().map(|s| s.id()).collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over `store` for `subscribers`.
    pub fn new(
        store: Arc<dyn OutboxStore>,
        subscribers: Vec<SharedSubscriber>,
        clock: Arc<dyn Clock>,
        config: DispatchConfig,
    ) -> Self {
        Self {
            store,
            subscribers: Arc::new(subscribers),
            clock,
            config,
        }
    }

    /// The subscribers' ids.
    pub fn subscribers(&self) -> Vec<&str> {
        self.subscribers.iter().map(|s| s.id()).collect()
    }

    /// Starts the cursor of every subscriber that has none at the newest event, and leaves the
    /// others where they are. A subscriber new to the store is not sent the history; what counts
    /// as history is fixed here, when the stack is built, rather than at the dispatcher's first
    /// round, which runs beside the runner: an event written between the two (a workflow resumed
    /// at start, a plan polled in the first milliseconds) would otherwise be skipped by a new
    /// subscriber for good. The composition root calls it before the runner starts.
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError).
    pub async fn start_cursors(&self) -> crate::store::Result<()> {
        for subscriber in self.subscribers.iter() {
            // Reading after the cursor creates it at the newest event when it is missing; the
            // events read are left for the rounds.
            self.store
                .events_after_cursor(subscriber.id(), self.clock.now(), 1)
                .await?;
        }
        Ok(())
    }

    /// Queues, for each subscriber, a delivery of every new event it wants. A subscriber seen for
    /// the first time (its cursor not started by [`Dispatcher::start_cursors`]) starts from the
    /// newest event.
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError).
    pub async fn fan_out(&self) -> crate::store::Result<usize> {
        let mut queued = 0;
        for subscriber in self.subscribers.iter() {
            loop {
                let now = self.clock.now();
                let events = self
                    .store
                    .events_after_cursor(subscriber.id(), now, 500)
                    .await?;
                let Some(last) = events.last().map(|e| e.row) else {
                    break;
                };
                let wanted: Vec<&StoredEvent> =
                    events.iter().filter(|e| subscriber.wants(e)).collect();
                queued += wanted.len();
                self.store
                    .enqueue_deliveries(subscriber.id(), &wanted, last, now)
                    .await?;
                if events.len() < 500 {
                    break;
                }
            }
        }
        Ok(queued)
    }

    /// Claims due deliveries and makes one attempt at each, concurrently, recording each outcome.
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError) (claiming; a failed record is logged and the
    /// delivery is retried when its lease runs out).
    pub async fn deliver_due(&self) -> crate::store::Result<Round> {
        let now = self.clock.now();
        let jobs = self
            .store
            .claim_deliveries(
                &self.config.owner,
                now,
                self.config.lease,
                self.config.batch,
            )
            .await?;
        // A workflow's events reach an endpoint in the order they happened: one at a time per
        // (subscriber, workflow), in claim order (event order); different workflows and
        // subscribers concurrently. A retried event may still arrive after later ones.
        let mut groups: Vec<Vec<&DeliveryJob>> = Vec::new();
        let mut group_of: HashMap<(&str, &str), usize> = HashMap::new();
        for job in &jobs {
            let key = (job.subscriber.as_str(), job.event.workflow_id.as_str());
            let g = *group_of.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(job);
        }
        let outcomes = futures::future::join_all(groups.iter().map(|group| async move {
            let mut out = Vec::with_capacity(group.len());
            for &job in group {
                out.push((job, self.attempt(job).await));
            }
            out
        }))
        .await;
        let mut round = Round {
            attempted: jobs.len(),
            ..Round::default()
        };
        for (job, outcome) in outcomes.into_iter().flatten() {
            match &outcome {
                AttemptOutcome::Delivered { .. } => round.delivered += 1,
                AttemptOutcome::Failed { .. } => round.failed += 1,
                AttemptOutcome::Retry { .. } | AttemptOutcome::Wait { .. } => {}
            }
            match self
                .store
                .finish_delivery(job, &self.config.owner, &outcome, self.clock.now())
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    delivery = job.id,
                    subscriber = %job.subscriber,
                    "the delivery's lease moved on; its outcome is not recorded"
                ),
                Err(e) => tracing::error!(
                    delivery = job.id,
                    subscriber = %job.subscriber,
                    error = %e,
                    "recording a delivery failed; it is retried when its lease runs out"
                ),
            }
        }
        Ok(round)
    }

    async fn attempt(&self, job: &DeliveryJob) -> AttemptOutcome {
        let Some(subscriber) = self.subscribers.iter().find(|s| s.id() == job.subscriber) else {
            // Removed from the configuration: keep the row for when it returns.
            return AttemptOutcome::Retry {
                at: self.clock.now() + chrono::Duration::hours(1),
                status: None,
                error: "the subscriber is not configured".into(),
            };
        };
        let now = self.clock.now();
        match subscriber.deliver(&job.event, job.attempt, now).await {
            Ok(status) => {
                tracing::info!(
                    delivery = job.id,
                    subscriber = %job.subscriber,
                    event = %job.event.event_id,
                    kind = %job.event.kind,
                    attempt = job.attempt,
                    "event delivered"
                );
                AttemptOutcome::Delivered { status }
            }
            Err(e) if e.not_yet => {
                let wait = e.retry.flatten().unwrap_or_default();
                tracing::debug!(
                    delivery = job.id,
                    subscriber = %job.subscriber,
                    event = %job.event.event_id,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "event delivery waits"
                );
                AttemptOutcome::Wait {
                    at: now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                    reason: e.reason,
                }
            }
            Err(e) => {
                let kind = match e.retry {
                    Some(retry_after) => ErrorKind::Transient { retry_after },
                    None => ErrorKind::Permanent,
                };
                let delay = self
                    .config
                    .backoff
                    .delay(job.attempt, kind, rand::random::<f64>());
                tracing::warn!(
                    delivery = job.id,
                    subscriber = %job.subscriber,
                    event = %job.event.event_id,
                    attempt = job.attempt,
                    status = e.status,
                    gives_up = delay.is_none(),
                    "event delivery failed"
                );
                match delay {
                    Some(d) => AttemptOutcome::Retry {
                        at: now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
                        status: e.status,
                        error: e.reason,
                    },
                    None => AttemptOutcome::Failed {
                        status: e.status,
                        error: e.reason,
                    },
                }
            }
        }
    }

    /// One round: fan out, then deliver what is due.
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError).
    pub async fn tick(&self) -> crate::store::Result<Round> {
        let queued = self.fan_out().await?;
        let mut round = self.deliver_due().await?;
        round.queued = queued;
        Ok(round)
    }

    /// Runs rounds until the task is dropped: a round every `idle` when nothing was due, at once
    /// when the last round had work. Call [`Dispatcher::start_cursors`] first, before the runner
    /// starts: this task's first round may come after the runner's first events.
    pub async fn run(self, idle: Duration) {
        loop {
            let busy = match self.tick().await {
                Ok(round) => round.attempted > 0,
                Err(e) => {
                    tracing::error!(error = %e, "the outbound dispatcher failed a round");
                    false
                }
            };
            if !busy {
                tokio::time::sleep(idle).await;
            }
        }
    }
}
