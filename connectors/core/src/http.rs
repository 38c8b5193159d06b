//! The HTTP kit every connector uses: one reqwest client, a governor rate
//! limiter that respects a rolling window, a bound on concurrent requests,
//! retries that back off on 5xx and transport errors, and throttling read the
//! vendor's way through a [`ThrottlePolicy`], and a circuit breaker
//! ([`crate::breaker`]) that stops calling an API that keeps failing.
//!
//! It interprets only what is the same for every vendor (transport failures,
//! 5xx, throttling answers as the policy reads them). Any other status goes back
//! to the connector, which knows its vendor's error shapes.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerSettings, BreakerView};
use crate::{ConnectorError, Millis};

/// A governor limiter of one request budget.
pub type Limiter = DefaultDirectRateLimiter;

/// A request budget: at most `requests` in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in any window.
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

impl RateLimit {
    /// A governor limiter that never exceeds the budget in any rolling window.
    ///
    /// Governor lets `burst` requests through at once and then one per interval,
    /// so a window can see `burst + window / interval` of them. The burst is 5% of
    /// the budget and the steady rate the rest, which keeps that sum at the budget
    /// and sustains 95% of it.
    pub fn limiter(self) -> Arc<Limiter> {
        Arc::new(DefaultDirectRateLimiter::direct(self.quota()))
    }

    fn quota(self) -> Quota {
        let requests = self.requests.max(1);
        let burst = (requests / 20).max(1);
        let steady = (requests - burst).max(1);
        let interval = (self.per / steady).max(Duration::from_nanos(1));
        Quota::with_period(interval)
            .expect("the interval is not zero")
            .allow_burst(NonZeroU32::new(burst).expect("max(1) is non-zero"))
    }
}

/// What a throttling answer asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Wait (this long, or the usual backoff) and try again.
    Retry(Option<Duration>),
    /// Stop calling the API for this long: every call fails at once until then.
    Pause(Duration),
}

/// How a vendor says "slow down".
pub trait ThrottlePolicy: Send + Sync {
    /// Read a 429 or 403 answer. `None` means it is not throttling (a 403 about
    /// permissions, say) and the answer goes back to the connector.
    fn refusal(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<Throttle>;

    /// Read any answer's headers: how long to wait before the next request
    /// because the vendor says the budget is spent.
    fn budget(&self, _headers: &HeaderMap) -> Option<Duration> {
        None
    }
}

/// The plain reading: 429 means wait for `Retry-After` (or the backoff) and retry.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardThrottle;

impl ThrottlePolicy for StandardThrottle {
    fn refusal(&self, status: StatusCode, headers: &HeaderMap, _body: &[u8]) -> Option<Throttle> {
        (status == StatusCode::TOO_MANY_REQUESTS).then(|| Throttle::Retry(retry_after(headers)))
    }
}

/// How a connector talks HTTP.
#[derive(Clone)]
pub struct HttpSettings {
    /// The vendor's name, used in errors and logs.
    pub vendor: &'static str,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Retries after the first attempt for transport errors, throttling and 5xx.
    pub max_retries: u32,
    /// First backoff delay; it doubles on each retry.
    pub backoff: Duration,
    /// Longest wait honoured from a `Retry-After` header before giving the call up.
    pub max_retry_after: Duration,
    /// Request budget, if the API has one.
    pub rate: Option<RateLimit>,
    /// Most requests in flight at once, if the API limits connections.
    pub max_concurrency: Option<usize>,
    /// How the vendor says "slow down".
    pub throttle: Arc<dyn ThrottlePolicy>,
    /// When to stop calling an API that keeps failing.
    pub breaker: BreakerSettings,
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("vendor", &self.vendor)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("rate", &self.rate)
            .field("max_concurrency", &self.max_concurrency)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl HttpSettings {
    /// Defaults for `vendor`: 30 s timeout, 3 retries from 250 ms, no limits,
    /// standard throttling, the default breaker.
    pub fn new(vendor: &'static str) -> Self {
        Self {
            vendor,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            backoff: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(60),
            rate: None,
            max_concurrency: None,
            throttle: Arc::new(StandardThrottle),
            breaker: BreakerSettings::default(),
        }
    }
}

/// Counters of one kit's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrafficStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Answers that were throttling (429, or what the policy read as such).
    pub throttled: u64,
}

struct Shared {
    requests: AtomicU64,
    throttled: AtomicU64,
    breaker: Mutex<Breaker>,
    /// Until when the vendor told us to stop (fail fast) or to wait (sleep).
    paused_until: Mutex<Option<Instant>>,
    waiting_until: Mutex<Option<Instant>>,
}

/// A shared HTTP client with the vendor's limits. Cheap to clone.
#[derive(Clone)]
pub struct HttpKit {
    client: reqwest::Client,
    settings: Arc<HttpSettings>,
    limiter: Option<Arc<Limiter>>,
    connections: Option<Arc<Semaphore>>,
    shared: Arc<Shared>,
}

impl HttpKit {
    /// Build the client. Fails only if the TLS backend cannot start.
    pub fn new(settings: HttpSettings) -> Result<Self, ConnectorError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::Settings {
                vendor: settings.vendor,
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            limiter: settings.rate.map(RateLimit::limiter),
            connections: settings
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n.max(1)))),
            shared: Arc::new(Shared {
                requests: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
                breaker: Mutex::new(Breaker::new(
                    settings.breaker,
                    settings.timeout + Duration::from_secs(1),
                )),
                paused_until: Mutex::new(None),
                waiting_until: Mutex::new(None),
            }),
            settings: Arc::new(settings),
        })
    }

    /// The underlying client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The vendor's name.
    pub fn vendor(&self) -> &'static str {
        self.settings.vendor
    }

    /// Requests sent and throttling answers received so far.
    pub fn stats(&self) -> TrafficStats {
        TrafficStats {
            requests: self.shared.requests.load(Ordering::Relaxed),
            throttled: self.shared.throttled.load(Ordering::Relaxed),
        }
    }

    /// Where the circuit breaker stands.
    pub fn breaker(&self) -> BreakerView {
        self.breaker_lock().view(Instant::now())
    }

    fn breaker_lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.shared
            .breaker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Send a request within the budget, retrying transport errors, throttling and 5xx.
    /// Any other response, success or not, is returned for the connector to read.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ConnectorError> {
        self.send_limited(None, request).await
    }

    /// Like [`HttpKit::send`], also waiting on an endpoint's own limiter
    /// (HubSpot's search has a budget of its own).
    pub async fn send_limited(
        &self,
        extra: Option<&Limiter>,
        request: RequestBuilder,
    ) -> Result<Response, ConnectorError> {
        let vendor = self.settings.vendor;
        let mut attempt = 0;
        loop {
            self.wait_for_budget().await?;
            if let Err(retry_in) = self.breaker_lock().admit(Instant::now()) {
                return Err(ConnectorError::Paused { vendor, retry_in });
            }
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            if let Some(limiter) = extra {
                limiter.until_ready().await;
            }
            let request = request
                .try_clone()
                .ok_or_else(|| ConnectorError::Protocol {
                    vendor,
                    message: "a request body could not be replayed".into(),
                })?;
            let permit = match &self.connections {
                Some(semaphore) => Some(
                    semaphore
                        .acquire()
                        .await
                        .expect("the semaphore is never closed"),
                ),
                None => None,
            };
            self.shared.requests.fetch_add(1, Ordering::Relaxed);
            let result = request.send().await;
            drop(permit);
            let failed = result
                .as_ref()
                .map_or(true, |response| response.status().is_server_error());
            self.breaker_lock().record(Instant::now(), failed);
            let retries_left = attempt < self.settings.max_retries;
            let backoff = self.settings.backoff * 2u32.saturating_pow(attempt);
            attempt += 1;
            let response = match result {
                Ok(response) => response,
                Err(error) => {
                    let failure = transport_error(vendor, &error);
                    if retries_left {
                        tracing::debug!(vendor, attempt, error = %failure, "Request failed; retrying.");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                    return Err(failure);
                }
            };
            if let Some(wait) = self.settings.throttle.budget(response.headers()) {
                self.hold(&self.shared.waiting_until, wait);
            }
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN {
                let (response, throttle) = self.read_refusal(response).await?;
                match throttle {
                    None => return Ok(response),
                    Some(Throttle::Pause(wait)) => {
                        self.shared.throttled.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            vendor,
                            pause_s = wait.as_secs(),
                            "The API asks us to stop for a while; pausing this connector."
                        );
                        self.hold(&self.shared.paused_until, wait);
                        return Err(ConnectorError::RateLimited {
                            vendor,
                            retry_after: Some(wait),
                        });
                    }
                    Some(Throttle::Retry(asked)) => {
                        self.shared.throttled.fetch_add(1, Ordering::Relaxed);
                        let wait = asked.unwrap_or(backoff);
                        if retries_left && wait <= self.settings.max_retry_after {
                            tracing::info!(
                                vendor,
                                wait_ms = wait.as_millis() as u64,
                                "Rate limited; waiting."
                            );
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        return Err(ConnectorError::RateLimited {
                            vendor,
                            retry_after: Some(wait),
                        });
                    }
                }
            }
            if status.is_server_error() {
                if retries_left {
                    tracing::debug!(
                        vendor,
                        status = status.as_u16(),
                        attempt,
                        "Server error; retrying."
                    );
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                let message = body_excerpt(response).await;
                return Err(ConnectorError::Server {
                    vendor,
                    status: status.as_u16(),
                    message,
                });
            }
            return Ok(response);
        }
    }

    /// Fail at once while paused; sleep while the vendor said the budget is spent.
    async fn wait_for_budget(&self) -> Result<(), ConnectorError> {
        let now = Instant::now();
        let paused = *self.shared.paused_until.lock().expect("not poisoned");
        if let Some(until) = paused.filter(|until| *until > now) {
            return Err(ConnectorError::RateLimited {
                vendor: self.settings.vendor,
                retry_after: Some(until - now),
            });
        }
        let waiting = *self.shared.waiting_until.lock().expect("not poisoned");
        if let Some(until) = waiting.filter(|until| *until > now) {
            tokio::time::sleep_until(until).await;
        }
        Ok(())
    }

    fn hold(&self, slot: &Mutex<Option<Instant>>, wait: Duration) {
        let until = Instant::now() + wait;
        let mut slot = slot.lock().expect("not poisoned");
        if slot.is_none_or(|current| current < until) {
            *slot = Some(until);
        }
    }

    /// Read a 429/403 body for the policy; give the answer back intact if it is not throttling.
    async fn read_refusal(
        &self,
        response: Response,
    ) -> Result<(Response, Option<Throttle>), ConnectorError> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(self.settings.vendor, &e))?;
        let throttle = self.settings.throttle.refusal(status, &headers, &body);
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.headers_mut() = headers;
        Ok((Response::from(rebuilt), throttle))
    }
}

/// The server's clock from a response's `Date` header, in milliseconds.
pub fn server_time(response: &Response) -> Option<Millis> {
    let date = response
        .headers()
        .get(reqwest::header::DATE)?
        .to_str()
        .ok()?;
    let time = httpdate::parse_http_date(date).ok()?;
    let since = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(since.as_millis() as Millis)
}

/// The first few hundred characters of a response body, for error messages.
pub async fn body_excerpt(response: Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let mut excerpt: String = text.chars().take(300).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    excerpt
}

/// A `Retry-After` header, in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(seconds) = value.trim().parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn transport_error(vendor: &'static str, error: &reqwest::Error) -> ConnectorError {
    let url = error
        .url()
        .map(|url| {
            let mut url = url.clone();
            url.set_query(None);
            url.to_string()
        })
        .unwrap_or_default();
    if error.is_timeout() {
        return ConnectorError::Server {
            vendor,
            status: 0,
            message: format!("timed out calling {url}"),
        };
    }
    // The innermost cause names what happened ("Connection refused"); reqwest's own text does not.
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    ConnectorError::Unreachable {
        vendor,
        url,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use governor::clock::FakeRelativeClock;

    /// Send as fast as the limiter allows for a minute of fake time, one try per millisecond.
    fn sent_at(budget: RateLimit) -> Vec<u64> {
        let clock = FakeRelativeClock::default();
        let limiter = governor::RateLimiter::direct_with_clock(budget.quota(), clock.clone());
        let mut sent = Vec::new();
        for ms in 0..60_000u64 {
            while limiter.check().is_ok() {
                sent.push(ms);
            }
            clock.advance(Duration::from_millis(1));
        }
        sent
    }

    #[test]
    fn no_rolling_window_exceeds_the_budget_and_most_of_it_is_used() {
        for budget in [
            RateLimit {
                requests: 100,
                per: Duration::from_secs(10),
            },
            RateLimit {
                requests: 4,
                per: Duration::from_secs(1),
            },
        ] {
            let sent = sent_at(budget);
            let window = budget.per.as_millis() as u64;
            let busiest = (0..sent.len())
                .map(|i| {
                    sent[i..]
                        .iter()
                        .take_while(|&&t| t < sent[i] + window)
                        .count()
                })
                .max()
                .unwrap();
            assert!(
                busiest <= budget.requests as usize,
                "{busiest} requests in one window of {budget:?}"
            );
            let per_minute = budget.requests as f64 * 60_000.0 / window as f64;
            assert!(
                sent.len() as f64 >= 0.74 * per_minute,
                "only {} of {per_minute} sent for {budget:?}",
                sent.len()
            );
        }
    }
}
