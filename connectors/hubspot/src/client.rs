//! The HubSpot CRM v3 contacts client: full listing, incremental search with a
//! watermark, lookups by email and batched writes.
//!
//! Incremental polling searches on `lastmodifieddate`, newest first, from the
//! watermark minus an overlap window (search is eventually consistent). Newest
//! first means a contact edited while we page moves to a page we already read,
//! so it is read again on the next poll rather than skipped. A window that holds
//! more than the search cap (10,000 results) is narrowed from above and read again.
//!
//! Reads by id or email (`fetch`, `lookup`) can also ask for the history of
//! chosen properties, to tell when each one's value was set
//! ([`Record::changed_at`]). Polls never do: search cannot, and the list
//! endpoint would hold fewer contacts a page by an amount HubSpot does not state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tandem_core::clock::{now_millis, parse_rfc3339};
use tandem_core::{
    Connector, ConnectorError, HttpKit, HttpSettings, Limiter, Millis, Page, RateLimit, Record,
    Standing, Throttle, ThrottlePolicy, TrafficStats, Write, WriteOp, WriteOutcome, body_excerpt,
    normalize_key, retry_after, server_time,
};

use crate::model::{
    BatchId, BatchInputs, BatchReadRequest, BatchResponse, BatchWriteInput, CollectionResponse,
    ErrorBody, Filter, FilterGroup, SearchRequest, SimplePublicObject, Sort, StandardError,
    ValueWithTimestamp,
};
use crate::{KEY_PROPERTY, MODIFIED_PROPERTY, VENDOR, path_of, property_of};

/// Most inputs of one batch call.
pub const BATCH_LIMIT: usize = 100;
/// Most inputs of one batch read that asks for property history.
pub const HISTORY_BATCH_LIMIT: usize = 50;
/// Most results of one page of the contact list.
pub const LIST_LIMIT: u32 = 100;
/// Most results of one page of a search.
pub const SEARCH_LIMIT: u32 = 200;
/// Most results one search query can page through.
pub const SEARCH_CAP: u32 = 10_000;

/// Settings of a HubSpot client.
#[derive(Debug, Clone)]
pub struct HubSpotConfig {
    /// `https://api.hubapi.com`, or a simulator's address.
    pub base_url: String,
    /// A private app token or OAuth access token, sent as `Authorization: Bearer`.
    pub token: SecretString,
    /// Contact properties to read, by name (`firstname`). `email` and `lastmodifieddate` are always read.
    pub properties: Vec<String>,
    /// Contact properties to read with their history, by name, so that records
    /// read by id or email say when each one's value was set
    /// ([`Record::changed_at`]). Name them in `properties` too, so that the time
    /// found is that of the value read. Empty by default: asking for history
    /// halves the batch size (50 contacts a call instead of 100). Polls never
    /// ask for it.
    pub history_properties: Vec<String>,
    /// How far behind the watermark each incremental poll starts again.
    pub search_overlap: Duration,
    /// Budget of the search endpoint (its own, apart from the general one).
    pub search_rate: Option<RateLimit>,
    /// Timeouts, retries and the general request budget.
    pub http: HttpSettings,
}

impl HubSpotConfig {
    /// Defaults for the real API: 100 requests per 10 s, search 4 per second,
    /// and HubSpot's way of saying "slow down".
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        let mut http = HttpSettings::new(VENDOR);
        http.rate = Some(RateLimit {
            requests: 100,
            per: Duration::from_secs(10),
        });
        http.throttle = std::sync::Arc::new(HubSpotThrottle);
        Self {
            base_url: base_url.into(),
            token,
            properties: Vec::new(),
            history_properties: Vec::new(),
            search_overlap: Duration::from_secs(60),
            search_rate: Some(RateLimit {
                requests: 4,
                per: Duration::from_secs(1),
            }),
            http,
        }
    }
}

/// How HubSpot throttles: a 429 names its `policyName`, and every answer but
/// search's carries `X-HubSpot-RateLimit-*` headers.
pub struct HubSpotThrottle;

/// How long to stop after the daily budget is spent, before trying again. HubSpot
/// resets it at midnight in the account's time zone, which the API does not tell.
pub const DAILY_PAUSE: Duration = Duration::from_secs(15 * 60);

impl ThrottlePolicy for HubSpotThrottle {
    fn refusal(
        &self,
        status: reqwest::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Throttle> {
        if status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let body: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let asked = retry_after(headers);
        Some(match body.policy_name.as_deref() {
            Some("DAILY") => Throttle::Pause(asked.unwrap_or(DAILY_PAUSE)),
            // The ten-secondly window: HubSpot's guidance is to back off about ten seconds.
            _ => Throttle::Retry(Some(asked.unwrap_or(Duration::from_secs(10)))),
        })
    }

    fn budget(&self, headers: &HeaderMap) -> Option<Duration> {
        // The window's budget is spent (other apps share it): wait one window before the next request.
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        (number("x-hubspot-ratelimit-remaining")? == 0).then(|| {
            Duration::from_millis(
                number("x-hubspot-ratelimit-interval-milliseconds").unwrap_or(10_000),
            )
        })
    }
}

/// Where polling stands, stored by the engine between polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Cursor {
    /// Listing every contact; `started_at` is the server's clock when the listing began.
    List {
        after: Option<String>,
        started_at: Millis,
    },
    /// Paging a search of `since..=until`, newest first; `offset` results
    /// read so far (searches stop at 10,000), `after` the server's cursor of
    /// the next page, sent back as it came.
    Search {
        since: Millis,
        until: Option<Millis>,
        offset: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        newest: Millis,
    },
    /// Caught up: the newest change seen.
    CaughtUp { watermark: Millis },
}

/// A HubSpot client. Cheap to clone.
#[derive(Clone)]
pub struct HubSpotClient {
    kit: HttpKit,
    base: String,
    token: SecretString,
    /// Properties to read; the engine replaces them when a policy reload adds fields.
    properties: Arc<std::sync::RwLock<Arc<Vec<String>>>>,
    /// Properties to read with their history on fetches and lookups; replaced likewise.
    history: Arc<std::sync::RwLock<Arc<Vec<String>>>>,
    overlap: Millis,
    search_limiter: Option<Arc<Limiter>>,
}

/// The properties to request: the key and change time, then `wanted` without repeats.
fn property_list(wanted: Vec<String>) -> Vec<String> {
    let mut properties = vec![KEY_PROPERTY.to_string(), MODIFIED_PROPERTY.to_string()];
    for property in wanted {
        if !properties.contains(&property) {
            properties.push(property);
        }
    }
    properties
}

/// The properties to read with history: `wanted` without blanks or repeats.
fn history_list(wanted: Vec<String>) -> Vec<String> {
    let mut properties: Vec<String> = Vec::with_capacity(wanted.len());
    for property in wanted {
        if !property.is_empty() && !properties.contains(&property) {
            properties.push(property);
        }
    }
    properties
}

impl HubSpotClient {
    /// Read these contact properties (by name) from now on, besides the key and change time.
    pub fn read_properties(&self, names: Vec<String>) {
        let list = Arc::new(property_list(names));
        *self.properties.write().unwrap_or_else(|e| e.into_inner()) = list;
    }

    fn properties(&self) -> Arc<Vec<String>> {
        self.properties
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Read these contact properties (by name) with their history from now on,
    /// on fetches and lookups; an empty list stops asking for history.
    pub fn read_history(&self, names: Vec<String>) {
        let list = Arc::new(history_list(names));
        *self.history.write().unwrap_or_else(|e| e.into_inner()) = list;
    }

    /// Whether reads by id ask for any property's history.
    pub fn reads_history(&self) -> bool {
        !self.history().is_empty()
    }

    fn history(&self) -> Arc<Vec<String>> {
        self.history
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Build a client; no request is made.
    pub fn new(config: HubSpotConfig) -> Result<Self, ConnectorError> {
        let properties = property_list(config.properties);
        let history = history_list(config.history_properties);
        Ok(Self {
            kit: HttpKit::new(config.http)?,
            base: config.base_url.trim_end_matches('/').to_string(),
            token: config.token,
            properties: Arc::new(std::sync::RwLock::new(Arc::new(properties))),
            history: Arc::new(std::sync::RwLock::new(Arc::new(history))),
            overlap: config.search_overlap.as_millis() as Millis,
            search_limiter: config.search_rate.map(RateLimit::limiter),
        })
    }

    /// Requests sent and throttling answers received so far.
    pub fn traffic(&self) -> TrafficStats {
        self.kit.stats()
    }

    /// Where the circuit breaker stands.
    pub fn breaker(&self) -> tandem_core::breaker::BreakerView {
        self.kit.breaker()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.kit
            .client()
            .get(self.url(path))
            .bearer_auth(self.token.expose_secret())
    }

    fn post(&self, path: &str, body: &impl Serialize) -> reqwest::RequestBuilder {
        self.kit
            .client()
            .post(self.url(path))
            .bearer_auth(self.token.expose_secret())
            .json(body)
    }

    async fn list_page(
        &self,
        after: Option<&str>,
    ) -> Result<(CollectionResponse, Option<Millis>), ConnectorError> {
        let mut query = vec![
            ("limit", LIST_LIMIT.to_string()),
            ("archived", "false".to_string()),
            ("properties", self.properties().join(",")),
        ];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        let response = self
            .kit
            .send(self.get("/crm/v3/objects/contacts").query(&query))
            .await?;
        let server_now = server_time(&response);
        Ok((read_json(expect_ok(response).await?).await?, server_now))
    }

    async fn search_page(
        &self,
        since: Millis,
        until: Option<Millis>,
        after: Option<String>,
    ) -> Result<CollectionResponse, ConnectorError> {
        let mut filters = vec![Filter {
            property_name: MODIFIED_PROPERTY.into(),
            operator: "GTE".into(),
            value: Some(since.to_string()),
            high_value: None,
            values: None,
        }];
        if let Some(until) = until {
            filters.push(Filter {
                property_name: MODIFIED_PROPERTY.into(),
                operator: "LTE".into(),
                value: Some(until.to_string()),
                high_value: None,
                values: None,
            });
        }
        let request = SearchRequest {
            filter_groups: vec![FilterGroup { filters }],
            sorts: vec![Sort {
                property_name: MODIFIED_PROPERTY.into(),
                direction: "DESCENDING".into(),
            }],
            query: None,
            properties: self.properties().to_vec(),
            limit: Some(SEARCH_LIMIT),
            after,
        };
        let builder = self.post("/crm/v3/objects/contacts/search", &request);
        let response = self
            .kit
            .send_limited(self.search_limiter.as_deref(), builder)
            .await?;
        read_json(expect_ok(response).await?).await
    }

    /// Archive contacts (restorable for 90 days). An id already archived or unknown
    /// is no error: archiving is idempotent.
    async fn archive_chunk(&self, writes: &[&Write]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let inputs: Vec<BatchId> = writes
            .iter()
            .filter_map(|w| match &w.op {
                WriteOp::Archive { id } => Some(BatchId { id: id.clone() }),
                _ => None,
            })
            .collect();
        let builder = self.post(
            "/crm/v3/objects/contacts/batch/archive",
            &BatchInputs { inputs },
        );
        expect_ok(self.kit.send(builder).await?).await?;
        let now = now_millis();
        Ok(writes
            .iter()
            .map(|w| {
                let id = match &w.op {
                    WriteOp::Archive { id } => id.clone(),
                    _ => String::new(),
                };
                Ok(Record {
                    id,
                    key: Some(w.key.clone()),
                    fields: Default::default(),
                    updated_at: now,
                    changed_at: Default::default(),
                    standing: Standing::Archived,
                })
            })
            .collect())
    }

    /// Read contacts by id (or by `id_property`), live or archived, in batches,
    /// with the history of the properties [`HubSpotClient::read_history`] names.
    async fn batch_read(
        &self,
        ids: &[String],
        id_property: Option<&str>,
        archived: bool,
    ) -> Result<Vec<Record>, ConnectorError> {
        let mut found = Vec::new();
        let (properties, history) = (self.properties(), self.history());
        // HubSpot refuses a batch read of more than 50 inputs that asks for history.
        let size = if history.is_empty() {
            BATCH_LIMIT
        } else {
            HISTORY_BATCH_LIMIT
        };
        for chunk in ids.chunks(size) {
            let request = BatchReadRequest {
                inputs: chunk.iter().map(|id| BatchId { id: id.clone() }).collect(),
                id_property: id_property.map(String::from),
                properties: properties.to_vec(),
                properties_with_history: history.to_vec(),
            };
            let builder = self
                .post("/crm/v3/objects/contacts/batch/read", &request)
                .query(&[("archived", if archived { "true" } else { "false" })]);
            let response = self.kit.send(builder).await?;
            if response.status() == StatusCode::NOT_FOUND {
                continue;
            }
            let body: BatchResponse = read_json(expect_ok(response).await?).await?;
            for contact in body.results {
                found.push(to_record(contact)?);
            }
        }
        Ok(found)
    }

    /// Send one batch write; returns the body of a 200/201/207, or the error of the whole call.
    async fn batch_write(
        &self,
        action: &str,
        inputs: Vec<BatchWriteInput>,
    ) -> Result<BatchResponse, ConnectorError> {
        let path = format!("/crm/v3/objects/contacts/batch/{action}");
        let response = self
            .kit
            .send(self.post(&path, &BatchInputs { inputs }))
            .await?;
        read_json(expect_ok(response).await?).await
    }

    /// Write one chunk of at most [`BATCH_LIMIT`] writes; outcomes in input order.
    async fn write_chunk(&self, writes: &[&Write]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let creates = writes.iter().all(|w| w.op == WriteOp::Create);
        let inputs = writes
            .iter()
            .enumerate()
            .map(|(index, write)| {
                let mut properties: BTreeMap<String, String> = write
                    .fields
                    .iter()
                    .filter_map(|(path, value)| {
                        Some((property_of(path)?.to_string(), to_property(value)))
                    })
                    .collect();
                let (id, id_property) = match &write.op {
                    WriteOp::Create => {
                        properties
                            .entry(KEY_PROPERTY.into())
                            .or_insert_with(|| write.key.clone());
                        (write.key.clone(), Some(KEY_PROPERTY.to_string()))
                    }
                    WriteOp::Update { id } => (id.clone(), None),
                    WriteOp::Archive { .. } | WriteOp::DeletePermanently { .. } => {
                        unreachable!("apply sends archives apart")
                    }
                };
                BatchWriteInput {
                    id: Some(id),
                    id_property,
                    properties,
                    object_write_trace_id: Some(index.to_string()),
                    associations: None,
                }
            })
            .collect();
        let action = if creates { "upsert" } else { "update" };
        let response = match self.batch_write(action, inputs).await {
            Ok(response) => response,
            // Without a per-input answer, a rejected batch is retried one write at a time
            // so that one bad record fails alone.
            Err(error) if error.kind() == tandem_core::ErrorKind::BadRecord && writes.len() > 1 => {
                let mut outcomes = Vec::with_capacity(writes.len());
                for write in writes {
                    let single = Box::pin(self.write_chunk(std::slice::from_ref(write))).await?;
                    outcomes.extend(single);
                }
                return Ok(outcomes);
            }
            Err(error) if error.kind() == tandem_core::ErrorKind::BadRecord => {
                return Ok(vec![Err(error)]);
            }
            Err(error) => return Err(error),
        };
        Ok(match_outcomes(writes, response))
    }
}

impl Connector for HubSpotClient {
    async fn check(&self) -> Result<(), ConnectorError> {
        let response = self
            .kit
            .send(
                self.get("/crm/v3/objects/contacts")
                    .query(&[("limit", "1")]),
            )
            .await?;
        expect_ok(response).await.map(drop)
    }

    async fn poll(&self, cursor: Option<&str>) -> Result<Page, ConnectorError> {
        let cursor = match cursor {
            None => Cursor::List {
                after: None,
                started_at: 0,
            },
            Some(text) => serde_json::from_str(text).map_err(|e| ConnectorError::Protocol {
                vendor: VENDOR,
                message: format!("stored cursor {text:?} is not a HubSpot cursor: {e}"),
            })?,
        };
        let (records, next, more, full_listing) = match cursor {
            Cursor::List { after, started_at } => {
                let asked = std::time::Instant::now();
                let (page, server_now) = self.list_page(after.as_deref()).await?;
                // The listing's own start, by the server's clock, is where searching
                // picks up. The server stamps its answer after taking the page, so
                // the time the answer took is taken off: a contact changed between
                // the two is then still searched for.
                let started_at = if after.is_none() {
                    server_now.unwrap_or_else(now_millis) - asked.elapsed().as_millis() as Millis
                } else {
                    started_at
                };
                let next_after = page.paging.and_then(|p| p.next).map(|n| n.after);
                let records = page
                    .results
                    .into_iter()
                    .map(to_record)
                    .collect::<Result<Vec<_>, _>>()?;
                match next_after {
                    Some(after) => (
                        records,
                        Cursor::List {
                            after: Some(after),
                            started_at,
                        },
                        true,
                        true,
                    ),
                    None => (
                        records,
                        Cursor::CaughtUp {
                            watermark: started_at,
                        },
                        false,
                        true,
                    ),
                }
            }
            Cursor::CaughtUp { watermark } => {
                let since = watermark - self.overlap;
                self.search_step(since, None, 0, None, watermark).await?
            }
            Cursor::Search {
                since,
                until,
                offset,
                after,
                newest,
            } => {
                self.search_step(since, until, offset, after, newest)
                    .await?
            }
        };
        let cursor = serde_json::to_string(&next).expect("cursors serialize");
        Ok(Page {
            records,
            cursor,
            more,
            full_listing,
        })
    }

    async fn lookup(&self, keys: &[String]) -> Result<Vec<Record>, ConnectorError> {
        self.batch_read(keys, Some(KEY_PROPERTY), false).await
    }

    async fn fetch(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        let mut found = self.batch_read(ids, None, false).await?;
        // An id not found live may have been archived: read the archive to say so.
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !found.iter().any(|r| &r.id == *id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            found.extend(self.batch_read(&missing, None, true).await?);
        }
        Ok(found)
    }

    async fn apply(&self, writes: &[Write]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        // Creates go to batch/upsert, updates to batch/update, archives to
        // batch/archive; each keeps its input position.
        let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; writes.len()];
        let kind = |op: &WriteOp| match op {
            WriteOp::Create => 0,
            WriteOp::Update { .. } => 1,
            WriteOp::Archive { .. } => 2,
            WriteOp::DeletePermanently { .. } => 3,
        };
        for wanted in 0..3 {
            let positions: Vec<usize> = (0..writes.len())
                .filter(|&i| kind(&writes[i].op) == wanted)
                .collect();
            for chunk in positions.chunks(BATCH_LIMIT) {
                let batch: Vec<&Write> = chunk.iter().map(|&i| &writes[i]).collect();
                let results = if wanted == 2 {
                    self.archive_chunk(&batch).await?
                } else {
                    self.write_chunk(&batch).await?
                };
                for (&i, outcome) in chunk.iter().zip(results) {
                    outcomes[i] = Some(outcome);
                }
            }
        }
        for (i, write) in writes.iter().enumerate() {
            if kind(&write.op) == 3 {
                // HubSpot's permanent delete (GDPR delete) also blocklists the address: tandem never sends it.
                outcomes[i] = Some(Err(ConnectorError::Rejected {
                    vendor: VENDOR,
                    status: 0,
                    message:
                        "tandem does not delete HubSpot contacts permanently; archive them instead"
                            .into(),
                }));
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every write has an outcome"))
            .collect())
    }
}

impl HubSpotClient {
    async fn search_step(
        &self,
        since: Millis,
        until: Option<Millis>,
        offset: u32,
        after: Option<String>,
        newest: Millis,
    ) -> Result<(Vec<Record>, Cursor, bool, bool), ConnectorError> {
        // A cursor stored before `after` was kept pages by its offset.
        let after = after.or_else(|| (offset > 0).then(|| offset.to_string()));
        let page = self.search_page(since, until, after).await?;
        let records = page
            .results
            .into_iter()
            .map(to_record)
            .collect::<Result<Vec<_>, _>>()?;
        let newest = records
            .iter()
            .map(|r| r.updated_at)
            .fold(newest, Millis::max);
        // HubSpot's search `after` is the number of results before the next
        // page, but it is passed back as it came; the count read so far
        // stands in for it where it is not a number.
        let read = offset + records.len() as u32;
        let next_page = page.paging.and_then(|p| p.next).map(|n| {
            let offset = n.after.parse::<u32>().unwrap_or(read);
            (n.after, offset)
        });
        let next = match next_page {
            None => Cursor::CaughtUp { watermark: newest },
            Some((after, offset)) if offset + SEARCH_LIMIT <= SEARCH_CAP => Cursor::Search {
                since,
                until,
                offset,
                after: Some(after),
                newest,
            },
            Some(_) => {
                // The cap is reached: search again below the oldest change of this page.
                // Contacts sharing that instant are read twice, which is harmless.
                let oldest = records.iter().map(|r| r.updated_at).min().unwrap_or(since);
                let until = if Some(oldest) == until {
                    tracing::warn!(
                        at = oldest,
                        "More than 10,000 contacts share one modification time; skipping past it."
                    );
                    oldest - 1
                } else {
                    oldest
                };
                Cursor::Search {
                    since,
                    until: Some(until),
                    offset: 0,
                    after: None,
                    newest,
                }
            }
        };
        let more = !matches!(next, Cursor::CaughtUp { .. });
        Ok((records, next, more, false))
    }
}

/// Pair batch results and errors with the writes they answer.
fn match_outcomes(writes: &[&Write], response: BatchResponse) -> Vec<WriteOutcome> {
    let mut by_trace: HashMap<String, SimplePublicObject> = HashMap::new();
    let mut by_id: HashMap<String, SimplePublicObject> = HashMap::new();
    let mut by_email: HashMap<String, SimplePublicObject> = HashMap::new();
    for result in response.results {
        if let Some(trace) = &result.object_write_trace_id {
            by_trace.insert(trace.clone(), result.clone());
        }
        if let Some(email) = result
            .properties
            .get(KEY_PROPERTY)
            .cloned()
            .flatten()
            .and_then(|e| normalize_key(&e))
        {
            by_email.insert(email, result.clone());
        }
        by_id.insert(result.id.clone(), result);
    }
    let mut errors: HashMap<String, &StandardError> = HashMap::new();
    for error in &response.errors {
        for key in ["objectWriteTraceId", "ids", "emails"] {
            for value in error.context.get(key).into_iter().flatten() {
                errors.insert(value.clone(), error);
            }
        }
    }
    writes
        .iter()
        .enumerate()
        .map(|(index, write)| {
            let trace = index.to_string();
            let result = by_trace.remove(&trace).or_else(|| match &write.op {
                WriteOp::Create => by_email.remove(&write.key),
                WriteOp::Update { id }
                | WriteOp::Archive { id }
                | WriteOp::DeletePermanently { id } => by_id.remove(id),
            });
            if let Some(result) = result {
                return to_record(result);
            }
            let error = errors.get(&trace).copied().or_else(|| match &write.op {
                WriteOp::Create => errors.get(&write.key).copied(),
                WriteOp::Update { id }
                | WriteOp::Archive { id }
                | WriteOp::DeletePermanently { id } => errors.get(id).copied(),
            });
            match error {
                Some(e) if e.category == "OBJECT_NOT_FOUND" => Err(ConnectorError::Missing {
                    vendor: VENDOR,
                    message: e.message.clone(),
                }),
                _ => Err(ConnectorError::Rejected {
                    vendor: VENDOR,
                    status: 207,
                    message: error.map_or_else(
                        || "the batch response did not mention this input".to_string(),
                        |e| format!("{}: {}", e.category, e.message),
                    ),
                }),
            }
        })
        .collect()
}

/// A property value as HubSpot takes it: a string, `""` to clear.
fn to_property(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(to_property).collect::<Vec<_>>().join(";"),
        other => other.to_string(),
    }
}

/// A contact as a [`Record`]: `properties.<name>` paths, `updatedAt` as the
/// change time and, for properties read with history, each one's own change time.
pub fn to_record(contact: SimplePublicObject) -> Result<Record, ConnectorError> {
    let updated_at =
        parse_rfc3339(&contact.updated_at).ok_or_else(|| ConnectorError::Protocol {
            vendor: VENDOR,
            message: format!(
                "contact {} has an unreadable updatedAt {:?}",
                contact.id, contact.updated_at
            ),
        })?;
    let key = contact.properties.get(KEY_PROPERTY).cloned().flatten();
    let changed_at = contact
        .properties_with_history
        .iter()
        .flatten()
        .filter_map(|(name, entries)| {
            let current = contact
                .properties
                .get(name)
                .map(|value| value.as_deref().unwrap_or_default());
            Some((path_of(name), set_at(current, entries)?))
        })
        .collect();
    let fields = contact
        .properties
        .into_iter()
        .map(|(name, value)| {
            (
                path_of(&name),
                value
                    .filter(|v| !v.is_empty())
                    .map_or(Value::Null, Value::String),
            )
        })
        .collect();
    Ok(Record {
        id: contact.id,
        key,
        fields,
        updated_at,
        changed_at,
        standing: if contact.archived {
            Standing::Archived
        } else {
            Standing::Active
        },
    })
}

/// When a property's current value was set, from its history: the newest
/// entry holding that value (`current` is `None` when the value was not read,
/// and `""` when it is empty). Entries with an unreadable time are skipped; no
/// usable entry means no time, so the record's `updatedAt` stands in.
fn set_at(current: Option<&str>, entries: &[ValueWithTimestamp]) -> Option<Millis> {
    let dated: Vec<(&str, Millis)> = entries
        .iter()
        .filter_map(|entry| {
            let at = parse_rfc3339(&entry.timestamp)
                .or_else(|| entry.timestamp.trim().parse::<Millis>().ok())?;
            Some((entry.value.as_deref().unwrap_or_default(), at))
        })
        .collect();
    // HubSpot lists the newest entry first; the maximum does not rely on that.
    let newest_with = |wanted: Option<&str>| {
        dated
            .iter()
            .filter(|(value, _)| wanted.is_none_or(|w| w == *value))
            .map(|(_, at)| *at)
            .max()
    };
    // No entry may hold the current value: HubSpot can store a value in a
    // normal form (a trimmed or lowercased email, a reformatted number) while
    // the history keeps it as written, and a merge or calculation can set a
    // value without an entry of its own. The newest entry is then still the
    // last time the property was set, a closer bound than `updatedAt`.
    newest_with(current).or_else(|| newest_with(None))
}

/// Turn a non-success status into the error it means for HubSpot.
async fn expect_ok(response: Response) -> Result<Response, ConnectorError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let code = status.as_u16();
    let text = body_excerpt(response).await;
    let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
    let message = if body.message.is_empty() {
        text
    } else {
        body.message
    };
    Err(match code {
        401 | 403 => ConnectorError::Auth {
            vendor: VENDOR,
            status: code,
            message,
        },
        _ => ConnectorError::Rejected {
            vendor: VENDOR,
            status: code,
            message,
        },
    })
}

async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T, ConnectorError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ConnectorError::Protocol {
            vendor: VENDOR,
            message: format!("the response body broke off: {e}"),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Protocol {
        vendor: VENDOR,
        message: format!("the response is not the expected JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    reqwest::header::HeaderName::from_static(k),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_429_is_read_by_its_policy_name() {
        let too_many = reqwest::StatusCode::TOO_MANY_REQUESTS;
        let daily = br#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#;
        assert_eq!(
            HubSpotThrottle.refusal(too_many, &HeaderMap::new(), daily),
            Some(Throttle::Pause(DAILY_PAUSE))
        );
        let rolling =
            br#"{"status":"error","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#;
        assert_eq!(
            HubSpotThrottle.refusal(too_many, &HeaderMap::new(), rolling),
            Some(Throttle::Retry(Some(Duration::from_secs(10))))
        );
        let asked = headers(&[("retry-after", "3")]);
        assert_eq!(
            HubSpotThrottle.refusal(too_many, &asked, rolling),
            Some(Throttle::Retry(Some(Duration::from_secs(3))))
        );
        // A 403 is a missing scope, not throttling.
        assert_eq!(
            HubSpotThrottle.refusal(reqwest::StatusCode::FORBIDDEN, &HeaderMap::new(), b"{}"),
            None
        );
    }

    fn entry(value: &str, timestamp: &str) -> ValueWithTimestamp {
        ValueWithTimestamp {
            value: Some(value.into()),
            timestamp: timestamp.into(),
            source_type: "CRM_UI".into(),
            source_id: None,
            source_label: None,
            updated_by_user_id: None,
        }
    }

    #[test]
    fn a_value_was_set_by_the_newest_entry_that_holds_it() {
        let history = [
            entry("Ada", "2026-03-01T12:00:00.000Z"),
            entry("Augusta", "2026-03-01T11:00:00.000Z"),
            entry("Ada", "2026-03-01T10:00:00.000Z"),
        ];
        let noon = parse_rfc3339("2026-03-01T12:00:00.000Z");
        assert_eq!(set_at(Some("Ada"), &history), noon);
        // Listed in another order, the answer is the same.
        let mut shuffled = history.clone();
        shuffled.reverse();
        assert_eq!(set_at(Some("Ada"), &shuffled), noon);
        // An older value the contact holds again would be found by its own entry.
        assert_eq!(
            set_at(Some("Augusta"), &history),
            parse_rfc3339("2026-03-01T11:00:00.000Z")
        );
        // A cleared property holds "" in its newest entry.
        let cleared = [
            entry("", "2026-03-01T13:00:00.000Z"),
            entry("Ada", "2026-03-01T12:00:00.000Z"),
        ];
        assert_eq!(
            set_at(Some(""), &cleared),
            parse_rfc3339("2026-03-01T13:00:00.000Z")
        );
    }

    #[test]
    fn without_an_entry_holding_the_value_the_newest_entry_counts() {
        let history = [
            entry("ADA@EXAMPLE.COM", "2026-03-01T12:00:00.000Z"),
            entry("old@example.com", "2026-03-01T10:00:00.000Z"),
        ];
        let noon = parse_rfc3339("2026-03-01T12:00:00.000Z");
        assert_eq!(set_at(Some("ada@example.com"), &history), noon);
        // A value not read at all is dated by the newest entry too.
        assert_eq!(set_at(None, &history), noon);
        // Unreadable times are skipped; nothing usable leaves no time.
        let broken = [entry("Ada", "yesterday"), entry("Ada", "1772366400000")];
        assert_eq!(set_at(Some("Ada"), &broken), Some(1_772_366_400_000));
        assert_eq!(set_at(Some("Ada"), &[entry("Ada", "soon")]), None);
        assert_eq!(set_at(Some("Ada"), &[]), None);
    }

    #[test]
    fn a_contact_with_history_gives_each_read_property_its_change_time() {
        let contact: SimplePublicObject = serde_json::from_str(
            r#"{"id":"512","properties":{"email":"ada@example.com","firstname":"Ada","lastname":null},
                "createdAt":"2026-03-01T09:00:00.000Z","updatedAt":"2026-03-01T12:30:00.000Z","archived":false,
                "propertiesWithHistory":{
                  "firstname":[{"value":"Ada","timestamp":"2026-03-01T11:00:00.000Z","sourceType":"CRM_UI","sourceId":"userId:45678","updatedByUserId":45678},
                               {"value":"Augusta","timestamp":"2026-03-01T09:00:00.000Z","sourceType":"IMPORT"}],
                  "lastname":[]}}"#,
        )
        .unwrap();
        let record = to_record(contact).unwrap();
        assert_eq!(
            record.changed_at,
            BTreeMap::from([(
                "properties.firstname".to_string(),
                parse_rfc3339("2026-03-01T11:00:00.000Z").unwrap()
            )])
        );
        assert_eq!(
            record.updated_at,
            parse_rfc3339("2026-03-01T12:30:00.000Z").unwrap()
        );
    }

    #[test]
    fn a_spent_window_means_waiting_one_interval() {
        let spent = headers(&[
            ("x-hubspot-ratelimit-remaining", "0"),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
        ]);
        assert_eq!(
            HubSpotThrottle.budget(&spent),
            Some(Duration::from_secs(10))
        );
        let left = headers(&[("x-hubspot-ratelimit-remaining", "12")]);
        assert_eq!(HubSpotThrottle.budget(&left), None);
        assert_eq!(HubSpotThrottle.budget(&HeaderMap::new()), None);
    }
}
