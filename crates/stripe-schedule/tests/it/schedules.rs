use chrono::{TimeZone, Utc};
use financing_core::{Currency, ErrorKind, Money};
use serde_json::json;
use stripe_schedule::{
    BillingInterval, Collection, CustomerId, EndBehavior, Error, InstallmentPlan, Interval,
    InvalidInput, Metadata, PaymentMethodId, ProductId, ScheduleStatus, StartDate,
    SubscriptionScheduleId, WORKFLOW_KEY,
};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    StripeMock, assert_error_table, assert_times_out, body_pairs, call, fixture_with, form_is, key,
    stripe_request,
};

fn plan() -> InstallmentPlan {
    InstallmentPlan {
        customer: CustomerId::new("cus_1"),
        product: ProductId::new("chairside_practice_smile"),
        total: Money::usd(100_000),
        count: 3,
        every: BillingInterval::monthly(),
        start: StartDate::At(Utc.with_ymd_and_hms(2031, 1, 15, 17, 0, 0).unwrap()),
        collection: Collection::SendInvoice { days_until_due: 14 },
        metadata: Metadata::new().with(WORKFLOW_KEY, "wf-42"),
    }
}

fn schedule_json(status: &str) -> serde_json::Value {
    fixture_with(
        "subscription_schedule",
        json!({"id": "sub_sched_1", "customer": "cus_1", "status": status,
               "end_behavior": "cancel", "metadata": {"chairside_workflow": "wf-42"}}),
    )
}

#[tokio::test]
async fn create_installment_schedule_splits_an_uneven_total_into_two_duration_phases() {
    // Arrange
    let stripe = StripeMock::start().await;
    let start = Utc
        .with_ymd_and_hms(2031, 1, 15, 17, 0, 0)
        .unwrap()
        .timestamp()
        .to_string();
    stripe
        .mount(
            stripe_request("POST", "/v1/subscription_schedules", Some("wf-42:schedule"))
                .and(form_is(&[
                    ("customer", "cus_1"),
                    ("start_date", &start),
                    ("end_behavior", "cancel"),
                    ("default_settings[collection_method]", "send_invoice"),
                    ("default_settings[invoice_settings][days_until_due]", "14"),
                    ("phases[0][items][0][price_data][currency]", "usd"),
                    (
                        "phases[0][items][0][price_data][product]",
                        "chairside_practice_smile",
                    ),
                    ("phases[0][items][0][price_data][unit_amount]", "33334"),
                    (
                        "phases[0][items][0][price_data][recurring][interval]",
                        "month",
                    ),
                    (
                        "phases[0][items][0][price_data][recurring][interval_count]",
                        "1",
                    ),
                    ("phases[0][items][0][quantity]", "1"),
                    ("phases[0][duration][interval]", "month"),
                    ("phases[0][duration][interval_count]", "1"),
                    ("phases[0][proration_behavior]", "none"),
                    ("phases[0][metadata][chairside_workflow]", "wf-42"),
                    ("phases[1][items][0][price_data][currency]", "usd"),
                    (
                        "phases[1][items][0][price_data][product]",
                        "chairside_practice_smile",
                    ),
                    ("phases[1][items][0][price_data][unit_amount]", "33333"),
                    (
                        "phases[1][items][0][price_data][recurring][interval]",
                        "month",
                    ),
                    (
                        "phases[1][items][0][price_data][recurring][interval_count]",
                        "1",
                    ),
                    ("phases[1][items][0][quantity]", "1"),
                    ("phases[1][duration][interval]", "month"),
                    ("phases[1][duration][interval_count]", "2"),
                    ("phases[1][proration_behavior]", "none"),
                    ("phases[1][metadata][chairside_workflow]", "wf-42"),
                    ("metadata[chairside_workflow]", "wf-42"),
                ]))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(schedule_json("not_started")),
                )
                .expect(1),
        )
        .await;
    // Act
    let schedule = stripe
        .client()
        .create_installment_schedule(&plan(), &key("wf-42:schedule"))
        .await
        .unwrap();
    // Assert
    assert_eq!(schedule.id, SubscriptionScheduleId::new("sub_sched_1"));
    assert_eq!(schedule.status, ScheduleStatus::NotStarted);
    assert_eq!(schedule.end_behavior, Some(EndBehavior::Cancel));
    assert_eq!(schedule.metadata.get(WORKFLOW_KEY), Some("wf-42"));
    stripe.finish().await;
}

#[tokio::test]
async fn create_installment_schedule_charges_the_card_on_file_in_one_phase_when_even() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("POST", "/v1/subscription_schedules", Some("wf-7:schedule"))
                .and(form_is(&[
                    ("customer", "cus_1"),
                    ("start_date", "now"),
                    ("end_behavior", "cancel"),
                    (
                        "default_settings[collection_method]",
                        "charge_automatically",
                    ),
                    ("default_settings[default_payment_method]", "pm_card_1"),
                    ("phases[0][items][0][price_data][currency]", "usd"),
                    (
                        "phases[0][items][0][price_data][product]",
                        "chairside_practice_smile",
                    ),
                    ("phases[0][items][0][price_data][unit_amount]", "25000"),
                    (
                        "phases[0][items][0][price_data][recurring][interval]",
                        "week",
                    ),
                    (
                        "phases[0][items][0][price_data][recurring][interval_count]",
                        "2",
                    ),
                    ("phases[0][items][0][quantity]", "1"),
                    ("phases[0][duration][interval]", "week"),
                    ("phases[0][duration][interval_count]", "8"),
                    ("phases[0][proration_behavior]", "none"),
                ]))
                .respond_with(ResponseTemplate::new(200).set_body_json(schedule_json("active")))
                .expect(1),
        )
        .await;
    let p = InstallmentPlan {
        total: Money::usd(100_000),
        count: 4,
        every: BillingInterval::every(2, Interval::Week),
        start: StartDate::Now,
        collection: Collection::ChargeAutomatically {
            payment_method: Some(PaymentMethodId::new("pm_card_1")),
        },
        metadata: Metadata::new(),
        ..plan()
    };
    // Act
    let schedule = stripe
        .client()
        .create_installment_schedule(&p, &key("wf-7:schedule"))
        .await
        .unwrap();
    // Assert
    assert_eq!(schedule.status, ScheduleStatus::Active);
    let requests = stripe.finish().await;
    assert!(
        body_pairs(&requests[0])
            .iter()
            .all(|(k, _)| !k.contains("iterations"))
    );
}

#[tokio::test]
async fn create_installment_schedule_refuses_bad_plans_before_sending() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200))
                .expect(0),
        )
        .await;
    let cases: Vec<(InstallmentPlan, InvalidInput)> = vec![
        (
            InstallmentPlan {
                total: Money::usd(0),
                ..plan()
            },
            InvalidInput::NonPositiveAmount,
        ),
        (
            InstallmentPlan {
                total: Money::usd(-500),
                ..plan()
            },
            InvalidInput::NonPositiveAmount,
        ),
        (
            InstallmentPlan {
                total: Money::new(30_000, Currency::Jpy),
                ..plan()
            },
            InvalidInput::CurrencyWithoutMinorUnits("jpy"),
        ),
        (
            InstallmentPlan { count: 0, ..plan() },
            InvalidInput::InstallmentCount { count: 0, max: 120 },
        ),
        (
            InstallmentPlan {
                count: 100,
                ..plan()
            },
            InvalidInput::PlanTooLong { max_days: 1_825 },
        ),
        (
            InstallmentPlan {
                every: BillingInterval::every(2, Interval::Year),
                ..plan()
            },
            InvalidInput::IntervalCount,
        ),
        (
            InstallmentPlan {
                total: Money::usd(100),
                ..plan()
            },
            InvalidInput::InstallmentBelowMinimum { minimum: 50 },
        ),
        (
            InstallmentPlan {
                metadata: (0..51).map(|i| (format!("k{i}"), "v")).collect(),
                ..plan()
            },
            InvalidInput::TooManyMetadataKeys { count: 51 },
        ),
        (
            InstallmentPlan {
                metadata: Metadata::new().with("x".repeat(41), "v"),
                ..plan()
            },
            InvalidInput::MetadataKeyTooLong { len: 41 },
        ),
        (
            InstallmentPlan {
                collection: Collection::SendInvoice { days_until_due: 0 },
                ..plan()
            },
            InvalidInput::DaysUntilDue,
        ),
    ];
    for (p, want) in cases {
        // Act
        let err = stripe
            .client()
            .create_installment_schedule(&p, &key("k"))
            .await
            .unwrap_err();
        // Assert
        assert!(
            matches!(&err, Error::Invalid { reason, .. } if *reason == want),
            "want {want:?}, got {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Permanent);
    }
    stripe.finish().await;
}

#[tokio::test]
async fn create_installment_schedule_classifies_every_error_status() {
    assert_error_table(
        "POST",
        "/v1/subscription_schedules",
        call(|c| async move { c.create_installment_schedule(&plan(), &key("k")).await }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn create_installment_schedule_times_out_as_transient() {
    assert_times_out(
        "POST",
        "/v1/subscription_schedules",
        schedule_json("active"),
        call(|c| async move { c.create_installment_schedule(&plan(), &key("k")).await }),
    )
    .await;
}

#[tokio::test]
async fn get_schedule_sends_a_get_by_id_and_decodes_the_fixture() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/subscription_schedules/sub_sched_1", None)
                .respond_with(ResponseTemplate::new(200).set_body_json(schedule_json("completed")))
                .expect(1),
        )
        .await;
    // Act
    let s = stripe
        .client()
        .get_schedule(&SubscriptionScheduleId::new("sub_sched_1"))
        .await
        .unwrap();
    // Assert
    assert_eq!(s.status, ScheduleStatus::Completed);
    assert_eq!(s.customer.as_str(), "cus_1");
    assert_eq!(s.phases.len(), 1);
    assert_eq!(
        s.phases[0].items[0].price.as_ref().map(|p| p.as_str()),
        Some("price_1PgafmB7WZ01zgkW6dKueIc5")
    );
    stripe.finish().await;
}

#[tokio::test]
async fn get_schedule_classifies_every_error_status() {
    assert_error_table(
        "GET",
        "/v1/subscription_schedules/sub_sched_1",
        call(|c| async move {
            c.get_schedule(&SubscriptionScheduleId::new("sub_sched_1"))
                .await
        }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn get_schedule_times_out_as_transient() {
    assert_times_out(
        "GET",
        "/v1/subscription_schedules/sub_sched_1",
        schedule_json("active"),
        call(|c| async move {
            c.get_schedule(&SubscriptionScheduleId::new("sub_sched_1"))
                .await
        }),
    )
    .await;
}

#[tokio::test]
async fn cancel_schedule_posts_cancel_without_invoicing_or_prorating() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request(
                "POST",
                "/v1/subscription_schedules/sub_sched_1/cancel",
                Some("wf-42:cancel"),
            )
            .and(form_is(&[("invoice_now", "false"), ("prorate", "false")]))
            .respond_with(ResponseTemplate::new(200).set_body_json(schedule_json("canceled")))
            .expect(1),
        )
        .await;
    // Act
    let s = stripe
        .client()
        .cancel_schedule(
            &SubscriptionScheduleId::new("sub_sched_1"),
            &key("wf-42:cancel"),
        )
        .await
        .unwrap();
    // Assert
    assert_eq!(s.status, ScheduleStatus::Canceled);
    assert!(s.canceled_at.is_some());
    stripe.finish().await;
}

#[tokio::test]
async fn cancel_schedule_classifies_every_error_status() {
    assert_error_table(
        "POST",
        "/v1/subscription_schedules/sub_sched_1/cancel",
        call(|c| async move {
            c.cancel_schedule(&SubscriptionScheduleId::new("sub_sched_1"), &key("k"))
                .await
        }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn cancel_schedule_times_out_as_transient() {
    assert_times_out(
        "POST",
        "/v1/subscription_schedules/sub_sched_1/cancel",
        schedule_json("canceled"),
        call(|c| async move {
            c.cancel_schedule(&SubscriptionScheduleId::new("sub_sched_1"), &key("k"))
                .await
        }),
    )
    .await;
}

#[tokio::test]
async fn set_schedule_card_switches_the_schedule_to_the_saved_card() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request(
                "POST",
                "/v1/subscription_schedules/sub_sched_1",
                Some("wf-42:set_schedule_card:9"),
            )
            .and(form_is(&[
                (
                    "default_settings[collection_method]",
                    "charge_automatically",
                ),
                ("default_settings[default_payment_method]", "pm_card_1"),
            ]))
            .respond_with(ResponseTemplate::new(200).set_body_json(schedule_json("active")))
            .expect(1),
        )
        .await;
    // Act
    let s = stripe
        .client()
        .set_schedule_card(
            &SubscriptionScheduleId::new("sub_sched_1"),
            &PaymentMethodId::new("pm_card_1"),
            &key("wf-42:set_schedule_card:9"),
        )
        .await
        .unwrap();
    // Assert
    assert_eq!(s.status, ScheduleStatus::Active);
    stripe.finish().await;
}

#[tokio::test]
async fn set_schedule_card_refuses_a_malformed_card_before_sending() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200))
                .expect(0),
        )
        .await;
    // Act
    let err = stripe
        .client()
        .set_schedule_card(
            &SubscriptionScheduleId::new("sub_sched_1"),
            &PaymentMethodId::new("pm card/../1"),
            &key("k"),
        )
        .await
        .unwrap_err();
    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    stripe.finish().await;
}

#[tokio::test]
async fn set_schedule_card_classifies_every_error_status() {
    assert_error_table(
        "POST",
        "/v1/subscription_schedules/sub_sched_1",
        call(|c| async move {
            c.set_schedule_card(
                &SubscriptionScheduleId::new("sub_sched_1"),
                &PaymentMethodId::new("pm_card_1"),
                &key("k"),
            )
            .await
        }),
        &[],
    )
    .await;
}
