//! Card on file: off-session PaymentIntents, with declines and authentication requests as typed
//! outcomes rather than errors.

use chrono::{DateTime, Utc};
use financing_core::Money;
use serde::Deserialize;

use crate::client::{Call, Client};
use crate::enums::string_enum;
use crate::error::{Error, ErrorCode, ErrorObject, ErrorType, Result};
use crate::form::FormMap;
use crate::ids::{ChargeId, CustomerId, PaymentIntentId, PaymentMethodId, RequestId, expandable};
use crate::params::{IdempotencyKey, Metadata, check_charge, check_id};

/// An off-session charge of a saved card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffSessionCharge {
    /// The patient's customer.
    pub customer: CustomerId,
    /// The saved card (`pm_…`), attached to `customer`.
    pub payment_method: PaymentMethodId,
    /// The amount.
    pub amount: Money,
    /// Metadata on the PaymentIntent (copied to the charge): the workflow id, never PHI.
    pub metadata: Metadata,
}

string_enum!(
    /// A PaymentIntent's `status`.
    PaymentIntentStatus {
        /// Needs a (new) payment method: the last attempt failed.
        RequiresPaymentMethod => "requires_payment_method",
        /// Needs confirming.
        RequiresConfirmation => "requires_confirmation",
        /// Needs the customer (3-D Secure).
        RequiresAction => "requires_action",
        /// Being processed.
        Processing => "processing",
        /// Authorized, waiting for capture.
        RequiresCapture => "requires_capture",
        /// Canceled.
        Canceled => "canceled",
        /// Paid.
        Succeeded => "succeeded",
    }
);

/// A PaymentIntent.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct PaymentIntent {
    /// `pi_…`.
    pub id: PaymentIntentId,
    /// Status.
    pub status: PaymentIntentStatus,
    /// Amount in minor units.
    pub amount: i64,
    /// Amount received, in minor units.
    #[serde(default)]
    pub amount_received: i64,
    /// Currency (lower case).
    pub currency: String,
    /// The customer.
    #[serde(default, deserialize_with = "expandable::option")]
    pub customer: Option<CustomerId>,
    /// The payment method.
    #[serde(default, deserialize_with = "expandable::option")]
    pub payment_method: Option<PaymentMethodId>,
    /// The latest charge.
    #[serde(default, deserialize_with = "expandable::option")]
    pub latest_charge: Option<ChargeId>,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_payment_error: Option<ErrorObject>,
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

impl PaymentIntent {
    /// The amount as [`Money`], when the currency is one Chairside knows.
    pub fn money(&self) -> Option<Money> {
        Some(Money::new(self.amount, self.currency.parse().ok()?))
    }
}

/// Why an off-session charge did not go through.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CardFailure {
    /// The PaymentIntent Stripe created for the attempt, when it says.
    pub payment_intent: Option<PaymentIntentId>,
    /// Stripe's `code` (`card_declined`, `expired_card`, `authentication_required`, …).
    pub code: Option<ErrorCode>,
    /// The issuer's `decline_code` (`insufficient_funds`, …).
    pub decline_code: Option<String>,
    /// Stripe's request id, for support.
    pub request_id: Option<RequestId>,
}

/// What an off-session charge came to. Declines are outcomes, not errors: the workflow decides.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChargeOutcome {
    /// Paid.
    Succeeded(PaymentIntent),
    /// Accepted and processing; `payment_intent.succeeded` or `.payment_failed` will follow.
    Processing(PaymentIntent),
    /// The bank wants the patient to authenticate (`authentication_required`, or a
    /// `requires_action` status): the patient must come back on-session, e.g. through a pay link.
    AuthenticationRequired(CardFailure),
    /// Declined (`card_error`): ask for another card.
    Declined(CardFailure),
    /// Any other status (`requires_capture`, `canceled`, a new one): reconcile by retrieving it.
    Other(PaymentIntent),
}

impl ChargeOutcome {
    fn from_intent(pi: PaymentIntent) -> Self {
        match pi.status {
            PaymentIntentStatus::Succeeded => Self::Succeeded(pi),
            PaymentIntentStatus::Processing => Self::Processing(pi),
            PaymentIntentStatus::RequiresAction => Self::AuthenticationRequired(CardFailure {
                payment_intent: Some(pi.id),
                code: Some(ErrorCode::AuthenticationRequired),
                decline_code: None,
                request_id: None,
            }),
            PaymentIntentStatus::RequiresPaymentMethod => {
                let err = pi.last_payment_error.unwrap_or_default();
                let failure = CardFailure {
                    payment_intent: Some(pi.id),
                    code: err.code,
                    decline_code: err.decline_code,
                    request_id: None,
                };
                if failure.code == Some(ErrorCode::AuthenticationRequired) {
                    Self::AuthenticationRequired(failure)
                } else {
                    Self::Declined(failure)
                }
            }
            _ => Self::Other(pi),
        }
    }
}

impl Client {
    /// Charges a saved card without the patient present: `POST /v1/payment_intents` with
    /// `confirm=true` and `off_session=true`.
    ///
    /// A 402 `card_error` becomes [`ChargeOutcome::Declined`], or
    /// [`ChargeOutcome::AuthenticationRequired`] when its code is `authentication_required`.
    ///
    /// # Errors
    /// [`Error::Invalid`] before sending (amount, currency, metadata, ids); otherwise `Transient`
    /// (retry with the same key), `Permanent`, or `Indeterminate` (a persistent 500: retrieve
    /// the PaymentIntent by the metadata's workflow id before charging again).
    pub async fn charge_off_session(
        &self,
        charge: &OffSessionCharge,
        key: &IdempotencyKey,
    ) -> Result<ChargeOutcome> {
        const OP: &str = "charge_off_session";
        let check = || {
            check_id("customer id", charge.customer.as_str())?;
            check_id("payment method id", charge.payment_method.as_str())?;
            check_charge(charge.amount)?;
            charge.metadata.validate()
        };
        check().map_err(|r| Error::invalid(OP, r))?;
        let mut form = FormMap::new()
            .with("amount", charge.amount.minor())
            .with("currency", charge.amount.currency().code())
            .with("customer", charge.customer.as_str())
            .with("payment_method", charge.payment_method.as_str())
            .with("confirm", true)
            .with("off_session", true);
        if !charge.metadata.is_empty() {
            form.insert("metadata", charge.metadata.to_form());
        }
        match self
            .send::<PaymentIntent>(Call::post(OP, &["payment_intents"], form, key))
            .await
        {
            Ok(pi) => Ok(ChargeOutcome::from_intent(pi)),
            Err(Error::Api(api))
                if api.status == 402 && api.error.error_type == Some(ErrorType::CardError) =>
            {
                let failure = CardFailure {
                    payment_intent: api.error.payment_intent.clone(),
                    code: api.error.code.clone(),
                    decline_code: api.error.decline_code.clone(),
                    request_id: api.request_id.clone(),
                };
                tracing::info!(
                    op = OP,
                    code = failure.code.as_ref().map(ErrorCode::as_str),
                    decline_code = failure.decline_code.as_deref(),
                    "off-session charge not completed"
                );
                if failure.code == Some(ErrorCode::AuthenticationRequired) {
                    Ok(ChargeOutcome::AuthenticationRequired(failure))
                } else {
                    Ok(ChargeOutcome::Declined(failure))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Every PaymentIntent of `customer`, newest first: `GET
    /// /v1/payment_intents?customer=…&limit=100`, following pages (at most 1,000). Unlike the
    /// search API, a list reads what was just written: the check before an off-session charge
    /// (a charge whose answer was lost is found here by its metadata, never made twice).
    ///
    /// # Errors
    /// `Permanent` for a malformed customer id; `Transient` for timeouts and 5xx.
    pub async fn list_payment_intents(&self, customer: &CustomerId) -> Result<Vec<PaymentIntent>> {
        const OP: &str = "list_payment_intents";
        check_id("customer id", customer.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.list_pages(
            OP,
            "payment_intents",
            FormMap::new().with("customer", customer.as_str()),
            |pi: &PaymentIntent| pi.id.as_str(),
        )
        .await
    }

    /// Retrieves a PaymentIntent: `GET /v1/payment_intents/{id}`.
    ///
    /// # Errors
    /// `Permanent` for a 404 or a malformed id; `Transient` for timeouts and 5xx.
    pub async fn get_payment_intent(&self, id: &PaymentIntentId) -> Result<PaymentIntent> {
        const OP: &str = "get_payment_intent";
        check_id("payment intent id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::get(OP, &["payment_intents", id.as_str()]))
            .await
    }
}
