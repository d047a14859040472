//! The runner's role on SQLite: claims, leases and steps, each one transaction on the store's own
//! thread ([`super::thread`]; the statements are in [`super::onehop`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::onehop::{self, NextWrite, StepWrite};
use super::{OUTBOX_COMMAND, SqliteStore, WORKFLOW_STATE, from_ms, ms};
use crate::store::{
    AfterStep, Claim, ClaimRound, Consumed, Handoffs, NextStep, Result, StoreError, Work,
    WorkflowStore,
};
use chairside_workflow::machine::Transition;
use chairside_workflow::{Command, StaffTask, WorkflowState};

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claim>> {
        // Leases are judged by one clock: the time the caller passes for the whole fleet of
        // runners on this file, which on SQLite is one machine.
        let now_ms = ms(now);
        let until = now_ms + lease.as_millis() as i64;
        let owner = owner.to_owned();
        let claims = self
            .thread
            .write(move |conn| onehop::claim_due(conn, &owner, now_ms, until, limit))
            .await?;
        if !claims.is_empty() {
            self.writes.add(std::panic::Location::caller());
        }
        Ok(claims)
    }

    async fn load(&self, claim: &Claim, now: DateTime<Utc>) -> Result<Work> {
        let (key, states) = (self.key.clone(), self.states.clone());
        let claim = claim.clone();
        self.reader
            .read(move |conn| onehop::load(conn, &key, &states, &claim, ms(now)))
            .await
    }

    async fn begin_effect(
        &self,
        claim: &Claim,
        command: &Command,
        attempt: u32,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        let claim = claim.clone();
        let (seq, action, key) = (command.seq as i64, command.action.label(), key.to_owned());
        let attempt = self
            .thread
            .write(move |conn| {
                onehop::begin_effect(conn, &claim, seq, action, attempt, &key, ms(now))
            })
            .await?;
        self.writes.add(std::panic::Location::caller());
        Ok(attempt)
    }

    async fn park(
        &self,
        claim: &Claim,
        until: DateTime<Utc>,
        task: &StaffTask,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (key, states) = (self.key.clone(), self.states.clone());
        let (claim, task) = (claim.clone(), task.clone());
        self.thread
            .write(move |conn| onehop::park(conn, &key, &states, &claim, ms(until), &task, ms(now)))
            .await?;
        self.writes.add(std::panic::Location::caller());
        Ok(())
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
        let id = claim.id.as_str();
        // Sealed before the transaction: a failed seal writes nothing.
        let sealed_state = WORKFLOW_STATE.seal_json(&self.key, &[id], state)?;
        let commands = transition
            .commands
            .iter()
            .map(|command| {
                let seq = command.seq.to_string();
                let sealed = OUTBOX_COMMAND.seal_json(&self.key, &[id, &seq], command)?;
                let key = state.command_key(command);
                Ok((command.seq as i64, command.action.label(), sealed, key))
            })
            .collect::<Result<Vec<_>>>()?;
        let step = StepWrite {
            claim: claim.clone(),
            state: Arc::new(state.clone()),
            sealed_state,
            consumed,
            event_label: event_label.to_owned(),
            clear_timers: transition.clear_timers.clone(),
            set_timers: transition
                .set_timers
                .iter()
                .map(|(kind, at)| (*kind, ms(*at)))
                .collect(),
            drop_pending_messages: transition.drop_pending_messages,
            commands,
            raise_task: transition.raise_task.clone(),
            audit: transition.audit.join("; "),
            next: next.map(|next| NextWrite {
                begin: next.begin.map(|(command, key)| {
                    (command.seq as i64, command.action.label(), key.to_owned())
                }),
                sends: next
                    .sends
                    .iter()
                    .map(|(channel, digest)| ((*channel).to_owned(), digest.clone()))
                    .collect(),
                lease_ms: next.lease.as_millis() as i64,
                sent: next.facts.sent.to_vec(),
                audit: next.facts.audit.to_vec(),
                patient: next.facts.patient.cloned(),
                consent: next.facts.consent.cloned(),
            }),
            now,
        };
        let (key, states) = (self.key.clone(), self.states.clone());
        let after = self
            .thread
            .write(move |conn| onehop::commit_step(conn, &key, &states, &step))
            .await?;
        self.writes.add(std::panic::Location::caller());
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
        let (claim, outcome) = (claim.clone(), outcome.to_owned());
        self.thread
            .write(move |conn| {
                onehop::defer_command(
                    conn,
                    &claim,
                    seq as i64,
                    attempt,
                    &outcome,
                    ms(not_before),
                    ms(now),
                )
            })
            .await?;
        self.writes.add(std::panic::Location::caller());
        Ok(())
    }

    async fn renew_lease(&self, claim: &Claim, now: DateTime<Utc>, lease: Duration) -> Result<()> {
        let now_ms = ms(now);
        let until = now_ms + lease.as_millis() as i64;
        let held = claim.clone();
        let renewed = self
            .thread
            .write(move |conn| onehop::renew_lease(conn, &held, now_ms, until))
            .await?;
        if renewed {
            self.writes.add(std::panic::Location::caller());
            Ok(())
        } else {
            Err(StoreError::LeaseLost(claim.id.clone()))
        }
    }

    async fn claim_round(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<ClaimRound> {
        // One job of the store thread: the claims, and the next time read in their transaction
        // (so as it reads once they are held), a trip there and back less per look for work.
        let now_ms = ms(now);
        let until = now_ms + lease.as_millis() as i64;
        let owner = owner.to_owned();
        let round = self
            .thread
            .write(move |conn| {
                let claims = onehop::claim_due(conn, &owner, now_ms, until, limit)?;
                // A failed read fails no claim: it is answered beside them.
                let next = (!ClaimRound::fills(&claims, limit))
                    .then(|| onehop::next_claimable(conn, now_ms).map(|at| at.map(from_ms)));
                Ok(ClaimRound { claims, next })
            })
            .await?;
        if !round.claims.is_empty() {
            self.writes.add(std::panic::Location::caller());
        }
        Ok(round)
    }

    async fn next_claimable(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let now_ms = ms(now);
        Ok(self
            .reader
            .read(move |conn| onehop::next_claimable(conn, now_ms))
            .await?
            .map(from_ms))
    }

    fn due_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        Some(self.due.clone())
    }

    fn handoffs(&self) -> Option<&Handoffs> {
        Some(&self.handoffs)
    }

    async fn release(&self, claim: &Claim, _now: DateTime<Utc>) -> Result<()> {
        let claim = claim.clone();
        self.thread
            .write(move |conn| onehop::release(conn, &claim))
            .await?;
        self.writes.add(std::panic::Location::caller());
        Ok(())
    }
}
