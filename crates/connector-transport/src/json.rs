//! JSON decoding whose errors name the field path and never the value: serde_json's own messages
//! can quote values ("invalid type: string \"Jane\""), and vendor bodies carry PHI.

use std::fmt;

use serde::de::DeserializeOwned;

/// What went wrong at [`DecodeError::path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeProblem {
    /// The body is not JSON, or is cut short.
    Syntax,
    /// A required field is absent.
    Missing,
    /// A field has the wrong JSON type.
    InvalidType,
    /// A field has the right type but an unusable value.
    InvalidValue,
}

impl DecodeProblem {
    /// A short stable label: `syntax`, `missing`, `invalid type`, `invalid value`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::Missing => "missing",
            Self::InvalidType => "invalid type",
            Self::InvalidValue => "invalid value",
        }
    }
}

impl fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Where a body failed to decode. Holds the JSON path of the field, never a value from the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The field path (`data[0].patient.dob`); for a missing field, the path of the field itself.
    /// Empty for the body as a whole.
    pub path: String,
    /// The kind of failure.
    pub problem: DecodeProblem,
    /// Line in the body (1-based; 0 when unknown).
    pub line: usize,
    /// Column in the body (1-based; 0 when unknown).
    pub column: usize,
}

impl DecodeError {
    /// The same error, its path placed under `parent`: for a value that was cut out of a larger
    /// body (a webhook's `data.object`) and decoded on its own with [`decode_value`].
    #[must_use]
    pub fn nested_in(mut self, parent: &str) -> Self {
        self.path = match (parent.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => parent.to_owned(),
            (false, false) if self.path.starts_with('[') => format!("{parent}{}", self.path),
            (false, false) => format!("{parent}.{}", self.path),
        };
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(body)"
        } else {
            &self.path
        };
        write!(
            f,
            "{} at `{path}` (line {}, column {})",
            self.problem, self.line, self.column
        )
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a JSON body into `T`.
///
/// # Errors
/// [`DecodeError`] naming the field path and the kind of failure, never the value.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    // Plain serde first: tracking the path of every field costs an allocation per field and is
    // only needed to describe a failure, so a body that does not decode is decoded again with
    // the path tracked (the same input gives the same failure). Like the tracked decode, this
    // reads one JSON value and leaves what follows it unread.
    let de = &mut serde_json::Deserializer::from_slice(body);
    match T::deserialize(de) {
        Ok(value) => Ok(value),
        Err(_) => {
            let de = &mut serde_json::Deserializer::from_slice(body);
            serde_path_to_error::deserialize(de).map_err(|e| describe(&e))
        }
    }
}

/// Decodes an already parsed JSON value into `T`, with the same path-only errors.
///
/// # Errors
/// [`DecodeError`] naming the field path and the kind of failure, never the value.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, DecodeError> {
    // As `decode_json`: untracked from a borrow first, the path tracked only to describe a failure.
    match T::deserialize(&value) {
        Ok(decoded) => Ok(decoded),
        Err(_) => serde_path_to_error::deserialize(value).map_err(|e| describe(&e)),
    }
}

/// One item of a list that could not be read: where it was, what could still be read of its
/// identity, and the error (a path and a kind, never a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableItem<E> {
    /// The item's position in the whole listing (across pages).
    pub index: usize,
    /// The item's id, when that field itself could be read (a string or a number).
    pub id: Option<String>,
    /// The item's change time as the vendor wrote it, when that field could be read: the
    /// record's version, so that a later edit is reported again.
    pub changed: Option<String>,
    /// What was wrong.
    pub error: E,
}

/// A list decoded item by item: the readable items, and the others set apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TolerantList<T, E> {
    /// The items that were read, in order.
    pub items: Vec<T>,
    /// The items that were not.
    pub unreadable: Vec<UnreadableItem<E>>,
}

impl<T, E> Default for TolerantList<T, E> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

impl<T, E> TolerantList<T, E> {
    /// Appends another page's result.
    pub fn extend(&mut self, other: Self) {
        self.items.extend(other.items);
        self.unreadable.extend(other.unreadable);
    }
}

/// A field of a raw JSON object as text, when it is a string or a number (ids and times come as
/// either); `None` for anything else. For naming a record that could not be read.
pub fn field_text(value: &serde_json::Value, field: &str) -> Option<String> {
    match value.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads every item of a list with `read`, so that one item that cannot be read (a `null` in the
/// list, a malformed field) is set apart instead of failing the list: the caller reports it (a
/// staff task naming the record and the field) and uses the others. `first_index` is the position
/// of `values[0]` in the whole listing; `id_field` and `changed_field` name the fields read from an
/// unreadable item to identify it (Open Dental `TreatPlanNum`/`SecDateTEdit`, Ascend
/// `id`/`lastModified`, NexHealth `id`/`updated_at`).
pub fn decode_each<T, E>(
    values: Vec<serde_json::Value>,
    first_index: usize,
    id_field: &str,
    changed_field: Option<&str>,
    mut read: impl FnMut(usize, serde_json::Value) -> Result<T, E>,
) -> TolerantList<T, E> {
    let mut out = TolerantList::default();
    for (i, value) in values.into_iter().enumerate() {
        let index = first_index + i;
        let id = field_text(&value, id_field);
        let changed = changed_field.and_then(|f| field_text(&value, f));
        match read(index, value) {
            Ok(item) => out.items.push(item),
            Err(error) => out.unreadable.push(UnreadableItem {
                index,
                id,
                changed,
                error,
            }),
        }
    }
    out
}

/// [`decode_each`] with serde: each item decoded as `T` with [`decode_value`], its error's path
/// placed under `{path}[{index}]` (`data[3].lastModified`).
pub fn decode_list_tolerant<T: DeserializeOwned>(
    values: Vec<serde_json::Value>,
    path: &str,
    first_index: usize,
    id_field: &str,
    changed_field: Option<&str>,
) -> TolerantList<T, DecodeError> {
    decode_each(
        values,
        first_index,
        id_field,
        changed_field,
        |index, value| decode_value(value).map_err(|e| e.nested_in(&format!("{path}[{index}]"))),
    )
}

fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    use serde_json::error::Category;
    let inner = e.inner();
    let path = match e.path().to_string() {
        p if p == "." => String::new(),
        p => p,
    };
    let (path, problem) = match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => (path, DecodeProblem::Syntax),
        Category::Data => {
            // Only the shape of serde's message is read; a missing field's message carries just
            // the field's name, which is appended to the path.
            let msg = inner.to_string();
            if let Some(rest) = msg.strip_prefix("missing field `") {
                let name = rest.split('`').next().unwrap_or_default();
                let field = if path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                };
                (field, DecodeProblem::Missing)
            } else if msg.starts_with("invalid type") {
                (path, DecodeProblem::InvalidType)
            } else {
                (path, DecodeProblem::InvalidValue)
            }
        }
    };
    DecodeError {
        path,
        problem,
        line: inner.line(),
        column: inner.column(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Case {
        id: String,
        amount: u32,
    }

    #[test]
    fn a_list_decoded_item_by_item_sets_apart_the_bad_items_with_their_id_and_path() {
        let values: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"id":"a","amount":1},null,{"id":7,"amount":"Jane Doe","changed":"2026-01-01"},{"id":"d","amount":4}]"#,
        )
        .unwrap();
        let list: TolerantList<Case, DecodeError> =
            decode_list_tolerant(values, "data", 10, "id", Some("changed"));
        assert_eq!(
            list.items,
            vec![
                Case {
                    id: "a".into(),
                    amount: 1
                },
                Case {
                    id: "d".into(),
                    amount: 4
                }
            ]
        );
        assert_eq!(list.unreadable.len(), 2);
        let null = &list.unreadable[0];
        assert_eq!((null.index, null.id.as_deref()), (11, None));
        assert_eq!(null.error.path, "data[11]");
        let bad = &list.unreadable[1];
        assert_eq!(bad.index, 12);
        assert_eq!(bad.id.as_deref(), Some("7"));
        assert_eq!(bad.changed.as_deref(), Some("2026-01-01"));
        assert_eq!(bad.error.path, "data[12].amount");
        assert_eq!(bad.error.problem, DecodeProblem::InvalidType);
        assert!(
            !bad.error.to_string().contains("Jane"),
            "no value in the error"
        );
    }

    /// What the path-tracking decode alone gives: the reference the untracked first pass of
    /// `decode_json` and `decode_value` must agree with, success and failure alike.
    fn tracked<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| describe(&e))
    }

    #[test]
    fn the_untracked_first_pass_decodes_and_fails_exactly_as_the_tracked_decode() {
        let bodies: [&[u8]; 9] = [
            br#"{"id":"a","amount":1}"#,
            br#"{"id":"a","amount":1,"extra":{"x":[1,2]}}"#,
            // One value is read and what follows it is left, as before.
            br#"{"id":"a","amount":1} trailing"#,
            br#"{"id":"a"}"#,
            br#"{"id":"a","amount":"Jane Doe"}"#,
            br#"{"id":"a","amount":-1}"#,
            br#"{"id":"a","amount":1"#,
            b"not json",
            b"",
        ];
        for body in bodies {
            let fast: Result<Case, DecodeError> = decode_json(body);
            assert_eq!(
                fast,
                tracked::<Case>(body),
                "{}",
                String::from_utf8_lossy(body)
            );
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
                let fast: Result<Case, DecodeError> = decode_value(value.clone());
                let slow: Result<Case, DecodeError> =
                    serde_path_to_error::deserialize(value).map_err(|e| describe(&e));
                assert_eq!(fast, slow, "{}", String::from_utf8_lossy(body));
            }
        }
        // The failures above are described with their path, never a value.
        let err = decode_json::<Case>(br#"{"id":"a","amount":"Jane Doe"}"#).unwrap_err();
        assert_eq!(
            (err.path.as_str(), err.problem),
            ("amount", DecodeProblem::InvalidType)
        );
        assert!(!err.to_string().contains("Jane"));
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Patient {
        name: String,
        visits: Vec<Visit>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Visit {
        day: u32,
        note: String,
    }

    #[test]
    fn a_decode_error_names_the_field_path_and_not_the_value() {
        // Arrange
        let body =
            br#"{"name":"Jane Roe","visits":[{"day":1,"note":"x"},{"day":"Jane Roe","note":"y"}]}"#;

        // Act
        let err = decode_json::<Patient>(body).unwrap_err();
        let shown = format!("{err} {err:?}");

        // Assert
        assert_eq!(err.path, "visits[1].day");
        assert_eq!(err.problem, DecodeProblem::InvalidType);
        assert!(!shown.contains("Jane"), "{shown}");
    }

    #[test]
    fn a_missing_field_is_named_with_its_full_path() {
        // Act
        let err = decode_json::<Patient>(br#"{"name":"Jane","visits":[{"day":1}]}"#).unwrap_err();

        // Assert
        assert_eq!(err.path, "visits[0].note");
        assert_eq!(err.problem, DecodeProblem::Missing);
    }

    #[test]
    fn a_value_decoded_on_its_own_is_named_under_its_parent_path() {
        // Arrange
        let object = serde_json::json!({"name":"Jane","visits":[{"day":"Zebulon-991","note":"x"}]});
        let list = serde_json::json!([{"day":1}]);

        // Act
        let field = decode_value::<Patient>(object)
            .unwrap_err()
            .nested_in("data.object");
        let whole = decode_value::<Patient>(serde_json::json!("Zebulon-991"))
            .unwrap_err()
            .nested_in("data.object");
        let row = decode_value::<Vec<Visit>>(list)
            .unwrap_err()
            .nested_in("data.rows");

        // Assert
        assert_eq!(field.path, "data.object.visits[0].day");
        assert_eq!(whole.path, "data.object");
        assert_eq!(row.path, "data.rows[0].note");
        assert!(!format!("{field} {whole}").contains("Zebulon"));
    }

    #[test]
    fn a_body_that_is_not_json_is_a_syntax_problem_at_the_body() {
        // Act
        let err = decode_json::<Patient>(b"<html>Jane</html>").unwrap_err();

        // Assert
        assert_eq!(err.problem, DecodeProblem::Syntax);
        assert!(!err.to_string().contains("Jane"));
    }
}
