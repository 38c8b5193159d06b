//! What people read and decide: conflicts and their resolutions, dead letters,
//! the audit log, and sessions of the web page.

use rusqlite::{OptionalExtension, params, types::ToSql};
use serde_json::Value;
use tandem_core::Millis;

use super::{Result, Store, StoreError, from_json, parse_side, to_json};
use crate::side::Side;

/// Which conflicts to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConflictFilter {
    /// `open` (the default), `resolved` or `all`.
    pub status: Option<String>,
    /// Only this pair.
    pub pair: Option<String>,
    /// Only this canonical field.
    pub field: Option<String>,
    /// Only conflicts where this rule gave up (`manual`, `newest`, ...).
    pub rule: Option<String>,
    /// Only records whose email contains this text.
    pub search: Option<String>,
    /// At most this many (100 if unset, at most 1,000).
    pub limit: Option<usize>,
    /// Skip this many first.
    pub offset: Option<usize>,
}

impl ConflictFilter {
    /// The page size asked for, within bounds.
    pub fn page_size(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }

    /// Check the filter's values; the error says which is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self.status.as_deref() {
            None | Some("open" | "resolved" | "all") => Ok(()),
            Some(other) => Err(format!("status `{other}`: use open, resolved or all")),
        }
    }
}

/// A page of conflicts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConflictPage {
    /// How many match the filter in all.
    pub total: u64,
    /// This page, oldest first.
    pub conflicts: Vec<ConflictRow>,
}

/// An open or resolved conflict.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConflictRow {
    /// Row id.
    pub id: i64,
    /// The pair.
    pub pair: String,
    /// The link.
    pub link: i64,
    /// The match key of the record.
    pub key: String,
    /// The canonical field.
    pub field: String,
    /// `field`, or `ambiguous_match` when two records would link to one key.
    pub kind: String,
    /// For an ambiguous match: the other record (`side`, `record`) and the contested `key`.
    pub detail: Option<Value>,
    /// The base, if there was one (left, right).
    pub base: Option<(Value, Value)>,
    /// The left value.
    pub left: Value,
    /// The right value.
    pub right: Value,
    /// When each side changed it (left, right), if known.
    pub changed_at: [Option<Millis>; 2],
    /// The rule that gave up.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// `open` or `resolved`.
    pub status: String,
    /// When it was opened.
    pub opened_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// How it was resolved: `left`, `right`, `value`, `merge` by a person;
    /// `converged` or `key_released` by the engine.
    pub resolution: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<Millis>,
    /// The value a person chose.
    pub chosen: Option<Value>,
    /// When both sides held the chosen value, or it was superseded.
    pub applied_at: Option<Millis>,
    /// `applied`, or `superseded` when a side was edited again before it was written.
    pub outcome: Option<String>,
}

/// How a person settles a conflict.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "take", rename_all = "lowercase", deny_unknown_fields)]
pub enum Choice {
    /// The left side's value.
    Left,
    /// The right side's value.
    Right,
    /// A value of the person's own.
    Value {
        /// The canonical value.
        value: Value,
    },
    /// The proposed merge of two text edits.
    Merge,
}

impl Choice {
    /// The name stored as the conflict's resolution.
    pub fn name(&self) -> &'static str {
        match self {
            Choice::Left => "left",
            Choice::Right => "right",
            Choice::Value { .. } => "value",
            Choice::Merge => "merge",
        }
    }
}

/// Why a conflict could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No conflict has that id.
    #[error("no conflict {0}")]
    NotFound(i64),
    /// It is resolved already.
    #[error("conflict {0} is resolved already")]
    NotOpen(i64),
    /// The choice does not fit the conflict.
    #[error("conflict {id}: {why}")]
    Invalid {
        /// The conflict.
        id: i64,
        /// Why.
        why: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ResolveError {
    fn from(e: rusqlite::Error) -> Self {
        ResolveError::Store(e.into())
    }
}

/// A person's decision the engine has not yet seen through, for one field of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingResolution {
    /// The conflict.
    pub conflict: i64,
    /// The canonical value chosen.
    pub value: Value,
    /// What each side held when it was chosen (left, right).
    pub seen: [Value; 2],
}

/// A write parked after too many failures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// Outbox row id.
    pub id: i64,
    /// The pair.
    pub pair: String,
    /// The side written.
    pub side: Side,
    /// The record's match key.
    pub key: String,
    /// `create`, `update`, `archive` or `delete`.
    pub op: String,
    /// What it would send, by vendor path.
    pub payload: Value,
    /// Failed attempts.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was last tried.
    pub updated_at: Millis,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: Millis,
    /// Who: `engine`, or a person.
    pub actor: String,
    /// What: `link`, `create`, `update`, `conflict_opened`, `conflict_closed`,
    /// `conflict_resolved`, `resolution_applied`, `dead_letter`, `dead_letter_retried`,
    /// `dead_letter_discarded`, `policy_activated`, ...
    pub action: String,
    /// The pair.
    pub pair: Option<String>,
    /// The link concerned.
    pub link: Option<i64>,
    /// The side written, if one was.
    pub side: Option<String>,
    /// Details of the action.
    pub detail: Value,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this link.
    pub link: Option<i64>,
    /// Only entries older than this id (for paging back).
    pub before: Option<i64>,
    /// At most this many (100 if unset, at most 1,000).
    pub limit: Option<usize>,
}

/// A signed-in person, as a session knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The user name.
    pub user: String,
    /// The role.
    pub role: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// When it ends.
    pub expires_at: Millis,
}

const CONFLICT_COLUMNS: &str = "c.id, c.pair, c.link_id, l.match_key, c.field, c.kind, c.detail,
    c.base_left, c.base_right, c.left_value, c.right_value, c.left_changed_at, c.right_changed_at,
    c.rule, c.reason, c.status, c.opened_at, c.updated_at, c.resolution, c.resolved_by,
    c.resolved_at, c.chosen, c.applied_at, c.outcome";

fn read_conflict(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ConflictRow, [Option<String>; 6])> {
    let row = ConflictRow {
        id: r.get(0)?,
        pair: r.get(1)?,
        link: r.get(2)?,
        key: r.get(3)?,
        field: r.get(4)?,
        kind: r.get(5)?,
        detail: None,
        base: None,
        left: Value::Null,
        right: Value::Null,
        changed_at: [r.get(11)?, r.get(12)?],
        rule: r.get(13)?,
        reason: r.get(14)?,
        status: r.get(15)?,
        opened_at: r.get(16)?,
        updated_at: r.get(17)?,
        resolution: r.get(18)?,
        resolved_by: r.get(19)?,
        resolved_at: r.get(20)?,
        chosen: None,
        applied_at: r.get(22)?,
        outcome: r.get(23)?,
    };
    // JSON columns are read as text and parsed after, where errors can say so.
    let texts = [
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(21)?,
    ];
    Ok((row, texts))
}

fn finish_conflict((row, texts): (ConflictRow, [Option<String>; 6])) -> Result<ConflictRow> {
    let json = |text: Option<String>| text.map(|t| from_json::<Value>(&t)).transpose();
    let [detail, base_left, base_right, left, right, chosen] = texts;
    let base = match (json(base_left)?, json(base_right)?) {
        (Some(l), Some(r)) => Some((l, r)),
        _ => None,
    };
    Ok(ConflictRow {
        detail: json(detail)?,
        base,
        left: json(left)?.unwrap_or(Value::Null),
        right: json(right)?.unwrap_or(Value::Null),
        chosen: json(chosen)?,
        ..row
    })
}

fn conflict_by_id(conn: &rusqlite::Connection, id: i64) -> Result<Option<ConflictRow>> {
    let sql = format!(
        "SELECT {CONFLICT_COLUMNS} FROM conflicts c JOIN links l ON l.id = c.link_id WHERE c.id = ?1"
    );
    conn.query_row(&sql, [id], read_conflict)
        .optional()?
        .map(finish_conflict)
        .transpose()
}

/// A SQL condition and its parameters for a conflict filter.
fn conflict_where(filter: &ConflictFilter) -> (String, Vec<Box<dyn ToSql>>) {
    let mut clauses = Vec::new();
    let mut values: Vec<Box<dyn ToSql>> = Vec::new();
    match filter.status.as_deref() {
        Some("all") => {}
        Some("resolved") => clauses.push("c.status = 'resolved'".to_string()),
        _ => clauses.push("c.status = 'open'".to_string()),
    }
    let mut add = |sql: &str, value: String| {
        values.push(Box::new(value));
        clauses.push(sql.replace('?', &format!("?{}", values.len())));
    };
    if let Some(pair) = &filter.pair {
        add("c.pair = ?", pair.clone());
    }
    if let Some(field) = &filter.field {
        add("c.field = ?", field.clone());
    }
    if let Some(rule) = &filter.rule {
        add("c.rule = ?", rule.clone());
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        add("l.match_key LIKE ? ESCAPE '\\'", format!("%{escaped}%"));
    }
    (clauses.join(" AND "), values)
}

impl Store {
    /// Conflicts of every pair, open ones only unless `all`.
    pub fn conflicts(&self, all: bool) -> Result<Vec<ConflictRow>> {
        let filter = ConflictFilter {
            status: Some(if all { "all" } else { "open" }.into()),
            limit: Some(usize::MAX),
            ..ConflictFilter::default()
        };
        Ok(self.find_conflicts(&filter)?.conflicts)
    }

    /// Conflicts matching `filter`, a page of them, oldest first.
    pub fn find_conflicts(&self, filter: &ConflictFilter) -> Result<ConflictPage> {
        let (condition, values) = conflict_where(filter);
        let params: Vec<&dyn ToSql> = values.iter().map(|v| v.as_ref()).collect();
        let total: i64 = self.conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM conflicts c JOIN links l ON l.id = c.link_id WHERE {condition}"
            ),
            params.as_slice(),
            |r| r.get(0),
        )?;
        let limit = if filter.limit == Some(usize::MAX) {
            -1
        } else {
            filter.page_size() as i64
        };
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM conflicts c JOIN links l ON l.id = c.link_id
             WHERE {condition} ORDER BY c.opened_at, c.id LIMIT {limit} OFFSET {}",
            filter.offset.unwrap_or(0)
        );
        let mut statement = self.conn.prepare(&sql)?;
        let conflicts = statement
            .query_map(params.as_slice(), read_conflict)?
            .map(|row| finish_conflict(row?))
            .collect::<Result<Vec<_>>>()?;
        Ok(ConflictPage {
            total: total as u64,
            conflicts,
        })
    }

    /// One conflict.
    pub fn conflict(&self, id: i64) -> Result<Option<ConflictRow>> {
        conflict_by_id(&self.conn, id)
    }

    /// The open conflict after `id` in the queue's order (oldest first), or
    /// the first open one when `id` is the last; `None` when none is open but `id`.
    pub fn next_open_conflict(&self, id: i64) -> Result<Option<i64>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT c.id FROM conflicts c, conflicts here
             WHERE here.id = ?1 AND c.status = 'open' AND c.id != ?1
             ORDER BY (c.opened_at, c.id) <= (here.opened_at, here.id), c.opened_at, c.id
             LIMIT 1",
        )?;
        Ok(statement.query_row(params![id], |r| r.get(0)).optional()?)
    }

    /// Record a person's decision on an open field conflict: `value` is the
    /// canonical value chosen. Nothing is written to either system here: the
    /// engine writes the value through the outbox on its next pass, and moves
    /// the base as each write is confirmed.
    pub fn resolve_conflict(
        &mut self,
        id: i64,
        choice: &Choice,
        value: &Value,
        who: &str,
        now: Millis,
    ) -> std::result::Result<ConflictRow, ResolveError> {
        let tx = self.conn.transaction()?;
        let row = conflict_by_id(&tx, id)?.ok_or(ResolveError::NotFound(id))?;
        if row.status != "open" {
            return Err(ResolveError::NotOpen(id));
        }
        if row.kind != "field" {
            return Err(ResolveError::Invalid {
                id,
                why: "an ambiguous match is settled by changing the email on one side, so that the records are told apart".into(),
            });
        }
        tx.execute(
            "UPDATE conflicts SET status = 'resolved', resolution = ?2, resolved_by = ?3, resolved_at = ?4,
                 updated_at = ?4, chosen = ?5, seen_left = ?6, seen_right = ?7
             WHERE id = ?1",
            params![
                id,
                choice.name(),
                who,
                now,
                to_json(value),
                to_json(&row.left),
                to_json(&row.right)
            ],
        )?;
        super::loops::forget_written(&tx, row.link, &row.field)?;
        tx.execute(
            "INSERT INTO audit (at, actor, action, pair, link_id, side, detail) VALUES (?1, ?2, 'conflict_resolved', ?3, ?4, NULL, ?5)",
            params![
                now,
                who,
                row.pair,
                row.link,
                to_json(&serde_json::json!({
                    "conflict": id, "field": row.field, "take": choice.name(), "value": value,
                    "left": row.left, "right": row.right,
                }))
            ],
        )?;
        tx.commit()?;
        Ok(self.conflict(id)?.expect("just updated"))
    }

    /// The decisions of people on a link that the engine has not yet seen through, by field.
    pub fn pending_resolutions(
        &self,
        link: i64,
    ) -> Result<std::collections::BTreeMap<String, PendingResolution>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, field, chosen, seen_left, seen_right FROM conflicts
             WHERE link_id = ?1 AND chosen IS NOT NULL AND applied_at IS NULL ORDER BY id",
        )?;
        let rows = statement.query_map([link], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut pending = std::collections::BTreeMap::new();
        for row in rows {
            let (conflict, field, chosen, left, right) = row?;
            let seen = |text: Option<String>| -> Result<Value> {
                text.map_or(Ok(Value::Null), |t| from_json(&t))
            };
            pending.insert(
                field,
                PendingResolution {
                    conflict,
                    value: from_json(&chosen)?,
                    seen: [seen(left)?, seen(right)?],
                },
            );
        }
        Ok(pending)
    }

    /// Links of a pair with a person's decision waiting to be written.
    pub fn links_with_pending_resolutions(&self, pair: &str) -> Result<Vec<i64>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT DISTINCT link_id FROM conflicts
             WHERE pair = ?1 AND chosen IS NOT NULL AND applied_at IS NULL ORDER BY link_id",
        )?;
        let rows = statement.query_map([pair], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- dead letters ------------------------------------------------------

    /// Writes parked as dead letters, every pair.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut statement = self.conn.prepare(
            "SELECT id, pair, side, match_key, op, payload, attempts, COALESCE(last_error, ''), updated_at
             FROM outbox WHERE status = 'dead' ORDER BY id",
        )?;
        let rows = statement.query_map([], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ),
                (
                    r.get::<_, String>(5)?,
                    r.get::<_, u32>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Millis>(8)?,
                ),
            ))
        })?;
        rows.map(|row| {
            let ((id, pair, side, key, op), (payload, attempts, error, updated_at)) = row?;
            Ok(DeadLetter {
                id,
                pair,
                side: parse_side(&side)?,
                key,
                op,
                payload: from_json(&payload)?,
                attempts,
                error,
                updated_at,
            })
        })
        .collect()
    }

    /// Put a dead letter back in the outbox, due now, with its attempts reset.
    /// Returns false if no dead letter has that id.
    pub fn retry_dead_letter(&mut self, id: i64, who: &str, now: Millis) -> Result<bool> {
        self.settle_dead_letter(id, who, now, true)
    }

    /// Drop a dead letter: its write is not made. The next change of the record
    /// is decided afresh. Returns false if no dead letter has that id.
    pub fn discard_dead_letter(&mut self, id: i64, who: &str, now: Millis) -> Result<bool> {
        self.settle_dead_letter(id, who, now, false)
    }

    fn settle_dead_letter(&mut self, id: i64, who: &str, now: Millis, retry: bool) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let found: Option<(String, i64, String, String, String)> = tx
            .query_row(
                "SELECT pair, link_id, side, payload, COALESCE(last_error, '') FROM outbox WHERE id = ?1 AND status = 'dead'",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((pair, link, side, payload, error)) = found else {
            return Ok(false);
        };
        let action = if retry {
            tx.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            "dead_letter_retried"
        } else {
            tx.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
            "dead_letter_discarded"
        };
        let detail = serde_json::json!({
            "outbox": id, "payload": from_json::<Value>(&payload)?, "error": error,
        });
        tx.execute(
            "INSERT INTO audit (at, actor, action, pair, link_id, side, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![now, who, action, pair, link, side, to_json(&detail)],
        )?;
        tx.commit()?;
        Ok(true)
    }

    // ---- audit ---------------------------------------------------------------

    /// The newest `limit` audit entries, oldest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut entries = self.find_audit(&AuditFilter {
            limit: Some(limit),
            ..AuditFilter::default()
        })?;
        entries.reverse();
        Ok(entries)
    }

    /// Audit entries matching `filter`, newest first.
    pub fn find_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut values: Vec<Box<dyn ToSql>> = Vec::new();
        let mut add = |sql: &str, value: Box<dyn ToSql>| {
            values.push(value);
            clauses.push(sql.replace('?', &format!("?{}", values.len())));
        };
        if let Some(action) = &filter.action {
            add("action = ?", Box::new(action.clone()));
        }
        if let Some(actor) = &filter.actor {
            add("actor = ?", Box::new(actor.clone()));
        }
        if let Some(link) = filter.link {
            add("link_id = ?", Box::new(link));
        }
        if let Some(before) = filter.before {
            add("id < ?", Box::new(before));
        }
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let sql = format!(
            "SELECT id, at, actor, action, pair, link_id, side, detail FROM audit
             WHERE {} ORDER BY id DESC LIMIT {limit}",
            clauses.join(" AND ")
        );
        let params: Vec<&dyn ToSql> = values.iter().map(|v| v.as_ref()).collect();
        let mut statement = self.conn.prepare(&sql)?;
        let rows = statement.query_map(params.as_slice(), |r| {
            Ok((
                AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    pair: r.get(4)?,
                    link: r.get(5)?,
                    side: r.get(6)?,
                    detail: Value::Null,
                },
                r.get::<_, String>(7)?,
            ))
        })?;
        rows.map(|row| {
            let (entry, detail) = row?;
            Ok(AuditEntry {
                detail: from_json(&detail)?,
                ..entry
            })
        })
        .collect()
    }

    /// Whether a pair still waits for its first link-up to be confirmed:
    /// nothing linked yet, and no one confirmed it.
    pub fn link_up_pending(&self, pair: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM links WHERE pair = ?1)
                AND NOT EXISTS (SELECT 1 FROM audit WHERE pair = ?1 AND action = 'link_up_confirmed')",
            [pair],
            |r| r.get(0),
        )?)
    }

    /// Record what a person did that is not a decision on data (a policy saved
    /// from the web page, a sign-in refused, ...).
    pub fn audit_person(
        &mut self,
        who: &str,
        action: &str,
        pair: Option<&str>,
        detail: &Value,
        now: Millis,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO audit (at, actor, action, pair, link_id, side, detail) VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5)",
            params![now, who, action, pair, to_json(detail)],
        )?;
        Ok(())
    }

    // ---- sessions --------------------------------------------------------------

    /// Remember a session by the SHA-256 of its token.
    pub fn create_session(
        &mut self,
        token_sha256: &str,
        session: &SessionRow,
        now: Millis,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
        tx.execute(
            "INSERT INTO sessions (token_sha256, user, role, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                token_sha256,
                session.user,
                session.role,
                session.csrf,
                now,
                session.expires_at
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The live session with this token hash.
    pub fn session(&self, token_sha256: &str, now: Millis) -> Result<Option<SessionRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT user, role, csrf, expires_at FROM sessions WHERE token_sha256 = ?1 AND expires_at > ?2",
                params![token_sha256, now],
                |r| {
                    Ok(SessionRow {
                        user: r.get(0)?,
                        role: r.get(1)?,
                        csrf: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// End a session.
    pub fn end_session(&mut self, token_sha256: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM sessions WHERE token_sha256 = ?1",
            [token_sha256],
        )?;
        Ok(())
    }
}
