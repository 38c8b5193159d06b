//! An in-memory simulator of the HubSpot CRM v3 contacts API, served with axum.
//!
//! It implements what tandem's client uses, the way HubSpot does it: Bearer
//! auth, the contact list with `after` paging, search with filters, sorts, the
//! 200-per-page limit and the 10,000-result cap, batch read/create/update/
//! upsert/archive with at most 100 inputs and 207 multi-status answers, single
//! reads by id or email, the properties list, string property values, a
//! `lastmodifieddate` that advances on every write, property history
//! (`propertiesWithHistory`, newest first, at most 50 inputs a batch read; not
//! on search), and HubSpot's error JSON. Tests can keep a journal of the
//! requests it received. It is a test double: no persistence, no associations.

// Handlers return a ready error `Response` as their `Err`: large, but it is what axum answers with.
#![allow(clippy::result_large_err)]

mod api;
mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use state::PropertyDef;
use state::{Source, State};

use serde_json::Value;
use tandem_core::sim::{ApiFaultSwitch, Envelope, Webhooks};

use crate::model::SimplePublicObject;

/// HubSpot's deliveries: a JSON array of up to 100 events, signed v3 (and v1).
struct HubSpotEnvelope {
    url: String,
    secret: String,
    sim: HubSpotSim,
}

impl Envelope for HubSpotEnvelope {
    fn batch_size(&self) -> usize {
        100
    }

    fn seal(&self, events: &[Value]) -> (Vec<u8>, &'static str, Vec<(&'static str, String)>) {
        let body = serde_json::to_vec(events).expect("events serialize");
        let timestamp = self.sim.lock().now().to_string();
        let v3 = crate::webhook::sign_v3(&self.secret, "POST", &self.url, &body, &timestamp);
        let v1 = crate::webhook::sign_v1(&self.secret, &body);
        let headers = vec![
            ("x-hubspot-signature-v3", v3),
            ("x-hubspot-request-timestamp", timestamp),
            ("x-hubspot-signature", v1),
            ("x-hubspot-signature-version", "v1".to_string()),
        ];
        (body, "application/json", headers)
    }
}

/// Settings of a simulator. The limits are HubSpot's; several are not in its
/// published specification, so they can be changed here.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The one Bearer token the simulator accepts.
    pub token: String,
    /// Largest `limit` of the contact list.
    pub list_limit: u32,
    /// Largest `limit` of a search.
    pub search_limit: u32,
    /// Results one search can page through.
    pub search_cap: u32,
    /// Whether a search page's `paging.next.after` is an opaque token instead
    /// of the number of results before the next page, as HubSpot's examples
    /// show it (list cursors are documented as opaque; search's are not).
    pub search_after_opaque: bool,
    /// Most inputs of a batch call.
    pub batch_limit: usize,
    /// Requests allowed in any rolling window (search excepted), like a private
    /// app's 100 or 190 per 10 s; `None` for no limit.
    pub rate_limit: Option<(u32, Duration)>,
    /// Requests allowed per day (by the simulator's clock, UTC); `None` for no limit.
    pub daily_limit: Option<u32>,
    /// The search endpoint's own budget, like 5 per second; `None` for no limit.
    pub search_rate_limit: Option<(u32, Duration)>,
    /// Whether a 429 carries `Retry-After` (HubSpot does not document one).
    pub retry_after: bool,
    /// How long each request takes to answer (the real API takes 100 ms or more).
    pub latency: Duration,
    /// Most inputs of a batch read that asks for `propertiesWithHistory`. HubSpot
    /// answers more with a 400 ("The maximum number of inputs supported in a
    /// batch request for property histories is 50"), known from third-party code only.
    pub history_batch_limit: usize,
    /// Most contacts of one page of the contact list that asks for
    /// `propertiesWithHistory`. The spec says only that the parameter "will
    /// reduce the maximum number of contacts that can be read by a single
    /// request"; the simulator shortens the page to this and pages on.
    pub list_history_limit: u32,
    /// The `sourceType` of values written through the API. Captures of real
    /// answers show `INTEGRATION` (with the app id as `sourceId`) for apps; some
    /// show `API`. Not documented.
    pub api_source_type: String,
    /// Whether setting a property to the value it already holds adds an entry
    /// to its history (HubSpot does not document it either way).
    pub history_repeats: bool,
}
impl Default for SimConfig {
    fn default() -> Self {
        Self {
            token: "sim-hubspot-token".into(),
            list_limit: 100,
            search_limit: 200,
            search_cap: 10_000,
            search_after_opaque: false,
            batch_limit: 100,
            rate_limit: None,
            daily_limit: None,
            search_rate_limit: None,
            retry_after: false,
            latency: Duration::ZERO,
            history_batch_limit: 50,
            list_history_limit: 50,
            api_source_type: "INTEGRATION".into(),
            history_repeats: true,
        }
    }
}

/// One request the simulator received, as kept by [`HubSpotSim::record_requests`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimRequest {
    /// `GET`, `POST`, `PATCH`, ...
    pub method: String,
    /// The path, such as `/crm/v3/objects/contacts/batch/read`.
    pub path: String,
    /// The raw query string, empty if none.
    pub query: String,
    /// The JSON body; `Null` when empty or not JSON.
    pub body: Value,
}

/// What a seed file holds: custom properties and contacts in the API's shape
/// (`id`, `createdAt`, `updatedAt` may be left out).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Custom contact properties to define besides HubSpot's default ones.
    #[serde(default)]
    pub properties: Vec<PropertyDef>,
    /// Contacts to load.
    #[serde(default)]
    pub contacts: Vec<SeedContact>,
}

/// One contact of a seed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedContact {
    /// Property values.
    pub properties: BTreeMap<String, String>,
    /// ISO 8601 time of the last change; now if absent.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// ISO 8601 creation time; the change time if absent.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// Counters a test can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Requests answered (any status).
    pub requests: u64,
    /// Contacts created, updated or archived.
    pub writes: u64,
    /// Requests refused with 429.
    pub throttled: u64,
}

/// A running or ready simulator. Clones share one state.
#[derive(Clone)]
pub struct HubSpotSim {
    state: Arc<Mutex<State>>,
    config: Arc<SimConfig>,
    faults: ApiFaultSwitch,
}

impl HubSpotSim {
    /// An empty portal with HubSpot's default contact properties.
    pub fn new(config: SimConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new(&config))),
            config: Arc::new(config),
            faults: ApiFaultSwitch::default(),
        }
    }

    /// The API's faults: set them to throttle, fail, slow down, cut off or
    /// garble answers while the simulator runs.
    pub fn api_faults(&self) -> &ApiFaultSwitch {
        &self.faults
    }

    /// Keep every change out of search for `lag` after it is made, as HubSpot's
    /// search index trails writes (by seconds, sometimes more); zero to stop.
    pub fn set_search_lag(&self, lag: Duration) {
        self.lock().search_lag = lag.as_millis() as i64;
    }

    /// Load a seed. Seeded values skip validation, as data imported long ago can;
    /// their history says they were imported at the contact's `updatedAt`.
    pub fn seed(&self, seed: Seed) -> Result<(), String> {
        self.lock().load(seed)
    }

    /// The axum router serving the API.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Serve on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Serve on an ephemeral loopback port in the background; returns the base URL.
    pub async fn spawn(self) -> std::io::Result<String> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?;
        tokio::spawn(self.serve(listener, std::future::pending()));
        Ok(format!("http://{address}"))
    }

    /// The contact with this email (any case), with every property, archived or not.
    pub fn contact_by_email(&self, email: &str) -> Option<SimplePublicObject> {
        let state = self.lock();
        state
            .find_email(email)
            .map(|id| state.to_object(id, None, None))
    }

    /// Every live contact, with every property, in id order.
    pub fn contacts(&self) -> Vec<SimplePublicObject> {
        let state = self.lock();
        state
            .live_ids()
            .map(|id| state.to_object(id, None, None))
            .collect()
    }

    /// Set properties of the contact with this email as a person in HubSpot
    /// would (their history says `CRM_UI`, at the simulator's clock); returns its id.
    pub fn edit(&self, email: &str, properties: &[(&str, &str)]) -> Option<String> {
        let mut state = self.lock();
        let id = state.find_email(email)?;
        let values = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        state.write_unchecked(id, values, Source::Person);
        Some(id.to_string())
    }

    /// Move the portal's clock forward: later writes get later `lastmodifieddate`s.
    pub fn advance_clock(&self, by: Duration) {
        self.lock().clock_offset += by.as_millis() as i64;
    }

    /// Send webhook events (creation, property changes, deletion) to `url`,
    /// signed with `client_secret` as HubSpot signs them. Returns the sender, whose
    /// faults a test can set. Must be called inside a Tokio runtime.
    pub fn send_webhooks(&self, url: &str, client_secret: &str) -> Webhooks {
        let envelope = HubSpotEnvelope {
            url: url.to_string(),
            secret: client_secret.to_string(),
            sim: self.clone(),
        };
        let webhooks = Webhooks::start(url.to_string(), envelope);
        self.lock().webhooks = Some(webhooks.clone());
        webhooks
    }

    /// Keep the latest change of the contact with this email out of search for
    /// a while, as HubSpot's search index lags behind writes.
    pub fn delay_indexing(&self, email: &str, by: Duration) {
        let mut state = self.lock();
        if let Some(id) = state.find_email(email) {
            let until = state.now() + by.as_millis() as i64;
            state.unindexed.insert(id, until);
        }
    }

    /// Refuse this address from now on, as HubSpot does once it is blocklisted.
    pub fn blocklist(&self, email: &str) {
        self.lock().blocklist.insert(email.trim().to_lowercase());
    }

    /// Apply the next `n` writes but answer each with a 500, as when the answer
    /// is lost after the vendor already wrote.
    pub fn lose_answers(&self, n: u32) {
        self.lock().lost_answers = n;
    }

    /// Archive the contact with this id as a person in HubSpot would; returns whether it was live.
    pub fn archive(&self, id: &str) -> bool {
        let mut state = self.lock();
        let Some(id) = id
            .parse()
            .ok()
            .filter(|id| state.contacts.get(id).is_some_and(|c| c.archived.is_none()))
        else {
            return false;
        };
        state.archive(id, Source::Person);
        true
    }

    /// Restore the archived contact with this id, as a person in HubSpot would.
    pub fn restore(&self, id: &str) -> bool {
        let mut state = self.lock();
        let Some(id) = id
            .parse()
            .ok()
            .filter(|id| state.contacts.get(id).is_some_and(|c| c.archived.is_some()))
        else {
            return false;
        };
        state.restore(id, Source::Person);
        true
    }

    /// Start keeping every request that passes auth and the rate limits from
    /// now on (method, path, query and JSON body), for tests that check what a
    /// client sends.
    pub fn record_requests(&self) {
        self.lock().journal.get_or_insert_with(Vec::new);
    }

    /// The requests received since [`HubSpotSim::record_requests`], oldest first.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.lock().journal.clone().unwrap_or_default()
    }

    /// Counters of requests, writes and 429s so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves no half-written contact behind
        // (every write is a single insert), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
