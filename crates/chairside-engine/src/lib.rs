//! The Chairside engine: what runs a plan from "accepted" to "ledger updated", durably.
//!
//! - [`store`]: the durable state (SQLite), split by role.
//! - [`runner`]: claims due workflows and performs their commands with the intent -> call ->
//!   result protocol; [`detect`]: the poller that turns accepted plans into workflows;
//!   [`Runner::work`](runner::Runner::work) and
//!   [`Runner::poll_practices`](runner::Runner::poll_practices) are the long-running loops (a
//!   continuous pool of slots; one poller per practice).
//! - [`ports`]: what the engine needs of a practice system, Stripe and messaging; [`adapters`]
//!   implement them over the connector crates.
//! - [`staff`]: staff decisions (retry, cancel, a link-only lender's decision, ...), each checked
//!   and recorded in one transaction.
//! - [`link_lender`]: the one lender plug-in for lenders without an API (Cherry, Alphaeon,
//!   LendingClub): the practice's link out, the decision from staff.
//! - [`consent`]: a practice system's SMS consent field as the practice's attestation.
//! - [`outbound`]: events written with each step, delivered once per subscriber (signed
//!   webhooks, the CRM, the lab) with retries and a delivery log.
//! - [`clock`], [`links`] (signed patient page links), [`note`] (ledger note text).
//! - [`engine`]: [`EngineBuilder`] puts them together for an embedder (store, practices, plug-in
//!   lenders, clock) and checks that every lender a waterfall names is provided.
//!
//! The pure workflow (states, events, the machine) is the `chairside-workflow` crate; the HTTP
//! surface (webhooks, patient page, staff dashboard) is `chairside-http`.

pub mod adapters;
pub mod clock;
pub mod consent;
pub mod detect;
pub mod engine;
pub mod intake;
mod intake_send;
pub mod link_lender;
pub mod links;
pub mod note;
pub mod outbound;
pub mod patient_report;
mod pool;
pub mod ports;
pub mod runner;
pub mod staff;
pub mod store;

pub use engine::{Engine, EngineBuilder, EngineError};
