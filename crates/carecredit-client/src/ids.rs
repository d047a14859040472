//! Typed identifiers. A bare `String` never crosses the crate boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A CareCredit merchant number: exactly 16 ASCII digits, one per practice location.
///
/// Validated when it is made, so a typo in the configuration fails at start-up, not at the first
/// patient.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MerchantNumber(String);

/// Why a merchant number was refused. Never echoes the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a CareCredit merchant number is exactly 16 digits")]
pub struct InvalidMerchantNumber;

impl MerchantNumber {
    /// Length of every merchant number.
    pub const LEN: usize = 16;

    /// Validates and wraps a merchant number. Surrounding whitespace is ignored.
    ///
    /// # Errors
    /// [`InvalidMerchantNumber`] unless the text is exactly 16 ASCII digits.
    pub fn new(text: impl AsRef<str>) -> Result<Self, InvalidMerchantNumber> {
        let t = text.as_ref().trim();
        if t.len() == Self::LEN && t.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(t.to_owned()))
        } else {
            Err(InvalidMerchantNumber)
        }
    }

    /// The 16 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MerchantNumber {
    // Merchant numbers are not secret, but staff screens show only the last four digits; logs do
    // the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MerchantNumber(…{})", &self.0[Self::LEN - 4..])
    }
}

impl fmt::Display for MerchantNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MerchantNumber {
    type Err = InvalidMerchantNumber;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for MerchantNumber {
    type Error = InvalidMerchantNumber;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<MerchantNumber> for String {
    fn from(m: MerchantNumber) -> Self {
        m.0
    }
}

connector_transport::id_newtype! {
    /// The technology partner's code, issued by CareCredit at partner onboarding. One per
    /// Chairside deployment, not per practice.
    pub struct PartnerCode(String);
}
connector_transport::id_newtype! {
    /// A prefill session's id, as CareCredit returns it. It becomes the
    /// [`LenderReference`](financing_core::LenderReference) of the application and keys the pullback.
    pub struct SessionId(String);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_numbers_are_sixteen_digits_exactly() {
        assert!(MerchantNumber::new("5348120000000001").is_ok());
        assert!(MerchantNumber::new(" 5348120000000001 ").is_ok());
        assert_eq!(
            MerchantNumber::new("534812000000000"),
            Err(InvalidMerchantNumber)
        );
        assert_eq!(
            MerchantNumber::new("53481200000000011"),
            Err(InvalidMerchantNumber)
        );
        assert_eq!(
            MerchantNumber::new("5348-1200-0000-01"),
            Err(InvalidMerchantNumber)
        );
        assert_eq!(
            MerchantNumber::new("534812000000000x"),
            Err(InvalidMerchantNumber)
        );
    }

    #[test]
    fn merchant_number_debug_shows_the_last_four_digits_only() {
        let m = MerchantNumber::new("5348120000009876").unwrap();
        let shown = format!("{m:?}");
        assert!(shown.contains("9876") && !shown.contains("534812"));
    }

    #[test]
    fn merchant_numbers_refuse_bad_json() {
        let bad: Result<MerchantNumber, _> = serde_json::from_str("\"12\"");
        assert!(bad.is_err());
        let good: MerchantNumber = serde_json::from_str("\"5348120000000001\"").unwrap();
        assert_eq!(good.as_str(), "5348120000000001");
    }
}
