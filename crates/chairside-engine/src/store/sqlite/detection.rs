//! The detection role on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{PlanId, PracticeId};
use sqlx::{Row, SqliteConnection};

use super::{SqliteStore, WORKFLOW_STATE, from_ms, insert_audit, insert_command, insert_inbox, ms};
use crate::store::detection::{
    DetectionBatch, DetectionHealth, DetectionStore, DetectionTask, NewDetectionTask, PendingPlan,
    detection_task_from_row, edited_after_done, task_event,
};
use crate::store::{Claim, ClaimedIntent, NewWorkflow, Result};
use chairside_workflow::{Event, WorkflowId};

/// Opens a detection task once (per practice, source, plan, version and field) and, when it is
/// new, its `plan.needs_staff` event: written in the same transaction. A task already known (open or resolved) writes nothing.
async fn open_task(
    conn: &mut SqliteConnection,
    practice: &PracticeId,
    source: &str,
    task: &NewDetectionTask,
    now: DateTime<Utc>,
) -> Result<()> {
    let row: Option<i64> = sqlx::query_scalar(
        "INSERT INTO detection_tasks (practice_id, source, plan_id, marker, field, problem, kind, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (practice_id, source, plan_id, marker, field) DO NOTHING
         RETURNING id",
    )
    .bind(practice.as_str())
    .bind(source)
    .bind(&task.plan_id)
    .bind(&task.marker)
    .bind(&task.field)
    .bind(&task.problem)
    .bind(task.kind.label())
    .bind(ms(now))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        let event = task_event(practice, source, row, task, now);
        super::outbox::insert_event(conn, "", &event, now).await?;
    }
    Ok(())
}

/// The plan's other workflows that are not cancelled: (id, status).
async fn others(
    conn: &mut SqliteConnection,
    practice: &PracticeId,
    plan: &str,
    revision: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT id, status FROM workflows WHERE practice_id = ? AND plan_id = ? AND revision <> ? AND status <> 'cancelled'",
    )
    .bind(practice.as_str())
    .bind(plan)
    .bind(revision.unwrap_or(""))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("status")?)))
        .collect()
}

/// A workflow created in this transaction, claimed for `owner` and its first command's intent
/// journaled under the claim (as `claim_due` and `onehop::journal_claimed` do for a workflow
/// that is due). `None` when it is not due or its first command has no key stored.
async fn take_new(
    conn: &mut SqliteConnection,
    id: &WorkflowId,
    owner: &str,
    lease: std::time::Duration,
    now_ms: i64,
) -> Result<Option<Claim>> {
    let until = now_ms + lease.as_millis() as i64;
    let taken: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE workflows SET lease_owner = ?, lease_until = ?, epoch = epoch + 1
         WHERE id = ? AND next_due_at IS NOT NULL AND next_due_at <= ? AND lease_until IS NULL
         RETURNING epoch, next_due_at",
    )
    .bind(owner)
    .bind(until)
    .bind(id.as_str())
    .bind(now_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((epoch, due)) = taken else {
        return Ok(None);
    };
    // New: no event, no timer, no attempt yet; its one command is what is due.
    let first: Option<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, action, idempotency_key FROM outbox
         WHERE workflow_id = ? AND status = 'pending' AND not_before <= ? AND idempotency_key IS NOT NULL
           AND action <> 'start_application'
         ORDER BY seq LIMIT 1",
    )
    .bind(id.as_str())
    .bind(now_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let begun = match first {
        Some((seq, action, key)) => {
            sqlx::query(
                "INSERT INTO effects (workflow_id, seq, attempt, action, idempotency_key, epoch, intent_at)
                 VALUES (?, ?, 1, ?, ?, ?, ?)",
            )
            .bind(id.as_str())
            .bind(seq)
            .bind(&action)
            .bind(&key)
            .bind(epoch)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
            Some(ClaimedIntent {
                seq: u64::try_from(seq).unwrap_or_default(),
                attempt: 1,
                key,
            })
        }
        None => None,
    };
    Ok(Some(Claim {
        id: id.clone(),
        epoch,
        owner: owner.to_owned(),
        due_at: Some(from_ms(due)),
        begun,
    }))
}

impl SqliteStore {
    pub(super) async fn insert_new(
        &self,
        conn: &mut SqliteConnection,
        practice: &PracticeId,
        source: &str,
        NewWorkflow { state, first }: NewWorkflow,
        now_ms: i64,
    ) -> Result<Option<WorkflowId>> {
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM workflows WHERE practice_id = ? AND plan_id = ? AND revision = ?",
        )
        .bind(practice.as_str())
        .bind(state.key.plan_id.as_str())
        .bind(&state.key.revision)
        .fetch_optional(&mut *conn)
        .await?;
        if known.is_some() {
            return Ok(None);
        }
        let earlier = others(
            conn,
            practice,
            state.key.plan_id.as_str(),
            Some(&state.key.revision),
        )
        .await?;
        if earlier.iter().any(|(_, status)| status == "done") {
            // Nothing finished is torn down automatically: a person decides.
            open_task(
                conn,
                practice,
                source,
                &edited_after_done(state.key.plan_id.as_str(), &state.key.revision),
                from_ms(now_ms),
            )
            .await?;
            return Ok(None);
        }
        let sealed = WORKFLOW_STATE.seal_json(&self.key, &[state.id.as_str()], &state)?;
        sqlx::query(
            "INSERT INTO workflows (id, practice_id, plan_id, revision, patient_id, status, stage, state,
                accepted_at, created_at, updated_at, next_due_at, ledger_written_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        .bind(now_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(state.ledger_written_at.map(ms))
        .execute(&mut *conn)
        .await?;
        // A live workflow of an earlier revision is withdrawn: one plan never has two.
        for (old, _) in earlier {
            let event = Event::PlanWithdrawn {
                reason: "edited".into(),
            };
            insert_inbox(conn, &self.key, &old, "poller", &event, now_ms).await?;
        }
        insert_command(
            conn,
            &self.key,
            state.id.as_str(),
            &first,
            &state.command_key(&first),
            now_ms,
        )
        .await?;
        insert_audit(
            conn,
            &self.key,
            state.id.as_str(),
            "poller",
            "detected",
            &format!("plan accepted ({source})"),
            now_ms,
        )
        .await?;
        Ok(Some(state.id))
    }
}

#[async_trait]
impl DetectionStore for SqliteStore {
    async fn in_baseline(
        &self,
        practice: &PracticeId,
        source: &str,
        plans: &[PlanId],
    ) -> Result<Vec<PlanId>> {
        let mut found = Vec::new();
        let mut conn = self.pool.acquire().await?;
        for plan in plans {
            let hit: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM detection_baseline WHERE practice_id = ? AND source = ? AND plan_id = ?",
            )
            .bind(practice.as_str())
            .bind(source)
            .bind(plan.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            if hit.is_some() {
                found.push(plan.clone());
            }
        }
        Ok(found)
    }

    async fn record_detection(
        &self,
        practice: &PracticeId,
        source: &str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>> {
        let mut tx = self.begin().await?;
        let created = self
            .write_detection(&mut tx, practice, source, batch, now)
            .await?;
        let claims = self.take_created(&mut tx, &created, now).await?;
        self.finish_due(tx).await?;
        self.handoffs.push(claims);
        Ok(created)
    }

    async fn record_poll_failure(
        &self,
        practice: &PracticeId,
        source: &str,
        failure: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO detection_health (practice_id, source, last_failed_poll_at, consecutive_failures, last_failure)
             VALUES (?1, ?2, ?3, 1, ?4)
             ON CONFLICT (practice_id, source) DO UPDATE SET last_failed_poll_at = excluded.last_failed_poll_at,
                consecutive_failures = detection_health.consecutive_failures + 1,
                last_failure = excluded.last_failure",
        )
        .bind(practice.as_str())
        .bind(source)
        .bind(ms(now))
        .bind(failure)
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await
    }

    async fn due_pending(
        &self,
        practice: &PracticeId,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<PendingPlan>> {
        let rows = sqlx::query(
            "SELECT summary, attempts, next_at, last_error FROM detection_pending
             WHERE practice_id = ? AND source = ? AND next_at <= ? ORDER BY next_at",
        )
        .bind(practice.as_str())
        .bind(source)
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let summary: String = r.try_get("summary")?;
                Ok(PendingPlan {
                    summary: serde_json::from_str(&summary)?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    next_at: from_ms(r.try_get("next_at")?),
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }

    async fn detection_health(&self) -> Result<Vec<DetectionHealth>> {
        let rows = sqlx::query(
            "SELECT h.practice_id, h.source, h.baseline_at, h.last_good_poll_at, h.consecutive_failures, h.last_failure,
                (SELECT COUNT(*) FROM detection_tasks t WHERE t.practice_id = h.practice_id AND t.source = h.source AND t.resolved_at IS NULL) AS unreadable,
                (SELECT COUNT(*) FROM detection_pending p WHERE p.practice_id = h.practice_id AND p.source = h.source) AS pending
             FROM detection_health h ORDER BY h.practice_id, h.source",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let count = |name: &str| -> Result<u32> {
                    Ok(u32::try_from(r.try_get::<i64, _>(name)?).unwrap_or(u32::MAX))
                };
                Ok(DetectionHealth {
                    practice_id: PracticeId::new(r.try_get::<String, _>("practice_id")?),
                    source: r.try_get("source")?,
                    baseline_at: r.try_get::<Option<i64>, _>("baseline_at")?.map(from_ms),
                    last_good_poll_at: r
                        .try_get::<Option<i64>, _>("last_good_poll_at")?
                        .map(from_ms),
                    consecutive_failures: count("consecutive_failures")?,
                    last_failure: r.try_get("last_failure")?,
                    unreadable_records: count("unreadable")?,
                    pending_plans: count("pending")?,
                })
            })
            .collect()
    }

    async fn detection_tasks(
        &self,
        practice: Option<&PracticeId>,
        include_resolved: bool,
    ) -> Result<Vec<DetectionTask>> {
        let rows = sqlx::query(
            "SELECT id, practice_id, source, plan_id, marker, field, problem, kind, created_at, resolved_at
             FROM detection_tasks
             WHERE (?1 IS NULL OR practice_id = ?1) AND (?2 OR resolved_at IS NULL)
             ORDER BY id DESC LIMIT 1000",
        )
        .bind(practice.map(PracticeId::as_str))
        .bind(include_resolved)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(detection_task_from_row).collect()
    }

    async fn detection_task(
        &self,
        practice: &PracticeId,
        id: i64,
    ) -> Result<Option<DetectionTask>> {
        let row = sqlx::query(
            "SELECT id, practice_id, source, plan_id, marker, field, problem, kind, created_at, resolved_at
             FROM detection_tasks WHERE id = ? AND practice_id = ?",
        )
        .bind(id)
        .bind(practice.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(detection_task_from_row).transpose()
    }

    async fn resolve_detection_task(
        &self,
        practice: &PracticeId,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE detection_tasks SET resolved_at = ? WHERE id = ? AND practice_id = ? AND resolved_at IS NULL",
        )
        .bind(ms(now))
        .bind(id)
        .bind(practice.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.finish(tx).await?;
        Ok(n == 1)
    }
}

impl SqliteStore {
    /// In the poll's transaction: the workflows it created, claimed for this instance's runner
    /// (`Handoffs`) with their plan loads journaled, so they need no claim and no intent of their
    /// own; none when no runner is registered. The caller pushes them after the commit.
    pub(super) async fn take_created(
        &self,
        conn: &mut SqliteConnection,
        created: &[WorkflowId],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>> {
        let mut claims = Vec::new();
        if let Some((owner, lease)) = self.handoffs.taker() {
            for id in created {
                if let Some(claim) = take_new(conn, id, &owner, lease, ms(now)).await? {
                    claims.push(claim);
                }
            }
        }
        Ok(claims)
    }

    /// Writes one poll's [`DetectionBatch`] inside `tx` (the caller commits); returns the ids of
    /// the workflows created.
    pub(super) async fn write_detection(
        &self,
        conn: &mut SqliteConnection,
        practice: &PracticeId,
        source: &str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>> {
        let now_ms = ms(now);
        for plan in &batch.baseline {
            sqlx::query(
                "INSERT INTO detection_baseline (practice_id, source, plan_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(practice.as_str())
            .bind(source)
            .bind(plan.as_str())
            .execute(&mut *conn)
            .await?;
        }
        let mut created = Vec::new();
        for new in batch.new {
            if let Some(id) = self.insert_new(conn, practice, source, new, now_ms).await? {
                created.push(id);
            }
        }
        for w in &batch.withdrawn {
            // The practice's explicit word: every workflow of the plan hears it, whatever its
            // revision (the machine decides what a finished one undoes).
            for (id, _) in others(conn, practice, w.plan_id.as_str(), None).await? {
                let event = Event::PlanWithdrawn {
                    reason: w.reason.into(),
                };
                insert_inbox(conn, &self.key, &id, "poller", &event, now_ms).await?;
            }
        }
        for task in &batch.tasks {
            open_task(conn, practice, source, task, now).await?;
        }
        for p in &batch.pending {
            let summary = serde_json::to_string(&p.summary)?;
            sqlx::query(
                "INSERT INTO detection_pending (practice_id, source, plan_id, summary, attempts, next_at, last_error)
                 VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (practice_id, source, plan_id) DO UPDATE SET summary = excluded.summary,
                    attempts = excluded.attempts, next_at = excluded.next_at, last_error = excluded.last_error",
            )
            .bind(practice.as_str())
            .bind(source)
            .bind(p.summary.plan_id.as_str())
            .bind(summary)
            .bind(i64::from(p.attempts))
            .bind(ms(p.next_at))
            .bind(&p.last_error)
            .execute(&mut *conn)
            .await?;
        }
        for plan in &batch.cleared {
            sqlx::query(
                "DELETE FROM detection_pending WHERE practice_id = ? AND source = ? AND plan_id = ?",
            )
            .bind(practice.as_str())
            .bind(source)
            .bind(plan.as_str())
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "INSERT INTO sync_cursors (practice_id, source, cursor, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (practice_id, source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(practice.as_str())
        .bind(source)
        .bind(&batch.cursor)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO detection_health (practice_id, source, baseline_at, last_good_poll_at, consecutive_failures)
             VALUES (?1, ?2, ?3, ?4, 0)
             ON CONFLICT (practice_id, source) DO UPDATE SET
                baseline_at = COALESCE(detection_health.baseline_at, excluded.baseline_at),
                last_good_poll_at = excluded.last_good_poll_at, consecutive_failures = 0",
        )
        .bind(practice.as_str())
        .bind(source)
        .bind(batch.baseline_poll.then_some(now_ms))
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        Ok(created)
    }
}
