//! Notes on the patient's record: the ledger note Chairside writes back, found again by a marker.
//!
//! **The note resource is unconfirmed** for Dentrix Ascend (INTEGRATIONS.md): it is modelled in
//! [`wire`](crate::wire) as a patient-note resource and must be checked against the vendor's
//! OpenAPI before production use.
//!
//! Writes carry no idempotency key, so a note write that times out or fails with a 5xx is
//! Indeterminate: look the marker up with [`Client::find_patient_note`] before writing again.
//! [`Client::ensure_patient_note`] does exactly that check-then-act.

use std::fmt;

use chrono::{DateTime, Utc};
use reqwest::Method;

use crate::client::{Call, Client};
use crate::convert;
use crate::error::{DecodeProblem, Error, Result, from_json};
use crate::ids::{NoteId, PatientId};
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

/// A note on a patient's record. Its text may hold PHI: `Debug` shows only the ids.
#[derive(Clone, PartialEq, Eq)]
pub struct PatientNote {
    /// Note id.
    pub id: NoteId,
    /// The patient.
    pub patient_id: PatientId,
    /// The note's text, marker tag included.
    pub text: String,
    /// When Ascend recorded it, when it says.
    pub created_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for PatientNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientNote")
            .field("id", &self.id)
            .field("patient_id", &self.patient_id)
            .finish_non_exhaustive()
    }
}

impl PatientNote {
    /// True when the note carries `marker`'s tag.
    pub fn has_marker(&self, marker: &NoteMarker) -> bool {
        self.text.contains(&marker.tag())
    }
}

/// What [`Client::ensure_patient_note`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteWrite {
    /// A note with the marker already existed; nothing was written.
    AlreadyWritten(PatientNote),
    /// The note was written now.
    Written(PatientNote),
}

impl NoteWrite {
    /// The note, whichever way it came.
    pub fn note(&self) -> &PatientNote {
        match self {
            Self::AlreadyWritten(n) | Self::Written(n) => n,
        }
    }
}

const NOTES: &str = "patientnotes";

impl Client {
    /// The patient's note carrying `marker`, if any. Reads every note of the patient, page by page.
    ///
    /// # Errors
    /// As [`Client::get_patient`](crate::Client::get_patient).
    pub async fn find_patient_note(
        &self,
        patient: &PatientId,
        marker: &NoteMarker,
    ) -> Result<Option<PatientNote>> {
        let raw: Vec<wire::PatientNote> = self
            .get_all(
                "list patient notes",
                NOTES,
                wire::PATIENT_NOTES,
                vec![(wire::QUERY_FILTER, wire::filter_patient(patient.as_str()))],
            )
            .await?;
        for (i, n) in raw.into_iter().enumerate() {
            let note = note_from_wire(n, patient, &format!("data[{i}]"))?;
            if note.has_marker(marker) {
                return Ok(Some(note));
            }
        }
        Ok(None)
    }

    /// Writes a note to the patient's record: `text`, then a blank line and `marker`'s tag.
    ///
    /// Never retried by the client: the note resource has no idempotency key.
    ///
    /// # Errors
    /// Indeterminate: a timeout, broken response or 5xx (other than 503): the note may exist, so
    /// call [`Client::find_patient_note`] before writing again. Transient: connect errors, 429,
    /// 503 (nothing was written). Permanent: [`Error::Auth`], [`Error::OrganizationNotEnabled`],
    /// other 4xx, [`Error::Decode`].
    pub async fn create_patient_note(
        &self,
        patient: &PatientId,
        marker: &NoteMarker,
        text: &str,
    ) -> Result<PatientNote> {
        let body = wire::NewPatientNote {
            patient: wire::Ref {
                id: wire::RawId::from_text(patient.as_str()),
                kind: None,
                url: None,
            },
            note: format!("{}\n\n{}", text.trim_end(), marker.tag()),
        };
        let body = serde_json::to_value(&body)
            .map_err(|_| Error::Config("the note cannot be encoded".into()))?;
        let call = Call {
            operation: "create patient note",
            method: Method::POST,
            segments: &[wire::PATIENT_NOTES],
            query: vec![],
            body: Some(body),
        };
        let bytes = self.execute(&call).await?;
        let envelope: wire::Envelope<wire::PatientNote> = from_json(NOTES, &bytes)?;
        let raw = envelope
            .data
            .ok_or_else(|| Error::decode(NOTES, "data", DecodeProblem::Missing))?;
        note_from_wire(raw, patient, "data")
    }

    /// Check-then-act: returns the note carrying `marker` if there is one, else writes it.
    ///
    /// # Errors
    /// As [`Client::find_patient_note`] and [`Client::create_patient_note`]. After an
    /// Indeterminate error, calling this again is the reconciliation.
    pub async fn ensure_patient_note(
        &self,
        patient: &PatientId,
        marker: &NoteMarker,
        text: &str,
    ) -> Result<NoteWrite> {
        if let Some(note) = self.find_patient_note(patient, marker).await? {
            return Ok(NoteWrite::AlreadyWritten(note));
        }
        self.create_patient_note(patient, marker, text)
            .await
            .map(NoteWrite::Written)
    }
}

fn note_from_wire(n: wire::PatientNote, patient: &PatientId, at: &str) -> Result<PatientNote> {
    let created_at = match n.date_created.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(convert::timestamp(s, NOTES, &format!("{at}.dateCreated"))?),
    };
    Ok(PatientNote {
        id: NoteId::new(n.id.into_string()),
        patient_id: n
            .patient
            .map_or_else(|| patient.clone(), |p| PatientId::new(p.id.into_string())),
        text: n.note.unwrap_or_default(),
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_refuse_text_that_could_be_confused_with_a_note() {
        assert!(NoteMarker::new("wf-42:ledger").is_ok());
        assert!(NoteMarker::new("").is_err());
        assert!(NoteMarker::new("has space").is_err());
        assert!(NoteMarker::new("x]y").is_err());
        assert_eq!(NoteMarker::new("wf-1").unwrap().tag(), "[chairside:wf-1]");
    }
}
