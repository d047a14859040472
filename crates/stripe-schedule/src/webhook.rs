//! Webhooks: signature verification (several `v1` signatures, several secrets) and typed events.
//!
//! Verify first, on the raw body bytes, and only then parse:
//!
//! 1. Split `Stripe-Signature` on `,` and each part on its first `=`; keep `t` and every `v1`
//!    (ignore `v0` and anything else).
//! 2. For each secret, HMAC-SHA256 over `t + "." + body`.
//! 3. Accept when any result equals any `v1`, compared in constant time.
//! 4. Reject when `|now - t|` exceeds the tolerance (300 s by default; zero is refused, since it
//!    would disable the check).
//!
//! A rolled secret stays valid for up to 24 hours and Stripe then sends one `v1` per active
//! secret, hence the list of secrets.

use std::time::Duration;

use chrono::{DateTime, Utc};
use connector_transport::{DecodeError, decode_json, decode_value};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::charges::{Charge, Dispute};
use crate::checkout::CheckoutSession;
use crate::ids::EventId;
use crate::invoices::Invoice;
use crate::payment_intents::PaymentIntent;
use crate::schedules::{Subscription, SubscriptionSchedule};

/// Stripe's default tolerance between the signature's `t` and now.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a webhook was rejected. Every case is `Permanent` for the delivery at hand: answer 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No `Stripe-Signature` header, or an empty one.
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    /// The header has no parsable `t`, or a part without `=`.
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    /// The header has no `v1` signature.
    #[error("no v1 signature in Stripe-Signature header")]
    NoSignature,
    /// No signature matches any secret: tampered body, wrong secret, or forged.
    #[error("webhook signature does not match")]
    Mismatch,
    /// The signature is valid but its timestamp is outside the tolerance (a replay).
    #[error("webhook timestamp outside the tolerance ({age_secs} s away)")]
    Stale {
        /// Seconds between `t` and now.
        age_secs: u64,
    },
    /// No secrets were configured.
    #[error("no webhook secrets configured")]
    NoSecrets,
    /// A tolerance of zero was asked for; it would disable the replay check.
    #[error("a tolerance of zero is not allowed")]
    ZeroTolerance,
    /// The verified body is not an event we can read.
    #[error("undecodable event: {0}")]
    Decode(#[source] DecodeError),
}

impl financing_core::Classify for WebhookError {
    fn kind(&self) -> financing_core::ErrorKind {
        // A bad delivery does not get better by itself; Stripe re-sends with a new signature.
        financing_core::ErrorKind::Permanent
    }
}

/// Verifies a webhook with [`DEFAULT_TOLERANCE`]. See [`verify_with_tolerance`].
///
/// # Errors
/// A [`WebhookError`] saying why the delivery must be rejected.
pub fn verify(
    payload: &[u8],
    signature_header: Option<&str>,
    secrets: &[SecretString],
    now: DateTime<Utc>,
) -> Result<(), WebhookError> {
    verify_with_tolerance(payload, signature_header, secrets, now, DEFAULT_TOLERANCE)
}

/// Verifies the raw `payload` against the `Stripe-Signature` header, accepting any `v1` made
/// with any of `secrets`, and a timestamp within `tolerance` of `now`. Call it before parsing.
///
/// # Errors
/// [`WebhookError::ZeroTolerance`], [`WebhookError::NoSecrets`], [`WebhookError::MissingHeader`],
/// [`WebhookError::MalformedHeader`], [`WebhookError::NoSignature`], [`WebhookError::Mismatch`]
/// or [`WebhookError::Stale`].
pub fn verify_with_tolerance(
    payload: &[u8],
    signature_header: Option<&str>,
    secrets: &[SecretString],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    if tolerance.is_zero() {
        return Err(WebhookError::ZeroTolerance);
    }
    if secrets.is_empty() {
        return Err(WebhookError::NoSecrets);
    }
    let header = signature_header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(WebhookError::MissingHeader)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(WebhookError::MalformedHeader)?;
        match k.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(WebhookError::MalformedHeader);
                }
                timestamp = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| WebhookError::MalformedHeader)?,
                );
            }
            // A v1 that is not 32 bytes of hex can never match: skip it, as Stripe's libraries do.
            "v1" => {
                if let Ok(sig) = hex::decode(v.trim()) {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(WebhookError::MalformedHeader)?;
    if signatures.is_empty() {
        return Err(WebhookError::NoSignature);
    }
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = mac(payload, secret, t);
        for sig in &signatures {
            // ct_eq on slices of different lengths is false, still without early exit on content.
            matched |= expected.as_slice().ct_eq(sig.as_slice());
        }
    }
    if !bool::from(matched) {
        return Err(WebhookError::Mismatch);
    }
    let age_secs = now.timestamp().abs_diff(t);
    if age_secs > tolerance.as_secs() {
        return Err(WebhookError::Stale { age_secs });
    }
    Ok(())
}

fn mac(payload: &[u8], secret: &SecretString, t: i64) -> Vec<u8> {
    // The one place a webhook secret is exposed: as the HMAC key.
    let mut m = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(payload);
    m.finalize().into_bytes().to_vec()
}

/// Signs `payload` as Stripe does: the `Stripe-Signature` value `t=<t>,v1=<hex>`. For a local
/// Stripe stand-in and for tests.
pub fn sign(payload: &[u8], secret: &SecretString, t: i64) -> String {
    format!("t={t},v1={}", hex::encode(mac(payload, secret, t)))
}

/// Verifies, then parses: the one call a webhook handler needs.
///
/// # Errors
/// As [`verify`], plus [`WebhookError::Decode`] for a verified body that is not an event.
pub fn construct_event(
    payload: &[u8],
    signature_header: Option<&str>,
    secrets: &[SecretString],
    now: DateTime<Utc>,
) -> Result<Event, WebhookError> {
    verify(payload, signature_header, secrets, now)?;
    Event::parse(payload).map_err(WebhookError::Decode)
}

/// The mode a secret key works in: `Some(true)` for a live key (`sk_live_…`, `rk_live_…`),
/// `Some(false)` for a test key (`sk_test_…`, `rk_test_…`), `None` for anything else. An
/// event whose [`Event::livemode`] differs from the key's mode comes from the other mode's
/// endpoint and must not touch anything.
pub fn key_livemode(api_key: &SecretString) -> Option<bool> {
    let key = api_key.expose_secret();
    let mode = key
        .strip_prefix("sk_")
        .or_else(|| key.strip_prefix("rk_"))?;
    if mode.starts_with("live_") {
        Some(true)
    } else if mode.starts_with("test_") {
        Some(false)
    } else {
        None
    }
}

/// A webhook event, with its object typed for the events Chairside handles.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// `evt_…`: deduplicate deliveries on it.
    pub id: EventId,
    /// The API version the event was rendered in (the endpoint's).
    pub api_version: Option<String>,
    /// When it happened.
    pub created: Option<DateTime<Utc>>,
    /// Live or test mode.
    pub livemode: bool,
    /// The type and its object.
    pub data: EventData,
}

/// An event's type with its typed object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventData {
    /// `checkout.session.completed`: check `payment_status` (async methods may still be unpaid).
    CheckoutSessionCompleted(CheckoutSession),
    /// `checkout.session.expired`.
    CheckoutSessionExpired(CheckoutSession),
    /// `checkout.session.async_payment_succeeded`.
    CheckoutSessionAsyncPaymentSucceeded(CheckoutSession),
    /// `checkout.session.async_payment_failed`.
    CheckoutSessionAsyncPaymentFailed(CheckoutSession),
    /// `invoice.paid`: an installment was paid.
    InvoicePaid(Invoice),
    /// `invoice.payment_failed`: see `attempt_count` and `next_payment_attempt`.
    InvoicePaymentFailed(Invoice),
    /// `invoice.marked_uncollectible`: Stripe gave up collecting the invoice (the subscription's
    /// last retry failed and its settings mark such invoices uncollectible).
    InvoiceMarkedUncollectible(Invoice),
    /// `payment_intent.succeeded`.
    PaymentIntentSucceeded(PaymentIntent),
    /// `payment_intent.payment_failed`: see `last_payment_error`.
    PaymentIntentPaymentFailed(PaymentIntent),
    /// `subscription_schedule.completed`: every installment billed.
    SubscriptionScheduleCompleted(SubscriptionSchedule),
    /// `subscription_schedule.canceled`.
    SubscriptionScheduleCanceled(SubscriptionSchedule),
    /// `subscription_schedule.released`.
    SubscriptionScheduleReleased(SubscriptionSchedule),
    /// `subscription_schedule.aborted`: the subscription ended through delinquency.
    SubscriptionScheduleAborted(SubscriptionSchedule),
    /// `customer.subscription.deleted`.
    CustomerSubscriptionDeleted(Subscription),
    /// `charge.refunded`: see `amount_refunded` (cumulative) and `refunded` (in full).
    ChargeRefunded(Charge),
    /// `charge.dispute.created`: the cardholder disputed a charge.
    ChargeDisputeCreated(Dispute),
    /// Any other type; its object is not decoded.
    Other {
        /// The event type.
        event_type: String,
        /// The object's `id`, when it has one.
        object_id: Option<String>,
    },
}

impl EventData {
    /// The event type as Stripe spells it.
    pub fn event_type(&self) -> &str {
        match self {
            Self::CheckoutSessionCompleted(_) => "checkout.session.completed",
            Self::CheckoutSessionExpired(_) => "checkout.session.expired",
            Self::CheckoutSessionAsyncPaymentSucceeded(_) => {
                "checkout.session.async_payment_succeeded"
            }
            Self::CheckoutSessionAsyncPaymentFailed(_) => "checkout.session.async_payment_failed",
            Self::InvoicePaid(_) => "invoice.paid",
            Self::InvoicePaymentFailed(_) => "invoice.payment_failed",
            Self::InvoiceMarkedUncollectible(_) => "invoice.marked_uncollectible",
            Self::PaymentIntentSucceeded(_) => "payment_intent.succeeded",
            Self::PaymentIntentPaymentFailed(_) => "payment_intent.payment_failed",
            Self::SubscriptionScheduleCompleted(_) => "subscription_schedule.completed",
            Self::SubscriptionScheduleCanceled(_) => "subscription_schedule.canceled",
            Self::SubscriptionScheduleReleased(_) => "subscription_schedule.released",
            Self::SubscriptionScheduleAborted(_) => "subscription_schedule.aborted",
            Self::CustomerSubscriptionDeleted(_) => "customer.subscription.deleted",
            Self::ChargeRefunded(_) => "charge.refunded",
            Self::ChargeDisputeCreated(_) => "charge.dispute.created",
            Self::Other { event_type, .. } => event_type,
        }
    }
}

#[derive(Deserialize)]
struct RawEvent {
    id: EventId,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    created: Option<DateTime<Utc>>,
    #[serde(default)]
    livemode: bool,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: serde_json::Value,
}

fn typed<T: serde::de::DeserializeOwned>(object: serde_json::Value) -> Result<T, DecodeError> {
    decode_value(object).map_err(|e| e.nested_in("data.object"))
}

impl Event {
    /// The type as Stripe spells it (`invoice.paid`).
    pub fn event_type(&self) -> &str {
        self.data.event_type()
    }

    /// Parses a body. Call only after [`verify`] accepted it. Unknown types become
    /// [`EventData::Other`]; unknown enum values inside known objects decode as `Unknown`.
    ///
    /// # Errors
    /// [`DecodeError`] when the body is not an event or a handled type's object lacks a
    /// required field.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let raw: RawEvent = decode_json(payload)?;
        let object = raw.data.object;
        let data = match raw.event_type.as_str() {
            "checkout.session.completed" => EventData::CheckoutSessionCompleted(typed(object)?),
            "checkout.session.expired" => EventData::CheckoutSessionExpired(typed(object)?),
            "checkout.session.async_payment_succeeded" => {
                EventData::CheckoutSessionAsyncPaymentSucceeded(typed(object)?)
            }
            "checkout.session.async_payment_failed" => {
                EventData::CheckoutSessionAsyncPaymentFailed(typed(object)?)
            }
            "invoice.paid" => EventData::InvoicePaid(typed(object)?),
            "invoice.payment_failed" => EventData::InvoicePaymentFailed(typed(object)?),
            "invoice.marked_uncollectible" => EventData::InvoiceMarkedUncollectible(typed(object)?),
            "payment_intent.succeeded" => EventData::PaymentIntentSucceeded(typed(object)?),
            "payment_intent.payment_failed" => {
                EventData::PaymentIntentPaymentFailed(typed(object)?)
            }
            "subscription_schedule.completed" => {
                EventData::SubscriptionScheduleCompleted(typed(object)?)
            }
            "subscription_schedule.canceled" => {
                EventData::SubscriptionScheduleCanceled(typed(object)?)
            }
            "subscription_schedule.released" => {
                EventData::SubscriptionScheduleReleased(typed(object)?)
            }
            "subscription_schedule.aborted" => {
                EventData::SubscriptionScheduleAborted(typed(object)?)
            }
            "customer.subscription.deleted" => {
                EventData::CustomerSubscriptionDeleted(typed(object)?)
            }
            "charge.refunded" => EventData::ChargeRefunded(typed(object)?),
            "charge.dispute.created" => EventData::ChargeDisputeCreated(typed(object)?),
            _ => EventData::Other {
                object_id: object.get("id").and_then(|v| v.as_str()).map(str::to_owned),
                event_type: raw.event_type,
            },
        };
        Ok(Self {
            id: raw.id,
            api_version: raw.api_version,
            created: raw.created,
            livemode: raw.livemode,
            data,
        })
    }
}

#[cfg(test)]
mod livemode_tests {
    use super::*;

    fn mode(k: &str) -> Option<bool> {
        key_livemode(&SecretString::from(k.to_owned()))
    }

    #[test]
    fn a_key_prefix_names_its_mode() {
        assert_eq!(mode("sk_live_abc"), Some(true));
        assert_eq!(mode("rk_live_abc"), Some(true));
        assert_eq!(mode("sk_test_abc"), Some(false));
        assert_eq!(mode("rk_test_abc"), Some(false));
        assert_eq!(mode("sk_abc"), None);
        assert_eq!(mode("pk_live_abc"), None);
    }
}
