//! Typed identifiers and addresses. Phone numbers and email addresses are PHI: their `Debug` is
//! redacted and they have no `Display`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

connector_transport::id_newtype! {
    /// A Twilio account SID (`AC…`): the user name of the REST API's basic auth. Not a secret.
    pub struct AccountSid(String);
}
connector_transport::id_newtype! {
    /// A Twilio message SID (`SM…`, `MM…`): the message id logs carry.
    pub struct MessageSid(String);
}
connector_transport::id_newtype! {
    /// A Twilio Messaging Service SID (`MG…`), an alternative to a `From` number.
    pub struct MessagingServiceSid(String);
}
connector_transport::id_newtype! {
    /// The `Message-ID` of an email we sent, with its angle brackets (`<…@example.com>`).
    pub struct EmailMessageId(String);
}

/// A Twilio error code from an error body or a status callback (`21610`, `30003`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TwilioErrorCode(pub u32);

impl TwilioErrorCode {
    /// 21610: the recipient replied STOP to this sender; Twilio refuses to send to them.
    pub const RECIPIENT_OPTED_OUT: Self = Self(21610);
    /// 20429: too many concurrent requests. The request was not processed: safe to retry.
    pub const TOO_MANY_REQUESTS: Self = Self(20429);
}

impl fmt::Display for TwilioErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a phone number or email address was refused. Never echoes the input: it is PHI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not an E.164 number (`+` then 8 to 15 digits, no leading zero).
    #[error("not an E.164 phone number (expected + and 8 to 15 digits)")]
    Phone,
    /// Not a plain `local@domain` email address.
    #[error("not an email address (expected local@domain)")]
    Email,
}

/// A phone number in E.164 form (`+15555550123`). PHI: redacted `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses an E.164 number. Spaces, dashes, dots and parentheses are ignored
    /// (`+1 (555) 555-0123` is `+15555550123`).
    ///
    /// # Errors
    /// [`AddressError::Phone`] when what is left is not `+` and 8 to 15 digits.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let compact: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').ok_or(AddressError::Phone)?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(compact))
        } else {
            Err(AddressError::Phone)
        }
    }

    /// The number in E.164 form, for the wire. PHI: never log it.
    pub fn as_e164(&self) -> &str {
        &self.0
    }
}

impl FromStr for PhoneNumber {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> Self {
        p.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber(<redacted>)")
    }
}

/// An email address (`local@domain`). PHI when it is a patient's: redacted `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address with the SMTP library's own rules, so that anything accepted here is
    /// accepted when the message is built.
    ///
    /// # Errors
    /// [`AddressError::Email`] when the text is not a plain `local@domain` address.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        text.parse::<lettre::Address>()
            .map(|_| Self(text.to_owned()))
            .map_err(|_| AddressError::Email)
    }

    /// The address, for the wire. PHI when a patient's: never log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl FromStr for EmailAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> Self {
        a.0
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_normalise_punctuation_and_reject_junk() {
        assert_eq!(
            PhoneNumber::parse("+1 (555) 555-0123").unwrap().as_e164(),
            "+15555550123"
        );
        for bad in [
            "5555550123",
            "+1555",
            "+1555555012345678",
            "+1555abc0123",
            "+05555550123",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(AddressError::Phone), "{bad}");
        }
    }

    #[test]
    fn debug_of_addresses_hides_the_address() {
        let p = PhoneNumber::parse("+15555550123").unwrap();
        let e = EmailAddress::parse("pat@example.test").unwrap();
        let shown = format!("{p:?} {e:?}");
        assert!(
            !shown.contains("5555550123") && !shown.contains("example.test"),
            "{shown}"
        );
        assert_eq!(e.domain(), "example.test");
        assert_eq!(EmailAddress::parse("no-at-sign"), Err(AddressError::Email));
    }
}
