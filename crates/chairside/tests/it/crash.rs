//! Crash runs: the real `chairside` binary in `run` mode against the sandbox, killed with SIGKILL
//! at seeded random moments and restarted, until every plan has reached its end. Then the
//! invariants: every plan ended where its persona says, one Stripe customer per patient, at most
//! one schedule and one deposit link per workflow, no installment charged twice, exactly one
//! outcome note per workflow, and no message twice (each patient's emails by Message-ID, each
//! text claimed by exactly one message key).
//!
//! The multi-instance run starts three `chairside run` on one database behind a loopback front
//! that hands each webhook connection to any live instance, and kills one of them at random at
//! least 30 times over 100 plans. It runs on SQLite (three processes on one WAL file) and, when
//! `CHAIRSIDE_TEST_POSTGRES_URL` is set, on PostgreSQL too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chairside::demo::world::Expected;
use chairside_engine::store::SqliteStore;
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::prelude::*;
use chairside_workflow::Stage;
use financing_core::PracticeId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sandbox::{
    Fault, FaultRule, Persona, Pms, Sandbox, SandboxConfig, SmtpFault, SmtpFaultRule, System,
    WebhookDelivery,
};

pub(super) const DATA_KEY: &str =
    "7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";
const LINK_KEY: &str = "crash-test-patient-link-key-0123456789";
pub(super) const PRACTICE: &str = "lone-star-dental";

/// Personas whose ends the service learns by polling or by webhooks the sandbox retries.
const PERSONAS: [Persona; 6] = [
    Persona::InstantApproval,
    Persona::DeclineFirstApproveSecond,
    Persona::PendingThenApproved { polls: 2 },
    Persona::NoSmsConsent,
    Persona::InsuranceAboveFee,
    Persona::ReturningCardholderEnough,
];

/// A free loopback port for an instance, below the kernel's range of ephemeral ports.
///
/// An instance is killed and restarted on its port. A port from the ephemeral range (what
/// binding port 0 hands out) is free while its instance is dead, so the kernel may give it to
/// an outgoing connection (the sandbox's webhooks, the front's proxying) as its local port, and
/// the restarted instance then fails to bind it ("Address already in use"). Ports below the
/// range are never handed out that way.
pub(super) fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    const LOWEST: u16 = 10_000;
    if ephemeral_low > LOWEST + 1_000 {
        for _ in 0..1_000 {
            let port = LOWEST + rand::random::<u16>() % (ephemeral_low - LOWEST);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The variable the instances read a PostgreSQL URL from (`[store] url_env`).
const DATABASE_URL_ENV: &str = "CHAIRSIDE_CRASH_DATABASE_URL";

/// Where the instances keep their state.
#[derive(Clone)]
pub(super) enum Database {
    /// A SQLite file in the run's directory.
    Sqlite,
    /// A PostgreSQL database (a fresh one per run).
    Postgres(String),
}

impl Database {
    /// The `[store]` keys that choose it.
    fn store_keys(&self, dir: &Path) -> String {
        match self {
            Self::Sqlite => format!("path = \"{}\"", dir.join("chairside.sqlite").display()),
            // The URL may carry a password, which the configuration file never holds.
            Self::Postgres(_) => format!("url_env = \"{DATABASE_URL_ENV}\""),
        }
    }
}

/// One instance's configuration: its own listen port; the database, the sandbox and the public
/// base URL (`base`, the front every instance is reached through) shared.
pub(super) fn config_toml(
    dir: &Path,
    database: &Database,
    sandbox: &Sandbox,
    instance: usize,
    port: u16,
    base: &str,
    lease_secs: u64,
) -> String {
    let u = sandbox.urls();
    let c = sandbox.config();
    let store = database.store_keys(dir);
    format!(
        r#"
[store]
{store}
data_key_env = "CHAIRSIDE_DATA_KEY"

[runner]
owner = "crash-test-{instance}"
lease_secs = {lease_secs}
concurrency = 8
poll_interval_secs = 1

[http]
listen = "127.0.0.1:{port}"
public_base_url = "{base}"
patient_link_key_env = "CHAIRSIDE_PATIENT_LINK_KEY"

[stripe]
base_url = "{stripe}"
api_key_env = "STRIPE_API_KEY"
webhook_secrets_env = "STRIPE_WEBHOOK_SECRETS"

[twilio]
base_url = "{twilio}"
account_sid = "{sid}"
auth_token_env = "TWILIO_AUTH_TOKEN"
from = "+15125550100"

[[practices]]
id = "{PRACTICE}"
name = "Lone Star Dental"
state = "TX"
time_zone = "America/Chicago"
location_id = "lone-star-main"
phone = "+15125550100"
email = "frontdesk@lone-star-dental.example"

[practices.pms]
kind = "dentrix"
base_url = "{dentrix}"
client_id = "{dentrix_client}"
client_secret_env = "DENTRIX_CLIENT_SECRET"
organization_id = "{org}"

[practices.lenders]
order = ["carecredit", "sunbit"]
on_partial = "continue_for_full_coverage"
in_house_fallback = true

[practices.lenders.carecredit]
base_url = "{carecredit}"
client_id = "{cc_client}"
client_secret_env = "CARECREDIT_CLIENT_SECRET"
partner_code = "CHAIRSIDE"
merchant_number = "5348120000000001"

[practices.lenders.sunbit]
base_url = "{sunbit}"
key_env = "SUNBIT_API_KEY"
secret_env = "SUNBIT_API_SECRET"
location = "lone-star-sunbit"
webhook_secret_env = "SUNBIT_WEBHOOK_SECRET"

[practices.payments]
deposit = "10%"
installments = 6

[practices.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "frontdesk@lone-star-dental.example"

# Windows wider than a kill phase plus a lease: a patient who applied while the instances were
# being killed is seen before the give-up. (With 6 s windows a no_sms_consent plan sometimes
# ended PatientQuiet on a busy machine: its approval was there, the service had been down.)
[practices.reminders]
delays = ["30s", "30s"]
give_up_after = "30s"
poll_interval = "1s"

[practices.policy]
prefill_approved_by_counsel = true
"#,
        stripe = u.stripe,
        twilio = u.twilio,
        sid = c.twilio.account_sid,
        dentrix = u.dentrix,
        dentrix_client = c.dentrix.client_id,
        org = c.dentrix.organization_id,
        carecredit = u.carecredit,
        cc_client = c.carecredit.client_id,
        sunbit = u.sunbit,
        smtp_port = u.smtp.port(),
    )
}

pub(super) fn spawn(binary: &Path, config: &Path, sandbox: &Sandbox, log: &Path) -> Child {
    spawn_logging(binary, config, sandbox, log, "warn")
}

/// [`spawn`] of an instance on `database`.
fn spawn_on(
    database: &Database,
    binary: &Path,
    config: &Path,
    sandbox: &Sandbox,
    log: &Path,
) -> Child {
    match database {
        Database::Sqlite => spawn(binary, config, sandbox, log),
        Database::Postgres(url) => spawn_env(
            binary,
            config,
            sandbox,
            log,
            "warn",
            &[(DATABASE_URL_ENV, url)],
        ),
    }
}

/// [`spawn`] with `RUST_LOG` at `level`.
pub(super) fn spawn_logging(
    binary: &Path,
    config: &Path,
    sandbox: &Sandbox,
    log: &Path,
    level: &str,
) -> Child {
    spawn_env(binary, config, sandbox, log, level, &[])
}

fn spawn_env(
    binary: &Path,
    config: &Path,
    sandbox: &Sandbox,
    log: &Path,
    level: &str,
    env: &[(&str, &str)],
) -> Child {
    use secrecy::ExposeSecret as _;
    let c = sandbox.config();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(binary)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("CHAIRSIDE_DATA_KEY", DATA_KEY)
        .env("CHAIRSIDE_PATIENT_LINK_KEY", LINK_KEY)
        .env("STRIPE_API_KEY", c.stripe.secret_key.expose_secret())
        .env(
            "STRIPE_WEBHOOK_SECRETS",
            c.stripe
                .webhook_secrets
                .iter()
                .map(|s| s.expose_secret().to_owned())
                .collect::<Vec<_>>()
                .join(","),
        )
        .env("TWILIO_AUTH_TOKEN", c.twilio.auth_token.expose_secret())
        .env(
            "DENTRIX_CLIENT_SECRET",
            c.dentrix.client_secret.expose_secret(),
        )
        .env(
            "CARECREDIT_CLIENT_SECRET",
            c.carecredit.client_secret.expose_secret(),
        )
        .env("SUNBIT_API_KEY", &c.sunbit.api_key)
        .env("SUNBIT_API_SECRET", c.sunbit.api_secret.expose_secret())
        .env(
            "SUNBIT_WEBHOOK_SECRET",
            c.sunbit.webhook_secret.expose_secret(),
        )
        .envs(env.iter().copied())
        .env("RUST_LOG", level)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the chairside binary starts")
}

struct Outcome {
    kills: u32,
    plans: usize,
    wrong: Vec<String>,
    problems: Vec<String>,
    settled: usize,
    emails: usize,
    texts: usize,
    elapsed: Duration,
}

/// One crash run.
struct Spec {
    seed: u64,
    /// `chairside run` processes on the one database.
    instances: usize,
    plans: usize,
    /// SIGKILLs, each of one instance chosen at random, at random moments.
    kills: u32,
    /// The sandbox's faults (5xx, 429, applied-then-reset on Stripe and Twilio, indeterminate
    /// SMTP sends).
    faults: bool,
    database: Database,
    /// How long the plans may take to settle, from the start.
    deadline: Duration,
    /// `runner.lease_secs`: how long a killed instance's workflows and poller wait for another.
    lease_secs: u64,
    /// A card-on-file practice (`[practices.payments] preference = "card_on_file"`): the
    /// sandbox's patients save a card on the patient page and the deposits are charged
    /// off-session, under kills and (with faults) Stripe's lost answers.
    card_on_file: bool,
}

/// A loopback front: each connection goes to one live instance, round robin (an instance that
/// refuses is skipped; when none answers the connection is dropped and the sender retries), as a
/// load balancer in front of several instances does.
async fn front(listener: tokio::net::TcpListener, ports: Vec<u16>) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let ports = ports.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let start = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for k in 0..ports.len() {
                let port = ports[(start + k) % ports.len()];
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    return;
                }
            }
        });
    }
}

pub(super) fn sandbox_config(seed: u64, base: &str, faults: bool) -> SandboxConfig {
    let mut cfg = SandboxConfig {
        seed,
        ..SandboxConfig::default()
    };
    // Webhooks sent while the service is down are retried, as Stripe and Sunbit do.
    cfg.webhooks = WebhookDelivery {
        timeout: Duration::from_secs(2),
        attempts: 40,
        first_retry_after: Duration::from_millis(250),
    };
    cfg.stripe.webhook_url = Some(format!("{base}webhooks/stripe").parse().expect("url"));
    cfg.sunbit.webhook_url = Some(
        format!("{base}webhooks/sunbit/lone-star-dental")
            .parse()
            .expect("url"),
    );
    let log_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/stripe-requests");
    std::fs::create_dir_all(&log_dir).expect("target directory");
    cfg.stripe.request_log =
        Some(log_dir.join(format!("crash-{seed}-{}.jsonl", std::process::id())));
    if faults {
        for system in [
            System::Stripe,
            System::Dentrix,
            System::CareCredit,
            System::Sunbit,
            System::Twilio,
        ] {
            cfg.faults.insert(
                system,
                vec![
                    FaultRule::new(Fault::status(503)).probability(0.05),
                    FaultRule::new(Fault::too_many_requests(1)).probability(0.05),
                ],
            );
        }
        cfg.faults.get_mut(&System::Stripe).expect("stripe").push(
            FaultRule::new(Fault::applied_then_reset())
                .on("POST", "/v1/")
                .probability(0.1),
        );
        // Indeterminate texts: Twilio takes the message, then the connection drops.
        cfg.faults.get_mut(&System::Twilio).expect("twilio").push(
            FaultRule::new(Fault::applied_then_reset())
                .on("POST", "/2010-04-01/")
                .probability(0.15),
        );
        // Indeterminate emails: the sink keeps the message, then drops the connection or says
        // nothing until the sender gives up (its deadline is twice its 20 s timeout). SMTP
        // cannot be asked, so an email whose outcome is unknown is never sent again.
        cfg.smtp_faults = vec![
            SmtpFaultRule::new(SmtpFault::AcceptedThenDropped).probability(0.15),
            SmtpFaultRule::new(SmtpFault::AcceptedThenSilent(Duration::from_secs(60)))
                .probability(0.03),
        ];
    }
    cfg
}

/// The store the test reads the outcome from, beside the instances.
pub(super) async fn open_store(database: &Database, dir: &Path) -> std::sync::Arc<dyn Store> {
    match database {
        Database::Sqlite => std::sync::Arc::new(
            SqliteStore::open(
                &dir.join("chairside.sqlite"),
                DataKey::parse(DATA_KEY).expect("key"),
            )
            .await
            .expect("store"),
        ),
        Database::Postgres(url) => std::sync::Arc::new(
            chairside_engine::store::PostgresStore::connect(
                url,
                DataKey::parse(DATA_KEY).expect("key"),
            )
            .await
            .expect("the PostgreSQL database"),
        ),
    }
}

/// The provider ids of the texts journalled as sent (each claimed by one message key).
async fn journalled_texts(database: &Database, dir: &Path) -> Vec<String> {
    const SENT: &str =
        "SELECT provider_id FROM message_sends WHERE channel = 'sms' AND state = 'sent'
         AND provider_id IS NOT NULL";
    match database {
        Database::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!(
                "sqlite://{}",
                dir.join("chairside.sqlite").display()
            ))
            .await
            .expect("the database");
            let ids = sqlx::query_scalar(SENT)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
            pool.close().await;
            ids
        }
        Database::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("the database");
            let ids = sqlx::query_scalar(SENT)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
            pool.close().await;
            ids
        }
    }
}

pub(super) fn log_tail(logs: &[PathBuf]) -> String {
    logs.iter()
        .map(|log| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            format!(
                "--- {} (last lines, newest first)\n{}",
                log.display(),
                tail.join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One kill run at a time. Four runs at once on a 2-CPU CI machine (each with up to three debug
/// `chairside` processes, the sandbox and its faults) starved a single instance so long that its
/// first poll had not been recorded after three minutes; run one after the other, each run's
/// timings are the ones it was written for.
static ONE_KILL_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn crash_run(spec: &Spec) -> Outcome {
    let _one_at_a_time = ONE_KILL_RUN_AT_A_TIME.lock().await;
    let seed = spec.seed;
    let dir = tempfile::tempdir().expect("temporary directory");
    let front_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the front");
    let base = format!(
        "http://127.0.0.1:{}/",
        front_listener.local_addr().expect("address").port()
    );
    let ports: Vec<u16> = (0..spec.instances).map(|_| free_port()).collect();
    let front = tokio::spawn(front(front_listener, ports.clone()));
    let sandbox = Sandbox::start(sandbox_config(seed, &base, spec.faults))
        .await
        .expect("sandbox starts");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_chairside"));
    let mut configs = Vec::new();
    let mut logs = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = dir.path().join(format!("chairside-{i}.toml"));
        let mut toml = config_toml(
            dir.path(),
            &spec.database,
            &sandbox,
            i,
            *port,
            &base,
            spec.lease_secs,
        );
        if spec.card_on_file {
            toml = toml.replace(
                "installments = 6\n",
                "installments = 6\npreference = \"card_on_file\"\n",
            );
            assert!(toml.contains("card_on_file"), "the payments table moved");
        }
        std::fs::write(&config, toml).expect("config written");
        configs.push(config);
        logs.push(dir.path().join(format!("chairside-{i}.log")));
    }
    let practice = PracticeId::new(PRACTICE);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0;
    let started = Instant::now();
    // The first instance creates the schema alone; the others join once it is up.
    let mut children = vec![spawn_on(
        &spec.database,
        &binary,
        &configs[0],
        &sandbox,
        &logs[0],
    )];
    // A fresh install starts from now: its first poll records the baseline, and only plans
    // accepted after it are started. Seed once the service has taken it.
    // Three minutes: CI runs the four kill runs at once on two CPUs, and a debug build's first
    // start (migrations, the first poll through the sandbox's faults) can take a minute there.
    let baseline_by = Instant::now() + Duration::from_secs(180);
    // One store for the whole wait, opened once the service has created the file: a store per
    // look would open and close the file ten times a second beside the service.
    let mut watching = None;
    let store = loop {
        if watching.is_none() && spec_store_ready(&spec.database, dir.path()) {
            watching = Some(open_store(&spec.database, dir.path()).await);
        }
        if let Some(store) = &watching {
            let health = store.detection_health().await.unwrap_or_default();
            if health.iter().any(|h| h.baseline_at.is_some()) {
                break store.clone();
            }
        }
        assert!(
            Instant::now() < baseline_by,
            "seed {seed}: the service took no baseline within three minutes; its log:\n{}",
            log_tail(&logs[..1])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for i in 1..spec.instances {
        children.push(spawn_on(
            &spec.database,
            &binary,
            &configs[i],
            &sandbox,
            &logs[i],
        ));
    }
    let mut cases = Vec::new();
    for i in 0..spec.plans {
        let persona = PERSONAS[i % PERSONAS.len()];
        let seeded = sandbox.seed_persona(Pms::Dentrix, persona).expect("seeded");
        sandbox.accept_plan(seeded.plan.key).expect("accepted");
        cases.push((persona, seeded.plan.pms_id.clone()));
    }
    let pause = if spec.instances > 1 {
        300..1_200
    } else {
        300..1_800
    };
    while kills < spec.kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(pause.clone()))).await;
        let i = rng.gen_range(0..children.len());
        children[i].kill().expect("SIGKILL");
        let _ = children[i].wait();
        kills += 1;
        children[i] = spawn_on(&spec.database, &binary, &configs[i], &sandbox, &logs[i]);
    }
    // Let the survivors finish everything.
    let mut settled = 0;
    while started.elapsed() < spec.deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows = store
            .workflows(Some(&practice), None, 1_000)
            .await
            .unwrap_or_default();
        settled = rows
            .iter()
            .filter(|r| r.state.stage == Stage::Settled && r.next_action.is_none())
            .count();
        if settled >= cases.len() {
            break;
        }
    }
    let elapsed = started.elapsed();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    front.abort();

    let rows = match store.workflows(Some(&practice), None, 1_000).await {
        Ok(rows) => rows,
        Err(e) => panic!(
            "seed {seed}: the workflows could not be read ({e}); the logs:\n{}",
            log_tail(&logs)
        ),
    };
    let mut wrong = Vec::new();
    for (persona, plan) in &cases {
        let expected = Expected::of(*persona);
        let of_plan: Vec<_> = rows
            .iter()
            .map(|r| &r.state)
            .filter(|s| s.key.plan_id.as_str() == plan)
            .collect();
        match of_plan.as_slice() {
            [] => wrong.push(format!(
                "plan {plan} ({}) was never detected",
                persona.name()
            )),
            [s] => {
                // One outcome note; a payment note is checked once per Stripe payment below.
                let notes = sandbox
                    .notes_containing(s.id.as_str())
                    .iter()
                    .filter(|n| !n.text.contains("received through Stripe"))
                    .count();
                if !expected.matches(s) || notes != 1 {
                    wrong.push(format!(
                        "plan {plan} ({}): {} at {} with {notes} notes, expected {} (task: {:?})",
                        persona.name(),
                        s.status.label(),
                        s.stage_label(),
                        expected.describe(),
                        s.staff_task.as_ref().map(|t| (&t.kind, &t.reason)),
                    ));
                }
            }
            more => wrong.push(format!(
                "plan {plan} ({}) started {} workflows",
                persona.name(),
                more.len()
            )),
        }
    }
    let stripe = sandbox.stripe();
    let mut problems = Vec::new();
    problems.extend(
        stripe
            .customers_per_patient()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(p, n)| format!("{n} customers for patient {p}")),
    );
    problems.extend(
        stripe
            .schedules_per_workflow()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(w, n)| format!("{n} schedules for {w}")),
    );
    problems.extend(
        stripe
            .checkout_sessions_per_workflow()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(w, n)| format!("{n} deposit links for {w}")),
    );
    problems.extend(
        stripe
            .charges_per_installment()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|((s, i), n)| format!("installment {i} of {s} charged {n} times")),
    );
    if spec.card_on_file {
        // Never a charge twice: the PaymentIntents that took (or may still take) money, per
        // workflow and purpose (deposit, copay), whatever key each attempt carried. Declined
        // attempts took nothing and do not count.
        let mut taken: std::collections::BTreeMap<(String, String), usize> =
            std::collections::BTreeMap::new();
        for pi in stripe.payment_intents() {
            let (Some(wf), Some(purpose)) = (
                pi["metadata"][stripe_schedule::WORKFLOW_KEY].as_str(),
                pi["metadata"][stripe_schedule::INSTALLMENT_KEY].as_str(),
            ) else {
                continue;
            };
            if matches!(
                pi["status"].as_str(),
                Some("succeeded" | "processing" | "requires_capture")
            ) {
                *taken
                    .entry((wf.to_owned(), purpose.to_owned()))
                    .or_default() += 1;
            }
        }
        problems.extend(
            taken
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|((w, p), n)| format!("{p} of {w} charged to the saved card {n} times")),
        );
        if !taken.keys().any(|(_, p)| p == "deposit") {
            problems.push("no deposit was charged to a saved card (card on file)".into());
        }
    }
    let noted_twice = sandbox.payments_noted_twice();
    if noted_twice > 0 {
        problems.push(format!(
            "{noted_twice} Stripe payments noted more than once"
        ));
    }
    // Emails, per patient: every message has a stable key and each email a Message-ID derived
    // from it, so an email sent twice (a resend after a kill or a lost answer mid-send) shows as
    // one Message-ID seen twice by the same recipient.
    let emails = sandbox.smtp().messages();
    let mut per_patient: std::collections::BTreeMap<(String, String), usize> =
        std::collections::BTreeMap::new();
    for email in &emails {
        let id = email.message_id.clone().unwrap_or_default();
        if id.is_empty() {
            problems.push(format!("email {} carries no Message-ID", email.id));
        }
        for to in &email.rcpt_to {
            *per_patient.entry((to.clone(), id.clone())).or_default() += 1;
        }
    }
    problems.extend(
        per_patient
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|((_, id), n)| format!("email {id} delivered {n} times to one patient")),
    );
    // Texts: each journalled as sent under exactly one message key, with the SID Twilio gave it
    // (or the one the lookup found after a lost answer). A text Twilio holds that no key claims is
    // a second send of a message. (Texts go out only inside 09:00-20:00 Chicago time.)
    let journalled = journalled_texts(&spec.database, dir.path()).await;
    let mut claims: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for sid in &journalled {
        *claims.entry(sid.as_str()).or_default() += 1;
    }
    problems.extend(
        claims
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(sid, n)| format!("text {sid} claimed by {n} messages")),
    );
    let texts = sandbox.twilio().messages();
    problems.extend(
        texts
            .iter()
            .filter(|m| !claims.contains_key(m.sid.as_str()))
            .map(|m| {
                format!(
                    "text {} sent but claimed by no message (a second send)",
                    m.sid
                )
            }),
    );
    if !wrong.is_empty() || !problems.is_empty() {
        eprintln!("chairside logs:\n{}", log_tail(&logs));
    }
    sandbox.stop().await;
    Outcome {
        kills,
        plans: cases.len(),
        wrong,
        problems,
        settled,
        emails: emails.len(),
        texts: texts.len(),
        elapsed,
    }
}

/// Whether the instances' database exists yet (the first instance creates it).
pub(super) fn spec_store_ready(database: &Database, dir: &Path) -> bool {
    match database {
        Database::Sqlite => dir.join("chairside.sqlite").exists(),
        Database::Postgres(_) => true,
    }
}

fn assert_outcome(spec: &Spec, o: &Outcome) {
    let seed = spec.seed;
    eprintln!(
        "crash run (seed {seed}, {} instance(s), {}): {} kills, {} plans, {} settled, {} emails, {} texts, {:.0} s",
        spec.instances,
        // Never the URL: it may carry a password.
        match spec.database {
            Database::Sqlite => "SQLite",
            Database::Postgres(_) => "PostgreSQL",
        },
        o.kills,
        o.plans,
        o.settled,
        o.emails,
        o.texts,
        o.elapsed.as_secs_f64()
    );
    assert!(o.kills >= spec.kills, "seed {seed}: only {} kills", o.kills);
    assert!(
        o.wrong.is_empty(),
        "seed {seed}: {} workflows off their persona's path ({} settled):\n{}",
        o.wrong.len(),
        o.settled,
        o.wrong.join("\n")
    );
    assert!(
        o.problems.is_empty(),
        "seed {seed}: invariants broken:\n{}",
        o.problems.join("\n")
    );
}

fn seed() -> u64 {
    std::env::var("CHAIRSIDE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_127)
}

/// A fresh database for the multi-instance run on the PostgreSQL server
/// `CHAIRSIDE_TEST_POSTGRES_URL` names (scripts/test.sh starts one and sets it): `None` when
/// it is not set. Returns the server's URL, the database's name and the database's URL.
async fn postgres_database() -> Option<(String, String, String)> {
    let admin = std::env::var("CHAIRSIDE_TEST_POSTGRES_URL").ok()?;
    let name = format!("chairside_crash_{}", std::process::id());
    let url = chairside_engine::store::PostgresStore::create_database(&admin, &name)
        .await
        .expect("creating a database on CHAIRSIDE_TEST_POSTGRES_URL");
    Some((admin, name, url))
}

fn single(seed: u64, faults: bool) -> Spec {
    Spec {
        seed,
        instances: 1,
        plans: 50,
        kills: 22,
        faults,
        database: Database::Sqlite,
        // With faults on, an email the SMTP sink answers with silence holds its step 40 s.
        deadline: Duration::from_secs(360),
        lease_secs: 5,
        // The run with faults is a card-on-file practice: off-session charges under lost
        // Stripe answers and kills.
        card_on_file: faults,
    }
}

/// Three instances, 30+ kills. On PostgreSQL the issue's 100 plans. On SQLite 40: three processes
/// share one writer lock on the file (each commit synced), and on a 2-CPU machine busy with
/// other builds 100 plans took over seven minutes; the kills, faults and invariants are the same.
/// The longer lease keeps the renewals of 24 claims in flight from crowding that one lock.
fn three(seed: u64, database: Database) -> Spec {
    let (plans, deadline) = match database {
        Database::Sqlite => (40, 480),
        Database::Postgres(_) => (100, 600),
    };
    Spec {
        seed,
        instances: 3,
        plans,
        kills: 32,
        faults: true,
        database,
        deadline: Duration::from_secs(deadline),
        lease_secs: 15,
        card_on_file: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_service_at_random_moments_loses_and_doubles_nothing() {
    let spec = single(seed(), false);
    let outcome = crash_run(&spec).await;
    assert_outcome(&spec, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_service_with_faults_on_loses_and_doubles_nothing() {
    let spec = single(seed() + 1, true);
    let outcome = crash_run(&spec).await;
    assert_outcome(&spec, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_sqlite_file_killed_at_random_lose_and_double_nothing() {
    let spec = three(seed() + 2, Database::Sqlite);
    let outcome = crash_run(&spec).await;
    assert_outcome(&spec, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_postgres_database_killed_at_random_lose_and_double_nothing() {
    let Some((admin, name, url)) = postgres_database().await else {
        // scripts/with-postgres.sh (scripts/test.sh) sets both: there it must run.
        assert!(
            std::env::var_os("CHAIRSIDE_REQUIRE_POSTGRES").is_none(),
            "CHAIRSIDE_REQUIRE_POSTGRES is set but CHAIRSIDE_TEST_POSTGRES_URL is not"
        );
        eprintln!("CHAIRSIDE_TEST_POSTGRES_URL is not set: the PostgreSQL run is skipped");
        return;
    };
    let spec = three(seed() + 3, Database::Postgres(url));
    let outcome = crash_run(&spec).await;
    let _ = chairside_engine::store::PostgresStore::drop_database(&admin, &name).await;
    assert_outcome(&spec, &outcome);
}
