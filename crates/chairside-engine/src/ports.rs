//! The seams between the runner and the outside world. Adapters over the connector crates
//! implement them (`adapters`); tests implement them in memory.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use financing_core::{
    InHouseOffer, InstallmentInterval, LocationId, Money, PatientContact, PatientId, PlanId,
    PracticeId, ProviderError, TreatmentPlan, UsState,
};
use serde::{Deserialize, Serialize};

use chairside_workflow::WorkflowId;

/// Every external failure, classified: the lender trait's error, reused for every system.
pub type ExternalError = ProviderError;

/// How a plan looks in a change feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PlanState {
    /// Accepted by the patient: start a workflow.
    Accepted,
    /// Rejected (or otherwise withdrawn) after acceptance: cancel what was set up.
    Rejected,
    /// Deleted in the practice system: withdraw like a rejection.
    Deleted,
    /// Anything else (proposed, completed, unknown): nothing to do.
    Other(String),
}

/// One plan from a change feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// The plan.
    pub plan_id: PlanId,
    /// The system's change marker (its last-modified time, or a fingerprint where the system
    /// has none). Not the workflow's revision: detection fingerprints what is financed
    /// ([`financing_core::check::fingerprint`]), so a touch is not a new revision. Names the
    /// version of the record in staff tasks about it.
    pub revision: String,
    /// The patient.
    pub patient_id: PatientId,
    /// Its state.
    pub state: PlanState,
    /// When it was accepted, when the system says.
    pub accepted_at: Option<DateTime<Utc>>,
}

/// A record of the change feed that could not be read. Detection moves past it and opens a staff
/// task naming the plan and the field path (never the value), once per plan and marker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableRecord {
    /// The plan, when its id could be read; else `None` (the task names the row).
    pub plan_id: Option<PlanId>,
    /// The version of the record (its change time when readable, else the row's position).
    pub marker: String,
    /// Where reading failed: the field path and the kind of failure, never the value.
    pub field: String,
}

/// What a poll of the change feed found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanChanges {
    /// Changed plans, oldest first.
    pub plans: Vec<PlanSummary>,
    /// Records that could not be read (the others are in `plans`).
    pub unreadable: Vec<UnreadableRecord>,
    /// The cursor to store for the next poll.
    pub next_cursor: String,
}

impl PlanChanges {
    /// Changes with every record readable.
    pub fn new(plans: Vec<PlanSummary>, next_cursor: String) -> Self {
        Self {
            plans,
            unreadable: Vec::new(),
            next_cursor,
        }
    }
}

/// A practice system (Dentrix Ascend, NexHealth, Open Dental), as the orchestrator needs it.
#[async_trait]
pub trait PracticeSystem: Send + Sync + fmt::Debug {
    /// A short name for the cursor table and logs (`dentrix`, `nexhealth`, `opendental`).
    fn source(&self) -> &str;

    /// Plans changed since `cursor` (all of them when `None`), following pages to the end.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn changed_plans(&self, cursor: Option<&str>) -> Result<PlanChanges, ExternalError>;

    /// `cursor` (one this system wrote) moved back to `now` if it is past it: a record whose edit
    /// time is in the future (a wrong clock) must not move detection past plans edited before that
    /// time. The records past `now` are read again on the next polls, which is harmless (a plan
    /// seen twice starts one workflow). The default leaves the cursor as it is, for systems whose
    /// cursor is not a time.
    fn clamp_cursor(&self, cursor: &str, now: DateTime<Utc>) -> String {
        let _ = now;
        cursor.to_owned()
    }

    /// The plan's procedures, fees and insurance estimates.
    ///
    /// # Errors
    /// A classified [`ExternalError`]; a record that cannot be decoded is permanent.
    async fn plan(&self, summary: &PlanSummary) -> Result<TreatmentPlan, ExternalError>;

    /// The patient's contact data.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn patient(&self, patient: &PatientId) -> Result<PatientContact, ExternalError>;

    /// Our ledger note carrying `marker`, if one was already written (check before write).
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn find_note(
        &self,
        patient: &PatientId,
        marker: &str,
    ) -> Result<Option<String>, ExternalError>;

    /// Writes a ledger note carrying `marker`; returns the system's id for it.
    ///
    /// # Errors
    /// A classified [`ExternalError`]; a timeout is indeterminate (reconciled by `find_note`).
    async fn write_note(
        &self,
        patient: &PatientId,
        marker: &str,
        text: &str,
    ) -> Result<String, ExternalError>;

    /// Finds the intake's patient (name, date of birth, phone:
    /// [`chairside_workflow::intake::same_patient`]) or creates them, search first: a repeat after
    /// an unknown outcome finds the record the earlier call created instead of making a second.
    /// The default is a system whose API cannot create patients (the record is left to staff).
    ///
    /// # Errors
    /// A classified [`ExternalError`]; a create whose outcome is unknown is indeterminate.
    async fn ensure_patient(&self, who: &PatientContact) -> Result<EnsuredPatient, ExternalError> {
        let _ = who;
        Ok(EnsuredPatient::NotSupported {
            reason: format!(
                "{} offers no documented way to create a patient through its API",
                self.source()
            ),
        })
    }
    /// Records an accepted intake case's treatment plan on the patient (`plan`, carrying
    /// `marker`), check then act: a plan already carrying the marker is found, never created
    /// again. The default is a system whose API takes no treatment plans (NexHealth's are
    /// read-only, Dentrix Ascend's unconfirmed: INTEGRATIONS.md): a person enters the record.
    ///
    /// # Errors
    /// A classified [`ExternalError`]; a create whose outcome is unknown is indeterminate
    /// (reconciled by the marker on the next try).
    async fn ensure_plan(
        &self,
        patient: &PatientId,
        marker: &str,
        plan: &chairside_workflow::intake::CasePlan,
    ) -> Result<PlanWrite, ExternalError> {
        let _ = (patient, marker, plan);
        Ok(PlanWrite::NotSupported {
            reason: format!(
                "{} offers no documented way to write a treatment plan through its API",
                self.source()
            ),
        })
    }

    /// Posts a Stripe payment to the patient's ledger as a payment, once per `stripe_id` (the
    /// marker it carries): a repeat after a crash or a lost answer finds it first. The default
    /// is [`PaymentPosting::NotSupported`]: the system takes no payments through its API
    /// (Dentrix Ascend: INTEGRATIONS.md "Ledger / payment posting: UNCONFIRMED"), so the
    /// runner writes a note instead.
    ///
    /// # Errors
    /// A classified [`ExternalError`]; a timeout or 5xx is indeterminate (reconciled by the
    /// marker on the next try).
    async fn post_payment(
        &self,
        patient: &PatientId,
        stripe_id: &str,
        amount: Money,
        note: &str,
    ) -> Result<PaymentPosting, ExternalError> {
        let _ = (patient, stripe_id, amount, note);
        Ok(PaymentPosting::NotSupported)
    }

    /// Reverses `amount` (above zero) of a refunded Stripe payment in the patient's ledger, once
    /// per `refund_key` ([`refund_marker`]; see [`chairside_workflow::refunds`]): Open Dental a
    /// negative payment, NexHealth a positive one (its refund). The default is
    /// [`PaymentPosting::NotSupported`] (Dentrix Ascend takes no payments through its API): the
    /// runner writes a note, and staff have the task with the exact amount.
    ///
    /// # Errors
    /// As [`PracticeSystem::post_payment`].
    async fn post_refund(
        &self,
        patient: &PatientId,
        refund_key: &str,
        amount: Money,
        note: &str,
    ) -> Result<PaymentPosting, ExternalError> {
        let _ = (patient, refund_key, amount, note);
        Ok(PaymentPosting::NotSupported)
    }
}

/// What [`PracticeSystem::ensure_patient`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnsuredPatient {
    /// An existing patient passed the match rule.
    Matched(PatientId),
    /// Chairside created the patient.
    Created(PatientId),
    /// The system's API cannot create patients: a person creates the record.
    NotSupported {
        /// Why (no PHI), for the staff task.
        reason: String,
    },
}

/// What [`PracticeSystem::ensure_plan`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanWrite {
    /// Written now: the system's id for the plan.
    Written(String),
    /// A plan carrying the marker was already there (an earlier attempt went through).
    AlreadyWritten(String),
    /// The system's API takes no treatment plans: a person enters the record.
    NotSupported {
        /// Why (no PHI), for the staff task.
        reason: String,
    },
}

/// What posting a payment to the practice's ledger did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentPosting {
    /// Posted now: the system's id for the payment.
    Posted(String),
    /// A payment carrying the marker was already there (an earlier attempt went through).
    AlreadyPosted(String),
    /// The system takes no payments through its API: write a note.
    NotSupported,
}

/// The marker a posted payment carries in the practice system: keyed by the Stripe payment, so
/// the same payment is found whichever workflow step or retry posts it.
pub fn payment_marker(stripe_id: &str) -> String {
    format!("[chairside-payment:{stripe_id}]")
}

/// The marker a refund's reversal carries in the practice system: keyed by the refund
/// (`{charge}:{refunded so far, in minor units}`), so a repeat after a crash finds it.
pub fn refund_marker(refund_key: &str) -> String {
    format!("[chairside-refund:{refund_key}]")
}

/// Where a deposit Checkout Session stands in the payments system ([`Payments::deposit_link_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositLinkState {
    /// Open and unpaid: its link still works.
    Open {
        /// The session's link.
        url: String,
    },
    /// Paid.
    Paid,
    /// Expired, or complete without the money (its payment failed): it cannot be used again.
    Dead,
}

/// Stripe, as the orchestrator needs it. Every creating call carries a deterministic idempotency key.
#[async_trait]
pub trait Payments: Send + Sync + fmt::Debug {
    /// Finds or creates the patient's customer; returns `cus_…`.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn ensure_customer(
        &self,
        practice: &PracticeId,
        patient: &PatientContact,
        key: &str,
    ) -> Result<String, ExternalError>;

    /// Creates a single-use Checkout Session for the deposit; returns (`cs_…`, url).
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn create_deposit_link(
        &self,
        practice: &PracticeId,
        customer: &str,
        amount: Money,
        workflow: &WorkflowId,
        key: &str,
    ) -> Result<(String, String), ExternalError>;

    /// Creates the installment schedule; returns `sub_sched_…`.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn create_schedule(
        &self,
        practice: &PracticeId,
        customer: &str,
        offer: &InHouseOffer,
        workflow: &WorkflowId,
        key: &str,
    ) -> Result<String, ExternalError>;

    /// Cancels a schedule.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn cancel_schedule(&self, schedule: &str, key: &str) -> Result<(), ExternalError>;

    /// Expires a Checkout Session.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn expire_deposit_link(&self, session: &str, key: &str) -> Result<(), ExternalError>;

    /// Where a deposit Checkout Session stands, read before a staff retry of a failed payment
    /// issues a fresh one: an open session is sent again, a paid one is not replaced.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn deposit_link_state(&self, session: &str) -> Result<DepositLinkState, ExternalError>;

    /// Creates the card-saving link (Checkout in setup mode) for a card-on-file practice;
    /// returns (`cs_…`, url). The default refuses: a payments system without saved cards.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn create_card_setup_link(
        &self,
        practice: &PracticeId,
        customer: &str,
        currency: financing_core::Currency,
        workflow: &WorkflowId,
        key: &str,
    ) -> Result<(String, String), ExternalError> {
        let _ = (practice, customer, currency, workflow, key);
        Err(no_saved_cards())
    }

    /// The card (`pm_…`) a completed setup saved, from its SetupIntent (`seti_…`).
    ///
    /// # Errors
    /// A classified [`ExternalError`]; permanent when the setup saved no card.
    async fn saved_card(&self, setup_intent: &str) -> Result<String, ExternalError> {
        let _ = setup_intent;
        Err(no_saved_cards())
    }

    /// Charges the saved card off-session under `key` (a repeat is the same charge). A decline
    /// or an authentication request is an outcome, not an error.
    ///
    /// # Errors
    /// A classified [`ExternalError`]: transient (retry with the same key), permanent (Stripe
    /// refused the request), or indeterminate.
    async fn charge_card(
        &self,
        charge: &CardChargeRequest<'_>,
    ) -> Result<CardOutcome, ExternalError> {
        let _ = charge;
        Err(no_saved_cards())
    }

    /// Creates the installment schedule charging the saved card `payment_method` automatically
    /// (card on file); returns `sub_sched_…`.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn create_schedule_on_card(
        &self,
        practice: &PracticeId,
        customer: &str,
        offer: &InHouseOffer,
        workflow: &WorkflowId,
        payment_method: &str,
        key: &str,
    ) -> Result<String, ExternalError> {
        let _ = (practice, customer, offer, workflow, payment_method, key);
        Err(no_saved_cards())
    }

    /// Switches an existing schedule to charging the saved card `payment_method` automatically
    /// (the card was saved after the schedule was created); a repeat under `key` is the same
    /// update.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn set_schedule_card(
        &self,
        schedule: &str,
        payment_method: &str,
        key: &str,
    ) -> Result<(), ExternalError> {
        let _ = (schedule, payment_method, key);
        Err(no_saved_cards())
    }

    /// Every refund of `charge` (`ch_…`), newest first, so a refund is reversed in the ledger
    /// once under its own id. `Ok(None)`: this payments system cannot list them (the cumulative
    /// rule decides).
    ///
    /// # Errors
    /// A classified [`ExternalError`] (the runner then falls back to the cumulative rule).
    async fn list_refunds(
        &self,
        charge: &str,
    ) -> Result<Option<Vec<chairside_workflow::refunds::ListedRefund>>, ExternalError> {
        let _ = charge;
        Ok(None)
    }
}

fn no_saved_cards() -> ExternalError {
    ProviderError::new(
        financing_core::ErrorKind::Permanent,
        "this payments system does not save cards",
    )
}

/// An off-session charge to make.
#[derive(Clone, Copy, Debug)]
pub struct CardChargeRequest<'a> {
    /// The practice.
    pub practice: &'a PracticeId,
    /// `cus_…`.
    pub customer: &'a str,
    /// `pm_…`.
    pub payment_method: &'a str,
    /// The amount.
    pub amount: Money,
    /// The workflow (metadata on the charge).
    pub workflow: &'a WorkflowId,
    /// What it pays (`deposit`; metadata on the charge).
    pub purpose: &'a str,
    /// The deterministic idempotency key.
    pub key: &'a str,
}

/// What an off-session charge came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardOutcome {
    /// Paid (or accepted and processing): `pi_…`.
    Charged {
        /// `pi_…`.
        payment_intent: String,
    },
    /// Declined, or the bank wants the patient to authenticate.
    Declined {
        /// `pi_…`, when Stripe named one.
        payment_intent: Option<String>,
        /// Stripe's code and decline code (`card_declined: insufficient_funds`); no card data.
        reason: String,
        /// True for `authentication_required`.
        authentication: bool,
    },
}

pub use chairside_workflow::delivery::Channel;

/// The practice as messages and notes name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PracticeProfile {
    /// Our id.
    pub id: PracticeId,
    /// Its name as patients know it.
    pub name: String,
    /// Its state.
    pub state: UsState,
    /// Its IANA time zone.
    pub time_zone: String,
    /// The location lenders know it by.
    pub location_id: LocationId,
    /// Phone number patients can call (HELP replies, summaries).
    pub phone: String,
    /// Email address messages come from.
    pub email: String,
}

/// What a message says; the messenger renders it with the approved templates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageContent {
    /// The lender's application link.
    ApplicationLink {
        /// Lender name.
        lender_name: String,
        /// The link.
        link: String,
    },
    /// A reminder.
    Reminder {
        /// Lender name.
        lender_name: String,
        /// The link.
        link: String,
    },
    /// The financing summary.
    FinancingSummary(Box<SummaryContent>),
    /// The practice's in-house plan offered for the patient to accept on the patient page (the
    /// offer itself and its reminders): the numbers, and the page link; never a lender link.
    InHouseOffer(Box<SummaryContent>),
    /// A failed payment.
    PaymentFailed {
        /// The patient page link.
        page_link: String,
        /// The amount that failed, when the workflow can name one (never a made-up zero).
        amount: Option<Money>,
    },
    /// A new patient's intake link (`/i/{token}`), sent when staff start an intake or send it
    /// again (docs/intake.md).
    IntakeLink {
        /// The patient's intake page.
        link: String,
    },
    /// A fresh link to pay the deposit after a failed payment: the patient page, where it is paid.
    PayLinkReissued {
        /// The patient page link.
        page_link: String,
        /// The deposit the link collects (never zero).
        deposit: Money,
    },
}

/// The numbers of a financing summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryContent {
    /// Treatment total.
    pub total: Money,
    /// Insurance estimate.
    pub insurance: Money,
    /// Patient portion.
    pub patient_portion: Money,
    /// Lender name and amount financed.
    pub financed: Option<(String, Money)>,
    /// Deposit due now.
    pub deposit: Money,
    /// Deposit payment link.
    pub deposit_link: Option<String>,
    /// First in-house installment and its date.
    pub first_installment: Option<(Money, NaiveDate)>,
    /// Number of in-house installments.
    pub installments: Option<u32>,
    /// Time between in-house installments.
    pub installment_interval: Option<InstallmentInterval>,
    /// The patient page.
    pub page_link: String,
    /// The financing's terms as the financed lender reported them (promotion, term, APR), when
    /// it reported any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lender_terms: Option<LenderTerms>,
}

/// A lender's terms as it reported them with its approval: shown to the patient verbatim, never
/// composed (Reg Z: promotional copy is the lender's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LenderTerms {
    /// The lender's promotion, in its words (`12 months no interest if paid in full`).
    pub promotion: Option<String>,
    /// The term in months.
    pub term_months: Option<u16>,
    /// The APR in basis points (1999 = 19.99 %).
    pub apr_bps: Option<u32>,
    /// The lender's reference for the approval, for the audit trail.
    pub reference: Option<String>,
}

impl LenderTerms {
    /// The terms of `offer`, or `None` when the lender reported none.
    pub fn of(offer: &financing_core::Offer) -> Option<Self> {
        let promotion = offer
            .promotion
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        (promotion.is_some() || offer.term_months.is_some() || offer.apr_bps.is_some()).then(|| {
            Self {
                promotion,
                term_months: offer.term_months,
                apr_bps: offer.apr_bps,
                reference: offer.lender_reference.as_ref().map(|r| r.to_string()),
            }
        })
    }
}

/// The result of a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The channels it went out on, with the provider's message id.
    pub sent: Vec<(Channel, String)>,
}

/// Patient messaging, as the orchestrator needs it.
#[async_trait]
pub trait Messenger: Send + Sync + fmt::Debug {
    /// Sends `content` to the patient on `channels` (already filtered by consent and quiet hours).
    /// `key` is the outbox row's idempotency key, carried for reconciliation.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn send(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        key: &str,
    ) -> Result<Delivery, ExternalError>;

    /// Makes message `key` ready to send before its intent is journaled: when this messenger
    /// journals its sends and no channel of `key` has a record yet, renders what goes out and
    /// returns the journal's `attempting` records for the caller to write in the transaction that
    /// journals the command's intent. Then [`send_prepared`](Self::send_prepared) sends it
    /// without a journal transaction of its own. `None`: nothing prepared (no journal, a record
    /// exists, or something would fail: [`send`](Self::send) reports it).
    ///
    /// # Errors
    /// A classified [`ExternalError`] when the journal cannot be read.
    async fn prepare(
        &self,
        _practice: &PracticeProfile,
        _patient: &PatientContact,
        _content: &MessageContent,
        _channels: &[Channel],
        _key: &str,
    ) -> Result<Option<PreparedSend>, ExternalError> {
        Ok(None)
    }

    /// Sends what [`prepare`](Self::prepare) made ready, once its journal records are written
    /// (the caller's commit). With the same arguments as the `prepare` that made it.
    ///
    /// # Errors
    /// A classified [`ExternalError`].
    async fn send_prepared(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        key: &str,
        _prepared: PreparedSend,
    ) -> Result<Delivery, ExternalError> {
        self.send(practice, patient, content, channels, key).await
    }

    /// Whether message `key` reached the patient although its sends kept failing: its email
    /// went out (or is taken as gone out, its outcome unknown and never repeated) while its text
    /// failed on every try. The runner asks when it gives up on a message, so that a text that
    /// never went through does not make a message the patient has by email undeliverable (as a
    /// text refused outright after its email leaves the email standing). `false` when this
    /// messenger keeps no journal.
    ///
    /// # Errors
    /// A classified [`ExternalError`] when the journal cannot be read.
    async fn went_out(&self, _key: &str) -> Result<bool, ExternalError> {
        Ok(false)
    }
}

/// A message made ready by [`Messenger::prepare`]: the journal records its caller writes before
/// the send, and what the messenger rendered (opaque to the caller). Its `Debug` shows the
/// channels only.
pub struct PreparedSend {
    /// `(channel, body digest)` for each channel to journal `attempting`, as
    /// [`DeliveryStore::begin_sends`](crate::store::DeliveryStore::begin_sends) takes them.
    pub journal: Vec<(&'static str, Option<String>)>,
    /// The messenger's own rendering.
    pub rendered: Box<dyn std::any::Any + Send + Sync>,
}

impl fmt::Debug for PreparedSend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels: Vec<&str> = self.journal.iter().map(|(c, _)| *c).collect();
        f.debug_struct("PreparedSend")
            .field("channels", &channels)
            .finish_non_exhaustive()
    }
}

/// Shared handles.
pub type SharedPracticeSystem = Arc<dyn PracticeSystem>;
/// Shared handles.
pub type SharedPayments = Arc<dyn Payments>;
/// Shared handles.
pub type SharedMessenger = Arc<dyn Messenger>;
