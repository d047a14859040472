//! Inbound classification and STOP / START / HELP state changes through the ledger.

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use financing_core::PracticeId;
use messaging::{
    ConsentChange, ConsentLedger, ConsentSource, InMemoryConsentLedger, InboundIntent,
    InboundMessage, MessageSid, OptOutState, OptOutType, PhoneNumber, SmsOutcome, WebhookVerifier,
    apply_inbound, classify_inbound, compute_signature,
};
use secrecy::SecretString;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{empty_ledger, outgoing, patient_phone, practice, sms_client};

#[test]
fn opt_out_keywords_revoke_whatever_the_case_and_punctuation() {
    for body in [
        "STOP",
        "stop",
        " Stop. ",
        "STOP!!",
        "STOPALL",
        "stop all",
        "UNSUBSCRIBE",
        "Cancel",
        "END",
        "quit",
        "REVOKE",
        "OPTOUT",
        "opt-out",
        "Alto",
        "PARAR",
        "baja",
        "cancelar",
    ] {
        assert_eq!(classify_inbound(body), InboundIntent::OptOut, "{body:?}");
    }
}

#[test]
fn opt_in_and_help_keywords_are_recognised() {
    for body in ["START", "start", "Unstop", "YES", "yes."] {
        assert_eq!(classify_inbound(body), InboundIntent::OptIn, "{body:?}");
    }
    for body in ["HELP", "help?", "Info", "AYUDA"] {
        assert_eq!(classify_inbound(body), InboundIntent::Help, "{body:?}");
    }
}

#[test]
fn free_text_refusals_revoke_and_need_a_staff_task() {
    for body in [
        "stop texting me",
        "Please STOP",
        "Don't text me anymore",
        "do not text this number",
        "don’t message me",
        "no more texts please",
        "remove me from your list",
        "unsubscribe me",
        "Leave me alone",
        "Por favor no me envíen más mensajes",
        "dejen de escribirme",
        "No quiero recibir mensajes",
    ] {
        let intent = classify_inbound(body);
        assert_eq!(intent, InboundIntent::Refusal, "{body:?}");
        assert!(intent.revokes_consent() && intent.needs_staff_task());
    }
}

#[test]
fn ordinary_replies_change_nothing() {
    for body in [
        "Thanks!",
        "What time is my appointment?",
        "Can I cancel my appointment on Friday?",
        "I'll stop by tomorrow",
        "Is it the end of the month already?",
        "Yes please, what do I need to bring?",
        "",
    ] {
        let intent = classify_inbound(body);
        assert_eq!(intent, InboundIntent::Other, "{body:?}");
        assert!(!intent.revokes_consent() && !intent.restores_consent());
    }
}

fn inbound(body: &str, at: chrono::DateTime<Utc>) -> InboundMessage {
    InboundMessage {
        message_sid: MessageSid::new("SM00000000000000000000000000000099"),
        from: patient_phone(),
        to: PhoneNumber::parse("+15555550100").expect("phone"),
        body: body.to_owned(),
        opt_out_type: None,
        received_at: at,
    }
}

#[tokio::test]
async fn stop_then_start_through_the_ledger_revokes_then_restores() {
    // Arrange
    let ledger = InMemoryConsentLedger::new();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap();

    // Act
    let stop = apply_inbound(&ledger, &practice(), &inbound("STOP", t0))
        .await
        .expect("stop");
    let after_stop = ledger
        .opt_out_state(&practice(), &patient_phone())
        .await
        .expect("state");
    let start = apply_inbound(
        &ledger,
        &practice(),
        &inbound("START", t0 + ChronoDuration::minutes(5)),
    )
    .await
    .expect("start");

    // Assert
    assert_eq!(stop.intent, InboundIntent::OptOut);
    assert_eq!(
        after_stop,
        OptOutState::OptedOut {
            at: t0,
            source: ConsentSource::InboundKeyword
        }
    );
    assert!(!stop.staff_task && !stop.reply_with_help);
    assert_eq!(start.intent, InboundIntent::OptIn);
    assert_eq!(start.state, OptOutState::NotOptedOut);
    assert_eq!(
        ledger
            .opt_out_state(&practice(), &patient_phone())
            .await
            .expect("state"),
        OptOutState::NotOptedOut
    );
}

#[tokio::test]
async fn a_free_text_refusal_revokes_with_its_own_source_and_asks_for_staff() {
    // Arrange
    let ledger = InMemoryConsentLedger::new();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap();

    // Act
    let outcome = apply_inbound(&ledger, &practice(), &inbound("please stop texting me", t0))
        .await
        .expect("apply");

    // Assert
    assert!(outcome.staff_task);
    assert_eq!(
        outcome.state,
        OptOutState::OptedOut {
            at: t0,
            source: ConsentSource::InboundFreeText
        }
    );
}

#[tokio::test]
async fn help_asks_for_a_reply_and_changes_nothing() {
    // Arrange
    let ledger = InMemoryConsentLedger::new();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap();
    ledger
        .record(
            &practice(),
            &patient_phone(),
            &ConsentChange::opt_out(t0, ConsentSource::Staff),
        )
        .await
        .expect("record");

    // Act
    let outcome = apply_inbound(
        &ledger,
        &practice(),
        &inbound("HELP", t0 + ChronoDuration::minutes(1)),
    )
    .await
    .expect("apply");

    // Assert
    assert!(outcome.reply_with_help);
    assert!(outcome.state.is_opted_out(), "HELP must not re-subscribe");
}

#[tokio::test]
async fn twilios_opt_out_type_start_restores_even_when_the_body_is_unclear() {
    // Arrange
    let ledger = InMemoryConsentLedger::new();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap();
    apply_inbound(&ledger, &practice(), &inbound("STOP", t0))
        .await
        .expect("stop");
    let mut msg = inbound("reanudar", t0 + ChronoDuration::minutes(1));
    msg.opt_out_type = Some(OptOutType::Start);

    // Act
    let outcome = apply_inbound(&ledger, &practice(), &msg)
        .await
        .expect("apply");

    // Assert
    assert_eq!(outcome.intent, InboundIntent::OptIn);
    assert_eq!(outcome.state, OptOutState::NotOptedOut);
}

#[tokio::test]
async fn an_older_start_processed_late_never_re_subscribes() {
    // Arrange: START at t0, STOP at t1 > t0, processed STOP first.
    let ledger = InMemoryConsentLedger::new();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap();
    let t1 = t0 + ChronoDuration::seconds(30);
    apply_inbound(&ledger, &practice(), &inbound("STOP", t1))
        .await
        .expect("stop");

    // Act
    let late = apply_inbound(&ledger, &practice(), &inbound("START", t0))
        .await
        .expect("start");

    // Assert
    assert_eq!(
        late.state,
        OptOutState::OptedOut {
            at: t1,
            source: ConsentSource::InboundKeyword
        }
    );
}

#[tokio::test]
async fn at_the_same_instant_an_opt_out_wins() {
    // Arrange
    let ledger = InMemoryConsentLedger::new();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap();

    // Act
    ledger
        .record(
            &practice(),
            &patient_phone(),
            &ConsentChange::opt_out(t0, ConsentSource::CarrierOptOut),
        )
        .await
        .expect("out");
    let state = ledger
        .record(
            &practice(),
            &patient_phone(),
            &ConsentChange::opt_in(t0, ConsentSource::InboundKeyword),
        )
        .await
        .expect("in");

    // Assert
    assert!(state.is_opted_out());
}

#[tokio::test]
async fn a_verified_stop_webhook_stops_the_next_send_and_start_allows_it_again() {
    // Arrange: the whole path, webhook signature to Twilio call.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_string(include_str!("../fixtures/message_created.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let ledger = empty_ledger();
    let client = sms_client(&server, ledger.clone());
    let token = SecretString::from("test-auth-token");
    let url = "https://chairside.example.test/webhooks/twilio/inbound";
    let verifier = WebhookVerifier::new(token.clone());
    let webhook = |body: &str| {
        let params: Vec<(String, String)> = [
            ("MessageSid", "SM00000000000000000000000000000042"),
            ("From", "+15555550123"),
            ("To", "+15555550100"),
            ("Body", body),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sig = compute_signature(&token, url, &params);
        let raw = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        verifier
            .verify(url, raw.as_bytes(), Some(&sig))
            .expect("signature")
    };
    let t0 = Utc::now() - ChronoDuration::minutes(10);

    // Act
    let stop = webhook("Stop").inbound_message(t0).expect("inbound");
    apply_inbound(ledger.as_ref(), &practice(), &stop)
        .await
        .expect("apply stop");
    let while_stopped = client.send(&outgoing("Sample")).await.expect("send");
    let start = webhook("START")
        .inbound_message(t0 + ChronoDuration::minutes(1))
        .expect("inbound");
    apply_inbound(ledger.as_ref(), &practice(), &start)
        .await
        .expect("apply start");
    let after_start = client.send(&outgoing("Sample")).await.expect("send");

    // Assert
    assert_eq!(while_stopped, SmsOutcome::Suppressed { opted_out_at: t0 });
    assert!(matches!(after_start, SmsOutcome::Sent(_)));
}

#[tokio::test]
async fn opt_outs_are_per_practice() {
    // Arrange
    let ledger = InMemoryConsentLedger::new();
    let t0 = Utc::now();

    // Act
    apply_inbound(&ledger, &practice(), &inbound("STOP", t0))
        .await
        .expect("stop");

    // Assert
    let other = ledger
        .opt_out_state(&PracticeId::new("another-practice"), &patient_phone())
        .await
        .expect("state");
    assert_eq!(other, OptOutState::NotOptedOut);
}
