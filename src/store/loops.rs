//! The loop detector's memory: values confirmed written to each field of a
//! link. A field written back to a value it held a moment ago, again and
//! again, is being fought over (an automation on one side undoing every edit
//! the other side makes), and syncing it only feeds the fight.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rusqlite::{Connection, params};
use serde_json::Value;
use tandem_core::Millis;

use super::{Result, Store, to_json};
use crate::reconcile::LOOP_REASON;

/// How long written values are remembered: the longest window the loop
/// detector may look back over.
pub const LOOP_MEMORY: Millis = 86_400_000;

/// Remember the values just confirmed on a link's fields (as the left side
/// holds them), and forget those older than [`LOOP_MEMORY`].
pub(super) fn note_written(
    tx: &Connection,
    link: i64,
    written: &[(String, Value, Value)],
    now: Millis,
) -> Result<()> {
    tx.prepare_cached("DELETE FROM field_flips WHERE link_id = ?1 AND at < ?2")?
        .execute(params![link, now - LOOP_MEMORY])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO field_flips (link_id, field, value, at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (field, left, _) in written {
        insert.execute(params![link, field, to_json(left), now])?;
    }
    Ok(())
}

/// Forget what was written to a field: a person decided it.
pub(super) fn forget_written(tx: &Connection, link: i64, field: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM field_flips WHERE link_id = ?1 AND field = ?2")?
        .execute(params![link, field])?;
    Ok(())
}

/// How many of `values` (in the order written) return to a value already
/// written before them.
pub fn returns<'a>(values: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut seen = HashSet::new();
    values.into_iter().filter(|v| !seen.insert(*v)).count() as u32
}

impl Store {
    /// Fields of a link that are looping: written back to an earlier value more
    /// than `flips` times since `since`, or with a loop conflict still open.
    pub fn looping_fields(&self, link: i64, since: Millis, flips: u32) -> Result<BTreeSet<String>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT field, value FROM field_flips WHERE link_id = ?1 AND at >= ?2 ORDER BY at, rowid",
        )?;
        let mut written: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in statement.query_map(params![link, since], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })? {
            let (field, value) = row?;
            written.entry(field).or_default().push(value);
        }
        let mut looping: BTreeSet<String> = written
            .into_iter()
            .filter(|(_, values)| returns(values.iter().map(String::as_str)) > flips)
            .map(|(field, _)| field)
            .collect();
        let mut open = self.conn.prepare_cached(
            "SELECT field FROM conflicts WHERE link_id = ?1 AND status = 'open' AND reason = ?2",
        )?;
        for field in open.query_map(params![link, LOOP_REASON], |r| r.get::<_, String>(0))? {
            looping.insert(field?);
        }
        Ok(looping)
    }
}

#[cfg(test)]
mod tests {
    use super::returns;

    #[test]
    fn only_a_value_coming_back_counts() {
        assert_eq!(returns(["a", "b", "c", "d"]), 0);
        assert_eq!(returns(["b", "a", "b", "a", "b"]), 3);
        assert_eq!(returns(["a", "a"]), 1);
    }
}
