//! Bad input from the vendor: missing fields, unknown statuses, malformed money, odd dates and
//! booleans. Errors name the resource and field, never the value.

use chrono::NaiveDateTime;
use financing_core::{ErrorKind, Money};
use opendental_client::{DecodeReason, Error, TpStatus, TreatPlanNum, TreatPlanQuery};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::client;

async fn plans_from(body: Value) -> Result<Vec<opendental_client::TreatPlan>, Error> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
}

async fn proc_tps_from(body: Value) -> Result<Vec<opendental_client::ProcTp>, Error> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/proctps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    client(&server).list_proc_tps(TreatPlanNum::new(1)).await
}

fn decode_parts(
    err: &Error,
) -> (
    &'static str,
    Option<usize>,
    Option<&'static str>,
    DecodeReason,
) {
    let d = err.decode_error().expect("a decode error");
    (d.resource(), d.row(), d.field(), d.reason().clone())
}

#[tokio::test]
async fn a_plan_with_only_its_keys_and_status_decodes_with_defaults() {
    // Act
    let plans = plans_from(json!([{"TreatPlanNum": 5, "PatNum": 9001, "TPStatus": "Saved"}]))
        .await
        .unwrap();

    // Assert
    let p = &plans[0];
    assert_eq!(p.heading, "");
    assert_eq!(p.sec_date_t_edit, None);
    assert_eq!(p.date_t_signed, None);
    assert_eq!(p.is_signed, None);
}

#[tokio::test]
async fn a_missing_status_names_the_field_and_row() {
    // Act
    let err = plans_from(json!([
        {"TreatPlanNum": 5, "PatNum": 9001, "TPStatus": "Saved"},
        {"TreatPlanNum": 6, "PatNum": 9002, "Heading": "Testa Fixture's plan"}
    ]))
    .await
    .unwrap_err();

    // Assert
    assert_eq!(
        decode_parts(&err),
        (
            "treatplan",
            Some(1),
            Some("TPStatus"),
            DecodeReason::MissingField
        )
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(!err.to_string().contains("Testa"));
}

#[tokio::test]
async fn an_unknown_status_is_kept_raw_not_refused() {
    // Act
    let plans =
        plans_from(json!([{"TreatPlanNum": 5, "PatNum": 9001, "TPStatus": "PendingSignature"}]))
            .await
            .unwrap();

    // Assert
    assert_eq!(
        plans[0].status,
        TpStatus::Unknown("PendingSignature".into())
    );
    assert_eq!(plans[0].status.to_string(), "PendingSignature");
}

#[tokio::test]
async fn malformed_money_names_field_and_resource_but_never_the_value() {
    // Act
    let err = proc_tps_from(json!([{
        "ProcTPNum": 1, "TreatPlanNum": 1, "PatNum": 9001, "ProcCode": "D2740",
        "FeeAmt": "1,300.00 (Testa)"
    }]))
    .await
    .unwrap_err();

    // Assert
    let (resource, row, field, reason) = decode_parts(&err);
    assert_eq!((resource, row, field), ("proctp", Some(0), Some("FeeAmt")));
    assert!(matches!(reason, DecodeReason::MalformedMoney(_)));
    let shown = err.to_string();
    assert!(
        shown.contains("proctp row 0, field FeeAmt: malformed money"),
        "{shown}"
    );
    assert!(
        !shown.contains("1,300") && !shown.contains("Testa"),
        "{shown}"
    );
}

#[tokio::test]
async fn money_of_the_wrong_type_is_refused_and_absent_estimates_are_none() {
    // Act
    let err = proc_tps_from(json!([{
        "ProcTPNum": 1, "TreatPlanNum": 1, "PatNum": 9001, "ProcCode": "D2740",
        "FeeAmt": 100.0, "PriInsAmt": true
    }]))
    .await
    .unwrap_err();
    let ok = proc_tps_from(json!([{
        "ProcTPNum": 1, "TreatPlanNum": 1, "PatNum": 9001, "ProcCode": "D2740",
        "FeeAmt": 100.5, "PriInsAmt": null
    }]))
    .await
    .unwrap();

    // Assert
    assert_eq!(decode_parts(&err).2, Some("PriInsAmt"));
    assert_eq!(ok[0].fee_amt, Money::usd(10_050));
    assert_eq!(ok[0].pri_ins_amt, None);
    assert_eq!(ok[0].sec_ins_amt, None);
}

#[tokio::test]
async fn a_missing_fee_is_a_missing_field() {
    // Act
    let err = proc_tps_from(
        json!([{"ProcTPNum": 1, "TreatPlanNum": 1, "PatNum": 9001, "ProcCode": "D2740"}]),
    )
    .await
    .unwrap_err();

    // Assert
    assert_eq!(
        decode_parts(&err),
        (
            "proctp",
            Some(0),
            Some("FeeAmt"),
            DecodeReason::MissingField
        )
    );
}

#[tokio::test]
async fn year_one_dates_are_none_and_t_separated_times_are_read() {
    // Act
    let plans = plans_from(json!([{
        "TreatPlanNum": 5, "PatNum": 9001, "TPStatus": "Saved",
        "DateTP": "0001-01-01",
        "DateTSigned": "2024-03-09T15:00:00",
        "DateTPracticeSigned": "0001-01-01 00:00:00",
        "SecDateTEdit": ""
    }]))
    .await
    .unwrap();

    // Assert
    let p = &plans[0];
    assert_eq!(p.date_tp, None);
    assert_eq!(p.date_t_practice_signed, None);
    assert_eq!(p.sec_date_t_edit, None);
    assert_eq!(
        p.date_t_signed,
        Some(NaiveDateTime::parse_from_str("2024-03-09 15:00:00", "%Y-%m-%d %H:%M:%S").unwrap())
    );
}

#[tokio::test]
async fn a_date_in_an_odd_format_names_its_field() {
    // Act
    let err = plans_from(json!([{
        "TreatPlanNum": 5, "PatNum": 9001, "TPStatus": "Saved", "DateTSigned": "03/09/2024 3:00 PM"
    }]))
    .await
    .unwrap_err();

    // Assert
    assert_eq!(
        decode_parts(&err),
        (
            "treatplan",
            Some(0),
            Some("DateTSigned"),
            DecodeReason::MalformedDate
        )
    );
    assert!(!err.to_string().contains("03/09"));
}

#[tokio::test]
async fn boolean_strings_in_any_case_are_read_and_others_refused() {
    // Act
    let ok = plans_from(json!([
        {"TreatPlanNum": 5, "PatNum": 9001, "TPStatus": "Saved", "isSigned": "True"},
        {"TreatPlanNum": 6, "PatNum": 9001, "TPStatus": "Saved", "isSigned": false}
    ]))
    .await
    .unwrap();
    let err = plans_from(
        json!([{"TreatPlanNum": 5, "PatNum": 9001, "TPStatus": "Saved", "isSigned": "yes"}]),
    )
    .await
    .unwrap_err();

    // Assert
    assert_eq!(ok[0].is_signed, Some(true));
    assert_eq!(ok[1].is_signed, Some(false));
    assert_eq!(
        decode_parts(&err),
        (
            "treatplan",
            Some(0),
            Some("isSigned"),
            DecodeReason::MalformedBool
        )
    );
}

#[tokio::test]
async fn a_key_holding_text_is_refused_without_quoting_it() {
    // Act
    let err =
        plans_from(json!([{"TreatPlanNum": 5, "PatNum": "Testa Fixture", "TPStatus": "Saved"}]))
            .await
            .unwrap_err();

    // Assert
    assert_eq!(
        decode_parts(&err),
        (
            "treatplan",
            Some(0),
            Some("PatNum"),
            DecodeReason::MalformedId
        )
    );
    assert!(!err.to_string().contains("Testa"));
    assert!(!format!("{err:?}").contains("Testa"));
}

#[tokio::test]
async fn a_list_of_non_objects_is_an_unexpected_shape() {
    // Act
    let err = plans_from(json!(["Testa Fixture"])).await.unwrap_err();

    // Assert
    let (resource, row, field, reason) = decode_parts(&err);
    assert_eq!((resource, row, field), ("treatplan", Some(0), None));
    assert!(matches!(reason, DecodeReason::UnexpectedShape { .. }));
}

#[tokio::test]
async fn a_malformed_fee_names_the_resource_row_and_field_and_never_the_value() {
    // Act
    let err = proc_tps_from(json!([
        {"ProcTPNum": 1, "TreatPlanNum": 1, "PatNum": 9001, "ProcCode": "D2740", "FeeAmt": 10.0},
        {"ProcTPNum": 2, "TreatPlanNum": 1, "PatNum": 9001, "ProcCode": "D2740", "FeeAmt": "Zebulon-991"}
    ]))
    .await
    .unwrap_err();

    // Assert
    let shown = err.to_string();
    assert!(
        shown
            .starts_with("list proctps: could not decode the response: proctp row 1, field FeeAmt"),
        "{shown}"
    );
    assert!(!shown.contains("Zebulon"), "{shown}");
    assert!(!format!("{err:?}").contains("Zebulon"));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_decoded_by_the_shared_decoder_and_never_shown() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[{\"Heading\": Zebulon-991}]"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap_err();

    // Assert
    let (resource, _, field, reason) = decode_parts(&err);
    assert_eq!((resource, field), ("treatplan", None));
    let DecodeReason::NotJson(inner) = reason else {
        panic!("expected NotJson, got {reason:?}");
    };
    assert_eq!(inner.problem, connector_transport::DecodeProblem::Syntax);
    assert_eq!((inner.line, inner.column), (1, 14));
    assert!(!err.to_string().contains("Zebulon"), "{err}");
}
