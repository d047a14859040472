//! The HTTP surface's configuration: URLs, keys, webhook secrets, practices and staff accounts.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use financing_core::{Language, LenderId, PracticeId};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use chairside_engine::links::sign_patient_token;
use chairside_workflow::WorkflowId;

/// The shortest patient-page key accepted: 32 bytes, the HMAC-SHA256 block of security.
const MIN_KEY_BYTES: usize = 32;

/// Webhook signing secrets, several per provider so a rolled secret and its successor both verify
/// during the rotation window. `Debug` shows counts only.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    /// Stripe endpoint secrets (`whsec_…`).
    pub stripe: Vec<SecretString>,
    /// Sunbit endpoint secrets.
    pub sunbit: Vec<SecretString>,
    /// NexHealth endpoint `secret_key`s.
    pub nexhealth: Vec<SecretString>,
    /// Twilio auth tokens (or Webhooks-Rule shared keys).
    pub twilio: Vec<SecretString>,
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("stripe", &self.stripe.len())
            .field("sunbit", &self.sunbit.len())
            .field("nexhealth", &self.nexhealth.len())
            .field("twilio", &self.twilio.len())
            .finish()
    }
}

/// A front-desk account. Usernames are unique across the deployment; each belongs to one
/// practice and sees only that practice's workflows. `Debug` hides the hash.
#[derive(Clone)]
pub struct StaffAccount {
    /// The login name.
    pub username: String,
    /// The practice the account belongs to.
    pub practice: PracticeId,
    /// The argon2 password hash in PHC string form (`$argon2id$v=19$…`), as [`hash_password`]
    /// makes it.
    pub password_hash: String,
}

impl fmt::Debug for StaffAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffAccount")
            .field("username", &self.username)
            .field("practice", &self.practice)
            .finish_non_exhaustive()
    }
}

/// How a lender is named on the patient page, with its disclosure text, verbatim as the lender
/// approved it, per language.
#[derive(Clone, Debug, Default)]
pub struct LenderCopy {
    /// The name patients know (`CareCredit`).
    pub name: String,
    /// The lender-approved disclosure text per language; English is the fallback.
    pub disclosure: HashMap<Language, String>,
}

/// A practice as the HTTP surface shows it and routes to it.
#[derive(Clone, Debug)]
pub struct PracticeSite {
    /// Our id.
    pub id: PracticeId,
    /// Its name as patients know it.
    pub name: String,
    /// The phone number patients call (HELP replies, the page footer).
    pub phone: String,
    /// The email address patients may write to, if it gives one out.
    pub email: Option<String>,
    /// Its time zone: "today" on the dashboard is the practice's day.
    pub time_zone: Tz,
    /// The E.164 numbers it texts from: an inbound text to one of them belongs to this practice.
    pub sms_numbers: Vec<String>,
    /// Counsel-supplied notice shown before any lender link (California B&P §654.3), per
    /// language; English is the fallback.
    pub lender_notice: HashMap<Language, String>,
}

impl PracticeSite {
    /// A practice with a name, a phone and a time zone, texting from no number yet.
    pub fn new(
        id: PracticeId,
        name: impl Into<String>,
        phone: impl Into<String>,
        time_zone: Tz,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            phone: phone.into(),
            email: None,
            time_zone,
            sms_numbers: Vec::new(),
            lender_notice: HashMap::new(),
        }
    }
}

/// The HTTP surface's configuration. Build it with [`HttpConfig::new`], adjust the public
/// fields, and check it with [`HttpConfig::validate`] before serving. `Debug` hides every secret.
#[derive(Clone)]
pub struct HttpConfig {
    /// The external URL of the application's root (`https://pay.practice.example/`): patient links
    /// are built on it and Twilio signatures are checked against it.
    pub public_base_url: Url,
    /// The key patient-page tokens are signed with (at least 32 bytes).
    pub patient_token_key: SecretString,
    /// How long a patient link stays valid.
    pub patient_token_lifetime: Duration,
    /// Webhook secrets per provider.
    pub webhook_secrets: WebhookSecrets,
    /// The most a signed webhook timestamp may differ from now (Stripe, Sunbit). Not zero.
    pub webhook_tolerance: Duration,
    /// The practices served.
    pub practices: Vec<PracticeSite>,
    /// Lender names and disclosure texts by lender id.
    pub lenders: HashMap<LenderId, LenderCopy>,
    /// Front-desk accounts.
    pub staff: Vec<StaffAccount>,
    /// How long a staff session lasts.
    pub staff_session_lifetime: Duration,
    /// Mark cookies `Secure` (behind TLS). Defaults to true for an `https` base URL.
    pub secure_cookies: bool,
    /// The largest request body accepted, in bytes; larger gets 413.
    pub body_limit: usize,
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("public_base_url", &self.public_base_url.as_str())
            .field("patient_token_lifetime", &self.patient_token_lifetime)
            .field("webhook_secrets", &self.webhook_secrets)
            .field("webhook_tolerance", &self.webhook_tolerance)
            .field("practices", &self.practices)
            .field("staff", &self.staff)
            .field("secure_cookies", &self.secure_cookies)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl HttpConfig {
    /// A configuration with defaults: patient links valid 7 days, staff sessions 12 hours,
    /// webhook tolerance 300 s, a 256 KiB body limit, `Secure` cookies for an `https` URL, and no
    /// practices, lenders, accounts or webhook secrets yet.
    pub fn new(public_base_url: Url, patient_token_key: SecretString) -> Self {
        let secure_cookies = public_base_url.scheme() == "https";
        Self {
            public_base_url,
            patient_token_key,
            patient_token_lifetime: Duration::from_secs(7 * 24 * 3600),
            webhook_secrets: WebhookSecrets::default(),
            webhook_tolerance: Duration::from_secs(300),
            practices: Vec::new(),
            lenders: HashMap::new(),
            staff: Vec::new(),
            staff_session_lifetime: Duration::from_secs(12 * 3600),
            secure_cookies,
            body_limit: 256 * 1024,
        }
    }

    /// Checks what would otherwise fail at request time: the key length, the tolerance, the
    /// staff accounts (parsable PHC hashes, unique names, known practices), and SMS numbers that
    /// belong to one practice only.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.patient_token_key.expose_secret().len() < MIN_KEY_BYTES {
            return Err(ConfigError::ShortPatientKey);
        }
        if self.webhook_tolerance.is_zero() {
            return Err(ConfigError::ZeroTolerance);
        }
        if self.patient_token_lifetime.is_zero() || self.staff_session_lifetime.is_zero() {
            return Err(ConfigError::ZeroLifetime);
        }
        let practices: HashSet<&PracticeId> = self.practices.iter().map(|p| &p.id).collect();
        let mut names = HashSet::new();
        for account in &self.staff {
            if account.username.trim().is_empty() || !names.insert(account.username.as_str()) {
                return Err(ConfigError::DuplicateUsername(account.username.clone()));
            }
            if !practices.contains(&account.practice) {
                return Err(ConfigError::UnknownPractice(account.username.clone()));
            }
            if PasswordHash::new(&account.password_hash).is_err() {
                return Err(ConfigError::BadPasswordHash(account.username.clone()));
            }
        }
        let mut numbers = HashSet::new();
        for number in self.practices.iter().flat_map(|p| &p.sms_numbers) {
            if !numbers.insert(number.as_str()) {
                return Err(ConfigError::SharedSmsNumber(number.clone()));
            }
        }
        Ok(())
    }

    /// The practice with this id.
    pub fn practice(&self, id: &PracticeId) -> Option<&PracticeSite> {
        self.practices.iter().find(|p| &p.id == id)
    }

    /// The practice that texts from `number` (E.164).
    pub fn practice_by_sms_number(&self, number: &str) -> Option<&PracticeSite> {
        self.practices
            .iter()
            .find(|p| p.sms_numbers.iter().any(|n| n == number))
    }

    /// The patient page link for a workflow at link `generation` (the store's current one),
    /// valid for [`HttpConfig::patient_token_lifetime`] from `now`.
    pub fn patient_link(&self, workflow: &WorkflowId, generation: u64, now: DateTime<Utc>) -> Url {
        let lifetime = chrono::Duration::from_std(self.patient_token_lifetime)
            .unwrap_or(chrono::Duration::days(7));
        let token = sign_patient_token(
            workflow,
            generation,
            now + lifetime,
            &self.patient_token_key,
        );
        chairside_engine::links::under(&self.public_base_url, &format!("p/{token}"))
    }
}

/// A configuration the HTTP surface refuses. Names the field, never a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The patient-page key is shorter than 32 bytes.
    #[error("the patient-page key must be at least 32 bytes")]
    ShortPatientKey,
    /// The webhook tolerance is zero (it would disable the replay check).
    #[error("the webhook timestamp tolerance must not be zero")]
    ZeroTolerance,
    /// A token or session lifetime is zero.
    #[error("patient-link and staff-session lifetimes must not be zero")]
    ZeroLifetime,
    /// Two staff accounts share a username, or one has none.
    #[error("staff username {0:?} is empty or used twice")]
    DuplicateUsername(String),
    /// A staff account names a practice that is not configured.
    #[error("staff account {0:?} belongs to a practice that is not configured")]
    UnknownPractice(String),
    /// A staff account's password hash is not a PHC string.
    #[error("staff account {0:?} has a password hash that is not a PHC string")]
    BadPasswordHash(String),
    /// One SMS number is configured for two practices.
    #[error("SMS number {0} is configured for more than one practice")]
    SharedSmsNumber(String),
}

/// Hashes a staff password with argon2id and the crate's default parameters, as a PHC string
/// for [`StaffAccount::password_hash`].
///
/// # Errors
/// [`argon2::password_hash::Error`] should hashing fail (it does not for ordinary passwords).
pub fn hash_password(password: &SecretString) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HttpConfig {
        let mut c = HttpConfig::new(
            "https://pay.example.test/base/".parse().unwrap(),
            SecretString::from("k".repeat(32)),
        );
        c.practices.push(PracticeSite::new(
            PracticeId::new("smile"),
            "Smile Dental",
            "(555) 010-0100",
            chrono_tz::America::Chicago,
        ));
        c
    }

    #[test]
    fn a_sound_configuration_validates_and_secrets_stay_out_of_debug() {
        // Arrange
        let mut c = config();
        c.webhook_secrets
            .stripe
            .push(SecretString::from("whsec_do_not_print"));
        c.staff.push(StaffAccount {
            username: "alice".into(),
            practice: PracticeId::new("smile"),
            password_hash: hash_password(&SecretString::from("pw")).unwrap(),
        });
        // Act
        let shown = format!("{c:?}");
        // Assert
        assert_eq!(c.validate(), Ok(()));
        assert!(c.secure_cookies);
        assert!(!shown.contains("whsec_do_not_print"));
        assert!(!shown.contains(&"k".repeat(32)));
        assert!(!shown.contains("argon2"));
    }

    #[test]
    fn weak_or_inconsistent_configurations_are_refused() {
        let mut short = config();
        short.patient_token_key = SecretString::from("too short");
        assert_eq!(short.validate(), Err(ConfigError::ShortPatientKey));

        let mut zero = config();
        zero.webhook_tolerance = Duration::ZERO;
        assert_eq!(zero.validate(), Err(ConfigError::ZeroTolerance));

        let mut stray = config();
        stray.staff.push(StaffAccount {
            username: "bob".into(),
            practice: PracticeId::new("elsewhere"),
            password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        });
        assert_eq!(
            stray.validate(),
            Err(ConfigError::UnknownPractice("bob".into()))
        );

        let mut garbled = config();
        garbled.staff.push(StaffAccount {
            username: "carol".into(),
            practice: PracticeId::new("smile"),
            password_hash: "plaintext-password".into(),
        });
        assert_eq!(
            garbled.validate(),
            Err(ConfigError::BadPasswordHash("carol".into()))
        );

        let mut shared = config();
        shared.practices[0].sms_numbers = vec!["+15550100100".into(), "+15550100100".into()];
        assert_eq!(
            shared.validate(),
            Err(ConfigError::SharedSmsNumber("+15550100100".into()))
        );
    }

    #[test]
    fn patient_links_sit_under_the_public_base_path() {
        let c = config();
        let link = c.patient_link(
            &WorkflowId::new("wf_0123456789abcdef01234567"),
            0,
            Utc::now(),
        );
        assert!(
            link.as_str()
                .starts_with("https://pay.example.test/base/p/")
        );
        assert_eq!(link.query(), None);
    }
}
