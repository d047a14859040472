//! What a refund reverses in the practice's ledger: pure, no I/O.
//!
//! Stripe's `charge.refunded` carries the charge with `amount_refunded`, the total refunded so
//! far; at our pinned API version it does not list the refunds themselves. Every refund raises
//! that total, so `{charge}:{total}` names one refund: the one that brought the charge to that
//! total. What to reverse is the rise over the highest total already reversed for the charge.
//! That holds when deliveries repeat (nothing new) and when they arrive out of order (the later
//! total reverses both refunds at once; the earlier one, arriving after, is already covered).
//!
//! When the runner could list the charge's refunds (`GET /v1/refunds?charge=`), each refund is
//! reversed by its own id instead ([`refunds_by_id`]): a repeat or a late event reverses nothing,
//! several partial refunds reverse one each. The cumulative rule stays the fallback when the
//! lookup fails or the list does not yet show what the event says was refunded. Both record in
//! `reversals_handled`, replayed in order ([`reversed_so_far`]), so the two never reverse the same
//! money twice: `{charge}:{total}` (cumulative) and `{charge}:{refund}:{amount}` (by id).

use financing_core::Money;
use serde::{Deserialize, Serialize};

/// One refund of a charge, as Stripe lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedRefund {
    /// `re_…`.
    pub id: String,
    /// Its amount.
    pub amount: Money,
    /// It gives money back (pending or succeeded); a failed or canceled refund does not.
    pub returns_money: bool,
}

/// One refund to reverse in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundReversal {
    /// Keys the reversal in the practice system and in `reversals_handled`:
    /// `{charge}:{total refunded, in minor units}`.
    pub key: String,
    /// What to reverse now: the total minus what was reversed before (above zero).
    pub amount: Money,
}

/// The key of a refund: the charge and the total refunded with it.
pub fn refund_key(charge: &str, refunded_so_far: Money) -> String {
    format!("{charge}:{}", refunded_so_far.minor())
}

/// What was already reversed for `charge`, replaying `handled` in order: a cumulative entry
/// (`{charge}:{total}`) brings it to that total, a refund reversed by id
/// (`{charge}:{refund}:{amount}`) adds its amount. Entries of other charges and disputes are
/// skipped.
pub fn reversed_so_far(handled: &[String], charge: &str) -> i64 {
    ledger(handled, charge).0
}

/// `(reversed so far, reversed by id, the ids)` for `charge`.
fn ledger<'a>(handled: &'a [String], charge: &str) -> (i64, i64, Vec<&'a str>) {
    let (mut total, mut by_id, mut ids) = (0_i64, 0_i64, Vec::new());
    for h in handled {
        let parts: Vec<&str> = h.split(':').collect();
        match parts[..] {
            [c, t] if c == charge => {
                if let Ok(t) = t.parse::<i64>() {
                    total = total.max(t);
                }
            }
            [c, refund, a] if c == charge => {
                if let Ok(a) = a.parse::<i64>() {
                    total += a;
                    by_id += a;
                    ids.push(refund);
                }
            }
            _ => {}
        }
    }
    (total, by_id, ids)
}

/// The `reversals_handled` entry of a refund reversed by its id.
pub fn handled_by_id(charge: &str, refund: &str, amount: Money) -> String {
    format!("{charge}:{refund}:{}", amount.minor())
}

/// What the charge's listed refunds (`listed`, in Stripe's order: newest first) reverse, each by
/// its id, given the reversals already `handled`; `None` when the list cannot be trusted for this
/// event (it shows less money back than `refunded_so_far`: the cumulative rule decides then).
/// Money the cumulative rule already reversed covers the oldest refunds first.
pub fn refunds_by_id(
    handled: &[String],
    charge: &str,
    refunded_so_far: Money,
    listed: &[ListedRefund],
) -> Option<Vec<RefundReversal>> {
    let returned: i64 = listed
        .iter()
        .filter(|r| r.returns_money)
        .map(|r| r.amount.minor())
        .sum();
    if returned < refunded_so_far.minor() {
        return None;
    }
    let (total, by_id, ids) = ledger(handled, charge);
    let mut covered = total - by_id;
    let mut out = Vec::new();
    for r in listed.iter().rev().filter(|r| r.returns_money) {
        if ids.contains(&r.id.as_str()) {
            continue;
        }
        let minor = r.amount.minor();
        if covered >= minor {
            covered -= minor;
            continue;
        }
        let amount = Money::new(minor - covered, r.amount.currency());
        covered = 0;
        out.push(RefundReversal {
            key: r.id.clone(),
            amount,
        });
    }
    Some(out)
}

/// What a `charge.refunded` showing `refunded_so_far` on `charge` reverses, given the reversals
/// already `handled`; `None` when it adds nothing (a repeat, or an older total arriving late).
pub fn refund_to_reverse(
    handled: &[String],
    charge: &str,
    refunded_so_far: Money,
) -> Option<RefundReversal> {
    let before = reversed_so_far(handled, charge);
    let now = refunded_so_far.minor();
    (now > before).then(|| RefundReversal {
        key: refund_key(charge, refunded_so_far),
        amount: Money::new(now - before, refunded_so_far.currency()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handled(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_first_refund_reverses_what_was_refunded() {
        let r = refund_to_reverse(&[], "ch_1", Money::usd(5_000)).unwrap();
        assert_eq!(r.key, "ch_1:5000");
        assert_eq!(r.amount, Money::usd(5_000));
    }

    #[test]
    fn a_further_partial_refund_reverses_only_the_rise() {
        let done = handled(&["ch_1:5000"]);
        let r = refund_to_reverse(&done, "ch_1", Money::usd(7_500)).unwrap();
        assert_eq!(r.key, "ch_1:7500");
        assert_eq!(r.amount, Money::usd(2_500));
    }

    #[test]
    fn a_repeat_or_an_older_total_arriving_late_reverses_nothing() {
        let done = handled(&["ch_1:5000", "ch_1:7500"]);
        assert_eq!(refund_to_reverse(&done, "ch_1", Money::usd(7_500)), None);
        assert_eq!(refund_to_reverse(&done, "ch_1", Money::usd(5_000)), None);
    }

    #[test]
    fn out_of_order_totals_reverse_the_whole_once() {
        // The second refund's event (total $100) arrives before the first's (total $40).
        let mut done = Vec::new();
        let first = refund_to_reverse(&done, "ch_1", Money::usd(10_000)).unwrap();
        done.push(first.key.clone());
        let late = refund_to_reverse(&done, "ch_1", Money::usd(4_000));
        assert_eq!(first.amount, Money::usd(10_000));
        assert_eq!(late, None);
    }

    #[test]
    fn other_charges_and_disputes_do_not_count() {
        let done = handled(&["ch_2:9000", "du_1:5000", "ch_10:3000", "garbage"]);
        let r = refund_to_reverse(&done, "ch_1", Money::usd(1_000)).unwrap();
        assert_eq!(r.amount, Money::usd(1_000));
        assert_eq!(reversed_so_far(&done, "ch_2"), 9_000);
    }

    fn listed(entries: &[(&str, i64, bool)]) -> Vec<ListedRefund> {
        entries
            .iter()
            .map(|(id, a, ok)| ListedRefund {
                id: (*id).to_owned(),
                amount: Money::usd(*a),
                returns_money: *ok,
            })
            .collect()
    }

    /// Applies what `refunds_by_id` returns as the machine does.
    fn apply(done: &mut Vec<String>, out: &[RefundReversal]) {
        for r in out {
            done.push(handled_by_id("ch_1", &r.key, r.amount));
        }
    }

    #[test]
    fn several_partial_refunds_reverse_one_each_by_id_and_a_repeat_nothing() {
        let mut done = Vec::new();
        let first = refunds_by_id(
            &done,
            "ch_1",
            Money::usd(3_000),
            &listed(&[("re_1", 3_000, true)]),
        )
        .unwrap();
        assert_eq!(
            first,
            vec![RefundReversal {
                key: "re_1".into(),
                amount: Money::usd(3_000)
            }]
        );
        apply(&mut done, &first);
        let both = listed(&[("re_2", 2_000, true), ("re_1", 3_000, true)]);
        let second = refunds_by_id(&done, "ch_1", Money::usd(5_000), &both).unwrap();
        assert_eq!(
            second,
            vec![RefundReversal {
                key: "re_2".into(),
                amount: Money::usd(2_000)
            }]
        );
        apply(&mut done, &second);
        // The first event again, or late: nothing.
        assert_eq!(
            refunds_by_id(&done, "ch_1", Money::usd(3_000), &both),
            Some(vec![])
        );
        assert_eq!(reversed_so_far(&done, "ch_1"), 5_000);
    }

    #[test]
    fn one_event_after_two_refunds_reverses_each_by_its_id_oldest_first() {
        let both = listed(&[("re_2", 2_000, true), ("re_1", 3_000, true)]);
        let out = refunds_by_id(&[], "ch_1", Money::usd(5_000), &both).unwrap();
        let keys: Vec<_> = out.iter().map(|r| (r.key.as_str(), r.amount)).collect();
        assert_eq!(
            keys,
            [("re_1", Money::usd(3_000)), ("re_2", Money::usd(2_000))]
        );
    }

    #[test]
    fn failed_refunds_reverse_nothing_and_a_list_short_of_the_total_falls_back() {
        let list = listed(&[("re_2", 2_000, false), ("re_1", 3_000, true)]);
        let out = refunds_by_id(&[], "ch_1", Money::usd(3_000), &list).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, "re_1");
        // The event says $50 went back; the list shows $30: not trusted.
        assert_eq!(refunds_by_id(&[], "ch_1", Money::usd(5_000), &list), None);
    }

    #[test]
    fn money_reversed_by_the_cumulative_fallback_is_not_reversed_again_by_id_and_back() {
        // The first refund's lookup failed: reversed by the cumulative rule.
        let mut done = vec![refund_key("ch_1", Money::usd(3_000))];
        // The second event lists both: only the new one is reversed.
        let both = listed(&[("re_2", 2_000, true), ("re_1", 3_000, true)]);
        let out = refunds_by_id(&done, "ch_1", Money::usd(5_000), &both).unwrap();
        assert_eq!(
            out,
            vec![RefundReversal {
                key: "re_2".into(),
                amount: Money::usd(2_000)
            }]
        );
        apply(&mut done, &out);
        // A third refund whose lookup fails: the cumulative rule reverses only the rise.
        let r = refund_to_reverse(&done, "ch_1", Money::usd(6_000)).unwrap();
        assert_eq!(r.amount, Money::usd(1_000));
        done.push(r.key);
        assert_eq!(reversed_so_far(&done, "ch_1"), 6_000);
        // And the id rule after it reverses nothing already covered.
        let three = listed(&[
            ("re_3", 1_000, true),
            ("re_2", 2_000, true),
            ("re_1", 3_000, true),
        ]);
        assert_eq!(
            refunds_by_id(&done, "ch_1", Money::usd(6_000), &three),
            Some(vec![])
        );
    }

    #[test]
    fn a_zero_total_reverses_nothing() {
        assert_eq!(refund_to_reverse(&[], "ch_1", Money::usd(0)), None);
    }
}
