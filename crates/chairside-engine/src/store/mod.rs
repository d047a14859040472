//! Durable state: one trait per role, the [`Store`] umbrella over them all, and two
//! implementations: [`SqliteStore`] (embedded, the default) and [`PostgresStore`] (several
//! instances on one database), chosen by the database URL.
//!
//! | Role | Trait | Who uses it |
//! |---|---|---|
//! | run claimed workflows | [`WorkflowStore`] | the runner |
//! | take in what arrives | [`InboundStore`] | the poller, webhooks |
//! | patients and SMS consent | [`PatientStore`] | the runner, the consent ledger, the pages |
//! | staff decisions | [`StaffStore`] | [`StaffActions`](crate::staff::StaffActions) |
//! | staff login throttling and its audit | [`LoginStore`] | the dashboard login, `chairside unlock-staff` |
//! | read workflows, tasks, the audit trail | [`ReportStore`] | the dashboard, `chairside status`, metrics |
//! | the schema and health | [`SchemaStore`] | start-up, `chairside migrate`, `/ready` |
//! | patient link generations and return references | [`LinkStore`] | the runner, the patient page |
//! | set aside what does not decode | [`QuarantineStore`] | the runner, webhooks, the dashboard, metrics |
//! | outbound events and their deliveries | [`OutboxStore`] | the dispatcher ([`crate::outbound`]), the dashboard |
//! | install baseline, detection tasks and health | [`DetectionStore`] | the poller, `/readyz`, the dashboard, metrics |
//! | one poller per practice across instances | [`PollerStore`] | the poller ([`Runner::poll_practices`](crate::runner::Runner::poll_practices)) |
//! | new-patient intakes | [`IntakeStore`] | the intake pages, [`crate::intake`] |
//! | patients' reports of link-only lenders' decisions | [`PatientReportStore`] | the patient page, the dashboard |
//!
//! A caller that needs one role takes `&dyn` or `Arc<dyn>` of that role; `Arc<dyn Store>`
//! converts to any of them. To call the methods on a concrete store, `use store::prelude::*`.
//!
//! Every method is one transaction, and every write made on behalf of a claimed workflow checks
//! the claim's fencing epoch, on both stores; `tests/it/store.rs` runs one suite against both.
//! The roles whose SQL is the same on both databases are written once, in `shared/`.

pub mod crypto;
mod delivery;
pub mod detection;
mod inbound;
pub mod intake;
pub mod links;
pub mod logins;
pub mod outbox;
mod patient;
pub mod patient_report;
pub mod poller;
mod postgres;
pub mod quarantine;
mod report;
mod schema;
mod shared;
mod sqlite;
mod staff;
mod workflow;

use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use serde::Serialize;

pub use delivery::{DeliveryStore, SendRecord};
pub use detection::DetectionStore;
pub use inbound::InboundStore;
pub use intake::{
    IntakeLinkSend, IntakeLinkSendRow, IntakeOrigin, IntakeRow, IntakeStore, LinkResend,
    LinkSendOutcome, NewIntake,
};
pub use links::{LinkStore, PageMark};
pub use logins::LoginStore;
pub use outbox::OutboxStore;
pub use patient::PatientStore;
pub use patient_report::PatientReportStore;
pub use poller::{PollerLease, PollerStore};
pub use postgres::{PostgresStore, is_postgres_url};
pub use quarantine::{QuarantineStore, QuarantinedDelivery, QuarantinedWorkflow};
pub use report::{LedgerNoteTime, PAYMENT_SEARCH_LIMIT, ReportStore};
pub use schema::SchemaStore;
pub use sqlite::{Durability, ResealReport, SqliteStore};
pub use staff::StaffStore;
pub use workflow::{
    AfterStep, AuditLine, ConsentFact, Handoffs, NextStep, SentChannel, StepFacts, WorkflowStore,
};

use chairside_workflow::{Command, Event, StaffTask, TimerKind, WorkflowId, WorkflowState};

/// Every role trait, for calling store methods on a concrete store.
pub mod prelude {
    pub use super::{
        DetectionStore, InboundStore, IntakeStore, LinkStore, LoginStore, OutboxStore,
        PatientReportStore, PatientStore, PollerStore, QuarantineStore, ReportStore, SchemaStore,
        StaffStore, Store, WorkflowStore,
    };
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite store's own connection (its store thread) refused or failed.
    #[error("database: {0}")]
    Embedded(#[from] rusqlite::Error),
    /// A schema migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored document did not decode.
    #[error("stored data could not be decoded: {0}")]
    Decode(#[from] serde_json::Error),
    /// Encryption or the key.
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    /// A sealed column of one row could not be sealed or opened. Names the table and the row's
    /// key, never the content.
    #[error("{table} row {row}: {source}")]
    Sealed {
        /// The table.
        table: &'static str,
        /// The row's key (an opaque id).
        row: String,
        /// Why.
        #[source]
        source: crypto::CryptoError,
    },
    /// The database file's permissions could not be set.
    #[error("database file: {0}")]
    File(#[from] std::io::Error),
    /// The claim's lease moved to another owner: the result is discarded, the new owner repeats
    /// the call with the same idempotency key.
    #[error("the lease on workflow {0} was lost")]
    LeaseLost(WorkflowId),
    /// The practice's poller lease ran out or moved to another instance: the poll's result is
    /// discarded, the holder polls again from the stored cursor.
    #[error("the poller lease of practice {0} was lost")]
    PollerLeaseLost(PracticeId),
    /// The commit the caller's transaction shared with other callers' failed (the PostgreSQL
    /// store's group commit): nothing of it was written, unless the connection broke during the
    /// `COMMIT` itself.
    #[error("shared commit: {0}")]
    Shared(std::sync::Arc<StoreError>),
    /// The transaction the caller's writes shared with other callers' was rolled back whole (a
    /// failed caller's writes could not be undone alone, or the store shut down before the
    /// commit): nothing of it was written; running it again may well succeed.
    #[error("the shared transaction was rolled back before its commit; nothing was written")]
    Abandoned,
}

impl StoreError {
    /// True when what is stored cannot be read back: it does not decode, or its sealed value
    /// does not open. Retrying cannot help; the row is set aside for staff (the quarantine).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Self::Decode(_) | Self::Sealed { .. })
    }

    /// True when the same transaction may well succeed if run again: the database broke a
    /// deadlock by cancelling it, a lock was not granted within the lock timeout, a serializable
    /// transaction conflicted, SQLite was busy, or the connection or the pool failed. Nothing of
    /// such a transaction was committed, except perhaps when the connection broke during its
    /// `COMMIT`: retry on it only what is safe to repeat (the patient page's lines, which a repeat
    /// records once; a runner's step, repeated under its idempotency keys as after a lease runs
    /// out).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) => sqlx_transient(e),
            Self::Shared(e) => e.is_transient(),
            Self::Abandoned => true,
            Self::Embedded(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

/// PostgreSQL's SQLSTATEs for a transaction cancelled to break a deadlock (`40P01`), a
/// serialization failure (`40001`) and a lock not granted in time (`55P03`, `lock_timeout`).
const POSTGRES_TRANSIENT: [&str; 3] = ["40P01", "40001", "55P03"];

/// SQLite's primary result codes `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6).
const SQLITE_TRANSIENT: [i64; 2] = [5, 6];

fn sqlx_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            POSTGRES_TRANSIENT.contains(&code.as_ref())
                // SQLite's code is the extended result code in decimal; its low byte is the
                // primary code.
                || code
                    .parse::<i64>()
                    .is_ok_and(|c| SQLITE_TRANSIENT.contains(&(c & 0xff)))
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
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
    /// When the workflow came due (its earliest inbox event, timer or pending command when it was
    /// claimed): how late the claim came is measured from it ([`RunnerStats::claims`]).
    ///
    /// [`RunnerStats::claims`]: crate::runner::RunnerStats
    pub due_at: Option<DateTime<Utc>>,
    /// The intent the claim's own transaction journaled: the workflow's next due item was a
    /// command whose idempotency key is stored with it, so the claim wrote its `effects` row (as
    /// [`WorkflowStore::begin_effect`] would) and the runner performs it without a transaction
    /// of its own before the call. `None`: nothing journaled.
    pub begun: Option<ClaimedIntent>,
}

/// A runner's round of claims ([`WorkflowStore::claim_round`]): the claims made, and when the
/// next workflow becomes claimable after them.
#[derive(Debug)]
pub struct ClaimRound {
    /// The claims made, as [`WorkflowStore::claim_due`] makes them.
    pub claims: Vec<Claim>,
    /// When the next workflow becomes claimable once these are held, as
    /// [`WorkflowStore::next_claimable`] reads it; `None` when the round took as many claims as
    /// it was allowed (more may be due; the runner looks again when a slot frees), so a busy
    /// runner does not pay for a read it has no use for. Failing to read it keeps the claims made.
    pub next: Option<Result<Option<DateTime<Utc>>>>,
}

impl ClaimRound {
    /// Whether `claims` took every one of the `limit` slots a round was allowed, so that the
    /// next claimable time is not read ([`ClaimRound::next`]).
    pub(crate) fn fills(claims: &[Claim], limit: u32) -> bool {
        claims.len() >= usize::try_from(limit).unwrap_or(usize::MAX)
    }
}

/// A command's intent journaled by the claim that took its workflow ([`Claim::begun`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedIntent {
    /// The command's sequence number.
    pub seq: u64,
    /// The attempt number journaled.
    pub attempt: u32,
    /// The idempotency key journaled (the one stored with the command).
    pub key: String,
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

/// A number's current SMS consent standing: the record that decides, folded from its history by
/// [`messaging::supersedes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsConsentRecord {
    /// True after a withdrawal (STOP, carrier, staff) that nothing has overridden.
    pub opted_out: bool,
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// Where it came from ([`messaging::sources`]; older rows: `inbound_keyword`, `staff`, ...).
    pub source: String,
    /// What is granted; `None` when withdrawn or never granted.
    pub consent: Option<messaging::ConsentKind>,
    /// The exact wording the patient saw (empty for rows from before consent records).
    pub wording: String,
    /// Who recorded it (empty for rows from before consent records).
    pub recorded_by: String,
}

impl SmsConsentRecord {
    /// The consent the compliance policy judges a text against.
    pub fn to_sms_consent(&self) -> financing_core::SmsConsent {
        use financing_core::SmsConsent;
        match (self.opted_out, self.consent) {
            (true, _) => SmsConsent::Revoked { at: self.at },
            (false, Some(messaging::ConsentKind::Informational)) => SmsConsent::Informational {
                at: self.at,
                source: self.source.clone(),
            },
            (false, Some(messaging::ConsentKind::Written)) => SmsConsent::Written {
                at: self.at,
                source: self.source.clone(),
            },
            (false, None) => SmsConsent::None,
        }
    }
}

/// One entry of a number's consent history, as recorded (append-only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsConsentLogRow {
    /// What was recorded.
    pub entry: messaging::ConsentEntry,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Whether it became the number's standing when recorded (an attestation after a withdrawal
    /// does not).
    pub effective: bool,
}

/// Counts that the benchmark and the metrics read.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StoreCounters {
    /// Write transactions committed since start.
    pub write_transactions: u64,
    /// Durable commits since start: what hits the disk (one sync each under
    /// `synchronous = FULL`). On SQLite the store thread's group commit carries several
    /// callers' write transactions in one commit and counts once here; every other write
    /// transaction is its own commit.
    pub commits: u64,
    /// Workflow rows that listings skipped because they do not decode (each listing counts
    /// again); the runner quarantines them.
    pub skipped_undecodable: u64,
}

/// Write transactions committed, in all and by the place in the store's code that committed
/// each (`sqlite/links.rs:61`): what the benchmark reports as writes by call site.
#[derive(Debug, Default)]
pub(crate) struct WriteCount {
    total: std::sync::atomic::AtomicU64,
    sites: std::sync::Mutex<std::collections::HashMap<(&'static str, u32), u64>>,
}

impl WriteCount {
    /// Counts one committed write transaction made at `site`.
    pub(crate) fn add(&self, site: &'static std::panic::Location<'static>) {
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        *sites.entry((site.file(), site.line())).or_default() += 1;
    }

    /// Every write transaction counted.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counts by call site, the path cut to what follows `store/`.
    pub(crate) fn by_site(&self) -> Vec<(String, u64)> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, u64)> = sites
            .iter()
            .map(|(&(file, line), &n)| {
                let file = file.replace('\\', "/");
                let short = file.rsplit_once("store/").map_or(file.as_str(), |(_, f)| f);
                (format!("{short}:{line}"), n)
            })
            .collect();
        out.sort();
        out
    }
}

/// Every role at once: what the service composes and hands out. Implemented for every type that
/// implements all the roles.
pub trait Store:
    WorkflowStore
    + InboundStore
    + PatientStore
    + StaffStore
    + LoginStore
    + ReportStore
    + SchemaStore
    + LinkStore
    + QuarantineStore
    + OutboxStore
    + DetectionStore
    + PollerStore
    + IntakeStore
    + PatientReportStore
{
}

impl<T> Store for T where
    T: WorkflowStore
        + InboundStore
        + PatientStore
        + StaffStore
        + LoginStore
        + ReportStore
        + SchemaStore
        + LinkStore
        + QuarantineStore
        + OutboxStore
        + DetectionStore
        + PollerStore
        + IntakeStore
        + PatientReportStore
{
}

// Every role is used as a trait object.
#[cfg(test)]
fn _obj_safe(
    _: &dyn Store,
    _: &dyn WorkflowStore,
    _: &dyn InboundStore,
    _: &dyn PatientStore,
    _: &dyn StaffStore,
    _: &dyn ReportStore,
    _: &dyn SchemaStore,
) {
}

#[cfg(test)]
fn _login_obj_safe(_: &dyn LoginStore) {}
fn _quarantine_obj_safe(_: &dyn QuarantineStore) {}
#[cfg(test)]
fn _outbox_obj_safe(_: &dyn OutboxStore) {}

#[cfg(test)]
mod transient_tests {
    use super::StoreError;
    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    use std::time::Duration;

    #[test]
    fn a_busy_or_locked_embedded_database_is_transient_and_a_constraint_is_not() {
        let failure = |code| {
            StoreError::Embedded(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        assert!(failure(rusqlite::ffi::SQLITE_BUSY).is_transient());
        assert!(failure(rusqlite::ffi::SQLITE_LOCKED).is_transient());
        assert!(!failure(rusqlite::ffi::SQLITE_CONSTRAINT).is_transient());
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
        let undecodable = serde_json::from_str::<u8>("x").unwrap_err();
        assert!(!StoreError::Decode(undecodable).is_transient());
    }

    #[tokio::test]
    async fn a_write_refused_because_another_connection_holds_the_lock_is_transient() {
        // Arrange: two connections to one file, the first holding the write lock.
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO);
        let mut first = SqliteConnection::connect_with(&options).await.unwrap();
        let mut second = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut first)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut first)
            .await
            .unwrap();

        // Act
        let refused = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut second)
            .await
            .unwrap_err();
        let broken = sqlx::query("INSERT INTO missing VALUES (1)")
            .execute(&mut second)
            .await
            .unwrap_err();

        // Assert: the busy database may succeed on a retry; a missing table never will.
        assert!(StoreError::Database(refused).is_transient());
        assert!(!StoreError::Database(broken).is_transient());
    }
}
