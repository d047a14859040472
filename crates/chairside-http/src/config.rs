//! The HTTP surface's configuration: URLs, keys, webhook secrets, practices and staff accounts.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, Params};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use financing_core::{Language, LenderId, PracticeId};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use chairside_engine::links::sign_patient_token;
use chairside_workflow::WorkflowId;

/// The shortest patient-page key accepted: 32 bytes, the HMAC-SHA256 block of security.
const MIN_KEY_BYTES: usize = 32;

/// Webhook signing secrets, several per secret so a rolled secret and its successor both verify
/// during the rotation window. `Debug` shows counts only.
///
/// Stripe and Twilio secrets are account-wide (their model: one account serves every practice,
/// and what an event may touch is checked against the workflow it names). Sunbit and NexHealth
/// secrets belong to one practice each: a delivery to `/webhooks/sunbit/{practice}` is verified
/// with that practice's Sunbit secrets only and may touch only that practice's workflows.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    /// Stripe endpoint secrets (`whsec_…`).
    pub stripe: Vec<SecretString>,
    /// Sunbit endpoint secrets, per practice.
    pub sunbit: HashMap<PracticeId, Vec<SecretString>>,
    /// NexHealth endpoint `secret_key`s, per practice.
    pub nexhealth: HashMap<PracticeId, Vec<SecretString>>,
    /// Twilio auth tokens (or Webhooks-Rule shared keys).
    pub twilio: Vec<SecretString>,
}

/// Per practice, how many secrets it has: never the secrets.
fn counts(map: &HashMap<PracticeId, Vec<SecretString>>) -> Vec<(&str, usize)> {
    let mut v: Vec<(&str, usize)> = map.iter().map(|(p, s)| (p.as_str(), s.len())).collect();
    v.sort_unstable();
    v
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("stripe", &self.stripe.len())
            .field("sunbit", &counts(&self.sunbit))
            .field("nexhealth", &counts(&self.nexhealth))
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

/// OWASP's minimum argon2id settings (Password Storage Cheat Sheet), as equivalent pairs of
/// memory in KiB and passes: a hash must reach at least one of them.
const ARGON2ID_FLOOR: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

/// Why a staff password hash is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashProblem {
    /// Not a PHC string.
    #[error("not an argon2 PHC string (make one with `chairside hash-password`)")]
    Unparsable,
    /// Parsable, but not argon2id, or cheaper than OWASP's minimum for argon2id.
    #[error(
        "argon2 settings below the OWASP minimum (argon2id with m >= 19456 KiB and t >= 2, or an \
         equivalent such as m >= 47104 with t = 1); make a new hash with `chairside hash-password`"
    )]
    BelowFloor,
}

/// Checks a configured staff password hash: a PHC string for argon2id at or above OWASP's
/// minimum cost, so that a leaked configuration cannot be brute-forced cheaply and a login
/// cannot be checked with a cheaper hash than intended.
///
/// # Errors
/// [`HashProblem::Unparsable`] or [`HashProblem::BelowFloor`].
pub fn check_password_hash(hash: &str) -> Result<(), HashProblem> {
    let parsed = PasswordHash::new(hash).map_err(|_| HashProblem::Unparsable)?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(HashProblem::BelowFloor);
    }
    let params = Params::try_from(&parsed).map_err(|_| HashProblem::Unparsable)?;
    let strong = params.p_cost() >= 1
        && ARGON2ID_FLOOR
            .iter()
            .any(|&(m, t)| params.m_cost() >= m && params.t_cost() >= t);
    if strong {
        Ok(())
    } else {
        Err(HashProblem::BelowFloor)
    }
}

/// How staff logins are throttled. Failures are kept in the store, so the limits hold across
/// restarts and across instances.
///
/// After `account_free_failures` consecutive failures on one account (or
/// `address_free_failures` from one client address), each further attempt must wait
/// `first_delay`, doubling with every failure up to `max_delay`; an attempt made earlier is
/// answered 429 with `Retry-After` and its password is not checked. At `lock_after` failures the
/// account locks for `lock_for`, or until staff run `chairside unlock-staff`. Failures are
/// forgotten `forget_after` after the latest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures on one account before delays start.
    pub account_free_failures: u32,
    /// Failures from one client address before delays start.
    pub address_free_failures: u32,
    /// The first delay.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Failures on one account that lock it.
    pub lock_after: u32,
    /// How long a lockout lasts unless staff clear it.
    pub lock_for: Duration,
    /// How long after the latest failure the failures are forgotten.
    pub forget_after: Duration,
    /// Passwords checked at once (each argon2 check takes about 19 MiB and a core).
    pub concurrent_hashes: usize,
    /// How long a login waits for a free check before it is answered 503.
    pub hash_wait: Duration,
}

impl Default for LoginLimits {
    /// 3 free failures per account and 10 per address, delays from 1 s doubling to 15 min, a
    /// lockout of 1 h at 10 failures, failures forgotten after a day, 2 checks at once, 2 s wait.
    fn default() -> Self {
        Self {
            account_free_failures: 3,
            address_free_failures: 10,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            lock_after: 10,
            lock_for: Duration::from_secs(3600),
            forget_after: Duration::from_secs(24 * 3600),
            concurrent_hashes: 2,
            hash_wait: Duration::from_secs(2),
        }
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
    /// language; English is the fallback. When empty, the shipped default of the practice's
    /// state applies ([`crate::notices::state_notice`]).
    pub lender_notice: HashMap<Language, String>,
    /// The practice's state: which shipped notices apply (with the patient's own state).
    pub state: Option<financing_core::UsState>,
    /// The language a new patient's pages default to: the intake start form's choice, and the
    /// public intake page when neither `?lang=` nor the browser names one Chairside writes.
    pub default_language: Language,
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
            state: None,
            default_language: Language::En,
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
    /// The largest request body accepted, in bytes, on the webhook routes; larger gets 413.
    pub body_limit: usize,
    /// Staff login throttling and the cap on concurrent password checks.
    pub login: LoginLimits,
    /// The largest request body accepted on the staff and patient forms (and every other route
    /// but the webhooks), in bytes; larger gets 413.
    pub form_body_limit: usize,
    /// The bearer token `/metrics` asks for. Without one, `/metrics` answers loopback clients
    /// only.
    pub metrics_token: Option<SecretString>,
    /// How long a client may take to send a request's headers before the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a request may take, body and handler included, before it is answered 408.
    pub request_timeout: Duration,
    /// The most connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Reverse proxies (TLS terminators, load balancers) whose `X-Forwarded-For` is believed:
    /// a connection from one of these addresses is throttled under the client address the proxy
    /// reports. Empty (the default): proxy headers are never believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The mode of the configured Stripe key (`Some(true)` live, `Some(false)` test; see
    /// `stripe_schedule::key_livemode`): a Stripe event of the other mode is refused (400) and
    /// logged. `None` accepts both.
    pub stripe_livemode: Option<bool>,
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
            .field("login", &self.login)
            .field("form_body_limit", &self.form_body_limit)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "[redacted]"),
            )
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("stripe_livemode", &self.stripe_livemode)
            .finish_non_exhaustive()
    }
}

impl HttpConfig {
    /// A configuration with defaults: patient links valid 7 days, staff sessions 12 hours,
    /// webhook tolerance 300 s, a 256 KiB body limit on webhooks and 16 KiB elsewhere, headers
    /// within 10 s, requests within 30 s, at most 1024 connections at once, `Secure` cookies for
    /// an `https` URL, no metrics token (loopback scrapes only), and no practices, lenders,
    /// accounts or webhook secrets yet.
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
            login: LoginLimits::default(),
            form_body_limit: 16 * 1024,
            metrics_token: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            trusted_proxies: Vec::new(),
            stripe_livemode: None,
        }
    }

    /// Checks what would otherwise fail at request time: the key length, the tolerance, the
    /// staff accounts (argon2id PHC hashes at or above OWASP's minimum cost, see
    /// [`check_password_hash`]; unique names; known practices), the login limits, per-practice
    /// webhook secrets of known practices, and SMS numbers that belong to one practice only.
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
        if self.header_read_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.max_connections == 0 || self.body_limit == 0 || self.form_body_limit == 0 {
            return Err(ConfigError::ZeroLimit);
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().is_empty())
        {
            return Err(ConfigError::EmptyMetricsToken);
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
            match check_password_hash(&account.password_hash) {
                Ok(()) => {}
                Err(HashProblem::Unparsable) => {
                    return Err(ConfigError::BadPasswordHash(account.username.clone()));
                }
                Err(HashProblem::BelowFloor) => {
                    return Err(ConfigError::WeakPasswordHash(account.username.clone()));
                }
            }
        }
        let l = &self.login;
        if l.concurrent_hashes == 0
            || l.lock_after == 0
            || l.first_delay.is_zero()
            || l.max_delay < l.first_delay
            || l.forget_after.is_zero()
        {
            return Err(ConfigError::BadLoginLimits);
        }
        for practice in self
            .webhook_secrets
            .sunbit
            .keys()
            .chain(self.webhook_secrets.nexhealth.keys())
        {
            if !practices.contains(practice) {
                return Err(ConfigError::UnknownWebhookPractice(practice.to_string()));
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

    /// The practice an un-scoped webhook URL (`/webhooks/sunbit`) stands for: the only one
    /// configured. With several, only the per-practice URLs are served.
    pub fn sole_practice(&self) -> Option<&PracticeSite> {
        match self.practices.as_slice() {
            [only] => Some(only),
            _ => None,
        }
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
    /// The header read timeout or the request timeout is zero.
    #[error("the header read and request timeouts must not be zero")]
    ZeroTimeout,
    /// The connection limit or a body limit is zero (nothing could be served).
    #[error("the connection and body limits must not be zero")]
    ZeroLimit,
    /// The metrics token is empty (every scrape would match it).
    #[error("the metrics token must not be empty")]
    EmptyMetricsToken,
    /// Two staff accounts share a username, or one has none.
    #[error("staff username {0:?} is empty or used twice")]
    DuplicateUsername(String),
    /// A staff account names a practice that is not configured.
    #[error("staff account {0:?} belongs to a practice that is not configured")]
    UnknownPractice(String),
    /// A staff account's password hash is not a PHC string.
    #[error("staff account {0:?} has a password hash that is not a PHC string")]
    BadPasswordHash(String),
    /// A staff account's password hash is cheaper than OWASP's argon2id minimum.
    #[error(
        "staff account {0:?} has a password hash below the OWASP argon2id minimum \
         (m >= 19456 KiB with t >= 2, or m >= 47104 with t = 1); make a new one with \
         `chairside hash-password`"
    )]
    WeakPasswordHash(String),
    /// The login limits would disable throttling or every login.
    #[error(
        "login limits need at least one concurrent password check, a lockout threshold, a \
         non-zero first delay no longer than the longest, and a non-zero forget window"
    )]
    BadLoginLimits,
    /// Sunbit or NexHealth webhook secrets are given for a practice that is not configured.
    #[error("webhook secrets are configured for practice {0:?}, which is not configured")]
    UnknownWebhookPractice(String),
    /// One SMS number is configured for two practices.
    #[error("SMS number {0} is configured for more than one practice")]
    SharedSmsNumber(String),
}

/// Hashes a staff password with argon2id and the crate's default parameters (m = 19456 KiB,
/// t = 2, p = 1: OWASP's minimum), as a PHC string for [`StaffAccount::password_hash`].
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
impl StaffAccount {
    /// Test-only: an account whose hash is deliberately cheap (m = 8 KiB, t = 1) so tests can
    /// sign in many times. [`HttpConfig::validate`] refuses such an account; tests that use it
    /// build their state without validating.
    pub(crate) fn with_cheap_test_hash(
        username: &str,
        practice: PracticeId,
        password: &str,
    ) -> Self {
        let params = Params::new(8, 1, 1, None).expect("valid parameters");
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"fixed-test-salt!").expect("salt");
        let hash = argon
            .hash_password(password.as_bytes(), &salt)
            .expect("hash")
            .to_string();
        Self {
            username: username.to_owned(),
            practice,
            password_hash: hash,
        }
    }
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
            password_hash: STRONG_PHC.into(),
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

        let mut stray_secret = config();
        stray_secret.webhook_secrets.sunbit.insert(
            PracticeId::new("elsewhere"),
            vec![SecretString::from("sunbit-secret")],
        );
        assert_eq!(
            stray_secret.validate(),
            Err(ConfigError::UnknownWebhookPractice("elsewhere".into()))
        );
        assert!(!format!("{stray_secret:?}").contains("sunbit-secret"));

        let mut shared = config();
        shared.practices[0].sms_numbers = vec!["+15550100100".into(), "+15550100100".into()];
        assert_eq!(
            shared.validate(),
            Err(ConfigError::SharedSmsNumber("+15550100100".into()))
        );
    }

    /// A PHC string at OWASP's floor (the hash itself is never checked here).
    const STRONG_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    fn with_hash(hash: &str) -> HttpConfig {
        let mut c = config();
        c.staff.push(StaffAccount {
            username: "dave".into(),
            practice: PracticeId::new("smile"),
            password_hash: hash.into(),
        });
        c
    }

    #[test]
    fn a_staff_hash_below_the_owasp_argon2id_floor_is_refused_naming_the_account_not_the_hash() {
        // Arrange
        let weak = [
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19455,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2i$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ];
        for hash in weak {
            // Act
            let result = with_hash(hash).validate();
            // Assert
            assert_eq!(
                result,
                Err(ConfigError::WeakPasswordHash("dave".into())),
                "{hash}"
            );
            let message = result.unwrap_err().to_string();
            assert!(message.contains("\"dave\""), "{message}");
            assert!(!message.contains("c2FsdHNhbHQ"), "{message}");
        }
    }

    #[test]
    fn staff_hashes_at_the_owasp_floor_or_its_equivalents_are_accepted() {
        for hash in [
            STRONG_PHC,
            "$argon2id$v=19$m=47104,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert_eq!(with_hash(hash).validate(), Ok(()), "{hash}");
        }
    }

    #[test]
    fn the_test_only_cheap_hash_never_passes_production_validation() {
        // Arrange
        let mut c = config();
        c.staff.push(StaffAccount::with_cheap_test_hash(
            "erin",
            PracticeId::new("smile"),
            "pw",
        ));
        // Act + Assert
        assert_eq!(
            c.validate(),
            Err(ConfigError::WeakPasswordHash("erin".into()))
        );
    }

    #[test]
    fn login_limits_that_would_disable_throttling_or_every_login_are_refused() {
        let mut none = config();
        none.login.concurrent_hashes = 0;
        assert_eq!(none.validate(), Err(ConfigError::BadLoginLimits));
        let mut never = config();
        never.login.lock_after = 0;
        assert_eq!(never.validate(), Err(ConfigError::BadLoginLimits));
        let mut instant = config();
        instant.login.first_delay = Duration::ZERO;
        assert_eq!(instant.validate(), Err(ConfigError::BadLoginLimits));
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
