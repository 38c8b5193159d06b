//! `tandem conflicts`, `tandem deadletters` and `tandem audit`: the state store
//! for support staff and operations, from a terminal.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use super::{ConfigArg, Failure, bad_input, table};
use crate::config::Config;
use crate::engine::open_existing_store;
use crate::people::{self, cli_actor};
use crate::store::{AuditFilter, Choice, ConflictFilter, ConflictRow, Store};

#[derive(Debug, Subcommand)]
pub enum ConflictsCommand {
    /// List conflicts, open ones unless asked otherwise.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Include resolved conflicts (same as --status all).
        #[arg(long)]
        all: bool,
        /// open, resolved or all.
        #[arg(long, conflicts_with = "all")]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One conflict: base, both values, when and by which rule, the record's history.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// The conflict's id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Settle conflicts: by id, or every open one a filter matches. The engine
    /// writes the value through the outbox on its next pass.
    Resolve {
        #[command(flatten)]
        config: ConfigArg,
        /// Conflict ids; without ids, every open conflict the filter matches.
        ids: Vec<i64>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Keep one side's value, or accept the proposed text merge.
        #[arg(
            long,
            value_enum,
            required_unless_present = "value",
            conflicts_with = "value"
        )]
        take: Option<Take>,
        /// Set this value on both sides.
        #[arg(long)]
        value: Option<String>,
    },
}

/// Filters shared by `list` and `resolve`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this pair.
    #[arg(long)]
    pair: Option<String>,
    /// Only this canonical field.
    #[arg(long)]
    field: Option<String>,
    /// Only conflicts where this rule gave up.
    #[arg(long)]
    rule: Option<String>,
    /// Only records whose email contains this text.
    #[arg(long)]
    search: Option<String>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.pair.is_none() && self.field.is_none() && self.rule.is_none() && self.search.is_none()
    }

    fn filter(&self) -> ConflictFilter {
        ConflictFilter {
            pair: self.pair.clone(),
            field: self.field.clone(),
            rule: self.rule.clone(),
            search: self.search.clone(),
            ..ConflictFilter::default()
        }
    }
}

/// Which value to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Take {
    /// The left side's value.
    Left,
    /// The right side's value.
    Right,
    /// The proposed merge of two text edits.
    Merge,
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Writes parked after too many failures.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in the outbox, due now.
    Retry {
        #[command(flatten)]
        config: ConfigArg,
        /// Dead letter ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Drop dead letters: their writes are not made.
    Discard {
        #[command(flatten)]
        config: ConfigArg,
        /// Dead letter ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RemovalsCommand {
    /// Archives and deletes waiting for a person's approval.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this pair.
        #[arg(long)]
        pair: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let them be made: the engine sends them on its next pass.
    Approve {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this pair.
        #[arg(long)]
        pair: Option<String>,
    },
    /// Drop them: the other records stay as they are.
    Cancel {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this pair.
        #[arg(long)]
        pair: Option<String>,
    },
}

pub fn removals(command: RemovalsCommand) -> Result<ExitCode, Failure> {
    let (who, now) = (cli_actor(), tandem_core::clock::now_millis());
    match command {
        RemovalsCommand::List { config, pair, json } => {
            let store = open(&config.config)?;
            let removals = store.removals(pair.as_deref())?;
            if json {
                json_out(&removals);
                return Ok(ExitCode::SUCCESS);
            }
            if removals.is_empty() {
                println!("No archive or delete waits for approval.");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<[String; 5]> = removals
                .iter()
                .map(|r| {
                    [
                        r.id.to_string(),
                        r.pair.clone(),
                        r.side.as_str().to_string(),
                        r.key.clone(),
                        r.op.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PAIR", "SIDE", "RECORD", "OP"].map(String::from);
            print!("{}", table(&header, &rows));
            println!(
                "{} waiting: `tandem removals approve` lets them be made, `tandem removals cancel` drops them.",
                removals.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        RemovalsCommand::Approve { config, pair } => {
            let n = open(&config.config)?.approve_removals(pair.as_deref(), &who, now)?;
            println!(
                "{n} archive(s) and delete(s) approved; the engine makes them on its next pass."
            );
            Ok(ExitCode::SUCCESS)
        }
        RemovalsCommand::Cancel { config, pair } => {
            let n = open(&config.config)?.cancel_removals(pair.as_deref(), &who, now)?;
            println!("{n} archive(s) and delete(s) dropped; the other records stay.");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Arguments of `tandem audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this action (conflict_resolved, update, dead_letter, ...).
    #[arg(long)]
    action: Option<String>,
    /// Only this actor (engine, a user name, cli:<login>).
    #[arg(long)]
    actor: Option<String>,
    /// Only entries of this link.
    #[arg(long)]
    link: Option<i64>,
    /// The newest this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn open(path: &Path) -> Result<Store, Failure> {
    let config = Config::load(path).map_err(bad_input)?;
    open_existing_store(&config.store_path).map_err(|e| bad_input(anyhow::anyhow!(e)))
}

fn json_out(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("plain data serializes")
    );
}

fn show_value(value: &Value) -> String {
    match value {
        Value::Null => "(empty)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn when(at: Option<tandem_core::Millis>) -> String {
    at.map_or("unknown".into(), tandem_core::clock::format_seconds_offset)
}

pub fn conflicts(command: ConflictsCommand) -> Result<ExitCode, Failure> {
    match command {
        ConflictsCommand::List {
            config,
            filter,
            all,
            status,
            limit,
            offset,
            json,
        } => {
            let store = open(&config.config)?;
            let filter = ConflictFilter {
                status: if all { Some("all".into()) } else { status },
                limit: Some(limit),
                offset: Some(offset),
                ..filter.filter()
            };
            filter
                .validate()
                .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
            let page = store.find_conflicts(&filter)?;
            if json {
                json_out(&page);
                return Ok(ExitCode::SUCCESS);
            }
            list(&page.conflicts, page.total, filter.status.as_deref());
            Ok(ExitCode::SUCCESS)
        }
        ConflictsCommand::Show { config, id, json } => {
            let store = open(&config.config)?;
            let Some(detail) = people::conflict_detail(&store, id)? else {
                return Err(bad_input(anyhow::anyhow!("no conflict {id}")));
            };
            if json {
                json_out(&detail);
                return Ok(ExitCode::SUCCESS);
            }
            let c = &detail.conflict;
            println!(
                "Conflict {} on {} ({}), field {}",
                c.id, c.key, c.pair, c.field
            );
            println!("  status     {}", c.status);
            println!("  rule       {} gave up: {}", c.rule, c.reason);
            if let Some((left, right)) = &c.base {
                println!("  base       {} | {}", show_value(left), show_value(right));
            } else {
                println!("  base       (none: never agreed)");
            }
            println!(
                "  left       {}   changed {}",
                show_value(&c.left),
                when(c.changed_at[0])
            );
            println!(
                "  right      {}   changed {}",
                show_value(&c.right),
                when(c.changed_at[1])
            );
            if let Some(proposal) = &detail.proposal {
                println!("  proposal   {}   (--take merge)", show_value(proposal));
            }
            if let Some(how) = &c.resolution {
                println!(
                    "  resolved   {how} by {} at {}{}",
                    c.resolved_by.as_deref().unwrap_or("?"),
                    when(c.resolved_at),
                    match (&c.chosen, &c.outcome) {
                        (Some(v), Some(outcome)) => format!(": {} ({outcome})", show_value(v)),
                        (Some(v), None) => format!(": {} (being written)", show_value(v)),
                        _ => String::new(),
                    }
                );
            }
            if !detail.history.is_empty() {
                println!("  history");
                for entry in &detail.history {
                    println!(
                        "    {} {} by {}: {}",
                        tandem_core::clock::format_seconds_offset(entry.at),
                        entry.action,
                        entry.actor,
                        entry.detail
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConflictsCommand::Resolve {
            config,
            ids,
            filter,
            take,
            value,
        } => {
            let choice = match (take, value) {
                (Some(Take::Left), _) => Choice::Left,
                (Some(Take::Right), _) => Choice::Right,
                (Some(Take::Merge), _) => Choice::Merge,
                (None, Some(value)) => Choice::Value {
                    value: Value::String(value),
                },
                (None, None) => unreachable!("clap requires --take or --value"),
            };
            let mut store = open(&config.config)?;
            let (who, now) = (cli_actor(), tandem_core::clock::now_millis());
            if ids.is_empty() {
                if filter.is_empty() {
                    return Err(bad_input(anyhow::anyhow!(
                        "name conflict ids, or a filter (--pair, --field, --rule, --search) to settle every open conflict it matches"
                    )));
                }
                let outcome =
                    people::resolve_matching(&mut store, &filter.filter(), &choice, &who, now)?;
                println!("Resolved {} conflict(s).", outcome.resolved.len());
                for (id, why) in &outcome.failed {
                    eprintln!("Left open: {why} ({id})");
                }
                return Ok(if outcome.failed.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            let mut failed = false;
            for id in ids {
                match people::resolve(&mut store, id, &choice, &who, now) {
                    Ok(row) => println!(
                        "Conflict {id} on {} ({}): {} will be written to both sides on the next pass.",
                        row.key,
                        row.field,
                        row.chosen.as_ref().map_or("(empty)".into(), show_value)
                    ),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn list(conflicts: &[ConflictRow], total: u64, status: Option<&str>) {
    let open = if matches!(status, None | Some("open")) {
        "open "
    } else {
        ""
    };
    if conflicts.is_empty() {
        println!("No {open}conflicts.");
        return;
    }
    let rows: Vec<[String; 8]> = conflicts
        .iter()
        .map(|c| {
            let what = match c.kind.as_str() {
                "ambiguous_match" => format!("{} (ambiguous match)", c.field),
                _ => c.field.clone(),
            };
            [
                c.id.to_string(),
                c.key.clone(),
                what,
                show_value(&c.left),
                show_value(&c.right),
                c.base
                    .as_ref()
                    .map_or("(none)".into(), |(l, _)| show_value(l)),
                c.rule.clone(),
                c.status.clone(),
            ]
        })
        .collect();
    let header = [
        "ID", "RECORD", "FIELD", "LEFT", "RIGHT", "BASE", "RULE", "STATUS",
    ]
    .map(String::from);
    print!("{}", table(&header, &rows));
    if total as usize > conflicts.len() {
        println!("{} of {total} {open}conflict(s).", conflicts.len());
    } else {
        println!("{} {open}conflict(s).", conflicts.len());
    }
}

pub fn dead_letters(command: DeadLettersCommand) -> Result<ExitCode, Failure> {
    let (who, now) = (cli_actor(), tandem_core::clock::now_millis());
    match command {
        DeadLettersCommand::List { config, json } => {
            let store = open(&config.config)?;
            let letters = store.dead_letters()?;
            if json {
                json_out(&letters);
                return Ok(ExitCode::SUCCESS);
            }
            if letters.is_empty() {
                println!("No dead letters.");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<[String; 7]> = letters
                .iter()
                .map(|d| {
                    [
                        d.id.to_string(),
                        d.pair.clone(),
                        d.side.as_str().to_string(),
                        d.key.clone(),
                        d.op.clone(),
                        d.attempts.to_string(),
                        d.error.clone(),
                    ]
                })
                .collect();
            let header = [
                "ID",
                "PAIR",
                "SIDE",
                "RECORD",
                "OP",
                "ATTEMPTS",
                "LAST ERROR",
            ]
            .map(String::from);
            print!("{}", table(&header, &rows));
            Ok(ExitCode::SUCCESS)
        }
        DeadLettersCommand::Retry { config, ids } => settle(&config.config, &ids, true, &who, now),
        DeadLettersCommand::Discard { config, ids } => {
            settle(&config.config, &ids, false, &who, now)
        }
    }
}

fn settle(
    path: &Path,
    ids: &[i64],
    retry: bool,
    who: &str,
    now: tandem_core::Millis,
) -> Result<ExitCode, Failure> {
    let mut store = open(path)?;
    let mut missing = false;
    for &id in ids {
        let done = if retry {
            store.retry_dead_letter(id, who, now)?
        } else {
            store.discard_dead_letter(id, who, now)?
        };
        if done {
            println!(
                "Dead letter {id} {}.",
                if retry {
                    "is queued again; the engine sends it on its next pass"
                } else {
                    "is discarded"
                }
            );
        } else {
            eprintln!("No dead letter {id}.");
            missing = true;
        }
    }
    Ok(if missing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn audit(args: AuditArgs) -> Result<ExitCode, Failure> {
    let store = open(&args.config.config)?;
    let mut entries = store.find_audit(&AuditFilter {
        action: args.action,
        actor: args.actor,
        link: args.link,
        before: None,
        limit: Some(args.limit),
    })?;
    entries.reverse();
    if args.json {
        json_out(&entries);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("No audit entries.");
    }
    for entry in &entries {
        println!(
            "{} {} {}{}{}: {}",
            tandem_core::clock::format_seconds_offset(entry.at),
            entry.actor,
            entry.action,
            entry
                .pair
                .as_ref()
                .map_or(String::new(), |p| format!(" {p}")),
            entry.link.map_or(String::new(), |l| format!(" link {l}")),
            entry.detail
        );
    }
    Ok(ExitCode::SUCCESS)
}
