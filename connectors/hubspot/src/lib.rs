//! The HubSpot CRM v3 connector: a client for contacts ([`client`]), the API's
//! JSON shapes ([`model`]) and, with the `sim` feature, an in-memory simulator
//! of the same API ([`sim`]).
//!
//! Records use the paths `properties.<name>`; the match key is the `email` property.

pub mod client;
pub mod model;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

pub use client::{HubSpotClient, HubSpotConfig};

/// The vendor's name in errors, logs and configuration.
pub const VENDOR: &str = "hubspot";
/// The property that holds the match key.
pub const KEY_PROPERTY: &str = "email";
/// The property contacts are searched and sorted by for changes.
pub const MODIFIED_PROPERTY: &str = "lastmodifieddate";

const PATH_PREFIX: &str = "properties.";

/// The record path of a property: `firstname` is `properties.firstname`.
pub fn path_of(property: &str) -> String {
    format!("{PATH_PREFIX}{property}")
}

/// The property a record path names, if it names one.
pub fn property_of(path: &str) -> Option<&str> {
    path.strip_prefix(PATH_PREFIX)
        .filter(|name| !name.is_empty() && !name.contains('.'))
}

/// Check a record path a policy uses: it must name one property (`properties.<name>`),
/// in HubSpot's internal-name form (lowercase letters, digits, `_`).
pub fn check_path(path: &str) -> Result<(), String> {
    let Some(name) = property_of(path) else {
        return Err(format!(
            "HubSpot paths name a contact property, like `properties.firstname`; got `{path}`"
        ));
    };
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a HubSpot internal property name (lowercase letters, digits and `_`)"
        ))
    }
}
