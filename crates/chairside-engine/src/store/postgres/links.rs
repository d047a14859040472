//! The patient-link role on PostgreSQL: one `patient_links` row per workflow that ever needed one.
//! The rules (who may resend, the rate limit) are the SQLite store's; the row locks stand in for
//! its single writer.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{PostgresStore, insert_audit, insert_inbox, ms};
use crate::store::links::ResendOutcome;
use crate::store::{LinkStore, PageMark, Result};
use chairside_workflow::{Event, StaffAction, Status, WorkflowId};

/// The actor and inbox source of a patient's resend request.
const PATIENT: &str = "patient";

/// The inbox source of a patient's answer to the in-house offer.
const PATIENT_ANSWER: &str = "patient_answer";

/// The inbox source of a patient's request from the page (a fresh deposit link).
const PATIENT_REQUEST: &str = "patient_request";

/// Bumps the workflow's link generation and drops its return reference, inside the caller's
/// transaction (a staff cancel revokes in the same transaction that records it).
pub(super) async fn revoke_in(conn: &mut PgConnection, id: &str, now: i64) -> Result<u64> {
    let generation: i64 = sqlx::query_scalar(
        "INSERT INTO patient_links (workflow_id, generation, revoked_at) VALUES ($1, 1, $2)
         ON CONFLICT (workflow_id) DO UPDATE SET generation = patient_links.generation + 1, return_ref = NULL, revoked_at = $2
         RETURNING generation",
    )
    .bind(id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(generation as u64)
}

/// The workflow's lender return reference, made (random, opaque) when it has none, inside the
/// caller's transaction: [`LinkStore::return_reference`], and the intent of an application call
/// (`begin_effect`, `commit_step`), so the link the lender is sent resolves before the call.
pub(super) async fn ensure_return_reference(
    conn: &mut sqlx::PgConnection,
    id: &str,
) -> Result<String> {
    let fresh = B64.encode(rand::random::<[u8; 24]>());
    let reference: String = sqlx::query_scalar(
            "INSERT INTO patient_links (workflow_id, return_ref) VALUES ($1, $2)
             ON CONFLICT (workflow_id) DO UPDATE SET return_ref = COALESCE(patient_links.return_ref, $2)
             RETURNING return_ref",
    )
    .bind(id)
    .bind(&fresh)
    .fetch_one(&mut *conn)
    .await?;
    Ok(reference)
}

#[async_trait]
impl LinkStore for PostgresStore {
    async fn link_generation(&self, workflow: &WorkflowId) -> Result<u64> {
        let generation: Option<i64> =
            sqlx::query_scalar("SELECT generation FROM patient_links WHERE workflow_id = $1")
                .bind(workflow.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(generation.unwrap_or(0) as u64)
    }

    async fn revoke_links(&self, workflow: &WorkflowId, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.begin().await?;
        let generation = revoke_in(&mut tx, workflow.as_str(), ms(now)).await?;
        self.finish(tx).await?;
        Ok(generation)
    }

    async fn return_reference(&self, workflow: &WorkflowId) -> Result<String> {
        // Made with the intent of the application call that sends it (`ensure_return_reference`
        // in the intent's transaction): most calls find it and write nothing.
        let made: Option<String> = sqlx::query_scalar(
            "SELECT return_ref FROM patient_links WHERE workflow_id = $1 AND return_ref IS NOT NULL",
        )
        .bind(workflow.as_str())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(reference) = made {
            return Ok(reference);
        }
        let mut tx = self.begin().await?;
        let reference = ensure_return_reference(&mut tx, workflow.as_str()).await?;
        self.finish(tx).await?;
        Ok(reference)
    }

    async fn resolve_return_reference(&self, reference: &str) -> Result<Option<(WorkflowId, u64)>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT workflow_id, generation FROM patient_links WHERE return_ref = $1",
        )
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, generation)| (WorkflowId::new(id), generation as u64)))
    }

    async fn request_link_resend(
        &self,
        workflow: &WorkflowId,
        generation: u64,
        interval: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<ResendOutcome> {
        let id = workflow.as_str();
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        // The row lock makes two requests for one workflow run one after the other, so the
        // rate limit sees the first.
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM workflows WHERE id = $1 FOR NO KEY UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let link: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT generation, resend_requested_at FROM patient_links WHERE workflow_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let (current, last) = link.unwrap_or((0, None));
        let in_progress = status
            .as_deref()
            .is_some_and(|s| s != Status::Done.label() && s != Status::Cancelled.label());
        if !in_progress || current as u64 != generation {
            tx.rollback().await?;
            return Ok(ResendOutcome::NotApplicable);
        }
        if last.is_some_and(|last| now_ms < last + interval.num_milliseconds()) {
            tx.rollback().await?;
            return Ok(ResendOutcome::RateLimited);
        }
        sqlx::query(
            "INSERT INTO patient_links (workflow_id, resend_requested_at) VALUES ($1, $2)
             ON CONFLICT (workflow_id) DO UPDATE SET resend_requested_at = $2",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let event = Event::Staff {
            action: StaffAction::ResendLink,
        };
        insert_inbox(&mut tx, &self.key, id, PATIENT, &event, now_ms).await?;
        insert_audit(
            &mut tx,
            &self.key,
            id,
            PATIENT,
            "link_resend_requested",
            "patient asked for a new link from an expired one",
            now_ms,
        )
        .await?;
        self.finish_due(tx).await?;
        Ok(ResendOutcome::Queued)
    }

    async fn audit_once(
        &self,
        workflow: &WorkflowId,
        mark: &str,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // Most views find the mark: answer them with a read, no write transaction.
        let seen: Option<i64> = sqlx::query_scalar(
            "SELECT 1::BIGINT FROM patient_page_marks WHERE workflow_id = $1 AND mark = $2",
        )
        .bind(workflow.as_str())
        .bind(mark)
        .fetch_optional(&self.pool)
        .await?;
        if seen.is_some() {
            return Ok(false);
        }
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO patient_page_marks (workflow_id, mark, at) VALUES ($1, $2, $3)
             ON CONFLICT (workflow_id, mark) DO NOTHING",
        )
        .bind(workflow.as_str())
        .bind(mark)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_audit(
            &mut tx,
            &self.key,
            workflow.as_str(),
            PATIENT,
            kind,
            detail,
            now_ms,
        )
        .await?;
        self.finish(tx).await?;
        Ok(true)
    }

    async fn audit_marks(&self, marks: &[PageMark]) -> Result<usize> {
        // The marks already recorded (most repeats) are found by reads: a group of nothing but
        // repeats writes nothing.
        let mut fresh: Vec<&PageMark> = Vec::new();
        for m in marks {
            if fresh
                .iter()
                .any(|f| f.workflow == m.workflow && f.mark == m.mark)
            {
                continue;
            }
            let seen: Option<i64> = sqlx::query_scalar(
                "SELECT 1::BIGINT FROM patient_page_marks WHERE workflow_id = $1 AND mark = $2",
            )
            .bind(m.workflow.as_str())
            .bind(&m.mark)
            .fetch_optional(&self.pool)
            .await?;
            if seen.is_none() {
                fresh.push(m);
            }
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        // Inserted in key order: two instances' groups holding the same marks (a patient whose
        // clicks reached both) then wait for each other in one order, never in a circle. In the
        // order they came, each could hold a mark the other waits for, and PostgreSQL cancelled
        // one of them as a deadlock (seen with three instances: `chairside bench --instances 3`).
        fresh.sort_by(|a, b| (a.workflow.as_str(), &a.mark).cmp(&(b.workflow.as_str(), &b.mark)));
        let mut tx = self.begin().await?;
        let mut new = 0;
        for m in fresh {
            let inserted = sqlx::query(
                "INSERT INTO patient_page_marks (workflow_id, mark, at) VALUES ($1, $2, $3)
                 ON CONFLICT (workflow_id, mark) DO NOTHING",
            )
            .bind(m.workflow.as_str())
            .bind(&m.mark)
            .bind(ms(m.at))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                insert_audit(
                    &mut tx,
                    &self.key,
                    m.workflow.as_str(),
                    PATIENT,
                    &m.kind,
                    &m.detail,
                    ms(m.at),
                )
                .await?;
                new += 1;
            }
        }
        self.finish(tx).await?;
        Ok(new)
    }

    async fn queue_patient_answer(
        &self,
        workflow: &WorkflowId,
        event: &Event,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.queue_once(
            workflow,
            PATIENT_ANSWER,
            "in_house_answer",
            event,
            detail,
            now,
        )
        .await
    }

    async fn queue_patient_request(
        &self,
        workflow: &WorkflowId,
        event: &Event,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.queue_once(
            workflow,
            PATIENT_REQUEST,
            "patient_request",
            event,
            detail,
            now,
        )
        .await
    }

    async fn patient_answer_pending(&self, workflow: &WorkflowId) -> Result<bool> {
        self.inbox_waits(workflow, PATIENT_ANSWER).await
    }
}

impl PostgresStore {
    /// Queues `event` from `source` with its audit line, unless one from `source` still waits.
    async fn queue_once(
        &self,
        workflow: &WorkflowId,
        source: &str,
        kind: &str,
        event: &Event,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let id = workflow.as_str();
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        // Two answers for one workflow run one after the other: the second sees the first.
        super::lock_workflow(&mut tx, id).await?;
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT 1::BIGINT FROM inbox WHERE workflow_id = $1 AND source = $2 LIMIT 1",
        )
        .bind(id)
        .bind(source)
        .fetch_optional(&mut *tx)
        .await?;
        if pending.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_inbox(&mut tx, &self.key, id, source, event, now_ms).await?;
        insert_audit(&mut tx, &self.key, id, PATIENT, kind, detail, now_ms).await?;
        self.finish_due(tx).await?;
        Ok(true)
    }

    async fn inbox_waits(&self, workflow: &WorkflowId, source: &str) -> Result<bool> {
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT 1::BIGINT FROM inbox WHERE workflow_id = $1 AND source = $2 LIMIT 1",
        )
        .bind(workflow.as_str())
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        Ok(pending.is_some())
    }
}
