//! The CareCredit stand-in, from `carecredit-client`'s `wire` module: OAuth2 token, prefill
//! sessions keyed by partner transaction id (a retried start returns the existing session), the
//! hosted application page, pullback status and cardholder lookup.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};

use super::{amount_of, check_clinical, check_prefill, decimal, page, persona};
use crate::error::SandboxError;
use crate::fault::System;
use crate::hub::Hub;
use crate::persona::{Lender, LenderDecision, PatientKey};

/// Where a CareCredit application stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CareCreditState {
    /// Opened; the patient has not finished (pullback `Created`).
    Created,
    /// Under review for `remaining` more pullbacks, then approved for `amount` cents.
    Pending {
        /// Pullbacks still answering `Pending`.
        remaining: u32,
        /// Cents approved afterwards.
        amount: i64,
    },
    /// Approved for `amount` cents (pullback `Completed` with the credit line).
    Approved {
        /// Cents.
        amount: i64,
    },
    /// Declined.
    Declined,
    /// The session lapsed.
    Expired,
    /// QuickScreen pre-approved for `amount` cents (pullback `PreApproved`): a soft pull, not an
    /// account; the patient still has to apply.
    PreApproved {
        /// Cents.
        amount: i64,
    },
    /// CareCredit wants the practice to call for an authorization (pullback `CallForAuth`).
    CallForAuth,
    /// A duplicate QuickScreen (pullback `DupQS`).
    DuplicateQuickScreen,
}

/// One prefill session, as the sandbox keeps it.
#[derive(Clone, Debug, Serialize)]
pub struct CareCreditSession {
    /// `sessionId`.
    pub session_id: String,
    /// Our reference (`partnerTransactionID`).
    pub partner_transaction_id: String,
    /// The merchant number.
    pub merchant_number: String,
    /// The amount asked for, in cents.
    pub amount: i64,
    /// Whether the request carried patient data (prefill).
    pub prefilled: bool,
    /// The patient, once known (from prefill, or the patient who opened the link).
    pub patient: Option<PatientKey>,
    /// The state.
    pub state: CareCreditState,
    /// Pullbacks answered.
    pub pullbacks: u32,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When the portal session lapses.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug)]
struct CcData {
    rng: StdRng,
    sessions: Vec<CareCreditSession>,
    tokens: HashMap<String, Instant>,
    suspended: BTreeSet<String>,
    lookups: u32,
}

/// The stand-in's state.
pub(crate) struct CareCreditStateStore {
    data: Mutex<CcData>,
}

impl fmt::Debug for CareCreditStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CareCreditState").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message}})),
    )
        .into_response()
}

impl CareCreditStateStore {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            data: Mutex::new(CcData {
                rng: StdRng::seed_from_u64(seed ^ 0x0043_4152_4543),
                sessions: Vec::new(),
                tokens: HashMap::new(),
                suspended: BTreeSet::new(),
                lookups: 0,
            }),
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        lock(&self.data)
            .tokens
            .get(token)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Lapses sessions whose portal time is over.
    fn expire_due(d: &mut CcData) {
        let now = Utc::now();
        for s in &mut d.sessions {
            if s.state == CareCreditState::Created && s.expires_at <= now {
                s.state = CareCreditState::Expired;
            }
        }
    }

    /// The patient opened the hosted page and did what their persona does.
    pub(crate) fn patient_acts(
        &self,
        hub: &Hub,
        session_id: &str,
        patient: Option<PatientKey>,
    ) -> Option<LenderDecision> {
        let mut d = lock(&self.data);
        Self::expire_due(&mut d);
        let s = d.sessions.iter_mut().find(|s| s.session_id == session_id)?;
        if s.state != CareCreditState::Created {
            return None;
        }
        let who = patient.or(s.patient);
        s.patient = who;
        let decision = persona(hub, who).decision(Lender::CareCredit, s.amount);
        Self::apply(s, decision);
        Some(decision)
    }

    fn apply(s: &mut CareCreditSession, decision: LenderDecision) {
        s.state = match decision {
            LenderDecision::Approved { amount } => CareCreditState::Approved { amount },
            LenderDecision::Declined => CareCreditState::Declined,
            LenderDecision::PendingThenApproved { polls, amount } if polls > 0 => {
                CareCreditState::Pending {
                    remaining: polls,
                    amount,
                }
            }
            LenderDecision::PendingThenApproved { amount, .. } => {
                CareCreditState::Approved { amount }
            }
            // The patient left: nothing changes.
            LenderDecision::Abandoned => CareCreditState::Created,
        };
    }

    fn session_json(s: &CareCreditSession, base: &str) -> Value {
        json!({
            "sessionId": s.session_id,
            "pageUrl": format!("{base}apply/{}", s.session_id),
            "partnerTransactionID": s.partner_transaction_id,
            "expiresAt": s.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

/// The router.
pub(crate) fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/oauth2/v1/token", post(token))
        .route(
            "/v1/prefill/sessions",
            get(find_session).post(create_session),
        )
        .route("/v1/prefill/sessions/{id}/pullback", get(pullback))
        .route("/v1/cardholders/lookup", post(lookup))
        .route("/apply/{id}", get(hosted_page).post(hosted_submit))
        .with_state(hub)
}

async fn token(State(hub): State<Arc<Hub>>, body: Bytes) -> Response {
    let cfg = &hub.config.carecredit;
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid input");
    };
    let ok = req["client_id"].as_str() == Some(cfg.client_id.as_str())
        && req["client_secret"].as_str() == Some(cfg.client_secret.expose_secret())
        && req["grantType"].as_str() == Some("client_credentials");
    if !ok {
        return error(StatusCode::UNAUTHORIZED, "invalid client");
    }
    let st = &hub.carecredit;
    let token = {
        let mut d = lock(&st.data);
        let bytes: [u8; 20] = d.rng.r#gen();
        let token = format!("cc_{}", hex::encode(bytes));
        d.tokens
            .insert(token.clone(), Instant::now() + cfg.token_ttl);
        token
    };
    axum::Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": cfg.token_ttl.as_secs(),
    }))
    .into_response()
}

fn query_map(query: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn find_session(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let st = &hub.carecredit;
    if !st.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let q = query_map(query);
    let (Some(tx), Some(merchant)) = (q.get("partnerTransactionID"), q.get("merchantNumber"))
    else {
        return error(StatusCode::BAD_REQUEST, "invalid input");
    };
    let found = lock(&st.data)
        .sessions
        .iter()
        .find(|s| &s.partner_transaction_id == tx && &s.merchant_number == merchant)
        .map(|s| CareCreditStateStore::session_json(s, hub.urls.carecredit.as_str()));
    match found {
        Some(s) => axum::Json(s).into_response(),
        None => error(StatusCode::NOT_FOUND, "no session"),
    }
}

async fn create_session(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let st = &hub.carecredit;
    if !st.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid input");
    };
    check_clinical(&hub, System::CareCredit, &req);
    let (Some(tx), Some(merchant), Some(_partner)) = (
        req["partnerTransactionID"].as_str(),
        req["merchantNumber"].as_str(),
        req["partnerCode"].as_str(),
    ) else {
        return error(StatusCode::BAD_REQUEST, "invalid input");
    };
    let Some(amount) = amount_of(&req["purchaseAmt"]).filter(|a| *a > 0) else {
        return error(StatusCode::BAD_REQUEST, "invalid input");
    };
    if lock(&st.data).suspended.contains(merchant) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Training Suspended");
    }
    // Prefill: find the patient the identity belongs to (and flag it where it is not allowed).
    let applicant = &req["applicant"];
    let prefilled = applicant.is_object();
    let patient = if prefilled {
        let found = hub.world.patient_by_identity(
            applicant["firstName"].as_str().unwrap_or_default(),
            applicant["lastName"].as_str().unwrap_or_default(),
            applicant["mobilePhone"].as_str(),
            applicant["zipCode"].as_str(),
        );
        let key = found.map(|p| p.key);
        check_prefill(&hub, System::CareCredit, key, applicant["state"].as_str());
        key
    } else {
        None
    };
    let base = hub.urls.carecredit.to_string();
    let mut d = lock(&st.data);
    if let Some(existing) = d
        .sessions
        .iter()
        .find(|s| s.partner_transaction_id == tx && s.merchant_number == merchant)
    {
        // A retried start: the session already opened for this reference.
        return (
            StatusCode::OK,
            axum::Json(CareCreditStateStore::session_json(existing, &base)),
        )
            .into_response();
    }
    let bytes: [u8; 12] = d.rng.r#gen();
    let now = Utc::now();
    let session = CareCreditSession {
        session_id: format!("CCS-{}", hex::encode_upper(bytes)),
        partner_transaction_id: tx.to_owned(),
        merchant_number: merchant.to_owned(),
        amount,
        prefilled,
        patient,
        state: CareCreditState::Created,
        pullbacks: 0,
        created_at: now,
        expires_at: now
            + TimeDelta::from_std(hub.config.carecredit.session_life)
                .unwrap_or(TimeDelta::minutes(30)),
    };
    let json = CareCreditStateStore::session_json(&session, &base);
    d.sessions.push(session);
    (StatusCode::CREATED, axum::Json(json)).into_response()
}

async fn pullback(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let st = &hub.carecredit;
    if !st.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let mut d = lock(&st.data);
    CareCreditStateStore::expire_due(&mut d);
    let Some(s) = d.sessions.iter_mut().find(|s| s.session_id == id) else {
        return error(StatusCode::NOT_FOUND, "no session");
    };
    s.pullbacks += 1;
    // Pending answers `Pending` for its remaining reads, then the decision shows.
    let pending = match s.state {
        CareCreditState::Pending { remaining, amount } => {
            s.state = if remaining <= 1 {
                CareCreditState::Approved { amount }
            } else {
                CareCreditState::Pending {
                    remaining: remaining - 1,
                    amount,
                }
            };
            true
        }
        _ => false,
    };
    let mut body = json!({
        "sessionId": s.session_id,
        "partnerTransactionID": s.partner_transaction_id,
    });
    match s.state {
        _ if pending => body["status"] = json!("Pending"),
        CareCreditState::Created => body["status"] = json!("Created"),
        CareCreditState::Pending { .. } => body["status"] = json!("Pending"),
        CareCreditState::Approved { amount } => {
            body["status"] = json!("Completed");
            body["applicationDetails"] = json!({
                "applicationId": format!("APP-{}", &s.session_id[4..]),
                "appEntryDate": s.created_at.format("%Y-%m-%d").to_string(),
                "appResponseCode": "A",
                "creditLine": decimal(amount),
                // The terms as the stand-in reports them (the fields are our reading of
                // CareCredit's; see carecredit-client's wire module).
                "promoCode": "PROMO12",
                "promoDescription": PROMO_DESCRIPTION,
                "promoTermMonths": PROMO_TERM_MONTHS,
                "apr": PROMO_APR,
            });
        }
        CareCreditState::Declined => body["status"] = json!("Declined"),
        CareCreditState::Expired => body["status"] = json!("Expired"),
        CareCreditState::PreApproved { amount } => {
            body["status"] = json!("PreApproved");
            body["quickScreenTransactionDetails"] =
                json!({"preApproved": true, "preApprovalAmount": decimal(amount)});
        }
        CareCreditState::CallForAuth => body["status"] = json!("CallForAuth"),
        CareCreditState::DuplicateQuickScreen => body["status"] = json!("DupQS"),
    }
    axum::Json(body).into_response()
}

/// The promotion every approval of the stand-in reports.
pub const PROMO_DESCRIPTION: &str = "No interest if paid in full within 12 months";
/// Its term in months.
pub const PROMO_TERM_MONTHS: u16 = 12;
/// The account's APR the stand-in reports, as CareCredit writes it.
pub const PROMO_APR: &str = "32.99";

async fn lookup(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let st = &hub.carecredit;
    if !st.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid input");
    };
    check_clinical(&hub, System::CareCredit, &req);
    let who = &req["lookupDetails"];
    let (Some(first), Some(last)) = (who["firstName"].as_str(), who["lastName"].as_str()) else {
        return error(StatusCode::BAD_REQUEST, "invalid input");
    };
    lock(&st.data).lookups += 1;
    let found = hub.world.patient_by_identity(
        first,
        last,
        who["phoneNumber"].as_str(),
        who["zipCode"].as_str(),
    );
    check_prefill(
        &hub,
        System::CareCredit,
        found.as_ref().map(|p| p.key),
        None,
    );
    let credit = found
        .as_ref()
        .and_then(|p| p.seed.persona.cardholder_credit());
    let body = match (found, credit) {
        (Some(p), Some(credit)) => json!({
            "status": "AccountFound",
            "availableCredit": decimal(credit),
            "lookupDetails": {"accountToken": format!("CCACCT-{}", p.key.0)},
        }),
        _ => json!({"status": "AccountNotFoundQS"}),
    };
    axum::Json(body).into_response()
}

async fn hosted_page(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    let d = lock(&hub.carecredit.data);
    let Some(s) = d.sessions.iter().find(|s| s.session_id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Html(page("CareCredit", &["No such application.".into()], None)),
        )
            .into_response();
    };
    let lines = vec![
        format!("Amount: ${}", decimal(s.amount)),
        format!("Status: {:?}", s.state),
    ];
    let action = (s.state == CareCreditState::Created).then(|| format!("/apply/{id}"));
    Html(page(
        "CareCredit application (sandbox)",
        &lines,
        action.as_deref(),
    ))
    .into_response()
}

async fn hosted_submit(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let choice = form.get("choice").map_or("persona", String::as_str);
    let st = &hub.carecredit;
    let outcome = match choice {
        "approve" | "decline" | "leave" => {
            let mut d = lock(&st.data);
            match d.sessions.iter_mut().find(|s| s.session_id == id) {
                Some(s) if s.state == CareCreditState::Created => {
                    let decision = match choice {
                        "approve" => LenderDecision::Approved { amount: s.amount },
                        "decline" => LenderDecision::Declined,
                        _ => LenderDecision::Abandoned,
                    };
                    CareCreditStateStore::apply(s, decision);
                    Some(decision)
                }
                _ => None,
            }
        }
        _ => {
            let patient = lock(&st.data)
                .sessions
                .iter()
                .find(|s| s.session_id == id)
                .and_then(|s| s.patient);
            st.patient_acts(&hub, &id, patient)
        }
    };
    let lines = vec![format!("Result: {outcome:?}")];
    Html(page("CareCredit application (sandbox)", &lines, None)).into_response()
}

/// Inspection and control of the CareCredit stand-in. Cheap to clone.
#[derive(Clone)]
pub struct CareCreditHandle {
    hub: Arc<Hub>,
}

impl fmt::Debug for CareCreditHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CareCreditHandle").finish_non_exhaustive()
    }
}

impl CareCreditHandle {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Vec<CareCreditSession> {
        let mut d = lock(&self.hub.carecredit.data);
        CareCreditStateStore::expire_due(&mut d);
        d.sessions.clone()
    }

    /// The session opened for our reference, if any.
    pub fn session_for(&self, partner_transaction_id: &str) -> Option<CareCreditSession> {
        self.sessions()
            .into_iter()
            .find(|s| s.partner_transaction_id == partner_transaction_id)
    }

    /// Acts on a session as `patient` (by persona), as if they opened the hosted page.
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown session.
    pub fn act_as(
        &self,
        session_id: &str,
        patient: PatientKey,
    ) -> Result<Option<LenderDecision>, SandboxError> {
        if !self.sessions().iter().any(|s| s.session_id == session_id) {
            return Err(SandboxError::NotFound {
                system: System::CareCredit,
                kind: "application",
            });
        }
        Ok(self
            .hub
            .carecredit
            .patient_acts(&self.hub, session_id, Some(patient)))
    }

    /// Puts a session in `state` from now on, as CareCredit would on a real day: `CallForAuth`,
    /// `DuplicateQuickScreen`, a `PreApproved` QuickScreen, a lower `Approved` credit line (a
    /// counteroffer), or `Approved` after staff called.
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown session.
    pub fn set_state(&self, session_id: &str, state: CareCreditState) -> Result<(), SandboxError> {
        let mut d = lock(&self.hub.carecredit.data);
        let s = d
            .sessions
            .iter_mut()
            .find(|s| s.session_id == session_id)
            .ok_or(SandboxError::NotFound {
                system: System::CareCredit,
                kind: "application",
            })?;
        s.state = state;
        Ok(())
    }

    /// Lapses every session the patient has not finished (pullback `Expired`).
    pub fn expire_open_sessions(&self) {
        let mut d = lock(&self.hub.carecredit.data);
        for s in &mut d.sessions {
            if s.state == CareCreditState::Created {
                s.state = CareCreditState::Expired;
            }
        }
    }

    /// Answers 422 "Training Suspended" for this merchant from now on (`false` lifts it).
    pub fn set_training_suspended(&self, merchant_number: &str, suspended: bool) {
        let mut d = lock(&self.hub.carecredit.data);
        if suspended {
            d.suspended.insert(merchant_number.to_owned());
        } else {
            d.suspended.remove(merchant_number);
        }
    }

    /// Revokes every issued token: the next call gets 401 and must fetch a new one.
    pub fn revoke_tokens(&self) {
        lock(&self.hub.carecredit.data).tokens.clear();
    }

    /// Cardholder lookups answered so far.
    pub fn lookups(&self) -> u32 {
        lock(&self.hub.carecredit.data).lookups
    }
}
