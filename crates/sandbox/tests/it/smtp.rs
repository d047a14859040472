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
