//! Hints: what a verified webhook says happened to a record. A hint is never
//! trusted for data: the engine records it, then fetches the record itself.
//! Order and duplicates do not matter.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// How a hint names its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordRef {
    /// By the system's record id.
    Id(String),
    /// By its match key (an email address), when the event carries no usable id.
    Key(String),
}

/// What happened, as the vendor's event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HintKind {
    /// Created, or one of its values changed.
    Changed,
    /// Archived or deleted.
    Deleted,
    /// Restored from the archive.
    Restored,
    /// Merged into another record, which survives.
    Merged {
        /// The surviving record's id.
        into: String,
    },
    /// Its match key changed (Mailchimp's `upemail`).
    Rekeyed {
        /// The previous key.
        from: String,
    },
}

/// One verified event about one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    /// The vendor's event id, or a digest of the event when it has none; duplicates share it.
    pub event_id: String,
    /// The record.
    pub record: RecordRef,
    /// What happened.
    #[serde(flatten)]
    pub kind: HintKind,
    /// When it happened, by the vendor's clock.
    pub occurred_at: Millis,
}

/// Why a webhook request was refused. The intake answers 401 to the first two
/// and 400 to the last, and never says more than that to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No signature or secret, or one that does not match.
    #[error("the request is not signed by the vendor")]
    Forged,
    /// Signed, but too long ago (or too far ahead): possibly replayed.
    #[error("the request's timestamp is outside the accepted window")]
    Stale,
    /// Signed, but not a body the vendor sends.
    #[error("the request body cannot be read: {0}")]
    Malformed(String),
}
