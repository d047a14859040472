//! The poller role: one lease per practice, so that with several instances on one database each
//! practice's change feed is polled by one instance at a time, and a poll that lost its lease
//! records nothing.
//!
//! The protocol, as [`Runner::poll_practices`](crate::runner::Runner::poll_practices) follows it:
//!
//! 1. [`acquire_poller`](PollerStore::acquire_poller) takes the lease when it is free or expired
//!    (the epoch goes up by one), keeps it when the caller already holds it, and returns `None`
//!    while another owner holds a live one. Instances that do not hold it ask again at a third of
//!    the lease's length, so a dead holder is replaced within about 1.3 leases.
//! 2. The holder [`renew_poller`](PollerStore::renew_poller)s at a third of the lease's length,
//!    while a poll is in flight and between polls. A renewal that fails means the lease is
//!    another's (or ran out): the poll in flight is abandoned.
//! 3. A poll commits through [`record_detection_leased`](PollerStore::record_detection_leased),
//!    which checks in the same transaction that the lease is still held at its epoch and has not
//!    run out (fencing, like a workflow claim): a holder that stalled past its expiry, or whose
//!    lease was taken over, writes nothing and the new holder polls from the stored cursor.
//! 4. On a graceful stop the holder [`release_poller`](PollerStore::release_poller)s, so another
//!    instance takes over at once instead of after the expiry.
//!
//! Times come from the caller's clock, as for workflow leases; an implementation on a server
//! database may use its own clock instead, consistently for all four methods. A failed poll
//! ([`DetectionStore::record_poll_failure`](super::DetectionStore::record_poll_failure)) is
//! not fenced: it only counts in the health.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;

use super::Result;
use super::detection::DetectionBatch;
use chairside_workflow::WorkflowId;

/// A practice's poller lease, as held by one owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollerLease {
    /// The practice whose poller it is.
    pub practice: PracticeId,
    /// The holder (unique per process: see [`Runner::poller_owner`](crate::runner::Runner::poller_owner)).
    pub owner: String,
    /// The fencing epoch: one more at every change of tenure, never reused.
    pub epoch: i64,
    /// When it runs out unless renewed.
    pub until: DateTime<Utc>,
}

/// Per-practice poller leases.
#[async_trait]
pub trait PollerStore: Send + Sync + std::fmt::Debug + 'static {
    /// Takes or keeps `practice`'s poller lease for `owner` until `now + ttl`, in one transaction:
    /// - no lease yet, or the lease ran out before `now` (whoever held it, `owner` included): a
    ///   new tenure for `owner` at the next epoch;
    /// - held by `owner` and live: renewed at the same epoch;
    /// - held by another owner and live: `None`, nothing written.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn acquire_poller(
        &self,
        practice: &PracticeId,
        owner: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<Option<PollerLease>>;

    /// Extends a held lease until `now + ttl` and returns it.
    ///
    /// # Errors
    /// [`StoreError::PollerLeaseLost`](super::StoreError::PollerLeaseLost) when the lease is no
    /// longer `lease.owner`'s at `lease.epoch` or ran out before `now` (nothing written; take it
    /// again with [`acquire_poller`](Self::acquire_poller)),
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn renew_poller(
        &self,
        lease: &PollerLease,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<PollerLease>;

    /// Gives the lease up so another instance can take it at once. Does nothing when the lease is
    /// no longer held at `lease.epoch`.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn release_poller(&self, lease: &PollerLease) -> Result<()>;

    /// [`DetectionStore::record_detection`](super::DetectionStore::record_detection) for
    /// `lease.practice`, fenced: in the same transaction, refuses unless the lease is still held
    /// by `lease.owner` at `lease.epoch` and has not run out at `now`.
    ///
    /// # Errors
    /// [`StoreError::PollerLeaseLost`](super::StoreError::PollerLeaseLost) (nothing written),
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn record_detection_leased(
        &self,
        lease: &PollerLease,
        source: &str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>>;
}

/// The epoch `owner` holds after asking for the lease when `held` is the lease on record
/// (holder, epoch, whether it is still live): a new tenure at the next epoch when there is none or
/// it ran out, the same epoch when `owner` holds it live, `None` while another holds it live.
/// Shared by every store.
pub(crate) fn next_tenure(held: Option<(&str, i64, bool)>, owner: &str) -> Option<i64> {
    match held {
        None => Some(1),
        Some((holder, epoch, live)) => match (live, holder == owner) {
            (true, true) => Some(epoch),
            (true, false) => None,
            (false, _) => Some(epoch + 1),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::next_tenure;

    #[test]
    fn a_tenure_starts_at_one_is_kept_by_its_holder_and_moves_on_only_after_it_runs_out() {
        assert_eq!(next_tenure(None, "a"), Some(1));
        assert_eq!(next_tenure(Some(("a", 3, true)), "a"), Some(3));
        assert_eq!(next_tenure(Some(("a", 3, true)), "b"), None);
        assert_eq!(next_tenure(Some(("a", 3, false)), "b"), Some(4));
        assert_eq!(
            next_tenure(Some(("a", 3, false)), "a"),
            Some(4),
            "its own expired lease is a new tenure too"
        );
    }
}
