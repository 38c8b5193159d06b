//! Logs, through the real binary: `--log-format json` gives one JSON object
//! per line with the pass and the record in spans, and no secret ever appears
//! in what tandem prints, not even at trace level. Also the half of `tandem
//! status`'s stale-poll rule that `ops.rs` (with readiness and its floor) leaves out.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tandem::demo::{WebhookSetup, Workspace, write_workspace};
use tandem_hubspot::sim::SimConfig as HubSpotSimConfig;
use tandem_mailchimp::sim::SimConfig as MailchimpSimConfig;

use crate::cli::{stderr, sync_once, tandem};
use crate::support::{World, contact, eventually, free_address, member, stop_with_sigterm};

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

/// A workspace on `world` with every kind of secret tandem holds: the vendors'
/// credentials, both webhook secrets, and people with passwords whose hashes
/// are written in the config. Returns the config path, the listener's setup
/// (to connect the simulators and sign in) and the secrets.
fn write_secrets(
    world: &World,
    listen: std::net::SocketAddr,
) -> (PathBuf, WebhookSetup, Vec<String>) {
    let workspace = Workspace {
        hubspot_url: world.hubspot_url.clone(),
        hubspot_token: HubSpotSimConfig::default().token,
        mailchimp_url: world.mailchimp_url.clone(),
        mailchimp_key: MailchimpSimConfig::default().api_key,
        list_id: MailchimpSimConfig::default().list_id,
        poll_interval_secs: 3600,
        overlap_secs: 0,
        hubspot_limits: ("off".into(), "off".into()),
        webhooks: Some(WebhookSetup::on(listen).with_people()),
    };
    let config = write_workspace(world.dir.path(), &workspace).unwrap();
    let setup = workspace.webhooks.expect("set above");
    let mut secrets = vec![
        workspace.hubspot_token,
        workspace.mailchimp_key,
        setup.hubspot_secret.clone(),
        setup.mailchimp_secret.clone(),
    ];
    secrets.extend(setup.people.iter().map(|(_, _, password)| password.clone()));
    let text = std::fs::read_to_string(&config).unwrap();
    let hashes = text
        .lines()
        .filter_map(|line| line.strip_prefix("password_hash = \"")?.strip_suffix('"'));
    secrets.extend(hashes.map(String::from));
    assert_eq!(
        secrets.len(),
        4 + 2 * tandem::config::ROLES.len(),
        "every secret is found: {text}"
    );
    (config, setup, secrets)
}

/// Panics, naming the secret by its place in `secrets`, if one is in `printed`.
fn assert_no_secret(printed: &str, secrets: &[String], what: &str) {
    for (index, secret) in secrets.iter().enumerate() {
        assert!(
            !printed.contains(secret.as_str()),
            "{what} printed secret #{index} (see write_secrets for the order)"
        );
    }
}

#[tokio::test]
async fn no_secret_appears_in_what_a_command_prints_even_at_trace_level() {
    let world = world_with_a_rejected_record().await;
    let (config, _setup, secrets) = write_secrets(&world, free_address());
    let config = config.to_str().unwrap();
    for format in ["json", "text"] {
        // Whether the command calls the vendors, and so writes trace logs of its requests.
        for (command, calls) in [
            (&["sync", "--once", "--yes", "--json"][..], true),
            (&["status", "--json"], false),
            (&["plan", "--json"], true),
            (&["conflicts", "list"], false),
            (&["audit"], false),
        ] {
            let mut args = command.to_vec();
            args.extend(["--log", "trace", "--log-format", format, "--config", config]);
            let output = tandem(&args, &[]).await;
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                stderr(&output)
            );
            assert!(
                output.status.code().is_some_and(|code| code < 2),
                "{args:?}: {printed}"
            );
            assert!(
                !calls || printed.contains("TRACE") || printed.contains("\"level\":\"TRACE\""),
                "{args:?} wrote trace logs: {printed}"
            );
            assert_no_secret(&printed, &secrets, &format!("{args:?}"));
        }
    }
}

/// A person signs in through the API.
async fn sign_in(base: &str, name: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/session"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn no_secret_appears_in_a_running_engines_trace_logs() {
    let world = world_with_a_rejected_record().await;
    let listen = free_address();
    let (config, setup, mut secrets) = write_secrets(&world, listen);
    let linked = sync_once(&config).await;
    assert_eq!(linked.status.code(), Some(0), "{}", stderr(&linked));

    let log = world.dir.path().join("run.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "run",
            "--yes",
            "--log",
            "trace",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&config)
        .env_remove("TANDEM_LOG")
        .stdout(std::fs::File::create(world.dir.path().join("run.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = setup.base_url();
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !matches!(http.get(format!("{base}/readyz")).send().await, Ok(r) if r.status() == 200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every person signs in and uses the session; one password is wrong.
    for (name, _, password) in &setup.people {
        let response = sign_in(&base, name, password).await;
        assert_eq!(response.status(), 200, "{name} signs in");
        let cookie = response.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let status = http
            .get(format!("{base}/api/status"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(status.status(), 200, "{name} reads the status");
        // A session is as good as a password while it lasts.
        secrets.push(cookie.split_once('=').unwrap().1.to_string());
    }
    let wrong = format!("{}-wrong", setup.people[0].2);
    assert_eq!(sign_in(&base, "admin", &wrong).await.status(), 401);

    // Both simulators send signed webhooks; Mailchimp's carry the secret in the URL.
    let _senders = setup.connect(&world.hubspot, &world.mailchimp);
    world.later();
    world
        .hubspot
        .edit("grace@example.com", &[("firstname", "Gracie")]);
    world
        .mailchimp
        .edit("alan@example.org", &[("FNAME", "Alan M.")]);
    eventually("both edits cross", || {
        world
            .mailchimp_value("grace@example.com", "FNAME")
            .as_deref()
            == Some("Gracie")
            && world
                .hubspot_value("alan@example.org", "firstname")
                .as_deref()
                == Some("Alan M.")
    })
    .await;

    let stopped = stop_with_sigterm(&mut child).await;
    assert_eq!(stopped.code(), Some(0));

    let printed = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(world.dir.path().join("run.out")).unwrap();
    let recorded: std::collections::BTreeSet<String> = printed
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "Webhook recorded.")
        .filter_map(|line| line["fields"]["connector"].as_str().map(String::from))
        .collect();
    assert_eq!(
        recorded,
        ["hubspot", "mailchimp"].map(String::from).into(),
        "both connectors' webhooks were taken"
    );
    assert_no_secret(&printed, &secrets, "tandem run");
}

/// `ops.rs` checks the five-minute floor of `tandem status`'s stale-poll rule
/// with polls due every second; this checks its other half, three intervals,
/// with polls due every ten minutes.
#[tokio::test]
async fn status_allows_three_poll_intervals_when_they_are_longer_than_five_minutes() {
    let world = World::new(
        vec![contact("ada@example.com", &[("firstname", "Ada")])],
        vec![member("ada@example.com", &[("FNAME", "Ada")])],
    )
    .await;
    let path = world.dir.path().join("tandem.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("poll_interval_secs = 1\n"), "{text}");
    std::fs::write(
        &path,
        text.replace("poll_interval_secs = 1\n", "poll_interval_secs = 600\n"),
    )
    .unwrap();
    let mut settings = tandem::config::Config::load(&path).unwrap();
    // As in the test world: the breaker counts real seconds, the passes here a manual clock.
    for connector in settings.connectors.values_mut() {
        connector.common_mut().breaker_failure_percent = Some(101);
    }
    let settings = &settings;
    let pass_at = |at: i64| async move {
        let clock = tandem::engine::Clock::manual(at);
        let engine = tandem::engine::Engine::start(settings, clock)
            .await
            .unwrap();
        engine
            .pass(&tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    };
    let config = path.to_str().unwrap();
    let status = || async { tandem(&["status", "--json", "--config", config], &[]).await };
    let now = tandem_core::clock::now_millis();
    const MINUTE: i64 = 60_000;

    // Forty minutes is more than three intervals of ten.
    pass_at(now - 40 * MINUTE).await;
    let stale = status().await;
    let text = String::from_utf8_lossy(&stale.stdout);
    assert_eq!(stale.status.code(), Some(1), "{text}{}", stderr(&stale));
    assert!(
        text.contains("hubspot last polled") && text.contains("mailchimp last polled"),
        "{text}"
    );

    // Twenty minutes is past the five-minute floor, but within three intervals.
    pass_at(now - 20 * MINUTE).await;
    let fresh = status().await;
    let text = String::from_utf8_lossy(&fresh.stdout);
    assert_eq!(fresh.status.code(), Some(0), "{text}{}", stderr(&fresh));
    assert!(!text.contains("last polled"), "{text}");
}
