//! The patient's own report of a link-only lender's decision (Cherry, Alphaeon, LendingClub), from
//! the patient page: "I applied with Cherry: I was approved for $___ / I was declined / I'm still
//! waiting". Pure: what a report may say ([`parse_report`]), when one is taken ([`accepts`]), and
//! the words staff read ([`PatientReport::task_reason`]).
//!
//! A report **never decides anything by itself**: it becomes one staff task, and only staff's
//! confirmation (the same `record_lender_decision` path as a decision read in the lender's
//! portal, see [`PatientReport::staff_report`]) moves the waterfall.

use std::fmt;

use chrono::{DateTime, Utc};
use financing_core::link_only::StaffReport;
use financing_core::{LenderId, Money};
use serde::{Deserialize, Serialize};

use crate::{LenderPhase, Stage, Status, WorkflowState};

/// The most a patient may report as approved: a dental financing line above this is a typo
/// (an extra digit), not a report worth a staff task.
pub const MAX_REPORTED: Money = Money::usd(10_000_000);

/// The longest amount text the page takes (`$100,000.00` is 11 characters).
pub const MAX_AMOUNT_TEXT: usize = 16;

/// What the patient says the lender decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PatientReport {
    /// "I was approved for $X".
    Approved {
        /// The amount the patient typed, in cents.
        amount: Money,
    },
    /// "I was declined".
    Declined,
    /// "I applied and I'm still waiting".
    StillWaiting,
}

/// Why the page's report form was not taken. Nothing was recorded. The page words each in the
/// patient's language ([`Self::code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportInputError {
    /// No choice, or one the form does not offer.
    #[error("choose what the lender answered")]
    NoOutcome,
    /// "Approved" without an amount.
    #[error("enter the amount you were approved for")]
    MissingAmount,
    /// Not an amount in dollars (`800`, `800.00`, `$1,200.50`).
    #[error("enter the amount in dollars, like 1200.00")]
    NotAnAmount,
    /// Zero.
    #[error("the amount must be more than $0.00")]
    Zero,
    /// Above [`MAX_REPORTED`].
    #[error("the amount is too large; check it")]
    TooLarge,
}

impl ReportInputError {
    /// A stable code, for the page's error line (`?report_error={code}`) and its words.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoOutcome => "outcome",
            Self::MissingAmount => "missing_amount",
            Self::NotAnAmount => "amount",
            Self::Zero => "zero",
            Self::TooLarge => "too_large",
        }
    }

    /// Every error, for reading a code back.
    pub const ALL: [Self; 5] = [
        Self::NoOutcome,
        Self::MissingAmount,
        Self::NotAnAmount,
        Self::Zero,
        Self::TooLarge,
    ];

    /// The error of a code ([`Self::code`]).
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// Why a report is not taken for the workflow as it stands. Nothing was recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAccepted {
    /// The workflow was cancelled (or withdrawn).
    #[error("the workflow is cancelled")]
    Cancelled,
    /// The workflow is finished.
    #[error("the workflow is finished")]
    Finished,
    /// The workflow does not wait on that lender's application (another lender is asked, the
    /// waterfall moved on, a decision was made).
    #[error("the workflow does not wait for a {0} decision")]
    NotLive(LenderId),
    /// The lender's application is live but the lender has an API: its answer is read, not
    /// reported.
    #[error("{0} reports its decision itself")]
    NotLinkOnly(LenderId),
    /// The wait for the lender's decision is over (the waterfall moves on at its next step).
    #[error("the wait for the {0} decision is over")]
    WaitOver(LenderId),
}

/// Parses the page's form: `outcome` is `approved`, `declined` or `waiting`; `amount` is read
/// only for `approved`, strictly ([`parse_amount`]).
///
/// # Errors
/// The [`ReportInputError`] the form shows.
pub fn parse_report(outcome: &str, amount: &str) -> Result<PatientReport, ReportInputError> {
    match outcome.trim() {
        "approved" => {
            if amount.trim().is_empty() {
                return Err(ReportInputError::MissingAmount);
            }
            Ok(PatientReport::Approved {
                amount: parse_amount(amount)?,
            })
        }
        "declined" => Ok(PatientReport::Declined),
        "waiting" => Ok(PatientReport::StillWaiting),
        _ => Err(ReportInputError::NoOutcome),
    }
}

/// An amount in US dollars as a patient types it: digits, an optional leading `$`, thousands
/// separated by commas only where they belong (`1,200`, never `1,20`), and at most two decimals
/// (`800`, `800.5`, `800.50`). Nothing else: no minus, no exponent, no spaces inside, no other
/// currency. More than $0.00 and at most [`MAX_REPORTED`].
///
/// # Errors
/// [`ReportInputError::NotAnAmount`], [`ReportInputError::Zero`],
/// [`ReportInputError::TooLarge`].
pub fn parse_amount(text: &str) -> Result<Money, ReportInputError> {
    let text = text.trim();
    if text.len() > MAX_AMOUNT_TEXT {
        return Err(ReportInputError::NotAnAmount);
    }
    let text = text.strip_prefix('$').unwrap_or(text);
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let groups: Vec<&str> = whole.split(',').collect();
    let grouped = match groups.split_first() {
        Some((first, rest)) if !rest.is_empty() => {
            digits(first) && first.len() <= 3 && rest.iter().all(|g| g.len() == 3 && digits(g))
        }
        Some((first, _)) => digits(first),
        None => false,
    };
    if !grouped {
        return Err(ReportInputError::NotAnAmount);
    }
    let cents = match frac {
        None => 0,
        Some(f) if digits(f) && f.len() <= 2 => {
            let v: i64 = f.parse().map_err(|_| ReportInputError::NotAnAmount)?;
            if f.len() == 1 { v * 10 } else { v }
        }
        Some(_) => return Err(ReportInputError::NotAnAmount),
    };
    let whole: String = groups.concat();
    // Longer than MAX_REPORTED's dollars can only be too large (and could overflow).
    if whole.trim_start_matches('0').len() > 7 {
        return Err(ReportInputError::TooLarge);
    }
    let dollars: i64 = whole.parse().map_err(|_| ReportInputError::NotAnAmount)?;
    let amount = Money::usd(dollars * 100 + cents);
    if amount.minor() == 0 {
        Err(ReportInputError::Zero)
    } else if amount.minor() > MAX_REPORTED.minor() {
        Err(ReportInputError::TooLarge)
    } else {
        Ok(amount)
    }
}

/// Whether a report about `lender` is taken for the workflow in `state` at `now`: only while
/// that link-only lender's application is the live attempt (the workflow waits for its decision
/// and the wait is not over), never on a cancelled or finished workflow, never after a decision.
/// Returns the amount asked of the lender.
///
/// A staff decision already queued but not yet applied is for the store to see (it reads the
/// queue in the same transaction).
///
/// # Errors
/// The [`NotAccepted`] reason.
pub fn accepts(
    state: &WorkflowState,
    lender: &LenderId,
    now: DateTime<Utc>,
) -> Result<Money, NotAccepted> {
    match state.status {
        Status::Cancelled => return Err(NotAccepted::Cancelled),
        Status::Done => return Err(NotAccepted::Finished),
        Status::Active | Status::WaitingOnStaff => {}
    }
    let Stage::Financing(c) = &state.stage else {
        return Err(NotAccepted::NotLive(lender.clone()));
    };
    if &c.lender != lender {
        return Err(NotAccepted::NotLive(lender.clone()));
    }
    match &c.phase {
        LenderPhase::AwaitingPatient { session, .. } => match session.decide_by {
            None => Err(NotAccepted::NotLinkOnly(lender.clone())),
            Some(by) if by <= now => Err(NotAccepted::WaitOver(lender.clone())),
            Some(_) => Ok(c.amount),
        },
        _ => Err(NotAccepted::NotLive(lender.clone())),
    }
}

impl PatientReport {
    /// What staff's "Confirm" records through `record_lender_decision`: exactly what the
    /// patient reported. `None` for "still waiting" (nothing to confirm).
    pub fn staff_report(self) -> Option<StaffReport> {
        match self {
            Self::Approved { amount } => Some(StaffReport::Approved { amount }),
            Self::Declined => Some(StaffReport::Declined),
            Self::StillWaiting => None,
        }
    }

    /// The staff task's words, for a lender shown as `lender_name` and an application of
    /// `asked`. No patient data: the lender and the amounts only.
    pub fn task_reason(self, lender_name: &str, asked: Money) -> String {
        match self {
            Self::Approved { amount } if amount.minor() < asked.minor() => format!(
                "Patient reports {lender_name} approved {amount}: check the {lender_name} portal and confirm (less than the {asked} asked: confirmed, it is a counteroffer)"
            ),
            Self::Approved { amount } => format!(
                "Patient reports {lender_name} approved {amount}: check the {lender_name} portal and confirm"
            ),
            Self::Declined => format!(
                "Patient reports {lender_name} declined: check the {lender_name} portal and confirm"
            ),
            Self::StillWaiting => format!(
                "Patient reports applying with {lender_name} and still waiting for its answer: check the {lender_name} portal"
            ),
        }
    }
}

impl fmt::Display for PatientReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Approved { amount } => write!(f, "approved {amount}"),
            Self::Declined => f.write_str("declined"),
            Self::StillWaiting => f.write_str("still waiting"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CurrentApplication, LenderSession, WorkflowKey};
    use financing_core::{
        ApplicationHandle, LenderLocation, LenderReference, LocationId, PatientId, PlanId,
        PracticeId, UsState,
    };

    fn now() -> DateTime<Utc> {
        "2026-03-02T15:00:00Z".parse().unwrap()
    }

    fn cherry() -> LenderId {
        LenderId::new("cherry")
    }

    /// A workflow waiting for Cherry's decision (decide by tomorrow) for $640.00.
    fn at_cherry() -> WorkflowState {
        let mut s = WorkflowState::new(
            WorkflowKey {
                practice_id: PracticeId::new("smile"),
                plan_id: PlanId::new("tx-1"),
                revision: "r1".into(),
            },
            PatientId::new("pat-1"),
            now(),
        );
        let location = LenderLocation {
            practice_id: PracticeId::new("smile"),
            location_id: LocationId::new("1"),
            state: UsState::TX,
        };
        s.stage = Stage::Financing(CurrentApplication {
            lender: cherry(),
            amount: Money::usd(64_000),
            contacted_at: now(),
            phase: LenderPhase::AwaitingPatient {
                handle: ApplicationHandle {
                    reference: crate::application_reference(&s.id, &cherry(), 1),
                    lender_reference: LenderReference::new("link-only"),
                    location,
                    amount: Money::usd(64_000),
                },
                link: "https://pay.withcherry.test/smile".into(),
                reminders_sent: 0,
                session: LenderSession {
                    decide_by: Some(now() + chrono::Duration::days(1)),
                    ..LenderSession::default()
                },
            },
        });
        s
    }

    #[test]
    fn amounts_are_parsed_strictly_to_cents() {
        for (text, cents) in [
            ("800", 80_000),
            ("800.00", 80_000),
            ("$800.5", 80_050),
            (" $1,200.50 ", 120_050),
            ("12,345,67", -1),
            ("100,000", 10_000_000),
            ("0.01", 1),
        ] {
            let parsed = parse_amount(text);
            if cents < 0 {
                assert_eq!(parsed, Err(ReportInputError::NotAnAmount), "{text}");
            } else {
                assert_eq!(parsed, Ok(Money::usd(cents)), "{text}");
            }
        }
    }

    #[test]
    fn anything_but_a_plain_dollar_amount_is_refused_with_its_reason() {
        for bad in [
            "",
            "$",
            "-800",
            "+800",
            "8e2",
            "800.",
            ".50",
            "800.505",
            "1,20",
            "1,2000",
            ",800",
            "800 00",
            "US$800",
            "€800",
            "800$",
            "eight hundred",
            "1.000,00",
            "0x320",
            "99999999999999999",
        ] {
            assert_eq!(
                parse_amount(bad),
                Err(ReportInputError::NotAnAmount),
                "{bad:?}"
            );
        }
        assert_eq!(parse_amount("0"), Err(ReportInputError::Zero));
        assert_eq!(parse_amount("$0.00"), Err(ReportInputError::Zero));
        assert_eq!(parse_amount("100,000.01"), Err(ReportInputError::TooLarge));
        assert_eq!(parse_amount("12345678"), Err(ReportInputError::TooLarge));
    }

    #[test]
    fn the_form_says_approved_with_an_amount_declined_or_waiting_and_nothing_else() {
        assert_eq!(
            parse_report("approved", "800"),
            Ok(PatientReport::Approved {
                amount: Money::usd(80_000)
            })
        );
        assert_eq!(
            parse_report("declined", "junk"),
            Ok(PatientReport::Declined)
        );
        assert_eq!(parse_report("waiting", ""), Ok(PatientReport::StillWaiting));
        assert_eq!(
            parse_report("approved", " "),
            Err(ReportInputError::MissingAmount)
        );
        assert_eq!(
            parse_report("approved", "lots"),
            Err(ReportInputError::NotAnAmount)
        );
        assert_eq!(
            parse_report("maybe", "800"),
            Err(ReportInputError::NoOutcome)
        );
        assert_eq!(parse_report("", ""), Err(ReportInputError::NoOutcome));
        for e in ReportInputError::ALL {
            assert_eq!(ReportInputError::from_code(e.code()), Some(e));
        }
    }

    #[test]
    fn a_report_is_taken_only_while_that_link_only_lenders_application_is_live() {
        let live = at_cherry();
        assert_eq!(accepts(&live, &cherry(), now()), Ok(Money::usd(64_000)));
        // Another lender named: not its attempt.
        assert_eq!(
            accepts(&live, &LenderId::new("alphaeon"), now()),
            Err(NotAccepted::NotLive(LenderId::new("alphaeon")))
        );
        // The wait is over.
        assert_eq!(
            accepts(&live, &cherry(), now() + chrono::Duration::days(1)),
            Err(NotAccepted::WaitOver(cherry()))
        );
        // Cancelled, finished.
        let mut cancelled = at_cherry();
        cancelled.status = Status::Cancelled;
        assert_eq!(
            accepts(&cancelled, &cherry(), now()),
            Err(NotAccepted::Cancelled)
        );
        let mut done = at_cherry();
        done.status = Status::Done;
        assert_eq!(accepts(&done, &cherry(), now()), Err(NotAccepted::Finished));
        // A lender with an API: its answer is read, never reported.
        let mut api = at_cherry();
        if let Stage::Financing(c) = &mut api.stage
            && let LenderPhase::AwaitingPatient { session, .. } = &mut c.phase
        {
            session.decide_by = None;
        }
        assert_eq!(
            accepts(&api, &cherry(), now()),
            Err(NotAccepted::NotLinkOnly(cherry()))
        );
        // After a decision: the attempt is no longer waiting on the patient.
        let mut decided = at_cherry();
        decided.stage = Stage::Settled;
        assert_eq!(
            accepts(&decided, &cherry(), now()),
            Err(NotAccepted::NotLive(cherry()))
        );
    }

    #[test]
    fn confirm_records_exactly_what_the_patient_reported_and_waiting_confirms_nothing() {
        let amount = Money::usd(80_000);
        assert_eq!(
            PatientReport::Approved { amount }.staff_report(),
            Some(StaffReport::Approved { amount })
        );
        assert_eq!(
            PatientReport::Declined.staff_report(),
            Some(StaffReport::Declined)
        );
        assert_eq!(PatientReport::StillWaiting.staff_report(), None);
    }

    #[test]
    fn the_task_names_the_lender_and_the_amount_and_flags_a_short_approval() {
        let asked = Money::usd(80_000);
        assert_eq!(
            PatientReport::Approved { amount: asked }.task_reason("Cherry", asked),
            "Patient reports Cherry approved $800.00: check the Cherry portal and confirm"
        );
        let short = PatientReport::Approved {
            amount: Money::usd(70_000),
        }
        .task_reason("Cherry", asked);
        assert!(
            short.starts_with("Patient reports Cherry approved $700.00"),
            "{short}"
        );
        assert!(short.contains("counteroffer"), "{short}");
        assert_eq!(
            PatientReport::Declined.task_reason("Cherry", asked),
            "Patient reports Cherry declined: check the Cherry portal and confirm"
        );
        assert!(
            PatientReport::StillWaiting
                .task_reason("Cherry", asked)
                .contains("still waiting")
        );
    }
}
