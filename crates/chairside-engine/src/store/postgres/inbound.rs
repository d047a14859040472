//! The inbound role on PostgreSQL: polls, webhooks, queued events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;

use super::{PostgresStore, insert_audit, insert_command, insert_inbox, insert_workflow, ms};
use crate::store::{Claim, InboundStore, NewWorkflow, Result};
use chairside_workflow::{Event, WorkflowId};

#[async_trait]
impl InboundStore for PostgresStore {
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
            let inserted = insert_workflow(&mut tx, &self.key, &state, now_ms).await?;
            if inserted {
                // An edit after acceptance is a new revision: the earlier revisions' workflows are
                // withdrawn, so one plan never has two live schedules.
                let earlier: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM workflows WHERE practice_id = $1 AND plan_id = $2 AND revision <> $3 AND status <> 'cancelled'",
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
            let known: Option<i64> =
                sqlx::query_scalar("SELECT 1::BIGINT FROM workflows WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_some() {
                insert_inbox(&mut tx, &self.key, id.as_str(), "poller", &event, now_ms).await?;
            }
        }
        sqlx::query(
            "INSERT INTO sync_cursors (practice_id, source, cursor, updated_at) VALUES ($1, $2, $3, $4)
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
            "SELECT cursor FROM sync_cursors WHERE practice_id = $1 AND source = $2",
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

    async fn record_webhook(
        &self,
        provider: &str,
        event_id: &str,
        events: Vec<(WorkflowId, Event)>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let fresh = sqlx::query("INSERT INTO webhooks (provider, event_id, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(provider)
            .bind(event_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !fresh {
            tx.rollback().await?;
            return Ok(false);
        }
        let source = format!("webhook:{provider}");
        // A workflow nobody holds is claimed for this instance's runner in the same
        // transaction (`Handoffs`): its wake-up costs no claim of its own.
        let taker = self
            .handoffs
            .taker()
            .map(|(owner, lease)| (owner, now_ms + lease.as_millis() as i64));
        let mut claims: Vec<Claim> = Vec::new();
        for (id, event) in events {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT 1::BIGINT FROM workflows WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_some() {
                insert_inbox(&mut tx, &self.key, id.as_str(), &source, &event, now_ms).await?;
                if let Some((owner, until)) = &taker
                    && !claims.iter().any(|c| c.id == id)
                    && let Some(claim) =
                        super::workflow::take_for(&mut tx, &id, owner, *until, now_ms).await?
                {
                    claims.push(claim);
                }
            }
        }
        self.finish_due(tx).await?;
        self.handoffs.push(claims);
        Ok(true)
    }
}
