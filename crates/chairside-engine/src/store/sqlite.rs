//! The embedded store: one SQLite file, WAL, `BEGIN IMMEDIATE` for every write transaction.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{PatientContact, PatientId, PracticeId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::crypto::DataKey;
use super::{
    AuditRow, Claim, Consumed, NewWorkflow, Result, SmsConsentRecord, Store, StoreCounters,
    StoreError, TaskRow, Work, WorkItem, WorkflowRow,
};
use chairside_workflow::machine::Transition;
use chairside_workflow::{
    Command, Event, StaffTask, Status, TaskKind, TimerKind, WorkflowId, WorkflowState,
};

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

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<bool> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(0);
        Ok(applied as usize >= MIGRATOR.iter().count())
    }

    async fn record_poll(
        &self,
        practice: &PracticeId,
        source: &str,
        cursor: &str,
        new: Vec<NewWorkflow>,
        events: Vec<(WorkflowId, Event)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>> {
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let mut created = Vec::new();
        for NewWorkflow { state, first } in new {
            let inserted = sqlx::query(
                "INSERT INTO workflows (id, practice_id, plan_id, revision, patient_id, status, stage, state,
                    accepted_at, created_at, updated_at, next_due_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (practice_id, plan_id, revision) DO NOTHING",
            )
            .bind(state.id.as_str())
            .bind(state.key.practice_id.as_str())
            .bind(state.key.plan_id.as_str())
            .bind(&state.key.revision)
            .bind(state.patient_id.as_str())
            .bind(state.status.label())
            .bind(state.stage_label())
            .bind(serde_json::to_string(&state)?)
            .bind(ms(state.accepted_at))
            .bind(now_ms)
            .bind(now_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                // An edit after acceptance is a new revision: the earlier revisions' workflows are
                // withdrawn, so one plan never has two live schedules.
                let earlier: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM workflows WHERE practice_id = ? AND plan_id = ? AND revision <> ? AND status <> 'cancelled'",
                )
                .bind(state.key.practice_id.as_str())
                .bind(state.key.plan_id.as_str())
                .bind(&state.key.revision)
                .fetch_all(&mut *tx)
                .await?;
                for old in earlier {
                    let event = Event::PlanWithdrawn {
                        reason: "edited".into(),
                    };
                    insert_inbox(&mut tx, &old, "poller", &event, now_ms).await?;
                }
                insert_command(&mut tx, state.id.as_str(), &first, now_ms).await?;
                insert_audit(
                    &mut tx,
                    state.id.as_str(),
                    "poller",
                    "detected",
                    &format!("plan accepted ({source})"),
                    now_ms,
                )
                .await?;
                created.push(state.id);
            }
        }
        for (id, event) in events {
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM workflows WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_some() {
                insert_inbox(&mut tx, id.as_str(), "poller", &event, now_ms).await?;
            }
        }
        sqlx::query(
            "INSERT INTO sync_cursors (practice_id, source, cursor, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (practice_id, source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(practice.as_str())
        .bind(source)
        .bind(cursor)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await?;
        Ok(created)
    }

    async fn cursor(&self, practice: &PracticeId, source: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT cursor FROM sync_cursors WHERE practice_id = ? AND source = ?",
        )
        .bind(practice.as_str())
        .bind(source)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claim>> {
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        // Leases are judged by one clock: the time the caller passes for the whole fleet of runners on
        // this file, which on SQLite is one machine.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM workflows
             WHERE next_due_at IS NOT NULL AND next_due_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1)
             ORDER BY next_due_at LIMIT ?2",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let until = now_ms + lease.as_millis() as i64;
        let mut claims = Vec::with_capacity(ids.len());
        for id in ids {
            let epoch: i64 = sqlx::query_scalar(
                "UPDATE workflows SET lease_owner = ?, lease_until = ?, epoch = epoch + 1 WHERE id = ? RETURNING epoch",
            )
            .bind(owner)
            .bind(until)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            claims.push(Claim {
                id: WorkflowId::new(id),
                epoch,
                owner: owner.to_owned(),
            });
        }
        if claims.is_empty() {
            tx.rollback().await?;
        } else {
            self.finish(tx).await?;
        }
        Ok(claims)
    }

    async fn load(&self, claim: &Claim, now: DateTime<Utc>) -> Result<Work> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT state, epoch, lease_owner FROM workflows WHERE id = ?")
            .bind(claim.id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::LeaseLost(claim.id.clone()))?;
        if row.try_get::<i64, _>("epoch")? != claim.epoch
            || row.try_get::<Option<String>, _>("lease_owner")?.as_deref() != Some(&claim.owner)
        {
            return Err(StoreError::LeaseLost(claim.id.clone()));
        }
        let state: WorkflowState = serde_json::from_str(row.try_get::<&str, _>("state")?)?;
        let id = claim.id.as_str();
        if let Some(r) =
            sqlx::query("SELECT id, event FROM inbox WHERE workflow_id = ? ORDER BY id LIMIT 1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        {
            let event: Event = serde_json::from_str(r.try_get::<&str, _>("event")?)?;
            return Ok(Work {
                state,
                item: Some(WorkItem::Inbox {
                    id: r.try_get("id")?,
                    event,
                }),
            });
        }
        let now_ms = ms(now);
        if let Some(kind) = sqlx::query_scalar::<_, String>("SELECT kind FROM timers WHERE workflow_id = ? AND fire_at <= ? ORDER BY fire_at LIMIT 1")
            .bind(id)
            .bind(now_ms)
            .fetch_optional(&mut *conn)
            .await?
            .and_then(|k| TimerKind::from_label(&k))
        {
            return Ok(Work { state, item: Some(WorkItem::Timer(kind)) });
        }
        let pending = sqlx::query("SELECT command, attempts, not_before FROM outbox WHERE workflow_id = ? AND status = 'pending' ORDER BY seq LIMIT 1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(r) = pending
            && r.try_get::<i64, _>("not_before")? <= now_ms
        {
            let command: Command = serde_json::from_str(r.try_get::<&str, _>("command")?)?;
            let attempts = u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX);
            return Ok(Work {
                state,
                item: Some(WorkItem::Command { command, attempts }),
            });
        }
        Ok(Work { state, item: None })
    }

    async fn begin_effect(
        &self,
        claim: &Claim,
        command: &Command,
        attempt: u32,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        let mut tx = self.begin().await?;
        check_lease(&mut tx, claim).await?;
        // A call repeated after a crash is a new attempt in the journal, whatever the outbox
        // counted: the dead runner's intent row stays as evidence of the first call.
        let journaled: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(attempt) FROM effects WHERE workflow_id = ? AND seq = ?",
        )
        .bind(claim.id.as_str())
        .bind(command.seq as i64)
        .fetch_one(&mut *tx)
        .await?;
        let attempt = attempt.max(u32::try_from(journaled.unwrap_or(0) + 1).unwrap_or(u32::MAX));
        sqlx::query(
            "INSERT INTO effects (workflow_id, seq, attempt, action, idempotency_key, epoch, intent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(claim.id.as_str())
        .bind(command.seq as i64)
        .bind(i64::from(attempt))
        .bind(command.action.label())
        .bind(key)
        .bind(claim.epoch)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await?;
        Ok(attempt)
    }

    async fn park(
        &self,
        claim: &Claim,
        until: DateTime<Utc>,
        task: &StaffTask,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        check_lease(&mut tx, claim).await?;
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM staff_tasks WHERE workflow_id = ? AND kind = ? AND resolved_at IS NULL",
        )
        .bind(claim.id.as_str())
        .bind(task.kind.label())
        .fetch_optional(&mut *tx)
        .await?;
        if open.is_none() {
            let practice: String =
                sqlx::query_scalar("SELECT practice_id FROM workflows WHERE id = ?")
                    .bind(claim.id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query("INSERT INTO staff_tasks (workflow_id, practice_id, kind, reason, created_at) VALUES (?, ?, ?, ?, ?)")
                .bind(claim.id.as_str())
                .bind(practice)
                .bind(task.kind.label())
                .bind(&task.reason)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE workflows SET lease_owner = NULL, lease_until = NULL, next_due_at = ? WHERE id = ?")
            .bind(ms(until))
            .bind(claim.id.as_str())
            .execute(&mut *tx)
            .await?;
        self.finish(tx).await
    }

    async fn commit(
        &self,
        claim: &Claim,
        state: &WorkflowState,
        consumed: Consumed,
        event_label: &str,
        transition: &Transition,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now_ms = ms(now);
        let id = claim.id.as_str();
        let mut tx = self.begin().await?;
        check_lease(&mut tx, claim).await?;
        match &consumed {
            Consumed::Inbox(row) => {
                sqlx::query("DELETE FROM inbox WHERE id = ?")
                    .bind(row)
                    .execute(&mut *tx)
                    .await?;
            }
            Consumed::Timer(kind) => {
                sqlx::query("DELETE FROM timers WHERE workflow_id = ? AND kind = ?")
                    .bind(id)
                    .bind(kind.label())
                    .execute(&mut *tx)
                    .await?;
            }
            Consumed::Command {
                seq,
                attempt,
                outcome,
            } => {
                sqlx::query("UPDATE outbox SET status = 'done', done_at = ?, attempts = attempts + 1 WHERE workflow_id = ? AND seq = ?")
                    .bind(now_ms)
                    .bind(id)
                    .bind(*seq as i64)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE effects SET finished_at = ?, outcome = ? WHERE workflow_id = ? AND seq = ? AND attempt = ?")
                    .bind(now_ms)
                    .bind(outcome)
                    .bind(id)
                    .bind(*seq as i64)
                    .bind(i64::from(*attempt))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for kind in &transition.clear_timers {
            sqlx::query("DELETE FROM timers WHERE workflow_id = ? AND kind = ?")
                .bind(id)
                .bind(kind.label())
                .execute(&mut *tx)
                .await?;
        }
        for (kind, at) in &transition.set_timers {
            sqlx::query(
                "INSERT INTO timers (workflow_id, kind, fire_at) VALUES (?, ?, ?)
                 ON CONFLICT (workflow_id, kind) DO UPDATE SET fire_at = excluded.fire_at",
            )
            .bind(id)
            .bind(kind.label())
            .bind(ms(*at))
            .execute(&mut *tx)
            .await?;
        }
        if transition.drop_pending_messages {
            sqlx::query("UPDATE outbox SET status = 'dropped', done_at = ? WHERE workflow_id = ? AND status = 'pending' AND action = 'send_message'")
                .bind(now_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for command in &transition.commands {
            insert_command(&mut tx, id, command, now_ms).await?;
        }
        if let Some(task) = &transition.raise_task {
            sqlx::query("INSERT INTO staff_tasks (workflow_id, practice_id, kind, reason, created_at) VALUES (?, ?, ?, ?, ?)")
                .bind(id)
                .bind(state.key.practice_id.as_str())
                .bind(task.kind.label())
                .bind(&task.reason)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        let detail = if transition.audit.is_empty() {
            String::new()
        } else {
            transition.audit.join("; ")
        };
        insert_audit(&mut tx, id, "runner", event_label, &detail, now_ms).await?;
        sqlx::query(
            "UPDATE workflows SET state = ?, status = ?, stage = ?, updated_at = ?, ledger_written_at = ? WHERE id = ?",
        )
        .bind(serde_json::to_string(state)?)
        .bind(state.status.label())
        .bind(state.stage_label())
        .bind(now_ms)
        .bind(state.ledger_written_at.map(ms))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        refresh_due(&mut tx, id).await?;
        self.finish(tx).await
    }

    async fn defer_command(
        &self,
        claim: &Claim,
        seq: u64,
        attempt: u32,
        outcome: &str,
        not_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let id = claim.id.as_str();
        let mut tx = self.begin().await?;
        check_lease(&mut tx, claim).await?;
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, not_before = ? WHERE workflow_id = ? AND seq = ?")
            .bind(ms(not_before))
            .bind(id)
            .bind(seq as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE effects SET finished_at = ?, outcome = ? WHERE workflow_id = ? AND seq = ? AND attempt = ?")
            .bind(ms(now))
            .bind(outcome)
            .bind(id)
            .bind(seq as i64)
            .bind(i64::from(attempt))
            .execute(&mut *tx)
            .await?;
        refresh_due(&mut tx, id).await?;
        self.finish(tx).await
    }

    async fn release(&self, claim: &Claim, _now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE workflows SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND epoch = ? AND lease_owner = ?")
            .bind(claim.id.as_str())
            .bind(claim.epoch)
            .bind(&claim.owner)
            .execute(&mut *tx)
            .await?;
        refresh_due(&mut tx, claim.id.as_str()).await?;
        self.finish(tx).await
    }

    async fn enqueue(
        &self,
        workflow: &WorkflowId,
        source: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_inbox(&mut tx, workflow.as_str(), source, event, ms(now)).await?;
        self.finish(tx).await
    }

    async fn record_webhook(
        &self,
        provider: &str,
        event_id: &str,
        events: Vec<(WorkflowId, Event)>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let fresh = sqlx::query("INSERT INTO webhooks (provider, event_id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(provider)
            .bind(event_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !fresh {
            tx.rollback().await?;
            return Ok(false);
        }
        let source = format!("webhook:{provider}");
        for (id, event) in events {
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM workflows WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_some() {
                insert_inbox(&mut tx, id.as_str(), &source, &event, now_ms).await?;
            }
        }
        self.finish(tx).await?;
        Ok(true)
    }

    async fn put_patient(
        &self,
        practice: &PracticeId,
        contact: &PatientContact,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let plain = serde_json::to_vec(contact)?;
        let sealed = self
            .key
            .seal(&plain, &Self::associated(practice, &contact.id));
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO patients (practice_id, patient_id, contact, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (practice_id, patient_id) DO UPDATE SET contact = excluded.contact, updated_at = excluded.updated_at",
        )
        .bind(practice.as_str())
        .bind(contact.id.as_str())
        .bind(sealed)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await
    }

    async fn patient(
        &self,
        practice: &PracticeId,
        patient: &PatientId,
    ) -> Result<Option<PatientContact>> {
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT contact FROM patients WHERE practice_id = ? AND patient_id = ?",
        )
        .bind(practice.as_str())
        .bind(patient.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match sealed {
            None => Ok(None),
            Some(sealed) => {
                let plain = self
                    .key
                    .open(&sealed, &Self::associated(practice, patient))?;
                Ok(Some(serde_json::from_slice(&plain)?))
            }
        }
    }

    async fn set_sms_opt_out(
        &self,
        practice: &PracticeId,
        phone: &str,
        opted_out: bool,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sms_consent (practice_id, phone_key, opted_out, source, at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (practice_id, phone_key) DO UPDATE SET opted_out = excluded.opted_out, source = excluded.source, at = excluded.at
             -- The latest change wins; at an equal instant an opt-out wins, so webhooks processed
             -- out of order never re-subscribe anyone.
             WHERE excluded.at > sms_consent.at OR (excluded.at = sms_consent.at AND excluded.opted_out = 1)",
        )
        .bind(practice.as_str())
        .bind(self.key.lookup_key(phone))
        .bind(opted_out)
        .bind(source)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await
    }

    async fn sms_opted_out(&self, practice: &PracticeId, phone: &str) -> Result<bool> {
        let v: Option<bool> = sqlx::query_scalar(
            "SELECT opted_out FROM sms_consent WHERE practice_id = ? AND phone_key = ?",
        )
        .bind(practice.as_str())
        .bind(self.key.lookup_key(phone))
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.unwrap_or(false))
    }

    async fn sms_consent(
        &self,
        practice: &PracticeId,
        phone: &str,
    ) -> Result<Option<SmsConsentRecord>> {
        let row = sqlx::query(
            "SELECT opted_out, at, source FROM sms_consent WHERE practice_id = ? AND phone_key = ?",
        )
        .bind(practice.as_str())
        .bind(self.key.lookup_key(phone))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SmsConsentRecord {
                opted_out: r.try_get("opted_out")?,
                at: from_ms(r.try_get("at")?),
                source: r.try_get("source")?,
            })
        })
        .transpose()
    }

    async fn workflow(&self, id: &WorkflowId) -> Result<Option<WorkflowRow>> {
        let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM workflows w WHERE w.id = ?");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_workflow).transpose()
    }

    async fn workflows(
        &self,
        practice: Option<&PracticeId>,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<WorkflowRow>> {
        let sql = format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows w
             WHERE (?1 IS NULL OR w.practice_id = ?1) AND (?2 IS NULL OR w.status = ?2)
             ORDER BY w.accepted_at DESC, w.id LIMIT ?3"
        );
        let rows = sqlx::query(&sql)
            .bind(practice.map(PracticeId::as_str))
            .bind(status.map(Status::label))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_workflow).collect()
    }

    async fn tasks(
        &self,
        practice: Option<&PracticeId>,
        include_resolved: bool,
    ) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(
            "SELECT id, workflow_id, practice_id, kind, reason, created_at, resolved_at FROM staff_tasks
             WHERE (?1 IS NULL OR practice_id = ?1) AND (?2 OR resolved_at IS NULL) ORDER BY id",
        )
        .bind(practice.map(PracticeId::as_str))
        .bind(include_resolved)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TaskRow {
                    id: r.try_get("id")?,
                    workflow_id: WorkflowId::new(r.try_get::<String, _>("workflow_id")?),
                    practice_id: PracticeId::new(r.try_get::<String, _>("practice_id")?),
                    task: StaffTask {
                        kind: task_kind(r.try_get("kind")?),
                        reason: r.try_get("reason")?,
                    },
                    created_at: from_ms(r.try_get("created_at")?),
                    resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(from_ms),
                })
            })
            .collect()
    }

    async fn resolve_tasks(
        &self,
        workflow: &WorkflowId,
        resolution: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE staff_tasks SET resolved_at = ?, resolution = ? WHERE workflow_id = ? AND resolved_at IS NULL")
            .bind(ms(now))
            .bind(resolution)
            .bind(workflow.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.finish(tx).await?;
        Ok(n)
    }

    async fn audit(&self, workflow: &WorkflowId) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT at, actor, kind, detail FROM events WHERE workflow_id = ? ORDER BY id",
        )
        .bind(workflow.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    at: from_ms(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    async fn append_audit(
        &self,
        workflow: &WorkflowId,
        actor: &str,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_audit(&mut tx, workflow.as_str(), actor, kind, detail, ms(now)).await?;
        self.finish(tx).await
    }

    fn counters(&self) -> StoreCounters {
        StoreCounters {
            write_transactions: self.writes.load(Ordering::Relaxed),
        }
    }
}
