//! Reconcile tests: a table of decisions, then properties over random
//! scenarios (deterministic, idempotent, symmetric, and no edit lost).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::policy::{FieldPolicy, Policy};

const L: Side = Side::Left;
const R: Side = Side::Right;
const NEWEST: Rule = Rule::Newest { tie: None };

fn v(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        json!(text)
    }
}

fn write(to: Side, value: &str, why: &'static str) -> Decision {
    Decision::Write {
        to,
        value: v(value),
        why,
    }
}

fn agreed(value: &str) -> Decision {
    Decision::Agreed {
        left: v(value),
        right: v(value),
    }
}

/// One case: rule, base (left, right) or none, left, right, change times, expected decision.
fn check(
    rule: Rule,
    base: Option<(&str, &str)>,
    left: &str,
    right: &str,
    times: (Millis, Millis),
    expected: Decision,
) {
    let base = base.map(|(l, r)| FieldBase {
        left: v(l),
        right: v(r),
    });
    let got = decide_field(rule, base.as_ref(), &v(left), &v(right), times.0, times.1);
    assert_eq!(
        got, expected,
        "rule {rule:?}, base {base:?}, left {left:?}, right {right:?}, times {times:?}"
    );
}

#[test]
fn decisions() {
    let manual = Decision::Conflict {
        reason: "changed on both sides; the rule is manual",
    };
    let tie = Decision::Conflict {
        reason: "changed on both sides at the same time; no tie side",
    };
    // Nothing moved.
    check(
        NEWEST,
        Some(("a", "a")),
        "a",
        "a",
        (1, 2),
        Decision::Unchanged,
    );
    check(
        Rule::Manual,
        Some(("a", "A")),
        "a",
        "A",
        (1, 2),
        Decision::Unchanged,
    );
    // One side moved: copied whatever the rule, even to an empty value.
    for rule in [
        NEWEST,
        Rule::Manual,
        Rule::SourceOfTruth(L),
        Rule::SourceOfTruth(R),
    ] {
        check(
            rule,
            Some(("a", "a")),
            "b",
            "a",
            (1, 9),
            write(R, "b", "changed"),
        );
        check(
            rule,
            Some(("a", "a")),
            "a",
            "b",
            (9, 1),
            write(L, "b", "changed"),
        );
        check(
            rule,
            Some(("a", "a")),
            "",
            "a",
            (1, 9),
            write(R, "", "changed"),
        );
    }
    // A side moved to what the other holds: agreed, nothing to write.
    check(NEWEST, Some(("a", "a")), "b", "b", (1, 2), agreed("b"));
    check(
        Rule::Manual,
        Some(("a", "b")),
        "b",
        "b",
        (1, 2),
        agreed("b"),
    );
    // The base per side absorbs a vendor's normalization: no change, no loop.
    check(
        NEWEST,
        Some(("Ada", "ada")),
        "Ada",
        "ada",
        (1, 2),
        Decision::Unchanged,
    );
    // Both moved to different values: the rule decides.
    check(
        NEWEST,
        Some(("a", "a")),
        "b",
        "c",
        (5, 3),
        write(R, "b", "newest"),
    );
    check(
        NEWEST,
        Some(("a", "a")),
        "b",
        "c",
        (3, 5),
        write(L, "c", "newest"),
    );
    check(NEWEST, Some(("a", "a")), "b", "c", (4, 4), tie.clone());
    check(
        Rule::Newest { tie: Some(R) },
        Some(("a", "a")),
        "b",
        "c",
        (4, 4),
        write(L, "c", "newest_tie"),
    );
    check(
        Rule::SourceOfTruth(L),
        Some(("a", "a")),
        "b",
        "c",
        (1, 9),
        write(R, "b", "source_of_truth"),
    );
    check(
        Rule::SourceOfTruth(R),
        Some(("a", "a")),
        "b",
        "c",
        (9, 1),
        write(L, "c", "source_of_truth"),
    );
    check(
        Rule::Manual,
        Some(("a", "a")),
        "b",
        "c",
        (1, 9),
        manual.clone(),
    );
    // ... and an empty value never erases a non-empty one, except by a person.
    check(
        NEWEST,
        Some(("a", "a")),
        "",
        "c",
        (9, 1),
        write(L, "c", "prefer_non_empty"),
    );
    check(
        Rule::SourceOfTruth(L),
        Some(("a", "a")),
        "",
        "c",
        (9, 1),
        write(L, "c", "prefer_non_empty"),
    );
    check(
        Rule::Manual,
        Some(("a", "a")),
        "",
        "c",
        (9, 1),
        manual.clone(),
    );
    // First link (no base): equal values agree, a gap is filled, differences go to the rule.
    check(Rule::Manual, None, "a", "a", (1, 2), agreed("a"));
    check(
        Rule::Manual,
        None,
        "a",
        "",
        (1, 2),
        write(R, "a", "fill_empty"),
    );
    check(NEWEST, None, "", "b", (9, 2), write(L, "b", "fill_empty"));
    check(NEWEST, None, "a", "b", (1, 2), write(L, "b", "newest"));
    check(Rule::Manual, None, "a", "b", (1, 2), manual);
    check(
        Rule::SourceOfTruth(R),
        None,
        "a",
        "b",
        (9, 2),
        write(L, "b", "source_of_truth"),
    );
    check(NEWEST, None, "", "", (1, 2), agreed(""));
}

fn policy() -> Policy {
    let field = |name: &str, rule| FieldPolicy {
        key: name == "email",
        name: name.into(),
        left: format!("l.{name}"),
        right: format!("r.{name}"),
        rule,
    };
    Policy {
        name: "test".into(),
        file: "test.toml".into(),
        left: "l".into(),
        right: "r".into(),
        create: [true, true],
        fields: vec![
            field("email", Rule::Manual),
            field("name", NEWEST),
            field("phone", Rule::SourceOfTruth(L)),
            field("company", Rule::Manual),
        ],
        on: Default::default(),
    }
}

#[test]
fn a_record_reconciles_field_by_field() {
    let policy = policy();
    let mut base: Base = ["name", "phone", "company"]
        .into_iter()
        .map(|f| {
            (
                f.to_string(),
                FieldBase {
                    left: v("old"),
                    right: v("old"),
                },
            )
        })
        .collect();
    base.insert(
        "email".into(),
        FieldBase {
            left: v("a@x"),
            right: v("a@x"),
        },
    );
    let left: Values = [
        ("email", "a@x"),
        ("name", "Ada"),
        ("phone", "old"),
        ("company", "Left Co"),
    ]
    .into_iter()
    .map(|(k, x)| (k.to_string(), v(x)))
    .collect();
    let right: Values = [
        ("email", "a@x"),
        ("name", "old"),
        ("phone", "555"),
        ("company", "Right Co"),
    ]
    .into_iter()
    .map(|(k, x)| (k.to_string(), v(x)))
    .collect();
    let plan = reconcile(
        &policy,
        &base,
        SideView {
            values: &left,
            changed_at: 1,
        },
        SideView {
            values: &right,
            changed_at: 2,
        },
    );
    assert_eq!(
        plan.writes_to(R),
        &Values::from([("name".to_string(), v("Ada"))])
    );
    assert_eq!(
        plan.writes_to(L),
        &Values::from([("phone".to_string(), v("555"))])
    );
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(
        (plan.conflicts[0].field.as_str(), plan.conflicts[0].rule),
        ("company", Rule::Manual)
    );
    assert_eq!(plan.settled, vec!["name".to_string(), "phone".to_string()]);
    assert!(plan.agreed.is_empty());
}

// ---- properties -------------------------------------------------------------

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!("a")),
        Just(json!("b")),
        Just(json!("c"))
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(L), Just(R)]
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        Just(Rule::Manual),
        side().prop_map(Rule::SourceOfTruth),
        proptest::option::of(side()).prop_map(|tie| Rule::Newest { tie }),
    ]
}

/// A field's state: rule, base (usually the same value on both sides), values, change times.
#[derive(Debug, Clone)]
struct Scenario {
    rule: Rule,
    base: Option<FieldBase>,
    left: Value,
    right: Value,
    times: (Millis, Millis),
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let base = proptest::option::of(
        (value(), proptest::option::weighted(0.2, value())).prop_map(|(l, r)| FieldBase {
            right: r.unwrap_or_else(|| l.clone()),
            left: l,
        }),
    );
    (rule(), base, value(), value(), 0..3i64, 0..3i64).prop_map(
        |(rule, base, left, right, lt, rt)| Scenario {
            rule,
            base,
            left,
            right,
            times: (lt, rt),
        },
    )
}

fn decide(s: &Scenario) -> Decision {
    decide_field(
        s.rule,
        s.base.as_ref(),
        &s.left,
        &s.right,
        s.times.0,
        s.times.1,
    )
}

/// The state after the decision's writes are confirmed and the base moved.
fn apply(s: &Scenario, decision: &Decision) -> Scenario {
    let mut next = s.clone();
    match decision {
        Decision::Unchanged | Decision::Conflict { .. } => {}
        Decision::Agreed { left, right } => {
            next.base = Some(FieldBase {
                left: left.clone(),
                right: right.clone(),
            })
        }
        Decision::Write { to, value, .. } => {
            match to {
                Side::Left => next.left = value.clone(),
                Side::Right => next.right = value.clone(),
            }
            next.base = Some(FieldBase {
                left: next.left.clone(),
                right: next.right.clone(),
            });
        }
    }
    next
}

fn mirror_rule(rule: Rule) -> Rule {
    match rule {
        Rule::SourceOfTruth(side) => Rule::SourceOfTruth(side.other()),
        Rule::Newest { tie } => Rule::Newest {
            tie: tie.map(Side::other),
        },
        other => other,
    }
}

fn mirror_decision(decision: Decision) -> Decision {
    match decision {
        Decision::Write { to, value, why } => Decision::Write {
            to: to.other(),
            value,
            why,
        },
        Decision::Agreed { left, right } => Decision::Agreed {
            left: right,
            right: left,
        },
        other => other,
    }
}

proptest! {
    #[test]
    fn decisions_are_deterministic(s in scenario()) {
        prop_assert_eq!(decide(&s), decide(&s.clone()));
    }

    #[test]
    fn deciding_again_after_applying_changes_nothing(s in scenario()) {
        let first = decide(&s);
        let next = apply(&s, &first);
        let again = decide(&next);
        match first {
            Decision::Conflict { .. } => prop_assert_eq!(again, first, "a conflict stays until a person acts"),
            _ => prop_assert_eq!(again, Decision::Unchanged),
        }
    }

    #[test]
    fn decisions_are_symmetric(s in scenario()) {
        let swapped = Scenario {
            rule: mirror_rule(s.rule),
            base: s.base.as_ref().map(|b| FieldBase { left: b.right.clone(), right: b.left.clone() }),
            left: s.right.clone(),
            right: s.left.clone(),
            times: (s.times.1, s.times.0),
        };
        prop_assert_eq!(decide(&swapped), mirror_decision(decide(&s)));
    }

    #[test]
    fn no_edit_disappears_unaccounted(s in scenario()) {
        let decision = decide(&s);
        let moved = |side: Side| match (&s.base, side) {
            (None, _) => true,
            (Some(b), Side::Left) => b.left != s.left,
            (Some(b), Side::Right) => b.right != s.right,
        };
        let current = |side: Side| if side == L { &s.left } else { &s.right };
        if moved(L) || moved(R) {
            prop_assert_ne!(&decision, &Decision::Unchanged, "a moved field must be decided");
        }
        if let Decision::Write { to, value, why } = &decision {
            // Every write carries the other side's current value and changes something.
            prop_assert_eq!(value, current(to.other()));
            prop_assert_ne!(value, current(*to));
            // Overwriting a side that moved takes a named rule, never a plain copy.
            if moved(*to) {
                prop_assert!(["newest", "newest_tie", "source_of_truth", "prefer_non_empty", "fill_empty"].contains(why), "why {why}");
                if *why == "fill_empty" { prop_assert!(current(*to).is_null()); }
            } else {
                prop_assert_eq!(*why, "changed");
            }
            // A person-only field is never written when both sides moved, except to fill a gap.
            if s.rule == Rule::Manual && moved(L) && moved(R) {
                prop_assert_eq!(*why, "fill_empty");
            }
        }
        if let Decision::Agreed { left, right } = &decision {
            prop_assert_eq!((left, right), (&s.left, &s.right));
        }
    }
}
