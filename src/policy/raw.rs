//! The first stage of reading a policy: TOML into plain structs, with spans
//! kept for the second stage's messages. Unknown keys are errors here.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// The pair's name; the file's stem if absent.
    pub name: Option<Spanned<String>>,
    /// The left connector, by its name in the configuration.
    pub left: Spanned<String>,
    /// The right connector.
    pub right: Spanned<String>,
    /// How records are linked.
    #[serde(rename = "match")]
    pub matching: Spanned<RawMatch>,
    /// Where missing records are created: `both`, `none`, `left-to-right`, `right-to-left`.
    pub create: Option<Spanned<String>>,
    /// The synced fields by canonical name.
    pub fields: Spanned<BTreeMap<Spanned<String>, Spanned<RawField>>>,
    /// What events on each connector do on the other side, by connector name.
    #[serde(default)]
    pub on: BTreeMap<Spanned<String>, Spanned<RawOn>>,
}

/// `[on.<connector>]`: events on that connector and what they do on the other side.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOn {
    /// The record was archived or deleted: `ignore`, `mark`, `archive`, `delete-permanent`.
    pub archived: Option<Spanned<String>>,
    /// The member unsubscribed: `ignore` or `mark`.
    pub unsubscribed: Option<Spanned<String>>,
    /// The member was cleaned (bounces): `ignore` or `mark`.
    pub cleaned: Option<Spanned<String>>,
    /// A path on the other connector that `mark` writes the event's name into.
    pub mark: Option<Spanned<String>>,
}

/// `[match]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// The field whose normalized value links two records.
    pub field: Spanned<String>,
}

/// `[fields.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    /// Path on the left connector.
    pub left: Spanned<String>,
    /// Path on the right connector.
    pub right: Spanned<String>,
    /// `source_of_truth`, `newest` or `manual`.
    pub rule: Option<Spanned<String>>,
    /// With `source_of_truth`: the side that wins.
    pub source: Option<Spanned<String>>,
    /// With `newest`: the side that wins equal change times (`manual` by default).
    pub tie: Option<Spanned<String>>,
}
