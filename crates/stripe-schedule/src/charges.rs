//! Charges and disputes, as `charge.refunded` and `charge.dispute.created` deliver them.

use financing_core::{Currency, Money};
use serde::Deserialize;

use crate::ids::{ChargeId, CustomerId, DisputeId, PaymentIntentId, expandable};
use crate::params::Metadata;

fn money(minor: i64, currency: &str) -> Option<Money> {
    Some(Money::new(minor, currency.parse::<Currency>().ok()?))
}

/// A charge. Its metadata is the PaymentIntent's, copied by Stripe (the workflow id).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Charge {
    /// `ch_…`.
    pub id: ChargeId,
    /// Amount in minor units.
    pub amount: i64,
    /// How much of it was refunded so far, in minor units (cumulative).
    #[serde(default)]
    pub amount_refunded: i64,
    /// Currency (lower case).
    pub currency: String,
    /// Whether it was refunded in full.
    #[serde(default)]
    pub refunded: bool,
    /// The customer.
    #[serde(default, deserialize_with = "expandable::option")]
    pub customer: Option<CustomerId>,
    /// The PaymentIntent it belongs to.
    #[serde(default, deserialize_with = "expandable::option")]
    pub payment_intent: Option<PaymentIntentId>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
}

impl Charge {
    /// The amount refunded so far, as money.
    pub fn refunded_money(&self) -> Option<Money> {
        money(self.amount_refunded, &self.currency)
    }
}

/// A dispute (a chargeback) on a charge.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Dispute {
    /// The dispute's id.
    pub id: DisputeId,
    /// The disputed amount, in minor units.
    pub amount: i64,
    /// Currency (lower case).
    pub currency: String,
    /// The disputed charge.
    #[serde(deserialize_with = "expandable::required")]
    pub charge: ChargeId,
    /// The PaymentIntent of the charge, when Stripe includes it.
    #[serde(default, deserialize_with = "expandable::option")]
    pub payment_intent: Option<PaymentIntentId>,
    /// The reason the cardholder gave (`fraudulent`, `product_not_received`, ...).
    #[serde(default)]
    pub reason: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
}

impl Dispute {
    /// The disputed amount, as money.
    pub fn money(&self) -> Option<Money> {
        money(self.amount, &self.currency)
    }
}
