//! Serving the router: every connection with its peer address ([`ConnectInfo`]), a header read
//! timeout, and at most so many connections at once.
//!
//! `axum::serve` has no header read timeout, so connections are served here with hyper directly.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use super::HttpConfig;

/// How long connections in flight get to finish once shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// What [`serve`] enforces on connections (the request timeout and body limits are in the
/// [`router`](super::router) itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers; then the connection is closed.
    pub header_read_timeout: Duration,
    /// The most connections served at once. Further ones are not accepted until one closes;
    /// they wait in the listen backlog.
    pub max_connections: usize,
}

impl ServeLimits {
    /// The limits `config` asks for.
    pub fn of(config: &HttpConfig) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            max_connections: config.max_connections,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the connections in flight
/// finish (for up to ten seconds).
///
/// Each request carries the peer's [`ConnectInfo<SocketAddr>`]; a client that does not finish
/// its headers within `limits.header_read_timeout` is disconnected; at most
/// `limits.max_connections` connections are served at once.
///
/// # Errors
/// None in practice: accept errors (descriptor exhaustion, aborted handshakes) are logged and
/// accepting resumes after a pause.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopped) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = tower::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                // Sent once, when shutdown begins (or the sender is gone): either way, stop.
                _ = stopped.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit: when all are back, every connection is done.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, permits.acquire_many(all)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::{ServeLimits, serve};
    use crate::HttpConfig;
    use crate::router;
    use crate::testkit::{Kit, config, get};

    /// Far beyond any of the timeouts under test: only a server that never acts runs into it.
    const GENEROUS: Duration = Duration::from_secs(10);

    /// Serves a kit with `config` on a loopback port.
    async fn start(config: HttpConfig) -> (SocketAddr, Kit) {
        let kit = Kit::with_config(config).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServeLimits::of(kit.state.config());
        tokio::spawn(serve(
            listener,
            router(kit.state.clone()),
            limits,
            std::future::pending(),
        ));
        (addr, kit)
    }

    /// Reads until the peer closes (or resets) the connection; what it sent before.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0_u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Reads until `needle` has arrived.
    async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
        let mut got = Vec::new();
        let mut buf = [0_u8; 4096];
        while !String::from_utf8_lossy(&got).contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?}: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: chairside.test\r\n\r\n";

    #[tokio::test]
    async fn a_client_that_stalls_in_the_middle_of_its_headers_is_disconnected() {
        // Arrange
        let mut c = config();
        c.header_read_timeout = Duration::from_millis(200);
        let (addr, _kit) = start(c).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        // Act: half a request head, then nothing.
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: chair")
            .await
            .unwrap();
        let closed = tokio::time::timeout(GENEROUS, read_to_close(&mut slow)).await;
        // Assert: the server hung up without answering the request.
        let said = closed.expect("the server closed the stalled connection");
        assert!(!said.contains("200 OK"), "{said}");
    }

    #[tokio::test]
    async fn a_client_that_connects_and_sends_nothing_is_disconnected() {
        // Arrange
        let mut c = config();
        c.header_read_timeout = Duration::from_millis(200);
        let (addr, _kit) = start(c).await;
        // Act
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let closed = tokio::time::timeout(GENEROUS, read_to_close(&mut silent)).await;
        // Assert
        assert!(closed.is_ok(), "the server closed the silent connection");
    }

    #[tokio::test]
    async fn a_request_whose_body_stalls_is_answered_408() {
        // Arrange
        let mut c = config();
        c.request_timeout = Duration::from_millis(300);
        let (addr, _kit) = start(c).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        // Act: promise 100 bytes, send 10, stall.
        slow.write_all(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: chairside.test\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":\"ev",
        )
        .await
        .unwrap();
        let answer = tokio::time::timeout(GENEROUS, read_until(&mut slow, "\r\n\r\n")).await;
        // Assert
        let answer = answer.expect("answered within the deadline");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_until_one_closes() {
        // Arrange: two connections at most, both taken by idle keep-alive clients.
        let mut c = config();
        c.max_connections = 2;
        c.header_read_timeout = Duration::from_secs(60);
        let (addr, _kit) = start(c).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        for s in [&mut first, &mut second] {
            s.write_all(HEALTH).await.unwrap();
            read_until(s, "ok\n").await;
        }
        // Act: a third client asks.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(HEALTH).await.unwrap();
        let early =
            tokio::time::timeout(Duration::from_millis(500), read_until(&mut third, "ok\n")).await;
        // Assert: not served while two are open; served once one closes.
        assert!(
            early.is_err(),
            "the third connection was served beyond the limit"
        );
        drop(first);
        let later = tokio::time::timeout(GENEROUS, read_until(&mut third, "ok\n")).await;
        assert!(
            later.is_ok(),
            "the third connection was served once one closed"
        );
        // The second one is still served, on the same connection.
        second.write_all(HEALTH).await.unwrap();
        read_until(&mut second, "ok\n").await;
    }

    fn oversized(uri: &str, size: usize) -> Request<Body> {
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::CONTENT_LENGTH, size)
            .body(Body::from("a".repeat(size)))
            .unwrap()
    }

    #[tokio::test]
    async fn an_oversized_body_on_every_post_route_answers_413() {
        // Arrange
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        let token = kit.token(&wf);
        let hook = kit.state.config().body_limit + 1;
        let form = kit.state.config().form_body_limit + 1;
        let routes = [
            ("/webhooks/stripe".to_owned(), hook),
            ("/webhooks/sunbit".to_owned(), hook),
            ("/webhooks/nexhealth".to_owned(), hook),
            ("/webhooks/twilio".to_owned(), hook),
            (format!("/p/{token}/accept"), form),
            ("/staff/login".to_owned(), form),
            ("/staff/logout".to_owned(), form),
            (format!("/staff/workflows/{wf}/actions"), form),
            ("/no/such/route".to_owned(), form),
        ];
        for (uri, size) in routes {
            // Act
            let res = kit.send(oversized(&uri, size)).await;
            // Assert
            assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{uri}");
        }
    }

    #[tokio::test]
    async fn forms_get_the_small_limit_while_webhooks_get_the_large_one() {
        // Arrange: a body over the form limit and under the webhook limit.
        let kit = Kit::new().await;
        let size = kit.state.config().form_body_limit + 1;
        assert!(size < kit.state.config().body_limit);
        // Act
        let login = kit.send(oversized("/staff/login", size)).await;
        let hook = kit.send(oversized("/webhooks/stripe", size)).await;
        // Assert: the webhook is read (and refused for its missing signature instead).
        assert_eq!(login.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_ne!(hook.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn every_response_carries_hsts_when_the_public_url_is_https() {
        // Arrange
        let kit = Kit::new().await;
        assert_eq!(kit.state.config().public_base_url.scheme(), "https");
        for uri in ["/healthz", "/staff/login", "/no/such/page", "/metrics"] {
            // Act
            let res = kit.send(get(uri)).await;
            // Assert
            assert_eq!(
                res.headers()[header::STRICT_TRANSPORT_SECURITY],
                "max-age=31536000; includeSubDomains",
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn plain_http_responses_carry_no_hsts() {
        // Arrange: the local demo's plain-http base URL.
        let mut c = config();
        c.public_base_url = "http://127.0.0.1:8080/".parse().unwrap();
        let kit = Kit::with_config(c).await;
        for uri in ["/healthz", "/staff/login", "/no/such/page"] {
            // Act
            let res = kit.send(get(uri)).await;
            // Assert
            assert!(
                !res.headers()
                    .contains_key(header::STRICT_TRANSPORT_SECURITY),
                "{uri}"
            );
        }
    }
}
