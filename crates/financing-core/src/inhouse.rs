//! The practice's own payment plan: the waterfall's last resort, collected through Stripe.

use serde::{Deserialize, Serialize};

use crate::money::{Money, MoneyError};

/// The unit of an installment interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalUnit {
    /// Days.
    Day,
    /// Weeks.
    Week,
    /// Months.
    Month,
}

/// Time between installments, e.g. every 2 weeks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstallmentInterval {
    /// The unit.
    pub unit: IntervalUnit,
    /// How many units (at least 1).
    pub count: u32,
}

impl InstallmentInterval {
    /// Every month.
    pub const MONTHLY: Self = Self {
        unit: IntervalUnit::Month,
        count: 1,
    };
}

/// The deposit the practice asks before installments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum DepositRule {
    /// No deposit.
    None,
    /// A fixed amount (capped at the total).
    Fixed(Money),
    /// A share of the total in basis points (2000 = 20 %), rounded down to the cent.
    BasisPoints(u32),
}

/// The practice's in-house plan terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InHouseTerms {
    /// The deposit.
    pub deposit: DepositRule,
    /// Number of installments after the deposit.
    pub installments: u32,
    /// Time between installments.
    pub interval: InstallmentInterval,
}

/// Why terms cannot be applied to an amount.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InHouseError {
    /// Nothing to finance.
    #[error("the amount to finance must be above zero")]
    NothingToFinance,
    /// Zero installments, or more than ten years of them.
    #[error("the in-house plan needs between 1 and {max} installments, not {given}")]
    InstallmentCount {
        /// Given count.
        given: u32,
        /// The most allowed for the interval.
        max: u32,
    },
    /// An interval of zero units.
    #[error("the installment interval must be at least 1")]
    ZeroInterval,
    /// More installments than cents to spread.
    #[error("{installments} installments cannot split {amount}: each must be at least one cent")]
    TooSmall {
        /// The amount after deposit.
        amount: Money,
        /// Installments asked for.
        installments: u32,
    },
    /// Arithmetic failure.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// An in-house plan for one amount: the deposit and each installment, to the cent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InHouseOffer {
    /// The amount financed in house (deposit included).
    pub total: Money,
    /// Collected first (may be zero).
    pub deposit: Money,
    /// The installments in order; the first carries the remainder cents.
    pub installments: Vec<Money>,
    /// Time between installments.
    pub interval: InstallmentInterval,
}

impl InHouseOffer {
    /// Splits `amount` under the practice's `terms`: deposit first, then `terms.installments` equal
    /// installments whose sum is exactly the rest, the remainder cents on the first.
    ///
    /// # Errors
    /// [`InHouseError`] for a zero or negative amount, a bad installment count or interval, or more
    /// installments than cents.
    pub fn compute(amount: Money, terms: &InHouseTerms) -> Result<Self, InHouseError> {
        if amount.minor() <= 0 {
            return Err(InHouseError::NothingToFinance);
        }
        if terms.interval.count == 0 {
            return Err(InHouseError::ZeroInterval);
        }
        // At most ten years of installments, whatever the interval.
        let per_year = match terms.interval.unit {
            IntervalUnit::Day => 365,
            IntervalUnit::Week => 52,
            IntervalUnit::Month => 12,
        };
        let max = (per_year * 10 / terms.interval.count).max(1);
        if terms.installments == 0 || terms.installments > max {
            return Err(InHouseError::InstallmentCount {
                given: terms.installments,
                max,
            });
        }
        let deposit = match terms.deposit {
            DepositRule::None => Money::zero(amount.currency()),
            DepositRule::Fixed(m) => {
                if m.currency() != amount.currency() {
                    return Err(MoneyError::CurrencyMismatch {
                        left: amount.currency().code(),
                        right: m.currency().code(),
                    }
                    .into());
                }
                m.max(Money::zero(amount.currency())).min(amount)
            }
            DepositRule::BasisPoints(bps) => amount.basis_points(bps.min(10_000))?,
        };
        let rest = amount.checked_sub(deposit)?;
        let n = i64::from(terms.installments);
        if rest.minor() < n {
            return Err(InHouseError::TooSmall {
                amount: rest,
                installments: terms.installments,
            });
        }
        let base = rest.minor() / n;
        let remainder = rest.minor() % n;
        let installments = (0..n)
            .map(|i| {
                Money::new(
                    if i == 0 { base + remainder } else { base },
                    amount.currency(),
                )
            })
            .collect();
        Ok(Self {
            total: amount,
            deposit,
            installments,
            interval: terms.interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn terms(deposit: DepositRule, installments: u32) -> InHouseTerms {
        InHouseTerms {
            deposit,
            installments,
            interval: InstallmentInterval::MONTHLY,
        }
    }

    #[test]
    fn remainder_cents_go_on_the_first_installment() {
        let offer =
            InHouseOffer::compute(Money::usd(100_000), &terms(DepositRule::None, 3)).unwrap();
        assert_eq!(
            offer.installments,
            vec![Money::usd(33_334), Money::usd(33_333), Money::usd(33_333)]
        );
    }

    #[test]
    fn deposits_come_off_before_the_split() {
        let pct = InHouseOffer::compute(
            Money::usd(100_000),
            &terms(DepositRule::BasisPoints(2_000), 4),
        )
        .unwrap();
        assert_eq!(pct.deposit, Money::usd(20_000));
        assert_eq!(pct.installments, vec![Money::usd(20_000); 4]);
        let fixed = InHouseOffer::compute(
            Money::usd(10_000),
            &terms(DepositRule::Fixed(Money::usd(50_000)), 2),
        );
        assert_eq!(
            fixed,
            Err(InHouseError::TooSmall {
                amount: Money::usd(0),
                installments: 2
            }),
            "a deposit above the total is capped"
        );
    }

    #[test]
    fn bad_terms_are_refused_with_the_reason() {
        assert_eq!(
            InHouseOffer::compute(Money::usd(0), &terms(DepositRule::None, 3)),
            Err(InHouseError::NothingToFinance)
        );
        assert_eq!(
            InHouseOffer::compute(Money::usd(100), &terms(DepositRule::None, 0)),
            Err(InHouseError::InstallmentCount { given: 0, max: 120 })
        );
        assert_eq!(
            InHouseOffer::compute(Money::usd(100_000), &terms(DepositRule::None, 121)),
            Err(InHouseError::InstallmentCount {
                given: 121,
                max: 120
            })
        );
        assert_eq!(
            InHouseOffer::compute(Money::usd(2), &terms(DepositRule::None, 3)),
            Err(InHouseError::TooSmall {
                amount: Money::usd(2),
                installments: 3
            })
        );
        let zero = InHouseTerms {
            interval: InstallmentInterval {
                unit: IntervalUnit::Week,
                count: 0,
            },
            ..terms(DepositRule::None, 3)
        };
        assert_eq!(
            InHouseOffer::compute(Money::usd(100), &zero),
            Err(InHouseError::ZeroInterval)
        );
    }

    proptest! {
        #[test]
        fn deposit_plus_installments_always_equal_the_total(
            amount in 1_i64..100_000_000,
            n in 1_u32..=60,
            bps in 0_u32..=10_000,
        ) {
            prop_assume!(amount - amount * i64::from(bps) / 10_000 >= i64::from(n));
            let offer = InHouseOffer::compute(Money::usd(amount), &terms(DepositRule::BasisPoints(bps), n)).unwrap();
            let sum: i64 = offer.installments.iter().map(|m| m.minor()).sum::<i64>() + offer.deposit.minor();
            prop_assert_eq!(sum, amount);
            prop_assert_eq!(offer.installments.len(), n as usize);
            let rest = amount - offer.deposit.minor();
            let remainder = rest % i64::from(n);
            let max = offer.installments.iter().map(|m| m.minor()).max().unwrap_or(0);
            let min = offer.installments.iter().map(|m| m.minor()).min().unwrap_or(0);
            prop_assert!(max - min <= remainder, "spread {} above remainder {}", max - min, remainder);
            prop_assert!(offer.installments.iter().all(|m| m.minor() > 0));
        }
    }
}
