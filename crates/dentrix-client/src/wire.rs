//! PARTNER-GATED: modelled on public evidence; correct at partner onboarding.
//!
//! Every Dentrix Ascend path, header, query parameter, field name and status string lives in this
//! module and nowhere else, so that a correction after onboarding (or a change by Henry Schein One)
//! is made in one place. The local stand-in server (`sandbox`) imitates Ascend from this file.
//!
//! How sure we are (tags as in INTEGRATIONS.md):
//!
//! - Token endpoint, form fields and response fields, `Authorization: Bearer`, `Organization-ID`,
//!   the 403 for organizations that are not enabled: **\[third-party\]**.
//! - The `ascend-gateway/api/v1/` root, the resource names, the `{data, warnings, errors,
//!   meta.pagination}` envelope, `filter=` syntax (`lastModified>=`, `patient.id==`, `id->[…]`),
//!   `pageSize` and `lastId`: **\[third-party\]**.
//! - `TxCaseV1` and `PatientProcedureV1` field names: **\[third-party\]**. Only `"NEW"` has been
//!   seen for a case status; the other status strings are **\[inferred\]** from Dentrix G-series'
//!   case statuses.
//! - The shape of `primaryInsurance`/`secondaryInsurance` (a number, or an object with an
//!   `estimate`), `practiceProcedure` carrying the CDT code as `adaCode` (or `code`), the shape of
//!   `meta.pagination`, the patient's contact fields, `VisitV1.appointment` and the appointment's
//!   `start`: **\[inferred\]**.
//! - **Notes are unconfirmed.** No note write endpoint is confirmed for Ascend (INTEGRATIONS.md);
//!   the Stream API's `PatientNoteV1` domain type is the evidence that a patient-note resource
//!   exists. It is modelled here as `GET`/`POST …/patientnotes` with `{patient: {id}, note}`;
//!   confirm against the OpenAPI at `papidocs.hs1api.com` before relying on it. **\[inferred\]**
//! - Money is read from JSON numbers or decimal strings, in dollars. **\[inferred\]**

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::status::CaseStatus;

// ---------------------------------------------------------------------------------------------
// Paths and headers.

/// The token endpoint, relative to the base URL (`https://prod.hs1api.com/`).
pub const TOKEN_PATH: &str = "oauth/client_credential/accesstoken";
/// The grant type, sent as a query parameter of the token endpoint.
pub const TOKEN_GRANT_QUERY: (&str, &str) = ("grant_type", "client_credentials");
/// Form field: the OAuth2 client id.
pub const FORM_CLIENT_ID: &str = "client_id";
/// Form field: the OAuth2 client secret.
pub const FORM_CLIENT_SECRET: &str = "client_secret";
/// The REST root, relative to the base URL. Resource paths below are relative to it.
pub const API_ROOT: &str = "ascend-gateway/api/v1/";
/// Header carrying the organization id on every call.
pub const HEADER_ORGANIZATION: &str = "Organization-ID";

/// Treatment-plan cases.
pub const TXCASES: &str = "txcases";
/// Patient procedures (the case's line items).
pub const PATIENT_PROCEDURES: &str = "patientprocedures";
/// Visits: the case's procedures grouped and linked to appointments.
pub const VISITS: &str = "visits";
/// Appointments.
pub const APPOINTMENTS: &str = "appointments";
/// Patients.
pub const PATIENTS: &str = "patients";
/// Patient notes. **Unconfirmed** (see the module docs).
pub const PATIENT_NOTES: &str = "patientnotes";

// ---------------------------------------------------------------------------------------------
// Query parameters and filters.

/// Query parameter holding a filter expression.
pub const QUERY_FILTER: &str = "filter";
/// Query parameter: page size.
pub const QUERY_PAGE_SIZE: &str = "pageSize";
/// Query parameter: the id after which the next page starts.
pub const QUERY_LAST_ID: &str = "lastId";
/// The largest page size we ask for.
pub const MAX_PAGE_SIZE: u32 = 500;

/// `lastModified>=<ISO 8601>`: records changed at or after `since` (inclusive).
pub fn filter_modified_since(since: DateTime<Utc>) -> String {
    format!(
        "lastModified>={}",
        since.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

/// `id->[a,b,c]`: records with one of these ids.
pub fn filter_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let list: Vec<&str> = ids.into_iter().collect();
    format!("id->[{}]", list.join(","))
}

/// `txCase.id==X`: the visits of one case.
pub fn filter_tx_case(id: &str) -> String {
    format!("txCase.id=={id}")
}

/// `patient.id==X`: the records of one patient.
pub fn filter_patient(id: &str) -> String {
    format!("patient.id=={id}")
}

// ---------------------------------------------------------------------------------------------
// Statuses.

/// Reads a case status. Case-insensitive; spaces, dashes and underscores are ignored, so `NEW`,
/// `New`, `ACCEPTED` and `Accepted` all decode. Unknown values are kept raw.
pub fn parse_case_status(raw: &str) -> CaseStatus {
    let key: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_uppercase)
        .collect();
    match key.as_str() {
        "NEW" | "CREATED" => CaseStatus::New,
        "PROPOSED" => CaseStatus::Proposed,
        "ACCEPTED" => CaseStatus::Accepted,
        "REJECTED" => CaseStatus::Rejected,
        "COMPLETED" => CaseStatus::Completed,
        _ => CaseStatus::Unknown(raw.to_owned()),
    }
}

/// The wire value of a case status (the canonical upper-case form; unknown values as received).
pub fn case_status_value(status: &CaseStatus) -> &str {
    match status {
        CaseStatus::New => "NEW",
        CaseStatus::Proposed => "PROPOSED",
        CaseStatus::Accepted => "ACCEPTED",
        CaseStatus::Rejected => "REJECTED",
        CaseStatus::Completed => "COMPLETED",
        CaseStatus::Unknown(raw) => raw,
    }
}

/// The phone types that mean a mobile number. **\[inferred\]**
pub const MOBILE_PHONE_TYPES: &[&str] = &["MOBILE", "CELL", "CELLULAR", "WIRELESS"];

// ---------------------------------------------------------------------------------------------
// Shapes.

/// An id that Ascend may send as a number or a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawId {
    /// A JSON number.
    Number(u64),
    /// A JSON string.
    Text(String),
}

impl RawId {
    /// The id as text.
    pub fn into_string(self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(s) => s,
        }
    }

    /// An id for a request body: a number when the text is all digits, as Ascend sends ids.
    pub fn from_text(id: &str) -> Self {
        id.parse()
            .map_or_else(|_| Self::Text(id.to_owned()), Self::Number)
    }
}

/// A money amount as Ascend may send it: a JSON number or a decimal string, in dollars.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawAmount {
    /// A JSON number (`1300.5`).
    Number(serde_json::Number),
    /// A decimal string (`"1300.50"`).
    Text(String),
}

/// The response envelope of every resource call.
#[derive(Clone, Debug, Deserialize)]
pub struct Envelope<T> {
    /// The payload: a list for queries, an object for a single record.
    pub data: Option<T>,
    /// Non-fatal warnings; counted, never logged.
    #[serde(default)]
    pub warnings: Vec<serde_json::Value>,
    /// Errors; counted, never logged.
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
    /// Paging information.
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// `meta` of the envelope.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Meta {
    /// Paging information.
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

/// `meta.pagination`. **\[inferred\]** shape: every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// The page size the server used.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// The cursor for the next page, when the server provides one.
    #[serde(default)]
    pub last_id: Option<RawId>,
    /// Total matching records, when the server counts them.
    #[serde(default)]
    pub total_count: Option<u64>,
}

/// A link to another record: `{id, type, url}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ref {
    /// The linked record's id.
    pub id: RawId,
    /// The linked record's type, when given.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The linked record's URL, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `TxCaseV1`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxCase {
    /// Case id.
    pub id: RawId,
    /// Case name.
    #[serde(default)]
    pub name: Option<String>,
    /// Case status (`NEW`, ...).
    pub status: String,
    /// Free-text note on the case. Not read (PHI risk).
    #[serde(default)]
    pub note: Option<String>,
    /// Expiration date.
    #[serde(default)]
    pub expiration_date: Option<String>,
    /// When the provider signed.
    #[serde(default)]
    pub provider_signature_date: Option<String>,
    /// When the witness signed.
    #[serde(default)]
    pub witness_signature_date: Option<String>,
    /// The patient.
    pub patient: Ref,
    /// The case's procedures (links).
    #[serde(default)]
    pub procedures: Vec<Ref>,
    /// Last change.
    pub last_modified: String,
}

/// `primaryInsurance` / `secondaryInsurance`: either the estimate itself or an object carrying it.
/// **\[inferred\]**
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum InsuranceEstimate {
    /// `{ "estimate": 500.0, ... }`
    Detailed {
        /// The estimate.
        #[serde(default)]
        estimate: Option<RawAmount>,
    },
    /// A bare amount.
    Amount(RawAmount),
}

impl InsuranceEstimate {
    /// The estimate, whichever form it came in.
    pub fn amount(&self) -> Option<&RawAmount> {
        match self {
            Self::Detailed { estimate } => estimate.as_ref(),
            Self::Amount(a) => Some(a),
        }
    }
}

/// `practiceProcedure`: a link that also carries the procedure code. **\[inferred\]**
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PracticeProcedure {
    /// Id of the practice's procedure definition.
    #[serde(default)]
    pub id: Option<RawId>,
    /// The CDT code (`D2740`).
    #[serde(default, alias = "code", alias = "cdtCode")]
    pub ada_code: Option<String>,
    /// The procedure's short description. Not read.
    #[serde(default)]
    pub description: Option<String>,
}

/// `PatientProcedureV1`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientProcedure {
    /// Procedure id.
    pub id: RawId,
    /// The fee.
    #[serde(default)]
    pub amount: Option<RawAmount>,
    /// Status (treatment planned, completed, ...). Kept raw.
    #[serde(default)]
    pub status: Option<String>,
    /// State. Kept raw.
    #[serde(default)]
    pub state: Option<String>,
    /// When it was planned.
    #[serde(default)]
    pub treatment_planned_date: Option<String>,
    /// When it was performed.
    #[serde(default)]
    pub service_date: Option<String>,
    /// Primary insurance.
    #[serde(default)]
    pub primary_insurance: Option<InsuranceEstimate>,
    /// Secondary insurance.
    #[serde(default)]
    pub secondary_insurance: Option<InsuranceEstimate>,
    /// Staff override of the primary estimate; wins over the computed one.
    #[serde(default)]
    pub primary_insurance_estimate_override: Option<RawAmount>,
    /// Staff override of the secondary estimate; wins over the computed one.
    #[serde(default)]
    pub secondary_insurance_estimate_override: Option<RawAmount>,
    /// Write-off. Not read.
    #[serde(default)]
    pub write_off: Option<RawAmount>,
    /// What the guarantor pays.
    #[serde(default)]
    pub guarantor_portion: Option<RawAmount>,
    /// The practice's procedure definition, with the CDT code.
    #[serde(default)]
    pub practice_procedure: Option<PracticeProcedure>,
    /// Last change.
    #[serde(default)]
    pub last_modified: Option<String>,
}

/// `VisitV1`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Visit {
    /// Visit id.
    pub id: RawId,
    /// Order within the case.
    #[serde(default)]
    pub sequence: Option<i64>,
    /// The appointment booked for it, when one is.
    #[serde(default)]
    pub appointment: Option<Ref>,
}

/// An appointment; only its start is read.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Appointment {
    /// Appointment id.
    pub id: RawId,
    /// Start time. **\[inferred\]** name.
    #[serde(default)]
    pub start: Option<String>,
}

/// A patient's phone. **\[inferred\]**
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phone {
    /// `MOBILE`, `HOME`, `WORK`, ...
    #[serde(default, alias = "type")]
    pub phone_type: Option<String>,
    /// The number as typed in the practice.
    #[serde(default)]
    pub number: Option<String>,
}

/// A patient's address. **\[inferred\]**
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// First street line.
    #[serde(default, alias = "address1")]
    pub street1: Option<String>,
    /// Second street line.
    #[serde(default, alias = "address2")]
    pub street2: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// State code.
    #[serde(default)]
    pub state: Option<String>,
    /// ZIP code.
    #[serde(default, alias = "zipCode")]
    pub postal_code: Option<String>,
}

/// `PatientV1`, contact fields only. **\[inferred\]** names.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    /// Patient id.
    pub id: RawId,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth.
    #[serde(default)]
    pub date_of_birth: Option<String>,
    /// Email.
    #[serde(default, alias = "email")]
    pub email_address: Option<String>,
    /// Phones.
    #[serde(default)]
    pub phones: Vec<Phone>,
    /// Address.
    #[serde(default)]
    pub address: Option<Address>,
    /// Preferred language (`SPANISH`, `es`, ...).
    #[serde(default)]
    pub preferred_language: Option<String>,
    /// The practice's record that the patient agreed to texts. **Unconfirmed** field: read
    /// leniently (`true`, `"true"`, `"YES"`, `"Y"`); anything else is no record.
    #[serde(default)]
    pub text_message_consent: Option<serde_json::Value>,
}

impl Patient {
    /// Whether `textMessageConsent` says yes.
    pub fn text_message_consent(&self) -> bool {
        match &self.text_message_consent {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => {
                matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "y")
            }
            _ => false,
        }
    }
}

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// `PatientNoteV1`. **Unconfirmed** resource (see the module docs).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientNote {
    /// Note id.
    pub id: RawId,
    /// The patient.
    #[serde(default)]
    pub patient: Option<Ref>,
    /// The note's text.
    #[serde(default)]
    pub note: Option<String>,
    /// When it was written.
    #[serde(default)]
    pub date_created: Option<String>,
}

impl std::fmt::Debug for PatientNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatientNote")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The body of a note write. **Unconfirmed** (see the module docs).
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewPatientNote {
    /// The patient.
    pub patient: Ref,
    /// The note's text.
    pub note: String,
}

impl std::fmt::Debug for NewPatientNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPatientNote")
            .field("patient", &self.patient.id)
            .finish_non_exhaustive()
    }
}
