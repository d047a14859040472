//! Write-behind of the patient page's audit lines that are not legal records: a link followed
//! (`lender_link_opened`, `deposit_link_opened`). The page answers at once; the lines wait in a
//! bounded queue for [`LINGER`] and are written in one group transaction
//! ([`LinkStore::audit_marks`]) with whatever else came in meanwhile, and by
//! [`HttpState::flush_page_marks`](crate::HttpState::flush_page_marks) on shutdown.
//!
//! A group the database cancels as a deadlock or for a lock not granted in time (several
//! instances on one PostgreSQL) is written again, a few times with a growing wait.
//!
//! What a crash can lose: the lines queued in the last [`LINGER`] (no legal record: the notice
//! shown before a lender link, a patient's answer or request, consent, disclosures are all
//! written before the page answers). A full queue writes the line at once instead, so memory is
//! bounded and nothing is dropped for load.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chairside_engine::store::{LinkStore, PageMark, StoreError};

/// How long a queued line waits for others before its group is written.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

/// The most lines queued at once; past it a line is written at once.
pub(crate) const CAPACITY: usize = 1024;

/// How many times a group is written when the database asks for its transaction again.
pub(crate) const ATTEMPTS: u32 = 4;

/// The wait before the second attempt; each later one waits four times longer (50, 200, 800 ms).
pub(crate) const BACKOFF: Duration = Duration::from_millis(50);

/// The queue of lines written behind.
pub(crate) struct MarkBuffer {
    store: Arc<dyn LinkStore>,
    pending: Mutex<Vec<PageMark>>,
    linger: Duration,
    capacity: usize,
}

impl std::fmt::Debug for MarkBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkBuffer")
            .field("linger", &self.linger)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl MarkBuffer {
    pub(crate) fn new(store: Arc<dyn LinkStore>, linger: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            store,
            pending: Mutex::new(Vec::new()),
            linger,
            capacity,
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<PageMark>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `mark`; the first line of a group starts the group's timer. With the queue full
    /// the line is written now, as [`LinkStore::audit_once`] does.
    ///
    /// # Errors
    /// Only a line written at once can fail here; a group's failure is logged by its flush.
    pub(crate) async fn record(self: &Arc<Self>, mark: PageMark) -> Result<(), StoreError> {
        let queued = {
            let mut pending = self.pending();
            if pending.len() >= self.capacity {
                Err(mark)
            } else {
                pending.push(mark);
                Ok(pending.len() == 1)
            }
        };
        match queued {
            Ok(true) => {
                let buffer = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(buffer.linger).await;
                    buffer.flush().await;
                });
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(m) => self
                .store
                .audit_once(&m.workflow, &m.mark, &m.kind, &m.detail, m.at)
                .await
                .map(|_| ()),
        }
    }

    /// Writes every queued line now, in one transaction. A transaction the database asks to run
    /// again (a deadlock it broke, a lock not granted in time: [`StoreError::is_transient`]) is
    /// run again, [`ATTEMPTS`] times at most, after [`BACKOFF`], four times longer each time; a
    /// group holds only what is not recorded yet, so a repeat records nothing twice. A failure
    /// that stays is logged with the number of lines lost (never their content).
    pub(crate) async fn flush(&self) {
        let group = std::mem::take(&mut *self.pending());
        if group.is_empty() {
            return;
        }
        let mut wait = BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match self.store.audit_marks(&group).await {
                Ok(_) => return,
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(lines = group.len(), attempt, error = %e, "patient page: link lines not recorded yet; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
                Err(e) => {
                    tracing::error!(lines = group.len(), error = %e, "patient page: link lines not recorded");
                    return;
                }
            }
        }
    }

    /// Lines waiting.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.pending().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::{ATTEMPTS, CAPACITY, LINGER, MarkBuffer};
    use crate::testkit::{Kit, get};
    use chairside_engine::store::links::ResendOutcome;
    use chairside_engine::store::{LinkStore, PageMark, StoreError};
    use chairside_workflow::{Event, WorkflowId};
    use chrono::{DateTime, Utc};

    async fn kinds(kit: &Kit, wf: &WorkflowId) -> Vec<String> {
        let rows = kit.store.audit(wf).await.unwrap();
        rows.into_iter().map(|a| a.kind).collect()
    }

    fn opened(wf: &WorkflowId, mark: &str, kit: &Kit) -> PageMark {
        PageMark {
            workflow: wf.clone(),
            mark: mark.into(),
            kind: "lender_link_opened".into(),
            detail: "patient followed the link".into(),
            at: kit.now(),
        }
    }

    #[tokio::test]
    async fn a_followed_link_is_answered_at_once_and_recorded_by_the_flush() {
        // Arrange
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        let token = kit.token(&wf);

        // Act
        let apply = kit.send(get(&format!("/p/{token}/apply"))).await;

        // Assert: the patient is on the way to the lender; the line waits in the queue.
        assert_eq!(apply.status(), axum::http::StatusCode::SEE_OTHER);
        assert_eq!(kit.state.marks.queued(), 1);
        assert!(
            !kinds(&kit, &wf)
                .await
                .contains(&"lender_link_opened".into())
        );
        kit.state.flush_page_marks().await;
        assert_eq!(kit.state.marks.queued(), 0);
        assert!(
            kinds(&kit, &wf)
                .await
                .contains(&"lender_link_opened".into())
        );
    }

    #[tokio::test]
    async fn lines_queued_together_are_written_in_one_transaction_after_the_linger() {
        // Arrange: two patients follow their links within the linger.
        let kit = Kit::new().await;
        let one = kit.seed_workflow("tx-1").await;
        let two = kit.seed_workflow("tx-2").await;
        let writes = kit.store.counters().write_transactions;

        // Act
        for wf in [&one, &two] {
            let token = kit.token(wf);
            kit.send(get(&format!("/p/{token}/apply"))).await;
        }
        tokio::time::sleep(LINGER * 3).await;

        // Assert: both lines, one transaction, nothing left queued.
        assert_eq!(kit.state.marks.queued(), 0);
        for wf in [&one, &two] {
            assert!(kinds(&kit, wf).await.contains(&"lender_link_opened".into()));
        }
        assert_eq!(kit.store.counters().write_transactions, writes + 1);
    }

    #[tokio::test]
    async fn a_full_queue_writes_the_line_at_once() {
        // Arrange: a queue with no room.
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        let links: Arc<dyn LinkStore> = kit.store.clone();
        let full = MarkBuffer::new(links, LINGER, 0);

        // Act
        full.record(opened(&wf, "apply:sunbit", &kit))
            .await
            .unwrap();

        // Assert: recorded already, without any flush; a repeat adds nothing.
        assert_eq!(full.queued(), 0);
        full.record(opened(&wf, "apply:sunbit", &kit))
            .await
            .unwrap();
        let lines = kinds(&kit, &wf).await;
        assert_eq!(
            lines.iter().filter(|k| *k == "lender_link_opened").count(),
            1
        );
    }

    /// A link store whose `audit_marks` fails `failures` times with `error` before it writes.
    #[derive(Debug)]
    struct Failing {
        inner: Arc<dyn LinkStore>,
        failures: AtomicU32,
        error: fn() -> StoreError,
        calls: AtomicU32,
    }

    impl Failing {
        fn new(inner: Arc<dyn LinkStore>, failures: u32, error: fn() -> StoreError) -> Arc<Self> {
            Arc::new(Self {
                inner,
                failures: AtomicU32::new(failures),
                error,
                calls: AtomicU32::new(0),
            })
        }
    }

    #[async_trait::async_trait]
    impl LinkStore for Failing {
        async fn link_generation(&self, workflow: &WorkflowId) -> Result<u64, StoreError> {
            self.inner.link_generation(workflow).await
        }
        async fn revoke_links(
            &self,
            workflow: &WorkflowId,
            now: DateTime<Utc>,
        ) -> Result<u64, StoreError> {
            self.inner.revoke_links(workflow, now).await
        }
        async fn return_reference(&self, workflow: &WorkflowId) -> Result<String, StoreError> {
            self.inner.return_reference(workflow).await
        }
        async fn resolve_return_reference(
            &self,
            reference: &str,
        ) -> Result<Option<(WorkflowId, u64)>, StoreError> {
            self.inner.resolve_return_reference(reference).await
        }
        async fn request_link_resend(
            &self,
            workflow: &WorkflowId,
            generation: u64,
            interval: chrono::Duration,
            now: DateTime<Utc>,
        ) -> Result<ResendOutcome, StoreError> {
            self.inner
                .request_link_resend(workflow, generation, interval, now)
                .await
        }
        async fn audit_once(
            &self,
            workflow: &WorkflowId,
            mark: &str,
            kind: &str,
            detail: &str,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            self.inner
                .audit_once(workflow, mark, kind, detail, now)
                .await
        }
        async fn audit_marks(&self, marks: &[PageMark]) -> Result<usize, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err((self.error)());
            }
            self.inner.audit_marks(marks).await
        }
        async fn queue_patient_answer(
            &self,
            workflow: &WorkflowId,
            event: &Event,
            detail: &str,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            self.inner
                .queue_patient_answer(workflow, event, detail, now)
                .await
        }
        async fn queue_patient_request(
            &self,
            workflow: &WorkflowId,
            event: &Event,
            detail: &str,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            self.inner
                .queue_patient_request(workflow, event, detail, now)
                .await
        }
        async fn patient_answer_pending(&self, workflow: &WorkflowId) -> Result<bool, StoreError> {
            self.inner.patient_answer_pending(workflow).await
        }
    }

    /// What PostgreSQL answers a transaction it cancelled as a deadlock, as far as the store's
    /// callers can tell: a transient error (`StoreError::is_transient`).
    fn busy() -> StoreError {
        StoreError::Database(sqlx::Error::PoolTimedOut)
    }

    fn undecodable() -> StoreError {
        StoreError::Decode(serde_json::from_str::<u8>("x").unwrap_err())
    }

    #[tokio::test]
    async fn a_group_the_database_asks_to_run_again_is_written_on_a_later_attempt() {
        // Arrange: the first two attempts are refused as transient.
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        let store = Failing::new(kit.store.clone(), ATTEMPTS - 2, busy);
        let buffer = MarkBuffer::new(store.clone(), LINGER, CAPACITY);
        buffer
            .record(opened(&wf, "apply:sunbit", &kit))
            .await
            .unwrap();

        // Act
        buffer.flush().await;

        // Assert: written once, on the third attempt; nothing left queued.
        assert_eq!(store.calls.load(Ordering::SeqCst), ATTEMPTS - 1);
        assert_eq!(buffer.queued(), 0);
        let lines = kinds(&kit, &wf).await;
        assert_eq!(
            lines.iter().filter(|k| *k == "lender_link_opened").count(),
            1
        );
    }

    #[tokio::test]
    async fn a_group_is_given_up_after_the_last_attempt_or_at_once_when_a_retry_cannot_help() {
        // Arrange: one store that stays busy, one whose failure no retry can mend.
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        let busy_store = Failing::new(kit.store.clone(), u32::MAX, busy);
        let broken_store = Failing::new(kit.store.clone(), u32::MAX, undecodable);

        // Act
        for store in [&busy_store, &broken_store] {
            let buffer = MarkBuffer::new(store.clone(), LINGER, CAPACITY);
            buffer
                .record(opened(&wf, "apply:sunbit", &kit))
                .await
                .unwrap();
            buffer.flush().await;
            assert_eq!(buffer.queued(), 0);
        }

        // Assert: the busy store was tried every time allowed, the broken one once; no line.
        assert_eq!(busy_store.calls.load(Ordering::SeqCst), ATTEMPTS);
        assert_eq!(broken_store.calls.load(Ordering::SeqCst), 1);
        assert!(
            !kinds(&kit, &wf)
                .await
                .contains(&"lender_link_opened".into())
        );
    }
}
