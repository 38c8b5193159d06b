//! The `Connector` trait: what the engine asks of every SaaS system.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::{ConnectorError, FieldMap, Record};

/// One page of changes from [`Connector::poll`].
#[derive(Debug, Clone)]
pub struct Page {
    /// Records that changed (or, during a first full listing, every record).
    /// The same record may appear on several pages or polls; the engine dedupes.
    pub records: Vec<Record>,
    /// The cursor to store once these records are durable, and to pass to the next poll.
    pub cursor: String,
    /// Whether more pages are ready now. `false` means the poll has caught up.
    pub more: bool,
    /// Whether this poll is part of a complete listing of every record, started
    /// from no cursor. When such a listing ends, a key it did not return does not
    /// exist on the system (apart from records created while it ran).
    pub full_listing: bool,
}

/// What a [`Write`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum WriteOp {
    /// Create the record with this key, or, if one already exists, update it.
    /// Retrying a create therefore never makes a duplicate.
    Create,
    /// Update the record with this id; never creates one.
    Update {
        /// The system's id of the record.
        id: String,
    },
    /// Archive the record with this id (restorable where the system allows).
    Archive {
        /// The system's id of the record.
        id: String,
    },
    /// Delete the record with this id for good, where the system can. Only an
    /// explicit policy asks for this.
    DeletePermanently {
        /// The system's id of the record.
        id: String,
    },
}

/// One write to a system: set these paths on this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write {
    /// Create or update.
    #[serde(flatten)]
    pub op: WriteOp,
    /// The record's match key (an email address), already normalized.
    pub key: String,
    /// Values to set, by vendor path. `Null` clears a value.
    pub fields: FieldMap,
}

/// The outcome of one write: the record as the system holds it afterwards, or why it failed.
pub type WriteOutcome = Result<Record, ConnectorError>;

/// A SaaS system as the engine sees it.
///
/// Delivery is at-least-once: the engine retries a write whose outcome it did not
/// record, so every write must be idempotent (creates upsert by key). Calls for one
/// connector may run concurrently; a connector bounds its own concurrency and rate.
pub trait Connector: Send + Sync {
    /// Check that the system is reachable and the credentials and settings are accepted.
    /// Called once before a run; it writes nothing.
    fn check(&self) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Read the next page of changes after `cursor` (`None`: list everything).
    fn poll(
        &self,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page, ConnectorError>> + Send;

    /// Read the records with these normalized keys. Keys with no record are left out.
    fn lookup(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Record>, ConnectorError>> + Send;

    /// Read the records with these ids, as a webhook hint asks. A record that is
    /// archived comes back with that standing; an id the system does not know is
    /// left out, which never means it was deleted.
    fn fetch(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Record>, ConnectorError>> + Send;

    /// Apply writes, batched as the API allows. Returns one outcome per write, in
    /// input order, or an error when the whole call failed and nothing is known.
    fn apply(
        &self,
        writes: &[Write],
    ) -> impl Future<Output = Result<Vec<WriteOutcome>, ConnectorError>> + Send;
}
