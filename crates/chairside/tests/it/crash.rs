//! Crash runs: the real `chairside` binary in `run` mode against the sandbox, killed with SIGKILL
//! at seeded random moments and restarted, until every plan has reached its end. Then the
//! invariants: every plan ended where its persona says, one Stripe customer per patient, at most
//! one schedule and one deposit link per workflow, no installment charged twice, exactly one
//! outcome note per workflow.

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
use sandbox::{Fault, FaultRule, Persona, Pms, Sandbox, SandboxConfig, System, WebhookDelivery};

const DATA_KEY: &str = "7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";
const LINK_KEY: &str = "crash-test-patient-link-key-0123456789";
const PRACTICE: &str = "lone-star-dental";

/// Personas whose ends the service learns by polling or by webhooks the sandbox retries.
const PERSONAS: [Persona; 6] = [
    Persona::InstantApproval,
    Persona::DeclineFirstApproveSecond,
    Persona::PendingThenApproved { polls: 2 },
    Persona::NoSmsConsent,
    Persona::InsuranceAboveFee,
    Persona::ReturningCardholderEnough,
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn config_toml(dir: &Path, sandbox: &Sandbox, port: u16) -> String {
    let u = sandbox.urls();
    let c = sandbox.config();
    format!(
        r#"
[store]
path = "{db}"
data_key_env = "CHAIRSIDE_DATA_KEY"

[runner]
owner = "crash-test"
lease_secs = 5
concurrency = 8
poll_interval_secs = 1

[http]
listen = "127.0.0.1:{port}"
public_base_url = "http://127.0.0.1:{port}/"
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

[practices.reminders]
delays = ["6s", "6s"]
give_up_after = "6s"
poll_interval = "1s"

[practices.policy]
prefill_approved_by_counsel = true
"#,
        db = dir.join("chairside.sqlite").display(),
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

fn spawn(binary: &Path, config: &Path, sandbox: &Sandbox, log: &Path) -> Child {
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
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the chairside binary starts")
}

struct Outcome {
    kills: u32,
    wrong: Vec<String>,
    problems: Vec<String>,
    settled: usize,
}

async fn crash_run(seed: u64, faults: bool) -> Outcome {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/");
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
    }
    let sandbox = Sandbox::start(cfg).await.expect("sandbox starts");
    let config = dir.path().join("chairside.toml");
    let mut toml = config_toml(dir.path(), &sandbox, port);
    if faults {
        // Card on file: deposits charged off-session while Stripe loses answers (never twice).
        toml = toml.replace(
            "installments = 6\n",
            "installments = 6\npreference = \"card_on_file\"\n",
        );
    }
    std::fs::write(&config, toml).expect("config written");

    let binary = PathBuf::from(env!("CARGO_BIN_EXE_chairside"));
    let log = dir.path().join("chairside.log");
    let store = SqliteStore::open(
        &dir.path().join("chairside.sqlite"),
        DataKey::parse(DATA_KEY).expect("key"),
    )
    .await
    .expect("store");
    let practice = PracticeId::new(PRACTICE);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0;
    let started = Instant::now();
    let mut child = spawn(&binary, &config, &sandbox, &log);
    // A fresh install starts from now: its first poll records the baseline, and only plans
    // accepted after it are started. Seed once the service has taken it.
    let baseline_by = Instant::now() + Duration::from_secs(60);
    loop {
        let health = store.detection_health().await.unwrap_or_default();
        if health.iter().any(|h| h.baseline_at.is_some()) {
            break;
        }
        assert!(
            Instant::now() < baseline_by,
            "seed {seed}: the service took no baseline within a minute; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut cases = Vec::new();
    for i in 0..50 {
        let persona = PERSONAS[i % PERSONAS.len()];
        let seeded = sandbox.seed_persona(Pms::Dentrix, persona).expect("seeded");
        sandbox.accept_plan(seeded.plan.key).expect("accepted");
        cases.push((persona, seeded.plan.pms_id.clone()));
    }
    while kills < 22 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1_800))).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        kills += 1;
        child = spawn(&binary, &config, &sandbox, &log);
    }
    // Let the last one finish everything.
    let mut settled = 0;
    while started.elapsed() < Duration::from_secs(180) {
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
    let _ = child.kill();
    let _ = child.wait();

    let rows = match store.workflows(Some(&practice), None, 1_000).await {
        Ok(rows) => rows,
        Err(e) => panic!(
            "seed {seed}: the service never created its database ({e}); its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
    };
    let mut wrong = Vec::new();
    for (persona, plan) in &cases {
        let expected = Expected::of(*persona);
        match rows
            .iter()
            .map(|r| &r.state)
            .find(|s| s.key.plan_id.as_str() == plan)
        {
            None => wrong.push(format!(
                "plan {plan} ({}) was never detected",
                persona.name()
            )),
            Some(s) => {
                // One outcome note; a payment note (a deposit charged to the saved card) is
                // checked once per Stripe payment below.
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
    let mut payment_notes: std::collections::BTreeMap<String, usize> =
        std::collections::BTreeMap::new();
    for note in sandbox.notes_containing("received through Stripe (") {
        if let Some(id) = note.text.split("received through Stripe (").nth(1) {
            let id = id.split(')').next().unwrap_or_default().to_owned();
            *payment_notes.entry(id).or_default() += 1;
        }
    }
    problems.extend(
        payment_notes
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, n)| format!("payment {id} noted {n} times")),
    );
    if faults
        && !stripe
            .charges_per_installment()
            .keys()
            .any(|(_, i)| i == "deposit")
    {
        problems.push("no deposit was charged to a saved card (card on file)".into());
    }
    // Messages: every message has a stable key and each email a Message-ID derived from it, so
    // an email sent twice (a resend after a kill mid-send) shows as a Message-ID seen twice.
    let mut per_id: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for email in sandbox.smtp().messages() {
        if let Some(id) = email.message_id {
            *per_id.entry(id).or_default() += 1;
        }
    }
    problems.extend(
        per_id
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, n)| format!("email {id} delivered {n} times")),
    );
    // Texts: each journalled as sent under exactly one message key, with the SID Twilio gave it
    // (or the one the lookup found after a lost answer). A text Twilio holds that no key claims is
    // a second send of a message. (Texts go out only inside 09:00-20:00 Chicago time.)
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("chairside.sqlite").display()
    ))
    .await
    .expect("the database");
    let journalled: Vec<String> = sqlx::query_scalar(
        "SELECT provider_id FROM message_sends WHERE channel = 'sms' AND state = 'sent'
         AND provider_id IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    pool.close().await;
    let texts = sandbox.twilio().messages();
    problems.extend(
        texts
            .iter()
            .filter(|m| !journalled.contains(&m.sid))
            .map(|m| {
                format!(
                    "text {} sent but claimed by no message (a second send)",
                    m.sid
                )
            }),
    );
    if !wrong.is_empty() || !problems.is_empty() {
        eprintln!(
            "chairside log:\n{}",
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    sandbox.stop().await;
    Outcome {
        kills,
        wrong,
        problems,
        settled,
    }
}

fn assert_outcome(seed: u64, o: &Outcome) {
    assert!(o.kills >= 20, "seed {seed}: only {} kills", o.kills);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_service_at_random_moments_loses_and_doubles_nothing() {
    let seed = seed();
    let outcome = crash_run(seed, false).await;
    assert_outcome(seed, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_service_with_faults_on_loses_and_doubles_nothing() {
    let seed = seed() + 1;
    let outcome = crash_run(seed, true).await;
    assert_outcome(seed, &outcome);
}
