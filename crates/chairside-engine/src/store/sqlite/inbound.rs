//! The inbound role on SQLite: polls, webhooks, queued events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;

use super::{SqliteStore, WORKFLOW_STATE, insert_audit, insert_command, insert_inbox, ms, onehop};
use crate::store::{InboundStore, NewWorkflow, Result};
use chairside_workflow::{Event, WorkflowId};

#[async_trait]
impl InboundStore for SqliteStore {
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
            let sealed = WORKFLOW_STATE.seal_json(&self.key, &[state.id.as_str()], &state)?;
            let inserted = sqlx::query(
                "INSERT INTO workflows (id, practice_id, plan_id, revision, patient_id, status, stage, state,
                    accepted_at, created_at, updated_at, next_due_at, ledger_written_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (practice_id, plan_id, revision) DO NOTHING",
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
                    insert_inbox(&mut tx, &self.key, &old, "poller", &event, now_ms).await?;
                }
                insert_command(
                    &mut tx,
                    &self.key,
                    state.id.as_str(),
                    &first,
                    &state.command_key(&first),
                    now_ms,
                )
                .await?;
                insert_audit(
                    &mut tx,
                    &self.key,
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
                insert_inbox(&mut tx, &self.key, id.as_str(), "poller", &event, now_ms).await?;
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
        self.finish_due(tx).await?;
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

    async fn enqueue(
        &self,
        workflow: &WorkflowId,
        source: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_inbox(
            &mut tx,
            &self.key,
            workflow.as_str(),
            source,
            event,
            ms(now),
        )
        .await?;
        self.finish_due(tx).await
    }

    /// On the store thread: one hop, and webhooks answered at the same moment share one commit
    /// (with the runner's transactions queued then). The caller is answered after the `COMMIT`
    /// that holds the delivery, so its 200 follows a durable write (`synchronous = FULL`).
    async fn record_webhook(
        &self,
        provider: &str,
        event_id: &str,
        events: Vec<(WorkflowId, Event)>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (provider, event_id) = (provider.to_owned(), event_id.to_owned());
        let key = self.key.clone();
        let now_ms = ms(now);
        // A workflow nobody holds is claimed for this instance's runner in the same
        // transaction (`Handoffs`): its wake-up costs no claim of its own.
        let taker = self
            .handoffs
            .taker()
            .map(|(owner, lease)| (owner, now_ms + lease.as_millis() as i64));
        let recorded = self
            .thread
            .write(move |conn| {
                let taker = taker
                    .as_ref()
                    .map(|(owner, until)| (owner.as_str(), *until));
                onehop::record_webhook(conn, &key, &provider, &event_id, &events, taker, now_ms)
            })
            .await?;
        let Some(claims) = recorded else {
            return Ok(false);
        };
        self.writes.add(std::panic::Location::caller());
        self.handoffs.push(claims);
        self.due.notify_one();
        Ok(true)
    }
}
