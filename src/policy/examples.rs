//! A policy's `[[examples]]`: cases of one field (base, left, right, which side
//! changed last) with the outcome the policy must reach. They run when the
//! policy compiles, so a policy that contradicts its own examples never goes live.

use std::ops::Range;

use serde_json::Value;
use tandem_core::Millis;
use toml::Spanned;

use super::Policy;
use super::compile::side_named;
use super::raw::{RawExample, RawPolicy};
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

/// What an example expects.
enum Expected<'a> {
    /// A person decides.
    Conflict,
    /// Both sides end with this canonical value.
    Both(&'a toml::Value),
    /// Each side ends with its own (left, right).
    Sides([&'a toml::Value; 2]),
}

/// One example whose shape is checked; its outcome is checked by [`run`].
pub struct Example<'a> {
    about: String,
    span: Range<usize>,
    field: &'a Spanned<toml::Value>,
    base: Option<&'a Spanned<toml::Value>>,
    values: [Option<&'a Spanned<toml::Value>>; 2],
    newer: Option<Side>,
    expected: Expected<'a>,
}

/// Check every example's keys and values against the raw policy, reporting
/// every problem; the well-formed ones are returned to be run once the policy
/// compiles. This stage needs no compiled policy, so its problems come with
/// the policy's own.
pub fn parse_all<'a>(
    examples: &'a [Spanned<RawExample>],
    raw: &RawPolicy,
    at: &dyn Fn(Range<usize>, String) -> Located,
    problems: &mut Vec<Located>,
) -> Vec<Example<'a>> {
    let mut parsed = Vec::new();
    for example in examples {
        let mut found = Vec::new();
        if let Some(e) = parse(example, raw, at, &mut found) {
            parsed.push(e);
        }
        found.sort_by_key(|p| (p.line, p.column));
        problems.extend(found);
    }
    parsed
}

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
    let problem =
        |span: Range<usize>, message: String| at(span, format!("example \"{about}\": {message}"));
    let before = problems.len();
    let field = get("field");
    if field.is_none() {
        problems.push(
            problem(example.span(), "which `field`?".into())
                .hint("add field = \"<a field of [fields]>\""),
        );
    }
    if let Some(field) = field {
        let name = plain(field.get_ref());
        if !raw.fields.get_ref().keys().any(|k| k.get_ref() == &name) {
            let mut names: Vec<_> = raw.fields.get_ref().keys().collect();
            names.sort_by_key(|k| k.span().start);
            problems.push(
                problem(
                    field.span(),
                    format!("`{name}` is not a field of this policy"),
                )
                .hint(format!(
                    "fields: {}",
                    names
                        .iter()
                        .map(|k| k.get_ref().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
    }
    // The sides' values, by connector name or `left`/`right`, each given once.
    let mut values: [Option<&Spanned<toml::Value>>; 2] = [None, None];
    let mut given_by: [Option<&str>; 2] = [None, None];
    let mut keys: Vec<_> = table.iter().collect();
    keys.sort_by_key(|(k, _)| k.span().start);
    for (key, value) in keys {
        match key.get_ref().as_str() {
            "about" | "field" | "base" | "newer" | "expect" | "conflict" => {}
            name => match side_named(name, raw) {
                Some(side) => match given_by[side as usize] {
                    Some(first) => problems.push(problem(
                        key.span(),
                        format!("`{first}` and `{name}` both give the {side} side's value"),
                    )),
                    None => {
                        given_by[side as usize] = Some(key.get_ref());
                        values[side as usize] = Some(value);
                    }
                },
                None => problems.push(problem(key.span(), format!("unknown key `{name}`")).hint(
                    format!(
                        "use about, field, base, {}, {}, newer, expect or conflict",
                        raw.left.get_ref(),
                        raw.right.get_ref()
                    ),
                )),
            },
        }
    }
    let newer = match get("newer").map(|n| (n, n.get_ref().as_str())) {
        None | Some((_, Some("same"))) => None,
        Some((n, name)) => {
            let side = name.and_then(|name| side_named(name, raw));
            if side.is_none() {
                problems.push(
                    problem(
                        n.span(),
                        format!("`newer = \"{}\"` is not a side", plain(n.get_ref())),
                    )
                    .hint(format!(
                        "use \"{}\", \"{}\" or \"same\"",
                        raw.left.get_ref(),
                        raw.right.get_ref()
                    )),
                );
            }
            side
        }
    };
    let conflict = match get("conflict").map(|c| (c, c.get_ref())) {
        None | Some((_, toml::Value::Boolean(false))) => None,
        Some((c, toml::Value::Boolean(true))) => Some(c),
        Some((c, _)) => {
            problems.push(problem(c.span(), "`conflict` is true or false".into()));
            None
        }
    };
    let conflict_malformed =
        get("conflict").is_some_and(|c| !matches!(c.get_ref(), toml::Value::Boolean(_)));
    let expected = match (get("expect"), conflict) {
        (Some(_), Some(conflict)) => {
            problems.push(problem(
                conflict.span(),
                "give `expect` or `conflict = true`, not both".into(),
            ));
            None
        }
        (None, None) if !conflict_malformed => {
            problems.push(
                problem(example.span(), "says nothing of the outcome".into())
                    .hint("add expect = <the value both sides end with>, or conflict = true"),
            );
            None
        }
        (None, None) => None,
        (None, Some(_)) => Some(Expected::Conflict),
        (Some(expect), None) => {
            let ends = match expect.get_ref() {
                toml::Value::Table(table) => {
                    let mut ends = [None, None];
                    let mut well_formed = true;
                    for (name, value) in table {
                        match side_named(name, raw) {
                            Some(side) if ends[side as usize].is_none() => {
                                ends[side as usize] = Some(value)
                            }
                            _ => well_formed = false,
                        }
                    }
                    match ends {
                        [Some(left), Some(right)] if well_formed => {
                            Some(Expected::Sides([left, right]))
                        }
                        _ => None,
                    }
                }
                other => Some(Expected::Both(other)),
            };
            if ends.is_none() {
                problems.push(
                    problem(
                        expect.span(),
                        "`expect` is a value, or a table of both sides' values".into(),
                    )
                    .hint(format!(
                        "for example expect = {{ {} = \"a\", {} = \"b\" }}",
                        raw.left.get_ref(),
                        raw.right.get_ref()
                    )),
                );
            }
            ends
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(Example {
        about,
        span: example.span(),
        field: field?,
        base: get("base"),
        values,
        newer,
        expected: expected?,
    })
}

/// Run well-formed examples against the compiled policy; each one it does not
/// decide as written is a problem at the example.
pub fn run(
    policy: &Policy,
    examples: &[Example<'_>],
    at: &dyn Fn(Range<usize>, String) -> Located,
) -> Vec<Located> {
    let mut problems = Vec::new();
    for e in examples {
        let name = plain(e.field.get_ref());
        let Some(field) = policy.fields.iter().find(|f| f.name == name) else {
            continue;
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
        let times = match e.newer {
            None => (0, 0),
            Some(Side::Left) => (APART, 0),
            Some(Side::Right) => (0, APART),
        };
        let decision = decide_field(field, base.as_ref(), &left, &right, times.0, times.1);
        let got = outcome(&decision, &left, &right);
        let canonical = |v: &toml::Value| field.canonical(&json(v));
        let wanted = match &e.expected {
            Expected::Conflict => None,
            Expected::Both(v) => Some(Outcome::Ends([canonical(v), canonical(v)])),
            Expected::Sides([l, r]) => Some(Outcome::Ends([canonical(l), canonical(r)])),
        };
        let holds = match (&wanted, &got) {
            (None, Outcome::Conflict(_)) => true,
            (Some(wanted), got) => wanted == got,
            (None, _) => false,
        };
        if !holds {
            let wanted = wanted.map_or_else(|| "a conflict".to_string(), |w| w.to_string());
            problems.push(at(
                e.span.clone(),
                format!(
                    "example \"{}\": field `{}` (rule {}): expected {wanted}, but {got}",
                    e.about,
                    field.name,
                    field.rule.name()
                ),
            ));
        }
    }
    problems
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
