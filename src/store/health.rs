//! What each connector's passes and the webhook listener saw, kept so that
//! another process (`tandem status`, a monitor) can read it: the circuit
//! breaker, API calls today (UTC), webhooks received and refused.

use rusqlite::{OptionalExtension, params};
use tandem_core::Millis;
use tandem_core::breaker::{BreakerState, BreakerView};

use super::{Result, Store};

const DAY: Millis = 86_400_000;

/// One connector's health as last recorded.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct ConnectorHealth {
    /// Its circuit breaker when last recorded.
    pub breaker: BreakerState,
    /// Times the breaker opened since the engine started.
    pub breaker_opened: u64,
    /// Share of failed calls among the recent ones.
    pub failure_ratio: f64,
    /// API requests today (UTC), retries included.
    pub requests_today: u64,
    /// Throttling answers today.
    pub throttled_today: u64,
    /// Webhook deliveries accepted today.
    pub webhooks_today: u64,
    /// Webhook deliveries refused today (signature, age, unreadable).
    pub webhooks_refused_today: u64,
    /// When the last webhook delivery was accepted.
    pub last_webhook_at: Option<Millis>,
    /// When any of this was last recorded.
    pub updated_at: Option<Millis>,
}

impl Store {
    /// Add one pass's calls of a connector to today's and record its breaker.
    pub fn note_traffic(
        &mut self,
        connector: &str,
        breaker: &BreakerView,
        requests: u64,
        throttled: u64,
        now: Millis,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO connector_health
                 (connector, breaker, breaker_opened, failure_ratio, day, requests_today, throttled_today, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (connector) DO UPDATE SET
                 breaker = excluded.breaker,
                 breaker_opened = excluded.breaker_opened,
                 failure_ratio = excluded.failure_ratio,
                 requests_today = excluded.requests_today
                     + CASE WHEN day = excluded.day THEN requests_today ELSE 0 END,
                 throttled_today = excluded.throttled_today
                     + CASE WHEN day = excluded.day THEN throttled_today ELSE 0 END,
                 webhooks_today = CASE WHEN day = excluded.day THEN webhooks_today ELSE 0 END,
                 webhooks_refused_today =
                     CASE WHEN day = excluded.day THEN webhooks_refused_today ELSE 0 END,
                 day = excluded.day,
                 updated_at = excluded.updated_at",
            params![
                connector,
                breaker.state.as_str(),
                breaker.opened as i64,
                breaker.failure_ratio,
                now.div_euclid(DAY),
                requests as i64,
                throttled as i64,
                now
            ],
        )?;
        Ok(())
    }

    /// Count one webhook delivery of a connector, accepted or refused.
    pub fn note_webhook(&mut self, connector: &str, accepted: bool, now: Millis) -> Result<()> {
        let (accepted, refused) = if accepted { (1, 0) } else { (0, 1) };
        self.conn.execute(
            "INSERT INTO connector_health
                 (connector, day, webhooks_today, webhooks_refused_today, last_webhook_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, CASE WHEN ?3 = 1 THEN ?5 END, ?5)
             ON CONFLICT (connector) DO UPDATE SET
                 requests_today = CASE WHEN day = excluded.day THEN requests_today ELSE 0 END,
                 throttled_today = CASE WHEN day = excluded.day THEN throttled_today ELSE 0 END,
                 webhooks_today = excluded.webhooks_today
                     + CASE WHEN day = excluded.day THEN webhooks_today ELSE 0 END,
                 webhooks_refused_today = excluded.webhooks_refused_today
                     + CASE WHEN day = excluded.day THEN webhooks_refused_today ELSE 0 END,
                 last_webhook_at = coalesce(excluded.last_webhook_at, last_webhook_at),
                 day = excluded.day,
                 updated_at = excluded.updated_at",
            params![connector, now.div_euclid(DAY), accepted, refused, now],
        )?;
        Ok(())
    }

    /// A connector's health as of `now`: counts of an earlier day read as zero.
    pub fn connector_health(&self, connector: &str, now: Millis) -> Result<ConnectorHealth> {
        let row = self
            .conn
            .query_row(
                "SELECT breaker, breaker_opened, failure_ratio, day, requests_today, throttled_today,
                        webhooks_today, webhooks_refused_today, last_webhook_at, updated_at
                 FROM connector_health WHERE connector = ?1",
                [connector],
                |r| {
                    let today = r.get::<_, i64>(3)? == now.div_euclid(DAY);
                    let count = |i: usize| -> rusqlite::Result<u64> {
                        Ok(if today { r.get::<_, i64>(i)? as u64 } else { 0 })
                    };
                    Ok(ConnectorHealth {
                        breaker: BreakerState::parse(&r.get::<_, String>(0)?),
                        breaker_opened: r.get::<_, i64>(1)? as u64,
                        failure_ratio: r.get(2)?,
                        requests_today: count(4)?,
                        throttled_today: count(5)?,
                        webhooks_today: count(6)?,
                        webhooks_refused_today: count(7)?,
                        last_webhook_at: r.get(8)?,
                        updated_at: r.get(9)?,
                    })
                },
            )
            .optional()?;
        Ok(row.unwrap_or_default())
    }
}

/// Counts of the last full comparison of a pair's two systems against the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DriftCounts {
    /// When it ran.
    pub at: Millis,
    /// Records listed on each side.
    pub listed: [u64; 2],
    /// Links whose records agree on every field.
    pub matched: u64,
    /// Links whose records disagree with nothing waiting to settle it.
    pub different: u64,
    /// Links whose record was not listed on a side (and is not known archived).
    pub missing: u64,
    /// Records listed, in scope, with no link.
    pub extra: u64,
    /// Links that disagree while a conflict or a queued write settles them.
    pub settling: u64,
}

impl Store {
    /// Keep the counts of a comparison, replacing the pair's previous one.
    pub fn save_drift(&mut self, pair: &str, counts: &DriftCounts) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO drift
                 (pair, at, listed_left, listed_right, matched, different, missing, extra, settling)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                pair,
                counts.at,
                counts.listed[0] as i64,
                counts.listed[1] as i64,
                counts.matched as i64,
                counts.different as i64,
                counts.missing as i64,
                counts.extra as i64,
                counts.settling as i64
            ],
        )?;
        Ok(())
    }

    /// The pair's last comparison, if one ran.
    pub fn last_drift(&self, pair: &str) -> Result<Option<DriftCounts>> {
        Ok(self
            .conn
            .query_row(
                "SELECT at, listed_left, listed_right, matched, different, missing, extra, settling
                 FROM drift WHERE pair = ?1",
                [pair],
                |r| {
                    let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)? as u64) };
                    Ok(DriftCounts {
                        at: r.get(0)?,
                        listed: [n(1)?, n(2)?],
                        matched: n(3)?,
                        different: n(4)?,
                        missing: n(5)?,
                        extra: n(6)?,
                        settling: n(7)?,
                    })
                },
            )
            .optional()?)
    }

    /// When a link was last made or had a field agreed, of any pair.
    pub fn latest_link_change(&self) -> Result<Option<Millis>> {
        Ok(self.conn.query_row(
            "SELECT max(at) FROM (SELECT max(created_at) AS at FROM links
                                  UNION ALL SELECT max(agreed_at) FROM base)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Links of a pair made, or with a field agreed, at or after `since`.
    pub fn links_changed_since(
        &self,
        pair: &str,
        since: Millis,
    ) -> Result<std::collections::HashSet<i64>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id FROM links WHERE pair = ?1 AND created_at >= ?2
             UNION SELECT b.link_id FROM base b JOIN links l ON l.id = b.link_id
                   WHERE l.pair = ?1 AND b.agreed_at >= ?2",
        )?;
        let rows = statement.query_map(params![pair, since], |r| r.get::<_, i64>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Links of a pair with an open conflict or a queued or dead write.
    pub fn busy_links(&self, pair: &str) -> Result<std::collections::HashSet<i64>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT link_id FROM conflicts WHERE pair = ?1 AND status = 'open'
             UNION SELECT link_id FROM outbox WHERE pair = ?1",
        )?;
        let rows = statement.query_map([pair], |r| r.get::<_, i64>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_within_a_day_and_start_again_the_next() {
        let mut store = Store::open_in_memory().unwrap();
        let day = 20_000 * DAY;
        let open = BreakerView {
            state: BreakerState::Open,
            failure_ratio: 0.75,
            opened: 2,
            retry_in: None,
        };
        store.note_traffic("crm", &open, 10, 2, day + 1).unwrap();
        store.note_webhook("crm", true, day + 2).unwrap();
        store.note_webhook("crm", false, day + 3).unwrap();
        store
            .note_traffic("crm", &BreakerView::default(), 5, 0, day + 4)
            .unwrap();
        let health = store.connector_health("crm", day + 5).unwrap();
        assert_eq!(
            (health.requests_today, health.throttled_today),
            (15, 2),
            "{health:?}"
        );
        assert_eq!(
            (health.webhooks_today, health.webhooks_refused_today),
            (1, 1)
        );
        assert_eq!(health.last_webhook_at, Some(day + 2));
        assert_eq!(health.breaker, BreakerState::Closed);
        assert_eq!(health.breaker_opened, 0);

        // Read the next day, the counts are zero; written the next day, they start over.
        let next = day + DAY;
        assert_eq!(
            store.connector_health("crm", next).unwrap().requests_today,
            0
        );
        store.note_traffic("crm", &open, 3, 1, next).unwrap();
        store.note_webhook("crm", true, next + 1).unwrap();
        let health = store.connector_health("crm", next + 2).unwrap();
        assert_eq!(
            (
                health.requests_today,
                health.throttled_today,
                health.webhooks_today
            ),
            (3, 1, 1)
        );
        assert_eq!(health.breaker, BreakerState::Open);
        assert_eq!(
            store.connector_health("other", next).unwrap(),
            ConnectorHealth::default()
        );
    }
}
