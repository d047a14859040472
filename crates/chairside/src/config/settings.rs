//! The checked settings, one type per section, as the rest of the application uses them. Every
//! type holding a secret has a hand-written `Debug` that prints `<redacted>` in its place.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use financing_core::{
    AmountLimits, DepositRule, InHouseTerms, InstallmentInterval, LenderId, LenderSlot, LocationId,
    PartialApprovalRule, PolicySettings, PracticeId, Tz, UsState, Waterfall, WaterfallPolicy,
};
use secrecy::SecretString;
use url::Url;

use chairside_engine::ports::PracticeProfile;
use std::sync::Arc;

use chairside_engine::store::crypto::{CryptoError, DataKey, Keyring};
use chairside_engine::store::{DeliveryStore, Durability, PostgresStore, SqliteStore, Store};
use chairside_workflow::WorkflowConfig;

/// Prints in place of a secret.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[store]`: the database (a SQLite file, or a PostgreSQL server named by `url`) and the key
/// patient contact fields are encrypted with.
#[derive(Clone)]
pub struct StoreSettings {
    /// The SQLite database file (default `chairside.sqlite` next to the configuration file);
    /// unused when `postgres` is set.
    pub path: PathBuf,
    /// The PostgreSQL database (`url`, `url_env` or `url_file`: `postgres://` or
    /// `postgresql://`), a secret since it may carry a password. `None`: SQLite at `path`.
    pub postgres: Option<SecretString>,
    /// The data key: 32 bytes as 64 hex characters or base64 (checked at load).
    pub data_key: SecretString,
    /// The current data key's id (`data_key_id`, default 0), stored with every sealed value.
    pub data_key_id: u8,
    /// Retired data keys by id (`[[store.previous_data_keys]]`): values sealed with them still
    /// open until `chairside rotate-key` re-seals them.
    pub previous_data_keys: Vec<(u8, SecretString)>,
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("path", &self.path)
            .field("postgres", &self.postgres.as_ref().map(|_| Redacted))
            .field("data_key", &Redacted)
            .field("data_key_id", &self.data_key_id)
            .field(
                "previous_data_keys",
                &self
                    .previous_data_keys
                    .iter()
                    .map(|(id, _)| id)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl StoreSettings {
    /// The data key.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`]; not after [`Config::load`](super::Config::load), which checks the key.
    pub fn data_key(&self) -> Result<DataKey, CryptoError> {
        use secrecy::ExposeSecret as _;
        DataKey::parse(self.data_key.expose_secret())
    }

    /// The keyring: the current key under its id and every previous key.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`], [`CryptoError::DuplicateKeyId`]; not after [`Config::load`](super::Config::load).
    pub fn keyring(&self) -> Result<Keyring, CryptoError> {
        use secrecy::ExposeSecret as _;
        let mut ring = Keyring::new(self.data_key_id, self.data_key()?);
        for (id, key) in &self.previous_data_keys {
            ring = ring.with_previous(*id, DataKey::parse(key.expose_secret())?)?;
        }
        Ok(ring)
    }

    /// Opens (creating if needed) the SQLite database. Does not migrate.
    ///
    /// # Errors
    /// [`chairside_engine::store::StoreError::Crypto`] for a bad key, [`chairside_engine::store::StoreError::Database`]
    /// when the file cannot be opened.
    pub async fn open(&self) -> chairside_engine::store::Result<SqliteStore> {
        SqliteStore::open(&self.path, self.keyring()?).await
    }

    /// Opens the configured database, SQLite or PostgreSQL (with the given durability; `pool`
    /// connections at most on PostgreSQL). Does not migrate.
    ///
    /// # Errors
    /// [`chairside_engine::store::StoreError::Crypto`] for a bad key, [`chairside_engine::store::StoreError::Database`]
    /// when the database cannot be opened or reached.
    pub async fn open_any(
        &self,
        durability: Durability,
        pool: u32,
    ) -> chairside_engine::store::Result<OpenedStore> {
        use secrecy::ExposeSecret as _;
        Ok(match &self.postgres {
            Some(url) => {
                let store = Arc::new(
                    PostgresStore::connect_with(
                        url.expose_secret(),
                        self.keyring()?,
                        durability,
                        pool,
                    )
                    .await?,
                );
                OpenedStore {
                    store: store.clone(),
                    journal: store,
                }
            }
            None => {
                let store = Arc::new(
                    SqliteStore::open_with(&self.path, self.keyring()?, durability).await?,
                );
                OpenedStore {
                    store: store.clone(),
                    journal: store,
                }
            }
        })
    }

    /// What the database is, for messages: the SQLite file, or the PostgreSQL host and database
    /// (never the user or password).
    pub fn describe(&self) -> String {
        use secrecy::ExposeSecret as _;
        match &self.postgres {
            None => self.path.display().to_string(),
            Some(url) => match url::Url::parse(url.expose_secret()) {
                Ok(u) => format!(
                    "PostgreSQL {}{}{}",
                    u.host_str().unwrap_or("localhost"),
                    u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                    u.path()
                ),
                Err(_) => "PostgreSQL".to_owned(),
            },
        }
    }
}

/// An opened store: every role, and the message-send journal.
#[derive(Clone, Debug)]
pub struct OpenedStore {
    /// Every role.
    pub store: Arc<dyn Store>,
    /// The message-send journal (the same database).
    pub journal: Arc<dyn DeliveryStore>,
}

/// `[runner]`: how this instance claims and drives workflows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerSettings {
    /// This instance's name in leases (default `chairside-<pid>`).
    pub owner: String,
    /// How long a claim holds a workflow (`lease_secs`, default 60).
    pub lease: Duration,
    /// Workflows processed at once (default 16).
    pub concurrency: usize,
    /// Time between polls of the practice systems (`poll_interval_secs`, default 30).
    pub poll_interval: Duration,
}

/// `[detection]`: how accepted plans are detected and checked before anyone is contacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectionSettings {
    /// The largest plan total and the largest single amount (`max_plan_amount`, default
    /// "100000.00"): a plan above it is a staff task, never sent to a lender.
    pub max_plan_amount: financing_core::Money,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            max_plan_amount: financing_core::Money::usd(
                financing_core::check::PlanLimits::default().max_plan_cents,
            ),
        }
    }
}

impl DetectionSettings {
    /// The engine's detection settings: go-live from now, these limits.
    pub fn detect_config(&self) -> chairside_engine::detect::DetectConfig {
        chairside_engine::detect::DetectConfig {
            limits: financing_core::check::PlanLimits {
                max_plan_cents: self.max_plan_amount.minor(),
                ..financing_core::check::PlanLimits::default()
            },
            ..chairside_engine::detect::DetectConfig::default()
        }
    }
}

/// A front-desk login for the staff dashboard. `Debug` hides the hash.
#[derive(Clone)]
pub struct StaffLogin {
    /// The login name, unique across the deployment.
    pub username: String,
    /// The practice whose workflows the account sees.
    pub practice: PracticeId,
    /// The argon2 PHC string (`$argon2id$v=19$…`), as `chairside hash-password` prints it.
    pub password_hash: String,
}

impl fmt::Debug for StaffLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffLogin")
            .field("username", &self.username)
            .field("practice", &self.practice)
            .field("password_hash", &Redacted)
            .finish()
    }
}

/// `[http]`: the webhook, patient page and dashboard server.
#[derive(Clone)]
pub struct HttpSettings {
    /// The address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The external URL patients and webhooks reach (https, unless loopback).
    pub public_base_url: Url,
    /// The key patient-page links are signed with (at least 32 bytes).
    pub patient_link_key: SecretString,
    /// How long a patient link stays valid (default 7 days).
    pub patient_link_lifetime: Duration,
    /// The bearer token `/metrics` asks for; without one, loopback scrapes only.
    pub metrics_token: Option<SecretString>,
    /// How long a client may take to send its request headers (default 10 s).
    pub header_read_timeout: Duration,
    /// How long a request may take, body included, before a 408 (default 30 s).
    pub request_timeout: Duration,
    /// The most connections served at once (default 1024).
    pub max_connections: usize,
    /// The largest webhook body, in bytes (default 256 KiB).
    pub webhook_body_limit: usize,
    /// The largest body on every other route (forms), in bytes (default 16 KiB).
    pub form_body_limit: usize,
    /// `trusted_proxies`: reverse proxies whose `X-Forwarded-For` names the client (default none).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `[http.login]`: staff login throttling (defaults: [`chairside_http::LoginLimits`]).
    pub login: chairside_http::LoginLimits,
    /// `[[http.staff]]`: dashboard logins.
    pub staff: Vec<StaffLogin>,
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("listen", &self.listen)
            .field("public_base_url", &self.public_base_url.as_str())
            .field("patient_link_key", &Redacted)
            .field("patient_link_lifetime", &self.patient_link_lifetime)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| Redacted),
            )
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("webhook_body_limit", &self.webhook_body_limit)
            .field("form_body_limit", &self.form_body_limit)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("login", &self.login)
            .field("staff", &self.staff)
            .finish()
    }
}

/// `[stripe]`: the account that collects deposits and in-house installments.
#[derive(Clone)]
pub struct StripeSettings {
    /// The API (default `https://api.stripe.com/`).
    pub base_url: Url,
    /// The secret or restricted key (`sk_…`, `rk_…`).
    pub api_key: SecretString,
    /// Webhook endpoint secrets (`whsec_…`); several while one is rotated.
    pub webhook_secrets: Vec<SecretString>,
}

impl fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeSettings")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &Redacted)
            .field("webhook_secrets", &self.webhook_secrets.len())
            .finish()
    }
}

/// `[twilio]`: texts to patients. Without it, Chairside sends email only.
#[derive(Clone)]
pub struct TwilioSettings {
    /// The API (default `https://api.twilio.com`).
    pub base_url: Url,
    /// The account (`AC…`).
    pub account_sid: messaging::AccountSid,
    /// The auth token; it also verifies Twilio's webhooks.
    pub auth_token: SecretString,
    /// Who texts are sent from unless a practice sets `sms_from`: a Messaging Service or a number.
    pub sender: messaging::SmsFrom,
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("base_url", &self.base_url.as_str())
            .field("account_sid", &self.account_sid)
            .field("auth_token", &Redacted)
            .field("sender", &self.sender)
            .finish()
    }
}

/// `[practices.pms]` with `kind = "dentrix"`: Dentrix Ascend.
#[derive(Clone)]
pub struct DentrixSettings {
    /// The API (`https://prod.hs1api.com/ascend-gateway/api/v1/` or the QA host).
    pub base_url: Url,
    /// The OAuth2 token endpoint, when not the client's default.
    pub token_url: Option<Url>,
    /// OAuth2 client id.
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: SecretString,
    /// The Ascend organization.
    pub organization_id: String,
}

impl fmt::Debug for DentrixSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DentrixSettings")
            .field("base_url", &self.base_url.as_str())
            .field("token_url", &self.token_url.as_ref().map(Url::as_str))
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field("organization_id", &self.organization_id)
            .finish()
    }
}

impl DentrixSettings {
    /// The client's credentials.
    pub fn credentials(&self) -> dentrix_client::Credentials {
        dentrix_client::Credentials::new(
            self.client_id.clone(),
            self.client_secret.clone(),
            dentrix_client::OrganizationId::new(self.organization_id.clone()),
        )
    }
}

/// `[practices.pms]` with `kind = "opendental"`: the Open Dental API.
#[derive(Clone)]
pub struct OpenDentalSettings {
    /// The API (default the remote API, `https://api.opendental.com/api/v1`; http is allowed for
    /// the Local API and API Service on the office network).
    pub base_url: Url,
    /// The developer key (`ODFHIR` first half).
    pub developer_key: SecretString,
    /// The office's customer key (`ODFHIR` second half).
    pub customer_key: SecretString,
    /// When a plan counts as accepted (default `signed_saved`).
    pub acceptance: opendental_client::AcceptanceRule,
}

impl fmt::Debug for OpenDentalSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenDentalSettings")
            .field("base_url", &self.base_url.as_str())
            .field("developer_key", &Redacted)
            .field("customer_key", &Redacted)
            .field("acceptance", &self.acceptance)
            .finish()
    }
}

/// `[practices.pms]` with `kind = "nexhealth"`: NexHealth (Dentrix G-series and Enterprise,
/// Eaglesoft, Open Dental behind it).
#[derive(Clone)]
pub struct NexHealthSettings {
    /// The API (default `https://nexhealth.info`).
    pub base_url: Url,
    /// The API key.
    pub api_key: SecretString,
    /// The institution's subdomain.
    pub subdomain: String,
    /// The NexHealth location.
    pub location_id: String,
    /// The provider new patients are created under (`provider.provider_id` of NexHealth's
    /// `POST /patients`, required there). Without it an intake's patient is left to staff.
    pub provider_id: Option<String>,
    /// The webhook endpoint's `secret_key`, when NexHealth pushes plan changes.
    pub webhook_secret: Option<SecretString>,
}

impl fmt::Debug for NexHealthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NexHealthSettings")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &Redacted)
            .field("subdomain", &self.subdomain)
            .field("location_id", &self.location_id)
            .field("provider_id", &self.provider_id)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| Redacted),
            )
            .finish()
    }
}

impl NexHealthSettings {
    /// The client's credentials.
    pub fn credentials(&self) -> nexhealth_client::Credentials {
        nexhealth_client::Credentials::new(
            self.api_key.clone(),
            self.subdomain.clone(),
            nexhealth_client::LocationId::new(self.location_id.clone()),
        )
    }
}

/// `[practices.pms]`: the practice system, by `kind`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PmsSettings {
    /// Dentrix Ascend.
    Dentrix(DentrixSettings),
    /// Open Dental.
    OpenDental(OpenDentalSettings),
    /// NexHealth.
    NexHealth(NexHealthSettings),
}

impl PmsSettings {
    /// The `kind` as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dentrix(_) => "dentrix",
            Self::OpenDental(_) => "opendental",
            Self::NexHealth(_) => "nexhealth",
        }
    }
}

/// `[practices.lenders.carecredit]`.
#[derive(Clone)]
pub struct CareCreditSettings {
    /// The partner API.
    pub base_url: Url,
    /// The OAuth2 token endpoint, when not the client's default.
    pub token_url: Option<Url>,
    /// OAuth2 client id.
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: SecretString,
    /// The technology partner's code.
    pub partner_code: String,
    /// The practice location's 16-digit merchant number.
    pub merchant_number: carecredit_client::MerchantNumber,
    /// The amounts CareCredit is asked for (`min`, `max`; default from $200).
    pub limits: AmountLimits,
}

impl fmt::Debug for CareCreditSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CareCreditSettings")
            .field("base_url", &self.base_url.as_str())
            .field("token_url", &self.token_url.as_ref().map(Url::as_str))
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field("partner_code", &self.partner_code)
            .field("merchant_number", &self.merchant_number)
            .field("limits", &self.limits)
            .finish()
    }
}

impl CareCreditSettings {
    /// The client's credentials.
    pub fn credentials(&self) -> carecredit_client::Credentials {
        carecredit_client::Credentials {
            partner_code: carecredit_client::PartnerCode::new(self.partner_code.clone()),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
        }
    }
}

/// `[practices.lenders.sunbit]`.
#[derive(Clone)]
pub struct SunbitSettings {
    /// The API.
    pub base_url: Url,
    /// The API key.
    pub key: SecretString,
    /// The API secret.
    pub secret: SecretString,
    /// The practice's Sunbit location.
    pub location: String,
    /// The webhook signing secret, when Sunbit posts status changes.
    pub webhook_secret: Option<SecretString>,
    /// The amounts Sunbit is asked for (`min`, `max`; default none).
    pub limits: AmountLimits,
}

impl fmt::Debug for SunbitSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SunbitSettings")
            .field("base_url", &self.base_url.as_str())
            .field("key", &Redacted)
            .field("secret", &Redacted)
            .field("location", &self.location)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| Redacted),
            )
            .field("limits", &self.limits)
            .finish()
    }
}

impl SunbitSettings {
    /// The client's credentials.
    pub fn credentials(&self) -> sunbit_client::Credentials {
        sunbit_client::Credentials {
            key: self.key.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// `[practices.lenders]`: the waterfall.
#[derive(Clone, Debug)]
pub struct LenderSettings {
    /// The lenders in the order they are asked; the same for every patient.
    pub order: Vec<LenderId>,
    /// What a partial approval does.
    pub on_partial: PartialApprovalRule,
    /// Whether the in-house plan takes what lenders did not cover.
    pub in_house_fallback: bool,
    /// CareCredit, when configured.
    pub carecredit: Option<CareCreditSettings>,
    /// Sunbit, when configured.
    pub sunbit: Option<SunbitSettings>,
    /// The link-only lenders configured (Cherry, Alphaeon Credit, LendingClub Patient Solutions),
    /// in file order.
    pub link_only: Vec<LinkLenderSettings>,
}

/// `[practices.lenders.cherry]` (and `alphaeon`, `lendingclub`): a lender without an API. The
/// patient gets `application_link`; staff record the decision; after `decide_within` without one
/// the waterfall moves on with a task (docs/lenders.md).
#[derive(Clone, Debug)]
pub struct LinkLenderSettings {
    /// Which lender.
    pub lender: financing_core::link_only::KnownLinkLender,
    /// The name shown to staff and patients.
    pub display_name: String,
    /// The practice's own application link.
    pub application_link: Url,
    /// How long to wait for staff to record the decision.
    pub decide_within: std::time::Duration,
    /// The disclosure shown beside the link and the approval, per language (the shipped default
    /// unless configured).
    pub disclosure: std::collections::HashMap<financing_core::Language, String>,
    /// The amounts sent to this lender.
    pub limits: AmountLimits,
}

impl LinkLenderSettings {
    /// The terms the provider runs with.
    pub fn terms(&self) -> financing_core::link_only::LinkOnlyTerms {
        financing_core::link_only::LinkOnlyTerms {
            lender: LenderId::new(self.lender.id()),
            display_name: self.display_name.clone(),
            application_link: self.application_link.clone(),
            decide_within: self.decide_within,
            limits: self.limits,
        }
    }
}

impl LenderSettings {
    /// The limits of one lender (none for a lender that is not configured).
    pub fn limits(&self, lender: &LenderId) -> AmountLimits {
        match lender.as_str() {
            "carecredit" => self.carecredit.as_ref().map(|c| c.limits),
            "sunbit" => self.sunbit.as_ref().map(|s| s.limits),
            other => self
                .link_only
                .iter()
                .find(|l| l.lender.id() == other)
                .map(|l| l.limits),
        }
        .unwrap_or(AmountLimits::NONE)
    }

    /// The waterfall: the order with each lender's limits, and the policy.
    pub fn waterfall(&self) -> Waterfall {
        let slots = self
            .order
            .iter()
            .map(|lender| LenderSlot {
                lender: lender.clone(),
                limits: self.limits(lender),
            })
            .collect();
        Waterfall::new(
            slots,
            WaterfallPolicy {
                on_partial: self.on_partial,
                in_house_fallback: self.in_house_fallback,
            },
        )
    }
}

/// `[practices.payments]`: what the patient pays through Stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentSettings {
    /// The deposit before financing the rest (`"20%"`, `"150.00"`, `"none"`; default none).
    pub deposit: DepositRule,
    /// In-house installments (default 6).
    pub installments: u32,
    /// Time between installments (`interval`, `interval_count`; default monthly).
    pub interval: InstallmentInterval,
    /// How the patient pays the deposit (`preference`: `"pay_link"`, the default, or
    /// `"card_on_file"`).
    pub preference: chairside_workflow::PaymentPreference,
}

/// `[practices.smtp]`: the practice's mail server.
#[derive(Clone)]
pub struct SmtpSettings {
    /// Host name (also the name TLS verifies).
    pub host: String,
    /// Port (default 587 for starttls, 465 for tls, 25 for none).
    pub port: u16,
    /// Connection security (default starttls; none only for a loopback host).
    pub security: messaging::SmtpSecurity,
    /// User name, when the server wants AUTH.
    pub username: Option<String>,
    /// Password, with `username`.
    pub password: Option<SecretString>,
    /// The address messages come from.
    pub from: messaging::EmailAddress,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| Redacted))
            .field("from", &self.from.as_str())
            .finish()
    }
}

impl SmtpSettings {
    /// The messaging crate's SMTP configuration.
    pub fn smtp_config(&self) -> messaging::SmtpConfig {
        let mut c = messaging::SmtpConfig::new(self.host.clone(), self.port, self.security);
        c.credentials = self.username.clone().zip(self.password.clone());
        c
    }

    /// The sender, under the practice's name.
    pub fn email_from(&self, practice_name: &str) -> messaging::EmailFrom {
        messaging::EmailFrom {
            name: practice_name.to_owned(),
            address: self.from.clone(),
        }
    }
}

/// `[practices.reminders]`: patients who go quiet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderSettings {
    /// Delays after the application link before each reminder (default 1d, 3d).
    pub delays: Vec<Duration>,
    /// After the last reminder, how long to wait before a staff task (default 2d).
    pub give_up_after: Duration,
    /// The longest wait between two lender status reads (default 15m). Each lender's client sets
    /// how fast it is read (seconds while the patient is on the lender's page); this only caps it.
    pub poll_interval: Duration,
}

/// `[[practices]]`: one practice (location) served.
#[derive(Clone, Debug)]
pub struct PracticeSettings {
    /// Our id for it (letters, digits, `-`, `_`).
    pub id: PracticeId,
    /// Its name as patients know it.
    pub name: String,
    /// Its state (two-letter code): drives the compliance policy.
    pub state: UsState,
    /// Its IANA time zone.
    pub time_zone: Tz,
    /// The location lenders know it by.
    pub location_id: LocationId,
    /// The phone number patients call.
    pub phone: String,
    /// The address patients may write to.
    pub email: String,
    /// The number its texts come from, when not `[twilio]`'s; inbound texts to it are routed to
    /// this practice.
    pub sms_from: Option<messaging::PhoneNumber>,
    /// The dental lab's address (`lab_email`): told of each financed case once its treatment
    /// date is known (case reference, patient initials, date; docs/outbound.md). Needs
    /// `[practices.smtp]`.
    pub lab_email: Option<messaging::EmailAddress>,
    /// The practice system.
    pub pms: PmsSettings,
    /// The lender waterfall.
    pub lenders: LenderSettings,
    /// Payments through Stripe.
    pub payments: PaymentSettings,
    /// Email, when configured.
    pub smtp: Option<SmtpSettings>,
    /// Reminders and polling.
    pub reminders: ReminderSettings,
    /// Counsel-approved policy settings.
    pub policy: PolicySettings,
    /// The practice's own notice before any lender link (`[practices.notice]`), per language;
    /// empty for the shipped default of its state (California, New York).
    pub lender_notice: std::collections::HashMap<financing_core::Language, String>,
    /// The language a new patient's pages and messages default to when nothing else says
    /// (`default_language`, `en` unless set): the intake start form's choice, and the public
    /// intake page when the browser names no language Chairside writes.
    pub default_language: financing_core::Language,
    /// New staff tasks emailed to the practice's staff mailbox (`[practices.staff_alerts]`);
    /// `None`: no alerts (the dashboard only).
    pub staff_alerts: Option<StaffAlertSettings>,
}

/// `[practices.staff_alerts]`.
#[derive(Clone, Debug)]
pub struct StaffAlertSettings {
    /// The practice's staff mailbox: each new task is emailed there once (initials and the
    /// plan's id only; the rest is in the dashboard).
    pub to: messaging::EmailAddress,
    /// Only these task kinds (`counteroffer`, `patient_quiet`, ...); `None`: every task.
    pub tasks: Option<Vec<String>>,
    /// Tasks that arrive within this of each other go out as one digest email (`digest_window`,
    /// default 2 minutes; `"0s"`: one email per task, at once).
    pub digest_window: std::time::Duration,
    /// The staff's language (`language`, `en` by default, or `es`): the alert and the digest are
    /// written in it.
    pub language: financing_core::Language,
}

impl PracticeSettings {
    /// The in-house plan's terms when the practice offers one (`in_house_fallback`). Its deposit is
    /// none: the practice deposit comes off first.
    pub fn in_house_terms(&self) -> Option<InHouseTerms> {
        self.lenders.in_house_fallback.then_some(InHouseTerms {
            deposit: DepositRule::None,
            installments: self.payments.installments,
            interval: self.payments.interval,
        })
    }

    /// The rules the workflow machine applies for this practice.
    pub fn workflow_config(&self) -> WorkflowConfig {
        WorkflowConfig {
            waterfall: self.lenders.waterfall(),
            deposit: self.payments.deposit,
            in_house: self.in_house_terms(),
            reminder_delays: self.reminders.delays.clone(),
            give_up_after: self.reminders.give_up_after,
            poll_interval: self.reminders.poll_interval,
            // Each lender's own schedule, filled in by the engine from its client.
            lender_schedules: Vec::new(),
            payment_preference: self.payments.preference,
            time_zone: Some(self.time_zone.name().to_owned()),
            lender_names: Vec::new(),
        }
    }

    /// How messages and notes name the practice.
    pub fn profile(&self) -> PracticeProfile {
        PracticeProfile {
            id: self.id.clone(),
            name: self.name.clone(),
            state: self.state,
            time_zone: self.time_zone.name().to_owned(),
            location_id: self.location_id.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
        }
    }

    /// Who this practice's texts come from: its own `sms_from`, else `[twilio]`'s sender; `None`
    /// without Twilio.
    pub fn sms_sender(&self, twilio: Option<&TwilioSettings>) -> Option<messaging::SmsFrom> {
        let twilio = twilio?;
        Some(match &self.sms_from {
            Some(n) => messaging::SmsFrom::Number(n.clone()),
            None => twilio.sender.clone(),
        })
    }
}

/// `[outbound]`: the retry bound of outbound deliveries and the subscribers
/// (`[[outbound.webhooks]]`).
#[derive(Clone, Debug)]
pub struct OutboundSettings {
    /// Attempts per delivery, the first included, before it is given up and shown to staff
    /// (default 12).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles after each failure (default 5 s).
    pub first_retry: Duration,
    /// The longest wait between attempts (default 1 h), unless a `Retry-After` asks for more.
    pub max_retry_delay: Duration,
    /// The signed webhook endpoints.
    pub webhooks: Vec<WebhookSettings>,
    /// The CRM (`[outbound.hubspot]`), when configured.
    pub hubspot: Option<HubSpotSettings>,
}

/// `[outbound.hubspot]`: deals in HubSpot for follow-up.
#[derive(Clone)]
pub struct HubSpotSettings {
    /// The API (default `https://api.hubapi.com/`).
    pub base_url: Url,
    /// The private app's access token.
    pub token: SecretString,
    /// The unique deal property deals are upserted by (default `chairside_workflow_id`).
    pub deal_id_property: String,
    /// The pipeline, when the account has several.
    pub pipeline: Option<String>,
    /// Whether deals carry the amount asked of lenders (default false).
    pub amounts: bool,
    /// Whose plans (default every practice).
    pub practices: Option<Vec<PracticeId>>,
    /// The internal stage id per outcome.
    pub stages: chairside_engine::outbound::crm::CrmStages,
}

impl fmt::Debug for HubSpotSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotSettings")
            .field("base_url", &self.base_url.as_str())
            .field("token", &Redacted)
            .field("deal_id_property", &self.deal_id_property)
            .field("pipeline", &self.pipeline)
            .field("amounts", &self.amounts)
            .field("practices", &self.practices)
            .field("stages", &self.stages)
            .finish()
    }
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            first_retry: Duration::from_secs(5),
            max_retry_delay: Duration::from_secs(3600),
            webhooks: Vec::new(),
            hubspot: None,
        }
    }
}

/// `[[outbound.webhooks]]`: one endpoint that receives Chairside's events, signed per Standard
/// Webhooks.
#[derive(Clone)]
pub struct WebhookSettings {
    /// A short name, unique among the endpoints: its deliveries are kept under `webhook:{name}`.
    pub name: String,
    /// Where events are POSTed (https; http only for loopback).
    pub url: Url,
    /// The signing secret, `whsec_` and base64 of 24 to 64 bytes (checked at load).
    pub secret: SecretString,
    /// The event types it receives (default all).
    pub events: Option<Vec<chairside_engine::outbound::events::EventType>>,
    /// The practices whose events it receives (default all).
    pub practices: Option<Vec<PracticeId>>,
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("secret", &Redacted)
            .field("events", &self.events)
            .field("practices", &self.practices)
            .finish()
    }
}
