//! The loop detector: a field that two systems keep turning back (an
//! automation on each side with its own idea of the value) stops being synced
//! after a few rounds and becomes one conflict, while the record's other
//! fields go on syncing; a person's decision ends it. A field that only moves
//! forward, or flips slowly, is never stopped.

use std::time::Duration;

use tandem::engine::Engine;
use tandem::reconcile::LOOP_REASON;
use tandem::store::Choice;

use crate::support::{World, contact, member};

const ADA: &str = "ada@example.com";
const HUBSPOT_FORMAT: &str = "+1 555 0100";
const MAILCHIMP_FORMAT: &str = "555-0100";

async fn ada() -> World {
    World::new(
        vec![contact(
            ADA,
            &[
                ("firstname", "Ada"),
                ("lastname", "Lovelace"),
                ("phone", HUBSPOT_FORMAT),
            ],
        )],
        vec![member(
            ADA,
            &[
                ("FNAME", "Ada"),
                ("LNAME", "Lovelace"),
                ("PHONE", HUBSPOT_FORMAT),
            ],
        )],
    )
    .await
}

/// One round of the fight: a HubSpot workflow puts the phone back in its
/// format, a Mailchimp import puts it back in another, then a pass. Returns
/// the phone writes the pass made.
async fn round(world: &World, engine: &Engine) -> usize {
    world.later();
    if world.hubspot_value(ADA, "phone").as_deref() != Some(HUBSPOT_FORMAT) {
        world.hubspot.edit(ADA, &[("phone", HUBSPOT_FORMAT)]);
    } else if world.mailchimp_value(ADA, "PHONE").as_deref() != Some(MAILCHIMP_FORMAT) {
        world.mailchimp.edit(ADA, &[("PHONE", MAILCHIMP_FORMAT)]);
    }
    let before = phone_writes(engine).await;
    world.pass(engine).await;
    phone_writes(engine).await - before
}

async fn open_conflicts(engine: &Engine) -> Vec<tandem::store::ConflictRow> {
    engine.store().call(|s| s.conflicts(false)).await.unwrap()
}

/// Confirmed updates that wrote the phone, from the audit log.
async fn phone_writes(engine: &Engine) -> usize {
    engine
        .store()
        .call(|s| {
            Ok(s.audit_log(10_000)?
                .into_iter()
                .filter(|row| row.action == "update")
                .filter(|row| {
                    let written = &row.detail["written"];
                    !written["properties.phone"].is_null()
                        || !written["merge_fields.PHONE"].is_null()
                })
                .count())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_field_two_automations_fight_over_becomes_one_conflict_and_the_rest_syncs() {
    let world = ada().await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    let mut writes = Vec::new();
    for _ in 0..12 {
        writes.push(round(&world, &engine).await);
    }
    // Four returns to an earlier value are allowed (the default): the first
    // value, the second, then five returns went through; the eighth is held.
    assert_eq!(
        writes.iter().sum::<usize>(),
        7,
        "phone writes per round: {writes:?}"
    );
    assert!(writes[7..].iter().all(|w| *w == 0), "{writes:?}");
    let conflicts = open_conflicts(&engine).await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].field, "phone");
    assert_eq!(conflicts[0].reason, LOOP_REASON);

    // The record's other fields still sync while the phone waits.
    world.later();
    world.mailchimp.edit(ADA, &[("LNAME", "King")]);
    round(&world, &engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "lastname").as_deref(),
        Some("King")
    );
    let open = open_conflicts(&engine).await;
    assert_eq!(open.len(), 1, "still the one conflict: {open:?}");

    // Someone turns the Mailchimp import off and decides for HubSpot's format:
    // it is written, the conflict is over, and the phone syncs again.
    let (id, hubspot, mailchimp) = (open[0].id, open[0].left.clone(), open[0].right.clone());
    assert_ne!(hubspot, mailchimp);
    engine
        .store()
        .call(move |s| {
            Ok(tandem::people::resolve(
                s,
                id,
                &Choice::Left,
                "grace.support",
                1_800_000_000_000,
            ))
        })
        .await
        .unwrap()
        .unwrap();
    world.pass(&engine).await;
    world.pass(&engine).await;
    assert_eq!(
        world.mailchimp_value(ADA, "PHONE"),
        hubspot.as_str().map(String::from)
    );
    assert!(open_conflicts(&engine).await.is_empty());
    world.later();
    world.mailchimp.edit(ADA, &[("PHONE", "+1 555 0142")]);
    world.pass(&engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "phone").as_deref(),
        Some("+1 555 0142")
    );
    assert!(open_conflicts(&engine).await.is_empty());
}

#[tokio::test]
async fn a_field_that_only_moves_forward_or_flips_slowly_keeps_syncing() {
    let world = ada().await;
    let engine = world.engine().await;
    world.pass(&engine).await;

    // Twelve new numbers in a row, from either side: all reach the other.
    for n in 0..12 {
        world.later();
        let number = format!("+1 555 02{n:02}");
        if n % 2 == 0 {
            world.hubspot.edit(ADA, &[("phone", &number)]);
        } else {
            world.mailchimp.edit(ADA, &[("PHONE", &number)]);
        }
        world.pass(&engine).await;
        assert_eq!(world.hubspot_value(ADA, "phone"), Some(number.clone()));
        assert_eq!(world.mailchimp_value(ADA, "PHONE"), Some(number));
    }
    // The same fight as above, one round every twenty minutes: never more than
    // four returns within the hour, so it is left to run.
    let mut writes = 0;
    for _ in 0..12 {
        world.clock.advance(Duration::from_secs(20 * 60));
        writes += round(&world, &engine).await;
    }
    assert_eq!(writes, 12);
    assert!(open_conflicts(&engine).await.is_empty());
}

#[tokio::test]
async fn the_detector_can_be_turned_off() {
    let mut world = ada().await;
    world.config.engine.loop_flips = 0;
    let engine = world.engine().await;
    world.pass(&engine).await;
    let mut writes = 0;
    for _ in 0..12 {
        writes += round(&world, &engine).await;
    }
    assert_eq!(writes, 12);
    assert!(open_conflicts(&engine).await.is_empty());
}
