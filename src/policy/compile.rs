//! The second stage of reading a policy: check the raw form against the
//! connectors and collect every problem with its place in the file.

use std::collections::HashMap;
use std::path::Path;

use toml::Spanned;

use super::raw::{RawField, RawPolicy};
use super::{Action, FieldPolicy, Policy, Reactions, Rule};
use crate::location::{Located, Problems};
use crate::side::Side;

/// What the policy compiler needs to know of the configured connectors.
pub trait Schemas {
    /// Names of the configured connectors.
    fn connectors(&self) -> Vec<String>;
    /// Check a path on a configured connector; the error says what is wrong.
    fn check_path(&self, connector: &str, path: &str) -> Result<(), String>;
    /// The events a connector's records go through: `archived`, and for an email
    /// platform `unsubscribed` and `cleaned`.
    fn events(&self, connector: &str) -> &'static [&'static str];
    /// Whether tandem may delete records on this connector for good.
    fn deletes_permanently(&self, connector: &str) -> bool;
}

/// Read and compile a policy file.
pub fn load(path: &Path, schemas: &dyn Schemas) -> Result<Policy, Problems> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Located::file(
            path,
            format!("cannot read the policy file: {e}"),
        )])
    })?;
    compile(path, &source, schemas)
}

/// Compile policy text; `path` is used in messages and for the default name.
pub fn compile(path: &Path, source: &str, schemas: &dyn Schemas) -> Result<Policy, Problems> {
    let raw: RawPolicy = toml::from_str(source).map_err(|e| {
        Problems(vec![
            Located::from_toml(path, source, &e).hint("see the policy format in README.md"),
        ])
    })?;
    let mut problems = Vec::new();
    let at = |span: std::ops::Range<usize>, message: String| {
        Located::at(path, source, span.start, message)
    };

    let connectors = schemas.connectors();
    for side in [&raw.left, &raw.right] {
        if !connectors.contains(side.get_ref()) {
            problems.push(
                at(
                    side.span(),
                    format!("connector `{}` is not configured", side.get_ref()),
                )
                .hint(format!(
                    "configured connectors: {}",
                    if connectors.is_empty() {
                        "none".to_string()
                    } else {
                        connectors.join(", ")
                    }
                )),
            );
        }
    }
    if raw.left.get_ref() == raw.right.get_ref() {
        problems.push(at(
            raw.right.span(),
            "`left` and `right` name the same connector".into(),
        ));
    }
    let connectors_known = problems.is_empty();

    let create = match &raw.create {
        None => [true, true],
        Some(value) => match parse_create(value.get_ref(), raw.left.get_ref(), raw.right.get_ref())
        {
            Some(create) => create,
            None => {
                problems.push(at(value.span(), format!("`create = \"{}\"` is not a direction", value.get_ref())).hint(format!(
                    "use \"both\", \"none\", \"left-to-right\" or \"right-to-left\" (or the connector names, \"{}-to-{}\")",
                    raw.left.get_ref(),
                    raw.right.get_ref()
                )));
                [true, true]
            }
        },
    };

    let key_name = raw.matching.get_ref().field.get_ref().clone();
    if !raw
        .fields
        .get_ref()
        .keys()
        .any(|k| k.get_ref() == &key_name)
    {
        let span = raw.matching.get_ref().field.span();
        problems.push(
            at(
                span,
                format!("the match field `{key_name}` is not defined under [fields]"),
            )
            .hint(format!(
                "add [fields.{key_name}] with its path on each side"
            )),
        );
    }
    if raw.fields.get_ref().len() < 2 {
        problems.push(at(
            raw.fields.span(),
            "a policy needs the match field and at least one field to sync".into(),
        ));
    }

    let mut fields = Vec::new();
    let mut used_paths: HashMap<(Side, String), String> = HashMap::new();
    for (name, field) in raw.fields.get_ref() {
        let is_key = name.get_ref() == &key_name;
        let rule = field_rule(name, field.get_ref(), is_key, &raw, &mut problems, &at);
        for (side, path) in [
            (Side::Left, &field.get_ref().left),
            (Side::Right, &field.get_ref().right),
        ] {
            let connector = if side == Side::Left {
                raw.left.get_ref()
            } else {
                raw.right.get_ref()
            };
            if connectors_known && let Err(why) = schemas.check_path(connector, path.get_ref()) {
                problems.push(at(
                    path.span(),
                    format!("field `{}`: {why}", name.get_ref()),
                ));
            }
            if let Some(other) =
                used_paths.insert((side, path.get_ref().clone()), name.get_ref().clone())
            {
                problems.push(at(
                    path.span(),
                    format!(
                        "fields `{other}` and `{}` both use `{}` on the {side} side",
                        name.get_ref(),
                        path.get_ref()
                    ),
                ));
            }
        }
        if let Some(rule) = rule {
            fields.push(FieldPolicy {
                key: is_key,
                name: name.get_ref().clone(),
                left: field.get_ref().left.get_ref().clone(),
                right: field.get_ref().right.get_ref().clone(),
                rule,
            });
        }
    }

    let mut on = [Reactions::default(), Reactions::default()];
    for (connector, table) in &raw.on {
        let side = match connector.get_ref().as_str() {
            "left" => Side::Left,
            "right" => Side::Right,
            name if name == raw.left.get_ref() => Side::Left,
            name if name == raw.right.get_ref() => Side::Right,
            name => {
                problems.push(
                    at(
                        connector.span(),
                        format!("[on.{name}]: `{name}` is not a connector of this pair"),
                    )
                    .hint(format!(
                        "use [on.{}] or [on.{}]",
                        raw.left.get_ref(),
                        raw.right.get_ref()
                    )),
                );
                continue;
            }
        };
        let here = if side == Side::Left {
            raw.left.get_ref()
        } else {
            raw.right.get_ref()
        };
        let there = if side == Side::Left {
            raw.right.get_ref()
        } else {
            raw.left.get_ref()
        };
        let t = table.get_ref();
        let events = if connectors_known {
            schemas.events(here)
        } else {
            &[]
        };
        let action =
            |event: &str, value: &Option<Spanned<String>>, problems: &mut Vec<Located>| -> Action {
                let Some(value) = value else {
                    return Action::Mark;
                };
                if connectors_known && !events.contains(&event) {
                    problems.push(
                        at(
                            value.span(),
                            format!("[on.{here}]: {here} records are never `{event}`"),
                        )
                        .hint(format!("{here}'s events: {}", events.join(", "))),
                    );
                }
                let allowed: &[&str] = if event == "archived" {
                    &["ignore", "mark", "archive", "delete-permanent"]
                } else {
                    &["ignore", "mark"]
                };
                match value.get_ref().as_str() {
                    "ignore" => Action::Ignore,
                    "mark" => Action::Mark,
                    "archive" if event == "archived" => Action::Archive,
                    "delete-permanent" if event == "archived" => {
                        if connectors_known && !schemas.deletes_permanently(there) {
                            problems.push(
                                at(
                                    value.span(),
                                    format!(
                                        "[on.{here}]: tandem never deletes {there} records for good"
                                    ),
                                )
                                .hint("use \"archive\" or \"mark\""),
                            );
                        }
                        Action::DeletePermanently
                    }
                    other => {
                        problems.push(
                            at(
                                value.span(),
                                format!("[on.{here}]: `{event} = \"{other}\"` is not an action"),
                            )
                            .hint(format!(
                                "use {}",
                                allowed
                                    .iter()
                                    .map(|a| format!("\"{a}\""))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        );
                        Action::Mark
                    }
                }
            };
        let reactions = Reactions {
            archived: action("archived", &t.archived, &mut problems),
            unsubscribed: action("unsubscribed", &t.unsubscribed, &mut problems),
            cleaned: action("cleaned", &t.cleaned, &mut problems),
            mark: t.mark.as_ref().map(|m| m.get_ref().clone()),
        };
        if let Some(mark) = &t.mark {
            // The mark is written on the other side, so it is a path of the other connector.
            let other = side.other();
            if connectors_known && let Err(why) = schemas.check_path(there, mark.get_ref()) {
                problems.push(at(mark.span(), format!("[on.{here}].mark: {why}")));
            }
            if let Some(field) = used_paths.get(&(other, mark.get_ref().clone())) {
                problems.push(
                    at(
                        mark.span(),
                        format!(
                            "[on.{here}].mark: `{}` is already field `{field}`",
                            mark.get_ref()
                        ),
                    )
                    .hint("a mark needs a field of its own, which tandem only writes"),
                );
            }
        }
        on[side as usize] = reactions;
    }

    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.line, p.column));
        return Err(Problems(problems));
    }
    let name = raw
        .name
        .map(|n| n.into_inner())
        .unwrap_or_else(|| super::display_name(path));
    Ok(Policy {
        name,
        file: path.to_path_buf(),
        left: raw.left.into_inner(),
        right: raw.right.into_inner(),
        create,
        fields,
        on,
    })
}

fn field_rule(
    name: &Spanned<String>,
    field: &RawField,
    is_key: bool,
    raw: &RawPolicy,
    problems: &mut Vec<Located>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> Located,
) -> Option<Rule> {
    let field_name = name.get_ref();
    let side_of = |value: &Spanned<String>, problems: &mut Vec<Located>| -> Option<Side> {
        let text = value.get_ref();
        let side = match text.as_str() {
            "left" => Some(Side::Left),
            "right" => Some(Side::Right),
            t if t == raw.left.get_ref() => Some(Side::Left),
            t if t == raw.right.get_ref() => Some(Side::Right),
            _ => None,
        };
        if side.is_none() {
            problems.push(
                at(
                    value.span(),
                    format!("field `{field_name}`: `{text}` is not a side"),
                )
                .hint(format!(
                    "use \"left\", \"right\", \"{}\" or \"{}\"",
                    raw.left.get_ref(),
                    raw.right.get_ref()
                )),
            );
        }
        side
    };
    // The key's one-sided edits flow like any field's; when both sides change it
    // to different addresses, a person decides unless the policy says otherwise.
    if is_key && field.rule.is_none() {
        return Some(Rule::Manual);
    }
    let Some(rule) = &field.rule else {
        problems.push(
            at(name.span(), format!("field `{field_name}` has no rule")).hint(
                "add rule = \"newest\", \"source_of_truth\" (with source = ...) or \"manual\"",
            ),
        );
        return None;
    };
    let misplaced = |key: &str, value: &Option<Spanned<String>>, problems: &mut Vec<Located>| {
        if let Some(value) = value {
            problems.push(at(
                value.span(),
                format!(
                    "field `{field_name}`: `{key}` does not apply to rule `{}`",
                    rule.get_ref()
                ),
            ));
        }
    };
    match rule.get_ref().as_str() {
        "source_of_truth" => {
            misplaced("tie", &field.tie, problems);
            match &field.source {
                Some(source) => side_of(source, problems).map(Rule::SourceOfTruth),
                None => {
                    problems.push(
                        at(
                            rule.span(),
                            format!("field `{field_name}`: rule `source_of_truth` needs `source`"),
                        )
                        .hint(format!(
                            "add source = \"{}\" or source = \"{}\"",
                            raw.left.get_ref(),
                            raw.right.get_ref()
                        )),
                    );
                    None
                }
            }
        }
        "newest" => {
            misplaced("source", &field.source, problems);
            match &field.tie {
                None => Some(Rule::Newest { tie: None }),
                Some(tie) if tie.get_ref() == "manual" => Some(Rule::Newest { tie: None }),
                Some(tie) => side_of(tie, problems).map(|side| Rule::Newest { tie: Some(side) }),
            }
        }
        "manual" => {
            misplaced("source", &field.source, problems);
            misplaced("tie", &field.tie, problems);
            Some(Rule::Manual)
        }
        other => {
            problems.push(
                at(
                    rule.span(),
                    format!("field `{field_name}`: unknown rule `{other}`"),
                )
                .hint("use \"newest\", \"source_of_truth\" or \"manual\""),
            );
            None
        }
    }
}

/// `[create left, create right]` from a direction.
fn parse_create(text: &str, left: &str, right: &str) -> Option<[bool; 2]> {
    let side = |name: &str| match name {
        "left" => Some(Side::Left),
        "right" => Some(Side::Right),
        n if n == left => Some(Side::Left),
        n if n == right => Some(Side::Right),
        _ => None,
    };
    match text {
        "both" => Some([true, true]),
        "none" => Some([false, false]),
        _ => {
            let (from, to) = text.split_once("-to-")?;
            match (side(from)?, side(to)?) {
                (Side::Left, Side::Right) => Some([false, true]),
                (Side::Right, Side::Left) => Some([true, false]),
                _ => None,
            }
        }
    }
}
