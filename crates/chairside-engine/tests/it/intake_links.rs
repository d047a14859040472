//! Chairside sends a new patient their intake link: the email always, a text only with written
//! consent on record (COMPLIANCE.md section 5), exactly once per send even when the process dies
//! between the send and its record (the message journal), and a re-send under its own key.

use std::sync::Arc;
use std::time::Duration;

use chairside_engine::intake::{Intakes, PatientDetails, intake_link_token};
use chairside_engine::ports::{Channel, MessageContent};
use chairside_engine::store::prelude::*;
use chairside_engine::store::{DeliveryStore, LinkResend, LinkSendOutcome};
use messaging::{ConsentEntry, ConsentKind, PATIENT_PAGE_WORDING, sources};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{World, practice_id, t0};

/// The harness runtime's patient-link key (`World::runtime`).
fn link_key() -> SecretString {
    SecretString::from("test-link-key-0123456789abcdef0123".to_owned())
}

fn details(phone: &str, email: &str) -> PatientDetails {
    PatientDetails {
        first_name: "Testa".into(),
        last_name: "Newpatient".into(),
        mobile_phone: phone.into(),
        email: email.into(),
        ..PatientDetails::default()
    }
}

fn written(phone_store_at: chrono::DateTime<chrono::Utc>) -> ConsentEntry {
    ConsentEntry::grant(
        ConsentKind::Written,
        sources::PATIENT_PAGE,
        PATIENT_PAGE_WORDING,
        "patient",
        phone_store_at,
    )
}

async fn start(world: &World, d: &PatientDetails) -> String {
    let intakes = Intakes::new(world.store().await, link_key());
    intakes
        .start_by_staff(&practice_id(), "staff:alice", d, None, None, t0())
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn the_intake_link_goes_by_email_and_by_text_only_with_written_consent_once() {
    // Arrange: three new patients: email and phone without consent; phone only without consent;
    // email and a phone whose number holds the patient's written consent.
    let world = World::new();
    let store = world.store().await;
    let emailed = start(&world, &details("+15555550201", "new1@example.test")).await;
    let phone_only = start(&world, &details("+15555550202", "")).await;
    store
        .record_sms_consent(&practice_id(), "+15555550203", &written(t0()), t0())
        .await
        .unwrap();
    let both = start(&world, &details("+15555550203", "new3@example.test")).await;
    let runner = world.runner("r1").await;

    // Act
    let attempted = runner.send_intake_links().await.unwrap();
    let again = runner.send_intake_links().await.unwrap();

    // Assert: each send went once, on the channels the rules allow, under its own key, with the
    // link the patient's page answers to.
    assert_eq!((attempted, again), (3, 0));
    let sent = world.messenger.sent();
    let of = |id: &str| {
        sent.iter()
            .filter(|s| s.key == format!("intake:{id}:link:0"))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&emailed).len(), 1);
    assert_eq!(of(&emailed)[0].channels, vec![Channel::Email]);
    assert_eq!(
        of(&emailed)[0].content,
        MessageContent::IntakeLink {
            link: format!(
                "https://pay.smile.example.test/i/{}",
                intake_link_token(&emailed, &link_key())
            ),
        }
    );
    assert_eq!(of(&both).len(), 1);
    assert_eq!(of(&both)[0].channels, vec![Channel::Email, Channel::Sms]);
    assert!(
        of(&phone_only).is_empty(),
        "no email and no consent: no text"
    );
    let token = intake_link_token(&emailed, &link_key());
    assert_eq!(
        store
            .intake_by_token(&chairside_engine::intake::token_hash(&token))
            .await
            .unwrap()
            .map(|r| r.id),
        Some(emailed.clone()),
        "the sent link opens the intake"
    );
    let rows = store
        .intake_link_sends(&practice_id(), &phone_only)
        .await
        .unwrap();
    assert_eq!(rows[0].status, "failed");
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("no SMS consent"),
        "{rows:?}"
    );
    let rows = store
        .intake_link_sends(&practice_id(), &both)
        .await
        .unwrap();
    assert_eq!(
        (rows[0].status.as_str(), rows[0].channels.as_deref()),
        ("sent", Some("email,sms"))
    );

    // A re-send ten minutes later goes under a new key.
    world.clock.advance(Duration::from_secs(11 * 60));
    let intakes = Intakes::new(store.clone(), link_key());
    let queued = intakes
        .resend_link(&practice_id(), &emailed, "staff:bob", world.clock.now_utc())
        .await
        .unwrap();
    assert_eq!(queued, LinkResend::Queued { seq: 1 });
    assert_eq!(runner.send_intake_links().await.unwrap(), 1);
    assert_eq!(
        world
            .messenger
            .sent()
            .iter()
            .filter(|s| s.key == format!("intake:{emailed}:link:1"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_crash_between_the_text_and_its_record_never_sends_the_link_twice() {
    // Arrange: a phone-only patient with written consent; Twilio takes texts; the runner's
    // messenger is the real one, with the message journal.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(crate::messages::messages_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM33333333333333333333333333333333",
            "status": "queued",
            "num_segments": "1",
        })))
        .mount(&server)
        .await;
    let (_dir, journal, messenger) = crate::messages::world(&server).await;
    let world = World::new();
    let store = world.store().await;
    store
        .record_sms_consent(&practice_id(), "+15555550204", &written(t0()), t0())
        .await
        .unwrap();
    let id = start(&world, &details("+15555550204", "")).await;
    let mut rt = world.runtime();
    rt.messenger = Arc::new(messenger);
    let runner = world.runner_tuned("r1", vec![rt], |_| {}).await;

    // Act 1: the send goes out, then the process dies before its outcome is recorded.
    let claimed = store
        .claim_intake_link_sends(world.clock.now_utc(), Duration::from_secs(120), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let outcome = runner.perform_intake_link(&claimed[0]).await;
    let LinkSendOutcome::Sent { channels, sent } = &outcome else {
        panic!("not sent: {outcome:?}");
    };
    assert_eq!(channels, "sms");
    assert_eq!(
        sent.iter()
            .map(|s| (s.key.as_str(), s.channel, s.provider_id.as_str()))
            .collect::<Vec<_>>(),
        vec![(
            format!("intake:{id}:link:0").as_str(),
            "sms",
            "SM33333333333333333333333333333333"
        )],
        "the text's id, for the journal"
    );
    drop(outcome);

    // Act 2: after the lease, a runner takes the send again, under the same key.
    runner.send_intake_links().await.unwrap();
    assert_eq!(
        crate::messages::posted_bodies(&server).await.len(),
        1,
        "within the lease nothing is taken over"
    );
    world.clock.advance(Duration::from_secs(180));
    assert_eq!(runner.send_intake_links().await.unwrap(), 1);

    // Assert: one text, recorded as sent on the second attempt; the journal holds its id.
    let bodies = crate::messages::posted_bodies(&server).await;
    assert_eq!(bodies.len(), 1, "one text, not two: {bodies:?}");
    assert!(bodies[0].contains("https://pay.smile.example.test/i/"));
    assert!(bodies[0].contains("Reply STOP to opt out."));
    let rows = store.intake_link_sends(&practice_id(), &id).await.unwrap();
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("sent", 2),
        "{rows:?}"
    );
    assert!(matches!(
        journal
            .send_record(&format!("intake:{id}:link:0"), "sms")
            .await
            .unwrap(),
        Some(chairside_engine::store::SendRecord::Sent { provider_id: Some(sid) })
            if sid == "SM33333333333333333333333333333333"
    ));
    // The send's outcome journals the channel too, in its own transaction (the runner's
    // messenger leaves a sent channel `attempting` for its caller to record).
    assert!(matches!(
        store
            .send_record(&format!("intake:{id}:link:0"), "sms")
            .await
            .unwrap(),
        Some(chairside_engine::store::SendRecord::Sent { provider_id: Some(sid) })
            if sid == "SM33333333333333333333333333333333"
    ));
}

#[tokio::test]
async fn a_patient_who_typed_their_details_in_spanish_gets_the_financing_messages_in_spanish() {
    // Arrange: staff start an intake with the amount (the start form left at English); the
    // patient types their details on the intake page in Spanish and agrees to texts there.
    let world = World::new();
    let store = world.store().await;
    let intakes = Intakes::new(store.clone(), link_key());
    let link = intakes
        .start_by_staff(
            &practice_id(),
            "staff:alice",
            &details("+15555550211", "new11@example.test"),
            Some(financing_core::Money::usd(250_000)),
            None,
            t0(),
        )
        .await
        .unwrap();
    let typed = PatientDetails {
        date_of_birth: chrono::NaiveDate::from_ymd_opt(1984, 5, 12),
        state: Some(financing_core::UsState::TX),
        language: financing_core::Language::Es,
        ..details("+15555550211", "new11@example.test")
    };
    let wf = intakes
        .submit(&link.token, &typed, true, t0())
        .await
        .unwrap()
        .expect("details and amount are in: financing starts");

    // Act
    let runner = world.runner("r1").await;
    runner.run_until_idle(100).await.unwrap();

    // Assert: the consent holds the Spanish wording the patient read, and the workflow's first
    // message goes to the patient in Spanish.
    let consent = store
        .sms_consent(&practice_id(), "+15555550211")
        .await
        .unwrap()
        .expect("consent");
    assert_eq!(consent.wording, messaging::PATIENT_PAGE_WORDING_ES);
    let patient = chairside_workflow::intake::patient_id(&link.id);
    let of_workflow: Vec<_> = world
        .messenger
        .sent_to(&patient)
        .into_iter()
        .filter(|s| s.key.starts_with(&format!("{wf}:")))
        .collect();
    let first = of_workflow.first().expect("the workflow sent a message");
    assert_eq!(first.language, financing_core::Language::Es, "{first:?}");
    assert!(
        of_workflow
            .iter()
            .all(|s| s.language == financing_core::Language::Es)
    );
}

/// `Runner::work` asks the store for due intake links at most once a second (not after every
/// step): a link queued while the pool runs still goes out, once, with no wake-up but the pool's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_sends_a_link_queued_while_it_runs_once() {
    // Arrange: the pool running, its first round of intake links (none due) already asked.
    let world = World::new();
    let runner = world.runner("r1").await;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = {
        let runner = runner.clone();
        tokio::spawn(async move {
            runner
                .work(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Act: two intakes started, one after the other, while the pool runs.
    let first = start(&world, &details("+15555550211", "new11@example.test")).await;
    let second = start(&world, &details("+15555550212", "new12@example.test")).await;

    // Assert: each link goes out, once, without anyone waking the pool.
    let sent_for = |id: &str| {
        let key = format!("intake:{id}:link:0");
        world
            .messenger
            .sent()
            .iter()
            .filter(|s| s.key == key)
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sent_for(&first) == 0 || sent_for(&second) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool never sent the links"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!((sent_for(&first), sent_for(&second)), (1, 1));
}
