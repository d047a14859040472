//! The staff role, once for both backends: one decision in one transaction that reads the
//! workflow's row first (locked on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already runs one writer
//! at a time), so two concurrent decisions on one workflow run one after the other and the second
//! sees the first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::{Affected, Backend, Conn};
use crate::staff::{AUDIT_KIND, Refusal, StaffReceipt, StaffRequest, StaffSnapshot, action_label};
use crate::store::sqlite::ms;
use crate::store::sqlite::sealed::{INBOX_EVENT, WORKFLOW_STATE};
use crate::store::{Result, StaffStore};
use chairside_workflow::{StaffAction, WorkflowState};

#[async_trait]
impl<S> StaffStore for S
where
    S: Backend,
    for<'c> &'c mut Conn<S>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    <S::Db as Database>::QueryResult: Affected,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db>,
    for<'q> String: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Decode<'q, S::Db> + Type<S::Db>,
{
    async fn act_as_staff(
        &self,
        request: &StaffRequest,
        now: DateTime<Utc>,
    ) -> Result<Result<StaffReceipt, Refusal>> {
        let id = request.workflow.as_str();
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let state: Option<Vec<u8>> = sqlx::query_scalar::<S::Db, _>(&format!(
            "SELECT state FROM workflows WHERE id = $1{}",
            S::FOR_UPDATE
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(state) = state else {
            tx.rollback().await?;
            return Ok(Err(Refusal::UnknownWorkflow(request.workflow.clone())));
        };
        let state: WorkflowState = WORKFLOW_STATE.open_json(self.key(), &[id], &state)?;
        let open: Vec<(i64, String)> = sqlx::query_as::<S::Db, _>(
            "SELECT id, kind FROM staff_tasks WHERE workflow_id = $1 AND resolved_at IS NULL ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let open_tasks: Vec<i64> = open.iter().map(|(task, _)| *task).collect();
        let open_kinds: Vec<String> = open.into_iter().map(|(_, kind)| kind).collect();
        let inbox: Vec<(i64, Vec<u8>)> = sqlx::query_as::<S::Db, _>(
            "SELECT id, event FROM inbox WHERE workflow_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let mut queued = None;
        for (row, event) in &inbox {
            let event = INBOX_EVENT.open_json(self.key(), &[&row.to_string()], event)?;
            if let Some(action) = crate::staff::queued_staff_action(&event) {
                queued = Some(action);
                break;
            }
        }
        let snapshot = StaffSnapshot {
            state: &state,
            open_tasks: &open_tasks,
            open_kinds: &open_kinds,
            queued,
        };
        if let Err(refusal) = crate::staff::admit(&snapshot, request) {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        let action = request.action;
        let event = match crate::staff::queued_event(&state, request) {
            Ok(event) => event,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(Err(refusal));
            }
        };
        if crate::staff::needs_runner(&snapshot, request) {
            self.insert_inbox(&mut tx, id, &request.actor, &event, now_ms)
                .await?;
        }
        if action == StaffAction::Cancel {
            // The patient's links stop working the moment staff cancel, not when the runner
            // gets to it.
            S::revoke_links(&mut tx, id, now_ms).await?;
        }
        let resolution = format!("{} by {}", action_label(action), request.actor);
        let only = crate::staff::resolves_only(&state, request);
        let pressed = crate::staff::resolves_task(request);
        let tasks_resolved = sqlx::query::<S::Db>(
            "UPDATE staff_tasks SET resolved_at = $1, resolution = $2
             WHERE workflow_id = $3 AND resolved_at IS NULL AND (CAST($4 AS TEXT) IS NULL OR kind = $4)
               AND (CAST($5 AS BIGINT) IS NULL OR id = $5)",
        )
        .bind(now_ms)
        .bind(&resolution)
        .bind(id)
        .bind(only)
        .bind(pressed)
        .execute(&mut *tx)
        .await?
        .affected();
        self.insert_audit(
            &mut tx,
            id,
            &request.actor,
            AUDIT_KIND,
            &crate::staff::audit_detail(&state, request),
            now_ms,
        )
        .await?;
        self.finish_due(tx).await?;
        Ok(Ok(StaffReceipt {
            workflow: request.workflow.clone(),
            action,
            tasks_resolved,
        }))
    }
}
