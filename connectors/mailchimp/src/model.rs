//! Mailchimp Marketing v3 request and response bodies for list members, as the
//! official specification and SDK types name them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A list member, with the fields tandem reads; others are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The subscriber hash: MD5 of the lowercased email. Changes with the email.
    pub id: String,
    /// The email address.
    pub email_address: String,
    /// `subscribed`, `unsubscribed`, `cleaned`, `pending`, `transactional` or `archived`.
    pub status: String,
    /// Merge field values by tag: strings, numbers or an address object.
    #[serde(default)]
    pub merge_fields: BTreeMap<String, Value>,
    /// When the member last changed, ISO 8601 with offset.
    #[serde(default)]
    pub last_changed: String,
    /// The member's tags; the payload shows at most 50 of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// How many tags the member has, including any the payload leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_count: Option<u64>,
    /// Every other field as the API returned it.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Member {
    /// Whether the payload lists every tag of the member: it shows at most 50,
    /// and `tags_count` counts them all.
    pub fn has_all_tags(&self) -> bool {
        match (&self.tags, self.tags_count) {
            (Some(tags), Some(count)) => tags.len() as u64 >= count,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// A tag on a member: in the member payload `{id, name}`, from the tags
/// endpoint also `date_added`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    /// The tag's id in the audience.
    #[serde(default)]
    pub id: u64,
    /// The tag's name.
    pub name: String,
    /// When the tag was added to the member, ISO 8601 with offset (tags endpoint only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_added: Option<String>,
}

/// `GET /lists/{list_id}/members/{subscriber_hash}/tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberTags {
    /// The tags of this page.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The member's tags across pages.
    pub total_items: u64,
}

/// Body of `POST /lists/{list_id}/members/{subscriber_hash}/tags` (answered 204).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagChanges {
    /// Tags to add (`active`) or remove (`inactive`); an unknown active tag is created.
    pub tags: Vec<TagChange>,
    /// Whether automations triggered by these tags stay quiet (true: a sync, not a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_syncing: Option<bool>,
}

/// One tag to add or remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagChange {
    /// The tag's name.
    pub name: String,
    /// `active` to add the tag, `inactive` to remove it.
    pub status: String,
}

/// `GET /lists/{list_id}/members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembersPage {
    /// The members of this page.
    #[serde(default)]
    pub members: Vec<Member>,
    /// The list.
    #[serde(default)]
    pub list_id: String,
    /// Members matching the query, across pages.
    pub total_items: u64,
}

/// One member of a batch subscribe (`POST /lists/{list_id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchMember {
    /// The email address.
    pub email_address: String,
    /// The member's status, which overwrites an existing member's consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The status a new member gets; an existing member keeps theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_if_new: Option<String>,
    /// Merge field values by tag.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub merge_fields: BTreeMap<String, Value>,
    /// Tags to add to the member (all of them, with the batch's `sync_tags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Other member fields (`language`, `vip`, `email_type`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Body of a batch subscribe: at most 500 members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSubscribe {
    /// Members to add or update.
    pub members: Vec<BatchMember>,
    /// Whether to update members that exist already instead of reporting an error.
    #[serde(default)]
    pub update_existing: bool,
    /// Whether the given tags replace the member's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_tags: Option<bool>,
}

/// One failed member of a batch subscribe, reported inside a 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchError {
    /// The member's email address.
    pub email_address: String,
    /// What went wrong.
    pub error: String,
    /// `ERROR_CONTACT_EXISTS` or `ERROR_GENERIC`.
    #[serde(default)]
    pub error_code: String,
    /// The field concerned, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The message about that field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_message: Option<String>,
}

/// Answer of a batch subscribe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSubscribeResponse {
    /// Members created.
    #[serde(default)]
    pub new_members: Vec<Member>,
    /// Members updated.
    #[serde(default)]
    pub updated_members: Vec<Member>,
    /// Members that failed.
    #[serde(default)]
    pub errors: Vec<BatchError>,
    /// How many were created.
    #[serde(default)]
    pub total_created: u64,
    /// How many were updated.
    #[serde(default)]
    pub total_updated: u64,
    /// How many failed.
    #[serde(default)]
    pub error_count: u64,
}

/// A `problem+json` error body; Mailchimp marks all five fields required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A documentation URL.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `Invalid Resource`, `API Key Invalid`, `Resource Not Found`, ...
    #[serde(default)]
    pub title: String,
    /// HTTP status.
    #[serde(default)]
    pub status: u16,
    /// What went wrong.
    #[serde(default)]
    pub detail: String,
    /// An id of this error.
    #[serde(default)]
    pub instance: String,
    /// Field errors of `Invalid Resource`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One field error of a `problem+json` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of the vendor's documented payloads.
    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../fixtures/mailchimp/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn reads_a_member_and_keeps_unknown_fields() {
        let member: Member = serde_json::from_str(&fixture("member.json")).unwrap();
        assert_eq!(member.merge_fields["FNAME"], "Ada");
        assert_eq!(
            member.extra["contact_id"],
            "a4d9e8f7c6b5a4d3e2f1a0b9c8d7e6f5"
        );
        assert_eq!(member.tags, Some(vec![]));
        assert!(member.has_all_tags());
        let back = serde_json::to_value(&member).unwrap();
        assert_eq!(
            back["timestamp_signup"], "",
            "unset timestamps stay empty strings"
        );
    }

    #[test]
    fn reads_a_problem_with_field_errors() {
        let problem: Problem =
            serde_json::from_str(&fixture("error-invalid-resource.json")).unwrap();
        assert_eq!(
            (problem.title.as_str(), problem.status),
            ("Invalid Resource", 400)
        );
        assert_eq!(problem.errors[0].field, "FNAME");
    }

    #[test]
    fn reads_per_member_errors_of_a_batch_subscribe() {
        let answer: BatchSubscribeResponse =
            serde_json::from_str(&fixture("batch-subscribe.json")).unwrap();
        assert_eq!(answer.error_count, 1);
        assert_eq!(answer.errors[0].email_address, "bounce@example.com");
        assert_eq!(answer.errors[0].error_code, "ERROR_GENERIC");
    }
}
