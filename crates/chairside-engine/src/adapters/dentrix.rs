//! Dentrix Ascend as a [`PracticeSystem`].

use async_trait::async_trait;
use dentrix_client::{Client, NoteMarker, SyncCursor, TxCaseId};
use financing_core::{PatientContact, PatientId, TreatmentPlan};

use super::{external, invalid};
use chrono::{DateTime, Utc};

use crate::ports::{
    ExternalError, PlanChanges, PlanState, PlanSummary, PracticeSystem, UnreadableRecord,
};

/// Dentrix Ascend through `dentrix-client`.
#[derive(Debug, Clone)]
pub struct DentrixPractice {
    client: Client,
}

impl DentrixPractice {
    /// Wraps a built client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl PracticeSystem for DentrixPractice {
    fn source(&self) -> &str {
        "dentrix"
    }

    async fn changed_plans(&self, cursor: Option<&str>) -> Result<PlanChanges, ExternalError> {
        let cursor = match cursor {
            Some(c) => c
                .parse::<SyncCursor>()
                .map_err(|_| invalid("the stored Dentrix cursor is not valid; reset it"))?,
            None => SyncCursor::beginning(),
        };
        let changed = self
            .client
            .list_changed_txcases(&cursor)
            .await
            .map_err(external)?;
        let plans = changed
            .cases
            .into_iter()
            .map(|case| {
                let state = match &case.status {
                    s if s.is_accepted() => PlanState::Accepted,
                    dentrix_client::CaseStatus::Rejected => PlanState::Rejected,
                    other => PlanState::Other(format!("{other:?}")),
                };
                PlanSummary {
                    plan_id: case.id.clone().into(),
                    revision: case
                        .last_modified
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    patient_id: case.patient_id.clone().into(),
                    state,
                    // Ascend records no acceptance time: the change time is the closest fact.
                    accepted_at: Some(case.last_modified),
                }
            })
            .collect();
        // Cases that could not be read: each a staff task naming the case and the field, while
        // detection moves past them (docs/detection.md).
        let unreadable = changed
            .unreadable
            .into_iter()
            .map(|u| UnreadableRecord {
                plan_id: u.id.map(Into::into),
                marker: u
                    .last_modified
                    .unwrap_or_else(|| format!("listing position {}", u.position)),
                field: u.error,
            })
            .collect();
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
        let detail = self
            .client
            .get_txcase(&TxCaseId::new(summary.plan_id.as_str()))
            .await
            .map_err(external)?;
        let mut plan =
            detail.to_treatment_plan(summary.accepted_at.unwrap_or_else(chrono::Utc::now));
        plan.revision.clone_from(&summary.revision);
        Ok(plan)
    }

    async fn patient(&self, patient: &PatientId) -> Result<PatientContact, ExternalError> {
        self.client
            .get_patient_contact(&dentrix_client::PatientId::new(patient.as_str()))
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
            .find_patient_note(&dentrix_client::PatientId::new(patient.as_str()), &marker)
            .await
            .map_err(external)?;
        Ok(found.map(|n| n.id.to_string()))
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
            .ensure_patient_note(
                &dentrix_client::PatientId::new(patient.as_str()),
                &marker,
                text,
            )
            .await
            .map_err(external)?;
        Ok(written.note().id.to_string())
    }
}
