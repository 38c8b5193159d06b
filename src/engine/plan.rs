//! Turning one pulled record (and its counterpart, if any) into a [`Change`]:
//! link, create or reconcile. Pure, like `reconcile`: the engine gathers the
//! state, this decides, the store applies.

use std::collections::BTreeMap;

use serde_json::Value;
use tandem_core::{FieldMap, Millis, Record, WriteOp};

use crate::policy::{Policy, Values};
use crate::reconcile::{Base, SideView, create_values, reconcile};
use crate::side::Side;
use crate::store::{Change, ConflictNote, LinkRef, LinkState, PlannedWrite};

/// A pulled record with what is known of its counterpart.
#[derive(Debug, Clone, Default)]
pub struct Item {
    /// The link, if the records are linked already.
    pub link: Option<LinkState>,
    /// Records read in this pass, by side (left, right).
    pub fresh: [Option<Record>; 2],
    /// The record's key is already linked to another record on the same side.
    pub key_taken: bool,
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
    /// Another record on the same side already holds this key's link.
    KeyTaken,
}

/// One side's current record: freshly read, or the last version remembered.
struct Current<'a> {
    id: Option<&'a str>,
    fields: &'a FieldMap,
    changed_at: Millis,
    archived: bool,
}

/// Decide what to do with an item.
pub fn plan(policy: &Policy, item: &Item) -> Result<Change, Skip> {
    if item.key_taken {
        return Err(Skip::KeyTaken);
    }
    let current = |side: Side| -> Option<Current<'_>> {
        if let Some(record) = &item.fresh[side as usize] {
            return Some(Current {
                id: Some(&record.id),
                fields: &record.fields,
                changed_at: record.updated_at,
                archived: record.archived,
            });
        }
        let state = item.link.as_ref()?;
        let id = state.link.id_on(side)?;
        let snapshot = state.snapshots[side as usize].as_ref()?;
        Some(Current {
            id: Some(id),
            fields: &snapshot.fields,
            changed_at: snapshot.updated_at,
            archived: false,
        })
    };
    let seen: Vec<(Side, Record)> = Side::BOTH
        .into_iter()
        .filter_map(|s| {
            item.fresh[s as usize]
                .clone()
                .filter(|r| !r.archived)
                .map(|r| (s, r))
        })
        .collect();
    let key_of = |fields: &FieldMap, side: Side| -> Option<String> {
        policy
            .canonical(side, fields)
            .get(&policy.key_field().name)
            .and_then(Value::as_str)
            .map(String::from)
    };
    match (current(Side::Left), current(Side::Right)) {
        (Some(left), Some(right)) => {
            if left.archived || right.archived {
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
            let base = item.link.as_ref().map_or(&empty, |s| &s.base);
            let views = [
                SideView {
                    values: &values[0],
                    changed_at: left.changed_at,
                },
                SideView {
                    values: &values[1],
                    changed_at: right.changed_at,
                },
            ];
            let decided = reconcile(policy, base, views[0], views[1]);
            let ids = [left.id, right.id];
            let writes = Side::BOTH
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
                        sources: to_write.clone(),
                        reasons: to_write
                            .keys()
                            .map(|f| (f.clone(), decided.reasons[f].to_string()))
                            .collect(),
                    }
                })
                .collect();
            Ok(Change {
                link,
                seen,
                agreed: decided.agreed,
                writes,
                conflicts: decided
                    .conflicts
                    .into_iter()
                    .map(|conflict| ConflictNote {
                        conflict,
                        changed_at: [left.changed_at, right.changed_at],
                    })
                    .collect(),
                settled: decided.settled,
            })
        }
        (Some(source), None) | (None, Some(source)) => {
            let from = if current(Side::Left).is_some() {
                Side::Left
            } else {
                Side::Right
            };
            let to = from.other();
            if source.archived {
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
                sources: values,
            };
            Ok(Change {
                link,
                seen,
                agreed: BTreeMap::new(),
                writes: vec![write],
                conflicts: vec![],
                settled: vec![],
            })
        }
        (None, None) => Err(Skip::NoKey),
    }
}

/// The new base of each field a confirmed write carried: the source side's value,
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
