//! `tandem migrate`: a one-way copy through the policy's mapping, run through
//! the command line against both simulators. It creates and updates what the
//! target lacks, never writes the source, links what it copied so two-way sync
//! starts with nothing to do, resumes after a failure without duplicates, and
//! its validation catches a record dropped or altered in the target.

use std::process::Output;

use serde_json::{Value, json};
use tandem_mailchimp::sim::SimConfig as MailchimpSimConfig;

use crate::cli::{stderr, tandem};
use crate::support::{World, contact, member};

/// 30 HubSpot contacts; Mailchimp holds 5 of them as they are, 5 with another
/// first name, and one member of its own.
async fn world() -> World {
    let contacts = (0..30)
        .map(|i| {
            contact(
                &format!("p{i}@example.com"),
                &[
                    ("firstname", &format!("First{i}")),
                    ("lastname", &format!("Last{i}")),
                    ("company", "Analytical"),
                ],
            )
        })
        .collect();
    let mut members: Vec<_> = (0..10)
        .map(|i| {
            let first = if i < 5 {
                format!("First{i}")
            } else {
                format!("Old{i}")
            };
            member(
                &format!("p{i}@example.com"),
                &[
                    ("FNAME", &first),
                    ("LNAME", &format!("Last{i}")),
                    ("COMPANY", "Analytical"),
                ],
            )
        })
        .collect();
    members.push(member("own@example.org", &[("FNAME", "Own")]));
    World::new(contacts, members).await
}

fn config(world: &World) -> String {
    world.dir.path().join("tandem.toml").display().to_string()
}

async fn migrate(world: &World, extra: &[&str]) -> (Output, Value) {
    let config = config(world);
    let mut args = vec!["migrate", "--config", &config, "--json"];
    args.extend_from_slice(extra);
    let output = tandem(&args, &[]).await;
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output, report)
}

#[tokio::test]
async fn a_migration_copies_links_and_proves_it() {
    let world = world().await;
    let hubspot_before = world.hubspot.stats();

    let (output, report) =
        migrate(&world, &["--from", "hubspot", "--to", "mailchimp", "--yes"]).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{report:#}",
        stderr(&output)
    );
    assert_eq!(
        report["plan"],
        json!({"source": 30, "create": 20, "update": 5, "unchanged": 5, "skipped": 0, "held": 0, "gone": 0})
    );
    assert_eq!(report["copy"]["written"], 25);
    // Without a terminal, progress comes as plain lines on standard error.
    let progress = stderr(&output);
    for line in [
        "listing...",
        "copying...",
        "copying: 25 of 25 writes confirmed",
        "validating...",
    ] {
        assert!(
            progress.lines().any(|l| l == line),
            "{line:?} in {progress}"
        );
    }
    let validation = &report["validation"];
    assert_eq!(validation["passed"], true);
    assert_eq!(validation["source_records"], 30);
    assert_eq!(validation["target_records"], 31);
    assert_eq!(validation["matched"], 30);
    assert_eq!(validation["extra"], json!(["own@example.org"]));
    let checksums = validation["checksums"].as_array().unwrap();
    assert!(
        checksums
            .iter()
            .any(|c| c["field"] == "first_name" && c["records"] == 30)
    );
    assert!(
        checksums.iter().all(|c| c["source"] == c["target"]),
        "{checksums:?}"
    );
    let spot = validation["spot_checks"].as_array().unwrap();
    assert_eq!(spot.len(), 20);
    assert!(spot.iter().all(|c| c["passed"] == true));

    // The target holds the source's values; the source was only read.
    assert_eq!(
        world.mailchimp_value("p29@example.com", "FNAME").as_deref(),
        Some("First29")
    );
    assert_eq!(
        world.mailchimp_value("p7@example.com", "FNAME").as_deref(),
        Some("First7")
    );
    assert_eq!(
        world.mailchimp_value("own@example.org", "FNAME").as_deref(),
        Some("Own")
    );
    assert_eq!(world.mailchimp.members().len(), 31);
    let hubspot_after = world.hubspot.stats();
    assert_eq!(
        hubspot_before.writes, hubspot_after.writes,
        "nothing is written to the source"
    );

    // Run again: nothing left to copy, still proved.
    let (output, again) =
        migrate(&world, &["--from", "hubspot", "--to", "mailchimp", "--yes"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(again["plan"]["unchanged"], 30);
    assert_eq!(again["copy"]["written"], 0);

    // Two-way sync starts from what the migration agreed: only the member of
    // Mailchimp's own is new to it (and created in HubSpot).
    let sync = tandem(
        &["sync", "--once", "--json", "--config", &config(&world)],
        &[],
    )
    .await;
    assert_eq!(sync.status.code(), Some(0), "{}", stderr(&sync));
    let pass: Value = serde_json::from_slice(&sync.stdout).unwrap();
    let pair = &pass["pairs"][0];
    assert_eq!(pair["created"], json!([1, 0]), "{pair:#}");
    assert_eq!(pair["updated"], json!([0, 0]), "{pair:#}");
    assert_eq!(pair["conflicts_opened"], 0, "{pair:#}");
}

#[tokio::test]
async fn the_validation_catches_a_record_dropped_or_altered_in_the_target() {
    let world = world().await;
    let (output, _) = migrate(&world, &["--from", "hubspot", "--to", "mailchimp", "--yes"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // Someone removes one member and changes another's last name in Mailchimp.
    let sim = MailchimpSimConfig::default();
    let dropped = reqwest::Client::new()
        .delete(format!(
            "{}/lists/{}/members/{}",
            world.mailchimp_url,
            sim.list_id,
            tandem_mailchimp::subscriber_hash("p12@example.com")
        ))
        .basic_auth("anystring", Some(&sim.api_key))
        .send()
        .await
        .unwrap();
    assert!(dropped.status().is_success(), "{}", dropped.status());
    world
        .mailchimp
        .edit("p21@example.com", &[("LNAME", "Changed")]);

    let (output, report) = migrate(
        &world,
        &["--from", "hubspot", "--to", "mailchimp", "--check"],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\n{report:#}",
        stderr(&output)
    );
    let validation = &report["validation"];
    assert_eq!(validation["passed"], false);
    assert_eq!(report["copy"], Value::Null, "a check writes nothing");
    assert_eq!(validation["missing"], json!(["p12@example.com"]));
    assert_eq!(
        validation["altered"],
        json!([{"key": "p21@example.com", "fields": {"last_name": ["Last21", "Changed"]}}])
    );
    let checksums = validation["checksums"].as_array().unwrap();
    let differ: Vec<&str> = checksums
        .iter()
        .filter(|c| c["source"] != c["target"])
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        differ.contains(&"last_name") && differ.contains(&"first_name"),
        "{differ:?}"
    );
    assert_eq!(
        world.mailchimp_value("p21@example.com", "LNAME").as_deref(),
        Some("Changed")
    );

    // The human summary names both and fails too.
    let config = config(&world);
    let human = tandem(
        &[
            "migrate",
            "--config",
            &config,
            "--from",
            "hubspot",
            "--to",
            "mailchimp",
            "--check",
        ],
        &[],
    )
    .await;
    assert_eq!(human.status.code(), Some(1));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("validation FAILED"), "{text}");
    assert!(
        text.contains("p12@example.com is not in mailchimp"),
        "{text}"
    );
    assert!(
        text.contains("p21@example.com: last_name \"Last21\" expected, \"Changed\" found"),
        "{text}"
    );

    // Migrating again repairs the altered record; the archived one is not
    // re-added behind the back of whoever archived it: still missing, still a failure.
    let (output, report) =
        migrate(&world, &["--from", "hubspot", "--to", "mailchimp", "--yes"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\n{report:#}",
        stderr(&output)
    );
    assert_eq!(report["plan"]["gone"], 1);
    assert_eq!(report["validation"]["missing"], json!(["p12@example.com"]));
    assert_eq!(report["validation"]["altered"], json!([]));
    assert_eq!(
        world.mailchimp_value("p21@example.com", "LNAME").as_deref(),
        Some("Last21")
    );
    assert_eq!(
        world.mailchimp.member("p12@example.com").unwrap().status,
        "archived"
    );
}

#[tokio::test]
async fn an_interrupted_migration_resumes_without_duplicates() {
    let world = world().await;
    // Migrate the other way: HubSpot makes every write but its answers are
    // lost (retries included), so the run ends with its writes still queued.
    world.hubspot.lose_answers(50);
    let (output, report) =
        migrate(&world, &["--from", "mailchimp", "--to", "hubspot", "--yes"]).await;
    world.hubspot.lose_answers(0);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\n{report:#}",
        stderr(&output)
    );
    assert!(
        report["copy"]["queued"].as_u64().is_some_and(|q| q > 0),
        "{}\n{report:#}",
        stderr(&output)
    );
    assert_eq!(report["validation"]["passed"], false);

    let (output, report) =
        migrate(&world, &["--from", "mailchimp", "--to", "hubspot", "--yes"]).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{report:#}",
        stderr(&output)
    );
    assert_eq!(report["copy"]["queued"], 0);
    assert_eq!(report["validation"]["passed"], true);
    let own: Vec<_> = world
        .hubspot
        .contacts()
        .into_iter()
        .filter(|c| {
            c.properties.get("email").cloned().flatten().as_deref() == Some("own@example.org")
        })
        .collect();
    assert_eq!(own.len(), 1, "created once: {own:?}");
    assert_eq!(
        world
            .hubspot_value("p7@example.com", "firstname")
            .as_deref(),
        Some("Old7")
    );
}

#[tokio::test]
async fn a_migration_asks_first_and_names_unknown_connectors() {
    let world = world().await;
    let (output, _) = migrate(&world, &["--from", "hubspot", "--to", "mailchimp"]).await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("20 to create in mailchimp"),
        "the plan is shown: {text}"
    );
    assert!(text.contains("pass --yes"), "{text}");
    assert_eq!(world.mailchimp.members().len(), 11, "nothing copied");

    let (output, _) = migrate(
        &world,
        &["--from", "hubspot", "--to", "salesforce", "--yes"],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("no pair syncs hubspot and salesforce"),
        "{text}"
    );
    assert!(text.contains("hubspot <-> mailchimp"), "{text}");
}
