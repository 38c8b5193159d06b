//! Convergence, as a property: any sequence of edits on both sides, creates,
//! email changes and passes, with lost answers and refused writes along the
//! way, ends (once the faults stop and the engine has caught up) with both
//! systems holding the same people with the same values, no open conflict, and
//! a last pass that writes nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use crate::support::{World, contact, member};

/// People in both systems from the start.
const PEOPLE: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    /// Someone edits a field of a person, in HubSpot or in Mailchimp. Fields:
    /// first name and last name (newest wins), phone (HubSpot wins), company
    /// (Mailchimp only: the shipped policy leaves two-sided company edits to a person).
    Edit {
        hubspot: bool,
        person: usize,
        field: u8,
        value: u8,
    },
    /// A new person signs up in one system.
    Create { hubspot: bool },
    /// A subscriber changes their email address in Mailchimp.
    Rename { person: usize },
    /// The next pass's writes go wrong: answers lost after HubSpot or Mailchimp
    /// wrote, or Mailchimp refusing before it writes.
    Faults {
        lose_hubspot: u8,
        lose_mailchimp: u8,
        refuse_mailchimp: u8,
    },
    /// The engine runs a pass.
    Pass,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 0..PEOPLE, 0u8..4, 0u8..4).prop_map(|(hubspot, person, field, value)| Op::Edit { hubspot, person, field, value }),
        1 => any::<bool>().prop_map(|hubspot| Op::Create { hubspot }),
        1 => (0..PEOPLE).prop_map(|person| Op::Rename { person }),
        2 => (0u8..3, 0u8..3, 0u8..3).prop_map(|(lose_hubspot, lose_mailchimp, refuse_mailchimp)| Op::Faults { lose_hubspot, lose_mailchimp, refuse_mailchimp }),
        3 => Just(Op::Pass),
    ]
}

/// The synced fields as each system names them: (HubSpot property, Mailchimp merge field).
const FIELDS: [(&str, &str); 4] = [
    ("firstname", "FNAME"),
    ("lastname", "LNAME"),
    ("phone", "PHONE"),
    ("company", "COMPANY"),
];

async fn play(ops: Vec<Op>) {
    let emails: Vec<String> = (0..PEOPLE).map(|i| format!("p{i}@example.com")).collect();
    let contacts = emails
        .iter()
        .map(|e| {
            contact(
                e,
                &[
                    ("firstname", "F"),
                    ("lastname", "L"),
                    ("phone", "+15550000000"),
                    ("company", "C"),
                ],
            )
        })
        .collect();
    let members = emails
        .iter()
        .map(|e| {
            member(
                e,
                &[
                    ("FNAME", "F"),
                    ("LNAME", "L"),
                    ("PHONE", "+15550000000"),
                    ("COMPANY", "C"),
                ],
            )
        })
        .collect();
    let world = World::new(contacts, members).await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    // Where each person is in Mailchimp now, after renames.
    let mut in_mailchimp = emails.clone();
    let mut made = 0;
    let mut faults = [0u32; 3];
    for op in ops {
        match op {
            Op::Edit {
                hubspot,
                person,
                field,
                value,
            } => {
                let (property, tag) = FIELDS[field as usize];
                let text = if field == 2 {
                    format!("+1555000{value:04}")
                } else {
                    format!("{tag} {value}")
                };
                if hubspot && field != 3 {
                    world.hubspot.edit(&emails[person], &[(property, &text)]);
                } else {
                    world.mailchimp.edit(&in_mailchimp[person], &[(tag, &text)]);
                }
            }
            Op::Create { hubspot } => {
                made += 1;
                let email = format!("new{made}@example.com");
                if hubspot {
                    world
                        .create_in_hubspot(json!({ "email": email, "firstname": "New" }))
                        .await;
                } else {
                    world
                        .create_in_mailchimp(&email, json!({ "FNAME": "New" }))
                        .await;
                }
            }
            Op::Rename { person } => {
                made += 1;
                let email = format!("moved{made}@example.com");
                world
                    .rename_in_mailchimp(&in_mailchimp[person], &email)
                    .await;
                in_mailchimp[person] = email;
            }
            Op::Faults {
                lose_hubspot,
                lose_mailchimp,
                refuse_mailchimp,
            } => faults = [lose_hubspot, lose_mailchimp, refuse_mailchimp].map(u32::from),
            Op::Pass => {
                // The faults hit the engine's writes of this pass only, not people's.
                world.hubspot.lose_answers(faults[0]);
                world.mailchimp.lose_answers(faults[1]);
                world.mailchimp.refuse_writes(faults[2]);
                faults = [0; 3];
                world.clock.advance(Duration::from_secs(3600));
                world.pass(&engine).await;
                world.hubspot.lose_answers(0);
                world.mailchimp.lose_answers(0);
                world.mailchimp.refuse_writes(0);
            }
        }
        world.later();
    }

    // The engine catches up.
    let mut quiet = false;
    for _ in 0..10 {
        world.clock.advance(Duration::from_secs(3600));
        let report = world.pass(&engine).await;
        if report.writes() == 0 && report.pending == 0 {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "the engine goes quiet");
    let counts = engine
        .store()
        .call(|s| s.counts("hubspot-mailchimp"))
        .await
        .unwrap();
    assert_eq!(
        (
            counts.open_conflicts,
            counts.pending_writes,
            counts.dead_letters
        ),
        (0, 0, 0)
    );
    world.clock.advance(Duration::from_secs(3600));
    let last = world.pass(&engine).await;
    assert_eq!(last.writes(), 0, "{last:?}");

    let hubspot: Vec<String> = world
        .hubspot
        .contacts()
        .iter()
        .filter_map(|c| c.properties.get("email").cloned().flatten())
        .collect();
    let mailchimp: Vec<String> = world
        .mailchimp
        .members()
        .iter()
        .map(|m| m.email_address.clone())
        .collect();
    let (h, m): (BTreeSet<&String>, BTreeSet<&String>) =
        (hubspot.iter().collect(), mailchimp.iter().collect());
    assert_eq!(h.len(), hubspot.len(), "no duplicate in HubSpot");
    assert_eq!(m.len(), mailchimp.len(), "no duplicate in Mailchimp");
    assert_eq!(h, m, "the same people on both sides");
    for email in &hubspot {
        for (property, tag) in FIELDS {
            assert_eq!(
                world.hubspot_value(email, property),
                world.mailchimp_value(email, tag),
                "{email} {property}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn edits_on_both_sides_with_faults_converge(ops in proptest::collection::vec(op(), 1..30)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(play(ops));
    }
}
