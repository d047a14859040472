//! Webhooks: signature verification first, then typed events and their [`Decision`]s.
//!
//! The signature header ([`wire::SIGNATURE_HEADER`]) holds a timestamp in unix seconds and one or
//! more hex signatures of the `v1` scheme: HMAC-SHA256, keyed with the endpoint's secret, over
//! `timestamp + "." + raw body` (\[third-party\]: transcribed from docs.sunbit.com by
//! api-evangelist/sunbit; the same scheme as Stripe's `Stripe-Signature`; the exact header syntax
//! is in [`wire`]). [`WebhookVerifier::verify`]:
//!
//! 1. reads the header (missing, blank or unparsable: rejected);
//! 2. computes the HMAC over the **raw bytes as received** and compares it in constant time
//!    (`subtle`) with every `v1`; one match is enough, other schemes are ignored;
//! 3. rejects a timestamp further than the tolerance from now, in either direction (replays);
//!    Sunbit recommends up to 5 minutes, our default.
//!
//! Only a [`VerifiedWebhook`] can be parsed, so nothing reads a body before its signature is
//! checked. Sunbit sends no event id: deduplicate on [`WebhookEvent::dedup_key`], which is
//! (event, purchase id, signature timestamp).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use financing_core::{ApplicationRef, Classify, Decision, ErrorKind, Money};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ids::{PurchaseId, SunbitLocation};
use crate::status::offer;
use crate::wire::{self, EventType, WebhookEnvelope};

/// The default tolerance between the signature's timestamp and now: 5 minutes, as Sunbit
/// recommends.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a webhook was rejected. Every case is permanent for the delivery at hand: answer `400`
/// and do not act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No signature header, or a blank one.
    #[error("missing webhook signature header")]
    MissingSignature,
    /// The header has no parsable timestamp, a part without `=`, or no `v1`.
    #[error("malformed webhook signature header")]
    MalformedSignature,
    /// No `v1` matches: tampered body, wrong secret, or forged.
    #[error("webhook signature does not match")]
    SignatureMismatch,
    /// The signature is valid but its timestamp is too far from now (a replay, or a bad clock).
    #[error("webhook timestamp outside the tolerance ({age_secs} s away)")]
    Stale {
        /// Seconds between the timestamp and now.
        age_secs: u64,
    },
    /// A tolerance of zero was configured; it would reject every delivery.
    #[error("a webhook tolerance of zero is not allowed")]
    ZeroTolerance,
    /// A verified body that is not a webhook envelope.
    #[error("undecodable webhook body: {0}")]
    Decode(#[source] connector_transport::DecodeError),
}

impl WebhookError {
    /// Always [`ErrorKind::Permanent`]: a bad delivery does not get better by itself.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Permanent
    }
}

impl Classify for WebhookError {
    fn kind(&self) -> ErrorKind {
        WebhookError::kind(self)
    }
}

/// Verifies Sunbit webhook signatures with one endpoint secret. Redacted `Debug`.
#[derive(Clone)]
pub struct WebhookVerifier {
    secret: SecretString,
    tolerance: Duration,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

impl WebhookVerifier {
    /// A verifier for the endpoint's secret (from the Sunbit Developers Portal), with
    /// [`DEFAULT_TOLERANCE`].
    pub fn new(secret: SecretString) -> Self {
        Self {
            secret,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Sets the timestamp tolerance.
    ///
    /// # Errors
    /// [`WebhookError::ZeroTolerance`] (permanent) for zero.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Result<Self, WebhookError> {
        if tolerance.is_zero() {
            return Err(WebhookError::ZeroTolerance);
        }
        self.tolerance = tolerance;
        Ok(self)
    }

    /// The timestamp tolerance.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Verifies `body` (the raw bytes as received) against the signature header's value, at
    /// `now`. Call it before anything reads the body.
    ///
    /// # Errors
    /// [`WebhookError::MissingSignature`], [`WebhookError::MalformedSignature`],
    /// [`WebhookError::SignatureMismatch`] or [`WebhookError::Stale`]; all permanent.
    pub fn verify<'a>(
        &self,
        signature_header: Option<&str>,
        body: &'a [u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'a>, WebhookError> {
        let header = signature_header
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or(WebhookError::MissingSignature)?;
        let mut timestamp: Option<i64> = None;
        let mut signatures: Vec<Vec<u8>> = Vec::new();
        for part in header.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or(WebhookError::MalformedSignature)?;
            let (key, value) = (key.trim(), value.trim());
            if key == wire::SIGNATURE_TIMESTAMP_KEY {
                if timestamp.is_some() {
                    return Err(WebhookError::MalformedSignature);
                }
                timestamp = Some(
                    value
                        .parse()
                        .map_err(|_| WebhookError::MalformedSignature)?,
                );
            } else if key == wire::SIGNATURE_V1_KEY {
                // A v1 that is not hex can never match; skip it rather than fail the others.
                if let Ok(sig) = hex::decode(value) {
                    signatures.push(sig);
                }
            }
            // Other schemes (`v0`, a future `v2`) are ignored, as Sunbit advises.
        }
        let t = timestamp.ok_or(WebhookError::MalformedSignature)?;
        if signatures.is_empty() {
            return Err(WebhookError::MalformedSignature);
        }
        let expected = mac(&self.secret, t, body);
        let mut matched = subtle::Choice::from(0);
        for sig in &signatures {
            // `ct_eq` on slices of different lengths is false; on equal lengths it does not exit
            // early on content.
            matched |= expected.as_slice().ct_eq(sig.as_slice());
        }
        if !bool::from(matched) {
            return Err(WebhookError::SignatureMismatch);
        }
        let age_secs = now.timestamp().abs_diff(t);
        if age_secs > self.tolerance.as_secs() {
            return Err(WebhookError::Stale { age_secs });
        }
        Ok(VerifiedWebhook { timestamp: t, body })
    }
}

fn mac(secret: &SecretString, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // The one place the webhook secret leaves its `SecretString`: as the HMAC key. HMAC takes
    // keys of any length, so `new_from_slice` cannot fail here.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Signs `body` as Sunbit does: the value of the signature header. For tests
/// and for the sandbox, which sends signed webhooks.
pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    format!(
        "{}={timestamp},{}={}",
        wire::SIGNATURE_TIMESTAMP_KEY,
        wire::SIGNATURE_V1_KEY,
        hex::encode(mac(secret, timestamp, body))
    )
}

/// A webhook whose signature and timestamp were checked. The only way to read its body.
#[derive(Clone, Copy)]
pub struct VerifiedWebhook<'a> {
    timestamp: i64,
    body: &'a [u8],
}

impl fmt::Debug for VerifiedWebhook<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedWebhook")
            .field("timestamp", &self.timestamp)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl VerifiedWebhook<'_> {
    /// The signed timestamp (unix seconds).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Parses the verified body into a typed event. Unknown event types decode to
    /// [`EventType::Unknown`].
    ///
    /// # Errors
    /// [`WebhookError::Decode`] (permanent) when the body is not a webhook envelope.
    pub fn event(&self) -> Result<WebhookEvent, WebhookError> {
        let envelope: WebhookEnvelope =
            connector_transport::decode_json(self.body).map_err(WebhookError::Decode)?;
        let p = envelope.payload;
        Ok(WebhookEvent {
            event_type: envelope.event_type,
            timestamp: self.timestamp,
            purchase_id: p.purchase_id,
            location: p.location,
            referral: p.referral.map(ApplicationRef::new),
            approval_amount: p.approval_amount.map(|a| a.0),
            purchase_amount_entered: p.purchase_amount_entered.map(|a| a.0),
            purchase_amount: p.purchase_amount.map(|a| a.0),
            valid_until: p.valid_until.and_then(|v| v.until()),
        })
    }
}

/// A verified Sunbit event, with the fields Chairside acts on. No PHI: ids and amounts only.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookEvent {
    /// The event type.
    pub event_type: EventType,
    /// The signed timestamp (unix seconds).
    pub timestamp: i64,
    /// Sunbit's purchase id: store it as the application's lender reference.
    pub purchase_id: Option<PurchaseId>,
    /// The merchant location.
    pub location: Option<SunbitLocation>,
    /// Our reference, echoed: matches the event to its application.
    pub referral: Option<ApplicationRef>,
    /// The most the patient was approved for.
    pub approval_amount: Option<Money>,
    /// The amount the patient entered.
    pub purchase_amount_entered: Option<Money>,
    /// The purchase total (text-to-pay, checkout, void and refund events).
    pub purchase_amount: Option<Money>,
    /// When the offer lapses.
    pub valid_until: Option<DateTime<Utc>>,
}

/// The key to deduplicate deliveries on: event type, purchase id and signature timestamp, joined
/// with `:`. Sunbit sends no event id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey(String);

impl DedupKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl WebhookEvent {
    /// `(event, purchase id, timestamp)` as one key; a missing purchase id is empty.
    pub fn dedup_key(&self) -> DedupKey {
        DedupKey(format!(
            "{}:{}:{}",
            self.event_type,
            self.purchase_id.as_ref().map_or("", PurchaseId::as_str),
            self.timestamp
        ))
    }

    /// What the event means for the application, or `None` when it is not about a financing
    /// decision. `requested` is the amount Chairside asked Sunbit to finance: amounts are judged
    /// against it, never against what the patient typed (`purchaseAmountEntered`).
    ///
    /// | Event | Decision |
    /// |---|---|
    /// | `PrequalApproved`, `PrequalCompleted` | [`Decision::Prequalified`] up to the approval amount (a prequalification is not financing: the purchase status decides); zero: `Declined`; no amount: `Unknown(raw)` |
    /// | `PrequalFailed` | `Declined` |
    /// | `PrequalAborted` | `Expired` (the patient left; no credit decision) |
    /// | `TransactionVoided` | `Expired` (the financing was voided) |
    /// | `TextToPay(_)`, `CheckoutSdk(_)`, `Merchant(_)`, `TransactionRefunded` | `None`: payment or onboarding events |
    /// | `Unknown(_)` | `Unknown(raw)` for staff |
    pub fn decision(&self, requested: Money) -> Option<Decision> {
        let raw = self.event_type.as_str().to_owned();
        match &self.event_type {
            EventType::PrequalApproved | EventType::PrequalCompleted => {
                Some(match self.approval_amount {
                    Some(amount) => Decision::from_prequalification(
                        offer(amount, self.purchase_id.as_ref(), self.valid_until),
                        requested,
                        raw,
                    ),
                    None => Decision::Unknown(raw),
                })
            }
            EventType::PrequalFailed => Some(Decision::Declined {
                reason: None,
                raw_status: raw,
            }),
            EventType::PrequalAborted | EventType::TransactionVoided => {
                Some(Decision::Expired { raw_status: raw })
            }
            EventType::TextToPay(_)
            | EventType::CheckoutSdk(_)
            | EventType::Merchant(_)
            | EventType::TransactionRefunded => None,
            EventType::Unknown(_) => Some(Decision::Unknown(raw)),
        }
    }
}
