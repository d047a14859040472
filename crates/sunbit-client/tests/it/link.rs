//! The prequalification link.

use std::time::Duration;

use chrono::Utc;
use financing_core::{Decision, ErrorKind, FinancingProvider, LenderReference, LocationId};
use serde_json::json;
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    KEY, LINK_PATH, REFERENCE, SUNBIT_LOCATION, applicant, builder, client, fast_backoff,
    no_secret_header, request,
};

fn link() -> serde_json::Value {
    json!({ "url": "https://apply.sunbit.test/p/abc" })
}

#[tokio::test]
async fn the_link_request_is_an_array_with_location_and_referral_and_only_the_key() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(LINK_PATH))
        .and(header("sunbit-key", KEY))
        .and(no_secret_header)
        .and(header("content-type", "application/json"))
        .and(body_json(json!([{
            "location": SUNBIT_LOCATION,
            "referral": REFERENCE,
            "sendSMS": false,
        }])))
        .respond_with(ResponseTemplate::new(200).set_body_json(link()))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let decision = client(&server).start_application(&request(None)).await;

    // Assert
    let Ok(Decision::ApplicationStarted {
        link,
        lender_reference,
        expires_at,
    }) = decision
    else {
        panic!("expected a started application, got {decision:?}");
    };
    assert_eq!(link.as_str(), "https://apply.sunbit.test/p/abc");
    // Sunbit's purchase id is not known yet: our reference stands in.
    assert_eq!(lender_reference, LenderReference::new(REFERENCE));
    // Links last 7 days.
    let left = expires_at.unwrap() - Utc::now();
    assert!(left > chrono::Duration::days(7) - chrono::Duration::minutes(1));
    assert!(left <= chrono::Duration::days(7));
}

#[tokio::test]
async fn prefill_goes_in_customer_details_with_the_phone_and_sunbit_texts_only_when_configured() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(LINK_PATH))
        .and(body_json(json!([{
            "location": SUNBIT_LOCATION,
            "referral": REFERENCE,
            "customerPhoneNumber": "+15555550100",
            "customerDetails": {
                "firstName": "Marisol",
                "lastName": "Testcase",
                "email": "marisol@example.test",
                "address": "1 Fixture Way, Suite 2",
                "city": "Sampletown",
                "state": "TX",
                "zipCode": "75001",
            },
            "sendSMS": true,
        }])))
        .respond_with(ResponseTemplate::new(200).set_body_json(link()))
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).send_sms(true).build().unwrap();

    // Act
    let decision = c.start_application(&request(Some(applicant()))).await;

    // Assert
    assert_eq!(decision.unwrap().label(), "application_started");
}

#[tokio::test]
async fn without_prefill_no_phone_is_sent_and_sunbit_does_not_text() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(LINK_PATH))
        .and(body_json(json!([{
            "location": SUNBIT_LOCATION,
            "referral": REFERENCE,
            "sendSMS": false,
        }])))
        .respond_with(ResponseTemplate::new(200).set_body_json(link()))
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).send_sms(true).build().unwrap();

    // Act
    let decision = c.start_application(&request(None)).await;

    // Assert
    assert!(decision.is_ok());
}

#[tokio::test]
async fn link_errors_map_to_their_kinds() {
    let rows: [(u16, Option<&str>, ErrorKind, &str); 9] = [
        (400, None, ErrorKind::Permanent, "bad input"),
        (403, None, ErrorKind::Permanent, "bad credentials"),
        (
            404,
            None,
            ErrorKind::Permanent,
            "unknown retailer or location",
        ),
        (
            422,
            None,
            ErrorKind::Permanent,
            "online application disabled",
        ),
        (
            429,
            Some("4"),
            ErrorKind::Transient {
                retry_after: Some(Duration::from_secs(4)),
            },
            "rate limited, nothing done",
        ),
        (503, None, ErrorKind::TRANSIENT, "unavailable, nothing done"),
        (
            500,
            None,
            ErrorKind::Indeterminate,
            "a link may have been minted",
        ),
        (
            502,
            None,
            ErrorKind::Indeterminate,
            "a link may have been minted",
        ),
        (
            504,
            None,
            ErrorKind::Indeterminate,
            "a link may have been minted",
        ),
    ];
    for (status, retry_after, expected, why) in rows {
        // Arrange
        let server = MockServer::start().await;
        let mut response = ResponseTemplate::new(status);
        if let Some(ra) = retry_after {
            response = response.insert_header("retry-after", ra);
        }
        Mock::given(method("PUT"))
            .and(path(LINK_PATH))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;

        // Act
        let err = client(&server)
            .start_application(&request(None))
            .await
            .unwrap_err();

        // Assert
        assert_eq!(err.kind(), expected, "{status}: {why}");
    }
}

#[tokio::test]
async fn a_5xx_on_the_link_is_never_blind_retried() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(LINK_PATH))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let err = c.start_application(&request(None)).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn a_503_on_the_link_is_retried() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(LINK_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(LINK_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(link()))
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(2)).build().unwrap();

    // Act
    let decision = c.start_application(&request(None)).await;

    // Assert
    assert!(decision.is_ok());
}

#[tokio::test]
async fn a_link_timeout_is_indeterminate() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(LINK_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(link())
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let err = c.start_application(&request(None)).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn error_messages_never_carry_the_vendor_body() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(LINK_PATH))
        .respond_with(
            ResponseTemplate::new(400).set_body_string("customer Marisol Testcase +15555550100"),
        )
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .start_application(&request(Some(applicant())))
        .await
        .unwrap_err();

    // Assert
    let shown = format!("{err} / {err:?}");
    assert!(
        shown.contains("create online link") && shown.contains("400"),
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
    let mut req = request(None);
    req.location.location_id = LocationId::new("elm-st");

    // Act
    let err = client(&server).start_application(&req).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
}
