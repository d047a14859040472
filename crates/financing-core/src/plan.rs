//! Treatment plans and the split between insurance and what the patient pays.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{PatientId, PlanId};
use crate::money::{Currency, Money, MoneyError};

/// A CDT procedure code (`D2740`). Clinical data: read internally, never sent to a lender.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CdtCode(String);

impl CdtCode {
    /// Wraps a code as the practice system sends it.
    pub fn new(code: impl Into<String>) -> Self {
        Self(code.into().trim().to_ascii_uppercase())
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the sedation and nitrous codes of COMPLIANCE.md §1 (D9222, D9223, D9230, D9239,
    /// D9243, D9248): credit may not be arranged while the patient is under them.
    pub fn is_sedation(&self) -> bool {
        matches!(
            self.0.as_str(),
            "D9222" | "D9223" | "D9230" | "D9239" | "D9243" | "D9248"
        )
    }
}

/// One procedure of a plan, with its fee and insurance estimates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedProcedure {
    /// CDT code.
    pub code: CdtCode,
    /// The fee the practice charges.
    pub fee: Money,
    /// Primary insurance estimate, when any.
    pub primary_estimate: Option<Money>,
    /// Secondary insurance estimate, when any.
    pub secondary_estimate: Option<Money>,
}

/// A treatment plan the patient accepted, as read from the practice system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreatmentPlan {
    /// The plan's (case's) id.
    pub id: PlanId,
    /// A revision marker: a plan edited after acceptance is a new revision and a new workflow.
    pub revision: String,
    /// The patient.
    pub patient_id: PatientId,
    /// When the practice system recorded the acceptance.
    pub accepted_at: DateTime<Utc>,
    /// The first scheduled treatment date, when an appointment exists.
    pub treatment_date: Option<NaiveDate>,
    /// The procedures.
    pub procedures: Vec<PlannedProcedure>,
}

/// A plan that cannot be priced, with a reason a front desk understands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The plan lists no procedures.
    #[error("the treatment plan has no procedures; add the procedures in the practice system")]
    NoProcedures,
    /// A fee below zero.
    #[error(
        "procedure {position} ({code}) has a negative fee; correct the fee in the practice system"
    )]
    NegativeFee {
        /// 1-based position in the plan.
        position: usize,
        /// Its CDT code (not PHI on its own, and this message goes to staff only).
        code: String,
    },
    /// Insurance estimates above the fee.
    #[error(
        "procedure {position} ({code}) has insurance estimates of {estimate} above its fee of {fee}; \
         correct the estimate in the practice system"
    )]
    EstimateAboveFee {
        /// 1-based position in the plan.
        position: usize,
        /// Its CDT code.
        code: String,
        /// Primary + secondary estimate.
        estimate: Money,
        /// The fee.
        fee: Money,
    },
    /// A negative insurance estimate.
    #[error(
        "procedure {position} ({code}) has a negative insurance estimate; correct it in the practice system"
    )]
    NegativeEstimate {
        /// 1-based position in the plan.
        position: usize,
        /// Its CDT code.
        code: String,
    },
    /// Amounts in several currencies, or too large to add up.
    #[error("the plan's amounts cannot be added up: {0}")]
    Money(#[from] MoneyError),
}

/// Total, insurance and patient portion of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageSplit {
    /// Sum of the fees.
    pub total: Money,
    /// Sum of primary and secondary estimates.
    pub insurance: Money,
    /// `total - insurance`; never negative.
    pub patient_portion: Money,
}

impl CoverageSplit {
    /// Prices a plan.
    ///
    /// # Errors
    /// [`PlanError`] for an empty plan, a negative fee or estimate, estimates above a fee, mixed
    /// currencies or overflow.
    pub fn from_plan(plan: &TreatmentPlan) -> Result<Self, PlanError> {
        let first = plan.procedures.first().ok_or(PlanError::NoProcedures)?;
        let currency: Currency = first.fee.currency();
        let mut total = Money::zero(currency);
        let mut insurance = Money::zero(currency);
        for (i, p) in plan.procedures.iter().enumerate() {
            let position = i + 1;
            let code = || p.code.as_str().to_owned();
            if p.fee.is_negative() {
                return Err(PlanError::NegativeFee {
                    position,
                    code: code(),
                });
            }
            let zero = Money::zero(currency);
            let primary = p.primary_estimate.unwrap_or(zero);
            let secondary = p.secondary_estimate.unwrap_or(zero);
            if primary.is_negative() || secondary.is_negative() {
                return Err(PlanError::NegativeEstimate {
                    position,
                    code: code(),
                });
            }
            let estimate = primary.checked_add(secondary)?;
            if estimate.checked_sub(p.fee)?.minor() > 0 {
                return Err(PlanError::EstimateAboveFee {
                    position,
                    code: code(),
                    estimate,
                    fee: p.fee,
                });
            }
            total = total.checked_add(p.fee)?;
            insurance = insurance.checked_add(estimate)?;
        }
        let patient_portion = total.checked_sub(insurance)?;
        Ok(Self {
            total,
            insurance,
            patient_portion,
        })
    }
}

impl fmt::Display for CoverageSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total {}, insurance {}, patient {}",
            self.total, self.insurance, self.patient_portion
        )
    }
}

impl TreatmentPlan {
    /// True when any procedure is sedation or nitrous (COMPLIANCE.md §1).
    pub fn involves_sedation(&self) -> bool {
        self.procedures.iter().any(|p| p.code.is_sedation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn proc(code: &str, fee: i64, pri: Option<i64>, sec: Option<i64>) -> PlannedProcedure {
        PlannedProcedure {
            code: CdtCode::new(code),
            fee: Money::usd(fee),
            primary_estimate: pri.map(Money::usd),
            secondary_estimate: sec.map(Money::usd),
        }
    }

    fn plan(procedures: Vec<PlannedProcedure>) -> TreatmentPlan {
        TreatmentPlan {
            id: PlanId::new("tx-1"),
            revision: "1".into(),
            patient_id: PatientId::new("p-1"),
            accepted_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            treatment_date: None,
            procedures,
        }
    }

    #[test]
    fn split_sums_fees_and_both_estimates() {
        let p = plan(vec![
            proc("D2740", 130_000, Some(50_000), Some(10_000)),
            proc("d0120", 6_500, Some(6_500), None),
        ]);
        let s = CoverageSplit::from_plan(&p).unwrap();
        assert_eq!(s.total, Money::usd(136_500));
        assert_eq!(s.insurance, Money::usd(66_500));
        assert_eq!(s.patient_portion, Money::usd(70_000));
    }

    #[test]
    fn estimate_above_fee_names_the_procedure_and_amounts() {
        let p = plan(vec![
            proc("D0120", 6_500, None, None),
            proc("D2740", 100_000, Some(90_000), Some(20_000)),
        ]);
        let err = CoverageSplit::from_plan(&p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "procedure 2 (D2740) has insurance estimates of $1,100.00 above its fee of $1,000.00; correct the estimate in the practice system"
        );
    }

    #[test]
    fn empty_plan_negative_fee_and_negative_estimate_are_errors() {
        assert_eq!(
            CoverageSplit::from_plan(&plan(vec![])),
            Err(PlanError::NoProcedures)
        );
        assert!(matches!(
            CoverageSplit::from_plan(&plan(vec![proc("D1110", -1, None, None)])),
            Err(PlanError::NegativeFee { position: 1, .. })
        ));
        assert!(matches!(
            CoverageSplit::from_plan(&plan(vec![proc("D1110", 100, Some(-5), None)])),
            Err(PlanError::NegativeEstimate { position: 1, .. })
        ));
    }

    #[test]
    fn mixed_currencies_are_an_error() {
        let mut b = proc("D1110", 100, None, None);
        b.fee = Money::new(100, Currency::Cad);
        let err =
            CoverageSplit::from_plan(&plan(vec![proc("D1110", 100, None, None), b])).unwrap_err();
        assert!(matches!(
            err,
            PlanError::Money(MoneyError::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn sedation_codes_are_recognised() {
        assert!(plan(vec![proc("d9230", 100, None, None)]).involves_sedation());
        assert!(!plan(vec![proc("D2740", 100, None, None)]).involves_sedation());
    }

    proptest! {
        #[test]
        fn split_is_consistent_for_any_valid_plan(items in prop::collection::vec((0_i64..10_000_000, 0_u32..=100, 0_u32..=100), 1..20)) {
            let procedures: Vec<_> = items.iter().map(|&(fee, pri_pct, sec_pct)| {
                let pri = fee * i64::from(pri_pct) / 100;
                let sec = (fee - pri) * i64::from(sec_pct) / 100;
                proc("D2740", fee, Some(pri), Some(sec))
            }).collect();
            let s = CoverageSplit::from_plan(&plan(procedures.clone())).unwrap();
            prop_assert_eq!(s.total.minor(), procedures.iter().map(|p| p.fee.minor()).sum::<i64>());
            prop_assert_eq!(s.total.checked_sub(s.insurance).unwrap(), s.patient_portion);
            prop_assert!(!s.patient_portion.is_negative());
            prop_assert!(s.insurance.minor() <= s.total.minor());
        }

        #[test]
        fn any_estimate_above_its_fee_is_refused(fee in 0_i64..1_000_000, excess in 1_i64..1_000_000) {
            let p = plan(vec![proc("D2740", fee, Some(fee), Some(excess))]);
            let is_estimate_above_fee = matches!(CoverageSplit::from_plan(&p), Err(PlanError::EstimateAboveFee { .. }));
            prop_assert!(is_estimate_above_fee);
        }
    }
}
