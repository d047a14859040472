use financing_core::{PatientId, PracticeId};
use serde_json::json;
use stripe_schedule::{
    Address, CustomerDetails, CustomerId, Error, IdempotencyKey, InvalidInput, Metadata,
};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    StripeMock, assert_error_table, assert_times_out, call, fixture_with, form_is, key,
    stripe_request,
};

fn details() -> CustomerDetails {
    CustomerDetails {
        name: Some("Testy McFixture".into()),
        email: Some("  Testy@Example.TEST ".into()),
        phone: Some("+15555550100".into()),
        address: Some(Address {
            line1: Some("1 Sample Way".into()),
            city: Some("Exampleville".into()),
            state: Some("CA".into()),
            postal_code: Some("90001".into()),
            country: Some("US".into()),
            ..Default::default()
        }),
    }
}

fn customer_json(id: &str, practice: &str, patient: &str, created: i64) -> serde_json::Value {
    fixture_with(
        "customer",
        json!({
            "id": id,
            "email": "testy@example.test",
            "created": created,
            "metadata": {"chairside_practice": practice, "chairside_patient": patient},
        }),
    )
}

fn list(data: Vec<serde_json::Value>, has_more: bool) -> serde_json::Value {
    json!({"object": "list", "url": "/v1/customers", "has_more": has_more,
           "data": serde_json::Value::Array(data)})
}

#[tokio::test]
async fn create_customer_sends_fields_metadata_key_and_version() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("POST", "/v1/customers", Some("cust-key-1"))
                .and(form_is(&[
                    ("name", "Testy McFixture"),
                    ("email", "testy@example.test"),
                    ("phone", "+15555550100"),
                    ("address[line1]", "1 Sample Way"),
                    ("address[city]", "Exampleville"),
                    ("address[state]", "CA"),
                    ("address[postal_code]", "90001"),
                    ("address[country]", "US"),
                    ("metadata[chairside_workflow]", "wf-1"),
                ]))
                .respond_with(ResponseTemplate::new(200).set_body_json(customer_json(
                    "cus_new",
                    "p",
                    "q",
                    1_700_000_000,
                )))
                .expect(1),
        )
        .await;
    // Act
    let customer = stripe
        .client()
        .create_customer(
            &details(),
            &Metadata::new().with("chairside_workflow", "wf-1"),
            &key("cust-key-1"),
        )
        .await
        .unwrap();
    // Assert
    assert_eq!(customer.id, CustomerId::new("cus_new"));
    assert_eq!(customer.email.as_deref(), Some("testy@example.test"));
    stripe.finish().await;
}

#[tokio::test]
async fn create_customer_refuses_bad_metadata_before_sending() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200))
                .expect(0),
        )
        .await;
    let cases: Vec<(Metadata, InvalidInput)> = vec![
        (
            (0..51).map(|i| (format!("k{i}"), "v")).collect(),
            InvalidInput::TooManyMetadataKeys { count: 51 },
        ),
        (
            Metadata::new().with("k".repeat(41), "v"),
            InvalidInput::MetadataKeyTooLong { len: 41 },
        ),
        (
            Metadata::new().with("a[b]", "v"),
            InvalidInput::MetadataKeyBrackets,
        ),
        (
            Metadata::new().with("k", "v".repeat(501)),
            InvalidInput::MetadataValueTooLong { len: 501 },
        ),
    ];
    for (metadata, want) in cases {
        // Act
        let err = stripe
            .client()
            .create_customer(&details(), &metadata, &key("k"))
            .await
            .unwrap_err();
        // Assert
        assert!(
            matches!(&err, Error::Invalid { reason, .. } if *reason == want),
            "{err:?}"
        );
        assert_eq!(err.kind(), financing_core::ErrorKind::Permanent);
    }
    stripe.finish().await;
}

#[tokio::test]
async fn create_customer_classifies_every_error_status() {
    assert_error_table(
        "POST",
        "/v1/customers",
        call(|c| async move {
            c.create_customer(&details(), &Metadata::new(), &key("k"))
                .await
        }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn create_customer_times_out_as_transient() {
    assert_times_out(
        "POST",
        "/v1/customers",
        customer_json("cus_1", "p", "q", 1),
        call(|c| async move {
            c.create_customer(&details(), &Metadata::new(), &key("k"))
                .await
        }),
    )
    .await;
}

#[tokio::test]
async fn a_malformed_customer_field_is_named_by_its_path_and_its_value_is_never_shown() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/customers/cus_1", None)
                .respond_with(ResponseTemplate::new(200).set_body_json(fixture_with(
                    "customer",
                    json!({"id": "cus_1", "created": "Zebulon-991"}),
                )))
                .expect(1),
        )
        .await;
    // Act
    let err = stripe
        .client()
        .get_customer(&CustomerId::new("cus_1"))
        .await
        .unwrap_err();
    // Assert
    let shown = err.to_string();
    assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
    assert!(shown.contains("undecodable response (HTTP 200)"), "{shown}");
    assert!(shown.contains("`created`"), "{shown}");
    assert!(!shown.contains("Zebulon"), "{shown}");
    assert!(!format!("{err:?}").contains("Zebulon"));
    stripe.finish().await;
}

#[tokio::test]
async fn get_customer_sends_a_get_by_id_and_decodes_the_fixture() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/customers/cus_QXg1o8vcGmoR32", None)
                .respond_with(ResponseTemplate::new(200).set_body_json(fixture_with(
                    "customer",
                    json!({"invoice_settings": {"default_payment_method": "pm_card_1"}}),
                )))
                .expect(1),
        )
        .await;
    // Act
    let c = stripe
        .client()
        .get_customer(&CustomerId::new("cus_QXg1o8vcGmoR32"))
        .await
        .unwrap();
    // Assert
    assert_eq!(c.id.as_str(), "cus_QXg1o8vcGmoR32");
    assert_eq!(
        c.default_payment_method().map(|p| p.as_str()),
        Some("pm_card_1")
    );
    assert!(!c.deleted);
    let requests = stripe.finish().await;
    assert!(requests[0].headers.get("idempotency-key").is_none());
}

#[tokio::test]
async fn get_customer_classifies_every_error_status() {
    assert_error_table(
        "GET",
        "/v1/customers/cus_1",
        call(|c| async move { c.get_customer(&CustomerId::new("cus_1")).await }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn get_customer_times_out_as_transient() {
    assert_times_out(
        "GET",
        "/v1/customers/cus_1",
        fixture_with("customer", json!({})),
        call(|c| async move { c.get_customer(&CustomerId::new("cus_1")).await }),
    )
    .await;
}

#[tokio::test]
async fn get_customer_refuses_an_id_that_would_change_the_path() {
    let stripe = StripeMock::start().await;
    let err = stripe
        .client()
        .get_customer(&CustomerId::new("cus_1/../../v1/charges"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                reason: InvalidInput::BadId(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(stripe.finish().await.is_empty());
}

#[tokio::test]
async fn list_customers_by_email_follows_pages_with_starting_after() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/customers", None)
                .and(form_is(&[
                    ("email", "testy@example.test"),
                    ("limit", "100"),
                ]))
                .respond_with(ResponseTemplate::new(200).set_body_json(list(
                    vec![
                        customer_json("cus_b", "x", "y", 2),
                        customer_json("cus_a", "x", "y", 1),
                    ],
                    true,
                )))
                .expect(1),
        )
        .await;
    stripe
        .mount(
            stripe_request("GET", "/v1/customers", None)
                .and(form_is(&[
                    ("email", "testy@example.test"),
                    ("limit", "100"),
                    ("starting_after", "cus_a"),
                ]))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(list(vec![customer_json("cus_0", "x", "y", 0)], false)),
                )
                .expect(1),
        )
        .await;
    // Act
    let all = stripe
        .client()
        .list_customers_by_email("Testy@example.test")
        .await
        .unwrap();
    // Assert
    let ids: Vec<_> = all.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["cus_b", "cus_a", "cus_0"]);
    stripe.finish().await;
}

#[tokio::test]
async fn list_customers_classifies_every_error_status() {
    assert_error_table(
        "GET",
        "/v1/customers",
        call(|c| async move { c.list_customers_by_email("a@example.test").await }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn list_customers_times_out_as_transient() {
    assert_times_out(
        "GET",
        "/v1/customers",
        list(vec![], false),
        call(|c| async move { c.list_customers_by_email("a@example.test").await }),
    )
    .await;
}

#[tokio::test]
async fn find_or_create_returns_the_existing_customer_matching_our_metadata_without_creating() {
    // Arrange
    let stripe = StripeMock::start().await;
    let practice = PracticeId::new("smile");
    let patient = PatientId::new("p-1");
    stripe
        .mount(
            stripe_request("GET", "/v1/customers", None)
                .and(query_param("email", "testy@example.test"))
                .respond_with(ResponseTemplate::new(200).set_body_json(list(
                    vec![
                        // Same email, another patient (a family sharing an address).
                        customer_json("cus_other", "smile", "p-2", 5),
                        customer_json("cus_newer", "smile", "p-1", 9),
                        customer_json("cus_mine", "smile", "p-1", 3),
                        // Same patient id, another practice.
                        customer_json("cus_elsewhere", "other", "p-1", 1),
                    ],
                    false,
                )))
                .expect(1),
        )
        .await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(500))
                .expect(0),
        )
        .await;
    // Act
    let found = stripe
        .client()
        .find_or_create_customer(
            &practice,
            &patient,
            &details(),
            &IdempotencyKey::for_customer(&practice, &patient),
        )
        .await
        .unwrap();
    // Assert: the oldest matching customer, so every caller picks the same one.
    assert_eq!(found.id.as_str(), "cus_mine");
    stripe.finish().await;
}

#[tokio::test]
async fn find_or_create_creates_with_our_metadata_and_the_patient_key_when_none_matches() {
    // Arrange
    let stripe = StripeMock::start().await;
    let practice = PracticeId::new("smile");
    let patient = PatientId::new("p-1");
    let k = IdempotencyKey::for_customer(&practice, &patient);
    stripe
        .mount(
            stripe_request("GET", "/v1/customers", None)
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(list(
                        vec![customer_json("cus_x", "smile", "p-2", 1)],
                        false,
                    )),
                )
                .expect(1),
        )
        .await;
    stripe
        .mount(
            stripe_request("POST", "/v1/customers", Some(k.as_str()))
                .and(form_is(&[
                    ("name", "Testy McFixture"),
                    ("email", "testy@example.test"),
                    ("phone", "+15555550100"),
                    ("address[line1]", "1 Sample Way"),
                    ("address[city]", "Exampleville"),
                    ("address[state]", "CA"),
                    ("address[postal_code]", "90001"),
                    ("address[country]", "US"),
                    ("metadata[chairside_patient]", "p-1"),
                    ("metadata[chairside_practice]", "smile"),
                ]))
                .respond_with(ResponseTemplate::new(200).set_body_json(customer_json(
                    "cus_created",
                    "smile",
                    "p-1",
                    7,
                )))
                .expect(1),
        )
        .await;
    // Act
    let c = stripe
        .client()
        .find_or_create_customer(&practice, &patient, &details(), &k)
        .await
        .unwrap();
    // Assert
    assert_eq!(c.id.as_str(), "cus_created");
    stripe.finish().await;
}

#[tokio::test]
async fn find_or_create_without_an_email_creates_under_the_key_without_listing() {
    // Arrange
    let stripe = StripeMock::start().await;
    let practice = PracticeId::new("smile");
    let patient = PatientId::new("p-9");
    let k = IdempotencyKey::for_customer(&practice, &patient);
    stripe
        .mount(
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(500))
                .expect(0),
        )
        .await;
    stripe
        .mount(
            stripe_request("POST", "/v1/customers", Some(k.as_str()))
                .and(form_is(&[
                    ("name", "No Email"),
                    ("metadata[chairside_patient]", "p-9"),
                    ("metadata[chairside_practice]", "smile"),
                ]))
                .respond_with(ResponseTemplate::new(200).set_body_json(customer_json(
                    "cus_noemail",
                    "smile",
                    "p-9",
                    7,
                )))
                .expect(1),
        )
        .await;
    let no_email = CustomerDetails {
        name: Some("No Email".into()),
        ..Default::default()
    };
    // Act
    let c = stripe
        .client()
        .find_or_create_customer(&practice, &patient, &no_email, &k)
        .await
        .unwrap();
    // Assert
    assert_eq!(c.id.as_str(), "cus_noemail");
    stripe.finish().await;
}

#[tokio::test]
async fn concurrent_find_or_create_calls_send_one_key_so_stripe_creates_one_customer() {
    // Arrange: Stripe's behaviour for one key: the second request meets a 409 while the first
    // is in flight, then gets the stored response replayed.
    let stripe = StripeMock::start().await;
    let practice = PracticeId::new("smile");
    let patient = PatientId::new("p-1");
    stripe
        .mount(
            Mock::given(method("GET"))
                .and(path("/v1/customers"))
                .respond_with(ResponseTemplate::new(200).set_body_json(list(vec![], false))),
        )
        .await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .and(path("/v1/customers"))
                .respond_with(ResponseTemplate::new(409).set_body_json(json!({"error": {
                        "type": "idempotency_error", "code": "idempotency_key_in_use"}})))
                .up_to_n_times(1)
                .with_priority(1),
        )
        .await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .and(path("/v1/customers"))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(customer_json("cus_once", "smile", "p-1", 7)),
                )
                .with_priority(2),
        )
        .await;
    let client = stripe.client();
    let k = IdempotencyKey::for_customer(&practice, &patient);
    let d = details();
    // Act
    let (a, b) = tokio::join!(
        client.find_or_create_customer(&practice, &patient, &d, &k),
        client.find_or_create_customer(&practice, &patient, &d, &k),
    );
    // Assert
    assert_eq!(a.unwrap().id, b.unwrap().id);
    let requests = stripe.finish().await;
    let keys: Vec<_> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        keys.len(),
        3,
        "two creates, one of them retried after the 409"
    );
    assert!(keys.iter().all(|k2| k2 == k.as_str()));
}
