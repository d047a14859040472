//! The Sunbit stand-in, from `sunbit-client`'s `wire` module: prequalification links keyed by
//! referral, the hosted prequalification page, purchase reads and voids, and signed webhooks
//! (`Sunbit-Signature: t=…,v1=…`).
//!
//! Sunbit documents no idempotency for the link call, so a repeated call mints a new link; every
//! link of one referral leads to the same application.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, put};
use chrono::{DateTime, Days, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use url::Url;

use super::{check_clinical, check_prefill, decimal, page, patient_portion, persona};
use crate::error::SandboxError;
use crate::fault::System;
use crate::hub::Hub;
use crate::persona::{Lender, LenderDecision, PatientKey};
use crate::webhook::{Outgoing, Signer, sign_stripe_style};

/// Where a Sunbit application stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SunbitState {
    /// Link minted; the patient has not opened it (no purchase yet: reads answer 404).
    Created,
    /// Opened; under review for `remaining` more purchase reads, then approved for `amount`.
    Pending {
        /// Reads still answering without an approval.
        remaining: u32,
        /// Cents approved afterwards.
        amount: i64,
    },
    /// Prequalified for `amount` cents (`PREQUAL_APPROVED`), no purchase yet: the purchase reads
    /// `INCOMPLETE` with the approval amount. Not financing.
    Approved {
        /// Cents.
        amount: i64,
    },
    /// Prequalified for `approved` cents and checked out: the purchase reads `COMPLETED` for
    /// `purchase` cents (what the patient bought: at most the approval and the amount entered).
    Completed {
        /// The prequalification, in cents.
        approved: i64,
        /// The purchase, in cents.
        purchase: i64,
    },
    /// Not prequalified (`PREQUAL_FAILED`).
    Declined,
    /// The patient left (`PREQUAL_ABORTED`).
    Aborted,
    /// Voided (`TRANSACTION_VOIDED`).
    Voided,
}

/// The term in months of the plan every completed purchase of the stand-in reports.
pub const PLAN_TERM_MONTHS: u16 = 12;
/// Its APR, as the stand-in writes it.
pub const PLAN_APR: &str = "9.99";

/// One application, as the sandbox keeps it.
#[derive(Clone, Debug, Serialize)]
pub struct SunbitApplication {
    /// Our reference.
    pub referral: String,
    /// The merchant location.
    pub location: String,
    /// Link tokens minted for it (one per link call).
    pub links: Vec<String>,
    /// Whether any request carried patient data.
    pub prefilled: bool,
    /// Whether Sunbit was asked to text the link.
    pub sms_requested: bool,
    /// The patient, once known.
    pub patient: Option<PatientKey>,
    /// Sunbit's purchase id, once the patient opened the link.
    pub purchase_id: Option<String>,
    /// What the patient entered, in cents.
    pub amount_entered: Option<i64>,
    /// The state.
    pub state: SunbitState,
    /// When the first link was minted.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug)]
struct SbData {
    rng: StdRng,
    apps: Vec<SunbitApplication>,
}

/// The stand-in's state.
pub(crate) struct SunbitStore {
    data: Mutex<SbData>,
    webhook_url: Mutex<Option<Url>>,
    location_webhook_urls: std::collections::HashMap<String, Url>,
    webhook_secret: SecretString,
}

impl fmt::Debug for SunbitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SunbitState").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": status.as_u16(), "message": message})),
    )
        .into_response()
}

fn valid_until() -> String {
    (Utc::now().date_naive() + Days::new(30))
        .format("%Y-%m-%d")
        .to_string()
}

impl SunbitStore {
    pub(crate) fn new(cfg: &crate::config::SunbitConfig, seed: u64) -> Self {
        Self {
            data: Mutex::new(SbData {
                rng: StdRng::seed_from_u64(seed ^ 0x0053_554e_4249),
                apps: Vec::new(),
            }),
            webhook_url: Mutex::new(cfg.webhook_url.clone()),
            location_webhook_urls: cfg.location_webhook_urls.clone(),
            webhook_secret: cfg.webhook_secret.clone(),
        }
    }

    fn emit(&self, hub: &Hub, event: &str, app: &SunbitApplication) {
        let Some(url) = self
            .location_webhook_urls
            .get(&app.location)
            .cloned()
            .or_else(|| lock(&self.webhook_url).clone())
        else {
            return;
        };
        let mut payload = json!({
            "purchaseId": app.purchase_id,
            "location": app.location,
            "referral": app.referral,
        });
        if let Some(entered) = app.amount_entered {
            payload["purchaseAmountEntered"] = json!(decimal(entered));
        }
        match app.state {
            SunbitState::Approved { amount }
            | SunbitState::Completed {
                approved: amount, ..
            } => {
                payload["approvalAmount"] = json!(decimal(amount));
                payload["validUntil"] = json!(valid_until());
            }
            SunbitState::Voided => {
                payload["netPurchaseAmount"] = json!("0.00");
            }
            _ => {}
        }
        let body = json!({"eventType": event, "payload": payload});
        hub.webhooks.enqueue(Outgoing {
            system: System::Sunbit,
            label: event.to_owned(),
            event_id: app.purchase_id.clone(),
            url,
            content_type: "application/json",
            body: body.to_string().into(),
            signer: Signer::Sunbit(self.webhook_secret.clone()),
        });
    }

    /// The patient opened a link and did what their persona does. Returns the referral and the
    /// decision (`None` when the application was already acted on).
    pub(crate) fn patient_acts(
        &self,
        hub: &Hub,
        token: &str,
        patient: Option<PatientKey>,
    ) -> (Option<String>, Option<LenderDecision>) {
        let mut d = lock(&self.data);
        let purchase: [u8; 8] = d.rng.r#gen();
        let Some(app) = d
            .apps
            .iter_mut()
            .find(|a| a.links.iter().any(|l| l == token))
        else {
            return (None, None);
        };
        let referral = Some(app.referral.clone());
        if app.state != SunbitState::Created {
            return (referral, None);
        }
        let who = patient.or(app.patient);
        app.patient = who;
        let entered = patient_portion(hub, who);
        let decision = persona(hub, who).decision(Lender::Sunbit, entered);
        if decision == LenderDecision::Abandoned {
            return (referral, Some(decision));
        }
        app.purchase_id = Some(format!("{}", u64::from_be_bytes(purchase) % 10_000_000_000));
        app.amount_entered = Some(entered);
        let event = match decision {
            LenderDecision::Approved { amount } => {
                app.state = checked_out(amount, entered);
                Some("PREQUAL_APPROVED")
            }
            LenderDecision::Declined => {
                app.state = SunbitState::Declined;
                Some("PREQUAL_FAILED")
            }
            LenderDecision::PendingThenApproved { polls, amount } if polls > 0 => {
                app.state = SunbitState::Pending {
                    remaining: polls,
                    amount,
                };
                None
            }
            LenderDecision::PendingThenApproved { amount, .. } => {
                app.state = checked_out(amount, entered);
                Some("PREQUAL_APPROVED")
            }
            LenderDecision::Abandoned => None,
        };
        let snapshot = app.clone();
        drop(d);
        if let Some(event) = event {
            self.emit(hub, event, &snapshot);
        }
        (referral, Some(decision))
    }

    fn purchase_json(app: &SunbitApplication) -> Value {
        let status = match app.state {
            SunbitState::Voided => "VOIDED",
            SunbitState::Completed { .. } => "COMPLETED",
            _ => "INCOMPLETE",
        };
        let mut v = json!({
            "purchaseId": app.purchase_id,
            "status": status,
            "referral": app.referral,
        });
        if let Some(entered) = app.amount_entered {
            v["purchaseAmountEntered"] = json!(decimal(entered));
        }
        match app.state {
            SunbitState::Approved { amount } => {
                v["approvalAmount"] = json!(decimal(amount));
                v["validUntil"] = json!(valid_until());
            }
            SunbitState::Completed { approved, purchase } => {
                v["approvalAmount"] = json!(decimal(approved));
                v["purchaseAmount"] = json!(decimal(purchase));
                v["validUntil"] = json!(valid_until());
                // The plan the patient chose at checkout.
                v["term"] = json!(PLAN_TERM_MONTHS);
                v["apr"] = json!(PLAN_APR);
            }
            _ => {}
        }
        v
    }
}

/// A persona that prequalifies checks out at once, as patients do on Sunbit's page: the purchase
/// is what they entered, at most what they were approved for (a lower approval is a counteroffer
/// Chairside must see against the amount it asked).
fn checked_out(approved: i64, entered: i64) -> SunbitState {
    SunbitState::Completed {
        approved,
        purchase: approved.min(entered),
    }
}

fn key_ok(hub: &Hub, headers: &HeaderMap) -> bool {
    headers
        .get("sunbit-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == hub.config.sunbit.api_key)
}

fn secret_ok(hub: &Hub, headers: &HeaderMap) -> bool {
    headers
        .get("sunbit-secret")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| {
            s.as_bytes()
                .ct_eq(hub.config.sunbit.api_secret.expose_secret().as_bytes())
                .into()
        })
}

/// The router.
pub(crate) fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/purchase/api/v1/online-link", put(online_link))
        .route("/epay/api/v1/epay", get(get_purchase))
        .route("/epay/api/v1/epay/cancel/{id}", put(cancel))
        .route("/prequal/{token}", get(hosted_page).post(hosted_submit))
        .with_state(hub)
}

async fn online_link(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    if !key_ok(&hub, &headers) {
        return error(StatusCode::FORBIDDEN, "bad credentials");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid body");
    };
    check_clinical(&hub, System::Sunbit, &req);
    let Some(item) = req.as_array().and_then(|a| a.first()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected an array of one link request",
        );
    };
    let (Some(location), Some(referral)) = (item["location"].as_str(), item["referral"].as_str())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "location and referral are required",
        );
    };
    if location.is_empty() {
        return error(StatusCode::NOT_FOUND, "unknown location");
    }
    let phone = item["customerPhoneNumber"].as_str().map(str::to_owned);
    let details = &item["customerDetails"];
    let prefilled = details.is_object() || phone.is_some();
    let send_sms = item["sendSMS"].as_bool().unwrap_or(true);
    let patient = if details.is_object() {
        hub.world
            .patient_by_identity(
                details["firstName"].as_str().unwrap_or_default(),
                details["lastName"].as_str().unwrap_or_default(),
                phone.as_deref(),
                details["zipCode"].as_str(),
            )
            .or_else(|| phone.as_deref().and_then(|p| hub.world.patient_by_phone(p)))
    } else {
        phone.as_deref().and_then(|p| hub.world.patient_by_phone(p))
    }
    .map(|p| p.key);
    if prefilled {
        check_prefill(&hub, System::Sunbit, patient, details["state"].as_str());
    }
    let st = &hub.sunbit;
    let token = {
        let mut d = lock(&st.data);
        let bytes: [u8; 12] = d.rng.r#gen();
        let token = hex::encode(bytes);
        match d.apps.iter_mut().find(|a| a.referral == referral) {
            Some(app) => {
                app.links.push(token.clone());
                app.prefilled |= prefilled;
                app.sms_requested |= send_sms && phone.is_some();
                app.patient = app.patient.or(patient);
            }
            None => d.apps.push(SunbitApplication {
                referral: referral.to_owned(),
                location: location.to_owned(),
                links: vec![token.clone()],
                prefilled,
                sms_requested: send_sms && phone.is_some(),
                patient,
                purchase_id: None,
                amount_entered: None,
                state: SunbitState::Created,
                created_at: Utc::now(),
            }),
        }
        token
    };
    let link = format!("{}prequal/{token}", hub.urls.sunbit);
    // Sunbit texts the link itself: the patient gets it like any other text.
    if send_sms && let Some(key) = patient {
        let hub2 = hub.clone();
        let body = format!("Sunbit: finish your application at {link}");
        tokio::spawn(async move {
            crate::sim::on_message(hub2, key, body).await;
        });
    }
    axum::Json(json!({"url": link})).into_response()
}

async fn get_purchase(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !key_ok(&hub, &headers) || !secret_ok(&hub, &headers) {
        return error(StatusCode::FORBIDDEN, "bad credentials");
    }
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let st = &hub.sunbit;
    let mut d = lock(&st.data);
    let app = match (q.get("purchaseId"), q.get("transactionId")) {
        (Some(id), _) => d
            .apps
            .iter_mut()
            .find(|a| a.purchase_id.as_deref() == Some(id.as_str())),
        (None, Some(tx)) => d.apps.iter_mut().find(|a| &a.referral == tx),
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "purchaseId or transactionId required",
            );
        }
    };
    let Some(app) = app else {
        return error(StatusCode::NOT_FOUND, "no purchase");
    };
    if app.purchase_id.is_none() {
        return error(StatusCode::NOT_FOUND, "no purchase");
    }
    let mut emit = false;
    if let SunbitState::Pending { remaining, amount } = app.state {
        if remaining <= 1 {
            app.state = checked_out(amount, app.amount_entered.unwrap_or(amount));
            emit = true;
        } else {
            app.state = SunbitState::Pending {
                remaining: remaining - 1,
                amount,
            };
        }
        // This read still reports no approval and no purchase.
        let mut v = SunbitStore::purchase_json(app);
        if let Some(o) = v.as_object_mut() {
            o.remove("approvalAmount");
            o.remove("purchaseAmount");
            o.remove("validUntil");
            o.insert("status".into(), json!("INCOMPLETE"));
        }
        let snapshot = app.clone();
        drop(d);
        if emit {
            st.emit(&hub, "PREQUAL_APPROVED", &snapshot);
        }
        return axum::Json(v).into_response();
    }
    axum::Json(SunbitStore::purchase_json(app)).into_response()
}

async fn cancel(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !key_ok(&hub, &headers) || !secret_ok(&hub, &headers) {
        return error(StatusCode::FORBIDDEN, "bad credentials");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid body");
    };
    let st = &hub.sunbit;
    let snapshot = {
        let mut d = lock(&st.data);
        let Some(app) = d
            .apps
            .iter_mut()
            .find(|a| a.purchase_id.as_deref() == Some(id.as_str()))
        else {
            return error(StatusCode::NOT_FOUND, "no purchase");
        };
        if req["transactionId"]
            .as_str()
            .is_some_and(|t| t != app.referral)
        {
            return error(
                StatusCode::BAD_REQUEST,
                "transactionId does not match the purchase",
            );
        }
        app.state = SunbitState::Voided;
        app.clone()
    };
    st.emit(&hub, "TRANSACTION_VOIDED", &snapshot);
    axum::Json(json!({"purchaseId": id, "status": "VOIDED"})).into_response()
}

async fn hosted_page(State(hub): State<Arc<Hub>>, Path(token): Path<String>) -> Response {
    let d = lock(&hub.sunbit.data);
    let Some(app) = d.apps.iter().find(|a| a.links.contains(&token)) else {
        return (
            StatusCode::NOT_FOUND,
            Html(page("Sunbit", &["No such link.".into()], None)),
        )
            .into_response();
    };
    let lines = vec![format!("Status: {:?}", app.state)];
    let action = (app.state == SunbitState::Created).then(|| format!("/prequal/{token}"));
    Html(page(
        "Sunbit prequalification (sandbox)",
        &lines,
        action.as_deref(),
    ))
    .into_response()
}

async fn hosted_submit(
    State(hub): State<Arc<Hub>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let choice = form.get("choice").map_or("persona", String::as_str);
    let st = &hub.sunbit;
    let result = match choice {
        "approve" | "decline" | "leave" => {
            let snapshot = {
                let mut d = lock(&st.data);
                let purchase: [u8; 8] = d.rng.r#gen();
                match d.apps.iter_mut().find(|a| a.links.contains(&token)) {
                    Some(app) if app.state == SunbitState::Created => {
                        let entered = patient_portion(&hub, app.patient);
                        app.amount_entered = Some(entered);
                        app.purchase_id =
                            Some(format!("{}", u64::from_be_bytes(purchase) % 10_000_000_000));
                        app.state = match choice {
                            "approve" => checked_out(entered, entered),
                            "decline" => SunbitState::Declined,
                            _ => SunbitState::Aborted,
                        };
                        Some(app.clone())
                    }
                    _ => None,
                }
            };
            if let Some(app) = &snapshot {
                let event = match app.state {
                    SunbitState::Approved { .. } | SunbitState::Completed { .. } => {
                        "PREQUAL_APPROVED"
                    }
                    SunbitState::Declined => "PREQUAL_FAILED",
                    _ => "PREQUAL_ABORTED",
                };
                st.emit(&hub, event, app);
            }
            format!("{:?}", snapshot.map(|a| a.state))
        }
        _ => format!("{:?}", st.patient_acts(&hub, &token, None).1),
    };
    Html(page(
        "Sunbit prequalification (sandbox)",
        &[format!("Result: {result}")],
        None,
    ))
    .into_response()
}

/// Inspection and control of the Sunbit stand-in. Cheap to clone.
#[derive(Clone)]
pub struct SunbitHandle {
    hub: Arc<Hub>,
}

impl fmt::Debug for SunbitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SunbitHandle").finish_non_exhaustive()
    }
}

impl SunbitHandle {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Every application, oldest first.
    pub fn applications(&self) -> Vec<SunbitApplication> {
        lock(&self.hub.sunbit.data).apps.clone()
    }

    /// The application for our reference, if any.
    pub fn application(&self, referral: &str) -> Option<SunbitApplication> {
        self.applications()
            .into_iter()
            .find(|a| a.referral == referral)
    }

    /// Where webhooks are POSTed from now on.
    pub fn set_webhook_url(&self, url: Option<Url>) {
        *lock(&self.hub.sunbit.webhook_url) = url;
    }

    /// The `Sunbit-Signature` header the stand-in would send for `body` at `timestamp`.
    pub fn sign(&self, body: &[u8], timestamp: i64) -> String {
        sign_stripe_style(
            body,
            timestamp,
            std::slice::from_ref(&self.hub.sunbit.webhook_secret),
        )
    }

    /// Acts on the application as `patient` (by persona), as if they opened its link.
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown referral.
    pub fn act_as(
        &self,
        referral: &str,
        patient: PatientKey,
    ) -> Result<Option<LenderDecision>, SandboxError> {
        let token = self
            .application(referral)
            .and_then(|a| a.links.first().cloned())
            .ok_or(SandboxError::NotFound {
                system: System::Sunbit,
                kind: "application",
            })?;
        Ok(self
            .hub
            .sunbit
            .patient_acts(&self.hub, &token, Some(patient))
            .1)
    }

    /// The patient prequalifies for `amount` cents and leaves without buying: `PREQUAL_APPROVED`,
    /// and the purchase stays `INCOMPLETE` with the approval amount (a prequalification is not
    /// financing).
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown referral; [`SandboxError::InvalidState`] when it
    /// was already decided.
    pub fn prequalify_without_purchase(
        &self,
        referral: &str,
        amount: i64,
    ) -> Result<(), SandboxError> {
        let st = &self.hub.sunbit;
        let snapshot = {
            let mut d = lock(&st.data);
            let purchase: [u8; 8] = d.rng.r#gen();
            let app = d.apps.iter_mut().find(|a| a.referral == referral).ok_or(
                SandboxError::NotFound {
                    system: System::Sunbit,
                    kind: "application",
                },
            )?;
            if app.state != SunbitState::Created {
                return Err(SandboxError::InvalidState {
                    system: System::Sunbit,
                    what: "the application was already decided",
                });
            }
            app.purchase_id = Some(format!("{}", u64::from_be_bytes(purchase) % 10_000_000_000));
            app.amount_entered = Some(patient_portion(&self.hub, app.patient));
            app.state = SunbitState::Approved { amount };
            app.clone()
        };
        st.emit(&self.hub, "PREQUAL_APPROVED", &snapshot);
        Ok(())
    }

    /// The patient checks out after a prequalification, buying `purchase` cents (at most the
    /// approval): the purchase reads `COMPLETED`.
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown referral; [`SandboxError::InvalidState`] when it
    /// was not prequalified.
    pub fn complete_purchase(&self, referral: &str, purchase: i64) -> Result<(), SandboxError> {
        let mut d = lock(&self.hub.sunbit.data);
        let app =
            d.apps
                .iter_mut()
                .find(|a| a.referral == referral)
                .ok_or(SandboxError::NotFound {
                    system: System::Sunbit,
                    kind: "application",
                })?;
        let SunbitState::Approved { amount } = app.state else {
            return Err(SandboxError::InvalidState {
                system: System::Sunbit,
                what: "the application is not prequalified",
            });
        };
        app.state = SunbitState::Completed {
            approved: amount,
            purchase: purchase.min(amount),
        };
        Ok(())
    }

    /// The patient leaves an unfinished application: `PREQUAL_ABORTED`.
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown referral; [`SandboxError::InvalidState`] when it
    /// was already decided.
    pub fn abort(&self, referral: &str) -> Result<(), SandboxError> {
        let st = &self.hub.sunbit;
        let snapshot = {
            let mut d = lock(&st.data);
            let app = d.apps.iter_mut().find(|a| a.referral == referral).ok_or(
                SandboxError::NotFound {
                    system: System::Sunbit,
                    kind: "application",
                },
            )?;
            if !matches!(
                app.state,
                SunbitState::Created | SunbitState::Pending { .. }
            ) {
                return Err(SandboxError::InvalidState {
                    system: System::Sunbit,
                    what: "the application was already decided",
                });
            }
            app.state = SunbitState::Aborted;
            app.clone()
        };
        st.emit(&self.hub, "PREQUAL_ABORTED", &snapshot);
        Ok(())
    }
}
