//! Bad input never panics: both webhook decoders, the policy compiler and the
//! config parser take arbitrary bytes and mutations of real input, and either
//! accept it or say what is wrong (with a line inside the text). Bounded runs
//! here; `PROPTEST_CASES=100000 cargo test --test main bad_input` runs longer.

use std::path::Path;

use proptest::prelude::*;

/// A real document with one random edit: a byte range replaced by random
/// text, a line dropped or doubled. Most are still almost valid, which is
/// where parsers break.
fn mutated(original: &'static str) -> impl Strategy<Value = String> {
    let len = original.len();
    (0..len, 0..32usize, ".{0,12}", 0u8..3).prop_map(move |(at, cut, insert, kind)| {
        let lines: Vec<&str> = original.lines().collect();
        match kind {
            0 => {
                let mut start = at.min(len);
                while !original.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (start + cut).min(len);
                while !original.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}{insert}{}", &original[..start], &original[end..])
            }
            1 => {
                let drop = at % lines.len();
                let kept: Vec<&str> = lines
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != drop)
                    .map(|(_, l)| *l)
                    .collect();
                kept.join("\n")
            }
            _ => {
                let twice = at % lines.len();
                let mut out: Vec<&str> = lines.clone();
                out.insert(twice, lines[twice]);
                out.join("\n")
            }
        }
    })
}

const HUBSPOT_EVENTS: &str = include_str!("../fixtures/hubspot/webhook-creation.json");
const MAILCHIMP_FORM: &str = include_str!("../fixtures/mailchimp/webhook-profile.txt");
const POLICY: &str = include_str!("../policies/hubspot-mailchimp.toml");

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn webhook_decoders_take_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = tandem_hubspot::webhook::decode(&body);
        let _ = tandem_mailchimp::webhook::decode(&body);
    }

    #[test]
    fn hubspot_decoder_takes_any_edit_of_a_real_batch(body in mutated(HUBSPOT_EVENTS)) {
        let _ = tandem_hubspot::webhook::decode(body.as_bytes());
    }

    #[test]
    fn mailchimp_decoder_takes_any_edit_of_a_real_form(body in mutated(MAILCHIMP_FORM)) {
        let _ = tandem_mailchimp::webhook::decode(body.as_bytes());
    }

    #[test]
    fn the_config_parser_takes_any_edit_of_a_real_config(source in mutated(CONFIG)) {
        if let Err(problems) = tandem::config::Config::parse(Path::new("/nowhere/tandem.toml"), &source) {
            let lines = source.lines().count().max(1);
            for problem in &problems.0 {
                prop_assert!(!problem.message.is_empty());
                prop_assert!(problem.line <= lines + 1, "{problem:?} in {lines} lines");
            }
        }
    }
}

const CONFIG: &str = r#"
[store]
path = "tandem.sqlite"

[engine]
poll_interval_secs = 30
max_attempts = 8
removal_limit = 50

[connectors.hubspot]
base_url = "http://127.0.0.1:9"
token_env = "HUBSPOT_TOKEN"
overlap_secs = 5
rate_limit = "100/10s"
client_secret_file = "hubspot.secret"

[connectors.mailchimp]
base_url = "http://127.0.0.1:9/3.0"
api_key_file = "mailchimp.key"
list_id = "a1b2c3d4e5"
webhook_secret_env = "MAILCHIMP_WEBHOOK_SECRET"

[[pairs]]
policy = "policies/hubspot-mailchimp.toml"

[http]
listen = "127.0.0.1:8080"
public_url = "https://sync.example.com"

[[http.users]]
name = "admin"
role = "admin"
password_hash = "$argon2id$v=19$m=1024,t=1,p=1$9PD8xeDeOFjx7qLsz81hhA$H9xaFNN7YIAFwNjJV7RkP5ypDmttU8X8rhyvQ2iMMxQ"
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_policy_compiler_takes_any_edit_of_the_shipped_policy(source in mutated(POLICY)) {
        let config = schemas_config();
        let schemas = tandem::engine::ConfigSchemas(config);
        if let Err(problems) = tandem::policy::compile(Path::new("policies/p.toml"), &source, &schemas) {
            let lines = source.lines().count().max(1);
            prop_assert!(!problems.0.is_empty());
            for problem in &problems.0 {
                prop_assert!(!problem.message.is_empty());
                prop_assert!(problem.line <= lines + 1, "{problem:?} in {lines} lines");
            }
        }
    }
}

/// A config naming both connectors, for the policy compiler's schemas; its
/// folder holds the shipped policy and lives as long as the tests.
fn schemas_config() -> &'static tandem::config::Config {
    static CONFIG_DIR: std::sync::OnceLock<(tempfile::TempDir, tandem::config::Config)> =
        std::sync::OnceLock::new();
    &CONFIG_DIR
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("policies")).unwrap();
            std::fs::write(dir.path().join("policies/hubspot-mailchimp.toml"), POLICY).unwrap();
            let config = tandem::config::Config::parse(&dir.path().join("tandem.toml"), CONFIG)
                .unwrap_or_else(|e| panic!("{e:?}"));
            (dir, config)
        })
        .1
}
