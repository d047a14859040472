//! From a purchase to a [`Decision`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use financing_core::{Decision, LenderId, LenderReference, Money, Offer};

use crate::ids::PurchaseId;
use crate::wire::{Purchase, PurchaseStatus};

/// The lender id this crate reports (`sunbit`).
pub const LENDER_ID: &str = "sunbit";

/// The raw status [`Decision::Pending`] carries when Sunbit has no purchase for our reference yet
/// (the patient has not opened the link). Made by this client, not sent by Sunbit.
pub const NO_PURCHASE_YET: &str = "NO_PURCHASE_YET";

/// Maps a purchase to a [`Decision`], keeping Sunbit's raw status.
///
/// The amount asked for is the purchase's entered amount when Sunbit reports one, else
/// `requested`; an approval below it is a [`Decision::PartiallyApproved`] counteroffer (via
/// [`Decision::from_approval`]). The offer lapses at the purchase's valid-until date.
///
/// | [`PurchaseStatus`] | Decision | Why |
/// |---|---|---|
/// | `Completed` | approval of the approval amount, else the purchase amount | The purchase went through. |
/// | `Incomplete`, valid-until passed | `Expired` | The offer lapsed. |
/// | `Incomplete` with an approval amount | approval of it | Prequalified; the patient has not checked out yet. |
/// | `Incomplete` otherwise | `Pending` | The patient has not finished. |
/// | `Voided` | `Expired` | Voided (by us or the practice): no credit decision, so no decline. |
/// | `Unknown(_)` | `Unknown(raw)` | Kept verbatim for staff. |
///
/// An approval without any amount is `Unknown(raw)`: we never guess an amount.
pub fn purchase_decision(
    purchase: &Purchase,
    requested: Money,
    now: DateTime<Utc>,
    poll_after: Option<Duration>,
) -> Decision {
    let raw = purchase.status.as_str().to_owned();
    let valid_until = purchase.valid_until.as_ref().and_then(|v| v.until());
    let requested = purchase.purchase_amount_entered.map_or(requested, |a| a.0);
    let approve = |amount: Option<Money>| match amount {
        Some(amount) => Decision::from_approval(
            offer(amount, purchase.purchase_id.as_ref(), valid_until),
            requested,
            raw.clone(),
        ),
        None => Decision::Unknown(raw.clone()),
    };
    match &purchase.status {
        PurchaseStatus::Completed => approve(
            purchase
                .approval_amount
                .or(purchase.purchase_amount)
                .map(|a| a.0),
        ),
        PurchaseStatus::Incomplete if valid_until.is_some_and(|v| v < now) => {
            Decision::Expired { raw_status: raw }
        }
        PurchaseStatus::Incomplete => match purchase.approval_amount {
            Some(a) => approve(Some(a.0)),
            None => Decision::Pending {
                poll_after,
                raw_status: raw,
            },
        },
        PurchaseStatus::Voided => Decision::Expired { raw_status: raw },
        PurchaseStatus::Unknown(_) => Decision::Unknown(raw),
    }
}

pub(crate) fn offer(
    amount: Money,
    purchase: Option<&PurchaseId>,
    expires_at: Option<DateTime<Utc>>,
) -> Offer {
    Offer {
        lender: LenderId::new(LENDER_ID),
        amount,
        promotion: None,
        term_months: None,
        apr_bps: None,
        expires_at,
        lender_reference: purchase.map(|p| LenderReference::new(p.as_str())),
    }
}
