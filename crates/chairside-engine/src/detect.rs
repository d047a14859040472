//! Detection: polling each practice system's change feed and turning accepted plans into
//! workflows (see DESIGN.md). [`Runner::poll_practice`] is the per-practice entry point.
//!
//! - **Go-live from now.** The first poll of a practice system records every plan already
//!   accepted as the install baseline and starts none of them ([`GoLive::FromNow`]);
//!   [`Runner::backfill`] (`chairside backfill --since DATE`) starts older plans on purpose.
//! - **One bad record is a task, not an outage.** A record the feed cannot read, a plan whose
//!   details cannot be read, or a plan that fails its checks ([`financing_core::check`]) becomes a
//!   staff task naming the plan and the field (never the value), once per plan and version, and
//!   the poll moves past it. A plan whose details fail transiently (an estimate endpoint down) is
//!   retried on later polls with backoff, then becomes a task; the other plans go on.
//! - **Revisions that mean something.** A workflow's revision is the fingerprint of what is
//!   financed ([`financing_core::check::fingerprint`]), so touching a plan changes nothing; an
//!   edit of procedures, fees, estimates or the patient withdraws the live workflow and starts a
//!   new one, or (once financing is done) opens a staff task. A rejection or deletion withdraws
//!   the plan's live workflow whatever its revision.
//! - **Cursors never move past now** ([`PracticeSystem::clamp_cursor`](crate::ports::PracticeSystem::clamp_cursor)).
//! - **Health.** Every poll records its outcome per practice ([`DetectionStore`](crate::store::DetectionStore)): `/readyz`, the
//!   dashboard and the metrics read it.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use financing_core::check::{PlanLimits, check_plan, fingerprint};
use financing_core::{Backoff, ErrorKind, PatientId, PlanId, PracticeId};
use serde::Serialize;

use chairside_workflow::{WorkflowKey, WorkflowState};

use crate::ports::{ExternalError, PlanChanges, PlanState, PlanSummary};
use crate::runner::{PracticeRuntime, Runner, RunnerError};
use crate::store::NewWorkflow;
use crate::store::detection::{
    DetectionBatch, DetectionKind, NewDetectionTask, PendingPlan, Withdrawal,
};
use crate::store::poller::PollerLease;

/// Where a new install starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoLive {
    /// The first poll records the plans already accepted and starts none of them (the default).
    #[default]
    FromNow,
    /// The first poll starts every accepted plan the feed returns (tests, embedders that backfill
    /// by other means).
    Everything,
}

/// Detection settings.
#[derive(Clone, Debug)]
pub struct DetectConfig {
    /// Where a new install starts.
    pub go_live: GoLive,
    /// The bounds a plan and its patient are checked against before anyone is contacted.
    pub limits: PlanLimits,
    /// Retries of a plan whose details failed transiently; after `max_attempts` a staff task.
    pub retry: Backoff,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            go_live: GoLive::FromNow,
            limits: PlanLimits::default(),
            retry: Backoff {
                base: Duration::from_secs(30),
                cap: Duration::from_secs(15 * 60),
                max_attempts: 6,
            },
        }
    }
}

/// One plan `chairside backfill` starts (or would start, with `--dry-run`). Ids and a date only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackfillItem {
    /// The practice.
    pub practice_id: PracticeId,
    /// The plan.
    pub plan_id: PlanId,
    /// The patient's id in the practice system.
    pub patient_id: PatientId,
    /// When it was accepted (as the practice system says).
    pub accepted_at: Option<DateTime<Utc>>,
}

/// The change marker of each plan last read and decided (started or made a task), so a feed that
/// lists a record again (an inclusive cursor, a cursor moved back to now) does not read its
/// details again. In memory: after a restart a plan is read once more, which is harmless.
///
/// Bounded, so an instance that runs for months does not grow with every plan it ever saw: the
/// plans are remembered in two generations of at most [`EXAMINED_PER_GENERATION`] each; when the
/// newer fills it becomes the older and the older is forgotten. A feed lists a record again in
/// the next poll or few, long before tens of thousands of other plans are decided, and a plan
/// forgotten is only read once more (its workflow's key makes a second start a no-op).
#[derive(Debug)]
pub struct Examined {
    generations: std::sync::Mutex<Generations>,
    capacity: usize,
}

/// The most plans one generation of [`Examined`] holds (two are kept: about 15 MiB at most).
pub const EXAMINED_PER_GENERATION: usize = 50_000;

type ExaminedMap = std::collections::HashMap<(PracticeId, PlanId), String>;

#[derive(Debug, Default)]
struct Generations {
    newer: ExaminedMap,
    older: ExaminedMap,
}

impl Default for Examined {
    fn default() -> Self {
        Self::with_capacity(EXAMINED_PER_GENERATION)
    }
}

impl Examined {
    /// Remembers at most `capacity` plans per generation (at least one).
    #[must_use]
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            generations: std::sync::Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn generations(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True when `summary`'s plan was read and decided at this very revision.
    pub(crate) fn seen(&self, practice: &PracticeId, summary: &PlanSummary) -> bool {
        let key = (practice.clone(), summary.plan_id.clone());
        let g = self.generations();
        g.newer
            .get(&key)
            .or_else(|| g.older.get(&key))
            .is_some_and(|m| *m == summary.revision)
    }

    /// Remembers that `summary`'s plan was read and decided at its revision.
    pub(crate) fn remember(&self, practice: &PracticeId, summary: &PlanSummary) {
        let key = (practice.clone(), summary.plan_id.clone());
        let mut g = self.generations();
        g.older.remove(&key);
        g.newer.insert(key, summary.revision.clone());
        if g.newer.len() >= self.capacity {
            g.older = std::mem::take(&mut g.newer);
        }
    }

    /// How many plans are remembered now (at most twice the capacity).
    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.generations();
        g.newer.len() + g.older.len()
    }
}

/// What happened to one accepted plan.
enum Outcome {
    Start(Box<NewWorkflow>),
    Task(NewDetectionTask),
    Retry(PendingPlan),
}

impl Runner {
    /// Polls every practice system once and records accepted plans as workflows. Returns the
    /// number of workflows created. A practice whose system fails is skipped this round (its
    /// health records the failure).
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError) only.
    pub async fn poll(&self) -> Result<usize, RunnerError> {
        let mut created = 0;
        for rt in self.practices.values() {
            created += self.poll_practice(rt).await?;
        }
        Ok(created)
    }

    /// Polls one practice's system once (see the module doc). Returns the number of workflows
    /// created.
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError) only.
    pub async fn poll_practice(&self, rt: &PracticeRuntime) -> Result<usize, RunnerError> {
        self.poll_practice_as(rt, None).await
    }

    /// [`poll_practice`](Self::poll_practice) under a poller lease: the poll's record is fenced
    /// by `lease` ([`PollerStore::record_detection_leased`](crate::store::PollerStore::record_detection_leased)).
    pub(crate) async fn poll_practice_as(
        &self,
        rt: &PracticeRuntime,
        lease: Option<&PollerLease>,
    ) -> Result<usize, RunnerError> {
        let source = rt.pms.source().to_owned();
        let practice = &rt.profile.id;
        let cursor = self.store.cursor(practice, &source).await?;
        let started = Instant::now();
        let changes = rt.pms.changed_plans(cursor.as_deref()).await;
        self.count_call(started);
        let now = self.clock.now();
        let changes = match changes {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(practice = %practice, source, kind = %e.kind(), "poll failed; trying again next round");
                self.store
                    .record_poll_failure(practice, &source, e.kind().label(), now)
                    .await?;
                return Ok(0);
            }
        };
        let baseline_poll = cursor.is_none() && self.detection.go_live == GoLive::FromNow;
        let mut batch = self.unreadable_tasks(rt, &changes);
        batch.cursor = rt.pms.clamp_cursor(&changes.next_cursor, now);
        if baseline_poll {
            batch.baseline_poll = true;
            batch.baseline = changes
                .plans
                .iter()
                .filter(|p| p.state == PlanState::Accepted)
                .map(|p| p.plan_id.clone())
                .collect();
            tracing::info!(practice = %practice, source, before_install = batch.baseline.len(), "first poll: accepted plans before the install recorded; none started (see `chairside backfill`)");
            self.record_poll(practice, &source, batch, now, lease)
                .await?;
            return Ok(0);
        }
        // The latest summary of each plan (a feed may list a plan twice), then the plans whose
        // details are due for a retry.
        let mut latest: BTreeMap<PlanId, (PlanSummary, u32)> = BTreeMap::new();
        for pending in self.store.due_pending(practice, &source, now).await? {
            latest.insert(
                pending.summary.plan_id.clone(),
                (pending.summary, pending.attempts),
            );
        }
        for plan in changes.plans {
            let attempts = latest.get(&plan.plan_id).map_or(0, |(_, a)| *a);
            latest.insert(plan.plan_id.clone(), (plan, attempts));
        }
        let ids: Vec<PlanId> = latest.keys().cloned().collect();
        let before_install: HashSet<PlanId> = self
            .store
            .in_baseline(practice, &source, &ids)
            .await?
            .into_iter()
            .collect();
        // Remembered only once the poll is recorded.
        let mut decided = Vec::new();
        for (plan_id, (summary, attempts)) in latest {
            match &summary.state {
                PlanState::Accepted if before_install.contains(&plan_id) => {
                    batch.cleared.push(plan_id);
                }
                // Read and decided at this very version already: nothing new to read.
                PlanState::Accepted if attempts == 0 && self.examined.seen(practice, &summary) => {}
                PlanState::Accepted => {
                    let outcome = self.examine(rt, &summary, attempts, now).await;
                    if !matches!(outcome, Outcome::Retry(_)) {
                        decided.push(summary.clone());
                    }
                    match outcome {
                        Outcome::Start(new) => {
                            batch.cleared.push(plan_id);
                            batch.new.push(*new);
                        }
                        Outcome::Task(task) => {
                            batch.cleared.push(plan_id);
                            batch.tasks.push(task);
                        }
                        Outcome::Retry(pending) => batch.pending.push(pending),
                    }
                }
                PlanState::Rejected | PlanState::Deleted => {
                    batch.withdrawn.push(Withdrawal {
                        plan_id: plan_id.clone(),
                        reason: if summary.state == PlanState::Rejected {
                            "rejected"
                        } else {
                            "deleted"
                        },
                        marker: summary.revision.clone(),
                    });
                    batch.cleared.push(plan_id);
                }
                PlanState::Other(_) => batch.cleared.push(plan_id),
            }
        }
        let tasks = batch.tasks.len();
        // Recorded as of now, after the plans were read: a new workflow comes due when its commit
        // makes it visible, not when the poll began (the claim lag is measured from it).
        let created = self
            .record_poll(practice, &source, batch, self.clock.now(), lease)
            .await?;
        for summary in &decided {
            self.examined.remember(practice, summary);
        }
        if !created.is_empty() || tasks > 0 {
            tracing::info!(practice = %practice, source, created = created.len(), tasks, "accepted plans detected");
        }
        Ok(created.len())
    }

    /// Records one poll: fenced by the poller lease when there is one.
    async fn record_poll(
        &self,
        practice: &PracticeId,
        source: &str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
        lease: Option<&PollerLease>,
    ) -> Result<Vec<chairside_workflow::WorkflowId>, RunnerError> {
        match lease {
            Some(lease) => {
                self.store
                    .record_detection_leased(lease, source, batch, now)
                    .await
            }
            None => {
                self.store
                    .record_detection(practice, source, batch, now)
                    .await
            }
        }
    }

    /// A task for each record of the feed that could not be read.
    fn unreadable_tasks(&self, rt: &PracticeRuntime, changes: &PlanChanges) -> DetectionBatch {
        let mut batch = DetectionBatch::default();
        for u in &changes.unreadable {
            let plan = u.plan_id.as_ref().map_or_else(
                || format!("(unreadable id, {})", u.marker),
                ToString::to_string,
            );
            tracing::warn!(practice = %rt.profile.id, source = rt.pms.source(), plan, field = u.field, "a plan record could not be read; staff task opened, detection goes on");
            batch.tasks.push(NewDetectionTask {
                kind: DetectionKind::UnreadableRecord,
                plan_id: plan,
                marker: u.marker.clone(),
                field: u.field.clone(),
                problem: "the practice system's record could not be read; correct the field in \
                          the practice system (the plan is looked at again when it changes)"
                    .into(),
            });
        }
        batch
    }

    /// Reads one accepted plan's details and checks them; decides whether to start it.
    async fn examine(
        &self,
        rt: &PracticeRuntime,
        summary: &PlanSummary,
        attempts: u32,
        now: DateTime<Utc>,
    ) -> Outcome {
        let started = Instant::now();
        let read = rt.pms.plan(summary).await;
        self.count_call(started);
        let task = |kind: DetectionKind, field: String, problem: String| {
            tracing::warn!(practice = %rt.profile.id, source = rt.pms.source(), plan = %summary.plan_id, field, "plan not started; staff task opened");
            Outcome::Task(NewDetectionTask {
                kind,
                plan_id: summary.plan_id.to_string(),
                marker: summary.revision.clone(),
                field,
                problem,
            })
        };
        let plan = match read {
            Ok(plan) => plan,
            Err(e) if e.kind() == ErrorKind::Permanent => {
                return task(
                    DetectionKind::UnreadablePlan,
                    describe(&e),
                    "the plan's details could not be read; correct them in the practice system"
                        .into(),
                );
            }
            Err(e) => {
                let attempt = attempts.saturating_add(1);
                let kind = match e.kind() {
                    k @ ErrorKind::Transient { .. } => k,
                    _ => ErrorKind::TRANSIENT,
                };
                return match self
                    .detection
                    .retry
                    .delay(attempt, kind, rand::random::<f64>())
                {
                    Some(delay) => Outcome::Retry(PendingPlan {
                        summary: summary.clone(),
                        attempts: attempt,
                        next_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                        last_error: e.kind().label().to_owned(),
                    }),
                    None => task(
                        DetectionKind::PlanNotLoading,
                        describe(&e),
                        format!(
                            "the plan's details failed to load {attempt} times in a row; check the \
                             practice system, then resolve this task (the plan is looked at again \
                             when it changes)"
                        ),
                    ),
                };
            }
        };
        if let Err(problem) = check_plan(
            &plan,
            &summary.plan_id,
            &summary.patient_id,
            &self.detection.limits,
        ) {
            return task(
                DetectionKind::PlanCheck,
                problem.field,
                problem.problem.to_owned(),
            );
        }
        let key = WorkflowKey {
            practice_id: rt.profile.id.clone(),
            plan_id: summary.plan_id.clone(),
            revision: fingerprint(&plan),
        };
        // A practice system's clock (or a wrong office time zone) can put the acceptance in the
        // future; it cannot have happened after we saw it.
        let accepted_at = summary.accepted_at.map_or(now, |t| t.min(now));
        let mut state = WorkflowState::new(key, summary.patient_id.clone(), accepted_at);
        let first = state.start();
        Outcome::Start(Box::new(NewWorkflow { state, first }))
    }

    /// The accepted plans of every practice (or of `only`) accepted at or after `since` that have
    /// no workflow yet: started, or only listed when `dry_run`. Plans accepted before the install
    /// are included: that is what a backfill is for.
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError); a practice whose system cannot be read is
    /// skipped with a warning (its health records the failure).
    pub async fn backfill(
        &self,
        only: Option<&PracticeId>,
        since: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<BackfillItem>, RunnerError> {
        let mut out = Vec::new();
        for rt in self.practices.values() {
            let practice = &rt.profile.id;
            if only.is_some_and(|p| p != practice) {
                continue;
            }
            let source = rt.pms.source().to_owned();
            let now = self.clock.now();
            let changes = match rt.pms.changed_plans(None).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(practice = %practice, source, kind = %e.kind(), "backfill: the practice system could not be read");
                    self.store
                        .record_poll_failure(practice, &source, e.kind().label(), now)
                        .await?;
                    continue;
                }
            };
            let known: HashSet<PlanId> = self
                .store
                .workflows(Some(practice), None, u32::MAX)
                .await?
                .into_iter()
                .map(|w| w.state.key.plan_id)
                .collect();
            let mut latest: BTreeMap<PlanId, PlanSummary> = BTreeMap::new();
            for p in &changes.plans {
                latest.insert(p.plan_id.clone(), p.clone());
            }
            let chosen: Vec<PlanSummary> = latest
                .into_values()
                .filter(|p| {
                    p.state == PlanState::Accepted
                        && !known.contains(&p.plan_id)
                        && p.accepted_at.is_some_and(|t| t >= since)
                })
                .collect();
            out.extend(chosen.iter().map(|p| BackfillItem {
                practice_id: practice.clone(),
                plan_id: p.plan_id.clone(),
                patient_id: p.patient_id.clone(),
                accepted_at: p.accepted_at,
            }));
            if dry_run {
                continue;
            }
            let cursor = self.store.cursor(practice, &source).await?;
            let mut batch = self.unreadable_tasks(rt, &changes);
            match cursor {
                Some(c) => batch.cursor = c,
                None => {
                    // Not live yet: this is its baseline too.
                    batch.cursor = rt.pms.clamp_cursor(&changes.next_cursor, now);
                    batch.baseline_poll = self.detection.go_live == GoLive::FromNow;
                    if batch.baseline_poll {
                        batch.baseline = changes
                            .plans
                            .iter()
                            .filter(|p| p.state == PlanState::Accepted)
                            .map(|p| p.plan_id.clone())
                            .collect();
                    }
                }
            }
            for summary in &chosen {
                match self.examine(rt, summary, 0, now).await {
                    Outcome::Start(new) => batch.new.push(*new),
                    Outcome::Task(task) => batch.tasks.push(task),
                    // A backfilled plan is in the baseline, which the poller does not retry:
                    // staff run the backfill again.
                    Outcome::Retry(pending) => batch.tasks.push(NewDetectionTask {
                        kind: DetectionKind::PlanNotLoading,
                        plan_id: pending.summary.plan_id.to_string(),
                        marker: pending.summary.revision.clone(),
                        field: pending.last_error,
                        problem: "backfill: the plan's details failed to load; run the backfill \
                                  again later"
                            .into(),
                    }),
                }
            }
            let created = self
                .store
                .record_detection(practice, &source, batch, now)
                .await?;
            tracing::info!(practice = %practice, source, started = created.len(), "backfill");
        }
        Ok(out)
    }
}

/// An error's description for a task: the clients' errors name the resource and the field path,
/// never a value.
fn describe(e: &ExternalError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(plan: &str, revision: &str) -> PlanSummary {
        PlanSummary {
            plan_id: PlanId::new(plan),
            revision: revision.to_owned(),
            patient_id: PatientId::new("pat-1"),
            state: PlanState::Accepted,
            accepted_at: None,
        }
    }

    #[test]
    fn a_plan_is_seen_at_the_revision_it_was_decided_at_and_not_at_another() {
        let examined = Examined::default();
        let practice = PracticeId::new("p1");
        examined.remember(&practice, &summary("plan-1", "r1"));
        assert!(examined.seen(&practice, &summary("plan-1", "r1")));
        assert!(!examined.seen(&practice, &summary("plan-1", "r2")));
        assert!(!examined.seen(&PracticeId::new("p2"), &summary("plan-1", "r1")));
        assert!(!examined.seen(&practice, &summary("plan-2", "r1")));
    }

    #[test]
    fn the_plans_remembered_stay_bounded_and_the_latest_are_kept() {
        let examined = Examined::with_capacity(10);
        let practice = PracticeId::new("p1");
        for i in 0..1_000 {
            examined.remember(&practice, &summary(&format!("plan-{i}"), "r1"));
            assert!(examined.len() <= 20, "{} plans remembered", examined.len());
        }
        // The last ten decided are all still known; the first were forgotten (read once more).
        for i in 990..1_000 {
            assert!(examined.seen(&practice, &summary(&format!("plan-{i}"), "r1")));
        }
        assert!(!examined.seen(&practice, &summary("plan-0", "r1")));
    }

    #[test]
    fn a_plan_decided_again_moves_to_the_newer_generation_and_is_counted_once() {
        let examined = Examined::with_capacity(3);
        let practice = PracticeId::new("p1");
        for plan in ["a", "b", "c"] {
            examined.remember(&practice, &summary(plan, "r1"));
        }
        // `a`, `b`, `c` are the older generation now; `a` decided again at a new revision.
        examined.remember(&practice, &summary("a", "r2"));
        assert_eq!(examined.len(), 3);
        assert!(examined.seen(&practice, &summary("a", "r2")));
        assert!(!examined.seen(&practice, &summary("a", "r1")));
        // Two more fill the newer generation: `b` and `c` are forgotten, `a` is kept.
        examined.remember(&practice, &summary("d", "r1"));
        examined.remember(&practice, &summary("e", "r1"));
        assert!(examined.seen(&practice, &summary("a", "r2")));
        assert!(!examined.seen(&practice, &summary("b", "r1")));
        assert_eq!(examined.len(), 3);
    }
}
