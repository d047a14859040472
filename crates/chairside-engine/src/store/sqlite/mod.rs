//! The embedded store: one SQLite file, WAL, `BEGIN IMMEDIATE` for every write transaction. One
//! file per role implements that role's trait, except the roles written once for both stores in
//! `store/shared/` (`backend.rs` gives them this store's transactions); the helpers they share
//! live here.

mod backend;
mod conn;
mod delivery;
mod detection;
mod inbound;
mod links;
mod onehop;
mod outbox;
pub(super) mod patient;
mod reads;
mod schema;
pub(super) mod sealed;
mod thread;
mod workflow;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use financing_core::{PatientId, PracticeId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::crypto::Keyring;
use super::{Claim, Result, StoreError, WorkflowRow};
use chairside_workflow::{Command, Event, TaskKind, WorkflowState};
pub use sealed::ResealReport;
use sealed::{EVENTS_DETAIL, INBOX_EVENT, OUTBOX_COMMAND, WORKFLOW_STATE, next_id};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// WAL pages after which a commit checkpoints (`wal_autocheckpoint`, SQLite's default 1000). A
/// checkpoint copies every page the WAL holds into the database file once, however many times
/// it was committed since the last one: the steps rewrite the same few hot pages (the workflow
/// rows, their indexes, the outbox's), so a longer interval copies each of them less often.
/// The WAL file grows to about this many pages (4 KiB each: some 16 MiB) and is then reused
/// from its start; it stays that size on disk until the store closes.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4000;

pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// How a commit reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = FULL`: a commit is synced before it returns and survives a power loss
    /// (the default).
    #[default]
    Full,
    /// `synchronous = NORMAL`: WAL's usual setting; survives a crash of the process, but the last
    /// commits before a power loss can be lost. For measuring what `Full` costs.
    Normal,
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The store's own thread and connection: the runner's write transactions, one hop each,
    /// with group commit ([`thread`]).
    thread: thread::StoreThread,
    /// A second one for the runner's reads, so a read never waits behind a commit's sync.
    reader: thread::StoreThread,
    key: Arc<Keyring>,
    /// The workflow states last sealed or opened, shared by `thread` and `reader`, so a step's
    /// load and commit do not decrypt and parse what the previous commit sealed.
    states: Arc<sealed::StateCache>,
    writes: Arc<super::WriteCount>,
    skipped: Arc<AtomicU64>,
    /// Rung after a commit that made work due from outside the runner (a webhook, a poll, a
    /// staff action, a patient's request), so a waiting runner picks it up at once.
    due: Arc<tokio::sync::Notify>,
    /// Claims a poll or a webhook took for this instance's runner in its own transaction.
    handoffs: Arc<super::Handoffs>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Durable commits so far ([`StoreCounters::commits`](crate::store::StoreCounters)): the
    /// pool's write transactions, one commit each, and the store thread's commits, each
    /// carrying one or more callers' write transactions.
    fn commits(&self) -> u64 {
        let (commits, carried) = self.thread.commits();
        self.writes.total().saturating_sub(carried) + commits
    }

    /// Opens (creating if needed) the database at `path` with WAL and a 5 s busy timeout. The
    /// file and its `-wal` and `-shm` siblings are readable by their owner only (0600), whatever
    /// the umask. `key` is a [`Keyring`] or a single [`DataKey`](super::crypto::DataKey) (id 0).
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::File`] when the permissions cannot be set.
    pub async fn open(path: &std::path::Path, key: impl Into<Keyring>) -> Result<Self> {
        Self::open_with(path, key, Durability::Full).await
    }

    /// [`open`](Self::open) with the given [`Durability`].
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_with(
        path: &std::path::Path,
        key: impl Into<Keyring>,
        durability: Durability,
    ) -> Result<Self> {
        owner_only(path, true)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it returns, so a webhook answered 200 (its
            // transaction committed first) survives a power loss; NORMAL in WAL mode keeps
            // it only across a crash of the process. Costed in docs/performance.md.
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // As on the store thread (`thread.rs`): statement journals in memory, not spilled to a
        // temporary file per transaction.
        let options = options
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A caller dropped between sqlx's BEGIN and the making of its `Transaction` (a
            // deadline, a `select!`) leaves the transaction open on the connection (sqlx 0.8):
            // back in the pool it would hold SQLite's write lock, and every other process on
            // the file would see "database is locked". Such a connection is closed instead
            // (closing rolls back). The ping runs after any rollback already queued.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection as _;
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect_with(options)
            .await?;
        // SQLite gives the journal files the main file's mode; tighten any left by an older
        // version that created the file with the umask's mode.
        for suffix in ["-wal", "-shm"] {
            let mut sibling = path.as_os_str().to_owned();
            sibling.push(suffix);
            owner_only(std::path::Path::new(&sibling), false)?;
        }
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        let thread = thread::StoreThread::start(path, synchronous)?;
        let reader = thread::StoreThread::start(path, synchronous)?;
        let key: Arc<Keyring> = Arc::new(key.into());
        let states = Arc::new(sealed::StateCache::new(key.clone()));
        Ok(Self {
            pool,
            thread,
            reader,
            key,
            states,
            writes: Arc::default(),
            skipped: Arc::new(AtomicU64::new(0)),
            due: Arc::new(tokio::sync::Notify::new()),
            handoffs: Arc::default(),
        })
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        // BEGIN IMMEDIATE takes the write lock up front: a read-then-write transaction cannot fail
        // to upgrade under WAL's single writer.
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Commits `tx` and counts it where it was called from (the caller's line, for the
    /// benchmark's writes by call site).
    #[track_caller]
    fn finish(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        self.finish_at(tx, std::panic::Location::caller())
    }

    async fn finish_at(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        site: &'static std::panic::Location<'static>,
    ) -> Result<()> {
        tx.commit().await?;
        self.writes.add(site);
        Ok(())
    }

    /// Commits a transaction that queued an event or created a workflow, and wakes the runner.
    #[track_caller]
    fn finish_due(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        let site = std::panic::Location::caller();
        async move {
            self.finish_at(tx, site).await?;
            self.due.notify_one();
            Ok(())
        }
    }

    fn associated(practice: &PracticeId, patient: &PatientId) -> Vec<u8> {
        format!("patient:{practice}/{patient}").into_bytes()
    }
}

/// Makes `path` readable and writable by its owner only, creating it (empty, which SQLite takes
/// as a new database) when `create` is set and it does not exist yet, so it never exists with
/// the umask's mode.
///
/// An existing database is never opened here: closing any descriptor of a file drops every
/// POSIX lock this process holds on it, so a second store opened in a process whose first store
/// holds SQLite's locks would silently release them ("How To Corrupt An SQLite Database File",
/// 2.2). Another process could then take the file as unused, checkpoint and remove the WAL under
/// the first store's feet, which reads "disk I/O error" from then on. The mode is set by path.
#[cfg(unix)]
fn owner_only(path: &std::path::Path, create: bool) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if create {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(not(unix))]
fn owner_only(_path: &std::path::Path, _create: bool) -> Result<()> {
    Ok(())
}

/// Refuses unless the claim still holds the workflow's lease at its epoch and the lease has not
/// run out at `now`: a lease that expired may already be another runner's to take, so its old
/// owner writes nothing more under it (the epoch fences a taker that already claimed; the expiry
/// check fences the moment between the expiry and the next claim).
async fn check_lease(conn: &mut SqliteConnection, claim: &Claim, now: i64) -> Result<()> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM workflows WHERE id = ? AND epoch = ? AND lease_owner = ? AND lease_until >= ?",
    )
    .bind(claim.id.as_str())
    .bind(claim.epoch)
    .bind(&claim.owner)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if held.is_some() {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(claim.id.clone()))
    }
}

async fn insert_command(
    conn: &mut SqliteConnection,
    key: &Keyring,
    id: &str,
    command: &Command,
    idempotency_key: &str,
    now: i64,
) -> Result<()> {
    let seq = command.seq.to_string();
    let sealed = OUTBOX_COMMAND.seal_json(key, &[id, &seq], command)?;
    sqlx::query("INSERT INTO outbox (workflow_id, seq, action, command, not_before, created_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(id)
        .bind(command.seq as i64)
        .bind(command.action.label())
        .bind(sealed)
        .bind(now)
        .bind(now)
        .bind(idempotency_key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_audit(
    conn: &mut SqliteConnection,
    key: &Keyring,
    id: &str,
    actor: &str,
    kind: &str,
    detail: &str,
    now: i64,
) -> Result<()> {
    let row = next_id(conn, EVENTS_DETAIL.table).await?;
    let sealed = EVENTS_DETAIL.seal(key, &[&row.to_string()], detail.as_bytes())?;
    sqlx::query(
        "INSERT INTO events (id, workflow_id, at, actor, kind, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(row)
    .bind(id)
    .bind(now)
    .bind(actor)
    .bind(kind)
    .bind(sealed)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_inbox(
    conn: &mut SqliteConnection,
    key: &Keyring,
    id: &str,
    source: &str,
    event: &Event,
    now: i64,
) -> Result<()> {
    let row = next_id(conn, INBOX_EVENT.table).await?;
    let sealed = INBOX_EVENT.seal_json(key, &[&row.to_string()], event)?;
    sqlx::query(
        "INSERT INTO inbox (id, workflow_id, source, event, received_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(row)
    .bind(id)
    .bind(source)
    .bind(sealed)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // Due now, unless it is already due earlier.
    sqlx::query(
        "UPDATE workflows SET next_due_at = MIN(COALESCE(next_due_at, ?2), ?2) WHERE id = ?1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn row_to_workflow(key: &Keyring, row: &sqlx::sqlite::SqliteRow) -> Result<WorkflowRow> {
    let state: WorkflowState = WORKFLOW_STATE.open_json(
        key,
        &[row.try_get::<&str, _>("id")?],
        row.try_get::<&[u8], _>("state")?,
    )?;
    Ok(WorkflowRow {
        state,
        updated_at: from_ms(row.try_get("updated_at")?),
        next_due_at: row.try_get::<Option<i64>, _>("next_due_at")?.map(from_ms),
        next_action: row.try_get("next_action")?,
    })
}

pub(super) fn task_kind(label: &str) -> TaskKind {
    TaskKind::from_label(label).unwrap_or(TaskKind::SystemError)
}

pub(super) const WORKFLOW_COLUMNS: &str = "w.id, w.state, w.updated_at, w.next_due_at,
    (SELECT action FROM outbox o WHERE o.workflow_id = w.id AND o.status = 'pending' ORDER BY seq LIMIT 1) AS next_action";
