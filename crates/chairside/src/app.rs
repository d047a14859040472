//! The one composition root: [`build`] turns a [`Config`] into the running stack (store, every
//! client, the engine and the HTTP surface's state). `chairside run` ([`run`]), the demo, the
//! end-to-end tests and the bench all build their stack through it; the demo world only writes a
//! `Config` pointing at the sandbox.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use connector_transport::RetryPolicy;
use financing_core::{Backoff, LenderId, PollSchedule, SharedProvider, Tz};
use tokio::sync::Notify;

use crate::config::{Config, PmsSettings};
use chairside_engine::adapters::dentrix::DentrixPractice;
use chairside_engine::adapters::messaging::{
    PatientMessenger, PracticeChannels, StoreConsentLedger,
};
use chairside_engine::adapters::nexhealth::NexHealthPractice;
use chairside_engine::adapters::opendental::OpenDentalPractice;
use chairside_engine::adapters::stripe::StripePayments;
use chairside_engine::clock::Clock;
use chairside_engine::outbound::DispatchConfig;
use chairside_engine::outbound::sign::WebhookSecret;
use chairside_engine::outbound::webhook::WebhookEndpoint;
use chairside_engine::ports::SharedPracticeSystem;
use chairside_engine::runner::{PracticeRuntime, Runner};
use chairside_engine::store::{Durability, Store};
use chairside_engine::{Engine, EngineBuilder};
use chairside_http::{HttpState, LenderCopy, Metrics};

/// Every client's HTTP timeout; shorter than the runner's lease, so a call never outlives the
/// claim that made it.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The one retry policy of every client call (connector-transport's, the same in every
/// connector): an idempotent call (a read, or a write carrying an idempotency key) is tried at
/// most twice, at most 2 s apart, so one call (2 x 20 s + 2 s) stays well inside the runner's
/// 60 s lease. A step whose call still fails is transient to the runner, which does not retry the
/// call: it re-runs the step from its journal later, on its durable schedule (across crashes).
///
/// Measured, not guessed: with no in-call retry at all (`RetryPolicy::none()`), a step that makes
/// five reads (loading a Dentrix plan) fails as a whole whenever any one read meets a blip, and
/// under the end-to-end fault run (8% 429s, 503s and 500s per request) one plan in fourteen ran
/// out of durable attempts; with two tries per call every persona ends where it should.
const CALL_RETRY: RetryPolicy = RetryPolicy::new()
    .min_delay(Duration::from_millis(200))
    .max_delay(Duration::from_secs(2))
    .max_attempts(2)
    .max_total_wait(Duration::from_secs(2));

/// The most one call can take under [`CALL_RETRY`]: two tries of [`CALL_TIMEOUT`] and the wait
/// between them (42 s).
const CALL_BUDGET: Duration = Duration::from_secs(2 * CALL_TIMEOUT.as_secs() + 2);

/// The runner's step deadline: one call's whole budget and some room for the store around it.
/// A step that makes several calls (a Dentrix plan load reads five times) and meets a hung
/// system is cut here and re-run later from its journal with the same keys; the lease is renewed
/// while it works, so the deadline need not fit inside the lease.
const STEP_DEADLINE: Duration = Duration::from_secs(CALL_BUDGET.as_secs() + 8);

/// What [`build`] takes besides the configuration: plug-in lenders, and the few knobs that are not
/// configuration settings. `Extras::default()` is what `chairside run` uses.
#[derive(Default)]
pub struct Extras {
    /// Lenders beyond CareCredit and Sunbit, offered to every practice by id: a practice's
    /// waterfall (`lenders.order` in a `Config` built in code) may name them.
    pub lenders: Vec<(LenderId, SharedProvider)>,
    /// The clock the runner reads (default the system clock).
    pub clock: Option<Arc<dyn Clock>>,
    /// The runner's retry schedule for transient outcomes (default the runner's: from 0.5 s,
    /// capped at 30 s).
    pub retry: Option<Backoff>,
    /// The zone Open Dental servers write their times in, when not the practice's own (the
    /// sandbox's stand-in writes UTC).
    pub opendental_server_zone: Option<Tz>,
    /// NexHealth's rate budget, when not the documented limits of one API key (the sandbox has
    /// none).
    pub nexhealth_rate_budget: Option<nexhealth_client::RateBudget>,
    /// Subscribers to the outbound events beyond the configured webhook endpoints.
    pub subscribers: Vec<chairside_engine::outbound::SharedSubscriber>,
    /// How commits reach the disk (default [`Durability::Full`]; the bench measures `Normal`).
    pub durability: Option<Durability>,
    /// Lender poll schedules that replace the clients' own (the demo's compressed day); every
    /// other lender keeps the schedule its client ships.
    pub lender_schedules: Vec<(LenderId, PollSchedule)>,
}

impl fmt::Debug for Extras {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extras")
            .field(
                "lenders",
                &self.lenders.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("clock", &self.clock)
            .field("retry", &self.retry)
            .field("opendental_server_zone", &self.opendental_server_zone)
            .field("nexhealth_rate_budget", &self.nexhealth_rate_budget)
            .field("subscribers", &self.subscribers)
            .field("durability", &self.durability)
            .field("lender_schedules", &self.lender_schedules)
            .finish()
    }
}

/// Everything `run` starts, built from the configuration.
#[derive(Debug)]
pub struct Service {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The runner.
    pub runner: Runner,
    /// The engine (store and runner together).
    pub engine: Engine,
    /// The HTTP surface's state.
    pub http: HttpState,
    /// Rings when a NexHealth push says plans changed.
    pub poll_now: Arc<Notify>,
    /// Delivers the outbound events to their subscribers.
    pub dispatcher: chairside_engine::outbound::Dispatcher,
}

/// The PostgreSQL pool for a runner working `concurrency` workflows at once: one connection per
/// slot, plus the poller, the dispatcher and the HTTP surface.
fn postgres_pool_size(concurrency: usize) -> u32 {
    u32::try_from(concurrency)
        .unwrap_or(u32::MAX)
        .saturating_add(8)
        .min(64)
}

/// Builds the service from `config`: opens and migrates the store, builds every client, the
/// engine (with the plug-in lenders of `extras`) and the HTTP surface's state, and starts the
/// cursor of each outbound subscriber new to the store
/// ([`Dispatcher::start_cursors`](chairside_engine::outbound::Dispatcher::start_cursors)).
///
/// # Errors
/// A store that cannot open, a key that does not parse, a client that refuses its settings, a
/// waterfall naming a lender nothing provides, HTTP settings that do not hold together.
pub async fn build(config: &Config, extras: Extras, metrics: Metrics) -> anyhow::Result<Service> {
    config.store.keyring().context("the data key")?;
    // The database URL chooses the store: a PostgreSQL URL (`[store] url`) for several instances
    // on one database, else the SQLite file at `[store] path`.
    let opened = config
        .store
        .open_any(
            extras.durability.unwrap_or_default(),
            postgres_pool_size(config.runner.concurrency),
        )
        .await
        .with_context(|| format!("opening {}", config.store.describe()))?;
    opened
        .store
        .migrate()
        .await
        .context("migrating the database")?;
    // Each message channel's send is journalled before it goes out (at most once per channel).
    let journal = opened.journal;
    let store: Arc<dyn Store> = opened.store;
    // Follows no redirect, as every connector's own default client (connector-transport).
    let http = connector_transport::client_builder(CALL_TIMEOUT)
        .pool_max_idle_per_host(32)
        .build()
        .context("http client")?;

    let stripe = stripe_schedule::Client::builder(config.stripe.api_key.clone())
        .base_url(config.stripe.base_url.clone())
        .http_client(http.clone())
        // In-call retries: one capped policy, see CALL_RETRY.
        .retry(CALL_RETRY)
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
            // In-call retries: one capped policy, see CALL_RETRY.
            .retry(CALL_RETRY)
            .build()
            .context("the Twilio client")?,
        ),
        None => None,
    };

    let mut channels = HashMap::new();
    let mut parts = Vec::new();
    let mut labs = Vec::new();
    let mut alert_routes = HashMap::new();
    for p in &config.practices {
        let email = match &p.smtp {
            Some(smtp) => Some(Arc::new(
                messaging::EmailSender::new(&smtp.smtp_config(), smtp.email_from(&p.name))
                    .with_context(|| format!("the SMTP settings of {}", p.id))?,
            )),
            None => None,
        };
        // New staff tasks emailed to the practice's staff mailbox, through its own SMTP.
        if let (Some(alerts), Some(sender)) = (&p.staff_alerts, &email) {
            alert_routes.insert(
                p.id.clone(),
                chairside_engine::outbound::staff_alert::AlertRoute {
                    practice_name: p.name.clone(),
                    to: alerts.to.clone(),
                    sender: sender.clone(),
                    kinds: alerts.tasks.clone(),
                    digest_window: alerts.digest_window,
                    language: alerts.language,
                },
            );
        }
        let sms = match (&sms, p.sms_sender(config.twilio.as_ref())) {
            (Some(client), Some(from)) => Some((client.clone(), from)),
            _ => None,
        };
        if let (Some(to), Some(sender)) = (&p.lab_email, &email) {
            labs.push(chairside_engine::outbound::lab::LabSubscriber::new(
                p.id.clone(),
                p.name.clone(),
                to.clone(),
                sender.clone(),
                store.clone(),
            ));
        }
        channels.insert(p.id.clone(), PracticeChannels { email, sms });

        let pms: SharedPracticeSystem = match &p.pms {
            PmsSettings::Dentrix(d) => {
                let mut b = dentrix_client::Client::builder(d.base_url.clone(), d.credentials())
                    .http_client(http.clone())
                    // In-call retries: one capped policy, see CALL_RETRY.
                    .retry(CALL_RETRY)
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
                // In-call retries: one capped policy, see CALL_RETRY.
                .retry(CALL_RETRY)
                .timeout(CALL_TIMEOUT)
                .build()
                .with_context(|| format!("the Open Dental client of {}", p.id))?;
                let zone = extras.opendental_server_zone.unwrap_or(p.time_zone);
                Arc::new(OpenDentalPractice::new(client, o.acceptance, zone))
            }
            PmsSettings::NexHealth(n) => {
                let mut b = nexhealth_client::Client::builder(n.base_url.clone(), n.credentials())
                    .http_client(http.clone())
                    // In-call retries: one capped policy, see CALL_RETRY.
                    .retry(CALL_RETRY)
                    .timeout(CALL_TIMEOUT);
                if let Some(budget) = extras.nexhealth_rate_budget {
                    b = b.rate_budget(budget);
                }
                Arc::new(
                    NexHealthPractice::new(
                        b.build()
                            .with_context(|| format!("the NexHealth client of {}", p.id))?,
                    )
                    .with_provider(n.provider_id.clone()),
                )
            }
        };

        let mut lenders: HashMap<LenderId, SharedProvider> = HashMap::new();
        if let Some(cc) = &p.lenders.carecredit {
            let mut b = carecredit_client::Client::builder(cc.base_url.clone(), cc.credentials())
                .merchant(p.location_id.clone(), cc.merchant_number.as_str())
                .limits(cc.limits)
                .http_client(http.clone())
                // In-call retries: one capped policy, see CALL_RETRY.
                .retry(CALL_RETRY)
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
                .http_client(http.clone())
                // In-call retries: one capped policy, see CALL_RETRY.
                .retry(CALL_RETRY)
                .timeout(CALL_TIMEOUT)
                .build()
                .with_context(|| format!("the Sunbit client of {}", p.id))?;
            lenders.insert(LenderId::new("sunbit"), Arc::new(client));
        }
        // Lenders without an API: the practice's link out, the decision from staff.
        for l in &p.lenders.link_only {
            lenders.insert(
                LenderId::new(l.lender.id()),
                Arc::new(chairside_engine::link_lender::LinkOnlyProvider::new(
                    l.terms(),
                )),
            );
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
            .map_err(|e| anyhow::anyhow!("message templates: {e}"))?
            .with_journal(journal.clone())
            // The runner records a channel sent in the step's own commit.
            .with_sent_recorded_by_step(),
    );
    let links = config.patient_links();
    let mut runner_config = config.runner_config();
    runner_config.step_deadline = STEP_DEADLINE;
    // A poll pages through changes (several calls): give it the step's budget and more.
    runner_config.poll_deadline = STEP_DEADLINE + CALL_BUDGET;
    if let Some(retry) = extras.retry {
        runner_config.backoff = retry;
    }
    let mut engine = EngineBuilder::new(store.clone())
        .runner_config(runner_config)
        .detection(config.detection.detect_config());
    if let Some(clock) = extras.clock {
        engine = engine.clock(clock);
    }
    engine = engine.dispatch_config(DispatchConfig {
        owner: format!("{}/outbound", config.runner.owner),
        backoff: Backoff {
            base: config.outbound.first_retry,
            cap: config.outbound.max_retry_delay,
            max_attempts: config.outbound.max_attempts,
        },
        ..DispatchConfig::default()
    });
    for hook in &config.outbound.webhooks {
        let secret = WebhookSecret::parse(&hook.secret)
            .with_context(|| format!("the secret of webhook endpoint {}", hook.name))?;
        let mut endpoint = WebhookEndpoint::new(&hook.name, hook.url.clone(), secret)
            .context("the webhook HTTP client")?;
        if let Some(events) = &hook.events {
            endpoint = endpoint.types(events.iter().copied());
        }
        if let Some(practices) = &hook.practices {
            endpoint = endpoint.practices(practices.iter().cloned());
        }
        engine = engine.subscriber(Arc::new(endpoint));
    }
    if let Some(h) = &config.outbound.hubspot {
        let client = hubspot_client::Client::builder(h.base_url.clone(), h.token.clone())
            .deal_id_property(h.deal_id_property.clone())
            .http_client(http.clone())
            // In-call retries: one capped policy, see CALL_RETRY.
            .retry(CALL_RETRY)
            .timeout(CALL_TIMEOUT)
            .build()
            .context("the HubSpot client")?;
        let mut crm = chairside_engine::outbound::crm::HubSpotSubscriber::new(
            client,
            store.clone(),
            h.stages.clone(),
        )
        .pipeline(h.pipeline.clone())
        .amounts(h.amounts);
        if let Some(practices) = &h.practices {
            crm = crm.practices(practices.iter().cloned());
        }
        engine = engine.subscriber(Arc::new(crm));
    }
    for lab in labs {
        engine = engine.subscriber(Arc::new(lab));
    }
    if !alert_routes.is_empty() {
        let alerts = chairside_engine::outbound::staff_alert::StaffAlerts::new(
            alert_routes,
            store.clone(),
            journal.clone(),
            config.http.public_base_url.clone(),
        )
        .map_err(anyhow::Error::msg)?;
        engine = engine.subscriber(Arc::new(alerts));
    }
    for subscriber in extras.subscribers {
        engine = engine.subscriber(subscriber);
    }
    for (p, pms, lenders, payments) in parts {
        let mut workflow = p.workflow_config();
        workflow
            .lender_schedules
            .extend(extras.lender_schedules.iter().cloned());
        engine = engine.practice(PracticeRuntime {
            profile: p.profile(),
            workflow,
            policy: p.policy,
            pms,
            lenders,
            payments: Arc::new(payments),
            messenger: messenger.clone(),
            patient_links: links.clone(),
        });
    }
    let mut http_config = config.http_config();
    for (id, provider) in extras.lenders {
        http_config
            .lenders
            .entry(id.clone())
            .or_insert_with(|| LenderCopy {
                name: id.as_str().to_owned(),
                disclosure: HashMap::new(),
            });
        engine = engine.lender(id, provider);
    }
    let engine = engine.build().context("the practices and their lenders")?;
    // Before anything can write an event: a subscriber new to this store is sent everything from
    // here on, including what the runner does before the dispatcher's first round.
    engine
        .dispatcher()
        .start_cursors()
        .await
        .context("starting the outbound subscribers' cursors")?;

    http_config
        .validate()
        .map_err(|e| anyhow::anyhow!("the [http] settings: {e}"))?;
    let poll_now = Arc::new(Notify::new());
    let http = HttpState::new(store.clone(), http_config, metrics, poll_now.clone());
    Ok(Service {
        store,
        runner: engine.runner().clone(),
        dispatcher: engine.dispatcher().clone(),
        engine,
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

/// How long a stop waits for the steps in flight to finish before abandoning them (kept below
/// the usual 30 s a supervisor waits between SIGTERM and SIGKILL).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(20);

/// The async runtime's worker threads for `chairside` (every command) and the bench's instances:
/// `TOKIO_WORKER_THREADS` when set to a positive number (tokio's own variable, which an explicit
/// count would otherwise ignore), else one fewer than the CPUs, and at least one.
///
/// One CPU is left to the threads that are not the runtime's: the SQLite store's thread, on which
/// a good part of the work runs (docs/performance.md), or the database on the same machine. With a
/// worker for every CPU, the runtime's idle workers were woken to look for work the store's
/// thread was doing: at zero latency that cost 9 to 13 % of the CPU per external call at 24 and
/// 12 plans, and gained no throughput at 300 ("The runtime's workers", docs/performance.md).
#[must_use]
pub fn runtime_workers(cpus: usize, env: Option<&str>) -> usize {
    env.and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(cpus.saturating_sub(1).max(1))
}

/// [`runtime_workers`] for this machine and environment.
#[must_use]
pub fn runtime_workers_here() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    runtime_workers(cpus, std::env::var("TOKIO_WORKER_THREADS").ok().as_deref())
}

/// The builder of the async runtime with `workers` workers, for `chairside` (every command) and
/// the bench's instances: with one worker, tokio's current-thread scheduler, which runs every
/// task on the thread that drives it (`Runtime::block_on`) without the multi-thread
/// scheduler's work stealing, its atomics and its parking of an idle worker; with more, the
/// multi-thread scheduler with that many workers. One worker either way does the same work on
/// one thread: the current-thread scheduler does it with about a tenth less CPU per external
/// call at 300 and 12 plans and the same at 24 (docs/performance.md, "One worker on the
/// current-thread scheduler"). Blocking work goes to `spawn_blocking`'s threads in both.
#[must_use]
pub fn runtime_builder(workers: usize) -> tokio::runtime::Builder {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
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
    let service = build(&config, Extras::default(), metrics).await?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("listening on {}", config.http.listen))?;
    tracing::info!(listen = %config.http.listen, practices = config.practices.len(), "chairside is running");
    let limits = chairside_http::ServeLimits::of(service.http.config());
    let app = chairside_http::router(service.http.clone());
    let server = tokio::spawn(chairside_http::serve(
        listener,
        app,
        limits,
        shutdown_signal(),
    ));

    // Outbound events go out beside the runner's work: a slow subscriber never holds a step.
    let outbound = tokio::spawn(service.dispatcher.clone().run(Duration::from_secs(1)));
    // Each practice is polled on its own schedule with its own deadline; workflows run in a
    // continuous pool woken by the store when a webhook, poll or staff action makes work due.
    let runner = service.runner.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let pollers = {
        let runner = runner.clone();
        let every = config.runner.poll_interval;
        let now = service.poll_now.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { runner.poll_practices(every, now, stop).await })
    };
    let work = runner.work(stopped(stop_rx));
    tokio::pin!(work);
    tokio::select! {
        r = &mut work => r?,
        () = shutdown_signal() => {
            // Graceful stop with a bounded drain: nothing new is claimed, the steps in flight
            // finish and commit; a step still running after SHUTDOWN_DRAIN is abandoned (its
            // task dropped). Abandoning is safe: its intent is journalled, its claim's lease lets
            // another instance (or the next start) repeat it under the same idempotency key, and
            // a message channel whose outcome is unknown is reconciled (a text) or not resent
            // (an email).
            let _ = stop_tx.send(true);
            tracing::info!(drain_secs = SHUTDOWN_DRAIN.as_secs(), "stopping: finishing the steps in flight");
            match tokio::time::timeout(SHUTDOWN_DRAIN, &mut work).await {
                Ok(r) => {
                    r?;
                    tracing::info!("stopped: every step in flight committed");
                }
                Err(_) => tracing::warn!("stopped: steps still in flight were abandoned; they are repeated under the same keys once their lease expires"),
            }
        }
    }
    let _ = pollers.await;
    server.abort();
    outbound.abort();
    // The patient page's link lines still queued (written behind, not legal records).
    service.http.flush_page_marks().await;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use financing_core::{LenderId, SharedProvider};
    use sandbox::{SandboxConfig, SandboxUrls};
    use url::Url;

    use super::{Extras, build, runtime_builder, runtime_workers};
    use crate::config::Config;
    use crate::demo::world::{WorldOptions, demo_config};
    use chairside_http::Metrics;

    /// The demo's configuration pointed at loopback addresses nothing listens on: `build` makes no
    /// request.
    fn config(dir: &std::path::Path) -> Config {
        let url = |port: u16| Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
        let urls = SandboxUrls {
            stripe: url(9),
            twilio: url(9),
            smtp: "127.0.0.1:9".parse().expect("address"),
            dentrix: url(9),
            nexhealth: url(9),
            opendental: url(9),
            carecredit: url(9),
            sunbit: url(9),
        };
        let listen = "127.0.0.1:9".parse().expect("address");
        demo_config(
            dir,
            &WorldOptions::default(),
            listen,
            &urls,
            &SandboxConfig::default(),
        )
        .expect("the demo configuration")
    }

    /// A lender to plug in: any `FinancingProvider` will do; a Sunbit client is one at hand.
    fn plug_in() -> SharedProvider {
        let sunbit = sunbit_client::Client::builder(
            Url::parse("http://127.0.0.1:9/").expect("url"),
            sunbit_client::Credentials {
                key: secrecy::SecretString::from("key".to_owned()),
                secret: secrecy::SecretString::from("secret".to_owned()),
            },
        )
        .location(
            financing_core::LocationId::new("lone-star-dental-main"),
            "acme-location",
        )
        .build()
        .expect("a client");
        Arc::new(sunbit)
    }

    #[tokio::test]
    async fn a_plug_in_lender_the_waterfall_names_is_built_into_every_practice() {
        // Arrange: every practice asks "acme-lending" after Sunbit.
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = config(dir.path());
        for p in &mut config.practices {
            p.lenders.order.push(LenderId::new("acme-lending"));
        }
        let extras = Extras {
            lenders: vec![(LenderId::new("acme-lending"), plug_in())],
            ..Extras::default()
        };

        // Act
        let service = build(&config, extras, Metrics::local())
            .await
            .expect("the plug-in satisfies every waterfall");

        // Assert
        let lenders = service.engine.lenders();
        assert_eq!(lenders.len(), 3, "the three demo practices");
        let cherry = crate::demo::world::PRACTICES[crate::demo::world::CHERRY_PRACTICE].id;
        for (practice, ids) in lenders {
            // The demo's Cherry practice also has its link-only lender.
            let want: &[&str] = if practice.as_str() == cherry {
                &["acme-lending", "carecredit", "cherry", "sunbit"]
            } else {
                &["acme-lending", "carecredit", "sunbit"]
            };
            assert_eq!(
                ids.iter().map(LenderId::as_str).collect::<Vec<_>>(),
                want,
                "{practice}"
            );
        }
    }

    #[test]
    fn the_runtime_leaves_one_cpu_to_the_store_unless_told_otherwise() {
        // Arrange: machines of one, two and eight CPUs; tokio's variable set, unset and unusable.
        let cases = [
            (1, None, 1),
            (2, None, 1),
            (8, None, 7),
            (2, Some("4"), 4),
            (8, Some(" 2 "), 2),
            (2, Some("0"), 1),
            (8, Some("many"), 7),
        ];

        for (cpus, env, want) in cases {
            // Act
            let workers = runtime_workers(cpus, env);

            // Assert
            assert_eq!(workers, want, "{cpus} CPUs, TOKIO_WORKER_THREADS={env:?}");
        }
    }

    #[test]
    fn one_worker_is_the_current_thread_scheduler_and_more_are_the_multi_thread_one() {
        for (workers, flavor) in [
            (1, tokio::runtime::RuntimeFlavor::CurrentThread),
            (2, tokio::runtime::RuntimeFlavor::MultiThread),
            (3, tokio::runtime::RuntimeFlavor::MultiThread),
        ] {
            // Act
            let runtime = runtime_builder(workers)
                .enable_all()
                .build()
                .expect("runtime");

            // Assert
            let handle = runtime.handle();
            assert_eq!(handle.runtime_flavor(), flavor, "{workers} workers");
            assert_eq!(handle.metrics().num_workers(), workers);
            // Spawned work and blocking work both run on it.
            let answer = runtime.block_on(async {
                let spawned = tokio::spawn(async { 20 }).await.expect("task");
                let blocking = tokio::task::spawn_blocking(|| 22).await.expect("blocking");
                spawned + blocking
            });
            assert_eq!(answer, 42);
        }
    }

    #[tokio::test]
    async fn a_waterfall_naming_a_lender_without_a_plug_in_refuses_to_build() {
        // Arrange
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = config(dir.path());
        config.practices[0]
            .lenders
            .order
            .push(LenderId::new("acme-lending"));

        // Act
        let built = build(&config, Extras::default(), Metrics::local()).await;

        // Assert
        let message = format!("{:#}", built.expect_err("nothing provides acme-lending"));
        assert!(message.contains("acme-lending"), "{message}");
        assert!(message.contains("lone-star-dental"), "{message}");
    }
}
