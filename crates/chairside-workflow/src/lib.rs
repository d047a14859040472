//! The workflow: one per (practice, plan, plan revision), driven by a pure state machine.
//!
//! [`machine::apply`] is a function from (state, event) to (state, commands): the business rules
//! live there and are tested without I/O. The runner performs the commands and feeds their results
//! back as events.

pub mod correction;
pub mod delivery;
pub mod due;
pub mod intake;
pub mod machine;
pub mod patient_report;
pub mod refunds;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use financing_core::{
    ApplicationHandle, Attempt, CoverageSplit, Decision, DepositRule, InHouseOffer, InHouseTerms,
    LenderId, Money, Offer, PatientId, PlanId, PollSchedule, PracticeId, Settlement, TreatmentPlan,
    UsState, Waterfall,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What makes a workflow unique.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkflowKey {
    /// The practice.
    pub practice_id: PracticeId,
    /// The plan in the practice system.
    pub plan_id: PlanId,
    /// The plan's revision: an edit after acceptance is a new workflow.
    pub revision: String,
}

/// A workflow's id: derived from its key, so the same plan always maps to the same id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(String);

impl WorkflowId {
    /// The id of the workflow for `key`.
    pub fn derive(key: &WorkflowKey) -> Self {
        let mut h = Sha256::new();
        for part in [
            key.practice_id.as_str(),
            key.plan_id.as_str(),
            key.revision.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        Self(format!("wf_{}", &hex::encode(h.finalize())[..24]))
    }

    /// Wraps a stored id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The deterministic idempotency key of one external call: hash-free and readable, built from
    /// the workflow, the step and the command's sequence number, never the attempt number, so a
    /// retry after a crash sends the same key (DESIGN.md, the runner protocol).
    pub fn idempotency_key(&self, step: &str, seq: u64) -> String {
        format!("{}:{step}:{seq}", self.0)
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a workflow stands, as staff and the store see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Chairside is working on it (or waiting on the patient or a lender).
    Active,
    /// A person must act; see the staff task.
    WaitingOnStaff,
    /// Financing arranged (or not needed), patient told, ledger note written.
    Done,
    /// The plan was withdrawn or staff cancelled.
    Cancelled,
}

impl Status {
    /// A stable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::WaitingOnStaff => "waiting_on_staff",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a label.
    pub fn from_label(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "waiting_on_staff" => Self::WaitingOnStaff,
            "done" => Self::Done,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// The kinds of staff task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// The plan's data cannot be priced (estimate above fee, no procedures, unreadable record).
    BadData,
    /// The patient cannot be reached: no mobile phone and no email.
    Unreachable,
    /// A lender made a counteroffer the practice wants discussed.
    Counteroffer,
    /// The patient did not finish the lender's application after the reminders.
    PatientQuiet,
    /// No lender approved and the practice has no in-house plan.
    NoFinancing,
    /// An installment or charge failed.
    PaymentFailed,
    /// A charge was refunded or disputed in Stripe, or the schedule ended outside Chairside:
    /// the practice's ledger and the patient's plan need a person.
    PaymentReversed,
    /// An external call failed for good; retry after fixing the cause.
    SystemError,
    /// The patient refused texts in free text.
    ConsentRefusal,
    /// The lender charge is for staff to run in the lender's portal (its API takes none, or no
    /// treatment date is known): the task names the exact amount, the day and the reference.
    Settlement,
    /// A lender needs a person (CareCredit `CallForAuth`, `DupQS`, a status this version does not
    /// know): the reason carries the lender's instruction; the waterfall holds until staff act.
    LenderNeedsStaff,
    /// A link-only lender (no API: Cherry, Alphaeon, LendingClub) had no decision recorded by
    /// staff within its configured wait: the waterfall moved on, and staff look the application
    /// up in the lender's portal (the patient may still be approved there).
    LenderNoDecision,
    /// An intake's patient must be created in the practice system by a person (its API offers
    /// no patient creation): the task points at the intake's record on the dashboard.
    PatientRecord,
    /// An accepted intake case's treatment plan must be entered in the practice system by a
    /// person (its API takes no plans): the task names the record to enter. Raised beside the
    /// workflow, which goes on to its ledger note.
    PlanRecord,
    /// The patient reported a link-only lender's decision on the patient page (approved $X,
    /// declined, still waiting): staff check the lender's portal and confirm, correct or refuse
    /// it. Raised beside the live workflow, which waits for the decision as before; never more
    /// than one open per workflow (a second report replaces the first).
    PatientReport,
}

impl TaskKind {
    /// A stable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadData => "bad_data",
            Self::Unreachable => "unreachable",
            Self::Counteroffer => "counteroffer",
            Self::PatientQuiet => "patient_quiet",
            Self::NoFinancing => "no_financing",
            Self::PaymentFailed => "payment_failed",
            Self::PaymentReversed => "payment_reversed",
            Self::SystemError => "system_error",
            Self::ConsentRefusal => "consent_refusal",
            Self::Settlement => "settlement",
            Self::LenderNeedsStaff => "lender_needs_staff",
            Self::LenderNoDecision => "lender_no_decision",
            Self::PatientRecord => "patient_record",
            Self::PlanRecord => "plan_record",
            Self::PatientReport => "patient_report",
        }
    }

    /// Every kind, for reading a stored label back.
    pub const ALL: [Self; 15] = [
        Self::BadData,
        Self::Unreachable,
        Self::Counteroffer,
        Self::PatientQuiet,
        Self::NoFinancing,
        Self::PaymentFailed,
        Self::PaymentReversed,
        Self::SystemError,
        Self::ConsentRefusal,
        Self::Settlement,
        Self::LenderNeedsStaff,
        Self::LenderNoDecision,
        Self::PatientRecord,
        Self::PlanRecord,
        Self::PatientReport,
    ];

    /// Parses a label ([`Self::label`]).
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == label)
    }
}

/// A staff task: what a person must decide, and why. Reasons never contain PHI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffTask {
    /// The kind.
    pub kind: TaskKind,
    /// A reason the front desk understands.
    pub reason: String,
}

/// Messages the workflow sends to the patient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum MessageKind {
    /// The lender's hosted application link.
    ApplicationLink {
        /// The lender.
        lender: LenderId,
        /// The link.
        link: String,
    },
    /// A reminder to finish the application.
    Reminder {
        /// The lender.
        lender: LenderId,
        /// The link.
        link: String,
        /// 1 for the first reminder.
        number: u32,
    },
    /// The financing summary: terms, first payment, links.
    FinancingSummary,
    /// An installment or charge failed.
    PaymentFailed,
    /// A staff retry of a failed payment issued a fresh pay link: the patient page holds it, and
    /// the message (the payment-failed wording) links there.
    PayLinkReissued,
    /// The practice's in-house plan, offered for the patient to accept on the patient page.
    InHouseOffer {
        /// 0 for the offer itself, then 1 for the first reminder, and so on.
        number: u32,
    },
}

impl MessageKind {
    /// A stable label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ApplicationLink { .. } => "application_link",
            Self::Reminder { .. } => "reminder",
            Self::FinancingSummary => "financing_summary",
            Self::PaymentFailed => "payment_failed",
            Self::PayLinkReissued => "pay_link_reissued",
            Self::InHouseOffer { .. } => "in_house_offer",
        }
    }
}

/// Ledger notes the workflow writes back to the practice system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum NoteKind {
    /// The workflow's outcome (financed, in-house, waiting on staff, cancelled).
    Outcome,
    /// A payment Stripe reported after the fact.
    Payment {
        /// Stripe's id of the paid object.
        stripe_id: String,
        /// The amount.
        amount: Money,
    },
    /// A refund or a dispute Stripe reported: money going back to the patient.
    Reversal {
        /// Stripe's id (the charge refunded, or the dispute).
        stripe_id: String,
        /// The amount refunded so far, or disputed.
        amount: Money,
        /// True for a dispute, false for a refund.
        dispute: bool,
        /// For a refund: what this refund reverses in the ledger (the rise in the refunded
        /// total, [`refunds::refund_to_reverse`]). `None` for a dispute, and in notes recorded
        /// before ledger reversals existed (those stay notes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reversed: Option<Money>,
        /// For a refund reversed by its id: Stripe's refund id (`re_…`), the reversal's key in
        /// the practice system. `None`: keyed by the charge and its refunded total.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refund_id: Option<String>,
    },
    /// The lender settlement: scheduled, charged, for staff, or failed.
    Settlement {
        /// The lender.
        lender: LenderId,
        /// The amount charged (or to charge).
        amount: Money,
        /// Where it stands when the note is written.
        state: SettlementState,
    },
}

/// Where the lender charge of a financed plan stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "settlement", rename_all = "snake_case")]
pub enum SettlementState {
    /// The charge runs on `day` (the treatment date).
    Scheduled {
        /// The day.
        day: NaiveDate,
    },
    /// The charge is being run.
    Charging {
        /// The day it was due.
        day: NaiveDate,
    },
    /// The lender charged the account.
    Charged {
        /// The lender's purchase id.
        purchase: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Staff run the charge in the lender's portal (on `day`, or once a treatment date is known).
    Manual {
        /// The day it is due, when known.
        day: Option<NaiveDate>,
    },
    /// Staff marked the charge done.
    HandledByStaff {
        /// When.
        at: DateTime<Utc>,
    },
    /// The charge failed for good; a staff task says why.
    Failed {
        /// Why, without PHI.
        reason: String,
    },
}

/// The lender settlement of a financed plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LenderSettlement {
    /// The lender.
    pub lender: LenderId,
    /// The amount it finances.
    pub amount: Money,
    /// Where it stands.
    pub state: SettlementState,
}

impl LenderSettlement {
    /// A short description for staff (`carecredit charge of $1,200.00 due 2027-03-15`).
    pub fn label(&self) -> String {
        let what = format!("{} charge of {}", self.lender, self.amount);
        match &self.state {
            SettlementState::Scheduled { day } => format!("{what} due {day}"),
            SettlementState::Charging { .. } => format!("{what} running"),
            SettlementState::Charged { .. } => format!("{what} settled"),
            SettlementState::Manual { day: Some(day) } => format!("{what} for staff on {day}"),
            SettlementState::Manual { day: None } => {
                format!("{what} for staff once treatment is booked")
            }
            SettlementState::HandledByStaff { .. } => format!("{what} settled by staff"),
            SettlementState::Failed { .. } => format!("{what} failed"),
        }
    }
}

/// Timers a workflow can have; at most one of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// Financing may start (sedation on the acceptance day defers it).
    Resume,
    /// Poll the current lender's application.
    Poll,
    /// Remind the patient.
    Reminder,
    /// Stop waiting on the patient.
    GiveUp,
    /// Run the lender charge (the treatment date came).
    Settle,
    /// Collect the day-of-service co-pay (the treatment date came).
    Copay,
}

impl TimerKind {
    /// A stable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Resume => "resume",
            Self::Poll => "poll",
            Self::Reminder => "reminder",
            Self::GiveUp => "give_up",
            Self::Settle => "settle",
            Self::Copay => "copay",
        }
    }

    /// Parses a label.
    pub fn from_label(s: &str) -> Option<Self> {
        Some(match s {
            "resume" => Self::Resume,
            "poll" => Self::Poll,
            "reminder" => Self::Reminder,
            "give_up" => Self::GiveUp,
            "settle" => Self::Settle,
            "copay" => Self::Copay,
            _ => return None,
        })
    }
}

/// An external effect to perform. Each carries the sequence number its idempotency key derives from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Sequence number within the workflow, unique and increasing.
    pub seq: u64,
    /// What to do.
    pub action: Action,
}

/// The effects the runner knows how to perform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Read the plan's detail and the patient's contact from the practice system.
    LoadPlan,
    /// Ask a lender whether the patient already holds an account.
    LookupCardholder {
        /// The lender.
        lender: LenderId,
        /// The amount.
        amount: Money,
    },
    /// Open an application at a lender.
    StartApplication {
        /// The lender.
        lender: LenderId,
        /// The amount.
        amount: Money,
    },
    /// Ask a lender where the application stands.
    PollApplication {
        /// The lender.
        lender: LenderId,
        /// The application.
        handle: ApplicationHandle,
    },
    /// Withdraw an application.
    CancelApplication {
        /// The lender.
        lender: LenderId,
        /// The application.
        handle: ApplicationHandle,
    },
    /// Find or create the patient's Stripe customer.
    EnsureCustomer,
    /// Create a single-use Checkout Session for the deposit.
    CreateDepositLink {
        /// The deposit.
        amount: Money,
    },
    /// A staff retry of a failed deposit payment: a pay link for what is still owed. The runner
    /// asks Stripe about `previous` (the deposit's last Checkout Session) first: a session still
    /// open and unpaid is the link again; one Stripe reports paid is reported as paid; otherwise
    /// (expired, or complete with a failed payment) a fresh session is created under this
    /// command's own idempotency key, so a crash-retry of the step never creates a second one.
    ReissueDepositLink {
        /// The deposit still owed.
        amount: Money,
        /// The deposit's last Checkout Session, when one was recorded.
        previous: Option<String>,
    },
    /// Create the in-house installment schedule.
    CreateInstallmentSchedule {
        /// The split.
        offer: InHouseOffer,
        /// Card on file: the saved card the patient agreed to have the installments charged to
        /// (the schedule charges it automatically); `None`: Stripe emails an invoice for each.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_method: Option<String>,
    },
    /// Card on file: the card was saved after the schedule was created; the schedule charges it
    /// from now on (`default_settings[default_payment_method]`, not re-created).
    SetScheduleCard {
        /// `sub_sched_…`.
        schedule_id: String,
        /// `pm_…`.
        payment_method: String,
    },
    /// Cancel the installment schedule.
    CancelSchedule {
        /// Stripe's schedule id.
        schedule_id: String,
    },
    /// Close the deposit link early.
    ExpireDepositLink {
        /// Stripe's Checkout Session id.
        session_id: String,
    },
    /// Send a message to the patient (channels are chosen by consent and quiet hours).
    SendMessage {
        /// Which message.
        message: MessageKind,
    },
    /// Write a ledger note to the practice system (check-then-act on the workflow marker).
    WriteLedgerNote {
        /// Which note.
        note: NoteKind,
    },
    /// Run the lender charge of the approved financing (the lender's purchase carries our
    /// reference, so a repeat finds it).
    SettleWithLender {
        /// The lender.
        lender: LenderId,
        /// The amount financed.
        amount: Money,
    },
    /// Match the intake's patient in the practice system (name, date of birth, phone), or create
    /// them where its API allows (search first, so a retry finds what an earlier try created).
    EnsurePracticePatient,
    /// Record the accepted case's treatment plan in the practice system, once the intake's
    /// patient is there ([`intake::case_plan`], marker [`intake::plan_marker`]: check before
    /// write), or hand the record to staff where the system's API takes no plans.
    WritePracticePlan,
    /// Create the card-saving link (Stripe Checkout in setup mode) of a card-on-file practice.
    CreateCardSetupLink,
    /// Read which card a completed setup session saved (`setup_intent.payment_method`).
    ReadSavedCard {
        /// `seti_…`.
        setup_intent: String,
    },
    /// Charge the saved card off-session (the patient is not present), under the command's
    /// deterministic idempotency key: a repeat is Stripe's replay, never a second charge.
    ChargeCard {
        /// What the charge pays (`deposit`, `copay`).
        purpose: String,
        /// The amount.
        amount: Money,
    },
    /// Create a single-use Checkout Session (payment mode) for a payment other than the deposit
    /// (the co-pay of a declined or unauthenticated off-session charge): the patient page shows
    /// it.
    CreatePayLink {
        /// What it pays (`copay`).
        purpose: String,
        /// The amount.
        amount: Money,
    },
}

impl Action {
    /// A stable label, used in idempotency keys and the effects journal.
    pub fn label(&self) -> &'static str {
        match self {
            Self::LoadPlan => "load_plan",
            Self::LookupCardholder { .. } => "lookup_cardholder",
            Self::StartApplication { .. } => "start_application",
            Self::PollApplication { .. } => "poll_application",
            Self::CancelApplication { .. } => "cancel_application",
            Self::EnsureCustomer => "ensure_customer",
            Self::CreateDepositLink { .. } => "create_deposit_link",
            Self::ReissueDepositLink { .. } => "reissue_deposit_link",
            Self::CreateInstallmentSchedule { .. } => "create_schedule",
            Self::CancelSchedule { .. } => "cancel_schedule",
            Self::ExpireDepositLink { .. } => "expire_deposit_link",
            Self::SendMessage { .. } => "send_message",
            Self::WriteLedgerNote { .. } => "write_note",
            Self::SettleWithLender { .. } => "settle_lender",
            Self::EnsurePracticePatient => "ensure_practice_patient",
            Self::WritePracticePlan => "write_practice_plan",
            Self::CreateCardSetupLink => "create_card_setup_link",
            Self::ReadSavedCard { .. } => "read_saved_card",
            Self::ChargeCard { .. } => "charge_card",
            Self::CreatePayLink { .. } => "create_pay_link",
            Self::SetScheduleCard { .. } => "set_schedule_card",
        }
    }

    /// True for actions that create a Stripe object (the invariant "never twice per workflow").
    pub fn creates_stripe_object(&self) -> bool {
        matches!(
            self,
            Self::CreateDepositLink { .. }
                | Self::ReissueDepositLink { .. }
                | Self::CreateInstallmentSchedule { .. }
        )
    }
}

/// What the runner learned about the patient and the policy when it loaded the plan. Contact data
/// itself is stored encrypted, outside the workflow state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientFacts {
    /// The patient has a mobile phone or an email on file.
    pub reachable: bool,
    /// State of residence, when known.
    pub state: Option<UsState>,
    /// The policy lets a cardholder lookup send the patient's identity.
    pub lookup_allowed: bool,
    /// The earliest time financing messages may go out (sedation rule).
    pub financing_not_before: DateTime<Utc>,
}

/// A fact Stripe reported after the workflow set payments up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum PaymentFact {
    /// A payment succeeded (invoice paid, checkout paid, payment intent succeeded).
    Paid {
        /// Stripe's id of the paid object.
        stripe_id: String,
        /// The amount.
        amount: Money,
    },
    /// A payment failed.
    Failed {
        /// Stripe's id of the failed object.
        stripe_id: String,
    },
    /// The schedule ran to its end.
    ScheduleCompleted,
    /// A Checkout Session was paid (`checkout.session.completed`, paid): when it is the deposit's,
    /// the deposit is paid. Reported beside the `Paid` fact, which carries the money.
    CheckoutCompleted {
        /// `cs_…`.
        session_id: String,
    },
    /// A Checkout Session expired unpaid (`checkout.session.expired`, 24 h by default): its link
    /// no longer works; the patient page issues a fresh one when the patient clicks.
    CheckoutExpired {
        /// `cs_…`.
        session_id: String,
    },
    /// The last retry of a payment failed: Stripe will not try again.
    FinalFailure {
        /// Stripe's id of the failed object.
        stripe_id: String,
    },
    /// A charge was refunded in Stripe (in part or in full; the amount is cumulative).
    Refunded {
        /// The charge (`ch_…`).
        stripe_id: String,
        /// How much of it is refunded so far.
        amount: Money,
        /// The charge's refunds as Stripe listed them (`GET /v1/refunds?charge=`, newest first),
        /// looked up by the runner before the event is applied; `None` when the lookup failed
        /// (or was not made): the cumulative rule decides ([`refunds`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refunds: Option<Vec<refunds::ListedRefund>>,
    },
    /// The cardholder disputed a charge (a chargeback).
    Disputed {
        /// The dispute.
        stripe_id: String,
        /// The disputed amount.
        amount: Money,
        /// Stripe's dispute reason (`fraudulent`, `product_not_received`, ...), when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A card-saving Checkout Session (setup mode) completed: the card is saved to the customer;
    /// which card is read from its SetupIntent.
    CardSetupCompleted {
        /// `cs_…`.
        session_id: String,
        /// `seti_…`.
        setup_intent: String,
    },
    /// A PaymentIntent paid one of the workflow's installment invoices (`invoice.paid`'s
    /// `payments`): recorded so that a dispute or refund of that charge, which carries no
    /// workflow metadata, finds the workflow.
    InvoicePaymentIntent {
        /// `in_…`.
        invoice_id: String,
        /// `pi_…`.
        payment_intent: String,
    },
    /// An installment invoice the schedule could not collect (`invoice.payment_failed`), with
    /// its hosted page: reported before the failure itself, so the patient's pay link is there
    /// when the payment-failed message goes out.
    InstallmentUnpaid {
        /// `in_…`.
        invoice_id: String,
        /// `hosted_invoice_url`.
        url: String,
        /// The amount due.
        amount: Money,
    },
    /// The installment schedule ended before its last installment: canceled, or aborted by
    /// Stripe after failed payments.
    ScheduleEnded {
        /// `sub_sched_…`.
        schedule_id: String,
        /// True for `aborted` (Stripe gave up after failed payments), false for `canceled`.
        aborted: bool,
    },
}

/// What staff decided on a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffAction {
    /// Try the failed step again (after fixing data or configuration).
    Retry,
    /// Stop the workflow and undo what was set up.
    Cancel,
    /// The task was handled outside Chairside: close the workflow.
    MarkHandled,
    /// Send the application link again.
    ResendLink,
    /// Take a lender's counteroffer: it finances what it approved; the remainder is offered as
    /// the in-house plan (when the practice has one).
    AcceptCounteroffer,
    /// Decline a lender's counteroffer and ask the next lender in the waterfall.
    NextLender,
    /// Record the decision of a link-only lender, read in its portal (approved, counteroffer,
    /// declined). The decision itself reaches the machine as [`Event::LenderDecided`] (built by
    /// the engine's staff service from the amount asked), never as [`Event::Staff`].
    RecordLenderDecision,
    /// Correct the plan total, the insurance estimate and the deposit that came in wrong. The
    /// values reach the machine as [`Event::AmountsCorrected`], never as [`Event::Staff`].
    CorrectAmounts,
}

/// Everything that can happen to a workflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// The plan and patient were read.
    PlanLoaded {
        /// The plan.
        plan: TreatmentPlan,
        /// What the runner learned about the patient.
        facts: PatientFacts,
    },
    /// The practice system's record could not be used (a decode error, a missing patient).
    PlanUnreadable {
        /// Why, without PHI.
        reason: String,
    },
    /// A cardholder lookup answered.
    CardholderLookedUp {
        /// The lender.
        lender: LenderId,
        /// `None` when no account was found or the lender has no lookup.
        found: Option<Decision>,
    },
    /// A lender answered a start or a poll, or sent a callback.
    LenderDecided {
        /// The lender.
        lender: LenderId,
        /// The answer.
        decision: Decision,
    },
    /// A lender call failed for good.
    LenderFailed {
        /// The lender.
        lender: LenderId,
        /// Why, without PHI.
        reason: String,
    },
    /// A status read of a live application got no usable answer after every retry (the lender
    /// was down, slow or rate limiting). Nothing is known to have changed: the application
    /// stands and is read again at the next poll, unlike [`Event::LenderFailed`].
    LenderUnanswered {
        /// The lender.
        lender: LenderId,
        /// The last failure, without PHI.
        reason: String,
    },
    /// The Stripe customer exists.
    CustomerReady {
        /// `cus_…`.
        customer_id: String,
    },
    /// The deposit link exists.
    DepositLinkCreated {
        /// `cs_…`.
        session_id: String,
        /// The link to send.
        url: String,
    },
    /// The pay link of [`Action::CreatePayLink`] exists.
    PayLinkCreated {
        /// What it pays (`copay`).
        purpose: String,
        /// `cs_…`.
        session_id: String,
        /// The link the patient page shows.
        url: String,
    },
    /// The installment schedule exists.
    ScheduleCreated {
        /// `sub_sched_…`.
        schedule_id: String,
    },
    /// A message went out on at least one channel.
    MessageSent {
        /// Which message.
        message: MessageKind,
    },
    /// A message could not go out on any channel.
    MessageUndeliverable {
        /// Which message.
        message: MessageKind,
        /// Why, without PHI.
        reason: String,
    },
    /// A ledger note is in the practice system (or was found there by marker).
    NoteWritten {
        /// Which note.
        note: NoteKind,
        /// When it was written.
        at: DateTime<Utc>,
    },
    /// The lender opened an application and gave a link for the patient.
    ApplicationOpened {
        /// The lender.
        lender: LenderId,
        /// The application, as the runner opened it.
        handle: ApplicationHandle,
        /// The lender's hosted page.
        link: String,
        /// When the lender's session lapses, when the lender said so
        /// ([`Decision::ApplicationStarted`]); otherwise the lender's [`PollSchedule`] decides.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// Schedule cancelled, application withdrawn, link expired: an undo step finished.
    Undone {
        /// The action that finished.
        action: String,
    },
    /// A timer fired.
    TimerFired {
        /// Which timer.
        timer: TimerKind,
    },
    /// Stripe reported a payment fact.
    Payment(PaymentFact),
    /// The plan was rejected or edited in the practice system after acceptance.
    PlanWithdrawn {
        /// Why (`rejected`, `edited`).
        reason: String,
    },
    /// Staff acted on the task.
    Staff {
        /// What they decided.
        action: StaffAction,
    },
    /// The lender settlement call answered.
    LenderSettled {
        /// The lender.
        lender: LenderId,
        /// What it did.
        settlement: Settlement,
    },
    /// An effect failed for good (Stripe, practice system, messaging).
    EffectFailed {
        /// The action that failed.
        action: Action,
        /// Why, without PHI.
        reason: String,
    },
    /// The runner gave up on an effect whose outcome is unknown: a timeout or a lost response
    /// after the other side may have acted. A staff retry repeats it under the same idempotency
    /// key and note marker, so that it reconciles with what may have happened instead of doing
    /// it twice.
    EffectIndeterminate {
        /// The action that may or may not have happened.
        action: Action,
        /// The sequence number of the command that was performed.
        seq: u64,
        /// Why, without PHI.
        reason: String,
    },
    /// The patient clicked "pay the deposit" after its Checkout Session expired: issue a fresh one.
    DepositLinkRequested,
    /// Staff corrected the amounts that came in wrong ([`correction`]): priced again from them.
    AmountsCorrected {
        /// The corrected amounts.
        correction: correction::Correction,
    },
    /// The card-saving link exists.
    CardSetupLinkCreated {
        /// `cs_…`.
        session_id: String,
        /// The link.
        url: String,
    },
    /// The patient agreed, on the patient page, that the practice charges the card they save
    /// (the exact wording shown).
    CardAuthorized {
        /// The wording the patient agreed to (amounts; no PHI).
        wording: String,
        /// The wording named the in-house plan's installments
        /// ([`WorkflowState::installments_for_card`]): the schedule may charge the card.
        #[serde(default)]
        installments: bool,
    },
    /// The patient chose, on the patient page, to pay the in-house plan's installments by the
    /// invoices Stripe emails instead of saving a card for them (card-on-file practices; the
    /// exact wording shown). The schedule is then created with emailed invoices.
    InstallmentInvoicesChosen {
        /// The wording the patient chose (amounts; no PHI).
        wording: String,
    },
    /// The installment schedule charges the saved card from now on.
    ScheduleCardSet {
        /// `sub_sched_…`.
        schedule_id: String,
    },
    /// The saved card was read from the setup session's SetupIntent.
    CardSaved {
        /// `pm_…`.
        payment_method: String,
    },
    /// An off-session charge of the saved card succeeded.
    CardCharged {
        /// What it paid.
        purpose: String,
        /// `pi_…`.
        payment_intent: String,
        /// The amount.
        amount: Money,
    },
    /// An off-session charge did not go through: declined, or the bank wants the patient to
    /// authenticate (HTTP 402).
    CardDeclined {
        /// What it was to pay.
        purpose: String,
        /// `pi_…`, when Stripe named one.
        payment_intent: Option<String>,
        /// Stripe's code and the issuer's decline code (`card_declined: insufficient_funds`);
        /// never card data.
        reason: String,
        /// True for `authentication_required`: the patient must confirm on-session.
        authentication: bool,
    },
    /// The patient pressed "start again" on the patient page after the lender's session lapsed
    /// (or after going quiet at the last lender): open a fresh session at that lender, under a
    /// new reference.
    LenderSessionRequested,
    /// The patient answered the in-house plan offer on the patient page.
    InHouseAnswered {
        /// True when the patient accepted the plan, false when they declined it.
        accepted: bool,
        /// The exact wording the patient agreed to or declined (amounts and schedule; no PHI).
        wording: String,
    },
    /// The intake's patient is in the practice system: found by the match rule, or created.
    PracticePatientReady {
        /// The patient's id there.
        patient_id: PatientId,
        /// True when Chairside created the record, false when it matched an existing one.
        created: bool,
    },
    /// The practice system's API cannot create the intake's patient: a person does.
    PracticePatientForStaff {
        /// Why, and what to do, without PHI.
        reason: String,
    },
    /// The accepted case's treatment plan is in the practice system.
    PracticePlanWritten {
        /// The plan's id there.
        plan_id: String,
        /// True when this attempt created it, false when an earlier one had (found by marker).
        created: bool,
    },
    /// The practice system's API takes no treatment plans: a person enters the record.
    PracticePlanForStaff {
        /// The record to enter and why, without PHI.
        reason: String,
    },
}

impl Event {
    /// A stable label for the audit trail.
    pub fn label(&self) -> &'static str {
        match self {
            Self::PlanLoaded { .. } => "plan_loaded",
            Self::PlanUnreadable { .. } => "plan_unreadable",
            Self::CardholderLookedUp { .. } => "cardholder_looked_up",
            Self::LenderDecided { .. } => "lender_decided",
            Self::LenderFailed { .. } => "lender_failed",
            Self::LenderUnanswered { .. } => "lender_unanswered",
            Self::CustomerReady { .. } => "customer_ready",
            Self::DepositLinkCreated { .. } => "deposit_link_created",
            Self::PayLinkCreated { .. } => "pay_link_created",
            Self::ScheduleCreated { .. } => "schedule_created",
            Self::MessageSent { .. } => "message_sent",
            Self::MessageUndeliverable { .. } => "message_undeliverable",
            Self::NoteWritten { .. } => "note_written",
            Self::ApplicationOpened { .. } => "application_opened",
            Self::Undone { .. } => "undone",
            Self::TimerFired { .. } => "timer_fired",
            Self::Payment(_) => "payment",
            Self::PlanWithdrawn { .. } => "plan_withdrawn",
            Self::Staff { .. } => "staff",
            Self::EffectFailed { .. } => "effect_failed",
            Self::EffectIndeterminate { .. } => "effect_indeterminate",
            Self::LenderSettled { .. } => "lender_settled",
            Self::InHouseAnswered { .. } => "in_house_answered",
            Self::DepositLinkRequested => "deposit_link_requested",
            Self::AmountsCorrected { .. } => "amounts_corrected",
            Self::PracticePatientReady { .. } => "practice_patient_ready",
            Self::PracticePatientForStaff { .. } => "practice_patient_for_staff",
            Self::PracticePlanWritten { .. } => "practice_plan_written",
            Self::PracticePlanForStaff { .. } => "practice_plan_for_staff",
            Self::CardSetupLinkCreated { .. } => "card_setup_link_created",
            Self::CardAuthorized { .. } => "card_authorized",
            Self::InstallmentInvoicesChosen { .. } => "installment_invoices_chosen",
            Self::ScheduleCardSet { .. } => "schedule_card_set",
            Self::CardSaved { .. } => "card_saved",
            Self::CardCharged { .. } => "card_charged",
            Self::CardDeclined { .. } => "card_declined",
            Self::LenderSessionRequested => "lender_session_requested",
        }
    }
}

/// How a practice collects what the patient pays directly (deposits): a single-use pay link
/// (Checkout in payment mode), or the card the patient saves (Checkout in setup mode), charged
/// off-session. Saving a card is never a precondition of anything (N.Y. GBL §519-a): a patient
/// of a card-on-file practice can still ask the patient page for a pay link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentPreference {
    /// A pay link per payment (the default).
    #[default]
    PayLink,
    /// The card on file, charged off-session; a decline or an authentication request falls back
    /// to a pay link and a staff task.
    CardOnFile,
}

/// The practice's rules, as the machine needs them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowConfig {
    /// The lender order and waterfall policy.
    pub waterfall: Waterfall,
    /// The deposit collected through Stripe before financing the rest.
    pub deposit: DepositRule,
    /// The in-house plan, if the practice offers one (its deposit rule is not used: the practice
    /// deposit above already came off).
    pub in_house: Option<InHouseTerms>,
    /// Delays after the application link before each reminder.
    pub reminder_delays: Vec<Duration>,
    /// After the last reminder, how long to wait before giving up on the patient.
    pub give_up_after: Duration,
    /// The longest wait between two lender status reads, whatever a lender's schedule says.
    pub poll_interval: Duration,
    /// Each lender's poll schedule and session life, from its client
    /// ([`FinancingProvider::poll_schedule`](financing_core::FinancingProvider::poll_schedule));
    /// the engine fills in every lender of the waterfall that has none here. A lender missing
    /// here gets [`PollSchedule::default`].
    #[serde(default)]
    pub lender_schedules: Vec<(LenderId, PollSchedule)>,
    /// How the patient pays the deposit: pay link or card on file.
    #[serde(default)]
    pub payment_preference: PaymentPreference,
    /// The practice's IANA time zone (`America/Los_Angeles`): a settlement day is the
    /// practice's day, and its charge runs that morning there. `None` (or a name that does not
    /// parse): UTC days, the charge at 15:00 UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Each lender's display name, as patients and staff know it (`CareCredit`), from its client
    /// ([`FinancingProvider::display_name`](financing_core::FinancingProvider::display_name)); the
    /// engine fills in every lender of the waterfall that has none here. A lender missing here
    /// gets [`default_lender_name`].
    #[serde(default)]
    pub lender_names: Vec<(LenderId, String)>,
}

/// The name of a lender Chairside ships with (`CareCredit`, `Sunbit`), else its id: what staff and
/// patients read when no client gave a display name.
pub fn default_lender_name(lender: &LenderId) -> String {
    match lender.as_str() {
        "carecredit" => "CareCredit".to_owned(),
        "sunbit" => "Sunbit".to_owned(),
        other => other.to_owned(),
    }
}

/// What the patient calls the practice's own payment plan (the in-house "lender").
pub const IN_HOUSE_NAME: &str = "in-house payment plan";

/// The reference of one application at a lender: `{workflow}-{seq}-{lender}`, where `seq` is the
/// sequence number of the command that opened it. Each attempt (a fresh session after a lapse,
/// a staff resend, a start over) is a new command, so a new reference and a new session at the
/// lender, while a repeat of the same command (a retry, a crash) sends the same reference and
/// finds the session it opened.
pub fn application_reference(
    workflow: &WorkflowId,
    lender: &LenderId,
    seq: u64,
) -> financing_core::ApplicationRef {
    financing_core::ApplicationRef::new(format!("{workflow}-{seq}-{lender}"))
}

/// A reference parsed back: the workflow, the lender, and the attempt's sequence number (`None`
/// for a reference written before attempts were numbered, `{workflow}-{lender}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedReference {
    /// The workflow.
    pub workflow: WorkflowId,
    /// The lender.
    pub lender: LenderId,
    /// The attempt's command sequence number.
    pub seq: Option<u64>,
}

/// Parses [`application_reference`]'s format, and the older `{workflow}-{lender}`. Unambiguous: a
/// workflow id (`wf_` and 24 hex digits) has no `-`, the sequence number is digits only, and the
/// lender id is everything after it (it may itself contain `-`). `None` for anything else.
pub fn parse_application_reference(reference: &str) -> Option<ParsedReference> {
    let (wf, rest) = reference.split_once('-')?;
    let hex = wf.strip_prefix("wf_")?;
    if hex.len() != 24 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (seq, lender) = match rest.split_once('-') {
        Some((n, lender)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(n.parse::<u64>().ok()?), lender)
        }
        _ => (None, rest),
    };
    if lender.is_empty() {
        return None;
    }
    Some(ParsedReference {
        workflow: WorkflowId::new(wf),
        lender: LenderId::new(lender),
        seq,
    })
}

impl WorkflowConfig {
    /// The display name of `lender` (its client's, else [`default_lender_name`]).
    pub fn lender_name(&self, lender: &LenderId) -> String {
        self.lender_names
            .iter()
            .find(|(id, _)| id == lender)
            .map_or_else(|| default_lender_name(lender), |(_, n)| n.clone())
    }

    /// The poll schedule of `lender` ([`PollSchedule::default`] when none was given).
    pub fn schedule_for(&self, lender: &LenderId) -> PollSchedule {
        self.lender_schedules
            .iter()
            .find(|(id, _)| id == lender)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

/// How financing ended, for the summary and the ledger note.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinancingResult {
    /// The lender and the amount it finances, if any.
    pub financed: Option<(LenderId, Money)>,
    /// The deposit the patient pays through Stripe.
    pub deposit: Money,
    /// The in-house plan, if any.
    pub in_house: Option<InHouseOffer>,
    /// A short path description for staff and the demo table (`carecredit approved`).
    pub path: String,
}

impl FinancingResult {
    /// The amount to name when a payment fails: a regular installment of the in-house plan (the
    /// second: the first carries the remainder cents), or its only one; without a plan, the
    /// deposit. `None` when there is nothing to name (no plan and no deposit): the message then
    /// names no amount rather than a made-up one.
    pub fn failed_payment_amount(&self) -> Option<Money> {
        match &self.in_house {
            Some(offer) => offer
                .installments
                .get(1)
                .or(offer.installments.first())
                .copied(),
            None => Some(self.deposit).filter(|d| !d.is_zero()),
        }
    }
}

/// Why a staff retry of a failed payment issues no pay link ([`WorkflowState::pay_link_retry`]).
/// The texts are for staff and carry no patient data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayLinkRefusal {
    /// The workflow was cancelled.
    #[error("the workflow was cancelled; nothing is collected any more")]
    Cancelled,
    /// No payment of this workflow failed.
    #[error("no payment of this workflow failed")]
    NoFailedPayment,
    /// The deposit is paid: nothing is owed through a pay link.
    #[error(
        "nothing is owed through a pay link: the deposit is already paid (Stripe retries a failed installment on its own schedule)"
    )]
    AlreadyPaid,
    /// No deposit is owed; what failed was an installment, which Stripe retries itself.
    #[error(
        "no deposit is owed: a failed installment is retried by Stripe on its own schedule; call the patient to update the card, then mark the task handled"
    )]
    InstallmentOnly,
    /// No Stripe customer was set up.
    #[error("no Stripe customer was set up for this workflow")]
    NoCustomer,
    /// A fresh pay link is being issued already.
    #[error("a fresh pay link is being issued already")]
    AlreadyIssuing,
}

/// The current lender's application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentApplication {
    /// The lender.
    pub lender: LenderId,
    /// The amount asked.
    pub amount: Money,
    /// When the lender was first contacted.
    pub contacted_at: DateTime<Utc>,
    /// Where it stands.
    pub phase: LenderPhase,
}

/// Where the current lender's application stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one per workflow, stored as JSON: boxing buys nothing
pub enum LenderPhase {
    /// A cardholder lookup is under way.
    LookingUp,
    /// The application is being opened.
    Starting,
    /// The link went to the patient; waiting for them and polling.
    AwaitingPatient {
        /// The application.
        handle: ApplicationHandle,
        /// The link.
        link: String,
        /// Reminders sent so far.
        reminders_sent: u32,
        /// When the lender's session opened and lapses, and any prequalification.
        #[serde(default)]
        session: LenderSession,
    },
    /// The lender needs a person (CareCredit `CallForAuth`, `DupQS`, an unknown status): the
    /// waterfall holds here, nothing is polled or sent, until staff act. `Retry` reads the lender
    /// again from where it was (`resume`), `MarkHandled` closes the workflow (handled outside
    /// Chairside), `Cancel` withdraws the application.
    HeldForStaff {
        /// The lender's instruction, as the staff task shows it.
        instruction: String,
        /// Where the application stood when it was held.
        resume: Box<LenderPhase>,
    },
}

/// A lender session's timing, as the machine tracks it for timers and the patient page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LenderSession {
    /// When the application link went out.
    #[serde(default)]
    pub opened_at: Option<DateTime<Utc>>,
    /// When the lender's hosted session lapses (the lender's word, else its schedule's session
    /// life); `None` when it does not lapse on its own.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The prequalification the lender reported, if any: the most the patient may finance there.
    /// Not financing: the machine keeps waiting for the real decision.
    #[serde(default)]
    pub prequalified: Option<Offer>,
    /// For a lender without an API (a link-only lender): when the waterfall stops waiting for
    /// staff to record its decision. `None` for a lender whose status is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_by: Option<DateTime<Utc>>,
    /// When the lender first said the patient had submitted the application and it is under
    /// review ([`financing_core::Decision::UnderReview`]): from then on the patient is not
    /// reminded and the wait does not end as "the patient did not finish".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
}

impl LenderSession {
    /// True when the session has lapsed at `now`: its link must not be sent again, and the patient
    /// page must not offer it (the waterfall moves on as soon as the lender reports the lapse).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// The workflow's position in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one per workflow, stored as JSON: boxing buys nothing
pub enum Stage {
    /// Reading the plan.
    LoadingPlan,
    /// Waiting for the sedation deferral to pass.
    Deferred,
    /// Asking a lender.
    Financing(CurrentApplication),
    /// Setting up Stripe: customer, then deposit link, then schedule.
    Payments(PaymentStep),
    /// Sending the summary.
    Notifying,
    /// Writing the outcome note.
    WritingNote,
    /// Nothing left to do (Done, Cancelled, or waiting on staff).
    Settled,
    /// The in-house plan is offered: nothing is set up at Stripe until the patient accepts it on
    /// the patient page. Reminders go out meanwhile; after the last, staff get a task.
    OfferingInHouse {
        /// Reminders sent so far.
        reminders_sent: u32,
    },
    /// Undoing what was set up after the plan was withdrawn.
    Undoing {
        /// Undo commands still outstanding.
        outstanding: u32,
    },
}

/// The Stripe step under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStep {
    /// Finding or creating the customer.
    Customer,
    /// Creating the deposit link.
    DepositLink,
    /// Creating the schedule.
    Schedule,
    /// Creating the card-saving link (card-on-file practices).
    CardSetup,
}

/// What Chairside set up at Stripe for this workflow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeRecord {
    /// `cus_…`.
    pub customer_id: Option<String>,
    /// `cs_…`.
    pub checkout_session_id: Option<String>,
    /// The deposit link.
    pub checkout_url: Option<String>,
    /// `sub_sched_…`.
    pub schedule_id: Option<String>,
    /// Stripe ids of payments already noted in the ledger (each once).
    pub payments_noted: Vec<String>,
    /// Stripe ids of failures already handled (each once).
    pub failures_handled: Vec<String>,
    /// The deposit's Checkout Session was paid.
    #[serde(default)]
    pub deposit_paid: bool,
    /// Deposit Checkout Sessions that expired unpaid, oldest first.
    #[serde(default)]
    pub expired_sessions: Vec<String>,
    /// A fresh deposit Checkout Session is being created (the patient asked after an expiry).
    #[serde(default)]
    pub reissuing_deposit_link: bool,
    /// The link being issued answers a staff retry of a failed payment: once it exists, the
    /// patient is sent the patient page's link ([`MessageKind::PayLinkReissued`]).
    #[serde(default)]
    pub staff_pay_link: bool,
    /// Refunds and disputes already handled, as `{id}:{amount in minor units}` (each once).
    #[serde(default)]
    pub reversals_handled: Vec<String>,
    /// The schedule ended before its last installment (canceled or aborted): nothing to cancel.
    #[serde(default)]
    pub schedule_ended: bool,
    /// The practice collects this workflow's deposit from the card on file: the patient page
    /// offers saving a card (and a pay link on request).
    #[serde(default)]
    pub card_on_file: bool,
    /// The card-saving Checkout Session (setup mode), while it is open.
    #[serde(default)]
    pub card_setup_session_id: Option<String>,
    /// Its link.
    #[serde(default)]
    pub card_setup_url: Option<String>,
    /// The patient's agreement to charges of the saved card: when, and the wording shown.
    #[serde(default)]
    pub card_authorization: Option<InHouseAcceptance>,
    /// The saved card (`pm_…`): a Stripe id, never card data.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// Off-session charges of the saved card, oldest first.
    #[serde(default)]
    pub card_charges: Vec<CardCharge>,
    /// PaymentIntents that paid installment invoices (each once): how a dispute or a refund of
    /// an installment finds its workflow.
    #[serde(default)]
    pub invoice_payment_intents: Vec<String>,
    /// The patient's card agreement names the in-house plan's installments.
    #[serde(default)]
    pub card_covers_installments: bool,
    /// The card the installment schedule charges automatically (asked for or set); `None`:
    /// Stripe emails the installment invoices.
    #[serde(default)]
    pub schedule_card: Option<String>,
    /// Card on file: the installments are invoiced by email instead of charged to a card, by
    /// the patient's choice on the page (the wording) or because no card was saved while the
    /// schedule waited ([`StripeRecord::schedule_awaits_card`]; the wording says so).
    #[serde(default)]
    pub installments_by_invoice: Option<InHouseAcceptance>,
    /// Card on file, the in-house plan accepted: its schedule waits until the patient saved a
    /// card for the installments (or confirmed the saved one), or chose emailed invoices, so
    /// that the first installment is charged to the card, never emailed. The workflow's flow
    /// (summary, outcome note) goes on meanwhile.
    #[serde(default)]
    pub schedule_awaits_card: bool,
    /// The schedule is being created beside the flow, once the patient decided.
    #[serde(default)]
    pub schedule_creating: bool,
    /// An installment the saved card did not pay (declined, or the bank asked for
    /// authentication): its invoice's hosted page, where the patient pays or authenticates it.
    /// Cleared once that invoice is paid.
    #[serde(default)]
    pub installment_pay_link: Option<InstallmentPayLink>,
}

/// A failed installment's own pay link (Stripe's hosted invoice page): paying it settles that
/// invoice, so Stripe's retries and the patient's payment can never both charge it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallmentPayLink {
    /// `in_…`.
    pub invoice_id: String,
    /// `hosted_invoice_url`.
    pub url: String,
    /// The amount due.
    pub amount: Money,
}

impl StripeRecord {
    /// The off-session charge for `purpose`, if one was made or is under way.
    pub fn card_charge(&self, purpose: &str) -> Option<&CardCharge> {
        self.card_charges
            .iter()
            .rev()
            .find(|c| c.purpose == purpose)
    }
}

/// One off-session charge of the saved card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardCharge {
    /// What it pays (`deposit`).
    pub purpose: String,
    /// The amount.
    pub amount: Money,
    /// Where it stands.
    pub state: CardChargeState,
}

/// Where an off-session charge stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "charge", rename_all = "snake_case")]
pub enum CardChargeState {
    /// Sent to Stripe (or about to be).
    Charging,
    /// Paid.
    Paid {
        /// `pi_…`.
        payment_intent: String,
    },
    /// Declined, or the bank asked for authentication: the patient got a pay link.
    Failed {
        /// Stripe's code and the decline code.
        reason: String,
        /// True for `authentication_required`.
        authentication: bool,
    },
}

/// The patient's acceptance of the in-house plan, as recorded from the patient page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InHouseAcceptance {
    /// When the runner applied the acceptance.
    pub at: DateTime<Utc>,
    /// The exact wording the patient agreed to.
    pub wording: String,
}

/// A workflow's whole state, stored as one JSON document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowState {
    /// The id.
    pub id: WorkflowId,
    /// The key.
    pub key: WorkflowKey,
    /// The patient.
    pub patient_id: PatientId,
    /// When the practice system recorded the acceptance.
    pub accepted_at: DateTime<Utc>,
    /// The status.
    pub status: Status,
    /// The stage.
    pub stage: Stage,
    /// Total, insurance and patient portion.
    pub split: Option<CoverageSplit>,
    /// The deposit.
    pub deposit: Option<Money>,
    /// What lenders are asked to finance.
    pub financing_amount: Option<Money>,
    /// What the runner learned about the patient.
    pub facts: Option<PatientFacts>,
    /// The waterfall's record: which lenders saw the application and how each ended.
    pub attempts: Vec<Attempt>,
    /// How financing ended.
    pub result: Option<FinancingResult>,
    /// Stripe objects.
    pub stripe: StripeRecord,
    /// The open staff task.
    pub staff_task: Option<StaffTask>,
    /// The last action that failed for good, for a staff retry.
    pub failed_action: Option<Action>,
    /// The patient's acceptance of the in-house plan: when, and the wording agreed to. Nothing
    /// in house is set up at Stripe without it.
    #[serde(default)]
    pub in_house_acceptance: Option<InHouseAcceptance>,
    /// Lenders whose counteroffer staff passed on: the waterfall routes past them as if they
    /// had declined (their attempts stay in the record as they happened).
    #[serde(default)]
    pub passed_counteroffers: Vec<LenderId>,
    /// When the outcome ledger note was written (operatory-to-ledger time ends here).
    pub ledger_written_at: Option<DateTime<Utc>>,
    /// Next command sequence number.
    pub next_seq: u64,
    /// The key sequence of the failed action when its failure was indeterminate: a staff retry
    /// reuses it ([`WorkflowState::key_seq`]). `None` when the failure was definite (a fresh key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_key_seq: Option<u64>,
    /// Commands that repeat an earlier attempt whose outcome is unknown, by sequence number: the
    /// sequence number their idempotency key and note marker derive from.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub key_seqs: std::collections::BTreeMap<u64, u64>,
    /// The treatment date (from the plan or its appointment), when known: the lender charge runs
    /// then.
    #[serde(default)]
    pub treatment_date: Option<NaiveDate>,
    /// The lender settlement of a financed plan.
    #[serde(default)]
    pub settlement: Option<LenderSettlement>,
    /// The intake this workflow came from, when it did not come from a detected plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake: Option<intake::IntakeLink>,
    /// The display name of every lender this workflow asked, recorded when it was asked, so
    /// everything rendered from the state (dashboard, ledger note, summary) names lenders as
    /// patients know them, never by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lender_names: Vec<(LenderId, String)>,
    /// The offers lenders approved (in full or in part), the latest per lender, as the lender
    /// reported them: amount, promotion, term, APR. The financed lender's is the plan's terms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<Offer>,
    /// The day-of-service co-pay, when the patient owes one on the treatment day
    /// ([`due::due`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copay: Option<due::Copay>,
}

impl WorkflowState {
    /// A new workflow for an accepted plan.
    pub fn new(key: WorkflowKey, patient_id: PatientId, accepted_at: DateTime<Utc>) -> Self {
        Self {
            id: WorkflowId::derive(&key),
            key,
            patient_id,
            accepted_at,
            status: Status::Active,
            stage: Stage::LoadingPlan,
            split: None,
            deposit: None,
            financing_amount: None,
            facts: None,
            attempts: Vec::new(),
            result: None,
            stripe: StripeRecord::default(),
            staff_task: None,
            failed_action: None,
            in_house_acceptance: None,
            passed_counteroffers: Vec::new(),
            ledger_written_at: None,
            next_seq: 1,
            failed_key_seq: None,
            key_seqs: std::collections::BTreeMap::new(),
            treatment_date: None,
            settlement: None,
            intake: None,
            lender_names: Vec::new(),
            offers: Vec::new(),
            copay: None,
        }
    }

    /// A new workflow for a complete intake (`intake`'s plan and patient ids; see [`intake`]).
    pub fn from_intake(
        practice_id: PracticeId,
        intake_id: &str,
        accepted_at: DateTime<Utc>,
    ) -> Self {
        let key = WorkflowKey {
            practice_id,
            plan_id: intake::plan_id(intake_id),
            revision: "1".into(),
        };
        let mut state = Self::new(key, intake::patient_id(intake_id), accepted_at);
        state.intake = Some(intake::IntakeLink::new(intake_id));
        state
    }

    /// The patient whose ledger takes this workflow's notes: the plan's patient, or for an
    /// intake the practice system's patient once matched or created (`None` before).
    pub fn ledger_patient(&self) -> Option<&PatientId> {
        match &self.intake {
            None => Some(&self.patient_id),
            Some(link) => link.practice_patient.as_ref(),
        }
    }

    /// The display name of `lender`: the one recorded when it was asked, else
    /// [`default_lender_name`].
    pub fn lender_name(&self, lender: &LenderId) -> String {
        self.lender_names
            .iter()
            .find(|(id, _)| id == lender)
            .map_or_else(|| default_lender_name(lender), |(_, n)| n.clone())
    }

    /// The terms of the financing, as the financed lender reported them with its approval
    /// (`None` without a financing lender, or for a returning cardholder, whose lookup reports no
    /// terms).
    pub fn financed_offer(&self) -> Option<&Offer> {
        let (lender, _) = self.result.as_ref()?.financed.as_ref()?;
        self.offers.iter().rev().find(|o| &o.lender == lender)
    }

    /// How financing ended, for people: [`FinancingResult::path`] with the lender's display name
    /// in place of its id (`CareCredit approved`). `None` before financing ended.
    pub fn outcome_label(&self) -> Option<String> {
        let result = self.result.as_ref()?;
        Some(match &result.financed {
            Some((lender, _)) => match result
                .path
                .strip_prefix(lender.as_str())
                .filter(|rest| rest.starts_with(' '))
            {
                Some(rest) => format!("{}{rest}", self.lender_name(lender)),
                None => result.path.clone(),
            },
            None => result.path.clone(),
        })
    }

    /// The sequence number command `seq`'s idempotency key and note marker derive from: its own,
    /// or, for a staff retry of an attempt whose outcome is unknown, that attempt's (DESIGN.md:
    /// "a retry after an indeterminate failure reconciles under the same key first").
    pub fn key_seq(&self, seq: u64) -> u64 {
        self.key_seqs.get(&seq).copied().unwrap_or(seq)
    }

    /// The idempotency key of command `command`: `{workflow}:{action}:{key_seq}`.
    pub fn command_key(&self, command: &Command) -> String {
        self.id
            .idempotency_key(command.action.label(), self.key_seq(command.seq))
    }

    /// The first command of a new workflow.
    pub fn start(&mut self) -> Command {
        let seq = self.next_seq;
        self.next_seq += 1;
        Command {
            seq,
            action: Action::LoadPlan,
        }
    }

    /// Operatory-to-ledger time: from acceptance in the practice system to the outcome note.
    pub fn operatory_to_ledger(&self) -> Option<chrono::Duration> {
        self.ledger_written_at.map(|at| at - self.accepted_at)
    }

    /// What a staff "Retry" on a failed payment may re-issue: the deposit still owed, as a fresh
    /// pay link, or why not. Pure; the staff service refuses with it before anything is queued
    /// and the machine judges with it again when it applies the retry.
    ///
    /// A failed installment is not re-issued as a link: Stripe retries it on its own schedule,
    /// and a second way to pay it could charge the patient twice.
    ///
    /// # Errors
    /// The [`PayLinkRefusal`].
    pub fn pay_link_retry(&self) -> Result<Money, PayLinkRefusal> {
        if self.status == Status::Cancelled {
            return Err(PayLinkRefusal::Cancelled);
        }
        let stripe = &self.stripe;
        if stripe.failures_handled.is_empty() {
            return Err(PayLinkRefusal::NoFailedPayment);
        }
        if stripe.deposit_paid {
            return Err(PayLinkRefusal::AlreadyPaid);
        }
        let deposit = self
            .result
            .as_ref()
            .map(|r| r.deposit)
            .filter(|d| !d.is_zero());
        let Some(deposit) = deposit else {
            return Err(PayLinkRefusal::InstallmentOnly);
        };
        if stripe.customer_id.is_none() {
            return Err(PayLinkRefusal::NoCustomer);
        }
        if stripe.reissuing_deposit_link || stripe.staff_pay_link {
            return Err(PayLinkRefusal::AlreadyIssuing);
        }
        Ok(deposit)
    }

    /// The amount a payment-failed message names ([`FinancingResult::failed_payment_amount`]);
    /// `None` before financing ended or when there is nothing to name.
    pub fn failed_payment_amount(&self) -> Option<Money> {
        self.result.as_ref()?.failed_payment_amount()
    }

    /// The current lender's session, when an application is open at a lender: what the patient
    /// page needs to tell a live link from a lapsed one.
    pub fn lender_session(&self) -> Option<(&LenderId, &str, &LenderSession)> {
        match &self.stage {
            Stage::Financing(c) => match &c.phase {
                LenderPhase::AwaitingPatient { link, session, .. } => {
                    Some((&c.lender, link.as_str(), session))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// A short description of where the workflow stands, for staff.
    pub fn stage_label(&self) -> String {
        match &self.stage {
            Stage::LoadingPlan => "reading plan".into(),
            Stage::Deferred => "deferred (sedation)".into(),
            Stage::Financing(c) => match &c.phase {
                LenderPhase::LookingUp => {
                    format!("{}: cardholder lookup", self.lender_name(&c.lender))
                }
                LenderPhase::Starting => {
                    format!("{}: opening application", self.lender_name(&c.lender))
                }
                LenderPhase::AwaitingPatient {
                    reminders_sent,
                    session,
                    ..
                } => match &session.prequalified {
                    _ if session.decide_by.is_some() => format!(
                        "{}: link sent; waiting for staff to record the lender's decision",
                        c.lender
                    ),
                    Some(p) => format!(
                        "{}: prequalified up to {}, waiting on the patient's purchase ({reminders_sent} reminders)",
                        self.lender_name(&c.lender),
                        p.amount
                    ),
                    None => format!(
                        "{}: waiting on patient ({reminders_sent} reminders)",
                        self.lender_name(&c.lender)
                    ),
                },
                LenderPhase::HeldForStaff { .. } => {
                    format!(
                        "{}: held until staff act on the lender's request",
                        self.lender_name(&c.lender)
                    )
                }
            },
            Stage::Payments(step) => format!("stripe: {step:?}").to_lowercase(),
            Stage::Notifying => "sending summary".into(),
            Stage::WritingNote => "writing ledger note".into(),
            Stage::Settled => match &self.settlement {
                Some(s) => format!(
                    "{}; {}",
                    self.status.label(),
                    s.label()
                        .replacen(s.lender.as_str(), &self.lender_name(&s.lender), 1)
                ),
                None if self.stripe.schedule_awaits_card && self.status != Status::Cancelled => {
                    format!(
                        "{}; installments wait for the patient's card",
                        self.status.label()
                    )
                }
                None => self.status.label().into(),
            },
            Stage::OfferingInHouse { reminders_sent } => {
                format!("in-house plan offered, waiting on patient ({reminders_sent} reminders)")
            }
            Stage::Undoing { .. } => "cancelling".into(),
        }
    }
}
#[cfg(test)]
mod tests;

/// Where the patient stands, as the patient page words it: lenders by id (the page names them),
/// amounts only where the page already shows them, no PHI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatientStatus {
    /// The plan is being read, or financing waits for the next day (sedation).
    Preparing,
    /// An application is open (or being opened) at the lender: the patient applies there.
    Applying {
        /// The lender.
        lender: LenderId,
    },
    /// The lender prequalified the patient; the purchase or application is still to finish.
    Prequalified {
        /// The lender.
        lender: LenderId,
        /// Up to this amount.
        amount: Money,
    },
    /// The lender's session lapsed: if the patient finished, the lender is reviewing it;
    /// otherwise the page offers to start again (a fresh session).
    SessionLapsed {
        /// The lender.
        lender: LenderId,
    },
    /// The lender is reviewing the application: the patient submitted it, or the lender asked
    /// for a person (the office is on it).
    InReview {
        /// The lender.
        lender: LenderId,
    },
    /// The practice's own payment plan is offered and waits for the patient's answer.
    PlanOffered,
    /// Financing is arranged (a lender approved, or the patient accepted the plan); something
    /// may still be due (the deposit).
    Approved,
    /// What was due now is paid (the deposit, or a first payment).
    Paid,
    /// Nothing for the patient to pay (insurance covers it).
    NothingDue,
    /// No lender approved and no plan was taken: the office will call.
    Declined,
    /// The office has to act before anything else happens (a counteroffer to discuss, a
    /// problem to fix): it will be in touch.
    WithTheOffice,
}

impl PatientStatus {
    /// A stable label (`applying`, `pending`, ...), for tests and the page's CSS class.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Applying { .. } => "applying",
            Self::Prequalified { .. } => "prequalified",
            Self::SessionLapsed { .. } => "session_lapsed",
            Self::InReview { .. } => "pending",
            Self::PlanOffered => "plan_offered",
            Self::Approved => "approved",
            Self::Paid => "paid",
            Self::NothingDue => "nothing_due",
            Self::Declined => "declined",
            Self::WithTheOffice => "with_the_office",
        }
    }
}

impl WorkflowState {
    /// The lender whose session a patient's "start again" reopens: the current lender when its
    /// session lapsed (`now`) while still waiting on the patient, or the last lender asked when
    /// the patient went quiet there (the session lapsed or the reminders ran out) and staff have
    /// not acted yet. `None` otherwise.
    pub fn restartable_lender(&self, now: DateTime<Utc>) -> Option<&LenderId> {
        match (&self.stage, self.status) {
            (Stage::Financing(c), Status::Active) => match &c.phase {
                LenderPhase::AwaitingPatient { session, .. }
                    if session.expired(now) && session.submitted_at.is_none() =>
                {
                    Some(&c.lender)
                }
                _ => None,
            },
            (Stage::Settled, Status::WaitingOnStaff)
                if self.result.is_none()
                    && self
                        .staff_task
                        .as_ref()
                        .is_some_and(|t| t.kind == TaskKind::PatientQuiet) =>
            {
                self.attempts
                    .last()
                    .filter(|a| {
                        matches!(
                            a.outcome,
                            financing_core::AttemptOutcome::Expired
                                | financing_core::AttemptOutcome::Abandoned
                        )
                    })
                    .map(|a| &a.lender)
            }
            _ => None,
        }
    }

    /// Where the patient stands at `now` ([`PatientStatus`]).
    pub fn patient_status(&self, now: DateTime<Utc>) -> PatientStatus {
        if let Some(lender) = self.restartable_lender(now) {
            return PatientStatus::SessionLapsed {
                lender: lender.clone(),
            };
        }
        match (&self.stage, self.status) {
            (Stage::LoadingPlan | Stage::Deferred, Status::Active) => PatientStatus::Preparing,
            (Stage::Financing(c), _) => match &c.phase {
                LenderPhase::HeldForStaff { .. } => PatientStatus::InReview {
                    lender: c.lender.clone(),
                },
                LenderPhase::AwaitingPatient { session, .. } if session.submitted_at.is_some() => {
                    PatientStatus::InReview {
                        lender: c.lender.clone(),
                    }
                }
                LenderPhase::AwaitingPatient { session, .. } => match &session.prequalified {
                    Some(p) => PatientStatus::Prequalified {
                        lender: c.lender.clone(),
                        amount: p.amount,
                    },
                    None => PatientStatus::Applying {
                        lender: c.lender.clone(),
                    },
                },
                LenderPhase::LookingUp | LenderPhase::Starting => PatientStatus::Applying {
                    lender: c.lender.clone(),
                },
            },
            (Stage::OfferingInHouse { .. }, Status::Active) => PatientStatus::PlanOffered,
            (_, Status::WaitingOnStaff) => match self.staff_task.as_ref().map(|t| t.kind) {
                Some(TaskKind::NoFinancing) if self.in_house_acceptance.is_none() => {
                    PatientStatus::Declined
                }
                Some(TaskKind::PatientQuiet)
                    if self
                        .result
                        .as_ref()
                        .is_some_and(|r| r.in_house.is_some() && r.financed.is_none())
                        && self.in_house_acceptance.is_none() =>
                {
                    PatientStatus::PlanOffered
                }
                _ if self.result.is_some() => self.settled_status(),
                _ => PatientStatus::WithTheOffice,
            },
            _ if self.result.is_some() => self.settled_status(),
            _ => PatientStatus::Preparing,
        }
    }

    fn settled_status(&self) -> PatientStatus {
        let Some(result) = &self.result else {
            return PatientStatus::Preparing;
        };
        let portion_zero = self.split.is_some_and(|s| s.patient_portion.is_zero());
        if portion_zero {
            return PatientStatus::NothingDue;
        }
        let deposit_due = !result.deposit.is_zero();
        if (deposit_due && self.stripe.deposit_paid)
            || (!deposit_due && !self.stripe.payments_noted.is_empty())
        {
            PatientStatus::Paid
        } else {
            PatientStatus::Approved
        }
    }
}
