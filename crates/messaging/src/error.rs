//! The crate's one error type and its [`ErrorKind`] table.
//!
//! No variant keeps a vendor body or a library error whose `Display` could echo one: Twilio's
//! messages quote phone numbers, SMTP replies quote addresses, `reqwest` errors carry the URL
//! (which has `To=` in it for lookups) and `serde_json` errors can quote values. What is kept is
//! the operation, the status, the vendor's error code and, for an undecodable body, the field path
//! from [`connector_transport::decode_json`].

use std::fmt;
use std::time::Duration;

use financing_core::{Classify, ErrorKind};

use crate::consent::LedgerError;
use crate::ids::TwilioErrorCode;
use crate::regz::RegZViolation;
use crate::segments::ComposeError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The external call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `POST …/Messages.json`: sends a text. Not idempotent: Twilio has no idempotency key.
    CreateMessage,
    /// `GET …/Messages.json`: the reconciliation lookup. Idempotent.
    ListMessages,
    /// An SMTP transaction. Not idempotent.
    SendEmail,
}

impl Operation {
    /// True when repeating the call cannot cause a second side effect.
    pub fn is_idempotent(self) -> bool {
        matches!(self, Self::ListMessages)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateMessage => "create message",
            Self::ListMessages => "list messages",
            Self::SendEmail => "send email",
        })
    }
}

/// Where an SMTP transaction failed, as far as the SMTP library lets us tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SmtpFailure {
    /// The server answered 4xx (try again later). Nothing was accepted.
    TransientReply {
        /// The reply code.
        code: u16,
    },
    /// The server answered 5xx. Nothing was accepted.
    PermanentReply {
        /// The reply code.
        code: u16,
    },
    /// No connection could be opened (refused, unreachable, DNS, connect timeout).
    Connect,
    /// The connection broke, timed out or answered garbage mid-conversation: the server may
    /// have accepted the message.
    Conversation,
    /// TLS failed (certificate, handshake).
    Tls,
    /// The SMTP library refused the message or its own state.
    Client,
}

impl fmt::Display for SmtpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TransientReply { code } => write!(f, "SMTP {code} (transient)"),
            Self::PermanentReply { code } => write!(f, "SMTP {code} (permanent)"),
            Self::Connect => f.write_str("cannot connect"),
            Self::Conversation => f.write_str("connection lost mid-conversation"),
            Self::Tls => f.write_str("TLS failure"),
            Self::Client => f.write_str("refused by the SMTP client"),
        }
    }
}

/// Everything that can go wrong in this crate. `Display` names the operation and status, never a
/// body, an address or a message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (bad base URL, plaintext SMTP to a remote host, bad sender).
    #[error("configuration: {reason}")]
    Config {
        /// What is wrong, without secrets.
        reason: String,
    },
    /// The HTTP request failed before a response arrived. The source is `reqwest`'s error with
    /// its URL removed.
    #[error("{op}: transport failure")]
    Transport {
        /// The call.
        op: Operation,
        /// The cause, URL stripped.
        #[source]
        source: reqwest::Error,
    },
    /// Twilio answered with an error status.
    #[error("{op}: HTTP {status}{}", code.map(|c| format!(", Twilio error {c}")).unwrap_or_default())]
    Api {
        /// The call.
        op: Operation,
        /// The HTTP status.
        status: u16,
        /// Twilio's `code`, when the body had one.
        code: Option<TwilioErrorCode>,
        /// The `Retry-After` header, when present.
        retry_after: Option<Duration>,
    },
    /// A 2xx response did not have the expected shape. `Display` names the call and the field
    /// path, never a value from the body.
    #[error("{op}: HTTP {status} with an undecodable body: {source}")]
    Decode {
        /// The call.
        op: Operation,
        /// The HTTP status.
        status: u16,
        /// Where decoding stopped: the field path and the kind of failure, never the value.
        #[source]
        source: connector_transport::DecodeError,
    },
    /// The SMTP transaction failed.
    #[error("send email: {failure}")]
    Smtp {
        /// What failed.
        failure: SmtpFailure,
    },
    /// A template failed to load or render.
    #[error("template {template}: {source}")]
    Template {
        /// The template's name (`en/financing_summary.sms.txt`).
        template: String,
        /// The engine's error (about the template, never about values).
        #[source]
        source: minijinja::Error,
    },
    /// A template's declared variables and its context disagree, or a file is missing.
    #[error("template {template}: {reason}")]
    TemplateContract {
        /// The template's name.
        template: String,
        /// What disagrees (variable names only).
        reason: String,
    },
    /// Text outside a lender-approved template states Reg Z trigger terms.
    #[error("template {template}: {violation}")]
    RegZ {
        /// The template's name.
        template: String,
        /// The kinds of terms found.
        #[source]
        violation: RegZViolation,
    },
    /// An SMS cannot fit its segment budget without cutting the link.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The consent ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A webhook's `X-Twilio-Signature` is missing or wrong. Reject before parsing the body.
    #[error("twilio webhook: bad or missing signature")]
    BadSignature,
    /// A verified webhook lacks a required field or has a malformed one.
    #[error("twilio webhook: {reason}")]
    Webhook {
        /// Which field (never its value).
        reason: &'static str,
    },
}

impl Error {
    /// Classifies the failure. One table, tested row by row in `tests/it/errors.rs`:
    ///
    /// | outcome | kind | why |
    /// |---|---|---|
    /// | connect error (HTTP or SMTP) | Transient | nothing reached the server |
    /// | 429, or Twilio 20429 | Transient (with `Retry-After`) | Twilio documents that the request was not processed |
    /// | SMTP 4xx reply | Transient | the server refused for now and accepted nothing |
    /// | timeout or 5xx on the create-message POST | Indeterminate | no idempotency key: the text may have gone; reconcile with `list_messages_to` |
    /// | timeout or 5xx on the list lookup | Transient | a GET is safe to repeat |
    /// | SMTP connection lost or timed out mid-conversation | Indeterminate | the server may have accepted the message |
    /// | undecodable 2xx on create | Indeterminate | the text was sent but we have no SID: reconcile |
    /// | undecodable 2xx on a lookup | Permanent | Twilio's shape changed |
    /// | other 4xx (401, 403, 400, …), SMTP 5xx, TLS | Permanent | retrying cannot help |
    /// | config, template, Reg Z, compose, signature, webhook | Permanent | a person must act |
    /// | ledger | the ledger's own kind | |
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Transport { op, source } => {
                if source.is_builder() || source.is_redirect() {
                    // Refused locally before anything was sent: a bug or bad configuration.
                    ErrorKind::Permanent
                } else if source.is_connect() || op.is_idempotent() {
                    ErrorKind::TRANSIENT
                } else {
                    // A timeout or a broken connection after the POST was written: the message
                    // may exist. Never blind-retry a text.
                    ErrorKind::Indeterminate
                }
            }
            Self::Api {
                op,
                status,
                code,
                retry_after,
            } => {
                if *status == 429 || *code == Some(TwilioErrorCode::TOO_MANY_REQUESTS) {
                    ErrorKind::Transient {
                        retry_after: *retry_after,
                    }
                } else if *status >= 500 {
                    if op.is_idempotent() {
                        ErrorKind::TRANSIENT
                    } else {
                        // Even a 503: without an idempotency key we cannot know the text was not
                        // queued, and a duplicate text to a patient is worse than a short delay
                        // for reconciliation. (STYLE.md's 503 row assumes a key.)
                        ErrorKind::Indeterminate
                    }
                } else {
                    ErrorKind::Permanent
                }
            }
            Self::Decode { op, .. } => {
                if *op == Operation::CreateMessage {
                    ErrorKind::Indeterminate
                } else {
                    ErrorKind::Permanent
                }
            }
            Self::Smtp { failure } => match failure {
                SmtpFailure::TransientReply { .. } | SmtpFailure::Connect => ErrorKind::TRANSIENT,
                SmtpFailure::Conversation => ErrorKind::Indeterminate,
                SmtpFailure::PermanentReply { .. } | SmtpFailure::Tls | SmtpFailure::Client => {
                    ErrorKind::Permanent
                }
            },
            Self::Ledger(e) => e.kind(),
            Self::Config { .. }
            | Self::Template { .. }
            | Self::TemplateContract { .. }
            | Self::RegZ { .. }
            | Self::Compose(_)
            | Self::BadSignature
            | Self::Webhook { .. } => ErrorKind::Permanent,
        }
    }

    /// Twilio's error code, when the failure carried one.
    pub fn twilio_code(&self) -> Option<TwilioErrorCode> {
        match self {
            Self::Api { code, .. } => *code,
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
