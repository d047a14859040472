//! CareCredit (Synchrony) as a [`FinancingProvider`](financing_core::FinancingProvider): OAuth2
//! client credentials, cardholder lookup, a prefill session that yields the hosted application
//! link, and the pullback that reports the outcome.
//!
//! # Quick start
//!
//! ```no_run
//! use carecredit_client::{Client, Credentials, PartnerCode};
//! use financing_core::{
//!     ApplicationRef, FinancingProvider, FinancingRequest, LenderLocation, LocationId, Money,
//!     PracticeId, UsState,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(
//!     "https://carecredit.example/api/".parse()?,
//!     Credentials {
//!         partner_code: PartnerCode::new("CHAIRSIDE"),
//!         client_id: "chairside".into(),
//!         client_secret: std::env::var("CARECREDIT_CLIENT_SECRET")?.into(),
//!     },
//! )
//! .merchant(LocationId::new("main-st"), "5348120000000001")
//! .build()?;
//!
//! let request = FinancingRequest {
//!     reference: ApplicationRef::new("wf-7f3a-step-2"),
//!     location: LenderLocation {
//!         practice_id: PracticeId::new("smile-dental"),
//!         location_id: LocationId::new("main-st"),
//!         state: UsState::CA,
//!     },
//!     amount: Money::usd(180_000),
//!     prefill: None, // the policy never prefills in California
//!     lookup: None,
//!     return_url: None,
//! };
//! let decision = client.start_application(&request).await?;
//! assert_eq!(decision.label(), "application_started"); // send its link to the patient
//! # Ok(()) }
//! ```
//!
//! # Partner-gated
//!
//! CareCredit publishes no self-serve API. Every vendor path, field name and status spelling lives
//! in one module, [`wire`], whose doc starts `PARTNER-GATED: modelled on public evidence; correct
//! at partner onboarding.` Nothing outside [`wire`] names a vendor field, so onboarding corrections
//! stay in that one file. The evidence and how sure we are of each item are listed there.
//!
//! # What is sent
//!
//! - Every call: the partner code, [`FinancingRequest::reference`](financing_core::FinancingRequest::reference)
//!   as the partner transaction id (our idempotency key), and the location's 16-digit
//!   [`MerchantNumber`], configured per location and checked by [`ClientBuilder::build`].
//! - The lookup: the name plus phone and/or ZIP from `FinancingRequest::lookup`, nothing else.
//! - The prefill session: the amount, and the identity and contact in `FinancingRequest::prefill`
//!   exactly as given; the compliance policy leaves it `None` where prefill is not allowed (always
//!   in California and New York). No procedure codes exist to send.
//! - SSN and date of birth only with [`ClientBuilder::allow_ssn_and_dob`] (off by default), as
//!   `SecretString`, never logged.
//!
//! # Errors
//!
//! [`Error::kind`] classifies every failure into [`financing_core::ErrorKind`]; the table is on
//! that method. Reads are retried with [`RetryPolicy`] (from `connector-transport`); a `401` refreshes the token
//! once; opening a session is never blind-retried after a timeout or 5xx: the next
//! `start_application` finds the session by partner transaction id instead.

mod client;
mod error;
mod ids;
mod provider;
mod status;
pub mod wire;

pub use client::{Client, ClientBuilder, Credentials, DEFAULT_LIMITS};
pub use connector_transport::RetryPolicy;
pub use error::{Error, Operation, Result};
pub use ids::{InvalidMerchantNumber, MerchantNumber, PartnerCode, SessionId};
pub use status::{LENDER_ID, pullback_decision};
pub use wire::{LandingPage, Pullback, PullbackStatus};

// `Client` must stay usable as `Arc<dyn FinancingProvider>`.
#[cfg(test)]
fn _is_provider(c: Client) -> financing_core::SharedProvider {
    std::sync::Arc::new(c)
}
