//! The lender stand-ins and what they share: persona lookup, the amount a patient asks for, and
//! the compliance checks on what lenders receive.

pub(crate) mod carecredit;
pub(crate) mod sunbit;

use serde_json::Value;

use crate::fault::System;
use crate::hub::Hub;
use crate::persona::{PatientKey, Persona};
use crate::world::PlanStatus;

/// True for a CDT procedure code (`D` and four digits) standing alone.
fn is_cdt(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() == 5 && (b[0] == b'D' || b[0] == b'd') && b[1..].iter().all(u8::is_ascii_digit)
}

fn contains_cdt(v: &Value) -> bool {
    match v {
        Value::String(s) => s.split(|c: char| !c.is_ascii_alphanumeric()).any(is_cdt),
        Value::Array(items) => items.iter().any(contains_cdt),
        Value::Object(map) => map.values().any(contains_cdt),
        _ => false,
    }
}

/// Records a violation when a lender request carries clinical data (a CDT code anywhere).
pub(crate) fn check_clinical(hub: &Hub, system: System, body: &Value) {
    if contains_cdt(body) {
        hub.world.add_violation(
            system,
            "clinical_data_to_lender",
            "a procedure code was sent to a lender",
        );
    }
}

/// Records a violation when identity was sent for a patient whose state forbids prefill.
pub(crate) fn check_prefill(
    hub: &Hub,
    system: System,
    patient: Option<PatientKey>,
    state: Option<&str>,
) {
    let restricted_state =
        state.is_some_and(|s| s.eq_ignore_ascii_case("CA") || s.eq_ignore_ascii_case("NY"));
    let persona_ca = patient.and_then(|k| hub.world.patient(k)).is_some_and(|p| {
        p.seed.persona == Persona::CaliforniaPractice
            || p.seed.address.state.eq_ignore_ascii_case("CA")
            || p.seed.address.state.eq_ignore_ascii_case("NY")
    });
    if restricted_state || persona_ca {
        hub.world.add_violation(
            system,
            "prefill_in_restricted_state",
            "patient identity was sent to a lender for a California or New York patient",
        );
    }
}

/// The patient's persona; `InstantApproval` for a patient the sandbox does not know.
pub(crate) fn persona(hub: &Hub, patient: Option<PatientKey>) -> Persona {
    patient
        .and_then(|k| hub.world.persona_of(k))
        .unwrap_or(Persona::InstantApproval)
}

/// What the patient owes on their latest plan (accepted ones first), as the practice system shows
/// it and so as the patient types it on a lender's page, in cents: the fee minus the insurance
/// estimates, or the whole fee when the estimates exceed it or the practice system reports none
/// (the NexHealth stand-in, like NexHealth, carries fees only). $1,000 when unknown.
pub(crate) fn patient_portion(hub: &Hub, patient: Option<PatientKey>) -> i64 {
    let Some(key) = patient else {
        return 100_000;
    };
    let mut plans: Vec<_> = hub
        .world
        .plans(None)
        .into_iter()
        .filter(|p| p.patient == key)
        .collect();
    plans.sort_by_key(|p| (p.status == PlanStatus::Accepted, p.modified));
    let Some(plan) = plans.last() else {
        return 100_000;
    };
    let fee: i64 = plan.seed.procedures.iter().map(|p| p.fee.minor()).sum();
    if plan.pms == crate::persona::Pms::NexHealth {
        return fee;
    }
    let ins: i64 = plan
        .seed
        .procedures
        .iter()
        .map(|p| p.primary_estimate.minor() + p.secondary_estimate.minor())
        .sum();
    if fee - ins > 0 { fee - ins } else { fee }
}

/// Cents as a decimal string (`"950.00"`).
pub(crate) fn decimal(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, (cents % 100).abs())
}

/// A decimal string as cents.
pub(crate) fn cents(text: &str) -> Option<i64> {
    financing_core::Money::parse(text.trim(), financing_core::Currency::Usd)
        .ok()
        .map(|m| m.minor())
}

/// Reads an amount that may be a JSON string or number.
pub(crate) fn amount_of(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => cents(s),
        Value::Number(n) => cents(&n.to_string()),
        _ => None,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A minimal hosted application page with one form.
pub(crate) fn page(title: &str, lines: &[String], action: Option<&str>) -> String {
    let mut body = format!("<h1>{}</h1>\n", escape(title));
    for l in lines {
        body.push_str(&format!("<p>{}</p>\n", escape(l)));
    }
    if let Some(action) = action {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}\">\n\
             <button name=\"choice\" value=\"persona\">Submit application</button>\n\
             <button name=\"choice\" value=\"approve\">Approve (sandbox)</button>\n\
             <button name=\"choice\" value=\"decline\">Decline (sandbox)</button>\n\
             <button name=\"choice\" value=\"leave\">Leave</button>\n</form>\n",
            escape(action)
        ));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn procedure_codes_are_found_anywhere_in_a_body() {
        assert!(contains_cdt(&json!({"memo": "crown D2740 on #30"})));
        assert!(contains_cdt(&json!({"items": [{"code": "D2950"}]})));
        assert!(!contains_cdt(
            &json!({"memo": "Dental treatment", "amount": "950.00", "id": "D27401"})
        ));
    }
}
