//! `patients`: contact data mapped into the domain's `PatientContact`.

use chrono::NaiveDate;
use dentrix_client::{PatientId, patient_contact};
use financing_core::{Language, SmsConsent, UsState};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{BEARER, ORG, api, client, envelope, fixture, server};

#[tokio::test]
async fn get_patient_maps_contact_fields_into_patient_contact() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .and(header("authorization", BEARER))
        .and(header("organization-id", ORG))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient.json")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let contact = client(&server)
        .get_patient_contact(&PatientId::new("9001"))
        .await
        .unwrap();

    // Assert
    assert_eq!(contact.id.as_str(), "9001");
    assert_eq!(contact.first_name, "Testa");
    assert_eq!(contact.last_name, "Fakepatient");
    assert_eq!(contact.date_of_birth, NaiveDate::from_ymd_opt(1985, 7, 14));
    // The mobile number, not the first one listed, in E.164.
    assert_eq!(contact.mobile_phone.as_deref(), Some("+15555550199"));
    assert_eq!(
        contact.email.as_deref(),
        Some("testa.fakepatient@example.test")
    );
    let address = contact.address.as_ref().unwrap();
    assert_eq!(address.lines, ["1 Nowhere Lane", "Apt 0"]);
    assert_eq!(address.city, "Exampleville");
    assert_eq!(address.state, Some(UsState::CA));
    assert_eq!(address.postal_code, "90000");
    assert_eq!(contact.preferred_language, Language::Es);
    // The fixture has no `textMessageConsent`: no consent on the practice's word.
    assert_eq!(contact.sms_consent, SmsConsent::None);
}

#[tokio::test]
async fn text_message_consent_is_the_practices_word_read_leniently() {
    // Arrange: the same patient with `textMessageConsent` as Ascend may send it.
    let server = server().await;
    let cases = [
        (json!(true), true),
        (json!("YES"), true),
        (json!("true"), true),
        (json!(false), false),
        (json!(null), false),
        (json!("maybe"), false),
        (json!(1), false),
    ];
    for (i, (value, says_yes)) in cases.iter().enumerate() {
        let mut body = fixture("patient.json");
        body["data"]["textMessageConsent"] = value.clone();
        let id = format!("95{i:02}");
        Mock::given(method("GET"))
            .and(path(api(&format!("patients/{id}"))))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;

        // Act
        let contact = client(&server)
            .get_patient_contact(&PatientId::new(id))
            .await
            .unwrap();

        // Assert
        match &contact.sms_consent {
            SmsConsent::Informational { source, .. } if *says_yes => {
                assert_eq!(source, "textMessageConsent");
            }
            SmsConsent::None if !says_yes => {}
            other => panic!("{value} read as {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_sparse_patient_record_maps_to_a_contact_without_channels() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9002")))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 9002,
            "firstName": "Sample",
            "lastName": "Personne",
            "dateOfBirth": "",
            "phones": [ { "phoneType": "HOME", "number": "555-0100" } ],
            "address": { "state": "Atlantis" }
        }))))
        .mount(&server)
        .await;

    // Act
    let patient = client(&server)
        .get_patient(&PatientId::new("9002"))
        .await
        .unwrap();

    // Assert
    let contact = patient_contact(&patient);
    assert_eq!(contact.date_of_birth, None);
    assert_eq!(contact.mobile_phone, None);
    assert_eq!(contact.address, None);
    assert_eq!(contact.preferred_language, Language::En);
    assert!(!contact.is_reachable());
}

#[tokio::test]
async fn a_patient_without_a_last_name_is_a_decode_error_naming_the_field() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9003")))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 9003, "firstName": "Testa", "lastName": "  "
        }))))
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("9003"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        err.to_string(),
        "patients: cannot decode `data.lastName`: missing"
    );
}

#[tokio::test]
async fn an_unreadable_birth_date_names_the_field_and_hides_the_value() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9004")))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 9004, "firstName": "Testa", "lastName": "Fakepatient", "dateOfBirth": "14th July 1985"
        }))))
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("9004"))
        .await
        .unwrap_err();

    // Assert
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("data.dateOfBirth"), "{shown}");
    assert!(!shown.contains("1985"), "{shown}");
}

#[tokio::test]
async fn patient_debug_output_shows_only_the_id() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient.json")))
        .mount(&server)
        .await;

    // Act
    let patient = client(&server)
        .get_patient(&PatientId::new("9001"))
        .await
        .unwrap();

    // Assert
    let shown = format!("{patient:?}");
    assert!(shown.contains("9001"));
    for phi in [
        "Testa",
        "Fakepatient",
        "1985",
        "0199",
        "example.test",
        "Nowhere",
    ] {
        assert!(!shown.contains(phi), "{phi} leaked into {shown}");
    }
}
