//! Numbered schema migrations, applied at open. `PRAGMA user_version` holds the
//! number of the last one applied; each runs in its own transaction.

use rusqlite::Connection;

use super::StoreError;

/// Every migration, in order. Never edit a shipped one: add the next.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_policy_versions.sql"),
    include_str!("migrations/0003_field_times.sql"),
    include_str!("migrations/0004_resolutions.sql"),
    include_str!("migrations/0005_removal_approval.sql"),
    include_str!("migrations/0006_sent_values.sql"),
    include_str!("migrations/0007_connector_health.sql"),
    include_str!("migrations/0008_drift.sql"),
    include_str!("migrations/0009_field_flips.sql"),
];

/// The schema version this build brings a store to.
#[cfg(test)]
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn run(conn: &mut Connection, name: &str) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            path: name.to_string(),
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(
            store = name,
            version = index + 1,
            "Migrated the state store."
        );
    }
    Ok(())
}
