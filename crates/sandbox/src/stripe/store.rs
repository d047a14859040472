//! Stripe objects in memory, errors and parameter helpers.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use crate::persona::TestCard;

/// One resource type: rows by id, plus creation order (lists are newest first).
#[derive(Debug, Default)]
pub(crate) struct Table {
    order: Vec<String>,
    rows: HashMap<String, Value>,
}

impl Table {
    pub(crate) fn insert(&mut self, obj: Value) {
        let id = obj["id"].as_str().unwrap_or_default().to_owned();
        if self.rows.insert(id.clone(), obj).is_none() {
            self.order.push(id);
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Value> {
        self.rows.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.rows.get_mut(id)
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.rows.contains_key(id)
    }

    /// Newest first.
    pub(crate) fn newest_first(&self) -> impl Iterator<Item = &Value> {
        self.order.iter().rev().filter_map(|id| self.rows.get(id))
    }

    /// Oldest first.
    pub(crate) fn oldest_first(&self) -> impl Iterator<Item = &Value> {
        self.order.iter().filter_map(|id| self.rows.get(id))
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.order.clone()
    }
}

/// One installment of a schedule: what is billed, for which period.
#[derive(Clone, Debug)]
pub(crate) struct Installment {
    pub(crate) phase: usize,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) period_start: i64,
    pub(crate) period_end: i64,
    /// `(price id, quantity, amount)` lines: items, plus add_invoice_items on a phase's first.
    pub(crate) lines: Vec<(String, i64, i64)>,
}

/// Billing progress of one schedule.
#[derive(Clone, Debug, Default)]
pub(crate) struct Billing {
    pub(crate) installments: Vec<Installment>,
    pub(crate) next: usize,
}

/// Everything the Stripe stand-in holds.
#[derive(Debug)]
pub(crate) struct StripeData {
    pub(crate) rng: StdRng,
    pub(crate) customers: Table,
    pub(crate) products: Table,
    pub(crate) prices: Table,
    pub(crate) schedules: Table,
    pub(crate) subscriptions: Table,
    pub(crate) sessions: Table,
    pub(crate) session_lines: HashMap<String, Vec<Value>>,
    /// `payment_intent_data` of each session, applied when it is paid.
    pub(crate) session_pi_data: HashMap<String, Value>,
    pub(crate) payment_intents: Table,
    pub(crate) payment_methods: Table,
    pub(crate) setup_intents: Table,
    pub(crate) charges: Table,
    pub(crate) invoices: Table,
    pub(crate) refunds: Table,
    pub(crate) events: Table,
    pub(crate) billing: HashMap<String, Billing>,
    /// Card behaviour behind each payment method.
    pub(crate) cards: HashMap<String, TestCard>,
    /// Paid invoices per (schedule, installment index).
    pub(crate) installment_charges: BTreeMap<(String, u32), u32>,
    /// Which installment each invoice bills.
    pub(crate) invoice_installments: HashMap<String, (String, u32)>,
    /// Events created since the last drain, to deliver.
    pub(crate) outbox: Vec<String>,
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl StripeData {
    pub(crate) fn new(rng: StdRng) -> Self {
        Self {
            rng,
            customers: Table::default(),
            products: Table::default(),
            prices: Table::default(),
            schedules: Table::default(),
            subscriptions: Table::default(),
            sessions: Table::default(),
            session_lines: HashMap::new(),
            session_pi_data: HashMap::new(),
            payment_intents: Table::default(),
            payment_methods: Table::default(),
            setup_intents: Table::default(),
            charges: Table::default(),
            invoices: Table::default(),
            refunds: Table::default(),
            events: Table::default(),
            billing: HashMap::new(),
            cards: HashMap::new(),
            installment_charges: BTreeMap::new(),
            invoice_installments: HashMap::new(),
            outbox: Vec::new(),
        }
    }

    /// A new id like Stripe's: prefix plus random base62.
    pub(crate) fn id(&mut self, prefix: &str) -> String {
        let len = if prefix.starts_with("cs_") { 58 } else { 24 };
        let mut s = String::with_capacity(prefix.len() + len);
        s.push_str(prefix);
        for _ in 0..len {
            s.push(BASE62[self.rng.gen_range(0..BASE62.len())] as char);
        }
        s
    }

    /// Stores an event and queues it for delivery; returns its id.
    pub(crate) fn event(
        &mut self,
        kind: &str,
        object: Value,
        idempotency_key: Option<&str>,
    ) -> String {
        let id = self.id("evt_");
        let mut ev = json!({
            "id": id,
            "object": "event",
            "api_version": super::API_VERSION,
            "created": now(),
            "data": {"object": null},
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": idempotency_key},
            "type": kind,
        });
        ev["data"]["object"] = object;
        self.events.insert(ev);
        self.outbox.push(id.clone());
        id
    }

    /// Finds any object by id, whatever its type (for `expand[]`).
    pub(crate) fn lookup(&self, id: &str) -> Option<&Value> {
        [
            &self.customers,
            &self.products,
            &self.prices,
            &self.schedules,
            &self.subscriptions,
            &self.sessions,
            &self.payment_intents,
            &self.payment_methods,
            &self.setup_intents,
            &self.charges,
            &self.invoices,
            &self.refunds,
        ]
        .into_iter()
        .find_map(|t| t.get(id))
    }
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An error answer, and whether an idempotency key keeps it (execution had started).
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) store: bool,
}

impl ApiError {
    /// 400 `invalid_request_error` naming `param`. Validation: not stored under a key.
    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": {
                "type": "invalid_request_error",
                "param": param,
                "message": message.into(),
                "request_log_url": null,
            }}),
            store: false,
        }
    }

    /// 400 with a `code`.
    pub(crate) fn invalid_code(param: &str, code: &str, message: impl Into<String>) -> Self {
        let mut e = Self::invalid(param, message);
        e.body["error"]["code"] = json!(code);
        e
    }

    /// 400 `parameter_unknown`.
    pub(crate) fn unknown_param(param: &str) -> Self {
        Self::invalid_code(
            param,
            "parameter_unknown",
            format!("Received unknown parameter: {param}"),
        )
    }

    /// 400 `parameter_missing`.
    pub(crate) fn missing_param(param: &str) -> Self {
        Self::invalid_code(
            param,
            "parameter_missing",
            format!("Missing required param: {param}."),
        )
    }

    /// A referenced object does not exist (400, `resource_missing`).
    pub(crate) fn no_such(param: &str, kind: &str, id: &str) -> Self {
        Self::invalid_code(param, "resource_missing", format!("No such {kind}: '{id}'"))
    }

    /// The object in the path does not exist (404, `resource_missing`).
    pub(crate) fn not_found(kind: &str, id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "id",
                "message": format!("No such {kind}: '{id}'"),
            }}),
            store: false,
        }
    }

    /// A route Stripe does not have.
    pub(crate) fn unrecognized(method: &str, path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": {
                "type": "invalid_request_error",
                "message": format!("Unrecognized request URL ({method}: {path})."),
            }}),
            store: false,
        }
    }

    /// 400 for an object in the wrong state. Execution started: stored.
    pub(crate) fn unexpected_state(code: &str, message: impl Into<String>) -> Self {
        let mut e = Self::invalid_code("", code, message);
        e.body["error"].as_object_mut().map(|o| o.remove("param"));
        e.store = true;
        e
    }
}

/// Reads a tree of decoded form params.
pub(crate) struct Params<'a>(pub(crate) &'a Value);

impl<'a> Params<'a> {
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    /// A non-empty string.
    pub(crate) fn str(&self, key: &str) -> Option<&'a str> {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn required(&self, key: &str, param: &str) -> Result<&'a str, ApiError> {
        self.str(key).ok_or_else(|| ApiError::missing_param(param))
    }

    pub(crate) fn int(&self, key: &str, param: &str) -> Result<Option<i64>, ApiError> {
        match self.str(key) {
            None => Ok(None),
            Some(s) => s
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::invalid(param, format!("Invalid integer: {s}"))),
        }
    }

    pub(crate) fn bool(&self, key: &str, param: &str) -> Result<Option<bool>, ApiError> {
        match self.str(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(s) => Err(ApiError::invalid(param, format!("Invalid boolean: {s}"))),
        }
    }

    pub(crate) fn child(&self, key: &str) -> Params<'a> {
        static NULL: Value = Value::Null;
        Params(self.0.get(key).unwrap_or(&NULL))
    }

    pub(crate) fn list(&self, key: &str) -> Vec<&'a Value> {
        match self.0.get(key) {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some()
    }
}

/// Validates `metadata[…]` (≤50 keys, key ≤40 characters, value ≤500) and returns it with empty
/// values dropped (an empty value unsets a key).
pub(crate) fn metadata(param: &str, v: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    let Some(v) = v else {
        return Ok(out);
    };
    let Some(map) = v.as_object() else {
        if v.as_str() == Some("") {
            return Ok(out);
        }
        return Err(ApiError::invalid(param, "Invalid object"));
    };
    if map.len() > 50 {
        return Err(ApiError::invalid(
            param,
            "Invalid metadata: metadata can have up to 50 keys",
        ));
    }
    for (k, val) in map {
        let Some(s) = val.as_str() else {
            return Err(ApiError::invalid(
                &format!("{param}[{k}]"),
                "Invalid string",
            ));
        };
        if k.chars().count() > 40 {
            return Err(ApiError::invalid(
                param,
                "Invalid metadata: keys can be up to 40 characters long",
            ));
        }
        if s.chars().count() > 500 {
            return Err(ApiError::invalid(
                &format!("{param}[{k}]"),
                "Invalid metadata: values can be up to 500 characters long",
            ));
        }
        if !s.is_empty() {
            out.insert(k.clone(), Value::String(s.to_owned()));
        }
    }
    Ok(out)
}

/// Merges an update's `metadata[…]` into `current`: empty values delete keys.
pub(crate) fn merge_metadata(current: &mut Value, update: &Value) -> Result<(), ApiError> {
    let Some(map) = update.as_object() else {
        if update.as_str() == Some("") {
            *current = json!({});
            return Ok(());
        }
        return Err(ApiError::invalid("metadata", "Invalid object"));
    };
    if !current.is_object() {
        *current = json!({});
    }
    let Some(cur) = current.as_object_mut() else {
        return Ok(());
    };
    for (k, v) in map {
        match v.as_str() {
            Some("") => {
                cur.remove(k);
            }
            Some(s) => {
                cur.insert(k.clone(), json!(s));
            }
            None => {
                return Err(ApiError::invalid(
                    &format!("metadata[{k}]"),
                    "Invalid string",
                ));
            }
        }
    }
    if cur.len() > 50 {
        return Err(ApiError::invalid(
            "metadata",
            "Invalid metadata: metadata can have up to 50 keys",
        ));
    }
    Ok(())
}

/// A Stripe list object over `rows` (already filtered, newest first), honouring `limit`,
/// `starting_after` and `ending_before`.
pub(crate) fn list(url: &str, rows: Vec<Value>, p: &Params<'_>) -> Result<Value, ApiError> {
    let limit = p.int("limit", "limit")?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "This value must be between 1 and 100.",
        ));
    }
    let limit = usize::try_from(limit).unwrap_or(10);
    let mut rows = rows;
    if let Some(after) = p.str("starting_after") {
        let pos = rows
            .iter()
            .position(|r| r["id"] == after)
            .ok_or_else(|| ApiError::no_such("starting_after", "object", after))?;
        rows.drain(..=pos);
    } else if let Some(before) = p.str("ending_before") {
        let pos = rows
            .iter()
            .position(|r| r["id"] == before)
            .ok_or_else(|| ApiError::no_such("ending_before", "object", before))?;
        rows.truncate(pos);
        let skip = rows.len().saturating_sub(limit);
        rows.drain(..skip);
    }
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    Ok(json!({"object": "list", "data": rows, "has_more": has_more, "url": url}))
}

/// Integer minor units as `"$12.34"` (for pages; USD-style two decimals).
pub(crate) fn display_amount(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    if currency.eq_ignore_ascii_case("usd") {
        format!("{sign}${}.{:02}", c / 100, c % 100)
    } else {
        format!(
            "{sign}{}.{:02} {}",
            c / 100,
            c % 100,
            currency.to_ascii_uppercase()
        )
    }
}
