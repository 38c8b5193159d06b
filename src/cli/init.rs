//! `tandem init`: a commented `tandem.toml` for real accounts and the shipped
//! policy, from flags (asking for what is missing when someone is at a
//! terminal); and `tandem completions`, the shell completion scripts.

use std::io::{BufRead, IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};

use super::{Cli, Failure, bad_input};
use crate::config::Config;
use crate::demo::SHIPPED_POLICY;

/// Arguments of `tandem init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write tandem.toml and policies/ into.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The Mailchimp audience id (Audience > Settings > Audience name and defaults).
    #[arg(long)]
    list_id: Option<String>,
    /// Environment variable holding the HubSpot private app token.
    #[arg(long, default_value = "HUBSPOT_TOKEN")]
    hubspot_token_env: String,
    /// Environment variable holding the Mailchimp API key.
    #[arg(long, default_value = "MAILCHIMP_API_KEY")]
    mailchimp_api_key_env: String,
    /// HubSpot's API root, if not the real one (a simulator, a proxy).
    #[arg(long)]
    hubspot_url: Option<String>,
    /// Mailchimp's API root, if not the one the key's datacenter names.
    #[arg(long)]
    mailchimp_url: Option<String>,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
}

/// A shell to complete in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// Print the completion script for `shell`.
pub fn completions(shell: Shell) -> Result<ExitCode, Failure> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tandem", &mut script);
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(anyhow::Error::from(e)
                .context("cannot write the script")
                .into());
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Write the config and the policy.
pub fn init(args: InitArgs) -> Result<ExitCode, Failure> {
    let config_path = args.dir.join("tandem.toml");
    let policy_path = args.dir.join("policies").join("hubspot-mailchimp.toml");
    // Checked before asking anything, so nobody types an answer for nothing.
    if !args.force {
        for path in [&config_path, &policy_path] {
            if path.exists() {
                return Err(exists_already(path));
            }
        }
    }
    for (flag, name) in [
        ("--hubspot-token-env", &args.hubspot_token_env),
        ("--mailchimp-api-key-env", &args.mailchimp_api_key_env),
    ] {
        if !is_env_name(name) {
            return Err(bad_input(anyhow::anyhow!(
                "{flag} {name:?}: an environment variable name is letters, digits and underscores, such as HUBSPOT_TOKEN"
            )));
        }
    }
    for (flag, url) in [
        ("--hubspot-url", &args.hubspot_url),
        ("--mailchimp-url", &args.mailchimp_url),
    ] {
        if let Some(url) = url
            && !is_http_url(url)
        {
            return Err(bad_input(anyhow::anyhow!(
                "{flag} {url:?}: not an http(s) URL, such as https://api.hubapi.com"
            )));
        }
    }
    let list_id = match args.list_id.clone() {
        Some(id) => id,
        None if std::io::stdin().is_terminal() => ask("Mailchimp audience id (list_id)")?,
        None => {
            return Err(bad_input(anyhow::anyhow!(
                "the Mailchimp audience id is needed: pass --list-id"
            )));
        }
    };
    if list_id.is_empty() || !list_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad_input(anyhow::anyhow!(
            "--list-id {list_id:?}: an audience id is letters and digits, such as a1b2c3d4e5"
        )));
    }
    let text = config_text(&args, &list_id);
    // The flags are checked above; this catches a template that drifted from
    // what the parser accepts, before anything is written.
    if let Err(problems) = Config::parse(&config_path, &text) {
        return Err(
            anyhow::anyhow!("the config tandem init made does not load: {problems}").into(),
        );
    }
    write(&policy_path, SHIPPED_POLICY, args.force)?;
    write(&config_path, &text, args.force)?;
    println!(
        "Wrote {} and {}.\n\nNext:\n  export {}=...   # a private app token with crm.objects.contacts.read and write\n  export {}=...   # ends in its datacenter, such as -us6\n  tandem policy check --config {}\n  tandem plan --config {}        # what the first pass would do; nothing is written\n  tandem sync --once --config {}  # the first link-up, after a preview\n  tandem run --config {}         # keep them aligned",
        config_path.display(),
        policy_path.display(),
        args.hubspot_token_env,
        args.mailchimp_api_key_env,
        config_path.display(),
        config_path.display(),
        config_path.display(),
        config_path.display(),
    );
    Ok(ExitCode::SUCCESS)
}

fn exists_already(path: &Path) -> Failure {
    bad_input(anyhow::anyhow!(
        "{} exists already; pass --force to overwrite it",
        path.display()
    ))
}

/// A name `export NAME=...` accepts.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

fn ask(what: &str) -> Result<String, Failure> {
    eprint!("{what}: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(answer.trim().to_string())
}

/// Write `text` to `path`; without `force`, a file that appeared since the
/// first check is still never replaced.
fn write(path: &Path, text: &str, force: bool) -> Result<(), Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(exists_already(path));
        }
        opened => opened.with_context(|| format!("cannot write {}", path.display()))?,
    };
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A TOML string literal.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn config_text(args: &InitArgs, list_id: &str) -> String {
    let base_url = |url: &Option<String>, default: &str| match url {
        Some(url) => format!("base_url = {}\n", quoted(url)),
        None => format!("# base_url = {default}\n"),
    };
    format!(
        r#"# tandem: HubSpot and Mailchimp kept in sync. Every setting is described in
# the README ("Connecting real accounts"); those commented out show their default.

[store]
path = "tandem.sqlite"              # relative to this file; back it up with `tandem backup`

[engine]
# poll_interval_secs = 30           # pause between passes of `tandem run` (webhooks act in between)
# retry_base_secs = 30              # first retry delay of a rejected write; doubles per attempt
# retry_max_secs = 3600             # longest delay between two retries
# max_attempts = 8                  # then the write is parked as a dead letter
# removal_limit = 50                # more archives/deletes queued to one side than this,
# removal_limit_percent = 10        #   or this share of the links, wait for approval
# reconcile_interval_secs = 86400   # compare both systems in full this often; 0: never
# loop_flips = 4                    # a field written back to an earlier value more often than this
# loop_window_mins = 60             #   within this window (1 to 1440) becomes a conflict; 0 flips: off

[connectors.hubspot]
{hubspot_url}token_env = {hubspot_token}     # a private app token with crm.objects.contacts.read/write
# client_secret_env = "HUBSPOT_CLIENT_SECRET"  # the app's client secret, to verify its webhooks
# rate_limit = "100/10s"            # 190/10s on Professional and Enterprise; lower if other apps share it
# search_rate_limit = "4/1s"

[connectors.mailchimp]
{mailchimp_url}api_key_env = {mailchimp_key}
list_id = {list_id}
# webhook_secret_env = "MAILCHIMP_WEBHOOK_SECRET"  # the ?secret= in the webhook URL
# status_if_new = "subscribed"      # status of members tandem creates
# max_connections = 8               # Mailchimp allows 10 per user, shared with other integrations

# Without [http], tandem polls alone: changes cross within a poll interval.
# To take webhooks (changes cross within seconds) and serve the web page,
# uncomment [http] and a user below, and the two webhook secrets above
# (client_secret_env, webhook_secret_env); README "Webhooks" says what to
# set at each vendor.
# [http]
# listen = "0.0.0.0:8080"
# public_url = "https://sync.example.com"   # the address the vendors call
# session_hours = 12                # how long a sign-in lasts
#
# [[http.users]]                    # people who may resolve conflicts on the web page
# name = "grace"
# role = "support"                  # admin, support or viewer
# password_hash_env = "GRACE_PASSWORD_HASH"  # from `tandem hash-password`

[[pairs]]
policy = "policies/hubspot-mailchimp.toml"
"#,
        hubspot_url = base_url(&args.hubspot_url, "\"https://api.hubapi.com\""),
        mailchimp_url = base_url(
            &args.mailchimp_url,
            "\"https://<dc>.api.mailchimp.com/3.0\"   # <dc>: the key's suffix, like us6"
        ),
        hubspot_token = quoted(&args.hubspot_token_env),
        mailchimp_key = quoted(&args.mailchimp_api_key_env),
        list_id = quoted(list_id),
    )
}
