//! Chairside's domain, shared by every crate: [`Money`], patient and plan types, the lender trait
//! [`FinancingProvider`], the [`Waterfall`], the compliance [`Policy`] and the shared [`ErrorKind`].
//!
//! No HTTP lives here: connector crates depend on this one, never the other way round.
//!
//! # Quick start
//!
//! ```
//! use financing_core::{CdtCode, CoverageSplit, Money, PlannedProcedure, TreatmentPlan, PlanId, PatientId};
//!
//! let plan = TreatmentPlan {
//!     id: PlanId::new("tx-42"),
//!     revision: "1".into(),
//!     patient_id: PatientId::new("pat-7"),
//!     accepted_at: chrono::Utc::now(),
//!     treatment_date: None,
//!     procedures: vec![PlannedProcedure {
//!         code: CdtCode::new("D2740"),
//!         fee: Money::parse("1300.00", financing_core::Currency::Usd)?,
//!         primary_estimate: Some(Money::usd(50_000)),
//!         secondary_estimate: None,
//!     }],
//! };
//! let split = CoverageSplit::from_plan(&plan)?;
//! assert_eq!(split.patient_portion.to_string(), "$800.00");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod check;
mod error;
mod ids;
mod inhouse;
mod lender;
pub mod link_only;
mod money;
pub mod parse;
mod patient;
mod plan;
pub mod policy;
mod settlement;
mod waterfall;

pub use error::{Backoff, Classify, ErrorKind, ProviderError};
pub use ids::{
    ApplicationRef, LenderId, LenderReference, LocationId, PatientId, PlanId, PracticeId,
};
pub use lender::{
    AmountLimits, Applicant, ApplicationHandle, Decision, FinancingProvider, FinancingRequest,
    LenderLocation, Offer, PollSchedule, PollStep, SharedProvider,
};
pub use money::{Currency, Money, MoneyError};
pub use patient::{InvalidState, Language, PatientContact, PostalAddress, SmsConsent, UsState};
pub use plan::{CdtCode, CoverageSplit, PlanError, PlannedProcedure, TreatmentPlan};

pub use inhouse::{
    DepositRule, InHouseError, InHouseOffer, InHouseTerms, InstallmentInterval, IntervalUnit,
};
pub use policy::{ChargeTiming, Policy, PolicySettings, SmsBlock, SmsPurpose, SmsVerdict};
pub use settlement::{SettleOn, Settlement, SettlementRequest, SettlementRule, settle_on};
pub use waterfall::{
    Attempt, AttemptOutcome, LenderSlot, PartialApprovalRule, Step, Waterfall, WaterfallOutcome,
    WaterfallPolicy,
};

pub use async_trait::async_trait;
pub use chrono_tz::Tz;
