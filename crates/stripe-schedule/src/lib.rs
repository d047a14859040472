//! The Stripe subset Chairside needs, typed: customers, a product per practice, installment
//! plans as subscription schedules, single-use pay links (Checkout Sessions), off-session
//! charges of a saved card, and webhook verification. Every request pins
//! `Stripe-Version: 2026-10-28.endive` ([`API_VERSION`]); every POST carries the caller's
//! [`IdempotencyKey`].
//!
//! # Quick start
//!
//! ```no_run
//! use financing_core::{Money, PatientId, PracticeId};
//! use secrecy::SecretString;
//! use stripe_schedule::{
//!     BillingInterval, Client, Collection, CustomerDetails, IdempotencyKey, InstallmentPlan,
//!     Metadata, StartDate, WORKFLOW_KEY,
//! };
//!
//! # async fn run() -> Result<(), stripe_schedule::Error> {
//! let client = Client::builder(SecretString::from(std::env::var("STRIPE_KEY").unwrap_or_default()))
//!     .timeout(std::time::Duration::from_secs(10))
//!     .build()?;
//!
//! let practice = PracticeId::new("smile-dental");
//! let patient = PatientId::new("p-100");
//! let customer = client
//!     .find_or_create_customer(
//!         &practice,
//!         &patient,
//!         &CustomerDetails { email: Some("pat@example.test".into()), ..Default::default() },
//!         &IdempotencyKey::for_customer(&practice, &patient),
//!     )
//!     .await?;
//! let product = client.ensure_practice_product(&practice, "Dental treatment plan").await?;
//!
//! let plan = InstallmentPlan {
//!     customer: customer.id,
//!     product,
//!     total: Money::usd(100_000),
//!     count: 3,
//!     every: BillingInterval::monthly(),
//!     start: StartDate::Now,
//!     collection: Collection::SendInvoice { days_until_due: 14 },
//!     metadata: Metadata::new().with(WORKFLOW_KEY, "wf-42"),
//! };
//! let key = IdempotencyKey::new("wf-42:schedule:0").expect("a valid key");
//! let schedule = client.create_installment_schedule(&plan, &key).await?;
//! println!("{}", schedule.id);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors and retries
//!
//! Every call returns [`Error`], whose [`Error::kind`] is the shared
//! [`financing_core::ErrorKind`]: `Transient` (retry with the same idempotency key), `Permanent`
//! (a person must act) or `Indeterminate` (the call may have taken effect: reconcile first). The
//! client itself retries transient failures per its [`RetryPolicy`] (from `connector-transport`).
//! Declines of an off-session charge are not errors but [`ChargeOutcome`]s.
//!
//! Input is checked before anything is sent ([`InvalidInput`]): amounts of zero or below,
//! metadata over Stripe's limits, installment counts that do not fit, currencies without minor
//! units.

mod charges;
mod checkout;
mod client;
mod customers;
mod enums;
mod error;
pub mod form;
mod ids;
mod invoices;
mod params;
mod payment_intents;
mod products;
mod schedules;
mod setup_intents;
pub mod webhook;

pub use charges::{Charge, Dispute, Refund, RefundStatus};
pub use checkout::{
    CardSetupRequest, CheckoutMode, CheckoutPaymentStatus, CheckoutSession, CheckoutStatus,
    LINE_ITEM_NAME, PayLinkRequest,
};
pub use client::{API_VERSION, Client, ClientBuilder, DEFAULT_BASE_URL, DEFAULT_TIMEOUT};
pub use connector_transport::{DecodeProblem, RetryPolicy};
pub use customers::{Address, Customer, CustomerDetails, CustomerInvoiceSettings};
pub use enums::{CollectionMethod, Interval};
pub use error::{
    ApiError, ConfigError, DecodeError, Error, ErrorCode, ErrorObject, ErrorType, InvalidInput,
    Method, Result,
};
pub use ids::{
    ChargeId, CheckoutSessionId, CustomerId, DisputeId, EventId, InvoiceId, PaymentIntentId,
    PaymentMethodId, PriceId, ProductId, RefundId, RequestId, SetupIntentId, SubscriptionId,
    SubscriptionScheduleId,
};
pub use invoices::{
    Invoice, InvoiceParent, InvoiceParentType, InvoicePayment, InvoicePaymentSource,
    InvoicePayments, InvoiceStatus, SubscriptionDetails,
};
pub use params::{
    INSTALLMENT_KEY, IdempotencyKey, Metadata, PATIENT_KEY, PRACTICE_KEY, WORKFLOW_KEY,
};
pub use payment_intents::{
    CardFailure, ChargeOutcome, OffSessionCharge, PaymentIntent, PaymentIntentStatus,
};
pub use products::{Product, practice_product_id};
pub use schedules::{
    BillingInterval, Collection, CurrentPhase, EndBehavior, InstallmentPlan, InstallmentSplit,
    MAX_INSTALLMENTS, MAX_PLAN_DAYS, PhaseItem, SchedulePhase, ScheduleStatus, StartDate,
    Subscription, SubscriptionSchedule, SubscriptionStatus, split_installments,
};
pub use setup_intents::{SetupIntent, SetupIntentStatus};
pub use webhook::{Event, EventData, WebhookError, key_livemode};
