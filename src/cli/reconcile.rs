//! `tandem reconcile`: both systems listed in full and compared with the
//! state; with `--fix`, what differs is staged for the next pass.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{Failure, start};
use crate::engine::{DriftReport, Progress};
use crate::side::Side;

/// Counts listed records on stderr: spinners with counts and rate on a
/// terminal, a plain line every 5,000 records and at the end otherwise.
struct Listing {
    names: [String; 2],
    bars: Option<[ProgressBar; 2]>,
    counts: [u64; 2],
}

impl Listing {
    fn new(names: [String; 2]) -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template(
                "{spinner} {prefix:>12} {human_pos} records listed ({per_sec}, {elapsed})",
            )
            .expect("the template is valid");
            names.clone().map(|name| {
                let bar = multi.add(ProgressBar::no_length().with_style(style.clone()));
                bar.set_prefix(name);
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
        });
        Self {
            names,
            bars,
            counts: [0; 2],
        }
    }

    fn finish(&self) {
        match &self.bars {
            Some(bars) => bars.iter().for_each(ProgressBar::finish),
            None => {
                for (name, count) in self.names.iter().zip(self.counts) {
                    eprintln!("{name}: {count} records listed");
                }
            }
        }
    }
}

impl Progress for Listing {
    fn listed(&mut self, side: Side, records: usize) {
        let i = side as usize;
        let before = self.counts[i];
        self.counts[i] += records as u64;
        match &self.bars {
            Some(bars) => bars[i].inc(records as u64),
            None if before / 5_000 != self.counts[i] / 5_000 => {
                eprintln!(
                    "{}: {} records listed so far",
                    self.names[i], self.counts[i]
                );
            }
            None => {}
        }
    }
}

pub async fn reconcile(path: &Path, fix: bool, json: bool) -> Result<ExitCode, Failure> {
    let (_, engine) = start(path).await?;
    let names = engine
        .policies()
        .first()
        .map(|p| [p.left.clone(), p.right.clone()])
        .unwrap_or_default();
    let mut listing = Listing::new(names);
    let reports = engine.drift(fix, &mut listing).await?;
    listing.finish();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports serialize")
        );
    } else {
        print!("{}", render(&reports, fix));
    }
    Ok(if reports.iter().all(DriftReport::clean) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// At most this many records of each kind are named; the JSON has them all.
const SHOWN: usize = 20;

fn render(reports: &[DriftReport], fix: bool) -> String {
    let mut out = String::new();
    for report in reports {
        let [left, right] = &report.connectors;
        let c = &report.counts;
        out.push_str(&format!("{} ({left} <-> {right})\n", report.pair));
        out.push_str(&format!(
            "  listed     {left} {}, {right} {}\n  matched    {}\n  different  {}\n  missing    {}\n  extra      {}\n  settling   {} (a conflict or a queued write covers them)\n",
            c.listed[0], c.listed[1], c.matched, c.different, c.missing, c.extra, c.settling
        ));
        for difference in report.different.iter().filter(|d| !d.settling).take(SHOWN) {
            let fields: Vec<String> = difference
                .fields
                .iter()
                .map(|(field, (l, r))| format!("{field} {l} ({left}) vs {r} ({right})"))
                .collect();
            out.push_str(&format!(
                "  different  {}: {}\n",
                difference.key,
                fields.join(", ")
            ));
        }
        for missing in report.missing.iter().take(SHOWN) {
            out.push_str(&format!(
                "  missing    {} not in {} (id {})\n",
                missing.key, missing.connector, missing.id
            ));
        }
        for extra in report.extra.iter().take(SHOWN) {
            out.push_str(&format!(
                "  extra      {} in {} (id {}) has no link\n",
                extra.key.as_deref().unwrap_or("(no key)"),
                extra.connector,
                extra.id
            ));
        }
        if fix {
            out.push_str(&format!(
                "  staged     {} record(s): the next pass (tandem run, or tandem sync --once) decides them; missing records are only reported\n",
                report.staged
            ));
        } else if !report.clean() {
            out.push_str("  repair     tandem reconcile --fix stages them for the next pass\n");
        }
    }
    out
}
