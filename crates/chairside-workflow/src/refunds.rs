//! What a refund reverses in the practice's ledger: pure, no I/O.
//!
//! Stripe's `charge.refunded` carries the charge with `amount_refunded`, the total refunded so
//! far; at our pinned API version it does not list the refunds themselves. Every refund raises
//! that total, so `{charge}:{total}` names one refund: the one that brought the charge to that
//! total. What to reverse is the rise over the highest total already reversed for the charge.
//! That holds when deliveries repeat (nothing new) and when they arrive out of order (the later
//! total reverses both refunds at once; the earlier one, arriving after, is already covered).

use financing_core::Money;

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

/// The highest total already reversed for `charge`, from `handled` (`{id}:{minor}` entries;
/// entries of other charges and disputes are skipped).
pub fn reversed_so_far(handled: &[String], charge: &str) -> i64 {
    handled
        .iter()
        .filter_map(|h| {
            let (id, minor) = h.rsplit_once(':')?;
            (id == charge).then(|| minor.parse::<i64>().ok()).flatten()
        })
        .max()
        .unwrap_or(0)
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

    #[test]
    fn a_zero_total_reverses_nothing() {
        assert_eq!(refund_to_reverse(&[], "ch_1", Money::usd(0)), None);
    }
}
