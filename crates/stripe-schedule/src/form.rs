//! Stripe's nested form encoding: `a[b][0][c]=v`.
//!
//! Requests are built as a [`FormMap`] tree and flattened once, here. [`decode`] is the inverse
//! (property-tested against [`encode`]); a local Stripe stand-in can use it to read our requests.
//!
//! Keys keep their brackets literal (`phases[0][duration][interval]=month`), as Stripe's docs
//! write them; everything else outside RFC 3986's unreserved set is percent-encoded.

use std::fmt::Write as _;

/// One value in a form tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormValue {
    /// A leaf: `key=value`.
    Scalar(String),
    /// Named children: `key[name]=…`.
    Map(FormMap),
    /// Indexed children: `key[0]=…`, `key[1]=…`.
    List(Vec<FormValue>),
}

/// An ordered map of form fields; the order is kept on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormMap(Vec<(String, FormValue)>);

impl FormMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (replacing an earlier value of the same key) and returns `self` for chaining.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<FormValue>) -> &mut Self {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
        self
    }

    /// Builder form of [`FormMap::insert`].
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<FormValue>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` only when `value` is `Some`.
    pub fn insert_opt<V: Into<FormValue>>(
        &mut self,
        key: impl Into<String>,
        value: Option<V>,
    ) -> &mut Self {
        if let Some(v) = value {
            self.insert(key, v);
        }
        self
    }

    /// The value of `key`, when set.
    pub fn get(&self, key: &str) -> Option<&FormValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FormValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The flattened `(key path, value)` pairs, in order.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            flatten(k.clone(), v, &mut out);
        }
        out
    }
}

impl From<String> for FormValue {
    fn from(s: String) -> Self {
        Self::Scalar(s)
    }
}

impl From<&str> for FormValue {
    fn from(s: &str) -> Self {
        Self::Scalar(s.to_owned())
    }
}

impl From<&String> for FormValue {
    fn from(s: &String) -> Self {
        Self::Scalar(s.clone())
    }
}

impl From<i64> for FormValue {
    fn from(n: i64) -> Self {
        Self::Scalar(n.to_string())
    }
}

impl From<u32> for FormValue {
    fn from(n: u32) -> Self {
        Self::Scalar(n.to_string())
    }
}

/// Booleans go on the wire as `true` / `false`.
impl From<bool> for FormValue {
    fn from(b: bool) -> Self {
        Self::Scalar(if b { "true" } else { "false" }.to_owned())
    }
}

impl From<FormMap> for FormValue {
    fn from(m: FormMap) -> Self {
        Self::Map(m)
    }
}

impl From<Vec<FormValue>> for FormValue {
    fn from(l: Vec<FormValue>) -> Self {
        Self::List(l)
    }
}

fn flatten(prefix: String, value: &FormValue, out: &mut Vec<(String, String)>) {
    match value {
        FormValue::Scalar(s) => out.push((prefix, s.clone())),
        FormValue::Map(m) => {
            for (k, v) in &m.0 {
                flatten(format!("{prefix}[{k}]"), v, out);
            }
        }
        FormValue::List(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(format!("{prefix}[{i}]"), v, out);
            }
        }
    }
}

/// Flattens and percent-encodes a form: the request body (or query string) Stripe receives.
pub fn encode(form: &FormMap) -> String {
    let mut out = String::new();
    for (i, (k, v)) in form.to_pairs().iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape(k, true, &mut out);
        out.push('=');
        escape(v, false, &mut out);
    }
    out
}

fn escape(s: &str, is_key: bool, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b'[' | b']' if is_key => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

/// Why a form body could not be rebuilt into a tree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    /// A key such as `a[b` or `a]` whose brackets do not pair up.
    #[error("malformed key (unbalanced brackets)")]
    MalformedKey,
    /// One key path used both as a value and as a parent (`a=1&a[b]=2`), or as a list and a map.
    #[error("a key path is used both as a value and as an object or list")]
    Conflict,
    /// A list index that skips ahead (`a[0]=x&a[2]=y`).
    #[error("list indexes must count up from 0 without gaps")]
    SparseList,
}

/// Splits a raw body into percent-decoded `(key path, value)` pairs (`+` is a space).
pub fn decode_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits a key path into its segments: `a[b][0]` gives `["a", "b", "0"]`.
///
/// # Errors
/// [`FormError::MalformedKey`] when the brackets do not pair up.
pub fn key_segments(key: &str) -> Result<Vec<&str>, FormError> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.contains(']') {
        return Err(FormError::MalformedKey);
    }
    let mut out = vec![head];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or(FormError::MalformedKey)?;
        let end = inner.find(']').ok_or(FormError::MalformedKey)?;
        let seg = &inner[..end];
        if seg.contains('[') {
            return Err(FormError::MalformedKey);
        }
        out.push(seg);
        rest = &inner[end + 1..];
    }
    Ok(out)
}

/// Rebuilds the tree from a raw body. A segment of digits (or empty, as in `expand[]`) under a
/// new parent makes that parent a list; anything else makes it a map.
///
/// # Errors
/// [`FormError`] when the body is not a consistent tree.
pub fn decode(body: &str) -> Result<FormMap, FormError> {
    let mut root = FormMap::new();
    for (key, value) in decode_pairs(body) {
        let segs = key_segments(&key)?;
        insert_path(&mut root, &segs, value)?;
    }
    Ok(root)
}

fn is_index(seg: &str) -> bool {
    seg.bytes().all(|b| b.is_ascii_digit())
}

fn container_for(next: &str) -> FormValue {
    if is_index(next) {
        FormValue::List(Vec::new())
    } else {
        FormValue::Map(FormMap::new())
    }
}

fn insert_path(map: &mut FormMap, segs: &[&str], value: String) -> Result<(), FormError> {
    let (first, rest) = segs.split_first().ok_or(FormError::MalformedKey)?;
    if rest.is_empty() {
        if map.get(first).is_some() {
            return Err(FormError::Conflict);
        }
        map.insert(*first, value);
        return Ok(());
    }
    if map.get(first).is_none() {
        map.insert(*first, container_for(rest[0]));
    }
    let slot = map
        .0
        .iter_mut()
        .find(|(k, _)| k == first)
        .map(|(_, v)| v)
        .ok_or(FormError::Conflict)?;
    insert_into(slot, rest, value)
}

fn insert_into(node: &mut FormValue, segs: &[&str], value: String) -> Result<(), FormError> {
    match node {
        FormValue::Scalar(_) => Err(FormError::Conflict),
        FormValue::Map(m) => {
            if is_index(segs[0]) {
                return Err(FormError::Conflict);
            }
            insert_path(m, segs, value)
        }
        FormValue::List(items) => {
            let (first, rest) = segs.split_first().ok_or(FormError::MalformedKey)?;
            if !is_index(first) {
                return Err(FormError::Conflict);
            }
            let idx = if first.is_empty() {
                items.len()
            } else {
                first.parse::<usize>().map_err(|_| FormError::SparseList)?
            };
            if idx > items.len() {
                return Err(FormError::SparseList);
            }
            if rest.is_empty() {
                if idx < items.len() {
                    return Err(FormError::Conflict);
                }
                items.push(FormValue::Scalar(value));
                return Ok(());
            }
            if idx == items.len() {
                items.push(container_for(rest[0]));
            }
            insert_into(&mut items[idx], rest, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nested_maps_and_lists_flatten_to_bracket_paths() {
        let form = FormMap::new()
            .with("customer", "cus_1")
            .with(
                "phases",
                vec![FormValue::from(
                    FormMap::new()
                        .with(
                            "items",
                            vec![FormValue::from(FormMap::new().with("price", "price_1"))],
                        )
                        .with("duration", FormMap::new().with("interval", "month")),
                )],
            )
            .with("metadata", FormMap::new().with("note", "a b&c=d"))
            .with("confirm", true);
        assert_eq!(
            encode(&form),
            "customer=cus_1&phases[0][items][0][price]=price_1\
             &phases[0][duration][interval]=month&metadata[note]=a%20b%26c%3Dd&confirm=true"
        );
    }

    #[test]
    fn decode_reads_plus_as_space_and_empty_brackets_as_append() {
        let tree = decode("expand[]=a&expand[]=b&q=x+y&k%5Bz%5D=1").unwrap();
        assert_eq!(
            tree.get("expand"),
            Some(&FormValue::List(vec!["a".into(), "b".into()]))
        );
        assert_eq!(tree.get("q"), Some(&FormValue::Scalar("x y".into())));
        assert_eq!(
            tree.get("k"),
            Some(&FormValue::Map(FormMap::new().with("z", "1")))
        );
    }

    #[test]
    fn decode_rejects_inconsistent_bodies() {
        assert_eq!(decode("a=1&a[b]=2"), Err(FormError::Conflict));
        assert_eq!(decode("a[0]=1&a[2]=2"), Err(FormError::SparseList));
        assert_eq!(decode("a[b=1"), Err(FormError::MalformedKey));
        assert_eq!(decode("a]=1"), Err(FormError::MalformedKey));
        assert_eq!(decode("a[0]=1&a[x]=2"), Err(FormError::Conflict));
    }

    #[test]
    fn key_segments_split_on_brackets() {
        assert_eq!(
            key_segments("phases[0][items][0][price_data][recurring][interval]").unwrap(),
            [
                "phases",
                "0",
                "items",
                "0",
                "price_data",
                "recurring",
                "interval"
            ]
        );
        assert_eq!(key_segments("plain").unwrap(), ["plain"]);
    }

    fn name() -> impl Strategy<Value = String> {
        // Map keys are never all digits (that would read back as a list index) and never
        // contain brackets (metadata validation refuses those).
        "[a-z_][a-z0-9_ .%&=+é-]{0,8}"
    }

    fn scalar() -> impl Strategy<Value = FormValue> {
        any::<String>().prop_map(FormValue::Scalar)
    }

    fn value() -> impl Strategy<Value = FormValue> {
        scalar().prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(FormValue::List),
                map_of(inner).prop_map(FormValue::Map),
            ]
        })
    }

    fn map_of(inner: impl Strategy<Value = FormValue>) -> impl Strategy<Value = FormMap> {
        prop::collection::btree_map(name(), inner, 1..4)
            .prop_map(|m| FormMap(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(form in map_of(value())) {
            prop_assert_eq!(decode(&encode(&form)), Ok(form));
        }

        #[test]
        fn pairs_survive_percent_encoding(pairs in prop::collection::vec((name(), any::<String>()), 0..6)) {
            let mut form = FormMap::new();
            for (k, v) in &pairs {
                form.insert(k.clone(), v.clone());
            }
            prop_assert_eq!(decode_pairs(&encode(&form)), form.to_pairs());
        }
    }
}
