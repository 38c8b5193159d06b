//! The second stage of reading a policy: check the raw form against the
//! connectors and collect every problem with its place in the file.

use std::collections::HashMap;
use std::path::Path;

use toml::Spanned;

use super::raw::{RawField, RawPolicy};
use super::{
    Action, Codec, DateFormat, FieldPolicy, FieldType, Normalize, Policy, Reactions, Rule, Scope,
};
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
    // In file order: the map sorts by name.
    let mut in_order: Vec<_> = raw.fields.get_ref().iter().collect();
    in_order.sort_by_key(|(name, _)| name.span().start);
    for (name, field) in in_order {
        let is_key = name.get_ref() == &key_name;
        let rule = field_rule(name, field.get_ref(), is_key, &raw, &mut problems, &at);
        let codec = field_codec(name, field.get_ref(), rule, is_key, &mut problems, &at);
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
                codec,
                allow_empty: field.get_ref().allow_empty.unwrap_or(false),
            });
        }
    }

    let mut on = [Reactions::default(), Reactions::default()];
    let mut on_set_by: [Option<&str>; 2] = [None, None];
    for (connector, table) in in_file_order(&raw.on) {
        let side = match side_named(connector.get_ref(), &raw) {
            Some(side)
                if twice(
                    &mut on_set_by,
                    side,
                    connector,
                    "on",
                    "events",
                    &raw,
                    &mut problems,
                    &at,
                ) =>
            {
                continue;
            }
            Some(side) => side,
            None => {
                let name = connector.get_ref();
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
                            .hint(format!("use {}", one_of(allowed))),
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

    let mut scope = [Scope::default(), Scope::default()];
    let mut scope_set_by: [Option<&str>; 2] = [None, None];
    for (connector, table) in in_file_order(&raw.scope) {
        let side = side_named(connector.get_ref(), &raw);
        if let Some(side) = side
            && twice(
                &mut scope_set_by,
                side,
                connector,
                "scope",
                "scope",
                &raw,
                &mut problems,
                &at,
            )
        {
            continue;
        }
        let Some(side) = side else {
            problems.push(
                at(
                    connector.span(),
                    format!(
                        "[scope.{0}]: `{0}` is not a connector of this pair",
                        connector.get_ref()
                    ),
                )
                .hint(format!(
                    "use [scope.{}] or [scope.{}]",
                    raw.left.get_ref(),
                    raw.right.get_ref()
                )),
            );
            continue;
        };
        let here = raw_connector(&raw, side);
        let check = |path: &Spanned<String>, problems: &mut Vec<Located>| {
            if connectors_known && let Err(why) = schemas.check_path(here, path.get_ref()) {
                problems.push(at(path.span(), format!("[scope.{here}]: {why}")));
            }
        };
        let t = table.get_ref();
        let compiled = &mut scope[side as usize];
        for path in t.require.iter().flatten() {
            check(path, &mut problems);
            compiled.require.push(path.get_ref().clone());
        }
        for (key, values, into) in [
            ("only", &t.only, &mut compiled.only),
            ("except", &t.except, &mut compiled.except),
        ] {
            for (path, list) in values.iter().flatten() {
                check(path, &mut problems);
                if list.get_ref().is_empty() {
                    problems.push(
                        at(
                            list.span(),
                            format!("[scope.{here}].{key}: `{}` lists no values", path.get_ref()),
                        )
                        .hint("list the values, or remove the entry"),
                    );
                }
                let mut texts = Vec::new();
                for value in list.get_ref() {
                    match value {
                        toml::Value::String(text) => texts.push(text.trim().to_lowercase()),
                        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                            texts.push(value.to_string())
                        }
                        other => problems.push(at(
                            list.span(),
                            format!(
                                "[scope.{here}].{key}: `{}` lists {other}, which is not a text, number or bool",
                                path.get_ref()
                            ),
                        )),
                    }
                }
                into.push((path.get_ref().clone(), texts));
            }
        }
    }

    // Examples are checked for shape here, with everything else; they run once
    // the policy compiles.
    let examples = super::examples::parse_all(&raw.examples, &raw, &at, &mut problems);

    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.line, p.column));
        return Err(Problems(problems));
    }
    let name = raw
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| super::display_name(path));
    let policy = Policy {
        name,
        file: path.to_path_buf(),
        left: raw.left.get_ref().clone(),
        right: raw.right.get_ref().clone(),
        create,
        fields,
        on,
        scope,
        examples: raw.examples.len(),
    };
    // The examples run last: they need the compiled policy.
    let problems = super::examples::run(&policy, &examples, &at);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(policy)
}

/// Choices for a hint: `"a", "b" or "c"`.
fn one_of(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// A table's entries in file order (the map sorts them by name).
fn in_file_order<V>(
    map: &std::collections::BTreeMap<Spanned<String>, V>,
) -> Vec<(&Spanned<String>, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    entries
}

/// Whether a `[table.<name>]` for `side` comes after another one for the same
/// side (`[on.left]` and `[on.hubspot]`, say); reports it if so.
#[allow(clippy::too_many_arguments)]
fn twice<'a>(
    set_by: &mut [Option<&'a str>; 2],
    side: Side,
    name: &'a Spanned<String>,
    table: &str,
    what: &str,
    raw: &RawPolicy,
    problems: &mut Vec<Located>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> Located,
) -> bool {
    match set_by[side as usize] {
        Some(first) => {
            problems.push(at(
                name.span(),
                format!(
                    "[{table}.{0}]: `{0}` is {1}, whose {what} [{table}.{first}] already sets",
                    name.get_ref(),
                    raw_connector(raw, side)
                ),
            ));
            true
        }
        None => {
            set_by[side as usize] = Some(name.get_ref());
            false
        }
    }
}

/// The side a name stands for: `left`, `right` or one of the pair's connectors.
pub(super) fn side_named(name: &str, raw: &RawPolicy) -> Option<Side> {
    match name {
        "left" => Some(Side::Left),
        "right" => Some(Side::Right),
        n if n == raw.left.get_ref() => Some(Side::Left),
        n if n == raw.right.get_ref() => Some(Side::Right),
        _ => None,
    }
}

fn raw_connector(raw: &RawPolicy, side: Side) -> &str {
    match side {
        Side::Left => raw.left.get_ref(),
        Side::Right => raw.right.get_ref(),
    }
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
            at(name.span(), format!("field `{field_name}` has no rule"))
                .hint("add rule = \"newest\", \"source_of_truth\" (with source = ...), \"manual\" or another rule of README.md"),
        );
        return None;
    };
    let misplaced =
        |key: &str, span: Option<std::ops::Range<usize>>, problems: &mut Vec<Located>| {
            if let Some(span) = span {
                problems.push(at(
                    span,
                    format!(
                        "field `{field_name}`: `{key}` does not apply to rule `{}`",
                        rule.get_ref()
                    ),
                ));
            }
        };
    let tie = |problems: &mut Vec<Located>| match &field.tie {
        None => Some(None),
        Some(tie) if tie.get_ref() == "manual" => Some(None),
        Some(tie) => side_of(tie, problems).map(Some),
    };
    let name = rule.get_ref().as_str();
    if name != "source_of_truth" {
        misplaced("source", field.source.as_ref().map(|s| s.span()), problems);
    }
    if !matches!(name, "newest" | "prefer-non-empty") {
        misplaced("tie", field.tie.as_ref().map(|t| t.span()), problems);
    }
    if name != "newest" {
        misplaced(
            "skew_secs",
            field.skew_secs.as_ref().map(|s| s.span()),
            problems,
        );
    }
    match name {
        "source_of_truth" => match &field.source {
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
        },
        "newest" => {
            let skew_ms = match &field.skew_secs {
                None => 0,
                Some(secs) => match i64::try_from(*secs.get_ref())
                    .ok()
                    .and_then(|s| s.checked_mul(1000))
                {
                    Some(ms) => ms,
                    None => {
                        problems.push(at(
                            secs.span(),
                            format!("field `{field_name}`: `skew_secs` is too large"),
                        ));
                        0
                    }
                },
            };
            tie(problems).map(|tie| Rule::Newest { tie, skew_ms })
        }
        "prefer-non-empty" => tie(problems).map(|tie| Rule::PreferNonEmpty { tie }),
        "union" => Some(Rule::Union),
        "text-merge" => Some(Rule::TextMerge),
        "max" => Some(Rule::Max),
        "min" => Some(Rule::Min),
        "manual" => Some(Rule::Manual),
        other => {
            problems.push(at(rule.span(), format!("field `{field_name}`: unknown rule `{other}`")).hint(
                "use \"newest\", \"source_of_truth\", \"union\", \"text-merge\", \"max\", \"min\", \"prefer-non-empty\" or \"manual\"",
            ));
            None
        }
    }
}

/// A field's type, normalizations and per-side transforms, checked together.
fn field_codec(
    name: &Spanned<String>,
    field: &RawField,
    rule: Option<Rule>,
    is_key: bool,
    problems: &mut Vec<Located>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> Located,
) -> Codec {
    let field_name = name.get_ref();
    let mut codec = Codec::default();
    if let Some(kind) = &field.kind {
        match FieldType::parse(kind.get_ref()) {
            Some(parsed) => codec.kind = parsed,
            None => problems.push(
                at(
                    kind.span(),
                    format!("field `{field_name}`: `{}` is not a type", kind.get_ref()),
                )
                .hint("use \"text\", \"number\", \"bool\", \"date\" or \"list\""),
            ),
        }
    }
    let kind = codec.kind;
    let type_name = field.kind.as_ref().map_or("text", |k| k.get_ref().as_str());
    // An unknown type is reported once; what applies to which type is not said of it.
    let type_known = field
        .kind
        .as_ref()
        .is_none_or(|k| FieldType::parse(k.get_ref()).is_some());
    let wrong_type =
        |key: &str, span: std::ops::Range<usize>, fits: &str, problems: &mut Vec<Located>| {
            if !type_known {
                return;
            }
            problems.push(
                at(
                    span,
                    format!("field `{field_name}`: `{key}` does not apply to a {type_name} field"),
                )
                .hint(format!("it applies to {fits}")),
            );
        };
    if is_key && kind != FieldType::Text {
        let span = field.kind.as_ref().map_or(name.span(), |k| k.span());
        problems.push(
            at(
                span,
                format!("field `{field_name}` is the match key, which is text"),
            )
            .hint("remove `type` from the match field"),
        );
    }
    codec.normalize = if matches!(kind, FieldType::Text | FieldType::List) {
        vec![Normalize::Trim]
    } else {
        vec![]
    };
    if let Some(list) = &field.normalize {
        if !matches!(kind, FieldType::Text | FieldType::List) {
            wrong_type("normalize", list.span(), "text and list fields", problems);
        }
        codec.normalize = list
            .get_ref()
            .iter()
            .filter_map(|entry| {
                let parsed = Normalize::parse(entry.get_ref());
                if parsed.is_none() {
                    problems.push(
                        at(entry.span(), format!("field `{field_name}`: `{}` is not a normalization", entry.get_ref()))
                            .hint("use \"trim\", \"lowercase\", \"uppercase\", \"collapse_spaces\" or \"phone\""),
                    );
                }
                parsed
            })
            .collect();
    }
    let compatible = match rule {
        Some(Rule::Union) => kind == FieldType::List,
        Some(Rule::TextMerge) => kind == FieldType::Text,
        Some(Rule::Max | Rule::Min) => {
            matches!(kind, FieldType::Number | FieldType::Date | FieldType::Text)
        }
        _ => true,
    };
    if !compatible
        && is_key
        && let Some(rule) = rule
    {
        // The key is text whatever the policy says, so only the rule can change.
        let span = field.rule.as_ref().map_or(name.span(), |r| r.span());
        problems.push(
            at(
                span,
                format!(
                    "field `{field_name}`: rule `{}` needs a list field, and the match key is text",
                    rule.name()
                ),
            )
            .hint("use a rule for text, such as \"newest\" or \"manual\""),
        );
    } else if !compatible && let Some(rule) = rule {
        let span = field.rule.as_ref().map_or(name.span(), |r| r.span());
        let wanted = match rule {
            Rule::Union => "list",
            Rule::TextMerge => "text",
            _ => "number, date or text",
        };
        problems.push(
            at(
                span,
                format!(
                    "field `{field_name}`: rule `{}` needs a {wanted} field",
                    rule.name()
                ),
            )
            .hint(format!(
                "set type = \"{}\"",
                wanted.split(',').next().unwrap_or(wanted)
            )),
        );
    }
    let sides = [
        (
            "left",
            &field.left_map,
            &field.left_map_write,
            &field.left_invert,
            &field.left_split,
            &field.left_format,
            field.left_readonly,
        ),
        (
            "right",
            &field.right_map,
            &field.right_map_write,
            &field.right_invert,
            &field.right_split,
            &field.right_format,
            field.right_readonly,
        ),
    ];
    for (index, (side, map, map_write, invert, split, format, readonly)) in
        sides.into_iter().enumerate()
    {
        let side_codec = &mut codec.sides[index];
        side_codec.readonly = readonly.unwrap_or(false);
        if let Some(invert) = invert {
            if kind != FieldType::Bool {
                wrong_type(
                    &format!("{side}_invert"),
                    invert.span(),
                    "bool fields",
                    problems,
                );
            }
            side_codec.invert = *invert.get_ref();
        }
        if let Some(split) = split {
            if kind != FieldType::List {
                wrong_type(
                    &format!("{side}_split"),
                    split.span(),
                    "list fields",
                    problems,
                );
            }
            side_codec.split = Some(split.get_ref().clone());
        }
        if let Some(format) = format {
            if kind != FieldType::Date {
                wrong_type(
                    &format!("{side}_format"),
                    format.span(),
                    "date fields",
                    problems,
                );
            }
            match DateFormat::parse(format.get_ref()) {
                Some(parsed) => side_codec.format = parsed,
                None => problems.push(
                    at(
                        format.span(),
                        format!(
                            "field `{field_name}`: `{}` is not a date format",
                            format.get_ref()
                        ),
                    )
                    .hint("use \"date\" (YYYY-MM-DD), \"epoch_ms\" or \"iso\""),
                ),
            }
        }
        // A map's values are canonical, so they must fit the field's type.
        let canonical = |value: &toml::Value| -> Option<serde_json::Value> {
            let json = serde_json::to_value(value).ok()?;
            let fits = match kind {
                FieldType::Bool => json.is_boolean(),
                FieldType::Number => json.is_number(),
                FieldType::List => json.is_array(),
                FieldType::Text => json.is_string(),
                FieldType::Date => json.as_str().is_some_and(super::transform::is_date),
            };
            fits.then_some(json)
        };
        if let Some(map) = map {
            for (from, to) in map.get_ref() {
                match canonical(to) {
                    Some(to) => side_codec.map.push((serde_json::Value::String(from.clone()), to)),
                    None => problems.push(at(map.span(), format!("field `{field_name}`: `{side}_map` sends `{from}` to {to}, which is not a {type_name} value"))),
                }
            }
        }
        if let Some(map_write) = map_write {
            for (from, to) in map_write.get_ref() {
                let key = toml::Value::try_from(from.as_str()).ok();
                let parsed = match kind {
                    FieldType::Bool => from.parse::<bool>().ok().map(serde_json::Value::Bool),
                    FieldType::Number => serde_json::from_str(from)
                        .ok()
                        .filter(serde_json::Value::is_number),
                    _ => key.and_then(|k| canonical(&k)),
                };
                match (parsed, serde_json::to_value(to).ok()) {
                    (Some(from), Some(to)) => side_codec.map_write.push((from, to)),
                    _ => problems.push(at(map_write.span(), format!("field `{field_name}`: `{side}_map_write` has `{from}`, which is not a {type_name} value"))),
                }
            }
        }
        // Writing needs the way back: a map that sends two values to one is not reversible.
        if let Some(map) = map
            && !side_codec.readonly
            && side_codec.map_write.is_empty()
        {
            let mut seen: Vec<&serde_json::Value> = Vec::new();
            for (_, to) in &side_codec.map {
                if seen.contains(&to) {
                    problems.push(
                        at(map.span(), format!("field `{field_name}`: `{side}_map` sends two values to {to}, so {to} cannot be written back"))
                            .hint(format!("set {side}_readonly = true, or say what to write with {side}_map_write")),
                    );
                    break;
                }
                seen.push(to);
            }
        }
    }
    if codec.sides.iter().all(|s| s.readonly) {
        problems.push(
            at(
                name.span(),
                format!("field `{field_name}` is read-only on both sides"),
            )
            .hint("a synced field must be writable on one side at least"),
        );
    }
    codec
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
