//! Treatment plans: change polling by `updated_since` with cursor paging, and one plan with its
//! procedures and fees.
//!
//! NexHealth plans carry fees but **no insurance estimates**: every procedure's
//! `primary_estimate` and `secondary_estimate` are `None`, so a plan priced from NexHealth alone
//! puts the whole fee on the patient until staff add the estimates.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use financing_core::{CdtCode, Money, PlannedProcedure, TreatmentPlan as DomainPlan};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::convert;
use crate::error::{DecodeProblem, Error, Result};
use crate::ids::{AppointmentId, PatientId, ProcedureId, ProviderId, TreatmentPlanId};
use crate::status::PlanStatus;
use crate::wire;

impl PlanStatus {
    /// True for [`PlanStatus::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted)
    }

    /// Reads a status as NexHealth sends it.
    pub fn from_raw(raw: &str) -> Self {
        wire::parse_plan_status(raw)
    }

    /// The status as NexHealth spells it; unknown values as received.
    pub fn as_str(&self) -> &str {
        wire::plan_status_value(self)
    }
}

impl fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One procedure of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanProcedure {
    /// Procedure id.
    pub id: ProcedureId,
    /// CDT code.
    pub code: CdtCode,
    /// The fee.
    pub fee: Money,
    /// `planned | scheduled | completed | inactive | referred`, raw.
    pub status: Option<String>,
    /// The provider.
    pub provider_id: Option<ProviderId>,
    /// The appointment it is booked in.
    pub appointment_id: Option<AppointmentId>,
    /// Its start date (the appointment's day when booked).
    pub start_date: Option<NaiveDate>,
}

impl PlanProcedure {
    /// False for `inactive` procedures, which are left out of the plan's price.
    pub fn is_active(&self) -> bool {
        self.status.as_deref() != Some(wire::PROCEDURE_STATUS_INACTIVE)
    }
}

/// A treatment plan with its procedures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreatmentPlan {
    /// Plan id.
    pub id: TreatmentPlanId,
    /// The patient. NexHealth allows null; such a plan cannot start a workflow.
    pub patient_id: Option<PatientId>,
    /// Status.
    pub status: PlanStatus,
    /// Name.
    pub name: Option<String>,
    /// Last change; also the plan's revision.
    pub updated_at: DateTime<Utc>,
    /// Procedures, as listed.
    pub procedures: Vec<PlanProcedure>,
}

impl TreatmentPlan {
    /// The earliest start date among procedures booked in an appointment.
    pub fn treatment_date(&self) -> Option<NaiveDate> {
        self.procedures
            .iter()
            .filter(|p| p.is_active() && p.appointment_id.is_some())
            .filter_map(|p| p.start_date)
            .min()
    }

    /// The appointments the plan's procedures are booked in.
    pub fn appointment_ids(&self) -> Vec<AppointmentId> {
        self.procedures
            .iter()
            .filter_map(|p| p.appointment_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The plan as the domain's [`TreatmentPlan`](financing_core::TreatmentPlan), or `None` when
    /// it has no patient. `inactive` procedures are left out; estimates are `None` (NexHealth has
    /// none). `accepted_at` is when Chairside saw the plan accepted.
    pub fn to_treatment_plan(&self, accepted_at: DateTime<Utc>) -> Option<DomainPlan> {
        Some(DomainPlan {
            id: self.id.clone().into(),
            revision: self.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            patient_id: self.patient_id.clone()?.into(),
            accepted_at,
            treatment_date: self.treatment_date(),
            procedures: self
                .procedures
                .iter()
                .filter(|p| p.is_active())
                .map(|p| PlannedProcedure {
                    code: p.code.clone(),
                    fee: p.fee,
                    primary_estimate: None,
                    secondary_estimate: None,
                })
                .collect(),
        })
    }
}

/// Where change polling resumes: the `updated_at` high-water mark. Opaque to callers, stored as a
/// string (`Display` / `FromStr`, and serde as that string).
///
/// `updated_since` is inclusive, so plans updated exactly at the mark are seen again on the next
/// poll; starting a workflow is idempotent on (plan, revision), so that is safe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncCursor {
    since: Option<DateTime<Utc>>,
}

const CURSOR_PREFIX: &str = "nexhealth:v1:";

impl SyncCursor {
    /// Every plan, from the beginning.
    pub fn beginning() -> Self {
        Self { since: None }
    }

    /// Plans updated at or after `since`.
    pub fn since(since: DateTime<Utc>) -> Self {
        Self { since: Some(since) }
    }

    /// The high-water mark, if any.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.since
    }
}

impl fmt::Display for SyncCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CURSOR_PREFIX)?;
        if let Some(t) = self.since {
            f.write_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))?;
        }
        Ok(())
    }
}

/// A string that is not a cursor this crate wrote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a NexHealth sync cursor")]
pub struct InvalidCursor;

impl FromStr for SyncCursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix(CURSOR_PREFIX).ok_or(InvalidCursor)?;
        if rest.is_empty() {
            return Ok(Self::beginning());
        }
        DateTime::parse_from_rfc3339(rest)
            .map(|t| Self::since(t.with_timezone(&Utc)))
            .map_err(|_| InvalidCursor)
    }
}

impl Serialize for SyncCursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SyncCursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The result of one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedPlans {
    /// The changed plans, in NexHealth's order (by id, not by update time).
    pub plans: Vec<TreatmentPlan>,
    /// Plans of the listing that could not be read (a `null`, a malformed field, a procedure
    /// with a bad amount): set apart so the others are still used; the caller reports each.
    pub unreadable: Vec<UnreadablePlan>,
    /// Store this and pass it to the next poll. Unchanged when nothing changed.
    pub next_cursor: SyncCursor,
}

/// A plan of the change listing that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadablePlan {
    /// The plan's position in the listing (across pages).
    pub position: usize,
    /// The plan's id, when that field could be read.
    pub id: Option<TreatmentPlanId>,
    /// Its `updated_at` as NexHealth wrote it, when that field could be read (the record's
    /// version: a later edit is reported again).
    pub updated_at: Option<String>,
    /// What was wrong: the resource, the field path and the kind of failure, never the value.
    pub error: String,
}

const PLANS: &str = "treatment_plans";

impl Client {
    /// Every plan updated since `cursor` (optionally only those in `status`), following
    /// `page_info.end_cursor` to the end.
    ///
    /// Paging stops when `has_next_page` is false, at an empty page (even one that offers a next
    /// cursor), and with an error when the next cursor does not advance.
    ///
    /// # Errors
    /// Transient: timeouts, connect errors, 429 (after the client's own bounded retries), 5xx.
    /// Permanent: [`Error::Auth`], other 4xx, and [`Error::Decode`] for a plan with a missing or
    /// malformed field (the error names the field, never its value).
    pub async fn list_changed_treatment_plans(
        &self,
        cursor: &SyncCursor,
        status: Option<&PlanStatus>,
    ) -> Result<ChangedPlans> {
        let mut query = vec![];
        if let Some(since) = cursor.since {
            query.push((
                wire::QUERY_UPDATED_SINCE,
                since.to_rfc3339_opts(SecondsFormat::Millis, true),
            ));
        }
        if let Some(s) = status {
            query.push((wire::QUERY_STATUS, wire::plan_status_value(s).to_owned()));
        }
        // Plan by plan: one that cannot be read is set apart, never the whole listing.
        let list = self
            .get_pages_tolerant(
                "list treatment plans",
                PLANS,
                &[wire::TREATMENT_PLANS],
                query,
                Some("updated_at"),
                plan_from_wire,
            )
            .await?;
        let plans = list.items;
        let unreadable: Vec<UnreadablePlan> = list
            .unreadable
            .into_iter()
            .map(|u| UnreadablePlan {
                position: u.index,
                id: u.id.map(TreatmentPlanId::new),
                updated_at: u.changed,
                error: u.error.to_string(),
            })
            .collect();
        // The cursor moves past unreadable plans too (when their time reads), or they would be
        // listed again on every poll; the engine never lets it pass now.
        let high = plans
            .iter()
            .map(|p| p.updated_at)
            .chain(
                unreadable
                    .iter()
                    .filter_map(|u| u.updated_at.as_deref())
                    .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
            )
            .max();
        let since = match (cursor.since, high) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(ChangedPlans {
            plans,
            unreadable,
            next_cursor: SyncCursor { since },
        })
    }

    /// One plan with its procedures.
    ///
    /// # Errors
    /// As [`Client::list_changed_treatment_plans`]; 404 (unknown or deleted plan) is Permanent.
    pub async fn get_treatment_plan(&self, id: &TreatmentPlanId) -> Result<TreatmentPlan> {
        let envelope: wire::Envelope<wire::TreatmentPlan> = self
            .get(
                "get treatment plan",
                PLANS,
                &[wire::TREATMENT_PLANS, id.as_str()],
                vec![],
            )
            .await?;
        let raw = envelope
            .data
            .ok_or_else(|| Error::decode(PLANS, "data", DecodeProblem::Missing))?;
        plan_from_wire(raw, "data")
    }
}

fn plan_from_wire(p: wire::TreatmentPlan, at: &str) -> Result<TreatmentPlan> {
    let procedures = p
        .procedures
        .into_iter()
        .enumerate()
        .map(|(i, proc)| procedure_from_wire(proc, &format!("{at}.procedures[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    Ok(TreatmentPlan {
        id: TreatmentPlanId::new(p.id.into_string()),
        patient_id: p.patient_id.map(|id| PatientId::new(id.into_string())),
        status: p
            .status
            .as_deref()
            .map_or_else(|| PlanStatus::Unknown(String::new()), PlanStatus::from_raw),
        name: convert::non_blank(p.name.as_deref()),
        updated_at: convert::timestamp(&p.updated_at, PLANS, &format!("{at}.updated_at"))?,
        procedures,
    })
}

fn procedure_from_wire(p: wire::Procedure, at: &str) -> Result<PlanProcedure> {
    let field = |name: &str| format!("{at}.{name}");
    let fee = p
        .fee
        .as_ref()
        .ok_or_else(|| Error::decode(PLANS, field("fee"), DecodeProblem::Missing))
        .and_then(|f| {
            convert::money(
                &f.amount,
                f.currency.as_deref(),
                PLANS,
                &field("fee.amount"),
            )
        })?;
    let code = convert::non_blank(p.code.as_deref())
        .ok_or_else(|| Error::decode(PLANS, field("code"), DecodeProblem::Missing))?;
    Ok(PlanProcedure {
        id: ProcedureId::new(p.id.into_string()),
        code: CdtCode::new(code),
        fee,
        status: convert::non_blank(p.status.as_deref()),
        provider_id: p.provider_id.map(|id| ProviderId::new(id.into_string())),
        appointment_id: p
            .appointment_id
            .map(|id| AppointmentId::new(id.into_string())),
        start_date: convert::opt_date(p.start_date.as_deref(), PLANS, &field("start_date"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decode_and_keep_unknown_values_raw() {
        assert!(PlanStatus::from_raw("accepted").is_accepted());
        assert_eq!(PlanStatus::from_raw("ACCEPTED"), PlanStatus::Accepted);
        assert_eq!(
            PlanStatus::from_raw("not_applicable"),
            PlanStatus::NotApplicable
        );
        assert_eq!(
            PlanStatus::from_raw("on_hold"),
            PlanStatus::Unknown("on_hold".into())
        );
        assert_eq!(PlanStatus::Accepted.to_string(), "accepted");
        assert_eq!(PlanStatus::from_raw("on_hold").as_str(), "on_hold");
    }

    #[test]
    fn cursors_round_trip_through_their_string_form() {
        let at = DateTime::parse_from_rfc3339("2030-05-01T12:00:00.250Z")
            .unwrap()
            .to_utc();
        let c = SyncCursor::since(at);
        assert_eq!(c.to_string(), "nexhealth:v1:2030-05-01T12:00:00.250Z");
        assert_eq!(c.to_string().parse::<SyncCursor>(), Ok(c.clone()));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SyncCursor>(&json).unwrap(), c);
        assert_eq!(
            SyncCursor::beginning().to_string().parse(),
            Ok(SyncCursor::beginning())
        );
        assert_eq!(
            "dentrix-ascend:v1:".parse::<SyncCursor>(),
            Err(InvalidCursor)
        );
    }
}
