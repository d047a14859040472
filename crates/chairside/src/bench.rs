//! `chairside bench`: plans through the sandbox at zero added latency and at a realistic latency
//! profile, and workflows parked waiting on patients, with the figures that say what Chairside
//! costs to run.
//!
//! The sandbox runs as a separate process (the `sandbox` binary, started with `--admin`), so the
//! CPU time measured here is the orchestrator's alone: the runner, the store, the clients and the
//! HTTP surface that receives the sandbox's webhooks and serves the patient pages. Every figure
//! is measured from the moment the plans are seeded and accepted in the practice systems.
//!
//! Not a timed test: nothing here asserts on speed. The exit code only says whether every
//! workflow ended where its persona says and the sandbox's invariants held. The recorded figures,
//! the machine and what they mean are in `docs/performance.md`.

mod floor;

pub use floor::FloorFigures;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use sandbox::{Persona, SandboxConfig, SandboxUrls, SeededCase, System};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt as _;
use url::Url;

use crate::demo::world::{Expected, PRACTICES, Stack, Surface, WorldOptions};
use chairside_engine::runner::LagSnapshot;
use chairside_engine::store::PostgresStore;
use chairside_workflow::{LenderPhase, Stage, WorkflowState};

/// A latency profile of the external systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Every stand-in answers as fast as it can (loopback).
    Zero,
    /// Practice systems and Twilio 200 ms, CareCredit and Sunbit 800 ms, Stripe 300 ms, added
    /// to every request.
    Realistic,
}

impl Profile {
    /// The added latency per system, in milliseconds.
    pub fn latencies(self) -> &'static [(System, u64)] {
        match self {
            Self::Zero => &[],
            Self::Realistic => &[
                (System::Dentrix, 200),
                (System::NexHealth, 200),
                (System::OpenDental, 200),
                (System::CareCredit, 800),
                (System::Sunbit, 800),
                (System::Stripe, 300),
                (System::Twilio, 200),
            ],
        }
    }

    /// `zero` or `realistic`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zero => "zero",
            Self::Realistic => "realistic",
        }
    }
}

/// Options of `chairside bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Plans to run to their end in each latency profile (0 skips this part).
    #[arg(long, default_value_t = 300)]
    pub plans: usize,
    /// Latency profiles to run, comma-separated: zero (loopback as is), realistic (practice
    /// systems and SMS 200 ms, lenders 800 ms, Stripe 300 ms).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "zero,realistic"
    )]
    pub profiles: Vec<Profile>,
    /// Workflows to park waiting on patients who never answer (0 skips this part).
    #[arg(long, default_value_t = 10_000)]
    pub parked: usize,
    /// Patient personas, comma-separated, given to the plans in turn (plans go to the three demo
    /// practices in turn too). The default's outcomes are the same at every demo practice;
    /// `partial_approval` ends differently behind NexHealth, which reports no insurance estimates.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "instant_approval,decline_first_approve_second,decline_everywhere,pending_then_approved"
    )]
    pub personas: Vec<String>,
    /// Workflows the runner works on at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds between reminders to a patient who has not finished an application (and before
    /// giving up after the last). Long by default, so that no persona that answers is reminded.
    #[arg(long, default_value_t = 60)]
    pub reminder_secs: u64,
    /// How often the practice systems are asked for newly accepted plans, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub pms_poll_ms: u64,
    /// Give up on one part of the benchmark after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// The `sandbox` binary (default: the one next to this program, as `cargo build --release
    /// --bin chairside --bin sandbox` leaves them).
    #[arg(long)]
    pub sandbox_bin: Option<PathBuf>,
    /// How SQLite commits reach the disk: full (synced on every commit, survives a power loss;
    /// what `chairside run` uses) or normal (WAL's usual setting), to measure what full costs.
    #[arg(long, value_enum, default_value = "full")]
    pub sync: SyncMode,
    /// Directory for the SQLite files (a temporary directory when omitted).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run on PostgreSQL instead of SQLite: the URL of a server and a role that may create
    /// databases (`postgres://user@host:5432/postgres`). Each part of the benchmark runs in a
    /// fresh database created there (`chairside_bench_*`, dropped after). `--sync` then sets
    /// `synchronous_commit` (full: on, normal: off).
    #[arg(long, value_name = "URL", env = "CHAIRSIDE_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Runner instances working the same plans on one PostgreSQL database (needs
    /// `--database-url`): each a whole Chairside (its own pool of connections, runner, practice
    /// pollers and HTTP surface) in this process, behind a loopback front that hands each
    /// connection (the sandbox's webhooks, the patients' pages) to the next instance in turn.
    /// Each practice is polled by one instance (practice i by instance i mod N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub instances: u16,
    /// Also measure the floor under the CPU per external call on this machine: one bare HTTP
    /// round trip to the sandbox over loopback and one bare durable SQLite commit, with nothing
    /// of Chairside around them (the figures to read Chairside's against; runs on PostgreSQL are
    /// not compared with it), and a usual step through the SQLite store alone. Measured after
    /// each round of runs (`--repeat`), and each run read against its own round's: the host's
    /// speed moves within minutes, and moves a run's CPU and its floor alike.
    #[arg(long)]
    pub floor: bool,
    /// Durable commits the floor measures; it makes twice as many HTTP round trips and about as
    /// many usual steps through the store per measurement.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(16..))]
    pub floor_commits: u64,
    /// Also print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Run each latency profile this many times, the profiles in turn (zero, realistic, zero,
    /// ...), and print the median and range over the runs of the figures that move from run to
    /// run, as well as every run: one run's CPU per call moves by up to a tenth from one run to
    /// the next on the same tree. Peak memory is the first run's (later runs begin with what the
    /// earlier ones left allocated).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub repeat: u32,
}

impl Default for BenchArgs {
    /// The command line's defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: BenchArgs,
        }
        <Defaults as clap::Parser>::parse_from(["bench"]).args
    }
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// The CPU model, as `/proc/cpuinfo` names it.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
}

/// The figures of one latency profile.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// The profile.
    pub profile: Profile,
    /// Plans seeded and accepted.
    pub workflows: usize,
    /// Workflows that settled (done, with staff, or cancelled) before the timeout.
    pub settled: usize,
    /// Workflows that ended where their persona says.
    pub as_expected: usize,
    /// Workflows with exactly one ledger note in their practice system.
    pub with_one_note: usize,
    /// Broken sandbox invariants (duplicate Stripe objects, compliance violations).
    pub problems: Vec<String>,
    /// Workflows that ended off their persona's path (practice, persona, where it ended).
    pub off_path: Vec<String>,
    /// From seeding to the last ledger note, seconds.
    pub elapsed_s: f64,
    /// Workflows per second over `elapsed_s`.
    pub workflows_per_s: f64,
    /// Operatory-to-ledger time (plan accepted in the practice system to ledger note written, by
    /// this process's clock), median, ms.
    pub o2l_p50_ms: f64,
    /// Operatory-to-ledger time, 99th percentile, ms.
    pub o2l_p99_ms: f64,
    /// Operatory-to-ledger time, mean, ms.
    pub o2l_mean_ms: f64,
    /// Workflows whose patient received a message (email or text, from the sandbox's SMTP and
    /// Twilio records).
    pub reached_patient: usize,
    /// Emails the patients received (the sandbox's SMTP sink).
    pub emails: usize,
    /// Texts the patients received (the sandbox's Twilio): the demo practices run in a time zone
    /// where it is daytime, so consenting patients are texted and Twilio's latency is paid.
    pub texts: usize,
    /// Operatory-to-patient time (plan accepted in the practice system to the first message the
    /// patient receives, as the sandbox's SMTP sink and Twilio stand-in recorded it), median, ms.
    pub o2p_p50_ms: f64,
    /// Operatory-to-patient time, 99th percentile, ms.
    pub o2p_p99_ms: f64,
    /// Operatory-to-patient time, mean, ms.
    pub o2p_mean_ms: f64,
    /// External calls made for the workflows (through the ports: one call may be several HTTP
    /// requests, a token refresh or a retry).
    pub external_calls: u64,
    /// Calls made polling the practice systems for accepted plans.
    pub poll_calls: u64,
    /// Time the workflows spent waiting on external calls, per workflow, ms.
    pub external_wait_per_workflow_ms: f64,
    /// Mean operatory-to-ledger time minus the external wait per workflow, ms: the orchestrator's
    /// own work, queueing for a runner slot, timers (lender status polls) and the patient.
    pub not_external_per_workflow_ms: f64,
    /// Workflow steps committed.
    pub steps: u64,
    /// This process's user + system CPU time during the run, ms.
    pub cpu_ms: f64,
    /// CPU time per workflow, ms.
    pub cpu_per_workflow_ms: f64,
    /// CPU time per external call (workflow calls and polls), ms.
    pub cpu_per_external_call_ms: f64,
    /// Chairside's own CPU: the threads of the runtime the instances run on (HTTP surface,
    /// runner, pollers, dispatcher, HTTP clients), the store's thread and sqlx's threads, to the
    /// nanosecond from the scheduler's statistics (`cpu_ms` counts clock ticks of 10 ms, so the
    /// two differ by a few ticks either way), ms.
    pub chairside_cpu_ms: f64,
    /// Of `cpu_ms`, the benchmark's own threads (its runtime, the main thread): seeding, the
    /// settle checks, the tallies, ms.
    pub harness_cpu_ms: f64,
    /// `chairside_cpu_ms` per external call (workflow calls and polls), ms.
    pub chairside_cpu_per_external_call_ms: f64,
    /// Of `cpu_ms`, the time on SQLite's threads (sqlx runs each connection on its own; the
    /// SQLite store's own thread runs the runner's transactions), ms.
    pub sqlite_cpu_ms: f64,
    /// The sandbox process's CPU time during the run, ms (for comparison; not ours).
    pub sandbox_cpu_ms: f64,
    /// Store write transactions, the practice-system polls' cursor writes left out.
    pub write_transactions: u64,
    /// Write transactions per workflow.
    pub writes_per_workflow: f64,
    /// Write transactions per external call of the workflows (polls left out of both).
    pub writes_per_external_call: f64,
    /// Durable commits (syncs), the polls' cursor writes left out: a group commit of several
    /// write transactions counts once ([`StoreCounters::commits`](chairside_engine::store::StoreCounters)).
    pub commits: u64,
    /// Durable commits per external call of the workflows.
    pub commits_per_external_call: f64,
    /// Write transactions by the place in the store's code that committed them
    /// (`sqlite/links.rs:61`), the polls' cursor writes included, most first.
    pub writes_by_site: Vec<(String, u64)>,
    /// This process's peak resident memory during the run (`VmHWM`), MiB.
    pub peak_rss_mib: f64,
    /// Claims made (a workflow taken by a runner when it came due: created, a webhook, a timer,
    /// a retry), every instance's.
    pub claims: u64,
    /// How long after coming due a workflow was claimed, mean, ms.
    pub claim_lag_mean_ms: f64,
    /// The bound (of the runner's histogram buckets) under which half the claims came, ms.
    pub claim_lag_p50_ms: Option<u64>,
    /// The bound under which 99 % of the claims came, ms (`None`: past the last bucket, 5 s).
    pub claim_lag_p99_ms: Option<u64>,
    /// The latest claim, ms after its workflow came due.
    pub claim_lag_max_ms: f64,
    /// Claims made 100 ms or more after their workflow came due.
    pub claims_late: u64,
    /// The floor of one external call with this run's transactions (`FloorFigures::per_call_us`),
    /// ms, from the floor measured right after this run's round (`--floor`, SQLite only): the
    /// host's speed in the same minute as the run. `None` without it.
    pub floor_per_call_ms: Option<f64>,
}

impl RunFigures {
    /// Chairside's CPU per external call over the floor of its round (`floor_per_call_ms`): how
    /// many times the bare work the run's calls cost. The host's speed moves both alike, so this
    /// moves far less from run to run than the CPU per call does (docs/performance.md).
    pub fn over_floor(&self) -> Option<f64> {
        self.floor_per_call_ms
            .filter(|f| *f > 0.0)
            .map(|f| self.chairside_cpu_per_external_call_ms / f)
    }
}

/// The figures of the parked workflows.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedFigures {
    /// Plans seeded for patients who never answer.
    pub seeded: usize,
    /// Workflows found waiting on the patient at the end.
    pub awaiting_patient: usize,
    /// From seeding until the last of them was parked, seconds.
    pub elapsed_s: f64,
    /// This process's CPU time parking them, ms.
    pub cpu_ms: f64,
    /// Resident memory before seeding, MiB.
    pub rss_before_mib: f64,
    /// Resident memory with every workflow parked, MiB.
    pub rss_after_mib: f64,
    /// Peak resident memory while parking them, MiB.
    pub peak_rss_mib: f64,
    /// The SQLite database (with its WAL) before seeding, MiB.
    pub sqlite_before_mib: f64,
    /// The SQLite database (with its WAL) with every workflow parked, MiB.
    pub sqlite_after_mib: f64,
    /// The sandbox process's resident memory at the end, MiB (for comparison; not ours).
    pub sandbox_rss_mib: f64,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Where.
    pub machine: Machine,
    /// The runner's concurrency (per instance).
    pub concurrency: usize,
    /// Runner instances on one database.
    pub instances: usize,
    /// The personas given to the plans, in turn.
    pub personas: Vec<String>,
    /// One per latency profile.
    pub runs: Vec<RunFigures>,
    /// The parked workflows, unless skipped.
    pub parked: Option<ParkedFigures>,
    /// The floor under the CPU per external call (`--floor`): one measured after each round of
    /// runs (`--repeat`), so that each run is read against the host as it was in its minute;
    /// one alone when no plans ran. Empty without `--floor`.
    pub floors: Vec<FloorFigures>,
}

impl BenchReport {
    /// Whether every workflow ended where its persona says with one ledger note, no invariant
    /// broke, and every parked workflow was found waiting on its patient.
    pub fn all_as_expected(&self) -> bool {
        self.runs.iter().all(|r| {
            r.as_expected == r.workflows && r.with_one_note == r.workflows && r.problems.is_empty()
        }) && self
            .parked
            .as_ref()
            .is_none_or(|p| p.awaiting_patient == p.seeded)
    }
}

/// Runs the benchmark and prints its table. Returns the process exit code: 0 when every workflow
/// ended where its persona says (see [`BenchReport::all_as_expected`]); speed never fails it.
///
/// # Errors
/// The sandbox could not be found or started, the store could not be opened, or a part of the
/// benchmark did not finish before `--timeout-secs`.
pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let report = measure(&args).await?;
    print(&report, &args);
    Ok(if report.all_as_expected() { 0 } else { 1 })
}

/// Runs the benchmark and returns its figures without printing them.
///
/// # Errors
/// As [`run`].
pub async fn measure(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let personas = args
        .personas
        .iter()
        .map(|name| {
            Persona::ALL
                .into_iter()
                .find(|p| p.name() == name.trim())
                .with_context(|| format!("--personas: unknown persona '{name}'"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        !personas.is_empty(),
        "--personas: name at least one persona"
    );
    anyhow::ensure!(
        args.instances <= 1 || args.database_url.is_some(),
        "--instances {}: several instances share one PostgreSQL database; give --database-url",
        args.instances
    );
    let exe = std::env::current_exe().context("locating this program")?;
    let bin = sandbox_binary(args.sandbox_bin.as_deref(), &exe)?;
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().context("temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("http client")?;
    let mut runs: Vec<RunFigures> = Vec::new();
    let mut floors = Vec::new();
    let profiles = if args.plans == 0 {
        &[][..]
    } else {
        &args.profiles[..]
    };
    // Round after round of every profile, so that a drift of the machine over the minutes
    // touches each profile's runs alike; the floor (`--floor`) after each round, so that each
    // run is read against the host's speed of its own minute (it halves and doubles within an
    // hour here: docs/performance.md).
    let rounds = if profiles.is_empty() {
        0
    } else {
        args.repeat.max(1)
    };
    for round in 1..=rounds {
        let first = runs.len();
        for profile in profiles {
            tracing::info!(
                profile = profile.name(),
                plans = args.plans,
                round,
                "running plans through the sandbox"
            );
            let run_dir = if args.repeat > 1 {
                dir.join(format!("{}-{round}", profile.name()))
            } else {
                dir.join(profile.name())
            };
            std::fs::create_dir_all(&run_dir).context("run directory")?;
            runs.push(run_profile(args, *profile, &personas, &bin, &run_dir, &http).await?);
        }
        if args.floor {
            let floor = measure_floor(args, &bin, &dir, round).await?;
            // The commit floor is SQLite's: runs on PostgreSQL are not read against it.
            if args.database_url.is_none() {
                for run in &mut runs[first..] {
                    run.floor_per_call_ms = Some(
                        floor.per_call_us(
                            run.writes_per_external_call,
                            run.commits_per_external_call,
                        ) / 1000.0,
                    );
                }
            }
            floors.push(floor);
        }
    }
    if args.floor && rounds == 0 {
        floors.push(measure_floor(args, &bin, &dir, 1).await?);
    }
    let parked = if args.parked > 0 {
        tracing::info!(
            workflows = args.parked,
            "parking workflows on patients who never answer"
        );
        let run_dir = dir.join("parked");
        std::fs::create_dir_all(&run_dir).context("run directory")?;
        Some(run_parked(args, &bin, &run_dir, &http).await?)
    } else {
        None
    };
    Ok(BenchReport {
        machine: machine(),
        concurrency: args.concurrency,
        instances: usize::from(args.instances),
        personas: personas.iter().map(|p| p.name().to_owned()).collect(),
        runs,
        parked,
        floors,
    })
}

/// The floor (`--floor`) of round `round`, in its own directory.
async fn measure_floor(
    args: &BenchArgs,
    bin: &Path,
    dir: &Path,
    round: u32,
) -> anyhow::Result<FloorFigures> {
    tracing::info!(
        round,
        "measuring the floor: bare HTTP round trips and durable commits"
    );
    let run_dir = if args.repeat > 1 {
        dir.join(format!("floor-{round}"))
    } else {
        dir.join("floor")
    };
    std::fs::create_dir_all(&run_dir).context("run directory")?;
    floor::measure(bin, &run_dir, args.floor_commits).await
}

/// The demo world's options for a benchmark run.
fn world_options(args: &BenchArgs) -> WorldOptions {
    WorldOptions {
        concurrency: args.concurrency.max(1),
        reminder_every: Duration::from_secs(args.reminder_secs),
        durability: args.sync.durability(),
        // The lenders' shipped schedules (CareCredit read every 5 s at first, Sunbit every 10 s
        // behind its webhook), not the demo's compressed day: the figures are real timings.
        shipped_lender_schedules: true,
        // Texts go out only from 09:00 to 20:00 where the patient is: run the practices where it
        // is daytime now, so the consenting personas are texted and the figures pay Twilio.
        time_zone: Some(daytime_zone(chrono::Utc::now())),
        // No front desk records a link-only lender's decisions here: the practices' waterfalls
        // stay CareCredit then Sunbit, as the figures have always measured.
        link_only_lender: false,
        ..WorldOptions::default()
    }
}

/// A time zone where `now` is between 10:00 and 17:00 (room for a long run inside the texting
/// window): Chicago when it is daytime there, else the fixed offset that puts `now` at 13:00.
pub fn daytime_zone(now: chrono::DateTime<chrono::Utc>) -> chrono_tz::Tz {
    use chrono::Timelike as _;
    let chicago = chrono_tz::America::Chicago;
    if (10..17).contains(&now.with_timezone(&chicago).hour()) {
        return chicago;
    }
    // Etc/GMT+N is N hours behind UTC (the POSIX sign), from Etc/GMT-14 to Etc/GMT+12.
    let behind = (i64::from(now.hour()) - 13).rem_euclid(24);
    let behind = if behind > 12 { behind - 24 } else { behind };
    let name = match behind {
        0 => "Etc/GMT".to_owned(),
        b if b > 0 => format!("Etc/GMT+{b}"),
        b => format!("Etc/GMT{b}"),
    };
    name.parse().unwrap_or(chicago)
}

/// `--sync`: SQLite's `synchronous` setting for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// Synced on every commit (`synchronous = FULL`).
    Full,
    /// WAL's usual setting (`synchronous = NORMAL`).
    Normal,
}

impl SyncMode {
    fn durability(self) -> chairside_engine::store::Durability {
        match self {
            Self::Full => chairside_engine::store::Durability::Full,
            Self::Normal => chairside_engine::store::Durability::Normal,
        }
    }
}

/// Counters of this process and the runner at one moment.
#[derive(Debug, Clone)]
struct Snapshot {
    cpu: Duration,
    /// Each thread of this process now running, with its name and CPU time: what the threads
    /// that run Chairside (its runtime's, the store's, sqlx's) used between two snapshots is
    /// read from them thread by thread ([`proc::ThreadTimes::grown_since`]).
    threads: proc::ThreadTimes,
    sandbox_cpu: Duration,
    calls: u64,
    nanos: u64,
    steps: u64,
    writes: u64,
    commits: u64,
    lag: LagSnapshot,
}

impl Snapshot {
    /// Every instance's counters added up (they run in this process: its CPU is all of theirs).
    fn take(stacks: &[Stack], sandbox: &SandboxProcess) -> Self {
        let mut snapshot = Self {
            cpu: proc::cpu_time("self").unwrap_or_default(),
            threads: proc::ThreadTimes::now(),
            sandbox_cpu: sandbox.cpu_time().unwrap_or_default(),
            calls: 0,
            nanos: 0,
            steps: 0,
            writes: 0,
            commits: 0,
            lag: LagSnapshot::default(),
        };
        for stack in stacks {
            let stats = stack.runner.stats();
            snapshot.calls += stats.external_calls.load(Ordering::Relaxed);
            snapshot.nanos += stats.external_nanos.load(Ordering::Relaxed);
            snapshot.steps += stats.steps.load(Ordering::Relaxed);
            let counters = stack.store.counters();
            snapshot.writes += counters.write_transactions;
            snapshot.commits += counters.commits;
            snapshot.lag = snapshot.lag.plus(&stats.claim_lag.snapshot());
        }
        snapshot
    }
}

/// Every instance's write transactions by call site, added up.
fn write_sites(stacks: &[Stack]) -> std::collections::BTreeMap<String, u64> {
    let mut sites = std::collections::BTreeMap::new();
    for stack in stacks {
        for (site, n) in stack.store.write_sites() {
            *sites.entry(site).or_default() += n;
        }
    }
    sites
}

/// The writes by call site made since `before`, most first.
fn sites_since(
    before: &std::collections::BTreeMap<String, u64>,
    after: std::collections::BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut made: Vec<(String, u64)> = after
        .into_iter()
        .map(|(site, n)| {
            let earlier = before.get(&site).copied().unwrap_or(0);
            (site, n.saturating_sub(earlier))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    made.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    made
}

/// The names (cut to 15 bytes) of sqlx's SQLite worker threads and of the SQLite store's own
/// thread (`chairside_engine::store::sqlite`'s store thread).
const SQLITE_THREADS: [&str; 2] = ["sqlx-sqlite-wor", "chairside-store"];

/// The name of the threads of the runtime the measured instances run on ([`ProductRuntime`]).
const PRODUCT_THREADS: &str = "chairside-rt";

/// The runtime the measured instances run on (their HTTP surface, runner, pollers, dispatcher
/// and the tasks of their HTTP clients), apart from the one running the benchmark's own work
/// (seeding, the settle checks, the tallies): its threads are named [`PRODUCT_THREADS`], so
/// their CPU is told apart from the harness's.
struct ProductRuntime {
    handle: tokio::runtime::Handle,
    /// The multi-thread runtime (more than one worker); `None` for the current-thread one, which
    /// its own thread drives until told to stop.
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ProductRuntime {
    fn new() -> anyhow::Result<Self> {
        // As `chairside` builds its own.
        let runtime = crate::app::runtime_builder(crate::app::runtime_workers_here())
            .thread_name(PRODUCT_THREADS)
            // Idle blocking threads stay for the run, so no CPU leaves with an ended thread.
            .thread_keep_alive(Duration::from_secs(3_600))
            .enable_all()
            .build()
            .context("the instances' runtime")?;
        let handle = runtime.handle().clone();
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return Ok(Self {
                handle,
                runtime: Some(runtime),
                stop: None,
            });
        }
        // One worker: a thread of the instances' name drives the runtime, as `chairside`'s main
        // thread does.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(PRODUCT_THREADS.into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
                runtime.shutdown_background();
            })
            .context("the instances' runtime thread")?;
        Ok(Self {
            handle,
            runtime: None,
            stop: Some(stop),
        })
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for ProductRuntime {
    fn drop(&mut self) {
        // Dropped inside the harness's runtime, where blocking on its threads is not allowed.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        if let Some(stop) = self.stop.take() {
            // Its thread stops driving the runtime and shuts it down.
            let _ = stop.send(());
        }
    }
}

/// What polling the practice systems cost, kept apart from the workflows' own calls.
#[derive(Debug, Default)]
struct PollTally {
    polls: AtomicU64,
    nanos: AtomicU64,
    created: AtomicUsize,
}

/// The sandbox's cheap counts (`GET /counts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
struct SandboxCounts {
    ledger_notes: usize,
    /// Webhooks queued and not yet delivered (or given up on).
    webhooks_pending: usize,
    /// Webhooks delivered or given up on so far.
    webhooks_finished: usize,
}

/// When a drive is finished.
#[derive(Debug, Clone, Copy)]
enum Until<'a> {
    /// This many workflows have settled. The sandbox's count of ledger notes says when to look:
    /// asking it costs this process next to nothing, unlike reading every workflow.
    Settled {
        workflows: usize,
        sandbox: &'a SandboxProcess,
        http: &'a reqwest::Client,
    },
    /// This many workflows were created and nothing was due for a second.
    Quiet(usize),
}

/// Polls the practice systems every `poll_every` in the background and runs due work until
/// `until` holds. Returns the poll tally, whether `until` held within `timeout`, and when the
/// runner last had work.
async fn drive(
    on: &tokio::runtime::Handle,
    stacks: &[Stack],
    poll_every: Duration,
    until: Until<'_>,
    timeout: Duration,
) -> anyhow::Result<(Arc<PollTally>, bool, Instant)> {
    let stack = stacks.first().context("no instance to drive")?;
    let tally = Arc::new(PollTally::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // One poller per practice, each on its own schedule, as `chairside run` polls; with several
    // instances, practice i is polled by instance i mod N (`chairside run` hands each practice
    // to one instance through its poller lease; here the split is fixed, so the polls are
    // counted apart from the workflows' calls exactly as with one instance).
    let mut pollers = tokio::task::JoinSet::new();
    let mut assigned = Vec::new();
    for (i, instance) in stacks.iter().enumerate() {
        let mut practices: Vec<_> = instance.runner.practices().cloned().collect();
        practices.sort_by_key(|rt| rt.profile.id.to_string());
        for (j, rt) in practices.into_iter().enumerate() {
            if j % stacks.len() == i {
                assigned.push((instance.runner.clone(), rt));
            }
        }
    }
    for (runner, rt) in assigned {
        let tally = tally.clone();
        let mut stop_rx = stop_rx.clone();
        pollers.spawn_on(
            async move {
                loop {
                    let started = Instant::now();
                    let n = runner.poll_once(&rt).await;
                    tally.created.fetch_add(n, Ordering::Relaxed);
                    tally.polls.fetch_add(1, Ordering::Relaxed);
                    tally
                        .nanos
                        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    tokio::select! {
                        () = tokio::time::sleep(poll_every) => {}
                        _ = stop_rx.changed() => break,
                    }
                }
            },
            on,
        );
    }
    // Each instance's own loop: a continuous pool woken by the store, as `chairside run` drives it.
    let workers: Vec<_> = stacks
        .iter()
        .map(|instance| {
            let runner = instance.runner.clone();
            let mut stop = stop_rx.clone();
            on.spawn(async move {
                runner
                    .work(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            })
        })
        .collect();
    let steps = || {
        stacks
            .iter()
            .map(|s| s.runner.stats().steps.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let started = Instant::now();
    let mut last_work = Instant::now();
    let mut last_steps = steps();
    let mut last_progress = Instant::now();
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if steps() != last_steps {
            last_steps = steps();
            last_work = Instant::now();
        }
        let created = tally.created.load(Ordering::Relaxed);
        let done = match until {
            Until::Settled {
                workflows,
                sandbox,
                http,
            } => {
                let before = match sandbox.counts(http).await {
                    Ok(counts) => counts,
                    Err(e) => break Err(e),
                };
                let notes = before.ledger_notes;
                if last_progress.elapsed() >= Duration::from_secs(5) {
                    last_progress = Instant::now();
                    tracing::info!(notes, of = workflows, "ledger notes written so far");
                }
                // Settled, and no webhook on its way: a webhook still queued (Stripe's second
                // event for one payment, say) or delivered while the workflows were read would
                // leave an event in an inbox after the drive stops. The counts read before and
                // after the workflows must agree.
                notes >= workflows
                    && before.webhooks_pending == 0
                    && match stack.settled().await {
                        Ok(settled) => settled >= workflows,
                        Err(e) => break Err(e),
                    }
                    && match sandbox.counts(http).await {
                        Ok(after) => after == before,
                        Err(e) => break Err(e),
                    }
            }
            Until::Quiet(n) => {
                if last_progress.elapsed() >= Duration::from_secs(5) {
                    last_progress = Instant::now();
                    tracing::info!(created, of = n, "workflows created so far");
                }
                created >= n && last_work.elapsed() >= Duration::from_secs(1)
            }
        };
        if done {
            break Ok(true);
        }
        if started.elapsed() > timeout {
            break Ok(false);
        }
    };
    let _ = stop_tx.send(true);
    pollers.join_all().await;
    for worker in workers {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(anyhow::Error::from(e).context("running workflows")),
            Err(e) => return Err(anyhow::anyhow!("the runner's task failed: {e}")),
        }
    }
    Ok((tally, outcome?, last_work))
}

async fn run_profile(
    args: &BenchArgs,
    profile: Profile,
    personas: &[Persona],
    bin: &Path,
    dir: &Path,
    http: &reqwest::Client,
) -> anyhow::Result<RunFigures> {
    let surface = Surface::bind().await?;
    let sandbox = SandboxProcess::spawn(bin, &surface, profile.latencies()).await?;
    let mut options = world_options(args);
    let database = BenchDatabase::create(args).await?;
    options.postgres = database.url();
    let product = ProductRuntime::new()?;
    let fleet = {
        let (instances, dir, urls, cfg) = (
            args.instances,
            dir.to_path_buf(),
            sandbox.urls.clone(),
            sandbox.config.clone(),
        );
        product
            .handle()
            .spawn(async move {
                let fleet = Fleet::start(instances, surface, &dir, &options, &urls, &cfg).await?;
                // The runner's HTTP clients keep their connections on the runtime that opened
                // them: the first poll runs there too.
                fleet.first().take_baseline().await?;
                anyhow::Ok(fleet)
            })
            .await
            .context("starting the instances")??
    };
    let stack = fleet.first();

    // Which practice and persona each plan gets, in turn; seeded one request per group.
    let mut groups: BTreeMap<(usize, usize), u32> = BTreeMap::new();
    for i in 0..args.plans {
        *groups
            .entry((i % PRACTICES.len(), i % personas.len()))
            .or_default() += 1;
    }

    proc::reset_peak_rss();
    let sites_before = write_sites(&fleet.stacks);
    let before = Snapshot::take(&fleet.stacks, &sandbox);
    let seeded_at = Utc::now();
    // Each plan's persona and when it was accepted by our clock: the practice systems' own
    // acceptance times are coarser (Open Dental keeps whole seconds).
    let mut cases: HashMap<(PracticeId, String), (Persona, DateTime<Utc>)> = HashMap::new();
    for ((practice, persona), count) in groups {
        let spec = &PRACTICES[practice];
        let accepted_at = Utc::now();
        for case in sandbox
            .seed(http, spec.pms.name(), personas[persona], count)
            .await?
        {
            cases.insert(
                (PracticeId::new(spec.id), case.plan.pms_id),
                (personas[persona], accepted_at),
            );
        }
    }
    let (tally, settled_in_time, _) = drive(
        &product.handle(),
        &fleet.stacks,
        Duration::from_millis(args.pms_poll_ms),
        Until::Settled {
            workflows: args.plans,
            sandbox: &sandbox,
            http,
        },
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    let after = Snapshot::take(&fleet.stacks, &sandbox);
    let writes_by_site = sites_since(&sites_before, write_sites(&fleet.stacks));
    let lag = after.lag.since(&before.lag);
    let peak_rss = proc::status_kib("self", "VmHWM").unwrap_or_default();
    if !settled_in_time {
        tracing::warn!(
            profile = profile.name(),
            "not every workflow settled before the timeout"
        );
    }

    // What happened to each workflow.
    let rows = stack.store.workflows(None, None, u32::MAX).await?;
    let invariants = sandbox.invariants(http).await?;
    let first_messages = sandbox.first_messages(http).await?;
    let mut o2p = Vec::new();
    let notes = invariants.notes_per_workflow();
    let mut o2l = Vec::new();
    let mut last_note: Option<DateTime<Utc>> = None;
    let (mut settled, mut as_expected, mut with_one_note) = (0, 0, 0);
    let mut off_path = Vec::new();
    for row in &rows {
        let state = &row.state;
        let key = (state.key.practice_id.clone(), state.key.plan_id.to_string());
        let Some((persona, accepted_at)) = cases.get(&key) else {
            continue;
        };
        if state.stage == Stage::Settled && row.next_action.is_none() {
            settled += 1;
        }
        let expected = Expected::of(*persona);
        if expected.matches(state) {
            as_expected += 1;
        } else {
            let ended = match (&state.staff_task, &state.result) {
                (Some(t), _) => format!("staff: {}", t.kind.label()),
                (None, Some(r)) => r.path.clone(),
                (None, None) => state.stage_label(),
            };
            off_path.push(format!(
                "{} {}: ended {ended}, expected {}",
                state.key.practice_id,
                persona.name(),
                expected.describe()
            ));
        }
        if notes.get(state.id.as_str()).copied() == Some(1) {
            with_one_note += 1;
        }
        if let Some(written) = state.ledger_written_at {
            o2l.push((written - *accepted_at).to_std().unwrap_or_default());
        }
        if let Some(first) = first_messages.get(state.key.plan_id.as_str()) {
            o2p.push((*first - *accepted_at).to_std().unwrap_or_default());
        }
        last_note = last_note.max(state.ledger_written_at);
    }
    o2l.sort();
    o2p.sort();
    let n = args.plans.max(1) as f64;
    let elapsed = last_note
        .and_then(|t| (t - seeded_at).to_std().ok())
        .unwrap_or_default();
    let polls = tally.polls.load(Ordering::Relaxed);
    // Each practice polls on its own: every poll is one practice's call.
    let poll_calls = polls;
    let calls = after.calls - before.calls;
    let workflow_calls = calls.saturating_sub(poll_calls);
    // A poll's wall time is its practice system's answer plus one small cursor write.
    let workflow_nanos =
        (after.nanos - before.nanos).saturating_sub(tally.nanos.load(Ordering::Relaxed));
    let external_wait_ms = workflow_nanos as f64 / 1e6 / n;
    let o2l_mean_ms = mean_ms(&o2l);
    let cpu_ms = ms(after.cpu.saturating_sub(before.cpu));
    // sqlx runs each SQLite connection on a thread of its own; the store has one more.
    let sqlite_cpu = after.threads.grown_since(&before.threads, &SQLITE_THREADS);
    let product_cpu = sqlite_cpu
        + after
            .threads
            .grown_since(&before.threads, &[PRODUCT_THREADS]);
    let product_cpu_ms = ms(product_cpu);
    // The harness's threads (this runtime's, the main thread), measured as Chairside's are.
    let harness_cpu_ms = ms(after
        .threads
        .grown_since(&before.threads, &[""])
        .saturating_sub(product_cpu));
    // Every poll commits its cursor, whether or not it found anything.
    let writes = (after.writes - before.writes).saturating_sub(poll_calls);
    let commits = (after.commits - before.commits).saturating_sub(poll_calls);
    let per_call = |x: u64| x as f64 / workflow_calls.max(1) as f64;

    sandbox.stop().await;
    fleet.stop().await;
    drop(product);
    Ok(RunFigures {
        profile,
        workflows: args.plans,
        settled,
        as_expected,
        with_one_note,
        problems: invariants.problems(),
        off_path,
        elapsed_s: elapsed.as_secs_f64(),
        workflows_per_s: if elapsed.is_zero() {
            0.0
        } else {
            args.plans as f64 / elapsed.as_secs_f64()
        },
        o2l_p50_ms: percentile_ms(&o2l, 0.50),
        o2l_p99_ms: percentile_ms(&o2l, 0.99),
        o2l_mean_ms,
        reached_patient: o2p.len(),
        emails: invariants.emails,
        texts: invariants.texts,
        o2p_p50_ms: percentile_ms(&o2p, 0.50),
        o2p_p99_ms: percentile_ms(&o2p, 0.99),
        o2p_mean_ms: mean_ms(&o2p),
        external_calls: workflow_calls,
        poll_calls,
        external_wait_per_workflow_ms: external_wait_ms,
        not_external_per_workflow_ms: o2l_mean_ms - external_wait_ms,
        steps: after.steps - before.steps,
        cpu_ms,
        cpu_per_workflow_ms: cpu_ms / n,
        cpu_per_external_call_ms: if calls == 0 {
            0.0
        } else {
            cpu_ms / calls as f64
        },
        chairside_cpu_ms: product_cpu_ms,
        harness_cpu_ms,
        chairside_cpu_per_external_call_ms: if calls == 0 {
            0.0
        } else {
            product_cpu_ms / calls as f64
        },
        sqlite_cpu_ms: ms(sqlite_cpu),
        sandbox_cpu_ms: ms(after.sandbox_cpu.saturating_sub(before.sandbox_cpu)),
        write_transactions: writes,
        writes_per_workflow: writes as f64 / n,
        writes_per_external_call: per_call(writes),
        commits,
        commits_per_external_call: per_call(commits),
        writes_by_site,
        peak_rss_mib: mib(peak_rss),
        claims: lag.count,
        claim_lag_mean_ms: lag.mean_ms(),
        claim_lag_p50_ms: lag.at_most_ms(0.50),
        claim_lag_p99_ms: lag.at_most_ms(0.99),
        claim_lag_max_ms: lag.max_micros as f64 / 1_000.0,
        claims_late: lag.at_least_ms(100),
        floor_per_call_ms: None,
    })
}

async fn run_parked(
    args: &BenchArgs,
    bin: &Path,
    dir: &Path,
    http: &reqwest::Client,
) -> anyhow::Result<ParkedFigures> {
    let surface = Surface::bind().await?;
    let sandbox = SandboxProcess::spawn(bin, &surface, Profile::Zero.latencies()).await?;
    // Reminders and lender status polls far away: the workflows sit waiting on the patient.
    let database = BenchDatabase::create(args).await?;
    let options = WorldOptions {
        reminder_every: Duration::from_secs(7 * 86_400),
        poll_every: Duration::from_secs(86_400),
        // A flat day between lender reads: the parked workflows sit.
        shipped_lender_schedules: false,
        postgres: database.url(),
        ..world_options(args)
    };
    let fleet = Fleet::start(
        args.instances,
        surface,
        dir,
        &options,
        &sandbox.urls,
        &sandbox.config,
    )
    .await?;
    let stack = fleet.first();
    stack.take_baseline().await?;
    let db = dir.join("chairside.sqlite");

    proc::reset_peak_rss();
    let rss_before = proc::status_kib("self", "VmRSS").unwrap_or_default();
    let sqlite_before = database.bytes(&db).await;
    let cpu_before = proc::cpu_time("self").unwrap_or_default();
    let started = Instant::now();
    const CHUNK: usize = 500;
    // Not the Dentrix practice: the sandbox's Dentrix stand-in renders every record it holds for
    // each request, which makes thousands of plans there quadratic in the sandbox's time (not
    // ours). Open Dental's and NexHealth's stand-ins scale far better.
    let parked_at: Vec<_> = PRACTICES
        .iter()
        .filter(|p| p.pms != sandbox::Pms::Dentrix)
        .collect();
    let mut left = args.parked;
    let mut turn = 0;
    while left > 0 {
        let count = left.min(CHUNK);
        let spec = parked_at[turn % parked_at.len()];
        sandbox
            .seed(http, spec.pms.name(), Persona::NeverCompletes, count as u32)
            .await?;
        left -= count;
        turn += 1;
    }
    let (_, quiet_in_time, last_work) = drive(
        &tokio::runtime::Handle::current(),
        &fleet.stacks,
        Duration::from_millis(args.pms_poll_ms),
        Until::Quiet(args.parked),
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    if !quiet_in_time {
        tracing::warn!("not every parked workflow was created before the timeout");
    }
    let cpu_after = proc::cpu_time("self").unwrap_or_default();
    let rss_after = proc::status_kib("self", "VmRSS").unwrap_or_default();
    let peak = proc::status_kib("self", "VmHWM").unwrap_or_default();
    let sqlite_after = database.bytes(&db).await;
    let sandbox_rss = sandbox.rss_kib().unwrap_or_default();

    let rows = stack.store.workflows(None, None, u32::MAX).await?;
    let awaiting_patient = rows
        .iter()
        .filter(|r| awaiting_patient(&r.state) && r.next_action.is_none())
        .count();
    sandbox.stop().await;
    fleet.stop().await;
    Ok(ParkedFigures {
        seeded: args.parked,
        awaiting_patient,
        elapsed_s: last_work.saturating_duration_since(started).as_secs_f64(),
        cpu_ms: ms(cpu_after.saturating_sub(cpu_before)),
        rss_before_mib: mib(rss_before),
        rss_after_mib: mib(rss_after),
        peak_rss_mib: mib(peak),
        sqlite_before_mib: sqlite_before as f64 / (1024.0 * 1024.0),
        sqlite_after_mib: sqlite_after as f64 / (1024.0 * 1024.0),
        sandbox_rss_mib: mib(sandbox_rss),
    })
}

/// The instances of one part of the benchmark: one [`Stack`] serving the surface the sandbox
/// calls, or several on one database behind a loopback front on that surface.
struct Fleet {
    stacks: Vec<Stack>,
    front: Option<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    async fn start(
        instances: u16,
        surface: Surface,
        dir: &Path,
        options: &WorldOptions,
        urls: &SandboxUrls,
        cfg: &SandboxConfig,
    ) -> anyhow::Result<Self> {
        if instances <= 1 {
            let stack = Stack::start(surface, dir, options, urls, cfg).await?;
            return Ok(Self {
                stacks: vec![stack],
                front: None,
            });
        }
        let front_url = surface.base().clone();
        let mut stacks = Vec::new();
        let mut backends = Vec::new();
        // One after another: the first migrates the database, the others find it migrated.
        for n in 0..usize::from(instances) {
            let own = Surface::bind().await?;
            backends.push(own.addr());
            stacks.push(Stack::start_instance(own, &front_url, n, dir, options, urls, cfg).await?);
        }
        let front = tokio::spawn(serve_front(surface.into_listener(), backends));
        Ok(Self {
            stacks,
            front: Some(front),
        })
    }

    fn first(&self) -> &Stack {
        &self.stacks[0]
    }

    async fn stop(self) {
        if let Some(front) = self.front {
            front.abort();
            let _ = front.await;
        }
        for stack in self.stacks {
            stack.stop().await;
        }
    }
}

/// Hands each connection accepted on `listener` to the next of `backends` in turn and copies
/// bytes both ways until either side closes: the load balancer in front of several instances.
async fn serve_front(listener: tokio::net::TcpListener, backends: Vec<std::net::SocketAddr>) {
    let mut turn = 0usize;
    loop {
        let mut inbound = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "the bench's front could not accept a connection");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let to = backends[turn % backends.len()];
        turn = turn.wrapping_add(1);
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(to).await {
                Ok(mut out) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the bench's front could not reach an instance")
                }
            }
        });
    }
}

fn awaiting_patient(state: &WorkflowState) -> bool {
    matches!(&state.stage, Stage::Financing(c) if matches!(c.phase, LenderPhase::AwaitingPatient { .. }))
}

/// The database of one part of the benchmark: the SQLite file in its directory, or a fresh
/// PostgreSQL database (`--database-url`), dropped when the part is done.
enum BenchDatabase {
    Sqlite,
    Postgres {
        admin: String,
        name: String,
        url: String,
    },
}

impl BenchDatabase {
    async fn create(args: &BenchArgs) -> anyhow::Result<Self> {
        let Some(admin) = &args.database_url else {
            return Ok(Self::Sqlite);
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let name = format!("chairside_bench_{}_{nanos}", std::process::id());
        let url = PostgresStore::create_database(admin, &name)
            .await
            .context("creating the benchmark's database on --database-url")?;
        Ok(Self::Postgres {
            admin: admin.clone(),
            name,
            url,
        })
    }

    fn url(&self) -> Option<SecretString> {
        match self {
            Self::Sqlite => None,
            Self::Postgres { url, .. } => Some(SecretString::from(url.clone())),
        }
    }

    /// The database's size on disk: the SQLite file with its WAL, or `pg_database_size`.
    async fn bytes(&self, db: &Path) -> u64 {
        match self {
            Self::Sqlite => sqlite_bytes(db),
            Self::Postgres { url, .. } => {
                let key = chairside_engine::store::crypto::DataKey::generate();
                match PostgresStore::connect(url, key).await {
                    Ok(store) => store.database_size().await.unwrap_or(0),
                    Err(_) => 0,
                }
            }
        }
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if let Self::Postgres { admin, name, .. } = self {
            let (admin, name) = (admin.clone(), name.clone());
            // From a thread of its own: `drop` cannot wait on the runtime it runs on.
            let done = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    && let Err(e) = rt.block_on(PostgresStore::drop_database(&admin, &name))
                {
                    tracing::warn!(error = %e, "dropping the benchmark's database");
                }
            });
            let _ = done.join();
        }
    }
}

/// The database file with its WAL and shared-memory index.
fn sqlite_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut path = db.as_os_str().to_owned();
            path.push(suffix);
            std::fs::metadata(PathBuf::from(path)).ok()
        })
        .map(|m| m.len())
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mean_ms(sorted: &[Duration]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.iter().map(|d| ms(*d)).sum::<f64>() / sorted.len() as f64
}

/// Nearest-rank percentile of sorted durations, ms (0 when empty).
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    ms(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| proc::field_kib(&m, "MemTotal"))
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        memory_mib: memory_kib / 1024,
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned()),
    }
}

/// Reading this process's (and the sandbox's) CPU time and memory from `/proc`.
mod proc {
    use std::sync::OnceLock;
    use std::time::Duration;

    /// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`; 100 on Linux).
    fn ticks_per_second() -> u64 {
        static TICKS: OnceLock<u64> = OnceLock::new();
        *TICKS.get_or_init(|| {
            std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.trim().parse().ok())
                .filter(|t| *t > 0)
                .unwrap_or(100)
        })
    }

    /// User + system CPU time of every thread of process `pid` (`self` for this one).
    pub(super) fn cpu_time(pid: &str) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses; the fields after its last `)` start
        // with the state (field 3). utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let ticks = ticks_per_second();
        Some(Duration::from_nanos(
            (utime + stime).saturating_mul(1_000_000_000) / ticks,
        ))
    }

    /// A `kB` field (`VmRSS`, `VmHWM`, `MemTotal`) of a `/proc` status-like text.
    pub(super) fn field_kib(text: &str, field: &str) -> Option<u64> {
        text.lines().find_map(|l| {
            let value = l.strip_prefix(field)?.strip_prefix(':')?;
            value.trim().trim_end_matches("kB").trim().parse().ok()
        })
    }

    /// A `kB` field of `/proc/{pid}/status`.
    pub(super) fn status_kib(pid: &str, field: &str) -> Option<u64> {
        field_kib(
            &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
            field,
        )
    }

    /// Time thread (or process) `pid` ran on a CPU, in nanoseconds, from `/proc/{pid}/schedstat`
    /// (its first field); `None` where the kernel keeps no scheduler statistics.
    pub(super) fn run_time(pid: &str) -> Option<Duration> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
        let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    }

    /// CPU time of every thread of process `pid`, to the nanosecond from each thread's
    /// `schedstat` where the kernel keeps scheduler statistics; [`cpu_time`]'s clock ticks
    /// (10 ms each) otherwise. A short measurement (a few milliseconds of another process's work)
    /// reads as zero in ticks, so the floor reads the sandbox's CPU here.
    pub(super) fn process_run_time(pid: &str) -> Option<Duration> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut total = Duration::ZERO;
        for task in tasks.filter_map(Result::ok) {
            let task = format!("{pid}/task/{}", task.file_name().to_string_lossy());
            // A thread that ended between the listing and the read counts no more.
            match run_time(&task) {
                Some(t) => total += t,
                None if std::path::Path::new(&format!("/proc/{task}")).exists() => {
                    return cpu_time(pid);
                }
                None => {}
            }
        }
        Some(total)
    }

    /// Each of this process's threads at one moment: its id, its name (cut to 15 bytes by the
    /// kernel) and its CPU time, to the nanosecond where the kernel keeps scheduler statistics
    /// (clock ticks, 10 ms each, otherwise).
    #[derive(Debug, Clone, Default)]
    pub(super) struct ThreadTimes(Vec<(u32, String, Duration)>);

    impl ThreadTimes {
        /// Every thread of this process now.
        pub(super) fn now() -> Self {
            let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
                return Self::default();
            };
            Self(
                tasks
                    .filter_map(Result::ok)
                    .filter_map(|task| {
                        let tid = task.file_name().to_string_lossy().parse::<u32>().ok()?;
                        let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
                        let task = format!("self/task/{tid}");
                        let time = run_time(&task).or_else(|| cpu_time(&task))?;
                        Some((tid, name.trim_end().to_owned(), time))
                    })
                    .collect(),
            )
        }

        /// The CPU time the threads named with one of `prefixes` (`""`: every thread) used since
        /// `before`, thread by thread: a thread new since then counts whole; a thread that ended
        /// since then counts nothing (it would otherwise take its whole time out of a sum of the
        /// threads alive, as the previous run's threads ending in this one's window did).
        pub(super) fn grown_since(&self, before: &Self, prefixes: &[&str]) -> Duration {
            self.0
                .iter()
                .filter(|(_, name, _)| prefixes.iter().any(|p| name.starts_with(p)))
                .map(|(tid, name, now)| {
                    let then = before
                        .0
                        .iter()
                        .find(|(t, n, _)| t == tid && n == name)
                        .map_or(Duration::ZERO, |(_, _, d)| *d);
                    now.saturating_sub(then)
                })
                .sum()
        }
    }

    /// Resets this process's peak resident memory (`VmHWM`) to its current size, so each part of
    /// the benchmark reports its own peak. Harmless where the kernel refuses.
    pub(super) fn reset_peak_rss() {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
}

/// Finds the `sandbox` binary: `explicit` (`--sandbox-bin`) when given, else the one next to
/// `exe` (this program). Never builds anything.
fn sandbox_binary(explicit: Option<&Path>, exe: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(
            path.is_file(),
            "--sandbox-bin {}: no such file (build it with: cargo build --release --bin sandbox)",
            path.display()
        );
        return Ok(path.to_owned());
    }
    let beside = exe.with_file_name(format!("sandbox{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        beside.is_file(),
        "no sandbox binary next to {}: build both (cargo build --release --bin chairside --bin sandbox) or pass --sandbox-bin PATH",
        exe.display()
    );
    Ok(beside)
}

/// The sandbox in its own process, with its addresses and (made-up) credentials.
struct SandboxProcess {
    child: tokio::process::Child,
    pid: String,
    urls: SandboxUrls,
    config: SandboxConfig,
    admin: Url,
}

impl std::fmt::Debug for SandboxProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxProcess")
            .field("pid", &self.pid)
            .field("admin", &self.admin.as_str())
            .finish_non_exhaustive()
    }
}

/// What `sandbox --json` prints (only what the clients need).
#[derive(Deserialize)]
struct Printed {
    stripe: PrintedStripe,
    twilio: PrintedTwilio,
    smtp: PrintedSmtp,
    dentrix: PrintedDentrix,
    nexhealth: PrintedNexHealth,
    opendental: PrintedOpenDental,
    carecredit: PrintedCareCredit,
    sunbit: PrintedSunbit,
    admin: Option<Url>,
}

#[derive(Deserialize)]
struct PrintedStripe {
    url: Url,
    secret_key: String,
    webhook_secrets: Vec<String>,
}

#[derive(Deserialize)]
struct PrintedTwilio {
    url: Url,
    account_sid: String,
    auth_token: String,
}

#[derive(Deserialize)]
struct PrintedSmtp {
    host: std::net::IpAddr,
    port: u16,
}

#[derive(Deserialize)]
struct PrintedDentrix {
    url: Url,
    client_id: String,
    client_secret: String,
    organization_id: String,
}

#[derive(Deserialize)]
struct PrintedNexHealth {
    url: Url,
    api_key: String,
    subdomain: String,
    location_id: u64,
}

#[derive(Deserialize)]
struct PrintedOpenDental {
    url: Url,
    developer_key: String,
    customer_key: String,
}

#[derive(Deserialize)]
struct PrintedCareCredit {
    url: Url,
    client_id: String,
    client_secret: String,
}

#[derive(Deserialize)]
struct PrintedSunbit {
    url: Url,
    key: String,
    secret: String,
    webhook_secret: String,
}

fn secret(s: String) -> SecretString {
    SecretString::from(s)
}

impl Printed {
    fn into_parts(self) -> (SandboxUrls, SandboxConfig, Option<Url>) {
        let urls = SandboxUrls {
            stripe: self.stripe.url,
            twilio: self.twilio.url,
            smtp: std::net::SocketAddr::new(self.smtp.host, self.smtp.port),
            dentrix: self.dentrix.url,
            nexhealth: self.nexhealth.url,
            opendental: self.opendental.url,
            carecredit: self.carecredit.url,
            sunbit: self.sunbit.url,
        };
        let mut cfg = SandboxConfig::default();
        cfg.stripe.secret_key = secret(self.stripe.secret_key);
        cfg.stripe.webhook_secrets = self
            .stripe
            .webhook_secrets
            .into_iter()
            .map(secret)
            .collect();
        cfg.twilio.account_sid = self.twilio.account_sid;
        cfg.twilio.auth_token = secret(self.twilio.auth_token);
        cfg.dentrix.client_id = self.dentrix.client_id;
        cfg.dentrix.client_secret = secret(self.dentrix.client_secret);
        cfg.dentrix.organization_id = self.dentrix.organization_id;
        cfg.nexhealth.api_key = secret(self.nexhealth.api_key);
        cfg.nexhealth.subdomain = self.nexhealth.subdomain;
        cfg.nexhealth.location_id = self.nexhealth.location_id;
        cfg.opendental.developer_key = secret(self.opendental.developer_key);
        cfg.opendental.customer_key = secret(self.opendental.customer_key);
        cfg.carecredit.client_id = self.carecredit.client_id;
        cfg.carecredit.client_secret = secret(self.carecredit.client_secret);
        cfg.sunbit.api_key = self.sunbit.key;
        cfg.sunbit.api_secret = secret(self.sunbit.secret);
        cfg.sunbit.webhook_secret = secret(self.sunbit.webhook_secret);
        (urls, cfg, self.admin)
    }
}

/// What `GET /invariants` answers.
#[derive(Deserialize)]
struct Invariants {
    /// The outcome notes (payment notes left out: a workflow may write one per Stripe payment
    /// beside its one outcome note), by marker.
    outcome_notes_by_marker: BTreeMap<String, usize>,
    /// Stripe payments noted more than once.
    payments_noted_twice: usize,
    /// Emails the SMTP sink received.
    #[serde(default)]
    emails: usize,
    /// Texts the Twilio stand-in took.
    #[serde(default)]
    texts: usize,
    patients_with_several_customers: usize,
    workflows_with_several_schedules: usize,
    workflows_with_several_deposit_links: usize,
    installments_charged_twice: usize,
    violations: usize,
}

impl Invariants {
    /// Outcome notes per workflow id (a marker is `[chairside:{workflow}.{seq}]`).
    fn notes_per_workflow(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for (marker, n) in &self.outcome_notes_by_marker {
            let inner = marker
                .trim_start_matches("[chairside:")
                .trim_end_matches(']');
            let workflow = inner.rsplit_once('.').map_or(inner, |(w, _)| w);
            *out.entry(workflow.to_owned()).or_default() += n;
        }
        out
    }

    fn problems(&self) -> Vec<String> {
        [
            (
                self.patients_with_several_customers,
                "patients with several Stripe customers",
            ),
            (
                self.workflows_with_several_schedules,
                "workflows with several schedules",
            ),
            (
                self.workflows_with_several_deposit_links,
                "workflows with several deposit links",
            ),
            (
                self.installments_charged_twice,
                "installments charged twice",
            ),
            (self.payments_noted_twice, "payments noted twice"),
            (self.violations, "compliance violations"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect()
    }
}

impl SandboxProcess {
    /// Starts `bin`, sending its webhooks to `surface`, with `latencies` added per system.
    async fn spawn(
        bin: &Path,
        surface: &Surface,
        latencies: &[(System, u64)],
    ) -> anyhow::Result<Self> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(["--json", "--admin", "--exit-on-stdin-eof"])
            .arg("--stripe-webhook-url")
            .arg(surface.stripe_webhook_url()?.as_str())
            .arg("--twilio-inbound-url")
            .arg(surface.twilio_inbound_url()?.as_str());
        for (location, url) in surface.sunbit_webhook_urls()? {
            cmd.arg("--sunbit-location-webhook")
                .arg(format!("{location}={url}"));
        }
        for (system, millis) in latencies {
            cmd.arg("--latency")
                .arg(format!("{}={millis}", system.name()));
        }
        // Standard input stays open while we live: if we die, the sandbox sees its end and stops.
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child
            .id()
            .map(|p| p.to_string())
            .context("the sandbox exited at once")?;
        let stdout = child.stdout.take().context("the sandbox's output")?;
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("the sandbox printed nothing within 30 s")?
        .context("reading the sandbox's output")?;
        let printed: Printed =
            serde_json::from_str(&line).context("the sandbox's --json output")?;
        let (urls, config, admin) = printed.into_parts();
        let admin = admin.context("the sandbox printed no admin URL")?;
        Ok(Self {
            child,
            pid,
            urls,
            config,
            admin,
        })
    }

    /// Seeds `count` patients of `persona` in `pms` and accepts their plans.
    async fn seed(
        &self,
        http: &reqwest::Client,
        pms: &str,
        persona: Persona,
        count: u32,
    ) -> anyhow::Result<Vec<SeededCase>> {
        let body = serde_json::json!({"pms": pms, "persona": persona.name(), "count": count});
        let response = http
            .post(self.admin.join("seed")?)
            .json(&body)
            .send()
            .await
            .context("seeding through the sandbox's admin API")?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "the sandbox refused to seed ({status})"
        );
        response.json().await.context("the seeded cases")
    }

    /// How many ledger notes the practice systems hold, and how many webhooks are queued and
    /// finished.
    async fn counts(&self, http: &reqwest::Client) -> anyhow::Result<SandboxCounts> {
        let response = http
            .get(self.admin.join("counts")?)
            .send()
            .await
            .context("reading the sandbox's counts")?;
        anyhow::ensure!(
            response.status().is_success(),
            "the sandbox's counts ({})",
            response.status()
        );
        response.json().await.context("the sandbox's counts")
    }

    /// When each plan's patient got their first message, by the plan's id in its practice system.
    async fn first_messages(
        &self,
        http: &reqwest::Client,
    ) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
        let response = http
            .get(self.admin.join("first-messages")?)
            .send()
            .await
            .context("reading the sandbox's first messages")?;
        anyhow::ensure!(
            response.status().is_success(),
            "the sandbox's first messages ({})",
            response.status()
        );
        response
            .json()
            .await
            .context("the sandbox's first messages")
    }

    async fn invariants(&self, http: &reqwest::Client) -> anyhow::Result<Invariants> {
        let response = http
            .get(self.admin.join("invariants")?)
            .send()
            .await
            .context("reading the sandbox's invariants")?;
        anyhow::ensure!(
            response.status().is_success(),
            "the sandbox's invariants ({})",
            response.status()
        );
        response.json().await.context("the sandbox's invariants")
    }

    fn cpu_time(&self) -> Option<Duration> {
        proc::cpu_time(&self.pid)
    }

    fn rss_kib(&self) -> Option<u64> {
        proc::status_kib(&self.pid, "VmRSS")
    }

    /// Closes its standard input (it stops by itself) and waits; kills it after 10 s.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Prints the figures as a table (and as JSON with `--json`).
#[allow(clippy::print_stdout)] // the benchmark's output is the table
fn print(report: &BenchReport, args: &BenchArgs) {
    let m = &report.machine;
    println!(
        "machine: {} CPUs ({}), {} MiB memory, Linux {}",
        m.cpus, m.cpu_model, m.memory_mib, m.kernel
    );
    println!(
        "plans: {} per profile, personas in turn: {}; runner concurrency {}; practice systems polled every {} ms; {}",
        args.plans,
        report.personas.join(", "),
        report.concurrency,
        args.pms_poll_ms,
        match (&args.database_url, args.sync) {
            (None, SyncMode::Full) => "SQLite synchronous FULL",
            (None, SyncMode::Normal) => "SQLite synchronous NORMAL",
            (Some(_), SyncMode::Full) => "PostgreSQL synchronous_commit on",
            (Some(_), SyncMode::Normal) => "PostgreSQL synchronous_commit off",
        }
    );
    if report.instances > 1 {
        println!(
            "instances: {} on one database, in this process behind one loopback front (CPU and counters are all of them together)",
            report.instances
        );
    }
    if !report.runs.is_empty() {
        println!();
        for line in table(report) {
            println!("{line}");
        }
        let spread = spread_lines(&report.runs);
        if !spread.is_empty() {
            println!();
            for line in spread {
                println!("{line}");
            }
        }
    }
    for run in &report.runs {
        println!();
        println!(
            "{}: write transactions by call site (per workflow), the polls' included:",
            run.profile.name()
        );
        let n = run.workflows.max(1) as f64;
        for (site, count) in &run.writes_by_site {
            println!("  {site:<32} {count:>6} ({:.2})", *count as f64 / n);
        }
    }
    for run in &report.runs {
        for p in &run.problems {
            println!("{}: invariant broken: {p}", run.profile.name());
        }
        for w in &run.off_path {
            println!("{}: off its path: {w}", run.profile.name());
        }
    }
    if let Some(p) = &report.parked {
        println!();
        println!(
            "parked: {} of {} workflows waiting on the patient after {:.1} s ({:.0} ms CPU, {:.2} ms per workflow)",
            p.awaiting_patient,
            p.seeded,
            p.elapsed_s,
            p.cpu_ms,
            p.cpu_ms / p.seeded.max(1) as f64
        );
        println!(
            "  resident memory {:.1} MiB before, {:.1} MiB after ({:+.1} MiB, {:.1} KiB per workflow), peak {:.1} MiB",
            p.rss_before_mib,
            p.rss_after_mib,
            p.rss_after_mib - p.rss_before_mib,
            (p.rss_after_mib - p.rss_before_mib) * 1024.0 / p.seeded.max(1) as f64,
            p.peak_rss_mib
        );
        println!(
            "  SQLite {:.1} MiB before, {:.1} MiB after ({:.1} KiB per workflow); the sandbox holds {:.1} MiB",
            p.sqlite_before_mib,
            p.sqlite_after_mib,
            (p.sqlite_after_mib - p.sqlite_before_mib) * 1024.0 / p.seeded.max(1) as f64,
            p.sandbox_rss_mib
        );
    }
    print_floors(&report.floors, &report.runs);
    println!();
    println!(
        "{}",
        if report.all_as_expected() {
            "every workflow ended where its persona says, one ledger note each"
        } else {
            "NOT every workflow ended where its persona says (see above)"
        }
    );
    if args.json {
        match serde_json::to_string(report) {
            Ok(json) => println!("{json}"),
            Err(e) => tracing::error!(error = %e, "the figures as JSON"),
        }
    }
}

/// The floors' lines (one measurement in full, several a line each), and each run's CPU per
/// external call read against the floor of its round.
#[allow(clippy::print_stdout)] // the benchmark's output is the table
fn print_floors(floors: &[FloorFigures], runs: &[RunFigures]) {
    match floors {
        [] => return,
        [f] => print_floor(f),
        several => {
            println!();
            println!(
                "floor, measured after each round of runs (µs of CPU: a bare HTTP round trip to the sandbox, our side; a durable commit of one row asked for from the runtime; the same unsynced; a usual step through the store, {} callers at once):",
                several[0].callers
            );
            for (round, f) in several.iter().enumerate() {
                println!(
                    "  round {}: round trip {:.0}, durable commit {:.0}, unsynced {:.0}, usual step {:.0}",
                    round + 1,
                    f.http_one_caller_us.min(f.http_many_callers_us),
                    f.commit_asked_us + f.commit_asked_runtime_us,
                    f.unsynced_us,
                    f.step_many_callers_us + f.step_many_callers_runtime_us
                );
            }
        }
    }
    for run in runs {
        let (Some(floor_ms), Some(times)) = (run.floor_per_call_ms, run.over_floor()) else {
            continue;
        };
        println!(
            "{}: Chairside's CPU per external call {:.3} ms; the floor of a call with its {:.2} transactions ({:.2} synced) {:.3} ms ({:.1}x)",
            run.profile.name(),
            run.chairside_cpu_per_external_call_ms,
            run.writes_per_external_call,
            run.commits_per_external_call,
            floor_ms,
            times
        );
    }
}

/// One floor measurement's lines, in full.
#[allow(clippy::print_stdout)] // the benchmark's output is the table
fn print_floor(f: &FloorFigures) {
    println!();
    println!(
        "floor (nothing of Chairside around it): an HTTP round trip to the sandbox over loopback, {} of them",
        f.round_trips
    );
    println!(
        "  one caller at a time:  {:.0} µs of CPU on our side ({:.0} µs on the sandbox's)",
        f.http_one_caller_us, f.http_one_caller_sandbox_us
    );
    println!(
        "  {} callers at once:    {:.0} µs of CPU on our side ({:.0} µs on the sandbox's)",
        f.callers, f.http_many_callers_us, f.http_many_callers_sandbox_us
    );
    println!(
        "floor: a durable SQLite commit (WAL, synchronous FULL) of one {}-byte row, {} of them",
        f.state_bytes, f.commits
    );
    println!(
        "  on its thread alone: {:.0} µs of CPU; asked for from the runtime: {:.0} µs on its thread + {:.0} µs on the runtime",
        f.commit_us, f.commit_asked_us, f.commit_asked_runtime_us
    );
    println!(
        "  the same transaction unsynced (synchronous NORMAL, as one sharing a group commit): {:.0} µs",
        f.unsynced_us
    );
    println!(
        "a usual step through the SQLite store (its result, the next command journaled, an audit line), {} of them",
        f.steps
    );
    println!(
        "  one caller at a time: {:.0} µs on the store's threads + {:.0} µs on the runtime",
        f.step_one_caller_us, f.step_one_caller_runtime_us
    );
    println!(
        "  {} callers at once:   {:.0} µs on the store's threads + {:.0} µs on the runtime ({:.1} steps per commit)",
        f.callers,
        f.step_many_callers_us,
        f.step_many_callers_runtime_us,
        f.steps_per_commit_many_callers
    );
}

/// The median, least and greatest of some runs' values of one figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The least value.
    pub min: f64,
    /// The greatest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none (or one is not a number).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() || values.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// For each profile run more than once (`--repeat`), the figures that move from run to run:
/// median and range over its runs, as the bench prints them (not peak memory, which only the
/// first run measures cleanly: see the last line). Nothing when every profile ran once.
pub fn spread_lines(runs: &[RunFigures]) -> Vec<String> {
    type Figure = (
        &'static str,
        fn(&RunFigures) -> Option<f64>,
        &'static str,
        usize,
    );
    let figures: [Figure; 5] = [
        (
            "Chairside's CPU per external call",
            |r| Some(r.chairside_cpu_per_external_call_ms),
            "ms",
            3,
        ),
        (
            "the same, times its round's floor",
            RunFigures::over_floor,
            "",
            1,
        ),
        (
            "transactions per external call",
            |r| Some(r.writes_per_external_call),
            "",
            2,
        ),
        (
            "commits (syncs) per external call",
            |r| Some(r.commits_per_external_call),
            "",
            2,
        ),
        ("operatory-to-ledger mean", |r| Some(r.o2l_mean_ms), "ms", 0),
    ];
    let mut out = Vec::new();
    let mut profiles: Vec<Profile> = Vec::new();
    for r in runs {
        if !profiles.contains(&r.profile) {
            profiles.push(r.profile);
        }
    }
    for profile in profiles {
        let of: Vec<&RunFigures> = runs.iter().filter(|r| r.profile == profile).collect();
        if of.len() < 2 {
            continue;
        }
        out.push(format!(
            "{}: median (least to greatest) over {} runs",
            profile.name(),
            of.len()
        ));
        for (label, value, unit, decimals) in figures {
            // A figure some runs lack (no `--floor`) is left out.
            let values: Option<Vec<f64>> = of.iter().map(|r| value(r)).collect();
            let Some(values) = values else {
                continue;
            };
            if let Some(s) = Spread::of(&values) {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                out.push(format!(
                    "  {label:<36} {:.decimals$}{unit} ({:.decimals$} to {:.decimals$})",
                    s.median, s.min, s.max
                ));
            }
        }
    }
    if !out.is_empty() {
        // Each run's peak is its own (`VmHWM` is reset before it), but a run begins with what the
        // runs before it left allocated in this process.
        out.push(
            "  peak resident memory: the first run's is the figure; later runs begin with what earlier runs left allocated".to_owned(),
        );
    }
    out
}

/// The table's lines: one row per figure, one column per run.
fn table(report: &BenchReport) -> Vec<String> {
    type Cell = fn(&RunFigures) -> String;
    let rows: [(&str, Cell); 27] = [
        ("workflows (settled / as expected)", |r| {
            format!("{} ({} / {})", r.workflows, r.settled, r.as_expected)
        }),
        ("elapsed, seeding to last ledger note", |r| {
            format!("{:.1} s", r.elapsed_s)
        }),
        ("workflows per second", |r| {
            format!("{:.1}", r.workflows_per_s)
        }),
        ("operatory-to-ledger p50", |r| {
            format!("{:.0} ms", r.o2l_p50_ms)
        }),
        ("operatory-to-ledger p99", |r| {
            format!("{:.0} ms", r.o2l_p99_ms)
        }),
        ("operatory-to-ledger mean", |r| {
            format!("{:.0} ms", r.o2l_mean_ms)
        }),
        ("operatory-to-patient p50 (first email or text)", |r| {
            format!("{:.0} ms ({} reached)", r.o2p_p50_ms, r.reached_patient)
        }),
        ("operatory-to-patient p99", |r| {
            format!("{:.0} ms", r.o2p_p99_ms)
        }),
        ("messages to patients (emails / texts)", |r| {
            format!("{} / {}", r.emails, r.texts)
        }),
        ("external calls per workflow", |r| {
            format!("{:.1}", r.external_calls as f64 / r.workflows.max(1) as f64)
        }),
        ("waiting on external calls, per workflow", |r| {
            format!("{:.0} ms", r.external_wait_per_workflow_ms)
        }),
        (
            "mean o2l minus external wait (own + queue + timers + patient)",
            |r| format!("{:.0} ms", r.not_external_per_workflow_ms),
        ),
        ("steps per workflow", |r| {
            format!("{:.1}", r.steps as f64 / r.workflows.max(1) as f64)
        }),
        ("CPU (user+sys) per workflow, the whole process", |r| {
            format!("{:.2} ms", r.cpu_per_workflow_ms)
        }),
        ("Chairside's CPU per external call", |r| {
            format!("{:.3} ms", r.chairside_cpu_per_external_call_ms)
        }),
        ("the whole process's CPU per external call", |r| {
            format!("{:.3} ms", r.cpu_per_external_call_ms)
        }),
        ("CPU: Chairside's / the bench harness's", |r| {
            format!("{:.0} / {:.0} ms", r.chairside_cpu_ms, r.harness_cpu_ms)
        }),
        ("CPU in all / sandbox's (separate process)", |r| {
            format!("{:.0} / {:.0} ms", r.cpu_ms, r.sandbox_cpu_ms)
        }),
        ("share of our CPU on SQLite's threads", |r| {
            format!("{:.0} %", 100.0 * r.sqlite_cpu_ms / r.cpu_ms.max(1.0))
        }),
        ("durable writes (transactions) per workflow", |r| {
            format!("{:.1}", r.writes_per_workflow)
        }),
        ("transactions / commits (syncs) per ext. call", |r| {
            format!(
                "{:.2} / {:.2}",
                r.writes_per_external_call, r.commits_per_external_call
            )
        }),
        ("practice-system polls (calls)", |r| {
            r.poll_calls.to_string()
        }),
        ("ledger notes: workflows with exactly one", |r| {
            r.with_one_note.to_string()
        }),
        ("peak resident memory (VmHWM)", |r| {
            format!("{:.1} MiB", r.peak_rss_mib)
        }),
        ("claims: due-to-claim lag mean / max", |r| {
            format!("{:.1} / {:.0} ms", r.claim_lag_mean_ms, r.claim_lag_max_ms)
        }),
        ("claims: lag p50 / p99 under (bucket bounds)", |r| {
            let bound = |b: Option<u64>| b.map_or_else(|| ">5000".to_owned(), |ms| ms.to_string());
            format!(
                "{} / {} ms",
                bound(r.claim_lag_p50_ms),
                bound(r.claim_lag_p99_ms)
            )
        }),
        ("claims (100 ms or more late)", |r| {
            format!("{} ({})", r.claims, r.claims_late)
        }),
    ];
    let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let col = 18;
    let mut out = Vec::new();
    let mut header = format!("{:<label_width$}", "profile");
    for r in &report.runs {
        header.push_str(&format!(" | {:>col$}", r.profile.name()));
    }
    out.push(header);
    out.push("-".repeat(label_width + report.runs.len() * (col + 3)));
    for (label, cell) in rows {
        let mut line = format!("{label:<label_width$}");
        for r in &report.runs {
            line.push_str(&format!(" | {:>col$}", cell(r)));
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Spread, sandbox_binary};

    #[test]
    fn a_spread_is_the_median_and_the_range_of_its_values() {
        // Arrange: odd and even counts, unsorted, one value, none, and one that is not a number.
        let odd = [0.91, 0.62, 0.75];
        let even = [1.0, 4.0, 2.0, 3.0];

        // Act + Assert
        assert_eq!(
            Spread::of(&odd),
            Some(Spread {
                median: 0.75,
                min: 0.62,
                max: 0.91
            })
        );
        assert_eq!(
            Spread::of(&even),
            Some(Spread {
                median: 2.5,
                min: 1.0,
                max: 4.0
            })
        );
        assert_eq!(
            Spread::of(&[0.5]),
            Some(Spread {
                median: 0.5,
                min: 0.5,
                max: 0.5
            })
        );
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn the_bench_zone_puts_every_hour_of_the_day_inside_the_texting_window() {
        use chrono::{TimeZone as _, Timelike as _};
        for hour in 0..24 {
            for minute in [0, 59] {
                let now = chrono::Utc
                    .with_ymd_and_hms(2026, 12, 1, hour, minute, 0)
                    .single()
                    .expect("a time");
                let local = now.with_timezone(&super::daytime_zone(now)).hour();
                assert!(
                    (10..17).contains(&local),
                    "{hour}:{minute:02} UTC is {local}h there"
                );
            }
        }
    }

    #[tokio::test]
    async fn several_instances_without_a_postgresql_url_are_refused_before_anything_starts() {
        let args = super::BenchArgs {
            instances: 3,
            database_url: None,
            // Would be refused too, later: the refusal must come first, naming the way out.
            sandbox_bin: Some("/nowhere/sandbox".into()),
            ..super::BenchArgs::default()
        };

        let err = super::measure(&args).await.expect_err("refused");

        let message = err.to_string();
        assert!(message.contains("--instances 3"), "{message}");
        assert!(message.contains("--database-url"), "{message}");
    }

    #[test]
    fn a_sandbox_bin_that_does_not_exist_is_refused_with_how_to_build_it() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let exe = dir.path().join("chairside");

        let err = sandbox_binary(Some(&dir.path().join("nowhere")), &exe).expect_err("no file");

        let message = err.to_string();
        assert!(message.contains("--sandbox-bin"), "{message}");
        assert!(
            message.contains("cargo build --release --bin sandbox"),
            "{message}"
        );
    }

    #[test]
    fn without_a_sandbox_next_to_chairside_the_error_names_both_ways_out() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let exe = dir.path().join("chairside");

        let err = sandbox_binary(None, &exe).expect_err("nothing beside it");

        let message = err.to_string();
        assert!(message.contains("--sandbox-bin PATH"), "{message}");
        assert!(
            message.contains("cargo build --release --bin chairside --bin sandbox"),
            "{message}"
        );
    }

    #[test]
    fn the_sandbox_next_to_chairside_is_found_without_building_anything() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let exe = dir.path().join("chairside");
        let sandbox = exe.with_file_name(format!("sandbox{}", std::env::consts::EXE_SUFFIX));
        std::fs::write(&sandbox, b"").expect("a stand-in file");

        let found = sandbox_binary(None, &exe).expect("found beside chairside");

        assert_eq!(found, sandbox);
    }
}
