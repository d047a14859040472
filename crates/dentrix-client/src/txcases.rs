//! Treatment-plan cases (`txcases`): change polling with a cursor, and a case's detail with its
//! procedures, fees and insurance estimates.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use financing_core::{CdtCode, Money, PlannedProcedure, TreatmentPlan};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::convert;
use crate::error::{DecodeProblem, Error, Result};
use crate::ids::{AppointmentId, PatientId, ProcedureId, TxCaseId};
use crate::status::CaseStatus;
use crate::wire;

impl CaseStatus {
    /// True for [`CaseStatus::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted)
    }

    /// Reads a status as Ascend sends it (`NEW`, `ACCEPTED`, `Accepted`, ...).
    pub fn from_raw(raw: &str) -> Self {
        wire::parse_case_status(raw)
    }

    /// The status as a string: the vendor's value for known statuses, the raw value otherwise.
    pub fn as_str(&self) -> &str {
        wire::case_status_value(self)
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A treatment-plan case as listed: the case itself, without its procedures' amounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxCase {
    /// Case id.
    pub id: TxCaseId,
    /// The patient.
    pub patient_id: PatientId,
    /// Status.
    pub status: CaseStatus,
    /// The case's name, as staff typed it.
    pub name: Option<String>,
    /// The case's procedures.
    pub procedure_ids: Vec<ProcedureId>,
    /// When the case expires, if set.
    pub expiration_date: Option<NaiveDate>,
    /// When the case last changed. Also its revision: a change after acceptance is a new revision.
    pub last_modified: DateTime<Utc>,
}

/// One procedure of a case, with its money.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Procedure {
    /// Procedure id.
    pub id: ProcedureId,
    /// CDT code, from `practiceProcedure`.
    pub code: CdtCode,
    /// The fee (`amount`).
    pub fee: Money,
    /// Primary insurance estimate: the staff override when set, else the computed estimate.
    pub primary_estimate: Option<Money>,
    /// Secondary insurance estimate: the staff override when set, else the computed estimate.
    pub secondary_estimate: Option<Money>,
    /// What Ascend computed the guarantor pays.
    pub guarantor_portion: Option<Money>,
    /// The procedure's status, raw.
    pub status: Option<String>,
    /// When it was planned.
    pub treatment_planned_date: Option<NaiveDate>,
    /// When it was performed, if it was.
    pub service_date: Option<NaiveDate>,
}

/// A case with its procedures and its first appointment date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxCaseDetail {
    /// The case.
    pub case: TxCase,
    /// Its procedures, in the case's order.
    pub procedures: Vec<Procedure>,
    /// The appointments booked for the case's visits.
    pub appointment_ids: Vec<AppointmentId>,
    /// The earliest appointment date among the case's visits, when any is booked.
    pub treatment_date: Option<NaiveDate>,
}

impl TxCaseDetail {
    /// The case as the domain's [`TreatmentPlan`]. `accepted_at` is when Chairside saw the case
    /// accepted (Ascend records no acceptance time); the revision is `lastModified`.
    pub fn to_treatment_plan(&self, accepted_at: DateTime<Utc>) -> TreatmentPlan {
        TreatmentPlan {
            id: self.case.id.clone().into(),
            revision: self
                .case
                .last_modified
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            patient_id: self.case.patient_id.clone().into(),
            accepted_at,
            treatment_date: self.treatment_date,
            procedures: self
                .procedures
                .iter()
                .map(|p| PlannedProcedure {
                    code: p.code.clone(),
                    fee: p.fee,
                    primary_estimate: p.primary_estimate,
                    secondary_estimate: p.secondary_estimate,
                })
                .collect(),
        }
    }
}

/// Where change polling resumes: the `lastModified` high-water mark. Opaque to callers, stored as
/// a string (`Display` / `FromStr`, and serde as that string).
///
/// The filter is inclusive (`lastModified>=`), so the cases changed exactly at the mark are seen
/// again on the next poll; starting a workflow is idempotent on (case, revision), so that is safe,
/// and it means a case written in the same millisecond as the mark is never skipped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncCursor {
    since: Option<DateTime<Utc>>,
}

const CURSOR_PREFIX: &str = "dentrix-ascend:v1:";

impl SyncCursor {
    /// Every case, from the beginning.
    pub fn beginning() -> Self {
        Self { since: None }
    }

    /// Cases changed at or after `since`.
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
#[error("not a Dentrix Ascend sync cursor")]
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

/// The result of one poll: every case changed since the cursor, and where to resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedCases {
    /// The changed cases, in the order Ascend listed them.
    pub cases: Vec<TxCase>,
    /// Cases of the listing that could not be read (a `null`, a malformed field): set apart so
    /// the others are still used; the caller reports each (a staff task naming it).
    pub unreadable: Vec<UnreadableCase>,
    /// Store this and pass it to the next poll. Unchanged when nothing changed.
    pub next_cursor: SyncCursor,
}

/// A case of the change listing that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableCase {
    /// The case's position in the listing (across pages).
    pub position: usize,
    /// The case's id, when that field could be read.
    pub id: Option<TxCaseId>,
    /// Its `lastModified` as Ascend wrote it, when that field could be read (the record's
    /// version: a later edit is reported again).
    pub last_modified: Option<String>,
    /// What was wrong: the resource, the field path and the kind of failure
    /// (for example the path `data[2].lastModified`), never the value.
    pub error: String,
}

const TXCASES: &str = "txcases";
const PROCEDURES: &str = "patientprocedures";
const VISITS: &str = "visits";
const APPOINTMENTS: &str = "appointments";

impl Client {
    /// Every case changed since `cursor`, following pages (`pageSize` + `lastId`) to the end.
    ///
    /// Paging stops at a short or empty page (an empty page ends the listing even if the server
    /// offers a next cursor), and a next cursor that does not advance is an error rather than a
    /// loop.
    ///
    /// # Errors
    /// Transient: timeouts, connect errors, 429 (after the client's own bounded retries), 5xx.
    /// Permanent: [`Error::Auth`], [`Error::OrganizationNotEnabled`], other 4xx, and
    /// [`Error::Decode`] for a case with a missing or malformed field.
    pub async fn list_changed_txcases(&self, cursor: &SyncCursor) -> Result<ChangedCases> {
        let mut query = vec![];
        if let Some(since) = cursor.since {
            query.push((wire::QUERY_FILTER, wire::filter_modified_since(since)));
        }
        // Case by case: one that cannot be read is set apart, never the whole listing.
        let list = self
            .get_all_tolerant(
                "list txcases",
                TXCASES,
                wire::TXCASES,
                query,
                Some("lastModified"),
                txcase_from_wire,
            )
            .await?;
        let cases = list.items;
        let unreadable: Vec<UnreadableCase> = list
            .unreadable
            .into_iter()
            .map(|u| UnreadableCase {
                position: u.index,
                id: u.id.map(TxCaseId::new),
                last_modified: u.changed,
                error: u.error.to_string(),
            })
            .collect();
        // The cursor moves past unreadable cases too (when their time reads), or they would be
        // listed again on every poll; the engine never lets it pass now.
        let high = cases
            .iter()
            .map(|c| c.last_modified)
            .chain(
                unreadable
                    .iter()
                    .filter_map(|u| u.last_modified.as_deref())
                    .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
            )
            .max();
        let since = match (cursor.since, high) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(ChangedCases {
            cases,
            unreadable,
            next_cursor: SyncCursor { since },
        })
    }

    /// One case with its procedures (fees, insurance estimates, guarantor portion, CDT codes) and
    /// the earliest appointment booked for its visits.
    ///
    /// Makes up to four requests: the case, its procedures, its visits, and their appointments.
    ///
    /// # Errors
    /// As [`Client::list_changed_txcases`]; a 404 for an unknown case is Permanent. A procedure
    /// without a fee or CDT code, or with malformed money, is [`Error::Decode`] naming the field.
    pub async fn get_txcase(&self, id: &TxCaseId) -> Result<TxCaseDetail> {
        let envelope: wire::Envelope<wire::TxCase> = self
            .get("get txcase", TXCASES, &[wire::TXCASES, id.as_str()], vec![])
            .await?;
        let raw = envelope
            .data
            .ok_or_else(|| Error::decode(TXCASES, "data", DecodeProblem::Missing))?;
        let case = txcase_from_wire(raw, "data")?;

        let procedures = if case.procedure_ids.is_empty() {
            vec![]
        } else {
            let filter = wire::filter_ids(case.procedure_ids.iter().map(ProcedureId::as_str));
            let raw: Vec<wire::PatientProcedure> = self
                .get_all(
                    "list patient procedures",
                    PROCEDURES,
                    wire::PATIENT_PROCEDURES,
                    vec![(wire::QUERY_FILTER, filter)],
                )
                .await?;
            let mut procedures = raw
                .into_iter()
                .enumerate()
                .map(|(i, p)| procedure_from_wire(p, &format!("data[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            // Keep the case's order, whatever order the query returned.
            let position = |id: &ProcedureId| {
                case.procedure_ids
                    .iter()
                    .position(|p| p == id)
                    .unwrap_or(usize::MAX)
            };
            procedures.sort_by_key(|p| position(&p.id));
            procedures
        };

        let visits: Vec<wire::Visit> = self
            .get_all(
                "list visits",
                VISITS,
                wire::VISITS,
                vec![(wire::QUERY_FILTER, wire::filter_tx_case(case.id.as_str()))],
            )
            .await?;
        let appointment_ids: Vec<AppointmentId> = visits
            .into_iter()
            .filter_map(|v| {
                v.appointment
                    .map(|a| AppointmentId::new(a.id.into_string()))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let treatment_date = if appointment_ids.is_empty() {
            None
        } else {
            let filter = wire::filter_ids(appointment_ids.iter().map(AppointmentId::as_str));
            let appointments: Vec<wire::Appointment> = self
                .get_all(
                    "list appointments",
                    APPOINTMENTS,
                    wire::APPOINTMENTS,
                    vec![(wire::QUERY_FILTER, filter)],
                )
                .await?;
            let mut dates = vec![];
            for (i, a) in appointments.iter().enumerate() {
                if let Some(d) = convert::opt_date(
                    a.start.as_deref(),
                    APPOINTMENTS,
                    &format!("data[{i}].start"),
                )? {
                    dates.push(d);
                }
            }
            dates.into_iter().min()
        };

        Ok(TxCaseDetail {
            case,
            procedures,
            appointment_ids,
            treatment_date,
        })
    }

    /// Lists every record of a resource matching `query`, page after page; the first record that
    /// cannot be read fails the listing (see [`Client::get_all_tolerant`] for one that sets it
    /// apart).
    pub(crate) async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        resource: &'static str,
        path: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<Vec<T>> {
        let list = self
            .get_all_tolerant(operation, resource, path, query, None, |t: T, _| Ok(t))
            .await?;
        match list.unreadable.into_iter().next() {
            Some(bad) => Err(bad.error),
            None => Ok(list.items),
        }
    }
}

impl Client {
    /// Every page of a listing like [`Client::get_all`], each record decoded on its own
    /// ([`connector_transport::decode_each`]): a record that cannot be read (a `null`, a field of
    /// the wrong type, a malformed date) is set apart with its id and `changed_field` when those
    /// read, and the others are kept. A body that is not an envelope with a list still fails.
    pub(crate) async fn get_all_tolerant<T: serde::de::DeserializeOwned, U>(
        &self,
        operation: &'static str,
        resource: &'static str,
        path: &str,
        query: Vec<(&'static str, String)>,
        changed_field: Option<&str>,
        map: fn(T, &str) -> Result<U>,
    ) -> Result<connector_transport::TolerantList<U, Error>> {
        let page_size = self.inner.page_size;
        let mut out = connector_transport::TolerantList::default();
        let mut last_id: Option<String> = None;
        let mut offset = 0usize;
        loop {
            let mut q = query.clone();
            q.push((wire::QUERY_PAGE_SIZE, page_size.to_string()));
            if let Some(id) = &last_id {
                q.push((wire::QUERY_LAST_ID, id.clone()));
            }
            let page: wire::Envelope<Vec<serde_json::Value>> =
                self.get(operation, resource, &[path], q).await?;
            if !page.warnings.is_empty() || !page.errors.is_empty() {
                tracing::warn!(
                    operation,
                    warnings = page.warnings.len(),
                    errors = page.errors.len(),
                    "Ascend returned warnings or errors with a 2xx"
                );
            }
            let items = page.data.unwrap_or_default();
            let pagination = page.meta.and_then(|m| m.pagination).unwrap_or_default();
            // An empty page ends the listing even when a next cursor is offered.
            let Some(last) = items.last() else { break };
            let next = pagination
                .last_id
                .map(wire::RawId::into_string)
                .or_else(|| connector_transport::field_text(last, "id"));
            let count = items.len();
            let full = count >= usize::try_from(page_size).unwrap_or(usize::MAX);
            out.extend(connector_transport::decode_each(
                items,
                offset,
                "id",
                changed_field,
                |index, value| {
                    let at = format!("data[{index}]");
                    let raw: T = connector_transport::decode_value(value).map_err(|e| {
                        let e = e.nested_in(&at);
                        Error::decode(resource, e.path, crate::error::decode_problem(e.problem))
                    })?;
                    map(raw, &at)
                },
            ));
            offset += count;
            if !full {
                break;
            }
            // A full page whose last record has no readable id cannot be followed.
            let Some(next) = next else {
                return Err(Error::decode(
                    resource,
                    "meta.pagination.lastId",
                    DecodeProblem::Missing,
                ));
            };
            if last_id.as_deref() == Some(next.as_str()) {
                return Err(Error::decode(
                    resource,
                    "meta.pagination.lastId",
                    DecodeProblem::PaginationStalled,
                ));
            }
            last_id = Some(next);
        }
        Ok(out)
    }
}

fn txcase_from_wire(c: wire::TxCase, at: &str) -> Result<TxCase> {
    Ok(TxCase {
        id: TxCaseId::new(c.id.into_string()),
        patient_id: PatientId::new(c.patient.id.into_string()),
        status: CaseStatus::from_raw(&c.status),
        name: convert::non_blank(c.name.as_deref()),
        procedure_ids: c
            .procedures
            .into_iter()
            .map(|r| ProcedureId::new(r.id.into_string()))
            .collect(),
        expiration_date: convert::opt_date(
            c.expiration_date.as_deref(),
            TXCASES,
            &format!("{at}.expirationDate"),
        )?,
        last_modified: convert::timestamp(
            &c.last_modified,
            TXCASES,
            &format!("{at}.lastModified"),
        )?,
    })
}

fn procedure_from_wire(p: wire::PatientProcedure, at: &str) -> Result<Procedure> {
    let field = |name: &str| format!("{at}.{name}");
    let fee = p
        .amount
        .as_ref()
        .ok_or_else(|| Error::decode(PROCEDURES, field("amount"), DecodeProblem::Missing))
        .and_then(|a| convert::money(a, PROCEDURES, &field("amount")))?;
    let code = p
        .practice_procedure
        .as_ref()
        .and_then(|pp| convert::non_blank(pp.ada_code.as_deref()))
        .ok_or_else(|| {
            Error::decode(
                PROCEDURES,
                field("practiceProcedure.adaCode"),
                DecodeProblem::Missing,
            )
        })?;
    // A staff override wins over the computed estimate: it is what the practice told the patient.
    let primary = match &p.primary_insurance_estimate_override {
        Some(o) => Some(convert::money(
            o,
            PROCEDURES,
            &field("primaryInsuranceEstimateOverride"),
        )?),
        None => convert::opt_money(
            p.primary_insurance
                .as_ref()
                .and_then(wire::InsuranceEstimate::amount),
            PROCEDURES,
            &field("primaryInsurance"),
        )?,
    };
    let secondary = match &p.secondary_insurance_estimate_override {
        Some(o) => Some(convert::money(
            o,
            PROCEDURES,
            &field("secondaryInsuranceEstimateOverride"),
        )?),
        None => convert::opt_money(
            p.secondary_insurance
                .as_ref()
                .and_then(wire::InsuranceEstimate::amount),
            PROCEDURES,
            &field("secondaryInsurance"),
        )?,
    };
    Ok(Procedure {
        id: ProcedureId::new(p.id.into_string()),
        code: CdtCode::new(code),
        fee,
        primary_estimate: primary,
        secondary_estimate: secondary,
        guarantor_portion: convert::opt_money(
            p.guarantor_portion.as_ref(),
            PROCEDURES,
            &field("guarantorPortion"),
        )?,
        status: convert::non_blank(p.status.as_deref()),
        treatment_planned_date: convert::opt_date(
            p.treatment_planned_date.as_deref(),
            PROCEDURES,
            &field("treatmentPlannedDate"),
        )?,
        service_date: convert::opt_date(
            p.service_date.as_deref(),
            PROCEDURES,
            &field("serviceDate"),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decode_case_insensitively_and_keep_unknown_values_raw() {
        assert_eq!(CaseStatus::from_raw("NEW"), CaseStatus::New);
        assert_eq!(CaseStatus::from_raw("ACCEPTED"), CaseStatus::Accepted);
        assert_eq!(CaseStatus::from_raw("Accepted"), CaseStatus::Accepted);
        assert!(CaseStatus::from_raw("accepted").is_accepted());
        assert_eq!(
            CaseStatus::from_raw("PreAuth (Pri)"),
            CaseStatus::Unknown("PreAuth (Pri)".into())
        );
        assert_eq!(CaseStatus::from_raw("Accepted").to_string(), "ACCEPTED");
        assert_eq!(
            CaseStatus::from_raw("PreAuth (Pri)").as_str(),
            "PreAuth (Pri)"
        );
    }

    #[test]
    fn cursors_round_trip_through_their_string_form() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.250Z")
            .unwrap()
            .to_utc();
        let c = SyncCursor::since(at);
        let s = c.to_string();
        assert_eq!(s, "dentrix-ascend:v1:2024-05-01T12:00:00.250Z");
        assert_eq!(s.parse::<SyncCursor>(), Ok(c.clone()));
        assert_eq!(
            SyncCursor::beginning().to_string().parse::<SyncCursor>(),
            Ok(SyncCursor::beginning())
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SyncCursor>(&json).unwrap(), c);
        assert_eq!("nexhealth:v1:abc".parse::<SyncCursor>(), Err(InvalidCursor));
        assert_eq!(
            "dentrix-ascend:v1:soon".parse::<SyncCursor>(),
            Err(InvalidCursor)
        );
    }
}
