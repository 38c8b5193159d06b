//! `tandem bench`: a backfill between the simulators. For each size N, N
//! contacts exist only in HubSpot and another N only in Mailchimp; one pass
//! creates every one of them on the other side. The simulators run as child
//! processes so the peak memory reported is the engine's own.
//!
//! Rate limits are off by default, to measure the engine. With `--limits` the
//! simulators enforce a HubSpot private app's budget (100 requests per 10 s,
//! search 5 per second) and Mailchimp's 10 connections, the engine is configured
//! to the same budget, and the run reports how much of HubSpot's budget the
//! backfill used while it had HubSpot work, and how many 429s it met.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use tandem_hubspot::sim::Seed as HubSpotSeed;
use tandem_mailchimp::sim::Seed as MailchimpSeed;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::demo::{Workspace, write_workspace};
use crate::engine::{Clock, Engine};
use crate::fixtures::{Profile, generate};

/// Arguments of `tandem bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Contacts per side; repeat for several runs.
    #[arg(long = "contacts", default_values_t = [10_000usize, 100_000])]
    pub contacts: Vec<usize>,
    /// Print the results as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Enforce and respect the vendors' real rate limits (default size: 10,000 per side, so that the run spans many windows).
    #[arg(long)]
    pub limits: bool,
    /// Measure webhook latency instead: changes per second, each timed from its
    /// edit in one simulator until it is visible in the other.
    #[arg(long, value_name = "CHANGES_PER_SECOND")]
    pub latency: Option<u32>,
    /// How long the latency run makes changes, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// With --latency: how long each simulated API call takes, in milliseconds
    /// (real ones take 100 or more).
    #[arg(long, default_value_t = 0)]
    pub api_latency_ms: u64,
    /// Measure field decisions per second of the reconcile core instead, over
    /// this many linked records (100,000 if no number is given).
    #[arg(long, value_name = "RECORDS", num_args = 0..=1, default_missing_value = "100000")]
    pub decisions: Option<usize>,
    /// Measure a migration instead: HubSpot holds this many contacts, Mailchimp
    /// half of them with differences; copy into Mailchimp and validate.
    #[arg(long, value_name = "CONTACTS", num_args = 0..=1, default_missing_value = "10000")]
    pub migrate: Option<usize>,
}

/// One run's figures.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// Contacts per side.
    pub contacts_per_side: usize,
    /// Records created (both sides).
    pub records: usize,
    /// Seconds of the backfill pass.
    pub backfill_secs: f64,
    /// Records created per second.
    pub records_per_sec: f64,
    /// Seconds of the next pass, which reads back every write and changes nothing.
    pub quiet_pass_secs: f64,
    /// Writes the quiet pass made (0 expected).
    pub quiet_pass_writes: usize,
    /// Peak resident memory of the engine process during this run, in MiB.
    pub peak_rss_mib: f64,
    /// Seconds of a full comparison of both systems with the state after it
    /// (what `tandem reconcile` and the scheduled comparison do).
    pub compare_secs: f64,
    /// Resident memory before that comparison and its peak, in MiB.
    pub compare_rss_mib: [f64; 2],
    /// Where the backfill's time went.
    pub backfill_timings: crate::engine::Timings,
    /// The backfill's requests and throttling answers, by side (HubSpot, Mailchimp).
    pub backfill_traffic: [tandem_core::TrafficStats; 2],
    /// With limits: HubSpot requests per second while it had work, over its budget's rate.
    pub hubspot_budget_use: Option<f64>,
}

/// HubSpot's budget in the `--limits` runs: a private app on a Starter plan.
const HUBSPOT_BUDGET: (u32, u64) = (100, 10);

/// Run the benchmark.
pub async fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if let Some(contacts) = args.migrate {
        return crate::bench_migrate::run(contacts, args.json).await;
    }
    if let Some(records) = args.decisions {
        return crate::bench_decisions::run(records, args.json);
    }
    if let Some(rate) = args.latency {
        return crate::bench_latency::run(
            rate,
            args.seconds,
            Duration::from_millis(args.api_latency_ms),
            args.json,
        )
        .await;
    }
    if args.limits && args.contacts == [10_000, 100_000] {
        args.contacts = vec![10_000];
    }
    if args.limits && !args.json {
        println!(
            "{:>10} {:>12} {:>16} {:>18} {:>10}",
            "per side", "backfill s", "HubSpot requests", "HubSpot budget use", "429s"
        );
        for &n in &args.contacts {
            let result = run_one(n, true).await?;
            let throttled: u64 = result.backfill_traffic.iter().map(|t| t.throttled).sum();
            println!(
                "{:>10} {:>12.2} {:>16} {:>17.1}% {:>10}",
                n,
                result.backfill_secs,
                result.backfill_traffic[0].requests,
                100.0 * result.hubspot_budget_use.unwrap_or(0.0),
                throttled
            );
        }
        return Ok(());
    }
    if !args.json {
        println!(
            "{:>10} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10} {:>16}",
            "per side",
            "records",
            "backfill s",
            "records/s",
            "quiet s",
            "peak MiB",
            "compare s",
            "compare MiB",
        );
    }
    for &n in &args.contacts {
        let result = run_one(n, args.limits).await?;
        if args.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            println!(
                "{:>10} {:>10} {:>12.2} {:>12.0} {:>12.2} {:>10.1} {:>10.2} {:>16}",
                result.contacts_per_side,
                result.records,
                result.backfill_secs,
                result.records_per_sec,
                result.quiet_pass_secs,
                result.peak_rss_mib,
                result.compare_secs,
                format!(
                    "{:.0} -> {:.0}",
                    result.compare_rss_mib[0], result.compare_rss_mib[1]
                ),
            );
        }
    }
    Ok(())
}

async fn run_one(n: usize, limits: bool) -> anyhow::Result<BenchResult> {
    let dir = tempfile::tempdir()?;
    let budget = format!("{}/{}s", HUBSPOT_BUDGET.0, HUBSPOT_BUDGET.1);
    let enforced = limits.then_some(SimLimits {
        hubspot: vec!["--rate-limit", &budget, "--search-rate-limit", "5/1s"],
        mailchimp: vec!["--max-connections", "10"],
        engine: (budget.clone(), "4/1s".into()),
    });
    let seeds = generate(Profile::backfill(n), n as u64);
    let (mut hubspot, mut mailchimp, config) = spawn_sims(dir.path(), seeds, enforced).await?;
    reset_peak_rss();
    let engine = Engine::start(&config, Clock::System).await?;
    let never = CancellationToken::new();
    let started = Instant::now();
    let backfill = crate::cli::progress::watch(
        &engine,
        &format!("backfill of {n} per side"),
        engine.pass(&never),
    )
    .await?;
    let backfill_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let quiet = engine.pass(&never).await?;
    let quiet_pass_secs = started.elapsed().as_secs_f64();
    let peak_rss_mib = peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    reset_peak_rss();
    let before = peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    let started = Instant::now();
    let compared = engine.drift(false, &mut ()).await?;
    let compare_secs = started.elapsed().as_secs_f64();
    let compare_rss_mib = [before, peak_rss_kib().unwrap_or(0) as f64 / 1024.0];
    hubspot.kill().await.ok();
    mailchimp.kill().await.ok();
    let pair = &backfill.pairs[0];
    if pair.created != [n, n] {
        bail!(
            "the backfill of {n} per side created {:?} records; problems: {:?}",
            pair.created,
            pair.problems
        );
    }
    let counts = compared[0].counts;
    if counts.matched != 2 * n as u64 || !compared[0].clean() {
        bail!("the comparison after a backfill of {n} per side found {counts:?}");
    }
    let hubspot_busy_ms = pair.timings.pull_ms[0] + pair.timings.flush_ms[0];
    let budget_per_ms = HUBSPOT_BUDGET.0 as f64 / (HUBSPOT_BUDGET.1 * 1000) as f64;
    let hubspot_budget_use = limits
        .then(|| pair.traffic[0].requests as f64 / (hubspot_busy_ms.max(1) as f64 * budget_per_ms));
    Ok(BenchResult {
        contacts_per_side: n,
        records: 2 * n,
        backfill_secs,
        records_per_sec: (2 * n) as f64 / backfill_secs,
        quiet_pass_secs,
        quiet_pass_writes: quiet.writes(),
        peak_rss_mib,
        compare_secs,
        compare_rss_mib,
        backfill_timings: pair.timings,
        backfill_traffic: pair.traffic,
        hubspot_budget_use,
    })
}

/// Rate limits to enforce: the simulators' arguments and the engine's
/// (request budget, search budget) for HubSpot.
pub(crate) struct SimLimits<'a> {
    pub hubspot: Vec<&'a str>,
    pub mailchimp: Vec<&'a str>,
    pub engine: (String, String),
}

/// Both simulators as child processes, seeded, and the config of an engine
/// pointed at them (with the limits, or none).
pub(crate) async fn spawn_sims(
    dir: &Path,
    (hubspot_seed, mailchimp_seed): (HubSpotSeed, MailchimpSeed),
    limits: Option<SimLimits<'_>>,
) -> anyhow::Result<(Child, Child, Config)> {
    std::fs::write(
        dir.join("hubspot-seed.json"),
        serde_json::to_vec(&hubspot_seed)?,
    )?;
    std::fs::write(
        dir.join("mailchimp-seed.json"),
        serde_json::to_vec(&mailchimp_seed)?,
    )?;
    drop((hubspot_seed, mailchimp_seed));
    let (hubspot_args, mailchimp_args, engine_limits) = match limits {
        Some(l) => (l.hubspot, l.mailchimp, l.engine),
        None => (
            vec![],
            vec!["--max-connections", "0"],
            ("off".into(), "off".into()),
        ),
    };
    let (hubspot, hubspot_url) = spawn_sim(dir, "hubspot", &hubspot_args).await?;
    let (mailchimp, mailchimp_url) = spawn_sim(dir, "mailchimp", &mailchimp_args).await?;
    let workspace = Workspace {
        hubspot_url,
        hubspot_token: "sim-hubspot-token".into(),
        mailchimp_url,
        mailchimp_key: "0123456789abcdef0123456789abcdef-us6".into(),
        list_id: "a1b2c3d4e5".into(),
        poll_interval_secs: 30,
        overlap_secs: 5,
        hubspot_limits: engine_limits,
        webhooks: None,
    };
    let config = Config::load(&write_workspace(dir, &workspace)?)?;
    Ok((hubspot, mailchimp, config))
}

/// Start `tandem sim <vendor>` on a free port; its first line of output is its URL.
pub(crate) async fn spawn_sim(
    dir: &Path,
    vendor: &str,
    extra: &[&str],
) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe().context("cannot find the tandem executable")?;
    let seed = dir.join(format!("{vendor}-seed.json"));
    let mut child = Command::new(exe)
        .args(["sim", vendor, "--listen", "127.0.0.1:0", "--seed"])
        .arg(&seed)
        .args(extra)
        .env("TANDEM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a simulator")?;
    let stdout = child.stdout.take().context("no simulator output")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    if line.trim().is_empty() {
        bail!("the {vendor} simulator did not start");
    }
    Ok((child, line.trim().to_string()))
}

/// Reset the kernel's peak-RSS mark of this process (Linux), so each run reports its own.
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
