//! The connector contract shared by tandem and every vendor crate.
//!
//! A connector speaks to one SaaS API and presents its records as flat maps of
//! vendor paths (`properties.firstname`, `merge_fields.FNAME`) to JSON values.
//! This crate holds only that contract, the error type every connector returns
//! and the HTTP kit (client, rate limiter, retries) they share. It knows nothing
//! of sync logic, SQL or policies.

pub mod breaker;
pub mod clock;
mod connector;
mod error;
mod hint;
mod http;
mod record;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use connector::{Connector, Page, Write, WriteOp, WriteOutcome};
pub use error::{ConnectorError, ErrorKind};
pub use hint::{Hint, HintKind, RecordRef, WebhookError};
pub use http::{
    HttpKit, HttpSettings, Limiter, RateLimit, StandardThrottle, Throttle, ThrottlePolicy,
    TrafficStats, body_excerpt, retry_after, server_time,
};
pub use record::{FieldMap, Record, Standing, normalize_key};

/// Milliseconds since the Unix epoch, the one time unit connectors hand to the engine.
pub type Millis = i64;
