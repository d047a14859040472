//! Tests of the command line: argument parsing, and the operations commands against a SQLite
//! file in a temporary directory, called as library functions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use clap::{CommandFactory as _, Parser as _};
use financing_core::{
    DepositRule, Language, PartialApprovalRule, PatientContact, PatientId, PlanId, PracticeId,
    SmsConsent, Waterfall, WaterfallPolicy,
};

use super::*;
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::prelude::*;
use chairside_engine::store::{Consumed, NewWorkflow, SqliteStore, WorkItem};
use chairside_workflow::machine::apply;
use chairside_workflow::{Event, TaskKind, WorkflowConfig, WorkflowKey, WorkflowState};

const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0)
        .single()
        .expect("a valid time")
}

fn mins(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::minutes(n)
}

struct Db {
    dir: tempfile::TempDir,
    store: SqliteStore,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(
        &dir.path().join("chairside.sqlite"),
        DataKey::parse(KEY_HEX).expect("key"),
    )
    .await
    .expect("open");
    store.migrate().await.expect("migrate");
    Db { dir, store }
}

/// A made-up patient.
fn patient(id: &str, first: &str, last: &str) -> PatientContact {
    PatientContact {
        id: PatientId::new(id),
        first_name: first.into(),
        last_name: last.into(),
        date_of_birth: None,
        mobile_phone: Some("+15555550100".into()),
        email: Some("testa@example.test".into()),
        address: None,
        preferred_language: Language::En,
        time_zone: None,
        sms_consent: SmsConsent::None,
    }
}

/// Records an accepted plan, as the poller would, and the patient's contact data.
async fn accept(
    store: &SqliteStore,
    practice: &str,
    plan: &str,
    who: &PatientContact,
) -> WorkflowId {
    let practice_id = PracticeId::new(practice);
    let key = WorkflowKey {
        practice_id: practice_id.clone(),
        plan_id: PlanId::new(plan),
        revision: "1".into(),
    };
    let mut state = WorkflowState::new(key, who.id.clone(), t0());
    let first = state.start();
    let created = store
        .record_poll(
            &practice_id,
            "fakepms",
            plan,
            vec![NewWorkflow { state, first }],
            vec![],
            t0(),
        )
        .await
        .expect("record poll");
    store
        .put_patient(&practice_id, who, t0())
        .await
        .expect("put patient");
    created.into_iter().next().expect("created")
}

fn workflow_config() -> WorkflowConfig {
    WorkflowConfig {
        waterfall: Waterfall::new(
            Vec::new(),
            WaterfallPolicy {
                on_partial: PartialApprovalRule::StopForStaff,
                in_house_fallback: false,
            },
        ),
        deposit: DepositRule::None,
        in_house: None,
        reminder_delays: vec![Duration::from_secs(3_600)],
        give_up_after: Duration::from_secs(3_600),
        poll_interval: Duration::from_secs(60),
        lender_schedules: Vec::new(),
        payment_preference: chairside_workflow::PaymentPreference::PayLink,
        time_zone: None,
        lender_names: Vec::new(),
    }
}

/// Does what the runner does for one item of `id`: claims it, takes its next item (an inbox
/// event, or the pending command answered with `answer`), applies it and commits.
async fn step(
    store: &SqliteStore,
    id: &WorkflowId,
    at: DateTime<Utc>,
    answer: Option<Event>,
) -> WorkflowState {
    let claims = store
        .claim_due("test-runner", at, Duration::from_secs(30), 100)
        .await
        .expect("claim");
    let mut mine = None;
    for claim in claims {
        if &claim.id == id {
            mine = Some(claim);
        } else {
            store.release(&claim, at).await.expect("release");
        }
    }
    let claim = mine.expect("the workflow is due");
    let work = store.load(&claim, at).await.expect("load");
    let mut state = work.state;
    let (event, consumed) = match work.item.expect("something due") {
        WorkItem::Inbox { id, event } => (event, Consumed::Inbox(id)),
        WorkItem::Timer(kind) => (Event::TimerFired { timer: kind }, Consumed::Timer(kind)),
        WorkItem::Command { command, attempts } => {
            let key = state
                .id
                .idempotency_key(command.action.label(), command.seq);
            let attempt = store
                .begin_effect(&claim, &command, attempts + 1, &key, at)
                .await
                .expect("begin effect");
            let consumed = Consumed::Command {
                seq: command.seq,
                attempt,
                outcome: "answered by the test".into(),
            };
            (answer.expect("an answer for the command"), consumed)
        }
    };
    let label = event.label();
    let transition = apply(&mut state, event, &workflow_config(), at);
    store
        .commit(&claim, &state, consumed, label, &transition, at)
        .await
        .expect("commit");
    store.release(&claim, at).await.expect("release");
    state
}

/// A workflow whose plan could not be read: waiting on staff with a bad-data task.
async fn waiting_on_staff(store: &SqliteStore, plan: &str, who: &PatientContact) -> WorkflowId {
    let id = accept(store, "smile", plan, who).await;
    let unreadable = Event::PlanUnreadable {
        reason: "the plan has no procedures".into(),
    };
    let state = step(store, &id, mins(1), Some(unreadable)).await;
    assert_eq!(state.status, Status::WaitingOnStaff);
    id
}

fn zones() -> HashMap<PracticeId, Tz> {
    HashMap::from([(PracticeId::new("smile"), chrono_tz::America::Chicago)])
}

fn text(buf: Vec<u8>) -> String {
    String::from_utf8(buf).expect("utf-8 output")
}

// ---- Parsing --------------------------------------------------------------------------------

#[test]
fn the_command_definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn status_parses_its_filters_and_the_global_flags() {
    // Act
    let cli = Cli::try_parse_from([
        "chairside",
        "status",
        "--config",
        "/etc/chairside.toml",
        "--practice",
        "smile",
        "--all",
        "--log-format",
        "json",
        "-vv",
    ])
    .expect("parses");

    // Assert
    assert_eq!(cli.log_format, LogFormat::Json);
    assert_eq!(cli.verbose, 2);
    let Command::Status(args) = cli.command else {
        panic!("status expected")
    };
    assert_eq!(args.config.config, PathBuf::from("/etc/chairside.toml"));
    assert_eq!(args.practice.as_deref(), Some("smile"));
    assert!(args.all);
    assert_eq!(args.limit, 100);
}

#[test]
fn retry_and_cancel_take_a_workflow_id_and_default_to_chairside_toml() {
    // Act
    let retry = Cli::try_parse_from(["chairside", "retry", "wf_0123"]).expect("parses");
    let cancel =
        Cli::try_parse_from(["chairside", "cancel", "-c", "x.toml", "wf_0456"]).expect("parses");
    let missing = Cli::try_parse_from(["chairside", "retry"]);

    // Assert
    let Command::Retry(r) = retry.command else {
        panic!("retry expected")
    };
    assert_eq!(r.workflow, "wf_0123");
    assert_eq!(retry.log_format, LogFormat::Human);
    // CHAIRSIDE_CONFIG may be set where tests run; without it the default applies.
    if std::env::var_os("CHAIRSIDE_CONFIG").is_none() {
        assert_eq!(r.config.config, PathBuf::from("chairside.toml"));
    }
    let Command::Cancel(c) = cancel.command else {
        panic!("cancel expected")
    };
    assert_eq!(
        (c.workflow.as_str(), c.config.config.to_str()),
        ("wf_0456", Some("x.toml"))
    );
    assert_eq!(
        missing.expect_err("no id").kind(),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn every_operations_command_and_the_demo_parse() {
    for args in [
        vec!["chairside", "migrate", "--config", "a.toml"],
        vec!["chairside", "check-config", "--config", "a.toml"],
        vec!["chairside", "run", "--config", "a.toml"],
        vec!["chairside", "hash-password"],
        vec!["chairside", "demo"],
        vec!["chairside", "bench"],
    ] {
        assert!(Cli::try_parse_from(&args).is_ok(), "{args:?} refused");
    }
    let demo = Cli::try_parse_from(["chairside", "demo", "--dir", "/tmp/demo"]).expect("parses");
    assert!(matches!(demo.command, Command::Demo(d) if d.dir == Some(PathBuf::from("/tmp/demo"))));
    let unknown = Cli::try_parse_from(["chairside", "frobnicate"]).expect_err("unknown");
    assert_eq!(unknown.kind(), clap::error::ErrorKind::InvalidSubcommand);
    let bad_format = Cli::try_parse_from(["chairside", "--log-format", "xml", "demo"]);
    assert!(bad_format.is_err());
}

#[test]
fn the_help_says_what_each_command_touches() {
    // Act
    let help = Cli::command().render_long_help().to_string();
    let status = Cli::command()
        .find_subcommand_mut("status")
        .expect("status")
        .render_long_help()
        .to_string();

    // Assert
    for words in [
        "chairside demo",
        "demo",
        "run",
        "status",
        "retry",
        "cancel",
        "migrate",
        "check-config",
    ] {
        assert!(help.contains(words), "{words} missing from --help");
    }
    assert!(status.contains("contacts no outside system"));
    assert!(status.contains("initials"));
}

// ---- Operations commands --------------------------------------------------------------------

#[tokio::test]
async fn status_lists_open_workflows_with_initials_only() {
    // Arrange
    let db = db().await;
    let janet = patient("pat-1", "janet", "Doeberg");
    let tom = patient("pat-2", "Tomas", "Sampleton");
    let active = accept(&db.store, "smile", "tx-1", &janet).await;
    let waiting = waiting_on_staff(&db.store, "tx-2", &tom).await;

    // Act
    let rows = status_rows(&db.store, None, false, 100, &zones(), mins(90))
        .await
        .expect("rows");
    let mut out = Vec::new();
    let code = status(&db.store, None, false, 100, &zones(), mins(90), &mut out)
        .await
        .expect("status");
    let table = text(out);

    // Assert
    assert_eq!(code, 0);
    assert_eq!(rows.len(), 2);
    let by_id = |id: &WorkflowId| rows.iter().find(|r| &r.workflow == id).expect("row");
    let a = by_id(&active);
    assert_eq!(a.patient, "J.D.");
    assert_eq!(a.plan, "tx-1");
    assert_eq!(a.state, "reading plan");
    assert_eq!(a.next_step, "read the plan now");
    assert_eq!(a.task, "-");
    assert_eq!(a.since, "2026-03-02 09:00 CST (1h ago)");
    let w = by_id(&waiting);
    assert_eq!(w.patient, "T.S.");
    assert_eq!(w.status, Status::WaitingOnStaff);
    assert!(w.task.starts_with("bad_data: "), "{}", w.task);
    assert_eq!(rows[0].workflow, waiting, "most recently changed first");
    assert!(table.starts_with("WORKFLOW"));
    assert!(table.contains("J.D.") && table.contains("T.S."));
    assert!(table.contains("2 workflows, 1 waiting on staff"));
    for phi in [
        "janet",
        "Janet",
        "Doeberg",
        "Tomas",
        "Sampleton",
        "+1555",
        "example.test",
    ] {
        assert!(!table.contains(phi), "{phi} shown in the status table");
    }
}

#[tokio::test]
async fn status_filters_by_practice_and_hides_finished_workflows_unless_asked() {
    // Arrange
    let db = db().await;
    let id = accept(&db.store, "smile", "tx-1", &patient("pat-1", "A", "B")).await;
    accept(&db.store, "grin", "tx-9", &patient("pat-9", "C", "D")).await;
    let mut sink = Vec::new();
    staff_action(&db.store, &id, StaffAction::Cancel, mins(2), &mut sink)
        .await
        .expect("cancel");
    let state = step(&db.store, &id, mins(3), None).await;
    assert_eq!(state.status, Status::Cancelled);

    // Act
    let smile = PracticeId::new("smile");
    let open_smile = status_rows(&db.store, Some(&smile), false, 100, &zones(), mins(5))
        .await
        .expect("rows");
    let all_smile = status_rows(&db.store, Some(&smile), true, 100, &zones(), mins(5))
        .await
        .expect("rows");
    let everything = status_rows(&db.store, None, true, 100, &zones(), mins(5))
        .await
        .expect("rows");
    let mut out = Vec::new();
    status(
        &db.store,
        Some(&smile),
        false,
        100,
        &zones(),
        mins(5),
        &mut out,
    )
    .await
    .expect("status");

    // Assert
    assert!(open_smile.is_empty());
    assert_eq!(all_smile.len(), 1);
    assert_eq!(all_smile[0].status, Status::Cancelled);
    assert_eq!(all_smile[0].state, "cancelled; writing ledger note");
    assert!(
        all_smile[0].next_step.ends_with(" now"),
        "a cancelled workflow with steps left still shows them: {}",
        all_smile[0].next_step
    );
    assert_eq!(everything.len(), 2);
    let grin = everything
        .iter()
        .find(|r| r.practice.as_str() == "grin")
        .expect("grin");
    assert!(
        grin.since.ends_with("UTC (5m ago)"),
        "no zone known: {}",
        grin.since
    );
    assert!(text(out).contains("--all shows finished ones"));
}

#[tokio::test]
async fn retry_queues_a_staff_event_that_the_runner_applies() {
    // Arrange
    let db = db().await;
    let id = waiting_on_staff(&db.store, "tx-1", &patient("pat-1", "A", "B")).await;
    assert_eq!(db.store.tasks(None, false).await.expect("tasks").len(), 1);

    // Act
    let mut out = Vec::new();
    let code = staff_action(&db.store, &id, StaffAction::Retry, mins(5), &mut out)
        .await
        .expect("retry");
    let state = step(&db.store, &id, mins(6), None).await;

    // Assert
    assert_eq!(code, 0);
    assert!(text(out).contains("retry queued"));
    assert_eq!(state.status, Status::Active, "the queued retry was applied");
    assert_eq!(state.stage, Stage::LoadingPlan);
    assert!(db.store.tasks(None, false).await.expect("tasks").is_empty());
    let audit = db.store.audit(&id).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.actor == CLI_ACTOR && a.kind == "staff_action" && a.detail == "retry")
    );
}

#[tokio::test]
async fn retry_refuses_a_workflow_that_is_not_waiting_on_staff_and_queues_nothing() {
    // Arrange
    let db = db().await;
    let id = accept(&db.store, "smile", "tx-1", &patient("pat-1", "A", "B")).await;

    // Act
    let mut out = Vec::new();
    let code = staff_action(&db.store, &id, StaffAction::Retry, mins(5), &mut out)
        .await
        .expect("retry");

    // Assert
    assert_eq!(code, 1);
    assert!(text(out).contains("is active: only a workflow waiting on staff"));
    let state = step(
        &db.store,
        &id,
        mins(6),
        Some(Event::PlanUnreadable { reason: "x".into() }),
    )
    .await;
    assert_eq!(
        state.staff_task.map(|t| t.kind),
        Some(TaskKind::BadData),
        "the next item was still the pending command, not a queued event"
    );
    assert!(
        db.store
            .audit(&id)
            .await
            .expect("audit")
            .iter()
            .all(|a| a.actor != CLI_ACTOR)
    );
}

#[tokio::test]
async fn cancel_reports_unknown_and_already_cancelled_workflows() {
    // Arrange
    let db = db().await;
    let id = accept(&db.store, "smile", "tx-1", &patient("pat-1", "A", "B")).await;
    let mut out = Vec::new();
    staff_action(&db.store, &id, StaffAction::Cancel, mins(1), &mut out)
        .await
        .expect("cancel");
    step(&db.store, &id, mins(2), None).await;

    // Act
    let mut again = Vec::new();
    let again_code = staff_action(&db.store, &id, StaffAction::Cancel, mins(3), &mut again)
        .await
        .expect("cancel again");
    let mut unknown = Vec::new();
    let unknown_code = staff_action(
        &db.store,
        &WorkflowId::new("wf_nothing"),
        StaffAction::Cancel,
        mins(3),
        &mut unknown,
    )
    .await
    .expect("unknown");

    // Assert
    assert!(text(out).contains("cancel queued"));
    assert_eq!(again_code, 0);
    assert!(text(again).contains("already cancelled"));
    assert_eq!(unknown_code, 1);
    assert!(text(unknown).contains("there is no workflow wf_nothing"));
}

/// A configuration whose secrets come from files, so the commands run without touching the
/// process environment.
fn write_config(dir: &std::path::Path, store_path: &str) -> PathBuf {
    std::fs::write(dir.join("data_key"), KEY_HEX).expect("key file");
    std::fs::write(dir.join("link_key"), "l".repeat(40)).expect("link key file");
    std::fs::write(dir.join("stripe"), "sk_test_fromfile").expect("stripe");
    std::fs::write(dir.join("hooks"), "whsec_a\nwhsec_b\n").expect("hooks");
    std::fs::write(dir.join("pms"), "pms-secret").expect("pms");
    let text = format!(
        r#"
[store]
path = "{store_path}"
data_key_file = "data_key"

[http]
public_base_url = "https://pay.example.test/"
patient_link_key_file = "link_key"

[stripe]
api_key_file = "stripe"
webhook_secrets_file = "hooks"

[[practices]]
id = "smile"
name = "Smile Dental"
state = "CA"
time_zone = "America/Los_Angeles"
location_id = "smile-main"
phone = "+1 415 555 0100"
email = "frontdesk@smile.example"

[practices.pms]
kind = "opendental"
developer_key_file = "pms"
customer_key_file = "pms"

[practices.lenders]
order = []

[practices.smtp]
host = "smtp.smile.example"
from = "frontdesk@smile.example"
"#
    );
    let path = dir.join("chairside.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[tokio::test]
async fn migrate_creates_the_database_and_its_directory_and_can_run_again() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), "data/nested/chairside.sqlite");
    let view = Config::load_store(&path, &Environment::default()).expect("store view");

    // Act
    let mut first = Vec::new();
    let first_code = migrate(&view, &mut first).await.expect("migrate");
    let mut second = Vec::new();
    let second_code = migrate(&view, &mut second).await.expect("migrate again");
    let store = view.store.open().await.expect("open");

    // Assert
    assert_eq!((first_code, second_code), (0, 0));
    assert!(dir.path().join("data/nested/chairside.sqlite").exists());
    assert!(text(first).contains("is up to date"));
    assert!(store.ready().await.expect("ready"));
}

#[test]
fn check_config_prints_a_summary_or_every_problem() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_config(dir.path(), "chairside.sqlite");
    let bad = dir.path().join("bad.toml");
    let broken = std::fs::read_to_string(&good)
        .expect("read")
        .replace("America/Los_Angeles", "Pacific/Nowhere")
        .replace("state = \"CA\"", "state = \"XX\"")
        .replace(
            "data_key_file = \"data_key\"",
            "data_key_env = \"UNSET_FOR_THIS_TEST\"",
        );
    std::fs::write(&bad, broken).expect("write");
    let env = Environment::default();

    // Act
    let mut good_out = Vec::new();
    let good_code = check_config(&good, &env, &mut good_out).expect("check");
    let mut bad_out = Vec::new();
    let bad_code = check_config(&bad, &env, &mut bad_out).expect("check");
    let good_out = text(good_out);
    let bad_out = text(bad_out);

    // Assert
    assert_eq!(good_code, 0);
    assert!(good_out.contains(": OK"), "{good_out}");
    assert!(good_out.contains("practice smile (CA, America/Los_Angeles): practice system opendental; lenders none, then the in-house plan"));
    assert!(!good_out.contains("sk_test_fromfile") && !good_out.contains("whsec_"));
    assert_eq!(bad_code, 1);
    assert!(bad_out.contains("3 problems"), "{bad_out}");
    assert!(bad_out.contains("  store.data_key_env: env var UNSET_FOR_THIS_TEST is not set"));
    assert!(bad_out.contains("  practices[0].state: 'XX'"));
    assert!(bad_out.contains("  practices[0].time_zone: 'Pacific/Nowhere'"));
}

#[tokio::test]
async fn the_dispatcher_runs_migrate_then_status_from_a_configuration_file() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "chairside.sqlite");
    let config = config.to_str().expect("utf-8 path");
    let parse = |args: &[&str]| Cli::try_parse_from(args).expect("parses");

    // Act
    let mut out = Vec::new();
    let before = dispatch(
        parse(&["chairside", "status", "--config", config]),
        &mut out,
    )
    .await;
    let migrated = dispatch(
        parse(&["chairside", "migrate", "--config", config]),
        &mut out,
    )
    .await
    .expect("migrate");
    let listed = dispatch(
        parse(&["chairside", "status", "--config", config]),
        &mut out,
    )
    .await
    .expect("status");
    let retried = dispatch(
        parse(&["chairside", "retry", "--config", config, "wf_none"]),
        &mut out,
    )
    .await
    .expect("retry");

    // Assert
    let before = before.expect_err("no database yet");
    assert!(before.to_string().contains("chairside migrate"), "{before}");
    assert_eq!((migrated, listed, retried), (0, 0, 1));
    let out = text(out);
    assert!(out.contains("No workflows in progress"), "{out}");
    assert!(out.contains("there is no workflow wf_none"));
}

#[test]
fn hash_password_prints_a_verifiable_hash_and_refuses_short_passwords() {
    use argon2::PasswordVerifier as _;

    // Act
    let mut out = Vec::new();
    let code = hash_password(&mut "correct horse battery\n".as_bytes(), &mut out).expect("hash");
    let mut short_out = Vec::new();
    let short = hash_password(&mut "hunter2\n".as_bytes(), &mut short_out).expect("short");

    // Assert
    assert_eq!(code, 0);
    let printed = text(out);
    let hash = argon2::PasswordHash::new(printed.trim()).expect("a PHC string");
    assert!(
        argon2::Argon2::default()
            .verify_password(b"correct horse battery", &hash)
            .is_ok()
    );
    assert!(!printed.contains("correct horse"));
    assert_eq!(short, 1);
    assert!(text(short_out).contains("nothing was hashed"));
}

#[tokio::test]
async fn an_undecryptable_patient_shows_as_question_marks_not_an_error() {
    // Arrange: the workflow is sealed with the reader's key (id 0), the patient with a key
    // (id 1) the reader does not hold.
    let db = db().await;
    accept(&db.store, "smile", "tx-1", &patient("pat-1", "A", "B")).await;
    let file = db.dir.path().join("chairside.sqlite");
    let writer = SqliteStore::open(
        &file,
        chairside_engine::store::crypto::Keyring::new(1, DataKey::generate()),
    )
    .await
    .expect("open");
    writer
        .put_patient(&PracticeId::new("smile"), &patient("pat-1", "A", "B"), t0())
        .await
        .expect("put");
    let other = SqliteStore::open(&file, DataKey::parse(KEY_HEX).expect("key"))
        .await
        .expect("open");

    // Act
    let rows = status_rows(&other, None, false, 100, &zones(), mins(1))
        .await
        .expect("rows");
    let mut out = Vec::new();
    write_status_table(&rows, false, &mut out).expect("write");

    // Assert
    assert_eq!(rows[0].patient, "??");
    assert!(text(out).contains("could not be decrypted"));
}

// ---- Logs -----------------------------------------------------------------------------------

#[test]
fn possible_card_numbers_are_redacted_and_other_numbers_kept() {
    let cases = [
        (
            "card 4242424242424242 declined",
            "card [redacted card number] declined",
        ),
        ("4242 4242 4242 4242", "[redacted card number]"),
        ("pan=4242-4242-4242-4242;", "pan=[redacted card number];"),
        ("amex 378282246310005", "amex [redacted card number]"),
        (
            "paid 100 4242424242424242",
            "paid 100 [redacted card number]",
        ),
        // No Luhn-valid window of 13 to 19 digits anywhere in it.
        ("not luhn 1234567812345678", "not luhn 1234567812345678"),
        ("twelve 424242424242", "twelve 424242424242"),
        (
            "2026-11-27T03:36:04.520713Z wf_0123456789abcdef01234567 +15555550100",
            "2026-11-27T03:36:04.520713Z wf_0123456789abcdef01234567 +15555550100",
        ),
        // A Luhn-valid window inside a longer run is redacted: the run is not trusted as an id.
        (
            "twenty 42424242424242424242",
            "twenty [redacted card number]",
        ),
        ("zeros 00000000000000000000", "zeros 00000000000000000000"),
    ];
    for (input, expected) in cases {
        assert_eq!(redact_card_numbers(input), expected, "{input}");
    }
}

#[test]
fn log_lines_written_through_the_redacting_writer_carry_no_card_number() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // Arrange
    let shared = Shared(Arc::new(Mutex::new(Vec::new())));
    let sink = shared.clone();
    let subscriber = tracing_subscriber::fmt()
        // No timestamp: its microseconds can read "4242" by chance (CI saw 19:56:32.142428Z).
        .without_time()
        .json()
        .with_writer(move || super::logging::RedactingWriter(sink.clone()))
        .finish();

    // Act
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(
            note = "customer read 4242 4242 4242 4242 aloud",
            "free text reached a log"
        );
    });

    // Assert
    let written = String::from_utf8(shared.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(written.contains("free text reached a log"));
    assert!(written.contains(REDACTED_CARD), "{written}");
    assert!(!written.contains("4242"));
}

#[test]
fn hash_password_on_a_terminal_asks_twice_and_refuses_a_mismatch() {
    use argon2::PasswordVerifier as _;

    // Arrange
    let answers = |a: &'static str, b: &'static str| {
        let mut answers = vec![b.to_owned(), a.to_owned()];
        move |_: &str| Ok(answers.pop().expect("asked at most twice"))
    };
    let mut same = answers("correct horse battery", "correct horse battery");
    let mut differ = answers("correct horse battery", "correct horse batterx");

    // Act
    let mut out = Vec::new();
    let code = hash_password_prompted(&mut same, &mut out).expect("hash");
    let mut refused_out = Vec::new();
    let refused = hash_password_prompted(&mut differ, &mut refused_out).expect("mismatch");

    // Assert
    assert_eq!(code, 0);
    let printed = text(out);
    assert!(!printed.contains("correct horse"));
    let hash = argon2::PasswordHash::new(printed.trim()).expect("a PHC string");
    assert!(
        argon2::Argon2::default()
            .verify_password(b"correct horse battery", &hash)
            .is_ok()
    );
    assert_eq!(refused, 1);
    let refused_out = text(refused_out);
    assert!(refused_out.contains("nothing was hashed"));
    assert!(!refused_out.contains("correct horse"));
}

#[test]
fn unlock_staff_parses_its_user_option() {
    let cli =
        Cli::try_parse_from(["chairside", "unlock-staff", "--user", "maria"]).expect("parses");
    assert!(matches!(cli.command, Command::UnlockStaff(a) if a.user == "maria"));
    assert!(Cli::try_parse_from(["chairside", "unlock-staff"]).is_err());
}

#[tokio::test]
async fn unlock_staff_clears_a_lockout_in_the_database_and_audits_it() {
    use chairside_engine::store::logins::{LockRule, LoginAttempt, LoginOutcome};

    // Arrange: enough failures to lock the account.
    let db = db().await;
    let rule = LockRule {
        forget_after: chrono::Duration::days(1),
        lock_after: 3,
        lock_for: chrono::Duration::hours(1),
    };
    for i in 0..3 {
        let attempt = LoginAttempt {
            username: "maria".into(),
            address: "203.0.113.7".into(),
            at: mins(i),
            outcome: LoginOutcome::WrongPassword,
        };
        db.store
            .record_login(&attempt, &rule)
            .await
            .expect("record");
    }
    let before = db
        .store
        .login_standing("maria", "203.0.113.7", &rule, mins(5))
        .await
        .expect("standing");
    assert!(before.account.locked_until.is_some());

    // Act
    let mut out = Vec::new();
    let code = unlock_staff(&db.store, "maria", mins(6), &mut out)
        .await
        .expect("unlock");

    // Assert
    assert_eq!(code, 0);
    assert!(text(out).contains("unlocked"));
    let after = db
        .store
        .login_standing("maria", "203.0.113.7", &rule, mins(7))
        .await
        .expect("standing");
    assert_eq!(after.account.failures, 0);
    assert_eq!(after.account.locked_until, None);
    let audit = db.store.login_attempts("maria", 1).await.expect("audit");
    assert_eq!(audit[0].outcome, LoginOutcome::Unlocked);
    assert_eq!(audit[0].address, CLI_ACTOR);
}

#[tokio::test]
async fn rotate_key_reseals_under_the_new_key_so_the_old_one_can_be_removed() {
    // Arrange: a patient stored under the key in `data_key` (id 0).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), "chairside.sqlite");
    let old = Config::load_store(&path, &Environment::default()).expect("store view");
    migrate(&old, &mut Vec::new()).await.expect("migrate");
    let practice = PracticeId::new("smile");
    let contact = patient("pat-1", "Testa", "Rotated");
    old.store
        .open()
        .await
        .expect("open")
        .put_patient(&practice, &contact, t0())
        .await
        .expect("put");
    old.store
        .open()
        .await
        .expect("open")
        .set_sms_opt_out(&practice, "+15555550177", true, "inbound_keyword", t0())
        .await
        .expect("opt-out");
    std::fs::write(dir.path().join("new_key"), "ab".repeat(32)).expect("new key");
    let config = std::fs::read_to_string(&path).expect("read");
    let rotated = config.replace(
        "data_key_file = \"data_key\"",
        "data_key_file = \"new_key\"\ndata_key_id = 1\n\n[[store.previous_data_keys]]\nid = 0\nkey_file = \"data_key\"",
    );
    std::fs::write(&path, &rotated).expect("write");
    let view = Config::load_store(&path, &Environment::default()).expect("rotating view");

    // Act
    let mut out = Vec::new();
    let code = rotate_key(&view, 2, &mut out).await.expect("rotate");

    // Assert: nothing left, and the new key alone opens the patient.
    let out = text(out);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("under data key 1; 0 left"), "{out}");
    assert!(out.contains("sms_consent: 1 re-sealed"), "{out}");
    assert!(
        out.contains("previous data keys can now be removed"),
        "{out}"
    );
    let only_new = config.replace(
        "data_key_file = \"data_key\"",
        "data_key_file = \"new_key\"\ndata_key_id = 1",
    );
    std::fs::write(&path, only_new).expect("write");
    let view = Config::load_store(&path, &Environment::default()).expect("new view");
    let store = view.store.open().await.expect("open");
    let read = store.patient(&practice, &contact.id).await.expect("read");
    assert_eq!(read.expect("patient").last_name, "Rotated");
    let opted_out = store.sms_opted_out(&practice, "+15555550177").await;
    assert!(
        opted_out.expect("consent"),
        "withdrawal survives the old key"
    );
}

#[tokio::test]
async fn rotate_key_says_the_old_key_must_stay_while_consent_records_cannot_be_re_hashed() {
    // Arrange: an opt-out stored under the key in `data_key` (id 0) before consent records kept
    // their number sealed (the column is emptied, as migration 0007 leaves older rows).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), "chairside.sqlite");
    let old = Config::load_store(&path, &Environment::default()).expect("store view");
    migrate(&old, &mut Vec::new()).await.expect("migrate");
    let practice = PracticeId::new("smile");
    old.store
        .open()
        .await
        .expect("open")
        .set_sms_opt_out(&practice, "+15555550178", true, "inbound_keyword", t0())
        .await
        .expect("opt-out");
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("chairside.sqlite").display()
    ))
    .await
    .expect("raw pool");
    sqlx::query("UPDATE sms_consent SET phone_sealed = NULL, key_id = NULL")
        .execute(&pool)
        .await
        .expect("legacy row");
    pool.close().await;
    std::fs::write(dir.path().join("new_key"), "ab".repeat(32)).expect("new key");
    let config = std::fs::read_to_string(&path).expect("read");
    let rotated = config.replace(
        "data_key_file = \"data_key\"",
        "data_key_file = \"new_key\"\ndata_key_id = 1\n\n[[store.previous_data_keys]]\nid = 0\nkey_file = \"data_key\"",
    );
    std::fs::write(&path, &rotated).expect("write");
    let view = Config::load_store(&path, &Environment::default()).expect("rotating view");

    // Act
    let mut out = Vec::new();
    let code = rotate_key(&view, 2, &mut out).await.expect("rotate");

    // Assert: a failing exit, and no claim that the old key can go.
    let out = text(out);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 SMS consent records"), "{out}");
    assert!(out.contains("keep every previous data key"), "{out}");
    assert!(!out.contains("can now be removed"), "{out}");
    assert!(!out.contains("+1555555"), "{out}");
}

#[test]
fn card_numbers_glued_to_letters_or_inside_longer_digit_runs_are_redacted() {
    let cases = [
        ("x4242424242424242y", "x[redacted card number]y"),
        ("ref=004242424242424242", "ref=[redacted card number]"),
        ("id 94242424242424242 end", "id 9[redacted card number] end"),
        ("pan:4242424242424242,cvc", "pan:[redacted card number],cvc"),
        ("amex378282246310005x", "amex[redacted card number]x"),
    ];
    for (input, expected) in cases {
        assert_eq!(redact_card_numbers(input), expected, "{input}");
    }
}

/// A `MakeWriter` over one shared buffer, as standard output or error would be.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

fn log_a_glued_card_number() {
    tracing::warn!(
        note = "ref=004242424242424242 and x4242424242424242y",
        "free text reached a log"
    );
}

#[test]
fn the_human_format_on_any_output_is_redacted() {
    // Arrange
    let out = SharedBuf::default();
    let sink = out.clone();
    let subscriber = tracing_subscriber::fmt()
        // No timestamp: its microseconds can read "4242" by chance (CI saw 19:56:32.142428Z).
        .without_time()
        .with_ansi(false)
        .with_writer(super::redacting(move || sink.clone()))
        .finish();
    // Act
    tracing::subscriber::with_default(subscriber, log_a_glued_card_number);
    // Assert
    let written = out.text();
    assert!(written.contains("free text reached a log"), "{written}");
    assert!(written.contains(REDACTED_CARD), "{written}");
    assert!(!written.contains("4242"), "{written}");
}

#[test]
fn the_json_format_on_any_output_is_redacted() {
    // Arrange
    let out = SharedBuf::default();
    let sink = out.clone();
    let subscriber = tracing_subscriber::fmt()
        // No timestamp: its microseconds can read "4242" by chance (CI saw 19:56:32.142428Z).
        .without_time()
        .json()
        .with_writer(super::redacting(move || sink.clone()))
        .finish();
    // Act
    tracing::subscriber::with_default(subscriber, log_a_glued_card_number);
    // Assert
    let written = out.text();
    assert!(written.contains(REDACTED_CARD), "{written}");
    assert!(!written.contains("4242"), "{written}");
}

#[test]
fn a_log_file_is_redacted() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chairside.log");
    let file = std::fs::File::create(&path).expect("log file");
    let subscriber = tracing_subscriber::fmt()
        // No timestamp: its microseconds can read "4242" by chance (CI saw 19:56:32.142428Z).
        .without_time()
        .json()
        .with_writer(super::redacting(std::sync::Mutex::new(file)))
        .finish();
    // Act
    tracing::subscriber::with_default(subscriber, log_a_glued_card_number);
    // Assert
    let written = std::fs::read_to_string(&path).expect("read");
    assert!(written.contains(REDACTED_CARD), "{written}");
    assert!(!written.contains("4242"), "{written}");
}

#[test]
fn standard_output_and_standard_error_can_be_wrapped_in_the_redacting_writer() {
    // Both standard streams are `MakeWriter`s the redacting wrapper accepts; init_tracing installs
    // `redacting(std::io::stderr)`. This pins the types so a plain writer cannot slip back in.
    fn takes<M: for<'a> tracing_subscriber::fmt::MakeWriter<'a>>(_: super::Redacting<M>) {}
    takes(super::redacting(std::io::stdout));
    takes(super::redacting(std::io::stderr));
}
