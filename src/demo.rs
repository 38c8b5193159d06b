//! `tandem demo`: the main job on the embedded default. Both simulators run on
//! loopback, seeded from `fixtures/`; a working directory gets a config, the
//! shipped policy and a SQLite file; one pass syncs the two and the report says
//! what happened. Without `--once` the demo keeps editing a few contacts on both
//! sides and syncing, so changes can be watched flowing both ways.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tandem_hubspot::sim::{HubSpotSim, SimConfig as HubSpotSimConfig};
use tandem_mailchimp::sim::{MailchimpSim, SimConfig as MailchimpSimConfig};
use tokio_util::sync::CancellationToken;

use crate::cli::{DemoArgs, render_report, shutdown_on_ctrl_c};
use crate::config::Config;
use crate::engine::{Clock, Engine, PassReport};
use crate::fixtures::{DEMO_HUBSPOT, DEMO_MAILCHIMP};

/// The shipped policy, as the demo writes it into its directory.
pub const SHIPPED_POLICY: &str = include_str!("../policies/hubspot-mailchimp.toml");

/// Where the simulators listen and how the engine should treat them.
pub struct Workspace {
    /// HubSpot API root.
    pub hubspot_url: String,
    /// HubSpot token.
    pub hubspot_token: String,
    /// Mailchimp API root (`…/3.0`).
    pub mailchimp_url: String,
    /// Mailchimp API key.
    pub mailchimp_key: String,
    /// Mailchimp audience.
    pub list_id: String,
    /// Seconds between passes of `run`.
    pub poll_interval_secs: u64,
    /// Seconds each incremental poll reaches back behind its watermark.
    pub overlap_secs: u64,
    /// HubSpot's request budget and search budget, as config writes them (`"off"`, `"100/10s"`).
    pub hubspot_limits: (String, String),
    /// Where to take webhooks, with the vendors' secrets, if at all.
    pub webhooks: Option<WebhookSetup>,
}

/// The HTTP listener of a workspace: the secrets the simulators sign their
/// webhooks with, and the people who may sign in to the API.
pub struct WebhookSetup {
    /// The listener's address; its URL is also the public one.
    pub listen: std::net::SocketAddr,
    /// The HubSpot app's client secret.
    pub hubspot_secret: String,
    /// The secret in Mailchimp's webhook URL.
    pub mailchimp_secret: String,
    /// People who may sign in: name, role and password.
    pub people: Vec<(String, String, String)>,
}

impl WebhookSetup {
    /// Secrets made up for a run on loopback.
    pub fn on(listen: std::net::SocketAddr) -> Self {
        let secret = |what: &str| format!("{what}-{:016x}", fastrand::u64(..));
        WebhookSetup {
            listen,
            hubspot_secret: secret("hubspot"),
            mailchimp_secret: secret("mailchimp"),
            people: Vec::new(),
        }
    }

    /// One person of each role, with throwaway passwords.
    pub fn with_people(self) -> Self {
        let people = crate::config::ROLES
            .iter()
            .map(|role| {
                let password = format!("{role}-{:012x}", fastrand::u64(..1 << 48));
                (role.to_string(), role.to_string(), password)
            })
            .collect();
        WebhookSetup { people, ..self }
    }

    /// The listener's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Make both simulators send their webhooks here, signed with these secrets.
    pub fn connect(
        &self,
        hubspot: &HubSpotSim,
        mailchimp: &MailchimpSim,
    ) -> (tandem_core::sim::Webhooks, tandem_core::sim::Webhooks) {
        let base = self.base_url();
        (
            hubspot.send_webhooks(&format!("{base}/webhooks/hubspot"), &self.hubspot_secret),
            mailchimp.send_webhooks(
                &format!("{base}/webhooks/mailchimp?secret={}", self.mailchimp_secret),
                None,
                false,
            ),
        )
    }
}

/// Write `tandem.toml`, the policy and the credential files into `dir`, and
/// remove any state store a previous run left there. Returns the config path.
pub fn write_workspace(dir: &Path, workspace: &Workspace) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("policies"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for name in ["tandem.sqlite", "tandem.sqlite-wal", "tandem.sqlite-shm"] {
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).context("cannot remove the previous demo's state");
            }
            _ => {}
        }
    }
    std::fs::write(dir.join("policies/hubspot-mailchimp.toml"), SHIPPED_POLICY)?;
    std::fs::write(dir.join("hubspot.token"), &workspace.hubspot_token)?;
    std::fs::write(dir.join("mailchimp.key"), &workspace.mailchimp_key)?;
    let (hubspot_hooks, mailchimp_hooks, http) = match &workspace.webhooks {
        None => (String::new(), String::new(), String::new()),
        Some(setup) => {
            std::fs::write(dir.join("hubspot.secret"), &setup.hubspot_secret)?;
            std::fs::write(dir.join("mailchimp.secret"), &setup.mailchimp_secret)?;
            (
                "client_secret_file = \"hubspot.secret\"\n".to_string(),
                "webhook_secret_file = \"mailchimp.secret\"\n".to_string(),
                format!(
                    "\n[http]\nlisten = \"{}\"\npublic_url = \"{}\"\n{}",
                    setup.listen,
                    setup.base_url(),
                    setup
                        .people
                        .iter()
                        .map(|(name, role, password)| format!(
                            "\n[[http.users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{}\"\n",
                            crate::http::auth::hash_password_cheaply(password)
                        ))
                        .collect::<String>()
                ),
            )
        }
    };
    let config = format!(
        r#"# Written by `tandem demo`: both connectors point at simulators on loopback.
# For real accounts, change base_url (or remove it), the credentials and list_id.

[store]
path = "tandem.sqlite"

[engine]
poll_interval_secs = {poll}

[connectors.hubspot]
base_url = "{hubspot_url}"
token_file = "hubspot.token"
overlap_secs = {overlap}
rate_limit = "{rate}"
search_rate_limit = "{search_rate}"
{hubspot_hooks}
[connectors.mailchimp]
base_url = "{mailchimp_url}"
api_key_file = "mailchimp.key"
list_id = "{list_id}"
overlap_secs = {overlap}
{mailchimp_hooks}
[[pairs]]
policy = "policies/hubspot-mailchimp.toml"
{http}"#,
        poll = workspace.poll_interval_secs,
        overlap = workspace.overlap_secs,
        rate = workspace.hubspot_limits.0,
        search_rate = workspace.hubspot_limits.1,
        hubspot_url = workspace.hubspot_url,
        mailchimp_url = workspace.mailchimp_url,
        list_id = workspace.list_id,
    );
    let path = dir.join("tandem.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Run the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let hubspot_config = HubSpotSimConfig::default();
    let mailchimp_config = MailchimpSimConfig::default();
    let hubspot = HubSpotSim::new(hubspot_config.clone());
    hubspot
        .seed(serde_json::from_str(DEMO_HUBSPOT).context("fixtures/demo-hubspot.json")?)
        .map_err(anyhow::Error::msg)?;
    let mailchimp = MailchimpSim::new(mailchimp_config.clone());
    mailchimp
        .seed(serde_json::from_str(DEMO_MAILCHIMP).context("fixtures/demo-mailchimp.json")?)
        .map_err(anyhow::Error::msg)?;
    let (hubspot_count, mailchimp_count) = (hubspot.contacts().len(), mailchimp.members().len());
    // Kept running, the demo takes webhooks too: changes cross at once, polls catch the rest.
    let listener = match args.once {
        true => None,
        false => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?),
    };
    let webhooks = listener
        .as_ref()
        .map(|l| l.local_addr().map(|a| WebhookSetup::on(a).with_people()))
        .transpose()?;
    let workspace = Workspace {
        hubspot_url: hubspot.clone().spawn().await?,
        hubspot_token: hubspot_config.token,
        mailchimp_url: mailchimp.clone().spawn().await?,
        mailchimp_key: mailchimp_config.api_key,
        list_id: mailchimp_config.list_id,
        poll_interval_secs: args.interval.max(1),
        overlap_secs: 5,
        hubspot_limits: ("off".into(), "off".into()),
        webhooks,
    };
    let config_path = write_workspace(&args.dir, &workspace)?;
    let config = Config::load(&config_path)?;
    if !args.json {
        println!(
            "HubSpot simulator:   {} ({hubspot_count} contacts)",
            workspace.hubspot_url
        );
        println!(
            "Mailchimp simulator: {} ({mailchimp_count} members)",
            workspace.mailchimp_url
        );
        println!("Working directory:   {}\n", args.dir.display());
    }
    let engine = std::sync::Arc::new(Engine::start(&config, Clock::System).await?);
    let report = engine.pass(&CancellationToken::new()).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        );
    } else {
        print!("{}", render_report(&report));
        let config_arg = config_path.display();
        println!("\nWhere to look next:");
        println!("  tandem conflicts list --config {config_arg}   the fields a person must settle");
        println!(
            "  sqlite3 {} 'SELECT * FROM audit'   every write, link and conflict, and why",
            config.store_path.display()
        );
        if args.once {
            println!(
                "  tandem demo   (without --once) keeps editing both sides and shows the changes flowing"
            );
        }
    }
    if args.once {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        println!(
            "\nEditing a few contacts on both sides every {} s; the engine syncs them. Ctrl-C stops.",
            args.interval
        );
    }
    let shutdown = shutdown_on_ctrl_c();
    if let (Some(listener), Some(setup)) = (listener, &workspace.webhooks) {
        let intake = crate::http::Intake::new(&config, engine.clone())
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        tokio::spawn(intake.serve(listener, shutdown.clone()));
        setup.connect(&hubspot, &mailchimp);
        if !args.json {
            println!(
                "Webhooks arrive at {}/webhooks/<connector>; a full poll runs every {} s as well.",
                setup.base_url(),
                args.interval
            );
            println!(
                "Conflicts, dead letters, audit log, health and policies: open {0}/ in a browser.\nThe same as JSON under {0}/api (described at {0}/api/openapi.json). Sign in as:",
                setup.base_url()
            );
            for (name, role, password) in &setup.people {
                println!("  {role:<8} name {name:<8} password {password}");
            }
        }
    }
    let editor = tokio::spawn(edit_forever(
        hubspot,
        mailchimp,
        Duration::from_secs(args.interval.max(1)),
        shutdown.clone(),
    ));
    engine.run(shutdown, print_changes).await?;
    editor.abort();
    Ok(ExitCode::SUCCESS)
}

fn print_changes(report: &PassReport) {
    for pair in &report.pairs {
        if pair.writes() == 0 && pair.conflicts_opened == 0 && pair.conflicts_closed == 0 {
            continue;
        }
        let [left, right] = &pair.connectors;
        let clock = tandem_core::clock::format_seconds_offset(tandem_core::clock::now_millis());
        println!(
            "{}  {left} -> {right}: {} updated, {} created | {right} -> {left}: {} updated, {} created | conflicts: {} opened, {} open",
            &clock[11..19],
            pair.updated[1],
            pair.created[1],
            pair.updated[0],
            pair.created[0],
            pair.conflicts_opened,
            pair.open_conflicts
        );
    }
}

/// Play the people who use both systems: sales edits contacts in HubSpot,
/// subscribers update their profile in Mailchimp, and now and then both edit
/// the same company name, which the policy leaves to a person.
async fn edit_forever(
    hubspot: HubSpotSim,
    mailchimp: MailchimpSim,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut rng = fastrand::Rng::with_seed(7);
    let first = [
        "Ada", "Grace", "Alan", "Radia", "Linus", "Barbara", "Edsger", "Frances",
    ];
    let companies = [
        "Northwind Traders",
        "Contoso",
        "Fabrikam",
        "Litware",
        "Proseware",
    ];
    let mut tick = 0u64;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        tick += 1;
        let contacts = hubspot.contacts();
        let members = mailchimp.members();
        if contacts.is_empty() || members.is_empty() {
            continue;
        }
        for _ in 0..2 {
            let contact = &contacts[rng.usize(0..contacts.len())];
            if let Some(Some(email)) = contact.properties.get("email") {
                let phone = format!("+1 555 {:03} {:04}", rng.u32(100..999), rng.u32(0..9999));
                hubspot.edit(
                    email,
                    &[
                        ("firstname", first[rng.usize(0..first.len())]),
                        ("phone", &phone),
                    ],
                );
            }
            let member = &members[rng.usize(0..members.len())];
            mailchimp.edit(
                &member.email_address,
                &[("LNAME", &format!("{}-{}", "Lindqvist", rng.u32(1..99)))],
            );
        }
        if tick.is_multiple_of(4) {
            let member = &members[rng.usize(0..members.len())];
            let email = member.email_address.clone();
            hubspot.edit(
                &email,
                &[("company", companies[rng.usize(0..companies.len())])],
            );
            mailchimp.edit(
                &email,
                &[(
                    "COMPANY",
                    &format!("{} Ltd", companies[rng.usize(0..companies.len())]),
                )],
            );
        }
    }
}
