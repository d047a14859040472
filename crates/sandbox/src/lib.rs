//! Local stand-ins for every external system Chairside talks to: Stripe, Twilio, an SMTP sink,
//! Dentrix Ascend, NexHealth, Open Dental, CareCredit and Sunbit. Each is an axum server on
//! `127.0.0.1` (port 0 by default; the addresses are reported back) speaking the same wire
//! protocol as the real system, as far as INTEGRATIONS.md and our clients' `wire` modules
//! describe it. No accounts, no internet.
//!
//! # Quick start
//!
//! ```no_run
//! use sandbox::{Fault, FaultRule, Persona, Pms, Sandbox, SandboxConfig, System};
//!
//! # async fn demo() -> Result<(), sandbox::SandboxError> {
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?;
//! println!("Stripe at {}", sandbox.urls().stripe);
//!
//! // A patient who is approved at once, with a plan the practice then accepts.
//! let case = sandbox.seed_persona(Pms::Dentrix, Persona::InstantApproval)?;
//! sandbox.accept_plan(case.plan.key)?;
//!
//! // The next customer creation is applied, but its response never arrives.
//! sandbox.faults().push(
//!     System::Stripe,
//!     FaultRule::new(Fault::applied_then_reset()).on("POST", "/v1/customers").times(1),
//! );
//!
//! // ... run Chairside against `sandbox.urls()` ...
//!
//! assert!(sandbox.stripe().customers_per_patient().values().all(|n| *n == 1));
//! sandbox.stop().await;
//! # Ok(()) }
//! ```
//!
//! # The stand-ins
//!
//! Each speaks the wire format of INTEGRATIONS.md and of our client's `wire` module; the
//! credentials it expects are in [`SandboxConfig`] (working defaults, all made up).
//!
//! | system | base URL | auth expected | what it does |
//! |---|---|---|---|
//! | Stripe | [`SandboxUrls::stripe`] | `Bearer` [`StripeConfig::secret_key`] | customers (list by email, search), products (with own `id`), prices, subscription schedules (phases by `duration`, cancel, release) billed installment by installment, subscriptions, invoices, Checkout Sessions with a hosted page at `/checkout/{id}`, payment intents (off-session confirm, declines by test card), payment methods, refunds, events; Stripe's idempotency rules; signed webhooks |
//! | Twilio | [`SandboxUrls::twilio`] | Basic `AccountSid:AuthToken` | `Messages.json` create, list (paged), fetch; 21610 after STOP; signed status callbacks; inbound replies ([`TwilioHandle::send_inbound`]) |
//! | SMTP | [`SandboxUrls::smtp`] | none | EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; keeps and decodes every message ([`SmtpHandle`]) |
//! | Dentrix Ascend | [`SandboxUrls::dentrix`] | OAuth2 client credentials + `Organization-ID` | txcases, patientprocedures, visits, appointments, patients, patientnotes; `filter=`, `pageSize` + `lastId` |
//! | NexHealth | [`SandboxUrls::nexhealth`] | `/authenticates` JWT + `subdomain` | treatment_plans (`updated_since`, `status`, cursors), patients, webhook endpoints and subscriptions (signed `treatment_plan_updated`), communication_logs (202, then written), payments (202; listed once in the EHR) |
//! | Open Dental | [`SandboxUrls::opendental`] | `ODFHIR dev/customer` | treatplans (`SecDateTEdit`), proctps, treatplanattaches, procedurelogs (`DateTStamp`), patients, commlogs, payments, treatplans POST (Inactive, [`Sandbox::od_written_plans`]); `Offset`/`Limit`; server times in UTC |
//! | CareCredit | [`SandboxUrls::carecredit`] | OAuth2 token | prefill sessions keyed by partner transaction id, hosted page at `/apply/{session}`, pullback, cardholder lookup |
//! | Sunbit | [`SandboxUrls::sunbit`] | `sunbit-key` (+ `sunbit-secret` on reads and voids) | online links keyed by referral, hosted page at `/prequal/{token}`, purchase reads, voids, signed webhooks |
//!
//! Seeded patients and plans ([`Sandbox::seed_patient`], [`Sandbox::seed_plan`],
//! [`Sandbox::seed_persona`]) live in one practice system each; [`Sandbox::accept_plan`] flips a
//! plan to accepted the way that system shows it.
//!
//! # Inspecting a run
//!
//! - [`Sandbox::requests`]: what each system received (method, path, query, lower-cased headers,
//!   raw body, the faults applied, the status sent). The Stripe ones can also be appended to a
//!   JSON Lines file in `shared/stripe/conformance.py`'s format ([`StripeConfig::request_log`];
//!   the `Authorization` header is left out).
//! - Invariants: [`StripeHandle::customers_per_patient`], [`StripeHandle::schedules_per_workflow`],
//!   [`StripeHandle::charges_per_installment`], [`StripeHandle::checkout_sessions_per_workflow`],
//!   [`Sandbox::notes_containing`] and [`Sandbox::notes_by_marker`] (notes per plan), and
//!   [`Sandbox::violations`] (what lenders must never receive).
//! - [`Sandbox::deliveries`]: every webhook sent and whether it was accepted.
//!
//! # Personas, and how a lender learns who applied
//!
//! Every seeded patient has a [`Persona`] (like Stripe's test cards). Lenders decide by persona,
//! but in California (and by default everywhere) Chairside sends lenders **no patient data at
//! all**: only an amount, the merchant or location, and our reference. So the sandbox does what
//! happens in real life: the *patient* receives the link and acts on it.
//!
//! - When the Twilio stand-in or the SMTP sink receives a message whose body contains a link to a
//!   sandbox lender page (or a Stripe checkout page), the sandbox resolves the recipient (phone
//!   number or email address) to a seeded patient and, after a short "think time", acts as that
//!   patient on that application: completes it (approved, partially approved, declined or
//!   pending, by persona), or leaves it ([`Persona::NeverCompletes`]). A checkout page is paid
//!   with the patient's [`TestCard`].
//! - A link to any other loopback page (the orchestrator's patient page) is fetched, and the
//!   sandbox links found in it are acted on the same way (one level deep).
//! - A text to a number that is not the patient's mobile (a landline) is `undelivered` (30006)
//!   and never read.
//! - When Sunbit is asked to text its link itself (`sendSMS` with a phone), the patient with that
//!   phone gets it.
//! - Where a request does carry identity (prefill outside California, cardholder lookup), the
//!   lender stand-in resolves the patient by name plus phone or ZIP. Identity sent for a
//!   California (or New York) patient is recorded as a compliance [`Violation`], and so is a
//!   procedure code anywhere in a lender request.
//! - Until the patient acts, CareCredit's pullback says `Created` and Sunbit has no purchase (a
//!   read by reference answers 404). The amount a Sunbit patient enters is what they owe on
//!   their plan.
//! - Tests can also act directly: [`Sandbox::act_on_link`], [`CareCreditHandle::act_as`],
//!   [`SunbitHandle::act_as`].
//!
//! [`PatientSimulation`] turns this off or tunes it.
//!
//! # Faults
//!
//! Every HTTP stand-in sits behind a middleware that applies [`FaultRule`]s per system and per
//! route (method + path prefix), drawn from a seeded generator: added latency (fixed or uniform),
//! an error status (429 with `Retry-After`, 500, 503, in the vendor's error shape), a connection
//! reset before the handler runs, a response lost *after* the handler ran (reset, or hang until
//! the client times out), and slow-drip bodies. Rules are set at start
//! ([`SandboxConfig::faults`]) and changed at runtime through [`Sandbox::faults`]. The SMTP sink
//! can refuse recipients ([`SmtpHandle::reject_next`]); Stripe can hold idempotency keys longer
//! ([`StripeHandle::set_processing_delay`]) to provoke 409s.
//!
//! # The binary
//!
//! `sandbox` runs everything stand-alone and prints the addresses and credentials (`--json` for
//! tools, `--seed-personas dentrix` to seed one accepted plan per persona, `--base-port` for
//! fixed ports). See `sandbox --help`.

// Stripe objects are big `json!` literals.
#![recursion_limit = "256"]

mod config;
mod crm;
mod error;
mod fault;
mod form;
mod front;
mod hub;
mod lenders;
mod persona;
mod pms;
pub use pms::opendental::ProcTpsAnswer;
mod record;
mod server;
mod sim;
mod smtp;
mod stripe;
mod twilio;
mod webhook;
mod world;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

pub use config::{
    CareCreditConfig, DentrixConfig, NexHealthConfig, OpenDentalConfig, PatientSimulation, Ports,
    SandboxConfig, StripeConfig, SunbitConfig, TwilioConfig, WebhookDelivery,
};
pub use crm::{CrmRecord, CrmStandIn};
pub use error::SandboxError;
pub use fault::{Fault, FaultController, FaultRule, Latency, LostResponse, RouteMatch, System};
pub use lenders::carecredit::{
    CareCreditHandle, CareCreditSession, CareCreditState, PROMO_APR, PROMO_DESCRIPTION,
    PROMO_TERM_MONTHS,
};
pub use lenders::sunbit::{
    PLAN_APR, PLAN_TERM_MONTHS, SunbitApplication, SunbitHandle, SunbitState,
};
pub use persona::{
    Lender, LenderDecision, PatientKey, Persona, PlanKey, Pms, SeedAddress, SeedPatient, SeedPlan,
    SeedProcedure, SeededCase, SeededPatient, SeededPlan, TestCard,
};
pub use record::RecordedRequest;
pub use sim::{CheckoutResultKind, LinkAction, extract_links};
pub use smtp::{EmailRecord, SmtpFault, SmtpFaultRule, SmtpHandle};
pub use stripe::{
    API_VERSION as STRIPE_API_VERSION, BilledInstallment, CheckoutResult, StripeHandle,
};
pub use twilio::{SmsRecord, TwilioHandle};
pub use webhook::{Delivery, sign_stripe_style, sign_twilio};
pub use world::{LedgerNote, NoteKind, PlanStatus, Violation};

use front::Front;
use hub::Hub;
use record::Recorder;
use server::Shutdown;

/// Where each stand-in listens. HTTP base URLs end with `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxUrls {
    /// Stripe: the API base (`http://127.0.0.1:PORT/`; paths are `/v1/...`).
    pub stripe: Url,
    /// Twilio: the API base (paths are `/2010-04-01/Accounts/{sid}/Messages.json`).
    pub twilio: Url,
    /// The SMTP sink's address (plain SMTP, no TLS, no auth).
    pub smtp: SocketAddr,
    /// Dentrix Ascend: the base URL (token at `oauth/...`, resources under
    /// `ascend-gateway/api/v1/`).
    pub dentrix: Url,
    /// NexHealth: the API base.
    pub nexhealth: Url,
    /// Open Dental: the API base (`…/api/v1/`).
    pub opendental: Url,
    /// CareCredit: the API base.
    pub carecredit: Url,
    /// Sunbit: the API base.
    pub sunbit: Url,
}

impl SandboxUrls {
    /// The base URL of an HTTP stand-in.
    pub fn of(&self, system: System) -> &Url {
        match system {
            System::Stripe => &self.stripe,
            System::Twilio => &self.twilio,
            System::Dentrix => &self.dentrix,
            System::NexHealth => &self.nexhealth,
            System::OpenDental => &self.opendental,
            System::CareCredit => &self.carecredit,
            System::Sunbit => &self.sunbit,
        }
    }
}

/// A running sandbox. Dropping it stops every stand-in (in the background); [`Sandbox::stop`]
/// stops them and waits.
pub struct Sandbox {
    hub: Arc<Hub>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("urls", &self.hub.urls)
            .finish_non_exhaustive()
    }
}

fn http_url(addr: SocketAddr, path: &str) -> Url {
    // A loopback socket address always makes a valid URL.
    Url::parse(&format!("http://{addr}{path}")).expect("loopback URL")
}

impl Sandbox {
    /// Starts every stand-in on 127.0.0.1 and returns once all are listening.
    ///
    /// # Errors
    /// [`SandboxError::Bind`] when a port cannot be bound, [`SandboxError::RequestLog`] when the
    /// Stripe request log cannot be opened.
    pub async fn start(config: SandboxConfig) -> Result<Self, SandboxError> {
        let ports = config.ports;
        let bind = |system: &'static str, port: u16| async move {
            server::bind(port)
                .await
                .map_err(|source| SandboxError::Bind { system, source })
        };
        let (stripe_l, stripe_a) = bind("stripe", ports.stripe).await?;
        let (twilio_l, twilio_a) = bind("twilio", ports.twilio).await?;
        let (smtp_l, smtp_a) = bind("smtp", ports.smtp).await?;
        let (dentrix_l, dentrix_a) = bind("dentrix", ports.dentrix).await?;
        let (nex_l, nex_a) = bind("nexhealth", ports.nexhealth).await?;
        let (od_l, od_a) = bind("opendental", ports.opendental).await?;
        let (cc_l, cc_a) = bind("carecredit", ports.carecredit).await?;
        let (sb_l, sb_a) = bind("sunbit", ports.sunbit).await?;
        let urls = SandboxUrls {
            stripe: http_url(stripe_a, "/"),
            twilio: http_url(twilio_a, "/"),
            smtp: smtp_a,
            dentrix: http_url(dentrix_a, "/"),
            nexhealth: http_url(nex_a, "/"),
            opendental: http_url(od_a, "/api/v1/"),
            carecredit: http_url(cc_a, "/"),
            sunbit: http_url(sb_a, "/"),
        };

        let recorder = Recorder::new(
            config.stripe.request_log.as_deref(),
            config.max_recorded_requests,
        )
        .map_err(SandboxError::RequestLog)?;
        let faults = FaultController::new(config.seed, &config.faults);
        let (stop_tx, shutdown) = Shutdown::new();
        let (webhooks, webhook_rx) = webhook::Webhooks::new();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let seed = config.seed;
        let hub = Arc::new(Hub {
            stripe: stripe::StripeState::new(&config.stripe, seed, &urls.stripe),
            twilio: twilio::TwilioState::new(&config.twilio, seed),
            smtp: smtp::SmtpState::new(&config.smtp_faults, seed),
            pms: pms::PmsState::new(seed),
            opendental: pms::opendental::OdState::default(),
            carecredit: lenders::carecredit::CareCreditStateStore::new(seed),
            sunbit: lenders::sunbit::SunbitStore::new(&config.sunbit, seed),
            world: world::World::default(),
            webhooks,
            recorder: recorder.clone(),
            faults: faults.clone(),
            shutdown: shutdown.clone(),
            http: http.clone(),
            urls,
            config,
        });

        let front = |system: System| Front {
            system,
            faults: faults.clone(),
            recorder: recorder.clone(),
            shutdown: shutdown.clone(),
        };
        let mut tasks = Vec::new();
        let routers = [
            (stripe_l, System::Stripe, stripe::router(hub.clone())),
            (twilio_l, System::Twilio, twilio::router(hub.clone())),
            (
                dentrix_l,
                System::Dentrix,
                pms::dentrix::router(hub.clone()),
            ),
            (
                nex_l,
                System::NexHealth,
                pms::nexhealth::router(hub.clone()),
            ),
            (
                od_l,
                System::OpenDental,
                pms::opendental::router(hub.clone()),
            ),
            (
                cc_l,
                System::CareCredit,
                lenders::carecredit::router(hub.clone()),
            ),
            (sb_l, System::Sunbit, lenders::sunbit::router(hub.clone())),
        ];
        for (listener, system, router) in routers {
            let router = front::wrap(router, front(system));
            tasks.push(server::serve(listener, router, shutdown.clone()));
        }
        tasks.push(tokio::spawn(smtp::serve(smtp_l, hub.clone())));

        let worker_hub = hub.clone();
        let delivery = hub.config.webhooks;
        let worker_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            worker_hub
                .webhooks
                .run(webhook_rx, http, delivery, worker_shutdown)
                .await;
        }));
        if let Some(every) = hub.config.stripe.advance_every {
            tasks.push(tokio::spawn(stripe::clock(hub.clone(), every)));
        }
        Ok(Self {
            hub,
            stop_tx,
            tasks,
        })
    }

    /// Where each stand-in listens.
    pub fn urls(&self) -> &SandboxUrls {
        &self.hub.urls
    }

    /// The configuration it was started with (credentials the clients must use are in here).
    pub fn config(&self) -> &SandboxConfig {
        &self.hub.config
    }

    /// The live fault configuration.
    pub fn faults(&self) -> &FaultController {
        &self.hub.faults
    }

    /// The Stripe stand-in.
    pub fn stripe(&self) -> StripeHandle {
        StripeHandle::new(self.hub.clone())
    }

    /// The Twilio stand-in.
    pub fn twilio(&self) -> TwilioHandle {
        TwilioHandle::new(self.hub.clone())
    }

    /// The SMTP sink.
    pub fn smtp(&self) -> SmtpHandle {
        SmtpHandle::new(self.hub.clone())
    }

    /// The CareCredit stand-in.
    pub fn carecredit(&self) -> CareCreditHandle {
        CareCreditHandle::new(self.hub.clone())
    }

    /// The Sunbit stand-in.
    pub fn sunbit(&self) -> SunbitHandle {
        SunbitHandle::new(self.hub.clone())
    }

    /// Acts on `url` as a patient would after receiving it: a lender page is completed by the
    /// patient's persona, a checkout page is paid with their card, another loopback page is
    /// opened and its sandbox links acted on. `patient` is who clicked (`None`: the patient the
    /// application belongs to, if known; an unknown patient behaves like
    /// [`Persona::InstantApproval`]). Ignores [`PatientSimulation::enabled`].
    pub async fn act_on_link(&self, patient: Option<PatientKey>, url: &str) -> Vec<LinkAction> {
        let actions = sim::act_on_link(&self.hub, patient, url, 0).await;
        self.hub.webhooks.flush().await;
        actions
    }

    /// Revokes every token a system issued (Dentrix, NexHealth, CareCredit): the next call gets
    /// 401 and must authenticate again. Other systems have no tokens; nothing happens.
    pub fn revoke_tokens(&self, system: System) {
        match system {
            System::Dentrix => self.hub.pms.dentrix_tokens.revoke_all(),
            System::NexHealth => self.hub.pms.nexhealth_tokens.revoke_all(),
            System::CareCredit => self.carecredit().revoke_tokens(),
            _ => {}
        }
    }

    /// Requests `system` received, in order of arrival.
    pub fn requests(&self, system: System) -> Vec<RecordedRequest> {
        self.hub.recorder.requests(Some(system))
    }

    /// Requests every system received, in order of arrival.
    pub fn all_requests(&self) -> Vec<RecordedRequest> {
        self.hub.recorder.requests(None)
    }

    /// Forgets the recorded requests (the JSON Lines file is kept).
    pub fn clear_requests(&self) {
        self.hub.recorder.clear();
    }

    /// Every webhook delivery so far (Stripe, Sunbit, Twilio callbacks, ...).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.hub.webhooks.deliveries()
    }

    /// Webhooks queued and not yet finished, and webhooks finished so far (delivered or given
    /// up on): a harness that waits for quiet reads both before and after its own check.
    pub fn webhook_counts(&self) -> (usize, usize) {
        self.hub.webhooks.counts()
    }

    /// Waits until every queued webhook was delivered or given up on.
    pub async fn flush_webhooks(&self) {
        self.hub.webhooks.flush().await;
    }

    /// Seeds a patient into their practice system.
    pub fn seed_patient(&self, patient: SeedPatient) -> SeededPatient {
        self.hub.world.seed_patient(patient)
    }

    /// Seeds a person who is not a patient of the practice system yet (a new-patient intake): the
    /// lenders, Stripe and the messaging stand-ins know them (they act on their links as their
    /// persona says), the practice system's API does not list them until Chairside creates them.
    pub fn seed_prospect(&self, patient: SeedPatient) -> SeededPatient {
        self.hub.world.seed_prospect(patient)
    }

    /// Seeds an example prospect ([`SeedPatient::example`], numbered like every seeded patient so
    /// its phone is unique) and returns what was seeded, for the intake to be typed from.
    pub fn seed_example_prospect(&self, pms: Pms, persona: Persona) -> SeedPatient {
        let n = u32::try_from(self.hub.world.patients(None).len()).unwrap_or(u32::MAX);
        let seed = SeedPatient::example(pms, persona, n);
        self.seed_prospect(seed.clone());
        seed
    }

    /// The ids of the practice system's patients with this name (prospects left out): how many
    /// records a new-patient intake left there.
    pub fn pms_patient_ids(&self, pms: Pms, first_name: &str, last_name: &str) -> Vec<String> {
        self.hub
            .world
            .patients(Some(pms))
            .into_iter()
            .filter(|p| {
                p.seed.first_name.eq_ignore_ascii_case(first_name)
                    && p.seed.last_name.eq_ignore_ascii_case(last_name)
            })
            .map(|p| p.pms_id)
            .collect()
    }

    /// Seeds a plan (status: proposed) for a seeded patient.
    ///
    /// # Errors
    /// [`SandboxError::UnknownPatient`], or [`SandboxError::InvalidSeed`] for a plan without
    /// procedures.
    pub fn seed_plan(&self, plan: SeedPlan) -> Result<SeededPlan, SandboxError> {
        self.hub.world.seed_plan(plan)
    }

    /// Seeds an example patient with `persona` ([`SeedPatient::example`]) and an example plan
    /// ([`SeedPlan::example`]).
    ///
    /// # Errors
    /// None in practice; the `Result` is [`Sandbox::seed_plan`]'s.
    pub fn seed_persona(&self, pms: Pms, persona: Persona) -> Result<SeededCase, SandboxError> {
        let n = u32::try_from(self.hub.world.patients(None).len()).unwrap_or(u32::MAX);
        let patient = self.seed_patient(SeedPatient::example(pms, persona, n));
        let plan = self.seed_plan(SeedPlan::example(&patient))?;
        Ok(SeededCase { patient, plan })
    }

    /// Flips a plan to accepted, as the practice system shows it: Dentrix case status
    /// `ACCEPTED`, NexHealth `status=accepted`, Open Dental a Saved plan with `DateTSigned`.
    /// Its modification time moves, so change feeds report it.
    ///
    /// # Errors
    /// [`SandboxError::UnknownPlan`].
    pub fn accept_plan(&self, plan: PlanKey) -> Result<(), SandboxError> {
        self.set_plan_status(plan, PlanStatus::Accepted)
    }

    /// Sets a plan's status (rejected after acceptance, completed, back to proposed).
    ///
    /// # Errors
    /// [`SandboxError::UnknownPlan`].
    pub fn set_plan_status(&self, plan: PlanKey, status: PlanStatus) -> Result<(), SandboxError> {
        self.hub.world.set_plan_status(plan, status)?;
        self.plan_changed(plan);
        Ok(())
    }

    /// Pushes a change to systems that push (NexHealth's `treatment_plan_updated`).
    fn plan_changed(&self, plan: PlanKey) {
        if let Some(p) = self.hub.world.plan(plan) {
            pms::nexhealth::plan_changed(&self.hub, &p);
        }
    }

    /// Moves a plan's modification time without changing it (the feed reports it again).
    ///
    /// # Errors
    /// [`SandboxError::UnknownPlan`].
    pub fn touch_plan(&self, plan: PlanKey) -> Result<(), SandboxError> {
        self.hub.world.touch_plan(plan)?;
        self.plan_changed(plan);
        Ok(())
    }

    /// Edits what is financed: procedure `procedure`'s fee becomes `fee`; the modification time
    /// moves (the feed reports it again).
    ///
    /// # Errors
    /// [`SandboxError::UnknownPlan`] (also for a procedure the plan does not have).
    pub fn edit_plan_fee(
        &self,
        plan: PlanKey,
        procedure: usize,
        fee: financing_core::Money,
    ) -> Result<(), SandboxError> {
        self.hub.world.edit_plan_fee(plan, procedure, fee)?;
        self.plan_changed(plan);
        Ok(())
    }

    /// Open Dental serves this plan's `treatplans` row with `field` set to `value` (a malformed
    /// date, an odd boolean, another plan's number...).
    ///
    /// # Errors
    /// [`SandboxError::UnknownPlan`].
    pub fn od_override_plan(
        &self,
        plan: PlanKey,
        field: &str,
        value: serde_json::Value,
    ) -> Result<(), SandboxError> {
        let p = self.hub.world.plan(plan).ok_or(SandboxError::UnknownPlan)?;
        self.hub.opendental.override_plan(&p.pms_id, field, value);
        Ok(())
    }

    /// Open Dental serves every `proctps` row of this plan with `field` set to `value`.
    ///
    /// # Errors
    /// [`SandboxError::UnknownPlan`].
    pub fn od_override_procedures(
        &self,
        plan: PlanKey,
        field: &str,
        value: serde_json::Value,
    ) -> Result<(), SandboxError> {
        let p = self.hub.world.plan(plan).ok_or(SandboxError::UnknownPlan)?;
        self.hub
            .opendental
            .override_procedures(&p.pms_id, field, value);
        Ok(())
    }

    /// Open Dental answers this plan's `proctps` with `answer` instead of its rows.
    ///
    /// # Errors
    /// [`SandboxError::UnknownPlan`].
    pub fn od_answer_procedures(
        &self,
        plan: PlanKey,
        answer: ProcTpsAnswer,
    ) -> Result<(), SandboxError> {
        let p = self.hub.world.plan(plan).ok_or(SandboxError::UnknownPlan)?;
        self.hub.opendental.answer_proctps(&p.pms_id, answer);
        Ok(())
    }

    /// Open Dental serves this patient (`GET /patients/{PatNum}`) with `field` set to `value`.
    ///
    /// # Errors
    /// [`SandboxError::UnknownPatient`].
    pub fn od_override_patient(
        &self,
        patient: PatientKey,
        field: &str,
        value: serde_json::Value,
    ) -> Result<(), SandboxError> {
        let p = self
            .hub
            .world
            .patient(patient)
            .ok_or(SandboxError::UnknownPatient)?;
        self.hub
            .opendental
            .override_patient(&p.pms_id, field, value);
        Ok(())
    }

    /// Open Dental lists this raw row (a `null`, a row without its key...) in every `treatplans`
    /// listing that is not filtered by patient.
    pub fn od_extra_plan_row(&self, row: serde_json::Value) {
        self.hub.opendental.extra_plan_row(row);
    }

    /// The treatment plans written through Open Dental's `POST /treatplans`, as it lists them
    /// (`TreatPlanNum`, `PatNum`, `Heading`, `Note`, `TPStatus` Inactive...).
    pub fn od_written_plans(&self) -> Vec<serde_json::Value> {
        self.hub.opendental.written_plans()
    }

    /// Dentrix Ascend (`txcases`) or NexHealth (`treatment_plans`) lists this plan with `field`
    /// set to `value` (a status of the wrong type, a malformed date, a procedure list that is not
    /// one...). The plan's own GET is served as seeded.
    ///
    /// # Errors
    /// [`SandboxError::UnknownPlan`].
    pub fn override_listed_plan(
        &self,
        plan: PlanKey,
        field: &str,
        value: serde_json::Value,
    ) -> Result<(), SandboxError> {
        let p = self.hub.world.plan(plan).ok_or(SandboxError::UnknownPlan)?;
        self.hub
            .pms
            .override_listed_plan(p.pms, &p.pms_id, field, value);
        Ok(())
    }

    /// Dentrix Ascend or NexHealth lists this raw row (a `null`, a row without its id...) in its
    /// plan listing.
    pub fn extra_listed_plan_row(&self, pms: Pms, row: serde_json::Value) {
        self.hub.pms.extra_listed_row(pms, row);
    }

    /// The status of a seeded plan.
    pub fn plan_status(&self, plan: PlanKey) -> Option<PlanStatus> {
        self.hub.world.plan(plan).map(|p| p.status)
    }

    /// Every note, commlog and payment written to any practice system, oldest first.
    pub fn ledger_notes(&self) -> Vec<LedgerNote> {
        self.hub.world.notes()
    }

    /// Invariant: the notes whose text contains `marker` (Chairside's workflow marker). For one
    /// workflow outcome there must be exactly one.
    pub fn notes_containing(&self, marker: &str) -> Vec<LedgerNote> {
        self.hub
            .world
            .notes()
            .into_iter()
            .filter(|n| n.text.contains(marker))
            .collect()
    }

    /// Invariant helper: notes grouped by the marker they carry. A marker is the text from
    /// `prefix` up to the next `]` (with `prefix` `"[chairside:"`, the tag Chairside's note
    /// writers append). Every value must be 1.
    pub fn notes_by_marker(&self, prefix: &str) -> BTreeMap<String, usize> {
        self.notes_by_marker_excluding(prefix, None)
    }

    /// [`Self::notes_by_marker`] over the notes that do not contain `skip` (for example
    /// Chairside's payment notes, `"received through Stripe ("`, which a workflow may write
    /// beside its one outcome note: one per Stripe payment).
    pub fn notes_by_marker_excluding(
        &self,
        prefix: &str,
        skip: Option<&str>,
    ) -> BTreeMap<String, usize> {
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        for note in self.hub.world.notes() {
            if skip.is_some_and(|s| note.text.contains(s)) {
                continue;
            }
            let mut rest = note.text.as_str();
            let mut seen = Vec::new();
            while let Some(start) = rest.find(prefix) {
                let tail = &rest[start..];
                let end = tail.find(']').map_or(tail.len(), |i| i + 1);
                let marker = tail[..end].to_owned();
                if !seen.contains(&marker) {
                    seen.push(marker);
                }
                rest = &tail[end..];
            }
            for marker in seen {
                *out.entry(marker).or_default() += 1;
            }
        }
        out
    }

    /// How Chairside's payment notes name the payment (`received through Stripe ({id})`): a
    /// workflow writes one per Stripe payment beside its one outcome note.
    pub const PAYMENT_NOTE: &'static str = "received through Stripe (";

    /// Invariant helper: how many Stripe payments were noted more than once in the ledger
    /// (Chairside's payment notes name the payment: `received through Stripe ({id})`).
    pub fn payments_noted_twice(&self) -> usize {
        let mut per_payment: BTreeMap<String, usize> = BTreeMap::new();
        for note in self.hub.world.notes() {
            if let Some(rest) = note.text.split(Self::PAYMENT_NOTE).nth(1) {
                let id = rest.split(')').next().unwrap_or_default().to_owned();
                *per_payment.entry(id).or_default() += 1;
            }
        }
        per_payment.values().filter(|n| **n > 1).count()
    }

    /// When each plan's patient received their first message (an email the SMTP sink accepted or
    /// a text the Twilio stand-in accepted, whichever came first), by the plan's id in its
    /// practice system. Plans whose patient got nothing are left out. The bench's
    /// operatory-to-patient time ends here.
    pub fn first_message_times(&self) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
        let emails = self.smtp().messages();
        let texts = self.twilio().messages();
        let mut out = BTreeMap::new();
        for plan in self.hub.world.plans(None) {
            let Some(patient) = self.hub.world.patient(plan.patient) else {
                continue;
            };
            let email = patient.seed.email.as_deref();
            let phone = patient.seed.mobile_phone.as_deref();
            let first_email = emails
                .iter()
                .filter(|m| {
                    email.is_some_and(|e| m.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(e)))
                })
                .map(|m| m.received_at)
                .min();
            let first_text = texts
                .iter()
                .filter(|m| m.direction != "inbound" && phone.is_some_and(|p| m.to == p))
                .map(|m| m.date_created)
                .min();
            if let Some(at) = first_email.into_iter().chain(first_text).min() {
                out.insert(plan.pms_id.clone(), at);
            }
        }
        out
    }

    /// Compliance violations the stand-ins noticed (prefill for a California patient, clinical
    /// data sent to a lender, ...). Must be empty.
    pub fn violations(&self) -> Vec<Violation> {
        self.hub.world.violations()
    }

    /// Stops every stand-in and waits for them to finish. Requests still hanging (lost
    /// responses) are dropped.
    pub async fn stop(mut self) {
        let _ = self.stop_tx.send(true);
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop_tx.send(true);
    }
}
