//! Reading a TOML tree into the raw structs with serde: a value of the wrong type is one problem
//! naming its path (`serde_path_to_error`), and every key serde did not use is collected with
//! its section (`serde_ignored`) so each can be reported as unknown, with a suggestion.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::report::Problem;

/// A key no raw struct has: the section it was found in (`practices[0]`) and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unknown {
    /// The section's path, empty for the top level.
    pub(super) section: String,
    /// The key as written.
    pub(super) key: String,
}

/// `at.key`, `at[0]`, or `key` at the top.
pub(super) fn join(at: &str, rest: &str) -> String {
    if at.is_empty() {
        rest.to_owned()
    } else if rest.is_empty() {
        at.to_owned()
    } else if rest.starts_with('[') {
        format!("{at}{rest}")
    } else {
        format!("{at}.{rest}")
    }
}

/// Reads `value` (found at `at`) as a `T`, with the keys it did not know.
///
/// # Errors
/// The first value of the wrong type, as a problem at its path; the value itself is never quoted.
pub(super) fn read<T: DeserializeOwned>(
    value: toml::Value,
    at: &str,
) -> Result<(T, Vec<Unknown>), Problem> {
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| {
        if let serde_ignored::Path::Map { parent, key } = path {
            unknown.push(Unknown {
                section: join(at, &ignored_path(parent)),
                key,
            });
        }
    };
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note));
    match result {
        Ok(v) => Ok((v, unknown)),
        Err(e) => {
            let inner = e.path().to_string();
            let rel = if inner == "." { "" } else { inner.as_str() };
            Err(Problem {
                path: join(at, rel),
                message: describe(e.inner().message()),
            })
        }
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => join(&ignored_path(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// serde's "invalid type: string \"…\", expected a string" quotes the value, which could be a
/// secret typed in the wrong place: only its kind is kept.
fn describe(message: &str) -> String {
    let message = message.trim();
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let Some((found, expected)) = rest.and_then(|r| r.rsplit_once(", expected ")) else {
        return message.to_owned();
    };
    let found = [
        ("string", "a string"),
        ("integer", "a whole number"),
        ("floating point", "a decimal number"),
        ("boolean", "true or false"),
        ("sequence", "a list"),
        ("map", "a section"),
    ]
    .iter()
    .find(|(prefix, _)| found.starts_with(prefix))
    .map_or("another kind of value", |(_, kind)| kind);
    let expected = match expected {
        "a string" => "a string in quotes",
        "a sequence" => "a list",
        "a map" => "a section",
        other => other,
    };
    format!("expected {expected}, found {found}")
}

/// The keys a raw struct reads, as serde's derive lists them.
pub(super) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Grab<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Grab<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _: Result<T, _> = T::deserialize(Grab(&mut fields));
    fields
}

/// "unknown key", with the nearest allowed key when one is close.
pub(super) fn unknown_key_message(key: &str, allowed: &[&str]) -> String {
    let near = allowed
        .iter()
        .filter(|a| edit_distance(a, key) <= 2)
        .min_by_key(|a| edit_distance(a, key));
    match near {
        Some(n) => format!("unknown key; did you mean '{n}'?"),
        None if allowed.is_empty() => "unknown key".to_owned(),
        None => format!("unknown key; expected one of: {}", allowed.join(", ")),
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
