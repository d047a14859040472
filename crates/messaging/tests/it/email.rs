//! A real SMTP conversation with lettre against the in-process sink.

use std::time::Duration;

use financing_core::{ErrorKind, Language};
use messaging::{
    EmailAddress, EmailFrom, EmailSender, Error, FinancingSummary, RenderedEmail, SmtpConfig,
    SmtpFailure, SmtpSecurity, Templates,
};

use crate::smtp_sink::{Behaviour, SmtpSink, decode_qp};

fn from() -> EmailFrom {
    EmailFrom {
        name: "Bright Smiles Dental".into(),
        address: EmailAddress::parse("frontdesk@bright-smiles.example.test").expect("from"),
    }
}

fn patient() -> EmailAddress {
    EmailAddress::parse("alex.sample@example.test").expect("to")
}

fn sender(port: u16) -> EmailSender {
    let mut config = SmtpConfig::new("127.0.0.1", port, SmtpSecurity::None);
    config.timeout = Duration::from_secs(2);
    EmailSender::new(&config, from()).expect("sender")
}

fn summary_email() -> RenderedEmail {
    Templates::load()
        .expect("templates")
        .render_email(Language::En, &FinancingSummary::sample())
        .expect("render")
}

/// The body of the MIME part whose Content-Type starts with `content_type`, QP-decoded.
fn part(data: &str, content_type: &str) -> Option<String> {
    let needle = format!("Content-Type: {content_type}");
    let start = data.find(&needle)?;
    let rest = &data[start..];
    let body_start = rest.find("\r\n\r\n")? + 4;
    let body = &rest[body_start..];
    let end = body.find("\r\n--").unwrap_or(body.len());
    // SMTP lines end in CRLF; the rendered templates in LF.
    Some(decode_qp(&body[..end]).replace("\r\n", "\n"))
}

#[tokio::test]
async fn send_delivers_a_multipart_message_with_both_parts_and_the_practice_as_sender() {
    // Arrange
    let sink = SmtpSink::start(Behaviour::Accept).await;
    let email = summary_email();

    // Act
    let id = sender(sink.port)
        .send(&patient(), &email)
        .await
        .expect("send");

    // Assert
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.mail_from, "<frontdesk@bright-smiles.example.test>");
    assert_eq!(m.rcpt_to, vec!["<alex.sample@example.test>".to_owned()]);
    assert_eq!(
        m.header("From").as_deref(),
        Some("\"Bright Smiles Dental\" <frontdesk@bright-smiles.example.test>")
    );
    assert_eq!(m.header("To").as_deref(), Some("alex.sample@example.test"));
    assert_eq!(m.header("Subject").as_deref(), Some(email.subject.as_str()));
    assert_eq!(m.header("Message-ID").as_deref(), Some(id.as_str()));
    assert!(id.as_str().starts_with('<'));
    assert!(id.as_str().ends_with("@bright-smiles.example.test>"));
    assert!(m.header("Date").is_some());
    assert!(
        m.header("Content-Type")
            .is_some_and(|c| c.starts_with("multipart/alternative")),
        "{:?}",
        m.header("Content-Type")
    );
    let text = part(&m.data, "text/plain; charset=utf-8").expect("text part");
    let html = part(&m.data, "text/html; charset=utf-8").expect("html part");
    assert_eq!(text.trim_end(), email.text.trim_end());
    assert_eq!(html.trim_end(), email.html.trim_end());
}

#[tokio::test]
async fn two_sends_through_one_sender_both_arrive_with_distinct_message_ids() {
    // Arrange
    let sink = SmtpSink::start(Behaviour::Accept).await;
    let sender = sender(sink.port);
    let email = summary_email();

    // Act
    let first = sender.send(&patient(), &email).await.expect("first");
    let second = sender.send(&patient(), &email).await.expect("second");

    // Assert
    assert_ne!(first, second);
    let ids: Vec<Option<String>> = sink
        .messages()
        .iter()
        .map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(
        ids,
        vec![
            Some(first.as_str().to_owned()),
            Some(second.as_str().to_owned())
        ]
    );
}

#[tokio::test]
async fn a_spanish_subject_is_encoded_and_the_body_survives_the_wire() {
    // Arrange
    let sink = SmtpSink::start(Behaviour::Accept).await;
    let email = Templates::load()
        .expect("templates")
        .render_email(Language::Es, &FinancingSummary::sample())
        .expect("render");

    // Act
    sender(sink.port)
        .send(&patient(), &email)
        .await
        .expect("send");

    // Assert
    let m = &sink.messages()[0];
    let subject = m.header("Subject").expect("subject");
    assert!(subject.is_ascii(), "the header must be 7-bit: {subject}");
    let text = part(&m.data, "text/plain; charset=utf-8").expect("text part");
    assert_eq!(text.trim_end(), email.text.trim_end());
    assert!(text.contains("aprobó"));
}

#[tokio::test]
async fn a_451_reply_is_transient_and_nothing_is_stored() {
    // Arrange
    let sink = SmtpSink::start(Behaviour::RcptTransient).await;

    // Act
    let err = sender(sink.port)
        .send(&patient(), &summary_email())
        .await
        .unwrap_err();

    // Assert
    assert!(
        matches!(
            err,
            Error::Smtp {
                failure: SmtpFailure::TransientReply { code: 451 }
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_550_reply_is_permanent_and_the_error_does_not_quote_the_server() {
    // Arrange
    let sink = SmtpSink::start(Behaviour::RcptPermanent).await;

    // Act
    let err = sender(sink.port)
        .send(&patient(), &summary_email())
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("550"), "{shown}");
    for leak in ["someone@example.test", "no such user", "alex.sample"] {
        assert!(!shown.contains(leak), "{leak} leaked into {shown}");
    }
}

#[tokio::test]
async fn a_closed_port_is_a_transient_connect_failure() {
    // Arrange: a port that was free a moment ago.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };

    // Act
    let err = sender(port)
        .send(&patient(), &summary_email())
        .await
        .unwrap_err();

    // Assert
    assert!(
        matches!(
            err,
            Error::Smtp {
                failure: SmtpFailure::Connect
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
}

#[tokio::test]
async fn a_hang_up_after_data_is_indeterminate_because_the_server_may_have_the_message() {
    // Arrange
    let sink = SmtpSink::start(Behaviour::HangUpAfterData).await;

    // Act
    let err = sender(sink.port)
        .send(&patient(), &summary_email())
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate, "{err:?}");
    assert_eq!(sink.messages().len(), 1, "the sink did receive the data");
}

#[tokio::test]
async fn a_server_silent_after_data_is_indeterminate_once_the_send_deadline_passes() {
    // Arrange: the sink keeps the message and never answers DATA; lettre's own timeout does not
    // cover that wait, the sender's deadline (twice the 2 s timeout) does.
    let sink = SmtpSink::start(Behaviour::SilentAfterData).await;

    // Act
    let sent = tokio::time::timeout(
        Duration::from_secs(30),
        sender(sink.port).send(&patient(), &summary_email()),
    )
    .await
    .expect("the send gives up on its own, well before the sink's minute of silence");

    // Assert
    let err = sent.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Indeterminate, "{err:?}");
    assert!(
        matches!(
            err,
            Error::Smtp {
                failure: SmtpFailure::Conversation
            }
        ),
        "{err:?}"
    );
    assert_eq!(sink.messages().len(), 1, "the sink did receive the data");
}

#[test]
fn unencrypted_smtp_to_a_remote_host_is_refused_at_construction() {
    // Arrange
    let config = SmtpConfig::new("smtp.example.test", 25, SmtpSecurity::None);

    // Act
    let err = EmailSender::new(&config, from()).unwrap_err();

    // Assert
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[test]
fn tls_configurations_build_without_a_runtime_and_debug_hides_the_password() {
    // Arrange
    let config = SmtpConfig::new("smtp.example.test", 587, SmtpSecurity::StartTls)
        .with_credentials("frontdesk", "hunter2-app-password".to_owned().into());

    // Act
    let built = EmailSender::new(&config, from());
    let shown = format!("{config:?}");

    // Assert
    assert!(built.is_ok());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("smtp.example.test"));
}

#[tokio::test]
async fn sender_and_templates_can_be_shared_with_spawned_tasks() {
    // Arrange: `tokio::spawn` demands Send futures and 'static shared state.
    let sink = SmtpSink::start(Behaviour::Accept).await;
    let sender = std::sync::Arc::new(sender(sink.port));
    let templates = std::sync::Arc::new(Templates::load().expect("templates"));

    // Act
    let task = {
        let (sender, templates) = (sender.clone(), templates.clone());
        tokio::spawn(async move {
            let email = templates
                .render_email(Language::En, &FinancingSummary::sample())
                .expect("render");
            sender.send(&patient(), &email).await
        })
    };
    let id = task.await.expect("join").expect("send");

    // Assert
    assert_eq!(
        sink.messages()[0].header("Message-ID").as_deref(),
        Some(id.as_str())
    );
}
