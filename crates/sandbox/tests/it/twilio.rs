//! The Twilio stand-in, through messaging's SmsClient and WebhookVerifier.

use std::sync::Arc;
use std::time::Duration;

use financing_core::PracticeId;
use messaging::{
    AccountSid, InMemoryConsentLedger, MessageStatus, OutgoingSms, PhoneNumber, SmsClient, SmsFrom,
    SmsOutcome, WebhookVerifier,
};
use sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;

use crate::support::{Receiver, http, start_with};

const TOKEN: &str = "sandbox-twilio-auth-token";

fn sms_client(sb: &Sandbox) -> SmsClient {
    SmsClient::builder(
        AccountSid::new(sb.config().twilio.account_sid.clone()),
        SecretString::from(TOKEN),
        Arc::new(InMemoryConsentLedger::new()),
    )
    .base_url(sb.urls().twilio.clone())
    .timeout(Duration::from_secs(5))
    .build()
    .expect("client")
}

fn text(to: &str, callback: Option<url::Url>) -> OutgoingSms {
    OutgoingSms {
        practice: PracticeId::new("smile"),
        to: PhoneNumber::parse(to).unwrap(),
        from: SmsFrom::Number(PhoneNumber::parse("+15125550199").unwrap()),
        body: "Smile Dental: your financing summary is ready.".into(),
        status_callback: callback,
    }
}

#[tokio::test]
async fn a_sent_text_is_stored_listed_and_reported_delivered_with_signed_callbacks() {
    // Arrange
    let rx = Receiver::start().await;
    let sb = start_with(SandboxConfig::default()).await;
    let client = sms_client(&sb);

    // Act
    let outcome = client
        .send(&text("+12025550177", Some(rx.url.clone())))
        .await
        .unwrap();
    let callbacks = rx.wait_for(2).await;
    let listed = client
        .list_messages_to(
            &PhoneNumber::parse("+12025550177").unwrap(),
            chrono::Utc::now() - chrono::TimeDelta::minutes(1),
        )
        .await
        .unwrap();

    // Assert
    let SmsOutcome::Sent(sent) = outcome else {
        panic!("sent");
    };
    assert!(sent.sid.as_str().starts_with("SM"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].sid, sent.sid);
    let verifier = WebhookVerifier::new(SecretString::from(TOKEN));
    let statuses: Vec<MessageStatus> = callbacks
        .iter()
        .map(|c| {
            let sig = c
                .headers
                .get("x-twilio-signature")
                .and_then(|v| v.to_str().ok());
            verifier
                .verify(rx.url.as_str(), &c.body, sig)
                .expect("our verifier accepts the sandbox's signature")
                .status_callback()
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(
        statuses,
        vec![MessageStatus::Sent, MessageStatus::Delivered]
    );
    assert_eq!(
        sb.twilio().messages_to("+12025550177")[0].status,
        "delivered"
    );
}

#[tokio::test]
async fn stop_blocks_later_texts_with_21610_and_reaches_the_inbound_url_signed() {
    // Arrange
    let rx = Receiver::start().await;
    let mut config = SandboxConfig::default();
    config.twilio.inbound_url = Some(rx.url.clone());
    let sb = start_with(config).await;
    let client = sms_client(&sb);
    let before = client.send(&text("+12025550178", None)).await.unwrap();

    // Act
    sb.twilio()
        .send_inbound("+12025550178", "STOP")
        .await
        .unwrap();
    let after = client.send(&text("+12025550178", None)).await.unwrap();

    // Assert
    assert!(matches!(before, SmsOutcome::Sent(_)));
    assert!(matches!(after, SmsOutcome::RecipientOptedOut));
    let got = rx.wait_for(1).await;
    let sig = got[0]
        .headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    let inbound = WebhookVerifier::new(SecretString::from(TOKEN))
        .verify(rx.url.as_str(), &got[0].body, sig)
        .unwrap()
        .inbound_message(chrono::Utc::now())
        .unwrap();
    assert_eq!(inbound.body, "STOP");
    assert_eq!(inbound.to.as_e164(), "+15125550199");
    assert!(inbound.opt_out_type.is_some());
    assert!(sb.twilio().is_opted_out("+12025550178", "+15125550199"));
}

#[tokio::test]
async fn wrong_credentials_get_twilios_20003() {
    // Arrange
    let sb = start_with(SandboxConfig::default()).await;
    let url = sb
        .urls()
        .twilio
        .join(&format!(
            "2010-04-01/Accounts/{}/Messages.json",
            sb.config().twilio.account_sid
        ))
        .unwrap();

    // Act
    let resp = http()
        .post(url)
        .basic_auth(&sb.config().twilio.account_sid, Some("wrong"))
        .form(&[
            ("To", "+12025550100"),
            ("From", "+15125550199"),
            ("Body", "x"),
        ])
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 20003);
}
