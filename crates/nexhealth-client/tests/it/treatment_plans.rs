//! `treatment_plans`: change polling across pages, decoding, bad vendor input.

use chrono::{DateTime, NaiveDate, Utc};
use financing_core::{CdtCode, CoverageSplit, ErrorKind, Money};
use nexhealth_client::{
    AppointmentId, DecodeProblem, Error, PlanStatus, SyncCursor, TreatmentPlanId,
};
use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::{header, query_param, query_param_is_missing};

use crate::helpers::{bearer, client, envelope, fixture, scoped, server, token};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[tokio::test]
async fn list_changed_treatment_plans_sends_updated_since_status_and_page_size() {
    // Arrange
    let server = server().await;
    scoped("GET", "/treatment_plans")
        .and(header("authorization", bearer(&token()).as_str()))
        .and(header("nex-api-version", "v3.0.0"))
        .and(query_param("updated_since", "2030-06-01T00:00:00.000Z"))
        .and(query_param("status", "accepted"))
        .and(query_param("per_page", "100"))
        .and(query_param_is_missing("end_cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": true, "data": [],
            "page_info": { "has_previous_page": false, "has_next_page": false }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let cursor = SyncCursor::since(at("2030-06-01T00:00:00Z"));

    // Act
    let changed = client(&server)
        .list_changed_treatment_plans(&cursor, Some(&PlanStatus::Accepted))
        .await
        .unwrap();

    // Assert
    assert!(changed.plans.is_empty());
    assert_eq!(changed.next_cursor, cursor);
}

async fn mount_three_pages(server: &wiremock::MockServer) {
    scoped("GET", "/treatment_plans")
        .and(query_param_is_missing("end_cursor"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("treatment_plans_page1.json")),
        )
        .expect(1)
        .mount(server)
        .await;
    scoped("GET", "/treatment_plans")
        .and(query_param("end_cursor", "c424"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("treatment_plans_page2.json")),
        )
        .expect(1)
        .mount(server)
        .await;
    scoped("GET", "/treatment_plans")
        .and(query_param("end_cursor", "c431"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("treatment_plans_page3.json")),
        )
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn list_changed_treatment_plans_follows_end_cursors_to_the_last_page() {
    // Arrange
    let server = server().await;
    mount_three_pages(&server).await;

    // Act
    let changed = client(&server)
        .list_changed_treatment_plans(&SyncCursor::beginning(), None)
        .await
        .unwrap();

    // Assert
    let ids: Vec<&str> = changed.plans.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["423", "424", "430", "431", "440"]);
    let statuses: Vec<PlanStatus> = changed.plans.iter().map(|p| p.status.clone()).collect();
    assert_eq!(
        statuses,
        [
            PlanStatus::Accepted,
            PlanStatus::Proposed,
            PlanStatus::Unknown("on_hold".into()),
            PlanStatus::Unknown(String::new()),
            PlanStatus::Rejected,
        ]
    );
    // Results are ordered by id, not update time: the cursor is the latest update seen.
    assert_eq!(
        changed.next_cursor,
        SyncCursor::since(at("2030-06-06T08:30:00Z"))
    );
    // A timestamp without a zone is read as UTC.
    assert_eq!(changed.plans[4].updated_at, at("2030-06-05T23:59:59Z"));
}

#[tokio::test]
async fn plans_decode_fees_codes_and_the_first_booked_date_without_insurance_estimates() {
    // Arrange
    let server = server().await;
    scoped("GET", "/treatment_plans/423")
        .and(header("authorization", bearer(&token()).as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(
            fixture("treatment_plans_page1.json")["data"][0].clone(),
        )))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let plan = client(&server)
        .get_treatment_plan(&TreatmentPlanId::new("423"))
        .await
        .unwrap();

    // Assert
    assert!(plan.status.is_accepted());
    assert_eq!(plan.patient_id.as_ref().map(|p| p.as_str()), Some("115"));
    let p = &plan.procedures;
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].code, CdtCode::new("D2740"));
    assert_eq!(p[0].fee, Money::usd(130_000));
    assert_eq!(p[0].appointment_id, Some(AppointmentId::new("283")));
    assert_eq!(p[1].fee, Money::usd(6_500));
    assert!(!p[2].is_active());
    // The inactive procedure's earlier date does not count.
    assert_eq!(plan.treatment_date(), NaiveDate::from_ymd_opt(2030, 7, 1));

    let domain = plan.to_treatment_plan(at("2030-06-05T20:20:00Z")).unwrap();
    assert_eq!(domain.procedures.len(), 2);
    assert!(
        domain
            .procedures
            .iter()
            .all(|p| p.primary_estimate.is_none() && p.secondary_estimate.is_none())
    );
    assert_eq!(domain.revision, "2030-06-05T20:16:57.007Z");
    let split = CoverageSplit::from_plan(&domain).unwrap();
    assert_eq!(split.total, Money::usd(136_500));
    assert_eq!(split.patient_portion, Money::usd(136_500));
}

#[tokio::test]
async fn an_empty_page_that_claims_a_next_page_ends_the_listing() {
    // Arrange
    let server = server().await;
    scoped("GET", "/treatment_plans")
        .and(query_param_is_missing("end_cursor"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("treatment_plans_page1.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    scoped("GET", "/treatment_plans")
        .and(query_param("end_cursor", "c424"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": true, "data": [],
            "page_info": { "has_next_page": true, "end_cursor": "c999" }
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let changed = client(&server)
        .list_changed_treatment_plans(&SyncCursor::beginning(), None)
        .await
        .unwrap();

    // Assert
    assert_eq!(changed.plans.len(), 2);
}

#[tokio::test]
async fn a_next_cursor_that_does_not_advance_is_a_decode_error_not_a_loop() {
    // Arrange
    let server = server().await;
    scoped("GET", "/treatment_plans")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": true,
            "data": [ { "id": 1, "patient_id": 1, "updated_at": "2030-01-01T00:00:00Z", "status": "accepted" } ],
            "page_info": { "has_next_page": true, "end_cursor": "same" }
        })))
        .expect(2)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .list_changed_treatment_plans(&SyncCursor::beginning(), None)
        .await
        .unwrap_err();

    // Assert
    assert!(
        matches!(
            err,
            Error::Decode {
                resource: "treatment_plans",
                problem: DecodeProblem::PaginationStalled,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn a_malformed_fee_sets_its_plan_apart_naming_the_field_and_not_the_value() {
    // Arrange
    let server = server().await;
    let mut page = fixture("treatment_plans_page1.json");
    page["data"][0]["procedures"][1]["fee"]["amount"] = json!("65,00");
    page["page_info"]["has_next_page"] = json!(false);
    scoped("GET", "/treatment_plans")
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;

    // Act
    let changed = client(&server)
        .list_changed_treatment_plans(&SyncCursor::beginning(), None)
        .await
        .unwrap();

    // Assert: the plan beside it is still listed.
    assert_eq!(
        changed
            .plans
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["424"]
    );
    assert_eq!(changed.unreadable.len(), 1);
    let bad = &changed.unreadable[0];
    assert_eq!(bad.id, Some(TreatmentPlanId::new("423")));
    assert_eq!(bad.updated_at.as_deref(), Some("2030-06-05T20:16:57.007Z"));
    assert_eq!(
        bad.error,
        "treatment_plans: cannot decode `data[0].procedures[1].fee.amount`: not a money amount"
    );
    assert!(!format!("{changed:?}").contains("65,00"));
}

#[tokio::test]
async fn a_procedure_without_a_fee_or_a_plan_without_updated_at_is_set_apart_naming_the_field() {
    // Arrange
    let server = server().await;
    let mut page = fixture("treatment_plans_page1.json");
    page["data"][0]["procedures"][0]
        .as_object_mut()
        .unwrap()
        .remove("fee");
    page["page_info"]["has_next_page"] = json!(false);
    scoped("GET", "/treatment_plans")
        .and(query_param("status", "accepted"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;
    scoped("GET", "/treatment_plans")
        .and(query_param("status", "proposed"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": true,
            "data": [ { "id": 9, "status": "proposed" }, null ],
            "page_info": { "has_next_page": false }
        })))
        .mount(&server)
        .await;
    let client = client(&server);

    // Act
    let no_fee = client
        .list_changed_treatment_plans(&SyncCursor::beginning(), Some(&PlanStatus::Accepted))
        .await
        .unwrap();
    let no_update = client
        .list_changed_treatment_plans(&SyncCursor::beginning(), Some(&PlanStatus::Proposed))
        .await
        .unwrap();

    // Assert
    assert_eq!(
        no_fee
            .unreadable
            .iter()
            .map(|u| u.error.as_str())
            .collect::<Vec<_>>(),
        ["treatment_plans: cannot decode `data[0].procedures[0].fee`: missing"]
    );
    let bad: Vec<(usize, Option<&str>, &str)> = no_update
        .unreadable
        .iter()
        .map(|u| {
            (
                u.position,
                u.id.as_ref().map(TreatmentPlanId::as_str),
                u.error.as_str(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        [
            (
                0,
                Some("9"),
                "treatment_plans: cannot decode `data[0].updated_at`: missing"
            ),
            (
                1,
                None,
                "treatment_plans: cannot decode `data[1]`: wrong JSON type"
            ),
        ]
    );
    assert!(no_update.plans.is_empty());
    // Nothing readable moved the cursor: it stays where it was.
    assert_eq!(no_update.next_cursor, SyncCursor::beginning());
}

#[tokio::test]
async fn an_unknown_plan_is_a_permanent_404() {
    // Arrange
    let server = server().await;
    scoped("GET", "/treatment_plans/999")
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_treatment_plan(&TreatmentPlanId::new("999"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(err.to_string(), "get treatment plan: HTTP 404 Not Found");
}
