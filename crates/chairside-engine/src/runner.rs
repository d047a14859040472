//! The runner: claims due workflows and performs their commands with the intent -> call -> result
//! protocol of DESIGN.md, and the poller that turns accepted plans into workflows.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use financing_core::{
    ApplicationHandle, Backoff, Decision, ErrorKind, LenderId, LenderLocation, PatientContact,
    Policy, PolicySettings, PracticeId, SettlementRequest, SharedProvider, SmsConsent, SmsPurpose,
    Tz,
};
use futures::StreamExt;

use crate::clock::Clock;
use crate::links::PatientLinks;
use crate::note::{ledger_note, note_marker, summary};
use crate::ports::{
    CardChargeRequest, CardOutcome, DepositLinkState, EnsuredPatient, ExternalError,
    MessageContent, PaymentPosting, PlanState, PlanSummary, PlanWrite, PracticeProfile,
    SharedMessenger, SharedPayments, SharedPracticeSystem,
};
use crate::store::{
    AfterStep, AuditLine, Claim, ConsentFact, Consumed, NextStep, SentChannel, StepFacts, Store,
    StoreError, WorkItem,
};
use chairside_workflow::delivery::{
    Channel, Delivery, DeliveryFacts, is_usable_email, plan_delivery,
};
use chairside_workflow::machine::apply;
use chairside_workflow::{
    Action, Command, Event, MessageKind, NoteKind, PatientFacts, PaymentFact, StaffTask, Status,
    TaskKind, WorkflowConfig, WorkflowId, WorkflowState,
};

/// Everything the runner needs for one practice.
#[derive(Debug, Clone)]
pub struct PracticeRuntime {
    /// Name, state, time zone, contact.
    pub profile: PracticeProfile,
    /// The practice's workflow rules.
    pub workflow: WorkflowConfig,
    /// Counsel-approved policy settings.
    pub policy: PolicySettings,
    /// The practice system.
    pub pms: SharedPracticeSystem,
    /// The configured lenders by id.
    pub lenders: HashMap<LenderId, SharedProvider>,
    /// Stripe.
    pub payments: SharedPayments,
    /// Email and SMS.
    pub messenger: SharedMessenger,
    /// Signs the patient page links in messages.
    pub patient_links: PatientLinks,
}

impl PracticeRuntime {
    fn time_zone(&self) -> Tz {
        self.profile
            .time_zone
            .parse()
            .unwrap_or(chrono_tz::America::New_York)
    }

    fn policy_for(&self, patient: Option<&PatientContact>) -> Policy {
        Policy::new(
            self.profile.state,
            patient.and_then(PatientContact::state),
            self.time_zone(),
            self.policy,
        )
    }

    fn location(&self) -> LenderLocation {
        LenderLocation {
            practice_id: self.profile.id.clone(),
            location_id: self.profile.location_id.clone(),
            state: self.profile.state,
        }
    }
}

/// Steps one claim runs before it lets go, so one busy workflow cannot hold its lease forever.
const MAX_STEPS_PER_CLAIM: usize = 64;

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This runner's name in leases.
    pub owner: String,
    /// How long a claim holds a workflow.
    pub lease: Duration,
    /// Workflows claimed per round.
    pub batch: u32,
    /// Workflows processed at once.
    pub concurrency: usize,
    /// Retry schedule for transient and indeterminate outcomes.
    pub backoff: Backoff,
    /// How long one step's external calls may take, retries included. A step still working at
    /// its deadline is abandoned like a crash mid-call (the call's outcome is unknown) and re-run
    /// from its journal later, with the same idempotency key. The lease is renewed while the step
    /// works, so the deadline bounds how long one slow system holds a runner slot, not the lease.
    pub step_deadline: Duration,
    /// How long one practice's poll may take before it is abandoned until its next round; other
    /// practices' polls never wait for it (see [`Runner::poll_practices`]).
    pub poll_deadline: Duration,
    /// The longest a runner with free slots sleeps without looking at the store: wake-ups from
    /// this process's webhooks, polls and staff actions come at once; this bounds how late it
    /// sees work another process queued on the same file (`chairside retry`, another instance).
    pub idle_recheck: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            owner: format!("runner-{}", std::process::id()),
            lease: Duration::from_secs(60),
            batch: 64,
            concurrency: 16,
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(30),
                max_attempts: 8,
            },
            step_deadline: Duration::from_secs(50),
            poll_deadline: Duration::from_secs(60),
            idle_recheck: Duration::from_secs(1),
        }
    }
}

/// Counters the benchmark and metrics read.
#[derive(Debug, Default)]
pub struct RunnerStats {
    /// External calls made.
    pub external_calls: AtomicU64,
    /// Nanoseconds spent waiting on external calls.
    pub external_nanos: AtomicU64,
    /// Steps committed.
    pub steps: AtomicU64,
    /// Results discarded because the lease moved.
    pub lost_leases: AtomicU64,
    /// How long after coming due (a timer, a webhook, a retry, a new plan) each workflow was
    /// claimed: what a runner that never waits for a batch keeps to milliseconds.
    pub claim_lag: LagHistogram,
}

/// Upper bounds, in milliseconds, of [`LagHistogram`]'s buckets (the last one is unbounded).
pub const LAG_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000];

/// A histogram of delays in fixed buckets ([`LAG_BUCKETS_MS`]), with their count, sum and maximum:
/// constant memory however long the runner runs.
#[derive(Debug, Default)]
pub struct LagHistogram {
    buckets: [AtomicU64; LAG_BUCKETS_MS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

/// What a [`LagHistogram`] held at one moment; subtract two to get what happened between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LagSnapshot {
    /// Per bucket of [`LAG_BUCKETS_MS`], then the unbounded one.
    pub buckets: [u64; LAG_BUCKETS_MS.len() + 1],
    /// Delays recorded.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_micros: u64,
    /// The largest since the histogram was made (not reduced by [`LagSnapshot::since`]).
    pub max_micros: u64,
}

impl LagHistogram {
    /// Records one delay.
    pub fn record(&self, lag: Duration) {
        let ms = lag.as_millis();
        let bucket = LAG_BUCKETS_MS
            .iter()
            .position(|&bound| ms < u128::from(bound))
            .unwrap_or(LAG_BUCKETS_MS.len());
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// What it holds now.
    pub fn snapshot(&self) -> LagSnapshot {
        LagSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
            max_micros: self.max_micros.load(Ordering::Relaxed),
        }
    }
}

impl LagSnapshot {
    /// What was recorded after `earlier` (the maximum stays this snapshot's).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            count: self.count.saturating_sub(earlier.count),
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
            max_micros: self.max_micros,
        }
    }

    /// Both together (several runners' histograms).
    #[must_use]
    pub fn plus(&self, other: &Self) -> Self {
        Self {
            buckets: std::array::from_fn(|i| self.buckets[i] + other.buckets[i]),
            count: self.count + other.count,
            sum_micros: self.sum_micros + other.sum_micros,
            max_micros: self.max_micros.max(other.max_micros),
        }
    }

    /// The mean delay in milliseconds (0 when nothing was recorded).
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_micros as f64 / 1_000.0 / self.count as f64
        }
    }

    /// The bucket bound under which a share `p` (0 to 1) of the delays fall, in milliseconds;
    /// `None` when nothing was recorded or the share reaches the unbounded bucket.
    pub fn at_most_ms(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let wanted = (p * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return LAG_BUCKETS_MS.get(i).copied();
            }
        }
        None
    }

    /// Delays of at least `ms` milliseconds (`ms` must be one of [`LAG_BUCKETS_MS`]).
    pub fn at_least_ms(&self, ms: u64) -> u64 {
        match LAG_BUCKETS_MS.iter().position(|&b| b == ms) {
            Some(i) => self.buckets[i + 1..].iter().sum(),
            None => 0,
        }
    }
}

/// What performing a command produced besides its event, written with the step's commit
/// ([`StepFacts`]): one transaction for the step instead of one per fact.
#[derive(Debug, Default)]
struct CallFacts {
    sent: Vec<SentChannel>,
    audit: Vec<AuditLine>,
    /// The patient's contact read with a plan: stored by the step's commit. Nothing reads it
    /// before then (the next call reads it after the commit), and a step refused is repeated,
    /// reading it again, so it is never written alone.
    patient: Option<PatientContact>,
    /// The practice's attestation of SMS consent read with a plan, as `patient`.
    consent: Option<ConsentFact>,
    /// The message this call sends, composed and journaled `attempting` by the commit that
    /// journaled the call's intent (`Runner::prepare_message`).
    ready: Option<ReadyMessage>,
}

/// A message composed for a patient: to whom, what, on which channels.
#[derive(Debug)]
struct Composed {
    contact: PatientContact,
    content: MessageContent,
    channels: Vec<Channel>,
}

/// A message composed and made ready by the messenger before its intent was journaled.
#[derive(Debug)]
struct ReadyMessage {
    composed: Composed,
    prepared: crate::ports::PreparedSend,
}

impl CallFacts {
    fn as_step(&self) -> StepFacts<'_> {
        StepFacts {
            sent: &self.sent,
            audit: &self.audit,
            patient: self.patient.as_ref(),
            consent: self.consent.as_ref(),
        }
    }
}

/// The outcome of performing one command.
enum Performed {
    Event(Box<Event>),
    /// The configuration is wrong: a staff task naming the problem.
    Misconfigured(String),
    Retry {
        kind: ErrorKind,
        reason: String,
    },
    WaitUntil(DateTime<Utc>),
    Failed(String),
}

impl Performed {
    fn event(event: Event) -> Self {
        Self::Event(Box::new(event))
    }
}

/// Claims and drives workflows.
#[derive(Debug, Clone)]
pub struct Runner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) practices: Arc<HashMap<PracticeId, PracticeRuntime>>,
    pub(crate) config: RunnerConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) stats: Arc<RunnerStats>,
    pub(crate) detection: Arc<crate::detect::DetectConfig>,
    pub(crate) examined: Arc<crate::detect::Examined>,
    /// Rung when a slot frees or something came due ([`Runner::wake`]).
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Set when the runner is stopping: each workflow commits the step in flight and lets go.
    pub(crate) stopping: Arc<std::sync::atomic::AtomicBool>,
    /// This runner's name in poller leases: the configured owner and a random suffix, so two
    /// instances configured with the same owner never both believe they hold a practice.
    pub(crate) poller_owner: Arc<str>,
}

/// A runner failure (the store); external failures never escape: they become events.
pub type RunnerError = StoreError;

impl Runner {
    /// A runner over `store` for `practices`.
    pub fn new(
        store: Arc<dyn Store>,
        practices: Vec<PracticeRuntime>,
        config: RunnerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let practices = practices
            .into_iter()
            .map(|p| (p.profile.id.clone(), p))
            .collect();
        let poller_owner = format!("{}/poller-{:016x}", config.owner, rand::random::<u64>()).into();
        Self {
            store,
            practices: Arc::new(practices),
            config,
            clock,
            stats: Arc::new(RunnerStats::default()),
            detection: Arc::new(crate::detect::DetectConfig::default()),
            examined: Arc::default(),
            wake: Arc::new(tokio::sync::Notify::new()),
            stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            poller_owner,
        }
    }

    /// This runner's name in poller leases ([`PollerStore`](crate::store::PollerStore)): the
    /// configured owner and a random suffix chosen when the runner was made.
    pub fn poller_owner(&self) -> &str {
        &self.poller_owner
    }

    /// Tells a running [`work`](Self::work) loop that something may have come due (a webhook
    /// stored, a staff action queued): it claims at once instead of at its next look. The store's
    /// own signal covers what is written through it; this is for everything else.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The settings.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// The same runner with these detection settings (go-live, plan limits, detail retries).
    #[must_use]
    pub fn with_detection(mut self, detection: crate::detect::DetectConfig) -> Self {
        self.detection = Arc::new(detection);
        self
    }

    /// The detection settings.
    pub fn detection(&self) -> &crate::detect::DetectConfig {
        &self.detection
    }

    /// The counters.
    pub fn stats(&self) -> &RunnerStats {
        &self.stats
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The practices.
    pub fn practices(&self) -> impl Iterator<Item = &PracticeRuntime> {
        self.practices.values()
    }

    /// Claims one batch of due workflows and drives each until nothing is due. Returns the number
    /// of workflows processed.
    ///
    /// # Errors
    /// [`StoreError`] from claiming.
    pub async fn tick(&self) -> Result<usize, RunnerError> {
        let now = self.clock.now();
        // No more than can run at once: a claim waiting for a slot is not renewed, and its lease
        // would run out before its turn.
        let limit = self
            .config
            .batch
            .min(u32::try_from(self.config.concurrency).unwrap_or(u32::MAX));
        let claims = self
            .store
            .claim_due(&self.config.owner, now, self.config.lease, limit)
            .await?;
        self.note_claims(&claims, now);
        let n = claims.len();
        futures::stream::iter(claims)
            .for_each_concurrent(self.config.concurrency, |claim| async move {
                self.drive(&claim).await;
            })
            .await;
        // Intake links waiting to go to new patients (`intake_send.rs`).
        let links = self.send_intake_links().await?;
        Ok(n + links)
    }

    /// A `charge.refunded` is applied with the charge's refunds as Stripe lists them, so each
    /// refund is reversed once under its own id. A lookup that fails (or a payments system that
    /// cannot list them) leaves the event as it came: the cumulative rule decides. The list is
    /// committed with the step it is applied in; a crash before that looks it up again.
    async fn with_refunds(&self, rt: &PracticeRuntime, event: Event) -> Event {
        let Event::Payment(PaymentFact::Refunded {
            stripe_id,
            amount,
            refunds: None,
        }) = event
        else {
            return event;
        };
        let refunds = match self.timed(rt.payments.list_refunds(&stripe_id)).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "refunds not listed; reversing by the refunded total");
                None
            }
        };
        Event::Payment(PaymentFact::Refunded {
            stripe_id,
            amount,
            refunds,
        })
    }

    /// Records how long after coming due each claim was made.
    pub(crate) fn note_claims(&self, claims: &[Claim], now: DateTime<Utc>) {
        for claim in claims {
            if let Some(due) = claim.due_at {
                let lag = (now - due).to_std().unwrap_or_default();
                self.stats.claim_lag.record(lag);
                tracing::debug!(workflow = %claim.id, lag_ms = lag.as_millis() as u64, "claimed");
            }
        }
    }

    /// Drives one claimed workflow until nothing is due (or the runner stops), then releases it.
    /// Store failures are logged here: one workflow's trouble never stops another's.
    pub(crate) async fn drive(&self, claim: &Claim) {
        match self.process(claim).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost(id)) => {
                self.stats.lost_leases.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(workflow = %id, "lease lost; the new owner repeats the step");
            }
            // What is stored does not decode: retrying cannot help. Set it aside for
            // staff; the error's text is not logged, it can quote the stored content.
            Err(e) if e.is_unreadable() => self.quarantine(claim).await,
            // A deadlock the database broke, a lock not granted in time, SQLite busy: the failed
            // transaction may well pass if run again. Released now, the workflow is claimed
            // again at once (here or by another instance) and repeats its step from what was
            // committed, as after a lease runs out, instead of waiting out its lease.
            Err(e) if e.is_transient() => {
                tracing::warn!(workflow = %claim.id, error = %e, "store busy while processing; released to run again");
                if let Err(e) = self.store.release(claim, self.clock.now()).await {
                    tracing::warn!(workflow = %claim.id, error = %e, "release failed; the lease runs out instead");
                }
            }
            Err(e) => {
                tracing::error!(workflow = %claim.id, error = %e, "store error while processing");
            }
        }
    }

    /// Quarantines a claimed workflow whose stored data does not decode (see
    /// [`QuarantineStore`](crate::store::QuarantineStore)); the claim is released either way.
    async fn quarantine(&self, claim: &Claim) {
        let now = self.clock.now();
        match self.store.quarantine_workflow(claim, now).await {
            Ok(Some(problem)) => {
                tracing::error!(workflow = %claim.id, problem, "workflow quarantined: its stored data does not decode");
            }
            Ok(None) => {
                tracing::warn!(workflow = %claim.id, "a decode error that did not recur; released");
                if let Err(e) = self.store.release(claim, now).await {
                    tracing::error!(workflow = %claim.id, error = %e, "release failed");
                }
            }
            Err(e) => {
                tracing::error!(workflow = %claim.id, error = %e, "quarantining failed");
            }
        }
    }

    async fn process(&self, claim: &Claim) -> Result<(), StoreError> {
        // When the lease was last extended: claimed just now. Renewed a third of the way through,
        // between steps as during a call, so a run of steps never outlasts it.
        let mut renewed = tokio::time::Instant::now();
        // The next command when the last commit journaled its intent (DESIGN.md's steps 3 and 1
        // in one transaction): performed with the state just committed, nothing loaded.
        let mut begun: Option<(WorkflowState, Command, u32, Option<ReadyMessage>)> = None;
        // The intent the claim journaled (`Claim::begun`): used when its command comes up under
        // this claim, with the key it was journaled under.
        let mut claimed = claim.begun.clone();
        // Bounded, so one busy workflow cannot hold its lease forever.
        for round in 0..MAX_STEPS_PER_CLAIM {
            // A begun command is the step in flight: its intent is journaled, so it is performed
            // and committed before a stopping runner lets go.
            if self.stopping.load(Ordering::Relaxed) && begun.is_none() {
                break;
            }
            if renewed.elapsed() >= self.renew_every() {
                self.store
                    .renew_lease(claim, self.clock.now(), self.config.lease)
                    .await?;
                renewed = tokio::time::Instant::now();
            }
            let now = self.clock.now();
            let (mut state, item, journaled, ready) = match begun.take() {
                Some((state, command, attempt, ready)) => (
                    state,
                    WorkItem::Command {
                        command,
                        attempts: attempt.saturating_sub(1),
                    },
                    Some(attempt),
                    ready,
                ),
                None => {
                    let work = self.store.load(claim, now).await?;
                    let Some(item) = work.item else { break };
                    (work.state, item, None, None)
                }
            };
            let Some(rt) = self.practices.get(&state.key.practice_id) else {
                tracing::error!(workflow = %state.id, "workflow of a practice that is not configured here; set aside for staff");
                let task = StaffTask {
                    kind: TaskKind::SystemError,
                    reason: format!(
                        "practice '{}' is not in this runner's configuration; add it or cancel the workflow",
                        state.key.practice_id
                    ),
                };
                return self
                    .store
                    .park(claim, now + chrono::Duration::hours(1), &task, now)
                    .await;
            };
            // What the call produced to record with the step (channels sent, disclosures).
            let mut facts = CallFacts {
                ready,
                ..CallFacts::default()
            };
            let (event, consumed) = match item {
                WorkItem::Inbox { id, event } => {
                    (self.with_refunds(rt, event).await, Consumed::Inbox(id))
                }
                WorkItem::Timer(kind) => (Event::TimerFired { timer: kind }, Consumed::Timer(kind)),
                WorkItem::Command { command, attempts } => {
                    // A staff retry of an attempt whose outcome is unknown keeps that attempt's
                    // key (`WorkflowState::key_seq`), so the call reconciles first.
                    let key = state.command_key(&command);
                    let by_claim = claimed
                        .take_if(|c| c.seq == command.seq && c.key == key)
                        .map(|c| c.attempt);
                    let attempt = match journaled.or(by_claim) {
                        Some(attempt) => attempt,
                        None => {
                            self.store
                                .begin_effect(claim, &command, attempts + 1, &key, now)
                                .await?
                        }
                    };
                    let performed = self
                        .perform_leased(claim, &mut renewed, rt, &state, &command, &key, &mut facts)
                        .await;
                    let now = self.clock.now();
                    let event = match performed {
                        Performed::Event(e) => *e,
                        Performed::Misconfigured(reason) => Event::EffectFailed {
                            action: command.action.clone(),
                            reason,
                        },
                        Performed::WaitUntil(at) => {
                            self.record_facts(&state.id, &facts).await;
                            self.store
                                .defer_command(
                                    claim,
                                    command.seq,
                                    attempt,
                                    "waiting for the texting window",
                                    at,
                                    now,
                                )
                                .await?;
                            continue;
                        }
                        Performed::Retry { kind, reason } => {
                            match self.config.backoff.delay(
                                attempt,
                                ErrorKind::TRANSIENT.max_of(kind),
                                rand::random::<f64>(),
                            ) {
                                Some(delay) => {
                                    self.record_facts(&state.id, &facts).await;
                                    let at =
                                        now + chrono::Duration::from_std(delay).unwrap_or_default();
                                    let outcome = format!("{}: {reason}", kind.label());
                                    self.store
                                        .defer_command(
                                            claim,
                                            command.seq,
                                            attempt,
                                            &outcome,
                                            at,
                                            now,
                                        )
                                        .await?;
                                    continue;
                                }
                                None => {
                                    self.gave_up(
                                        rt,
                                        &command,
                                        &key,
                                        format!("gave up after {attempt} attempts: {reason}"),
                                    )
                                    .await
                                }
                            }
                        }
                        Performed::Failed(reason) => failure_event(&command.action, reason),
                    };
                    let outcome = event.label().to_owned();
                    (
                        event,
                        Consumed::Command {
                            seq: command.seq,
                            attempt,
                            outcome,
                        },
                    )
                }
            };
            let label = event.label();
            let now = self.clock.now();
            let was_cancelled = state.status == Status::Cancelled;
            let transition = apply(&mut state, event, &rt.workflow, now);
            // The same transaction releases the claim when nothing is left due, or journals the
            // intent of the step's first command when it is next (commands run in sequence).
            let keep_going =
                round + 1 < MAX_STEPS_PER_CLAIM && !self.stopping.load(Ordering::Relaxed);
            let first = transition
                .commands
                .first()
                .filter(|_| keep_going)
                .map(|c| (c, state.command_key(c)));
            // A message sent next is composed now, so this commit journals its send too.
            let ready = match &first {
                Some((command, key)) => {
                    self.prepare_message(rt, &state, command, key, &facts).await
                }
                None => None,
            };
            let next = NextStep {
                begin: first.as_ref().map(|(c, key)| (*c, key.as_str())),
                sends: ready
                    .as_ref()
                    .map_or(&[], |r| r.prepared.journal.as_slice()),
                lease: self.config.lease,
                facts: facts.as_step(),
            };
            let committing = tokio::time::Instant::now();
            let after = match self
                .store
                .commit_step(claim, &state, consumed, label, &transition, Some(next), now)
                .await
            {
                Ok(after) => after,
                Err(e) => {
                    // The step is refused, but what the call did stands: record it alone.
                    self.record_facts(&state.id, &facts).await;
                    return Err(e);
                }
            };
            if state.status == Status::Cancelled && !was_cancelled {
                // A cancel or a withdrawn plan revokes every patient link issued for it. The
                // page refuses a cancelled workflow's links anyway, so a failure here is logged,
                // not retried.
                if let Err(e) = self.store.revoke_links(&state.id, now).await {
                    tracing::error!(workflow = %state.id, error = %e, "could not revoke patient links");
                }
            }
            self.stats.steps.fetch_add(1, Ordering::Relaxed);
            match after {
                AfterStep::Released => return Ok(()),
                AfterStep::Begun(attempt) => {
                    renewed = committing;
                    if let Some((command, _)) = first {
                        begun = Some((state, command.clone(), attempt, ready));
                    }
                }
                AfterStep::Journaled(intent) => {
                    renewed = committing;
                    claimed = Some(intent);
                }
                AfterStep::Due => renewed = committing,
                AfterStep::Kept => {}
            }
        }
        self.store.release(claim, self.clock.now()).await
    }

    /// Performs a command under the claim's lease: the lease is renewed every third of its
    /// length while the call is in flight, and the step is cut at `step_deadline` (the outcome
    /// is then unknown: retried later from the journal with the same key). A renewal refused
    /// (the lease ran out or moved) does not abandon the call, which may already have reached the
    /// other side; its result is refused at commit and the new owner repeats the step.
    #[allow(clippy::too_many_arguments)]
    async fn perform_leased(
        &self,
        claim: &Claim,
        renewed: &mut tokio::time::Instant,
        rt: &PracticeRuntime,
        state: &WorkflowState,
        command: &Command,
        key: &str,
        facts: &mut CallFacts,
    ) -> Performed {
        let deadline = self.config.step_deadline;
        let call = tokio::time::timeout(deadline, self.perform(rt, state, command, key, facts));
        tokio::pin!(call);
        let every = self.renew_every();
        let mut renew = tokio::time::interval_at(*renewed + every, every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held = true;
        loop {
            tokio::select! {
                done = &mut call => {
                    return done.unwrap_or_else(|_| Performed::Retry {
                        kind: ErrorKind::Indeterminate,
                        reason: format!(
                            "the step passed its {} s deadline; its outcome is unknown",
                            deadline.as_secs_f64()
                        ),
                    });
                }
                _ = renew.tick(), if held => {
                    match self.store.renew_lease(claim, self.clock.now(), self.config.lease).await {
                        Ok(()) => *renewed = tokio::time::Instant::now(),
                        Err(StoreError::LeaseLost(_)) => {
                            held = false;
                            tracing::warn!(workflow = %claim.id, "lease lost while a call was in flight; its result will not be committed");
                        }
                        // A renewal that failed for another reason is tried again next tick;
                        // the lease has two more thirds to run.
                        Err(e) => tracing::warn!(workflow = %claim.id, error = %e, "renewing the lease failed"),
                    }
                }
            }
        }
    }

    /// Writes a call's audit lines on their own, one transaction each, when no step commit
    /// carries them (the step was deferred or its commit refused). Failures are logged: the call
    /// is done.
    async fn record_facts(&self, workflow: &WorkflowId, facts: &CallFacts) {
        let now = self.clock.now();
        for line in &facts.audit {
            if let Err(e) = self
                .store
                .append_audit(workflow, "runner", line.kind, &line.detail, now)
                .await
            {
                tracing::error!(workflow = %workflow, error = %e, "could not record a disclosure");
            }
        }
        // A channel sent and not journaled `sent` reads `attempting`: whoever repeats the step
        // looks the text up at Twilio before any resend and never resends the email.
    }

    fn renew_every(&self) -> Duration {
        (self.config.lease / 3).max(Duration::from_millis(10))
    }

    pub(crate) fn count_call(&self, started: Instant) {
        self.stats.external_calls.fetch_add(1, Ordering::Relaxed);
        self.stats
            .external_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, ExternalError>>,
    ) -> Result<T, ExternalError> {
        let started = Instant::now();
        let r = call.await;
        self.count_call(started);
        r
    }

    async fn contact(
        &self,
        rt: &PracticeRuntime,
        state: &WorkflowState,
    ) -> Result<PatientContact, Performed> {
        match self.store.patient(&rt.profile.id, &state.patient_id).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(Performed::Failed(
                "the patient's contact data is missing; reload the plan".into(),
            )),
            Err(e) => Err(Performed::Retry {
                kind: ErrorKind::TRANSIENT,
                reason: format!("store: {e}"),
            }),
        }
    }

    fn lender<'a>(rt: &'a PracticeRuntime, id: &LenderId) -> Result<&'a SharedProvider, Performed> {
        rt.lenders.get(id).ok_or_else(|| {
            Performed::Misconfigured(format!(
                "lender '{id}' is in the practice's lender order but not configured; configure it or remove it from the order"
            ))
        })
    }

    async fn perform(
        &self,
        rt: &PracticeRuntime,
        state: &WorkflowState,
        command: &Command,
        key: &str,
        facts: &mut CallFacts,
    ) -> Performed {
        match self.perform_inner(rt, state, command, key, facts).await {
            Ok(p) | Err(p) => p,
        }
    }

    async fn perform_inner(
        &self,
        rt: &PracticeRuntime,
        state: &WorkflowState,
        command: &Command,
        key: &str,
        facts: &mut CallFacts,
    ) -> Result<Performed, Performed> {
        let classify = |e: ExternalError| match e.kind() {
            ErrorKind::Permanent => Performed::Failed(e.to_string()),
            kind => Performed::Retry {
                kind,
                reason: e.to_string(),
            },
        };
        // One reference per attempt (`{workflow}-{seq}-{lender}`): a fresh session after a lapse
        // is a new command, so a new session at the lender; a repeat of this command (a retry, a
        // crash, a staff retry of an unknown outcome) sends the same reference and finds the
        // session it opened.
        let reference = |lender: &LenderId| {
            chairside_workflow::application_reference(&state.id, lender, state.key_seq(command.seq))
        };
        Ok(match &command.action {
            Action::LoadPlan if state.intake.is_some() => self.load_intake(rt, state).await?,
            Action::EnsurePracticePatient => {
                let contact = self.contact(rt, state).await?;
                match self
                    .timed(rt.pms.ensure_patient(&contact))
                    .await
                    .map_err(classify)?
                {
                    EnsuredPatient::Matched(patient_id) => {
                        Performed::event(Event::PracticePatientReady {
                            patient_id,
                            created: false,
                        })
                    }
                    EnsuredPatient::Created(patient_id) => {
                        Performed::event(Event::PracticePatientReady {
                            patient_id,
                            created: true,
                        })
                    }
                    EnsuredPatient::NotSupported { reason } => {
                        let intake = state.intake.as_ref().map_or("", |l| l.id.as_str());
                        let plan = chairside_workflow::intake::case_plan(state)
                            .map(|p| {
                                format!(" and its treatment plan \"{}\" ({})", p.heading, p.summary)
                            })
                            .unwrap_or_default();
                        Performed::event(Event::PracticePatientForStaff {
                            reason: format!(
                                "create this patient in the practice system from intake {intake} \
                                 (its record is on the dashboard's intake page){plan}, then mark \
                                 this task handled: {reason}"
                            ),
                        })
                    }
                }
            }
            Action::WritePracticePlan => {
                let (Some(patient), Some(plan)) = (
                    state
                        .intake
                        .as_ref()
                        .and_then(|l| l.practice_patient.as_ref()),
                    chairside_workflow::intake::case_plan(state),
                ) else {
                    return Err(Performed::Failed(
                        "no practice-system patient or price for the case plan".into(),
                    ));
                };
                let marker = chairside_workflow::intake::plan_marker(&state.id);
                match self
                    .timed(rt.pms.ensure_plan(patient, &marker, &plan))
                    .await
                    .map_err(classify)?
                {
                    PlanWrite::Written(plan_id) => Performed::event(Event::PracticePlanWritten {
                        plan_id,
                        created: true,
                    }),
                    PlanWrite::AlreadyWritten(plan_id) => {
                        Performed::event(Event::PracticePlanWritten {
                            plan_id,
                            created: false,
                        })
                    }
                    PlanWrite::NotSupported { reason } => {
                        Performed::event(Event::PracticePlanForStaff {
                            reason: format!(
                                "enter this treatment plan on the patient ({} in the practice \
                                 system): \"{}\", {}, then mark this task handled: {reason}",
                                patient, plan.heading, plan.summary
                            ),
                        })
                    }
                }
            }
            Action::LoadPlan => {
                let summary = PlanSummary {
                    plan_id: state.key.plan_id.clone(),
                    revision: state.key.revision.clone(),
                    patient_id: state.patient_id.clone(),
                    state: PlanState::Accepted,
                    accepted_at: Some(state.accepted_at),
                };
                let plan = match self.timed(rt.pms.plan(&summary)).await {
                    Ok(p) => p,
                    Err(e) if e.kind() == ErrorKind::Permanent => {
                        return Ok(Performed::event(Event::PlanUnreadable {
                            reason: e.to_string(),
                        }));
                    }
                    Err(e) => return Err(classify(e)),
                };
                let contact = match self.timed(rt.pms.patient(&state.patient_id)).await {
                    Ok(c) => c,
                    Err(e) if e.kind() == ErrorKind::Permanent => {
                        return Ok(Performed::event(Event::PlanUnreadable {
                            reason: e.to_string(),
                        }));
                    }
                    Err(e) => return Err(classify(e)),
                };
                // Checked against what was asked and bounded before anyone is contacted; names
                // and contacts are stored cleaned of control characters.
                let limits = &self.detection.limits;
                if let Err(problem) = financing_core::check::check_plan(
                    &plan,
                    &state.key.plan_id,
                    &state.patient_id,
                    limits,
                ) {
                    return Ok(Performed::event(Event::PlanUnreadable {
                        reason: problem.to_string(),
                    }));
                }
                let contact =
                    match financing_core::check::clean_contact(&contact, &state.patient_id, limits)
                    {
                        Ok(c) => c,
                        Err(problem) => {
                            return Ok(Performed::event(Event::PlanUnreadable {
                                reason: format!("the patient record: {problem}"),
                            }));
                        }
                    };
                // The contact and the practice's consent attestation are stored by this step's
                // commit (`StepFacts`), not by a transaction each during the call.
                facts.consent = self.attestation(rt, &contact).await?;
                let policy = rt.policy_for(Some(&contact));
                let patient_facts = PatientFacts {
                    reachable: contact.is_reachable(),
                    state: contact.state(),
                    lookup_allowed: policy.cardholder_lookup_allowed(),
                    financing_not_before: policy
                        .financing_not_before(state.accepted_at, plan.involves_sedation()),
                };
                facts.patient = Some(contact);
                Performed::event(Event::PlanLoaded {
                    plan,
                    facts: patient_facts,
                })
            }
            Action::LookupCardholder { lender, amount } => {
                let provider = Self::lender(rt, lender)?;
                let contact = self.contact(rt, state).await?;
                let request = rt.policy_for(Some(&contact)).financing_request(
                    reference(lender),
                    rt.location(),
                    *amount,
                    &contact,
                );
                let found = self
                    .timed(provider.lookup_cardholder(&request))
                    .await
                    .map_err(classify)?;
                if provider.poll_schedule().staff_decides_within.is_none() {
                    // A link-only lender has no lookup: nothing reached it.
                    Self::disclosed(facts, lender, "cardholder lookup");
                }
                Performed::event(Event::CardholderLookedUp {
                    lender: lender.clone(),
                    found,
                })
            }
            Action::StartApplication { lender, amount } => {
                let provider = Self::lender(rt, lender)?;
                let contact = self.contact(rt, state).await?;
                let mut request = rt.policy_for(Some(&contact)).financing_request(
                    reference(lender),
                    rt.location(),
                    *amount,
                    &contact,
                );
                // The lender gets an opaque reference, never a patient token: `/r/{reference}`
                // is exchanged for a fresh link when the patient comes back.
                let reference = match self.store.return_reference(&state.id).await {
                    Ok(r) => r,
                    Err(e) => {
                        return Err(Performed::Retry {
                            kind: ErrorKind::TRANSIENT,
                            reason: format!("return reference: {e}"),
                        });
                    }
                };
                request.return_url = Some(rt.patient_links.return_link(&reference));
                let decision = match self.timed(provider.start_application(&request)).await {
                    Ok(d) => d,
                    Err(e) if e.kind() == ErrorKind::Permanent => {
                        return Ok(Performed::event(Event::LenderFailed {
                            lender: lender.clone(),
                            reason: e.to_string(),
                        }));
                    }
                    Err(e) => return Err(classify(e)),
                };
                if provider.poll_schedule().staff_decides_within.is_none() {
                    Self::disclosed(
                        facts,
                        lender,
                        if request.prefill.is_some() {
                            "application (prefilled)"
                        } else {
                            "application (amount only)"
                        },
                    );
                } else {
                    // A link-only lender gets nothing from Chairside: the patient applies on the
                    // lender's own page from the practice's link.
                    Self::disclosed(facts, lender, "nothing (the practice's link only)");
                }
                match decision {
                    Decision::ApplicationStarted {
                        link,
                        lender_reference,
                        expires_at,
                    } => Performed::event(Event::ApplicationOpened {
                        lender: lender.clone(),
                        handle: ApplicationHandle {
                            reference: request.reference,
                            lender_reference,
                            location: request.location,
                            amount: *amount,
                        },
                        link: link.to_string(),
                        expires_at,
                    }),
                    decision => Performed::event(Event::LenderDecided {
                        lender: lender.clone(),
                        decision,
                    }),
                }
            }
            Action::PollApplication { lender, handle } => {
                let provider = Self::lender(rt, lender)?;
                match self.timed(provider.application_status(handle)).await {
                    Ok(decision) => Performed::event(Event::LenderDecided {
                        lender: lender.clone(),
                        decision,
                    }),
                    Err(e) if e.kind() == ErrorKind::Permanent => {
                        Performed::event(Event::LenderFailed {
                            lender: lender.clone(),
                            reason: e.to_string(),
                        })
                    }
                    Err(e) => return Err(classify(e)),
                }
            }
            Action::CancelApplication { lender, handle } => {
                let provider = Self::lender(rt, lender)?;
                self.timed(provider.cancel_application(handle))
                    .await
                    .map_err(classify)?;
                Performed::event(Event::Undone {
                    action: command.action.label().into(),
                })
            }
            Action::EnsureCustomer => {
                let contact = self.contact(rt, state).await?;
                let customer = self
                    .timed(rt.payments.ensure_customer(&rt.profile.id, &contact, key))
                    .await
                    .map_err(classify)?;
                Performed::event(Event::CustomerReady {
                    customer_id: customer,
                })
            }
            // A co-pay's pay link is the same single-use Checkout Session as the deposit's, for
            // its own amount, under its command's own key.
            Action::CreateDepositLink { amount } | Action::CreatePayLink { amount, .. } => {
                let customer = state
                    .stripe
                    .customer_id
                    .as_deref()
                    .ok_or_else(|| Performed::Failed("no Stripe customer".into()))?;
                let (session_id, url) = self
                    .timed(rt.payments.create_deposit_link(
                        &rt.profile.id,
                        customer,
                        *amount,
                        &state.id,
                        key,
                    ))
                    .await
                    .map_err(classify)?;
                Performed::event(match &command.action {
                    Action::CreatePayLink { purpose, .. } => Event::PayLinkCreated {
                        purpose: purpose.clone(),
                        session_id,
                        url,
                    },
                    _ => Event::DepositLinkCreated { session_id, url },
                })
            }
            Action::ReissueDepositLink { amount, previous } => {
                let customer = state
                    .stripe
                    .customer_id
                    .as_deref()
                    .ok_or_else(|| Performed::Failed("no Stripe customer".into()))?;
                // Never a second live link, never a paid or expired one again: ask Stripe first.
                if let Some(previous) = previous {
                    match self
                        .timed(rt.payments.deposit_link_state(previous))
                        .await
                        .map_err(classify)?
                    {
                        DepositLinkState::Open { url } => {
                            return Ok(Performed::event(Event::DepositLinkCreated {
                                session_id: previous.clone(),
                                url,
                            }));
                        }
                        DepositLinkState::Paid => {
                            return Ok(Performed::event(Event::Payment(
                                PaymentFact::CheckoutCompleted {
                                    session_id: previous.clone(),
                                },
                            )));
                        }
                        DepositLinkState::Dead => {}
                    }
                }
                let (session_id, url) = self
                    .timed(rt.payments.create_deposit_link(
                        &rt.profile.id,
                        customer,
                        *amount,
                        &state.id,
                        key,
                    ))
                    .await
                    .map_err(classify)?;
                Performed::event(Event::DepositLinkCreated { session_id, url })
            }
            Action::CreateInstallmentSchedule {
                offer,
                payment_method,
            } => {
                let customer = state
                    .stripe
                    .customer_id
                    .as_deref()
                    .ok_or_else(|| Performed::Failed("no Stripe customer".into()))?;
                let schedule_id = match payment_method {
                    // Card on file: the schedule charges the saved card.
                    Some(pm) => {
                        self.timed(rt.payments.create_schedule_on_card(
                            &rt.profile.id,
                            customer,
                            offer,
                            &state.id,
                            pm,
                            key,
                        ))
                        .await
                    }
                    None => {
                        self.timed(rt.payments.create_schedule(
                            &rt.profile.id,
                            customer,
                            offer,
                            &state.id,
                            key,
                        ))
                        .await
                    }
                }
                .map_err(classify)?;
                Performed::event(Event::ScheduleCreated { schedule_id })
            }
            Action::SetScheduleCard {
                schedule_id,
                payment_method,
            } => {
                self.timed(
                    rt.payments
                        .set_schedule_card(schedule_id, payment_method, key),
                )
                .await
                .map_err(classify)?;
                Performed::event(Event::ScheduleCardSet {
                    schedule_id: schedule_id.clone(),
                })
            }
            Action::CancelSchedule { schedule_id } => {
                self.timed(rt.payments.cancel_schedule(schedule_id, key))
                    .await
                    .map_err(classify)?;
                Performed::event(Event::Undone {
                    action: command.action.label().into(),
                })
            }
            Action::ExpireDepositLink { session_id } => {
                self.timed(rt.payments.expire_deposit_link(session_id, key))
                    .await
                    .map_err(classify)?;
                Performed::event(Event::Undone {
                    action: command.action.label().into(),
                })
            }
            Action::SendMessage { message } => {
                return self.send_message(rt, state, message, key, facts).await;
            }
            Action::SettleWithLender { lender, amount } => {
                // The purchase carries our reference: a repeat after a lost answer finds it
                // instead of charging twice.
                let provider = Self::lender(rt, lender)?;
                let request = SettlementRequest {
                    reference: reference(lender),
                    location: rt.location(),
                    amount: *amount,
                };
                let settlement = self
                    .timed(provider.settle(&request))
                    .await
                    .map_err(classify)?;
                Performed::event(Event::LenderSettled {
                    lender: lender.clone(),
                    settlement,
                })
            }
            Action::CreateCardSetupLink => {
                let customer = state
                    .stripe
                    .customer_id
                    .as_deref()
                    .ok_or_else(|| Performed::Failed("no Stripe customer".into()))?;
                let currency = state.split.map_or(financing_core::Currency::Usd, |s| {
                    s.patient_portion.currency()
                });
                let (session_id, url) = self
                    .timed(rt.payments.create_card_setup_link(
                        &rt.profile.id,
                        customer,
                        currency,
                        &state.id,
                        key,
                    ))
                    .await
                    .map_err(classify)?;
                Performed::event(Event::CardSetupLinkCreated { session_id, url })
            }
            Action::ReadSavedCard { setup_intent } => {
                let payment_method = self
                    .timed(rt.payments.saved_card(setup_intent))
                    .await
                    .map_err(classify)?;
                Performed::event(Event::CardSaved { payment_method })
            }
            Action::ChargeCard { purpose, amount } => {
                let (Some(customer), Some(payment_method)) = (
                    state.stripe.customer_id.as_deref(),
                    state.stripe.payment_method.as_deref(),
                ) else {
                    return Err(Performed::Failed("no saved card to charge".into()));
                };
                let request = CardChargeRequest {
                    practice: &rt.profile.id,
                    customer,
                    payment_method,
                    amount: *amount,
                    workflow: &state.id,
                    purpose,
                    key,
                };
                match self
                    .timed(rt.payments.charge_card(&request))
                    .await
                    .map_err(classify)?
                {
                    CardOutcome::Charged { payment_intent } => {
                        Performed::event(Event::CardCharged {
                            purpose: purpose.clone(),
                            payment_intent,
                            amount: *amount,
                        })
                    }
                    CardOutcome::Declined {
                        payment_intent,
                        reason,
                        authentication,
                    } => Performed::event(Event::CardDeclined {
                        purpose: purpose.clone(),
                        payment_intent,
                        reason,
                        authentication,
                    }),
                }
            }
            Action::WriteLedgerNote { note } => {
                let Some(patient) = state.ledger_patient() else {
                    return Err(Performed::Failed(
                        "the intake's patient is not in the practice system yet".into(),
                    ));
                };
                if let NoteKind::Payment { stripe_id, amount } = note {
                    // A payment goes into the ledger as a payment where the system takes one
                    // (keyed by the Stripe payment: a repeat finds it), else as a note.
                    let text = ledger_note(state, note, self.clock.now());
                    let posted = self
                        .timed(rt.pms.post_payment(patient, stripe_id, *amount, &text))
                        .await
                        .map_err(classify)?;
                    if posted != PaymentPosting::NotSupported {
                        return Ok(Performed::event(Event::NoteWritten {
                            note: note.clone(),
                            at: self.clock.now(),
                        }));
                    }
                }
                if let NoteKind::Reversal {
                    stripe_id,
                    amount,
                    dispute: false,
                    reversed: Some(reversed),
                    refund_id,
                } = note
                {
                    // A refund is reversed in the ledger where the system takes payments (once
                    // per refund: a repeat finds its marker), else it is a note. Keyed by
                    // Stripe's refund id when it was listed, else by the charge's total.
                    let text = ledger_note(state, note, self.clock.now());
                    let key = refund_id.clone().unwrap_or_else(|| {
                        chairside_workflow::refunds::refund_key(stripe_id, *amount)
                    });
                    let posted = self
                        .timed(rt.pms.post_refund(patient, &key, *reversed, &text))
                        .await
                        .map_err(classify)?;
                    if posted != PaymentPosting::NotSupported {
                        return Ok(Performed::event(Event::NoteWritten {
                            note: note.clone(),
                            at: self.clock.now(),
                        }));
                    }
                }
                let marker = note_marker(state, state.key_seq(command.seq));
                let existing = self
                    .timed(rt.pms.find_note(patient, &marker))
                    .await
                    .map_err(classify)?;
                if existing.is_none() {
                    let text = ledger_note(state, note, self.clock.now());
                    self.timed(rt.pms.write_note(patient, &marker, &text))
                        .await
                        .map_err(classify)?;
                }
                Performed::event(Event::NoteWritten {
                    note: note.clone(),
                    at: self.clock.now(),
                })
            }
        })
    }

    /// An intake workflow's plan: the proposed amount from the intake and the details the patient
    /// typed (stored under the intake's patient id), checked as a detected plan's are.
    async fn load_intake(
        &self,
        rt: &PracticeRuntime,
        state: &WorkflowState,
    ) -> Result<Performed, Performed> {
        let store_err = |e: crate::store::StoreError| Performed::Retry {
            kind: ErrorKind::TRANSIENT,
            reason: format!("store: {e}"),
        };
        let intake_id = state.intake.as_ref().map_or("", |l| l.id.as_str());
        let row = self
            .store
            .intake(&rt.profile.id, intake_id)
            .await
            .map_err(store_err)?;
        let Some(amount) = row.and_then(|r| r.amount) else {
            return Ok(Performed::event(Event::PlanUnreadable {
                reason: format!("intake {intake_id} has no proposed amount"),
            }));
        };
        let Some(contact) = self
            .store
            .patient(&rt.profile.id, &state.patient_id)
            .await
            .map_err(store_err)?
        else {
            return Ok(Performed::event(Event::PlanUnreadable {
                reason: format!("intake {intake_id} has no patient details"),
            }));
        };
        let plan = chairside_workflow::intake::intake_plan(
            intake_id,
            amount,
            state.accepted_at,
            state.treatment_date,
        );
        let limits = &self.detection.limits;
        if let Err(problem) =
            financing_core::check::check_plan(&plan, &state.key.plan_id, &state.patient_id, limits)
        {
            return Ok(Performed::event(Event::PlanUnreadable {
                reason: problem.to_string(),
            }));
        }
        let policy = rt.policy_for(Some(&contact));
        let facts = PatientFacts {
            reachable: contact.is_reachable(),
            state: contact.state(),
            lookup_allowed: policy.cardholder_lookup_allowed(),
            financing_not_before: policy.financing_not_before(state.accepted_at, false),
        };
        Ok(Performed::event(Event::PlanLoaded { plan, facts }))
    }

    /// The practice system's word on SMS consent as the practice's attestation for the number's
    /// consent history ([`crate::consent::attestation_entry`]), when it adds to what is held:
    /// recorded by the step's commit ([`StepFacts::consent`]).
    async fn attestation(
        &self,
        rt: &PracticeRuntime,
        contact: &PatientContact,
    ) -> Result<Option<ConsentFact>, Performed> {
        let Some(phone) = contact.mobile_phone.as_deref() else {
            return Ok(None);
        };
        let held = self
            .store
            .sms_consent(&rt.profile.id, phone)
            .await
            .map_err(|e| Performed::Retry {
                kind: ErrorKind::TRANSIENT,
                reason: format!("consent record: {e}"),
            })?;
        Ok(crate::consent::attestation_entry(
            rt.pms.source(),
            &contact.sms_consent,
            held.as_ref(),
            self.clock.now(),
        )
        .map(|entry| ConsentFact {
            phone: phone.to_owned(),
            entry,
        }))
    }

    /// Records a disclosure to a lender in the audit trail (HIPAA §164.312(b), Reg B §1002.9(g)):
    /// written with the step's commit ([`StepFacts`]).
    fn disclosed(facts: &mut CallFacts, lender: &LenderId, what: &str) {
        facts.audit.push(AuditLine {
            kind: "disclosure",
            detail: format!("{what} sent to {lender}"),
        });
    }

    /// What message `message` of `state` says and to whom, on which channels: the contact, the
    /// consent record and a fresh page link read now. `Err` carries what the step performs
    /// instead of a send (a wait for the texting window, an undeliverable message, a retry).
    async fn compose(
        &self,
        rt: &PracticeRuntime,
        state: &WorkflowState,
        message: &MessageKind,
    ) -> Result<Composed, Result<Performed, Performed>> {
        let contact = self.contact(rt, state).await.map_err(Err)?;
        let now = self.clock.now();
        // Every message carries a freshly issued link at the current generation: a patient whose
        // link expired gets a working one with the next message.
        let generation = match self.store.link_generation(&state.id).await {
            Ok(g) => g,
            Err(e) => {
                return Err(Err(Performed::Retry {
                    kind: ErrorKind::TRANSIENT,
                    reason: format!("link generation: {e}"),
                }));
            }
        };
        let page_link = rt
            .patient_links
            .link(&state.id, generation, now)
            .to_string();
        let lender_name = |id: &LenderId| {
            rt.lenders
                .get(id)
                .map_or_else(|| id.to_string(), |p| p.display_name().to_owned())
        };
        let content = match message {
            // The application link and its reminders go to the patient page, never straight to
            // the lender: the page shows the notices the patient's state requires before the
            // lender's link, and where the application stands.
            MessageKind::ApplicationLink { lender, .. } => MessageContent::ApplicationLink {
                lender_name: lender_name(lender),
                link: page_link.clone(),
            },
            MessageKind::Reminder { lender, .. } => MessageContent::Reminder {
                lender_name: lender_name(lender),
                link: page_link.clone(),
            },
            MessageKind::PaymentFailed => MessageContent::PaymentFailed {
                page_link,
                amount: state.failed_payment_amount(),
            },
            // The fresh pay link is on the patient page, naming the deposit it collects.
            MessageKind::PayLinkReissued => {
                match state
                    .result
                    .as_ref()
                    .map(|r| r.deposit)
                    .filter(|d| !d.is_zero())
                {
                    Some(deposit) => MessageContent::PayLinkReissued { page_link, deposit },
                    None => {
                        return Err(Ok(Performed::Failed(
                            "no deposit for the fresh pay link".into(),
                        )));
                    }
                }
            }
            MessageKind::FinancingSummary => match summary(state, page_link, now, rt.time_zone()) {
                Some(s) => MessageContent::FinancingSummary(Box::new(s)),
                None => {
                    return Err(Ok(Performed::Failed(
                        "the summary has no priced plan".into(),
                    )));
                }
            },
            MessageKind::InHouseOffer { .. } => {
                match summary(state, page_link, now, rt.time_zone()) {
                    Some(s) if s.installments.is_some() => {
                        MessageContent::InHouseOffer(Box::new(s))
                    }
                    _ => {
                        return Err(Ok(Performed::Failed(
                            "the in-house offer has no plan".into(),
                        )));
                    }
                }
            }
        };
        // The consent record decides, not what the practice system said on the last read: it
        // holds the practice's attestation, the patient's own opt-in and any withdrawal.
        let mut contact = contact;
        let phone = contact.mobile_phone.clone();
        let (sms_opted_out, sms_consent) = match phone.as_deref() {
            Some(phone) => match self.store.sms_consent(&rt.profile.id, phone).await {
                Ok(Some(record)) => (record.opted_out, record.to_sms_consent()),
                Ok(None) => (false, SmsConsent::None),
                // The record not answering: never text on an unknown, and never call the patient
                // unreachable on one either (a store hiccup is not an opt-out); try again later.
                Err(e) => {
                    return Err(Err(Performed::Retry {
                        kind: ErrorKind::TRANSIENT,
                        reason: format!("sms consent: {e}"),
                    }));
                }
            },
            None => (true, SmsConsent::None),
        };
        contact.sms_consent = sms_consent;
        let phone = phone.as_deref();
        let facts = DeliveryFacts {
            has_usable_email: is_usable_email(contact.email.as_deref()),
            has_phone: phone.is_some(),
            sms_opted_out,
            sms_verdict: rt.policy_for(Some(&contact)).sms_verdict(
                &contact,
                SmsPurpose::Informational,
                now,
            ),
        };
        let channels = match plan_delivery(&facts) {
            Delivery::Send { channels } => channels,
            Delivery::WaitUntil(at) => return Err(Ok(Performed::WaitUntil(at))),
            Delivery::Undeliverable(why) => {
                return Err(Ok(Performed::event(Event::MessageUndeliverable {
                    message: message.clone(),
                    reason: why.to_string(),
                })));
            }
        };
        Ok(Composed {
            contact,
            content,
            channels,
        })
    }

    /// Composes the message a step's next command sends and has the messenger make it ready,
    /// so the commit that journals the command's intent also journals the send (one
    /// transaction instead of two). `None` when anything is not as a plain send would find it
    /// (the step's own facts not stored yet, a wait, a failure, a record already there): the
    /// command then performs as any other.
    async fn prepare_message(
        &self,
        rt: &PracticeRuntime,
        state: &WorkflowState,
        command: &Command,
        key: &str,
        facts: &CallFacts,
    ) -> Option<ReadyMessage> {
        let Action::SendMessage { message } = &command.action else {
            return None;
        };
        // The contact and consent this step read are stored by its commit: a message composed
        // before it would not see them.
        if facts.patient.is_some() || facts.consent.is_some() {
            return None;
        }
        let composed = self.compose(rt, state, message).await.ok()?;
        let prepared = rt
            .messenger
            .prepare(
                &rt.profile,
                &composed.contact,
                &composed.content,
                &composed.channels,
                key,
            )
            .await
            .ok()??;
        Some(ReadyMessage { composed, prepared })
    }

    async fn send_message(
        &self,
        rt: &PracticeRuntime,
        state: &WorkflowState,
        message: &MessageKind,
        key: &str,
        call_facts: &mut CallFacts,
    ) -> Result<Performed, Performed> {
        // Journaled by the commit before (`prepare_message`): sent as it was composed.
        let (composed, prepared) = match call_facts.ready.take() {
            Some(ReadyMessage { composed, prepared }) => (composed, Some(prepared)),
            None => match self.compose(rt, state, message).await {
                Ok(composed) => (composed, None),
                Err(done) => return done,
            },
        };
        let Composed {
            contact,
            content,
            channels,
        } = composed;
        let classify = |e: ExternalError| match e.kind() {
            ErrorKind::Permanent => Performed::Failed(e.to_string()),
            kind => Performed::Retry {
                kind,
                reason: e.to_string(),
            },
        };
        let delivery = match prepared {
            Some(prepared) => {
                self.timed(rt.messenger.send_prepared(
                    &rt.profile,
                    &contact,
                    &content,
                    &channels,
                    key,
                    prepared,
                ))
                .await
            }
            None => {
                self.timed(
                    rt.messenger
                        .send(&rt.profile, &contact, &content, &channels, key),
                )
                .await
            }
        }
        .map_err(classify)?;
        // The journal's `sent` records go with the step's commit.
        call_facts
            .sent
            .extend(
                delivery
                    .sent
                    .into_iter()
                    .map(|(channel, provider_id)| SentChannel {
                        key: key.to_owned(),
                        channel: match channel {
                            Channel::Email => "email",
                            Channel::Sms => "sms",
                        },
                        provider_id,
                    }),
            );
        Ok(Performed::event(Event::MessageSent {
            message: message.clone(),
        }))
    }

    /// The event for a step given up on after its last retry: [`indeterminate_event`], except
    /// for a message whose email went out while its text kept failing (`Messenger::went_out`).
    /// The patient has that message, as when a text is refused outright after its email.
    async fn gave_up(
        &self,
        rt: &PracticeRuntime,
        command: &Command,
        key: &str,
        reason: String,
    ) -> Event {
        if let Action::SendMessage { message } = &command.action {
            match rt.messenger.went_out(key).await {
                Ok(true) => {
                    tracing::warn!(
                        message = message.label(),
                        "text given up after every retry; the email went out"
                    );
                    return Event::MessageSent {
                        message: message.clone(),
                    };
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "message journal unreadable; the message is reported undeliverable"
                ),
            }
        }
        indeterminate_event(command, reason)
    }

    /// Runs poll + ticks until nothing is due within `horizon` of the clock, or `max_rounds`.
    /// For the demo and tests; `run` is the long-running loop.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn run_until_idle(&self, max_rounds: usize) -> Result<(), RunnerError> {
        for _ in 0..max_rounds {
            self.poll().await?;
            if self.tick().await? == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}

trait MaxOf {
    fn max_of(self, other: ErrorKind) -> ErrorKind;
}

impl MaxOf for ErrorKind {
    /// Indeterminate outcomes are retried like transient ones: every perform is written so that a
    /// repeat reconciles (the same Stripe idempotency key, a marker lookup before a note, the same
    /// partner transaction id at a lender).
    fn max_of(self, other: ErrorKind) -> ErrorKind {
        match other {
            ErrorKind::Transient { .. } => other,
            _ => self,
        }
    }
}

/// The event for a step the runner gave up on after retrying: its last outcome was transient or
/// unknown, so the other side may have acted. Stripe and ledger-note steps become
/// [`Event::EffectIndeterminate`], whose staff retry reuses the attempt's key and marker; a
/// status read of a live application becomes [`Event::LenderUnanswered`] (the application
/// stands and is read again at the next poll); other lender and message steps are reported as
/// for a definite failure (a lender call reuses its partner reference; a message keeps its own
/// key).
fn indeterminate_event(command: &Command, reason: String) -> Event {
    match &command.action {
        Action::PollApplication { lender, .. } => Event::LenderUnanswered {
            lender: lender.clone(),
            reason,
        },
        Action::EnsureCustomer
        | Action::CreateDepositLink { .. }
        | Action::CreatePayLink { .. }
        | Action::ReissueDepositLink { .. }
        | Action::CreateInstallmentSchedule { .. }
        | Action::SetScheduleCard { .. }
        | Action::CancelSchedule { .. }
        | Action::ExpireDepositLink { .. }
        | Action::CreateCardSetupLink
        | Action::ChargeCard { .. }
        | Action::WriteLedgerNote { .. }
        | Action::EnsurePracticePatient
        | Action::WritePracticePlan => Event::EffectIndeterminate {
            action: command.action.clone(),
            seq: command.seq,
            reason,
        },
        action => failure_event(action, reason),
    }
}

fn failure_event(action: &Action, reason: String) -> Event {
    match action {
        Action::LoadPlan => Event::PlanUnreadable { reason },
        Action::LookupCardholder { lender, .. }
        | Action::StartApplication { lender, .. }
        | Action::PollApplication { lender, .. } => Event::LenderFailed {
            lender: lender.clone(),
            reason,
        },
        Action::SendMessage { message } => Event::MessageUndeliverable {
            message: message.clone(),
            reason,
        },
        _ => Event::EffectFailed {
            action: action.clone(),
            reason,
        },
    }
}

#[cfg(test)]
mod lag_tests {
    use super::*;

    #[test]
    fn the_lag_histogram_reports_bounds_means_and_what_came_after_a_snapshot() {
        let h = LagHistogram::default();
        h.record(Duration::from_micros(300)); // under 1 ms
        let before = h.snapshot();
        for ms in [3, 3, 40, 700] {
            h.record(Duration::from_millis(ms));
        }
        h.record(Duration::from_secs(9)); // past the last bound
        let all = h.snapshot();
        let run = all.since(&before);

        assert_eq!(all.count, 6);
        assert_eq!(run.count, 5);
        assert_eq!(run.sum_micros, (3 + 3 + 40 + 700 + 9_000) * 1_000);
        assert!((run.mean_ms() - 1_949.2).abs() < 1e-9);
        assert_eq!(run.max_micros, 9_000_000);
        // Two of five under 5 ms; the median under 50 ms; the slowest in no bucket.
        assert_eq!(run.at_most_ms(0.4), Some(5));
        assert_eq!(run.at_most_ms(0.5), Some(50));
        assert_eq!(run.at_most_ms(0.8), Some(1_000));
        assert_eq!(run.at_most_ms(1.0), None);
        assert_eq!(run.at_least_ms(100), 2);
        assert_eq!(run.at_least_ms(7), 0, "not a bucket bound");
        assert_eq!(run.plus(&before).count, 6);
        assert_eq!(LagSnapshot::default().at_most_ms(0.5), None);
        assert_eq!(LagSnapshot::default().mean_ms(), 0.0);
    }
}
