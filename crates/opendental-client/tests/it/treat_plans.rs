//! treatplans, proctps, treatplanattaches and the plan detail.

use chrono::NaiveDateTime;
use financing_core::{CoverageSplit, Money};
use opendental_client::{
    AcceptanceRule, DefNum, PatNum, ProcNum, TpStatus, TpType, TreatPlanNum, TreatPlanQuery,
};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AUTH, client, fixture};

fn t(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

#[tokio::test]
async fn list_treat_plans_sends_the_odfhir_header_and_the_filters() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(header("Authorization", AUTH))
        .and(header("Accept", "application/json"))
        .and(query_param("PatNum", "9001"))
        .and(query_param("TPStatus", "Saved"))
        .and(query_param("SecDateTEdit", "2024-03-01 05:30:00"))
        .and(query_param("Limit", "100"))
        .and(query_param_is_missing("Offset"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let query = TreatPlanQuery::new()
        .pat_num(PatNum::new(9001))
        .status(TpStatus::Saved)
        .edited_after(t("2024-03-01 05:30:00"));

    // Act
    let plans = client(&server).list_treat_plans(&query).await.unwrap();

    // Assert
    assert!(plans.is_empty());
    let raw = server.received_requests().await.unwrap();
    // Spaces go as %20, the form Open Dental documents.
    assert!(
        raw[0]
            .url
            .as_str()
            .contains("SecDateTEdit=2024-03-01%2005%3A30%3A00")
    );
}

#[tokio::test]
async fn list_treat_plans_decodes_open_dental_quirks() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("treatplans")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let plans = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap();

    // Assert
    assert_eq!(plans.len(), 3);
    let signed = &plans[0];
    assert_eq!(signed.treat_plan_num, TreatPlanNum::new(1786));
    assert_eq!(signed.pat_num, PatNum::new(9001));
    assert_eq!(signed.status, TpStatus::Saved);
    assert_eq!(signed.tp_type, TpType::Insurance);
    assert_eq!(signed.date_t_signed, Some(t("2024-03-09 15:00:00")));
    assert_eq!(signed.date_t_practice_signed, None, "0001-01-01 is none");
    assert_eq!(signed.is_signed, Some(true), "\"true\" string");
    assert_eq!(signed.is_signed_practice, Some(false));
    assert_eq!(signed.respons_party, None, "0 is none");
    assert!(signed.is_accepted(AcceptanceRule::SignedSaved));

    let active = &plans[1];
    assert_eq!(active.date_tp, None);
    assert_eq!(active.respons_party, Some(PatNum::new(9003)));
    assert!(!active.is_accepted(AcceptanceRule::SignedSaved));

    let odd = &plans[2];
    assert_eq!(odd.status, TpStatus::Unknown("Archived".into()));
    assert_eq!(odd.tp_type, TpType::Discount);
    assert_eq!(odd.is_signed, None, "absent derived fields stay none");
    assert!(!odd.is_accepted(AcceptanceRule::AnySaved));
}

#[tokio::test]
async fn treat_plan_debug_leaves_out_heading_and_note() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("treatplans")))
        .mount(&server)
        .await;

    // Act
    let plans = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap();

    // Assert
    let shown = format!("{:?}", plans[0]);
    assert!(shown.contains("1786"));
    assert!(!shown.contains("Crown and exam") && !shown.contains("Estimate only"));
}

#[tokio::test]
async fn list_proc_tps_asks_by_plan_and_decodes_money_from_numbers_and_strings() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/proctps"))
        .and(header("Authorization", AUTH))
        .and(query_param("TreatPlanNum", "1786"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("proctps")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let procs = client(&server)
        .list_proc_tps(TreatPlanNum::new(1786))
        .await
        .unwrap();

    // Assert: sorted by ItemOrder, crown first.
    assert_eq!(procs.len(), 2);
    let crown = &procs[0];
    assert_eq!(crown.proc_code.as_str(), "D2740");
    assert_eq!(crown.fee_amt, Money::usd(130_000));
    assert_eq!(crown.pri_ins_amt, Some(Money::usd(50_000)));
    assert_eq!(crown.sec_ins_amt, Some(Money::usd(10_000)));
    assert_eq!(crown.pat_amt, Some(Money::usd(65_000)));
    assert_eq!(crown.discount, Some(Money::usd(5_000)));
    assert_eq!(crown.fee_allowed, Some(Money::usd(110_000)));
    assert_eq!(crown.proc_num_orig, Some(ProcNum::new(11154)));
    let exam = &procs[1];
    assert_eq!(exam.proc_code.as_str(), "D0120");
    assert_eq!(exam.fee_amt, Money::usd(6_500), "\"65.00\" string");
    assert_eq!(exam.pri_ins_amt, Some(Money::usd(6_500)));
}

#[tokio::test]
async fn plan_detail_prices_a_signed_saved_plan_like_open_dental() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("treatplans")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/proctps"))
        .and(query_param("TreatPlanNum", "1786"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("proctps")))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let plan = client
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap()
        .remove(0);

    // Act
    let detail = client.plan_detail(plan).await.unwrap();
    let shared = detail
        .to_treatment_plan(AcceptanceRule::SignedSaved, chrono_tz::America::Los_Angeles)
        .unwrap();
    let split = CoverageSplit::from_plan(&shared).unwrap();

    // Assert: (1300 - 50) + 65 total, 500 + 100 + 65 insurance, 650 patient = Open Dental's PatAmt.
    assert_eq!(shared.id.as_str(), "1786");
    assert_eq!(shared.patient_id.as_str(), "9001");
    assert_eq!(shared.accepted_at.to_rfc3339(), "2024-03-09T23:00:00+00:00");
    assert_eq!(split.total, Money::usd(131_500));
    assert_eq!(split.insurance, Money::usd(66_500));
    assert_eq!(split.patient_portion, Money::usd(65_000));
}

#[tokio::test]
async fn list_treat_plan_attaches_asks_by_plan_and_decodes_priorities() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplanattaches"))
        .and(header("Authorization", AUTH))
        .and(query_param("TreatPlanNum", "1787"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("treatplanattaches")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let attaches = client(&server)
        .list_treat_plan_attaches(TreatPlanNum::new(1787))
        .await
        .unwrap();

    // Assert
    assert_eq!(attaches.len(), 2);
    assert_eq!(attaches[0].proc_num, ProcNum::new(11977));
    assert_eq!(attaches[0].priority, Some(DefNum::new(151)));
    assert_eq!(attaches[0].priority_name, "1");
    assert_eq!(attaches[1].priority, None, "Priority 0 is none");
}

fn financed_plan(marker: &str) -> opendental_client::NewTreatPlan {
    opendental_client::NewTreatPlan::new(
        PatNum::new(9001),
        "Financed case (Chairside)",
        format!("Financed: $4,200.00 by CareCredit.\n{marker}"),
    )
}

#[tokio::test]
async fn create_treat_plan_posts_patnum_heading_and_note() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/treatplans"))
        .and(header("Authorization", AUTH))
        .and(wiremock::matchers::body_json(serde_json::json!({
            "PatNum": 9001,
            "Heading": "Financed case (Chairside)",
            "Note": "Financed: $4,200.00 by CareCredit.\n[chairside:plan:wf-43]",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("treatplan_created")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let created = client(&server)
        .create_treat_plan(&financed_plan("[chairside:plan:wf-43]"))
        .await
        .unwrap()
        .unwrap();

    // Assert
    assert_eq!(created.treat_plan_num, TreatPlanNum::new(18));
    assert_eq!(created.status, TpStatus::Inactive);
}

#[tokio::test]
async fn create_treat_plan_once_finds_the_marker_and_writes_nothing() {
    // Arrange: a plan carrying the marker is already on the patient.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .and(query_param("PatNum", "9001"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!([fixture("treatplan_created")])),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let outcome = client(&server)
        .create_treat_plan_once(
            &financed_plan("[chairside:plan:wf-43]"),
            "[chairside:plan:wf-43]",
        )
        .await
        .unwrap();

    // Assert
    assert!(matches!(
        outcome,
        opendental_client::WriteOutcome::AlreadyWritten(ref p) if p.treat_plan_num == TreatPlanNum::new(18)
    ));
}

#[tokio::test]
async fn create_treat_plan_once_reconciles_a_502_instead_of_creating_twice() {
    // Arrange: the POST answers 502 after Open Dental created the plan; the retry's lookup
    // finds it.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!([fixture("treatplan_created")])),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let plan = financed_plan("[chairside:plan:wf-43]");

    // Act
    let first = client
        .create_treat_plan_once(&plan, "[chairside:plan:wf-43]")
        .await
        .unwrap_err();
    let second = client
        .create_treat_plan_once(&plan, "[chairside:plan:wf-43]")
        .await
        .unwrap();

    // Assert
    assert_eq!(first.kind(), financing_core::ErrorKind::Indeterminate);
    assert!(!second.was_created());
}

#[tokio::test]
async fn create_treat_plan_once_refuses_a_note_without_the_marker() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .create_treat_plan_once(&financed_plan("no marker here"), "[chairside:plan:wf-43]")
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), financing_core::ErrorKind::Permanent);
}
