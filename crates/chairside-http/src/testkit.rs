//! Test fixtures for the HTTP surface: a migrated store (SQLite on a temporary file, or a fresh
//! PostgreSQL database: see [`on_postgres`]), a configured state on a fixed clock, seeded
//! workflows of made-up patients, and request helpers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use financing_core::{
    ApplicationHandle, CoverageSplit, DepositRule, InHouseOffer, InHouseTerms, InstallmentInterval,
    Language, LenderId, LenderLocation, LenderReference, LocationId, Money, PatientContact,
    PatientId, PlanId, PracticeId, SmsConsent, UsState,
};
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::sync::Notify;
use tower::ServiceExt as _;

use super::{HttpConfig, HttpState, LenderCopy, Metrics, PracticeSite, StaffAccount, router};
use chairside_engine::clock::Clock;
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::{Claim, Consumed, NewWorkflow, PostgresStore, SqliteStore, Store};
use chairside_workflow::machine::Transition;
use chairside_workflow::{
    CurrentApplication, Event, FinancingResult, LenderPhase, StaffTask, Stage, Status, WorkflowId,
    WorkflowKey, WorkflowState,
};

pub(crate) const PATIENT_KEY: &str = "patient-page-key-for-tests-only-0123456789";
pub(crate) const STRIPE_OLD: &str = "whsec_test_old_secret";
pub(crate) const STRIPE_NEW: &str = "whsec_test_new_secret";
pub(crate) const SUNBIT_SECRET: &str = "sunbit-test-secret";
pub(crate) const NEXHEALTH_SECRET: &str = "nexhealth-test-secret";
pub(crate) const OTHER_SUNBIT_SECRET: &str = "other-practice-sunbit-secret";
pub(crate) const OTHER_NEXHEALTH_SECRET: &str = "other-practice-nexhealth-secret";
pub(crate) const TWILIO_TOKEN: &str = "twilio-test-auth-token";
pub(crate) const PUBLIC: &str = "https://chairside.test/";
pub(crate) const SMILE_SMS: &str = "+15550100100";
pub(crate) const OTHER_SMS: &str = "+15550100200";
pub(crate) const ALICE_PASSWORD: &str = "correct horse battery staple";
pub(crate) const APPLY_LINK: &str = "https://sunbit.test/apply/session-1";
pub(crate) const CHECKOUT_URL: &str = "https://checkout.stripe.test/c/pay/cs_test_1";

/// Made-up patients. Nothing here is a real person.
pub(crate) const FIRST: &str = "Testy";
pub(crate) const LAST: &str = "McFakeface";
pub(crate) const PHONE: &str = "+15555550123";
pub(crate) const EMAIL: &str = "testy@example.test";

/// A clock one millisecond later at every reading, from a fixed start: "today" is fixed, and
/// two requests never happen at the same instant.
#[derive(Debug)]
struct TickingClock {
    start: DateTime<Utc>,
    ticks: AtomicI64,
}

impl Clock for TickingClock {
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::milliseconds(self.ticks.fetch_add(1, Ordering::Relaxed))
    }
}

pub(crate) fn smile() -> PracticeId {
    PracticeId::new("smile")
}

pub(crate) fn other() -> PracticeId {
    PracticeId::new("other")
}

pub(crate) fn sunbit() -> LenderId {
    LenderId::new("sunbit")
}

pub(crate) fn config() -> HttpConfig {
    let mut c = HttpConfig::new(PUBLIC.parse().unwrap(), SecretString::from(PATIENT_KEY));
    c.webhook_secrets.stripe = vec![
        SecretString::from(STRIPE_OLD),
        SecretString::from(STRIPE_NEW),
    ];
    c.webhook_secrets.sunbit = HashMap::from([
        (smile(), vec![SecretString::from(SUNBIT_SECRET)]),
        (other(), vec![SecretString::from(OTHER_SUNBIT_SECRET)]),
    ]);
    c.webhook_secrets.nexhealth = HashMap::from([
        (smile(), vec![SecretString::from(NEXHEALTH_SECRET)]),
        (other(), vec![SecretString::from(OTHER_NEXHEALTH_SECRET)]),
    ]);
    c.webhook_secrets.twilio = vec![SecretString::from(TWILIO_TOKEN)];
    // A test-mode key (`sk_test_…`): live events are refused.
    c.stripe_livemode = Some(false);
    let mut site = PracticeSite::new(
        smile(),
        "Smile Dental Test",
        "(555) 010-0100",
        chrono_tz::America::Chicago,
    );
    site.email = Some("frontdesk@smile.test".into());
    site.state = Some(financing_core::UsState::TX);
    site.sms_numbers = vec![SMILE_SMS.into()];
    site.lender_notice = HashMap::from([
        (
            Language::En,
            "NOTICE-EN: you are applying for credit, not paying the office.".into(),
        ),
        (
            Language::Es,
            "AVISO-ES: usted solicita crédito, no paga al consultorio.".into(),
        ),
    ]);
    let mut other_site = PracticeSite::new(
        other(),
        "Other Dental Test",
        "(555) 010-0200",
        chrono_tz::America::New_York,
    );
    other_site.sms_numbers = vec![OTHER_SMS.into()];
    // A New York practice with no notice configured: the shipped default applies.
    other_site.state = Some(financing_core::UsState::NY);
    c.practices = vec![site, other_site];
    c.lenders.insert(
        sunbit(),
        LenderCopy {
            name: "Sunbit".into(),
            disclosure: HashMap::from([
                (
                    Language::En,
                    "DISCLOSURE-EN: terms approved by the lender.".into(),
                ),
                (
                    Language::Es,
                    "DIVULGACION-ES: términos aprobados por el prestamista.".into(),
                ),
            ]),
        },
    );
    // Cheap hashes through the test-only constructor, so tests can sign in many times; the
    // kit builds its state without `validate`, which refuses them.
    c.staff = vec![
        StaffAccount::with_cheap_test_hash("alice", smile(), ALICE_PASSWORD),
        StaffAccount::with_cheap_test_hash("olga", other(), "olga's password"),
    ];
    c
}

/// The database under a [`Kit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    /// The backend [`Kit::new`] opens on this thread: SQLite unless [`on_postgres`] runs a test.
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
}

/// The server the PostgreSQL variants run on (`scripts/with-postgres.sh` sets it).
const POSTGRES_URL_VAR: &str = "CHAIRSIDE_TEST_POSTGRES_URL";

/// Runs `test` (a `#[tokio::test]` function: it builds its own runtime on this thread) with every
/// [`Kit`] it makes on a fresh PostgreSQL database instead of SQLite. When no server is
/// configured it does nothing, unless `CHAIRSIDE_REQUIRE_POSTGRES=1`, which makes it fail.
pub(crate) fn on_postgres(test: fn()) {
    if std::env::var(POSTGRES_URL_VAR).map_or(true, |u| u.is_empty()) {
        assert!(
            std::env::var("CHAIRSIDE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "CHAIRSIDE_REQUIRE_POSTGRES=1 but {POSTGRES_URL_VAR} is not set"
        );
        return;
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BACKEND.with(|b| b.set(Backend::Sqlite));
        }
    }
    BACKEND.with(|b| b.set(Backend::Postgres));
    let _reset = Reset;
    test();
}

/// Runs each named test of the calling module again on PostgreSQL ([`on_postgres`]), in a child
/// module `postgres`: `cargo test -p chairside-http postgres::` picks them out.
macro_rules! also_on_postgres {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[test]
                fn $name() {
                    crate::testkit::on_postgres(super::$name);
                }
            )*
        }
    };
}
pub(crate) use also_on_postgres;

/// Where a kit's database is.
enum Location {
    Sqlite(PathBuf),
    Postgres { admin: String, name: String },
}

pub(crate) struct Kit {
    _dir: TempDir,
    location: Location,
    sqlite: Option<Arc<SqliteStore>>,
    postgres: Option<Arc<PostgresStore>>,
    clock: Arc<TickingClock>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) state: HttpState,
    pub(crate) poll: Arc<Notify>,
    now: DateTime<Utc>,
}

pub(crate) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub(crate) fn post_form(uri: &str, body: String, cookie: Option<&str>) -> Request<Body> {
    let mut b =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body)).unwrap()
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub(crate) async fn body_text(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 10 * 1024 * 1024)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The `name=value` part of every `Set-Cookie` named `name`.
pub(crate) fn set_cookie(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value of the first hidden `csrf` input on a page.
pub(crate) fn csrf_of(page: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = page.find(marker).expect("a csrf field") + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

impl Kit {
    pub(crate) async fn new() -> Self {
        Self::with_config(config()).await
    }

    pub(crate) async fn with_config(config: HttpConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (location, sqlite, postgres, store): (_, _, _, Arc<dyn Store>) = match BACKEND
            .with(std::cell::Cell::get)
        {
            Backend::Sqlite => {
                let path = dir.path().join("chairside.db");
                let store = Arc::new(SqliteStore::open(&path, DataKey::generate()).await.unwrap());
                (Location::Sqlite(path), Some(store.clone()), None, store)
            }
            Backend::Postgres => {
                let admin = std::env::var(POSTGRES_URL_VAR).unwrap();
                let name = format!(
                    "chairside_http_test_{}_{:016x}",
                    std::process::id(),
                    rand::random::<u64>()
                );
                let url = PostgresStore::create_database(&admin, &name)
                    .await
                    .expect("creating a test database on CHAIRSIDE_TEST_POSTGRES_URL");
                let store = Arc::new(
                    PostgresStore::connect(&url, DataKey::generate())
                        .await
                        .unwrap(),
                );
                (
                    Location::Postgres { admin, name },
                    None,
                    Some(store.clone()),
                    store,
                )
            }
        };
        store.migrate().await.unwrap();
        // Noon in Chicago: "today" is unambiguous.
        let now = DateTime::parse_from_rfc3339("2026-06-15T17:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let poll = Arc::new(Notify::new());
        let clock = Arc::new(TickingClock {
            start: now,
            ticks: AtomicI64::new(1),
        });
        let state = HttpState::new(store.clone(), config, Metrics::local(), poll.clone())
            .with_clock(clock.clone());
        let kit = Self {
            _dir: dir,
            location,
            sqlite,
            postgres,
            clock,
            store,
            state,
            poll,
            now,
        };
        kit.put_patient(&smile(), "pat-1", Language::En).await;
        kit.put_patient(&smile(), "pat-es", Language::Es).await;
        kit.put_patient(&other(), "pat-9", Language::En).await;
        kit
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Moves the state's clock forward.
    pub(crate) fn advance(&self, by: chrono::Duration) {
        self.clock
            .ticks
            .fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }

    /// A second instance over the same database and clock (or this one after a restart): its
    /// own sessions, its own limits on password checks, nothing shared in memory.
    pub(crate) fn another_instance(&self) -> HttpState {
        HttpState::new(
            self.store.clone(),
            self.state.config().clone(),
            Metrics::local(),
            self.poll.clone(),
        )
        .with_clock(self.clock.clone())
    }

    /// One login attempt from `address`, with a fresh login form; the response as it comes.
    pub(crate) async fn attempt_login(
        &self,
        state: &HttpState,
        address: &str,
        username: &str,
        password: &str,
    ) -> Response {
        let (cookie, csrf) = self.login_form().await;
        let req = from_address(
            post_form(
                "/staff/login",
                form(&[
                    ("csrf", &csrf),
                    ("username", username),
                    ("password", password),
                ]),
                Some(&cookie),
            ),
            address,
        );
        router(state.clone()).oneshot(req).await.unwrap()
    }

    /// A login form's double-submit cookie (`name=value`) and CSRF token.
    pub(crate) async fn login_form(&self) -> (String, String) {
        let form_page = self.send(get("/staff/login")).await;
        let cookie = set_cookie(&form_page, "chairside_login").unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        (cookie, csrf_of(&body_text(form_page).await))
    }

    /// Sends a request as a loopback client would (unless it names its own peer).
    pub(crate) async fn send(&self, mut req: Request<Body>) -> Response {
        let extensions = req.extensions_mut();
        if extensions.get::<ConnectInfo<SocketAddr>>().is_none() {
            extensions.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50_000))));
        }
        router(self.state.clone()).oneshot(req).await.unwrap()
    }

    async fn put_patient(&self, practice: &PracticeId, id: &str, lang: Language) {
        let contact = PatientContact {
            id: PatientId::new(id),
            first_name: FIRST.into(),
            last_name: LAST.into(),
            date_of_birth: None,
            mobile_phone: Some(PHONE.into()),
            email: Some(EMAIL.into()),
            address: None,
            preferred_language: lang,
            time_zone: None,
            sms_consent: SmsConsent::None,
        };
        self.store
            .put_patient(practice, &contact, self.now)
            .await
            .unwrap();
    }

    /// A workflow of `practice` waiting on the patient's Sunbit application, with a deposit
    /// link: total $1,300.00, insurance $500.00, portion $800.00, deposit $160.00.
    pub(crate) fn financing_state(
        &self,
        practice: PracticeId,
        plan: &str,
        patient: &str,
    ) -> WorkflowState {
        let key = WorkflowKey {
            practice_id: practice.clone(),
            plan_id: PlanId::new(plan),
            revision: "1".into(),
        };
        let mut s = WorkflowState::new(
            key,
            PatientId::new(patient),
            self.now - chrono::Duration::minutes(10),
        );
        s.split = Some(CoverageSplit {
            total: Money::usd(130_000),
            insurance: Money::usd(50_000),
            patient_portion: Money::usd(80_000),
        });
        s.deposit = Some(Money::usd(16_000));
        s.financing_amount = Some(Money::usd(64_000));
        s.stage = Stage::Financing(CurrentApplication {
            lender: sunbit(),
            amount: Money::usd(64_000),
            contacted_at: self.now - chrono::Duration::minutes(9),
            phase: LenderPhase::AwaitingPatient {
                handle: ApplicationHandle {
                    reference: chairside_workflow::application_reference(&s.id, &sunbit(), 7),
                    lender_reference: LenderReference::new("session-1"),
                    location: LenderLocation {
                        practice_id: practice,
                        location_id: LocationId::new("1"),
                        state: UsState::TX,
                    },
                    amount: Money::usd(64_000),
                },
                link: APPLY_LINK.into(),
                reminders_sent: 0,
                session: Default::default(),
            },
        });
        s.stripe.checkout_url = Some(CHECKOUT_URL.into());
        s.stripe.checkout_session_id = Some("cs_test_1".into());
        s
    }

    /// A financed workflow whose ledger note was written 150 s after acceptance.
    pub(crate) fn done_state(&self, plan: &str) -> WorkflowState {
        let mut s = self.financing_state(smile(), plan, "pat-1");
        s.status = Status::Done;
        s.stage = Stage::Settled;
        s.result = Some(FinancingResult {
            financed: Some((sunbit(), Money::usd(64_000))),
            deposit: Money::usd(16_000),
            in_house: None,
            path: "sunbit approved".into(),
        });
        s.ledger_written_at = Some(s.accepted_at + chrono::Duration::seconds(150));
        s
    }

    /// A workflow on the in-house plan: $600.00 in 6 monthly installments after the deposit.
    pub(crate) fn in_house_state(&self, plan: &str, patient: &str) -> WorkflowState {
        let mut s = self.financing_state(smile(), plan, patient);
        // Every lender declined; the plan is offered and nothing exists at Stripe yet.
        s.stage = Stage::OfferingInHouse { reminders_sent: 0 };
        s.status = Status::Active;
        s.stripe = Default::default();
        let offer = InHouseOffer::compute(
            Money::usd(60_000),
            &InHouseTerms {
                deposit: DepositRule::None,
                installments: 6,
                interval: InstallmentInterval::MONTHLY,
            },
        )
        .unwrap();
        s.result = Some(FinancingResult {
            financed: None,
            deposit: Money::usd(16_000),
            in_house: Some(offer),
            path: "in-house plan".into(),
        });
        s
    }

    pub(crate) async fn seed(&self, mut state: WorkflowState) -> WorkflowId {
        let first = state.start();
        let id = state.id.clone();
        let practice = state.key.practice_id.clone();
        let created = self
            .store
            .record_poll(
                &practice,
                "test",
                "cursor",
                vec![NewWorkflow { state, first }],
                vec![],
                self.now,
            )
            .await
            .unwrap();
        assert_eq!(created, vec![id.clone()]);
        id
    }

    pub(crate) async fn seed_workflow(&self, plan: &str) -> WorkflowId {
        self.seed(self.financing_state(smile(), plan, "pat-1"))
            .await
    }

    pub(crate) async fn seed_done_workflow(&self, plan: &str) -> WorkflowId {
        self.seed(self.done_state(plan)).await
    }

    /// Opens a staff task on a seeded workflow, the way the runner does: under a claim.
    pub(crate) async fn raise_task(&self, wf: &WorkflowId, task: StaffTask) {
        self.raise(wf, task, true).await;
    }

    /// Opens a staff task beside a finished workflow (a failed payment), which stays done.
    pub(crate) async fn raise_task_beside(&self, wf: &WorkflowId, task: StaffTask) {
        self.raise(wf, task, false).await;
    }

    async fn raise(&self, wf: &WorkflowId, task: StaffTask, waiting: bool) {
        let claims: Vec<Claim> = self
            .store
            .claim_due("test-runner", self.now, Duration::from_secs(60), 100)
            .await
            .unwrap();
        for claim in claims {
            if &claim.id == wf {
                let mut state = self.store.workflow(wf).await.unwrap().unwrap().state;
                if waiting {
                    state.status = Status::WaitingOnStaff;
                    state.stage = Stage::Settled;
                    state.staff_task = Some(task.clone());
                }
                let transition = Transition {
                    raise_task: Some(task.clone()),
                    ..Transition::default()
                };
                let consumed = Consumed::Command {
                    seq: 1,
                    attempt: 1,
                    outcome: "test".into(),
                };
                self.store
                    .commit(&claim, &state, consumed, "test", &transition, self.now)
                    .await
                    .unwrap();
            }
            self.store.release(&claim, self.now).await.unwrap();
        }
    }

    /// Overwrites a workflow's stored state with `text` that does not decode, as a torn write or
    /// a hand edit would (read from the database file, past the store).
    pub(crate) async fn corrupt_state(&self, wf: &WorkflowId, text: &str) {
        match &self.location {
            Location::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query("UPDATE workflows SET state = ? WHERE id = ?")
                    .bind(text)
                    .bind(wf.as_str())
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            Location::Postgres { admin, name } => {
                let mut url = url::Url::parse(admin).unwrap();
                url.set_path(name);
                let pool = sqlx::PgPool::connect(url.as_str()).await.unwrap();
                sqlx::query("UPDATE workflows SET state = $1 WHERE id = $2")
                    .bind(text.as_bytes())
                    .bind(wf.as_str())
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
    }

    /// The events waiting in a workflow's inbox, oldest first (read from the database).
    pub(crate) async fn inbox(&self, wf: &WorkflowId) -> Vec<Event> {
        match (&self.sqlite, &self.postgres) {
            (Some(s), _) => s.inbox_events(wf).await.unwrap(),
            (None, Some(p)) => p.inbox_events(wf).await.unwrap(),
            (None, None) => unreachable!("a kit has one store"),
        }
    }

    pub(crate) fn token(&self, wf: &WorkflowId) -> String {
        super::sign_patient_token(
            wf,
            0,
            self.now + chrono::Duration::days(1),
            &SecretString::from(PATIENT_KEY),
        )
    }

    /// Signs in and returns the session cookie (`name=value`) and the session's CSRF token.
    pub(crate) async fn login(&self, username: &str, password: &str) -> (String, String) {
        let form_page = self.send(get("/staff/login")).await;
        let login_cookie = set_cookie(&form_page, "chairside_login").unwrap();
        let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
        let csrf = csrf_of(&body_text(form_page).await);
        let res = self
            .send(post_form(
                "/staff/login",
                form(&[
                    ("csrf", &csrf),
                    ("username", username),
                    ("password", password),
                ]),
                Some(&login_cookie),
            ))
            .await;
        assert_eq!(res.status(), 303, "login refused");
        let session = set_cookie(&res, "chairside_staff").unwrap();
        let session = session.split(';').next().unwrap().to_owned();
        let page = body_text(self.send(with_cookie(get("/staff"), &session)).await).await;
        (session, csrf_of(&page))
    }
}

/// The request as if it arrived on a connection from `address` (`ip:port`).
pub(crate) fn from_address(mut req: Request<Body>, address: &str) -> Request<Body> {
    let addr: std::net::SocketAddr = address.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

pub(crate) fn with_cookie(mut req: Request<Body>, cookie: &str) -> Request<Body> {
    req.headers_mut()
        .insert(header::COOKIE, cookie.parse().unwrap());
    req
}
