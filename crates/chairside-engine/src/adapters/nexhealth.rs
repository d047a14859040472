//! NexHealth (Dentrix G-series and Enterprise, Open Dental, Eaglesoft behind it) as a
//! [`PracticeSystem`].
//!
//! NexHealth writes are asynchronous: a note is *requested* and confirmed later. The runner treats
//! a requested note as written (it is durable at NexHealth and found again by its marker), so a
//! retry never requests it twice.

use async_trait::async_trait;
use financing_core::{PatientContact, PatientId, TreatmentPlan};
use nexhealth_client::{
    Client, LedgerDirection, NewLedgerPayment, NoteMarker, PaymentWrite, PlanStatus, SyncCursor,
    TransactionId, TreatmentPlanId,
};

use super::{external, invalid};
use crate::ports::{
    EnsuredPatient, ExternalError, PaymentPosting, PlanChanges, PlanState, PlanSummary, PlanWrite,
    PracticeSystem, UnreadableRecord, payment_marker, refund_marker,
};
use chairside_workflow::intake::{Candidate, same_patient};
use chrono::{DateTime, Utc};

/// NexHealth through `nexhealth-client`.
#[derive(Debug, Clone)]
pub struct NexHealthPractice {
    client: Client,
    provider_id: Option<String>,
}

impl NexHealthPractice {
    /// Wraps a built client (no provider: intake patients are left to staff until one is set).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            provider_id: None,
        }
    }

    /// The provider new patients are created under: NexHealth's `POST /patients` requires
    /// `provider.provider_id` (INTEGRATIONS.md §4).
    #[must_use]
    pub fn with_provider(mut self, provider_id: Option<String>) -> Self {
        self.provider_id = provider_id.filter(|p| !p.trim().is_empty());
        self
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

    /// NexHealth documents treatment plans as read-only (`GET /treatment_plans`,
    /// `GET /treatment_plans/{id}`; docs.nexhealth.com/reference/treatment-plans, INTEGRATIONS.md
    /// §4): no write, so staff enter the case plan in the EHR.
    async fn ensure_plan(
        &self,
        patient: &PatientId,
        marker: &str,
        plan: &chairside_workflow::intake::CasePlan,
    ) -> Result<PlanWrite, ExternalError> {
        let _ = (patient, marker, plan);
        Ok(PlanWrite::NotSupported {
            reason: "NexHealth's treatment plans are read-only through its API".into(),
        })
    }

    /// NexHealth's find-or-create recipe: `GET /patients?name=&date_of_birth=` matched on the
    /// phone too, then `POST /patients` with `return_existing_if_match=true`. A namesake with the
    /// same birth date but another phone is not written to: NexHealth would answer it as a match,
    /// so a person decides.
    async fn ensure_patient(&self, who: &PatientContact) -> Result<EnsuredPatient, ExternalError> {
        let Some(dob) = who.date_of_birth else {
            return Err(invalid("the intake has no date of birth"));
        };
        let name = format!("{} {}", who.first_name, who.last_name);
        let found = self
            .client
            .search_patients(&name, dob)
            .await
            .map_err(external)?;
        let candidates: Vec<Candidate> = found
            .into_iter()
            .map(|p| Candidate {
                id: PatientId::new(p.id.as_str()),
                first_name: p.first_name,
                last_name: p.last_name,
                date_of_birth: p.date_of_birth,
                phones: p.mobile_phone.into_iter().collect(),
                email: p.email,
            })
            .collect();
        if let Some(c) = candidates.iter().find(|c| same_patient(who, c)) {
            return Ok(EnsuredPatient::Matched(c.id.clone()));
        }
        let same_name_and_birth = candidates.iter().any(|c| {
            c.first_name.eq_ignore_ascii_case(who.first_name.trim())
                && c.last_name.eq_ignore_ascii_case(who.last_name.trim())
        });
        if same_name_and_birth {
            return Ok(EnsuredPatient::NotSupported {
                reason: "NexHealth has a patient with this name and date of birth but other \
                         contact details; check whether it is the same person"
                    .into(),
            });
        }
        let (Some(email), Some(phone)) = (who.email.clone(), who.mobile_phone.clone()) else {
            return Ok(EnsuredPatient::NotSupported {
                reason: "NexHealth creates a patient only with an email and a phone, and the \
                         intake lacks one"
                    .into(),
            });
        };
        let Some(provider) = self.provider_id.as_deref() else {
            return Ok(EnsuredPatient::NotSupported {
                reason: "NexHealth creates a patient only under a provider, and this practice has \
                         none configured (practices.pms.provider_id)"
                    .into(),
            });
        };
        let new = nexhealth_client::NewPatient {
            first_name: who.first_name.clone(),
            last_name: who.last_name.clone(),
            email,
            date_of_birth: dob,
            phone,
            state: who.state().map(|s| s.code().to_owned()).unwrap_or_default(),
        };
        let created = self
            .client
            .create_patient(&new, Some(provider))
            .await
            .map_err(external)?;
        Ok(EnsuredPatient::Created(PatientId::new(created.id.as_str())))
    }

    /// `POST /payments` (a negative amount: it reduces the patient's balance) with the
    /// transaction id `chairside:{stripe id}`, after `GET /payments?transaction_id=` finds none
    /// (INTEGRATIONS.md, NexHealth "Payment / ledger writes").
    async fn post_payment(
        &self,
        patient: &PatientId,
        stripe_id: &str,
        amount: financing_core::Money,
        note: &str,
    ) -> Result<PaymentPosting, ExternalError> {
        self.ledger_write(
            patient,
            stripe_id,
            amount,
            format!("{note}\n{}", payment_marker(stripe_id)),
            LedgerDirection::Payment,
        )
        .await
    }

    /// A refund: `POST /payments` with a positive amount (NexHealth's sign for a refund; it
    /// turns it into an adjustment where the EHR takes no positive payments), transaction id
    /// `chairside:refund:{key}` (hashed when longer than NexHealth's 50 characters).
    async fn post_refund(
        &self,
        patient: &PatientId,
        refund_key: &str,
        amount: financing_core::Money,
        note: &str,
    ) -> Result<PaymentPosting, ExternalError> {
        self.ledger_write(
            patient,
            &format!("refund:{refund_key}"),
            amount,
            format!("{note}\n{}", refund_marker(refund_key)),
            LedgerDirection::Refund,
        )
        .await
    }
}

impl NexHealthPractice {
    /// One ledger write, looked up by its transaction id first. NexHealth lists a payment only
    /// once it reached the EHR, so a repeat within that lag is not caught by the lookup: a write
    /// whose outcome is unknown (timeout, 5xx) is therefore not retried automatically but becomes
    /// a staff task naming the transaction id. A crash between the 202 and the runner's commit
    /// remains a window the lookup may miss (docs/collection.md).
    async fn ledger_write(
        &self,
        patient: &PatientId,
        key: &str,
        amount: financing_core::Money,
        notes: String,
        direction: LedgerDirection,
    ) -> Result<PaymentPosting, ExternalError> {
        let transaction_id = TransactionId::new(TRANSACTION_PREFIX, key).map_err(external)?;
        let write = NewLedgerPayment {
            patient_id: nexhealth_client::PatientId::new(patient.as_str()),
            amount,
            direction,
            transaction_id: transaction_id.clone(),
            paid_at: None,
            notes: Some(notes),
        };
        match self.client.post_payment_once(&write).await {
            Ok(PaymentWrite::AlreadyInLedger(p)) => Ok(PaymentPosting::AlreadyPosted(
                p.id.unwrap_or_else(|| transaction_id.to_string()),
            )),
            Ok(_) => Ok(PaymentPosting::Posted(transaction_id.to_string())),
            // NexHealth answers 403 until it enables financial endpoints for the key: the
            // ledger gets a note instead, as for a system without payments.
            Err(nexhealth_client::Error::Api { status, .. }) if status.as_u16() == 403 => {
                tracing::warn!(
                    "nexhealth: financial endpoints not enabled for this key (403); writing a note instead of a ledger payment"
                );
                Ok(PaymentPosting::NotSupported)
            }
            // The write may be queued, and NexHealth lists it only once the EHR has it (minutes
            // later): a retry's lookup could miss it and post it twice. A person checks first.
            Err(e) if e.kind() == financing_core::ErrorKind::Indeterminate => {
                Err(invalid(format!(
                    "nexhealth: the ledger write {transaction_id} may have been queued (no answer); NexHealth lists it only once the EHR has it: check the patient's ledger for it before retrying"
                )))
            }
            Err(e) => Err(external(e)),
        }
    }
}

/// The originator prefix of our NexHealth transaction ids.
const TRANSACTION_PREFIX: &str = "chairside";
