//! Crash points for the crash tests. `TANDEM_CRASH_AT=point[@n]` makes the
//! process abort (no destructors, no flushing: as a power cut or `kill -9`
//! would end it) the `n`-th time (first by default) it reaches the named point:
//!
//! - `pull-before-stage`: a page was read from a system, not yet staged;
//! - `reconcile-after-apply`: decisions and their outbox rows are committed,
//!   nothing sent yet;
//! - `flush-after-send`: a batch of writes reached the system, its outcome is
//!   not recorded;
//! - `finish-before-commit`: the outcome is being recorded (the transaction
//!   that confirms the writes and moves the base is not committed);
//! - `flush-after-finish`: the outcome is recorded, the next batch not sent.
//!
//! Inert unless the variable is set, and absent from builds without the
//! `failpoints` feature.

use std::sync::atomic::{AtomicU32, Ordering};

/// The crash points, in the order a pass reaches them.
pub const POINTS: [&str; 5] = [
    "pull-before-stage",
    "reconcile-after-apply",
    "flush-after-send",
    "finish-before-commit",
    "flush-after-finish",
];

/// The variable that arms a crash point.
pub const VARIABLE: &str = "TANDEM_CRASH_AT";

/// Arm the crash point `TANDEM_CRASH_AT` names, if it names one. An unknown
/// point or count is an error, so that a typo does not pass for a run that
/// never crashed.
pub fn arm_from_env() -> Result<(), String> {
    let Ok(spec) = std::env::var(VARIABLE) else {
        return Ok(());
    };
    let (point, nth) = match spec.split_once('@') {
        Some((point, n)) => (
            point,
            n.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{VARIABLE}={spec}: the count after @ must be 1 or more"))?,
        ),
        None => (spec.as_str(), 1),
    };
    if !POINTS.contains(&point) {
        return Err(format!(
            "{VARIABLE}={spec}: no crash point `{point}`; the points are {}",
            POINTS.join(", ")
        ));
    }
    if !cfg!(feature = "failpoints") {
        return Err(format!(
            "{VARIABLE} is set but this build has no crash points (feature `failpoints`)"
        ));
    }
    let reached = AtomicU32::new(0);
    fail::cfg_callback(point, move || {
        if reached.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            std::process::abort();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crash_point_is_in_the_code() {
        let sources = [include_str!("engine/mod.rs"), include_str!("store/mod.rs")].concat();
        for point in POINTS {
            assert!(
                sources.contains(&format!("fail_point!(\"{point}\")")),
                "{point}"
            );
        }
    }
}
