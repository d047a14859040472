//! The one validation pass: the raw sections are checked in the order of the file, every problem
//! is recorded with its path so one bad value never hides another, and a section is built only
//! when all its fields are good. The configuration is returned only when nothing was recorded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use financing_core::{
    AmountLimits, DepositRule, InHouseOffer, InHouseTerms, InstallmentInterval, IntervalUnit,
    LenderId, LocationId, Money, PartialApprovalRule, PolicySettings, PracticeId, Tz, UsState,
};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use toml::{Table, Value};
use url::Url;

use chairside_engine::store::crypto::DataKey;
use chairside_workflow::TaskKind;

use super::duration::{parse_duration, positive_duration};
use super::env::{Environment, SecretSource, apply_overrides, non_empty, read_secret};
use super::raw::{
    Flag, Int, List, Literal, RawCareCredit, RawConfig, RawDentrix, RawDetection, RawHttp,
    RawLenders, RawLinkLender, RawLogin, RawNexHealth, RawNotice, RawOpenDental, RawPayments,
    RawPolicy, RawPractice, RawPreviousKey, RawReminders, RawRunner, RawSmtp, RawStaff,
    RawStaffAlerts, RawStore, RawStripe, RawSunbit, RawTwilio,
};
use super::read::{Unknown, field_names, join, read, unknown_key_message};
use super::report::{ConfigReport, Problem};
use super::values::{
    hex_sid, parse_deposit, parse_id, parse_money, parse_phone, parse_url, quoted,
};
use super::{
    CareCreditSettings, Config, DentrixSettings, DetectionSettings, HttpSettings, KNOWN_LENDERS,
    LenderSettings, LinkLenderSettings, NexHealthSettings, OpenDentalSettings, PaymentSettings,
    PmsSettings, PracticeSettings, ReminderSettings, RunnerSettings, SmtpSettings,
    StaffAlertSettings, StaffLogin, StoreSettings, StoreView, StripeSettings, SunbitSettings,
    TwilioSettings,
};

/// Checks a whole configuration.
pub(super) fn config(
    root: Table,
    base_dir: &Path,
    env: &Environment,
) -> Result<Config, ConfigReport> {
    config_with_plugins(root, base_dir, env, &[])
}

/// Checks a whole configuration whose waterfalls may also name `plugins`: lenders an embedding
/// program provides itself (through `app::Extras::lenders`), which have no section here.
pub(super) fn config_with_plugins(
    root: Table,
    base_dir: &Path,
    env: &Environment,
    plugins: &[LenderId],
) -> Result<Config, ConfigReport> {
    let (mut v, raw) = Validator::start(root, base_dir, env);
    v.plugins = plugins
        .iter()
        .map(|l| l.as_str().to_ascii_lowercase())
        .collect();
    let built = raw.and_then(|raw| v.config(&raw));
    v.finish(built)
}

/// Checks `[store]` and reads the practices' time zones leniently.
pub(super) fn store_view(
    mut root: Table,
    base_dir: &Path,
    env: &Environment,
) -> Result<StoreView, ConfigReport> {
    let practices = root.remove("practices");
    let store = root.remove("store");
    let mut only_store = Table::new();
    if let Some(s) = store {
        only_store.insert("store".into(), s);
    }
    let (mut v, raw) = Validator::start(only_store, base_dir, env);
    let store = raw.and_then(|raw| v.store(raw.store.as_ref()));
    let mut time_zones = HashMap::new();
    if let Some(Value::Array(items)) = practices {
        for item in items {
            let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::trim);
            if let (Some(id), Some(tz)) = (field("id"), field("time_zone"))
                && let Ok(tz) = tz.parse::<Tz>()
            {
                time_zones.insert(PracticeId::new(id), tz);
            }
        }
    }
    v.finish(store.map(|store| StoreView { store, time_zones }))
}
mod outbound;
mod practice;
mod vendors;

/// What a field held.
enum Got<T> {
    /// Not there.
    Absent,
    /// There but wrong; the problem is recorded.
    Bad,
    /// There and good.
    Is(T),
}

impl<T> Got<T> {
    /// The value, or `default` when absent; `None` when bad.
    fn or(self, default: T) -> Option<T> {
        match self {
            Self::Absent => Some(default),
            Self::Bad => None,
            Self::Is(v) => Some(v),
        }
    }

    /// `Some(None)` when absent, `None` when bad.
    fn optional(self) -> Option<Option<T>> {
        match self {
            Self::Absent => Some(None),
            Self::Bad => None,
            Self::Is(v) => Some(Some(v)),
        }
    }
}

/// One secret key as the section wrote it: `<key>` (refused unless an override set it),
/// `<key>_env` or `<key>_file`.
struct Secret<'r> {
    key: &'static str,
    literal: Option<&'r Literal>,
    env: Option<&'r String>,
    file: Option<&'r String>,
}

impl<'r> Secret<'r> {
    fn new(
        key: &'static str,
        literal: &'r Option<Literal>,
        env: &'r Option<String>,
        file: &'r Option<String>,
    ) -> Self {
        Self {
            key,
            literal: literal.as_ref(),
            env: env.as_ref(),
            file: file.as_ref(),
        }
    }
}

/// The problems found so far, and what is needed to find more.
struct Validator<'e> {
    problems: Vec<Problem>,
    env: &'e Environment,
    base_dir: PathBuf,
    /// Paths set from the environment, with the variable that set them.
    overrides: BTreeMap<String, String>,
    /// Keys serde did not read, reported when their section is checked.
    unknown: Vec<Unknown>,
    /// Plug-in lenders the embedding program provides: a waterfall may name them.
    plugins: Vec<String>,
}

impl<'e> Validator<'e> {
    /// Applies the overrides and reads the tree; `None` when a value has the wrong type.
    fn start(mut root: Table, base_dir: &Path, env: &'e Environment) -> (Self, Option<RawConfig>) {
        let overrides = apply_overrides(&mut root, env);
        let mut v = Self {
            problems: overrides.problems,
            env,
            base_dir: base_dir.to_path_buf(),
            overrides: overrides.set,
            unknown: Vec::new(),
            plugins: Vec::new(),
        };
        let raw = v.read::<RawConfig>(Value::Table(root), "");
        (v, raw)
    }

    /// Reads a tree found at `at`, keeping its unknown keys for later.
    fn read<T: DeserializeOwned>(&mut self, value: Value, at: &str) -> Option<T> {
        match read::<T>(value, at) {
            Ok((raw, unknown)) => {
                self.unknown.extend(unknown);
                Some(raw)
            }
            Err(p) => {
                self.problem(p.path, p.message);
                None
            }
        }
    }

    fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigReport> {
        // Unknown keys in sections that were not checked (a section refused whole).
        for u in std::mem::take(&mut self.unknown) {
            self.problem(join(&u.section, &u.key), "unknown key");
        }
        match value {
            Some(v) if self.problems.is_empty() => Ok(v),
            _ if self.problems.is_empty() => {
                Err(ConfigReport::single("", "the configuration is incomplete"))
            }
            _ => Err(ConfigReport {
                problems: self.problems,
            }),
        }
    }

    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let mut message = message.into();
        if let Some(var) = self.overrides.get(&path) {
            message.push_str(&format!(" (set by env var {var})"));
        }
        self.problems.push(Problem { path, message });
    }

    fn set_by_env(&self, path: &str) -> bool {
        self.overrides.contains_key(path)
    }

    /// Reports the unknown keys of the section at `at`, read as a `T`.
    fn section<T: DeserializeOwned>(&mut self, at: &str) {
        let (here, rest): (Vec<Unknown>, Vec<Unknown>) = std::mem::take(&mut self.unknown)
            .into_iter()
            .partition(|u| u.section == at);
        self.unknown = rest;
        let allowed = field_names::<T>();
        for u in here {
            let message = unknown_key_message(&u.key, allowed);
            self.problem(join(at, &u.key), message);
        }
    }

    // ---- Fields ------------------------------------------------------------------------------

    /// Parses a present string (trimmed); a failure's message is recorded at `path`.
    fn parse<T>(
        &mut self,
        path: &str,
        raw: Option<&String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Got<T> {
        let Some(text) = raw else { return Got::Absent };
        match parse(text.trim()) {
            Ok(v) => Got::Is(v),
            Err(message) => {
                self.problem(path, message);
                Got::Bad
            }
        }
    }

    /// Reports a missing required value.
    fn need<T>(&mut self, path: &str, got: Got<T>, expected: &str) -> Option<T> {
        match got {
            Got::Is(v) => Some(v),
            Got::Bad => None,
            Got::Absent => {
                self.problem(path, format!("missing; expected {expected}"));
                None
            }
        }
    }

    /// A required string, parsed.
    fn required<T>(
        &mut self,
        path: &str,
        raw: Option<&String>,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let got = self.parse(path, raw, parse);
        self.need(path, got, expected)
    }

    /// A required, non-empty string.
    fn text(&mut self, path: &str, raw: Option<&String>, expected: &str) -> Option<String> {
        self.required(path, raw, expected, |t| {
            if t.is_empty() {
                Err(format!("empty; expected {expected}"))
            } else {
                Ok(t.to_owned())
            }
        })
    }

    /// A whole number from `min` to `max`.
    fn int(&mut self, path: &str, raw: Option<&Int>, min: i64, max: i64) -> Got<i64> {
        let n = match raw {
            None => return Got::Absent,
            Some(Int::Is(n)) => *n,
            Some(Int::Text(t)) => match t.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    self.problem(path, format!("{}: expected a whole number", quoted(t)));
                    return Got::Bad;
                }
            },
        };
        if n < min || n > max {
            self.problem(path, format!("{n}: expected a number from {min} to {max}"));
            return Got::Bad;
        }
        Got::Is(n)
    }

    /// `true` or `false`; the strings `"true"` and `"false"` are accepted (environment overrides).
    fn flag(&mut self, path: &str, raw: Option<&Flag>) -> Got<bool> {
        match raw {
            None => Got::Absent,
            Some(Flag::Is(b)) => Got::Is(*b),
            Some(Flag::Text(t)) if t.trim().eq_ignore_ascii_case("true") => Got::Is(true),
            Some(Flag::Text(t)) if t.trim().eq_ignore_ascii_case("false") => Got::Is(false),
            Some(Flag::Text(_)) => {
                self.problem(path, "expected true or false, found a string");
                Got::Bad
            }
        }
    }

    /// A list of strings, each with its own path; a comma-separated string is accepted only
    /// from the environment.
    fn list(&mut self, path: &str, raw: Option<&List>) -> Got<Vec<(String, String)>> {
        let items: Vec<String> = match raw {
            None => return Got::Absent,
            Some(List::Is(items)) => items.iter().map(|i| i.trim().to_owned()).collect(),
            Some(List::Text(t)) if self.set_by_env(path) => t
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(List::Text(_)) => {
                self.problem(path, "expected a list like [\"a\", \"b\"], found a string");
                return Got::Bad;
            }
        };
        Got::Is(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| (format!("{path}[{i}]"), item))
                .collect(),
        )
    }

    // ---- Secrets -----------------------------------------------------------------------------

    /// A secret from `<key>_env` or `<key>_file`; a literal `<key>` only from an override.
    fn secret(&mut self, at: &str, s: &Secret<'_>) -> Got<SecretString> {
        let key = s.key;
        let (literal_path, env_path, file_path) = (
            join(at, key),
            join(at, &format!("{key}_env")),
            join(at, &format!("{key}_file")),
        );
        if let Some(literal) = s.literal {
            if self.set_by_env(&literal_path)
                && let Some(v) = &literal.0
            {
                return self.checked(&literal_path, non_empty(v.expose_secret(), "the value"));
            }
            // Never echo the value: it is a secret written where it must not be.
            self.problem(
                &literal_path,
                format!(
                    "secrets are not read from the configuration file; set {key}_env = \"VARIABLE\" \
                     (an environment variable holding it) or {key}_file = \"/path/to/file\""
                ),
            );
            return Got::Bad;
        }
        match (s.env, s.file) {
            (None, None) => Got::Absent,
            (Some(_), Some(_)) => {
                self.problem(
                    env_path,
                    format!("set either {key}_env or {key}_file, not both"),
                );
                Got::Bad
            }
            (Some(var), None) => {
                let read = read_secret(self.env, &self.base_dir, SecretSource::Env(var.trim()));
                self.checked(&env_path, read)
            }
            (None, Some(file)) => {
                let read = read_secret(self.env, &self.base_dir, SecretSource::File(file.trim()));
                self.checked(&file_path, read)
            }
        }
    }

    fn checked(&mut self, path: &str, read: Result<SecretString, String>) -> Got<SecretString> {
        match read {
            Ok(s) => Got::Is(s),
            Err(message) => {
                self.problem(path, message);
                Got::Bad
            }
        }
    }

    fn required_secret(&mut self, at: &str, s: &Secret<'_>) -> Option<SecretString> {
        let got = self.secret(at, s);
        let key = s.key;
        self.need(
            &join(at, &format!("{key}_env")),
            got,
            &format!("the name of the environment variable holding it (or {key}_file)"),
        )
    }

    /// The path a problem with a resolved secret is reported at: the key that gave it.
    fn secret_path(at: &str, s: &Secret<'_>) -> String {
        let key = s.key;
        if s.file.is_some() {
            join(at, &format!("{key}_file"))
        } else if s.literal.is_some() {
            join(at, key)
        } else {
            join(at, &format!("{key}_env"))
        }
    }

    // ---- Sections ----------------------------------------------------------------------------

    fn config(&mut self, raw: &RawConfig) -> Option<Config> {
        self.section::<RawConfig>("");
        // Staff logins name practices, which come later in the file: their ids are read ahead,
        // so problems are still reported in the order of the file's sections.
        let ids: Vec<PracticeId> = raw
            .practices
            .iter()
            .flatten()
            .filter_map(|p| p.id.as_deref())
            .map(|id| PracticeId::new(id.trim()))
            .collect();
        let store = self.store(raw.store.as_ref());
        let runner = self.runner(raw.runner.as_ref());
        let detection = self.detection(raw.detection.as_ref());
        let http = self.http(raw.http.as_ref(), &ids);
        let stripe = self.stripe(raw.stripe.as_ref());
        let twilio = match &raw.twilio {
            None => Some(None),
            Some(t) => self.twilio(t).map(Some),
        };
        let practices = self.practices(raw.practices.as_deref(), raw.twilio.is_some());
        let outbound = match &raw.outbound {
            None => Some(super::OutboundSettings::default()),
            Some(o) => self.outbound(o, &ids),
        };
        Some(Config {
            store: store?,
            runner: runner?,
            detection: detection?,
            http: http?,
            stripe: stripe?,
            twilio: twilio?,
            practices: practices?,
            outbound: outbound?,
        })
    }

    fn store(&mut self, raw: Option<&RawStore>) -> Option<StoreSettings> {
        let Some(s) = raw else {
            self.problem(
                "store",
                "missing; expected a [store] section with data_key_env (or data_key_file)",
            );
            return None;
        };
        let at = "store";
        self.section::<RawStore>(at);
        let path = self
            .parse(&join(at, "path"), s.path.as_ref(), |t| {
                if t.is_empty() {
                    Err(
                        "empty; expected a file path like /var/lib/chairside/chairside.sqlite"
                            .into(),
                    )
                } else {
                    Ok(PathBuf::from(t))
                }
            })
            .or(PathBuf::from("chairside.sqlite"));
        let secret = Secret::new("data_key", &s.data_key, &s.data_key_env, &s.data_key_file);
        let key = self.required_secret(at, &secret);
        if let Some(k) = &key
            && DataKey::parse(k.expose_secret()).is_err()
        {
            self.problem(
                Self::secret_path(at, &secret),
                "the data key must be 32 bytes written as 64 hex characters or base64 \
                 (make one with `openssl rand -hex 32`)",
            );
            return None;
        }
        let data_key_id = self
            .int(&join(at, "data_key_id"), s.data_key_id.as_ref(), 0, 255)
            .or(0)
            .map(|n| n as u8);
        let previous = self.previous_keys(s.previous_data_keys.as_deref().unwrap_or_default());
        if let (Some(id), Some(previous)) = (data_key_id, &previous)
            && previous.iter().any(|(p, _)| *p == id)
        {
            self.problem(
                join(at, "data_key_id"),
                "also the id of a previous data key; give the current key a new id",
            );
            return None;
        }
        let path = path.map(|p| {
            if p.is_relative() {
                self.base_dir.join(p)
            } else {
                p
            }
        });
        Some(StoreSettings {
            path: path?,
            data_key: key?,
            data_key_id: data_key_id?,
            previous_data_keys: previous?,
        })
    }

    /// `[[store.previous_data_keys]]`: each with a distinct id and a key that parses.
    fn previous_keys(&mut self, list: &[RawPreviousKey]) -> Option<Vec<(u8, SecretString)>> {
        let mut out: Vec<(u8, SecretString)> = Vec::new();
        let mut ok = true;
        for (i, entry) in list.iter().enumerate() {
            let at = format!("store.previous_data_keys[{i}]");
            self.section::<RawPreviousKey>(&at);
            let id = self.int(&join(&at, "id"), entry.id.as_ref(), 0, 255);
            let id = self.need(&join(&at, "id"), id, "the key id (0 to 255)");
            let secret = Secret::new("key", &entry.key, &entry.key_env, &entry.key_file);
            let key = self.required_secret(&at, &secret);
            if let Some(k) = &key
                && DataKey::parse(k.expose_secret()).is_err()
            {
                self.problem(
                    Self::secret_path(&at, &secret),
                    "the data key must be 32 bytes written as 64 hex characters or base64",
                );
                ok = false;
                continue;
            }
            match (id, key) {
                (Some(id), Some(key)) => {
                    let id = id as u8;
                    if out.iter().any(|(p, _)| *p == id) {
                        self.problem(join(&at, "id"), "the same id as an earlier previous key");
                        ok = false;
                    }
                    out.push((id, key));
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn detection(&mut self, raw: Option<&RawDetection>) -> Option<DetectionSettings> {
        let defaults = DetectionSettings::default();
        let Some(s) = raw else { return Some(defaults) };
        self.section::<RawDetection>("detection");
        let max = self.parse(
            "detection.max_plan_amount",
            s.max_plan_amount.as_ref(),
            |t| {
                let m = parse_money(t)?;
                if m.minor() <= 0 {
                    Err(format!("{}: expected an amount above zero", quoted(t)))
                } else if m.minor() > 100_000_000 {
                    Err(format!(
                        "{}: above 1000000.00; no dental plan is that large",
                        quoted(t)
                    ))
                } else {
                    Ok(m)
                }
            },
        );
        Some(DetectionSettings {
            max_plan_amount: max.or(defaults.max_plan_amount)?,
        })
    }

    fn runner(&mut self, raw: Option<&RawRunner>) -> Option<RunnerSettings> {
        let defaults = RunnerSettings {
            owner: format!("chairside-{}", std::process::id()),
            lease: Duration::from_secs(60),
            concurrency: 16,
            poll_interval: Duration::from_secs(30),
        };
        let Some(s) = raw else { return Some(defaults) };
        self.section::<RawRunner>("runner");
        let owner = self.parse("runner.owner", s.owner.as_ref(), |t| {
            if t.is_empty() {
                Err("empty; expected a name for this instance, like chairside-1".into())
            } else {
                Ok(t.to_owned())
            }
        });
        let lease = self.int("runner.lease_secs", s.lease_secs.as_ref(), 5, 3_600);
        let concurrency = self.int("runner.concurrency", s.concurrency.as_ref(), 1, 1_024);
        let poll = self.int(
            "runner.poll_interval_secs",
            s.poll_interval_secs.as_ref(),
            1,
            86_400,
        );
        let secs = |n: i64| Duration::from_secs(u64::try_from(n).unwrap_or(1));
        Some(RunnerSettings {
            owner: owner.or(defaults.owner)?,
            lease: secs(lease.or(60)?),
            concurrency: usize::try_from(concurrency.or(16)?).unwrap_or(16),
            poll_interval: secs(poll.or(30)?),
        })
    }

    fn http(&mut self, raw: Option<&RawHttp>, practices: &[PracticeId]) -> Option<HttpSettings> {
        let Some(s) = raw else {
            self.problem(
                "http",
                "missing; expected an [http] section with public_base_url and patient_link_key_env",
            );
            return None;
        };
        let at = "http";
        self.section::<RawHttp>(at);
        let listen = self
            .parse("http.listen", s.listen.as_ref(), |t| {
                t.parse::<SocketAddr>().map_err(|_| {
                    format!(
                        "{}: expected an address and port like 127.0.0.1:8080 or 0.0.0.0:8080",
                        quoted(t)
                    )
                })
            })
            .or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let public = self.required(
            "http.public_base_url",
            s.public_base_url.as_ref(),
            "the https address patients and webhooks reach, like https://pay.example-dental.com/",
            |t| parse_url(t, false),
        );
        let secret = Secret::new(
            "patient_link_key",
            &s.patient_link_key,
            &s.patient_link_key_env,
            &s.patient_link_key_file,
        );
        let key = self.required_secret(at, &secret);
        let short = key.as_ref().is_some_and(|k| k.expose_secret().len() < 32);
        if short {
            self.problem(
                "http.patient_link_key_env",
                "the patient link key must be at least 32 bytes (make one with `openssl rand -hex 32`)",
            );
        }
        let lifetime = self
            .parse(
                "http.patient_link_lifetime",
                s.patient_link_lifetime.as_ref(),
                positive_duration,
            )
            // A week: every message carries a fresh link, so a short life costs the patient
            // nothing, and a leaked link is useful for less time.
            .or(Duration::from_secs(7 * 86_400));
        let token = Secret::new(
            "metrics_token",
            &s.metrics_token,
            &s.metrics_token_env,
            &s.metrics_token_file,
        );
        let metrics_token = self.secret(at, &token).optional();
        let header_read_timeout = self
            .parse(
                "http.header_read_timeout",
                s.header_read_timeout.as_ref(),
                positive_duration,
            )
            .or(Duration::from_secs(10));
        let request_timeout = self
            .parse(
                "http.request_timeout",
                s.request_timeout.as_ref(),
                positive_duration,
            )
            .or(Duration::from_secs(30));
        let max_connections = self
            .int(
                "http.max_connections",
                s.max_connections.as_ref(),
                1,
                1_000_000,
            )
            .or(1024);
        let webhook_body_limit = self
            .int(
                "http.webhook_body_limit",
                s.webhook_body_limit.as_ref(),
                1_024,
                16 * 1024 * 1024,
            )
            .or(256 * 1024);
        let form_body_limit = self
            .int(
                "http.form_body_limit",
                s.form_body_limit.as_ref(),
                1_024,
                16 * 1024 * 1024,
            )
            .or(16 * 1024);
        let trusted_proxies = self.trusted_proxies(s.trusted_proxies.as_ref());
        let login = self.login(s.login.as_ref());
        let staff = self.staff(s.staff.as_deref().unwrap_or_default(), practices);
        if short {
            return None;
        }
        let size = |n: i64| usize::try_from(n).unwrap_or(1);
        Some(HttpSettings {
            listen: listen?,
            public_base_url: public?,
            patient_link_key: key?,
            patient_link_lifetime: lifetime?,
            metrics_token: metrics_token?,
            header_read_timeout: header_read_timeout?,
            request_timeout: request_timeout?,
            max_connections: size(max_connections?),
            webhook_body_limit: size(webhook_body_limit?),
            form_body_limit: size(form_body_limit?),
            trusted_proxies: trusted_proxies?,
            login: login?,
            staff: staff?,
        })
    }

    /// `[http.login]`: each limit checked at its path; absent ones keep their defaults. Whether
    /// they hold together (a first delay no longer than the longest, ...) is checked where the
    /// HTTP surface is built (`HttpConfig::validate`).
    fn login(&mut self, raw: Option<&RawLogin>) -> Option<chairside_http::LoginLimits> {
        let d = chairside_http::LoginLimits::default();
        let Some(l) = raw else { return Some(d) };
        let at = "http.login";
        self.section::<RawLogin>(at);
        let count = |v: &mut Self, key: &str, raw: Option<&Int>, min: i64, def: u32| {
            v.int(&join(at, key), raw, min, 1_000_000)
                .or(i64::from(def))
                .map(|n| u32::try_from(n).unwrap_or(def))
        };
        let account_free_failures = count(
            self,
            "account_free_failures",
            l.account_free_failures.as_ref(),
            0,
            d.account_free_failures,
        );
        let address_free_failures = count(
            self,
            "address_free_failures",
            l.address_free_failures.as_ref(),
            0,
            d.address_free_failures,
        );
        let lock_after = count(self, "lock_after", l.lock_after.as_ref(), 1, d.lock_after);
        let concurrent_hashes = self
            .int(
                &join(at, "concurrent_hashes"),
                l.concurrent_hashes.as_ref(),
                1,
                64,
            )
            .or(i64::try_from(d.concurrent_hashes).unwrap_or(2))
            .map(|n| usize::try_from(n).unwrap_or(d.concurrent_hashes));
        let mut duration = |key: &str, raw: Option<&String>, def: Duration| {
            self.parse(&join(at, key), raw, positive_duration).or(def)
        };
        let first_delay = duration("first_delay", l.first_delay.as_ref(), d.first_delay);
        let max_delay = duration("max_delay", l.max_delay.as_ref(), d.max_delay);
        let lock_for = duration("lock_for", l.lock_for.as_ref(), d.lock_for);
        let forget_after = duration("forget_after", l.forget_after.as_ref(), d.forget_after);
        let hash_wait = duration("hash_wait", l.hash_wait.as_ref(), d.hash_wait);
        Some(chairside_http::LoginLimits {
            account_free_failures: account_free_failures?,
            address_free_failures: address_free_failures?,
            first_delay: first_delay?,
            max_delay: max_delay?,
            lock_after: lock_after?,
            lock_for: lock_for?,
            forget_after: forget_after?,
            concurrent_hashes: concurrent_hashes?,
            hash_wait: hash_wait?,
        })
    }

    /// `http.trusted_proxies`: IP addresses, each checked on its own.
    fn trusted_proxies(&mut self, raw: Option<&List>) -> Option<Vec<std::net::IpAddr>> {
        let items = match self.list("http.trusted_proxies", raw) {
            Got::Absent => return Some(Vec::new()),
            Got::Bad => return None,
            Got::Is(items) => items,
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (path, item) in items {
            match item.parse() {
                Ok(ip) => out.push(ip),
                Err(_) => {
                    self.problem(
                        &path,
                        format!(
                            "{}: not an IP address (a proxy's address, like \"127.0.0.1\" or \"::1\")",
                            quoted(&item)
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn staff(&mut self, list: &[RawStaff], practices: &[PracticeId]) -> Option<Vec<StaffLogin>> {
        let mut out = Vec::new();
        let mut ok = true;
        let mut names: HashMap<String, String> = HashMap::new();
        for (i, entry) in list.iter().enumerate() {
            let at = format!("http.staff[{i}]");
            self.section::<RawStaff>(&at);
            let username = self.text(
                &join(&at, "username"),
                entry.username.as_ref(),
                "the login name",
            );
            let practice = self.required(
                &join(&at, "practice"),
                entry.practice.as_ref(),
                "the id of a configured practice",
                |t| {
                    let id = PracticeId::new(t);
                    if practices.is_empty() || practices.contains(&id) {
                        Ok(id)
                    } else {
                        let known: Vec<&str> = practices.iter().map(PracticeId::as_str).collect();
                        Err(format!(
                            "{}: no practice has this id (configured: {})",
                            quoted(t),
                            known.join(", ")
                        ))
                    }
                },
            );
            let hash = self.required(
                &join(&at, "password_hash"),
                entry.password_hash.as_ref(),
                "an argon2 hash from `chairside hash-password`",
                |t| match chairside_http::check_password_hash(t) {
                    Ok(()) => Ok(t.to_owned()),
                    Err(chairside_http::HashProblem::BelowFloor) => Err(format!(
                        "the hash of staff account {}: argon2 settings below the OWASP minimum \
                         (argon2id, m >= 19456 KiB with t >= 2, or m >= 47104 with t = 1); make a \
                         new one with `chairside hash-password`",
                        quoted(entry.username.as_deref().unwrap_or_default())
                    )),
                    Err(_) => Err("expected an argon2 hash like $argon2id$v=19$... (make one \
                                   with `chairside hash-password`)"
                        .to_owned()),
                },
            );
            if let Some(u) = &username {
                if let Some(first) = names.get(u) {
                    let message = format!("{}: already used by {first}", quoted(u));
                    self.problem(join(&at, "username"), message);
                    ok = false;
                } else {
                    names.insert(u.clone(), at.clone());
                }
            }
            match (username, practice, hash) {
                (Some(username), Some(practice), Some(password_hash)) => out.push(StaffLogin {
                    username,
                    practice,
                    password_hash,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn stripe(&mut self, raw: Option<&RawStripe>) -> Option<StripeSettings> {
        let Some(s) = raw else {
            self.problem(
                "stripe",
                "missing; expected a [stripe] section with api_key_env and webhook_secrets_env",
            );
            return None;
        };
        let at = "stripe";
        self.section::<RawStripe>(at);
        let base = self.url_or(
            "stripe.base_url",
            s.base_url.as_ref(),
            false,
            stripe_schedule::DEFAULT_BASE_URL,
        );
        let key = self.required_secret(
            at,
            &Secret::new("api_key", &s.api_key, &s.api_key_env, &s.api_key_file),
        );
        let mut bad = false;
        if let Some(k) = &key
            && !(k.expose_secret().starts_with("sk_") || k.expose_secret().starts_with("rk_"))
        {
            self.problem(
                "stripe.api_key_env",
                "the key does not look like a Stripe secret key (sk_... or rk_...)",
            );
            bad = true;
        }
        let secret = Secret::new(
            "webhook_secrets",
            &s.webhook_secrets,
            &s.webhook_secrets_env,
            &s.webhook_secrets_file,
        );
        // Several secrets while one is rotated: comma- or newline-separated.
        let got = match self.secret(at, &secret) {
            Got::Is(all) => Got::Is(
                all.expose_secret()
                    .split([',', '\n'])
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| SecretString::from(p.to_owned()))
                    .collect::<Vec<_>>(),
            ),
            Got::Bad => Got::Bad,
            Got::Absent => Got::Absent,
        };
        let hooks = self.need(
            "stripe.webhook_secrets_env",
            got,
            "the name of an environment variable holding the webhook secrets (whsec_..., \
             comma-separated while one is rotated)",
        );
        if let Some(h) = &hooks {
            if h.is_empty() {
                self.problem("stripe.webhook_secrets_env", "no webhook secret given");
                bad = true;
            } else if h.iter().any(|w| !w.expose_secret().starts_with("whsec_")) {
                self.problem(
                    "stripe.webhook_secrets_env",
                    "every webhook secret starts with whsec_; one does not",
                );
                bad = true;
            }
        }
        if bad {
            return None;
        }
        Some(StripeSettings {
            base_url: base?,
            api_key: key?,
            webhook_secrets: hooks?,
        })
    }

    /// An optional URL with a default.
    fn url_or(
        &mut self,
        path: &str,
        raw: Option<&String>,
        allow_http: bool,
        default: &str,
    ) -> Option<Url> {
        match self.parse(path, raw, |t| parse_url(t, allow_http)) {
            Got::Absent => Url::parse(default).ok(),
            Got::Bad => None,
            Got::Is(u) => Some(u),
        }
    }

    fn twilio(&mut self, s: &RawTwilio) -> Option<TwilioSettings> {
        let at = "twilio";
        self.section::<RawTwilio>(at);
        let base = self.url_or(
            "twilio.base_url",
            s.base_url.as_ref(),
            false,
            messaging::DEFAULT_BASE_URL,
        );
        let sid = self.required(
            "twilio.account_sid",
            s.account_sid.as_ref(),
            "the account SID (AC...)",
            |t| hex_sid(t, "AC"),
        );
        let token = self.required_secret(
            at,
            &Secret::new(
                "auth_token",
                &s.auth_token,
                &s.auth_token_env,
                &s.auth_token_file,
            ),
        );
        let service = self.parse(
            "twilio.messaging_service_sid",
            s.messaging_service_sid.as_ref(),
            |t| hex_sid(t, "MG"),
        );
        let from = self.parse("twilio.from", s.from.as_ref(), parse_phone);
        let sender = match (service, from) {
            (Got::Is(_), Got::Is(_)) => {
                self.problem(
                    "twilio.from",
                    "set either messaging_service_sid or from, not both",
                );
                None
            }
            (Got::Is(sid), Got::Absent) => Some(messaging::SmsFrom::MessagingService(
                messaging::MessagingServiceSid::new(sid),
            )),
            (Got::Absent, Got::Is(n)) => Some(messaging::SmsFrom::Number(n)),
            (Got::Absent, Got::Absent) => {
                self.problem(
                    "twilio.from",
                    "missing; expected from = \"+15125550100\" (a Twilio number) or \
                     messaging_service_sid = \"MG...\"",
                );
                None
            }
            _ => None,
        };
        Some(TwilioSettings {
            base_url: base?,
            account_sid: messaging::AccountSid::new(sid?),
            auth_token: token?,
            sender: sender?,
        })
    }
}
