//! Plan change detection with `PlanCursor` (SecDateTEdit).

use opendental_client::{AcceptanceRule, PlanCursor};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AUTH, client, fixture};

#[tokio::test]
async fn first_poll_lists_every_plan_oldest_edit_first_and_moves_the_cursor_to_the_latest_edit() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(header("Authorization", AUTH))
        .and(query_param_is_missing("SecDateTEdit"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("treatplans")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let changes = client(&server)
        .changed_treat_plans(&PlanCursor::beginning())
        .await
        .unwrap();

    // Assert
    let nums: Vec<u64> = changes
        .plans
        .iter()
        .map(|p| p.treat_plan_num.get())
        .collect();
    assert_eq!(nums, vec![1790, 1787, 1786]);
    let accepted: Vec<u64> = changes
        .accepted(AcceptanceRule::SignedSaved)
        .map(|p| p.treat_plan_num.get())
        .collect();
    assert_eq!(accepted, vec![1786]);
    assert_eq!(
        changes.next.watermark().map(|w| w.to_string()),
        Some("2024-03-09 15:00:41".to_owned())
    );
}

#[tokio::test]
async fn next_poll_looks_back_a_minute_and_skips_plans_already_returned() {
    // Arrange: poll 1 sees the fixture; poll 2 sees plan 1786 again (same edit) and plan 1800,
    // saved in the same second, which poll 1 missed.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(query_param_is_missing("SecDateTEdit"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("treatplans")))
        .expect(1)
        .mount(&server)
        .await;
    let mut again = fixture("treatplans")[0].clone();
    let mut late = again.clone();
    late["TreatPlanNum"] = json!(1800);
    late["PatNum"] = json!(9010);
    again["Heading"] = json!("unchanged");
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(query_param("SecDateTEdit", "2024-03-09 14:59:41"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([again, late])))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let first = client
        .changed_treat_plans(&PlanCursor::beginning())
        .await
        .unwrap();
    // The orchestrator stores the cursor as a string between polls.
    let stored = first.next.to_string();
    let cursor: PlanCursor = stored.parse().unwrap();

    // Act
    let second = client.changed_treat_plans(&cursor).await.unwrap();

    // Assert
    let nums: Vec<u64> = second
        .plans
        .iter()
        .map(|p| p.treat_plan_num.get())
        .collect();
    assert_eq!(nums, vec![1800]);
    assert_eq!(second.next.watermark(), first.next.watermark());
    assert!(second.next.to_string().contains("1800@2024-03-09 15:00:41"));
}

#[tokio::test]
async fn a_quiet_poll_returns_nothing_and_keeps_the_cursor() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(query_param("SecDateTEdit", "2024-03-09 09:59:00"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let cursor: PlanCursor = "od-plans-v1;2024-03-09 10:00:00;".parse().unwrap();

    // Act
    let changes = client(&server).changed_treat_plans(&cursor).await.unwrap();

    // Assert
    assert!(changes.plans.is_empty());
    assert_eq!(changes.next, cursor);
}
