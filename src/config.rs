//! `tandem.toml`: where the state store lives, how the engine paces itself, the
//! connectors (base URL, where the credentials come from) and the synced pairs.
//!
//! Read in two stages like policies: the raw TOML (unknown keys rejected), then
//! validated settings with every problem reported at once as file:line:column.
//! Credentials are not read here: a [`Credential`] says where to find one and is
//! read only when a command needs it, so secrets never sit in the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use tandem_core::RateLimit;
use toml::Spanned;

use crate::location::{Located, Problems};

/// The config file a command reads when none is named.
pub const DEFAULT_FILE: &str = "tandem.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    engine: RawEngine,
    http: Option<RawHttp>,
    connectors: Spanned<BTreeMap<String, Spanned<RawConnector>>>,
    pairs: Spanned<Vec<RawPair>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Spanned<String>,
    public_url: Option<Spanned<String>>,
    session_hours: Option<u64>,
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    role: Spanned<String>,
    password_hash: Option<Spanned<String>>,
    password_hash_env: Option<Spanned<String>>,
    password_hash_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    poll_interval_secs: Option<u64>,
    retry_base_secs: Option<u64>,
    retry_max_secs: Option<u64>,
    max_attempts: Option<u32>,
    removal_limit: Option<u64>,
    removal_limit_percent: Option<u32>,
    reconcile_interval_secs: Option<u64>,
    loop_flips: Option<u32>,
    loop_window_mins: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    kind: Option<Spanned<String>>,
    base_url: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    api_key_env: Option<Spanned<String>>,
    api_key_file: Option<Spanned<String>>,
    list_id: Option<Spanned<String>>,
    status_if_new: Option<Spanned<String>>,
    overlap_secs: Option<u64>,
    rate_limit: Option<Spanned<String>>,
    search_rate_limit: Option<Spanned<String>>,
    max_connections: Option<usize>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    breaker_failure_percent: Option<Spanned<u32>>,
    breaker_cooldown_secs: Option<u64>,
    client_secret_env: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<String>>,
    legacy_signatures: Option<bool>,
    webhook_secret_env: Option<Spanned<String>>,
    webhook_secret_file: Option<Spanned<String>>,
    webhook_signing_secret_env: Option<Spanned<String>>,
    webhook_signing_secret_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    policy: Spanned<String>,
}

/// Where a credential comes from: an environment variable or a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    /// The setting that names it (`connectors.hubspot.token_env`), for messages.
    pub setting: String,
    /// Where the setting is, for messages.
    pub at: Located,
    /// The source.
    pub source: CredentialSource,
}

/// The two places a credential can come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// An environment variable.
    Env(String),
    /// A file holding only the secret (surrounding whitespace is ignored).
    File(PathBuf),
}

impl Credential {
    /// Read the secret. The error names the setting and where it is, never the secret.
    pub fn read(&self) -> Result<SecretString, Located> {
        let fail = |message: String| Located {
            message: format!("{}: {message}", self.setting),
            ..self.at.clone()
        };
        let value = match &self.source {
            CredentialSource::Env(name) => std::env::var(name)
                .map_err(|_| fail(format!("environment variable {name} is not set")))?,
            CredentialSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?,
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(fail("the credential is empty".into()));
        }
        Ok(SecretString::from(value.to_string()))
    }
}

/// Settings shared by every connector.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// The API root, if set; each vendor has a default.
    pub base_url: Option<String>,
    /// Where `base_url` is set (or the connector's table), for messages.
    pub base_url_at: Located,
    /// The credential.
    pub credential: Credential,
    /// How far behind its watermark each incremental poll starts again.
    pub overlap: Option<Duration>,
    /// The request budget: `Some(None)` means explicitly off.
    pub rate_limit: Option<Option<RateLimit>>,
    /// Timeout of one request.
    pub timeout: Option<Duration>,
    /// Retries of transport errors, 429 and 5xx.
    pub max_retries: Option<u32>,
    /// Share of recent calls (percent) that must fail to pause the connector;
    /// above 100 never pauses it.
    pub breaker_failure_percent: Option<u32>,
    /// How long the connector first pauses.
    pub breaker_cooldown: Option<Duration>,
}

/// A configured connector.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorSettings {
    /// A HubSpot portal.
    HubSpot {
        /// Shared settings.
        common: Common,
        /// The search endpoint's own budget (`Some(None)`: off).
        search_rate_limit: Option<Option<RateLimit>>,
        /// The app's client secret, which signs webhooks; `None`: no webhooks.
        client_secret: Option<Credential>,
        /// Whether v1 and v2 webhook signatures are accepted besides v3.
        legacy_signatures: bool,
    },
    /// A Mailchimp audience.
    Mailchimp {
        /// Shared settings.
        common: Common,
        /// The audience id.
        list_id: String,
        /// Status of members tandem creates.
        status_if_new: String,
        /// Most requests in flight (Mailchimp allows 10 per user across all integrations).
        max_connections: Option<usize>,
        /// The secret in the webhook's callback URL (`?secret=`); `None`: no webhooks.
        webhook_secret: Option<Credential>,
        /// The secret that signs webhooks created with signing.
        webhook_signing_secret: Option<Credential>,
    },
}

impl ConnectorSettings {
    /// The vendor's name.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorSettings::HubSpot { .. } => "hubspot",
            ConnectorSettings::Mailchimp { .. } => "mailchimp",
        }
    }

    /// Settings shared by every connector.
    pub fn common(&self) -> &Common {
        match self {
            ConnectorSettings::HubSpot { common, .. }
            | ConnectorSettings::Mailchimp { common, .. } => common,
        }
    }

    /// The settings every connector has, to change.
    pub fn common_mut(&mut self) -> &mut Common {
        match self {
            ConnectorSettings::HubSpot { common, .. }
            | ConnectorSettings::Mailchimp { common, .. } => common,
        }
    }
}

/// How the engine paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// Pause between passes of `tandem run`.
    pub poll_interval: Duration,
    /// First delay before retrying a rejected write; it doubles per attempt.
    pub retry_base: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// Attempts before a write is parked as a dead letter.
    pub max_attempts: u32,
    /// Archives and deletes queued to one side beyond which none is sent until
    /// a person approves them (`tandem removals approve`).
    pub removal_limit: u64,
    /// The same as a share of the pair's links, in percent: whichever of the
    /// two is smaller holds the removals (never below one record).
    pub removal_limit_percent: u32,
    /// How often `tandem run` lists both systems in full and compares them with
    /// the state (`tandem reconcile` without `--fix`); `None`: never.
    pub reconcile_every: Option<Duration>,
    /// The loop detector: a field written back to a value it held earlier more
    /// than this many times within `loop_window` becomes a conflict; 0: off.
    pub loop_flips: u32,
    /// How far back the loop detector looks (at most a day).
    pub loop_window: Duration,
}

impl EngineSettings {
    /// How many removals queued to one side of a pair with `links` links are
    /// sent without a person's approval.
    pub fn removals_allowed(&self, links: u64) -> u64 {
        let share = links * u64::from(self.removal_limit_percent) / 100;
        self.removal_limit.min(share.max(1))
    }

    /// The loop detector at `now`: the start of its window and the returns
    /// allowed in it, or `None` when it is off.
    pub fn loop_guard(&self, now: tandem_core::Millis) -> Option<(tandem_core::Millis, u32)> {
        (self.loop_flips > 0).then(|| {
            (
                now - self.loop_window.as_millis() as tandem_core::Millis,
                self.loop_flips,
            )
        })
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(30),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 8,
            removal_limit: 50,
            removal_limit_percent: 10,
            reconcile_every: Some(Duration::from_secs(86_400)),
            loop_flips: 4,
            loop_window: Duration::from_secs(3600),
        }
    }
}

/// The engine's HTTP listener: webhooks, and the web page and API for people.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The address the vendors call (`https://sync.example.com`): HubSpot signs the
    /// full URL it calls, which behind a proxy is not the local one.
    pub public_url: String,
    /// How long a sign-in to the web page and API lasts.
    pub session: Duration,
    /// People who may sign in. Without any, the web page and API are not served.
    pub users: Vec<UserSettings>,
}

/// A person who may sign in to the web page and the API.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSettings {
    /// The name to sign in with.
    pub name: String,
    /// `admin`, `support` or `viewer`.
    pub role: String,
    /// Where the password's Argon2 hash (a PHC string) comes from.
    pub password_hash: PasswordHash,
}

/// Where a password hash comes from: the config itself, or a secret source.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordHash {
    /// Written in the config (a hash is not a secret the way a password is).
    Inline(String),
    /// An environment variable or a file.
    Secret(Credential),
}

impl PasswordHash {
    /// The PHC string.
    pub fn read(&self) -> Result<String, Located> {
        match self {
            PasswordHash::Inline(hash) => Ok(hash.clone()),
            PasswordHash::Secret(credential) => {
                use secrecy::ExposeSecret;
                Ok(credential.read()?.expose_secret().to_string())
            }
        }
    }
}

/// The roles of people, from most to least allowed.
pub const ROLES: [&str; 3] = ["admin", "support", "viewer"];

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The SQLite state file.
    pub store_path: PathBuf,
    /// Engine pacing.
    pub engine: EngineSettings,
    /// The webhook listener, if any.
    pub http: Option<HttpSettings>,
    /// Connectors by name.
    pub connectors: BTreeMap<String, ConnectorSettings>,
    /// Policy files, one per synced pair.
    pub pairs: Vec<PathBuf>,
}

impl Config {
    /// Read and validate a config file. Relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (pass --config FILE, or run `tandem demo` to see one)"
            } else {
                ""
            };
            Problems(vec![Located::file(
                path,
                format!("cannot read the config file: {e}{hint}"),
            )])
        })?;
        Self::parse(path, &source)
    }

    /// Validate config text; `path` places relative paths and messages.
    pub fn parse(path: &Path, source: &str) -> Result<Config, Problems> {
        let raw: RawConfig = toml::from_str(source).map_err(|e| {
            Problems(vec![
                Located::from_toml(path, source, &e)
                    .hint("see the configuration section of README.md"),
            ])
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let relative = |p: &str| {
            if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                dir.join(p)
            }
        };
        let at = |span: std::ops::Range<usize>, message: String| {
            Located::at(path, source, span.start, message)
        };
        let mut problems = Vec::new();

        let defaults = EngineSettings::default();
        let seconds =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
        let engine = EngineSettings {
            poll_interval: seconds(raw.engine.poll_interval_secs, defaults.poll_interval),
            retry_base: seconds(raw.engine.retry_base_secs, defaults.retry_base),
            retry_max: seconds(raw.engine.retry_max_secs, defaults.retry_max),
            max_attempts: raw
                .engine
                .max_attempts
                .unwrap_or(defaults.max_attempts)
                .max(1),
            removal_limit: raw.engine.removal_limit.unwrap_or(defaults.removal_limit),
            removal_limit_percent: raw
                .engine
                .removal_limit_percent
                .unwrap_or(defaults.removal_limit_percent)
                .min(100),
            reconcile_every: match raw.engine.reconcile_interval_secs {
                None => defaults.reconcile_every,
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            },
            loop_flips: raw.engine.loop_flips.unwrap_or(defaults.loop_flips),
            loop_window: raw
                .engine
                .loop_window_mins
                .as_ref()
                .map_or(defaults.loop_window, |m| {
                    Duration::from_secs(*m.get_ref() * 60)
                }),
        };
        if let Some(minutes) = raw
            .engine
            .loop_window_mins
            .as_ref()
            .filter(|m| !(1..=1440).contains(m.get_ref()))
        {
            problems.push(at(
                minutes.span(),
                "engine.loop_window_mins: must be 1 to 1440 (a day)".to_string(),
            ));
        }

        let mut connectors = BTreeMap::new();
        for (name, spanned) in raw.connectors.get_ref() {
            let table_at = at(spanned.span(), String::new());
            let c = spanned.get_ref();
            let prefix = format!("connectors.{name}");
            let kind = c
                .kind
                .as_ref()
                .map(|k| k.get_ref().as_str())
                .unwrap_or(name.as_str());
            // A secret named by `<base>_env` or `<base>_file`, or neither.
            let optional_credential =
                |env: &Option<Spanned<String>>,
                 file: &Option<Spanned<String>>,
                 base: &str,
                 problems: &mut Vec<Located>| {
                    match (env, file) {
                        (Some(env), None) => Some(Credential {
                            setting: format!("{prefix}.{base}_env"),
                            at: at(env.span(), String::new()),
                            source: CredentialSource::Env(env.get_ref().clone()),
                        }),
                        (None, Some(file)) => Some(Credential {
                            setting: format!("{prefix}.{base}_file"),
                            at: at(file.span(), String::new()),
                            source: CredentialSource::File(relative(file.get_ref())),
                        }),
                        (Some(env), Some(_)) => {
                            problems.push(at(
                                env.span(),
                                format!("{prefix}: set {base}_env or {base}_file, not both"),
                            ));
                            None
                        }
                        (None, None) => None,
                    }
                };
            let credential = |env: &Option<Spanned<String>>,
                              file: &Option<Spanned<String>>,
                              base: &str,
                              problems: &mut Vec<Located>| {
                let found = optional_credential(env, file, base, problems);
                if found.is_none() && env.is_none() {
                    problems.push(at(spanned.span(), format!("{prefix}: no credential")).hint(format!(
                        "add {base}_env = \"NAME_OF_AN_ENVIRONMENT_VARIABLE\" or {base}_file = \"path/to/secret\""
                    )));
                }
                found
            };
            let rate = |value: &Option<Spanned<String>>, problems: &mut Vec<Located>| match value {
                None => None,
                Some(text) => match parse_rate(text.get_ref()) {
                    Ok(rate) => Some(rate),
                    Err(why) => {
                        problems.push(
                            at(text.span(), format!("{prefix}: {why}"))
                                .hint("write it as \"100/10s\", \"5/1s\" or \"off\""),
                        );
                        None
                    }
                },
            };
            let not_for = |setting: &str, value: bool, problems: &mut Vec<Located>| {
                if value {
                    problems.push(at(
                        spanned.span(),
                        format!("{prefix}: `{setting}` is not a {kind} setting"),
                    ));
                }
            };
            if let Some(url) = &c.base_url
                && reqwest_url_ok(url.get_ref()).is_err()
            {
                problems.push(at(
                    url.span(),
                    format!(
                        "{prefix}.base_url: `{}` is not an http(s) URL",
                        url.get_ref()
                    ),
                ));
            }
            let rate_limit = rate(&c.rate_limit, &mut problems);
            if let Some(percent) = c
                .breaker_failure_percent
                .as_ref()
                .filter(|p| *p.get_ref() == 0)
            {
                problems.push(at(
                    percent.span(),
                    format!(
                        "{prefix}.breaker_failure_percent: must be 1 or more (above 100 never pauses the connector)"
                    ),
                ));
            }
            let common = |credential: Credential| Common {
                base_url: c.base_url.as_ref().map(|u| u.get_ref().clone()),
                base_url_at: c
                    .base_url
                    .as_ref()
                    .map_or_else(|| table_at.clone(), |u| at(u.span(), String::new())),
                credential,
                overlap: c.overlap_secs.map(Duration::from_secs),
                rate_limit,
                timeout: c.timeout_secs.map(Duration::from_secs),
                max_retries: c.max_retries,
                breaker_failure_percent: c.breaker_failure_percent.as_ref().map(|p| *p.get_ref()),
                breaker_cooldown: c.breaker_cooldown_secs.map(Duration::from_secs),
            };
            let settings = match kind {
                "hubspot" => {
                    not_for("api_key_env", c.api_key_env.is_some(), &mut problems);
                    not_for("api_key_file", c.api_key_file.is_some(), &mut problems);
                    not_for("list_id", c.list_id.is_some(), &mut problems);
                    not_for("status_if_new", c.status_if_new.is_some(), &mut problems);
                    not_for(
                        "max_connections",
                        c.max_connections.is_some(),
                        &mut problems,
                    );
                    not_for(
                        "webhook_secret_env",
                        c.webhook_secret_env.is_some(),
                        &mut problems,
                    );
                    not_for(
                        "webhook_secret_file",
                        c.webhook_secret_file.is_some(),
                        &mut problems,
                    );
                    not_for(
                        "webhook_signing_secret_env",
                        c.webhook_signing_secret_env.is_some(),
                        &mut problems,
                    );
                    not_for(
                        "webhook_signing_secret_file",
                        c.webhook_signing_secret_file.is_some(),
                        &mut problems,
                    );
                    let search = rate(&c.search_rate_limit, &mut problems);
                    let client_secret = optional_credential(
                        &c.client_secret_env,
                        &c.client_secret_file,
                        "client_secret",
                        &mut problems,
                    );
                    credential(&c.token_env, &c.token_file, "token", &mut problems).map(|cred| {
                        ConnectorSettings::HubSpot {
                            common: common(cred),
                            search_rate_limit: search,
                            client_secret: client_secret.clone(),
                            legacy_signatures: c.legacy_signatures.unwrap_or(false),
                        }
                    })
                }
                "mailchimp" => {
                    not_for("token_env", c.token_env.is_some(), &mut problems);
                    not_for("token_file", c.token_file.is_some(), &mut problems);
                    not_for(
                        "search_rate_limit",
                        c.search_rate_limit.is_some(),
                        &mut problems,
                    );
                    not_for(
                        "client_secret_env",
                        c.client_secret_env.is_some(),
                        &mut problems,
                    );
                    not_for(
                        "client_secret_file",
                        c.client_secret_file.is_some(),
                        &mut problems,
                    );
                    not_for(
                        "legacy_signatures",
                        c.legacy_signatures.is_some(),
                        &mut problems,
                    );
                    let webhook_secret = optional_credential(
                        &c.webhook_secret_env,
                        &c.webhook_secret_file,
                        "webhook_secret",
                        &mut problems,
                    );
                    let webhook_signing_secret = optional_credential(
                        &c.webhook_signing_secret_env,
                        &c.webhook_signing_secret_file,
                        "webhook_signing_secret",
                        &mut problems,
                    );
                    if webhook_signing_secret.is_some() && webhook_secret.is_none() {
                        problems.push(
                            at(spanned.span(), format!("{prefix}: a webhook signing secret needs the webhook URL secret too"))
                                .hint("add webhook_secret_env or webhook_secret_file: the ?secret= of the callback URL"),
                        );
                    }
                    let list_id = match &c.list_id {
                        Some(id) => Some(id.get_ref().clone()),
                        None => {
                            problems.push(at(spanned.span(), format!("{prefix}: no list_id")).hint(
                                "add list_id = \"...\": the audience id, under Audience > Settings > Audience name and defaults",
                            ));
                            None
                        }
                    };
                    let status_if_new = c
                        .status_if_new
                        .as_ref()
                        .map_or("subscribed".to_string(), |s| s.get_ref().clone());
                    if !["subscribed", "unsubscribed", "pending", "transactional"]
                        .contains(&status_if_new.as_str())
                    {
                        let span = c
                            .status_if_new
                            .as_ref()
                            .map_or(spanned.span(), |s| s.span());
                        problems.push(at(span, format!("{prefix}.status_if_new: `{status_if_new}` is not a status for new members"))
                            .hint("use \"subscribed\", \"pending\" (double opt-in), \"transactional\" or \"unsubscribed\""));
                    }
                    let cred =
                        credential(&c.api_key_env, &c.api_key_file, "api_key", &mut problems);
                    match (cred, list_id) {
                        (Some(cred), Some(list_id)) => Some(ConnectorSettings::Mailchimp {
                            common: common(cred),
                            list_id,
                            status_if_new,
                            max_connections: c.max_connections,
                            webhook_secret: webhook_secret.clone(),
                            webhook_signing_secret: webhook_signing_secret.clone(),
                        }),
                        _ => None,
                    }
                }
                other => {
                    let span = c.kind.as_ref().map_or(spanned.span(), |k| k.span());
                    problems.push(
                        at(span, format!("{prefix}: unknown connector kind `{other}`"))
                            .hint("kinds: hubspot, mailchimp"),
                    );
                    None
                }
            };
            if let Some(settings) = settings {
                connectors.insert(name.clone(), settings);
            }
        }
        let http = raw.http.as_ref().and_then(|h| {
            let listen = match h.listen.get_ref().parse::<std::net::SocketAddr>() {
                Ok(listen) => listen,
                Err(_) => {
                    problems.push(
                        at(
                            h.listen.span(),
                            format!("http.listen: `{}` is not an address", h.listen.get_ref()),
                        )
                        .hint("write it as \"127.0.0.1:8080\" or \"0.0.0.0:8080\""),
                    );
                    return None;
                }
            };
            let public_url = match &h.public_url {
                Some(url) if reqwest_url_ok(url.get_ref()).is_err() => {
                    problems.push(at(
                        url.span(),
                        format!("http.public_url: `{}` is not an http(s) URL", url.get_ref()),
                    ));
                    return None;
                }
                Some(url) => url.get_ref().trim_end_matches('/').to_string(),
                None => format!("http://{listen}"),
            };
            let mut users = Vec::new();
            for spanned in &h.users {
                let user = spanned.get_ref();
                let name = user.name.get_ref().trim().to_string();
                let prefix = format!("http.users `{name}`");
                if name.is_empty() {
                    problems.push(at(user.name.span(), "http.users: a user needs a name".into()));
                }
                if users.iter().any(|u: &UserSettings| u.name == name) {
                    problems.push(at(user.name.span(), format!("{prefix}: listed twice")));
                }
                let role = user.role.get_ref().clone();
                if !ROLES.contains(&role.as_str()) {
                    problems.push(
                        at(user.role.span(), format!("{prefix}: unknown role `{role}`"))
                            .hint("roles: admin, support, viewer"),
                    );
                }
                let secret = |setting: &str, spanned: &Spanned<String>, source| Credential {
                    setting: format!("http.users.{name}.{setting}"),
                    at: at(spanned.span(), String::new()),
                    source,
                };
                let hash = match (&user.password_hash, &user.password_hash_env, &user.password_hash_file) {
                    (Some(hash), None, None) => Some(PasswordHash::Inline(hash.get_ref().clone())),
                    (None, Some(env), None) => Some(PasswordHash::Secret(secret(
                        "password_hash_env",
                        env,
                        CredentialSource::Env(env.get_ref().clone()),
                    ))),
                    (None, None, Some(file)) => Some(PasswordHash::Secret(secret(
                        "password_hash_file",
                        file,
                        CredentialSource::File(relative(file.get_ref())),
                    ))),
                    (None, None, None) => {
                        problems.push(at(spanned.span(), format!("{prefix}: no password hash")).hint(
                            "add password_hash = \"$argon2id$...\" (from `tandem hash-password`), or password_hash_env / password_hash_file",
                        ));
                        None
                    }
                    _ => {
                        problems.push(at(spanned.span(), format!(
                            "{prefix}: set one of password_hash, password_hash_env, password_hash_file"
                        )));
                        None
                    }
                };
                if let Some(PasswordHash::Inline(hash)) = &hash
                    && !hash.starts_with("$argon2")
                {
                    problems.push(
                        at(user.password_hash.as_ref().map_or(spanned.span(), |h| h.span()),
                            format!("{prefix}: password_hash is not an Argon2 hash"))
                        .hint("never put a password here: run `tandem hash-password` and paste what it prints"),
                    );
                }
                if let Some(password_hash) = hash {
                    users.push(UserSettings { name, role, password_hash });
                }
            }
            let session = Duration::from_secs(h.session_hours.unwrap_or(12).clamp(1, 24 * 30) * 3600);
            Some(HttpSettings { listen, public_url, session, users })
        });
        if raw.pairs.get_ref().is_empty() {
            problems.push(
                at(raw.pairs.span(), "no pairs to sync".into())
                    .hint("add [[pairs]] with policy = \"policies/<name>.toml\""),
            );
        }
        let pairs = raw
            .pairs
            .get_ref()
            .iter()
            .map(|p| relative(p.policy.get_ref()))
            .collect();
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.line, p.column));
            return Err(Problems(problems));
        }
        Ok(Config {
            file: path.to_path_buf(),
            store_path: relative(raw.store.path.as_deref().unwrap_or("tandem.sqlite")),
            engine,
            http,
            connectors,
            pairs,
        })
    }
}

fn reqwest_url_ok(text: &str) -> Result<(), ()> {
    let url = reqwest::Url::parse(text).map_err(drop)?;
    if matches!(url.scheme(), "http" | "https") && url.host().is_some() {
        Ok(())
    } else {
        Err(())
    }
}

/// A rate limit as written in config and on the command line: `"100/10s"` is
/// 100 requests in any 10 seconds; `"off"` is no limit.
pub fn parse_rate(text: &str) -> Result<Option<RateLimit>, String> {
    if text == "off" {
        return Ok(None);
    }
    let bad = || format!("`{text}` is not a rate limit");
    let (requests, period) = text.split_once('/').ok_or_else(bad)?;
    let requests: u32 = requests.trim().parse().map_err(|_| bad())?;
    let seconds: f64 = period
        .trim()
        .strip_suffix('s')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    if requests == 0 || seconds.is_nan() || seconds <= 0.0 {
        return Err(bad());
    }
    Ok(Some(RateLimit {
        requests,
        per: Duration::from_secs_f64(seconds),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_or_say_why_not() {
        assert_eq!(
            parse_rate("100/10s"),
            Ok(Some(RateLimit {
                requests: 100,
                per: Duration::from_secs(10)
            }))
        );
        assert_eq!(parse_rate("off"), Ok(None));
        assert!(parse_rate("100 per 10s").is_err());
        assert!(parse_rate("0/1s").is_err());
    }
}
