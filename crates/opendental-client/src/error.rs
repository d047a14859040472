//! The crate's [`Error`] and its one [`ErrorKind`] table.
//!
//! No `Display` here ever contains a response body, a field value or patient data: only the
//! operation, the HTTP status, and (for decoding) the resource and field name.

use std::fmt;
use std::time::Duration;

use financing_core::{Classify, ErrorKind, MoneyError};

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Open Dental call that failed. Its `Display` is what error messages name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `GET /treatplans`.
    ListTreatPlans,
    /// `GET /proctps`.
    ListProcTps,
    /// `GET /treatplanattaches`.
    ListTreatPlanAttaches,
    /// `GET /procedurelogs`.
    ListProcedureLogs,
    /// `GET /patients/{PatNum}`.
    GetPatient,
    /// `GET /commlogs`.
    ListCommlogs,
    /// `POST /commlogs`.
    CreateCommlog,
    /// `GET /payments`.
    ListPayments,
    /// `POST /payments`.
    CreatePayment,
    /// `GET /patients` (a search by name).
    ListPatients,
    /// `POST /patients`.
    CreatePatient,
    /// `POST /treatplans` (an Inactive plan).
    CreateTreatPlan,
}

impl Operation {
    /// True for calls that create something in the practice's database. Open Dental takes no
    /// idempotency key, so a write whose outcome is unknown must be reconciled, never repeated.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::CreateCommlog | Self::CreatePayment | Self::CreatePatient | Self::CreateTreatPlan
        )
    }

    /// A short stable label (`list treatplans`, `create payment`).
    pub fn label(self) -> &'static str {
        match self {
            Self::ListTreatPlans => "list treatplans",
            Self::ListProcTps => "list proctps",
            Self::ListTreatPlanAttaches => "list treatplanattaches",
            Self::ListProcedureLogs => "list procedurelogs",
            Self::GetPatient => "get patient",
            Self::ListCommlogs => "list commlogs",
            Self::CreateCommlog => "create commlog",
            Self::ListPayments => "list payments",
            Self::CreatePayment => "create payment",
            Self::ListPatients => "list patients",
            Self::CreatePatient => "create patient",
            Self::CreateTreatPlan => "create treatplan",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A response body Open Dental sent with an error status. Open Dental explains failures in plain
/// text ("PatNum is required"), which can echo patient data, so the body is kept for staff
/// diagnostics only: `Debug` shows its length and nothing else, and no `Display` includes it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct VendorBody(String);

impl VendorBody {
    /// Bodies are cut to this many bytes.
    pub const MAX_LEN: usize = 2048;

    pub(crate) fn new(mut text: String) -> Self {
        if text.len() > Self::MAX_LEN {
            let mut cut = Self::MAX_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Self(text)
    }

    /// The body text. May contain PHI: show it to authorised staff only, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VendorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VendorBody({} bytes)", self.0.len())
    }
}

/// Why a response could not be decoded. Names the resource, the row and the field; never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    resource: &'static str,
    row: Option<usize>,
    field: Option<&'static str>,
    reason: DecodeReason,
}

impl DecodeError {
    pub(crate) fn new(
        resource: &'static str,
        row: Option<usize>,
        field: Option<&'static str>,
        reason: DecodeReason,
    ) -> Self {
        Self {
            resource,
            row,
            field,
            reason,
        }
    }

    /// The resource being decoded (`treatplan`, `proctp`, `patient`, ...).
    pub fn resource(&self) -> &'static str {
        self.resource
    }

    /// The 0-based position of the row in the whole listing, for list responses.
    pub fn row(&self) -> Option<usize> {
        self.row
    }

    /// The Open Dental field name (`FeeAmt`), when one field was at fault.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// What was wrong.
    pub fn reason(&self) -> &DecodeReason {
        &self.reason
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource)?;
        if let Some(row) = self.row {
            write!(f, " row {row}")?;
        }
        if let Some(field) = self.field {
            write!(f, ", field {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// What was wrong with a value Open Dental sent. Carries no part of the value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeReason {
    /// The body is not JSON: the shared decoder's error (a position, never the text).
    NotJson(connector_transport::DecodeError),
    /// The body is JSON of the wrong shape (an object where a list was expected, ...).
    UnexpectedShape {
        /// What was expected.
        expected: &'static str,
    },
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType {
        /// What was expected.
        expected: &'static str,
    },
    /// A money field is not a decimal amount.
    MalformedMoney(MoneyError),
    /// A date field is neither `yyyy-MM-dd` nor `yyyy-MM-dd HH:mm:ss`.
    MalformedDate,
    /// A boolean field is neither `"true"` nor `"false"`.
    MalformedBool,
    /// A key field is not a non-negative whole number.
    MalformedId,
}

impl fmt::Display for DecodeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "not JSON ({e})"),
            Self::UnexpectedShape { expected } => {
                write!(f, "unexpected shape, expected {expected}")
            }
            Self::MissingField => f.write_str("missing"),
            Self::WrongType { expected } => write!(f, "wrong type, expected {expected}"),
            Self::MalformedMoney(e) => write!(f, "malformed money ({e})"),
            Self::MalformedDate => {
                f.write_str("malformed date, expected yyyy-MM-dd or yyyy-MM-dd HH:mm:ss")
            }
            Self::MalformedBool => f.write_str("malformed boolean, expected \"true\" or \"false\""),
            Self::MalformedId => f.write_str("malformed key, expected a whole number"),
        }
    }
}

/// Everything that can go wrong talking to Open Dental.
///
/// Classify with [`Error::kind`]. `Display` names the operation and the status or reason, never a
/// response body or patient data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection could not be made (refused, DNS, TLS): the request never reached the server.
    #[error("{op}: could not connect to Open Dental")]
    Connect {
        /// The call.
        op: Operation,
        /// The transport error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// No response within the timeout. For a write, the office may have recorded it.
    #[error("{op}: timed out")]
    Timeout {
        /// The call.
        op: Operation,
        /// The transport error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// The connection failed after the request may have been sent (reset, truncated body).
    #[error("{op}: connection failed")]
    Transport {
        /// The call.
        op: Operation,
        /// The transport error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// Open Dental answered with an error status.
    #[error("{op}: HTTP {status}")]
    Api {
        /// The call.
        op: Operation,
        /// The HTTP status code.
        status: u16,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// The body, for staff diagnostics only (redacted `Debug`).
        body: VendorBody,
    },
    /// The response did not have the documented shape.
    #[error("{op}: could not decode the response: {source}")]
    Decode {
        /// The call.
        op: Operation,
        /// What was wrong, by resource and field.
        #[source]
        source: DecodeError,
    },
    /// A listing kept returning full pages past the configured page limit.
    #[error("{op}: listing did not end after {pages} pages")]
    Paging {
        /// The call.
        op: Operation,
        /// Pages read before giving up.
        pages: u32,
    },
    /// The request was refused before anything was sent (for example a note without its marker).
    #[error("{op}: invalid request: {reason}")]
    InvalidRequest {
        /// The call.
        op: Operation,
        /// Why.
        reason: &'static str,
    },
    /// The client could not be built.
    #[error("invalid Open Dental client configuration: {0}")]
    Config(&'static str),
}

impl Error {
    /// How to treat this failure. One table, first matching row wins:
    ///
    /// | outcome | kind | why |
    /// | --- | --- | --- |
    /// | connect error | Transient | nothing reached the server, so even a write is safe to repeat |
    /// | 429 | Transient (with `Retry-After`) | throttled before processing |
    /// | 408 | Transient | the server gave up waiting for our request: nothing was processed |
    /// | timeout, transport error or 5xx on a GET | Transient | reads are idempotent |
    /// | timeout, transport error or 5xx on a POST | Indeterminate | no idempotency key: the office may have the row; look for our marker first |
    /// | 400, 401, 403, 404, any other status | Permanent | bad input, bad keys, permission not granted, unknown patient |
    /// | decode error | Permanent | the vendor's shape changed |
    /// | paging overrun, invalid request, configuration | Permanent | a person must look |
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect { .. } => ErrorKind::TRANSIENT,
            Self::Timeout { op, .. } | Self::Transport { op, .. } => unknown_outcome(*op),
            Self::Api {
                op,
                status,
                retry_after,
                ..
            } => status_kind(*op, *status, *retry_after),
            Self::Decode { .. }
            | Self::Paging { .. }
            | Self::InvalidRequest { .. }
            | Self::Config(_) => ErrorKind::Permanent,
        }
    }

    /// The call that failed, when there was one.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Connect { op, .. }
            | Self::Timeout { op, .. }
            | Self::Transport { op, .. }
            | Self::Api { op, .. }
            | Self::Decode { op, .. }
            | Self::Paging { op, .. }
            | Self::InvalidRequest { op, .. } => Some(*op),
            Self::Config(_) => None,
        }
    }

    /// The HTTP status, for [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The decoding failure, for [`Error::Decode`].
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            Self::Decode { source, .. } => Some(source),
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

/// The request may have been processed and we did not see the answer.
fn unknown_outcome(op: Operation) -> ErrorKind {
    if op.is_write() {
        // commlogs and payments take no idempotency key: repeating could write twice.
        ErrorKind::Indeterminate
    } else {
        ErrorKind::TRANSIENT
    }
}

/// The status rows of the table in [`Error::kind`].
pub(crate) fn status_kind(op: Operation, status: u16, retry_after: Option<Duration>) -> ErrorKind {
    match status {
        // Throttled: refused before processing, so safe for writes too.
        429 => ErrorKind::Transient { retry_after },
        // The server timed out reading our request, so it processed nothing.
        408 => ErrorKind::TRANSIENT,
        // Every 5xx, 503 included, is treated alike: the remote API relays to the office's
        // eConnector, and a gateway error can arrive after the office wrote the row.
        500..=599 => match unknown_outcome(op) {
            ErrorKind::Transient { .. } => ErrorKind::Transient { retry_after },
            other => other,
        },
        _ => ErrorKind::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_matches_the_documented_rows() {
        let secs = Some(Duration::from_secs(7));
        let rows: &[(Operation, u16, Option<Duration>, ErrorKind)] = &[
            // 429 honours Retry-After, reads and writes alike.
            (
                Operation::ListTreatPlans,
                429,
                secs,
                ErrorKind::Transient { retry_after: secs },
            ),
            (
                Operation::CreatePayment,
                429,
                secs,
                ErrorKind::Transient { retry_after: secs },
            ),
            (Operation::CreateCommlog, 408, None, ErrorKind::TRANSIENT),
            // 5xx on reads: retry.
            (Operation::GetPatient, 500, None, ErrorKind::TRANSIENT),
            (
                Operation::ListProcTps,
                503,
                secs,
                ErrorKind::Transient { retry_after: secs },
            ),
            // 5xx on writes: unknown outcome.
            (
                Operation::CreateCommlog,
                500,
                None,
                ErrorKind::Indeterminate,
            ),
            (
                Operation::CreatePayment,
                503,
                secs,
                ErrorKind::Indeterminate,
            ),
            (
                Operation::CreatePayment,
                504,
                None,
                ErrorKind::Indeterminate,
            ),
            // Client errors never change by retrying.
            (Operation::ListTreatPlans, 400, None, ErrorKind::Permanent),
            (Operation::ListTreatPlans, 401, None, ErrorKind::Permanent),
            (Operation::CreateCommlog, 403, None, ErrorKind::Permanent),
            (Operation::GetPatient, 404, None, ErrorKind::Permanent),
            (Operation::GetPatient, 302, None, ErrorKind::Permanent),
        ];
        for &(op, status, retry_after, expected) in rows {
            assert_eq!(
                status_kind(op, status, retry_after),
                expected,
                "{op} {status}"
            );
        }
    }

    #[test]
    fn vendor_body_debug_shows_only_its_length_and_is_capped() {
        let body = VendorBody::new("Patient Janet Doeberg not found".to_owned());
        assert_eq!(format!("{body:?}"), "VendorBody(31 bytes)");
        let long = VendorBody::new("é".repeat(VendorBody::MAX_LEN));
        assert!(long.expose().len() <= VendorBody::MAX_LEN);
    }

    #[test]
    fn api_error_display_names_operation_and_status_only() {
        let e = Error::Api {
            op: Operation::CreateCommlog,
            status: 400,
            retry_after: None,
            body: VendorBody::new("Note for Janet Doeberg is invalid".to_owned()),
        };
        assert_eq!(e.to_string(), "create commlog: HTTP 400");
        assert!(!format!("{e:?}").contains("Janet"));
        assert_eq!(e.kind(), ErrorKind::Permanent);
    }

    #[test]
    fn decode_error_names_resource_row_and_field() {
        let e = Error::Decode {
            op: Operation::ListProcTps,
            source: DecodeError::new(
                "proctp",
                Some(3),
                Some("FeeAmt"),
                DecodeReason::MalformedMoney(MoneyError::Invalid),
            ),
        };
        let shown = e.to_string();
        assert!(shown.starts_with("list proctps: could not decode the response: proctp row 3, field FeeAmt: malformed money"), "{shown}");
        assert_eq!(e.kind(), ErrorKind::Permanent);
    }
}
