//! PARTNER-GATED: modelled on public evidence; correct at partner onboarding.
//!
//! Every NexHealth path, header, query parameter, field name and status string lives in this
//! module and nowhere else, so that a correction is made in one place. The local stand-in server
//! (`sandbox`) imitates NexHealth from this file.
//!
//! How sure we are (tags as in INTEGRATIONS.md):
//!
//! - `POST /authenticates` with `Authorization: <api key>` → `{code, data: {token}, description,
//!   error}`; `Authorization: Bearer`, `Nex-Api-Version`, the `subdomain` query parameter:
//!   \[documented\]. The token is a JWT valid 1 h in production (24 h in sandbox); its lifetime is
//!   read from the JWT's `exp` claim when present.
//! - `GET /treatment_plans` with `patient_id`, `status`, `updated_since` (inclusive), `per_page`
//!   (≤ 1000) and cursor paging (`end_cursor` from `page_info` pages forward), plan and procedure
//!   fields, `fee {amount: "62.00", currency}` in whole units, statuses: \[documented\]. Plans
//!   carry **no insurance estimates**.
//! - `location_id` is sent with every resource call; the treatment-plan endpoints document only
//!   `subdomain` (institution scope), so there it is redundant. \[inferred\]
//! - Patients (`first_name`, `last_name`, `email`, `bio {date_of_birth, cell_phone_number,
//!   address_line_1, …}`, `preferred_language` as ISO 639-1): \[third-party\] (a split of
//!   NexHealth's OpenAPI).
//! - `POST /webhook_endpoints {target_url}` → `{id, secret_key, …}`, then
//!   `POST /webhook_endpoints/{id}/webhook_subscriptions {resource_type, event}`: \[documented\].
//! - **How deliveries are signed is unconfirmed**: modelled as HMAC-SHA256 of the raw body with the
//!   endpoint's `secret_key`, hex (or base64), in the header [`SIGNATURE_HEADER`]. The header name
//!   and encoding are \[inferred\]; confirm at onboarding.
//! - The delivery payload `{resource_type, event, event_time, delivery_id, data}` and the
//!   `*_insertion.complete` / `*_insertion.failed` event names: \[inferred\].
//! - `POST /communication_logs` (v3.1.0 beta, Open Dental only) answers 202: \[documented\]. Its
//!   body fields (`patient_id`, `note`), the read-back `GET /communication_logs[/{id}]`, and
//!   "written to the EHR" meaning a non-null `foreign_id`: \[inferred\]. No note endpoint is
//!   confirmed for Dentrix through NexHealth.
//! - `POST /payments {payment: {patient_id*, amount*, currency, transaction_id*, paid_at,
//!   notes}}` "enqueues a write-back" (202); `amount` is a JSON number in decimal dollars, negative
//!   for a payment (it reduces the patient's balance) and positive for a refund; `transaction_id`
//!   is at most 50 characters, prefixed by the API originator, and `GET /payments?patient_id=
//!   &transaction_id=` reads the ledger payments carrying it, each with `payment_amount {amount,
//!   currency}`: \[documented\] (NexHealth's OpenAPI v20240412 `postPayments` and `getPayments`;
//!   docs.nexhealth.com/v3.1.0/reference/payments for the signs and refunds).
//! - Rate limits: 100 requests/s per key; 1000/min for patients and appointments; 2000/min for
//!   other endpoints: \[documented\].

use serde::{Deserialize, Serialize};

use crate::status::PlanStatus;

// ---------------------------------------------------------------------------------------------
// Paths and headers.

/// Exchanges the API key for a bearer token.
pub const AUTHENTICATES: &str = "authenticates";
/// Treatment plans.
pub const TREATMENT_PLANS: &str = "treatment_plans";
/// Patients.
pub const PATIENTS: &str = "patients";
/// Appointments (rate-limited like patients).
pub const APPOINTMENTS: &str = "appointments";
/// Webhook endpoints.
pub const WEBHOOK_ENDPOINTS: &str = "webhook_endpoints";
/// Subscriptions, under an endpoint: `webhook_endpoints/{id}/webhook_subscriptions`.
pub const WEBHOOK_SUBSCRIPTIONS: &str = "webhook_subscriptions";
/// Communication logs: the ledger note. Beta; Open Dental only.
pub const COMMUNICATION_LOGS: &str = "communication_logs";
/// Ledger payments (and refunds, as positive amounts).
pub const PAYMENTS: &str = "payments";
/// `GET /payments` filter by our transaction id.
pub const QUERY_TRANSACTION_ID: &str = "transaction_id";
/// The longest `transaction_id` NexHealth takes.
pub const TRANSACTION_ID_MAX: usize = 50;

/// The API version header.
pub const HEADER_API_VERSION: &str = "Nex-Api-Version";
/// The API version we speak (`v20240412` is another name for it).
pub const API_VERSION: &str = "v3.0.0";
/// The header a webhook delivery's signature arrives in. \[inferred\]: confirm at onboarding.
pub const SIGNATURE_HEADER: &str = "X-NexHealth-Signature";
/// A prefix the signature may carry before its hex digest. \[inferred\]
pub const SIGNATURE_PREFIX: &str = "sha256=";

// ---------------------------------------------------------------------------------------------
// Query parameters.

/// Institution scope, on every call.
pub const QUERY_SUBDOMAIN: &str = "subdomain";
/// Location scope.
pub const QUERY_LOCATION_ID: &str = "location_id";
/// Plans updated at or after this time (inclusive), ISO 8601.
pub const QUERY_UPDATED_SINCE: &str = "updated_since";
/// Plan status filter.
pub const QUERY_STATUS: &str = "status";
/// Patient filter.
pub const QUERY_PATIENT_ID: &str = "patient_id";
/// Page size.
pub const QUERY_PER_PAGE: &str = "per_page";
/// Pages forward: the previous page's `page_info.end_cursor`.
pub const QUERY_END_CURSOR: &str = "end_cursor";
/// The largest page size NexHealth allows.
pub const MAX_PER_PAGE: u32 = 1000;

/// True for paths with the tighter per-minute budget (1000/min): patients and appointments.
pub fn is_patient_budget(resource: &str) -> bool {
    resource == PATIENTS || resource == APPOINTMENTS
}

// ---------------------------------------------------------------------------------------------
// Statuses and events.

/// Reads a plan status; unknown values are kept raw.
pub fn parse_plan_status(raw: &str) -> PlanStatus {
    match raw.trim().to_ascii_lowercase().as_str() {
        "not_applicable" => PlanStatus::NotApplicable,
        "proposed" => PlanStatus::Proposed,
        "accepted" => PlanStatus::Accepted,
        "rejected" => PlanStatus::Rejected,
        "completed" => PlanStatus::Completed,
        _ => PlanStatus::Unknown(raw.to_owned()),
    }
}

/// The wire value of a plan status, for the `status` filter.
pub fn plan_status_value(status: &PlanStatus) -> &str {
    match status {
        PlanStatus::NotApplicable => "not_applicable",
        PlanStatus::Proposed => "proposed",
        PlanStatus::Accepted => "accepted",
        PlanStatus::Rejected => "rejected",
        PlanStatus::Completed => "completed",
        PlanStatus::Unknown(raw) => raw,
    }
}

/// The procedure status that takes a procedure out of a plan's price.
pub const PROCEDURE_STATUS_INACTIVE: &str = "inactive";

/// Subscription body values for plan changes.
pub const TREATMENT_PLAN_RESOURCE: &str = "TreatmentPlan";
/// The event fired when a plan changes.
pub const TREATMENT_PLAN_UPDATED: &str = "treatment_plan_updated";
/// Suffix of the event that confirms an asynchronous write reached the EHR. \[inferred\]
pub const INSERTION_COMPLETE_SUFFIX: &str = "_insertion.complete";
/// Suffix of the event that reports a failed asynchronous write. \[inferred\]
pub const INSERTION_FAILED_SUFFIX: &str = "_insertion.failed";
/// A bare insertion event (`payment_insertion`), read as a confirmation. \[documented\] name.
pub const INSERTION_SUFFIX: &str = "_insertion";

// ---------------------------------------------------------------------------------------------
// Shapes.

/// An id NexHealth may send as a number or a string.
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

    /// An id for a request body: a number when the text is all digits, as NexHealth sends ids.
    pub fn from_text(id: &str) -> Self {
        id.parse()
            .map_or_else(|_| Self::Text(id.to_owned()), Self::Number)
    }
}

/// A money amount: a decimal string in whole units (`"62.00"`), or a JSON number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawAmount {
    /// A JSON number.
    Number(serde_json::Number),
    /// A decimal string.
    Text(String),
}

/// The envelope of every response.
#[derive(Clone, Debug, Deserialize)]
pub struct Envelope<T> {
    /// Success flag. Not relied on: the HTTP status decides.
    #[serde(default)]
    pub code: Option<bool>,
    /// The payload.
    pub data: Option<T>,
    /// Total count, for collections.
    #[serde(default)]
    pub count: Option<u64>,
    /// Cursor paging information, for cursor-paged collections.
    #[serde(default)]
    pub page_info: Option<PageInfo>,
}

/// `page_info`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PageInfo {
    /// Whether a page follows.
    #[serde(default)]
    pub has_next_page: bool,
    /// Whether a page precedes.
    #[serde(default)]
    pub has_previous_page: bool,
    /// Cursor of the page's first record.
    #[serde(default)]
    pub start_cursor: Option<String>,
    /// Cursor of the page's last record: send it as `end_cursor` for the next page.
    #[serde(default)]
    pub end_cursor: Option<String>,
}

/// `data` of `POST /authenticates`.
#[derive(Clone, Deserialize)]
pub struct AuthData {
    /// The bearer token (a JWT).
    pub token: String,
}

impl std::fmt::Debug for AuthData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthData { .. }")
    }
}

/// `fee`.
#[derive(Clone, Debug, Deserialize)]
pub struct Price {
    /// Whole units (`"62.00"`).
    pub amount: RawAmount,
    /// ISO code (`USD`); USD when absent.
    #[serde(default)]
    pub currency: Option<String>,
}

/// `body_site`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BodySite {
    /// Tooth numbers.
    #[serde(default)]
    pub tooth: Vec<String>,
    /// Surface codes.
    #[serde(default)]
    pub surface: Option<String>,
}

/// A procedure of a plan.
#[derive(Clone, Debug, Deserialize)]
pub struct Procedure {
    /// Procedure id.
    pub id: RawId,
    /// CDT code.
    #[serde(default)]
    pub code: Option<String>,
    /// Name. Not read.
    #[serde(default)]
    pub name: Option<String>,
    /// `planned | scheduled | completed | inactive | referred`.
    #[serde(default)]
    pub status: Option<String>,
    /// Teeth and surface. Not read.
    #[serde(default)]
    pub body_site: Option<BodySite>,
    /// The fee.
    #[serde(default)]
    pub fee: Option<Price>,
    /// The provider.
    #[serde(default)]
    pub provider_id: Option<RawId>,
    /// The appointment it is booked in, if any.
    #[serde(default)]
    pub appointment_id: Option<RawId>,
    /// Start date (the appointment's day when booked).
    #[serde(default)]
    pub start_date: Option<String>,
    /// End date.
    #[serde(default)]
    pub end_date: Option<String>,
}

/// A treatment plan.
#[derive(Clone, Debug, Deserialize)]
pub struct TreatmentPlan {
    /// Plan id.
    pub id: RawId,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// The patient.
    #[serde(default)]
    pub patient_id: Option<RawId>,
    /// Status; null is possible.
    #[serde(default)]
    pub status: Option<String>,
    /// Last change, UTC.
    pub updated_at: String,
    /// Procedures.
    #[serde(default)]
    pub procedures: Vec<Procedure>,
}

/// `bio` of a patient: every field optional.
#[derive(Clone, Default, Deserialize)]
pub struct Bio {
    /// Date of birth.
    #[serde(default)]
    pub date_of_birth: Option<String>,
    /// Mobile phone.
    #[serde(default)]
    pub cell_phone_number: Option<String>,
    /// Main phone (may be a landline). Not used for texts.
    #[serde(default)]
    pub phone_number: Option<String>,
    /// Street line 1.
    #[serde(default)]
    pub address_line_1: Option<String>,
    /// Street line 2.
    #[serde(default)]
    pub address_line_2: Option<String>,
    /// Street, in systems that use one field.
    #[serde(default)]
    pub street_address: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// State.
    #[serde(default)]
    pub state: Option<String>,
    /// ZIP code.
    #[serde(default)]
    pub zip_code: Option<String>,
}

impl std::fmt::Debug for Bio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bio { .. }")
    }
}

/// A patient.
#[derive(Clone, Deserialize)]
pub struct Patient {
    /// Patient id.
    pub id: RawId,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Biographical data.
    #[serde(default)]
    pub bio: Option<Bio>,
    /// ISO 639-1.
    #[serde(default)]
    pub preferred_language: Option<String>,
}

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Query: a patient's name (`GET /patients?name=`).
pub const QUERY_NAME: &str = "name";
/// Query: a date of birth, yyyy-mm-dd (`GET /patients?date_of_birth=`).
pub const QUERY_DATE_OF_BIRTH: &str = "date_of_birth";
/// Query: leave out inactive patients.
pub const QUERY_INACTIVE: &str = "inactive";
/// Query: leave out non-patients (guarantors, contacts).
pub const QUERY_NON_PATIENT: &str = "non_patient";

/// Body of `POST /patients` (NX-spec v20240412): `provider.provider_id`, and `patient.first_name`,
/// `last_name`, `email`, `bio.date_of_birth`, `bio.phone_number` required;
/// `return_existing_if_match` answers a name and birth-date match with the existing patient (200)
/// instead of creating one (201).
pub fn new_patient_body(
    p: &crate::patients::NewPatient,
    provider_id: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "patient": {
            "first_name": p.first_name,
            "last_name": p.last_name,
            "email": p.email,
            "bio": {
                "date_of_birth": p.date_of_birth.format("%Y-%m-%d").to_string(),
                "phone_number": p.phone,
                "cell_phone_number": p.phone,
                "state": p.state,
            },
        },
        "return_existing_if_match": true,
    });
    if let Some(id) = provider_id {
        // NexHealth's ids are integers: sent as a number when the id is one.
        let id = id
            .trim()
            .parse::<u64>()
            .map_or_else(|_| serde_json::json!(id), |n| serde_json::json!(n));
        body["provider"] = serde_json::json!({ "provider_id": id });
    }
    body
}

/// What `POST /patients` answers in `data`: the patient under `user` (older API versions) or the
/// patient itself. Which one v20240412 sends is UNCONFIRMED, so both are read.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum CreatedPatient {
    /// `data.user`.
    Wrapped {
        /// The patient.
        user: Patient,
    },
    /// `data` is the patient.
    Bare(Patient),
}

impl std::fmt::Debug for CreatedPatient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CreatedPatient { .. }")
    }
}

/// Body of `POST /webhook_endpoints`.
#[derive(Clone, Debug, Serialize)]
pub struct NewWebhookEndpoint {
    /// Where deliveries go (HTTPS in production).
    pub target_url: String,
    /// Active from the start.
    pub active: bool,
}

/// A webhook endpoint.
#[derive(Clone, Deserialize)]
pub struct WebhookEndpoint {
    /// Endpoint id.
    pub id: RawId,
    /// Where deliveries go.
    pub target_url: String,
    /// The key deliveries are signed with.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Whether NexHealth still delivers to it (it deactivates after 48 h of failures).
    #[serde(default)]
    pub active: Option<bool>,
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /webhook_endpoints/{id}/webhook_subscriptions`.
#[derive(Clone, Debug, Serialize)]
pub struct NewWebhookSubscription {
    /// `TreatmentPlan`.
    pub resource_type: String,
    /// `treatment_plan_updated`.
    pub event: String,
    /// Active from the start.
    pub active: bool,
}

/// A webhook subscription.
#[derive(Clone, Debug, Deserialize)]
pub struct WebhookSubscription {
    /// Subscription id.
    pub id: RawId,
    /// Resource type.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// Event.
    #[serde(default)]
    pub event: Option<String>,
}

/// A webhook delivery. \[inferred\]
#[derive(Clone, Debug, Deserialize)]
pub struct WebhookDelivery {
    /// `TreatmentPlan`, `Payment`, `CommunicationLog`, ...
    #[serde(default)]
    pub resource_type: Option<String>,
    /// `treatment_plan_updated`, `payment_insertion.complete`, ...
    #[serde(alias = "event_name")]
    pub event: String,
    /// When the event happened.
    #[serde(default)]
    pub event_time: Option<String>,
    /// Delivery id, for deduplication.
    #[serde(default)]
    pub delivery_id: Option<RawId>,
    /// The resource (or an object wrapping it under its snake-case name). Only ids are read.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// Body of `POST /communication_logs`. \[inferred\] fields.
#[derive(Clone, Serialize)]
pub struct NewCommunicationLog {
    /// The patient.
    pub patient_id: RawId,
    /// The location.
    pub location_id: RawId,
    /// The note's text.
    pub note: String,
}

impl std::fmt::Debug for NewCommunicationLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCommunicationLog")
            .field("patient_id", &self.patient_id)
            .finish_non_exhaustive()
    }
}

/// A communication log entry. \[inferred\] fields.
#[derive(Clone, Deserialize)]
pub struct CommunicationLog {
    /// Entry id.
    #[serde(default)]
    pub id: Option<RawId>,
    /// The patient.
    #[serde(default)]
    pub patient_id: Option<RawId>,
    /// The note's text.
    #[serde(default)]
    pub note: Option<String>,
    /// The EHR's id once the write reached it; null while pending.
    #[serde(default)]
    pub foreign_id: Option<String>,
}

impl std::fmt::Debug for CommunicationLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommunicationLog")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /payments`: `{"payment": {...}}`. \[documented\]
#[derive(Clone, Debug, Serialize)]
pub struct NewPaymentBody {
    /// The payment.
    pub payment: NewPayment,
}

/// The payment in `POST /payments`. \[documented\]
#[derive(Clone, Serialize)]
pub struct NewPayment {
    /// The patient.
    pub patient_id: RawId,
    /// Decimal dollars as a JSON number: negative for a payment, positive for a refund.
    pub amount: serde_json::Number,
    /// ISO currency code.
    pub currency: String,
    /// Our id for the write (at most [`TRANSACTION_ID_MAX`] characters).
    pub transaction_id: String,
    /// When it was paid (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<String>,
    /// The note the EHR keeps with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl std::fmt::Debug for NewPayment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPayment")
            .field("patient_id", &self.patient_id)
            .field("transaction_id", &self.transaction_id)
            .finish_non_exhaustive()
    }
}

/// A ledger payment as `GET /payments` returns it. \[documented\]
#[derive(Clone, Debug, Deserialize)]
pub struct LedgerPayment {
    /// NexHealth's id.
    #[serde(default)]
    pub id: Option<RawId>,
    /// The patient.
    #[serde(default)]
    pub patient_id: Option<RawId>,
    /// `{amount, currency}` in whole units.
    #[serde(default)]
    pub payment_amount: Option<Price>,
    /// The transaction id it was posted with.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Set when the payment was deleted in the EHR.
    #[serde(default)]
    pub deleted_at: Option<String>,
}
