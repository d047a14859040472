//! Messages exactly once per channel: a text whose answer was lost is looked up at Twilio (by the
//! digest journalled before the send) instead of being sent again.

use std::collections::HashMap;
use std::sync::Arc;

use chairside_engine::adapters::messaging::{
    PatientMessenger, PracticeChannels, StoreConsentLedger,
};
use chairside_engine::ports::{Channel, MessageContent, Messenger, PracticeProfile};
use chairside_engine::store::prelude::*;
use chairside_engine::store::{DeliveryStore, SendRecord, SqliteStore};
use financing_core::{LocationId, PatientContact, SmsConsent, UsState};
use messaging::{AccountSid, PhoneNumber, RetryPolicy, SmsClient, SmsFrom};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{KEY_HEX, patient, practice_id};

pub(crate) const ACCOUNT: &str = "AC00000000000000000000000000000000";
const KEY: &str = "wf-test:send_message:4";

fn profile() -> PracticeProfile {
    PracticeProfile {
        id: practice_id(),
        name: "Smile Dental".into(),
        state: UsState::TX,
        time_zone: "America/Chicago".into(),
        location_id: LocationId::new("loc-1"),
        phone: "(555) 010-0100".into(),
        email: "frontdesk@example.test".into(),
    }
}

fn texted() -> PatientContact {
    PatientContact {
        email: None,
        sms_consent: SmsConsent::None,
        ..patient(1)
    }
}

fn content() -> MessageContent {
    MessageContent::ApplicationLink {
        lender_name: "CareCredit".into(),
        link: "https://apply.example.test/s/1".into(),
    }
}

pub(crate) async fn world(
    server: &MockServer,
) -> (tempfile::TempDir, Arc<SqliteStore>, PatientMessenger) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &dir.path().join("m.db"),
        chairside_engine::store::crypto::DataKey::parse(KEY_HEX).unwrap(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let ledger = Arc::new(StoreConsentLedger::new(store.clone()));
    let client = SmsClient::builder(
        AccountSid::new(ACCOUNT),
        SecretString::from("token".to_owned()),
        ledger.clone(),
    )
    .base_url(server.uri().parse().unwrap())
    .retry(RetryPolicy::none())
    .build()
    .unwrap();
    let from = SmsFrom::Number(PhoneNumber::parse("+15550100100").unwrap());
    let channels = HashMap::from([(
        practice_id(),
        PracticeChannels {
            email: None,
            sms: Some((client, from)),
        },
    )]);
    let journal: Arc<dyn DeliveryStore> = store.clone();
    let messenger = PatientMessenger::new(channels, ledger)
        .unwrap()
        .with_journal(journal);
    (dir, store, messenger)
}

pub(crate) fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}

/// The `Body` of the one text POSTed so far.
pub(crate) async fn posted_bodies(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| {
            url::form_urlencoded::parse(&r.body)
                .find(|(k, _)| k == "Body")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn a_text_whose_answer_was_lost_is_found_at_twilio_and_not_sent_again() {
    // Arrange: Twilio takes the text and answers 500 (it may have gone out).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let (_dir, store, messenger) = world(&server).await;

    // Act 1
    let first = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await;

    // Assert 1: indeterminate, and journalled as an attempt.
    let err = first.unwrap_err();
    assert_eq!(
        err.kind(),
        financing_core::ErrorKind::Indeterminate,
        "{err}"
    );
    assert!(matches!(
        store.send_record(KEY, "sms").await.unwrap(),
        Some(SendRecord::Attempting { .. })
    ));

    // Arrange 2: the text did go out; Twilio lists it.
    let body = posted_bodies(&server).await.remove(0);
    let now = chrono::Utc::now().to_rfc2822();
    Mock::given(method("GET"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [{
                "sid": "SM11111111111111111111111111111111",
                "status": "delivered",
                "to": "+15555550101",
                "from": "+15550100100",
                "body": body,
                "date_created": now,
                "date_sent": now,
            }],
            "next_page_uri": null,
            "page": 0,
            "page_size": 50,
        })))
        .mount(&server)
        .await;

    // Act 2: the runner's retry of the same message.
    let second = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();
    let third = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();

    // Assert 2: found, not resent; then known as sent without asking again.
    assert_eq!(
        second.sent,
        vec![(
            Channel::Sms,
            "SM11111111111111111111111111111111".to_owned()
        )]
    );
    assert_eq!(third.sent, second.sent);
    assert_eq!(posted_bodies(&server).await.len(), 1, "one text, not two");
    let gets = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(gets, 1, "looked up once");
}

#[tokio::test]
async fn a_text_twilio_never_took_is_sent_on_the_retry() {
    // Arrange: the first POST answers 500, and Twilio has no such message.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM22222222222222222222222222222222",
            "status": "queued",
            "num_segments": "1",
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [], "next_page_uri": null, "page": 0, "page_size": 50,
        })))
        .mount(&server)
        .await;
    let (_dir, store, messenger) = world(&server).await;

    // Act
    let _ = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap_err();
    let sent = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();

    // Assert
    assert_eq!(
        sent.sent,
        vec![(
            Channel::Sms,
            "SM22222222222222222222222222222222".to_owned()
        )]
    );
    assert_eq!(posted_bodies(&server).await.len(), 2);
    assert_eq!(
        store.send_record(KEY, "sms").await.unwrap(),
        Some(SendRecord::Sent {
            provider_id: Some("SM22222222222222222222222222222222".into())
        })
    );
}

#[tokio::test]
async fn a_journal_the_store_cannot_write_is_a_transient_failure_and_nothing_is_texted() {
    // Arrange: Twilio would take the text, but the journal refuses its write (a store hiccup).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM22222222222222222222222222222222",
            "status": "queued",
        })))
        .mount(&server)
        .await;
    let (dir, store, messenger) = world(&server).await;
    let raw = crate::harness::raw_pool(&dir.path().join("m.db")).await;
    sqlx::query(
        "CREATE TRIGGER refuse_sends BEFORE INSERT ON message_sends
         BEGIN SELECT RAISE(ABORT, 'write refused by the test'); END",
    )
    .execute(&raw)
    .await
    .unwrap();

    // Act 1
    let first = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await;

    // Assert 1: retried later (not a permanent failure that would make the patient
    // `unreachable`), and no text went out unjournalled.
    let err = first.unwrap_err();
    assert!(
        matches!(err.kind(), financing_core::ErrorKind::Transient { .. }),
        "{err}"
    );
    assert!(posted_bodies(&server).await.is_empty());

    // Act 2: the store answers again; the runner's retry of the same message.
    sqlx::query("DROP TRIGGER refuse_sends")
        .execute(&raw)
        .await
        .unwrap();
    let second = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();

    // Assert 2: sent once, and journalled as sent.
    assert_eq!(
        second.sent,
        vec![(
            Channel::Sms,
            "SM22222222222222222222222222222222".to_owned()
        )]
    );
    assert_eq!(posted_bodies(&server).await.len(), 1);
    assert!(matches!(
        store.send_record(KEY, "sms").await.unwrap(),
        Some(SendRecord::Sent { .. })
    ));
}

#[tokio::test]
async fn a_text_recorded_sent_by_the_step_reads_attempting_until_then_and_is_not_sent_twice() {
    // Arrange: Twilio takes the text; the messenger leaves the `sent` record to the step's commit
    // (as `chairside run` does).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM33333333333333333333333333333333",
            "status": "queued",
        })))
        .mount(&server)
        .await;
    let (_dir, store, messenger) = world(&server).await;
    let messenger = messenger.with_sent_recorded_by_step();
    let writes = store.counters().write_transactions;

    // Act 1
    let first = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();

    // Assert 1: sent, with Twilio's SID for the step to record; one journal transaction (the
    // attempt, before the send), and the channel still reads as an attempt with its digest.
    assert_eq!(
        first.sent,
        vec![(
            Channel::Sms,
            "SM33333333333333333333333333333333".to_owned()
        )]
    );
    assert_eq!(store.counters().write_transactions, writes + 1);
    let body = posted_bodies(&server).await.remove(0);
    assert!(matches!(
        store.send_record(KEY, "sms").await.unwrap(),
        Some(SendRecord::Attempting { body_digest: Some(d), .. })
            if d == messaging::body_digest(&body)
    ));

    // Arrange 2: the process died before the step's commit; Twilio lists the text.
    let now = chrono::Utc::now().to_rfc2822();
    Mock::given(method("GET"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [{
                "sid": "SM33333333333333333333333333333333",
                "status": "delivered",
                "to": "+15555550101",
                "from": "+15550100100",
                "body": body,
                "date_created": now,
                "date_sent": now,
            }],
            "next_page_uri": null,
            "page": 0,
            "page_size": 50,
        })))
        .mount(&server)
        .await;

    // Act 2: the next owner repeats the step.
    let second = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();

    // Assert 2: found at Twilio, not sent again, and now journaled as sent.
    assert_eq!(second.sent, first.sent);
    assert_eq!(posted_bodies(&server).await.len(), 1, "one text, not two");
    assert_eq!(
        store.send_record(KEY, "sms").await.unwrap(),
        Some(SendRecord::Sent {
            provider_id: Some("SM33333333333333333333333333333333".into())
        })
    );
}

/// Twilio takes every text (201) and lists none.
async fn twilio_takes_texts(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM33333333333333333333333333333333",
            "status": "queued",
            "num_segments": "1",
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [], "next_page_uri": null, "page": 0, "page_size": 50,
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_prepared_text_is_journaled_by_its_caller_and_sent_without_a_journal_transaction() {
    // Arrange
    let server = MockServer::start().await;
    twilio_takes_texts(&server).await;
    let (_dir, store, messenger) = world(&server).await;
    let before = store.counters().write_transactions;

    // Act 1: prepared, as the runner does before the commit that journals the intent.
    let prepared = messenger
        .prepare(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap()
        .expect("a first attempt with a journal is prepared");

    // Assert 1: nothing written, nothing sent; the text's digest is what the caller journals.
    assert_eq!(store.counters().write_transactions, before);
    assert_eq!(store.send_record(KEY, "sms").await.unwrap(), None);
    assert!(posted_bodies(&server).await.is_empty());
    assert_eq!(prepared.journal.len(), 1);
    let (channel, digest) = &prepared.journal[0];
    assert_eq!(*channel, "sms");
    let digest = digest.clone().expect("a text is journaled with its digest");

    // Act 2: the caller's commit writes the records, then the prepared text goes out.
    let records: Vec<(&str, Option<&str>)> = prepared
        .journal
        .iter()
        .map(|(c, d)| (*c, d.as_deref()))
        .collect();
    store
        .begin_sends(KEY, &records, chrono::Utc::now())
        .await
        .unwrap();
    let committed = store.counters().write_transactions;
    let sent = messenger
        .send_prepared(
            &profile(),
            &texted(),
            &content(),
            &[Channel::Sms],
            KEY,
            prepared,
        )
        .await
        .unwrap();

    // Assert 2: one text, the body journaled; the messenger wrote only its outcome (no begin).
    let bodies = posted_bodies(&server).await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(messaging::body_digest(&bodies[0]), digest);
    assert_eq!(
        sent.sent,
        vec![(
            Channel::Sms,
            "SM33333333333333333333333333333333".to_owned()
        )]
    );
    assert_eq!(store.counters().write_transactions, committed + 1);
    assert_eq!(
        store.send_record(KEY, "sms").await.unwrap(),
        Some(SendRecord::Sent {
            provider_id: Some("SM33333333333333333333333333333333".into())
        })
    );
}

#[tokio::test]
async fn a_text_journaled_with_its_intent_and_never_sent_before_a_crash_is_sent_on_the_repeat() {
    // Arrange: prepared and journaled by the commit, then the process died before the send.
    let server = MockServer::start().await;
    twilio_takes_texts(&server).await;
    let (_dir, store, messenger) = world(&server).await;
    let prepared = messenger
        .prepare(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap()
        .unwrap();
    let records: Vec<(&str, Option<&str>)> = prepared
        .journal
        .iter()
        .map(|(c, d)| (*c, d.as_deref()))
        .collect();
    store
        .begin_sends(KEY, &records, chrono::Utc::now())
        .await
        .unwrap();
    drop(prepared);

    // Act: the repeated step finds the record: nothing is prepared, the plain send reconciles.
    let again = messenger
        .prepare(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();
    let sent = messenger
        .send(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();

    // Assert: looked up at Twilio first (not found), then sent once: not lost, not doubled.
    assert!(
        again.is_none(),
        "a message with a record is not prepared again"
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.method.as_str() == "GET")
            .count(),
        1
    );
    assert_eq!(posted_bodies(&server).await.len(), 1);
    assert_eq!(sent.sent.len(), 1);
}

#[tokio::test]
async fn a_message_that_cannot_be_sent_as_asked_is_not_prepared() {
    // Arrange: a text asked of a patient without a mobile number, and the same message already
    // sent once.
    let server = MockServer::start().await;
    twilio_takes_texts(&server).await;
    let (_dir, store, messenger) = world(&server).await;
    let no_phone = PatientContact {
        mobile_phone: None,
        ..texted()
    };
    store
        .finish_send(KEY, "sms", true, Some("SM1"), chrono::Utc::now())
        .await
        .unwrap();

    // Act
    let nothing_to_text = messenger
        .prepare(
            &profile(),
            &no_phone,
            &content(),
            &[Channel::Sms],
            "other-key",
        )
        .await
        .unwrap();
    let sent_before = messenger
        .prepare(&profile(), &texted(), &content(), &[Channel::Sms], KEY)
        .await
        .unwrap();

    // Assert: neither is prepared (the plain send reports or reconciles them).
    assert!(nothing_to_text.is_none());
    assert!(sent_before.is_none());
    assert!(posted_bodies(&server).await.is_empty());
}

#[tokio::test]
async fn a_message_went_out_when_its_email_has_a_record_whatever_its_text_did() {
    // Arrange: the journal as a message leaves it whose email went out (or whose outcome is
    // unknown) and whose text kept failing; and a message whose email was never sent.
    let server = MockServer::start().await;
    let (_dir, store, messenger) = world(&server).await;
    let now = chrono::Utc::now();
    store
        .begin_sends(KEY, &[("email", None), ("sms", Some("digest"))], now)
        .await
        .unwrap();
    let text_only = "wf-test:send_message:5";
    store
        .begin_send(text_only, "sms", Some("digest"), now)
        .await
        .unwrap();

    // Act + Assert: an attempted email counts (never resent, taken as gone out); so does a sent
    // one; a text alone does not, nor does a message with no record.
    assert!(messenger.went_out(KEY).await.unwrap());
    store
        .finish_send(KEY, "email", true, Some("<m@example.test>"), now)
        .await
        .unwrap();
    assert!(messenger.went_out(KEY).await.unwrap());
    assert!(!messenger.went_out(text_only).await.unwrap());
    assert!(!messenger.went_out("wf-test:send_message:6").await.unwrap());
    // A refused email leaves no record.
    let refused = "wf-test:send_message:7";
    store.begin_send(refused, "email", None, now).await.unwrap();
    store
        .finish_send(refused, "email", false, None, now)
        .await
        .unwrap();
    assert!(!messenger.went_out(refused).await.unwrap());
}
