//! The crate's error and its one classification table.

use std::fmt;
use std::time::Duration;

use financing_core::{Classify, ErrorKind};

/// The calls this client makes, named in errors and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Contacts batch upsert by email.
    UpsertContact,
    /// Deals batch upsert by a unique property.
    UpsertDeal,
    /// The deal → contact association.
    AssociateDeal,
    /// Searching tasks (the reconcile before a create).
    SearchTasks,
    /// Creating a task.
    CreateTask,
}

impl Operation {
    /// A short stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpsertContact => "upsert contact",
            Self::UpsertDeal => "upsert deal",
            Self::AssociateDeal => "associate deal",
            Self::SearchTasks => "search tasks",
            Self::CreateTask => "create task",
        }
    }

    /// True when repeating the call cannot add anything: an upsert by a unique property writes
    /// the same record, an association is set or not, a search reads. Creating a task is not:
    /// HubSpot documents no idempotency key.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Self::CreateTask)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong calling HubSpot. `Display` names the operation and the status,
/// never a body (HubSpot's errors echo the properties sent, names and emails included).
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
    /// HubSpot answered with an error status.
    #[error("{operation}: HTTP {status}")]
    Api {
        /// The call.
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// A 2xx response of an unexpected shape (the field path, never a value).
    #[error("{operation}: unexpected response shape: {source}")]
    Decode {
        /// The call.
        operation: Operation,
        /// Where.
        #[source]
        source: connector_transport::DecodeError,
    },
    /// Bad configuration, found by [`ClientBuilder::build`](crate::ClientBuilder::build).
    #[error("invalid HubSpot configuration: {0}")]
    Config(String),
}

impl Error {
    /// The classification; the first matching row wins.
    ///
    /// | Outcome | Kind | Why |
    /// |---|---|---|
    /// | Configuration, decode | Permanent | A person must act; HubSpot's shape changed. |
    /// | Connect error | Transient | Nothing reached HubSpot. |
    /// | Timeout, upserts, association, search | Transient | Repeating writes the same record. |
    /// | Timeout, task create | Indeterminate | The task may exist: search before creating again. |
    /// | 429 | Transient, with `Retry-After` | The burst limit (100 or 190 requests per 10 s). |
    /// | 5xx, idempotent call | Transient | Safe to repeat. |
    /// | 5xx, task create | Indeterminate | As for a timeout. |
    /// | 401, 403 | Permanent | A revoked or wrong token, or a missing scope. |
    /// | Other 4xx | Permanent | A property or stage the account does not have. |
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::Decode { .. } => ErrorKind::Permanent,
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
                429 => ErrorKind::Transient {
                    retry_after: *retry_after,
                },
                500..=599 if operation.is_idempotent() => ErrorKind::TRANSIENT,
                500..=599 => ErrorKind::Indeterminate,
                _ => ErrorKind::Permanent,
            },
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
            (Operation::UpsertDeal, 400, Permanent, "unknown stage"),
            (Operation::UpsertContact, 401, Permanent, "bad token"),
            (Operation::UpsertDeal, 403, Permanent, "missing scope"),
            (Operation::CreateTask, 429, t, "burst limit, nothing done"),
            (Operation::UpsertDeal, 500, t, "an upsert is safe to repeat"),
            (
                Operation::AssociateDeal,
                502,
                t,
                "an association is set or not",
            ),
            (Operation::SearchTasks, 503, t, "a read"),
            (
                Operation::CreateTask,
                500,
                Indeterminate,
                "the task may exist",
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
