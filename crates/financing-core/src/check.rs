//! Checks on what a practice system returned, before anyone is contacted: the record is the one
//! that was asked for, amounts are within the practice's ceiling, text is cleaned of control
//! characters and bounded in length. And the plan's content fingerprint, which says whether an
//! edit changed what is financed.
//!
//! Pure: no I/O. A problem names the field path (`procedures[2].fee`, `patient.first_name`) and
//! what is wrong with it, never the value (which may be patient data).

use std::fmt;

use crate::{Money, PatientContact, PatientId, PlanId, TreatmentPlan};

/// Bounds a plan and its patient must be within before a lender or the patient is contacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    /// The largest plan total (sum of fees), in cents. A fee above it is a data error, not a plan.
    pub max_plan_cents: i64,
    /// The most procedures one plan may list.
    pub max_procedures: usize,
    /// The longest name (first or last), in characters.
    pub max_name_chars: usize,
    /// The longest email, phone, address line, city or postal code, in characters.
    pub max_contact_chars: usize,
    /// The most street lines an address may have.
    pub max_address_lines: usize,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            // $100,000: far above any dental plan a lender finances, far below an overflow.
            max_plan_cents: 10_000_000,
            max_procedures: 200,
            max_name_chars: 100,
            max_contact_chars: 254,
            max_address_lines: 3,
        }
    }
}

/// What is wrong with a record, by field path; never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordProblem {
    /// The field path (`procedures[1].fee`, `patient.id`).
    pub field: String,
    /// What is wrong, in words staff understand.
    pub problem: &'static str,
}

impl RecordProblem {
    fn new(field: impl Into<String>, problem: &'static str) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.problem)
    }
}

impl std::error::Error for RecordProblem {}

/// Checks a plan read for (`plan_id`, `patient_id`): it is that plan of that patient, it lists
/// procedures but not absurdly many, and no amount is negative or above the ceiling.
///
/// # Errors
/// The first [`RecordProblem`] found.
pub fn check_plan(
    plan: &TreatmentPlan,
    plan_id: &PlanId,
    patient_id: &PatientId,
    limits: &PlanLimits,
) -> Result<(), RecordProblem> {
    if plan.id != *plan_id {
        return Err(RecordProblem::new(
            "plan.id",
            "the practice system returned another plan than the one asked for",
        ));
    }
    if plan.patient_id != *patient_id {
        return Err(RecordProblem::new(
            "plan.patient_id",
            "the plan returned belongs to another patient than the one the change feed named",
        ));
    }
    if plan.procedures.len() > limits.max_procedures {
        return Err(RecordProblem::new(
            "plan.procedures",
            "the plan lists more procedures than the configured limit",
        ));
    }
    let mut total: i64 = 0;
    for (i, p) in plan.procedures.iter().enumerate() {
        let amounts = [
            ("fee", Some(p.fee)),
            ("primary_estimate", p.primary_estimate),
            ("secondary_estimate", p.secondary_estimate),
        ];
        for (name, amount) in amounts {
            let Some(amount) = amount else { continue };
            let field = || format!("plan.procedures[{i}].{name}");
            if amount.is_negative() {
                return Err(RecordProblem::new(field(), "the amount is negative"));
            }
            if amount.minor() > limits.max_plan_cents {
                return Err(RecordProblem::new(
                    field(),
                    "the amount is above the configured ceiling ([detection] max_plan_amount)",
                ));
            }
        }
        total = total.saturating_add(p.fee.minor());
    }
    if total > limits.max_plan_cents {
        return Err(RecordProblem::new(
            "plan.procedures",
            "the plan total is above the configured ceiling ([detection] max_plan_amount)",
        ));
    }
    Ok(())
}

/// Removes control characters (C0, DEL, C1, and the Unicode line/paragraph separators and
/// bidirectional overrides that can reorder text in an email) and trims the ends.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
                )
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn bounded(value: &str, field: &str, max: usize, required: bool) -> Result<String, RecordProblem> {
    let cleaned = clean_text(value);
    if cleaned.chars().count() > max {
        return Err(RecordProblem::new(
            field,
            "longer than the configured limit",
        ));
    }
    if required && cleaned.is_empty() {
        return Err(RecordProblem::new(field, "empty"));
    }
    Ok(cleaned)
}

/// Checks the patient returned for `asked` and returns it cleaned: the same patient, names and
/// contacts without control characters and within the length limits.
///
/// # Errors
/// The first [`RecordProblem`] found.
pub fn clean_contact(
    contact: &PatientContact,
    asked: &PatientId,
    limits: &PlanLimits,
) -> Result<PatientContact, RecordProblem> {
    if contact.id != *asked {
        return Err(RecordProblem::new(
            "patient.id",
            "the practice system returned another patient than the one asked for",
        ));
    }
    let mut c = contact.clone();
    c.first_name = bounded(
        &c.first_name,
        "patient.first_name",
        limits.max_name_chars,
        true,
    )?;
    c.last_name = bounded(
        &c.last_name,
        "patient.last_name",
        limits.max_name_chars,
        true,
    )?;
    let optional = |v: &Option<String>, field: &str| -> Result<Option<String>, RecordProblem> {
        match v {
            None => Ok(None),
            Some(s) => {
                let s = bounded(s, field, limits.max_contact_chars, false)?;
                Ok((!s.is_empty()).then_some(s))
            }
        }
    };
    c.email = optional(&c.email, "patient.email")?;
    c.mobile_phone = optional(&c.mobile_phone, "patient.mobile_phone")?;
    c.time_zone = optional(&c.time_zone, "patient.time_zone")?;
    if let Some(a) = &mut c.address {
        if a.lines.len() > limits.max_address_lines {
            return Err(RecordProblem::new(
                "patient.address.lines",
                "more street lines than the configured limit",
            ));
        }
        let mut lines = Vec::with_capacity(a.lines.len());
        for (i, l) in a.lines.iter().enumerate() {
            let l = bounded(
                l,
                &format!("patient.address.lines[{i}]"),
                limits.max_contact_chars,
                false,
            )?;
            if !l.is_empty() {
                lines.push(l);
            }
        }
        a.lines = lines;
        a.city = bounded(
            &a.city,
            "patient.address.city",
            limits.max_contact_chars,
            false,
        )?;
        a.postal_code = bounded(
            &a.postal_code,
            "patient.address.postal_code",
            limits.max_contact_chars,
            false,
        )?;
    }
    Ok(c)
}

/// A fingerprint of what is financed: the patient and each procedure's code, fee and estimates
/// (in a canonical order, so a re-ordering is not a change). Not the plan's modification time, its
/// notes or its treatment date: touching a plan keeps its fingerprint; an edit to what the
/// patient pays makes a new one. Stable across builds and platforms (FNV-1a, 64 bits).
pub fn fingerprint(plan: &TreatmentPlan) -> String {
    let amount = |m: Option<Money>| {
        m.map(|m| format!("{}{}", m.minor(), m.currency().code()))
            .unwrap_or_default()
    };
    let mut rows: Vec<String> = plan
        .procedures
        .iter()
        .map(|p| {
            format!(
                "{}:{}:{}:{}",
                p.code.as_str(),
                amount(Some(p.fee)),
                amount(p.primary_estimate),
                amount(p.secondary_estimate)
            )
        })
        .collect();
    rows.sort();
    let canonical = format!("{}|{}", plan.patient_id.as_str(), rows.join("|"));
    let hash = canonical.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("fp-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CdtCode, Language, PlannedProcedure, PostalAddress, SmsConsent};
    use chrono::{TimeZone, Utc};

    fn plan(fees: &[i64]) -> TreatmentPlan {
        TreatmentPlan {
            id: PlanId::new("p1"),
            revision: "r".into(),
            patient_id: PatientId::new("pat1"),
            accepted_at: Utc.with_ymd_and_hms(2026, 1, 5, 10, 0, 0).unwrap(),
            treatment_date: None,
            procedures: fees
                .iter()
                .enumerate()
                .map(|(i, f)| PlannedProcedure {
                    code: CdtCode::new(format!("D{}", 2740 + i)),
                    fee: Money::usd(*f),
                    primary_estimate: Some(Money::usd(f / 2)),
                    secondary_estimate: None,
                })
                .collect(),
        }
    }

    fn contact(first: &str) -> PatientContact {
        PatientContact {
            id: PatientId::new("pat1"),
            first_name: first.into(),
            last_name: "Example".into(),
            date_of_birth: None,
            mobile_phone: Some("+15555550101".into()),
            email: Some("pat@example.test".into()),
            address: Some(PostalAddress {
                lines: vec!["1 Test St".into()],
                city: "Austin".into(),
                state: None,
                postal_code: "78701".into(),
            }),
            preferred_language: Language::default(),
            time_zone: None,
            sms_consent: SmsConsent::default(),
        }
    }

    #[test]
    fn a_plan_within_the_limits_passes() {
        check_plan(
            &plan(&[120_000, 45_000]),
            &PlanId::new("p1"),
            &PatientId::new("pat1"),
            &PlanLimits::default(),
        )
        .unwrap();
    }

    #[test]
    fn a_trillion_dollar_fee_names_the_field() {
        let e = check_plan(
            &plan(&[120_000, 100_000_000_000_000]),
            &PlanId::new("p1"),
            &PatientId::new("pat1"),
            &PlanLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "plan.procedures[1].fee");
        assert!(!e.to_string().contains("100000000000000"));
    }

    #[test]
    fn fees_each_under_the_ceiling_but_together_over_it_are_refused() {
        let limits = PlanLimits {
            max_plan_cents: 100_000,
            ..PlanLimits::default()
        };
        let e = check_plan(
            &plan(&[60_000, 60_000]),
            &PlanId::new("p1"),
            &PatientId::new("pat1"),
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.field, "plan.procedures");
    }

    #[test]
    fn another_plan_or_patient_than_asked_is_refused() {
        let p = plan(&[100]);
        let e = check_plan(
            &p,
            &PlanId::new("p2"),
            &PatientId::new("pat1"),
            &PlanLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "plan.id");
        let e = check_plan(
            &p,
            &PlanId::new("p1"),
            &PatientId::new("pat2"),
            &PlanLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "plan.patient_id");
        let e = clean_contact(
            &contact("Ann"),
            &PatientId::new("pat2"),
            &PlanLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "patient.id");
    }

    #[test]
    fn control_characters_are_removed_and_long_names_refused() {
        let c = clean_contact(
            &contact("An\u{0}n\r\nBcc: x\u{202E}"),
            &PatientId::new("pat1"),
            &PlanLimits::default(),
        )
        .unwrap();
        assert_eq!(c.first_name, "AnnBcc: x");
        let e = clean_contact(
            &contact(&"A".repeat(10_000)),
            &PatientId::new("pat1"),
            &PlanLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "patient.first_name");
        let mut many = contact("Ann");
        many.address.as_mut().unwrap().lines = vec!["x".into(); 40];
        let e = clean_contact(&many, &PatientId::new("pat1"), &PlanLimits::default()).unwrap_err();
        assert_eq!(e.field, "patient.address.lines");
        let e = clean_contact(
            &contact("\u{7}\u{7}"),
            &PatientId::new("pat1"),
            &PlanLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.problem, "empty");
    }

    #[test]
    fn the_fingerprint_follows_what_is_financed_only() {
        let a = plan(&[120_000, 45_000]);
        let mut touched = a.clone();
        touched.revision = "2026-02-01T00:00:00Z".into();
        touched.accepted_at = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        touched.procedures.reverse();
        assert_eq!(fingerprint(&a), fingerprint(&touched));
        let mut fee = a.clone();
        fee.procedures[0].fee = Money::usd(120_001);
        assert_ne!(fingerprint(&a), fingerprint(&fee));
        let mut estimate = a.clone();
        estimate.procedures[1].secondary_estimate = Some(Money::usd(1));
        assert_ne!(fingerprint(&a), fingerprint(&estimate));
        let mut patient = a.clone();
        patient.patient_id = PatientId::new("pat2");
        assert_ne!(fingerprint(&a), fingerprint(&patient));
        let mut added = a.clone();
        added.procedures.push(added.procedures[0].clone());
        assert_ne!(fingerprint(&a), fingerprint(&added));
    }
}
