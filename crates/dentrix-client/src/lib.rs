//! Dentrix Ascend (cloud) API client: OAuth2 client credentials with a shared token cache,
//! treatment-plan cases (`txcases`) polled by `lastModified` with a cursor, a case's procedures
//! with fees and insurance estimates, patients' contact data, and notes on the patient's record.
//!
//! # Quick start
//!
//! ```no_run
//! use dentrix_client::{Client, Credentials, OrganizationId, SyncCursor};
//! use secrecy::SecretString;
//! use url::Url;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let credentials = Credentials::new(
//!     "client-id",
//!     SecretString::from(std::env::var("ASCEND_CLIENT_SECRET")?),
//!     OrganizationId::new("1234"),
//! );
//! let client = Client::builder(Url::parse("https://prod.hs1api.com/")?, credentials)
//!     .timeout(std::time::Duration::from_secs(10))
//!     .build()?;
//!
//! let changed = client.list_changed_txcases(&SyncCursor::beginning()).await?;
//! for case in changed.cases.iter().filter(|c| c.status.is_accepted()) {
//!     let detail = client.get_txcase(&case.id).await?;
//!     let plan = detail.to_treatment_plan(chrono::Utc::now());
//!     println!("{} procedures", plan.procedures.len());
//! }
//! let store_me: String = changed.next_cursor.to_string();
//! # let _ = store_me;
//! # Ok(()) }
//! ```
//!
//! # Shape
//!
//! - Every vendor path, field name and status string lives in [`wire`], which is modelled on
//!   public evidence and marked for correction at onboarding. The rest of the crate uses the typed
//!   domain structs ([`TxCase`], [`TxCaseDetail`], [`Procedure`], [`Patient`], [`PatientNote`]).
//! - Failures are one [`Error`] whose [`Error::kind`] gives the shared
//!   [`ErrorKind`](financing_core::ErrorKind). Reads are retried under
//!   [`RetryPolicy`] (from `connector-transport`, capped below the runner's lease); a 401 refreshes the token once; writes are never
//!   retried blindly.
//! - Nothing here logs a body or a patient field: traces carry operation, status and attempt only.

mod client;
mod convert;
mod error;
mod ids;
mod notes;
mod patients;
mod status;
mod txcases;
pub mod wire;

pub use client::{Client, ClientBuilder, Credentials};
pub use connector_transport::RetryPolicy;
pub use error::{DecodeProblem, Error, Result, VendorBody};
pub use ids::{AppointmentId, NoteId, OrganizationId, PatientId, ProcedureId, TxCaseId, VisitId};
pub use notes::{NoteMarker, NoteWrite, PatientNote};
pub use patients::{Patient, patient_contact};
pub use status::CaseStatus;
pub use txcases::{
    ChangedCases, InvalidCursor, Procedure, SyncCursor, TxCase, TxCaseDetail, UnreadableCase,
};
