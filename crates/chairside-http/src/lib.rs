//! The HTTP surface of `chairside run`: signed webhooks in, the patient page, the front-desk
//! dashboard, and the operations endpoints.
//!
//! | route | what |
//! |---|---|
//! | `POST /webhooks/stripe`, `/webhooks/sunbit`, `/webhooks/nexhealth`, `/webhooks/twilio` | verified on the raw body before parsing, deduplicated, stored before the 2xx |
//! | `GET /p/{token}` (+ `/pay`, `/apply`, `POST /accept`) | the patient page behind a signed, expiring, revocable token |
//! | `POST /p/{token}/renew` | from the "link no longer valid" page: ask for a fresh link (rate-limited) |
//! | `GET /r/{reference}` | the lenders' return URL: an opaque reference exchanged for a fresh patient link |
//! | `GET /staff`, `/staff/login`, `/staff/workflows/{id}` (+ `POST` actions) | the dashboard: argon2 logins, in-memory sessions, CSRF on every form |
//! | `GET /healthz`, `/readyz`, `/metrics` | operations |
//!
//! Build the state once and serve [`router`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use chairside_http::{HttpConfig, HttpState, Metrics, router};
//! # async fn run(store: Arc<dyn chairside_engine::store::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = HttpConfig::new(
//!     "https://pay.example.test/".parse()?,
//!     secrecy::SecretString::from("a patient-page key of at least thirty-two bytes"),
//! );
//! config.validate()?;
//! let poll = Arc::new(tokio::sync::Notify::new());
//! let state = HttpState::new(store, config, Metrics::install_global()?, poll);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router(state)).await?;
//! # Ok(()) }
//! ```

mod config;
mod metrics;
mod ops;
mod pages;
mod patient;
mod staff;
mod webhooks;

#[cfg(test)]
mod testkit;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tower_http::limit::RequestBodyLimitLayer;

use chairside_engine::clock::{Clock, SystemClock};
use chairside_engine::store::{LinkStore, PatientStore, ReportStore, Store};

pub use chairside_engine::links::{
    PatientToken, TokenError, read_patient_token, sign_patient_token, verify_patient_token,
};
pub use config::{
    ConfigError, HttpConfig, LenderCopy, PracticeSite, StaffAccount, WebhookSecrets, hash_password,
};
pub use metrics::Metrics;

/// Everything the handlers share. Cheap to clone: every field is behind an `Arc`.
#[derive(Clone, Debug)]
pub struct HttpState {
    store: Arc<dyn Store>,
    config: Arc<HttpConfig>,
    metrics: Metrics,
    poll: Arc<Notify>,
    clock: Arc<dyn Clock>,
    sessions: Arc<staff::Sessions>,
    pages: Arc<pages::Pages>,
}

impl HttpState {
    /// The state over `store` with `config`. `poll` is notified when a NexHealth delivery says a
    /// plan changed, so the poller runs at once instead of at its next tick.
    pub fn new(
        store: Arc<dyn Store>,
        config: HttpConfig,
        metrics: Metrics,
        poll: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            config: Arc::new(config),
            metrics,
            poll,
            clock: Arc::new(SystemClock),
            sessions: Arc::new(staff::Sessions::default()),
            pages: Arc::new(pages::Pages::new()),
        }
    }

    /// Replaces the clock that judges token expiry, session expiry and "today" (the demo runs
    /// faster than the wall clock). Webhook signatures are always judged by the system clock,
    /// because senders sign with theirs.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The metrics handle.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store's reporting role: workflows, tasks, the audit trail.
    fn reports(&self) -> &dyn ReportStore {
        &*self.store
    }

    /// The store's patient role: contacts and consent.
    fn patients(&self) -> &dyn PatientStore {
        &*self.store
    }

    /// The store's patient-link role: generations and return references.
    fn links(&self) -> &dyn LinkStore {
        &*self.store
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// The whole application: webhooks, the patient page, the dashboard and the operations
/// endpoints, with the configured body limit on every request (413 beyond it).
pub fn router(state: HttpState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/webhooks/stripe", post(webhooks::stripe))
        .route("/webhooks/sunbit", post(webhooks::sunbit))
        .route("/webhooks/nexhealth", post(webhooks::nexhealth))
        .route("/webhooks/twilio", post(webhooks::twilio))
        .route("/p/{token}", get(patient::page))
        .route("/p/{token}/pay", get(patient::pay))
        .route("/p/{token}/apply", get(patient::apply))
        .route("/p/{token}/accept", post(patient::accept_in_house))
        .route("/p/{token}/renew", post(patient::renew))
        .route("/r/{reference}", get(patient::lender_return))
        .route("/staff", get(staff::dashboard))
        .route("/staff/login", get(staff::login_form).post(staff::login))
        .route("/staff/logout", post(staff::logout))
        .route("/staff/workflows/{id}", get(staff::workflow))
        .route("/staff/workflows/{id}/actions", post(staff::act))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .with_state(state)
}
