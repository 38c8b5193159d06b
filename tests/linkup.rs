//! The first link-up of two populated accounts: `tandem sync` shows what the
//! first pass would do and waits for a confirmation; `--yes` gives it; the
//! confirmation is remembered, so a first link-up cut short resumes without
//! asking again, and accounts with nothing in them need none.

use tandem::store::Store;

use crate::cli::{stderr, tandem};
use crate::support::{World, contact, member};

async fn populated() -> World {
    World::new(
        vec![
            contact(
                "ada@example.com",
                &[("firstname", "Ada"), ("lastname", "Lovelace")],
            ),
            contact("grace@example.com", &[("firstname", "Grace")]),
        ],
        vec![
            member("ada@example.com", &[("FNAME", "Ada"), ("LNAME", "King")]),
            member("alan@example.org", &[("FNAME", "Alan")]),
        ],
    )
    .await
}

fn config(world: &World) -> String {
    world.dir.path().join("tandem.toml").display().to_string()
}

#[tokio::test]
async fn a_first_link_up_shows_a_preview_and_waits_for_a_confirmation() {
    let world = populated().await;
    let config = config(&world);

    let output = tandem(&["sync", "--once", "--config", &config], &[]).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("First link-up of hubspot-mailchimp (hubspot <-> mailchimp)"),
        "{text}"
    );
    assert!(text.contains("matched by email   1"), "{text}");
    assert!(
        text.contains("to create          1 in hubspot, 1 in mailchimp"),
        "{text}"
    );
    assert!(
        text.contains("merge_fields.LNAME") || text.contains("properties.lastname"),
        "the differing last name is shown: {text}"
    );
    assert!(text.contains("run again with --yes"), "{text}");
    assert_eq!(world.hubspot.stats().writes, 0, "nothing written");
    assert_eq!(world.mailchimp.members().len(), 2, "nothing written");
    assert!(!world.config.store_path.exists(), "no state store yet");

    let output = tandem(&["sync", "--once", "--yes", "--config", &config], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        world
            .hubspot_value("alan@example.org", "firstname")
            .as_deref(),
        Some("Alan")
    );
    let store = Store::open(&world.config.store_path).unwrap();
    let confirmed = store
        .audit_log(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "link_up_confirmed")
        .count();
    assert_eq!(confirmed, 1);

    // Linked now: later runs do not ask.
    let output = tandem(&["sync", "--once", "--config", &config], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains("First link-up"));
}

#[tokio::test]
async fn a_confirmed_link_up_cut_short_resumes_without_asking() {
    let world = populated().await;
    let config = config(&world);
    // Confirmed, then the process dies before the first record is staged.
    let output = tandem(
        &["sync", "--once", "--yes", "--config", &config],
        &[("TANDEM_CRASH_AT", "pull-before-stage")],
    )
    .await;
    assert_ne!(output.status.code(), Some(0), "the crash point stops it");

    let output = tandem(&["sync", "--once", "--config", &config], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains("First link-up"));
    assert_eq!(
        world
            .mailchimp_value("grace@example.com", "FNAME")
            .as_deref(),
        Some("Grace")
    );
}

#[tokio::test]
async fn empty_accounts_need_no_confirmation() {
    let world = World::new(vec![], vec![]).await;
    let output = tandem(&["sync", "--once", "--config", &config(&world)], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
