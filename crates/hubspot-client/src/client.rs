//! [`Client`], [`ClientBuilder`] and the calls.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connector_transport::{RetryPolicy, decode_json, retry_after};
use financing_core::Money;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Operation, Result};
use crate::ids::{ContactId, DealId, StageId, TaskId};
use crate::wire;

/// HubSpot's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com/";

/// The deal property Chairside's deals are upserted by, unless configured otherwise: a custom
/// property the practice creates in HubSpot with "unique values" on.
pub const DEFAULT_DEAL_ID_PROPERTY: &str = "chairside_workflow_id";

/// Builds a [`Client`].
pub struct ClientBuilder {
    base_url: Url,
    token: SecretString,
    deal_id_property: String,
    timeout: Duration,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url.as_str())
            .field("deal_id_property", &self.deal_id_property)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The unique deal property deals are upserted by. Default [`DEFAULT_DEAL_ID_PROPERTY`].
    pub fn deal_id_property(mut self, property: impl Into<String>) -> Self {
        self.deal_id_property = property.into();
        self
    }

    /// Per-request timeout. Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Shares a reqwest client.
    /// Build it with `connector_transport::client_builder`, which follows no redirect, as the
    /// default client does: a followed 307 would send the request body to another host.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// In-call retries of the idempotent calls. Default [`RetryPolicy::default`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] (permanent): a base URL that cannot take paths, a zero timeout, a blank
    /// token or deal property.
    pub fn build(self) -> Result<Client> {
        if self.base_url.cannot_be_a_base() || !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(Error::Config("the base URL must be an http(s) URL".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config("timeout must be above zero".into()));
        }
        if self.token.expose_secret().trim().is_empty() {
            return Err(Error::Config("the private app token is blank".into()));
        }
        if self.deal_id_property.trim().is_empty() {
            return Err(Error::Config("the deal id property is blank".into()));
        }
        let http = match self.http {
            Some(h) => h,
            None => connector_transport::client_builder(self.timeout)
                .build()
                .map_err(|_| Error::Config("cannot build the HTTP client".into()))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url: self.base_url,
                token: self.token,
                deal_id_property: self.deal_id_property,
                timeout: self.timeout,
                retry: self.retry,
            }),
        })
    }
}

/// A contact: only what follow-up needs.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactInput {
    /// The email: the contact's unique key in HubSpot.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Phone, when known.
    pub phone: Option<String>,
}

impl fmt::Debug for ContactInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContactInput").finish_non_exhaustive()
    }
}

/// A deal, upserted by its unique key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DealInput {
    /// The unique property's value (Chairside's workflow id).
    pub key: String,
    /// The deal's name (no patient data: a reference staff recognise).
    pub name: String,
    /// The stage.
    pub stage: StageId,
    /// The pipeline, when the account has several.
    pub pipeline: Option<String>,
    /// The amount, only when the practice turned amounts on.
    pub amount: Option<Money>,
}

/// A follow-up task on a contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInput {
    /// The subject. It carries Chairside's reference, so a retry finds the task it made.
    pub subject: String,
    /// The body (no clinical data).
    pub body: String,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// The contact it is about.
    pub contact: ContactId,
}

/// The HubSpot client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    token: SecretString,
    deal_id_property: String,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a builder: `base_url` is [`DEFAULT_BASE_URL`] (or a stand-in's), `token` a
    /// private app's access token.
    pub fn builder(base_url: Url, token: SecretString) -> ClientBuilder {
        ClientBuilder {
            base_url,
            token,
            deal_id_property: DEFAULT_DEAL_ID_PROPERTY.into(),
            timeout: Duration::from_secs(10),
            http: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Creates or updates the contact with this email (batch upsert, `idProperty=email`).
    ///
    /// # Errors
    /// Transient (connect, timeout, 429, 5xx), permanent (other 4xx, decode).
    pub async fn upsert_contact(&self, contact: &ContactInput) -> Result<ContactId> {
        let mut properties = BTreeMap::new();
        properties.insert(wire::EMAIL.to_owned(), contact.email.clone());
        properties.insert(wire::FIRSTNAME.to_owned(), contact.first_name.clone());
        properties.insert(wire::LASTNAME.to_owned(), contact.last_name.clone());
        if let Some(phone) = &contact.phone {
            properties.insert(wire::PHONE.to_owned(), phone.clone());
        }
        let body = wire::BatchUpsert {
            inputs: vec![wire::UpsertInput {
                id: contact.email.clone(),
                id_property: wire::EMAIL.to_owned(),
                properties,
            }],
        };
        let response: wire::BatchResponse = self
            .send(
                Operation::UpsertContact,
                Method::POST,
                wire::CONTACTS_UPSERT,
                &body,
            )
            .await?;
        first_id(Operation::UpsertContact, response).map(ContactId::new)
    }

    /// Creates or updates the deal whose unique property (the builder's
    /// [`deal_id_property`](ClientBuilder::deal_id_property)) is `deal.key`.
    ///
    /// # Errors
    /// Transient (connect, timeout, 429, 5xx), permanent (a stage or property the account lacks,
    /// other 4xx, decode).
    pub async fn upsert_deal(&self, deal: &DealInput) -> Result<DealId> {
        let mut properties = BTreeMap::new();
        properties.insert(self.inner.deal_id_property.clone(), deal.key.clone());
        properties.insert(wire::DEALNAME.to_owned(), deal.name.clone());
        properties.insert(wire::DEALSTAGE.to_owned(), deal.stage.as_str().to_owned());
        if let Some(p) = &deal.pipeline {
            properties.insert(wire::PIPELINE.to_owned(), p.clone());
        }
        if let Some(amount) = deal.amount {
            properties.insert(wire::AMOUNT.to_owned(), amount.to_decimal_string());
        }
        let body = wire::BatchUpsert {
            inputs: vec![wire::UpsertInput {
                id: deal.key.clone(),
                id_property: self.inner.deal_id_property.clone(),
                properties,
            }],
        };
        let response: wire::BatchResponse = self
            .send(
                Operation::UpsertDeal,
                Method::POST,
                wire::DEALS_UPSERT,
                &body,
            )
            .await?;
        first_id(Operation::UpsertDeal, response).map(DealId::new)
    }

    /// Associates a deal with a contact (the default association; repeating it changes nothing).
    ///
    /// # Errors
    /// Transient (connect, timeout, 429, 5xx), permanent (4xx).
    pub async fn associate_deal_with_contact(
        &self,
        deal: &DealId,
        contact: &ContactId,
    ) -> Result<()> {
        let path = wire::deal_contact_association(deal.as_str(), contact.as_str());
        let _: serde_json::Value = self
            .send(
                Operation::AssociateDeal,
                Method::PUT,
                &path,
                &serde_json::json!({}),
            )
            .await?;
        Ok(())
    }

    /// Makes sure a task with `task.subject` exists on the contact: searches first (HubSpot has
    /// no idempotency key, so a retry after an unknown outcome finds the task it made), creates
    /// it only when none is found. HubSpot's search can lag a fresh write by a few seconds.
    ///
    /// # Errors
    /// Transient (connect, 429, 5xx on the search), indeterminate (a timeout or 5xx on the
    /// create), permanent (4xx, decode).
    pub async fn ensure_task(&self, task: &TaskInput) -> Result<TaskId> {
        let search = wire::Search {
            filter_groups: vec![wire::FilterGroup {
                filters: vec![wire::Filter {
                    property: wire::HS_TASK_SUBJECT.to_owned(),
                    operator: "EQ",
                    value: task.subject.clone(),
                }],
            }],
            limit: 1,
        };
        let found: wire::SearchResponse = self
            .send(
                Operation::SearchTasks,
                Method::POST,
                wire::TASKS_SEARCH,
                &search,
            )
            .await?;
        if let Some(existing) = found.results.into_iter().next() {
            return Ok(TaskId::new(existing.id));
        }
        let mut properties = BTreeMap::new();
        properties.insert(
            wire::HS_TIMESTAMP.to_owned(),
            task.due.timestamp_millis().to_string(),
        );
        properties.insert(wire::HS_TASK_SUBJECT.to_owned(), task.subject.clone());
        properties.insert(wire::HS_TASK_BODY.to_owned(), task.body.clone());
        properties.insert(wire::HS_TASK_STATUS.to_owned(), "NOT_STARTED".to_owned());
        properties.insert(wire::HS_TASK_TYPE.to_owned(), "CALL".to_owned());
        let body = wire::CreateTask {
            properties,
            associations: vec![wire::Association {
                to: wire::AssociationTarget {
                    id: task.contact.as_str().to_owned(),
                },
                types: vec![wire::AssociationType {
                    category: "HUBSPOT_DEFINED",
                    type_id: wire::TASK_TO_CONTACT,
                }],
            }],
        };
        let created: wire::Record = self
            .send(Operation::CreateTask, Method::POST, wire::TASKS, &body)
            .await?;
        Ok(TaskId::new(created.id))
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        operation: Operation,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = self
            .inner
            .base_url
            .join(path)
            .map_err(|_| Error::Config("the base URL cannot take paths".into()))?;
        let body = serde_json::to_vec(body)
            .map_err(|_| Error::Config("a request did not serialize".into()))?;
        let once = |_attempt: u32| {
            let request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .timeout(self.inner.timeout)
                .bearer_auth(self.inner.token.expose_secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            async move {
                let response = request
                    .send()
                    .await
                    .map_err(|source| Error::Transport { operation, source })?;
                let status = response.status();
                if !status.is_success() {
                    return Err(Error::Api {
                        operation,
                        status: status.as_u16(),
                        retry_after: retry_after(response.headers()),
                    });
                }
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|source| Error::Transport { operation, source })?;
                // A 204 (the association) has no body.
                let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
                decode_json(bytes).map_err(|source| Error::Decode { operation, source })
            }
        };
        if operation.is_idempotent() {
            self.inner.retry.run(once).await
        } else {
            // Never blind-retry a create: the caller reconciles by searching first.
            once(1).await
        }
    }
}

fn first_id(operation: Operation, response: wire::BatchResponse) -> Result<String> {
    response
        .results
        .into_iter()
        .next()
        .map(|r| r.id)
        .ok_or_else(|| Error::Decode {
            operation,
            source: connector_transport::decode_json::<wire::Record>(b"{}")
                .err()
                .unwrap_or_else(|| unreachable!("an empty object has no id")),
        })
}
