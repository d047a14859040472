//! patients/{PatNum} and the mapping to the shared PatientContact.

use chrono::NaiveDate;
use financing_core::{ErrorKind, Language, SmsConsent, UsState};
use opendental_client::{ClinicNum, PatNum, TxtMsgOk};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AUTH, client, fixture};

#[tokio::test]
async fn get_patient_requests_the_patient_by_key_and_decodes_it() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/patients/9001"))
        .and(header("Authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let patient = client(&server)
        .get_patient(PatNum::new(9001))
        .await
        .unwrap();

    // Assert
    assert_eq!(patient.pat_num, PatNum::new(9001));
    assert_eq!(patient.first_name, "Testa");
    assert_eq!(patient.birthdate, NaiveDate::from_ymd_opt(1980, 2, 3));
    assert_eq!(patient.txt_msg_ok, TxtMsgOk::Yes);
    assert_eq!(patient.guarantor, Some(PatNum::new(9001)));
    assert_eq!(patient.clinic_num, None::<ClinicNum>, "\"0\" is none");
    let shown = format!("{patient:?}");
    assert!(shown.contains("9001"));
    for phi in [
        "Testa",
        "Fixture",
        "1980",
        "Test Way",
        "555",
        "example.test",
    ] {
        assert!(!shown.contains(phi), "{phi} leaked into {shown}");
    }
}

#[tokio::test]
async fn patient_maps_to_the_shared_contact() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/patients/9001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient")))
        .mount(&server)
        .await;

    // Act
    let contact = client(&server)
        .get_patient(PatNum::new(9001))
        .await
        .unwrap()
        .to_contact();

    // Assert
    assert_eq!(contact.id.as_str(), "9001");
    assert_eq!(contact.first_name, "Testa");
    assert_eq!(contact.last_name, "Fixture");
    assert_eq!(contact.mobile_phone.as_deref(), Some("+15555550123"));
    assert_eq!(contact.email.as_deref(), Some("testa.fixture@example.test"));
    assert_eq!(contact.state(), Some(UsState::CA));
    let address = contact.address.as_ref().unwrap();
    assert_eq!(address.lines, vec!["1 Test Way", "Unit 0"]);
    assert_eq!(address.postal_code, "90001");
    assert_eq!(contact.preferred_language, Language::Es);
    // TxtMsgOk "Yes" is the practice's word, passed on for the orchestrator to record as an
    // attestation.
    assert!(
        matches!(&contact.sms_consent, SmsConsent::Informational { source, .. } if source == "TxtMsgOk"),
        "{:?}",
        contact.sms_consent
    );
    assert!(contact.is_reachable());
}

#[tokio::test]
async fn a_patient_with_no_contact_data_maps_to_an_unreachable_contact() {
    // Arrange: Open Dental's empty strings and 0001-01-01 birthdate.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/patients/9005"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "PatNum": 9005, "LName": "Blank", "FName": "Nobody", "Birthdate": "0001-01-01",
            "Address": "", "Address2": "", "City": "", "State": "", "Zip": "",
            "WirelessPhone": "", "Email": "", "Language": "", "TxtMsgOk": "Unknown"
        })))
        .mount(&server)
        .await;

    // Act
    let patient = client(&server)
        .get_patient(PatNum::new(9005))
        .await
        .unwrap();
    let contact = patient.to_contact();

    // Assert
    assert_eq!(patient.birthdate, None);
    assert_eq!(patient.txt_msg_ok, TxtMsgOk::NotAsked);
    assert_eq!(contact.sms_consent, SmsConsent::None);
    assert_eq!(contact.address, None);
    assert_eq!(contact.preferred_language, Language::En);
    assert!(!contact.is_reachable());
}

#[tokio::test]
async fn an_unknown_patient_is_a_permanent_error_without_the_body() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/patients/9999"))
        .respond_with(ResponseTemplate::new(404).set_body_string("Patient not found."))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(PatNum::new(9999))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(err.to_string(), "get patient: HTTP 404");
}

#[tokio::test]
async fn txt_msg_ok_no_is_the_practice_saying_no() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/patients/9006"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "PatNum": 9006, "LName": "Fixture", "FName": "Testa", "Birthdate": "1980-01-01",
            "Address": "", "Address2": "", "City": "", "State": "", "Zip": "",
            "WirelessPhone": "(555) 555-0123", "Email": "", "Language": "", "TxtMsgOk": "No"
        })))
        .mount(&server)
        .await;

    // Act
    let contact = client(&server)
        .get_patient(PatNum::new(9006))
        .await
        .unwrap()
        .to_contact();

    // Assert
    assert!(
        matches!(contact.sms_consent, SmsConsent::Revoked { .. }),
        "{:?}",
        contact.sms_consent
    );
}
