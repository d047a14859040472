//! The patient-link role on SQLite: one `patient_links` row per workflow that ever needed one.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use rusqlite::OptionalExtension;

use super::conn::Conn;
use super::{SqliteStore, insert_audit, insert_inbox, ms, onehop};
use crate::store::links::ResendOutcome;
use crate::store::{LinkStore, PageMark, Result};
use chairside_workflow::{Event, StaffAction, Status, WorkflowId};

/// Records each page mark once with its audit line, in the caller's transaction on the store
/// thread: `(workflow, mark, kind, detail, at)` each. Returns how many were new.
fn write_marks(
    conn: &Conn<'_>,
    key: &crate::store::crypto::Keyring,
    marks: &[(String, String, String, String, i64)],
) -> Result<usize> {
    let mut new = 0;
    for (workflow, mark, kind, detail, at) in marks {
        let inserted = conn
            .prepared(
                "INSERT INTO patient_page_marks (workflow_id, mark, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workflow_id, mark) DO NOTHING",
            )?
            .execute(rusqlite::params![workflow, mark, at])?
            == 1;
        if inserted {
            onehop::insert_audit(conn, key, workflow, PATIENT, kind, detail, *at)?;
            new += 1;
        }
    }
    Ok(new)
}

/// The actor and inbox source of a patient's resend request.
const PATIENT: &str = "patient";

/// The inbox source of a patient's answer to the in-house offer.
const PATIENT_ANSWER: &str = "patient_answer";

/// The inbox source of a patient's request from the page (a fresh deposit link).
const PATIENT_REQUEST: &str = "patient_request";

/// Bumps the workflow's link generation and drops its return reference, inside the caller's
/// transaction (a staff cancel revokes in the same transaction that records it).
pub(super) async fn revoke_in(conn: &mut SqliteConnection, id: &str, now: i64) -> Result<u64> {
    let generation: i64 = sqlx::query_scalar(
        "INSERT INTO patient_links (workflow_id, generation, revoked_at) VALUES (?1, 1, ?2)
         ON CONFLICT (workflow_id) DO UPDATE SET generation = generation + 1, return_ref = NULL, revoked_at = ?2
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
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<String> {
    let fresh = B64.encode(rand::random::<[u8; 24]>());
    let reference: String = sqlx::query_scalar(
        "INSERT INTO patient_links (workflow_id, return_ref) VALUES (?1, ?2)
             ON CONFLICT (workflow_id) DO UPDATE SET return_ref = COALESCE(return_ref, ?2)
             RETURNING return_ref",
    )
    .bind(id)
    .bind(&fresh)
    .fetch_one(&mut *conn)
    .await?;
    Ok(reference)
}

#[async_trait]
impl LinkStore for SqliteStore {
    async fn link_generation(&self, workflow: &WorkflowId) -> Result<u64> {
        let id = workflow.as_str().to_owned();
        let generation = self
            .reader
            .read(move |conn| super::onehop::link_generation(conn, &id))
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
        // in the intent's transaction): most calls find it and write nothing. Looked for on the
        // store's reader thread (one hop, the statement kept prepared), not through the pool.
        let id = workflow.as_str().to_owned();
        let made = self
            .reader
            .read(move |conn| super::reads::return_reference(conn, &id))
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
            "SELECT workflow_id, generation FROM patient_links WHERE return_ref = ?",
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
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM workflows WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let link: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT generation, resend_requested_at FROM patient_links WHERE workflow_id = ?",
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
            "INSERT INTO patient_links (workflow_id, resend_requested_at) VALUES (?1, ?2)
             ON CONFLICT (workflow_id) DO UPDATE SET resend_requested_at = ?2",
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
        let seen = self
            .marks_seen(&[(workflow.as_str().to_owned(), mark.to_owned())])
            .await?;
        if seen[0] {
            return Ok(false);
        }
        // On the store thread: the line shares a commit with whatever is committing then.
        let key = self.key.clone();
        let mark = (
            workflow.as_str().to_owned(),
            mark.to_owned(),
            kind.to_owned(),
            detail.to_owned(),
            ms(now),
        );
        let new = self
            .thread
            .write(move |conn| write_marks(conn, &key, std::slice::from_ref(&mark)))
            .await?;
        if new > 0 {
            self.writes.add(std::panic::Location::caller());
        }
        Ok(new > 0)
    }

    async fn audit_marks(&self, marks: &[PageMark]) -> Result<usize> {
        // The marks already recorded (most repeats) are found by reads: a group of nothing but
        // repeats writes nothing.
        let asked: Vec<(String, String)> = marks
            .iter()
            .map(|m| (m.workflow.as_str().to_owned(), m.mark.clone()))
            .collect();
        let seen = self.marks_seen(&asked).await?;
        let mut fresh: Vec<(String, String, String, String, i64)> = Vec::new();
        for (m, seen) in marks.iter().zip(seen) {
            if seen
                || fresh
                    .iter()
                    .any(|f| f.0 == m.workflow.as_str() && f.1 == m.mark)
            {
                continue;
            }
            fresh.push((
                m.workflow.as_str().to_owned(),
                m.mark.clone(),
                m.kind.clone(),
                m.detail.clone(),
                ms(m.at),
            ));
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let key = self.key.clone();
        let new = self
            .thread
            .write(move |conn| write_marks(conn, &key, &fresh))
            .await?;
        if new > 0 {
            self.writes.add(std::panic::Location::caller());
        }
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

impl SqliteStore {
    /// Queues `event` from `source` with its audit line, unless one from `source` still waits.
    /// On the store thread: it shares a commit with whatever is committing then, and the caller
    /// is answered after that commit.
    async fn queue_once(
        &self,
        workflow: &WorkflowId,
        source: &str,
        kind: &str,
        event: &Event,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (id, source, kind, detail) = (
            workflow.as_str().to_owned(),
            source.to_owned(),
            kind.to_owned(),
            detail.to_owned(),
        );
        let (key, event, now_ms) = (self.key.clone(), event.clone(), ms(now));
        let queued = self
            .thread
            .write(move |conn| {
                let pending: Option<i64> = conn
                    .prepared("SELECT 1 FROM inbox WHERE workflow_id = ?1 AND source = ?2 LIMIT 1")?
                    .query_row(rusqlite::params![id, source], |r| r.get(0))
                    .optional()?;
                if pending.is_some() {
                    return Ok(false);
                }
                onehop::insert_inbox(conn, &key, &id, &source, &event, now_ms)?;
                onehop::insert_audit(conn, &key, &id, PATIENT, &kind, &detail, now_ms)?;
                Ok(true)
            })
            .await?;
        if queued {
            self.writes.add(std::panic::Location::caller());
            self.due.notify_one();
        }
        Ok(queued)
    }

    /// Which of `marks` (workflow, mark) are recorded already, in one read.
    async fn marks_seen(&self, marks: &[(String, String)]) -> Result<Vec<bool>> {
        let marks = marks.to_vec();
        self.reader
            .read(move |conn| {
                let mut seen = conn.prepared(
                    "SELECT 1 FROM patient_page_marks WHERE workflow_id = ?1 AND mark = ?2",
                )?;
                marks
                    .iter()
                    .map(|(workflow, mark)| {
                        Ok(seen
                            .query_row(rusqlite::params![workflow, mark], |r| r.get::<_, i64>(0))
                            .optional()?
                            .is_some())
                    })
                    .collect()
            })
            .await
    }

    /// Whether an event from `source` waits in the workflow's inbox: on the reader thread (the
    /// patient page asks on every view of an in-house offer).
    async fn inbox_waits(&self, workflow: &WorkflowId, source: &str) -> Result<bool> {
        let (id, source) = (workflow.as_str().to_owned(), source.to_owned());
        self.reader
            .read(move |conn| {
                Ok(conn
                    .prepared("SELECT 1 FROM inbox WHERE workflow_id = ?1 AND source = ?2 LIMIT 1")?
                    .query_row(rusqlite::params![id, source], |r| r.get::<_, i64>(0))
                    .optional()?
                    .is_some())
            })
            .await
    }
}
