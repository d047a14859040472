//! Patients: contact data, mapped into [`financing_core::PatientContact`].

use std::fmt;

use chrono::NaiveDate;
use financing_core::{Language, PatientContact, PostalAddress, SmsConsent};

use crate::client::Client;
use crate::convert;
use crate::error::{DecodeProblem, Error, Result};
use crate::ids::PatientId;
use crate::wire;

/// A patient's contact data as Ascend holds it. PHI: `Debug` shows only the id.
#[derive(Clone, PartialEq, Eq)]
pub struct Patient {
    /// Patient id.
    pub id: PatientId,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth.
    pub date_of_birth: Option<NaiveDate>,
    /// Mobile phone in E.164, when one is on file and readable.
    pub mobile_phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Postal address.
    pub address: Option<PostalAddress>,
    /// Preferred language (English unless the record says Spanish).
    pub preferred_language: Language,
    /// Ascend's `textMessageConsent` said yes: the practice's record that the patient agreed to
    /// texts.
    pub text_message_consent: bool,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Patient {
    /// The patient as the domain's [`PatientContact`]. SMS consent is Ascend's
    /// `textMessageConsent`: yes is [`SmsConsent::Informational`] with source
    /// `textMessageConsent` (the orchestrator records it as the practice's attestation, which
    /// never overrides a withdrawal); anything else is [`SmsConsent::None`].
    pub fn to_contact(&self) -> PatientContact {
        patient_contact(self)
    }
}

/// Maps a [`Patient`] into the domain's [`PatientContact`] (see [`Patient::to_contact`]).
pub fn patient_contact(patient: &Patient) -> PatientContact {
    PatientContact {
        id: patient.id.clone().into(),
        first_name: patient.first_name.clone(),
        last_name: patient.last_name.clone(),
        date_of_birth: patient.date_of_birth,
        mobile_phone: patient.mobile_phone.clone(),
        email: patient.email.clone(),
        address: patient.address.clone(),
        preferred_language: patient.preferred_language,
        time_zone: None,
        sms_consent: if patient.text_message_consent && patient.mobile_phone.is_some() {
            SmsConsent::Informational {
                at: chrono::Utc::now(),
                source: "textMessageConsent".into(),
            }
        } else {
            SmsConsent::None
        },
    }
}

const PATIENTS: &str = "patients";

impl Client {
    /// A patient's contact data.
    ///
    /// # Errors
    /// Transient: timeouts, connect errors, 429, 5xx. Permanent: [`Error::Auth`],
    /// [`Error::OrganizationNotEnabled`], 404 and other 4xx, and [`Error::Decode`] for a record
    /// without a name or with an unreadable date of birth.
    pub async fn get_patient(&self, id: &PatientId) -> Result<Patient> {
        let envelope: wire::Envelope<wire::Patient> = self
            .get(
                "get patient",
                PATIENTS,
                &[wire::PATIENTS, id.as_str()],
                vec![],
            )
            .await?;
        let raw = envelope
            .data
            .ok_or_else(|| Error::decode(PATIENTS, "data", DecodeProblem::Missing))?;
        patient_from_wire(raw)
    }

    /// A patient's contact data as the domain's [`PatientContact`].
    ///
    /// # Errors
    /// As [`Client::get_patient`].
    pub async fn get_patient_contact(&self, id: &PatientId) -> Result<PatientContact> {
        self.get_patient(id).await.map(|p| p.to_contact())
    }
}

fn patient_from_wire(p: wire::Patient) -> Result<Patient> {
    let text_message_consent = p.text_message_consent();
    let mobile_phone = p
        .phones
        .iter()
        .filter(|ph| {
            ph.phone_type.as_deref().is_some_and(|t| {
                wire::MOBILE_PHONE_TYPES
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(t.trim()))
            })
        })
        .find_map(|ph| ph.number.as_deref().and_then(convert::e164));
    let address = p.address.and_then(|a| {
        let lines: Vec<String> = [a.street1.as_deref(), a.street2.as_deref()]
            .into_iter()
            .filter_map(convert::non_blank)
            .collect();
        let city = convert::non_blank(a.city.as_deref());
        let postal_code = convert::non_blank(a.postal_code.as_deref());
        if lines.is_empty() && city.is_none() && postal_code.is_none() {
            return None;
        }
        Some(PostalAddress {
            lines,
            city: city.unwrap_or_default(),
            // A state we cannot read is left out rather than failing the patient: the compliance
            // policy then falls back to the practice's state.
            state: a.state.as_deref().and_then(|s| s.parse().ok()),
            postal_code: postal_code.unwrap_or_default(),
        })
    });
    let first_name = p.first_name.trim().to_owned();
    let last_name = p.last_name.trim().to_owned();
    if first_name.is_empty() {
        return Err(Error::decode(
            PATIENTS,
            "data.firstName",
            DecodeProblem::Missing,
        ));
    }
    if last_name.is_empty() {
        return Err(Error::decode(
            PATIENTS,
            "data.lastName",
            DecodeProblem::Missing,
        ));
    }
    Ok(Patient {
        id: PatientId::new(p.id.into_string()),
        first_name,
        last_name,
        date_of_birth: convert::opt_date(p.date_of_birth.as_deref(), PATIENTS, "data.dateOfBirth")?,
        mobile_phone,
        email: convert::non_blank(p.email_address.as_deref()).filter(|e| e.contains('@')),
        address,
        preferred_language: convert::language(p.preferred_language.as_deref()),
        text_message_consent,
    })
}
