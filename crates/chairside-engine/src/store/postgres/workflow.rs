//! The runner's role on PostgreSQL: claims with `FOR NO KEY UPDATE SKIP LOCKED`, leases and steps.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{
    INBOX_EVENT, OUTBOX_COMMAND, PostgresStore, TASK_REASON, WORKFLOW_STATE, check_lease, from_ms,
    insert_audit, insert_command, ms, next_id, refresh_due,
};
use crate::store::{
    AfterStep, Claim, ClaimedIntent, Consumed, Handoffs, NextStep, Result, StoreError, Work,
    WorkItem, WorkflowStore,
};
use chairside_workflow::machine::Transition;
use chairside_workflow::{Command, Event, StaffTask, TimerKind, WorkflowId, WorkflowState};

#[async_trait]
impl WorkflowStore for PostgresStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claim>> {
        let now_ms = ms(now);
        let until = now_ms + lease.as_millis() as i64;
        // One statement: the due rows nobody holds, locked as they are taken; a row another
        // instance is claiming or committing is skipped, never waited for. Leases are judged by
        // the time the caller passes, so the instances' clocks must agree (NTP), as on SQLite
        // they share one machine's.
        // The claim and the intents it journals (`journal_claimed`) in one transaction.
        let mut tx = self.begin().await?;
        let mut claimed: Vec<(String, i64, i64)> = sqlx::query_as(
            "UPDATE workflows w SET lease_owner = $3, lease_until = $4, epoch = w.epoch + 1
             FROM (
                 SELECT id, next_due_at FROM workflows
                 WHERE next_due_at IS NOT NULL AND next_due_at <= $1
                   AND (lease_until IS NULL OR lease_until < $1)
                   AND id NOT IN (SELECT workflow_id FROM quarantined_workflows)
                 ORDER BY next_due_at LIMIT $2
                 FOR NO KEY UPDATE SKIP LOCKED
             ) due
             WHERE w.id = due.id
             RETURNING w.id, w.epoch, due.next_due_at",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .bind(owner)
        .bind(until)
        .fetch_all(&mut *tx)
        .await?;
        if claimed.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        claimed.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        let mut claims = Vec::with_capacity(claimed.len());
        for (id, epoch, due) in claimed {
            let mut claim = Claim {
                id: WorkflowId::new(id),
                epoch,
                owner: owner.to_owned(),
                due_at: Some(from_ms(due)),
                begun: None,
            };
            claim.begun = journal_claimed(&mut tx, &claim, now_ms).await?;
            claims.push(claim);
        }
        self.finish(tx).await?;
        Ok(claims)
    }

    async fn load(&self, claim: &Claim, now: DateTime<Utc>) -> Result<Work> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT state, epoch, lease_owner FROM workflows WHERE id = $1")
            .bind(claim.id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::LeaseLost(claim.id.clone()))?;
        if row.try_get::<i64, _>("epoch")? != claim.epoch
            || row.try_get::<Option<String>, _>("lease_owner")?.as_deref() != Some(&claim.owner)
        {
            return Err(StoreError::LeaseLost(claim.id.clone()));
        }
        let id = claim.id.as_str();
        let state: WorkflowState =
            WORKFLOW_STATE.open_json(&self.key, &[id], row.try_get::<&[u8], _>("state")?)?;
        if let Some(r) =
            sqlx::query("SELECT id, event FROM inbox WHERE workflow_id = $1 ORDER BY id LIMIT 1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        {
            let row: i64 = r.try_get("id")?;
            let event: Event = INBOX_EVENT.open_json(
                &self.key,
                &[&row.to_string()],
                r.try_get::<&[u8], _>("event")?,
            )?;
            return Ok(Work {
                state,
                item: Some(WorkItem::Inbox { id: row, event }),
            });
        }
        let now_ms = ms(now);
        if let Some(kind) = sqlx::query_scalar::<_, String>("SELECT kind FROM timers WHERE workflow_id = $1 AND fire_at <= $2 ORDER BY fire_at LIMIT 1")
            .bind(id)
            .bind(now_ms)
            .fetch_optional(&mut *conn)
            .await?
            .and_then(|k| TimerKind::from_label(&k))
        {
            return Ok(Work { state, item: Some(WorkItem::Timer(kind)) });
        }
        let pending = sqlx::query("SELECT seq, command, attempts, not_before FROM outbox WHERE workflow_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(r) = pending
            && r.try_get::<i64, _>("not_before")? <= now_ms
        {
            let seq = r.try_get::<i64, _>("seq")?.to_string();
            let command: Command = OUTBOX_COMMAND.open_json(
                &self.key,
                &[id, &seq],
                r.try_get::<&[u8], _>("command")?,
            )?;
            let attempts = u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX);
            return Ok(Work {
                state,
                item: Some(WorkItem::Command { command, attempts }),
            });
        }
        Ok(Work { state, item: None })
    }

    async fn begin_effect(
        &self,
        claim: &Claim,
        command: &Command,
        attempt: u32,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        let mut tx = self.join().await?;
        check_lease(&mut tx, claim, ms(now)).await?;
        // A call repeated after a crash is a new attempt in the journal, whatever the outbox
        // counted: the dead runner's intent row stays as evidence of the first call.
        let journaled: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(attempt) FROM effects WHERE workflow_id = $1 AND seq = $2",
        )
        .bind(claim.id.as_str())
        .bind(command.seq as i64)
        .fetch_one(&mut *tx)
        .await?;
        let attempt = attempt.max(u32::try_from(journaled.unwrap_or(0) + 1).unwrap_or(u32::MAX));
        sqlx::query(
            "INSERT INTO effects (workflow_id, seq, attempt, action, idempotency_key, epoch, intent_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(claim.id.as_str())
        .bind(command.seq as i64)
        .bind(i64::from(attempt))
        .bind(command.action.label())
        .bind(key)
        .bind(claim.epoch)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        made_with_intent(&mut tx, claim, command).await?;
        self.finish_member(tx).await?;
        Ok(attempt)
    }

    async fn park(
        &self,
        claim: &Claim,
        until: DateTime<Utc>,
        task: &StaffTask,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.join().await?;
        check_lease(&mut tx, claim, ms(now)).await?;
        let mut events = Vec::new();
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT 1::BIGINT FROM staff_tasks WHERE workflow_id = $1 AND kind = $2 AND resolved_at IS NULL",
        )
        .bind(claim.id.as_str())
        .bind(task.kind.label())
        .fetch_optional(&mut *tx)
        .await?;
        if open.is_none() {
            let practice: String =
                sqlx::query_scalar("SELECT practice_id FROM workflows WHERE id = $1")
                    .bind(claim.id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            let row = next_id(&mut tx, TASK_REASON.table).await?;
            let reason =
                TASK_REASON.seal(&self.key, &[&row.to_string()], task.reason.as_bytes())?;
            sqlx::query("INSERT INTO staff_tasks (id, workflow_id, practice_id, kind, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(row)
                .bind(claim.id.as_str())
                .bind(practice)
                .bind(task.kind.label())
                .bind(reason)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
            // Staff hear of it as of any task (a state that no longer opens has no event).
            let sealed: Vec<u8> = sqlx::query_scalar("SELECT state FROM workflows WHERE id = $1")
                .bind(claim.id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            if let Ok(state) =
                WORKFLOW_STATE.open_json::<WorkflowState>(&self.key, &[claim.id.as_str()], &sealed)
            {
                events = super::outbox::task_events(&mut tx, claim.id.as_str(), &state, task, now)
                    .await?;
            }
        }
        sqlx::query("UPDATE workflows SET lease_owner = NULL, lease_until = NULL, next_due_at = $1 WHERE id = $2")
            .bind(ms(until))
            .bind(claim.id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.defer_events(claim.id.as_str(), events, now);
        self.finish_member(tx).await
    }

    async fn commit_step(
        &self,
        claim: &Claim,
        state: &WorkflowState,
        consumed: Consumed,
        event_label: &str,
        transition: &Transition,
        next: Option<NextStep<'_>>,
        now: DateTime<Utc>,
    ) -> Result<AfterStep> {
        let now_ms = ms(now);
        let id = claim.id.as_str();
        // Sealed before the transaction: a failed seal writes nothing.
        let sealed_state = WORKFLOW_STATE.seal_json(&self.key, &[id], state)?;
        let mut tx = self.join().await?;
        check_lease(&mut tx, claim, ms(now)).await?;
        match &consumed {
            Consumed::Inbox(row) => {
                sqlx::query("DELETE FROM inbox WHERE id = $1")
                    .bind(row)
                    .execute(&mut *tx)
                    .await?;
            }
            Consumed::Timer(kind) => {
                sqlx::query("DELETE FROM timers WHERE workflow_id = $1 AND kind = $2")
                    .bind(id)
                    .bind(kind.label())
                    .execute(&mut *tx)
                    .await?;
            }
            Consumed::Command {
                seq,
                attempt,
                outcome,
            } => {
                sqlx::query("UPDATE outbox SET status = 'done', done_at = $1, attempts = attempts + 1 WHERE workflow_id = $2 AND seq = $3")
                    .bind(now_ms)
                    .bind(id)
                    .bind(*seq as i64)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE effects SET finished_at = $1, outcome = $2 WHERE workflow_id = $3 AND seq = $4 AND attempt = $5")
                    .bind(now_ms)
                    .bind(outcome)
                    .bind(id)
                    .bind(*seq as i64)
                    .bind(i64::from(*attempt))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for kind in &transition.clear_timers {
            sqlx::query("DELETE FROM timers WHERE workflow_id = $1 AND kind = $2")
                .bind(id)
                .bind(kind.label())
                .execute(&mut *tx)
                .await?;
        }
        for (kind, at) in &transition.set_timers {
            sqlx::query(
                "INSERT INTO timers (workflow_id, kind, fire_at) VALUES ($1, $2, $3)
                 ON CONFLICT (workflow_id, kind) DO UPDATE SET fire_at = excluded.fire_at",
            )
            .bind(id)
            .bind(kind.label())
            .bind(ms(*at))
            .execute(&mut *tx)
            .await?;
        }
        if transition.drop_pending_messages {
            sqlx::query("UPDATE outbox SET status = 'dropped', done_at = $1 WHERE workflow_id = $2 AND status = 'pending' AND action = 'send_message'")
                .bind(now_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for command in &transition.commands {
            insert_command(
                &mut tx,
                &self.key,
                id,
                command,
                &state.command_key(command),
                now_ms,
            )
            .await?;
        }
        if let Some(task) = &transition.raise_task {
            let row = next_id(&mut tx, TASK_REASON.table).await?;
            let reason =
                TASK_REASON.seal(&self.key, &[&row.to_string()], task.reason.as_bytes())?;
            sqlx::query("INSERT INTO staff_tasks (id, workflow_id, practice_id, kind, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(row)
                .bind(id)
                .bind(state.key.practice_id.as_str())
                .bind(task.kind.label())
                .bind(reason)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        // Outbound events (webhooks, CRM, lab) in the step's own transaction: read against the
        // state stored before this step, so they are written before it is replaced.
        let outbound = super::outbox::record_events(
            &mut tx,
            &self.key,
            id,
            state,
            transition.raise_task.as_ref(),
            now,
        )
        .await?;
        let detail = if transition.audit.is_empty() {
            String::new()
        } else {
            transition.audit.join("; ")
        };
        insert_audit(
            &mut tx,
            &self.key,
            id,
            "runner",
            event_label,
            &detail,
            now_ms,
        )
        .await?;
        sqlx::query(
            "UPDATE workflows SET state = $1, status = $2, stage = $3, updated_at = $4, ledger_written_at = $5 WHERE id = $6",
        )
        .bind(sealed_state)
        .bind(state.status.label())
        .bind(state.stage_label())
        .bind(now_ms)
        .bind(state.ledger_written_at.map(ms))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        refresh_due(&mut tx, id).await?;
        // The call's own facts (a message's channels that went out, disclosures) are facts of
        // the step: written with it, not in a transaction each during the call.
        if let Some(next) = &next {
            for sent in next.facts.sent {
                super::delivery::record_sent(&mut tx, sent, now_ms).await?;
            }
            let practice = &state.key.practice_id;
            if let Some(contact) = next.facts.patient {
                super::patient::put_patient_in(&mut tx, &self.key, practice, contact, now_ms)
                    .await?;
            }
            if let Some(consent) = next.facts.consent {
                super::patient::record_consent_in(
                    &mut tx,
                    &self.key,
                    practice,
                    &consent.phone,
                    &consent.entry,
                    now_ms,
                )
                .await?;
            }
            for line in next.facts.audit {
                insert_audit(
                    &mut tx,
                    &self.key,
                    id,
                    "runner",
                    line.kind,
                    &line.detail,
                    now_ms,
                )
                .await?;
            }
        }
        let after = match next {
            Some(next) => continue_after(&mut tx, claim, next, now_ms).await?,
            None => AfterStep::Kept,
        };
        // Inserted by the group's commit, under the one lock every step with events takes.
        tx.defer_events(id, outbound, now);
        self.finish_member(tx).await?;
        Ok(after)
    }

    async fn defer_command(
        &self,
        claim: &Claim,
        seq: u64,
        attempt: u32,
        outcome: &str,
        not_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let id = claim.id.as_str();
        let mut tx = self.join().await?;
        check_lease(&mut tx, claim, ms(now)).await?;
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, not_before = $1 WHERE workflow_id = $2 AND seq = $3")
            .bind(ms(not_before))
            .bind(id)
            .bind(seq as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE effects SET finished_at = $1, outcome = $2 WHERE workflow_id = $3 AND seq = $4 AND attempt = $5")
            .bind(ms(now))
            .bind(outcome)
            .bind(id)
            .bind(seq as i64)
            .bind(i64::from(attempt))
            .execute(&mut *tx)
            .await?;
        refresh_due(&mut tx, id).await?;
        self.finish_member(tx).await
    }

    async fn renew_lease(&self, claim: &Claim, now: DateTime<Utc>, lease: Duration) -> Result<()> {
        let now_ms = ms(now);
        let renewed = sqlx::query(
            "UPDATE workflows SET lease_until = $1 WHERE id = $2 AND epoch = $3 AND lease_owner = $4 AND lease_until >= $5",
        )
        .bind(now_ms + lease.as_millis() as i64)
        .bind(claim.id.as_str())
        .bind(claim.epoch)
        .bind(&claim.owner)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if renewed == 1 {
            self.writes.add(std::panic::Location::caller());
            Ok(())
        } else {
            Err(StoreError::LeaseLost(claim.id.clone()))
        }
    }

    async fn next_claimable(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let now_ms = ms(now);
        // Two index-friendly looks rather than one scan: the earliest due workflow nobody holds,
        // and the earliest expiry among held leases on workflows already due (a runner that died
        // holding them).
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT next_due_at FROM workflows
             WHERE next_due_at IS NOT NULL AND (lease_until IS NULL OR lease_until < $1)
               AND id NOT IN (SELECT workflow_id FROM quarantined_workflows)
             ORDER BY next_due_at LIMIT 1",
        )
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        let expiry: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(lease_until) + 1 FROM workflows
             WHERE next_due_at IS NOT NULL AND next_due_at <= $1 AND lease_until >= $1",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(match (due, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(from_ms))
    }

    fn due_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        Some(self.due.clone())
    }

    fn handoffs(&self) -> Option<&Handoffs> {
        Some(&self.handoffs)
    }

    async fn release(&self, claim: &Claim, _now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.join().await?;
        sqlx::query("UPDATE workflows SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND epoch = $2 AND lease_owner = $3")
            .bind(claim.id.as_str())
            .bind(claim.epoch)
            .bind(&claim.owner)
            .execute(&mut *tx)
            .await?;
        refresh_due(&mut tx, claim.id.as_str()).await?;
        announce_release(&mut tx, claim.id.as_str()).await?;
        self.finish_member(tx).await
    }
}

/// Announces (`NOTIFY`, delivered at commit) a workflow released with something due later (a
/// timer, a retry's backoff): every instance's runner then reads the next due time again and
/// sleeps until it, instead of learning of it at its idle recheck. The releasing instance needs
/// no telling (its freed slot wakes its own runner), but when it is busy or gone, another takes
/// the workflow on time. Nothing is announced for a workflow waiting on nobody but the outside.
async fn announce_release(conn: &mut sqlx::PgConnection, id: &str) -> Result<()> {
    sqlx::query(
        "SELECT pg_notify($1, '') FROM workflows WHERE id = $2 AND next_due_at IS NOT NULL",
    )
    .bind(super::DUE_CHANNEL)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The rest of [`WorkflowStore::commit_step`] inside its transaction, after the step is written
/// and the workflow's due time recomputed: release when nothing is due, else keep the claim and,
/// when the proposed command is what [`WorkflowStore::load`] would hand out next, journal its
/// intent as [`WorkflowStore::begin_effect`] does.
async fn continue_after(
    conn: &mut sqlx::PgConnection,
    claim: &Claim,
    next: NextStep<'_>,
    now_ms: i64,
) -> Result<AfterStep> {
    let id = claim.id.as_str();
    let row = sqlx::query(
        "SELECT w.next_due_at,
                EXISTS (SELECT 1 FROM inbox WHERE workflow_id = w.id) AS inbox,
                EXISTS (SELECT 1 FROM timers WHERE workflow_id = w.id AND fire_at <= $2) AS timer,
                o.seq, o.not_before, o.attempts,
                (SELECT MAX(attempt) FROM effects e WHERE e.workflow_id = w.id AND e.seq = o.seq) AS journaled
         FROM workflows w
         LEFT JOIN (
             SELECT workflow_id, seq, not_before, attempts FROM outbox
             WHERE workflow_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1
         ) o ON o.workflow_id = w.id
         WHERE w.id = $1",
    )
    .bind(id)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    // As `load` sees it: an inbox event is due whatever its time, then timers and commands by
    // the workflow's due time.
    let inbox = row.try_get::<bool, _>("inbox")?;
    let due = inbox
        || row
            .try_get::<Option<i64>, _>("next_due_at")?
            .is_some_and(|at| at <= now_ms);
    if !due {
        sqlx::query("UPDATE workflows SET lease_owner = NULL, lease_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        announce_release(conn, id).await?;
        return Ok(AfterStep::Released);
    }
    sqlx::query("UPDATE workflows SET lease_until = $1 WHERE id = $2")
        .bind(now_ms + next.lease.as_millis() as i64)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let first = match next.begin {
        Some((command, _)) => {
            !inbox
                && !row.try_get::<bool, _>("timer")?
                && row.try_get::<Option<i64>, _>("seq")? == Some(command.seq as i64)
                && row
                    .try_get::<Option<i64>, _>("not_before")?
                    .is_some_and(|at| at <= now_ms)
        }
        None => false,
    };
    let (Some((command, key)), true) = (next.begin, first) else {
        // A command queued earlier may be next: journaled now when its key is stored with it.
        return Ok(match journal_claimed(conn, claim, now_ms).await? {
            Some(intent) => AfterStep::Journaled(intent),
            None => AfterStep::Due,
        });
    };
    let attempts = row.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0);
    let journaled = row.try_get::<Option<i64>, _>("journaled")?.unwrap_or(0);
    let attempt = u32::try_from(attempts.max(journaled) + 1).unwrap_or(u32::MAX);
    sqlx::query(
        "INSERT INTO effects (workflow_id, seq, attempt, action, idempotency_key, epoch, intent_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(command.seq as i64)
    .bind(i64::from(attempt))
    .bind(command.action.label())
    .bind(key)
    .bind(claim.epoch)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    made_with_intent(&mut *conn, claim, command).await?;
    for (channel, digest) in next.sends {
        super::delivery::begin_one(&mut *conn, key, channel, digest.as_deref(), now_ms).await?;
    }
    Ok(AfterStep::Begun(attempt))
}

/// In the transaction that made workflow `id` due (a webhook's event, a poll's new plan): takes
/// its lease for `owner` until `until` when it is due, nobody holds it and it is not set aside,
/// as `claim_due` would (the epoch moves on), and journals its next command's intent when that is
/// what is due. `None` otherwise. As the SQLite store's `onehop::take_for`; a row another
/// instance claimed meanwhile is seen as it is once its lock is let go, so one claim wins.
pub(super) async fn take_for(
    conn: &mut sqlx::PgConnection,
    id: &WorkflowId,
    owner: &str,
    until: i64,
    now_ms: i64,
) -> Result<Option<Claim>> {
    let taken: Option<(i64, Option<i64>)> = sqlx::query_as(
        "UPDATE workflows SET lease_owner = $2, lease_until = $3, epoch = epoch + 1
         WHERE id = $1 AND next_due_at IS NOT NULL AND next_due_at <= $4
           AND (lease_until IS NULL OR lease_until < $4)
           AND id NOT IN (SELECT workflow_id FROM quarantined_workflows)
         RETURNING epoch, next_due_at",
    )
    .bind(id.as_str())
    .bind(owner)
    .bind(until)
    .bind(now_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((epoch, due)) = taken else {
        return Ok(None);
    };
    let mut claim = Claim {
        id: id.clone(),
        epoch,
        owner: owner.to_owned(),
        due_at: due.map(from_ms),
        begun: None,
    };
    claim.begun = journal_claimed(conn, &claim, now_ms).await?;
    Ok(Some(claim))
}

/// In a claim's transaction: when the claimed workflow's next due item (as `load` would hand it
/// out at `now_ms`: no inbox event, no due timer) is its lowest pending command and that
/// command's idempotency key is stored with it, journals the command's intent under the new
/// epoch, as `begin_effect` would. As the SQLite store's `onehop::journal_claimed`.
async fn journal_claimed(
    conn: &mut sqlx::PgConnection,
    claim: &Claim,
    now_ms: i64,
) -> Result<Option<ClaimedIntent>> {
    let id = claim.id.as_str();
    let next = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM inbox WHERE workflow_id = $1) AS inbox,
            EXISTS (SELECT 1 FROM timers WHERE workflow_id = $1 AND fire_at <= $2) AS timer,
            o.seq, o.action, o.not_before, o.attempts, o.idempotency_key,
            (SELECT MAX(attempt) FROM effects e WHERE e.workflow_id = $1 AND e.seq = o.seq) AS journaled
         FROM (
             SELECT seq, action, not_before, attempts, idempotency_key FROM outbox
             WHERE workflow_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1
         ) o",
    )
    .bind(id)
    .bind(now_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = next else {
        return Ok(None);
    };
    let key: Option<String> = row.try_get("idempotency_key")?;
    let Some(key) = key else {
        return Ok(None);
    };
    if row.try_get::<bool, _>("inbox")?
        || row.try_get::<bool, _>("timer")?
        || row.try_get::<i64, _>("not_before")? > now_ms
    {
        return Ok(None);
    }
    let seq: i64 = row.try_get("seq")?;
    let action: String = row.try_get("action")?;
    let attempts: i64 = row.try_get("attempts")?;
    let journaled: Option<i64> = row.try_get("journaled")?;
    let attempt = u32::try_from(attempts.max(journaled.unwrap_or(0)) + 1).unwrap_or(u32::MAX);
    sqlx::query(
        "INSERT INTO effects (workflow_id, seq, attempt, action, idempotency_key, epoch, intent_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(seq)
    .bind(i64::from(attempt))
    .bind(&action)
    .bind(&key)
    .bind(claim.epoch)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    if action == START_APPLICATION {
        super::links::ensure_return_reference(conn, id).await?;
    }
    Ok(Some(ClaimedIntent {
        seq: u64::try_from(seq).unwrap_or_default(),
        attempt,
        key,
    }))
}

/// The action label of a lender application (`Action::StartApplication`), whose intent makes
/// the return reference.
const START_APPLICATION: &str = "start_application";

/// What a call needs in place before it goes out, written with its intent: an application's
/// lender return reference (the return link the lender is sent must resolve when the patient
/// comes back; [`LinkStore::return_reference`](crate::store::LinkStore::return_reference) then
/// finds it without a transaction of its own).
async fn made_with_intent(
    conn: &mut sqlx::PgConnection,
    claim: &Claim,
    command: &Command,
) -> Result<()> {
    if matches!(
        command.action,
        chairside_workflow::Action::StartApplication { .. }
    ) {
        super::links::ensure_return_reference(conn, claim.id.as_str()).await?;
    }
    Ok(())
}
