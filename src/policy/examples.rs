//! A policy's `[[examples]]`: cases of one field (base, left, right, which side
//! changed last) with the outcome the policy must reach. They run when the
//! policy compiles, so a policy that contradicts its own examples never goes live.

use std::ops::Range;

use serde_json::Value;
use tandem_core::Millis;
use toml::Spanned;

use super::compile::side_named;
use super::raw::{RawExample, RawPolicy};
use super::{FieldPolicy, Policy};
use crate::location::Located;
use crate::reconcile::{Decision, FieldBase, decide_field};
use crate::side::Side;

/// How far apart "newer" puts two changes: beyond any clock-skew window.
const APART: Millis = 100 * 365 * 86_400_000;

/// What a field comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The canonical values each side ends with (left, right).
    Ends([Value; 2]),
    /// A person decides.
    Conflict(&'static str),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ends([left, right]) if left == right => {
                write!(f, "both sides end with {left}")
            }
            Outcome::Ends([left, right]) => write!(f, "left ends with {left}, right with {right}"),
            Outcome::Conflict(reason) => write!(f, "a conflict ({reason})"),
        }
    }
}

/// What deciding a field leaves on each side.
pub fn outcome(decision: &Decision, left: &Value, right: &Value) -> Outcome {
    match decision {
        Decision::Unchanged | Decision::Agreed { .. } | Decision::Kept { .. } => {
            Outcome::Ends([left.clone(), right.clone()])
        }
        Decision::Write { to, value, .. } => {
            let mut ends = [left.clone(), right.clone()];
            ends[*to as usize] = value.clone();
            Outcome::Ends(ends)
        }
        Decision::Merged { value, .. } => Outcome::Ends([value.clone(), value.clone()]),
        Decision::Conflict { reason } => Outcome::Conflict(reason),
    }
}

/// One example, its keys checked.
struct Example<'a> {
    about: String,
    field: &'a Spanned<toml::Value>,
    base: Option<&'a Spanned<toml::Value>>,
    values: [Option<&'a Spanned<toml::Value>>; 2],
    newer: Option<&'a Spanned<toml::Value>>,
    expect: Option<&'a Spanned<toml::Value>>,
    conflict: Option<&'a Spanned<toml::Value>>,
}

/// Sort an example's keys, or say what is wrong with them.
fn parse<'a>(
    example: &'a Spanned<RawExample>,
    raw: &RawPolicy,
    at: &dyn Fn(Range<usize>, String) -> Located,
    problems: &mut Vec<Located>,
) -> Option<Example<'a>> {
    let table = example.get_ref();
    let get = |name: &str| {
        table
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(_, v)| v)
    };
    let about = match get("about").map(|v| (v, v.get_ref())) {
        Some((_, toml::Value::String(text))) => text.clone(),
        Some((v, _)) => {
            problems.push(at(v.span(), "an example's `about` is text".into()));
            return None;
        }
        None => {
            problems.push(
                at(
                    example.span(),
                    "an example needs `about`, saying what it shows".into(),
                )
                .hint("add about = \"...\""),
            );
            return None;
        }
    };
    let mut parsed = Example {
        about,
        field: match get("field") {
            Some(field) => field,
            None => {
                problems.push(
                    at(
                        example.span(),
                        format!("example \"{}\": which `field`?", get_about(table)),
                    )
                    .hint("add field = \"<a field of [fields]>\""),
                );
                return None;
            }
        },
        base: get("base"),
        values: [None, None],
        newer: get("newer"),
        expect: get("expect"),
        conflict: get("conflict"),
    };
    let mut ok = true;
    for (key, value) in table {
        match key.get_ref().as_str() {
            "about" | "field" | "base" | "newer" | "expect" | "conflict" => {}
            name => match side_named(name, raw) {
                Some(side) => parsed.values[side as usize] = Some(value),
                None => {
                    problems.push(
                        at(
                            key.span(),
                            format!("example \"{}\": unknown key `{name}`", parsed.about),
                        )
                        .hint(format!(
                            "use about, field, base, {}, {}, newer, expect or conflict",
                            raw.left.get_ref(),
                            raw.right.get_ref()
                        )),
                    );
                    ok = false;
                }
            },
        }
    }
    ok.then_some(parsed)
}

fn get_about(table: &RawExample) -> String {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == "about")
        .and_then(|(_, v)| v.get_ref().as_str().map(String::from))
        .unwrap_or_default()
}

/// Run the examples against the compiled policy; every failure and every
/// malformed example is a problem at its place in the file.
pub fn check(
    policy: &Policy,
    examples: &[Spanned<RawExample>],
    raw: &RawPolicy,
    at: &dyn Fn(Range<usize>, String) -> Located,
) -> Vec<Located> {
    let mut problems = Vec::new();
    for example in examples {
        let Some(e) = parse(example, raw, at, &mut problems) else {
            continue;
        };
        let about = &e.about;
        let problem = |span: Range<usize>, message: String| {
            at(span, format!("example \"{about}\": {message}"))
        };
        let field_name = e.field.get_ref().as_str().unwrap_or_default();
        let Some(field) = policy.fields.iter().find(|f| f.name == field_name) else {
            problems.push(
                problem(
                    e.field.span(),
                    format!(
                        "`{}` is not a field of this policy",
                        plain(e.field.get_ref())
                    ),
                )
                .hint(format!(
                    "fields: {}",
                    policy
                        .fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            continue;
        };
        let newer = match e.newer.map(|n| (n, n.get_ref().as_str())) {
            None | Some((_, Some("same"))) => None,
            Some((n, name)) => match name.and_then(|name| side_named(name, raw)) {
                Some(side) => Some(side),
                None => {
                    problems.push(
                        problem(
                            n.span(),
                            format!("`newer = \"{}\"` is not a side", plain(n.get_ref())),
                        )
                        .hint(format!(
                            "use \"{}\", \"{}\" or \"same\"",
                            policy.left, policy.right
                        )),
                    );
                    continue;
                }
            },
        };
        let conflict = match e.conflict.map(|c| (c, c.get_ref())) {
            None | Some((_, toml::Value::Boolean(false))) => None,
            Some((c, toml::Value::Boolean(true))) => Some(c),
            Some((c, _)) => {
                problems.push(problem(c.span(), "`conflict` is true or false".into()));
                continue;
            }
        };
        let expected = match (e.expect, conflict) {
            (Some(_), Some(conflict)) => {
                problems.push(problem(
                    conflict.span(),
                    "give `expect` or `conflict = true`, not both".into(),
                ));
                continue;
            }
            (None, None) => {
                problems.push(
                    problem(example.span(), "says nothing of the outcome".into())
                        .hint("add expect = <the value both sides end with>, or conflict = true"),
                );
                continue;
            }
            (None, Some(_)) => None,
            (Some(expect), None) => match expected_ends(field, expect.get_ref(), raw) {
                Some(ends) => Some(ends),
                None => {
                    problems.push(
                        problem(
                            expect.span(),
                            "`expect` is a value, or a table of both sides' values".into(),
                        )
                        .hint(format!(
                            "for example expect = {{ {} = \"a\", {} = \"b\" }}",
                            policy.left, policy.right
                        )),
                    );
                    continue;
                }
            },
        };
        let value = |v: Option<&Spanned<toml::Value>>| v.map_or(Value::Null, |v| json(v.get_ref()));
        let (left, right) = (
            field.read(Side::Left, &value(e.values[0])),
            field.read(Side::Right, &value(e.values[1])),
        );
        let base = e.base.map(|b| {
            let agreed = field.canonical(&json(b.get_ref()));
            FieldBase {
                left: agreed.clone(),
                right: agreed,
            }
        });
        let times = match newer {
            None => (0, 0),
            Some(Side::Left) => (APART, 0),
            Some(Side::Right) => (0, APART),
        };
        let decision = decide_field(field, base.as_ref(), &left, &right, times.0, times.1);
        let got = outcome(&decision, &left, &right);
        let wanted = match expected {
            Some(ends) => Outcome::Ends(ends),
            None => Outcome::Conflict(""),
        };
        let matches = match (&wanted, &got) {
            (Outcome::Conflict(_), Outcome::Conflict(_)) => true,
            (wanted, got) => wanted == got,
        };
        if !matches {
            let wanted = match wanted {
                Outcome::Conflict(_) => "a conflict".to_string(),
                other => other.to_string(),
            };
            problems.push(problem(
                example.span(),
                format!(
                    "field `{}` (rule {}): expected {wanted}, but {got}",
                    field.name,
                    field.rule.name()
                ),
            ));
        }
    }
    problems
}

/// The canonical values an example expects each side to end with.
fn expected_ends(field: &FieldPolicy, expect: &toml::Value, raw: &RawPolicy) -> Option<[Value; 2]> {
    if let toml::Value::Table(table) = expect {
        let mut ends = [None, None];
        for (name, value) in table {
            let side = side_named(name, raw)?;
            ends[side as usize] = Some(field.canonical(&json(value)));
        }
        let [Some(left), Some(right)] = ends else {
            return None;
        };
        return Some([left, right]);
    }
    let value = field.canonical(&json(expect));
    Some([value.clone(), value])
}

/// A TOML value as JSON; dates and times become their text.
fn json(value: &toml::Value) -> Value {
    match value {
        toml::Value::Datetime(at) => Value::String(at.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(json).collect()),
        toml::Value::Table(table) => {
            Value::Object(table.iter().map(|(k, v)| (k.clone(), json(v))).collect())
        }
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}

/// A TOML value for a message: text without its quotes.
fn plain(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
