//! Patients: contact data, mapped into [`financing_core::PatientContact`].

use std::fmt;

use chrono::NaiveDate;
use financing_core::{Language, PatientContact, PostalAddress, SmsConsent};

use crate::client::Client;
use crate::convert;
use crate::error::{DecodeProblem, Error, Result};
use crate::ids::PatientId;
use crate::wire;

/// A patient's contact data as NexHealth holds it. PHI: `Debug` shows only the id.
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
    /// Mobile phone (`bio.cell_phone_number`) in E.164, when on file and readable.
    pub mobile_phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Postal address.
    pub address: Option<PostalAddress>,
    /// Preferred language (English unless the record says Spanish).
    pub preferred_language: Language,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Patient {
    /// The patient as the domain's [`PatientContact`]. SMS consent is never inferred from the
    /// practice system: it starts as [`SmsConsent::None`] and is recorded by Chairside.
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
        sms_consent: SmsConsent::None,
    }
}

const PATIENTS: &str = "patients";

/// A patient to create with `POST /patients`. PHI: `Debug` shows nothing of it.
#[derive(Clone)]
pub struct NewPatient {
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Email (required by NexHealth).
    pub email: String,
    /// Date of birth (required).
    pub date_of_birth: NaiveDate,
    /// Phone, E.164 (required; sent as the main and the cell number).
    pub phone: String,
    /// Two-letter state, or empty.
    pub state: String,
}

impl fmt::Debug for NewPatient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPatient").finish_non_exhaustive()
    }
}

impl Client {
    /// A patient's contact data.
    ///
    /// # Errors
    /// Transient: timeouts, connect errors, 429, 5xx. Permanent: [`Error::Auth`], 404 and other
    /// 4xx, and [`Error::Decode`] for a record without a name or with an unreadable date of birth.
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

    /// `GET /patients?name=&date_of_birth=&inactive=false&non_patient=false`, every page: the
    /// find step of NexHealth's find-or-create recipe. Records that cannot be read fail the search
    /// (a patient Chairside cannot read is not one it may match).
    ///
    /// # Errors
    /// As [`Client::get_patient`].
    pub async fn search_patients(
        &self,
        name: &str,
        date_of_birth: NaiveDate,
    ) -> Result<Vec<Patient>> {
        self.get_pages(
            "search patients",
            PATIENTS,
            &[wire::PATIENTS],
            vec![
                (wire::QUERY_NAME, name.trim().to_owned()),
                (
                    wire::QUERY_DATE_OF_BIRTH,
                    date_of_birth.format("%Y-%m-%d").to_string(),
                ),
                (wire::QUERY_INACTIVE, "false".into()),
                (wire::QUERY_NON_PATIENT, "false".into()),
            ],
            |raw: wire::Patient, _path| patient_from_wire(raw),
        )
        .await
    }

    /// `POST /patients` with `return_existing_if_match=true`: NexHealth answers a patient with the
    /// same name and date of birth instead of creating a second. Never retried blindly: search
    /// first, and again after an unknown outcome.
    ///
    /// # Errors
    /// Transient for a connect error or 429; Indeterminate for a timeout or a 5xx; Permanent for
    /// 4xx and decode errors.
    pub async fn create_patient(
        &self,
        patient: &NewPatient,
        provider_id: Option<&str>,
    ) -> Result<Patient> {
        let envelope: wire::Envelope<wire::CreatedPatient> = self
            .post(
                "create patient",
                PATIENTS,
                &[wire::PATIENTS],
                wire::new_patient_body(patient, provider_id),
            )
            .await?;
        let raw = match envelope
            .data
            .ok_or_else(|| Error::decode(PATIENTS, "data", DecodeProblem::Missing))?
        {
            wire::CreatedPatient::Wrapped { user } => user,
            wire::CreatedPatient::Bare(p) => p,
        };
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
    let bio = p.bio.unwrap_or_default();
    // Only the cell number: `phone_number` may be a landline, and texts need a mobile.
    let mobile_phone = bio.cell_phone_number.as_deref().and_then(convert::e164);
    let lines: Vec<String> = [
        bio.address_line_1
            .as_deref()
            .or(bio.street_address.as_deref()),
        bio.address_line_2.as_deref(),
    ]
    .into_iter()
    .filter_map(convert::non_blank)
    .collect();
    let city = convert::non_blank(bio.city.as_deref());
    let postal_code = convert::non_blank(bio.zip_code.as_deref());
    let address = if lines.is_empty() && city.is_none() && postal_code.is_none() {
        None
    } else {
        Some(PostalAddress {
            lines,
            city: city.unwrap_or_default(),
            // A state we cannot read is left out rather than failing the patient: the compliance
            // policy then falls back to the practice's state.
            state: bio.state.as_deref().and_then(|s| s.parse().ok()),
            postal_code: postal_code.unwrap_or_default(),
        })
    };
    let first_name = p.first_name.trim().to_owned();
    let last_name = p.last_name.trim().to_owned();
    if first_name.is_empty() {
        return Err(Error::decode(
            PATIENTS,
            "data.first_name",
            DecodeProblem::Missing,
        ));
    }
    if last_name.is_empty() {
        return Err(Error::decode(
            PATIENTS,
            "data.last_name",
            DecodeProblem::Missing,
        ));
    }
    Ok(Patient {
        id: PatientId::new(p.id.into_string()),
        first_name,
        last_name,
        date_of_birth: convert::opt_date(
            bio.date_of_birth.as_deref(),
            PATIENTS,
            "data.bio.date_of_birth",
        )?,
        mobile_phone,
        email: convert::non_blank(p.email.as_deref()).filter(|e| e.contains('@')),
        address,
        preferred_language: convert::language(p.preferred_language.as_deref()),
    })
}
