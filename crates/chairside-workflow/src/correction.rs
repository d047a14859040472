//! Staff corrections of a workflow's amounts (the plan total, the insurance estimate, the
//! deposit) when they came in wrong. Pure: what may still be corrected, and whether the new
//! values make sense. The staff service refuses with these before anything is queued, and the
//! machine judges again when it applies the correction.
//!
//! A correction is refused once a lender was asked for the old amount (its application carries
//! it) or anything was set up or paid at Stripe: a person then fixes it with the lender or in
//! Stripe, and cancels or lets the workflow run.

use financing_core::{Currency, Money, MoneyError};
use serde::{Deserialize, Serialize};

use crate::{Stage, Status, WorkflowState};

/// The corrected amounts, in integer cents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    /// The plan's total fee.
    pub total: Money,
    /// The insurance estimate (primary and secondary together).
    pub insurance: Money,
    /// The deposit the practice collects up front.
    pub deposit: Money,
}

/// Which field of a correction form was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The plan total.
    Total,
    /// The insurance estimate.
    Insurance,
    /// The deposit.
    Deposit,
}

impl Field {
    /// The field's name on the form and in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Total => "plan total",
            Self::Insurance => "insurance estimate",
            Self::Deposit => "deposit",
        }
    }
}

/// Why a correction's values do not make sense. The texts name the field and carry no patient
/// data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadAmount {
    /// Not an amount in dollars.
    #[error("the {}: expected an amount in dollars like \"1250.00\"", .0.label())]
    NotAnAmount(Field),
    /// Below zero.
    #[error("the {} cannot be negative", .0.label())]
    Negative(Field),
    /// A plan of nothing.
    #[error("the plan total must be above $0.00")]
    ZeroTotal,
    /// The insurance estimate above the plan total.
    #[error("the insurance estimate ({insurance}) is above the plan total ({total})")]
    InsuranceOverTotal {
        /// The estimate.
        insurance: Money,
        /// The total.
        total: Money,
    },
    /// The deposit above what the patient owes.
    #[error("the deposit ({deposit}) is above the patient's portion ({portion})")]
    DepositOverPortion {
        /// The deposit.
        deposit: Money,
        /// Total minus insurance.
        portion: Money,
    },
}

/// Why a workflow's amounts can no longer be corrected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotCorrectable {
    /// Cancelled.
    #[error("the workflow was cancelled")]
    Cancelled,
    /// The plan was never read (an unreadable record): fix it in the practice system and retry.
    #[error("the plan was never read; fix the record in the practice system, then retry")]
    NotPriced,
    /// A lender was asked for the old amount.
    #[error("a lender application was already submitted for the old amount")]
    LenderAsked,
    /// Something was set up at Stripe for the old amounts, or money moved.
    #[error("a payment was already set up or made for the old amounts")]
    MoneyMoved,
    /// Work for the old amounts is under way (a step in flight): wait for it to stop.
    #[error("the workflow is working on the old amounts; wait until it waits on staff or ends")]
    InFlight,
}

impl Correction {
    /// Reads the form's three fields (dollars, `"1250.00"`, `"1250"`), naming the bad one.
    ///
    /// # Errors
    /// [`BadAmount::NotAnAmount`] or [`BadAmount::Negative`], then [`Correction::check`]'s.
    pub fn parse(total: &str, insurance: &str, deposit: &str) -> Result<Self, BadAmount> {
        let read = |text: &str, field: Field| {
            Money::parse(text, Currency::Usd).map_err(|e| match e {
                MoneyError::Negative => BadAmount::Negative(field),
                _ => BadAmount::NotAnAmount(field),
            })
        };
        let correction = Self {
            total: read(total, Field::Total)?,
            insurance: read(insurance, Field::Insurance)?,
            deposit: read(deposit, Field::Deposit)?,
        };
        correction.check()?;
        Ok(correction)
    }

    /// The patient's portion: total minus insurance (checked).
    pub fn portion(&self) -> Money {
        self.total
            .checked_sub(self.insurance)
            .unwrap_or_else(|_| Money::usd(0))
    }

    /// Whether the values make sense together.
    ///
    /// # Errors
    /// The [`BadAmount`].
    pub fn check(&self) -> Result<(), BadAmount> {
        for (value, field) in [
            (self.total, Field::Total),
            (self.insurance, Field::Insurance),
            (self.deposit, Field::Deposit),
        ] {
            if value.is_negative() {
                return Err(BadAmount::Negative(field));
            }
        }
        if self.total.is_zero() {
            return Err(BadAmount::ZeroTotal);
        }
        if self.insurance.minor() > self.total.minor() {
            return Err(BadAmount::InsuranceOverTotal {
                insurance: self.insurance,
                total: self.total,
            });
        }
        let portion = self.portion();
        if self.deposit.minor() > portion.minor() {
            return Err(BadAmount::DepositOverPortion {
                deposit: self.deposit,
                portion,
            });
        }
        Ok(())
    }

    /// The audit line: each value before and after (`plan total $1,500.00 -> $1,250.00`); a
    /// value not known before reads `none`.
    pub fn audit_line(&self, state: &WorkflowState) -> String {
        let before = |m: Option<Money>| m.map_or_else(|| "none".to_owned(), |m| m.to_string());
        let split = state.split.as_ref();
        format!(
            "plan total {} -> {}, insurance estimate {} -> {}, deposit {} -> {}",
            before(split.map(|s| s.total)),
            self.total,
            before(split.map(|s| s.insurance)),
            self.insurance,
            before(state.deposit),
            self.deposit
        )
    }
}

/// Whether `state`'s amounts may still be corrected: the plan was read, no lender was asked
/// for the old amount, nothing was set up or paid at Stripe, and nothing is in flight (the
/// workflow waits on staff, waits out a sedation day, or ended with nothing to finance).
///
/// # Errors
/// The [`NotCorrectable`] reason.
pub fn correctable(state: &WorkflowState) -> Result<(), NotCorrectable> {
    if state.status == Status::Cancelled {
        return Err(NotCorrectable::Cancelled);
    }
    if state.facts.is_none() {
        return Err(NotCorrectable::NotPriced);
    }
    if !state.attempts.is_empty()
        || matches!(
            state.stage,
            Stage::Financing(_) | Stage::OfferingInHouse { .. }
        )
        || state.result.as_ref().is_some_and(|r| r.financed.is_some())
    {
        return Err(NotCorrectable::LenderAsked);
    }
    let s = &state.stripe;
    if s.customer_id.is_some()
        || s.checkout_session_id.is_some()
        || s.schedule_id.is_some()
        || s.card_setup_session_id.is_some()
        || s.deposit_paid
        || !s.payments_noted.is_empty()
        || !s.expired_sessions.is_empty()
    {
        return Err(NotCorrectable::MoneyMoved);
    }
    let resting = match state.status {
        Status::WaitingOnStaff | Status::Done => true,
        Status::Active => state.stage == Stage::Deferred,
        Status::Cancelled => false,
    };
    if !resting {
        return Err(NotCorrectable::InFlight);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FinancingResult, PatientFacts, WorkflowKey};
    use chrono::{DateTime, Utc};
    use financing_core::{Attempt, AttemptOutcome, LenderId, PatientId, PlanId, PracticeId};

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
    }

    /// Read, priced wrong, waiting on staff: correctable.
    fn waiting() -> WorkflowState {
        let mut s = WorkflowState::new(
            WorkflowKey {
                practice_id: PracticeId::new("smile"),
                plan_id: PlanId::new("tx-1"),
                revision: "1".into(),
            },
            PatientId::new("pat-1"),
            t0(),
        );
        s.status = Status::WaitingOnStaff;
        s.stage = Stage::Settled;
        s.facts = Some(PatientFacts {
            reachable: true,
            state: None,
            lookup_allowed: false,
            financing_not_before: t0(),
        });
        s
    }

    #[test]
    fn form_values_are_read_in_cents_and_bad_ones_are_named() {
        assert_eq!(
            Correction::parse("1250", "300.50", " 100.00 "),
            Ok(Correction {
                total: Money::usd(125_000),
                insurance: Money::usd(30_050),
                deposit: Money::usd(10_000),
            })
        );
        let cases = [
            (("12x", "0", "0"), BadAmount::NotAnAmount(Field::Total)),
            (("1,250.00", "0", "0"), BadAmount::NotAnAmount(Field::Total)),
            (("100", "", "0"), BadAmount::NotAnAmount(Field::Insurance)),
            (("100", "0", "-5"), BadAmount::Negative(Field::Deposit)),
            (
                ("100", "0", "1.005"),
                BadAmount::NotAnAmount(Field::Deposit),
            ),
            (("0", "0", "0"), BadAmount::ZeroTotal),
            (
                ("100", "150", "0"),
                BadAmount::InsuranceOverTotal {
                    insurance: Money::usd(15_000),
                    total: Money::usd(10_000),
                },
            ),
            (
                ("100", "60", "50"),
                BadAmount::DepositOverPortion {
                    deposit: Money::usd(5_000),
                    portion: Money::usd(4_000),
                },
            ),
        ];
        for ((total, insurance, deposit), want) in cases {
            assert_eq!(
                Correction::parse(total, insurance, deposit),
                Err(want.clone()),
                "{total} {insurance} {deposit}"
            );
        }
        assert_eq!(
            BadAmount::NotAnAmount(Field::Insurance).to_string(),
            "the insurance estimate: expected an amount in dollars like \"1250.00\""
        );
    }

    #[test]
    fn amounts_are_correctable_until_a_lender_was_asked_or_money_moved() {
        assert_eq!(correctable(&waiting()), Ok(()));
        let mut deferred = waiting();
        deferred.status = Status::Active;
        deferred.stage = Stage::Deferred;
        assert_eq!(correctable(&deferred), Ok(()));
        type Change = fn(&mut WorkflowState);
        let cases: [(Change, NotCorrectable); 7] = [
            (|s| s.status = Status::Cancelled, NotCorrectable::Cancelled),
            (|s| s.facts = None, NotCorrectable::NotPriced),
            (
                |s| {
                    s.attempts.push(Attempt {
                        lender: LenderId::new("carecredit"),
                        amount: Money::usd(80_000),
                        contacted_at: t0(),
                        outcome: AttemptOutcome::Declined,
                    });
                },
                NotCorrectable::LenderAsked,
            ),
            (
                |s| s.stage = Stage::OfferingInHouse { reminders_sent: 0 },
                NotCorrectable::LenderAsked,
            ),
            (
                |s| s.stripe.customer_id = Some("cus_1".into()),
                NotCorrectable::MoneyMoved,
            ),
            (
                |s| s.stripe.payments_noted.push("pi_1".into()),
                NotCorrectable::MoneyMoved,
            ),
            (|s| s.status = Status::Active, NotCorrectable::InFlight),
        ];
        for (change, want) in cases {
            let mut s = waiting();
            change(&mut s);
            assert_eq!(correctable(&s), Err(want));
        }
        // Done with nothing financed (insurance said it covered everything): still correctable.
        let mut covered = waiting();
        covered.status = Status::Done;
        covered.result = Some(FinancingResult {
            financed: None,
            deposit: Money::usd(0),
            in_house: None,
            path: "covered by insurance".into(),
        });
        assert_eq!(correctable(&covered), Ok(()));
    }

    #[test]
    fn the_audit_line_names_each_value_before_and_after() {
        let mut s = waiting();
        s.split = Some(financing_core::CoverageSplit {
            total: Money::usd(150_000),
            insurance: Money::usd(160_000),
            patient_portion: Money::usd(0),
        });
        let c = Correction {
            total: Money::usd(150_000),
            insurance: Money::usd(60_000),
            deposit: Money::usd(10_000),
        };
        assert_eq!(
            c.audit_line(&s),
            "plan total $1,500.00 -> $1,500.00, insurance estimate $1,600.00 -> $600.00, deposit none -> $100.00"
        );
    }
}
