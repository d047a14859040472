//! The HubSpot CRM stand-in: the v3 objects and v4 association calls Chairside's CRM
//! subscriber makes, with a private app's `Bearer` token, in memory.
//!
//! | call | what it does |
//! |---|---|
//! | `POST /crm/v3/objects/contacts/batch/upsert` (`idProperty=email`) | creates or updates the contact with that email |
//! | `POST /crm/v3/objects/deals/batch/upsert` (`idProperty` a unique property) | creates or updates the deal with that value |
//! | `PUT /crm/v4/objects/deals/{deal}/associations/default/contacts/{contact}` | associates them (once) |
//! | `POST /crm/v3/objects/tasks/search` (one `EQ` filter on `hs_task_subject`) | finds tasks |
//! | `POST /crm/v3/objects/tasks` | creates a task (`hs_timestamp` required, as HubSpot requires it) |
//!
//! A wrong token is 401 with HubSpot's error shape; an unknown deal stage (when the stand-in is
//! given the account's stages) is 400, as HubSpot refuses a stage its pipeline lacks.
//! It runs on its own loopback port ([`CrmStandIn::start`]); nothing else of the sandbox needs it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::server::{Shutdown, bind, serve};

/// A record the stand-in holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrmRecord {
    /// HubSpot's id.
    pub id: String,
    /// Its properties as last written.
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Data {
    next_id: u64,
    contacts: Vec<CrmRecord>,
    deals: Vec<CrmRecord>,
    tasks: Vec<(CrmRecord, Vec<String>)>,
    associations: BTreeSet<(String, String)>,
}

struct CrmState {
    token: String,
    stages: Option<BTreeSet<String>>,
    data: Mutex<Data>,
}

/// The running stand-in.
pub struct CrmStandIn {
    url: Url,
    state: Arc<CrmState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for CrmStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrmStandIn")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Upsert {
    inputs: Vec<UpsertInput>,
}

#[derive(Deserialize)]
struct UpsertInput {
    id: String,
    #[serde(rename = "idProperty")]
    id_property: String,
    properties: BTreeMap<String, String>,
}

fn error(status: StatusCode, category: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "category": category, "message": message})),
    )
        .into_response()
}

fn authorized(state: &CrmState, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == state.token)
}

fn upsert_into(data: &mut Data, deals: bool, input: UpsertInput) -> (CrmRecord, bool) {
    data.next_id += 1;
    let fresh = data.next_id.to_string();
    let list = if deals {
        &mut data.deals
    } else {
        &mut data.contacts
    };
    if let Some(r) = list
        .iter_mut()
        .find(|r| r.properties.get(&input.id_property) == Some(&input.id))
    {
        r.properties.extend(input.properties);
        return (r.clone(), false);
    }
    let mut properties = input.properties;
    properties.insert(input.id_property, input.id);
    let record = CrmRecord {
        id: fresh,
        properties,
    };
    list.push(record.clone());
    (record, true)
}

async fn upsert(state: Arc<CrmState>, headers: HeaderMap, body: Value, deals: bool) -> Response {
    if !authorized(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        );
    }
    let Ok(upsert) = serde_json::from_value::<Upsert>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON",
        );
    };
    if let Some(stages) = &state.stages
        && deals
        && upsert.inputs.iter().any(|i| {
            i.properties
                .get("dealstage")
                .is_some_and(|s| !stages.contains(s))
        })
    {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Property values were not valid",
        );
    }
    if !deals && upsert.inputs.iter().any(|i| i.id_property != "email") {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Contacts are upserted by email here",
        );
    }
    let mut data = state
        .data
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let results: Vec<Value> = upsert
        .inputs
        .into_iter()
        .map(|input| {
            let (r, new) = upsert_into(&mut data, deals, input);
            json!({"id": r.id, "new": new, "properties": r.properties})
        })
        .collect();
    axum::Json(json!({"status": "COMPLETE", "results": results})).into_response()
}

async fn contacts(
    State(s): State<Arc<CrmState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    upsert(s, headers, body, false).await
}

async fn deals(
    State(s): State<Arc<CrmState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    upsert(s, headers, body, true).await
}

async fn associate(
    State(s): State<Arc<CrmState>>,
    headers: HeaderMap,
    Path((deal, contact)): Path<(String, String)>,
) -> Response {
    if !authorized(&s, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        );
    }
    let mut data = s
        .data
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !data.deals.iter().any(|d| d.id == deal) || !data.contacts.iter().any(|c| c.id == contact) {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "resource not found",
        );
    }
    data.associations.insert((deal.clone(), contact.clone()));
    axum::Json(
        json!({"status": "COMPLETE", "results": [{"from": {"id": deal}, "to": {"id": contact}}]}),
    )
    .into_response()
}

async fn search_tasks(
    State(s): State<Arc<CrmState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !authorized(&s, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        );
    }
    let filter = &body["filterGroups"][0]["filters"][0];
    let (Some(prop), Some("EQ"), Some(value)) = (
        filter["propertyName"].as_str(),
        filter["operator"].as_str(),
        filter["value"].as_str(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "one EQ filter is supported here",
        );
    };
    let data = s
        .data
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found: Vec<Value> = data
        .tasks
        .iter()
        .filter(|(t, _)| t.properties.get(prop).map(String::as_str) == Some(value))
        .map(|(t, _)| json!({"id": t.id, "properties": t.properties}))
        .collect();
    axum::Json(json!({"total": found.len(), "results": found})).into_response()
}

async fn create_task(
    State(s): State<Arc<CrmState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !authorized(&s, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        );
    }
    let Ok(properties) =
        serde_json::from_value::<BTreeMap<String, String>>(body["properties"].clone())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON",
        );
    };
    if !properties.contains_key("hs_timestamp") {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "hs_timestamp is required",
        );
    }
    let to: Vec<String> = body["associations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["to"]["id"].as_str().map(str::to_owned))
        .collect();
    let mut data = s
        .data
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    data.next_id += 1;
    let record = CrmRecord {
        id: data.next_id.to_string(),
        properties,
    };
    data.tasks.push((record.clone(), to));
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": record.id, "properties": record.properties})),
    )
        .into_response()
}

impl CrmStandIn {
    /// Starts the stand-in on a free loopback port. It accepts `token` as the private app's
    /// token; with `stages`, a deal in any other stage is refused (400).
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(token: &str, stages: Option<Vec<String>>) -> std::io::Result<Self> {
        let (listener, addr) = bind(0).await?;
        let state = Arc::new(CrmState {
            token: token.to_owned(),
            stages: stages.map(|s| s.into_iter().collect()),
            data: Mutex::new(Data::default()),
        });
        let router = Router::new()
            .route("/crm/v3/objects/contacts/batch/upsert", post(contacts))
            .route("/crm/v3/objects/deals/batch/upsert", post(deals))
            .route(
                "/crm/v4/objects/deals/{deal}/associations/default/contacts/{contact}",
                put(associate),
            )
            .route("/crm/v3/objects/tasks/search", post(search_tasks))
            .route("/crm/v3/objects/tasks", post(create_task))
            .with_state(state.clone());
        let (stop, shutdown) = Shutdown::new();
        let task = serve(listener, router, shutdown);
        let url = Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        Ok(Self {
            url,
            state,
            stop,
            task,
        })
    }

    /// The base URL (ends with `/`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    fn data<T>(&self, f: impl FnOnce(&Data) -> T) -> T {
        f(&self
            .state
            .data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The contacts.
    pub fn contacts(&self) -> Vec<CrmRecord> {
        self.data(|d| d.contacts.clone())
    }

    /// The deals.
    pub fn deals(&self) -> Vec<CrmRecord> {
        self.data(|d| d.deals.clone())
    }

    /// The tasks, each with the ids it is associated to.
    pub fn tasks(&self) -> Vec<(CrmRecord, Vec<String>)> {
        self.data(|d| d.tasks.clone())
    }

    /// The (deal, contact) associations.
    pub fn associations(&self) -> Vec<(String, String)> {
        self.data(|d| d.associations.iter().cloned().collect())
    }

    /// Stops it and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
