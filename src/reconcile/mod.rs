//! The three-way decision: given the base (what both sides last agreed, as each
//! side holds it) and both sides' current values, decide per field what to
//! write where, what to record as agreed, and what a person must settle.
//!
//! Pure: no I/O, no clock. Change times come in as arguments.

use std::collections::BTreeMap;

use serde_json::Value;
use tandem_core::Millis;

use crate::policy::{FieldPolicy, Policy, Rule, Values};
use crate::side::Side;

#[cfg(test)]
pub(crate) mod tests;

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
    /// When single fields were set, by vendor path, where the API says.
    pub fields_changed_at: &'a BTreeMap<String, Millis>,
}

impl SideView<'_> {
    /// When the field at `path` was set: its own time where known, else the record's.
    pub fn changed_at(&self, path: &str) -> Millis {
        self.fields_changed_at
            .get(path)
            .copied()
            .unwrap_or(self.changed_at)
    }
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
    /// Record both sides' values as the base without writing either: a side was
    /// emptied, and an empty value does not erase a non-empty one.
    Kept {
        /// Why nothing is written.
        why: &'static str,
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
    /// Both sides should hold `value` (a union or a merged text): write it to
    /// each side that does not hold it yet.
    Merged {
        /// The merged value.
        value: Value,
        /// The rule that merged.
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
    field: &FieldPolicy,
    base: Option<&FieldBase>,
    left: &Value,
    right: &Value,
    left_at: Millis,
    right_at: Millis,
) -> Decision {
    let decision = decide_values(field, base, left, right, left_at, right_at);
    respect_readonly(field, decision, left, right)
}

fn decide_values(
    field: &FieldPolicy,
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
    // Sets merge whoever moved: additions and removals of both sides count.
    if field.rule == Rule::Union {
        return Decision::Merged {
            value: union(base, left, right),
            why: "union",
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
    let emptied = |value: &Value| value.is_null() && !field.allow_empty;
    match (left_moved, right_moved) {
        (true, false) if emptied(left) => {
            return Decision::Kept {
                why: "empty_protected",
            };
        }
        (false, true) if emptied(right) => {
            return Decision::Kept {
                why: "empty_protected",
            };
        }
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
    match field.rule {
        Rule::Manual => {
            return Decision::Conflict {
                reason: "changed on both sides; the rule is manual",
            };
        }
        Rule::TextMerge => {
            // The base text is what both sides agreed on; a side that held none
            // (an empty field) takes the other's.
            let agreed = base.and_then(|b| match (b.left.as_str(), b.right.as_str()) {
                (Some(l), Some(r)) => (l == r).then_some(l),
                (Some(text), None) | (None, Some(text)) => Some(text),
                (None, None) => None,
            });
            return match agreed {
                Some(base) => match merge_text(base, left.as_str(), right.as_str()) {
                    Some(merged) => Decision::Merged {
                        value: Value::String(merged),
                        why: "text-merge",
                    },
                    None => Decision::Conflict {
                        reason: "the same part of the text was edited on both sides",
                    },
                },
                None => Decision::Conflict {
                    reason: "the sides never agreed on a text to merge from",
                },
            };
        }
        _ => {}
    }
    // An empty value never erases a non-empty one when both sides moved, unless allowed.
    if !field.allow_empty || matches!(field.rule, Rule::PreferNonEmpty { .. }) {
        match (left.is_null(), right.is_null()) {
            (true, false) => return write(Side::Right, "prefer_non_empty"),
            (false, true) => return write(Side::Left, "prefer_non_empty"),
            _ => {}
        }
    }
    let tie = |tie: Option<Side>, why| match tie {
        Some(side) => write(side, why),
        None => Decision::Conflict {
            reason: "changed on both sides at the same time; no tie side",
        },
    };
    match field.rule {
        Rule::SourceOfTruth(side) => write(side, "source_of_truth"),
        Rule::Newest {
            tie: tie_side,
            skew_ms,
        } => {
            if (left_at - right_at).abs() <= skew_ms {
                tie(tie_side, "newest_tie")
            } else if left_at > right_at {
                write(Side::Left, "newest")
            } else {
                write(Side::Right, "newest")
            }
        }
        Rule::Max | Rule::Min => match compare(left, right) {
            Some(order) => {
                let larger = if order == std::cmp::Ordering::Less {
                    Side::Right
                } else {
                    Side::Left
                };
                if field.rule == Rule::Max {
                    write(larger, "max")
                } else {
                    write(larger.other(), "min")
                }
            }
            None => Decision::Conflict {
                reason: "the two values cannot be compared",
            },
        },
        Rule::PreferNonEmpty { tie: tie_side } => tie(tie_side, "prefer_non_empty_tie"),
        Rule::Manual | Rule::Union | Rule::TextMerge => unreachable!("decided above"),
    }
}

/// A field read-only on a side is never written there: a decision to write it
/// sends that side's value the other way instead, as that side owns the field.
fn respect_readonly(
    field: &FieldPolicy,
    decision: Decision,
    left: &Value,
    right: &Value,
) -> Decision {
    let current = |side: Side| if side == Side::Left { left } else { right };
    match decision {
        Decision::Write { to, why, .. } if field.readonly(to) => {
            let owned = current(to);
            if why == "fill_empty" {
                // A gap on the read-only side is left as it is: filling the other side
                // with that gap would erase a value nobody edited.
                Decision::Kept { why: "read_only" }
            } else if owned.is_null() && !field.allow_empty {
                Decision::Kept {
                    why: "empty_protected",
                }
            } else {
                Decision::Write {
                    to: to.other(),
                    value: owned.clone(),
                    why: "read_only",
                }
            }
        }
        other => other,
    }
}

/// Both sides' additions and removals against the base, applied together.
fn union(base: Option<&FieldBase>, left: &Value, right: &Value) -> Value {
    type Set = std::collections::BTreeSet<String>;
    let set = |value: &Value| -> Set {
        match value {
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect(),
            Value::String(text) => [text.clone()].into(),
            _ => Set::new(),
        }
    };
    let (l, r) = (set(left), set(right));
    let merged: Set = match base {
        None => l.union(&r).cloned().collect(),
        Some(base) => {
            let (base_left, base_right) = (set(&base.left), set(&base.right));
            let removed: Set = base_left
                .difference(&l)
                .chain(base_right.difference(&r))
                .cloned()
                .collect();
            let added: Set = l
                .difference(&base_left)
                .chain(r.difference(&base_right))
                .cloned()
                .collect();
            base_left
                .union(&base_right)
                .filter(|i| !removed.contains(*i))
                .cloned()
                .chain(added)
                .collect()
        }
    };
    if merged.is_empty() {
        Value::Null
    } else {
        Value::Array(merged.into_iter().map(Value::String).collect())
    }
}

/// Order two values: numbers by value, texts (dates included) as text.
fn compare(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// The part of `base` an edit replaced, as character positions `[start, end)`.
fn edited_range(base: &[char], new: &[char]) -> (usize, usize) {
    let prefix = base.iter().zip(new).take_while(|(a, b)| a == b).count();
    let room = base.len().min(new.len()) - prefix;
    let suffix = base
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    (prefix, base.len() - suffix)
}

/// Merge two edits of a text through automerge, unless they touch the same part
/// of it: automerge merges overlapping edits character by character into text
/// neither side wrote, so those are a conflict instead.
pub fn merge_text(base: &str, left: Option<&str>, right: Option<&str>) -> Option<String> {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, TextEncoding};
    let (left, right) = (left?, right?);
    let chars = |t: &str| t.chars().collect::<Vec<_>>();
    let (base_chars, left_chars, right_chars) = (chars(base), chars(left), chars(right));
    let (a, b) = (
        edited_range(&base_chars, &left_chars),
        edited_range(&base_chars, &right_chars),
    );
    let touches = |point: usize, (start, end): (usize, usize)| start <= point && point <= end;
    let overlap = (a.0 < b.1 && b.0 < a.1)
        || a.0 == b.0
        || (a.0 == a.1 && touches(a.0, b))
        || (b.0 == b.1 && touches(b.0, a));
    if overlap {
        return None;
    }
    // Each side's edit is one splice of the base, already found above: spliced
    // into two forks of one document and merged.
    let mut ours = AutoCommit::new_with_encoding(TextEncoding::UnicodeCodePoint);
    let text = ours.put_object(ROOT, "text", ObjType::Text).ok()?;
    ours.splice_text(&text, 0, 0, base).ok()?;
    let mut theirs = ours.fork();
    for (doc, (start, end), new) in [(&mut ours, a, &left_chars), (&mut theirs, b, &right_chars)] {
        let inserted: String = new[start..new.len() - (base_chars.len() - end)]
            .iter()
            .collect();
        doc.splice_text(&text, start, (end - start) as isize, &inserted)
            .ok()?;
    }
    ours.merge(&mut theirs).ok()?;
    let merged = ours.text(&text).ok()?;
    // Both edits must be in the result, each as its side wrote it.
    let expected = left_chars.len() + right_chars.len() - base_chars.len();
    (merged.chars().count() == expected).then_some(merged)
}

/// A merge to propose to a person for two text edits that overlap: the text
/// with the left side's version of the words both edited, then the right side's,
/// and everything else as both edits left it. Where the edits do not overlap it
/// is the clean merge.
pub fn propose_text_merge(base: &str, left: &str, right: &str) -> String {
    if let Some(merged) = merge_text(base, Some(left), Some(right)) {
        return merged;
    }
    let chars = |t: &str| t.chars().collect::<Vec<_>>();
    let (base_chars, left_chars, right_chars) = (chars(base), chars(left), chars(right));
    let (a, b) = (
        edited_range(&base_chars, &left_chars),
        edited_range(&base_chars, &right_chars),
    );
    // The part both edited, widened to whole words of the base.
    let (mut start, mut end) = (a.0.min(b.0), a.1.max(b.1));
    while start > 0 && !base_chars[start - 1].is_whitespace() {
        start -= 1;
    }
    while end < base_chars.len() && !base_chars[end].is_whitespace() {
        end += 1;
    }
    let region = |new: &[char]| -> String {
        new[start..new.len() - (base_chars.len() - end)]
            .iter()
            .collect()
    };
    let (ours, theirs) = (region(&left_chars), region(&right_chars));
    let middle = match (ours.trim().is_empty(), theirs.trim().is_empty()) {
        (true, _) => theirs,
        (_, true) => ours,
        _ => format!("{ours} / {theirs}"),
    };
    let prefix: String = base_chars[..start].iter().collect();
    let suffix: String = base_chars[end..].iter().collect();
    format!("{prefix}{middle}{suffix}")
}

/// Why a field the loop detector stopped is a conflict.
pub const LOOP_REASON: &str =
    "it keeps flipping back and forth: each system undoes the other's change";

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
        let (left_at, right_at) = (
            left.changed_at(field.path(Side::Left)),
            right.changed_at(field.path(Side::Right)),
        );
        match decide_field(field, field_base, l, r, left_at, right_at) {
            Decision::Unchanged => {}
            Decision::Agreed { left, right } => {
                plan.agreed.insert(field.name.clone(), (left, right));
                plan.settled.push(field.name.clone());
            }
            Decision::Kept { why } => {
                plan.agreed
                    .insert(field.name.clone(), (l.clone(), r.clone()));
                plan.reasons.insert(field.name.clone(), why);
                plan.settled.push(field.name.clone());
            }
            Decision::Write { to, value, why } => {
                plan.writes[to as usize].insert(field.name.clone(), value);
                plan.reasons.insert(field.name.clone(), why);
                plan.settled.push(field.name.clone());
            }
            Decision::Merged { value, why } => {
                for (side, current) in [(Side::Left, l), (Side::Right, r)] {
                    if current != &value && !field.readonly(side) {
                        plan.writes[side as usize].insert(field.name.clone(), value.clone());
                    }
                }
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
