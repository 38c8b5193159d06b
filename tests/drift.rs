//! `tandem reconcile`: both systems listed in full and compared with the
//! state finds what passes missed (a change search showed too late, an archive
//! no webhook announced, a record not linked yet), `--fix` stages it for the
//! next pass to repair through the normal path, and `tandem status` reports
//! the drift until it is gone.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{World, contact, member, people};

fn tandem(world: &World, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .arg("--config")
        .arg(world.dir.path().join("tandem.toml"))
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_comparison_finds_what_passes_missed_and_fix_repairs_it() {
    let (contacts, members) = people(4);
    let world = World::new(contacts, members).await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    // p0's edit stays out of search until the watermark is past it (no lookback
    // in these tests): the passes never see it.
    world.later();
    world
        .hubspot
        .edit("p0@example.com", &[("firstname", "Hidden")]);
    world
        .hubspot
        .delay_indexing("p0@example.com", Duration::from_secs(20));
    world.later();
    world
        .hubspot
        .edit("p1@example.com", &[("firstname", "Seen")]);
    world.pass(&engine).await;
    world.hubspot.advance_clock(Duration::from_secs(30));
    world.pass(&engine).await;
    assert_eq!(
        world.mailchimp_value("p1@example.com", "FNAME").as_deref(),
        Some("Seen")
    );
    assert_eq!(
        world.mailchimp_value("p0@example.com", "FNAME").as_deref(),
        Some("F"),
        "missed"
    );
    // p2 is archived in HubSpot with no webhook; search never shows archives.
    let p2 = world.hubspot.contact_by_email("p2@example.com").unwrap().id;
    assert!(world.hubspot.archive(&p2));
    // A signup after the last pass is not linked yet.
    world
        .create_in_mailchimp("new@example.com", serde_json::json!({ "FNAME": "New" }))
        .await;
    let pending_before = engine
        .store()
        .call(|s| s.counts("hubspot-mailchimp"))
        .await
        .unwrap();

    let (code, out) = tandem(&world, &["reconcile", "--json"]);
    assert_eq!(code, Some(1), "drift found: {out}");
    let reports: Value = serde_json::from_str(&out).unwrap();
    let report = &reports[0];
    assert_eq!(
        report["counts"]["listed"],
        serde_json::json!([3, 5]),
        "{report}"
    );
    assert_eq!(report["counts"]["matched"], 2, "{report}");
    assert_eq!(report["counts"]["different"], 1, "{report}");
    assert_eq!(report["different"][0]["key"], "p0@example.com");
    assert_eq!(
        report["different"][0]["fields"]["first_name"],
        serde_json::json!(["Hidden", "F"])
    );
    assert_eq!(report["counts"]["missing"], 1);
    assert_eq!(report["missing"][0]["key"], "p2@example.com");
    assert_eq!(report["missing"][0]["connector"], "hubspot");
    assert_eq!(
        report["missing"][0]["archived"], true,
        "read by id, it is archived"
    );
    assert_eq!(report["counts"]["extra"], 1);
    assert_eq!(report["extra"][0]["connector"], "mailchimp");
    assert_eq!(report["extra"][0]["key"], "new@example.com");
    assert_eq!(report["staged"], 0, "without --fix nothing is staged");
    let counts = engine
        .store()
        .call(|s| s.counts("hubspot-mailchimp"))
        .await
        .unwrap();
    assert_eq!(counts, pending_before, "a comparison changes nothing");

    let (code, status) = tandem(&world, &["status"]);
    assert_eq!(code, Some(1), "{status}");
    assert!(
        status.contains("1 different, 1 missing, 1 extra")
            && status.contains("the last comparison found 1 record(s) different and 1 missing"),
        "{status}"
    );

    let (code, out) = tandem(&world, &["reconcile", "--fix"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("staged     4 record(s)"),
        "p0 on both sides, p2's archive, the signup: {out}"
    );
    assert!(
        out.contains(
            "different  p0@example.com: first_name \"Hidden\" (hubspot) vs \"F\" (mailchimp)"
        ),
        "{out}"
    );

    // The next pass repairs through the normal path.
    world.clock.advance(Duration::from_secs(3600));
    let report = world.pass(&engine).await;
    assert_eq!(report.created, [1, 0], "{report:?}");
    assert_eq!(
        world.mailchimp_value("p0@example.com", "FNAME").as_deref(),
        Some("Hidden")
    );
    assert_eq!(
        world
            .hubspot_value("new@example.com", "firstname")
            .as_deref(),
        Some("New")
    );
    assert!(
        world.mailchimp.member("p2@example.com").is_some(),
        "an archive deletes nothing"
    );

    let (code, out) = tandem(&world, &["reconcile"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("matched    4") && out.contains("missing    0"),
        "{out}"
    );
    let (code, status) = tandem(&world, &["status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status[0]["drift"]["different"], 0, "{status}");
    assert_eq!(code, Some(0), "{status}");

    // A change made after the last poll is settling, not drift: the next pass reads it.
    let polled = world.clock.now();
    let ahead = (polled - tandem_core::clock::now_millis()).max(0) as u64 + 60_000;
    world.mailchimp.advance_clock(Duration::from_millis(ahead));
    world
        .mailchimp
        .edit("p3@example.com", &[("LNAME", "Fresh")]);
    let (code, out) = tandem(&world, &["reconcile", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let reports: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &reports[0]["counts"]["different"],
            &reports[0]["counts"]["settling"]
        ),
        (&Value::from(0), &Value::from(1)),
        "{out}"
    );
}

/// `tandem run` on the world, polling every 100 ms and comparing every 200 ms.
async fn run_comparing(
    world: &mut World,
) -> (
    std::sync::Arc<tandem::engine::Engine>,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Result<(), tandem::engine::PassError>>,
) {
    world.config.engine.reconcile_every = Some(Duration::from_millis(200));
    world.config.engine.poll_interval = Duration::from_millis(100);
    let engine = std::sync::Arc::new(world.engine().await);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.run(shutdown, |_| {}).await }
    });
    (engine, shutdown, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_engine_compares_on_its_schedule() {
    let mut world = World::new(
        vec![contact("ada@example.com", &[("firstname", "Ada")])],
        vec![member("ada@example.com", &[("FNAME", "Ada")])],
    )
    .await;
    let (engine, shutdown, running) = run_comparing(&mut world).await;
    let mut drift = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drift = engine
            .store()
            .call(|s| s.last_drift("hubspot-mailchimp"))
            .await
            .unwrap();
        if drift.is_some() {
            break;
        }
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let drift = drift.expect("a comparison ran on schedule");
    assert_eq!(
        (drift.listed, drift.matched, drift.different),
        ([1, 1], 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comparison_lists_every_page_of_both_systems() {
    // More than one page of HubSpot's listing (100 a page).
    let (contacts, members) = people(250);
    let world = World::new(contacts, members).await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    drop(engine);

    let (code, out) = tandem(&world, &["reconcile", "--json"]);
    let reports: Value = serde_json::from_str(&out).unwrap();
    let counts = &reports[0]["counts"];
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(counts["listed"], serde_json::json!([250, 250]), "{counts}");
    assert_eq!(counts["matched"], 250, "{counts}");
    assert_eq!(counts["missing"], 0, "{counts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_comparison_holds_up_no_pass_and_finds_no_drift_in_their_writes() {
    // Ten pages of HubSpot, each answered 300 ms late: listing it takes 3 s.
    let (contacts, members) = people(1000);
    let mut world = World::new(contacts, members).await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    drop(engine);
    world.clock.advance(Duration::from_secs(60));
    world.hubspot.api_faults().set(tandem_core::sim::ApiFaults {
        slow: 1.0,
        slow_by: Duration::from_millis(300),
        ..Default::default()
    });
    let (engine, shutdown, running) = run_comparing(&mut world).await;

    // The comparison is listing HubSpot's first pages when a subscriber edits
    // their name; the first contact is on the first page, listed before the write.
    tokio::time::sleep(Duration::from_millis(600)).await;
    world.later();
    world
        .mailchimp
        .edit("p0@example.com", &[("FNAME", "Edited")]);
    let last_drift = || {
        let engine = engine.clone();
        async move {
            engine
                .store()
                .call(|s| s.last_drift("hubspot-mailchimp"))
                .await
                .unwrap()
        }
    };
    let mut arrived_during_comparison = None;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if world
            .hubspot_value("p0@example.com", "firstname")
            .as_deref()
            == Some("Edited")
        {
            arrived_during_comparison = Some(last_drift().await.is_none());
            break;
        }
    }
    let mut drift = None;
    for _ in 0..300 {
        drift = last_drift().await;
        if drift.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(
        arrived_during_comparison,
        Some(true),
        "the edit reached HubSpot while both systems were being listed"
    );
    let drift = drift.expect("the comparison ended");
    assert_eq!(drift.listed, [1000, 1000]);
    // The pass wrote p0 after its page was listed: settling, not drift.
    assert_eq!(
        (drift.different, drift.missing, drift.extra, drift.settling),
        (0, 0, 0, 1),
        "{drift:?}"
    );
    assert_eq!(drift.matched, 999);
}
