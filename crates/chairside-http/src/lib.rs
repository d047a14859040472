//! The HTTP surface of `chairside run`: signed webhooks in, the patient page, the front-desk
//! dashboard, and the operations endpoints.
//!
//! | route | what |
//! |---|---|
//! | `POST /webhooks/stripe`, `/webhooks/twilio` | account-wide secrets; verified on the raw body before parsing, deduplicated, stored before the 2xx |
//! | `POST /webhooks/sunbit/{practice}`, `/webhooks/nexhealth/{practice}` | the same, with that practice's secrets only (the un-scoped `/webhooks/sunbit` and `/webhooks/nexhealth` answer only while one practice is configured) |
//! | `GET /p/{token}` (+ `/pay`, `/apply`, `POST /accept`) | the patient page behind a signed, expiring, revocable token |
//! | `POST /p/{token}/report` | the patient's report of a link-only lender's decision: one staff task, decides nothing (docs/lenders.md) |
//! | `POST /p/{token}/renew` | from the "link no longer valid" page: ask for a fresh link (rate-limited) |
//! | `GET /r/{reference}` | the lenders' return URL: an opaque reference exchanged for a fresh patient link |
//! | `GET /staff`, `/staff/login`, `/staff/workflows/{id}` (+ `POST` actions) | the dashboard: argon2 logins throttled per account and address, in-memory sessions, CSRF on every form |
//! | `GET /healthz`, `/readyz` | operations |
//! | `GET /metrics` | Prometheus text, for the bearer of the metrics token, or loopback clients when none is configured |
//!
//! Build the state once and serve [`router`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use chairside_http::{HttpConfig, HttpState, Metrics, ServeLimits, router, serve};
//! # async fn run(store: Arc<dyn chairside_engine::store::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = HttpConfig::new(
//!     "https://pay.example.test/".parse()?,
//!     secrecy::SecretString::from("a patient-page key of at least thirty-two bytes"),
//! );
//! config.validate()?;
//! let poll = Arc::new(tokio::sync::Notify::new());
//! let state = HttpState::new(store, config, Metrics::install_global()?, poll);
//! let limits = ServeLimits::of(state.config());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, router(state), limits, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod config;
mod consent;
mod intake;
mod lang;
mod metrics;
pub mod notices;
mod ops;
mod page_marks;
mod pages;
mod patient;
mod serve;
mod staff;
mod webhooks;

#[cfg(test)]
mod testkit;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use chairside_engine::clock::{Clock, SystemClock};
use chairside_engine::store::{LinkStore, LoginStore, PatientStore, ReportStore, Store};

pub use chairside_engine::links::{
    PatientToken, TokenError, read_patient_token, sign_patient_token, verify_patient_token,
};
pub use config::{
    ConfigError, HashProblem, HttpConfig, LenderCopy, LoginLimits, PracticeSite, StaffAccount,
    WebhookSecrets, check_password_hash, hash_password,
};
pub use metrics::Metrics;
pub use serve::{ServeLimits, serve};

/// Everything the handlers share. Cheap to clone: every field is behind an `Arc`.
#[derive(Clone, Debug)]
pub struct HttpState {
    store: Arc<dyn Store>,
    config: Arc<HttpConfig>,
    metrics: Metrics,
    poll: Arc<Notify>,
    clock: Arc<dyn Clock>,
    sessions: Arc<staff::Sessions>,
    pub(crate) login: Arc<staff::LoginGuard>,
    pages: Arc<pages::Pages>,
    /// The patient page's link lines, written behind ([`page_marks`]).
    marks: Arc<page_marks::MarkBuffer>,
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
        let links: Arc<dyn LinkStore> = store.clone();
        Self {
            marks: page_marks::MarkBuffer::new(links, page_marks::LINGER, page_marks::CAPACITY),
            store,
            login: Arc::new(staff::LoginGuard::new(config.login.concurrent_hashes)),
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

    /// The store's login role: throttling and the login audit.
    fn logins(&self) -> &dyn LoginStore {
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

    /// Writes the patient page's link lines still queued (written behind, in groups: see
    /// `docs/performance.md`). Call it when the server has stopped, before the process exits.
    pub async fn flush_page_marks(&self) {
        self.marks.flush().await;
    }
}

/// The whole application: webhooks, the patient page, the dashboard and the operations
/// endpoints. Every route has a body limit (413 beyond it): [`HttpConfig::body_limit`] on the
/// webhooks, [`HttpConfig::form_body_limit`] everywhere else. A request that takes longer than
/// [`HttpConfig::request_timeout`], body included, is answered 408. With an `https` public base
/// URL every response carries `Strict-Transport-Security`.
///
/// Serve it with [`serve`], which gives the handlers the peer address `/metrics` needs.
pub fn router(state: HttpState) -> Router {
    let hook = state.config.body_limit;
    let form = state.config.form_body_limit;
    let timeout = state.config.request_timeout;
    let https = state.config.public_base_url.scheme() == "https";
    let webhooks = Router::new()
        .route("/webhooks/stripe", post(webhooks::stripe))
        .route("/webhooks/sunbit", post(webhooks::sunbit))
        .route("/webhooks/nexhealth", post(webhooks::nexhealth))
        .route("/webhooks/sunbit/{practice}", post(webhooks::sunbit_scoped))
        .route(
            "/webhooks/nexhealth/{practice}",
            post(webhooks::nexhealth_scoped),
        )
        .route("/webhooks/twilio", post(webhooks::twilio))
        .layer(DefaultBodyLimit::max(hook))
        .layer(RequestBodyLimitLayer::new(hook));
    let rest = Router::new()
        .route("/p/{token}", get(patient::page))
        .route("/p/{token}/pay", get(patient::pay))
        .route(
            "/p/{token}/card",
            get(patient::card).post(patient::save_card),
        )
        .route("/p/{token}/invoices", post(patient::choose_invoices))
        .route("/p/{token}/apply", get(patient::apply))
        .route("/p/{token}/accept", post(patient::accept_in_house))
        .route("/p/{token}/decline", post(patient::decline_in_house))
        .route("/p/{token}/renew", post(patient::renew))
        .route("/p/{token}/restart", post(patient::restart))
        .route("/p/{token}/report", post(patient::report::report))
        .route(
            "/p/{token}/texts",
            get(consent::opt_in_form).post(consent::opt_in),
        )
        .route("/r/{reference}", get(patient::lender_return))
        .route("/paid", get(patient::paid))
        .route("/staff", get(staff::dashboard))
        .route("/staff/login", get(staff::login_form).post(staff::login))
        .route("/staff/logout", post(staff::logout))
        .route("/staff/workflows/{id}", get(staff::workflow))
        .route("/staff/workflows/{id}/actions", post(staff::act))
        .route(
            "/staff/workflows/{id}/sms-consent",
            post(consent::staff_record),
        )
        .route("/staff/deliveries", get(staff::deliveries::log))
        .route(
            "/staff/intakes",
            get(intake::staff_intakes).post(intake::staff_start),
        )
        .route("/staff/intakes/{id}", get(intake::staff_intake))
        .route("/staff/intakes/{id}/proposal", post(intake::staff_proposal))
        .route("/staff/intakes/{id}/resend", post(intake::staff_resend))
        .route(
            "/i/{token}",
            get(intake::patient_form).post(intake::patient_submit),
        )
        .route(
            "/intake/{practice}/{token}",
            get(intake::public_form).post(intake::public_submit),
        )
        .route(
            "/staff/deliveries/{id}/retry",
            post(staff::deliveries::requeue),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(form))
        .layer(RequestBodyLimitLayer::new(form));
    let app = webhooks
        .merge(rest)
        .layer(RequestBodyTimeoutLayer::new(timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state);
    if https {
        app.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ))
    } else {
        app
    }
}

/// One year, subdomains included: the browser never tries plain http again.
const HSTS: &str = "max-age=31536000; includeSubDomains";
