//! The store roles written once for both backends.
//!
//! A role whose logic is the same on SQLite and PostgreSQL (the statements, the decisions between
//! them, sealing, row decoding, the audit lines) is implemented here, once, for every store that
//! is a [`Backend`]: `impl<S: Backend> XStore for S`. The statements use `$1`-style placeholders,
//! which both of sqlx's drivers accept (SQLite takes `$NNN` as the NNN-th argument), and SQL both
//! dialects read. What truly differs per backend stays in the backend's files: how a transaction
//! begins and commits, the row locks PostgreSQL takes where SQLite's `BEGIN IMMEDIATE` already
//! serializes writers ([`Backend::lock_name`], [`Backend::FOR_UPDATE`]), and the few statements
//! whose text differs (a role's own small trait, such as [`intake::IntakeSql`]).
//!
//! The `where` clause of each role's impl names what the role's statements bind and decode; both
//! backends meet it, and the compiler checks each statement's types against it.

use std::future::Future;

use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use sqlx::{Database, Pool, Transaction};

use super::crypto::Keyring;
use super::detection::DetectionBatch;
use super::{Claim, NewWorkflow, Result, SentChannel, WorkflowRow};
use crate::outbound::events::OutboundEvent;
use chairside_workflow::{Event, StaffTask, WorkflowId, WorkflowState};

mod intake;
mod logins;
mod patient_report;
mod poller;
mod quarantine;
mod report;
mod staff;

/// A backend's connection, as its transactions dereference to.
pub(in crate::store) type Conn<S> = <<S as Backend>::Db as Database>::Connection;

/// What the shared roles need of a backend: its pool, its key, its transactions and its locks.
/// Implemented by [`SqliteStore`](super::SqliteStore) and [`PostgresStore`](super::PostgresStore)
/// in their `backend.rs`.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// The sqlx database.
    type Db: Database;

    /// `" FOR NO KEY UPDATE"` on PostgreSQL, where a read-then-write locks the rows it read (the
    /// store's `ROW_LOCK`: rows that refer to the locked one can still be inserted); empty on
    /// SQLite, whose `BEGIN IMMEDIATE` transactions already run one at a time.
    const FOR_UPDATE: &'static str;

    /// `" FOR NO KEY UPDATE SKIP LOCKED"` on PostgreSQL, where instances claim disjoint rows at once;
    /// empty on SQLite.
    const SKIP_LOCKED: &'static str;

    /// The outbound events a staff task raised, between [`Backend::task_events`] and
    /// [`Backend::insert_task_events`].
    type TaskEvents: Send;

    /// The pool, for reads outside a transaction.
    fn pool(&self) -> &Pool<Self::Db>;

    /// The key sealed columns are sealed with.
    fn key(&self) -> &Keyring;

    /// Begins a write transaction.
    fn begin(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;

    /// Commits `tx`, counted at the caller's line.
    #[track_caller]
    fn finish(
        &self,
        tx: Transaction<'static, Self::Db>,
    ) -> impl Future<Output = Result<()>> + Send + '_;

    /// Commits a transaction that made work due, and wakes the runners.
    #[track_caller]
    fn finish_due(
        &self,
        tx: Transaction<'static, Self::Db>,
    ) -> impl Future<Output = Result<()>> + Send + '_;

    /// Serializes the transactions that decide on `name` (a login subject, a practice's poller)
    /// across instances until `conn`'s transaction ends: a transaction-scoped advisory lock on
    /// PostgreSQL, nothing on SQLite.
    fn lock_name<'c>(
        conn: &'c mut <Self::Db as Database>::Connection,
        name: &'c str,
    ) -> impl Future<Output = Result<()>> + Send + 'c;

    /// Appends a line to a workflow's (or an intake's) audit trail, its detail sealed.
    fn insert_audit<'c>(
        &'c self,
        conn: &'c mut Conn<Self>,
        id: &'c str,
        actor: &'c str,
        kind: &'c str,
        detail: &'c str,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send + 'c;

    /// Journals a message channel that went out as `sent`.
    fn record_sent<'c>(
        conn: &'c mut Conn<Self>,
        sent: &'c SentChannel,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send + 'c;

    /// Creates a workflow with its first command, unless its plan revision is known: its id,
    /// or `None`.
    fn insert_new<'c>(
        &'c self,
        conn: &'c mut Conn<Self>,
        practice: &'c PracticeId,
        source: &'c str,
        new: NewWorkflow,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<WorkflowId>>> + Send + 'c;

    /// The id the next row of `table` gets, so its sealed column can be bound to it before the
    /// insert.
    fn next_id<'c>(
        conn: &'c mut Conn<Self>,
        table: &'static str,
    ) -> impl Future<Output = Result<i64>> + Send + 'c;

    /// Records the outbound events that `task`, raised on workflow `id` in `state`, makes. What
    /// it returns goes to [`Backend::insert_task_events`] last before the commit: SQLite inserts
    /// the events at once (its single writer commits them in id order anyway) and returns
    /// nothing; PostgreSQL returns them, to insert under its event-order lock with nothing but
    /// the commit after it (`postgres/outbox.rs`).
    fn task_events<'c>(
        conn: &'c mut Conn<Self>,
        id: &'c str,
        state: &'c WorkflowState,
        task: &'c StaffTask,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Self::TaskEvents>> + Send + 'c;

    /// Inserts outbound events built without a workflow state (a quarantined workflow's task,
    /// whose state may not open), last before the commit like [`Backend::insert_task_events`].
    fn insert_events<'c>(
        conn: &'c mut Conn<Self>,
        id: &'c str,
        events: Vec<OutboundEvent>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send + 'c;

    /// Inserts what [`Backend::task_events`] left; the caller commits right after.
    fn insert_task_events<'c>(
        conn: &'c mut Conn<Self>,
        id: &'c str,
        events: Self::TaskEvents,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send + 'c;

    /// Refuses ([`StoreError::LeaseLost`](super::StoreError::LeaseLost)) unless `claim` still
    /// holds its workflow's lease at `now_ms`; on PostgreSQL, locks the workflow's row until the
    /// transaction ends.
    fn check_lease<'c>(
        &'c self,
        conn: &'c mut Conn<Self>,
        claim: &'c Claim,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send + 'c;

    /// Queues `event` from `source` in a workflow's inbox, sealed, and makes the workflow due.
    fn insert_inbox<'c>(
        &'c self,
        conn: &'c mut Conn<Self>,
        id: &'c str,
        source: &'c str,
        event: &'c Event,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send + 'c;

    /// Revokes a workflow's patient links (the next generation); returns it.
    fn revoke_links<'c>(
        conn: &'c mut Conn<Self>,
        id: &'c str,
        now_ms: i64,
    ) -> impl Future<Output = Result<u64>> + Send + 'c;

    /// A workflow's row (selected with `WORKFLOW_COLUMNS`), its state unsealed.
    fn workflow_row(&self, row: &<Self::Db as Database>::Row) -> Result<WorkflowRow>;

    /// Counts the rows a listing skipped because they do not decode.
    fn skipped(&self) -> &std::sync::atomic::AtomicU64;

    /// [`ReportStore::workflow`](crate::store::ReportStore::workflow) by the backend's own read
    /// path when it has one faster than a pooled read (SQLite: its reader thread, which keeps
    /// the statement prepared and the workflow states it last opened); `None` reads through the
    /// pool.
    fn workflow_read<'a>(
        &'a self,
        _id: &'a WorkflowId,
    ) -> Option<impl Future<Output = Result<Option<WorkflowRow>>> + Send + 'a> {
        None::<std::future::Ready<Result<Option<WorkflowRow>>>>
    }

    /// [`ReportStore::workflow_at_generation`](crate::store::ReportStore::workflow_at_generation)
    /// by the backend's own read path when it has one (as [`Backend::workflow_read`], the link
    /// generation and the row in one hop); `None` asks through the pool.
    fn workflow_at_generation_read<'a>(
        &'a self,
        _id: &'a WorkflowId,
        _generation: u64,
    ) -> Option<impl Future<Output = Result<Option<WorkflowRow>>> + Send + 'a> {
        None::<std::future::Ready<Result<Option<WorkflowRow>>>>
    }

    /// Whether any intake link send is due at `now_ms` (the idle check of
    /// `claim_intake_link_sends`), by the backend's own read path when it has one (as
    /// [`Backend::workflow_read`]); `None` asks through the pool.
    fn intake_link_sends_due(
        &self,
        _now_ms: i64,
    ) -> Option<impl Future<Output = Result<bool>> + Send + '_> {
        None::<std::future::Ready<Result<bool>>>
    }

    /// In the transaction of a poll that created `created`: claims each one that is due for this
    /// instance's runner when one is registered ([`Handoffs`](super::Handoffs)), its first
    /// command's intent journaled, as `claim_due` would. The claims go to
    /// [`Backend::handoff_queue`] once the transaction committed.
    fn take_created<'c>(
        &'c self,
        conn: &'c mut Conn<Self>,
        created: &'c [WorkflowId],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Claim>>> + Send + 'c;

    /// Where this instance's runner finds the claims [`Backend::take_created`] made.
    fn handoff_queue(&self) -> &super::Handoffs;

    /// Writes a poll's detections (new workflows, events for known ones, the cursor).
    fn write_detection<'c>(
        &'c self,
        conn: &'c mut Conn<Self>,
        practice: &'c PracticeId,
        source: &'c str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<WorkflowId>>> + Send + 'c;
}

/// The rows a statement changed, for either backend's result.
pub trait Affected {
    /// How many rows the statement changed.
    fn affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}
