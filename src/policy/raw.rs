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
