//! Patients, and their contact data in the shared domain's form.

use financing_core::{Language, PatientContact, PostalAddress, SmsConsent, UsState};

use crate::client::Client;
use crate::error::{Operation, Result};
use crate::ids::PatNum;
use crate::types::{Patient, TxtMsgOk};
use crate::wire::{self, path, resource};

/// A patient to create with `POST /patients`. PHI: `Debug` shows nothing of it.
#[derive(Clone, Default)]
pub struct NewPatient {
    /// Family name (required).
    pub last_name: String,
    /// Given name (required).
    pub first_name: String,
    /// Date of birth.
    pub birthdate: Option<chrono::NaiveDate>,
    /// Mobile phone as Open Dental stores it (`(512)555-0188`).
    pub wireless_phone: String,
    /// Email.
    pub email: String,
    /// Two-letter state.
    pub state: String,
    /// The patient's word on texts, when Chairside holds it.
    pub txt_msg_ok: Option<TxtMsgOk>,
}

impl std::fmt::Debug for NewPatient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPatient").finish_non_exhaustive()
    }
}

impl Client {
    /// `GET /patients?LName=&FName=`, every page: the patients with this name (the caller
    /// matches date of birth and phone).
    ///
    /// # Errors
    /// As [`Client::get_patient`]; [`Error::InvalidRequest`](crate::Error::InvalidRequest) for an
    /// empty name.
    pub async fn search_patients(&self, last_name: &str, first_name: &str) -> Result<Vec<Patient>> {
        if last_name.trim().is_empty() || first_name.trim().is_empty() {
            return Err(crate::Error::InvalidRequest {
                op: Operation::ListPatients,
                reason: "the name must not be empty",
            });
        }
        let listing = self
            .list_all(
                Operation::ListPatients,
                path::PATIENTS,
                &[
                    (wire::param::L_NAME, last_name.trim().to_owned()),
                    (wire::param::F_NAME, first_name.trim().to_owned()),
                ],
                resource::PATIENT,
                wire::read_patient,
            )
            .await?;
        Ok(listing.items)
    }

    /// `POST /patients`. Returns the created patient, or `None` from versions that answer 201
    /// without one. Never retried after the request may have arrived: search first.
    ///
    /// # Errors
    /// Transient for a connect error or 429; **Indeterminate** for a timeout, a dropped connection
    /// or a 5xx (the office may have the patient: search before creating again); Permanent for
    /// 400 (a missing name, or Open Dental's duplicate check) and other 4xx, and decode errors.
    pub async fn create_patient(&self, patient: &NewPatient) -> Result<Option<Patient>> {
        if patient.last_name.trim().is_empty() || patient.first_name.trim().is_empty() {
            return Err(crate::Error::InvalidRequest {
                op: Operation::CreatePatient,
                reason: "LName and FName are required",
            });
        }
        self.create(
            Operation::CreatePatient,
            path::PATIENTS,
            &wire::patient_body(patient),
            resource::PATIENT,
            wire::read_patient,
        )
        .await
    }

    /// `GET /patients/{PatNum}`.
    ///
    /// # Errors
    /// [`Error`](crate::Error) with kind Transient (connect, timeout, 429, 5xx, after the
    /// client's own retries) or Permanent (404 unknown patient, 400/401/403, decode).
    pub async fn get_patient(&self, pat_num: PatNum) -> Result<Patient> {
        let id = pat_num.to_string();
        self.get_one(
            Operation::GetPatient,
            &[path::PATIENTS, &id],
            resource::PATIENT,
            wire::read_patient,
        )
        .await
    }
}

impl Patient {
    /// The patient's identity and contact data as the shared [`PatientContact`]:
    ///
    /// - `mobile_phone` is `WirelessPhone` in E.164 when it is a 10-digit US number (or 11 digits
    ///   starting with 1); home and work phones are never used for texts.
    /// - `email` only when it looks like an address; the postal address when any part is filled;
    ///   the state when it is a US state code.
    /// - `preferred_language` is Spanish for `spa`/`es`/`Spanish`, otherwise English.
    /// - `sms_consent` is Open Dental's `TxtMsgOk` as the practice's word: `Yes` (with a mobile
    ///   number) is [`SmsConsent::Informational`] with source `TxtMsgOk`, `No` is
    ///   [`SmsConsent::Revoked`], `Unknown` (and anything else) is [`SmsConsent::None`] (Open
    ///   Dental itself may treat Unknown as No). The orchestrator records it as the practice's
    ///   attestation, which never overrides a withdrawal; `at` is when it was read.
    /// - `time_zone` is `None` (Open Dental does not store one).
    pub fn to_contact(&self) -> PatientContact {
        let trimmed = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let lines: Vec<String> = [&self.address, &self.address2]
            .into_iter()
            .filter_map(|l| trimmed(l))
            .collect();
        let address = if lines.is_empty()
            && self.city.trim().is_empty()
            && self.zip.trim().is_empty()
            && self.state.trim().is_empty()
        {
            None
        } else {
            Some(PostalAddress {
                lines,
                city: self.city.trim().to_owned(),
                state: self.state.parse::<UsState>().ok(),
                postal_code: self.zip.trim().to_owned(),
            })
        };
        PatientContact {
            id: self.pat_num.to_patient_id(),
            first_name: self.first_name.trim().to_owned(),
            last_name: self.last_name.trim().to_owned(),
            date_of_birth: self.birthdate,
            mobile_phone: us_e164(&self.wireless_phone),
            email: trimmed(&self.email).filter(|e| looks_like_email(e)),
            address,
            preferred_language: language(&self.language),
            time_zone: None,
            sms_consent: match self.txt_msg_ok {
                TxtMsgOk::Yes if !self.wireless_phone.trim().is_empty() => {
                    SmsConsent::Informational {
                        at: chrono::Utc::now(),
                        source: "TxtMsgOk".into(),
                    }
                }
                TxtMsgOk::No => SmsConsent::Revoked {
                    at: chrono::Utc::now(),
                },
                _ => SmsConsent::None,
            },
        }
    }
}

/// A US phone number as typed (`(555)555-0123`, `555.555.0123`, `+1 555 555 0123`) in E.164.
fn us_e164(typed: &str) -> Option<String> {
    let digits: String = typed.chars().filter(char::is_ascii_digit).collect();
    let national = match digits.len() {
        10 => digits.as_str(),
        11 if digits.starts_with('1') => &digits[1..],
        _ => return None,
    };
    // NANP: area code and exchange never start with 0 or 1.
    let b = national.as_bytes();
    if matches!(b[0], b'0' | b'1') || matches!(b[3], b'0' | b'1') {
        return None;
    }
    Some(format!("+1{national}"))
}

fn looks_like_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !e.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn language(code: &str) -> Language {
    match code.trim().to_ascii_lowercase().as_str() {
        "spa" | "es" | "spanish" | "español" => Language::Es,
        _ => Language::En,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_phones_become_e164_and_junk_is_dropped() {
        assert_eq!(us_e164("(555)555-0123"), Some("+15555550123".into()));
        assert_eq!(us_e164("(536)987-4822"), Some("+15369874822".into()));
        assert_eq!(us_e164("+1 536 987 4822"), Some("+15369874822".into()));
        assert_eq!(us_e164("536.987.4822"), Some("+15369874822".into()));
        assert_eq!(us_e164("987-4822"), None);
        assert_eq!(us_e164(""), None);
        assert_eq!(us_e164("(036)987-4822"), None);
        assert_eq!(us_e164("44 20 7946 0958"), None);
    }

    #[test]
    fn languages_and_emails() {
        assert_eq!(language("spa"), Language::Es);
        assert_eq!(language("eng"), Language::En);
        assert_eq!(language(""), Language::En);
        assert!(looks_like_email("janet@example.test"));
        assert!(!looks_like_email("janet@"));
        assert!(!looks_like_email("none"));
    }
}
