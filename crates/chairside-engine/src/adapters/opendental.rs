//! Open Dental as a [`PracticeSystem`].

use async_trait::async_trait;
use financing_core::{PatientContact, PatientId, TreatmentPlan, Tz};
use opendental_client::{
    AcceptanceRule, Client, NewCommlog, PatNum, PlanCursor, TreatPlanNum, TreatPlanQuery,
};

use super::{external, invalid};
use crate::ports::{ExternalError, PlanChanges, PlanState, PlanSummary, PracticeSystem};

/// Open Dental through `opendental-client`.
#[derive(Debug, Clone)]
pub struct OpenDentalPractice {
    client: Client,
    rule: AcceptanceRule,
    office_tz: Tz,
}

impl OpenDentalPractice {
    /// Wraps a built client; `rule` says which plans count as accepted, `office_tz` is the office's
    /// clock (Open Dental's times are local).
    pub fn new(client: Client, rule: AcceptanceRule, office_tz: Tz) -> Self {
        Self {
            client,
            rule,
            office_tz,
        }
    }
}

fn parse_num(id: &str, what: &str) -> Result<u64, ExternalError> {
    id.parse()
        .map_err(|_| invalid(format!("not an Open Dental {what} number")))
}

#[async_trait]
impl PracticeSystem for OpenDentalPractice {
    fn source(&self) -> &str {
        "opendental"
    }

    async fn changed_plans(&self, cursor: Option<&str>) -> Result<PlanChanges, ExternalError> {
        let cursor = match cursor {
            Some(c) => c
                .parse::<PlanCursor>()
                .map_err(|_| invalid("the stored Open Dental cursor is not valid; reset it"))?,
            None => PlanCursor::beginning(),
        };
        let changed = self
            .client
            .changed_treat_plans(&cursor)
            .await
            .map_err(external)?;
        let mut plans = Vec::new();
        for plan in changed.plans {
            if !self.rule.accepts(&plan) {
                continue;
            }
            // The revision fingerprints what the patient agreed to, so it needs the procedures.
            let detail = self.client.plan_detail(plan).await.map_err(external)?;
            let mapped = detail
                .to_treatment_plan(self.rule, self.office_tz)
                .map_err(external)?;
            plans.push(PlanSummary {
                plan_id: mapped.id,
                revision: mapped.revision,
                patient_id: mapped.patient_id,
                state: PlanState::Accepted,
                accepted_at: Some(mapped.accepted_at),
            });
        }
        Ok(PlanChanges {
            plans,
            next_cursor: changed.next.to_string(),
        })
    }

    async fn plan(&self, summary: &PlanSummary) -> Result<TreatmentPlan, ExternalError> {
        let num = TreatPlanNum::new(parse_num(summary.plan_id.as_str(), "plan")?);
        let pat = PatNum::new(parse_num(summary.patient_id.as_str(), "patient")?);
        let plans = self
            .client
            .list_treat_plans(&TreatPlanQuery::new().pat_num(pat))
            .await
            .map_err(external)?;
        let plan = plans
            .into_iter()
            .find(|p| p.treat_plan_num == num)
            .ok_or_else(|| invalid("the accepted plan is no longer in Open Dental"))?;
        let detail = self.client.plan_detail(plan).await.map_err(external)?;
        let mut mapped = detail
            .to_treatment_plan(self.rule, self.office_tz)
            .map_err(external)?;
        mapped.revision.clone_from(&summary.revision);
        Ok(mapped)
    }

    async fn patient(&self, patient: &PatientId) -> Result<PatientContact, ExternalError> {
        let pat = PatNum::new(parse_num(patient.as_str(), "patient")?);
        Ok(self
            .client
            .get_patient(pat)
            .await
            .map_err(external)?
            .to_contact())
    }

    async fn find_note(
        &self,
        patient: &PatientId,
        marker: &str,
    ) -> Result<Option<String>, ExternalError> {
        let pat = PatNum::new(parse_num(patient.as_str(), "patient")?);
        let found = self
            .client
            .find_commlog_by_marker(pat, &tag(marker))
            .await
            .map_err(external)?;
        Ok(found.map(|c| c.commlog_num.to_string()))
    }

    async fn write_note(
        &self,
        patient: &PatientId,
        marker: &str,
        text: &str,
    ) -> Result<String, ExternalError> {
        let pat = PatNum::new(parse_num(patient.as_str(), "patient")?);
        let tag = tag(marker);
        let note = NewCommlog::new(pat, format!("{text}\n{tag}"));
        let written = self
            .client
            .write_commlog_once(&note, &tag)
            .await
            .map_err(external)?;
        Ok(written
            .row()
            .map(|c| c.commlog_num.to_string())
            .unwrap_or_else(|| tag.clone()))
    }
}

fn tag(marker: &str) -> String {
    format!("[chairside:{marker}]")
}
