//! The whole chain over real HTTP: the sandbox's stand-ins, the real clients, the store and the
//! runner. Every persona must reach its expected end, and the sandbox's invariants must hold
//! (one customer per patient, one schedule per workflow, one ledger note per outcome, no patient
//! data sent to lenders from California), with and without injected faults.

use std::path::PathBuf;
use std::time::Duration;

use chairside::demo::report;
use chairside::demo::world::{Expected, World, WorldOptions};
use sandbox::{Fault, FaultRule, SandboxConfig, System};

/// Every Stripe request the sandbox received goes where CI's conformance check reads it.
fn request_log(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/stripe-requests");
    std::fs::create_dir_all(&dir).expect("target directory is writable");
    dir.join(format!("{name}-{}.jsonl", std::process::id()))
}

async fn run_demo_spread(
    sandbox: SandboxConfig,
    name: &str,
    reminder_every: Duration,
) -> (Vec<chairside::demo::Row>, Vec<String>, bool) {
    run_demo_spread_on(sandbox, name, reminder_every, None).await
}

/// [`run_demo_spread`] on the PostgreSQL database `postgres` names (`None`: a SQLite file).
async fn run_demo_spread_on(
    mut sandbox: SandboxConfig,
    name: &str,
    reminder_every: Duration,
    postgres: Option<String>,
) -> (Vec<chairside::demo::Row>, Vec<String>, bool) {
    sandbox.stripe.request_log = Some(request_log(name));
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = WorldOptions {
        sandbox,
        reminder_every,
        postgres: postgres.map(secrecy::SecretString::from),
        ..WorldOptions::default()
    };
    let mut world = World::start(dir.path(), options)
        .await
        .expect("world starts");
    world.seed_demo().expect("seeding");
    let settled = world.drive(Duration::from_secs(90)).await.expect("driving");
    let (rows, mut problems) = report(&world).await.expect("report");
    // The audit trail of every workflow off its persona's path (no patient data in it): what a
    // failure needs to be explained.
    for case in &world.cases {
        let Some(state) = world.workflow_of(case).await.expect("reading a workflow") else {
            continue;
        };
        if Expected::of(case.persona).matches(&state) {
            continue;
        }
        let trail = world
            .store
            .audit(&state.id)
            .await
            .expect("reading the audit");
        let lines: Vec<String> = trail
            .iter()
            .map(|a| {
                format!(
                    "  {} {} {}: {}",
                    a.at.format("%H:%M:%S%.3f"),
                    a.actor,
                    a.kind,
                    a.detail
                )
            })
            .collect();
        problems.push(format!(
            "{} ({}) audit:\n{}",
            state.id,
            case.persona.name(),
            lines.join("\n")
        ));
    }
    world.stop().await;
    (rows, problems, settled)
}

fn assert_every_persona_as_expected(
    rows: &[chairside::demo::Row],
    problems: &[String],
    settled: bool,
) {
    let wrong: Vec<String> = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| {
            format!(
                "{} ({}): got {} with {} notes, expected {}; lenders: {}",
                r.plan, r.persona, r.path, r.notes, r.expected, r.lenders
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "workflows off their persona's path:\n{}\n{}",
        wrong.join("\n"),
        problems.join("\n")
    );
    assert!(
        problems.is_empty(),
        "invariants broken:\n{}",
        problems.join("\n")
    );
    assert!(settled, "every workflow settled");
    // The demo's seeded plans: the personas at three practices, a Cherry (link-only) plan, and
    // two plans booked for treatment today (collection).
    assert_eq!(rows.len(), 17, "every seeded plan has a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_persona_reaches_its_end_over_real_http() {
    // Arrange + Act
    let (rows, problems, settled) = run_demo_spread(
        SandboxConfig::default(),
        "chain-clean",
        WorldOptions::default().reminder_every,
    )
    .await;

    // Assert
    assert_every_persona_as_expected(&rows, &problems, settled);
    let financed: Vec<_> = rows.iter().filter(|r| r.financed != "-").collect();
    assert!(!financed.is_empty(), "the demo finances plans");
    assert!(
        financed.iter().all(|r| r.o2l.is_some()),
        "operatory-to-ledger time is recorded for every financed plan"
    );
}

/// Rate limits, server errors and lost responses on every system the runner calls.
fn faulty_sandbox() -> SandboxConfig {
    let mut config = SandboxConfig {
        seed: 11,
        ..SandboxConfig::default()
    };
    let rules = |p: f64| {
        vec![
            FaultRule::new(Fault::too_many_requests(1)).probability(p),
            FaultRule::new(Fault::status(503)).probability(p),
            FaultRule::new(Fault::status(500))
                .on("GET", "/")
                .probability(p),
        ]
    };
    for system in [
        System::Stripe,
        System::Dentrix,
        System::OpenDental,
        System::NexHealth,
        System::CareCredit,
        System::Sunbit,
        System::Twilio,
    ] {
        config.faults.insert(system, rules(0.08));
    }
    // The hardest case for exactly-once: Stripe applies the request, then the response is lost.
    config
        .faults
        .get_mut(&System::Stripe)
        .expect("stripe rules")
        .push(
            FaultRule::new(Fault::applied_then_reset())
                .on("POST", "/v1/")
                .probability(0.15),
        );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_change_nothing_about_where_workflows_end() {
    // Arrange: rate limits, server errors and lost responses on every system the runner calls.
    let config = faulty_sandbox();

    // Act
    // Retries stretch every step, so the patient gets longer before reminders run out (the
    // compressed reminder schedule is the only clock here).
    let (rows, problems, settled) =
        run_demo_spread(config, "chain-faults", Duration::from_secs(3)).await;

    // Assert
    assert_every_persona_as_expected(&rows, &problems, settled);
}

/// The PostgreSQL test server (`scripts/with-postgres.sh`, which `scripts/test.sh` uses), or
/// `None` after saying on the terminal that the PostgreSQL chain did not run. Fails instead
/// under `CHAIRSIDE_REQUIRE_POSTGRES=1`.
fn postgres_server() -> Option<String> {
    use std::io::Write as _;
    if let Ok(url) = std::env::var("CHAIRSIDE_TEST_POSTGRES_URL")
        && !url.is_empty()
    {
        return Some(url);
    }
    assert!(
        std::env::var("CHAIRSIDE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "CHAIRSIDE_REQUIRE_POSTGRES=1 but CHAIRSIDE_TEST_POSTGRES_URL is not set"
    );
    // Straight to the terminal, past the test harness's capture.
    let _ = writeln!(
        std::io::stderr(),
        "NOTE: the chain on PostgreSQL did NOT run (CHAIRSIDE_TEST_POSTGRES_URL is not set); \
         run it with scripts/with-postgres.sh cargo test -p chairside-tests --test it chain"
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_persona_reaches_its_end_on_postgresql_with_faults() {
    // Arrange: a fresh database on the test server, and the sandbox's faults on (as the SQLite
    // run with faults above).
    let Some(server) = postgres_server() else {
        return;
    };
    let name = format!("chairside_chain_{}", std::process::id());
    let url = chairside_engine::store::PostgresStore::create_database(&server, &name)
        .await
        .expect("creating the chain's database");
    let sandbox = faulty_sandbox();

    // Act
    let (rows, problems, settled) =
        run_demo_spread_on(sandbox, "chain-postgres", Duration::from_secs(3), Some(url)).await;

    // Assert
    assert_every_persona_as_expected(&rows, &problems, settled);
    chairside_engine::store::PostgresStore::drop_database(&server, &name)
        .await
        .expect("dropping the chain's database");
}
