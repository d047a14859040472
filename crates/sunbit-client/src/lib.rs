//! Sunbit as a [`FinancingProvider`](financing_core::FinancingProvider): the prequalification
//! link, purchase status, void, and signed webhooks mapped to [`Decision`](financing_core::Decision)s.
//!
//! # Quick start
//!
//! ```no_run
//! use financing_core::{
//!     ApplicationRef, FinancingProvider, FinancingRequest, LenderLocation, LocationId, Money,
//!     PracticeId, UsState,
//! };
//! use sunbit_client::{Client, Credentials};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(
//!     "https://api-sandbox.sunbit.com".parse()?,
//!     Credentials {
//!         key: std::env::var("SUNBIT_KEY")?.into(),
//!         secret: std::env::var("SUNBIT_SECRET")?.into(),
//!     },
//! )
//! .location(LocationId::new("main-st"), "smile-dental-main")
//! .build()?;
//!
//! let request = FinancingRequest {
//!     reference: ApplicationRef::new("wf-7f3a-step-3"),
//!     location: LenderLocation {
//!         practice_id: PracticeId::new("smile-dental"),
//!         location_id: LocationId::new("main-st"),
//!         state: UsState::NY,
//!     },
//!     amount: Money::usd(95_000),
//!     prefill: None, // the policy never prefills in New York
//!     lookup: None,
//!     return_url: None,
//! };
//! let decision = client.start_application(&request).await?;
//! assert_eq!(decision.label(), "application_started"); // send its link to the patient
//! # Ok(()) }
//! ```
//!
//! Webhooks: verify first, then parse.
//!
//! ```no_run
//! use sunbit_client::WebhookVerifier;
//!
//! # fn handle(header: Option<&str>, body: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = WebhookVerifier::new(std::env::var("SUNBIT_WEBHOOK_SECRET")?.into());
//! let event = verifier.verify(header, body, chrono::Utc::now())?.event()?;
//! let _dedup = event.dedup_key();
//! let _decision = event.decision(financing_core::Money::usd(95_000));
//! # Ok(()) }
//! ```
//!
//! # Partner-gated
//!
//! Sunbit's API is portal-gated. Every vendor path, header, field name and enum spelling lives in
//! one module, [`wire`], whose doc starts `PARTNER-GATED: modelled on public evidence; correct at
//! partner onboarding.` Nothing outside [`wire`] names a vendor field, so onboarding corrections
//! stay in that one file. The evidence and how sure we are of each item are listed there. The
//! webhook signature scheme is third-party evidence too (it matches Stripe's).
//!
//! # What is sent
//!
//! - Every call: the key header; purchase reads and voids also the secret header.
//! - The link: the Sunbit location configured for the practice location, our
//!   [`FinancingRequest::reference`](financing_core::FinancingRequest::reference) as the referral,
//!   and the patient's phone and details only from `FinancingRequest::prefill`, which the
//!   compliance policy leaves `None` where prefill is not allowed (always in California and New
//!   York). No date of birth, no procedure codes.
//! - Sunbit texts the link only with [`ClientBuilder::send_sms`] (off by default: Chairside's own
//!   messaging checks SMS consent first).
//!
//! # Errors
//!
//! [`Error::kind`] classifies every failure into [`financing_core::ErrorKind`]; the table is on
//! that method. Purchase reads are retried with [`RetryPolicy`] (from `connector-transport`); the link and the void
//! are never blind-retried after a timeout or 5xx. Webhook rejections are [`WebhookError`], always
//! permanent.

mod client;
mod error;
mod ids;
mod provider;
mod status;
mod webhook;
pub mod wire;

pub use client::{Client, ClientBuilder, Credentials, DEFAULT_LIMITS, PurchaseLookup};
pub use connector_transport::RetryPolicy;
pub use error::{Error, Operation, Result};
pub use ids::{PurchaseId, SunbitLocation};
pub use status::{LENDER_ID, NO_PURCHASE_YET, purchase_decision};
pub use webhook::{
    DEFAULT_TOLERANCE, DedupKey, VerifiedWebhook, WebhookError, WebhookEvent, WebhookVerifier, sign,
};
pub use wire::{EventType, Purchase, PurchaseStatus, SIGNATURE_HEADER};

// `Client` must stay usable as `Arc<dyn FinancingProvider>`.
#[cfg(test)]
fn _is_provider(c: Client) -> financing_core::SharedProvider {
    std::sync::Arc::new(c)
}
