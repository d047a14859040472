//! Write-back: the ledger note, as a communication log entry. Asynchronous.
//!
//! NexHealth queues writes and applies them to the EHR later, so a note goes
//! [`WriteState::Requested`] → [`WriteState::Confirmed`] or [`WriteState::Failed`]. Confirmation
//! comes from an `*_insertion` webhook (see [`WebhookEvent`]) or from reading the entry back
//! ([`Client::get_ledger_note`]: confirmed once the EHR's id is present).
//!
//! `POST /communication_logs` is beta and documented for Open Dental only; no note endpoint is
//! confirmed for Dentrix through NexHealth (INTEGRATIONS.md). Writes carry no idempotency key:
//! check the marker first ([`Client::ensure_ledger_note`]).

use std::fmt;

use crate::client::Client;
use crate::convert;
use crate::error::{DecodeProblem, Error, Result};
use crate::ids::{CommunicationLogId, PatientId};
use crate::webhooks::{WebhookEvent, WebhookEventKind};
use crate::wire;

/// Our marker in a note (the workflow id), used to find the note again instead of writing it twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NoteMarker(String);

impl NoteMarker {
    /// A marker. It must be 1–100 characters of letters, digits, `-`, `_`, `.` or `:`, so that it
    /// cannot be confused with note text.
    ///
    /// # Errors
    /// [`Error::Config`] (Permanent) for an empty, long or oddly formed marker.
    pub fn new(marker: impl Into<String>) -> Result<Self> {
        let marker = marker.into();
        let ok = !marker.is_empty()
            && marker.len() <= 100
            && marker
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if ok {
            Ok(Self(marker))
        } else {
            Err(Error::Config(
                "a note marker is 1-100 characters of letters, digits, - _ . :".into(),
            ))
        }
    }

    /// The marker.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag written into the note's text: `[chairside:<marker>]`.
    pub fn tag(&self) -> String {
        format!("[chairside:{}]", self.0)
    }
}

/// Where an asynchronous write stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WriteState {
    /// NexHealth accepted the write (202); the EHR does not have it yet.
    Requested,
    /// The EHR has it.
    Confirmed,
    /// NexHealth reported that the EHR refused it: a person must look.
    Failed,
}

impl WriteState {
    /// The state an insertion event reports, when it is one.
    pub fn from_event(event: &WebhookEvent) -> Option<Self> {
        match event.kind {
            WebhookEventKind::InsertionCompleted => Some(Self::Confirmed),
            WebhookEventKind::InsertionFailed => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A ledger note (communication log entry). Its text may hold PHI: `Debug` shows only ids and
/// state.
#[derive(Clone, PartialEq, Eq)]
pub struct LedgerNote {
    /// The entry's id, when NexHealth returned one.
    pub id: Option<CommunicationLogId>,
    /// The patient.
    pub patient_id: PatientId,
    /// The text, marker tag included.
    pub text: String,
    /// Where the write stands.
    pub state: WriteState,
}

impl fmt::Debug for LedgerNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerNote")
            .field("id", &self.id)
            .field("patient_id", &self.patient_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl LedgerNote {
    /// True when the note carries `marker`'s tag.
    pub fn has_marker(&self, marker: &NoteMarker) -> bool {
        self.text.contains(&marker.tag())
    }

    /// Applies an insertion event about this entry; other events change nothing. Returns whether
    /// the state changed.
    pub fn apply(&mut self, event: &WebhookEvent) -> bool {
        let about_me = self.id.is_some() && event.communication_log_id() == self.id;
        match WriteState::from_event(event) {
            Some(state) if about_me && state != self.state => {
                self.state = state;
                true
            }
            _ => false,
        }
    }
}

/// What [`Client::ensure_ledger_note`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteWrite {
    /// A note with the marker already existed; nothing was written.
    AlreadyRequested(LedgerNote),
    /// The write was requested now.
    Requested(LedgerNote),
}

impl NoteWrite {
    /// The note, whichever way it came.
    pub fn note(&self) -> &LedgerNote {
        match self {
            Self::AlreadyRequested(n) | Self::Requested(n) => n,
        }
    }
}

const LOGS: &str = "communication_logs";

impl Client {
    /// Requests a ledger note on the patient's record: `text`, a blank line, then `marker`'s tag.
    /// The answer (202) means queued, not written: the note starts [`WriteState::Requested`].
    ///
    /// # Errors
    /// Indeterminate: a timeout or 5xx other than 503 (the write may be queued: call
    /// [`Client::find_ledger_note`] before writing again). Transient: connect error, 429, 503.
    /// Permanent: [`Error::Auth`], other 4xx (a 403 when NexHealth has not approved writes),
    /// [`Error::Decode`].
    pub async fn request_ledger_note(
        &self,
        patient: &PatientId,
        marker: &NoteMarker,
        text: &str,
    ) -> Result<LedgerNote> {
        let note = format!("{}\n\n{}", text.trim_end(), marker.tag());
        let body = serde_json::to_value(wire::NewCommunicationLog {
            patient_id: wire::RawId::from_text(patient.as_str()),
            location_id: wire::RawId::from_text(self.location_id().as_str()),
            note: note.clone(),
        })
        .map_err(|_| Error::Config("the note cannot be encoded".into()))?;
        let envelope: wire::Envelope<wire::CommunicationLog> = self
            .post(
                "create communication log",
                LOGS,
                &[wire::COMMUNICATION_LOGS],
                body,
            )
            .await?;
        Ok(LedgerNote {
            id: envelope
                .data
                .and_then(|d| d.id)
                .map(|id| CommunicationLogId::new(id.into_string())),
            patient_id: patient.clone(),
            text: note,
            state: WriteState::Requested,
        })
    }

    /// Reads a ledger note back: [`WriteState::Confirmed`] once the EHR's id is on it, else
    /// [`WriteState::Requested`] (a failure is only reported by webhook).
    ///
    /// # Errors
    /// Transient: timeouts, connect errors, 429, 5xx. Permanent: [`Error::Auth`], 404 and other
    /// 4xx, [`Error::Decode`].
    pub async fn get_ledger_note(&self, id: &CommunicationLogId) -> Result<LedgerNote> {
        let envelope: wire::Envelope<wire::CommunicationLog> = self
            .get(
                "get communication log",
                LOGS,
                &[wire::COMMUNICATION_LOGS, id.as_str()],
                vec![],
            )
            .await?;
        let raw = envelope
            .data
            .ok_or_else(|| Error::decode(LOGS, "data", DecodeProblem::Missing))?;
        note_from_wire(raw, "data", Some(id))
    }

    /// The patient's ledger note carrying `marker`, if any. Reads every page.
    ///
    /// # Errors
    /// As [`Client::get_ledger_note`].
    pub async fn find_ledger_note(
        &self,
        patient: &PatientId,
        marker: &NoteMarker,
    ) -> Result<Option<LedgerNote>> {
        let notes = self
            .get_pages(
                "list communication logs",
                LOGS,
                &[wire::COMMUNICATION_LOGS],
                vec![(wire::QUERY_PATIENT_ID, patient.as_str().to_owned())],
                |raw: wire::CommunicationLog, at: &str| note_from_wire(raw, at, None),
            )
            .await?;
        Ok(notes.into_iter().find(|n| n.has_marker(marker)))
    }

    /// Check-then-act: the note carrying `marker` if there is one, else a new request.
    ///
    /// # Errors
    /// As [`Client::find_ledger_note`] and [`Client::request_ledger_note`]. After an
    /// Indeterminate error, calling this again is the reconciliation.
    pub async fn ensure_ledger_note(
        &self,
        patient: &PatientId,
        marker: &NoteMarker,
        text: &str,
    ) -> Result<NoteWrite> {
        if let Some(note) = self.find_ledger_note(patient, marker).await? {
            return Ok(NoteWrite::AlreadyRequested(note));
        }
        self.request_ledger_note(patient, marker, text)
            .await
            .map(NoteWrite::Requested)
    }
}

fn note_from_wire(
    raw: wire::CommunicationLog,
    at: &str,
    id: Option<&CommunicationLogId>,
) -> Result<LedgerNote> {
    let patient_id = raw
        .patient_id
        .map(|p| PatientId::new(p.into_string()))
        .ok_or_else(|| Error::decode(LOGS, format!("{at}.patient_id"), DecodeProblem::Missing))?;
    let state = if convert::non_blank(raw.foreign_id.as_deref()).is_some() {
        WriteState::Confirmed
    } else {
        WriteState::Requested
    };
    Ok(LedgerNote {
        id: raw
            .id
            .map(|i| CommunicationLogId::new(i.into_string()))
            .or_else(|| id.cloned()),
        patient_id,
        text: raw.note.unwrap_or_default(),
        state,
    })
}
