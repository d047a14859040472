//! What Open Dental returns and accepts, in Rust form. Field names and wire values live in
//! [`wire`](crate::wire); nothing here names a vendor field.
//!
//! Dates and times are the office's local time, as Open Dental stores them (no zone); `None` is
//! Open Dental's `0001-01-01`. Money is [`Money`] in the client's currency.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};
use financing_core::{CdtCode, Money};

use crate::ids::{
    AptNum, ClinicNum, CodeNum, CommlogNum, DefNum, PatNum, PayNum, ProcNum, ProcTpNum, ProvNum,
    TreatPlanAttachNum, TreatPlanNum,
};

/// A treatment plan's status. Open Dental has no "accepted": see
/// [`AcceptanceRule`](crate::AcceptanceRule).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TpStatus {
    /// A frozen copy of a plan, with [`ProcTp`] rows; what the patient signs.
    Saved,
    /// The live plan of charted treatment, with [`TreatPlanAttach`] rows.
    Active,
    /// A live plan not currently in use.
    Inactive,
    /// A value this client does not know, kept as sent.
    Unknown(String),
}

/// A treatment plan's type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TpType {
    /// Estimates from insurance.
    Insurance,
    /// Estimates from a discount plan.
    Discount,
    /// A value this client does not know, kept as sent.
    Unknown(String),
}

/// A procedure's status.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcStatus {
    /// `TP`: treatment planned.
    TreatmentPlanned,
    /// `C`: complete.
    Complete,
    /// `EC`: existing, current provider.
    ExistingCurrentProvider,
    /// `EO`: existing, other provider.
    ExistingOtherProvider,
    /// `R`: referred out.
    Referred,
    /// `D`: deleted.
    Deleted,
    /// `Cn`: condition.
    Condition,
    /// `TPi`: treatment planned, inactive.
    TreatmentPlannedInactive,
    /// A value this client does not know, kept as sent.
    Unknown(String),
}

/// Whether the patient may be texted, as recorded in Open Dental: the office's flag, which
/// [`Patient::to_contact`] passes on as the practice's word (the orchestrator records it as an
/// attestation in its own consent record).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TxtMsgOk {
    /// Open Dental's `Unknown`: never asked.
    NotAsked,
    /// `Yes`.
    Yes,
    /// `No`.
    No,
    /// A value this client does not know, kept as sent.
    Unknown(String),
}

/// How a communication happened (`Mode_`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommMode {
    /// `None`.
    None,
    /// `Email`.
    Email,
    /// `Mail`.
    Mail,
    /// `Phone` (Open Dental's default).
    Phone,
    /// `In Person`.
    InPerson,
    /// `Text`.
    Text,
    /// `Email and Text`.
    EmailAndText,
    /// `Phone and Text`.
    PhoneAndText,
    /// A value this client does not know, kept as sent.
    Unknown(String),
}

/// The direction of a communication.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SentOrReceived {
    /// `Neither`.
    Neither,
    /// `Sent` (Open Dental's default).
    Sent,
    /// `Received`.
    Received,
    /// A value this client does not know, kept as sent.
    Unknown(String),
}

macro_rules! display_as_wire {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_wire!(
    TpStatus,
    TpType,
    ProcStatus,
    TxtMsgOk,
    CommMode,
    SentOrReceived
);

/// A treatment plan (`GET /treatplans`). `Debug` leaves out the free-text heading and note.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreatPlan {
    /// The plan.
    pub treat_plan_num: TreatPlanNum,
    /// The patient.
    pub pat_num: PatNum,
    /// The plan's date.
    pub date_tp: Option<NaiveDate>,
    /// The heading staff gave it. Free text.
    pub heading: String,
    /// The note printed on the plan. Free text.
    pub note: String,
    /// The responsible party, when not the patient.
    pub respons_party: Option<PatNum>,
    /// Saved, Active, Inactive or an unknown value.
    pub status: TpStatus,
    /// Insurance or discount-plan estimates.
    pub tp_type: TpType,
    /// When the row was last edited (the change-detection field).
    pub sec_date_t_edit: Option<NaiveDateTime>,
    /// When the patient signed, if they did.
    pub date_t_signed: Option<NaiveDateTime>,
    /// When the practice signed, if it did.
    pub date_t_practice_signed: Option<NaiveDateTime>,
    /// Open Dental's derived "has a patient signature", when sent.
    pub is_signed: Option<bool>,
    /// Open Dental's derived "has a practice signature", when sent.
    pub is_signed_practice: Option<bool>,
}

impl TreatPlan {
    /// True when the patient signed: `DateTSigned` is set, or Open Dental says `isSigned`.
    pub fn is_patient_signed(&self) -> bool {
        self.date_t_signed.is_some() || self.is_signed == Some(true)
    }
}

impl fmt::Debug for TreatPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreatPlan")
            .field("treat_plan_num", &self.treat_plan_num)
            .field("pat_num", &self.pat_num)
            .field("status", &self.status)
            .field("sec_date_t_edit", &self.sec_date_t_edit)
            .field("date_t_signed", &self.date_t_signed)
            .finish_non_exhaustive()
    }
}

/// A procedure on a Saved plan (`GET /proctps`), a frozen copy with the plan's estimates.
/// Amounts that are absent or null are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcTp {
    /// This row.
    pub proc_tp_num: ProcTpNum,
    /// The Saved plan.
    pub treat_plan_num: TreatPlanNum,
    /// The patient.
    pub pat_num: PatNum,
    /// The procedure this is a copy of.
    pub proc_num_orig: Option<ProcNum>,
    /// Position on the plan.
    pub item_order: i64,
    /// Tooth number as written on the plan.
    pub tooth_num_tp: String,
    /// Surfaces.
    pub surf: String,
    /// CDT code. Clinical: never sent to a lender.
    pub proc_code: CdtCode,
    /// The procedure's description.
    pub descript: String,
    /// The fee before discount.
    pub fee_amt: Money,
    /// Primary insurance estimate.
    pub pri_ins_amt: Option<Money>,
    /// Secondary insurance estimate.
    pub sec_ins_amt: Option<Money>,
    /// Patient portion as Open Dental computed it.
    pub pat_amt: Option<Money>,
    /// Discount off the fee.
    pub discount: Option<Money>,
    /// The insurance allowed fee.
    pub fee_allowed: Option<Money>,
    /// Sales tax.
    pub tax_amt: Option<Money>,
    /// Provider.
    pub prov_num: Option<ProvNum>,
    /// The plan's date.
    pub date_tp: Option<NaiveDate>,
    /// Last edit.
    pub sec_date_t_edit: Option<NaiveDateTime>,
}

/// A procedure attached to an Active or Inactive plan (`GET /treatplanattaches`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreatPlanAttach {
    /// This row.
    pub treat_plan_attach_num: TreatPlanAttachNum,
    /// The plan.
    pub treat_plan_num: TreatPlanNum,
    /// The procedure (see [`ProcedureLog`]).
    pub proc_num: ProcNum,
    /// The priority definition, when one is set.
    pub priority: Option<DefNum>,
    /// The priority's name (`Wait`, `1`), empty when none.
    pub priority_name: String,
}

/// A procedure (`GET /procedurelogs`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcedureLog {
    /// The procedure.
    pub proc_num: ProcNum,
    /// The patient.
    pub pat_num: PatNum,
    /// Its appointment, if scheduled.
    pub apt_num: Option<AptNum>,
    /// Date of service (or planned date).
    pub proc_date: Option<NaiveDate>,
    /// The fee.
    pub proc_fee: Money,
    /// Status.
    pub status: ProcStatus,
    /// The procedure code row.
    pub code_num: Option<CodeNum>,
    /// CDT code (Open Dental's derived `procCode`), when sent. Clinical: never sent to a lender.
    pub proc_code: Option<CdtCode>,
    /// Tooth number.
    pub tooth_num: String,
    /// Surfaces.
    pub surf: String,
    /// Provider.
    pub prov_num: Option<ProvNum>,
    /// Clinic.
    pub clinic_num: Option<ClinicNum>,
    /// When it was treatment planned.
    pub date_tp: Option<NaiveDate>,
    /// Discount.
    pub discount: Option<Money>,
    /// Last change (the sync field).
    pub date_t_stamp: Option<NaiveDateTime>,
}

/// A patient (`GET /patients/{PatNum}`). PHI: `Debug` shows only the key.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Patient {
    /// The patient.
    pub pat_num: PatNum,
    /// Family name.
    pub last_name: String,
    /// Given name.
    pub first_name: String,
    /// Middle initial.
    pub middle_initial: String,
    /// Preferred name.
    pub preferred: String,
    /// Date of birth.
    pub birthdate: Option<NaiveDate>,
    /// Street address.
    pub address: String,
    /// Second address line.
    pub address2: String,
    /// City.
    pub city: String,
    /// State as typed in Open Dental.
    pub state: String,
    /// ZIP code.
    pub zip: String,
    /// Home phone as typed.
    pub home_phone: String,
    /// Work phone as typed.
    pub work_phone: String,
    /// Mobile phone as typed.
    pub wireless_phone: String,
    /// Email.
    pub email: String,
    /// Language, usually ISO 639-2 (`eng`, `spa`); empty for none.
    pub language: String,
    /// The office's texting flag.
    pub txt_msg_ok: TxtMsgOk,
    /// Status as sent (`Patient`, `Inactive`, ...).
    pub pat_status: String,
    /// The family's guarantor.
    pub guarantor: Option<PatNum>,
    /// Clinic.
    pub clinic_num: Option<ClinicNum>,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patient")
            .field("pat_num", &self.pat_num)
            .finish_non_exhaustive()
    }
}

/// A communication-log entry (`GET /commlogs`): where Chairside writes its ledger note. `Debug`
/// leaves out the note.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commlog {
    /// The entry.
    pub commlog_num: CommlogNum,
    /// The patient.
    pub pat_num: PatNum,
    /// When the communication happened.
    pub comm_date_time: Option<NaiveDateTime>,
    /// The commlog type definition.
    pub comm_type: Option<DefNum>,
    /// The commlog type's name (`Misc`, `Financial`).
    pub comm_type_name: String,
    /// The note. Free text.
    pub note: String,
    /// How.
    pub mode: CommMode,
    /// Direction.
    pub sent_or_received: SentOrReceived,
    /// Last change.
    pub date_t_stamp: Option<NaiveDateTime>,
}

impl fmt::Debug for Commlog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commlog")
            .field("commlog_num", &self.commlog_num)
            .field("pat_num", &self.pat_num)
            .field("comm_date_time", &self.comm_date_time)
            .finish_non_exhaustive()
    }
}

/// A patient payment (`GET /payments`). `Debug` leaves out the note and check number.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Payment {
    /// The payment.
    pub pay_num: PayNum,
    /// The patient.
    pub pat_num: PatNum,
    /// The payment type definition (from the office's `ApiPaymentType` setting for API payments).
    pub pay_type: Option<DefNum>,
    /// The payment type's name.
    pub pay_type_name: String,
    /// Payment date.
    pub pay_date: Option<NaiveDate>,
    /// Amount; negative for refunds.
    pub pay_amt: Money,
    /// Check number.
    pub check_num: String,
    /// The note. Free text.
    pub pay_note: String,
    /// Clinic.
    pub clinic_num: Option<ClinicNum>,
    /// Entry date.
    pub date_entry: Option<NaiveDate>,
    /// Where it came from (`API`, `None`, ...), as sent.
    pub payment_source: String,
}

impl fmt::Debug for Payment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payment")
            .field("pay_num", &self.pay_num)
            .field("pat_num", &self.pat_num)
            .field("pay_amt", &self.pay_amt)
            .field("pay_date", &self.pay_date)
            .finish_non_exhaustive()
    }
}

/// A commlog to create (`POST /commlogs`). `Debug` leaves out the note.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewCommlog {
    /// The patient. Required.
    pub pat_num: PatNum,
    /// The note. Required.
    pub note: String,
    /// When; Open Dental defaults to now (office time).
    pub comm_date_time: Option<NaiveDateTime>,
    /// The commlog type by name (`Financial`); Open Dental defaults to Miscellaneous.
    pub comm_type_name: Option<String>,
    /// How; Open Dental defaults to `Phone`.
    pub mode: Option<CommMode>,
    /// Direction; Open Dental defaults to `Sent`.
    pub sent_or_received: Option<SentOrReceived>,
}

impl NewCommlog {
    /// A note for a patient, everything else left to Open Dental's defaults.
    pub fn new(pat_num: PatNum, note: impl Into<String>) -> Self {
        Self {
            pat_num,
            note: note.into(),
            comm_date_time: None,
            comm_type_name: None,
            mode: None,
            sent_or_received: None,
        }
    }

    /// Sets when the communication happened (office time).
    pub fn comm_date_time(mut self, at: NaiveDateTime) -> Self {
        self.comm_date_time = Some(at);
        self
    }

    /// Sets the commlog type by its name.
    pub fn comm_type_name(mut self, name: impl Into<String>) -> Self {
        self.comm_type_name = Some(name.into());
        self
    }

    /// Sets how.
    pub fn mode(mut self, mode: CommMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets the direction.
    pub fn sent_or_received(mut self, direction: SentOrReceived) -> Self {
        self.sent_or_received = Some(direction);
        self
    }
}

impl fmt::Debug for NewCommlog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCommlog")
            .field("pat_num", &self.pat_num)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// A payment to create (`POST /payments`). `Debug` leaves out the note.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewPayment {
    /// The patient. Required.
    pub pat_num: PatNum,
    /// The amount, above zero. Required.
    pub pay_amt: Money,
    /// Payment date; Open Dental defaults to today.
    pub pay_date: Option<NaiveDate>,
    /// The note (where Chairside's marker goes).
    pub pay_note: Option<String>,
    /// Check number.
    pub check_num: Option<String>,
    /// Clinic; Open Dental defaults to the patient's.
    pub clinic_num: Option<ClinicNum>,
    /// Split to the patient rather than FIFO across the family.
    pub is_patient_preferred: Option<bool>,
}

impl NewPayment {
    /// A payment of `amount` for a patient.
    pub fn new(pat_num: PatNum, pay_amt: Money) -> Self {
        Self {
            pat_num,
            pay_amt,
            pay_date: None,
            pay_note: None,
            check_num: None,
            clinic_num: None,
            is_patient_preferred: None,
        }
    }

    /// Sets the payment date.
    pub fn pay_date(mut self, date: NaiveDate) -> Self {
        self.pay_date = Some(date);
        self
    }

    /// Sets the note.
    pub fn pay_note(mut self, note: impl Into<String>) -> Self {
        self.pay_note = Some(note.into());
        self
    }

    /// Sets the check number.
    pub fn check_num(mut self, check_num: impl Into<String>) -> Self {
        self.check_num = Some(check_num.into());
        self
    }

    /// Sets the clinic.
    pub fn clinic_num(mut self, clinic: ClinicNum) -> Self {
        self.clinic_num = Some(clinic);
        self
    }

    /// Splits the payment to the patient only.
    pub fn patient_preferred(mut self, yes: bool) -> Self {
        self.is_patient_preferred = Some(yes);
        self
    }
}

impl fmt::Debug for NewPayment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPayment")
            .field("pat_num", &self.pat_num)
            .field("pay_amt", &self.pay_amt)
            .field("pay_date", &self.pay_date)
            .finish_non_exhaustive()
    }
}

/// A treatment plan to create (`POST /treatplans`): Open Dental creates it Inactive, without
/// procedures (those are attached separately, `TreatPlanAttaches POST`).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewTreatPlan {
    /// The patient. Required.
    pub pat_num: PatNum,
    /// The heading; Open Dental defaults to "Inactive Treatment Plan" when blank.
    pub heading: String,
    /// The note (where Chairside's marker goes); Open Dental defaults to the office's
    /// TreatmentPlanNote preference when absent, so Chairside always sends one.
    pub note: String,
    /// Insurance or Discount; Open Dental chooses from the patient's plans when `None`.
    pub tp_type: Option<TpType>,
}

impl NewTreatPlan {
    /// A plan for a patient with a heading and a note.
    pub fn new(pat_num: PatNum, heading: impl Into<String>, note: impl Into<String>) -> Self {
        Self {
            pat_num,
            heading: heading.into(),
            note: note.into(),
            tp_type: None,
        }
    }
}

impl fmt::Debug for NewTreatPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewTreatPlan")
            .field("pat_num", &self.pat_num)
            .field("tp_type", &self.tp_type)
            .finish_non_exhaustive()
    }
}

/// The result of a check-then-act write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome<T> {
    /// A row carrying the marker was already there; nothing was written.
    AlreadyWritten(T),
    /// The row was written. Open Dental versions before 23.3.7 return no row on create, hence the
    /// `Option`.
    Created(Option<T>),
}

impl<T> WriteOutcome<T> {
    /// The row, when known.
    pub fn row(&self) -> Option<&T> {
        match self {
            Self::AlreadyWritten(t) => Some(t),
            Self::Created(t) => t.as_ref(),
        }
    }

    /// True when this call wrote the row.
    pub fn was_created(&self) -> bool {
        matches!(self, Self::Created(_))
    }
}
