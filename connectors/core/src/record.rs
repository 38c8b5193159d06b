//! Records as connectors hand them to the engine: an id, a match key, a map of
//! vendor paths to values and the record's change time.

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
    /// Whether the system reports the record as archived or deleted.
    #[serde(default)]
    pub archived: bool,
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
