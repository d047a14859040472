//! What a lender sees, what it answers, and the trait every lender plug-in implements.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::ProviderError;
use crate::ids::{ApplicationRef, LenderId, LenderReference, LocationId, PracticeId};
use crate::money::Money;
use crate::patient::{PatientContact, UsState};

/// The practice location an application is for, as a lender needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LenderLocation {
    /// Our practice id.
    pub practice_id: PracticeId,
    /// The location.
    pub location_id: LocationId,
    /// The practice's state (the policy has already been applied for it).
    pub state: UsState,
}

/// Identity and contact data a lender may receive, and nothing else (HIPAA minimum necessary):
/// there is no field for procedures, diagnoses or clinical notes. PHI: redacted `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Mobile phone, E.164.
    pub mobile_phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Street lines.
    pub address_lines: Vec<String>,
    /// City.
    pub city: Option<String>,
    /// State of residence.
    pub state: Option<UsState>,
    /// ZIP.
    pub postal_code: Option<String>,
    /// Date of birth: only when the policy and configuration allow it (COMPLIANCE.md §8).
    pub date_of_birth: Option<NaiveDate>,
}

impl Applicant {
    /// The identity and contact part of a patient record. Date of birth is left out: a lender that
    /// needs it asks the patient on its own page.
    pub fn from_contact(p: &PatientContact) -> Self {
        let address = p.address.as_ref();
        Self {
            first_name: p.first_name.clone(),
            last_name: p.last_name.clone(),
            mobile_phone: p.mobile_phone.clone(),
            email: p.email.clone(),
            address_lines: address.map(|a| a.lines.clone()).unwrap_or_default(),
            city: address.map(|a| a.city.clone()),
            state: address.and_then(|a| a.state),
            postal_code: address.map(|a| a.postal_code.clone()),
            date_of_birth: None,
        }
    }
}

impl fmt::Debug for Applicant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applicant")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// One financing request, as every lender in the waterfall sees it.
///
/// Built by the orchestrator after the compliance [`Policy`](crate::Policy) ran: `prefill` is
/// `Some` only where staff-side prefill is allowed (never in CA or NY), and `lookup` only where a
/// cardholder lookup may use the patient's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinancingRequest {
    /// Our reference, carried through every call of this application (idempotency).
    pub reference: ApplicationRef,
    /// The practice location.
    pub location: LenderLocation,
    /// The amount asked for: the patient portion minus any deposit.
    pub amount: Money,
    /// Identity and contact to prefill the lender's hosted application with, where allowed.
    pub prefill: Option<Applicant>,
    /// Identity for an existing-cardholder lookup, where allowed.
    pub lookup: Option<Applicant>,
    /// Where the lender's hosted page sends the patient back to, when it supports it.
    pub return_url: Option<Url>,
}

/// The terms a lender offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The lender.
    pub lender: LenderId,
    /// The approved (or available) amount.
    pub amount: Money,
    /// The lender's promotion or product (`6 months no interest`, `24 months reduced APR`), as the
    /// lender words it; shown only with its disclosure text.
    pub promotion: Option<String>,
    /// Term in months, when known.
    pub term_months: Option<u16>,
    /// APR in basis points (1999 = 19.99 %), when known. No floats.
    pub apr_bps: Option<u32>,
    /// When the offer lapses.
    pub expires_at: Option<DateTime<Utc>>,
    /// The lender's id for the account, application or purchase.
    pub lender_reference: Option<LenderReference>,
}

/// A lender's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// Approved for at least the amount asked.
    Approved {
        /// The offer.
        offer: Offer,
        /// The lender's raw status.
        raw_status: String,
    },
    /// Approved for less than asked: a counteroffer (Reg B §1002.2(c)), never shown as full approval.
    PartiallyApproved {
        /// The counteroffer.
        offer: Offer,
        /// What was asked.
        requested: Money,
        /// The lender's raw status.
        raw_status: String,
    },
    /// Declined. Adverse-action notices are the lender's duty; Chairside never composes reasons.
    Declined {
        /// Whatever reason the lender gave, verbatim.
        reason: Option<String>,
        /// The lender's raw status.
        raw_status: String,
    },
    /// Prequalified up to the offer's amount (a soft pull: Sunbit's prequalification, CareCredit's
    /// QuickScreen pre-approval). Not financing: nothing is bought until the patient completes the
    /// purchase or the application at the lender, so the orchestrator keeps waiting for the real
    /// decision (polls and webhooks) and shows the patient where they stand.
    Prequalified {
        /// The most the patient may finance at this lender, and when that lapses.
        offer: Offer,
        /// The amount asked (Chairside's request, never what the patient typed).
        requested: Money,
        /// The lender's raw status.
        raw_status: String,
    },
    /// The lender needs a person before anything can go on (CareCredit `CallForAuth`: call for an
    /// authorization; `DupQS`: a duplicate QuickScreen). The orchestrator holds this lender's
    /// application and hands the instruction to staff; it never silently moves on.
    NeedsStaff {
        /// What staff must do, from the lender's client: whom to call and the reference to quote.
        /// No PHI.
        instruction: String,
        /// The lender's raw status.
        raw_status: String,
    },
    /// No decision yet, and the patient has not finished the application (or the lender does
    /// not say): poll again or wait for a callback; the patient may still be reminded.
    Pending {
        /// Poll no sooner than this.
        poll_after: Option<Duration>,
        /// The lender's raw status.
        raw_status: String,
    },
    /// The patient submitted the application and the lender is reviewing it (CareCredit
    /// `Pending`: "a decision is under review"). Not final: poll again; but the patient has done
    /// their part, so they are no longer reminded and the wait never ends as "the patient did
    /// not finish". The lender's own answer (a decision, or its expiry of the result) ends it.
    UnderReview {
        /// Poll no sooner than this.
        poll_after: Option<Duration>,
        /// The lender's raw status.
        raw_status: String,
    },
    /// A hosted application was opened: send this link to the patient.
    ApplicationStarted {
        /// The lender's hosted page.
        link: Url,
        /// The lender's id for the session or application.
        lender_reference: LenderReference,
        /// When the link stops working.
        expires_at: Option<DateTime<Utc>>,
    },
    /// The application or offer expired (the patient never finished, or the offer lapsed).
    Expired {
        /// The lender's raw status.
        raw_status: String,
    },
    /// An existing account with available credit; the application is skipped when it covers the
    /// amount.
    Cardholder {
        /// Credit available on the account.
        available_credit: Money,
        /// The lender's account reference (never a full account number).
        lender_reference: Option<LenderReference>,
    },
    /// A status this version does not know. Kept raw; the orchestrator hands it to staff.
    Unknown(String),
}

impl Decision {
    /// True when the lender's answer ends this lender's part of the waterfall.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Self::Pending { .. }
                | Self::UnderReview { .. }
                | Self::ApplicationStarted { .. }
                | Self::Prequalified { .. }
                | Self::NeedsStaff { .. }
        )
    }

    /// A stable short label for logs, metrics and the audit trail (`approved`, `declined`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Approved { .. } => "approved",
            Self::PartiallyApproved { .. } => "partially_approved",
            Self::Declined { .. } => "declined",
            Self::Prequalified { .. } => "prequalified",
            Self::NeedsStaff { .. } => "needs_staff",
            Self::Pending { .. } => "pending",
            Self::UnderReview { .. } => "under_review",
            Self::ApplicationStarted { .. } => "application_started",
            Self::Expired { .. } => "expired",
            Self::Cardholder { .. } => "cardholder",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Maps an approved amount against the amount asked: at least the request is [`Decision::Approved`],
    /// less is a [`Decision::PartiallyApproved`] counteroffer, zero is [`Decision::Declined`].
    pub fn from_approval(offer: Offer, requested: Money, raw_status: impl Into<String>) -> Self {
        let raw_status = raw_status.into();
        if offer.amount.minor() <= 0 {
            Self::Declined {
                reason: None,
                raw_status,
            }
        } else if offer.amount.currency() == requested.currency()
            && offer.amount.minor() < requested.minor()
        {
            Self::PartiallyApproved {
                offer,
                requested,
                raw_status,
            }
        } else {
            Self::Approved { offer, raw_status }
        }
    }
}

impl Decision {
    /// A prequalification of `offer.amount` for the amount asked: [`Decision::Prequalified`]
    /// whatever the amount (it is not financing, so it is never compared as one), or
    /// [`Decision::Declined`] for zero (not prequalified at all).
    pub fn from_prequalification(
        offer: Offer,
        requested: Money,
        raw_status: impl Into<String>,
    ) -> Self {
        let raw_status = raw_status.into();
        if offer.amount.minor() <= 0 {
            Self::Declined {
                reason: None,
                raw_status,
            }
        } else {
            Self::Prequalified {
                offer,
                requested,
                raw_status,
            }
        }
    }
}

/// One step of a [`PollSchedule`]: while less than `until` has passed since the application link
/// went out, ask every `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollStep {
    /// How long after the link went out this step lasts.
    #[serde(with = "duration_ms")]
    pub until: Duration,
    /// The wait between two status reads during the step.
    #[serde(with = "duration_ms")]
    pub every: Duration,
}

/// How a lender's application is watched: how often its status is read (fast while the patient is
/// likely on the lender's page, slower later) and how long its hosted session lives. Each lender
/// client gives its own ([`FinancingProvider::poll_schedule`]); a plug-in lender gets
/// [`PollSchedule::default`]. The workflow machine sets its timers from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollSchedule {
    /// The fast steps, in order of `until`.
    pub steps: Vec<PollStep>,
    /// The wait between reads after the last step.
    #[serde(with = "duration_ms")]
    pub then_every: Duration,
    /// How long the lender's hosted session lives when the lender does not say
    /// ([`Decision::ApplicationStarted::expires_at`] wins). `None`: it does not lapse on its own.
    #[serde(default, with = "opt_duration_ms")]
    pub session_life: Option<Duration>,
    /// How long before the session lapses the patient is reminded (when the practice's own
    /// reminder delays would come too late).
    #[serde(with = "duration_ms")]
    pub remind_before_expiry: Duration,
    /// `Some(wait)` for a lender without an API (a link-only lender, see
    /// [`link_only`](crate::link_only)): its status is never read; staff record its decision from
    /// the lender's portal, and when none is recorded within `wait` of the link going out the
    /// waterfall moves on and staff get a task. `None` (every lender with an API): polled as above.
    #[serde(default, with = "opt_duration_ms")]
    pub staff_decides_within: Option<Duration>,
}

impl Default for PollSchedule {
    /// Every 5 s for the first 15 minutes (the patient is on the lender's page), every minute up
    /// to 2 hours, then every 10 minutes; no session life; a reminder 10 minutes before a lapse.
    fn default() -> Self {
        Self {
            steps: vec![
                PollStep {
                    until: Duration::from_secs(15 * 60),
                    every: Duration::from_secs(5),
                },
                PollStep {
                    until: Duration::from_secs(2 * 60 * 60),
                    every: Duration::from_secs(60),
                },
            ],
            then_every: Duration::from_secs(10 * 60),
            session_life: None,
            remind_before_expiry: Duration::from_secs(10 * 60),
            staff_decides_within: None,
        }
    }
}

impl PollSchedule {
    /// The wait before the next status read, `elapsed` after the link went out. Never zero.
    pub fn interval_at(&self, elapsed: Duration) -> Duration {
        self.steps
            .iter()
            .find(|s| elapsed < s.until)
            .map_or(self.then_every, |s| s.every)
            .max(Duration::from_millis(1))
    }

    /// Every duration divided by `factor` (at least 1 ms each): the demo's compressed day.
    pub fn compressed(&self, factor: u32) -> Self {
        let f = factor.max(1);
        let c = |d: Duration| (d / f).max(Duration::from_millis(1));
        Self {
            steps: self
                .steps
                .iter()
                .map(|s| PollStep {
                    until: c(s.until),
                    every: c(s.every),
                })
                .collect(),
            then_every: c(self.then_every),
            session_life: self.session_life.map(c),
            remind_before_expiry: c(self.remind_before_expiry),
            staff_decides_within: self.staff_decides_within.map(c),
        }
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}

/// The amounts a lender finances, from its programme rules or the practice's contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmountLimits {
    /// Smallest amount the lender finances.
    pub min: Option<Money>,
    /// Largest amount the lender finances.
    pub max: Option<Money>,
}

impl AmountLimits {
    /// No limits.
    pub const NONE: Self = Self {
        min: None,
        max: None,
    };

    /// True when `amount` is within the limits.
    pub fn admits(&self, amount: Money) -> bool {
        self.min.is_none_or(|m| amount.minor() >= m.minor())
            && self.max.is_none_or(|m| amount.minor() <= m.minor())
    }
}

/// A lender's pending application, as the orchestrator remembers it between polls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationHandle {
    /// Our reference.
    pub reference: ApplicationRef,
    /// The lender's session or application id.
    pub lender_reference: LenderReference,
    /// The practice location (some lenders key status by merchant).
    pub location: LenderLocation,
    /// The amount asked.
    pub amount: Money,
}

/// A lender plug-in. Implemented by `carecredit-client`, `sunbit-client`, and by anyone who wants
/// another lender in the waterfall (see `examples/`).
///
/// A lender decline is `Ok(Decision::Declined { .. })`, never an `Err`: errors are for calls that
/// failed, classified by [`ErrorKind`](crate::ErrorKind).
#[async_trait]
pub trait FinancingProvider: Send + Sync + fmt::Debug {
    /// The stable id used in configuration and the audit trail.
    fn id(&self) -> LenderId;

    /// The name shown to staff and patients (`CareCredit`).
    fn display_name(&self) -> &str;

    /// The amounts this lender finances.
    fn limits(&self) -> AmountLimits {
        AmountLimits::NONE
    }

    /// How often this lender's application status is read and how long its session lives.
    /// Default: [`PollSchedule::default`].
    fn poll_schedule(&self) -> PollSchedule {
        PollSchedule::default()
    }

    /// Looks up an existing account for the applicant. `Ok(None)` when the lender has no lookup or
    /// no account was found; `Some(Decision::Cardholder { .. })` when one was.
    ///
    /// # Errors
    /// A [`ProviderError`] of kind transient, permanent or indeterminate.
    async fn lookup_cardholder(
        &self,
        request: &FinancingRequest,
    ) -> Result<Option<Decision>, ProviderError> {
        let _ = request;
        Ok(None)
    }

    /// Opens an application for the request, usually a hosted link for the patient
    /// ([`Decision::ApplicationStarted`]); some lenders decide at once. Calling it twice with the same
    /// [`FinancingRequest::reference`] must not open a second application.
    ///
    /// # Errors
    /// A [`ProviderError`] of kind transient, permanent or indeterminate.
    async fn start_application(
        &self,
        request: &FinancingRequest,
    ) -> Result<Decision, ProviderError>;

    /// The application's current state (a pullback or status call).
    ///
    /// # Errors
    /// A [`ProviderError`] of kind transient, permanent or indeterminate.
    async fn application_status(
        &self,
        application: &ApplicationHandle,
    ) -> Result<Decision, ProviderError>;

    /// Withdraws an open application (plan rejected after acceptance). Lenders without a cancel
    /// call let it expire.
    ///
    /// # Errors
    /// A [`ProviderError`] of kind transient, permanent or indeterminate.
    async fn cancel_application(
        &self,
        application: &ApplicationHandle,
    ) -> Result<(), ProviderError> {
        let _ = application;
        Ok(())
    }

    /// Runs the lender charge of an approved financing on its settlement day (see
    /// [`settle_on`](crate::settle_on)). Calling it twice with the same
    /// [`SettlementRequest::reference`](crate::SettlementRequest::reference) must not charge twice
    /// (the purchase carries the reference; a repeat finds it). The default is
    /// [`Settlement::Manual`](crate::Settlement::Manual): the lender's API takes no charge, and
    /// staff run it in the lender's portal.
    ///
    /// # Errors
    /// A [`ProviderError`] of kind transient, permanent or indeterminate.
    async fn settle(
        &self,
        request: &crate::SettlementRequest,
    ) -> Result<crate::Settlement, ProviderError> {
        let _ = request;
        Ok(crate::Settlement::Manual)
    }
}

/// A shared lender plug-in, as the waterfall holds it.
pub type SharedProvider = Arc<dyn FinancingProvider>;

// Ensure `FinancingProvider` is object safe.
#[cfg(test)]
fn _obj_safe(_: Box<dyn FinancingProvider>) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(cents: i64) -> Offer {
        Offer {
            lender: LenderId::new("carecredit"),
            amount: Money::usd(cents),
            promotion: None,
            term_months: None,
            apr_bps: None,
            expires_at: None,
            lender_reference: None,
        }
    }

    #[test]
    fn approval_below_the_request_is_a_counteroffer() {
        let d = Decision::from_approval(offer(60_000), Money::usd(100_000), "PreApproved");
        assert!(
            matches!(d, Decision::PartiallyApproved { requested, .. } if requested == Money::usd(100_000))
        );
        assert!(matches!(
            Decision::from_approval(offer(100_000), Money::usd(100_000), "PreApproved"),
            Decision::Approved { .. }
        ));
        assert!(matches!(
            Decision::from_approval(offer(0), Money::usd(100_000), "x"),
            Decision::Declined { .. }
        ));
    }

    #[test]
    fn a_prequalification_is_never_an_approval_and_zero_is_a_decline() {
        let d = Decision::from_prequalification(offer(150_000), Money::usd(100_000), "PREQUAL");
        assert!(matches!(d, Decision::Prequalified { .. }));
        assert!(!d.is_final());
        assert!(matches!(
            Decision::from_prequalification(offer(0), Money::usd(100_000), "PREQUAL"),
            Decision::Declined { .. }
        ));
    }

    #[test]
    fn the_default_schedule_polls_fast_first_then_slower() {
        let s = PollSchedule::default();
        assert_eq!(s.interval_at(Duration::ZERO), Duration::from_secs(5));
        assert_eq!(
            s.interval_at(Duration::from_secs(14 * 60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            s.interval_at(Duration::from_secs(15 * 60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            s.interval_at(Duration::from_secs(3 * 3600)),
            Duration::from_secs(600)
        );
        let fast = s.compressed(500);
        assert_eq!(fast.interval_at(Duration::ZERO), Duration::from_millis(10));
        let empty = PollSchedule {
            steps: vec![],
            then_every: Duration::ZERO,
            session_life: None,
            remind_before_expiry: Duration::ZERO,
            staff_decides_within: None,
        };
        assert!(empty.interval_at(Duration::ZERO) > Duration::ZERO);
    }

    #[test]
    fn a_schedule_round_trips_through_json() {
        let s = PollSchedule {
            session_life: Some(Duration::from_secs(1800)),
            ..PollSchedule::default()
        };
        let back: PollSchedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn limits_admit_inclusive_bounds() {
        let l = AmountLimits {
            min: Some(Money::usd(20_000)),
            max: Some(Money::usd(2_500_000)),
        };
        assert!(l.admits(Money::usd(20_000)) && l.admits(Money::usd(2_500_000)));
        assert!(!l.admits(Money::usd(19_999)) && !l.admits(Money::usd(2_500_001)));
        assert!(AmountLimits::NONE.admits(Money::usd(1)));
    }

    #[test]
    fn applicant_debug_is_redacted() {
        let a = Applicant {
            first_name: "Marisol".into(),
            last_name: "Testcase".into(),
            mobile_phone: Some("+15555550100".into()),
            email: Some("m@example.test".into()),
            address_lines: vec![],
            city: None,
            state: None,
            postal_code: Some("10001".into()),
            date_of_birth: None,
        };
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("Marisol") && !shown.contains("5555550100") && !shown.contains("10001")
        );
    }

    #[test]
    fn pending_and_started_are_not_final() {
        let started = Decision::ApplicationStarted {
            link: Url::parse("https://lender.example/apply/1").unwrap(),
            lender_reference: LenderReference::new("s1"),
            expires_at: None,
        };
        assert!(!started.is_final());
        assert!(
            !Decision::Pending {
                poll_after: None,
                raw_status: "Pending".into()
            }
            .is_final()
        );
        assert!(
            Decision::Expired {
                raw_status: "Expired".into()
            }
            .is_final()
        );
    }
}
