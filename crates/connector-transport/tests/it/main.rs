//! The token cache and the default client against a real HTTP server (wiremock).

use std::sync::Arc;
use std::time::Duration;

use connector_transport::{ClientCredentials, TokenCache, TokenError, client_builder};
use secrecy::{ExposeSecret, SecretString};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn credentials(server: &MockServer) -> ClientCredentials {
    let url = format!("{}/oauth/token", server.uri()).parse().unwrap();
    ClientCredentials::new(url, "chairside", SecretString::from("s3cret"))
        .field("grant_type", "client_credentials")
}

fn token_body(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "access_token": token, "token_type": "Bearer", "expires_in": 3600
    }))
}

#[tokio::test]
async fn many_concurrent_callers_share_one_token_request() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_secret=s3cret"))
        .respond_with(token_body("tok-1").set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(TokenCache::new(Duration::from_secs(60)));
    let creds = Arc::new(credentials(&server));
    let http = reqwest::Client::builder().build().unwrap();

    // Act
    let mut tasks = vec![];
    for _ in 0..16 {
        let (cache, creds, http) = (Arc::clone(&cache), Arc::clone(&creds), http.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get(|| creds.fetch(&http, Duration::from_secs(5)))
                .await
                .map(|t| t.secret().expose_secret().to_owned())
        }));
    }
    let mut tokens = vec![];
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }

    // Assert
    assert!(tokens.iter().all(|t| t == "tok-1"));
    server.verify().await;
}

#[tokio::test]
async fn an_invalidated_token_is_fetched_again_and_a_stale_invalidate_is_ignored() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_body("tok-1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_body("tok-2"))
        .expect(1)
        .mount(&server)
        .await;
    let cache = TokenCache::new(Duration::from_secs(60));
    let creds = credentials(&server);
    let http = reqwest::Client::builder().build().unwrap();
    let fetch = || creds.fetch(&http, Duration::from_secs(5));

    // Act
    let first = cache.get(fetch).await.unwrap();
    cache.invalidate(&first).await;
    let second = cache.get(fetch).await.unwrap();
    // A second caller that also saw the first token's 401 must not drop the new one.
    cache.invalidate(&first).await;
    let third = cache.get(fetch).await.unwrap();

    // Assert
    assert_eq!(first.secret().expose_secret(), "tok-1");
    assert_eq!(second.secret().expose_secret(), "tok-2");
    assert_eq!(third.secret().expose_secret(), "tok-2");
    server.verify().await;
}

#[tokio::test]
async fn authorized_refreshes_once_on_a_401_and_repeats_the_call() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_body("tok"))
        .expect(2)
        .mount(&server)
        .await;
    let cache = TokenCache::new(Duration::from_secs(60));
    let creds = credentials(&server);
    let http = reqwest::Client::builder().build().unwrap();
    let calls = std::sync::atomic::AtomicU32::new(0);

    // Act
    let out: Result<u32, TokenError> = cache
        .authorized(
            || creds.fetch(&http, Duration::from_secs(5)),
            |_token| async {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n == 0 {
                    Err(TokenError::Rejected {
                        status: 401,
                        retry_after: None,
                    })
                } else {
                    Ok(n)
                }
            },
            |e| matches!(e, TokenError::Rejected { status: 401, .. }),
        )
        .await;

    // Assert
    assert_eq!(out.unwrap(), 1);
    server.verify().await;
}

#[tokio::test]
async fn a_refused_token_request_keeps_its_status_and_caches_nothing() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string("bad client s3cret"))
        .expect(2)
        .mount(&server)
        .await;
    let cache = TokenCache::new(Duration::from_secs(60));
    let creds = credentials(&server);
    let http = reqwest::Client::builder().build().unwrap();

    // Act
    let first = cache
        .get(|| creds.fetch(&http, Duration::from_secs(5)))
        .await;
    let second = cache
        .get(|| creds.fetch(&http, Duration::from_secs(5)))
        .await;

    // Assert
    let err = first.unwrap_err();
    assert!(matches!(err, TokenError::Rejected { status: 401, .. }));
    assert!(!format!("{err} {err:?}").contains("s3cret"));
    assert!(second.is_err());
}

#[test]
fn client_credentials_debug_never_shows_the_secret() {
    let creds = ClientCredentials::new(
        "https://auth.example.test/token".parse().unwrap(),
        "chairside",
        SecretString::from("s3cret"),
    );
    assert!(!format!("{creds:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_fetched_token_and_the_cache_holding_it_never_show_the_bearer_token_in_debug() {
    // Arrange: a token endpoint that hands out a recognisable bearer token (the shape that once
    // leaked through a derived `Debug` on Dentrix's token response).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_body("BEARER-tok-Zebulon-991"))
        .mount(&server)
        .await;
    let cache = TokenCache::new(Duration::from_secs(60));
    let creds = credentials(&server);
    let http = reqwest::Client::builder().build().unwrap();

    // Act
    let fresh = creds.fetch(&http, Duration::from_secs(5)).await.unwrap();
    let fresh_shown = format!("{fresh:?}");
    let token = cache
        .get(|| creds.fetch(&http, Duration::from_secs(5)))
        .await
        .unwrap();

    // Assert: the token is there to use, and no Debug output carries it.
    assert_eq!(token.secret().expose_secret(), "BEARER-tok-Zebulon-991");
    for shown in [
        fresh_shown,
        format!("{token:?}"),
        format!("{cache:?}"),
        format!("{creds:?}"),
    ] {
        assert!(!shown.contains("Zebulon"), "{shown}");
    }
}

#[tokio::test]
async fn the_default_client_returns_a_redirect_and_sends_nothing_where_it_points() {
    // Arrange: an API that answers a POST with a 307 to another host, which must see nothing.
    let api = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/applications"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/collect", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let http = client_builder(Duration::from_secs(5)).build().unwrap();

    // Act
    let response = http
        .post(format!("{}/v1/applications", api.uri()))
        .body(r#"{"last_name":"Testpatient"}"#)
        .send()
        .await
        .unwrap();

    // Assert: the caller sees the redirect itself; the other host got no request (checked again
    // by `expect(0)` when `elsewhere` drops).
    assert_eq!(response.status().as_u16(), 307);
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_default_client_gives_up_on_a_request_past_its_timeout() {
    // Arrange: an answer slower than the client's timeout.
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&api)
        .await;
    let http = client_builder(Duration::from_millis(100)).build().unwrap();

    // Act
    let result = http.get(format!("{}/v1/slow", api.uri())).send().await;

    // Assert
    let error = result.expect_err("the request outlived the client's timeout");
    assert!(error.is_timeout(), "{error}");
}
