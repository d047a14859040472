//! `txcases`: change polling across pages, decoding, bad vendor input; a case's detail.

use chrono::{DateTime, NaiveDate, Utc};
use dentrix_client::{CaseStatus, Client, DecodeProblem, Error, ProcedureId, SyncCursor, TxCaseId};
use financing_core::{CdtCode, CoverageSplit, ErrorKind, Money};
use serde_json::json;
use url::Url;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    BEARER, ORG, api, client as default_client, credentials, envelope, fast_backoff, fixture,
    server,
};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// Page size 2, so that the fixtures span several pages.
fn client(server: &MockServer) -> Client {
    Client::builder(Url::parse(&server.uri()).unwrap(), credentials())
        .timeout(std::time::Duration::from_millis(500))
        .retry(fast_backoff())
        .page_size(2)
        .build()
        .unwrap()
}

#[tokio::test]
async fn list_changed_txcases_sends_the_last_modified_filter_and_page_size() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(header("authorization", BEARER))
        .and(header("organization-id", ORG))
        .and(query_param(
            "filter",
            "lastModified>=2030-03-01T00:00:00.000Z",
        ))
        .and(query_param("pageSize", "2"))
        .and(query_param_is_missing("lastId"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .expect(1)
        .mount(&server)
        .await;
    let cursor = SyncCursor::since(at("2030-03-01T00:00:00Z"));

    // Act
    let changed = client(&server).list_changed_txcases(&cursor).await.unwrap();

    // Assert: nothing changed, so the cursor stays where it was.
    assert!(changed.cases.is_empty());
    assert_eq!(changed.next_cursor, cursor);
}

#[tokio::test]
async fn list_changed_txcases_follows_pages_to_the_end_and_advances_the_cursor() {
    // Arrange: two full pages, then a short one.
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param_is_missing("lastId"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("txcases_page1.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param("lastId", "5002"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("txcases_page2.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param("lastId", "5004"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("txcases_page3.json")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let changed = client(&server)
        .list_changed_txcases(&SyncCursor::beginning())
        .await
        .unwrap();

    // Assert
    let ids: Vec<&str> = changed.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["5001", "5002", "5003", "5004", "5005"]);
    let statuses: Vec<&CaseStatus> = changed.cases.iter().map(|c| &c.status).collect();
    assert_eq!(
        statuses,
        [
            &CaseStatus::Accepted,
            &CaseStatus::New,
            &CaseStatus::Accepted,
            &CaseStatus::Unknown("PreAuth (Pri)".into()),
            &CaseStatus::Rejected,
        ]
    );
    let first = &changed.cases[0];
    assert_eq!(first.patient_id.as_str(), "9001");
    assert_eq!(first.procedure_ids, vec![ProcedureId::new("7001")]);
    assert_eq!(first.expiration_date, NaiveDate::from_ymd_opt(2031, 1, 31));
    // A timestamp without a zone is read as UTC.
    assert_eq!(changed.cases[4].last_modified, at("2030-03-01T12:00:00Z"));
    // The cursor is the latest lastModified seen, not the last one listed.
    assert_eq!(
        changed.next_cursor,
        SyncCursor::since(at("2030-03-02T09:15:00Z"))
    );
}

#[tokio::test]
async fn an_empty_page_that_offers_a_next_cursor_ends_the_listing() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param_is_missing("lastId"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("txcases_page1.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param("lastId", "5002"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [], "warnings": [], "errors": [],
            "meta": { "pagination": { "pageSize": 2, "lastId": 5999 } }
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let changed = client(&server)
        .list_changed_txcases(&SyncCursor::beginning())
        .await
        .unwrap();

    // Assert
    assert_eq!(changed.cases.len(), 2);
}

#[tokio::test]
async fn a_next_cursor_that_does_not_advance_is_a_decode_error_not_a_loop() {
    // Arrange: every full page claims the same next cursor.
    let server = server().await;
    let page = json!({
        "data": [
            { "id": 1, "status": "NEW", "patient": { "id": 1 }, "lastModified": "2030-01-01T00:00:00Z" },
            { "id": 2, "status": "NEW", "patient": { "id": 2 }, "lastModified": "2030-01-01T00:00:00Z" }
        ],
        "meta": { "pagination": { "lastId": "stuck" } }
    });
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .expect(2)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .list_changed_txcases(&SyncCursor::beginning())
        .await
        .unwrap_err();

    // Assert
    assert!(
        matches!(
            err,
            Error::Decode {
                resource: "txcases",
                problem: DecodeProblem::PaginationStalled,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn a_case_without_last_modified_is_set_apart_naming_the_field_and_the_others_are_kept() {
    // Arrange
    let server = server().await;
    let body = envelope(json!([
        { "id": 1, "status": "NEW", "patient": { "id": 1 }, "lastModified": "2030-01-01T00:00:00Z" },
        { "id": 2, "status": "NEW", "patient": { "id": 2 } }
    ]));
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param_is_missing("lastId"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    // The page was full: the listing goes on after the unreadable case's id.
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param("lastId", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let changed = client(&server)
        .list_changed_txcases(&SyncCursor::beginning())
        .await
        .unwrap();

    // Assert
    assert_eq!(
        changed
            .cases
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["1"]
    );
    assert_eq!(changed.unreadable.len(), 1);
    let bad = &changed.unreadable[0];
    assert_eq!(bad.id, Some(TxCaseId::new("2")));
    assert_eq!(bad.last_modified, None);
    assert_eq!(
        bad.error,
        "txcases: cannot decode `data[1].lastModified`: missing"
    );
    assert_eq!(
        changed.next_cursor,
        SyncCursor::since(at("2030-01-01T00:00:00Z"))
    );
}

#[tokio::test]
async fn hostile_cases_are_each_set_apart_by_id_and_field_across_pages() {
    // Arrange: page 1 holds a null, a case whose status is a number and a good one; page 2 an
    // unreadable date (its raw time still moves the cursor when it reads) and a good one.
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param_is_missing("lastId"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            null,
            { "id": 11, "status": 7, "patient": { "id": 1 }, "lastModified": "2030-01-02T00:00:00Z" },
        ]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param("lastId", "11"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            { "id": 12, "status": "ACCEPTED", "patient": { "id": 2 }, "lastModified": "2030-01-03T00:00:00Z", "expirationDate": "soon" },
            { "id": 13, "status": "ACCEPTED", "patient": { "id": 3 }, "lastModified": "2030-01-01T00:00:00Z" },
        ]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("txcases")))
        .and(query_param("lastId", "13"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .mount(&server)
        .await;

    // Act
    let changed = client(&server)
        .list_changed_txcases(&SyncCursor::beginning())
        .await
        .unwrap();

    // Assert
    assert_eq!(
        changed
            .cases
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["13"]
    );
    let bad: Vec<(Option<&str>, &str)> = changed
        .unreadable
        .iter()
        .map(|u| (u.id.as_ref().map(TxCaseId::as_str), u.error.as_str()))
        .collect();
    assert_eq!(
        bad,
        [
            (None, "txcases: cannot decode `data[0]`: wrong JSON type"),
            (
                Some("11"),
                "txcases: cannot decode `data[1].status`: wrong JSON type"
            ),
            (
                Some("12"),
                "txcases: cannot decode `data[2].expirationDate`: not a date we can read"
            ),
        ]
    );
    // The latest time read, the unreadable cases' included: they are not listed again.
    assert_eq!(
        changed.next_cursor,
        SyncCursor::since(at("2030-01-03T00:00:00Z"))
    );
}

fn mount_detail(server: &MockServer, procedures: serde_json::Value) -> impl Future<Output = ()> {
    let case = Mock::given(method("GET"))
        .and(path(api("txcases/5001")))
        .and(header("authorization", BEARER))
        .and(header("organization-id", ORG))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("txcase_accepted.json")))
        .expect(1);
    let procs = Mock::given(method("GET"))
        .and(path(api("patientprocedures")))
        .and(query_param("filter", "id->[7001,7002,7003]"))
        .respond_with(ResponseTemplate::new(200).set_body_json(procedures))
        .expect(1);
    let visits = Mock::given(method("GET"))
        .and(path(api("visits")))
        .and(query_param("filter", "txCase.id==5001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("visits.json")));
    let appointments = Mock::given(method("GET"))
        .and(path(api("appointments")))
        .and(query_param("filter", "id->[6001,6002]"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("appointments.json")));
    async move {
        case.mount(server).await;
        procs.mount(server).await;
        visits.mount(server).await;
        appointments.mount(server).await;
    }
}

#[tokio::test]
async fn get_txcase_decodes_fees_estimates_overrides_codes_and_the_first_appointment() {
    // Arrange
    let server = server().await;
    mount_detail(&server, fixture("patientprocedures.json")).await;

    // Act
    let detail = default_client(&server)
        .get_txcase(&TxCaseId::new("5001"))
        .await
        .unwrap();

    // Assert: procedures come back in the case's order, whatever order the query used.
    assert!(detail.case.status.is_accepted());
    let p = &detail.procedures;
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].id, ProcedureId::new("7001"));
    assert_eq!(p[0].code, CdtCode::new("D2740"));
    assert_eq!(p[0].fee, Money::usd(130_000));
    assert_eq!(p[0].primary_estimate, Some(Money::usd(50_000)));
    assert_eq!(p[0].secondary_estimate, Some(Money::usd(10_000)));
    assert_eq!(p[0].guarantor_portion, Some(Money::usd(70_000)));
    // The staff override wins over the computed estimate.
    assert_eq!(p[1].code, CdtCode::new("D2950"));
    assert_eq!(p[1].fee, Money::usd(45_050));
    assert_eq!(p[1].primary_estimate, Some(Money::usd(20_025)));
    assert_eq!(p[1].secondary_estimate, None);
    // A bare number is an estimate too.
    assert_eq!(p[2].primary_estimate, Some(Money::usd(6_500)));
    assert_eq!(
        p[2].treatment_planned_date,
        NaiveDate::from_ymd_opt(2030, 2, 20)
    );
    // The earliest appointment, on the practice's calendar day.
    assert_eq!(detail.treatment_date, NaiveDate::from_ymd_opt(2030, 4, 8));

    let plan = detail.to_treatment_plan(at("2030-03-01T10:05:00Z"));
    assert_eq!(plan.id.as_str(), "5001");
    assert_eq!(plan.patient_id.as_str(), "9001");
    assert_eq!(plan.revision, "2030-03-01T10:00:00.000Z");
    let split = CoverageSplit::from_plan(&plan).unwrap();
    assert_eq!(split.total, Money::usd(181_550));
    assert_eq!(split.insurance, Money::usd(86_525));
    assert_eq!(split.patient_portion, Money::usd(95_025));
}

#[tokio::test]
async fn malformed_money_is_a_decode_error_naming_the_field_and_not_the_value() {
    // Arrange
    let server = server().await;
    let mut procedures = fixture("patientprocedures.json");
    procedures["data"][1]["amount"] = json!("1,300.00");
    mount_detail(&server, procedures).await;

    // Act
    let err = default_client(&server)
        .get_txcase(&TxCaseId::new("5001"))
        .await
        .unwrap_err();

    // Assert
    let shown = err.to_string();
    assert_eq!(
        shown,
        "patientprocedures: cannot decode `data[1].amount`: not a money amount"
    );
    assert!(!shown.contains("1,300"));
    assert!(!format!("{err:?}").contains("1,300"));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn a_procedure_without_a_cdt_code_is_a_decode_error_naming_the_field() {
    // Arrange
    let server = server().await;
    let mut procedures = fixture("patientprocedures.json");
    procedures["data"][0]["practiceProcedure"] = json!({ "id": 301 });
    mount_detail(&server, procedures).await;

    // Act
    let err = default_client(&server)
        .get_txcase(&TxCaseId::new("5001"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        err.to_string(),
        "patientprocedures: cannot decode `data[0].practiceProcedure.adaCode`: missing"
    );
}

#[tokio::test]
async fn a_case_without_visits_has_no_treatment_date() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("txcases/5002")))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 5002, "status": "NEW", "patient": { "id": 9002 }, "procedures": [],
            "lastModified": "2030-03-01T11:30:00Z"
        }))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("visits")))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("patientprocedures")))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let detail = default_client(&server)
        .get_txcase(&TxCaseId::new("5002"))
        .await
        .unwrap();

    // Assert
    assert!(detail.procedures.is_empty());
    assert_eq!(detail.treatment_date, None);
    assert_eq!(detail.case.status, CaseStatus::New);
}
