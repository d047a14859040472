//! `sandbox`: runs every stand-in stand-alone on loopback and prints where they listen and the
//! (made-up) credentials they expect, for poking at them with curl or pointing a tool at them.
//!
//! With `--admin` it also serves a small loopback admin API, so another process (the benchmark)
//! can seed patients while it runs and read the invariants afterwards:
//!
//! - `POST /seed` with `{"pms": "dentrix", "persona": "instant_approval", "count": 100}` seeds
//!   that many made-up patients with an example plan each, accepts every plan, and answers with
//!   the seeded cases (the `seeded` shape of `--json`).
//! - `GET /invariants` answers ledger notes per Chairside marker, duplicate Stripe objects and
//!   compliance violations.
//! - `GET /counts` answers how many ledger notes were written and how many webhooks are queued
//!   and finished (cheap enough to ask often).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use sandbox::{
    Fault, FaultRule, Persona, Pms, Ports, Sandbox, SandboxConfig, SeedPatient, SeedPlan,
    SeededCase, System,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

/// Local stand-ins for Stripe, Twilio, SMTP, Dentrix Ascend, NexHealth, Open Dental, CareCredit
/// and Sunbit. Stops on Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "sandbox", version)]
struct Args {
    /// Seed for every random choice (fault draws, ids).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// First of eight consecutive ports (Stripe, Twilio, SMTP, Dentrix, NexHealth, Open Dental,
    /// CareCredit, Sunbit); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    base_port: u16,
    /// Where Stripe events are POSTed.
    #[arg(long, env = "SANDBOX_STRIPE_WEBHOOK_URL")]
    stripe_webhook_url: Option<Url>,
    /// Where Sunbit events are POSTed.
    #[arg(long, env = "SANDBOX_SUNBIT_WEBHOOK_URL")]
    sunbit_webhook_url: Option<Url>,
    /// Where events of one Sunbit location are POSTed instead, as `LOCATION=URL`
    /// (`lone-star-dental-sunbit=http://127.0.0.1:8080/webhooks/sunbit/lone-star-dental`);
    /// repeatable.
    #[arg(long = "sunbit-location-webhook", value_name = "LOCATION=URL")]
    sunbit_location_webhooks: Vec<String>,
    /// Where inbound texts (patient replies) are POSTed.
    #[arg(long, env = "SANDBOX_TWILIO_INBOUND_URL")]
    twilio_inbound_url: Option<Url>,
    /// Append every Stripe request to this JSON Lines file (conformance.py's format).
    #[arg(long)]
    stripe_request_log: Option<PathBuf>,
    /// Bill the next installment of every active schedule this often (seconds).
    #[arg(long)]
    advance_every: Option<u64>,
    /// Seed one patient per persona in this practice system (dentrix, nexhealth, opendental)
    /// and accept their plans.
    #[arg(long)]
    seed_personas: Option<String>,
    /// Print the addresses and credentials as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Add a fixed latency to every request of one system, as `SYSTEM=MILLIS` (`carecredit=800`);
    /// repeat for several systems. Systems: stripe, twilio, dentrix, nexhealth, opendental,
    /// carecredit, sunbit.
    #[arg(long = "latency", value_name = "SYSTEM=MILLIS")]
    latency: Vec<String>,
    /// Serve the admin API (`POST /seed`, `GET /invariants`, `GET /counts`) on a loopback port;
    /// its URL is printed as `admin`.
    #[arg(long)]
    admin: bool,
    /// Stop when standard input closes (for a parent process that may die without stopping us).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

/// Parses `--latency SYSTEM=MILLIS`.
fn latency_rule(spec: &str) -> anyhow::Result<(System, FaultRule)> {
    let (system, millis) = spec
        .split_once('=')
        .context("--latency takes SYSTEM=MILLIS, e.g. carecredit=800")?;
    let system = System::from_name(system.trim())
        .with_context(|| format!("--latency: unknown system '{system}'"))?;
    let millis: u64 = millis
        .trim()
        .parse()
        .with_context(|| format!("--latency {spec}: MILLIS must be a whole number"))?;
    Ok((
        system,
        FaultRule::new(Fault::latency(Duration::from_millis(millis))),
    ))
}

fn parse_pms(name: &str) -> Option<Pms> {
    match name {
        "dentrix" => Some(Pms::Dentrix),
        "nexhealth" => Some(Pms::NexHealth),
        "opendental" => Some(Pms::OpenDental),
        _ => None,
    }
}

fn parse_persona(name: &str) -> Option<Persona> {
    Persona::ALL.into_iter().find(|p| p.name() == name)
}

/// Area codes for patients past the 800 that [`SeedPatient::example`] keeps unique: every code
/// from 201 up that is not an N11 service code, not a leading 0/1, and not one `example` uses.
fn extra_area_code(block: u32) -> String {
    const USED: [u32; 8] = [202, 312, 415, 512, 617, 702, 808, 907];
    (201..=999u32)
        .filter(|c| c % 100 != 11 && !USED.contains(c))
        .nth(block as usize)
        .map_or_else(|| "999".to_owned(), |c| c.to_string())
}

/// [`SeedPatient::example`], with phone numbers kept unique past 800 patients (still in the
/// fictional 555-01xx range): the sandbox finds the patient a text is for by number.
fn example_patient(pms: Pms, persona: Persona, n: u32) -> SeedPatient {
    let mut patient = SeedPatient::example(pms, persona, n);
    if n >= 800 {
        let area = extra_area_code(n / 100 - 8);
        let line = n % 100;
        if patient.mobile_phone.is_some() {
            patient.mobile_phone = Some(format!("+1{area}55501{line:02}"));
        }
        patient.home_phone = Some(format!("+1{area}55502{line:02}"));
    }
    patient
}

/// What the admin API serves from.
struct Admin {
    sandbox: Arc<Sandbox>,
    /// Patients seeded so far (names, emails and numbers are made unique by it).
    seeded: AtomicU32,
}

#[derive(Deserialize)]
struct SeedRequest {
    pms: String,
    persona: String,
    count: u32,
}

type AdminError = (StatusCode, String);

fn bad_request(message: String) -> AdminError {
    (StatusCode::BAD_REQUEST, message)
}

async fn seed(
    State(admin): State<Arc<Admin>>,
    Json(req): Json<SeedRequest>,
) -> Result<Json<Vec<SeededCase>>, AdminError> {
    let pms = parse_pms(&req.pms)
        .ok_or_else(|| bad_request("pms: dentrix, nexhealth or opendental".into()))?;
    let persona = parse_persona(&req.persona)
        .ok_or_else(|| bad_request(format!("unknown persona '{}'", req.persona)))?;
    let mut cases = Vec::with_capacity(req.count as usize);
    for _ in 0..req.count {
        let n = admin.seeded.fetch_add(1, Ordering::Relaxed);
        let patient = admin.sandbox.seed_patient(example_patient(pms, persona, n));
        let plan = admin
            .sandbox
            .seed_plan(SeedPlan::example(&patient))
            .map_err(|e| bad_request(format!("seeding a plan: {e}")))?;
        admin
            .sandbox
            .accept_plan(plan.key)
            .map_err(|e| bad_request(format!("accepting a plan: {e}")))?;
        cases.push(SeededCase { patient, plan });
    }
    Ok(Json(cases))
}

async fn invariants(State(admin): State<Arc<Admin>>) -> Json<serde_json::Value> {
    let sb = &admin.sandbox;
    let stripe = sb.stripe();
    let more_than_one = |m: BTreeMap<String, usize>| m.values().filter(|n| **n > 1).count();
    Json(serde_json::json!({
        "ledger_notes": sb.ledger_notes().len(),
        "notes_by_marker": sb.notes_by_marker("[chairside:"),
        // A workflow writes one outcome note, and a payment note per Stripe payment beside it.
        "outcome_notes_by_marker": sb.notes_by_marker_excluding("[chairside:", Some(sandbox::Sandbox::PAYMENT_NOTE)),
        "payments_noted_twice": sb.payments_noted_twice(),
        "patients_with_several_customers": more_than_one(stripe.customers_per_patient()),
        "workflows_with_several_schedules": more_than_one(stripe.schedules_per_workflow()),
        "workflows_with_several_deposit_links": more_than_one(stripe.checkout_sessions_per_workflow()),
        "installments_charged_twice": stripe.charges_per_installment().values().filter(|n| **n > 1).count(),
        "violations": sb.violations().len(),
        "emails": sb.smtp().messages().len(),
        "texts": sb.twilio().messages().len(),
    }))
}

/// `GET /first-messages`: when each plan's patient got their first email or text, by plan id.
async fn first_messages(State(admin): State<Arc<Admin>>) -> Json<serde_json::Value> {
    Json(serde_json::json!(admin.sandbox.first_message_times()))
}

async fn counts(State(admin): State<Arc<Admin>>) -> Json<serde_json::Value> {
    let (webhooks_pending, webhooks_finished) = admin.sandbox.webhook_counts();
    Json(serde_json::json!({
        "ledger_notes": admin.sandbox.ledger_notes().len(),
        "webhooks_pending": webhooks_pending,
        "webhooks_finished": webhooks_finished,
    }))
}

async fn serve_admin(admin: Arc<Admin>) -> anyhow::Result<(Url, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the admin API")?;
    let url = Url::parse(&format!("http://{}/", listener.local_addr()?))?;
    let app = Router::new()
        .route("/seed", post(seed))
        .route("/invariants", get(invariants))
        .route("/counts", get(counts))
        .route("/first-messages", get(first_messages))
        .with_state(admin);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the admin API stopped");
        }
    });
    Ok((url, task))
}

/// Resolves when standard input reaches its end (or fails). The read blocks, so it runs on a
/// plain thread that is simply left behind when the process exits.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = SandboxConfig {
        seed: args.seed,
        ..SandboxConfig::default()
    };
    if args.base_port != 0 {
        config.ports = Ports::from_base(args.base_port);
    }
    config.stripe.webhook_url = args.stripe_webhook_url;
    config.stripe.request_log = args.stripe_request_log;
    config.stripe.advance_every = args.advance_every.map(Duration::from_secs);
    config.sunbit.webhook_url = args.sunbit_webhook_url;
    for spec in &args.sunbit_location_webhooks {
        let (location, url) = spec
            .split_once('=')
            .context("--sunbit-location-webhook takes LOCATION=URL")?;
        let url = Url::parse(url)
            .with_context(|| format!("--sunbit-location-webhook {location}: not a URL"))?;
        config
            .sunbit
            .location_webhook_urls
            .insert(location.to_owned(), url);
    }
    config.twilio.inbound_url = args.twilio_inbound_url;
    for spec in &args.latency {
        let (system, rule) = latency_rule(spec)?;
        config.faults.entry(system).or_default().push(rule);
    }
    let pms = match args.seed_personas.as_deref() {
        None => None,
        Some(name) => Some(
            parse_pms(name).context("--seed-personas takes dentrix, nexhealth or opendental")?,
        ),
    };

    let sb = Sandbox::start(config)
        .await
        .context("starting the sandbox")?;
    let mut seeded = Vec::new();
    if let Some(pms) = pms {
        for persona in Persona::ALL {
            let case = sb.seed_persona(pms, persona)?;
            sb.accept_plan(case.plan.key)?;
            seeded.push(case);
        }
    }

    let sb = Arc::new(sb);
    let admin = if args.admin {
        let state = Arc::new(Admin {
            sandbox: sb.clone(),
            // `seed_persona` numbered the patients seeded above from 0.
            seeded: AtomicU32::new(u32::try_from(seeded.len()).unwrap_or(u32::MAX)),
        });
        Some(serve_admin(state).await?)
    } else {
        None
    };

    let u = sb.urls();
    let c = sb.config();
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "stripe": {"url": u.stripe, "secret_key": c.stripe.secret_key.expose_secret(),
                "webhook_secrets": c.stripe.webhook_secrets.iter().map(|s| s.expose_secret().to_owned()).collect::<Vec<_>>()},
            "twilio": {"url": u.twilio, "account_sid": c.twilio.account_sid, "auth_token": c.twilio.auth_token.expose_secret()},
            "smtp": {"host": u.smtp.ip().to_string(), "port": u.smtp.port()},
            "dentrix": {"url": u.dentrix, "client_id": c.dentrix.client_id,
                "client_secret": c.dentrix.client_secret.expose_secret(), "organization_id": c.dentrix.organization_id},
            "nexhealth": {"url": u.nexhealth, "api_key": c.nexhealth.api_key.expose_secret(),
                "subdomain": c.nexhealth.subdomain, "location_id": c.nexhealth.location_id},
            "opendental": {"url": u.opendental, "developer_key": c.opendental.developer_key.expose_secret(),
                "customer_key": c.opendental.customer_key.expose_secret()},
            "carecredit": {"url": u.carecredit, "client_id": c.carecredit.client_id,
                "client_secret": c.carecredit.client_secret.expose_secret()},
            "sunbit": {"url": u.sunbit, "key": c.sunbit.api_key, "secret": c.sunbit.api_secret.expose_secret(),
                "webhook_secret": c.sunbit.webhook_secret.expose_secret()},
            "seeded": seeded,
            "admin": admin.as_ref().map(|(url, _)| url),
        });
        writeln!(out, "{doc}")?;
    } else {
        // Made-up credentials, printed on purpose: they are what a client must be configured
        // with to talk to this sandbox.
        writeln!(
            out,
            "sandbox running (Ctrl-C stops it); made-up credentials:"
        )?;
        writeln!(
            out,
            "  stripe      {}  key={} whsec={}",
            u.stripe,
            c.stripe.secret_key.expose_secret(),
            c.stripe
                .webhook_secrets
                .first()
                .map_or("", |s| s.expose_secret())
        )?;
        writeln!(
            out,
            "  twilio      {}  account={} token={}",
            u.twilio,
            c.twilio.account_sid,
            c.twilio.auth_token.expose_secret()
        )?;
        writeln!(out, "  smtp        {}  (plain, no auth)", u.smtp)?;
        writeln!(
            out,
            "  dentrix     {}  client={} secret={} org={}",
            u.dentrix,
            c.dentrix.client_id,
            c.dentrix.client_secret.expose_secret(),
            c.dentrix.organization_id
        )?;
        writeln!(
            out,
            "  nexhealth   {}  key={} subdomain={} location={}",
            u.nexhealth,
            c.nexhealth.api_key.expose_secret(),
            c.nexhealth.subdomain,
            c.nexhealth.location_id
        )?;
        writeln!(
            out,
            "  opendental  {}  ODFHIR {}/{}",
            u.opendental,
            c.opendental.developer_key.expose_secret(),
            c.opendental.customer_key.expose_secret()
        )?;
        writeln!(
            out,
            "  carecredit  {}  client={} secret={}",
            u.carecredit,
            c.carecredit.client_id,
            c.carecredit.client_secret.expose_secret()
        )?;
        writeln!(
            out,
            "  sunbit      {}  key={} secret={} webhook-secret={}",
            u.sunbit,
            c.sunbit.api_key,
            c.sunbit.api_secret.expose_secret(),
            c.sunbit.webhook_secret.expose_secret()
        )?;
        if let Some((url, _)) = &admin {
            writeln!(
                out,
                "  admin       {url}  (POST /seed, GET /invariants, GET /counts)"
            )?;
        }
        for case in &seeded {
            writeln!(
                out,
                "  seeded {:<30} patient {} plan {} (accepted)",
                case.patient.persona.name(),
                case.patient.pms_id,
                case.plan.pms_id
            )?;
        }
    }
    out.flush()?;
    drop(out);
    if args.exit_on_stdin_eof {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            () = stdin_closed() => {}
        }
    } else {
        tokio::signal::ctrl_c().await?;
    }
    if let Some((_, task)) = admin {
        task.abort();
        let _ = task.await;
    }
    if let Ok(sb) = Arc::try_unwrap(sb) {
        sb.stop().await;
    }
    Ok(())
}
