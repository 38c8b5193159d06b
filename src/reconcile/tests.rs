//! Reconcile tests: a table of decisions per rule, then properties over random
//! scenarios of every rule (deterministic, idempotent once applied, symmetric
//! with the sides swapped, and no edit lost).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::policy::{Codec, FieldPolicy, FieldType, Policy};

const L: Side = Side::Left;
const R: Side = Side::Right;
const NEWEST: Rule = Rule::Newest {
    tie: None,
    skew_ms: 0,
};

fn v(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        json!(text)
    }
}

fn field(rule: Rule) -> FieldPolicy {
    let kind = match rule {
        Rule::Union => FieldType::List,
        _ => FieldType::Text,
    };
    FieldPolicy {
        name: "f".into(),
        left: "l.f".into(),
        right: "r.f".into(),
        rule,
        key: false,
        codec: Codec {
            kind,
            ..Codec::default()
        },
        allow_empty: false,
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

const KEPT: Decision = Decision::Kept {
    why: "empty_protected",
};

/// One case: field, base (left, right) or none, left, right, change times, expected decision.
fn check(
    field: &FieldPolicy,
    base: Option<(Value, Value)>,
    left: Value,
    right: Value,
    times: (Millis, Millis),
    expected: Decision,
) {
    let base = base.map(|(l, r)| FieldBase { left: l, right: r });
    let got = decide_field(field, base.as_ref(), &left, &right, times.0, times.1);
    assert_eq!(
        got, expected,
        "rule {:?}, base {base:?}, left {left:?}, right {right:?}, times {times:?}",
        field.rule
    );
}

/// The same with text values ("" is empty).
fn check_text(
    field: &FieldPolicy,
    base: Option<(&str, &str)>,
    left: &str,
    right: &str,
    times: (Millis, Millis),
    expected: Decision,
) {
    check(
        field,
        base.map(|(l, r)| (v(l), v(r))),
        v(left),
        v(right),
        times,
        expected,
    );
}

#[test]
fn one_sided_edits_flow_whatever_the_rule() {
    let manual = field(Rule::Manual);
    for rule in [
        NEWEST,
        Rule::Manual,
        Rule::SourceOfTruth(L),
        Rule::SourceOfTruth(R),
        Rule::Max,
        Rule::Min,
        Rule::TextMerge,
    ] {
        let f = field(rule);
        check_text(&f, Some(("a", "a")), "a", "a", (1, 2), Decision::Unchanged);
        check_text(
            &f,
            Some(("a", "a")),
            "b",
            "a",
            (1, 9),
            write(R, "b", "changed"),
        );
        check_text(
            &f,
            Some(("a", "a")),
            "a",
            "b",
            (9, 1),
            write(L, "b", "changed"),
        );
    }
    // A side moved to what the other holds: agreed, nothing to write.
    check_text(&manual, Some(("a", "b")), "b", "b", (1, 2), agreed("b"));
    // The base per side absorbs a vendor's normalization: no change, no loop.
    check_text(
        &field(NEWEST),
        Some(("Ada", "ada")),
        "Ada",
        "ada",
        (1, 2),
        Decision::Unchanged,
    );
}

#[test]
fn an_empty_value_does_not_erase_a_value_unless_allowed() {
    let mut f = field(NEWEST);
    check_text(&f, Some(("a", "a")), "", "a", (9, 1), KEPT);
    check_text(&f, Some(("a", "a")), "a", "", (1, 9), KEPT);
    // Both moved, one to empty: the non-empty one stays.
    check_text(
        &f,
        Some(("a", "a")),
        "",
        "c",
        (9, 1),
        write(L, "c", "prefer_non_empty"),
    );
    f.allow_empty = true;
    check_text(
        &f,
        Some(("a", "a")),
        "",
        "a",
        (9, 1),
        write(R, "", "changed"),
    );
    check_text(
        &f,
        Some(("a", "a")),
        "",
        "c",
        (9, 1),
        write(R, "", "newest"),
    );
    // prefer-non-empty keeps the value even where empties are allowed.
    let mut prefer = field(Rule::PreferNonEmpty { tie: None });
    prefer.allow_empty = true;
    check_text(
        &prefer,
        Some(("a", "a")),
        "",
        "c",
        (9, 1),
        write(L, "c", "prefer_non_empty"),
    );
    check_text(
        &prefer,
        Some(("a", "a")),
        "b",
        "c",
        (9, 1),
        Decision::Conflict {
            reason: "changed on both sides at the same time; no tie side",
        },
    );
    check_text(
        &field(Rule::PreferNonEmpty { tie: Some(R) }),
        Some(("a", "a")),
        "b",
        "c",
        (9, 1),
        write(L, "c", "prefer_non_empty_tie"),
    );
}

#[test]
fn rules_settle_edits_on_both_sides() {
    let manual = Decision::Conflict {
        reason: "changed on both sides; the rule is manual",
    };
    let tie = Decision::Conflict {
        reason: "changed on both sides at the same time; no tie side",
    };
    check_text(
        &field(NEWEST),
        Some(("a", "a")),
        "b",
        "c",
        (5, 3),
        write(R, "b", "newest"),
    );
    check_text(
        &field(NEWEST),
        Some(("a", "a")),
        "b",
        "c",
        (3, 5),
        write(L, "c", "newest"),
    );
    check_text(
        &field(NEWEST),
        Some(("a", "a")),
        "b",
        "c",
        (4, 4),
        tie.clone(),
    );
    check_text(
        &field(Rule::Newest {
            tie: Some(R),
            skew_ms: 0,
        }),
        Some(("a", "a")),
        "b",
        "c",
        (4, 4),
        write(L, "c", "newest_tie"),
    );
    // Within the clock-skew window two changes count as simultaneous.
    let skewed = field(Rule::Newest {
        tie: None,
        skew_ms: 5_000,
    });
    check_text(
        &skewed,
        Some(("a", "a")),
        "b",
        "c",
        (10_000, 6_000),
        tie.clone(),
    );
    check_text(
        &skewed,
        Some(("a", "a")),
        "b",
        "c",
        (10_000, 4_000),
        write(R, "b", "newest"),
    );
    check_text(
        &field(Rule::SourceOfTruth(L)),
        Some(("a", "a")),
        "b",
        "c",
        (1, 9),
        write(R, "b", "source_of_truth"),
    );
    check_text(
        &field(Rule::SourceOfTruth(R)),
        Some(("a", "a")),
        "b",
        "c",
        (9, 1),
        write(L, "c", "source_of_truth"),
    );
    check_text(
        &field(Rule::Manual),
        Some(("a", "a")),
        "b",
        "c",
        (1, 9),
        manual.clone(),
    );
    check_text(
        &field(Rule::Manual),
        Some(("a", "a")),
        "",
        "c",
        (9, 1),
        manual.clone(),
    );
    check(
        &field(Rule::Max),
        Some((json!(1), json!(1))),
        json!(7),
        json!(12),
        (1, 2),
        Decision::Write {
            to: L,
            value: json!(12),
            why: "max",
        },
    );
    check(
        &field(Rule::Min),
        Some((json!(1), json!(1))),
        json!(7),
        json!(12),
        (1, 2),
        Decision::Write {
            to: R,
            value: json!(7),
            why: "min",
        },
    );
    check_text(
        &field(Rule::Max),
        Some(("2020-01-01", "2020-01-01")),
        "2024-05-02",
        "2023-01-09",
        (1, 2),
        write(R, "2024-05-02", "max"),
    );
    check(
        &field(Rule::Max),
        Some((json!(1), json!(1))),
        json!(7),
        json!("x"),
        (1, 2),
        Decision::Conflict {
            reason: "the two values cannot be compared",
        },
    );
}

#[test]
fn a_first_link_fills_gaps_then_asks_the_rule() {
    check_text(&field(Rule::Manual), None, "a", "a", (1, 2), agreed("a"));
    check_text(
        &field(Rule::Manual),
        None,
        "a",
        "",
        (1, 2),
        write(R, "a", "fill_empty"),
    );
    check_text(
        &field(NEWEST),
        None,
        "",
        "b",
        (9, 2),
        write(L, "b", "fill_empty"),
    );
    check_text(
        &field(NEWEST),
        None,
        "a",
        "b",
        (1, 2),
        write(L, "b", "newest"),
    );
    check_text(
        &field(Rule::SourceOfTruth(R)),
        None,
        "a",
        "b",
        (9, 2),
        write(L, "b", "source_of_truth"),
    );
    check_text(&field(NEWEST), None, "", "", (1, 2), agreed(""));
}

fn list(items: &[&str]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        json!(items)
    }
}

#[test]
fn union_honours_additions_and_removals_of_both_sides() {
    let f = field(Rule::Union);
    let merged = |items: &[&str]| Decision::Merged {
        value: list(items),
        why: "union",
    };
    let base = Some((list(&["a", "b"]), list(&["a", "b"])));
    // Left adds c, right removes a.
    check(
        &f,
        base.clone(),
        list(&["a", "b", "c"]),
        list(&["b"]),
        (1, 2),
        merged(&["b", "c"]),
    );
    // One side alone: its change is the result.
    check(
        &f,
        base.clone(),
        list(&["a", "b", "d"]),
        list(&["a", "b"]),
        (1, 2),
        merged(&["a", "b", "d"]),
    );
    // Both remove everything: empty.
    check(
        &f,
        base.clone(),
        list(&[]),
        list(&["a"]),
        (1, 2),
        merged(&[]),
    );
    // First link: everything either side has.
    check(
        &f,
        None,
        list(&["a"]),
        list(&["b"]),
        (1, 2),
        merged(&["a", "b"]),
    );
}

#[test]
fn text_merge_merges_separate_edits_and_gives_up_on_the_same_words() {
    let f = field(Rule::TextMerge);
    let base = Some(("Call Tuesday about renewal", "Call Tuesday about renewal"));
    check_text(
        &f,
        base,
        "Call Tuesday about renewal and upsell",
        "Call Wednesday about renewal",
        (1, 2),
        Decision::Merged {
            value: v("Call Wednesday about renewal and upsell"),
            why: "text-merge",
        },
    );
    let overlap = Decision::Conflict {
        reason: "the same part of the text was edited on both sides",
    };
    check_text(
        &f,
        base,
        "Call Thursday about renewal",
        "Call Wednesday about renewal",
        (1, 2),
        overlap.clone(),
    );
    // Both inserting at the same place: which comes first is a guess.
    check_text(
        &f,
        base,
        "Call Tuesday about renewal!",
        "Call Tuesday about renewal?",
        (1, 2),
        overlap,
    );
    check_text(
        &f,
        None,
        "one",
        "two",
        (1, 2),
        Decision::Conflict {
            reason: "the sides never agreed on a text to merge from",
        },
    );
    assert_eq!(
        merge_text("héllo wörld", Some("héllo wörld!"), Some("Héllo wörld")),
        Some("Héllo wörld!".into())
    );
}

#[test]
fn a_read_only_side_owns_its_field() {
    let mut f = field(NEWEST);
    f.codec.sides[1].readonly = true;
    // The left's edit cannot go right: the right's value goes left instead.
    check_text(
        &f,
        Some(("a", "a")),
        "b",
        "a",
        (9, 1),
        write(L, "a", "read_only"),
    );
    check_text(
        &f,
        Some(("a", "a")),
        "a",
        "c",
        (1, 9),
        write(L, "c", "changed"),
    );
    check_text(
        &f,
        Some(("a", "a")),
        "b",
        "c",
        (9, 1),
        write(L, "c", "read_only"),
    );
}

pub(crate) fn policy() -> Policy {
    let named = |name: &str, rule| FieldPolicy {
        name: name.into(),
        left: format!("l.{name}"),
        right: format!("r.{name}"),
        key: name == "email",
        ..field(rule)
    };
    Policy {
        name: "test".into(),
        file: "test.toml".into(),
        left: "l".into(),
        right: "r".into(),
        create: [true, true],
        fields: vec![
            named("email", Rule::Manual),
            named("name", NEWEST),
            named("phone", Rule::SourceOfTruth(L)),
            named("company", Rule::Manual),
        ],
        on: Default::default(),
        scope: Default::default(),
        examples: 0,
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
    let values = |pairs: [(&str, &str); 4]| -> Values {
        pairs
            .into_iter()
            .map(|(k, x)| (k.to_string(), v(x)))
            .collect()
    };
    let left = values([
        ("email", "a@x"),
        ("name", "Ada"),
        ("phone", "old"),
        ("company", "Left Co"),
    ]);
    let right = values([
        ("email", "a@x"),
        ("name", "old"),
        ("phone", "555"),
        ("company", "Right Co"),
    ]);
    let plan = reconcile(
        &policy,
        &base,
        SideView {
            values: &left,
            changed_at: 1,
            fields_changed_at: &Default::default(),
        },
        SideView {
            values: &right,
            changed_at: 2,
            fields_changed_at: &Default::default(),
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

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(L), Just(R)]
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        Just(Rule::Manual),
        side().prop_map(Rule::SourceOfTruth),
        (
            proptest::option::of(side()),
            prop_oneof![Just(0i64), Just(1i64)]
        )
            .prop_map(|(tie, skew_ms)| Rule::Newest { tie, skew_ms }),
        Just(Rule::Union),
        Just(Rule::TextMerge),
        Just(Rule::Max),
        Just(Rule::Min),
        proptest::option::of(side()).prop_map(|tie| Rule::PreferNonEmpty { tie }),
    ]
}

/// Values a rule's field can hold: small sets for union, texts with edits for
/// text-merge, and a few texts otherwise, so that collisions are common.
fn value_for(rule: Rule) -> BoxedStrategy<Value> {
    match rule {
        Rule::Union => proptest::sample::subsequence(vec!["a", "b", "c"], 0..=3)
            .prop_map(|items| list(&items))
            .boxed(),
        Rule::TextMerge => prop_oneof![
            Just(Value::Null),
            Just(json!("one two three")),
            Just(json!("one 2 three")),
            Just(json!("one two 3")),
            Just(json!("0 one two three")),
            Just(json!("one two three four")),
        ]
        .boxed(),
        _ => prop_oneof![
            Just(Value::Null),
            Just(json!("a")),
            Just(json!("b")),
            Just(json!("c"))
        ]
        .boxed(),
    }
}

/// A field's state: its policy, base (usually the same value on both sides), values, change times.
#[derive(Debug, Clone)]
struct Scenario {
    field: FieldPolicy,
    base: Option<FieldBase>,
    left: Value,
    right: Value,
    times: (Millis, Millis),
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        rule(),
        any::<bool>(),
        proptest::option::weighted(0.25, side()),
    )
        .prop_flat_map(|(rule, allow_empty, readonly)| {
            let mut f = field(rule);
            f.allow_empty = allow_empty;
            if let Some(side) = readonly {
                f.codec.sides[side as usize].readonly = true;
            }
            let value = value_for(rule);
            let base = proptest::option::of((
                value.clone(),
                proptest::option::weighted(0.2, value.clone()),
            ))
            .prop_map(|b| {
                b.map(|(l, r)| FieldBase {
                    right: r.unwrap_or_else(|| l.clone()),
                    left: l,
                })
            });
            (Just(f), base, value.clone(), value, 0..3i64, 0..3i64).prop_map(
                |(field, base, left, right, lt, rt)| Scenario {
                    field,
                    base,
                    left,
                    right,
                    times: (lt, rt),
                },
            )
        })
}

fn decide(s: &Scenario) -> Decision {
    decide_field(
        &s.field,
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
        Decision::Agreed { .. } | Decision::Kept { .. } => {}
        Decision::Write { to, value, .. } => match to {
            Side::Left => next.left = value.clone(),
            Side::Right => next.right = value.clone(),
        },
        Decision::Merged { value, .. } => {
            if !s.field.readonly(L) {
                next.left = value.clone();
            }
            if !s.field.readonly(R) {
                next.right = value.clone();
            }
        }
    }
    if !matches!(decision, Decision::Unchanged | Decision::Conflict { .. }) {
        next.base = Some(FieldBase {
            left: next.left.clone(),
            right: next.right.clone(),
        });
    }
    next
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

fn set_of(value: &Value) -> std::collections::BTreeSet<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        _ => Default::default(),
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
        let again = decide(&apply(&s, &first));
        match first {
            Decision::Conflict { .. } => prop_assert_eq!(again, first, "a conflict stays until a person acts"),
            _ => prop_assert_eq!(again, Decision::Unchanged),
        }
    }

    #[test]
    fn decisions_are_symmetric(s in scenario()) {
        let swapped = Scenario {
            field: s.field.mirrored(),
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
        match &decision {
            Decision::Write { to, value, why } => {
                // Every write carries the other side's current value, changes something,
                // and never lands on a read-only side.
                prop_assert_eq!(value, current(to.other()));
                prop_assert_ne!(value, current(*to));
                prop_assert!(!s.field.readonly(*to));
                if moved(*to) {
                    // Overwriting a side that moved takes a named rule, never a plain copy.
                    prop_assert!(["newest", "newest_tie", "source_of_truth", "prefer_non_empty", "prefer_non_empty_tie", "fill_empty", "max", "min", "read_only"].contains(why), "why {why}");
                    if *why == "fill_empty" { prop_assert!(current(*to).is_null()); }
                } else {
                    prop_assert!(*why == "changed" || *why == "read_only", "why {why}");
                }
                if s.field.rule == Rule::Manual && moved(L) && moved(R) {
                    prop_assert_eq!(*why, "fill_empty", "a person-only field is written only to fill a gap");
                }
            }
            Decision::Kept { why } => {
                // Only an emptied value is held back, and only where empties may not erase.
                // and a first link never fills the other side with a read-only side's gap.
                prop_assert!(s.left.is_null() || s.right.is_null());
                match *why {
                    "empty_protected" => prop_assert!(!s.field.allow_empty),
                    "read_only" => {
                        prop_assert!(s.base.is_none());
                        prop_assert!((s.field.readonly(L) && s.left.is_null()) || (s.field.readonly(R) && s.right.is_null()));
                    }
                    other => prop_assert!(false, "kept for {other}"),
                }
            }
            Decision::Agreed { left, right } => prop_assert_eq!((left, right), (&s.left, &s.right)),
            Decision::Merged { value, why } if *why == "union" => {
                // Every addition stays unless the other side removed it; every removal holds unless re-added.
                let merged = set_of(value);
                let base = s.base.as_ref().map_or((Default::default(), Default::default()), |b| (set_of(&b.left), set_of(&b.right)));
                let (l, r) = (set_of(&s.left), set_of(&s.right));
                for item in l.difference(&base.0).chain(r.difference(&base.1)) {
                    prop_assert!(merged.contains(item), "added {item} lost");
                }
                for item in base.0.difference(&l).chain(base.1.difference(&r)) {
                    let re_added = (l.contains(item) && !base.0.contains(item)) || (r.contains(item) && !base.1.contains(item));
                    prop_assert!(!merged.contains(item) || re_added, "removed {item} came back");
                }
            }
            Decision::Merged { value, .. } => prop_assert!(value.is_string()),
            Decision::Unchanged | Decision::Conflict { .. } => {}
        }
    }
}

#[test]
fn text_merge_counts_characters_not_bytes() {
    let merged = crate::reconcile::merge_text(
        "Café à Zürich, rendez-vous lundi",
        Some("Café à Zürich, rendez-vous lundi 9h"),
        Some("Thé à Zürich, rendez-vous lundi"),
    );
    assert_eq!(
        merged.as_deref(),
        Some("Thé à Zürich, rendez-vous lundi 9h")
    );
    let emoji =
        crate::reconcile::merge_text("👋 hello 🌍", Some("👋👋 hello 🌍"), Some("👋 hello 🌍!"));
    assert_eq!(emoji.as_deref(), Some("👋👋 hello 🌍!"));
}

#[test]
fn a_fields_own_change_time_outweighs_the_records() {
    // The left record changed last (someone edited its phone), but its name was
    // set before the right side's name: the right name is the newer edit.
    let policy = policy();
    let base: Base = [("name", "Ada")]
        .into_iter()
        .map(|(f, b)| {
            (
                f.to_string(),
                FieldBase {
                    left: v(b),
                    right: v(b),
                },
            )
        })
        .collect();
    let values = |name: &str| -> Values {
        [("email", "a@x"), ("name", name)]
            .into_iter()
            .map(|(k, x)| (k.to_string(), v(x)))
            .collect()
    };
    let (left, right) = (values("Augusta"), values("Ada L."));
    let decide = |left_name_at: Option<Millis>| {
        let times: std::collections::BTreeMap<String, Millis> = left_name_at
            .map(|at| ("l.name".to_string(), at))
            .into_iter()
            .collect();
        reconcile(
            &policy,
            &base,
            SideView {
                values: &left,
                changed_at: 300,
                fields_changed_at: &times,
            },
            SideView {
                values: &right,
                changed_at: 200,
                fields_changed_at: &Default::default(),
            },
        )
    };
    assert_eq!(
        decide(None).writes_to(R).get("name"),
        Some(&v("Augusta")),
        "by record times"
    );
    let by_field = decide(Some(100));
    assert_eq!(
        by_field.writes_to(L).get("name"),
        Some(&v("Ada L.")),
        "by the field's own time"
    );
    assert!(by_field.writes_to(R).get("name").is_none());
}
