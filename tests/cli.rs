//! The `tandem` binary: bad input gives a one-line error naming the file or
//! setting, exit code 2, and writes nothing; the demo runs on a fresh directory.

use std::path::Path;
use std::process::Output;

use crate::support::{World, contact, member};

/// Run the binary. The simulators of a test live on its runtime, so the child
/// is waited for without blocking that runtime.
pub(crate) async fn tandem(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.args(args).env_remove("TANDEM_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.expect("tandem runs")
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit code 2, one line of error naming `needle`, and no state store written.
fn assert_bad_input(output: &Output, needle: &str, store: &Path) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {text}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{needle:?} not in {text}"
    );
    assert!(
        !store.exists(),
        "a state store was written at {}",
        store.display()
    );
}

/// The 1-based line of a file that contains `needle`.
fn line_of(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap()
        + 1
}

/// `tandem sync --once --yes` with this config.
pub(crate) async fn sync_once(path: &Path) -> Output {
    tandem(
        &[
            "sync",
            "--once",
            "--yes",
            "--config",
            path.to_str().unwrap(),
        ],
        &[],
    )
    .await
}

fn config_with(world: &World, edit: impl FnOnce(String) -> String) -> std::path::PathBuf {
    let path = world.dir.path().join("tandem.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[tokio::test]
async fn a_missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let output = sync_once(&path).await;
    assert_bad_input(
        &output,
        "nope.toml: cannot read the config file",
        &dir.path().join("tandem.sqlite"),
    );
}

#[tokio::test]
async fn a_malformed_config_is_placed_by_line_and_column() {
    let world = World::new(vec![], vec![]).await;
    let path = config_with(&world, |text| {
        text.replace("poll_interval_secs = 1", "poll_interval_secs = \"often\"")
    });
    let line = line_of(&path, "poll_interval_secs");
    let output = sync_once(&path).await;
    assert_bad_input(
        &output,
        &format!("tandem.toml:{line}:22: invalid type: string \"often\""),
        &world.config.store_path,
    );
}

#[tokio::test]
async fn an_unknown_config_key_is_an_error() {
    let world = World::new(vec![], vec![]).await;
    let path = config_with(&world, |text| {
        text.replace("[engine]", "[engine]\npol_interval_secs = 5")
    });
    let output = sync_once(&path).await;
    assert_bad_input(
        &output,
        "unknown field `pol_interval_secs`",
        &world.config.store_path,
    );
}

#[tokio::test]
async fn a_malformed_policy_is_placed_by_line_and_column() {
    let world = World::new(vec![], vec![]).await;
    let policy = world.dir.path().join("policies/hubspot-mailchimp.toml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("rule = \"manual\"", "rule = \"manul\"");
    std::fs::write(&policy, text).unwrap();
    let config = world.dir.path().join("tandem.toml");
    let line = line_of(&policy, "manul");
    let output = sync_once(&config).await;
    let expected = format!(
        "hubspot-mailchimp.toml:{line}:8: field `company`: unknown rule `manul` (hint: use \"newest\""
    );
    assert_bad_input(&output, &expected, &world.config.store_path);
}

#[tokio::test]
async fn a_missing_credential_variable_is_named() {
    let world = World::new(vec![], vec![]).await;
    let path = config_with(&world, |text| {
        text.replace(
            "token_file = \"hubspot.token\"",
            "token_env = \"TANDEM_TEST_UNSET_TOKEN\"",
        )
    });
    let output = sync_once(&path).await;
    assert_bad_input(
        &output,
        "connectors.hubspot.token_env: environment variable TANDEM_TEST_UNSET_TOKEN is not set",
        &world.config.store_path,
    );
}

#[tokio::test]
async fn a_credential_from_the_environment_works() {
    let world = World::new(
        vec![crate::support::contact(
            "ada@example.com",
            &[("firstname", "Ada")],
        )],
        vec![],
    )
    .await;
    let path = config_with(&world, |text| {
        text.replace(
            "token_file = \"hubspot.token\"",
            "token_env = \"TANDEM_TEST_TOKEN\"",
        )
    });
    let output = tandem(
        &[
            "sync",
            "--once",
            "--yes",
            "--json",
            "--config",
            path.to_str().unwrap(),
        ],
        &[("TANDEM_TEST_TOKEN", "sim-hubspot-token")],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["pairs"][0]["created"], serde_json::json!([0, 1]));
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("sim-hubspot-token"),
        "the secret must not be printed"
    );
}

#[tokio::test]
async fn a_wrong_credential_is_named() {
    let world = World::new(vec![], vec![]).await;
    std::fs::write(world.dir.path().join("hubspot.token"), "not-the-token").unwrap();
    let config = world.dir.path().join("tandem.toml");
    let output = sync_once(&config).await;
    assert_bad_input(
        &output,
        "connectors.hubspot.token_file: hubspot: credentials rejected (HTTP 401)",
        &world.config.store_path,
    );
    assert!(!stderr(&output).contains("not-the-token"));
}

#[tokio::test]
async fn an_unreachable_base_url_is_named() {
    let world = World::new(vec![], vec![]).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let path = config_with(&world, |text| text.replacen(&world.hubspot_url, &dead, 1));
    let output = sync_once(&path).await;
    assert_bad_input(
        &output,
        "connectors.hubspot.base_url: hubspot: cannot reach",
        &world.config.store_path,
    );
}

#[tokio::test]
async fn conflicts_list_shows_open_conflicts() {
    let world = World::new(
        vec![crate::support::contact(
            "ada@example.com",
            &[("company", "Analytical")],
        )],
        vec![crate::support::member(
            "ada@example.com",
            &[("COMPANY", "Engines Ltd")],
        )],
    )
    .await;
    let config = world.dir.path().join("tandem.toml");
    let config = config.to_str().unwrap();
    let before = tandem(&["conflicts", "list", "--config", config], &[]).await;
    assert_eq!(
        before.status.code(),
        Some(2),
        "no store yet: {}",
        stderr(&before)
    );
    assert!(stderr(&before).contains("no state store"));

    assert_eq!(
        tandem(&["sync", "--once", "--yes", "--config", config], &[])
            .await
            .status
            .code(),
        Some(0)
    );
    let listed = tandem(&["conflicts", "list", "--config", config], &[]).await;
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("ada@example.com")
            && text.contains("company")
            && text.contains("Engines Ltd"),
        "{text}"
    );
    let json = tandem(&["conflicts", "list", "--json", "--config", config], &[]).await;
    let page: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["conflicts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_demo_runs_once_on_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let output = tandem(
        &["demo", "--once", "--json", "--dir", work.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pair = &report["pairs"][0];
    assert_eq!(pair["linked"], 700);
    assert_eq!(pair["created"], serde_json::json!([150, 150]));
    assert!(pair["open_conflicts"].as_u64().unwrap() > 0);
    assert_eq!(pair["skipped"]["nokey"], 5);
    assert!(work.join("tandem.sqlite").exists() && work.join("tandem.toml").exists());

    // The human report names where to look next.
    let human = tandem(&["demo", "--once", "--dir", work.to_str().unwrap()], &[]).await;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("linked      700") && text.contains("tandem conflicts list --config"),
        "{text}"
    );
}

#[tokio::test]
async fn the_continuous_demo_shows_changes_and_stops_cleanly_on_ctrl_c() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["demo", "--interval", "1", "--dir", work.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut page = None;
    let mut support = None;
    let flowed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split_once(": open ") {
                page = rest.1.split_whitespace().next().map(str::to_string);
            }
            if line.trim_start().starts_with("support ") {
                support = line.split_whitespace().last().map(str::to_string);
            }
            if line.contains("hubspot -> mailchimp: ")
                && !line.contains("-> mailchimp: 0 updated, 0 created")
            {
                return line;
            }
        }
        panic!("the demo ended before any change flowed");
    })
    .await
    .expect("a change flows within a minute");
    assert!(flowed.contains("mailchimp -> hubspot: "), "{flowed}");

    // The printed page and sign-in work, and the page shows the demo's conflicts.
    let page = page.expect("the demo prints its web page");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http
        .post(format!("{page}sign-in"))
        .form(&[
            ("name", "support"),
            ("password", &support.expect("a sign-in for support")),
            ("next", "/conflicts"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.headers()["location"], "/conflicts");
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let html = http
        .get(format!("{page}conflicts"))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows = html.matches("<tr class=\"row\"").count();
    assert!(
        rows >= 20,
        "the demo opens 20 conflicts; the page shows {rows}"
    );

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("stops promptly")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Start `tandem sim <vendor>` on port 0 and return it with the base URL it printed.
async fn start_sim(args: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .next_line()
        .await
        .unwrap()
        .expect("the simulator prints its URL");
    (child, url)
}

#[tokio::test]
async fn the_simulators_run_alone_from_a_seed_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = root.join("fixtures/demo-hubspot.json");
    let (_hubspot, url) = start_sim(&[
        "sim",
        "hubspot",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        seed.to_str().unwrap(),
    ])
    .await;
    let page: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/crm/v3/objects/contacts?limit=100"))
        .bearer_auth("sim-hubspot-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["results"].as_array().unwrap().len(), 100);
    assert!(page["paging"]["next"]["after"].is_string());

    let seed = root.join("fixtures/demo-mailchimp.json");
    let args = [
        "sim",
        "mailchimp",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        seed.to_str().unwrap(),
        "--list-id",
        "list1",
    ];
    let (_mailchimp, url) = start_sim(&args).await;
    assert!(url.ends_with("/3.0"), "{url}");
    let page: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/lists/list1/members?count=5"))
        .basic_auth("any", Some("0123456789abcdef0123456789abcdef-us6"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["members"].as_array().unwrap().len(), 5);
    assert!(
        page["total_items"].as_u64().unwrap() > 800,
        "the seeded members are served"
    );
}

#[tokio::test]
async fn a_bad_seed_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"contacts": [{"properties": {"colour": "blue"}}]}"#,
    )
    .unwrap();
    let output = tandem(&["sim", "hubspot", "--seed", seed.to_str().unwrap()], &[]).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("seed.json: contact 0: property \"colour\" is not defined"),
        "{text}"
    );
}

#[tokio::test]
async fn status_shows_dead_letters_and_the_last_polls() {
    let world = World::new(
        vec![
            crate::support::contact("bounce@example.com", &[]),
            crate::support::contact("grace@example.com", &[]),
        ],
        vec![],
    )
    .await;
    let config = world.dir.path().join("tandem.toml");
    let engine = world.engine().await;
    // Never polled: unhealthy, exit 1.
    let output = tandem(&["status", "--config", config.to_str().unwrap()], &[]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("UNHEALTHY: hubspot was never polled; mailchimp was never polled"),
        "{text}"
    );
    // Polled, one write rejected and to be retried: healthy.
    world.mailchimp.reject_emails(&["bounce@example.com"]);
    world.pass(&engine).await;
    world.clock.advance(std::time::Duration::from_secs(7200));
    let output = tandem(&["status", "--config", config.to_str().unwrap()], &[]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("health           ok"), "{text}");

    // A dead letter waits for a person: unhealthy until it is dealt with.
    for _ in 1..world.config.engine.max_attempts {
        world.pass(&engine).await;
        world.clock.advance(std::time::Duration::from_secs(7200));
    }
    let output = tandem(&["status", "--config", config.to_str().unwrap()], &[]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(text.contains("UNHEALTHY: 1 dead letter(s)"), "{text}");
    assert!(text.contains("links            2"), "{text}");
    assert!(text.contains("dead letters     1"), "{text}");
    assert!(
        text.contains(
            "to mailchimp for bounce@example.com after 8 attempts: mailchimp: record rejected"
        ),
        "{text}"
    );
    assert!(text.contains("last poll        hubspot: 2"), "{text}");

    let json = tandem(
        &["status", "--json", "--config", config.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(json.status.code(), Some(1));
    let pairs: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(pairs[0]["healthy"], false);
    assert_eq!(pairs[0]["problems"][0], "1 dead letter(s)");
    assert_eq!(pairs[0]["dead_letters"], 1);
    assert_eq!(pairs[0]["dead"][0]["key"], "bounce@example.com");
}

#[tokio::test]
async fn plan_shows_every_write_link_and_conflict_and_writes_nothing() {
    let world = World::new(
        vec![
            crate::support::contact(
                "ada@example.com",
                &[("company", "Analytical"), ("firstname", "Ada")],
            ),
            crate::support::contact("grace@example.com", &[("company", "Navy")]),
        ],
        vec![
            crate::support::member(
                "ada@example.com",
                &[("COMPANY", "Analytical"), ("FNAME", "Ada")],
            ),
            crate::support::member("grace@example.com", &[("COMPANY", "Navy")]),
        ],
    )
    .await;
    let engine = world.engine().await;
    world.pass(&engine).await;
    drop(engine);
    world.later();
    world
        .hubspot
        .edit("ada@example.com", &[("firstname", "Augusta")]);
    world
        .hubspot
        .edit("grace@example.com", &[("company", "US Navy")]);
    world
        .mailchimp
        .edit("grace@example.com", &[("COMPANY", "Harvard")]);
    world
        .create_in_mailchimp("alan@example.com", serde_json::json!({ "FNAME": "Alan" }))
        .await;

    // The store file and its write-ahead log, byte for byte.
    let files = |dir: &std::path::Path| -> Vec<Option<Vec<u8>>> {
        ["tandem.sqlite", "tandem.sqlite-wal"]
            .iter()
            .map(|name| std::fs::read(dir.join(name)).ok())
            .collect()
    };
    let before = files(world.dir.path());
    assert!(before[0].is_some());
    let writes = (world.hubspot.stats().writes, world.mailchimp.stats().writes);
    let config = world.dir.path().join("tandem.toml");
    let output = tandem(
        &["plan", "--json", "--config", config.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plans: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let plan = &plans[0];
    assert_eq!(plan["links"], serde_json::json!(["alan@example.com"]));
    let writes_planned = plan["writes"].as_array().unwrap();
    assert_eq!(writes_planned.len(), 2, "{plan:#}");
    let update = writes_planned.iter().find(|w| w["op"] == "update").unwrap();
    assert_eq!(
        (&update["system"], &update["key"]),
        (
            &serde_json::json!("mailchimp"),
            &serde_json::json!("ada@example.com")
        )
    );
    assert_eq!(
        update["fields"]["merge_fields.FNAME"],
        serde_json::json!({ "old": "Ada", "new": "Augusta" })
    );
    let create = writes_planned.iter().find(|w| w["op"] == "create").unwrap();
    assert_eq!(
        (&create["system"], &create["key"]),
        (
            &serde_json::json!("hubspot"),
            &serde_json::json!("alan@example.com")
        )
    );
    assert_eq!(plan["conflicts"][0]["key"], "grace@example.com");
    assert_eq!(plan["conflicts"][0]["field"], "company");

    // Nothing was written: not the store, not either system.
    assert!(
        files(world.dir.path()) == before,
        "the state store is untouched"
    );
    assert_eq!(
        (world.hubspot.stats().writes, world.mailchimp.stats().writes),
        writes
    );
    let human = tandem(&["plan", "--config", config.to_str().unwrap()], &[]).await;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(
            r#"update    mailchimp ada@example.com: merge_fields.FNAME "Ada" -> "Augusta""#
        ),
        "{text}"
    );
    assert!(
        text.contains("total     2 write(s), 1 new link(s), 1 conflict(s)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_loop_window_longer_than_a_day_is_an_error() {
    let world = World::new(vec![], vec![]).await;
    let path = config_with(&world, |text| {
        text.replace("[engine]", "[engine]\nloop_window_mins = 2000")
    });
    let line = line_of(&path, "loop_window_mins");
    let output = sync_once(&path).await;
    assert_bad_input(
        &output,
        &format!("tandem.toml:{line}:20: engine.loop_window_mins: must be 1 to 1440 (a day)"),
        &world.config.store_path,
    );
}

#[tokio::test]
async fn a_backup_is_a_consistent_copy_and_never_overwrites() {
    let world = World::new(
        vec![contact("ada@example.com", &[("firstname", "Ada")])],
        vec![member("grace@example.com", &[("FNAME", "Grace")])],
    )
    .await;
    let config = world.dir.path().join("tandem.toml");
    let config = config.to_str().unwrap();
    let synced = tandem(&["sync", "--once", "--yes", "--config", config], &[]).await;
    assert_eq!(synced.status.code(), Some(0), "{}", stderr(&synced));

    let copy = world.dir.path().join("backup.sqlite");
    let output = tandem(&["backup", "--config", config, copy.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let original = tandem::store::Store::open(&world.config.store_path).unwrap();
    let backup = tandem::store::Store::open(&copy).unwrap();
    let pair = "hubspot-mailchimp";
    assert_eq!(backup.counts(pair).unwrap().links, 2);
    assert_eq!(backup.counts(pair).unwrap(), original.counts(pair).unwrap());
    assert_eq!(
        backup.audit_log(1000).unwrap(),
        original.audit_log(1000).unwrap()
    );

    let again = tandem(&["backup", "--config", config, copy.to_str().unwrap()], &[]).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
}
