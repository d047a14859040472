//! TCPA opt-out handling (COMPLIANCE.md section 5): classifying inbound replies and the
//! per-practice opt-out ledger that the SMS client consults before every send.
//!
//! Consent *types* (informational vs written) and quiet hours are the caller's business, through
//! `financing_core`'s policy. This module only answers "has this number opted out of this
//! practice's texts?", and the SMS client refuses to text a number that has.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use financing_core::{Classify, ErrorKind, PracticeId};
use serde::{Deserialize, Serialize};

use crate::ids::PhoneNumber;

/// What an inbound text asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundIntent {
    /// An opt-out keyword (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT, and the
    /// Spanish ALTO, PARAR, PARE, BAJA, CANCELAR): revoke consent at once.
    OptOut,
    /// An opt-in keyword (START, UNSTOP, YES): restore consent.
    OptIn,
    /// HELP, INFO or AYUDA: answer with the practice's contact details.
    Help,
    /// A refusal in free text ("stop texting me", "don't text"): revoke consent at once, and raise
    /// a staff task so a person confirms it was meant.
    Refusal,
    /// Anything else: not a consent matter.
    Other,
}

impl InboundIntent {
    /// True when the message revokes consent.
    pub fn revokes_consent(self) -> bool {
        matches!(self, Self::OptOut | Self::Refusal)
    }

    /// True when the message restores consent.
    pub fn restores_consent(self) -> bool {
        matches!(self, Self::OptIn)
    }

    /// True when staff must look at the message.
    pub fn needs_staff_task(self) -> bool {
        matches!(self, Self::Refusal)
    }
}

const OPT_OUT_KEYWORDS: &[&str] = &[
    "stop",
    "stopall",
    "stop all",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "optout",
    "opt out",
    "alto",
    "parar",
    "pare",
    "baja",
    "cancelar",
];
const OPT_IN_KEYWORDS: &[&str] = &["start", "unstop", "yes"];
const HELP_KEYWORDS: &[&str] = &["help", "info", "ayuda"];

/// Words that revoke wherever they appear ("please STOP", "unsubscribe me"). CANCEL, END and
/// QUIT only count alone: inside a sentence they usually mean something else ("cancel my
/// appointment"), and such messages still reach staff.
const REFUSAL_WORDS: &[&str] = &["stop", "stopall", "unsubscribe", "optout", "revoke"];

/// Phrases, after folding (lower case, no accents, no apostrophes, single spaces).
const REFUSAL_PHRASES: &[&str] = &[
    "stop texting",
    "stop messaging",
    "stop sending",
    "stop contacting",
    "dont text",
    "do not text",
    "dont message",
    "do not message",
    "dont contact",
    "do not contact",
    "dont send",
    "do not send",
    "no more texts",
    "no more text",
    "no more messages",
    "remove me",
    "take me off",
    "opt me out",
    "opt out",
    "leave me alone",
    "not interested",
    "no me escriban",
    "no me envien",
    "no me manden",
    "no me contacten",
    "no me llamen",
    "dejen de",
    "deje de",
    "no mas mensajes",
    "no quiero recibir",
    "no quiero mensajes",
    "darme de baja",
    "denme de baja",
];

/// Lower case, accents removed, apostrophes dropped, everything else that is not a letter or a
/// digit turned into single spaces.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'á' | 'à' | 'ä' | 'â' => 'a',
            'é' | 'è' | 'ë' | 'ê' => 'e',
            'í' | 'ì' | 'ï' | 'î' => 'i',
            'ó' | 'ò' | 'ö' | 'ô' => 'o',
            'ú' | 'ù' | 'ü' | 'û' => 'u',
            other => other,
        };
        if matches!(c, '\'' | '’' | '`') {
            continue;
        }
        if c.is_alphanumeric() {
            out.push(c);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    out.trim_end().to_owned()
}

/// Classifies an inbound text. Pure.
///
/// A keyword counts when it is the whole message, ignoring case, surrounding whitespace and
/// punctuation (`Stop.` is STOP). Because the FCC requires honouring opt-outs "by any reasonable
/// means", an opt-out word inside a sentence, or a refusal phrase in English or Spanish, is a
/// [`InboundIntent::Refusal`]: consent is revoked and staff review it. This errs towards
/// revoking; a patient who meant otherwise can reply START.
pub fn classify_inbound(body: &str) -> InboundIntent {
    let folded = fold(body);
    if OPT_OUT_KEYWORDS.contains(&folded.as_str()) {
        return InboundIntent::OptOut;
    }
    if OPT_IN_KEYWORDS.contains(&folded.as_str()) {
        return InboundIntent::OptIn;
    }
    if HELP_KEYWORDS.contains(&folded.as_str()) {
        return InboundIntent::Help;
    }
    let padded = format!(" {folded} ");
    let words: Vec<&str> = folded.split(' ').collect();
    let refuses = words.iter().enumerate().any(|(i, w)| {
        // "I'll stop by tomorrow" is not a refusal.
        REFUSAL_WORDS.contains(w) && !(*w == "stop" && words.get(i + 1) == Some(&"by"))
    }) || REFUSAL_PHRASES
        .iter()
        .any(|p| padded.contains(&format!(" {p} ")));
    if refuses {
        InboundIntent::Refusal
    } else {
        InboundIntent::Other
    }
}

/// Where a consent change came from. Stored by ledgers: the serde names are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsentSource {
    /// An opt-out or opt-in keyword in an inbound text (or Twilio's `OptOutType` for it).
    InboundKeyword,
    /// A refusal in free text.
    InboundFreeText,
    /// Twilio refused a send with error 21610: the recipient had replied STOP to that sender.
    CarrierOptOut,
    /// Staff recorded it (an opt-out by phone, email or in person).
    Staff,
}

/// Opt out, or opt back in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAction {
    /// Revoke consent to texts.
    OptOut,
    /// Restore it.
    OptIn,
}

/// One change to a number's opt-out state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentChange {
    /// Out or in.
    pub action: ConsentAction,
    /// When the patient (or staff) made it, not when it was processed.
    pub at: DateTime<Utc>,
    /// Where it came from.
    pub source: ConsentSource,
}

impl ConsentChange {
    /// An opt-out.
    pub fn opt_out(at: DateTime<Utc>, source: ConsentSource) -> Self {
        Self {
            action: ConsentAction::OptOut,
            at,
            source,
        }
    }

    /// An opt-in.
    pub fn opt_in(at: DateTime<Utc>, source: ConsentSource) -> Self {
        Self {
            action: ConsentAction::OptIn,
            at,
            source,
        }
    }
}

/// Whether a number has opted out of a practice's texts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OptOutState {
    /// No opt-out on record (or the latest change was an opt-in). Consent *type* is checked
    /// elsewhere.
    #[default]
    NotOptedOut,
    /// Opted out.
    OptedOut {
        /// When.
        at: DateTime<Utc>,
        /// How.
        source: ConsentSource,
    },
}

impl OptOutState {
    /// True when the number has opted out.
    pub fn is_opted_out(&self) -> bool {
        matches!(self, Self::OptedOut { .. })
    }

    /// The state after `change`, when `change` is the latest one on record.
    pub fn after(change: &ConsentChange) -> Self {
        match change.action {
            ConsentAction::OptOut => Self::OptedOut {
                at: change.at,
                source: change.source,
            },
            ConsentAction::OptIn => Self::NotOptedOut,
        }
    }
}

/// A ledger failure, classified. The orchestrator's database implementation wraps its own error.
#[derive(Debug, thiserror::Error)]
#[error("consent ledger ({kind})")]
pub struct LedgerError {
    kind: ErrorKind,
    #[source]
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl LedgerError {
    /// Wraps a storage error with its classification.
    pub fn new(
        kind: ErrorKind,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// The classification.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl Classify for LedgerError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// The opt-out record per phone number per practice. An opt-out applies to all of the practice's
/// sending numbers (COMPLIANCE.md section 5).
///
/// The orchestrator implements this on its database; [`InMemoryConsentLedger`] serves tests and
/// the demo. Implementations must keep the latest change by `at`, and at an equal instant let an
/// opt-out win, so that webhooks processed out of order never re-subscribe anyone.
#[async_trait::async_trait]
pub trait ConsentLedger: Send + Sync {
    /// The number's current state for the practice.
    ///
    /// # Errors
    /// [`LedgerError`] with the storage's kind (usually transient).
    async fn opt_out_state(
        &self,
        practice: &PracticeId,
        phone: &PhoneNumber,
    ) -> Result<OptOutState, LedgerError>;

    /// Records a change and returns the resulting state (which is unchanged when a later change
    /// is already on record).
    ///
    /// # Errors
    /// [`LedgerError`] with the storage's kind (usually transient).
    async fn record(
        &self,
        practice: &PracticeId,
        phone: &PhoneNumber,
        change: &ConsentChange,
    ) -> Result<OptOutState, LedgerError>;
}

// `ConsentLedger` is held as `Arc<dyn ConsentLedger>`: prove object safety at compile time.
#[cfg(test)]
fn _obj_safe(_: Box<dyn ConsentLedger>) {}

/// A [`ConsentLedger`] in memory, for tests and the demo. Lost on restart: not for production.
#[derive(Default)]
pub struct InMemoryConsentLedger {
    latest: Mutex<HashMap<(PracticeId, PhoneNumber), ConsentChange>>,
}

impl InMemoryConsentLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(PracticeId, PhoneNumber), ConsentChange>> {
        // A poisoned lock only means another test thread panicked; the map is still consistent
        // because every update is a single insert.
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for InMemoryConsentLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryConsentLedger")
            .field("numbers", &self.lock().len())
            .finish()
    }
}

#[async_trait::async_trait]
impl ConsentLedger for InMemoryConsentLedger {
    async fn opt_out_state(
        &self,
        practice: &PracticeId,
        phone: &PhoneNumber,
    ) -> Result<OptOutState, LedgerError> {
        Ok(self
            .lock()
            .get(&(practice.clone(), phone.clone()))
            .map(OptOutState::after)
            .unwrap_or_default())
    }

    async fn record(
        &self,
        practice: &PracticeId,
        phone: &PhoneNumber,
        change: &ConsentChange,
    ) -> Result<OptOutState, LedgerError> {
        let mut map = self.lock();
        let key = (practice.clone(), phone.clone());
        let newer = match map.get(&key) {
            None => true,
            Some(old) => {
                change.at > old.at
                    || (change.at == old.at && change.action == ConsentAction::OptOut)
            }
        };
        if newer {
            map.insert(key.clone(), *change);
        }
        Ok(map.get(&key).map(OptOutState::after).unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------------------------
// Consent records (COMPLIANCE.md section 5: "each phone number has a consent record (type,
// source, timestamp, wording shown)"; DESIGN.md: "consent is a record, not a flag").
// ---------------------------------------------------------------------------------------------

/// What a grant of consent covers (TCPA, 47 U.S.C. 227).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentKind {
    /// Prior express consent: informational texts (summaries, reminders, payment notices).
    Informational,
    /// Prior express written consent: also texts that promote financing.
    Written,
}

impl ConsentKind {
    /// The stable label stored with the record.
    pub fn label(self) -> &'static str {
        match self {
            Self::Informational => "informational",
            Self::Written => "written",
        }
    }

    /// The kind for a stored label.
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "informational" => Some(Self::Informational),
            "written" => Some(Self::Written),
            _ => None,
        }
    }
}

/// Stable source labels of consent records. A withdrawal's label says how it came; a grant's
/// label says who stands behind it ([`Standing`]).
pub mod sources {
    /// STOP or one of its synonyms in an inbound text.
    pub const SMS_STOP: &str = "sms:stop";
    /// A refusal in free text ("stop texting me").
    pub const SMS_REFUSAL: &str = "sms:refusal";
    /// START (or UNSTOP, YES) in an inbound text: the patient's own opt-in.
    pub const SMS_START: &str = "sms:start";
    /// Twilio refused a send with 21610, or reported a carrier opt-out.
    pub const CARRIER_OPT_OUT: &str = "carrier_opt_out";
    /// The opt-in form on the patient page: the patient's own opt-in, with its wording.
    pub const PATIENT_PAGE: &str = "patient_page";
    /// The opt-in on Chairside's new-patient intake page: the patient's own, with its wording
    /// (the patient page's, [`super::PATIENT_PAGE_WORDING`]).
    pub const INTAKE_PAGE: &str = "intake_page";
    /// Staff recorded that the patient agreed in person.
    pub const STAFF_IN_PERSON: &str = "staff:in_person";
    /// Staff recorded that the patient agreed on the intake form.
    pub const STAFF_INTAKE_FORM: &str = "staff:intake_form";
    /// Staff recorded a withdrawal (by phone, email, in person).
    pub const STAFF_WITHDRAWAL: &str = "staff:withdrawal";
    /// The prefix of a practice system's attestation (`practice_system:opendental`).
    pub const PRACTICE_SYSTEM_PREFIX: &str = "practice_system:";
    /// Labels written before consent records existed: an opt-in keyword through the ledger.
    pub const LEGACY_INBOUND_KEYWORD: &str = "inbound_keyword";
}

/// The wording the patient page's opt-in shows, stored verbatim with every opt-in made there.
/// Counsel approves it; changing it changes what later records say, never earlier ones.
pub const PATIENT_PAGE_WORDING: &str = "Text me about my treatment financing at this number: \
application links, reminders, my financing summary and payment notices. Message frequency \
varies; message and data rates may apply. Reply STOP to stop, HELP for help. Consent is not a \
condition of treatment or financing.";

/// [`PATIENT_PAGE_WORDING`] in Spanish, for a patient who reads the page in Spanish: the
/// consent record stores the wording the patient was shown, in the language they read it in.
pub const PATIENT_PAGE_WORDING_ES: &str = "Envíenme mensajes de texto sobre el financiamiento \
de mi tratamiento a este número: enlaces de solicitud, recordatorios, el resumen de mi \
financiamiento y avisos de pago. La frecuencia de los mensajes varía; pueden aplicarse tarifas \
de mensajes y datos. Responda STOP para dejarlos de recibir, HELP para obtener ayuda. El \
consentimiento no es una condición para el tratamiento ni para el financiamiento.";

/// The patient page's opt-in wording in `lang`.
pub fn patient_page_wording(lang: financing_core::Language) -> &'static str {
    match lang {
        financing_core::Language::Es => PATIENT_PAGE_WORDING_ES,
        _ => PATIENT_PAGE_WORDING,
    }
}

/// The wording recorded with a staff entry "agreed in person".
pub const STAFF_IN_PERSON_WORDING: &str = "The patient agreed in person, at the front desk, to \
receive texts about treatment financing at this number (recorded by staff).";

/// The wording recorded with a staff entry "on the intake form".
pub const STAFF_INTAKE_FORM_WORDING: &str = "The patient agreed on the signed intake form to \
receive texts about treatment financing at this number (recorded by staff).";

/// The wording recorded with a practice system's attestation.
pub fn practice_system_wording(system: &str, field: &str) -> String {
    format!(
        "The practice's record in {system} ({field}) says the patient agreed to receive texts; \
         recorded as the practice's attestation, the wording the patient saw is the practice's."
    )
}

/// Who stands behind a consent record, which decides what it can override.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Standing {
    /// STOP and its synonyms, a carrier opt-out, staff, or the practice system saying no.
    Withdrawal,
    /// The patient's own opt-in (START, the patient page).
    PatientGrant,
    /// Someone else's word that the patient agreed: the practice system, staff.
    Attestation,
    /// A row from before consent records: not opted out, nothing granted.
    Cleared,
}

impl Standing {
    /// The standing of a record with `source` that grants (`grants`) or withdraws.
    pub fn of(source: &str, grants: bool) -> Self {
        if !grants {
            return Self::Withdrawal;
        }
        match source {
            sources::SMS_START
            | sources::PATIENT_PAGE
            | sources::INTAKE_PAGE
            | sources::LEGACY_INBOUND_KEYWORD => Self::PatientGrant,
            _ => Self::Attestation,
        }
    }
}

/// Whether a record (`change`, made at `change_at`) replaces the one `held` as the number's
/// current consent. Pure; the rules of COMPLIANCE.md section 5 and DESIGN.md:
///
/// - a withdrawal always wins over an attestation, and over a patient's grant that is not later
///   than it (at an equal instant the withdrawal wins);
/// - an attestation (the practice system, staff) never overrides a withdrawal, nor the patient's
///   own grant;
/// - only the patient's own later opt-in (START, the page) grants again after a withdrawal.
///
/// Applied pairwise in any order, the result is the one a replay of the history in time order
/// gives, so webhooks processed out of order never re-subscribe anyone.
pub fn supersedes(
    change: Standing,
    change_at: DateTime<Utc>,
    held: Option<(Standing, DateTime<Utc>)>,
) -> bool {
    use Standing::{Attestation, Cleared, PatientGrant, Withdrawal};
    let Some((held, held_at)) = held else {
        return true;
    };
    match (change, held) {
        (Withdrawal, Withdrawal) => change_at > held_at,
        (Withdrawal, Attestation) => true,
        (Withdrawal, PatientGrant | Cleared) => change_at >= held_at,
        (PatientGrant, Withdrawal | PatientGrant) => change_at > held_at,
        (PatientGrant, Attestation | Cleared) => true,
        (Attestation, Withdrawal | PatientGrant) => false,
        (Attestation, Attestation) => change_at > held_at,
        (Attestation, Cleared) => true,
        (Cleared, _) => false,
    }
}

/// One entry of a number's consent history: who granted or withdrew what, with which wording,
/// when, and who recorded it. PHI-free (the number is the store's key, never in here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEntry {
    /// What was granted; `None` for a withdrawal.
    pub grant: Option<ConsentKind>,
    /// Where it came from ([`sources`]).
    pub source: String,
    /// The exact wording the patient saw (the page, the staff statement, the attestation); for a
    /// withdrawal, what was received ("STOP", "carrier opt-out").
    pub wording: String,
    /// Who recorded it (`patient`, `staff:alice`, `webhook:twilio`, `runner`).
    pub recorded_by: String,
    /// When the patient (or staff) made it.
    pub at: DateTime<Utc>,
}

impl ConsentEntry {
    /// A grant.
    pub fn grant(
        kind: ConsentKind,
        source: impl Into<String>,
        wording: impl Into<String>,
        recorded_by: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            grant: Some(kind),
            source: source.into(),
            wording: wording.into(),
            recorded_by: recorded_by.into(),
            at,
        }
    }

    /// A withdrawal.
    pub fn withdrawal(
        source: impl Into<String>,
        wording: impl Into<String>,
        recorded_by: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            grant: None,
            source: source.into(),
            wording: wording.into(),
            recorded_by: recorded_by.into(),
            at,
        }
    }

    /// Its standing.
    pub fn standing(&self) -> Standing {
        Standing::of(&self.source, self.grant.is_some())
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    /// Replays `history` one record at a time in the given order.
    fn fold(history: &[(Standing, i64)]) -> Option<(Standing, i64)> {
        let mut held: Option<(Standing, i64)> = None;
        for &(s, at) in history {
            if supersedes(s, t(at), held.map(|(h, a)| (h, t(a)))) {
                held = Some((s, at));
            }
        }
        held
    }

    use Standing::{Attestation, PatientGrant, Withdrawal};

    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        if items.is_empty() {
            return vec![Vec::new()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first.clone());
                out.push(tail);
            }
        }
        out
    }

    #[test]
    fn sources_have_the_standing_the_rules_give_them() {
        assert_eq!(Standing::of(sources::SMS_START, true), PatientGrant);
        assert_eq!(Standing::of(sources::PATIENT_PAGE, true), PatientGrant);
        assert_eq!(Standing::of(sources::INTAKE_PAGE, true), PatientGrant);
        assert_eq!(Standing::of(sources::STAFF_IN_PERSON, true), Attestation);
        assert_eq!(
            Standing::of("practice_system:opendental", true),
            Attestation
        );
        assert_eq!(Standing::of(sources::SMS_STOP, false), Withdrawal);
        assert_eq!(Standing::of(sources::STAFF_WITHDRAWAL, false), Withdrawal);
    }

    #[test]
    fn an_attestation_never_overrides_a_withdrawal() {
        assert_eq!(
            fold(&[(Attestation, 0), (Withdrawal, 1), (Attestation, 2)]),
            Some((Withdrawal, 1))
        );
        // Even when the attestation is much later.
        assert_eq!(
            fold(&[(Withdrawal, 1), (Attestation, 1_000_000)]),
            Some((Withdrawal, 1))
        );
    }

    #[test]
    fn only_the_patients_later_opt_in_grants_again() {
        assert_eq!(
            fold(&[(Withdrawal, 1), (PatientGrant, 2)]),
            Some((PatientGrant, 2))
        );
        assert_eq!(
            fold(&[(Withdrawal, 2), (PatientGrant, 1)]),
            Some((Withdrawal, 2))
        );
        // At an equal instant the withdrawal wins, in either order.
        assert_eq!(
            fold(&[(Withdrawal, 1), (PatientGrant, 1)]),
            Some((Withdrawal, 1))
        );
        assert_eq!(
            fold(&[(PatientGrant, 1), (Withdrawal, 1)]),
            Some((Withdrawal, 1))
        );
    }

    /// Whatever order the records of a history arrive in, the outcome grants exactly when a
    /// replay in time order does.
    #[test]
    fn the_outcome_does_not_depend_on_arrival_order() {
        let kinds = [Withdrawal, PatientGrant, Attestation];
        // Every history of up to four records at distinct times, every arrival order.
        let mut histories: Vec<Vec<(Standing, i64)>> = vec![vec![]];
        for at in 1..=4 {
            let mut next = histories.clone();
            for h in &histories {
                for k in kinds {
                    let mut h = h.clone();
                    h.push((k, at));
                    next.push(h);
                }
            }
            histories = next;
        }
        for history in histories {
            let replay = fold(&history).map(|(s, _)| s != Withdrawal);
            for arrival in permutations(&history) {
                let got = fold(&arrival).map(|(s, _)| s != Withdrawal);
                assert_eq!(got, replay, "history {history:?} arriving as {arrival:?}");
            }
        }
    }
}
