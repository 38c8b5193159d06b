//! What support staff and admins do with the engine's state: look at a
//! conflict with everything needed to settle it, choose a value, retry or drop
//! a dead letter. The CLI and the web page both come through here.

use serde_json::Value;
use tandem_core::Millis;

use crate::reconcile::propose_text_merge;
use crate::store::{AuditEntry, AuditFilter, Choice, ConflictRow, ResolveError, Store};

/// A conflict with what a person needs to settle it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConflictDetail {
    /// The conflict.
    #[serde(flatten)]
    pub conflict: ConflictRow,
    /// For a text-merge conflict, the merge a person may accept.
    pub proposal: Option<Value>,
    /// The record's recent history, newest first.
    pub history: Vec<AuditEntry>,
}

/// The merge to propose for a conflict: text edits that the text-merge rule
/// could not merge cleanly.
pub fn proposal(conflict: &ConflictRow) -> Option<Value> {
    if conflict.rule != "text-merge" || conflict.kind != "field" {
        return None;
    }
    let base = match &conflict.base {
        Some((Value::String(base), _)) => base.as_str(),
        Some((Value::Null, _)) | None => "",
        Some(_) => return None,
    };
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        _ => None,
    };
    let (left, right) = (text(&conflict.left)?, text(&conflict.right)?);
    Some(Value::String(propose_text_merge(base, &left, &right)))
}

/// The canonical value a choice settles `conflict` with. A value typed by a
/// person takes the type of the values in conflict: a number, a boolean, or a
/// list from comma-separated items.
pub fn chosen_value(conflict: &ConflictRow, choice: &Choice) -> Result<Value, String> {
    match choice {
        Choice::Left => Ok(conflict.left.clone()),
        Choice::Right => Ok(conflict.right.clone()),
        Choice::Merge => proposal(conflict).ok_or_else(|| {
            format!(
                "there is no merge to accept: the `{}` field is settled by {}, not text-merge",
                conflict.field, conflict.rule
            )
        }),
        Choice::Value { value } => {
            let like = [&conflict.left, &conflict.right]
                .into_iter()
                .find(|v| !v.is_null())
                .unwrap_or(&Value::Null);
            typed_like(value, like)
        }
    }
}

fn typed_like(value: &Value, like: &Value) -> Result<Value, String> {
    let Value::String(text) = value else {
        return Ok(value.clone());
    };
    let trimmed = text.trim();
    match like {
        Value::Number(_) if trimmed.is_empty() => Ok(Value::Null),
        Value::Number(_) => trimmed
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .map_err(|_| format!("`{text}` is not a number")),
        Value::Bool(_) => match trimmed.to_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("`{text}` is not true or false")),
        },
        Value::Array(_) => Ok(Value::Array(
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect(),
        )),
        _ => Ok(value.clone()),
    }
}

/// A conflict with its proposal and history.
pub fn conflict_detail(
    store: &Store,
    id: i64,
) -> Result<Option<ConflictDetail>, crate::store::StoreError> {
    let Some(conflict) = store.conflict(id)? else {
        return Ok(None);
    };
    let history = store.find_audit(&AuditFilter {
        link: Some(conflict.link),
        limit: Some(20),
        ..AuditFilter::default()
    })?;
    Ok(Some(ConflictDetail {
        proposal: proposal(&conflict),
        conflict,
        history,
    }))
}

/// Settle a conflict as `who` chose. The engine writes the value on its next pass.
pub fn resolve(
    store: &mut Store,
    id: i64,
    choice: &Choice,
    who: &str,
    now: Millis,
) -> Result<ConflictRow, ResolveError> {
    let conflict = store.conflict(id)?.ok_or(ResolveError::NotFound(id))?;
    let value = chosen_value(&conflict, choice).map_err(|why| ResolveError::Invalid { id, why })?;
    let row = store.resolve_conflict(id, choice, &value, who, now)?;
    metrics::counter!("tandem_conflicts_resolved_total", "pair" => row.pair.clone()).increment(1);
    Ok(row)
}

/// What a bulk resolution did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct BulkOutcome {
    /// Conflicts settled.
    pub resolved: Vec<i64>,
    /// Conflicts the choice did not fit, with why.
    pub failed: Vec<(i64, String)>,
}

/// Settle every open conflict that `filter` matches as `who` chose (at most
/// 1,000 at a time). A conflict the choice does not fit is left open and named.
pub fn resolve_matching(
    store: &mut Store,
    filter: &crate::store::ConflictFilter,
    choice: &Choice,
    who: &str,
    now: Millis,
) -> Result<BulkOutcome, crate::store::StoreError> {
    let filter = crate::store::ConflictFilter {
        status: Some("open".into()),
        limit: Some(filter.limit.unwrap_or(1000)),
        offset: None,
        ..filter.clone()
    };
    let ids: Vec<i64> = store
        .find_conflicts(&filter)?
        .conflicts
        .iter()
        .map(|c| c.id)
        .collect();
    resolve_each(store, &ids, choice, who, now)
}

/// Settle each of the conflicts `ids` as `who` chose. One the choice does not
/// fit, or that is not open, is left as it is and named.
pub fn resolve_each(
    store: &mut Store,
    ids: &[i64],
    choice: &Choice,
    who: &str,
    now: Millis,
) -> Result<BulkOutcome, crate::store::StoreError> {
    let mut outcome = BulkOutcome::default();
    for &id in ids {
        match resolve(store, id, choice, who, now) {
            Ok(_) => outcome.resolved.push(id),
            Err(ResolveError::Store(e)) => return Err(e),
            Err(e) => outcome.failed.push((id, e.to_string())),
        }
    }
    Ok(outcome)
}

/// The name a person at this machine's command line acts under.
pub fn cli_actor() -> String {
    let user = uzers::get_current_username()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("uid {}", uzers::get_current_uid()));
    format!("cli:{user}")
}
