//! A whole Chairside world on loopback: the sandbox's stand-ins, and a [`Config`] pointing at
//! them that [`app::build`] turns into the stack (store, real clients, runner, HTTP surface), as
//! `chairside run` does. `chairside demo`, the end-to-end tests and the benchmark all drive it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use financing_core::{
    AmountLimits, Backoff, DepositRule, InstallmentInterval, LenderId, LocationId, Money,
    PartialApprovalRule, PolicySettings, PollSchedule, PracticeId, UsState,
};
use sandbox::{Persona, Pms, Sandbox, SandboxConfig, SandboxUrls, SeededCase};
use secrecy::SecretString;
use url::Url;

use crate::app::{self, Extras};
use crate::config::{
    CareCreditSettings, Config, DentrixSettings, HttpSettings, LenderSettings, NexHealthSettings,
    OpenDentalSettings, PaymentSettings, PmsSettings, PracticeSettings, ReminderSettings,
    RunnerSettings, SmtpSettings, StaffLogin, StoreSettings, StripeSettings, SunbitSettings,
    TwilioSettings,
};
use chairside_engine::runner::Runner;
use chairside_engine::store::{Durability, Store};
use chairside_http::Metrics;
use chairside_workflow::{Status, TaskKind, WorkflowState};

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
    /// The deposit is charged to the card the patient saves (`preference = "card_on_file"`)
    /// rather than paid through a pay link.
    pub card_on_file: bool,
}

/// The demo's practices: Texas on Dentrix Ascend, California on Open Dental, New York behind
/// NexHealth (its deposits charged to the card on file).
pub const PRACTICES: [PracticeSpec; 3] = [
    PracticeSpec {
        id: "lone-star-dental",
        name: "Lone Star Dental",
        state: UsState::TX,
        time_zone: "America/Chicago",
        pms: Pms::Dentrix,
        prefill_approved: true,
        card_on_file: false,
    },
    PracticeSpec {
        id: "golden-gate-dental",
        name: "Golden Gate Dental",
        state: UsState::CA,
        time_zone: "America/Los_Angeles",
        pms: Pms::OpenDental,
        prefill_approved: true,
        card_on_file: false,
    },
    PracticeSpec {
        id: "empire-dental",
        name: "Empire Dental",
        state: UsState::NY,
        time_zone: "America/New_York",
        pms: Pms::NexHealth,
        prefill_approved: false,
        card_on_file: true,
    },
];

/// The 16-digit CareCredit merchant number the demo uses for every location.
const MERCHANT: &str = "5348120000000001";

/// The demo practice whose waterfall ends with Cherry, a lender without an API
/// (docs/lenders.md): Empire Dental asks CareCredit, then Sunbit, then sends its own Cherry link.
pub const CHERRY_PRACTICE: usize = 2;

/// Empire Dental's Cherry application link (made up; Cherry gives each practice its own).
const CHERRY_LINK: &str = "https://pay.withcherry.example/empire-dental";

/// The path of a plan Cherry financed.
pub const CHERRY_APPROVED: &str = "cherry approved";

/// Who records Cherry's decisions in the demo, as the front desk would on the workflow's page.
const CHERRY_STAFF: &str = "staff:empire";

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

/// A new-patient intake the demo walks: staff start it, the patient types their details on the
/// intake page, financing runs, and at case acceptance the patient is created in the practice
/// system (or, for Dentrix Ascend, left to staff).
#[derive(Debug, Clone)]
pub struct IntakeCase {
    /// The practice.
    pub practice: PracticeId,
    /// Its practice system.
    pub pms: Pms,
    /// The intake.
    pub intake_id: String,
    /// The patient as the sandbox knows them (made up).
    pub patient: sandbox::SeedPatient,
    /// Where the workflow must end.
    pub expected: Expected,
    /// Whether the practice system must hold the patient (once) at the end.
    pub creates_record: bool,
    /// The patient opened the link from the email Chairside sent them (staff gave an email
    /// address), rather than one staff handed over.
    pub emailed: bool,
}

/// The intake's amount in the demo: what the patient owes after the consultation.
pub const INTAKE_AMOUNT: financing_core::Money = financing_core::Money::usd(100_000);

/// Demo settings.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// Sandbox settings (faults, latency, webhook target).
    pub sandbox: SandboxConfig,
    /// Seconds between reminders (the demo compresses days into seconds).
    pub reminder_every: Duration,
    /// Time between lender status polls.
    pub poll_every: Duration,
    /// How long a lender's hosted session lives (CareCredit's 30 minutes, compressed): the
    /// sandbox lapses its sessions then, and the workflow's schedule expects it. Default: four
    /// reminder intervals, so it stretches with the reminders when faults slow every step.
    pub lender_session: Option<Duration>,
    /// Read lenders on the schedules their clients ship (real timings, as `chairside run` does)
    /// instead of the compressed ones above: the bench's figures.
    pub shipped_lender_schedules: bool,
    /// Runner concurrency.
    pub concurrency: usize,
    /// Where the HTTP surface is served (patient pages, dashboard).
    pub public_base_url: Url,
    /// The patient link signing key.
    pub link_key: SecretString,
    /// How SQLite commits reach the disk. The demo's file is thrown away and its timings are
    /// compressed to fractions of a second (a patient gives up after about two), so it uses
    /// NORMAL: on a machine busy with other disk writes each FULL commit's sync can take tens
    /// of milliseconds and push the pending persona past its compressed deadline. The bench
    /// measures both; `chairside run` always uses FULL.
    pub durability: Durability,
    /// Every practice's time zone instead of its own, when set. The bench runs its practices
    /// where it is daytime, so texts to consenting patients go out (inside 09:00-20:00) and the
    /// figures include Twilio.
    pub time_zone: Option<chrono_tz::Tz>,
    /// The database: a PostgreSQL URL (the bench's `--database-url`), or `None` for a SQLite
    /// file in the world's directory.
    pub postgres: Option<SecretString>,
    /// The CRM stand-in's URL, when one runs (`World::start` starts it): deals for follow-up.
    pub crm_url: Option<Url>,
    /// Email each practice's staff mailbox (`staff@{practice}.example`, the sandbox's SMTP) about
    /// every new task (`[practices.staff_alerts]`). Off in the demo.
    pub staff_alerts: bool,
    /// Empire Dental's waterfall ends with Cherry, a lender without an API, whose decisions staff
    /// record ([`World::drive`] records them). Off in the benchmark, which drives the runner
    /// without a front desk.
    pub link_only_lender: bool,
    /// What the practices do with a lender's counteroffer: keep looking (the demo's rule) or
    /// stop for staff to accept it or pass it on (the browser test's counteroffer actions).
    pub on_partial: PartialApprovalRule,
}

/// The private app token the demo's CRM stand-in accepts (made up).
pub const DEMO_CRM_TOKEN: &str = "pat-demo-0000-chairside";

/// The demo CRM's deal stages (internal ids as a HubSpot account would have them).
pub const DEMO_CRM_STAGES: [&str; 5] =
    ["not_converted", "applying", "financed", "declined", "paid"];

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            sandbox: SandboxConfig::default(),
            // 1.2 s: a patient who acts at once must beat the give-up (three intervals) on a
            // busy 2-CPU machine, where the way from the lender session to the patient's click
            // (outbox, SMTP, the patient page) sometimes took more than the 2.1 s 700 ms gave.
            reminder_every: Duration::from_millis(1_200),
            poll_every: Duration::from_millis(150),
            lender_session: None,
            shipped_lender_schedules: false,
            concurrency: 16,
            public_base_url: Url::parse("http://127.0.0.1:8080/")
                .unwrap_or_else(|_| unreachable!("literal URL")),
            link_key: SecretString::from("demo-patient-link-key-0123456789abcdef".to_owned()),
            durability: Durability::Normal,
            time_zone: None,
            postgres: None,
            crm_url: None,
            staff_alerts: false,
            link_only_lender: true,
            on_partial: PartialApprovalRule::ContinueForFullCoverage,
        }
    }
}

impl WorldOptions {
    /// The compressed lender session life: [`WorldOptions::lender_session`] or four reminder
    /// intervals.
    pub fn lender_session(&self) -> Duration {
        self.lender_session.unwrap_or(self.reminder_every * 4)
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
    outbound_task: tokio::task::JoinHandle<()>,
    /// The CRM stand-in (HubSpot's shape).
    pub crm: sandbox::CrmStandIn,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The runner.
    pub runner: Runner,
    /// What was seeded.
    pub cases: Vec<Case>,
    /// The new-patient intakes walked.
    pub intakes: Vec<IntakeCase>,
    /// The plans Cherry (link-only) finances: staff record its approval.
    pub link_only_cases: Vec<Case>,
    /// The patient-link key (intake links are derived under it).
    link_key: SecretString,
}

/// Cherry at [`CHERRY_PRACTICE`]: the practice's own link, the shipped disclosure, 3 days for
/// staff to record the decision.
fn cherry_settings() -> anyhow::Result<crate::config::LinkLenderSettings> {
    let lender = financing_core::link_only::KnownLinkLender::Cherry;
    Ok(crate::config::LinkLenderSettings {
        lender,
        display_name: lender.default_display_name().into(),
        application_link: Url::parse(CHERRY_LINK).context("demo Cherry link")?,
        decide_within: lender.default_decide_within(),
        disclosure: chairside_http::notices::lender_disclosure(lender.id()),
        limits: AmountLimits::NONE,
    })
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
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
    addr: SocketAddr,
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
        let addr = listener.local_addr()?;
        let base = Url::parse(&format!("http://{addr}/")).context("http base")?;
        Ok(Self {
            listener,
            addr,
            base,
        })
    }

    /// Where it will listen (`http://127.0.0.1:PORT/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound listener, for a caller that serves it itself (the bench's front for several
    /// instances).
    pub fn into_listener(self) -> tokio::net::TcpListener {
        self.listener
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
    /// The outbound dispatcher (the lab's emails, webhooks), for the caller to run.
    pub dispatcher: chairside_engine::outbound::Dispatcher,
}

impl Stack {
    /// Writes the demo's [`Config`] for the sandbox at `urls` (whose credentials are in `cfg`),
    /// with its store in `dir`, builds the stack from it with [`app::build`] and serves the HTTP
    /// surface on `surface`. The sandbox must already send its webhooks to `surface` (see
    /// [`Surface::stripe_webhook_url`] and its siblings).
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
        Self::start_as(surface, None, dir, options, urls, cfg).await
    }

    /// [`start`](Self::start) as instance `n` of several on one database (`options.postgres`)
    /// behind a front at `front` that hands each connection to one of them: the patient links
    /// point at the front, and the runner's owner name is told apart by `n`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_instance(
        surface: Surface,
        front: &Url,
        n: usize,
        dir: &Path,
        options: &WorldOptions,
        urls: &SandboxUrls,
        cfg: &SandboxConfig,
    ) -> anyhow::Result<Self> {
        Self::start_as(surface, Some((front, n)), dir, options, urls, cfg).await
    }

    async fn start_as(
        surface: Surface,
        front: Option<(&Url, usize)>,
        dir: &Path,
        options: &WorldOptions,
        urls: &SandboxUrls,
        cfg: &SandboxConfig,
    ) -> anyhow::Result<Self> {
        let Surface {
            listener,
            addr,
            base: http_base,
        } = surface;
        let mut options = options.clone();
        options.public_base_url = front.map_or_else(|| http_base.clone(), |(url, _)| url.clone());
        let mut config = demo_config(dir, &options, addr, urls, cfg)?;
        if let Some((_, n)) = front {
            config.runner.owner = format!("{}-{n}", config.runner.owner);
        }
        let extras = Extras {
            durability: Some(options.durability),
            lender_schedules: if options.shipped_lender_schedules {
                Vec::new()
            } else {
                demo_lender_schedules(&options)
            },
            ..demo_extras()
        };
        let service = app::build(&config, extras, Metrics::local()).await?;
        let limits = chairside_http::ServeLimits::of(service.http.config());
        let app = chairside_http::router(service.http);
        let http_task = tokio::spawn(async move {
            let forever = std::future::pending();
            if let Err(e) = chairside_http::serve(listener, app, limits, forever).await {
                tracing::error!(error = %e, "the demo's HTTP surface stopped");
            }
        });
        Ok(Self {
            http_base,
            staff: config
                .http
                .staff
                .iter()
                .map(|s| (s.username.clone(), s.practice.clone()))
                .collect(),
            store: service.store,
            runner: service.runner,
            http_task,
            dispatcher: service.dispatcher,
        })
    }

    /// The install's first poll, before any plan is seeded: a fresh install starts from now
    /// (plans accepted before it are only started by `chairside backfill`). Repeated until every
    /// practice has its baseline, so injected faults cannot push it past a seed.
    ///
    /// # Errors
    /// Store errors.
    pub async fn take_baseline(&self) -> anyhow::Result<()> {
        for _ in 0..200 {
            self.runner.poll().await.context("the first poll")?;
            let baselines = self
                .store
                .detection_health()
                .await?
                .iter()
                .filter(|h| h.baseline_at.is_some())
                .count();
            if baselines >= self.runner.practices().count() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("a practice system never answered the install's first poll")
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
                    // Card on file: an in-house schedule waits for the card the sandbox's
                    // patient saves from the summary's page link; settled once it exists.
                    r.state.stage == chairside_workflow::Stage::Settled
                        && r.next_action.is_none()
                        && !(r.state.stripe.schedule_awaits_card
                            && r.state.status == chairside_workflow::Status::Done)
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

/// The demo's data key (made up: the demo's patients are too).
const DEMO_DATA_KEY: &str = "64656d6f2d6f6e6c792d646174612d6b65792d6e6f742d666f722d7265616c21";

/// The number every demo practice gives patients to call; each texts from a number of its own.
const DEMO_PHONE: &str = "+15125550100";

/// What the sandbox needs of [`app::build`] that no setting says: fast retries, the Open Dental
/// stand-in's UTC server times, and no NexHealth rate budget (the stand-in has none).
///
/// Ten attempts, not `chairside run`'s eight: the fault runs inject errors on 8 % of requests per
/// rule, far above a real day, and an attempt after an unknown outcome makes two calls (the
/// lookup, then the repeat). Counted in one PostgreSQL chain run with faults (its `effects`
/// rows): about one first attempt in six failed and about one later attempt in three. Estimated
/// from those rates over the run's ~90 effects, six attempts give up on some message or note in
/// about one run in twenty (the CI failure of 2 December); ten, in under one in a thousand. The
/// wait stays short (at most 0.5 s between attempts).
pub fn demo_extras() -> Extras {
    Extras {
        retry: Some(Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
            max_attempts: 10,
        }),
        opendental_server_zone: Some(chrono_tz::UTC),
        nexhealth_rate_budget: Some(nexhealth_client::RateBudget::UNLIMITED),
        ..Extras::default()
    }
}

/// The lenders' schedules in the demo's compressed day: one status read every `poll_every`,
/// CareCredit's session lapsing after `lender_session` (as the sandbox's does) with a reminder a
/// reminder-interval before, Sunbit's link lasting as long as the reminders take.
pub fn demo_lender_schedules(options: &WorldOptions) -> Vec<(LenderId, PollSchedule)> {
    let schedule = |life: Duration| PollSchedule {
        steps: Vec::new(),
        then_every: options.poll_every,
        session_life: Some(life),
        remind_before_expiry: options.reminder_every,
        staff_decides_within: None,
    };
    vec![
        (
            LenderId::new("carecredit"),
            schedule(options.lender_session()),
        ),
        (
            LenderId::new("sunbit"),
            schedule(options.reminder_every * 8),
        ),
    ]
}

/// The demo's configuration: the [`PRACTICES`] wired to the sandbox at `urls` with the
/// credentials in `cfg`, the store in `dir`, the HTTP surface on `listen` (reached at
/// `options.public_base_url`), one staff login per practice (password [`STAFF_PASSWORD`]).
///
/// # Errors
/// A demo value that does not parse (never in practice), or the password cannot be hashed.
pub fn demo_config(
    dir: &Path,
    options: &WorldOptions,
    listen: SocketAddr,
    urls: &SandboxUrls,
    cfg: &SandboxConfig,
) -> anyhow::Result<Config> {
    let password_hash = chairside_http::hash_password(&secret(STAFF_PASSWORD))
        .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?;
    let mut practices = Vec::new();
    let mut staff = Vec::new();
    for (n, spec) in PRACTICES.iter().enumerate() {
        let id = PracticeId::new(spec.id);
        let pms = match spec.pms {
            Pms::Dentrix => PmsSettings::Dentrix(DentrixSettings {
                base_url: urls.dentrix.clone(),
                token_url: None,
                client_id: cfg.dentrix.client_id.clone(),
                client_secret: cfg.dentrix.client_secret.clone(),
                organization_id: cfg.dentrix.organization_id.clone(),
            }),
            Pms::OpenDental => PmsSettings::OpenDental(OpenDentalSettings {
                base_url: urls.opendental.clone(),
                developer_key: cfg.opendental.developer_key.clone(),
                customer_key: cfg.opendental.customer_key.clone(),
                acceptance: opendental_client::AcceptanceRule::default(),
            }),
            _ => PmsSettings::NexHealth(NexHealthSettings {
                base_url: urls.nexhealth.clone(),
                api_key: cfg.nexhealth.api_key.clone(),
                subdomain: cfg.nexhealth.subdomain.clone(),
                location_id: cfg.nexhealth.location_id.to_string(),
                provider_id: Some(cfg.nexhealth.provider_id.to_string()),
                webhook_secret: None,
            }),
        };
        let email = format!("frontdesk@{}.example", spec.id);
        practices.push(PracticeSettings {
            default_language: financing_core::Language::En,
            id: id.clone(),
            name: spec.name.into(),
            state: spec.state,
            time_zone: match options.time_zone {
                Some(tz) => tz,
                None => spec
                    .time_zone
                    .parse()
                    .map_err(|_| anyhow::anyhow!("demo time zone"))?,
            },
            location_id: LocationId::new(format!("{}-main", spec.id)),
            phone: DEMO_PHONE.into(),
            email: email.clone(),
            staff_alerts: match options.staff_alerts {
                true => Some(crate::config::StaffAlertSettings {
                    to: messaging::EmailAddress::parse(&format!("staff@{}.example", spec.id))
                        .context("demo staff address")?,
                    tasks: None,
                    // Days compressed into seconds: tasks within a second are one digest.
                    digest_window: Duration::from_secs(1),
                    language: financing_core::Language::En,
                }),
                false => None,
            },
            // Inbound texts are routed by the number they were sent to.
            sms_from: Some(
                messaging::PhoneNumber::parse(&format!("+1512555{:04}", 200 + n))
                    .context("demo number")?,
            ),
            lab_email: Some(
                messaging::EmailAddress::parse(&format!("cases@lab-of-{}.example", spec.id))
                    .context("demo lab address")?,
            ),
            pms,
            lenders: LenderSettings {
                order: if n == CHERRY_PRACTICE && options.link_only_lender {
                    vec![
                        LenderId::new("carecredit"),
                        LenderId::new("sunbit"),
                        LenderId::new("cherry"),
                    ]
                } else {
                    vec![LenderId::new("carecredit"), LenderId::new("sunbit")]
                },
                on_partial: options.on_partial,
                in_house_fallback: true,
                carecredit: Some(CareCreditSettings {
                    base_url: urls.carecredit.clone(),
                    token_url: None,
                    client_id: cfg.carecredit.client_id.clone(),
                    client_secret: cfg.carecredit.client_secret.clone(),
                    partner_code: "CHAIRSIDE".into(),
                    merchant_number: carecredit_client::MerchantNumber::new(MERCHANT)
                        .map_err(|_| anyhow::anyhow!("demo merchant number"))?,
                    limits: AmountLimits {
                        min: Some(Money::usd(20_000)),
                        max: None,
                    },
                }),
                sunbit: Some(SunbitSettings {
                    base_url: urls.sunbit.clone(),
                    key: secret(&cfg.sunbit.api_key),
                    secret: cfg.sunbit.api_secret.clone(),
                    location: sunbit_location(spec),
                    webhook_secret: Some(cfg.sunbit.webhook_secret.clone()),
                    limits: AmountLimits::NONE,
                }),
                link_only: if n == CHERRY_PRACTICE && options.link_only_lender {
                    vec![cherry_settings()?]
                } else {
                    Vec::new()
                },
            },
            payments: PaymentSettings {
                deposit: DepositRule::BasisPoints(1_000),
                installments: 6,
                interval: InstallmentInterval::MONTHLY,
                preference: if spec.card_on_file {
                    chairside_workflow::PaymentPreference::CardOnFile
                } else {
                    chairside_workflow::PaymentPreference::PayLink
                },
            },
            smtp: Some(SmtpSettings {
                host: urls.smtp.ip().to_string(),
                port: urls.smtp.port(),
                security: messaging::SmtpSecurity::None,
                username: None,
                password: None,
                from: messaging::EmailAddress::parse(&email).context("demo email")?,
            }),
            reminders: ReminderSettings {
                delays: vec![options.reminder_every, options.reminder_every],
                give_up_after: options.reminder_every,
                poll_interval: options.poll_every,
            },
            policy: PolicySettings {
                prefill_approved_by_counsel: spec.prefill_approved,
            },
            // The shipped notices of the demo practices' states (California, New York).
            lender_notice: HashMap::new(),
        });
        staff.push(StaffLogin {
            username: spec.id.split('-').next().unwrap_or(spec.id).to_owned(),
            practice: id,
            password_hash: password_hash.clone(),
        });
    }
    Ok(Config {
        store: StoreSettings {
            path: dir.join("chairside.sqlite"),
            postgres: options.postgres.clone(),
            data_key: secret(DEMO_DATA_KEY),
            data_key_id: 0,
            previous_data_keys: Vec::new(),
        },
        detection: crate::config::DetectionSettings::default(),
        runner: RunnerSettings {
            owner: format!("demo-{}", std::process::id()),
            lease: Duration::from_secs(30),
            concurrency: options.concurrency,
            poll_interval: options.poll_every,
        },
        http: HttpSettings {
            listen,
            public_base_url: options.public_base_url.clone(),
            patient_link_key: options.link_key.clone(),
            patient_link_lifetime: Duration::from_secs(30 * 86_400),
            metrics_token: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            webhook_body_limit: 256 * 1024,
            form_body_limit: 16 * 1024,
            trusted_proxies: Vec::new(),
            login: chairside_http::LoginLimits::default(),
            staff,
        },
        stripe: StripeSettings {
            base_url: urls.stripe.clone(),
            api_key: cfg.stripe.secret_key.clone(),
            webhook_secrets: cfg.stripe.webhook_secrets.clone(),
        },
        twilio: Some(TwilioSettings {
            base_url: urls.twilio.clone(),
            account_sid: messaging::AccountSid::new(cfg.twilio.account_sid.clone()),
            auth_token: cfg.twilio.auth_token.clone(),
            sender: messaging::SmsFrom::Number(
                messaging::PhoneNumber::parse(DEMO_PHONE).context("demo number")?,
            ),
        }),
        practices,
        outbound: crate::config::OutboundSettings {
            hubspot: options.crm_url.as_ref().map(|url| {
                let stage = |s: &str| hubspot_client::StageId::new(s);
                crate::config::HubSpotSettings {
                    base_url: url.clone(),
                    token: secret(DEMO_CRM_TOKEN),
                    deal_id_property: "chairside_workflow_id".into(),
                    pipeline: None,
                    amounts: false,
                    practices: None,
                    stages: chairside_engine::outbound::crm::CrmStages {
                        not_converted: stage(DEMO_CRM_STAGES[0]),
                        applying: stage(DEMO_CRM_STAGES[1]),
                        financed: stage(DEMO_CRM_STAGES[2]),
                        declined: stage(DEMO_CRM_STAGES[3]),
                        paid: stage(DEMO_CRM_STAGES[4]),
                    },
                }
            }),
            ..crate::config::OutboundSettings::default()
        },
    })
}

/// The patient fills in their intake page (`GET /i/{token}` for the form's hidden fields, then
/// `POST`), with their date of birth, email and state, and ticks the texts box.
async fn submit_intake_page(
    base: &Url,
    token: &str,
    p: &sandbox::SeedPatient,
) -> anyhow::Result<()> {
    let url = base.join(&format!("i/{token}"))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let page = http.get(url.clone()).send().await?.text().await?;
    // The page's hidden fields, posted back as a browser would: the form token, the page's
    // language and the version of the texts wording shown (consent is recorded against it).
    let hidden = |name: &str| {
        page.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned)
            .with_context(|| format!("the intake page has no {name} field"))
    };
    let form_token = hidden("form")?;
    let lang = hidden("lang")?;
    let version = hidden("version")?;
    let dob = p
        .date_of_birth
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let res = http
        .post(url)
        .form(&[
            ("form", form_token.as_str()),
            ("first_name", p.first_name.as_str()),
            ("last_name", p.last_name.as_str()),
            ("date_of_birth", dob.as_str()),
            (
                "mobile_phone",
                p.mobile_phone.as_deref().unwrap_or_default(),
            ),
            ("email", p.email.as_deref().unwrap_or_default()),
            ("state", p.address.state.as_str()),
            ("texts", "yes"),
            ("lang", lang.as_str()),
            ("version", version.as_str()),
        ])
        .send()
        .await?;
    anyhow::ensure!(
        res.status().is_success() || res.status().is_redirection(),
        "the intake page answered {}",
        res.status()
    );
    Ok(())
}

/// The runner's loops running in the background ([`World::run`]).
#[derive(Debug)]
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    pollers: tokio::task::JoinHandle<()>,
    worker: tokio::task::JoinHandle<Result<(), chairside_engine::runner::RunnerError>>,
}

impl Running {
    /// Stops the loops and waits for them.
    ///
    /// # Errors
    /// The workflow pool failed (a store error), or a loop panicked.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let _ = self.pollers.await;
        self.worker
            .await
            .map_err(|e| anyhow::anyhow!("the runner's task failed: {e}"))??;
        Ok(())
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
        options.sandbox.carecredit.session_life = options.lender_session();
        let sandbox = Sandbox::start(options.sandbox.clone())
            .await
            .context("starting the sandbox")?;
        // The CRM stand-in: contacts, deals by outcome, follow-up tasks (`[outbound.hubspot]`).
        let crm = sandbox::CrmStandIn::start(
            DEMO_CRM_TOKEN,
            Some(DEMO_CRM_STAGES.iter().map(|s| (*s).to_owned()).collect()),
        )
        .await
        .context("starting the CRM stand-in")?;
        options.crm_url = Some(crm.url().clone());
        let stack = Stack::start(surface, dir, &options, sandbox.urls(), sandbox.config()).await?;
        stack.take_baseline().await?;
        let Stack {
            http_base,
            staff,
            store,
            runner,
            http_task,
            dispatcher,
        } = stack;
        // Outbound events (the lab's emails) go out beside the runner, as in `chairside run`.
        let outbound_task = tokio::spawn(dispatcher.run(Duration::from_millis(100)));
        Ok(Self {
            sandbox,
            http_base,
            staff,
            http_task,
            outbound_task,
            crm,
            store,
            runner,
            cases: Vec::new(),
            intakes: Vec::new(),
            link_only_cases: Vec::new(),
            link_key: options.link_key.clone(),
        })
    }

    /// A new patient at each demo practice: staff start the intake with the patient's name and
    /// mobile number, the amount and a consultation summary; the patient types their details and
    /// agrees to texts on the intake page (`/i/{token}`, over HTTP). Open Dental and NexHealth
    /// create the patient at case acceptance; Dentrix Ascend's becomes a staff task.
    ///
    /// # Errors
    /// The store or the intake page refused.
    pub async fn seed_intakes(&mut self) -> anyhow::Result<()> {
        let intakes =
            chairside_engine::intake::Intakes::new(self.store.clone(), self.link_key.clone());
        for spec in [&PRACTICES[1], &PRACTICES[2], &PRACTICES[0]] {
            let patient = self
                .sandbox
                .seed_example_prospect(spec.pms, Persona::InstantApproval);
            let practice = PracticeId::new(spec.id);
            let phone = patient.mobile_phone.clone().unwrap_or_default();
            let staff = chairside_engine::intake::PatientDetails {
                first_name: patient.first_name.clone(),
                last_name: patient.last_name.clone(),
                mobile_phone: phone.clone(),
                ..Default::default()
            };
            let link = intakes
                .start_by_staff(
                    &practice,
                    "staff:demo",
                    &staff,
                    Some(INTAKE_AMOUNT),
                    Some("New-patient consultation; case presented and priced.".into()),
                    chrono::Utc::now(),
                )
                .await?;
            submit_intake_page(&self.http_base, &link.token, &patient).await?;
            self.intakes.push(IntakeCase {
                practice,
                pms: spec.pms,
                intake_id: link.id,
                patient,
                expected: if spec.pms == Pms::Dentrix {
                    Expected::Staff(TaskKind::PatientRecord)
                } else {
                    Expected::Done("carecredit approved")
                },
                creates_record: spec.pms != Pms::Dentrix,
                emailed: false,
            });
        }
        Ok(())
    }

    /// A new patient at Golden Gate Dental whom staff give only their name and email address:
    /// Chairside emails them their intake link (the runner's send, in the sandbox's SMTP sink),
    /// the patient opens the link from that email and types their details, and financing runs
    /// to the end (Open Dental creates the patient at case acceptance).
    ///
    /// # Errors
    /// The store, the email or the intake page failed.
    pub async fn seed_emailed_intake(&mut self) -> anyhow::Result<()> {
        let spec = &PRACTICES[1];
        let patient = self
            .sandbox
            .seed_example_prospect(spec.pms, Persona::InstantApproval);
        let email = patient
            .email
            .clone()
            .context("the demo prospect has an email address")?;
        let practice = PracticeId::new(spec.id);
        let staff = chairside_engine::intake::PatientDetails {
            first_name: patient.first_name.clone(),
            last_name: patient.last_name.clone(),
            email: email.clone(),
            ..Default::default()
        };
        let intakes =
            chairside_engine::intake::Intakes::new(self.store.clone(), self.link_key.clone());
        let started = intakes
            .start_by_staff(
                &practice,
                "staff:demo",
                &staff,
                Some(INTAKE_AMOUNT),
                None,
                chrono::Utc::now(),
            )
            .await?;
        // The runner sends the link (as every round of `chairside run` does); the patient finds
        // it in their mailbox.
        self.runner.send_intake_links().await?;
        let mail = self
            .sandbox
            .smtp()
            .messages_to(&email)
            .into_iter()
            .find(|m| m.text.contains("/i/"))
            .context("no intake link email reached the patient")?;
        let token = mail
            .text
            .split("/i/")
            .nth(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect::<String>()
            })
            .context("the email carries no intake link")?;
        submit_intake_page(&self.http_base, &token, &patient).await?;
        self.intakes.push(IntakeCase {
            practice,
            pms: spec.pms,
            intake_id: started.id,
            patient,
            expected: Expected::Done("carecredit approved"),
            creates_record: true,
            emailed: true,
        });
        Ok(())
    }

    /// The workflow of an intake, once started.
    ///
    /// # Errors
    /// Store errors.
    pub async fn intake_workflow(
        &self,
        case: &IntakeCase,
    ) -> anyhow::Result<Option<WorkflowState>> {
        let plan = chairside_workflow::intake::plan_id(&case.intake_id);
        let rows = self
            .store
            .workflows(Some(&case.practice), None, 10_000)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| r.state)
            .find(|s| s.key.plan_id == plan))
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
        // Card on file, declined off-session: a pay link and a staff task, the workflow done.
        self.seed_with_card(
            &PRACTICES[2],
            Persona::InstantApproval,
            sandbox::TestCard::InsufficientFunds,
        )?;
        // Treated today (the demo's clock compressed to the treatment day): the lender charge
        // runs once the outcome is noted, at a card-on-file practice (CareCredit: a dated
        // Settlement task with the exact amount) and a pay-link one (Sunbit: read back under
        // our reference).
        self.seed_treated_today(&PRACTICES[2], Persona::InstantApproval)?;
        self.seed_treated_today(&PRACTICES[0], Persona::DeclineFirstApproveSecond)?;
        Ok(())
    }

    /// Seeds `persona` at `spec` with its treatment booked for today, the practice's day (the
    /// settlement and any co-pay are due at once), and accepts its plan.
    ///
    /// # Errors
    /// The sandbox refused the seed.
    pub fn seed_treated_today(
        &mut self,
        spec: &PracticeSpec,
        persona: Persona,
    ) -> anyhow::Result<()> {
        let n = u32::try_from(self.cases.len() + 200).unwrap_or(u32::MAX);
        let patient = self
            .sandbox
            .seed_patient(sandbox::SeedPatient::example(spec.pms, persona, n));
        let zone: chrono_tz::Tz = spec
            .time_zone
            .parse()
            .map_err(|e| anyhow::anyhow!("zone {}: {e}", spec.time_zone))?;
        let today = chrono::Utc::now().with_timezone(&zone).date_naive();
        let plan = self
            .sandbox
            .seed_plan(sandbox::SeedPlan {
                treatment_date: Some(today),
                ..sandbox::SeedPlan::example(&patient)
            })
            .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
        let seeded = sandbox::SeededCase { patient, plan };
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

    /// A patient CareCredit and Sunbit decline at Empire Dental, whose waterfall ends with Cherry
    /// (a lender without an API): the patient gets the practice's Cherry link through the patient
    /// page, applies there, and staff, reading the approval in Cherry's portal, record it on the
    /// workflow's page ([`World::drive`] does what they would). Cherry finances the plan.
    ///
    /// # Errors
    /// The sandbox refused the seed.
    pub fn seed_link_only(&mut self) -> anyhow::Result<()> {
        self.seed(&PRACTICES[CHERRY_PRACTICE], Persona::DeclineEverywhere)?;
        let case = self.cases.pop().context("the case just seeded")?;
        self.link_only_cases.push(case);
        Ok(())
    }

    /// What happens to a plan waiting on Cherry's decision. The demo's Cherry case is approved
    /// for the amount asked: the patient reports it on the patient page and the front desk
    /// confirms it ([`Self::patient_reports_cherry_approval`]). Any other plan that reaches
    /// Cherry (declined by CareCredit and Sunbit) is read as declined in Cherry's portal and
    /// recorded with [`StaffActions::record_lender_decision`] (the dashboard's "Cherry decision"
    /// form), and goes on to the in-house plan as before.
    async fn record_cherry_decisions(&self) -> anyhow::Result<()> {
        use chairside_engine::staff::StaffActions;
        use financing_core::link_only::StaffReport;

        let mut approve = Vec::new();
        for case in &self.link_only_cases {
            if let Some(state) = self.workflow_of(case).await? {
                approve.push(state.id);
            }
        }
        let practice = PracticeId::new(PRACTICES[CHERRY_PRACTICE].id);
        let staff = StaffActions::new(self.store.as_ref(), CHERRY_STAFF);
        for row in self.store.workflows(Some(&practice), None, 100_000).await? {
            let chairside_workflow::Stage::Financing(current) = &row.state.stage else {
                continue;
            };
            if current.lender.as_str() != "cherry" || row.state.lender_session().is_none() {
                continue;
            }
            if approve.contains(&row.state.id) {
                self.patient_reports_cherry_approval(&row.state, &current.lender, current.amount)
                    .await?;
                continue;
            }
            let report = StaffReport::Declined;
            // A decision already queued (the runner has not applied it yet) is refused: fine.
            if staff
                .record_lender_decision(&row.state.id, &current.lender, report, chrono::Utc::now())
                .await
                .is_ok()
            {
                self.runner.wake();
            }
        }
        Ok(())
    }

    /// The demo's Cherry case: the patient reports on the patient page that Cherry approved the
    /// amount asked ([`PatientReports::report`], the service behind the page's form), and the
    /// front desk, having checked Cherry's portal, confirms it ([`PatientReports::confirm`], the
    /// dashboard's "Confirm": the same `record_lender_decision` path).
    ///
    /// [`PatientReports::report`]: chairside_engine::patient_report::PatientReports::report
    /// [`PatientReports::confirm`]: chairside_engine::patient_report::PatientReports::confirm
    async fn patient_reports_cherry_approval(
        &self,
        state: &chairside_workflow::WorkflowState,
        lender: &financing_core::LenderId,
        amount: financing_core::Money,
    ) -> anyhow::Result<()> {
        use chairside_engine::patient_report::PatientReports;
        use chairside_engine::store::patient_report::NewPatientReport;
        use chairside_workflow::patient_report::PatientReport;

        let reports = PatientReports::new(self.store.as_ref(), self.store.as_ref());
        let now = chrono::Utc::now();
        let report = NewPatientReport {
            lender: lender.clone(),
            lender_name: state.lender_name(lender),
            report: PatientReport::Approved { amount },
            language: financing_core::Language::En,
        };
        // Refused when one is already pending (an earlier pass) or a decision is queued: the
        // pending one is confirmed, or the queued decision runs.
        let task = match reports.report(&state.id, &report, now).await? {
            Ok(receipt) => Some(receipt.task),
            Err(_) => reports.pending(&state.id).await?.map(|p| p.task),
        };
        if let Some(task) = task
            && reports
                .confirm(&state.id, task, None, CHERRY_STAFF, now)
                .await
                .is_ok()
        {
            self.runner.wake();
        }
        Ok(())
    }

    /// Seeds `persona` at `spec` paying with `card` (saved or entered on Stripe's pages), and
    /// accepts its plan.
    ///
    /// # Errors
    /// The sandbox refused the seed.
    pub fn seed_with_card(
        &mut self,
        spec: &PracticeSpec,
        persona: Persona,
        card: sandbox::TestCard,
    ) -> anyhow::Result<()> {
        let n = u32::try_from(self.cases.len() + 100).unwrap_or(u32::MAX);
        let patient = self.sandbox.seed_patient(sandbox::SeedPatient {
            card,
            ..sandbox::SeedPatient::example(spec.pms, persona, n)
        });
        let plan = self
            .sandbox
            .seed_plan(sandbox::SeedPlan::example(&patient))
            .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
        let seeded = sandbox::SeededCase { patient, plan };
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

    /// Runs the runner's own loops, as `chairside run` does (a poller per practice, every 100 ms
    /// here; the continuous pool of workflow slots), until every case's workflow has settled
    /// (done, with staff, or cancelled) or `deadline` passes. Returns whether everything settled.
    ///
    /// # Errors
    /// Store errors.
    pub async fn drive(&self, deadline: Duration) -> anyhow::Result<bool> {
        let running = self.run();
        let started = Instant::now();
        let outcome = loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Err(e) = self.record_cherry_decisions().await {
                break Err(e);
            }
            match self.all_settled().await {
                Ok(true) => break Ok(true),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
            if started.elapsed() > deadline {
                break Ok(false);
            }
        };
        running.stop().await?;
        outcome
    }

    /// Starts the runner's own loops in the background, as `chairside run` does (a poller per
    /// practice, every 100 ms here; the continuous pool of workflow slots), until
    /// [`Running::stop`]. [`World::drive`] runs them until everything settled; a test that acts
    /// as the patient or the staff runs them beside what it does.
    pub fn run(&self) -> Running {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let pollers = {
            let runner = self.runner.clone();
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                runner
                    .poll_practices(
                        Duration::from_millis(100),
                        std::sync::Arc::new(tokio::sync::Notify::new()),
                        stop,
                    )
                    .await;
            })
        };
        let worker = {
            let runner = self.runner.clone();
            let stop = stopped(stop_rx);
            tokio::spawn(async move { runner.work(stop).await })
        };
        Running {
            stop,
            pollers,
            worker,
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
        Ok(settled >= self.cases.len() + self.intakes.len() + self.link_only_cases.len())
    }

    /// Stops the HTTP surface and the sandbox.
    pub async fn stop(self) {
        self.http_task.abort();
        self.outbound_task.abort();
        self.crm.stop().await;
        self.sandbox.stop().await;
    }
}
