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
    /// Which records of each connector sync, by connector name.
    #[serde(default)]
    pub scope: BTreeMap<Spanned<String>, Spanned<RawScope>>,
    /// Cases the policy must decide as written.
    #[serde(default)]
    pub examples: Vec<Spanned<RawExample>>,
}

/// `[scope.<connector>]`: which of that connector's records sync.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    /// Paths that must hold a value.
    pub require: Option<Vec<Spanned<String>>>,
    /// Path to the values one of which it must hold.
    pub only: Option<BTreeMap<Spanned<String>, Spanned<Vec<toml::Value>>>>,
    /// Path to values it must not hold.
    pub except: Option<BTreeMap<Spanned<String>, Spanned<Vec<toml::Value>>>>,
}

/// `[[examples]]`: one field's case and what the policy must make of it, key
/// by key, since the sides' values are keyed by connector name (or `left`/`right`).
pub type RawExample = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

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
    /// `text` (default), `number`, `bool`, `date` or `list`.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// `source_of_truth`, `newest`, `union`, `text-merge`, `max`, `min`, `prefer-non-empty` or `manual`.
    pub rule: Option<Spanned<String>>,
    /// With `source_of_truth`: the side that wins.
    pub source: Option<Spanned<String>>,
    /// With `newest` and `prefer-non-empty`: the side that wins a tie (`manual` by default).
    pub tie: Option<Spanned<String>>,
    /// With `newest`: changes this many seconds apart or less count as simultaneous.
    pub skew_secs: Option<Spanned<u64>>,
    /// Whether an emptied value may erase the other side's value (no by default).
    pub allow_empty: Option<bool>,
    /// Normalizations of text: `trim` (the default), `lowercase`, `uppercase`, `collapse_spaces`, `phone`.
    pub normalize: Option<Spanned<Vec<Spanned<String>>>>,
    /// Left value to canonical value.
    pub left_map: Option<Spanned<BTreeMap<String, toml::Value>>>,
    /// Right value to canonical value.
    pub right_map: Option<Spanned<BTreeMap<String, toml::Value>>>,
    /// Canonical value to left value, where `left_map` cannot be reversed.
    pub left_map_write: Option<Spanned<BTreeMap<String, toml::Value>>>,
    /// Canonical value to right value, where `right_map` cannot be reversed.
    pub right_map_write: Option<Spanned<BTreeMap<String, toml::Value>>>,
    /// Booleans are stored the other way round on the left.
    pub left_invert: Option<Spanned<bool>>,
    /// Booleans are stored the other way round on the right.
    pub right_invert: Option<Spanned<bool>>,
    /// A list is one text joined by this separator on the left (HubSpot's `;`).
    pub left_split: Option<Spanned<String>>,
    /// A list is one text joined by this separator on the right.
    pub right_split: Option<Spanned<String>>,
    /// How a date is written on the left: `date`, `epoch_ms` or `iso`.
    pub left_format: Option<Spanned<String>>,
    /// How a date is written on the right.
    pub right_format: Option<Spanned<String>>,
    /// The field is never written on the left.
    pub left_readonly: Option<bool>,
    /// The field is never written on the right.
    pub right_readonly: Option<bool>,
}
