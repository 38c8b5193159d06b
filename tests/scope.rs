//! Record scope: which records of each side sync. A record outside the scope is
//! neither linked nor created; a linked record that leaves the scope stops
//! syncing fields (its events still leave their marks) and resumes on return.

use crate::support::{World, contact, member};

const SCOPE: &str = r#"
[scope.mailchimp]
only = { status = ["subscribed"] }

[scope.hubspot]
require = ["properties.email"]
except = { "properties.lifecyclestage" = ["Other"] }

[on.mailchimp]
mark = "properties.mailchimp_status"
"#;

#[tokio::test]
async fn records_outside_the_scope_are_neither_linked_nor_created() {
    let mut world = World::new(
        vec![
            contact("ada@example.com", &[("firstname", "Ada")]),
            contact(
                "tim@example.com",
                &[("firstname", "Tim"), ("lifecyclestage", "other")],
            ),
        ],
        vec![
            member("grace@example.com", &[("FNAME", "Grace")]),
            member("alan@example.com", &[("FNAME", "Alan")]),
        ],
    )
    .await;
    world.extend_policy(SCOPE);
    world
        .mailchimp
        .set_status("alan@example.com", "unsubscribed");
    let engine = world.engine().await;
    let report = world.pass(&engine).await;
    assert_eq!(report.created, [1, 1], "{report:?}");
    assert!(world.mailchimp.member("ada@example.com").is_some());
    assert!(
        world
            .hubspot
            .contact_by_email("grace@example.com")
            .is_some()
    );
    assert!(
        world.mailchimp.member("tim@example.com").is_none(),
        "a contact excluded by its lifecycle stage is not created"
    );
    assert!(
        world.hubspot.contact_by_email("alan@example.com").is_none(),
        "an unsubscribed member is outside the scope"
    );
    assert_eq!(report.skipped.get("outofscope"), Some(&2), "{report:?}");

    // Nothing changes on a quiet pass: the skipped records are not retried as new work.
    world.later();
    let quiet = world.pass(&engine).await;
    assert_eq!(quiet.writes(), 0, "{quiet:?}");
}

#[tokio::test]
async fn a_linked_record_leaving_the_scope_stops_syncing_until_it_returns() {
    const ADA: &str = "ada@example.com";
    let mut world = World::new(
        vec![contact(
            ADA,
            &[("firstname", "Ada"), ("lastname", "Lovelace")],
        )],
        vec![member(ADA, &[("FNAME", "Ada"), ("LNAME", "Lovelace")])],
    )
    .await;
    world.extend_policy(SCOPE);
    let engine = world.engine().await;
    world.pass(&engine).await;

    // The member unsubscribes: the mark still reaches HubSpot.
    world.later();
    world.mailchimp.set_status(ADA, "unsubscribed");
    world.pass(&engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "mailchimp_status").as_deref(),
        Some("unsubscribed")
    );

    // Sales renames the contact: the member is out of scope, so nothing is written to it.
    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Augusta")]);
    let report = world.pass(&engine).await;
    assert_eq!(report.updated, [0, 0], "{report:?}");
    assert_eq!(world.mailchimp_value(ADA, "FNAME").as_deref(), Some("Ada"));

    // Back in scope: the edit made meanwhile flows, against the base agreed before.
    world.later();
    world.mailchimp.set_status(ADA, "subscribed");
    let report = world.pass(&engine).await;
    assert_eq!(report.updated, [1, 1], "{report:?}");
    assert_eq!(
        world.mailchimp_value(ADA, "FNAME").as_deref(),
        Some("Augusta")
    );
    assert_eq!(
        world.hubspot_value(ADA, "mailchimp_status").as_deref(),
        Some("active")
    );
}
