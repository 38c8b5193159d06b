//! Mailchimp member tags through the connector: the client reads a member's
//! tags into the record path `tags` and writes that path with the member tags
//! endpoint, against the simulator over real HTTP. What the client sends is
//! read back from the simulator's request journal.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use tandem_core::{Connector, ErrorKind, FieldMap, Record, Write, WriteOp};
use tandem_mailchimp::sim::{MailchimpSim, Seed, SeedMember, SimConfig, SimRequest};
use tandem_mailchimp::{MailchimpClient, MailchimpConfig};

/// A simulator seeded with these members (subscribed unless `(email, status)`
/// says otherwise), recording requests, and a client for it.
async fn audience(members: &[(&str, &str)]) -> (MailchimpSim, MailchimpClient) {
    let config = SimConfig::default();
    let (key, list) = (config.api_key.clone(), config.list_id.clone());
    let sim = MailchimpSim::new(config);
    let members = members
        .iter()
        .map(|(email, status)| SeedMember {
            email_address: email.to_string(),
            status: Some(status.to_string()),
            merge_fields: Default::default(),
            last_changed: Some("2026-03-01T09:00:00+00:00".into()),
        })
        .collect();
    sim.seed(Seed {
        merge_fields: vec![],
        members,
    })
    .unwrap();
    let url = sim.clone().spawn().await.unwrap();
    let mut config = MailchimpConfig::new(url, SecretString::from(key), list);
    config.http.max_retries = 1;
    config.http.backoff = Duration::from_millis(10);
    sim.record_requests();
    (sim, MailchimpClient::new(config).unwrap())
}

/// The record of the member with this email, read by the client.
async fn record(client: &MailchimpClient, email: &str) -> Record {
    let mut found = client.lookup(&[email.to_string()]).await.unwrap();
    assert_eq!(found.len(), 1, "{email}: {found:?}");
    found.remove(0)
}

fn fields(pairs: &[(&str, Value)]) -> FieldMap {
    pairs
        .iter()
        .map(|(path, value)| (path.to_string(), value.clone()))
        .collect()
}

fn update(record: &Record, pairs: &[(&str, Value)]) -> Write {
    Write {
        op: WriteOp::Update {
            id: record.id.clone(),
        },
        key: record.key.clone().unwrap().to_lowercase(),
        fields: fields(pairs),
    }
}

fn create(email: &str, pairs: &[(&str, Value)]) -> Write {
    Write {
        op: WriteOp::Create,
        key: email.to_string(),
        fields: fields(pairs),
    }
}

/// Apply writes and expect every one to succeed.
async fn apply(client: &MailchimpClient, writes: &[Write]) -> Vec<Record> {
    client
        .apply(writes)
        .await
        .unwrap()
        .into_iter()
        .map(|outcome| outcome.unwrap())
        .collect()
}

fn tags(record: &Record) -> &Value {
    record
        .fields
        .get("tags")
        .unwrap_or_else(|| panic!("no `tags` in {record:?}"))
}

/// The member's tag names in the simulator, sorted.
fn sim_tags(sim: &MailchimpSim, email: &str) -> Vec<String> {
    let member = sim.member(email).unwrap();
    let mut names: Vec<String> = member
        .tags
        .unwrap()
        .into_iter()
        .map(|tag| tag.name)
        .collect();
    names.sort();
    names
}

/// The requests received so far with this method whose path ends with `suffix`.
fn sent<'a>(requests: &'a [SimRequest], method: &str, suffix: &str) -> Vec<&'a SimRequest> {
    requests
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .collect()
}

/// Tandem never changes an existing member's consent: `status` goes only on a
/// batch subscribe that leaves existing members alone (`update_existing:
/// false`), and `status_if_new` only on one member's PUT (the upsert of a
/// member the batch found existing).
fn assert_consent_untouched(requests: &[SimRequest]) {
    let batch_path = format!("/lists/{}", SimConfig::default().list_id);
    for request in requests {
        let batch = request.method == "POST" && request.path.ends_with(&batch_path);
        if batch {
            assert_eq!(
                request.body["update_existing"], false,
                "a batch subscribe that changes existing members: {}",
                request.body
            );
        }
        let members = request.body["members"].as_array().cloned();
        let bodies = members.unwrap_or_else(|| vec![request.body.clone()]);
        for body in bodies {
            assert!(
                body.get("status").is_none() || batch,
                "{} {} sent status: {}",
                request.method,
                request.path,
                request.body
            );
            assert!(
                body.get("status_if_new").is_none()
                    || (request.method == "PUT" && request.path.contains("/members/")),
                "status_if_new outside a member's PUT: {} {}",
                request.method,
                request.path
            );
        }
    }
}

#[tokio::test]
async fn tags_are_read_into_the_tags_path_sorted_and_no_tags_is_an_empty_array() {
    assert!(tandem_mailchimp::check_path("tags").is_ok());
    let (sim, client) = audience(&[
        ("ada@example.com", "subscribed"),
        ("bob@example.com", "subscribed"),
    ])
    .await;
    sim.set_tags("ada@example.com", &["vip", "Customer", "beta"]);

    let page = client.poll(None).await.unwrap();
    let polled = |email: &str| {
        page.records
            .iter()
            .find(|r| r.key.as_deref() == Some(email))
            .unwrap_or_else(|| panic!("{email} not polled"))
            .clone()
    };
    assert_eq!(
        tags(&polled("ada@example.com")),
        &json!(["Customer", "beta", "vip"])
    );
    assert_eq!(tags(&polled("bob@example.com")), &json!([]));

    let ada = record(&client, "ada@example.com").await;
    assert_eq!(tags(&ada), &json!(["Customer", "beta", "vip"]));
    let fetched = client.fetch(std::slice::from_ref(&ada.id)).await.unwrap();
    assert_eq!(tags(&fetched[0]), &json!(["Customer", "beta", "vip"]));
}

#[tokio::test]
async fn a_member_with_more_tags_than_the_payload_shows_is_read_whole() {
    // The member payload shows at most 50 tags; the rest come from the tags endpoint.
    let (sim, client) = audience(&[("ada@example.com", "subscribed")]).await;
    let names: Vec<String> = (0..75).map(|i| format!("tag-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    sim.set_tags("ada@example.com", &refs);

    let ada = record(&client, "ada@example.com").await;
    assert_eq!(tags(&ada), &json!(names));
    let page = client.poll(None).await.unwrap();
    assert_eq!(tags(&page.records[0]), &json!(names));
    assert!(!sent(&sim.requests(), "GET", "/tags").is_empty());
}

#[tokio::test]
async fn an_update_adds_and_removes_tags_and_the_answer_shows_the_new_set() {
    let (sim, client) = audience(&[("ada@example.com", "subscribed")]).await;
    sim.set_tags("ada@example.com", &["a", "b", "keep"]);
    let ada = record(&client, "ada@example.com").await;

    let write = update(
        &ada,
        &[
            ("merge_fields.FNAME", json!("Augusta")),
            ("tags", json!(["keep", "d", "c"])),
        ],
    );
    let outcome = apply(&client, &[write]).await.remove(0);
    assert_eq!(tags(&outcome), &json!(["c", "d", "keep"]));
    assert_eq!(outcome.fields["merge_fields.FNAME"], "Augusta");
    assert_eq!(outcome.id, ada.id);
    assert_eq!(sim_tags(&sim, "ada@example.com"), ["c", "d", "keep"]);

    let requests = sim.requests();
    let patches = sent(&requests, "PATCH", &ada.id);
    assert_eq!(patches.len(), 1, "{requests:?}");
    assert!(patches[0].body.get("tags").is_none(), "{}", patches[0].body);
    let posts = sent(&requests, "POST", &format!("/members/{}/tags", ada.id));
    assert_eq!(
        posts.len(),
        1,
        "one tags request, by contact id: {requests:?}"
    );
    assert_eq!(
        posts[0].path,
        format!(
            "/lists/{}/members/{}/tags",
            SimConfig::default().list_id,
            ada.id
        )
    );
    assert_eq!(
        posts[0].body,
        json!({
            "tags": [
                { "name": "a", "status": "inactive" },
                { "name": "b", "status": "inactive" },
                { "name": "c", "status": "active" },
                { "name": "d", "status": "active" },
            ],
            "is_syncing": true,
        })
    );
    assert_consent_untouched(&requests);
}

#[tokio::test]
async fn an_update_of_tags_alone_reads_the_member_instead_of_patching_it() {
    let (sim, client) = audience(&[("ada@example.com", "subscribed")]).await;
    sim.set_tags("ada@example.com", &["old"]);
    let ada = record(&client, "ada@example.com").await;

    let outcome = apply(&client, &[update(&ada, &[("tags", json!(["new"]))])])
        .await
        .remove(0);
    assert_eq!(tags(&outcome), &json!(["new"]));
    assert_eq!(sim_tags(&sim, "ada@example.com"), ["new"]);

    // The same tags again change nothing; none at all clears them.
    let again = apply(&client, &[update(&ada, &[("tags", json!(["new"]))])])
        .await
        .remove(0);
    assert_eq!(tags(&again), &json!(["new"]));
    let cleared = apply(&client, &[update(&ada, &[("tags", Value::Null)])])
        .await
        .remove(0);
    assert_eq!(tags(&cleared), &json!([]));
    assert!(sim_tags(&sim, "ada@example.com").is_empty());

    let requests = sim.requests();
    assert!(sent(&requests, "PATCH", "").is_empty(), "{requests:?}");
    assert_eq!(
        sent(&requests, "POST", "/tags").len(),
        2,
        "one tags request per change, none for the same set: {requests:?}"
    );
    assert_consent_untouched(&requests);
}

#[tokio::test]
async fn a_create_with_tags_tags_the_new_member() {
    let (sim, client) = audience(&[]).await;

    let outcome = apply(
        &client,
        &[create(
            "nia@example.com",
            &[
                ("merge_fields.FNAME", json!("Nia")),
                ("tags", json!(["lead", "hubspot"])),
            ],
        )],
    )
    .await
    .remove(0);
    assert_eq!(tags(&outcome), &json!(["hubspot", "lead"]));
    assert_eq!(outcome.fields["status"], "subscribed");
    assert_eq!(sim_tags(&sim, "nia@example.com"), ["hubspot", "lead"]);

    let requests = sim.requests();
    let list = format!("/lists/{}", SimConfig::default().list_id);
    let batches = sent(&requests, "POST", &list);
    assert_eq!(batches.len(), 1, "{requests:?}");
    let member = &batches[0].body["members"][0];
    assert_eq!(member["tags"], json!(["lead", "hubspot"]));
    assert_eq!(member["status"], "subscribed");
    assert!(
        batches[0].body.get("sync_tags").is_none(),
        "{}",
        batches[0].body
    );
    assert!(
        sent(&requests, "POST", "/tags").is_empty(),
        "a new member needs no tags request: {requests:?}"
    );
    assert_consent_untouched(&requests);
}

#[tokio::test]
async fn a_create_that_meets_an_existing_member_ends_with_exactly_the_wanted_tags() {
    let (sim, client) = audience(&[("known@example.com", "unsubscribed")]).await;
    sim.set_tags("known@example.com", &["old", "keep"]);

    let outcome = apply(
        &client,
        &[create(
            "known@example.com",
            &[("tags", json!(["keep", "new"]))],
        )],
    )
    .await
    .remove(0);
    assert_eq!(tags(&outcome), &json!(["keep", "new"]));
    assert_eq!(sim_tags(&sim, "known@example.com"), ["keep", "new"]);
    assert_eq!(
        outcome.fields["status"], "unsubscribed",
        "the existing member's consent is kept"
    );

    // The batch subscribe reports the member as existing; a PUT upserts it
    // alone (keeping its status), and one tags request settles its tags.
    let requests = sim.requests();
    let hash = tandem_mailchimp::subscriber_hash("known@example.com");
    assert_eq!(sent(&requests, "PUT", &hash).len(), 1, "{requests:?}");
    let posts = sent(&requests, "POST", "/tags");
    assert_eq!(posts.len(), 1, "{requests:?}");
    let mut changes: Vec<String> = posts[0].body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{} {}", t["name"], t["status"]))
        .collect();
    changes.sort();
    assert_eq!(changes, [r#""new" "active""#, r#""old" "inactive""#]);
    assert_consent_untouched(&requests);
}

#[tokio::test]
async fn no_write_of_tags_sends_status() {
    let (sim, client) = audience(&[
        ("ada@example.com", "subscribed"),
        ("left@example.com", "unsubscribed"),
        ("gone@example.com", "cleaned"),
    ])
    .await;
    sim.set_tags("left@example.com", &["stale"]);
    let ada = record(&client, "ada@example.com").await;
    let gone = record(&client, "gone@example.com").await;

    let outcomes = apply(
        &client,
        &[
            create("new@example.com", &[("tags", json!(["crm"]))]),
            create(
                "left@example.com",
                &[
                    ("merge_fields.FNAME", json!("Lea")),
                    ("tags", json!(["crm"])),
                ],
            ),
            update(
                &ada,
                &[("merge_fields.LNAME", json!("L")), ("tags", json!(["crm"]))],
            ),
            update(&gone, &[("tags", json!(["crm"]))]),
        ],
    )
    .await;
    for outcome in &outcomes {
        assert_eq!(tags(outcome), &json!(["crm"]), "{outcome:?}");
    }
    assert_eq!(outcomes[1].fields["status"], "unsubscribed");
    assert_eq!(outcomes[3].fields["status"], "cleaned");
    let requests = sim.requests();
    assert!(!sent(&requests, "POST", "/tags").is_empty(), "{requests:?}");
    assert_consent_untouched(&requests);
}

#[tokio::test]
async fn a_tag_spelled_differently_is_kept_rather_than_removed() {
    // Tag names are reported to match without regard to case: removing `VIP` to
    // add `vip` could take the tag away. The client keeps it.
    let (sim, client) = audience(&[("ada@example.com", "subscribed")]).await;
    sim.set_tags("ada@example.com", &["VIP"]);
    let ada = record(&client, "ada@example.com").await;

    let outcome = apply(&client, &[update(&ada, &[("tags", json!(["vip", "new"]))])])
        .await
        .remove(0);
    assert_eq!(tags(&outcome), &json!(["VIP", "new"]));
    let requests = sim.requests();
    let posts = sent(&requests, "POST", "/tags");
    assert_eq!(posts.len(), 1, "{requests:?}");
    assert_eq!(
        posts[0].body["tags"],
        json!([{ "name": "new", "status": "active" }])
    );
}

#[tokio::test]
async fn tags_that_are_not_a_list_of_names_refuse_that_record_only() {
    let (sim, client) = audience(&[
        ("ada@example.com", "subscribed"),
        ("bob@example.com", "subscribed"),
    ])
    .await;
    let ada = record(&client, "ada@example.com").await;
    let bob = record(&client, "bob@example.com").await;

    let outcomes = client
        .apply(&[
            update(&ada, &[("tags", json!("vip;lead"))]),
            update(&bob, &[("tags", json!(["vip"]))]),
            create("new@example.com", &[("tags", json!({ "vip": true }))]),
        ])
        .await
        .unwrap();
    let refused = outcomes[0].as_ref().unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::BadRecord, "{refused}");
    assert!(refused.to_string().contains("vip;lead"), "{refused}");
    assert_eq!(tags(outcomes[1].as_ref().unwrap()), &json!(["vip"]));
    assert_eq!(
        outcomes[2].as_ref().unwrap_err().kind(),
        ErrorKind::BadRecord
    );
    assert!(sim.member("new@example.com").is_none());
    assert!(sim_tags(&sim, "ada@example.com").is_empty());
}
