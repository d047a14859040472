//! The Dentrix Ascend stand-in, from `dentrix-client`'s `wire` module: OAuth2 client
//! credentials, `Organization-ID`, the `{data, warnings, errors, meta.pagination}` envelope,
//! `filter=` expressions, `pageSize` + `lastId` paging, txcases, patient procedures, visits,
//! appointments, patients and patient notes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{bearer, cents_text};
use crate::hub::Hub;
use crate::persona::Pms;
use crate::world::{NoteKind, PatientRecord, PlanRecord, PlanStatus};

const ROOT: &str = "/ascend-gateway/api/v1";

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn envelope_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "data": null,
            "warnings": [],
            "errors": [{"code": status.as_u16(), "message": message}],
        })),
    )
        .into_response()
}

/// The router.
pub(crate) fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/oauth/client_credential/accesstoken", post(token))
        .route(&format!("{ROOT}/{{resource}}"), get(list).post(create))
        .route(&format!("{ROOT}/{{resource}}/{{id}}"), get(fetch))
        .with_state(hub)
}

async fn token(State(hub): State<Arc<Hub>>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let cfg = &hub.config.dentrix;
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let grant_ok = q.get("grant_type").map(String::as_str) == Some("client_credentials");
    let ok = grant_ok
        && form.get("client_id") == Some(&cfg.client_id)
        && form.get("client_secret").map(String::as_str) == Some(cfg.client_secret.expose_secret());
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ErrorCode": "invalid_client", "Error": "ClientId is Invalid"})),
        )
            .into_response();
    }
    let token = hub.pms.dentrix_tokens.issue(cfg.token_ttl);
    axum::Json(json!({
        "access_token": token,
        "token_type": "BearerToken",
        "expires_in": cfg.token_ttl.as_secs().to_string(),
        "issued_at": Utc::now().timestamp_millis().to_string(),
        "status": "approved",
    }))
    .into_response()
}

fn check(hub: &Hub, headers: &HeaderMap) -> Option<Response> {
    if !bearer(headers).is_some_and(|t| hub.pms.dentrix_tokens.valid(t)) {
        return Some(envelope_error(
            StatusCode::UNAUTHORIZED,
            "invalid or expired token",
        ));
    }
    let org = headers.get("organization-id").and_then(|v| v.to_str().ok());
    if org != Some(hub.config.dentrix.organization_id.as_str()) {
        return Some(envelope_error(
            StatusCode::FORBIDDEN,
            "organization is not enabled for this application",
        ));
    }
    None
}

fn patient_json(p: &PatientRecord) -> Value {
    let s = &p.seed;
    let mut phones = Vec::new();
    if let Some(m) = &s.mobile_phone {
        phones.push(json!({"phoneType": "MOBILE", "number": m}));
    }
    if let Some(h) = &s.home_phone {
        phones.push(json!({"phoneType": "HOME", "number": h}));
    }
    json!({
        "id": p.pms_id.parse::<u64>().unwrap_or_default(),
        "firstName": s.first_name,
        "lastName": s.last_name,
        "dateOfBirth": s.date_of_birth.map(|d| d.format("%Y-%m-%d").to_string()),
        "emailAddress": s.email,
        "phones": phones,
        "address": {
            "street1": s.address.line1,
            "street2": null,
            "city": s.address.city,
            "state": s.address.state,
            "postalCode": s.address.postal_code,
        },
        "preferredLanguage": "ENGLISH",
        "textMessageConsent": s.sms_consent,
        "lastModified": iso(p.modified),
    })
}

fn status_value(s: PlanStatus) -> &'static str {
    match s {
        PlanStatus::Proposed => "NEW",
        PlanStatus::Accepted => "ACCEPTED",
        PlanStatus::Rejected => "REJECTED",
        PlanStatus::Completed => "COMPLETED",
    }
}

fn num(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}

fn txcase_json(plan: &PlanRecord) -> Value {
    json!({
        "id": num(&plan.pms_id),
        "name": plan.seed.name,
        "status": status_value(plan.status),
        "note": null,
        "expirationDate": null,
        "providerSignature": null,
        "providerSignatureDate": null,
        "witnessSignature": null,
        "witnessSignatureDate": null,
        "patient": {"id": num(&plan.patient_pms_id), "type": "PatientV1", "url": format!("{ROOT}/patients/{}", plan.patient_pms_id)},
        "procedures": plan.procedure_ids.iter().map(|id| json!({"id": num(id), "type": "PatientProcedureV1", "url": format!("{ROOT}/patientprocedures/{id}")})).collect::<Vec<_>>(),
        "lastModified": iso(plan.modified),
    })
}

fn procedures_json(plan: &PlanRecord) -> Vec<Value> {
    plan.seed
        .procedures
        .iter()
        .zip(&plan.procedure_ids)
        .map(|(p, id)| {
            let portion =
                (p.fee.minor() - p.primary_estimate.minor() - p.secondary_estimate.minor()).max(0);
            json!({
                "id": num(id),
                "amount": cents_text(p.fee.minor()),
                "status": "TREATMENT_PLANNED",
                "state": "ACTIVE",
                "treatmentPlannedDate": plan.created.format("%Y-%m-%d").to_string(),
                "serviceDate": null,
                "primaryInsurance": {"estimate": cents_text(p.primary_estimate.minor())},
                "secondaryInsurance": {"estimate": cents_text(p.secondary_estimate.minor())},
                "primaryInsuranceEstimateOverride": null,
                "secondaryInsuranceEstimateOverride": null,
                "writeOff": "0.00",
                "guarantorPortion": cents_text(portion),
                "procedureTeeth": p.tooth.iter().collect::<Vec<_>>(),
                "practiceProcedure": {"id": 1, "adaCode": p.code, "description": p.description},
                "lastModified": iso(plan.modified),
            })
        })
        .collect()
}

/// One `filter=` clause.
enum Clause {
    ModifiedSince(DateTime<Utc>),
    Ids(Vec<String>),
    Eq(String, String),
}

fn parse_filter(raw: &str) -> Result<Vec<Clause>, String> {
    let mut out = Vec::new();
    for part in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(t) = part.strip_prefix("lastModified>=") {
            let at = DateTime::parse_from_rfc3339(t)
                .map_err(|_| "lastModified is not an ISO 8601 time".to_owned())?;
            out.push(Clause::ModifiedSince(at.with_timezone(&Utc)));
        } else if let Some(list) = part.strip_prefix("id->[") {
            let ids = list
                .trim_end_matches(']')
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            out.push(Clause::Ids(ids));
        } else if let Some((field, value)) = part.split_once("==") {
            out.push(Clause::Eq(field.trim().to_owned(), value.trim().to_owned()));
        } else {
            return Err("unsupported filter".to_owned());
        }
    }
    Ok(out)
}

fn field(v: &Value, dotted: &str) -> String {
    let mut cur = v;
    for seg in dotted.split('.') {
        cur = &cur[seg];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn matches(v: &Value, clauses: &[Clause]) -> bool {
    clauses.iter().all(|c| match c {
        Clause::ModifiedSince(t) => v["lastModified"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|m| m.with_timezone(&Utc) >= *t),
        Clause::Ids(ids) => ids.contains(&field(v, "id")),
        Clause::Eq(f, want) => field(v, f) == *want,
    })
}

fn records(hub: &Hub, resource: &str) -> Option<Vec<Value>> {
    let plans = hub.world.plans(Some(Pms::Dentrix));
    Some(match resource {
        "txcases" => plans
            .iter()
            .map(|p| hub.pms.listed(Pms::Dentrix, &p.pms_id, txcase_json(p)))
            .chain(hub.pms.extra_rows(Pms::Dentrix))
            .collect(),
        "patientprocedures" => plans.iter().flat_map(procedures_json).collect(),
        "visits" => plans
            .iter()
            .map(|p| {
                json!({
                    "id": num(&format!("{}1", p.pms_id)),
                    "sequence": 1,
                    "txCase": {"id": num(&p.pms_id)},
                    "procedures": p.procedure_ids.iter().map(|id| json!({"id": num(id)})).collect::<Vec<_>>(),
                    "appointment": p.appointment_id.as_ref().map(|a| json!({"id": num(a), "type": "AppointmentV1"})),
                    "lastModified": iso(p.modified),
                })
            })
            .collect(),
        "appointments" => plans
            .iter()
            .filter_map(|p| {
                let id = p.appointment_id.as_ref()?;
                let day = p.seed.treatment_date?;
                Some(json!({
                    "id": num(id),
                    "start": format!("{}T09:00:00.000Z", day.format("%Y-%m-%d")),
                    "patient": {"id": num(&p.patient_pms_id)},
                    "lastModified": iso(p.modified),
                }))
            })
            .collect(),
        "patients" => hub
            .world
            .patients(Some(Pms::Dentrix))
            .iter()
            .map(patient_json)
            .collect(),
        "patientnotes" => hub
            .world
            .notes()
            .into_iter()
            .filter(|n| n.pms == Pms::Dentrix)
            .map(|n| {
                json!({
                    "id": num(&n.id),
                    "patient": {"id": num(&n.patient_pms_id), "type": "PatientV1"},
                    "note": n.text,
                    "dateCreated": iso(n.created_at),
                    "lastModified": iso(n.created_at),
                })
            })
            .collect(),
        _ => return None,
    })
}

fn id_num(v: &Value) -> u64 {
    match &v["id"] {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

async fn list(
    State(hub): State<Arc<Hub>>,
    Path(resource): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let clauses = match q.get("filter").map(|f| parse_filter(f)).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(msg) => return envelope_error(StatusCode::BAD_REQUEST, &msg),
    };
    let Some(mut all) = records(&hub, &resource) else {
        return envelope_error(StatusCode::NOT_FOUND, "unknown resource");
    };
    all.retain(|v| matches(v, &clauses));
    all.sort_by_key(id_num);
    let total = all.len();
    if let Some(last) = q.get("lastId").and_then(|l| l.parse::<u64>().ok()) {
        all.retain(|v| id_num(v) > last);
    }
    let page_size: usize = q
        .get("pageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100)
        .clamp(1, 500);
    all.truncate(page_size);
    let last_id = all.last().map(|v| v["id"].clone());
    axum::Json(json!({
        "data": all,
        "warnings": [],
        "errors": [],
        "meta": {"pagination": {"pageSize": page_size, "lastId": last_id, "totalCount": total}},
    }))
    .into_response()
}

async fn fetch(
    State(hub): State<Arc<Hub>>,
    Path((resource, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    let Some(all) = records(&hub, &resource) else {
        return envelope_error(StatusCode::NOT_FOUND, "unknown resource");
    };
    match all.into_iter().find(|v| field(v, "id") == id) {
        Some(v) => axum::Json(json!({"data": v, "warnings": [], "errors": []})).into_response(),
        None => envelope_error(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn create(
    State(hub): State<Arc<Hub>>,
    Path(resource): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(denied) = check(&hub, &headers) {
        return denied;
    }
    if resource != "patientnotes" {
        return envelope_error(StatusCode::METHOD_NOT_ALLOWED, "not writable");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return envelope_error(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let patient = field(&req, "patient.id");
    let Some(text) = req["note"].as_str().filter(|t| !t.trim().is_empty()) else {
        return envelope_error(StatusCode::BAD_REQUEST, "note is required");
    };
    if hub
        .world
        .patient_by_pms_id(Pms::Dentrix, &patient)
        .is_none()
    {
        return envelope_error(StatusCode::BAD_REQUEST, "unknown patient");
    }
    let note = hub
        .world
        .add_note(Pms::Dentrix, NoteKind::PatientNote, &patient, text, None);
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "data": {
                "id": num(&note.id),
                "patient": {"id": num(&patient), "type": "PatientV1"},
                "note": note.text,
                "dateCreated": iso(note.created_at),
            },
            "warnings": [],
            "errors": [],
        })),
    )
        .into_response()
}
