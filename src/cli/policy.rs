//! `tandem policy check | explain | preview`: what an admin runs before and
//! after changing a policy. None of them writes anything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::{ConfigArg, Failure, bad_input, table};
use crate::config::Config;
use crate::engine::{ConfigSchemas, load_policies, open_existing_store};
use crate::inspect::{Explanation, Preview};
use crate::policy::Policy;

#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Compile policy files against the configured connectors and run their examples.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Policy files; the config's pairs if none.
        files: Vec<PathBuf>,
    },
    /// Show, field by field, how the active policy decides one record.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// The record's match key (its email address).
        email: String,
        /// The pair, when the config has more than one.
        #[arg(long)]
        pair: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a new version of a pair's policy would do differently, writing nothing.
    Preview {
        #[command(flatten)]
        config: ConfigArg,
        /// The new policy file; it replaces the config's pair of the same name.
        file: PathBuf,
        /// List every record treated differently, not only the first 20.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(command: PolicyCommand) -> Result<ExitCode, Failure> {
    match command {
        PolicyCommand::Check { config, files } => check(&config.config, &files),
        PolicyCommand::Explain {
            config,
            email,
            pair,
            json,
        } => explain(&config.config, &email, pair.as_deref(), json),
        PolicyCommand::Preview {
            config,
            file,
            all,
            json,
        } => preview(&config.config, &file, all, json),
    }
}

fn check(config_path: &Path, files: &[PathBuf]) -> Result<ExitCode, Failure> {
    let config = Config::load(config_path).map_err(bad_input)?;
    let files = if files.is_empty() {
        config.pairs.clone()
    } else {
        files.to_vec()
    };
    let mut failed = false;
    for file in &files {
        match crate::policy::load(file, &ConfigSchemas(&config)) {
            Ok(policy) => println!(
                "{}: ok, pair `{}`, {} fields, {} examples pass",
                file.display(),
                policy.name,
                policy.fields.len(),
                policy.examples
            ),
            Err(problems) => {
                failed = true;
                eprint!("{problems}");
                if !problems.to_string().ends_with('\n') {
                    eprintln!();
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The active policy of a pair: the named one, or the only one.
fn active_policy(config: &Config, pair: Option<&str>) -> Result<Policy, Failure> {
    let policies = load_policies(config).map_err(bad_input)?;
    let names = || {
        policies
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match pair {
        Some(name) => policies
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| {
                bad_input(anyhow::anyhow!(
                    "no pair named `{name}`; pairs: {}",
                    names()
                ))
            }),
        None if policies.len() == 1 => Ok(policies[0].clone()),
        None => Err(bad_input(anyhow::anyhow!(
            "the config has several pairs; name one with --pair ({})",
            names()
        ))),
    }
}

fn explain(
    config_path: &Path,
    email: &str,
    pair: Option<&str>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let config = Config::load(config_path).map_err(bad_input)?;
    let policy = active_policy(&config, pair)?;
    let store =
        open_existing_store(&config.store_path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    let Some(explanation) = crate::inspect::explain(&store, &policy, email)? else {
        eprintln!(
            "error: no record with the key {email:?} is linked or waiting in pair `{}`",
            policy.name
        );
        return Ok(ExitCode::from(1));
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).expect("explanations serialize")
        );
    } else {
        print!("{}", render_explanation(&explanation));
    }
    Ok(ExitCode::SUCCESS)
}

/// A value in a table cell.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "(empty)".into(),
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    }
}

fn render_explanation(e: &Explanation) -> String {
    let mut out = format!(
        "{} in pair `{}`{}\n",
        e.key,
        e.pair,
        if e.linked { "" } else { " (not linked yet)" }
    );
    for side in &e.sides {
        let state = match (&side.id, side.changed_at) {
            (Some(id), Some(at)) => format!(
                "record {id}, changed {}{}",
                tandem_core::clock::format_millis_z(at),
                if side.waiting {
                    " (a newer version waits for the next pass)"
                } else {
                    ""
                }
            ),
            _ => "no record".to_string(),
        };
        out.push_str(&format!("  {:<10} {state}\n", side.connector));
    }
    if let Some(held) = &e.held {
        out.push_str(&format!("  not syncing: {held}\n"));
    }
    out.push('\n');
    let [left, right] = [&e.sides[0].connector, &e.sides[1].connector];
    let header = [
        "FIELD".to_string(),
        "RULE".into(),
        "BASE".into(),
        left.to_uppercase(),
        right.to_uppercase(),
        "DECISION".into(),
    ];
    let rows: Vec<[String; 6]> = e
        .fields
        .iter()
        .map(|f| {
            let base = match &f.base {
                None => "(never agreed)".to_string(),
                Some([l, r]) if l == r => cell(l),
                Some([l, r]) => format!("{} / {}", cell(l), cell(r)),
            };
            [
                f.field.clone(),
                f.rule.clone(),
                base,
                cell(&f.values[0]),
                cell(&f.values[1]),
                f.decision.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&header, &rows));
    if !e.open_conflicts.is_empty() {
        out.push_str(&format!(
            "\nOpen conflicts: {} (see `tandem conflicts list`)\n",
            e.open_conflicts.join(", ")
        ));
    }
    out
}

fn preview(config_path: &Path, file: &Path, all: bool, json: bool) -> Result<ExitCode, Failure> {
    let config = Config::load(config_path).map_err(bad_input)?;
    let new = crate::policy::load(file, &ConfigSchemas(&config)).map_err(bad_input)?;
    let active = load_policies(&config)
        .map_err(bad_input)?
        .into_iter()
        .find(|p| p.name == new.name)
        .ok_or_else(|| {
            bad_input(anyhow::anyhow!(
                "{} is pair `{}`, which the config does not have; a preview compares a new version of a configured pair (set `name` to that pair's name)",
                file.display(),
                new.name
            ))
        })?;
    if (active.left.as_str(), active.right.as_str()) != (new.left.as_str(), new.right.as_str()) {
        return Err(bad_input(anyhow::anyhow!(
            "{} pairs {} with {}, but the active pair `{}` pairs {} with {}",
            file.display(),
            new.left,
            new.right,
            active.name,
            active.left,
            active.right
        )));
    }
    let store =
        open_existing_store(&config.store_path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    let preview = crate::inspect::preview(&store, &active, &new)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&preview).expect("previews serialize")
        );
    } else {
        print!("{}", render_preview(&preview, &active, all));
    }
    Ok(ExitCode::SUCCESS)
}

fn render_preview(p: &Preview, policy: &Policy, all: bool) -> String {
    let (left, right) = (&policy.left, &policy.right);
    let mut out = format!(
        "Pair `{}`: {} links and {} waiting records looked at; nothing was written.\n\n",
        p.pair, p.links, p.waiting
    );
    let (a, n) = (&p.active, &p.new);
    let rows = [
        ["".to_string(), "ACTIVE".into(), "NEW".into()],
        [
            format!("records updated in {left}"),
            a.updates[0].to_string(),
            n.updates[0].to_string(),
        ],
        [
            format!("records updated in {right}"),
            a.updates[1].to_string(),
            n.updates[1].to_string(),
        ],
        [
            format!("records created in {left}"),
            a.creates[0].to_string(),
            n.creates[0].to_string(),
        ],
        [
            format!("records created in {right}"),
            a.creates[1].to_string(),
            n.creates[1].to_string(),
        ],
        [
            "records archived or deleted".into(),
            (a.removals[0] + a.removals[1]).to_string(),
            (n.removals[0] + n.removals[1]).to_string(),
        ],
        [
            "fields left to a person".into(),
            a.conflicts.to_string(),
            n.conflicts.to_string(),
        ],
        [
            "conflicts opened".into(),
            a.conflicts_opened.to_string(),
            n.conflicts_opened.to_string(),
        ],
        [
            "open conflicts settled".into(),
            a.conflicts_closed.to_string(),
            n.conflicts_closed.to_string(),
        ],
        [
            "records not synced".into(),
            a.skipped.values().sum::<usize>().to_string(),
            n.skipped.values().sum::<usize>().to_string(),
        ],
    ];
    let (header, body) = rows.split_first().expect("a header row");
    out.push_str(&table(header, body));
    let fields: std::collections::BTreeSet<&String> =
        a.field_writes.keys().chain(n.field_writes.keys()).collect();
    if !fields.is_empty() {
        out.push_str("\nField writes (active -> new):\n");
        for field in fields {
            let count = |e: &crate::inspect::Effects, side: usize| {
                e.field_writes.get(field).map_or(0, |c| c[side])
            };
            out.push_str(&format!(
                "  {field}: {left} {} -> {}, {right} {} -> {}\n",
                count(a, 0),
                count(n, 0),
                count(a, 1),
                count(n, 1)
            ));
        }
    }
    for (side, paths) in [(left, &p.unseen_paths[0]), (right, &p.unseen_paths[1])] {
        if !paths.is_empty() {
            out.push_str(&format!(
                "\nNote: {side} records were stored without {}; the preview takes them as empty, and the first pass with the new policy reads them again.\n",
                paths.join(", ")
            ));
        }
    }
    if p.differences.is_empty() {
        out.push_str("\nNo record is treated differently.\n");
        return out;
    }
    let shown = if all {
        p.differences.len()
    } else {
        p.differences.len().min(20)
    };
    out.push_str(&format!(
        "\n{} records treated differently{}:\n",
        p.differences.len(),
        if shown < p.differences.len() {
            format!(" (first {shown}; --all for every one)")
        } else {
            String::new()
        }
    ));
    for d in &p.differences[..shown] {
        out.push_str(&format!(
            "  {}\n    active: {}\n    new:    {}\n",
            d.key, d.active, d.new
        ));
    }
    out
}
