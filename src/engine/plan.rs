//! Turning one pulled record (and its counterpart, if any) into a [`Change`]:
//! link, create or reconcile. Pure, like `reconcile`: the engine gathers the
//! state, this decides, the store applies.
//!
//! Identity is never guessed: a record whose key another record's link holds,
//! or a key change onto a key another link holds, becomes an "ambiguous match"
//! conflict for a person, while the record's other fields keep syncing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tandem_core::{FieldMap, Millis, Record, Standing, WriteOp};

use crate::policy::{Action, Policy, Rule, Values};
use crate::reconcile::{
    Base, ConflictKind, FieldBase, FieldConflict, LOOP_REASON, LinkPlan, SideView, create_values,
    reconcile,
};
use crate::side::Side;
use crate::store::{Change, ConflictNote, LinkRef, LinkState, PlannedWrite};

/// A pulled record with what is known of its counterpart.
#[derive(Debug, Clone, Default)]
pub struct Item {
    /// The link, if the records are linked already.
    pub link: Option<LinkState>,
    /// Records read in this pass, by side (left, right).
    pub fresh: [Option<Record>; 2],
    /// Set when the record's key is held by the link of another record on the
    /// same side: that link's id. The record is not linked; a person decides.
    pub key_owner: Option<i64>,
    /// Keys the fresh records carry that other links hold already.
    pub taken_keys: BTreeSet<String>,
    /// Fields of the link the loop detector stopped: a write to them becomes a
    /// conflict, unless a person decided the value.
    pub looping: BTreeSet<String>,
}

/// Why an item led to no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Neither record has a match key, so it cannot be linked or created.
    NoKey,
    /// The counterpart is archived or deleted; it is not re-created.
    Archived,
    /// The policy does not create records on that side.
    NoCreate,
    /// Another record in the same batch carries this key; it is decided first.
    KeyTaken,
    /// The link's record is archived or deleted on a side: nothing syncs until it is restored.
    Gone,
    /// A record is outside the policy's scope for its side.
    OutOfScope,
}

/// One side's current record: freshly read, or the last version remembered.
struct Current<'a> {
    id: Option<&'a str>,
    fields: &'a FieldMap,
    changed_at: Millis,
    fields_changed_at: &'a BTreeMap<String, Millis>,
    standing: Standing,
}

/// Whether the `side` record of a linked item should be read again with each
/// field's change time before it is decided: both sides changed a field that
/// `newest` settles, and this record does not say when its value was set (a
/// poll brought it). Without that time the record's own change time stands in,
/// and an edit of another field would make this one look newer than it is.
pub fn needs_dates(policy: &Policy, item: &Item, side: Side) -> bool {
    let (Some(link), [Some(left), Some(right)]) = (&item.link, &item.fresh) else {
        return false;
    };
    let fresh = [left, right];
    let changed = |side: Side, path: &str| {
        let seen = link.snapshots[side as usize]
            .as_ref()
            .and_then(|s| s.fields.get(path));
        fresh[side as usize].fields.get(path) != seen
    };
    policy
        .fields
        .iter()
        .filter(|f| matches!(f.rule, Rule::Newest { .. }))
        .any(|f| {
            let path = f.path(side);
            !fresh[side as usize].changed_at.contains_key(path)
                && changed(side, path)
                && changed(side.other(), f.path(side.other()))
        })
}

/// Decide what to do with an item.
pub fn plan(policy: &Policy, item: &Item) -> Result<Change, Skip> {
    if let Some(owner) = item.key_owner {
        return Ok(ambiguous_match(policy, item, owner));
    }
    // A link whose record is gone on a side syncs again only once that record is back.
    let mut restored = None;
    if let Some(state) = &item.link {
        for side in Side::BOTH
            .into_iter()
            .filter(|s| state.link.gone[*s as usize])
        {
            match &item.fresh[side as usize] {
                Some(record) if !record.is_archived() => restored = Some(side),
                _ => return Err(Skip::Gone),
            }
        }
        if let Some((side, record)) = Side::BOTH.into_iter().find_map(|s| {
            item.fresh[s as usize]
                .as_ref()
                .filter(|r| r.is_archived())
                .map(|r| (s, r))
        }) {
            return Ok(archived(policy, state, side, record));
        }
    }
    let current = |side: Side| -> Option<Current<'_>> {
        if let Some(record) = &item.fresh[side as usize] {
            return Some(Current {
                id: Some(&record.id),
                fields: &record.fields,
                changed_at: record.updated_at,
                fields_changed_at: &record.changed_at,
                standing: record.standing,
            });
        }
        let state = item.link.as_ref()?;
        let id = state.link.id_on(side)?;
        let snapshot = state.snapshots[side as usize].as_ref()?;
        Some(Current {
            id: Some(id),
            fields: &snapshot.fields,
            changed_at: snapshot.updated_at,
            fields_changed_at: &snapshot.changed_at,
            standing: snapshot.standing,
        })
    };
    // A record whose standing moved (unsubscribed, cleaned, back to active) puts a
    // mark on the other side, when the policy says so and has a mark field.
    let marks: Vec<(Side, String, Standing)> = Side::BOTH
        .into_iter()
        .filter_map(|side| {
            let record = item.fresh[side as usize].as_ref()?;
            let before = item
                .link
                .as_ref()
                .and_then(|s| s.snapshots[side as usize].as_ref())
                .map_or(Standing::Active, |s| s.standing);
            let reactions = &policy.on[side as usize];
            (record.standing != before && reactions.to(record.standing) == Action::Mark)
                .then(|| {
                    reactions
                        .mark
                        .clone()
                        .map(|path| (side.other(), path, record.standing))
                })
                .flatten()
        })
        .collect();
    let seen: Vec<(Side, Record)> = Side::BOTH
        .into_iter()
        .filter_map(|s| item.fresh[s as usize].clone().map(|r| (s, r)))
        .collect();
    let key_field = &policy.key_field().name;
    let key_of = |fields: &FieldMap, side: Side| -> Option<String> {
        policy
            .canonical(side, fields)
            .get(key_field)
            .and_then(Value::as_str)
            .map(String::from)
    };
    // Records outside the scope are neither linked, created nor synced. A linked
    // one is remembered, so the other side's edits wait as well, and its events
    // still put their marks.
    if Side::BOTH
        .into_iter()
        .any(|side| current(side).is_some_and(|record| !policy.in_scope(side, record.fields)))
    {
        let Some(state) = &item.link else {
            return Err(Skip::OutOfScope);
        };
        let mut writes = Vec::new();
        for (side, path, standing) in &marks {
            if let Some(id) = state.link.id_on(*side) {
                let op = WriteOp::Update { id: id.to_string() };
                add_mark(&mut writes, *side, op, &state.link.key, path, *standing);
            }
        }
        return Ok(Change {
            link: LinkRef::Existing(state.link.id),
            seen,
            agreed: BTreeMap::new(),
            writes,
            conflicts: Vec::new(),
            settled: Vec::new(),
            new_key: None,
            resolved: Vec::new(),
            reconciled: true,
            gone: None,
            restored,
        });
    }
    match (current(Side::Left), current(Side::Right)) {
        (Some(left), Some(right)) => {
            if left.standing == Standing::Archived || right.standing == Standing::Archived {
                return Err(Skip::Archived);
            }
            let values = [
                policy.canonical(Side::Left, left.fields),
                policy.canonical(Side::Right, right.fields),
            ];
            let key = match &item.link {
                Some(state) => state.link.key.clone(),
                None => key_of(left.fields, Side::Left)
                    .or_else(|| key_of(right.fields, Side::Right))
                    .ok_or(Skip::NoKey)?,
            };
            let link = match &item.link {
                Some(state) => LinkRef::Existing(state.link.id),
                None => LinkRef::New {
                    key: key.clone(),
                    ids: [left.id.map(String::from), right.id.map(String::from)],
                },
            };
            let empty = Base::new();
            let echoed = item
                .link
                .as_ref()
                .map(|state| echoes(policy, state, &values))
                .unwrap_or_default();
            let with_echoes;
            let base = match &item.link {
                None => &empty,
                Some(state) if echoed.is_empty() => &state.base,
                Some(state) => {
                    let mut base = state.base.clone();
                    for (field, left, right) in &echoed {
                        base.insert(
                            field.clone(),
                            FieldBase {
                                left: left.clone(),
                                right: right.clone(),
                            },
                        );
                    }
                    with_echoes = base;
                    &with_echoes
                }
            };
            let views = [
                SideView {
                    values: &values[0],
                    changed_at: left.changed_at,
                    fields_changed_at: left.fields_changed_at,
                },
                SideView {
                    values: &values[1],
                    changed_at: right.changed_at,
                    fields_changed_at: right.fields_changed_at,
                },
            ];
            let mut decided = reconcile(policy, base, views[0], views[1]);
            // An echo nothing else moved is agreement: it becomes the base.
            let touched = |decided: &LinkPlan, field: &str| {
                decided.agreed.contains_key(field)
                    || decided.writes.iter().any(|w| w.contains_key(field))
                    || decided.conflicts.iter().any(|c| c.field == field)
            };
            let echoed_fields: BTreeSet<String> =
                echoed.iter().map(|(f, _, _)| f.clone()).collect();
            for (field, left, right) in echoed {
                if !touched(&decided, &field) {
                    decided.agreed.insert(field, (left, right));
                }
            }
            // Half of a merge not yet made, on a field neither side moved since:
            // it is still the decision, so it is written again, not dropped.
            if let Some(state) = &item.link {
                for side in Side::BOTH {
                    let Some(flight) = &state.in_flight[side as usize] else {
                        continue;
                    };
                    let sent = policy.canonical(side, &flight.payload);
                    for field in flight.sources.keys() {
                        let Some(value) = sent.get(field) else {
                            continue;
                        };
                        let held = values[side as usize].get(field).unwrap_or(&Value::Null);
                        if held == value
                            || echoed_fields.contains(field)
                            || touched(&decided, field)
                        {
                            continue;
                        }
                        decided.writes[side as usize].insert(field.clone(), value.clone());
                        decided
                            .reasons
                            .insert(field.clone(), "finishing an earlier decision");
                    }
                }
            }
            hold_loops(policy, &item.looping, base, &values, &mut decided);
            let resolved = match &item.link {
                Some(state) => with_resolutions(policy, state, &values, &mut decided),
                None => Vec::new(),
            };
            // A key moving onto one that another link holds is not written or agreed: a person decides.
            let moving_to = decided
                .writes
                .iter()
                .filter_map(|w| w.get(key_field))
                .chain(decided.agreed.get(key_field).map(|(l, _)| l))
                .filter_map(Value::as_str)
                .find(|k| item.taken_keys.contains(*k))
                .map(String::from);
            let mut moved_by = None;
            if let Some(taken) = moving_to {
                let holder = if values[0].get(key_field).and_then(Value::as_str) == Some(&taken) {
                    Side::Left
                } else {
                    Side::Right
                };
                moved_by = item.fresh[holder as usize]
                    .clone()
                    .map(|record| (taken.clone(), holder, record));
                for writes in &mut decided.writes {
                    writes.remove(key_field);
                }
                decided.agreed.remove(key_field);
                decided.settled.retain(|f| f != key_field);
                decided.conflicts.push(FieldConflict {
                    field: key_field.clone(),
                    base: base.get(key_field).cloned(),
                    left: values[0].get(key_field).cloned().unwrap_or(Value::Null),
                    right: values[1].get(key_field).cloned().unwrap_or(Value::Null),
                    rule: policy.key_field().rule,
                    reason: "the new key belongs to another linked record",
                    kind: ConflictKind::AmbiguousMatch {
                        side: holder,
                        record: [left.id, right.id][holder as usize]
                            .unwrap_or_default()
                            .to_string(),
                    },
                });
            }
            let new_key = decided
                .agreed
                .get(key_field)
                .and_then(|(l, _)| l.as_str())
                .filter(|k| *k != key && matches!(link, LinkRef::Existing(_)))
                .map(String::from);
            let ids = [left.id, right.id];
            let mut writes: Vec<PlannedWrite> = Side::BOTH
                .into_iter()
                .filter(|side| !decided.writes_to(*side).is_empty())
                .map(|side| {
                    let to_write = decided.writes_to(side);
                    PlannedWrite {
                        side,
                        op: WriteOp::Update {
                            id: ids[side as usize].expect("both records exist").to_string(),
                        },
                        key: key.clone(),
                        payload: policy.to_side(side, to_write),
                        sources: to_write
                            .keys()
                            .map(|f| {
                                let held = values[side.other() as usize].get(f);
                                (f.clone(), held.cloned().unwrap_or(Value::Null))
                            })
                            .collect(),
                        reasons: to_write
                            .keys()
                            .map(|f| (f.clone(), decided.reasons[f].to_string()))
                            .collect(),
                        values: to_write.clone(),
                    }
                })
                .collect();
            for (side, path, standing) in &marks {
                let id = ids[*side as usize].expect("both records exist").to_string();
                add_mark(
                    &mut writes,
                    *side,
                    WriteOp::Update { id },
                    &key,
                    path,
                    *standing,
                );
            }
            Ok(Change {
                link,
                seen,
                agreed: decided.agreed,
                writes,
                conflicts: decided
                    .conflicts
                    .into_iter()
                    .map(|conflict| {
                        // A key move held back waits for the key, with the record that moved it.
                        let waiting = match &conflict.kind {
                            ConflictKind::AmbiguousMatch { .. } => moved_by.clone(),
                            ConflictKind::Field => None,
                        };
                        ConflictNote {
                            conflict,
                            changed_at: [left.changed_at, right.changed_at],
                            waiting,
                        }
                    })
                    .collect(),
                settled: decided.settled,
                new_key,
                resolved,
                reconciled: true,
                gone: None,
                restored,
            })
        }
        (Some(source), None) | (None, Some(source)) => {
            let from = if current(Side::Left).is_some() {
                Side::Left
            } else {
                Side::Right
            };
            let to = from.other();
            if source.standing == Standing::Archived {
                return Err(Skip::Archived);
            }
            if !policy.creates_on(to) {
                return Err(Skip::NoCreate);
            }
            let key = match &item.link {
                Some(state) => state.link.key.clone(),
                None => key_of(source.fields, from).ok_or(Skip::NoKey)?,
            };
            let values: Values = create_values(&policy.canonical(from, source.fields));
            let link = match &item.link {
                Some(state) => LinkRef::Existing(state.link.id),
                None => {
                    let mut ids = [None, None];
                    ids[from as usize] = source.id.map(String::from);
                    LinkRef::New {
                        key: key.clone(),
                        ids,
                    }
                }
            };
            let write = PlannedWrite {
                side: to,
                op: WriteOp::Create,
                key: key.clone(),
                payload: policy.to_side(to, &values),
                reasons: values
                    .keys()
                    .map(|f| (f.clone(), "created".to_string()))
                    .collect(),
                sources: values.clone(),
                values,
            };
            let mut writes = vec![write];
            for (side, path, standing) in &marks {
                add_mark(&mut writes, *side, WriteOp::Create, &key, path, *standing);
            }
            Ok(Change {
                link,
                seen,
                agreed: BTreeMap::new(),
                writes,
                conflicts: vec![],
                settled: vec![],
                new_key: None,
                resolved: Vec::new(),
                reconciled: true,
                gone: None,
                restored,
            })
        }
        (None, None) => Err(Skip::NoKey),
    }
}

/// A write to a looping field is not made: the field becomes a conflict (or
/// stays one) with both sides' values, for a person to settle.
fn hold_loops(
    policy: &Policy,
    looping: &BTreeSet<String>,
    base: &Base,
    values: &[Values; 2],
    plan: &mut LinkPlan,
) {
    for name in looping {
        if !plan.writes.iter().any(|w| w.contains_key(name)) {
            continue;
        }
        let Some(field) = policy.fields.iter().find(|f| &f.name == name) else {
            continue;
        };
        for writes in &mut plan.writes {
            writes.remove(name);
        }
        plan.reasons.remove(name);
        plan.settled.retain(|f| f != name);
        plan.conflicts.retain(|c| &c.field != name);
        plan.conflicts.push(FieldConflict {
            field: name.clone(),
            base: base.get(name).cloned(),
            left: values[0].get(name).cloned().unwrap_or(Value::Null),
            right: values[1].get(name).cloned().unwrap_or(Value::Null),
            rule: field.rule,
            reason: LOOP_REASON,
            kind: ConflictKind::Field,
        });
    }
}

/// Put the decisions of people into a link's plan. A field a person decided is
/// written to each side that does not hold the chosen value yet, and the
/// decision is over once both do. A side edited again after the decision (it
/// holds neither what the person saw nor the value chosen) supersedes it: that
/// newer edit is decided by the policy like any other.
fn with_resolutions(
    policy: &Policy,
    state: &LinkState,
    values: &[Values; 2],
    plan: &mut LinkPlan,
) -> Vec<(String, bool)> {
    let mut over = Vec::new();
    for (name, pending) in &state.resolutions {
        let Some(field) = policy.fields.iter().find(|f| &f.name == name) else {
            over.push((name.clone(), false));
            continue;
        };
        let current = values
            .each_ref()
            .map(|v| v.get(name).unwrap_or(&Value::Null));
        let edited_since = Side::BOTH.into_iter().any(|side| {
            let now = current[side as usize];
            now != &pending.seen[side as usize] && now != &pending.value
        });
        if edited_since {
            over.push((name.clone(), false));
            continue;
        }
        for writes in &mut plan.writes {
            writes.remove(name);
        }
        plan.agreed.remove(name);
        plan.conflicts.retain(|c| &c.field != name);
        plan.settled.retain(|f| f != name);
        let mut writing = false;
        for side in Side::BOTH {
            if current[side as usize] != &pending.value && !field.readonly(side) {
                plan.writes[side as usize].insert(name.clone(), pending.value.clone());
                writing = true;
            }
        }
        if writing {
            plan.reasons.insert(name.clone(), "resolved by a person");
        } else {
            plan.agreed
                .insert(name.clone(), (current[0].clone(), current[1].clone()));
            plan.settled.push(name.clone());
            over.push((name.clone(), true));
        }
    }
    over
}

/// Write a standing mark into `path` on `side`: into the write already going
/// there, or as a write of its own. A mark is not a synced field: it has no base.
fn add_mark(
    writes: &mut Vec<PlannedWrite>,
    side: Side,
    op: WriteOp,
    key: &str,
    path: &str,
    standing: Standing,
) {
    let value = Value::String(standing.as_str().to_string());
    match writes.iter_mut().find(|w| w.side == side) {
        Some(write) => {
            write.payload.insert(path.to_string(), value);
        }
        None => writes.push(PlannedWrite {
            side,
            op,
            key: key.to_string(),
            payload: FieldMap::from([(path.to_string(), value)]),
            sources: BTreeMap::new(),
            reasons: BTreeMap::new(),
            values: BTreeMap::new(),
        }),
    }
}

/// A linked record archived or deleted on `side`: the link stops syncing, and the
/// other record is marked, archived, deleted or left alone, as the policy says.
fn archived(policy: &Policy, state: &LinkState, side: Side, record: &Record) -> Change {
    let other = side.other();
    let reactions = &policy.on[side as usize];
    let other_id = state
        .link
        .id_on(other)
        .filter(|_| !state.link.gone[other as usize])
        .map(String::from);
    let mut writes = Vec::new();
    if let Some(id) = other_id {
        match (reactions.archived, &reactions.mark) {
            (Action::Mark, Some(path)) => add_mark(
                &mut writes,
                other,
                WriteOp::Update { id },
                &state.link.key,
                path,
                Standing::Archived,
            ),
            (Action::Archive, _) => {
                writes.push(removal(other, WriteOp::Archive { id }, &state.link.key))
            }
            (Action::DeletePermanently, _) => writes.push(removal(
                other,
                WriteOp::DeletePermanently { id },
                &state.link.key,
            )),
            _ => {}
        }
    }
    Change {
        link: LinkRef::Existing(state.link.id),
        seen: vec![(side, record.clone())],
        agreed: BTreeMap::new(),
        writes,
        conflicts: Vec::new(),
        settled: Vec::new(),
        new_key: None,
        resolved: Vec::new(),
        reconciled: true,
        gone: Some(side),
        restored: None,
    }
}

fn removal(side: Side, op: WriteOp, key: &str) -> PlannedWrite {
    PlannedWrite {
        side,
        op,
        key: key.to_string(),
        payload: FieldMap::new(),
        sources: BTreeMap::new(),
        reasons: BTreeMap::new(),
        values: BTreeMap::new(),
    }
}

/// A record whose key the link `owner` holds with another record on the same side:
/// the conflict goes on that link, and the record stays unlinked.
fn ambiguous_match(policy: &Policy, item: &Item, owner: i64) -> Change {
    let key_field = policy.key_field();
    let (side, record) = Side::BOTH
        .into_iter()
        .find_map(|s| item.fresh[s as usize].as_ref().map(|r| (s, r)))
        .expect("an item has a record");
    let key = policy
        .canonical(side, &record.fields)
        .get(&key_field.name)
        .cloned()
        .unwrap_or(Value::Null);
    let mut values = [Value::Null, Value::Null];
    values[side as usize] = key.clone();
    values[side.other() as usize] = key.clone();
    let [left, right] = values;
    Change {
        link: LinkRef::Existing(owner),
        seen: Vec::new(),
        agreed: BTreeMap::new(),
        writes: Vec::new(),
        conflicts: vec![ConflictNote {
            conflict: FieldConflict {
                field: key_field.name.clone(),
                base: None,
                left,
                right,
                rule: key_field.rule,
                reason: "another record on the same side has the same key",
                kind: ConflictKind::AmbiguousMatch {
                    side,
                    record: record.id.clone(),
                },
            },
            changed_at: [record.updated_at, record.updated_at],
            waiting: key.as_str().map(|k| (k.to_string(), side, record.clone())),
        }],
        settled: Vec::new(),
        new_key: None,
        resolved: Vec::new(),
        reconciled: false,
        gone: None,
        restored: None,
    }
}

/// Fields that a queued, unconfirmed update already set on its side: the side
/// holds exactly the value sent. Such a value is the echo of our write (it
/// reached the system before a crash or a lost answer), so its base is what
/// confirming the write would have made it: (left, right) as the written
/// side holds it and as the other side held it when the write was decided.
pub fn echoes(
    policy: &Policy,
    state: &LinkState,
    values: &[Values; 2],
) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for side in Side::BOTH {
        // The queued write, and every earlier one a later decision replaced.
        let mut carried = state.sent[side as usize].clone();
        if let Some(flight) = &state.in_flight[side as usize] {
            let sent = policy.canonical(side, &flight.payload);
            for (field, source) in &flight.sources {
                if let Some(value) = sent.get(field) {
                    carried
                        .entry(field.clone())
                        .or_default()
                        .push((value.clone(), source.clone()));
                }
            }
        }
        for (field, candidates) in &carried {
            let held = values[side as usize].get(field).unwrap_or(&Value::Null);
            let known = state.base.get(field);
            let already = known.is_some_and(|b| match side {
                Side::Left => &b.left == held,
                Side::Right => &b.right == held,
            });
            let Some((_, source)) = candidates.iter().rev().find(|(value, _)| value == held) else {
                continue;
            };
            if already {
                continue;
            }
            out.push(match side {
                Side::Left => (field.clone(), held.clone(), source.clone()),
                Side::Right => (field.clone(), source.clone(), held.clone()),
            });
        }
    }
    out
}

/// The new base of each field a confirmed write carried: the other side's value
/// when the write was decided,
/// and the value the written system holds now (what it echoed back, or what was sent).
pub fn confirmed_base(
    policy: &Policy,
    written: Side,
    sources: &BTreeMap<String, Value>,
    payload: &FieldMap,
    echoed: &FieldMap,
) -> Vec<(String, Value, Value)> {
    let mut held = payload.clone();
    held.extend(echoed.iter().map(|(k, v)| (k.clone(), v.clone())));
    let now = policy.canonical(written, &held);
    sources
        .iter()
        .map(|(field, source)| {
            let target = now.get(field).cloned().unwrap_or(Value::Null);
            match written {
                Side::Right => (field.clone(), source.clone(), target),
                Side::Left => (field.clone(), target, source.clone()),
            }
        })
        .collect()
}
