//! The NexHealth stand-in, from `nexhealth-client`'s `wire` module: `/authenticates` (API key to
//! JWT), `subdomain` scope, `{code, data, count, page_info}` envelopes, treatment plans with
//! `updated_since` and cursor paging, patients, webhook endpoints and subscriptions (deliveries
//! signed with the endpoint's secret in `X-NexHealth-Signature`), and asynchronous communication
//! logs (202, then `foreign_id` and a `communication_log_insertion.complete` event), and ledger
//! payments (`POST /payments`, 202; listed by `GET /payments` once written to the EHR).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use url::Url;

use super::{bearer, cents_text};
use crate::fault::System;
use crate::hub::Hub;
use crate::persona::Pms;
use crate::webhook::{Outgoing, Signer};
use crate::world::{NoteKind, PatientRecord, PlanRecord, PlanStatus};

/// How long a communication log waits before NexHealth reports it written to the EHR.
const WRITE_LAG: Duration = Duration::from_millis(50);

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Clone, Debug)]
struct Endpoint {
    id: u64,
    target_url: String,
    secret_key: String,
    active: bool,
    /// (subscription id, resource type, event)
    subscriptions: Vec<(u64, String, String)>,
}

#[derive(Clone, Debug)]
struct CommLog {
    id: u64,
    patient_id: String,
    note: String,
    foreign_id: Option<String>,
}

/// A ledger payment (or refund) requested through `POST /payments`.
#[derive(Clone, Debug)]
struct LedgerPayment {
    id: u64,
    patient_id: String,
    transaction_id: String,
    /// As NexHealth's ledger holds it: a payment negative, a refund positive.
    signed_cents: i64,
    /// Written to the EHR (after [`WRITE_LAG`]): only then does `GET /payments` list it.
    in_ehr: bool,
}

#[derive(Debug, Default)]
struct NexData {
    next_id: u64,
    next_delivery: u64,
    endpoints: Vec<Endpoint>,
    logs: Vec<CommLog>,
    payments: Vec<LedgerPayment>,
}

/// NexHealth's own state.
#[derive(Default)]
pub(crate) struct NexState {
    data: Mutex<NexData>,
}

impl fmt::Debug for NexState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NexState").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": false, "description": [], "error": [message], "data": null})),
    )
        .into_response()
}

fn ok(data: Value) -> Value {
    let mut body = json!({"code": true, "description": [], "error": [], "data": null});
    body["data"] = data;
    body
}

fn num(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}

fn status_value(s: PlanStatus) -> &'static str {
    match s {
        PlanStatus::Proposed => "proposed",
        PlanStatus::Accepted => "accepted",
        PlanStatus::Rejected => "rejected",
        PlanStatus::Completed => "completed",
    }
}

fn plan_json(plan: &PlanRecord, location: u64) -> Value {
    let procedures: Vec<Value> = plan
        .seed
        .procedures
        .iter()
        .zip(&plan.procedure_ids)
        .map(|(p, id)| {
            let day = plan
                .seed
                .treatment_date
                .map(|d| d.format("%Y-%m-%d").to_string());
            json!({
                "id": num(id),
                "code": p.code,
                "name": p.description,
                "status": if plan.appointment_id.is_some() { "scheduled" } else { "planned" },
                "body_site": {"tooth": p.tooth.iter().collect::<Vec<_>>(), "surface": null},
                "fee": {"amount": cents_text(p.fee.minor()), "currency": "USD"},
                "provider_id": 1,
                "appointment_id": plan.appointment_id.as_deref().map(num),
                "start_date": day,
                "end_date": day,
            })
        })
        .collect();
    json!({
        "id": num(&plan.pms_id),
        "name": plan.seed.name,
        "patient_id": num(&plan.patient_pms_id),
        "location_id": location,
        "status": status_value(plan.status),
        "created_at": iso(plan.created),
        "updated_at": iso(plan.modified),
        "procedures": procedures,
    })
}

fn patient_json(p: &PatientRecord, location: u64) -> Value {
    let s = &p.seed;
    json!({
        "id": num(&p.pms_id),
        "first_name": s.first_name,
        "last_name": s.last_name,
        "name": format!("{} {}", s.first_name, s.last_name),
        "email": s.email,
        "location_ids": [location],
        "preferred_language": "en",
        "bio": {
            "date_of_birth": s.date_of_birth.map(|d| d.format("%Y-%m-%d").to_string()),
            "cell_phone_number": s.mobile_phone,
            "phone_number": s.home_phone,
            "address_line_1": s.address.line1,
            "address_line_2": null,
            "city": s.address.city,
            "state": s.address.state,
            "zip_code": s.address.postal_code,
        },
        "updated_at": iso(p.modified),
    })
}

/// The router.
pub(crate) fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/authenticates", post(authenticate))
        .route("/treatment_plans", get(list_plans))
        .route("/treatment_plans/{id}", get(get_plan))
        .route("/patients", get(search_patients).post(create_patient))
        .route("/patients/{id}", get(get_patient))
        .route(
            "/webhook_endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/webhook_endpoints/{id}/webhook_subscriptions",
            post(create_subscription),
        )
        .route("/communication_logs", get(list_logs).post(create_log))
        .route("/communication_logs/{id}", get(get_log))
        .route("/payments", get(list_payments).post(create_payment))
        .with_state(hub)
}

async fn authenticate(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let cfg = &hub.config.nexhealth;
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if key != Some(cfg.api_key.expose_secret()) {
        return fail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let tokens = &hub.pms.nexhealth_tokens;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = Utc::now().timestamp() + i64::try_from(cfg.token_ttl.as_secs()).unwrap_or(3600);
    let token = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT"})),
        b64(&json!({"exp": exp, "sub": "sandbox", "subdomain": cfg.subdomain})),
        tokens.random_hex(16)
    );
    tokens.insert(token.clone(), cfg.token_ttl);
    axum::Json(ok(json!({"token": token}))).into_response()
}

fn query_map(query: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn check(hub: &Hub, headers: &HeaderMap, q: &HashMap<String, String>) -> Option<Response> {
    if !bearer(headers).is_some_and(|t| hub.pms.nexhealth_tokens.valid(t)) {
        return Some(fail(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    match q.get("subdomain") {
        None => Some(fail(StatusCode::BAD_REQUEST, "subdomain is required")),
        Some(s) if *s != hub.config.nexhealth.subdomain => {
            Some(fail(StatusCode::FORBIDDEN, "no access to this subdomain"))
        }
        Some(_) => None,
    }
}

fn cursor_of(id: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("id:{id}"))
}

fn id_of_cursor(cursor: &str) -> Option<u64> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("id:")?
        .parse()
        .ok()
}

async fn list_plans(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    let since = match q.get("updated_since") {
        None => None,
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => return fail(StatusCode::BAD_REQUEST, "updated_since is not ISO 8601"),
        },
    };
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(5)
        .clamp(1, 1000);
    let after = match q.get("end_cursor") {
        None => None,
        Some(c) => match id_of_cursor(c) {
            Some(id) => Some(id),
            None => return fail(StatusCode::BAD_REQUEST, "invalid cursor"),
        },
    };
    let mut plans: Vec<PlanRecord> = hub
        .world
        .plans(Some(Pms::NexHealth))
        .into_iter()
        .filter(|p| since.is_none_or(|s| p.modified >= s))
        .filter(|p| q.get("status").is_none_or(|s| status_value(p.status) == s))
        .filter(|p| q.get("patient_id").is_none_or(|id| p.patient_pms_id == *id))
        .collect();
    plans.sort_by_key(|p| p.pms_id.parse::<u64>().unwrap_or(0));
    let count = plans.len();
    let had_before = after.is_some();
    if let Some(after) = after {
        plans.retain(|p| p.pms_id.parse::<u64>().unwrap_or(0) > after);
    }
    let has_next = plans.len() > per_page;
    plans.truncate(per_page);
    let location = hub.config.nexhealth.location_id;
    let mut data: Vec<Value> = plans
        .iter()
        .map(|p| {
            hub.pms
                .listed(Pms::NexHealth, &p.pms_id, plan_json(p, location))
        })
        .collect();
    if !had_before {
        // Hostile rows a test asked for, on the first page.
        data.extend(hub.pms.extra_rows(Pms::NexHealth));
    }
    axum::Json(json!({
        "code": true,
        "description": [],
        "error": [],
        "data": data,
        "count": count,
        "page_info": {
            "has_next_page": has_next,
            "has_previous_page": had_before,
            "start_cursor": plans.first().map(|p| cursor_of(&p.pms_id)),
            "end_cursor": plans.last().map(|p| cursor_of(&p.pms_id)),
        },
    }))
    .into_response()
}

async fn get_plan(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    match hub
        .world
        .plans(Some(Pms::NexHealth))
        .into_iter()
        .find(|p| p.pms_id == id)
    {
        Some(p) => axum::Json(ok(plan_json(&p, hub.config.nexhealth.location_id))).into_response(),
        None => fail(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn get_patient(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    match hub.world.patient_by_pms_id(Pms::NexHealth, &id) {
        Some(p) => {
            axum::Json(ok(patient_json(&p, hub.config.nexhealth.location_id))).into_response()
        }
        None => fail(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// `GET /patients?name=&date_of_birth=`: the find step of NexHealth's find-or-create recipe.
async fn search_patients(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    let name = q.get("name").map(|n| n.trim().to_lowercase());
    let dob = q.get("date_of_birth").cloned();
    let rows: Vec<Value> = hub
        .world
        .patients(Some(Pms::NexHealth))
        .iter()
        .filter(|p| {
            let full = format!("{} {}", p.seed.first_name, p.seed.last_name).to_lowercase();
            name.as_ref().is_none_or(|n| full.contains(n.as_str()))
                && dob.as_ref().is_none_or(|d| {
                    p.seed
                        .date_of_birth
                        .map(|b| b.format("%Y-%m-%d").to_string())
                        .as_ref()
                        == Some(d)
                })
        })
        .map(|p| patient_json(p, hub.config.nexhealth.location_id))
        .collect();
    axum::Json(json!({"code": true, "data": rows, "page_info": {"has_next_page": false}}))
        .into_response()
}

/// `POST /patients`: `patient.first_name`, `last_name`, `email`, `bio.date_of_birth`,
/// `bio.phone_number` required; with `return_existing_if_match=true` a patient with the same
/// name and date of birth is answered with 200 instead of a second one being created (201).
async fn create_patient(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let p = &req["patient"];
    let text = |v: &Value| v.as_str().map(str::trim).unwrap_or_default().to_owned();
    let (first, last) = (text(&p["first_name"]), text(&p["last_name"]));
    let email = text(&p["email"]);
    let dob = text(&p["bio"]["date_of_birth"]);
    let phone = text(&p["bio"]["phone_number"]);
    if first.is_empty() || last.is_empty() || email.is_empty() || dob.is_empty() || phone.is_empty()
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "first_name, last_name, email, bio.date_of_birth and bio.phone_number are required",
        );
    }
    let Ok(dob) = chrono::NaiveDate::parse_from_str(&dob, "%Y-%m-%d") else {
        return fail(StatusCode::BAD_REQUEST, "bio.date_of_birth is invalid");
    };
    // NX-spec: `provider.provider_id` is required, and must be one of the location's providers.
    let provider = match &req["provider"]["provider_id"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match provider {
        None => return fail(StatusCode::BAD_REQUEST, "provider.provider_id is required"),
        Some(id) if id != hub.config.nexhealth.provider_id => {
            return fail(
                StatusCode::BAD_REQUEST,
                "provider.provider_id is not a provider of this location",
            );
        }
        Some(_) => {}
    }
    let location = hub.config.nexhealth.location_id;
    if req["return_existing_if_match"].as_bool() == Some(true)
        && let Some(existing) = hub
            .world
            .patients(Some(Pms::NexHealth))
            .into_iter()
            .find(|r| {
                r.seed.first_name.eq_ignore_ascii_case(&first)
                    && r.seed.last_name.eq_ignore_ascii_case(&last)
                    && r.seed.date_of_birth == Some(dob)
            })
    {
        return axum::Json(ok(json!({"user": patient_json(&existing, location)}))).into_response();
    }
    let cell = Some(text(&p["bio"]["cell_phone_number"])).filter(|c| !c.is_empty());
    let created = hub.world.create_patient(
        Pms::NexHealth,
        &first,
        &last,
        Some(dob),
        cell.or(Some(phone)),
        Some(email),
        &text(&p["bio"]["state"]),
    );
    (
        StatusCode::CREATED,
        axum::Json(ok(json!({"user": patient_json(&created, location)}))),
    )
        .into_response()
}

fn endpoint_json(e: &Endpoint) -> Value {
    json!({
        "id": e.id,
        "target_url": e.target_url,
        "secret_key": e.secret_key,
        "active": e.active,
        "created_at": iso(Utc::now()),
    })
}

async fn list_endpoints(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(query);
    // Webhook endpoints belong to the API key, not a subdomain: only the token is checked.
    if !bearer(&headers).is_some_and(|t| hub.pms.nexhealth_tokens.valid(t)) {
        return fail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let _ = q;
    let list: Vec<Value> = lock(&hub.pms.nexhealth.data)
        .endpoints
        .iter()
        .map(endpoint_json)
        .collect();
    axum::Json(ok(json!(list))).into_response()
}

async fn create_endpoint(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    if !bearer(&headers).is_some_and(|t| hub.pms.nexhealth_tokens.valid(t)) {
        return fail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let Some(target) = req["target_url"].as_str().filter(|t| Url::parse(t).is_ok()) else {
        return fail(StatusCode::BAD_REQUEST, "target_url is required");
    };
    let secret = hub.pms.nexhealth_tokens.random_hex(16);
    let mut d = lock(&hub.pms.nexhealth.data);
    d.next_id += 1;
    let e = Endpoint {
        id: d.next_id,
        target_url: target.to_owned(),
        secret_key: secret,
        active: req["active"].as_bool().unwrap_or(true),
        subscriptions: Vec::new(),
    };
    let json = endpoint_json(&e);
    d.endpoints.push(e);
    (StatusCode::CREATED, axum::Json(ok(json))).into_response()
}

async fn create_subscription(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !bearer(&headers).is_some_and(|t| hub.pms.nexhealth_tokens.valid(t)) {
        return fail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let (Some(resource), Some(event)) = (req["resource_type"].as_str(), req["event"].as_str())
    else {
        return fail(
            StatusCode::BAD_REQUEST,
            "resource_type and event are required",
        );
    };
    let mut d = lock(&hub.pms.nexhealth.data);
    d.next_id += 1;
    let sub_id = d.next_id;
    let Some(e) = d.endpoints.iter_mut().find(|e| e.id == id) else {
        return fail(StatusCode::NOT_FOUND, "Not found");
    };
    e.subscriptions
        .push((sub_id, resource.to_owned(), event.to_owned()));
    (
        StatusCode::CREATED,
        axum::Json(ok(
            json!({"id": sub_id, "resource_type": resource, "event": event, "active": true}),
        )),
    )
        .into_response()
}

fn log_json(l: &CommLog) -> Value {
    json!({
        "id": l.id,
        "patient_id": num(&l.patient_id),
        "note": l.note,
        "foreign_id": l.foreign_id,
    })
}

async fn create_log(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let patient = match &req["patient_id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return fail(StatusCode::BAD_REQUEST, "patient_id is required"),
    };
    let Some(note) = req["note"].as_str().filter(|n| !n.trim().is_empty()) else {
        return fail(StatusCode::BAD_REQUEST, "note is required");
    };
    if hub
        .world
        .patient_by_pms_id(Pms::NexHealth, &patient)
        .is_none()
    {
        return fail(StatusCode::NOT_FOUND, "patient not found");
    }
    hub.world.add_note(
        Pms::NexHealth,
        NoteKind::CommunicationLog,
        &patient,
        note,
        None,
    );
    let log = {
        let mut d = lock(&hub.pms.nexhealth.data);
        d.next_id += 1;
        let log = CommLog {
            id: d.next_id,
            patient_id: patient,
            note: note.to_owned(),
            foreign_id: None,
        };
        d.logs.push(log.clone());
        log
    };
    // The write reaches the EHR a little later, as NexHealth's writes do.
    let bg = hub.clone();
    let id = log.id;
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(WRITE_LAG) => {}
            () = bg.shutdown.wait() => return,
        }
        let done = {
            let mut d = lock(&bg.pms.nexhealth.data);
            d.logs.iter_mut().find(|l| l.id == id).map(|l| {
                l.foreign_id = Some(format!("EHR-{id}"));
                l.clone()
            })
        };
        if let Some(l) = done {
            emit(
                &bg,
                "CommunicationLog",
                "communication_log_insertion.complete",
                &json!({"communication_log": log_json(&l)}),
            );
        }
    });
    (StatusCode::ACCEPTED, axum::Json(ok(log_json(&log)))).into_response()
}

async fn get_log(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    let found = lock(&hub.pms.nexhealth.data)
        .logs
        .iter()
        .find(|l| l.id == id)
        .cloned();
    match found {
        Some(l) => axum::Json(ok(log_json(&l))).into_response(),
        None => fail(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn list_logs(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    let list: Vec<Value> = lock(&hub.pms.nexhealth.data)
        .logs
        .iter()
        .filter(|l| q.get("patient_id").is_none_or(|p| l.patient_id == *p))
        .map(log_json)
        .collect();
    let count = list.len();
    let mut body = ok(json!(list));
    body["count"] = json!(count);
    axum::Json(body).into_response()
}

fn payment_json(p: &LedgerPayment) -> Value {
    json!({
        "id": p.id,
        "patient_id": num(&p.patient_id),
        "transaction_id": p.transaction_id,
        "payment_amount": {"amount": cents_text(p.signed_cents), "currency": "USD"},
        "deleted_at": null,
    })
}

/// `POST /payments`: `{payment: {patient_id, amount (decimal dollars, a JSON number; negative
/// for a payment), transaction_id (at most 50 characters), currency, paid_at, notes}}` → 202.
/// The payment reaches the EHR after [`WRITE_LAG`]; until then `GET /payments` does not list it.
async fn create_payment(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let p = &req["payment"];
    let patient = match &p["patient_id"] {
        Value::Number(n) => n.to_string(),
        _ => return fail(StatusCode::BAD_REQUEST, "payment.patient_id is required"),
    };
    let Value::Number(amount) = &p["amount"] else {
        return fail(StatusCode::BAD_REQUEST, "payment.amount must be a number");
    };
    let text = amount.to_string();
    let (negative, digits) = text
        .strip_prefix('-')
        .map_or((false, text.as_str()), |d| (true, d));
    let Some(cents) = crate::lenders::cents(digits).filter(|c| *c > 0) else {
        return fail(StatusCode::BAD_REQUEST, "payment.amount is invalid");
    };
    let signed_cents = if negative { -cents } else { cents };
    let Some(transaction_id) = p["transaction_id"]
        .as_str()
        .filter(|t| !t.trim().is_empty() && t.len() <= 50)
    else {
        return fail(
            StatusCode::BAD_REQUEST,
            "payment.transaction_id is required (at most 50 characters)",
        );
    };
    if hub
        .world
        .patient_by_pms_id(Pms::NexHealth, &patient)
        .is_none()
    {
        return fail(StatusCode::NOT_FOUND, "patient not found");
    }
    // The ledger line, as the other stand-ins record payments: a payment's amount positive.
    hub.world.add_note(
        Pms::NexHealth,
        NoteKind::Payment,
        &patient,
        p["notes"].as_str().unwrap_or(""),
        Some(-signed_cents),
    );
    let id = {
        let mut d = lock(&hub.pms.nexhealth.data);
        d.next_id += 1;
        let id = d.next_id;
        d.payments.push(LedgerPayment {
            id,
            patient_id: patient,
            transaction_id: transaction_id.to_owned(),
            signed_cents,
            in_ehr: false,
        });
        id
    };
    let bg = hub.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(WRITE_LAG) => {}
            () = bg.shutdown.wait() => return,
        }
        let mut d = lock(&bg.pms.nexhealth.data);
        if let Some(p) = d.payments.iter_mut().find(|p| p.id == id) {
            p.in_ehr = true;
        }
    });
    (StatusCode::ACCEPTED, axum::Json(ok(Value::Null))).into_response()
}

/// `GET /payments?patient_id=&transaction_id=`: the payments the EHR holds.
async fn list_payments(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query_map(query);
    if let Some(denied) = check(&hub, &headers, &q) {
        return denied;
    }
    let list: Vec<Value> = lock(&hub.pms.nexhealth.data)
        .payments
        .iter()
        .filter(|p| p.in_ehr)
        .filter(|p| q.get("patient_id").is_none_or(|v| p.patient_id == *v))
        .filter(|p| {
            q.get("transaction_id")
                .is_none_or(|v| p.transaction_id == *v)
        })
        .map(payment_json)
        .collect();
    let count = list.len();
    let mut body = ok(json!(list));
    body["count"] = json!(count);
    body["page_info"] = json!({"has_next_page": false, "has_previous_page": false});
    axum::Json(body).into_response()
}

/// Sends `event` to every active endpoint subscribed to it, signed with the endpoint's secret.
fn emit(hub: &Hub, resource_type: &str, event: &str, data: &Value) {
    let targets: Vec<(String, String, u64)> = {
        let mut d = lock(&hub.pms.nexhealth.data);
        let targets: Vec<(String, String)> = d
            .endpoints
            .iter()
            .filter(|e| e.active && e.subscriptions.iter().any(|s| s.2 == event))
            .map(|e| (e.target_url.clone(), e.secret_key.clone()))
            .collect();
        targets
            .into_iter()
            .map(|(u, k)| {
                d.next_delivery += 1;
                (u, k, d.next_delivery)
            })
            .collect()
    };
    for (target, secret, delivery) in targets {
        let Ok(url) = Url::parse(&target) else {
            continue;
        };
        let body = json!({
            "resource_type": resource_type,
            "event": event,
            "event_time": iso(Utc::now()),
            "delivery_id": delivery,
            "data": data,
        })
        .to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        hub.webhooks.enqueue(Outgoing {
            system: System::NexHealth,
            label: event.to_owned(),
            event_id: Some(delivery.to_string()),
            url,
            content_type: "application/json",
            body: body.into(),
            signer: Signer::Header("X-NexHealth-Signature".into(), signature),
        });
    }
}

/// A NexHealth plan changed (accepted, rejected, edited): `treatment_plan_updated`.
pub(crate) fn plan_changed(hub: &Hub, plan: &PlanRecord) {
    if plan.pms != Pms::NexHealth {
        return;
    }
    emit(
        hub,
        "TreatmentPlan",
        "treatment_plan_updated",
        &json!({"treatment_plan": plan_json(plan, hub.config.nexhealth.location_id)}),
    );
}
