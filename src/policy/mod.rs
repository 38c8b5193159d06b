//! Policies: which fields of a pair sync, where each lives on both sides, and
//! the rule that settles a field changed on both sides.
//!
//! A policy file is parsed in two stages: [`raw`] reads the TOML into a
//! shape-checked form (unknown keys rejected), [`compile`] checks it against
//! the connectors' paths and reports every problem at once with file:line:column.
//! The compiled [`Policy`] also maps records to canonical values and back. This
//! module does no I/O apart from reading the file, and never reads the clock.

mod compile;
mod examples;
mod raw;
pub mod transform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tandem_core::{FieldMap, Millis, normalize_key};

pub use transform::{Codec, DateFormat, FieldType, Normalize, SideCodec};

pub use compile::{Schemas, compile, load};

use crate::side::Side;

/// Canonical values of a record: field name to value, `Null` when empty.
pub type Values = BTreeMap<String, Value>;

/// How a field changed on both sides since the base is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The named side wins. An edit on the other side alone still flows.
    SourceOfTruth(Side),
    /// The side whose change is later wins; changes within `skew_ms` of each other
    /// count as simultaneous and go to `tie`, or to a person if none.
    Newest {
        /// The side that wins a tie; `None` opens a conflict.
        tie: Option<Side>,
        /// How far apart two changes may be and still count as simultaneous.
        skew_ms: Millis,
    },
    /// Sets: additions and removals on both sides against the base all count.
    Union,
    /// Long text: edits to separate parts merge; edits to the same part are a conflict.
    TextMerge,
    /// The larger value wins.
    Max,
    /// The smaller value wins.
    Min,
    /// The non-empty value wins; two different non-empty values go to `tie` or a person.
    PreferNonEmpty {
        /// The side that wins between two non-empty values; `None` opens a conflict.
        tie: Option<Side>,
    },
    /// A person decides: the field is written nowhere until the conflict is resolved.
    Manual,
}

impl Rule {
    /// The rule as a policy file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::SourceOfTruth(_) => "source_of_truth",
            Rule::Newest { .. } => "newest",
            Rule::Union => "union",
            Rule::TextMerge => "text-merge",
            Rule::Max => "max",
            Rule::Min => "min",
            Rule::PreferNonEmpty { .. } => "prefer-non-empty",
            Rule::Manual => "manual",
        }
    }

    /// The same rule with the sides swapped.
    pub fn mirrored(self) -> Rule {
        match self {
            Rule::SourceOfTruth(side) => Rule::SourceOfTruth(side.other()),
            Rule::Newest { tie, skew_ms } => Rule::Newest {
                tie: tie.map(Side::other),
                skew_ms,
            },
            Rule::PreferNonEmpty { tie } => Rule::PreferNonEmpty {
                tie: tie.map(Side::other),
            },
            other => other,
        }
    }
}

/// What an event on one side does on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing is written; a deleted record's link stops syncing.
    Ignore,
    /// Nothing is deleted; the event is recorded and, if a mark field is set,
    /// written into it on the other side.
    Mark,
    /// The other record is archived too.
    Archive,
    /// The other record is deleted for good. Only an explicit policy asks for this.
    DeletePermanently,
}

/// What events on one side do on the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactions {
    /// To an archive or delete.
    pub archived: Action,
    /// To an unsubscribe.
    pub unsubscribed: Action,
    /// To a member cleaned for bounces.
    pub cleaned: Action,
    /// The path on the other side that `mark` writes into, if any.
    pub mark: Option<String>,
}

impl Default for Reactions {
    /// Delete nothing; mark instead.
    fn default() -> Self {
        Reactions {
            archived: Action::Mark,
            unsubscribed: Action::Mark,
            cleaned: Action::Mark,
            mark: None,
        }
    }
}

impl Reactions {
    /// What a record reaching `standing` does; a record back to active takes the
    /// mark too (it says "active" again).
    pub fn to(&self, standing: tandem_core::Standing) -> Action {
        match standing {
            tandem_core::Standing::Archived => self.archived,
            tandem_core::Standing::Unsubscribed => self.unsubscribed,
            tandem_core::Standing::Cleaned => self.cleaned,
            tandem_core::Standing::Active => Action::Mark,
        }
    }
}

/// Which records of one side sync. A record outside the scope is neither
/// linked nor created on the other side; a linked record that leaves it stops
/// syncing its fields (its events still take their `[on]` action) until it is back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Paths that must hold a value.
    pub require: Vec<String>,
    /// Paths whose value must be one of these (for a list, hold one of them).
    pub only: Vec<(String, Vec<String>)>,
    /// Paths whose value must be none of these (for a list, hold none of them).
    pub except: Vec<(String, Vec<String>)>,
}

impl Scope {
    /// Whether a record with these fields syncs. Values compare trimmed and
    /// without regard to case.
    pub fn admits(&self, fields: &FieldMap) -> bool {
        let texts = |path: &str| -> Vec<String> {
            let text = |value: &Value| match value {
                Value::String(text) => text.trim().to_lowercase(),
                other => other.to_string(),
            };
            match fields.get(path) {
                None | Some(Value::Null) => vec![],
                Some(Value::Array(items)) => items.iter().map(text).collect(),
                Some(value) => vec![text(value)]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect(),
            }
        };
        let holds_one_of =
            |path: &str, allowed: &[String]| texts(path).iter().any(|t| allowed.contains(t));
        self.require.iter().all(|path| !texts(path).is_empty())
            && self
                .only
                .iter()
                .all(|(path, allowed)| holds_one_of(path, allowed))
            && !self
                .except
                .iter()
                .any(|(path, barred)| holds_one_of(path, barred))
    }

    /// The paths the scope reads.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.require.iter().map(String::as_str).chain(
            self.only
                .iter()
                .chain(&self.except)
                .map(|(p, _)| p.as_str()),
        )
    }

    /// Whether every record syncs.
    pub fn is_everything(&self) -> bool {
        self.require.is_empty() && self.only.is_empty() && self.except.is_empty()
    }
}

/// One synced field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPolicy {
    /// The canonical name (`first_name`).
    pub name: String,
    /// Its path on the left connector (`properties.firstname`).
    pub left: String,
    /// Its path on the right connector (`merge_fields.FNAME`).
    pub right: String,
    /// How concurrent edits are settled.
    pub rule: Rule,
    /// Whether this is the match key, which links records (normalized: trimmed, lowercased).
    pub key: bool,
    /// The values' type and how each side reads and writes them.
    pub codec: Codec,
    /// Whether an emptied value may erase a non-empty one on the other side.
    pub allow_empty: bool,
}

impl FieldPolicy {
    /// The field's path on `side`.
    pub fn path(&self, side: Side) -> &str {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// Whether the field is never written on `side`.
    pub fn readonly(&self, side: Side) -> bool {
        self.codec.sides[side as usize].readonly
    }

    /// A side's raw value in canonical form.
    pub fn read(&self, side: Side, raw: &Value) -> Value {
        let value = self.codec.read(side as usize, raw);
        match value {
            Value::String(text) if self.key => {
                normalize_key(&text).map_or(Value::Null, Value::String)
            }
            other => other,
        }
    }

    /// A value written in canonical form (a policy example's) made exactly canonical.
    pub fn canonical(&self, value: &Value) -> Value {
        match self.codec.canonical(value) {
            Value::String(text) if self.key => {
                normalize_key(&text).map_or(Value::Null, Value::String)
            }
            other => other,
        }
    }

    /// A canonical value as `side` takes it.
    pub fn write(&self, side: Side, value: &Value) -> Value {
        self.codec.write(side as usize, value)
    }

    /// The same field with its sides swapped.
    pub fn mirrored(&self) -> FieldPolicy {
        let [left, right] = self.codec.sides.clone();
        FieldPolicy {
            left: self.right.clone(),
            right: self.left.clone(),
            rule: self.rule.mirrored(),
            codec: Codec {
                sides: [right, left],
                ..self.codec.clone()
            },
            ..self.clone()
        }
    }
}

/// A compiled, valid policy for one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The pair's name, used to key its state.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The left connector's name.
    pub left: String,
    /// The right connector's name.
    pub right: String,
    /// Whether records missing on a side are created there, by target side (left, right).
    pub create: [bool; 2],
    /// The fields, in file order; exactly one is the key.
    pub fields: Vec<FieldPolicy>,
    /// What events on each side do on the other, by the side they happen on.
    pub on: [Reactions; 2],
    /// Which records of each side sync.
    pub scope: [Scope; 2],
    /// How many examples the policy carries (all of them passed when it compiled).
    pub examples: usize,
}

impl Policy {
    /// The connector on `side`.
    pub fn connector(&self, side: Side) -> &str {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// Whether a record missing on `side` is created there.
    pub fn creates_on(&self, side: Side) -> bool {
        self.create[side as usize]
    }

    /// The match key field.
    pub fn key_field(&self) -> &FieldPolicy {
        self.fields
            .iter()
            .find(|f| f.key)
            .expect("compile guarantees a key field")
    }

    /// Every path the policy reads on `side`, for the connector to request.
    pub fn paths(&self, side: Side) -> Vec<String> {
        let mut paths: Vec<String> = self
            .fields
            .iter()
            .map(|f| f.path(side).to_string())
            .collect();
        for path in self.scope[side as usize].paths() {
            if !paths.iter().any(|p| p == path) {
                paths.push(path.to_string());
            }
        }
        paths
    }

    /// Paths on `side` whose own change time the policy weighs: the fields that
    /// `newest` settles.
    pub fn history_paths(&self, side: Side) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| matches!(f.rule, Rule::Newest { .. }))
            .map(|f| f.path(side).to_string())
            .collect()
    }

    /// Whether a record on `side` with these fields syncs.
    pub fn in_scope(&self, side: Side, fields: &FieldMap) -> bool {
        self.scope[side as usize].admits(fields)
    }

    /// A record's canonical values: each field read from its path through its codec
    /// (normalized, typed, mapped; empty as `Null`; the key lowercased).
    pub fn canonical(&self, side: Side, fields: &FieldMap) -> Values {
        self.fields
            .iter()
            .map(|field| {
                (
                    field.name.clone(),
                    field.read(side, fields.get(field.path(side)).unwrap_or(&Value::Null)),
                )
            })
            .collect()
    }

    /// Canonical values as paths and values to write on `side`; fields read-only
    /// on that side are left out.
    pub fn to_side(&self, side: Side, values: &Values) -> FieldMap {
        self.fields
            .iter()
            .filter(|field| !field.readonly(side))
            .filter_map(|field| {
                Some((
                    field.path(side).to_string(),
                    field.write(side, values.get(&field.name)?),
                ))
            })
            .collect()
    }

    /// The policy with its sides swapped.
    pub fn mirrored(&self) -> Policy {
        let [left, right] = self.on.clone();
        let [left_scope, right_scope] = self.scope.clone();
        Policy {
            left: self.right.clone(),
            right: self.left.clone(),
            create: [self.create[1], self.create[0]],
            fields: self.fields.iter().map(FieldPolicy::mirrored).collect(),
            on: [right, left],
            scope: [right_scope, left_scope],
            ..self.clone()
        }
    }
}

/// Read a policy file's name without compiling it (for messages).
pub fn display_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests;
