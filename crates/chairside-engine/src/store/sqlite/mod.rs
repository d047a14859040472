//! The embedded store: one SQLite file, WAL, `BEGIN IMMEDIATE` for every write transaction. One
//! file per role implements that role's trait; the helpers they share live here.

mod inbound;
mod patient;
mod quarantine;
mod report;
mod schema;
mod staff;
mod workflow;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use financing_core::{PatientId, PracticeId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::crypto::DataKey;
use super::{Claim, Result, StoreError, WorkflowRow};
use chairside_workflow::{Command, Event, TaskKind, WorkflowState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    key: Arc<DataKey>,
    writes: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with WAL and a 5 s busy timeout.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn open(path: &std::path::Path, key: DataKey) -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            key: Arc::new(key),
            writes: Arc::new(AtomicU64::new(0)),
            skipped: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        // BEGIN IMMEDIATE takes the write lock up front: a read-then-write transaction cannot fail
        // to upgrade under WAL's single writer.
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn finish(&self, tx: sqlx::Transaction<'static, sqlx::Sqlite>) -> Result<()> {
        tx.commit().await?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn associated(practice: &PracticeId, patient: &PatientId) -> Vec<u8> {
        format!("patient:{practice}/{patient}").into_bytes()
    }
}

/// Refuses unless the claim still holds the workflow's lease at its epoch.
async fn check_lease(conn: &mut SqliteConnection, claim: &Claim) -> Result<()> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM workflows WHERE id = ? AND epoch = ? AND lease_owner = ?",
    )
    .bind(claim.id.as_str())
    .bind(claim.epoch)
    .bind(&claim.owner)
    .fetch_optional(&mut *conn)
    .await?;
    if held.is_some() {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(claim.id.clone()))
    }
}

/// Recomputes when a workflow is next due: the earliest inbox event, timer or pending command.
async fn refresh_due(conn: &mut SqliteConnection, id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE workflows SET next_due_at = (
            SELECT MIN(t) FROM (
                SELECT MIN(received_at) AS t FROM inbox WHERE workflow_id = ?1
                UNION ALL SELECT MIN(fire_at) FROM timers WHERE workflow_id = ?1
                -- Commands run in sequence order: only the lowest pending one can be due.
                UNION ALL SELECT not_before FROM (
                    SELECT not_before FROM outbox WHERE workflow_id = ?1 AND status = 'pending' ORDER BY seq LIMIT 1
                )
            )
        ) WHERE id = ?1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_command(
    conn: &mut SqliteConnection,
    id: &str,
    command: &Command,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO outbox (workflow_id, seq, action, command, not_before, created_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(id)
        .bind(command.seq as i64)
        .bind(command.action.label())
        .bind(serde_json::to_string(command)?)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_audit(
    conn: &mut SqliteConnection,
    id: &str,
    actor: &str,
    kind: &str,
    detail: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO events (workflow_id, at, actor, kind, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(now)
        .bind(actor)
        .bind(kind)
        .bind(detail)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_inbox(
    conn: &mut SqliteConnection,
    id: &str,
    source: &str,
    event: &Event,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO inbox (workflow_id, source, event, received_at) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(source)
        .bind(serde_json::to_string(event)?)
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

fn row_to_workflow(row: &sqlx::sqlite::SqliteRow) -> Result<WorkflowRow> {
    let state: WorkflowState = serde_json::from_str(row.try_get::<&str, _>("state")?)?;
    Ok(WorkflowRow {
        state,
        updated_at: from_ms(row.try_get("updated_at")?),
        next_due_at: row.try_get::<Option<i64>, _>("next_due_at")?.map(from_ms),
        next_action: row.try_get("next_action")?,
    })
}

fn task_kind(label: &str) -> TaskKind {
    [
        TaskKind::BadData,
        TaskKind::Unreachable,
        TaskKind::Counteroffer,
        TaskKind::PatientQuiet,
        TaskKind::NoFinancing,
        TaskKind::PaymentFailed,
        TaskKind::SystemError,
        TaskKind::ConsentRefusal,
    ]
    .into_iter()
    .find(|k| k.label() == label)
    .unwrap_or(TaskKind::SystemError)
}

const WORKFLOW_COLUMNS: &str = "w.state, w.updated_at, w.next_due_at,
    (SELECT action FROM outbox o WHERE o.workflow_id = w.id AND o.status = 'pending' ORDER BY seq LIMIT 1) AS next_action";
