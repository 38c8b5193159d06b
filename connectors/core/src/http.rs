//! The HTTP kit every connector uses: one reqwest client, an optional governor
//! rate limiter, a bound on concurrent requests, and retries that honour 429
//! `Retry-After` and back off on 5xx and transport errors.
//!
//! It interprets only what is the same for every vendor (transport failures,
//! 429, 5xx). Any other status goes back to the connector, which knows its
//! vendor's error shapes.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota};
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::sync::Semaphore;

use crate::{ConnectorError, Millis};

/// A governor limiter of one request budget.
pub type Limiter = DefaultDirectRateLimiter;

/// A request budget: `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in each period.
    pub requests: u32,
    /// The period.
    pub per: Duration,
}

impl RateLimit {
    /// A governor limiter for this budget; the burst is the whole budget.
    pub fn limiter(self) -> Arc<DefaultDirectRateLimiter> {
        let requests = NonZeroU32::new(self.requests.max(1)).expect("max(1) is non-zero");
        let quota = Quota::with_period(self.per / requests.get())
            .unwrap_or_else(|| Quota::per_second(requests))
            .allow_burst(requests);
        Arc::new(DefaultDirectRateLimiter::direct(quota))
    }
}

/// How a connector talks HTTP.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The vendor's name, used in errors and logs.
    pub vendor: &'static str,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Retries after the first attempt for transport errors, 429 and 5xx.
    pub max_retries: u32,
    /// First backoff delay; it doubles on each retry.
    pub backoff: Duration,
    /// Longest wait honoured from a `Retry-After` header.
    pub max_retry_after: Duration,
    /// Request budget, if the API has one.
    pub rate: Option<RateLimit>,
    /// Most requests in flight at once, if the API limits connections.
    pub max_concurrency: Option<usize>,
}

impl HttpSettings {
    /// Defaults for `vendor`: 30 s timeout, 3 retries from 250 ms, no limits.
    pub fn new(vendor: &'static str) -> Self {
        Self {
            vendor,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            backoff: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(60),
            rate: None,
            max_concurrency: None,
        }
    }
}

/// A shared HTTP client with the vendor's limits. Cheap to clone.
#[derive(Clone)]
pub struct HttpKit {
    client: reqwest::Client,
    settings: Arc<HttpSettings>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    connections: Option<Arc<Semaphore>>,
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

    /// Send a request within the budget, retrying transport errors, 429 and 5xx.
    /// Any other response, success or not, is returned for the connector to read.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ConnectorError> {
        self.send_limited(None, request).await
    }

    /// Like [`HttpKit::send`], also waiting on an endpoint's own limiter
    /// (HubSpot's search has a budget of its own).
    pub async fn send_limited(
        &self,
        extra: Option<&DefaultDirectRateLimiter>,
        request: RequestBuilder,
    ) -> Result<Response, ConnectorError> {
        let vendor = self.settings.vendor;
        let mut attempt = 0;
        loop {
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
            let result = request.send().await;
            drop(permit);
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
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after =
                    retry_after(&response).map(|d| d.min(self.settings.max_retry_after));
                if retries_left {
                    let wait = retry_after.unwrap_or(backoff);
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
                    retry_after,
                });
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

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
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
