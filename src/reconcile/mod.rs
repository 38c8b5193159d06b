//! The three-way decision: given the base (what both sides last agreed, as each
//! side holds it) and both sides' current values, decide per field what to
//! write where, what to record as agreed, and what a person must settle.
//!
//! Pure: no I/O, no clock. Change times come in as arguments.

use std::collections::BTreeMap;

use serde_json::Value;
use tandem_core::Millis;

use crate::policy::{Policy, Rule, Values};
use crate::side::Side;

#[cfg(test)]
mod tests;

/// The last agreed value of a field, as each side holds it. The two differ only
/// where a vendor normalizes what it is given (it is what we read back).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldBase {
    /// The value on the left side.
    pub left: Value,
    /// The value on the right side.
    pub right: Value,
}

impl FieldBase {
    /// The base value on `side`.
    pub fn get(&self, side: Side) -> &Value {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }
}

/// Base of a link: field name to its agreed values.
pub type Base = BTreeMap<String, FieldBase>;

/// One side's current state of a linked record.
#[derive(Debug, Clone, Copy)]
pub struct SideView<'a> {
    /// Canonical values.
    pub values: &'a Values,
    /// When the record last changed, by that system's clock.
    pub changed_at: Millis,
}

/// What to do with one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing moved.
    Unchanged,
    /// Both sides hold the same value (both moved to it, or it is a first link):
    /// record it as the base; nothing to write.
    Agreed {
        /// The left value.
        left: Value,
        /// The right value.
        right: Value,
    },
    /// Write `value` to side `to`; the base moves once the write is confirmed.
    Write {
        /// The side written.
        to: Side,
        /// The value written (the other side's current value).
        value: Value,
        /// Why: `"changed"` for a one-sided edit, else the rule that settled it.
        why: &'static str,
    },
    /// Nothing the policy says can settle it: a person decides.
    Conflict {
        /// Why no rule could.
        reason: &'static str,
    },
}

/// Decide one field. `base` is `None` for a pair linked for the first time.
pub fn decide_field(
    rule: Rule,
    base: Option<&FieldBase>,
    left: &Value,
    right: &Value,
    left_at: Millis,
    right_at: Millis,
) -> Decision {
    let left_moved = base.is_none_or(|b| &b.left != left);
    let right_moved = base.is_none_or(|b| &b.right != right);
    if !left_moved && !right_moved {
        return Decision::Unchanged;
    }
    if left == right {
        return Decision::Agreed {
            left: left.clone(),
            right: right.clone(),
        };
    }
    let write = |from: Side, why| Decision::Write {
        to: from.other(),
        value: if from == Side::Left {
            left.clone()
        } else {
            right.clone()
        },
        why,
    };
    match (left_moved, right_moved) {
        (true, false) => return write(Side::Left, "changed"),
        (false, true) => return write(Side::Right, "changed"),
        _ => {}
    }
    // Both moved, to different values. On a first link an empty side is filled
    // from the other whatever the rule: there is no edit to weigh, only a gap.
    if base.is_none() {
        match (left.is_null(), right.is_null()) {
            (true, false) => return write(Side::Right, "fill_empty"),
            (false, true) => return write(Side::Left, "fill_empty"),
            _ => {}
        }
    }
    if rule == Rule::Manual {
        return Decision::Conflict {
            reason: "changed on both sides; the rule is manual",
        };
    }
    // An empty value never erases a non-empty one when both sides moved.
    match (left.is_null(), right.is_null()) {
        (true, false) => return write(Side::Right, "prefer_non_empty"),
        (false, true) => return write(Side::Left, "prefer_non_empty"),
        _ => {}
    }
    match rule {
        Rule::SourceOfTruth(side) => write(side, "source_of_truth"),
        Rule::Newest { tie } => match left_at.cmp(&right_at) {
            std::cmp::Ordering::Greater => write(Side::Left, "newest"),
            std::cmp::Ordering::Less => write(Side::Right, "newest"),
            std::cmp::Ordering::Equal => match tie {
                Some(side) => write(side, "newest_tie"),
                None => Decision::Conflict {
                    reason: "changed on both sides at the same time; no tie side",
                },
            },
        },
        Rule::Manual => unreachable!("handled above"),
    }
}

/// What kind of thing a person must settle.
#[derive(Debug, Clone, PartialEq)]
pub enum ConflictKind {
    /// Both sides changed a field and no rule settles it.
    Field,
    /// Another record on `side` would link to the same key: nothing is guessed.
    AmbiguousMatch {
        /// The side of the other record.
        side: Side,
        /// Its id.
        record: String,
    },
}

/// A field a person must settle.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConflict {
    /// The field.
    pub field: String,
    /// Its base, if the pair had agreed on it before.
    pub base: Option<FieldBase>,
    /// The left value.
    pub left: Value,
    /// The right value.
    pub right: Value,
    /// The rule that gave up.
    pub rule: Rule,
    /// Why it gave up.
    pub reason: &'static str,
    /// A field conflict or an ambiguous match.
    pub kind: ConflictKind,
}

/// What reconciling one linked pair of records decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkPlan {
    /// Canonical values to write, by target side (left, right).
    pub writes: [Values; 2],
    /// Why each written field is written, by field.
    pub reasons: BTreeMap<String, &'static str>,
    /// Fields both sides now agree on: the new base, as (left, right).
    pub agreed: BTreeMap<String, (Value, Value)>,
    /// Fields a person must settle.
    pub conflicts: Vec<FieldConflict>,
    /// Fields settled without a person: an open conflict on them is over.
    pub settled: Vec<String>,
}

impl LinkPlan {
    /// Values to write to `side`.
    pub fn writes_to(&self, side: Side) -> &Values {
        &self.writes[side as usize]
    }

    /// Whether the plan writes anything or opens a conflict.
    pub fn is_quiet(&self) -> bool {
        self.writes.iter().all(BTreeMap::is_empty) && self.conflicts.is_empty()
    }
}

/// Reconcile a linked pair field by field.
pub fn reconcile(
    policy: &Policy,
    base: &Base,
    left: SideView<'_>,
    right: SideView<'_>,
) -> LinkPlan {
    let mut plan = LinkPlan::default();
    for field in &policy.fields {
        let l = left.values.get(&field.name).unwrap_or(&Value::Null);
        let r = right.values.get(&field.name).unwrap_or(&Value::Null);
        let field_base = base.get(&field.name);
        match decide_field(
            field.rule,
            field_base,
            l,
            r,
            left.changed_at,
            right.changed_at,
        ) {
            Decision::Unchanged => {}
            Decision::Agreed { left, right } => {
                plan.agreed.insert(field.name.clone(), (left, right));
                plan.settled.push(field.name.clone());
            }
            Decision::Write { to, value, why } => {
                plan.writes[to as usize].insert(field.name.clone(), value);
                plan.reasons.insert(field.name.clone(), why);
                plan.settled.push(field.name.clone());
            }
            Decision::Conflict { reason } => plan.conflicts.push(FieldConflict {
                field: field.name.clone(),
                base: field_base.cloned(),
                left: l.clone(),
                right: r.clone(),
                rule: field.rule,
                reason,
                kind: ConflictKind::Field,
            }),
        }
    }
    plan
}

/// Values to create a record with on the side that lacks it: every non-empty
/// field of the record that exists, the key included.
pub fn create_values(source: &Values) -> Values {
    source
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
