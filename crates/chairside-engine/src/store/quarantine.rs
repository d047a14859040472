//! The quarantine role: what cannot be decoded is kept, set aside and shown to staff.
//!
//! A workflow row that no longer decodes (a hand edit, a bug in an older release, a torn
//! write) would otherwise be claimed, fail and be claimed again every lease, and fail every
//! listing that meets it. A verified webhook whose body does not parse would be refused and, after
//! the provider's retries, lost. Both are kept here instead: the workflow row stays as stored and
//! the runner no longer claims it; the delivery is sealed with the data key. Staff see both on the
//! dashboard. A problem names where decoding failed, never the content, which may be PHI.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use serde::Serialize;

use super::{Claim, Result};
use chairside_workflow::WorkflowId;

/// A workflow set aside because what is stored for it does not decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuarantinedWorkflow {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// Its practice (from the row's key column, not the undecodable document).
    pub practice_id: PracticeId,
    /// Where decoding failed: the column and the path, never the content.
    pub problem: String,
    /// When it was set aside.
    pub at: DateTime<Utc>,
}

/// A verified webhook delivery whose body did not parse, kept sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuarantinedDelivery {
    /// Row id.
    pub id: i64,
    /// `stripe`, `sunbit`, `nexhealth`.
    pub provider: String,
    /// Why it was held, without the body's content.
    pub problem: String,
    /// When it arrived (first delivery).
    pub received_at: DateTime<Utc>,
}

/// Setting aside what cannot be decoded, and listing it for staff.
#[async_trait]
pub trait QuarantineStore: Send + Sync + std::fmt::Debug + 'static {
    /// Checks what is stored for a claimed workflow (state, queued events, pending commands) and,
    /// if any of it does not decode, in one transaction: records the workflow as quarantined with
    /// the problem, opens a `system_error` staff task naming it, appends an audit line and
    /// releases the claim. The runner never claims it again. Returns the problem, or `None`
    /// (nothing written) when everything decodes.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`](super::StoreError::LeaseLost),
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn quarantine_workflow(
        &self,
        claim: &Claim,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;

    /// Quarantined workflows, optionally of one practice, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn quarantined_workflows(
        &self,
        practice: Option<&PracticeId>,
    ) -> Result<Vec<QuarantinedWorkflow>>;

    /// Keeps a verified delivery that did not parse, sealed with the data key. Returns `false`
    /// when the same body from the same provider is already kept (a redelivery).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn quarantine_delivery(
        &self,
        provider: &str,
        body: &[u8],
        problem: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Held deliveries, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn quarantined_deliveries(&self) -> Result<Vec<QuarantinedDelivery>>;

    /// A held delivery's body, unsealed, for an operator to inspect or replay.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database),
    /// [`StoreError::Crypto`](super::StoreError::Crypto).
    async fn quarantined_delivery_body(&self, id: i64) -> Result<Option<Vec<u8>>>;
}

/// Where a JSON document fails to decode as `T`: `at <path> (<category>)`, with the path reduced
/// to field-name characters so no value (a map key taken from data) can leak through it.
pub fn decode_problem<T: serde::de::DeserializeOwned>(json: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => return None,
        Err(e) => e,
    };
    let path: String = err
        .path()
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']') {
                c
            } else {
                '?'
            }
        })
        .take(120)
        .collect();
    let category = match err.inner().classify() {
        serde_json::error::Category::Io => "io",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "truncated",
    };
    Some(format!("at `{path}` ({category})"))
}

#[cfg(test)]
mod tests {
    use super::decode_problem;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        amount: i64,
    }

    #[test]
    fn decode_problem_names_the_path_but_never_the_value() {
        // Arrange
        let json = r#"{"name":"Jane Roe","amount":"4242424242424242"}"#;
        // Act
        let problem = decode_problem::<Doc>(json).expect("a problem");
        // Assert
        assert_eq!(problem, "at `amount` (unexpected shape)");
        assert!(!problem.contains("4242") && !problem.contains("Jane"));
        assert!(decode_problem::<Doc>(r#"{"name":"a","amount":1}"#).is_none());
        assert_eq!(
            decode_problem::<Doc>("{\"name\":").as_deref(),
            Some("at `name` (truncated)")
        );
    }
}
