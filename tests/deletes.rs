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

/// More archives at once than the limit allows (here 10% of 10 links: one)
/// wait for a person: none is made until someone approves them, and the
/// approval is audited. One at a time still flows.
#[tokio::test]
async fn many_archives_at_once_wait_for_a_person_to_approve_them() {
    let emails: Vec<String> = (0..10).map(|i| format!("p{i}@example.com")).collect();
    let mut world = World::new(
        emails
            .iter()
            .map(|e| contact(e, &[("firstname", "P")]))
            .collect(),
        emails
            .iter()
            .map(|e| member(e, &[("FNAME", "P")]))
            .collect(),
    )
    .await;
    world.extend_policy("[on.hubspot]\narchived = \"archive\"\n");
    let engine = world.engine().await;
    world.pass(&engine).await;
    let status = |world: &World, email: &str| world.mailchimp.member(email).unwrap().status;
    let archive = |world: &World, emails: &[String]| {
        emails
            .iter()
            .enumerate()
            .flat_map(|(i, email)| {
                let id = world.hubspot.contact_by_email(email).unwrap().id;
                assert!(world.hubspot.archive(&id));
                hubspot_hint(&format!("{email}-{i}"), &id, HintKind::Deleted)
            })
            .collect::<Vec<_>>()
    };

    let hints = archive(&world, &emails[..1]);
    engine.record_hints("hubspot", hints).await.unwrap();
    let one = world.pass(&engine).await;
    assert_eq!(
        (one.removed, one.held_removals),
        ([0, 1], [0, 0]),
        "{one:?}"
    );
    assert_eq!(status(&world, &emails[0]), "archived");

    let hints = archive(&world, &emails[1..4]);
    engine.record_hints("hubspot", hints).await.unwrap();
    for _ in 0..2 {
        let held = world.pass(&engine).await;
        assert_eq!(
            (held.removed, held.held_removals),
            ([0, 0], [0, 3]),
            "{held:?}"
        );
        assert!(
            held.problems
                .iter()
                .any(|p| p.contains("wait for approval"))
        );
    }
    for email in &emails[1..4] {
        assert_eq!(
            status(&world, email),
            "subscribed",
            "{email} is kept for now"
        );
    }
    let waiting = engine.store().call(|s| s.removals(None)).await.unwrap();
    assert_eq!(waiting.len(), 3);

    let approved = engine
        .store()
        .call(|s| s.approve_removals(Some("hubspot-mailchimp"), "ops", 1))
        .await
        .unwrap();
    assert_eq!(approved, 3);
    let done = world.pass(&engine).await;
    assert_eq!(
        (done.removed, done.held_removals),
        ([0, 3], [0, 0]),
        "{done:?}"
    );
    for email in &emails[1..4] {
        assert_eq!(status(&world, email), "archived");
    }
    let audit = engine
        .store()
        .call(|s| {
            s.find_audit(&tandem::store::AuditFilter {
                action: Some("removals_approved".into()),
                ..Default::default()
            })
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].actor.as_str(), &audit[0].detail["count"]),
        ("ops", &serde_json::json!(3))
    );

    // Cancelled instead: the members stay.
    let hints = archive(&world, &emails[4..7]);
    engine.record_hints("hubspot", hints).await.unwrap();
    world.pass(&engine).await;
    let cancelled = engine
        .store()
        .call(|s| s.cancel_removals(None, "ops", 2))
        .await
        .unwrap();
    assert_eq!(cancelled, 3);
    let after = world.pass(&engine).await;
    assert_eq!(
        (after.removed, after.held_removals),
        ([0, 0], [0, 0]),
        "{after:?}"
    );
    for email in &emails[4..7] {
        assert_eq!(status(&world, email), "subscribed");
    }

    // From the command line: status says they wait, list shows them, approve lets them go.
    let hints = archive(&world, &emails[7..10]);
    engine.record_hints("hubspot", hints).await.unwrap();
    world.pass(&engine).await;
    let config = world.dir.path().join("tandem.toml");
    let config = config.to_str().unwrap();
    let status_out = crate::cli::tandem(&["status", "--config", config], &[]).await;
    let text = String::from_utf8_lossy(&status_out.stdout).into_owned();
    assert!(text.contains("removals waiting 3"), "{text}");
    let listed = crate::cli::tandem(&["removals", "list", "--json", "--config", config], &[]).await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["p7@example.com", "p8@example.com", "p9@example.com"]);
    let approved = crate::cli::tandem(&["removals", "approve", "--config", config], &[]).await;
    assert!(approved.status.success());
    assert!(String::from_utf8_lossy(&approved.stdout).starts_with("3 archive(s)"));
    let done = world.pass(&engine).await;
    assert_eq!(done.removed, [0, 3], "{done:?}");
}

#[tokio::test]
async fn a_write_to_a_contact_archived_unseen_finds_it_archived_instead_of_failing() {
    let world = linked(MARKS).await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    // Archived in HubSpot with no webhook: polling (search) does not show archives.
    assert!(world.hubspot.archive(&ada_id(&world)));
    world.later();
    world.mailchimp.edit(ADA, &[("LNAME", "King")]);
    for _ in 0..4 {
        world.clock.advance(std::time::Duration::from_secs(3600));
        world.pass(&engine).await;
    }
    let counts = engine
        .store()
        .call(|s| s.counts("hubspot-mailchimp"))
        .await
        .unwrap();
    let dead = engine.store().call(|s| s.dead_letters()).await.unwrap();
    assert_eq!(
        (counts.pending_writes, counts.dead_letters),
        (0, 0),
        "{dead:?}"
    );
    assert!(world.hubspot.contacts().is_empty(), "nothing re-created");
    assert_eq!(
        world.mailchimp_value(ADA, "CRMSTATUS").as_deref(),
        Some("archived"),
        "the member is marked once the archive is found"
    );
}
