//! Write-behind of the patient page's audit lines that are not legal records: a link followed
//! (`lender_link_opened`, `deposit_link_opened`). The page answers at once; the lines wait in a
//! bounded queue for [`LINGER`] and are written in one group transaction
//! ([`LinkStore::audit_marks`]) with whatever else came in meanwhile, and by
//! [`HttpState::flush_page_marks`](crate::HttpState::flush_page_marks) on shutdown.
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

    /// Writes every queued line now, in one transaction. A failure is logged with the number of
    /// lines lost (never their content).
    pub(crate) async fn flush(&self) {
        let group = std::mem::take(&mut *self.pending());
        if group.is_empty() {
            return;
        }
        if let Err(e) = self.store.audit_marks(&group).await {
            tracing::error!(lines = group.len(), error = %e, "patient page: link lines not recorded");
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

    use super::{LINGER, MarkBuffer};
    use crate::testkit::{Kit, get};
    use chairside_engine::store::{LinkStore, PageMark};
    use chairside_workflow::WorkflowId;

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
}
