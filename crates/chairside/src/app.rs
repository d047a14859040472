//! `chairside run`: the long-running service. Builds every client from the configuration, then
//! runs the poller, the runner and the HTTP surface until SIGINT or SIGTERM.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use connector_transport::RetryPolicy;
use financing_core::{LenderId, SharedProvider};
use tokio::sync::Notify;

use crate::config::{Config, PmsSettings};
use chairside_engine::adapters::dentrix::DentrixPractice;
use chairside_engine::adapters::messaging::{
    PatientMessenger, PracticeChannels, StoreConsentLedger,
};
use chairside_engine::adapters::nexhealth::NexHealthPractice;
use chairside_engine::adapters::opendental::OpenDentalPractice;
use chairside_engine::adapters::stripe::StripePayments;
use chairside_engine::clock::SystemClock;
use chairside_engine::ports::SharedPracticeSystem;
use chairside_engine::runner::{PracticeRuntime, Runner};
use chairside_engine::store::{SchemaStore, SqliteStore, Store};
use chairside_http::{HttpState, Metrics};

/// Every client's HTTP timeout; shorter than the runner's lease, so a call never outlives the
/// claim that made it.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything `run` starts, built from the configuration (also used by tests).
#[derive(Debug)]
pub struct Service {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The runner.
    pub runner: Runner,
    /// The HTTP surface's state.
    pub http: HttpState,
    /// Rings when a NexHealth push says plans changed.
    pub poll_now: Arc<Notify>,
}

/// Builds the service from `config`: opens and migrates the store, builds every client.
///
/// # Errors
/// A store that cannot open, a key that does not parse, a client that refuses its settings.
pub async fn build(config: &Config, metrics: Metrics) -> anyhow::Result<Service> {
    let key = config.store.keyring().context("the data key")?;
    let store = SqliteStore::open(&config.store.path, key)
        .await
        .with_context(|| format!("opening {}", config.store.path.display()))?;
    store.migrate().await.context("migrating the database")?;
    let store: Arc<dyn Store> = Arc::new(store);
    let http = reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .build()
        .context("http client")?;

    let stripe = stripe_schedule::Client::builder(config.stripe.api_key.clone())
        .base_url(config.stripe.base_url.clone())
        .http_client(http.clone())
        // Retries happen in one layer: the runner's durable, lease-bounded schedule.
        .retry(RetryPolicy::none())
        .timeout(CALL_TIMEOUT)
        .build()
        .context("the Stripe client")?;
    let ledger = Arc::new(StoreConsentLedger::new(store.clone()));
    let sms = match &config.twilio {
        Some(t) => Some(
            messaging::SmsClient::builder(
                t.account_sid.clone(),
                t.auth_token.clone(),
                ledger.clone(),
            )
            .base_url(t.base_url.clone())
            .http_client(http.clone())
            // Retries happen in one layer: the runner's durable, lease-bounded schedule.
            .retry(RetryPolicy::none())
            .build()
            .context("the Twilio client")?,
        ),
        None => None,
    };

    let mut channels = HashMap::new();
    let mut parts = Vec::new();
    for p in &config.practices {
        let email = match &p.smtp {
            Some(smtp) => Some(Arc::new(
                messaging::EmailSender::new(&smtp.smtp_config(), smtp.email_from(&p.name))
                    .with_context(|| format!("the SMTP settings of {}", p.id))?,
            )),
            None => None,
        };
        let sms = match (&sms, p.sms_sender(config.twilio.as_ref())) {
            (Some(client), Some(from)) => Some((client.clone(), from)),
            _ => None,
        };
        channels.insert(p.id.clone(), PracticeChannels { email, sms });

        let pms: SharedPracticeSystem = match &p.pms {
            PmsSettings::Dentrix(d) => {
                let mut b = dentrix_client::Client::builder(d.base_url.clone(), d.credentials())
                    .http_client(http.clone())
                    // Retries happen in one layer: the runner's durable, lease-bounded schedule.
                    .retry(RetryPolicy::none())
                    .timeout(CALL_TIMEOUT);
                if let Some(t) = &d.token_url {
                    b = b.token_url(t.clone());
                }
                Arc::new(DentrixPractice::new(
                    b.build()
                        .with_context(|| format!("the Dentrix client of {}", p.id))?,
                ))
            }
            PmsSettings::OpenDental(o) => {
                let client = opendental_client::Client::builder(
                    o.base_url.clone(),
                    o.developer_key.clone(),
                    o.customer_key.clone(),
                )
                .http_client(http.clone())
                // Retries happen in one layer: the runner's durable, lease-bounded schedule.
                .retry(RetryPolicy::none())
                .timeout(CALL_TIMEOUT)
                .build()
                .with_context(|| format!("the Open Dental client of {}", p.id))?;
                Arc::new(OpenDentalPractice::new(client, o.acceptance, p.time_zone))
            }
            PmsSettings::NexHealth(n) => Arc::new(NexHealthPractice::new(
                nexhealth_client::Client::builder(n.base_url.clone(), n.credentials())
                    .http_client(http.clone())
                    // Retries happen in one layer: the runner's durable, lease-bounded schedule.
                    .retry(RetryPolicy::none())
                    .timeout(CALL_TIMEOUT)
                    .build()
                    .with_context(|| format!("the NexHealth client of {}", p.id))?,
            )),
        };

        let mut lenders: HashMap<LenderId, SharedProvider> = HashMap::new();
        if let Some(cc) = &p.lenders.carecredit {
            let mut b = carecredit_client::Client::builder(cc.base_url.clone(), cc.credentials())
                .merchant(p.location_id.clone(), cc.merchant_number.as_str())
                .limits(cc.limits)
                // The practice's poll interval, not the client's default, paces status reads.
                .poll_after(p.reminders.poll_interval)
                .http_client(http.clone())
                // Retries happen in one layer: the runner's durable, lease-bounded schedule.
                .retry(RetryPolicy::none())
                .timeout(CALL_TIMEOUT);
            if let Some(t) = &cc.token_url {
                b = b.token_url(t.clone());
            }
            lenders.insert(
                LenderId::new("carecredit"),
                Arc::new(
                    b.build()
                        .with_context(|| format!("the CareCredit client of {}", p.id))?,
                ),
            );
        }
        if let Some(sb) = &p.lenders.sunbit {
            let client = sunbit_client::Client::builder(sb.base_url.clone(), sb.credentials())
                .location(p.location_id.clone(), sb.location.clone())
                .limits(sb.limits)
                .poll_after(p.reminders.poll_interval)
                .http_client(http.clone())
                // Retries happen in one layer: the runner's durable, lease-bounded schedule.
                .retry(RetryPolicy::none())
                .timeout(CALL_TIMEOUT)
                .build()
                .with_context(|| format!("the Sunbit client of {}", p.id))?;
            lenders.insert(LenderId::new("sunbit"), Arc::new(client));
        }
        let payments = StripePayments::new(
            stripe.clone(),
            format!("{} treatment plan", p.name),
            Some(config.http.public_base_url.clone()),
        );
        parts.push((p, pms, lenders, payments));
    }
    let messenger = Arc::new(
        PatientMessenger::new(channels, ledger)
            .map_err(|e| anyhow::anyhow!("message templates: {e}"))?,
    );
    let links = config.patient_links();
    let runtimes = parts
        .into_iter()
        .map(|(p, pms, lenders, payments)| PracticeRuntime {
            profile: p.profile(),
            workflow: p.workflow_config(),
            policy: p.policy,
            pms,
            lenders,
            payments: Arc::new(payments),
            messenger: messenger.clone(),
            patient_links: links.clone(),
        })
        .collect();
    let runner = Runner::new(
        store.clone(),
        runtimes,
        config.runner_config(),
        Arc::new(SystemClock),
    );

    let http_config = config.http_config();
    http_config
        .validate()
        .map_err(|e| anyhow::anyhow!("the [http] settings: {e}"))?;
    let poll_now = Arc::new(Notify::new());
    let http = HttpState::new(store.clone(), http_config, metrics, poll_now.clone());
    Ok(Service {
        store,
        runner,
        http,
        poll_now,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Runs the service until it is told to stop. Returns the process exit code.
///
/// Work survives any stop, graceful or not: every step is committed before the next begins, and a
/// claim left by a killed process is taken over when its lease expires.
///
/// # Errors
/// The service could not start (store, configuration, listen address).
pub async fn run(config: Config) -> anyhow::Result<i32> {
    let metrics = Metrics::install_global().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let service = build(&config, metrics).await?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("listening on {}", config.http.listen))?;
    tracing::info!(listen = %config.http.listen, practices = config.practices.len(), "chairside is running");
    let app = chairside_http::router(service.http.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });

    let runner = service.runner.clone();
    let poll_every = config.runner.poll_interval;
    let poll_now = service.poll_now.clone();
    let work = async move {
        let mut next_poll = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_poll {
                if let Err(e) = runner.poll().await {
                    tracing::error!(error = %e, "poll failed");
                }
                next_poll = tokio::time::Instant::now() + poll_every;
            }
            let worked = match runner.tick().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "claiming work failed");
                    0
                }
            };
            if worked == 0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = poll_now.notified() => next_poll = tokio::time::Instant::now(),
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown_signal() => tracing::info!("stopping: the current step is committed; the rest resumes on the next start"),
    }
    server.abort();
    Ok(0)
}
