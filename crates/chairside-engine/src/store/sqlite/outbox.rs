//! [`OutboxStore`] on SQLite. The step's outbound events are written by the workflow commit, in
//! its own transaction (`onehop::record_events`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use super::{SqliteStore, from_ms, ms};
use crate::outbound::events::derive;
use crate::store::Result;
use crate::store::outbox::{
    AttemptOutcome, DeliveryCounts, DeliveryJob, DeliveryRow, Digest, OutboxStore, OutcomeColumns,
    StoredEvent,
};

fn event_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent> {
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

/// The `workflow.needs_staff` event of a task raised beside a step (a patient's report), in the
/// caller's transaction after the task's row: staff alerts and subscribers hear of it as of any
/// task the workflow raises. `state` is the workflow as stored (the task does not change it).
pub(super) async fn record_task_event(
    conn: &mut SqliteConnection,
    id: &str,
    state: &chairside_workflow::WorkflowState,
    task: &chairside_workflow::StaffTask,
    now: DateTime<Utc>,
) -> Result<()> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM staff_tasks WHERE workflow_id = ?")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    for event in derive(state, state, Some((task, n)), now) {
        insert_event(conn, id, &event, now).await?;
    }
    Ok(())
}

/// Writes one outbound event of `workflow_id` (empty for an event about a plan before any
/// workflow, `plan.needs_staff`) in the caller's transaction; an event already written is left
/// alone. SQLite's single writer keeps ids in commit order.
pub(super) async fn insert_event(
    conn: &mut SqliteConnection,
    workflow_id: &str,
    event: &crate::outbound::events::OutboundEvent,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbound_events (event_id, workflow_id, practice_id, type, payload, created_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(workflow_id)
    .bind(&event.data.practice_id)
    .bind(event.kind.label())
    .bind(event.payload())
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn events_after_cursor(
        &self,
        subscriber: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT last_event FROM outbound_cursors WHERE subscriber = ?")
                .bind(subscriber)
                .fetch_optional(&self.pool)
                .await?;
        let cursor = match cursor {
            Some(c) => c,
            None => {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO outbound_cursors (subscriber, last_event, since)
                     VALUES (?, (SELECT COALESCE(MAX(id), 0) FROM outbound_events), ?)
                     ON CONFLICT (subscriber) DO NOTHING",
                )
                .bind(subscriber)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                let c: i64 = sqlx::query_scalar(
                    "SELECT last_event FROM outbound_cursors WHERE subscriber = ?",
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
             FROM outbound_events WHERE id > ? ORDER BY id LIMIT ?",
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
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (event, subscriber) DO NOTHING",
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
            "UPDATE outbound_cursors SET last_event = MAX(last_event, ?) WHERE subscriber = ?",
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
             WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
               AND (d.lease_until IS NULL OR d.lease_until <= ?1)
             ORDER BY d.next_attempt_at, d.id LIMIT ?2",
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
                "UPDATE outbound_deliveries SET attempts = attempts + 1, lease_owner = ?, lease_until = ?, last_attempt_at = ? WHERE id = ?",
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
            "UPDATE outbound_deliveries SET attempts = attempts - ?, status = ?,
                 next_attempt_at = COALESCE(?, next_attempt_at),
                 last_status = ?, last_error = ?, done_at = ?, lease_owner = NULL, lease_until = NULL
             WHERE id = ? AND lease_owner = ? AND attempts = ? AND status = 'pending'",
        )
        .bind(uncounted)
        .bind(status)
        .bind(next.map(ms))
        .bind(code.map(i64::from))
        .bind(error)
        .bind(done.map(ms))
        .bind(job.id)
        .bind(owner)
        .bind(i64::from(job.attempt))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.finish(tx).await?;
        Ok(changed == 1)
    }

    async fn requeue_delivery(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE outbound_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, done_at = NULL
             WHERE id = ? AND status = 'failed'",
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
             WHERE (?1 IS NULL OR d.practice_id = ?1) AND (?2 IS NULL OR d.status = ?2)
             ORDER BY d.id DESC LIMIT ?3",
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
             FROM outbound_events WHERE workflow_id = ? ORDER BY id",
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
             WHERE e.practice_id = ? AND e.type = ? AND e.created_at >= ? AND e.created_at < ?
               AND NOT EXISTS (SELECT 1 FROM staff_alert_digests d WHERE d.event_id = e.event_id)
             ORDER BY e.id LIMIT ?",
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
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(id)
            .bind(key)
            .bind(practice_id)
            .bind(i64::from(id == lead))
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
            sqlx::query_scalar("SELECT digest_key FROM staff_alert_digests WHERE event_id = ?")
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
             WHERE d.digest_key = ? ORDER BY e.id",
        )
        .bind(&key)
        .fetch_all(&self.pool)
        .await?;
        let mut lead = String::new();
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = event_from_row(row)?;
            let is_lead: i64 = row.try_get("lead")?;
            if is_lead != 0 {
                lead.clone_from(&event.event_id);
            }
            events.push(event);
        }
        Ok(Some(Digest { key, lead, events }))
    }
}
