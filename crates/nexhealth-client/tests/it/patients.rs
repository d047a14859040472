//! `patients`: contact data mapped into the domain's `PatientContact`.

use chrono::NaiveDate;
use financing_core::{Language, SmsConsent, UsState};
use nexhealth_client::{PatientId, patient_contact};
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::helpers::{client, envelope, fixture, scoped, server};

#[tokio::test]
async fn get_patient_contact_maps_bio_fields_into_patient_contact() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/115")
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient.json")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let contact = client(&server)
        .get_patient_contact(&PatientId::new("115"))
        .await
        .unwrap();

    // Assert
    assert_eq!(contact.id.as_str(), "115");
    assert_eq!(contact.first_name, "Sample");
    assert_eq!(contact.last_name, "Testperson");
    assert_eq!(contact.date_of_birth, NaiveDate::from_ymd_opt(1990, 11, 30));
    // The cell number, not the main phone.
    assert_eq!(contact.mobile_phone.as_deref(), Some("+15555550142"));
    assert_eq!(
        contact.email.as_deref(),
        Some("sample.testperson@example.test")
    );
    let address = contact.address.as_ref().unwrap();
    assert_eq!(address.lines, ["2 Placeholder Road"]);
    assert_eq!(address.state, Some(UsState::NY));
    assert_eq!(address.postal_code, "10000");
    assert_eq!(contact.preferred_language, Language::Es);
    assert_eq!(contact.sms_consent, SmsConsent::None);
}

#[tokio::test]
async fn a_patient_without_bio_maps_to_a_contact_without_channels() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/116")
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 116, "first_name": "Demo", "last_name": "Nobody", "email": null
        }))))
        .mount(&server)
        .await;

    // Act
    let patient = client(&server)
        .get_patient(&PatientId::new("116"))
        .await
        .unwrap();

    // Assert
    let contact = patient_contact(&patient);
    assert_eq!(contact.address, None);
    assert_eq!(contact.date_of_birth, None);
    assert!(!contact.is_reachable());
    assert_eq!(contact.preferred_language, Language::En);
}

#[tokio::test]
async fn a_patient_with_an_odd_birth_date_names_the_field_and_hides_the_value() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/117")
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 117, "first_name": "Demo", "last_name": "Nobody",
            "bio": { "date_of_birth": "30 Nov 1990" }
        }))))
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("117"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        err.to_string(),
        "patients: cannot decode `data.bio.date_of_birth`: not a date we can read"
    );
    assert!(!format!("{err:?}").contains("1990"));
}

#[tokio::test]
async fn a_patient_without_a_first_name_is_a_decode_error_naming_the_field() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/118")
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 118, "last_name": "Nobody"
        }))))
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("118"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        err.to_string(),
        "patients: cannot decode `data.first_name`: missing"
    );
}

#[tokio::test]
async fn patient_debug_output_shows_only_the_id() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/115")
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient.json")))
        .mount(&server)
        .await;

    // Act
    let patient = client(&server)
        .get_patient(&PatientId::new("115"))
        .await
        .unwrap();

    // Assert
    let shown = format!("{patient:?}");
    assert!(shown.contains("115"));
    for phi in [
        "Sample",
        "Testperson",
        "1990",
        "0142",
        "example.test",
        "Placeholder",
    ] {
        assert!(!shown.contains(phi), "{phi} leaked into {shown}");
    }
}

fn new_patient() -> nexhealth_client::NewPatient {
    nexhealth_client::NewPatient {
        first_name: "Sample".into(),
        last_name: "Testperson".into(),
        email: "sample.testperson@example.test".into(),
        date_of_birth: NaiveDate::from_ymd_opt(1990, 11, 30).unwrap(),
        phone: "+15555550142".into(),
        state: "NY".into(),
    }
}

#[tokio::test]
async fn create_patient_names_the_configured_provider_as_a_number() {
    // Arrange
    let server = server().await;
    scoped("POST", "/patients")
        .and(wiremock::matchers::body_partial_json(json!({
            "provider": {"provider_id": 104},
            "patient": {"first_name": "Sample", "bio": {"date_of_birth": "1990-11-30"}},
            "return_existing_if_match": true,
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!({
            "user": fixture("patient.json")["data"].clone()
        }))))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let created = client(&server)
        .create_patient(&new_patient(), Some("104"))
        .await
        .unwrap();

    // Assert
    assert_eq!(created.id.as_str(), "115");
}

#[tokio::test]
async fn create_patient_without_a_provider_is_answered_400_and_permanent() {
    // Arrange: NexHealth requires provider.provider_id.
    let server = server().await;
    scoped("POST", "/patients")
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": false, "description": null, "error": ["provider_id is required"], "data": null
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .create_patient(&new_patient(), None)
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), financing_core::ErrorKind::Permanent);
}
