//! Opening (or finding) the prefill session.

use std::time::Duration;

use carecredit_client::{Error, LandingPage};
use chrono::Utc;
use financing_core::{
    Decision, ErrorKind, FinancingProvider, LenderReference, LocationId, ProviderError,
};
use serde_json::{Value, json};
use wiremock::matchers::{any, body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{
    MERCHANT, PARTNER, REFERENCE, SESSIONS_PATH, applicant, builder, client, fast_backoff,
    mount_token, request,
};

fn session(id: &str) -> Value {
    json!({ "sessionId": id, "pageUrl": format!("https://apply.carecredit.test/p/{id}") })
}

/// No session exists yet for our reference.
async fn mount_find_nothing(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(server)
        .await;
}

fn body_of(req: &Request) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

#[tokio::test]
async fn start_application_looks_for_the_session_then_creates_one_with_the_partner_ids() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .and(header("authorization", "Bearer tok-1"))
        .and(query_param("partnerCode", PARTNER))
        .and(query_param("partnerTransactionID", REFERENCE))
        .and(query_param("merchantNumber", MERCHANT))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .and(header("authorization", "Bearer tok-1"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "partnerCode": PARTNER,
            "partnerTransactionID": REFERENCE,
            "merchantNumber": MERCHANT,
            "landingPage": "AP",
            "purchaseAmt": "1800.00",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(session("sess-1")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let decision = client(&server)
        .start_application(&request(None, None))
        .await;

    // Assert
    let Ok(Decision::ApplicationStarted {
        link,
        lender_reference,
        expires_at,
    }) = decision
    else {
        panic!("expected a started application, got {decision:?}");
    };
    assert_eq!(link.as_str(), "https://apply.carecredit.test/p/sess-1");
    assert_eq!(lender_reference, LenderReference::new("sess-1"));
    // A portal session lasts 30 minutes.
    let left = expires_at.unwrap() - Utc::now();
    assert!(left > chrono::Duration::minutes(29) && left <= chrono::Duration::minutes(30));
}

#[tokio::test]
async fn a_retried_start_returns_the_existing_session_instead_of_opening_a_second() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    let mut existing = session("sess-1");
    existing["expiresAt"] = json!("2030-01-01T10:30:00Z");
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .and(query_param("partnerTransactionID", REFERENCE))
        .respond_with(ResponseTemplate::new(200).set_body_json(existing))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(201).set_body_json(session("sess-2")))
        .expect(0)
        .mount(&server)
        .await;
    let c = client(&server);

    // Act
    let first = c.start_application(&request(None, None)).await.unwrap();
    let second = c.start_application(&request(None, None)).await.unwrap();

    // Assert
    assert_eq!(first, second);
    assert!(matches!(
        first,
        Decision::ApplicationStarted { ref lender_reference, expires_at: Some(at), .. }
            if lender_reference.as_str() == "sess-1" && at.to_rfc3339() == "2030-01-01T10:30:00+00:00"
    ));
}

#[tokio::test]
async fn prefill_is_sent_exactly_as_given_and_date_of_birth_is_dropped_by_default() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    mount_find_nothing(&server).await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .and(body_json(json!({
            "partnerCode": PARTNER,
            "partnerTransactionID": REFERENCE,
            "merchantNumber": MERCHANT,
            "landingPage": "AP",
            "purchaseAmt": "1800.00",
            "returnUrl": "https://practice.test/p/back",
            "applicant": {
                "firstName": "Marisol",
                "lastName": "Testcase",
                "address1": "1 Fixture Way",
                "address2": "Suite 2",
                "city": "Sampletown",
                "state": "TX",
                "zipCode": "75001",
                "mobilePhone": "+15555550100",
                "emailAddress": "marisol@example.test",
            },
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(session("sess-1")))
        .expect(1)
        .mount(&server)
        .await;
    let mut req = request(Some(applicant()), None);
    req.return_url = Some("https://practice.test/p/back".parse().unwrap());

    // Act
    let decision = client(&server).start_application(&req).await;

    // Assert
    assert_eq!(decision.unwrap().label(), "application_started");
}

#[tokio::test]
async fn date_of_birth_and_ssn_go_in_cipher_only_when_configured() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .and(|req: &Request| {
            let body = body_of(req);
            body["cipher"] == json!({ "ssn": "000-00-0000", "dateOfBirth": "1980-02-03" })
                && body["landingPage"] == "QS"
        })
        .respond_with(ResponseTemplate::new(201).set_body_json(session("sess-1")))
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server)
        .allow_ssn_and_dob(true)
        .landing_page(LandingPage::QuickScreen)
        .build()
        .unwrap();

    // Act
    let created = c
        .create_session(
            &request(Some(applicant()), None),
            Some("000-00-0000".into()),
        )
        .await;

    // Assert
    assert_eq!(created.unwrap().session_id.as_str(), "sess-1");
}

#[tokio::test]
async fn ssn_is_dropped_when_not_configured() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .and(|req: &Request| {
            let body = body_of(req);
            body.get("cipher").is_none() && !String::from_utf8_lossy(&req.body).contains("000-00")
        })
        .respond_with(ResponseTemplate::new(201).set_body_json(session("sess-1")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let created = client(&server)
        .create_session(
            &request(Some(applicant()), None),
            Some("000-00-0000".into()),
        )
        .await;

    // Assert
    assert!(created.is_ok());
}

#[tokio::test]
async fn a_timeout_opening_a_session_is_indeterminate_and_never_blind_retried() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    mount_find_nothing(&server).await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(session("sess-1"))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let err = c.start_application(&request(None, None)).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn after_an_indeterminate_start_the_next_start_finds_the_session() {
    // Arrange: the first POST timed out but CareCredit did open the session.
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(404))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(session("sess-1"))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(session("sess-1")))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);

    // Act
    let first = c.start_application(&request(None, None)).await;
    let second = c.start_application(&request(None, None)).await;

    // Assert
    assert_eq!(first.unwrap_err().kind(), ErrorKind::Indeterminate);
    assert!(matches!(
        second,
        Ok(Decision::ApplicationStarted { lender_reference, .. }) if lender_reference.as_str() == "sess-1"
    ));
}

#[tokio::test]
async fn creating_a_session_maps_every_error_status_to_its_kind() {
    let rows: [(u16, ErrorKind, &str); 7] = [
        (400, ErrorKind::Permanent, "invalid input"),
        (404, ErrorKind::Permanent, "unknown merchant"),
        (422, ErrorKind::Permanent, "unprocessable"),
        (429, ErrorKind::TRANSIENT, "rate limited: nothing done"),
        (503, ErrorKind::TRANSIENT, "unavailable: nothing done"),
        (500, ErrorKind::Indeterminate, "the session may exist"),
        (502, ErrorKind::Indeterminate, "the session may exist"),
    ];
    for (status, expected, why) in rows {
        // Arrange
        let server = MockServer::start().await;
        mount_token(&server, 1).await;
        Mock::given(method("POST"))
            .and(path(SESSIONS_PATH))
            .respond_with(ResponseTemplate::new(status))
            .expect(1)
            .mount(&server)
            .await;

        // Act
        let err = client(&server)
            .create_session(&request(None, None), None)
            .await
            .unwrap_err();

        // Assert
        assert_eq!(err.kind(), expected, "{status}: {why}");
        assert_eq!(err.status(), Some(status));
    }
}

#[tokio::test]
async fn training_suspended_is_permanent_with_a_clear_message() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    mount_find_nothing(&server).await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_string(r#"{"errorMessage":"Training Suspended","echo":"Marisol"}"#),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err: ProviderError = client(&server)
        .start_application(&request(None, None))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    let shown = err.to_string();
    assert!(
        shown.contains("Training Suspended") && shown.contains("training"),
        "{shown}"
    );
    assert!(!shown.contains("Marisol"));
    assert!(matches!(
        err.inner().downcast_ref::<Error>(),
        Some(Error::TrainingSuspended { .. })
    ));
}

#[tokio::test]
async fn error_messages_never_carry_the_vendor_body() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    mount_find_nothing(&server).await;
    Mock::given(method("POST"))
        .and(path(SESSIONS_PATH))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(r#"{"error":"bad phone +15555550100 for Marisol Testcase"}"#),
        )
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .start_application(&request(Some(applicant()), None))
        .await
        .unwrap_err();

    // Assert
    let shown = format!("{err} / {err:?}");
    assert!(
        shown.contains("create prefill session") && shown.contains("400"),
        "{shown}"
    );
    for phi in ["Marisol", "Testcase", "5555550100"] {
        assert!(!shown.contains(phi), "{phi} leaked: {shown}");
    }
}

#[tokio::test]
async fn an_unconfigured_location_is_permanent_and_calls_nothing() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let mut req = request(None, None);
    req.location.location_id = LocationId::new("elm-st");

    // Act
    let err = client(&server).start_application(&req).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("elm-st"));
}
