//! An in-memory simulator of the Mailchimp Marketing v3 API for one audience,
//! served with axum under `/3.0`.
//!
//! It implements what tandem's client uses, the way Mailchimp does it: Basic
//! or Bearer auth with an API key whose suffix names the datacenter, members
//! listed with `count`/`offset`, `since_last_changed` and sorting on
//! `last_changed`, `fields`/`exclude_fields`, members read and written by
//! subscriber hash, `contact_id` or email, batch subscribe with per-member
//! errors inside a 200, archive by DELETE, merge field validation, member tags
//! (`tags` on creates and batch subscribe, `GET`/`POST …/members/{hash}/tags`,
//! at most 50 tags in the member payload), `last_changed` advancing on every
//! change, `problem+json` errors, and, when asked, member webhooks (none for
//! tag changes, which are not member events). It is a test double: one
//! audience, no persistence, no segments, interests or notes.

// Handlers return a ready error `Response` as their `Err`: large, but it is what axum answers with.
#![allow(clippy::result_large_err)]

mod api;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

pub use state::MergeFieldDef;
use state::State;

use tandem_core::sim::{ApiFaultSwitch, Envelope, Webhooks};

use crate::model::Member;

/// Mailchimp's deliveries: one form-encoded event per request, signed when a
/// signing secret was given.
struct MailchimpEnvelope {
    signing_secret: Option<String>,
    sim: MailchimpSim,
}

impl Envelope for MailchimpEnvelope {
    fn batch_size(&self) -> usize {
        1
    }

    fn seal(&self, events: &[Value]) -> (Vec<u8>, &'static str, Vec<(&'static str, String)>) {
        let body = events
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .as_bytes()
            .to_vec();
        let mut headers = Vec::new();
        if let Some(secret) = &self.signing_secret {
            let at = self.sim.lock().now() / 1000;
            headers.push((
                "x-mailchimp-signature",
                crate::webhook::sign(secret, at, &body),
            ));
        }
        (body, "application/x-www-form-urlencoded", headers)
    }
}

/// Settings of a simulator. Facts the vendor does not document exactly can be changed here.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The one API key accepted, `<hex>-<dc>`.
    pub api_key: String,
    /// The one audience served.
    pub list_id: String,
    /// Largest `count` of a page.
    pub max_count: u32,
    /// Most members of one batch subscribe.
    pub batch_limit: usize,
    /// Whether `since_last_changed` includes members changed at exactly that second
    /// (Mailchimp documents "changed after"; the default reads that as strict).
    pub since_inclusive: bool,
    /// Most requests in flight at once (Mailchimp allows 10 per user); `None` for no limit.
    pub max_connections: Option<usize>,
    /// Whether a request over that limit gets a bodiless 403, as Mailchimp may
    /// answer at very high volumes, instead of a 429.
    pub refuse_with_403: bool,
    /// How long each request takes to answer (the real API takes 100 ms or more).
    pub latency: std::time::Duration,
    /// Whether adding or removing a member's tag advances its `last_changed`, and
    /// with it the member's place in `since_last_changed` listings. Mailchimp does
    /// not document it [unverified]; the default assumes it does.
    pub tags_change_last_changed: bool,
    /// Whether tag names match without regard to case, so that `VIP` and `vip`
    /// are one tag, spelled as first created. Reported by third parties, not
    /// documented [unverified]; the default assumes they do.
    pub tag_names_ignore_case: bool,
    /// Whether a batch subscribe member may give a new member's status as
    /// `status_if_new` instead of `status`. The 3.0.55 spec's batch member has
    /// `status` only [unverified for the live API]; the default follows the spec.
    pub batch_status_if_new: bool,
    /// Whether the members a batch subscribe answers with carry their
    /// `contact_id`. The 3.0.55 spec's schema of those members has none
    /// [unverified for the live API]; the default gives it, as a member's GET does.
    pub batch_answers_contact_id: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_key: "0123456789abcdef0123456789abcdef-us6".into(),
            list_id: "a1b2c3d4e5".into(),
            max_count: 1000,
            batch_limit: 500,
            since_inclusive: false,
            max_connections: Some(10),
            refuse_with_403: false,
            latency: std::time::Duration::ZERO,
            tags_change_last_changed: true,
            tag_names_ignore_case: true,
            batch_status_if_new: false,
            batch_answers_contact_id: true,
        }
    }
}

/// What a seed file holds: extra merge fields and members in the API's shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Merge fields to define besides Mailchimp's defaults (FNAME, LNAME, ADDRESS, PHONE, BIRTHDAY).
    #[serde(default)]
    pub merge_fields: Vec<MergeFieldDef>,
    /// Members to load.
    #[serde(default)]
    pub members: Vec<SeedMember>,
}

/// One member of a seed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMember {
    /// The email address.
    pub email_address: String,
    /// The status; `subscribed` if absent.
    #[serde(default)]
    pub status: Option<String>,
    /// Merge field values by tag.
    #[serde(default)]
    pub merge_fields: std::collections::BTreeMap<String, Value>,
    /// ISO 8601 time of the last change; now if absent.
    #[serde(default)]
    pub last_changed: Option<String>,
}

/// One request as the simulator received it, kept once a test calls
/// [`MailchimpSim::record_requests`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimRequest {
    /// `GET`, `POST`, `PATCH`, ...
    pub method: String,
    /// The path under `/3.0`, such as `/lists/a1b2c3d4e5/members/…/tags`.
    pub path: String,
    /// The raw query string, empty if none.
    pub query: String,
    /// The JSON body; `Null` when empty or not JSON.
    pub body: Value,
}

/// Counters a test can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Requests answered (any status).
    pub requests: u64,
    /// Members created, updated (tags included) or archived.
    pub writes: u64,
    /// Requests refused for too many connections.
    pub throttled: u64,
}

/// A running or ready simulator. Clones share one state.
#[derive(Clone)]
pub struct MailchimpSim {
    state: Arc<Mutex<State>>,
    config: Arc<SimConfig>,
    /// Requests in flight, counted outside the state's lock.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    faults: ApiFaultSwitch,
}

impl MailchimpSim {
    /// An empty audience with Mailchimp's default merge fields.
    pub fn new(config: SimConfig) -> Self {
        let mut state = State::new(&config.list_id);
        state.tags_change_last_changed = config.tags_change_last_changed;
        state.tag_names_ignore_case = config.tag_names_ignore_case;
        Self {
            state: Arc::new(Mutex::new(state)),
            config: Arc::new(config),
            in_flight: Arc::default(),
            faults: ApiFaultSwitch::default(),
        }
    }

    /// The API's faults: set them to throttle, fail, slow down, cut off or
    /// garble answers while the simulator runs.
    pub fn api_faults(&self) -> &ApiFaultSwitch {
        &self.faults
    }

    /// Load a seed. Seeded values skip validation, as data imported long ago can.
    pub fn seed(&self, seed: Seed) -> Result<(), String> {
        self.lock().load(seed)
    }

    /// The axum router serving the API under `/3.0`.
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

    /// Serve on an ephemeral loopback port in the background; returns the API root (`…/3.0`).
    pub async fn spawn(self) -> std::io::Result<String> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?;
        tokio::spawn(self.serve(listener, std::future::pending()));
        Ok(format!("http://{address}/3.0"))
    }

    /// The member with this email (any case), archived or not.
    pub fn member(&self, email: &str) -> Option<Member> {
        let state = self.lock();
        state
            .get(&crate::subscriber_hash(email))
            .map(|m| state.render(m))
    }

    /// Every member that is not archived, newest change last.
    pub fn members(&self) -> Vec<Member> {
        let state = self.lock();
        state
            .by_change()
            .filter(|m| m.status != "archived")
            .map(|m| state.render(m))
            .collect()
    }

    /// Set merge fields of the member with this email as a subscriber would in a form.
    pub fn edit(&self, email: &str, merge_fields: &[(&str, &str)]) -> Option<String> {
        let mut state = self.lock();
        let hash = crate::subscriber_hash(email);
        state.get(&hash)?;
        let values = merge_fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        state.by_person = true;
        state.update(&hash, None, None, values);
        state.by_person = false;
        Some(hash)
    }

    /// Set a member's status as the member (or an admin in the app) would:
    /// `unsubscribed`, `cleaned`, `subscribed`, or `archived` to archive it.
    pub fn set_status(&self, email: &str, status: &str) -> Option<String> {
        let mut state = self.lock();
        let hash = state.hash_of(email)?;
        state.by_person = true;
        state.update(&hash, None, Some(status), std::collections::BTreeMap::new());
        state.by_person = false;
        Some(hash)
    }

    /// Make the tags of the member with this email exactly these, as a person
    /// editing the contact's tags in the app would. Like the API's tag changes it
    /// sends no webhook.
    pub fn set_tags(&self, email: &str, tags: &[&str]) -> Option<String> {
        let mut state = self.lock();
        let hash = state.hash_of(email)?;
        let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let changes = state.replacing_tags(&hash, &names);
        state.by_person = true;
        state.change_tags(&hash, &changes);
        state.by_person = false;
        Some(hash)
    }

    /// Start keeping every request that passes auth and the connection limit
    /// from now on (method, path, query and JSON body), for tests that check
    /// what a client sends.
    pub fn record_requests(&self) {
        self.lock().journal.get_or_insert_with(Vec::new);
    }

    /// The requests received since [`MailchimpSim::record_requests`], oldest first.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.lock().journal.clone().unwrap_or_default()
    }

    /// Send webhook events to `url` (which holds the `?secret=`), form-encoded
    /// and, with a signing secret, signed as Mailchimp signs them. Only people's
    /// changes send events unless `for_api_changes` (Mailchimp's `sources.api`).
    /// Returns the sender, whose faults a test can set. Must be called inside a Tokio runtime.
    pub fn send_webhooks(
        &self,
        url: &str,
        signing_secret: Option<&str>,
        for_api_changes: bool,
    ) -> Webhooks {
        let envelope = MailchimpEnvelope {
            signing_secret: signing_secret.map(String::from),
            sim: self.clone(),
        };
        let webhooks = Webhooks::start(url.to_string(), envelope);
        let mut state = self.lock();
        state.webhooks = Some(webhooks.clone());
        state.webhooks_for_api = for_api_changes;
        webhooks
    }

    /// Move the audience's clock forward: later writes get later `last_changed` times.
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.lock().clock_offset += by.as_millis() as i64;
    }

    /// Refuse these addresses as "fake or invalid", as Mailchimp does for some.
    pub fn reject_emails(&self, emails: &[&str]) {
        self.lock().rejected_emails = emails.iter().map(|e| e.trim().to_lowercase()).collect();
    }

    /// Apply the next `n` writes but answer each with a 500, as when the answer
    /// is lost after the vendor already wrote.
    pub fn lose_answers(&self, n: u32) {
        self.lock().lost_answers = n;
    }

    /// Refuse the next `n` writes with a 503 without applying them.
    pub fn refuse_writes(&self, n: u32) {
        self.lock().refused_writes = n;
    }

    /// Counters of requests and writes so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every write is a single insert, so a poisoned lock holds no half-written member.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
