//! The first link-up of two populated accounts: before the first two-way pass
//! of a pair, `tandem sync` and `tandem run` show what it would do (records
//! matched by email, ambiguous matches, records to create on each side, the
//! fields that differ and which way each would go) and ask for a confirmation
//! (`--yes` gives it up front). The confirmation is recorded in the audit log,
//! so a first link-up cut short resumes without asking again.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write as _};

use super::plan::{PairPlan, compute};
use super::{Failure, bad_input};
use crate::config::Config;
use crate::engine::{Engine, load_policies, open_existing_store};

/// How the first link-up of some pairs was confirmed.
pub(super) struct Confirmed {
    pairs: Vec<String>,
    how: &'static str,
}

/// The pairs that were never linked nor confirmed.
fn pending(config: &Config) -> Result<Vec<String>, Failure> {
    let names: Vec<String> = load_policies(config)
        .map_err(bad_input)?
        .into_iter()
        .map(|p| p.name)
        .collect();
    if !config.store_path.exists() {
        return Ok(names);
    }
    let store =
        open_existing_store(&config.store_path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    let mut pending = Vec::new();
    for name in names {
        if store.link_up_pending(&name)? {
            pending.push(name);
        }
    }
    Ok(pending)
}

/// Show the preview of every pair's first link-up and ask to go on; with
/// `yes`, go on without asking. Fails (nothing written) when it is declined,
/// or cannot be asked because no one is at a terminal.
pub(super) async fn confirm(config: &Config, yes: bool) -> Result<Confirmed, Failure> {
    let pairs = pending(config)?;
    if pairs.is_empty() || yes {
        return Ok(Confirmed {
            pairs,
            how: "--yes",
        });
    }
    let plans: Vec<PairPlan> = compute(config)
        .await?
        .into_iter()
        .filter(|p| pairs.contains(&p.pair))
        .filter(|p| !(p.links.is_empty() && p.writes.is_empty() && p.conflicts.is_empty()))
        .collect();
    if plans.is_empty() {
        // Both accounts are empty: nothing to review, nothing to confirm yet.
        return Ok(Confirmed {
            pairs: Vec::new(),
            how: "",
        });
    }
    eprint!("{}", preview(&plans));
    if !std::io::stdin().is_terminal() {
        return Err(bad_input(anyhow::anyhow!(
            "the first link-up needs a confirmation: review the preview above (every write: tandem plan), then run again with --yes"
        )));
    }
    eprint!("Link them and start syncing? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok();
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Err(
            anyhow::anyhow!("the first link-up was not confirmed; nothing was written").into(),
        );
    }
    Ok(Confirmed {
        pairs: plans.into_iter().map(|p| p.pair).collect(),
        how: "prompt",
    })
}

impl Confirmed {
    /// Record the confirmation of each pair in the audit log.
    pub(super) async fn record(self, engine: &Engine) -> Result<(), Failure> {
        let who = std::env::var("USER").unwrap_or_else(|_| "operator".into());
        let how = self.how;
        for pair in self.pairs {
            let (who, now) = (who.clone(), engine.clock().now());
            engine
                .store()
                .call(move |s| {
                    s.audit_person(
                        &who,
                        "link_up_confirmed",
                        Some(&pair),
                        &serde_json::json!({ "how": how }),
                        now,
                    )
                })
                .await?;
        }
        Ok(())
    }
}

/// The preview: per pair, what its first pass would do, counted.
fn preview(plans: &[PairPlan]) -> String {
    let mut out = String::new();
    for plan in plans {
        let [left, right] = &plan.connectors;
        let created: Vec<&str> = plan
            .writes
            .iter()
            .filter(|w| w.op == "create")
            .map(|w| w.key.as_str())
            .collect();
        let matched = plan
            .links
            .iter()
            .filter(|key| !created.contains(&key.as_str()))
            .count();
        let creates = |system: &str| {
            plan.writes
                .iter()
                .filter(|w| w.op == "create" && w.system == system)
                .count()
        };
        let ambiguous = plan
            .conflicts
            .iter()
            .filter(|c| c.kind == "ambiguous_match")
            .count();
        let mut fields: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for write in plan.writes.iter().filter(|w| w.op == "update") {
            for path in write.fields.keys() {
                *fields
                    .entry((path.as_str(), write.system.as_str()))
                    .or_default() += 1;
            }
        }
        out.push_str(&format!(
            "First link-up of {} ({left} <-> {right}): nothing is linked yet.\n  matched by email   {matched}\n  ambiguous matches  {ambiguous} (left for a person)\n  to create          {} in {left}, {} in {right}\n  conflicts          {}\n",
            plan.pair,
            creates(left),
            creates(right),
            plan.conflicts.len() - ambiguous,
        ));
        if !fields.is_empty() {
            out.push_str("  fields that differ, and where each would be written:\n");
            for ((path, system), n) in &fields {
                out.push_str(&format!("    {path:<28} -> {system}: {n}\n"));
            }
        }
    }
    out.push_str("Every write, record by record: tandem plan\n");
    out
}
