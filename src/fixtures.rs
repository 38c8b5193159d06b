//! Synthetic contacts for the demo and the benchmark, generated from a seed so
//! that the same seed always gives the same data. Names are combinations from
//! short lists and every address is at a reserved `example.*` domain: no real
//! person's data.
//!
//! The demo's seed files in `fixtures/` are this generator's output; a test
//! keeps them in step (`TANDEM_UPDATE_FIXTURES=1 cargo test fixtures` rewrites them).

use std::collections::BTreeMap;

use serde_json::Value;
use tandem_core::clock::{format_millis_z, format_seconds_offset, parse_rfc3339};
use tandem_hubspot::sim::{Seed as HubSpotSeed, SeedContact};
use tandem_mailchimp::sim::{MergeFieldDef, Seed as MailchimpSeed, SeedMember};

const FIRST: [&str; 32] = [
    "Ada",
    "Alan",
    "Grace",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "John",
    "Katherine",
    "Linus",
    "Margaret",
    "Niklaus",
    "Radia",
    "Robert",
    "Sophie",
    "Tim",
    "Anita",
    "Brian",
    "Carla",
    "Dennis",
    "Elena",
    "Felix",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Klara",
    "Leo",
    "Mira",
    "Nora",
    "Oskar",
    "Paula",
];
const NICKNAMES: [(&str, &str); 6] = [
    ("Robert", "Bob"),
    ("Margaret", "Maggie"),
    ("Katherine", "Kate"),
    ("Donald", "Don"),
    ("Barbara", "Barb"),
    ("Timothy", "Tim"),
];
const LAST: [&str; 32] = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Backus",
    "Johnson",
    "Torvalds",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Pike",
    "Wilson",
    "Berners",
    "Borg",
    "Kernighan",
    "Almeida",
    "Ritchie",
    "Novak",
    "Brandt",
    "Lindqvist",
    "Moreau",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rossi",
    "Santos",
    "Tanaka",
    "Ueda",
    "Varga",
];
const COMPANIES: [&str; 16] = [
    "Northwind Traders",
    "Contoso",
    "Fabrikam",
    "Tailspin Toys",
    "Wide World Importers",
    "Adventure Works",
    "Litware",
    "Proseware",
    "Lucerne Publishing",
    "Margie's Travel",
    "Coho Winery",
    "Alpine Ski House",
    "Blue Yonder Airlines",
    "Fourth Coffee",
    "Humongous Insurance",
    "Trey Research",
];
const DOMAINS: [&str; 3] = ["example.com", "example.org", "example.net"];

/// How many contacts of each kind to generate.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// People in both systems.
    pub both: usize,
    /// People only in HubSpot.
    pub hubspot_only: usize,
    /// People only in Mailchimp.
    pub mailchimp_only: usize,
    /// HubSpot contacts without an email address.
    pub without_email: usize,
    /// Whether people in both systems differ in some fields, as real data does.
    pub differences: bool,
}

impl Profile {
    /// The demo: about 1,000 people, most in both systems with differences.
    pub const DEMO: Profile = Profile {
        both: 700,
        hubspot_only: 150,
        mailchimp_only: 150,
        without_email: 5,
        differences: true,
    };

    /// A backfill: `n` people only in HubSpot and another `n` only in Mailchimp.
    pub fn backfill(n: usize) -> Profile {
        Profile {
            both: 0,
            hubspot_only: n,
            mailchimp_only: n,
            without_email: 0,
            differences: false,
        }
    }
}

struct Person {
    first: String,
    last: String,
    email: String,
    phone: String,
    company: String,
}

fn person(index: usize) -> Person {
    let first = FIRST[index % FIRST.len()];
    let last = LAST[(index / FIRST.len() + index * 7) % LAST.len()];
    Person {
        first: first.into(),
        last: last.into(),
        email: format!(
            "{}.{}.{index}@{}",
            first.to_lowercase(),
            last.to_lowercase(),
            DOMAINS[index % DOMAINS.len()]
        ),
        phone: format!(
            "+1 555 {:03} {:04}",
            100 + index / 10_000 % 900,
            index % 10_000
        ),
        company: COMPANIES[(index * 5) % COMPANIES.len()].into(),
    }
}

/// Generate both systems' seeds.
pub fn generate(profile: Profile, seed: u64) -> (HubSpotSeed, MailchimpSeed) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = parse_rfc3339("2026-01-05T09:00:00Z").expect("a valid time");
    let day = 86_400_000;
    let mut hubspot = HubSpotSeed::default();
    let mut mailchimp = MailchimpSeed {
        merge_fields: vec![MergeFieldDef {
            tag: "COMPANY".into(),
            name: "Company".into(),
            kind: "text".into(),
            required: false,
        }],
        members: Vec::new(),
    };
    let total = profile.both + profile.hubspot_only + profile.mailchimp_only;
    for index in 0..total {
        let p = person(index);
        let in_hubspot = index < profile.both + profile.hubspot_only;
        let in_mailchimp = index < profile.both || index >= profile.both + profile.hubspot_only;
        let hubspot_at = start + index as i64 * 60_000 + rng.i64(0..30 * day);
        let mailchimp_at = start + index as i64 * 60_000 + rng.i64(0..30 * day);
        let mut h: BTreeMap<&str, String> = BTreeMap::from([
            ("email", p.email.clone()),
            ("firstname", p.first.clone()),
            ("lastname", p.last.clone()),
            ("phone", p.phone.clone()),
            ("company", p.company.clone()),
            (
                "lifecyclestage",
                if index % 3 == 0 { "customer" } else { "lead" }.to_string(),
            ),
        ]);
        let mut m: BTreeMap<&str, String> = BTreeMap::from([
            ("FNAME", p.first.clone()),
            ("LNAME", p.last.clone()),
            ("PHONE", p.phone.clone()),
            ("COMPANY", p.company.clone()),
        ]);
        if profile.differences && in_hubspot && in_mailchimp {
            let roll = rng.u32(0..100);
            if roll < 12 {
                let nickname = NICKNAMES
                    .iter()
                    .find(|(full, _)| *full == p.first)
                    .map_or("Sam", |(_, nick)| nick);
                m.insert("FNAME", nickname.to_string());
            } else if roll < 24 {
                m.insert(
                    "PHONE",
                    format!("+1 555 {:03} {:04}", 900 - index % 100, index % 10_000),
                );
            } else if roll < 32 {
                m.remove("LNAME");
            } else if roll < 37 {
                h.remove("lastname");
            } else if roll < 39 {
                m.insert(
                    "COMPANY",
                    COMPANIES[(index * 5 + 3) % COMPANIES.len()].into(),
                );
            } else if roll < 44 {
                m.remove("COMPANY");
            }
        }
        if in_hubspot {
            hubspot.contacts.push(SeedContact {
                properties: h.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                updated_at: Some(format_millis_z(hubspot_at)),
                created_at: Some(format_millis_z(hubspot_at - 90 * day)),
            });
        }
        if in_mailchimp {
            mailchimp.members.push(SeedMember {
                email_address: p.email.clone(),
                status: Some(
                    if index % 17 == 0 {
                        "unsubscribed"
                    } else {
                        "subscribed"
                    }
                    .into(),
                ),
                merge_fields: m
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v)))
                    .collect(),
                last_changed: Some(format_seconds_offset(mailchimp_at)),
            });
        }
    }
    for index in 0..profile.without_email {
        let p = person(total + index);
        hubspot.contacts.push(SeedContact {
            properties: BTreeMap::from([
                ("firstname".to_string(), p.first),
                ("lastname".to_string(), p.last),
                ("phone".to_string(), p.phone),
            ]),
            updated_at: Some(format_millis_z(start + index as i64 * day)),
            created_at: None,
        });
    }
    (hubspot, mailchimp)
}

/// The demo's HubSpot seed, as committed in `fixtures/`.
pub const DEMO_HUBSPOT: &str = include_str!("../fixtures/demo-hubspot.json");
/// The demo's Mailchimp seed, as committed in `fixtures/`.
pub const DEMO_MAILCHIMP: &str = include_str!("../fixtures/demo-mailchimp.json");
/// The seed the demo fixtures were generated with.
pub const DEMO_SEED: u64 = 20_261_122;

#[cfg(test)]
mod tests {
    use super::*;

    fn render() -> (String, String) {
        let (hubspot, mailchimp) = generate(Profile::DEMO, DEMO_SEED);
        (
            serde_json::to_string_pretty(&hubspot).unwrap() + "\n",
            serde_json::to_string_pretty(&mailchimp).unwrap() + "\n",
        )
    }

    #[test]
    fn fixtures_are_the_generator_output() {
        let (hubspot, mailchimp) = render();
        if std::env::var_os("TANDEM_UPDATE_FIXTURES").is_some() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
            std::fs::write(dir.join("demo-hubspot.json"), &hubspot).unwrap();
            std::fs::write(dir.join("demo-mailchimp.json"), &mailchimp).unwrap();
            return;
        }
        assert!(
            DEMO_HUBSPOT == hubspot,
            "fixtures/demo-hubspot.json is stale; rerun with TANDEM_UPDATE_FIXTURES=1"
        );
        assert!(
            DEMO_MAILCHIMP == mailchimp,
            "fixtures/demo-mailchimp.json is stale; rerun with TANDEM_UPDATE_FIXTURES=1"
        );
    }

    #[test]
    fn a_backfill_has_disjoint_people() {
        let (hubspot, mailchimp) = generate(Profile::backfill(50), 1);
        assert_eq!(hubspot.contacts.len(), 50);
        assert_eq!(mailchimp.members.len(), 50);
        let emails: std::collections::HashSet<_> = hubspot
            .contacts
            .iter()
            .map(|c| c.properties["email"].clone())
            .collect();
        assert!(
            mailchimp
                .members
                .iter()
                .all(|m| !emails.contains(&m.email_address))
        );
    }
}
