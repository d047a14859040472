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

use super::duration::{parse_duration, positive_duration};
use super::env::{Environment, SecretSource, apply_overrides, non_empty, read_secret};
use super::raw::{
    Flag, Int, List, Literal, RawCareCredit, RawConfig, RawDentrix, RawHttp, RawLenders,
    RawNexHealth, RawOpenDental, RawPayments, RawPolicy, RawPractice, RawReminders, RawRunner,
    RawSmtp, RawStaff, RawStore, RawStripe, RawSunbit, RawTwilio,
};
use super::read::{Unknown, field_names, join, read, unknown_key_message};
use super::report::{ConfigReport, Problem};
use super::values::{
    hex_sid, parse_deposit, parse_id, parse_money, parse_phone, parse_url, quoted,
};
use super::{
    CareCreditSettings, Config, DentrixSettings, HttpSettings, KNOWN_LENDERS, LenderSettings,
    NexHealthSettings, OpenDentalSettings, PaymentSettings, PmsSettings, PracticeSettings,
    ReminderSettings, RunnerSettings, SmtpSettings, StaffLogin, StoreSettings, StoreView,
    StripeSettings, SunbitSettings, TwilioSettings,
};

/// Checks a whole configuration.
pub(super) fn config(
    root: Table,
    base_dir: &Path,
    env: &Environment,
) -> Result<Config, ConfigReport> {
    let (mut v, raw) = Validator::start(root, base_dir, env);
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
        let http = self.http(raw.http.as_ref(), &ids);
        let stripe = self.stripe(raw.stripe.as_ref());
        let twilio = match &raw.twilio {
            None => Some(None),
            Some(t) => self.twilio(t).map(Some),
        };
        let practices = self.practices(raw.practices.as_deref(), raw.twilio.is_some());
        Some(Config {
            store: store?,
            runner: runner?,
            http: http?,
            stripe: stripe?,
            twilio: twilio?,
            practices: practices?,
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
            .or(Duration::from_secs(30 * 86_400));
        let staff = self.staff(s.staff.as_deref().unwrap_or_default(), practices);
        if short {
            return None;
        }
        Some(HttpSettings {
            listen: listen?,
            public_base_url: public?,
            patient_link_key: key?,
            patient_link_lifetime: lifetime?,
            staff: staff?,
        })
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
                |t| {
                    argon2::PasswordHash::new(t)
                        .map(|_| t.to_owned())
                        .map_err(|_| {
                            "expected an argon2 hash like $argon2id$v=19$... (make one with \
                             `chairside hash-password`)"
                                .to_owned()
                        })
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

    fn practices(
        &mut self,
        raw: Option<&[RawPractice]>,
        has_twilio: bool,
    ) -> Option<Vec<PracticeSettings>> {
        let Some(list) = raw else {
            self.problem(
                "practices",
                "missing; expected at least one [[practices]] section",
            );
            return None;
        };
        if list.is_empty() {
            self.problem(
                "practices",
                "no practices configured; add a [[practices]] section",
            );
            return None;
        }
        let mut seen_ids: HashMap<String, String> = HashMap::new();
        let mut seen_numbers: HashMap<String, String> = HashMap::new();
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let at = format!("practices[{i}]");
            let practice = self.practice(&at, p, has_twilio);
            if let Some(pr) = &practice {
                if let Some(first) = seen_ids.get(pr.id.as_str()) {
                    let message = format!("{}: already used by {first}", quoted(pr.id.as_str()));
                    self.problem(join(&at, "id"), message);
                } else {
                    seen_ids.insert(pr.id.as_str().to_owned(), at.clone());
                }
                if let Some(n) = &pr.sms_from {
                    if let Some(first) = seen_numbers.get(n.as_e164()) {
                        let message = format!(
                            "already used by {first}; each practice texts from its own number"
                        );
                        self.problem(join(&at, "sms_from"), message);
                    } else {
                        seen_numbers.insert(n.as_e164().to_owned(), at.clone());
                    }
                }
            }
            out.push(practice);
        }
        out.into_iter().collect()
    }

    fn practice(
        &mut self,
        at: &str,
        s: &RawPractice,
        has_twilio: bool,
    ) -> Option<PracticeSettings> {
        self.section::<RawPractice>(at);
        let p = |key: &str| join(at, key);
        let id = self.required(
            &p("id"),
            s.id.as_ref(),
            "a short id like lone-star-dental",
            parse_id,
        );
        let name = self.text(
            &p("name"),
            s.name.as_ref(),
            "the practice's name as patients know it",
        );
        let state = self.required(
            &p("state"),
            s.state.as_ref(),
            "a two-letter US state code like TX",
            |t| {
                t.parse::<UsState>().map_err(|_| {
                    format!("{}: expected a two-letter US state code like TX", quoted(t))
                })
            },
        );
        let tz = self.required(
            &p("time_zone"),
            s.time_zone.as_ref(),
            "an IANA zone like America/Chicago",
            |t| {
                t.parse::<Tz>().map_err(|_| {
                    format!("{}: expected an IANA zone like America/Chicago", quoted(t))
                })
            },
        );
        let location = self.text(
            &p("location_id"),
            s.location_id.as_ref(),
            "the location id lenders know this office by",
        );
        let phone = self.required(
            &p("phone"),
            s.phone.as_ref(),
            "the phone number patients call",
            |t| {
                if t.chars().filter(char::is_ascii_digit).count() >= 7 {
                    Ok(t.to_owned())
                } else {
                    Err(format!(
                        "{}: expected a phone number patients can call, like +1 512 555 0100",
                        quoted(t)
                    ))
                }
            },
        );
        let email = self.required(
            &p("email"),
            s.email.as_ref(),
            "the address patients may write to",
            |t| {
                messaging::EmailAddress::parse(t)
                    .map(|_| t.to_owned())
                    .map_err(|_| {
                        format!(
                            "{}: expected an email address like frontdesk@example.com",
                            quoted(t)
                        )
                    })
            },
        );
        let sms_from = self
            .parse(&p("sms_from"), s.sms_from.as_ref(), parse_phone)
            .optional();
        let pms = match &s.pms {
            None => {
                self.problem(
                    p("pms"),
                    "missing; expected a [practices.pms] section with kind = \"dentrix\", \"opendental\" or \"nexhealth\"",
                );
                None
            }
            Some(t) => self.pms(&p("pms"), t),
        };
        let lenders = match &s.lenders {
            None => {
                self.problem(
                    p("lenders"),
                    "missing; expected a [practices.lenders] section with order = [\"carecredit\", \"sunbit\"] (or [] for none)",
                );
                None
            }
            Some(l) => self.lenders(&p("lenders"), l),
        };
        let payments = match &s.payments {
            None => Some(PaymentSettings {
                deposit: DepositRule::None,
                installments: 6,
                interval: InstallmentInterval::MONTHLY,
            }),
            Some(t) => self.payments(&p("payments"), t),
        };
        let smtp = match &s.smtp {
            None => Some(None),
            Some(t) => self.smtp(&p("smtp"), t).map(Some),
        };
        let reminders = match &s.reminders {
            None => Some(default_reminders()),
            Some(t) => self.reminders(&p("reminders"), t),
        };
        let policy = match &s.policy {
            None => Some(PolicySettings::default()),
            Some(t) => self.policy(&p("policy"), t),
        };
        if !has_twilio && s.smtp.is_none() {
            self.problem(
                at,
                "no way to reach patients: configure [practices.smtp] (email) or [twilio] (texts)",
            );
            return None;
        }
        Some(PracticeSettings {
            id: PracticeId::new(id?),
            name: name?,
            state: state?,
            time_zone: tz?,
            location_id: LocationId::new(location?),
            phone: phone?,
            email: email?,
            sms_from: sms_from?,
            pms: pms?,
            lenders: lenders?,
            payments: payments?,
            smtp: smtp?,
            reminders: reminders?,
            policy: policy?,
        })
    }

    fn pms(&mut self, at: &str, table: &Table) -> Option<PmsSettings> {
        let kind_path = join(at, "kind");
        let kind = match table.get("kind") {
            Some(Value::String(k)) => Some(k.trim().to_owned()),
            Some(_) => {
                self.problem(&kind_path, "expected a string in quotes");
                return None;
            }
            None => None,
        };
        let kind = self.required(
            &kind_path,
            kind.as_ref(),
            "\"dentrix\", \"opendental\" or \"nexhealth\"",
            |t| match t {
                "dentrix" | "opendental" | "nexhealth" => Ok(t.to_owned()),
                _ => Err(format!(
                    "{}: expected \"dentrix\" (Dentrix Ascend), \"opendental\" or \"nexhealth\" \
                     (Dentrix G-series and Enterprise, Eaglesoft and others connect through NexHealth)",
                    quoted(t)
                )),
            },
        )?;
        let mut rest = table.clone();
        rest.remove("kind");
        let value = Value::Table(rest);
        match kind.as_str() {
            "dentrix" => {
                let s: RawDentrix = self.read(value, at)?;
                self.section::<RawDentrix>(at);
                self.dentrix(at, &s).map(PmsSettings::Dentrix)
            }
            "opendental" => {
                let s: RawOpenDental = self.read(value, at)?;
                self.section::<RawOpenDental>(at);
                self.opendental(at, &s).map(PmsSettings::OpenDental)
            }
            _ => {
                let s: RawNexHealth = self.read(value, at)?;
                self.section::<RawNexHealth>(at);
                self.nexhealth(at, &s).map(PmsSettings::NexHealth)
            }
        }
    }

    fn dentrix(&mut self, at: &str, s: &RawDentrix) -> Option<DentrixSettings> {
        let p = |key: &str| join(at, key);
        let base = self.required(
            &p("base_url"),
            s.base_url.as_ref(),
            "the Ascend API address, like https://prod.hs1api.com/ascend-gateway/api/v1/",
            |t| parse_url(t, false),
        );
        let token = self
            .parse(&p("token_url"), s.token_url.as_ref(), |t| {
                parse_url(t, false)
            })
            .optional();
        let client_id = self.text(
            &p("client_id"),
            s.client_id.as_ref(),
            "the OAuth2 client id",
        );
        let secret = self.required_secret(
            at,
            &Secret::new(
                "client_secret",
                &s.client_secret,
                &s.client_secret_env,
                &s.client_secret_file,
            ),
        );
        let org = self.text(
            &p("organization_id"),
            s.organization_id.as_ref(),
            "the Ascend organization id",
        );
        Some(DentrixSettings {
            base_url: base?,
            token_url: token?,
            client_id: client_id?,
            client_secret: secret?,
            organization_id: org?,
        })
    }

    fn opendental(&mut self, at: &str, s: &RawOpenDental) -> Option<OpenDentalSettings> {
        // The Local API and the API Service run on the office network, often without TLS.
        let base = self.url_or(
            &join(at, "base_url"),
            s.base_url.as_ref(),
            true,
            opendental_client::REMOTE_BASE_URL,
        );
        let developer = self.required_secret(
            at,
            &Secret::new(
                "developer_key",
                &s.developer_key,
                &s.developer_key_env,
                &s.developer_key_file,
            ),
        );
        let customer = self.required_secret(
            at,
            &Secret::new(
                "customer_key",
                &s.customer_key,
                &s.customer_key_env,
                &s.customer_key_file,
            ),
        );
        let acceptance = self
            .parse(&join(at, "acceptance"), s.acceptance.as_ref(), |t| {
                use opendental_client::AcceptanceRule as A;
                match t {
                    "signed_saved" => Ok(A::SignedSaved),
                    "any_saved" => Ok(A::AnySaved),
                    "signed_any" => Ok(A::SignedAny),
                    _ => Err(format!(
                        "{}: expected \"signed_saved\", \"any_saved\" or \"signed_any\"",
                        quoted(t)
                    )),
                }
            })
            .or(opendental_client::AcceptanceRule::default());
        Some(OpenDentalSettings {
            base_url: base?,
            developer_key: developer?,
            customer_key: customer?,
            acceptance: acceptance?,
        })
    }

    fn nexhealth(&mut self, at: &str, s: &RawNexHealth) -> Option<NexHealthSettings> {
        let p = |key: &str| join(at, key);
        let base = self.url_or(
            &p("base_url"),
            s.base_url.as_ref(),
            false,
            "https://nexhealth.info",
        );
        let key = self.required_secret(
            at,
            &Secret::new("api_key", &s.api_key, &s.api_key_env, &s.api_key_file),
        );
        let subdomain = self.text(
            &p("subdomain"),
            s.subdomain.as_ref(),
            "the institution's NexHealth subdomain",
        );
        let location = self.text(
            &p("location_id"),
            s.location_id.as_ref(),
            "the NexHealth location id",
        );
        let hook = self
            .secret(
                at,
                &Secret::new(
                    "webhook_secret",
                    &s.webhook_secret,
                    &s.webhook_secret_env,
                    &s.webhook_secret_file,
                ),
            )
            .optional();
        Some(NexHealthSettings {
            base_url: base?,
            api_key: key?,
            subdomain: subdomain?,
            location_id: location?,
            webhook_secret: hook?,
        })
    }

    fn limits(
        &mut self,
        at: &str,
        min: Option<&String>,
        max: Option<&String>,
        default: AmountLimits,
    ) -> Option<AmountLimits> {
        let lo = self.parse(&join(at, "min"), min, parse_money);
        let hi = self.parse(&join(at, "max"), max, parse_money);
        if let (Got::Is(lo), Got::Is(hi)) = (&lo, &hi)
            && lo.minor() > hi.minor()
        {
            self.problem(
                join(at, "min"),
                format!("{lo} is above max {hi}; min must not exceed max"),
            );
            return None;
        }
        let given = min.is_some() || max.is_some();
        let (min, max) = (lo.optional()?, hi.optional()?);
        Some(if given {
            AmountLimits { min, max }
        } else {
            default
        })
    }

    fn lenders(&mut self, at: &str, s: &RawLenders) -> Option<LenderSettings> {
        self.section::<RawLenders>(at);
        let p = |key: &str| join(at, key);
        let got = self.list(&p("order"), s.order.as_ref());
        let order = self.need(
            &p("order"),
            got,
            "the lenders in the order they are asked, like [\"carecredit\", \"sunbit\"]",
        );
        let on_partial = self
            .parse(&p("on_partial"), s.on_partial.as_ref(), |t| match t {
                "stop_for_staff" => Ok(PartialApprovalRule::StopForStaff),
                "continue_for_full_coverage" => Ok(PartialApprovalRule::ContinueForFullCoverage),
                _ => Err(format!(
                    "{}: expected \"stop_for_staff\" or \"continue_for_full_coverage\"",
                    quoted(t)
                )),
            })
            .or(PartialApprovalRule::StopForStaff);
        let fallback = self
            .flag(&p("in_house_fallback"), s.in_house_fallback.as_ref())
            .or(true);
        let carecredit = match &s.carecredit {
            None => Some(None),
            Some(t) => self.carecredit(&p("carecredit"), t).map(Some),
        };
        let sunbit = match &s.sunbit {
            None => Some(None),
            Some(t) => self.sunbit(&p("sunbit"), t).map(Some),
        };
        let configured = |name: &str| match name {
            "carecredit" => s.carecredit.is_some(),
            "sunbit" => s.sunbit.is_some(),
            _ => false,
        };
        let mut ids = Vec::new();
        let mut ok = true;
        let mut seen = HashSet::new();
        for (path, name) in order.iter().flatten() {
            let normal = name.to_ascii_lowercase();
            if matches!(normal.as_str(), "inhouse" | "in_house" | "in-house") {
                self.problem(
                    path,
                    format!(
                        "{}: the in-house plan is not a lender; remove it from the order and set in_house_fallback = true",
                        quoted(name)
                    ),
                );
                ok = false;
            } else if !configured(&normal) {
                let known = if KNOWN_LENDERS.contains(&normal.as_str()) {
                    String::new()
                } else {
                    format!(
                        " (lenders this version supports: {})",
                        KNOWN_LENDERS.join(", ")
                    )
                };
                self.problem(
                    path,
                    format!(
                        "unknown lender {}: configure [practices.lenders.{normal}] or remove it from the order{known}",
                        quoted(name)
                    ),
                );
                ok = false;
            } else if !seen.insert(normal.clone()) {
                self.problem(path, format!("{} appears twice in the order", quoted(name)));
                ok = false;
            } else {
                ids.push(LenderId::new(normal));
            }
        }
        if !ok {
            return None;
        }
        order?;
        Some(LenderSettings {
            order: ids,
            on_partial: on_partial?,
            in_house_fallback: fallback?,
            carecredit: carecredit?,
            sunbit: sunbit?,
        })
    }

    fn carecredit(&mut self, at: &str, s: &RawCareCredit) -> Option<CareCreditSettings> {
        self.section::<RawCareCredit>(at);
        let p = |key: &str| join(at, key);
        let base = self.required(
            &p("base_url"),
            s.base_url.as_ref(),
            "the CareCredit partner API address",
            |t| parse_url(t, false),
        );
        let token = self
            .parse(&p("token_url"), s.token_url.as_ref(), |t| {
                parse_url(t, false)
            })
            .optional();
        let client_id = self.text(
            &p("client_id"),
            s.client_id.as_ref(),
            "the OAuth2 client id",
        );
        let secret = self.required_secret(
            at,
            &Secret::new(
                "client_secret",
                &s.client_secret,
                &s.client_secret_env,
                &s.client_secret_file,
            ),
        );
        let partner = self.text(
            &p("partner_code"),
            s.partner_code.as_ref(),
            "the technology partner code",
        );
        let merchant = self.required(
            &p("merchant_number"),
            s.merchant_number.as_ref(),
            "the location's 16-digit merchant number",
            |t| {
                carecredit_client::MerchantNumber::new(t).map_err(|_| {
                    "expected exactly 16 digits (the location's CareCredit merchant number)"
                        .to_owned()
                })
            },
        );
        let limits = self.limits(
            at,
            s.min.as_ref(),
            s.max.as_ref(),
            carecredit_client::DEFAULT_LIMITS,
        );
        Some(CareCreditSettings {
            base_url: base?,
            token_url: token?,
            client_id: client_id?,
            client_secret: secret?,
            partner_code: partner?,
            merchant_number: merchant?,
            limits: limits?,
        })
    }

    fn sunbit(&mut self, at: &str, s: &RawSunbit) -> Option<SunbitSettings> {
        self.section::<RawSunbit>(at);
        let base = self.required(
            &join(at, "base_url"),
            s.base_url.as_ref(),
            "the Sunbit API address",
            |t| parse_url(t, false),
        );
        let key = self.required_secret(at, &Secret::new("key", &s.key, &s.key_env, &s.key_file));
        let secret = self.required_secret(
            at,
            &Secret::new("secret", &s.secret, &s.secret_env, &s.secret_file),
        );
        let location = self.text(
            &join(at, "location"),
            s.location.as_ref(),
            "the practice's Sunbit location id",
        );
        let hook = self
            .secret(
                at,
                &Secret::new(
                    "webhook_secret",
                    &s.webhook_secret,
                    &s.webhook_secret_env,
                    &s.webhook_secret_file,
                ),
            )
            .optional();
        let limits = self.limits(
            at,
            s.min.as_ref(),
            s.max.as_ref(),
            sunbit_client::DEFAULT_LIMITS,
        );
        Some(SunbitSettings {
            base_url: base?,
            key: key?,
            secret: secret?,
            location: location?,
            webhook_secret: hook?,
            limits: limits?,
        })
    }

    fn payments(&mut self, at: &str, s: &RawPayments) -> Option<PaymentSettings> {
        self.section::<RawPayments>(at);
        let p = |key: &str| join(at, key);
        let deposit = self
            .parse(&p("deposit"), s.deposit.as_ref(), parse_deposit)
            .or(DepositRule::None);
        let installments = self
            .int(&p("installments"), s.installments.as_ref(), 1, 3_650)
            .or(6);
        let unit = self
            .parse(&p("interval"), s.interval.as_ref(), |t| match t {
                "month" => Ok(IntervalUnit::Month),
                "week" => Ok(IntervalUnit::Week),
                "day" => Ok(IntervalUnit::Day),
                _ => Err(format!(
                    "{}: expected \"month\", \"week\" or \"day\"",
                    quoted(t)
                )),
            })
            .or(IntervalUnit::Month);
        let count = self
            .int(&p("interval_count"), s.interval_count.as_ref(), 1, 365)
            .or(1);
        let interval = InstallmentInterval {
            unit: unit?,
            count: u32::try_from(count?).unwrap_or(1),
        };
        let installments = u32::try_from(installments?).unwrap_or(1);
        // The in-house plan refuses more than ten years of installments; say so now, not at the
        // first patient.
        let terms = InHouseTerms {
            deposit: DepositRule::None,
            installments,
            interval,
        };
        if let Err(financing_core::InHouseError::InstallmentCount { max, .. }) =
            InHouseOffer::compute(Money::usd(100_000_000), &terms)
        {
            self.problem(
                p("installments"),
                format!("{installments}: at most {max} installments at this interval (ten years)"),
            );
            return None;
        }
        Some(PaymentSettings {
            deposit: deposit?,
            installments,
            interval,
        })
    }

    fn smtp(&mut self, at: &str, s: &RawSmtp) -> Option<SmtpSettings> {
        self.section::<RawSmtp>(at);
        let p = |key: &str| join(at, key);
        let host = self.text(&p("host"), s.host.as_ref(), "the mail server's host name");
        let security = self
            .parse(&p("security"), s.security.as_ref(), |t| match t {
                "starttls" => Ok(messaging::SmtpSecurity::StartTls),
                "tls" => Ok(messaging::SmtpSecurity::Tls),
                "none" => Ok(messaging::SmtpSecurity::None),
                _ => Err(format!(
                    "{}: expected \"starttls\", \"tls\" or \"none\"",
                    quoted(t)
                )),
            })
            .or(messaging::SmtpSecurity::StartTls);
        let port = self.int(&p("port"), s.port.as_ref(), 1, 65_535);
        let username = self
            .parse(&p("username"), s.username.as_ref(), |t| {
                Ok::<_, String>(t.to_owned())
            })
            .optional();
        let password = self
            .secret(
                at,
                &Secret::new("password", &s.password, &s.password_env, &s.password_file),
            )
            .optional();
        let from = self.required(
            &p("from"),
            s.from.as_ref(),
            "the address messages come from, like frontdesk@example-dental.com",
            |t| {
                messaging::EmailAddress::parse(t)
                    .map_err(|_| format!("{}: expected an email address", quoted(t)))
            },
        );
        let security = security?;
        if let (Some(h), messaging::SmtpSecurity::None) = (&host, security) {
            let loopback = h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                self.problem(
                    p("security"),
                    "\"none\" is allowed only for a mail server on 127.0.0.1 or localhost \
                     (patient email must be encrypted in transit); use \"starttls\" or \"tls\"",
                );
                return None;
            }
        }
        let (username, password) = (username?, password?);
        match (&username, &password) {
            (Some(_), None) => {
                self.problem(
                    p("password_env"),
                    "missing; a username needs password_env (or password_file)",
                );
                return None;
            }
            (None, Some(_)) => {
                self.problem(p("username"), "missing; a password needs a username");
                return None;
            }
            _ => {}
        }
        let default_port: u16 = match security {
            messaging::SmtpSecurity::Tls => 465,
            messaging::SmtpSecurity::None => 25,
            _ => 587,
        };
        Some(SmtpSettings {
            host: host?,
            port: u16::try_from(port.or(i64::from(default_port))?).unwrap_or(default_port),
            security,
            username,
            password,
            from: from?,
        })
    }

    fn reminders(&mut self, at: &str, s: &RawReminders) -> Option<ReminderSettings> {
        self.section::<RawReminders>(at);
        let defaults = default_reminders();
        let delays = match self.list(&join(at, "delays"), s.delays.as_ref()) {
            Got::Absent => Some(defaults.delays),
            Got::Bad => None,
            Got::Is(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (path, text) in items {
                    match positive_duration(&text) {
                        Ok(d) => out.push(d),
                        Err(m) => {
                            self.problem(path, m);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
        };
        let give_up = self
            .parse(
                &join(at, "give_up_after"),
                s.give_up_after.as_ref(),
                parse_duration,
            )
            .or(defaults.give_up_after);
        let poll = self
            .parse(
                &join(at, "poll_interval"),
                s.poll_interval.as_ref(),
                positive_duration,
            )
            .or(defaults.poll_interval);
        Some(ReminderSettings {
            delays: delays?,
            give_up_after: give_up?,
            poll_interval: poll?,
        })
    }

    fn policy(&mut self, at: &str, s: &RawPolicy) -> Option<PolicySettings> {
        self.section::<RawPolicy>(at);
        let path = join(at, "prefill_approved_by_counsel");
        let prefill = self
            .flag(&path, s.prefill_approved_by_counsel.as_ref())
            .or(false)?;
        Some(PolicySettings {
            prefill_approved_by_counsel: prefill,
        })
    }
}

fn default_reminders() -> ReminderSettings {
    ReminderSettings {
        delays: vec![Duration::from_secs(86_400), Duration::from_secs(3 * 86_400)],
        give_up_after: Duration::from_secs(2 * 86_400),
        poll_interval: Duration::from_secs(15 * 60),
    }
}
