//! Webhooks end to end: a change in one simulator reaches the other through
//! signed webhooks alone; forged, stale, oversized and replayed requests are
//! refused or ignored; faulty delivery still converges with polling behind it.

use std::time::Duration;

use serde_json::json;
use tandem_core::sim::Faults;
use tokio_util::sync::CancellationToken;

use crate::support::{World, contact, eventually, member};

const ADA: &str = "ada@example.com";

async fn linked() -> World {
    World::new(
        vec![contact(
            ADA,
            &[("firstname", "Ada"), ("phone", "+1 555 0100")],
        )],
        vec![member(ADA, &[("FNAME", "Ada"), ("PHONE", "+1 555 0100")])],
    )
    .await
}

#[tokio::test]
async fn a_change_on_either_side_reaches_the_other_by_webhook_alone() {
    let mut world = linked().await;
    let shutdown = CancellationToken::new();
    let hooks = world.with_webhooks(&shutdown).await;
    eventually("the first pass links Ada", || {
        world.hubspot.stats().requests > 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    world.later();
    world.hubspot.edit(ADA, &[("firstname", "Augusta")]);
    eventually("HubSpot's change reaches Mailchimp", || {
        world.mailchimp_value(ADA, "FNAME").as_deref() == Some("Augusta")
    })
    .await;

    world.later();
    world.mailchimp.edit(ADA, &[("PHONE", "+44 20 7946 0000")]);
    eventually("Mailchimp's change reaches HubSpot", || {
        world.hubspot_value(ADA, "phone").as_deref() == Some("+44 20 7946 0000")
    })
    .await;

    // Our own write to HubSpot came back as a webhook too; it changed nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        world.mailchimp_value(ADA, "FNAME").as_deref(),
        Some("Augusta")
    );
    assert!(
        hooks
            .hubspot
            .stats()
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    shutdown.cancel();
}

#[tokio::test]
async fn forged_stale_and_oversized_webhooks_are_refused_and_redeliveries_count_once() {
    let mut world = linked().await;
    let shutdown = CancellationToken::new();
    let hooks = world.with_webhooks(&shutdown).await;
    let url = format!("{}/webhooks/hubspot", hooks.base);
    let body = json!([{"eventId": 77, "subscriptionType": "contact.propertyChange", "objectId": 1001, "occurredAt": 1}]).to_string();
    let now = tandem_core::clock::now_millis();
    let post = |timestamp: i64, signature: String, body: String| {
        reqwest::Client::new()
            .post(&url)
            .header("x-hubspot-signature-v3", signature)
            .header("x-hubspot-request-timestamp", timestamp.to_string())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let sign = |timestamp: i64, body: &str| {
        tandem_hubspot::webhook::sign_v3(
            &hooks.hubspot_secret,
            "POST",
            &url,
            body.as_bytes(),
            &timestamp.to_string(),
        )
    };
    // Signed with another secret.
    let forged = tandem_hubspot::webhook::sign_v3(
        "not-the-secret",
        "POST",
        &url,
        body.as_bytes(),
        &now.to_string(),
    );
    assert_eq!(post(now, forged, body.clone()).await.unwrap().status(), 401);
    // Signed properly, but ten minutes ago.
    let old = now - 600_000;
    assert_eq!(
        post(old, sign(old, &body), body.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    // Unsigned.
    assert_eq!(
        reqwest::Client::new()
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Too large.
    let huge = format!("[{}]", vec![r#"{"eventId":1}"#; 100_000].join(","));
    assert_eq!(
        post(now, sign(now, &huge), huge).await.unwrap().status(),
        413
    );
    // Good, twice: recorded once.
    assert_eq!(
        post(now, sign(now, &body), body.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(now, sign(now, &body), body.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    let again = vec![tandem_core::Hint {
        event_id: "77".into(),
        record: tandem_core::RecordRef::Id("1001".into()),
        kind: tandem_core::HintKind::Changed,
        occurred_at: 1,
    }];
    assert_eq!(
        hooks.engine.record_hints("hubspot", again).await.unwrap(),
        0,
        "event 77 was recorded before"
    );

    // Mailchimp: the validation GET needs no secret; a POST without the URL secret is refused.
    let mailchimp = format!("{}/webhooks/mailchimp", hooks.base);
    assert_eq!(reqwest::get(&mailchimp).await.unwrap().status(), 200);
    let form = "type=profile&fired_at=2024-05-02+08%3A30%3A00&data%5Bemail%5D=ada%40example.com";
    let refused = reqwest::Client::new()
        .post(format!("{mailchimp}?secret=guess"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        reqwest::get(format!("{}/webhooks/salesforce", hooks.base))
            .await
            .unwrap()
            .status(),
        404
    );
    shutdown.cancel();
}

#[tokio::test]
async fn dropped_duplicated_delayed_and_reordered_webhooks_still_converge() {
    let contacts = (0..20)
        .map(|i| contact(&format!("p{i}@example.com"), &[("firstname", "Start")]))
        .collect();
    let members = (0..20)
        .map(|i| member(&format!("p{i}@example.com"), &[("FNAME", "Start")]))
        .collect();
    let mut world = World::new(contacts, members).await;
    let shutdown = CancellationToken::new();
    let hooks = world.with_webhooks(&shutdown).await;
    eventually("the first pass links everyone", || {
        world.hubspot.stats().requests > 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let faults = Faults {
        drop: 0.3,
        duplicate: 0.3,
        delay: Duration::from_millis(20),
        reorder: true,
    };
    hooks.hubspot.set_faults(faults);
    hooks.mailchimp.set_faults(faults);
    world.later();
    for i in 0..20 {
        let email = format!("p{i}@example.com");
        if i % 2 == 0 {
            world
                .hubspot
                .edit(&email, &[("firstname", &format!("HubSpot {i}"))]);
        } else {
            world
                .mailchimp
                .edit(&email, &[("FNAME", &format!("Mailchimp {i}"))]);
        }
    }
    // Whatever the webhooks missed, the next poll finds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    hooks.engine.pass(&CancellationToken::new()).await.unwrap();
    for i in 0..20 {
        let email = format!("p{i}@example.com");
        let expected = if i % 2 == 0 {
            format!("HubSpot {i}")
        } else {
            format!("Mailchimp {i}")
        };
        assert_eq!(
            world.hubspot_value(&email, "firstname"),
            Some(expected.clone()),
            "{email} in HubSpot"
        );
        assert_eq!(
            world.mailchimp_value(&email, "FNAME"),
            Some(expected),
            "{email} in Mailchimp"
        );
    }
    assert!(
        hooks
            .hubspot
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the fault dropped some"
    );
    shutdown.cancel();
}
