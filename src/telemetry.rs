//! Prometheus metrics, served at `/metrics` by the engine's listener. The
//! recorder is installed by the first listener of the process; without one the
//! `metrics` calls cost nothing. Counters and gauges are labelled by pair and
//! connector; see `describe` for the names.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tandem_core::breaker::BreakerState;

use crate::engine::PairReport;
use crate::store::Counts;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Seconds a pass may take, as the histogram's buckets.
const PASS_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0];

/// The process's recorder, installed on first use; `None` if another recorder
/// was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets(&PASS_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "No metrics: a recorder could not be installed.");
                    None
                }
            }
        })
        .as_ref()
}

/// The metrics in Prometheus' text format.
pub fn render() -> Option<String> {
    handle().map(|h| {
        h.run_upkeep();
        h.render()
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tandem_records_read_total",
        "Records read from a system (polls and webhook fetches)."
    );
    describe_counter!(
        "tandem_writes_total",
        "Writes to a system by outcome: created, updated, removed, rejected, deferred, dead_letter."
    );
    describe_counter!(
        "tandem_api_requests_total",
        "Requests sent to a system's API, retries included."
    );
    describe_counter!(
        "tandem_api_throttled_total",
        "Answers that throttled (429)."
    );
    describe_counter!("tandem_conflicts_opened_total", "Conflicts opened.");
    describe_counter!(
        "tandem_conflicts_closed_total",
        "Conflicts closed by the engine (converged or settled by a new policy)."
    );
    describe_counter!(
        "tandem_conflicts_resolved_total",
        "Conflicts resolved by a person."
    );
    describe_counter!("tandem_passes_total", "Passes run.");
    describe_gauge!("tandem_links", "Linked record pairs.");
    describe_gauge!("tandem_open_conflicts", "Conflicts waiting for a person.");
    describe_gauge!("tandem_outbox_depth", "Writes queued in the outbox.");
    describe_gauge!(
        "tandem_dead_letters",
        "Writes parked after too many failures."
    );
    describe_gauge!(
        "tandem_removals_held",
        "Archives and deletes held for approval."
    );
    describe_gauge!(
        "tandem_poll_lag_seconds",
        "Seconds since the last full poll of a connector."
    );
    describe_gauge!(
        "tandem_circuit_state",
        "A connector's circuit breaker: 0 closed, 1 half-open (probing), 2 open (paused)."
    );
    describe_gauge!(
        "tandem_circuit_opened",
        "Times a connector's circuit breaker opened since the engine started."
    );
    describe_gauge!(
        "tandem_drift_records",
        "Records found by the last full comparison, by kind: different, missing, extra, settling."
    );
    describe_gauge!(
        "tandem_drift_checked_timestamp_seconds",
        "When the last full comparison of a pair ran (Unix time)."
    );
    describe_histogram!("tandem_pass_seconds", "How long a pass of a pair took.");
    describe_histogram!(
        "tandem_webhook_to_write_seconds",
        "From a webhook's arrival to the confirmed write of the change it announced, by the connector written."
    );
}

/// One change a webhook announced, written to `connector` after `took`.
pub fn record_webhook_to_write(pair: &str, connector: &str, took: std::time::Duration) {
    histogram!(
        "tandem_webhook_to_write_seconds",
        "pair" => pair.to_string(),
        "connector" => connector.to_string()
    )
    .record(took.as_secs_f64());
}

/// Record what a full comparison of a pair found.
pub fn record_drift(report: &crate::engine::DriftReport) {
    let counts = &report.counts;
    for (kind, n) in [
        ("different", counts.different),
        ("missing", counts.missing),
        ("extra", counts.extra),
        ("settling", counts.settling),
    ] {
        gauge!("tandem_drift_records", "pair" => report.pair.clone(), "kind" => kind).set(n as f64);
    }
    gauge!("tandem_drift_checked_timestamp_seconds", "pair" => report.pair.clone())
        .set((counts.at / 1000) as f64);
}

/// Record what one pass of a pair did, and the pair's state after it.
pub fn record_pass(
    report: &PairReport,
    counts: &Counts,
    last_polls: [Option<i64>; 2],
    now: i64,
    seconds: f64,
) {
    let pair = report.pair.clone();
    counter!("tandem_passes_total", "pair" => pair.clone()).increment(1);
    histogram!("tandem_pass_seconds", "pair" => pair.clone()).record(seconds);
    for (side, last_poll) in last_polls.into_iter().enumerate() {
        let connector = report.connectors[side].clone();
        let labels = [("pair", pair.clone()), ("connector", connector.clone())];
        counter!("tandem_records_read_total", &labels)
            .increment((report.pulled[side] + report.hinted[side]) as u64);
        for (outcome, n) in [
            ("created", report.created[side]),
            ("updated", report.updated[side]),
            ("removed", report.removed[side]),
        ] {
            counter!("tandem_writes_total", "pair" => pair.clone(), "connector" => connector.clone(), "outcome" => outcome)
                .increment(n as u64);
        }
        counter!("tandem_api_requests_total", "connector" => connector.clone())
            .increment(report.traffic[side].requests);
        counter!("tandem_api_throttled_total", "connector" => connector.clone())
            .increment(report.traffic[side].throttled);
        gauge!("tandem_removals_held", &labels).set(report.held_removals[side] as f64);
        let breaker = &report.breakers[side];
        let state = match breaker.state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        gauge!("tandem_circuit_state", "connector" => connector.clone()).set(state);
        gauge!("tandem_circuit_opened", "connector" => connector.clone())
            .set(breaker.opened as f64);
        if let Some(at) = last_poll {
            gauge!("tandem_poll_lag_seconds", &labels).set(((now - at).max(0) / 1000) as f64);
        }
    }
    // Rejections and deferrals are not split by side in the report.
    for (outcome, n) in [
        ("rejected", report.rejected),
        ("deferred", report.deferred),
        ("dead_letter", report.dead_lettered),
    ] {
        counter!("tandem_writes_total", "pair" => pair.clone(), "connector" => "any", "outcome" => outcome)
            .increment(n as u64);
    }
    counter!("tandem_conflicts_opened_total", "pair" => pair.clone())
        .increment(report.conflicts_opened as u64);
    counter!("tandem_conflicts_closed_total", "pair" => pair.clone())
        .increment(report.conflicts_closed as u64);
    gauge!("tandem_links", "pair" => pair.clone()).set(counts.links as f64);
    gauge!("tandem_open_conflicts", "pair" => pair.clone()).set(counts.open_conflicts as f64);
    gauge!("tandem_outbox_depth", "pair" => pair.clone()).set(counts.pending_writes as f64);
    gauge!("tandem_dead_letters", "pair" => pair).set(counts.dead_letters as f64);
}
