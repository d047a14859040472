//! The `chairside` command line: the commands, their `--help`, and the operations commands
//! (`status`, `retry`, `cancel`, `migrate`, `check-config`, `hash-password`, `unlock-staff`) as
//! library functions that write to any [`Write`], so tests run them without spawning the binary.
//!
//! Output meant for people goes to standard output; logs go to standard error (human-readable,
//! or JSON with `--log-format json`) and never carry patient data.

mod logging;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use financing_core::{PracticeId, Tz};
use secrecy::{ExposeSecret as _, SecretString};

use crate::bench::BenchArgs;
use crate::config::{Config, Environment, StoreView};
use crate::demo::DemoArgs;
use chairside_engine::staff::{Refusal, StaffActions, StaffError, action_label};
use chairside_engine::store::{
    LoginStore, SchemaStore, StaffStore, Store, StoreError, WorkflowRow,
};
use chairside_workflow::{StaffAction, Stage, Status, WorkflowId};

/// The actor recorded in the audit trail for actions taken from the command line.
pub const CLI_ACTOR: &str = "cli";

pub use self::logging::{
    REDACTED_CARD, Redacting, RedactingWriter, redact_card_numbers, redacting,
};

/// Chairside: from "the patient accepted the treatment plan" to "financing arranged, payments
/// scheduled, patient informed, ledger updated".
#[derive(Debug, Parser)]
#[command(
    name = "chairside",
    version,
    about = "Chairside: patient financing from accepted treatment plan to ledger note",
    long_about = "Chairside watches the practice system for accepted treatment plans, offers the \
                  patient financing from the configured lenders, sets up deposits and installment \
                  plans in Stripe, tells the patient by email and text, and writes a ledger note \
                  back to the practice system.\n\n\
                  New here? Run `chairside demo`: it runs everything on this computer against \
                  built-in stand-ins, with made-up patients.\n\n\
                  Most commands read the configuration file given with --config (default \
                  chairside.toml, or the CHAIRSIDE_CONFIG environment variable); \
                  docs/chairside.example.toml explains every setting.",
    after_help = "Exit codes: 0 success; 1 a problem was found or the command failed; 2 the \
                  command line was wrong."
)]
pub struct Cli {
    /// Log format on standard error: `human` (default) or `json` for a log collector.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// More detail in the logs: -v for debug, -vv for trace. The RUST_LOG environment variable,
    /// when set, takes precedence.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Try Chairside safely on this computer, with made-up patients.
    ///
    /// Runs the whole chain against built-in stand-ins for the practice systems, lenders,
    /// Stripe, email and texts, and prints what happened to each plan. Touches no real system;
    /// its database lives in a temporary directory (or --dir). Exits 0 when every plan ended
    /// where it should.
    Demo(DemoArgs),

    /// Run Chairside for real (the service).
    ///
    /// Watches the practice systems for accepted plans, works with the lenders, Stripe, email
    /// and texts, writes ledger notes, and serves webhooks, patient pages and the staff
    /// dashboard. Checks the configuration and updates the database first; refuses to start if
    /// the configuration has any problem. Stops cleanly on Ctrl-C or SIGTERM.
    ///
    /// The database is a SQLite file (`[store] path`, one instance) or PostgreSQL (`[store] url
    /// = "postgres://..."`), where several instances can run on one database.
    ///
    /// Works on one CPU fewer than the machine has (at least one), leaving one to the store;
    /// TOKIO_WORKER_THREADS=N sets the number of worker threads instead. With one, every task
    /// runs on the main thread (tokio's current-thread scheduler).
    Run(ConfigArgs),

    /// List workflows and what each is waiting for.
    ///
    /// Shows the plan, the patient's initials (never more), the state, since when, the next
    /// step, and any task waiting on staff. Reads the database only; contacts no outside
    /// system.
    Status(StatusArgs),

    /// Retry a workflow that is waiting on staff.
    ///
    /// Use it once the cause is fixed (bad plan data, an unreachable patient, a failed call).
    /// The request is queued in the database; the running service (`chairside run`) carries it
    /// out within seconds, or when it next starts.
    Retry(WorkflowArgs),

    /// Cancel a workflow and undo what it set up.
    ///
    /// The workflow stops; the lender application is withdrawn, the Stripe installment schedule
    /// cancelled and the deposit link expired. Queued like retry; the running service carries it
    /// out.
    Cancel(WorkflowArgs),

    /// Start plans accepted before the install, on purpose.
    ///
    /// A fresh install starts from now: the first poll records the plans already accepted and
    /// starts none of them. This reads each practice system's plans and starts the accepted ones
    /// accepted on or after --since that have no workflow yet (their patients are contacted).
    /// With --dry-run it only lists them: practice, plan id, patient id and acceptance date, no
    /// names. Reads the practice systems; the running service carries the started plans out.
    Backfill(BackfillArgs),

    /// Create the database, or bring its tables up to date.
    ///
    /// Safe to run again; `run` does it too. Touches only the database file (and creates its
    /// directory).
    Migrate(ConfigArgs),

    /// Re-seal every stored value under the current data key.
    ///
    /// Give the new key as `data_key` with a new `data_key_id`, and the old one under
    /// `[[store.previous_data_keys]]`. Works in batches of one transaction each: safe to stop
    /// and run again. When it reports nothing left and says so, the previous key can be removed;
    /// SMS consent records written before consent re-hashing existed keep it needed.
    RotateKey(ConfigArgs),

    /// Check the configuration and list every problem.
    ///
    /// Reads the configuration file and the secrets it refers to (environment variables,
    /// files), and prints each problem with the setting it concerns and what is expected.
    /// Contacts no outside system. Exits 1 if anything is wrong.
    CheckConfig(ConfigArgs),

    /// Make the password hash for a staff dashboard login.
    ///
    /// On a terminal, asks for the password twice without showing it; from a pipe, reads one
    /// line. Prints only its hash, for [[http.staff]] password_hash in the configuration. The
    /// password is not stored.
    HashPassword,

    /// Unlock a staff dashboard login after too many failed sign-ins.
    ///
    /// Clears the account's failed sign-ins and lockout in the database (every instance sees
    /// it at once) and records the unlock in the login audit. Touches nothing else.
    UnlockStaff(UnlockArgs),

    /// Measure throughput and overhead against the built-in stand-ins.
    ///
    /// Produces the figures in docs/performance.md. Takes minutes; touches no real system.
    Bench(BenchArgs),
}

/// The configuration file.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The configuration file (docs/chairside.example.toml explains every setting).
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "CHAIRSIDE_CONFIG",
        default_value = "chairside.toml"
    )]
    pub config: PathBuf,
}

/// Options of `chairside backfill`.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Plans accepted on or after this date (YYYY-MM-DD, UTC midnight).
    #[arg(long, value_name = "DATE")]
    pub since: chrono::NaiveDate,

    /// Only this practice (its id in the configuration).
    #[arg(long, value_name = "ID")]
    pub practice: Option<String>,

    /// List what would be started; start nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `chairside status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Only this practice (its id in the configuration).
    #[arg(long, value_name = "ID")]
    pub practice: Option<String>,

    /// Include finished and cancelled workflows (by default only those in progress or waiting
    /// on staff).
    #[arg(long)]
    pub all: bool,

    /// Show at most this many workflows, most recently changed first.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: u32,
}

/// A staff login to unlock.
#[derive(Debug, Clone, Args)]
pub struct UnlockArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// The login name ([[http.staff]] username).
    #[arg(long, value_name = "NAME")]
    pub user: String,
}

/// A workflow to act on.
#[derive(Debug, Clone, Args)]
pub struct WorkflowArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// The workflow's id (wf_...), as `chairside status` shows it.
    #[arg(value_name = "WORKFLOW_ID")]
    pub workflow: String,
}

/// Sets up logging on standard error: `human` or `json`, at info for Chairside (debug with
/// `-v`, trace with `-vv`) unless `RUST_LOG` says otherwise. Every line passes through
/// [`redact_card_numbers`] on its way out.
///
/// # Errors
/// A logger is already installed, or `RUST_LOG` is malformed.
pub fn init_tracing(format: LogFormat, verbose: u8, quiet: bool) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        // The demo and the bench print tables; their per-request logs would bury them.
        0 if quiet => "warn",
        0 => "warn,orchestrator=info,chairside=info",
        1 => "info,orchestrator=debug,chairside=debug",
        _ => "debug,orchestrator=trace,chairside=trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(spec).context("RUST_LOG is not a valid log filter")?
        }
        _ => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(logging::redacting(std::io::stderr));
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Runs a parsed command line. Returns the process exit code.
///
/// # Errors
/// A command that could not run (the database cannot be opened, the demo cannot start). Problems
/// a command reports itself (a bad configuration, an unknown workflow) are an exit code of 1.
pub async fn dispatch(cli: Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    let now = Utc::now();
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Run(args) => run(&args.config, out).await,
        Command::Backfill(args) => backfill(&args, out).await,
        Command::CheckConfig(args) => check_config(&args.config, &Environment::from_process(), out),
        Command::HashPassword => {
            use std::io::IsTerminal as _;
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                // rpassword turns echo off and prompts on the terminal itself, so stdout carries
                // the hash alone.
                let mut ask = |prompt: &str| rpassword::prompt_password(prompt);
                hash_password_prompted(&mut ask, out)
            } else {
                hash_password(&mut stdin.lock(), out)
            }
        }
        Command::UnlockStaff(args) => {
            let Some(view) = store_view(&args.config.config, out)? else {
                return Ok(1);
            };
            let store = open_existing(&view).await?;
            unlock_staff(&*store, &args.user, now, out).await
        }
        Command::Migrate(args) => {
            let Some(view) = store_view(&args.config, out)? else {
                return Ok(1);
            };
            migrate(&view, out).await
        }
        Command::RotateKey(args) => {
            let Some(view) = store_view(&args.config, out)? else {
                return Ok(1);
            };
            rotate_key(&view, ROTATE_BATCH, out).await
        }
        Command::Status(args) => {
            let Some(view) = store_view(&args.config.config, out)? else {
                return Ok(1);
            };
            let store = open_existing(&view).await?;
            let practice = args.practice.map(PracticeId::new);
            status(
                &*store,
                practice.as_ref(),
                args.all,
                args.limit,
                &view.time_zones,
                now,
                out,
            )
            .await
        }
        Command::Retry(args) | Command::Cancel(args) if args.workflow.trim().is_empty() => {
            writeln!(out, "no workflow id given")?;
            Ok(1)
        }
        Command::Retry(args) => staff_command(&args, StaffAction::Retry, now, out).await,
        Command::Cancel(args) => staff_command(&args, StaffAction::Cancel, now, out).await,
    }
}

async fn staff_command(
    args: &WorkflowArgs,
    action: StaffAction,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let Some(view) = store_view(&args.config.config, out)? else {
        return Ok(1);
    };
    let store = open_existing(&view).await?;
    let id = WorkflowId::new(args.workflow.trim());
    staff_action(&*store, &id, action, now, out).await
}

/// Loads what the operations commands need; prints the problems and returns `None` when the
/// `[store]` section is wrong.
fn store_view(path: &Path, out: &mut dyn Write) -> anyhow::Result<Option<StoreView>> {
    match Config::load_store(path, &Environment::from_process()) {
        Ok(view) => Ok(Some(view)),
        Err(report) => {
            write_report(path, &report, out)?;
            Ok(None)
        }
    }
}

/// Opens the configured database for an operations command: the SQLite file, which must exist, or
/// the PostgreSQL database.
async fn open_existing(view: &StoreView) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if view.store.postgres.is_some() {
        let opened = view
            .store
            .open_any(chairside_engine::store::Durability::Full, 4)
            .await
            .with_context(|| format!("opening the database {}", view.store.describe()))?;
        return Ok(opened.store);
    }
    Ok(std::sync::Arc::new(open_existing_sqlite(view).await?))
}

async fn open_existing_sqlite(
    view: &StoreView,
) -> anyhow::Result<chairside_engine::store::SqliteStore> {
    let path = &view.store.path;
    if !path.exists() {
        anyhow::bail!(
            "there is no database at {}: check [store] path, or create it with `chairside migrate`",
            path.display()
        );
    }
    view.store
        .open()
        .await
        .with_context(|| format!("opening the database {}", path.display()))
}

fn write_report(
    path: &Path,
    report: &crate::config::ConfigReport,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let n = report.problems.len();
    writeln!(
        out,
        "{}: {n} {}",
        path.display(),
        if n == 1 { "problem" } else { "problems" }
    )?;
    for p in &report.problems {
        writeln!(out, "  {p}")?;
    }
    Ok(())
}

/// `chairside run`: loads and checks the whole configuration, creates or updates the database,
/// then runs the service ([`crate::app::run`]).
///
/// # Errors
/// The database cannot be opened or migrated, or the service fails.
pub async fn run(path: &Path, out: &mut dyn Write) -> anyhow::Result<i32> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(report) => {
            // The service refuses to start on a bad configuration: the problems go to stderr,
            // where service managers collect them.
            write_report(path, &report, &mut std::io::stderr())?;
            return Ok(1);
        }
    };
    let view = StoreView {
        store: config.store.clone(),
        time_zones: HashMap::new(),
    };
    let mut sink = std::io::sink();
    migrate(&view, &mut sink).await?;
    writeln!(
        out,
        "chairside: serving {} practices on {}",
        config.practices.len(),
        config.http.listen
    )?;
    crate::app::run(config).await
}

/// `chairside backfill`: starts (or with `--dry-run` lists) the accepted plans accepted on or
/// after `--since` that have no workflow yet. Prints ids and dates only.
///
/// # Errors
/// The database or a client cannot be opened.
pub async fn backfill(args: &BackfillArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let config = match Config::load(&args.config.config) {
        Ok(c) => c,
        Err(report) => {
            write_report(&args.config.config, &report, out)?;
            return Ok(1);
        }
    };
    let practice = args.practice.as_deref().map(PracticeId::new);
    if let Some(p) = &practice
        && !config.practices.iter().any(|c| c.id == *p)
    {
        writeln!(out, "no practice '{p}' in the configuration")?;
        return Ok(1);
    }
    let service = crate::app::build(
        &config,
        crate::app::Extras::default(),
        chairside_http::Metrics::local(),
    )
    .await?;
    backfill_with(
        &service.runner,
        practice.as_ref(),
        args.since,
        args.dry_run,
        out,
    )
    .await
}

/// The body of `chairside backfill` over a built runner.
///
/// # Errors
/// Store errors; writing to `out`.
pub async fn backfill_with(
    runner: &chairside_engine::runner::Runner,
    practice: Option<&PracticeId>,
    since: chrono::NaiveDate,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let since = since.and_time(chrono::NaiveTime::MIN).and_utc();
    let items = runner.backfill(practice, since, dry_run).await?;
    for i in &items {
        writeln!(
            out,
            "{}\tplan {}\tpatient {}\taccepted {}",
            i.practice_id,
            i.plan_id,
            i.patient_id,
            i.accepted_at.map_or_else(
                || "unknown".to_owned(),
                |t| t.format("%Y-%m-%d").to_string()
            )
        )?;
    }
    writeln!(
        out,
        "{} {} plan{}",
        if dry_run { "would start" } else { "started" },
        items.len(),
        if items.len() == 1 { "" } else { "s" }
    )?;
    Ok(0)
}

/// `chairside check-config`: prints every problem of the configuration at `path`, or a summary of
/// what it configures. Returns 1 when there is any problem.
///
/// # Errors
/// Writing to `out` failed.
pub fn check_config(path: &Path, env: &Environment, out: &mut dyn Write) -> anyhow::Result<i32> {
    let config = match Config::load_with(path, env) {
        Ok(c) => c,
        Err(report) => {
            write_report(path, &report, out)?;
            return Ok(1);
        }
    };
    writeln!(out, "{}: OK", path.display())?;
    writeln!(out, "  database: {}", config.store.describe())?;
    writeln!(
        out,
        "  web server: {} (public address {})",
        config.http.listen, config.http.public_base_url
    )?;
    writeln!(
        out,
        "  texts: {}",
        if config.twilio.is_some() {
            "Twilio"
        } else {
            "off (no [twilio] section)"
        }
    )?;
    for p in &config.practices {
        let lenders: Vec<&str> = p.lenders.order.iter().map(|l| l.as_str()).collect();
        writeln!(
            out,
            "  practice {} ({}, {}): practice system {}; lenders {}{}; email {}",
            p.id,
            p.state,
            p.time_zone.name(),
            p.pms.kind(),
            if lenders.is_empty() {
                "none".to_owned()
            } else {
                lenders.join(" then ")
            },
            if p.lenders.in_house_fallback {
                ", then the in-house plan"
            } else {
                ""
            },
            if p.smtp.is_some() { "on" } else { "off" },
        )?;
    }
    Ok(0)
}

/// Rows re-sealed per transaction by `rotate-key`: short write locks, so a running service keeps
/// working beside it.
const ROTATE_BATCH: u32 = 200;

/// `chairside rotate-key`: migrates, then re-seals every value not under the current key.
///
/// # Errors
/// The database cannot be opened, or a value no configured key opens (the error names its table
/// and row).
pub async fn rotate_key(view: &StoreView, batch: u32, out: &mut dyn Write) -> anyhow::Result<i32> {
    // Either store: SQLite re-seals under its one write lock; PostgreSQL locks each batch's rows,
    // so running instances keep working beside it.
    let (report, left) = if let Some(url) = &view.store.postgres {
        use secrecy::ExposeSecret as _;
        let store = chairside_engine::store::PostgresStore::connect_with(
            url.expose_secret(),
            view.store.keyring().context("the data keys")?,
            chairside_engine::store::Durability::Full,
            2,
        )
        .await
        .with_context(|| format!("opening the database {}", view.store.describe()))?;
        store.migrate().await.context("updating the database")?;
        let report = store
            .rotate_key(batch)
            .await
            .context("re-sealing under the current data key")?;
        let left = store
            .rows_not_under_current_key()
            .await
            .context("counting what is left")?;
        (report, left)
    } else {
        let store = open_existing_sqlite(view).await?;
        store.migrate().await.context("updating the database")?;
        let report = store
            .rotate_key(batch)
            .await
            .context("re-sealing under the current data key")?;
        let left = store
            .rows_not_under_current_key()
            .await
            .context("counting what is left")?;
        (report, left)
    };
    for (table, n) in &report.resealed {
        writeln!(out, "{table}: {n} re-sealed")?;
    }
    writeln!(
        out,
        "{} values re-sealed in {} batches under data key {}; {left} left",
        report.total(),
        report.batches,
        view.store.data_key_id
    )?;
    let stuck = report.consent_not_rehashable;
    if stuck != 0 {
        // Withdrawal always wins: an opt-out hashed under a removed key is no longer found.
        writeln!(
            out,
            "{stuck} SMS consent records were written before this version and cannot be re-hashed: \
             keep every previous data key configured until each of those numbers changes consent \
             again; running rotate-key again does not help"
        )?;
    } else if left == 0 {
        writeln!(out, "the previous data keys can now be removed")?;
    }
    Ok(i32::from(left != 0 || stuck != 0))
}

/// `chairside migrate`: creates the database (and its directory) if needed and applies pending
/// migrations.
///
/// # Errors
/// The directory cannot be created, or the database cannot be opened or migrated.
pub async fn migrate(view: &StoreView, out: &mut dyn Write) -> anyhow::Result<i32> {
    let what = view.store.describe();
    if view.store.postgres.is_none() {
        let path = &view.store.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the directory {}", dir.display()))?;
        }
    }
    let store = view
        .store
        .open_any(chairside_engine::store::Durability::Full, 4)
        .await
        .with_context(|| format!("opening the database {what}"))?
        .store;
    store
        .migrate()
        .await
        .with_context(|| format!("updating the database {what}"))?;
    let ready = store.ready().await.context("checking the database")?;
    if !ready {
        anyhow::bail!("the database {what} does not report ready after migrating");
    }
    tracing::info!("database migrated");
    writeln!(out, "database {what} is up to date")?;
    Ok(0)
}

/// One line of `chairside status`. Patient data is initials only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// The workflow.
    pub workflow: WorkflowId,
    /// The practice.
    pub practice: PracticeId,
    /// The plan's id in the practice system.
    pub plan: String,
    /// The patient's initials (`J.D.`), `-` before the plan was read, `??` when the record cannot
    /// be decrypted.
    pub patient: String,
    /// The status.
    pub status: Status,
    /// Where it stands, in words.
    pub state: String,
    /// When it last changed, in the practice's time zone, and how long ago.
    pub since: String,
    /// What happens next, and when.
    pub next_step: String,
    /// The open staff task, if any: kind and reason.
    pub task: String,
}

/// The rows of `chairside status`, most recently changed first: workflows in progress or waiting
/// on staff, or all of them with `all`. Times show in the practice's zone from `zones` (UTC when
/// unknown).
///
/// # Errors
/// The store failed (a patient record that cannot be decrypted shows as `??` instead).
pub async fn status_rows(
    store: &dyn Store,
    practice: Option<&PracticeId>,
    all: bool,
    limit: u32,
    zones: &HashMap<PracticeId, Tz>,
    now: DateTime<Utc>,
) -> Result<Vec<StatusRow>, StoreError> {
    let mut rows: Vec<WorkflowRow> = if all {
        store.workflows(practice, None, limit).await?
    } else {
        let mut r = store
            .workflows(practice, Some(Status::WaitingOnStaff), limit)
            .await?;
        r.extend(
            store
                .workflows(practice, Some(Status::Active), limit)
                .await?,
        );
        r
    };
    rows.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| a.state.id.cmp(&b.state.id))
    });
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let s = &row.state;
        let patient = match store.patient(&s.key.practice_id, &s.patient_id).await {
            Ok(Some(contact)) => contact.initials(),
            Ok(None) => "-".to_owned(),
            Err(StoreError::Crypto(_)) => "??".to_owned(),
            Err(e) => return Err(e),
        };
        let tz = zones.get(&s.key.practice_id).copied();
        let status_words = s.status.label().replace('_', " ");
        let state = match (s.status, &s.stage) {
            (Status::Active, _) => s.stage_label(),
            (_, Stage::Settled) => status_words,
            // Settled in status but with steps left, such as the outcome note of a cancellation.
            _ => format!("{status_words}; {}", s.stage_label()),
        };
        let next_step = next_step(&row, now, tz);
        let task = s.staff_task.as_ref().map_or_else(
            || "-".to_owned(),
            |t| shorten(&format!("{}: {}", t.kind.label(), t.reason), 80),
        );
        out.push(StatusRow {
            workflow: s.id.clone(),
            practice: s.key.practice_id.clone(),
            plan: s.key.plan_id.to_string(),
            patient,
            status: s.status,
            state,
            since: format!(
                "{} ({})",
                local_time(row.updated_at, tz),
                ago(now - row.updated_at)
            ),
            next_step,
            task,
        });
    }
    Ok(out)
}

/// The runner's action labels in words.
fn action_words(label: &str) -> &str {
    match label {
        "load_plan" => "read the plan",
        "lookup_cardholder" => "cardholder lookup",
        "start_application" => "open the application",
        "poll_application" => "check the application",
        "cancel_application" => "withdraw the application",
        "ensure_customer" => "Stripe customer",
        "create_deposit_link" => "deposit link",
        "create_schedule" => "installment schedule",
        "cancel_schedule" => "cancel the schedule",
        "expire_deposit_link" => "expire the deposit link",
        "send_message" => "message the patient",
        "write_note" => "ledger note",
        other => other,
    }
}

fn next_step(row: &WorkflowRow, now: DateTime<Utc>, tz: Option<Tz>) -> String {
    let when = |at: DateTime<Utc>| {
        if at <= now {
            "now".to_owned()
        } else {
            format!("in {} ({})", span(at - now), local_time(at, tz))
        }
    };
    match (&row.next_action, row.next_due_at) {
        (Some(action), Some(at)) => format!("{} {}", action_words(action), when(at)),
        (Some(action), None) => action_words(action).to_owned(),
        (None, Some(at)) if row.state.status == Status::Active => format!("wake up {}", when(at)),
        _ if row.state.status == Status::WaitingOnStaff => "staff decision".to_owned(),
        _ => "-".to_owned(),
    }
}

fn local_time(at: DateTime<Utc>, tz: Option<Tz>) -> String {
    match tz {
        Some(tz) => at
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string(),
        None => at.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

fn ago(d: chrono::Duration) -> String {
    if d.num_seconds() < 60 {
        "just now".to_owned()
    } else {
        format!("{} ago", span(d))
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

/// Writes the rows as an aligned table, with a summary line.
///
/// # Errors
/// Writing to `out` failed.
pub fn write_status_table(
    rows: &[StatusRow],
    all: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if rows.is_empty() {
        if all {
            writeln!(out, "No workflows.")?;
        } else {
            writeln!(
                out,
                "No workflows in progress or waiting on staff (--all shows finished ones too)."
            )?;
        }
        return Ok(());
    }
    let header = [
        "WORKFLOW",
        "PRACTICE",
        "PLAN",
        "PATIENT",
        "STATE",
        "SINCE",
        "NEXT STEP",
        "TASK",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.workflow.to_string(),
                r.practice.to_string(),
                r.plan.clone(),
                r.patient.clone(),
                r.state.clone(),
                r.since.clone(),
                r.next_step.clone(),
                r.task.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, row: &[&str]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &header)?;
    for row in &cells {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &refs)?;
    }
    let waiting = rows
        .iter()
        .filter(|r| r.status == Status::WaitingOnStaff)
        .count();
    let n = rows.len();
    writeln!(
        out,
        "\n{n} {}, {waiting} waiting on staff",
        if n == 1 { "workflow" } else { "workflows" }
    )?;
    if rows.iter().any(|r| r.patient == "??") {
        writeln!(
            out,
            "?? = the patient record could not be decrypted: is [store] data key the one the \
             service uses?"
        )?;
    }
    Ok(())
}

/// `chairside status`: the table of [`status_rows`].
///
/// # Errors
/// The store failed, or writing to `out` failed.
pub async fn status(
    store: &dyn Store,
    practice: Option<&PracticeId>,
    all: bool,
    limit: u32,
    zones: &HashMap<PracticeId, Tz>,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let rows = status_rows(store, practice, all, limit, zones, now)
        .await
        .context("reading workflows")?;
    write_status_table(&rows, all, out)?;
    Ok(0)
}

/// `chairside retry` and `chairside cancel`: hands the decision to [`StaffActions`] as
/// [`CLI_ACTOR`], which checks the workflow and, in one transaction, queues `Event::Staff` (the
/// runner applies it under its lease), closes the open tasks and records the audit line. Returns
/// 1, writing nothing, for an unknown workflow or a decision the workflow does not admit (a retry
/// of a workflow not waiting on staff, a decision already queued); 0 for a cancel of a cancelled
/// workflow.
///
/// # Errors
/// The store failed, or writing to `out` failed.
pub async fn staff_action(
    store: &dyn StaffStore,
    workflow: &WorkflowId,
    action: StaffAction,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let staff = StaffActions::new(store, CLI_ACTOR);
    match staff.act(staff.request(workflow, action), now).await {
        Ok(_) => {
            writeln!(
                out,
                "{} queued for workflow {workflow}; the running service (`chairside run`) \
                 carries it out within seconds, or when it next starts",
                action_label(action)
            )?;
            Ok(0)
        }
        Err(StaffError::Refused(Refusal::UnknownWorkflow(_))) => {
            writeln!(
                out,
                "there is no workflow {workflow}; `chairside status --all` lists them"
            )?;
            Ok(1)
        }
        Err(StaffError::Refused(refusal @ Refusal::AlreadyCancelled(_))) => {
            writeln!(out, "{refusal}")?;
            Ok(0)
        }
        Err(StaffError::Refused(refusal)) => {
            writeln!(out, "{refusal}")?;
            Ok(1)
        }
        Err(e) => Err(anyhow::Error::new(e)),
    }
}

/// `chairside unlock-staff`: clears `user`'s failed sign-ins and lockout, audited as done by
/// [`CLI_ACTOR`]. Returns 1 for an empty name.
///
/// # Errors
/// The store failed, or writing to `out` failed.
pub async fn unlock_staff(
    store: &dyn LoginStore,
    user: &str,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let user = user.trim();
    if user.is_empty() {
        writeln!(out, "no staff login name given (--user NAME)")?;
        return Ok(1);
    }
    if store.unlock_staff(user, CLI_ACTOR, now).await? {
        writeln!(
            out,
            "staff login {user:?} unlocked: its failed sign-ins are cleared"
        )?;
    } else {
        writeln!(
            out,
            "staff login {user:?} had no failed sign-ins or lockout to clear"
        )?;
    }
    Ok(0)
}

/// The shortest password `hash-password` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// `chairside hash-password`: reads one line (the password) from `input` and writes its argon2id
/// PHC hash. Returns 1 for an empty or short password.
///
/// # Errors
/// Reading or writing failed, or hashing failed.
pub fn hash_password(input: &mut dyn BufRead, out: &mut dyn Write) -> anyhow::Result<i32> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading the password")?;
    let password = SecretString::from(line.trim_end_matches(['\n', '\r']).to_owned());
    hash_checked(&password, out)
}

/// `chairside hash-password` on a terminal: asks for the password twice through `ask` (which
/// reads without echo) and writes its argon2id PHC hash. Returns 1 when the two differ or the
/// password is short; nothing is hashed then.
///
/// # Errors
/// Reading or writing failed, or hashing failed.
pub fn hash_password_prompted(
    ask: &mut dyn FnMut(&str) -> std::io::Result<String>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let first = SecretString::from(
        ask(&format!(
            "Password for the staff login (at least {MIN_PASSWORD_CHARS} characters): "
        ))
        .context("reading the password")?,
    );
    let second =
        SecretString::from(ask("The same password again: ").context("reading the password")?);
    if first.expose_secret() != second.expose_secret() {
        writeln!(out, "the two passwords differ; nothing was hashed")?;
        return Ok(1);
    }
    hash_checked(&first, out)
}

fn hash_checked(password: &SecretString, out: &mut dyn Write) -> anyhow::Result<i32> {
    let password = password.expose_secret();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        writeln!(
            out,
            "the password must have at least {MIN_PASSWORD_CHARS} characters; nothing was hashed"
        )?;
        return Ok(1);
    }
    let hash = chairside_http::hash_password(&SecretString::from(password.to_owned()))
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    writeln!(out, "{hash}")?;
    Ok(0)
}
