//! Simulator fidelity: each simulator, driven through real HTTP on loopback,
//! behaves the way its vendor's API does according to the vendor's public
//! documentation and specification, for what the simulator implements.
//!
//! These tests state the vendor's behaviour, not the simulator's: where the two
//! disagree the test fails, and the simulator is what needs fixing. They do not
//! cover what the simulators deliberately leave out (webhooks, associations,
//! rate limits) and they do not touch the engine.

use reqwest::RequestBuilder;
use serde_json::Value;

/// A response as the tests look at it: status, content type and JSON body
/// (`Value::Null` for an empty body).
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

async fn answer(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("the simulator answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.expect("a readable body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    Answer {
        status,
        content_type,
        body,
    }
}

mod hubspot {
    //! HubSpot CRM v3 contacts (the vendor documentation, contacts API).

    use std::collections::BTreeSet;
    use std::time::Duration;

    use reqwest::RequestBuilder;
    use serde_json::{Value, json};
    use tandem_hubspot::sim::{HubSpotSim, Seed, SeedContact, SimConfig};

    use super::{Answer, answer};

    const CONTACTS: &str = "/crm/v3/objects/contacts";

    /// A simulator on loopback and a client that authenticates to it.
    struct Portal {
        sim: HubSpotSim,
        url: String,
        http: reqwest::Client,
        token: String,
    }

    impl Portal {
        async fn start(contacts: Vec<SeedContact>) -> Portal {
            Portal::with_config(SimConfig::default(), contacts).await
        }

        async fn with_config(config: SimConfig, contacts: Vec<SeedContact>) -> Portal {
            let token = config.token.clone();
            let sim = HubSpotSim::new(config);
            sim.seed(Seed {
                properties: vec![],
                contacts,
            })
            .unwrap();
            let url = sim.clone().spawn().await.unwrap();
            Portal {
                sim,
                url,
                http: reqwest::Client::new(),
                token,
            }
        }

        fn get(&self, path: &str) -> RequestBuilder {
            self.http
                .get(format!("{}{path}", self.url))
                .bearer_auth(&self.token)
        }

        async fn post(&self, path: &str, body: Value) -> Answer {
            answer(
                self.http
                    .post(format!("{}{path}", self.url))
                    .bearer_auth(&self.token)
                    .json(&body),
            )
            .await
        }

        async fn post_raw(&self, path: &str, body: &'static str) -> Answer {
            answer(
                self.http
                    .post(format!("{}{path}", self.url))
                    .bearer_auth(&self.token)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await
        }

        async fn search(&self, body: Value) -> Answer {
            self.post(&format!("{CONTACTS}/search"), body).await
        }

        async fn batch(&self, action: &str, inputs: Value) -> Answer {
            self.post(
                &format!("{CONTACTS}/batch/{action}"),
                json!({ "inputs": inputs }),
            )
            .await
        }

        /// The contact with this email, with these properties; `None` on a 404.
        async fn by_email(&self, email: &str, properties: &str) -> Option<Value> {
            let found = answer(
                self.get(&format!("{CONTACTS}/{email}"))
                    .query(&[("idProperty", "email"), ("properties", properties)]),
            )
            .await;
            match found.status {
                200 => Some(found.body),
                404 => None,
                other => panic!("reading {email}: {other} {}", found.body),
            }
        }

        /// Ids of every live contact, walking the list.
        async fn listed_ids(&self) -> BTreeSet<String> {
            let mut ids = BTreeSet::new();
            let mut after: Option<String> = None;
            loop {
                let mut request = self.get(CONTACTS).query(&[("limit", "100")]);
                if let Some(after) = &after {
                    request = request.query(&[("after", after)]);
                }
                let page = answer(request).await;
                assert_eq!(page.status, 200, "{}", page.body);
                ids.extend(page.body["results"].as_array().unwrap().iter().map(id_of));
                match page.body["paging"]["next"]["after"].as_str() {
                    Some(next) => after = Some(next.to_string()),
                    None => return ids,
                }
            }
        }
    }

    use crate::support::contact_at as contact;

    /// `count` seeded contacts, `c000@example.com` upwards, each changed a minute after the last.
    fn numbered(count: usize) -> Vec<SeedContact> {
        (0..count)
            .map(|i| {
                let at = format!("2026-03-01T{:02}:{:02}:00.000Z", 8 + i / 60, i % 60);
                contact(&format!("c{i:03}@example.com"), &[], Some(&at))
            })
            .collect()
    }

    fn id_of(object: &Value) -> String {
        object["id"].as_str().expect("id is a string").to_string()
    }

    fn emails(results: &Value) -> Vec<String> {
        results
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["properties"]["email"].as_str().unwrap().to_string())
            .collect()
    }

    /// Epoch milliseconds of a UTC time on 2026-03-01, as a filter value.
    fn millis(hour: u8, minute: u8) -> String {
        let at = time::Date::from_calendar_date(2026, time::Month::March, 1)
            .unwrap()
            .with_hms(hour, minute, 0)
            .unwrap()
            .assume_utc();
        (at.unix_timestamp() * 1000).to_string()
    }

    /// HubSpot's error JSON (§1.8): `status:"error"`, `message`, `correlationId`, `category`.
    fn assert_error(answer: &Answer, status: u16, category: &str) {
        assert_eq!(answer.status, status, "{}", answer.body);
        assert!(
            answer.content_type.starts_with("application/json"),
            "content type {:?}",
            answer.content_type
        );
        let body = &answer.body;
        assert_eq!(body["status"], "error", "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(
            body["correlationId"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            "{body}"
        );
        assert_eq!(body["category"], category, "{body}");
    }

    /// A search that matches everything through `n` distinct filters on `lastmodifieddate`.
    fn filters(n: usize) -> Value {
        (0..n)
            .map(|i| json!({"propertyName": "lastmodifieddate", "operator": "GT", "value": i.to_string()}))
            .collect()
    }

    fn groups_of(sizes: &[usize]) -> Value {
        json!({ "filterGroups": sizes.iter().map(|&n| json!({ "filters": filters(n) })).collect::<Vec<_>>() })
    }

    #[tokio::test]
    async fn a_missing_or_wrong_bearer_token_is_a_401_with_hubspot_error_json() {
        let portal = Portal::start(numbered(1)).await;
        let url = format!("{}{CONTACTS}", portal.url);

        let missing = answer(portal.http.get(&url)).await;
        assert_error(&missing, 401, "INVALID_AUTHENTICATION");

        let wrong = answer(portal.http.get(&url).bearer_auth("not-the-token")).await;
        assert_error(&wrong, 401, "INVALID_AUTHENTICATION");

        let right = answer(portal.get(CONTACTS)).await;
        assert_eq!(right.status, 200, "{}", right.body);
    }

    #[tokio::test]
    async fn the_list_pages_with_after_across_more_than_a_hundred_contacts() {
        let portal = Portal::start(numbered(250)).await;

        let first = answer(portal.get(CONTACTS)).await;
        assert_eq!(first.status, 200);
        assert_eq!(
            first.body["results"].as_array().unwrap().len(),
            10,
            "the default limit is 10"
        );

        let mut sizes = Vec::new();
        let mut ids = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = portal
                .get(CONTACTS)
                .query(&[("limit", "100"), ("properties", "email")]);
            if let Some(after) = &after {
                request = request.query(&[("after", after)]);
            }
            let page = answer(request).await;
            assert_eq!(page.status, 200, "{}", page.body);
            let results = page.body["results"].as_array().unwrap();
            sizes.push(results.len());
            ids.extend(results.iter().map(id_of));
            seen.extend(emails(&page.body["results"]));
            match &page.body.get("paging") {
                Some(paging) => {
                    let next = paging["next"]["after"]
                        .as_str()
                        .expect("paging.next.after is a string");
                    after = Some(next.to_string());
                }
                None => break,
            }
            assert!(sizes.len() < 10, "the list does not end");
        }
        assert_eq!(
            sizes,
            [100, 100, 50],
            "paging is absent only on the last page"
        );
        assert_eq!(ids.len(), 250, "every contact once");
        assert_eq!(seen.len(), 250);
    }

    #[tokio::test]
    async fn the_list_rejects_a_limit_over_100() {
        let portal = Portal::start(numbered(3)).await;

        let hundred = answer(portal.get(CONTACTS).query(&[("limit", "100")])).await;
        assert_eq!(hundred.status, 200, "{}", hundred.body);

        let over = answer(portal.get(CONTACTS).query(&[("limit", "101")])).await;
        assert_error(&over, 400, "VALIDATION_ERROR");
    }

    #[tokio::test]
    async fn property_values_are_strings_and_a_requested_unset_property_is_null() {
        let portal = Portal::start(vec![contact(
            "ada@example.com",
            &[("firstname", "Ada"), ("hs_email_optout", "false")],
            None,
        )])
        .await;

        let page = answer(portal.get(CONTACTS).query(&[(
            "properties",
            "email,firstname,phone,hs_email_optout,hs_object_id,lastmodifieddate",
        )]))
        .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let ada = &page.body["results"][0];
        let id = id_of(ada);
        assert!(id.parse::<u64>().is_ok(), "the id holds a number: {id}");
        let properties = ada["properties"].as_object().unwrap();
        assert_eq!(
            properties["hs_object_id"],
            json!(id),
            "a number, as a string"
        );
        assert_eq!(
            properties["hs_email_optout"], "false",
            "a bool, as a string"
        );
        assert_eq!(properties["firstname"], "Ada");
        assert!(properties["lastmodifieddate"].is_string());
        assert!(
            properties.contains_key("phone") && properties["phone"].is_null(),
            "requested but unset: {ada}"
        );
        for (name, value) in properties {
            assert!(value.is_string() || value.is_null(), "{name}: {value}");
        }
        for key in ["createdAt", "updatedAt"] {
            assert!(ada[key].is_string(), "{key}: {ada}");
        }
        assert_eq!(ada["archived"], false);
    }

    #[tokio::test]
    async fn one_contact_is_read_by_id_or_by_email_and_a_missing_one_is_a_404() {
        let portal = Portal::start(vec![contact(
            "ada@example.com",
            &[("firstname", "Ada")],
            None,
        )])
        .await;
        let id = portal.sim.contact_by_email("ada@example.com").unwrap().id;

        let by_id = answer(
            portal
                .get(&format!("{CONTACTS}/{id}"))
                .query(&[("properties", "email,firstname")]),
        )
        .await;
        assert_eq!(by_id.status, 200, "{}", by_id.body);
        assert_eq!(id_of(&by_id.body), id);
        assert_eq!(by_id.body["properties"]["firstname"], "Ada");

        let by_email = portal
            .by_email("ada@example.com", "firstname")
            .await
            .expect("found by email");
        assert_eq!(id_of(&by_email), id);
        assert_eq!(by_email["properties"]["firstname"], "Ada");

        let missing = answer(portal.get(&format!("{CONTACTS}/999999"))).await;
        assert_error(&missing, 404, "OBJECT_NOT_FOUND");
        let missing_email = answer(
            portal
                .get(&format!("{CONTACTS}/nobody@example.com"))
                .query(&[("idProperty", "email")]),
        )
        .await;
        assert_error(&missing_email, 404, "OBJECT_NOT_FOUND");
    }

    #[tokio::test]
    async fn search_filters_lastmodifieddate_with_epoch_millis_and_sorts_both_ways() {
        // Seeded out of order, so an answer in id order would show.
        let portal = Portal::start(vec![
            contact("c2@example.com", &[], Some("2026-03-01T10:02:00.000Z")),
            contact("c0@example.com", &[], Some("2026-03-01T10:00:00.000Z")),
            contact("c3@example.com", &[], Some("2026-03-01T10:03:00.000Z")),
            contact("c1@example.com", &[], Some("2026-03-01T10:01:00.000Z")),
        ])
        .await;
        let window = |direction: &str| {
            json!({
                "filterGroups": [{ "filters": [
                    { "propertyName": "lastmodifieddate", "operator": "GTE", "value": millis(10, 1) },
                    { "propertyName": "lastmodifieddate", "operator": "LTE", "value": millis(10, 2) },
                ]}],
                "sorts": [{ "propertyName": "lastmodifieddate", "direction": direction }],
                "properties": ["email", "lastmodifieddate"],
            })
        };

        let ascending = portal.search(window("ASCENDING")).await;
        assert_eq!(ascending.status, 200, "{}", ascending.body);
        assert_eq!(
            emails(&ascending.body["results"]),
            ["c1@example.com", "c2@example.com"],
            "both bounds are inclusive"
        );
        assert_eq!(ascending.body["total"], 2);
        assert_eq!(
            ascending.body["results"][0]["properties"]["lastmodifieddate"],
            "2026-03-01T10:01:00.000Z"
        );

        let descending = portal.search(window("DESCENDING")).await;
        assert_eq!(descending.status, 200, "{}", descending.body);
        assert_eq!(
            emails(&descending.body["results"]),
            ["c2@example.com", "c1@example.com"]
        );

        let since = portal
            .search(json!({
                "filterGroups": [{ "filters": [
                    { "propertyName": "lastmodifieddate", "operator": "GTE", "value": millis(10, 2) },
                ]}],
                "sorts": [{ "propertyName": "lastmodifieddate", "direction": "DESCENDING" }],
            }))
            .await;
        assert_eq!(
            emails(&since.body["results"]),
            ["c3@example.com", "c2@example.com"]
        );
    }

    #[tokio::test]
    async fn search_pages_with_integer_offsets_and_reports_the_total() {
        let portal = Portal::start(numbered(5)).await;
        let page = |after: Option<&str>| {
            let mut body = json!({
                "sorts": [{ "propertyName": "lastmodifieddate", "direction": "ASCENDING" }],
                "limit": 2,
            });
            if let Some(after) = after {
                body["after"] = json!(after);
            }
            portal.search(body)
        };

        let mut order = Vec::new();
        let mut afters = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let answer = page(after.as_deref()).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert_eq!(answer.body["total"], 5, "total counts every match");
            order.extend(emails(&answer.body["results"]));
            match answer.body.get("paging") {
                Some(paging) => {
                    let next = paging["next"]["after"].as_str().unwrap().to_string();
                    afters.push(next.clone());
                    after = Some(next);
                }
                None => break,
            }
            assert!(afters.len() < 5, "the search does not end");
        }
        assert_eq!(afters, ["2", "4"], "after is an offset into the results");
        let first = portal.search(json!({ "limit": 1 })).await;
        let properties = first.body["results"][0]["properties"].as_object().unwrap();
        for name in [
            "createdate",
            "email",
            "firstname",
            "hs_object_id",
            "lastmodifieddate",
            "lastname",
        ] {
            assert!(
                properties.contains_key(name),
                "default property {name}: {properties:?}"
            );
        }
        assert_eq!(
            order,
            (0..5)
                .map(|i| format!("c{i:03}@example.com"))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn search_rejects_a_limit_over_200() {
        let portal = Portal::start(numbered(3)).await;

        let two_hundred = portal.search(json!({ "limit": 200 })).await;
        assert_eq!(two_hundred.status, 200, "{}", two_hundred.body);
        assert_eq!(two_hundred.body["results"].as_array().unwrap().len(), 3);

        let over = portal.search(json!({ "limit": 201 })).await;
        assert_error(&over, 400, "VALIDATION_ERROR");
    }

    #[tokio::test]
    async fn search_pages_up_to_the_result_cap_and_rejects_paging_at_or_past_it() {
        // A cap of 30 stands in for HubSpot's 10,000, to keep the test small.
        let config = SimConfig {
            search_cap: 30,
            ..SimConfig::default()
        };
        let portal = Portal::with_config(config, numbered(45)).await;
        let page = |after: u32| {
            portal.search(json!({
                "sorts": [{ "propertyName": "lastmodifieddate", "direction": "ASCENDING" }],
                "limit": 10,
                "after": after.to_string(),
            }))
        };

        let mut seen = BTreeSet::new();
        for after in [0, 10, 20] {
            let answer = page(after).await;
            assert_eq!(answer.status, 200, "after={after}: {}", answer.body);
            assert_eq!(answer.body["total"], 45);
            seen.extend(emails(&answer.body["results"]));
        }
        assert_eq!(seen.len(), 30, "the first 30 results can be paged through");

        for after in [30, 31, 40] {
            let answer = page(after).await;
            assert_error(&answer, 400, "VALIDATION_ERROR");
        }
    }

    #[tokio::test]
    async fn search_rejects_after_10000_with_the_default_cap_even_with_few_records() {
        let portal = Portal::start(numbered(3)).await;

        let below = portal.search(json!({ "after": "9999" })).await;
        assert_eq!(below.status, 200, "{}", below.body);
        assert!(below.body["results"].as_array().unwrap().is_empty());

        let at_cap = portal.search(json!({ "after": "10000" })).await;
        assert_error(&at_cap, 400, "VALIDATION_ERROR");
    }

    #[tokio::test]
    async fn search_rejects_more_than_5_groups_10_filters_a_group_or_25_filters() {
        let portal = Portal::start(numbered(2)).await;

        let five = portal.search(groups_of(&[1, 1, 1, 1, 1])).await;
        assert_eq!(five.status, 200, "{}", five.body);
        assert_eq!(five.body["total"], 2);

        let six = portal.search(groups_of(&[1, 1, 1, 1, 1, 1])).await;
        assert_error(&six, 400, "VALIDATION_ERROR");

        let eleven_in_a_group = portal.search(groups_of(&[11])).await;
        assert_error(&eleven_in_a_group, 400, "VALIDATION_ERROR");

        let twenty_six = portal.search(groups_of(&[10, 10, 6])).await;
        assert_error(&twenty_six, 400, "VALIDATION_ERROR");
    }

    #[tokio::test]
    async fn search_accepts_10_filters_in_a_group_and_25_filters_in_all() {
        // The limits since 2024-08-26 (HubSpot changelog): 5 groups, 10 filters a group, 25 in all.
        let portal = Portal::start(numbered(2)).await;

        let ten_in_a_group = portal.search(groups_of(&[10])).await;
        assert_eq!(ten_in_a_group.status, 200, "{}", ten_in_a_group.body);
        assert_eq!(ten_in_a_group.body["total"], 2);

        let twenty_five = portal.search(groups_of(&[10, 10, 5])).await;
        assert_eq!(twenty_five.status, 200, "{}", twenty_five.body);
        assert_eq!(twenty_five.body["total"], 2);
    }

    #[tokio::test]
    async fn batches_of_more_than_100_inputs_are_rejected() {
        let portal = Portal::start(vec![]).await;
        let inputs = |n: usize| {
            (0..n)
                .map(|i| json!({ "properties": { "email": format!("b{i:03}@example.com") } }))
                .collect::<Value>()
        };

        let over = portal.batch("create", inputs(101)).await;
        assert_error(&over, 400, "VALIDATION_ERROR");
        assert!(portal.listed_ids().await.is_empty(), "nothing written");

        let read = portal
            .batch(
                "read",
                (0..101).map(|i| json!({ "id": i.to_string() })).collect(),
            )
            .await;
        assert_error(&read, 400, "VALIDATION_ERROR");

        let hundred = portal.batch("create", inputs(100)).await;
        assert_eq!(hundred.status, 201, "{}", hundred.body);
        assert_eq!(hundred.body["results"].as_array().unwrap().len(), 100);
        assert_eq!(portal.listed_ids().await.len(), 100);
    }

    #[tokio::test]
    async fn batch_create_is_201_and_update_and_upsert_are_200_with_new_on_upserts() {
        let portal = Portal::start(vec![]).await;

        let created = portal
            .batch(
                "create",
                json!([
                    { "properties": { "email": "ada@example.com", "firstname": "Ada" } },
                    { "properties": { "email": "grace@example.com", "firstname": "Grace" } },
                ]),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.body["status"], "COMPLETE");
        let results = created.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        let ada = results
            .iter()
            .find(|r| r["properties"]["email"] == "ada@example.com")
            .map(id_of)
            .expect("ada created");

        let updated = portal
            .batch(
                "update",
                json!([{ "id": ada, "properties": { "lastname": "Lovelace" } }]),
            )
            .await;
        assert_eq!(updated.status, 200, "{}", updated.body);
        assert_eq!(id_of(&updated.body["results"][0]), ada);
        let stored = portal
            .by_email("ada@example.com", "firstname,lastname")
            .await
            .unwrap();
        assert_eq!(stored["properties"]["lastname"], "Lovelace");
        assert_eq!(
            stored["properties"]["firstname"], "Ada",
            "values not sent stay"
        );

        let upserted = portal
            .batch(
                "upsert",
                json!([
                    { "id": "ada@example.com", "idProperty": "email", "properties": { "firstname": "Augusta" } },
                    { "id": "alan@example.org", "idProperty": "email", "properties": { "firstname": "Alan" } },
                ]),
            )
            .await;
        assert_eq!(upserted.status, 200, "{}", upserted.body);
        let results = upserted.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        // Results may come back in any order: match them by id.
        let (existing, fresh): (Vec<&Value>, Vec<&Value>) =
            results.iter().partition(|r| id_of(r) == ada);
        assert_eq!(existing.len(), 1, "{}", upserted.body);
        assert_eq!(existing[0]["new"], false);
        assert_eq!(fresh[0]["new"], true);
        let alan = portal
            .by_email("alan@example.org", "firstname")
            .await
            .expect("alan created");
        assert_eq!(id_of(&alan), id_of(fresh[0]));
        assert_eq!(alan["properties"]["firstname"], "Alan");
        let ada_now = portal
            .by_email("ada@example.com", "firstname")
            .await
            .unwrap();
        assert_eq!(ada_now["properties"]["firstname"], "Augusta");
    }

    #[tokio::test]
    async fn an_unknown_property_is_a_400_validation_error() {
        let portal = Portal::start(vec![]).await;
        let bad = json!({ "email": "ada@example.com", "favourite_colour": "blue" });

        let single = portal.post(CONTACTS, json!({ "properties": bad })).await;
        assert_error(&single, 400, "VALIDATION_ERROR");
        let message = single.body["message"].as_str().unwrap();
        assert!(
            message.starts_with("Property values were not valid"),
            "{message}"
        );

        let batch = portal.batch("create", json!([{ "properties": bad }])).await;
        assert_error(&batch, 400, "VALIDATION_ERROR");
        let message = batch.body["message"].as_str().unwrap();
        assert!(
            message.starts_with("Property values were not valid"),
            "{message}"
        );
        assert!(portal.by_email("ada@example.com", "email").await.is_none());
    }

    #[tokio::test]
    async fn a_batch_with_trace_ids_answers_207_naming_the_bad_input_and_applies_the_rest() {
        let portal = Portal::start(vec![]).await;

        let mixed = portal
            .batch(
                "create",
                json!([
                    { "properties": { "email": "ada@example.com" }, "objectWriteTraceId": "t-ada" },
                    { "properties": { "email": "bad@example.com", "favourite_colour": "blue" }, "objectWriteTraceId": "t-bad" },
                    { "properties": { "email": "grace@example.com" }, "objectWriteTraceId": "t-grace" },
                ]),
            )
            .await;
        assert_eq!(mixed.status, 207, "{}", mixed.body);
        let errors = mixed.body["errors"].as_array().expect("errors[]");
        assert_eq!(errors.len(), 1, "{}", mixed.body);
        assert_eq!(errors[0]["status"], "error");
        assert_eq!(errors[0]["category"], "VALIDATION_ERROR");
        assert_eq!(errors[0]["context"]["objectWriteTraceId"], json!(["t-bad"]));
        let mut written = emails(&mixed.body["results"]);
        written.sort();
        assert_eq!(written, ["ada@example.com", "grace@example.com"]);

        assert!(portal.by_email("ada@example.com", "email").await.is_some());
        assert!(
            portal
                .by_email("grace@example.com", "email")
                .await
                .is_some()
        );
        assert!(portal.by_email("bad@example.com", "email").await.is_none());
    }

    #[tokio::test]
    async fn a_batch_without_trace_ids_fails_whole_on_one_bad_input_and_writes_nothing() {
        let portal = Portal::start(vec![]).await;

        let mixed = portal
            .batch(
                "create",
                json!([
                    { "properties": { "email": "ada@example.com" } },
                    { "properties": { "email": "bad@example.com", "favourite_colour": "blue" } },
                    { "properties": { "email": "grace@example.com" } },
                ]),
            )
            .await;
        assert_error(&mixed, 400, "VALIDATION_ERROR");
        assert!(
            mixed.body["message"]
                .as_str()
                .unwrap()
                .starts_with("Property values were not valid"),
            "{}",
            mixed.body
        );
        assert!(portal.listed_ids().await.is_empty(), "nothing written");
        assert_eq!(portal.sim.stats().writes, 0);
    }

    #[tokio::test]
    async fn creating_a_contact_with_an_existing_email_is_a_409_conflict() {
        let portal = Portal::start(vec![contact("ada@example.com", &[], None)]).await;
        let existing = portal.sim.contact_by_email("ada@example.com").unwrap().id;

        let single = portal
            .post(
                CONTACTS,
                json!({ "properties": { "email": "ada@example.com", "firstname": "Twin" } }),
            )
            .await;
        assert_error(&single, 409, "CONFLICT");
        let message = single.body["message"].as_str().unwrap();
        assert!(message.contains("already exists"), "{message}");
        assert!(
            message.contains(&existing),
            "names the existing id: {message}"
        );

        let batch = portal
            .batch(
                "create",
                json!([{ "properties": { "email": "ada@example.com" } }]),
            )
            .await;
        assert_error(&batch, 409, "CONFLICT");
        assert_eq!(portal.listed_ids().await.len(), 1);
    }

    #[tokio::test]
    async fn lastmodifieddate_and_updated_at_advance_on_every_write_and_stay_equal() {
        let portal = Portal::start(vec![]).await;
        let stamps = |object: &Value| {
            let modified = object["properties"]["lastmodifieddate"]
                .as_str()
                .unwrap_or_else(|| panic!("no lastmodifieddate: {object}"))
                .to_string();
            let updated = object["updatedAt"].as_str().unwrap().to_string();
            assert_eq!(modified, updated, "{object}");
            tandem_core::clock::parse_rfc3339(&modified).expect("ISO 8601")
        };
        let read = |id: String| {
            let request = portal
                .get(&format!("{CONTACTS}/{id}"))
                .query(&[("properties", "lastmodifieddate")]);
            async move { answer(request).await.body }
        };

        let created = portal
            .post(
                CONTACTS,
                json!({ "properties": { "email": "ada@example.com" } }),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let id = id_of(&created.body);
        let mut last = stamps(&read(id.clone()).await);

        portal.sim.advance_clock(Duration::from_secs(1));
        let patched = answer(
            portal
                .http
                .patch(format!("{}{CONTACTS}/{id}", portal.url))
                .bearer_auth(&portal.token)
                .json(&json!({ "properties": { "firstname": "Ada" } })),
        )
        .await;
        assert_eq!(patched.status, 200, "{}", patched.body);
        let now = stamps(&read(id.clone()).await);
        assert!(now > last, "PATCH advanced it");
        last = now;

        portal.sim.advance_clock(Duration::from_secs(1));
        let updated = portal
            .batch(
                "update",
                json!([{ "id": id, "properties": { "lastname": "Lovelace" } }]),
            )
            .await;
        assert_eq!(updated.status, 200, "{}", updated.body);
        let now = stamps(&read(id.clone()).await);
        assert!(now > last, "batch/update advanced it");
        last = now;

        portal.sim.advance_clock(Duration::from_secs(1));
        let upserted = portal
            .batch(
                "upsert",
                json!([{ "id": "ada@example.com", "idProperty": "email", "properties": { "city": "London" } }]),
            )
            .await;
        assert_eq!(upserted.status, 200, "{}", upserted.body);
        let now = stamps(&read(id.clone()).await);
        assert!(now > last, "batch/upsert advanced it");
        last = now;

        // Two writes in a row, without moving the clock, still order.
        for city in ["Paris", "Rome"] {
            portal
                .batch(
                    "update",
                    json!([{ "id": id, "properties": { "city": city } }]),
                )
                .await;
            let now = stamps(&read(id.clone()).await);
            assert!(now > last, "back-to-back write to {city} advanced it");
            last = now;
        }
    }

    #[tokio::test]
    async fn archiving_answers_204_and_the_contact_leaves_the_list_and_search() {
        let portal = Portal::start(vec![
            contact("ada@example.com", &[], None),
            contact("grace@example.com", &[], None),
            contact("alan@example.org", &[], None),
        ])
        .await;
        let id = |email: &str| portal.sim.contact_by_email(email).unwrap().id;
        let (ada, grace, alan) = (
            id("ada@example.com"),
            id("grace@example.com"),
            id("alan@example.org"),
        );

        let deleted = answer(
            portal
                .http
                .delete(format!("{}{CONTACTS}/{ada}", portal.url))
                .bearer_auth(&portal.token),
        )
        .await;
        assert_eq!(deleted.status, 204);
        assert!(deleted.body.is_null(), "no body: {}", deleted.body);

        let archived = portal.batch("archive", json!([{ "id": grace }])).await;
        assert_eq!(archived.status, 204);
        assert!(archived.body.is_null(), "no body: {}", archived.body);

        assert_eq!(portal.listed_ids().await, BTreeSet::from([alan.clone()]));
        let search = portal.search(json!({ "limit": 200 })).await;
        assert_eq!(search.body["total"], 1, "{}", search.body);
        assert_eq!(emails(&search.body["results"]), ["alan@example.org"]);
        let gone = answer(portal.get(&format!("{CONTACTS}/{ada}"))).await;
        assert_error(&gone, 404, "OBJECT_NOT_FOUND");

        let listed = answer(portal.get(CONTACTS).query(&[("archived", "true")])).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        let mut ids: Vec<String> = listed.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["archived"], true, "{r}");
                id_of(r)
            })
            .collect();
        ids.sort();
        let mut expected = vec![ada, grace];
        expected.sort();
        assert_eq!(ids, expected, "archived=true lists the archived contacts");
    }

    #[tokio::test]
    async fn a_malformed_json_body_is_a_400() {
        let portal = Portal::start(vec![]).await;
        for path in [
            CONTACTS.to_string(),
            format!("{CONTACTS}/search"),
            format!("{CONTACTS}/batch/create"),
        ] {
            let broken = portal.post_raw(&path, r#"{"properties": {"email": "#).await;
            assert_error(&broken, 400, "VALIDATION_ERROR");
        }
        assert!(portal.listed_ids().await.is_empty());
    }

    // Property history (§1.2 `propertiesWithHistory`, §1.3, §1.5): entries of
    // `ValueWithTimestamp` (`value`, ISO 8601 `timestamp`, `sourceType`, optional
    // `sourceId`), newest first, only for the properties asked for.

    /// `propertiesWithHistory` of one contact read by id, asking for `names`
    /// both as properties and with history.
    async fn history_of(portal: &Portal, id: &str, names: &str) -> Value {
        let read = answer(
            portal
                .get(&format!("{CONTACTS}/{id}"))
                .query(&[("properties", names), ("propertiesWithHistory", names)]),
        )
        .await;
        assert_eq!(read.status, 200, "{}", read.body);
        read.body["propertiesWithHistory"].clone()
    }

    /// The `updatedAt` of the contact with this email, in epoch milliseconds.
    fn updated_at(portal: &Portal, email: &str) -> i64 {
        let contact = portal.sim.contact_by_email(email).unwrap();
        tandem_core::clock::parse_rfc3339(&contact.updated_at).unwrap()
    }

    /// `(value, timestamp in ms, sourceType)` of each entry, in the order served.
    fn entries(history: &Value) -> Vec<(String, i64, String)> {
        history
            .as_array()
            .unwrap_or_else(|| panic!("not a history: {history}"))
            .iter()
            .map(|entry| {
                let timestamp = entry["timestamp"].as_str().expect("an ISO 8601 string");
                (
                    entry["value"].as_str().expect("a string value").to_string(),
                    tandem_core::clock::parse_rfc3339(timestamp).expect("ISO 8601"),
                    entry["sourceType"]
                        .as_str()
                        .expect("a sourceType")
                        .to_string(),
                )
            })
            .collect()
    }

    fn patch(portal: &Portal, id: &str, properties: Value) -> RequestBuilder {
        portal
            .http
            .patch(format!("{}{CONTACTS}/{id}", portal.url))
            .bearer_auth(&portal.token)
            .json(&json!({ "properties": properties }))
    }

    #[tokio::test]
    async fn property_history_lists_every_value_newest_first_for_the_properties_asked_for() {
        let seeded = "2026-03-01T10:00:00.000Z";
        let portal = Portal::start(vec![contact(
            "ada@example.com",
            &[("firstname", "Ada"), ("lastname", "Lovelace")],
            Some(seeded),
        )])
        .await;
        let id = portal.sim.contact_by_email("ada@example.com").unwrap().id;

        portal.sim.advance_clock(Duration::from_secs(60));
        let patched = answer(patch(&portal, &id, json!({ "firstname": "Augusta" }))).await;
        assert_eq!(patched.status, 200, "{}", patched.body);
        let second = updated_at(&portal, "ada@example.com");
        portal.sim.advance_clock(Duration::from_secs(60));
        let updated = portal
            .batch(
                "update",
                json!([{ "id": id, "properties": { "firstname": "Ada" } }]),
            )
            .await;
        assert_eq!(updated.status, 200, "{}", updated.body);
        let third = updated_at(&portal, "ada@example.com");

        let history = history_of(&portal, &id, "firstname").await;
        let names: Vec<&String> = history.as_object().unwrap().keys().collect();
        assert_eq!(names, ["firstname"], "only what was asked for: {history}");
        let first = tandem_core::clock::parse_rfc3339(seeded).unwrap();
        let served: Vec<(String, i64)> = entries(&history["firstname"])
            .into_iter()
            .map(|(value, at, _)| (value, at))
            .collect();
        assert_eq!(
            served,
            [
                ("Ada".to_string(), third),
                ("Augusta".to_string(), second),
                ("Ada".to_string(), first),
            ],
            "newest first: {history}"
        );

        // A name that is no property is ignored; a read without the parameter has none.
        let both = history_of(&portal, &id, "lastname,no_such_property").await;
        let names: Vec<&String> = both.as_object().unwrap().keys().collect();
        assert_eq!(names, ["lastname"], "{both}");
        let plain = answer(
            portal
                .get(&format!("{CONTACTS}/{id}"))
                .query(&[("properties", "firstname")]),
        )
        .await;
        assert!(
            plain.body.get("propertiesWithHistory").is_none(),
            "{}",
            plain.body
        );
    }

    #[tokio::test]
    async fn each_history_entry_says_whether_an_import_an_app_or_a_person_set_it() {
        let seeded = "2026-03-01T10:00:00.000Z";
        let portal = Portal::start(vec![contact(
            "ada@example.com",
            &[("firstname", "Ada")],
            Some(seeded),
        )])
        .await;
        let id = portal.sim.contact_by_email("ada@example.com").unwrap().id;
        portal.sim.advance_clock(Duration::from_secs(60));
        let written = answer(patch(&portal, &id, json!({ "firstname": "Augusta" }))).await;
        assert_eq!(written.status, 200, "{}", written.body);
        let by_app = updated_at(&portal, "ada@example.com");
        portal.sim.advance_clock(Duration::from_secs(60));
        portal
            .sim
            .edit("ada@example.com", &[("firstname", "Countess")])
            .unwrap();
        let by_person = updated_at(&portal, "ada@example.com");

        let history = history_of(&portal, &id, "firstname").await;
        let list = &history["firstname"];
        assert_eq!(
            entries(list),
            [
                ("Countess".to_string(), by_person, "CRM_UI".to_string()),
                ("Augusta".to_string(), by_app, "INTEGRATION".to_string()),
                (
                    "Ada".to_string(),
                    tandem_core::clock::parse_rfc3339(seeded).unwrap(),
                    "IMPORT".to_string()
                ),
            ],
            "{history}"
        );
        // A person's change names the user; an app's names the app.
        assert!(
            list[0]["sourceId"]
                .as_str()
                .is_some_and(|s| s.starts_with("userId:")),
            "{list}"
        );
        assert!(list[0]["updatedByUserId"].is_i64(), "{list}");
        assert!(
            list[1]["sourceId"].as_str().is_some_and(|s| !s.is_empty()),
            "{list}"
        );

        // Contacts created through the API start their history as the app's.
        let created = portal
            .post(
                CONTACTS,
                json!({ "properties": { "email": "grace@example.com", "firstname": "Grace" } }),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let history = history_of(&portal, &id_of(&created.body), "firstname").await;
        let sources: Vec<String> = entries(&history["firstname"])
            .into_iter()
            .map(|(_, _, source)| source)
            .collect();
        assert_eq!(sources, ["INTEGRATION"], "{history}");
    }

    #[tokio::test]
    async fn the_list_and_batch_read_serve_history_when_asked_and_search_never_does() {
        let portal = Portal::start(vec![contact(
            "ada@example.com",
            &[("firstname", "Ada")],
            Some("2026-03-01T10:00:00.000Z"),
        )])
        .await;
        let id = portal.sim.contact_by_email("ada@example.com").unwrap().id;
        let ada_history = |object: &Value| {
            entries(&object["propertiesWithHistory"]["firstname"])
                .into_iter()
                .map(|(value, _, _)| value)
                .collect::<Vec<_>>()
        };

        let listed = answer(portal.get(CONTACTS).query(&[
            ("properties", "firstname"),
            ("propertiesWithHistory", "firstname"),
        ]))
        .await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        assert_eq!(ada_history(&listed.body["results"][0]), ["Ada"]);
        let listed = answer(portal.get(CONTACTS).query(&[("properties", "firstname")])).await;
        assert!(
            listed.body["results"][0]
                .get("propertiesWithHistory")
                .is_none(),
            "{}",
            listed.body
        );

        let read = portal
            .post(
                &format!("{CONTACTS}/batch/read"),
                json!({ "inputs": [{ "id": id }], "properties": ["firstname"], "propertiesWithHistory": ["firstname"] }),
            )
            .await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(ada_history(&read.body["results"][0]), ["Ada"]);

        // Search has no such parameter: asking anyway changes nothing.
        let searched = portal
            .search(json!({ "properties": ["firstname"], "propertiesWithHistory": ["firstname"] }))
            .await;
        assert_eq!(searched.status, 200, "{}", searched.body);
        let found = &searched.body["results"][0];
        assert_eq!(found["properties"]["firstname"], "Ada");
        assert!(found.get("propertiesWithHistory").is_none(), "{found}");
    }

    #[tokio::test]
    async fn a_batch_read_with_history_takes_at_most_50_inputs() {
        let portal = Portal::start(numbered(51)).await;
        let ids: Vec<Value> = portal
            .listed_ids()
            .await
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        let path = format!("{CONTACTS}/batch/read");
        let read = |inputs: &[Value], history: bool| {
            let history: Vec<&str> = if history { vec!["email"] } else { vec![] };
            portal.post(
                &path,
                json!({ "inputs": inputs, "properties": ["email"], "propertiesWithHistory": history }),
            )
        };

        let over = read(&ids, true).await;
        assert_error(&over, 400, "VALIDATION_ERROR");
        assert!(
            over.body["message"].as_str().unwrap().contains("50"),
            "{}",
            over.body
        );

        let fifty = read(&ids[..50], true).await;
        assert_eq!(fifty.status, 200, "{}", fifty.body);
        let results = fifty.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 50);
        assert!(
            results
                .iter()
                .all(|r| r["propertiesWithHistory"]["email"].as_array().is_some()),
            "{}",
            fifty.body
        );

        // Without history the usual limit of 100 applies.
        let plain = read(&ids, false).await;
        assert_eq!(plain.status, 200, "{}", plain.body);
        assert_eq!(plain.body["results"].as_array().unwrap().len(), 51);
    }

    #[tokio::test]
    async fn the_history_batch_limit_is_configurable() {
        let config = SimConfig {
            history_batch_limit: 2,
            ..SimConfig::default()
        };
        let portal = Portal::with_config(config, numbered(3)).await;
        let ids: Vec<Value> = portal
            .listed_ids()
            .await
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        let path = format!("{CONTACTS}/batch/read");
        let read = |inputs: &[Value]| {
            portal.post(
                &path,
                json!({ "inputs": inputs, "properties": ["email"], "propertiesWithHistory": ["email"] }),
            )
        };
        assert_error(&read(&ids).await, 400, "VALIDATION_ERROR");
        assert_eq!(read(&ids[..2]).await.status, 200);
    }

    #[tokio::test]
    async fn undocumented_history_details_are_configurable() {
        // Whether rewriting a value adds an entry, and how an app's writes are
        // named, are not documented: by default a rewrite is recorded and apps
        // are `INTEGRATION`; both can be changed.
        for (repeats, source) in [(true, "INTEGRATION"), (false, "API")] {
            let config = SimConfig {
                history_repeats: repeats,
                api_source_type: source.into(),
                ..SimConfig::default()
            };
            let portal = Portal::with_config(
                config,
                vec![contact("ada@example.com", &[("firstname", "Ada")], None)],
            )
            .await;
            let id = portal.sim.contact_by_email("ada@example.com").unwrap().id;
            for name in ["Augusta", "Augusta"] {
                let written = answer(patch(&portal, &id, json!({ "firstname": name }))).await;
                assert_eq!(written.status, 200, "{}", written.body);
            }
            let history = history_of(&portal, &id, "firstname").await;
            let served: Vec<(String, String)> = entries(&history["firstname"])
                .into_iter()
                .map(|(value, _, source)| (value, source))
                .collect();
            let app = (String::from("Augusta"), source.to_string());
            let import = (String::from("Ada"), String::from("IMPORT"));
            let expected = if repeats {
                vec![app.clone(), app, import]
            } else {
                vec![app, import]
            };
            assert_eq!(served, expected, "{history}");
        }
    }

    #[tokio::test]
    async fn a_list_page_with_history_holds_fewer_contacts_and_paging_goes_on() {
        let portal = Portal::start(numbered(60)).await;
        let mut seen = BTreeSet::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut request = portal.get(CONTACTS).query(&[
                ("limit", "100"),
                ("properties", "email"),
                ("propertiesWithHistory", "email"),
            ]);
            if let Some(after) = &after {
                request = request.query(&[("after", after)]);
            }
            let page = answer(request).await;
            assert_eq!(page.status, 200, "{}", page.body);
            let results = page.body["results"].as_array().unwrap();
            assert!(
                results
                    .iter()
                    .all(|r| r["propertiesWithHistory"]["email"].is_array()),
                "{}",
                page.body
            );
            seen.extend(results.iter().map(id_of));
            pages += 1;
            match page.body["paging"]["next"]["after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        assert!(pages > 1, "60 contacts with history did not fit one page");
        assert_eq!(seen.len(), 60);
        let plain = answer(portal.get(CONTACTS).query(&[("limit", "100")])).await;
        assert_eq!(plain.body["results"].as_array().unwrap().len(), 60);
    }
}

mod mailchimp {
    //! Mailchimp Marketing v3 list members (the vendor documentation, list members).

    use std::collections::BTreeMap;
    use std::time::Duration;

    use reqwest::RequestBuilder;
    use serde_json::{Value, json};
    use tandem_mailchimp::sim::{MailchimpSim, Seed, SeedMember, SimConfig};
    use tandem_mailchimp::subscriber_hash;

    use super::{Answer, answer};

    /// A simulator on loopback and a client that authenticates to it with Basic auth.
    struct Audience {
        sim: MailchimpSim,
        /// The API root, `…/3.0`.
        root: String,
        list: String,
        key: String,
        http: reqwest::Client,
    }

    impl Audience {
        async fn start(members: Vec<SeedMember>) -> Audience {
            Audience::with_config(SimConfig::default(), members).await
        }

        async fn with_config(config: SimConfig, members: Vec<SeedMember>) -> Audience {
            let (list, key) = (config.list_id.clone(), config.api_key.clone());
            let sim = MailchimpSim::new(config);
            sim.seed(Seed {
                merge_fields: vec![],
                members,
            })
            .unwrap();
            let root = sim.clone().spawn().await.unwrap();
            Audience {
                sim,
                root,
                list,
                key,
                http: reqwest::Client::new(),
            }
        }

        fn url(&self, path: &str) -> String {
            format!("{}/lists/{}{path}", self.root, self.list)
        }

        fn authed(&self, request: RequestBuilder) -> RequestBuilder {
            request.basic_auth("anystring", Some(&self.key))
        }

        /// `GET /lists/{id}/members` with a raw query string (so `%2B` stays as written).
        async fn members(&self, query: &str) -> Answer {
            let url = format!("{}?{query}", self.url("/members"));
            answer(self.authed(self.http.get(url))).await
        }

        async fn member(&self, id: &str) -> Answer {
            answer(self.authed(self.http.get(self.url(&format!("/members/{id}"))))).await
        }

        async fn put(&self, id: &str, body: Value) -> Answer {
            answer(
                self.authed(self.http.put(self.url(&format!("/members/{id}"))))
                    .json(&body),
            )
            .await
        }

        /// Add a member by PUT with `status_if_new: subscribed`.
        async fn subscribe(&self, email: &str) -> Answer {
            let body = json!({ "email_address": email, "status_if_new": "subscribed" });
            self.put(&subscriber_hash(email), body).await
        }

        async fn patch(&self, id: &str, body: Value) -> Answer {
            answer(
                self.authed(self.http.patch(self.url(&format!("/members/{id}"))))
                    .json(&body),
            )
            .await
        }

        async fn delete(&self, id: &str) -> Answer {
            answer(self.authed(self.http.delete(self.url(&format!("/members/{id}"))))).await
        }

        async fn batch(&self, body: Value) -> Answer {
            answer(self.authed(self.http.post(self.url(""))).json(&body)).await
        }

        /// `GET /lists/{id}/members/{id}/tags` with a raw query string.
        async fn tags(&self, id: &str, query: &str) -> Answer {
            let url = format!("{}?{query}", self.url(&format!("/members/{id}/tags")));
            answer(self.authed(self.http.get(url))).await
        }

        /// `POST /lists/{id}/members/{id}/tags`.
        async fn tag(&self, id: &str, body: Value) -> Answer {
            answer(
                self.authed(self.http.post(self.url(&format!("/members/{id}/tags"))))
                    .json(&body),
            )
            .await
        }
    }

    /// The names of a member payload's `tags`, or of a tags collection, in order.
    fn tag_names(body: &Value) -> Vec<String> {
        body["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("no tags: {body}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// A tags body that sets each named tag to its status.
    fn tag_changes(changes: &[(&str, &str)]) -> Value {
        let tags: Vec<Value> = changes
            .iter()
            .map(|(name, status)| json!({ "name": name, "status": status }))
            .collect();
        json!({ "tags": tags, "is_syncing": true })
    }

    /// A seeded member with this status, changed at this time.
    fn member(email: &str, status: &str, last_changed: &str) -> SeedMember {
        SeedMember {
            email_address: email.into(),
            status: Some(status.into()),
            merge_fields: BTreeMap::new(),
            last_changed: Some(last_changed.into()),
        }
    }

    /// `count` subscribed members, `m00@example.com` upwards, each changed a minute after the last.
    fn numbered(count: usize) -> Vec<SeedMember> {
        (0..count)
            .map(|i| {
                member(
                    &format!("m{i:02}@example.com"),
                    "subscribed",
                    &format!("2026-03-01T{:02}:{:02}:00+00:00", 9 + i / 60, i % 60),
                )
            })
            .collect()
    }

    fn emails(body: &Value) -> Vec<String> {
        body["members"]
            .as_array()
            .unwrap_or_else(|| panic!("no members: {body}"))
            .iter()
            .map(|m| m["email_address"].as_str().unwrap().to_string())
            .collect()
    }

    /// Mailchimp's `problem+json` error (§2.7): all five fields, and the content type.
    fn assert_problem(answer: &Answer, status: u16, title: Option<&str>) {
        assert_eq!(answer.status, status, "{}", answer.body);
        assert!(
            answer.content_type.starts_with("application/problem+json"),
            "content type {:?}",
            answer.content_type
        );
        let body = &answer.body;
        for field in ["type", "title", "detail", "instance"] {
            assert!(
                body[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field}: {body}"
            );
        }
        assert_eq!(body["status"], status, "{body}");
        if let Some(title) = title {
            assert_eq!(body["title"], title, "{body}");
        }
    }

    /// `2026-03-01T09:00:00+00:00`: ISO 8601, seconds, with the offset written out.
    fn assert_offset_time(text: &str) {
        let ok = text.len() == 25
            && text.ends_with("+00:00")
            && text.as_bytes()[10] == b'T'
            && tandem_core::clock::parse_rfc3339(text).is_some();
        assert!(ok, "not ISO 8601 with +00:00: {text:?}");
    }

    #[tokio::test]
    async fn basic_auth_with_any_username_and_bearer_both_work() {
        let audience = Audience::start(numbered(1)).await;
        let url = audience.url("/members");

        for user in ["anystring", "tandem"] {
            let basic = answer(
                audience
                    .http
                    .get(&url)
                    .basic_auth(user, Some(&audience.key)),
            )
            .await;
            assert_eq!(basic.status, 200, "user {user}: {}", basic.body);
            assert_eq!(basic.body["total_items"], 1);
        }
        let bearer = answer(audience.http.get(&url).bearer_auth(&audience.key)).await;
        assert_eq!(bearer.status, 200, "{}", bearer.body);
    }

    #[tokio::test]
    async fn a_missing_key_is_a_401_problem() {
        let audience = Audience::start(vec![]).await;

        let missing = answer(audience.http.get(audience.url("/members"))).await;
        assert_problem(&missing, 401, None);
    }

    #[tokio::test]
    async fn a_wrong_key_is_a_401_api_key_invalid() {
        let audience = Audience::start(vec![]).await;
        let url = audience.url("/members");
        let wrong = "ffffffffffffffffffffffffffffffff-us6";

        let basic = answer(audience.http.get(&url).basic_auth("anystring", Some(wrong))).await;
        assert_problem(&basic, 401, Some("API Key Invalid"));
        let bearer = answer(audience.http.get(&url).bearer_auth(wrong)).await;
        assert_problem(&bearer, 401, Some("API Key Invalid"));
    }

    #[tokio::test]
    async fn an_unknown_list_is_a_404() {
        let audience = Audience::start(numbered(1)).await;
        let hash = subscriber_hash("m00@example.com");

        for path in [
            "/lists/nosuchlist/members".to_string(),
            format!("/lists/nosuchlist/members/{hash}"),
        ] {
            let missing = answer(
                audience
                    .http
                    .get(format!("{}{path}", audience.root))
                    .bearer_auth(&audience.key),
            )
            .await;
            assert_problem(&missing, 404, Some("Resource Not Found"));
        }
    }

    #[tokio::test]
    async fn members_page_with_count_and_offset_and_report_total_items() {
        let audience = Audience::start(numbered(25)).await;

        let default = audience.members("").await;
        assert_eq!(default.status, 200, "{}", default.body);
        assert_eq!(emails(&default.body).len(), 10, "count defaults to 10");

        let mut seen = Vec::new();
        for offset in [0, 10, 20, 30] {
            let page = audience
                .members(&format!(
                    "count=10&offset={offset}&sort_field=last_changed&sort_dir=ASC"
                ))
                .await;
            assert_eq!(page.status, 200, "{}", page.body);
            assert_eq!(page.body["total_items"], 25, "across pages");
            assert_eq!(page.body["list_id"], audience.list.as_str());
            seen.extend(emails(&page.body));
        }
        let expected: Vec<String> = (0..25).map(|i| format!("m{i:02}@example.com")).collect();
        assert_eq!(seen, expected, "every member once, in order");
    }

    #[tokio::test]
    async fn members_reject_a_count_over_1000() {
        let audience = Audience::start(numbered(2)).await;

        let thousand = audience.members("count=1000").await;
        assert_eq!(thousand.status, 200, "{}", thousand.body);

        let over = audience.members("count=1001").await;
        assert_problem(&over, 400, None);
    }

    #[tokio::test]
    async fn members_sort_on_last_changed_both_ways() {
        let audience = Audience::start(vec![
            member("b@example.com", "subscribed", "2026-03-01T09:02:00+00:00"),
            member("a@example.com", "subscribed", "2026-03-01T09:00:00+00:00"),
            member("c@example.com", "subscribed", "2026-03-01T09:01:00+00:00"),
        ])
        .await;

        let ascending = audience
            .members("sort_field=last_changed&sort_dir=ASC")
            .await;
        assert_eq!(
            emails(&ascending.body),
            ["a@example.com", "c@example.com", "b@example.com"]
        );
        let descending = audience
            .members("sort_field=last_changed&sort_dir=DESC")
            .await;
        assert_eq!(
            emails(&descending.body),
            ["b@example.com", "c@example.com", "a@example.com"]
        );
    }

    #[tokio::test]
    async fn members_sort_on_timestamp_opt_when_asked_to() {
        // The simulator accepts `sort_field=timestamp_opt` (§2.3), so it must sort on it.
        let audience = Audience::start(vec![]).await;
        assert_eq!(audience.subscribe("first@example.com").await.status, 200);
        audience.sim.advance_clock(Duration::from_secs(2));
        assert_eq!(audience.subscribe("second@example.com").await.status, 200);
        audience.sim.advance_clock(Duration::from_secs(2));
        // Changing the first member makes it the latest change, not the latest opt-in.
        let edited = audience
            .patch(
                &subscriber_hash("first@example.com"),
                json!({ "merge_fields": { "FNAME": "First" } }),
            )
            .await;
        assert_eq!(edited.status, 200, "{}", edited.body);

        let by_change = audience
            .members("sort_field=last_changed&sort_dir=ASC")
            .await;
        assert_eq!(
            emails(&by_change.body),
            ["second@example.com", "first@example.com"]
        );
        let by_opt_in = audience
            .members("sort_field=timestamp_opt&sort_dir=ASC")
            .await;
        assert_eq!(by_opt_in.status, 200, "{}", by_opt_in.body);
        assert_eq!(
            emails(&by_opt_in.body),
            ["first@example.com", "second@example.com"],
            "sorted on timestamp_opt: {}",
            by_opt_in.body
        );
    }

    #[tokio::test]
    async fn since_last_changed_takes_an_encoded_plus_offset() {
        let audience = Audience::start(vec![
            member(
                "early@example.com",
                "subscribed",
                "2026-03-01T09:00:00+00:00",
            ),
            member(
                "middle@example.com",
                "subscribed",
                "2026-03-01T09:10:00+00:00",
            ),
            member(
                "late@example.com",
                "subscribed",
                "2026-03-01T09:20:00+00:00",
            ),
        ])
        .await;

        let since = audience
            .members("since_last_changed=2026-03-01T09:05:00%2B00:00&sort_field=last_changed&sort_dir=ASC")
            .await;
        assert_eq!(since.status, 200, "{}", since.body);
        assert_eq!(
            emails(&since.body),
            ["middle@example.com", "late@example.com"]
        );
        assert_eq!(since.body["total_items"], 2);

        // 11:15 at +02:00 is 09:15 UTC.
        let shifted = audience
            .members("since_last_changed=2026-03-01T11:15:00%2B02:00")
            .await;
        assert_eq!(shifted.status, 200, "{}", shifted.body);
        assert_eq!(emails(&shifted.body), ["late@example.com"]);
    }

    #[tokio::test]
    async fn archived_members_are_left_out_unless_asked_for() {
        let audience = Audience::start(vec![
            member(
                "kept@example.com",
                "subscribed",
                "2026-03-01T09:00:00+00:00",
            ),
            member(
                "left@example.com",
                "unsubscribed",
                "2026-03-01T09:01:00+00:00",
            ),
            member("gone@example.com", "archived", "2026-03-01T09:02:00+00:00"),
        ])
        .await;

        let default = audience
            .members("sort_field=last_changed&sort_dir=ASC")
            .await;
        assert_eq!(
            emails(&default.body),
            ["kept@example.com", "left@example.com"]
        );
        assert_eq!(default.body["total_items"], 2);

        let archived = audience.members("status=archived").await;
        assert_eq!(archived.status, 200, "{}", archived.body);
        assert_eq!(emails(&archived.body), ["gone@example.com"]);
        assert_eq!(archived.body["members"][0]["status"], "archived");
        assert_eq!(archived.body["total_items"], 1);
    }

    #[tokio::test]
    async fn fields_and_exclude_fields_shape_the_answer() {
        let audience = Audience::start(numbered(2)).await;

        let only = audience
            .members("fields=members.email_address,members.last_changed,total_items")
            .await;
        assert_eq!(only.status, 200, "{}", only.body);
        let body = only.body.as_object().unwrap();
        let mut keys: Vec<&String> = body.keys().collect();
        keys.sort();
        assert_eq!(keys, ["members", "total_items"], "{}", only.body);
        for member in only.body["members"].as_array().unwrap() {
            let mut keys: Vec<&String> = member.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(keys, ["email_address", "last_changed"], "{member}");
        }

        let without = audience
            .members("exclude_fields=members.merge_fields,members._links,_links")
            .await;
        assert_eq!(without.status, 200, "{}", without.body);
        assert!(without.body.get("_links").is_none(), "{}", without.body);
        assert_eq!(without.body["total_items"], 2);
        for member in without.body["members"].as_array().unwrap() {
            assert!(member.get("merge_fields").is_none(), "{member}");
            assert!(member.get("_links").is_none(), "{member}");
            assert!(member["email_address"].is_string(), "{member}");
            assert!(member["status"].is_string(), "{member}");
        }

        let hash = subscriber_hash("m00@example.com");
        let one = answer(
            audience
                .authed(audience.http.get(audience.url(&format!("/members/{hash}"))))
                .query(&[("fields", "id,status")]),
        )
        .await;
        assert_eq!(one.status, 200, "{}", one.body);
        assert_eq!(one.body, json!({ "id": hash, "status": "subscribed" }));

        let both = audience
            .members("fields=members.id&exclude_fields=members.status")
            .await;
        assert_problem(&both, 400, None);
    }

    #[tokio::test]
    async fn the_member_id_is_the_md5_of_the_lowercased_email() {
        // The example from Mailchimp's documentation.
        let hash = "55502f40dc8b7c769880b10874abc9d0";
        let audience = Audience::start(vec![]).await;

        let created = audience
            .put(
                hash,
                json!({ "email_address": "Test@Example.com", "status_if_new": "subscribed" }),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.body);
        assert_eq!(created.body["id"], hash);

        let read = audience.member(hash).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["id"], hash);
        assert_eq!(read.body["status"], "subscribed");
        let listed = audience.members("").await;
        assert_eq!(listed.body["members"][0]["id"], hash);
    }

    #[tokio::test]
    async fn put_creates_with_status_if_new_and_never_changes_an_existing_status() {
        let audience = Audience::start(vec![member(
            "left@example.com",
            "unsubscribed",
            "2026-03-01T09:00:00+00:00",
        )])
        .await;

        let new = audience
            .put(
                &subscriber_hash("new@example.com"),
                json!({ "email_address": "new@example.com", "status_if_new": "subscribed", "merge_fields": { "FNAME": "Nia" } }),
            )
            .await;
        assert_eq!(new.status, 200, "{}", new.body);
        assert_eq!(new.body["status"], "subscribed");
        assert_eq!(new.body["merge_fields"]["FNAME"], "Nia");

        let left = subscriber_hash("left@example.com");
        let kept = audience
            .put(
                &left,
                json!({ "email_address": "left@example.com", "status_if_new": "subscribed", "merge_fields": { "FNAME": "Lea" } }),
            )
            .await;
        assert_eq!(kept.status, 200, "{}", kept.body);
        assert_eq!(
            kept.body["status"], "unsubscribed",
            "status_if_new left it alone"
        );
        assert_eq!(
            kept.body["merge_fields"]["FNAME"], "Lea",
            "the rest was written"
        );
        assert_eq!(audience.member(&left).await.body["status"], "unsubscribed");
    }

    #[tokio::test]
    async fn put_of_a_new_member_without_a_status_is_a_400() {
        let audience = Audience::start(vec![]).await;
        let hash = subscriber_hash("new@example.com");

        let refused = audience
            .put(&hash, json!({ "email_address": "new@example.com" }))
            .await;
        assert_problem(&refused, 400, Some("Invalid Resource"));
        assert_problem(
            &audience.member(&hash).await,
            404,
            Some("Resource Not Found"),
        );
    }

    #[tokio::test]
    async fn patch_updates_part_of_a_member_and_404s_a_missing_one() {
        let audience = Audience::start(vec![]).await;
        let hash = subscriber_hash("ada@example.com");
        let created = audience
            .put(
                &hash,
                json!({ "email_address": "ada@example.com", "status_if_new": "subscribed",
                        "merge_fields": { "FNAME": "Ada", "LNAME": "Byron" } }),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.body);

        let patched = audience
            .patch(&hash, json!({ "merge_fields": { "LNAME": "Lovelace" } }))
            .await;
        assert_eq!(patched.status, 200, "{}", patched.body);
        let now = audience.member(&hash).await.body;
        assert_eq!(now["merge_fields"]["LNAME"], "Lovelace");
        assert_eq!(now["merge_fields"]["FNAME"], "Ada", "fields not sent stay");
        assert_eq!(now["status"], "subscribed");
        assert_eq!(now["email_address"], "ada@example.com");

        let missing = audience
            .patch(
                &subscriber_hash("nobody@example.com"),
                json!({ "merge_fields": { "FNAME": "No" } }),
            )
            .await;
        assert_problem(&missing, 404, Some("Resource Not Found"));
    }

    #[tokio::test]
    async fn patch_with_a_new_email_renames_the_member() {
        let audience = Audience::start(vec![member(
            "old@example.com",
            "subscribed",
            "2026-03-01T09:00:00+00:00",
        )])
        .await;
        let old = subscriber_hash("old@example.com");
        let new = subscriber_hash("new@example.com");

        let renamed = audience
            .patch(&old, json!({ "email_address": "new@example.com" }))
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.body);
        assert_eq!(renamed.body["id"], new.as_str(), "the id follows the email");
        assert_eq!(renamed.body["email_address"], "new@example.com");

        let read = audience.member(&new).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["status"], "subscribed");
        assert_problem(
            &audience.member(&old).await,
            404,
            Some("Resource Not Found"),
        );
        assert_eq!(audience.members("").await.body["total_items"], 1);
    }

    #[tokio::test]
    async fn put_renaming_onto_an_existing_member_is_refused_like_patch() {
        // PATCH refuses to rename a member onto another member's address; PUT, which
        // renames the same way (§2.4), must not merge the two members into one either.
        let audience = Audience::start(vec![
            member("ada@example.com", "subscribed", "2026-03-01T09:00:00+00:00"),
            member(
                "grace@example.com",
                "unsubscribed",
                "2026-03-01T09:01:00+00:00",
            ),
        ])
        .await;
        let ada = subscriber_hash("ada@example.com");
        let grace = subscriber_hash("grace@example.com");

        let by_patch = audience
            .patch(&ada, json!({ "email_address": "grace@example.com" }))
            .await;
        assert_problem(&by_patch, 400, None);

        let by_put = audience
            .put(
                &ada,
                json!({ "email_address": "grace@example.com", "status_if_new": "subscribed" }),
            )
            .await;
        assert_problem(&by_put, 400, None);
        assert_eq!(
            audience.member(&ada).await.status,
            200,
            "ada is still there"
        );
        let grace_now = audience.member(&grace).await;
        assert_eq!(
            grace_now.body["status"], "unsubscribed",
            "grace is untouched"
        );
        assert_eq!(audience.members("").await.body["total_items"], 2);
    }

    #[tokio::test]
    async fn batch_subscribe_rejects_more_than_500_members() {
        let audience = Audience::start(vec![]).await;
        let members = |n: usize| {
            (0..n)
                .map(|i| json!({ "email_address": format!("b{i:03}@example.com"), "status": "subscribed" }))
                .collect::<Vec<_>>()
        };

        let over = audience.batch(json!({ "members": members(501) })).await;
        assert_problem(&over, 400, None);
        assert_eq!(
            audience.members("").await.body["total_items"],
            0,
            "nothing written"
        );

        let five_hundred = audience.batch(json!({ "members": members(500) })).await;
        assert_eq!(five_hundred.status, 200, "{}", five_hundred.body);
        assert_eq!(five_hundred.body["total_created"], 500);
        assert_eq!(audience.members("").await.body["total_items"], 500);
    }

    #[tokio::test]
    async fn batch_subscribe_reports_member_errors_inside_a_200() {
        let audience = Audience::start(vec![member(
            "known@example.com",
            "subscribed",
            "2026-03-01T09:00:00+00:00",
        )])
        .await;
        let known = subscriber_hash("known@example.com");

        let first = audience
            .batch(json!({
                "members": [
                    { "email_address": "new@example.com", "status": "subscribed" },
                    { "email_address": "not-an-email", "status": "subscribed" },
                    { "email_address": "known@example.com", "status": "subscribed", "merge_fields": { "FNAME": "Kim" } },
                ],
                "update_existing": false,
            }))
            .await;
        assert_eq!(first.status, 200, "{}", first.body);
        assert_eq!(
            emails(&json!({ "members": first.body["new_members"] })),
            ["new@example.com"]
        );
        assert_eq!(first.body["total_created"], 1);
        assert_eq!(first.body["total_updated"], 0);
        assert_eq!(first.body["error_count"], 2);
        let errors = first.body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{}", first.body);
        for error in errors {
            assert!(error["email_address"].is_string(), "{error}");
            assert!(
                error["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{error}"
            );
            assert!(
                error["error_code"].as_str().is_some_and(|c| !c.is_empty()),
                "{error}"
            );
        }
        let exists = errors
            .iter()
            .find(|e| e["email_address"] == "known@example.com")
            .expect("an error for the existing member");
        assert_eq!(exists["error_code"], "ERROR_CONTACT_EXISTS");
        assert!(errors.iter().any(|e| e["email_address"] == "not-an-email"));
        assert_eq!(
            audience.member(&known).await.body["merge_fields"]["FNAME"],
            "",
            "the existing member was not touched"
        );
        assert_eq!(audience.members("").await.body["total_items"], 2);

        let second = audience
            .batch(json!({
                "members": [
                    { "email_address": "known@example.com", "status": "unsubscribed", "merge_fields": { "FNAME": "Kim" } },
                ],
                "update_existing": true,
            }))
            .await;
        assert_eq!(second.status, 200, "{}", second.body);
        assert_eq!(second.body["total_updated"], 1);
        assert_eq!(second.body["total_created"], 0);
        assert_eq!(second.body["error_count"], 0);
        let now = audience.member(&known).await.body;
        assert_eq!(now["merge_fields"]["FNAME"], "Kim");
        assert_eq!(
            now["status"], "unsubscribed",
            "update_existing applies status"
        );
    }

    #[tokio::test]
    async fn an_unknown_merge_field_is_a_400_invalid_resource() {
        let audience = Audience::start(vec![member(
            "ada@example.com",
            "subscribed",
            "2026-03-01T09:00:00+00:00",
        )])
        .await;

        let new = subscriber_hash("new@example.com");
        let created = audience
            .put(
                &new,
                json!({ "email_address": "new@example.com", "status_if_new": "subscribed", "merge_fields": { "NICKNAME": "Nix" } }),
            )
            .await;
        assert_problem(&created, 400, Some("Invalid Resource"));
        assert_problem(&audience.member(&new).await, 404, None);

        let patched = audience
            .patch(
                &subscriber_hash("ada@example.com"),
                json!({ "merge_fields": { "NICKNAME": "Countess" } }),
            )
            .await;
        assert_problem(&patched, 400, Some("Invalid Resource"));
    }

    #[tokio::test]
    async fn delete_archives_the_member() {
        let audience = Audience::start(numbered(2)).await;
        let hash = subscriber_hash("m00@example.com");

        let deleted = audience.delete(&hash).await;
        assert_eq!(deleted.status, 204);
        assert!(deleted.body.is_null(), "no body: {}", deleted.body);

        let read = audience.member(&hash).await;
        assert_eq!(read.status, 200, "an archived member can still be read");
        assert_eq!(read.body["status"], "archived");
        assert_eq!(
            emails(&audience.members("").await.body),
            ["m01@example.com"]
        );
    }

    #[tokio::test]
    async fn an_archived_member_is_re_added_by_put_with_a_status() {
        let audience = Audience::start(numbered(1)).await;
        let hash = subscriber_hash("m00@example.com");
        assert_eq!(audience.delete(&hash).await.status, 204);

        let back = audience
            .put(
                &hash,
                json!({ "email_address": "m00@example.com", "status": "subscribed" }),
            )
            .await;
        assert_eq!(back.status, 200, "{}", back.body);
        assert_eq!(back.body["status"], "subscribed");
        assert_eq!(audience.members("").await.body["total_items"], 1);
    }

    #[tokio::test]
    async fn an_archived_member_is_re_added_by_post() {
        // §2.6: "An archived member can be re-added later by PUT or POST".
        let audience = Audience::start(numbered(1)).await;
        let hash = subscriber_hash("m00@example.com");
        assert_eq!(audience.delete(&hash).await.status, 204);

        let back = answer(
            audience
                .authed(audience.http.post(audience.url("/members")))
                .json(&json!({ "email_address": "m00@example.com", "status": "subscribed" })),
        )
        .await;
        assert_eq!(back.status, 200, "{}", back.body);
        assert_eq!(back.body["status"], "subscribed");
        assert_eq!(audience.member(&hash).await.body["status"], "subscribed");
    }

    #[tokio::test]
    async fn last_changed_is_iso_8601_with_an_offset_and_advances_on_writes() {
        let audience = Audience::start(vec![]).await;
        let hash = subscriber_hash("ada@example.com");
        let last_changed = |answer: &Answer| {
            let text = answer.body["last_changed"]
                .as_str()
                .unwrap_or_else(|| panic!("no last_changed: {}", answer.body))
                .to_string();
            assert_offset_time(&text);
            tandem_core::clock::parse_rfc3339(&text).unwrap()
        };

        let created = audience
            .put(
                &hash,
                json!({ "email_address": "ada@example.com", "status_if_new": "subscribed" }),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.body);
        let mut last = last_changed(&created);

        audience.sim.advance_clock(Duration::from_secs(2));
        let put = audience
            .put(
                &hash,
                json!({ "email_address": "ada@example.com", "merge_fields": { "FNAME": "Ada" } }),
            )
            .await;
        let now = last_changed(&put);
        assert!(now > last, "PUT advanced it");
        last = now;

        audience.sim.advance_clock(Duration::from_secs(2));
        let patched = audience
            .patch(&hash, json!({ "merge_fields": { "LNAME": "Lovelace" } }))
            .await;
        let now = last_changed(&patched);
        assert!(now > last, "PATCH advanced it");
        last = now;

        audience.sim.advance_clock(Duration::from_secs(2));
        let batch = audience
            .batch(json!({ "members": [{ "email_address": "ada@example.com", "status": "unsubscribed" }], "update_existing": true }))
            .await;
        assert_eq!(batch.status, 200, "{}", batch.body);
        let now = last_changed(&audience.member(&hash).await);
        assert!(now > last, "batch subscribe advanced it");
        last = now;

        audience.sim.advance_clock(Duration::from_secs(2));
        assert_eq!(audience.delete(&hash).await.status, 204);
        let now = last_changed(&audience.member(&hash).await);
        assert!(now > last, "archiving advanced it");

        let listed = audience.members("status=archived").await;
        assert_offset_time(listed.body["members"][0]["last_changed"].as_str().unwrap());
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_json_parse_exception() {
        let audience = Audience::start(vec![]).await;
        let hash = subscriber_hash("ada@example.com");
        let broken = r#"{"email_address": "ada@example.com", "#;

        let put = answer(
            audience
                .authed(audience.http.put(audience.url(&format!("/members/{hash}"))))
                .header("content-type", "application/json")
                .body(broken),
        )
        .await;
        assert_problem(&put, 400, Some("JSON Parse Exception"));

        let batch = answer(
            audience
                .authed(audience.http.post(audience.url("")))
                .header("content-type", "application/json")
                .body(r#"{"members": [ {"#),
        )
        .await;
        assert_problem(&batch, 400, Some("JSON Parse Exception"));
        assert_problem(&audience.member(&hash).await, 404, None);
    }

    #[tokio::test]
    async fn tags_are_added_and_removed_with_a_204_and_listed_with_ids_and_dates() {
        // §2.4: `POST …/tags` adds `active` tags (creating unknown ones) and removes
        // `inactive` ones, answering 204; `GET …/tags` lists `{id, name, date_added}`.
        let audience = Audience::start(numbered(2)).await;
        let ada = subscriber_hash("m00@example.com");
        let bob = subscriber_hash("m01@example.com");

        let added = audience
            .tag(
                &ada,
                tag_changes(&[("customer", "active"), ("influencer", "active")]),
            )
            .await;
        assert_eq!(added.status, 204, "{}", added.body);
        assert!(added.body.is_null(), "no body: {}", added.body);

        let listed = audience.tags(&ada, "").await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        assert_eq!(listed.body["total_items"], 2);
        assert_eq!(tag_names(&listed.body), ["customer", "influencer"]);
        for tag in listed.body["tags"].as_array().unwrap() {
            assert!(tag["id"].is_u64(), "a numeric id: {tag}");
            assert_offset_time(tag["date_added"].as_str().unwrap());
        }

        let member = audience.member(&ada).await.body;
        assert_eq!(member["tags_count"], 2);
        assert_eq!(tag_names(&member), ["customer", "influencer"]);
        assert_eq!(member["tags"][0]["id"], listed.body["tags"][0]["id"]);
        assert!(
            member["tags"][0].get("date_added").is_none(),
            "the member payload shows {{id, name}}: {member}"
        );

        // A tag is the audience's: another member gets the same id.
        assert_eq!(
            audience
                .tag(&bob, tag_changes(&[("customer", "active")]))
                .await
                .status,
            204
        );
        let bobs = audience.tags(&bob, "").await.body;
        assert_eq!(bobs["tags"][0]["id"], listed.body["tags"][0]["id"]);

        let removed = audience
            .tag(
                &ada,
                tag_changes(&[
                    ("customer", "inactive"),
                    ("never-had", "inactive"),
                    ("influencer", "active"),
                ]),
            )
            .await;
        assert_eq!(removed.status, 204, "{}", removed.body);
        let member = audience.member(&ada).await.body;
        assert_eq!(tag_names(&member), ["influencer"]);
        assert_eq!(member["tags_count"], 1);
        assert_eq!(tag_names(&audience.tags(&bob, "").await.body), ["customer"]);
    }

    #[tokio::test]
    async fn the_tags_endpoint_takes_a_hash_contact_id_or_email_and_404s_a_missing_member() {
        let audience = Audience::start(numbered(1)).await;
        let hash = subscriber_hash("m00@example.com");
        let contact_id = audience.member(&hash).await.body["contact_id"]
            .as_str()
            .unwrap()
            .to_string();

        for (id, tag) in [
            (hash.as_str(), "by-hash"),
            (contact_id.as_str(), "by-contact-id"),
            ("m00@example.com", "by-email"),
        ] {
            let added = audience.tag(id, tag_changes(&[(tag, "active")])).await;
            assert_eq!(added.status, 204, "{id}: {}", added.body);
            assert!(
                tag_names(&audience.tags(id, "").await.body).contains(&tag.to_string()),
                "{id}"
            );
        }
        assert_eq!(audience.member(&hash).await.body["tags_count"], 3);

        let nobody = subscriber_hash("nobody@example.com");
        assert_problem(
            &audience.tag(&nobody, tag_changes(&[("x", "active")])).await,
            404,
            Some("Resource Not Found"),
        );
        assert_problem(
            &audience.tags(&nobody, "").await,
            404,
            Some("Resource Not Found"),
        );
    }

    #[tokio::test]
    async fn a_tag_with_an_unknown_status_or_no_tags_array_is_a_400_invalid_resource() {
        let audience = Audience::start(numbered(1)).await;
        let hash = subscriber_hash("m00@example.com");

        let unknown = audience
            .tag(
                &hash,
                tag_changes(&[("customer", "active"), ("lead", "enabled")]),
            )
            .await;
        assert_problem(&unknown, 400, Some("Invalid Resource"));
        let missing = audience.tag(&hash, json!({ "is_syncing": true })).await;
        assert_problem(&missing, 400, Some("Invalid Resource"));
        let nameless = audience
            .tag(&hash, json!({ "tags": [{ "status": "active" }] }))
            .await;
        assert_problem(&nameless, 400, Some("Invalid Resource"));
        assert_eq!(
            audience.member(&hash).await.body["tags_count"],
            0,
            "a refused request changes nothing"
        );
    }

    #[tokio::test]
    async fn the_member_payload_shows_at_most_50_tags_and_the_endpoint_pages_them_all() {
        // §2.2: the member payload shows at most 50 tags; `tags_count` counts them all.
        let audience = Audience::start(numbered(1)).await;
        let names: Vec<String> = (0..60).map(|i| format!("t{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hash = audience.sim.set_tags("m00@example.com", &refs).unwrap();

        let member = audience.member(&hash).await.body;
        assert_eq!(member["tags_count"], 60);
        assert_eq!(member["tags"].as_array().unwrap().len(), 50);

        let first = audience.tags(&hash, "").await.body;
        assert_eq!(first["total_items"], 60);
        assert_eq!(
            first["tags"].as_array().unwrap().len(),
            10,
            "count is 10 by default"
        );
        let all = audience.tags(&hash, "count=1000").await.body;
        assert_eq!(tag_names(&all), names);
        let last = audience.tags(&hash, "count=50&offset=50").await.body;
        assert_eq!(tag_names(&last), names[50..]);
        assert_problem(&audience.tags(&hash, "count=1001").await, 400, None);
    }

    #[tokio::test]
    async fn members_are_created_with_tags_by_post_put_and_batch_subscribe() {
        // §2.4: a created member may carry `tags: [names]`; batch subscribe adds them
        // to existing members too, and with `sync_tags` they replace the old ones.
        let audience = Audience::start(numbered(2)).await;

        let posted = answer(
            audience
                .authed(audience.http.post(audience.url("/members")))
                .json(&json!({ "email_address": "post@example.com", "status": "subscribed", "tags": ["web"] })),
        )
        .await;
        assert_eq!(posted.status, 200, "{}", posted.body);
        assert_eq!(tag_names(&posted.body), ["web"]);

        let put = audience
            .put(
                &subscriber_hash("put@example.com"),
                json!({ "email_address": "put@example.com", "status_if_new": "subscribed", "tags": ["crm", "lead"] }),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.body);
        assert_eq!(tag_names(&put.body), ["crm", "lead"]);
        assert_eq!(put.body["tags_count"], 2);

        let m00 = subscriber_hash("m00@example.com");
        let m01 = subscriber_hash("m01@example.com");
        audience.sim.set_tags("m00@example.com", &["old"]);
        audience.sim.set_tags("m01@example.com", &["old"]);
        let batch = audience
            .batch(json!({
                "members": [
                    { "email_address": "batch@example.com", "status": "subscribed", "tags": ["crm"] },
                    { "email_address": "m00@example.com", "tags": ["crm"] },
                ],
                "update_existing": true,
            }))
            .await;
        assert_eq!(batch.status, 200, "{}", batch.body);
        assert_eq!(tag_names(&batch.body["new_members"][0]), ["crm"]);
        assert_eq!(
            tag_names(&batch.body["updated_members"][0]),
            ["old", "crm"],
            "added to the existing tags"
        );
        assert_eq!(tag_names(&audience.member(&m00).await.body), ["old", "crm"]);

        let synced = audience
            .batch(json!({
                "members": [{ "email_address": "m01@example.com", "tags": ["crm"] }],
                "update_existing": true,
                "sync_tags": true,
            }))
            .await;
        assert_eq!(synced.status, 200, "{}", synced.body);
        assert_eq!(tag_names(&audience.member(&m01).await.body), ["crm"]);
    }

    #[tokio::test]
    async fn a_tag_change_advances_last_changed_unless_configured_not_to() {
        // Mailchimp does not document this; `SimConfig::tags_change_last_changed` chooses.
        for advances in [true, false] {
            let config = SimConfig {
                tags_change_last_changed: advances,
                ..SimConfig::default()
            };
            let audience = Audience::with_config(config, vec![]).await;
            let created = audience.subscribe("ada@example.com").await;
            assert_eq!(created.status, 200, "{}", created.body);
            let hash = subscriber_hash("ada@example.com");
            let before = created.body["last_changed"].clone();

            audience.sim.advance_clock(Duration::from_secs(2));
            let added = audience
                .tag(&hash, tag_changes(&[("customer", "active")]))
                .await;
            assert_eq!(added.status, 204, "{}", added.body);
            let after = audience.member(&hash).await.body;
            assert_eq!(tag_names(&after), ["customer"]);
            assert_eq!(
                after["last_changed"] != before,
                advances,
                "advances: {advances}, before {before}, after {}",
                after["last_changed"]
            );
            let since = before
                .as_str()
                .unwrap()
                .replace(':', "%3A")
                .replace('+', "%2B");
            let listed = audience
                .members(&format!("since_last_changed={since}"))
                .await;
            assert_eq!(
                listed.body["total_items"],
                u64::from(advances),
                "the tagged member is listed as changed only if last_changed moved"
            );
        }
    }

    #[tokio::test]
    async fn a_batch_member_needs_status_unless_status_if_new_is_configured_to_do() {
        // The 3.0.55 spec's batch member has `status` only; whether the live
        // API also takes `status_if_new` there is not established.
        for accepted in [false, true] {
            let config = SimConfig {
                batch_status_if_new: accepted,
                ..SimConfig::default()
            };
            let audience = Audience::with_config(config, vec![]).await;
            let batch = audience
                .batch(json!({
                    "members": [{ "email_address": "new@example.com", "status_if_new": "subscribed" }],
                    "update_existing": false,
                }))
                .await;
            assert_eq!(batch.status, 200, "{}", batch.body);
            let created = batch.body["total_created"].as_u64().unwrap();
            assert_eq!(created, u64::from(accepted), "{}", batch.body);
            if !accepted {
                assert_eq!(batch.body["errors"][0]["field"], "status", "{}", batch.body);
            }
        }
    }

    #[tokio::test]
    async fn tag_names_match_without_regard_to_case_unless_configured_not_to() {
        // Reported by third parties, not documented: `SimConfig::tag_names_ignore_case` chooses.
        for ignore_case in [true, false] {
            let config = SimConfig {
                tag_names_ignore_case: ignore_case,
                ..SimConfig::default()
            };
            let audience = Audience::with_config(config, numbered(1)).await;
            let hash = subscriber_hash("m00@example.com");
            audience.sim.set_tags("m00@example.com", &["VIP"]);

            let added = audience.tag(&hash, tag_changes(&[("vip", "active")])).await;
            assert_eq!(added.status, 204, "{}", added.body);
            let expected: &[&str] = if ignore_case {
                &["VIP"]
            } else {
                &["VIP", "vip"]
            };
            assert_eq!(tag_names(&audience.tags(&hash, "").await.body), expected);

            let removed = audience
                .tag(&hash, tag_changes(&[("vip", "inactive")]))
                .await;
            assert_eq!(removed.status, 204, "{}", removed.body);
            let expected: &[&str] = if ignore_case { &[] } else { &["VIP"] };
            assert_eq!(tag_names(&audience.tags(&hash, "").await.body), expected);
        }
    }

    #[tokio::test]
    async fn tag_changes_send_no_member_webhooks() {
        // Mailchimp's member webhooks are subscribe, unsubscribe, profile, cleaned and
        // upemail (§2.9); adding or removing a tag is none of them.
        use std::sync::{Arc, Mutex};

        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = received.clone();
        let receiver = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, receiver).await });

        let audience = Audience::start(numbered(1)).await;
        let hash = subscriber_hash("m00@example.com");
        audience
            .sim
            .send_webhooks(&format!("http://{address}/hook?secret=s"), None, true);
        let added = audience
            .tag(&hash, tag_changes(&[("customer", "active")]))
            .await;
        assert_eq!(added.status, 204, "{}", added.body);
        audience.sim.set_tags("m00@example.com", &["vip"]);
        // A profile change afterwards: deliveries go out in order, so once it has
        // arrived, any event the tag changes had sent would have arrived before it.
        audience.sim.edit("m00@example.com", &[("FNAME", "Ada")]);
        crate::support::eventually("the profile event arrives", || {
            !received.lock().unwrap().is_empty()
        })
        .await;
        let events = received.lock().unwrap().clone();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].starts_with("type=profile&"), "{events:?}");
        assert_eq!(
            tag_names(&audience.member(&hash).await.body),
            ["vip"],
            "the tags did change"
        );
    }
}
