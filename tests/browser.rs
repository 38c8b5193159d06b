//! The web page in real headless Chromium, driven through ChromeDriver: support
//! staff sign in, work the conflict queue by keyboard and resolve a conflict
//! until both simulators hold the value; an admin saves a broken policy (the
//! problem shows inline and nothing is saved), fixes it, previews and saves it.
//!
//! They need Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them); `CHROMIUM` and `CHROMEDRIVER` name other binaries.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{People, served_with_a_conflict};

const ADA: &str = "ada@example.com";

/// A ChromeDriver with one headless Chromium session; both end on drop.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn binary(variable: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var_os(variable).unwrap_or_else(|| default.into()));
    assert!(
        path.exists(),
        "{} is missing: browser tests need Debian's chromium and chromium-driver \
         (apt-get install -y chromium chromium-driver; .ci/run installs them), \
         or {variable} naming the binary",
        path.display()
    );
    path
}

impl Browser {
    async fn start() -> Browser {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let started = Instant::now();
        let client = loop {
            let attempt = ClientBuilder::rustls()
                .unwrap()
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no Chromium session through chromedriver: {e}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    async fn text(&self, css: &str) -> String {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element.text().await.unwrap(),
            Err(e) => panic!("no `{css}` on {}: {e}", self.path().await),
        }
    }

    async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Type keys on the page, outside any field.
    async fn keys(&self, keys: &str) {
        let mut actions = KeyActions::new("keyboard".into());
        for key in keys.chars() {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client.perform_actions(actions).await.unwrap();
    }

    /// Wait until the page's path (and query) starts with `prefix`.
    async fn arrives(&self, prefix: &str) {
        let started = Instant::now();
        loop {
            let path = self.path().await;
            if path.starts_with(prefix) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still at {path}, waiting for {prefix}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn sign_in(&self, people: &People, name: &str, at: &str) {
        self.goto(&format!("{}{at}", people.base)).await;
        self.arrives("/sign-in?next=").await;
        self.fill("#name", name).await;
        self.fill("#password", &people.passwords[name]).await;
        self.click("#sign-in").await;
        self.arrives(at).await;
        assert!(self.text("#who").await.starts_with(name));
    }

    /// Save what the page shows, if `TANDEM_SCREENSHOTS` names a folder.
    async fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("TANDEM_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Set a text area's content at once (typing a whole policy key by key is slow).
    async fn set_value(&self, id: &str, text: &str) {
        self.client
            .execute(
                "document.getElementById(arguments[0]).value = arguments[1];",
                vec![json!(id), json!(text)],
            )
            .await
            .unwrap();
    }

    /// End the session, which closes Chromium; the driver ends on drop.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_resolves_a_conflict_by_keyboard_and_both_systems_then_hold_the_value() {
    let (world, people, shutdown) = served_with_a_conflict().await;
    let browser = Browser::start().await;
    browser.sign_in(&people, "support", "/conflicts").await;
    browser.screenshot("queue").await;

    // The queue shows both values, each with what the other lacks marked.
    let row = "tr.row";
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css(row))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(browser.text(row).await.contains(ADA));
    assert_eq!(browser.text("tr.row td.left mark").await, "Babbage & Co");
    assert_eq!(
        browser.text("tr.row td.right mark").await,
        "Analytical Engines"
    );

    // j picks the first row, Enter opens it, r takes Mailchimp's value.
    browser.keys("j\u{e007}").await;
    browser.arrives("/conflicts/").await;
    assert_eq!(browser.text("#status").await, "open");
    assert_eq!(browser.text("#left").await, "Babbage & Co");
    assert_eq!(browser.text("#right").await, "Analytical Engines");
    browser.screenshot("conflict").await;
    let conflict_path = browser.path().await;
    browser.keys("r").await;
    browser.arrives("/conflicts?done=resolved-").await;
    assert!(
        browser
            .text("#notice")
            .await
            .contains("the engine writes it to both sides")
    );
    assert_eq!(browser.text("#count").await, "No conflict matches.");

    // The engine writes the choice to both systems through the outbox.
    world.pass(&people.engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Analytical Engines")
    );
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Analytical Engines")
    );
    world.pass(&people.engine).await;
    browser
        .goto(&format!("{}{conflict_path}", people.base))
        .await;
    let resolution = browser.text("#resolution").await;
    assert!(
        resolution.contains("by support") && resolution.contains("applied"),
        "{resolution}"
    );
    assert!(!browser.has("#take-left").await);

    // The audit log names who did it.
    browser
        .goto(&format!("{}/audit?action=conflict_resolved", people.base))
        .await;
    assert!(browser.text("table.audit tbody").await.contains("support"));
    browser.close().await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_saves_a_policy_only_once_it_compiles_after_previewing_it() {
    let (world, people, shutdown) = served_with_a_conflict().await;
    let file = people.engine.policies()[0].file.clone();
    let shipped = std::fs::read_to_string(&file).unwrap();
    let browser = Browser::start().await;
    browser
        .sign_in(&people, "admin", "/policies/hubspot-mailchimp")
        .await;

    // Mailchimp becomes the source of truth for company, but the policy's own
    // example still expects a person to decide: refused, shown where, not saved.
    let company = "rule = \"manual\"";
    assert!(shipped.contains(company));
    let sot = "rule = \"source_of_truth\"\nsource = \"mailchimp\"";
    let broken = shipped.replacen(company, sot, 1);
    browser.set_value("source", &broken).await;
    browser.click("#save").await;
    let problems = browser.text("#problems").await;
    assert!(problems.contains("nothing was saved"), "{problems}");
    let example_line = broken
        .lines()
        .position(|l| l.contains("Company changed on both sides"))
        .unwrap(); // 0-based index of the `about` line: its table starts a line earlier
    assert!(
        problems.contains(&format!("hubspot-mailchimp.toml:{example_line}:")),
        "{problems}"
    );
    assert!(problems.contains("expected a conflict"), "{problems}");
    assert!(
        browser
            .text(&format!("#line-{example_line}"))
            .await
            .contains("expected a conflict")
    );
    browser.screenshot("policy-refused").await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), shipped);

    // Fixed: the example now expects Mailchimp's value. Preview, then save.
    let fixed = broken.replacen(
        "mailchimp = \"Litware\"\nconflict = true",
        "mailchimp = \"Litware\"\nexpect = \"Litware\"",
        1,
    );
    assert_ne!(fixed, broken);
    // The page kept the text as submitted; replace it with the fix.
    browser.set_value("source", &fixed).await;
    browser.click("#preview").await;
    assert!(browser.text("#validated").await.contains("It compiles"));
    let preview = browser.text("#preview-result").await;
    let settles = preview
        .lines()
        .find(|l| l.starts_with("open conflicts it settles"))
        .unwrap_or_else(|| panic!("{preview}"));
    assert!(settles.trim_end().ends_with('1'), "{settles}");
    assert!(preview.contains(ADA), "{preview}");
    browser.screenshot("policy-preview").await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), shipped);

    browser.click("#save").await;
    browser
        .arrives("/policies/hubspot-mailchimp?done=saved")
        .await;
    assert!(browser.text("#notice").await.contains("Policy saved"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), fixed);

    // Activated on the next pass: Mailchimp's company settles the conflict.
    world.pass(&people.engine).await;
    world.pass(&people.engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Analytical Engines")
    );
    browser.goto(&format!("{}/conflicts", people.base)).await;
    assert_eq!(browser.text("#count").await, "No conflict matches.");
    browser
        .goto(&format!("{}/audit?action=policy_saved", people.base))
        .await;
    assert!(browser.text("table.audit tbody").await.contains("admin"));
    browser.close().await;
    shutdown.cancel();
}
