//! [`Client`], [`ClientBuilder`], authentication, retries and paging.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use connector_transport::RetryPolicy;
use financing_core::Currency;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::error::{DecodeError, Error, Operation, Result, VendorBody};
use crate::wire::{self, Row};

/// The remote API, through Open Dental's servers to the office's eConnector.
pub const REMOTE_BASE_URL: &str = "https://api.opendental.com/api/v1";
/// The Local API, on the office machine while OpenDental.exe runs.
pub const LOCAL_BASE_URL: &str = "http://localhost:30222/api/v1";
/// The API Service, on the office server (no OpenDental.exe needed).
pub const API_SERVICE_BASE_URL: &str = "http://localhost:30223/api/v1";

/// Rows per page on the remote API (Open Dental's hard limit).
pub const REMOTE_PAGE_LIMIT: u32 = 100;
/// Rows per page on the Local API and the API Service.
pub const LOCAL_PAGE_LIMIT: u32 = 1000;

const REMOTE_HOST: &str = "api.opendental.com";

/// How the client reaches Open Dental.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiMode {
    /// [`REMOTE_BASE_URL`]: needs the office's eConnector; 100 rows per page.
    Remote,
    /// [`LOCAL_BASE_URL`]: only while OpenDental.exe runs; 1000 rows per page.
    Local,
    /// [`API_SERVICE_BASE_URL`]: the API Service; 1000 rows per page.
    Service,
}

impl ApiMode {
    /// The mode's base URL.
    pub fn base_url(self) -> Url {
        let text = match self {
            Self::Remote => REMOTE_BASE_URL,
            Self::Local => LOCAL_BASE_URL,
            Self::Service => API_SERVICE_BASE_URL,
        };
        Url::parse(text).expect("the base URL constants are valid URLs")
    }

    /// The largest page the mode serves. The Service's limit is taken to be the Local API's.
    pub fn max_page_size(self) -> u32 {
        match self {
            Self::Remote => REMOTE_PAGE_LIMIT,
            Self::Local | Self::Service => LOCAL_PAGE_LIMIT,
        }
    }
}

/// Builds a [`Client`]. `Debug` never shows the keys.
pub struct ClientBuilder {
    base_url: Url,
    developer_key: SecretString,
    customer_key: SecretString,
    timeout: Duration,
    connect_timeout: Duration,
    http_client: Option<reqwest::Client>,
    page_size: u32,
    max_pages: u32,
    retry: RetryPolicy,
    currency: Currency,
    change_lookback: Duration,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .field("page_size", &self.page_size)
            .field("retry", &self.retry)
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Per-request timeout (default 30 s). A write that times out is
    /// [`Indeterminate`](financing_core::ErrorKind::Indeterminate).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout (default 10 s), used when this builder makes the HTTP client.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Shares an existing HTTP client. The per-request [`timeout`](Self::timeout) still applies.
    /// Build it with `connector_transport::client_builder`, which follows no redirect, as the
    /// default client does: a followed 307 would send the request body to another host.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Rows per page, 1 to 1000 (default 100). Above 100 only for the Local API or the API
    /// Service: against the remote host `build` refuses it, because the remote API would cut every
    /// page to 100 rows and the listing would stop after the first.
    pub fn page_size(mut self, rows: u32) -> Self {
        self.page_size = rows;
        self
    }

    /// Full pages after which a listing gives up with [`Error::Paging`] (default 10 000), a guard
    /// against a server that ignores `Offset`.
    pub fn max_pages(mut self, pages: u32) -> Self {
        self.max_pages = pages;
        self
    }

    /// Retry policy for transient failures (default: [`RetryPolicy::default`], capped at 20 s of
    /// waiting). Pass [`RetryPolicy::none`] when the caller retries durably itself; a
    /// `Retry-After` beyond the budget is returned as a transient error carrying the delay.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The office's currency, for every amount (default USD).
    pub fn currency(mut self, currency: Currency) -> Self {
        self.currency = currency;
        self
    }

    /// How far before the [`PlanCursor`](crate::PlanCursor) watermark each plan poll looks again
    /// (default 60 s): plans saved in the watermark's second or committed late are still found.
    pub fn change_lookback(mut self, lookback: Duration) -> Self {
        self.change_lookback = lookback;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] ([`ErrorKind::Permanent`](financing_core::ErrorKind::Permanent)) for a
    /// base URL that is not http(s), empty keys, a page size outside 1..=1000 (or above 100 on the
    /// remote host), or an HTTP client that cannot be made.
    pub fn build(self) -> Result<Client> {
        if !matches!(self.base_url.scheme(), "http" | "https") || self.base_url.cannot_be_a_base() {
            return Err(Error::Config("the base URL must be an http or https URL"));
        }
        if auth_value(&self.developer_key, &self.customer_key).is_none() {
            return Err(Error::Config(
                "the developer key and customer key must be non-empty and printable",
            ));
        }
        if !(1..=LOCAL_PAGE_LIMIT).contains(&self.page_size) {
            return Err(Error::Config("the page size must be between 1 and 1000"));
        }
        if self.base_url.host_str() == Some(REMOTE_HOST) && self.page_size > REMOTE_PAGE_LIMIT {
            return Err(Error::Config(
                "the remote API serves at most 100 rows per page",
            ));
        }
        if self.max_pages == 0 {
            return Err(Error::Config("max_pages must be at least 1"));
        }
        let http = match self.http_client {
            Some(c) => c,
            None => connector_transport::client_builder(self.timeout)
                .connect_timeout(self.connect_timeout)
                .user_agent(concat!(
                    "chairside-opendental-client/",
                    env!("CARGO_PKG_VERSION")
                ))
                .build()
                .map_err(|_| Error::Config("the HTTP client could not be built"))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url: self.base_url,
                developer_key: self.developer_key,
                customer_key: self.customer_key,
                timeout: self.timeout,
                page_size: self.page_size,
                max_pages: self.max_pages,
                retry: self.retry,
                currency: self.currency,
                change_lookback: self.change_lookback,
            }),
        })
    }
}

/// An Open Dental API client for one office (one customer key). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    developer_key: SecretString,
    customer_key: SecretString,
    timeout: Duration,
    page_size: u32,
    max_pages: u32,
    retry: RetryPolicy,
    currency: Currency,
    change_lookback: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("page_size", &self.inner.page_size)
            .finish_non_exhaustive()
    }
}

/// Every row of a listing, and the earliest `serverDateTime` it carried.
pub(crate) struct Listing<T> {
    pub(crate) items: Vec<T>,
    pub(crate) server_date_time: Option<NaiveDateTime>,
}

impl Client {
    /// Starts a builder. `base_url` is the API root including `/api/v1` (see [`ApiMode`]), or a
    /// stand-in server's URL in tests and demos.
    pub fn builder(
        base_url: Url,
        developer_key: SecretString,
        customer_key: SecretString,
    ) -> ClientBuilder {
        ClientBuilder {
            base_url,
            developer_key,
            customer_key,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            http_client: None,
            page_size: REMOTE_PAGE_LIMIT,
            max_pages: 10_000,
            retry: RetryPolicy::default(),
            currency: Currency::Usd,
            change_lookback: Duration::from_secs(60),
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// Rows requested per page.
    pub fn page_size(&self) -> u32 {
        self.inner.page_size
    }

    pub(crate) fn currency(&self) -> Currency {
        self.inner.currency
    }

    pub(crate) fn change_lookback(&self) -> Duration {
        self.inner.change_lookback
    }

    fn auth_header(&self) -> HeaderValue {
        // Checked by `build`, so the fallback is never sent.
        auth_value(&self.inner.developer_key, &self.inner.customer_key)
            .unwrap_or_else(|| HeaderValue::from_static(""))
    }

    fn url(&self, segments: &[&str], query: &[(&'static str, String)]) -> Url {
        let mut url = self.inner.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        if query.is_empty() {
            url.set_query(None);
        } else {
            url.set_query(Some(&encode_query(query)));
        }
        url
    }

    /// One call with retries for transient failures.
    pub(crate) async fn send(
        &self,
        op: Operation,
        method: Method,
        segments: &[&str],
        query: &[(&'static str, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>> {
        let url = self.url(segments, query);
        // The error table decides: a write's 5xx or timeout is Indeterminate and never retried.
        self.inner
            .retry
            .run(|_| self.send_once(op, method.clone(), url.clone(), body))
            .await
    }

    async fn send_once(
        &self,
        op: Operation,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Vec<u8>> {
        let started = Instant::now();
        let mut request = self
            .inner
            .http
            .request(method, url)
            .timeout(self.inner.timeout)
            .header(AUTHORIZATION, self.auth_header())
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| transport(op, e))?;
        let status = response.status();
        tracing::debug!(op = %op, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "open dental call");
        if status.is_success() {
            let bytes = response.bytes().await.map_err(|e| transport(op, e))?;
            return Ok(bytes.to_vec());
        }
        let retry_after = connector_transport::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        Err(Error::Api {
            op,
            status: status.as_u16(),
            retry_after,
            body: VendorBody::new(text),
        })
    }

    /// Every page of a listing: `Offset`/`Limit` until a page comes back short.
    pub(crate) async fn list_all<T>(
        &self,
        op: Operation,
        path: &str,
        filters: &[(&'static str, String)],
        resource: &'static str,
        read: fn(&Row<'_>) -> std::result::Result<T, DecodeError>,
    ) -> Result<Listing<T>> {
        let page_size = self.inner.page_size;
        let mut items = Vec::new();
        let mut server_date_time: Option<NaiveDateTime> = None;
        let mut offset: usize = 0;
        let mut pages: u32 = 0;
        loop {
            if pages >= self.inner.max_pages {
                return Err(Error::Paging { op, pages });
            }
            let mut query = filters.to_vec();
            // Open Dental's recommended first request carries no Offset.
            if offset > 0 {
                query.push((wire::param::OFFSET, offset.to_string()));
            }
            query.push((wire::param::LIMIT, page_size.to_string()));
            let bytes = self.send(op, Method::GET, &[path], &query, None).await?;
            let page = wire::decode_list(&bytes, resource, self.currency(), offset, read)
                .map_err(|source| Error::Decode { op, source })?;
            pages += 1;
            offset += page.rows;
            if let Some(t) = page.server_date_time {
                server_date_time = Some(server_date_time.map_or(t, |s| s.min(t)));
            }
            items.extend(page.items);
            if page.rows < page_size as usize {
                return Ok(Listing {
                    items,
                    server_date_time,
                });
            }
        }
    }

    /// Every page of a listing like [`Client::list_all`], a row that cannot be read set aside
    /// (with its key when readable) instead of failing the listing.
    pub(crate) async fn list_all_tolerant<T>(
        &self,
        op: Operation,
        path: &str,
        filters: &[(&'static str, String)],
        resource: &'static str,
        id_field: &'static str,
        read: fn(&Row<'_>) -> std::result::Result<T, DecodeError>,
    ) -> Result<(Vec<T>, Vec<wire::BadRow>)> {
        let page_size = self.inner.page_size;
        let mut items = Vec::new();
        let mut bad = Vec::new();
        let mut offset: usize = 0;
        let mut pages: u32 = 0;
        loop {
            if pages >= self.inner.max_pages {
                return Err(Error::Paging { op, pages });
            }
            let mut query = filters.to_vec();
            if offset > 0 {
                query.push((wire::param::OFFSET, offset.to_string()));
            }
            query.push((wire::param::LIMIT, page_size.to_string()));
            let bytes = self.send(op, Method::GET, &[path], &query, None).await?;
            let (page, rows) = wire::decode_list_tolerant(
                &bytes,
                resource,
                id_field,
                self.currency(),
                offset,
                read,
            )
            .map_err(|source| Error::Decode { op, source })?;
            pages += 1;
            offset += page.rows;
            items.extend(page.items);
            bad.extend(rows);
            if page.rows < page_size as usize {
                return Ok((items, bad));
            }
        }
    }

    /// A GET of one object.
    pub(crate) async fn get_one<T>(
        &self,
        op: Operation,
        segments: &[&str],
        resource: &'static str,
        read: fn(&Row<'_>) -> std::result::Result<T, DecodeError>,
    ) -> Result<T> {
        let bytes = self.send(op, Method::GET, segments, &[], None).await?;
        wire::decode_one(&bytes, resource, self.currency(), read)
            .and_then(|found| {
                found.ok_or_else(|| {
                    DecodeError::new(
                        resource,
                        None,
                        None,
                        crate::error::DecodeReason::UnexpectedShape {
                            expected: "an object",
                        },
                    )
                })
            })
            .map_err(|source| Error::Decode { op, source })
    }

    /// A POST that creates one row; `None` when Open Dental answered without a body.
    pub(crate) async fn create<T>(
        &self,
        op: Operation,
        path: &str,
        body: &Value,
        resource: &'static str,
        read: fn(&Row<'_>) -> std::result::Result<T, DecodeError>,
    ) -> Result<Option<T>> {
        let bytes = self
            .send(op, Method::POST, &[path], &[], Some(body))
            .await?;
        wire::decode_one(&bytes, resource, self.currency(), read)
            .map_err(|source| Error::Decode { op, source })
    }
}

/// `ODFHIR {DeveloperKey}/{CustomerKey}`, marked sensitive. The only place the keys are exposed.
/// `None` for empty keys or keys that cannot go in a header.
fn auth_value(developer_key: &SecretString, customer_key: &SecretString) -> Option<HeaderValue> {
    let (dk, ck) = (developer_key.expose_secret(), customer_key.expose_secret());
    if dk.trim().is_empty() || ck.trim().is_empty() {
        return None;
    }
    let mut value = HeaderValue::from_str(&format!("{} {dk}/{ck}", wire::AUTH_SCHEME)).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn transport(op: Operation, e: reqwest::Error) -> Error {
    let source = e.without_url();
    if source.is_connect() {
        Error::Connect { op, source }
    } else if source.is_timeout() {
        Error::Timeout { op, source }
    } else {
        Error::Transport { op, source }
    }
}

/// Percent-encodes a query, spaces as `%20` as Open Dental's examples show
/// (`SecDateTEdit=2022-07-01%2005%3A30%3A00`).
fn encode_query(query: &[(&'static str, String)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in query.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, key);
        out.push('=');
        encode_into(&mut out, value);
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Result<Client> {
        Client::builder(
            Url::parse(base).unwrap(),
            SecretString::from("dev"),
            SecretString::from("cust"),
        )
        .build()
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_spaces_as_percent_20() {
        let c = client("http://127.0.0.1:9/api/v1/").unwrap();
        let url = c.url(
            &["treatplans"],
            &[("SecDateTEdit", "2022-07-01 05:30:00".to_owned())],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/api/v1/treatplans?SecDateTEdit=2022-07-01%2005%3A30%3A00"
        );
        let c = client("http://127.0.0.1:9/api/v1").unwrap();
        assert_eq!(
            c.url(&["patients", "48"], &[]).as_str(),
            "http://127.0.0.1:9/api/v1/patients/48"
        );
    }

    #[test]
    fn auth_header_is_odfhir_developer_slash_customer_and_sensitive() {
        let c = client("http://127.0.0.1:9/api/v1").unwrap();
        let h = c.auth_header();
        assert_eq!(h.to_str().unwrap(), "ODFHIR dev/cust");
        assert!(h.is_sensitive());
    }

    #[test]
    fn debug_never_shows_the_keys() {
        let b = Client::builder(
            ApiMode::Local.base_url(),
            SecretString::from("dev-SECRET"),
            SecretString::from("cust-SECRET"),
        );
        assert!(!format!("{b:?}").contains("SECRET"));
        let c = b.build().unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn build_refuses_bad_configuration() {
        let remote = || {
            Client::builder(
                ApiMode::Remote.base_url(),
                SecretString::from("d"),
                SecretString::from("c"),
            )
        };
        assert!(matches!(
            remote().page_size(1000).build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            remote().page_size(0).build(),
            Err(Error::Config(_))
        ));
        assert!(remote().page_size(100).build().is_ok());
        let local = Client::builder(
            ApiMode::Local.base_url(),
            SecretString::from("d"),
            SecretString::from("c"),
        );
        assert!(local.page_size(1000).build().is_ok());
        assert!(matches!(
            Client::builder(
                Url::parse("ftp://example.test/api/v1").unwrap(),
                SecretString::from("d"),
                SecretString::from("c")
            )
            .build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder(
                ApiMode::Remote.base_url(),
                SecretString::from(" "),
                SecretString::from("c")
            )
            .build(),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn keys_that_cannot_go_in_a_header_are_refused() {
        let built = Client::builder(
            ApiMode::Remote.base_url(),
            SecretString::from("dev\nkey"),
            SecretString::from("c"),
        )
        .build();
        assert!(matches!(built, Err(Error::Config(_))));
    }

    #[test]
    fn client_is_shareable_across_tasks() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Client>();
    }

    #[test]
    fn modes_have_the_documented_urls_and_page_limits() {
        assert_eq!(ApiMode::Remote.base_url().as_str(), REMOTE_BASE_URL);
        assert_eq!(ApiMode::Local.base_url().port(), Some(30222));
        assert_eq!(ApiMode::Service.base_url().port(), Some(30223));
        assert_eq!(ApiMode::Remote.max_page_size(), 100);
        assert_eq!(ApiMode::Service.max_page_size(), 1000);
    }
}
