//! Deletes and consent: an archive, an unsubscribe and a bounce are distinct
//! events the policy acts on. By default nothing is deleted and a mark is kept
//! instead; permanent deletion happens only when the policy asks; a link whose
//! record is gone stops syncing until it is restored; nothing is inferred from a
//! record that cannot be found; and a CRM write never undoes an unsubscribe.

use tandem_core::{Hint, HintKind, RecordRef};

use crate::support::{World, contact, member};

const ADA: &str = "ada@example.com";

async fn linked(policy: &str) -> World {
    let mut world = World::new(
        vec![contact(
            ADA,
            &[("firstname", "Ada"), ("lastname", "Lovelace")],
        )],
        vec![member(ADA, &[("FNAME", "Ada"), ("LNAME", "Lovelace")])],
    )
    .await;
    world.extend_policy(policy);
    world
}

fn ada_id(world: &World) -> String {
    world.hubspot.contact_by_email(ADA).unwrap().id
}

/// What a HubSpot webhook would say about a contact.
fn hubspot_hint(event: &str, id: &str, kind: HintKind) -> Vec<Hint> {
    vec![Hint {
        event_id: event.into(),
        record: RecordRef::Id(id.into()),
        kind,
        occurred_at: 1,
    }]
}

const MARKS: &str = r#"
[on.hubspot]
mark = "merge_fields.CRMSTATUS"

[on.mailchimp]
mark = "properties.mailchimp_status"
"#;

#[tokio::test]
async fn a_hubspot_archive_marks_the_member_deletes_nothing_and_a_restore_resumes() {
    let world = linked(MARKS).await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    let id = ada_id(&world);

    assert!(world.hubspot.archive(&id));
    engine
        .record_hints("hubspot", hubspot_hint("1", &id, HintKind::Deleted))
        .await
        .unwrap();
    let report = world.pass(&engine).await;
    assert_eq!(report.removed, [0, 0], "{report:?}");
    let member = world.mailchimp.member(ADA).expect("the member is kept");
    assert_eq!(member.status, "subscribed");
    assert_eq!(
        world.mailchimp_value(ADA, "CRMSTATUS").as_deref(),
        Some("archived")
    );

    // While the contact is archived, the member's edits go nowhere and nothing is re-created.
    world.later();
    world.mailchimp.edit(ADA, &[("LNAME", "King")]);
    let report = world.pass(&engine).await;
    assert_eq!(
        (report.writes(), report.skipped.get("gone")),
        (0, Some(&1)),
        "{report:?}"
    );
    assert!(
        world.hubspot.contacts().is_empty(),
        "no contact was re-created"
    );

    // Restored in HubSpot: the link syncs again, and the mark says so.
    world.later();
    assert!(world.hubspot.restore(&id));
    engine
        .record_hints("hubspot", hubspot_hint("2", &id, HintKind::Restored))
        .await
        .unwrap();
    let report = world.pass(&engine).await;
    assert_eq!(report.updated, [1, 1], "{report:?}");
    assert_eq!(
        world.hubspot_value(ADA, "lastname").as_deref(),
        Some("King")
    );
    assert_eq!(
        world.mailchimp_value(ADA, "CRMSTATUS").as_deref(),
        Some("active")
    );
}

#[tokio::test]
async fn archiving_or_deleting_the_other_record_happens_only_when_the_policy_says_so() {
    for (action, expected) in [("archive", Some("archived")), ("delete-permanent", None)] {
        let world = linked(&format!("[on.hubspot]\narchived = \"{action}\"\n")).await;
        let engine = world.engine().await;
        world.pass(&engine).await;
        let id = ada_id(&world);
        world.hubspot.archive(&id);
        engine
            .record_hints("hubspot", hubspot_hint("1", &id, HintKind::Deleted))
            .await
            .unwrap();
        let report = world.pass(&engine).await;
        assert_eq!(report.removed, [0, 1], "{action}: {report:?}");
        assert_eq!(
            world.mailchimp.member(ADA).map(|m| m.status).as_deref(),
            expected,
            "{action}"
        );
        // Both records are gone now: later passes leave them alone.
        assert_eq!(world.pass(&engine).await.writes(), 0);
    }
}

#[tokio::test]
async fn a_mailchimp_archive_found_by_polling_marks_the_contact() {
    let world = linked(MARKS).await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    world.later();
    world.mailchimp.set_status(ADA, "archived");
    let report = world.pass(&engine).await;
    assert_eq!(report.removed, [0, 0], "{report:?}");
    assert_eq!(
        world.hubspot_value(ADA, "mailchimp_status").as_deref(),
        Some("archived")
    );
    assert_eq!(world.hubspot.contacts().len(), 1, "the contact is kept");
    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Augusta")]);
    assert_eq!(
        world.pass(&engine).await.writes(),
        0,
        "the member is gone: nothing flows to it"
    );
    assert_eq!(
        world.mailchimp.member(ADA).unwrap().status,
        "archived",
        "and it is not re-added"
    );
}

#[tokio::test]
async fn an_unsubscribe_is_marked_and_never_undone_by_a_crm_write() {
    let world = linked(MARKS).await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    world.later();
    world.mailchimp.set_status(ADA, "unsubscribed");
    world.pass(&engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "mailchimp_status").as_deref(),
        Some("unsubscribed")
    );

    // Sales edits the contact: the change reaches the member, who stays unsubscribed.
    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Augusta")]);
    let report = world.pass(&engine).await;
    assert_eq!(report.updated, [0, 1], "{report:?}");
    let member = world.mailchimp.member(ADA).unwrap();
    assert_eq!(
        (
            member.status.as_str(),
            member.merge_fields["FNAME"].as_str()
        ),
        ("unsubscribed", Some("Augusta"))
    );

    world.later();
    world.mailchimp.set_status(ADA, "cleaned");
    world.pass(&engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "mailchimp_status").as_deref(),
        Some("cleaned")
    );
    world.later();
    world.mailchimp.set_status(ADA, "subscribed");
    world.pass(&engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "mailchimp_status").as_deref(),
        Some("active")
    );
}

#[tokio::test]
async fn a_member_unsubscribed_before_linking_is_created_in_hubspot_with_its_mark() {
    let mut world = World::new(
        vec![],
        vec![member("grace@example.com", &[("FNAME", "Grace")])],
    )
    .await;
    world.extend_policy(MARKS);
    world
        .mailchimp
        .set_status("grace@example.com", "unsubscribed");
    let engine = world.engine().await;
    let report = world.pass(&engine).await;
    assert_eq!(report.created, [1, 0], "{report:?}");
    assert_eq!(
        world
            .hubspot_value("grace@example.com", "mailchimp_status")
            .as_deref(),
        Some("unsubscribed")
    );
}

#[tokio::test]
async fn a_contact_merged_away_is_gone_but_a_record_that_cannot_be_found_is_not() {
    let world = linked(MARKS).await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    let id = ada_id(&world);

    // A deletion event about a contact that is still live, and a change event about
    // one that does not exist: neither deletes anything.
    engine
        .record_hints("hubspot", hubspot_hint("1", &id, HintKind::Deleted))
        .await
        .unwrap();
    engine
        .record_hints("hubspot", hubspot_hint("2", "424242", HintKind::Changed))
        .await
        .unwrap();
    let report = world.pass(&engine).await;
    assert_eq!(
        (report.writes(), report.skipped.get("gone")),
        (0, None),
        "{report:?}"
    );
    assert_eq!(world.mailchimp_value(ADA, "CRMSTATUS"), None);

    // Merged into another contact: Ada's contact is gone.
    world.hubspot.archive(&id);
    let merged = hubspot_hint("3:x", &id, HintKind::Merged { into: "999".into() });
    engine.record_hints("hubspot", merged).await.unwrap();
    world.pass(&engine).await;
    assert_eq!(
        world.mailchimp_value(ADA, "CRMSTATUS").as_deref(),
        Some("archived")
    );
}
