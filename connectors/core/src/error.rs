//! `ConnectorError`: every way a call to a SaaS API can fail, each with the
//! [`ErrorKind`] that tells the engine what to do next.

use std::time::Duration;

/// What the engine does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A passing failure (network, 5xx, malformed response): try again later.
    Retry,
    /// The API asked us to slow down: try again after the delay, if one was given.
    RateLimited,
    /// The API rejected this one record: retry it with backoff, then park it as a dead letter.
    BadRecord,
    /// Credentials or settings are wrong: stop and tell the operator.
    Fatal,
}

/// An error from a connector. Messages name the vendor and never contain credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    /// The request never got an HTTP answer.
    #[error("{vendor}: cannot reach {url}: {reason}")]
    Unreachable {
        /// The vendor's name.
        vendor: &'static str,
        /// The URL without its query string.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The API answered 401 or 403: credentials missing, wrong or lacking a scope.
    #[error("{vendor}: credentials rejected (HTTP {status}): {message}")]
    Auth {
        /// The vendor's name.
        vendor: &'static str,
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// The API answered 429 (or Mailchimp's bodiless 403 under load).
    #[error("{vendor}: rate limited{}", retry_after.map(|d| format!(", retry after {} ms", d.as_millis())).unwrap_or_default())]
    RateLimited {
        /// The vendor's name.
        vendor: &'static str,
        /// How long the API asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The API answered 5xx, or timed out.
    #[error("{vendor}: server error (HTTP {status}): {message}")]
    Server {
        /// The vendor's name.
        vendor: &'static str,
        /// HTTP status (0 for a timeout).
        status: u16,
        /// The API's message.
        message: String,
    },
    /// The API rejected one record (a 4xx about its content, or a per-record batch error).
    #[error("{vendor}: record rejected (HTTP {status}): {message}")]
    Rejected {
        /// The vendor's name.
        vendor: &'static str,
        /// HTTP status of the call, or of the per-record result.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// The API says the record a write names does not exist (any more): it may
    /// have been archived, merged or deleted since tandem last read it.
    #[error("{vendor}: record not found: {message}")]
    Missing {
        /// The vendor's name.
        vendor: &'static str,
        /// The API's message.
        message: String,
    },
    /// The connector's circuit breaker is open: too many recent calls got no
    /// usable answer, so calls wait until a probe succeeds.
    #[error("{vendor}: paused after repeated failures; next try in {} s", retry_in.as_secs().max(1))]
    Paused {
        /// The vendor's name.
        vendor: &'static str,
        /// How long until the probe.
        retry_in: Duration,
    },
    /// The API answered something we cannot read.
    #[error("{vendor}: unexpected response: {message}")]
    Protocol {
        /// The vendor's name.
        vendor: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// A setting is wrong (unknown list, bad base URL), found by talking to the API.
    #[error("{vendor}: {message}")]
    Settings {
        /// The vendor's name.
        vendor: &'static str,
        /// Which setting and what is wrong with it.
        message: String,
    },
}

impl ConnectorError {
    /// What the engine should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unreachable { .. }
            | Self::Server { .. }
            | Self::Protocol { .. }
            | Self::Paused { .. } => ErrorKind::Retry,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Rejected { .. } | Self::Missing { .. } => ErrorKind::BadRecord,
            Self::Auth { .. } | Self::Settings { .. } => ErrorKind::Fatal,
        }
    }
}
