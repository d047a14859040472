//! A whole Chairside world on loopback: the sandbox's stand-ins, practices wired to them with the
//! real clients, a store and a runner. `chairside demo`, the end-to-end tests and the benchmark
//! all drive it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use connector_transport::RetryPolicy;
use financing_core::{
    AmountLimits, Backoff, DepositRule, InHouseTerms, InstallmentInterval, LenderId, LenderSlot,
    LocationId, Money, PartialApprovalRule, PolicySettings, PracticeId, SharedProvider, UsState,
    Waterfall, WaterfallPolicy,
};
use sandbox::{Persona, Pms, Sandbox, SandboxConfig, SandboxUrls, SeededCase};
use secrecy::SecretString;
use url::Url;

use chairside_engine::adapters::dentrix::DentrixPractice;
use chairside_engine::adapters::messaging::{
    PatientMessenger, PracticeChannels, StoreConsentLedger,
};
use chairside_engine::adapters::nexhealth::NexHealthPractice;
use chairside_engine::adapters::opendental::OpenDentalPractice;
use chairside_engine::adapters::stripe::StripePayments;
use chairside_engine::clock::SystemClock;
use chairside_engine::links::PatientLinks;
use chairside_engine::ports::{PracticeProfile, SharedPracticeSystem};
use chairside_engine::runner::{PracticeRuntime, Runner, RunnerConfig};
use chairside_engine::store::SqliteStore;
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::prelude::*;
use chairside_http::{HttpConfig, HttpState, Metrics, PracticeSite, StaffAccount, WebhookSecrets};
use chairside_workflow::{Status, TaskKind, WorkflowConfig, WorkflowState};

/// One demo practice: who it is, its practice system, and the personas seeded there.
#[derive(Debug, Clone)]
pub struct PracticeSpec {
    /// Id.
    pub id: &'static str,
    /// Name.
    pub name: &'static str,
    /// State.
    pub state: UsState,
    /// IANA zone.
    pub time_zone: &'static str,
    /// Its practice system in the sandbox.
    pub pms: Pms,
    /// Counsel approved prefill (never effective in CA or NY).
    pub prefill_approved: bool,
}

/// The demo's practices: Texas on Dentrix Ascend, California on Open Dental, New York behind
/// NexHealth.
pub const PRACTICES: [PracticeSpec; 3] = [
    PracticeSpec {
        id: "lone-star-dental",
        name: "Lone Star Dental",
        state: UsState::TX,
        time_zone: "America/Chicago",
        pms: Pms::Dentrix,
        prefill_approved: true,
    },
    PracticeSpec {
        id: "golden-gate-dental",
        name: "Golden Gate Dental",
        state: UsState::CA,
        time_zone: "America/Los_Angeles",
        pms: Pms::OpenDental,
        prefill_approved: true,
    },
    PracticeSpec {
        id: "empire-dental",
        name: "Empire Dental",
        state: UsState::NY,
        time_zone: "America/New_York",
        pms: Pms::NexHealth,
        prefill_approved: false,
    },
];

/// The 16-digit CareCredit merchant number the demo uses for every location.
const MERCHANT: &str = "5348120000000001";

/// Where a persona's workflow must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Done, with this path (`carecredit approved`).
    Done(&'static str),
    /// Waiting on staff with this task.
    Staff(TaskKind),
}

impl Expected {
    /// What the persona must end in, under the demo practices' rules (lenders CareCredit then
    /// Sunbit; a counteroffer keeps looking and the remainder goes in-house; a 10 % deposit).
    pub fn of(persona: Persona) -> Self {
        match persona {
            // Sunbit approves 60 % of the whole portion the patient enters on its page, CareCredit
            // 60 % of the amount asked (after the deposit): Sunbit's counteroffer is the larger.
            Persona::PartialApproval => Self::Done("sunbit partial + in-house"),
            Persona::DeclineFirstApproveSecond | Persona::ReturningCardholderShort => {
                Self::Done("sunbit approved")
            }
            Persona::DeclineEverywhere => Self::Done("in-house plan"),
            Persona::NeverCompletes => Self::Staff(TaskKind::PatientQuiet),
            Persona::InsuranceAboveFee => Self::Staff(TaskKind::BadData),
            _ => Self::Done("carecredit approved"),
        }
    }

    /// Whether a settled workflow matches.
    pub fn matches(self, state: &WorkflowState) -> bool {
        match self {
            Self::Done(path) => {
                state.status == Status::Done
                    && state.result.as_ref().is_some_and(|r| r.path == path)
            }
            Self::Staff(kind) => {
                state.status == Status::WaitingOnStaff
                    && state.staff_task.as_ref().is_some_and(|t| t.kind == kind)
            }
        }
    }

    /// For the table.
    pub fn describe(self) -> String {
        match self {
            Self::Done(path) => format!("done: {path}"),
            Self::Staff(kind) => format!("staff: {}", kind.label()),
        }
    }
}

/// A seeded case and where it belongs.
#[derive(Debug, Clone)]
pub struct Case {
    /// The practice.
    pub practice: PracticeId,
    /// The persona.
    pub persona: Persona,
    /// What the sandbox seeded.
    pub seeded: SeededCase,
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// Sandbox settings (faults, latency, webhook target).
    pub sandbox: SandboxConfig,
    /// Seconds between reminders (the demo compresses days into seconds).
    pub reminder_every: Duration,
    /// Time between lender status polls.
    pub poll_every: Duration,
    /// Runner concurrency.
    pub concurrency: usize,
    /// Where the HTTP surface is served (patient pages, dashboard).
    pub public_base_url: Url,
    /// The patient link signing key.
    pub link_key: SecretString,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            sandbox: SandboxConfig::default(),
            reminder_every: Duration::from_millis(700),
            poll_every: Duration::from_millis(150),
            concurrency: 16,
            public_base_url: Url::parse("http://127.0.0.1:8080/")
                .unwrap_or_else(|_| unreachable!("literal URL")),
            link_key: SecretString::from("demo-patient-link-key-0123456789abcdef".to_owned()),
        }
    }
}

/// The demo's staff password (every practice has one account, named after it).
pub const STAFF_PASSWORD: &str = "chairside-demo";

/// The running world.
#[derive(Debug)]
pub struct World {
    /// The stand-ins.
    pub sandbox: Sandbox,
    /// Where the HTTP surface (webhooks, patient pages, dashboard) listens.
    pub http_base: Url,
    /// Staff accounts of the dashboard: (username, practice).
    pub staff: Vec<(String, PracticeId)>,
    http_task: tokio::task::JoinHandle<()>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The runner.
    pub runner: Runner,
    /// What was seeded.
    pub cases: Vec<Case>,
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn workflow_config(options: &WorldOptions) -> WorkflowConfig {
    let slot = |id: &str, min: Option<i64>| LenderSlot {
        lender: LenderId::new(id),
        limits: AmountLimits {
            min: min.map(Money::usd),
            max: None,
        },
    };
    WorkflowConfig {
        waterfall: Waterfall::new(
            vec![slot("carecredit", Some(20_000)), slot("sunbit", None)],
            WaterfallPolicy {
                on_partial: PartialApprovalRule::ContinueForFullCoverage,
                in_house_fallback: true,
            },
        ),
        deposit: DepositRule::BasisPoints(1_000),
        in_house: Some(InHouseTerms {
            deposit: DepositRule::None,
            installments: 6,
            interval: InstallmentInterval::MONTHLY,
        }),
        reminder_delays: vec![options.reminder_every, options.reminder_every],
        give_up_after: options.reminder_every,
        poll_interval: options.poll_every,
    }
}

/// The Sunbit location of a demo practice.
fn sunbit_location(spec: &PracticeSpec) -> String {
    format!("{}-sunbit", spec.id)
}

/// The HTTP surface's listener, bound before the sandbox starts so the sandbox can be told where
/// to send its webhooks.
#[derive(Debug)]
pub struct Surface {
    listener: tokio::net::TcpListener,
    base: Url,
}

impl Surface {
    /// Binds a free loopback port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn bind() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the HTTP surface")?;
        let base =
            Url::parse(&format!("http://{}/", listener.local_addr()?)).context("http base")?;
        Ok(Self { listener, base })
    }

    /// Where it will listen (`http://127.0.0.1:PORT/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Where the Stripe stand-in must POST its events.
    ///
    /// # Errors
    /// Never in practice (the base is a loopback URL).
    pub fn stripe_webhook_url(&self) -> anyhow::Result<Url> {
        Ok(self.base.join("webhooks/stripe")?)
    }

    /// Where the Sunbit stand-in must POST the events of each demo practice's Sunbit location:
    /// (location, `webhooks/sunbit/{practice}`), one per practice.
    ///
    /// # Errors
    /// Never in practice (the base is a loopback URL).
    pub fn sunbit_webhook_urls(&self) -> anyhow::Result<Vec<(String, Url)>> {
        PRACTICES
            .iter()
            .map(|p| {
                Ok((
                    sunbit_location(p),
                    self.base.join(&format!("webhooks/sunbit/{}", p.id))?,
                ))
            })
            .collect()
    }

    /// Where the Twilio stand-in must POST inbound texts.
    ///
    /// # Errors
    /// Never in practice (the base is a loopback URL).
    pub fn twilio_inbound_url(&self) -> anyhow::Result<Url> {
        Ok(self.base.join("webhooks/twilio")?)
    }
}

/// The orchestrator's side of a world: the HTTP surface, the store and the runner, wired with the
/// real clients to a sandbox's URLs and credentials. The sandbox may run in this process
/// ([`World`]) or in another one (the benchmark, so its CPU time is not counted as ours).
#[derive(Debug)]
pub struct Stack {
    /// Where the HTTP surface (webhooks, patient pages, dashboard) listens.
    pub http_base: Url,
    /// Staff accounts of the dashboard: (username, practice).
    pub staff: Vec<(String, PracticeId)>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The runner.
    pub runner: Runner,
    http_task: tokio::task::JoinHandle<()>,
}

impl Stack {
    /// Opens a store in `dir`, wires the demo practices to the sandbox at `urls` (whose
    /// credentials are in `cfg`) and serves the HTTP surface on `surface`. The sandbox must
    /// already send its webhooks to `surface` (see [`Surface::stripe_webhook_url`] and its
    /// siblings).
    ///
    /// # Errors
    /// A store or client that cannot start.
    pub async fn start(
        surface: Surface,
        dir: &Path,
        options: &WorldOptions,
        urls: &SandboxUrls,
        cfg: &SandboxConfig,
    ) -> anyhow::Result<Self> {
        let Surface {
            listener,
            base: http_base,
        } = surface;
        let mut options = options.clone();
        options.public_base_url = http_base.clone();
        let store = SqliteStore::open(&dir.join("chairside.sqlite"), DataKey::generate())
            .await
            .context("opening the store")?;
        store.migrate().await.context("migrating the store")?;
        let store: Arc<dyn Store> = Arc::new(store);

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(32)
            .build()
            .context("http client")?;

        let stripe = stripe_schedule::Client::builder(cfg.stripe.secret_key.clone())
            .base_url(urls.stripe.clone())
            .http_client(http.clone())
            .retry(RetryPolicy::none())
            .build()
            .context("stripe client")?;
        let ledger = Arc::new(StoreConsentLedger::new(store.clone()));
        let sms = messaging::SmsClient::builder(
            messaging::AccountSid::new(cfg.twilio.account_sid.clone()),
            cfg.twilio.auth_token.clone(),
            ledger.clone(),
        )
        .base_url(urls.twilio.clone())
        .http_client(http.clone())
        .retry(RetryPolicy::none())
        .build()
        .context("twilio client")?;
        let smtp = messaging::SmtpConfig::new(
            urls.smtp.ip().to_string(),
            urls.smtp.port(),
            messaging::SmtpSecurity::None,
        );

        let mut channels = HashMap::new();
        let mut runtimes = Vec::new();
        for spec in &PRACTICES {
            let id = PracticeId::new(spec.id);
            let location = LocationId::new(format!("{}-main", spec.id));
            let from_address =
                messaging::EmailAddress::parse(&format!("frontdesk@{}.example", spec.id))
                    .context("demo email")?;
            let email = messaging::EmailSender::new(
                &smtp,
                messaging::EmailFrom {
                    name: spec.name.into(),
                    address: from_address,
                },
            )
            .context("smtp sender")?;
            let from = messaging::SmsFrom::Number(
                messaging::PhoneNumber::parse("+15125550100").context("demo number")?,
            );
            channels.insert(
                id.clone(),
                PracticeChannels {
                    email: Some(Arc::new(email)),
                    sms: Some((sms.clone(), from)),
                },
            );

            let pms: SharedPracticeSystem = match spec.pms {
                Pms::Dentrix => {
                    let c = &cfg.dentrix;
                    let creds = dentrix_client::Credentials::new(
                        c.client_id.clone(),
                        c.client_secret.clone(),
                        dentrix_client::OrganizationId::new(c.organization_id.clone()),
                    );
                    Arc::new(DentrixPractice::new(
                        dentrix_client::Client::builder(urls.dentrix.clone(), creds)
                            .http_client(http.clone())
                            .retry(RetryPolicy::none())
                            .build()
                            .context("dentrix client")?,
                    ))
                }
                Pms::OpenDental => {
                    let c = &cfg.opendental;
                    let client = opendental_client::Client::builder(
                        urls.opendental.clone(),
                        c.developer_key.clone(),
                        c.customer_key.clone(),
                    )
                    .http_client(http.clone())
                    .retry(RetryPolicy::none())
                    .build()
                    .context("open dental client")?;
                    // The sandbox's Open Dental writes its server times in UTC.
                    let tz = chrono_tz::UTC;
                    Arc::new(OpenDentalPractice::new(
                        client,
                        opendental_client::AcceptanceRule::default(),
                        tz,
                    ))
                }
                _ => {
                    let c = &cfg.nexhealth;
                    let creds = nexhealth_client::Credentials::new(
                        c.api_key.clone(),
                        c.subdomain.clone(),
                        nexhealth_client::LocationId::new(c.location_id.to_string()),
                    );
                    Arc::new(NexHealthPractice::new(
                        nexhealth_client::Client::builder(urls.nexhealth.clone(), creds)
                            .http_client(http.clone())
                            .retry(RetryPolicy::none())
                            .rate_budget(nexhealth_client::RateBudget::UNLIMITED)
                            .build()
                            .context("nexhealth client")?,
                    ))
                }
            };

            let cc = &cfg.carecredit;
            let carecredit = carecredit_client::Client::builder(
                urls.carecredit.clone(),
                carecredit_client::Credentials {
                    partner_code: carecredit_client::PartnerCode::new("CHAIRSIDE"),
                    client_id: cc.client_id.clone(),
                    client_secret: cc.client_secret.clone(),
                },
            )
            .merchant(location.clone(), MERCHANT)
            .http_client(http.clone())
            .retry(RetryPolicy::none())
            .poll_after(options.poll_every)
            .build()
            .context("carecredit client")?;
            let sb = &cfg.sunbit;
            let sunbit = sunbit_client::Client::builder(
                urls.sunbit.clone(),
                sunbit_client::Credentials {
                    key: secret(&sb.api_key),
                    secret: sb.api_secret.clone(),
                },
            )
            .location(location.clone(), sunbit_location(spec))
            .http_client(http.clone())
            .retry(RetryPolicy::none())
            .poll_after(options.poll_every)
            .build()
            .context("sunbit client")?;
            let lenders: HashMap<LenderId, SharedProvider> = [
                (
                    LenderId::new("carecredit"),
                    Arc::new(carecredit) as SharedProvider,
                ),
                (LenderId::new("sunbit"), Arc::new(sunbit) as SharedProvider),
            ]
            .into_iter()
            .collect();

            let payments = StripePayments::new(
                stripe.clone(),
                format!("{} treatment plan", spec.name),
                Some(options.public_base_url.clone()),
            );
            runtimes.push((spec, id, location, pms, lenders, payments));
        }
        let messenger = Arc::new(
            PatientMessenger::new(channels, ledger)
                .map_err(|e| anyhow::anyhow!("templates: {e}"))?,
        );
        let runtimes = runtimes
            .into_iter()
            .map(
                |(spec, id, location, pms, lenders, payments)| PracticeRuntime {
                    profile: PracticeProfile {
                        id,
                        name: spec.name.into(),
                        state: spec.state,
                        time_zone: spec.time_zone.into(),
                        location_id: location,
                        phone: "+15125550100".into(),
                        email: format!("frontdesk@{}.example", spec.id),
                    },
                    workflow: workflow_config(&options),
                    policy: PolicySettings {
                        prefill_approved_by_counsel: spec.prefill_approved,
                    },
                    pms,
                    lenders,
                    payments: Arc::new(payments),
                    messenger: messenger.clone(),
                    patient_links: PatientLinks::new(
                        options.public_base_url.clone(),
                        options.link_key.clone(),
                        Duration::from_secs(30 * 86_400),
                    ),
                },
            )
            .collect();
        let runner_config = RunnerConfig {
            owner: format!("demo-{}", std::process::id()),
            lease: Duration::from_secs(30),
            batch: 256,
            concurrency: options.concurrency,
            backoff: Backoff {
                base: Duration::from_millis(50),
                cap: Duration::from_millis(500),
                max_attempts: 6,
            },
        };
        let runner = Runner::new(
            store.clone(),
            runtimes,
            runner_config,
            Arc::new(SystemClock),
        );

        let mut http = HttpConfig::new(http_base.clone(), options.link_key.clone());
        http.webhook_secrets = WebhookSecrets {
            stripe: cfg.stripe.webhook_secrets.clone(),
            // One sandbox Sunbit account serves every demo practice: each gets its secret.
            sunbit: PRACTICES
                .iter()
                .map(|p| {
                    (
                        PracticeId::new(p.id),
                        vec![cfg.sunbit.webhook_secret.clone()],
                    )
                })
                .collect(),
            nexhealth: std::collections::HashMap::new(),
            twilio: vec![cfg.twilio.auth_token.clone()],
        };
        let mut staff = Vec::new();
        let password = chairside_http::hash_password(&secret(STAFF_PASSWORD))
            .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?;
        for spec in &PRACTICES {
            let tz = spec
                .time_zone
                .parse()
                .map_err(|_| anyhow::anyhow!("demo time zone"))?;
            let mut site =
                PracticeSite::new(PracticeId::new(spec.id), spec.name, "+15125550100", tz);
            site.sms_numbers = vec![format!("+1512555{:04}", 200 + staff.len())];
            http.practices.push(site);
            let username = spec.id.split('-').next().unwrap_or(spec.id).to_owned();
            http.staff.push(StaffAccount {
                username: username.clone(),
                practice: PracticeId::new(spec.id),
                password_hash: password.clone(),
            });
            staff.push((username, PracticeId::new(spec.id)));
        }
        http.validate()
            .map_err(|e| anyhow::anyhow!("demo HTTP configuration: {e}"))?;
        let state = HttpState::new(
            store.clone(),
            http,
            Metrics::local(),
            Arc::new(tokio::sync::Notify::new()),
        );
        let app = chairside_http::router(state);
        let http_task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the demo's HTTP surface stopped");
            }
        });
        Ok(Self {
            http_base,
            staff,
            store,
            runner,
            http_task,
        })
    }

    /// How many workflows have settled: done, with staff or cancelled, with nothing left to do.
    ///
    /// # Errors
    /// Store errors.
    pub async fn settled(&self) -> anyhow::Result<usize> {
        let mut settled = 0;
        for status in [Status::Done, Status::WaitingOnStaff, Status::Cancelled] {
            settled += self
                .store
                .workflows(None, Some(status), u32::MAX)
                .await?
                .iter()
                .filter(|r| {
                    r.state.stage == chairside_workflow::Stage::Settled && r.next_action.is_none()
                })
                .count();
        }
        Ok(settled)
    }

    /// Stops the HTTP surface.
    pub async fn stop(self) {
        self.http_task.abort();
        let _ = self.http_task.await;
    }
}

impl World {
    /// Starts the sandbox, opens a store in `dir`, wires the practices with the real clients.
    ///
    /// # Errors
    /// A sandbox, store or client that cannot start.
    pub async fn start(dir: &Path, mut options: WorldOptions) -> anyhow::Result<Self> {
        // The HTTP surface listens first, so the sandbox can send its webhooks there.
        let surface = Surface::bind().await?;
        options.public_base_url = surface.base().clone();
        options.sandbox.stripe.webhook_url = Some(surface.stripe_webhook_url()?);
        options.sandbox.sunbit.location_webhook_urls =
            surface.sunbit_webhook_urls()?.into_iter().collect();
        options.sandbox.twilio.inbound_url = Some(surface.twilio_inbound_url()?);
        let sandbox = Sandbox::start(options.sandbox.clone())
            .await
            .context("starting the sandbox")?;
        let stack = Stack::start(surface, dir, &options, sandbox.urls(), sandbox.config()).await?;
        let Stack {
            http_base,
            staff,
            store,
            runner,
            http_task,
        } = stack;
        Ok(Self {
            sandbox,
            http_base,
            staff,
            http_task,
            store,
            runner,
            cases: Vec::new(),
        })
    }

    /// Seeds `persona` at the practice `spec` and accepts its plan.
    ///
    /// # Errors
    /// The sandbox refused the seed.
    pub fn seed(&mut self, spec: &PracticeSpec, persona: Persona) -> anyhow::Result<()> {
        let seeded = self
            .sandbox
            .seed_persona(spec.pms, persona)
            .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
        self.sandbox
            .accept_plan(seeded.plan.key)
            .map_err(|e| anyhow::anyhow!("accepting: {e}"))?;
        self.cases.push(Case {
            practice: PracticeId::new(spec.id),
            persona,
            seeded,
        });
        Ok(())
    }

    /// The demo's spread: every persona at the Texas practice (California's at the California
    /// practice), and two at the New York one.
    ///
    /// # Errors
    /// The sandbox refused a seed.
    pub fn seed_demo(&mut self) -> anyhow::Result<()> {
        for persona in Persona::ALL {
            let spec = if persona == Persona::CaliforniaPractice {
                &PRACTICES[1]
            } else {
                &PRACTICES[0]
            };
            self.seed(spec, persona)?;
        }
        self.seed(&PRACTICES[2], Persona::InstantApproval)?;
        self.seed(&PRACTICES[2], Persona::DeclineEverywhere)?;
        Ok(())
    }

    /// The workflow of a case, once detected.
    ///
    /// # Errors
    /// Store errors.
    pub async fn workflow_of(&self, case: &Case) -> anyhow::Result<Option<WorkflowState>> {
        let rows = self
            .store
            .workflows(Some(&case.practice), None, 10_000)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| r.state)
            .filter(|s| s.key.plan_id.as_str() == case.seeded.plan.pms_id)
            .max_by_key(|s| s.accepted_at))
    }

    /// Runs polls and ticks until every case's workflow has settled (done, with staff, or
    /// cancelled) or `deadline` passes. Returns whether everything settled.
    ///
    /// # Errors
    /// Store errors.
    pub async fn drive(&self, deadline: Duration) -> anyhow::Result<bool> {
        let started = Instant::now();
        loop {
            self.runner.poll().await?;
            let worked = self.runner.tick().await?;
            if self.all_settled().await? {
                return Ok(true);
            }
            if started.elapsed() > deadline {
                return Ok(false);
            }
            if worked == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn all_settled(&self) -> anyhow::Result<bool> {
        let mut settled = 0;
        for practice in PRACTICES.iter().map(|p| PracticeId::new(p.id)) {
            settled += self
                .store
                .workflows(Some(&practice), None, 100_000)
                .await?
                .iter()
                .filter(|r| {
                    r.state.stage == chairside_workflow::Stage::Settled && r.next_action.is_none()
                })
                .count();
        }
        Ok(settled >= self.cases.len())
    }

    /// Stops the HTTP surface and the sandbox.
    pub async fn stop(self) {
        self.http_task.abort();
        self.sandbox.stop().await;
    }
}
