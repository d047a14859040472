//! A client for the [Open Dental API](https://opendental.com/site/apispecification.html) (public
//! spec): treatment plans and their procedures, procedure sync, patients, commlogs (the ledger
//! note) and payments, with `ODFHIR` authentication, `Offset`/`Limit` paging, change cursors,
//! and failures classified as [`financing_core::ErrorKind`].
//!
//! # Quick start
//!
//! ```no_run
//! use opendental_client::{AcceptanceRule, ApiMode, Client, PlanCursor, SecretString};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(
//!     ApiMode::Remote.base_url(),
//!     SecretString::from("developer-key"),
//!     SecretString::from("customer-key"),
//! )
//! .build()?;
//!
//! // Poll for plans edited since the stored cursor, and price the accepted ones.
//! let cursor: PlanCursor = PlanCursor::beginning();
//! let changes = client.changed_treat_plans(&cursor).await?;
//! for plan in changes.accepted(AcceptanceRule::SignedSaved) {
//!     let detail = client.plan_detail(plan.clone()).await?;
//!     let plan = detail.to_treatment_plan(AcceptanceRule::SignedSaved, chrono_tz::America::Denver)?;
//!     let split = financing_core::CoverageSplit::from_plan(&plan)?;
//!     assert!(!split.patient_portion.is_negative());
//! }
//! let store_me: String = changes.next.to_string();
//! # let _ = store_me;
//! # Ok(())
//! # }
//! ```
//!
//! # Open Dental specifics
//!
//! - Every vendor path, field name and quirk (PascalCase, `"true"`/`"false"` strings, money as
//!   strings or numbers, `0001-01-01` as none) is handled in one module, `wire`.
//! - Times are Open Dental server times (office-local, no zone): `NaiveDateTime`. Cursors compare
//!   them only with other server times.
//! - There is no "Accepted" status: see [`AcceptanceRule`].
//! - Writes (`POST /commlogs`, `POST /payments`) take no idempotency key: a timeout or 5xx is
//!   [`Indeterminate`](financing_core::ErrorKind::Indeterminate). Use
//!   [`Client::write_commlog_once`] and [`Client::create_payment_once`], which look for the
//!   caller's marker before writing.
//! - Base URLs: [`ApiMode`] and the `*_BASE_URL` constants; any URL can be injected (a stand-in
//!   server, wiremock).

mod client;
mod commlogs;
mod cursor;
mod error;
mod ids;
mod patients;
mod payments;
mod procedure_logs;
mod treat_plans;
mod types;
mod wire;

pub use client::{
    API_SERVICE_BASE_URL, ApiMode, Client, ClientBuilder, LOCAL_BASE_URL, LOCAL_PAGE_LIMIT,
    REMOTE_BASE_URL, REMOTE_PAGE_LIMIT,
};
pub use connector_transport::RetryPolicy;
pub use cursor::{CursorError, PlanCursor, SyncStamp};
pub use error::{DecodeError, DecodeReason, Error, Operation, Result, VendorBody};
pub use ids::{
    AptNum, ClinicNum, CodeNum, CommlogNum, DefNum, PatNum, PayNum, ProcNum, ProcTpNum, ProvNum,
    TreatPlanAttachNum, TreatPlanNum,
};
pub use patients::NewPatient;
pub use procedure_logs::{ProcedureLogQuery, ProcedureLogSync};
pub use treat_plans::{
    AcceptanceRule, PlanChanges, PlanDetail, PlanMappingError, TreatPlanQuery, UnreadablePlan,
    is_accepted,
};
pub use types::{
    CommMode, Commlog, NewCommlog, NewPayment, NewTreatPlan, Patient, Payment, ProcStatus, ProcTp,
    ProcedureLog, SentOrReceived, TpStatus, TpType, TreatPlan, TreatPlanAttach, TxtMsgOk,
    WriteOutcome,
};

pub use secrecy::SecretString;
