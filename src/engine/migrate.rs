//! One-way migration: every record of one system copied into the other
//! through the policy's mapping, then proved. Teams replacing a system
//! migrate, validate, then switch on two-way sync; so the copy links each
//! record pair and records what both now hold as their base, and the first
//! two-way pass finds nothing left to do.
//!
//! The copy goes through the normal path: decisions are applied to the store
//! as changes (links, versions, base), writes go through the outbox (audited,
//! idempotent on retry, creates guarded against duplicates), and a run cut
//! short is resumed by running it again: what already arrived compares equal
//! and is not written twice, and what was queued is sent first.
//!
//! The validation lists both systems again and compares what the target holds
//! with what the source says it should: counts, a checksum per field, missing
//! and extra records, every altered field, and spot checks that read a sample
//! of records back by id rather than trusting the listing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tandem_core::{ConnectorError, Record, WriteOp};
use tokio_util::sync::CancellationToken;

use super::{Engine, PairReport, PassError, Progress, PullError};
use crate::policy::{Policy, Values};
use crate::reconcile::create_values;
use crate::side::Side;
use crate::store::{Change, LinkRef, PlannedWrite};

/// What the copy would do, or did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyCounts {
    /// Source records in scope with a match key.
    pub source: usize,
    /// Records created in the target.
    pub create: usize,
    /// Target records updated.
    pub update: usize,
    /// Target records that already held the source's values.
    pub unchanged: usize,
    /// Source records out of the policy's scope, or with no match key.
    pub skipped: usize,
    /// Source records whose key another record is linked under, or whose link
    /// has writes queued by two-way sync: left to that sync and to people.
    pub held: usize,
    /// Source records linked to a target record that is archived or deleted:
    /// not re-created (an archive may be a person's decision); restore it there.
    pub gone: usize,
}

/// How the copy ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyOutcome {
    /// Writes confirmed by the target.
    pub written: usize,
    /// Writes still queued (the target refused them for now): run again to resume.
    pub queued: u64,
    /// Writes the target rejected too often, parked as dead letters.
    pub dead_letters: u64,
    /// What went wrong along the way.
    pub problems: Vec<String>,
}

/// A target record that does not hold what the source says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Altered {
    /// The match key.
    pub key: String,
    /// Canonical field -> (expected, found).
    pub fields: BTreeMap<String, (Value, Value)>,
}

/// One field's checksum on both systems, over every source record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChecksum {
    /// The canonical field.
    pub field: String,
    /// Source records with a value in it (the ones compared).
    pub records: usize,
    /// SHA-256 of the source's values, as `key<TAB>value` lines in key order.
    pub source: String,
    /// The same over the target's values for those keys.
    pub target: String,
}

/// A record read back from the target by id and compared with its source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpotCheck {
    /// The match key.
    pub key: String,
    /// The target record's id (none when it is missing).
    pub id: Option<String>,
    /// Fields compared.
    pub fields: usize,
    /// Fields that differ: (expected, found).
    pub differing: BTreeMap<String, (Value, Value)>,
    /// Whether the record was found and every field agreed.
    pub passed: bool,
}

/// The proof: what the target holds against what the source says it should.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Validation {
    /// Source records in scope with a match key.
    pub source_records: usize,
    /// Target records listed (not archived).
    pub target_records: usize,
    /// Source records found in the target with every field as expected.
    pub matched: usize,
    /// Keys of source records the target lacks.
    pub missing: Vec<String>,
    /// Keys of target records in its scope that no source record has.
    pub extra: Vec<String>,
    /// Target records with a field that is not what the source holds.
    pub altered: Vec<Altered>,
    /// Per field, a checksum on both sides.
    pub checksums: Vec<FieldChecksum>,
    /// Records read back by id.
    pub spot_checks: Vec<SpotCheck>,
    /// Why the validation could not be made (a system unavailable just now).
    pub unavailable: Option<String>,
    /// No missing or altered record, equal checksums, every spot check passed.
    /// Extra records do not fail it: a target may hold people of its own.
    pub passed: bool,
}

/// A migration's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationReport {
    /// The pair whose mapping is used.
    pub pair: String,
    /// The source connector.
    pub from: String,
    /// The target connector.
    pub to: String,
    /// What the copy planned (none with `check` only).
    pub plan: Option<CopyCounts>,
    /// How the copy ended (none with `check` only).
    pub copy: Option<CopyOutcome>,
    /// The validation.
    pub validation: Validation,
}

/// Why a migration could not run.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// No configured pair joins the two connectors.
    #[error("no pair syncs {from} and {to}: the pairs are {pairs}")]
    NoPair {
        /// The source asked for.
        from: String,
        /// The target asked for.
        to: String,
        /// The pairs configured.
        pairs: String,
    },
    /// A pass-like failure: a system or the store.
    #[error(transparent)]
    Pass(#[from] PassError),
}

/// What a migration reports as it goes, on top of listing.
pub trait MigrateProgress: Progress {
    /// A new step starts.
    fn step(&mut self, what: &str);
    /// `done` of `total` writes are confirmed.
    fn written(&mut self, done: usize, total: usize);
}

impl MigrateProgress for () {
    fn step(&mut self, _: &str) {}
    fn written(&mut self, _: usize, _: usize) {}
}

/// Records by match key: canonical values and the record's id.
type Keyed = BTreeMap<String, (Values, String)>;

/// The records a source side should put into the target, by match key: its
/// records in scope with a key, as canonical values.
fn source_values(policy: &Policy, from: Side, listed: &HashMap<String, Record>) -> (Keyed, usize) {
    let key_field = &policy.key_field().name;
    let mut skipped = 0;
    let mut by_key = BTreeMap::new();
    for record in listed.values() {
        if !policy.in_scope(from, &record.fields) {
            skipped += 1;
            continue;
        }
        let values = policy.canonical(from, &record.fields);
        match values.get(key_field).and_then(Value::as_str) {
            Some(key) => {
                by_key.insert(key.to_string(), (values.clone(), record.id.clone()));
            }
            None => skipped += 1,
        }
    }
    (by_key, skipped)
}

/// A target side's records by match key, as canonical values with their id.
fn target_values(policy: &Policy, to: Side, listed: &HashMap<String, Record>) -> Keyed {
    let key_field = &policy.key_field().name;
    listed
        .values()
        .filter_map(|record| {
            let values = policy.canonical(to, &record.fields);
            let key = values.get(key_field)?.as_str()?.to_string();
            Some((key, (values, record.id.clone())))
        })
        .collect()
}

/// The fields of `source` the target should hold: every field written there
/// (not read-only on it) that the source has a value for. An empty source
/// value is not copied: an empty value never erases one.
fn expected(policy: &Policy, to: Side, source: &Values) -> Values {
    policy
        .fields
        .iter()
        .filter(|f| !f.readonly(to))
        .filter_map(|f| {
            let value = source.get(&f.name).filter(|v| !v.is_null())?;
            Some((f.name.clone(), value.clone()))
        })
        .collect()
}

/// Fields of `expected` that `found` does not hold: (expected, found).
fn differing(expected: &Values, found: &Values) -> BTreeMap<String, (Value, Value)> {
    expected
        .iter()
        .filter_map(|(field, want)| {
            let got = found.get(field).unwrap_or(&Value::Null);
            (got != want).then(|| (field.clone(), (want.clone(), got.clone())))
        })
        .collect()
}

impl Engine {
    /// Copy the `from` connector's records into `to` (unless `check` only),
    /// then validate, reading `sample` records back by id. With `confirm`, the
    /// planned counts are shown to it first; it returns whether to go on.
    pub async fn migrate(
        &self,
        from: &str,
        to: &str,
        check: bool,
        sample: usize,
        progress: &mut impl MigrateProgress,
        confirm: impl FnOnce(&CopyCounts) -> bool,
    ) -> Result<Option<MigrationReport>, MigrateError> {
        let policies = self.policies();
        let found = policies.iter().find_map(|p| {
            if p.left == from && p.right == to {
                Some((p.clone(), Side::Left))
            } else if p.right == from && p.left == to {
                Some((p.clone(), Side::Right))
            } else {
                None
            }
        });
        let Some((policy, from_side)) = found else {
            return Err(MigrateError::NoPair {
                from: from.into(),
                to: to.into(),
                pairs: policies
                    .iter()
                    .map(|p| format!("{} <-> {}", p.left, p.right))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let to_side = from_side.other();
        let failed = |error: ConnectorError| {
            let pair = policy.name.clone();
            MigrateError::Pass(if error.kind() == tandem_core::ErrorKind::Fatal {
                PassError::Fatal { pair, error }
            } else {
                PassError::Unavailable { pair, error }
            })
        };
        let mut plan = None;
        let mut copy = None;
        if !check {
            progress.step("listing");
            let source = self
                .list_all(&policy, from_side, progress)
                .await
                .map_err(failed)?;
            let target = self
                .list_all(&policy, to_side, progress)
                .await
                .map_err(failed)?;
            let mut counts = CopyCounts::default();
            let changes = self
                .copy_plan(&policy, from_side, &source, &target, &mut counts)
                .await?;
            if !confirm(&counts) {
                return Ok(None);
            }
            plan = Some(counts);
            progress.step("copying");
            copy = Some(self.copy(&policy, to_side, changes, progress).await?);
        }
        progress.step("validating");
        let validation = match self.validation(&policy, from_side, sample, progress).await {
            Ok(validation) => validation,
            Err(error) if error.kind() == tandem_core::ErrorKind::Fatal => {
                return Err(failed(error));
            }
            Err(error) => Validation {
                unavailable: Some(error.to_string()),
                ..Validation::default()
            },
        };
        Ok(Some(MigrationReport {
            pair: policy.name.clone(),
            from: from.into(),
            to: to.into(),
            plan,
            copy,
            validation,
        }))
    }

    /// List both sides again and compare; read a sample back by id.
    async fn validation(
        &self,
        policy: &Policy,
        from_side: Side,
        sample: usize,
        progress: &mut impl MigrateProgress,
    ) -> Result<Validation, ConnectorError> {
        let to_side = from_side.other();
        let source = self.list_all(policy, from_side, progress).await?;
        let target = self.list_all(policy, to_side, progress).await?;
        let (sources, _) = source_values(policy, from_side, &source);
        let targets = target_values(policy, to_side, &target);
        let mut validation = validate(policy, from_side, &sources, &targets, &target);
        let picks = sample_keys(sources.keys().cloned().collect(), sample);
        let ids: Vec<String> = picks
            .iter()
            .filter_map(|key| targets.get(key).map(|(_, id)| id.clone()))
            .collect();
        let read_back: HashMap<String, Record> = self
            .connector(policy, to_side)
            .fetch(&ids)
            .await?
            .into_iter()
            .filter(|r| !r.is_archived())
            .map(|r| (r.id.clone(), r))
            .collect();
        for key in picks {
            let want = expected(policy, to_side, &sources[&key].0);
            let id = targets.get(&key).map(|(_, id)| id.clone());
            let record = id.as_ref().and_then(|id| read_back.get(id));
            let differing = match record {
                Some(record) => differing(&want, &policy.canonical(to_side, &record.fields)),
                None => BTreeMap::new(),
            };
            validation.spot_checks.push(SpotCheck {
                passed: record.is_some() && differing.is_empty(),
                key,
                id,
                fields: want.len(),
                differing,
            });
        }
        validation.passed = validation.missing.is_empty()
            && validation.altered.is_empty()
            && validation.checksums.iter().all(|c| c.source == c.target)
            && validation.spot_checks.iter().all(|c| c.passed);
        Ok(validation)
    }

    /// Decide, record by record, what the target needs: a create, an update
    /// of the fields that differ, or nothing; as changes that link each pair.
    async fn copy_plan(
        &self,
        policy: &Arc<Policy>,
        from: Side,
        source: &HashMap<String, Record>,
        target: &HashMap<String, Record>,
        counts: &mut CopyCounts,
    ) -> Result<Vec<Change>, MigrateError> {
        let to = from.other();
        let (sources, skipped) = source_values(policy, from, source);
        let targets = target_values(policy, to, target);
        counts.source = sources.len();
        counts.skipped = skipped;
        let pair = policy.name.clone();
        let (links, busy) = self
            .store
            .call(move |s| {
                let links: HashMap<String, _> = s
                    .all_links(&pair)?
                    .into_iter()
                    .map(|l| (l.key.clone(), l))
                    .collect();
                Ok((links, s.busy_links(&pair)?))
            })
            .await
            .map_err(PassError::from)?;
        let mut changes = Vec::new();
        for (key, (values, source_id)) in &sources {
            let target_record = targets.get(key);
            let link = match links.get(key) {
                Some(link)
                    if link.gone[to as usize]
                        || (link.id_on(to).is_some() && target_record.is_none()) =>
                {
                    counts.gone += 1;
                    continue;
                }
                Some(link) => {
                    let other_source = link.id_on(from).is_some_and(|id| id != source_id);
                    let other_target = match (link.id_on(to), target_record) {
                        (Some(id), Some((_, found))) => id != found,
                        _ => false,
                    };
                    if other_source || other_target || busy.contains(&link.id) {
                        counts.held += 1;
                        continue;
                    }
                    LinkRef::Existing(link.id)
                }
                None => {
                    let mut ids = [None, None];
                    ids[from as usize] = Some(source_id.clone());
                    ids[to as usize] = target_record.map(|(_, id)| id.clone());
                    LinkRef::New {
                        key: key.clone(),
                        ids,
                    }
                }
            };
            let mut seen = vec![(from, source[source_id].clone())];
            let (op, write, agreed) = match target_record {
                None => {
                    counts.create += 1;
                    (WriteOp::Create, create_values(values), BTreeMap::new())
                }
                Some((found, id)) => {
                    seen.push((to, target[id].clone()));
                    let want = expected(policy, to, values);
                    let write: Values = differing(&want, found)
                        .into_iter()
                        .map(|(field, (value, _))| (field, value))
                        .collect();
                    let agreed = want
                        .iter()
                        .filter(|(field, _)| !write.contains_key(*field))
                        .map(|(field, value)| {
                            let held = found.get(field).cloned().unwrap_or(Value::Null);
                            let pair = match from {
                                Side::Left => (value.clone(), held),
                                Side::Right => (held, value.clone()),
                            };
                            (field.clone(), pair)
                        })
                        .collect();
                    if write.is_empty() {
                        counts.unchanged += 1;
                    } else {
                        counts.update += 1;
                    }
                    (WriteOp::Update { id: id.clone() }, write, agreed)
                }
            };
            let writes = if write.is_empty() {
                Vec::new()
            } else {
                vec![PlannedWrite {
                    side: to,
                    op,
                    key: key.clone(),
                    payload: policy.to_side(to, &write),
                    sources: write.clone(),
                    reasons: write
                        .keys()
                        .map(|f| (f.clone(), "migrated".to_string()))
                        .collect(),
                    values: write,
                }]
            };
            changes.push(Change {
                link,
                seen,
                agreed,
                writes,
                reconciled: true,
                gone: None,
                restored: None,
                conflicts: Vec::new(),
                settled: Vec::new(),
                new_key: None,
                resolved: Vec::new(),
            });
        }
        Ok(changes)
    }

    /// Apply the changes (links, base, queued writes), then send every write
    /// queued to the target, reporting progress as the outbox drains.
    async fn copy(
        &self,
        policy: &Arc<Policy>,
        to: Side,
        changes: Vec<Change>,
        progress: &mut impl MigrateProgress,
    ) -> Result<CopyOutcome, MigrateError> {
        let mut outcome = CopyOutcome::default();
        let now = self.clock.now();
        for chunk in changes.chunks(super::CHUNK) {
            let (pair, chunk) = (policy.name.clone(), chunk.to_vec());
            let applied = self
                .store
                .call(move |s| s.apply(&pair, &chunk, &[], now))
                .await
                .map_err(PassError::from)?;
            for (index, error) in applied.failed {
                outcome.problems.push(format!(
                    "storing the decision for record {index} of a chunk: {error}"
                ));
            }
        }
        // Writes put off by an earlier, interrupted run are sent now too.
        let (pair, now) = (policy.name.clone(), self.clock.now());
        let total = self
            .store
            .call(move |s| s.writes_due_now(&pair, to, now))
            .await
            .map_err(PassError::from)? as usize;
        let mut report = PairReport::default();
        let shutdown = CancellationToken::new();
        let flushed = {
            let flushing = self.flush(policy, to, &shutdown, &mut report);
            tokio::pin!(flushing);
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
            loop {
                tokio::select! {
                    flushed = &mut flushing => break flushed,
                    _ = tick.tick() => {
                        let pair = policy.name.clone();
                        if let Ok(queued) = self.store.call(move |s| s.write_counts(&pair, to)).await {
                            progress.written(total.saturating_sub(queued.0 as usize), total);
                        }
                    }
                }
            }
        };
        match flushed {
            Ok(()) => {}
            Err(PullError::Store(error)) => return Err(PassError::from(error).into()),
            Err(PullError::Connector(error)) => {
                return Err(PassError::Fatal {
                    pair: policy.name.clone(),
                    error,
                }
                .into());
            }
        }
        let pair = policy.name.clone();
        let (queued, dead) = self
            .store
            .call(move |s| s.write_counts(&pair, to))
            .await
            .map_err(PassError::from)?;
        progress.written(total.saturating_sub(queued as usize), total);
        outcome.written = report.created[to as usize] + report.updated[to as usize];
        outcome.queued = queued;
        outcome.dead_letters = dead;
        outcome.problems.extend(report.problems);
        Ok(outcome)
    }
}

/// Up to `n` keys spread over the set: those whose SHA-256 comes first, so the
/// same records are read back on every run and no order of the listing biases it.
fn sample_keys(keys: Vec<String>, n: usize) -> Vec<String> {
    let mut hashed: Vec<([u8; 32], String)> = keys
        .into_iter()
        .map(|k| (Sha256::digest(k.as_bytes()).into(), k))
        .collect();
    hashed.sort();
    hashed.into_iter().take(n).map(|(_, k)| k).collect()
}

/// Compare the listings: counts, missing, extra, altered, checksums. Pure.
fn validate(
    policy: &Policy,
    from: Side,
    sources: &Keyed,
    targets: &Keyed,
    target: &HashMap<String, Record>,
) -> Validation {
    let to = from.other();
    let mut validation = Validation {
        source_records: sources.len(),
        target_records: target.len(),
        ..Validation::default()
    };
    let mut hashes: BTreeMap<String, (usize, Sha256, Sha256)> = BTreeMap::new();
    for (key, (values, _)) in sources {
        let want = expected(policy, to, values);
        let found = targets.get(key).map(|(v, _)| v);
        for (field, value) in &want {
            let (records, source_hash, target_hash) = hashes
                .entry(field.clone())
                .or_insert_with(|| (0, Sha256::new(), Sha256::new()));
            *records += 1;
            source_hash.update(format!("{key}\t{value}\n").as_bytes());
            let held = found.and_then(|v| v.get(field)).unwrap_or(&Value::Null);
            target_hash.update(format!("{key}\t{held}\n").as_bytes());
        }
        match found {
            None => validation.missing.push(key.clone()),
            Some(found) => {
                let fields = differing(&want, found);
                if fields.is_empty() {
                    validation.matched += 1;
                } else {
                    validation.altered.push(Altered {
                        key: key.clone(),
                        fields,
                    });
                }
            }
        }
    }
    validation.checksums = hashes
        .into_iter()
        .map(|(field, (records, source, target))| FieldChecksum {
            field,
            records,
            source: hex::encode(source.finalize()),
            target: hex::encode(target.finalize()),
        })
        .collect();
    // In key order already, as `targets` is.
    validation.extra = targets
        .iter()
        .filter(|(key, _)| !sources.contains_key(*key))
        .filter(|(_, (_, id))| {
            target
                .get(id)
                .is_some_and(|r| policy.in_scope(to, &r.fields))
        })
        .map(|(key, _)| key.clone())
        .collect();
    validation
}
