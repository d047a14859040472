//! HubSpot CRM for follow-up: contacts upserted by email, deals upserted by a unique property
//! with a stage per outcome, follow-up tasks on the contact. Authenticated with a private app's
//! access token (`Authorization: Bearer …`), held as a [`secrecy::SecretString`].
//!
//! Only what follow-up needs crosses: a contact's name, email and phone, a deal's name, stage
//! and (when the practice turns it on) amount, a task's subject and body. Never procedure codes
//! or clinical data: the caller decides, this crate sends what it is given.
//!
//! Every path and field name is in [`wire`], with the HubSpot documentation it comes from.
//!
//! # Quick start
//!
//! ```no_run
//! use hubspot_client::{Client, ContactInput, DEFAULT_BASE_URL};
//! use secrecy::SecretString;
//! use url::Url;
//!
//! # async fn run() -> Result<(), hubspot_client::Error> {
//! let client = Client::builder(
//!     Url::parse(DEFAULT_BASE_URL).unwrap(),
//!     SecretString::from(std::env::var("HUBSPOT_TOKEN").unwrap_or_default()),
//! )
//! .build()?;
//! let contact = client
//!     .upsert_contact(&ContactInput {
//!         email: "testa.patient@example.test".into(),
//!         first_name: "Testa".into(),
//!         last_name: "Patient".into(),
//!         phone: None,
//!     })
//!     .await?;
//! # let _ = contact; Ok(()) }
//! ```
//!
//! # Exactly once
//!
//! HubSpot has no idempotency-key header. Contacts and deals are upserts by a unique property
//! (the email; a custom unique deal property, [`DEFAULT_DEAL_ID_PROPERTY`]), so repeating them
//! writes the same record; associations are set or not. Tasks are created only after a search by
//! subject finds none ([`Client::ensure_task`]).

mod client;
mod error;
mod ids;
pub mod wire;

pub use client::{
    Client, ClientBuilder, ContactInput, DEFAULT_BASE_URL, DEFAULT_DEAL_ID_PROPERTY, DealInput,
    TaskInput,
};
pub use error::{Error, Operation, Result};
pub use ids::{ContactId, DealId, StageId, TaskId};
