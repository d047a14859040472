//! [`OutboxStore`] on PostgreSQL (deliveries claimed with `FOR UPDATE SKIP LOCKED`), and the hooks
//! [`record_events`] and [`insert_events`] that the workflow commit calls in its own transaction.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::{PostgresStore, WORKFLOW_STATE, from_ms, ms};
use crate::outbound::events::{OutboundEvent, derive};
use crate::store::Result;
use crate::store::crypto::Keyring;
use crate::store::outbox::{
    AttemptOutcome, DeliveryCounts, DeliveryJob, DeliveryRow, Digest, OutboxStore, OutcomeColumns,
    StoredEvent,
};
use chairside_workflow::{StaffTask, WorkflowState};

/// Derives the outbound events of a step (the state before, read here, against `after`) in the
/// step's transaction, before the new state is stored; the runner's group commit
/// (`postgres/group.rs`) writes them with [`insert_events_locked`] as the last statements before
/// its `COMMIT`. A stored state that no longer opens yields no event: the step
/// itself decides what to do with such a workflow.
pub(super) async fn record_events(
    conn: &mut PgConnection,
    key: &Keyring,
    id: &str,
    after: &WorkflowState,
    raised: Option<&StaffTask>,
    now: DateTime<Utc>,
) -> Result<Vec<OutboundEvent>> {
    let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT state FROM workflows WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(sealed) = sealed else {
        return Ok(Vec::new());
    };
    let before: WorkflowState = match WORKFLOW_STATE.open_json(key, &[id], &sealed) {
        Ok(state) => state,
        Err(_) => return Ok(Vec::new()),
    };
    let raised = match raised {
        Some(task) => {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM staff_tasks WHERE workflow_id = $1")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
            Some((task, n))
        }
        None => None,
    };
    Ok(derive(&before, after, raised, now))
}

/// The `workflow.needs_staff` event of a task raised beside a step (a patient's report, a parked
/// workflow), after the task's row: staff alerts and subscribers hear of it as of any task the
/// workflow raises. `state` is the workflow as stored (the task does not change it); the caller
/// writes the events with [`insert_events`] last before its commit.
pub(super) async fn task_events(
    conn: &mut PgConnection,
    id: &str,
    state: &WorkflowState,
    task: &StaffTask,
    now: DateTime<Utc>,
) -> Result<Vec<OutboundEvent>> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM staff_tasks WHERE workflow_id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(derive(state, state, Some((task, n)), now))
}

/// Inserts outbound events (a staff decision's, a poll's); the caller commits right after.
///
/// The fan-out reads events by id past a cursor (`events_after_cursor`), so ids must become
/// visible in their order. A sequence hands them out at insert, not at commit: two transactions
/// committing at once could show id 8 before id 7, and a cursor moved past 8 would never see 7.
/// Transactions that write events take this lock until they commit, so they commit one after the
/// other, in id order (SQLite's single writer gives the same). Every writer of events waits for
/// it, so it is taken last, with nothing but these inserts and the commit after it: taken
/// mid-commit, it was held across the audit row, the state update and the due-time refresh, and
/// under CPU load steps queued on it for one to two seconds each. The runner's steps take it once
/// per group commit ([`lock_events`], [`insert_events_locked`]), not once each.
pub(super) async fn insert_events(
    conn: &mut PgConnection,
    id: &str,
    events: Vec<OutboundEvent>,
    now: DateTime<Utc>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    lock_events(conn).await?;
    insert_events_locked(conn, id, events, now).await
}

/// Takes the outbound events' lock ([`insert_events`]) until the transaction ends.
pub(super) async fn lock_events(conn: &mut PgConnection) -> Result<()> {
    super::lock_name(conn, "outbound_events").await
}

/// [`insert_events`] in a transaction that holds the events' lock already ([`lock_events`]): the
/// runner's group commit inserts all its steps' events under one taking of the lock.
pub(super) async fn insert_events_locked(
    conn: &mut PgConnection,
    id: &str,
    events: Vec<OutboundEvent>,
    now: DateTime<Utc>,
) -> Result<()> {
    for event in events {
        sqlx::query(
            "INSERT INTO outbound_events (event_id, workflow_id, practice_id, type, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(id)
        .bind(&event.data.practice_id)
        .bind(event.kind.label())
        .bind(event.payload())
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn event_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        row: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        kind: row.try_get("type")?,
        workflow_id: row.try_get("workflow_id")?,
        practice_id: row.try_get("practice_id")?,
        payload: row.try_get("payload")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}

fn status_of(v: Option<i64>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn events_after_cursor(
        &self,
        subscriber: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT last_event FROM outbound_cursors WHERE subscriber = $1")
                .bind(subscriber)
                .fetch_optional(&self.pool)
                .await?;
        let cursor = match cursor {
            Some(c) => c,
            None => {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO outbound_cursors (subscriber, last_event, since)
                     VALUES ($1, (SELECT COALESCE(MAX(id), 0) FROM outbound_events), $2)
                     ON CONFLICT (subscriber) DO NOTHING",
                )
                .bind(subscriber)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                let c: i64 = sqlx::query_scalar(
                    "SELECT last_event FROM outbound_cursors WHERE subscriber = $1",
                )
                .bind(subscriber)
                .fetch_one(&mut *tx)
                .await?;
                self.finish(tx).await?;
                c
            }
        };
        let rows = sqlx::query(
            "SELECT id, event_id, type, workflow_id, practice_id, payload, created_at
             FROM outbound_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn enqueue_deliveries(
        &self,
        subscriber: &str,
        wanted: &[&StoredEvent],
        through: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        for event in wanted {
            sqlx::query(
                "INSERT INTO outbound_deliveries (event, subscriber, practice_id, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event, subscriber) DO NOTHING",
            )
            .bind(event.row)
            .bind(subscriber)
            .bind(&event.practice_id)
            .bind(ms(now))
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE outbound_cursors SET last_event = GREATEST(last_event, $1) WHERE subscriber = $2",
        )
        .bind(through)
        .bind(subscriber)
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeliveryJob>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT d.id AS delivery, d.subscriber, d.attempts,
                    e.id, e.event_id, e.type, e.workflow_id, e.practice_id, e.payload, e.created_at
             FROM outbound_deliveries d JOIN outbound_events e ON e.id = d.event
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1
               AND (d.lease_until IS NULL OR d.lease_until <= $1)
             ORDER BY d.next_attempt_at, d.id LIMIT $2
             FOR UPDATE OF d SKIP LOCKED",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("delivery")?;
            let attempts: i64 = row.try_get("attempts")?;
            sqlx::query(
                "UPDATE outbound_deliveries SET attempts = attempts + 1, lease_owner = $1, lease_until = $2, last_attempt_at = $3 WHERE id = $4",
            )
            .bind(owner)
            .bind(ms(until))
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            jobs.push(DeliveryJob {
                id,
                subscriber: row.try_get("subscriber")?,
                attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                event: event_from_row(row)?,
            });
        }
        self.finish(tx).await?;
        Ok(jobs)
    }

    async fn finish_delivery(
        &self,
        job: &DeliveryJob,
        owner: &str,
        outcome: &AttemptOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let OutcomeColumns {
            status,
            next,
            code,
            error,
            done,
            uncounted,
        } = outcome.columns(now);
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE outbound_deliveries SET status = $1, next_attempt_at = COALESCE($2, next_attempt_at),
                 last_status = $3, last_error = $4, done_at = $5, lease_owner = NULL, lease_until = NULL,
                 attempts = attempts - $9
             WHERE id = $6 AND lease_owner = $7 AND attempts = $8 AND status = 'pending'",
        )
        .bind(status)
        .bind(next.map(ms))
        .bind(code.map(i64::from))
        .bind(error)
        .bind(done.map(ms))
        .bind(job.id)
        .bind(owner)
        .bind(i64::from(job.attempt))
        .bind(uncounted)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.finish(tx).await?;
        Ok(changed == 1)
    }

    async fn requeue_delivery(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE outbound_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, done_at = NULL
             WHERE id = $2 AND status = 'failed'",
        )
        .bind(ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.finish(tx).await?;
        Ok(changed == 1)
    }

    async fn deliveries(
        &self,
        practice: Option<&str>,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT d.id, d.subscriber, e.event_id, e.type, e.workflow_id, d.practice_id, d.status,
                    d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.done_at
             FROM outbound_deliveries d JOIN outbound_events e ON e.id = d.event
             WHERE ($1 IS NULL OR d.practice_id = $1) AND ($2 IS NULL OR d.status = $2)
             ORDER BY d.id DESC LIMIT $3",
        )
        .bind(practice)
        .bind(status)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                let pending = status == "pending";
                Ok(DeliveryRow {
                    id: row.try_get("id")?,
                    subscriber: row.try_get("subscriber")?,
                    event_id: row.try_get("event_id")?,
                    kind: row.try_get("type")?,
                    workflow_id: row.try_get("workflow_id")?,
                    practice_id: row.try_get("practice_id")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                    next_attempt_at: pending
                        .then(|| row.try_get::<i64, _>("next_attempt_at").map(from_ms))
                        .transpose()?,
                    last_attempt_at: row
                        .try_get::<Option<i64>, _>("last_attempt_at")?
                        .map(from_ms),
                    last_status: status_of(row.try_get("last_status")?),
                    last_error: row.try_get("last_error")?,
                    done_at: row.try_get::<Option<i64>, _>("done_at")?.map(from_ms),
                    status,
                })
            })
            .collect()
    }

    async fn delivery_counts(&self) -> Result<DeliveryCounts> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM outbound_deliveries GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        let mut counts = DeliveryCounts::default();
        for row in rows {
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            match row.try_get::<&str, _>("status")? {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                "failed" => counts.failed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn outbound_events(&self, workflow_id: &str) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, event_id, type, workflow_id, practice_id, payload, created_at
             FROM outbound_events WHERE workflow_id = $1 ORDER BY id",
        )
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn undigested_events(
        &self,
        practice_id: &str,
        kind: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT e.id, e.event_id, e.type, e.workflow_id, e.practice_id, e.payload, e.created_at
             FROM outbound_events e
             WHERE e.practice_id = $1 AND e.type = $2 AND e.created_at >= $3 AND e.created_at < $4
               AND NOT EXISTS (SELECT 1 FROM staff_alert_digests d WHERE d.event_id = e.event_id)
             ORDER BY e.id LIMIT $5",
        )
        .bind(practice_id)
        .bind(kind)
        .bind(ms(from))
        .bind(ms(until))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn collect_digest(
        &self,
        key: &str,
        practice_id: &str,
        lead: &str,
        event_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        for id in event_ids {
            let done = sqlx::query(
                "INSERT INTO staff_alert_digests (event_id, digest_key, practice_id, is_lead, collected_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(id)
            .bind(key)
            .bind(practice_id)
            .bind(id == lead)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                // Already in another digest: nothing of this one is written.
                tx.rollback().await?;
                return Ok(false);
            }
        }
        self.finish(tx).await?;
        Ok(true)
    }

    async fn digest_of(&self, event_id: &str) -> Result<Option<Digest>> {
        let key: Option<String> =
            sqlx::query_scalar("SELECT digest_key FROM staff_alert_digests WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(key) = key else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT e.id, e.event_id, e.type, e.workflow_id, e.practice_id, e.payload, e.created_at,
                    d.is_lead AS lead
             FROM staff_alert_digests d JOIN outbound_events e ON e.event_id = d.event_id
             WHERE d.digest_key = $1 ORDER BY e.id",
        )
        .bind(&key)
        .fetch_all(&self.pool)
        .await?;
        let mut lead = String::new();
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = event_from_row(row)?;
            let is_lead: bool = row.try_get("lead")?;
            if is_lead {
                lead.clone_from(&event.event_id);
            }
            events.push(event);
        }
        Ok(Some(Digest { key, lead, events }))
    }
}
