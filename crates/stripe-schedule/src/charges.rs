//! Charges and disputes, as `charge.refunded` and `charge.dispute.created` deliver them.

use financing_core::{Currency, Money};
use serde::Deserialize;

use crate::client::Client;
use crate::enums::string_enum;
use crate::error::{Error, Result};
use crate::form::FormMap;
use crate::ids::{ChargeId, CustomerId, DisputeId, PaymentIntentId, RefundId, expandable};
use crate::params::{Metadata, check_id};

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

string_enum!(
    /// A refund's `status`.
    RefundStatus {
        /// Being processed: the money is on its way back.
        Pending => "pending",
        /// Needs the customer to act (some payment methods).
        RequiresAction => "requires_action",
        /// Done.
        Succeeded => "succeeded",
        /// Failed: the money stayed with the merchant.
        Failed => "failed",
        /// Canceled before it was processed.
        Canceled => "canceled",
    }
);

impl RefundStatus {
    /// Whether the refund gives (or is giving) money back: pending, awaiting the customer, or
    /// succeeded. A failed or canceled refund returned nothing.
    pub fn returns_money(&self) -> bool {
        matches!(self, Self::Pending | Self::RequiresAction | Self::Succeeded)
    }
}

/// One refund of a charge.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Refund {
    /// `re_…`.
    pub id: RefundId,
    /// Amount in minor units.
    pub amount: i64,
    /// Currency (lower case).
    pub currency: String,
    /// The refunded charge.
    #[serde(default, deserialize_with = "expandable::option")]
    pub charge: Option<ChargeId>,
    /// When it was created (Unix seconds).
    #[serde(default)]
    pub created: i64,
    /// Where it stands.
    pub status: RefundStatus,
}

impl Refund {
    /// The refunded amount, as money.
    pub fn money(&self) -> Option<Money> {
        money(self.amount, &self.currency)
    }
}

impl Client {
    /// Every refund of `charge`, newest first: `GET /v1/refunds?charge=…&limit=100`, following
    /// pages (at most 1,000). `charge.refunded` carries only the charge's cumulative
    /// `amount_refunded`; this names each refund, so each is reversed once by its id.
    ///
    /// # Errors
    /// `Permanent` for a malformed charge id; `Transient` for timeouts and 5xx.
    pub async fn list_refunds(&self, charge: &ChargeId) -> Result<Vec<Refund>> {
        const OP: &str = "list_refunds";
        check_id("charge id", charge.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.list_pages(
            OP,
            "refunds",
            FormMap::new().with("charge", charge.as_str()),
            |r: &Refund| r.id.as_str(),
        )
        .await
    }
}
