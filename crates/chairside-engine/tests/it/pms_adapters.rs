//! The practice-system adapters against wiremock: what an intake's case sends at acceptance
//! (NexHealth's provider on patient creation; Open Dental's case plan, once).

use std::time::Duration;

use base64::Engine as _;
use chairside_engine::adapters::nexhealth::NexHealthPractice;
use chairside_engine::adapters::opendental::OpenDentalPractice;
use chairside_engine::ports::{EnsuredPatient, PlanWrite, PracticeSystem};
use chairside_workflow::intake::CasePlan;
use chrono::NaiveDate;
use financing_core::{Money, PatientContact, PatientId};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn jwt() -> String {
    let enc = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let exp = chrono::Utc::now().timestamp() + 3600;
    format!(
        "{}.{}.sig",
        enc(json!({ "alg": "HS256" })),
        enc(json!({ "sub": "api-user", "exp": exp }))
    )
}

async fn nexhealth(provider: Option<&str>) -> (MockServer, NexHealthPractice) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/authenticates"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": true, "data": {"token": jwt()}, "description": "ok", "error": []
        })))
        .mount(&server)
        .await;
    // The search finds nobody: the patient is new.
    Mock::given(method("GET"))
        .and(path("/patients"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": true, "error": [], "data": [], "count": 0
        })))
        .mount(&server)
        .await;
    let client = nexhealth_client::Client::builder(
        Url::parse(&server.uri()).unwrap(),
        nexhealth_client::Credentials::new(
            SecretString::from("fake-api-key"),
            "demo-dental",
            nexhealth_client::LocationId::new("21"),
        ),
    )
    .timeout(Duration::from_secs(2))
    .rate_budget(nexhealth_client::RateBudget::UNLIMITED)
    .build()
    .unwrap();
    (
        server,
        NexHealthPractice::new(client).with_provider(provider.map(str::to_owned)),
    )
}

fn newcomer() -> PatientContact {
    PatientContact {
        id: PatientId::new("intake-in_1"),
        first_name: "Wren".into(),
        last_name: "Example".into(),
        date_of_birth: NaiveDate::from_ymd_opt(1988, 4, 2),
        mobile_phone: Some("+15125550188".into()),
        email: Some("wren@example.test".into()),
        address: None,
        preferred_language: financing_core::Language::default(),
        time_zone: None,
        sms_consent: financing_core::SmsConsent::default(),
    }
}

#[tokio::test]
async fn a_nexhealth_patient_is_created_under_the_configured_provider() {
    // Arrange
    let (server, pms) = nexhealth(Some("104")).await;
    Mock::given(method("POST"))
        .and(path("/patients"))
        .and(body_partial_json(json!({"provider": {"provider_id": 104}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "code": true, "error": [], "data": {"user": {
                "id": 777, "first_name": "Wren", "last_name": "Example",
                "email": "wren@example.test", "bio": {"date_of_birth": "1988-04-02"}
            }}
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let ensured = pms.ensure_patient(&newcomer()).await.unwrap();

    // Assert
    assert_eq!(ensured, EnsuredPatient::Created(PatientId::new("777")));
}

#[tokio::test]
async fn without_a_provider_a_new_nexhealth_patient_is_left_to_staff_and_nothing_is_posted() {
    // Arrange
    let (server, pms) = nexhealth(None).await;
    Mock::given(method("POST"))
        .and(path("/patients"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let ensured = pms.ensure_patient(&newcomer()).await.unwrap();

    // Assert
    match ensured {
        EnsuredPatient::NotSupported { reason } => {
            assert!(reason.contains("practices.pms.provider_id"), "{reason}");
            assert!(!reason.contains("Wren"), "no PHI in the reason: {reason}");
        }
        other => panic!("expected a staff task, got {other:?}"),
    }
}

#[tokio::test]
async fn nexhealth_takes_no_case_plan_so_staff_enter_it() {
    // Arrange
    let (server, pms) = nexhealth(Some("104")).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let written = pms
        .ensure_plan(&PatientId::new("777"), "plan:wf_1", &case_plan())
        .await
        .unwrap();

    // Assert
    assert!(
        matches!(written, PlanWrite::NotSupported { .. }),
        "{written:?}"
    );
}

fn case_plan() -> CasePlan {
    CasePlan {
        heading: "Financed case (Chairside)".into(),
        amount: Money::usd(420_000),
        summary:
            "Case accepted 2024-03-09: patient portion $4,200.00; $4,200.00 financed by carecredit."
                .into(),
    }
}

fn opendental(server: &MockServer) -> OpenDentalPractice {
    let client = opendental_client::Client::builder(
        Url::parse(&format!("{}/api/v1", server.uri())).unwrap(),
        SecretString::from("dev"),
        SecretString::from("cust"),
    )
    .timeout(Duration::from_secs(2))
    .build()
    .unwrap();
    OpenDentalPractice::new(
        client,
        opendental_client::AcceptanceRule::default(),
        financing_core::Tz::America__Chicago,
    )
}

#[tokio::test]
async fn open_dental_gets_the_case_plan_once_with_its_marker() {
    // Arrange: no plan carries the marker yet.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(query_param("PatNum", "31"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/treatplans"))
        .and(body_partial_json(json!({
            "PatNum": 31,
            "Heading": "Financed case (Chairside)",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "TreatPlanNum": 18, "PatNum": 31, "DateTP": "0001-01-01",
            "Heading": "Financed case (Chairside)",
            "Note": "Case accepted\n[chairside:plan:wf_1]", "TPStatus": "Inactive",
            "TPType": "Insurance", "SecDateTEdit": "2024-03-09 12:18:12",
            "DateTSigned": "0001-01-01 00:00:00", "isSigned": "false"
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let written = opendental(&server)
        .ensure_plan(&PatientId::new("31"), "plan:wf_1", &case_plan())
        .await
        .unwrap();

    // Assert: the note carried the summary and the marker.
    assert_eq!(written, PlanWrite::Written("18".into()));
    let posted = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "POST")
        .unwrap();
    let body: Value = serde_json::from_slice(&posted.body).unwrap();
    let note = body["Note"].as_str().unwrap();
    assert!(note.contains("$4,200.00 financed by carecredit"), "{note}");
    assert!(note.ends_with("[chairside:plan:wf_1]"), "{note}");
}
