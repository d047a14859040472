//! Shared helpers.

use std::time::Duration;

use sandbox::{Sandbox, SandboxConfig};

/// A sandbox with default settings.
pub(crate) async fn start() -> Sandbox {
    start_with(SandboxConfig::default()).await
}

/// A sandbox with `config`.
pub(crate) async fn start_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("sandbox starts")
}

/// A plain HTTP client with a short timeout.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The Stripe secret key of the default configuration.
pub(crate) const STRIPE_KEY: &str = "sk_test_sandbox";

/// POSTs a form to the Stripe stand-in.
pub(crate) async fn stripe_post(
    sb: &Sandbox,
    path: &str,
    form: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = http()
        .post(sb.urls().stripe.join(path).expect("url"))
        .bearer_auth(STRIPE_KEY)
        .header("Stripe-Version", sandbox::STRIPE_API_VERSION)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.expect("request sent")
}

/// GETs from the Stripe stand-in.
pub(crate) async fn stripe_get(sb: &Sandbox, path_and_query: &str) -> reqwest::Response {
    http()
        .get(sb.urls().stripe.join(path_and_query).expect("url"))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .expect("request sent")
}

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// A loopback webhook receiver that answers 200 and keeps what it got.
pub(crate) struct Receiver {
    pub(crate) url: url::Url,
    got: std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        use axum::extract::{Request, State};
        type Store = std::sync::Arc<std::sync::Mutex<Vec<Captured>>>;
        let got: Store = Default::default();
        let app = axum::Router::new()
            .fallback(|State(got): State<Store>, req: Request| async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                got.lock().unwrap().push(Captured {
                    headers: parts.headers,
                    body: body.to_vec(),
                });
                "ok"
            })
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: url::Url::parse(&format!("http://{addr}/hooks")).unwrap(),
            got,
        }
    }

    pub(crate) fn got(&self) -> Vec<Captured> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (briefly) until at least `n` requests arrived.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Captured> {
        for _ in 0..200 {
            if self.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.got()
    }
}

/// Polls `check` until it is true (or two seconds pass).
pub(crate) async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
