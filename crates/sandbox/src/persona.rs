//! Personas and the seed types: who the made-up patients are and how they behave.

use std::fmt;

use chrono::NaiveDate;
use financing_core::Money;
use serde::{Deserialize, Serialize};

/// How a seeded patient behaves, like Stripe's test cards: deterministic, chosen at seeding.
///
/// Lenders decide by persona once the patient acts on an application (see the crate docs for how
/// the sandbox learns which patient an application belongs to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Persona {
    /// Every lender approves the full amount at once.
    InstantApproval,
    /// Every lender approves [`Persona::PARTIAL_APPROVAL_PERCENT`] of the amount asked.
    PartialApproval,
    /// CareCredit declines; Sunbit approves in full.
    DeclineFirstApproveSecond,
    /// Every lender declines.
    DeclineEverywhere,
    /// The application is pending for `polls` status reads after the patient finished it, then
    /// approved in full.
    PendingThenApproved {
        /// Status reads that still answer pending.
        polls: u32,
    },
    /// The patient opens nothing and never finishes: applications stay created/pending and
    /// checkout links stay unpaid.
    NeverCompletes,
    /// Already a CareCredit cardholder with more available credit than any plan needs
    /// ([`Persona::CARDHOLDER_CREDIT_ENOUGH`]).
    ReturningCardholderEnough,
    /// Already a CareCredit cardholder with too little available credit
    /// ([`Persona::CARDHOLDER_CREDIT_SHORT`]); a new CareCredit application is declined, Sunbit
    /// approves.
    ReturningCardholderShort,
    /// No mobile phone on file (a home phone only): no texts possible. Lenders approve.
    NoMobilePhone,
    /// A mobile phone, but no SMS consent. Lenders approve.
    NoSmsConsent,
    /// Patient of a California practice: lenders must receive no patient data at all. Lenders
    /// approve; a lender request that carries this patient's identity is recorded as a
    /// compliance violation.
    CaliforniaPractice,
    /// Bad data: the plan's insurance estimate exceeds its fee. Lenders approve if asked (they
    /// should not be).
    InsuranceAboveFee,
}

impl Persona {
    /// The share of the amount a [`Persona::PartialApproval`] patient is approved for.
    pub const PARTIAL_APPROVAL_PERCENT: i64 = 60;
    /// Available credit of a [`Persona::ReturningCardholderEnough`] patient, in cents ($10,000).
    pub const CARDHOLDER_CREDIT_ENOUGH: i64 = 1_000_000;
    /// Available credit of a [`Persona::ReturningCardholderShort`] patient, in cents ($300).
    pub const CARDHOLDER_CREDIT_SHORT: i64 = 30_000;

    /// Every persona once (pending with 2 polls), in a fixed order: the demo's spread.
    pub const ALL: [Self; 12] = [
        Self::InstantApproval,
        Self::PartialApproval,
        Self::DeclineFirstApproveSecond,
        Self::DeclineEverywhere,
        Self::PendingThenApproved { polls: 2 },
        Self::NeverCompletes,
        Self::ReturningCardholderEnough,
        Self::ReturningCardholderShort,
        Self::NoMobilePhone,
        Self::NoSmsConsent,
        Self::CaliforniaPractice,
        Self::InsuranceAboveFee,
    ];

    /// A short snake-case name (`instant_approval`), as the CLI and tables print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::InstantApproval => "instant_approval",
            Self::PartialApproval => "partial_approval",
            Self::DeclineFirstApproveSecond => "decline_first_approve_second",
            Self::DeclineEverywhere => "decline_everywhere",
            Self::PendingThenApproved { .. } => "pending_then_approved",
            Self::NeverCompletes => "never_completes",
            Self::ReturningCardholderEnough => "returning_cardholder_enough",
            Self::ReturningCardholderShort => "returning_cardholder_short",
            Self::NoMobilePhone => "no_mobile_phone",
            Self::NoSmsConsent => "no_sms_consent",
            Self::CaliforniaPractice => "california_practice",
            Self::InsuranceAboveFee => "insurance_above_fee",
        }
    }

    /// The CareCredit cardholder account's available credit, in cents, if the patient has one.
    pub fn cardholder_credit(self) -> Option<i64> {
        match self {
            Self::ReturningCardholderEnough => Some(Self::CARDHOLDER_CREDIT_ENOUGH),
            Self::ReturningCardholderShort => Some(Self::CARDHOLDER_CREDIT_SHORT),
            _ => None,
        }
    }

    /// What `lender` decides for this persona on an application for `requested` cents.
    pub fn decision(self, lender: Lender, requested: i64) -> LenderDecision {
        match self {
            Self::NeverCompletes => LenderDecision::Abandoned,
            Self::DeclineEverywhere => LenderDecision::Declined,
            Self::DeclineFirstApproveSecond | Self::ReturningCardholderShort => match lender {
                Lender::CareCredit => LenderDecision::Declined,
                Lender::Sunbit => LenderDecision::Approved { amount: requested },
            },
            Self::PartialApproval => LenderDecision::Approved {
                amount: requested * Self::PARTIAL_APPROVAL_PERCENT / 100,
            },
            Self::PendingThenApproved { polls } => LenderDecision::PendingThenApproved {
                polls,
                amount: requested,
            },
            Self::InstantApproval
            | Self::ReturningCardholderEnough
            | Self::NoMobilePhone
            | Self::NoSmsConsent
            | Self::CaliforniaPractice
            | Self::InsuranceAboveFee => LenderDecision::Approved { amount: requested },
        }
    }
}

impl fmt::Display for Persona {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A lender the sandbox stands in for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Lender {
    /// CareCredit (Synchrony).
    CareCredit,
    /// Sunbit.
    Sunbit,
}

/// What a lender decides once the patient acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LenderDecision {
    /// Approved for `amount` cents (below the amount asked: a partial approval).
    Approved {
        /// Approved amount, in cents.
        amount: i64,
    },
    /// Declined.
    Declined,
    /// Pending for `polls` status reads, then approved for `amount` cents.
    PendingThenApproved {
        /// Status reads that still answer pending.
        polls: u32,
        /// Approved amount, in cents.
        amount: i64,
    },
    /// The patient left: the application never completes.
    Abandoned,
}

/// The practice system that holds a seeded patient and their plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Pms {
    /// Dentrix Ascend.
    Dentrix,
    /// NexHealth (in front of Dentrix G-series, Enterprise, Open Dental, ...).
    NexHealth,
    /// Open Dental.
    OpenDental,
}

impl Pms {
    /// Every practice system.
    pub const ALL: [Self; 3] = [Self::Dentrix, Self::NexHealth, Self::OpenDental];

    /// A short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dentrix => "dentrix",
            Self::NexHealth => "nexhealth",
            Self::OpenDental => "opendental",
        }
    }
}

impl fmt::Display for Pms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The card a patient pays with on the sandbox checkout page, and the card behind payment
/// methods created for them: like Stripe's test cards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TestCard {
    /// Always succeeds (4242 4242 4242 4242, `pm_card_visa`).
    #[default]
    Visa,
    /// Can be saved; every charge is declined (`pm_card_chargeDeclined`).
    ChargeDeclined,
    /// Can be saved; every charge is declined for insufficient funds
    /// (`pm_card_chargeDeclinedInsufficientFunds`).
    InsufficientFunds,
    /// Can be saved; off-session charges need the patient to authenticate
    /// (`pm_card_authenticationRequired`).
    AuthenticationRequired,
}

impl TestCard {
    /// The card's behaviour for a Stripe test payment method id (`pm_card_chargeDeclined`, ...).
    pub fn from_test_payment_method(id: &str) -> Option<Self> {
        match id {
            "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" | "pm_card_discover"
            | "pm_card_visa_debit" => Some(Self::Visa),
            "pm_card_chargeDeclined" | "pm_card_visa_chargeDeclined" => Some(Self::ChargeDeclined),
            "pm_card_chargeDeclinedInsufficientFunds"
            | "pm_card_visa_chargeDeclinedInsufficientFunds" => Some(Self::InsufficientFunds),
            "pm_card_authenticationRequired"
            | "pm_card_threeDSecureRequired"
            | "pm_card_authenticationRequiredOnSetup" => Some(Self::AuthenticationRequired),
            _ => None,
        }
    }

    /// The last four digits shown for it.
    pub fn last4(self) -> &'static str {
        match self {
            Self::Visa => "4242",
            Self::ChargeDeclined => "0341",
            Self::InsufficientFunds => "9995",
            Self::AuthenticationRequired => "3155",
        }
    }

    /// A short name, as the checkout form posts it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Visa => "visa",
            Self::ChargeDeclined => "charge_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::AuthenticationRequired => "authentication_required",
        }
    }

    /// Parses [`TestCard::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Visa,
            Self::ChargeDeclined,
            Self::InsufficientFunds,
            Self::AuthenticationRequired,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

/// A postal address of a seeded patient.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedAddress {
    /// Street line.
    pub line1: String,
    /// City.
    pub city: String,
    /// Two-letter state code.
    pub state: String,
    /// ZIP code.
    pub postal_code: String,
}

impl fmt::Debug for SeedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedAddress")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A made-up patient to seed into a practice system.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedPatient {
    /// The practice system that holds the patient.
    pub pms: Pms,
    /// How the patient behaves.
    pub persona: Persona,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth.
    pub date_of_birth: Option<NaiveDate>,
    /// Email address.
    pub email: Option<String>,
    /// Mobile phone, E.164 (`+12025550101`).
    pub mobile_phone: Option<String>,
    /// Home phone, E.164.
    pub home_phone: Option<String>,
    /// Address.
    pub address: SeedAddress,
    /// Whether the practice system records SMS consent for the mobile phone.
    pub sms_consent: bool,
    /// The card the patient pays with.
    pub card: TestCard,
}

impl fmt::Debug for SeedPatient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedPatient")
            .field("pms", &self.pms)
            .field("persona", &self.persona)
            .finish_non_exhaustive()
    }
}

const FIRST_NAMES: [&str; 12] = [
    "Avery", "Blake", "Casey", "Devon", "Emery", "Finley", "Gray", "Harper", "Indigo", "Jules",
    "Kendall", "Logan",
];
/// Area codes for the fictional 555-01xx range, so numbers are unique for n < 800.
const AREA_CODES: [&str; 8] = ["202", "312", "415", "512", "617", "702", "808", "907"];

impl SeedPatient {
    /// An obviously made-up patient with this persona; `n` makes names, emails and phone numbers
    /// unique (phones are in the fictional 555-01xx range, emails under `example.test`).
    pub fn example(pms: Pms, persona: Persona, n: u32) -> Self {
        let idx = n as usize;
        let first = FIRST_NAMES[idx % FIRST_NAMES.len()];
        let area = AREA_CODES[(idx / 100) % AREA_CODES.len()];
        let mobile = format!("+1{area}55501{:02}", idx % 100);
        let home = format!("+1{area}55502{:02}", idx % 100);
        let california = persona == Persona::CaliforniaPractice;
        let address = if california {
            SeedAddress {
                line1: format!("{} Sample Street", 100 + n),
                city: "Sacramento".into(),
                state: "CA".into(),
                postal_code: "95814".into(),
            }
        } else {
            SeedAddress {
                line1: format!("{} Example Avenue", 100 + n),
                city: "Austin".into(),
                state: "TX".into(),
                postal_code: "78701".into(),
            }
        };
        Self {
            pms,
            persona,
            first_name: first.into(),
            last_name: format!("Testpatient{n}"),
            date_of_birth: NaiveDate::from_ymd_opt(1980 + (n % 30) as i32, 1 + n % 12, 1 + n % 28),
            email: Some(format!("{}.{n}@example.test", first.to_ascii_lowercase())),
            mobile_phone: (persona != Persona::NoMobilePhone).then_some(mobile),
            home_phone: Some(home),
            address,
            sms_consent: persona != Persona::NoSmsConsent && persona != Persona::NoMobilePhone,
            card: TestCard::Visa,
        }
    }
}

/// One planned procedure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedProcedure {
    /// CDT code (`D2740`).
    pub code: String,
    /// Short description.
    pub description: String,
    /// Tooth number, if any.
    pub tooth: Option<String>,
    /// The fee.
    pub fee: Money,
    /// Primary insurance estimate.
    pub primary_estimate: Money,
    /// Secondary insurance estimate.
    pub secondary_estimate: Money,
}

/// A treatment plan to seed for a seeded patient. It starts proposed (not accepted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedPlan {
    /// The patient, as returned by seeding.
    pub patient: PatientKey,
    /// The plan's (case's) name.
    pub name: String,
    /// The procedures.
    pub procedures: Vec<SeedProcedure>,
    /// The planned treatment date (an appointment), if booked.
    pub treatment_date: Option<NaiveDate>,
}

impl SeedPlan {
    /// A crown plus a core build-up: $1,550 in fees, $600 primary estimate, so the patient owes
    /// $950. For [`Persona::InsuranceAboveFee`] the crown's estimate ($1,450) exceeds its fee
    /// ($1,300).
    pub fn example(patient: &SeededPatient) -> Self {
        let bad = patient.persona == Persona::InsuranceAboveFee;
        Self {
            patient: patient.key,
            name: "Crown and build-up".into(),
            procedures: vec![
                SeedProcedure {
                    code: "D2740".into(),
                    description: "Crown - porcelain/ceramic".into(),
                    tooth: Some("30".into()),
                    fee: Money::usd(130_000),
                    primary_estimate: Money::usd(if bad { 145_000 } else { 50_000 }),
                    secondary_estimate: Money::usd(0),
                },
                SeedProcedure {
                    code: "D2950".into(),
                    description: "Core buildup, including any pins".into(),
                    tooth: Some("30".into()),
                    fee: Money::usd(25_000),
                    primary_estimate: Money::usd(10_000),
                    secondary_estimate: Money::usd(0),
                },
            ],
            treatment_date: Some(chrono::Utc::now().date_naive() + chrono::Days::new(14)),
        }
    }
}

/// The sandbox's own handle on a seeded patient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PatientKey(pub u64);

/// The sandbox's own handle on a seeded plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanKey(pub u64);

/// A seeded patient: the sandbox's key and the id the practice system gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededPatient {
    /// The sandbox's handle.
    pub key: PatientKey,
    /// The practice system holding it.
    pub pms: Pms,
    /// The id in that practice system (Ascend patient id, NexHealth patient id, `PatNum`).
    pub pms_id: String,
    /// The persona.
    pub persona: Persona,
}

/// A seeded plan: the sandbox's key and the ids the practice system gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededPlan {
    /// The sandbox's handle.
    pub key: PlanKey,
    /// The patient.
    pub patient: PatientKey,
    /// The practice system holding it.
    pub pms: Pms,
    /// The plan's id there (Ascend txcase id, NexHealth treatment plan id, `TreatPlanNum`).
    pub pms_id: String,
    /// The patient's id there.
    pub patient_pms_id: String,
    /// The procedures' ids there, in seed order (`ProcNum`s for Open Dental).
    pub procedure_ids: Vec<String>,
}

/// Patient and plan seeded together by [`crate::Sandbox::seed_persona`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededCase {
    /// The patient.
    pub patient: SeededPatient,
    /// The plan (not yet accepted).
    pub plan: SeededPlan,
}
