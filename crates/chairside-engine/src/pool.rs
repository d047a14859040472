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
//!   and no workflow.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::runner::{PracticeRuntime, Runner, RunnerError};

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
        let mut flight = JoinSet::new();
        tokio::pin!(stop);
        loop {
            while let Some(done) = flight.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a workflow task failed");
                }
            }
            let free = slots.available_permits();
            let mut wait = self.config.idle_recheck;
            if free > 0 {
                let now = self.clock.now();
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match self
                    .store
                    .claim_due(&self.config.owner, now, self.config.lease, limit)
                    .await
                {
                    Ok(claims) => {
                        let claimed = claims.len();
                        for claim in claims {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let runner = self.clone();
                            flight.spawn(async move {
                                runner.drive(&claim).await;
                                drop(permit);
                                runner.wake.notify_one();
                            });
                        }
                        if claimed == free {
                            // Every slot taken: more may be due; look again when one frees.
                            continue;
                        }
                        match self.store.next_claimable(self.clock.now()).await {
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
        Ok(())
    }

    /// Polls every practice system on its own schedule until `stop` resolves: each practice
    /// every `every`, its poll cut at `poll_deadline` (nothing is recorded for a poll cut short;
    /// the next round asks again from the same cursor). `now` asks every practice to poll at once
    /// (a NexHealth push). Practices run side by side: one that is slow or hangs delays only its
    /// own next round.
    pub async fn poll_practices(
        &self,
        every: Duration,
        now: Arc<Notify>,
        stop: impl Future<Output = ()>,
    ) {
        let mut pollers = JoinSet::new();
        let mut nudges = Vec::new();
        for id in self.practices.keys() {
            let nudge = Arc::new(Notify::new());
            nudges.push(nudge.clone());
            let runner = self.clone();
            let id = id.clone();
            pollers.spawn(async move {
                let Some(rt) = runner.practices.get(&id) else {
                    return;
                };
                loop {
                    runner.poll_once(rt).await;
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        () = nudge.notified() => {}
                    }
                }
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
        pollers.shutdown().await;
    }

    /// One poll of one practice, within the poll deadline. Returns the workflows created.
    pub async fn poll_once(&self, rt: &PracticeRuntime) -> usize {
        let deadline = self.config.poll_deadline;
        match tokio::time::timeout(deadline, self.poll_practice(rt)).await {
            Ok(Ok(created)) => created,
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
