//! Connector behaviour against the simulators that the engine relies on:
//! incremental polling survives HubSpot's lagging search index and its
//! 10,000-result cap, and Mailchimp's listing and archives of one window
//! miss nothing changed between them.

use std::collections::HashSet;
use std::time::Duration;

use secrecy::SecretString;
use tandem_core::Connector;
use tandem_hubspot::sim::{HubSpotSim, Seed, SimConfig};
use tandem_hubspot::{HubSpotClient, HubSpotConfig};

use crate::support::contact_at;

async fn portal(seed: Seed, overlap: Duration) -> (HubSpotSim, HubSpotClient) {
    portal_with(SimConfig::default(), seed, overlap).await
}

async fn portal_with(
    config: SimConfig,
    seed: Seed,
    overlap: Duration,
) -> (HubSpotSim, HubSpotClient) {
    let sim = HubSpotSim::new(config);
    sim.seed(seed).unwrap();
    let url = sim.clone().spawn().await.unwrap();
    let mut config = HubSpotConfig::new(url, SecretString::from("sim-hubspot-token"));
    config.http.rate = None;
    config.search_rate = None;
    config.search_overlap = overlap;
    config.properties = vec!["firstname".into()];
    (sim, HubSpotClient::new(config).unwrap())
}

/// Poll until caught up; the ids read and the cursor reached.
async fn poll_all(client: &HubSpotClient, cursor: Option<String>) -> (Vec<String>, Option<String>) {
    let mut cursor = cursor;
    let mut ids = Vec::new();
    loop {
        let page = client.poll(cursor.as_deref()).await.unwrap();
        ids.extend(page.records.into_iter().map(|r| r.id));
        cursor = Some(page.cursor);
        if !page.more {
            return (ids, cursor);
        }
    }
}

async fn lagging_change_is_read(overlap: Duration) -> bool {
    let seed = Seed {
        properties: vec![],
        contacts: vec![
            contact_at("ada@example.com", &[], None),
            contact_at("alan@example.com", &[], None),
        ],
    };
    let (sim, client) = portal(seed, overlap).await;
    let (_, cursor) = poll_all(&client, None).await;
    // Ada changes first but the index shows it late; Alan's later change shows at once.
    sim.advance_clock(Duration::from_secs(5));
    let ada = sim
        .edit("ada@example.com", &[("firstname", "Augusta")])
        .unwrap();
    sim.delay_indexing("ada@example.com", Duration::from_secs(20));
    sim.advance_clock(Duration::from_secs(1));
    let alan = sim
        .edit("alan@example.com", &[("firstname", "Alan M.")])
        .unwrap();
    let (seen, cursor) = poll_all(&client, cursor).await;
    assert!(seen.contains(&alan) && !seen.contains(&ada), "{seen:?}");
    sim.advance_clock(Duration::from_secs(30));
    let (seen, _) = poll_all(&client, cursor).await;
    seen.contains(&ada)
}

#[tokio::test]
async fn a_change_the_search_index_shows_late_is_caught_by_the_lookback() {
    assert!(lagging_change_is_read(Duration::from_secs(60)).await);
}

#[tokio::test]
async fn without_a_lookback_the_late_change_would_be_lost() {
    // The same story with no overlap window: this is what the lookback protects against.
    assert!(!lagging_change_is_read(Duration::ZERO).await);
}

#[tokio::test]
async fn with_search_lagging_every_write_the_lookback_still_reads_each_change() {
    let seed = Seed {
        properties: vec![],
        contacts: vec![contact_at("ada@example.com", &[], None)],
    };
    let (sim, client) = portal(seed, Duration::from_secs(60)).await;
    let (_, cursor) = poll_all(&client, None).await;
    sim.set_search_lag(Duration::from_secs(10));
    sim.advance_clock(Duration::from_secs(5));
    let ada = sim
        .edit("ada@example.com", &[("firstname", "Augusta")])
        .unwrap();
    let (seen, cursor) = poll_all(&client, cursor).await;
    assert!(
        !seen.contains(&ada),
        "search does not show it yet: {seen:?}"
    );
    sim.advance_clock(Duration::from_secs(11));
    let (seen, _) = poll_all(&client, cursor).await;
    assert!(
        seen.contains(&ada),
        "the next poll reaches back for it: {seen:?}"
    );
}

#[tokio::test]
async fn more_than_10000_changed_contacts_are_all_read_past_the_search_cap() {
    // HubSpot's search cursors are numbers in its examples; a server whose
    // cursors are opaque must be paged through all the same.
    for search_after_opaque in [false, true] {
        let config = SimConfig {
            search_after_opaque,
            ..SimConfig::default()
        };
        read_past_the_search_cap(config).await;
    }
}

async fn read_past_the_search_cap(config: SimConfig) {
    // 10,500 changed contacts; 300 of them share one modification time at a window's edge.
    let contacts = (0..10_500)
        .map(|i| {
            let at = if (5_000..5_300).contains(&i) {
                5_000
            } else {
                i
            };
            let time = tandem_core::clock::format_millis_z(1_767_225_600_000 + at * 1000);
            contact_at(&format!("c{i:05}@example.com"), &[], Some(&time))
        })
        .collect();
    let (sim, client) = portal_with(
        config,
        Seed {
            properties: vec![],
            contacts,
        },
        Duration::from_secs(60),
    )
    .await;
    // From a watermark before all of them, the incremental poll must page past the cap.
    let cursor = r#"{"phase":"caught_up","watermark":1767225000000}"#.to_string();
    let (ids, _) = poll_all(&client, Some(cursor)).await;
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        10_500,
        "read {} records, {} distinct",
        ids.len(),
        distinct.len()
    );
    assert!(
        ids.len() < 11_000,
        "read too many duplicates: {}",
        ids.len()
    );
    assert_eq!(sim.stats().throttled, 0);
}

/// An audience of Ada and Carol, and a client with no overlap window.
async fn ada_and_carol() -> (
    tandem_mailchimp::sim::MailchimpSim,
    tandem_mailchimp::MailchimpClient,
) {
    use tandem_mailchimp::sim::{
        MailchimpSim, Seed as AudienceSeed, SeedMember, SimConfig as AudienceConfig,
    };
    use tandem_mailchimp::{MailchimpClient, MailchimpConfig};
    let config = AudienceConfig::default();
    let (key, list) = (config.api_key.clone(), config.list_id.clone());
    let sim = MailchimpSim::new(config);
    // Members changed at the watermark's second are read again by the next
    // poll: Carol changed a month before Ada, so that she is not.
    let member = |email: &str, changed: &str| SeedMember {
        email_address: email.into(),
        status: Some("subscribed".into()),
        merge_fields: Default::default(),
        last_changed: Some(format!("2026-{changed}T09:00:00+00:00")),
    };
    sim.seed(AudienceSeed {
        merge_fields: vec![],
        members: vec![
            member("ada@example.com", "03-01"),
            member("carol@example.com", "02-01"),
        ],
    })
    .unwrap();
    let url = sim.clone().spawn().await.unwrap();
    let mut config = MailchimpConfig::new(url, SecretString::from(key), list);
    config.overlap = Duration::ZERO;
    let client = MailchimpClient::new(config).unwrap();
    (sim, client)
}

/// A Mailchimp incremental poll lists the members changed since the watermark,
/// then the archived ones of the same window. A member changed between those
/// two requests is in neither; the next poll must still see it, even with no
/// overlap window.
#[tokio::test]
async fn a_member_changed_between_the_listing_and_its_archives_is_read_next_poll() {
    let (sim, client) = ada_and_carol().await;
    let mut cursor = None;
    loop {
        let page = client.poll(cursor.as_deref()).await.unwrap();
        cursor = Some(page.cursor);
        if !page.more {
            break;
        }
    }

    sim.advance_clock(Duration::from_secs(5));
    sim.edit("ada@example.com", &[("FNAME", "Augusta")])
        .unwrap();
    let listing = client.poll(cursor.as_deref()).await.unwrap();
    assert!(listing.more, "the archives of the window follow");
    let emails = |page: &tandem_core::Page| -> Vec<String> {
        page.records.iter().filter_map(|r| r.key.clone()).collect()
    };
    assert_eq!(emails(&listing), ["ada@example.com"]);
    // Carol changes now; the archives are asked for a few seconds later.
    sim.edit("carol@example.com", &[("FNAME", "Carol")])
        .unwrap();
    sim.advance_clock(Duration::from_secs(5));
    let archives = client.poll(Some(&listing.cursor)).await.unwrap();
    assert!(!archives.more);
    assert!(emails(&archives).is_empty());

    let next = client.poll(Some(&archives.cursor)).await.unwrap();
    assert!(
        emails(&next).contains(&"carol@example.com".to_string()),
        "{:?}",
        emails(&next)
    );
}

/// Mailchimp stamps its answer's `Date` after it has taken the listing: a
/// member changed in between is not in the listing, and a watermark from that
/// clock would put it out of the next poll's sight. Even with no overlap
/// window, the next poll must read it.
#[tokio::test]
async fn a_member_changed_while_a_listing_is_answered_is_read_next_poll() {
    let (sim, client) = ada_and_carol().await;
    let poll_all = |cursor: Option<String>| {
        let client = client.clone();
        async move {
            let (mut cursor, mut emails) = (cursor, Vec::new());
            loop {
                let page = client.poll(cursor.as_deref()).await.unwrap();
                emails.extend(page.records.iter().filter_map(|r| r.key.clone()));
                cursor = Some(page.cursor);
                if !page.more {
                    return (emails, cursor);
                }
            }
        }
    };
    let (_, cursor) = poll_all(None).await;

    sim.advance_clock(Duration::from_secs(5));
    sim.edit("ada@example.com", &[("FNAME", "Augusta")])
        .unwrap();
    // Every answer comes 600 ms after the request was carried out.
    sim.api_faults().set(tandem_core::sim::ApiFaults {
        slow: 1.0,
        slow_by: Duration::from_millis(600),
        ..Default::default()
    });
    let polling = tokio::spawn(poll_all(cursor));
    // The listing is taken; while its answer waits, Carol changes and time moves on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.edit("carol@example.com", &[("FNAME", "Carol")])
        .unwrap();
    sim.advance_clock(Duration::from_secs(5));
    let (read, cursor) = polling.await.unwrap();
    assert_eq!(
        read,
        ["ada@example.com"],
        "the listing was taken before Carol changed"
    );

    sim.api_faults().set(tandem_core::sim::ApiFaults::default());
    let (next, _) = poll_all(cursor).await;
    assert!(next.contains(&"carol@example.com".to_string()), "{next:?}");
}

/// HubSpot stamps its answer's `Date` after taking the page: a contact changed
/// between the two is not in the first listing, and searching from that clock
/// would pass it by. With no overlap window, the next poll must still read it.
#[tokio::test]
async fn a_contact_changed_while_the_first_listing_is_answered_is_read_next_poll() {
    let contacts = ["ada@example.com", "carol@example.com"]
        .map(|email| contact_at(email, &[("firstname", "First")], None))
        .to_vec();
    let (sim, client) = portal(
        Seed {
            properties: vec![],
            contacts,
        },
        Duration::ZERO,
    )
    .await;
    // The first page's answer comes 1.5 s after the page was taken.
    sim.api_faults().set(tandem_core::sim::ApiFaults {
        slow: 1.0,
        slow_by: Duration::from_millis(1500),
        ..Default::default()
    });
    let listing = tokio::spawn({
        let client = client.clone();
        async move { client.poll(None).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.edit("carol@example.com", &[("firstname", "Carol")]);
    let listing = listing.await.unwrap();
    assert!(!listing.more, "one page");

    sim.api_faults().set(tandem_core::sim::ApiFaults::default());
    let next = client.poll(Some(&listing.cursor)).await.unwrap();
    let read: Vec<String> = next.records.iter().filter_map(|r| r.key.clone()).collect();
    assert!(read.contains(&"carol@example.com".to_string()), "{read:?}");
}

/// A Mailchimp simulator with this configuration, serving; a client for it;
/// and its base URL.
async fn audience(
    config: tandem_mailchimp::sim::SimConfig,
) -> (
    tandem_mailchimp::sim::MailchimpSim,
    tandem_mailchimp::MailchimpClient,
    String,
) {
    let (key, list) = (config.api_key.clone(), config.list_id.clone());
    let sim = tandem_mailchimp::sim::MailchimpSim::new(config);
    let url = sim.clone().spawn().await.unwrap();
    let config = tandem_mailchimp::MailchimpConfig::new(url.clone(), SecretString::from(key), list);
    let client = tandem_mailchimp::MailchimpClient::new(config).unwrap();
    (sim, client, url)
}

/// A listing asks only for what a record is made of, and a member reads the
/// same from a listing as alone (every field the record has survives the
/// listing's `fields`).
#[tokio::test]
async fn a_listed_member_reads_as_it_does_alone_from_a_slimmer_answer() {
    use tandem_core::{Write, WriteOp};
    let config = tandem_mailchimp::sim::SimConfig::default();
    let (key, list) = (config.api_key.clone(), config.list_id.clone());
    let (sim, client, url) = audience(config).await;
    let field = |name: &str, value: serde_json::Value| (name.to_string(), value);
    let creates = [
        Write {
            op: WriteOp::Create,
            key: "nia@example.com".into(),
            fields: [
                field("merge_fields.FNAME", serde_json::json!("Nia")),
                field("merge_fields.PHONE", serde_json::json!("+44 20 7946 0000")),
                field("vip", serde_json::json!(true)),
                field("language", serde_json::json!("fr")),
                field("email_type", serde_json::json!("text")),
                field("tags", serde_json::json!(["donor", "vip"])),
            ]
            .into(),
        },
        Write {
            op: WriteOp::Create,
            key: "omar@example.com".into(),
            fields: [field("merge_fields.LNAME", serde_json::json!("Haddad"))].into(),
        },
    ];
    for outcome in client.apply(&creates).await.unwrap() {
        outcome.unwrap();
    }
    sim.set_status("omar@example.com", "unsubscribed").unwrap();
    sim.record_requests();
    let listed = client.poll(None).await.unwrap().records;
    assert_eq!(listed.len(), 2);
    let ids: Vec<String> = listed.iter().map(|r| r.id.clone()).collect();
    let alone = client.fetch(&ids).await.unwrap();
    for record in &listed {
        let read = alone.iter().find(|r| r.id == record.id).unwrap();
        assert_eq!(record, read, "listed, then read alone");
    }
    let nia = listed
        .iter()
        .find(|r| r.key.as_deref() == Some("nia@example.com"));
    let nia = &nia.unwrap().fields;
    assert_eq!(nia["vip"], serde_json::json!(true));
    assert_eq!(nia["tags"], serde_json::json!(["donor", "vip"]));

    // The answer the listing got against the whole one.
    let listing = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "GET" && r.path == format!("/lists/{list}/members"))
        .unwrap();
    let get = |query: String| {
        let url = format!("{url}/lists/{list}/members?{query}");
        let key = key.clone();
        async move {
            let answer = reqwest::Client::new()
                .get(url)
                .basic_auth("tandem", Some(key))
                .send()
                .await
                .unwrap();
            answer.json::<serde_json::Value>().await.unwrap()
        }
    };
    let slim = get(listing.query.clone()).await;
    let whole = get("count=1000".to_string()).await;
    let member = &slim["members"][0];
    for unread in ["stats", "location", "_links", "timestamp_signup"] {
        assert!(member.get(unread).is_none(), "{unread} in {member}");
        assert!(whole["members"][0].get(unread).is_some(), "{unread}");
    }
    let size = |body: &serde_json::Value| body.to_string().len();
    assert!(
        size(&slim) * 2 < size(&whole),
        "{} bytes listed, {} whole",
        size(&slim),
        size(&whole)
    );
}

/// A member created by batch subscribe gets the id listings give it (its
/// `contact_id`), even when the batch answer leaves `contact_id` out.
#[tokio::test]
async fn a_created_member_has_the_id_listings_give_it() {
    use tandem_core::{Write, WriteOp};
    for batch_answers_contact_id in [true, false] {
        let (_sim, client, _) = audience(tandem_mailchimp::sim::SimConfig {
            batch_answers_contact_id,
            ..Default::default()
        })
        .await;
        let create = Write {
            op: WriteOp::Create,
            key: "nia@example.com".into(),
            fields: [("merge_fields.FNAME".to_string(), serde_json::json!("Nia"))].into(),
        };
        let created = client.apply(&[create]).await.unwrap().remove(0).unwrap();
        let listed = client.poll(None).await.unwrap();
        assert_eq!(listed.records.len(), 1);
        assert_eq!(
            created.id, listed.records[0].id,
            "contact_id in the batch answer: {batch_answers_contact_id}"
        );
    }
}
