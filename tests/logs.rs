//! Logs, through the real binary: `--log-format json` gives one JSON object
//! per line with the pass and the record in spans, and no secret ever appears
//! in what tandem prints, not even at trace level.

use serde_json::Value;

use crate::cli::{stderr, tandem};
use crate::support::{World, contact, member};

async fn world_with_a_rejected_record() -> World {
    let world = World::new(
        vec![
            contact("bounce@example.com", &[("firstname", "Bounce")]),
            contact("grace@example.com", &[("firstname", "Grace")]),
        ],
        vec![member("alan@example.org", &[("FNAME", "Alan")])],
    )
    .await;
    world.mailchimp.reject_emails(&["bounce@example.com"]);
    world
}

fn config(world: &World) -> String {
    world.dir.path().join("tandem.toml").display().to_string()
}

#[tokio::test]
async fn json_logs_parse_and_carry_the_pass_and_the_record() {
    let world = world_with_a_rejected_record().await;
    let config = config(&world);
    let output = tandem(
        &[
            "sync",
            "--once",
            "--yes",
            "--log",
            "info",
            "--log-format",
            "json",
            "--config",
            &config,
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<Value> = stderr(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let rejected = lines
        .iter()
        .find(|l| l["fields"]["message"] == "Write rejected; it will be retried.")
        .unwrap_or_else(|| panic!("no rejection logged in {lines:#?}"));
    let spans = rejected["spans"].as_array().expect("the span list");
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} span in {rejected}"))
    };
    assert_eq!(span("pass")["pass"], 1);
    assert_eq!(span("pair")["pair"], "hubspot-mailchimp");
    let record = span("record");
    assert_eq!(record["key"], "bounce@example.com");
    assert_eq!(record["side"], "right");
    assert!(record["link"].as_i64().is_some_and(|id| id > 0), "{record}");
}

#[tokio::test]
async fn no_secret_appears_in_anything_tandem_prints() {
    let mut world = world_with_a_rejected_record().await;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = world.config_listening_at(listen, 3600);
    let config = config.to_str().unwrap();
    let dir = world.dir.path();
    let mut secrets = vec![
        std::fs::read_to_string(dir.join("hubspot.token")).unwrap(),
        std::fs::read_to_string(dir.join("mailchimp.key")).unwrap(),
    ];
    // The webhook secrets the listener was configured with.
    for name in ["hubspot.secret", "mailchimp.secret"] {
        if let Ok(secret) = std::fs::read_to_string(dir.join(name)) {
            secrets.push(secret);
        }
    }
    let secrets: Vec<String> = secrets
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(secrets.len() >= 2, "{secrets:?}");
    for format in ["json", "text"] {
        for args in [
            vec!["sync", "--once", "--yes", "--json"],
            vec!["status", "--json"],
            vec!["plan", "--json"],
        ] {
            let mut args = args.clone();
            args.extend(["--log", "trace", "--log-format", format, "--config", config]);
            let output = tandem(&args, &[]).await;
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                stderr(&output)
            );
            assert!(printed.len() > 1000, "trace logs were written: {args:?}");
            for secret in &secrets {
                assert!(
                    !printed.contains(secret.as_str()),
                    "{args:?} printed a secret"
                );
            }
        }
    }
}
