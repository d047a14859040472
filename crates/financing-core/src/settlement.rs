//! Lender settlement: when an approval becomes money. A financed plan is settled when the lender
//! charge runs (a purchase on the patient's CareCredit account, Sunbit's purchase), on the
//! treatment date and never earlier than the lender allows. The timing rules here are pure; the
//! call itself is [`FinancingProvider::settle`](crate::FinancingProvider::settle).

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::{ApplicationRef, LenderId, LenderLocation, LenderReference, Money};

/// A lender's rule on when its charge may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRule {
    /// The charge may run at most this many days before the treatment date (`None`: no limit
    /// known). CareCredit: 30 (no charge more than 30 days before treatment; the rule is the
    /// practice's agreement, see docs/collection.md).
    pub max_days_before_treatment: Option<u32>,
}

impl SettlementRule {
    /// No limit known.
    pub const NONE: Self = Self {
        max_days_before_treatment: None,
    };

    /// The known rule of a lender by id: CareCredit's and Alphaeon Credit's 30 days, Cherry's
    /// same day (0); no limit for the others. Sources: docs/collection.md; for the link-only
    /// lenders, [`link_only`](crate::link_only).
    pub fn for_lender(lender: &LenderId) -> Self {
        match lender.as_str() {
            "carecredit" | "alphaeon" => Self {
                max_days_before_treatment: Some(30),
            },
            "cherry" => Self {
                max_days_before_treatment: Some(0),
            },
            _ => Self::NONE,
        }
    }

    /// The first day the charge may run for a treatment on `treatment`.
    pub fn earliest(&self, treatment: NaiveDate) -> NaiveDate {
        self.max_days_before_treatment
            .and_then(|d| treatment.checked_sub_days(Days::new(u64::from(d))))
            .unwrap_or(NaiveDate::MIN)
    }

    /// Whether the charge may run on `day` for a treatment on `treatment`.
    pub fn allows(&self, day: NaiveDate, treatment: NaiveDate) -> bool {
        day >= self.earliest(treatment)
    }
}

/// When to settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "settle", rename_all = "snake_case")]
pub enum SettleOn {
    /// Run the charge on this day (the treatment date, or today when the treatment is past).
    Day {
        /// The day.
        day: NaiveDate,
    },
    /// No treatment date is known (no appointment on the plan): staff charge the lender once
    /// treatment is booked.
    NoTreatmentDate,
}

/// The day a financed plan is settled: the treatment date when it is today or later, today when
/// the treatment already happened (the charge is late, never early); a staff task without a
/// treatment date. The result is always a day the lender's rule allows.
pub fn settle_on(rule: SettlementRule, today: NaiveDate, treatment: Option<NaiveDate>) -> SettleOn {
    let Some(treatment) = treatment else {
        return SettleOn::NoTreatmentDate;
    };
    let day = treatment.max(today);
    debug_assert!(rule.allows(day, treatment));
    SettleOn::Day { day }
}

/// What a lender is asked to charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementRequest {
    /// Our reference for the financing (`{workflow}-{lender}`): the lender's purchase carries it,
    /// so a repeated call finds the purchase instead of making a second one.
    pub reference: ApplicationRef,
    /// The practice location (merchant).
    pub location: LenderLocation,
    /// The exact amount approved and financed.
    pub amount: Money,
}

/// What a settlement call did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "settlement", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Settlement {
    /// The lender charged the account: the practice will be paid.
    Charged {
        /// The lender's id of the purchase.
        purchase: LenderReference,
    },
    /// The lender's API takes no charge: staff run it in the lender's portal (a dated task with
    /// the amount and reference).
    Manual,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn a_future_treatment_settles_on_its_date() {
        let rule = SettlementRule::for_lender(&LenderId::new("carecredit"));
        assert_eq!(
            settle_on(rule, d(2026, 12, 1), Some(d(2027, 3, 15))),
            SettleOn::Day {
                day: d(2027, 3, 15)
            }
        );
    }

    #[test]
    fn a_past_treatment_settles_today_never_backdated() {
        let rule = SettlementRule::for_lender(&LenderId::new("sunbit"));
        assert_eq!(
            settle_on(rule, d(2026, 12, 1), Some(d(2026, 11, 20))),
            SettleOn::Day {
                day: d(2026, 12, 1)
            }
        );
    }

    #[test]
    fn without_a_treatment_date_staff_settle() {
        let rule = SettlementRule::for_lender(&LenderId::new("carecredit"));
        assert_eq!(
            settle_on(rule, d(2026, 12, 1), None),
            SettleOn::NoTreatmentDate
        );
    }

    #[test]
    fn carecredit_allows_no_charge_more_than_30_days_before_treatment() {
        let rule = SettlementRule::for_lender(&LenderId::new("carecredit"));
        let treatment = d(2027, 3, 31);
        assert_eq!(rule.earliest(treatment), d(2027, 3, 1));
        assert!(rule.allows(d(2027, 3, 1), treatment));
        assert!(!rule.allows(d(2027, 2, 28), treatment));
        assert!(rule.allows(d(2027, 4, 2), treatment));
        // Another lender without a known limit allows any day.
        assert!(
            SettlementRule::for_lender(&LenderId::new("sunbit")).allows(d(2020, 1, 1), treatment)
        );
    }

    #[test]
    fn the_settlement_day_is_always_allowed_and_never_before_today() {
        // Every (today, treatment) pair over two years around a fixed day, for both rules.
        let base = d(2026, 6, 1);
        for rule in [
            SettlementRule::for_lender(&LenderId::new("carecredit")),
            SettlementRule::NONE,
        ] {
            for t in 0..730u64 {
                let treatment = base + Days::new(t);
                for offset in (0..730u64).step_by(7) {
                    let today = base + Days::new(offset);
                    let SettleOn::Day { day } = settle_on(rule, today, Some(treatment)) else {
                        panic!("a treatment date always gives a day");
                    };
                    assert!(day >= today, "never in the past");
                    assert!(day >= treatment, "never before treatment");
                    assert!(rule.allows(day, treatment));
                }
            }
        }
    }

    #[test]
    fn a_date_at_the_edge_of_the_calendar_does_not_panic() {
        let rule = SettlementRule::for_lender(&LenderId::new("carecredit"));
        assert_eq!(rule.earliest(NaiveDate::MIN), NaiveDate::MIN);
        assert_eq!(
            settle_on(rule, NaiveDate::MAX, Some(NaiveDate::MIN)),
            SettleOn::Day {
                day: NaiveDate::MAX
            }
        );
    }
}
