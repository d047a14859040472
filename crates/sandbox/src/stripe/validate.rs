//! Parameter validation as Stripe does it before anything executes: an unknown parameter, a value
//! of the wrong type, an enum value the API does not know or a missing required parameter is a
//! 400 `invalid_request_error` naming the parameter, and nothing happens.
//!
//! The table (`params.json`) holds, per endpoint the stand-in serves, the parameters API
//! `2026-10-28.endive` accepts, generated from the official Stripe SDK's types by
//! `scripts/stripe-params.py` (the same oracle `conformance.py` checks our requests against).
//! Schema nodes: `"s"` string, `"i"` integer, `"b"` boolean, `"f"` decimal, `{"e": [..]}` enum,
//! `{"o": {..}, "r": [..]}` object with required names, `{"l": ..}` list, `{"m": ..}` map
//! (metadata), `{"u": [..]}` any of.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::store::ApiError;

const TABLE: &str = include_str!("params.json");

/// `(method, path segments, schema)` per endpoint, literal segments before `{placeholders}`.
type Routes = Vec<(String, Vec<String>, Value)>;

fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let table: Map<String, Value> = serde_json::from_str(TABLE).unwrap_or_default();
        let mut out: Routes = table
            .into_iter()
            .filter_map(|(k, v)| {
                let (method, path) = k.split_once(' ')?;
                let segs = path
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_owned)
                    .collect();
                Some((method.to_owned(), segs, v))
            })
            .collect();
        out.sort_by_key(|(_, segs, _)| segs.iter().filter(|s| s.starts_with('{')).count());
        out
    })
}

fn schema_for(method: &str, segs: &[&str]) -> Option<&'static Value> {
    routes().iter().find_map(|(m, pattern, schema)| {
        let fits = m == method
            && pattern.len() == segs.len()
            && pattern
                .iter()
                .zip(segs)
                .all(|(p, s)| p.starts_with('{') || p == s);
        fits.then_some(schema)
    })
}

/// Checks `params` (the decoded form or query) against what the endpoint accepts. An endpoint
/// the table does not know passes (the router answers it).
pub(crate) fn check(method: &str, segs: &[&str], params: &Value) -> Result<(), ApiError> {
    let Some(schema) = schema_for(method, segs) else {
        return Ok(());
    };
    match params {
        Value::Object(map) => object("", schema, map),
        _ => Ok(()),
    }
}

fn label(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}[{name}]")
    }
}

fn object(at: &str, schema: &Value, given: &Map<String, Value>) -> Result<(), ApiError> {
    let fields = schema.get("o").and_then(Value::as_object);
    for (name, value) in given {
        let here = label(at, name);
        let Some(field) = fields.and_then(|f| f.get(name)) else {
            return Err(ApiError::unknown_param(&here));
        };
        node(&here, field, value)?;
    }
    if let Some(required) = schema.get("r").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !given.contains_key(name) {
                return Err(ApiError::missing_param(&label(at, name)));
            }
        }
    }
    Ok(())
}

/// The alternatives of a node (a union's members, or the node itself).
fn kinds(schema: &Value) -> Vec<&Value> {
    match schema.get("u").and_then(Value::as_array) {
        Some(all) => all.iter().collect(),
        None => vec![schema],
    }
}

fn node(at: &str, schema: &Value, value: &Value) -> Result<(), ApiError> {
    let kinds = kinds(schema);
    match value {
        // An empty string unsets an optional value, whatever its type.
        Value::String(s) if s.is_empty() => Ok(()),
        Value::String(s) => leaf(at, &kinds, s),
        Value::Array(items) => {
            let Some(inner) = kinds.iter().find_map(|k| k.get("l")) else {
                return Err(ApiError::invalid(at, "Invalid array"));
            };
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| node(&format!("{at}[{i}]"), inner, item))
        }
        Value::Object(map) => {
            if let Some(obj) = kinds.iter().find(|k| k.get("o").is_some()) {
                return object(at, obj, map);
            }
            if let Some(inner) = kinds.iter().find_map(|k| k.get("m")) {
                return map
                    .iter()
                    .try_for_each(|(k, v)| node(&format!("{at}[{k}]"), inner, v));
            }
            if let Some(inner) = kinds.iter().find_map(|k| k.get("l")) {
                // `items[1]=x` alone decodes to a map with one index; a list all the same.
                return map
                    .iter()
                    .try_for_each(|(k, v)| node(&format!("{at}[{k}]"), inner, v));
            }
            Err(ApiError::invalid(at, "Invalid hash"))
        }
        _ => Ok(()),
    }
}

fn leaf(at: &str, kinds: &[&Value], s: &str) -> Result<(), ApiError> {
    let mut expected = None;
    let mut allowed: Vec<&str> = Vec::new();
    for kind in kinds {
        match kind.as_str() {
            Some("s") => return Ok(()),
            Some("i") if is_integer(s) => return Ok(()),
            Some("f") if is_decimal(s) => return Ok(()),
            Some("b") if s == "true" || s == "false" => return Ok(()),
            Some("i") => expected = Some("integer"),
            Some("f") => expected = Some("decimal"),
            Some("b") => expected = Some("boolean"),
            _ => {}
        }
        if let Some(values) = kind.get("e").and_then(Value::as_array) {
            if values.iter().any(|v| v == s) {
                return Ok(());
            }
            allowed.extend(values.iter().filter_map(Value::as_str));
        }
    }
    if let Some(expected) = expected {
        return Err(ApiError::invalid(at, format!("Invalid {expected}: {s}")));
    }
    if !allowed.is_empty() {
        return Err(ApiError::invalid(
            at,
            format!("Invalid {at}: must be one of {}", allowed.join(", ")),
        ));
    }
    if kinds.iter().any(|k| k.get("l").is_some()) {
        return Err(ApiError::invalid(at, "Invalid array"));
    }
    Err(ApiError::invalid(at, "Invalid hash"))
}

fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    match body.split_once('.') {
        Some((a, b)) => is_integer(a) && is_integer(b),
        None => is_integer(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::decode;

    fn run(method: &str, path: &str, body: &str) -> Result<(), Value> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        check(method, &segs, &decode(body)).map_err(|e| e.body["error"].clone())
    }

    #[test]
    fn every_endpoint_of_the_table_parses() {
        assert!(routes().len() >= 39, "{}", routes().len());
    }

    #[test]
    fn an_unknown_top_level_parameter_is_parameter_unknown() {
        let err = run("POST", "/v1/customers", "email=a%40example.test&colour=red").unwrap_err();
        assert_eq!(err["type"], "invalid_request_error");
        assert_eq!(err["code"], "parameter_unknown");
        assert_eq!(err["param"], "colour");
        assert_eq!(err["message"], "Received unknown parameter: colour");
    }

    #[test]
    fn an_unknown_nested_parameter_names_its_full_path() {
        let body = "customer=cus_1&phases[0][items][0][price]=price_1&phases[0][iterations]=3";
        let err = run("POST", "/v1/subscription_schedules", body).unwrap_err();
        assert_eq!(err["code"], "parameter_unknown");
        assert_eq!(err["param"], "phases[0][iterations]");
    }

    #[test]
    fn a_malformed_integer_or_boolean_or_enum_is_refused() {
        let err = run(
            "POST",
            "/v1/payment_intents",
            "amount=12.5&currency=usd&off_session=true",
        )
        .unwrap_err();
        assert_eq!(err["param"], "amount");
        assert_eq!(err["message"], "Invalid integer: 12.5");
        let err = run(
            "POST",
            "/v1/payment_intents",
            "amount=1250&currency=usd&confirm=yes",
        )
        .unwrap_err();
        assert_eq!(err["message"], "Invalid boolean: yes");
        // `start_date` is an integer or `now`.
        let body = "customer=cus_1&start_date=tomorrow&phases[0][items][0][price]=price_1";
        let err = run("POST", "/v1/subscription_schedules", body).unwrap_err();
        assert_eq!(err["param"], "start_date");
        assert_eq!(err["message"], "Invalid integer: tomorrow");
        // A closed enum (most of the SDK's enums are open, `Literal[..] | str`).
        let body =
            "amount=100&currency=usd&payment_method_options[card_present][capture_method]=later";
        let err = run("POST", "/v1/payment_intents", body).unwrap_err();
        assert_eq!(
            err["param"],
            "payment_method_options[card_present][capture_method]"
        );
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("manual_preferred"),
            "{err}"
        );
    }

    #[test]
    fn a_value_where_a_hash_is_expected_is_refused() {
        let err = run(
            "POST",
            "/v1/customers",
            "email=a%40example.test&metadata=x&address=y",
        )
        .unwrap_err();
        assert_eq!(err["message"], "Invalid hash");
    }

    #[test]
    fn a_missing_required_parameter_is_parameter_missing() {
        let err = run("POST", "/v1/payment_intents", "currency=usd").unwrap_err();
        assert_eq!(err["code"], "parameter_missing");
        assert_eq!(err["param"], "amount");
    }

    #[test]
    fn what_stripe_accepts_passes() {
        run(
            "POST",
            "/v1/checkout/sessions",
            "mode=setup&customer=cus_1&currency=usd&success_url=https%3A%2F%2Fx.test%2F&metadata[wf]=1&expand[]=setup_intent",
        )
        .unwrap();
        run(
            "POST",
            "/v1/payment_intents",
            "amount=1250&currency=usd&customer=cus_1&payment_method=pm_1&off_session=true&confirm=true&metadata[k]=v",
        )
        .unwrap();
        run("GET", "/v1/customers/cus_1", "expand[]=default_source").unwrap();
        run(
            "GET",
            "/v1/customers/search",
            "query=metadata%5B%27p%27%5D%3A%271%27",
        )
        .unwrap();
        // An empty value unsets, whatever the type.
        run("POST", "/v1/customers/cus_1", "metadata=").unwrap();
    }

    #[test]
    fn a_route_outside_the_table_is_left_to_the_router() {
        run("POST", "/v1/unheard_of", "anything=1").unwrap();
    }
}
