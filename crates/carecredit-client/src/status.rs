//! From a pullback to a [`Decision`].

use std::time::Duration;

use financing_core::{Decision, LenderId, LenderReference, Money, Offer};

use crate::wire::{Pullback, PullbackStatus};

/// The lender id this crate reports (`carecredit`).
pub const LENDER_ID: &str = "carecredit";

/// Maps a pullback to a [`Decision`], keeping CareCredit's raw status.
///
/// `requested` is the amount asked for: an approval below it is a
/// [`Decision::PartiallyApproved`] counteroffer (via [`Decision::from_approval`]).
/// `poll_after` goes into [`Decision::Pending`].
///
/// | [`PullbackStatus`] | Decision | Why |
/// |---|---|---|
/// | `Created` | `Pending` | The patient has not finished the application. |
/// | `Pending` | [`Decision::UnderReview`] | The patient submitted; CareCredit is reviewing (pending results expire after 24 h, then `Expired`). |
/// | `Expired`, `ExpiredBatch` | `Expired` | The session or batch result lapsed. |
/// | `Cancelled` | `Expired` | Withdrawn without a credit decision, so it is no decline. |
/// | `Completed` | approval of the application's credit line, else the available credit, else the purchase's amount, against `requested` (below it: a counteroffer) | The application or purchase went through. |
/// | `PreApproved` | [`Decision::Prequalified`] up to the QuickScreen pre-approval amount | A soft-pull pre-approval is not financing: the patient still applies. |
/// | `Declined`, `AccountNotFoundQs` | `Declined` | Both read "Refer Patient to Credit Application": not prequalified on the soft pull, so the waterfall moves on. |
/// | `AccountFound` | `Cardholder` with the available credit | An existing cardholder; the waterfall checks whether it covers the amount. |
/// | `CallForAuth`, `DupQs`, `BatchError` | [`Decision::NeedsStaff`] with what to do | No decision: a person must call CareCredit (quoting the session) or look at the batch; the orchestrator holds the waterfall and hands the instruction to staff. |
/// | `Unknown(_)` | `Unknown(raw)` | Kept verbatim for staff. |
///
/// Field names on the wire are in [`Pullback`].
///
/// An approval status without any amount is `Unknown(raw)` too: we never guess an amount.
pub fn pullback_decision(
    pullback: &Pullback,
    requested: Money,
    poll_after: Option<Duration>,
) -> Decision {
    let raw = pullback.status.as_str().to_owned();
    let approval = |amount: Option<Money>| match amount {
        Some(amount) => Decision::from_approval(offer(pullback, amount), requested, raw.clone()),
        None => Decision::Unknown(raw.clone()),
    };
    match &pullback.status {
        PullbackStatus::Created => Decision::Pending {
            poll_after,
            raw_status: raw,
        },
        PullbackStatus::Pending => Decision::UnderReview {
            poll_after,
            raw_status: raw,
        },
        PullbackStatus::Expired | PullbackStatus::ExpiredBatch | PullbackStatus::Cancelled => {
            Decision::Expired { raw_status: raw }
        }
        PullbackStatus::Completed => {
            let credit_line = pullback
                .application_details
                .as_ref()
                .and_then(|a| a.credit_line);
            let purchase = pullback
                .transaction_details
                .as_ref()
                .and_then(|t| t.transaction_amount);
            approval(
                credit_line
                    .or(pullback.available_credit)
                    .or(purchase)
                    .map(|a| a.0),
            )
        }
        PullbackStatus::PreApproved => match pullback
            .quick_screen
            .as_ref()
            .and_then(|q| q.pre_approval_amount)
        {
            Some(amount) => {
                Decision::from_prequalification(offer(pullback, amount.0), requested, raw)
            }
            None => Decision::Unknown(raw),
        },
        PullbackStatus::Declined | PullbackStatus::AccountNotFoundQs => Decision::Declined {
            reason: None,
            raw_status: raw,
        },
        PullbackStatus::AccountFound => match pullback.available_credit {
            Some(credit) => Decision::Cardholder {
                available_credit: credit.0,
                lender_reference: pullback
                    .lookup_details
                    .as_ref()
                    .and_then(|l| l.account_token.as_deref())
                    .map(LenderReference::new),
            },
            None => Decision::Unknown(raw),
        },
        PullbackStatus::CallForAuth | PullbackStatus::DupQs | PullbackStatus::BatchError => {
            Decision::NeedsStaff {
                instruction: instruction(pullback),
                raw_status: raw,
            }
        }
        PullbackStatus::Unknown(_) => Decision::Unknown(raw),
    }
}

/// What staff must do for a status that needs a person. Ids only: the session and our partner
/// transaction id, which CareCredit's agents can find the application by.
fn instruction(pullback: &Pullback) -> String {
    let phone = crate::wire::PROVIDER_SERVICES_PHONE;
    let quote = match &pullback.partner_transaction_id {
        Some(tx) => format!("session {} (partner transaction {tx})", pullback.session_id),
        None => format!("session {}", pullback.session_id),
    };
    match &pullback.status {
        PullbackStatus::CallForAuth => format!(
            "CareCredit needs an authorization call: call CareCredit Provider Services at {phone}, quote {quote}, then press Retry to read the decision"
        ),
        PullbackStatus::DupQs => format!(
            "CareCredit reports a duplicate QuickScreen for this patient: find the earlier application in the CareCredit Provider Center or call Provider Services at {phone}, quote {quote}, then press Retry or mark the task handled"
        ),
        _ => format!(
            "CareCredit reports a batch error: check the batch in the CareCredit Provider Center or call Provider Services at {phone}, quote {quote}, then press Retry"
        ),
    }
}

/// The offer of `amount`, with the terms CareCredit reported on the application (its promotion,
/// term and APR, as it words them); an APR that does not read as a percentage is left out, never
/// guessed.
fn offer(pullback: &Pullback, amount: Money) -> Offer {
    let details = pullback.application_details.as_ref();
    let reference = details
        .and_then(|a| a.application_id.as_deref())
        .unwrap_or(pullback.session_id.as_str());
    Offer {
        lender: LenderId::new(LENDER_ID),
        amount,
        promotion: details.and_then(|a| {
            financing_core::parse::non_blank(
                a.promo_description.as_deref().or(a.promo_code.as_deref()),
            )
        }),
        term_months: details.and_then(|a| a.promo_term_months).filter(|m| *m > 0),
        apr_bps: details
            .and_then(|a| a.apr.as_deref())
            .and_then(financing_core::parse::percent_bps),
        expires_at: None,
        lender_reference: Some(LenderReference::new(reference)),
    }
}
