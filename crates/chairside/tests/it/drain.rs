//! SIGTERM drain (`chairside run`, app.rs): a stop finishes the step in flight and commits it
//! within the drain, or abandons it cleanly (nothing half done) when it outlasts the drain; in
//! both cases the workflow resumes on the next start and ends where its persona says, with one
//! Stripe customer and one ledger note.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chairside::demo::world::Expected;
use chairside_workflow::Status;
use financing_core::PracticeId;
use sandbox::{Fault, FaultRule, Persona, Pms, Sandbox, System};

use crate::crash::{
    Database, PRACTICE, config_toml, free_port, log_tail, open_store, sandbox_config, spawn,
    spawn_logging,
};

/// Sends SIGTERM (as a supervisor stopping the service does).
fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "SIGTERM sent");
}

/// Waits for the process to exit on its own; `None` after `limit`.
fn exited_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// What a drain run saw.
struct Drained {
    exit: Option<std::process::ExitStatus>,
    stopped_after: Duration,
    customers_at_stop: usize,
    status_at_stop: Status,
    log_at_stop: String,
    customers: usize,
    notes: usize,
    ended_as_expected: bool,
    logs: String,
}

/// The workflow's outcome notes in the practice system (the deposit the patient pays is a note of
/// its own, "received through Stripe", as in the crash runs).
fn outcome_notes(sandbox: &Sandbox, workflow: &str) -> usize {
    sandbox
        .notes_containing(workflow)
        .iter()
        .filter(|n| !n.text.contains("received through Stripe"))
        .count()
}

/// Runs one InstantApproval plan, SIGTERMs the service while the plan's Stripe customer call
/// is held `held` by the sandbox, then restarts it.
async fn drain_run(seed: u64, held: Duration, calls: u32) -> Drained {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/");
    let mut cfg = sandbox_config(seed, &base, false);
    // The first `calls` customer requests are held before Stripe handles them.
    cfg.faults.insert(
        System::Stripe,
        vec![
            FaultRule::new(Fault::latency(held))
                .on("POST", "/v1/customers")
                .times(calls),
        ],
    );
    let sandbox = Sandbox::start(cfg).await.expect("sandbox starts");
    let config = dir.path().join("chairside.toml");
    std::fs::write(
        &config,
        config_toml(dir.path(), &Database::Sqlite, &sandbox, 0, port, &base, 5),
    )
    .expect("config written");
    let log = dir.path().join("chairside.log");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_chairside"));
    // At info, so the drain's own account of the stop is in the log.
    let mut child = spawn_logging(&binary, &config, &sandbox, &log, "info");
    let practice = PracticeId::new(PRACTICE);

    // After the baseline, one plan; wait until its customer call is in flight.
    let store = loop {
        if dir.path().join("chairside.sqlite").exists() {
            let store = open_store(&Database::Sqlite, dir.path()).await;
            let health = store.detection_health().await.unwrap_or_default();
            if health.iter().any(|h| h.baseline_at.is_some()) {
                break store;
            }
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the service exited: {}",
            log_tail(std::slice::from_ref(&log))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seeded = sandbox
        .seed_persona(Pms::Dentrix, Persona::InstantApproval)
        .expect("seeded");
    sandbox.accept_plan(seeded.plan.key).expect("accepted");
    let in_flight_by = Instant::now() + Duration::from_secs(60);
    while !sandbox
        .requests(System::Stripe)
        .iter()
        .any(|r| r.method == "POST" && r.path.starts_with("/v1/customers"))
    {
        assert!(
            Instant::now() < in_flight_by,
            "the customer call never came: {}",
            log_tail(std::slice::from_ref(&log))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Act 1: SIGTERM mid-call.
    let stop_sent = Instant::now();
    sigterm(&child);
    let exit = exited_within(&mut child, Duration::from_secs(40));
    let stopped_after = stop_sent.elapsed();
    if exit.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let customers_at_stop = sandbox.stripe().customers().len();
    let state_at_stop = store
        .workflows(Some(&practice), None, 10)
        .await
        .expect("workflows")
        .into_iter()
        .map(|r| r.state)
        .find(|s| s.key.plan_id.as_str() == seeded.plan.pms_id)
        .expect("the plan's workflow");
    let log_at_stop = std::fs::read_to_string(&log).unwrap_or_default();

    // Act 2: start again; the workflow resumes and ends.
    let mut child = spawn(&binary, &config, &sandbox, &log);
    let expected = Expected::of(Persona::InstantApproval);
    let end_by = Instant::now() + Duration::from_secs(120);
    let mut ended = None;
    while Instant::now() < end_by {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let state = store
            .workflow(&state_at_stop.id)
            .await
            .ok()
            .flatten()
            .map(|r| r.state);
        if let Some(s) = state
            && s.status != Status::Active
            && outcome_notes(&sandbox, s.id.as_str()) == 1
        {
            ended = Some(s);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let drained = Drained {
        exit,
        stopped_after,
        customers_at_stop,
        status_at_stop: state_at_stop.status,
        log_at_stop,
        customers: sandbox.stripe().customers().len(),
        notes: outcome_notes(&sandbox, state_at_stop.id.as_str()),
        ended_as_expected: ended.as_ref().is_some_and(|s| expected.matches(s)),
        logs: log_tail(&[log]),
    };
    sandbox.stop().await;
    drained
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_step_finishes_the_step_commits_it_and_exits() {
    // Arrange + Act: the customer call is held 3 s, well within the 20 s drain.
    let d = drain_run(41, Duration::from_secs(3), 1).await;

    // Assert: a clean exit once the step committed, the customer made once, and the workflow
    // picked up where it stopped.
    let exit = d
        .exit
        .unwrap_or_else(|| panic!("no exit within 40 s\n{}", d.logs));
    assert!(exit.success(), "exit status {exit}\n{}", d.logs);
    assert!(
        d.log_at_stop
            .contains("stopped: every step in flight committed"),
        "{}",
        d.logs
    );
    assert!(
        d.stopped_after < Duration::from_secs(20),
        "the drain waited only for the step ({:?})",
        d.stopped_after
    );
    assert_eq!(
        d.customers_at_stop, 1,
        "the held call finished before the exit"
    );
    assert_eq!(d.status_at_stop, Status::Active);
    assert!(d.ended_as_expected, "{}", d.logs);
    assert_eq!(d.customers, 1, "one Stripe customer");
    assert_eq!(d.notes, 1, "one outcome note");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_step_longer_than_the_drain_abandons_it_cleanly_and_a_restart_resumes_it()
{
    // Arrange + Act: the customer call and its in-call retry (after the client's 20 s timeout)
    // are each held 45 s, longer than the 20 s drain.
    let d = drain_run(42, Duration::from_secs(45), 2).await;

    // Assert: the process stops at the drain's end, having written nothing for the step; the
    // next start repeats it under the same idempotency key and the plan ends once.
    let exit = d
        .exit
        .unwrap_or_else(|| panic!("no exit within 40 s\n{}", d.logs));
    assert!(exit.success(), "exit status {exit}\n{}", d.logs);
    assert!(
        d.log_at_stop
            .contains("steps still in flight were abandoned"),
        "{}",
        d.logs
    );
    assert!(d.customers_at_stop <= 1);
    assert_eq!(d.status_at_stop, Status::Active);
    assert!(d.ended_as_expected, "{}", d.logs);
    assert_eq!(
        d.customers, 1,
        "one Stripe customer, whatever the held call did"
    );
    assert_eq!(d.notes, 1, "one outcome note");
}
