//! Live reload of policy files: a valid change is activated without a restart
//! and applied to every link; an invalid one is refused, reported, and the
//! active policy keeps running; every version is recorded with who and when.

use std::time::Duration;

use crate::cli::tandem;
use crate::support::{World, contact, member};

const ADA: &str = "ada@example.com";

fn policy_path(world: &World) -> std::path::PathBuf {
    world.dir.path().join("policies/hubspot-mailchimp.toml")
}

fn edit_policy(world: &World, edit: impl FnOnce(String) -> String) {
    let path = policy_path(world);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

/// Let the engine's once-a-second look at the files come round.
async fn after_a_check() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

async fn world_with_a_conflict() -> World {
    World::new(
        vec![contact(
            ADA,
            &[
                ("firstname", "Ada"),
                ("company", "Contoso"),
                ("jobtitle", "Engineer"),
            ],
        )],
        vec![member(ADA, &[("FNAME", "Ada"), ("COMPANY", "Litware")])],
    )
    .await
}

#[tokio::test]
async fn a_valid_change_is_activated_and_applied_to_every_link_without_a_restart() {
    let world = world_with_a_conflict().await;
    let engine = world.engine().await;
    let report = world.pass(&engine).await;
    assert_eq!(report.conflicts_opened, 1, "{report:?}");
    // Mailchimp's watermark moves to its clock one poll later: after this
    // pass, the next one reads nothing, so only the reload decides again.
    world.pass(&engine).await;

    edit_policy(&world, |text| {
        text.replace(
            "rule = \"manual\"",
            "rule = \"source_of_truth\"\nsource = \"mailchimp\"",
        )
        .replace(
            "mailchimp = \"Litware\"\nconflict = true",
            "mailchimp = \"Litware\"\nexpect = \"Litware\"",
        )
    });
    after_a_check().await;
    let report = world.pass(&engine).await;
    assert_eq!(report.redecided, 1, "{report:?}");
    assert_eq!(report.conflicts_closed, 1, "{report:?}");
    assert_eq!(report.updated, [1, 0], "{report:?}");
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Litware")
    );

    let (active, audit) = engine
        .store()
        .call(|s| {
            Ok((
                s.policy_version("hubspot-mailchimp", true)?,
                s.audit_log(100)?,
            ))
        })
        .await
        .unwrap();
    let active = active.unwrap();
    assert!(active.applied_at.is_some());
    assert!(!active.by.is_empty());
    let activations = audit
        .iter()
        .filter(|a| a.action == "policy_activated")
        .count();
    assert_eq!(activations, 2, "the starting version and the reloaded one");

    // Quiet afterwards: applying it once is enough.
    world.later();
    let quiet = world.pass(&engine).await;
    assert_eq!((quiet.redecided, quiet.writes()), (0, 0), "{quiet:?}");
}

#[tokio::test]
async fn an_invalid_change_is_refused_reported_and_the_active_policy_keeps_running() {
    let world = world_with_a_conflict().await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    edit_policy(&world, |text| {
        text.replace("rule = \"manual\"", "rule = \"manul\"")
    });
    after_a_check().await;
    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Augusta")]);
    let report = world.pass(&engine).await;
    assert_eq!(
        report.updated,
        [0, 1],
        "the active policy still syncs: {report:?}"
    );
    assert_eq!(
        world.mailchimp_value(ADA, "FNAME").as_deref(),
        Some("Augusta")
    );

    let config = world.dir.path().join("tandem.toml");
    let output = tandem(&["status", "--config", config.to_str().unwrap()], &[]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("REFUSED policy"), "{text}");
    assert!(text.contains("unknown rule `manul`"), "{text}");

    // Fixed: activated, and status no longer shows a refusal.
    edit_policy(&world, |text| {
        text.replace("rule = \"manul\"", "rule = \"manual\"")
    });
    after_a_check().await;
    world.pass(&engine).await;
    let output = tandem(&["status", "--config", config.to_str().unwrap()], &[]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("REFUSED"), "{text}");
}

#[tokio::test]
async fn a_version_reading_new_fields_reads_every_record_again() {
    let world = world_with_a_conflict().await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    // The job title was never read: the new field needs HubSpot's records again.
    edit_policy(&world, |text| {
        text.replace(
            "# What an event on one side does on the other.",
            "[fields.job]\nleft = \"properties.jobtitle\"\nright = \"merge_fields.CRMSTATUS\"\nrule = \"newest\"\n\n# What an event on one side does on the other.",
        )
    });
    after_a_check().await;
    world.later();
    let report = world.pass(&engine).await;
    assert_eq!(
        report.pulled[0], 1,
        "HubSpot is read again in full: {report:?}"
    );
    assert_eq!(
        world.mailchimp_value(ADA, "CRMSTATUS").as_deref(),
        Some("Engineer")
    );
}
