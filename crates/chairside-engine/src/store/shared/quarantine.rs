//! The quarantine role, once for both backends: what does not decode is set aside with the
//! reason, a staff task and an audit line, and never run again until an operator repairs it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use sha2::{Digest, Sha256};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Affected, Backend, Conn};
use crate::outbound::events::{SetAside, set_aside_needs_staff};
use crate::store::quarantine::decode_problem;
use crate::store::sqlite::sealed::{INBOX_EVENT, OUTBOX_COMMAND, TASK_REASON, WORKFLOW_STATE};
use crate::store::sqlite::{from_ms, ms};
use crate::store::{Claim, QuarantineStore, QuarantinedDelivery, QuarantinedWorkflow, Result};
use chairside_workflow::{Command, Event, TaskKind, WorkflowId, WorkflowState};

fn delivery_associated(provider: &str, hash: &str) -> Vec<u8> {
    format!("quarantined-delivery:{provider}/{hash}").into_bytes()
}

#[async_trait]
impl<S> QuarantineStore for S
where
    S: Backend,
    for<'c> &'c mut Conn<S>: Executor<'c, Database = S::Db>,
    for<'c> &'c sqlx::Pool<S::Db>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    <S::Db as Database>::QueryResult: Affected,
    for<'r> &'r str: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db>,
    for<'q> String: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
{
    async fn quarantine_workflow(
        &self,
        claim: &Claim,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let id = claim.id.as_str();
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        self.check_lease(&mut tx, claim, now_ms).await?;
        let row = sqlx::query::<S::Db>(
            "SELECT practice_id, plan_id, revision, status, state FROM workflows WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let practice: String = row.try_get("practice_id")?;
        let plan: String = row.try_get("plan_id")?;
        let revision: String = row.try_get("revision")?;
        let status: String = row.try_get("status")?;
        let state: Vec<u8> = row.try_get("state")?;
        // A sealed value that does not open is as unusable as one that does not decode.
        let mut problem = match WORKFLOW_STATE.open_text(self.key(), &[id], &state) {
            Ok(text) => decode_problem::<WorkflowState>(&text)
                .map(|p| format!("its state does not decode {p}")),
            Err(_) => Some("its state does not open under any key of the keyring".to_owned()),
        };
        if problem.is_none() {
            let inbox = sqlx::query::<S::Db>(
                "SELECT id, event FROM inbox WHERE workflow_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            for r in &inbox {
                let row_id: i64 = r.try_get("id")?;
                let sealed: Vec<u8> = r.try_get("event")?;
                let found = match INBOX_EVENT.open_text(self.key(), &[&row_id.to_string()], &sealed)
                {
                    Ok(text) => {
                        decode_problem::<Event>(&text).map(|p| format!("does not decode {p}"))
                    }
                    Err(_) => Some("does not open under any key of the keyring".to_owned()),
                };
                if let Some(p) = found {
                    problem = Some(format!("queued event {row_id} {p}"));
                    break;
                }
            }
        }
        if problem.is_none() {
            let pending = sqlx::query::<S::Db>(
                "SELECT seq, command FROM outbox WHERE workflow_id = $1 AND status = 'pending' ORDER BY seq",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            for r in &pending {
                let seq: i64 = r.try_get("seq")?;
                let sealed: Vec<u8> = r.try_get("command")?;
                let found =
                    match OUTBOX_COMMAND.open_text(self.key(), &[id, &seq.to_string()], &sealed) {
                        Ok(text) => {
                            decode_problem::<Command>(&text).map(|p| format!("does not decode {p}"))
                        }
                        Err(_) => Some("does not open under any key of the keyring".to_owned()),
                    };
                if let Some(p) = found {
                    problem = Some(format!("pending command {seq} {p}"));
                    break;
                }
            }
        }
        let Some(problem) = problem else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query::<S::Db>(
            "INSERT INTO quarantined_workflows (workflow_id, practice_id, problem, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (workflow_id) DO NOTHING",
        )
        .bind(id)
        .bind(&practice)
        .bind(&problem)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let reason = format!(
            "workflow {id} is quarantined: {problem}. Its data is kept as stored and it will not run until an operator repairs it"
        );
        let task_row = S::next_id(&mut tx, TASK_REASON.table).await?;
        let reason = TASK_REASON.seal(self.key(), &[&task_row.to_string()], reason.as_bytes())?;
        sqlx::query::<S::Db>("INSERT INTO staff_tasks (id, workflow_id, practice_id, kind, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(task_row)
            .bind(id)
            .bind(&practice)
            .bind(TaskKind::SystemError.label())
            .bind(&reason)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        self.insert_audit(&mut tx, id, "runner", "quarantined", &problem, now_ms)
            .await?;
        sqlx::query::<S::Db>(
            "UPDATE workflows SET lease_owner = NULL, lease_until = NULL, next_due_at = NULL WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // The task's `workflow.needs_staff` event, so staff alerts and subscribers hear of it
        // like any other task; from the row's plain columns (the state may not open). Last
        // before the commit (PostgreSQL's event-order lock).
        let event = set_aside_needs_staff(
            SetAside {
                workflow_id: id,
                practice_id: &practice,
                plan_id: &plan,
                revision: &revision,
                status: &status,
            },
            now,
        );
        S::insert_events(&mut tx, id, vec![event], now).await?;
        self.finish(tx).await?;
        Ok(Some(problem))
    }

    async fn quarantined_workflows(
        &self,
        practice: Option<&PracticeId>,
    ) -> Result<Vec<QuarantinedWorkflow>> {
        let rows = sqlx::query::<S::Db>(
            "SELECT workflow_id, practice_id, problem, at FROM quarantined_workflows
             WHERE CAST($1 AS TEXT) IS NULL OR practice_id = $1 ORDER BY at, workflow_id",
        )
        .bind(practice.map(PracticeId::as_str))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantinedWorkflow {
                    workflow_id: WorkflowId::new(r.try_get::<String, _>("workflow_id")?),
                    practice_id: PracticeId::new(r.try_get::<String, _>("practice_id")?),
                    problem: r.try_get("problem")?,
                    at: from_ms(r.try_get("at")?),
                })
            })
            .collect()
    }

    async fn quarantine_delivery(
        &self,
        provider: &str,
        body: &[u8],
        problem: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let hash = hex::encode(Sha256::digest(body));
        let sealed = self
            .key()
            .seal(body, &delivery_associated(provider, &hash))
            .map_err(crate::store::StoreError::Crypto)?;
        let mut tx = self.begin().await?;
        let fresh = sqlx::query::<S::Db>(
            "INSERT INTO quarantined_deliveries (provider, body_hash, body, problem, received_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (provider, body_hash) DO NOTHING",
        )
        .bind(provider)
        .bind(&hash)
        .bind(sealed)
        .bind(problem)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .affected()
            == 1;
        self.finish(tx).await?;
        Ok(fresh)
    }

    async fn quarantined_deliveries(&self) -> Result<Vec<QuarantinedDelivery>> {
        let rows = sqlx::query::<S::Db>(
            "SELECT id, provider, problem, received_at FROM quarantined_deliveries ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantinedDelivery {
                    id: r.try_get("id")?,
                    provider: r.try_get("provider")?,
                    problem: r.try_get("problem")?,
                    received_at: from_ms(r.try_get("received_at")?),
                })
            })
            .collect()
    }

    async fn quarantined_delivery_body(&self, id: i64) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query::<S::Db>(
            "SELECT provider, body_hash, body FROM quarantined_deliveries WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let provider: String = r.try_get("provider")?;
        let hash: String = r.try_get("body_hash")?;
        let sealed: Vec<u8> = r.try_get("body")?;
        Ok(Some(
            self.key()
                .open(&sealed, &delivery_associated(&provider, &hash))?,
        ))
    }
}
