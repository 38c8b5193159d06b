//! `tandem migrate --from A --to B`: a one-way bulk copy through the policy's
//! mapping, resumable by running it again, ending with a validation report
//! (human or JSON). Exits 0 when the validation passed, 1 when it failed or
//! writes are still queued, 2 on bad input.

use std::io::{BufRead, IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Failure, bad_input, start};
use crate::config::DEFAULT_FILE;
use crate::engine::{
    CopyCounts, MigrateError, MigrateProgress, MigrationReport, PassError, Progress,
};
use crate::side::Side;

/// Arguments of `tandem migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The configuration file.
    #[arg(long, short, default_value = DEFAULT_FILE)]
    config: PathBuf,
    /// The connector copied from, as named in the config (such as hubspot).
    #[arg(long)]
    from: String,
    /// The connector copied into (such as mailchimp).
    #[arg(long)]
    to: String,
    /// Copy without asking first.
    #[arg(long, short)]
    yes: bool,
    /// Only validate: compare what the target holds with the source, write nothing.
    #[arg(long)]
    check: bool,
    /// Records read back from the target by id and compared field by field.
    #[arg(long, default_value_t = 20)]
    sample: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn migrate(args: MigrateArgs) -> Result<ExitCode, Failure> {
    let (_, engine) = start(&args.config).await?;
    let mut progress = Steps::new();
    let mut refused = None;
    let (from, to) = (args.from.clone(), args.to.clone());
    let bar = progress.bar.clone();
    let confirm = |plan: &CopyCounts| {
        let mut ask = || {
            eprint!("{}", render_plan(plan, &from, &to));
            if args.yes {
                return true;
            }
            if !std::io::stdin().is_terminal() {
                refused = Some("nothing was copied: pass --yes to copy without asking");
                return false;
            }
            eprint!("Copy into {to}? [y/N] ");
            std::io::stderr().flush().ok();
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer).ok();
            let yes = matches!(answer.trim(), "y" | "Y" | "yes");
            if !yes {
                refused = Some("nothing was copied");
            }
            yes
        };
        match &bar {
            Some(bar) => bar.suspend(ask),
            None => ask(),
        }
    };
    let outcome = engine
        .migrate(
            &args.from,
            &args.to,
            args.check,
            args.sample,
            &mut progress,
            confirm,
        )
        .await;
    progress.finish();
    let report = match outcome {
        Ok(Some(report)) => report,
        Ok(None) => {
            return Err(bad_input(anyhow::anyhow!(
                "{}",
                refused.unwrap_or("nothing was copied")
            )));
        }
        Err(
            error @ (MigrateError::NoPair { .. } | MigrateError::Pass(PassError::Fatal { .. })),
        ) => {
            return Err(bad_input(error));
        }
        Err(error) => return Err(error.into()),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        );
    } else {
        print!("{}", render(&report));
    }
    let queued = report
        .copy
        .as_ref()
        .is_some_and(|c| c.queued > 0 || c.dead_letters > 0);
    Ok(if report.validation.passed && !queued {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Progress on stderr: a bar with counts, rate and ETA on a terminal, plain
/// lines otherwise.
struct Steps {
    bar: Option<ProgressBar>,
    step: String,
    listed: [u64; 2],
    written: usize,
}

impl Steps {
    fn new() -> Self {
        Self {
            bar: std::io::stderr().is_terminal().then(ProgressBar::no_length),
            step: String::new(),
            listed: [0; 2],
            written: 0,
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Steps {
    fn listed(&mut self, side: Side, records: usize) {
        let before = self.listed.iter().sum::<u64>();
        self.listed[side as usize] += records as u64;
        let now = self.listed.iter().sum::<u64>();
        let message = format!(
            "{}: {} and {} records listed",
            self.step, self.listed[0], self.listed[1]
        );
        match &self.bar {
            Some(bar) => bar.set_message(message),
            None if before / 5_000 != now / 5_000 => eprintln!("{message}"),
            None => {}
        }
    }
}

impl MigrateProgress for Steps {
    fn step(&mut self, what: &str) {
        self.step = what.to_string();
        self.listed = [0; 2];
        match &self.bar {
            Some(bar) if what == "copying" => {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {human_pos}/{human_len} writes ({per_sec}, ETA {eta})",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                bar.set_message("copying");
                bar.reset();
            }
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .expect("the template is valid"),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(what.to_string());
            }
            None => eprintln!("{what}..."),
        }
    }

    fn written(&mut self, done: usize, total: usize) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            None if done / 1_000 != self.written / 1_000
                || (done == total && done != self.written) =>
            {
                eprintln!("copying: {done} of {total} writes confirmed");
            }
            None => {}
        }
        self.written = done;
    }
}

fn render_plan(plan: &CopyCounts, from: &str, to: &str) -> String {
    format!(
        "{from} -> {to}: {} records in scope; {} to create in {to}, {} to update, {} already equal; {} skipped (out of scope or no email), {} held (linked otherwise or writes queued), {} archived in {to} (not re-created; restore them there)\n",
        plan.source, plan.create, plan.update, plan.unchanged, plan.skipped, plan.held, plan.gone
    )
}

/// At most this many records of each kind are named; the JSON has them all.
const SHOWN: usize = 20;

fn render(report: &MigrationReport) -> String {
    let (from, to) = (&report.from, &report.to);
    let v = &report.validation;
    let mut out = format!("migrate {from} -> {to} (pair {})\n", report.pair);
    if let Some(copy) = &report.copy {
        out.push_str(&format!(
            "  copied       {} writes confirmed, {} still queued, {} dead letters\n",
            copy.written, copy.queued, copy.dead_letters
        ));
        if copy.queued > 0 {
            out.push_str("               run the same command again to resume\n");
        }
        for problem in copy.problems.iter().take(SHOWN) {
            out.push_str(&format!("  problem      {problem}\n"));
        }
    }
    if let Some(why) = &v.unavailable {
        out.push_str(&format!(
            "validation NOT MADE: {why}\n  run the same command again (with --check to only validate)\n"
        ));
        return out;
    }
    out.push_str(&format!(
        "validation {}\n  records      {from} {}, {to} {}\n  matched      {}\n  missing      {}\n  altered      {}\n  extra        {} (only in {to}; not a failure)\n",
        if v.passed { "PASSED" } else { "FAILED" },
        v.source_records,
        v.target_records,
        v.matched,
        v.missing.len(),
        v.altered.len(),
        v.extra.len()
    ));
    for key in v.missing.iter().take(SHOWN) {
        out.push_str(&format!("  missing      {key} is not in {to}\n"));
    }
    for altered in v.altered.iter().take(SHOWN) {
        let fields: Vec<String> = altered
            .fields
            .iter()
            .map(|(field, (want, got))| format!("{field} {want} expected, {got} found"))
            .collect();
        out.push_str(&format!(
            "  altered      {}: {}\n",
            altered.key,
            fields.join(", ")
        ));
    }
    for checksum in &v.checksums {
        let verdict = if checksum.source == checksum.target {
            "equal"
        } else {
            "DIFFER"
        };
        out.push_str(&format!(
            "  checksum     {:<12} {verdict} over {} records ({}… / {}…)\n",
            checksum.field,
            checksum.records,
            &checksum.source[..12],
            &checksum.target[..12]
        ));
    }
    let passed = v.spot_checks.iter().filter(|c| c.passed).count();
    out.push_str(&format!(
        "  spot checks  {passed} of {} records read back by id agree\n",
        v.spot_checks.len()
    ));
    for check in v.spot_checks.iter().filter(|c| !c.passed).take(SHOWN) {
        match &check.id {
            None => out.push_str(&format!("  spot check   {} not found in {to}\n", check.key)),
            Some(id) => out.push_str(&format!(
                "  spot check   {} (id {id}) differs in {}\n",
                check.key,
                check
                    .differing
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    out
}
