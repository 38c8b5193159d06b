//! `tandem bench --latency RATE`: how long a change takes to travel. Both
//! simulators run in this process with 1,000 linked contacts and send webhooks
//! to the engine's listener; polling is off after the first pass. A driver
//! edits contacts at RATE changes per second, alternately in HubSpot and in
//! Mailchimp, and a watcher times each edit until the other simulator holds it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tandem_hubspot::sim::{HubSpotSim, SimConfig as HubSpotSimConfig};
use tandem_mailchimp::sim::{MailchimpSim, SimConfig as MailchimpSimConfig};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::demo::{WebhookSetup, Workspace, write_workspace};
use crate::engine::{Clock, Engine};
use crate::fixtures::{Profile, generate};

const CONTACTS: usize = 1_000;

/// Latency figures of one direction, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Where the edits were made.
    pub from: &'static str,
    /// Edits timed.
    pub changes: usize,
    /// Edits not seen on the other side within ten seconds.
    pub missed: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Run the latency benchmark.
pub async fn run(rate: u32, seconds: u64, api_latency: Duration, json: bool) -> anyhow::Result<()> {
    let profile = Profile {
        both: CONTACTS,
        hubspot_only: 0,
        mailchimp_only: 0,
        without_email: 0,
        differences: false,
    };
    let (hubspot_seed, mailchimp_seed) = generate(profile, 42);
    let emails: Vec<String> = mailchimp_seed
        .members
        .iter()
        .map(|m| m.email_address.clone())
        .collect();
    let hubspot = HubSpotSim::new(HubSpotSimConfig {
        latency: api_latency,
        ..Default::default()
    });
    hubspot.seed(hubspot_seed).map_err(anyhow::Error::msg)?;
    let mailchimp = MailchimpSim::new(MailchimpSimConfig {
        latency: api_latency,
        ..Default::default()
    });
    mailchimp.seed(mailchimp_seed).map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let setup = WebhookSetup::on(listener.local_addr()?);
    let workspace = Workspace {
        hubspot_url: hubspot.clone().spawn().await?,
        hubspot_token: HubSpotSimConfig::default().token,
        mailchimp_url: mailchimp.clone().spawn().await?,
        mailchimp_key: MailchimpSimConfig::default().api_key,
        list_id: MailchimpSimConfig::default().list_id,
        poll_interval_secs: 3600,
        overlap_secs: 5,
        hubspot_limits: ("off".into(), "off".into()),
        webhooks: None,
    };
    let workspace = Workspace {
        webhooks: Some(setup),
        ..workspace
    };
    let config = Config::load(&write_workspace(dir.path(), &workspace)?)?;
    let engine = Arc::new(Engine::start(&config, Clock::System).await?);
    let shutdown = CancellationToken::new();
    let intake = crate::http::Intake::new(&config, engine.clone())
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    tokio::spawn(intake.serve(listener, shutdown.clone()));
    // The first pass links everyone; then only webhooks drive the engine.
    engine.pass(&shutdown).await.context("the first pass")?;
    let runner = engine.clone();
    let stop = shutdown.clone();
    let run = tokio::spawn(async move { runner.run(stop, |_| {}).await });
    workspace
        .webhooks
        .as_ref()
        .expect("set above")
        .connect(&hubspot, &mailchimp);

    // Drive and watch: (direction, email, value) -> when the edit was made.
    let mut pending: HashMap<(usize, String, String), Instant> = HashMap::new();
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut missed = [0usize; 2];
    let total = rate as u64 * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let mut made = 0u64;
    while made < total || !pending.is_empty() {
        let due = (started.elapsed().as_secs_f64() / interval.as_secs_f64()) as u64;
        while made < total && made <= due {
            // Each email is edited on one side only, in turns, so no edit races another.
            let index = made as usize % emails.len();
            let direction = index % 2;
            let email = emails[index].clone();
            let value = format!("v{made}");
            if direction == 0 {
                hubspot.edit(&email, &[("firstname", &value)]);
            } else {
                mailchimp.edit(&email, &[("FNAME", &value)]);
            }
            pending.insert((direction, email, value), Instant::now());
            made += 1;
        }
        pending.retain(|(direction, email, value), at| {
            let arrived = if *direction == 0 {
                mailchimp.member(email).and_then(|m| {
                    m.merge_fields
                        .get("FNAME")
                        .and_then(|v| v.as_str().map(String::from))
                })
            } else {
                hubspot
                    .contact_by_email(email)
                    .and_then(|c| c.properties.get("firstname").cloned().flatten())
            };
            if arrived.as_deref() == Some(value.as_str()) {
                times[*direction].push(at.elapsed());
                return false;
            }
            if at.elapsed() > Duration::from_secs(10) {
                missed[*direction] += 1;
                return false;
            }
            true
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    shutdown.cancel();
    run.await.ok();
    let results: Vec<Latency> = [("hubspot", 0), ("mailchimp", 1)]
        .into_iter()
        .map(|(from, d)| figures(from, &mut times[d], missed[d]))
        .collect();
    if json {
        for result in &results {
            println!("{}", serde_json::to_string(result)?);
        }
    } else {
        println!(
            "{rate} changes/s for {seconds} s, 1,000 linked contacts, webhooks only, {} ms per API call",
            api_latency.as_millis()
        );
        println!(
            "{:>10} {:>8} {:>7} {:>9} {:>9} {:>9}",
            "from", "changes", "missed", "p50 ms", "p99 ms", "max ms"
        );
        for r in &results {
            println!(
                "{:>10} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1}",
                r.from, r.changes, r.missed, r.p50_ms, r.p99_ms, r.max_ms
            );
        }
    }
    Ok(())
}

fn figures(from: &'static str, times: &mut [Duration], missed: usize) -> Latency {
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Latency {
        from,
        changes: times.len(),
        missed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}
