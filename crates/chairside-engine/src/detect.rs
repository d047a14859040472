//! Detection: polling each practice system's change feed and turning accepted plans into
//! workflows (see DESIGN.md). `Runner::poll_practice` is the per-practice entry point.

use std::time::Instant;

use chairside_workflow::{Event, WorkflowId, WorkflowKey, WorkflowState};

use crate::ports::PlanState;
use crate::runner::{PracticeRuntime, Runner, RunnerError};
use crate::store::NewWorkflow;

impl Runner {
    /// Polls every practice system once and records accepted plans as workflows. Returns the
    /// number of workflows created. A practice whose system fails is skipped this round.
    ///
    /// # Errors
    /// [`StoreError`] only.
    pub async fn poll(&self) -> Result<usize, RunnerError> {
        let mut created = 0;
        for rt in self.practices.values() {
            created += self.poll_practice(rt).await?;
        }
        Ok(created)
    }

    /// Polls one practice's system once (see [`Runner::poll`]). Returns the number of workflows
    /// created.
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError) only.
    pub async fn poll_practice(&self, rt: &PracticeRuntime) -> Result<usize, RunnerError> {
        let source = rt.pms.source().to_owned();
        let cursor = self.store.cursor(&rt.profile.id, &source).await?;
        let started = Instant::now();
        let changes = rt.pms.changed_plans(cursor.as_deref()).await;
        self.count_call(started);
        let changes = match changes {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(practice = %rt.profile.id, source, kind = %e.kind(), "poll failed; trying again next round");
                return Ok(0);
            }
        };
        let now = self.clock.now();
        let mut new = Vec::new();
        let mut events = Vec::new();
        for plan in changes.plans {
            let key = WorkflowKey {
                practice_id: rt.profile.id.clone(),
                plan_id: plan.plan_id.clone(),
                revision: plan.revision.clone(),
            };
            match plan.state {
                PlanState::Accepted => {
                    // A practice system's clock (or a wrong office time zone) can put the acceptance
                    // in the future; it cannot have happened after we saw it.
                    let accepted_at = plan.accepted_at.map_or(now, |t| t.min(now));
                    let mut state = WorkflowState::new(key, plan.patient_id.clone(), accepted_at);
                    let first = state.start();
                    new.push(NewWorkflow { state, first });
                }
                PlanState::Rejected => events.push((
                    WorkflowId::derive(&key),
                    Event::PlanWithdrawn {
                        reason: "rejected".into(),
                    },
                )),
                PlanState::Other(_) => {}
            }
        }
        let created = self
            .store
            .record_poll(
                &rt.profile.id,
                &source,
                &changes.next_cursor,
                new,
                events,
                now,
            )
            .await?;
        if !created.is_empty() {
            tracing::info!(practice = %rt.profile.id, source, created = created.len(), "accepted plans detected");
        }
        Ok(created.len())
    }
}
