//! The `tandem` command line: argument parsing, logging set-up, and thin
//! commands over the library. Exit codes: 0 done, 1 failed while running,
//! 2 bad input (arguments, config, policy, credentials, unreachable system).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tandem_core::breaker::BreakerState;
use tokio_util::sync::CancellationToken;

mod init;
mod linkup;
mod migrate;
mod people;
mod plan;
mod policy;
pub mod progress;
mod reconcile;

use crate::config::{Config, DEFAULT_FILE};
use crate::engine::{Clock, Engine, PassReport, SetupError, open_existing_store};

/// tandem keeps a CRM and an email platform aligned in both directions.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter, such as `info` or `tandem=debug` (also from TANDEM_LOG).
    #[arg(long, global = true, env = "TANDEM_LOG")]
    log: Option<String>,
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run both simulators on loopback, sync them through a local SQLite file, and show what happened.
    Demo(DemoArgs),
    /// Sync every pair: one pass with --once, else continuously like `run`.
    Sync(SyncArgs),
    /// Sync every pair continuously, one pass every poll interval, until Ctrl-C.
    Run(RunArgs),
    /// What one pass would do now: every write (old -> new), link and conflict; nothing is written.
    Plan {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List both systems in full and compare them with the state: matched,
    /// different, missing and extra records. Exits 1 when they drifted apart.
    Reconcile {
        #[command(flatten)]
        config: ConfigArg,
        /// Stage what differs (and records never linked) for the next pass to repair.
        #[arg(long)]
        fix: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy every record of one system into the other through the policy's
    /// mapping, then prove it: counts, per-field checksums, missing and extra
    /// records, spot checks. Exits 1 when the validation fails.
    Migrate(migrate::MigrateArgs),
    /// Copy the state store to FILE, consistently, while tandem runs.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write the copy (must not exist).
        file: PathBuf,
    },
    /// Write a commented tandem.toml and a starter policy.
    Init(init::InitArgs),
    /// Print a shell completion script: tandem completions bash > /etc/bash_completion.d/tandem
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: init::Shell,
    },
    /// What the engine's state says: links, conflicts, queued writes, dead letters, last polls.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Conflicts that no rule could settle.
    #[command(subcommand)]
    Conflicts(people::ConflictsCommand),
    /// Writes parked after too many failures: list, retry, discard.
    #[command(subcommand, name = "deadletters")]
    DeadLetters(people::DeadLettersCommand),
    /// Archives and deletes held for approval (more at once than `removal_limit`).
    #[command(subcommand)]
    Removals(people::RemovalsCommand),
    /// What the engine and people did, newest last.
    Audit(people::AuditArgs),
    /// Check a policy, explain how it decides a record, preview a new version.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Serve a simulator of a vendor API (for tests, demos and trying configurations).
    #[command(subcommand)]
    Sim(SimCommand),
    /// Measure a backfill between the simulators: records per second and peak memory.
    Bench(crate::bench::BenchArgs),
    /// Read a password from standard input and print its Argon2id hash, for
    /// `password_hash` of a user under [[http.users]].
    HashPassword,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, default_value = DEFAULT_FILE)]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Confirm the first link-up of a pair never linked, without the preview.
    #[arg(long, short)]
    yes: bool,
}

#[derive(Debug, Args)]
struct SyncArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Confirm the first link-up of a pair never linked, without the preview.
    #[arg(long, short)]
    yes: bool,
    /// Run one pass and exit.
    #[arg(long)]
    once: bool,
    /// Print the pass report as JSON (with --once).
    #[arg(long, requires = "once")]
    json: bool,
}

/// Arguments of `tandem demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the config, policy and SQLite file (recreated each run).
    #[arg(long, default_value = "tandem-demo")]
    pub dir: PathBuf,
    /// Run one pass and exit.
    #[arg(long)]
    pub once: bool,
    /// Print the first pass's report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seconds between the demo's own edits and between passes.
    #[arg(long, default_value_t = 3)]
    pub interval: u64,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// The HubSpot CRM v3 contacts API.
    Hubspot {
        /// Address to listen on, such as 127.0.0.1:8081 (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// A JSON seed: {"properties": [...], "contacts": [{"properties": {...}}]}.
        #[arg(long)]
        seed: Option<PathBuf>,
        /// The Bearer token to accept.
        #[arg(long, default_value = "sim-hubspot-token")]
        token: String,
        /// Requests allowed in any window, search excepted, such as 100/10s (a private app's budget).
        #[arg(long, value_parser = rate_arg, default_value = "off")]
        rate_limit: RateArg,
        /// The search endpoint's own budget, such as 5/1s.
        #[arg(long, value_parser = rate_arg, default_value = "off")]
        search_rate_limit: RateArg,
        /// Requests allowed per day.
        #[arg(long)]
        daily_limit: Option<u32>,
        /// Milliseconds each request takes to answer.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// The Mailchimp Marketing v3 API for one audience.
    Mailchimp {
        /// Address to listen on, such as 127.0.0.1:8082 (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// A JSON seed: {"merge_fields": [...], "members": [{"email_address": ...}]}.
        #[arg(long)]
        seed: Option<PathBuf>,
        /// The API key to accept (`<hex>-<datacenter>`).
        #[arg(long, default_value = "0123456789abcdef0123456789abcdef-us6")]
        api_key: String,
        /// The audience id served.
        #[arg(long, default_value = "a1b2c3d4e5")]
        list_id: String,
        /// Most requests in flight at once; Mailchimp allows 10 per user (0: no limit).
        #[arg(long, default_value_t = 10)]
        max_connections: usize,
        /// Milliseconds each request takes to answer.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

/// A rate limit argument: `100/10s`, or `off` for none.
#[derive(Debug, Clone, Copy)]
struct RateArg(Option<tandem_core::RateLimit>);

fn rate_arg(text: &str) -> Result<RateArg, String> {
    crate::config::parse_rate(text).map(RateArg)
}

/// A failure with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: 1,
            error: error.into(),
        }
    }
}

fn bad_input(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

/// Parse arguments, set up logging and run the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match &cli.command {
        Command::Run(_) | Command::Sync(SyncArgs { once: false, .. }) | Command::Sim(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log.as_deref().unwrap_or(default_filter), cli.log_format);
    if let Err(error) = crate::crash::arm_from_env() {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Demo(args) => crate::demo::run(args).await.map_err(Failure::from),
        Command::Sync(args) if args.once => {
            sync_once(&args.config.config, args.json, args.yes).await
        }
        Command::Sync(args) => run_forever(&args.config.config, args.yes).await,
        Command::Run(args) => run_forever(&args.config.config, args.yes).await,
        Command::Plan { config, json } => plan::plan(&config.config, json).await,
        Command::Reconcile { config, fix, json } => {
            reconcile::reconcile(&config.config, fix, json).await
        }
        Command::Migrate(args) => migrate::migrate(args).await,
        Command::Backup { config, file } => backup(&config.config, &file),
        Command::Init(args) => init::init(args),
        Command::Completions { shell } => init::completions(shell),
        Command::Status { config, json } => status(&config.config, json),
        Command::Conflicts(command) => people::conflicts(command),
        Command::DeadLetters(command) => people::dead_letters(command),
        Command::Removals(command) => people::removals(command),
        Command::Audit(args) => people::audit(args),
        Command::Policy(command) => policy::run(command),
        Command::Sim(sim) => serve_sim(sim).await,
        Command::HashPassword => hash_password(),
        Command::Bench(args) => crate::bench::run(args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Failure::from),
    }
}

/// Load the config and start the engine, turning every setup problem into exit code 2.
async fn start(path: &std::path::Path) -> Result<(Config, Engine), Failure> {
    let config = Config::load(path).map_err(bad_input)?;
    let engine = Engine::start(&config, Clock::System)
        .await
        .map_err(|e| match e {
            SetupError::Store(e) => Failure::from(e),
            other => bad_input(other),
        })?;
    Ok((config, engine))
}

/// Load the config, confirm the first link-up of pairs never linked, and
/// start the engine.
async fn start_syncing(path: &std::path::Path, yes: bool) -> Result<(Config, Engine), Failure> {
    let config = Config::load(path).map_err(bad_input)?;
    let confirmed = linkup::confirm(&config, yes).await?;
    let (config, engine) = start(path).await?;
    confirmed.record(&engine).await?;
    Ok((config, engine))
}

/// Copy the state store with `VACUUM INTO`: one consistent snapshot even
/// while a running engine writes to it.
fn backup(path: &std::path::Path, to: &std::path::Path) -> Result<ExitCode, Failure> {
    let config = Config::load(path).map_err(bad_input)?;
    if to.exists() {
        return Err(bad_input(anyhow::anyhow!(
            "{} exists already; tandem backup writes a new file",
            to.display()
        )));
    }
    let store =
        open_existing_store(&config.store_path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    store
        .copy_to(to)
        .with_context(|| format!("cannot write {}", to.display()))?;
    eprintln!("{} copied to {}", config.store_path.display(), to.display());
    Ok(ExitCode::SUCCESS)
}

async fn sync_once(path: &std::path::Path, json: bool, yes: bool) -> Result<ExitCode, Failure> {
    let (_, engine) = start_syncing(path, yes).await?;
    let shutdown = CancellationToken::new();
    let report = progress::watch(&engine, "sync", engine.pass(&shutdown)).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        );
    } else {
        print!("{}", render_report(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_forever(path: &std::path::Path, yes: bool) -> Result<ExitCode, Failure> {
    let (config, engine) = start_syncing(path, yes).await?;
    let engine = std::sync::Arc::new(engine);
    let shutdown = shutdown_on_ctrl_c();
    let listener = listen_for_webhooks(&config, &engine, &shutdown).await?;
    engine
        .run(shutdown, |report| {
            for pair in &report.pairs {
                if pair.writes() > 0 || pair.conflicts_opened > 0 || pair.rejected > 0 {
                    tracing::info!(pair = %pair.pair, writes = pair.writes(), conflicts = pair.conflicts_opened, "Changes synced.");
                }
            }
        })
        .await?;
    if let Some(listener) = listener {
        listener.await.ok();
    }
    Ok(ExitCode::SUCCESS)
}

/// Start the webhook listener when the config has one; it stops with `shutdown`.
async fn listen_for_webhooks(
    config: &Config,
    engine: &std::sync::Arc<Engine>,
    shutdown: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, Failure> {
    let intake = crate::http::Intake::new(config, engine.clone())
        .map_err(|e| bad_input(anyhow::anyhow!(e.to_string())))?;
    let Some(http) = &config.http else {
        if !intake.endpoints().is_empty() {
            tracing::warn!(
                "Webhook secrets are set but there is no [http] listener; only polling will run."
            );
        }
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(http.listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {}", http.listen))
        .map_err(bad_input)?;
    for (connector, url) in intake.endpoints() {
        tracing::info!(connector, url, "Webhooks accepted.");
    }
    Ok(Some(tokio::spawn(intake.serve(listener, shutdown.clone()))))
}

/// A token cancelled by the first Ctrl-C (SIGINT) or SIGTERM.
pub fn shutdown_on_ctrl_c() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        // SIGTERM is how service managers (systemd, containers) ask a process to stop.
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            signalled = tokio::signal::ctrl_c() => {
                if signalled.is_err() {
                    return;
                }
            }
            () = terminate => {}
        }
        tracing::info!("Stopping after the current step.");
        trigger.cancel();
    });
    token
}

/// One pair's state, for `tandem status`.
#[derive(Debug, serde::Serialize)]
struct PairStatus {
    pair: String,
    connectors: [String; 2],
    #[serde(flatten)]
    counts: crate::store::Counts,
    last_poll: [Option<tandem_core::Millis>; 2],
    dead: Vec<crate::store::DeadLetter>,
    /// The active policy version.
    policy: Option<crate::store::PolicyVersion>,
    /// A newer version of the file that was refused, which the engine does not run.
    refused_policy: Option<crate::store::PolicyVersion>,
    /// Archives and deletes no person approved yet (held when more than the limit).
    removals_waiting: usize,
    /// Each connector's circuit breaker, API calls and webhooks today.
    health: [crate::store::ConnectorHealth; 2],
    /// The last full comparison of both systems with the state.
    drift: Option<crate::store::DriftCounts>,
    /// Whether nothing below needs a person or an operator.
    healthy: bool,
    /// What does, if anything.
    problems: Vec<String>,
}

/// What makes a pair unhealthy: what waits for an operator, not the conflicts
/// that are support's daily work.
fn pair_problems(
    pair: &PairStatus,
    settings: &crate::config::EngineSettings,
    now: tandem_core::Millis,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (connector, health) in pair.connectors.iter().zip(&pair.health) {
        match health.breaker {
            BreakerState::Closed => {}
            BreakerState::Open => problems.push(format!(
                "{connector} is paused after repeated failures (circuit open)"
            )),
            BreakerState::HalfOpen => problems.push(format!(
                "{connector} is being probed after repeated failures (circuit half-open)"
            )),
        }
        if health.webhooks_refused_today > 0 && health.webhooks_today == 0 {
            problems.push(format!(
                "every webhook from {connector} today was refused ({}): check its secret",
                health.webhooks_refused_today
            ));
        }
    }
    if let Some(drift) = pair.drift.filter(|d| d.different + d.missing > 0) {
        problems.push(format!(
            "the last comparison found {} record(s) different and {} missing (tandem reconcile)",
            drift.different, drift.missing
        ));
    }
    if pair.counts.dead_letters > 0 {
        problems.push(format!("{} dead letter(s)", pair.counts.dead_letters));
    }
    if pair.refused_policy.is_some() {
        problems.push("the policy file was changed and refused".to_string());
    }
    let allowed = settings.removals_allowed(pair.counts.links) as usize;
    if pair.removals_waiting > allowed {
        problems.push(format!(
            "{} archives or deletes wait for approval",
            pair.removals_waiting
        ));
    }
    // Three missed passes (at least five minutes) without a full poll.
    let stale = (3 * settings.poll_interval.as_millis() as i64).max(300_000);
    for (connector, poll) in pair.connectors.iter().zip(pair.last_poll) {
        match poll {
            None => problems.push(format!("{connector} was never polled")),
            Some(at) if now - at > stale => problems.push(format!(
                "{connector} last polled {} s ago",
                (now - at) / 1000
            )),
            Some(_) => {}
        }
    }
    problems
}

fn status(path: &std::path::Path, json: bool) -> Result<ExitCode, Failure> {
    let config = Config::load(path).map_err(bad_input)?;
    let store =
        open_existing_store(&config.store_path).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    // A policy file that does not compile now is shown by the version that runs.
    let schemas = crate::engine::ConfigSchemas(&config);
    let mut policies = Vec::new();
    for file in &config.pairs {
        match crate::policy::load(file, &schemas) {
            Ok(policy) => policies.push(policy),
            Err(problems) => {
                let running = store
                    .active_policy_of_file(&file.display().to_string())?
                    .and_then(|(_, source)| crate::policy::compile(file, &source, &schemas).ok());
                match running {
                    Some(policy) => policies.push(policy),
                    None => return Err(bad_input(problems)),
                }
            }
        }
    }
    let dead = store.dead_letters()?;
    let now = tandem_core::clock::now_millis();
    let mut pairs = Vec::new();
    for policy in &policies {
        pairs.push(PairStatus {
            pair: policy.name.clone(),
            connectors: [policy.left.clone(), policy.right.clone()],
            counts: store.counts(&policy.name)?,
            last_poll: store.last_polls(&policy.name)?,
            policy: store.policy_version(&policy.name, true)?,
            refused_policy: store
                .policy_version(&policy.name, false)?
                .filter(|v| v.outcome == "refused"),
            dead: dead
                .iter()
                .filter(|d| d.pair == policy.name)
                .cloned()
                .collect(),
            removals_waiting: store.removals(Some(&policy.name))?.len(),
            health: [
                store.connector_health(&policy.left, now)?,
                store.connector_health(&policy.right, now)?,
            ],
            drift: store.last_drift(&policy.name)?,
            healthy: true,
            problems: Vec::new(),
        });
    }
    for pair in &mut pairs {
        pair.problems = pair_problems(pair, &config.engine, now);
        pair.healthy = pair.problems.is_empty();
    }
    let code = if pairs.iter().all(|p| p.healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&pairs).expect("status serializes")
        );
        return Ok(code);
    }
    let ago = |at: Option<tandem_core::Millis>| match at {
        None => "never".to_string(),
        Some(at) => format!(
            "{} ({} s ago)",
            tandem_core::clock::format_seconds_offset(at),
            (now - at).max(0) / 1000
        ),
    };
    for pair in &pairs {
        let [left, right] = &pair.connectors;
        let c = &pair.counts;
        println!("{} ({left} <-> {right})", pair.pair);
        println!("  links            {}", c.links);
        println!("  open conflicts   {}", c.open_conflicts);
        println!("  queued writes    {}", c.pending_writes);
        println!("  staged records   {}", c.inbox);
        println!("  dead letters     {}", c.dead_letters);
        for letter in &pair.dead {
            let system = if letter.side == crate::side::Side::Left {
                left
            } else {
                right
            };
            println!(
                "    #{} to {system} for {} after {} attempts: {}",
                letter.id, letter.key, letter.attempts, letter.error
            );
        }
        if pair.removals_waiting > 0 {
            println!(
                "  removals waiting {} (held beyond the limit: tandem removals list | approve | cancel)",
                pair.removals_waiting
            );
        }
        if let Some(version) = &pair.policy {
            println!(
                "  policy           {} ({}), activated {} by {}{}",
                version.file,
                &version.sha256[..12],
                tandem_core::clock::format_seconds_offset(version.at),
                version.by,
                if version.applied_at.is_none() {
                    "; not yet applied to every link"
                } else {
                    ""
                }
            );
        }
        if let Some(refused) = &pair.refused_policy {
            println!(
                "  REFUSED policy   {} ({}), changed {} by {}; the version above stays active:",
                refused.file,
                &refused.sha256[..12],
                tandem_core::clock::format_seconds_offset(refused.at),
                refused.by
            );
            for line in refused.problems.as_deref().unwrap_or_default().lines() {
                println!("                   {line}");
            }
        }
        println!("  last poll        {left}: {}", ago(pair.last_poll[0]));
        println!("                   {right}: {}", ago(pair.last_poll[1]));
        for (i, (connector, health)) in pair.connectors.iter().zip(&pair.health).enumerate() {
            let label = if i == 0 {
                "connectors      "
            } else {
                "                "
            };
            println!(
                "  {label} {connector}: circuit {}{}, {} API calls today ({} throttled), webhooks today {} accepted, {} refused, last {}",
                health.breaker.as_str(),
                if health.breaker_opened > 0 {
                    format!(" (opened {} times)", health.breaker_opened)
                } else {
                    String::new()
                },
                health.requests_today,
                health.throttled_today,
                health.webhooks_today,
                health.webhooks_refused_today,
                ago(health.last_webhook_at),
            );
        }
        match &pair.drift {
            None => println!("  drift            never compared (tandem reconcile)"),
            Some(d) => println!(
                "  drift            compared {}: {} matched, {} different, {} missing, {} extra, {} settling",
                ago(Some(d.at)),
                d.matched,
                d.different,
                d.missing,
                d.extra,
                d.settling
            ),
        }
        if pair.healthy {
            println!("  health           ok");
        } else {
            println!("  health           UNHEALTHY: {}", pair.problems.join("; "));
        }
    }
    Ok(code)
}

fn hash_password() -> Result<ExitCode, Failure> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!("Password (the line is not hidden; pipe it in to keep it off the screen):");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 12 {
        return Err(bad_input(anyhow::anyhow!(
            "the password is shorter than 12 characters"
        )));
    }
    println!("{}", crate::http::auth::hash_password(password));
    Ok(ExitCode::SUCCESS)
}

/// Columns padded to their widest cell.
pub(crate) fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count().min(40));
        }
    }
    let line = |cells: &[String; N]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                // The last column is not padded, so it is not cut either.
                out.push_str(cell);
                continue;
            }
            let cell: String = cell.chars().take(40).collect();
            out.push_str(&format!("{cell:<width$}  "));
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// A pass report for people.
pub fn render_report(report: &PassReport) -> String {
    let mut out = String::new();
    for pair in &report.pairs {
        let [left, right] = &pair.connectors;
        out.push_str(&format!("{} ({left} <-> {right})\n", pair.pair));
        out.push_str(&format!(
            "  read        {} from {left}, {} from {right}\n",
            pair.pulled[0], pair.pulled[1]
        ));
        out.push_str(&format!(
            "  linked      {} existing pairs of records\n",
            pair.linked
        ));
        out.push_str(&format!(
            "  created     {} in {left}, {} in {right}\n",
            pair.created[0], pair.created[1]
        ));
        out.push_str(&format!(
            "  updated     {} in {left}, {} in {right}\n",
            pair.updated[0], pair.updated[1]
        ));
        out.push_str(&format!(
            "  conflicts   {} opened, {} closed, {} open\n",
            pair.conflicts_opened, pair.conflicts_closed, pair.open_conflicts
        ));
        out.push_str(&format!(
            "  failures    {} rejected (retried later), {} dead letters, {} put off; {} writes queued\n",
            pair.rejected, pair.dead_lettered, pair.deferred, pair.pending
        ));
        if !pair.skipped.is_empty() {
            let skipped: Vec<String> = pair
                .skipped
                .iter()
                .map(|(why, n)| format!("{n} {}", skip_text(why)))
                .collect();
            out.push_str(&format!("  skipped     {}\n", skipped.join(", ")));
        }
        for problem in &pair.problems {
            out.push_str(&format!("  problem     {problem}\n"));
        }
        if pair.interrupted {
            out.push_str("  (stopped early; the next pass continues from here)\n");
        }
    }
    out.push_str(&format!(
        "pass took {:.1} s\n",
        report.elapsed_ms as f64 / 1000.0
    ));
    out
}

fn skip_text(why: &str) -> &str {
    match why {
        "nokey" => "without an email address",
        "archived" => "archived on the other side",
        "nocreate" => "not created (policy)",
        "keytaken" => "whose email is linked to another record already",
        "gone" => "whose linked record is archived on the other side",
        other => other,
    }
}

async fn serve_sim(sim: SimCommand) -> Result<ExitCode, Failure> {
    let read_seed = |path: &Option<PathBuf>| -> Result<Option<(String, PathBuf)>, Failure> {
        path.as_ref()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the seed file {}", p.display()))
                    .map_err(bad_input)?;
                Ok((text, p.clone()))
            })
            .transpose()
    };
    let listen = match &sim {
        SimCommand::Hubspot { listen, .. } | SimCommand::Mailchimp { listen, .. } => listen.clone(),
    };
    let listener = tokio::net::TcpListener::bind(listen.as_str())
        .await
        .with_context(|| format!("cannot listen on {listen}"))
        .map_err(bad_input)?;
    let address = listener.local_addr()?;
    let shutdown = shutdown_on_ctrl_c();
    let stopped = async move { shutdown.cancelled().await };
    // The first line on standard output is the base URL, for scripts that start a simulator on port 0.
    match sim {
        SimCommand::Hubspot {
            seed,
            token,
            rate_limit,
            search_rate_limit,
            daily_limit,
            latency_ms,
            ..
        } => {
            let window = |limit: RateArg| limit.0.map(|l| (l.requests, l.per));
            let sim = tandem_hubspot::sim::HubSpotSim::new(tandem_hubspot::sim::SimConfig {
                token: token.clone(),
                rate_limit: window(rate_limit),
                search_rate_limit: window(search_rate_limit),
                daily_limit,
                latency: std::time::Duration::from_millis(latency_ms),
                ..Default::default()
            });
            if let Some((text, path)) = read_seed(&seed)? {
                let seed = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a HubSpot seed", path.display()))
                    .map_err(bad_input)?;
                sim.seed(seed)
                    .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", path.display())))?;
            }
            println!("http://{address}");
            eprintln!(
                "HubSpot simulator with {} contacts on http://{address} (token {token}); Ctrl-C stops it.",
                sim.contacts().len()
            );
            sim.serve(listener, stopped).await?;
        }
        SimCommand::Mailchimp {
            seed,
            api_key,
            list_id,
            max_connections,
            latency_ms,
            ..
        } => {
            let config = tandem_mailchimp::sim::SimConfig {
                api_key: api_key.clone(),
                list_id: list_id.clone(),
                max_connections: (max_connections > 0).then_some(max_connections),
                latency: std::time::Duration::from_millis(latency_ms),
                ..Default::default()
            };
            let sim = tandem_mailchimp::sim::MailchimpSim::new(config);
            if let Some((text, path)) = read_seed(&seed)? {
                let seed = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a Mailchimp seed", path.display()))
                    .map_err(bad_input)?;
                sim.seed(seed)
                    .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", path.display())))?;
            }
            println!("http://{address}/3.0");
            eprintln!(
                "Mailchimp simulator with {} members on http://{address}/3.0 (list {list_id}, API key {api_key}); Ctrl-C stops it.",
                sim.members().len()
            );
            sim.serve(listener, stopped).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
