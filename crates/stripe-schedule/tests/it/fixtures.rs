//! Stripe's own example objects (fixtures3.json) decode into our types, directly and inside
//! events.

use serde_json::json;
use stripe_schedule::{
    CheckoutPaymentStatus, CheckoutStatus, Event, EventData, InvoiceParentType, InvoiceStatus,
    PaymentIntentStatus, ScheduleStatus, SubscriptionStatus,
};

use crate::helpers::fixture;

fn event_of(event_type: &str, object: serde_json::Value) -> Vec<u8> {
    let mut e = fixture("event");
    e["type"] = json!(event_type);
    e["data"]["object"] = object;
    e["api_version"] = json!("2026-10-28.endive");
    serde_json::to_vec(&e).unwrap()
}

#[test]
fn the_event_fixture_decodes_as_other_with_its_object_id() {
    let e = Event::parse(&serde_json::to_vec(&fixture("event")).unwrap()).unwrap();
    assert_eq!(e.id.as_str(), "evt_1Pgc76B7WZ01zgkWwyRHS12y");
    assert_eq!(e.event_type(), "plan.created");
    assert_eq!(e.api_version, None);
    assert_eq!(
        e.data,
        EventData::Other {
            event_type: "plan.created".into(),
            object_id: Some("price_1PgafmB7WZ01zgkW6dKueIc5".into()),
        }
    );
}

#[test]
fn the_checkout_session_fixture_decodes_in_every_checkout_event() {
    for t in [
        "checkout.session.completed",
        "checkout.session.expired",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
    ] {
        let e = Event::parse(&event_of(t, fixture("checkout.session"))).unwrap();
        assert_eq!(e.event_type(), t);
        let s = match e.data {
            EventData::CheckoutSessionCompleted(s)
            | EventData::CheckoutSessionExpired(s)
            | EventData::CheckoutSessionAsyncPaymentSucceeded(s)
            | EventData::CheckoutSessionAsyncPaymentFailed(s) => s,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(s.status, Some(CheckoutStatus::Open));
        assert_eq!(s.payment_status, CheckoutPaymentStatus::Unpaid);
        assert_eq!(s.customer, None);
        assert!(s.url.is_some());
    }
}

#[test]
fn the_invoice_fixture_decodes_in_invoice_events_with_its_parent() {
    let e = Event::parse(&event_of("invoice.payment_failed", fixture("invoice"))).unwrap();
    let EventData::InvoicePaymentFailed(inv) = e.data else {
        panic!("{:?}", e.data)
    };
    assert_eq!(inv.id.as_str(), "in_1Pgc6tB7WZ01zgkWu9fdqL6I");
    assert_eq!(inv.status, Some(InvoiceStatus::Draft));
    assert_eq!(inv.amount_due, 1000);
    assert!(inv.next_payment_attempt.is_some());
    let parent = inv.parent.as_ref().unwrap();
    assert_eq!(parent.parent_type, InvoiceParentType::QuoteDetails);
    // A quote's invoice has no subscription, even though the fixture fills every branch.
    assert_eq!(inv.subscription(), None);

    let mut sub_invoice = fixture("invoice");
    sub_invoice["status"] = json!("paid");
    sub_invoice["parent"] = json!({"type": "subscription_details", "quote_details": null,
        "subscription_details": {"subscription": "sub_1", "metadata": {"chairside_workflow": "wf-42"}}});
    let e = Event::parse(&event_of("invoice.paid", sub_invoice)).unwrap();
    let EventData::InvoicePaid(inv) = e.data else {
        panic!("{:?}", e.data)
    };
    assert_eq!(inv.status, Some(InvoiceStatus::Paid));
    assert_eq!(inv.subscription().map(|s| s.as_str()), Some("sub_1"));
    assert_eq!(
        inv.subscription_metadata()
            .and_then(|m| m.get("chairside_workflow")),
        Some("wf-42")
    );
}

#[test]
fn the_payment_intent_fixture_decodes_in_payment_intent_events() {
    for t in ["payment_intent.succeeded", "payment_intent.payment_failed"] {
        let e = Event::parse(&event_of(t, fixture("payment_intent"))).unwrap();
        let pi = match e.data {
            EventData::PaymentIntentSucceeded(pi) | EventData::PaymentIntentPaymentFailed(pi) => pi,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(pi.status, PaymentIntentStatus::RequiresPaymentMethod);
        assert_eq!(pi.currency, "usd");
    }
}

#[test]
fn the_subscription_schedule_fixture_decodes_in_schedule_events() {
    for t in [
        "subscription_schedule.completed",
        "subscription_schedule.canceled",
        "subscription_schedule.released",
        "subscription_schedule.aborted",
    ] {
        let e = Event::parse(&event_of(t, fixture("subscription_schedule"))).unwrap();
        let s = match e.data {
            EventData::SubscriptionScheduleCompleted(s)
            | EventData::SubscriptionScheduleCanceled(s)
            | EventData::SubscriptionScheduleReleased(s)
            | EventData::SubscriptionScheduleAborted(s) => s,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(s.status, ScheduleStatus::NotStarted);
        assert_eq!(s.customer.as_str(), "cus_QXg1o8vcGmoR32");
        assert!(s.current_phase.is_some());
    }
}

#[test]
fn the_subscription_fixture_decodes_in_customer_subscription_deleted() {
    let e = Event::parse(&event_of(
        "customer.subscription.deleted",
        fixture("subscription"),
    ))
    .unwrap();
    let EventData::CustomerSubscriptionDeleted(sub) = e.data else {
        panic!("{:?}", e.data)
    };
    assert_eq!(sub.id.as_str(), "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.schedule, None);
}

#[test]
fn the_customer_and_product_fixtures_decode() {
    let c: stripe_schedule::Customer = serde_json::from_value(fixture("customer")).unwrap();
    assert_eq!(c.id.as_str(), "cus_QXg1o8vcGmoR32");
    assert!(c.metadata.is_empty());
    let p: stripe_schedule::Product = serde_json::from_value(fixture("product")).unwrap();
    assert_eq!(p.id.as_str(), "prod_QXg1hqf4jFNsqG");
}

#[test]
fn unknown_enum_values_in_known_objects_never_fail_decoding() {
    let mut s = fixture("subscription_schedule");
    s["status"] = json!("hibernating");
    s["end_behavior"] = json!("explode");
    let e = Event::parse(&event_of("subscription_schedule.canceled", s)).unwrap();
    let EventData::SubscriptionScheduleCanceled(s) = e.data else {
        panic!()
    };
    assert_eq!(s.status, ScheduleStatus::Unknown("hibernating".into()));
}

#[test]
fn a_handled_event_whose_object_lacks_an_id_is_a_decode_error_naming_the_path() {
    let mut inv = fixture("invoice");
    inv.as_object_mut().unwrap().remove("id");
    let err = Event::parse(&event_of("invoice.paid", inv)).unwrap_err();
    assert!(err.path.starts_with("data.object"), "{err}");
}

#[test]
fn customer_debug_never_shows_contact_fields() {
    let mut v = fixture("customer");
    v["email"] = json!("testy@example.test");
    v["name"] = json!("Testy McFixture");
    let c: stripe_schedule::Customer = serde_json::from_value(v).unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("testy") && !shown.contains("McFixture"),
        "{shown}"
    );
}

#[test]
fn the_charge_and_dispute_fixtures_decode_in_refund_and_dispute_events() {
    let charge = fixture("charge");
    let e = Event::parse(&event_of("charge.refunded", charge.clone())).unwrap();
    let EventData::ChargeRefunded(c) = e.data else {
        panic!("{:?}", e.data)
    };
    assert_eq!(c.id.as_str(), charge["id"].as_str().unwrap());
    assert_eq!(c.amount, charge["amount"].as_i64().unwrap());
    assert_eq!(
        c.amount_refunded,
        charge["amount_refunded"].as_i64().unwrap()
    );
    assert_eq!(
        c.refunded_money().map(|m| m.minor()),
        Some(c.amount_refunded)
    );

    let dispute = fixture("dispute");
    let e = Event::parse(&event_of("charge.dispute.created", dispute.clone())).unwrap();
    let EventData::ChargeDisputeCreated(d) = e.data else {
        panic!("{:?}", e.data)
    };
    assert_eq!(d.id.as_str(), dispute["id"].as_str().unwrap());
    assert_eq!(d.amount, dispute["amount"].as_i64().unwrap());
    assert_eq!(d.charge.as_str(), dispute["charge"].as_str().unwrap());
}
