//! Request-level tests of the webhooks: signatures, staleness, replays, size, mapping.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use financing_core::{Decision, Money};
use secrecy::SecretString;
use serde_json::json;

use super::*;
use crate::testkit::{
    Kit, NEXHEALTH_SECRET, OTHER_NEXHEALTH_SECRET, OTHER_SMS, OTHER_SUNBIT_SECRET, PHONE, PUBLIC,
    SMILE_SMS, STRIPE_NEW, STRIPE_OLD, SUNBIT_SECRET, TWILIO_TOKEN, body_text, get, other, smile,
    sunbit,
};

fn stripe_request(body: &str, secret: &str, t: i64) -> Request<Body> {
    let sig = stripe_schedule::webhook::sign(body.as_bytes(), &SecretString::from(secret), t);
    Request::post("/webhooks/stripe")
        .header("content-type", "application/json")
        .header("stripe-signature", sig)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

fn invoice_paid(event_id: &str, wf: &WorkflowId) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "type": "invoice.paid",
        "api_version": "2026-10-28.endive",
        "created": 1_780_000_000,
        "livemode": false,
        "data": {"object": {
            "id": "in_test_1",
            "object": "invoice",
            "status": "paid",
            "customer": "cus_test_1",
            "amount_due": 10_000,
            "amount_paid": 10_000,
            "amount_remaining": 0,
            "currency": "usd",
            "attempt_count": 1,
            "parent": {
                "type": "subscription_details",
                "subscription_details": {
                    "subscription": "sub_test_1",
                    "metadata": {"chairside_workflow": wf.as_str()}
                }
            },
            "metadata": {}
        }}
    })
    .to_string()
}

/// A seeded workflow whose Stripe customer is the one the invoices in these tests bill.
async fn seed_billed_workflow(kit: &Kit, plan: &str) -> WorkflowId {
    let mut state = kit.financing_state(smile(), plan, "pat-1");
    state.stripe.customer_id = Some("cus_test_1".into());
    kit.seed(state).await
}

fn paid_invoice_event() -> Event {
    Event::Payment(PaymentFact::Paid {
        stripe_id: "in_test_1".into(),
        amount: Money::usd(10_000),
    })
}

async fn metrics_text(kit: &Kit) -> String {
    body_text(kit.send(get("/metrics")).await).await
}

#[tokio::test]
async fn a_stripe_invoice_paid_for_a_seeded_workflow_enqueues_a_payment() {
    // Arrange
    let kit = Kit::new().await;
    let wf = seed_billed_workflow(&kit, "tx-1").await;
    // Act
    let res = kit
        .send(stripe_request(
            &invoice_paid("evt_1", &wf),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;
    // Assert
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(kit.inbox(&wf).await, vec![paid_invoice_event()]);
}

#[tokio::test]
async fn a_live_stripe_event_at_a_test_mode_install_is_refused_and_counted() {
    // Arrange: correctly signed, naming a real workflow, but from live mode.
    let kit = Kit::new().await;
    let wf = seed_billed_workflow(&kit, "tx-1").await;
    let live = invoice_paid("evt_live_1", &wf).replace(r#""livemode":false"#, r#""livemode":true"#);
    assert!(live.contains(r#""livemode":true"#));

    // Act
    let res = kit
        .send(stripe_request(&live, STRIPE_NEW, now_secs()))
        .await;
    let test_mode = kit
        .send(stripe_request(
            &invoice_paid("evt_test_1", &wf),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;

    // Assert: refused and nothing queued; the test-mode event still lands.
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(test_mode.status(), StatusCode::OK);
    assert_eq!(kit.inbox(&wf).await, vec![paid_invoice_event()]);
    let m = metrics_text(&kit).await;
    assert!(
        m.contains(r#"chairside_webhook_rejections_total{provider="stripe",reason="livemode"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_stripe_delivery_signed_with_the_rolled_secret_is_still_accepted() {
    let kit = Kit::new().await;
    let wf = seed_billed_workflow(&kit, "tx-1").await;
    let res = kit
        .send(stripe_request(
            &invoice_paid("evt_1", &wf),
            STRIPE_OLD,
            now_secs(),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(kit.inbox(&wf).await.len(), 1);
}

#[tokio::test]
async fn a_stripe_delivery_with_a_bad_signature_is_rejected_and_counted() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    // Act: a forged secret, and a body that is not even JSON (it must never be parsed).
    let forged = kit
        .send(stripe_request(
            &invoice_paid("evt_1", &wf),
            "whsec_forged",
            now_secs(),
        ))
        .await;
    let garbage = kit
        .send(stripe_request("not json", "whsec_forged", now_secs()))
        .await;
    let unsigned = kit
        .send(
            Request::post("/webhooks/stripe")
                .body(Body::from(invoice_paid("evt_2", &wf)))
                .unwrap(),
        )
        .await;
    // Assert
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
    assert!(kit.inbox(&wf).await.is_empty());
    let m = metrics_text(&kit).await;
    assert!(
        m.contains(r#"chairside_webhook_rejections_total{provider="stripe",reason="signature"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"chairside_webhook_rejections_total{provider="stripe",reason="malformed"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_stale_stripe_timestamp_is_rejected_even_with_a_valid_signature() {
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let res = kit
        .send(stripe_request(
            &invoice_paid("evt_1", &wf),
            STRIPE_NEW,
            now_secs() - 3600,
        ))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(kit.inbox(&wf).await.is_empty());
    assert!(
        metrics_text(&kit)
            .await
            .contains(r#"chairside_webhook_rejections_total{provider="stripe",reason="stale"} 1"#)
    );
}

#[tokio::test]
async fn a_replayed_stripe_event_id_is_answered_200_without_a_second_inbox_event() {
    // Arrange
    let kit = Kit::new().await;
    let wf = seed_billed_workflow(&kit, "tx-1").await;
    let body = invoice_paid("evt_replayed", &wf);
    // Act: the retry is a new signature over the same event.
    let first = kit
        .send(stripe_request(&body, STRIPE_NEW, now_secs()))
        .await;
    let second = kit
        .send(stripe_request(&body, STRIPE_NEW, now_secs() - 5))
        .await;
    // Assert
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(kit.inbox(&wf).await.len(), 1);
    let m = metrics_text(&kit).await;
    assert!(
        m.contains(r#"chairside_webhooks_received_total{provider="stripe",outcome="duplicate"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn an_oversized_webhook_body_gets_413() {
    let kit = Kit::new().await;
    let body = "x".repeat(kit.state.config().body_limit + 1);
    let res = kit
        .send(stripe_request(&body, STRIPE_NEW, now_secs()))
        .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_unknown_stripe_event_type_is_recorded_and_answered_200() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let body = json!({
        "id": "evt_unknown",
        "type": "customer.tax_id.created",
        "data": {"object": {"id": "txi_1", "metadata": {"chairside_workflow": wf.as_str()}}}
    })
    .to_string();
    // Act
    let first = kit
        .send(stripe_request(&body, STRIPE_NEW, now_secs()))
        .await;
    let again = kit
        .send(stripe_request(&body, STRIPE_NEW, now_secs()))
        .await;
    // Assert: stored (the replay is a duplicate), nothing for the workflow.
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(again.status(), StatusCode::OK);
    assert!(kit.inbox(&wf).await.is_empty());
    let m = metrics_text(&kit).await;
    assert!(m.contains(r#"outcome="recorded"} 1"#), "{m}");
    assert!(m.contains(r#"outcome="duplicate"} 1"#), "{m}");
}

/// In a body that verifies but does not parse: never in a log, a page or the database in clear.
const HELD_MARKER: &str = "Held-Marker-Jane-Roe";

#[tokio::test]
async fn a_verified_stripe_event_that_does_not_parse_is_held_for_staff_and_answered_200() {
    // Arrange
    let kit = Kit::new().await;
    let body = json!({"id": "evt_bad", "type": "invoice.paid",
        "data": {"object": {"id": "in_1", "customer_name": HELD_MARKER}}})
    .to_string();

    // Act: delivered, then redelivered.
    let first = kit
        .send(stripe_request(&body, STRIPE_NEW, now_secs()))
        .await;
    let again = kit
        .send(stripe_request(&body, STRIPE_NEW, now_secs()))
        .await;

    // Assert: answered 200 only because it is stored, once, sealed, and shown to staff.
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(again.status(), StatusCode::OK);
    let held = kit.store.quarantined_deliveries().await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].provider, "stripe");
    let kept = kit
        .store
        .quarantined_delivery_body(held[0].id)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some(body.as_bytes()), "kept as received");
    let (session, _) = kit.login("alice", crate::testkit::ALICE_PASSWORD).await;
    let page = body_text(
        kit.send(crate::testkit::with_cookie(get("/staff"), &session))
            .await,
    )
    .await;
    assert!(page.contains("stripe delivery #"), "{page}");
    assert!(!page.contains(HELD_MARKER));
    let metrics = metrics_text(&kit).await;
    assert!(
        metrics.contains(r#"chairside_quarantined{kind="delivery"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stripe_body_that_does_not_parse_with_a_bad_signature_is_still_rejected_and_not_held() {
    // Arrange
    let kit = Kit::new().await;
    let body = r#"{"id": "evt_bad", "#;
    // Act
    let res = kit
        .send(stripe_request(body, "whsec_not_ours", now_secs()))
        .await;
    // Assert
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(kit.store.quarantined_deliveries().await.unwrap().is_empty());
}

#[tokio::test]
async fn verified_sunbit_and_nexhealth_bodies_that_do_not_parse_are_held_and_answered_200() {
    // Arrange
    let kit = Kit::new().await;
    let body = format!(r#"{{"eventType": 42, "note": "{HELD_MARKER}""#);
    // Act
    let sunbit = kit
        .send(sunbit_request(&body, SUNBIT_SECRET, now_secs()))
        .await;
    let nexhealth = kit.send(nexhealth_request(&body, NEXHEALTH_SECRET)).await;
    // Assert
    assert_eq!(sunbit.status(), StatusCode::OK);
    assert_eq!(nexhealth.status(), StatusCode::OK);
    let providers: Vec<String> = kit
        .store
        .quarantined_deliveries()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.provider)
        .collect();
    assert_eq!(providers, ["sunbit", "nexhealth"]);
}

#[tokio::test]
async fn a_stripe_event_for_an_unknown_workflow_is_recorded_without_an_inbox_event() {
    let kit = Kit::new().await;
    let ghost = WorkflowId::new("wf_ffffffffffffffffffffffff");
    let res = kit
        .send(stripe_request(
            &invoice_paid("evt_ghost", &ghost),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(kit.inbox(&ghost).await.is_empty());
}

fn parse(body: &serde_json::Value) -> stripe_schedule::Event {
    stripe_schedule::Event::parse(body.to_string().as_bytes()).unwrap()
}

const WF: &str = "wf_0123456789abcdef01234567";

#[test]
fn checkout_and_payment_intent_events_of_one_payment_map_to_the_same_stripe_id() {
    // Arrange
    let session = parse(&json!({
        "id": "evt_cs", "type": "checkout.session.completed",
        "data": {"object": {
            "id": "cs_test_1", "object": "checkout.session", "payment_status": "paid",
            "status": "complete", "payment_intent": "pi_test_1", "amount_total": 16_000,
            "currency": "usd", "metadata": {"chairside_workflow": WF}
        }}
    }));
    let intent = parse(&json!({
        "id": "evt_pi", "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": "pi_test_1", "object": "payment_intent", "status": "succeeded",
            "amount": 16_000, "currency": "usd", "metadata": {"chairside_workflow": WF}
        }}
    }));
    // Act
    let a = stripe_events(&session.data);
    let b = stripe_events(&intent.data);
    // Assert
    let expected = vec![(
        WorkflowId::new(WF),
        Event::Payment(PaymentFact::Paid {
            stripe_id: "pi_test_1".into(),
            amount: Money::usd(16_000),
        }),
    )];
    assert_eq!(a[0], expected[0], "the money, keyed by the PaymentIntent");
    assert_eq!(
        a[1],
        (
            WorkflowId::new(WF),
            Event::Payment(PaymentFact::CheckoutCompleted {
                session_id: "cs_test_1".into()
            })
        ),
        "and which session it paid (the deposit's state)"
    );
    assert_eq!(a.len(), 2);
    assert_eq!(b, expected);
}

#[test]
fn an_expired_checkout_session_maps_to_its_expiry() {
    let expired = parse(&json!({
        "id": "evt_x", "type": "checkout.session.expired",
        "data": {"object": {
            "id": "cs_x", "object": "checkout.session", "payment_status": "unpaid",
            "status": "expired", "amount_total": 16_000, "currency": "usd",
            "metadata": {"chairside_workflow": WF}
        }}
    }));
    assert_eq!(
        stripe_events(&expired.data),
        vec![(
            WorkflowId::new(WF),
            Event::Payment(PaymentFact::CheckoutExpired {
                session_id: "cs_x".into()
            })
        )]
    );
}

#[test]
fn an_unpaid_checkout_session_failures_and_a_completed_schedule_map_as_the_workflow_needs() {
    let unpaid = parse(&json!({
        "id": "evt_u", "type": "checkout.session.completed",
        "data": {"object": {
            "id": "cs_u", "payment_status": "unpaid", "amount_total": 100, "currency": "usd",
            "metadata": {"chairside_workflow": WF}
        }}
    }));
    assert!(stripe_events(&unpaid.data).is_empty());

    let failed = parse(&json!({
        "id": "evt_f", "type": "invoice.payment_failed",
        "data": {"object": {
            "id": "in_f", "currency": "usd", "attempt_count": 2,
            "next_payment_attempt": 1_780_100_000,
            "metadata": {"chairside_workflow": WF}
        }}
    }));
    assert_eq!(
        stripe_events(&failed.data),
        vec![(
            WorkflowId::new(WF),
            Event::Payment(PaymentFact::Failed {
                stripe_id: "in_f".into()
            })
        )]
    );

    let pi_failed = parse(&json!({
        "id": "evt_pf", "type": "payment_intent.payment_failed",
        "data": {"object": {
            "id": "pi_f", "status": "requires_payment_method", "amount": 100, "currency": "usd",
            "metadata": {"chairside_workflow": WF}
        }}
    }));
    assert_eq!(
        stripe_events(&pi_failed.data),
        vec![(
            WorkflowId::new(WF),
            Event::Payment(PaymentFact::Failed {
                stripe_id: "pi_f".into()
            })
        )]
    );

    let completed = parse(&json!({
        "id": "evt_s", "type": "subscription_schedule.completed",
        "data": {"object": {
            "id": "sub_sched_1", "customer": "cus_1", "status": "completed",
            "phases": [], "metadata": {"chairside_workflow": WF}
        }}
    }));
    assert_eq!(
        stripe_events(&completed.data),
        vec![(
            WorkflowId::new(WF),
            Event::Payment(PaymentFact::ScheduleCompleted)
        )]
    );

    let foreign = parse(&json!({
        "id": "evt_x", "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": "pi_x", "status": "succeeded", "amount": 100, "currency": "usd",
            "metadata": {"chairside_workflow": "not-a-workflow"}
        }}
    }));
    assert!(stripe_events(&foreign.data).is_empty());
}

#[test]
fn references_split_at_the_first_dash_into_workflow_and_lender() {
    // One reference per attempt: the sequence number between the workflow and the lender.
    assert_eq!(
        split_reference(&format!("{WF}-12-sunbit")),
        Some((WorkflowId::new(WF), sunbit()))
    );
    assert_eq!(
        split_reference(&format!("{WF}-3-acme-lending")),
        Some((WorkflowId::new(WF), LenderId::new("acme-lending")))
    );
    // Older references without an attempt still parse.
    assert_eq!(
        split_reference(&format!("{WF}-sunbit")),
        Some((WorkflowId::new(WF), sunbit()))
    );
    assert_eq!(
        split_reference(&format!("{WF}-sunbit-west")),
        Some((WorkflowId::new(WF), LenderId::new("sunbit-west")))
    );
    assert_eq!(split_reference(WF), None);
    assert_eq!(split_reference(&format!("{WF}-")), None);
    assert_eq!(split_reference("wf_nothex-sunbit"), None);
}

fn sunbit_request(body: &str, secret: &str, t: i64) -> Request<Body> {
    sunbit_request_to("/webhooks/sunbit/smile", body, secret, t)
}

fn sunbit_request_to(path: &str, body: &str, secret: &str, t: i64) -> Request<Body> {
    let sig = sunbit_client::sign(&SecretString::from(secret), t, body.as_bytes());
    Request::post(path)
        .header("content-type", "application/json")
        .header(sunbit_client::SIGNATURE_HEADER, sig)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn prequal(event: &str, wf: &WorkflowId, approved: &str) -> String {
    json!({
        "eventType": event,
        "payload": {
            "purchaseId": "purchase-1",
            "referral": format!("{wf}-7-sunbit"),
            "approvalAmount": approved,
            "purchaseAmountEntered": "640.00"
        }
    })
    .to_string()
}

#[tokio::test]
async fn a_sunbit_prequalification_becomes_a_lender_decision_judged_against_the_amount_asked() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    // Act
    let res = kit
        .send(sunbit_request(
            &prequal("PREQUAL_APPROVED", &wf, "500.00"),
            SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    // Assert: prequalified for $500 of the $640 asked: not financing yet, and the amount asked
    // is the workflow's, whatever the patient typed.
    assert_eq!(res.status(), StatusCode::OK);
    let inbox = kit.inbox(&wf).await;
    assert_eq!(inbox.len(), 1);
    match &inbox[0] {
        Event::LenderDecided {
            lender,
            decision: Decision::Prequalified {
                offer, requested, ..
            },
        } => {
            assert_eq!(lender, &sunbit());
            assert_eq!(offer.amount, Money::usd(50_000));
            assert_eq!(requested, &Money::usd(64_000));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_sunbit_event_for_an_earlier_session_of_the_same_workflow_decides_nothing() {
    // Arrange: the workflow's current Sunbit session is attempt 7; an event arrives for attempt
    // 4, a session that lapsed before the patient started again.
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let old = prequal("PREQUAL_APPROVED", &wf, "500.00").replace("-7-sunbit", "-4-sunbit");
    // Act
    let res = kit
        .send(sunbit_request(&old, SUNBIT_SECRET, now_secs()))
        .await;
    // Assert: recorded (a 2xx, so Sunbit does not redeliver) but nothing for the workflow.
    assert_eq!(res.status(), StatusCode::OK);
    assert!(kit.inbox(&wf).await.is_empty());
}

#[tokio::test]
async fn sunbit_rejects_bad_signatures_and_stale_timestamps_and_ignores_replays() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let body = prequal("PREQUAL_FAILED", &wf, "0");
    // Act
    let forged = kit
        .send(sunbit_request(&body, "not-the-secret", now_secs()))
        .await;
    let stale = kit
        .send(sunbit_request(&body, SUNBIT_SECRET, now_secs() - 3600))
        .await;
    let t = now_secs();
    let first = kit.send(sunbit_request(&body, SUNBIT_SECRET, t)).await;
    let replay = kit.send(sunbit_request(&body, SUNBIT_SECRET, t)).await;
    // Assert
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(replay.status(), StatusCode::OK);
    let inbox = kit.inbox(&wf).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(matches!(
        inbox[0],
        Event::LenderDecided {
            decision: Decision::Declined { .. },
            ..
        }
    ));
    let m = metrics_text(&kit).await;
    assert!(
        m.contains(r#"provider="sunbit",reason="signature"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"provider="sunbit",reason="stale"} 1"#), "{m}");
}

fn nexhealth_request(body: &str, secret: &str) -> Request<Body> {
    nexhealth_request_to("/webhooks/nexhealth/smile", body, secret)
}

fn nexhealth_request_to(path: &str, body: &str, secret: &str) -> Request<Body> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    Request::post(path)
        .header("content-type", "application/json")
        .header(
            nexhealth_client::SIGNATURE_HEADER,
            hex::encode(mac.finalize().into_bytes()),
        )
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn notified(kit: &Kit) -> bool {
    tokio::time::timeout(Duration::from_millis(50), kit.poll.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_verified_nexhealth_plan_update_wakes_the_poller_once() {
    // Arrange
    let kit = Kit::new().await;
    let body = r#"{"resource_type":"TreatmentPlan","event":"treatment_plan_updated","delivery_id":901,"data":{"treatment_plan":{"id":42}}}"#;
    // Act and assert
    let first = kit.send(nexhealth_request(body, NEXHEALTH_SECRET)).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(notified(&kit).await);
    let replay = kit.send(nexhealth_request(body, NEXHEALTH_SECRET)).await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert!(!notified(&kit).await, "a replay does not wake the poller");
}

#[tokio::test]
async fn a_nexhealth_delivery_with_a_bad_signature_is_rejected_and_wakes_nothing() {
    let kit = Kit::new().await;
    let body = r#"{"event":"treatment_plan_updated","data":{"id":42}}"#;
    let res = kit.send(nexhealth_request(body, "wrong-secret")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(!notified(&kit).await);
    let missing = kit
        .send(
            Request::post("/webhooks/nexhealth/smile")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
}

fn twilio_request(path_and_query: &str, params: &[(&str, &str)], token: &str) -> Request<Body> {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let url = format!("{}{}", PUBLIC.trim_end_matches('/'), path_and_query);
    let sig = messaging::compute_signature(&SecretString::from(token), &url, &owned);
    Request::post(path_and_query)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(messaging::SIGNATURE_HEADER, sig)
        .body(Body::from(crate::testkit::form(params)))
        .unwrap()
}

fn inbound(sid: &str, to: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MessageSid", sid.to_owned()),
        ("SmsSid", sid.to_owned()),
        ("AccountSid", "AC_test".to_owned()),
        ("From", PHONE.to_owned()),
        ("To", to.to_owned()),
        ("Body", body.to_owned()),
        ("SmsStatus", "received".to_owned()),
    ]
}

async fn text(kit: &Kit, sid: &str, to: &str, body: &str) -> Response {
    let params = inbound(sid, to, body);
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    kit.send(twilio_request("/webhooks/twilio", &pairs, TWILIO_TOKEN))
        .await
}

#[tokio::test]
async fn stop_opts_the_number_out_at_the_practice_it_texted_and_start_opts_it_back_in() {
    // Arrange
    let kit = Kit::new().await;
    // Act and assert
    let stop = text(&kit, "SM_stop", SMILE_SMS, "Stop.").await;
    assert_eq!(stop.status(), StatusCode::OK);
    assert!(body_text(stop).await.contains("<Response/>"));
    assert!(kit.store.sms_opted_out(&smile(), PHONE).await.unwrap());
    assert!(
        !kit.store
            .sms_opted_out(&crate::testkit::other(), PHONE)
            .await
            .unwrap()
    );

    let start = text(&kit, "SM_start", SMILE_SMS, "START").await;
    assert_eq!(start.status(), StatusCode::OK);
    assert!(!kit.store.sms_opted_out(&smile(), PHONE).await.unwrap());

    // A later STOP, then a late duplicate of the START: the duplicate must not re-subscribe.
    let stop_again = text(&kit, "SM_stop_2", SMILE_SMS, "UNSUBSCRIBE").await;
    assert_eq!(stop_again.status(), StatusCode::OK);
    let replayed_start = text(&kit, "SM_start", SMILE_SMS, "START").await;
    assert_eq!(replayed_start.status(), StatusCode::OK);
    assert!(kit.store.sms_opted_out(&smile(), PHONE).await.unwrap());
}

#[tokio::test]
async fn a_free_text_refusal_opts_out_and_help_gets_the_practice_contact_line() {
    let kit = Kit::new().await;
    let refusal = text(&kit, "SM_r", OTHER_SMS, "please stop texting me").await;
    assert_eq!(refusal.status(), StatusCode::OK);
    assert!(
        kit.store
            .sms_opted_out(&crate::testkit::other(), PHONE)
            .await
            .unwrap()
    );

    let help = text(&kit, "SM_h", SMILE_SMS, "help").await;
    assert_eq!(help.status(), StatusCode::OK);
    assert!(
        help.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let twiml = body_text(help).await;
    assert!(twiml.contains("<Message>"), "{twiml}");
    assert!(twiml.contains("Smile Dental Test"), "{twiml}");
    assert!(twiml.contains("(555) 010-0100"), "{twiml}");
    assert!(!kit.store.sms_opted_out(&smile(), PHONE).await.unwrap());
}

#[tokio::test]
async fn a_twilio_request_with_a_bad_signature_gets_403_and_changes_nothing() {
    let kit = Kit::new().await;
    let params = inbound("SM_x", SMILE_SMS, "STOP");
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = kit
        .send(twilio_request("/webhooks/twilio", &pairs, "not-the-token"))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!kit.store.sms_opted_out(&smile(), PHONE).await.unwrap());
}

#[tokio::test]
async fn a_text_to_a_number_no_practice_owns_is_answered_and_ignored() {
    let kit = Kit::new().await;
    let res = text(&kit, "SM_n", "+15550109999", "STOP").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!kit.store.sms_opted_out(&smile(), PHONE).await.unwrap());
}

#[tokio::test]
async fn a_status_callback_naming_its_workflow_adds_one_audit_line() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let path = format!("/webhooks/twilio?wf={wf}");
    let params = [
        ("MessageSid", "SM_status_1"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("AccountSid", "AC_test"),
    ];
    // Act
    let first = kit.send(twilio_request(&path, &params, TWILIO_TOKEN)).await;
    let replay = kit.send(twilio_request(&path, &params, TWILIO_TOKEN)).await;
    // Assert
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(replay.status(), StatusCode::OK);
    let lines: Vec<_> = kit
        .store
        .audit(&wf)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "sms_status")
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].detail, "sms SM_status_1 undelivered (error 30003)");
    assert_eq!(lines[0].actor, "webhook:twilio");
}

#[tokio::test]
async fn webhooks_without_configured_secrets_answer_503_so_senders_retry() {
    let mut config = crate::testkit::config();
    config.webhook_secrets = crate::WebhookSecrets::default();
    let kit = Kit::with_config(config).await;
    for path in [
        "/webhooks/stripe",
        "/webhooks/sunbit/smile",
        "/webhooks/nexhealth/smile",
        "/webhooks/twilio",
    ] {
        let res = kit
            .send(Request::post(path).body(Body::from("{}")).unwrap())
            .await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
}

#[tokio::test]
async fn practice_a_sunbit_secret_cannot_approve_practice_b_workflow() {
    // Arrange: practice B ("other") has a workflow waiting on Sunbit.
    let kit = Kit::new().await;
    let b_wf = kit
        .seed(kit.financing_state(other(), "tx-b", "pat-9"))
        .await;
    let body = prequal("PREQUAL_APPROVED", &b_wf, "640.00");
    // Act: A's secret, on B's URL, on A's URL, and on the un-scoped URL.
    let on_b_url = kit
        .send(sunbit_request_to(
            "/webhooks/sunbit/other",
            &body,
            SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    let on_a_url = kit
        .send(sunbit_request_to(
            "/webhooks/sunbit/smile",
            &body,
            SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    let unscoped = kit
        .send(sunbit_request_to(
            "/webhooks/sunbit",
            &body,
            SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    let unknown = kit
        .send(sunbit_request_to(
            "/webhooks/sunbit/nobody",
            &body,
            SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    // Assert: refused every way, nothing for B's workflow; B's own secret still works.
    assert_eq!(on_b_url.status(), StatusCode::BAD_REQUEST);
    assert_eq!(on_a_url.status(), StatusCode::FORBIDDEN);
    assert_eq!(unscoped.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(kit.inbox(&b_wf).await.is_empty());
    let own = kit
        .send(sunbit_request_to(
            "/webhooks/sunbit/other",
            &body,
            OTHER_SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(kit.inbox(&b_wf).await.len(), 1);
}

#[tokio::test]
async fn a_sunbit_event_for_an_application_with_another_lender_changes_nothing() {
    // Arrange: the workflow's current application is with CareCredit.
    let kit = Kit::new().await;
    let mut state = kit.financing_state(smile(), "tx-cc", "pat-1");
    if let Stage::Financing(c) = &mut state.stage {
        c.lender = LenderId::new("carecredit");
    }
    let wf = kit.seed(state).await;
    // Act: a validly signed Sunbit approval naming Sunbit, then one naming CareCredit.
    let as_sunbit = kit
        .send(sunbit_request(
            &prequal("PREQUAL_APPROVED", &wf, "640.00"),
            SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    let naming_carecredit = json!({
        "eventType": "PREQUAL_APPROVED",
        "payload": {
            "purchaseId": "purchase-2",
            "referral": format!("{wf}-carecredit"),
            "approvalAmount": "640.00",
            "purchaseAmountEntered": "640.00"
        }
    })
    .to_string();
    let as_carecredit = kit
        .send(sunbit_request(
            &naming_carecredit,
            SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    // Assert: both recorded (Sunbit must not retry them), neither reaches the workflow.
    assert_eq!(as_sunbit.status(), StatusCode::OK);
    assert_eq!(as_carecredit.status(), StatusCode::OK);
    assert!(kit.inbox(&wf).await.is_empty());
}

#[tokio::test]
async fn a_sunbit_redelivery_with_a_new_timestamp_and_signature_is_accepted_and_applied_once() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let body = prequal("PREQUAL_APPROVED", &wf, "640.00");
    // Act: the same event, signed again a minute later (Sunbit's retry).
    let first = kit
        .send(sunbit_request(&body, SUNBIT_SECRET, now_secs() - 60))
        .await;
    let redelivery = kit
        .send(sunbit_request(&body, SUNBIT_SECRET, now_secs()))
        .await;
    // Assert
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(redelivery.status(), StatusCode::OK);
    assert_eq!(kit.inbox(&wf).await.len(), 1);
    let m = metrics_text(&kit).await;
    assert!(
        m.contains(r#"chairside_webhooks_received_total{provider="sunbit",outcome="duplicate"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_nexhealth_redelivery_under_a_rolled_secret_is_accepted_and_applied_once() {
    // Arrange: the practice is rotating its NexHealth secret; both verify.
    let mut config = crate::testkit::config();
    config
        .webhook_secrets
        .nexhealth
        .get_mut(&smile())
        .unwrap()
        .push(SecretString::from("nexhealth-rolled-secret"));
    let kit = Kit::with_config(config).await;
    let body = r#"{"resource_type":"TreatmentPlan","event":"treatment_plan_updated","delivery_id":77,"data":{"treatment_plan":{"id":42}}}"#;
    // Act: the same delivery id, signed with the old secret, then with the new one.
    let first = kit.send(nexhealth_request(body, NEXHEALTH_SECRET)).await;
    let woke = notified(&kit).await;
    let again = kit
        .send(nexhealth_request(body, "nexhealth-rolled-secret"))
        .await;
    // Assert
    assert_eq!(first.status(), StatusCode::OK);
    assert!(woke);
    assert_eq!(again.status(), StatusCode::OK);
    assert!(!notified(&kit).await, "the redelivery is applied once");
    let m = metrics_text(&kit).await;
    assert!(
        m.contains(
            r#"chairside_webhooks_received_total{provider="nexhealth",outcome="duplicate"} 1"#
        ),
        "{m}"
    );
}

#[tokio::test]
async fn a_nexhealth_delivery_is_verified_with_its_practice_secret_only() {
    // Arrange
    let kit = Kit::new().await;
    let body = r#"{"resource_type":"TreatmentPlan","event":"treatment_plan_updated","delivery_id":5,"data":{"treatment_plan":{"id":42}}}"#;
    // Act: A's secret on B's URL; the un-scoped URL with two practices configured.
    let forged = kit
        .send(nexhealth_request_to(
            "/webhooks/nexhealth/other",
            body,
            NEXHEALTH_SECRET,
        ))
        .await;
    let unscoped = kit
        .send(nexhealth_request_to(
            "/webhooks/nexhealth",
            body,
            NEXHEALTH_SECRET,
        ))
        .await;
    // Assert
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert_eq!(unscoped.status(), StatusCode::NOT_FOUND);
    assert!(!notified(&kit).await);
    // B's own delivery with the same delivery id is B's, not a duplicate of anything of A's.
    let own = kit
        .send(nexhealth_request_to(
            "/webhooks/nexhealth/other",
            body,
            OTHER_NEXHEALTH_SECRET,
        ))
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    assert!(notified(&kit).await);
}

#[tokio::test]
async fn with_one_practice_the_unscoped_sunbit_url_still_serves_it() {
    // Arrange
    let mut config = crate::testkit::config();
    config.practices.retain(|p| p.id == smile());
    config.staff.retain(|s| s.practice == smile());
    config.webhook_secrets.sunbit.remove(&other());
    let kit = Kit::with_config(config).await;
    let wf = kit.seed_workflow("tx-1").await;
    // Act
    let res = kit
        .send(sunbit_request_to(
            "/webhooks/sunbit",
            &prequal("PREQUAL_APPROVED", &wf, "640.00"),
            SUNBIT_SECRET,
            now_secs(),
        ))
        .await;
    // Assert
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(kit.inbox(&wf).await.len(), 1);
}

#[tokio::test]
async fn a_stripe_event_naming_a_workflow_whose_stripe_objects_differ_changes_nothing() {
    // Arrange: the workflow's customer is another one than the invoice bills.
    let kit = Kit::new().await;
    let mut state = kit.financing_state(smile(), "tx-1", "pat-1");
    state.stripe.customer_id = Some("cus_someone_else".into());
    let wf = kit.seed(state).await;
    let no_customer = kit.seed_workflow("tx-2").await;
    // Act: validly signed invoices whose metadata names each workflow.
    let res = kit
        .send(stripe_request(
            &invoice_paid("evt_forged_meta", &wf),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;
    let res2 = kit
        .send(stripe_request(
            &invoice_paid("evt_forged_meta_2", &no_customer),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;
    // Assert: recorded (so Stripe stops), nothing reaches either workflow.
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res2.status(), StatusCode::OK);
    assert!(kit.inbox(&wf).await.is_empty());
    assert!(kit.inbox(&no_customer).await.is_empty());
}

#[test]
fn stripe_objects_match_the_workflow_by_customer_session_or_schedule() {
    let stored = StripeRecord {
        customer_id: Some("cus_1".into()),
        checkout_session_id: Some("cs_1".into()),
        schedule_id: Some("sub_sched_1".into()),
        ..StripeRecord::default()
    };
    let session = |id: &str| {
        parse(&json!({
            "id": "evt", "type": "checkout.session.completed",
            "data": {"object": {"id": id, "payment_status": "paid", "amount_total": 1,
                "currency": "usd", "metadata": {"chairside_workflow": WF}}}
        }))
    };
    let schedule = |id: &str| {
        parse(&json!({
            "id": "evt", "type": "subscription_schedule.completed",
            "data": {"object": {"id": id, "customer": "cus_1", "status": "completed",
                "phases": [], "metadata": {"chairside_workflow": WF}}}
        }))
    };
    assert!(stripe_object_matches(&session("cs_1").data, &stored));
    assert!(!stripe_object_matches(&session("cs_2").data, &stored));
    assert!(stripe_object_matches(
        &schedule("sub_sched_1").data,
        &stored
    ));
    assert!(!stripe_object_matches(
        &schedule("sub_sched_2").data,
        &stored
    ));
    assert!(!stripe_object_matches(
        &session("cs_1").data,
        &StripeRecord::default()
    ));
}

fn stripe_event(event_id: &str, kind: &str, object: serde_json::Value) -> String {
    let mut event = json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "api_version": "2026-10-28.endive",
        "created": 1_780_000_000,
        "livemode": false,
        "data": {}
    });
    event["data"]["object"] = object;
    event.to_string()
}

#[tokio::test]
async fn a_refunded_charge_of_our_customer_becomes_a_refund_fact_with_the_cumulative_amount() {
    // Arrange
    let kit = Kit::new().await;
    let wf = seed_billed_workflow(&kit, "tx-1").await;
    let charge = json!({
        "id": "ch_test_1", "object": "charge", "amount": 20_000, "amount_refunded": 5_000,
        "currency": "usd", "refunded": false, "customer": "cus_test_1",
        "payment_intent": "pi_test_1", "metadata": {"chairside_workflow": wf.as_str()}
    });
    let mut foreign = charge.clone();
    foreign["customer"] = json!("cus_someone_else");

    // Act
    let ours = kit
        .send(stripe_request(
            &stripe_event("evt_r1", "charge.refunded", charge),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;
    let theirs = kit
        .send(stripe_request(
            &stripe_event("evt_r2", "charge.refunded", foreign),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;

    // Assert: only the charge of the workflow's own customer counts.
    assert_eq!(ours.status(), StatusCode::OK);
    assert_eq!(theirs.status(), StatusCode::OK);
    assert_eq!(
        kit.inbox(&wf).await,
        vec![Event::Payment(PaymentFact::Refunded {
            stripe_id: "ch_test_1".into(),
            amount: Money::usd(5_000),
            refunds: None,
        })]
    );
}

#[tokio::test]
async fn a_canceled_or_aborted_schedule_of_the_workflow_becomes_a_schedule_ended_fact() {
    // Arrange
    let kit = Kit::new().await;
    let mut state = kit.financing_state(smile(), "tx-1", "pat-1");
    state.stripe.customer_id = Some("cus_test_1".into());
    state.stripe.schedule_id = Some("sub_sched_test_1".into());
    let wf = kit.seed(state).await;
    let schedule = |status: &str| {
        json!({
            "id": "sub_sched_test_1", "object": "subscription_schedule", "customer": "cus_test_1",
            "status": status, "phases": [], "metadata": {"chairside_workflow": wf.as_str()}
        })
    };

    // Act
    for (id, kind, status) in [
        ("evt_s1", "subscription_schedule.canceled", "canceled"),
        ("evt_s2", "subscription_schedule.aborted", "canceled"),
    ] {
        let res = kit
            .send(stripe_request(
                &stripe_event(id, kind, schedule(status)),
                STRIPE_NEW,
                now_secs(),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    // Assert
    assert_eq!(
        kit.inbox(&wf).await,
        vec![
            Event::Payment(PaymentFact::ScheduleEnded {
                schedule_id: "sub_sched_test_1".into(),
                aborted: false,
            }),
            Event::Payment(PaymentFact::ScheduleEnded {
                schedule_id: "sub_sched_test_1".into(),
                aborted: true,
            }),
        ]
    );
}

#[tokio::test]
async fn a_failed_invoice_without_a_next_attempt_is_a_final_failure() {
    // Arrange
    let kit = Kit::new().await;
    let wf = seed_billed_workflow(&kit, "tx-1").await;
    let mut retrying: serde_json::Value =
        serde_json::from_str(&invoice_paid("evt_f1", &wf)).unwrap();
    retrying["type"] = json!("invoice.payment_failed");
    retrying["data"]["object"]["id"] = json!("in_retry");
    retrying["data"]["object"]["next_payment_attempt"] = json!(1_780_100_000);
    let mut last = retrying.clone();
    last["id"] = json!("evt_f2");
    last["data"]["object"]["id"] = json!("in_last");
    last["data"]["object"]["next_payment_attempt"] = json!(null);

    // Act
    for body in [retrying, last] {
        let res = kit
            .send(stripe_request(&body.to_string(), STRIPE_NEW, now_secs()))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    // Assert
    assert_eq!(
        kit.inbox(&wf).await,
        vec![
            Event::Payment(PaymentFact::Failed {
                stripe_id: "in_retry".into()
            }),
            Event::Payment(PaymentFact::FinalFailure {
                stripe_id: "in_last".into()
            }),
        ]
    );
}

#[test]
fn a_completed_setup_session_maps_to_the_card_saved_with_its_setup_intent() {
    // Arrange: Checkout in setup mode completes with nothing paid.
    let setup = parse(&json!({
        "id": "evt_s", "type": "checkout.session.completed",
        "data": {"object": {
            "id": "cs_setup_1", "object": "checkout.session", "mode": "setup",
            "payment_status": "no_payment_required", "status": "complete",
            "setup_intent": "seti_1", "amount_total": null, "currency": "usd",
            "customer": "cus_1", "metadata": {"chairside_workflow": WF}
        }}
    }));
    // Act
    let events = stripe_events(&setup.data);
    // Assert
    assert_eq!(
        events,
        vec![(
            WorkflowId::new(WF),
            Event::Payment(PaymentFact::CardSetupCompleted {
                session_id: "cs_setup_1".into(),
                setup_intent: "seti_1".into(),
            })
        )]
    );
    // Only the workflow's own setup session is its object.
    let stored = StripeRecord {
        card_setup_session_id: Some("cs_setup_1".into()),
        ..StripeRecord::default()
    };
    assert!(stripe_object_matches(&setup.data, &stored));
    let other = StripeRecord {
        card_setup_session_id: Some("cs_setup_2".into()),
        ..StripeRecord::default()
    };
    assert!(!stripe_object_matches(&setup.data, &other));
}

fn dispute_created(event_id: &str, payment_intent: &str) -> String {
    // As Stripe sends it: the charge's metadata is not copied onto the dispute.
    json!({
        "id": event_id, "object": "event", "type": "charge.dispute.created",
        "api_version": "2026-10-28.endive", "created": 1_780_000_000, "livemode": false,
        "data": {"object": {
            "id": "dp_test_1", "object": "dispute", "amount": 15_500, "currency": "usd",
            "charge": "ch_test_1", "payment_intent": payment_intent,
            "reason": "product_not_received", "status": "needs_response", "metadata": {}
        }}
    })
    .to_string()
}

#[tokio::test]
async fn a_dispute_without_metadata_finds_the_workflow_that_recorded_its_payment() {
    // Arrange: a workflow whose deposit (pi_test_dep) it noted, and another with other payments.
    let kit = Kit::new().await;
    let mut state = kit.financing_state(smile(), "tx-d1", "pat-1");
    state.stripe.customer_id = Some("cus_test_1".into());
    state.stripe.payments_noted = vec!["pi_test_dep".into()];
    let wf = kit.seed(state).await;
    let mut other = kit.financing_state(smile(), "tx-d2", "pat-2");
    other.stripe.customer_id = Some("cus_test_2".into());
    other.stripe.payments_noted = vec!["pi_test_other".into()];
    let other = kit.seed(other).await;
    // Act
    let res = kit
        .send(stripe_request(
            &dispute_created("evt_dp_1", "pi_test_dep"),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;
    // Assert: the note and task carry the amount and Stripe's reason.
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        kit.inbox(&wf).await,
        vec![Event::Payment(PaymentFact::Disputed {
            stripe_id: "dp_test_1".into(),
            amount: Money::usd(15_500),
            reason: Some("product_not_received".into()),
        })]
    );
    assert!(kit.inbox(&other).await.is_empty());
}

#[tokio::test]
async fn a_dispute_of_a_payment_no_workflow_recorded_is_recorded_without_an_inbox_event() {
    let kit = Kit::new().await;
    let mut state = kit.financing_state(smile(), "tx-d3", "pat-1");
    state.stripe.customer_id = Some("cus_test_1".into());
    state.stripe.payments_noted = vec!["pi_test_dep".into()];
    let wf = kit.seed(state).await;
    let res = kit
        .send(stripe_request(
            &dispute_created("evt_dp_2", "pi_test_elsewhere"),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(kit.inbox(&wf).await.is_empty());
}

/// `invoice.paid` for an installment, listing the PaymentIntent that paid it.
fn installment_paid(event_id: &str, wf: &WorkflowId, invoice: &str, pi: &str) -> String {
    let mut event: serde_json::Value = serde_json::from_str(&invoice_paid(event_id, wf)).unwrap();
    event["data"]["object"]["id"] = json!(invoice);
    event["data"]["object"]["payments"] = json!({
        "object": "list", "has_more": false, "url": "/v1/invoice_payments",
        "data": [{
            "object": "invoice_payment", "invoice": invoice, "is_default": true,
            "amount_paid": 10_000, "amount_requested": 10_000, "status": "paid",
            "payment": {"type": "payment_intent", "payment_intent": pi}
        }]
    });
    event.to_string()
}

#[tokio::test]
async fn a_dispute_of_an_installment_finds_its_workflow_by_the_invoice_payment() {
    // Arrange: the installment in_inst_1 of a workflow is paid by pi_inst_1: the webhook maps it
    // to the payment and to the PaymentIntent that paid it. Another workflow is billed too.
    let kit = Kit::new().await;
    let wf = seed_billed_workflow(&kit, "tx-i1").await;
    let mut other = kit.financing_state(smile(), "tx-i2", "pat-2");
    other.stripe.customer_id = Some("cus_test_2".into());
    let other = kit.seed(other).await;
    let paid = kit
        .send(stripe_request(
            &installment_paid("evt_ip_1", &wf, "in_inst_1", "pi_inst_1"),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(
        kit.inbox(&wf).await,
        vec![
            Event::Payment(PaymentFact::Paid {
                stripe_id: "in_inst_1".into(),
                amount: Money::usd(10_000),
            }),
            Event::Payment(PaymentFact::InvoicePaymentIntent {
                invoice_id: "in_inst_1".into(),
                payment_intent: "pi_inst_1".into(),
            }),
        ]
    );
    // The machine records the PaymentIntent (tests/reversals.rs); here a workflow holding it,
    // as the runner leaves it after applying the event above.
    let mut applied = kit.financing_state(smile(), "tx-i3", "pat-3");
    applied.stripe.customer_id = Some("cus_test_3".into());
    applied.stripe.payments_noted = vec!["in_inst_1".into()];
    applied.stripe.invoice_payment_intents = vec!["pi_inst_1".into()];
    let disputed = kit.seed(applied).await;

    // Act: the cardholder disputes that installment's charge (no metadata on the dispute).
    let res = kit
        .send(stripe_request(
            &dispute_created("evt_dp_inst", "pi_inst_1"),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;

    // Assert
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        kit.inbox(&disputed).await,
        vec![Event::Payment(PaymentFact::Disputed {
            stripe_id: "dp_test_1".into(),
            amount: Money::usd(15_500),
            reason: Some("product_not_received".into()),
        })]
    );
    assert!(kit.inbox(&other).await.is_empty());
}

#[tokio::test]
async fn an_installment_marked_uncollectible_is_a_final_failure() {
    // Arrange
    let kit = Kit::new().await;
    let wf = seed_billed_workflow(&kit, "tx-u1").await;
    let mut event: serde_json::Value = serde_json::from_str(&invoice_paid("evt_u1", &wf)).unwrap();
    event["type"] = json!("invoice.marked_uncollectible");
    event["data"]["object"]["id"] = json!("in_gone");
    event["data"]["object"]["status"] = json!("uncollectible");
    event["data"]["object"]["amount_paid"] = json!(0);
    let mut foreign = event.clone();
    foreign["id"] = json!("evt_u2");
    foreign["data"]["object"]["customer"] = json!("cus_someone_else");

    // Act
    for body in [event, foreign] {
        let res = kit
            .send(stripe_request(&body.to_string(), STRIPE_NEW, now_secs()))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    // Assert: one final failure, for the workflow's own customer's invoice only.
    assert_eq!(
        kit.inbox(&wf).await,
        vec![Event::Payment(PaymentFact::FinalFailure {
            stripe_id: "in_gone".into()
        })]
    );
}

#[tokio::test]
async fn a_refund_of_an_installment_charge_without_metadata_finds_its_workflow() {
    // Arrange: Stripe copies no workflow metadata onto a charge an invoice made.
    let kit = Kit::new().await;
    let mut state = kit.financing_state(smile(), "tx-ir", "pat-1");
    state.stripe.customer_id = Some("cus_test_1".into());
    state.stripe.invoice_payment_intents = vec!["pi_inst_9".into()];
    let wf = kit.seed(state).await;
    let charge = json!({
        "id": "ch_inst_9", "object": "charge", "amount": 10_000, "amount_refunded": 2_500,
        "currency": "usd", "refunded": false, "customer": "cus_test_1",
        "payment_intent": "pi_inst_9", "metadata": {}
    });

    // Act
    let res = kit
        .send(stripe_request(
            &stripe_event("evt_ir", "charge.refunded", charge),
            STRIPE_NEW,
            now_secs(),
        ))
        .await;

    // Assert
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        kit.inbox(&wf).await,
        vec![Event::Payment(PaymentFact::Refunded {
            stripe_id: "ch_inst_9".into(),
            amount: Money::usd(2_500),
            refunds: None,
        })]
    );
}

#[test]
fn an_installment_the_saved_card_did_not_pay_carries_its_hosted_page_before_the_failure() {
    // Arrange: a charge_automatically invoice Stripe will retry.
    let failed = parse(&json!({
        "id": "evt_cf", "type": "invoice.payment_failed",
        "data": {"object": {
            "id": "in_c", "currency": "usd", "attempt_count": 1, "amount_due": 16_666,
            "collection_method": "charge_automatically",
            "hosted_invoice_url": "https://invoice.stripe.test/i/in_c",
            "next_payment_attempt": 1_780_100_000,
            "metadata": {"chairside_workflow": WF}
        }}
    }));
    // An emailed invoice: Stripe's own email carries its link.
    let emailed = parse(&json!({
        "id": "evt_ef", "type": "invoice.payment_failed",
        "data": {"object": {
            "id": "in_e", "currency": "usd", "attempt_count": 1, "amount_due": 16_666,
            "collection_method": "send_invoice",
            "hosted_invoice_url": "https://invoice.stripe.test/i/in_e",
            "next_payment_attempt": 1_780_100_000,
            "metadata": {"chairside_workflow": WF}
        }}
    }));

    // Act
    let card = stripe_events(&failed.data);
    let email = stripe_events(&emailed.data);

    // Assert
    assert_eq!(
        card,
        vec![
            (
                WorkflowId::new(WF),
                Event::Payment(PaymentFact::InstallmentUnpaid {
                    invoice_id: "in_c".into(),
                    url: "https://invoice.stripe.test/i/in_c".into(),
                    amount: Money::usd(16_666),
                })
            ),
            (
                WorkflowId::new(WF),
                Event::Payment(PaymentFact::Failed {
                    stripe_id: "in_c".into()
                })
            ),
        ]
    );
    assert_eq!(
        email,
        vec![(
            WorkflowId::new(WF),
            Event::Payment(PaymentFact::Failed {
                stripe_id: "in_e".into()
            })
        )]
    );
}
// The same tests on PostgreSQL (when CHAIRSIDE_TEST_POSTGRES_URL is set: scripts/with-postgres.sh).
crate::testkit::also_on_postgres!(
    a_stripe_invoice_paid_for_a_seeded_workflow_enqueues_a_payment,
    a_live_stripe_event_at_a_test_mode_install_is_refused_and_counted,
    a_stripe_delivery_signed_with_the_rolled_secret_is_still_accepted,
    a_stripe_delivery_with_a_bad_signature_is_rejected_and_counted,
    a_stale_stripe_timestamp_is_rejected_even_with_a_valid_signature,
    a_replayed_stripe_event_id_is_answered_200_without_a_second_inbox_event,
    an_oversized_webhook_body_gets_413,
    an_unknown_stripe_event_type_is_recorded_and_answered_200,
    a_verified_stripe_event_that_does_not_parse_is_held_for_staff_and_answered_200,
    a_stripe_body_that_does_not_parse_with_a_bad_signature_is_still_rejected_and_not_held,
    verified_sunbit_and_nexhealth_bodies_that_do_not_parse_are_held_and_answered_200,
    a_stripe_event_for_an_unknown_workflow_is_recorded_without_an_inbox_event,
    a_sunbit_prequalification_becomes_a_lender_decision_judged_against_the_amount_asked,
    a_sunbit_event_for_an_earlier_session_of_the_same_workflow_decides_nothing,
    sunbit_rejects_bad_signatures_and_stale_timestamps_and_ignores_replays,
    a_verified_nexhealth_plan_update_wakes_the_poller_once,
    a_nexhealth_delivery_with_a_bad_signature_is_rejected_and_wakes_nothing,
    stop_opts_the_number_out_at_the_practice_it_texted_and_start_opts_it_back_in,
    a_free_text_refusal_opts_out_and_help_gets_the_practice_contact_line,
    a_twilio_request_with_a_bad_signature_gets_403_and_changes_nothing,
    a_text_to_a_number_no_practice_owns_is_answered_and_ignored,
    a_status_callback_naming_its_workflow_adds_one_audit_line,
    webhooks_without_configured_secrets_answer_503_so_senders_retry,
    practice_a_sunbit_secret_cannot_approve_practice_b_workflow,
    a_sunbit_event_for_an_application_with_another_lender_changes_nothing,
    a_sunbit_redelivery_with_a_new_timestamp_and_signature_is_accepted_and_applied_once,
    a_nexhealth_redelivery_under_a_rolled_secret_is_accepted_and_applied_once,
    a_nexhealth_delivery_is_verified_with_its_practice_secret_only,
    with_one_practice_the_unscoped_sunbit_url_still_serves_it,
    a_stripe_event_naming_a_workflow_whose_stripe_objects_differ_changes_nothing,
    a_refunded_charge_of_our_customer_becomes_a_refund_fact_with_the_cumulative_amount,
    a_canceled_or_aborted_schedule_of_the_workflow_becomes_a_schedule_ended_fact,
    a_failed_invoice_without_a_next_attempt_is_a_final_failure,
    a_dispute_without_metadata_finds_the_workflow_that_recorded_its_payment,
    a_dispute_of_a_payment_no_workflow_recorded_is_recorded_without_an_inbox_event,
    a_dispute_of_an_installment_finds_its_workflow_by_the_invoice_payment,
    an_installment_marked_uncollectible_is_a_final_failure,
    a_refund_of_an_installment_charge_without_metadata_finds_its_workflow,
);
