//! The patient-link role: link generations (revocation), lender return references, and the
//! patient's "send me a new link" requests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Result;
use chairside_workflow::WorkflowId;

/// What a patient's request for a fresh link did. The page answers the same whatever it is, so
/// nothing about the workflow leaks; this is for tests and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResendOutcome {
    /// A resend was queued for the runner.
    Queued,
    /// One was already asked for within the interval.
    RateLimited,
    /// The workflow is unknown, finished, or the token's generation was revoked.
    NotApplicable,
}

/// A mark of the patient page with its audit line ([`LinkStore::audit_marks`]): recorded once
/// per workflow and mark. No PHI in `detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageMark {
    /// The workflow.
    pub workflow: WorkflowId,
    /// The mark (`apply:sunbit`, `pay:cs_...`).
    pub mark: String,
    /// The audit line's kind.
    pub kind: String,
    /// The audit line's detail.
    pub detail: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Per-workflow patient link state. Every link carries the workflow's current generation;
/// [`LinkStore::revoke_links`] bumps it, so every link issued before stops working.
#[async_trait]
pub trait LinkStore: Send + Sync + std::fmt::Debug + 'static {
    /// The workflow's current link generation (0 until the first revocation).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn link_generation(&self, workflow: &WorkflowId) -> Result<u64>;

    /// Revokes every link issued for `workflow` so far (its patient tokens and its lender return
    /// reference). Returns the new generation.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn revoke_links(&self, workflow: &WorkflowId, now: DateTime<Utc>) -> Result<u64>;

    /// The workflow's lender return reference, made (random, opaque) on first use. Stable, so a
    /// retried application call sends the same return URL.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn return_reference(&self, workflow: &WorkflowId) -> Result<String>;

    /// The workflow and current generation a return reference stands for, unless it is unknown
    /// or revoked.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn resolve_return_reference(&self, reference: &str) -> Result<Option<(WorkflowId, u64)>>;

    /// A patient's request for a fresh link, from a genuine token of `generation`: queues a
    /// staff-style `ResendLink` event for the runner, at most once per `interval` per workflow,
    /// and only for a workflow still in progress at that generation.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database), [`StoreError::Decode`](super::StoreError::Decode).
    async fn request_link_resend(
        &self,
        workflow: &WorkflowId,
        generation: u64,
        interval: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<ResendOutcome>;

    /// Records `mark` for `workflow` once, with its audit line in the same transaction: true the
    /// first time, false (and nothing written) after. The patient page records a notice shown or
    /// a link followed this way, so views never grow the database.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn audit_once(
        &self,
        workflow: &WorkflowId,
        mark: &str,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// [`audit_once`](Self::audit_once) for several marks at once: each mark not yet recorded is
    /// recorded with its audit line, all in one transaction (none when every mark is already
    /// there). Returns how many were new. For the patient page's write-behind of lines that are
    /// not legal records (a link followed), flushed in groups.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database): nothing was written.
    async fn audit_marks(&self, marks: &[PageMark]) -> Result<usize> {
        let mut new = 0;
        for m in marks {
            if self
                .audit_once(&m.workflow, &m.mark, &m.kind, &m.detail, m.at)
                .await?
            {
                new += 1;
            }
        }
        Ok(new)
    }

    /// The patient's answer to the in-house offer, from the patient page: queues `event` for the
    /// runner (which applies it through the machine under its lease) with its audit line, unless
    /// an answer is already queued and not yet applied (a double click): then nothing is written
    /// and the result is false.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database), [`StoreError::Decode`](super::StoreError::Decode).
    async fn queue_patient_answer(
        &self,
        workflow: &WorkflowId,
        event: &chairside_workflow::Event,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// A patient's request from the page (a fresh deposit link): queues `event` with its audit
    /// line unless a request is already queued and not yet applied; false when nothing was
    /// written.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database), [`StoreError::Decode`](super::StoreError::Decode).
    async fn queue_patient_request(
        &self,
        workflow: &WorkflowId,
        event: &chairside_workflow::Event,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// True while a patient answer queued by [`LinkStore::queue_patient_answer`] waits for the
    /// runner.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn patient_answer_pending(&self, workflow: &WorkflowId) -> Result<bool>;
}

// Used as a trait object, like every role.
#[cfg(test)]
fn _obj_safe(_: &dyn LinkStore) {}
