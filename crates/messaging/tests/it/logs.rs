//! Seeded PHI never reaches this crate's log output; message ids do.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use financing_core::Language;
use messaging::{
    EmailAddress, EmailFrom, EmailSender, FinancingSummary, InboundMessage, MessageSid,
    PhoneNumber, SmtpConfig, SmtpSecurity, Templates, WebhookVerifier, apply_inbound,
};
use secrecy::SecretString;
use tracing_subscriber::fmt::MakeWriter;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{empty_ledger, outgoing, practice, sms_client};
use crate::smtp_sink::{Behaviour, SmtpSink};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn logs_carry_message_ids_and_never_bodies_numbers_or_addresses() {
    // Arrange: everything this crate logs, at every level.
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_env_filter("messaging=trace")
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_string(
            r#"{"code": 20429, "message": "Too many requests for +15555550123", "status": 429}"#,
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_string(include_str!("../fixtures/message_created.json")),
        )
        .mount(&server)
        .await;
    let ledger = empty_ledger();
    let client = sms_client(&server, ledger.clone());
    let sink = SmtpSink::start(Behaviour::Accept).await;
    let refusing = SmtpSink::start(Behaviour::RcptPermanent).await;
    let templates = Templates::load().expect("templates");
    let mut ctx = FinancingSummary::sample();
    ctx.patient_first_name = "Zebediah".into();
    let email = templates.render_email(Language::En, &ctx).expect("render");
    let to = EmailAddress::parse("zebediah.sample@example.test").expect("to");
    let from = EmailFrom {
        name: "Bright Smiles Dental".into(),
        address: EmailAddress::parse("frontdesk@example.test").expect("from"),
    };
    let mut smtp = SmtpConfig::new("127.0.0.1", sink.port, SmtpSecurity::None);
    smtp.timeout = Duration::from_secs(2);
    let mut smtp_refusing = smtp.clone();
    smtp_refusing.port = refusing.port;

    // Act: a retried send, a delivered email, a refused email, a STOP, a suppressed send,
    // a forged webhook.
    let sent = client
        .send(&outgoing("Zebediah, your secret sample body"))
        .await
        .expect("send");
    let message_id = EmailSender::new(&smtp, from.clone())
        .expect("sender")
        .send(&to, &email)
        .await
        .expect("email");
    let _ = EmailSender::new(&smtp_refusing, from)
        .expect("sender")
        .send(&to, &email)
        .await;
    let stop = InboundMessage {
        message_sid: MessageSid::new("SM00000000000000000000000000000077"),
        from: PhoneNumber::parse("+15555550123").expect("phone"),
        to: PhoneNumber::parse("+15555550100").expect("phone"),
        body: "STOP texting me Zebediah here".into(),
        opt_out_type: None,
        received_at: Utc::now(),
    };
    apply_inbound(ledger.as_ref(), &practice(), &stop)
        .await
        .expect("apply");
    let _ = client.send(&outgoing("Zebediah, second secret body")).await;
    let _ = WebhookVerifier::new(SecretString::from("test-auth-token")).verify(
        "https://chairside.example.test/webhooks/twilio",
        b"From=%2B15555550123&Body=Zebediah",
        Some("forged"),
    );

    // Assert
    let logs = String::from_utf8(capture.0.lock().expect("capture").clone()).expect("utf-8");
    assert!(matches!(sent, messaging::SmsOutcome::Sent(_)));
    assert!(
        logs.contains("SM00000000000000000000000000000001"),
        "{logs}"
    );
    assert!(
        logs.contains("SM00000000000000000000000000000077"),
        "{logs}"
    );
    assert!(logs.contains(message_id.as_str()), "{logs}");
    assert!(logs.contains("suppressed"), "{logs}");
    for phi in [
        "5555550123",
        "5555550100",
        "Zebediah",
        "zebediah",
        "secret",
        "2,400",
        "test-auth-token",
    ] {
        assert!(!logs.contains(phi), "{phi} leaked into the logs:\n{logs}");
    }
}
