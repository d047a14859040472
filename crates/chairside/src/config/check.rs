//! Validation: the raw TOML table is walked field by field and every problem is recorded with its
//! path, so one bad value never hides the others. A section is built only when all its fields
//! are good; the configuration is returned only when nothing was recorded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use financing_core::{
    AmountLimits, Currency, DepositRule, InHouseOffer, InHouseTerms, InstallmentInterval,
    IntervalUnit, LenderId, LocationId, Money, PartialApprovalRule, PolicySettings, PracticeId, Tz,
    UsState,
};
use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};
use url::Url;

use super::{
    CareCreditSettings, Config, ConfigReport, DentrixSettings, Environment, HttpSettings,
    KNOWN_LENDERS, LenderSettings, NexHealthSettings, OpenDentalSettings, PaymentSettings,
    PmsSettings, PracticeSettings, Problem, ReminderSettings, RunnerSettings, SmtpSettings,
    StaffLogin, StoreSettings, StoreView, StripeSettings, SunbitSettings, TwilioSettings,
};
use chairside_engine::store::crypto::DataKey;

const PREFIX: &str = "CHAIRSIDE_";

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

    fn is_present(&self) -> bool {
        !matches!(self, Self::Absent)
    }
}

/// One table and where it sits.
#[derive(Clone)]
struct Section<'a> {
    path: String,
    table: &'a Table,
}

impl<'a> Section<'a> {
    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.table.get(key)
    }
}

/// The problems found so far, and what is needed to find more.
struct Checker<'e> {
    problems: Vec<Problem>,
    env: &'e Environment,
    base_dir: PathBuf,
    /// Paths set from the environment, with the variable that set them.
    overrides: BTreeMap<String, String>,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "a whole number",
        Value::Float(_) => "a decimal number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a section",
    }
}

/// A value quoted for a message: short, and never a URL's credentials.
fn quoted(v: &str) -> String {
    let v = v.trim();
    if v.chars().count() > 60 {
        let cut: String = v.chars().take(57).collect();
        format!("'{cut}...'")
    } else {
        format!("'{v}'")
    }
}

impl<'e> Checker<'e> {
    fn new(env: &'e Environment, base_dir: &Path) -> Self {
        Self {
            problems: Vec::new(),
            env,
            base_dir: base_dir.to_path_buf(),
            overrides: BTreeMap::new(),
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

    fn finish<T>(self, value: Option<T>) -> Result<T, ConfigReport> {
        match value {
            Some(v) if self.problems.is_empty() => Ok(v),
            _ => Err(ConfigReport {
                problems: if self.problems.is_empty() {
                    // Unreachable in practice: every `None` records a problem first.
                    vec![Problem {
                        path: String::new(),
                        message: "the configuration is incomplete".into(),
                    }]
                } else {
                    self.problems
                },
            }),
        }
    }

    // ---- Shapes ------------------------------------------------------------------------------

    /// Reports keys that are not in `allowed`, with a suggestion for a near miss.
    fn keys(&mut self, s: &Section<'_>, allowed: &[&str]) {
        for key in s.table.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let near = allowed
                .iter()
                .filter(|a| edit_distance(a, key) <= 2)
                .min_by_key(|a| edit_distance(a, key));
            let message = match near {
                Some(n) => format!("unknown key; did you mean '{n}'?"),
                None => format!("unknown key; expected one of: {}", allowed.join(", ")),
            };
            self.problem(s.at(key), message);
        }
    }

    fn table<'a>(&mut self, s: &Section<'a>, key: &str) -> Got<Section<'a>> {
        match s.get(key) {
            None => Got::Absent,
            Some(Value::Table(t)) => Got::Is(Section {
                path: s.at(key),
                table: t,
            }),
            Some(other) => {
                let path = s.at(key);
                self.problem(
                    &path,
                    format!("expected a section [{path}], found {}", kind_of(other)),
                );
                Got::Bad
            }
        }
    }

    /// A list of sections (`[[practices]]`).
    fn tables<'a>(&mut self, s: &Section<'a>, key: &str) -> Got<Vec<Section<'a>>> {
        let path = s.at(key);
        match s.get(key) {
            None => Got::Absent,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                let mut bad = false;
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    match item {
                        Value::Table(t) => out.push(Section {
                            path: item_path,
                            table: t,
                        }),
                        other => {
                            bad = true;
                            self.problem(
                                item_path,
                                format!("expected a [[{path}]] section, found {}", kind_of(other)),
                            );
                        }
                    }
                }
                if bad { Got::Bad } else { Got::Is(out) }
            }
            Some(other) => {
                self.problem(
                    &path,
                    format!("expected [[{path}]] sections, found {}", kind_of(other)),
                );
                Got::Bad
            }
        }
    }

    fn string(&mut self, s: &Section<'_>, key: &str) -> Got<String> {
        match s.get(key) {
            None => Got::Absent,
            Some(Value::String(v)) => Got::Is(v.trim().to_owned()),
            Some(other) => {
                self.problem(
                    s.at(key),
                    format!("expected a string in quotes, found {}", kind_of(other)),
                );
                Got::Bad
            }
        }
    }

    /// A whole number; a string of digits is accepted, as environment overrides are strings.
    fn integer(&mut self, s: &Section<'_>, key: &str, min: i64, max: i64) -> Got<i64> {
        let path = s.at(key);
        let n = match s.get(key) {
            None => return Got::Absent,
            Some(Value::Integer(n)) => *n,
            Some(Value::String(t)) => match t.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    self.problem(path, format!("{}: expected a whole number", quoted(t)));
                    return Got::Bad;
                }
            },
            Some(other) => {
                self.problem(
                    path,
                    format!("expected a whole number, found {}", kind_of(other)),
                );
                return Got::Bad;
            }
        };
        if n < min || n > max {
            self.problem(path, format!("{n}: expected a number from {min} to {max}"));
            return Got::Bad;
        }
        Got::Is(n)
    }

    /// `true` or `false`; the strings `"true"` and `"false"` are accepted (environment overrides).
    fn boolean(&mut self, s: &Section<'_>, key: &str) -> Got<bool> {
        match s.get(key) {
            None => Got::Absent,
            Some(Value::Boolean(b)) => Got::Is(*b),
            Some(Value::String(t)) if t.trim().eq_ignore_ascii_case("true") => Got::Is(true),
            Some(Value::String(t)) if t.trim().eq_ignore_ascii_case("false") => Got::Is(false),
            Some(other) => {
                self.problem(
                    s.at(key),
                    format!("expected true or false, found {}", kind_of(other)),
                );
                Got::Bad
            }
        }
    }

    /// A list of strings, each with its own path; a comma-separated string set from the
    /// environment is accepted.
    fn string_list(&mut self, s: &Section<'_>, key: &str) -> Got<Vec<(String, String)>> {
        let path = s.at(key);
        match s.get(key) {
            None => Got::Absent,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                let mut bad = false;
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    match item {
                        Value::String(v) => out.push((item_path, v.trim().to_owned())),
                        other => {
                            bad = true;
                            self.problem(
                                item_path,
                                format!("expected a string in quotes, found {}", kind_of(other)),
                            );
                        }
                    }
                }
                if bad { Got::Bad } else { Got::Is(out) }
            }
            Some(Value::String(v)) if self.set_by_env(&path) => Got::Is(
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .enumerate()
                    .map(|(i, p)| (format!("{path}[{i}]"), p.to_owned()))
                    .collect(),
            ),
            Some(other) => {
                self.problem(
                    path,
                    format!(
                        "expected a list like [\"a\", \"b\"], found {}",
                        kind_of(other)
                    ),
                );
                Got::Bad
            }
        }
    }

    /// Reports a missing required value.
    fn need<T>(&mut self, got: Got<T>, path: &str, expected: &str) -> Option<T> {
        match got {
            Got::Is(v) => Some(v),
            Got::Bad => None,
            Got::Absent => {
                self.problem(path, format!("missing; expected {expected}"));
                None
            }
        }
    }

    /// Parses a present string; a failure's message is recorded at `path`.
    fn parse<T>(
        &mut self,
        got: Got<String>,
        path: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Got<T> {
        match got {
            Got::Absent => Got::Absent,
            Got::Bad => Got::Bad,
            Got::Is(text) => match parse(&text) {
                Ok(v) => Got::Is(v),
                Err(message) => {
                    self.problem(path, message);
                    Got::Bad
                }
            },
        }
    }

    /// A required string, parsed.
    fn required<T>(
        &mut self,
        s: &Section<'_>,
        key: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let path = s.at(key);
        let got = self.string(s, key);
        let got = self.parse(got, &path, parse);
        self.need(got, &path, expected)
    }

    /// A required, non-empty string.
    fn text(&mut self, s: &Section<'_>, key: &str, expected: &str) -> Option<String> {
        self.required(s, key, expected, |t| {
            if t.is_empty() {
                Err(format!("empty; expected {expected}"))
            } else {
                Ok(t.to_owned())
            }
        })
    }

    /// An optional string, parsed.
    fn optional<T>(
        &mut self,
        s: &Section<'_>,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Got<T> {
        let path = s.at(key);
        let got = self.string(s, key);
        self.parse(got, &path, parse)
    }

    // ---- Secrets -----------------------------------------------------------------------------

    /// The keys a secret may be given with.
    fn secret_keys(key: &str) -> [String; 3] {
        [key.to_owned(), format!("{key}_env"), format!("{key}_file")]
    }

    /// A secret from `<key>_env` (a variable's name) or `<key>_file` (a file's path). A literal
    /// `<key>` is accepted only when it came from the environment (an override).
    fn secret(&mut self, s: &Section<'_>, key: &str) -> Got<SecretString> {
        let literal_path = s.at(key);
        let env_key = format!("{key}_env");
        let file_key = format!("{key}_file");
        if s.get(key).is_some() {
            if self.set_by_env(&literal_path)
                && let Some(Value::String(v)) = s.get(key)
            {
                return self.non_empty_secret(&literal_path, v.trim(), "the value");
            }
            // Never echo the value: it is a secret written where it must not be.
            self.problem(
                &literal_path,
                format!(
                    "secrets are not read from the configuration file; set {env_key} = \"VARIABLE\" \
                     (an environment variable holding it) or {file_key} = \"/path/to/file\""
                ),
            );
            return Got::Bad;
        }
        let by_env = self.string(s, &env_key);
        let by_file = self.string(s, &file_key);
        match (by_env, by_file) {
            (Got::Bad, _) | (_, Got::Bad) => Got::Bad,
            (Got::Absent, Got::Absent) => Got::Absent,
            (Got::Is(_), Got::Is(_)) => {
                self.problem(
                    s.at(&env_key),
                    format!("set either {env_key} or {file_key}, not both"),
                );
                Got::Bad
            }
            (Got::Is(var), Got::Absent) => {
                let path = s.at(&env_key);
                match self.env.get(&var) {
                    None => {
                        self.problem(path, format!("env var {var} is not set"));
                        Got::Bad
                    }
                    Some(v) => self.non_empty_secret(&path, v.trim(), &format!("env var {var}")),
                }
            }
            (Got::Absent, Got::Is(file)) => {
                let path = s.at(&file_key);
                let full = self.base_dir.join(&file);
                match std::fs::read_to_string(&full) {
                    Ok(v) => self.non_empty_secret(&path, v.trim(), &format!("file {file}")),
                    Err(e) => {
                        self.problem(
                            path,
                            format!("cannot read {}: {}", full.display(), super::io_reason(&e)),
                        );
                        Got::Bad
                    }
                }
            }
        }
    }

    fn non_empty_secret(&mut self, path: &str, value: &str, what: &str) -> Got<SecretString> {
        if value.is_empty() {
            self.problem(path, format!("{what} is empty"));
            Got::Bad
        } else {
            Got::Is(SecretString::from(value.to_owned()))
        }
    }

    fn required_secret(&mut self, s: &Section<'_>, key: &str) -> Option<SecretString> {
        let got = self.secret(s, key);
        let path = s.at(&format!("{key}_env"));
        self.need(
            got,
            &path,
            &format!("the name of the environment variable holding it (or {key}_file)"),
        )
    }

    /// Several secrets (rotation): comma- or newline-separated, from `<key>_env` or `<key>_file`.
    fn secret_list(&mut self, s: &Section<'_>, key: &str) -> Got<Vec<SecretString>> {
        match self.secret(s, key) {
            Got::Absent => Got::Absent,
            Got::Bad => Got::Bad,
            Got::Is(all) => Got::Is(
                all.expose_secret()
                    .split([',', '\n'])
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| SecretString::from(p.to_owned()))
                    .collect(),
            ),
        }
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn allowed<'k>(plain: &[&'k str], secrets: &'k [[String; 3]]) -> Vec<&'k str> {
    let mut all: Vec<&str> = plain.to_vec();
    all.extend(secrets.iter().flatten().map(String::as_str));
    all
}

// ---- Value parsers --------------------------------------------------------------------------

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An http(s) URL without credentials; plain http only for loopback unless `allow_http`.
fn parse_url(text: &str, allow_http: bool) -> Result<Url, String> {
    // A URL with credentials is not echoed: the part before '@' may be a password.
    let shown = if text.contains('@') {
        "the URL".to_owned()
    } else {
        quoted(text)
    };
    let url = Url::parse(text)
        .map_err(|_| format!("{shown}: expected a URL like https://api.example.com/"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown}: must not contain a user name or password; use the _env keys"
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http || is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{shown}: expected https (plain http is allowed only for 127.0.0.1 or localhost)"
        )),
        _ => Err(format!("{shown}: expected an https URL")),
    }
}

/// `30s`, `15m`, `4h`, `3d`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{}: expected a duration like 30s, 15m, 4h or 3d",
            quoted(text)
        )
    };
    let unit = t.chars().last().ok_or_else(bad)?;
    let secs_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = t[..t.len() - 1].trim().parse().map_err(|_| bad())?;
    n.checked_mul(secs_per)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        Err(format!("{}: must be more than zero", quoted(text)))
    } else {
        Ok(d)
    }
}

fn parse_money(text: &str) -> Result<Money, String> {
    Money::parse(text, Currency::Usd).map_err(|_| {
        format!(
            "{}: expected an amount in dollars like \"200.00\"",
            quoted(text)
        )
    })
}

/// `"20%"`, `"12.5%"`, `"150.00"` or `"none"`.
pub(super) fn parse_deposit(text: &str) -> Result<DepositRule, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{}: expected a percentage like \"20%\", an amount like \"150.00\", or \"none\"",
            quoted(text)
        )
    };
    if t.eq_ignore_ascii_case("none") {
        return Ok(DepositRule::None);
    }
    if let Some(pct) = t.strip_suffix('%') {
        // A percentage with up to two decimals is a whole number of basis points, which is
        // exactly how Money counts cents.
        let bps = Money::parse(pct.trim(), Currency::Usd)
            .map_err(|_| bad())?
            .minor();
        return match bps {
            0 => Ok(DepositRule::None),
            1..=10_000 => Ok(DepositRule::BasisPoints(
                u32::try_from(bps).map_err(|_| bad())?,
            )),
            _ => Err(format!(
                "{}: a percentage deposit must be between 0% and 100%",
                quoted(text)
            )),
        };
    }
    let amount = Money::parse(t, Currency::Usd).map_err(|_| bad())?;
    Ok(if amount.is_zero() {
        DepositRule::None
    } else {
        DepositRule::Fixed(amount)
    })
}

fn parse_id(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{}: expected letters, digits, '-' and '_' only, like lone-star-dental",
            quoted(text)
        ))
    }
}

fn parse_phone(text: &str) -> Result<messaging::PhoneNumber, String> {
    messaging::PhoneNumber::parse(text).map_err(|_| {
        format!(
            "{}: expected an E.164 number like +15125550100",
            quoted(text)
        )
    })
}

fn hex_sid(text: &str, prefix: &str) -> Result<String, String> {
    let ok = text.len() == 34
        && text.starts_with(prefix)
        && text[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{}: expected {prefix} followed by 32 hex characters",
            quoted(text)
        ))
    }
}

// ---- Environment overrides ------------------------------------------------------------------

/// Applies `CHAIRSIDE_<SECTION>__<KEY>` variables to the table; records the paths they set.
fn apply_overrides(root: &mut Table, ck: &mut Checker<'_>) {
    let vars: Vec<(String, String)> = ck
        .env
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(PREFIX)?;
            rest.contains("__").then(|| (k.to_owned(), v.to_owned()))
        })
        .collect();
    for (var, value) in vars {
        let segments: Vec<String> = var[PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            ck.problem(
                &var,
                "expected CHAIRSIDE_<SECTION>__<KEY> with non-empty parts, like CHAIRSIDE_STORE__PATH",
            );
            continue;
        }
        let mut path = String::new();
        match insert(root, &segments, value, &mut path) {
            Ok(()) => {
                ck.overrides.insert(path, var);
            }
            Err(message) => ck.problem(&var, message),
        }
    }
}

fn insert(
    table: &mut Table,
    segments: &[String],
    value: String,
    path: &mut String,
) -> Result<(), String> {
    let (first, rest) = segments
        .split_first()
        .ok_or_else(|| "nothing to set".to_owned())?;
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(first);
    if rest.is_empty() {
        table.insert(first.clone(), Value::String(value));
        return Ok(());
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| Value::Table(Table::new()));
    descend(entry, rest, value, path)
}

fn descend(
    node: &mut Value,
    segments: &[String],
    value: String,
    path: &mut String,
) -> Result<(), String> {
    match node {
        Value::Table(t) => insert(t, segments, value, path),
        Value::Array(items) => {
            let (first, rest) = segments
                .split_first()
                .ok_or_else(|| "nothing to set".to_owned())?;
            let n = items.len();
            let i: usize = first.parse().map_err(|_| {
                format!("{path} is a list: the next part must be an entry number like 0")
            })?;
            let item = items
                .get_mut(i)
                .ok_or_else(|| format!("{path} has {n} entries; there is no entry {i}"))?;
            path.push_str(&format!("[{i}]"));
            if rest.is_empty() {
                *item = Value::String(value);
                Ok(())
            } else {
                descend(item, rest, value, path)
            }
        }
        _ => Err(format!("{path} is a single value, not a section")),
    }
}

// ---- Sections -------------------------------------------------------------------------------

/// Checks a whole configuration.
pub(super) fn config(
    mut root: Table,
    base_dir: &Path,
    env: &Environment,
) -> Result<Config, ConfigReport> {
    let mut ck = Checker::new(env, base_dir);
    apply_overrides(&mut root, &mut ck);
    let top = Section {
        path: String::new(),
        table: &root,
    };
    ck.keys(
        &top,
        &["store", "runner", "http", "stripe", "twilio", "practices"],
    );
    let built = build(&mut ck, &top);
    ck.finish(built)
}

fn build(ck: &mut Checker<'_>, top: &Section<'_>) -> Option<Config> {
    // Staff logins name practices, which come later in the file: their ids are read ahead, so
    // problems are still reported in the order of the file's sections.
    let ids: Vec<PracticeId> = match top.get("practices") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|p| p.get("id").and_then(Value::as_str))
            .map(|id| PracticeId::new(id.trim()))
            .collect(),
        _ => Vec::new(),
    };
    let store = store(ck, top);
    let runner = runner(ck, top);
    let http = http(ck, top, &ids);
    let stripe = stripe(ck, top);
    let twilio = twilio(ck, top);
    let practices = practices(ck, top, top.get("twilio").is_some());
    let practices: Vec<PracticeSettings> = practices?.into_iter().collect::<Option<_>>()?;
    Some(Config {
        store: store?,
        runner: runner?,
        http: http?,
        stripe: stripe?,
        twilio: twilio?,
        practices,
    })
}

/// Checks `[store]` and reads the practices' time zones leniently.
pub(super) fn store_view(
    mut root: Table,
    base_dir: &Path,
    env: &Environment,
) -> Result<StoreView, ConfigReport> {
    let mut ck = Checker::new(env, base_dir);
    apply_overrides(&mut root, &mut ck);
    let top = Section {
        path: String::new(),
        table: &root,
    };
    let store = store(&mut ck, &top);
    let mut time_zones = HashMap::new();
    if let Some(Value::Array(items)) = root.get("practices") {
        for item in items {
            let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::trim);
            if let (Some(id), Some(tz)) = (field("id"), field("time_zone"))
                && let Ok(tz) = tz.parse::<Tz>()
            {
                time_zones.insert(PracticeId::new(id), tz);
            }
        }
    }
    let view = store.map(|store| StoreView { store, time_zones });
    ck.finish(view)
}

fn store(ck: &mut Checker<'_>, top: &Section<'_>) -> Option<StoreSettings> {
    let got = ck.table(top, "store");
    let s = ck.need(
        got,
        "store",
        "a [store] section with data_key_env (or data_key_file)",
    )?;
    let secrets = [Checker::secret_keys("data_key")];
    ck.keys(&s, &allowed(&["path"], &secrets));
    let path = ck.optional(&s, "path", |t| {
        if t.is_empty() {
            Err("empty; expected a file path like /var/lib/chairside/chairside.sqlite".into())
        } else {
            Ok(PathBuf::from(t))
        }
    });
    let path = path.or(PathBuf::from("chairside.sqlite"));
    let key = ck.required_secret(&s, "data_key");
    if let Some(k) = &key
        && DataKey::parse(k.expose_secret()).is_err()
    {
        let at = if s.get("data_key_file").is_some() {
            s.at("data_key_file")
        } else if s.get("data_key").is_some() {
            s.at("data_key")
        } else {
            s.at("data_key_env")
        };
        ck.problem(
            at,
            "the data key must be 32 bytes written as 64 hex characters or base64 \
             (make one with `openssl rand -hex 32`)",
        );
        return None;
    }
    let path = path.map(|p| {
        if p.is_relative() {
            ck.base_dir.join(p)
        } else {
            p
        }
    });
    Some(StoreSettings {
        path: path?,
        data_key: key?,
    })
}

fn runner(ck: &mut Checker<'_>, top: &Section<'_>) -> Option<RunnerSettings> {
    let defaults = RunnerSettings {
        owner: format!("chairside-{}", std::process::id()),
        lease: Duration::from_secs(60),
        concurrency: 16,
        poll_interval: Duration::from_secs(30),
    };
    let s = match ck.table(top, "runner") {
        Got::Absent => return Some(defaults),
        Got::Bad => return None,
        Got::Is(s) => s,
    };
    ck.keys(
        &s,
        &["owner", "lease_secs", "concurrency", "poll_interval_secs"],
    );
    let owner = ck.optional(&s, "owner", |t| {
        if t.is_empty() {
            Err("empty; expected a name for this instance, like chairside-1".into())
        } else {
            Ok(t.to_owned())
        }
    });
    let lease = ck.integer(&s, "lease_secs", 5, 3_600);
    let concurrency = ck.integer(&s, "concurrency", 1, 1_024);
    let poll = ck.integer(&s, "poll_interval_secs", 1, 86_400);
    let secs = |n: i64| Duration::from_secs(u64::try_from(n).unwrap_or(1));
    Some(RunnerSettings {
        owner: owner.or(defaults.owner)?,
        lease: secs(lease.or(60)?),
        concurrency: usize::try_from(concurrency.or(16)?).unwrap_or(16),
        poll_interval: secs(poll.or(30)?),
    })
}

fn http(ck: &mut Checker<'_>, top: &Section<'_>, practices: &[PracticeId]) -> Option<HttpSettings> {
    let got = ck.table(top, "http");
    let s = ck.need(
        got,
        "http",
        "an [http] section with public_base_url and patient_link_key_env",
    )?;
    let secrets = [Checker::secret_keys("patient_link_key")];
    ck.keys(
        &s,
        &allowed(
            &[
                "listen",
                "public_base_url",
                "patient_link_lifetime",
                "staff",
            ],
            &secrets,
        ),
    );
    let listen = ck
        .optional(&s, "listen", |t| {
            t.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "{}: expected an address and port like 127.0.0.1:8080 or 0.0.0.0:8080",
                    quoted(t)
                )
            })
        })
        .or(SocketAddr::from(([127, 0, 0, 1], 8080)));
    let public = ck.required(
        &s,
        "public_base_url",
        "the https address patients and webhooks reach, like https://pay.example-dental.com/",
        |t| parse_url(t, false),
    );
    let key = ck.required_secret(&s, "patient_link_key");
    let short = key.as_ref().is_some_and(|k| k.expose_secret().len() < 32);
    if short {
        ck.problem(
            s.at("patient_link_key_env"),
            "the patient link key must be at least 32 bytes (make one with `openssl rand -hex 32`)",
        );
    }
    let lifetime = ck
        .optional(&s, "patient_link_lifetime", positive_duration)
        .or(Duration::from_secs(30 * 86_400));
    let staff = staff(ck, &s, practices);
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

fn staff(
    ck: &mut Checker<'_>,
    s: &Section<'_>,
    practices: &[PracticeId],
) -> Option<Vec<StaffLogin>> {
    let got = ck.tables(s, "staff");
    let list = got.or(Vec::new())?;
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, String> = HashMap::new();
    for entry in &list {
        ck.keys(entry, &["username", "practice", "password_hash"]);
        let username = ck.text(entry, "username", "the login name");
        let practice = ck.required(entry, "practice", "the id of a configured practice", |t| {
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
        });
        let hash = ck.required(
            entry,
            "password_hash",
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
                ck.problem(
                    entry.at("username"),
                    format!("{}: already used by {first}", quoted(u)),
                );
                ok = false;
            } else {
                names.insert(u.clone(), entry.path.clone());
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

fn stripe(ck: &mut Checker<'_>, top: &Section<'_>) -> Option<StripeSettings> {
    let got = ck.table(top, "stripe");
    let s = ck.need(
        got,
        "stripe",
        "a [stripe] section with api_key_env and webhook_secrets_env",
    )?;
    let secrets = [
        Checker::secret_keys("api_key"),
        Checker::secret_keys("webhook_secrets"),
    ];
    ck.keys(&s, &allowed(&["base_url"], &secrets));
    let base = ck
        .optional(&s, "base_url", |t| parse_url(t, false))
        .or_else_default(stripe_schedule::DEFAULT_BASE_URL);
    let key = ck.required_secret(&s, "api_key");
    let mut bad = false;
    if let Some(k) = &key
        && !(k.expose_secret().starts_with("sk_") || k.expose_secret().starts_with("rk_"))
    {
        ck.problem(
            s.at("api_key_env"),
            "the key does not look like a Stripe secret key (sk_... or rk_...)",
        );
        bad = true;
    }
    let got = ck.secret_list(&s, "webhook_secrets");
    let hooks = ck.need(
        got,
        &s.at("webhook_secrets_env"),
        "the name of an environment variable holding the webhook secrets (whsec_..., \
         comma-separated while one is rotated)",
    );
    if let Some(h) = &hooks {
        if h.is_empty() {
            ck.problem(s.at("webhook_secrets_env"), "no webhook secret given");
            bad = true;
        } else if h.iter().any(|w| !w.expose_secret().starts_with("whsec_")) {
            ck.problem(
                s.at("webhook_secrets_env"),
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

trait UrlDefault {
    fn or_else_default(self, default: &str) -> Option<Url>;
}

impl UrlDefault for Got<Url> {
    fn or_else_default(self, default: &str) -> Option<Url> {
        match self {
            Got::Absent => Url::parse(default).ok(),
            Got::Bad => None,
            Got::Is(u) => Some(u),
        }
    }
}

fn twilio(ck: &mut Checker<'_>, top: &Section<'_>) -> Option<Option<TwilioSettings>> {
    let s = match ck.table(top, "twilio") {
        Got::Absent => return Some(None),
        Got::Bad => return None,
        Got::Is(s) => s,
    };
    let secrets = [Checker::secret_keys("auth_token")];
    ck.keys(
        &s,
        &allowed(
            &["base_url", "account_sid", "messaging_service_sid", "from"],
            &secrets,
        ),
    );
    let base = ck
        .optional(&s, "base_url", |t| parse_url(t, false))
        .or_else_default(messaging::DEFAULT_BASE_URL);
    let sid = ck.required(&s, "account_sid", "the account SID (AC...)", |t| {
        hex_sid(t, "AC")
    });
    let token = ck.required_secret(&s, "auth_token");
    let service = ck.optional(&s, "messaging_service_sid", |t| hex_sid(t, "MG"));
    let from = ck.optional(&s, "from", parse_phone);
    let sender = match (service, from) {
        (Got::Is(_), Got::Is(_)) => {
            ck.problem(
                s.at("from"),
                "set either messaging_service_sid or from, not both",
            );
            None
        }
        (Got::Is(sid), Got::Absent) => Some(messaging::SmsFrom::MessagingService(
            messaging::MessagingServiceSid::new(sid),
        )),
        (Got::Absent, Got::Is(n)) => Some(messaging::SmsFrom::Number(n)),
        (Got::Absent, Got::Absent) => {
            ck.problem(
                s.at("from"),
                "missing; expected from = \"+15125550100\" (a Twilio number) or \
                 messaging_service_sid = \"MG...\"",
            );
            None
        }
        _ => None,
    };
    Some(Some(TwilioSettings {
        base_url: base?,
        account_sid: messaging::AccountSid::new(sid?),
        auth_token: token?,
        sender: sender?,
    }))
}

/// `[[practices]]`: each entry is `None` when it has problems.
fn practices(
    ck: &mut Checker<'_>,
    top: &Section<'_>,
    has_twilio: bool,
) -> Option<Vec<Option<PracticeSettings>>> {
    let got = ck.tables(top, "practices");
    let list = ck.need(got, "practices", "at least one [[practices]] section")?;
    if list.is_empty() {
        ck.problem(
            "practices",
            "no practices configured; add a [[practices]] section",
        );
        return None;
    }
    let mut seen_ids: HashMap<String, String> = HashMap::new();
    let mut seen_numbers: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for p in &list {
        let practice = practice(ck, p, has_twilio);
        if let Some(pr) = &practice {
            if let Some(first) = seen_ids.get(pr.id.as_str()) {
                ck.problem(
                    p.at("id"),
                    format!("{}: already used by {first}", quoted(pr.id.as_str())),
                );
            } else {
                seen_ids.insert(pr.id.as_str().to_owned(), p.path.clone());
            }
            if let Some(n) = &pr.sms_from {
                if let Some(first) = seen_numbers.get(n.as_e164()) {
                    ck.problem(
                        p.at("sms_from"),
                        format!("already used by {first}; each practice texts from its own number"),
                    );
                } else {
                    seen_numbers.insert(n.as_e164().to_owned(), p.path.clone());
                }
            }
        }
        out.push(practice);
    }
    Some(out)
}

fn practice(ck: &mut Checker<'_>, s: &Section<'_>, has_twilio: bool) -> Option<PracticeSettings> {
    ck.keys(
        s,
        &[
            "id",
            "name",
            "state",
            "time_zone",
            "location_id",
            "phone",
            "email",
            "sms_from",
            "pms",
            "lenders",
            "payments",
            "smtp",
            "reminders",
            "policy",
        ],
    );
    let id = ck.required(s, "id", "a short id like lone-star-dental", parse_id);
    let name = ck.text(s, "name", "the practice's name as patients know it");
    let state = ck.required(s, "state", "a two-letter US state code like TX", |t| {
        t.parse::<UsState>()
            .map_err(|_| format!("{}: expected a two-letter US state code like TX", quoted(t)))
    });
    let tz = ck.required(s, "time_zone", "an IANA zone like America/Chicago", |t| {
        t.parse::<Tz>()
            .map_err(|_| format!("{}: expected an IANA zone like America/Chicago", quoted(t)))
    });
    let location = ck.text(
        s,
        "location_id",
        "the location id lenders know this office by",
    );
    let phone = ck.required(s, "phone", "the phone number patients call", |t| {
        if t.chars().filter(char::is_ascii_digit).count() >= 7 {
            Ok(t.to_owned())
        } else {
            Err(format!(
                "{}: expected a phone number patients can call, like +1 512 555 0100",
                quoted(t)
            ))
        }
    });
    let email = ck.required(s, "email", "the address patients may write to", |t| {
        messaging::EmailAddress::parse(t)
            .map(|_| t.to_owned())
            .map_err(|_| {
                format!(
                    "{}: expected an email address like frontdesk@example.com",
                    quoted(t)
                )
            })
    });
    let sms_from = ck.optional(s, "sms_from", parse_phone).optional();

    let pms = match ck.table(s, "pms") {
        Got::Absent => {
            ck.problem(
                s.at("pms"),
                "missing; expected a [practices.pms] section with kind = \"dentrix\", \"opendental\" or \"nexhealth\"",
            );
            None
        }
        Got::Bad => None,
        Got::Is(t) => pms(ck, &t),
    };
    let lenders = match ck.table(s, "lenders") {
        Got::Absent => {
            ck.problem(
                s.at("lenders"),
                "missing; expected a [practices.lenders] section with order = [\"carecredit\", \"sunbit\"] (or [] for none)",
            );
            None
        }
        Got::Bad => None,
        Got::Is(t) => lenders(ck, &t),
    };
    let payments = match ck.table(s, "payments") {
        Got::Absent => Some(PaymentSettings {
            deposit: DepositRule::None,
            installments: 6,
            interval: InstallmentInterval::MONTHLY,
        }),
        Got::Bad => None,
        Got::Is(t) => payments(ck, &t),
    };
    let smtp = match ck.table(s, "smtp") {
        Got::Absent => Some(None),
        Got::Bad => None,
        Got::Is(t) => smtp(ck, &t).map(Some),
    };
    let reminders = match ck.table(s, "reminders") {
        Got::Absent => Some(default_reminders()),
        Got::Bad => None,
        Got::Is(t) => reminders(ck, &t),
    };
    let policy = match ck.table(s, "policy") {
        Got::Absent => Some(PolicySettings::default()),
        Got::Bad => None,
        Got::Is(t) => {
            ck.keys(&t, &["prefill_approved_by_counsel"]);
            ck.boolean(&t, "prefill_approved_by_counsel")
                .or(false)
                .map(|prefill| PolicySettings {
                    prefill_approved_by_counsel: prefill,
                })
        }
    };
    if !has_twilio && s.get("smtp").is_none() {
        ck.problem(
            s.path.clone(),
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

fn pms(ck: &mut Checker<'_>, s: &Section<'_>) -> Option<PmsSettings> {
    let kind = ck.required(
        s,
        "kind",
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
    match kind.as_str() {
        "dentrix" => {
            let secrets = [Checker::secret_keys("client_secret")];
            ck.keys(
                s,
                &allowed(
                    &[
                        "kind",
                        "base_url",
                        "token_url",
                        "client_id",
                        "organization_id",
                    ],
                    &secrets,
                ),
            );
            let base = ck.required(
                s,
                "base_url",
                "the Ascend API address, like https://prod.hs1api.com/ascend-gateway/api/v1/",
                |t| parse_url(t, false),
            );
            let token = ck
                .optional(s, "token_url", |t| parse_url(t, false))
                .optional();
            let client_id = ck.text(s, "client_id", "the OAuth2 client id");
            let secret = ck.required_secret(s, "client_secret");
            let org = ck.text(s, "organization_id", "the Ascend organization id");
            Some(PmsSettings::Dentrix(DentrixSettings {
                base_url: base?,
                token_url: token?,
                client_id: client_id?,
                client_secret: secret?,
                organization_id: org?,
            }))
        }
        "opendental" => {
            let secrets = [
                Checker::secret_keys("developer_key"),
                Checker::secret_keys("customer_key"),
            ];
            ck.keys(s, &allowed(&["kind", "base_url", "acceptance"], &secrets));
            // The Local API and the API Service run on the office network, often without TLS.
            let base = ck
                .optional(s, "base_url", |t| parse_url(t, true))
                .or_else_default(opendental_client::REMOTE_BASE_URL);
            let developer = ck.required_secret(s, "developer_key");
            let customer = ck.required_secret(s, "customer_key");
            let acceptance = ck
                .optional(s, "acceptance", |t| {
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
            Some(PmsSettings::OpenDental(OpenDentalSettings {
                base_url: base?,
                developer_key: developer?,
                customer_key: customer?,
                acceptance: acceptance?,
            }))
        }
        _ => {
            let secrets = [
                Checker::secret_keys("api_key"),
                Checker::secret_keys("webhook_secret"),
            ];
            ck.keys(
                s,
                &allowed(&["kind", "base_url", "subdomain", "location_id"], &secrets),
            );
            let base = ck
                .optional(s, "base_url", |t| parse_url(t, false))
                .or_else_default("https://nexhealth.info");
            let key = ck.required_secret(s, "api_key");
            let subdomain = ck.text(s, "subdomain", "the institution's NexHealth subdomain");
            let location = ck.text(s, "location_id", "the NexHealth location id");
            let hook = ck.secret(s, "webhook_secret").optional();
            Some(PmsSettings::NexHealth(NexHealthSettings {
                base_url: base?,
                api_key: key?,
                subdomain: subdomain?,
                location_id: location?,
                webhook_secret: hook?,
            }))
        }
    }
}

fn limits(ck: &mut Checker<'_>, s: &Section<'_>, default: AmountLimits) -> Option<AmountLimits> {
    let min = ck.optional(s, "min", parse_money);
    let max = ck.optional(s, "max", parse_money);
    if let (Got::Is(lo), Got::Is(hi)) = (&min, &max)
        && lo.minor() > hi.minor()
    {
        ck.problem(
            s.at("min"),
            format!("{lo} is above max {hi}; min must not exceed max"),
        );
        return None;
    }
    let given = min.is_present() || max.is_present();
    let min = min.optional()?;
    let max = max.optional()?;
    Some(if given {
        AmountLimits { min, max }
    } else {
        default
    })
}

fn lenders(ck: &mut Checker<'_>, s: &Section<'_>) -> Option<LenderSettings> {
    let mut keys = vec!["order", "on_partial", "in_house_fallback"];
    keys.extend(KNOWN_LENDERS);
    ck.keys(s, &keys);
    let got = ck.string_list(s, "order");
    let order = ck.need(
        got,
        &s.at("order"),
        "the lenders in the order they are asked, like [\"carecredit\", \"sunbit\"]",
    );
    let on_partial = ck
        .optional(s, "on_partial", |t| match t {
            "stop_for_staff" => Ok(PartialApprovalRule::StopForStaff),
            "continue_for_full_coverage" => Ok(PartialApprovalRule::ContinueForFullCoverage),
            _ => Err(format!(
                "{}: expected \"stop_for_staff\" or \"continue_for_full_coverage\"",
                quoted(t)
            )),
        })
        .or(PartialApprovalRule::StopForStaff);
    let fallback = ck.boolean(s, "in_house_fallback").or(true);

    let carecredit = match ck.table(s, "carecredit") {
        Got::Absent => Some(None),
        Got::Bad => None,
        Got::Is(t) => carecredit(ck, &t).map(Some),
    };
    let sunbit = match ck.table(s, "sunbit") {
        Got::Absent => Some(None),
        Got::Bad => None,
        Got::Is(t) => sunbit(ck, &t).map(Some),
    };

    let mut ids = Vec::new();
    let mut ok = true;
    let mut seen = HashSet::new();
    for (path, name) in order.iter().flatten() {
        let normal = name.to_ascii_lowercase();
        if matches!(normal.as_str(), "inhouse" | "in_house" | "in-house") {
            ck.problem(
                path,
                format!(
                    "{}: the in-house plan is not a lender; remove it from the order and set in_house_fallback = true",
                    quoted(name)
                ),
            );
            ok = false;
        } else if s.get(&normal).is_none() || !KNOWN_LENDERS.contains(&normal.as_str()) {
            let known = if KNOWN_LENDERS.contains(&normal.as_str()) {
                String::new()
            } else {
                format!(
                    " (lenders this version supports: {})",
                    KNOWN_LENDERS.join(", ")
                )
            };
            ck.problem(
                path,
                format!(
                    "unknown lender {}: configure [practices.lenders.{normal}] or remove it from the order{known}",
                    quoted(name)
                ),
            );
            ok = false;
        } else if !seen.insert(normal.clone()) {
            ck.problem(path, format!("{} appears twice in the order", quoted(name)));
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

fn carecredit(ck: &mut Checker<'_>, s: &Section<'_>) -> Option<CareCreditSettings> {
    let secrets = [Checker::secret_keys("client_secret")];
    ck.keys(
        s,
        &allowed(
            &[
                "base_url",
                "token_url",
                "client_id",
                "partner_code",
                "merchant_number",
                "min",
                "max",
            ],
            &secrets,
        ),
    );
    let base = ck.required(s, "base_url", "the CareCredit partner API address", |t| {
        parse_url(t, false)
    });
    let token = ck
        .optional(s, "token_url", |t| parse_url(t, false))
        .optional();
    let client_id = ck.text(s, "client_id", "the OAuth2 client id");
    let secret = ck.required_secret(s, "client_secret");
    let partner = ck.text(s, "partner_code", "the technology partner code");
    let merchant = ck.required(
        s,
        "merchant_number",
        "the location's 16-digit merchant number",
        |t| {
            carecredit_client::MerchantNumber::new(t).map_err(|_| {
                "expected exactly 16 digits (the location's CareCredit merchant number)".to_owned()
            })
        },
    );
    let limits = limits(ck, s, carecredit_client::DEFAULT_LIMITS);
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

fn sunbit(ck: &mut Checker<'_>, s: &Section<'_>) -> Option<SunbitSettings> {
    let secrets = [
        Checker::secret_keys("key"),
        Checker::secret_keys("secret"),
        Checker::secret_keys("webhook_secret"),
    ];
    ck.keys(
        s,
        &allowed(&["base_url", "location", "min", "max"], &secrets),
    );
    let base = ck.required(s, "base_url", "the Sunbit API address", |t| {
        parse_url(t, false)
    });
    let key = ck.required_secret(s, "key");
    let secret = ck.required_secret(s, "secret");
    let location = ck.text(s, "location", "the practice's Sunbit location id");
    let hook = ck.secret(s, "webhook_secret").optional();
    let limits = limits(ck, s, sunbit_client::DEFAULT_LIMITS);
    Some(SunbitSettings {
        base_url: base?,
        key: key?,
        secret: secret?,
        location: location?,
        webhook_secret: hook?,
        limits: limits?,
    })
}

fn payments(ck: &mut Checker<'_>, s: &Section<'_>) -> Option<PaymentSettings> {
    ck.keys(
        s,
        &["deposit", "installments", "interval", "interval_count"],
    );
    let deposit = ck
        .optional(s, "deposit", parse_deposit)
        .or(DepositRule::None);
    let installments = ck.integer(s, "installments", 1, 3_650).or(6);
    let unit = ck
        .optional(s, "interval", |t| match t {
            "month" => Ok(IntervalUnit::Month),
            "week" => Ok(IntervalUnit::Week),
            "day" => Ok(IntervalUnit::Day),
            _ => Err(format!(
                "{}: expected \"month\", \"week\" or \"day\"",
                quoted(t)
            )),
        })
        .or(IntervalUnit::Month);
    let count = ck.integer(s, "interval_count", 1, 365).or(1);
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
        ck.problem(
            s.at("installments"),
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

fn smtp(ck: &mut Checker<'_>, s: &Section<'_>) -> Option<SmtpSettings> {
    let secrets = [Checker::secret_keys("password")];
    ck.keys(
        s,
        &allowed(&["host", "port", "security", "username", "from"], &secrets),
    );
    let host = ck.text(s, "host", "the mail server's host name");
    let security = ck
        .optional(s, "security", |t| match t {
            "starttls" => Ok(messaging::SmtpSecurity::StartTls),
            "tls" => Ok(messaging::SmtpSecurity::Tls),
            "none" => Ok(messaging::SmtpSecurity::None),
            _ => Err(format!(
                "{}: expected \"starttls\", \"tls\" or \"none\"",
                quoted(t)
            )),
        })
        .or(messaging::SmtpSecurity::StartTls);
    let port = ck.integer(s, "port", 1, 65_535);
    let username = ck
        .optional(s, "username", |t| Ok::<_, String>(t.to_owned()))
        .optional();
    let password = ck.secret(s, "password").optional();
    let from = ck.required(
        s,
        "from",
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
            ck.problem(
                s.at("security"),
                "\"none\" is allowed only for a mail server on 127.0.0.1 or localhost \
                 (patient email must be encrypted in transit); use \"starttls\" or \"tls\"",
            );
            return None;
        }
    }
    let (username, password) = (username?, password?);
    match (&username, &password) {
        (Some(_), None) => {
            ck.problem(
                s.at("password_env"),
                "missing; a username needs password_env (or password_file)",
            );
            return None;
        }
        (None, Some(_)) => {
            ck.problem(s.at("username"), "missing; a password needs a username");
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

fn default_reminders() -> ReminderSettings {
    ReminderSettings {
        delays: vec![Duration::from_secs(86_400), Duration::from_secs(3 * 86_400)],
        give_up_after: Duration::from_secs(2 * 86_400),
        poll_interval: Duration::from_secs(15 * 60),
    }
}

fn reminders(ck: &mut Checker<'_>, s: &Section<'_>) -> Option<ReminderSettings> {
    ck.keys(s, &["delays", "give_up_after", "poll_interval"]);
    let defaults = default_reminders();
    let delays = match ck.string_list(s, "delays") {
        Got::Absent => Some(defaults.delays),
        Got::Bad => None,
        Got::Is(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (path, text) in items {
                match positive_duration(&text) {
                    Ok(d) => out.push(d),
                    Err(m) => {
                        ck.problem(path, m);
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
    };
    let give_up = ck
        .optional(s, "give_up_after", parse_duration)
        .or(defaults.give_up_after);
    let poll = ck
        .optional(s, "poll_interval", positive_duration)
        .or(defaults.poll_interval);
    Some(ReminderSettings {
        delays: delays?,
        give_up_after: give_up?,
        poll_interval: poll?,
    })
}
