//! HubSpot's wire format: every path and field name the client uses, in one place.
//!
//! Sources (HubSpot's public documentation, and its official generated Node client
//! `HubSpot/hubspot-api-nodejs`, whose paths are the REST paths):
//! - Contacts, batch upsert by a unique property (`idProperty=email`):
//!   <https://developers.hubspot.com/docs/api-reference/latest/crm/objects/contacts/batch/upsert-contacts>
//! - Deals, batch upsert by a unique property value:
//!   <https://developers.hubspot.com/docs/api-reference/2026-03/crm/objects/deals/batch/upsert-deals>;
//!   `dealname`, `dealstage` (internal stage id), `pipeline`, `amount`:
//!   <https://developers.hubspot.com/docs/api/crm/deals>
//! - Tasks (`hs_timestamp` required; `hs_task_subject`, `hs_task_body`, `hs_task_status`,
//!   `hs_task_priority`, `hs_task_type`; task→contact association type 204) and tasks search:
//!   <https://developers.hubspot.com/docs/api/crm/tasks>
//! - Associations v4, default (unlabelled) association between two records:
//!   `PUT /crm/v4/objects/{from}/{fromId}/associations/default/{to}/{toId}` (HS Node client
//!   `codegen/crm/associations/v4/apis/BasicApi.ts`).
//! - Authentication: `Authorization: Bearer <private app access token>`:
//!   <https://developers.hubspot.com/docs/api/private-apps>
//!
//! The legacy `/crm/v3/...` and `/crm/v4/...` paths stay supported beside the date-versioned
//! `/crm/objects/2026-03/...` ones, which have the same shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST`: contacts batch upsert.
pub const CONTACTS_UPSERT: &str = "crm/v3/objects/contacts/batch/upsert";
/// `POST`: deals batch upsert.
pub const DEALS_UPSERT: &str = "crm/v3/objects/deals/batch/upsert";
/// `POST`: create a task.
pub const TASKS: &str = "crm/v3/objects/tasks";
/// `POST`: search tasks.
pub const TASKS_SEARCH: &str = "crm/v3/objects/tasks/search";

/// `PUT`: the default association of a deal with a contact.
pub fn deal_contact_association(deal: &str, contact: &str) -> String {
    format!("crm/v4/objects/deals/{deal}/associations/default/contacts/{contact}")
}

/// Contact properties.
pub const EMAIL: &str = "email";
/// First name.
pub const FIRSTNAME: &str = "firstname";
/// Last name.
pub const LASTNAME: &str = "lastname";
/// Phone.
pub const PHONE: &str = "phone";
/// Deal name.
pub const DEALNAME: &str = "dealname";
/// Deal stage (internal id).
pub const DEALSTAGE: &str = "dealstage";
/// Pipeline (internal id).
pub const PIPELINE: &str = "pipeline";
/// Deal amount (a decimal in the account's currency).
pub const AMOUNT: &str = "amount";
/// Task due time (ms since the epoch); required.
pub const HS_TIMESTAMP: &str = "hs_timestamp";
/// Task subject.
pub const HS_TASK_SUBJECT: &str = "hs_task_subject";
/// Task body.
pub const HS_TASK_BODY: &str = "hs_task_body";
/// Task status: `NOT_STARTED` or `COMPLETED`.
pub const HS_TASK_STATUS: &str = "hs_task_status";
/// Task type: `EMAIL`, `CALL` or `TODO`.
pub const HS_TASK_TYPE: &str = "hs_task_type";
/// Task → contact, HubSpot-defined.
pub const TASK_TO_CONTACT: u32 = 204;

/// One input of a batch upsert.
#[derive(Debug, Serialize)]
pub struct UpsertInput {
    /// The unique property's value.
    pub id: String,
    /// The unique property.
    #[serde(rename = "idProperty")]
    pub id_property: String,
    /// The properties to write.
    pub properties: BTreeMap<String, String>,
}

/// A batch upsert.
#[derive(Debug, Serialize)]
pub struct BatchUpsert {
    /// The inputs.
    pub inputs: Vec<UpsertInput>,
}

/// A batch response.
#[derive(Debug, Deserialize)]
pub struct BatchResponse {
    /// The records written.
    pub results: Vec<Record>,
}

/// A record as HubSpot returns it (the fields the client reads).
#[derive(Debug, Deserialize)]
pub struct Record {
    /// Its internal id.
    pub id: String,
}

/// A task to create, with its associations.
#[derive(Debug, Serialize)]
pub struct CreateTask {
    /// The properties.
    pub properties: BTreeMap<String, String>,
    /// The associations.
    pub associations: Vec<Association>,
}

/// One association of a new record.
#[derive(Debug, Serialize)]
pub struct Association {
    /// The other record.
    pub to: AssociationTarget,
    /// The association types.
    pub types: Vec<AssociationType>,
}

/// The other record of an association.
#[derive(Debug, Serialize)]
pub struct AssociationTarget {
    /// Its id.
    pub id: String,
}

/// An association type.
#[derive(Debug, Serialize)]
pub struct AssociationType {
    /// `HUBSPOT_DEFINED`.
    #[serde(rename = "associationCategory")]
    pub category: &'static str,
    /// The type id.
    #[serde(rename = "associationTypeId")]
    pub type_id: u32,
}

/// A search request: one filter group of equality filters.
#[derive(Debug, Serialize)]
pub struct Search {
    /// The filter groups.
    #[serde(rename = "filterGroups")]
    pub filter_groups: Vec<FilterGroup>,
    /// At most this many.
    pub limit: u32,
}

/// Filters that must all hold.
#[derive(Debug, Serialize)]
pub struct FilterGroup {
    /// The filters.
    pub filters: Vec<Filter>,
}

/// One filter.
#[derive(Debug, Serialize)]
pub struct Filter {
    /// The property.
    #[serde(rename = "propertyName")]
    pub property: String,
    /// `EQ`.
    pub operator: &'static str,
    /// The value.
    pub value: String,
}

/// A search response.
#[derive(Debug, Deserialize)]
pub struct SearchResponse {
    /// How many matched.
    pub total: u64,
    /// The first page.
    pub results: Vec<Record>,
}
