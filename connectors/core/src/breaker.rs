//! The circuit breaker of one connector: when too many of its recent calls
//! failed (no answer, a timeout, a 5xx), it stops calling the API for a
//! cooldown, then lets one call through as a probe; the probe's success closes
//! it again, its failure opens it for twice as long.
//!
//! Throttling answers and 4xx are answers: the API is up and says so. Only
//! calls that got no usable answer count as failures.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// How many recent calls are looked at.
    pub window: usize,
    /// Fewest calls in the window before it can open.
    pub min_calls: usize,
    /// Share of failed calls in the window that opens it (0 to 1; above 1 never opens).
    pub failure_ratio: f64,
    /// The first pause; it doubles with each failed probe.
    pub cooldown: Duration,
    /// The longest pause.
    pub max_cooldown: Duration,
}

impl Default for BreakerSettings {
    /// Half of the last 20 calls (at least 10) failing opens it for 30 s, up to 10 min.
    fn default() -> Self {
        Self {
            window: 20,
            min_calls: 10,
            failure_ratio: 0.5,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(600),
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls go through.
    #[default]
    Closed,
    /// Calls fail at once until the cooldown ends.
    Open,
    /// The cooldown ended: the next call is a probe.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    /// The state [`BreakerState::as_str`] names; closed for anything else.
    pub fn parse(text: &str) -> Self {
        [Self::Open, Self::HalfOpen]
            .into_iter()
            .find(|state| state.as_str() == text)
            .unwrap_or(Self::Closed)
    }
}

/// What a breaker shows of itself.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct BreakerView {
    /// Where it stands.
    pub state: BreakerState,
    /// Share of failures among the recent calls.
    pub failure_ratio: f64,
    /// How many times it opened since the connector was built.
    pub opened: u64,
    /// While open, how long until the probe.
    pub retry_in: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
enum Stand {
    Closed,
    Open {
        until: Instant,
        cooldown: Duration,
    },
    HalfOpen {
        /// When the probe in flight started; a probe never answered (its
        /// caller gave up) stops blocking after `probe_timeout`.
        probe_since: Option<Instant>,
        cooldown: Duration,
    },
}

/// One connector's breaker. Pure: every call takes the time.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    probe_timeout: Duration,
    /// Recent outcomes, `true` for a failure.
    recent: VecDeque<bool>,
    stand: Stand,
    opened: u64,
}

impl Breaker {
    /// A closed breaker. A probe that takes longer than `probe_timeout` (the
    /// request timeout) no longer holds other calls back.
    pub fn new(settings: BreakerSettings, probe_timeout: Duration) -> Self {
        Self {
            settings,
            probe_timeout,
            recent: VecDeque::new(),
            stand: Stand::Closed,
            opened: 0,
        }
    }

    /// May a call go out now? `Err` holds how long until it may.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        match &mut self.stand {
            Stand::Closed => Ok(()),
            Stand::Open { until, cooldown } => {
                if now < *until {
                    return Err(*until - now);
                }
                self.stand = Stand::HalfOpen {
                    probe_since: Some(now),
                    cooldown: *cooldown,
                };
                Ok(())
            }
            Stand::HalfOpen { probe_since, .. } => match probe_since {
                Some(since) if now < *since + self.probe_timeout => {
                    Err(*since + self.probe_timeout - now)
                }
                _ => {
                    *probe_since = Some(now);
                    Ok(())
                }
            },
        }
    }

    /// Record how an admitted call ended.
    pub fn record(&mut self, now: Instant, failed: bool) {
        match self.stand {
            Stand::HalfOpen { cooldown, .. } => {
                if failed {
                    let cooldown = (cooldown * 2).min(self.settings.max_cooldown);
                    self.open(now, cooldown);
                } else {
                    self.stand = Stand::Closed;
                    self.recent.clear();
                }
            }
            Stand::Closed => {
                self.recent.push_back(failed);
                while self.recent.len() > self.settings.window.max(1) {
                    self.recent.pop_front();
                }
                if self.recent.len() >= self.settings.min_calls.max(1)
                    && self.ratio() >= self.settings.failure_ratio
                {
                    self.open(now, self.settings.cooldown);
                }
            }
            // A call let through before it opened, ending late, changes nothing.
            Stand::Open { .. } => {}
        }
    }

    fn open(&mut self, now: Instant, cooldown: Duration) {
        self.stand = Stand::Open {
            until: now + cooldown,
            cooldown,
        };
        self.recent.clear();
        self.opened += 1;
    }

    fn ratio(&self) -> f64 {
        if self.recent.is_empty() {
            return 0.0;
        }
        self.recent.iter().filter(|failed| **failed).count() as f64 / self.recent.len() as f64
    }

    /// Where it stands at `now`.
    pub fn view(&self, now: Instant) -> BreakerView {
        let (state, retry_in) = match self.stand {
            Stand::Closed => (BreakerState::Closed, None),
            Stand::Open { until, .. } if now < until => (BreakerState::Open, Some(until - now)),
            Stand::Open { .. } | Stand::HalfOpen { .. } => (BreakerState::HalfOpen, None),
        };
        BreakerView {
            state,
            failure_ratio: self.ratio(),
            opened: self.opened,
            retry_in,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            BreakerSettings {
                window: 10,
                min_calls: 4,
                failure_ratio: 0.5,
                cooldown: Duration::from_secs(30),
                max_cooldown: Duration::from_secs(100),
            },
            Duration::from_secs(5),
        )
    }

    #[test]
    fn opens_on_the_failure_share_then_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = breaker();
        // Three failures are not enough calls; a success keeps the share under half.
        for failed in [true, false, true] {
            b.admit(t0).unwrap();
            b.record(t0, failed);
        }
        assert_eq!(b.view(t0).state, BreakerState::Closed);
        b.record(t0, true);
        let view = b.view(t0);
        assert_eq!(view.state, BreakerState::Open);
        assert_eq!(view.opened, 1);
        assert_eq!(
            b.admit(t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        // After the cooldown one probe goes out; others wait for it.
        let after = t0 + Duration::from_secs(30);
        assert_eq!(b.view(after).state, BreakerState::HalfOpen);
        b.admit(after).unwrap();
        assert!(b.admit(after + Duration::from_secs(1)).is_err());
        b.record(after + Duration::from_secs(1), false);
        assert_eq!(b.view(after).state, BreakerState::Closed);
        b.admit(after + Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn a_failed_probe_doubles_the_pause_up_to_the_longest() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..4 {
            b.record(t0, true);
        }
        let mut now = t0;
        for expected in [60, 100, 100] {
            now += b.view(now).retry_in.unwrap();
            b.admit(now).unwrap();
            b.record(now, true);
            assert_eq!(b.view(now).retry_in, Some(Duration::from_secs(expected)));
        }
        assert_eq!(b.view(now).opened, 4);
    }

    #[test]
    fn a_probe_never_answered_stops_holding_calls_back() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..4 {
            b.record(t0, true);
        }
        let probe = t0 + Duration::from_secs(30);
        b.admit(probe).unwrap();
        assert_eq!(
            b.admit(probe + Duration::from_secs(2)),
            Err(Duration::from_secs(3))
        );
        b.admit(probe + Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn successes_age_failures_out_of_the_window() {
        let t0 = Instant::now();
        let mut b = breaker();
        for i in 0..100 {
            b.record(t0, i % 3 == 2);
        }
        assert_eq!(b.view(t0).state, BreakerState::Closed);
    }
}
