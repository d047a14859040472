//! Shared test set-up.

use std::time::Duration;

use opendental_client::RetryPolicy;
use opendental_client::{Client, ClientBuilder, SecretString};
use serde_json::Value;
use url::Url;
use wiremock::MockServer;

/// The `Authorization` header the test keys produce.
pub(crate) const AUTH: &str = "ODFHIR test-developer-key/test-customer-key";

/// Fast retries so that retry tests take milliseconds.
pub(crate) const FAST_BACKOFF: RetryPolicy = RetryPolicy::new()
    .min_delay(Duration::from_millis(1))
    .max_delay(Duration::from_millis(5))
    .max_attempts(3)
    .max_total_wait(Duration::from_secs(1));

/// A builder pointed at the mock server's `/api/v1`.
pub(crate) fn builder(server: &MockServer) -> ClientBuilder {
    let base = Url::parse(&format!("{}/api/v1", server.uri())).expect("mock server URL");
    Client::builder(
        base,
        SecretString::from("test-developer-key"),
        SecretString::from("test-customer-key"),
    )
    .retry(FAST_BACKOFF)
    .timeout(Duration::from_secs(5))
}

/// A client pointed at the mock server.
pub(crate) fn client(server: &MockServer) -> Client {
    builder(server).build().expect("client builds")
}

/// A fixture from `tests/fixtures`.
pub(crate) fn fixture(name: &str) -> Value {
    let text = match name {
        "treatplans" => include_str!("../fixtures/treatplans.json"),
        "proctps" => include_str!("../fixtures/proctps.json"),
        "treatplanattaches" => include_str!("../fixtures/treatplanattaches.json"),
        "procedurelogs" => include_str!("../fixtures/procedurelogs.json"),
        "patient" => include_str!("../fixtures/patient.json"),
        "commlogs" => include_str!("../fixtures/commlogs.json"),
        "commlog_created" => include_str!("../fixtures/commlog_created.json"),
        "payments" => include_str!("../fixtures/payments.json"),
        "payment_created" => include_str!("../fixtures/payment_created.json"),
        "treatplan_created" => include_str!("../fixtures/treatplan_created.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).expect("fixture is JSON")
}

/// `count` synthetic plans numbered from `first`, each edited one second after the previous.
pub(crate) fn plans(first: u64, count: u64) -> Value {
    let rows: Vec<Value> = (first..first + count)
        .map(|n| {
            let edited = chrono::NaiveDate::from_ymd_opt(2024, 3, 9)
                .and_then(|d| d.and_hms_opt(10, 0, 0))
                .expect("valid date")
                + chrono::TimeDelta::seconds(i64::try_from(n).expect("small"));
            serde_json::json!({
                "TreatPlanNum": n,
                "PatNum": 9000 + n,
                "DateTP": "2024-03-01",
                "Heading": "Synthetic plan",
                "Note": "",
                "TPStatus": "Saved",
                "TPType": "Insurance",
                "SecDateTEdit": edited.format("%Y-%m-%d %H:%M:%S").to_string(),
                "DateTSigned": "0001-01-01 00:00:00",
                "isSigned": "false",
            })
        })
        .collect();
    Value::Array(rows)
}
