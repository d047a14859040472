//! The PostgreSQL store: the same roles as the SQLite store, for several instances on one
//! database. The roles whose SQL is the same on both are written once in `store/shared/`
//! (`backend.rs` gives them this store's transactions and locks); the others have one file here
//! mirroring `store/sqlite/`.
//!
//! What differs from SQLite, and why:
//! - Writers run concurrently (READ COMMITTED), not one at a time under `BEGIN IMMEDIATE`. Every
//!   read-then-write takes a row lock first: a workflow's writes lock its `workflows` row
//!   (`check_lease` and the staff, link and page writes `SELECT ... FOR NO KEY UPDATE`, see
//!   `ROW_LOCK`), consent folds and login counts take a transaction-scoped advisory lock on their
//!   number or subject.
//! - Claims (`claim_due`, `claim_deliveries`) take rows with `SKIP LOCKED`, so
//!   instances never wait on each other's claims or on a workflow held mid-commit.
//! - Row ids of sealed rows come from the table's sequence before the insert, so the sealed
//!   column can be bound to its row (SQLite reads `MAX(id) + 1` under its write lock).
//! - A commit that makes work due rings `NOTIFY chairside_due`; every instance listens, so a
//!   webhook answered by one wakes the runners of all. A webhook or a poll also claims what it
//!   made due for its own instance's runner when nobody holds it (`Handoffs`, as on SQLite), so
//!   the others find it held.
//! - [`Durability::Full`] is PostgreSQL's default `synchronous_commit = on` (the commit is flushed
//!   to the WAL before it returns); `Normal` sets it `off`.
//!
//! The SQL is PostgreSQL's; the decisions (consent folding, lockouts, what a detection or a
//! delivery outcome records) are the shared pure code both stores call.

mod backend;
mod delivery;
mod detection;
mod group;
mod inbound;
mod links;
mod outbox;
mod patient;
mod schema;
mod sealed;
mod workflow;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Row};

use super::crypto::Keyring;
use super::sqlite::sealed::{
    EVENTS_DETAIL, INBOX_EVENT, OUTBOX_COMMAND, TASK_REASON, WORKFLOW_STATE,
};
use super::sqlite::{from_ms, ms};
use super::{Claim, Durability, Result, StoreError, WorkflowRow};
use chairside_workflow::{Command, Event, WorkflowState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel a commit that made work due is announced on.
const DUE_CHANNEL: &str = "chairside_due";

/// True when `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    key: Arc<Keyring>,
    writes: Arc<super::WriteCount>,
    skipped: Arc<AtomicU64>,
    /// Rung after a commit that made work due, here or (through `NOTIFY`) on another instance.
    due: Arc<tokio::sync::Notify>,
    /// Claims this instance's webhooks and polls made for its own runner, in the transaction
    /// that made the work due.
    handoffs: Arc<super::Handoffs>,
    /// The runner's transactions, committed together ([`group`]).
    group: group::Group,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`; every
    /// libpq URL parameter sqlx knows, `sslmode` included). Does not migrate.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the URL does not parse or the server does not answer.
    pub async fn connect(url: &str, key: impl Into<Keyring>) -> Result<Self> {
        Self::connect_with(url, key, Durability::Full, 8).await
    }

    /// [`connect`](Self::connect) with the given [`Durability`] and at most `connections`
    /// connections in the pool.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        url: &str,
        key: impl Into<Keyring>,
        durability: Durability,
        connections: u32,
    ) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?.options([
            (
                "synchronous_commit",
                match durability {
                    Durability::Full => "on",
                    Durability::Normal => "off",
                },
            ),
            // SQLite's busy timeout: a write waits this long for a row another writer holds.
            ("lock_timeout", "5s"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(2))
            .connect_with(options)
            .await?;
        let due = Arc::new(tokio::sync::Notify::new());
        listen_for_due(&pool, &due).await;
        Ok(Self {
            group: group::Group::new(pool.clone()),
            pool,
            key: Arc::new(key.into()),
            writes: Arc::default(),
            skipped: Arc::new(AtomicU64::new(0)),
            due,
            handoffs: Arc::default(),
        })
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Commits `tx` and counts it where it was called from (the caller's line, for the
    /// benchmark's writes by call site).
    #[track_caller]
    fn finish(
        &self,
        tx: sqlx::Transaction<'static, Postgres>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        self.finish_at(tx, std::panic::Location::caller())
    }

    async fn finish_at(
        &self,
        tx: sqlx::Transaction<'static, Postgres>,
        site: &'static std::panic::Location<'static>,
    ) -> Result<()> {
        tx.commit().await?;
        self.writes.add(site);
        Ok(())
    }

    /// Takes this caller's turn in the runner's group commit ([`group`]): a transaction of the
    /// workflow's own writes, committed with the other workflows' of the same moment.
    async fn join(&self) -> Result<group::Member<'_>> {
        self.group.join().await
    }

    /// Commits `member`'s writes with its group and counts its transaction where it was called
    /// from, as [`finish`](Self::finish).
    #[track_caller]
    fn finish_member<'a>(
        &'a self,
        member: group::Member<'a>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'a {
        let site = std::panic::Location::caller();
        async move {
            member.commit().await?;
            self.writes.add(site);
            Ok(())
        }
    }

    /// Durable commits so far ([`StoreCounters::commits`](super::StoreCounters)): the pool's
    /// write transactions, one commit each, and the group's commits, each carrying one or more
    /// callers' transactions.
    fn commits(&self) -> u64 {
        let (commits, carried) = self.group.commits();
        self.writes.total().saturating_sub(carried) + commits
    }

    /// Commits a transaction that queued an event or created a workflow, and wakes the runners
    /// of this instance and (`NOTIFY`, delivered at commit) of every other.
    #[track_caller]
    fn finish_due(
        &self,
        mut tx: sqlx::Transaction<'static, Postgres>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        let site = std::panic::Location::caller();
        async move {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(DUE_CHANNEL)
                .execute(&mut *tx)
                .await?;
            self.finish_at(tx, site).await?;
            self.due.notify_one();
            Ok(())
        }
    }
}

/// Rings `due` on every `NOTIFY chairside_due`, from a task that lives as long as the store. A
/// listener that cannot connect is logged and left out: the runner then finds other instances'
/// work on its periodic recheck.
async fn listen_for_due(pool: &PgPool, due: &Arc<tokio::sync::Notify>) {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for due work from other instances");
            return;
        }
    };
    if let Err(e) = listener.listen(DUE_CHANNEL).await {
        tracing::warn!(error = %e, "cannot listen for due work from other instances");
        return;
    }
    let due = Arc::downgrade(due);
    tokio::spawn(async move {
        loop {
            // `recv` reconnects by itself after a lost connection.
            let got = listener.recv().await;
            let Some(due) = due.upgrade() else { break };
            match got {
                Ok(_) => due.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "listening for due work");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// The id the next row of `table` gets, from its identity sequence, so its sealed column can be
/// bound to it before the insert.
async fn next_id(conn: &mut PgConnection, table: &'static str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence($1, 'id'))")
            .bind(table)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The row lock of a read-then-write: `FOR NO KEY UPDATE`, not `FOR UPDATE`. Writes to one row
/// still run one after the other (the two conflict with each other, with any `UPDATE`, and a
/// claim's `SKIP LOCKED` skips the row), but an insert into a table that refers to the
/// row (`patient_page_marks`, `patient_links`, `outbox`: their foreign keys take `FOR KEY SHARE`)
/// no longer waits for it. With `FOR UPDATE`, a patient page's lines for a workflow waited behind
/// that workflow's step, which itself may wait for the outbound events' lock: with three
/// instances, groups of page lines ran into the 5 s lock timeout (`chairside bench --instances 3`).
/// No key column of these tables is ever updated.
pub(super) const ROW_LOCK: &str = " FOR NO KEY UPDATE";

/// Refuses unless the claim still holds the workflow's lease at its epoch and the lease has not
/// run out at `now`, and locks the workflow's row until the transaction ends: no claim can move
/// the epoch between this check and the commit (a claim skips the locked row).
///
/// The lock is `FOR NO KEY UPDATE`, as every row lock of this store ([`ROW_LOCK`]).
async fn check_lease(conn: &mut PgConnection, claim: &Claim, now: i64) -> Result<()> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1::BIGINT FROM workflows
         WHERE id = $1 AND epoch = $2 AND lease_owner = $3 AND lease_until >= $4 FOR NO KEY UPDATE",
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

/// Locks a workflow's row for the rest of the transaction (a staff decision, a patient's
/// request): concurrent writes to one workflow run one after the other, as under SQLite's
/// single writer. False when there is no such workflow.
async fn lock_workflow(conn: &mut PgConnection, id: &str) -> Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1::BIGINT FROM workflows WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

/// Takes a transaction-scoped advisory lock on `name` (a consent number, a login subject).
async fn lock_name(conn: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Recomputes when a workflow is next due: the earliest inbox event, timer or pending command.
async fn refresh_due(conn: &mut PgConnection, id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE workflows SET next_due_at = (
            SELECT MIN(t) FROM (
                SELECT MIN(received_at) AS t FROM inbox WHERE workflow_id = $1
                UNION ALL SELECT MIN(fire_at) FROM timers WHERE workflow_id = $1
                -- Commands run in sequence order: only the lowest pending one can be due.
                UNION ALL (SELECT not_before FROM outbox WHERE workflow_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1)
            ) AS due
        ) WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_command(
    conn: &mut PgConnection,
    key: &Keyring,
    id: &str,
    command: &Command,
    idempotency_key: &str,
    now: i64,
) -> Result<()> {
    let seq = command.seq.to_string();
    let sealed = OUTBOX_COMMAND.seal_json(key, &[id, &seq], command)?;
    sqlx::query("INSERT INTO outbox (workflow_id, seq, action, command, not_before, created_at, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7)")
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
    conn: &mut PgConnection,
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
        "INSERT INTO events (id, workflow_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5, $6)",
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
    conn: &mut PgConnection,
    key: &Keyring,
    id: &str,
    source: &str,
    event: &Event,
    now: i64,
) -> Result<()> {
    let row = next_id(conn, INBOX_EVENT.table).await?;
    let sealed = INBOX_EVENT.seal_json(key, &[&row.to_string()], event)?;
    sqlx::query(
        "INSERT INTO inbox (id, workflow_id, source, event, received_at) VALUES ($1, $2, $3, $4, $5)",
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
        "UPDATE workflows SET next_due_at = LEAST(COALESCE(next_due_at, $2), $2) WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts a newly detected workflow unless its (practice, plan, revision) is already known.
/// True when it was inserted.
async fn insert_workflow(
    conn: &mut PgConnection,
    key: &Keyring,
    state: &WorkflowState,
    now: i64,
) -> Result<bool> {
    let sealed = WORKFLOW_STATE.seal_json(key, &[state.id.as_str()], state)?;
    let inserted = sqlx::query(
        "INSERT INTO workflows (id, practice_id, plan_id, revision, patient_id, status, stage, state,
            accepted_at, created_at, updated_at, next_due_at, ledger_written_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT DO NOTHING",
    )
    .bind(state.id.as_str())
    .bind(state.key.practice_id.as_str())
    .bind(state.key.plan_id.as_str())
    .bind(&state.key.revision)
    .bind(state.patient_id.as_str())
    .bind(state.status.label())
    .bind(state.stage_label())
    .bind(sealed)
    .bind(ms(state.accepted_at))
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(state.ledger_written_at.map(ms))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

fn row_to_workflow(key: &Keyring, row: &sqlx::postgres::PgRow) -> Result<WorkflowRow> {
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

#[cfg(test)]
mod tests {
    use super::is_postgres_url;

    #[test]
    fn postgres_urls_are_told_from_sqlite_paths() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h:5432/db?sslmode=require"));
        assert!(is_postgres_url("PostgreSQL://u@h/db"));
        assert!(!is_postgres_url("sqlite://chairside.sqlite"));
        assert!(!is_postgres_url("chairside.sqlite"));
        assert!(!is_postgres_url("/var/lib/chairside/postgres.sqlite"));
    }
}
