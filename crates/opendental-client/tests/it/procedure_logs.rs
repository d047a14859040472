//! procedurelogs and the DateTStamp / serverDateTime sync.

use financing_core::Money;
use opendental_client::{AptNum, CodeNum, PatNum, ProcStatus, ProcedureLogQuery, SyncStamp};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AUTH, client, fixture};

fn logs(first: u64, count: u64, server_time: &str) -> Value {
    let rows: Vec<Value> = (first..first + count)
        .map(|n| {
            json!({
                "ProcNum": n,
                "PatNum": 9001,
                "ProcFee": "65.00",
                "ProcStatus": "C",
                "DateTStamp": "2025-06-17 08:59:00",
                "serverDateTime": server_time,
            })
        })
        .collect();
    Value::Array(rows)
}

#[tokio::test]
async fn list_procedure_logs_sends_filters_and_decodes_the_fixture() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/procedurelogs"))
        .and(header("Authorization", AUTH))
        .and(query_param("PatNum", "9001"))
        .and(query_param("ProcStatus", "TP"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("procedurelogs")))
        .expect(1)
        .mount(&server)
        .await;
    let query = ProcedureLogQuery::new()
        .pat_num(PatNum::new(9001))
        .status(ProcStatus::TreatmentPlanned);

    // Act
    let logs = client(&server).list_procedure_logs(&query).await.unwrap();

    // Assert
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].proc_fee, Money::usd(130_000), "\"1300.00\" string");
    assert_eq!(logs[0].apt_num, None, "\"0\" string key is none");
    assert_eq!(logs[0].status, ProcStatus::TreatmentPlanned);
    assert_eq!(logs[0].code_num, Some(CodeNum::new(210)));
    assert_eq!(
        logs[0].proc_code.as_ref().map(|c| c.as_str()),
        Some("D2740")
    );
    assert_eq!(logs[0].discount, Some(Money::usd(5_000)));
    assert_eq!(logs[1].apt_num, Some(AptNum::new(5120)));
    assert_eq!(logs[1].status, ProcStatus::Complete);
}

#[tokio::test]
async fn first_sync_sends_no_stamp_and_returns_the_server_time_as_the_next_stamp() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/procedurelogs"))
        .and(query_param_is_missing("DateTStamp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("procedurelogs")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let sync = client(&server).sync_procedure_logs(None).await.unwrap();

    // Assert
    assert_eq!(sync.logs.len(), 2);
    assert_eq!(
        sync.next.map(|s| s.to_string()),
        Some("2025-06-17 09:00:34".to_owned())
    );
}

#[tokio::test]
async fn sync_sends_the_stored_stamp_and_advances_to_the_first_pages_server_time() {
    // Arrange: two pages whose server clocks differ; the earlier one is the safe next stamp.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/procedurelogs"))
        .and(query_param("DateTStamp", "2025-06-17 09:00:34"))
        .and(query_param_is_missing("Offset"))
        .respond_with(ResponseTemplate::new(200).set_body_json(logs(1, 100, "2025-06-18 07:00:00")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/procedurelogs"))
        .and(query_param("DateTStamp", "2025-06-17 09:00:34"))
        .and(query_param("Offset", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(logs(101, 1, "2025-06-18 07:00:02")))
        .expect(1)
        .mount(&server)
        .await;
    let stored: SyncStamp = "2025-06-17 09:00:34".parse().unwrap();

    // Act
    let sync = client(&server)
        .sync_procedure_logs(Some(stored))
        .await
        .unwrap();

    // Assert
    assert_eq!(sync.logs.len(), 101);
    assert_eq!(
        sync.next.map(|s| s.to_string()),
        Some("2025-06-18 07:00:00".to_owned())
    );
}

#[tokio::test]
async fn an_empty_sync_keeps_the_stamp() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/procedurelogs"))
        .and(query_param("DateTStamp", "2025-06-17 09:00:34"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let stored: SyncStamp = "2025-06-17 09:00:34".parse().unwrap();

    // Act
    let sync = client(&server)
        .sync_procedure_logs(Some(stored))
        .await
        .unwrap();

    // Assert
    assert!(sync.logs.is_empty());
    assert_eq!(sync.next, Some(stored));
}
