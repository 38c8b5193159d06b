//! Looking at what a policy does over the stored state, writing nothing:
//! [`explain`] one record's fields under the active policy, and [`preview`]
//! what a new policy would do differently from the active one.
//!
//! Both decide exactly as a pass would, through [`plan`] and
//! [`decide_field`], on what the store holds: each link's base, the last
//! versions seen of its records, and newer versions waiting in the inbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;
use tandem_core::{Millis, Record, normalize_key};

use crate::engine::{Item, Skip, plan};
use crate::policy::{Policy, Rule};
use crate::reconcile::{Decision, decide_field};
use crate::side::Side;
use crate::store::{Change, Link, Store, StoreError};

/// Links read from the store at a time.
const PAGE: usize = 500;

/// A rule as an admin reads it, with the pair's connector names.
pub fn describe_rule(rule: Rule, policy: &Policy) -> String {
    let side = |side: Side| policy.connector(side).to_string();
    let tie = |tie: Option<Side>| tie.map_or("a person".to_string(), side);
    match rule {
        Rule::SourceOfTruth(s) => format!("source_of_truth ({} wins)", side(s)),
        Rule::Newest { tie: t, skew_ms } if skew_ms > 0 => {
            format!("newest (within {}s: {})", skew_ms / 1000, tie(t))
        }
        Rule::Newest { tie: t, .. } => format!("newest (tie: {})", tie(t)),
        Rule::PreferNonEmpty { tie: t } => format!("prefer-non-empty (tie: {})", tie(t)),
        other => other.name().to_string(),
    }
}

/// A decision as an admin reads it.
pub fn describe_decision(decision: &Decision, policy: &Policy) -> String {
    match decision {
        Decision::Unchanged => "nothing moved since the sides agreed".into(),
        Decision::Agreed { .. } => "both sides hold the same value".into(),
        Decision::Kept { why } => format!("kept as it is on each side ({why})"),
        Decision::Write { to, value, why } => {
            format!("write {value} to {} ({why})", policy.connector(*to))
        }
        Decision::Merged { value, why } => format!("both sides get {value} ({why})"),
        Decision::Conflict { reason } => format!("conflict: {reason}"),
    }
}

/// One field of an explained record.
#[derive(Debug, Clone, Serialize)]
pub struct FieldExplanation {
    /// The field's canonical name.
    pub field: String,
    /// Its rule, described.
    pub rule: String,
    /// What both sides last agreed (left, right), if they ever did.
    pub base: Option<[Value; 2]>,
    /// The current canonical values (left, right).
    pub values: [Value; 2],
    /// What the policy decides, described.
    pub decision: String,
    /// Whether a person decides.
    pub conflict: bool,
}

/// One side of an explained record.
#[derive(Debug, Clone, Serialize)]
pub struct SideState {
    /// The connector.
    pub connector: String,
    /// The record id, if the record exists there.
    pub id: Option<String>,
    /// When it last changed, by that system's clock.
    pub changed_at: Option<Millis>,
    /// Whether a newer version waits in the inbox for the next pass.
    pub waiting: bool,
}

/// Everything the active policy makes of one record.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The pair.
    pub pair: String,
    /// The normalized match key.
    pub key: String,
    /// Whether the records are linked.
    pub linked: bool,
    /// Both sides (left, right).
    pub sides: [SideState; 2],
    /// Why the pair does not sync now, if it does not (archived, out of scope...).
    pub held: Option<String>,
    /// Every field, in policy order.
    pub fields: Vec<FieldExplanation>,
    /// Fields with an open conflict.
    pub open_conflicts: Vec<String>,
}

/// Why an item is not synced, in words.
pub fn describe_skip(skip: Skip, policy: &Policy) -> String {
    match skip {
        Skip::NoKey => "neither record has a match key".into(),
        Skip::Archived => "a record is archived or deleted, so it is not re-created".into(),
        Skip::NoCreate => "the policy does not create records on the other side".into(),
        Skip::KeyTaken => "another record with this key is decided first".into(),
        Skip::Gone => {
            "the record is archived or deleted on one side; the link waits for a restore".into()
        }
        Skip::OutOfScope => format!(
            "a record is outside the scope of [scope.{}] or [scope.{}]",
            policy.left, policy.right
        ),
    }
}

/// The item a pass would decide for a link: its state and any newer versions waiting.
fn link_item(store: &Store, pair: &str, link: Link) -> Result<Item, StoreError> {
    let mut fresh: [Option<Record>; 2] = [None, None];
    for side in Side::BOTH {
        if let Some(id) = link.id_on(side) {
            fresh[side as usize] = store.inbox_find(pair, side, Some(id), None)?;
        }
    }
    Ok(Item {
        link: Some(store.link_state(link)?),
        fresh,
        ..Item::default()
    })
}

/// The item for records waiting with this key and not linked yet.
fn waiting_item(store: &Store, pair: &str, key: &str) -> Result<Item, StoreError> {
    let mut fresh: [Option<Record>; 2] = [None, None];
    for side in Side::BOTH {
        fresh[side as usize] = store
            .inbox_find(pair, side, None, Some(key))?
            .filter(|r| matches!(store.link_by_id(pair, side, &r.id), Ok(None)));
    }
    Ok(Item {
        fresh,
        ..Item::default()
    })
}

/// Explain how the policy decides the record with this match key (an email
/// address), or `None` if no record with it is linked or waiting.
pub fn explain(
    store: &Store,
    policy: &Policy,
    key: &str,
) -> Result<Option<Explanation>, StoreError> {
    let Some(key) = normalize_key(key) else {
        return Ok(None);
    };
    let pair = policy.name.as_str();
    let item = match store.link_by_key(pair, &key)? {
        Some(link) => link_item(store, pair, link)?,
        None => waiting_item(store, pair, &key)?,
    };
    if item.link.is_none() && item.fresh.iter().all(Option::is_none) {
        return Ok(None);
    }
    // Each side as a pass would see it: the waiting version, else the last one seen.
    type View<'a> = (
        Option<String>,
        &'a tandem_core::FieldMap,
        Millis,
        &'a BTreeMap<String, Millis>,
    );
    let current = |side: Side| -> Option<View<'_>> {
        if let Some(record) = &item.fresh[side as usize] {
            return Some((
                Some(record.id.clone()),
                &record.fields,
                record.updated_at,
                &record.changed_at,
            ));
        }
        let state = item.link.as_ref()?;
        let snapshot = state.snapshots[side as usize].as_ref()?;
        Some((
            state.link.id_on(side).map(String::from),
            &snapshot.fields,
            snapshot.updated_at,
            &snapshot.changed_at,
        ))
    };
    let views = Side::BOTH.map(current);
    let empty = tandem_core::FieldMap::new();
    let values = Side::BOTH
        .map(|side| policy.canonical(side, views[side as usize].as_ref().map_or(&empty, |v| v.1)));
    // A field's own change time where the system gave one, else its record's.
    let time = |side: Side, path: &str| {
        views[side as usize]
            .as_ref()
            .map_or(0, |v| v.3.get(path).copied().unwrap_or(v.2))
    };
    let base = item.link.as_ref().map(|s| &s.base);
    let both_exist = views.iter().all(Option::is_some);
    let fields = policy
        .fields
        .iter()
        .map(|field| {
            let name = &field.name;
            let field_base = base.and_then(|b| b.get(name));
            let value = |side: Side| {
                values[side as usize]
                    .get(name)
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let (left, right) = (value(Side::Left), value(Side::Right));
            let decision = if both_exist {
                decide_field(
                    field,
                    field_base,
                    &left,
                    &right,
                    time(Side::Left, field.path(Side::Left)),
                    time(Side::Right, field.path(Side::Right)),
                )
            } else {
                // One record only: it is copied to the other side on creation.
                let from = if views[0].is_some() {
                    Side::Left
                } else {
                    Side::Right
                };
                let value = if from == Side::Left { &left } else { &right };
                Decision::Write {
                    to: from.other(),
                    value: value.clone(),
                    why: "created",
                }
            };
            FieldExplanation {
                field: name.clone(),
                rule: describe_rule(field.rule, policy),
                base: field_base.map(|b| [b.left.clone(), b.right.clone()]),
                values: [left, right],
                conflict: matches!(decision, Decision::Conflict { .. }),
                decision: describe_decision(&decision, policy),
            }
        })
        .collect();
    let held = plan(policy, &item)
        .err()
        .map(|skip| describe_skip(skip, policy));
    let open_conflicts = store
        .conflicts(false)?
        .into_iter()
        .filter(|c| c.pair == pair && c.key == key)
        .map(|c| c.field)
        .collect();
    let sides = Side::BOTH.map(|side| SideState {
        connector: policy.connector(side).to_string(),
        id: views[side as usize].as_ref().and_then(|v| v.0.clone()),
        changed_at: views[side as usize].as_ref().map(|v| v.2),
        waiting: item.fresh[side as usize].is_some(),
    });
    Ok(Some(Explanation {
        pair: pair.to_string(),
        key,
        linked: item.link.is_some(),
        sides,
        held,
        fields,
        open_conflicts,
    }))
}

/// What one policy does with one item, reduced to what an admin compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Effect {
    /// Why nothing is done, if so.
    skip: Option<String>,
    /// Records created, by side.
    creates: BTreeSet<Side>,
    /// Field values written to existing records, by (side, field).
    writes: BTreeMap<(Side, String), String>,
    /// Records archived or deleted, by side.
    removals: BTreeSet<Side>,
    /// Fields left to a person.
    conflicts: BTreeSet<String>,
    /// Fields settled without a person.
    settled: BTreeSet<String>,
}

impl Effect {
    fn of(result: &Result<Change, Skip>, policy: &Policy) -> Effect {
        let change = match result {
            Err(skip) => {
                return Effect {
                    skip: Some(format!("{skip:?}").to_lowercase()),
                    ..Effect::default()
                };
            }
            Ok(change) => change,
        };
        let mut effect = Effect::default();
        for write in &change.writes {
            match &write.op {
                tandem_core::WriteOp::Create => {
                    effect.creates.insert(write.side);
                }
                tandem_core::WriteOp::Update { .. } => {
                    // Named by field; a mark, which is no field, by its path.
                    for (path, value) in &write.payload {
                        let name = policy
                            .fields
                            .iter()
                            .find(|f| f.path(write.side) == path)
                            .map_or_else(|| path.clone(), |f| f.name.clone());
                        effect.writes.insert((write.side, name), value.to_string());
                    }
                }
                tandem_core::WriteOp::Archive { .. }
                | tandem_core::WriteOp::DeletePermanently { .. } => {
                    effect.removals.insert(write.side);
                }
            }
        }
        effect.conflicts = change
            .conflicts
            .iter()
            .map(|c| c.conflict.field.clone())
            .collect();
        effect.settled = change.settled.iter().cloned().collect();
        effect
    }

    fn describe(&self, policy: &Policy) -> String {
        if let Some(skip) = &self.skip {
            return format!("skipped ({skip})");
        }
        let mut parts = Vec::new();
        for side in &self.creates {
            parts.push(format!("create on {}", policy.connector(*side)));
        }
        for ((side, field), value) in &self.writes {
            parts.push(format!("{field} → {} {value}", policy.connector(*side)));
        }
        for side in &self.removals {
            parts.push(format!("archive on {}", policy.connector(*side)));
        }
        for field in &self.conflicts {
            parts.push(format!("{field}: conflict"));
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join("; ")
        }
    }
}

/// What one policy does over the stored state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Effects {
    /// Existing records written, by side (left, right).
    pub updates: [usize; 2],
    /// Records created, by side.
    pub creates: [usize; 2],
    /// Records archived or deleted, by side.
    pub removals: [usize; 2],
    /// Field writes by field name (or mark path), by side.
    pub field_writes: BTreeMap<String, [usize; 2]>,
    /// Fields left to a person.
    pub conflicts: usize,
    /// Conflicts open now that this policy settles.
    pub conflicts_closed: usize,
    /// Conflicts not open now that this policy opens.
    pub conflicts_opened: usize,
    /// Records not synced, by reason.
    pub skipped: BTreeMap<String, usize>,
}

impl Effects {
    fn add(&mut self, effect: &Effect, open: &BTreeSet<String>) {
        if let Some(skip) = &effect.skip {
            *self.skipped.entry(skip.clone()).or_default() += 1;
            return;
        }
        for side in &effect.creates {
            self.creates[*side as usize] += 1;
        }
        for side in &effect.removals {
            self.removals[*side as usize] += 1;
        }
        let written: BTreeSet<Side> = effect.writes.keys().map(|(side, _)| *side).collect();
        for side in written {
            self.updates[side as usize] += 1;
        }
        for (side, field) in effect.writes.keys() {
            self.field_writes.entry(field.clone()).or_default()[*side as usize] += 1;
        }
        self.conflicts += effect.conflicts.len();
        self.conflicts_opened += effect.conflicts.difference(open).count();
        self.conflicts_closed += effect.settled.intersection(open).count();
    }
}

/// One record that the two policies treat differently.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// Its match key.
    pub key: String,
    /// What the active policy does.
    pub active: String,
    /// What the new policy would do.
    pub new: String,
}

/// What a new policy would do differently from the active one.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The pair.
    pub pair: String,
    /// Links looked at.
    pub links: usize,
    /// Unlinked records waiting in the inbox looked at.
    pub waiting: usize,
    /// What the active policy does now.
    pub active: Effects,
    /// What the new policy would do.
    pub new: Effects,
    /// Every record the two treat differently, by key.
    pub differences: Vec<Difference>,
    /// Paths the new policy reads that the stored records may lack, by side: the
    /// preview sees them as empty, and the first pass after activation reads them.
    pub unseen_paths: [Vec<String>; 2],
}

/// Evaluate `new` against `active` over every link and waiting record of the pair,
/// writing nothing.
pub fn preview(store: &Store, active: &Policy, new: &Policy) -> Result<Preview, StoreError> {
    let pair = active.name.as_str();
    let mut open: HashMap<String, BTreeSet<String>> = HashMap::new();
    for conflict in store
        .conflicts(false)?
        .into_iter()
        .filter(|c| c.pair == pair)
    {
        open.entry(conflict.key).or_default().insert(conflict.field);
    }
    let none = BTreeSet::new();
    let mut result = Preview {
        pair: pair.to_string(),
        links: 0,
        waiting: 0,
        active: Effects::default(),
        new: Effects::default(),
        differences: Vec::new(),
        unseen_paths: Side::BOTH.map(|side| {
            let known = active.paths(side);
            new.paths(side)
                .into_iter()
                .filter(|p| !known.contains(p))
                .collect()
        }),
    };
    let compare = |item: &Item, key: String, result: &mut Preview| {
        let open = open.get(&key).unwrap_or(&none);
        let (before, after) = (
            Effect::of(&plan(active, item), active),
            Effect::of(&plan(new, item), new),
        );
        result.active.add(&before, open);
        result.new.add(&after, open);
        if before != after {
            result.differences.push(Difference {
                key,
                active: before.describe(active),
                new: after.describe(new),
            });
        }
    };
    let mut after = 0;
    loop {
        let links = store.links_after(pair, after, PAGE)?;
        let Some(last) = links.last() else { break };
        after = last.id;
        for link in links {
            let key = link.key.clone();
            let item = link_item(store, pair, link)?;
            result.links += 1;
            compare(&item, key, &mut result);
        }
    }
    // Records waiting to be linked, once per key.
    let mut keys = BTreeSet::new();
    for row in store.inbox_batch(pair, usize::MAX >> 1)? {
        if store.link_by_id(pair, row.side, &row.record.id)?.is_some() {
            continue;
        }
        let Some(key) = row.record.key.as_deref().and_then(normalize_key) else {
            continue;
        };
        if keys.insert(key.clone()) && store.link_by_key(pair, &key)?.is_none() {
            let item = waiting_item(store, pair, &key)?;
            result.waiting += 1;
            compare(&item, key, &mut result);
        }
    }
    Ok(result)
}
