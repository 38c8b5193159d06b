//! `tandem bench --migrate N`: how fast a migration copies and proves. HubSpot
//! holds N contacts; Mailchimp already holds half of them, with differences,
//! as a target that was partly imported before. Both simulators run as child
//! processes; `tandem migrate hubspot -> mailchimp` copies and validates, and
//! the run reports the time of each step, records per second and peak memory.

use std::time::Instant;

use anyhow::bail;
use serde::Serialize;

use crate::bench::{peak_rss_kib, reset_peak_rss, spawn_sims};
use crate::engine::{Clock, Engine, MigrateProgress, Progress};
use crate::fixtures::{Profile, generate};
use crate::side::Side;

/// One migration's figures.
#[derive(Debug, Serialize)]
pub struct MigrateResult {
    /// HubSpot contacts (the source).
    pub source_records: usize,
    /// Writes confirmed by Mailchimp.
    pub written: usize,
    /// Seconds listing both systems and planning.
    pub plan_secs: f64,
    /// Seconds copying (outbox to Mailchimp).
    pub copy_secs: f64,
    /// Seconds validating (both listed again, checksums, spot checks).
    pub validate_secs: f64,
    /// Source records per second over the whole run.
    pub records_per_sec: f64,
    /// Whether the validation passed (it must).
    pub passed: bool,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

/// The time each step started.
#[derive(Default)]
struct Steps(Vec<(String, Instant)>);

impl Progress for Steps {
    fn listed(&mut self, _: Side, _: usize) {}
}

impl MigrateProgress for Steps {
    fn step(&mut self, what: &str) {
        self.0.push((what.to_string(), Instant::now()));
    }
    fn written(&mut self, _: usize, _: usize) {}
}

/// Run the migration benchmark over `n` source contacts and print its figures.
pub async fn run(n: usize, json: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let half = n / 2;
    let profile = Profile {
        both: half,
        hubspot_only: n - half,
        mailchimp_only: 0,
        without_email: 0,
        differences: true,
    };
    let (mut hubspot, mut mailchimp, config) =
        spawn_sims(dir.path(), generate(profile, n as u64), None).await?;
    reset_peak_rss();
    let engine = Engine::start(&config, Clock::System).await?;
    let mut steps = Steps::default();
    let started = Instant::now();
    let report = engine
        .migrate("hubspot", "mailchimp", false, 100, &mut steps, |_| true)
        .await?
        .expect("confirmed");
    let ended = Instant::now();
    let peak_rss_mib = peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    hubspot.kill().await.ok();
    mailchimp.kill().await.ok();
    let at = |name: &str| {
        steps
            .0
            .iter()
            .find(|(step, _)| step == name)
            .map_or(started, |(_, at)| *at)
    };
    let (copying, validating) = (at("copying"), at("validating"));
    let result = MigrateResult {
        source_records: report.validation.source_records,
        written: report.copy.as_ref().map_or(0, |c| c.written),
        plan_secs: (copying - started).as_secs_f64(),
        copy_secs: (validating - copying).as_secs_f64(),
        validate_secs: (ended - validating).as_secs_f64(),
        records_per_sec: n as f64 / (ended - started).as_secs_f64(),
        passed: report.validation.passed,
        peak_rss_mib,
    };
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{:>10} {:>10} {:>8} {:>8} {:>10} {:>10} {:>8} {:>10}",
            "source",
            "written",
            "plan s",
            "copy s",
            "validate s",
            "records/s",
            "passed",
            "peak MiB"
        );
        println!(
            "{:>10} {:>10} {:>8.2} {:>8.2} {:>10.2} {:>10.0} {:>8} {:>10.1}",
            result.source_records,
            result.written,
            result.plan_secs,
            result.copy_secs,
            result.validate_secs,
            result.records_per_sec,
            result.passed,
            result.peak_rss_mib
        );
    }
    if !result.passed || result.source_records != n {
        bail!(
            "the migration did not validate: {:?}",
            report.validation.unavailable
        );
    }
    Ok(())
}
