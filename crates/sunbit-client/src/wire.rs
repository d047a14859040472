//! PARTNER-GATED: modelled on public evidence; correct at partner onboarding.
//!
//! Every Sunbit path, header, field name and enum spelling lives in this module and nowhere else
//! in the crate. Sunbit's API is portal-gated; what is here comes from
//! `../shared/docs/INTEGRATIONS.md`, which cites api-evangelist/sunbit
//! (`asyncapi/sunbit-webhooks.yml` and `skills/*.md`, transcribed from docs.sunbit.com). Each item
//! says how sure we are:
//!
//! - **\[third-party\]**: from that transcription, not checked against Sunbit.
//! - **\[inferred\]**: our reading of it, or a shape we chose so the flow can work. Expect these
//!   to change at partner onboarding.
//!
//! The `sandbox` crate imitates Sunbit from these types, so keep them complete: every type here is
//! both `Serialize` and `Deserialize`, and routes are written as axum route patterns.
//!
//! # The flow
//!
//! 1. `PUT` [`ONLINE_LINK_PATH`] with a JSON **array** of one [`OnlineLinkRequest`] ->
//!    [`OnlineLinkResponse`] `{ "url": ... }` **\[third-party\]**. Headers: [`KEY_HEADER`] only;
//!    [`SECRET_HEADER`] is not required on this call. `referral` is our reference, echoed back in
//!    webhooks. Sunbit documents no idempotency for this call: a replay may mint another link.
//! 2. Sunbit posts prequalification events to our webhook, signed with [`SIGNATURE_HEADER`]
//!    (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`) **\[third-party\]**; envelope
//!    [`WebhookEnvelope`].
//! 3. Purchase status: `GET` [`EPAY_PATH`] with [`PurchaseQuery`] (`?purchaseId=` or
//!    `?transactionId=`) -> [`Purchase`] **\[third-party: path, query, status values; inferred:
//!    the other response fields, and that `transactionId` finds the purchase of a `referral`\]**.
//!    A `404` for a `transactionId` means no purchase exists yet **\[inferred\]**.
//! 4. Void: `PUT` [`CANCEL_PATH`] with [`CancelRequest`] -> [`CancelResponse`]
//!    **\[third-party\]**. Sunbit's guidance: read the purchase first, void only a `COMPLETED`
//!    one.
//!
//! # Errors
//!
//! `403` bad credentials, `404` unknown retailer/location, `422` online application missing or
//! disabled for the retailer, `500` **\[third-party\]**. No rate-limit headers are documented;
//! `429` with `Retry-After` is handled as anywhere else **\[inferred\]**.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use financing_core::{Currency, Money};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::ids::{PurchaseId, SunbitLocation};

/// The API key header, on every call **\[third-party\]**.
pub const KEY_HEADER: &str = "sunbit-key";
/// The API secret header: on purchase reads and voids, not on the online link **\[third-party\]**.
pub const SECRET_HEADER: &str = "sunbit-secret";
/// The webhook signature header: `t=<unix seconds>,v1=<hex>[,v1=<hex>...]` **\[third-party\]**.
pub const SIGNATURE_HEADER: &str = "Sunbit-Signature";
/// The timestamp key inside [`SIGNATURE_HEADER`].
pub const SIGNATURE_TIMESTAMP_KEY: &str = "t";
/// The signature-scheme key inside [`SIGNATURE_HEADER`]; the only valid scheme.
pub const SIGNATURE_V1_KEY: &str = "v1";

/// Prequalification link (`PUT`) **\[third-party\]**.
pub const ONLINE_LINK_PATH: &str = "/purchase/api/v1/online-link";
/// Purchase read (`GET`, with [`PurchaseQuery`]) **\[third-party\]**.
pub const EPAY_PATH: &str = "/epay/api/v1/epay";
/// Void (`PUT`) **\[third-party\]**.
pub const CANCEL_PATH: &str = "/epay/api/v1/epay/cancel/{purchaseId}";

/// How long a link stays valid: 7 days **\[third-party: help.shepherd.vet\]**.
pub const LINK_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// One prequalification-link request. The body of `PUT` [`ONLINE_LINK_PATH`] is a JSON array
/// holding one of these. PHI: redacted `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineLinkRequest {
    /// The merchant location.
    pub location: SunbitLocation,
    /// Our reference, echoed back in webhooks and usable as `transactionId`.
    pub referral: String,
    /// The patient's phone as given: only from the policy-allowed prefill. Required by Sunbit
    /// to text the link.
    #[serde(
        rename = "customerPhoneNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_phone_number: Option<String>,
    /// Prefill for the application, only where the compliance policy allows it.
    #[serde(
        rename = "customerDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_details: Option<CustomerDetails>,
    /// Whether Sunbit texts the link itself. Sunbit defaults it to `true`; we always send it.
    #[serde(rename = "sendSMS")]
    pub send_sms: bool,
}

impl fmt::Debug for OnlineLinkRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnlineLinkRequest")
            .field("location", &self.location)
            .field("referral", &self.referral)
            .field("prefilled", &self.customer_details.is_some())
            .field("send_sms", &self.send_sms)
            .finish_non_exhaustive()
    }
}

/// `customerDetails` **\[third-party: the object; inferred: its fields\]**. PHI: redacted `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerDetails {
    /// Given name.
    #[serde(rename = "firstName")]
    pub first_name: String,
    /// Family name.
    #[serde(rename = "lastName")]
    pub last_name: String,
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Street lines, joined with `", "`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Two-letter state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// ZIP.
    #[serde(rename = "zipCode", default, skip_serializing_if = "Option::is_none")]
    pub zip_code: Option<String>,
}

impl fmt::Debug for CustomerDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerDetails").finish_non_exhaustive()
    }
}

/// Response of `PUT` [`ONLINE_LINK_PATH`] **\[third-party\]**.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineLinkResponse {
    /// The prequalification link for the patient.
    pub url: Url,
}

/// Query of `GET` [`EPAY_PATH`]: exactly one of the two **\[third-party\]**.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseQuery {
    /// Sunbit's purchase id.
    #[serde(
        rename = "purchaseId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub purchase_id: Option<PurchaseId>,
    /// Our transaction id (the `referral` we sent).
    #[serde(
        rename = "transactionId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_id: Option<String>,
}

/// A purchase's status **\[third-party\]**. An unknown value never fails decoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PurchaseStatus {
    /// `COMPLETED`.
    Completed,
    /// `INCOMPLETE`.
    Incomplete,
    /// `VOIDED`.
    Voided,
    /// A value this version does not know, kept verbatim.
    Unknown(String),
}

impl PurchaseStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Completed => "COMPLETED",
            Self::Incomplete => "INCOMPLETE",
            Self::Voided => "VOIDED",
            Self::Unknown(s) => s,
        }
    }
}

impl FromStr for PurchaseStatus {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "COMPLETED" => Self::Completed,
            "INCOMPLETE" => Self::Incomplete,
            "VOIDED" => Self::Voided,
            other => Self::Unknown(other.to_owned()),
        })
    }
}

impl fmt::Display for PurchaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PurchaseStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PurchaseStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let Ok(status) = s.parse();
        Ok(status)
    }
}

/// Response of `GET` [`EPAY_PATH`] **\[third-party: `status`; inferred: the rest, named as in the
/// prequalification webhook\]**.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    /// Sunbit's purchase id.
    #[serde(
        rename = "purchaseId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub purchase_id: Option<PurchaseId>,
    /// The status.
    pub status: PurchaseStatus,
    /// The most the patient was approved for.
    #[serde(
        rename = "approvalAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub approval_amount: Option<Amount>,
    /// The purchase amount the patient entered.
    #[serde(
        rename = "purchaseAmountEntered",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub purchase_amount_entered: Option<Amount>,
    /// The purchase's total, once there is a purchase.
    #[serde(
        rename = "purchaseAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub purchase_amount: Option<Amount>,
    /// When the offer lapses.
    #[serde(
        rename = "validUntil",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_until: Option<ValidUntil>,
    /// Our reference, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<String>,
    /// The loan's term in months, once the patient chose a plan **\[inferred\]**.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u16>,
    /// The loan's APR, a decimal percentage as text (`"9.99"`) **\[inferred\]**.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apr: Option<String>,
}

/// Body of `PUT` [`CANCEL_PATH`] **\[third-party\]**.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    /// Our transaction id (the `referral` we sent).
    #[serde(rename = "transactionId")]
    pub transaction_id: String,
    /// The merchant location.
    pub location: SunbitLocation,
}

/// Response of `PUT` [`CANCEL_PATH`] **\[third-party\]**.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResponse {
    /// The purchase.
    #[serde(rename = "purchaseId")]
    pub purchase_id: PurchaseId,
    /// `VOIDED`.
    pub status: PurchaseStatus,
}

/// A webhook's body: the same two-field envelope for every event **\[third-party\]**. There is no
/// event id; deduplicate on (event, purchase id, signature timestamp).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEnvelope {
    /// The event.
    #[serde(rename = "eventType")]
    pub event_type: EventType,
    /// Its fields.
    #[serde(default)]
    pub payload: WebhookPayload,
}

/// The fields Chairside reads from a webhook payload **\[third-party\]**. Others (representative
/// names and emails, fees, dates) are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// Sunbit's purchase id.
    #[serde(
        rename = "purchaseId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub purchase_id: Option<PurchaseId>,
    /// The merchant location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<SunbitLocation>,
    /// The most the patient was approved for (prequalification events; a string on the wire).
    #[serde(
        rename = "approvalAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub approval_amount: Option<Amount>,
    /// The amount the patient entered (prequalification events).
    #[serde(
        rename = "purchaseAmountEntered",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub purchase_amount_entered: Option<Amount>,
    /// The purchase total (text-to-pay, checkout, void and refund events; string or number).
    #[serde(
        rename = "purchaseAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub purchase_amount: Option<Amount>,
    /// What remains after a void (0) or refund.
    #[serde(
        rename = "netPurchaseAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub net_purchase_amount: Option<Amount>,
    /// Our reference, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<String>,
    /// Offer expiry, `YYYY-MM-DD`.
    #[serde(
        rename = "validUntil",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_until: Option<ValidUntil>,
}

/// A webhook event type **\[third-party\]**. An unknown value never fails decoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// `PREQUAL_COMPLETED`.
    PrequalCompleted,
    /// `PREQUAL_APPROVED`.
    PrequalApproved,
    /// `PREQUAL_FAILED`.
    PrequalFailed,
    /// `PREQUAL_ABORTED`.
    PrequalAborted,
    /// `TEXT_TO_PAY_*` (`COMPLETED`, `FAILED`, `ABORTED`): the full name.
    TextToPay(String),
    /// `CHECKOUT_SDK_*`: the full name.
    CheckoutSdk(String),
    /// `MERCHANT_*` onboarding events: the full name.
    Merchant(String),
    /// `TRANSACTION_VOIDED`.
    TransactionVoided,
    /// `TRANSACTION_REFUNDED`.
    TransactionRefunded,
    /// A type this version does not know, kept verbatim.
    Unknown(String),
}

impl EventType {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::PrequalCompleted => "PREQUAL_COMPLETED",
            Self::PrequalApproved => "PREQUAL_APPROVED",
            Self::PrequalFailed => "PREQUAL_FAILED",
            Self::PrequalAborted => "PREQUAL_ABORTED",
            Self::TransactionVoided => "TRANSACTION_VOIDED",
            Self::TransactionRefunded => "TRANSACTION_REFUNDED",
            Self::TextToPay(s) | Self::CheckoutSdk(s) | Self::Merchant(s) | Self::Unknown(s) => s,
        }
    }
}

impl FromStr for EventType {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PREQUAL_COMPLETED" => Self::PrequalCompleted,
            "PREQUAL_APPROVED" => Self::PrequalApproved,
            "PREQUAL_FAILED" => Self::PrequalFailed,
            "PREQUAL_ABORTED" => Self::PrequalAborted,
            "TRANSACTION_VOIDED" => Self::TransactionVoided,
            "TRANSACTION_REFUNDED" => Self::TransactionRefunded,
            other if other.starts_with("TEXT_TO_PAY_") => Self::TextToPay(other.to_owned()),
            other if other.starts_with("CHECKOUT_SDK_") => Self::CheckoutSdk(other.to_owned()),
            other if other.starts_with("MERCHANT_") => Self::Merchant(other.to_owned()),
            other => Self::Unknown(other.to_owned()),
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let Ok(event) = s.parse();
        Ok(event)
    }
}

/// `validUntil`: a date, `YYYY-MM-DD` **\[third-party\]**, kept as sent. An offer valid until a
/// date is read as valid through the end of that day, UTC **\[inferred\]**; an RFC 3339 timestamp
/// is accepted too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValidUntil(pub String);

impl ValidUntil {
    /// The last instant the offer is valid, or `None` when the text is neither a date nor an
    /// RFC 3339 timestamp.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        let t = self.0.trim();
        if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            let end = NaiveTime::from_hms_opt(23, 59, 59)?;
            return Some(date.and_time(end).and_utc());
        }
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// A US-dollar amount on the wire **\[third-party: strings like `"1000.0"`, sometimes numbers\]**.
///
/// Written as a decimal string (`"1234.50"`) so no float is ever involved. Read from a string or a
/// JSON number: a number's shortest decimal form is parsed as text (`120.0` -> `"120"` ->
/// 12 000 cents), never computed with.
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
                // never uses an exponent.
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_strings_and_numbers() {
        let a: Amount = serde_json::from_str("\"1000.0\"").unwrap();
        assert_eq!(a.0, Money::usd(100_000));
        let b: Amount = serde_json::from_str("120.0").unwrap();
        assert_eq!(b.0, Money::usd(12_000));
        let c: Amount = serde_json::from_str("5").unwrap();
        assert_eq!(c.0, Money::usd(500));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"1000.00\"");
    }

    #[test]
    fn event_types_group_families_and_keep_unknown_values() {
        let e: EventType = serde_json::from_str("\"TEXT_TO_PAY_FAILED\"").unwrap();
        assert_eq!(e, EventType::TextToPay("TEXT_TO_PAY_FAILED".into()));
        let e: EventType = serde_json::from_str("\"PREQUAL_APPROVED\"").unwrap();
        assert_eq!(e, EventType::PrequalApproved);
        let e: EventType = serde_json::from_str("\"SOMETHING_NEW\"").unwrap();
        assert_eq!(e.as_str(), "SOMETHING_NEW");
        let s: PurchaseStatus = serde_json::from_str("\"PENDING_REVIEW\"").unwrap();
        assert_eq!(s, PurchaseStatus::Unknown("PENDING_REVIEW".into()));
    }

    #[test]
    fn valid_until_is_the_end_of_the_day_utc() {
        let v = ValidUntil("2030-09-01".into());
        assert_eq!(v.until().unwrap().to_rfc3339(), "2030-09-01T23:59:59+00:00");
        assert!(ValidUntil("soon".into()).until().is_none());
    }

    #[test]
    fn online_link_debug_hides_the_patient() {
        let r = OnlineLinkRequest {
            location: SunbitLocation::new("loc"),
            referral: "ref".into(),
            customer_phone_number: Some("+15555550100".into()),
            customer_details: Some(CustomerDetails {
                first_name: "Marisol".into(),
                ..CustomerDetails::default()
            }),
            send_sms: false,
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("5555550100") && !shown.contains("Marisol"));
    }
}
