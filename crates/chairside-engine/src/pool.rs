//! The long-running loops of a [`Runner`]: a continuous pool of workflow slots, and one poller per
//! practice.
//!
//! - [`Runner::work`] keeps up to `concurrency` workflows in flight. A slot that frees is filled
//!   at once (no batch waits for its slowest member); with free slots and nothing due, it sleeps
//!   until the store's next due time, a wake-up (a webhook, a poll, a staff action committed
//!   through the store, or [`Runner::wake`]) or `idle_recheck`, whichever comes first. Claims keep
//!   the durable lease-and-epoch protocol of [`WorkflowStore`](crate::store::WorkflowStore).
//! - [`Runner::poll_practices`] gives every practice its own poller: its own interval and its own
//!   deadline, so a practice system that is slow or hangs delays no other practice's detection
//!   and no workflow. Across instances on one database, a practice's poller runs on one instance
//!   at a time, under a lease that fences its commit ([`PollerStore`](crate::store::PollerStore)).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use financing_core::PracticeId;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::runner::{PracticeRuntime, Runner, RunnerError};
use crate::store::{ClaimRound, Handoffs, PollerLease, StoreError};

/// How often [`Runner::work`] asks the store for intake links due to go out, at most (a round
/// that sent something is followed by another at once). A link queued just after a round waits
/// this long at most.
pub(crate) const INTAKE_LINKS_EVERY: Duration = Duration::from_secs(1);

impl Runner {
    /// Runs due workflows until `stop` resolves, then lets every workflow in flight commit its
    /// current step and release its lease, and returns.
    ///
    /// # Errors
    /// None today: a store failure while claiming is logged and retried after `idle_recheck`.
    pub async fn work(&self, stop: impl Future<Output = ()>) -> Result<(), RunnerError> {
        self.stopping.store(false, Ordering::Relaxed);
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let due = self.store.due_signal();
        // Claims a poll or a webhook takes for this runner in its own transaction.
        let handoffs = self
            .store
            .handoffs()
            .filter(|h| h.register(&self.config.owner, self.config.lease));
        let mut flight = JoinSet::new();
        let sending_links = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Set by a round that sent something: there may be more, so the next round goes at once.
        let more_links = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut links_round_at: Option<Instant> = None;
        tokio::pin!(stop);
        loop {
            while let Some(done) = flight.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a workflow task failed");
                }
            }
            // Intake links waiting to go to new patients, one round at a time beside the
            // workflows (an SMTP call that hangs holds no workflow slot), and at most one round
            // per `INTAKE_LINKS_EVERY` unless the last one sent something: this loop turns after
            // every step, and asking the store each time cost a query (and a wake-up of a store
            // thread) per step for sends that are rare.
            let mut links_wait = None;
            if !sending_links.load(Ordering::Acquire) {
                let due_in = links_round_at
                    .filter(|_| !more_links.load(Ordering::Acquire))
                    .map(|at| INTAKE_LINKS_EVERY.saturating_sub(at.elapsed()))
                    .unwrap_or_default();
                if due_in.is_zero() {
                    sending_links.store(true, Ordering::Release);
                    links_round_at = Some(Instant::now());
                    let runner = self.clone();
                    let (flag, more) = (sending_links.clone(), more_links.clone());
                    flight.spawn(async move {
                        let sent = match runner.send_intake_links().await {
                            Ok(n) => n > 0,
                            Err(e) => {
                                tracing::error!(error = %e, "claiming intake link sends failed");
                                false
                            }
                        };
                        more.store(sent, Ordering::Release);
                        flag.store(false, Ordering::Release);
                    });
                } else {
                    // Skipped for now: look again when it is due, however quiet the rest is.
                    links_wait = Some(due_in);
                }
            }
            if let Some(handoffs) = handoffs {
                self.take_handed(handoffs, &slots, &mut flight).await;
            }
            let free = slots.available_permits();
            let mut wait = links_wait.map_or(self.config.idle_recheck, |w| {
                w.min(self.config.idle_recheck)
            });
            if free > 0 {
                let now = self.clock.now();
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match self
                    .store
                    .claim_round(&self.config.owner, now, self.config.lease, limit)
                    .await
                {
                    Ok(ClaimRound { claims, next }) => {
                        self.note_claims(&claims, now);
                        for claim in claims {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            self.start(claim, permit, &mut flight);
                        }
                        let Some(next) = next else {
                            // Every slot taken: more may be due; look again when one frees.
                            continue;
                        };
                        match next {
                            Ok(Some(at)) => {
                                let until = (at - self.clock.now()).to_std().unwrap_or_default();
                                wait = wait.min(until);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::error!(error = %e, "reading the next due time failed")
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "claiming work failed"),
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = self.wake.notified() => {}
                () = notified(due.as_deref()) => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.stopping.store(true, Ordering::Relaxed);
        while let Some(done) = flight.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a workflow task failed");
            }
        }
        if let Some(handoffs) = handoffs {
            // Claims handed over and not taken are let go for whoever runs next.
            for claim in handoffs.unregister(&self.config.owner) {
                if let Err(e) = self.store.release(&claim, self.clock.now()).await {
                    tracing::warn!(workflow = %claim.id, error = %e, "releasing a handed-over claim failed; its lease runs out on its own");
                }
            }
        }
        Ok(())
    }

    /// Starts the claims handed over by the store ([`Handoffs`]) in free slots. One made more
    /// than a third of a lease ago is renewed first (refused: it ran out or moved, and is left
    /// to whoever holds it now); the rest wait for a slot.
    async fn take_handed(
        &self,
        handoffs: &Handoffs,
        slots: &Arc<Semaphore>,
        flight: &mut JoinSet<()>,
    ) {
        let free = slots.available_permits();
        if free == 0 {
            return;
        }
        let handed = handoffs.take(free);
        if handed.is_empty() {
            return;
        }
        let now = self.clock.now();
        let claims: Vec<_> = handed.iter().map(|(claim, _)| claim.clone()).collect();
        self.note_claims(&claims, now);
        let mut handed = handed.into_iter();
        while let Some((claim, made)) = handed.next() {
            if made.elapsed() >= (self.config.lease / 3).max(Duration::from_millis(10))
                && let Err(e) = self
                    .store
                    .renew_lease(&claim, self.clock.now(), self.config.lease)
                    .await
            {
                tracing::warn!(workflow = %claim.id, error = %e, "a handed-over claim ran out before a slot freed; left to the next claim");
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                handoffs.push(std::iter::once(claim).chain(handed.map(|(claim, _)| claim)));
                break;
            };
            self.start(claim, permit, flight);
        }
    }

    /// Drives `claim` in a slot (`permit`), waking the loop when the slot frees.
    fn start(
        &self,
        claim: crate::store::Claim,
        permit: tokio::sync::OwnedSemaphorePermit,
        flight: &mut JoinSet<()>,
    ) {
        let runner = self.clone();
        // Boxed: a workflow's step future is about 11 KB, and tokio moves a future it is given
        // (and the task's stage, as large) several times on its way into the task and out of
        // it; a box moves as a pointer (docs/performance.md, "Statements found by address").
        flight.spawn(Box::pin(async move {
            runner.drive(&claim).await;
            drop(permit);
            runner.wake.notify_one();
        }));
    }

    /// Polls every practice system on its own schedule until `stop` resolves: each practice
    /// every `every`, its poll cut at `poll_deadline` (nothing is recorded for a poll cut short;
    /// the next round asks again from the same cursor). `now` asks every practice to poll at once
    /// (a NexHealth push). Practices run side by side: one that is slow or hangs delays only its
    /// own next round.
    ///
    /// With several instances on one database, each practice is polled by one of them at a time:
    /// a poller polls only while it holds the practice's lease
    /// ([`PollerStore`](crate::store::PollerStore)), renews it at a third of
    /// [`RunnerConfig::lease`](crate::runner::RunnerConfig::lease) while it polls and between
    /// polls, and records a poll only if the lease still holds at commit. Instances without
    /// the lease try to take it at the same pace, so a holder that dies is replaced within about
    /// 1.3 leases; a holder that stops releases its leases for the others to take at once.
    pub async fn poll_practices(
        &self,
        every: Duration,
        now: Arc<Notify>,
        stop: impl Future<Output = ()>,
    ) {
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let mut pollers = JoinSet::new();
        let mut nudges = Vec::new();
        for id in self.practices.keys() {
            let nudge = Arc::new(Notify::new());
            nudges.push(nudge.clone());
            let runner = self.clone();
            let id = id.clone();
            let stopped = stopped.clone();
            pollers.spawn(async move {
                let Some(rt) = runner.practices.get(&id) else {
                    return;
                };
                runner.practice_poller(rt, every, &nudge, stopped).await;
            });
        }
        let fan_out = async {
            loop {
                now.notified().await;
                for nudge in &nudges {
                    nudge.notify_one();
                }
            }
        };
        tokio::select! {
            () = stop => {}
            () = fan_out => {}
        }
        // Each poller abandons its poll in flight and releases its lease; one stuck on the store
        // is cut after a few seconds (its lease then runs out on its own).
        let _ = stopping.send(true);
        let released = async { while pollers.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), released)
            .await
            .is_err()
        {
            pollers.shutdown().await;
        }
    }

    /// One practice's poller: holds the practice's lease (taking it when free or run out) and
    /// polls under it until `stop` turns true, then releases it.
    async fn practice_poller(
        &self,
        rt: &PracticeRuntime,
        every: Duration,
        nudge: &Notify,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let upkeep = (self.config.lease / 3).max(Duration::from_millis(10));
        let mut lease: Option<PollerLease> = None;
        let mut next_poll = Instant::now();
        loop {
            let had = lease.is_some();
            lease = self.keep_poller_lease(&rt.profile.id, lease).await;
            if lease.is_some() && !had {
                // A new tenure polls at once: the last holder may have died mid-round.
                next_poll = Instant::now();
            }
            if let Some(held) = lease.clone()
                && Instant::now() >= next_poll
            {
                // Renewed beside the poll; neither is ever cut in the middle of a store call
                // (the poll's commit is fenced, so one that lost its lease records nothing).
                let (done, poll_over) = tokio::sync::watch::channel(false);
                let renewer = {
                    let runner = self.clone();
                    let held = held.clone();
                    tokio::spawn(async move { runner.renew_while(&held, upkeep, poll_over).await })
                };
                let _ = self.poll_once_as(rt, Some(&held)).await;
                let _ = done.send(true);
                if let Ok(false) = renewer.await {
                    lease = None;
                }
                next_poll = Instant::now() + every;
                if *stop.borrow() {
                    break;
                }
            }
            let wait = if lease.is_some() {
                next_poll
                    .saturating_duration_since(Instant::now())
                    .min(upkeep)
            } else {
                upkeep
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = nudge.notified() => next_poll = Instant::now(),
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if let Some(held) = lease
            && let Err(e) = self.store.release_poller(&held).await
        {
            tracing::warn!(practice = %rt.profile.id, error = %e, "releasing the poller lease failed; it runs out on its own");
        }
    }

    /// Renews `lease` when a third of it is used, takes it when not held; returns what is held.
    async fn keep_poller_lease(
        &self,
        practice: &PracticeId,
        lease: Option<PollerLease>,
    ) -> Option<PollerLease> {
        let ttl = self.config.lease;
        let now = self.clock.now();
        if let Some(held) = lease {
            let left = (held.until - now).to_std().unwrap_or_default();
            if left * 3 > ttl * 2 {
                return Some(held);
            }
            match self.store.renew_poller(&held, now, ttl).await {
                Ok(renewed) => return Some(renewed),
                Err(StoreError::PollerLeaseLost(_)) => {
                    tracing::info!(practice = %practice, "poller lease lost; trying to take it again");
                }
                Err(e) => {
                    // The commit is fenced: believing too long costs at most a refused poll.
                    tracing::warn!(practice = %practice, error = %e, "renewing the poller lease failed");
                    return Some(held);
                }
            }
        }
        match self
            .store
            .acquire_poller(practice, &self.poller_owner, now, ttl)
            .await
        {
            Ok(Some(taken)) => {
                tracing::info!(practice = %practice, epoch = taken.epoch, "polling this practice (poller lease taken)");
                Some(taken)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(practice = %practice, error = %e, "taking the poller lease failed");
                None
            }
        }
    }

    /// Renews `lease` every `upkeep` until `over` turns true; returns whether it still holds.
    async fn renew_while(
        &self,
        lease: &PollerLease,
        upkeep: Duration,
        mut over: tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        loop {
            tokio::select! {
                () = tokio::time::sleep(upkeep) => {}
                _ = over.wait_for(|o| *o) => return true,
            }
            match self
                .store
                .renew_poller(lease, self.clock.now(), self.config.lease)
                .await
            {
                Ok(_) => {}
                Err(StoreError::PollerLeaseLost(_)) => {
                    tracing::warn!(practice = %lease.practice, "poller lease lost mid-poll; the poll will record nothing");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(practice = %lease.practice, error = %e, "renewing the poller lease failed");
                }
            }
        }
    }

    /// One poll of one practice, within the poll deadline. Returns the workflows created.
    pub async fn poll_once(&self, rt: &PracticeRuntime) -> usize {
        self.poll_once_as(rt, None).await
    }

    /// [`poll_once`](Self::poll_once), fenced by `lease` when given.
    async fn poll_once_as(&self, rt: &PracticeRuntime, lease: Option<&PollerLease>) -> usize {
        let deadline = self.config.poll_deadline;
        match tokio::time::timeout(deadline, self.poll_practice_as(rt, lease)).await {
            Ok(Ok(created)) => created,
            Ok(Err(StoreError::PollerLeaseLost(_))) => {
                tracing::warn!(practice = %rt.profile.id, "the poller lease was lost before the poll was recorded; nothing recorded");
                0
            }
            Ok(Err(e)) => {
                tracing::error!(practice = %rt.profile.id, error = %e, "recording a poll failed");
                0
            }
            Err(_) => {
                tracing::warn!(
                    practice = %rt.profile.id,
                    deadline_secs = deadline.as_secs_f64(),
                    "the practice system did not answer within the poll deadline; asking again next round"
                );
                0
            }
        }
    }
}

/// Resolves when `signal` rings; never when there is none.
async fn notified(signal: Option<&Notify>) {
    match signal {
        Some(s) => s.notified().await,
        None => std::future::pending().await,
    }
}
