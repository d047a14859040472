//! The patient-report role, once for both backends: each write in one transaction that reads
//! the workflow's row first (locked on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already runs one
//! writer at a time), so a report, a staff decision and the runner's step on one workflow run one
//! after the other.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::{Backend, Conn};
use crate::staff::{AUDIT_KIND, Refusal};
use crate::store::Result;
use crate::store::patient_report::{
    NewPatientReport, PATIENT_ACTOR, PatientReportStore, PendingReport, REPLACED,
    REPORT_AUDIT_KIND, ReportLimit, ReportReceipt, ReportRefusal, dismiss_audit_detail,
    report_audit_detail,
};
use crate::store::sqlite::sealed::{INBOX_EVENT, PATIENT_REPORT, TASK_REASON, WORKFLOW_STATE};
use crate::store::sqlite::{from_ms, ms};
use chairside_workflow::patient_report::accepts;
use chairside_workflow::{TaskKind, WorkflowId, WorkflowState};

fn open_report<S: Backend>(store: &S, row: i64, sealed: &[u8]) -> Result<NewPatientReport> {
    PATIENT_REPORT.open_json(store.key(), &[&row.to_string()], sealed)
}

#[async_trait]
impl<S> PatientReportStore for S
where
    S: Backend,
    for<'c> &'c mut Conn<S>: Executor<'c, Database = S::Db>,
    for<'c> &'c sqlx::Pool<S::Db>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
{
    async fn record_patient_report(
        &self,
        workflow: &WorkflowId,
        report: &NewPatientReport,
        limit: ReportLimit,
        now: DateTime<Utc>,
    ) -> Result<Result<ReportReceipt, ReportRefusal>> {
        let id = workflow.as_str();
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let row: Option<(Vec<u8>, String)> = sqlx::query_as::<S::Db, _>(&format!(
            "SELECT state, practice_id FROM workflows WHERE id = $1{}",
            S::FOR_UPDATE
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((state, practice)) = row else {
            tx.rollback().await?;
            return Ok(Err(ReportRefusal::UnknownWorkflow(workflow.clone())));
        };
        let state: WorkflowState = WORKFLOW_STATE.open_json(self.key(), &[id], &state)?;
        let asked = match accepts(&state, &report.lender, now) {
            Ok(asked) => asked,
            Err(why) => {
                tx.rollback().await?;
                return Ok(Err(ReportRefusal::NotAccepted {
                    workflow: workflow.clone(),
                    why,
                }));
            }
        };
        let inbox: Vec<(i64, Vec<u8>)> = sqlx::query_as::<S::Db, _>(
            "SELECT id, event FROM inbox WHERE workflow_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        for (row, event) in &inbox {
            let event = INBOX_EVENT.open_json(self.key(), &[&row.to_string()], event)?;
            if crate::staff::queued_staff_action(&event).is_some() {
                tx.rollback().await?;
                return Ok(Err(ReportRefusal::DecisionQueued(workflow.clone())));
            }
        }
        let recent: i64 = sqlx::query_scalar::<S::Db, _>(
            "SELECT COUNT(*) FROM patient_reports WHERE workflow_id = $1 AND reported_at > $2",
        )
        .bind(id)
        .bind(now_ms - limit.window.num_milliseconds())
        .fetch_one(&mut *tx)
        .await?;
        if recent >= i64::from(limit.max) {
            tx.rollback().await?;
            return Ok(Err(ReportRefusal::RateLimited(workflow.clone())));
        }
        let kind = TaskKind::PatientReport.label();
        let replaced: Option<i64> = sqlx::query_scalar::<S::Db, _>(
            "SELECT id FROM staff_tasks WHERE workflow_id = $1 AND kind = $2 AND resolved_at IS NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(id)
        .bind(kind)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query::<S::Db>(
            "UPDATE staff_tasks SET resolved_at = $1, resolution = $2
             WHERE workflow_id = $3 AND kind = $4 AND resolved_at IS NULL",
        )
        .bind(now_ms)
        .bind(REPLACED)
        .bind(id)
        .bind(kind)
        .execute(&mut *tx)
        .await?;
        let task = S::next_id(&mut tx, TASK_REASON.table).await?;
        let reason = report.report.task_reason(&report.lender_name, asked);
        let sealed_reason =
            TASK_REASON.seal(self.key(), &[&task.to_string()], reason.as_bytes())?;
        sqlx::query::<S::Db>("INSERT INTO staff_tasks (id, workflow_id, practice_id, kind, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(task)
            .bind(id)
            .bind(&practice)
            .bind(kind)
            .bind(sealed_reason)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let raised = chairside_workflow::StaffTask {
            kind: TaskKind::PatientReport,
            reason: reason.clone(),
        };
        let events = S::task_events(&mut tx, id, &state, &raised, now).await?;
        let row = S::next_id(&mut tx, PATIENT_REPORT.table).await?;
        let sealed = PATIENT_REPORT.seal_json(self.key(), &[&row.to_string()], report)?;
        sqlx::query::<S::Db>(
            "INSERT INTO patient_reports (id, workflow_id, task_id, report, reported_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row)
        .bind(id)
        .bind(task)
        .bind(sealed)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        self.insert_audit(
            &mut tx,
            id,
            PATIENT_ACTOR,
            REPORT_AUDIT_KIND,
            &report_audit_detail(report, replaced),
            now_ms,
        )
        .await?;
        // Last before the commit (PostgreSQL's event-order lock).
        S::insert_task_events(&mut tx, id, events, now).await?;
        self.finish(tx).await?;
        Ok(Ok(ReportReceipt { task, replaced }))
    }

    async fn pending_patient_report(&self, workflow: &WorkflowId) -> Result<Option<PendingReport>> {
        let row: Option<(i64, i64, Vec<u8>, i64)> = sqlx::query_as::<S::Db, _>(
            "SELECT r.id, r.task_id, r.report, r.reported_at FROM patient_reports r
             JOIN staff_tasks t ON t.id = r.task_id
             WHERE r.workflow_id = $1 AND t.resolved_at IS NULL
             ORDER BY r.id DESC LIMIT 1",
        )
        .bind(workflow.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|(row, task, sealed, at)| {
            Ok(PendingReport {
                task,
                report: open_report(self, row, &sealed)?,
                reported_at: from_ms(at),
            })
        })
        .transpose()
    }

    async fn dismiss_patient_report(
        &self,
        workflow: &WorkflowId,
        task: i64,
        practice: Option<&PracticeId>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<PendingReport, Refusal>> {
        let id = workflow.as_str();
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let owner: Option<String> = sqlx::query_scalar::<S::Db, _>(&format!(
            "SELECT practice_id FROM workflows WHERE id = $1{}",
            S::FOR_UPDATE
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if owner.is_none_or(|o| practice.is_some_and(|p| p.as_str() != o)) {
            tx.rollback().await?;
            return Ok(Err(Refusal::UnknownWorkflow(workflow.clone())));
        }
        let found: Option<(i64, Vec<u8>, i64)> = sqlx::query_as::<S::Db, _>(
            "SELECT r.id, r.report, r.reported_at FROM patient_reports r
             JOIN staff_tasks t ON t.id = r.task_id
             WHERE r.workflow_id = $1 AND r.task_id = $2 AND t.kind = $3 AND t.resolved_at IS NULL",
        )
        .bind(id)
        .bind(task)
        .bind(TaskKind::PatientReport.label())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((row, sealed, at)) = found else {
            tx.rollback().await?;
            return Ok(Err(Refusal::StaleTask {
                workflow: workflow.clone(),
                task,
            }));
        };
        let report = open_report(self, row, &sealed)?;
        sqlx::query::<S::Db>("UPDATE staff_tasks SET resolved_at = $1, resolution = $2 WHERE id = $3 AND resolved_at IS NULL")
            .bind(now_ms)
            .bind(format!("not_confirmed by {actor}"))
            .bind(task)
            .execute(&mut *tx)
            .await?;
        self.insert_audit(
            &mut tx,
            id,
            actor,
            AUDIT_KIND,
            &dismiss_audit_detail(&report),
            now_ms,
        )
        .await?;
        self.finish(tx).await?;
        Ok(Ok(PendingReport {
            task,
            report,
            reported_at: from_ms(at),
        }))
    }
}
