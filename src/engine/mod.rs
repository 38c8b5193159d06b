//! The engine: one pass pulls changes from both sides of every pair, stages
//! them durably with the cursors, reconciles them in chunks, and flushes the
//! outbox in batches; `run` repeats passes until shutdown.
//!
//! The engine decides nothing itself: `plan` and `reconcile` decide, the store
//! remembers, connectors talk to the systems. Every step commits before the
//! next begins, so a crash anywhere resumes from the last commit: at worst a
//! write is sent twice, and every write is idempotent.

pub mod connectors;
mod drift;
mod migrate;
mod plan;
mod reload;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tandem_core::{ConnectorError, ErrorKind, Millis, Record, TrafficStats, Write, normalize_key};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

pub use connectors::{AnyConnector, ConfigSchemas, Reads};
pub use drift::{Difference, DriftReport, Extra, Missing, Progress};
pub use migrate::{
    Altered, CopyCounts, CopyOutcome, FieldChecksum, MigrateError, MigrateProgress,
    MigrationReport, SpotCheck, Validation,
};
pub use plan::{Item, Skip, confirmed_base, needs_dates, plan};

use crate::store::Change;

use crate::config::{Config, EngineSettings};
use crate::location::{Located, Problems};
use crate::policy::{self, Policy};
use crate::side::Side;
use crate::store::{Finish, Store, StoreError, StoreHandle};

/// Records reconciled per store transaction.
const CHUNK: usize = 500;
/// How often a running engine looks at its policy files.
const POLICY_CHECK: Duration = Duration::from_secs(2);
/// Distinct problems kept in a pass report.
const KEPT_ERRORS: usize = 10;

/// Where time comes from: the system clock, or a hand-driven one for tests.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock that moves only when told.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `at`.
    pub fn manual(at: Millis) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(at)))
    }

    /// Now, in milliseconds.
    pub fn now(&self) -> Millis {
        match self {
            Clock::System => tandem_core::clock::now_millis(),
            Clock::Manual(at) => at.load(Ordering::SeqCst),
        }
    }

    /// Move a manual clock forward; the system clock ignores this.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(at) = self {
            at.fetch_add(by.as_millis() as Millis, Ordering::SeqCst);
        }
    }
}

/// Why the engine could not start. Nothing was written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The config or a policy file is wrong.
    #[error(transparent)]
    Files(#[from] Problems),
    /// A connector setting or credential is wrong, or a system refused or could not be reached.
    #[error("{0}")]
    Connector(Located),
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// A system refused our credentials or settings: an operator must act.
    #[error("pair {pair}: {error}")]
    Fatal {
        /// The pair.
        pair: String,
        /// The error.
        error: ConnectorError,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A system could not be read in full just now (network, 5xx, throttling);
    /// only a full comparison (`tandem reconcile`) fails this way.
    #[error("pair {pair}: {error}")]
    Unavailable {
        /// The pair.
        pair: String,
        /// The error.
        error: ConnectorError,
    },
}

/// What one pass did to one pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PairReport {
    /// The pair.
    pub pair: String,
    /// The connectors (left, right).
    pub connectors: [String; 2],
    /// Records read, by side.
    pub pulled: [usize; 2],
    /// Webhook hints acted on, by side.
    pub hinted: [usize; 2],
    /// Pairs of existing records linked for the first time.
    pub linked: usize,
    /// Records created, by the side they were created on.
    pub created: [usize; 2],
    /// Records updated, by the side they were updated on.
    pub updated: [usize; 2],
    /// Records archived or deleted by tandem (as the policy asks), by side.
    pub removed: [usize; 2],
    /// Conflicts opened.
    pub conflicts_opened: usize,
    /// Conflicts closed because both sides came to agree.
    pub conflicts_closed: usize,
    /// Conflicts open after the pass.
    pub open_conflicts: u64,
    /// Writes a system rejected this pass (retried later).
    pub rejected: usize,
    /// Writes parked as dead letters this pass.
    pub dead_lettered: usize,
    /// Writes put off because a system was unavailable or throttling.
    pub deferred: usize,
    /// Writes still queued after the pass.
    pub pending: u64,
    /// Archives and deletes held for a person's approval, by side.
    pub held_removals: [usize; 2],
    /// Links decided again under a newly activated policy version.
    pub redecided: usize,
    /// Records skipped, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// A sample of the problems met, for people.
    pub problems: Vec<String>,
    /// Whether the pass stopped early for shutdown.
    pub interrupted: bool,
    /// Milliseconds spent pulling, reconciling and writing.
    pub timings: Timings,
    /// Requests made to each side's API in this pass, and throttling answers met.
    pub traffic: [TrafficStats; 2],
    /// Each side's circuit breaker after the pass.
    pub breakers: [tandem_core::breaker::BreakerView; 2],
}

/// Where a pass's time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// Reading changes and staging them, by side.
    pub pull_ms: [u64; 2],
    /// Deciding and recording decisions (lookups included).
    pub reconcile_ms: u64,
    /// Sending writes and recording their outcomes, by side.
    pub flush_ms: [u64; 2],
}

impl PairReport {
    fn problem(&mut self, text: String) {
        if self.problems.len() < KEPT_ERRORS && !self.problems.contains(&text) {
            self.problems.push(text);
        }
    }

    /// Writes made in this pass, both sides.
    pub fn writes(&self) -> usize {
        self.created.iter().chain(&self.updated).sum()
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PassReport {
    /// One report per pair.
    pub pairs: Vec<PairReport>,
    /// How long the pass took.
    pub elapsed_ms: u64,
}

impl PassReport {
    /// Writes made, every pair.
    pub fn writes(&self) -> usize {
        self.pairs.iter().map(PairReport::writes).sum()
    }
}

/// A ready engine: config and policies valid, connectors checked, store open.
pub struct Engine {
    store: StoreHandle,
    connectors: BTreeMap<String, Arc<AnyConnector>>,
    /// The active policies; a reload replaces one.
    pairs: std::sync::RwLock<Vec<Arc<Policy>>>,
    /// The policy files, when the engine started from a config.
    watch: Option<reload::Watch>,
    settings: EngineSettings,
    clock: Clock,
    /// Woken when a webhook recorded new hints.
    nudge: tokio::sync::Notify,
    /// When a webhook about a record was received, by (pair, side, record id),
    /// until a write it caused is confirmed: the webhook-to-write latency.
    heard: std::sync::Mutex<HashMap<(String, Side, String), Millis>>,
    /// Passes started, to number them in logs.
    passes: std::sync::atomic::AtomicU64,
}

/// How long a webhook's arrival is remembered waiting for a write it causes.
const HEARD_MEMORY: Millis = 3_600_000;

/// How the event id of a hint the engine makes for itself begins when a write
/// found its record missing. Such hints name records to read again; no
/// webhook brought them.
pub(crate) const MISSING_HINT: &str = "missing:";
/// The same, for a repair `tandem reconcile --fix` asks for.
pub(crate) const RECONCILE_HINT: &str = "reconcile:";

/// Whether the engine made this hint itself (no webhook brought it).
fn is_own_hint(hint: &tandem_core::Hint) -> bool {
    [MISSING_HINT, RECONCILE_HINT]
        .iter()
        .any(|own| hint.event_id.starts_with(own))
}

/// How long a processed hint is remembered, so that a redelivery is still recognised
/// (HubSpot retries for about a day).
const HINT_MEMORY: Duration = Duration::from_secs(48 * 3600);

/// Compile every pair's policy against a config.
pub fn load_policies(config: &Config) -> Result<Vec<Policy>, Problems> {
    let schemas = ConfigSchemas(config);
    let mut problems = Vec::new();
    let mut policies: Vec<Policy> = Vec::new();
    for path in &config.pairs {
        match policy::load(path, &schemas) {
            Ok(policy) => {
                if policies.iter().any(|p| p.name == policy.name) {
                    problems.push(
                        Located::file(
                            path,
                            format!("another pair is already named `{}`", policy.name),
                        )
                        .hint("set a distinct `name` in one of the policies"),
                    );
                }
                policies.push(policy);
            }
            Err(Problems(found)) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(policies)
    } else {
        Err(Problems(problems))
    }
}

impl Engine {
    /// Validate everything, check that every system answers, then open the store.
    /// On error nothing has been written anywhere.
    pub async fn start(config: &Config, clock: Clock) -> Result<Engine, SetupError> {
        let policies = load_policies(config)?;
        let reads = Reads::of(&policies);
        let built = AnyConnector::build_all(config, &reads).map_err(SetupError::Connector)?;
        for (name, connector) in &built {
            let settings = &config.connectors[name];
            if let Err(error) = connector.check().await {
                let common = settings.common();
                let (place, setting) = match error {
                    ConnectorError::Auth { .. } => (
                        common.credential.at.clone(),
                        common.credential.setting.clone(),
                    ),
                    _ => (
                        common.base_url_at.clone(),
                        format!("connectors.{name}.base_url"),
                    ),
                };
                return Err(SetupError::Connector(Located {
                    message: format!("{setting}: {error}"),
                    ..place
                }));
            }
        }
        let store = Store::open(&config.store_path)?;
        let watch = reload::Watch::new(config, &policies);
        let mut engine = Engine::assemble(store, built, policies, config.engine, clock);
        engine.watch = Some(watch);
        engine.record_starting_versions().await?;
        Ok(engine)
    }

    /// An engine from parts, for tests and tools that build their own connectors.
    pub fn assemble(
        store: Store,
        connectors: BTreeMap<String, AnyConnector>,
        pairs: Vec<Policy>,
        settings: EngineSettings,
        clock: Clock,
    ) -> Engine {
        Engine {
            store: StoreHandle::new(store),
            connectors: connectors
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            pairs: std::sync::RwLock::new(pairs.into_iter().map(Arc::new).collect()),
            watch: None,
            settings,
            clock,
            nudge: tokio::sync::Notify::new(),
            heard: Default::default(),
            passes: Default::default(),
        }
    }

    /// The active policies, one per pair.
    pub fn policies(&self) -> Vec<Arc<Policy>> {
        self.pairs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where the circuit breaker of the connector of this name stands.
    pub fn breaker(&self, connector: &str) -> Option<tandem_core::breaker::BreakerView> {
        self.connectors.get(connector).map(|c| c.breaker())
    }

    /// Requests made and throttled so far by the connector of this name.
    pub fn traffic(&self, connector: &str) -> Option<TrafficStats> {
        self.connectors.get(connector).map(|c| c.traffic())
    }

    /// The store, for reading state.
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// One pass over every pair. Stops early, at a safe point, when `shutdown` fires.
    pub async fn pass(&self, shutdown: &CancellationToken) -> Result<PassReport, PassError> {
        self.pass_with(true, true, shutdown).await
    }

    /// A pass that acts on recorded webhook hints only, without polling.
    pub async fn hint_pass(&self, shutdown: &CancellationToken) -> Result<PassReport, PassError> {
        self.pass_with(false, true, shutdown).await
    }

    /// A pass that reads both systems and decides, queueing its writes in the
    /// outbox, but sends none: what `tandem plan` shows, run on a copy of the store.
    pub async fn dry_pass(&self) -> Result<PassReport, PassError> {
        self.pass_with(true, false, &CancellationToken::new()).await
    }

    async fn pass_with(
        &self,
        poll: bool,
        send: bool,
        shutdown: &CancellationToken,
    ) -> Result<PassReport, PassError> {
        let number = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
        let kind = match (poll, send) {
            (true, true) => "full",
            (false, _) => "webhooks",
            (true, false) => "dry",
        };
        self.pass_inner(poll, send, shutdown)
            .instrument(info_span!("pass", pass = number, kind))
            .await
    }

    async fn pass_inner(
        &self,
        poll: bool,
        send: bool,
        shutdown: &CancellationToken,
    ) -> Result<PassReport, PassError> {
        let started = std::time::Instant::now();
        let mut report = PassReport::default();
        self.reload_policies().await?;
        for policy in &self.policies() {
            let span = info_span!("pair", pair = %policy.name);
            let pair = self
                .pass_pair(policy, poll, send, shutdown)
                .instrument(span)
                .await?;
            report.pairs.push(pair);
            if shutdown.is_cancelled() {
                break;
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// A full pass every poll interval, and a hint pass whenever webhooks bring
    /// hints in between, until `shutdown` fires; `on_pass` sees each report.
    /// Beside them, both systems are compared in full every `reconcile_every`.
    /// Passing failures (network, throttling) are handled inside a pass; a fatal one ends the run.
    pub async fn run(
        &self,
        shutdown: CancellationToken,
        on_pass: impl FnMut(&PassReport),
    ) -> Result<(), PassError> {
        // The scheduled comparison lists both systems in full, which can take
        // minutes: it runs beside the passes, so webhooks keep being acted on.
        let stop = shutdown.child_token();
        let passes = async {
            let ended = self.pass_loop(&stop, on_pass).await;
            stop.cancel();
            ended
        };
        let comparisons = async {
            let ended = self.drift_loop(&stop).await;
            if ended.is_err() {
                stop.cancel();
            }
            ended
        };
        let (passes, comparisons) = tokio::join!(passes, comparisons);
        passes.and(comparisons)?;
        info!("Stopped.");
        Ok(())
    }

    /// Passes, full ones every poll interval and hint passes between, until `stop`.
    async fn pass_loop(
        &self,
        stop: &CancellationToken,
        mut on_pass: impl FnMut(&PassReport),
    ) -> Result<(), PassError> {
        let mut next_poll = tokio::time::Instant::now();
        while !stop.is_cancelled() {
            let report = if tokio::time::Instant::now() >= next_poll {
                next_poll = tokio::time::Instant::now() + self.settings.poll_interval;
                self.pass(stop).await?
            } else {
                self.hint_pass(stop).await?
            };
            on_pass(&report);
            // Policy files are looked at every few seconds, even between polls.
            let wake = if self.watch.is_some() {
                next_poll.min(tokio::time::Instant::now() + POLICY_CHECK)
            } else {
                next_poll
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(wake) => {}
                () = self.nudge.notified() => {}
            }
        }
        Ok(())
    }

    /// The full comparison every `reconcile_every`, until `stop`. The first
    /// pass reads everything anyway: the first comparison comes one interval later.
    async fn drift_loop(&self, stop: &CancellationToken) -> Result<(), PassError> {
        let Some(every) = self.settings.reconcile_every else {
            return Ok(());
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
            let mut quiet = ();
            let compared = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                compared = self.drift(false, &mut quiet) => compared,
            };
            match compared {
                Ok(reports) => {
                    for report in reports {
                        let c = report.counts;
                        if report.clean() {
                            info!(pair = %report.pair, matched = c.matched, "Both systems match the state.");
                        } else {
                            warn!(pair = %report.pair, different = c.different, missing = c.missing, extra = c.extra, "The systems drifted from the state; `tandem reconcile --fix` stages repairs.");
                        }
                    }
                }
                Err(PassError::Fatal { pair, error }) => {
                    return Err(PassError::Fatal { pair, error });
                }
                Err(error) => {
                    warn!(%error, "The scheduled comparison failed; it runs again next interval.")
                }
            }
        }
    }

    /// Record hints a verified webhook brought for `connector`, for every pair that
    /// uses it, and wake the run loop. Returns how many were new (not redeliveries).
    pub async fn record_hints(
        &self,
        connector: &str,
        hints: Vec<tandem_core::Hint>,
    ) -> Result<usize, StoreError> {
        let targets: Vec<(String, Side)> = self
            .policies()
            .iter()
            .flat_map(|p| {
                Side::BOTH
                    .into_iter()
                    .filter(|s| p.connector(*s) == connector)
                    .map(|s| (p.name.clone(), s))
            })
            .collect();
        let (now, name) = (self.clock.now(), connector.to_string());
        let new = self
            .store
            .call(move |s| {
                let new = s.record_hints(&targets, &hints, now)?;
                s.note_webhook(&name, true, now)?;
                Ok(new)
            })
            .await?;
        if new > 0 {
            self.nudge.notify_one();
        }
        Ok(new)
    }

    /// Count a webhook delivery the listener refused (signature, age, unreadable).
    pub async fn note_refused_webhook(&self, connector: &str) -> Result<(), StoreError> {
        let (now, name) = (self.clock.now(), connector.to_string());
        self.store
            .call(move |s| s.note_webhook(&name, false, now))
            .await
    }

    /// Remember when the webhooks that named these records arrived (the
    /// earliest per record), and forget arrivals no write followed for an hour.
    fn note_heard(
        &self,
        pair: &str,
        side: Side,
        hints: &[(&tandem_core::Hint, Millis)],
        records: &[Record],
    ) {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        heard.retain(|_, at| now - *at < HEARD_MEMORY);
        for record in records {
            let key = record.key.as_deref().and_then(normalize_key);
            let arrived = hints
                .iter()
                .filter(|(hint, _)| !is_own_hint(hint))
                .filter(|(hint, _)| match &hint.record {
                    tandem_core::RecordRef::Id(id) => id == &record.id,
                    tandem_core::RecordRef::Key(k) => normalize_key(k) == key,
                })
                .map(|(_, at)| *at)
                .min();
            if let Some(at) = arrived {
                let entry = heard
                    .entry((pair.to_string(), side, record.id.clone()))
                    .or_insert(at);
                *entry = (*entry).min(at);
            }
        }
    }

    /// Time the confirmed writes to `side` whose change a webhook brought,
    /// from the webhook's arrival.
    async fn observe_heard(&self, policy: &Policy, side: Side, links: Vec<i64>) {
        if links.is_empty() || self.heard.lock().map_or(true, |h| h.is_empty()) {
            return;
        }
        let Ok(found) = self
            .store
            .call(move |s| {
                links
                    .into_iter()
                    .map(|id| s.link(id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
        else {
            return;
        };
        let now = self.clock.now();
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        for link in found.into_iter().flatten() {
            let Some(source) = link.id_on(side.other()) else {
                continue;
            };
            let key = (policy.name.clone(), side.other(), source.to_string());
            if let Some(at) = heard.remove(&key) {
                crate::telemetry::record_webhook_to_write(
                    &policy.name,
                    policy.connector(side),
                    Duration::from_millis((now - at).max(0) as u64),
                );
            }
        }
    }

    /// Fetch the records that pending hints name and stage them, batch by batch.
    /// A hint whose record cannot be found is done: absence never means deletion,
    /// except for a record the vendor says was merged away.
    async fn process_hints(
        &self,
        policy: &Policy,
        report: &mut PairReport,
    ) -> Result<(), PullError> {
        let until = self.store.call(|s| s.newest_hint()).await?;
        loop {
            let pair = policy.name.clone();
            let pending = self
                .store
                .call(move |s| s.pending_hints(&pair, until, 500))
                .await?;
            if pending.is_empty() {
                return Ok(());
            }
            let mut fetched = Vec::new();
            for side in Side::BOTH {
                let hints: Vec<(&tandem_core::Hint, Millis)> = pending
                    .iter()
                    .filter(|(_, s, _, _)| *s == side)
                    .map(|(_, _, h, at)| (h, *at))
                    .collect();
                if hints.is_empty() {
                    continue;
                }
                report.hinted[side as usize] += hints.len();
                let mut ids: Vec<String> = Vec::new();
                let mut keys: Vec<String> = Vec::new();
                for (hint, _) in &hints {
                    match &hint.record {
                        tandem_core::RecordRef::Id(id) if !ids.contains(id) => ids.push(id.clone()),
                        tandem_core::RecordRef::Key(key) if !keys.contains(key) => {
                            keys.push(key.clone())
                        }
                        _ => {}
                    }
                }
                let connector = self.connector(policy, side);
                let mut records = connector.fetch(&ids).await?;
                records.extend(connector.lookup(&keys).await?);
                for (hint, _) in &hints {
                    // Merged away and no longer readable: the merge event itself says it is gone.
                    if let (tandem_core::HintKind::Merged { .. }, tandem_core::RecordRef::Id(id)) =
                        (&hint.kind, &hint.record)
                        && !records.iter().any(|r| &r.id == id)
                    {
                        records.push(Record {
                            id: id.clone(),
                            key: None,
                            fields: Default::default(),
                            updated_at: hint.occurred_at,
                            changed_at: Default::default(),
                            standing: tandem_core::Standing::Archived,
                        });
                    }
                }
                self.note_heard(&policy.name, side, &hints, &records);
                fetched.push((side, records));
            }
            let done: Vec<i64> = pending.iter().map(|(id, _, _, _)| *id).collect();
            let (pair, now) = (policy.name.clone(), self.clock.now());
            let forget = now - HINT_MEMORY.as_millis() as Millis;
            self.store
                .call(move |s| s.stage_hinted(&pair, &fetched, &done, forget, now))
                .await?;
        }
    }

    fn connector(&self, policy: &Policy, side: Side) -> &Arc<AnyConnector> {
        &self.connectors[policy.connector(side)]
    }

    async fn pass_pair(
        &self,
        policy: &Arc<Policy>,
        poll: bool,
        send: bool,
        shutdown: &CancellationToken,
    ) -> Result<PairReport, PassError> {
        let mut report = PairReport {
            pair: policy.name.clone(),
            connectors: [policy.left.clone(), policy.right.clone()],
            ..PairReport::default()
        };
        let fatal = |error: ConnectorError| PassError::Fatal {
            pair: policy.name.clone(),
            error,
        };
        let pass_started = std::time::Instant::now();
        let mut fully_listed = [false, false];
        let traffic_before = Side::BOTH.map(|side| self.connector(policy, side).traffic());
        match self.process_hints(policy, &mut report).await {
            Ok(()) => {}
            Err(PullError::Store(e)) => return Err(e.into()),
            Err(PullError::Connector(e)) if e.kind() == ErrorKind::Fatal => return Err(fatal(e)),
            Err(PullError::Connector(e)) => {
                warn!(error = %e, "Fetching hinted records failed; the hints wait for the next pass.");
                report.problem(format!("webhook fetch: {e}"));
            }
        }
        for side in Side::BOTH.into_iter().filter(|_| poll) {
            let started = std::time::Instant::now();
            let pulled = self.pull(policy, side, shutdown, &mut report).await;
            report.timings.pull_ms[side as usize] = started.elapsed().as_millis() as u64;
            match pulled {
                Ok(full) => fully_listed[side as usize] = full,
                Err(PullError::Store(e)) => return Err(e.into()),
                Err(PullError::Connector(e)) if e.kind() == ErrorKind::Fatal => {
                    return Err(fatal(e));
                }
                Err(PullError::Connector(e)) => {
                    warn!(%side, error = %e, "Pull failed; what was staged is kept and the rest comes next pass.");
                    report.problem(format!("pull from {}: {e}", policy.connector(side)));
                }
            }
        }
        let started = std::time::Instant::now();
        if !shutdown.is_cancelled()
            && let Err(e) = self
                .reconcile_inbox(policy, fully_listed, shutdown, &mut report)
                .await
        {
            match e {
                PullError::Store(e) => return Err(e.into()),
                PullError::Connector(e) if e.kind() == ErrorKind::Fatal => {
                    return Err(fatal(e));
                }
                PullError::Connector(e) => {
                    warn!(error = %e, "Lookup failed; the records stay staged for the next pass.");
                    report.problem(format!("lookup: {e}"));
                }
            }
        }
        if !shutdown.is_cancelled() {
            self.apply_new_version(policy, &mut report).await?;
            self.apply_resolutions(policy, &mut report).await?;
        }
        report.timings.reconcile_ms = started.elapsed().as_millis() as u64;
        for side in Side::BOTH {
            if shutdown.is_cancelled() || !send {
                break;
            }
            let started = std::time::Instant::now();
            self.flush(policy, side, shutdown, &mut report)
                .await
                .map_err(|e| match e {
                    PullError::Store(e) => PassError::Store(e),
                    PullError::Connector(e) => fatal(e),
                })?;
            report.timings.flush_ms[side as usize] = started.elapsed().as_millis() as u64;
        }
        for side in Side::BOTH {
            let (now, before) = (
                self.connector(policy, side).traffic(),
                traffic_before[side as usize],
            );
            report.traffic[side as usize] = TrafficStats {
                requests: now.requests - before.requests,
                throttled: now.throttled - before.throttled,
            };
            report.breakers[side as usize] = self.connector(policy, side).breaker();
        }
        let (pair, connectors, traffic, breakers, now) = (
            policy.name.clone(),
            report.connectors.clone(),
            report.traffic,
            report.breakers,
            self.clock.now(),
        );
        let (counts, last_polls) = self
            .store
            .call(move |s| {
                for side in 0..2 {
                    s.note_traffic(
                        &connectors[side],
                        &breakers[side],
                        traffic[side].requests,
                        traffic[side].throttled,
                        now,
                    )?;
                }
                Ok((s.counts(&pair)?, s.last_polls(&pair)?))
            })
            .await?;
        report.open_conflicts = counts.open_conflicts;
        report.pending = counts.pending_writes;
        report.interrupted = shutdown.is_cancelled();
        crate::telemetry::record_pass(
            &report,
            &counts,
            last_polls,
            self.clock.now(),
            pass_started.elapsed().as_secs_f64(),
        );
        info!(
            pulled_left = report.pulled[0],
            pulled_right = report.pulled[1],
            linked = report.linked,
            created_left = report.created[0],
            created_right = report.created[1],
            updated_left = report.updated[0],
            updated_right = report.updated[1],
            conflicts_opened = report.conflicts_opened,
            rejected = report.rejected,
            "Pass done."
        );
        Ok(report)
    }

    /// Pull every ready page of one side into the inbox. Returns whether a full
    /// listing of that side completed in this pull.
    async fn pull(
        &self,
        policy: &Policy,
        side: Side,
        shutdown: &CancellationToken,
        report: &mut PairReport,
    ) -> Result<bool, PullError> {
        let connector = self.connector(policy, side).clone();
        let pair = policy.name.clone();
        let mut cursor = self
            .store
            .call({
                let pair = pair.clone();
                move |s| s.cursor(&pair, side)
            })
            .await?;
        loop {
            let page = connector.poll(cursor.as_deref()).await?;
            fail::fail_point!("pull-before-stage");
            report.pulled[side as usize] += page.records.len();
            let now = self.clock.now();
            let (pair2, next) = (pair.clone(), page.cursor.clone());
            let records = page.records;
            self.store
                .call(move |s| s.stage(&pair2, side, &records, &next, now))
                .await?;
            cursor = Some(page.cursor);
            if !page.more {
                return Ok(page.full_listing);
            }
            if shutdown.is_cancelled() {
                return Ok(false);
            }
        }
    }

    /// Reconcile staged records chunk by chunk.
    async fn reconcile_inbox(
        &self,
        policy: &Arc<Policy>,
        fully_listed: [bool; 2],
        shutdown: &CancellationToken,
        report: &mut PairReport,
    ) -> Result<(), PullError> {
        loop {
            let pair = policy.name.clone();
            let loops = self.settings.loop_guard(self.clock.now());
            let (mut items, consumed) = self
                .store
                .call(move |s| gather(s, &pair, CHUNK, loops))
                .await?;
            if consumed.is_empty() {
                return Ok(());
            }
            // A record with no counterpart may still have one the pulls did not bring:
            // ask the other side, unless it was just listed in full.
            for side in Side::BOTH {
                if fully_listed[side as usize] {
                    continue;
                }
                let wanted: Vec<String> = items
                    .iter()
                    .filter(|item| item.link.is_none() && item.fresh[side as usize].is_none())
                    .filter_map(|item| {
                        item.fresh[side.other() as usize]
                            .as_ref()?
                            .key
                            .as_deref()
                            .and_then(normalize_key)
                    })
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let found = self.connector(policy, side).lookup(&wanted).await?;
                // A record found by key that is linked to another record already is not this one's.
                let pair = policy.name.clone();
                let found = self
                    .store
                    .call(move |s| {
                        let mut free = Vec::with_capacity(found.len());
                        for record in found {
                            if s.link_by_id(&pair, side, &record.id)?.is_none() {
                                free.push(record);
                            }
                        }
                        Ok(free)
                    })
                    .await?;
                let mut by_key: HashMap<String, Record> = found
                    .into_iter()
                    .filter_map(|r| Some((r.key.as_deref().and_then(normalize_key)?, r)))
                    .collect();
                for item in items
                    .iter_mut()
                    .filter(|i| i.link.is_none() && i.fresh[side as usize].is_none())
                {
                    let key = item.fresh[side.other() as usize]
                        .as_ref()
                        .and_then(|r| r.key.as_deref())
                        .and_then(normalize_key);
                    if let Some(record) = key.and_then(|k| by_key.remove(&k)) {
                        item.fresh[side as usize] = Some(record);
                    }
                }
            }
            // Both sides changed a field that `newest` settles: read those records
            // again with each field's change time, where the API keeps one.
            for side in Side::BOTH {
                let connector = self.connector(policy, side);
                if !connector.keeps_history() {
                    continue;
                }
                let wanted: Vec<String> = items
                    .iter()
                    .filter(|item| needs_dates(policy, item, side))
                    .filter_map(|item| Some(item.fresh[side as usize].as_ref()?.id.clone()))
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let mut dated: HashMap<String, Record> = connector
                    .fetch(&wanted)
                    .await?
                    .into_iter()
                    .map(|r| (r.id.clone(), r))
                    .collect();
                for slot in items.iter_mut().map(|item| &mut item.fresh[side as usize]) {
                    if let Some(record) = slot.as_mut()
                        && let Some(newer) = dated.remove(&record.id)
                    {
                        *record = newer;
                    }
                }
            }
            let mut changes = Vec::with_capacity(items.len());
            let mut new_keys = std::collections::HashSet::new();
            let mut consumed = consumed;
            for item in &items {
                let planned = plan(policy, item);
                // Two new links with one key in a chunk: the second stays staged and is
                // decided in the next chunk, against the first one's link.
                if let Ok(Change {
                    link: crate::store::LinkRef::New { key, .. },
                    ..
                }) = &planned
                    && !new_keys.insert(key.clone())
                {
                    for record in item.fresh.iter().flatten() {
                        consumed.retain(|(_, id)| id != &record.id);
                    }
                    continue;
                }
                match planned {
                    Ok(change) => changes.push(change),
                    Err(skip) => {
                        *report
                            .skipped
                            .entry(format!("{skip:?}").to_lowercase())
                            .or_default() += 1;
                    }
                }
            }
            let linked = changes
                .iter()
                .filter(|c| matches!(&c.link, crate::store::LinkRef::New { ids, .. } if ids.iter().all(Option::is_some)))
                .count();
            let pair = policy.name.clone();
            let now = self.clock.now();
            // The changes come back, to name the records of a decision the store refuses.
            let (applied, changes) = self
                .store
                .call(move |s| Ok((s.apply(&pair, &changes, &consumed, now)?, changes)))
                .await?;
            fail::fail_point!("reconcile-after-apply");
            report.linked += linked;
            report.conflicts_opened += applied.conflicts_opened;
            report.conflicts_closed += applied.conflicts_closed;
            for (index, error) in &applied.failed {
                let change = &changes[*index];
                let (link, key) = match &change.link {
                    crate::store::LinkRef::Existing(id) => (Some(*id), None),
                    crate::store::LinkRef::New { key, .. } => (None, Some(key.as_str())),
                };
                let records = change
                    .seen
                    .iter()
                    .map(|(side, r)| format!("{side}:{}", r.id));
                let records = records.collect::<Vec<_>>().join(" ");
                let _record = info_span!("record", link, key, records = %records).entered();
                tracing::error!(%error, "A reconcile decision could not be stored; the record waits for its next change.");
                report.problem(format!(
                    "storing the decision for record {index} of a chunk: {error}"
                ));
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Decide every settled link again under a newly activated policy version,
    /// from the stored state, as `tandem policy preview` showed. Links with a
    /// staged record or a queued write are left to the normal flow, which
    /// decides them under the new version anyway.
    async fn apply_new_version(
        &self,
        policy: &Arc<Policy>,
        report: &mut PairReport,
    ) -> Result<(), StoreError> {
        let pair = policy.name.clone();
        let Some(version) = self
            .store
            .call(move |s| s.policy_version(&pair, true))
            .await?
            .filter(|v| v.applied_at.is_none())
        else {
            return Ok(());
        };
        let mut after = 0;
        loop {
            let (pair, policy_now) = (policy.name.clone(), policy.clone());
            let loops = self.settings.loop_guard(self.clock.now());
            let (changes, last) = self
                .store
                .call(move |s| {
                    let busy = s.links_with_writes(&pair, false)?;
                    let links = s.links_after(&pair, after, CHUNK)?;
                    let last = links.last().map(|l| l.id);
                    let mut changes = Vec::new();
                    'links: for link in links {
                        if busy.contains(&link.id) {
                            continue;
                        }
                        if s.link_is_staged(&pair, &link)? {
                            continue 'links;
                        }
                        let item = Item {
                            looping: looping(s, link.id, loops)?,
                            link: Some(s.link_state(link)?),
                            ..Item::default()
                        };
                        if let Ok(change) = plan(&policy_now, &item)
                            && !(change.writes.is_empty()
                                && change.conflicts.is_empty()
                                && change.settled.is_empty()
                                && change.agreed.is_empty())
                        {
                            changes.push(change);
                        }
                    }
                    Ok((changes, last))
                })
                .await?;
            let Some(last) = last else { break };
            after = last;
            report.redecided += changes.len();
            self.apply_decided(policy, changes, report).await?;
        }
        let now = self.clock.now();
        self.store
            .call(move |s| s.policy_applied(version.id, now))
            .await?;
        info!(
            links = report.redecided,
            "The new policy version is applied to every link."
        );
        Ok(())
    }

    /// Decide again, from the stored state, every link with a person's decision
    /// waiting: its writes go to the outbox, or the decision is over. Links with
    /// a staged record or a queued write wait for the normal flow, which sees
    /// the decision as well; links with a dead letter wait until it is retried
    /// or discarded.
    async fn apply_resolutions(
        &self,
        policy: &Arc<Policy>,
        report: &mut PairReport,
    ) -> Result<(), StoreError> {
        let (pair, policy_now) = (policy.name.clone(), policy.clone());
        let loops = self.settings.loop_guard(self.clock.now());
        let changes = self
            .store
            .call(move |s| {
                let waiting = s.links_with_pending_resolutions(&pair)?;
                if waiting.is_empty() {
                    return Ok(Vec::new());
                }
                // A dead letter waits for a person too: deciding again would only revive it.
                let busy = s.links_with_writes(&pair, true)?;
                let mut changes = Vec::new();
                for id in waiting {
                    if busy.contains(&id) {
                        continue;
                    }
                    let Some(link) = s.link(id)? else { continue };
                    if s.link_is_staged(&pair, &link)? {
                        continue;
                    }
                    let item = Item {
                        looping: looping(s, link.id, loops)?,
                        link: Some(s.link_state(link)?),
                        ..Item::default()
                    };
                    if let Ok(change) = plan(&policy_now, &item) {
                        changes.push(change);
                    }
                }
                Ok(changes)
            })
            .await?;
        if changes.is_empty() {
            return Ok(());
        }
        self.apply_decided(policy, changes, report).await
    }

    /// Apply decisions made from the stored state (no inbox row is consumed).
    async fn apply_decided(
        &self,
        policy: &Policy,
        changes: Vec<Change>,
        report: &mut PairReport,
    ) -> Result<(), StoreError> {
        let (pair, now) = (policy.name.clone(), self.clock.now());
        let applied = self
            .store
            .call(move |s| s.apply(&pair, &changes, &[], now))
            .await?;
        report.conflicts_opened += applied.conflicts_opened;
        report.conflicts_closed += applied.conflicts_closed;
        Ok(())
    }

    /// Send due writes to one side, batch by batch, and record each outcome.
    async fn flush(
        &self,
        policy: &Arc<Policy>,
        side: Side,
        shutdown: &CancellationToken,
        report: &mut PairReport,
    ) -> Result<(), PullError> {
        let connector = self.connector(policy, side).clone();
        let batch = connector.write_batch();
        // Many archives or deletes at once are held until a person approves them.
        let pair = policy.name.clone();
        let (waiting, links) = self
            .store
            .call(move |s| Ok((s.unapproved_removals(&pair, side)?, s.counts(&pair)?.links)))
            .await?;
        let allowed = self.settings.removals_allowed(links);
        let hold = waiting > allowed;
        if hold {
            report.held_removals[side as usize] = waiting as usize;
            warn!(
                %side,
                waiting,
                allowed,
                "Archives and deletes held until a person approves them (tandem removals approve)."
            );
            report.problem(format!(
                "{waiting} archives or deletes on {} wait for approval (more than {allowed})",
                policy.connector(side)
            ));
        }
        loop {
            let (pair, now) = (policy.name.clone(), self.clock.now());
            let rows = self
                .store
                .call(move |s| s.due_writes(&pair, side, now, batch, hold))
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let writes: Vec<Write> = rows
                .iter()
                .map(|row| Write {
                    op: row.op.clone(),
                    key: row.key.clone(),
                    fields: row.payload.clone(),
                })
                .collect();
            let now = self.clock.now();
            let sent = connector.apply(&writes).await;
            fail::fail_point!("flush-after-send");
            // Records a write found missing are read again next pass (archives
            // included), as a webhook would have them read: an archive polling
            // cannot see then tombstones the link instead of failing the write.
            let mut missing = Vec::new();
            let finishes: Vec<Finish> = match sent {
                Err(error) if error.kind() == ErrorKind::Fatal => return Err(PullError::Connector(error)),
                Err(error) => {
                    warn!(%side, error = %error, writes = rows.len(), "Writes put off.");
                    report.problem(format!("write to {}: {error}", policy.connector(side)));
                    report.deferred += rows.len();
                    let retry_at = now + connectors::transient_delay(&error, self.settings.retry_base).as_millis() as Millis;
                    rows.iter().map(|row| Finish::Deferred { row: row.id, error: error.to_string(), retry_at }).collect()
                }
                Ok(outcomes) => rows
                    .iter()
                    .zip(outcomes)
                    .map(|(row, outcome)| {
                        let target = match &row.op {
                            tandem_core::WriteOp::Update { id } | tandem_core::WriteOp::Archive { id } | tandem_core::WriteOp::DeletePermanently { id } => id.as_str(),
                            tandem_core::WriteOp::Create => "",
                        };
                        let _record = info_span!("record", key = %row.key, link = row.link_id, %side, id = target).entered();
                        match outcome {
                            Ok(record) => {
                                let tally = match row.op {
                                    tandem_core::WriteOp::Create => &mut report.created,
                                    tandem_core::WriteOp::Update { .. } => &mut report.updated,
                                    _ => &mut report.removed,
                                };
                                tally[side as usize] += 1;
                                let base = confirmed_base(policy, side, &row.sources, &row.payload, &record.fields);
                                // An update that carried the key moves the link to it.
                                let new_key = matches!(row.op, tandem_core::WriteOp::Update { .. })
                                    .then(|| row.sources.get(&policy.key_field().name)?.as_str().map(String::from))
                                    .flatten();
                                Finish::Confirmed { row: row.id, record, base, new_key }
                            }
                            Err(error) if error.kind() == ErrorKind::BadRecord => {
                                if let (ConnectorError::Missing { .. }, tandem_core::WriteOp::Update { id } | tandem_core::WriteOp::Archive { id }) = (&error, &row.op) {
                                    missing.push(tandem_core::Hint {
                                        event_id: format!("{MISSING_HINT}{}:{}", row.id, row.attempts),
                                        record: tandem_core::RecordRef::Id(id.clone()),
                                        kind: tandem_core::HintKind::Changed,
                                        occurred_at: now,
                                    });
                                }
                                let attempts = row.attempts + 1;
                                report.rejected += 1;
                                report.problem(format!("{} {} on {}: {error}", write_verb(&row.op), row.key, policy.connector(side)));
                                let retry_at = (attempts < self.settings.max_attempts).then(|| now + self.backoff(attempts));
                                if retry_at.is_none() {
                                    report.dead_lettered += 1;
                                    warn!(key = %row.key, %side, attempts, error = %error, "Write parked as a dead letter.");
                                } else {
                                    info!(key = %row.key, %side, attempts, error = %error, "Write rejected; it will be retried.");
                                }
                                Finish::Rejected { row: row.id, error: error.to_string(), retry_at }
                            }
                            Err(error) => {
                                report.deferred += 1;
                                let retry_at = now + connectors::transient_delay(&error, self.settings.retry_base).as_millis() as Millis;
                                Finish::Deferred { row: row.id, error: error.to_string(), retry_at }
                            }
                        }
                    })
                    .collect(),
            };
            let confirmed: Vec<i64> = rows
                .iter()
                .zip(&finishes)
                .filter(|(_, finish)| matches!(finish, Finish::Confirmed { .. }))
                .map(|(row, _)| row.link_id)
                .collect();
            let (pair, now) = (policy.name.clone(), self.clock.now());
            self.store
                .call(move |s| {
                    s.finish(&pair, &finishes, now)?;
                    if !missing.is_empty() {
                        s.record_hints(&[(pair.clone(), side)], &missing, now)?;
                    }
                    Ok(())
                })
                .await?;
            fail::fail_point!("flush-after-finish");
            self.observe_heard(policy, side, confirmed).await;
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    fn backoff(&self, attempts: u32) -> Millis {
        let base = self.settings.retry_base.as_millis() as Millis;
        let delay = base.saturating_mul(1 << attempts.saturating_sub(1).min(20));
        delay.min(self.settings.retry_max.as_millis() as Millis)
    }
}

fn write_verb(op: &tandem_core::WriteOp) -> &'static str {
    match op {
        tandem_core::WriteOp::Create => "create",
        tandem_core::WriteOp::Update { .. } => "update",
        tandem_core::WriteOp::Archive { .. } => "archive",
        tandem_core::WriteOp::DeletePermanently { .. } => "delete",
    }
}

/// A failure inside a pass step.
#[derive(Debug)]
enum PullError {
    Connector(ConnectorError),
    Store(StoreError),
}

impl From<ConnectorError> for PullError {
    fn from(e: ConnectorError) -> Self {
        PullError::Connector(e)
    }
}

impl From<StoreError> for PullError {
    fn from(e: StoreError) -> Self {
        PullError::Store(e)
    }
}

/// Items to plan, and the inbox rows (side, record id) they consume.
type Gathered = (Vec<Item>, Vec<(Side, String)>);

/// Take up to `limit` staged records, pair each with its link and with a staged
/// counterpart on the other side, and list every inbox row they consume.
fn gather(
    store: &mut Store,
    pair: &str,
    limit: usize,
    loops: Option<(Millis, u32)>,
) -> Result<Gathered, StoreError> {
    let rows = store.inbox_batch(pair, limit)?;
    let mut consumed: Vec<(Side, String)> = Vec::new();
    let mut taken = std::collections::HashSet::new();
    let mut items = Vec::new();
    for row in rows {
        let side = row.side;
        if !taken.insert((side, row.record.id.clone())) {
            continue;
        }
        consumed.push((side, row.record.id.clone()));
        let key = row.record.key.as_deref().and_then(normalize_key);
        let by_key = match (&key, store.link_by_id(pair, side, &row.record.id)?) {
            (_, Some(link)) => Some(link),
            (Some(key), None) => store.link_by_key(pair, key)?,
            (None, None) => None,
        };
        // A link found by key that already holds another record on this side is not this record's.
        let key_owner = by_key
            .as_ref()
            .filter(|l| l.id_on(side).is_some_and(|id| id != row.record.id))
            .map(|l| l.id);
        let key_taken = key_owner.is_some();
        let link = by_key.filter(|_| !key_taken);
        let other = side.other();
        let counterpart = match &link {
            _ if key_taken => None,
            Some(link) => match link.id_on(other) {
                Some(id) => store.inbox_find(pair, other, Some(id), None)?,
                None => None,
            },
            None => store
                .inbox_find(pair, other, None, key.as_deref())?
                // A staged record that is linked already belongs to its own link.
                .filter(|r| {
                    store
                        .link_by_id(pair, other, &r.id)
                        .ok()
                        .flatten()
                        .is_none()
                }),
        };
        let mut fresh: [Option<Record>; 2] = [None, None];
        if let Some(record) = counterpart
            && taken.insert((other, record.id.clone()))
        {
            consumed.push((other, record.id.clone()));
            fresh[other as usize] = Some(record);
        }
        fresh[side as usize] = Some(row.record);
        // Keys the records carry that other links hold: a key may not move onto them.
        let own = link.as_ref().map(|l| l.id);
        let mut taken_keys = std::collections::BTreeSet::new();
        for record in fresh.iter().flatten() {
            if let Some(key) = record.key.as_deref().and_then(normalize_key)
                && store
                    .link_by_key(pair, &key)?
                    .is_some_and(|l| Some(l.id) != own)
            {
                taken_keys.insert(key);
            }
        }
        let looping = match &link {
            Some(link) => looping(store, link.id, loops)?,
            None => Default::default(),
        };
        let link = link.map(|l| store.link_state(l)).transpose()?;
        items.push(Item {
            link,
            fresh,
            key_owner,
            taken_keys,
            looping,
        });
    }
    Ok((items, consumed))
}

/// The fields of a link the loop detector stops, under `loops` (the start of
/// its window and the returns allowed in it; `None`: off).
fn looping(
    store: &Store,
    link: i64,
    loops: Option<(Millis, u32)>,
) -> Result<std::collections::BTreeSet<String>, StoreError> {
    match loops {
        Some((since, flips)) => store.looping_fields(link, since, flips),
        None => Ok(Default::default()),
    }
}

/// Open an existing store for reading, without creating one.
pub fn open_existing_store(path: &Path) -> Result<Store, String> {
    if !path.exists() {
        return Err(format!(
            "no state store at {} yet; run `tandem sync --once` first",
            path.display()
        ));
    }
    Store::open(path).map_err(|e| e.to_string())
}
