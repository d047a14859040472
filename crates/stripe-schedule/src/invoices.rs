//! Invoices, as `invoice.*` webhook events carry them (one per installment).

use chrono::{DateTime, Utc};
use financing_core::Money;
use serde::Deserialize;

use crate::enums::{CollectionMethod, string_enum};
use crate::ids::{CustomerId, InvoiceId, PaymentIntentId, SubscriptionId, expandable};
use crate::params::Metadata;

string_enum!(
    /// An invoice's `status`.
    InvoiceStatus {
        /// Being prepared.
        Draft => "draft",
        /// Finalized, awaiting payment.
        Open => "open",
        /// Paid.
        Paid => "paid",
        /// Written off.
        Uncollectible => "uncollectible",
        /// Voided.
        Void => "void",
    }
);

string_enum!(
    /// What an invoice was created for (`parent.type`).
    InvoiceParentType {
        /// A subscription (our installments).
        SubscriptionDetails => "subscription_details",
        /// A quote.
        QuoteDetails => "quote_details",
    }
);

/// An invoice. Customer name, email and address fields are left out (PHI).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Invoice {
    /// `in_…`.
    pub id: InvoiceId,
    /// Status (`None` on a preview).
    #[serde(default)]
    pub status: Option<InvoiceStatus>,
    /// The customer.
    #[serde(default, deserialize_with = "expandable::option")]
    pub customer: Option<CustomerId>,
    /// Amount due, in minor units.
    #[serde(default)]
    pub amount_due: i64,
    /// Amount paid, in minor units.
    #[serde(default)]
    pub amount_paid: i64,
    /// Amount remaining, in minor units.
    #[serde(default)]
    pub amount_remaining: i64,
    /// Currency (lower case).
    pub currency: String,
    /// Payment attempts so far.
    #[serde(default)]
    pub attempt_count: u32,
    /// When Stripe will try again (`invoice.payment_failed`), if it will.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub next_payment_attempt: Option<DateTime<Utc>>,
    /// Due date of a `send_invoice` invoice.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub due_date: Option<DateTime<Utc>>,
    /// The hosted page where the patient can pay.
    #[serde(default)]
    pub hosted_invoice_url: Option<String>,
    /// Collection method.
    #[serde(default)]
    pub collection_method: Option<CollectionMethod>,
    /// What the invoice was created for (since API 2025-03-31.basil).
    #[serde(default)]
    pub parent: Option<InvoiceParent>,
    /// Metadata of the invoice itself.
    #[serde(default)]
    pub metadata: Metadata,
    /// Creation time.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub created: Option<DateTime<Utc>>,
    /// Live or test mode.
    #[serde(default)]
    pub livemode: bool,
    /// The payments of the invoice (since API 2025-03-31.basil), when the object carries them.
    #[serde(default)]
    pub payments: Option<InvoicePayments>,
}

/// An invoice's `payments` list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct InvoicePayments {
    /// The payments.
    #[serde(default)]
    pub data: Vec<InvoicePayment>,
}

/// One `invoice_payment`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct InvoicePayment {
    /// What paid it.
    #[serde(default)]
    pub payment: Option<InvoicePaymentSource>,
}

/// `invoice_payment.payment`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct InvoicePaymentSource {
    /// The PaymentIntent, for `type: payment_intent`.
    #[serde(default, deserialize_with = "expandable::option")]
    pub payment_intent: Option<PaymentIntentId>,
}

/// An invoice's `parent`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct InvoiceParent {
    /// Which kind of parent.
    #[serde(rename = "type")]
    pub parent_type: InvoiceParentType,
    /// Set for subscription invoices.
    #[serde(default)]
    pub subscription_details: Option<SubscriptionDetails>,
}

/// `parent.subscription_details`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct SubscriptionDetails {
    /// The subscription.
    #[serde(default, deserialize_with = "expandable::option")]
    pub subscription: Option<SubscriptionId>,
    /// The subscription's metadata when the invoice was made (our phase metadata).
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

impl Invoice {
    /// The PaymentIntents that paid this invoice, as far as the object lists them.
    pub fn payment_intents(&self) -> Vec<&PaymentIntentId> {
        self.payments
            .iter()
            .flat_map(|p| &p.data)
            .filter_map(|p| p.payment.as_ref()?.payment_intent.as_ref())
            .collect()
    }

    /// The subscription this invoice bills, for subscription invoices.
    pub fn subscription(&self) -> Option<&SubscriptionId> {
        self.subscription_details()?.subscription.as_ref()
    }

    /// The subscription's metadata (carrying the workflow id), for subscription invoices.
    pub fn subscription_metadata(&self) -> Option<&Metadata> {
        self.subscription_details()?.metadata.as_ref()
    }

    fn subscription_details(&self) -> Option<&SubscriptionDetails> {
        let parent = self.parent.as_ref()?;
        (parent.parent_type == InvoiceParentType::SubscriptionDetails)
            .then_some(parent.subscription_details.as_ref())
            .flatten()
    }

    /// The amount due as [`Money`], when the currency is one Chairside knows.
    pub fn amount_due_money(&self) -> Option<Money> {
        Some(Money::new(self.amount_due, self.currency.parse().ok()?))
    }
}
