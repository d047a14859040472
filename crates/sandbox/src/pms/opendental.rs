//! The Open Dental stand-in, from `opendental-client`'s `wire` module: `Authorization: ODFHIR
//! {developer}/{customer}`, PascalCase rows, string booleans and money, `Offset`/`Limit` paging,
//! `treatplans` (`SecDateTEdit`), `proctps`, `treatplanattaches`, `procedurelogs` (`DateTStamp`
//! with `serverDateTime`), `patients`, and synchronous `commlogs` and `payments`.
//!
//! Server times are written in UTC (a real office writes its local time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use super::cents_text;
use crate::hub::Hub;
use crate::persona::Pms;
use crate::world::{NoteKind, PatientRecord, PlanRecord, PlanStatus};

const NULL_DATE: &str = "0001-01-01";
const NULL_DATE_TIME: &str = "0001-01-01 00:00:00";

fn dt(t: DateTime<Utc>) -> String {
    t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn parse_dt(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
}

/// Open Dental answers errors with a JSON string.
fn fail(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!(message))).into_response()
}

fn num(id: &str) -> u64 {
    id.parse().unwrap_or(0)
}

/// Rows written through the API, kept in the shape Open Dental returns them.
#[derive(Debug, Default)]
pub(crate) struct OdState {
    commlogs: Mutex<Vec<Value>>,
    payments: Mutex<Vec<Value>>,
    /// Plans created through `POST /treatplans` (Inactive, as Open Dental creates them).
    written_plans: Mutex<Vec<Value>>,
    tamper: Mutex<OdTamper>,
}

/// How the `proctps` of a plan are answered instead of its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcTpsAnswer {
    /// The JSON body cut short.
    Truncated,
    /// This HTTP status with an error body.
    Status(u16),
}

/// Hostile data served on request, for tests of bad records: field overrides by `TreatPlanNum`
/// and `PatNum`, raw extra rows in the `treatplans` listing, and `proctps` answers.
#[derive(Debug, Default)]
struct OdTamper {
    plan_fields: HashMap<String, Map<String, Value>>,
    proc_fields: HashMap<String, Map<String, Value>>,
    patient_fields: HashMap<String, Map<String, Value>>,
    proctps: HashMap<String, ProcTpsAnswer>,
    extra_plan_rows: Vec<Value>,
}

impl OdState {
    pub(crate) fn override_plan(&self, plan_num: &str, field: &str, value: Value) {
        lock(&self.tamper)
            .plan_fields
            .entry(plan_num.to_owned())
            .or_default()
            .insert(field.to_owned(), value);
    }

    pub(crate) fn override_procedures(&self, plan_num: &str, field: &str, value: Value) {
        lock(&self.tamper)
            .proc_fields
            .entry(plan_num.to_owned())
            .or_default()
            .insert(field.to_owned(), value);
    }

    pub(crate) fn override_patient(&self, pat_num: &str, field: &str, value: Value) {
        lock(&self.tamper)
            .patient_fields
            .entry(pat_num.to_owned())
            .or_default()
            .insert(field.to_owned(), value);
    }

    pub(crate) fn answer_proctps(&self, plan_num: &str, answer: ProcTpsAnswer) {
        lock(&self.tamper)
            .proctps
            .insert(plan_num.to_owned(), answer);
    }

    pub(crate) fn extra_plan_row(&self, row: Value) {
        lock(&self.tamper).extra_plan_rows.push(row);
    }

    pub(crate) fn written_plans(&self) -> Vec<Value> {
        lock(&self.written_plans).clone()
    }
}

fn patched(mut row: Value, patch: Option<&Map<String, Value>>) -> Value {
    if let (Some(patch), Value::Object(map)) = (patch, &mut row) {
        for (k, v) in patch {
            map.insert(k.clone(), v.clone());
        }
    }
    row
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The router (mounted under `/api/v1`).
pub(crate) fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/api/v1/treatplans", get(treatplans).post(create_treatplan))
        .route("/api/v1/proctps", get(proctps))
        .route("/api/v1/treatplanattaches", get(attaches))
        .route("/api/v1/procedurelogs", get(procedurelogs))
        .route("/api/v1/patients", get(patients).post(create_patient))
        .route("/api/v1/patients/{id}", get(patient))
        .route("/api/v1/commlogs", get(list_commlogs).post(create_commlog))
        .route("/api/v1/payments", get(list_payments).post(create_payment))
        .with_state(hub)
}

fn authorized(hub: &Hub, headers: &HeaderMap) -> bool {
    let cfg = &hub.config.opendental;
    let want = format!(
        "ODFHIR {}/{}",
        cfg.developer_key.expose_secret(),
        cfg.customer_key.expose_secret()
    );
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == want)
}

fn query_map(query: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// `Offset`/`Limit` over `rows` (Limit at most 1000, default 100).
fn list_response(rows: Vec<Value>, q: &HashMap<String, String>) -> Response {
    let offset = match q.get("Offset").map(|o| o.parse::<usize>()) {
        None => 0,
        Some(Ok(o)) => o,
        Some(Err(_)) => return fail(StatusCode::BAD_REQUEST, "Offset is invalid."),
    };
    let limit = match q.get("Limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) => l.clamp(1, 1000),
        Some(Err(_)) => return fail(StatusCode::BAD_REQUEST, "Limit is invalid."),
    };
    let rows: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
    axum::Json(Value::Array(rows)).into_response()
}

fn tp_status(plan: &PlanRecord) -> &'static str {
    match plan.status {
        PlanStatus::Proposed | PlanStatus::Accepted => "Saved",
        PlanStatus::Rejected | PlanStatus::Completed => "Inactive",
    }
}

fn treatplan_json(plan: &PlanRecord) -> Value {
    let signed = plan.status == PlanStatus::Accepted
        || (plan.status == PlanStatus::Completed && plan.signed_at.is_some());
    json!({
        "TreatPlanNum": num(&plan.pms_id),
        "PatNum": num(&plan.patient_pms_id),
        "DateTP": plan.created.format("%Y-%m-%d").to_string(),
        "Heading": plan.seed.name,
        "Note": "",
        "ResponsParty": 0,
        "TPStatus": tp_status(plan),
        "TPType": "Insurance",
        "SecDateTEdit": dt(plan.modified),
        "UserNumPresenter": 0,
        "DateTSigned": match (signed, plan.signed_at) { (true, Some(t)) => dt(t), _ => NULL_DATE_TIME.to_owned() },
        "DateTPracticeSigned": NULL_DATE_TIME,
        "isSigned": if signed { "true" } else { "false" },
        "isSignedPractice": "false",
    })
}

fn patient_json(p: &PatientRecord) -> Value {
    let s = &p.seed;
    json!({
        "PatNum": num(&p.pms_id),
        "LName": s.last_name,
        "FName": s.first_name,
        "MiddleI": "",
        "Preferred": "",
        "Birthdate": s.date_of_birth.map_or_else(|| NULL_DATE.to_owned(), |d| d.format("%Y-%m-%d").to_string()),
        "Address": s.address.line1,
        "Address2": "",
        "City": s.address.city,
        "State": s.address.state,
        "Zip": s.address.postal_code,
        "HmPhone": s.home_phone.clone().unwrap_or_default(),
        "WkPhone": "",
        "WirelessPhone": s.mobile_phone.clone().unwrap_or_default(),
        "Email": s.email.clone().unwrap_or_default(),
        "Language": "",
        "TxtMsgOk": if s.mobile_phone.is_none() { "Unknown" } else if s.sms_consent { "Yes" } else { "No" },
        "PatStatus": "Patient",
        "Guarantor": num(&p.pms_id),
        "ClinicNum": 0,
        "SecDateEntry": p.created.format("%Y-%m-%d").to_string(),
    })
}

fn check(hub: &Hub, headers: &HeaderMap) -> Option<Response> {
    (!authorized(hub, headers))
        .then(|| fail(StatusCode::UNAUTHORIZED, "Invalid authorization header."))
}

fn od_plans(hub: &Hub) -> Vec<PlanRecord> {
    let mut plans = hub.world.plans(Some(Pms::OpenDental));
    plans.sort_by_key(|p| num(&p.pms_id));
    plans
}

async fn treatplans(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let q = query_map(query);
    let since = match q.get("SecDateTEdit") {
        None => None,
        Some(s) => match parse_dt(s) {
            Some(t) => Some(t),
            None => return fail(StatusCode::BAD_REQUEST, "SecDateTEdit is invalid."),
        },
    };
    let rows: Vec<Value> = od_plans(&hub)
        .iter()
        .filter(|p| q.get("PatNum").is_none_or(|n| p.patient_pms_id == *n))
        .filter(|p| {
            q.get("TPStatus")
                .is_none_or(|s| tp_status(p).eq_ignore_ascii_case(s))
        })
        .map(|p| {
            patched(
                treatplan_json(p),
                lock(&hub.opendental.tamper).plan_fields.get(&p.pms_id),
            )
        })
        // Second precision, as Open Dental stores it: "on or after" the given time.
        .filter(|row| {
            since.is_none_or(|s| {
                row["SecDateTEdit"]
                    .as_str()
                    .and_then(parse_dt)
                    .is_some_and(|t| t >= s)
            })
        })
        .chain(
            lock(&hub.opendental.written_plans)
                .iter()
                .filter(|r| {
                    q.get("PatNum")
                        .is_none_or(|p| r["PatNum"].as_u64() == p.parse::<u64>().ok())
                })
                .filter(|r| {
                    q.get("TPStatus").is_none_or(|s| {
                        r["TPStatus"]
                            .as_str()
                            .is_some_and(|t| t.eq_ignore_ascii_case(s))
                    })
                })
                .filter(|r| {
                    since.is_none_or(|s| {
                        r["SecDateTEdit"]
                            .as_str()
                            .and_then(parse_dt)
                            .is_some_and(|t| t >= s)
                    })
                })
                .cloned()
                .collect::<Vec<_>>(),
        )
        .chain(if q.contains_key("PatNum") {
            Vec::new()
        } else {
            lock(&hub.opendental.tamper).extra_plan_rows.clone()
        })
        .collect();
    list_response(rows, &q)
}

/// The first `TreatPlanNum` of plans created through the API (seeded plans number far below).
const FIRST_WRITTEN_PLAN: u64 = 900_000;

/// `POST /treatplans` (apitreatplans.html, 23.2.13): `PatNum` required, `Heading`, `Note` and
/// `TPType` optional; the plan is created Inactive.
async fn create_treatplan(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON.");
    };
    let Some(pat) = pat_num_of(&req) else {
        return fail(StatusCode::BAD_REQUEST, "PatNum is required.");
    };
    if hub.world.patient_by_pms_id(Pms::OpenDental, &pat).is_none() {
        return fail(StatusCode::BAD_REQUEST, "PatNum is invalid.");
    }
    let tp_type = match req["TPType"].as_str() {
        None => "Insurance",
        Some(t @ ("Insurance" | "Discount")) => t,
        Some(_) => return fail(StatusCode::BAD_REQUEST, "TPType is invalid."),
    };
    let now = hub.world.now();
    let mut plans = lock(&hub.opendental.written_plans);
    let row = json!({
        "TreatPlanNum": FIRST_WRITTEN_PLAN + plans.len() as u64,
        "PatNum": num(&pat),
        "DateTP": "0001-01-01",
        "Heading": req["Heading"].as_str().unwrap_or("Inactive Treatment Plan"),
        "Note": req["Note"].as_str().unwrap_or(""),
        "ResponsParty": 0,
        "TPStatus": "Inactive",
        "TPType": tp_type,
        "SecDateTEdit": dt(now),
        "UserNumPresenter": 0,
        "DateTSigned": NULL_DATE_TIME,
        "DateTPracticeSigned": NULL_DATE_TIME,
        "isSigned": "false",
        "isSignedPractice": "false",
    });
    plans.push(row.clone());
    (StatusCode::CREATED, axum::Json(row)).into_response()
}

/// The `TreatPlanNum` a plan is served under (a test may give two plans the same number).
fn served_num(hub: &Hub, plan: &PlanRecord) -> Value {
    lock(&hub.opendental.tamper)
        .plan_fields
        .get(&plan.pms_id)
        .and_then(|f| f.get("TreatPlanNum").cloned())
        .unwrap_or_else(|| json!(num(&plan.pms_id)))
}

fn proc_rows(plan: &PlanRecord) -> Vec<Value> {
    plan.seed
        .procedures
        .iter()
        .zip(&plan.procedure_ids)
        .enumerate()
        .map(|(i, (p, id))| {
            let ins = p.primary_estimate.minor() + p.secondary_estimate.minor();
            json!({
                "ProcTPNum": num(id) * 10,
                "TreatPlanNum": num(&plan.pms_id),
                "PatNum": num(&plan.patient_pms_id),
                "ProcNumOrig": num(id),
                "ItemOrder": i + 1,
                "Priority": 0,
                "ToothNumTP": p.tooth.clone().unwrap_or_default(),
                "Surf": "",
                "ProcCode": p.code,
                "Descript": p.description,
                "FeeAmt": cents_text(p.fee.minor()),
                "PriInsAmt": cents_text(p.primary_estimate.minor()),
                "SecInsAmt": cents_text(p.secondary_estimate.minor()),
                "PatAmt": cents_text((p.fee.minor() - ins).max(0)),
                "Discount": "0.00",
                "Prognosis": "",
                "Dx": "",
                "ProcAbbr": "",
                "FeeAllowed": cents_text(p.fee.minor()),
                "TaxAmt": "0.00",
                "ProvNum": 1,
                "DateTP": plan.created.format("%Y-%m-%d").to_string(),
                "ClinicNum": 0,
                "CatPercUCR": "0",
                "SecDateTEdit": dt(plan.modified),
            })
        })
        .collect()
}

async fn proctps(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let q = query_map(query);
    let Some(plan_num) = q.get("TreatPlanNum") else {
        return fail(StatusCode::BAD_REQUEST, "TreatPlanNum is required.");
    };
    if let Some(answer) = lock(&hub.opendental.tamper).proctps.get(plan_num).copied() {
        return match answer {
            ProcTpsAnswer::Truncated => (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"[{"ProcTPNum": 10, "TreatPlanNum": "#,
            )
                .into_response(),
            ProcTpsAnswer::Status(code) => fail(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "Internal error.",
            ),
        };
    }
    // Rows of every plan served under this number (a duplicate number lists both patients').
    let rows: Vec<Value> = od_plans(&hub)
        .iter()
        .filter(|p| plan_num.parse::<u64>().ok() == served_num(&hub, p).as_u64())
        .flat_map(|p| {
            let served = served_num(&hub, p);
            let patch = lock(&hub.opendental.tamper)
                .proc_fields
                .get(&p.pms_id)
                .cloned();
            proc_rows(p).into_iter().map(move |mut row| {
                row["TreatPlanNum"] = served.clone();
                patched(row, patch.as_ref())
            })
        })
        .collect();
    list_response(rows, &q)
}

async fn attaches(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let q = query_map(query);
    let Some(plan_num) = q.get("TreatPlanNum") else {
        return fail(StatusCode::BAD_REQUEST, "TreatPlanNum is required.");
    };
    let rows: Vec<Value> = od_plans(&hub)
        .iter()
        .filter(|p| p.pms_id == *plan_num)
        .flat_map(|p| {
            p.procedure_ids.iter().map(move |id| {
                json!({
                    "TreatPlanAttachNum": num(id) * 10 + 1,
                    "TreatPlanNum": num(&p.pms_id),
                    "ProcNum": num(id),
                    "Priority": 0,
                    "priority": "",
                })
            })
        })
        .collect();
    list_response(rows, &q)
}

async fn procedurelogs(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let q = query_map(query);
    let since = match q.get("DateTStamp") {
        None => None,
        Some(s) => match parse_dt(s) {
            Some(t) => Some(t),
            None => return fail(StatusCode::BAD_REQUEST, "DateTStamp is invalid."),
        },
    };
    let server_now = dt(hub.world.now());
    let mut rows = Vec::new();
    for plan in od_plans(&hub) {
        for (p, id) in plan.seed.procedures.iter().zip(&plan.procedure_ids) {
            let status = match plan.status {
                PlanStatus::Completed => "C",
                _ => "TP",
            };
            let row = json!({
                "ProcNum": num(id),
                "PatNum": num(&plan.patient_pms_id),
                "AptNum": plan.appointment_id.as_deref().map_or(0, num),
                "ProcDate": plan.seed.treatment_date.map_or_else(|| NULL_DATE.to_owned(), |d| d.format("%Y-%m-%d").to_string()),
                "ProcFee": cents_text(p.fee.minor()),
                "ProcStatus": status,
                "CodeNum": 1,
                "procCode": p.code,
                "ToothNum": p.tooth.clone().unwrap_or_default(),
                "Surf": "",
                "ProvNum": 1,
                "ClinicNum": 0,
                "DateTP": plan.created.format("%Y-%m-%d").to_string(),
                "Discount": "0.00",
                "DateTStamp": dt(plan.modified),
                "serverDateTime": server_now,
            });
            let keep = q.get("PatNum").is_none_or(|n| plan.patient_pms_id == *n)
                && q.get("AptNum")
                    .is_none_or(|a| plan.appointment_id.as_deref() == Some(a.as_str()))
                && q.get("ProcStatus").is_none_or(|s| s == status)
                && since.is_none_or(|s| parse_dt(&dt(plan.modified)).is_some_and(|t| t >= s));
            if keep {
                rows.push(row);
            }
        }
    }
    rows.sort_by_key(|r| r["ProcNum"].as_u64());
    list_response(rows, &q)
}

async fn patients(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let q = query_map(query);
    let mut list = hub.world.patients(Some(Pms::OpenDental));
    list.sort_by_key(|p| num(&p.pms_id));
    let rows: Vec<Value> = list
        .iter()
        .filter(|p| {
            q.get("LName")
                .is_none_or(|l| p.seed.last_name.eq_ignore_ascii_case(l))
                && q.get("FName")
                    .is_none_or(|f| p.seed.first_name.eq_ignore_ascii_case(f))
        })
        .map(patient_json)
        .collect();
    list_response(rows, &q)
}

/// `POST /patients`: `LName` and `FName` required (apipatients.html); `Birthdate`, `WirelessPhone`,
/// `Email`, `State`, `TxtMsgOk` read. Answers 201 with the patient. Open Dental compares new
/// patients against existing ones (LName, FName, Birthdate, and email or phones) "to prevent
/// duplicates"; what it answers then is UNCONFIRMED (INTEGRATIONS.md §3), so the stand-in answers
/// 400, and Chairside searches before it creates.
async fn create_patient(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON.");
    };
    let text = |k: &str| {
        req[k]
            .as_str()
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let (last, first) = (text("LName"), text("FName"));
    if last.is_empty() || first.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "LName and FName are required.");
    }
    let birthdate = match text("Birthdate").as_str() {
        "" => None,
        d => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => return fail(StatusCode::BAD_REQUEST, "Birthdate is invalid."),
        },
    };
    let phone = Some(text("WirelessPhone")).filter(|p| !p.is_empty());
    let email = Some(text("Email")).filter(|e| !e.is_empty());
    let key = |p: &Option<String>| p.as_deref().map(crate::world::phone_key);
    let duplicate = hub
        .world
        .patients(Some(Pms::OpenDental))
        .into_iter()
        .any(|p| {
            p.seed.last_name.eq_ignore_ascii_case(&last)
                && p.seed.first_name.eq_ignore_ascii_case(&first)
                && p.seed.date_of_birth == birthdate
                && ((phone.is_some() && key(&p.seed.mobile_phone) == key(&phone))
                    || (email.is_some() && p.seed.email == email))
        });
    if duplicate {
        return fail(StatusCode::BAD_REQUEST, "Patient already exists.");
    }
    let p = hub.world.create_patient(
        Pms::OpenDental,
        &first,
        &last,
        birthdate,
        phone,
        email,
        &text("State"),
    );
    let mut res = (StatusCode::CREATED, axum::Json(patient_json(&p))).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("/api/v1/patients/{}", p.pms_id)) {
        res.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    res
}

async fn patient(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    match hub.world.patient_by_pms_id(Pms::OpenDental, &id) {
        Some(p) => axum::Json(patched(
            patient_json(&p),
            lock(&hub.opendental.tamper).patient_fields.get(&p.pms_id),
        ))
        .into_response(),
        None => fail(StatusCode::NOT_FOUND, "Patient not found."),
    }
}

fn pat_num_of(req: &Value) -> Option<String> {
    match &req["PatNum"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

async fn create_commlog(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON.");
    };
    let Some(pat) = pat_num_of(&req) else {
        return fail(StatusCode::BAD_REQUEST, "PatNum is required.");
    };
    let Some(note) = req["Note"].as_str().filter(|n| !n.is_empty()) else {
        return fail(StatusCode::BAD_REQUEST, "Note is required.");
    };
    if hub.world.patient_by_pms_id(Pms::OpenDental, &pat).is_none() {
        return fail(StatusCode::BAD_REQUEST, "PatNum is invalid.");
    }
    let stored = hub
        .world
        .add_note(Pms::OpenDental, NoteKind::Commlog, &pat, note, None);
    let mut row = Map::new();
    row.insert("CommlogNum".into(), json!(num(&stored.id)));
    row.insert("PatNum".into(), json!(num(&pat)));
    row.insert(
        "CommDateTime".into(),
        json!(
            req["CommDateTime"]
                .as_str()
                .map_or_else(|| dt(stored.created_at), str::to_owned)
        ),
    );
    row.insert("CommType".into(), json!(0));
    row.insert(
        "commType".into(),
        json!(req["commType"].as_str().unwrap_or("Misc")),
    );
    row.insert("Note".into(), json!(note));
    row.insert(
        "Mode_".into(),
        json!(req["Mode_"].as_str().unwrap_or("None")),
    );
    row.insert(
        "SentOrReceived".into(),
        json!(req["SentOrReceived"].as_str().unwrap_or("Neither")),
    );
    row.insert("UserNum".into(), json!(0));
    row.insert("DateTStamp".into(), json!(dt(stored.created_at)));
    let row = Value::Object(row);
    lock(&hub.opendental.commlogs).push(row.clone());
    (StatusCode::CREATED, axum::Json(row)).into_response()
}

async fn list_commlogs(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let q = query_map(query);
    let rows: Vec<Value> = lock(&hub.opendental.commlogs)
        .iter()
        .filter(|r| {
            q.get("PatNum")
                .is_none_or(|p| r["PatNum"].as_u64() == p.parse::<u64>().ok())
        })
        .cloned()
        .collect();
    list_response(rows, &q)
}

async fn create_payment(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON.");
    };
    let Some(pat) = pat_num_of(&req) else {
        return fail(StatusCode::BAD_REQUEST, "PatNum is required.");
    };
    // A refund is a negative payment (Open Dental's manual, "Payment Return").
    let amount = match &req["PayAmt"] {
        Value::String(s) if s.trim_start().starts_with('-') => {
            crate::lenders::cents(s.trim_start().trim_start_matches('-')).map(|c| -c)
        }
        Value::Number(n) if n.as_f64().is_some_and(|f| f < 0.0) => {
            crate::lenders::cents(n.to_string().trim_start_matches('-')).map(|c| -c)
        }
        other => crate::lenders::amount_of(other),
    };
    let Some(amount) = amount.filter(|a| *a != 0) else {
        return fail(StatusCode::BAD_REQUEST, "PayAmt is required.");
    };
    if hub.world.patient_by_pms_id(Pms::OpenDental, &pat).is_none() {
        return fail(StatusCode::BAD_REQUEST, "PatNum is invalid.");
    }
    let note = req["PayNote"].as_str().unwrap_or("");
    let stored = hub
        .world
        .add_note(Pms::OpenDental, NoteKind::Payment, &pat, note, Some(amount));
    let row = json!({
        "PayNum": num(&stored.id),
        "PayType": 0,
        "payType": "Sandbox",
        "PayDate": req["PayDate"].as_str().map_or_else(|| stored.created_at.format("%Y-%m-%d").to_string(), str::to_owned),
        "PayAmt": cents_text(amount),
        "CheckNum": req["CheckNum"].as_str().unwrap_or(""),
        "BankBranch": "",
        "PayNote": note,
        "PatNum": num(&pat),
        "ClinicNum": req["ClinicNum"].as_u64().unwrap_or(0),
        "DateEntry": stored.created_at.format("%Y-%m-%d").to_string(),
        "PaymentSource": "API",
        "ProcessStatus": "OfficeProcessed",
        "IsSplit": "false",
    });
    lock(&hub.opendental.payments).push(row.clone());
    (StatusCode::CREATED, axum::Json(row)).into_response()
}

async fn list_payments(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let q = query_map(query);
    let rows: Vec<Value> = lock(&hub.opendental.payments)
        .iter()
        .filter(|r| {
            q.get("PatNum")
                .is_none_or(|p| r["PatNum"].as_u64() == p.parse::<u64>().ok())
        })
        .cloned()
        .collect();
    list_response(rows, &q)
}
