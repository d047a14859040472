//! The crate's [`Error`] and its [`ErrorKind`] table.
//!
//! `Display` names the operation and the HTTP status (plus Stripe's error `type` and `code`,
//! which are closed vocabularies), never a response body or Stripe's `message`: those can echo
//! what we sent, and what we sent can be PHI.

use std::fmt;
use std::time::Duration;

pub use connector_transport::DecodeError;
#[cfg(test)]
use connector_transport::decode_json;
use financing_core::{Classify, ErrorKind};
use serde::Deserialize;

use crate::enums::string_enum;
use crate::ids::{ChargeId, PaymentIntentId, PaymentMethodId, RequestId, expandable};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong calling Stripe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No usable HTTP response: connect error, timeout, connection reset.
    #[error("{op}: {}", if *.timeout { "timed out" } else { "transport failure" })]
    Transport {
        /// The operation (`create_customer`, …).
        op: &'static str,
        /// True when the client timeout fired.
        timeout: bool,
        /// Attempts made, the first included.
        attempts: u32,
        /// The underlying error, with the URL stripped (query strings can carry an email).
        #[source]
        source: reqwest::Error,
    },
    /// Stripe answered with a non-2xx status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// A 2xx response whose body does not have the shape we expect.
    #[error("{op}: undecodable response (HTTP {status}): {source}")]
    Decode {
        /// The operation.
        op: &'static str,
        /// The HTTP status of the undecodable response.
        status: u16,
        /// Stripe's request id, when the response had one.
        request_id: Option<RequestId>,
        /// Where decoding failed (a field path, never a value).
        #[source]
        source: DecodeError,
    },
    /// The client could not be built.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Input refused before any request was sent.
    #[error("{op}: invalid input: {reason}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        reason: InvalidInput,
    },
}

impl Error {
    pub(crate) fn invalid(op: &'static str, reason: InvalidInput) -> Self {
        Self::Invalid { op, reason }
    }

    /// The HTTP status, for API and decode errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(e) => Some(e.status),
            Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Stripe's error object, for API errors that carried one.
    pub fn stripe_error(&self) -> Option<&ErrorObject> {
        match self {
            Self::Api(e) => Some(&e.error),
            _ => None,
        }
    }

    /// Stripe's `Request-Id`, when a response carried one.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            Self::Api(e) => e.request_id.as_ref(),
            Self::Decode { request_id, .. } => request_id.as_ref(),
            _ => None,
        }
    }

    /// How to treat this failure; see the table on [`Classify`] for this type.
    pub fn kind(&self) -> ErrorKind {
        match self {
            // Bad input, bad configuration and a changed response shape cannot be fixed by
            // repeating the call.
            Self::Invalid { .. } | Self::Config(_) | Self::Decode { .. } => ErrorKind::Permanent,
            // Every call this crate makes is a GET or a POST with an Idempotency-Key, so a
            // connect error or timeout is safe to repeat (docs.stripe.com/error-low-level).
            Self::Transport { .. } => ErrorKind::TRANSIENT,
            Self::Api(e) => e.kind(),
        }
    }
}

/// The classification table (STYLE.md, INTEGRATIONS.md "Retries"); the first matching row wins.
///
/// | outcome | kind |
/// |---|---|
/// | invalid input, configuration, decode error | Permanent |
/// | connect error, timeout | Transient |
/// | `Stripe-Should-Retry: false` | Permanent |
/// | `Stripe-Should-Retry: true` | Transient |
/// | 429 | Transient, with `Retry-After` |
/// | 409, 424 | Transient (same idempotency key) |
/// | 500 on a POST after a retry or an `Idempotent-Replayed` replay | Indeterminate |
/// | other 5xx | Transient |
/// | other statuses | Permanent |
impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

/// The HTTP method of a failed call: a POST may have had a side effect, a GET never has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// A read.
    Get,
    /// A write (always with an `Idempotency-Key`).
    Post,
}

/// A non-2xx response, with everything needed to classify and report it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApiError {
    /// The operation.
    pub op: &'static str,
    /// GET or POST.
    pub method: Method,
    /// The HTTP status.
    pub status: u16,
    /// Stripe's error object (empty when the body was not one, e.g. a proxy's HTML page).
    pub error: ErrorObject,
    /// The `Request-Id` header.
    pub request_id: Option<RequestId>,
    /// The `Stripe-Should-Retry` header, when present.
    pub should_retry: Option<bool>,
    /// The `Retry-After` header, when present.
    pub retry_after: Option<Duration>,
    /// True when Stripe replayed a stored result for our `Idempotency-Key`
    /// (`Idempotent-Replayed: true`).
    pub replayed: bool,
    /// Attempts made, the first included.
    pub attempts: u32,
}

impl ApiError {
    /// The classification row for this response (see [`Error::kind`]).
    pub fn kind(&self) -> ErrorKind {
        let transient = ErrorKind::Transient {
            retry_after: self.retry_after,
        };
        match (self.should_retry, self.status) {
            // Stripe knows better than any status table: its header wins.
            (Some(false), _) => ErrorKind::Permanent,
            (Some(true), _) => transient,
            // Rate limited: nothing happened; wait at least Retry-After.
            (None, 429) => transient,
            // 409: the same key is in flight, or a lock conflict; 424: an external dependency
            // failed. Nothing is stored for the key, so repeating it is safe.
            (None, 409 | 424) => transient,
            // A POST 500 that came back twice (or as a replay of a stored result) may have had
            // its side effect: reconcile by lookup before creating anything again.
            (None, 500) if self.method == Method::Post && (self.replayed || self.attempts > 1) => {
                ErrorKind::Indeterminate
            }
            // Other server errors: the key makes a repeat safe.
            (None, 500..=599) => transient,
            // 400, 401, 402, 403, 404 and anything unexpected: fix the request, use a new key.
            _ => ErrorKind::Permanent,
        }
    }

    /// True when the retry loop may repeat this call right away (before the final
    /// classification, a first 500 is still worth one more try).
    pub(crate) fn retryable(&self) -> bool {
        match (self.should_retry, self.status) {
            (Some(flag), _) => flag,
            // A replayed 500 will replay again: stop.
            (None, 500) if self.replayed => false,
            (None, 409 | 424 | 429 | 500..=599) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: HTTP {}", self.op, self.status)?;
        match (&self.error.error_type, &self.error.code) {
            (Some(t), Some(c)) => write!(f, " ({t}/{c})"),
            (Some(t), None) => write!(f, " ({t})"),
            (None, Some(c)) => write!(f, " ({c})"),
            (None, None) => Ok(()),
        }
    }
}

string_enum!(
    /// Stripe's error `type`.
    ErrorType {
        /// Stripe's own failure.
        ApiError => "api_error",
        /// The card was declined or needs authentication.
        CardError => "card_error",
        /// An idempotency key was reused with different parameters.
        IdempotencyError => "idempotency_error",
        /// The request was malformed.
        InvalidRequestError => "invalid_request_error",
    }
);

string_enum!(
    /// Stripe's error `code` (an open list: docs.stripe.com/error-codes).
    ErrorCode {
        /// The payment needs the customer to authenticate (3-D Secure): bring them on-session.
        AuthenticationRequired => "authentication_required",
        /// Below the currency's minimum charge.
        AmountTooSmall => "amount_too_small",
        /// Above the maximum charge.
        AmountTooLarge => "amount_too_large",
        /// The card was declined; see `decline_code`.
        CardDeclined => "card_declined",
        /// Too many declines on this card recently.
        CardDeclineRateLimitExceeded => "card_decline_rate_limit_exceeded",
        /// The card has expired.
        ExpiredCard => "expired_card",
        /// Another request with this idempotency key is in flight.
        IdempotencyKeyInUse => "idempotency_key_in_use",
        /// The CVC was wrong.
        IncorrectCvc => "incorrect_cvc",
        /// The card number was wrong.
        IncorrectNumber => "incorrect_number",
        /// A lock on the object timed out.
        LockTimeout => "lock_timeout",
        /// A required parameter is missing.
        ParameterMissing => "parameter_missing",
        /// A parameter is not known.
        ParameterUnknown => "parameter_unknown",
        /// A PaymentIntent's authentication failed.
        PaymentIntentAuthenticationFailure => "payment_intent_authentication_failure",
        /// An error while processing the card.
        ProcessingError => "processing_error",
        /// Too many requests.
        RateLimit => "rate_limit",
        /// An object with this id already exists.
        ResourceAlreadyExists => "resource_already_exists",
        /// No such object.
        ResourceMissing => "resource_missing",
    }
);

/// Stripe's error object (`{"error": {...}}`, also a PaymentIntent's `last_payment_error`).
///
/// `Debug` leaves out `message`: Stripe's messages can quote the parameters we sent.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ErrorObject {
    /// `type`.
    #[serde(rename = "type", default)]
    pub error_type: Option<ErrorType>,
    /// `code`, for errors that have one.
    #[serde(default)]
    pub code: Option<ErrorCode>,
    /// The issuer's reason for a card decline (`insufficient_funds`, `do_not_honor`, …): an open
    /// list, kept as text.
    #[serde(default)]
    pub decline_code: Option<String>,
    /// The parameter the error is about.
    #[serde(default)]
    pub param: Option<String>,
    /// Human-readable text. May quote request values: never log it or show it to staff verbatim.
    #[serde(default)]
    pub message: Option<String>,
    /// Link to Stripe's docs for the code.
    #[serde(default)]
    pub doc_url: Option<String>,
    /// The PaymentIntent the error is about (card errors on a PaymentIntent).
    #[serde(default, deserialize_with = "expandable::option")]
    pub payment_intent: Option<PaymentIntentId>,
    /// The payment method the error is about.
    #[serde(default, deserialize_with = "expandable::option")]
    pub payment_method: Option<PaymentMethodId>,
    /// The charge the error is about.
    #[serde(default, deserialize_with = "expandable::option")]
    pub charge: Option<ChargeId>,
}

impl fmt::Debug for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorObject")
            .field("type", &self.error_type)
            .field("code", &self.code)
            .field("decline_code", &self.decline_code)
            .field("param", &self.param)
            .field("payment_intent", &self.payment_intent)
            .finish_non_exhaustive()
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The API key is empty.
    #[error("the API key is empty")]
    EmptyApiKey,
    /// The API key cannot go in an HTTP header (whitespace or control characters).
    #[error("the API key contains characters that cannot go in a header")]
    ApiKeyNotHeaderSafe,
    /// The base URL is not an `http(s)` URL that paths can be joined to.
    #[error("the base URL must be an http or https URL")]
    BaseUrl,
    /// A timeout of zero.
    #[error("the timeout must be above zero")]
    ZeroTimeout,
    /// reqwest could not build its client.
    #[error("could not build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

/// Input refused before anything was sent. `Display` names the rule, never the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// An amount of zero or below.
    #[error("the amount must be above zero")]
    NonPositiveAmount,
    /// Below Stripe's minimum charge for the currency.
    #[error("the amount is below the minimum charge of {minimum} minor units")]
    BelowMinimumCharge {
        /// The minimum, in minor units.
        minimum: i64,
    },
    /// Above Stripe's maximum charge (eight digits of minor units).
    #[error("the amount is above the maximum charge")]
    AboveMaximumCharge,
    /// A currency with no minor units (JPY): Chairside only handles two-decimal currencies.
    #[error("currency {0} has no minor units; only two-decimal currencies are supported")]
    CurrencyWithoutMinorUnits(&'static str),
    /// Two amounts in different currencies.
    #[error("amounts are in different currencies")]
    CurrencyMismatch,
    /// More than 50 metadata keys.
    #[error("{count} metadata keys; Stripe allows at most 50")]
    TooManyMetadataKeys {
        /// Keys sent.
        count: usize,
    },
    /// An empty metadata key.
    #[error("a metadata key is empty")]
    EmptyMetadataKey,
    /// A metadata key over 40 characters.
    #[error("a metadata key has {len} characters; Stripe allows at most 40")]
    MetadataKeyTooLong {
        /// Characters in the key.
        len: usize,
    },
    /// A metadata key containing `[` or `]`.
    #[error("a metadata key contains square brackets")]
    MetadataKeyBrackets,
    /// A metadata value over 500 characters.
    #[error("a metadata value has {len} characters; Stripe allows at most 500")]
    MetadataValueTooLong {
        /// Characters in the value.
        len: usize,
    },
    /// A metadata key this crate sets itself (`chairside_patient`, `chairside_practice`).
    #[error("metadata key {0} is reserved")]
    ReservedMetadataKey(&'static str),
    /// An idempotency key that is empty, over 255 characters, or not printable ASCII.
    #[error("the idempotency key must be 1 to 255 printable ASCII characters")]
    IdempotencyKey,
    /// An installment count of zero or above the maximum.
    #[error("installment count {count} is outside 1..={max}")]
    InstallmentCount {
        /// Count asked for.
        count: u32,
        /// The maximum.
        max: u32,
    },
    /// A billing interval count of zero, or a billing period longer than Stripe allows (one year).
    #[error("the billing interval must be between one day and one year")]
    IntervalCount,
    /// The plan as a whole runs longer than the maximum span.
    #[error("the plan spans more than {max_days} days")]
    PlanTooLong {
        /// The maximum, in days.
        max_days: u32,
    },
    /// The total does not split into installments that each reach the minimum charge.
    #[error("each installment would be below the minimum charge of {minimum} minor units")]
    InstallmentBelowMinimum {
        /// The minimum, in minor units.
        minimum: i64,
    },
    /// `days_until_due` outside 1..=365.
    #[error("days until due must be between 1 and 365")]
    DaysUntilDue,
    /// A Checkout Session expiry outside 30 minutes to 24 hours from now.
    #[error("expires_at must be 30 minutes to 24 hours from now")]
    ExpiresAt,
    /// A `client_reference_id` over 200 characters or empty.
    #[error("client_reference_id must be 1 to 200 characters")]
    ClientReferenceId,
    /// A required text field is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A text field is longer than Stripe accepts.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The maximum.
        max: usize,
    },
    /// An id has the wrong shape for a path segment (empty, or a `/`, `?` or `#` in it).
    #[error("{0} is not a valid id")]
    BadId(&'static str),
}

/// Stripe's own retry rule, not the shared `ErrorKind` table: connection errors and timeouts (a
/// builder error is a bug, not a blip), and whatever `ApiError::retryable` allows (409, 424,
/// 429, 5xx, `Stripe-Should-Retry`). Every POST carries its idempotency key, so repeating is safe.
impl connector_transport::Retryable for Error {
    fn retry_hint(&self) -> connector_transport::RetryHint {
        match self {
            Error::Transport { source, .. } if !source.is_builder() => {
                connector_transport::RetryHint::Retry { after: None }
            }
            Error::Api(api) if api.retryable() => connector_transport::RetryHint::Retry {
                after: api.retry_after,
            },
            _ => connector_transport::RetryHint::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(method: Method, status: u16) -> ApiError {
        ApiError {
            op: "op",
            method,
            status,
            error: ErrorObject::default(),
            request_id: None,
            should_retry: None,
            retry_after: None,
            replayed: false,
            attempts: 1,
        }
    }

    // One test per row of the table, in the table's order.

    #[test]
    fn should_retry_false_is_permanent_even_on_a_503() {
        let e = ApiError {
            should_retry: Some(false),
            ..api(Method::Post, 503)
        };
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert!(!e.retryable());
    }

    #[test]
    fn should_retry_true_is_transient_even_on_a_400() {
        let e = ApiError {
            should_retry: Some(true),
            ..api(Method::Post, 400)
        };
        assert_eq!(e.kind(), ErrorKind::TRANSIENT);
        assert!(e.retryable());
    }

    #[test]
    fn a_429_is_transient_and_carries_retry_after() {
        let e = ApiError {
            retry_after: Some(Duration::from_secs(7)),
            ..api(Method::Post, 429)
        };
        assert_eq!(
            e.kind(),
            ErrorKind::Transient {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(e.retryable());
    }

    #[test]
    fn a_409_or_424_is_transient() {
        for status in [409, 424] {
            let e = api(Method::Post, status);
            assert_eq!(e.kind(), ErrorKind::TRANSIENT, "{status}");
            assert!(e.retryable());
        }
    }

    #[test]
    fn a_post_500_after_retries_or_replayed_is_indeterminate() {
        let retried = ApiError {
            attempts: 3,
            ..api(Method::Post, 500)
        };
        assert_eq!(retried.kind(), ErrorKind::Indeterminate);
        let replayed = ApiError {
            replayed: true,
            ..api(Method::Post, 500)
        };
        assert_eq!(replayed.kind(), ErrorKind::Indeterminate);
        assert!(!replayed.retryable());
    }

    #[test]
    fn other_5xx_are_transient_including_a_first_post_500_and_any_get_500() {
        assert_eq!(api(Method::Post, 500).kind(), ErrorKind::TRANSIENT);
        assert!(api(Method::Post, 500).retryable());
        let get = ApiError {
            attempts: 3,
            ..api(Method::Get, 500)
        };
        assert_eq!(get.kind(), ErrorKind::TRANSIENT);
        for status in [502, 503, 504] {
            let e = ApiError {
                attempts: 3,
                ..api(Method::Post, status)
            };
            assert_eq!(e.kind(), ErrorKind::TRANSIENT, "{status}");
        }
    }

    #[test]
    fn other_statuses_are_permanent_and_never_retried() {
        for status in [400, 401, 402, 403, 404, 405, 418, 302] {
            let e = api(Method::Post, status);
            assert_eq!(e.kind(), ErrorKind::Permanent, "{status}");
            assert!(!e.retryable(), "{status}");
        }
    }

    #[test]
    fn invalid_input_config_and_decode_errors_are_permanent() {
        let invalid = Error::invalid("create_customer", InvalidInput::NonPositiveAmount);
        assert_eq!(invalid.kind(), ErrorKind::Permanent);
        assert_eq!(
            Error::Config(ConfigError::EmptyApiKey).kind(),
            ErrorKind::Permanent
        );
        let decode = Error::Decode {
            op: "get_customer",
            status: 200,
            request_id: None,
            source: DecodeError {
                path: "id".into(),
                problem: connector_transport::DecodeProblem::Missing,
                line: 1,
                column: 1,
            },
        };
        assert_eq!(decode.kind(), ErrorKind::Permanent);
    }

    #[test]
    fn display_names_op_status_type_and_code_but_never_the_message() {
        let mut e = api(Method::Post, 402);
        e.op = "charge_off_session";
        e.error = decode_json(
            br#"{"type":"card_error","code":"card_declined","message":"jane@example.test declined"}"#,
        )
        .unwrap();
        let shown = Error::Api(Box::new(e)).to_string();
        assert_eq!(
            shown,
            "charge_off_session: HTTP 402 (card_error/card_declined)"
        );
        let debug = format!(
            "{:?}",
            decode_json::<ErrorObject>(br#"{"message":"jane@example.test"}"#).unwrap()
        );
        assert!(!debug.contains("jane"), "{debug}");
    }

    #[test]
    fn decode_errors_name_the_path_not_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            amount: i64,
        }
        let err = decode_json::<T>(br#"{"amount":"jane@example.test"}"#).unwrap_err();
        assert_eq!(err.path, "amount");
        assert!(!err.to_string().contains("jane"), "{err}");
    }

    #[test]
    fn unknown_error_types_and_codes_decode() {
        let e: ErrorObject =
            decode_json(br#"{"type":"brand_new_error","code":"brand_new_code","extra":1}"#)
                .unwrap();
        assert_eq!(
            e.error_type,
            Some(ErrorType::Unknown("brand_new_error".into()))
        );
        assert_eq!(e.code, Some(ErrorCode::Unknown("brand_new_code".into())));
    }
}
