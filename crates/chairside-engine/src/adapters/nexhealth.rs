//! NexHealth (Dentrix G-series and Enterprise, Open Dental, Eaglesoft behind it) as a
//! [`PracticeSystem`].
//!
//! NexHealth writes are asynchronous: a note is *requested* and confirmed later. The runner treats
//! a requested note as written (it is durable at NexHealth and found again by its marker), so a
//! retry never requests it twice.

use async_trait::async_trait;
use financing_core::{PatientContact, PatientId, TreatmentPlan};
use nexhealth_client::{Client, NoteMarker, PlanStatus, SyncCursor, TreatmentPlanId};

use super::{external, invalid};
use crate::ports::{
    ExternalError, PlanChanges, PlanState, PlanSummary, PracticeSystem, UnreadableRecord,
};
use chrono::{DateTime, Utc};

/// NexHealth through `nexhealth-client`.
#[derive(Debug, Clone)]
pub struct NexHealthPractice {
    client: Client,
}

impl NexHealthPractice {
    /// Wraps a built client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl PracticeSystem for NexHealthPractice {
    fn source(&self) -> &str {
        "nexhealth"
    }

    async fn changed_plans(&self, cursor: Option<&str>) -> Result<PlanChanges, ExternalError> {
        let cursor = match cursor {
            Some(c) => c
                .parse::<SyncCursor>()
                .map_err(|_| invalid("the stored NexHealth cursor is not valid; reset it"))?,
            None => SyncCursor::beginning(),
        };
        let changed = self
            .client
            .list_changed_treatment_plans(&cursor, None)
            .await
            .map_err(external)?;
        let mut plans = Vec::new();
        let mut unreadable = Vec::new();
        for plan in changed.plans {
            let marker = plan
                .updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let Some(patient_id) = plan.patient_id.clone() else {
                unreadable.push(UnreadableRecord {
                    plan_id: Some(plan.id.clone().into()),
                    marker,
                    field: "treatment_plan.patient_id: missing".into(),
                });
                continue;
            };
            let state = match &plan.status {
                PlanStatus::Accepted => PlanState::Accepted,
                PlanStatus::Rejected => PlanState::Rejected,
                other => PlanState::Other(other.to_string()),
            };
            plans.push(PlanSummary {
                plan_id: plan.id.clone().into(),
                revision: marker,
                patient_id: patient_id.into(),
                state,
                accepted_at: Some(plan.updated_at),
            });
        }
        // Plans that could not be read: each a staff task naming the plan and the field, while
        // detection moves past them (docs/detection.md).
        unreadable.extend(changed.unreadable.into_iter().map(|u| {
            UnreadableRecord {
                plan_id: u.id.map(Into::into),
                marker: u
                    .updated_at
                    .unwrap_or_else(|| format!("listing position {}", u.position)),
                field: u.error,
            }
        }));
        Ok(PlanChanges {
            plans,
            unreadable,
            next_cursor: changed.next_cursor.to_string(),
        })
    }

    fn clamp_cursor(&self, cursor: &str, now: DateTime<Utc>) -> String {
        match cursor.parse::<SyncCursor>() {
            Ok(c) if c.watermark().is_some_and(|w| w > now) => SyncCursor::since(now).to_string(),
            _ => cursor.to_owned(),
        }
    }

    async fn plan(&self, summary: &PlanSummary) -> Result<TreatmentPlan, ExternalError> {
        let plan = self
            .client
            .get_treatment_plan(&TreatmentPlanId::new(summary.plan_id.as_str()))
            .await
            .map_err(external)?;
        let mut mapped = plan
            .to_treatment_plan(summary.accepted_at.unwrap_or_else(chrono::Utc::now))
            .ok_or_else(|| invalid("the NexHealth plan has no patient"))?;
        mapped.revision.clone_from(&summary.revision);
        Ok(mapped)
    }

    async fn patient(&self, patient: &PatientId) -> Result<PatientContact, ExternalError> {
        self.client
            .get_patient_contact(&nexhealth_client::PatientId::new(patient.as_str()))
            .await
            .map_err(external)
    }

    async fn find_note(
        &self,
        patient: &PatientId,
        marker: &str,
    ) -> Result<Option<String>, ExternalError> {
        let marker = NoteMarker::new(marker).map_err(external)?;
        let found = self
            .client
            .find_ledger_note(&nexhealth_client::PatientId::new(patient.as_str()), &marker)
            .await
            .map_err(external)?;
        Ok(found.map(|n| n.id.map(|id| id.to_string()).unwrap_or_default()))
    }

    async fn write_note(
        &self,
        patient: &PatientId,
        marker: &str,
        text: &str,
    ) -> Result<String, ExternalError> {
        let marker = NoteMarker::new(marker).map_err(external)?;
        let written = self
            .client
            .ensure_ledger_note(
                &nexhealth_client::PatientId::new(patient.as_str()),
                &marker,
                text,
            )
            .await
            .map_err(external)?;
        Ok(written
            .note()
            .id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default())
    }
}
