//! Treatment plans: listing, procedures, change detection, acceptance and pricing.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use financing_core::{Classify, ErrorKind, Money, MoneyError, PlannedProcedure, TreatmentPlan};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::cursor::PlanCursor;
use crate::error::{Error, Operation, Result};
use crate::ids::{PatNum, TreatPlanNum};
use crate::types::{NewTreatPlan, ProcTp, TpStatus, TreatPlan, TreatPlanAttach, WriteOutcome};
use crate::wire::{self, param, path, resource};

/// Filters for [`Client::list_treat_plans`]. All optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreatPlanQuery {
    /// One patient's plans.
    pub pat_num: Option<PatNum>,
    /// One status.
    pub status: Option<TpStatus>,
    /// Plans edited after this server time.
    pub edited_after: Option<NaiveDateTime>,
}

impl TreatPlanQuery {
    /// No filter: every plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this patient's plans.
    pub fn pat_num(mut self, pat_num: PatNum) -> Self {
        self.pat_num = Some(pat_num);
        self
    }

    /// Only plans with this status.
    pub fn status(mut self, status: TpStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only plans edited after this server time (office-local).
    pub fn edited_after(mut self, server_time: NaiveDateTime) -> Self {
        self.edited_after = Some(server_time);
        self
    }

    fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(p) = self.pat_num {
            q.push((param::PAT_NUM, p.to_string()));
        }
        if let Some(s) = &self.status {
            q.push((param::TP_STATUS, s.as_str().to_owned()));
        }
        if let Some(t) = self.edited_after {
            q.push((param::SEC_DATE_T_EDIT, wire::format_date_time(t)));
        }
        q
    }
}

/// When a plan counts as accepted. Open Dental has no accepted status; the practice chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AcceptanceRule {
    /// A Saved plan the patient signed (`DateTSigned` set). The default.
    #[default]
    SignedSaved,
    /// Any Saved plan, signed or not (offices that save a plan only once the patient agrees).
    AnySaved,
    /// Any plan the patient signed, whatever its status.
    SignedAny,
}

impl AcceptanceRule {
    /// True when `plan` counts as accepted under this rule.
    pub fn accepts(self, plan: &TreatPlan) -> bool {
        let saved = plan.status == TpStatus::Saved;
        match self {
            Self::SignedSaved => saved && plan.is_patient_signed(),
            Self::AnySaved => saved,
            Self::SignedAny => plan.is_patient_signed(),
        }
    }

    /// When the plan was accepted under this rule: the signature time, else (for an unsigned
    /// plan accepted by [`AcceptanceRule::AnySaved`], or a signature without a time) the last
    /// edit. `None` when the rule does not accept the plan or no time is known.
    pub fn accepted_at(self, plan: &TreatPlan) -> Option<NaiveDateTime> {
        if !self.accepts(plan) {
            return None;
        }
        plan.date_t_signed.or(plan.sec_date_t_edit)
    }
}

/// True when `plan` counts as accepted under `rule`. Same as [`TreatPlan::is_accepted`].
pub fn is_accepted(plan: &TreatPlan, rule: AcceptanceRule) -> bool {
    rule.accepts(plan)
}

impl TreatPlan {
    /// True when this plan counts as accepted under `rule`.
    pub fn is_accepted(&self, rule: AcceptanceRule) -> bool {
        rule.accepts(self)
    }
}

/// The plans that changed since a cursor, and the cursor to store once they are recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanChanges {
    /// Plans edited since the cursor, each at most once per edit, oldest first.
    pub plans: Vec<TreatPlan>,
    /// Rows of the listing that could not be read (the others are in `plans`). Each names its
    /// plan when that field could be read, and the field at fault; never a value.
    pub unreadable: Vec<UnreadablePlan>,
    /// The cursor for the next poll. Store it in the same transaction that records the plans.
    pub next: PlanCursor,
}

impl From<wire::BadRow> for UnreadablePlan {
    fn from(b: wire::BadRow) -> Self {
        Self {
            treat_plan_num: b.id.map(TreatPlanNum::new),
            sec_date_t_edit: b.edited,
            error: b.error,
        }
    }
}

/// A `treatplans` row that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnreadablePlan {
    /// The plan, when `TreatPlanNum` itself could be read.
    pub treat_plan_num: Option<TreatPlanNum>,
    /// Its `SecDateTEdit`, when readable (the version a task names).
    pub sec_date_t_edit: Option<NaiveDateTime>,
    /// What was wrong: resource, row and field; never the value.
    pub error: crate::error::DecodeError,
}

impl PlanChanges {
    /// The changed plans that count as accepted under `rule`.
    pub fn accepted(&self, rule: AcceptanceRule) -> impl Iterator<Item = &TreatPlan> {
        self.plans.iter().filter(move |p| rule.accepts(p))
    }
}

/// A plan with its procedures and their estimates.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanDetail {
    /// The plan.
    pub plan: TreatPlan,
    /// Its procedures (`proctps`), in plan order. Empty for Active and Inactive plans, whose
    /// procedures are [`TreatPlanAttach`] rows instead.
    pub procedures: Vec<ProcTp>,
}

/// A plan that cannot be turned into the shared [`TreatmentPlan`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanMappingError {
    /// The plan is not accepted under the rule given, or has no time to say when.
    #[error("the treatment plan is not accepted under the practice's acceptance rule")]
    NotAccepted,
    /// A discount or amount could not be applied.
    #[error("the plan's amounts cannot be combined: {0}")]
    Money(#[from] MoneyError),
    /// A procedure row belongs to another plan or patient than the plan it was listed for.
    #[error(
        "proctp row {row}, field {field}: the procedure belongs to another {what} than the plan asked for"
    )]
    ForeignRow {
        /// The row's position.
        row: usize,
        /// `TreatPlanNum` or `PatNum`.
        field: &'static str,
        /// `plan` or `patient`.
        what: &'static str,
    },
}

impl Classify for PlanMappingError {
    /// Always [`ErrorKind::Permanent`]: the plan's data must change first.
    fn kind(&self) -> ErrorKind {
        ErrorKind::Permanent
    }
}

impl PlanDetail {
    /// The shared domain's plan, for pricing with
    /// [`CoverageSplit`](financing_core::CoverageSplit).
    ///
    /// - `accepted_at` is [`AcceptanceRule::accepted_at`], read in the office's time zone.
    /// - Each procedure's fee is `FeeAmt - Discount`, the amount actually charged, so that fee
    ///   minus the two estimates equals Open Dental's `PatAmt`. Estimates are `PriInsAmt` and
    ///   `SecInsAmt`. `TaxAmt` is not included.
    /// - `revision` is a fingerprint of the procedures, their amounts and the signature time: it
    ///   changes when what the patient agreed to changes, not when a heading or note is edited.
    /// - `treatment_date` is `None`: plans carry no appointment.
    ///
    /// # Errors
    /// [`PlanMappingError::NotAccepted`] when `rule` does not accept the plan;
    /// [`PlanMappingError::Money`] when an amount is in another currency or overflows. Both are
    /// [`ErrorKind::Permanent`].
    pub fn to_treatment_plan(
        &self,
        rule: AcceptanceRule,
        office_tz: Tz,
    ) -> std::result::Result<TreatmentPlan, PlanMappingError> {
        let accepted = rule
            .accepted_at(&self.plan)
            .ok_or(PlanMappingError::NotAccepted)?;
        let mut procedures = Vec::with_capacity(self.procedures.len());
        for (row, p) in self.procedures.iter().enumerate() {
            // Checked against what was asked: a duplicate plan number must not price another
            // patient's procedures.
            if p.treat_plan_num != self.plan.treat_plan_num {
                return Err(PlanMappingError::ForeignRow {
                    row,
                    field: "TreatPlanNum",
                    what: "plan",
                });
            }
            if p.pat_num != self.plan.pat_num {
                return Err(PlanMappingError::ForeignRow {
                    row,
                    field: "PatNum",
                    what: "patient",
                });
            }
            let discount = p.discount.unwrap_or(Money::zero(p.fee_amt.currency()));
            procedures.push(PlannedProcedure {
                code: p.proc_code.clone(),
                fee: p.fee_amt.checked_sub(discount)?,
                primary_estimate: p.pri_ins_amt,
                secondary_estimate: p.sec_ins_amt,
            });
        }
        Ok(TreatmentPlan {
            id: self.plan.treat_plan_num.to_plan_id(),
            revision: self.revision(),
            patient_id: self.plan.pat_num.to_patient_id(),
            accepted_at: office_to_utc(accepted, office_tz),
            treatment_date: None,
            procedures,
        })
    }

    fn revision(&self) -> String {
        let mut canonical = String::new();
        if let Some(t) = self.plan.date_t_signed {
            canonical.push_str(&wire::format_date_time(t));
        }
        for p in &self.procedures {
            let amount = |m: Option<Money>| m.map(|m| m.minor().to_string()).unwrap_or_default();
            canonical.push_str(&format!(
                "|{}:{}:{}:{}:{}:{}",
                p.proc_tp_num,
                p.proc_code.as_str(),
                p.fee_amt.minor(),
                amount(p.discount),
                amount(p.pri_ins_amt),
                amount(p.sec_ins_amt),
            ));
        }
        format!("{:016x}", fnv1a(canonical.as_bytes()))
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Office-local time to UTC. An ambiguous time (clocks going back) takes the earlier instant; a
/// time that does not exist (clocks going forward) is read an hour later.
fn office_to_utc(t: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let local = tz.from_local_datetime(&t).earliest().or_else(|| {
        tz.from_local_datetime(&(t + chrono::TimeDelta::hours(1)))
            .earliest()
    });
    match local {
        Some(l) => l.with_timezone(&Utc),
        None => t.and_utc(),
    }
}

impl Client {
    /// The patient's first treatment plan whose note contains `marker`, if any
    /// (`GET /treatplans?PatNum=`, every page).
    ///
    /// # Errors
    /// As [`Client::list_treat_plans`]; [`Error::InvalidRequest`] (Permanent) for an empty marker.
    pub async fn find_treat_plan_by_marker(
        &self,
        pat_num: PatNum,
        marker: &str,
    ) -> Result<Option<TreatPlan>> {
        if marker.trim().is_empty() {
            return Err(Error::InvalidRequest {
                op: Operation::ListTreatPlans,
                reason: "the marker must not be empty",
            });
        }
        let plans = self
            .list_treat_plans(&TreatPlanQuery::new().pat_num(pat_num))
            .await?;
        Ok(plans.into_iter().find(|p| p.note.contains(marker)))
    }

    /// `POST /treatplans` (apitreatplans.html, 23.2.13): an Inactive plan for the patient.
    /// Returns the created row, or `None` when Open Dental answers without one. Prefer
    /// [`Client::create_treat_plan_once`].
    ///
    /// # Errors
    /// Transient for a connect error or 429 (nothing was written); **Indeterminate** for a
    /// timeout, a dropped connection or any 5xx (look for the marker before creating again);
    /// Permanent for 400/401/403/404 and decode errors.
    pub async fn create_treat_plan(&self, plan: &NewTreatPlan) -> Result<Option<TreatPlan>> {
        self.create(
            Operation::CreateTreatPlan,
            path::TREATPLANS,
            &wire::treat_plan_body(plan),
            resource::TREATPLAN,
            wire::read_treat_plan,
        )
        .await
    }

    /// Check-then-act: creates the plan unless one of the patient's plans already carries
    /// `marker` in its note. Open Dental takes no idempotency key, so this is what makes a
    /// repeat after an Indeterminate failure safe.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] (Permanent) when `marker` is empty or not in the plan's note;
    /// otherwise as [`Client::find_treat_plan_by_marker`] and [`Client::create_treat_plan`].
    pub async fn create_treat_plan_once(
        &self,
        plan: &NewTreatPlan,
        marker: &str,
    ) -> Result<WriteOutcome<TreatPlan>> {
        if marker.trim().is_empty() || !plan.note.contains(marker) {
            return Err(Error::InvalidRequest {
                op: Operation::CreateTreatPlan,
                reason: "the plan note must contain the non-empty marker",
            });
        }
        if let Some(existing) = self.find_treat_plan_by_marker(plan.pat_num, marker).await? {
            return Ok(WriteOutcome::AlreadyWritten(existing));
        }
        self.create_treat_plan(plan)
            .await
            .map(WriteOutcome::Created)
    }

    /// `GET /treatplans`, every page.
    ///
    /// # Errors
    /// [`Error`](crate::Error) with kind Transient (connect, timeout, 429, 5xx, after the
    /// client's own retries) or Permanent (400/401/403/404, decode, paging overrun).
    pub async fn list_treat_plans(&self, query: &TreatPlanQuery) -> Result<Vec<TreatPlan>> {
        let listing = self
            .list_all(
                Operation::ListTreatPlans,
                path::TREATPLANS,
                &query.to_params(),
                resource::TREATPLAN,
                wire::read_treat_plan,
            )
            .await?;
        Ok(listing.items)
    }

    /// `GET /treatplans`, every page, like [`Client::list_treat_plans`], but a row that cannot be
    /// read is returned apart instead of failing the listing.
    ///
    /// # Errors
    /// As [`Client::list_treat_plans`], except for rows that do not decode.
    pub async fn list_treat_plans_tolerant(
        &self,
        query: &TreatPlanQuery,
    ) -> Result<(Vec<TreatPlan>, Vec<UnreadablePlan>)> {
        let (plans, bad) = self
            .list_all_tolerant(
                Operation::ListTreatPlans,
                path::TREATPLANS,
                &query.to_params(),
                resource::TREATPLAN,
                "TreatPlanNum",
                wire::read_treat_plan,
            )
            .await?;
        Ok((plans, bad.into_iter().map(UnreadablePlan::from).collect()))
    }

    /// `GET /proctps?TreatPlanNum=`: a Saved plan's procedures with fee and estimates, every page,
    /// in plan order.
    ///
    /// # Errors
    /// As [`Client::list_treat_plans`].
    pub async fn list_proc_tps(&self, plan: TreatPlanNum) -> Result<Vec<ProcTp>> {
        let mut listing = self
            .list_all(
                Operation::ListProcTps,
                path::PROCTPS,
                &[(param::TREAT_PLAN_NUM, plan.to_string())],
                resource::PROCTP,
                wire::read_proc_tp,
            )
            .await?;
        listing.items.sort_by_key(|p| p.item_order);
        Ok(listing.items)
    }

    /// `GET /treatplanattaches?TreatPlanNum=`: an Active or Inactive plan's procedures, every page.
    ///
    /// # Errors
    /// As [`Client::list_treat_plans`].
    pub async fn list_treat_plan_attaches(
        &self,
        plan: TreatPlanNum,
    ) -> Result<Vec<TreatPlanAttach>> {
        let listing = self
            .list_all(
                Operation::ListTreatPlanAttaches,
                path::TREATPLANATTACHES,
                &[(param::TREAT_PLAN_NUM, plan.to_string())],
                resource::TREATPLANATTACH,
                wire::read_treat_plan_attach,
            )
            .await?;
        Ok(listing.items)
    }

    /// The plans edited since `cursor` (by `SecDateTEdit`), every page, and the next cursor. A plan
    /// is returned again only when it is edited again. See [`PlanCursor`] for how the look-back
    /// works.
    ///
    /// # Errors
    /// As [`Client::list_treat_plans`]. On error the cursor does not move.
    pub async fn changed_treat_plans(&self, cursor: &PlanCursor) -> Result<PlanChanges> {
        let mut query = TreatPlanQuery::new();
        query.edited_after = cursor.query_from(self.change_lookback());
        let (mut listed, unreadable) = self.list_treat_plans_tolerant(&query).await?;
        // Oldest edit first, so a caller that stops half-way has handled a prefix.
        listed.sort_by_key(|p| (p.sec_date_t_edit, p.treat_plan_num));
        let (plans, next) = cursor.advance(listed, self.change_lookback());
        Ok(PlanChanges {
            plans,
            unreadable,
            next,
        })
    }

    /// The plan with its `proctps` (fee, primary and secondary estimates as [`Money`]).
    ///
    /// # Errors
    /// As [`Client::list_proc_tps`].
    pub async fn plan_detail(&self, plan: TreatPlan) -> Result<PlanDetail> {
        let procedures = self.list_proc_tps(plan.treat_plan_num).await?;
        Ok(PlanDetail { plan, procedures })
    }
}

impl fmt::Display for AcceptanceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SignedSaved => "signed_saved",
            Self::AnySaved => "any_saved",
            Self::SignedAny => "signed_any",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ProcTpNum, TreatPlanNum};
    use crate::types::TpType;
    use financing_core::{CdtCode, CoverageSplit};

    fn t(s: &str) -> NaiveDateTime {
        wire::parse_date_time(s).unwrap().unwrap()
    }

    fn plan(status: TpStatus, signed: Option<&str>, is_signed: Option<bool>) -> TreatPlan {
        TreatPlan {
            treat_plan_num: TreatPlanNum::new(963),
            pat_num: PatNum::new(722),
            date_tp: None,
            heading: String::new(),
            note: String::new(),
            respons_party: None,
            status,
            tp_type: TpType::Insurance,
            sec_date_t_edit: Some(t("2024-03-10 09:00:00")),
            date_t_signed: signed.map(t),
            date_t_practice_signed: None,
            is_signed,
            is_signed_practice: None,
        }
    }

    fn proc_tp(num: u64, code: &str, fee: i64, pri: i64, sec: i64, discount: i64) -> ProcTp {
        ProcTp {
            proc_tp_num: ProcTpNum::new(num),
            treat_plan_num: TreatPlanNum::new(963),
            pat_num: PatNum::new(722),
            proc_num_orig: None,
            item_order: 0,
            tooth_num_tp: String::new(),
            surf: String::new(),
            proc_code: CdtCode::new(code),
            descript: String::new(),
            fee_amt: Money::usd(fee),
            pri_ins_amt: Some(Money::usd(pri)),
            sec_ins_amt: Some(Money::usd(sec)),
            pat_amt: None,
            discount: Some(Money::usd(discount)),
            fee_allowed: None,
            tax_amt: None,
            prov_num: None,
            date_tp: None,
            sec_date_t_edit: None,
        }
    }

    #[test]
    fn acceptance_rules_table() {
        let signed = Some("2024-03-09 15:00:00");
        let rows = [
            // (status, signed, isSigned, SignedSaved, AnySaved, SignedAny)
            (TpStatus::Saved, signed, None, true, true, true),
            (TpStatus::Saved, None, None, false, true, false),
            (TpStatus::Saved, None, Some(true), true, true, true),
            (TpStatus::Saved, None, Some(false), false, true, false),
            (TpStatus::Active, signed, None, false, false, true),
            (TpStatus::Inactive, None, None, false, false, false),
            (
                TpStatus::Unknown("Archived".into()),
                signed,
                None,
                false,
                false,
                true,
            ),
        ];
        for (status, s, is, signed_saved, any_saved, signed_any) in rows {
            let p = plan(status.clone(), s, is);
            assert_eq!(
                p.is_accepted(AcceptanceRule::SignedSaved),
                signed_saved,
                "{status} {s:?} {is:?}"
            );
            assert_eq!(is_accepted(&p, AcceptanceRule::AnySaved), any_saved);
            assert_eq!(AcceptanceRule::SignedAny.accepts(&p), signed_any);
        }
        assert_eq!(AcceptanceRule::default(), AcceptanceRule::SignedSaved);
    }

    #[test]
    fn accepted_at_is_the_signature_time_else_the_last_edit() {
        let signed = plan(TpStatus::Saved, Some("2024-03-09 15:00:00"), None);
        assert_eq!(
            AcceptanceRule::SignedSaved.accepted_at(&signed),
            Some(t("2024-03-09 15:00:00"))
        );
        let unsigned = plan(TpStatus::Saved, None, None);
        assert_eq!(AcceptanceRule::SignedSaved.accepted_at(&unsigned), None);
        assert_eq!(
            AcceptanceRule::AnySaved.accepted_at(&unsigned),
            Some(t("2024-03-10 09:00:00"))
        );
    }

    #[test]
    fn detail_maps_to_a_plan_whose_patient_portion_matches_open_dental() {
        // Open Dental's own example: 204 fee, 54 discount, 80 primary -> PatAmt 70.
        let detail = PlanDetail {
            plan: plan(TpStatus::Saved, Some("2024-03-09 15:00:00"), None),
            procedures: vec![
                proc_tp(976, "D2393", 20_400, 8_000, 0, 5_400),
                proc_tp(977, "D0140", 5_700, 5_700, 0, 0),
            ],
        };
        let tp = detail
            .to_treatment_plan(AcceptanceRule::SignedSaved, chrono_tz::America::Denver)
            .unwrap();
        assert_eq!(tp.id.as_str(), "963");
        assert_eq!(tp.patient_id.as_str(), "722");
        // 15:00 MST is 22:00 UTC.
        assert_eq!(tp.accepted_at.to_rfc3339(), "2024-03-09T22:00:00+00:00");
        let split = CoverageSplit::from_plan(&tp).unwrap();
        assert_eq!(split.total, Money::usd(20_700));
        assert_eq!(split.insurance, Money::usd(13_700));
        assert_eq!(split.patient_portion, Money::usd(7_000));
    }

    #[test]
    fn revision_changes_with_amounts_not_with_notes() {
        let base = PlanDetail {
            plan: plan(TpStatus::Saved, Some("2024-03-09 15:00:00"), None),
            procedures: vec![proc_tp(976, "D2393", 20_400, 8_000, 0, 5_400)],
        };
        let mut noted = base.clone();
        noted.plan.note = "edited".into();
        noted.plan.sec_date_t_edit = Some(t("2024-04-01 08:00:00"));
        let mut repriced = base.clone();
        repriced.procedures[0].pri_ins_amt = Some(Money::usd(9_000));
        let rev = |d: &PlanDetail| {
            d.to_treatment_plan(AcceptanceRule::SignedSaved, chrono_tz::UTC)
                .unwrap()
                .revision
        };
        assert_eq!(rev(&base), rev(&noted));
        assert_ne!(rev(&base), rev(&repriced));
        assert_eq!(rev(&base).len(), 16);
    }

    #[test]
    fn unaccepted_plans_do_not_map() {
        let detail = PlanDetail {
            plan: plan(TpStatus::Active, None, None),
            procedures: vec![],
        };
        assert_eq!(
            detail.to_treatment_plan(AcceptanceRule::SignedSaved, chrono_tz::UTC),
            Err(PlanMappingError::NotAccepted)
        );
        assert_eq!(PlanMappingError::NotAccepted.kind(), ErrorKind::Permanent);
    }

    #[test]
    fn office_times_in_a_dst_gap_or_overlap_still_map() {
        let ny = chrono_tz::America::New_York;
        // 02:30 on 2024-03-10 does not exist in New York.
        assert_eq!(
            office_to_utc(t("2024-03-10 02:30:00"), ny).to_rfc3339(),
            "2024-03-10T07:30:00+00:00"
        );
        // 01:30 on 2024-11-03 happens twice; the first is EDT.
        assert_eq!(
            office_to_utc(t("2024-11-03 01:30:00"), ny).to_rfc3339(),
            "2024-11-03T05:30:00+00:00"
        );
    }
}
