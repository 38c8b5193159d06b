//! Drift: both systems listed in full and compared, record by record, with
//! what the state says is linked. Passes read only what changed; this finds
//! what they could have missed (a change no cursor or webhook brought, a
//! record deleted with no event, a record never linked) and says so. With
//! `fix`, the records that differ or were never linked are named to the next
//! pass (as hints, like a webhook's), which reads them again and decides them
//! three-way against the base like any pulled record: repairs go through the
//! normal path (policy, outbox, audit). A record missing on one side is only
//! reported: absence never means deletion.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use tandem_core::{ConnectorError, Hint, HintKind, Millis, Record, RecordRef, Standing};

use super::{Engine, PassError, RECONCILE_HINT};
use crate::policy::Policy;
use crate::side::Side;
use crate::store::{DriftCounts, Link};

/// A linked pair of records that disagree.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Difference {
    /// The match key.
    pub key: String,
    /// Canonical field -> (left value, right value).
    pub fields: BTreeMap<String, (Value, Value)>,
    /// Whether an open conflict or a queued write already covers the link, or
    /// a record changed after its side's last poll (the next pass reads it).
    pub settling: bool,
}

/// A linked record not found in its system's listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Missing {
    /// The match key.
    pub key: String,
    /// The side it was not found on.
    pub side: Side,
    /// The connector it was not found in.
    pub connector: String,
    /// Its id there.
    pub id: String,
    /// Whether reading it by id found it archived (an archive no webhook or
    /// poll brought); otherwise it is not found at all.
    pub archived: bool,
}

/// A record in scope with no link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Extra {
    /// The side it is on.
    pub side: Side,
    /// The connector it is in.
    pub connector: String,
    /// Its id there.
    pub id: String,
    /// Its match key, if it has one.
    pub key: Option<String>,
}

/// One pair's comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DriftReport {
    /// The pair.
    pub pair: String,
    /// Left and right connector.
    pub connectors: [String; 2],
    /// The counts, as stored.
    pub counts: DriftCounts,
    /// Links whose records disagree.
    pub different: Vec<Difference>,
    /// Linked records not listed.
    pub missing: Vec<Missing>,
    /// Records with no link.
    pub extra: Vec<Extra>,
    /// Records staged for the next pass (with `fix`).
    pub staged: usize,
}

impl DriftReport {
    /// Whether the systems and the state agree, apart from what is settling.
    pub fn clean(&self) -> bool {
        self.counts.different == 0 && self.counts.missing == 0 && self.counts.extra == 0
    }
}

/// What a comparison reports as it lists.
pub trait Progress {
    /// `records` more were listed from `side`.
    fn listed(&mut self, side: Side, records: usize);
}

impl Progress for () {
    fn listed(&mut self, _: Side, _: usize) {}
}

impl Engine {
    /// Compare both systems of every pair in full against the state; store
    /// the counts; with `fix`, stage what differs for the next pass.
    pub async fn drift(
        &self,
        fix: bool,
        progress: &mut impl Progress,
    ) -> Result<Vec<DriftReport>, PassError> {
        let mut reports = Vec::new();
        for policy in self.policies() {
            reports.push(self.drift_pair(&policy, fix, progress).await?);
        }
        Ok(reports)
    }

    /// Every record of one side not archived, by id: a listing from the start.
    pub(super) async fn list_all(
        &self,
        policy: &Policy,
        side: Side,
        progress: &mut impl Progress,
    ) -> Result<HashMap<String, Record>, ConnectorError> {
        self.list_all_as(policy, side, progress, |record| record)
            .await
    }

    /// Every record of one side not archived, by id, kept as `keep` makes it.
    async fn list_all_as<T>(
        &self,
        policy: &Policy,
        side: Side,
        progress: &mut impl Progress,
        keep: impl Fn(Record) -> T,
    ) -> Result<HashMap<String, T>, ConnectorError> {
        let connector = self.connector(policy, side).clone();
        let mut listed = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = connector.poll(cursor.as_deref()).await?;
            progress.listed(side, page.records.len());
            for record in page.records {
                if record.standing != Standing::Archived {
                    listed.insert(record.id.clone(), keep(record));
                }
            }
            cursor = Some(page.cursor);
            // Every page of a listing from the start is part of a full
            // listing; only `more` says whether pages remain.
            if !page.more {
                return Ok(listed);
            }
        }
    }

    async fn drift_pair(
        &self,
        policy: &Policy,
        fix: bool,
        progress: &mut impl Progress,
    ) -> Result<DriftReport, PassError> {
        let failed = |error: ConnectorError| {
            let pair = policy.name.clone();
            if error.kind() == tandem_core::ErrorKind::Fatal {
                PassError::Fatal { pair, error }
            } else {
                PassError::Unavailable { pair, error }
            }
        };
        // Passes may run while both systems are listed: a link they change
        // meanwhile may have been listed before the change, so it is settling.
        // Only what comes after everything the store holds counts as meanwhile,
        // should the clock have gone back.
        let now = self.clock.now();
        let latest = self.store.call(|s| s.latest_link_change()).await?;
        let started = latest.map_or(now, |latest| now.max(latest + 1));
        let mut listed: [HashMap<String, Listed>; 2] = Default::default();
        for side in Side::BOTH {
            listed[side as usize] = self
                .list_all_as(policy, side, progress, |record| {
                    Listed::new(policy, side, &record)
                })
                .await
                .map_err(failed)?;
        }
        let pair = policy.name.clone();
        let (links, busy, changed, polls) = self
            .store
            .call(move |s| {
                Ok((
                    s.all_links(&pair)?,
                    s.busy_links(&pair)?,
                    s.links_changed_since(&pair, started)?,
                    s.last_polls(&pair)?,
                ))
            })
            .await?;
        let mut report = compare(
            policy,
            &listed,
            &links,
            [&busy, &changed],
            polls,
            self.clock.now(),
        );
        let mut archived: Vec<(Side, Vec<Record>)> = Side::BOTH.map(|s| (s, Vec::new())).into();
        // A record not listed may be archived: read it by id, archives included
        // (staged with `fix`, the next pass then tombstones its link).
        for side in Side::BOTH {
            let ids: Vec<String> = report
                .missing
                .iter()
                .filter(|m| m.side == side)
                .map(|m| m.id.clone())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let found = self
                .connector(policy, side)
                .fetch(&ids)
                .await
                .map_err(failed)?;
            for record in found.into_iter().filter(|r| r.is_archived()) {
                if let Some(missing) = report
                    .missing
                    .iter_mut()
                    .find(|m| m.side == side && m.id == record.id)
                {
                    missing.archived = true;
                    archived[side as usize].1.push(record);
                }
            }
        }
        if fix {
            // What differs or was never linked is named to the next pass,
            // which reads it again by id like a record a webhook announced.
            let by_key: HashMap<&str, &Link> = links.iter().map(|l| (l.key.as_str(), l)).collect();
            let mut named: Vec<(Side, &str)> = Vec::new();
            for difference in report.different.iter().filter(|d| !d.settling) {
                if let Some(link) = by_key.get(difference.key.as_str()) {
                    named.extend(
                        Side::BOTH
                            .into_iter()
                            .filter_map(|side| Some((side, link.id_on(side)?))),
                    );
                }
            }
            named.extend(report.extra.iter().map(|e| (e.side, e.id.as_str())));
            let now = self.clock.now();
            let mut hints: [Vec<Hint>; 2] = Default::default();
            for (side, id) in named {
                hints[side as usize].push(Hint {
                    event_id: format!("{RECONCILE_HINT}{now}:{id}"),
                    record: RecordRef::Id(id.to_string()),
                    kind: HintKind::Changed,
                    occurred_at: now,
                });
            }
            report.staged = hints.iter().map(Vec::len).sum::<usize>()
                + archived.iter().map(|(_, r)| r.len()).sum::<usize>();
            let pair = policy.name.clone();
            self.store
                .call(move |s| {
                    for side in Side::BOTH {
                        s.record_hints(&[(pair.clone(), side)], &hints[side as usize], now)?;
                    }
                    s.stage_hinted(&pair, &archived, &[], Millis::MIN, now)
                })
                .await?;
        }
        let (pair, counts) = (policy.name.clone(), report.counts);
        self.store
            .call(move |s| s.save_drift(&pair, &counts))
            .await?;
        crate::telemetry::record_drift(&report);
        Ok(report)
    }
}

/// What a comparison keeps of a listed record: the canonical values of the
/// fields it compares, not the whole record, so that listing an account of a
/// million records stays within a small machine's memory.
#[derive(Debug)]
struct Listed {
    key: Option<String>,
    updated_at: Millis,
    in_scope: bool,
    /// By field of [`compared`], in its order.
    values: Box<[Value]>,
}

impl Listed {
    fn new(policy: &Policy, side: Side, record: &Record) -> Listed {
        Listed {
            key: record.key.clone(),
            updated_at: record.updated_at,
            in_scope: policy.in_scope(side, &record.fields),
            values: compared(policy)
                .map(|f| {
                    f.read(
                        side,
                        record.fields.get(f.path(side)).unwrap_or(&Value::Null),
                    )
                })
                .collect(),
        }
    }
}

/// The fields a comparison looks at: a field read-only on a side is never
/// written there, so it may differ.
fn compared(policy: &Policy) -> impl Iterator<Item = &crate::policy::FieldPolicy> {
    policy
        .fields
        .iter()
        .filter(|f| !f.readonly(Side::Left) && !f.readonly(Side::Right))
}

/// Compare listed records with the links. A link that disagrees is
/// "settling", not drift, while it is busy (a conflict or a queued write
/// covers it), `changed` (a pass changed it while the systems were listed:
/// what was listed may be older) or while one of its records changed after
/// that side's last poll (the next pass reads it). A changed link with a
/// record not listed is settling too, not missing: it may have been made
/// after its system was listed. Pure.
fn compare(
    policy: &Policy,
    listed: &[HashMap<String, Listed>; 2],
    links: &[Link],
    [busy, changed]: [&HashSet<i64>; 2],
    last_polls: [Option<Millis>; 2],
    now: Millis,
) -> DriftReport {
    let connectors = [policy.left.clone(), policy.right.clone()];
    let mut counts = DriftCounts {
        at: now,
        listed: [listed[0].len() as u64, listed[1].len() as u64],
        ..DriftCounts::default()
    };
    let (mut different, mut missing, mut extra) = (Vec::new(), Vec::new(), Vec::new());
    let mut linked: [HashSet<&str>; 2] = Default::default();
    for link in links {
        for side in Side::BOTH {
            if let Some(id) = link.id_on(side) {
                linked[side as usize].insert(id);
            }
        }
        // A link archived on a side, or still being created, has nothing to compare.
        if link.gone.iter().any(|gone| *gone) {
            continue;
        }
        let (Some(left_id), Some(right_id)) = (link.id_on(Side::Left), link.id_on(Side::Right))
        else {
            continue;
        };
        let found = [listed[0].get(left_id), listed[1].get(right_id)];
        if found.iter().any(Option::is_none) && changed.contains(&link.id) {
            counts.settling += 1;
            continue;
        }
        for side in Side::BOTH {
            if found[side as usize].is_none() {
                missing.push(Missing {
                    key: link.key.clone(),
                    side,
                    connector: connectors[side as usize].clone(),
                    id: link.id_on(side).unwrap_or_default().to_string(),
                    archived: false,
                });
            }
        }
        let (Some(left), Some(right)) = (found[0], found[1]) else {
            continue;
        };
        let fields: BTreeMap<String, (Value, Value)> = compared(policy)
            .zip(left.values.iter().zip(right.values.iter()))
            .filter(|(_, (l, r))| l != r)
            .map(|(f, (l, r))| (f.name.clone(), (l.clone(), r.clone())))
            .collect();
        if fields.is_empty() {
            counts.matched += 1;
            continue;
        }
        let unread = |side: Side, record: &Listed| {
            last_polls[side as usize].is_none_or(|polled| record.updated_at > polled)
        };
        let settling = busy.contains(&link.id)
            || changed.contains(&link.id)
            || unread(Side::Left, left)
            || unread(Side::Right, right);
        if settling {
            counts.settling += 1;
        } else {
            counts.different += 1;
        }
        different.push(Difference {
            key: link.key.clone(),
            fields,
            settling,
        });
    }
    counts.missing = missing.len() as u64;
    for side in Side::BOTH {
        let mut unlinked: Vec<(&String, &Listed)> = listed[side as usize]
            .iter()
            .filter(|(id, _)| !linked[side as usize].contains(id.as_str()))
            .filter(|(_, r)| r.in_scope)
            .collect();
        unlinked.sort_by(|a, b| a.0.cmp(b.0));
        extra.extend(unlinked.into_iter().map(|(id, r)| Extra {
            side,
            connector: connectors[side as usize].clone(),
            id: id.clone(),
            key: r.key.clone(),
        }));
    }
    counts.extra = extra.len() as u64;
    DriftReport {
        pair: policy.name.clone(),
        connectors,
        counts,
        different,
        missing,
        extra,
        staged: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> Listed {
        let record = Record {
            id: id.into(),
            key: None,
            fields: [
                ("l.name".to_string(), Value::from(name)),
                ("r.name".to_string(), Value::from(name)),
            ]
            .into(),
            updated_at: 10,
            changed_at: BTreeMap::new(),
            standing: Standing::Active,
        };
        let side = if id.starts_with('l') {
            Side::Left
        } else {
            Side::Right
        };
        Listed::new(&crate::reconcile::tests::policy(), side, &record)
    }

    fn link(id: i64) -> Link {
        Link {
            id,
            key: format!("k{id}"),
            ids: [Some(format!("l{id}")), Some(format!("r{id}"))],
            gone: [false, false],
        }
    }

    #[test]
    fn a_link_changed_while_listing_is_settling_not_missing_or_different() {
        let policy = crate::reconcile::tests::policy();
        let links: Vec<Link> = (1..=4).map(link).collect();
        let listed: [HashMap<String, Listed>; 2] = [
            ["l1", "l2", "l3", "l4"]
                .map(|id| (id.to_string(), record(id, "Ada")))
                .into(),
            [("r3", "Bea"), ("r4", "Bea")]
                .map(|(id, name)| (id.to_string(), record(id, name)))
                .into(),
        ];
        // Links 1 and 3 were changed by a pass while the systems were listed.
        let (busy, changed) = (HashSet::new(), HashSet::from([1, 3]));
        let report = compare(
            &policy,
            &listed,
            &links,
            [&busy, &changed],
            [Some(20), Some(20)],
            30,
        );
        let missing: Vec<&str> = report.missing.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(missing, ["k2"]);
        let different: Vec<(&str, bool)> = report
            .different
            .iter()
            .map(|d| (d.key.as_str(), d.settling))
            .collect();
        assert_eq!(different, [("k3", true), ("k4", false)]);
        assert_eq!(
            (report.counts.different, report.counts.settling),
            (1, 2),
            "{:?}",
            report.counts
        );
    }
}
