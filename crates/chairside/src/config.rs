//! The `chairside` configuration: one TOML file, environment overrides, secrets by reference.
//!
//! [`Config::load`] reads the file, applies the environment overrides, resolves every secret from
//! the environment or a file, and checks every field. It reports *every* problem in one pass
//! ([`ConfigReport`]), each with the key's path (`practices[1].lenders.order[2]`) and what was
//! expected, so `chairside check-config` can list them all at once.
//!
//! The file is read by serde into plain structs (`raw`, every key optional), then one validation
//! pass (`validate`) checks them in file order and builds the typed settings (`settings`). A
//! value of the wrong type (a number where text is expected) stops the reading: it is reported
//! alone, with its path. Every key the structs do not know is reported, with a suggestion.
//!
//! # Durations
//!
//! Durations are written with a unit (`30s`, `15m`, `4h`, `3d`; `humantime` syntax) and none may
//! exceed [`MAX_DURATION`] (365 days), so no configured value can overflow a timer's date.
//!
//! # Secrets
//!
//! A secret is never written in the file. For a secret key `api_key`, the file says where it is:
//! `api_key_env = "STRIPE_API_KEY"` (an environment variable) or `api_key_file =
//! "/run/secrets/stripe"` (a file; surrounding whitespace is trimmed; a relative path is taken
//! from the configuration file's directory). A literal `api_key = "…"` in the file is refused.
//! Secrets are held as [`secrecy::SecretString`]; every `Debug` here prints `<redacted>` in their place,
//! and no problem message ever contains one.
//!
//! # Environment overrides
//!
//! An environment variable `CHAIRSIDE_<SECTION>__<KEY>` (parts separated by a double underscore,
//! any case) replaces or adds the value at that path: `CHAIRSIDE_STORE__PATH=/var/lib/chairside.db`
//! sets `[store] path`, `CHAIRSIDE_HTTP__LISTEN=0.0.0.0:8080` sets `[http] listen`, and a number
//! picks an entry of a list of sections: `CHAIRSIDE_PRACTICES__0__PHONE` is the first practice's
//! phone. Values from the environment are strings; numbers, `true`/`false` and comma-separated
//! lists (`CHAIRSIDE_PRACTICES__0__LENDERS__ORDER=sunbit,carecredit`) are read from them. A secret
//! may be given this way too (`CHAIRSIDE_STRIPE__API_KEY`), since it then comes from the
//! environment. Variables without a double underscore (`CHAIRSIDE_CONFIG`) are not overrides.
//!
//! # Example
//!
//! ```no_run
//! use chairside::config::Config;
//!
//! match Config::load("chairside.toml".as_ref()) {
//!     Ok(config) => {
//!         for practice in &config.practices {
//!             let workflow = config.workflow_config(practice);
//!             println!("{}: {} lenders", practice.id, workflow.waterfall.slots().len());
//!         }
//!     }
//!     Err(report) => eprintln!("{report}"),
//! }
//! ```

mod duration;
mod env;
mod raw;
mod read;
mod report;
mod settings;
#[cfg(test)]
mod tests;
mod validate;
mod values;

pub use duration::MAX_DURATION;
pub use env::Environment;
pub use report::{ConfigReport, Problem};
pub use settings::{
    CareCreditSettings, DentrixSettings, DetectionSettings, HttpSettings, HubSpotSettings,
    LenderSettings, LinkLenderSettings, NexHealthSettings, OpenDentalSettings, OutboundSettings,
    PaymentSettings, PmsSettings, PracticeSettings, ReminderSettings, RunnerSettings, SmtpSettings,
    StaffAlertSettings, StaffLogin, StoreSettings, StripeSettings, SunbitSettings, TwilioSettings,
    WebhookSettings,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use financing_core::{LenderId, PolicySettings, PracticeId, Tz};

use chairside_engine::links::PatientLinks;
use chairside_engine::ports::PracticeProfile;
use chairside_engine::runner::RunnerConfig;
use chairside_http::{HttpConfig, LenderCopy, PracticeSite, StaffAccount, WebhookSecrets};
use chairside_workflow::WorkflowConfig;

/// The lenders this version can build clients for, by their id in the configuration.
pub const KNOWN_LENDERS: [&str; 5] = ["carecredit", "sunbit", "cherry", "alphaeon", "lendingclub"];

/// The whole configuration, checked. Build clients from its typed sections.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[store]`.
    pub store: StoreSettings,
    /// `[runner]`.
    pub runner: RunnerSettings,
    /// `[detection]` (optional).
    pub detection: DetectionSettings,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[stripe]`.
    pub stripe: StripeSettings,
    /// `[twilio]`, when texts are enabled.
    pub twilio: Option<TwilioSettings>,
    /// `[[practices]]`, at least one.
    pub practices: Vec<PracticeSettings>,
    /// `[outbound]`: outbound events' subscribers and retry bound (default: none, 12 attempts).
    pub outbound: OutboundSettings,
}

impl Config {
    /// Loads and checks the file at `path` with the process environment.
    ///
    /// # Errors
    /// A [`ConfigReport`] with every problem: the file cannot be read or is not TOML, or fields
    /// are missing or wrong, or secrets cannot be resolved.
    pub fn load(path: &Path) -> Result<Self, ConfigReport> {
        Self::load_with(path, &Environment::from_process())
    }

    /// Loads and checks the file at `path`, reading secrets and overrides from `env`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_with(path: &Path, env: &Environment) -> Result<Self, ConfigReport> {
        let (text, base_dir) = read_file(path)?;
        Self::from_toml(&text, &base_dir, env)
    }

    /// Checks configuration text. Relative paths (the store, secret files) are taken from
    /// `base_dir`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(text: &str, base_dir: &Path, env: &Environment) -> Result<Self, ConfigReport> {
        validate::config(parse_toml(text)?, base_dir, env)
    }

    /// Checks configuration text whose waterfalls (`lenders.order`) may also name `plugins`:
    /// lenders the embedding program provides itself and hands to
    /// [`app::build`](crate::app::build) in `Extras::lenders`, which have no section in the file.
    /// `build` refuses a named plug-in that `Extras` does not provide.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml_with_plugins(
        text: &str,
        base_dir: &Path,
        env: &Environment,
        plugins: &[LenderId],
    ) -> Result<Self, ConfigReport> {
        validate::config_with_plugins(parse_toml(text)?, base_dir, env, plugins)
    }

    /// Loads only what the operations commands (`status`, `retry`, `cancel`, `migrate`) need: the
    /// `[store]` section and the practices' time zones. Secrets of other sections need not be set.
    ///
    /// # Errors
    /// A [`ConfigReport`] with the problems of the `[store]` section.
    pub fn load_store(path: &Path, env: &Environment) -> Result<StoreView, ConfigReport> {
        let (text, base_dir) = read_file(path)?;
        validate::store_view(parse_toml(&text)?, &base_dir, env)
    }

    /// The practice with this id.
    pub fn practice(&self, id: &PracticeId) -> Option<&PracticeSettings> {
        self.practices.iter().find(|p| &p.id == id)
    }

    /// The workflow rules of `practice` (see [`PracticeSettings::workflow_config`]).
    pub fn workflow_config(&self, practice: &PracticeSettings) -> WorkflowConfig {
        practice.workflow_config()
    }

    /// How messages and notes name `practice` (see [`PracticeSettings::profile`]).
    pub fn practice_profile(&self, practice: &PracticeSettings) -> PracticeProfile {
        practice.profile()
    }

    /// The compliance settings of `practice`.
    pub fn policy_settings(&self, practice: &PracticeSettings) -> PolicySettings {
        practice.policy
    }

    /// The runner's settings (default batch size and retry schedule).
    pub fn runner_config(&self) -> RunnerConfig {
        RunnerConfig {
            owner: self.runner.owner.clone(),
            lease: self.runner.lease,
            concurrency: self.runner.concurrency,
            ..RunnerConfig::default()
        }
    }

    /// Signs the patient page links in messages.
    pub fn patient_links(&self) -> PatientLinks {
        PatientLinks::new(
            self.http.public_base_url.clone(),
            self.http.patient_link_key.clone(),
            self.http.patient_link_lifetime,
        )
    }

    /// The HTTP surface's configuration: the practices, lender names, staff logins and every
    /// webhook secret (Stripe's account-wide secrets, Twilio's auth token, and each practice's
    /// own Sunbit and NexHealth secrets, kept apart by practice).
    pub fn http_config(&self) -> HttpConfig {
        let mut http = HttpConfig::new(
            self.http.public_base_url.clone(),
            self.http.patient_link_key.clone(),
        );
        http.patient_token_lifetime = self.http.patient_link_lifetime;
        http.metrics_token.clone_from(&self.http.metrics_token);
        http.header_read_timeout = self.http.header_read_timeout;
        http.request_timeout = self.http.request_timeout;
        http.max_connections = self.http.max_connections;
        http.body_limit = self.http.webhook_body_limit;
        http.form_body_limit = self.http.form_body_limit;
        http.trusted_proxies.clone_from(&self.http.trusted_proxies);
        http.login = self.http.login;
        http.stripe_livemode = stripe_schedule::key_livemode(&self.stripe.api_key);
        let mut secrets = WebhookSecrets {
            stripe: self.stripe.webhook_secrets.clone(),
            ..WebhookSecrets::default()
        };
        if let Some(t) = &self.twilio {
            secrets.twilio.push(t.auth_token.clone());
        }
        for p in &self.practices {
            // Kept per practice: a practice's secret verifies deliveries to its own URL only.
            if let Some(s) = p
                .lenders
                .sunbit
                .as_ref()
                .and_then(|s| s.webhook_secret.clone())
            {
                secrets.sunbit.entry(p.id.clone()).or_default().push(s);
            }
            if let PmsSettings::NexHealth(n) = &p.pms
                && let Some(s) = n.webhook_secret.clone()
            {
                secrets.nexhealth.entry(p.id.clone()).or_default().push(s);
            }
            let mut site =
                PracticeSite::new(p.id.clone(), p.name.clone(), p.phone.clone(), p.time_zone);
            site.email = Some(p.email.clone());
            site.state = Some(p.state);
            site.lender_notice.clone_from(&p.lender_notice);
            site.default_language = p.default_language;
            if let Some(messaging::SmsFrom::Number(n)) = p.sms_sender(self.twilio.as_ref()) {
                site.sms_numbers.push(n.as_e164().to_owned());
            }
            http.practices.push(site);
        }
        http.webhook_secrets = secrets;
        for (id, name) in [("carecredit", "CareCredit"), ("sunbit", "Sunbit")] {
            http.lenders.insert(
                LenderId::new(id),
                LenderCopy {
                    name: name.into(),
                    // The shipped disclosure: loaded in production, not only in tests.
                    disclosure: chairside_http::notices::lender_disclosure(id),
                },
            );
        }
        // Link-only lenders: as each practice names them (one copy per lender id: the first
        // practice's wins when practices name the same lender differently).
        for l in self.practices.iter().flat_map(|p| &p.lenders.link_only) {
            http.lenders
                .entry(LenderId::new(l.lender.id()))
                .or_insert_with(|| LenderCopy {
                    name: l.display_name.clone(),
                    disclosure: l.disclosure.clone(),
                });
        }
        http.staff = self
            .http
            .staff
            .iter()
            .map(|s| StaffAccount {
                username: s.username.clone(),
                practice: s.practice.clone(),
                password_hash: s.password_hash.clone(),
            })
            .collect();
        http
    }
}

/// What the operations commands need from the configuration (see [`Config::load_store`]).
#[derive(Clone, Debug)]
pub struct StoreView {
    /// `[store]`.
    pub store: StoreSettings,
    /// The practices' time zones, for showing times; practices whose zone does not parse are
    /// left out.
    pub time_zones: HashMap<PracticeId, Tz>,
}

fn read_file(path: &Path) -> Result<(String, PathBuf), ConfigReport> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigReport::single(
            path.display().to_string(),
            format!("cannot read the configuration file: {}", io_reason(&e)),
        )
    })?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok((text, base_dir))
}

fn parse_toml(text: &str) -> Result<toml::Table, ConfigReport> {
    toml::from_str::<toml::Table>(text).map_err(|e| {
        // The message only, with the position: the error's own Display quotes the offending line,
        // which could hold a secret someone pasted by mistake.
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}")
        });
        ConfigReport::single(
            at.unwrap_or_default(),
            format!("not valid TOML: {}", e.message().trim()),
        )
    })
}

/// An I/O failure in words, without echoing anything read.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::InvalidData => "not UTF-8 text".into(),
        other => other.to_string(),
    }
}
