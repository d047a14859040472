//! Shared test plumbing: a wiremock server that records every request it received for the
//! Stripe conformance check, form-body matchers, fixtures, and table-driven error and timeout
//! checks that every endpoint runs.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use stripe_schedule::RetryPolicy;

use financing_core::ErrorKind;
use secrecy::SecretString;
use serde_json::{Value, json};
use stripe_schedule::form::decode_pairs;
use stripe_schedule::{API_VERSION, Client, ClientBuilder, Error, IdempotencyKey};
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Match, Mock, MockBuilder, MockServer, Request, ResponseTemplate};

pub(crate) const API_KEY: &str = "sk_test_chairside_fake";

/// A boxed call, so tables can hold one per endpoint.
pub(crate) type Call =
    Box<dyn Fn(Client) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>>;

/// Wraps a call returning anything into a [`Call`].
pub(crate) fn call<F, Fut, T>(f: F) -> Call
where
    F: Fn(Client) -> Fut + 'static,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
{
    Box::new(move |c| {
        let fut = f(c);
        Box::pin(async move { fut.await.map(drop) })
    })
}

/// A mock Stripe. Call [`StripeMock::finish`] at the end of each test: it verifies the
/// expectations and appends every received request to the conformance record.
pub(crate) struct StripeMock {
    pub(crate) server: MockServer,
    finished: bool,
}

impl StripeMock {
    pub(crate) async fn start() -> Self {
        Self {
            server: MockServer::start().await,
            finished: false,
        }
    }

    pub(crate) fn url(&self) -> Url {
        Url::parse(&self.server.uri()).expect("wiremock uri")
    }

    /// A client with millisecond backoff (three attempts) and a 2 s timeout.
    pub(crate) fn client(&self) -> Client {
        self.client_with(|b| b)
    }

    pub(crate) fn client_with(&self, f: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Client {
        let builder = Client::builder(SecretString::from(API_KEY.to_owned()))
            .base_url(self.url())
            .timeout(Duration::from_secs(2))
            .retry(fast_backoff());
        f(builder).build().expect("client builds")
    }

    pub(crate) async fn mount(&self, mock: Mock) {
        mock.mount(&self.server).await;
    }

    /// Verifies expectations, records the requests, and returns them.
    pub(crate) async fn finish(self) -> Vec<Request> {
        self.finish_under("").await
    }

    /// As [`StripeMock::finish`] for a client whose base URL has a path `prefix`: the record
    /// holds the paths Stripe would see.
    pub(crate) async fn finish_under(mut self, prefix: &str) -> Vec<Request> {
        self.finished = true;
        let requests = self.server.received_requests().await.unwrap_or_default();
        let stripped: Vec<Request> = requests
            .iter()
            .cloned()
            .map(|mut r| {
                let p = r
                    .url
                    .path()
                    .strip_prefix(prefix)
                    .unwrap_or(r.url.path())
                    .to_owned();
                r.url.set_path(&p);
                r
            })
            .collect();
        record(&stripped);
        self.server.verify().await;
        requests
    }
}

impl Drop for StripeMock {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            panic!("call StripeMock::finish() so the requests are recorded for conformance");
        }
    }
}

pub(crate) fn fast_backoff() -> RetryPolicy {
    RetryPolicy::new()
        .min_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .max_attempts(3)
        .max_total_wait(Duration::from_secs(1))
        .jitter(false)
}

static RECORD_LOCK: Mutex<()> = Mutex::new(());

fn record_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target").join("stripe-requests");
    std::fs::create_dir_all(&dir).expect("create target/stripe-requests");
    dir.join(format!("stripe-schedule-{}.jsonl", std::process::id()))
}

/// Appends requests as JSON Lines in the format `conformance.py` reads.
fn record(requests: &[Request]) {
    if requests.is_empty() {
        return;
    }
    let mut lines = String::new();
    for r in requests {
        let mut headers = serde_json::Map::new();
        for name in ["idempotency-key", "stripe-version", "content-type"] {
            if let Some(v) = r.headers.get(name).and_then(|v| v.to_str().ok()) {
                headers.insert(name.to_owned(), Value::String(v.to_owned()));
            }
        }
        let mut line = json!({
            "method": r.method.as_str(),
            "path": r.url.path(),
            "headers": headers,
        });
        if r.method.as_str() == "GET" {
            line["query"] = Value::String(r.url.query().unwrap_or("").to_owned());
        } else {
            line["body"] = Value::String(String::from_utf8_lossy(&r.body).into_owned());
        }
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    let _guard = RECORD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(record_path())
        .expect("open the request record");
    f.write_all(lines.as_bytes())
        .expect("write the request record");
}

/// Method, path, auth and version headers; plus key and content type for a POST.
pub(crate) fn stripe_request(verb: &str, p: &str, key: Option<&str>) -> MockBuilder {
    let mut m = Mock::given(method(verb))
        .and(path(p))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .and(header("stripe-version", API_VERSION));
    if let Some(key) = key {
        m = m
            .and(header("idempotency-key", key))
            .and(header("content-type", "application/x-www-form-urlencoded"));
    }
    m
}

/// Matches a form body (or GET query) with exactly these decoded pairs, in any order.
pub(crate) struct FormIs(Vec<(String, String)>);

pub(crate) fn form_is(pairs: &[(&str, &str)]) -> FormIs {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    FormIs(v)
}

impl Match for FormIs {
    fn matches(&self, request: &Request) -> bool {
        let raw = if request.method.as_str() == "GET" {
            request.url.query().unwrap_or("").to_owned()
        } else {
            String::from_utf8_lossy(&request.body).into_owned()
        };
        let mut got = decode_pairs(&raw);
        got.sort();
        if got != self.0 {
            eprintln!("form mismatch:\n  got  {got:?}\n  want {:?}", self.0);
        }
        got == self.0
    }
}

/// The decoded pairs of a recorded request's body.
pub(crate) fn body_pairs(r: &Request) -> Vec<(String, String)> {
    decode_pairs(&String::from_utf8_lossy(&r.body))
}

pub(crate) fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(s).expect("valid key")
}

/// An object from Stripe's fixtures3.json (`../shared/stripe`, beside the repository).
pub(crate) fn fixture(resource: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/stripe/fixtures3.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    let all: Value = serde_json::from_str(&text).expect("fixtures3.json is JSON");
    all["resources"][resource].clone()
}

/// A fixture object with some fields replaced.
pub(crate) fn fixture_with(resource: &str, patch: Value) -> Value {
    let mut v = fixture(resource);
    if let (Some(obj), Value::Object(p)) = (v.as_object_mut(), patch) {
        obj.extend(p);
    }
    v
}

/// One row of the shared error table.
pub(crate) struct ErrorRow {
    pub(crate) name: &'static str,
    pub(crate) response: ResponseTemplate,
    /// Expected kind for a POST and for a GET (they differ only for a persistent 500).
    pub(crate) post_kind: ErrorKind,
    pub(crate) get_kind: ErrorKind,
    /// Calls the client makes (three attempts for retryable outcomes).
    pub(crate) calls: u64,
}

fn stripe_error(status: u16, kind: &str, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("request-id", "req_test_1")
        .set_body_json(json!({"error": {"type": kind, "code": code, "message": "no such thing"}}))
}

pub(crate) fn error_rows() -> Vec<ErrorRow> {
    let t = ErrorKind::TRANSIENT;
    let p = ErrorKind::Permanent;
    vec![
        ErrorRow {
            name: "400 invalid request",
            response: stripe_error(400, "invalid_request_error", "parameter_invalid_integer"),
            post_kind: p,
            get_kind: p,
            calls: 1,
        },
        ErrorRow {
            name: "401 bad key",
            response: stripe_error(401, "invalid_request_error", "api_key_invalid"),
            post_kind: p,
            get_kind: p,
            calls: 1,
        },
        ErrorRow {
            name: "402 card error",
            response: stripe_error(402, "card_error", "card_declined"),
            post_kind: p,
            get_kind: p,
            calls: 1,
        },
        ErrorRow {
            name: "404 missing",
            response: stripe_error(404, "invalid_request_error", "resource_missing"),
            post_kind: p,
            get_kind: p,
            calls: 1,
        },
        ErrorRow {
            name: "409 key in flight",
            response: stripe_error(409, "idempotency_error", "idempotency_key_in_use"),
            post_kind: t,
            get_kind: t,
            calls: 3,
        },
        ErrorRow {
            name: "429 rate limited",
            response: stripe_error(429, "invalid_request_error", "rate_limit")
                .insert_header("retry-after", "0"),
            post_kind: ErrorKind::Transient {
                retry_after: Some(Duration::ZERO),
            },
            get_kind: ErrorKind::Transient {
                retry_after: Some(Duration::ZERO),
            },
            calls: 3,
        },
        ErrorRow {
            name: "persistent 500",
            response: stripe_error(500, "api_error", "brand_new_code"),
            post_kind: ErrorKind::Indeterminate,
            get_kind: t,
            calls: 3,
        },
        ErrorRow {
            name: "502 from a proxy, not JSON",
            response: ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"),
            post_kind: t,
            get_kind: t,
            calls: 3,
        },
        ErrorRow {
            name: "503",
            response: stripe_error(503, "api_error", "unavailable"),
            post_kind: t,
            get_kind: t,
            calls: 3,
        },
        ErrorRow {
            name: "500 with Stripe-Should-Retry false",
            response: stripe_error(500, "api_error", "x")
                .insert_header("stripe-should-retry", "false"),
            post_kind: p,
            get_kind: p,
            calls: 1,
        },
        ErrorRow {
            name: "400 with Stripe-Should-Retry true",
            response: stripe_error(400, "invalid_request_error", "lock_timeout")
                .insert_header("stripe-should-retry", "true"),
            post_kind: t,
            get_kind: t,
            calls: 3,
        },
        ErrorRow {
            name: "200 with an undecodable body",
            response: ResponseTemplate::new(200).set_body_string("{\"id\": 12"),
            post_kind: p,
            get_kind: p,
            calls: 1,
        },
    ]
}

/// Runs every row of the error table against one endpoint.
pub(crate) async fn assert_error_table(verb: &str, p: &str, call: Call, skip: &[&str]) {
    for row in error_rows() {
        if skip.contains(&row.name) {
            continue;
        }
        // Arrange
        let stripe = StripeMock::start().await;
        stripe
            .mount(
                Mock::given(method(verb))
                    .and(path(p))
                    .respond_with(row.response.clone())
                    .expect(row.calls),
            )
            .await;
        // Act
        let err = call(stripe.client())
            .await
            .expect_err(&format!("{}: an error", row.name));
        // Assert
        let want = if verb == "GET" {
            row.get_kind
        } else {
            row.post_kind
        };
        assert_eq!(err.kind(), want, "{verb} {p}: {}: {err:?}", row.name);
        let requests = stripe.finish().await;
        if verb == "POST" {
            let keys: Vec<_> = requests
                .iter()
                .map(|r| r.headers.get("idempotency-key").cloned())
                .collect();
            assert!(
                keys.windows(2).all(|w| w[0] == w[1]) && keys[0].is_some(),
                "{}: every attempt carries the same key",
                row.name
            );
        }
        if row.name.starts_with("400 invalid") {
            assert_eq!(err.request_id().map(|r| r.as_str()), Some("req_test_1"));
        }
    }
}

/// A response slower than the client timeout is a transient timeout after three attempts.
pub(crate) async fn assert_times_out(verb: &str, p: &str, body: Value, call: Call) {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method(verb))
                .and(path(p))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(body)
                        .set_delay(Duration::from_millis(500)),
                )
                .expect(3),
        )
        .await;
    let client = stripe.client_with(|b| b.timeout(Duration::from_millis(100)));
    // Act
    let err = call(client).await.expect_err("a timeout");
    // Assert
    assert_eq!(err.kind(), ErrorKind::TRANSIENT, "{err:?}");
    assert!(
        matches!(
            err,
            Error::Transport {
                timeout: true,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    stripe.finish().await;
}
