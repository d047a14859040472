//! Lenders without a public merchant API, run as **link-only** lenders: the patient gets the
//! practice's own application link (through the patient page, after the notices), and staff
//! record the lender's decision from the lender's portal. Pure rules only; the
//! [`FinancingProvider`](crate::FinancingProvider) that carries them is
//! `chairside_engine::link_lender::LinkOnlyProvider`.
//!
//! What is public about each (docs INTEGRATIONS.md, "Other lenders" and "7. Patient-financing
//! lenders"):
//! - **Cherry**: no public developer API (api-evangelist/cherry `apis.yml`). Each practice has a
//!   unique application link, shared by link, QR code, text or email from the Practice Portal
//!   (<https://withcherry.com/faq/>); the decision comes in seconds, with manual review up to 48 h,
//!   and the practice sees approvals, with the amount, in the portal's Applications tab
//!   (<https://withcherry.com/help-center>). Charged on the day of service or an agreed
//!   arrangement: [`SettlementRule::for_lender`] gives it 0 days before treatment.
//! - **Alphaeon Credit**: no public API or webhook docs; CareStack sends a prequalification link
//!   by email and SMS; multi-tier approvals; no transaction more than 30 days before treatment
//!   (contract), so [`SettlementRule::for_lender`] gives it 30 days
//!   (<https://carestack.zendesk.com/hc/en-us/articles/48010006856340>).
//! - **LendingClub Patient Solutions**: no API, webhook or current practice-flow documentation;
//!   the only material is a 2015 provider deck (products through Springstone Financial), so no
//!   timing rule is assumed (<https://cupdf.com/document/example-of-extended-payment-plan.html>).
//!
//! Nothing here invents an API: the only thing sent is the practice's own link, and the only
//! decision is the one staff type in ([`StaffReport`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lender::{Decision, Offer};
use crate::money::Money;
use crate::settlement::SettlementRule;
use crate::{AmountLimits, LenderId};

/// The link-only lenders this version knows by name (the configuration accepts these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownLinkLender {
    /// Cherry (withcherry.com): the practice's unique application link.
    Cherry,
    /// Alphaeon Credit: the practice's prequalification link.
    Alphaeon,
    /// LendingClub Patient Solutions: the practice's application link.
    LendingClub,
}

impl KnownLinkLender {
    /// Every known link-only lender.
    pub const ALL: [Self; 3] = [Self::Cherry, Self::Alphaeon, Self::LendingClub];

    /// The id used in `lenders.order` and the audit trail (`cherry`, `alphaeon`, `lendingclub`).
    pub fn id(self) -> &'static str {
        match self {
            Self::Cherry => "cherry",
            Self::Alphaeon => "alphaeon",
            Self::LendingClub => "lendingclub",
        }
    }

    /// The lender named by `id` (as in `lenders.order`), if it is one of these.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.id() == id)
    }

    /// The name shown to staff and patients unless the practice configures another.
    pub fn default_display_name(self) -> &'static str {
        match self {
            Self::Cherry => "Cherry",
            Self::Alphaeon => "Alphaeon Credit",
            Self::LendingClub => "LendingClub Patient Solutions",
        }
    }

    /// How long Chairside waits for staff to record the decision, unless configured: three days
    /// (Cherry's manual review takes up to 48 h; the others publish nothing, so the same).
    pub fn default_decide_within(self) -> Duration {
        Duration::from_secs(3 * 24 * 60 * 60)
    }

    /// When the lender's charge may run (see the module sources).
    pub fn settlement_rule(self) -> SettlementRule {
        SettlementRule::for_lender(&LenderId::new(self.id()))
    }

    /// What staff are told about the charge's timing, in the settlement task and the docs.
    pub fn timing_rule(self) -> &'static str {
        match self {
            Self::Cherry => "on the day of service (or the arrangement agreed with Cherry)",
            Self::Alphaeon => "not more than 30 days before treatment",
            Self::LendingClub => "as the practice's LendingClub agreement allows",
        }
    }
}

/// One link-only lender as a practice configured it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkOnlyTerms {
    /// The lender's id in the waterfall.
    pub lender: LenderId,
    /// The name shown to staff and patients.
    pub display_name: String,
    /// The practice's own application link (Cherry: the practice's unique link; Alphaeon: the
    /// prequalification link).
    pub application_link: url::Url,
    /// How long to wait for staff to record the decision before moving on.
    pub decide_within: Duration,
    /// The amounts the practice sends to this lender.
    pub limits: AmountLimits,
}

/// The decision staff read in the lender's portal and record on the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum StaffReport {
    /// The lender approved `amount` (less than asked is a counteroffer, never shown as approval).
    Approved {
        /// The approved amount.
        amount: Money,
    },
    /// The lender offered `amount`, less than asked.
    Counteroffer {
        /// The amount offered.
        amount: Money,
    },
    /// The lender declined.
    Declined,
}

/// Why a staff report cannot be recorded. Nothing was recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// An approval or counteroffer of zero or less.
    #[error("the amount must be more than $0.00")]
    NotPositive,
    /// The amount is in another currency than the application's.
    #[error("the amount is in another currency than the application's")]
    Currency,
    /// A counteroffer at or above the amount asked is an approval.
    #[error(
        "a counteroffer of {offered} is not less than the {asked} asked; record it as approved"
    )]
    CounterofferNotLess {
        /// Offered.
        offered: Money,
        /// Asked.
        asked: Money,
    },
}

/// The raw status a staff-recorded decision carries in the audit trail and the attempt record.
pub const STAFF_RAW_STATUS: &str = "recorded_by_staff";

impl StaffReport {
    /// The [`Decision`] this report makes for an application of `requested` at `lender`:
    /// approved for at least the request, a counteroffer below it (Reg B §1002.2(c)), declined.
    ///
    /// # Errors
    /// A [`ReportError`]: an amount of zero or less, another currency, a "counteroffer" that is
    /// not less than asked.
    pub fn decision(self, lender: &LenderId, requested: Money) -> Result<Decision, ReportError> {
        let offer = |amount: Money| Offer {
            lender: lender.clone(),
            amount,
            promotion: None,
            term_months: None,
            apr_bps: None,
            expires_at: None,
            lender_reference: None,
        };
        let check = |amount: Money| {
            if amount.currency() != requested.currency() {
                Err(ReportError::Currency)
            } else if amount.minor() <= 0 {
                Err(ReportError::NotPositive)
            } else {
                Ok(())
            }
        };
        match self {
            Self::Declined => Ok(Decision::Declined {
                reason: None,
                raw_status: STAFF_RAW_STATUS.into(),
            }),
            Self::Approved { amount } => {
                check(amount)?;
                Ok(Decision::from_approval(
                    offer(amount),
                    requested,
                    STAFF_RAW_STATUS,
                ))
            }
            Self::Counteroffer { amount } => {
                check(amount)?;
                if amount.minor() >= requested.minor() {
                    return Err(ReportError::CounterofferNotLess {
                        offered: amount,
                        asked: requested,
                    });
                }
                Ok(Decision::PartiallyApproved {
                    offer: offer(amount),
                    requested,
                    raw_status: STAFF_RAW_STATUS.into(),
                })
            }
        }
    }
}

impl fmt::Display for StaffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Approved { amount } => write!(f, "approved {amount}"),
            Self::Counteroffer { amount } => write!(f, "counteroffer {amount}"),
            Self::Declined => f.write_str("declined"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cherry() -> LenderId {
        LenderId::new("cherry")
    }

    #[test]
    fn an_approval_below_the_request_is_a_counteroffer_and_at_it_an_approval() {
        let asked = Money::usd(120_000);
        let full = StaffReport::Approved { amount: asked }
            .decision(&cherry(), asked)
            .unwrap();
        assert!(
            matches!(&full, Decision::Approved { offer, raw_status } if offer.amount == asked && raw_status == STAFF_RAW_STATUS)
        );
        let short = StaffReport::Approved {
            amount: Money::usd(80_000),
        }
        .decision(&cherry(), asked)
        .unwrap();
        assert!(
            matches!(short, Decision::PartiallyApproved { offer, requested, .. } if offer.amount == Money::usd(80_000) && requested == asked)
        );
        let counter = StaffReport::Counteroffer {
            amount: Money::usd(50_000),
        }
        .decision(&cherry(), asked)
        .unwrap();
        assert!(matches!(counter, Decision::PartiallyApproved { .. }));
        assert!(matches!(
            StaffReport::Declined.decision(&cherry(), asked).unwrap(),
            Decision::Declined { .. }
        ));
    }

    #[test]
    fn nonsense_reports_are_refused() {
        let asked = Money::usd(120_000);
        assert_eq!(
            StaffReport::Approved {
                amount: Money::usd(0)
            }
            .decision(&cherry(), asked),
            Err(ReportError::NotPositive)
        );
        assert_eq!(
            StaffReport::Counteroffer {
                amount: Money::usd(-5)
            }
            .decision(&cherry(), asked),
            Err(ReportError::NotPositive)
        );
        assert!(matches!(
            StaffReport::Counteroffer { amount: asked }.decision(&cherry(), asked),
            Err(ReportError::CounterofferNotLess { .. })
        ));
    }

    #[test]
    fn known_lenders_round_trip_and_carry_their_timing_rules() {
        for l in KnownLinkLender::ALL {
            assert_eq!(KnownLinkLender::from_id(l.id()), Some(l));
        }
        assert_eq!(KnownLinkLender::from_id("carecredit"), None);
        assert_eq!(
            KnownLinkLender::Alphaeon
                .settlement_rule()
                .max_days_before_treatment,
            Some(30)
        );
        assert_eq!(
            KnownLinkLender::Cherry
                .settlement_rule()
                .max_days_before_treatment,
            Some(0)
        );
        assert_eq!(
            KnownLinkLender::LendingClub
                .settlement_rule()
                .max_days_before_treatment,
            None
        );
    }
}
