//! New-patient intake: a workflow whose plan comes from an intake (a consultation's proposed
//! treatment and amount, and the details the patient typed) instead of a plan detected in the
//! practice system. The machine is the same; what differs is decided here, without I/O:
//!
//! - [`intake_plan`]: the plan the workflow prices (one line, the proposed amount; no procedure
//!   code reaches a lender, which only ever receives the amount).
//! - [`check_details`]: what the patient typed is complete and plausible before anything starts.
//! - [`creates_record`]: whether the case was accepted, so the patient is matched or created in
//!   the practice system (a consultation that did not convert leaves no record there).
//! - [`same_patient`]: the match rule (name, date of birth, phone) a practice-system candidate
//!   must pass before Chairside writes to it.
//! - [`check_link_resend`]: how often staff may send a patient their intake link again.

use chrono::{DateTime, NaiveDate, Utc};
use financing_core::{
    CdtCode, Language, Money, PatientContact, PatientId, PlanId, PlannedProcedure, TreatmentPlan,
};
use serde::{Deserialize, Serialize};

use crate::{FinancingResult, NoteKind, Status};

/// The prefix of the plan and patient ids of intake workflows (`intake-{id}`): never a practice
/// system's id, so nothing detected can collide with an intake.
pub const ID_PREFIX: &str = "intake-";

/// The code of the one line of an intake plan. Not a CDT code: `D9999` ("unspecified adjunctive
/// procedure, by report") is what practices use for a case priced as a whole. Read internally only.
pub const INTAKE_CODE: &str = "D9999";

/// The intake a workflow came from, kept in its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeLink {
    /// The intake's id (opaque, `in_…`).
    pub id: String,
    /// The patient in the practice system, once matched or created.
    #[serde(default)]
    pub practice_patient: Option<PatientId>,
    /// Ledger notes asked for before the practice-system patient existed, written once it does
    /// (and, at case acceptance, once the case's treatment plan is recorded there).
    #[serde(default)]
    pub held_notes: Vec<NoteKind>,
    /// The case's treatment plan in the practice system: its id there, or `staff` when its API
    /// takes no plans and a staff task carries the record to enter. `None` until answered.
    #[serde(default)]
    pub practice_plan: Option<String>,
}

impl IntakeLink {
    /// A link to the intake `id`, with no practice-system patient yet.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            practice_patient: None,
            held_notes: Vec::new(),
            practice_plan: None,
        }
    }
}

/// The plan id of the workflow of intake `id`.
pub fn plan_id(intake: &str) -> PlanId {
    PlanId::new(format!("{ID_PREFIX}{intake}"))
}

/// The patient id under which an intake's contact is stored until the practice system has one.
pub fn patient_id(intake: &str) -> PatientId {
    PatientId::new(format!("{ID_PREFIX}{intake}"))
}

/// The plan an intake workflow prices: one line of `amount`, no insurance estimate (a new patient's
/// insurance is not known to Chairside; staff enter the patient's portion), accepted at
/// `accepted_at` (when the intake was complete).
pub fn intake_plan(
    intake: &str,
    amount: Money,
    accepted_at: DateTime<Utc>,
    treatment_date: Option<NaiveDate>,
) -> TreatmentPlan {
    TreatmentPlan {
        id: plan_id(intake),
        revision: "1".into(),
        patient_id: patient_id(intake),
        accepted_at,
        treatment_date,
        procedures: vec![PlannedProcedure {
            code: CdtCode::new(INTAKE_CODE),
            fee: amount,
            primary_estimate: None,
            secondary_estimate: None,
        }],
    }
}

/// What is wrong with an intake's details, named for the person who typed them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeProblem {
    /// A required field is empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A field that cannot be right.
    #[error("{0} does not look right")]
    Invalid(&'static str),
    /// The amount is zero, negative or above the limit.
    #[error("the amount must be between $1 and {max}")]
    Amount {
        /// The highest amount accepted.
        max: Money,
    },
}

impl IntakeProblem {
    /// The problem in `lang`, for the person who typed it (the English is the `Display`).
    pub fn describe(&self, lang: Language) -> String {
        if lang != Language::Es {
            return self.to_string();
        }
        match self {
            Self::Missing(field) => match field_es(field) {
                Some((phrase, _)) => format!("falta {phrase}"),
                None => self.to_string(),
            },
            Self::Invalid(field) => match field_es(field) {
                Some((phrase, feminine)) => {
                    let ending = if feminine { "a" } else { "o" };
                    format!("{phrase} no parece correct{ending}")
                }
                None => self.to_string(),
            },
            Self::Amount { max } => format!("el monto debe estar entre $1 y {max}"),
        }
    }
}

/// A field [`check_details`] names, in Spanish with its article, and whether it is feminine
/// (for the adjective that follows). `None` for a field this table does not know yet: the
/// English is shown rather than nothing.
fn field_es(field: &str) -> Option<(&'static str, bool)> {
    Some(match field {
        "first name" => ("el nombre", false),
        "last name" => ("el apellido", false),
        "date of birth" => ("la fecha de nacimiento", true),
        "a mobile phone or an email" => ("un teléfono móvil o un correo electrónico", false),
        "mobile phone" => ("el teléfono móvil", false),
        "email" => ("el correo electrónico", false),
        "state of residence" => ("el estado donde vive", false),
        _ => return None,
    })
}

/// The longest name part accepted (lenders and practice systems take about 30 to 50).
const MAX_NAME: usize = 50;

/// Checks what the patient typed: names, a date of birth in the past (and not before 1900), a
/// mobile number in E.164 or an email (at least one way to reach them), and the state.
///
/// # Errors
/// The first [`IntakeProblem`] found.
pub fn check_details(contact: &PatientContact, today: NaiveDate) -> Result<(), IntakeProblem> {
    for (field, value) in [
        ("first name", &contact.first_name),
        ("last name", &contact.last_name),
    ] {
        let v = value.trim();
        if v.is_empty() {
            return Err(IntakeProblem::Missing(field));
        }
        if v.chars().count() > MAX_NAME || v.chars().any(char::is_control) {
            return Err(IntakeProblem::Invalid(field));
        }
    }
    let Some(dob) = contact.date_of_birth else {
        return Err(IntakeProblem::Missing("date of birth"));
    };
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
    if dob >= today || dob < earliest {
        return Err(IntakeProblem::Invalid("date of birth"));
    }
    if contact.mobile_phone.is_none() && contact.email.is_none() {
        return Err(IntakeProblem::Missing("a mobile phone or an email"));
    }
    if let Some(p) = &contact.mobile_phone
        && !is_e164_us(p)
    {
        return Err(IntakeProblem::Invalid("mobile phone"));
    }
    if let Some(e) = &contact.email
        && !looks_like_email(e)
    {
        return Err(IntakeProblem::Invalid("email"));
    }
    if contact.state().is_none() {
        return Err(IntakeProblem::Missing("state of residence"));
    }
    Ok(())
}

/// Checks the proposed amount against the practice's limit.
///
/// # Errors
/// [`IntakeProblem::Amount`].
pub fn check_amount(amount: Money, max: Money) -> Result<(), IntakeProblem> {
    if amount.minor() < 100 || amount.minor() > max.minor() {
        return Err(IntakeProblem::Amount { max });
    }
    Ok(())
}

/// A US mobile number as typed (`(555) 555-0123`, `555.555.0123`, `+1 555 555 0123`) in E.164.
pub fn us_mobile(typed: &str) -> Option<String> {
    let digits: String = typed.chars().filter(char::is_ascii_digit).collect();
    let national = match digits.len() {
        10 => digits.as_str(),
        11 if digits.starts_with('1') => &digits[1..],
        _ => return None,
    };
    let b = national.as_bytes();
    // NANP: area code and exchange never start with 0 or 1.
    if matches!(b[0], b'0' | b'1') || matches!(b[3], b'0' | b'1') {
        return None;
    }
    Some(format!("+1{national}"))
}

fn is_e164_us(p: &str) -> bool {
    us_mobile(p).as_deref() == Some(p)
}

fn looks_like_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && e.len() <= 254
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// True when the case was accepted: financing is arranged (a lender finances it, or the patient
/// accepted the in-house plan) and the workflow was not withdrawn. Then the patient is matched or
/// created in the practice system and the ledger note goes there; otherwise (declined, quiet,
/// cancelled) the practice system gets no record of a consultation that did not convert.
pub fn creates_record(
    result: Option<&FinancingResult>,
    in_house_accepted: bool,
    status: Status,
) -> bool {
    status != Status::Cancelled
        && result
            .is_some_and(|r| r.financed.is_some() || (r.in_house.is_some() && in_house_accepted))
}

/// What [`IntakeLink::practice_plan`] holds when a person enters the plan.
pub const PLAN_FOR_STAFF: &str = "staff";

/// The treatment plan of an accepted intake case, as written to the practice system: what was
/// accepted and how it is financed. No procedure codes: the consultation's procedures are the
/// dentist's to chart; the plan names the case so the front desk finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasePlan {
    /// The plan's heading (`Financed case (Chairside)`).
    pub heading: String,
    /// The patient's portion accepted.
    pub amount: Money,
    /// One line for staff: the amount, how it is financed, the intake's id. No PHI.
    pub summary: String,
}

/// The heading of the plan Chairside writes at case acceptance.
pub const CASE_PLAN_HEADING: &str = "Financed case (Chairside)";

/// The marker the case plan carries in the practice system (check before write): one per
/// workflow, so a repeat after a crash or a lost answer finds the plan instead of a second one.
pub fn plan_marker(workflow: &crate::WorkflowId) -> String {
    format!("plan:{workflow}")
}

/// The case plan of an intake workflow whose case was accepted; `None` for a workflow that is not
/// an intake or has no price yet.
pub fn case_plan(state: &crate::WorkflowState) -> Option<CasePlan> {
    let link = state.intake.as_ref()?;
    let amount = state.split.as_ref()?.patient_portion;
    let how = match &state.result {
        Some(r) => match (&r.financed, &r.in_house) {
            (Some((lender, financed)), Some(plan)) => format!(
                "{financed} financed by {lender}, {} on the practice's payment plan",
                plan.total
            ),
            (Some((lender, financed)), None) => format!("{financed} financed by {lender}"),
            (None, Some(plan)) => format!("{} on the practice's payment plan", plan.total),
            (None, None) => "not financed".to_owned(),
        },
        None => "not financed".to_owned(),
    };
    let deposit = state
        .result
        .as_ref()
        .map(|r| r.deposit)
        .filter(|d| !d.is_zero())
        .map(|d| format!("; deposit {d}"))
        .unwrap_or_default();
    Some(CasePlan {
        heading: CASE_PLAN_HEADING.to_owned(),
        amount,
        summary: format!(
            "Case accepted {}: patient portion {amount}; {how}{deposit}. From intake {} \
             (chart the consultation's procedures on this plan).",
            state.accepted_at.format("%Y-%m-%d"),
            link.id
        ),
    })
}

/// A patient as a practice system holds it, for matching.
#[derive(Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its id there.
    pub id: PatientId,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth.
    pub date_of_birth: Option<NaiveDate>,
    /// Every phone number on the record, as stored.
    pub phones: Vec<String>,
    /// Email.
    pub email: Option<String>,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// True when `candidate` is the intake's patient: the same first and last name (case, accents of
/// spacing aside), the same date of birth, and one phone number in common (the digits, national
/// part) or, when the intake has no phone, the same email. A name and birth date alone are not
/// enough: two people can share them, and Chairside would write to the wrong chart.
pub fn same_patient(intake: &PatientContact, candidate: &Candidate) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    if norm(&intake.first_name) != norm(&candidate.first_name)
        || norm(&intake.last_name) != norm(&candidate.last_name)
        || intake.date_of_birth.is_none()
        || intake.date_of_birth != candidate.date_of_birth
    {
        return false;
    }
    match &intake.mobile_phone {
        Some(phone) => {
            let ours = us_mobile(phone);
            candidate
                .phones
                .iter()
                .any(|p| ours.is_some() && us_mobile(p) == ours)
        }
        None => match (&intake.email, &candidate.email) {
            (Some(a), Some(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
            _ => false,
        },
    }
}

/// The shortest time between two sends of one intake's link (the first send, a re-send): a
/// double click or an impatient second try does not text or email the patient twice.
pub const LINK_RESEND_GAP: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The most sends of one intake's link (the first included) in any [`LINK_RESEND_WINDOW`].
pub const LINK_SENDS_PER_WINDOW: usize = 5;

/// The window [`LINK_SENDS_PER_WINDOW`] counts in.
pub const LINK_RESEND_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Why staff may not send an intake's link again now. Names no patient data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkResendRefused {
    /// The last send was less than [`LINK_RESEND_GAP`] ago.
    #[error("the link was sent less than 10 minutes ago; it can be sent again from {0}")]
    TooSoon(DateTime<Utc>),
    /// [`LINK_SENDS_PER_WINDOW`] sends in the last [`LINK_RESEND_WINDOW`].
    #[error("the link was already sent 5 times in 24 hours; it can be sent again from {0}")]
    TooMany(DateTime<Utc>),
}

impl LinkResendRefused {
    /// When a send is allowed again.
    pub fn allowed_from(self) -> DateTime<Utc> {
        match self {
            Self::TooSoon(at) | Self::TooMany(at) => at,
        }
    }
}

/// Whether staff may send an intake's link again at `now`, given when each earlier send was asked
/// for (any order). Both stores decide with this, inside the transaction that queues the send.
///
/// # Errors
/// [`LinkResendRefused`] with the time a send is allowed again.
pub fn check_link_resend(
    earlier: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<(), LinkResendRefused> {
    if let Some(last) = earlier.iter().max()
        && now < *last + LINK_RESEND_GAP
    {
        return Err(LinkResendRefused::TooSoon(*last + LINK_RESEND_GAP));
    }
    let mut recent: Vec<DateTime<Utc>> = earlier
        .iter()
        .copied()
        .filter(|at| *at > now - LINK_RESEND_WINDOW)
        .collect();
    if recent.len() >= LINK_SENDS_PER_WINDOW {
        recent.sort_unstable();
        // The window frees up when enough of its sends fall out of it.
        let freeing = recent[recent.len() - LINK_SENDS_PER_WINDOW];
        return Err(LinkResendRefused::TooMany(freeing + LINK_RESEND_WINDOW));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use financing_core::{Language, PostalAddress, SmsConsent, UsState};

    fn contact() -> PatientContact {
        PatientContact {
            id: patient_id("in_1"),
            first_name: "Rosa".into(),
            last_name: "Quintero".into(),
            date_of_birth: NaiveDate::from_ymd_opt(1984, 5, 12),
            mobile_phone: Some("+15125550188".into()),
            email: Some("rosa@example.test".into()),
            address: Some(PostalAddress {
                lines: vec![],
                city: String::new(),
                state: Some(UsState::TX),
                postal_code: String::new(),
            }),
            preferred_language: Language::En,
            time_zone: None,
            sms_consent: SmsConsent::None,
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    #[test]
    fn every_problem_the_details_check_names_reads_in_spanish_naming_its_field() {
        // Arrange: one contact per problem check_details can find.
        let mut cases: Vec<(PatientContact, &str)> = Vec::new();
        let mut c = contact();
        c.first_name = " ".into();
        cases.push((c, "falta el nombre"));
        let mut c = contact();
        c.last_name = "x".repeat(51);
        cases.push((c, "el apellido no parece correcto"));
        let mut c = contact();
        c.date_of_birth = None;
        cases.push((c, "falta la fecha de nacimiento"));
        let mut c = contact();
        c.date_of_birth = Some(today());
        cases.push((c, "la fecha de nacimiento no parece correcta"));
        let mut c = contact();
        c.mobile_phone = None;
        c.email = None;
        cases.push((c, "falta un teléfono móvil o un correo electrónico"));
        let mut c = contact();
        c.mobile_phone = Some("+10005550188".into());
        cases.push((c, "el teléfono móvil no parece correcto"));
        let mut c = contact();
        c.email = Some("rosa@".into());
        cases.push((c, "el correo electrónico no parece correcto"));
        let mut c = contact();
        c.address = None;
        cases.push((c, "falta el estado donde vive"));

        for (c, spanish) in cases {
            // Act
            let problem = check_details(&c, today()).expect_err("a problem");

            // Assert: Spanish for a Spanish page, the English unchanged for an English one.
            assert_eq!(problem.describe(Language::Es), spanish);
            assert_eq!(problem.describe(Language::En), problem.to_string());
        }
        assert_eq!(
            IntakeProblem::Amount {
                max: Money::usd(10_000_000)
            }
            .describe(Language::Es),
            "el monto debe estar entre $1 y $100,000.00"
        );
        // A field the table does not know yet is shown in English rather than lost.
        assert_eq!(
            IntakeProblem::Missing("insurance").describe(Language::Es),
            "insurance is required"
        );
    }

    #[test]
    fn complete_details_pass_and_each_gap_is_named() {
        assert_eq!(check_details(&contact(), today()), Ok(()));
        let mut c = contact();
        c.first_name = "  ".into();
        assert_eq!(
            check_details(&c, today()),
            Err(IntakeProblem::Missing("first name"))
        );
        let mut c = contact();
        c.date_of_birth = None;
        assert_eq!(
            check_details(&c, today()),
            Err(IntakeProblem::Missing("date of birth"))
        );
        let mut c = contact();
        c.date_of_birth = Some(today());
        assert_eq!(
            check_details(&c, today()),
            Err(IntakeProblem::Invalid("date of birth"))
        );
        let mut c = contact();
        c.mobile_phone = None;
        c.email = None;
        assert_eq!(
            check_details(&c, today()),
            Err(IntakeProblem::Missing("a mobile phone or an email"))
        );
        let mut c = contact();
        c.mobile_phone = Some("+10005550188".into());
        assert_eq!(
            check_details(&c, today()),
            Err(IntakeProblem::Invalid("mobile phone"))
        );
        let mut c = contact();
        c.email = Some("rosa@".into());
        assert_eq!(
            check_details(&c, today()),
            Err(IntakeProblem::Invalid("email"))
        );
        let mut c = contact();
        c.address = None;
        assert_eq!(
            check_details(&c, today()),
            Err(IntakeProblem::Missing("state of residence"))
        );
        let mut c = contact();
        c.last_name = "x".repeat(51);
        assert_eq!(
            check_details(&c, today()),
            Err(IntakeProblem::Invalid("last name"))
        );
    }

    #[test]
    fn amounts_are_bounded() {
        let max = Money::usd(5_000_000);
        assert!(check_amount(Money::usd(480_000), max).is_ok());
        assert!(check_amount(Money::usd(99), max).is_err());
        assert!(check_amount(Money::usd(-100), max).is_err());
        assert!(check_amount(Money::usd(5_000_001), max).is_err());
    }

    #[test]
    fn the_plan_is_one_line_of_the_amount_without_insurance() {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let plan = intake_plan("in_7", Money::usd(480_000), at, None);
        assert_eq!(plan.id.as_str(), "intake-in_7");
        assert_eq!(plan.patient_id.as_str(), "intake-in_7");
        assert_eq!(plan.procedures.len(), 1);
        assert_eq!(plan.procedures[0].fee, Money::usd(480_000));
        let split = financing_core::CoverageSplit::from_plan(&plan).unwrap();
        assert_eq!(split.patient_portion, Money::usd(480_000));
    }

    fn candidate() -> Candidate {
        Candidate {
            id: PatientId::new("77"),
            first_name: "ROSA".into(),
            last_name: " Quintero ".into(),
            date_of_birth: NaiveDate::from_ymd_opt(1984, 5, 12),
            phones: vec!["".into(), "(512) 555-0188".into()],
            email: None,
        }
    }

    #[test]
    fn a_match_needs_name_birth_date_and_a_shared_phone() {
        assert!(same_patient(&contact(), &candidate()));
        let mut c = candidate();
        c.phones = vec!["(512) 555-0199".into()];
        assert!(
            !same_patient(&contact(), &c),
            "a namesake with another phone"
        );
        let mut c = candidate();
        c.date_of_birth = NaiveDate::from_ymd_opt(1984, 5, 13);
        assert!(!same_patient(&contact(), &c));
        let mut c = candidate();
        c.first_name = "Rose".into();
        assert!(!same_patient(&contact(), &c));
        // Without a phone on the intake, the email decides.
        let mut ours = contact();
        ours.mobile_phone = None;
        assert!(!same_patient(&ours, &candidate()));
        let mut c = candidate();
        c.email = Some("ROSA@example.test".into());
        assert!(same_patient(&ours, &c));
    }

    #[test]
    fn only_an_accepted_case_creates_a_record() {
        let financed = FinancingResult {
            financed: Some((financing_core::LenderId::new("carecredit"), Money::usd(1))),
            deposit: Money::usd(0),
            in_house: None,
            path: String::new(),
        };
        let nothing = FinancingResult {
            financed: None,
            deposit: Money::usd(0),
            in_house: None,
            path: String::new(),
        };
        let in_house = FinancingResult {
            in_house: Some(financing_core::InHouseOffer {
                total: Money::usd(100),
                deposit: Money::usd(0),
                installments: vec![Money::usd(100)],
                interval: financing_core::InstallmentInterval::MONTHLY,
            }),
            ..nothing.clone()
        };
        assert!(creates_record(Some(&financed), false, Status::Active));
        assert!(creates_record(
            Some(&financed),
            false,
            Status::WaitingOnStaff
        ));
        assert!(!creates_record(Some(&financed), false, Status::Cancelled));
        assert!(!creates_record(Some(&nothing), false, Status::Active));
        assert!(!creates_record(None, false, Status::WaitingOnStaff));
        assert!(
            !creates_record(Some(&in_house), false, Status::WaitingOnStaff),
            "an in-house plan offered and declined is not a case accepted"
        );
        assert!(creates_record(Some(&in_house), true, Status::Active));
    }

    #[test]
    fn a_link_may_be_sent_again_ten_minutes_after_the_last_send_and_five_times_a_day() {
        let t0: DateTime<Utc> = "2026-06-02T15:00:00Z".parse().unwrap();
        let min = chrono::TimeDelta::minutes;
        // The first re-send: ten minutes after the first send, not sooner.
        assert_eq!(
            check_link_resend(&[t0], t0 + min(9)),
            Err(LinkResendRefused::TooSoon(t0 + min(10)))
        );
        assert_eq!(check_link_resend(&[t0], t0 + min(10)), Ok(()));
        // Five sends within a day: the sixth waits until the oldest leaves the window.
        let five: Vec<_> = (0..5).map(|i| t0 + min(15 * i)).collect();
        let refused = check_link_resend(&five, t0 + min(120)).unwrap_err();
        assert_eq!(
            refused,
            LinkResendRefused::TooMany(t0 + chrono::TimeDelta::hours(24))
        );
        assert_eq!(refused.allowed_from(), t0 + chrono::TimeDelta::hours(24));
        assert_eq!(
            check_link_resend(&five, t0 + chrono::TimeDelta::hours(24)),
            Ok(())
        );
        // Nothing sent yet: allowed.
        assert_eq!(check_link_resend(&[], t0), Ok(()));
    }
}
