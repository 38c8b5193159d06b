//! `tandem policy check | explain | preview` through the binary, over a store a
//! real pass filled: examples run, one record's decisions are shown field by
//! field, and a new policy's effect is reported without writing anything.

use serde_json::Value;

use crate::cli::{stderr, tandem};
use crate::support::{World, contact, member};

const ADA: &str = "ada@example.com";
const GRACE: &str = "grace@example.com";

/// Two linked people whose companies differ (a conflict under the shipped
/// policy), after one pass.
async fn synced() -> World {
    let world = World::new(
        vec![
            contact(ADA, &[("firstname", "Ada"), ("company", "Contoso")]),
            contact(GRACE, &[("firstname", "Grace"), ("company", "Fabrikam")]),
        ],
        vec![
            member(ADA, &[("FNAME", "Ada"), ("COMPANY", "Litware")]),
            member(GRACE, &[("FNAME", "Grace"), ("COMPANY", "Fabrikam")]),
        ],
    )
    .await;
    let engine = world.engine().await;
    let report = world.pass(&engine).await;
    assert_eq!(report.conflicts_opened, 1, "{report:?}");
    world
}

fn config(world: &World) -> String {
    world.dir.path().join("tandem.toml").display().to_string()
}

fn json(output: &std::process::Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn check_runs_the_examples_and_places_a_failing_one() {
    let world = World::new(vec![], vec![]).await;
    let output = tandem(&["policy", "check", "--config", &config(&world)], &[]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(text.contains("6 examples pass"), "{text}");

    let shipped = world.dir.path().join("policies/hubspot-mailchimp.toml");
    let broken = world.dir.path().join("broken.toml");
    let source = std::fs::read_to_string(&shipped)
        .unwrap()
        .replace("source = \"hubspot\"", "source = \"mailchimp\"");
    std::fs::write(&broken, &source).unwrap();
    let header = source
        .lines()
        .position(|l| l.contains("about = \"Sales and the subscriber both fix the phone"))
        .unwrap();
    let output = tandem(
        &[
            "policy",
            "check",
            "--config",
            &config(&world),
            broken.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(&format!(
            "broken.toml:{header}:1: example \"Sales and the subscriber both fix the phone: HubSpot's number wins\": field `phone` (rule source_of_truth): expected both sides end with \"+1 555 0199\", but both sides end with \"+1 555 0142\""
        )),
        "{}",
        stderr(&output)
    );
    assert!(
        !world.config.store_path.exists(),
        "checking writes no state"
    );
}

#[tokio::test]
async fn explain_shows_base_values_rule_and_decision_per_field() {
    let world = synced().await;
    let output = tandem(
        &[
            "policy",
            "explain",
            "--config",
            &config(&world),
            "--json",
            " Ada@Example.com ",
        ],
        &[],
    )
    .await;
    let explained = json(&output);
    assert_eq!(explained["key"], ADA);
    assert_eq!(explained["linked"], true);
    let field = |name: &str| {
        explained["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .cloned()
            .unwrap()
    };
    let company = field("company");
    assert_eq!(company["values"], serde_json::json!(["Contoso", "Litware"]));
    assert_eq!(company["base"], Value::Null);
    assert_eq!(company["rule"], "manual");
    assert_eq!(company["conflict"], true);
    let first = field("first_name");
    assert_eq!(first["base"], serde_json::json!(["Ada", "Ada"]));
    assert_eq!(first["rule"], "newest (tie: hubspot)");
    assert_eq!(first["decision"], "nothing moved since the sides agreed");
    assert_eq!(explained["open_conflicts"], serde_json::json!(["company"]));

    // The table for people names the same decisions.
    let output = tandem(
        &["policy", "explain", "--config", &config(&world), ADA],
        &[],
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("conflict: changed on both sides; the rule is manual"),
        "{text}"
    );

    let output = tandem(
        &[
            "policy",
            "explain",
            "--config",
            &config(&world),
            "nobody@example.com",
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no record with the key"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn preview_reports_what_a_new_policy_changes_and_writes_nothing() {
    let world = synced().await;
    let shipped = world.dir.path().join("policies/hubspot-mailchimp.toml");
    let candidate = world.dir.path().join("candidate.toml");
    let source = std::fs::read_to_string(&shipped).unwrap();
    let source = source
        .replace(
            "rule = \"manual\"",
            "rule = \"source_of_truth\"\nsource = \"mailchimp\"",
        )
        .replace(
            "mailchimp = \"Litware\"\nconflict = true",
            "mailchimp = \"Litware\"\nexpect = \"Litware\"",
        );
    std::fs::write(&candidate, &source).unwrap();
    let store_before = std::fs::read(&world.config.store_path).unwrap();

    let output = tandem(
        &[
            "policy",
            "preview",
            "--config",
            &config(&world),
            "--json",
            candidate.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let preview = json(&output);
    assert_eq!(preview["links"], 2);
    assert_eq!(preview["active"]["conflicts"], 1);
    assert_eq!(preview["active"]["updates"], serde_json::json!([0, 0]));
    assert_eq!(preview["new"]["conflicts"], 0);
    assert_eq!(preview["new"]["conflicts_closed"], 1);
    assert_eq!(preview["new"]["updates"], serde_json::json!([1, 0]));
    assert_eq!(
        preview["new"]["field_writes"]["company"],
        serde_json::json!([1, 0])
    );
    let differences = preview["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0]["key"], ADA);
    assert_eq!(differences[0]["new"], "company → hubspot \"Litware\"");

    assert_eq!(
        std::fs::read(&world.config.store_path).unwrap(),
        store_before,
        "a preview writes nothing"
    );
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Contoso")
    );

    // A file for another pair is refused.
    std::fs::write(
        &candidate,
        source.replace("name = \"hubspot-mailchimp\"", "name = \"other\""),
    )
    .unwrap();
    let output = tandem(
        &[
            "policy",
            "preview",
            "--config",
            &config(&world),
            candidate.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("pair `other`, which the config does not have"),
        "{}",
        stderr(&output)
    );
}
