//! The SQLite state store: every SQL statement of tandem lives here.
//!
//! One connection, in WAL mode with full sync, owned by one writer. Async code
//! reaches it through [`StoreHandle`], which runs each call on a blocking thread.
//! Every method that changes state does so in one transaction, so a crash at any
//! instant leaves either all of a step or none of it.

mod health;
mod loops;
mod migrate;
mod people;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;
use tandem_core::{FieldMap, Hint, Millis, Record, Standing, WriteOp};

use crate::reconcile::{Base, ConflictKind, FieldBase, FieldConflict};
use crate::side::Side;

pub use health::{ConnectorHealth, DriftCounts};
pub use people::{
    AuditEntry, AuditFilter, Choice, ConflictFilter, ConflictPage, ConflictRow, DeadLetter,
    PendingResolution, ResolveError, SessionRow,
};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value is not the JSON it should be.
    #[error("state store holds unreadable data: {0}")]
    Corrupt(String),
    /// The file was written by a newer tandem.
    #[error(
        "state store {path} is at schema version {found}, newer than this tandem knows ({known}); upgrade tandem"
    )]
    TooNew {
        /// The file.
        path: String,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{e}: {text:.80}")))
}

/// A linked pair of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Row id.
    pub id: i64,
    /// The normalized match key.
    pub key: String,
    /// Record ids by side (left, right); `None` while being created.
    pub ids: [Option<String>; 2],
    /// Whether the record is archived or deleted on each side; the link then stops syncing.
    pub gone: [bool; 2],
}

impl Link {
    /// The record id on `side`.
    pub fn id_on(&self, side: Side) -> Option<&str> {
        self.ids[side as usize].as_deref()
    }
}

/// The last version of one side's record the engine saw or wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Its change time.
    pub updated_at: Millis,
    /// Where it stood then.
    pub standing: Standing,
    /// Raw fields by vendor path.
    pub fields: FieldMap,
    /// When fields were set, by vendor path, where the API said.
    pub changed_at: BTreeMap<String, Millis>,
}

/// Everything the store knows of a link.
#[derive(Debug, Clone)]
pub struct LinkState {
    /// The link.
    pub link: Link,
    /// The agreed values.
    pub base: Base,
    /// Last seen versions by side (left, right).
    pub snapshots: [Option<Snapshot>; 2],
    /// Decisions of people not yet seen through, by canonical field.
    pub resolutions: BTreeMap<String, PendingResolution>,
    /// The update queued to each side (left, right) and not confirmed yet. It
    /// may have reached the system before a crash or a lost answer, and its
    /// echo is then ours, not an edit; or it may be half of a merge whose
    /// other half is confirmed, and must still be made.
    pub in_flight: [Option<InFlight>; 2],
    /// Per side, the values queued writes carried there and not yet seen confirmed.
    pub sent: [SentValues; 2],
}

/// Per canonical field, values sent to one side, each with the other side's
/// value when its write was decided: (value, source).
pub type SentValues = BTreeMap<String, Vec<(Value, Value)>>;

/// An update queued and not confirmed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InFlight {
    /// What it sends, by vendor path.
    pub payload: FieldMap,
    /// Per canonical field, the other side's value when it was decided.
    pub sources: BTreeMap<String, Value>,
}

/// A pulled record waiting to be reconciled.
#[derive(Debug, Clone)]
pub struct InboxRow {
    /// The side it came from.
    pub side: Side,
    /// The record.
    pub record: Record,
}

/// Which link a change is about.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkRef {
    /// A link the store has.
    Existing(i64),
    /// A link to create, with the ids known so far.
    New {
        /// The normalized match key.
        key: String,
        /// Record ids by side.
        ids: [Option<String>; 2],
    },
}

/// A write to queue in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWrite {
    /// The side written.
    pub side: Side,
    /// Create, or update of a record id.
    pub op: WriteOp,
    /// The record's normalized match key.
    pub key: String,
    /// Values to send, by vendor path.
    pub payload: FieldMap,
    /// Per canonical field, the other side's value when the write was decided:
    /// that side's base once the write is confirmed. For a copy it is the value
    /// written; for a merge, what the other side held before its own half.
    pub sources: BTreeMap<String, Value>,
    /// Why each field is written (the rule, or `changed`).
    pub reasons: BTreeMap<String, String>,
    /// Per canonical field, the value written (none for marks and removals).
    pub values: BTreeMap<String, Value>,
}

/// A conflict to open or refresh, with both sides' change times.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictNote {
    /// The conflict.
    pub conflict: FieldConflict,
    /// Change times (left, right).
    pub changed_at: [Millis; 2],
    /// For an ambiguous match: the contested key, and the record to decide again
    /// once that key is free.
    pub waiting: Option<(String, Side, Record)>,
}

/// Everything reconciling one link decided, applied in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The link.
    pub link: LinkRef,
    /// Records seen now, to remember as the latest versions.
    pub seen: Vec<(Side, Record)>,
    /// Fields both sides agree on: the new base (left, right).
    pub agreed: BTreeMap<String, (Value, Value)>,
    /// Writes to queue; when `reconciled`, they replace pending writes of this
    /// link, and a side with no write here loses its pending update, which an
    /// older decision made.
    pub writes: Vec<PlannedWrite>,
    /// Whether this change reconciled the link's records (and so supersedes its
    /// pending writes), rather than only noting a conflict on it.
    pub reconciled: bool,
    /// A side whose record is now archived or deleted: the link stops syncing.
    pub gone: Option<Side>,
    /// A side whose record came back: the link syncs again.
    pub restored: Option<Side>,
    /// Conflicts to open or refresh.
    pub conflicts: Vec<ConflictNote>,
    /// Fields settled without a person; their open conflicts close.
    pub settled: Vec<String>,
    /// The link's new key, when both sides now agree on a changed one.
    pub new_key: Option<String>,
    /// Fields whose decision by a person is over: `true` once both sides hold
    /// the value chosen, `false` when a side was edited again before that.
    pub resolved: Vec<(String, bool)>,
}

/// What applying changes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Links created.
    pub links_created: usize,
    /// Writes queued (new or replacing a pending one).
    pub writes_queued: usize,
    /// Conflicts opened.
    pub conflicts_opened: usize,
    /// Conflicts closed because the sides came to agree.
    pub conflicts_closed: usize,
    /// Changes that could not be applied (index in the input, why); nothing of them was kept.
    pub failed: Vec<(usize, String)>,
}

/// A queued write.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// The link.
    pub link_id: i64,
    /// The side written.
    pub side: Side,
    /// Create or update.
    pub op: WriteOp,
    /// The normalized match key.
    pub key: String,
    /// Values to send.
    pub payload: FieldMap,
    /// Source-side values per canonical field.
    pub sources: BTreeMap<String, Value>,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// How a queued write ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// The system confirmed it.
    Confirmed {
        /// The outbox row.
        row: i64,
        /// The record as the system holds it now.
        record: Record,
        /// The new base of each written field (left, right).
        base: Vec<(String, Value, Value)>,
        /// The link's new key, when the write carried a changed one.
        new_key: Option<String>,
    },
    /// The system rejected this record.
    Rejected {
        /// The outbox row.
        row: i64,
        /// Why.
        error: String,
        /// When to try again; `None` parks it as a dead letter.
        retry_at: Option<Millis>,
    },
    /// The call failed as a whole (network, throttling): try again at `retry_at`, no attempt counted.
    Deferred {
        /// The outbox row.
        row: i64,
        /// Why.
        error: String,
        /// When to try again.
        retry_at: Millis,
    },
}

/// An archive or delete waiting for a person's approval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Removal {
    /// Outbox row id.
    pub id: i64,
    /// The pair.
    pub pair: String,
    /// The side it would archive or delete on.
    pub side: Side,
    /// `archive` or `delete` (permanently).
    pub op: String,
    /// The record's match key.
    pub key: String,
    /// The record's id on that side.
    pub record: String,
    /// When it was queued.
    pub queued_at: Millis,
}

/// A version of a pair's policy file, activated or refused.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyVersion {
    /// Row id.
    pub id: i64,
    /// The pair.
    pub pair: String,
    /// The file it was read from.
    pub file: String,
    /// SHA-256 of the file's content, hex.
    pub sha256: String,
    /// `activated` or `refused`.
    pub outcome: String,
    /// Why it was refused.
    pub problems: Option<String>,
    /// The file's owner.
    pub by: String,
    /// When.
    pub at: Millis,
    /// Paths it reads (left, right).
    #[serde(skip)]
    pub paths: [Vec<String>; 2],
    /// When every link was decided again under it.
    pub applied_at: Option<Millis>,
}

/// A version to record; see [`Store::record_policy_version`].
#[derive(Debug, Clone)]
pub struct NewPolicyVersion {
    /// The pair.
    pub pair: String,
    /// The file.
    pub file: String,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// Its content.
    pub source: String,
    /// `None` to activate it, else why it is refused.
    pub problems: Option<String>,
    /// The file's owner.
    pub by: String,
    /// Paths it reads (left, right).
    pub paths: [Vec<String>; 2],
    /// Sides whose cursor is dropped on activation, so that every record is read again.
    pub reread: Vec<Side>,
}

/// Counts of one pair's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Links.
    pub links: u64,
    /// Open conflicts.
    pub open_conflicts: u64,
    /// Pending writes.
    pub pending_writes: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Records pulled and not yet reconciled.
    pub inbox: u64,
    /// Links with no open conflict and no queued or dead write.
    pub in_sync: u64,
}

/// The state store.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (creating if needed) the store at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        Self::init(conn, &path.display().to_string())
    }

    /// A store in memory, for tests.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?, ":memory:")
    }

    fn init(mut conn: Connection, name: &str) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 64 MiB of page cache: a backfill touches links, versions and the inbox for every record.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        migrate::run(&mut conn, name)?;
        Ok(Store { conn })
    }

    /// Run SQLite's integrity check; `ok` when sound.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    // ---- policy versions --------------------------------------------------

    /// Record a version of a pair's policy with an audit row, in one transaction.
    /// Activating one also drops the cursors of `reread` sides, so that the next
    /// poll reads every record with the paths the version adds.
    pub fn record_policy_version(
        &mut self,
        version: &NewPolicyVersion,
        now: Millis,
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let outcome = if version.problems.is_some() {
            "refused"
        } else {
            "activated"
        };
        tx.execute(
            "INSERT INTO policy_versions (pair, file, sha256, source, outcome, problems, by_whom, at, left_paths, right_paths)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                version.pair,
                version.file,
                version.sha256,
                version.source,
                outcome,
                version.problems,
                version.by,
                now,
                to_json(&version.paths[0]),
                to_json(&version.paths[1]),
            ],
        )?;
        let id = tx.last_insert_rowid();
        if version.problems.is_none() {
            for side in &version.reread {
                tx.execute(
                    "DELETE FROM cursors WHERE pair = ?1 AND side = ?2",
                    params![version.pair, side.as_str()],
                )?;
            }
        }
        let action = format!("policy_{outcome}");
        audit(
            &tx,
            now,
            &action,
            &version.pair,
            None,
            None,
            &serde_json::json!({
                "file": version.file,
                "sha256": version.sha256,
                "by": version.by,
                "problems": version.problems,
                "reread": version.reread.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            }),
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// A pair's newest policy version, or its newest activated one.
    pub fn policy_version(
        &self,
        pair: &str,
        activated_only: bool,
    ) -> Result<Option<PolicyVersion>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, pair, file, sha256, outcome, problems, by_whom, at, left_paths, right_paths, applied_at
                 FROM policy_versions WHERE pair = ?1 AND (NOT ?2 OR outcome = 'activated')
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![pair, activated_only], |r| {
                Ok((
                    PolicyVersion {
                        id: r.get(0)?,
                        pair: r.get(1)?,
                        file: r.get(2)?,
                        sha256: r.get(3)?,
                        outcome: r.get(4)?,
                        problems: r.get(5)?,
                        by: r.get(6)?,
                        at: r.get(7)?,
                        paths: [vec![], vec![]],
                        applied_at: r.get(10)?,
                    },
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ))
            })
            .optional()?;
        row.map(|(version, left, right)| {
            Ok(PolicyVersion {
                paths: [from_json(&left)?, from_json(&right)?],
                ..version
            })
        })
        .transpose()
    }

    /// The pair and content of the newest version activated from a file: what
    /// runs while the file itself does not compile.
    pub fn active_policy_of_file(&self, file: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT pair, source FROM policy_versions WHERE file = ?1 AND outcome = 'activated'
                 ORDER BY id DESC LIMIT 1",
                [file],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Note that every link was decided again under a version.
    pub fn policy_applied(&self, id: i64, now: Millis) -> Result<()> {
        self.conn.execute(
            "UPDATE policy_versions SET applied_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    /// Links of a pair with a write in the outbox: queued ones, and dead ones too if `dead`.
    pub fn links_with_writes(
        &self,
        pair: &str,
        dead: bool,
    ) -> Result<std::collections::HashSet<i64>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT DISTINCT link_id FROM outbox WHERE pair = ?1 AND (?2 OR status = 'pending')",
        )?;
        let rows = statement.query_map(params![pair, dead], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- cursors and inbox ------------------------------------------------

    /// The stored cursor of one side of a pair.
    pub fn cursor(&self, pair: &str, side: Side) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM cursors WHERE pair = ?1 AND side = ?2",
                params![pair, side.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stage pulled records and move the cursor past them, in one transaction.
    /// A record older than the version already seen is dropped; a newer one
    /// replaces a staged copy. Returns how many were staged.
    pub fn stage(
        &mut self,
        pair: &str,
        side: Side,
        records: &[Record],
        cursor: &str,
        now: Millis,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let staged = stage_records(&tx, pair, side, records, now)?;
        tx.execute(
            "INSERT INTO cursors (pair, side, value, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pair, side) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![pair, side.as_str(), cursor, now],
        )?;
        tx.commit()?;
        Ok(staged)
    }

    // ---- webhook hints ----------------------------------------------------

    /// Record hints for one side of some pairs; a hint seen before (same event id) is
    /// ignored. Returns how many were new.
    pub fn record_hints(
        &mut self,
        targets: &[(String, Side)],
        hints: &[Hint],
        now: Millis,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut new = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO hints (pair, side, event_id, hint, received_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (pair, side, event_id) DO NOTHING",
            )?;
            for (pair, side) in targets {
                for hint in hints {
                    new += insert.execute(params![
                        pair,
                        side.as_str(),
                        hint.event_id,
                        to_json(hint),
                        now
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(new)
    }

    /// Hints of a pair not yet acted on, oldest first, up to row `until`: (row id, side, hint).
    pub fn pending_hints(
        &self,
        pair: &str,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Side, Hint, Millis)>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, side, hint, received_at FROM hints WHERE pair = ?1 AND done = 0 AND id <= ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = statement.query_map(params![pair, until, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Millis>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (id, side, hint, received_at) = row?;
            Ok((id, parse_side(&side)?, from_json(&hint)?, received_at))
        })
        .collect()
    }

    /// The newest hint row so far: a pass acts on hints up to it, so that hints
    /// arriving meanwhile wait for the next pass instead of holding this one up.
    pub fn newest_hint(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM hints", [], |r| r.get(0))?)
    }

    /// Stage records fetched for hints and mark those hints done, in one
    /// transaction; processed hints older than `forget_before` are dropped.
    pub fn stage_hinted(
        &mut self,
        pair: &str,
        fetched: &[(Side, Vec<Record>)],
        done: &[i64],
        forget_before: Millis,
        now: Millis,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut staged = 0;
        for (side, records) in fetched {
            staged += stage_records(&tx, pair, *side, records, now)?;
        }
        {
            let mut mark = tx.prepare_cached("UPDATE hints SET done = 1 WHERE id = ?1")?;
            for id in done {
                mark.execute([id])?;
            }
        }
        tx.execute(
            "DELETE FROM hints WHERE pair = ?1 AND done = 1 AND received_at < ?2",
            params![pair, forget_before],
        )?;
        tx.commit()?;
        Ok(staged)
    }

    /// The oldest staged records of a pair, both sides.
    pub fn inbox_batch(&self, pair: &str, limit: usize) -> Result<Vec<InboxRow>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT side, record FROM inbox WHERE pair = ?1 ORDER BY received_at, side, record_id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![pair, limit as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (side, record) = row?;
            Ok(InboxRow {
                side: parse_side(&side)?,
                record: from_json(&record)?,
            })
        })
        .collect()
    }

    /// A staged record of one side, by id or else by normalized key.
    pub fn inbox_find(
        &self,
        pair: &str,
        side: Side,
        id: Option<&str>,
        key: Option<&str>,
    ) -> Result<Option<Record>> {
        let by_id = match id {
            Some(id) => self
                .conn
                .prepare_cached(
                    "SELECT record FROM inbox WHERE pair = ?1 AND side = ?2 AND record_id = ?3",
                )?
                .query_row(params![pair, side.as_str(), id], |r| r.get::<_, String>(0))
                .optional()?,
            None => None,
        };
        let found = match (by_id, key) {
            (Some(found), _) => Some(found),
            (None, Some(key)) => self
                .conn
                .prepare_cached("SELECT record FROM inbox WHERE pair = ?1 AND side = ?2 AND match_key = ?3 LIMIT 1")?
                .query_row(params![pair, side.as_str(), key], |r| r.get::<_, String>(0))
                .optional()?,
            (None, None) => None,
        };
        found.map(|text| from_json(&text)).transpose()
    }

    // ---- links ------------------------------------------------------------

    /// The link holding record `id` on `side`.
    pub fn link_by_id(&self, pair: &str, side: Side, id: &str) -> Result<Option<Link>> {
        let sql = format!(
            "SELECT id, match_key, left_id, right_id, left_gone_at, right_gone_at FROM links WHERE pair = ?1 AND {}_id = ?2",
            side.as_str()
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![pair, id], read_link)
            .optional()?)
    }

    /// The link with this normalized match key.
    pub fn link_by_key(&self, pair: &str, key: &str) -> Result<Option<Link>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, match_key, left_id, right_id, left_gone_at, right_gone_at FROM links WHERE pair = ?1 AND match_key = ?2")?
            .query_row(params![pair, key], read_link)
            .optional()?)
    }

    /// Every link of a pair, in id order.
    pub fn all_links(&self, pair: &str) -> Result<Vec<Link>> {
        let mut links = Vec::new();
        loop {
            let batch = self.links_after(pair, links.last().map_or(0, |l: &Link| l.id), 5_000)?;
            if batch.is_empty() {
                return Ok(links);
            }
            links.extend(batch);
        }
    }

    /// Up to `limit` links of a pair with ids above `after`, in id order: a way to
    /// walk every link without holding them all.
    pub fn links_after(&self, pair: &str, after: i64, limit: usize) -> Result<Vec<Link>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, match_key, left_id, right_id, left_gone_at, right_gone_at FROM links
             WHERE pair = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = statement.query_map(params![pair, after, limit as i64], read_link)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The link with this id.
    pub fn link(&self, id: i64) -> Result<Option<Link>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, match_key, left_id, right_id, left_gone_at, right_gone_at FROM links WHERE id = ?1",
            )?
            .query_row([id], read_link)
            .optional()?)
    }

    /// Whether a record of this link waits in the inbox on either side.
    pub fn link_is_staged(&self, pair: &str, link: &Link) -> Result<bool> {
        for side in Side::BOTH {
            if let Some(id) = link.id_on(side)
                && self.inbox_find(pair, side, Some(id), None)?.is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A link with its base and last seen versions.
    pub fn link_state(&self, link: Link) -> Result<LinkState> {
        let mut base = Base::new();
        let mut statement = self
            .conn
            .prepare_cached("SELECT field, left_value, right_value FROM base WHERE link_id = ?1")?;
        let rows = statement.query_map([link.id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (field, left, right) = row?;
            base.insert(
                field,
                FieldBase {
                    left: from_json(&left)?,
                    right: from_json(&right)?,
                },
            );
        }
        let mut snapshots = [None, None];
        let mut statement = self.conn.prepare_cached(
            "SELECT side, updated_at, standing, fields, changed_at FROM versions WHERE link_id = ?1",
        )?;
        let rows = statement.query_map([link.id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Millis>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        for row in rows {
            let (side, updated_at, standing, fields, changed_at) = row?;
            let standing = from_json(&format!("\"{standing}\""))?;
            snapshots[parse_side(&side)? as usize] = Some(Snapshot {
                updated_at,
                standing,
                fields: from_json(&fields)?,
                changed_at: from_json(&changed_at)?,
            });
        }
        let resolutions = self.pending_resolutions(link.id)?;
        let in_flight = self.in_flight(link.id)?;
        let sent = self.sent_values(link.id)?;
        Ok(LinkState {
            link,
            base,
            snapshots,
            resolutions,
            in_flight,
            sent,
        })
    }

    /// The update queued to each side of a link and not confirmed yet.
    fn in_flight(&self, link_id: i64) -> Result<[Option<InFlight>; 2]> {
        let mut in_flight: [Option<InFlight>; 2] = Default::default();
        let mut statement = self.conn.prepare_cached(
            "SELECT side, payload, fields FROM outbox
             WHERE link_id = ?1 AND status = 'pending' AND op = 'update'",
        )?;
        let rows = statement.query_map([link_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (side, payload, fields) = row?;
            in_flight[parse_side(&side)? as usize] = Some(InFlight {
                payload: from_json(&payload)?,
                sources: from_json(&fields)?,
            });
        }
        Ok(in_flight)
    }

    /// The values queued writes carried to each side of a link, not yet seen confirmed.
    fn sent_values(&self, link_id: i64) -> Result<[SentValues; 2]> {
        let mut sent: [SentValues; 2] = Default::default();
        let mut statement = self.conn.prepare_cached(
            "SELECT side, field, value, source FROM sent_values WHERE link_id = ?1",
        )?;
        let rows = statement.query_map([link_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (side, field, value, source) = row?;
            sent[parse_side(&side)? as usize]
                .entry(field)
                .or_default()
                .push((from_json(&value)?, from_json(&source)?));
        }
        Ok(sent)
    }

    // ---- applying decisions -----------------------------------------------

    /// Apply reconcile decisions and drop the consumed inbox rows, in one transaction.
    pub fn apply(
        &mut self,
        pair: &str,
        changes: &[Change],
        consumed: &[(Side, String)],
        now: Millis,
    ) -> Result<Applied> {
        let mut tx = self.conn.transaction()?;
        let mut applied = Applied::default();
        for (index, change) in changes.iter().enumerate() {
            // Each change under its own savepoint: one that breaks a constraint is
            // undone and reported, and the others still commit.
            let savepoint = tx.savepoint()?;
            match apply_change(&savepoint, pair, change, now, &mut applied) {
                Ok(()) => savepoint.commit()?,
                Err(StoreError::Sqlite(error)) => {
                    drop(savepoint);
                    applied.failed.push((index, error.to_string()));
                }
                Err(other) => return Err(other),
            }
        }
        {
            let mut delete = tx.prepare_cached(
                "DELETE FROM inbox WHERE pair = ?1 AND side = ?2 AND record_id = ?3",
            )?;
            for (side, id) in consumed {
                delete.execute(params![pair, side.as_str(), id])?;
            }
        }
        tx.commit()?;
        Ok(applied)
    }

    // ---- outbox -----------------------------------------------------------

    /// Make every pending write of a pair to one side due at `now` (a run
    /// resumed by hand does not wait out the backoff); how many there are.
    pub fn writes_due_now(&mut self, pair: &str, side: Side, now: Millis) -> Result<u64> {
        let changed = self.conn.execute(
            "UPDATE outbox SET next_attempt_at = MIN(next_attempt_at, ?3)
             WHERE pair = ?1 AND side = ?2 AND status = 'pending'",
            params![pair, side.as_str(), now],
        )?;
        Ok(changed as u64)
    }

    /// Writes of a pair to one side still pending, and those parked as dead letters.
    pub fn write_counts(&self, pair: &str, side: Side) -> Result<(u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(SUM(status = 'pending'), 0), COALESCE(SUM(status = 'dead'), 0)
             FROM outbox WHERE pair = ?1 AND side = ?2",
            params![pair, side.as_str()],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// Pending writes to one side that are due.
    pub fn due_writes(
        &self,
        pair: &str,
        side: Side,
        now: Millis,
        limit: usize,
        hold_removals: bool,
    ) -> Result<Vec<OutboxRow>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT o.id, o.link_id, o.op, o.target_id, o.match_key, o.payload, o.fields, o.attempts
             FROM outbox o WHERE o.pair = ?1 AND o.side = ?2 AND o.status = 'pending' AND o.next_attempt_at <= ?3
                 AND NOT (?5 AND o.op IN ('archive', 'delete') AND o.approved_by IS NULL)
             ORDER BY o.next_attempt_at, o.id LIMIT ?4",
        )?;
        let rows = statement.query_map(
            params![pair, side.as_str(), now, limit as i64, hold_removals],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, u32>(7)?,
                ))
            },
        )?;
        rows.map(|row| {
            let (id, link_id, op, target, key, payload, fields, attempts) = row?;
            let op = match (op.as_str(), target) {
                ("update", Some(id)) => WriteOp::Update { id },
                ("archive", Some(id)) => WriteOp::Archive { id },
                ("delete", Some(id)) => WriteOp::DeletePermanently { id },
                ("create", _) => WriteOp::Create,
                (other, _) => {
                    return Err(StoreError::Corrupt(format!(
                        "outbox row {id} has op {other:?} without a target"
                    )));
                }
            };
            Ok(OutboxRow {
                id,
                link_id,
                side,
                op,
                key,
                payload: from_json(&payload)?,
                sources: from_json(&fields)?,
                attempts,
            })
        })
        .collect()
    }

    /// Record how queued writes ended, in one transaction. Returns how many became dead letters.
    pub fn finish(&mut self, pair: &str, finishes: &[Finish], now: Millis) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut dead = 0;
        for finish in finishes {
            match finish {
                Finish::Confirmed {
                    row,
                    record,
                    base,
                    new_key,
                } => confirm(&tx, pair, *row, record, base, new_key.as_deref(), now)?,
                Finish::Rejected {
                    row,
                    error,
                    retry_at,
                } => {
                    let parked = retry_at.is_none();
                    tx.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, updated_at = ?3,
                             status = CASE WHEN ?4 THEN 'dead' ELSE 'pending' END,
                             next_attempt_at = COALESCE(?5, next_attempt_at)
                         WHERE id = ?1",
                        params![row, error, now, parked, retry_at],
                    )?;
                    if parked {
                        dead += 1;
                        let (link_id, side): (i64, String) = tx.query_row(
                            "SELECT link_id, side FROM outbox WHERE id = ?1",
                            [row],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )?;
                        audit(
                            &tx,
                            now,
                            "dead_letter",
                            pair,
                            Some(link_id),
                            Some(&side),
                            &serde_json::json!({ "outbox": row, "error": error }),
                        )?;
                    }
                }
                Finish::Deferred {
                    row,
                    error,
                    retry_at,
                } => {
                    tx.execute(
                        "UPDATE outbox SET last_error = ?2, next_attempt_at = ?3, updated_at = ?4 WHERE id = ?1",
                        params![row, error, retry_at, now],
                    )?;
                }
            }
        }
        fail::fail_point!("finish-before-commit");
        tx.commit()?;
        Ok(dead)
    }

    // ---- planning ------------------------------------------------------------

    /// Write a consistent copy of the whole store to `path` (a new file), even
    /// while an engine works on it.
    pub fn copy_to(&self, path: &Path) -> Result<()> {
        self.conn
            .execute("VACUUM INTO ?1", [path.display().to_string()])?;
        Ok(())
    }

    /// Every write queued for `pair`, oldest first, whatever its due time.
    pub fn queued_writes(&self, pair: &str) -> Result<Vec<OutboxRow>> {
        let mut all = Vec::new();
        for side in Side::BOTH {
            all.extend(self.due_writes(pair, side, Millis::MAX, usize::MAX >> 1, false)?);
        }
        all.sort_by_key(|row| row.id);
        Ok(all)
    }

    /// Every link as (pair, match key).
    pub fn link_keys(&self) -> Result<std::collections::BTreeSet<(String, String)>> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT pair, match_key FROM links")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    // ---- removals waiting for approval -------------------------------------

    /// Archives and deletes queued to `side` that no person approved yet.
    pub fn unapproved_removals(&self, pair: &str, side: Side) -> Result<u64> {
        let count: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM outbox WHERE pair = ?1 AND side = ?2 AND status = 'pending'
                     AND op IN ('archive', 'delete') AND approved_by IS NULL",
            )?
            .query_row(params![pair, side.as_str()], |r| r.get(0))?;
        Ok(count as u64)
    }

    /// Every queued archive and delete no person approved yet, oldest first.
    pub fn removals(&self, pair: Option<&str>) -> Result<Vec<Removal>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, pair, side, op, match_key, target_id, created_at FROM outbox
             WHERE status = 'pending' AND op IN ('archive', 'delete') AND approved_by IS NULL
                 AND (?1 IS NULL OR pair = ?1)
             ORDER BY id",
        )?;
        let rows = statement.query_map(params![pair], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Millis>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (id, pair, side, op, key, record, queued_at) = row?;
            Ok(Removal {
                id,
                pair,
                side: parse_side(&side)?,
                op,
                key,
                record: record.unwrap_or_default(),
                queued_at,
            })
        })
        .collect()
    }

    /// Approve every queued archive and delete of `pair` (or of every pair) as
    /// `who`: they are sent on the next pass. Returns how many.
    pub fn approve_removals(
        &mut self,
        pair: Option<&str>,
        who: &str,
        now: Millis,
    ) -> Result<usize> {
        self.settle_removals(
            "UPDATE outbox SET approved_by = ?2, updated_at = ?3
             WHERE status = 'pending' AND op IN ('archive', 'delete') AND approved_by IS NULL
                 AND (?1 IS NULL OR pair = ?1)
             RETURNING pair",
            params![pair, who, now],
            "removals_approved",
            who,
            now,
        )
    }

    /// Drop every queued archive and delete of `pair` (or of every pair) that no
    /// person approved, as `who`: the other records stay as they are, as with
    /// an `[on.*]` action of `mark`. Returns how many.
    pub fn cancel_removals(&mut self, pair: Option<&str>, who: &str, now: Millis) -> Result<usize> {
        self.settle_removals(
            "DELETE FROM outbox
             WHERE status = 'pending' AND op IN ('archive', 'delete') AND approved_by IS NULL
                 AND (?1 IS NULL OR pair = ?1)
             RETURNING pair",
            params![pair],
            "removals_cancelled",
            who,
            now,
        )
    }

    /// Run `sql` (which returns the pair of each row it changed) and audit it per pair.
    fn settle_removals(
        &mut self,
        sql: &str,
        values: &[&dyn rusqlite::ToSql],
        action: &str,
        who: &str,
        now: Millis,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut by_pair: BTreeMap<String, usize> = BTreeMap::new();
        {
            let mut statement = tx.prepare(sql)?;
            let rows = statement.query_map(values, |r| r.get::<_, String>(0))?;
            for row in rows {
                *by_pair.entry(row?).or_default() += 1;
            }
        }
        for (pair, count) in &by_pair {
            tx.execute(
                "INSERT INTO audit (at, actor, action, pair, link_id, side, detail)
                 VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5)",
                params![
                    now,
                    who,
                    action,
                    pair,
                    to_json(&serde_json::json!({ "count": count }))
                ],
            )?;
        }
        tx.commit()?;
        Ok(by_pair.values().sum())
    }

    // ---- reading for people ----------------------------------------------

    /// When each side's cursor last moved (a successful poll), by side.
    pub fn last_polls(&self, pair: &str) -> Result<[Option<Millis>; 2]> {
        let mut polls = [None, None];
        let mut statement = self
            .conn
            .prepare("SELECT side, updated_at FROM cursors WHERE pair = ?1")?;
        let rows = statement.query_map([pair], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Millis>(1)?))
        })?;
        for row in rows {
            let (side, at) = row?;
            polls[parse_side(&side)? as usize] = Some(at);
        }
        Ok(polls)
    }

    /// Counts of one pair's state.
    pub fn counts(&self, pair: &str) -> Result<Counts> {
        let count = |sql: &str| -> Result<u64> {
            Ok(self.conn.query_row(sql, [pair], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(Counts {
            links: count("SELECT COUNT(*) FROM links WHERE pair = ?1")?,
            open_conflicts: count(
                "SELECT COUNT(*) FROM conflicts WHERE pair = ?1 AND status = 'open'",
            )?,
            pending_writes: count(
                "SELECT COUNT(*) FROM outbox WHERE pair = ?1 AND status = 'pending'",
            )?,
            dead_letters: count("SELECT COUNT(*) FROM outbox WHERE pair = ?1 AND status = 'dead'")?,
            inbox: count("SELECT COUNT(*) FROM inbox WHERE pair = ?1")?,
            in_sync: count(
                "SELECT COUNT(*) FROM links l WHERE l.pair = ?1
                   AND NOT EXISTS (SELECT 1 FROM conflicts c WHERE c.link_id = l.id AND c.status = 'open')
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.link_id = l.id)",
            )?,
        })
    }
}

fn parse_side(text: &str) -> Result<Side> {
    Side::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown side {text:?}")))
}

fn read_link(r: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
    let gone = |i| r.get::<_, Option<Millis>>(i).map(|at| at.is_some());
    Ok(Link {
        id: r.get(0)?,
        key: r.get(1)?,
        ids: [r.get(2)?, r.get(3)?],
        gone: [gone(4)?, gone(5)?],
    })
}

/// Put records in the inbox. A record older than the version already seen is
/// dropped; a newer one replaces a staged copy. Returns how many were staged.
fn stage_records(
    tx: &Connection,
    pair: &str,
    side: Side,
    records: &[Record],
    now: Millis,
) -> Result<usize> {
    let mut seen = tx.prepare_cached(&format!(
        "SELECT v.updated_at FROM links l JOIN versions v ON v.link_id = l.id AND v.side = ?2
         WHERE l.pair = ?1 AND l.{}_id = ?3",
        side.as_str()
    ))?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO inbox (pair, side, record_id, match_key, updated_at, record, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (pair, side, record_id) DO UPDATE SET
             match_key = excluded.match_key, updated_at = excluded.updated_at,
             record = excluded.record, received_at = excluded.received_at
         WHERE excluded.updated_at >= inbox.updated_at",
    )?;
    let mut staged = 0;
    for record in records {
        let known: Option<Millis> = seen
            .query_row(params![pair, side.as_str(), record.id], |r| r.get(0))
            .optional()?;
        if known.is_some_and(|at| record.updated_at < at) {
            continue;
        }
        let key = record.key.as_deref().and_then(tandem_core::normalize_key);
        staged += insert.execute(params![
            pair,
            side.as_str(),
            record.id,
            key,
            record.updated_at,
            to_json(record),
            now
        ])?;
    }
    Ok(staged)
}

/// Record something the engine did.
fn audit(
    tx: &Connection,
    at: Millis,
    action: &str,
    pair: &str,
    link: Option<i64>,
    side: Option<&str>,
    detail: &Value,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit (at, actor, action, pair, link_id, side, detail) VALUES (?1, 'engine', ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![at, action, pair, link, side, to_json(detail)])?;
    Ok(())
}

/// When each field of `record` was set: the record's own times where it gives
/// them, else the time remembered for a field whose value has not changed since
/// it was last seen. A changed field without a time has none: the record's
/// change time stands in for it.
fn field_times(
    tx: &Connection,
    link: i64,
    side: Side,
    record: &Record,
) -> Result<BTreeMap<String, Millis>> {
    let previous: Option<(String, String)> = tx
        .prepare_cached("SELECT fields, changed_at FROM versions WHERE link_id = ?1 AND side = ?2")?
        .query_row(params![link, side.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut times = BTreeMap::new();
    if let Some((fields, changed_at)) = previous {
        let fields: FieldMap = from_json(&fields)?;
        let changed_at: BTreeMap<String, Millis> = from_json(&changed_at)?;
        times.extend(
            changed_at
                .into_iter()
                .filter(|(path, _)| fields.get(path) == record.fields.get(path)),
        );
    }
    times.extend(record.changed_at.clone());
    Ok(times)
}

fn upsert_version(
    tx: &Connection,
    link: i64,
    side: Side,
    record: &Record,
    fields: &FieldMap,
    changed_at: &BTreeMap<String, Millis>,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO versions (link_id, side, updated_at, standing, fields, changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (link_id, side) DO UPDATE SET updated_at = excluded.updated_at,
             standing = excluded.standing, fields = excluded.fields, changed_at = excluded.changed_at",
    )?
    .execute(params![
        link,
        side.as_str(),
        record.updated_at,
        record.standing.as_str(),
        to_json(fields),
        to_json(changed_at)
    ])?;
    Ok(())
}

fn upsert_base(
    tx: &Connection,
    link: i64,
    field: &str,
    left: &Value,
    right: &Value,
    now: Millis,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO base (link_id, field, left_value, right_value, agreed_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (link_id, field) DO UPDATE SET left_value = excluded.left_value,
             right_value = excluded.right_value, agreed_at = excluded.agreed_at",
    )?
    .execute(params![link, field, to_json(left), to_json(right), now])?;
    Ok(())
}

fn apply_change(
    tx: &Connection,
    pair: &str,
    change: &Change,
    now: Millis,
    applied: &mut Applied,
) -> Result<()> {
    let link = match &change.link {
        LinkRef::Existing(id) => *id,
        LinkRef::New { key, ids } => {
            tx.prepare_cached("INSERT INTO links (pair, match_key, left_id, right_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![pair, key, ids[0], ids[1], now])?;
            let id = tx.last_insert_rowid();
            applied.links_created += 1;
            audit(
                tx,
                now,
                "link",
                pair,
                Some(id),
                None,
                &serde_json::json!({ "key": key, "left": ids[0], "right": ids[1] }),
            )?;
            id
        }
    };
    for (side, record) in &change.seen {
        // A record seen for a link binds it, as when a create went through but
        // the process stopped before confirming it.
        let sql = format!(
            "UPDATE links SET {0}_id = ?2 WHERE id = ?1 AND {0}_id IS NULL",
            side.as_str()
        );
        tx.prepare_cached(&sql)?.execute(params![link, record.id])?;
        let changed_at = field_times(tx, link, *side, record)?;
        upsert_version(tx, link, *side, record, &record.fields, &changed_at)?;
    }
    if let Some(side) = change.gone {
        set_gone(tx, pair, link, side, true, now)?;
    }
    if let Some(side) = change.restored {
        set_gone(tx, pair, link, side, false, now)?;
    }
    for (field, (left, right)) in &change.agreed {
        upsert_base(tx, link, field, left, right, now)?;
        tx.prepare_cached("DELETE FROM sent_values WHERE link_id = ?1 AND field = ?2")?
            .execute(params![link, field])?;
    }
    let written: HashSet<Side> = change.writes.iter().map(|w| w.side).collect();
    let stale = Side::BOTH
        .into_iter()
        .filter(|s| change.reconciled && !written.contains(s));
    for side in stale {
        // An older decision's pending update is stale now; a dead letter stays for a person to see.
        tx.prepare_cached(
            "DELETE FROM outbox WHERE link_id = ?1 AND side = ?2 AND status = 'pending'",
        )?
        .execute(params![link, side.as_str()])?;
    }
    for write in &change.writes {
        let (op, target) = match &write.op {
            WriteOp::Create => ("create", None),
            WriteOp::Update { id } => ("update", Some(id.as_str())),
            WriteOp::Archive { id } => ("archive", Some(id.as_str())),
            WriteOp::DeletePermanently { id } => ("delete", Some(id.as_str())),
        };
        tx.prepare_cached(
            "INSERT INTO outbox (pair, link_id, side, op, target_id, match_key, payload, fields, idempotency_key,
                                 next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)
             ON CONFLICT (link_id, side) DO UPDATE SET op = excluded.op, target_id = excluded.target_id,
                 match_key = excluded.match_key, payload = excluded.payload, fields = excluded.fields,
                 status = 'pending', updated_at = excluded.updated_at",
        )?
        .execute(params![
            pair,
            link,
            write.side.as_str(),
            op,
            target,
            write.key,
            to_json(&write.payload),
            to_json(&write.sources),
            uuid::Uuid::new_v4().to_string(),
            now
        ])?;
        if matches!(write.op, WriteOp::Update { .. }) {
            for (field, value) in &write.values {
                let source = write.sources.get(field).unwrap_or(&Value::Null);
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO sent_values (link_id, side, field, value, source)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    link,
                    write.side.as_str(),
                    field,
                    to_json(value),
                    to_json(source)
                ])?;
            }
        }
        applied.writes_queued += 1;
    }
    for note in &change.conflicts {
        if open_conflict(tx, pair, link, note, now)? {
            applied.conflicts_opened += 1;
        }
    }
    if let Some(key) = &change.new_key {
        set_link_key(tx, pair, link, key, now)?;
    }
    for (field, applied) in &change.resolved {
        let outcome = if *applied { "applied" } else { "superseded" };
        let done = tx
            .prepare_cached(
                "UPDATE conflicts SET applied_at = ?3, outcome = ?4, updated_at = ?3
                 WHERE link_id = ?1 AND field = ?2 AND chosen IS NOT NULL AND applied_at IS NULL",
            )?
            .execute(params![link, field, now, outcome])?;
        if done > 0 {
            audit(
                tx,
                now,
                &format!("resolution_{outcome}"),
                pair,
                Some(link),
                None,
                &serde_json::json!({ "field": field }),
            )?;
        }
    }
    for field in &change.settled {
        let closed = tx
            .prepare_cached(
                "UPDATE conflicts SET status = 'resolved', resolution = 'converged', resolved_by = 'engine',
                     resolved_at = ?3, updated_at = ?3
                 WHERE link_id = ?1 AND field = ?2 AND kind = 'field' AND status = 'open'",
            )?
            .execute(params![link, field, now])?;
        if closed > 0 {
            applied.conflicts_closed += closed;
            audit(
                tx,
                now,
                "conflict_closed",
                pair,
                Some(link),
                None,
                &serde_json::json!({ "field": field, "resolution": "converged" }),
            )?;
        }
    }
    Ok(())
}

/// Mark a link's record gone (archived, deleted) on one side, or back.
fn set_gone(
    tx: &Connection,
    pair: &str,
    link: i64,
    side: Side,
    gone: bool,
    now: Millis,
) -> Result<()> {
    let sql = format!(
        "UPDATE links SET {}_gone_at = ?2 WHERE id = ?1",
        side.as_str()
    );
    tx.prepare_cached(&sql)?
        .execute(params![link, gone.then_some(now)])?;
    let action = if gone { "gone" } else { "restored" };
    audit(
        tx,
        now,
        action,
        pair,
        Some(link),
        Some(side.as_str()),
        &serde_json::json!({}),
    )
}

/// Open a conflict, or refresh the open one on the same link and field.
/// Returns whether one was opened.
fn open_conflict(
    tx: &Connection,
    pair: &str,
    link: i64,
    note: &ConflictNote,
    now: Millis,
) -> Result<bool> {
    let c = &note.conflict;
    let (base_left, base_right) = match &c.base {
        Some(b) => (Some(to_json(&b.left)), Some(to_json(&b.right))),
        None => (None, None),
    };
    let (kind, detail) = match &c.kind {
        ConflictKind::Field => ("field", None),
        ConflictKind::AmbiguousMatch { side, record } => {
            let mut detail = serde_json::json!({ "side": side, "record": record });
            if let Some((key, waiting_side, waiting)) = &note.waiting {
                detail["key"] = Value::String(key.clone());
                detail["waiting"] = serde_json::json!({ "side": waiting_side, "record": waiting });
            }
            ("ambiguous_match", Some(detail))
        }
    };
    let existed: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM conflicts WHERE link_id = ?1 AND field = ?2 AND kind = ?3 AND status = 'open')",
        )?
        .query_row(params![link, c.field, kind], |r| r.get(0))?;
    tx.prepare_cached(
        "INSERT INTO conflicts (pair, link_id, field, kind, detail, base_left, base_right, left_value, right_value,
                                left_changed_at, right_changed_at, rule, reason, opened_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)
         ON CONFLICT (link_id, field, kind) WHERE status = 'open' DO UPDATE SET
             detail = excluded.detail,
             left_value = excluded.left_value, right_value = excluded.right_value,
             left_changed_at = excluded.left_changed_at, right_changed_at = excluded.right_changed_at,
             reason = excluded.reason, updated_at = excluded.updated_at",
    )?
    .execute(params![
        pair,
        link,
        c.field,
        kind,
        detail.as_ref().map(to_json),
        base_left,
        base_right,
        to_json(&c.left),
        to_json(&c.right),
        note.changed_at[0],
        note.changed_at[1],
        c.rule.name(),
        c.reason,
        now
    ])?;
    if !existed {
        let detail = serde_json::json!({
            "field": c.field, "kind": kind, "left": c.left, "right": c.right,
            "rule": c.rule.name(), "reason": c.reason, "detail": detail,
        });
        audit(tx, now, "conflict_opened", pair, Some(link), None, &detail)?;
    }
    Ok(!existed)
}

/// Move a link to its new key, unless another link holds that key already.
/// The key it leaves is free: ambiguous matches waiting for it close, and their
/// records are staged again to be decided against the free key. Returns whether it moved.
fn set_link_key(tx: &Connection, pair: &str, link: i64, key: &str, now: Millis) -> Result<bool> {
    let old: Option<String> = tx
        .prepare_cached("SELECT match_key FROM links WHERE id = ?1")?
        .query_row([link], |r| r.get(0))
        .optional()?;
    let moved = tx
        .prepare_cached(
            "UPDATE links SET match_key = ?3 WHERE id = ?2 AND match_key != ?3
               AND NOT EXISTS (SELECT 1 FROM links WHERE pair = ?1 AND match_key = ?3)",
        )?
        .execute(params![pair, link, key])?;
    if moved == 0 {
        return Ok(false);
    }
    audit(
        tx,
        now,
        "rekey",
        pair,
        Some(link),
        None,
        &serde_json::json!({ "from": old, "to": key }),
    )?;
    let Some(old) = old else { return Ok(true) };
    let waiting: Vec<(i64, i64, String)> = tx
        .prepare_cached(
            "SELECT id, link_id, detail FROM conflicts WHERE pair = ?1 AND status = 'open'
               AND kind = 'ambiguous_match' AND json_extract(detail, '$.key') = ?2",
        )?
        .query_map(params![pair, old], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (conflict, conflict_link, detail) in waiting {
        let detail: Value = from_json(&detail)?;
        if let (Some(side), Some(record)) = (
            detail["waiting"]["side"].as_str().and_then(Side::parse),
            serde_json::from_value::<Record>(detail["waiting"]["record"].clone()).ok(),
        ) {
            tx.prepare_cached(
                "INSERT INTO inbox (pair, side, record_id, match_key, updated_at, record, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (pair, side, record_id) DO NOTHING",
            )?
            .execute(params![
                pair,
                side.as_str(),
                record.id,
                record.key.as_deref().and_then(tandem_core::normalize_key),
                record.updated_at,
                to_json(&record),
                now
            ])?;
        }
        tx.prepare_cached(
            "UPDATE conflicts SET status = 'resolved', resolution = 'key_released', resolved_by = 'engine',
                 resolved_at = ?2, updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![conflict, now])?;
        audit(
            tx,
            now,
            "conflict_closed",
            pair,
            Some(conflict_link),
            None,
            &serde_json::json!({ "resolution": "key_released", "key": old }),
        )?;
    }
    Ok(true)
}

fn confirm(
    tx: &Transaction<'_>,
    pair: &str,
    row: i64,
    record: &Record,
    base: &[(String, Value, Value)],
    new_key: Option<&str>,
    now: Millis,
) -> Result<()> {
    let (link, side, op, payload): (i64, String, String, String) = tx.query_row(
        "SELECT link_id, side, op, payload FROM outbox WHERE id = ?1",
        [row],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let side = parse_side(&side)?;
    if op == "create" {
        let sql = format!("UPDATE links SET {}_id = ?2 WHERE id = ?1", side.as_str());
        tx.execute(&sql, params![link, record.id])?;
    }
    // Merge what came back into the last version seen: an update's answer may hold only the written fields.
    let previous: Option<(String, String)> = tx
        .query_row(
            "SELECT fields, changed_at FROM versions WHERE link_id = ?1 AND side = ?2",
            params![link, side.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (mut fields, mut changed_at): (FieldMap, BTreeMap<String, Millis>) = match previous {
        Some((fields, changed_at)) => (from_json(&fields)?, from_json(&changed_at)?),
        None => Default::default(),
    };
    // A field just written changed with this answer, unless it says when.
    let written: FieldMap = from_json(&payload)?;
    for path in written.keys() {
        changed_at.remove(path);
    }
    changed_at.extend(record.changed_at.clone());
    fields.extend(record.fields.clone());
    upsert_version(tx, link, side, record, &fields, &changed_at)?;
    if matches!(op.as_str(), "archive" | "delete") {
        set_gone(tx, pair, link, side, true, now)?;
    }
    if op == "update" {
        loops::note_written(tx, link, base, now)?;
    }
    for (field, left, right) in base {
        upsert_base(tx, link, field, left, right, now)?;
        tx.prepare_cached(
            "DELETE FROM sent_values WHERE link_id = ?1 AND side = ?2 AND field = ?3",
        )?
        .execute(params![link, side.as_str(), field])?;
    }
    let payload: Value = from_json(&payload)?;
    audit(
        tx,
        now,
        if op == "create" { "create" } else { "update" },
        pair,
        Some(link),
        Some(side.as_str()),
        &serde_json::json!({
            "record": record.id, "written": payload,
        }),
    )?;
    if let Some(key) = new_key {
        set_link_key(tx, pair, link, key, now)?;
    }
    tx.execute("DELETE FROM outbox WHERE id = ?1", [row])?;
    Ok(())
}

/// The store behind a lock, for async code: each call runs on a blocking thread.
#[derive(Clone)]
pub struct StoreHandle {
    inner: Arc<Mutex<Store>>,
}

impl StoreHandle {
    /// Wrap a store.
    pub fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(Mutex::new(store)),
        }
    }

    /// Run `f` with the store on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside a call aborts its transaction, so the store behind a poisoned lock is sound.
            let mut store = inner
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut store)
        })
        .await
        .expect("store calls do not panic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::{HintKind, RecordRef};

    fn hint(event: &str, id: &str) -> Hint {
        Hint {
            event_id: event.into(),
            record: RecordRef::Id(id.into()),
            kind: HintKind::Changed,
            occurred_at: 1,
        }
    }

    #[test]
    fn hints_are_recorded_once_and_a_pass_takes_those_before_it_began() {
        let mut store = Store::open_in_memory().unwrap();
        let targets = [("p".to_string(), Side::Left)];
        assert_eq!(
            store
                .record_hints(&targets, &[hint("1", "a"), hint("2", "b")], 10)
                .unwrap(),
            2
        );
        assert_eq!(
            store.record_hints(&targets, &[hint("2", "b")], 11).unwrap(),
            0,
            "a redelivery is not new"
        );
        let until = store.newest_hint().unwrap();
        store.record_hints(&targets, &[hint("3", "c")], 12).unwrap();
        let pending = store.pending_hints("p", until, 100).unwrap();
        let events: Vec<&str> = pending
            .iter()
            .map(|(_, _, h, _)| h.event_id.as_str())
            .collect();
        assert_eq!(
            events,
            ["1", "2"],
            "a hint that came in later waits for the next pass"
        );

        let done: Vec<i64> = pending.iter().map(|(id, _, _, _)| *id).collect();
        let record = Record {
            id: "a".into(),
            key: Some("a@x".into()),
            fields: FieldMap::new(),
            updated_at: 5,
            changed_at: Default::default(),
            standing: tandem_core::Standing::Active,
        };
        assert_eq!(
            store
                .stage_hinted("p", &[(Side::Left, vec![record])], &done, 0, 20)
                .unwrap(),
            1
        );
        assert_eq!(store.pending_hints("p", i64::MAX, 100).unwrap().len(), 1);
        assert_eq!(store.inbox_batch("p", 10).unwrap().len(), 1);
        // Done hints are remembered (a redelivery is still recognised) until forgotten.
        assert_eq!(
            store.record_hints(&targets, &[hint("1", "a")], 30).unwrap(),
            0
        );
        store.stage_hinted("p", &[], &[], 15, 40).unwrap();
        assert_eq!(
            store.record_hints(&targets, &[hint("1", "a")], 50).unwrap(),
            1,
            "forgotten after its time"
        );
    }

    #[test]
    fn the_schema_is_sound_and_knows_its_version() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, migrate::latest());
    }

    #[test]
    fn a_store_from_a_newer_tandem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn a_fields_change_time_is_kept_while_its_value_stays() {
        let mut store = Store::open_in_memory().unwrap();
        let record = |first: &str, last: &str, changed_at: &[(&str, Millis)]| Record {
            id: "1".into(),
            key: Some("ada@example.com".into()),
            fields: [
                ("properties.firstname".to_string(), first.into()),
                ("properties.lastname".to_string(), last.into()),
            ]
            .into(),
            updated_at: 900,
            changed_at: changed_at
                .iter()
                .map(|(p, t)| (p.to_string(), *t))
                .collect(),
            standing: Standing::Active,
        };
        let seen = |link: LinkRef, record: Record| Change {
            link,
            seen: vec![(Side::Left, record)],
            agreed: BTreeMap::new(),
            writes: vec![],
            reconciled: true,
            gone: None,
            restored: None,
            conflicts: vec![],
            settled: vec![],
            new_key: None,
            resolved: vec![],
        };
        let dated = record(
            "Ada",
            "Lovelace",
            &[("properties.firstname", 100), ("properties.lastname", 200)],
        );
        let new = LinkRef::New {
            key: "ada@example.com".into(),
            ids: [Some("1".into()), None],
        };
        store.apply("p", &[seen(new, dated)], &[], 1).unwrap();
        let link = store.link_by_id("p", Side::Left, "1").unwrap().unwrap();

        // A poll brings no times; the last name changed, the first did not.
        let polled = record("Ada", "King", &[]);
        store
            .apply("p", &[seen(LinkRef::Existing(link.id), polled)], &[], 2)
            .unwrap();
        let state = store.link_state(link).unwrap();
        let snapshot = state.snapshots[0].as_ref().unwrap();
        assert_eq!(
            snapshot.changed_at,
            BTreeMap::from([("properties.firstname".to_string(), 100)]),
            "the changed last name has no time but the record's"
        );
    }
}
