//! HubSpot CRM v3 request and response bodies for contacts, as the public
//! OpenAPI specification names them. Every property value is a string (or
//! null for a requested property that has no value).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Property name to value.
pub type Properties = BTreeMap<String, Option<String>>;

/// `SimplePublicObject`: one contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimplePublicObject {
    /// The contact id: a string holding a number.
    pub id: String,
    /// Requested property values.
    pub properties: Properties,
    /// ISO 8601 creation time.
    pub created_at: String,
    /// ISO 8601 time of the last change.
    pub updated_at: String,
    /// Whether the contact is archived.
    #[serde(default)]
    pub archived: bool,
    /// ISO 8601 archive time, only on archived contacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// The history of the properties asked for with `propertiesWithHistory`,
    /// newest entry first. Absent when none were asked for, and always on search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties_with_history: Option<BTreeMap<String, Vec<ValueWithTimestamp>>>,
    /// Set on results of a batch upsert: whether the contact was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<bool>,
    /// Echo of the input's trace id on batch write results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_write_trace_id: Option<String>,
}

/// `ValueWithTimestamp`: one entry of a property's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueWithTimestamp {
    /// The value set, as a string (`""` when the property was cleared). Required
    /// by the spec; read leniently, as a requested property's value can be null.
    #[serde(default)]
    pub value: Option<String>,
    /// ISO 8601 time the value was set.
    pub timestamp: String,
    /// What set it: `CRM_UI` (a person), `INTEGRATION` (an app), `IMPORT`, ...
    #[serde(default)]
    pub source_type: String,
    /// Which one of that source: an app id, `userId:<id>`, an import id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// A readable name of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_label: Option<String>,
    /// The user who set it, if a person did. An integer in the spec; kept as
    /// any JSON value because tandem does not read it and must not fail on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by_user_id: Option<serde_json::Value>,
}

/// `paging.next` of a collection response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextPage {
    /// The cursor (list) or offset (search) of the next page.
    pub after: String,
    /// A relative link to the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// `paging` of a collection response; absent on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paging {
    /// The next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextPage>,
}

/// `CollectionResponse…`: a page of the contact list, or of a search (which adds `total`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionResponse {
    /// Search only: how many contacts match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The contacts of this page.
    pub results: Vec<SimplePublicObject>,
    /// Where the next page starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// One filter of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// The property compared.
    pub property_name: String,
    /// `EQ`, `GTE`, `BETWEEN`, ...
    pub operator: String,
    /// The value compared with (epoch milliseconds for dates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Upper bound of `BETWEEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_value: Option<String>,
    /// Values of `IN` and `NOT_IN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// Filters AND-ed together; groups are OR-ed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterGroup {
    /// The filters of the group.
    pub filters: Vec<Filter>,
}

/// One sort of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sort {
    /// The property sorted on.
    pub property_name: String,
    /// `ASCENDING` or `DESCENDING`.
    pub direction: String,
}

/// `PublicObjectSearchRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    /// Filter groups (OR of ANDs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_groups: Vec<FilterGroup>,
    /// Sort order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sorts: Vec<Sort>,
    /// Free-text query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Properties to return.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
    /// Page size, at most 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Offset of the page, as a string holding an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// One input of `batch/read` and `batch/archive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchId {
    /// The id, or the value of `idProperty`.
    pub id: String,
}

/// `BatchReadInputSimplePublicObjectId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReadRequest {
    /// Contacts to read.
    pub inputs: Vec<BatchId>,
    /// A unique property to read by instead of the id (`email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_property: Option<String>,
    /// Properties to return.
    #[serde(default)]
    pub properties: Vec<String>,
    /// Properties to return with their history. The spec marks the field
    /// required, so it is sent even when empty; asking for any history lowers
    /// the batch limit from 100 inputs to 50.
    #[serde(default)]
    pub properties_with_history: Vec<String>,
}

/// One input of `batch/create`, `batch/update` and `batch/upsert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchWriteInput {
    /// The contact to update (update, upsert); absent on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The unique property `id` holds (update, upsert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_property: Option<String>,
    /// Values to write; `""` clears a property.
    pub properties: BTreeMap<String, String>,
    /// A caller-chosen id that errors of a 207 response refer back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_write_trace_id: Option<String>,
    /// Associations to create (create only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associations: Option<Vec<serde_json::Value>>,
}

/// Body of every batch endpoint: `{"inputs": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInputs<T> {
    /// At most 100 inputs.
    pub inputs: Vec<T>,
}

/// `StandardError`: one failed input of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandardError {
    /// Always `"error"`.
    #[serde(default)]
    pub status: String,
    /// `VALIDATION_ERROR`, `OBJECT_NOT_FOUND`, `CONFLICT`, ...
    #[serde(default)]
    pub category: String,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
    /// Details; `objectWriteTraceId` and `ids` point back at inputs.
    #[serde(default)]
    pub context: BTreeMap<String, Vec<String>>,
    /// Finer errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<serde_json::Value>,
}

/// `BatchResponseSimplePublicObject` (and its upsert variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// `COMPLETE`, `PENDING`, `PROCESSING` or `CANCELED`.
    pub status: String,
    /// Contacts read or written.
    pub results: Vec<SimplePublicObject>,
    /// Failed inputs (207 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<StandardError>,
    /// How many inputs failed (207 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_errors: Option<u32>,
    /// When processing started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When processing completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

/// The error body of every endpoint. HubSpot says to treat every field as optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// `"error"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
    /// An id HubSpot support can trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// `VALIDATION_ERROR`, `INVALID_AUTHENTICATION`, `RATE_LIMITS`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Finer errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<serde_json::Value>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// On 429: `TEN_SECONDLY_ROLLING` or `DAILY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of the vendor's documented payloads.
    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../fixtures/hubspot/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn reads_the_documented_contact_shape() {
        let contact: SimplePublicObject = serde_json::from_str(&fixture("contact.json")).unwrap();
        assert_eq!(contact.id, "512");
        assert_eq!(contact.properties["firstname"].as_deref(), Some("Ada"));
        assert_eq!(contact.updated_at, "2019-12-07T16:50:06.678Z");
        // A requested property without a value may come back as null.
        let with_null: SimplePublicObject = serde_json::from_str(
            &fixture("contact.json").replace("\"firstname\": \"Ada\"", "\"firstname\": null"),
        )
        .unwrap();
        assert_eq!(with_null.properties["firstname"], None);
    }

    #[test]
    fn reads_a_search_page_with_its_total_and_offset() {
        let page: CollectionResponse = serde_json::from_str(&fixture("search-page.json")).unwrap();
        assert_eq!((page.total, page.results.len()), (Some(1234), 1));
        assert_eq!(page.paging.unwrap().next.unwrap().after, "200");
    }

    #[test]
    fn reads_a_multi_status_error() {
        let response: BatchResponse =
            serde_json::from_str(&fixture("batch-multi-status.json")).unwrap();
        assert_eq!(
            response.errors[0].context["objectWriteTraceId"],
            vec!["7".to_string()]
        );
        assert_eq!(response.num_errors, Some(1));
    }

    #[test]
    fn reads_the_documented_error_bodies() {
        let validation: ErrorBody =
            serde_json::from_str(&fixture("error-validation.json")).unwrap();
        assert_eq!(validation.category.as_deref(), Some("VALIDATION_ERROR"));
        assert!(
            validation
                .message
                .starts_with("Property values were not valid")
        );
        let limited: ErrorBody = serde_json::from_str(&fixture("error-rate-limit.json")).unwrap();
        assert_eq!(limited.policy_name.as_deref(), Some("TEN_SECONDLY_ROLLING"));
    }
}
