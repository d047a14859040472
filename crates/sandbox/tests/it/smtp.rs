//! The SMTP sink, fed by lettre as messaging sends mail.

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::support::start;

async fn send(port: u16, to: &str, subject: &str, text: &str, html: &str) -> Result<(), String> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .build();
    let message = Message::builder()
        .from(
            "Smile Dental <frontdesk@smile.example.test>"
                .parse::<Mailbox>()
                .unwrap(),
        )
        .to(to.parse::<Mailbox>().unwrap())
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(
            text.to_owned(),
            html.to_owned(),
        ))
        .unwrap();
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_sink_keeps_a_multipart_message_with_its_text_and_links_decoded() {
    // Arrange
    let sb = start().await;
    let long_link = format!("http://127.0.0.1:1/p/{}", "x".repeat(120));

    // Act
    send(
        sb.urls().smtp.port(),
        "avery.1@example.test",
        "Your financing summary – Smile Dental",
        &format!("Hello,\nyour summary: {long_link}\n"),
        &format!("<p>Hello, <a href=\"{long_link}\">summary</a></p>"),
    )
    .await
    .unwrap();

    // Assert
    let got = sb.smtp().messages_to("avery.1@example.test");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].subject.as_deref(),
        Some("Your financing summary – Smile Dental")
    );
    assert_eq!(got[0].mail_from, "frontdesk@smile.example.test");
    assert!(
        got[0].text.contains(&long_link),
        "quoted-printable is undone"
    );
    assert_eq!(
        sandbox::extract_links(got[0].html.as_deref().unwrap()),
        vec![long_link]
    );
}

#[tokio::test]
async fn a_rejected_recipient_fails_the_send_and_nothing_is_kept() {
    // Arrange
    let sb = start().await;
    sb.smtp().reject_next(1, 451);

    // Act
    let first = send(
        sb.urls().smtp.port(),
        "a@example.test",
        "x",
        "x",
        "<p>x</p>",
    )
    .await;
    let second = send(
        sb.urls().smtp.port(),
        "a@example.test",
        "y",
        "y",
        "<p>y</p>",
    )
    .await;

    // Assert
    assert!(first.is_err());
    assert!(second.is_ok());
    let got = sb.smtp().messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject.as_deref(), Some("y"));
}

#[tokio::test]
async fn accepted_then_dropped_keeps_the_message_but_the_client_sees_a_failure() {
    // Arrange
    let sb = start().await;
    sb.smtp().set_faults(vec![
        sandbox::SmtpFaultRule::new(sandbox::SmtpFault::AcceptedThenDropped).times(1),
    ]);

    // Act
    let first = send(
        sb.urls().smtp.port(),
        "a@example.test",
        "x",
        "x",
        "<p>x</p>",
    )
    .await;
    let second = send(
        sb.urls().smtp.port(),
        "b@example.test",
        "y",
        "y",
        "<p>y</p>",
    )
    .await;

    // Assert: the client cannot know the first went; it did.
    assert!(first.is_err(), "the reply to DATA never came");
    assert!(second.is_ok(), "the rule fires once");
    assert_eq!(sb.smtp().messages_to("a@example.test").len(), 1);
    assert_eq!(sb.smtp().faults_fired(), [1]);
}

#[tokio::test]
async fn accepted_then_silent_keeps_the_message_and_never_answers_data() {
    // Arrange: the sink stays silent far longer than the client waits.
    let sb = start().await;
    sb.smtp().set_faults(vec![sandbox::SmtpFaultRule::new(
        sandbox::SmtpFault::AcceptedThenSilent(std::time::Duration::from_secs(30)),
    )]);

    // Act: the client gives up after a second (messaging's sender has a deadline of its own).
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        send(
            sb.urls().smtp.port(),
            "a@example.test",
            "x",
            "x",
            "<p>x</p>",
        ),
    )
    .await;

    // Assert
    assert!(sent.is_err(), "no answer to DATA: {sent:?}");
    assert_eq!(sb.smtp().messages_to("a@example.test").len(), 1);
    assert_eq!(sb.smtp().faults_fired(), [1]);
}
