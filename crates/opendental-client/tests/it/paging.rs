//! Offset/Limit paging to the end.

use financing_core::ErrorKind;
use opendental_client::{Error, Operation, TreatPlanQuery};
use serde_json::json;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{builder, client, plans};

async fn mount_page(
    server: &MockServer,
    offset: Option<u64>,
    limit: &str,
    body: serde_json::Value,
) {
    let mock = Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(query_param("Limit", limit));
    let mock = match offset {
        None => mock.and(query_param_is_missing("Offset")),
        Some(o) => mock.and(query_param("Offset", o.to_string())),
    };
    mock.respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn listing_follows_100_row_pages_until_a_short_page() {
    // Arrange: 250 plans as 100 + 100 + 50.
    let server = MockServer::start().await;
    mount_page(&server, None, "100", plans(1, 100)).await;
    mount_page(&server, Some(100), "100", plans(101, 100)).await;
    mount_page(&server, Some(200), "100", plans(201, 50)).await;

    // Act
    let got = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap();

    // Assert: every row once, in order.
    assert_eq!(got.len(), 250);
    let nums: Vec<u64> = got.iter().map(|p| p.treat_plan_num.get()).collect();
    assert_eq!(nums, (1..=250).collect::<Vec<_>>());
}

#[tokio::test]
async fn listing_that_ends_on_a_full_page_reads_one_empty_page() {
    // Arrange: exactly 200 rows.
    let server = MockServer::start().await;
    mount_page(&server, None, "100", plans(1, 100)).await;
    mount_page(&server, Some(100), "100", plans(101, 100)).await;
    mount_page(&server, Some(200), "100", json!([])).await;

    // Act
    let got = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap();

    // Assert
    assert_eq!(got.len(), 200);
}

#[tokio::test]
async fn local_api_pages_of_1000_rows_are_followed_too() {
    // Arrange: 1000 + 3 rows with the Local API's limit.
    let server = MockServer::start().await;
    mount_page(&server, None, "1000", plans(1, 1000)).await;
    mount_page(&server, Some(1000), "1000", plans(1001, 3)).await;
    let client = builder(&server).page_size(1000).build().unwrap();

    // Act
    let got = client
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap();

    // Assert
    assert_eq!(got.len(), 1003);
}

#[tokio::test]
async fn a_server_that_ignores_offset_hits_the_page_guard() {
    // Arrange: every request gets the same full page.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(plans(1, 100)))
        .expect(5)
        .mount(&server)
        .await;
    let client = builder(&server).max_pages(5).build().unwrap();

    // Act
    let err = client
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(
        err,
        Error::Paging {
            op: Operation::ListTreatPlans,
            pages: 5
        }
    ));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn a_failure_on_a_later_page_fails_the_whole_listing() {
    // Arrange: page 2 is permanently refused.
    let server = MockServer::start().await;
    mount_page(&server, None, "100", plans(1, 100)).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(query_param("Offset", "100"))
        .respond_with(ResponseTemplate::new(400).set_body_string("Offset is invalid"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.status(), Some(400));
}
