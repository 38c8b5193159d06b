//! `tandem plan`: what the next pass would do, written nowhere. The pass runs
//! in full (both systems are read, every record decided) on a copy of the
//! state store, with sending turned off; the copy's outbox, links and
//! conflicts are then compared with the real store's and printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;
use tandem_core::WriteOp;

use super::{Failure, bad_input};
use crate::config::Config;
use crate::engine::{Clock, Engine, SetupError, open_existing_store};

/// One pair's plan.
#[derive(Debug, serde::Serialize)]
pub(super) struct PairPlan {
    pub pair: String,
    pub connectors: [String; 2],
    /// Records that would be linked, by match key.
    pub links: Vec<String>,
    /// Writes the pass would send.
    pub writes: Vec<PlannedWrite>,
    /// Conflicts it would open.
    pub conflicts: Vec<PlannedConflict>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct PlannedWrite {
    /// The connector written.
    pub system: String,
    pub key: String,
    /// `create`, `update`, `archive` or `delete`.
    pub op: &'static str,
    /// The record's id there, when it exists.
    pub record: Option<String>,
    /// By vendor path: what the system holds now (`null` if nothing) and what would be sent.
    pub fields: BTreeMap<String, Change>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct Change {
    pub old: Value,
    pub new: Value,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct PlannedConflict {
    pub key: String,
    pub field: String,
    /// `field`, or `ambiguous_match` when two records claim one key.
    pub kind: String,
    pub left: Value,
    pub right: Value,
    pub rule: String,
    pub reason: String,
}

pub async fn plan(path: &Path, json: bool) -> Result<ExitCode, Failure> {
    let config = Config::load(path).map_err(bad_input)?;
    let plans = compute(&config).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plans).expect("plans serialize")
        );
    } else {
        print!("{}", render(&plans));
    }
    Ok(ExitCode::SUCCESS)
}

/// Run one pass on a copy of the state store with sending off, and say what
/// it would have done, pair by pair.
pub(super) async fn compute(config: &Config) -> Result<Vec<PairPlan>, Failure> {
    let dir = tempfile::tempdir().map_err(|e| Failure::from(anyhow::anyhow!(e)))?;
    let copy = dir.path().join("plan.sqlite");
    // What the real store holds now: links (pair, key) and open conflicts.
    let mut known_links: BTreeSet<(String, String)> = BTreeSet::new();
    let mut known_conflicts: BTreeSet<i64> = BTreeSet::new();
    if config.store_path.exists() {
        let store =
            open_existing_store(&config.store_path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
        store.copy_to(&copy)?;
        known_conflicts = store.conflicts(false)?.iter().map(|c| c.id).collect();
        known_links = store.link_keys()?;
    }
    let mut planned = config.clone();
    planned.store_path = copy;
    let engine = Engine::start(&planned, Clock::System)
        .await
        .map_err(|e| match e {
            SetupError::Store(e) => Failure::from(e),
            other => bad_input(other),
        })?;
    let report = engine.dry_pass().await?;
    let mut plans = Vec::new();
    for pair_report in &report.pairs {
        let pair = pair_report.pair.clone();
        let policy = engine
            .policy_named(&pair)
            .expect("a reported pair has a policy");
        let known = known_links.clone();
        let known_conflicts = known_conflicts.clone();
        let connectors = [policy.left.clone(), policy.right.clone()];
        let names = connectors.clone();
        let plan = engine
            .store()
            .call(move |s| {
                let mut writes = Vec::new();
                for row in s.queued_writes(&pair)? {
                    let held = match s.link(row.link_id)? {
                        Some(link) => s.link_state(link)?.snapshots[row.side as usize]
                            .as_ref()
                            .map(|snapshot| snapshot.fields.clone())
                            .unwrap_or_default(),
                        None => Default::default(),
                    };
                    let (op, record) = match &row.op {
                        WriteOp::Create => ("create", None),
                        WriteOp::Update { id } => ("update", Some(id.clone())),
                        WriteOp::Archive { id } => ("archive", Some(id.clone())),
                        WriteOp::DeletePermanently { id } => ("delete", Some(id.clone())),
                    };
                    writes.push(PlannedWrite {
                        system: names[row.side as usize].clone(),
                        key: row.key.clone(),
                        op,
                        record,
                        fields: row
                            .payload
                            .iter()
                            .map(|(path, new)| {
                                let old = held.get(path).cloned().unwrap_or(Value::Null);
                                (
                                    path.clone(),
                                    Change {
                                        old,
                                        new: new.clone(),
                                    },
                                )
                            })
                            .collect(),
                    });
                }
                let links = s
                    .link_keys()?
                    .into_iter()
                    .filter(|link| link.0 == pair && !known.contains(link))
                    .map(|(_, key)| key)
                    .collect();
                let conflicts = s
                    .conflicts(false)?
                    .into_iter()
                    .filter(|c| c.pair == pair && !known_conflicts.contains(&c.id))
                    .map(|c| PlannedConflict {
                        key: c.key,
                        field: c.field,
                        kind: c.kind,
                        left: c.left,
                        right: c.right,
                        rule: c.rule,
                        reason: c.reason,
                    })
                    .collect();
                Ok(PairPlan {
                    pair,
                    connectors,
                    links,
                    writes,
                    conflicts,
                })
            })
            .await?;
        plans.push(plan);
    }
    Ok(plans)
}

fn render(plans: &[PairPlan]) -> String {
    let mut out = String::from("What one pass would do now (nothing was written):\n");
    for plan in plans {
        let [left, right] = &plan.connectors;
        out.push_str(&format!("{} ({left} <-> {right})\n", plan.pair));
        for key in &plan.links {
            out.push_str(&format!("  link      {key}\n"));
        }
        for write in &plan.writes {
            let changes: Vec<String> = write
                .fields
                .iter()
                .map(|(path, change)| match write.op {
                    "create" => format!("{path} {}", change.new),
                    _ => format!("{path} {} -> {}", change.old, change.new),
                })
                .collect();
            out.push_str(&format!(
                "  {:<9} {} {}{}{}\n",
                write.op,
                write.system,
                write.key,
                if changes.is_empty() { "" } else { ": " },
                changes.join(", ")
            ));
        }
        for conflict in &plan.conflicts {
            out.push_str(&format!(
                "  conflict  {} {}: {} ({left}) vs {} ({right}): {}\n",
                conflict.key, conflict.field, conflict.left, conflict.right, conflict.reason
            ));
        }
        out.push_str(&format!(
            "  total     {} write(s), {} new link(s), {} conflict(s)\n",
            plan.writes.len(),
            plan.links.len(),
            plan.conflicts.len()
        ));
    }
    out
}
