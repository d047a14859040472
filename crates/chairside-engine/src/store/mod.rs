//! Durable state: the [`Store`] trait and its SQLite implementation.
//!
//! The trait is written so a PostgreSQL implementation (`FOR UPDATE SKIP LOCKED` claims, leases by
//! the database clock) can follow without changing callers: every method is one transaction, and
//! every write made on behalf of a claimed workflow checks the claim's fencing epoch.

pub mod crypto;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{PatientContact, PatientId, PracticeId};
use serde::Serialize;

pub use sqlite::SqliteStore;

use chairside_workflow::machine::Transition;
use chairside_workflow::{Command, Event, StaffTask, Status, TimerKind, WorkflowId, WorkflowState};

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored document did not decode.
    #[error("stored data could not be decoded: {0}")]
    Decode(#[from] serde_json::Error),
    /// Encryption or the key.
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    /// The claim's lease moved to another owner: the result is discarded, the new owner repeats
    /// the call with the same idempotency key.
    #[error("the lease on workflow {0} was lost")]
    LeaseLost(WorkflowId),
}

/// A `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A workflow claimed by one runner until `lease_until`, fenced by `epoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The workflow.
    pub id: WorkflowId,
    /// The fencing epoch this claim holds; writes with an older epoch are refused.
    pub epoch: i64,
    /// The runner that holds it.
    pub owner: String,
}

/// The next thing to do for a claimed workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkItem {
    /// An event received from outside, to apply.
    Inbox {
        /// Its row id.
        id: i64,
        /// The event.
        event: Event,
    },
    /// A timer that fired.
    Timer(TimerKind),
    /// An effect to perform.
    Command {
        /// The command.
        command: Command,
        /// Attempts already made.
        attempts: u32,
    },
}

/// A claimed workflow's state and its next item.
#[derive(Clone, Debug)]
pub struct Work {
    /// The state.
    pub state: WorkflowState,
    /// The next item, if one is due.
    pub item: Option<WorkItem>,
}

/// What a committed step consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consumed {
    /// An inbox row.
    Inbox(i64),
    /// A timer.
    Timer(TimerKind),
    /// A command, with its journaled outcome.
    Command {
        /// Its sequence number.
        seq: u64,
        /// The attempt number of the call whose outcome this is.
        attempt: u32,
        /// A short outcome for the journal (no PHI).
        outcome: String,
    },
}

/// A newly detected accepted plan.
#[derive(Clone, Debug)]
pub struct NewWorkflow {
    /// Its initial state.
    pub state: WorkflowState,
    /// Its first command.
    pub first: Command,
}

/// A workflow as listings show it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkflowRow {
    /// The state document.
    pub state: WorkflowState,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// When it is next due (a timer, a retry), if anything is scheduled.
    pub next_due_at: Option<DateTime<Utc>>,
    /// The next pending action's label.
    pub next_action: Option<String>,
}

/// An open or resolved staff task.
#[derive(Clone, Debug, Serialize)]
pub struct TaskRow {
    /// Row id.
    pub id: i64,
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// The practice.
    pub practice_id: PracticeId,
    /// The task.
    pub task: StaffTask,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// One line of the audit trail.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRow {
    /// When.
    pub at: DateTime<Utc>,
    /// Who or what (`runner`, `poller`, `webhook:stripe`, `staff:alice`).
    pub actor: String,
    /// What kind of change.
    pub kind: String,
    /// Detail, without PHI.
    pub detail: String,
}

/// The latest SMS consent change for one number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsConsentRecord {
    /// True after an opt-out.
    pub opted_out: bool,
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// Where it came from (`inbound_keyword`, `staff`, ...).
    pub source: String,
}

/// Counts that the benchmark and the metrics read.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StoreCounters {
    /// Write transactions committed since start.
    pub write_transactions: u64,
}

/// Durable state for workflows.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Applies pending schema migrations.
    ///
    /// # Errors
    /// [`StoreError::Migrate`].
    async fn migrate(&self) -> Result<()>;

    /// True when the database answers and the schema is current.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn ready(&self) -> Result<bool>;

    /// Records what one poll of a practice system found, in one transaction: the new workflows
    /// (a plan already known is skipped), events for known workflows (a plan rejected after
    /// acceptance), and the advanced cursor. Returns the ids of the workflows created.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn record_poll(
        &self,
        practice: &PracticeId,
        source: &str,
        cursor: &str,
        new: Vec<NewWorkflow>,
        events: Vec<(WorkflowId, Event)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>>;

    /// The cursor of a practice's source, if any poll was recorded.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn cursor(&self, practice: &PracticeId, source: &str) -> Result<Option<String>>;

    /// Claims up to `limit` workflows that are due and not leased, for `lease`.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claim>>;

    /// Loads a claimed workflow and its next due item: inbox events first, then due timers, then the
    /// lowest pending command whose time has come.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`], [`StoreError::Database`], [`StoreError::Decode`].
    async fn load(&self, claim: &Claim, now: DateTime<Utc>) -> Result<Work>;

    /// Journals the intent to perform `command` before the call. `attempt` is the caller's count;
    /// the journal never reuses a number, so a call repeated after a crash is recorded as a new
    /// attempt. Returns the attempt number journaled.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`], [`StoreError::Database`].
    async fn begin_effect(
        &self,
        claim: &Claim,
        command: &Command,
        attempt: u32,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<u32>;

    /// Sets a claimed workflow aside until `until` (nothing this runner can do for it: its practice
    /// is not configured here) and opens `task` for staff once.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`], [`StoreError::Database`].
    async fn park(
        &self,
        claim: &Claim,
        until: DateTime<Utc>,
        task: &StaffTask,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Stores a step in one transaction, only if the claim still holds: the new state, what was
    /// consumed, the transition's commands (outbox), timers, staff task and audit lines.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] (nothing was written), [`StoreError::Database`].
    async fn commit(
        &self,
        claim: &Claim,
        state: &WorkflowState,
        consumed: Consumed,
        event_label: &str,
        transition: &Transition,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Puts a command back for a later attempt (transient failure), journaling the outcome.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`], [`StoreError::Database`].
    async fn defer_command(
        &self,
        claim: &Claim,
        seq: u64,
        attempt: u32,
        outcome: &str,
        not_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Releases the claim and recomputes when the workflow is next due.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn release(&self, claim: &Claim, now: DateTime<Utc>) -> Result<()>;

    /// Queues an event for a workflow; it is applied under the lease by the runner.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn enqueue(
        &self,
        workflow: &WorkflowId,
        source: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Records a verified webhook delivery and its events in one transaction. Returns `false`
    /// (and writes nothing) when the provider's event id was already recorded.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn record_webhook(
        &self,
        provider: &str,
        event_id: &str,
        events: Vec<(WorkflowId, Event)>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Stores a patient's contact data, encrypted.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn put_patient(
        &self,
        practice: &PracticeId,
        contact: &PatientContact,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Reads a patient's contact data.
    ///
    /// # Errors
    /// [`StoreError::Crypto`] for a wrong key, [`StoreError::Database`].
    async fn patient(
        &self,
        practice: &PracticeId,
        patient: &PatientId,
    ) -> Result<Option<PatientContact>>;

    /// Records an SMS opt-out (`true`) or opt-in for a phone number.
    ///
    /// # Errors
    /// [`StoreError::Database`].
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
    /// [`StoreError::Database`].
    async fn sms_opted_out(&self, practice: &PracticeId, phone: &str) -> Result<bool>;

    /// The latest consent change on record for a phone number at this practice.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn sms_consent(
        &self,
        practice: &PracticeId,
        phone: &str,
    ) -> Result<Option<SmsConsentRecord>>;

    /// One workflow.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Decode`].
    async fn workflow(&self, id: &WorkflowId) -> Result<Option<WorkflowRow>>;

    /// Workflows, newest first, optionally of one practice or status.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Decode`].
    async fn workflows(
        &self,
        practice: Option<&PracticeId>,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<WorkflowRow>>;

    /// Staff tasks, open ones only unless `include_resolved`.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn tasks(
        &self,
        practice: Option<&PracticeId>,
        include_resolved: bool,
    ) -> Result<Vec<TaskRow>>;

    /// Marks a workflow's open tasks resolved.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn resolve_tasks(
        &self,
        workflow: &WorkflowId,
        resolution: &str,
        now: DateTime<Utc>,
    ) -> Result<u64>;

    /// A workflow's audit trail, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn audit(&self, workflow: &WorkflowId) -> Result<Vec<AuditRow>>;

    /// Appends one audit line (staff actions, disclosures).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    async fn append_audit(
        &self,
        workflow: &WorkflowId,
        actor: &str,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Counters for benchmarks and metrics.
    fn counters(&self) -> StoreCounters;
}
