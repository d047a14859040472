//! The lender waterfall: which lender to ask next, and when the search is over.
//!
//! Pure: given the amount and what each lender answered so far, [`Waterfall::next`] says which
//! lender to ask next or how the waterfall ended. The orchestrator performs the calls and keeps the
//! [`Attempt`]s durably; that list is also the record of which lenders saw the application, which
//! Regulation B §1002.9(g) adverse-action duties need.
//!
//! Routing reads only the amount, the practice's configured order and lender limits: never
//! demographics or ZIP (ECOA, §1002.4; COMPLIANCE.md §2). The order is the same for every patient.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::LenderId;
use crate::lender::{AmountLimits, Decision};
use crate::money::Money;

/// What to do when a lender approves less than asked (a counteroffer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialApprovalRule {
    /// Stop and hand the counteroffer to staff, who discuss it with the patient.
    #[default]
    StopForStaff,
    /// Keep asking the next lenders for full coverage; if none approves in full, the best
    /// counteroffer stands and its remainder goes to the in-house plan when allowed.
    ContinueForFullCoverage,
}

/// The practice's waterfall rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaterfallPolicy {
    /// What a partial approval does.
    pub on_partial: PartialApprovalRule,
    /// Whether the practice's in-house plan takes what lenders did not cover.
    pub in_house_fallback: bool,
}

impl Default for WaterfallPolicy {
    fn default() -> Self {
        Self {
            on_partial: PartialApprovalRule::StopForStaff,
            in_house_fallback: true,
        }
    }
}

/// One lender in the practice's order, with the amounts it may be asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LenderSlot {
    /// The lender.
    pub lender: LenderId,
    /// The practice's limits for this lender (minimum amount per lender, programme maximum).
    pub limits: AmountLimits,
}

/// How one lender's part ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Approved for at least the amount, or an existing account covers it.
    Approved {
        /// The approved or available amount.
        amount: Money,
    },
    /// A counteroffer for less than asked (also an existing account whose credit falls short).
    PartiallyApproved {
        /// The approved amount.
        approved: Money,
    },
    /// Declined.
    Declined,
    /// The patient never finished the application after every reminder: staff follow up.
    Abandoned,
    /// The lender's session or offer lapsed without a decision (a 30-minute CareCredit session the
    /// patient never finished, a voided or aborted prequalification). The waterfall moves on to
    /// the next lender; when the last lender asked lapsed and nothing was approved, the patient
    /// went quiet ([`WaterfallOutcome::PatientInactive`]).
    Expired,
    /// The call failed for good (bad configuration, changed vendor shape); the next lender is asked
    /// and staff are told.
    Failed {
        /// A reason for staff, without PHI.
        reason: String,
    },
    /// A lender without an API (a link-only lender) whose decision staff did not record within
    /// its configured wait: the waterfall moves on as after a decline, and staff are told to look
    /// the application up in the lender's portal.
    NoDecision,
    /// The lender answered with a status this version does not know.
    Unrecognized {
        /// The raw status.
        raw_status: String,
    },
}

impl AttemptOutcome {
    /// Maps a lender's final [`Decision`] for `requested` to an outcome. `None` for a decision that is
    /// not final (pending, application started).
    pub fn from_decision(decision: &Decision, requested: Money) -> Option<Self> {
        Some(match decision {
            Decision::Approved { offer, .. } => Self::Approved {
                amount: offer.amount,
            },
            Decision::PartiallyApproved { offer, .. } => Self::PartiallyApproved {
                approved: offer.amount,
            },
            Decision::Cardholder {
                available_credit, ..
            } => {
                if available_credit.minor() >= requested.minor() {
                    Self::Approved { amount: requested }
                } else if available_credit.minor() > 0 {
                    Self::PartiallyApproved {
                        approved: *available_credit,
                    }
                } else {
                    Self::Declined
                }
            }
            Decision::Declined { .. } => Self::Declined,
            Decision::Expired { .. } => Self::Expired,
            Decision::Unknown(raw) => Self::Unrecognized {
                raw_status: raw.clone(),
            },
            // Not final: a prequalification waits for the real decision, a lender that needs a
            // person waits for staff.
            Decision::Pending { .. }
            | Decision::UnderReview { .. }
            | Decision::ApplicationStarted { .. }
            | Decision::Prequalified { .. }
            | Decision::NeedsStaff { .. } => return None,
        })
    }

    /// A stable label for the audit trail.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Approved { .. } => "approved",
            Self::PartiallyApproved { .. } => "partially_approved",
            Self::Declined => "declined",
            Self::Abandoned => "abandoned",
            Self::Expired => "expired",
            Self::Failed { .. } => "failed",
            Self::NoDecision => "no_decision",
            Self::Unrecognized { .. } => "unrecognized",
        }
    }
}

/// One lender that saw the application: who, when, for how much, and how it ended. The list of
/// attempts is the append-only disclosure log of COMPLIANCE.md §2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The lender.
    pub lender: LenderId,
    /// The amount it was asked for.
    pub amount: Money,
    /// When it was first contacted.
    pub contacted_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

/// What the waterfall says to do next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Ask this lender (cardholder lookup where it has one, then an application).
    Ask {
        /// The lender.
        lender: LenderId,
        /// The amount to ask for.
        amount: Money,
    },
    /// The waterfall is over.
    Finished(WaterfallOutcome),
}

/// How the waterfall ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WaterfallOutcome {
    /// A lender covers the whole amount.
    Financed {
        /// The lender.
        lender: LenderId,
        /// The approved amount (at least the amount asked).
        amount: Money,
    },
    /// A counteroffer stands and the practice wants staff to discuss it (policy `StopForStaff`).
    CounterofferForStaff {
        /// The lender.
        lender: LenderId,
        /// Approved.
        approved: Money,
        /// Asked.
        requested: Money,
    },
    /// No lender covered the whole amount; the best counteroffer stands and the remainder goes to
    /// the in-house plan (or to staff when the practice has none).
    CounterofferWithRemainder {
        /// The lender of the best counteroffer.
        lender: LenderId,
        /// Approved.
        approved: Money,
        /// What is left for the patient to pay another way.
        remainder: Money,
        /// True when the practice's in-house plan takes the remainder.
        in_house: bool,
    },
    /// The patient went quiet at this lender: reminders are over (or the last lender's session
    /// lapsed with nothing approved), staff follow up.
    PatientInactive {
        /// The lender whose application was left.
        lender: LenderId,
    },
    /// Every lender declined, failed or could not take the amount.
    NoLenderApproved {
        /// True when the practice's in-house plan is offered instead.
        in_house: bool,
    },
}

/// The configured lender order plus the practice's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waterfall {
    slots: Vec<LenderSlot>,
    policy: WaterfallPolicy,
}

impl Waterfall {
    /// A waterfall over lenders in the practice's order.
    pub fn new(slots: Vec<LenderSlot>, policy: WaterfallPolicy) -> Self {
        Self { slots, policy }
    }

    /// The lenders in order.
    pub fn slots(&self) -> &[LenderSlot] {
        &self.slots
    }

    /// The practice's rules.
    pub fn policy(&self) -> WaterfallPolicy {
        self.policy
    }

    /// The lenders that cannot take `amount` under their limits, in order: they are skipped and never
    /// see the application.
    pub fn skipped(&self, amount: Money) -> Vec<&LenderId> {
        self.slots
            .iter()
            .filter(|s| !s.limits.admits(amount))
            .map(|s| &s.lender)
            .collect()
    }

    /// The next step for an application of `amount`, given the final outcomes so far (in the order
    /// they happened). An attempt for a lender not in the order is ignored.
    pub fn next(&self, amount: Money, attempts: &[Attempt]) -> Step {
        let mut best_partial: Option<(&LenderId, Money)> = None;
        // The lender whose session lapsed, while it is the last one asked.
        let mut lapsed: Option<&LenderId> = None;
        for slot in &self.slots {
            let Some(attempt) = attempts.iter().find(|a| a.lender == slot.lender) else {
                if slot.limits.admits(amount) {
                    return Step::Ask {
                        lender: slot.lender.clone(),
                        amount,
                    };
                }
                continue;
            };
            lapsed = None;
            match &attempt.outcome {
                AttemptOutcome::Approved { amount: approved } => {
                    return Step::Finished(WaterfallOutcome::Financed {
                        lender: slot.lender.clone(),
                        amount: *approved,
                    });
                }
                AttemptOutcome::PartiallyApproved { approved } => match self.policy.on_partial {
                    PartialApprovalRule::StopForStaff => {
                        return Step::Finished(WaterfallOutcome::CounterofferForStaff {
                            lender: slot.lender.clone(),
                            approved: *approved,
                            requested: amount,
                        });
                    }
                    PartialApprovalRule::ContinueForFullCoverage => {
                        if best_partial.is_none_or(|(_, best)| approved.minor() > best.minor()) {
                            best_partial = Some((&slot.lender, *approved));
                        }
                    }
                },
                AttemptOutcome::Abandoned => {
                    return Step::Finished(WaterfallOutcome::PatientInactive {
                        lender: slot.lender.clone(),
                    });
                }
                AttemptOutcome::Expired => lapsed = Some(&slot.lender),
                AttemptOutcome::Declined
                | AttemptOutcome::NoDecision
                | AttemptOutcome::Failed { .. }
                | AttemptOutcome::Unrecognized { .. } => {}
            }
        }
        let in_house = self.policy.in_house_fallback;
        if let (None, Some(lender)) = (best_partial, lapsed) {
            // Nothing approved and the last lender asked lapsed unused: the patient went quiet,
            // which is for staff, not an in-house plan nobody asked for.
            return Step::Finished(WaterfallOutcome::PatientInactive {
                lender: lender.clone(),
            });
        }
        Step::Finished(match best_partial {
            Some((lender, approved)) => WaterfallOutcome::CounterofferWithRemainder {
                lender: lender.clone(),
                approved,
                remainder: amount.checked_sub(approved).unwrap_or(amount),
                in_house,
            },
            None => WaterfallOutcome::NoLenderApproved { in_house },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: &str) -> LenderSlot {
        LenderSlot {
            lender: LenderId::new(id),
            limits: AmountLimits::NONE,
        }
    }

    fn attempt(id: &str, outcome: AttemptOutcome) -> Attempt {
        Attempt {
            lender: LenderId::new(id),
            amount: Money::usd(100_000),
            contacted_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            outcome,
        }
    }

    const AMOUNT: Money = Money::usd(100_000);

    fn three(policy: WaterfallPolicy) -> Waterfall {
        Waterfall::new(vec![slot("a"), slot("b"), slot("c")], policy)
    }

    /// Every final outcome a lender can give, for exhaustive sequences.
    fn outcomes() -> Vec<AttemptOutcome> {
        vec![
            AttemptOutcome::Approved { amount: AMOUNT },
            AttemptOutcome::PartiallyApproved {
                approved: Money::usd(60_000),
            },
            AttemptOutcome::Declined,
            AttemptOutcome::Abandoned,
            AttemptOutcome::Expired,
            AttemptOutcome::Failed {
                reason: "configuration".into(),
            },
            AttemptOutcome::Unrecognized {
                raw_status: "Mystery".into(),
            },
        ]
    }

    #[test]
    fn asks_lenders_in_order_and_stops_at_the_first_full_approval() {
        let w = three(WaterfallPolicy::default());
        assert_eq!(
            w.next(AMOUNT, &[]),
            Step::Ask {
                lender: LenderId::new("a"),
                amount: AMOUNT
            }
        );
        let declined_a = [attempt("a", AttemptOutcome::Declined)];
        assert_eq!(
            w.next(AMOUNT, &declined_a),
            Step::Ask {
                lender: LenderId::new("b"),
                amount: AMOUNT
            }
        );
        let approved_b = [
            attempt("a", AttemptOutcome::Declined),
            attempt("b", AttemptOutcome::Approved { amount: AMOUNT }),
        ];
        assert_eq!(
            w.next(AMOUNT, &approved_b),
            Step::Finished(WaterfallOutcome::Financed {
                lender: LenderId::new("b"),
                amount: AMOUNT
            })
        );
    }

    #[test]
    fn a_link_only_lender_without_a_decision_moves_on_like_a_decline_not_a_quiet_patient() {
        let w = three(WaterfallPolicy::default());
        let first = [attempt("a", AttemptOutcome::NoDecision)];
        assert_eq!(
            w.next(AMOUNT, &first),
            Step::Ask {
                lender: LenderId::new("b"),
                amount: AMOUNT
            }
        );
        // Last in the order: the in-house plan, where a lapsed session would be a quiet patient.
        let last = [
            attempt("a", AttemptOutcome::Declined),
            attempt("b", AttemptOutcome::Declined),
            attempt("c", AttemptOutcome::NoDecision),
        ];
        assert_eq!(
            w.next(AMOUNT, &last),
            Step::Finished(WaterfallOutcome::NoLenderApproved { in_house: true })
        );
    }

    #[test]
    fn all_declined_offers_in_house_when_the_practice_has_it() {
        let all = [
            attempt("a", AttemptOutcome::Declined),
            attempt("b", AttemptOutcome::Declined),
            attempt("c", AttemptOutcome::Declined),
        ];
        assert_eq!(
            three(WaterfallPolicy::default()).next(AMOUNT, &all),
            Step::Finished(WaterfallOutcome::NoLenderApproved { in_house: true })
        );
        let no_in_house = WaterfallPolicy {
            in_house_fallback: false,
            ..WaterfallPolicy::default()
        };
        assert_eq!(
            three(no_in_house).next(AMOUNT, &all),
            Step::Finished(WaterfallOutcome::NoLenderApproved { in_house: false })
        );
    }

    #[test]
    fn partial_approval_stops_for_staff_by_default() {
        let w = three(WaterfallPolicy::default());
        let partial = [attempt(
            "a",
            AttemptOutcome::PartiallyApproved {
                approved: Money::usd(60_000),
            },
        )];
        assert_eq!(
            w.next(AMOUNT, &partial),
            Step::Finished(WaterfallOutcome::CounterofferForStaff {
                lender: LenderId::new("a"),
                approved: Money::usd(60_000),
                requested: AMOUNT
            })
        );
    }

    #[test]
    fn partial_approval_can_continue_and_keeps_the_best_counteroffer() {
        let w = three(WaterfallPolicy {
            on_partial: PartialApprovalRule::ContinueForFullCoverage,
            in_house_fallback: true,
        });
        let seen = [
            attempt(
                "a",
                AttemptOutcome::PartiallyApproved {
                    approved: Money::usd(40_000),
                },
            ),
            attempt(
                "b",
                AttemptOutcome::PartiallyApproved {
                    approved: Money::usd(70_000),
                },
            ),
        ];
        assert_eq!(
            w.next(AMOUNT, &seen),
            Step::Ask {
                lender: LenderId::new("c"),
                amount: AMOUNT
            }
        );
        let mut all = seen.to_vec();
        all.push(attempt("c", AttemptOutcome::Declined));
        assert_eq!(
            w.next(AMOUNT, &all),
            Step::Finished(WaterfallOutcome::CounterofferWithRemainder {
                lender: LenderId::new("b"),
                approved: Money::usd(70_000),
                remainder: Money::usd(30_000),
                in_house: true
            })
        );
    }

    #[test]
    fn lenders_whose_limits_exclude_the_amount_are_skipped_and_never_asked() {
        let mut small_only = slot("a");
        small_only.limits = AmountLimits {
            min: None,
            max: Some(Money::usd(50_000)),
        };
        let mut big_only = slot("b");
        big_only.limits = AmountLimits {
            min: Some(Money::usd(250_000)),
            max: None,
        };
        let w = Waterfall::new(
            vec![small_only, big_only, slot("c")],
            WaterfallPolicy::default(),
        );
        assert_eq!(
            w.next(AMOUNT, &[]),
            Step::Ask {
                lender: LenderId::new("c"),
                amount: AMOUNT
            }
        );
        assert_eq!(
            w.skipped(AMOUNT),
            vec![&LenderId::new("a"), &LenderId::new("b")]
        );
    }

    #[test]
    fn an_abandoned_application_ends_with_the_patient_inactive() {
        let w = three(WaterfallPolicy::default());
        assert_eq!(
            w.next(AMOUNT, &[attempt("a", AttemptOutcome::Abandoned)]),
            Step::Finished(WaterfallOutcome::PatientInactive {
                lender: LenderId::new("a")
            })
        );
    }

    #[test]
    fn a_cardholder_with_enough_credit_is_approved_and_short_credit_is_a_counteroffer() {
        let d = |cents| Decision::Cardholder {
            available_credit: Money::usd(cents),
            lender_reference: None,
        };
        assert_eq!(
            AttemptOutcome::from_decision(&d(150_000), AMOUNT),
            Some(AttemptOutcome::Approved { amount: AMOUNT })
        );
        assert_eq!(
            AttemptOutcome::from_decision(&d(30_000), AMOUNT),
            Some(AttemptOutcome::PartiallyApproved {
                approved: Money::usd(30_000)
            })
        );
        assert_eq!(
            AttemptOutcome::from_decision(&d(0), AMOUNT),
            Some(AttemptOutcome::Declined)
        );
        assert_eq!(
            AttemptOutcome::from_decision(
                &Decision::Pending {
                    poll_after: None,
                    raw_status: "Pending".into()
                },
                AMOUNT
            ),
            None
        );
    }

    /// The reference model: what the waterfall must do for a sequence, written independently.
    fn expected(policy: WaterfallPolicy, seq: &[AttemptOutcome]) -> Step {
        let ids = ["a", "b", "c"];
        let mut best: Option<(usize, Money)> = None;
        let last_lapsed = matches!(seq.last(), Some(AttemptOutcome::Expired));
        for (i, o) in seq.iter().enumerate() {
            match o {
                AttemptOutcome::Approved { amount } => {
                    return Step::Finished(WaterfallOutcome::Financed {
                        lender: LenderId::new(ids[i]),
                        amount: *amount,
                    });
                }
                AttemptOutcome::PartiallyApproved { approved }
                    if policy.on_partial == PartialApprovalRule::StopForStaff =>
                {
                    return Step::Finished(WaterfallOutcome::CounterofferForStaff {
                        lender: LenderId::new(ids[i]),
                        approved: *approved,
                        requested: AMOUNT,
                    });
                }
                AttemptOutcome::PartiallyApproved { approved } if best.is_none() => {
                    best = Some((i, *approved));
                }
                AttemptOutcome::Abandoned => {
                    return Step::Finished(WaterfallOutcome::PatientInactive {
                        lender: LenderId::new(ids[i]),
                    });
                }
                _ => {}
            }
        }
        if seq.len() < ids.len() {
            return Step::Ask {
                lender: LenderId::new(ids[seq.len()]),
                amount: AMOUNT,
            };
        }
        if best.is_none() && last_lapsed {
            return Step::Finished(WaterfallOutcome::PatientInactive {
                lender: LenderId::new(ids[seq.len() - 1]),
            });
        }
        Step::Finished(match best {
            Some((i, approved)) => WaterfallOutcome::CounterofferWithRemainder {
                lender: LenderId::new(ids[i]),
                approved,
                remainder: AMOUNT.checked_sub(approved).unwrap_or(AMOUNT),
                in_house: policy.in_house_fallback,
            },
            None => WaterfallOutcome::NoLenderApproved {
                in_house: policy.in_house_fallback,
            },
        })
    }

    #[test]
    fn every_sequence_of_decisions_for_three_lenders_matches_the_reference() {
        let policies = [
            WaterfallPolicy::default(),
            WaterfallPolicy {
                on_partial: PartialApprovalRule::ContinueForFullCoverage,
                in_house_fallback: true,
            },
            WaterfallPolicy {
                on_partial: PartialApprovalRule::ContinueForFullCoverage,
                in_house_fallback: false,
            },
        ];
        let ids = ["a", "b", "c"];
        let all = outcomes();
        let mut checked = 0;
        for policy in policies {
            let w = three(policy);
            // Every prefix length 0..=3 and every outcome at each position.
            let mut stack: Vec<Vec<AttemptOutcome>> = vec![vec![]];
            while let Some(seq) = stack.pop() {
                let attempts: Vec<Attempt> = seq
                    .iter()
                    .enumerate()
                    .map(|(i, o)| attempt(ids[i], o.clone()))
                    .collect();
                let step = w.next(AMOUNT, &attempts);
                // Only check sequences the waterfall could actually produce: each prefix asked the next lender.
                let reachable = (0..seq.len()).all(|n| {
                    let prefix: Vec<Attempt> = attempts[..n].to_vec();
                    matches!(w.next(AMOUNT, &prefix), Step::Ask { lender, .. } if lender == LenderId::new(ids[n]))
                });
                if reachable {
                    assert_eq!(
                        step,
                        expected(policy, &seq),
                        "policy {policy:?}, sequence {seq:?}"
                    );
                    checked += 1;
                }
                if seq.len() < 3 {
                    for o in &all {
                        let mut next = seq.clone();
                        next.push(o.clone());
                        stack.push(next);
                    }
                }
            }
        }
        assert!(checked > 100, "only {checked} sequences checked");
    }
}
