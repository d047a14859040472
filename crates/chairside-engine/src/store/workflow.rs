//! The runner's role: claim due workflows and step them under a fenced lease.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Claim, ClaimRound, Consumed, Result, Work};
use chairside_workflow::machine::Transition;
use chairside_workflow::{Command, StaffTask, WorkflowState};
use financing_core::PatientContact;
use messaging::ConsentEntry;

/// What the runner asks of [`WorkflowStore::commit_step`] after the step itself.
#[derive(Debug, Clone, Copy)]
pub struct NextStep<'a> {
    /// The command the runner would perform next, with its idempotency key: journaled at once
    /// when it is the workflow's next due item. Commands run in sequence order, so this is the
    /// step's first new command.
    pub begin: Option<(&'a Command, &'a str)>,
    /// The message journal's `attempting` records of `begin`'s command when it sends a message,
    /// `(channel, body digest)` each, as
    /// [`DeliveryStore::begin_sends`](super::DeliveryStore::begin_sends) would write them under
    /// `begin`'s key: written only when the intent is journaled ([`AfterStep::Begun`]), so the
    /// send that follows needs no transaction of its own. Empty: nothing journaled.
    pub sends: &'a [(&'static str, Option<String>)],
    /// How long the claim is kept for from `now` when something is still due.
    pub lease: Duration,
    /// What the step's call left to record, written in the same transaction.
    pub facts: StepFacts<'a>,
}

/// Facts a step's call produced that belong to the step: [`WorkflowStore::commit_step`] writes
/// them in the step's own transaction instead of one transaction each during the call.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepFacts<'a> {
    /// Channels of a message that went out: the delivery journal's `sent` records, as
    /// [`DeliveryStore::finish_send`](super::DeliveryStore::finish_send) with `sent` would write
    /// them.
    pub sent: &'a [SentChannel],
    /// Audit lines of the runner besides the step's own (a disclosure to a lender), as
    /// [`ReportStore::append_audit`](super::ReportStore::append_audit) would write them.
    pub audit: &'a [AuditLine],
    /// The patient's contact as the step read it from the practice system (a plan loaded), as
    /// [`PatientStore::put_patient`](super::PatientStore::put_patient) would store it for the
    /// workflow's practice.
    pub patient: Option<&'a PatientContact>,
    /// The practice's word on the patient's SMS consent, read with the plan: recorded in the
    /// number's consent history as
    /// [`PatientStore::record_sms_consent`](super::PatientStore::record_sms_consent) would, for the
    /// workflow's practice.
    pub consent: Option<&'a ConsentFact>,
}

impl StepFacts<'_> {
    /// Nothing to record.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
            && self.audit.is_empty()
            && self.patient.is_none()
            && self.consent.is_none()
    }
}

/// A consent entry for a number, recorded by a step's commit ([`StepFacts::consent`]). Its
/// `Debug` leaves the number out.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsentFact {
    /// The number (E.164).
    pub phone: String,
    /// What is recorded.
    pub entry: ConsentEntry,
}

impl std::fmt::Debug for ConsentFact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentFact")
            .field("source", &self.entry.source)
            .field("grant", &self.entry.grant)
            .finish_non_exhaustive()
    }
}

/// One channel of a message that went out (no contact data: the key, the channel, the
/// provider's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentChannel {
    /// The message key (the command's idempotency key).
    pub key: String,
    /// `email` or `sms`, as the delivery journal names them.
    pub channel: &'static str,
    /// The provider's id (`SM…`, the email's `Message-ID`).
    pub provider_id: String,
}

/// An audit line of the runner (no PHI in `detail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    /// Its kind (`disclosure`).
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
}

/// What [`WorkflowStore::commit_step`] did after storing the step, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStep {
    /// The proposed command was the next due item: its intent is journaled at this attempt
    /// number and the lease extended. The runner performs it at once, with the state it holds.
    Begun(u32),
    /// Something else is due (an inbox event, a due timer, a lower command): the lease was
    /// extended; the runner loads the next item.
    Due,
    /// A command queued earlier is the next due item and its idempotency key is stored with it:
    /// its intent is journaled (as [`WorkflowStore::begin_effect`] would) and the lease
    /// extended. The runner loads it and performs it under this intent.
    Journaled(super::ClaimedIntent),
    /// Nothing was due at `now`: the claim was released.
    Released,
    /// No `next` was given: the claim is as it was.
    Kept,
}

/// Claims the store's own transactions make for this instance's runner ([`WorkflowStore::handoffs`]):
/// a poll that creates workflows, or a webhook that queues an event for a workflow nobody holds,
/// takes the lease for the registered runner in that same transaction (its first command's
/// intent journaled too, as [`WorkflowStore::claim_due`] journals it), and hands the claim over
/// here after the commit, so the wake-up costs no claim transaction of its own. A claim handed
/// over is a claim like any other: fenced by its epoch, and run out if nobody takes it.
#[derive(Debug, Default)]
pub struct Handoffs {
    taker: std::sync::Mutex<Option<(String, Duration)>>,
    claims: std::sync::Mutex<std::collections::VecDeque<(Claim, std::time::Instant)>>,
}

impl Handoffs {
    /// Makes `owner` the taker, with claims held for `lease`. False (nothing changed) when
    /// another owner is registered.
    pub fn register(&self, owner: &str, lease: Duration) -> bool {
        let mut taker = self.taker.lock().unwrap_or_else(|e| e.into_inner());
        match taker.as_ref() {
            Some((held, _)) if held != owner => false,
            _ => {
                *taker = Some((owner.to_owned(), lease));
                true
            }
        }
    }

    /// Stops handing claims to `owner`; returns the claims it did not take (to release).
    pub fn unregister(&self, owner: &str) -> Vec<Claim> {
        let mut taker = self.taker.lock().unwrap_or_else(|e| e.into_inner());
        if taker.as_ref().is_some_and(|(held, _)| held == owner) {
            *taker = None;
            let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
            claims.drain(..).map(|(claim, _)| claim).collect()
        } else {
            Vec::new()
        }
    }

    /// Who takes the claims, and for how long they are made; `None` when nobody is registered.
    pub fn taker(&self) -> Option<(String, Duration)> {
        self.taker.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Hands `claims` over (after the commit that made them).
    pub fn push(&self, claims: impl IntoIterator<Item = Claim>) {
        let now = std::time::Instant::now();
        let mut queue = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        queue.extend(claims.into_iter().map(|claim| (claim, now)));
    }

    /// Up to `n` claims handed over, oldest first, each with when it was made.
    pub fn take(&self, n: usize) -> Vec<(Claim, std::time::Instant)> {
        let mut queue = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(queue.len());
        queue.drain(..n).collect()
    }
}

/// What the runner does with workflows: claim, load, journal effects, commit steps, release.
/// Every write checks the claim's fencing epoch.
#[async_trait]
pub trait WorkflowStore: Send + Sync + std::fmt::Debug + 'static {
    /// Claims up to `limit` workflows that are due and not leased, for `lease`.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claim>>;

    /// Loads a claimed workflow and its next due item: inbox events first, then due timers, then the
    /// lowest pending command whose time has come.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`](super::StoreError::LeaseLost),
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Decode`](super::StoreError::Decode).
    async fn load(&self, claim: &Claim, now: DateTime<Utc>) -> Result<Work>;

    /// Journals the intent to perform `command` before the call. `attempt` is the caller's count;
    /// the journal never reuses a number, so a call repeated after a crash is recorded as a new
    /// attempt. Returns the attempt number journaled.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`](super::StoreError::LeaseLost),
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn begin_effect(
        &self,
        claim: &Claim,
        command: &Command,
        attempt: u32,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<u32>;

    /// Sets a claimed workflow aside until `until` (nothing this runner can do for it: its practice
    /// is not configured here) and opens `task` for staff once.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`](super::StoreError::LeaseLost),
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn park(
        &self,
        claim: &Claim,
        until: DateTime<Utc>,
        task: &StaffTask,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Stores a step in one transaction, only if the claim still holds: the new state, what was
    /// consumed, the transition's commands (outbox), timers, staff task and audit lines.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`](super::StoreError::LeaseLost) (nothing was written),
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn commit(
        &self,
        claim: &Claim,
        state: &WorkflowState,
        consumed: Consumed,
        event_label: &str,
        transition: &Transition,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.commit_step(claim, state, consumed, event_label, transition, None, now)
            .await
            .map(|_| ())
    }

    /// [`commit`](Self::commit), and with `next`, what the runner would do next in the same
    /// transaction (DESIGN.md's step 3 of one call merged with step 1 of the next):
    /// - nothing due at `now`: the claim is released, as [`release`](Self::release) would;
    /// - `next.begin`'s command is the workflow's next due item (no inbox event, no due timer, no
    ///   lower pending command): its intent is journaled as [`begin_effect`](Self::begin_effect)
    ///   would, with `next.sends` in the message journal, and the lease extended to
    ///   `now + next.lease`;
    /// - a command queued earlier is the next due item, its key stored with it: its intent is
    ///   journaled ([`AfterStep::Journaled`]) and the lease extended;
    /// - something else is due: the lease is extended; the runner loads it.
    ///
    /// Without `next`, the claim is left as it is ([`AfterStep::Kept`]).
    ///
    /// # Errors
    /// As [`commit`](Self::commit): on any error nothing was written.
    #[allow(clippy::too_many_arguments)]
    async fn commit_step(
        &self,
        claim: &Claim,
        state: &WorkflowState,
        consumed: Consumed,
        event_label: &str,
        transition: &Transition,
        next: Option<NextStep<'_>>,
        now: DateTime<Utc>,
    ) -> Result<AfterStep>;

    /// Puts a command back for a later attempt (transient failure), journaling the outcome.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`](super::StoreError::LeaseLost),
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn defer_command(
        &self,
        claim: &Claim,
        seq: u64,
        attempt: u32,
        outcome: &str,
        not_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Extends a held lease to `now + lease` while a step is still working under it. Refused
    /// when the lease was lost (another claim moved the epoch) or already ran out at `now`: a
    /// lease that expired is never revived, since another runner may have taken it.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`](super::StoreError::LeaseLost),
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn renew_lease(&self, claim: &Claim, now: DateTime<Utc>, lease: Duration) -> Result<()>;

    /// When the next workflow becomes claimable, as of `now`: the earliest due time of an
    /// unleased workflow, or the expiry of a lease held on one that is due. `None` when nothing
    /// is scheduled. A runner with free slots sleeps until then (or until woken).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn next_claimable(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>>;

    /// [`claim_due`](Self::claim_due), then, when fewer than `limit` were claimed,
    /// [`next_claimable`](Self::next_claimable) at the same `now` as it reads once the claims are
    /// held: what a runner with free slots asks each time it looks for work. A store that can
    /// answer both in one trip does (SQLite: one job of its store thread); this default asks one
    /// after the other.
    ///
    /// # Errors
    /// As [`claim_due`](Self::claim_due); an error reading the next time is
    /// [`ClaimRound::next`](super::ClaimRound::next), beside the claims made.
    async fn claim_round(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<ClaimRound> {
        let claims = self.claim_due(owner, now, lease, limit).await?;
        let next = if ClaimRound::fills(&claims, limit) {
            None
        } else {
            Some(self.next_claimable(now).await)
        };
        Ok(ClaimRound { claims, next })
    }

    /// Rings after a commit that made work due from outside the runner (a webhook, a poll, a
    /// staff action), so a waiting runner claims it at once. `None` when the store cannot tell
    /// (the runner then looks every [`RunnerConfig::idle_recheck`](crate::runner::RunnerConfig)).
    fn due_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// The claims this store's own transactions make for this instance's runner
    /// ([`Handoffs`]); `None` when the store makes none (the runner then claims everything with
    /// [`claim_due`](Self::claim_due)).
    fn handoffs(&self) -> Option<&Handoffs> {
        None
    }

    /// Releases the claim and recomputes when the workflow is next due.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn release(&self, claim: &Claim, now: DateTime<Utc>) -> Result<()>;
}
