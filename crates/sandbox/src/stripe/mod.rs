//! The Stripe stand-in: a stateful subset of the REST API (API version `2026-10-28.endive`),
//! Stripe's idempotency rules, a hosted checkout page, and signed webhook events.

mod checkout;
mod resources;
mod schedules;
mod store;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use rand::SeedableRng;
use rand::rngs::StdRng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use url::Url;

pub use schedules::BilledInstallment;

use crate::error::SandboxError;
use crate::fault::System;
use crate::hub::Hub;
use crate::persona::TestCard;
use crate::webhook::{Delivery, Outgoing, Signer, sign_stripe_style};
use checkout::PayOutcome;
use resources::{Ctx, expand};
use store::{ApiError, Params, StripeData};

/// The API version the stand-in speaks and stamps on events.
pub const API_VERSION: &str = "2026-10-28.endive";

/// What an `Idempotency-Key` holds.
#[derive(Clone, Debug)]
enum IdemSlot {
    InFlight,
    Done {
        fingerprint: (String, String, Value),
        status: StatusCode,
        body: Bytes,
        request_id: String,
    },
}

/// The Stripe stand-in's state.
pub(crate) struct StripeState {
    data: Mutex<StripeData>,
    idem: Mutex<HashMap<String, IdemSlot>>,
    processing_delay: Mutex<Duration>,
    webhook_url: Mutex<Option<Url>>,
    secrets: Mutex<Vec<SecretString>>,
    secret_key: SecretString,
    base_url: String,
    keys: KeyNames,
}

#[derive(Clone, Debug)]
struct KeyNames {
    patient: String,
    workflow: String,
    installment: String,
}

impl fmt::Debug for StripeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeState")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StripeState {
    pub(crate) fn new(cfg: &crate::config::StripeConfig, seed: u64, base_url: &Url) -> Self {
        let keys = KeyNames {
            patient: cfg.patient_metadata_key.clone(),
            workflow: cfg.workflow_metadata_key.clone(),
            installment: cfg.installment_metadata_key.clone(),
        };
        Self {
            data: Mutex::new(StripeData::new(StdRng::seed_from_u64(
                seed ^ 0x0057_5249_5045,
            ))),
            idem: Mutex::new(HashMap::new()),
            processing_delay: Mutex::new(Duration::ZERO),
            webhook_url: Mutex::new(cfg.webhook_url.clone()),
            secrets: Mutex::new(cfg.webhook_secrets.clone()),
            secret_key: cfg.secret_key.clone(),
            base_url: base_url.to_string(),
            keys,
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(token) = value.strip_prefix("Bearer ") else {
            return false;
        };
        token
            .as_bytes()
            .ct_eq(self.secret_key.expose_secret().as_bytes())
            .into()
    }

    fn ctx<'a>(&'a self, key: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            base_url: &self.base_url,
            idempotency_key: key,
        }
    }
}

/// The router: `/v1/…` and the hosted checkout page.
pub(crate) fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/checkout/{id}", get(checkout_page).post(checkout_submit))
        .route("/invoice/{id}", get(invoice_page).post(invoice_submit))
        .fallback(api)
        .with_state(hub)
}

/// Queues the events created since the last drain for delivery.
fn drain(hub: &Hub) {
    let st = &hub.stripe;
    let events: Vec<Value> = {
        let mut data = lock(&st.data);
        let ids = std::mem::take(&mut data.outbox);
        ids.iter()
            .filter_map(|id| data.events.get(id).cloned())
            .collect()
    };
    let Some(url) = lock(&st.webhook_url).clone() else {
        return;
    };
    let secrets = lock(&st.secrets).clone();
    for ev in events {
        let body = serde_json::to_vec_pretty(&ev).unwrap_or_default();
        hub.webhooks.enqueue(Outgoing {
            system: System::Stripe,
            label: ev["type"].as_str().unwrap_or_default().to_owned(),
            event_id: ev["id"].as_str().map(str::to_owned),
            url: url.clone(),
            content_type: "application/json; charset=utf-8",
            body: body.into(),
            signer: Signer::Stripe(secrets.clone()),
        });
    }
}

fn json_response(status: StatusCode, body: Bytes, request_id: &str, version: &str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(version) {
        h.insert("stripe-version", v);
    }
    resp
}

async fn api(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let st = &hub.stripe;
    let request_id = lock(&st.data).id("req_");
    let version = headers
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(API_VERSION)
        .to_owned();
    if !st.authorized(&headers) {
        let body = json!({"error": {
            "type": "invalid_request_error",
            "message": "Invalid API Key provided.",
        }});
        return json_response(
            StatusCode::UNAUTHORIZED,
            body.to_string().into(),
            &request_id,
            &version,
        );
    }
    let path = uri.path().to_owned();
    let raw = if method == Method::GET {
        uri.query().unwrap_or("").to_owned()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let params = crate::form::decode(&raw);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // As Stripe: an unknown parameter or a malformed value is refused before anything runs (and
    // before an idempotency key is taken, so the key stays usable).
    if let Err(e) = validate::check(method.as_str(), &segs, &params) {
        return finish(Err(e), &request_id, &version);
    }

    if method != Method::POST {
        let result = {
            let mut data = lock(&st.data);
            route_get(&mut data, &segs, &Params(&params), &method, &path)
                .map(|v| expand(&data, v, &Params(&params)))
        };
        drain(&hub);
        return finish(result, &request_id, &version);
    }

    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fingerprint = (method.to_string(), path.clone(), params.clone());
    if let Some(key) = &key {
        if key.chars().count() > 255 {
            return finish(
                Err(ApiError::invalid(
                    "Idempotency-Key",
                    "Idempotency keys can be at most 255 characters long.",
                )),
                &request_id,
                &version,
            );
        }
        let mut idem = lock(&st.idem);
        match idem.get(key) {
            None => {
                idem.insert(key.clone(), IdemSlot::InFlight);
            }
            Some(IdemSlot::InFlight) => {
                let err = ApiError {
                    status: StatusCode::CONFLICT,
                    body: json!({"error": {
                        "type": "idempotency_error",
                        "code": "idempotency_key_in_use",
                        "message": "There is currently another in-progress request using this Idempotency Key (that probably means you submitted twice, and the other request is still going through). Please try again later.",
                    }}),
                    store: false,
                };
                drop(idem);
                let mut resp = finish(Err(err), &request_id, &version);
                resp.headers_mut()
                    .insert("stripe-should-retry", HeaderValue::from_static("true"));
                return resp;
            }
            Some(IdemSlot::Done {
                fingerprint: stored,
                status,
                body,
                request_id: original,
            }) => {
                if *stored != fingerprint {
                    let err = ApiError::invalid(
                        "",
                        format!(
                            "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                        ),
                    );
                    let mut err = err;
                    err.body["error"]["type"] = json!("idempotency_error");
                    if let Some(o) = err.body["error"].as_object_mut() {
                        o.remove("param");
                    }
                    drop(idem);
                    return finish(Err(err), &request_id, &version);
                }
                let mut resp = json_response(*status, body.clone(), &request_id, &version);
                let h = resp.headers_mut();
                h.insert("idempotent-replayed", HeaderValue::from_static("true"));
                if let Ok(v) = HeaderValue::from_str(original) {
                    h.insert("original-request", v);
                }
                if let Ok(v) = HeaderValue::from_str(key) {
                    h.insert("idempotency-key", v);
                }
                return resp;
            }
        }
    }

    let delay = *lock(&st.processing_delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let result = {
        let mut data = lock(&st.data);
        let ctx = st.ctx(key.as_deref());
        route_post(&hub, &mut data, &ctx, &segs, &Params(&params), &path)
            .map(|v| expand(&data, v, &Params(&params)))
    };
    drain(&hub);
    let (status, body, store) = match &result {
        Ok(v) => (StatusCode::OK, Bytes::from(v.to_string()), true),
        Err(e) => (e.status, Bytes::from(e.body.to_string()), e.store),
    };
    if let Some(key) = &key {
        let mut idem = lock(&st.idem);
        if store {
            idem.insert(
                key.clone(),
                IdemSlot::Done {
                    fingerprint,
                    status,
                    body: body.clone(),
                    request_id: request_id.clone(),
                },
            );
        } else {
            // Validation failed: nothing is stored, the key can be used again.
            idem.remove(key);
        }
    }
    let mut resp = json_response(status, body, &request_id, &version);
    if let Some(key) = key
        && let Ok(v) = HeaderValue::from_str(&key)
    {
        resp.headers_mut().insert("idempotency-key", v);
    }
    resp
}

fn finish(result: Result<Value, ApiError>, request_id: &str, version: &str) -> Response {
    match result {
        Ok(v) => json_response(StatusCode::OK, v.to_string().into(), request_id, version),
        Err(e) => json_response(e.status, e.body.to_string().into(), request_id, version),
    }
}

fn route_get(
    d: &mut StripeData,
    segs: &[&str],
    p: &Params<'_>,
    method: &Method,
    path: &str,
) -> Result<Value, ApiError> {
    if *method != Method::GET {
        return Err(ApiError::unrecognized(method.as_str(), path));
    }
    match segs {
        ["v1", "customers"] => d.list_customers(p),
        ["v1", "customers", "search"] => d.search_customers(p),
        ["v1", "customers", id] => d.get_customer(id),
        ["v1", "customers", id, "payment_methods"] => d.list_payment_methods(id, p),
        ["v1", "products"] => d.list_products(p),
        ["v1", "products", id] => d.get_product(id),
        ["v1", "prices"] => d.list_prices(p),
        ["v1", "prices", id] => d.get_price(id),
        ["v1", "subscription_schedules"] => d.list_schedules(p),
        ["v1", "subscription_schedules", id] => d.get_schedule(id),
        ["v1", "subscriptions", id] => d.get_subscription(id),
        ["v1", "checkout", "sessions"] => d.list_sessions(p),
        ["v1", "checkout", "sessions", id] => d.get_session(id),
        ["v1", "checkout", "sessions", id, "line_items"] => d.session_line_items(id, p),
        ["v1", "payment_intents"] => d.list_payment_intents(p),
        ["v1", "payment_intents", id] => d.get_payment_intent(id),
        ["v1", "payment_methods", id] => d.get_payment_method(id),
        ["v1", "charges", id] => d.get_charge(id),
        ["v1", "invoices"] => d.list_invoices(p),
        ["v1", "invoices", id] => d.get_invoice(id),
        ["v1", "refunds"] => d.list_refunds(p),
        ["v1", "refunds", id] => d.get_refund(id),
        ["v1", "setup_intents", id] => d
            .setup_intents
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("setup_intent", id)),
        ["v1", "events"] => d.list_events(p),
        ["v1", "events", id] => d.get_event(id),
        _ => Err(ApiError::unrecognized("GET", path)),
    }
}

fn route_post(
    hub: &Hub,
    d: &mut StripeData,
    ctx: &Ctx<'_>,
    segs: &[&str],
    p: &Params<'_>,
    path: &str,
) -> Result<Value, ApiError> {
    match segs {
        ["v1", "customers"] => d.create_customer(p),
        ["v1", "customers", id] => d.update_customer(id, p),
        ["v1", "products"] => d.create_product(p),
        ["v1", "prices"] => d.create_price(p),
        ["v1", "subscription_schedules"] => {
            let (schedule, started) = d.create_schedule(ctx, p)?;
            if started && hub.config.stripe.bill_on_start {
                let id = schedule["id"].as_str().unwrap_or_default().to_owned();
                d.bill_next(ctx, &id);
                return d.get_schedule(&id);
            }
            Ok(schedule)
        }
        ["v1", "subscription_schedules", id] => d.update_schedule(ctx, id, p),
        ["v1", "subscription_schedules", id, "cancel"] => d.cancel_schedule(ctx, id, p),
        ["v1", "subscription_schedules", id, "release"] => d.release_schedule(ctx, id, p),
        ["v1", "checkout", "sessions"] => d.create_session(ctx, p),
        ["v1", "checkout", "sessions", id, "expire"] => d.expire_session(ctx, id),
        ["v1", "payment_intents"] => d.create_payment_intent(ctx, p),
        ["v1", "payment_intents", id, "confirm"] => d.confirm_payment_intent(ctx, id, p),
        ["v1", "payment_intents", id, "cancel"] => d.cancel_payment_intent(ctx, id, p),
        ["v1", "payment_methods", id, "attach"] => d.attach_payment_method(id, p),
        ["v1", "invoices", id, "pay"] => d.pay_invoice(ctx, id),
        ["v1", "refunds"] => d.create_refund(ctx, p),
        _ => Err(ApiError::unrecognized("POST", path)),
    }
}

/// The card a seeded patient would pay this session with.
fn patient_card(hub: &Hub, session: &Value, data: &StripeData) -> TestCard {
    let email = session["customer"]
        .as_str()
        .and_then(|c| data.customers.get(c))
        .and_then(|c| c["email"].as_str().map(str::to_owned))
        .or_else(|| session["customer_email"].as_str().map(str::to_owned));
    email
        .and_then(|e| hub.world.patient_by_email(&e))
        .map(|p| p.seed.card)
        .unwrap_or_default()
}

async fn checkout_page(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    let mut data = lock(&hub.stripe.data);
    let Ok(session) = data.get_session(&id) else {
        drop(data);
        return (
            StatusCode::NOT_FOUND,
            Html("<p>No such checkout session.</p>"),
        )
            .into_response();
    };
    let lines = data.session_lines.get(&id).cloned().unwrap_or_default();
    let card = patient_card(&hub, &session, &data);
    drop(data);
    drain(&hub);
    Html(checkout::page(&session, &lines, None, card)).into_response()
}

async fn checkout_submit(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = crate::form::decode(&String::from_utf8_lossy(&body));
    let card = form["card"]
        .as_str()
        .and_then(TestCard::from_name)
        .unwrap_or_default();
    match pay(&hub, &id, card) {
        Err(_) => (
            StatusCode::NOT_FOUND,
            Html("<p>No such checkout session.</p>"),
        )
            .into_response(),
        Ok((outcome, session)) => {
            let lines = lock(&hub.stripe.data)
                .session_lines
                .get(&id)
                .cloned()
                .unwrap_or_default();
            match outcome {
                CheckoutResult::Paid { .. } => {
                    if let Some(success) = session["success_url"].as_str() {
                        let target = success.replace("{CHECKOUT_SESSION_ID}", &id);
                        return Redirect::to(&target).into_response();
                    }
                    Html(checkout::page(&session, &lines, None, card)).into_response()
                }
                CheckoutResult::Declined => (
                    StatusCode::PAYMENT_REQUIRED,
                    Html(checkout::page(
                        &session,
                        &lines,
                        Some("Your card was declined."),
                        card,
                    )),
                )
                    .into_response(),
                CheckoutResult::NotOpen { .. } => (
                    StatusCode::CONFLICT,
                    Html(checkout::page(&session, &lines, None, card)),
                )
                    .into_response(),
            }
        }
    }
}

/// The hosted invoice page (`hosted_invoice_url`): the amount due and a Pay button while the
/// invoice is open (a failed installment paid, or authenticated, by the patient).
fn invoice_html(invoice: &Value) -> String {
    let id = invoice["id"].as_str().unwrap_or_default();
    let amount = invoice["amount_due"].as_i64().unwrap_or(0);
    let dollars = format!("${}.{:02}", amount / 100, amount % 100);
    let status = invoice["status"].as_str().unwrap_or_default();
    let action = if status == "open" {
        format!(
            "<form method=\"post\" action=\"/invoice/{id}\"><button type=\"submit\">Pay {dollars}</button></form>"
        )
    } else {
        format!("<p>This invoice is {status}.</p>")
    };
    format!(
        "<!doctype html><html><head><title>Invoice</title></head><body><h1>Invoice {id}</h1><p>Amount due: {dollars}</p>{action}</body></html>"
    )
}

async fn invoice_page(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    match lock(&hub.stripe.data).get_invoice(&id) {
        Ok(invoice) => Html(invoice_html(&invoice)).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, Html("<p>No such invoice.</p>")).into_response(),
    }
}

async fn invoice_submit(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    let result = {
        let mut data = lock(&hub.stripe.data);
        let ctx = hub.stripe.ctx(None);
        if data.get_invoice(&id).is_err() {
            return (StatusCode::NOT_FOUND, Html("<p>No such invoice.</p>")).into_response();
        }
        data.pay_invoice(&ctx, &id)
            .or_else(|_| data.get_invoice(&id))
    };
    drain(&hub);
    match result {
        Ok(invoice) => Html(invoice_html(&invoice)).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, Html("<p>No such invoice.</p>")).into_response(),
    }
}

fn pay(hub: &Hub, id: &str, card: TestCard) -> Result<(CheckoutResult, Value), SandboxError> {
    let (outcome, session) = {
        let mut data = lock(&hub.stripe.data);
        let outcome = data
            .complete_session(id, card)
            .map_err(|_| SandboxError::NotFound {
                system: System::Stripe,
                kind: "checkout session",
            })?;
        (outcome, data.sessions.get(id).cloned().unwrap_or_default())
    };
    drain(hub);
    let result = match outcome {
        PayOutcome::Paid(pi) => CheckoutResult::Paid { payment_intent: pi },
        PayOutcome::Declined => CheckoutResult::Declined,
        PayOutcome::NotOpen(status) => CheckoutResult::NotOpen { status },
    };
    Ok((result, session))
}

/// What paying a checkout session did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckoutResult {
    /// Paid (or, for `mode=setup`, the card was saved): the payment intent (or setup intent).
    Paid {
        /// `pi_…` (or `seti_…`).
        payment_intent: String,
    },
    /// The card was declined; the session stays open.
    Declined,
    /// The session was not open (`complete` or `expired`).
    NotOpen {
        /// Its status.
        status: String,
    },
}

/// Seeding, inspection and control of the Stripe stand-in. Cheap to clone.
#[derive(Clone)]
pub struct StripeHandle {
    hub: Arc<Hub>,
}

impl fmt::Debug for StripeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeHandle").finish_non_exhaustive()
    }
}

fn meta(obj: &Value, key: &str) -> Option<String> {
    obj["metadata"][key].as_str().map(str::to_owned)
}

impl StripeHandle {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    fn st(&self) -> &StripeState {
        &self.hub.stripe
    }

    /// Bills the next installment of every active (or due) schedule, in creation order: an
    /// invoice per schedule, paid or failed by the card on file, with `invoice.paid` or
    /// `invoice.payment_failed` (and `subscription_schedule.completed` after the last one).
    /// Waits until the resulting webhooks were delivered.
    pub async fn advance_schedules(&self) -> Vec<BilledInstallment> {
        let billed = {
            let mut data = lock(&self.st().data);
            let ctx = self.st().ctx(None);
            let now = store::now();
            let ids: Vec<String> = data
                .schedules
                .oldest_first()
                .filter(|s| {
                    s["status"] == "active"
                        || (s["status"] == "not_started"
                            && s["phases"][0]["start_date"]
                                .as_i64()
                                .is_some_and(|t| t <= now))
                })
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect();
            ids.iter()
                .filter_map(|id| data.bill_next(&ctx, id))
                .collect()
        };
        drain(&self.hub);
        self.hub.webhooks.flush().await;
        billed
    }

    /// Bills the next installment of one schedule (starting it if it has not started).
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown schedule.
    pub async fn advance_schedule(
        &self,
        id: &str,
    ) -> Result<Option<BilledInstallment>, SandboxError> {
        let billed = {
            let mut data = lock(&self.st().data);
            if !data.schedules.contains(id) {
                return Err(SandboxError::NotFound {
                    system: System::Stripe,
                    kind: "subscription schedule",
                });
            }
            let ctx = self.st().ctx(None);
            data.bill_next(&ctx, id)
        };
        drain(&self.hub);
        self.hub.webhooks.flush().await;
        Ok(billed)
    }

    /// Pays a checkout session as the patient would on the hosted page, with `card`.
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown session.
    pub async fn pay_checkout(
        &self,
        session: &str,
        card: TestCard,
    ) -> Result<CheckoutResult, SandboxError> {
        let (result, _) = pay(&self.hub, session, card)?;
        self.hub.webhooks.flush().await;
        Ok(result)
    }

    /// Marks an open invoice paid (the patient paid a `send_invoice` invoice), emitting
    /// `invoice.paid`.
    ///
    /// # Errors
    /// [`SandboxError::NotFound`] for an unknown invoice, [`SandboxError::InvalidState`] when it
    /// is not open.
    pub async fn pay_invoice(&self, id: &str) -> Result<(), SandboxError> {
        let res = {
            let mut data = lock(&self.st().data);
            let ctx = self.st().ctx(None);
            if !data.invoices.contains(id) {
                return Err(SandboxError::NotFound {
                    system: System::Stripe,
                    kind: "invoice",
                });
            }
            data.pay_invoice(&ctx, id)
        };
        drain(&self.hub);
        self.hub.webhooks.flush().await;
        res.map(|_| ()).map_err(|_| SandboxError::InvalidState {
            system: System::Stripe,
            what: "the invoice is not open",
        })
    }

    /// Emits (and delivers) an arbitrary event with `object` as `data.object`; returns its id.
    pub async fn emit_event(&self, kind: &str, object: Value) -> String {
        let id = lock(&self.st().data).event(kind, object, None);
        drain(&self.hub);
        self.hub.webhooks.flush().await;
        id
    }

    /// Waits until every queued webhook was delivered or given up on.
    pub async fn flush_webhooks(&self) {
        self.hub.webhooks.flush().await;
    }

    /// Where events are POSTed from now on (`None`: stored only).
    pub fn set_webhook_url(&self, url: Option<Url>) {
        *lock(&self.st().webhook_url) = url;
    }

    /// The signing secrets from now on (one `v1` per secret).
    pub fn set_webhook_secrets(&self, secrets: Vec<SecretString>) {
        *lock(&self.st().secrets) = secrets;
    }

    /// Makes every POST hold its idempotency key this long before executing (to provoke 409s).
    pub fn set_processing_delay(&self, delay: Duration) {
        *lock(&self.st().processing_delay) = delay;
    }

    /// The `Stripe-Signature` header the stand-in would send for `payload` at `timestamp`.
    pub fn sign(&self, payload: &[u8], timestamp: i64) -> String {
        sign_stripe_style(payload, timestamp, &lock(&self.st().secrets))
    }

    /// Any object by id (`cus_…`, `sub_sched_…`, `cs_…`, `pi_…`, `in_…`, `evt_…`, ...).
    pub fn object(&self, id: &str) -> Option<Value> {
        let data = lock(&self.st().data);
        data.lookup(id).or_else(|| data.events.get(id)).cloned()
    }

    fn all(&self, pick: impl Fn(&StripeData) -> Vec<Value>) -> Vec<Value> {
        pick(&lock(&self.st().data))
    }

    /// Every customer, oldest first.
    pub fn customers(&self) -> Vec<Value> {
        self.all(|d| d.customers.oldest_first().cloned().collect())
    }

    /// Every subscription schedule, oldest first.
    pub fn schedules(&self) -> Vec<Value> {
        self.all(|d| d.schedules.oldest_first().cloned().collect())
    }

    /// Every checkout session, oldest first.
    pub fn checkout_sessions(&self) -> Vec<Value> {
        self.all(|d| d.sessions.oldest_first().cloned().collect())
    }

    /// Every payment intent (including those behind invoices), oldest first.
    pub fn payment_intents(&self) -> Vec<Value> {
        self.all(|d| d.payment_intents.oldest_first().cloned().collect())
    }

    /// Every invoice, oldest first.
    pub fn invoices(&self) -> Vec<Value> {
        self.all(|d| d.invoices.oldest_first().cloned().collect())
    }

    /// Every event, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.all(|d| d.events.oldest_first().cloned().collect())
    }

    /// Webhook deliveries of Stripe events so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.hub
            .webhooks
            .deliveries()
            .into_iter()
            .filter(|d| d.system == System::Stripe)
            .collect()
    }

    /// Customer ids grouped by the value of metadata `key`.
    pub fn customers_by_metadata(&self, key: &str) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.customers() {
            if let (Some(v), Some(id)) = (meta(&c, key), c["id"].as_str()) {
                out.entry(v).or_default().push(id.to_owned());
            }
        }
        out
    }

    /// Invariant: customers per patient (metadata `patient_metadata_key` from the config). Every
    /// value must be 1.
    pub fn customers_per_patient(&self) -> BTreeMap<String, usize> {
        self.customers_by_metadata(&self.st().keys.patient)
            .into_iter()
            .map(|(k, v)| (k, v.len()))
            .collect()
    }

    /// Invariant: schedules per workflow (metadata `workflow_metadata_key` on the schedule, or on
    /// its first phase), canceled ones included. Every value must be 1.
    pub fn schedules_per_workflow(&self) -> BTreeMap<String, usize> {
        let key = &self.st().keys.workflow;
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        for s in self.schedules() {
            let wf = meta(&s, key).or_else(|| meta(&s["phases"][0], key));
            if let Some(wf) = wf {
                *out.entry(wf).or_default() += 1;
            }
        }
        out
    }

    /// Invariant: successful charges per installment. Schedule installments are keyed
    /// `(sub_sched_…, index)`; off-session payment intents carrying the workflow and installment
    /// metadata keys are keyed `(workflow, installment)`. Every value must be 1.
    pub fn charges_per_installment(&self) -> BTreeMap<(String, String), u32> {
        let keys = &self.st().keys;
        let data = lock(&self.st().data);
        let mut out: BTreeMap<(String, String), u32> = data
            .installment_charges
            .iter()
            .map(|((s, i), n)| ((s.clone(), i.to_string()), *n))
            .collect();
        for pi in data.payment_intents.oldest_first() {
            if pi["status"] != "succeeded" {
                continue;
            }
            if let (Some(wf), Some(inst)) = (meta(pi, &keys.workflow), meta(pi, &keys.installment))
            {
                *out.entry((wf, inst)).or_default() += 1;
            }
        }
        out
    }

    /// Pay-link (payment-mode) checkout sessions per workflow (metadata), to check a pay link
    /// was made once. Card-saving (setup-mode) sessions are not pay links.
    pub fn checkout_sessions_per_workflow(&self) -> BTreeMap<String, usize> {
        let key = &self.st().keys.workflow;
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        for s in self.checkout_sessions() {
            if s["mode"] == "setup" {
                continue;
            }
            if let Some(wf) = meta(&s, key) {
                *out.entry(wf).or_default() += 1;
            }
        }
        out
    }
}

/// Runs `advance_schedules` on a clock.
pub(crate) async fn clock(hub: Arc<Hub>, every: Duration) {
    let handle = StripeHandle::new(hub.clone());
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            () = hub.shutdown.wait() => return,
            _ = tick.tick() => { handle.advance_schedules().await; }
        }
    }
}
