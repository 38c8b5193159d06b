//! People settle conflicts: the chosen value reaches both simulators through
//! the outbox on the next pass, the decision is audited with who made it, it is
//! over once both sides hold the value, and an edit made after the decision is
//! not overwritten by it. Dead letters are retried or discarded.

use serde_json::{Value, json};
use tandem::people;
use tandem::store::{Choice, ConflictFilter, ConflictRow};

use crate::cli::{stderr, tandem};
use crate::support::{World, contact, member};

const ADA: &str = "ada@example.com";
const GRACE: &str = "grace@example.com";

/// Ada and Grace linked, then both companies changed on both sides: two open
/// `manual` conflicts on `company`.
async fn two_conflicts() -> (World, tandem::engine::Engine) {
    let world = World::new(
        vec![
            contact(ADA, &[("firstname", "Ada"), ("company", "Analytical")]),
            contact(GRACE, &[("firstname", "Grace"), ("company", "Navy")]),
        ],
        vec![
            member(ADA, &[("FNAME", "Ada"), ("COMPANY", "Analytical")]),
            member(GRACE, &[("FNAME", "Grace"), ("COMPANY", "Navy")]),
        ],
    )
    .await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    world.later();
    world.hubspot.edit(ADA, &[("company", "Babbage & Co")]);
    world
        .mailchimp
        .edit(ADA, &[("COMPANY", "Analytical Engines")]);
    world.hubspot.edit(GRACE, &[("company", "US Navy")]);
    world.mailchimp.edit(GRACE, &[("COMPANY", "Harvard")]);
    let report = world.pass(&engine).await;
    assert_eq!(report.conflicts_opened, 2, "{report:?}");
    (world, engine)
}

async fn open_conflict(engine: &tandem::engine::Engine, key: &str) -> ConflictRow {
    let key = key.to_string();
    engine
        .store()
        .call(move |s| {
            Ok(s.conflicts(false)?
                .into_iter()
                .find(|c| c.key == key)
                .expect("an open conflict"))
        })
        .await
        .unwrap()
}

async fn resolve(engine: &tandem::engine::Engine, id: i64, choice: Choice) -> ConflictRow {
    engine
        .store()
        .call(move |s| {
            Ok(people::resolve(
                s,
                id,
                &choice,
                "grace.support",
                1_800_000_000_000,
            ))
        })
        .await
        .unwrap()
        .unwrap()
}

async fn row(engine: &tandem::engine::Engine, id: i64) -> ConflictRow {
    engine
        .store()
        .call(move |s| s.conflict(id))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_chosen_side_reaches_the_other_and_the_decision_is_audited() {
    let (world, engine) = two_conflicts().await;
    let conflict = open_conflict(&engine, ADA).await;
    let resolved = resolve(&engine, conflict.id, Choice::Right).await;
    assert_eq!(
        (resolved.status.as_str(), resolved.resolution.as_deref()),
        ("resolved", Some("right"))
    );
    assert_eq!(resolved.chosen, Some(json!("Analytical Engines")));
    assert_eq!(resolved.outcome, None, "not written yet");
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Babbage & Co"),
        "nothing is written outside a pass"
    );

    let report = world.pass(&engine).await;
    assert_eq!(report.updated, [1, 0], "{report:?}");
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Analytical Engines")
    );
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Analytical Engines")
    );
    // The next pass sees both sides hold it: the decision is over, nothing more is written.
    let settled = world.pass(&engine).await;
    assert_eq!(settled.writes(), 0, "{settled:?}");
    let done = row(&engine, conflict.id).await;
    assert_eq!(done.outcome.as_deref(), Some("applied"));
    assert!(done.applied_at.is_some());
    assert_eq!(settled.open_conflicts, 1, "Grace's conflict is still open");

    let audit = engine.store().call(|s| s.audit_log(200)).await.unwrap();
    let decision = audit
        .iter()
        .find(|e| e.action == "conflict_resolved")
        .expect("the decision is audited");
    assert_eq!(decision.actor, "grace.support");
    assert_eq!(decision.detail["take"], "right");
    assert_eq!(decision.detail["value"], "Analytical Engines");
    assert!(
        audit.iter().any(|e| e.action == "update"
            && e.side.as_deref() == Some("left")
            && e.detail["written"]["properties.company"] == "Analytical Engines"),
        "the write is audited"
    );
    assert!(audit.iter().any(|e| e.action == "resolution_applied"));
}

#[tokio::test]
async fn a_value_of_ones_own_is_written_to_both_sides() {
    let (world, engine) = two_conflicts().await;
    let conflict = open_conflict(&engine, ADA).await;
    resolve(
        &engine,
        conflict.id,
        Choice::Value {
            value: json!("Analytical Engines Ltd"),
        },
    )
    .await;
    let report = world.pass(&engine).await;
    assert_eq!(report.updated, [1, 1], "{report:?}");
    for value in [
        world.hubspot_value(ADA, "company"),
        world.mailchimp_value(ADA, "COMPANY"),
    ] {
        assert_eq!(value.as_deref(), Some("Analytical Engines Ltd"));
    }
    world.pass(&engine).await;
    assert_eq!(
        row(&engine, conflict.id).await.outcome.as_deref(),
        Some("applied")
    );
}

#[tokio::test]
async fn an_edit_made_after_the_decision_is_not_overwritten() {
    let (world, engine) = two_conflicts().await;
    let conflict = open_conflict(&engine, ADA).await;
    resolve(&engine, conflict.id, Choice::Left).await;
    // Before the engine writes it, the subscriber changes the company again.
    world.later();
    world
        .mailchimp
        .edit(ADA, &[("COMPANY", "Lovelace Computing")]);
    let report = world.pass(&engine).await;

    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Lovelace Computing"),
        "the newer edit stands"
    );
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Babbage & Co")
    );
    assert_eq!(
        row(&engine, conflict.id).await.outcome.as_deref(),
        Some("superseded")
    );
    assert_eq!(
        report.conflicts_opened, 1,
        "a new conflict for the new edit: {report:?}"
    );
    let fresh = open_conflict(&engine, ADA).await;
    assert_ne!(fresh.id, conflict.id);
    assert_eq!(fresh.right, json!("Lovelace Computing"));
}

#[tokio::test]
async fn bulk_resolution_by_filter_and_refusals() {
    let (world, engine) = two_conflicts().await;
    let outcome = engine
        .store()
        .call(|s| {
            let filter = ConflictFilter {
                field: Some("company".into()),
                ..ConflictFilter::default()
            };
            people::resolve_matching(s, &filter, &Choice::Left, "ops", 1)
        })
        .await
        .unwrap();
    assert_eq!(outcome.resolved.len(), 2, "{outcome:?}");
    world.pass(&engine).await;
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Babbage & Co")
    );
    assert_eq!(
        world.mailchimp_value(GRACE, "COMPANY").as_deref(),
        Some("US Navy")
    );

    // A resolved conflict cannot be resolved again; a merge needs a text-merge field.
    let id = outcome.resolved[0];
    let again = engine
        .store()
        .call(move |s| Ok(people::resolve(s, id, &Choice::Right, "ops", 2)))
        .await
        .unwrap();
    assert!(
        matches!(again, Err(tandem::store::ResolveError::NotOpen(_))),
        "{again:?}"
    );
}

#[test]
fn a_typed_value_takes_the_type_of_the_values_in_conflict() {
    let conflict = |left: Value, right: Value, rule: &str| ConflictRow {
        id: 1,
        pair: "p".into(),
        link: 1,
        key: ADA.into(),
        field: "f".into(),
        kind: "field".into(),
        detail: None,
        base: Some((
            json!("Call Tuesday about renewal"),
            json!("Call Tuesday about renewal"),
        )),
        left,
        right,
        changed_at: [None, None],
        rule: rule.into(),
        reason: String::new(),
        status: "open".into(),
        opened_at: 0,
        updated_at: 0,
        resolution: None,
        resolved_by: None,
        resolved_at: None,
        chosen: None,
        applied_at: None,
        outcome: None,
    };
    let typed = |c: &ConflictRow, text: &str| {
        people::chosen_value(c, &Choice::Value { value: json!(text) })
    };
    let numbers = conflict(json!(3), json!(5), "manual");
    assert_eq!(typed(&numbers, " 42 "), Ok(json!(42)));
    assert!(
        typed(&numbers, "forty")
            .unwrap_err()
            .contains("not a number")
    );
    let flags = conflict(json!(true), json!(false), "manual");
    assert_eq!(typed(&flags, "no"), Ok(json!(false)));
    let tags = conflict(json!(["a"]), json!(["b"]), "manual");
    assert_eq!(typed(&tags, "a, c,"), Ok(json!(["a", "c"])));
    assert!(
        people::chosen_value(&numbers, &Choice::Merge)
            .unwrap_err()
            .contains("not text-merge")
    );

    let notes = conflict(
        json!("Call Thursday about renewal"),
        json!("Call Wednesday about renewal"),
        "text-merge",
    );
    assert_eq!(
        people::chosen_value(&notes, &Choice::Merge),
        Ok(json!("Call Thursday / Wednesday about renewal"))
    );
}

#[tokio::test]
async fn the_cli_lists_shows_and_resolves() {
    let (world, engine) = two_conflicts().await;
    let config = world.dir.path().join("tandem.toml").display().to_string();
    let listed = tandem(
        &[
            "conflicts",
            "list",
            "--config",
            &config,
            "--search",
            "GRACE@",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let page: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(page["total"], 1, "{page}");
    let id = page["conflicts"][0]["id"].as_i64().unwrap();
    assert_eq!(page["conflicts"][0]["key"], GRACE);

    let shown = tandem(
        &["conflicts", "show", &id.to_string(), "--config", &config],
        &[],
    )
    .await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    for expected in [
        "US Navy",
        "Harvard",
        "base       Navy | Navy",
        "manual gave up",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }

    let resolved = tandem(
        &[
            "conflicts",
            "resolve",
            &id.to_string(),
            "--value",
            "Harvard University",
            "--config",
            &config,
        ],
        &[],
    )
    .await;
    assert_eq!(resolved.status.code(), Some(0), "{}", stderr(&resolved));
    let missing = tandem(
        &[
            "conflicts",
            "resolve",
            "9999",
            "--take",
            "left",
            "--config",
            &config,
        ],
        &[],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no conflict 9999"),
        "{}",
        stderr(&missing)
    );
    let unfiltered = tandem(
        &[
            "conflicts",
            "resolve",
            "--take",
            "left",
            "--config",
            &config,
        ],
        &[],
    )
    .await;
    assert_eq!(
        unfiltered.status.code(),
        Some(2),
        "no ids and no filter is refused"
    );

    world.pass(&engine).await;
    for value in [
        world.hubspot_value(GRACE, "company"),
        world.mailchimp_value(GRACE, "COMPANY"),
    ] {
        assert_eq!(value.as_deref(), Some("Harvard University"));
    }
    let audit = tandem(
        &[
            "audit",
            "--action",
            "conflict_resolved",
            "--json",
            "--config",
            &config,
        ],
        &[],
    )
    .await;
    let entries: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");
    assert!(
        entries[0]["actor"].as_str().unwrap().starts_with("cli:"),
        "{entries}"
    );
}
