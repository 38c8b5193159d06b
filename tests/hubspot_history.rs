//! HubSpot property history through the connector: reads by id (`fetch`) and
//! by email (`lookup`) ask for the history of the configured properties and
//! date each one in `Record::changed_at`, in batches of at most 50; without
//! history properties they ask for none and batch 100. Polls never ask. What
//! the client sends is read back from the simulator's request journal.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tandem_core::{Connector, Millis, Record, Write, WriteOp};
use tandem_hubspot::sim::{HubSpotSim, Seed, SeedContact, SimConfig, SimRequest};
use tandem_hubspot::{HubSpotClient, HubSpotConfig};

use crate::support::contact_at;

const SEEDED: &str = "2026-03-01T10:00:00.000Z";
const BATCH_READ: &str = "/crm/v3/objects/contacts/batch/read";

/// A simulator seeded with `contacts`, recording requests, and a client for it
/// that reads `firstname`, `lastname` and `city`, those in `history` with history.
async fn portal(contacts: Vec<SeedContact>, history: &[&str]) -> (HubSpotSim, HubSpotClient) {
    let sim = HubSpotSim::new(SimConfig::default());
    sim.seed(Seed {
        properties: vec![],
        contacts,
    })
    .unwrap();
    let url = sim.clone().spawn().await.unwrap();
    let mut config = HubSpotConfig::new(url, SecretString::from("sim-hubspot-token"));
    config.http.rate = None;
    config.http.max_retries = 1;
    config.http.backoff = Duration::from_millis(10);
    config.search_rate = None;
    config.properties = ["firstname", "lastname", "city"].map(String::from).to_vec();
    config.history_properties = history.iter().map(|name| name.to_string()).collect();
    sim.record_requests();
    (sim, HubSpotClient::new(config).unwrap())
}

fn ada() -> SeedContact {
    contact_at(
        "ada@example.com",
        &[("firstname", "Ada"), ("lastname", "Lovelace")],
        Some(SEEDED),
    )
}

fn millis(text: &str) -> Millis {
    tandem_core::clock::parse_rfc3339(text).unwrap()
}

/// The simulator's `updatedAt` of the contact with this email.
fn updated_at(sim: &HubSpotSim, email: &str) -> Millis {
    millis(&sim.contact_by_email(email).unwrap().updated_at)
}

fn id_of(sim: &HubSpotSim, email: &str) -> String {
    sim.contact_by_email(email).unwrap().id
}

fn dates(pairs: &[(&str, Millis)]) -> BTreeMap<String, Millis> {
    pairs
        .iter()
        .map(|(path, at)| (path.to_string(), *at))
        .collect()
}

/// The one record `records` holds for this id.
fn only<'a>(records: &'a [Record], id: &str) -> &'a Record {
    let found: Vec<&Record> = records.iter().filter(|r| r.id == id).collect();
    assert_eq!(found.len(), 1, "{id}: {records:?}");
    found[0]
}

/// The batch reads received since the journal held `since` requests.
fn batch_reads(sim: &HubSpotSim, since: usize) -> Vec<SimRequest> {
    sim.requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.path == BATCH_READ)
        .collect()
}

fn input_counts(reads: &[SimRequest]) -> Vec<usize> {
    reads
        .iter()
        .map(|r| r.body["inputs"].as_array().map_or(0, Vec::len))
        .collect()
}

/// The properties a request asks for with history: none if the field is absent or empty.
fn asked_history(request: &SimRequest) -> Vec<String> {
    match &request.body["propertiesWithHistory"] {
        Value::Null => vec![],
        Value::Array(names) => names
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect(),
        other => panic!("propertiesWithHistory is not a list: {other}"),
    }
}

#[tokio::test]
async fn fetch_dates_each_property_by_when_its_current_value_was_set() {
    let (sim, client) = portal(vec![ada()], &["firstname", "lastname", "city"]).await;
    let id = id_of(&sim, "ada@example.com");

    // A person renames her, the sync changes her last name, then the person
    // puts the first name back as it was: each at its own time.
    sim.advance_clock(Duration::from_secs(60));
    sim.edit("ada@example.com", &[("firstname", "Augusta")]);
    sim.advance_clock(Duration::from_secs(60));
    let written = client
        .apply(&[Write {
            op: WriteOp::Update { id: id.clone() },
            key: "ada@example.com".into(),
            fields: [("properties.lastname".to_string(), "Byron".into())].into(),
        }])
        .await
        .unwrap();
    assert!(written[0].is_ok(), "{written:?}");
    let lastname_set = updated_at(&sim, "ada@example.com");
    sim.advance_clock(Duration::from_secs(60));
    sim.edit("ada@example.com", &[("firstname", "Ada")]);
    let firstname_set = updated_at(&sim, "ada@example.com");

    let records = client.fetch(std::slice::from_ref(&id)).await.unwrap();
    let record = only(&records, &id);
    assert_eq!(
        record.changed_at,
        dates(&[
            ("properties.firstname", firstname_set),
            ("properties.lastname", lastname_set),
        ]),
        "city was never set, so it has no time of its own"
    );
    assert!(lastname_set < firstname_set);
    assert_eq!(record.updated_at, firstname_set);
    assert_eq!(record.fields["properties.firstname"], "Ada");
}

#[tokio::test]
async fn lookup_dates_each_contact_by_its_own_history() {
    let grace = contact_at(
        "grace@example.com",
        &[("firstname", "Grace"), ("lastname", "Hopper")],
        Some("2026-02-01T08:00:00.000Z"),
    );
    let (sim, client) = portal(vec![ada(), grace], &["firstname", "lastname"]).await;

    sim.advance_clock(Duration::from_secs(60));
    sim.edit("grace@example.com", &[("lastname", "Murray Hopper")]);
    let grace_renamed = updated_at(&sim, "grace@example.com");
    sim.advance_clock(Duration::from_secs(60));
    sim.edit("ada@example.com", &[("firstname", "Augusta")]);
    let ada_renamed = updated_at(&sim, "ada@example.com");

    let records = client
        .lookup(&["ada@example.com".into(), "grace@example.com".into()])
        .await
        .unwrap();
    let ada = only(&records, &id_of(&sim, "ada@example.com"));
    assert_eq!(
        ada.changed_at,
        dates(&[
            ("properties.firstname", ada_renamed),
            ("properties.lastname", millis(SEEDED)),
        ])
    );
    let grace = only(&records, &id_of(&sim, "grace@example.com"));
    assert_eq!(
        grace.changed_at,
        dates(&[
            ("properties.firstname", millis("2026-02-01T08:00:00.000Z")),
            ("properties.lastname", grace_renamed),
        ])
    );
    let reads = batch_reads(&sim, 0);
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].body["idProperty"], "email");
    assert_eq!(asked_history(&reads[0]), ["firstname", "lastname"]);
}

#[tokio::test]
async fn history_properties_can_be_changed_at_run_time() {
    let (sim, client) = portal(vec![ada()], &[]).await;
    let id = id_of(&sim, "ada@example.com");
    sim.advance_clock(Duration::from_secs(60));
    sim.edit("ada@example.com", &[("firstname", "Augusta")]);
    let renamed = updated_at(&sim, "ada@example.com");

    let plain = client.fetch(std::slice::from_ref(&id)).await.unwrap();
    assert!(only(&plain, &id).changed_at.is_empty(), "{plain:?}");

    client.read_history(vec!["firstname".into(), "firstname".into(), String::new()]);
    let dated = client.fetch(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(
        only(&dated, &id).changed_at,
        dates(&[("properties.firstname", renamed)])
    );

    client.read_history(vec![]);
    let plain = client.fetch(std::slice::from_ref(&id)).await.unwrap();
    assert!(only(&plain, &id).changed_at.is_empty(), "{plain:?}");

    let asked: Vec<Vec<String>> = batch_reads(&sim, 0).iter().map(asked_history).collect();
    assert_eq!(
        asked,
        [vec![], vec!["firstname".to_string()], vec![]],
        "history is asked for once, without repeats or blanks"
    );
}

#[tokio::test]
async fn reads_with_history_go_50_at_a_time_and_without_it_100() {
    let contacts: Vec<SeedContact> = (0..150)
        .map(|i| {
            contact_at(
                &format!("c{i:03}@example.com"),
                &[("firstname", "Kit")],
                Some(SEEDED),
            )
        })
        .collect();
    let (sim, client) = portal(contacts, &[]).await;
    let emails: Vec<String> = (0..150).map(|i| format!("c{i:03}@example.com")).collect();
    let ids: Vec<String> = emails.iter().map(|e| id_of(&sim, e)).collect();

    let plain = client.fetch(&ids).await.unwrap();
    assert_eq!(plain.len(), 150);
    assert!(plain.iter().all(|r| r.changed_at.is_empty()));
    let reads = batch_reads(&sim, 0);
    assert_eq!(input_counts(&reads), [100, 50]);
    assert!(
        reads.iter().all(|r| asked_history(r).is_empty()),
        "no history asked for: {reads:?}"
    );

    client.read_history(vec!["firstname".into()]);
    for (label, records) in [
        ("fetch", client.fetch(&ids).await.unwrap()),
        ("lookup", client.lookup(&emails).await.unwrap()),
    ] {
        assert_eq!(records.len(), 150, "{label}");
        assert!(
            records
                .iter()
                .all(|r| r.changed_at == dates(&[("properties.firstname", millis(SEEDED))])),
            "{label}: {records:?}"
        );
    }
    let reads = batch_reads(&sim, 0);
    assert_eq!(
        input_counts(&reads),
        [100, 50, 50, 50, 50, 50, 50, 50],
        "fetch and lookup with history send 50 a call"
    );
    assert!(
        reads[2..].iter().all(|r| asked_history(r) == ["firstname"]),
        "{reads:?}"
    );
}

#[tokio::test]
async fn polls_leave_change_times_to_fetch_and_lookup() {
    let (sim, client) = portal(vec![ada()], &["firstname"]).await;
    let id = id_of(&sim, "ada@example.com");

    // The first poll lists every contact; the next one searches for changes.
    let listed = client.poll(None).await.unwrap();
    assert_eq!(listed.records.len(), 1);
    sim.advance_clock(Duration::from_secs(60));
    sim.edit("ada@example.com", &[("firstname", "Augusta")]);
    let renamed = updated_at(&sim, "ada@example.com");
    let searched = client.poll(Some(&listed.cursor)).await.unwrap();
    assert_eq!(searched.records.len(), 1);
    for record in listed.records.iter().chain(&searched.records) {
        assert!(record.changed_at.is_empty(), "{record:?}");
    }
    let polls = sim.requests();
    assert!(
        polls
            .iter()
            .all(|r| !r.query.contains("propertiesWithHistory")
                && r.body.get("propertiesWithHistory").is_none()),
        "{polls:?}"
    );

    // The same contact read by id is dated.
    let fetched = client.fetch(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(
        only(&fetched, &id).changed_at,
        dates(&[("properties.firstname", renamed)])
    );
}
