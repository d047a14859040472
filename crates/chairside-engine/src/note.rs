//! What Chairside writes back and tells: the ledger note and the summary's numbers, as pure
//! functions of the workflow state. No PHI beyond what the practice's own ledger holds; no
//! procedure codes anywhere.

use chrono::{DateTime, Utc};
use financing_core::{IntervalUnit, Money};

use crate::ports::SummaryContent;
use chairside_workflow::{NoteKind, SettlementState, Status, WorkflowState};

/// The marker that identifies one of our notes in the practice system, so a retried write finds
/// the note instead of writing a second (check-then-act). Letters, digits, `_` and `.` only: every
/// practice system's adapter embeds it as `[chairside:<marker>]`.
pub fn note_marker(state: &WorkflowState, seq: u64) -> String {
    format!("{}.{seq}", state.id)
}

fn money(m: Option<Money>) -> String {
    m.map_or_else(|| "-".into(), |m| m.to_string())
}

/// The structured ledger note: lender, amounts, Stripe ids, timestamps. The adapter adds the marker.
pub fn ledger_note(state: &WorkflowState, note: &NoteKind, now: DateTime<Utc>) -> String {
    let mut lines = Vec::new();
    match note {
        NoteKind::Payment { stripe_id, amount } => {
            lines.push(format!(
                "Chairside: payment of {amount} received through Stripe ({stripe_id})."
            ));
        }
        NoteKind::Reversal {
            stripe_id,
            amount,
            dispute,
            reversed,
            refund_id,
        } => {
            lines.push(match (dispute, reversed, refund_id) {
                (true, _, _) => format!(
                    "Chairside: the patient disputed a card payment of {amount} ({stripe_id})."
                ),
                (false, Some(now), Some(refund)) => format!(
                    "Chairside: refund of {now} through Stripe ({refund} of {stripe_id}; {amount} refunded in total)."
                ),
                (false, Some(now), None) => format!(
                    "Chairside: refund of {now} through Stripe ({stripe_id}; {amount} refunded in total)."
                ),
                (false, None, _) => {
                    format!("Chairside: refund of {amount} in total through Stripe ({stripe_id}).")
                }
            });
        }
        NoteKind::Settlement {
            lender,
            amount,
            state: settlement,
        } => {
            let reference = format!("{}-{lender}", state.id);
            let lender = state.lender_name(lender);
            lines.push(match settlement {
                SettlementState::Scheduled { day } => format!(
                    "Chairside: {lender} charge of {amount} scheduled for the treatment date {day} (reference {reference})."
                ),
                SettlementState::Charging { day } => format!(
                    "Chairside: {lender} charge of {amount} due {day} is running (reference {reference})."
                ),
                SettlementState::Charged { purchase, at } => format!(
                    "Chairside: {lender} charged {amount} on the patient's account (purchase {purchase}, reference {reference}) at {}.",
                    at.format("%Y-%m-%d %H:%M UTC")
                ),
                SettlementState::Manual { day: Some(day) } => format!(
                    "Chairside: {lender} charge of {amount} is for staff to run in the lender's portal on {day} (reference {reference})."
                ),
                SettlementState::Manual { day: None } => format!(
                    "Chairside: {lender} charge of {amount} is for staff to run in the lender's portal on the treatment day (no treatment date on the plan; reference {reference})."
                ),
                SettlementState::HandledByStaff { .. } => format!(
                    "Chairside: {lender} charge of {amount} run by staff (reference {reference})."
                ),
                SettlementState::Failed { reason } => format!(
                    "Chairside: {lender} charge of {amount} FAILED: {reason}. Staff have a task (reference {reference})."
                ),
            });
        }
        NoteKind::Outcome => {
            let headline = match (state.status, &state.result, &state.staff_task) {
                (Status::Cancelled, _, _) => {
                    "financing cancelled: the plan was withdrawn or staff cancelled".to_owned()
                }
                (_, _, Some(task)) if state.status == Status::WaitingOnStaff => {
                    format!("needs staff: {}", task.reason)
                }
                (_, Some(result), _) => format!(
                    "financing arranged ({})",
                    state.outcome_label().unwrap_or_else(|| result.path.clone())
                ),
                _ => "no financing needed".to_owned(),
            };
            lines.push(format!("Chairside: {headline}."));
            if let Some(split) = &state.split {
                lines.push(format!(
                    "Treatment {}; insurance estimate {}; patient portion {}.",
                    split.total, split.insurance, split.patient_portion
                ));
            }
            if let Some(result) = &state.result {
                if let Some((lender, amount)) = &result.financed {
                    lines.push(format!(
                        "Financed by {}: {amount}.",
                        state.lender_name(lender)
                    ));
                    if let Some(terms) = state.financed_offer().and_then(terms_line) {
                        lines.push(terms);
                    }
                }
                if !result.deposit.is_zero() {
                    lines.push(format!("Deposit: {}.", result.deposit));
                }
                if let Some(offer) = &result.in_house {
                    let unit = match offer.interval.unit {
                        IntervalUnit::Day => "day",
                        IntervalUnit::Week => "week",
                        IntervalUnit::Month => "month",
                    };
                    lines.push(format!(
                        "In-house plan: {} in {} installments every {} {unit}(s), first {}.",
                        offer.total,
                        offer.installments.len(),
                        offer.interval.count,
                        money(offer.installments.first().copied())
                    ));
                }
            }
            let lenders: Vec<String> = state
                .attempts
                .iter()
                .map(|a| format!("{} {}", state.lender_name(&a.lender), a.outcome.label()))
                .collect();
            if !lenders.is_empty() {
                lines.push(format!("Lenders asked: {}.", lenders.join(", ")));
            }
            let s = &state.stripe;
            let ids: Vec<&str> = [
                s.customer_id.as_deref(),
                s.checkout_session_id.as_deref(),
                s.schedule_id.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !ids.is_empty() {
                lines.push(format!("Stripe: {}.", ids.join(", ")));
            }
            lines.push(format!(
                "Accepted {}; noted {}.",
                state.accepted_at.format("%Y-%m-%d %H:%M UTC"),
                now.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
    }
    lines.join("\n")
}

/// `Terms as reported by the lender: promotion ...; 12 months; APR 0.00%.` for the ledger
/// (staff-facing; the patient's words are in `messaging`). `None` when the lender reported none.
fn terms_line(offer: &financing_core::Offer) -> Option<String> {
    let t = crate::ports::LenderTerms::of(offer)?;
    let mut parts = Vec::new();
    if let Some(p) = &t.promotion {
        parts.push(p.clone());
    }
    if let Some(m) = t.term_months {
        parts.push(format!("{m} months"));
    }
    if let Some(bps) = t.apr_bps {
        parts.push(format!("APR {}.{:02}%", bps / 100, bps % 100));
    }
    Some(format!(
        "Terms as the lender reported them: {}.",
        parts.join("; ")
    ))
}

/// The practice's local date at `now`.
pub fn local_date(now: DateTime<Utc>, tz: chrono_tz::Tz) -> chrono::NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// The summary's numbers, from the state. `now` is read in the practice's time zone `tz`: a date
/// the patient reads is the practice's local date, never UTC's (after 5 pm in California, UTC is
/// already tomorrow).
pub fn summary(
    state: &WorkflowState,
    page_link: String,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Option<SummaryContent> {
    let split = state.split?;
    let result = state.result.as_ref();
    let in_house = result.and_then(|r| r.in_house.as_ref());
    // The schedule starts when it is created: the first installment is invoiced that day.
    let first_installment =
        in_house.and_then(|o| Some((*o.installments.first()?, local_date(now, tz))));
    Some(SummaryContent {
        total: split.total,
        insurance: split.insurance,
        patient_portion: split.patient_portion,
        financed: result
            .and_then(|r| r.financed.clone())
            .map(|(l, m)| (state.lender_name(&l), m)),
        deposit: result.map_or(Money::zero(split.total.currency()), |r| r.deposit),
        deposit_link: state.stripe.checkout_url.clone(),
        first_installment,
        installments: in_house.map(|o| o.installments.len() as u32),
        installment_interval: in_house.map(|o| o.interval),
        page_link,
        lender_terms: state
            .financed_offer()
            .and_then(crate::ports::LenderTerms::of),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evening_in_california_is_still_today_there_not_utcs_tomorrow() {
        // 18:30 in Los Angeles on 1 June is 01:30 UTC on 2 June.
        let now = DateTime::parse_from_rfc3339("2026-06-02T01:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            local_date(now, chrono_tz::America::Los_Angeles),
            chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
        );
        assert_eq!(
            local_date(now, chrono_tz::America::New_York),
            chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
        );
        assert_eq!(
            local_date(now, chrono_tz::UTC),
            chrono::NaiveDate::from_ymd_opt(2026, 6, 2).unwrap()
        );
    }
}
