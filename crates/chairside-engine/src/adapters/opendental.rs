//! Open Dental as a [`PracticeSystem`].

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use financing_core::{PatientContact, PatientId, TreatmentPlan, Tz};
use opendental_client::{
    AcceptanceRule, Client, NewCommlog, NewPayment, NewTreatPlan, PatNum, PlanCursor, TreatPlanNum,
    TreatPlanQuery, WriteOutcome,
};

use super::{external, invalid};
use crate::ports::{
    EnsuredPatient, ExternalError, PaymentPosting, PlanChanges, PlanState, PlanSummary, PlanWrite,
    PracticeSystem, UnreadableRecord, payment_marker, refund_marker,
};
use chairside_workflow::intake::{Candidate, same_patient};

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
        // Only the listing is read here; each accepted plan's procedures are read by detection,
        // plan by plan, so one plan's failing or malformed procedures hold up no other.
        let plans = changed
            .plans
            .iter()
            .map(|plan| {
                let accepted = self.rule.accepts(plan);
                PlanSummary {
                    plan_id: plan.treat_plan_num.to_plan_id(),
                    revision: plan
                        .sec_date_t_edit
                        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
                        .unwrap_or_default(),
                    patient_id: plan.pat_num.to_patient_id(),
                    state: if accepted {
                        PlanState::Accepted
                    } else {
                        PlanState::Other(plan.status.as_str().to_owned())
                    },
                    accepted_at: self
                        .rule
                        .accepted_at(plan)
                        .map(|t| office_to_utc(t, self.office_tz)),
                }
            })
            .collect();
        let unreadable = changed
            .unreadable
            .iter()
            .map(|u| UnreadableRecord {
                plan_id: u.treat_plan_num.map(|n| n.to_plan_id()),
                marker: u.sec_date_t_edit.map_or_else(
                    || "unknown edit time".to_owned(),
                    |t| t.format("%Y-%m-%dT%H:%M:%S").to_string(),
                ),
                field: u.error.to_string(),
            })
            .collect();
        Ok(PlanChanges {
            plans,
            unreadable,
            next_cursor: changed.next.to_string(),
        })
    }

    fn clamp_cursor(&self, cursor: &str, now: DateTime<Utc>) -> String {
        // Open Dental's times are the office's local time.
        let local_now = now.with_timezone(&self.office_tz).naive_local();
        match cursor.parse::<PlanCursor>() {
            Ok(c) if c.watermark().is_some_and(|w| w > local_now) => {
                PlanCursor::since(local_now).to_string()
            }
            _ => cursor.to_owned(),
        }
    }

    async fn plan(&self, summary: &PlanSummary) -> Result<TreatmentPlan, ExternalError> {
        let num = TreatPlanNum::new(parse_num(summary.plan_id.as_str(), "plan")?);
        let pat = PatNum::new(parse_num(summary.patient_id.as_str(), "patient")?);
        let (plans, unreadable) = self
            .client
            .list_treat_plans_tolerant(&TreatPlanQuery::new().pat_num(pat))
            .await
            .map_err(external)?;
        if let Some(bad) = unreadable.iter().find(|u| u.treat_plan_num == Some(num)) {
            return Err(invalid(bad.error.to_string()));
        }
        // Checked against what was asked: the plan of this number *and* this patient.
        let plan = plans
            .into_iter()
            .find(|p| p.treat_plan_num == num && p.pat_num == pat)
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

    /// Search (`GET /patients?LName=&FName=`, matched on birth date and phone), then
    /// `POST /patients`. Open Dental has no idempotency key; the search first is the
    /// reconciliation, so a retry after an unknown outcome finds the patient created before.
    async fn ensure_patient(&self, who: &PatientContact) -> Result<EnsuredPatient, ExternalError> {
        if let Some(id) = self.matching(who).await? {
            return Ok(EnsuredPatient::Matched(id));
        }
        let new = opendental_client::NewPatient {
            last_name: who.last_name.clone(),
            first_name: who.first_name.clone(),
            birthdate: who.date_of_birth,
            wireless_phone: who
                .mobile_phone
                .as_deref()
                .map(od_phone)
                .unwrap_or_default(),
            email: who.email.clone().unwrap_or_default(),
            state: who.state().map(|s| s.code().to_owned()).unwrap_or_default(),
            // Consent lives in Chairside's record; Open Dental's field is left to the office.
            txt_msg_ok: None,
        };
        match self.client.create_patient(&new).await.map_err(external)? {
            Some(p) => Ok(EnsuredPatient::Created(p.pat_num.to_patient_id())),
            // An answer without the row: find what was just created.
            None => match self.matching(who).await? {
                Some(id) => Ok(EnsuredPatient::Created(id)),
                None => Err(ExternalError::new(
                    financing_core::ErrorKind::Indeterminate,
                    "opendental: the patient was created but not found by search".to_owned(),
                )),
            },
        }
    }

    /// `POST /treatplans` (PatNum, Heading, Note with the case and the marker: Open Dental
    /// creates it Inactive, so the poller's acceptance rule never takes it for a new case), after
    /// a `GET /treatplans?PatNum=` finds none carrying the marker: Open Dental takes no idempotency
    /// key (INTEGRATIONS.md, Open Dental "Treatment plans"; opendental.com/site/apitreatplans.html,
    /// "TreatPlans POST (create)", 23.2.13).
    async fn ensure_plan(
        &self,
        patient: &PatientId,
        marker: &str,
        plan: &chairside_workflow::intake::CasePlan,
    ) -> Result<PlanWrite, ExternalError> {
        let pat = PatNum::new(parse_num(patient.as_str(), "patient")?);
        let tag = tag(marker);
        let new = NewTreatPlan::new(
            pat,
            plan.heading.clone(),
            format!("{}\n{tag}", plan.summary),
        );
        let outcome = self
            .client
            .create_treat_plan_once(&new, &tag)
            .await
            .map_err(external)?;
        Ok(match outcome {
            WriteOutcome::AlreadyWritten(p) => {
                PlanWrite::AlreadyWritten(p.treat_plan_num.to_string())
            }
            WriteOutcome::Created(p) => {
                PlanWrite::Written(p.map_or(tag, |p| p.treat_plan_num.to_string()))
            }
            _ => PlanWrite::Written(tag),
        })
    }

    /// `POST /payments` (PayAmt, PatNum, PayNote with the Stripe payment's marker), after a
    /// `GET /payments?PatNum=` finds none carrying it: Open Dental takes no idempotency key
    /// (INTEGRATIONS.md, Open Dental `POST /payments`).
    async fn post_payment(
        &self,
        patient: &PatientId,
        stripe_id: &str,
        amount: financing_core::Money,
        note: &str,
    ) -> Result<PaymentPosting, ExternalError> {
        let pat = PatNum::new(parse_num(patient.as_str(), "patient")?);
        let marker = payment_marker(stripe_id);
        let mut payment = NewPayment::new(pat, amount);
        payment.pay_note = Some(format!("{note}\n{marker}"));
        let outcome = self
            .client
            .create_payment_once(&payment, &marker)
            .await
            .map_err(external)?;
        Ok(match outcome {
            WriteOutcome::AlreadyWritten(p) => PaymentPosting::AlreadyPosted(p.pay_num.to_string()),
            WriteOutcome::Created(p) => {
                PaymentPosting::Posted(p.map_or(marker, |p| p.pay_num.to_string()))
            }
            _ => PaymentPosting::Posted(marker),
        })
    }

    /// A negative `POST /payments` (Open Dental enters refunds as negative payments) carrying
    /// the refund's marker, after a `GET /payments?PatNum=` finds none carrying it.
    async fn post_refund(
        &self,
        patient: &PatientId,
        refund_key: &str,
        amount: financing_core::Money,
        note: &str,
    ) -> Result<PaymentPosting, ExternalError> {
        let pat = PatNum::new(parse_num(patient.as_str(), "patient")?);
        let marker = refund_marker(refund_key);
        let mut refund = NewPayment::new(pat, amount);
        refund.pay_note = Some(format!("{note}\n{marker}"));
        let outcome = self
            .client
            .create_refund_once(&refund, &marker)
            .await
            .map_err(external)?;
        Ok(match outcome {
            WriteOutcome::AlreadyWritten(p) => PaymentPosting::AlreadyPosted(p.pay_num.to_string()),
            WriteOutcome::Created(p) => {
                PaymentPosting::Posted(p.map_or(marker, |p| p.pay_num.to_string()))
            }
            _ => PaymentPosting::Posted(marker),
        })
    }
}

impl OpenDentalPractice {
    /// The patients named like `who` that pass the match rule.
    async fn matching(&self, who: &PatientContact) -> Result<Option<PatientId>, ExternalError> {
        let found = self
            .client
            .search_patients(&who.last_name, &who.first_name)
            .await
            .map_err(external)?;
        Ok(found
            .into_iter()
            .map(|p| Candidate {
                id: p.pat_num.to_patient_id(),
                first_name: p.first_name,
                last_name: p.last_name,
                date_of_birth: p.birthdate,
                phones: vec![p.wireless_phone, p.home_phone, p.work_phone],
                email: Some(p.email).filter(|e| !e.trim().is_empty()),
            })
            .find(|c| same_patient(who, c))
            .map(|c| c.id))
    }
}

/// `+15125550188` as Open Dental shows phone numbers, `(512)555-0188`.
fn od_phone(e164: &str) -> String {
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    let national = digits
        .strip_prefix('1')
        .filter(|d| d.len() == 10)
        .unwrap_or(&digits);
    if national.len() == 10 {
        format!("({}){}-{}", &national[..3], &national[3..6], &national[6..])
    } else {
        e164.to_owned()
    }
}

fn tag(marker: &str) -> String {
    format!("[chairside:{marker}]")
}

/// Office-local time to UTC (an ambiguous time takes the earlier instant, a skipped one is read an
/// hour later), as the client reads acceptance times.
fn office_to_utc(t: chrono::NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    tz.from_local_datetime(&t)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(t + chrono::TimeDelta::hours(1)))
                .earliest()
        })
        .map_or_else(|| t.and_utc(), |l| l.with_timezone(&Utc))
}
