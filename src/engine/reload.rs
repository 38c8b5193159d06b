//! Policy versions and live reload. Each pair's policy file is recorded in the
//! store when the engine starts and whenever its content changes, with its
//! owner and time. A valid change is activated without a restart; an invalid
//! one is refused, logged and shown by `status`, and the active version stays.
//!
//! An activated version is applied to every link: if it reads paths the last
//! version did not, the sides concerned are read again in full (their cursors
//! are dropped); otherwise the next pass decides every settled link again from
//! the stored state, as `tandem policy preview` showed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{error, info};

use super::{ConfigSchemas, Engine, Reads};
use crate::config::Config;
use crate::policy::{self, Policy};
use crate::side::Side;
use crate::store::{NewPolicyVersion, StoreError};

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The policy files an engine started from, and what it last saw in them.
pub(super) struct Watch {
    config: Config,
    state: tokio::sync::Mutex<WatchState>,
}

struct WatchState {
    files: Vec<Watched>,
    last_check: Option<Instant>,
}

struct Watched {
    file: PathBuf,
    /// The pair's name; a reload may not change it.
    pair: String,
    /// The SHA-256 of the content last looked at, activated or refused, so that
    /// one bad version is reported once.
    seen: String,
}

impl Watch {
    /// Watch the config's policy files, which compiled into `policies` (same order).
    pub(super) fn new(config: &Config, policies: &[Policy]) -> Watch {
        let files = config
            .pairs
            .iter()
            .zip(policies)
            .map(|(file, policy)| Watched {
                file: file.clone(),
                pair: policy.name.clone(),
                seen: String::new(),
            })
            .collect();
        Watch {
            config: config.clone(),
            state: tokio::sync::Mutex::new(WatchState {
                files,
                last_check: None,
            }),
        }
    }
}

/// SHA-256 of a file's content, hex.
fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Who owns a file: the person who put this version there, as far as the
/// system can tell.
fn owner(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(meta) => match uzers::get_user_by_uid(meta.uid()) {
            Some(user) => user.name().to_string_lossy().into_owned(),
            None => format!("uid {}", meta.uid()),
        },
        Err(_) => "unknown".into(),
    }
}

/// Sides on which `new` reads paths that `before` did not.
fn added_paths(before: &[Vec<String>; 2], new: &Policy) -> Vec<Side> {
    Side::BOTH
        .into_iter()
        .filter(|side| {
            new.paths(*side)
                .iter()
                .any(|p| !before[*side as usize].contains(p))
        })
        .collect()
}

impl Engine {
    /// Record each pair's policy as the engine starts, if it is not the active
    /// version already (a first start, or a file edited while stopped).
    pub(super) async fn record_starting_versions(&self) -> Result<(), StoreError> {
        let Some(watch) = &self.watch else {
            return Ok(());
        };
        let mut state = watch.state.lock().await;
        for watched in &mut state.files {
            let Ok(source) = std::fs::read_to_string(&watched.file) else {
                continue;
            };
            let sha = sha256(&source);
            watched.seen = sha.clone();
            let Some(policy) = self.policy_named(&watched.pair) else {
                continue;
            };
            self.activate(&watched.file, &source, &sha, &policy).await?;
        }
        Ok(())
    }

    /// Look at the policy files on the next pass however recently they were
    /// looked at: one was just saved.
    pub async fn recheck_policies(&self) {
        if let Some(watch) = &self.watch {
            watch.state.lock().await.last_check = None;
        }
    }

    /// Look at the policy files (at most once a second): activate a changed valid
    /// one, refuse and report a changed invalid one.
    pub(super) async fn reload_policies(&self) -> Result<(), StoreError> {
        let Some(watch) = &self.watch else {
            return Ok(());
        };
        let mut state = watch.state.lock().await;
        if state
            .last_check
            .is_some_and(|at| at.elapsed() < CHECK_EVERY)
        {
            return Ok(());
        }
        state.last_check = Some(Instant::now());
        for watched in &mut state.files {
            let source = match std::fs::read_to_string(&watched.file) {
                Ok(source) => source,
                // Mid-save, or moved away: the active version stays; look again later.
                Err(_) => continue,
            };
            let sha = sha256(&source);
            if sha == watched.seen {
                continue;
            }
            watched.seen = sha.clone();
            let compiled = policy::compile(&watched.file, &source, &ConfigSchemas(&watch.config))
                .map_err(|problems| problems.to_string())
                .and_then(|policy| {
                    let active = self.policy_named(&watched.pair);
                    match active {
                        Some(active)
                            if policy.name == active.name
                                && policy.left == active.left
                                && policy.right == active.right =>
                        {
                            Ok(policy)
                        }
                        _ => Err(format!(
                            "{}: a running engine keeps each pair's name and connectors; restart it to change them",
                            watched.file.display()
                        )),
                    }
                });
            match compiled {
                Ok(policy) => {
                    self.activate(&watched.file, &source, &sha, &policy).await?;
                    self.replace_policy(policy);
                    info!(pair = %watched.pair, file = %watched.file.display(), sha256 = %&sha[..12], "Policy reloaded.");
                }
                Err(problems) => {
                    let version = NewPolicyVersion {
                        pair: watched.pair.clone(),
                        file: watched.file.display().to_string(),
                        sha256: sha.clone(),
                        source,
                        problems: Some(problems.trim_end().to_string()),
                        by: owner(&watched.file),
                        paths: [vec![], vec![]],
                        reread: vec![],
                    };
                    let now = self.clock.now();
                    self.store
                        .call(move |s| s.record_policy_version(&version, now).map(|_| ()))
                        .await?;
                    error!(pair = %watched.pair, problems = %problems.trim_end(), "The changed policy is refused; the active one stays.");
                }
            }
        }
        Ok(())
    }

    /// Record `policy` as the pair's active version unless it is already, and
    /// say what applying it takes: reading sides again, or deciding links again.
    async fn activate(
        &self,
        file: &Path,
        source: &str,
        sha: &str,
        policy: &Policy,
    ) -> Result<(), StoreError> {
        let pair = policy.name.clone();
        let active = self
            .store
            .call({
                let pair = pair.clone();
                move |s| s.policy_version(&pair, true)
            })
            .await?;
        let unchanged = active.as_ref().is_some_and(|v| v.sha256 == sha);
        if unchanged {
            // Back to the running version after a refused one: say so, or nothing happened.
            let pair = pair.clone();
            let newest = self
                .store
                .call(move |s| s.policy_version(&pair, false))
                .await?;
            if newest.is_none_or(|v| v.outcome == "activated") {
                return Ok(());
            }
        }
        // A first version meets no links decided under another; the sides it reads
        // in addition to the last version's are read again in full.
        let reread = active
            .as_ref()
            .map_or_else(Vec::new, |v| added_paths(&v.paths, policy));
        let version = NewPolicyVersion {
            pair: pair.clone(),
            file: file.display().to_string(),
            sha256: sha.to_string(),
            source: source.to_string(),
            problems: None,
            by: owner(file),
            paths: Side::BOTH.map(|side| policy.paths(side)),
            reread: reread.clone(),
        };
        let now = self.clock.now();
        let nothing_to_redecide = active.is_none() || unchanged;
        self.store
            .call(move |s| {
                let id = s.record_policy_version(&version, now)?;
                // Nothing to decide again (a first version, or the running one again), or
                // sides read anew decide their links.
                if nothing_to_redecide || !version.reread.is_empty() {
                    s.policy_applied(id, now)?;
                }
                Ok(())
            })
            .await?;
        // The connectors read what every pair needs, this version included.
        let policies = self.policies();
        let all = policies.iter().map(|p| {
            if p.name == policy.name {
                policy
            } else {
                p.as_ref()
            }
        });
        for (connector, reads) in Reads::of(all) {
            if let Some(client) = self.connectors.get(&connector) {
                client.read(&reads);
            }
        }
        for side in &reread {
            info!(pair = %pair, connector = policy.connector(*side), "The policy reads new fields: every record of this side is read again.");
        }
        Ok(())
    }

    /// The active policy of a pair.
    /// The active policy of the pair of this name.
    pub fn policy_named(&self, pair: &str) -> Option<Arc<Policy>> {
        self.policies().into_iter().find(|p| p.name == pair)
    }

    fn replace_policy(&self, policy: Policy) {
        let mut pairs = self.pairs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = pairs.iter_mut().find(|p| p.name == policy.name) {
            *slot = Arc::new(policy);
        }
    }
}
