//! The APIs misbehave: throttling storms, server errors, answers slower than
//! the client waits, connections cut mid-answer, bodies that do not parse.
//! Nothing is lost, nothing is parked as a dead letter for it, and a connector
//! that keeps failing is paused by its circuit breaker, probed, and resumed.

use std::time::Duration;

use tandem_core::breaker::BreakerState;
use tandem_core::sim::ApiFaults;

use crate::support::{World, people};

const PAIR: &str = "hubspot-mailchimp";

/// Each connector waits at most `timeout` for an answer and retries `retries` times.
fn impatient(world: &mut World, timeout: Duration, retries: u32) {
    for settings in world.config.connectors.values_mut() {
        let common = settings.common_mut();
        common.timeout = Some(timeout);
        common.max_retries = Some(retries);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_get_through_storms_errors_slow_answers_resets_and_garbled_bodies() {
    let (contacts, members) = people(12);
    let mut world = World::new(contacts, members).await;
    impatient(&mut world, Duration::from_millis(800), 3);
    let engine = world.engine().await;
    world.pass(&engine).await;

    let faults = ApiFaults {
        throttle: 0.1,
        retry_after: Duration::from_secs(1),
        server_error: 0.1,
        slow: 0.05,
        slow_by: Duration::from_millis(1200),
        reset: 0.1,
        malformed: 0.1,
    };
    world.later();
    // People create records through the API before the faults start.
    world
        .create_in_hubspot(serde_json::json!({ "email": "new-h@example.com", "firstname": "NewH" }))
        .await;
    world
        .create_in_mailchimp("new-m@example.com", serde_json::json!({ "FNAME": "NewM" }))
        .await;
    world.hubspot.api_faults().set(faults);
    world.mailchimp.api_faults().set(faults);
    for i in 0..6 {
        world.hubspot.edit(
            &format!("p{i}@example.com"),
            &[("firstname", &format!("Hub {i}"))],
        );
        world.mailchimp.edit(
            &format!("p{}@example.com", i + 6),
            &[("LNAME", &format!("Chimp {i}"))],
        );
    }

    let mut problems = Vec::new();
    for _ in 0..8 {
        world.clock.advance(Duration::from_secs(3600));
        let report = world.pass(&engine).await;
        problems.extend(report.problems);
    }
    let met = [
        world.hubspot.api_faults().counts(),
        world.mailchimp.api_faults().counts(),
    ];
    world.hubspot.api_faults().set(ApiFaults::default());
    world.mailchimp.api_faults().set(ApiFaults::default());
    assert!(
        world.catch_up(&engine).await,
        "the engine catches up once the faults stop"
    );

    let total: u64 = met.iter().map(|m| m.total()).sum();
    assert!(total >= 5, "faults were met: {met:?}");
    eprintln!(
        "faults met: HubSpot {:?}, Mailchimp {:?}; problems: {}",
        met[0],
        met[1],
        problems.len()
    );
    for i in 0..6 {
        let email = format!("p{i}@example.com");
        assert_eq!(
            world.mailchimp_value(&email, "FNAME").as_deref(),
            Some(format!("Hub {i}").as_str())
        );
        let email = format!("p{}@example.com", i + 6);
        assert_eq!(
            world.hubspot_value(&email, "lastname").as_deref(),
            Some(format!("Chimp {i}").as_str())
        );
    }
    assert_eq!(
        world
            .mailchimp_value("new-h@example.com", "FNAME")
            .as_deref(),
        Some("NewH")
    );
    assert_eq!(
        world
            .hubspot_value("new-m@example.com", "firstname")
            .as_deref(),
        Some("NewM")
    );
    let emails: Vec<_> = world
        .hubspot
        .contacts()
        .iter()
        .filter_map(|c| c.properties.get("email").cloned().flatten())
        .collect();
    let unique: std::collections::BTreeSet<_> = emails.iter().collect();
    assert_eq!(
        (emails.len(), unique.len()),
        (14, 14),
        "no duplicate created in HubSpot"
    );
    assert_eq!(
        world.mailchimp.members().len(),
        14,
        "no duplicate created in Mailchimp"
    );
    let counts = engine.store().call(|s| s.counts(PAIR)).await.unwrap();
    assert_eq!(
        (counts.open_conflicts, counts.dead_letters),
        (0, 0),
        "faults are never a record's fault"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_or_unparsable_fails_that_call_for_now_and_nothing_else() {
    let garbled = ApiFaults {
        malformed: 1.0,
        ..ApiFaults::default()
    };
    let cut = ApiFaults {
        reset: 1.0,
        ..ApiFaults::default()
    };
    for faults in [garbled, cut] {
        let (contacts, members) = people(3);
        let mut world = World::new(contacts, members).await;
        impatient(&mut world, Duration::from_secs(5), 0);
        let engine = world.engine().await;
        world.pass(&engine).await;
        world.later();
        world
            .hubspot
            .edit("p0@example.com", &[("firstname", "Ada")]);
        world
            .mailchimp
            .edit("p1@example.com", &[("LNAME", "Lovelace")]);

        // Every Mailchimp answer is garbled or cut off: its listing cannot be
        // read, nor the answers to the writes sent to it.
        world.mailchimp.api_faults().set(faults);
        world.clock.advance(Duration::from_secs(3600));
        let report = world.pass(&engine).await;
        assert!(
            report.problems.iter().any(|p| p.contains("mailchimp")),
            "the pass says what failed: {:?}",
            report.problems
        );
        // HubSpot is unaffected: its edit was read and queued for Mailchimp.
        assert_eq!(report.pulled[0], 1, "{report:?}");
        let counts = engine.store().call(|s| s.counts(PAIR)).await.unwrap();
        assert_eq!(
            counts.dead_letters, 0,
            "a broken answer is not the record's fault"
        );

        world.mailchimp.api_faults().set(ApiFaults::default());
        for _ in 0..3 {
            world.clock.advance(Duration::from_secs(3600));
            world.pass(&engine).await;
        }
        assert_eq!(
            world.mailchimp_value("p0@example.com", "FNAME").as_deref(),
            Some("Ada")
        );
        assert_eq!(
            world.hubspot_value("p1@example.com", "lastname").as_deref(),
            Some("Lovelace")
        );
        assert!(world.mailchimp.api_faults().counts().total() >= 1);
        let counts = engine.store().call(|s| s.counts(PAIR)).await.unwrap();
        assert_eq!(
            (counts.pending_writes, counts.dead_letters),
            (0, 0),
            "{faults:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_api_pauses_its_connector_which_is_probed_and_resumes() {
    let (contacts, members) = people(3);
    let mut world = World::new(contacts, members).await;
    impatient(&mut world, Duration::from_secs(5), 0);
    for settings in world.config.connectors.values_mut() {
        let common = settings.common_mut();
        common.breaker_failure_percent = Some(50);
        common.breaker_cooldown = Some(Duration::from_secs(1));
    }
    let engine = world.engine().await;
    world.pass(&engine).await;

    world.mailchimp.api_faults().set(ApiFaults {
        server_error: 1.0,
        ..ApiFaults::default()
    });
    let mut opened = None;
    for pass in 0..30 {
        world.clock.advance(Duration::from_secs(3600));
        let report = world.pass(&engine).await;
        assert_eq!(
            report.breakers[0].state,
            BreakerState::Closed,
            "HubSpot answers"
        );
        if report.breakers[1].state == BreakerState::Open {
            opened = Some(pass);
            break;
        }
    }
    assert!(opened.is_some(), "the breaker opens after repeated 5xx");

    // While open, Mailchimp is not called at all; HubSpot still syncs into the store.
    world.later();
    world
        .hubspot
        .edit("p0@example.com", &[("firstname", "Grace")]);
    world
        .mailchimp
        .edit("p1@example.com", &[("LNAME", "Hopper")]);
    let before = world.mailchimp.stats().requests;
    let report = world.pass(&engine).await;
    assert_eq!(
        world.mailchimp.stats().requests,
        before,
        "a paused connector sends nothing"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("paused after repeated failures")),
        "{:?}",
        report.problems
    );
    let now = world.clock.now();
    let health = engine
        .store()
        .call(move |s| s.connector_health("mailchimp", now))
        .await
        .unwrap();
    assert_eq!(health.breaker, BreakerState::Open);
    assert!(health.requests_today > 0);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["status", "--json", "--config"])
        .arg(world.dir.path().join("tandem.toml"))
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1), "status says unhealthy");
    let pairs: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(pairs[0]["health"][1]["breaker"], "open", "{pairs}");
    assert!(
        pairs[0]["problems"]
            .to_string()
            .contains("mailchimp is paused"),
        "{}",
        pairs[0]["problems"]
    );

    // The API recovers; after the cooldown the next call is a probe, which closes it.
    world.mailchimp.api_faults().set(ApiFaults::default());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        world.clock.advance(Duration::from_secs(3600));
        let report = world.pass(&engine).await;
        assert_eq!(report.breakers[1].state, BreakerState::Closed, "{report:?}");
    }
    assert_eq!(
        world.mailchimp_value("p0@example.com", "FNAME").as_deref(),
        Some("Grace")
    );
    assert_eq!(
        world.hubspot_value("p1@example.com", "lastname").as_deref(),
        Some("Hopper")
    );
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["status", "--json", "--config"])
        .arg(world.dir.path().join("tandem.toml"))
        .output()
        .unwrap();
    let pairs: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(pairs[0]["health"][1]["breaker"], "closed", "{pairs}");
    assert_eq!(pairs[0]["health"][1]["breaker_opened"], 1, "{pairs}");
}
