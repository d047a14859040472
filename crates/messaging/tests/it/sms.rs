//! Twilio `Messages.json` against wiremock: request shape, success, error classes, timeouts,
//! retries, the consent ledger and the reconciliation lookup.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use financing_core::ErrorKind;
use messaging::RetryPolicy;
use messaging::{
    AccountSid, ConsentChange, ConsentLedger, ConsentSource, Error, MessageSid, MessageStatus,
    MessagingServiceSid, Operation, SmsClient, SmsEncoding, SmsFrom, SmsOutcome, TwilioErrorCode,
};
use secrecy::SecretString;
use serde_json::json;
use url::Url;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{
    ACCOUNT_SID, AUTH_TOKEN, PATIENT_PHONE, PRACTICE_PHONE, basic_auth_header, empty_ledger,
    messages_path, outgoing, patient_phone, practice, sms_client,
};

const CREATED: &str = include_str!("../fixtures/message_created.json");

fn client_with_backoff(server: &MockServer, policy: RetryPolicy) -> SmsClient {
    SmsClient::builder(
        AccountSid::new(ACCOUNT_SID),
        SecretString::from(AUTH_TOKEN),
        empty_ledger(),
    )
    .base_url(Url::parse(&server.uri()).expect("mock url"))
    .timeout(Duration::from_millis(500))
    .retry(policy)
    .build()
    .expect("client")
}

fn form(req: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&req.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn twilio_error(status: u16, code: u32) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code,
        "message": "The 'To' number +15555550123 is not a valid phone number.",
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

#[tokio::test]
async fn send_posts_to_from_body_and_status_callback_as_a_form_with_basic_auth() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(header("authorization", basic_auth_header().as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(|req: &Request| {
            form(req)
                == vec![
                    ("To".to_owned(), PATIENT_PHONE.to_owned()),
                    ("From".to_owned(), PRACTICE_PHONE.to_owned()),
                    ("Body".to_owned(), "Hello & welcome: 100% sample".to_owned()),
                    (
                        "StatusCallback".to_owned(),
                        "https://chairside.example.test/webhooks/twilio".to_owned(),
                    ),
                ]
        })
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .expect(1)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let outcome = client
        .send(&outgoing("Hello & welcome: 100% sample"))
        .await
        .expect("send");

    // Assert
    assert!(matches!(outcome, SmsOutcome::Sent(_)), "{outcome:?}");
}

#[tokio::test]
async fn send_uses_messaging_service_sid_instead_of_from_when_asked() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(|req: &Request| {
            let f = form(req);
            f.contains(&(
                "MessagingServiceSid".to_owned(),
                "MG00000000000000000000000000000001".to_owned(),
            )) && !f.iter().any(|(k, _)| k == "From")
                && !f.iter().any(|(k, _)| k == "StatusCallback")
        })
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .expect(1)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());
    let mut sms = outgoing("Sample");
    sms.from = SmsFrom::MessagingService(MessagingServiceSid::new(
        "MG00000000000000000000000000000001",
    ));
    sms.status_callback = None;

    // Act
    let outcome = client.send(&sms).await.expect("send");

    // Assert
    assert!(matches!(outcome, SmsOutcome::Sent(_)));
}

#[tokio::test]
async fn send_decodes_the_created_message_and_counts_segments() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let outcome = client.send(&outgoing("Sample")).await.expect("send");

    // Assert
    let SmsOutcome::Sent(sent) = outcome else {
        panic!("expected Sent, got {outcome:?}");
    };
    assert_eq!(
        sent.sid,
        MessageSid::new("SM00000000000000000000000000000001")
    );
    assert_eq!(sent.status, MessageStatus::Queued);
    assert_eq!(sent.twilio_segments, Some(1));
    assert_eq!(sent.segments.segments, 1);
    assert_eq!(sent.segments.encoding, SmsEncoding::Gsm7);
}

#[tokio::test]
async fn send_maps_each_error_status_to_its_kind() {
    // (status, Twilio code, expected kind). No retries, so each row is one request.
    let rows: [(u16, u32, ErrorKind); 7] = [
        // Bad request (invalid To): retrying cannot help.
        (400, 21211, ErrorKind::Permanent),
        // Bad credentials.
        (401, 20003, ErrorKind::Permanent),
        (403, 20003, ErrorKind::Permanent),
        (404, 20404, ErrorKind::Permanent),
        // Too many concurrent requests: documented as not processed.
        (
            429,
            20429,
            ErrorKind::Transient {
                retry_after: Some(Duration::from_secs(7)),
            },
        ),
        // No idempotency key: a 5xx on create may have queued the text.
        (500, 20500, ErrorKind::Indeterminate),
        (503, 20503, ErrorKind::Indeterminate),
    ];
    for (status, code, expected) in rows {
        // Arrange
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(twilio_error(status, code).insert_header("Retry-After", "7"))
            .expect(1)
            .mount(&server)
            .await;
        let client = client_with_backoff(&server, RetryPolicy::none());

        // Act
        let err = client.send(&outgoing("Sample")).await.unwrap_err();

        // Assert
        assert_eq!(err.kind(), expected, "HTTP {status}");
        assert_eq!(
            err.twilio_code(),
            Some(TwilioErrorCode(code)),
            "HTTP {status}"
        );
        let shown = err.to_string();
        assert!(shown.contains(&status.to_string()), "{shown}");
        assert!(
            !shown.contains("5555550123"),
            "the vendor message leaked: {shown}"
        );
    }
}

#[tokio::test]
async fn a_21610_refusal_is_a_recipient_opted_out_outcome_not_an_error() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(twilio_error(400, 21610))
        .expect(1)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let outcome = client.send(&outgoing("Sample")).await.expect("outcome");

    // Assert
    assert_eq!(outcome, SmsOutcome::RecipientOptedOut);
}

#[tokio::test]
async fn send_times_out_as_indeterminate_and_is_not_retried() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_string(CREATED)
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let err = client.send(&outgoing("Sample")).await.unwrap_err();

    // Assert
    assert!(
        matches!(
            err,
            Error::Transport {
                op: Operation::CreateMessage,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn send_never_retries_a_500() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(twilio_error(500, 20500))
        .expect(1)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let err = client.send(&outgoing("Sample")).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn send_retries_429_with_backoff_and_then_succeeds() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(twilio_error(429, 20429))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .expect(1)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let outcome = client.send(&outgoing("Sample")).await.expect("send");

    // Assert
    assert!(matches!(outcome, SmsOutcome::Sent(_)));
}

#[tokio::test]
async fn send_gives_up_on_429_after_the_last_attempt_with_a_transient_error() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(twilio_error(429, 20429))
        .expect(3)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let err = client.send(&outgoing("Sample")).await.unwrap_err();

    // Assert
    assert!(err.kind().is_transient(), "{err:?}");
}

#[tokio::test]
async fn send_refuses_an_opted_out_number_without_calling_twilio() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .expect(0)
        .mount(&server)
        .await;
    let ledger = empty_ledger();
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    ledger
        .record(
            &practice(),
            &patient_phone(),
            &ConsentChange::opt_out(at, ConsentSource::InboundKeyword),
        )
        .await
        .expect("record");
    let client = sms_client(&server, ledger);

    // Act
    let outcome = client.send(&outgoing("Sample")).await.expect("outcome");

    // Assert
    assert_eq!(outcome, SmsOutcome::Suppressed { opted_out_at: at });
}

#[tokio::test]
async fn an_opt_out_at_another_practice_does_not_suppress_this_one() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .expect(1)
        .mount(&server)
        .await;
    let ledger = empty_ledger();
    ledger
        .record(
            &financing_core::PracticeId::new("another-practice"),
            &patient_phone(),
            &ConsentChange::opt_out(Utc::now(), ConsentSource::Staff),
        )
        .await
        .expect("record");
    let client = sms_client(&server, ledger);

    // Act
    let outcome = client.send(&outgoing("Sample")).await.expect("outcome");

    // Assert
    assert!(matches!(outcome, SmsOutcome::Sent(_)));
}

#[tokio::test]
async fn a_transient_ledger_failure_stops_the_send_with_the_ledgers_kind() {
    // Arrange
    #[derive(Debug)]
    struct Down;
    #[async_trait::async_trait]
    impl ConsentLedger for Down {
        async fn opt_out_state(
            &self,
            _: &financing_core::PracticeId,
            _: &messaging::PhoneNumber,
        ) -> Result<messaging::OptOutState, messaging::LedgerError> {
            Err(messaging::LedgerError::new(
                ErrorKind::TRANSIENT,
                "database busy",
            ))
        }
        async fn record(
            &self,
            _: &financing_core::PracticeId,
            _: &messaging::PhoneNumber,
            _: &ConsentChange,
        ) -> Result<messaging::OptOutState, messaging::LedgerError> {
            Err(messaging::LedgerError::new(
                ErrorKind::TRANSIENT,
                "database busy",
            ))
        }
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .expect(0)
        .mount(&server)
        .await;
    let client = sms_client(&server, Arc::new(Down));

    // Act
    let err = client.send(&outgoing("Sample")).await.unwrap_err();

    // Assert
    assert!(matches!(err, Error::Ledger(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
}

#[tokio::test]
async fn an_empty_body_is_refused_before_any_request() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let err = client.send(&outgoing("  ")).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn an_undecodable_201_is_indeterminate_because_the_text_was_sent() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string("{\"status\": \"queued\"}"))
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let err = client.send(&outgoing("Sample")).await.unwrap_err();

    // Assert
    assert!(
        matches!(
            err,
            Error::Decode {
                op: Operation::CreateMessage,
                status: 201,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

async fn mount_pages(server: &MockServer) {
    {
        Mock::given(method("GET"))
            .and(path(messages_path()))
            .and(header("authorization", basic_auth_header().as_str()))
            .and(query_param("To", PATIENT_PHONE))
            .and(query_param("PageSize", "100"))
            .and(query_param_is_missing("Page"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(include_str!("../fixtures/messages_page1.json")),
            )
            .expect(1)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(messages_path()))
            .and(header("authorization", basic_auth_header().as_str()))
            .and(query_param("Page", "1"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(include_str!("../fixtures/messages_page2.json")),
            )
            .expect(1)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(messages_path()))
            .and(query_param("Page", "2"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(include_str!("../fixtures/messages_page3.json")),
            )
            .expect(1)
            .mount(server)
            .await;
        // Page 3 holds only older, sent messages: the walk must stop before page 4.
        Mock::given(method("GET"))
            .and(query_param("Page", "3"))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn list_messages_to_follows_pages_and_keeps_only_messages_since() {
    // Arrange
    let server = MockServer::start().await;
    mount_pages(&server).await;
    let client = sms_client(&server, empty_ledger());
    let since = Utc.with_ymd_and_hms(2026, 3, 5, 14, 0, 0).unwrap();

    // Act
    let found = client
        .list_messages_to(&patient_phone(), since)
        .await
        .expect("list");

    // Assert
    let sids: Vec<&str> = found.iter().map(|m| m.sid.as_str()).collect();
    assert_eq!(
        sids,
        vec![
            "SM00000000000000000000000000000011",
            "SM00000000000000000000000000000012",
            "SM00000000000000000000000000000013",
        ]
    );
    assert_eq!(found[0].status, MessageStatus::Accepted);
    assert_eq!(found[0].date_sent, None);
    assert_eq!(
        found[0].messaging_service_sid,
        Some(MessagingServiceSid::new(
            "MG00000000000000000000000000000001"
        ))
    );
    assert_eq!(found[1].error_code, Some(TwilioErrorCode(30003)));
    assert!(found[1].status.is_failure());
    assert_eq!(
        found[1].date_created,
        Some(Utc.with_ymd_and_hms(2026, 3, 5, 14, 30, 0).unwrap())
    );
    assert!(found[2].body_matches("Bright Smiles Dental: sample text three"));
    assert!(!found[2].body_matches("something else"));
    let shown = format!("{:?}", found[2]);
    assert!(!shown.contains("sample text"), "{shown}");
}

#[tokio::test]
async fn list_messages_to_retries_a_500_because_a_get_is_safe_to_repeat() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"messages": [], "next_page_uri": null})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let found = client
        .list_messages_to(&patient_phone(), Utc::now())
        .await
        .expect("list");

    // Assert
    assert!(found.is_empty());
}

#[tokio::test]
async fn list_messages_to_times_out_as_transient() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"messages": []}))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let client = client_with_backoff(&server, RetryPolicy::none());

    // Act
    let err = client
        .list_messages_to(&patient_phone(), Utc::now())
        .await
        .unwrap_err();

    // Assert
    assert!(
        matches!(
            err,
            Error::Transport {
                op: Operation::ListMessages,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.kind().is_transient());
    assert!(!err.to_string().contains("5555550123"));
    let chain = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(!chain.contains("5555550123"), "the URL leaked: {chain}");
}

#[test]
fn a_plain_http_base_url_is_refused_unless_it_is_loopback() {
    // Arrange
    let build = |url: &str| {
        SmsClient::builder(
            AccountSid::new(ACCOUNT_SID),
            SecretString::from(AUTH_TOKEN),
            empty_ledger(),
        )
        .base_url(Url::parse(url).expect("url"))
        .build()
    };

    // Act
    let remote = build("http://api.twilio.example.test");
    let loopback = build("http://127.0.0.1:9999");
    let sandbox_prefix = build("http://localhost:9999/twilio");

    // Assert
    assert!(matches!(remote, Err(Error::Config { .. })));
    assert!(loopback.is_ok());
    assert!(sandbox_prefix.is_ok());
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_is_kept_for_the_sandbox() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/twilio{}", messages_path())))
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .expect(1)
        .mount(&server)
        .await;
    let client = SmsClient::builder(
        AccountSid::new(ACCOUNT_SID),
        SecretString::from(AUTH_TOKEN),
        empty_ledger(),
    )
    .base_url(Url::parse(&format!("{}/twilio/", server.uri())).expect("url"))
    .build()
    .expect("client");

    // Act
    let outcome = client.send(&outgoing("Sample")).await.expect("send");

    // Assert
    assert!(matches!(outcome, SmsOutcome::Sent(_)));
}

#[test]
fn debug_of_an_outgoing_sms_hides_the_number_and_the_body() {
    // Arrange
    let sms = outgoing("Secret sample body");

    // Act
    let shown = format!("{sms:?}");

    // Assert
    assert!(!shown.contains("5555550123"), "{shown}");
    assert!(!shown.contains("Secret sample body"), "{shown}");
    assert!(shown.contains("bright-smiles"));
}

#[tokio::test]
async fn the_client_can_be_cloned_into_spawned_tasks() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string(CREATED))
        .expect(2)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.send(&outgoing("Sample")).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("join").expect("send"));
    }

    // Assert
    assert!(outcomes.iter().all(|o| matches!(o, SmsOutcome::Sent(_))));
}

#[tokio::test]
async fn a_malformed_message_page_names_the_field_path_and_never_the_value() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [
                { "sid": "SM00000000000000000000000000000011", "status": "delivered" },
                { "sid": "SM00000000000000000000000000000012", "status": "sent", "body": ["Zebulon-991"] },
            ],
            "next_page_uri": null,
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = sms_client(&server, empty_ledger());

    // Act
    let err = client
        .list_messages_to(&patient_phone(), Utc::now())
        .await
        .unwrap_err();

    // Assert
    let shown = err.to_string();
    assert!(
        shown.contains("HTTP 200 with an undecodable body"),
        "{shown}"
    );
    assert!(shown.contains("`messages[1].body`"), "{shown}");
    assert!(!shown.contains("Zebulon"), "{shown}");
    assert!(!format!("{err:?}").contains("Zebulon"));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}
