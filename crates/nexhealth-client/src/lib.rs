//! NexHealth API client: the route to Dentrix G-series and Enterprise, Open Dental and Eaglesoft.
//! API-key authentication with a shared token, treatment plans polled by `updated_since` with
//! cursor paging, patients' contact data, webhook endpoints and verification of their deliveries,
//! and asynchronous write-back of the ledger note, all inside NexHealth's documented rate limits.
//!
//! # Quick start
//!
//! ```no_run
//! use nexhealth_client::{Client, Credentials, LocationId, PlanStatus, SyncCursor};
//! use secrecy::SecretString;
//! use url::Url;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let credentials = Credentials::new(
//!     SecretString::from(std::env::var("NEXHEALTH_API_KEY")?),
//!     "smile-dental",
//!     LocationId::new("123"),
//! );
//! let client = Client::builder(Url::parse("https://nexhealth.info/")?, credentials).build()?;
//!
//! let changed = client
//!     .list_changed_treatment_plans(&SyncCursor::beginning(), Some(&PlanStatus::Accepted))
//!     .await?;
//! for plan in &changed.plans {
//!     if let Some(plan) = plan.to_treatment_plan(chrono::Utc::now()) {
//!         println!("{} procedures", plan.procedures.len());
//!     }
//! }
//! let store_me: String = changed.next_cursor.to_string();
//! # let _ = store_me;
//! # Ok(()) }
//! ```
//!
//! # Shape
//!
//! - Every vendor path, field name, header and event name lives in [`wire`], modelled on public
//!   evidence and marked for correction at onboarding (the webhook signature header is inferred).
//!   The rest of the crate uses typed domain structs ([`TreatmentPlan`], [`PlanProcedure`],
//!   [`Patient`], [`LedgerNote`], [`WebhookEvent`]).
//! - NexHealth plans carry fees but no insurance estimates.
//! - Failures are one [`Error`] whose [`Error::kind`] gives the shared
//!   [`ErrorKind`](financing_core::ErrorKind). Reads are retried under
//!   [`RetryPolicy`] (from `connector-transport`, capped below the runner's lease); a 401 refreshes the token once; writes are never
//!   retried blindly. A client-side [`RateBudget`] keeps requests inside the documented limits.
//! - Nothing here logs a body or a patient field.

mod client;
mod convert;
mod error;
mod ids;
mod patients;
mod payments;
mod ratelimit;
mod status;
mod treatment_plans;
mod webhooks;
pub mod wire;
mod writeback;

pub use client::{Client, ClientBuilder, Credentials};
pub use connector_transport::RetryPolicy;
pub use error::{DecodeProblem, Error, Result, SignatureProblem, VendorBody};
pub use ids::{
    AppointmentId, CommunicationLogId, DeliveryId, LocationId, PatientId, ProcedureId, ProviderId,
    ResourceId, TreatmentPlanId, WebhookEndpointId, WebhookSubscriptionId,
};
pub use patients::{NewPatient, Patient, patient_contact};
pub use payments::{LedgerDirection, LedgerPayment, NewLedgerPayment, PaymentWrite, TransactionId};
pub use ratelimit::RateBudget;
pub use status::PlanStatus;
pub use treatment_plans::{
    ChangedPlans, InvalidCursor, PlanProcedure, SyncCursor, TreatmentPlan, UnreadablePlan,
};
pub use webhooks::{
    SIGNATURE_HEADER, WebhookEndpoint, WebhookEvent, WebhookEventKind, WebhookSubscription,
    parse_webhook_event, verify_webhook,
};
pub use writeback::{LedgerNote, NoteMarker, NoteWrite, WriteState};
