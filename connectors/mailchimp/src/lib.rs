//! The Mailchimp Marketing v3 connector for audience members: a client
//! ([`client`]), the API's JSON shapes ([`model`]) and, with the `sim` feature,
//! an in-memory simulator of the same API ([`sim`]).
//!
//! Records use the member's own field names as paths (`email_address`,
//! `status`, `language`, `vip`) and `merge_fields.<TAG>` for merge fields. The
//! record id is the member's `contact_id`, which survives a change of email
//! address (the subscriber hash does not); the match key is `email_address`.

pub mod client;
pub mod model;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

use md5::{Digest, Md5};

pub use client::{MailchimpClient, MailchimpConfig};

/// The vendor's name in errors, logs and configuration.
pub const VENDOR: &str = "mailchimp";
/// The member field that holds the match key.
pub const KEY_FIELD: &str = "email_address";
/// Member fields a policy may map besides merge fields.
pub const MEMBER_FIELDS: [&str; 5] = ["email_address", "status", "email_type", "language", "vip"];

const MERGE_PREFIX: &str = "merge_fields.";

/// The subscriber hash: lowercase hex MD5 of the lowercased email address.
pub fn subscriber_hash(email: &str) -> String {
    hex::encode(Md5::digest(email.trim().to_lowercase().as_bytes()))
}

/// The merge tag a record path names, if it names one.
pub fn merge_tag_of(path: &str) -> Option<&str> {
    path.strip_prefix(MERGE_PREFIX)
        .filter(|tag| !tag.is_empty() && !tag.contains('.'))
}

/// Check a record path a policy uses: a member field or `merge_fields.<TAG>`.
pub fn check_path(path: &str) -> Result<(), String> {
    if MEMBER_FIELDS.contains(&path) {
        return Ok(());
    }
    match merge_tag_of(path) {
        Some(tag)
            if tag.len() <= 10
                && tag
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') =>
        {
            Ok(())
        }
        Some(tag) => Err(format!(
            "`{tag}` is not a Mailchimp merge tag (up to 10 uppercase letters, digits and `_`)"
        )),
        None => Err(format!(
            "Mailchimp paths are one of {} or `merge_fields.<TAG>`; got `{path}`",
            MEMBER_FIELDS.map(|f| format!("`{f}`")).join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_hash_is_md5_of_the_lowercased_email() {
        assert_eq!(
            subscriber_hash("Test@Example.com"),
            "55502f40dc8b7c769880b10874abc9d0"
        );
    }

    #[test]
    fn paths_are_member_fields_or_merge_tags() {
        assert!(check_path("merge_fields.FNAME").is_ok());
        assert!(check_path("status").is_ok());
        assert!(check_path("merge_fields.fname").is_err());
        assert!(check_path("properties.firstname").is_err());
    }
}
