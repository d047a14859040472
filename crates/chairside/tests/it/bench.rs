//! `chairside bench` end to end with a tiny load: the sandbox in its own process, a few plans at
//! zero added latency and a few workflows parked on patients. Sanity of the counts only; nothing
//! here is about speed.

use std::path::PathBuf;

use chairside::bench::{BenchArgs, Profile, RunFigures, measure, spread_lines};

/// The workspace's `sandbox` binary, in the profile directory this test binary was built in
/// (`target/<profile>/deps/it-…` -> `target/<profile>/sandbox`). `cargo test --workspace` builds
/// it (the sandbox crate's bin is a workspace member); `cargo test -p chairside` alone does not.
fn sandbox_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("this test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = profile_dir.join(format!("sandbox{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "no sandbox binary at {}: build it first (cargo build -p sandbox --bin sandbox), or run \
         the whole workspace's tests (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runs_end_to_end_and_its_counts_match_what_it_ran() {
    // Arrange: three plans (one per demo practice) and four parked workflows.
    let dir = tempfile::tempdir().expect("temporary directory");
    let args = BenchArgs {
        plans: 3,
        profiles: vec![Profile::Zero],
        parked: 4,
        pms_poll_ms: 200,
        timeout_secs: 90,
        dir: Some(dir.path().to_path_buf()),
        sandbox_bin: Some(sandbox_bin()),
        ..BenchArgs::default()
    };

    // Act
    let report = measure(&args).await.expect("the benchmark runs");

    // Assert
    assert_eq!(report.runs.len(), 1, "one run per profile asked for");
    let run = &report.runs[0];
    assert_eq!(run.profile, Profile::Zero);
    assert_eq!(run.workflows, 3);
    assert_eq!(run.settled, 3, "every plan settled");
    assert_eq!(
        run.as_expected, 3,
        "every plan ended where its persona says: {:?}",
        run.off_path
    );
    assert_eq!(run.with_one_note, 3, "one ledger note per workflow");
    assert!(run.problems.is_empty(), "invariants: {:?}", run.problems);
    assert!(run.write_transactions > 0, "workflows write to the store");
    assert!(
        run.external_calls >= 3 * 4,
        "each workflow calls out (plan, lender, messages, Stripe, note): {}",
        run.external_calls
    );
    assert!(run.poll_calls > 0, "the practice systems were polled");
    assert!(run.steps >= 3, "steps were committed");
    assert!(run.o2l_p50_ms > 0.0 && run.o2l_p50_ms <= run.o2l_p99_ms);
    assert!(run.elapsed_s > 0.0 && run.workflows_per_s > 0.0);
    assert!(run.cpu_ms > 0.0, "the process's CPU time is read");
    // The instances run on their own runtime: its threads' CPU is Chairside's, beside the store's
    // and sqlx's threads, and the harness's is counted apart.
    assert!(
        run.chairside_cpu_ms > run.sqlite_cpu_ms,
        "the instances' runtime threads are counted as Chairside's: {} ms of which {} ms SQLite",
        run.chairside_cpu_ms,
        run.sqlite_cpu_ms
    );
    assert!(
        run.harness_cpu_ms < run.chairside_cpu_ms,
        "the harness's CPU ({} ms) is told apart from Chairside's ({} ms)",
        run.harness_cpu_ms,
        run.chairside_cpu_ms
    );
    assert!(run.chairside_cpu_per_external_call_ms > 0.0);
    assert!(
        report.floors.is_empty() && run.floor_per_call_ms.is_none() && run.over_floor().is_none(),
        "no floor unless asked for"
    );
    assert!(run.peak_rss_mib > 0.0, "peak memory is read");

    let parked = report
        .parked
        .as_ref()
        .expect("parked workflows were asked for");
    assert_eq!(parked.seeded, 4);
    assert_eq!(
        parked.awaiting_patient, 4,
        "every parked workflow waits on its patient"
    );
    assert!(parked.rss_after_mib > 0.0);
    assert!(
        parked.sqlite_after_mib > parked.sqlite_before_mib,
        "parked workflows live in the database"
    );
    assert!(report.all_as_expected());
    assert!(report.machine.cpus >= 1 && report.machine.memory_mib > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_benchmark_runs_each_profile_afresh_and_prints_its_spread() {
    // Arrange: two plans, run twice, the floor measured after each round.
    let dir = tempfile::tempdir().expect("temporary directory");
    let args = BenchArgs {
        plans: 2,
        profiles: vec![Profile::Zero],
        parked: 0,
        pms_poll_ms: 200,
        timeout_secs: 90,
        repeat: 2,
        floor: true,
        floor_commits: 16,
        dir: Some(dir.path().to_path_buf()),
        sandbox_bin: Some(sandbox_bin()),
        ..BenchArgs::default()
    };

    // Act
    let report = measure(&args).await.expect("the benchmark runs");
    let lines = spread_lines(&report.runs);

    // Assert: two runs of the profile, each on its own database with its own two plans.
    assert_eq!(report.runs.len(), 2, "one run per profile and round");
    for run in &report.runs {
        assert_eq!(run.profile, Profile::Zero);
        assert_eq!(run.workflows, 2);
        assert_eq!(run.settled, 2, "every plan of the run settled");
        assert_eq!(run.with_one_note, 2, "one ledger note per workflow");
        assert!(run.chairside_cpu_per_external_call_ms > 0.0);
    }
    assert!(report.all_as_expected());
    // The spread names the profile and the run count, and reads the runs' own figures.
    assert_eq!(
        lines[0], "zero: median (least to greatest) over 2 runs",
        "{lines:?}"
    );
    assert_spread_starts_at(
        &lines,
        "Chairside's CPU per external call",
        &report.runs,
        |r| Some(r.chairside_cpu_per_external_call_ms),
        3,
    );
    assert!(
        spread_lines(&report.runs[..1]).is_empty(),
        "one run has no spread"
    );
    // A floor per round, each in its own directory, and each run read against its own round's.
    assert_eq!(report.floors.len(), 2, "one floor per round");
    for (run, (round, floor)) in report.runs.iter().zip(report.floors.iter().enumerate()) {
        assert!(
            dir.path()
                .join(format!("floor-{}", round + 1))
                .join("floor.sqlite")
                .is_file(),
            "round {}'s floor has its own directory",
            round + 1
        );
        let expected =
            floor.per_call_us(run.writes_per_external_call, run.commits_per_external_call) / 1000.0;
        let read = run.floor_per_call_ms.expect("a run read against its floor");
        assert!(
            (read - expected).abs() < 1e-12,
            "{read} against its round's {expected}"
        );
        let times = run.over_floor().expect("a ratio");
        assert!(
            (times * read - run.chairside_cpu_per_external_call_ms).abs() < 1e-9,
            "the ratio is the CPU per call over the floor"
        );
    }
    assert_spread_starts_at(
        &lines,
        "times its round's floor",
        &report.runs,
        RunFigures::over_floor,
        1,
    );
    // Runs without a floor have no such line, and their other figures' lines stay.
    let mut bare = report.runs.clone();
    for run in &mut bare {
        run.floor_per_call_ms = None;
    }
    let bare_lines = spread_lines(&bare);
    assert!(
        !bare_lines.iter().any(|l| l.contains("floor"))
            && bare_lines
                .iter()
                .any(|l| l.contains("Chairside's CPU per external call")),
        "{bare_lines:?}"
    );
}

/// The spread line naming `label` reads the least of the runs' `value`s to `decimals`.
fn assert_spread_starts_at(
    lines: &[String],
    label: &str,
    runs: &[RunFigures],
    value: fn(&RunFigures) -> Option<f64>,
    decimals: usize,
) {
    let least = runs.iter().filter_map(value).fold(f64::INFINITY, f64::min);
    let line = lines
        .iter()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("a line of {label}: {lines:?}"));
    assert!(
        line.contains(&format!("({least:.decimals$} to")),
        "the least of the runs' {label}, {least:.decimals$}: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_measures_bare_round_trips_and_durable_commits_and_no_plans() {
    // Arrange: the floor alone, small.
    let dir = tempfile::tempdir().expect("temporary directory");
    let args = BenchArgs {
        plans: 0,
        parked: 0,
        floor: true,
        floor_commits: 32,
        dir: Some(dir.path().to_path_buf()),
        sandbox_bin: Some(sandbox_bin()),
        ..BenchArgs::default()
    };

    // Act
    let report = measure(&args).await.expect("the floor is measured");

    // Assert: nothing of Chairside ran; both ends of the round trips and the commits cost CPU.
    assert!(report.runs.is_empty() && report.parked.is_none());
    assert_eq!(report.floors.len(), 1, "no plans: one floor, asked for");
    let floor = report.floors[0].clone();
    assert_eq!(floor.round_trips, 64);
    assert_eq!(floor.commits, 32);
    // 32 commits' worth: four workflows of eight steps each, every step its own transaction.
    assert_eq!(floor.steps, 32);
    assert!(
        floor.steps_per_commit_many_callers >= 1.0,
        "a group commit carries one step or more: {}",
        floor.steps_per_commit_many_callers
    );
    for (what, us) in [
        (
            "our side of a round trip, one caller",
            floor.http_one_caller_us,
        ),
        (
            "our side of a round trip, many callers",
            floor.http_many_callers_us,
        ),
        ("a commit alone", floor.commit_us),
        ("a transaction unsynced", floor.unsynced_us),
        ("a commit asked for, its thread", floor.commit_asked_us),
        (
            "a commit asked for, the runtime",
            floor.commit_asked_runtime_us,
        ),
        ("a usual step, one caller", floor.step_one_caller_us),
        ("a usual step, many callers", floor.step_many_callers_us),
        (
            "a usual step's runtime, one caller",
            floor.step_one_caller_runtime_us,
        ),
    ] {
        assert!(us > 0.0 && us < 1_000_000.0, "{what}: {us} µs");
    }
    // The sandbox's side is another process's CPU, read to the nanosecond from its threads'
    // scheduler statistics; without them (clock ticks of 10 ms) a few milliseconds read as zero.
    let nanoseconds = std::path::Path::new("/proc/self/schedstat").exists();
    for (what, us) in [
        (
            "the sandbox's side, one caller",
            floor.http_one_caller_sandbox_us,
        ),
        (
            "the sandbox's side, many callers",
            floor.http_many_callers_sandbox_us,
        ),
    ] {
        assert!(us < 1_000_000.0, "{what}: {us} µs");
        assert!(!nanoseconds || us > 0.0, "{what}: {us} µs");
    }
    assert!(
        floor.per_call_us(1.5, 0.5) > floor.http_one_caller_us.min(floor.http_many_callers_us),
        "a call's commits add to its round trip"
    );
    assert!(
        dir.path().join("floor").join("floor.sqlite").is_file(),
        "the commits went to a file in --dir"
    );
    assert!(report.all_as_expected(), "no plans: nothing to miss");

    // Act again in the same directory: the steps' stores start afresh.
    let again = measure(&args)
        .await
        .expect("the floor is measured again in --dir");
    assert_eq!(again.floors.len(), 1);
    assert_eq!(again.floors[0].steps, 32);
}
