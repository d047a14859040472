//! The crate's error and its one classification table.

use std::fmt;
use std::time::Duration;

use financing_core::{Classify, ErrorKind, LocationId, ProviderError};

use crate::wire;

/// The calls this client makes, named in errors and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Fetching an OAuth2 access token.
    FetchToken,
    /// Looking up an existing cardholder.
    LookupCardholder,
    /// Finding the prefill session already opened for a partner transaction id.
    FindSession,
    /// Opening a prefill session.
    CreateSession,
    /// Pulling back a session's outcome.
    GetPullback,
}

impl Operation {
    /// A short stable name (`create prefill session`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FetchToken => "fetch token",
            Self::LookupCardholder => "look up cardholder",
            Self::FindSession => "find prefill session",
            Self::CreateSession => "create prefill session",
            Self::GetPullback => "get pullback",
        }
    }

    /// True when repeating the call cannot change anything on CareCredit's side.
    ///
    /// Every call is safe to repeat except opening a session. The cardholder lookup is a `POST`
    /// only to keep the patient's name and phone out of URLs; it has no side effect, so it is
    /// classified like a `GET`.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Self::CreateSession)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong. `Display` names the operation and the status, never a vendor
/// body (bodies can echo PHI).
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
    /// CareCredit answered with an error status.
    #[error("{operation}: HTTP {status}")]
    Api {
        /// The call.
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A `422` saying the merchant is suspended pending training ([`wire::TRAINING_SUSPENDED`]):
    /// the merchant number cannot open applications until the practice completes CareCredit's
    /// training.
    #[error(
        "{operation}: HTTP 422 {}: the practice must complete CareCredit training before this \
         merchant number can be used",
        wire::TRAINING_SUSPENDED
    )]
    TrainingSuspended {
        /// The call.
        operation: Operation,
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
    /// No merchant number is configured for the request's location.
    #[error("no CareCredit merchant number configured for location {location}")]
    UnknownLocation {
        /// The location.
        location: LocationId,
    },
    /// Bad configuration, found by [`ClientBuilder::build`](crate::ClientBuilder::build).
    #[error("invalid CareCredit configuration: {0}")]
    Config(String),
}

impl Error {
    /// The classification, from the table below; the first matching row wins.
    ///
    /// | Outcome | Kind | Why |
    /// |---|---|---|
    /// | Configuration, unknown location | Permanent | A person must fix the configuration. |
    /// | Connect error | Transient | Nothing reached CareCredit. |
    /// | Timeout or broken connection, idempotent call | Transient | Repeating a read is safe. |
    /// | Timeout or broken connection, opening a session | Indeterminate | The session may exist: find it by partner transaction id before opening another. |
    /// | 429 | Transient, with `Retry-After` | Rate limited. |
    /// | 503 | Transient | Nothing was done. |
    /// | 408, other 5xx, idempotent call | Transient | Repeating a read is safe. |
    /// | 408, other 5xx, opening a session | Indeterminate | As for a timeout. |
    /// | 401 | Permanent | The client already refreshed its token once and retried. |
    /// | 422 training suspended | Permanent | The practice must finish CareCredit training. |
    /// | Other 4xx (400, 404, 422) | Permanent | Invalid input or unknown session. |
    /// | Decode error | Permanent | CareCredit's shape changed: raise an alert. |
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::UnknownLocation { .. } => ErrorKind::Permanent,
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
            Self::TrainingSuspended { .. } | Self::Decode { .. } => ErrorKind::Permanent,
        }
    }

    /// The call that failed, when there was one.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Transport { operation, .. }
            | Self::Api { operation, .. }
            | Self::TrainingSuspended { operation }
            | Self::Decode { operation, .. } => Some(*operation),
            Self::UnknownLocation { .. } | Self::Config(_) => None,
        }
    }

    /// The HTTP status, for errors that carry one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::TrainingSuspended { .. } => Some(422),
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

    fn api(operation: Operation, status: u16) -> Error {
        Error::Api {
            operation,
            status,
            retry_after: None,
        }
    }

    #[test]
    fn status_table_matches_the_documented_rows() {
        use ErrorKind::{Indeterminate, Permanent};
        let t = ErrorKind::TRANSIENT;
        let rows = [
            // (operation, status, expected, why)
            (Operation::GetPullback, 400, Permanent, "invalid input"),
            (Operation::CreateSession, 400, Permanent, "invalid input"),
            (
                Operation::GetPullback,
                401,
                Permanent,
                "already refreshed once",
            ),
            (Operation::GetPullback, 404, Permanent, "unknown session"),
            (Operation::CreateSession, 422, Permanent, "unprocessable"),
            (Operation::GetPullback, 429, t, "rate limited"),
            (
                Operation::CreateSession,
                429,
                t,
                "rate limited, nothing done",
            ),
            (
                Operation::CreateSession,
                503,
                t,
                "unavailable, nothing done",
            ),
            (Operation::GetPullback, 500, t, "read is safe to repeat"),
            (Operation::FindSession, 502, t, "read is safe to repeat"),
            (
                Operation::LookupCardholder,
                500,
                t,
                "lookup has no side effect",
            ),
            (
                Operation::FetchToken,
                500,
                t,
                "token fetch has no side effect",
            ),
            (
                Operation::FetchToken,
                401,
                Permanent,
                "bad client credentials",
            ),
            (
                Operation::CreateSession,
                500,
                Indeterminate,
                "session may exist",
            ),
            (
                Operation::CreateSession,
                504,
                Indeterminate,
                "session may exist",
            ),
        ];
        for (op, status, expected, why) in rows {
            assert_eq!(api(op, status).kind(), expected, "{op} {status}: {why}");
        }
    }

    #[test]
    fn retry_after_is_carried_on_429() {
        let e = Error::Api {
            operation: Operation::GetPullback,
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(e.kind().retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn training_suspended_is_permanent_and_says_so() {
        let e = Error::TrainingSuspended {
            operation: Operation::CreateSession,
        };
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert!(e.to_string().contains(wire::TRAINING_SUSPENDED));
        assert_eq!(e.status(), Some(422));
    }

    #[test]
    fn configuration_errors_are_permanent() {
        assert_eq!(Error::Config("x".into()).kind(), ErrorKind::Permanent);
        let e = Error::UnknownLocation {
            location: LocationId::new("loc-9"),
        };
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert_eq!(e.operation(), None);
    }
}
