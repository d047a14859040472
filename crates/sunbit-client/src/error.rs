//! The crate's error and its one classification table.

use std::fmt;
use std::time::Duration;

use financing_core::{Classify, ErrorKind, LocationId, ProviderError};

/// The calls this client makes, named in errors and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Creating a prequalification link.
    CreateLink,
    /// Reading a purchase.
    GetPurchase,
    /// Voiding a purchase.
    CancelPurchase,
}

impl Operation {
    /// A short stable name (`create online link`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateLink => "create online link",
            Self::GetPurchase => "get purchase",
            Self::CancelPurchase => "cancel purchase",
        }
    }

    /// True when repeating the call cannot change anything on Sunbit's side. Sunbit documents no
    /// idempotency: a repeated link request may mint another link, and a void moves money, so
    /// only the read is safe.
    pub fn is_idempotent(self) -> bool {
        matches!(self, Self::GetPurchase)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong calling Sunbit. `Display` names the operation and the status,
/// never a vendor body (bodies can echo PHI). Webhook failures are [`WebhookError`](crate::WebhookError).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request did not complete: connect error, timeout, broken connection.
    #[error("{operation}: transport error")]
    Transport {
        /// The call.
        operation: Operation,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// Sunbit answered with an error status.
    #[error("{operation}: HTTP {status}")]
    Api {
        /// The call.
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A 2xx response whose body is not the expected shape. `Display` names the call and the
    /// field path, never a value from the body.
    #[error("{operation}: unexpected response shape: {source}")]
    Decode {
        /// The call.
        operation: Operation,
        /// Where decoding failed: the field path and the kind of failure, never the value.
        #[source]
        source: connector_transport::DecodeError,
    },
    /// No Sunbit location is configured for the request's practice location.
    #[error("no Sunbit location configured for location {location}")]
    UnknownLocation {
        /// The location.
        location: LocationId,
    },
    /// Bad configuration, found by [`ClientBuilder::build`](crate::ClientBuilder::build).
    #[error("invalid Sunbit configuration: {0}")]
    Config(String),
}

impl Error {
    /// The classification, from the table below; the first matching row wins.
    ///
    /// | Outcome | Kind | Why |
    /// |---|---|---|
    /// | Configuration, unknown location | Permanent | A person must fix the configuration. |
    /// | Connect error | Transient | Nothing reached Sunbit. |
    /// | Timeout or broken connection, purchase read | Transient | Repeating a read is safe. |
    /// | Timeout or broken connection, link or void | Indeterminate | It may have happened; no idempotency: read the purchase before acting again. |
    /// | 429 | Transient, with `Retry-After` | Rate limited. |
    /// | 503 | Transient | Nothing was done. |
    /// | 408, other 5xx, purchase read | Transient | Repeating a read is safe. |
    /// | 408, other 5xx, link or void | Indeterminate | As for a timeout. |
    /// | 401, 403 | Permanent | Bad key or secret, or the wrong environment. |
    /// | Other 4xx (400, 404, 422) | Permanent | Bad input, unknown location, online application not enabled. |
    /// | Decode error | Permanent | Sunbit's shape changed: raise an alert. |
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::UnknownLocation { .. } | Self::Decode { .. } => {
                ErrorKind::Permanent
            }
            Self::Transport { operation, source } => {
                if source.is_connect() || operation.is_idempotent() {
                    ErrorKind::TRANSIENT
                } else {
                    ErrorKind::Indeterminate
                }
            }
            Self::Api {
                operation,
                status,
                retry_after,
            } => match status {
                429 | 503 => ErrorKind::Transient {
                    retry_after: *retry_after,
                },
                408 | 500..=599 if operation.is_idempotent() => ErrorKind::TRANSIENT,
                408 | 500..=599 => ErrorKind::Indeterminate,
                _ => ErrorKind::Permanent,
            },
        }
    }

    /// The call that failed, when there was one.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Transport { operation, .. }
            | Self::Api { operation, .. }
            | Self::Decode { operation, .. } => Some(*operation),
            Self::UnknownLocation { .. } | Self::Config(_) => None,
        }
    }

    /// The HTTP status, for errors that carry one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

impl connector_transport::Retryable for Error {
    fn retry_hint(&self) -> connector_transport::RetryHint {
        match self.kind() {
            ErrorKind::Transient { retry_after } => {
                connector_transport::RetryHint::Retry { after: retry_after }
            }
            _ => connector_transport::RetryHint::Stop,
        }
    }
}

impl From<Error> for ProviderError {
    fn from(e: Error) -> Self {
        ProviderError::from_classified(e)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_matches_the_documented_rows() {
        use ErrorKind::{Indeterminate, Permanent};
        let t = ErrorKind::TRANSIENT;
        let rows = [
            (Operation::GetPurchase, 400, Permanent, "bad input"),
            (Operation::GetPurchase, 401, Permanent, "bad key"),
            (Operation::CreateLink, 403, Permanent, "bad credentials"),
            (Operation::CreateLink, 404, Permanent, "unknown location"),
            (
                Operation::CreateLink,
                422,
                Permanent,
                "online application disabled",
            ),
            (Operation::CreateLink, 429, t, "rate limited, nothing done"),
            (
                Operation::CancelPurchase,
                503,
                t,
                "unavailable, nothing done",
            ),
            (Operation::GetPurchase, 500, t, "read is safe to repeat"),
            (Operation::GetPurchase, 408, t, "read is safe to repeat"),
            (
                Operation::CreateLink,
                500,
                Indeterminate,
                "a link may exist",
            ),
            (
                Operation::CancelPurchase,
                502,
                Indeterminate,
                "the void may have happened",
            ),
        ];
        for (op, status, expected, why) in rows {
            let e = Error::Api {
                operation: op,
                status,
                retry_after: None,
            };
            assert_eq!(e.kind(), expected, "{op} {status}: {why}");
        }
    }
}
