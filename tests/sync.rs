//! The vertical slice's acceptance: records created and edited on either side
//! reach the other, concurrent edits follow their rules, our own writes do not
//! come back, cursors survive a restart, and a rejected record fails alone.

use std::time::Duration;

use serde_json::json;
use tandem::side::Side;

use crate::support::{World, contact, member};

const ADA: &str = "ada@example.com";

async fn linked_world() -> World {
    World::new(
        vec![contact(
            ADA,
            &[
                ("firstname", "Ada"),
                ("lastname", "Lovelace"),
                ("phone", "+1 555 0100"),
                ("company", "Analytical"),
            ],
        )],
        vec![member(
            ADA,
            &[
                ("FNAME", "Ada"),
                ("LNAME", "Lovelace"),
                ("PHONE", "+1 555 0100"),
                ("COMPANY", "Analytical"),
            ],
        )],
    )
    .await
}

#[tokio::test]
async fn a_contact_created_on_either_side_appears_on_the_other() {
    let world = World::new(vec![], vec![]).await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    world.create_in_hubspot(json!({"email": "grace@example.com", "firstname": "Grace", "lastname": "Hopper", "phone": "+1 555 0101"})).await;
    world
        .create_in_mailchimp(
            "alan@example.org",
            json!({"FNAME": "Alan", "LNAME": "Turing", "COMPANY": "Bletchley"}),
        )
        .await;
    let report = world.pass(&engine).await;

    assert_eq!(report.created, [1, 1], "{report:?}");
    assert_eq!(
        world
            .mailchimp_value("grace@example.com", "FNAME")
            .as_deref(),
        Some("Grace")
    );
    assert_eq!(
        world
            .mailchimp_value("grace@example.com", "PHONE")
            .as_deref(),
        Some("+1 555 0101")
    );
    assert_eq!(
        world.mailchimp.member("grace@example.com").unwrap().status,
        "subscribed"
    );
    assert_eq!(
        world
            .hubspot_value("alan@example.org", "firstname")
            .as_deref(),
        Some("Alan")
    );
    assert_eq!(
        world
            .hubspot_value("alan@example.org", "company")
            .as_deref(),
        Some("Bletchley")
    );
}

#[tokio::test]
async fn an_update_on_either_side_reaches_the_other() {
    let world = linked_world().await;
    let engine = world.engine().await;
    let first = world.pass(&engine).await;
    assert_eq!((first.linked, first.writes()), (1, 0), "{first:?}");

    world.later();
    world.hubspot.edit(ADA, &[("phone", "+44 20 7946 0000")]);
    world.mailchimp.edit(ADA, &[("LNAME", "King")]);
    let report = world.pass(&engine).await;

    assert_eq!(report.updated, [1, 1], "{report:?}");
    assert_eq!(
        world.mailchimp_value(ADA, "PHONE").as_deref(),
        Some("+44 20 7946 0000")
    );
    assert_eq!(
        world.hubspot_value(ADA, "lastname").as_deref(),
        Some("King")
    );
}

#[tokio::test]
async fn newest_takes_the_later_edit() {
    let world = linked_world().await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Augusta")]);
    world.later();
    world.mailchimp.edit(ADA, &[("FNAME", "Countess")]);
    world.pass(&engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "firstname").as_deref(),
        Some("Countess")
    );
    assert_eq!(
        world.mailchimp_value(ADA, "FNAME").as_deref(),
        Some("Countess")
    );

    // And the other way round: HubSpot later.
    world.later();
    world.mailchimp.edit(ADA, &[("FNAME", "Ada")]);
    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Augusta Ada")]);
    world.pass(&engine).await;
    assert_eq!(
        world.mailchimp_value(ADA, "FNAME").as_deref(),
        Some("Augusta Ada")
    );
    assert_eq!(
        world.hubspot_value(ADA, "firstname").as_deref(),
        Some("Augusta Ada")
    );
}

#[tokio::test]
async fn newest_weighs_when_the_field_itself_changed_not_the_record() {
    let world = linked_world().await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    world.hubspot.record_requests();

    // HubSpot renames her first, Mailchimp second; then HubSpot's last name
    // changes, which makes HubSpot's record the newer one.
    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Augusta")]);
    world.later();
    world.mailchimp.edit(ADA, &[("FNAME", "Countess")]);
    world.later();
    world.hubspot.edit(ADA, &[("lastname", "King")]);
    let report = world.pass(&engine).await;

    assert_eq!(report.conflicts_opened, 0, "{report:?}");
    for (side, value) in [
        ("hubspot", world.hubspot_value(ADA, "firstname")),
        ("mailchimp", world.mailchimp_value(ADA, "FNAME")),
    ] {
        assert_eq!(
            value.as_deref(),
            Some("Countess"),
            "{side}: the later first name"
        );
    }
    assert_eq!(world.mailchimp_value(ADA, "LNAME").as_deref(), Some("King"));
    let dated: Vec<_> = world
        .hubspot
        .requests()
        .into_iter()
        .filter(|r| r.path == "/crm/v3/objects/contacts/batch/read")
        .collect();
    assert_eq!(dated.len(), 1, "one read by id for the history: {dated:?}");
    let asked = dated[0].body["propertiesWithHistory"].to_string();
    assert!(
        asked.contains("firstname") && asked.contains("lastname"),
        "{asked}"
    );
}

#[tokio::test]
async fn source_of_truth_takes_the_named_side_even_when_the_other_is_newer() {
    let world = linked_world().await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    world.later();
    world.hubspot.edit(ADA, &[("phone", "+1 555 0199")]);
    world.later();
    world.mailchimp.edit(ADA, &[("PHONE", "+1 555 0142")]);
    world.pass(&engine).await;

    assert_eq!(
        world.hubspot_value(ADA, "phone").as_deref(),
        Some("+1 555 0199")
    );
    assert_eq!(
        world.mailchimp_value(ADA, "PHONE").as_deref(),
        Some("+1 555 0199")
    );
}

#[tokio::test]
async fn manual_leaves_both_sides_and_opens_one_conflict_while_other_fields_sync() {
    let world = linked_world().await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    world.later();
    world
        .hubspot
        .edit(ADA, &[("company", "Babbage & Co"), ("lastname", "King")]);
    world
        .mailchimp
        .edit(ADA, &[("COMPANY", "Analytical Engines Ltd")]);
    let report = world.pass(&engine).await;

    assert_eq!(report.conflicts_opened, 1, "{report:?}");
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Babbage & Co")
    );
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Analytical Engines Ltd")
    );
    assert_eq!(
        world.mailchimp_value(ADA, "LNAME").as_deref(),
        Some("King"),
        "the record's other fields still sync"
    );

    // More passes and more edits of the same field keep exactly one open conflict.
    world.later();
    world
        .mailchimp
        .edit(ADA, &[("COMPANY", "Analytical Engines plc")]);
    let again = world.pass(&engine).await;
    assert_eq!(
        (again.conflicts_opened, again.open_conflicts),
        (0, 1),
        "{again:?}"
    );
    let conflicts = engine.store().call(|s| s.conflicts(false)).await.unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, "company");
    assert_eq!(conflicts[0].right, json!("Analytical Engines plc"));
    assert_eq!(
        conflicts[0].base,
        Some((json!("Analytical"), json!("Analytical")))
    );

    // When someone makes both sides agree, the conflict closes by itself.
    world.later();
    world
        .hubspot
        .edit(ADA, &[("company", "Analytical Engines plc")]);
    let settled = world.pass(&engine).await;
    assert_eq!(
        (settled.conflicts_closed, settled.open_conflicts),
        (1, 0),
        "{settled:?}"
    );
}

#[tokio::test]
async fn a_pass_right_after_a_sync_writes_nothing() {
    let (hubspot, mailchimp) = tandem::fixtures::generate(tandem::fixtures::Profile::DEMO, 3);
    let world = World::new(hubspot.contacts, mailchimp.members).await;
    let engine = world.engine().await;
    let first = world.pass(&engine).await;
    assert!(
        first.writes() > 300,
        "the demo data needs many writes: {first:?}"
    );

    let writes_before = (world.hubspot.stats().writes, world.mailchimp.stats().writes);
    let second = world.pass(&engine).await;
    assert!(
        second.pulled.iter().sum::<usize>() > 0,
        "our writes are read back: {second:?}"
    );
    assert_eq!(second.writes(), 0, "{second:?}");
    assert_eq!(second.conflicts_opened, 0);
    assert_eq!(
        (world.hubspot.stats().writes, world.mailchimp.stats().writes),
        writes_before
    );
    let third = world.pass(&engine).await;
    assert_eq!(third.writes(), 0, "{third:?}");
}

#[tokio::test]
async fn a_restarted_engine_resumes_from_its_cursors() {
    let (hubspot, mailchimp) = tandem::fixtures::generate(tandem::fixtures::Profile::DEMO, 4);
    let world = World::new(hubspot.contacts, mailchimp.members).await;
    {
        let engine = world.engine().await;
        let first = world.pass(&engine).await;
        assert!(first.pulled[0] > 800 && first.pulled[1] > 800, "{first:?}");
        world.pass(&engine).await;
        // Mailchimp's times have whole seconds, so a poll reaches one second back,
        // and its watermark reaches the server's clock one poll later: two idle
        // passes a little later move the watermarks past the first pass's writes.
        world.later();
        world.pass(&engine).await;
        world.pass(&engine).await;
    }
    let restarted = world.engine().await;
    let report = world.pass(&restarted).await;
    assert!(
        report.pulled[0] + report.pulled[1] <= 4,
        "a restart re-read {:?} records",
        report.pulled
    );

    world.later();
    world
        .hubspot
        .edit("ada.lovelace.0@example.com", &[("firstname", "Augusta")]);
    let report = world.pass(&restarted).await;
    assert_eq!(report.updated, [0, 1], "{report:?}");
}

#[tokio::test]
async fn a_record_the_api_rejects_fails_alone_and_is_retried_later() {
    let world = World::new(
        vec![
            contact("bounce@example.com", &[("firstname", "Bounce")]),
            contact("grace@example.com", &[("firstname", "Grace")]),
            contact("alan@example.com", &[("firstname", "Alan")]),
        ],
        vec![],
    )
    .await;
    world.mailchimp.reject_emails(&["bounce@example.com"]);
    let engine = world.engine().await;

    let first = world.pass(&engine).await;
    assert_eq!(
        (first.created[Side::Right as usize], first.rejected),
        (2, 1),
        "{first:?}"
    );
    assert!(
        first
            .problems
            .iter()
            .any(|p| p.contains("bounce@example.com") && p.contains("looks fake")),
        "{:?}",
        first.problems
    );
    assert!(world.mailchimp.member("grace@example.com").is_some());
    assert!(world.mailchimp.member("bounce@example.com").is_none());

    // Not due yet: the next pass leaves it alone.
    let soon = world.pass(&engine).await;
    assert_eq!((soon.rejected, soon.pending), (0, 1), "{soon:?}");

    // Due again: retried, and still refused.
    world.clock.advance(Duration::from_secs(31));
    let retry = world.pass(&engine).await;
    assert_eq!(retry.rejected, 1, "{retry:?}");

    // Once the cause is gone, the next retry goes through.
    world.mailchimp.reject_emails(&[]);
    world.clock.advance(Duration::from_secs(61));
    let fixed = world.pass(&engine).await;
    assert_eq!(
        (
            fixed.created[Side::Right as usize],
            fixed.rejected,
            fixed.pending
        ),
        (1, 0, 0),
        "{fixed:?}"
    );
    assert_eq!(
        world
            .mailchimp_value("bounce@example.com", "FNAME")
            .as_deref(),
        Some("Bounce")
    );
}

#[tokio::test]
async fn a_write_rejected_too_often_becomes_a_dead_letter() {
    let world = World::new(
        vec![contact("bounce@example.com", &[("firstname", "Bounce")])],
        vec![],
    )
    .await;
    world.mailchimp.reject_emails(&["bounce@example.com"]);
    let engine = world.engine().await;
    let attempts = world.config.engine.max_attempts;
    let mut dead = 0;
    for _ in 0..attempts {
        dead += world.pass(&engine).await.dead_lettered;
        world.clock.advance(Duration::from_secs(3600));
    }
    assert_eq!(dead, 1);
    let letters = engine.store().call(|s| s.dead_letters()).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].key.as_str(), letters[0].attempts),
        ("bounce@example.com", attempts)
    );
    // A dead letter is not retried on its own.
    world.clock.advance(Duration::from_secs(3600));
    world.mailchimp.reject_emails(&[]);
    assert_eq!(world.pass(&engine).await.writes(), 0);

    // A person retries it once the cause is fixed: it is sent, and audited.
    let id = letters[0].id;
    let retried = engine
        .store()
        .call(move |s| s.retry_dead_letter(id, "ops", 5))
        .await
        .unwrap();
    assert!(retried);
    let report = world.pass(&engine).await;
    assert_eq!(report.created, [0, 1], "{report:?}");
    assert_eq!(
        world
            .mailchimp_value("bounce@example.com", "FNAME")
            .as_deref(),
        Some("Bounce")
    );
    let audit = engine.store().call(|s| s.audit_log(100)).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "dead_letter_retried" && e.actor == "ops"),
        "{audit:?}"
    );
    let again = engine
        .store()
        .call(move |s| s.retry_dead_letter(id, "ops", 6))
        .await
        .unwrap();
    assert!(!again, "no dead letter with that id any more");
}

#[tokio::test]
async fn a_discarded_dead_letter_is_not_sent() {
    let world = World::new(
        vec![contact("bounce@example.com", &[("firstname", "Bounce")])],
        vec![],
    )
    .await;
    world.mailchimp.reject_emails(&["bounce@example.com"]);
    let engine = world.engine().await;
    for _ in 0..world.config.engine.max_attempts {
        world.pass(&engine).await;
        world.clock.advance(Duration::from_secs(3600));
    }
    let letters = engine.store().call(|s| s.dead_letters()).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].op, "create");
    assert_eq!(letters[0].payload["email_address"], "bounce@example.com");
    let id = letters[0].id;
    let discarded = engine
        .store()
        .call(move |s| s.discard_dead_letter(id, "ops", 5))
        .await
        .unwrap();
    assert!(discarded);
    world.mailchimp.reject_emails(&[]);
    world.clock.advance(Duration::from_secs(3600));
    let report = world.pass(&engine).await;
    assert_eq!(report.writes(), 0, "{report:?}");
    assert!(world.mailchimp.member("bounce@example.com").is_none());
    let counts = engine
        .store()
        .call(|s| s.counts("hubspot-mailchimp"))
        .await
        .unwrap();
    assert_eq!((counts.dead_letters, counts.pending_writes), (0, 0));
}

/// An update that reached HubSpot though its answer was lost (or the engine
/// died before recording it) leaves its value there. When Mailchimp then
/// changes the field again, that value is the echo of tandem's own write, not
/// a HubSpot edit: the new Mailchimp value flows, and no conflict opens.
#[tokio::test]
async fn the_echo_of_an_unconfirmed_write_is_not_taken_for_an_edit() {
    let world = World::new(
        vec![contact(ADA, &[("company", "Analytical")])],
        vec![member(ADA, &[("COMPANY", "Analytical")])],
    )
    .await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    world.later();
    world.mailchimp.edit(ADA, &[("COMPANY", "Babbage & Co")]);
    world.hubspot.lose_answers(100);
    let lost = world.pass(&engine).await;
    assert_eq!((lost.updated, lost.deferred), ([0, 0], 1), "{lost:?}");
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Babbage & Co"),
        "the write landed"
    );
    world.hubspot.lose_answers(0);

    // Company is `manual`: had HubSpot's value counted as an edit, this would be a conflict.
    world.later();
    world
        .mailchimp
        .edit(ADA, &[("COMPANY", "Analytical Engines")]);
    world.clock.advance(Duration::from_secs(3600));
    let next = world.pass(&engine).await;
    assert_eq!(
        (next.conflicts_opened, next.updated),
        (0, [1, 0]),
        "{next:?}"
    );
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Analytical Engines")
    );
    let quiet = world.pass(&engine).await;
    assert_eq!((quiet.writes(), quiet.pending), (0, 0), "{quiet:?}");

    // The same when nothing changes again: the echo becomes the base, nothing is written.
    world.later();
    world.mailchimp.edit(ADA, &[("COMPANY", "Engines Ltd")]);
    world.hubspot.lose_answers(100);
    world.pass(&engine).await;
    world.hubspot.lose_answers(0);
    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Ada")]);
    world.clock.advance(Duration::from_secs(3600));
    let settled = world.pass(&engine).await;
    assert_eq!(settled.conflicts_opened, 0, "{settled:?}");
    let counts = engine
        .store()
        .call(|s| s.counts("hubspot-mailchimp"))
        .await
        .unwrap();
    assert_eq!((counts.open_conflicts, counts.pending_writes), (0, 0));
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Engines Ltd")
    );
}

/// A write may land and go unconfirmed, then be replaced in the outbox by a
/// newer decision that does not land. The side then holds the first write's
/// value: still tandem's echo, not an edit, so no conflict opens and the newer
/// value is written.
#[tokio::test]
async fn the_echo_of_a_replaced_write_is_still_not_an_edit() {
    let world = World::new(
        vec![contact(ADA, &[("company", "Analytical")])],
        vec![member(ADA, &[("COMPANY", "Analytical")])],
    )
    .await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    let ada = world.hubspot.contact_by_email(ADA).unwrap().id;

    // HubSpot's edit reaches Mailchimp, but the answer is lost.
    world.later();
    world.hubspot.edit(ADA, &[("company", "Babbage")]);
    world.mailchimp.lose_answers(100);
    let lost = world.pass(&engine).await;
    assert_eq!(lost.deferred, 1, "{lost:?}");
    world.mailchimp.lose_answers(0);
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Babbage")
    );

    // HubSpot changes again; only HubSpot's record is read (a webhook), and the
    // newer write replaces the first one in the outbox but is refused.
    world.later();
    world.hubspot.edit(ADA, &[("company", "Babbage & Co")]);
    engine
        .record_hints(
            "hubspot",
            vec![tandem_core::Hint {
                event_id: "e1".into(),
                record: tandem_core::RecordRef::Id(ada),
                kind: tandem_core::HintKind::Changed,
                occurred_at: 1,
            }],
        )
        .await
        .unwrap();
    world.mailchimp.refuse_writes(100);
    world.clock.advance(Duration::from_secs(3600));
    engine
        .hint_pass(&tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    world.mailchimp.refuse_writes(0);
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Babbage")
    );

    // Mailchimp is read again holding the first write's value: no conflict.
    world.clock.advance(Duration::from_secs(3600));
    let next = world.pass(&engine).await;
    assert_eq!(next.conflicts_opened, 0, "{next:?}");
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Babbage & Co")
    );
    let quiet = world.pass(&engine).await;
    assert_eq!(
        (quiet.writes(), quiet.pending, quiet.open_conflicts),
        (0, 0, 0),
        "{quiet:?}"
    );
}

/// A merge is written to both sides. When one side confirms and the other
/// refuses for a while, the side still holding its own text has not changed
/// it: the merge must still reach it, and must not be undone, even when that
/// record is read again for another edit in between.
#[tokio::test]
async fn a_merge_half_written_is_finished_not_undone() {
    let notes = "Call Tuesday about renewal";
    let world = World::new(
        vec![contact(ADA, &[("company", notes)])],
        vec![member(ADA, &[("COMPANY", notes)])],
    )
    .await;
    let policy = world.dir.path().join("policies/hubspot-mailchimp.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let merged_rule = text.replacen("rule = \"manual\"", "rule = \"text-merge\"", 1);
    std::fs::write(&policy, merged_rule).unwrap();
    let engine = world.engine().await;
    world.pass(&engine).await;

    world.later();
    world
        .hubspot
        .edit(ADA, &[("company", "Call Wednesday about renewal")]);
    world
        .mailchimp
        .edit(ADA, &[("COMPANY", "Call Tuesday about renewal and upsell")]);
    world.mailchimp.refuse_writes(100);
    let half = world.pass(&engine).await;
    assert_eq!((half.updated, half.deferred), ([1, 0], 1), "{half:?}");
    let merged = "Call Wednesday about renewal and upsell";
    assert_eq!(world.hubspot_value(ADA, "company").as_deref(), Some(merged));

    // The subscriber changes their name: Mailchimp's record is read again.
    world.later();
    world.mailchimp.edit(ADA, &[("FNAME", "Ada")]);
    world.mailchimp.refuse_writes(0);
    world.clock.advance(Duration::from_secs(3600));
    world.pass(&engine).await;
    world.clock.advance(Duration::from_secs(3600));
    world.pass(&engine).await;
    assert_eq!(world.hubspot_value(ADA, "company").as_deref(), Some(merged));
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some(merged)
    );
    let quiet = world.pass(&engine).await;
    assert_eq!((quiet.writes(), quiet.pending), (0, 0), "{quiet:?}");
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_not_made_twice() {
    let world = World::new(
        vec![contact("grace@example.com", &[("firstname", "Grace")])],
        vec![member("alan@example.com", &[("FNAME", "Alan")])],
    )
    .await;
    // Every attempt of the first pass is applied but its answer lost.
    world.hubspot.lose_answers(100);
    world.mailchimp.lose_answers(100);
    let engine = world.engine().await;
    let first = world.pass(&engine).await;
    assert_eq!((first.created, first.deferred), ([0, 0], 2), "{first:?}");
    assert_eq!(
        world.hubspot.contacts().len(),
        2,
        "retries of an upsert make no duplicate"
    );
    assert_eq!(world.mailchimp.members().len(), 2);

    world.hubspot.lose_answers(0);
    world.mailchimp.lose_answers(0);
    world.clock.advance(Duration::from_secs(3600));
    let writes = (world.hubspot.stats().writes, world.mailchimp.stats().writes);
    let second = world.pass(&engine).await;
    // The records made by the lost writes are found and bound to their links: no new write.
    assert_eq!(
        (second.writes(), second.pending, second.linked),
        (0, 0, 0),
        "{second:?}"
    );
    assert_eq!(
        (world.hubspot.stats().writes, world.mailchimp.stats().writes),
        writes
    );
    assert_eq!(world.hubspot.contacts().len(), 2);

    // The links hold both ids: an edit flows as an update, not as another create.
    world.later();
    world
        .hubspot
        .edit("grace@example.com", &[("firstname", "Grace B.")]);
    world
        .hubspot
        .edit("alan@example.com", &[("firstname", "Alan M.")]);
    let third = world.pass(&engine).await;
    assert_eq!(
        (third.updated, third.created),
        ([0, 2], [0, 0]),
        "{third:?}"
    );
    assert_eq!(
        world
            .mailchimp_value("grace@example.com", "FNAME")
            .as_deref(),
        Some("Grace B.")
    );
}

#[tokio::test]
async fn an_email_change_on_either_side_keeps_the_link_and_reaches_the_other() {
    let world = linked_world().await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    let member_id = world.mailchimp.member(ADA).unwrap().extra["contact_id"].clone();

    // HubSpot changes the address: Mailchimp's member is renamed, not duplicated.
    world.later();
    world
        .hubspot
        .edit(ADA, &[("email", "ada.king@example.com")]);
    let report = world.pass(&engine).await;
    assert_eq!(
        (report.updated, report.created),
        ([0, 1], [0, 0]),
        "{report:?}"
    );
    assert!(world.mailchimp.member(ADA).is_none());
    let renamed = world
        .mailchimp
        .member("ada.king@example.com")
        .expect("renamed member");
    assert_eq!(
        renamed.extra["contact_id"], member_id,
        "the same member, renamed"
    );
    assert_eq!(world.mailchimp.members().len(), 1);

    // Mailchimp changes it back (the member edits their profile): HubSpot follows.
    world.later();
    world
        .rename_in_mailchimp("ada.king@example.com", "countess@example.org")
        .await;
    let report = world.pass(&engine).await;
    assert_eq!(
        (report.updated, report.created),
        ([1, 0], [0, 0]),
        "{report:?}"
    );
    assert_eq!(world.hubspot.contacts().len(), 1);
    assert_eq!(
        world
            .hubspot_value("countess@example.org", "firstname")
            .as_deref(),
        Some("Ada")
    );

    // The link followed: later edits flow under the new address, and the old one is free.
    world.later();
    world
        .hubspot
        .edit("countess@example.org", &[("lastname", "Byron")]);
    world.pass(&engine).await;
    assert_eq!(
        world
            .mailchimp_value("countess@example.org", "LNAME")
            .as_deref(),
        Some("Byron")
    );
    let quiet = world.pass(&engine).await;
    assert_eq!((quiet.writes(), quiet.open_conflicts), (0, 0), "{quiet:?}");
}

#[tokio::test]
async fn an_email_freed_by_a_change_is_taken_by_the_new_record_on_the_next_pass() {
    let world = World::new(vec![contact(ADA, &[("firstname", "Ada")])], vec![]).await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    // Ada takes a new address and, in the same pass, a new contact takes her old one.
    world.later();
    world
        .hubspot
        .edit(ADA, &[("email", "ada.king@example.com")]);
    world
        .create_in_hubspot(json!({"email": ADA, "firstname": "Another Ada"}))
        .await;
    world
        .create_in_hubspot(json!({"email": "grace@example.com", "firstname": "Grace"}))
        .await;
    let first = world.pass(&engine).await;
    // While Ada's link still holds the address, the newcomer is not guessed at.
    assert_eq!(first.conflicts_opened, 1, "{first:?}");
    assert_eq!(
        world
            .mailchimp_value("grace@example.com", "FNAME")
            .as_deref(),
        Some("Grace"),
        "the rest of the pass goes on"
    );
    assert!(world.mailchimp.member("ada.king@example.com").is_some());
    // Ada's rename released the address: the newcomer is decided against it now.
    let second = world.pass(&engine).await;
    assert_eq!(
        (second.created[Side::Right as usize], second.open_conflicts),
        (1, 0),
        "{second:?}"
    );
    assert_eq!(
        world.mailchimp_value(ADA, "FNAME").as_deref(),
        Some("Another Ada")
    );
    assert_eq!(
        world
            .mailchimp_value("ada.king@example.com", "FNAME")
            .as_deref(),
        Some("Ada")
    );
}

#[tokio::test]
async fn two_records_claiming_one_email_are_an_ambiguous_match_not_a_guess() {
    let world = linked_world().await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    // Both sides change Ada's address, differently: the key's rule is manual.
    world.later();
    world
        .hubspot
        .edit(ADA, &[("email", "ada.hubspot@example.com")]);
    world
        .rename_in_mailchimp(ADA, "ada.mailchimp@example.com")
        .await;
    let report = world.pass(&engine).await;
    assert_eq!(report.conflicts_opened, 1, "{report:?}");
    // The link still holds the old address; a new contact claims it.
    world.later();
    world
        .create_in_hubspot(json!({"email": ADA, "firstname": "Claimant"}))
        .await;
    world
        .hubspot
        .edit("ada.hubspot@example.com", &[("lastname", "King")]);
    let report = world.pass(&engine).await;
    assert_eq!(report.conflicts_opened, 1, "{report:?}");
    assert!(
        world.mailchimp.member(ADA).is_none(),
        "nothing was created on a guess"
    );
    assert_eq!(
        world
            .mailchimp_value("ada.mailchimp@example.com", "LNAME")
            .as_deref(),
        Some("King"),
        "other fields sync"
    );
    let conflicts = engine.store().call(|s| s.conflicts(false)).await.unwrap();
    let ambiguous: Vec<_> = conflicts
        .iter()
        .filter(|c| c.kind == "ambiguous_match")
        .collect();
    assert_eq!(ambiguous.len(), 1, "{conflicts:?}");
    assert_eq!(ambiguous[0].detail.as_ref().unwrap()["side"], "left");
    assert_eq!(ambiguous[0].detail.as_ref().unwrap()["key"], ADA);
}

#[tokio::test]
async fn a_hubspot_batch_with_one_bad_input_creates_the_others() {
    // Mailchimp holds an address HubSpot refuses: the batch answers 207 and names only that input.
    let world = World::new(
        vec![],
        vec![
            member("ada@localhost", &[("FNAME", "Ada")]),
            member("grace@example.com", &[("FNAME", "Grace")]),
            member("alan@example.com", &[("FNAME", "Alan")]),
        ],
    )
    .await;
    let engine = world.engine().await;
    let report = world.pass(&engine).await;
    assert_eq!(
        (report.created[Side::Left as usize], report.rejected),
        (2, 1),
        "{report:?}"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("ada@localhost") && p.contains("INVALID_EMAIL")),
        "{:?}",
        report.problems
    );
    assert_eq!(
        world
            .hubspot_value("grace@example.com", "firstname")
            .as_deref(),
        Some("Grace")
    );
    assert_eq!(world.hubspot.contacts().len(), 2);
    // One batch call for the three: the bad input did not cost the others a retry.
    assert_eq!(
        report.traffic[Side::Left as usize].requests,
        2,
        "listing, one upsert: {:?}",
        report.traffic
    );
}
