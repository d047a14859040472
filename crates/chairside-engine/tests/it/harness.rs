//! A practice wired to the fakes over a SQLite file in a temporary directory, made-up patients and
//! plans, and a driver that runs the runner and jumps the clock to the next due item.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chairside_engine::ports::PracticeProfile;
use chairside_engine::runner::{PracticeRuntime, Runner, RunnerConfig};
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::prelude::*;
use chairside_engine::store::{SqliteStore, TaskRow, WorkflowRow};
use chairside_workflow::{WorkflowConfig, WorkflowId, WorkflowKey};
use chrono::{DateTime, NaiveDate, Utc};
use financing_core::{
    AmountLimits, Backoff, CdtCode, DepositRule, InHouseTerms, InstallmentInterval, Language,
    LenderId, LenderSlot, LocationId, Money, PartialApprovalRule, PatientContact, PatientId,
    PlanId, PlannedProcedure, PolicySettings, PostalAddress, PracticeId, SharedProvider,
    SmsConsent, TreatmentPlan, UsState, Waterfall, WaterfallPolicy,
};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tempfile::TempDir;
use url::Url;

use crate::fakes::{FakeLender, FakeMessenger, FakePms, FakeStripe, ManualClock};

/// The data key every store in a test opens the file with (made up, test only).
pub(crate) const KEY_HEX: &str = "7365637265742d746573742d6b65792d30313233343536373839616263646566";

/// The lease runners take in these tests.
pub(crate) const LEASE: Duration = Duration::from_secs(30);

/// 11:00 in New York on a Tuesday: inside the texting window.
pub(crate) fn t0() -> DateTime<Utc> {
    "2026-06-02T15:00:00Z".parse().unwrap()
}

pub(crate) fn practice_id() -> PracticeId {
    PracticeId::new("smile-dental-test")
}

/// A made-up patient: `Testa Patient{n}`, a 555-01xx number and an example.test address.
pub(crate) fn patient(n: u32) -> PatientContact {
    PatientContact {
        id: PatientId::new(format!("pat-{n}")),
        first_name: "Testa".into(),
        last_name: format!("Patient{n}"),
        date_of_birth: NaiveDate::from_ymd_opt(1985, 4, 5),
        mobile_phone: Some(format!("+1555555{:04}", 100 + n)),
        email: Some(format!("testa.patient{n}@example.test")),
        address: Some(PostalAddress {
            lines: vec![format!("{n} Sample Street")],
            city: "Testville".into(),
            state: Some(UsState::TX),
            postal_code: "75001".into(),
        }),
        preferred_language: Language::En,
        time_zone: None,
        sms_consent: SmsConsent::Informational {
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            source: "pms".into(),
        },
    }
}

/// A one-procedure plan for patient `n`.
pub(crate) fn plan(n: u32, fee: i64, estimate: i64) -> TreatmentPlan {
    plan_with_code(n, fee, estimate, "D2740")
}

pub(crate) fn plan_with_code(n: u32, fee: i64, estimate: i64, code: &str) -> TreatmentPlan {
    TreatmentPlan {
        id: PlanId::new(format!("tx-{n}")),
        revision: "1".into(),
        patient_id: PatientId::new(format!("pat-{n}")),
        accepted_at: t0() - chrono::Duration::minutes(5),
        // No appointment: a financed plan's lender charge is a task for staff (see
        // `settlement.rs` for plans with a treatment date).
        treatment_date: None,
        procedures: vec![PlannedProcedure {
            code: CdtCode::new(code),
            fee: Money::usd(fee),
            primary_estimate: Some(Money::usd(estimate)),
            secondary_estimate: None,
        }],
    }
}

/// A 20 % deposit, CareCredit then Sunbit, the in-house plan (6 monthly installments) as the last
/// resort, reminders 30 and 60 minutes apart, a poll every 10 minutes.
pub(crate) fn default_config() -> WorkflowConfig {
    let slot = |id: &str| LenderSlot {
        lender: LenderId::new(id),
        limits: AmountLimits::NONE,
    };
    WorkflowConfig {
        waterfall: Waterfall::new(
            vec![slot("carecredit"), slot("sunbit")],
            WaterfallPolicy {
                on_partial: PartialApprovalRule::StopForStaff,
                in_house_fallback: true,
            },
        ),
        deposit: DepositRule::BasisPoints(2_000),
        in_house: Some(InHouseTerms {
            deposit: DepositRule::None,
            installments: 6,
            interval: InstallmentInterval::MONTHLY,
        }),
        reminder_delays: vec![Duration::from_secs(30 * 60), Duration::from_secs(60 * 60)],
        give_up_after: Duration::from_secs(60 * 60),
        poll_interval: Duration::from_secs(10 * 60),
        // A flat 10-minute cadence and no session lapse for both lenders, so these runner tests
        // count polls simply; the machine's tests cover each lender's real schedule.
        lender_schedules: ["carecredit", "sunbit"]
            .into_iter()
            .map(|id| {
                (
                    LenderId::new(id),
                    financing_core::PollSchedule {
                        steps: Vec::new(),
                        then_every: Duration::from_secs(10 * 60),
                        session_life: None,
                        remind_before_expiry: Duration::from_secs(10 * 60),
                        staff_decides_within: None,
                    },
                )
            })
            .collect(),
        payment_preference: chairside_workflow::PaymentPreference::PayLink,
        time_zone: None,
        lender_names: Vec::new(),
    }
}

/// One practice, its fakes, a SQLite file and a clock.
pub(crate) struct World {
    _dir: TempDir,
    pub(crate) path: PathBuf,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) pms: Arc<FakePms>,
    pub(crate) carecredit: Arc<FakeLender>,
    pub(crate) sunbit: Arc<FakeLender>,
    pub(crate) stripe: Arc<FakeStripe>,
    pub(crate) messenger: Arc<FakeMessenger>,
    pub(crate) config: WorkflowConfig,
    pub(crate) policy: PolicySettings,
}

impl World {
    pub(crate) fn new() -> Self {
        let _ = logs();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chairside.db");
        Self {
            _dir: dir,
            path,
            clock: Arc::new(ManualClock::new(t0())),
            pms: Arc::new(FakePms::default()),
            carecredit: Arc::new(FakeLender::new("carecredit", "CareCredit")),
            sunbit: Arc::new(FakeLender::new("sunbit", "Sunbit")),
            stripe: Arc::new(FakeStripe::default()),
            messenger: Arc::new(FakeMessenger::default()),
            config: default_config(),
            policy: PolicySettings::default(),
        }
    }

    /// Patient `n` accepts a plan of `fee` with an insurance estimate of `estimate` (cents).
    pub(crate) fn accept(&self, n: u32, fee: i64, estimate: i64) -> WorkflowId {
        self.accept_plan(plan(n, fee, estimate), patient(n))
    }

    pub(crate) fn accept_plan(&self, plan: TreatmentPlan, contact: PatientContact) -> WorkflowId {
        let accepted_at = plan.accepted_at;
        // Detection names a workflow by the fingerprint of what is financed.
        let id = WorkflowId::derive(&WorkflowKey {
            practice_id: practice_id(),
            plan_id: plan.id.clone(),
            revision: financing_core::check::fingerprint(&plan),
        });
        self.pms.accept(plan, contact, accepted_at);
        id
    }

    /// A store on the test's file, as a separate process would open it.
    pub(crate) async fn store(&self) -> Arc<SqliteStore> {
        let store = SqliteStore::open(&self.path, DataKey::parse(KEY_HEX).unwrap())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }

    pub(crate) fn runtime(&self) -> PracticeRuntime {
        let mut lenders: HashMap<LenderId, SharedProvider> = HashMap::new();
        lenders.insert(LenderId::new("carecredit"), self.carecredit.clone());
        lenders.insert(LenderId::new("sunbit"), self.sunbit.clone());
        PracticeRuntime {
            profile: PracticeProfile {
                id: practice_id(),
                name: "Smile Dental (test)".into(),
                state: UsState::TX,
                time_zone: "America/New_York".into(),
                location_id: LocationId::new("loc-1"),
                phone: "+15555550000".into(),
                email: "front@smile.example.test".into(),
            },
            workflow: self.config.clone(),
            policy: self.policy,
            pms: self.pms.clone(),
            lenders,
            payments: self.stripe.clone(),
            messenger: self.messenger.clone(),
            patient_links: chairside_engine::links::PatientLinks::new(
                Url::parse("https://pay.smile.example.test/").unwrap(),
                secrecy::SecretString::from("test-link-key-0123456789abcdef0123".to_owned()),
                std::time::Duration::from_secs(86_400),
            ),
        }
    }

    /// A runner named `owner` with its own store on the file.
    pub(crate) async fn runner(&self, owner: &str) -> Runner {
        self.runner_with(owner, 64).await
    }

    pub(crate) async fn runner_with(&self, owner: &str, batch: u32) -> Runner {
        self.runner_tuned(owner, vec![self.runtime()], |c| c.batch = batch)
            .await
    }

    /// A runner named `owner` over `practices`, its settings changed by `tune`.
    pub(crate) async fn runner_tuned(
        &self,
        owner: &str,
        practices: Vec<PracticeRuntime>,
        tune: impl FnOnce(&mut RunnerConfig),
    ) -> Runner {
        let store: Arc<dyn Store> = self.store().await;
        let _ = self.messenger.patient_page.set(store.clone());
        let mut config = RunnerConfig {
            owner: owner.into(),
            lease: LEASE,
            batch: 64,
            concurrency: 4,
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
                max_attempts: 5,
            },
            ..RunnerConfig::default()
        };
        tune(&mut config);
        Runner::new(store, practices, config, self.clock.clone())
            // These tests accept plans before the first poll; go-live from now has tests of its
            // own (detect.rs).
            .with_detection(chairside_engine::detect::DetectConfig {
                go_live: chairside_engine::detect::GoLive::Everything,
                ..chairside_engine::detect::DetectConfig::default()
            })
    }

    /// Runs `runner` until nothing is due, jumping the clock to the next timer or retry each time,
    /// until no workflow has anything scheduled.
    pub(crate) async fn settle(&self, runner: &Runner) {
        for _ in 0..200 {
            runner.run_until_idle(100).await.unwrap();
            let next = self.next_due(runner).await;
            match next {
                None => return,
                Some(at) if at > self.clock.now_utc() => self.clock.set(at),
                // Due, yet the runner went idle: a lease another runner holds, or a command queued
                // behind one that waits. Let a second pass.
                Some(_) => self.clock.advance(Duration::from_secs(1)),
            }
        }
        panic!("the workflows did not settle in 200 rounds");
    }

    /// Like [`World::settle`], but stops as soon as `until` holds for workflow `id` (checked
    /// before every clock jump). Panics if the workflows settle without it.
    pub(crate) async fn settle_until(
        &self,
        runner: &Runner,
        id: &WorkflowId,
        until: impl Fn(&WorkflowRow) -> bool,
    ) {
        for _ in 0..200 {
            runner.run_until_idle(100).await.unwrap();
            if until(&self.row(runner, id).await) {
                return;
            }
            match self.next_due(runner).await {
                None => panic!("settled before the condition held"),
                Some(at) if at > self.clock.now_utc() => self.clock.set(at),
                Some(_) => self.clock.advance(Duration::from_secs(1)),
            }
        }
        panic!("the condition did not hold in 200 rounds");
    }

    /// The earliest time any workflow is due.
    pub(crate) async fn next_due(&self, runner: &Runner) -> Option<DateTime<Utc>> {
        runner
            .store()
            .workflows(None, None, 1_000)
            .await
            .unwrap()
            .iter()
            .filter_map(|w| w.next_due_at)
            .min()
    }

    pub(crate) async fn row(&self, runner: &Runner, id: &WorkflowId) -> WorkflowRow {
        runner
            .store()
            .workflow(id)
            .await
            .unwrap()
            .expect("the workflow exists")
    }

    pub(crate) async fn tasks(&self, runner: &Runner) -> Vec<TaskRow> {
        runner.store().tasks(None, false).await.unwrap()
    }

    /// Open tasks other than the lender charge staff run for a plan without a treatment date.
    pub(crate) async fn tasks_besides_settlement(&self, runner: &Runner) -> Vec<TaskRow> {
        self.tasks(runner)
            .await
            .into_iter()
            .filter(|t| t.task.kind != chairside_workflow::TaskKind::Settlement)
            .collect()
    }
}

impl ManualClock {
    pub(crate) fn now_utc(&self) -> DateTime<Utc> {
        chairside_engine::clock::Clock::now(self)
    }
}

/// A plain connection pool on the file, to look at the rows as a DBA would.
pub(crate) async fn raw_pool(path: &Path) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

/// Every byte of the database: the main file and its write-ahead log.
pub(crate) fn database_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(more) = std::fs::read(PathBuf::from(wal)) {
        bytes.extend(more);
    }
    bytes
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Log output captured in memory.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything every runner test logs, at every level. Installed once, globally, before the first
/// runner starts: a thread-scoped subscriber misses events under parallel tests because tracing
/// caches callsite interest process-wide.
pub(crate) fn logs() -> &'static Capture {
    static LOGS: OnceLock<Capture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        capture
    })
}
