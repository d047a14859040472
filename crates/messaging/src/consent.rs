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
