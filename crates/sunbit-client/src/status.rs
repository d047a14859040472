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
/// `requested` is the amount Chairside asked Sunbit to finance (the application's amount). Every
/// amount is judged against it, never against `purchaseAmountEntered` (what the patient typed on
/// Sunbit's page, which may be less or more than asked). A prequalification is not financing: only
/// a completed purchase is.
///
/// | [`PurchaseStatus`] | Decision | Why |
/// |---|---|---|
/// | `Completed` | the purchase amount (else the approval amount) against `requested`: at least it is [`Decision::Approved`], less is a [`Decision::PartiallyApproved`] counteroffer whose gap the practice collects another way | The purchase went through: that is what Sunbit finances. |
/// | `Incomplete`, valid-until passed | `Expired` | The offer lapsed. |
/// | `Incomplete` with an approval amount | [`Decision::Prequalified`] up to it | Prequalified; nothing is financed until the patient checks out. |
/// | `Incomplete` otherwise | `Pending` | The patient has not finished. |
/// | `Voided` | `Expired` | Voided (by us or the practice): no credit decision, so no decline. |
/// | `Unknown(_)` | `Unknown(raw)` | Kept verbatim for staff. |
///
/// A completed purchase without any amount is `Unknown(raw)`: we never guess an amount.
pub fn purchase_decision(
    purchase: &Purchase,
    requested: Money,
    now: DateTime<Utc>,
    poll_after: Option<Duration>,
) -> Decision {
    let raw = purchase.status.as_str().to_owned();
    let valid_until = purchase.valid_until.as_ref().and_then(|v| v.until());
    let offer_of = |amount: Money| offer(amount, purchase.purchase_id.as_ref(), valid_until);
    match &purchase.status {
        PurchaseStatus::Completed => match purchase.purchase_amount.or(purchase.approval_amount) {
            Some(amount) => {
                // The plan the patient chose at checkout: its term and APR, as Sunbit reports
                // them (an APR that does not read as a percentage is left out).
                let mut offer = offer_of(amount.0);
                offer.term_months = purchase.term.filter(|m| *m > 0);
                offer.apr_bps = purchase
                    .apr
                    .as_deref()
                    .and_then(financing_core::parse::percent_bps);
                Decision::from_approval(offer, requested, raw)
            }
            None => Decision::Unknown(raw),
        },
        PurchaseStatus::Incomplete if valid_until.is_some_and(|v| v < now) => {
            Decision::Expired { raw_status: raw }
        }
        PurchaseStatus::Incomplete => match purchase.approval_amount {
            Some(a) => Decision::from_prequalification(offer_of(a.0), requested, raw),
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
