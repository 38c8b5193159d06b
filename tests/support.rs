//! The test world: both simulators on loopback, a working directory with a
//! config and the shipped policy, and an engine on a hand-driven clock.

use std::time::Duration;

use serde_json::{Value, json};
use tandem::config::Config;
use tandem::demo::{WebhookSetup, Workspace, write_workspace};
use tandem::engine::{Clock, Engine, PairReport};
use tandem_hubspot::sim::{
    HubSpotSim, Seed as HubSpotSeed, SeedContact, SimConfig as HubSpotSimConfig,
};
use tandem_mailchimp::sim::{
    MailchimpSim, MergeFieldDef, Seed as MailchimpSeed, SeedMember, SimConfig as MailchimpSimConfig,
};
use tokio_util::sync::CancellationToken;

pub struct World {
    pub hubspot: HubSpotSim,
    pub mailchimp: MailchimpSim,
    pub hubspot_url: String,
    pub mailchimp_url: String,
    pub config: Config,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
}

/// A HubSpot contact for a seed, changed on 2026-03-01.
pub fn contact(email: &str, properties: &[(&str, &str)]) -> SeedContact {
    contact_at(email, properties, Some("2026-03-01T10:00:00.000Z"))
}

/// A HubSpot contact for a seed, changed at `updated_at` (now, if `None`).
pub fn contact_at(
    email: &str,
    properties: &[(&str, &str)],
    updated_at: Option<&str>,
) -> SeedContact {
    let mut all: std::collections::BTreeMap<String, String> = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.insert("email".into(), email.into());
    SeedContact {
        properties: all,
        updated_at: updated_at.map(String::from),
        created_at: None,
    }
}

/// A Mailchimp member for a seed.
/// Send SIGTERM to a child `tandem` and wait (30 s at most) for it to exit.
pub async fn stop_with_sigterm(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops promptly")
        .unwrap()
}

/// A free loopback address for a listener.
pub fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `n` people, p0@example.com and on, in both systems with first name F and last name L.
pub fn people(n: usize) -> (Vec<SeedContact>, Vec<SeedMember>) {
    let emails: Vec<String> = (0..n).map(|i| format!("p{i}@example.com")).collect();
    (
        emails
            .iter()
            .map(|e| contact(e, &[("firstname", "F"), ("lastname", "L")]))
            .collect(),
        emails
            .iter()
            .map(|e| member(e, &[("FNAME", "F"), ("LNAME", "L")]))
            .collect(),
    )
}

pub fn member(email: &str, merge_fields: &[(&str, &str)]) -> SeedMember {
    SeedMember {
        email_address: email.into(),
        status: Some("subscribed".into()),
        merge_fields: merge_fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
        last_changed: Some("2026-03-01T09:00:00+00:00".into()),
    }
}

impl World {
    /// Simulators seeded with these records, the shipped policy, overlap windows of zero.
    pub async fn new(contacts: Vec<SeedContact>, members: Vec<SeedMember>) -> World {
        // A field on each side for marks: HubSpot's record of the member's standing,
        // Mailchimp's record of the contact's.
        let hubspot = HubSpotSim::new(HubSpotSimConfig::default());
        let status = tandem_hubspot::sim::PropertyDef {
            name: "mailchimp_status".into(),
            kind: "string".into(),
            options: vec![],
            read_only: false,
        };
        hubspot
            .seed(HubSpotSeed {
                properties: vec![status],
                contacts,
            })
            .unwrap();
        let mailchimp = MailchimpSim::new(MailchimpSimConfig::default());
        let field = |tag: &str| MergeFieldDef {
            tag: tag.into(),
            name: tag.into(),
            kind: "text".into(),
            required: false,
        };
        let merge_fields = vec![field("COMPANY"), field("CRMSTATUS")];
        mailchimp
            .seed(MailchimpSeed {
                merge_fields,
                members,
            })
            .unwrap();
        let hubspot_url = hubspot.clone().spawn().await.unwrap();
        let mailchimp_url = mailchimp.clone().spawn().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace {
            hubspot_url: hubspot_url.clone(),
            hubspot_token: HubSpotSimConfig::default().token,
            mailchimp_url: mailchimp_url.clone(),
            mailchimp_key: MailchimpSimConfig::default().api_key,
            list_id: MailchimpSimConfig::default().list_id,
            poll_interval_secs: 1,
            overlap_secs: 0,
            hubspot_limits: ("off".into(), "off".into()),
            webhooks: None,
        };
        let mut config = Config::load(&write_workspace(dir.path(), &workspace).unwrap()).unwrap();
        // The circuit breaker pauses for real seconds while tests move a manual clock
        // by hours: it is off here, and on in the tests of it (`tests/faults.rs`).
        for settings in config.connectors.values_mut() {
            settings.common_mut().breaker_failure_percent = Some(101);
        }
        World {
            hubspot,
            mailchimp,
            hubspot_url,
            mailchimp_url,
            config,
            clock: Clock::manual(1_800_000_000_000),
            dir,
        }
    }

    pub async fn engine(&self) -> Engine {
        Engine::start(&self.config, self.clock.clone())
            .await
            .unwrap()
    }

    /// One pass; the report of the one pair.
    pub async fn pass(&self, engine: &Engine) -> PairReport {
        let mut report = engine.pass(&CancellationToken::new()).await.unwrap();
        assert_eq!(report.pairs.len(), 1);
        report.pairs.remove(0)
    }

    /// Passes an hour apart (so every retry is due) until one writes nothing and
    /// leaves nothing queued, at most ten; whether it got there.
    pub async fn catch_up(&self, engine: &Engine) -> bool {
        for _ in 0..10 {
            self.clock.advance(Duration::from_secs(3600));
            let report = self.pass(engine).await;
            if report.writes() == 0 && report.pending == 0 {
                return true;
            }
        }
        false
    }

    /// Let time pass for both simulators, so the next edits are later than the last.
    pub fn later(&self) {
        self.hubspot.advance_clock(Duration::from_secs(2));
        self.mailchimp.advance_clock(Duration::from_secs(2));
    }

    /// A HubSpot contact's property, `None` if unset or no such contact.
    pub fn hubspot_value(&self, email: &str, property: &str) -> Option<String> {
        self.hubspot
            .contact_by_email(email)?
            .properties
            .get(property)
            .cloned()
            .flatten()
    }

    /// A Mailchimp member's merge field, `None` if empty or no such member.
    pub fn mailchimp_value(&self, email: &str, tag: &str) -> Option<String> {
        let value = self
            .mailchimp
            .member(email)?
            .merge_fields
            .get(tag)
            .cloned()?;
        value.as_str().filter(|s| !s.is_empty()).map(String::from)
    }

    /// Create a HubSpot contact through the public API, as another app would.
    pub async fn create_in_hubspot(&self, properties: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/crm/v3/objects/contacts", self.hubspot_url))
            .bearer_auth(HubSpotSimConfig::default().token)
            .json(&json!({ "properties": properties }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Add a Mailchimp member through the public API, as a signup form would.
    pub async fn create_in_mailchimp(&self, email: &str, merge_fields: Value) -> Value {
        let hash = tandem_mailchimp::subscriber_hash(email);
        let response = reqwest::Client::new()
            .put(format!("{}/lists/{}/members/{hash}", self.mailchimp_url, MailchimpSimConfig::default().list_id))
            .basic_auth("form", Some(MailchimpSimConfig::default().api_key))
            .json(&json!({ "email_address": email, "status_if_new": "subscribed", "merge_fields": merge_fields }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Change a Mailchimp member's email address through the public API, as the member would.
    pub async fn rename_in_mailchimp(&self, old: &str, new: &str) {
        let hash = tandem_mailchimp::subscriber_hash(old);
        let response = reqwest::Client::new()
            .patch(format!(
                "{}/lists/{}/members/{hash}",
                self.mailchimp_url,
                MailchimpSimConfig::default().list_id
            ))
            .basic_auth("form", Some(MailchimpSimConfig::default().api_key))
            .json(&json!({ "email_address": new }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// The workspace of these simulators, with this listener.
    fn workspace(&self, poll_interval_secs: u64, listener: WebhookSetup) -> Workspace {
        Workspace {
            hubspot_url: self.hubspot_url.clone(),
            hubspot_token: HubSpotSimConfig::default().token,
            mailchimp_url: self.mailchimp_url.clone(),
            mailchimp_key: MailchimpSimConfig::default().api_key,
            list_id: MailchimpSimConfig::default().list_id,
            poll_interval_secs,
            overlap_secs: 0,
            hubspot_limits: ("off".into(), "off".into()),
            webhooks: Some(listener),
        }
    }

    /// Write a config whose listener is at `listen` (for a `tandem run` child
    /// process), polling every `poll_interval_secs`; returns its path.
    pub fn config_listening_at(
        &mut self,
        listen: std::net::SocketAddr,
        poll_interval_secs: u64,
    ) -> std::path::PathBuf {
        let workspace = self.workspace(poll_interval_secs, WebhookSetup::on(listen));
        let path = write_workspace(self.dir.path(), &workspace).unwrap();
        self.config = Config::load(&path).unwrap();
        path
    }

    /// As `config_listening_at`, and both simulators send their webhooks to
    /// that listener (returned: keep them, or the senders stop).
    pub fn config_with_webhooks_at(
        &mut self,
        listen: std::net::SocketAddr,
        poll_interval_secs: u64,
    ) -> (
        std::path::PathBuf,
        (tandem_core::sim::Webhooks, tandem_core::sim::Webhooks),
    ) {
        let setup = WebhookSetup::on(listen);
        let senders = setup.connect(&self.hubspot, &self.mailchimp);
        let workspace = self.workspace(poll_interval_secs, setup);
        let path = write_workspace(self.dir.path(), &workspace).unwrap();
        self.config = Config::load(&path).unwrap();
        (path, senders)
    }

    /// Turn on webhooks: the engine listens on a loopback port with the vendors'
    /// secrets, and both simulators send to it. Polling then runs only at start.
    /// Returns the engine (its run loop started on `shutdown`), the listener and both senders.
    pub async fn with_webhooks(
        &mut self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Webhooked {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let setup = WebhookSetup::on(listener.local_addr().unwrap());
        let workspace = self.workspace(3600, setup);
        self.config = Config::load(&write_workspace(self.dir.path(), &workspace).unwrap()).unwrap();
        let setup = workspace.webhooks.expect("set above");
        let engine = std::sync::Arc::new(self.engine().await);
        let intake = tandem::http::Intake::new(&self.config, engine.clone()).unwrap();
        tokio::spawn(intake.serve(listener, shutdown.clone()));
        let runner = engine.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { runner.run(stop, |_| {}).await.unwrap() });
        let (hubspot, mailchimp) = setup.connect(&self.hubspot, &self.mailchimp);
        Webhooked {
            engine,
            base: setup.base_url(),
            hubspot_secret: setup.hubspot_secret,
            hubspot,
            mailchimp,
        }
    }

    /// Serve the API for people on a loopback port: one person of each role
    /// (named after it), no run loop (the test runs passes). Returns the engine
    /// and the people with their passwords.
    pub async fn with_people(&mut self, shutdown: &tokio_util::sync::CancellationToken) -> People {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let setup = WebhookSetup::on(listener.local_addr().unwrap()).with_people();
        let base = setup.base_url();
        let passwords = setup
            .people
            .iter()
            .map(|(name, _, password)| (name.clone(), password.clone()))
            .collect();
        let workspace = self.workspace(3600, setup);
        self.config = Config::load(&write_workspace(self.dir.path(), &workspace).unwrap()).unwrap();
        let engine = std::sync::Arc::new(self.engine().await);
        let intake = tandem::http::Intake::new(&self.config, engine.clone()).unwrap();
        assert!(intake.serves_people());
        tokio::spawn(intake.serve(listener, shutdown.clone()));
        People {
            engine,
            base,
            passwords,
        }
    }

    /// Replace the `[on.*]` tables at the end of the pair's policy file with `text`
    /// (and anything else it adds), and reload the config.
    pub fn extend_policy(&mut self, text: &str) {
        let path = self.dir.path().join("policies/hubspot-mailchimp.toml");
        let shipped = std::fs::read_to_string(&path).unwrap();
        let kept = shipped
            .find("\n[on.")
            .map_or(shipped.as_str(), |at| &shipped[..at]);
        std::fs::write(&path, format!("{kept}\n{text}")).unwrap();
        self.config = Config::load(&self.dir.path().join("tandem.toml")).unwrap();
    }
}

/// A world whose engine runs and takes webhooks.
pub struct Webhooked {
    pub engine: std::sync::Arc<tandem::engine::Engine>,
    pub base: String,
    pub hubspot_secret: String,
    pub hubspot: tandem_core::sim::Webhooks,
    pub mailchimp: tandem_core::sim::Webhooks,
}

/// A world whose API for people is served.
pub struct People {
    pub engine: std::sync::Arc<tandem::engine::Engine>,
    pub base: String,
    /// Password by user name; each user is named after their role.
    pub passwords: std::collections::BTreeMap<String, String>,
}

/// Ada and Grace linked and served to people (see [`World::with_people`]); both
/// sides then changed Ada's company, from Analytical to Babbage & Co in HubSpot
/// and to Analytical Engines in Mailchimp: one open conflict.
pub async fn served_with_a_conflict() -> (World, People, tokio_util::sync::CancellationToken) {
    let mut world = World::new(
        vec![
            contact(
                "ada@example.com",
                &[("firstname", "Ada"), ("company", "Analytical")],
            ),
            contact(
                "grace@example.com",
                &[("firstname", "Grace"), ("company", "Navy")],
            ),
        ],
        vec![
            member(
                "ada@example.com",
                &[("FNAME", "Ada"), ("COMPANY", "Analytical")],
            ),
            member(
                "grace@example.com",
                &[("FNAME", "Grace"), ("COMPANY", "Navy")],
            ),
        ],
    )
    .await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let people = world.with_people(&shutdown).await;
    world.pass(&people.engine).await;
    world.later();
    world
        .hubspot
        .edit("ada@example.com", &[("company", "Babbage & Co")]);
    world
        .mailchimp
        .edit("ada@example.com", &[("COMPANY", "Analytical Engines")]);
    let report = world.pass(&people.engine).await;
    assert_eq!(report.conflicts_opened, 1, "{report:?}");
    (world, people, shutdown)
}

/// Wait (up to ten seconds) until `done` holds.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
