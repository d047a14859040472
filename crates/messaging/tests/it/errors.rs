//! `Error::kind()`, row by row, in the order of the table in `src/error.rs`.

use std::time::Duration;

use financing_core::{Classify, ErrorKind};
use messaging::{
    ComposeError, Error, LedgerError, Operation, RegZViolation, SmtpFailure, TriggerTerm,
    TwilioErrorCode,
};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};

fn api(op: Operation, status: u16, code: Option<u32>) -> Error {
    Error::Api {
        op,
        status,
        code: code.map(TwilioErrorCode),
        retry_after: None,
    }
}

/// A real connect error: a loopback port nobody listens on.
async fn connect_error() -> reqwest::Error {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect_err("nothing listens")
}

/// A real timeout.
async fn timeout_error() -> reqwest::Error {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client")
        .get(server.uri())
        .send()
        .await
        .expect_err("times out")
}

#[tokio::test]
async fn transport_rows_depend_on_connect_versus_timeout_and_on_idempotency() {
    // Arrange
    let rows = [
        // Nothing reached Twilio: safe even for a POST.
        (
            connect_error().await,
            Operation::CreateMessage,
            ErrorKind::TRANSIENT,
        ),
        // The POST may have been processed.
        (
            timeout_error().await,
            Operation::CreateMessage,
            ErrorKind::Indeterminate,
        ),
        // A lookup is safe to repeat.
        (
            timeout_error().await,
            Operation::ListMessages,
            ErrorKind::TRANSIENT,
        ),
        (
            connect_error().await,
            Operation::ListMessages,
            ErrorKind::TRANSIENT,
        ),
    ];
    for (source, op, expected) in rows {
        // Act
        let err = Error::Transport { op, source };

        // Assert
        assert_eq!(err.kind(), expected, "{op}: {err:?}");
    }
}

#[test]
fn api_rows_follow_the_table() {
    let retry_after = Some(Duration::from_secs(3));
    let rows: Vec<(Error, ErrorKind)> = vec![
        // 429 without a body code, with Retry-After: the delay is kept.
        (
            Error::Api {
                op: Operation::CreateMessage,
                status: 429,
                code: None,
                retry_after,
            },
            ErrorKind::Transient { retry_after },
        ),
        // 20429 is documented as "not processed", whatever the status says.
        (
            api(Operation::CreateMessage, 400, Some(20429)),
            ErrorKind::TRANSIENT,
        ),
        // No idempotency key on create: any 5xx, 503 included, is indeterminate.
        (
            api(Operation::CreateMessage, 500, None),
            ErrorKind::Indeterminate,
        ),
        (
            api(Operation::CreateMessage, 502, None),
            ErrorKind::Indeterminate,
        ),
        (
            api(Operation::CreateMessage, 503, None),
            ErrorKind::Indeterminate,
        ),
        // A lookup's 5xx is retried.
        (
            api(Operation::ListMessages, 500, None),
            ErrorKind::TRANSIENT,
        ),
        (
            api(Operation::ListMessages, 503, None),
            ErrorKind::TRANSIENT,
        ),
        // Other 4xx: retrying cannot help.
        (
            api(Operation::CreateMessage, 400, Some(21211)),
            ErrorKind::Permanent,
        ),
        (
            api(Operation::CreateMessage, 401, Some(20003)),
            ErrorKind::Permanent,
        ),
        (
            api(Operation::CreateMessage, 403, None),
            ErrorKind::Permanent,
        ),
        (
            api(Operation::ListMessages, 404, Some(20404)),
            ErrorKind::Permanent,
        ),
        // 21610 normally becomes an outcome; should it surface, it is not retryable.
        (
            api(Operation::CreateMessage, 400, Some(21610)),
            ErrorKind::Permanent,
        ),
    ];
    for (err, expected) in rows {
        assert_eq!(err.kind(), expected, "{err}");
    }
}

#[test]
fn decode_rows_distinguish_a_sent_text_from_a_changed_lookup_shape() {
    let decode = |op| Error::Decode {
        op,
        status: 200,
        source: connector_transport::DecodeError {
            path: "sid".into(),
            problem: connector_transport::DecodeProblem::Missing,
            line: 1,
            column: 2,
        },
    };
    // The text went out but we have no SID: reconcile by lookup.
    assert_eq!(
        decode(Operation::CreateMessage).kind(),
        ErrorKind::Indeterminate
    );
    // Twilio's shape changed: a person must look.
    assert_eq!(decode(Operation::ListMessages).kind(), ErrorKind::Permanent);
}

#[test]
fn smtp_rows_follow_the_table() {
    let rows = [
        (
            SmtpFailure::TransientReply { code: 451 },
            ErrorKind::TRANSIENT,
        ),
        (SmtpFailure::Connect, ErrorKind::TRANSIENT),
        (SmtpFailure::Conversation, ErrorKind::Indeterminate),
        (
            SmtpFailure::PermanentReply { code: 550 },
            ErrorKind::Permanent,
        ),
        (SmtpFailure::Tls, ErrorKind::Permanent),
        (SmtpFailure::Client, ErrorKind::Permanent),
    ];
    for (failure, expected) in rows {
        assert_eq!(Error::Smtp { failure }.kind(), expected, "{failure}");
    }
}

#[test]
fn local_failures_are_permanent_and_the_ledger_keeps_its_own_kind() {
    let permanent = [
        Error::Config { reason: "x".into() },
        Error::Template {
            template: "en/reminder.sms.txt".into(),
            source: minijinja::Error::new(minijinja::ErrorKind::SyntaxError, "sample"),
        },
        Error::TemplateContract {
            template: "en/reminder.sms.txt".into(),
            reason: "x".into(),
        },
        Error::RegZ {
            template: "en/reminder.sms.txt".into(),
            violation: RegZViolation {
                terms: vec![TriggerTerm::Rate],
            },
        },
        Error::Compose(ComposeError {
            max_segments: 1,
            needed: 2,
        }),
        Error::BadSignature,
        Error::Webhook { reason: "x" },
    ];
    for err in permanent {
        assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    }
    for kind in [
        ErrorKind::TRANSIENT,
        ErrorKind::Indeterminate,
        ErrorKind::Permanent,
    ] {
        let err = Error::Ledger(LedgerError::new(kind, "storage"));
        assert_eq!(err.kind(), kind);
        assert_eq!(Classify::kind(&err), kind);
    }
}

#[test]
fn display_names_the_operation_status_and_code_only() {
    assert_eq!(
        api(Operation::CreateMessage, 429, Some(20429)).to_string(),
        "create message: HTTP 429, Twilio error 20429"
    );
    assert_eq!(
        api(Operation::ListMessages, 500, None).to_string(),
        "list messages: HTTP 500"
    );
    assert_eq!(
        Error::Smtp {
            failure: SmtpFailure::PermanentReply { code: 550 }
        }
        .to_string(),
        "send email: SMTP 550 (permanent)"
    );
}
