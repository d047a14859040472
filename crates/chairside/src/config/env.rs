//! Where values come from besides the file: environment overrides
//! (`CHAIRSIDE_<SECTION>__<KEY>`) and secrets, from an environment variable or a file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use secrecy::SecretString;
use toml::{Table, Value};

use super::report::Problem;

const PREFIX: &str = "CHAIRSIDE_";

/// A snapshot of environment variables, where secrets and overrides are read from. Tests build one
/// from pairs instead of changing the process environment. `Debug` shows the count only.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("vars", &self.vars.len())
            .finish()
    }
}

impl Environment {
    /// The process environment (variables whose name or value is not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment holding exactly these variables.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// What the environment overrides did: the paths they set (with the variable that set each), and
/// the variables that could not be applied.
#[derive(Debug, Default)]
pub(super) struct Overrides {
    /// Path (`practices[0].phone`) to variable (`CHAIRSIDE_PRACTICES__0__PHONE`).
    pub(super) set: BTreeMap<String, String>,
    /// Variables naming no place in the file.
    pub(super) problems: Vec<Problem>,
}

/// Where a secret is, as the file says.
#[derive(Clone, Copy, Debug)]
pub(super) enum SecretSource<'a> {
    /// `<key>_env`: the name of an environment variable.
    Env(&'a str),
    /// `<key>_file`: a file, relative to the configuration's directory.
    File(&'a str),
}

/// Reads a secret (surrounding whitespace trimmed; several may be separated by commas or lines).
///
/// # Errors
/// A message naming the variable or file, never its content: not set, unreadable, or empty.
pub(super) fn read_secret(
    env: &Environment,
    base_dir: &Path,
    source: SecretSource<'_>,
) -> Result<SecretString, String> {
    let (value, what) = match source {
        SecretSource::Env(var) => match env.get(var) {
            Some(v) => (v.to_owned(), format!("env var {var}")),
            None => return Err(format!("env var {var} is not set")),
        },
        SecretSource::File(file) => {
            let full = base_dir.join(file);
            match std::fs::read_to_string(&full) {
                Ok(v) => (v, format!("file {file}")),
                Err(e) => {
                    return Err(format!(
                        "cannot read {}: {}",
                        full.display(),
                        super::io_reason(&e)
                    ));
                }
            }
        }
    };
    non_empty(value.trim(), &what)
}

/// A secret that must not be blank; `what` names where it came from.
///
/// # Errors
/// `"<what> is empty"`.
pub(super) fn non_empty(value: &str, what: &str) -> Result<SecretString, String> {
    if value.is_empty() {
        Err(format!("{what} is empty"))
    } else {
        Ok(SecretString::from(value.to_owned()))
    }
}

/// Applies `CHAIRSIDE_<SECTION>__<KEY>` variables to the table; records the paths they set.
pub(super) fn apply_overrides(root: &mut Table, env: &Environment) -> Overrides {
    let mut out = Overrides::default();
    let vars: Vec<(String, String)> = env
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
            out.problems.push(Problem {
                path: var,
                message: "expected CHAIRSIDE_<SECTION>__<KEY> with non-empty parts, like \
                          CHAIRSIDE_STORE__PATH"
                    .into(),
            });
            continue;
        }
        let mut path = String::new();
        match insert(root, &segments, value, &mut path) {
            Ok(()) => {
                out.set.insert(path, var);
            }
            Err(message) => out.problems.push(Problem { path: var, message }),
        }
    }
    out
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
