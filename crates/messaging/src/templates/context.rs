//! Typed contexts, one per template. Each declares the variables its templates may use; loading
//! fails when a template uses anything else (see [`Templates::load`](super::Templates::load)).
//!
//! No context has a field for procedures, codes or diagnoses (HIPAA minimum necessary): the
//! details sit behind the signed patient page.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use financing_core::{InstallmentInterval, IntervalUnit, Language, Money};
use minijinja::Value;
use serde::Serialize;
use url::Url;

use super::TemplateId;

/// Template variables by name.
pub(crate) type Vars = BTreeMap<&'static str, Value>;

pub(crate) mod sealed {
    use super::{Language, Vars};

    /// What the engine needs from a context. Sealed: only this crate's contexts implement it.
    pub trait Sealed {
        /// The variables, formatted for `lang`.
        fn vars(&self, lang: Language) -> Vars;
        /// Lender- or counsel-approved copy carried verbatim: exempt from the Reg Z guard.
        fn approved_texts(&self) -> Vec<&str>;
        /// Contexts to validate templates with at load: every optional value present, then
        /// every optional value absent.
        fn samples() -> Vec<Self>
        where
            Self: Sized;
    }
}

/// A template's typed context.
pub trait MessageContext: sealed::Sealed {
    /// The template it fills.
    const TEMPLATE: TemplateId;
}

/// A context whose template has an email (subject, plain text and HTML).
pub trait EmailContext: MessageContext {}

/// A context whose template has an SMS.
pub trait SmsContext: MessageContext {}

/// `March 5, 2026` / `5 de marzo de 2026`.
pub(crate) fn format_date(date: NaiveDate, lang: Language) -> String {
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const ES: [&str; 12] = [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ];
    let m = date.month0() as usize;
    match lang {
        Language::Es => format!("{} de {} de {}", date.day(), ES[m], date.year()),
        _ => format!("{} {}, {}", EN[m], date.day(), date.year()),
    }
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn money(m: Money) -> Value {
    Value::from(m.to_string())
}

fn link(u: &Url) -> Value {
    Value::from(u.as_str())
}

fn sample_url(path: &str) -> Url {
    // The sample URLs are literals: parsing cannot fail.
    Url::parse(&format!("https://pay.example.test/{path}")).expect("sample URL")
}

fn sample_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 5).expect("sample date")
}

/// Promotional terms approved by the lender (or by counsel, for the in-house plan), carried
/// verbatim: templates print them as given, and the Reg Z guard exempts them.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ApprovedTerms {
    /// The promotional statement (`No interest if paid in full within 12 months`).
    pub summary: String,
    /// The disclosure text the lender requires next to it, verbatim.
    pub disclosure: String,
    /// The approval reference (the lender's ad or copy id), kept for the audit trail; not
    /// printed.
    pub approval_reference: String,
}

impl fmt::Debug for ApprovedTerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovedTerms")
            .field("approval_reference", &self.approval_reference)
            .finish_non_exhaustive()
    }
}

impl ApprovedTerms {
    /// The terms a lender reported with its approval of this patient's financing, worded in
    /// `lang`: the lender's promotion verbatim, the term in months and the APR, with a line
    /// saying the lender's agreement governs. These are the patient's own approved terms as the
    /// lender stated them (the lender's copy), never composed or advertised by Chairside. `None`
    /// when the lender reported none.
    pub fn reported_by_lender(
        lang: Language,
        lender_name: &str,
        promotion: Option<&str>,
        term_months: Option<u16>,
        apr_bps: Option<u32>,
        reference: Option<&str>,
    ) -> Option<Self> {
        let es = lang == Language::Es;
        let mut parts: Vec<String> = Vec::new();
        if let Some(p) = promotion.map(str::trim).filter(|p| !p.is_empty()) {
            parts.push(p.to_owned());
        }
        if let Some(m) = term_months {
            parts.push(if es {
                format!("plazo de {m} meses")
            } else {
                format!("a {m}-month term")
            });
        }
        if let Some(bps) = apr_bps {
            let rate = format!("{}.{:02}", bps / 100, bps % 100);
            parts.push(if es {
                format!("tasa de porcentaje anual (APR) del {rate} %")
            } else {
                format!("{rate}% APR")
            });
        }
        if parts.is_empty() {
            return None;
        }
        let joined = parts.join("; ");
        let (summary, disclosure) = if es {
            (
                format!("Sus condiciones, según las informó {lender_name}: {joined}."),
                format!(
                    "Estas son las condiciones que {lender_name} aprobó para usted. Su contrato con {lender_name} establece las condiciones completas y es el que rige."
                ),
            )
        } else {
            (
                format!("Your terms, as {lender_name} reported them: {joined}."),
                format!(
                    "These are the terms {lender_name} approved for you. Your {lender_name} agreement states the full terms and governs."
                ),
            )
        };
        Some(Self {
            summary,
            disclosure,
            approval_reference: reference.unwrap_or("lender-reported").to_owned(),
        })
    }

    fn sample() -> Self {
        Self {
            summary: "Sample promotional terms, approved copy.".into(),
            disclosure: "Sample disclosure text, printed verbatim.".into(),
            approval_reference: "SAMPLE-APPROVAL-1".into(),
        }
    }

    fn value(&self) -> Value {
        Value::from_serialize(self)
    }
}

macro_rules! redacted_debug {
    ($ty:ident) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("practice_name", &self.practice_name)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// The financing summary: the lender's decision, terms, first payment and the patient page.
#[derive(Clone, PartialEq, Eq)]
pub struct FinancingSummary {
    /// The practice's name, as patients know it.
    pub practice_name: String,
    /// The patient's first name.
    pub patient_first_name: String,
    /// The lender's display name (`CareCredit`).
    pub lender_name: String,
    /// The approved amount.
    pub approved_amount: Money,
    /// Promotional terms with the lender's disclosure, when the plan has any. Email only: an SMS
    /// never states terms (they would need disclosures a text cannot carry).
    pub promotional_terms: Option<ApprovedTerms>,
    /// The first payment's amount.
    pub first_payment_amount: Money,
    /// The first payment's due date.
    pub first_payment_due: NaiveDate,
    /// The signed patient page.
    pub patient_page_link: Url,
}
redacted_debug!(FinancingSummary);

impl FinancingSummary {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            patient_first_name: "Alex".into(),
            lender_name: "Sample Lender".into(),
            approved_amount: Money::usd(240_000),
            promotional_terms: Some(ApprovedTerms::sample()),
            first_payment_amount: Money::usd(10_000),
            first_payment_due: sample_date(),
            patient_page_link: sample_url("p/SAMPLE-TOKEN"),
        }
    }
}

impl sealed::Sealed for FinancingSummary {
    fn vars(&self, lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("patient_first_name", s(&self.patient_first_name)),
            ("lender_name", s(&self.lender_name)),
            ("approved_amount", money(self.approved_amount)),
            (
                "promotional_terms",
                self.promotional_terms
                    .as_ref()
                    .map(ApprovedTerms::value)
                    .into(),
            ),
            // A zero first payment (an approval without a deposit) is no payment: not stated.
            (
                "first_payment",
                Value::from(!self.first_payment_amount.is_zero()),
            ),
            ("first_payment_amount", money(self.first_payment_amount)),
            (
                "first_payment_due",
                Value::from(format_date(self.first_payment_due, lang)),
            ),
            ("patient_page_link", link(&self.patient_page_link)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        self.promotional_terms
            .iter()
            .flat_map(|t| [t.summary.as_str(), t.disclosure.as_str()])
            .collect()
    }

    fn samples() -> Vec<Self> {
        let full = Self::sample();
        let bare = Self {
            promotional_terms: None,
            ..full.clone()
        };
        vec![full, bare]
    }
}

impl MessageContext for FinancingSummary {
    const TEMPLATE: TemplateId = TemplateId::FinancingSummary;
}
impl EmailContext for FinancingSummary {}
impl SmsContext for FinancingSummary {}

/// The default invitation: financing is available, here is the lender's application link.
/// States no terms (Reg Z).
#[derive(Clone, PartialEq, Eq)]
pub struct ApplicationLink {
    /// The practice's name.
    pub practice_name: String,
    /// The patient's first name.
    pub patient_first_name: String,
    /// The lender's display name.
    pub lender_name: String,
    /// The lender's hosted application link (the patient starts and completes it).
    pub application_link: Url,
}
redacted_debug!(ApplicationLink);

impl ApplicationLink {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            patient_first_name: "Alex".into(),
            lender_name: "Sample Lender".into(),
            application_link: sample_url("apply/SAMPLE"),
        }
    }
}

impl sealed::Sealed for ApplicationLink {
    fn vars(&self, _lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("patient_first_name", s(&self.patient_first_name)),
            ("lender_name", s(&self.lender_name)),
            ("application_link", link(&self.application_link)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        vec![Self::sample()]
    }
}

impl MessageContext for ApplicationLink {
    const TEMPLATE: TemplateId = TemplateId::ApplicationLink;
}
impl EmailContext for ApplicationLink {}
impl SmsContext for ApplicationLink {}

/// The link to the practice's intake page on Chairside, sent to a new patient when staff start an
/// intake: the patient types their own details there (docs/intake.md). Names no lender and states
/// no terms (Reg Z); its text needs written consent, as any message that invites the patient to
/// apply for financing (COMPLIANCE.md section 5).
#[derive(Clone, PartialEq, Eq)]
pub struct IntakeLink {
    /// The practice's name.
    pub practice_name: String,
    /// The patient's first name.
    pub patient_first_name: String,
    /// The patient's intake page (`/i/{token}`).
    pub intake_link: Url,
}
redacted_debug!(IntakeLink);

impl IntakeLink {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            patient_first_name: "Alex".into(),
            intake_link: sample_url("i/SAMPLE"),
        }
    }
}

impl sealed::Sealed for IntakeLink {
    fn vars(&self, _lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("patient_first_name", s(&self.patient_first_name)),
            ("intake_link", link(&self.intake_link)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        vec![Self::sample()]
    }
}

impl MessageContext for IntakeLink {
    const TEMPLATE: TemplateId = TemplateId::IntakeLink;
}
impl EmailContext for IntakeLink {}
impl SmsContext for IntakeLink {}

/// A reminder for a patient who has not finished the application. States no terms (Reg Z).
#[derive(Clone, PartialEq, Eq)]
pub struct Reminder {
    /// The practice's name.
    pub practice_name: String,
    /// The patient's first name.
    pub patient_first_name: String,
    /// The lender's display name.
    pub lender_name: String,
    /// The lender's hosted application link.
    pub application_link: Url,
}
redacted_debug!(Reminder);

impl Reminder {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            patient_first_name: "Alex".into(),
            lender_name: "Sample Lender".into(),
            application_link: sample_url("apply/SAMPLE"),
        }
    }
}

impl sealed::Sealed for Reminder {
    fn vars(&self, _lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("patient_first_name", s(&self.patient_first_name)),
            ("lender_name", s(&self.lender_name)),
            ("application_link", link(&self.application_link)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        vec![Self::sample()]
    }
}

impl MessageContext for Reminder {
    const TEMPLATE: TemplateId = TemplateId::Reminder;
}
impl EmailContext for Reminder {}
impl SmsContext for Reminder {}

/// A scheduled payment failed; the patient can update the payment method.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentFailed {
    /// The practice's name.
    pub practice_name: String,
    /// The patient's first name.
    pub patient_first_name: String,
    /// The amount that failed, when the sender can name it; the templates then leave the amount
    /// out rather than print a made-up one.
    pub amount_due: Option<Money>,
    /// Where the patient updates the payment method (a Stripe-hosted page or the patient page).
    pub update_payment_link: Url,
}
redacted_debug!(PaymentFailed);

impl PaymentFailed {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            patient_first_name: "Alex".into(),
            amount_due: Some(Money::usd(10_000)),
            update_payment_link: sample_url("p/SAMPLE-TOKEN/payment"),
        }
    }
}

impl sealed::Sealed for PaymentFailed {
    fn vars(&self, _lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("patient_first_name", s(&self.patient_first_name)),
            ("amount_due", self.amount_due.map(money).into()),
            ("update_payment_link", link(&self.update_payment_link)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        let full = Self::sample();
        let bare = Self {
            amount_due: None,
            ..full.clone()
        };
        vec![full, bare]
    }
}

impl MessageContext for PaymentFailed {
    const TEMPLATE: TemplateId = TemplateId::PaymentFailed;
}
impl EmailContext for PaymentFailed {}
impl SmsContext for PaymentFailed {}

/// The numbers of the practice's in-house plan. The words around them are counsel-approved copy
/// that ships per language with the templates (`inhouse_offer.terms.txt` and
/// `inhouse_offer.disclosure.txt`), so a Spanish-speaking patient reads Spanish terms.
#[derive(Clone, PartialEq, Eq)]
pub struct InhousePlan {
    /// How many installments.
    pub installments: u32,
    /// The first installment (it carries any remainder cents).
    pub first_amount: Money,
    /// Time between installments.
    pub interval: InstallmentInterval,
    /// The practice's phone number, as patients dial it (for questions about the plan).
    pub practice_phone: String,
    /// The approval reference of the plan's copy, kept for the audit trail; not printed.
    pub approval_reference: String,
}

impl fmt::Debug for InhousePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InhousePlan")
            .field("installments", &self.installments)
            .field("approval_reference", &self.approval_reference)
            .finish_non_exhaustive()
    }
}

impl InhousePlan {
    fn sample() -> Self {
        Self {
            installments: 6,
            first_amount: Money::usd(33_334),
            interval: InstallmentInterval::MONTHLY,
            practice_phone: "(555) 010-0199".into(),
            approval_reference: "SAMPLE-IN-HOUSE-1".into(),
        }
    }

    fn value(&self) -> Value {
        let unit = match self.interval.unit {
            IntervalUnit::Day => "day",
            IntervalUnit::Week => "week",
            IntervalUnit::Month => "month",
        };
        Value::from(BTreeMap::from([
            ("installments", Value::from(self.installments)),
            ("first_amount", money(self.first_amount)),
            ("interval_count", Value::from(self.interval.count)),
            ("interval_unit", Value::from(unit)),
            ("practice_phone", s(&self.practice_phone)),
        ]))
    }
}

/// The practice's in-house payment plan, offered when every lender declined. Its terms are
/// counsel-approved copy rendered per language from [`InhousePlan`]; the text around them states
/// none (Reg Z).
#[derive(Clone, PartialEq, Eq)]
pub struct InhouseOffer {
    /// The practice's name.
    pub practice_name: String,
    /// The patient's first name.
    pub patient_first_name: String,
    /// The plan's numbers; the approved copy words them. Email only.
    pub plan: InhousePlan,
    /// The patient page where the plan can be accepted.
    pub offer_link: Url,
}
redacted_debug!(InhouseOffer);

impl InhouseOffer {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            patient_first_name: "Alex".into(),
            plan: InhousePlan::sample(),
            offer_link: sample_url("p/SAMPLE-TOKEN/plan"),
        }
    }
}

impl sealed::Sealed for InhouseOffer {
    fn vars(&self, _lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("patient_first_name", s(&self.patient_first_name)),
            ("plan", self.plan.value()),
            ("offer_link", link(&self.offer_link)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        // The approved copy is rendered from the templates' terms parts; the renderer exempts it.
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        let monthly = Self::sample();
        let weekly = Self {
            plan: InhousePlan {
                installments: 1,
                interval: InstallmentInterval {
                    unit: IntervalUnit::Week,
                    count: 2,
                },
                ..InhousePlan::sample()
            },
            ..monthly.clone()
        };
        vec![monthly, weekly]
    }
}

impl MessageContext for InhouseOffer {
    const TEMPLATE: TemplateId = TemplateId::InhouseOffer;
}
impl EmailContext for InhouseOffer {}
impl SmsContext for InhouseOffer {}

/// An alert to the practice's staff (email only). Carries initials, never a full name.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffAlert {
    /// The practice's name.
    pub practice_name: String,
    /// The patient's initials (`PatientContact::initials`).
    pub patient_initials: String,
    /// What needs attention, in staff terms (no clinical details).
    pub reason: String,
    /// The staff dashboard entry.
    pub dashboard_link: Url,
}
redacted_debug!(StaffAlert);

impl StaffAlert {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            patient_initials: "A.S.".into(),
            reason: "The patient replied to a text in their own words; please review.".into(),
            dashboard_link: sample_url("staff/workflows/SAMPLE"),
        }
    }
}

impl sealed::Sealed for StaffAlert {
    fn vars(&self, _lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("patient_initials", s(&self.patient_initials)),
            ("reason", s(&self.reason)),
            ("dashboard_link", link(&self.dashboard_link)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        vec![Self::sample()]
    }
}

impl MessageContext for StaffAlert {
    const TEMPLATE: TemplateId = TemplateId::StaffAlert;
}
impl EmailContext for StaffAlert {}

/// A fresh link to pay the deposit after a failed payment: the patient page, where the deposit
/// is paid.
#[derive(Clone, PartialEq, Eq)]
pub struct PayLinkReissued {
    /// The practice's name.
    pub practice_name: String,
    /// The patient's first name.
    pub patient_first_name: String,
    /// The deposit the link collects (never zero: no link is made for nothing).
    pub deposit: Money,
    /// The patient page, where the deposit is paid.
    pub pay_link: Url,
}
redacted_debug!(PayLinkReissued);

impl PayLinkReissued {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            patient_first_name: "Alex".into(),
            deposit: Money::usd(12_000),
            pay_link: sample_url("p/SAMPLE-TOKEN"),
        }
    }
}

impl sealed::Sealed for PayLinkReissued {
    fn vars(&self, _lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("patient_first_name", s(&self.patient_first_name)),
            ("deposit", money(self.deposit)),
            ("pay_link", link(&self.pay_link)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        vec![Self::sample()]
    }
}

impl MessageContext for PayLinkReissued {
    const TEMPLATE: TemplateId = TemplateId::PayLinkReissued;
}
impl EmailContext for PayLinkReissued {}
impl SmsContext for PayLinkReissued {}

/// One task of a [`StaffDigest`]: what a single [`StaffAlert`] would say.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffDigestTask {
    /// The patient's initials (`PatientContact::initials`).
    pub patient_initials: String,
    /// What needs attention, in staff terms (no clinical details).
    pub reason: String,
    /// The staff dashboard entry.
    pub dashboard_link: Url,
}
impl fmt::Debug for StaffDigestTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffDigestTask").finish_non_exhaustive()
    }
}

/// One alert to staff for several tasks that arrived together, oldest first.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffDigest {
    /// The practice's name.
    pub practice_name: String,
    /// The tasks.
    pub tasks: Vec<StaffDigestTask>,
}
redacted_debug!(StaffDigest);

impl StaffDigest {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            tasks: vec![
                StaffDigestTask {
                    patient_initials: "A.S.".into(),
                    reason: "plan tx-1 (patient quiet): the patient did not finish".into(),
                    dashboard_link: sample_url("staff/workflows/SAMPLE-1"),
                },
                StaffDigestTask {
                    patient_initials: "B.T.".into(),
                    reason: "plan tx-2 (counteroffer): a lender made a counteroffer".into(),
                    dashboard_link: sample_url("staff/workflows/SAMPLE-2"),
                },
            ],
        }
    }
}

impl sealed::Sealed for StaffDigest {
    fn vars(&self, _lang: Language) -> Vars {
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| {
                Value::from(BTreeMap::from([
                    ("patient_initials", s(&t.patient_initials)),
                    ("reason", s(&t.reason)),
                    ("dashboard_link", link(&t.dashboard_link)),
                ]))
            })
            .collect();
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("task_count", Value::from(self.tasks.len())),
            ("tasks", Value::from(tasks)),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        vec![Self::sample()]
    }
}

impl MessageContext for StaffDigest {
    const TEMPLATE: TemplateId = TemplateId::StaffDigest;
}
impl EmailContext for StaffDigest {}

/// The answer to HELP: the practice's contact details (SMS only).
#[derive(Clone, PartialEq, Eq)]
pub struct HelpReply {
    /// The practice's name.
    pub practice_name: String,
    /// The practice's phone number, as patients dial it.
    pub practice_phone: String,
    /// The practice's email address, when it gives one out.
    pub practice_email: Option<String>,
}
redacted_debug!(HelpReply);

impl HelpReply {
    /// A made-up context for tests and previews.
    pub fn sample() -> Self {
        Self {
            practice_name: "Bright Smiles Dental".into(),
            practice_phone: "(555) 010-0199".into(),
            practice_email: Some("frontdesk@example.test".into()),
        }
    }
}

impl sealed::Sealed for HelpReply {
    fn vars(&self, _lang: Language) -> Vars {
        BTreeMap::from([
            ("practice_name", s(&self.practice_name)),
            ("practice_phone", s(&self.practice_phone)),
            (
                "practice_email",
                self.practice_email.as_deref().map(s).into(),
            ),
        ])
    }

    fn approved_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    fn samples() -> Vec<Self> {
        let full = Self::sample();
        let bare = Self {
            practice_email: None,
            ..full.clone()
        };
        vec![full, bare]
    }
}

impl MessageContext for HelpReply {
    const TEMPLATE: TemplateId = TemplateId::HelpReply;
}
impl SmsContext for HelpReply {}
