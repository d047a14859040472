//! Single-use pay links: Checkout Sessions in `mode=payment` for a known customer.
//!
//! Payment Links take no `customer` and are reusable, so for a known patient the Checkout
//! Session is the single-use link. Send its `url`; close it early with
//! [`Client::expire_checkout_session`].

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use financing_core::Money;
use serde::Deserialize;
use url::Url;

use crate::client::{Call, Client};
use crate::enums::string_enum;
use crate::error::{Error, InvalidInput, Result};
use crate::form::{FormMap, FormValue};
use crate::ids::{CheckoutSessionId, CustomerId, PaymentIntentId, SetupIntentId, expandable};
use crate::params::{IdempotencyKey, Metadata, check_charge, check_id};

/// The line item's product name: generic by rule (COMPLIANCE.md, minimum necessary): a
/// procedure never reaches Stripe.
pub const LINE_ITEM_NAME: &str = "Dental treatment";

/// A pay link to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayLinkRequest {
    /// The patient's customer.
    pub customer: CustomerId,
    /// What the patient pays.
    pub amount: Money,
    /// Our reference (≤ 200 characters), e.g. the workflow id; comes back on the session and in
    /// `checkout.session.*` events.
    pub client_reference_id: String,
    /// When the link stops working: 30 minutes to 24 hours from now (Stripe's default, 24 h,
    /// when `None`). Pass a fixed time derived from the workflow, not `now + x` at each call, so
    /// a repeated call sends identical parameters under its idempotency key.
    pub expires_at: Option<DateTime<Utc>>,
    /// Save the card for later off-session charges (installments):
    /// `payment_intent_data[setup_future_usage]=off_session`. Never a precondition of care
    /// (N.Y. GBL §519-a): the practice chooses.
    pub save_card: bool,
    /// Where the patient lands after paying.
    pub success_url: Option<Url>,
    /// Where the patient lands after backing out.
    pub cancel_url: Option<Url>,
    /// Metadata on the session.
    pub metadata: Metadata,
    /// Metadata on the PaymentIntent (`payment_intent_data[metadata]`), which Stripe copies to
    /// the charge.
    pub payment_metadata: Metadata,
}

impl PayLinkRequest {
    /// Checks the request against `now`.
    ///
    /// # Errors
    /// [`InvalidInput`] naming the first broken rule.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), InvalidInput> {
        check_id("customer id", self.customer.as_str())?;
        check_charge(self.amount)?;
        let len = self.client_reference_id.chars().count();
        if len == 0 || len > 200 {
            return Err(InvalidInput::ClientReferenceId);
        }
        if let Some(at) = self.expires_at {
            let ahead = at - now;
            if ahead < ChronoDuration::minutes(30) || ahead > ChronoDuration::hours(24) {
                return Err(InvalidInput::ExpiresAt);
            }
        }
        self.metadata.validate()?;
        self.payment_metadata.validate()?;
        Ok(())
    }

    fn to_form(&self) -> FormMap {
        let price_data = FormMap::new()
            .with("currency", self.amount.currency().code())
            .with("product_data", FormMap::new().with("name", LINE_ITEM_NAME))
            .with("unit_amount", self.amount.minor());
        let line = FormMap::new()
            .with("price_data", price_data)
            .with("quantity", 1_u32);
        let mut form = FormMap::new()
            .with("mode", "payment")
            .with("customer", self.customer.as_str())
            .with("client_reference_id", self.client_reference_id.as_str())
            .with("line_items", vec![FormValue::from(line)]);
        form.insert_opt("expires_at", self.expires_at.map(|t| t.timestamp()));
        form.insert_opt("success_url", self.success_url.as_ref().map(Url::as_str));
        form.insert_opt("cancel_url", self.cancel_url.as_ref().map(Url::as_str));
        if !self.metadata.is_empty() {
            form.insert("metadata", self.metadata.to_form());
        }
        let mut pi = FormMap::new();
        if self.save_card {
            pi.insert("setup_future_usage", "off_session");
        }
        if !self.payment_metadata.is_empty() {
            pi.insert("metadata", self.payment_metadata.to_form());
        }
        if !pi.is_empty() {
            form.insert("payment_intent_data", pi);
        }
        form
    }
}

/// A Checkout Session in `mode=setup`: the patient saves a card for later off-session charges,
/// on Stripe's hosted page (no card data reaches Chairside). On `checkout.session.completed`,
/// read [`CheckoutSession::setup_intent`], then [`Client::get_setup_intent`] for the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSetupRequest {
    /// The patient's customer: the saved card is attached to it.
    pub customer: CustomerId,
    /// The currency later charges are in: "required in `setup` mode when
    /// `payment_method_types` is not set" (dynamic payment methods).
    pub currency: financing_core::Currency,
    /// Our reference (≤ 200 characters), e.g. the workflow id.
    pub client_reference_id: String,
    /// When the link stops working (30 minutes to 24 hours ahead; 24 h when `None`). A fixed
    /// time derived from the workflow, never `now + x` at each call.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where the patient lands after saving the card.
    pub success_url: Option<Url>,
    /// Where the patient lands after backing out.
    pub cancel_url: Option<Url>,
    /// Metadata on the session (the workflow id, never PHI).
    pub metadata: Metadata,
}

impl CardSetupRequest {
    /// Checks the request against `now`.
    ///
    /// # Errors
    /// [`InvalidInput`] naming the first broken rule.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), InvalidInput> {
        check_id("customer id", self.customer.as_str())?;
        let len = self.client_reference_id.chars().count();
        if len == 0 || len > 200 {
            return Err(InvalidInput::ClientReferenceId);
        }
        if let Some(at) = self.expires_at {
            let ahead = at - now;
            if ahead < ChronoDuration::minutes(30) || ahead > ChronoDuration::hours(24) {
                return Err(InvalidInput::ExpiresAt);
            }
        }
        self.metadata.validate()
    }

    fn to_form(&self) -> FormMap {
        let mut form = FormMap::new()
            .with("mode", "setup")
            .with("customer", self.customer.as_str())
            .with("currency", self.currency.code())
            .with("client_reference_id", self.client_reference_id.as_str());
        form.insert_opt("expires_at", self.expires_at.map(|t| t.timestamp()));
        form.insert_opt("success_url", self.success_url.as_ref().map(Url::as_str));
        form.insert_opt("cancel_url", self.cancel_url.as_ref().map(Url::as_str));
        if !self.metadata.is_empty() {
            form.insert("metadata", self.metadata.to_form());
        }
        form
    }
}

string_enum!(
    /// A Checkout Session's `status`.
    CheckoutStatus {
        /// Waiting for the patient.
        Open => "open",
        /// Paid (or payment processing: see `payment_status`).
        Complete => "complete",
        /// Expired or expired early.
        Expired => "expired",
    }
);

string_enum!(
    /// A Checkout Session's `payment_status`.
    CheckoutPaymentStatus {
        /// Funds are captured.
        Paid => "paid",
        /// Not paid yet (or an async method still processing).
        Unpaid => "unpaid",
        /// Nothing to pay.
        NoPaymentRequired => "no_payment_required",
    }
);

string_enum!(
    /// A Checkout Session's `mode`.
    CheckoutMode {
        /// One payment.
        Payment => "payment",
        /// Save a card only.
        Setup => "setup",
        /// Start a subscription.
        Subscription => "subscription",
    }
);

/// A Checkout Session. It has no PHI fields decoded (`customer_details` is left out).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct CheckoutSession {
    /// `cs_…`.
    pub id: CheckoutSessionId,
    /// Status; `None` only on very old objects.
    #[serde(default)]
    pub status: Option<CheckoutStatus>,
    /// Payment status.
    pub payment_status: CheckoutPaymentStatus,
    /// Mode.
    #[serde(default)]
    pub mode: Option<CheckoutMode>,
    /// The link to send; `None` once the session is complete or expired.
    #[serde(default)]
    pub url: Option<Url>,
    /// The customer.
    #[serde(default, deserialize_with = "expandable::option")]
    pub customer: Option<CustomerId>,
    /// The PaymentIntent, once there is one.
    #[serde(default, deserialize_with = "expandable::option")]
    pub payment_intent: Option<PaymentIntentId>,
    /// The SetupIntent of a `mode=setup` session, once the card is saved.
    #[serde(default, deserialize_with = "expandable::option")]
    pub setup_intent: Option<SetupIntentId>,
    /// Our reference.
    #[serde(default)]
    pub client_reference_id: Option<String>,
    /// When the link expires.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Total in minor units.
    #[serde(default)]
    pub amount_total: Option<i64>,
    /// Currency (lower case).
    #[serde(default)]
    pub currency: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// Creation time.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub created: Option<DateTime<Utc>>,
    /// Live or test mode.
    #[serde(default)]
    pub livemode: bool,
}

impl CheckoutSession {
    /// The total as [`Money`], when Stripe gave one in a known currency.
    pub fn total(&self) -> Option<Money> {
        let currency = self.currency.as_deref()?.parse().ok()?;
        Some(Money::new(self.amount_total?, currency))
    }
}

impl Client {
    /// Creates a single-use pay link: `POST /v1/checkout/sessions` with `mode=payment`, the
    /// customer, one generic line item ([`LINE_ITEM_NAME`]) for the amount, and the request's
    /// expiry, reference, URLs and metadata.
    ///
    /// # Errors
    /// [`Error::Invalid`] before sending (amount, currency, expiry window, reference length,
    /// metadata); otherwise `Transient` (retry with the same key), `Permanent`, or
    /// `Indeterminate`.
    pub async fn create_checkout_session(
        &self,
        request: &PayLinkRequest,
        key: &IdempotencyKey,
    ) -> Result<CheckoutSession> {
        const OP: &str = "create_checkout_session";
        request
            .validate(Utc::now())
            .map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::post(
            OP,
            &["checkout", "sessions"],
            request.to_form(),
            key,
        ))
        .await
    }

    /// Creates a card-saving link: `POST /v1/checkout/sessions` with `mode=setup`, the customer
    /// and the currency, no line items. Nothing is charged; the card is saved to the customer.
    ///
    /// # Errors
    /// [`Error::Invalid`] before sending (ids, expiry window, reference length, metadata);
    /// otherwise `Transient` (retry with the same key), `Permanent`, or `Indeterminate`.
    pub async fn create_card_setup_session(
        &self,
        request: &CardSetupRequest,
        key: &IdempotencyKey,
    ) -> Result<CheckoutSession> {
        const OP: &str = "create_card_setup_session";
        request
            .validate(Utc::now())
            .map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::post(
            OP,
            &["checkout", "sessions"],
            request.to_form(),
            key,
        ))
        .await
    }

    /// Retrieves a session: `GET /v1/checkout/sessions/{id}`.
    ///
    /// # Errors
    /// `Permanent` for a 404 or a malformed id; `Transient` for timeouts and 5xx.
    pub async fn get_checkout_session(&self, id: &CheckoutSessionId) -> Result<CheckoutSession> {
        const OP: &str = "get_checkout_session";
        check_id("checkout session id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::get(OP, &["checkout", "sessions", id.as_str()]))
            .await
    }

    /// Closes a pay link early: `POST /v1/checkout/sessions/{id}/expire`.
    ///
    /// # Errors
    /// `Permanent` when the session is no longer open (Stripe answers 400), for a 404 or a
    /// malformed id; `Transient` for timeouts and 5xx.
    pub async fn expire_checkout_session(
        &self,
        id: &CheckoutSessionId,
        key: &IdempotencyKey,
    ) -> Result<CheckoutSession> {
        const OP: &str = "expire_checkout_session";
        check_id("checkout session id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::post(
            OP,
            &["checkout", "sessions", id.as_str(), "expire"],
            FormMap::new(),
            key,
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(now: DateTime<Utc>) -> PayLinkRequest {
        PayLinkRequest {
            customer: CustomerId::new("cus_1"),
            amount: Money::usd(25_000),
            client_reference_id: "wf-1".into(),
            expires_at: Some(now + ChronoDuration::hours(2)),
            save_card: true,
            success_url: None,
            cancel_url: None,
            metadata: Metadata::new(),
            payment_metadata: Metadata::new(),
        }
    }

    #[test]
    fn expiry_must_be_thirty_minutes_to_a_day_ahead() {
        let now = Utc::now();
        let mut r = request(now);
        for (ahead, ok) in [
            (ChronoDuration::minutes(29), false),
            (ChronoDuration::minutes(30), true),
            (ChronoDuration::hours(24), true),
            (
                ChronoDuration::hours(24) + ChronoDuration::seconds(1),
                false,
            ),
            (ChronoDuration::minutes(-5), false),
        ] {
            r.expires_at = Some(now + ahead);
            assert_eq!(r.validate(now).is_ok(), ok, "{ahead}");
        }
        r.expires_at = None;
        assert!(r.validate(now).is_ok());
    }

    #[test]
    fn the_reference_must_be_one_to_two_hundred_characters() {
        let now = Utc::now();
        let mut r = request(now);
        r.client_reference_id = String::new();
        assert_eq!(r.validate(now), Err(InvalidInput::ClientReferenceId));
        r.client_reference_id = "x".repeat(201);
        assert_eq!(r.validate(now), Err(InvalidInput::ClientReferenceId));
        r.client_reference_id = "x".repeat(200);
        assert!(r.validate(now).is_ok());
    }
}
