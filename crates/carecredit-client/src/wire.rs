//! PARTNER-GATED: modelled on public evidence; correct at partner onboarding.
//!
//! Every CareCredit path, field name and status spelling lives in this module and nowhere else in
//! the crate. CareCredit (Synchrony) publishes no self-serve API; what is here comes from
//! `../shared/docs/INTEGRATIONS.md`, which cites Open Dental's open-source bridge
//! (`OpenDental/Logic/CareCreditL.cs`, `OpenDentBusiness/TableTypes/CareCreditWebResponse.cs` and
//! the symbols of `Bridges.dll`) and Open Dental's CareCredit manual pages. Each item says how sure
//! we are:
//!
//! - **\[third-party\]**: seen in public third-party code or docs, not checked against CareCredit.
//! - **\[inferred\]**: our reading of that evidence, or a shape we chose so the flow can work
//!   (paths, envelopes). Expect these to change at partner onboarding.
//!
//! The `sandbox` crate imitates CareCredit from these types, so keep them complete: every type
//! here is both `Serialize` and `Deserialize`, and routes are written as axum route patterns.
//!
//! # The flow
//!
//! 1. `POST` [`TOKEN_PATH`] with [`TokenRequest`] (OAuth2 client credentials) -> [`TokenResponse`].
//! 2. Optional cardholder lookup: `POST` [`CARDHOLDER_LOOKUP_PATH`] with [`CardholderLookupRequest`]
//!    -> [`CardholderLookupResponse`]. A `POST` only so the patient's name and phone stay out of
//!    URLs and access logs; it changes nothing on the server.
//! 3. Find an existing session for our partner transaction id: `GET` [`PREFILL_SESSIONS_PATH`]
//!    with [`PartnerQuery`] -> `200` [`PrefillSession`], or `404` when none exists.
//! 4. Otherwise `POST` [`PREFILL_SESSIONS_PATH`] with [`PrefillSessionRequest`] -> `201`
//!    [`PrefillSession`]. A `POST` whose `partnerTransactionID` already has a session returns that
//!    session with `200` instead of opening a second one **\[inferred\]**: the stand-in honours it,
//!    and the client checks with step 3 before creating anyway.
//! 5. The patient completes the hosted page at [`PrefillSession::page_url`] (a portal session lasts
//!    30 minutes, [`SESSION_LIFETIME`]).
//! 6. Pull back the outcome: `GET` [`PULLBACK_PATH`] with [`PartnerQuery`] -> [`Pullback`].
//!
//! Every API call carries the partner code, our partner transaction id and the location's merchant
//! number, and a `Bearer` token in `Authorization`.
//!
//! # Errors
//!
//! `400` invalid input, `401` invalid token, `404`, `422` with the text [`TRAINING_SUSPENDED`]
//! (the merchant must finish CareCredit training), `500` **\[third-party\]**. `429` with
//! `Retry-After` and `503` are assumed to behave as anywhere else **\[inferred\]**.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use financing_core::{Currency, Money};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::ids::{MerchantNumber, PartnerCode, SessionId};

/// OAuth2 token endpoint, relative to the token base URL **\[inferred\]**.
pub const TOKEN_PATH: &str = "/oauth2/v1/token";
/// Prefill sessions: `POST` creates, `GET` with [`PartnerQuery`] finds **\[inferred\]**.
pub const PREFILL_SESSIONS_PATH: &str = "/v1/prefill/sessions";
/// Pullback of one session (`GET`); `{sessionId}` is [`PrefillSession::session_id`] **\[inferred\]**.
pub const PULLBACK_PATH: &str = "/v1/prefill/sessions/{sessionId}/pullback";
/// Existing-cardholder lookup (`POST`) **\[inferred\]**.
pub const CARDHOLDER_LOOKUP_PATH: &str = "/v1/cardholders/lookup";

/// The OAuth2 grant we use **\[third-party: field `grantType`\]**.
pub const GRANT_TYPE_CLIENT_CREDENTIALS: &str = "client_credentials";
/// The scope asked for by default **\[inferred\]**.
pub const DEFAULT_SCOPE: &str = "prefill pullback lookup";
/// The text of a `422` whose merchant is suspended pending training **\[third-party\]**.
pub const TRAINING_SUSPENDED: &str = "Training Suspended";
/// How long a portal session lasts **\[documented: opendental.com/manual/carecreditpayment.html\]**.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// CareCredit Provider Services, the number a practice calls for an authorization
/// (`CallForAuth`) or about a duplicate QuickScreen (`DupQS`) **\[third-party: office SOPs cited
/// in INTEGRATIONS.md §8\]**.
pub const PROVIDER_SERVICES_PHONE: &str = "800-859-9975";

/// Query-parameter names for `GET` calls, in [`PartnerQuery`] order.
pub const QUERY_PARAMS: [&str; 3] = ["partnerCode", "partnerTransactionID", "merchantNumber"];

/// The three identifiers every call carries **\[third-party: field names\]**. Sent as the query of
/// `GET` calls and flattened into `POST` bodies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerQuery {
    /// The technology partner's code.
    #[serde(rename = "partnerCode")]
    pub partner_code: PartnerCode,
    /// Our reference for the application (`FinancingRequest::reference`): the idempotency key.
    #[serde(rename = "partnerTransactionID")]
    pub partner_transaction_id: String,
    /// The practice location's merchant number.
    #[serde(rename = "merchantNumber")]
    pub merchant_number: MerchantNumber,
}

/// OAuth2 client-credentials request body, JSON **\[third-party: field names; inferred: JSON\]**.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The partner's client id.
    pub client_id: String,
    /// The partner's client secret.
    #[serde(serialize_with = "expose")]
    pub client_secret: SecretString,
    /// Always [`GRANT_TYPE_CLIENT_CREDENTIALS`].
    #[serde(rename = "grantType")]
    pub grant_type: String,
    /// Space-separated scopes.
    pub scope: String,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("client_id", &self.client_id)
            .field("grant_type", &self.grant_type)
            .finish_non_exhaustive()
    }
}

/// OAuth2 token response (RFC 6749 §5.1 names) **\[inferred\]**.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    #[serde(serialize_with = "expose")]
    pub access_token: SecretString,
    /// `Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The hosted page a session lands on **\[third-party: the codes\]**.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LandingPage {
    /// `AP`: the credit application (the default: the patient applies on CareCredit's page).
    #[default]
    Apply,
    /// `QS`: QuickScreen, a soft-pull pre-approval.
    QuickScreen,
    /// `LU`: account lookup.
    Lookup,
    /// `PR`: purchase.
    Purchase,
    /// `RF`: refund.
    Refund,
    /// `HM`: the merchant's admin home.
    Home,
    /// A code this version does not know.
    Unknown(String),
}

impl LandingPage {
    /// The wire code (`AP`, `QS`, ...).
    pub fn code(&self) -> &str {
        match self {
            Self::Apply => "AP",
            Self::QuickScreen => "QS",
            Self::Lookup => "LU",
            Self::Purchase => "PR",
            Self::Refund => "RF",
            Self::Home => "HM",
            Self::Unknown(s) => s,
        }
    }

    fn from_code(code: &str) -> Self {
        match code {
            "AP" => Self::Apply,
            "QS" => Self::QuickScreen,
            "LU" => Self::Lookup,
            "PR" => Self::Purchase,
            "RF" => Self::Refund,
            "HM" => Self::Home,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

impl Serialize for LandingPage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for LandingPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from_code(&s))
    }
}

/// Body of `POST` [`PREFILL_SESSIONS_PATH`]. PHI: redacted `Debug`.
///
/// Input names `purchaseAmt` and the landing-page codes are **\[third-party\]**; the applicant and
/// `cipher` envelopes are **\[inferred\]** from the `Bridges.dll` symbols.
#[derive(Clone, Serialize, Deserialize)]
pub struct PrefillSessionRequest {
    /// Partner code, partner transaction id, merchant number.
    #[serde(flatten)]
    pub partner: PartnerQuery,
    /// Which hosted page the patient lands on.
    #[serde(rename = "landingPage")]
    pub landing_page: LandingPage,
    /// The amount to finance.
    #[serde(rename = "purchaseAmt")]
    pub purchase_amount: Amount,
    /// Where the hosted page sends the patient afterwards.
    #[serde(rename = "returnUrl", default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<Url>,
    /// Prefill: present only where the compliance policy allows it (never in CA or NY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicant: Option<PrefillApplicant>,
    /// Field-level encrypted identity (`cipher.ssn`, `cipher.dateOfBirth`): present only when the
    /// client is configured to allow it (off by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<Cipher>,
}

impl fmt::Debug for PrefillSessionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefillSessionRequest")
            .field("partner", &self.partner)
            .field("landing_page", &self.landing_page)
            .field("purchase_amount", &self.purchase_amount)
            .field("prefilled", &self.applicant.is_some())
            .finish_non_exhaustive()
    }
}

/// The patient's identity and contact for prefill **\[inferred\]**. PHI: redacted `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefillApplicant {
    /// Given name.
    #[serde(rename = "firstName")]
    pub first_name: String,
    /// Family name.
    #[serde(rename = "lastName")]
    pub last_name: String,
    /// First street line.
    #[serde(rename = "address1", default, skip_serializing_if = "Option::is_none")]
    pub address1: Option<String>,
    /// Second street line.
    #[serde(rename = "address2", default, skip_serializing_if = "Option::is_none")]
    pub address2: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Two-letter state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// ZIP.
    #[serde(rename = "zipCode", default, skip_serializing_if = "Option::is_none")]
    pub zip_code: Option<String>,
    /// Mobile phone as given (E.164).
    #[serde(
        rename = "mobilePhone",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mobile_phone: Option<String>,
    /// Email.
    #[serde(
        rename = "emailAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub email_address: Option<String>,
}

impl fmt::Debug for PrefillApplicant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefillApplicant").finish_non_exhaustive()
    }
}

/// Field-level encrypted identity **\[third-party: `cipher.ssn`, `cipher.dateOfBirth`\]**.
///
/// Both fields are secrets: `SecretString` in memory, never logged, exposed only when the body is
/// serialized. The encryption scheme CareCredit expects is not public; it is settled at partner
/// onboarding (COMPLIANCE.md §8).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Cipher {
    /// Social Security number.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub ssn: Option<SecretString>,
    /// Date of birth, `YYYY-MM-DD`.
    #[serde(
        rename = "dateOfBirth",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub date_of_birth: Option<SecretString>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher").finish_non_exhaustive()
    }
}

/// A prefill session: the hosted page and its id **\[third-party: `sessionId`, page URL;
/// inferred: the names `pageUrl` and `expiresAt`\]**.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefillSession {
    /// The session id; keys the pullback.
    #[serde(rename = "sessionId")]
    pub session_id: SessionId,
    /// The hosted page to send the patient to.
    #[serde(rename = "pageUrl")]
    pub page_url: Url,
    /// Our partner transaction id, echoed.
    #[serde(
        rename = "partnerTransactionID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub partner_transaction_id: Option<String>,
    /// When the page stops working, when the server says.
    #[serde(rename = "expiresAt", default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A pullback status **\[third-party: `CareCreditWebResponse.cs`\]**. An unknown value never fails
/// decoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PullbackStatus {
    /// `Created`: the session exists; the patient has not finished.
    Created,
    /// `Pending`: a decision is under review (pending results expire after 24 h).
    Pending,
    /// `Expired`.
    Expired,
    /// `Completed`.
    Completed,
    /// `PreApproved` (QuickScreen).
    PreApproved,
    /// `Cancelled`.
    Cancelled,
    /// `Declined`: "Unable to Pre-Approve – Refer Patient to Credit Application".
    Declined,
    /// `CallForAuth`: the practice must call CareCredit for authorization.
    CallForAuth,
    /// `DupQS`: a duplicate QuickScreen.
    DupQs,
    /// `AccountFound`: an existing cardholder ("Cardholder").
    AccountFound,
    /// `AccountNotFoundQS`: "Account Not Found – Refer Patient to Credit Application". The
    /// spelling `AccountNotFound` decodes here too.
    AccountNotFoundQs,
    /// `BatchError`.
    BatchError,
    /// `ExpiredBatch`.
    ExpiredBatch,
    /// A status this version does not know, kept verbatim.
    Unknown(String),
}

impl PullbackStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Created => "Created",
            Self::Pending => "Pending",
            Self::Expired => "Expired",
            Self::Completed => "Completed",
            Self::PreApproved => "PreApproved",
            Self::Cancelled => "Cancelled",
            Self::Declined => "Declined",
            Self::CallForAuth => "CallForAuth",
            Self::DupQs => "DupQS",
            Self::AccountFound => "AccountFound",
            Self::AccountNotFoundQs => "AccountNotFoundQS",
            Self::BatchError => "BatchError",
            Self::ExpiredBatch => "ExpiredBatch",
            Self::Unknown(s) => s,
        }
    }
}

impl FromStr for PullbackStatus {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "Created" => Self::Created,
            "Pending" => Self::Pending,
            "Expired" => Self::Expired,
            "Completed" => Self::Completed,
            "PreApproved" => Self::PreApproved,
            "Cancelled" => Self::Cancelled,
            "Declined" => Self::Declined,
            "CallForAuth" => Self::CallForAuth,
            "DupQS" => Self::DupQs,
            "AccountFound" => Self::AccountFound,
            "AccountNotFoundQS" | "AccountNotFound" => Self::AccountNotFoundQs,
            "BatchError" => Self::BatchError,
            "ExpiredBatch" => Self::ExpiredBatch,
            other => Self::Unknown(other.to_owned()),
        })
    }
}

impl fmt::Display for PullbackStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PullbackStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PullbackStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let Ok(status) = s.parse();
        Ok(status)
    }
}

/// The outcome of a session, from `GET` [`PULLBACK_PATH`] **\[third-party: the object and field
/// names; inferred: the envelope with `sessionId` and `status`\]**.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pullback {
    /// The session.
    #[serde(rename = "sessionId")]
    pub session_id: SessionId,
    /// Our partner transaction id, echoed.
    #[serde(
        rename = "partnerTransactionID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub partner_transaction_id: Option<String>,
    /// The status.
    pub status: PullbackStatus,
    /// The credit application's result.
    #[serde(
        rename = "applicationDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub application_details: Option<ApplicationDetails>,
    /// The QuickScreen result.
    #[serde(
        rename = "quickScreenTransactionDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub quick_screen: Option<QuickScreenDetails>,
    /// The lookup result.
    #[serde(
        rename = "lookupDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub lookup_details: Option<LookupDetails>,
    /// A purchase made in the session.
    #[serde(
        rename = "transactionDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_details: Option<TransactionDetails>,
    /// Credit available on the account.
    #[serde(
        rename = "availableCredit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub available_credit: Option<Amount>,
}

/// `applicationDetails` **\[third-party\]**.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationDetails {
    /// The application's id.
    #[serde(
        rename = "applicationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub application_id: Option<String>,
    /// When it was entered, as CareCredit writes it.
    #[serde(
        rename = "appEntryDate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub app_entry_date: Option<String>,
    /// CareCredit's response code.
    #[serde(
        rename = "appResponseCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub app_response_code: Option<String>,
    /// The approved credit line.
    #[serde(
        rename = "creditLine",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub credit_line: Option<Amount>,
    /// The promotion the account was approved with, as CareCredit words it (`No interest if
    /// paid in full within 12 months`) **\[inferred: `promoCode` is a documented purchase
    /// input; the description, term and APR fields are our reading\]**.
    #[serde(
        rename = "promoDescription",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub promo_description: Option<String>,
    /// The promotion's code **\[third-party: a purchase input in Open Dental's bridge\]**.
    #[serde(rename = "promoCode", default, skip_serializing_if = "Option::is_none")]
    pub promo_code: Option<String>,
    /// The promotion's term in months **\[inferred\]**.
    #[serde(
        rename = "promoTermMonths",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub promo_term_months: Option<u16>,
    /// The account's APR, a decimal percentage as text (`"32.99"`) **\[inferred\]**.
    #[serde(rename = "apr", default, skip_serializing_if = "Option::is_none")]
    pub apr: Option<String>,
}

/// `quickScreenTransactionDetails` **\[third-party\]**.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickScreenDetails {
    /// Whether the patient was pre-approved.
    #[serde(
        rename = "preApproved",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pre_approved: Option<bool>,
    /// The pre-approved amount.
    #[serde(
        rename = "preApprovalAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pre_approval_amount: Option<Amount>,
}

/// `lookupDetails` **\[third-party: the object; inferred: its field\]**. `Debug` is hand-written:
/// the account token stands in for the cardholder's account and is never printed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupDetails {
    /// An opaque token for the account (never the full account number).
    #[serde(
        rename = "accountToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub account_token: Option<String>,
}

impl std::fmt::Debug for LookupDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupDetails")
            .field("has_account_token", &self.account_token.is_some())
            .finish()
    }
}

/// `transactionDetails` **\[third-party\]**.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionDetails {
    /// The transaction's id.
    #[serde(
        rename = "transactionID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_id: Option<String>,
    /// Purchase, refund, ...
    #[serde(
        rename = "transactionType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_type: Option<String>,
    /// The amount charged.
    #[serde(
        rename = "transactionAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_amount: Option<Amount>,
    /// The transaction's status, verbatim.
    #[serde(
        rename = "transactionStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_status: Option<String>,
    /// The authorization code.
    #[serde(rename = "authCode", default, skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<String>,
    /// The merchant fee.
    #[serde(
        rename = "merchantFee",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub merchant_fee: Option<Amount>,
}

/// Body of `POST` [`CARDHOLDER_LOOKUP_PATH`]: name plus phone and/or ZIP **\[documented: lookup
/// by name + phone; inferred: the shape\]**. PHI: redacted `Debug`.
#[derive(Clone, Serialize, Deserialize)]
pub struct CardholderLookupRequest {
    /// Partner code, partner transaction id, merchant number.
    #[serde(flatten)]
    pub partner: PartnerQuery,
    /// Who to look for.
    #[serde(rename = "lookupDetails")]
    pub criteria: LookupCriteria,
}

impl fmt::Debug for CardholderLookupRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardholderLookupRequest")
            .field("partner", &self.partner)
            .finish_non_exhaustive()
    }
}

/// Who a cardholder lookup looks for **\[inferred\]**. PHI: redacted `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupCriteria {
    /// Given name.
    #[serde(rename = "firstName")]
    pub first_name: String,
    /// Family name.
    #[serde(rename = "lastName")]
    pub last_name: String,
    /// Phone as given (E.164).
    #[serde(
        rename = "phoneNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub phone_number: Option<String>,
    /// ZIP.
    #[serde(rename = "zipCode", default, skip_serializing_if = "Option::is_none")]
    pub zip_code: Option<String>,
}

impl fmt::Debug for LookupCriteria {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupCriteria").finish_non_exhaustive()
    }
}

/// Result of a cardholder lookup **\[inferred\]**: `status` is [`PullbackStatus::AccountFound`] or
/// [`PullbackStatus::AccountNotFoundQs`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardholderLookupResponse {
    /// Found or not.
    pub status: PullbackStatus,
    /// Credit available on the account, when found.
    #[serde(
        rename = "availableCredit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub available_credit: Option<Amount>,
    /// The account's opaque token, when found.
    #[serde(
        rename = "lookupDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub lookup_details: Option<LookupDetails>,
}

/// A US-dollar amount on the wire **\[inferred\]**.
///
/// Written as a decimal string (`"1234.50"`) so no float is ever involved. Read from a string or a
/// JSON number: a number's shortest decimal form is parsed as text (`1234.5` -> `"1234.5"` ->
/// 123 450 cents), never computed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount(pub Money);

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_decimal_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative decimal amount as a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                Money::parse(v, Currency::Usd)
                    .map(Amount)
                    .map_err(|_| E::custom("not a non-negative decimal amount"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Amount, E> {
                // `Display` for f64 is the shortest text that reads back as the same number and
                // never uses an exponent, so "1234.56" stays "1234.56".
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    // The one place a credential or an identity secret leaves its `SecretString`: the request
    // body being written.
    s.serialize_str(secret.expose_secret())
}

fn expose_opt<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => expose(v, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_details_debug_never_prints_the_account_token() {
        // Arrange
        let details = LookupDetails {
            account_token: Some("acct-tok-SECRET-0042".into()),
        };
        let response = CardholderLookupResponse {
            status: PullbackStatus::AccountFound,
            available_credit: None,
            lookup_details: Some(details.clone()),
        };
        // Act
        let printed = format!("{details:?} {response:?}");
        // Assert
        assert!(!printed.contains("acct-tok-SECRET-0042"), "{printed}");
        assert!(printed.contains("has_account_token: true"), "{printed}");
    }

    #[test]
    fn amounts_read_strings_and_numbers_and_write_strings() {
        let a: Amount = serde_json::from_str("\"1234.50\"").unwrap();
        assert_eq!(a.0, Money::usd(123_450));
        let b: Amount = serde_json::from_str("1234.56").unwrap();
        assert_eq!(b.0, Money::usd(123_456));
        let c: Amount = serde_json::from_str("800").unwrap();
        assert_eq!(c.0, Money::usd(80_000));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"1234.50\"");
        assert!(serde_json::from_str::<Amount>("\"-5\"").is_err());
        assert!(serde_json::from_str::<Amount>("\"1.234\"").is_err());
    }

    #[test]
    fn unknown_statuses_decode_and_round_trip() {
        let s: PullbackStatus = serde_json::from_str("\"SomethingNew\"").unwrap();
        assert_eq!(s, PullbackStatus::Unknown("SomethingNew".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"SomethingNew\"");
        let s: PullbackStatus = serde_json::from_str("\"AccountNotFound\"").unwrap();
        assert_eq!(s, PullbackStatus::AccountNotFoundQs);
        let s: PullbackStatus = serde_json::from_str("\"DupQS\"").unwrap();
        assert_eq!(s.as_str(), "DupQS");
    }

    #[test]
    fn cipher_and_token_request_debug_hide_secrets() {
        let c = Cipher {
            ssn: Some("000-00-0000".into()),
            date_of_birth: Some("1970-01-01".into()),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("000-00") && !shown.contains("1970"));
        let t = TokenRequest {
            client_id: "cid".into(),
            client_secret: "s3cret".into(),
            grant_type: GRANT_TYPE_CLIENT_CREDENTIALS.into(),
            scope: DEFAULT_SCOPE.into(),
        };
        assert!(!format!("{t:?}").contains("s3cret"));
        // The body, and only the body, carries the secret.
        assert!(serde_json::to_string(&t).unwrap().contains("s3cret"));
    }
}
