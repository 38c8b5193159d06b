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
    let problems = compile(Path::new("p.toml"), source, &TwoConnectors)
        .expect_err("the policy should not compile");
    let got: Vec<String> = problems.0.iter().map(|p| p.to_string()).collect();
    assert_eq!(got.len(), expected.len(), "got {got:#?}");
    for (got, want) in got.iter().zip(expected) {
        assert!(
            got.starts_with(&format!("p.toml:{want}")),
            "expected p.toml:{want}\n     got {got}"
        );
    }
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
    check_errors("left = \n", &["1:8: "]);
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
        &["15:8: field `first_name`: unknown rule `oldest`"],
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
        &["16:7: field `first_name`: `nobody` is not a side"],
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
    let broken = VALID
        .replace("left = \"hubspot\"", "left = \"salesforce\"")
        .replace("\"newest\"", "\"oldest\"")
        .replace("field = \"email\"", "field = \"mail\"");
    check_errors(
        &broken,
        &[
            "2:8: connector `salesforce`",
            "6:9: the match field `mail`",
            "8:9: field `email` has no rule",
            "15:8: field `first_name`: unknown rule",
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
        &["17:5: [on.salesforce]: `salesforce` is not a connector of this pair"],
    );
    check_errors(
        &with("[on.hubspot]\nunsubscribed = \"mark\"\n"),
        &["18:16: [on.hubspot]: hubspot records are never `unsubscribed`"],
    );
    check_errors(
        &with("[on.mailchimp]\narchived = \"shred\"\n"),
        &["18:12: [on.mailchimp]: `archived = \"shred\"` is not an action"],
    );
    check_errors(
        &with("[on.mailchimp]\ncleaned = \"archive\"\n"),
        &["18:11: [on.mailchimp]: `cleaned = \"archive\"` is not an action"],
    );
    check_errors(
        &with("[on.mailchimp]\narchived = \"delete-permanent\"\n"),
        &["18:12: [on.mailchimp]: tandem never deletes hubspot records for good"],
    );
    check_errors(
        &with("[on.hubspot]\nmark = \"properties.crm_status\"\n"),
        &["18:8: [on.hubspot].mark: Mailchimp paths are one of"],
    );
    check_errors(
        &with("[on.hubspot]\nmark = \"merge_fields.FNAME\"\n"),
        &["18:8: [on.hubspot].mark: `merge_fields.FNAME` is already field `first_name`"],
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
                "{}:1: example \"no outcome\": says nothing of the outcome",
                line("about = \"no outcome\"") - 1
            ),
            &format!(
                "{}:12: example \"both outcomes\": give `expect` or `conflict = true`, not both",
                line("conflict = true")
            ),
            &format!(
                "{}:9: example \"bad side\": `newer = \"crm\"` is not a side",
                line("newer = \"crm\"")
            ),
            &format!(
                "{}:10: example \"half a table\": `expect` is a value, or a table",
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
                "{}:8: [scope.salesforce]: `salesforce` is not a connector of this pair",
                line("[scope.salesforce]")
            ),
            &format!(
                "{}:12: [scope.hubspot]: HubSpot paths name a contact property",
                line("require = [\"email\"]")
            ),
            &format!(
                "{}:40: [scope.hubspot].only: `properties.lifecyclestage` lists no values",
                line("only = { \"properties.lifecyclestage\" = [] }")
            ),
        ],
    );
}
