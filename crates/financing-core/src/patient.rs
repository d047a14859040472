//! Patient contact data. PHI: redacted `Debug`, no `Display`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::PatientId;

/// A US state or territory, by its USPS code. Drives the compliance [`Policy`](crate::Policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UsState([u8; 2]);

impl UsState {
    /// California.
    pub const CA: Self = Self(*b"CA");
    /// New York.
    pub const NY: Self = Self(*b"NY");
    /// Texas.
    pub const TX: Self = Self(*b"TX");

    const CODES: [&'static str; 56] = [
        "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN",
        "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH",
        "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT",
        "VT", "VA", "WA", "WV", "WI", "WY", "PR", "GU", "VI", "AS", "MP",
    ];

    /// The two-letter code.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// Why a state code was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a US state code (expected two letters like CA or NY)")]
pub struct InvalidState;

impl FromStr for UsState {
    type Err = InvalidState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        if Self::CODES.contains(&up.as_str()) {
            let b = up.as_bytes();
            Ok(Self([b[0], b[1]]))
        } else {
            Err(InvalidState)
        }
    }
}

impl TryFrom<String> for UsState {
    type Error = InvalidState;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UsState> for String {
    fn from(s: UsState) -> Self {
        s.code().to_owned()
    }
}

impl fmt::Display for UsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The language a patient prefers for messages and the patient page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Language {
    /// English (the default).
    #[default]
    En,
    /// Spanish.
    Es,
}

impl Language {
    /// The BCP 47 tag (`en`, `es`).
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Es => "es",
        }
    }
}

/// A postal address. PHI.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostalAddress {
    /// Street lines.
    pub lines: Vec<String>,
    /// City.
    pub city: String,
    /// State of residence.
    pub state: Option<UsState>,
    /// ZIP code.
    pub postal_code: String,
}

impl fmt::Debug for PostalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostalAddress")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What the patient agreed to about text messages (TCPA). One record per phone number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SmsConsent {
    /// No consent on record: no texts.
    #[default]
    None,
    /// Prior express consent: informational texts (summaries, reminders, payment notices).
    Informational {
        /// When it was given.
        at: DateTime<Utc>,
        /// Where it was given (`pms`, `patient_page`, `front_desk`).
        source: String,
    },
    /// Prior express written consent: also texts that promote financing.
    Written {
        /// When it was given.
        at: DateTime<Utc>,
        /// Where it was given.
        source: String,
    },
    /// The patient opted out (STOP or any reasonable means). Overrides any earlier consent.
    Revoked {
        /// When it was revoked.
        at: DateTime<Utc>,
    },
}

impl SmsConsent {
    /// True when informational texts may be sent.
    pub fn allows_informational(&self) -> bool {
        matches!(self, Self::Informational { .. } | Self::Written { .. })
    }

    /// True when texts that promote financing may be sent.
    pub fn allows_marketing(&self) -> bool {
        matches!(self, Self::Written { .. })
    }
}

/// A patient's identity and contact data. PHI: `Debug` shows only the id, and there is no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientContact {
    /// The practice system's patient id.
    pub id: PatientId,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth, where the practice system has it. Used internally (minors need a
    /// guarantor); never sent to a lender unless the policy allows it.
    pub date_of_birth: Option<NaiveDate>,
    /// Mobile phone in E.164 (`+15551234567`), when known.
    pub mobile_phone: Option<String>,
    /// Email address, when known.
    pub email: Option<String>,
    /// Postal address, when known.
    pub address: Option<PostalAddress>,
    /// Preferred language for messages.
    pub preferred_language: Language,
    /// The patient's IANA time zone when known (quiet hours); else the practice's is used.
    pub time_zone: Option<String>,
    /// Consent to text messages on `mobile_phone`.
    pub sms_consent: SmsConsent,
}

impl PatientContact {
    /// Initials only (`J.D.`), the most a staff listing shows.
    pub fn initials(&self) -> String {
        let first = |s: &str| {
            s.chars()
                .next()
                .map(|c| c.to_uppercase().to_string())
                .unwrap_or_default()
        };
        format!("{}.{}.", first(&self.first_name), first(&self.last_name))
    }

    /// The state of residence, when the address has one.
    pub fn state(&self) -> Option<UsState> {
        self.address.as_ref().and_then(|a| a.state)
    }

    /// True when the patient can be reached by at least one channel.
    pub fn is_reachable(&self) -> bool {
        self.mobile_phone
            .as_deref()
            .is_some_and(|p| !p.trim().is_empty())
            || self.email.as_deref().is_some_and(|e| e.contains('@'))
    }
}

impl fmt::Debug for PatientContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientContact")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn jane() -> PatientContact {
        PatientContact {
            id: PatientId::new("p-100"),
            first_name: "Janet".into(),
            last_name: "Doeberg".into(),
            date_of_birth: NaiveDate::from_ymd_opt(1980, 2, 3),
            mobile_phone: Some("+15555550123".into()),
            email: Some("janet@example.test".into()),
            address: Some(PostalAddress {
                lines: vec!["1 Test Way".into()],
                city: "Sampletown".into(),
                state: Some(UsState::CA),
                postal_code: "90001".into(),
            }),
            preferred_language: Language::Es,
            time_zone: None,
            sms_consent: SmsConsent::None,
        }
    }

    #[test]
    fn debug_shows_the_id_and_nothing_else() {
        let shown = format!("{:?}", jane());
        assert!(shown.contains("p-100"));
        for phi in [
            "Janet",
            "Doeberg",
            "1980",
            "5555550123",
            "example.test",
            "Test Way",
            "90001",
            "Sampletown",
        ] {
            assert!(!shown.contains(phi), "{phi} leaked into {shown}");
        }
    }

    #[test]
    fn states_parse_case_insensitively_and_reject_junk() {
        assert_eq!("ca".parse::<UsState>(), Ok(UsState::CA));
        assert_eq!(" NY ".parse::<UsState>(), Ok(UsState::NY));
        assert_eq!("ZZ".parse::<UsState>(), Err(InvalidState));
        assert_eq!("California".parse::<UsState>(), Err(InvalidState));
    }

    #[test]
    fn initials_and_reachability() {
        let mut p = jane();
        assert_eq!(p.initials(), "J.D.");
        assert!(p.is_reachable());
        p.mobile_phone = None;
        p.email = Some("not-an-address".into());
        assert!(!p.is_reachable());
    }

    #[test]
    fn revoked_consent_allows_nothing() {
        let c = SmsConsent::Revoked { at: Utc::now() };
        assert!(!c.allows_informational() && !c.allows_marketing());
        let w = SmsConsent::Written {
            at: Utc::now(),
            source: "patient_page".into(),
        };
        assert!(w.allows_informational() && w.allows_marketing());
    }
}
