//! Records as connectors hand them to the engine: an id, a match key, a map of
//! vendor paths to values, the record's change time and, where the API says
//! so, each field's own change time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Millis;

/// Vendor path (`properties.phone`, `merge_fields.PHONE`) to value. `Null` means empty.
pub type FieldMap = BTreeMap<String, Value>;

/// One record of a SaaS system, as read from its API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The system's own id for the record: HubSpot's contact id, Mailchimp's subscriber hash.
    pub id: String,
    /// The raw match key (an email address), if the record has one.
    pub key: Option<String>,
    /// The record's values, by vendor path. Paths the API did not return are absent.
    pub fields: FieldMap,
    /// When the record last changed, by the system's own clock.
    pub updated_at: Millis,
    /// By vendor path, when that field's current value was set, where the API
    /// says so (HubSpot's property history). A path absent here changed at
    /// `updated_at` at the latest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changed_at: BTreeMap<String, Millis>,
    /// Where the record stands: active, archived, or (on an email platform)
    /// unsubscribed or cleaned.
    #[serde(default)]
    pub standing: Standing,
}

impl Record {
    /// Whether the system reports the record as archived or deleted.
    pub fn is_archived(&self) -> bool {
        self.standing == Standing::Archived
    }
}

/// Where a record stands in its system, apart from its values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Live (on an email platform: subscribed, pending or transactional).
    #[default]
    Active,
    /// Archived or deleted.
    Archived,
    /// Unsubscribed from the email platform.
    Unsubscribed,
    /// Removed by the email platform after bounces or abuse reports.
    Cleaned,
}

impl Standing {
    /// The word policies and marks use: `active`, `archived`, `unsubscribed`, `cleaned`.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Archived => "archived",
            Standing::Unsubscribed => "unsubscribed",
            Standing::Cleaned => "cleaned",
        }
    }
}

/// The normal form of a match key: trimmed and lowercased, as both vendors
/// compare email addresses case-insensitively. An empty key is no key.
pub fn normalize_key(raw: &str) -> Option<String> {
    let key = raw.trim().to_lowercase();
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_key("  Ada@Example.COM "),
            Some("ada@example.com".into())
        );
        assert_eq!(normalize_key("   "), None);
    }
}
