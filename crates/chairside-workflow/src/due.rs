//! What the patient pays, and when: the pure rule behind the day-of-service co-pay.
//!
//! The patient portion (plan fee less the insurance estimate) is paid in up to four ways: the
//! deposit (at acceptance), the lender's financing, the in-house plan's installments, and what is
//! left, due **on the treatment day** (a lender's counteroffer taken without an in-house plan
//! leaves the rest of the portion to the visit). No I/O: the machine asks this module, and its
//! tests pin the arithmetic.

use chrono::NaiveDate;
use financing_core::{CoverageSplit, Money};
use serde::{Deserialize, Serialize};

use crate::FinancingResult;

/// The purpose of the day-of-service co-pay's off-session charge (its metadata, its ledger
/// line, its idempotency scope beside [`crate::machine::DEPOSIT`]).
pub const COPAY: &str = "copay";

/// The patient portion, split by when it is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// At acceptance: the practice's deposit.
    pub deposit: Money,
    /// Paid by the lender (the patient repays the lender).
    pub financed: Money,
    /// Billed by the in-house plan's schedule.
    pub installments: Money,
    /// What is left, due on the treatment day. Never negative.
    pub on_treatment_day: Money,
}

/// Splits `split`'s patient portion under `result`. Amounts in another currency than the
/// portion's are not counted (a mixed-currency plan is refused earlier, by pricing); the
/// treatment-day amount is what is left, never below zero (a lender that approved more than the
/// portion leaves nothing, not a negative co-pay).
pub fn due(split: &CoverageSplit, result: &FinancingResult) -> Due {
    let portion = split.patient_portion;
    let zero = Money::zero(portion.currency());
    let same = |m: Money| {
        if m.currency() == portion.currency() {
            m
        } else {
            zero
        }
    };
    let deposit = same(result.deposit);
    let financed = result
        .financed
        .as_ref()
        .map_or(zero, |(_, amount)| same(*amount));
    let installments = result.in_house.as_ref().map_or(zero, |o| same(o.total));
    let left = [deposit, financed, installments]
        .into_iter()
        .try_fold(portion, |left, m| left.checked_sub(m).ok())
        .filter(|m| m.minor() > 0)
        .unwrap_or(zero);
    Due {
        deposit,
        financed,
        installments,
        on_treatment_day: left,
    }
}

/// A co-pay the workflow collects on the treatment day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copay {
    /// The amount (never zero: nothing is planned for zero).
    pub amount: Money,
    /// The treatment day (the practice's calendar), when the plan carries one.
    pub day: Option<NaiveDate>,
    /// Where it stands.
    pub state: CopayState,
}

/// Where a co-pay stands. The charge itself is one of [`crate::StripeRecord::card_charges`]
/// (purpose [`COPAY`]); this records the plan around it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CopayState {
    /// Waiting for the treatment day (a timer is set).
    Scheduled,
    /// The day came: the saved card is charged (or, without one, a pay link and a task).
    Due,
    /// A pay link was asked for (a declined or unauthenticated charge, or no saved card).
    LinkRequested,
    /// The pay link exists: the patient pays through it (the page shows it).
    LinkSent {
        /// Stripe's Checkout Session id.
        session_id: String,
        /// Its URL.
        url: String,
    },
    /// Paid (by the saved card or the link).
    Paid {
        /// Stripe's id of the payment.
        stripe_id: String,
    },
    /// No treatment date: staff collect it at the visit (a task said so).
    ForStaff,
    /// Staff marked the failed co-pay handled (collected at the desk, or waived): nothing more
    /// is charged, and its pay link is closed.
    HandledByStaff,
}

impl crate::WorkflowState {
    /// The co-pay a saved card would still be charged on the treatment day, for the patient page
    /// (its line and the authorization the patient agrees to): the planned co-pay while it
    /// waits for its day; before it is planned (the outcome note not yet written), what
    /// [`due`] leaves for the day; `None` once it is charged, paid, handed to staff, or when
    /// nothing is left, and for an in-house offer not yet accepted.
    pub fn copay_ahead(&self) -> Option<(Money, Option<NaiveDate>)> {
        if let Some(c) = &self.copay {
            return (c.state == CopayState::Scheduled).then_some((c.amount, c.day));
        }
        let (split, result) = (self.split.as_ref()?, self.result.as_ref()?);
        if result.in_house.is_some() && self.in_house_acceptance.is_none() {
            return None;
        }
        let amount = due(split, result).on_treatment_day;
        (amount.minor() > 0).then_some((amount, self.treatment_date))
    }

    /// The in-house plan whose installments a saved card would pay (card on file), for the
    /// patient page's authorization and the machine: the patient accepted the plan, the
    /// workflow is live, its schedule has not ended, no card is set on it yet, and the
    /// installments are not invoiced by email by choice. `None` otherwise (a pay-link practice,
    /// an offer not accepted, installments already on a card or on emailed invoices).
    pub fn installments_for_card(&self) -> Option<&financing_core::InHouseOffer> {
        let offer = self.result.as_ref()?.in_house.as_ref()?;
        (self.stripe.card_on_file
            && self.in_house_acceptance.is_some()
            && self.status != crate::Status::Cancelled
            && !self.stripe.schedule_ended
            && self.stripe.schedule_card.is_none()
            && self.stripe.installments_by_invoice.is_none())
        .then_some(offer)
    }
}

#[cfg(test)]
mod tests {
    use financing_core::{Currency, InHouseOffer, InstallmentInterval, LenderId};

    use super::*;

    fn split(total: i64, insurance: i64) -> CoverageSplit {
        CoverageSplit {
            total: Money::usd(total),
            insurance: Money::usd(insurance),
            patient_portion: Money::usd(total - insurance),
        }
    }

    fn result(deposit: i64, financed: Option<i64>, in_house: Option<i64>) -> FinancingResult {
        FinancingResult {
            financed: financed.map(|f| (LenderId::new("carecredit"), Money::usd(f))),
            deposit: Money::usd(deposit),
            in_house: in_house.map(|t| InHouseOffer {
                total: Money::usd(t),
                deposit: Money::usd(0),
                installments: vec![Money::usd(t)],
                interval: InstallmentInterval::MONTHLY,
            }),
            path: String::new(),
        }
    }

    #[test]
    fn a_counteroffer_without_an_in_house_plan_leaves_the_rest_to_the_treatment_day() {
        // $1,500 fee, $300 insurance: $1,200 portion; $200 deposit; the lender took $700 of
        // the $1,000 asked.
        let d = due(&split(150_000, 30_000), &result(20_000, Some(70_000), None));
        assert_eq!(d.deposit, Money::usd(20_000));
        assert_eq!(d.financed, Money::usd(70_000));
        assert_eq!(d.installments, Money::usd(0));
        assert_eq!(d.on_treatment_day, Money::usd(30_000));
    }

    #[test]
    fn a_fully_financed_or_in_house_plan_leaves_nothing_for_the_day() {
        assert!(
            due(&split(100_000, 0), &result(20_000, Some(80_000), None))
                .on_treatment_day
                .is_zero()
        );
        assert!(
            due(
                &split(100_000, 0),
                &result(20_000, Some(50_000), Some(30_000))
            )
            .on_treatment_day
            .is_zero()
        );
        assert!(
            due(&split(100_000, 0), &result(0, None, Some(100_000)))
                .on_treatment_day
                .is_zero()
        );
    }

    #[test]
    fn insurance_covering_everything_leaves_no_zero_dollar_co_pay() {
        let d = due(&split(50_000, 50_000), &result(0, None, None));
        assert!(d.on_treatment_day.is_zero());
    }

    #[test]
    fn a_lender_that_approved_more_than_the_portion_never_makes_the_co_pay_negative() {
        let d = due(&split(100_000, 0), &result(20_000, Some(95_000), None));
        assert_eq!(d.on_treatment_day, Money::usd(0));
    }

    #[test]
    fn a_deposit_only_plan_owes_the_rest_on_the_day_and_cents_are_exact() {
        // No lender and no plan: whatever the deposit did not cover, to the cent.
        let d = due(&split(100_001, 0), &result(33_333, None, None));
        assert_eq!(d.on_treatment_day, Money::usd(66_668));
    }

    #[test]
    fn the_co_pay_ahead_is_the_planned_one_until_it_is_charged() {
        let mut s = crate::WorkflowState::new(
            crate::WorkflowKey {
                practice_id: financing_core::PracticeId::new("smile"),
                plan_id: financing_core::PlanId::new("tx-1"),
                revision: "r1".into(),
            },
            financing_core::PatientId::new("p-1"),
            chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
        );
        assert_eq!(s.copay_ahead(), None, "nothing priced yet");
        s.split = Some(split(100_000, 0));
        s.result = Some(result(20_000, Some(50_000), None));
        let day = NaiveDate::from_ymd_opt(2026, 7, 10);
        s.treatment_date = day;
        assert_eq!(s.copay_ahead(), Some((Money::usd(30_000), day)));
        s.copay = Some(Copay {
            amount: Money::usd(30_000),
            day,
            state: CopayState::Scheduled,
        });
        assert_eq!(s.copay_ahead(), Some((Money::usd(30_000), day)));
        for state in [
            CopayState::Due,
            CopayState::ForStaff,
            CopayState::Paid {
                stripe_id: "pi_1".into(),
            },
        ] {
            s.copay.as_mut().unwrap().state = state;
            assert_eq!(s.copay_ahead(), None);
        }
    }

    #[test]
    fn an_amount_in_another_currency_is_not_counted() {
        let mut r = result(20_000, None, None);
        r.financed = Some((LenderId::new("x"), Money::new(50_000, Currency::Cad)));
        let d = due(&split(100_000, 0), &r);
        assert_eq!(d.financed, Money::usd(0));
        assert_eq!(d.on_treatment_day, Money::usd(80_000));
    }
}
