//! Rate limits: the clients stay inside each vendor's budget, honour throttling
//! answers the vendor's way, and the simulators enforce the same limits.

use std::time::Duration;

use secrecy::SecretString;
use tandem_core::{Connector, ConnectorError, RateLimit};
use tandem_hubspot::sim::{HubSpotSim, SimConfig as HubSpotSimConfig};
use tandem_hubspot::{HubSpotClient, HubSpotConfig};
use tandem_mailchimp::sim::{MailchimpSim, SimConfig as MailchimpSimConfig};
use tandem_mailchimp::{MailchimpClient, MailchimpConfig};

async fn hubspot(
    sim_config: HubSpotSimConfig,
    rate: Option<RateLimit>,
) -> (HubSpotSim, HubSpotClient) {
    let sim = HubSpotSim::new(sim_config);
    let url = sim.clone().spawn().await.unwrap();
    let mut config = HubSpotConfig::new(url, SecretString::from("sim-hubspot-token"));
    config.http.rate = rate;
    config.http.max_retries = 6;
    (sim, HubSpotClient::new(config).unwrap())
}

async fn mailchimp(
    sim_config: MailchimpSimConfig,
    connections: usize,
) -> (MailchimpSim, MailchimpClient) {
    let (key, list) = (sim_config.api_key.clone(), sim_config.list_id.clone());
    let sim = MailchimpSim::new(sim_config);
    let url = sim.clone().spawn().await.unwrap();
    let mut config = MailchimpConfig::new(url, SecretString::from(key), list);
    config.http.max_concurrency = Some(connections);
    config.http.max_retries = 8;
    config.http.backoff = Duration::from_millis(20);
    (sim, MailchimpClient::new(config).unwrap())
}

/// Run `n` checks at once; every one must succeed.
async fn checks(client: &HubSpotClient, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        tasks.spawn(async move { client.check().await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_hubspot_client_within_its_budget_gets_no_429() {
    let budget = (20, Duration::from_secs(1));
    let sim_config = HubSpotSimConfig {
        rate_limit: Some(budget),
        ..Default::default()
    };
    let (sim, client) = hubspot(
        sim_config,
        Some(RateLimit {
            requests: budget.0,
            per: budget.1,
        }),
    )
    .await;
    checks(&client, 50).await;
    assert_eq!(sim.stats().throttled, 0);
    assert_eq!(client.traffic().requests, 50);
}

#[tokio::test]
async fn a_hubspot_429_is_waited_out_and_retried() {
    let sim_config = HubSpotSimConfig {
        rate_limit: Some((10, Duration::from_secs(1))),
        retry_after: true,
        ..Default::default()
    };
    let (sim, client) = hubspot(sim_config, None).await;
    checks(&client, 25).await;
    let refused = sim.stats().throttled;
    assert!(
        refused > 0,
        "an unlimited client must meet the simulator's limit"
    );
    assert_eq!(client.traffic().throttled, refused);
}

#[tokio::test]
async fn spent_budget_headers_make_the_client_wait_instead_of_meeting_a_429() {
    // No Retry-After and no client limiter: only the X-HubSpot-RateLimit-* headers can save it.
    let sim_config = HubSpotSimConfig {
        rate_limit: Some((5, Duration::from_secs(1))),
        ..Default::default()
    };
    let (sim, client) = hubspot(sim_config, None).await;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        client.check().await.unwrap();
    }
    assert_eq!(sim.stats().throttled, 0);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn hubspots_daily_limit_pauses_the_connector() {
    let sim_config = HubSpotSimConfig {
        daily_limit: Some(3),
        ..Default::default()
    };
    let (sim, client) = hubspot(sim_config, None).await;
    for _ in 0..3 {
        client.check().await.unwrap();
    }
    match client.check().await {
        Err(ConnectorError::RateLimited {
            retry_after: Some(wait),
            ..
        }) => assert!(wait >= Duration::from_secs(60), "{wait:?}"),
        other => panic!("expected the daily limit, got {other:?}"),
    }
    // Paused: the next call fails at once, without a request.
    let requests = sim.stats().requests;
    assert!(matches!(
        client.check().await,
        Err(ConnectorError::RateLimited { .. })
    ));
    assert_eq!(sim.stats().requests, requests);
}

#[tokio::test]
async fn hubspot_search_has_its_own_budget() {
    let sim_config = HubSpotSimConfig {
        search_rate_limit: Some((2, Duration::from_secs(1))),
        retry_after: true,
        ..Default::default()
    };
    let (sim, client) = hubspot(sim_config, None).await;
    // Listing is not search: it passes freely.
    let mut cursor = None;
    let page = client.poll(cursor.as_deref()).await.unwrap();
    cursor = Some(page.cursor);
    // Three searches at once against a budget of two per second: one is throttled and retried.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (client, cursor) = (client.clone(), cursor.clone());
        tasks.spawn(async move { client.poll(cursor.as_deref()).await.map(drop) });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    assert!(sim.stats().throttled >= 1);
}

async fn lookups(client: &MailchimpClient, n: usize) {
    let keys: Vec<String> = (0..n).map(|i| format!("nobody{i}@example.com")).collect();
    assert!(client.lookup(&keys).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_mailchimp_client_within_its_connections_gets_no_429() {
    let sim_config = MailchimpSimConfig {
        latency: Duration::from_millis(30),
        ..Default::default()
    };
    let (sim, client) = mailchimp(sim_config, 8).await;
    lookups(&client, 40).await;
    assert_eq!(sim.stats().throttled, 0);
}

#[tokio::test]
async fn mailchimp_429_and_bare_403_are_waited_out() {
    for refuse_with_403 in [false, true] {
        let sim_config = MailchimpSimConfig {
            latency: Duration::from_millis(30),
            refuse_with_403,
            ..Default::default()
        };
        let (sim, client) = mailchimp(sim_config, 25).await;
        lookups(&client, 40).await;
        let refused = sim.stats().throttled;
        assert!(
            refused > 0,
            "25 connections must meet a limit of 10 (403: {refuse_with_403})"
        );
        assert_eq!(client.traffic().throttled, refused);
    }
}
