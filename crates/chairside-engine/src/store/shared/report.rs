//! The reporting role, once for both backends: workflows, tasks and the audit trail as
//! callers read them.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Backend, Conn};
use crate::store::sqlite::sealed::{EVENTS_DETAIL, TASK_REASON};
use crate::store::sqlite::{WORKFLOW_COLUMNS, from_ms, ms, task_kind};
use crate::store::{AuditRow, LedgerNoteTime, ReportStore, Result, TaskRow, WorkflowRow};
use chairside_workflow::{StaffTask, Status, WorkflowId};

#[async_trait]
impl<S> ReportStore for S
where
    S: Backend + crate::store::LinkStore,
    for<'c> &'c mut Conn<S>: Executor<'c, Database = S::Db>,
    for<'c> &'c sqlx::Pool<S::Db>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    for<'r> &'r str: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db>,
    for<'q> &'q [u8]: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> bool: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
{
    async fn workflow(&self, id: &WorkflowId) -> Result<Option<WorkflowRow>> {
        if let Some(read) = self.workflow_read(id) {
            return read.await;
        }
        let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM workflows w WHERE w.id = $1");
        let row = sqlx::query::<S::Db>(&sql)
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(|r| self.workflow_row(r)).transpose()
    }

    async fn workflow_at_generation(
        &self,
        id: &WorkflowId,
        generation: u64,
    ) -> Result<Option<WorkflowRow>> {
        if let Some(read) = self.workflow_at_generation_read(id, generation) {
            return read.await;
        }
        if self.link_generation(id).await? != generation {
            return Ok(None);
        }
        self.workflow(id).await
    }

    async fn workflows(
        &self,
        practice: Option<&PracticeId>,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<WorkflowRow>> {
        let sql = format!(
            "SELECT w.id AS listed_id, {WORKFLOW_COLUMNS} FROM workflows w
             WHERE ($1 IS NULL OR w.practice_id = $1) AND ($2 IS NULL OR w.status = $2)
             ORDER BY w.accepted_at DESC, w.id LIMIT $3"
        );
        let rows = sqlx::query::<S::Db>(&sql)
            .bind(practice.map(PracticeId::as_str))
            .bind(status.map(Status::label))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        // One undecodable row must not hide all the others: it is skipped and counted here, and
        // the runner quarantines it for staff (`QuarantineStore`).
        let mut listed = Vec::with_capacity(rows.len());
        for row in &rows {
            match self.workflow_row(row) {
                Ok(w) => listed.push(w),
                Err(e) if e.is_unreadable() => {
                    self.skipped().fetch_add(1, Ordering::Relaxed);
                    let id: String = row.try_get("listed_id")?;
                    // The id only: the decode error's text can quote the stored content.
                    tracing::warn!(workflow = %id, "listing skipped a workflow that does not decode");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(listed)
    }

    async fn workflow_counts(&self) -> Result<Vec<(Status, u64)>> {
        // A quarantined workflow is counted as quarantined, not under the status it was stuck at.
        let rows = sqlx::query::<S::Db>(
            "SELECT status, COUNT(*) AS n FROM workflows
             WHERE id NOT IN (SELECT workflow_id FROM quarantined_workflows) GROUP BY status",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let label: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            // A status this build does not know is left out rather than failing the whole count.
            if let Some(status) = Status::from_label(&label) {
                out.push((status, u64::try_from(n).unwrap_or(0)));
            }
        }
        Ok(out)
    }

    async fn ledger_notes_after(
        &self,
        after: Option<&(DateTime<Utc>, WorkflowId)>,
        limit: u32,
    ) -> Result<Vec<LedgerNoteTime>> {
        let rows = sqlx::query::<S::Db>(
            "SELECT id, accepted_at, ledger_written_at FROM workflows
             WHERE ledger_written_at IS NOT NULL
               AND ($1 IS NULL OR ledger_written_at > $1 OR (ledger_written_at = $1 AND id > $2))
             ORDER BY ledger_written_at, id LIMIT $3",
        )
        .bind(after.map(|(at, _)| ms(*at)))
        .bind(after.map_or("", |(_, id)| id.as_str()))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerNoteTime {
                    id: WorkflowId::new(r.try_get::<String, _>("id")?),
                    accepted_at: from_ms(r.try_get("accepted_at")?),
                    written_at: from_ms(r.try_get("ledger_written_at")?),
                })
            })
            .collect()
    }

    async fn tasks(
        &self,
        practice: Option<&PracticeId>,
        include_resolved: bool,
    ) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query::<S::Db>(
            "SELECT id, workflow_id, practice_id, kind, reason, created_at, resolved_at FROM staff_tasks
             WHERE ($1 IS NULL OR practice_id = $1) AND ($2 OR resolved_at IS NULL) ORDER BY id",
        )
        .bind(practice.map(PracticeId::as_str))
        .bind(include_resolved)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                Ok(TaskRow {
                    id,
                    workflow_id: WorkflowId::new(r.try_get::<String, _>("workflow_id")?),
                    practice_id: PracticeId::new(r.try_get::<String, _>("practice_id")?),
                    task: StaffTask {
                        kind: task_kind(r.try_get("kind")?),
                        reason: TASK_REASON.open_text(
                            self.key(),
                            &[&id.to_string()],
                            r.try_get::<&[u8], _>("reason")?,
                        )?,
                    },
                    created_at: from_ms(r.try_get("created_at")?),
                    resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(from_ms),
                })
            })
            .collect()
    }

    async fn audit(&self, workflow: &WorkflowId) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query::<S::Db>(
            "SELECT id, at, actor, kind, detail FROM events WHERE workflow_id = $1 ORDER BY id",
        )
        .bind(workflow.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    at: from_ms(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    detail: EVENTS_DETAIL.open_text(
                        self.key(),
                        &[&r.try_get::<i64, _>("id")?.to_string()],
                        r.try_get::<&[u8], _>("detail")?,
                    )?,
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
        self.insert_audit(&mut tx, workflow.as_str(), actor, kind, detail, ms(now))
            .await?;
        self.finish(tx).await
    }
}
