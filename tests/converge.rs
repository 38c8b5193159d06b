//! Convergence, as a property: any sequence of edits on both sides, creates,
//! deletes, email changes and passes, with lost answers, refused writes and
//! misbehaving APIs (throttling, 5xx, cut connections, garbled bodies) along
//! the way, ends (once the faults stop and the engine has caught up) with both
//! systems holding the same people with the same values, no deleted record
//! back, no open conflict, and a last pass that writes nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use tandem_core::sim::ApiFaults;

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
    /// Someone archives a person in HubSpot or in Mailchimp. The shipped policy
    /// marks the other side rather than removing it there.
    Delete { hubspot: bool, person: usize },
    /// Both APIs misbehave during the next pass: each request has this many
    /// chances in 100 of a throttle, a 5xx, a cut connection or a garbled body.
    Misbehave { percent: u8 },
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
        1 => (any::<bool>(), 0..PEOPLE).prop_map(|(hubspot, person)| Op::Delete { hubspot, person }),
        1 => (0u8..8).prop_map(|percent| Op::Misbehave { percent }),
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
    // Where each person is in Mailchimp now, after renames, and every email
    // they had (HubSpot may still hold any of them while a rename travels).
    let mut in_mailchimp = emails.clone();
    let mut known: Vec<Vec<String>> = emails.iter().map(|e| vec![e.clone()]).collect();
    let mut made = 0;
    let mut faults = [0u32; 3];
    let mut misbehave = 0u8;
    // Who was archived where: (in HubSpot, in Mailchimp).
    let mut deleted = [(false, false); PEOPLE];
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
                // People edit only records that are not archived on their side.
                if hubspot && field != 3 {
                    if !deleted[person].0 {
                        world.hubspot.edit(&emails[person], &[(property, &text)]);
                    }
                } else if !deleted[person].1 {
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
            Op::Rename { person } if deleted[person].1 => {}
            Op::Rename { person } => {
                made += 1;
                let email = format!("moved{made}@example.com");
                world
                    .rename_in_mailchimp(&in_mailchimp[person], &email)
                    .await;
                known[person].push(email.clone());
                in_mailchimp[person] = email;
            }
            Op::Delete {
                hubspot: true,
                person,
            } => {
                // HubSpot holds the person under one of the emails Mailchimp gave
                // it: the latest, or an older one while a rename travels.
                let id = world.hubspot.contacts().into_iter().find_map(|c| {
                    let email = c.properties.get("email").cloned().flatten()?;
                    known[person].contains(&email).then_some(c.id)
                });
                if let Some(id) = id {
                    world.hubspot.archive(&id);
                    deleted[person].0 = true;
                }
            }
            Op::Delete {
                hubspot: false,
                person,
            } => {
                world
                    .mailchimp
                    .set_status(&in_mailchimp[person], "archived");
                deleted[person].1 = true;
            }
            Op::Misbehave { percent } => misbehave = percent,
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
                let share = f64::from(misbehave) / 100.0;
                let api = ApiFaults {
                    throttle: share,
                    server_error: share,
                    reset: share,
                    malformed: share,
                    ..ApiFaults::default()
                };
                world.hubspot.api_faults().set(api);
                world.mailchimp.api_faults().set(api);
                faults = [0; 3];
                misbehave = 0;
                world.clock.advance(Duration::from_secs(3600));
                world.pass(&engine).await;
                world.hubspot.lose_answers(0);
                world.mailchimp.lose_answers(0);
                world.mailchimp.refuse_writes(0);
                world.hubspot.api_faults().set(ApiFaults::default());
                world.mailchimp.api_faults().set(ApiFaults::default());
            }
        }
        world.later();
    }

    // The engine catches up.
    assert!(world.catch_up(&engine).await, "the engine goes quiet");
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
    // An archived record stays archived; its counterpart stays where it was.
    for (person, (in_hubspot, in_chimp)) in deleted.iter().copied().enumerate() {
        let (first, now) = (&emails[person], &in_mailchimp[person]);
        if in_hubspot {
            assert!(
                !h.contains(first) && known[person].iter().all(|e| !h.contains(e)),
                "{now} stays archived in HubSpot"
            );
        }
        if in_chimp {
            assert!(!m.contains(now), "{now} stays archived in Mailchimp");
        }
        if !in_hubspot && !in_chimp {
            assert!(h.contains(now) && m.contains(now), "{now} on both sides");
        }
    }
    let both: BTreeSet<&String> = h.intersection(&m).copied().collect();
    let once: Vec<&&String> = h.symmetric_difference(&m).collect();
    let archived_people = deleted.iter().filter(|(a, b)| *a || *b).count();
    assert!(
        once.len() <= 2 * archived_people,
        "only archived people are on one side only: {once:?}"
    );
    for email in both {
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
