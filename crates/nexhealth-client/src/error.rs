//! The crate's one error type and its [`ErrorKind`] table.
//!
//! No variant's `Display` contains a vendor body or a field's value: bodies can echo patient data
//! (STYLE.md). Decode errors name the resource and the JSON path of the bad field only.

use std::fmt;
use std::time::Duration;

use financing_core::{Classify, ErrorKind};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to NexHealth.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request did not complete: connect error, timeout, or a broken response stream.
    #[error("{operation}: {}", transport_label(source))]
    Transport {
        /// What the client was doing (`list treatment plans`, `create communication log`).
        operation: &'static str,
        /// Whether the call was safe to repeat (a GET or the token request).
        idempotent: bool,
        /// The transport error, with its URL stripped.
        #[source]
        source: reqwest::Error,
    },
    /// NexHealth answered with an error status not covered by a more specific variant.
    #[error("{operation}: HTTP {status}")]
    Api {
        /// What the client was doing.
        operation: &'static str,
        /// The HTTP status.
        status: StatusCode,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// Whether the call was safe to repeat.
        idempotent: bool,
        /// The response body, kept for diagnosis; its `Debug` shows only the length.
        body: VendorBody,
    },
    /// NexHealth refused our credentials: `/authenticates` rejected the API key, or a fresh token
    /// was refused again after one refresh.
    #[error(
        "{operation}: NexHealth refused the credentials (HTTP {status}); check the API key and subdomain"
    )]
    Auth {
        /// What the client was doing.
        operation: &'static str,
        /// The status of the last refusal.
        status: StatusCode,
    },
    /// A webhook delivery whose signature does not verify. Reject it before parsing the body.
    #[error("webhook delivery rejected: {0}")]
    WebhookSignature(SignatureProblem),
    /// A 2xx response whose body does not have the shape we expect.
    #[error("{resource}: cannot decode `{field}`: {problem}")]
    Decode {
        /// The resource being decoded (`treatment_plans`, `patients`).
        resource: &'static str,
        /// The JSON path of the offending field (`data[2].amount`), never its value.
        field: String,
        /// What is wrong with it.
        problem: DecodeProblem,
    },
    /// The client was configured wrongly (a base URL that cannot be joined, a bad header value, an
    /// invalid note marker).
    #[error("configuration: {0}")]
    Config(String),
}

fn transport_label(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport failure"
    }
}

/// What is wrong with a field that failed to decode. Never carries the value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeProblem {
    /// The body is not JSON, or is cut short.
    Syntax,
    /// A required field is absent or null.
    Missing,
    /// A field has the wrong JSON type.
    InvalidType,
    /// A field has the right type but an unusable value.
    InvalidValue,
    /// A money amount that is not a non-negative decimal with at most two decimals.
    MalformedMoney,
    /// A date or timestamp in a format we do not read.
    MalformedDate,
    /// The next-page cursor did not advance: following it would loop forever.
    PaginationStalled,
}

impl fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "the body is not valid JSON",
            Self::Missing => "missing",
            Self::InvalidType => "wrong JSON type",
            Self::InvalidValue => "unusable value",
            Self::MalformedMoney => "not a money amount",
            Self::MalformedDate => "not a date we can read",
            Self::PaginationStalled => "the page cursor did not advance",
        })
    }
}

/// Why a webhook delivery was rejected. Never carries the signature or the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureProblem {
    /// The signature header is absent or empty.
    Missing,
    /// The header is not hex or base64 of a SHA-256 MAC.
    Malformed,
    /// The MAC does not match the body under the endpoint's secret.
    Mismatch,
}

impl fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "no signature",
            Self::Malformed => "malformed signature",
            Self::Mismatch => "signature does not match",
        })
    }
}

/// A vendor response body. Kept for diagnosis by whoever holds the error, but never shown: its
/// `Debug` prints only the length, because bodies can echo patient data.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VendorBody(String);

impl VendorBody {
    pub(crate) fn new(text: String) -> Self {
        Self(text)
    }

    /// The raw body. Treat it as PHI: never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VendorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VendorBody({} bytes)", self.0.len())
    }
}

impl Error {
    /// How the failure should be treated. The table, first matching row wins (STYLE.md):
    ///
    /// | outcome | kind |
    /// | --- | --- |
    /// | connect error | Transient |
    /// | timeout or broken stream, idempotent call | Transient |
    /// | timeout or broken stream, POST | Indeterminate |
    /// | 429 | Transient, with `Retry-After` |
    /// | 503 | Transient |
    /// | 408 or other 5xx, idempotent call | Transient |
    /// | 408 or other 5xx, POST | Indeterminate |
    /// | credentials refused after one refresh | Permanent |
    /// | other 4xx (403: financial writes need NexHealth's approval) | Permanent |
    /// | bad webhook signature | Permanent |
    /// | decode error | Permanent |
    /// | configuration | Permanent |
    pub fn kind(&self) -> ErrorKind {
        match self {
            // Nothing reached the server: always safe to repeat.
            Self::Transport { source, .. } if source.is_connect() => ErrorKind::TRANSIENT,
            // The request may have been processed; only a repeatable call is retried blindly.
            Self::Transport { idempotent, .. } => {
                if *idempotent {
                    ErrorKind::TRANSIENT
                } else {
                    ErrorKind::Indeterminate
                }
            }
            Self::Api {
                status,
                retry_after,
                idempotent,
                ..
            } => match status.as_u16() {
                // Throttled requests are not processed: retry after the server's delay.
                429 => ErrorKind::Transient {
                    retry_after: *retry_after,
                },
                // "Service unavailable" means not processed (STYLE.md row 3, before the 5xx row).
                503 => ErrorKind::Transient {
                    retry_after: *retry_after,
                },
                // A 5xx or 408 after a POST may have queued the write: reconcile by marker lookup.
                408 | 500..=599 => {
                    if *idempotent {
                        ErrorKind::TRANSIENT
                    } else {
                        ErrorKind::Indeterminate
                    }
                }
                // Any other 4xx: repeating the same request cannot help.
                _ => ErrorKind::Permanent,
            },
            // The client already refreshed the token once; a person must fix the credentials.
            Self::Auth { .. } => ErrorKind::Permanent,
            // A forged or stale delivery stays forged.
            Self::WebhookSignature(_) => ErrorKind::Permanent,
            // The vendor's shape changed: raise an alert, do not retry.
            Self::Decode { .. } => ErrorKind::Permanent,
            Self::Config(_) => ErrorKind::Permanent,
        }
    }

    pub(crate) fn decode(
        resource: &'static str,
        field: impl Into<String>,
        problem: DecodeProblem,
    ) -> Self {
        Self::Decode {
            resource,
            field: field.into(),
            problem,
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

/// Decodes a JSON body, naming the path of the first bad field on failure and never its value.
pub(crate) fn from_json<T: DeserializeOwned>(resource: &'static str, bytes: &[u8]) -> Result<T> {
    connector_transport::decode_json(bytes).map_err(|e| from_decode(resource, e))
}

/// The transport's decode error in this crate's words.
pub(crate) fn from_decode(resource: &'static str, e: connector_transport::DecodeError) -> Error {
    use connector_transport::DecodeProblem as P;
    let field = if e.path.is_empty() {
        "(body)".to_owned()
    } else {
        e.path
    };
    let problem = match e.problem {
        P::Missing => DecodeProblem::Missing,
        P::InvalidType => DecodeProblem::InvalidType,
        P::Syntax => DecodeProblem::Syntax,
        _ => DecodeProblem::InvalidValue,
    };
    Error::decode(resource, field, problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        data: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        id: u64,
        name: String,
    }

    #[test]
    fn a_missing_field_is_named_with_its_path() {
        let err = from_json::<Outer>(
            "treatment_plans",
            br#"{"data":[{"id":1,"name":"a"},{"id":2}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "treatment_plans: cannot decode `data[1].name`: missing"
        );
    }

    #[test]
    fn a_wrong_type_is_named_without_its_value() {
        let err = from_json::<Outer>("patients", br#"{"data":[{"id":"Zebulon-991","name":"a"}]}"#)
            .unwrap_err();
        let shown = err.to_string();
        assert_eq!(
            shown,
            "patients: cannot decode `data[0].id`: wrong JSON type"
        );
        assert!(!shown.contains("Zebulon"));
        assert!(!format!("{err:?}").contains("Zebulon"));
    }

    #[test]
    fn a_body_that_is_not_json_is_a_syntax_error() {
        let err = from_json::<Outer>("treatment_plans", b"<html>").unwrap_err();
        assert!(matches!(
            err,
            Error::Decode {
                problem: DecodeProblem::Syntax,
                ..
            }
        ));
    }

    #[test]
    fn vendor_body_debug_shows_only_the_length() {
        let body = VendorBody::new("Janet Doeberg".into());
        assert_eq!(format!("{body:?}"), "VendorBody(13 bytes)");
    }
}
