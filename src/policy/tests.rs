//! Policy compile tests: the shipped policy compiles, and every error the
//! compiler can give is produced with its place and hint.

use std::path::Path;

use super::*;

/// The two vendor connectors, with their real path checks.
struct TwoConnectors;

impl Schemas for TwoConnectors {
    fn connectors(&self) -> Vec<String> {
        vec!["hubspot".into(), "mailchimp".into()]
    }

    fn events(&self, connector: &str) -> &'static [&'static str] {
        if connector == "mailchimp" {
            &["archived", "unsubscribed", "cleaned"]
        } else {
            &["archived"]
        }
    }

    fn deletes_permanently(&self, connector: &str) -> bool {
        connector == "mailchimp"
    }

    fn check_path(&self, connector: &str, path: &str) -> Result<(), String> {
        match connector {
            "hubspot" => tandem_hubspot::check_path(path),
            "mailchimp" => tandem_mailchimp::check_path(path),
            other => Err(format!("no connector {other}")),
        }
    }
}

const VALID: &str = r#"
left = "hubspot"
right = "mailchimp"

[match]
field = "email"

[fields.email]
left = "properties.email"
right = "email_address"

[fields.first_name]
left = "properties.firstname"
right = "merge_fields.FNAME"
rule = "newest"
"#;

/// Compile `source` and expect exactly these `line:column: message` problems.
fn check_errors(source: &str, expected: &[&str]) {
    check_case("", source, expected);
}

/// [`check_errors`] for one case of a table, named in its failures.
fn check_case(case: &str, source: &str, expected: &[&str]) {
    let problems = match compile(Path::new("p.toml"), source, &TwoConnectors) {
        Ok(_) => panic!("{case}: the policy should not compile"),
        Err(problems) => problems,
    };
    let got: Vec<String> = problems.0.iter().map(|p| p.to_string()).collect();
    assert_eq!(got.len(), expected.len(), "{case}: got {got:#?}");
    for (got, want) in got.iter().zip(expected) {
        assert!(
            got.starts_with(&format!("p.toml:{want}")),
            "{case}: expected p.toml:{want}\n     got {got}"
        );
    }
}

/// The `line:column` a marker points at: `marker` is one line of `source`
/// with a `^` put before the character the problem should point at.
fn place(source: &str, marker: &str) -> String {
    let column = marker.find('^').expect("a marker has a ^");
    let text = marker.replacen('^', "", 1);
    let lines: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| *line == text)
        .map(|(index, _)| index + 1)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{marker:?} should match one line of {source}"
    );
    format!("{}:{}", lines[0], marker[..column].chars().count() + 1)
}

/// VALID with `lines` in place of `[fields.first_name]`'s `rule = "newest"`.
fn first_name(lines: &str) -> String {
    VALID.replace("rule = \"newest\"\n", &format!("{lines}\n"))
}

/// VALID with `lines` added to `[fields.email]`, the match field.
fn email(lines: &str) -> String {
    VALID.replace(
        "right = \"email_address\"\n",
        &format!("right = \"email_address\"\n{lines}\n"),
    )
}

/// VALID followed by `section`.
fn appended(section: &str) -> String {
    format!("{VALID}\n{section}")
}

#[test]
fn the_shipped_policy_compiles() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/hubspot-mailchimp.toml");
    let policy = load(&path, &TwoConnectors).unwrap();
    assert_eq!(policy.name, "hubspot-mailchimp");
    assert!(
        policy.examples >= 5,
        "every shipped policy carries its examples"
    );
    assert_eq!(
        (policy.left.as_str(), policy.right.as_str()),
        ("hubspot", "mailchimp")
    );
    assert_eq!(policy.key_field().name, "email");
    let rules: Vec<(&str, Rule)> = policy
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.rule))
        .collect();
    assert!(rules.contains(&("phone", Rule::SourceOfTruth(Side::Left))));
    assert!(rules.contains(&(
        "first_name",
        Rule::Newest {
            tie: Some(Side::Left),
            skew_ms: 0
        }
    )));
    assert!(rules.contains(&("company", Rule::Manual)));
    assert_eq!(policy.create, [true, true]);
}

#[test]
fn a_minimal_policy_compiles_with_defaults() {
    let policy = compile(Path::new("policies/crm.toml"), VALID, &TwoConnectors).unwrap();
    assert_eq!(policy.name, "crm");
    assert_eq!(
        policy.paths(Side::Right),
        vec!["email_address".to_string(), "merge_fields.FNAME".into()]
    );
    assert_eq!(
        policy.fields[1].rule,
        Rule::Newest {
            tie: None,
            skew_ms: 0
        }
    );
}

#[test]
fn create_directions() {
    for (text, expected) in [
        ("both", [true, true]),
        ("none", [false, false]),
        ("left-to-right", [false, true]),
        ("mailchimp-to-hubspot", [true, false]),
    ] {
        let source = VALID.replace("[match]", &format!("create = \"{text}\"\n\n[match]"));
        assert_eq!(
            compile(Path::new("p.toml"), &source, &TwoConnectors)
                .unwrap()
                .create,
            expected,
            "{text}"
        );
    }
}

#[test]
fn canonical_values_are_trimmed_and_keys_lowercased() {
    let policy = compile(Path::new("p.toml"), VALID, &TwoConnectors).unwrap();
    let fields = tandem_core::FieldMap::from([
        (
            "email_address".to_string(),
            serde_json::json!(" Ada@Example.COM "),
        ),
        ("merge_fields.FNAME".to_string(), serde_json::json!("  ")),
    ]);
    let values = policy.canonical(Side::Right, &fields);
    assert_eq!(values["email"], serde_json::json!("ada@example.com"));
    assert_eq!(values["first_name"], serde_json::Value::Null);
}

#[test]
fn syntax_and_shape_errors() {
    check_errors(
        "left = \n",
        &[
            "1:8: string values must be quoted, expected literal string (hint: see the policy format in README.md)",
        ],
    );
    check_errors(
        &VALID.replace(
            "right = \"mailchimp\"",
            "right = \"mailchimp\"\ncolour = \"blue\"",
        ),
        &["4:1: unknown field `colour`"],
    );
    check_errors(
        &VALID.replace("rule = \"newest\"", "rule = \"newest\"\nsides = 2"),
        &["16:1: unknown field `sides`"],
    );
    check_errors(
        &VALID.replace("[match]\nfield = \"email\"\n", ""),
        &["1:1: missing field `match`"],
    );
}

#[test]
fn connector_errors() {
    check_errors(
        &VALID.replace("left = \"hubspot\"", "left = \"salesforce\""),
        &[
            "2:8: connector `salesforce` is not configured (hint: configured connectors: hubspot, mailchimp)",
        ],
    );
    check_errors(
        &VALID.replace("right = \"mailchimp\"", "right = \"hubspot\""),
        &["3:9: `left` and `right` name the same connector"],
    );
}

#[test]
fn create_and_match_errors() {
    check_errors(
        &VALID.replace("[match]", "create = \"sideways\"\n\n[match]"),
        &["5:10: `create = \"sideways\"` is not a direction (hint: use \"both\""],
    );
    check_errors(
        &VALID.replace("field = \"email\"", "field = \"mail\""),
        &[
            "6:9: the match field `mail` is not defined under [fields] (hint: add [fields.mail]",
            "8:9: field `email` has no rule",
        ],
    );
    let only_key = VALID.split("[fields.first_name]").next().unwrap();
    check_errors(
        only_key,
        &["8:2: a policy needs the match field and at least one field to sync"],
    );
}

#[test]
fn path_errors() {
    check_errors(
        &VALID.replace("properties.firstname", "firstname"),
        &[
            "13:8: field `first_name`: HubSpot paths name a contact property, like `properties.firstname`; got `firstname`",
        ],
    );
    check_errors(
        &VALID.replace("merge_fields.FNAME", "merge_fields.fname"),
        &["14:9: field `first_name`: `fname` is not a Mailchimp merge tag"],
    );
    check_errors(
        &VALID.replace("merge_fields.FNAME", "email_address"),
        &["14:9: fields `email` and `first_name` both use `email_address` on the right side"],
    );
}

#[test]
fn rule_errors() {
    check_errors(
        &VALID.replace("rule = \"newest\"\n", ""),
        &["12:9: field `first_name` has no rule (hint: add rule ="],
    );
    check_errors(
        &VALID.replace("\"newest\"", "\"oldest\""),
        &[
            "15:8: field `first_name`: unknown rule `oldest` (hint: use \"newest\", \"source_of_truth\", \"union\", \"text-merge\", \"max\", \"min\", \"prefer-non-empty\" or \"manual\")",
        ],
    );
    check_errors(
        &VALID.replace("\"newest\"", "\"source_of_truth\""),
        &[
            "15:8: field `first_name`: rule `source_of_truth` needs `source` (hint: add source = \"hubspot\"",
        ],
    );
    check_errors(
        &VALID.replace("\"newest\"", "\"source_of_truth\"\nsource = \"crm\""),
        &["16:10: field `first_name`: `crm` is not a side"],
    );
    check_errors(
        &VALID.replace("\"newest\"", "\"newest\"\ntie = \"nobody\""),
        &[
            "16:7: field `first_name`: `nobody` is not a side (hint: use \"left\", \"right\", \"hubspot\" or \"mailchimp\")",
        ],
    );
    check_errors(
        &VALID.replace("\"newest\"", "\"manual\"\ntie = \"left\""),
        &["16:7: field `first_name`: `tie` does not apply to rule `manual`"],
    );
    check_errors(
        &VALID.replace("\"newest\"", "\"newest\"\nsource = \"left\""),
        &["16:10: field `first_name`: `source` does not apply to rule `newest`"],
    );
}

#[test]
fn the_key_field_takes_a_rule_and_defaults_to_manual() {
    let policy = compile(Path::new("p.toml"), VALID, &TwoConnectors).unwrap();
    assert_eq!(
        (policy.key_field().name.as_str(), policy.key_field().rule),
        ("email", Rule::Manual)
    );
    let newest = VALID.replace(
        "right = \"email_address\"",
        "right = \"email_address\"\nrule = \"newest\"",
    );
    let policy = compile(Path::new("p.toml"), &newest, &TwoConnectors).unwrap();
    assert_eq!(
        policy.key_field().rule,
        Rule::Newest {
            tie: None,
            skew_ms: 0
        }
    );
    assert_eq!(policy.fields.iter().filter(|f| f.key).count(), 1);
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    // Mistakes in every section the compile step checks: connectors, match,
    // rules, types and transforms, scope, events. `[scope]` comes before `[on]`
    // in the file but is checked after it, so the order is the file's.
    let broken = format!(
        "{}\n[fields.areas]\nleft = \"properties.areas\"\nright = \"merge_fields.AREAS\"\nrule = \"union\"\n\n[scope.mailchimp]\nonly = {{ status = [] }}\n\n[on.mailchimp]\narchived = \"shred\"\n",
        VALID
            .replace("left = \"hubspot\"", "left = \"salesforce\"")
            .replace("\"newest\"", "\"oldest\"\nnormalize = [\"shout\"]")
            .replace("field = \"email\"", "field = \"mail\"")
    );
    let at = |marker: &str, message: &str| format!("{}: {message}", place(&broken, marker));
    check_errors(
        &broken,
        &[
            &at("left = ^\"salesforce\"", "connector `salesforce`"),
            &at("field = ^\"mail\"", "the match field `mail`"),
            &at("[fields.^email]", "field `email` has no rule"),
            &at("rule = ^\"oldest\"", "field `first_name`: unknown rule"),
            &at(
                "normalize = [^\"shout\"]",
                "field `first_name`: `shout` is not a normalization",
            ),
            &at(
                "rule = ^\"union\"",
                "field `areas`: rule `union` needs a list field",
            ),
            &at(
                "only = { status = ^[] }",
                "[scope.mailchimp].only: `status` lists no values",
            ),
            &at(
                "archived = ^\"shred\"",
                "[on.mailchimp]: `archived = \"shred\"` is not an action",
            ),
        ],
    );
}

#[test]
fn events_default_to_marking_and_can_be_set_per_connector() {
    let policy = compile(Path::new("p.toml"), VALID, &TwoConnectors).unwrap();
    assert_eq!(policy.on[0], Reactions::default());
    assert_eq!(policy.on[1].archived, Action::Mark);
    let source = format!(
        "{VALID}\n[on.hubspot]\narchived = \"delete-permanent\"\nmark = \"merge_fields.CRMSTATUS\"\n\n[on.mailchimp]\nunsubscribed = \"ignore\"\n"
    );
    let policy = compile(Path::new("p.toml"), &source, &TwoConnectors).unwrap();
    assert_eq!(policy.on[0].archived, Action::DeletePermanently);
    assert_eq!(policy.on[0].mark.as_deref(), Some("merge_fields.CRMSTATUS"));
    assert_eq!(
        (policy.on[1].unsubscribed, policy.on[1].cleaned),
        (Action::Ignore, Action::Mark)
    );
}

#[test]
fn event_errors() {
    let with = |section: &str| format!("{VALID}\n{section}");
    // The appended section starts at line 17.
    check_errors(
        &with("[on.salesforce]\narchived = \"ignore\"\n"),
        &[
            "17:5: [on.salesforce]: `salesforce` is not a connector of this pair (hint: use [on.hubspot] or [on.mailchimp])",
        ],
    );
    check_errors(
        &with("[on.hubspot]\nunsubscribed = \"mark\"\n"),
        &[
            "18:16: [on.hubspot]: hubspot records are never `unsubscribed` (hint: hubspot's events: archived)",
        ],
    );
    check_errors(
        &with("[on.mailchimp]\narchived = \"shred\"\n"),
        &[
            "18:12: [on.mailchimp]: `archived = \"shred\"` is not an action (hint: use \"ignore\", \"mark\", \"archive\" or \"delete-permanent\")",
        ],
    );
    check_errors(
        &with("[on.mailchimp]\ncleaned = \"archive\"\n"),
        &[
            "18:11: [on.mailchimp]: `cleaned = \"archive\"` is not an action (hint: use \"ignore\" or \"mark\")",
        ],
    );
    check_errors(
        &with("[on.mailchimp]\narchived = \"delete-permanent\"\n"),
        &[
            "18:12: [on.mailchimp]: tandem never deletes hubspot records for good (hint: use \"archive\" or \"mark\")",
        ],
    );
    check_errors(
        &with("[on.hubspot]\nmark = \"properties.crm_status\"\n"),
        &["18:8: [on.hubspot].mark: Mailchimp paths are one of"],
    );
    check_errors(
        &with("[on.hubspot]\nmark = \"merge_fields.FNAME\"\n"),
        &[
            "18:8: [on.hubspot].mark: `merge_fields.FNAME` is already field `first_name` (hint: a mark needs a field of its own, which tandem only writes)",
        ],
    );
    check_errors(
        &with("[on.hubspot]\nmerge = \"x\"\n"),
        &["18:1: unknown field `merge`"],
    );
}

/// VALID with a phone field and these examples appended.
fn with_examples(examples: &str) -> String {
    format!(
        "{VALID}\n[fields.phone]\nleft = \"properties.phone\"\nright = \"merge_fields.PHONE\"\nrule = \"source_of_truth\"\nsource = \"hubspot\"\nnormalize = [\"phone\"]\n{examples}"
    )
}

#[test]
fn examples_that_hold_compile_and_are_counted() {
    let source = with_examples(
        r#"
[[examples]]
about = "both sides fix the phone: HubSpot wins, spacing aside"
field = "phone"
base = "+1 555 0100"
hubspot = "+1 555 0199"
mailchimp = "+1 (555) 0142"
expect = "+15550199"

[[examples]]
about = "the newer name wins"
field = "first_name"
base = "Ada"
hubspot = "Augusta"
mailchimp = "Ada L."
newer = "mailchimp"
expect = "Ada L."

[[examples]]
about = "same time, no tie side: a person decides"
field = "first_name"
base = "Ada"
hubspot = "Augusta"
mailchimp = "Ada L."
conflict = true

[[examples]]
about = "an emptied name does not erase the other side's"
field = "first_name"
base = "Ada"
hubspot = "Ada"
expect = { hubspot = "Ada", mailchimp = "" }
"#,
    );
    let policy = compile(Path::new("p.toml"), &source, &TwoConnectors).unwrap();
    assert_eq!(policy.examples, 4);
}

#[test]
fn an_example_the_policy_contradicts_fails_at_its_place() {
    let source = with_examples(
        r#"
[[examples]]
about = "mailchimp wins the phone"
field = "phone"
base = "+1 555 0100"
hubspot = "+1 555 0199"
mailchimp = "+1 555 0142"
expect = "+1 555 0142"
"#,
    );
    // An example's problems point at its `[[examples]]` header.
    let line = source
        .lines()
        .position(|l| l.starts_with("about = \"mailchimp"))
        .unwrap();
    check_errors(
        &source,
        &[&format!(
            "{line}:1: example \"mailchimp wins the phone\": field `phone` (rule source_of_truth): expected both sides end with \"+15550142\", but both sides end with \"+15550199\""
        )],
    );
    let conflict = source.replace("expect = \"+1 555 0142\"", "conflict = true");
    check_errors(
        &conflict,
        &[&format!(
            "{line}:1: example \"mailchimp wins the phone\": field `phone` (rule source_of_truth): expected a conflict, but both sides end with"
        )],
    );
}

#[test]
fn malformed_examples_are_errors() {
    let source = with_examples(
        r#"
[[examples]]
about = "unknown field"
field = "fax"
expect = "1"

[[examples]]
about = "no outcome"
field = "phone"

[[examples]]
about = "both outcomes"
field = "phone"
expect = "1"
conflict = true

[[examples]]
about = "bad side"
field = "phone"
newer = "crm"
expect = "1"

[[examples]]
about = "half a table"
field = "phone"
expect = { hubspot = "1" }

[[examples]]
about = "a stray key"
field = "phone"
salesforce = "1"
expect = "1"
"#,
    );
    let line = |text: &str| source.lines().position(|l| l == text).unwrap() + 1;
    check_errors(
        &source,
        &[
            &format!(
                "{}:9: example \"unknown field\": `fax` is not a field of this policy (hint: fields: email, first_name, phone)",
                line("field = \"fax\"")
            ),
            &format!(
                "{}:1: example \"no outcome\": says nothing of the outcome (hint: add expect = <the value both sides end with>, or conflict = true)",
                line("about = \"no outcome\"") - 1
            ),
            &format!(
                "{}:12: example \"both outcomes\": give `expect` or `conflict = true`, not both",
                line("conflict = true")
            ),
            &format!(
                "{}:9: example \"bad side\": `newer = \"crm\"` is not a side (hint: use \"hubspot\", \"mailchimp\" or \"same\")",
                line("newer = \"crm\"")
            ),
            &format!(
                "{}:10: example \"half a table\": `expect` is a value, or a table of both sides' values (hint: for example expect = {{ hubspot = \"a\", mailchimp = \"b\" }})",
                line("expect = { hubspot = \"1\" }")
            ),
            &format!(
                "{}:1: example \"a stray key\": unknown key `salesforce` (hint: use about, field, base, hubspot, mailchimp, newer, expect or conflict)",
                line("salesforce = \"1\"")
            ),
        ],
    );
}

#[test]
fn scope_compiles_and_reports_its_errors() {
    let source = format!(
        "{VALID}\n[scope.mailchimp]\nonly = {{ status = [\"Subscribed\", \"pending\"] }}\n\n[scope.hubspot]\nrequire = [\"properties.email\"]\nexcept = {{ \"properties.lifecyclestage\" = [\"other\"] }}\n"
    );
    let policy = compile(Path::new("p.toml"), &source, &TwoConnectors).unwrap();
    assert_eq!(
        policy.scope[1].only,
        vec![(
            "status".to_string(),
            vec!["subscribed".to_string(), "pending".into()]
        )]
    );
    assert!(
        policy
            .paths(Side::Left)
            .contains(&"properties.lifecyclestage".to_string())
    );
    let member = |status: &str| {
        tandem_core::FieldMap::from([("status".to_string(), serde_json::json!(status))])
    };
    assert!(policy.in_scope(Side::Right, &member("pending")));
    assert!(!policy.in_scope(Side::Right, &member("unsubscribed")));

    let bad = format!(
        "{VALID}\n[scope.salesforce]\nrequire = []\n\n[scope.hubspot]\nrequire = [\"email\"]\nonly = {{ \"properties.lifecyclestage\" = [] }}\n"
    );
    let line = |text: &str| bad.lines().position(|l| l == text).unwrap() + 1;
    check_errors(
        &bad,
        &[
            &format!(
                "{}:8: [scope.salesforce]: `salesforce` is not a connector of this pair (hint: use [scope.hubspot] or [scope.mailchimp])",
                line("[scope.salesforce]")
            ),
            &format!(
                "{}:12: [scope.hubspot]: HubSpot paths name a contact property",
                line("require = [\"email\"]")
            ),
            &format!(
                "{}:40: [scope.hubspot].only: `properties.lifecyclestage` lists no values (hint: list the values, or remove the entry)",
                line("only = { \"properties.lifecyclestage\" = [] }")
            ),
        ],
    );
}

/// A case of a message table: its name, the policy, and each expected problem
/// as (marker, message).
type Case = (&'static str, String, Vec<(&'static str, &'static str)>);

/// Every problem the compile step can report that the tests above leave out,
/// with its place and hint. A case is (name, policy, [(marker, message)]), one
/// message a case unless one line has two; a marker is the line the problem
/// points at with `^` before its column.
#[test]
fn every_message_points_at_its_place() {
    let cases: Vec<Case> = vec![
        // Shape errors from the raw stage, beyond those of `syntax_and_shape_errors`.
        (
            "a key given twice",
            VALID.replace(
                "right = \"mailchimp\"",
                "right = \"mailchimp\"\nleft = \"salesforce\"",
            ),
            vec![(
                "^left = \"salesforce\"",
                "duplicate key (hint: see the policy format in README.md)",
            )],
        ),
        (
            "an unknown key in [match]",
            VALID.replace("field = \"email\"", "field = \"email\"\nkey = 1"),
            vec![("^key = 1", "unknown field `key`, expected `field`")],
        ),
        (
            "an unknown key in [scope.*]",
            appended("[scope.mailchimp]\nrequired = []\n"),
            vec![(
                "^required = []",
                "unknown field `required`, expected one of `require`, `only`, `except`",
            )],
        ),
        (
            "no `left`: the problem is the whole document's, so it points at its start",
            format!("# no left{}", VALID.replace("left = \"hubspot\"\n", "")),
            vec![("^# no left", "missing field `left`")],
        ),
        (
            "no `field` in [match]",
            VALID.replace("field = \"email\"\n", ""),
            vec![("^[match]", "missing field `field`")],
        ),
        (
            "a field without its right path",
            VALID.replace("right = \"merge_fields.FNAME\"\n", ""),
            vec![("^[fields.first_name]", "missing field `right`")],
        ),
        (
            "a path that is not text",
            VALID.replace("left = \"properties.firstname\"", "left = 3"),
            vec![("left = ^3", "invalid type: integer `3`, expected a string")],
        ),
        (
            "skew_secs as text",
            first_name("rule = \"newest\"\nskew_secs = \"ten\""),
            vec![(
                "skew_secs = ^\"ten\"",
                "invalid type: string \"ten\", expected u64",
            )],
        ),
        (
            "a negative skew_secs",
            first_name("rule = \"newest\"\nskew_secs = -5"),
            vec![(
                "skew_secs = ^-5",
                "invalid value: integer `-5`, expected u64",
            )],
        ),
        (
            "allow_empty as text",
            first_name("rule = \"newest\"\nallow_empty = \"yes\""),
            vec![(
                "allow_empty = ^\"yes\"",
                "invalid type: string \"yes\", expected a boolean",
            )],
        ),
        (
            "normalize as one text, not a list",
            first_name("rule = \"newest\"\nnormalize = \"trim\""),
            vec![(
                "normalize = ^\"trim\"",
                "invalid type: string \"trim\", expected a sequence",
            )],
        ),
        (
            "[on] as a value, not a table",
            VALID.replace("[match]", "on = 3\n\n[match]"),
            vec![("on = ^3", "invalid type: integer `3`, expected a map")],
        ),
        (
            "examples as a value, not [[examples]]",
            VALID.replace("left = \"hubspot\"", "examples = 3\nleft = \"hubspot\""),
            vec![(
                "examples = ^3",
                "invalid type: integer `3`, expected a sequence",
            )],
        ),
        // Rules.
        (
            "skew_secs belongs to `newest` only",
            first_name("rule = \"manual\"\nskew_secs = 5"),
            vec![(
                "skew_secs = ^5",
                "field `first_name`: `skew_secs` does not apply to rule `manual`",
            )],
        ),
        // Types and transforms.
        (
            "an unknown type",
            first_name("rule = \"newest\"\ntype = \"colour\""),
            vec![(
                "type = ^\"colour\"",
                "field `first_name`: `colour` is not a type (hint: use \"text\", \"number\", \"bool\", \"date\" or \"list\")",
            )],
        ),
        (
            "the match key with a type other than text",
            email("type = \"list\""),
            vec![(
                "type = ^\"list\"",
                "field `email` is the match key, which is text",
            )],
        ),
        (
            "normalize on a number",
            first_name("rule = \"newest\"\ntype = \"number\"\nnormalize = [\"trim\"]"),
            vec![(
                "normalize = ^[\"trim\"]",
                "field `first_name`: `normalize` does not apply to a number field (hint: it applies to text and list fields)",
            )],
        ),
        (
            "an unknown normalization",
            first_name("rule = \"newest\"\nnormalize = [\"trim\", \"shout\"]"),
            vec![(
                "normalize = [\"trim\", ^\"shout\"]",
                "field `first_name`: `shout` is not a normalization (hint: use \"trim\", \"lowercase\", \"uppercase\", \"collapse_spaces\" or \"phone\")",
            )],
        ),
        (
            "invert on a text",
            first_name("rule = \"newest\"\nright_invert = true"),
            vec![(
                "right_invert = ^true",
                "field `first_name`: `right_invert` does not apply to a text field (hint: it applies to bool fields)",
            )],
        ),
        (
            "split on a text",
            first_name("rule = \"newest\"\nleft_split = \";\""),
            vec![(
                "left_split = ^\";\"",
                "field `first_name`: `left_split` does not apply to a text field (hint: it applies to list fields)",
            )],
        ),
        (
            "a date format on a text",
            first_name("rule = \"newest\"\nright_format = \"iso\""),
            vec![(
                "right_format = ^\"iso\"",
                "field `first_name`: `right_format` does not apply to a text field (hint: it applies to date fields)",
            )],
        ),
        (
            "an unknown date format",
            first_name("rule = \"newest\"\ntype = \"date\"\nleft_format = \"unix\""),
            vec![(
                "left_format = ^\"unix\"",
                "field `first_name`: `unix` is not a date format (hint: use \"date\" (YYYY-MM-DD), \"epoch_ms\" or \"iso\")",
            )],
        ),
        (
            "union on a text",
            first_name("rule = \"union\""),
            vec![(
                "rule = ^\"union\"",
                "field `first_name`: rule `union` needs a list field (hint: set type = \"list\")",
            )],
        ),
        (
            "text-merge on a list",
            first_name("rule = \"text-merge\"\ntype = \"list\""),
            vec![(
                "rule = ^\"text-merge\"",
                "field `first_name`: rule `text-merge` needs a text field (hint: set type = \"text\")",
            )],
        ),
        (
            "max on a bool",
            first_name("rule = \"max\"\ntype = \"bool\""),
            vec![(
                "rule = ^\"max\"",
                "field `first_name`: rule `max` needs a number, date or text field (hint: set type = \"number\")",
            )],
        ),
        (
            "min on a list",
            first_name("rule = \"min\"\ntype = \"list\""),
            vec![(
                "rule = ^\"min\"",
                "field `first_name`: rule `min` needs a number, date or text field (hint: set type = \"number\")",
            )],
        ),
        (
            "a map to a value of another type (the map is pointed at, not the entry)",
            first_name(
                "rule = \"newest\"\ntype = \"bool\"\nright_map = { yes = true, no = \"nope\" }",
            ),
            vec![(
                "right_map = ^{ yes = true, no = \"nope\" }",
                "field `first_name`: `right_map` sends `no` to \"nope\", which is not a bool value",
            )],
        ),
        (
            "a map_write from a text that is not a bool",
            first_name("rule = \"newest\"\ntype = \"bool\"\nright_map_write = { maybe = \"x\" }"),
            vec![(
                "right_map_write = ^{ maybe = \"x\" }",
                "field `first_name`: `right_map_write` has `maybe`, which is not a bool value",
            )],
        ),
        (
            "a map_write from a text that is not a number",
            first_name("rule = \"newest\"\ntype = \"number\"\nleft_map_write = { lots = 9 }"),
            vec![(
                "left_map_write = ^{ lots = 9 }",
                "field `first_name`: `left_map_write` has `lots`, which is not a number value",
            )],
        ),
        (
            "a map that cannot be reversed on a writable side",
            first_name("rule = \"newest\"\nleft_map = { Mr = \"mr\", Mister = \"mr\" }"),
            vec![(
                "left_map = ^{ Mr = \"mr\", Mister = \"mr\" }",
                "field `first_name`: `left_map` sends two values to \"mr\", so \"mr\" cannot be written back (hint: set left_readonly = true, or say what to write with left_map_write)",
            )],
        ),
        (
            "a field nobody may write",
            first_name("rule = \"newest\"\nleft_readonly = true\nright_readonly = true"),
            vec![(
                "[fields.^first_name]",
                "field `first_name` is read-only on both sides (hint: a synced field must be writable on one side at least)",
            )],
        ),
        // Scope.
        (
            "`except` with a wrong path and no values: two problems on one line",
            appended("[scope.mailchimp]\nexcept = { stat = [] }\n"),
            vec![
                (
                    "except = { ^stat = [] }",
                    "[scope.mailchimp]: Mailchimp paths are one of",
                ),
                (
                    "except = { stat = ^[] }",
                    "[scope.mailchimp].except: `stat` lists no values (hint: list the values, or remove the entry)",
                ),
            ],
        ),
        (
            "`only` listing what no record value compares to, each reported",
            appended("[scope.mailchimp]\nonly = { status = [[\"subscribed\"], 2024-01-01] }\n"),
            vec![
                (
                    "only = { status = ^[[\"subscribed\"], 2024-01-01] }",
                    "[scope.mailchimp].only: `status` lists [\"subscribed\"], which is not a text, number or bool",
                ),
                (
                    "only = { status = ^[[\"subscribed\"], 2024-01-01] }",
                    "[scope.mailchimp].only: `status` lists 2024-01-01, which is not a text, number or bool",
                ),
            ],
        ),
        // Examples.
        (
            "an example whose `about` is not text",
            appended("[[examples]]\nabout = 3\nfield = \"first_name\"\n"),
            vec![("about = ^3", "an example's `about` is text")],
        ),
        (
            "an example without `about`",
            appended("[[examples]]\nfield = \"first_name\"\nconflict = true\n"),
            vec![(
                "^[[examples]]",
                "an example needs `about`, saying what it shows (hint: add about = \"...\")",
            )],
        ),
        (
            "an example without `field`",
            appended("[[examples]]\nabout = \"no field\"\nconflict = true\n"),
            vec![(
                "^[[examples]]",
                "example \"no field\": which `field`? (hint: add field = \"<a field of [fields]>\")",
            )],
        ),
        (
            "an example whose `conflict` is not a bool",
            appended("[[examples]]\nabout = \"x\"\nfield = \"first_name\"\nconflict = \"yes\"\n"),
            vec![(
                "conflict = ^\"yes\"",
                "example \"x\": `conflict` is true or false",
            )],
        ),
        (
            "an example expecting values where the policy opens a conflict",
            appended(
                "[[examples]]\nabout = \"both change the key\"\nfield = \"email\"\nbase = \"a@x.io\"\nhubspot = \"b@x.io\"\nmailchimp = \"c@x.io\"\nexpect = \"b@x.io\"\n",
            ),
            vec![(
                "^[[examples]]",
                "example \"both change the key\": field `email` (rule manual): expected both sides end with \"b@x.io\", but a conflict (",
            )],
        ),
        (
            "an example expecting different values on each side",
            appended(
                "[[examples]]\nabout = \"emptied\"\nfield = \"first_name\"\nbase = \"Ada\"\nhubspot = \"Ada\"\nexpect = { hubspot = \"Bea\", mailchimp = \"Ada\" }\n",
            ),
            vec![(
                "^[[examples]]",
                "example \"emptied\": field `first_name` (rule newest): expected left ends with \"Bea\", right with \"Ada\", but left ends with \"Ada\", right with null",
            )],
        ),
    ];
    for (name, source, expected) in &cases {
        let expected: Vec<String> = expected
            .iter()
            .map(|(marker, message)| format!("{}: {message}", place(source, marker)))
            .collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        check_case(name, source, &expected);
    }
}

/// A connector registry with nothing in it.
struct NoConnectors;

impl Schemas for NoConnectors {
    fn connectors(&self) -> Vec<String> {
        vec![]
    }

    fn events(&self, _: &str) -> &'static [&'static str] {
        &[]
    }

    fn deletes_permanently(&self, _: &str) -> bool {
        false
    }

    fn check_path(&self, connector: &str, _: &str) -> Result<(), String> {
        Err(format!("no connector {connector}"))
    }
}

#[test]
fn with_no_connector_configured_the_hint_says_none() {
    let problems = compile(Path::new("p.toml"), VALID, &NoConnectors).unwrap_err();
    let got: Vec<String> = problems.0.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        got,
        [
            "p.toml:2:8: connector `hubspot` is not configured (hint: configured connectors: none)",
            "p.toml:3:9: connector `mailchimp` is not configured (hint: configured connectors: none)",
        ]
    );
}

#[test]
fn an_unreadable_policy_file_is_one_problem_about_the_whole_file() {
    let missing = Path::new("policies/no-such-policy.toml");
    let problems = load(missing, &TwoConnectors).unwrap_err();
    assert_eq!(problems.0.len(), 1);
    assert_eq!(problems.0[0].line, 0, "no line to point at");
    assert!(
        problems.0[0]
            .to_string()
            .starts_with("policies/no-such-policy.toml: cannot read the policy file: "),
        "{}",
        problems.0[0]
    );
}

// Mistakes that once went unnoticed, or came out in the wrong place or order.

#[test]
fn a_huge_skew_is_a_problem_not_a_panic() {
    let source = first_name("rule = \"newest\"\nskew_secs = 10000000000000000");
    check_errors(
        &source,
        &[&format!(
            "{}: field `first_name`: `skew_secs` is too large",
            place(&source, "skew_secs = ^10000000000000000")
        )],
    );
}

#[test]
fn two_on_tables_for_one_connector_are_a_problem() {
    let source =
        appended("[on.hubspot]\narchived = \"ignore\"\n\n[on.left]\narchived = \"archive\"\n");
    check_errors(
        &source,
        &[&format!(
            "{}: [on.left]: `left` is hubspot, whose events [on.hubspot] already sets",
            place(&source, "[on.^left]")
        )],
    );
}

#[test]
fn an_example_giving_one_side_twice_is_a_problem() {
    let source = appended(
        "[[examples]]\nabout = \"two lefts\"\nfield = \"first_name\"\nhubspot = \"Ada\"\nleft = \"Bea\"\nexpect = \"Ada\"\n",
    );
    check_errors(
        &source,
        &[&format!(
            "{}: example \"two lefts\": `hubspot` and `left` both give the left side's value",
            place(&source, "^left = \"Bea\"")
        )],
    );
}

#[test]
fn an_examples_unknown_keys_are_reported_in_file_order() {
    let source = appended(
        "[[examples]]\nabout = \"two strays\"\nfield = \"first_name\"\nzz = 1\naa = 2\nexpect = \"x\"\n",
    );
    check_errors(
        &source,
        &[
            &format!(
                "{}: example \"two strays\": unknown key `zz`",
                place(&source, "^zz = 1")
            ),
            &format!(
                "{}: example \"two strays\": unknown key `aa`",
                place(&source, "^aa = 2")
            ),
        ],
    );
}

#[test]
fn a_malformed_example_is_reported_with_the_other_problems() {
    let source = appended(
        "[on.salesforce]\n\n[[examples]]\nabout = \"x\"\nfield = \"first_name\"\nconflict = \"yes\"\n",
    );
    check_errors(
        &source,
        &[
            &format!(
                "{}: [on.salesforce]: `salesforce` is not a connector of this pair",
                place(&source, "[on.^salesforce]")
            ),
            &format!(
                "{}: example \"x\": `conflict` is true or false",
                place(&source, "conflict = ^\"yes\"")
            ),
        ],
    );
}

#[test]
fn a_date_map_to_something_not_a_date_is_a_problem() {
    let source =
        first_name("rule = \"newest\"\ntype = \"date\"\nleft_map = { soon = \"whenever\" }");
    check_errors(
        &source,
        &[&format!(
            "{}: field `first_name`: `left_map` sends `soon` to \"whenever\", which is not a date value",
            place(&source, "left_map = ^{ soon = \"whenever\" }")
        )],
    );
}

#[test]
fn a_list_rule_on_the_match_key_does_not_hint_at_a_list_type() {
    let source = email("rule = \"union\"");
    check_errors(
        &source,
        &[&format!(
            "{}: field `email`: rule `union` needs a list field, and the match key is text (hint: use a rule for text, such as \"newest\" or \"manual\")",
            place(&source, "rule = ^\"union\"")
        )],
    );
}

#[test]
fn the_catalogue_of_every_rule_compiles_and_its_examples_hold() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies/every-rule.toml");
    let policy = load(&path, &TwoConnectors).unwrap_or_else(|p| panic!("{p}"));
    let rules: std::collections::BTreeSet<&str> =
        policy.fields.iter().map(|f| f.rule.name()).collect();
    assert_eq!(
        rules.into_iter().collect::<Vec<_>>(),
        [
            "manual",
            "max",
            "min",
            "newest",
            "prefer-non-empty",
            "source_of_truth",
            "text-merge",
            "union"
        ],
        "every rule is used"
    );
    assert!(policy.examples >= 20);
}

#[test]
fn scope_admits_records_by_presence_allowed_and_barred_values() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies/every-rule.toml");
    let policy = load(&path, &TwoConnectors).unwrap();
    let fields = |pairs: serde_json::Value| -> tandem_core::FieldMap {
        pairs
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let hubspot = Side::Left;
    let mailchimp = Side::Right;
    for (case, side, record, admitted) in [
        (
            "an email and a lead",
            hubspot,
            serde_json::json!({"properties.email": "a@x.com", "properties.lifecyclestage": "lead"}),
            true,
        ),
        (
            "no stage at all is not barred",
            hubspot,
            serde_json::json!({"properties.email": "a@x.com"}),
            true,
        ),
        (
            "no email",
            hubspot,
            serde_json::json!({"properties.lifecyclestage": "lead"}),
            false,
        ),
        (
            "a blank email",
            hubspot,
            serde_json::json!({"properties.email": "  "}),
            false,
        ),
        (
            "a null email",
            hubspot,
            serde_json::json!({"properties.email": null}),
            false,
        ),
        (
            "a barred stage, any case",
            hubspot,
            serde_json::json!({"properties.email": "a@x.com", "properties.lifecyclestage": " Other "}),
            false,
        ),
        (
            "subscribed",
            mailchimp,
            serde_json::json!({"status": "subscribed"}),
            true,
        ),
        (
            "unsubscribed is listed",
            mailchimp,
            serde_json::json!({"status": "unsubscribed"}),
            true,
        ),
        (
            "cleaned is not",
            mailchimp,
            serde_json::json!({"status": "cleaned"}),
            false,
        ),
        ("no status", mailchimp, serde_json::json!({}), false),
    ] {
        assert_eq!(policy.in_scope(side, &fields(record)), admitted, "{case}");
    }
    // A list holds one of the values, or one barred value.
    let tags = Scope {
        only: vec![("tags".into(), vec!["vip".into()])],
        except: vec![("tags".into(), vec!["blocked".into()])],
        ..Scope::default()
    };
    assert!(tags.admits(&fields(serde_json::json!({"tags": ["news", "VIP"]}))));
    assert!(!tags.admits(&fields(serde_json::json!({"tags": ["news"]}))));
    assert!(!tags.admits(&fields(serde_json::json!({"tags": ["vip", "blocked"]}))));
}
