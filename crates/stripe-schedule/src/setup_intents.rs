//! SetupIntents: how a Checkout Session in setup mode saved the patient's card. Read one after
//! `checkout.session.completed` (`session.setup_intent`) to learn the saved `payment_method`.

use serde::Deserialize;

use crate::client::{Call, Client};
use crate::enums::string_enum;
use crate::error::{Error, Result};
use crate::ids::{CustomerId, PaymentMethodId, SetupIntentId, expandable};
use crate::params::{Metadata, check_id};

string_enum!(
    /// A SetupIntent's `status`.
    SetupIntentStatus {
        /// Needs a payment method.
        RequiresPaymentMethod => "requires_payment_method",
        /// Needs confirming.
        RequiresConfirmation => "requires_confirmation",
        /// Needs the customer (3-D Secure).
        RequiresAction => "requires_action",
        /// Being processed.
        Processing => "processing",
        /// Canceled.
        Canceled => "canceled",
        /// The card is saved.
        Succeeded => "succeeded",
    }
);

/// A SetupIntent. No card data is decoded: only ids and the status.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct SetupIntent {
    /// `seti_…`.
    pub id: SetupIntentId,
    /// Status.
    pub status: SetupIntentStatus,
    /// The customer the card is saved to.
    #[serde(default, deserialize_with = "expandable::option")]
    pub customer: Option<CustomerId>,
    /// The saved card (`pm_…`), once there is one.
    #[serde(default, deserialize_with = "expandable::option")]
    pub payment_method: Option<PaymentMethodId>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// Live or test mode.
    #[serde(default)]
    pub livemode: bool,
}

impl Client {
    /// Retrieves a SetupIntent: `GET /v1/setup_intents/{id}`.
    ///
    /// # Errors
    /// `Permanent` for a 404 or a malformed id; `Transient` for timeouts and 5xx.
    pub async fn get_setup_intent(&self, id: &SetupIntentId) -> Result<SetupIntent> {
        const OP: &str = "get_setup_intent";
        check_id("setup intent id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::get(OP, &["setup_intents", id.as_str()]))
            .await
    }
}
