//! Money as integer minor units. No floats anywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency that Chairside knows the minor units of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Currency {
    /// US dollar, 2 decimals.
    Usd,
    /// Canadian dollar, 2 decimals.
    Cad,
    /// Euro, 2 decimals.
    Eur,
    /// Pound sterling, 2 decimals.
    Gbp,
    /// Japanese yen, no minor units.
    Jpy,
}

impl Currency {
    /// The lower-case ISO code, as Stripe wants it (`usd`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Usd => "usd",
            Self::Cad => "cad",
            Self::Eur => "eur",
            Self::Gbp => "gbp",
            Self::Jpy => "jpy",
        }
    }

    /// Number of decimal digits in the minor unit (2 for USD, 0 for JPY).
    pub fn minor_digits(self) -> u32 {
        match self {
            Self::Jpy => 0,
            _ => 2,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Usd => "$",
            Self::Cad => "CA$",
            Self::Eur => "€",
            Self::Gbp => "£",
            Self::Jpy => "¥",
        }
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "usd" => Ok(Self::Usd),
            "cad" => Ok(Self::Cad),
            "eur" => Ok(Self::Eur),
            "gbp" => Ok(Self::Gbp),
            "jpy" => Ok(Self::Jpy),
            _ => Err(MoneyError::UnknownCurrency(s.chars().take(8).collect())),
        }
    }
}

/// Why a money value could not be made or computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The text is not a decimal amount.
    #[error("not an amount: expected digits with an optional decimal point, like 130.00")]
    Invalid,
    /// The amount is below zero where only non-negative amounts make sense.
    #[error("amount is negative")]
    Negative,
    /// More decimals than the currency has minor units.
    #[error("amount has more than {max} decimal places")]
    TooManyDecimals {
        /// Decimals the currency allows.
        max: u32,
    },
    /// The amount does not fit in 64-bit minor units.
    #[error("amount is too large")]
    Overflow,
    /// Two amounts in different currencies were combined.
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch {
        /// Currency of the left operand.
        left: &'static str,
        /// Currency of the right operand.
        right: &'static str,
    },
    /// A currency code Chairside does not know.
    #[error("unknown currency code {0:?}")]
    UnknownCurrency(String),
}

/// An amount of money: integer minor units (cents) plus a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// An amount in minor units (cents for USD).
    pub const fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// US dollars from cents: `Money::usd(1999)` is $19.99.
    pub const fn usd(cents: i64) -> Self {
        Self::new(cents, Currency::Usd)
    }

    /// Zero in a currency.
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// The amount in minor units.
    pub const fn minor(self) -> i64 {
        self.minor
    }

    /// The currency.
    pub const fn currency(self) -> Currency {
        self.currency
    }

    /// True when the amount is zero.
    pub const fn is_zero(self) -> bool {
        self.minor == 0
    }

    /// True when the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.minor < 0
    }

    /// Parses a non-negative decimal string as practice systems send it (`"130.00"`, `"5"`, `"1234.5"`).
    ///
    /// # Errors
    /// [`MoneyError::Negative`], [`MoneyError::TooManyDecimals`], [`MoneyError::Overflow`] or
    /// [`MoneyError::Invalid`] (empty, letters, thousands separators, several points).
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let text = text.trim();
        if text.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let text = text.strip_prefix('+').unwrap_or(text);
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits_only(whole) || !digits_only(frac) {
            return Err(MoneyError::Invalid);
        }
        if text.ends_with('.') && frac.is_empty() && whole.is_empty() {
            return Err(MoneyError::Invalid);
        }
        let max = currency.minor_digits();
        // Trailing zeros beyond the minor unit carry no value ("130.000" is 130.00).
        let frac = frac.trim_end_matches('0');
        if frac.len() as u32 > max {
            return Err(MoneyError::TooManyDecimals { max });
        }
        let scale = 10_i64.pow(max);
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::Overflow)?
        };
        let mut frac_value: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| MoneyError::Invalid)?
        };
        for _ in frac.len() as u32..max {
            frac_value *= 10;
        }
        let minor = whole
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_value))
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(minor, currency))
    }

    fn same_currency(self, other: Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency.code(),
                right: other.currency.code(),
            })
        }
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] or [`MoneyError::Overflow`].
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_add(other.minor)
            .map(|m| Self::new(m, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`; the result may be negative.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] or [`MoneyError::Overflow`].
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_sub(other.minor)
            .map(|m| Self::new(m, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `self * factor`.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`].
    pub fn checked_mul(self, factor: i64) -> Result<Self, MoneyError> {
        self.minor
            .checked_mul(factor)
            .map(|m| Self::new(m, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// A share of this amount in basis points (1 bp = 0.01 %), rounded down to the minor unit.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`].
    pub fn basis_points(self, bps: u32) -> Result<Self, MoneyError> {
        let v = i128::from(self.minor) * i128::from(bps) / 10_000;
        i64::try_from(v)
            .map(|m| Self::new(m, self.currency))
            .map_err(|_| MoneyError::Overflow)
    }

    /// Sums amounts of one currency.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] or [`MoneyError::Overflow`].
    pub fn sum(
        currency: Currency,
        items: impl IntoIterator<Item = Self>,
    ) -> Result<Self, MoneyError> {
        items
            .into_iter()
            .try_fold(Self::zero(currency), Self::checked_add)
    }

    /// The larger of two amounts of one currency (`self` when they differ in currency).
    pub fn max(self, other: Self) -> Self {
        if self.currency == other.currency && other.minor > self.minor {
            other
        } else {
            self
        }
    }

    /// The smaller of two amounts of one currency (`self` when they differ in currency).
    pub fn min(self, other: Self) -> Self {
        if self.currency == other.currency && other.minor < self.minor {
            other
        } else {
            self
        }
    }

    /// The amount as a plain decimal string without symbol or separators (`1234.56`), as APIs want it.
    pub fn to_decimal_string(self) -> String {
        let digits = self.currency.minor_digits();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if digits == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10_u64.pow(digits);
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = digits as usize
        )
    }
}

/// `$1,234.56`; negative amounts as `-$1,234.56`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.currency.minor_digits();
        let abs = self.minor.unsigned_abs();
        let scale = 10_u64.pow(digits);
        let whole = (abs / scale).to_string();
        let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        let sign = if self.minor < 0 { "-" } else { "" };
        write!(f, "{sign}{}{grouped}", self.currency.symbol())?;
        if digits > 0 {
            write!(f, ".{:0width$}", abs % scale, width = digits as usize)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_groups_thousands_and_pads_cents() {
        assert_eq!(Money::usd(123_456).to_string(), "$1,234.56");
        assert_eq!(Money::usd(5).to_string(), "$0.05");
        assert_eq!(Money::usd(100_000_000).to_string(), "$1,000,000.00");
        assert_eq!(Money::usd(-1999).to_string(), "-$19.99");
        assert_eq!(Money::new(1500, Currency::Jpy).to_string(), "¥1,500");
    }

    #[test]
    fn parse_accepts_what_practice_systems_send() {
        assert_eq!(
            Money::parse("130.00", Currency::Usd),
            Ok(Money::usd(13_000))
        );
        assert_eq!(Money::parse("130", Currency::Usd), Ok(Money::usd(13_000)));
        assert_eq!(
            Money::parse("1234.5", Currency::Usd),
            Ok(Money::usd(123_450))
        );
        assert_eq!(Money::parse(".5", Currency::Usd), Ok(Money::usd(50)));
        assert_eq!(Money::parse(" 7.25 ", Currency::Usd), Ok(Money::usd(725)));
        assert_eq!(
            Money::parse("130.000", Currency::Usd),
            Ok(Money::usd(13_000))
        );
    }

    #[test]
    fn parse_rejects_bad_amounts_with_the_reason() {
        assert_eq!(
            Money::parse("-1.00", Currency::Usd),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            Money::parse("1.001", Currency::Usd),
            Err(MoneyError::TooManyDecimals { max: 2 })
        );
        assert_eq!(
            Money::parse("1.5", Currency::Jpy),
            Err(MoneyError::TooManyDecimals { max: 0 })
        );
        assert_eq!(
            Money::parse("99999999999999999999", Currency::Usd),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::parse("92233720368547758.08", Currency::Usd),
            Err(MoneyError::Overflow)
        );
        for bad in ["", ".", "abc", "1,000.00", "1.2.3", "$5", "1e3"] {
            assert_eq!(
                Money::parse(bad, Currency::Usd),
                Err(MoneyError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies() {
        let err = Money::usd(1)
            .checked_add(Money::new(1, Currency::Eur))
            .unwrap_err();
        assert_eq!(
            err,
            MoneyError::CurrencyMismatch {
                left: "usd",
                right: "eur"
            }
        );
    }

    #[test]
    fn basis_points_round_down() {
        assert_eq!(
            Money::usd(10_001).basis_points(6_000),
            Ok(Money::usd(6_000))
        );
        assert_eq!(Money::usd(999).basis_points(10_000), Ok(Money::usd(999)));
    }

    proptest! {
        #[test]
        fn decimal_string_round_trips_through_parse(minor in 0_i64..=i64::MAX) {
            let m = Money::usd(minor);
            prop_assert_eq!(Money::parse(&m.to_decimal_string(), Currency::Usd), Ok(m));
        }

        #[test]
        fn add_then_sub_is_identity(a in -1_000_000_000_000_i64..1_000_000_000_000, b in -1_000_000_000_000_i64..1_000_000_000_000) {
            let (a, b) = (Money::usd(a), Money::usd(b));
            prop_assert_eq!(a.checked_add(b).and_then(|s| s.checked_sub(b)), Ok(a));
        }

        #[test]
        fn add_overflow_is_an_error_not_a_wrap(a in 0_i64..=i64::MAX, b in 0_i64..=i64::MAX) {
            let sum = Money::usd(a).checked_add(Money::usd(b));
            match a.checked_add(b) {
                Some(v) => prop_assert_eq!(sum, Ok(Money::usd(v))),
                None => prop_assert_eq!(sum, Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn display_strips_to_the_decimal_string(minor in 0_i64..=i64::MAX) {
            let m = Money::usd(minor);
            let shown = m.to_string().replace([',', '$'], "");
            prop_assert_eq!(shown, m.to_decimal_string());
        }
    }
}
