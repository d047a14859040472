//! Embedding the Chairside engine in your own program, with your own lender in the waterfall.
//!
//! This is what a practice-software vendor writes instead of running the `chairside` binary: no
//! TOML, no command line, no stand-ins compiled in. It builds
//!
//! - a [`SqliteStore`] (the durable state),
//! - the connector clients the practice uses (here Open Dental, Stripe and an SMTP server), each
//!   with one small in-call [`RetryPolicy`] (the runner re-runs a failed step durably; it never
//!   retries a call itself),
//! - the engine's adapters over those clients ([`OpenDentalPractice`], [`StripePayments`],
//!   [`PatientMessenger`]),
//! - one [`PracticeRuntime`] whose waterfall names a plug-in lender,
//!
//! and hands them to [`Engine::builder`], registering the plug-in lender with
//! [`EngineBuilder::lender`](chairside_engine::EngineBuilder::lender). The runner then asks that
//! lender exactly as it asks CareCredit or Sunbit. `docs/embedding.md` walks through it; the
//! `embed_engine` example runs it against the sandbox, and `tests/embedding.rs` checks the plan
//! ends where it should.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chairside_engine::adapters::messaging::{
    PatientMessenger, PracticeChannels, StoreConsentLedger,
};
use chairside_engine::adapters::opendental::OpenDentalPractice;
use chairside_engine::adapters::stripe::StripePayments;
use chairside_engine::links::PatientLinks;
use chairside_engine::ports::PracticeProfile;
use chairside_engine::runner::{PracticeRuntime, RunnerConfig};
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::{SchemaStore as _, SqliteStore, Store};
use chairside_engine::{Engine, EngineError};
use chairside_workflow::{Status, WorkflowConfig, WorkflowState};
use financing_core::{
    AmountLimits, DepositRule, LenderId, LenderSlot, LocationId, PolicySettings, PracticeId,
    SharedProvider, UsState, Waterfall, WaterfallPolicy,
};
use opendental_client::RetryPolicy;
use secrecy::SecretString;
use url::Url;

/// Where the practice's systems are and how to sign in to them: what your own configuration
/// supplies. The example fills it from the sandbox.
#[derive(Clone)]
pub struct Systems {
    /// Open Dental's API base (`…/api/v1/`).
    pub opendental: Url,
    /// Open Dental's developer key.
    pub opendental_developer_key: SecretString,
    /// Open Dental's customer key.
    pub opendental_customer_key: SecretString,
    /// Stripe's API base.
    pub stripe: Url,
    /// The Stripe secret key.
    pub stripe_key: SecretString,
    /// The practice's SMTP server (plain SMTP here; `SmtpSecurity::StartTls` in production).
    pub smtp: SocketAddr,
    /// Where the patient page is served (your HTTP surface: `chairside_http::router`).
    pub public_base_url: Url,
}

impl std::fmt::Debug for Systems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Systems")
            .field("opendental", &self.opendental.as_str())
            .field("stripe", &self.stripe.as_str())
            .field("smtp", &self.smtp)
            .finish_non_exhaustive()
    }
}

/// Why the example could not build or run the engine.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The store could not open or migrate, or the runner's store work failed.
    #[error("store: {0}")]
    Store(#[from] chairside_engine::store::StoreError),
    /// A client refused its settings.
    #[error("{0}: {1}")]
    Client(&'static str, String),
    /// The practices and lenders do not fit together.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The practice this example runs: one Texas office on Open Dental.
pub fn practice_profile() -> PracticeProfile {
    PracticeProfile {
        id: PracticeId::new("lakeside-family-dental"),
        name: "Lakeside Family Dental".into(),
        state: UsState::TX,
        time_zone: "America/Chicago".into(),
        location_id: LocationId::new("lakeside-main"),
        phone: "+15125550199".into(),
        email: "frontdesk@lakeside.example".into(),
    }
}

/// Builds the engine over a SQLite file in `dir`: the practice's systems from `systems`, and
/// `lender` registered as a plug-in under `lender_id`, the only lender of the waterfall.
///
/// # Errors
/// [`EmbedError`]: the store, a client's settings, or a waterfall naming a lender nothing
/// provides.
pub async fn build_engine(
    dir: &Path,
    systems: &Systems,
    lender_id: LenderId,
    lender: SharedProvider,
) -> Result<Engine, EmbedError> {
    // 1. The durable store. Keep the data key in your secret manager; it seals patient data.
    let store = SqliteStore::open(&dir.join("engine.sqlite"), DataKey::generate()).await?;
    store.migrate().await?;
    let store: Arc<dyn Store> = Arc::new(store);

    // 2. The clients. One reqwest client with a timeout shared by all, and one in-call retry
    //    policy: two tries of an idempotent call, at most 2 s apart.
    let retry = RetryPolicy::new()
        .max_attempts(2)
        .max_total_wait(Duration::from_secs(2));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| EmbedError::Client("http", e.to_string()))?;
    let opendental = opendental_client::Client::builder(
        systems.opendental.clone(),
        systems.opendental_developer_key.clone(),
        systems.opendental_customer_key.clone(),
    )
    .http_client(http.clone())
    .retry(retry)
    .build()
    .map_err(|e| EmbedError::Client("open dental", e.to_string()))?;
    let stripe = stripe_schedule::Client::builder(systems.stripe_key.clone())
        .base_url(systems.stripe.clone())
        .http_client(http)
        .retry(retry)
        .build()
        .map_err(|e| EmbedError::Client("stripe", e.to_string()))?;
    let profile = practice_profile();
    let email = messaging::EmailSender::new(
        &messaging::SmtpConfig::new(
            systems.smtp.ip().to_string(),
            systems.smtp.port(),
            messaging::SmtpSecurity::None,
        ),
        messaging::EmailFrom {
            name: profile.name.clone(),
            address: messaging::EmailAddress::parse("frontdesk@lakeside.example")
                .map_err(|e| EmbedError::Client("email sender", e.to_string()))?,
        },
    )
    .map_err(|e| EmbedError::Client("smtp", e.to_string()))?;

    // 3. The engine's adapters over the clients.
    let mut channels = HashMap::new();
    channels.insert(
        profile.id.clone(),
        PracticeChannels {
            email: Some(Arc::new(email)),
            sms: None,
        },
    );
    let messenger =
        PatientMessenger::new(channels, Arc::new(StoreConsentLedger::new(store.clone())))
            .map_err(|e| EmbedError::Client("templates", e.to_string()))?;
    let practice = PracticeRuntime {
        pms: Arc::new(OpenDentalPractice::new(
            opendental,
            opendental_client::AcceptanceRule::default(),
            // The sandbox's Open Dental writes its times in UTC; a real server uses the office's.
            chrono_tz::UTC,
        )),
        payments: Arc::new(StripePayments::new(
            stripe,
            "Lakeside Family Dental treatment plan",
            Some(systems.public_base_url.clone()),
        )),
        messenger: Arc::new(messenger),
        patient_links: PatientLinks::new(
            systems.public_base_url.clone(),
            SecretString::from("an example patient-page key of thirty-two bytes or more"),
            Duration::from_secs(7 * 24 * 3600),
        ),
        // 4. The practice's rules: the waterfall names the plug-in lender.
        workflow: WorkflowConfig {
            waterfall: Waterfall::new(
                vec![LenderSlot {
                    lender: lender_id.clone(),
                    limits: AmountLimits::NONE,
                }],
                WaterfallPolicy::default(),
            ),
            deposit: DepositRule::None,
            in_house: None,
            reminder_delays: vec![Duration::from_secs(24 * 3600)],
            give_up_after: Duration::from_secs(72 * 3600),
            poll_interval: Duration::from_millis(100),
            // Filled by the engine from each provider's own `poll_schedule`.
            lender_schedules: Vec::new(),
            // Deposits by pay link (or `CardOnFile`: the patient saves a card, charged
            // off-session).
            payment_preference: chairside_workflow::PaymentPreference::PayLink,
            // Settlement days are the practice's days.
            time_zone: Some("America/Chicago".into()),
            lender_names: Vec::new(),
        },
        policy: PolicySettings::default(),
        lenders: HashMap::new(),
        profile,
    };

    // 5. The engine, with the plug-in registered by id.
    Ok(Engine::builder(store)
        .runner_config(RunnerConfig {
            owner: "embedding-example".into(),
            ..RunnerConfig::default()
        })
        .lender(lender_id, lender)
        .practice(practice)
        .build()?)
}

/// Polls the practice system and performs due work until the practice's workflows have all
/// settled (done, cancelled or waiting on staff) or `deadline` passes. Returns the workflows.
///
/// # Errors
/// [`EmbedError::Store`]: the runner's store work failed.
pub async fn run_until_settled(
    engine: &Engine,
    deadline: Duration,
) -> Result<Vec<WorkflowState>, EmbedError> {
    let started = std::time::Instant::now();
    loop {
        engine.runner().poll().await?;
        engine.runner().tick().await?;
        let rows = engine
            .store()
            .workflows(Some(&practice_profile().id), None, 100)
            .await?;
        let settled = !rows.is_empty() && rows.iter().all(|r| r.state.status != Status::Active);
        if settled || started.elapsed() > deadline {
            return Ok(rows.into_iter().map(|r| r.state).collect());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
