//! The Mailchimp Marketing v3 client for one audience: listing members by
//! `last_changed`, lookups by subscriber hash, batch subscribe for creates,
//! PATCH for updates, and the member tags endpoint for tags.
//!
//! Polling sorts by `last_changed`, newest first, and pages by offset from the
//! watermark minus an overlap window. Newest first means a member edited while
//! we page moves to a page already read, so it comes again on the next poll
//! instead of shifting another member out of sight. A listing names the
//! fields it reads (`fields`): a whole member is several times larger.
//!
//! Creates never touch an existing member's consent: a batch subscribe gives
//! each new member its `status` with `update_existing: false`, so a member
//! that exists already is reported, not changed; such a member is then
//! upserted alone by PUT with `status_if_new`, which leaves an existing
//! member's status as it is.
//!
//! Tags are written as a difference: the member's current tags (from the
//! PATCH, GET or batch answer) against the wanted set, sent to
//! `POST …/members/{id}/tags` with `is_syncing` so that tag automations stay
//! quiet; then the member is read again. Names compare without regard to case,
//! so a tag spelled differently is kept rather than removed. The member payload
//! shows at most 50 tags; for a member with more, the tags endpoint is read
//! before the member becomes a record.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tandem_core::clock::{format_seconds_offset, now_millis, parse_rfc3339};
use tandem_core::{
    Connector, ConnectorError, HttpKit, HttpSettings, Millis, Page, Record, Standing, Throttle,
    ThrottlePolicy, TrafficStats, Write, WriteOp, WriteOutcome, body_excerpt, normalize_key,
    retry_after, server_time,
};

use crate::model::{
    BatchMember, BatchSubscribe, BatchSubscribeResponse, Member, MemberTags, MembersPage, Problem,
    TagChange, TagChanges,
};
use crate::{KEY_FIELD, TAGS_FIELD, VENDOR, merge_tag_of, subscriber_hash};

/// Most members of one batch subscribe.
pub const BATCH_LIMIT: usize = 500;
/// Most members of one page.
pub const PAGE_LIMIT: u32 = 1000;

/// Settings of a Mailchimp client.
#[derive(Debug, Clone)]
pub struct MailchimpConfig {
    /// `https://<dc>.api.mailchimp.com/3.0`; see [`MailchimpConfig::base_url_for_key`].
    pub base_url: String,
    /// The API key (`<hex>-<dc>`) or OAuth token, sent as HTTP Basic password.
    pub api_key: SecretString,
    /// The audience (list) id.
    pub list_id: String,
    /// Status of members created by tandem. Existing members keep theirs.
    pub status_if_new: String,
    /// How far behind the watermark each poll starts again.
    pub overlap: Duration,
    /// Members per page (at most 1000).
    pub page_size: u32,
    /// Timeouts, retries, and at most 10 connections per user, shared with every other integration.
    pub http: HttpSettings,
}

impl MailchimpConfig {
    /// Defaults for the real API: 8 connections (of the user's 10), `subscribed` for new members.
    pub fn new(
        base_url: impl Into<String>,
        api_key: SecretString,
        list_id: impl Into<String>,
    ) -> Self {
        let mut http = HttpSettings::new(VENDOR);
        http.max_concurrency = Some(8);
        http.timeout = Duration::from_secs(120);
        http.throttle = std::sync::Arc::new(MailchimpThrottle);
        Self {
            base_url: base_url.into(),
            api_key,
            list_id: list_id.into(),
            status_if_new: "subscribed".into(),
            overlap: Duration::from_secs(60),
            page_size: PAGE_LIMIT,
            http,
        }
    }

    /// The API root named by the datacenter suffix of an API key (`…-us6`).
    pub fn base_url_for_key(api_key: &str) -> Option<String> {
        let (_, dc) = api_key.rsplit_once('-')?;
        (!dc.is_empty() && dc.chars().all(|c| c.is_ascii_alphanumeric()))
            .then(|| format!("https://{dc}.api.mailchimp.com/3.0"))
    }
}

/// How Mailchimp throttles: 429, or under heavy load a 403 with no body.
pub struct MailchimpThrottle;

impl ThrottlePolicy for MailchimpThrottle {
    fn refusal(
        &self,
        status: reqwest::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Throttle> {
        match status.as_u16() {
            429 => Some(Throttle::Retry(retry_after(headers))),
            // A 403 about permissions has a JSON problem body; one without JSON
            // (empty, or a load balancer's page) is load shedding.
            403 if serde_json::from_slice::<Value>(body).is_err() => Some(Throttle::Retry(None)),
            _ => None,
        }
    }
}

/// Where polling stands, stored by the engine between polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Cursor {
    /// Paging members changed after `since` (all members if none), newest first.
    /// `clock`: the server's clock when it answered this listing's first page.
    Listing {
        since: Option<Millis>,
        offset: u32,
        newest: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<Millis>,
    },
    /// Paging members archived after `since`: the listing above leaves archived
    /// members out, and an archive is an event the policy acts on.
    Archived {
        since: Millis,
        offset: u32,
        newest: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<Millis>,
    },
    /// Caught up: the newest change seen, and the server's clock when it
    /// answered the last listing's first page.
    CaughtUp {
        watermark: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<Millis>,
    },
}

/// A Mailchimp client for one audience. Cheap to clone.
#[derive(Clone)]
pub struct MailchimpClient {
    kit: HttpKit,
    base: String,
    key: SecretString,
    list: String,
    status_if_new: String,
    overlap: Millis,
    page_size: u32,
}

impl MailchimpClient {
    /// Build a client; no request is made.
    pub fn new(config: MailchimpConfig) -> Result<Self, ConnectorError> {
        Ok(Self {
            kit: HttpKit::new(config.http)?,
            base: config.base_url.trim_end_matches('/').to_string(),
            key: config.api_key,
            list: config.list_id,
            status_if_new: config.status_if_new,
            overlap: config.overlap.as_millis() as Millis,
            page_size: config.page_size.clamp(1, PAGE_LIMIT),
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

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.kit
            .client()
            .request(method, format!("{}{path}", self.base))
            .basic_auth("tandem", Some(self.key.expose_secret()))
    }

    /// Read members one by one (Mailchimp has no batch read), concurrently within the
    /// connection limit; those it does not know are left out.
    async fn members(&self, names: &[String]) -> Result<Vec<Record>, ConnectorError> {
        let mut tasks = tokio::task::JoinSet::new();
        for name in names {
            let client = self.clone();
            let path = self.member_path(name);
            tasks.spawn(async move {
                let response = client
                    .kit
                    .send(client.request(reqwest::Method::GET, &path))
                    .await?;
                if response.status() == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let member = read_json(expect_ok(response).await?).await?;
                to_record(client.complete_tags(member).await?).map(Some)
            });
        }
        let mut found = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let result = joined.map_err(|e| ConnectorError::Protocol {
                vendor: VENDOR,
                message: format!("read task failed: {e}"),
            })?;
            found.extend(result?);
        }
        Ok(found)
    }

    /// A member's path, by subscriber hash, `contact_id` or email address.
    fn member_path(&self, hash: &str) -> String {
        format!("/lists/{}/members/{hash}", self.list)
    }

    /// Read one member (by subscriber hash or `contact_id`) with all its tags.
    async fn read_member(&self, id: &str) -> Result<Member, ConnectorError> {
        let response = self
            .kit
            .send(self.request(reqwest::Method::GET, &self.member_path(id)))
            .await?;
        let member = read_json(expect_ok(response).await?).await?;
        self.complete_tags(member).await
    }

    /// The member with every tag: the payload shows at most 50 (`tags_count`
    /// counts them all), so for a member with more the tags endpoint is paged.
    async fn complete_tags(&self, mut member: Member) -> Result<Member, ConnectorError> {
        if member.has_all_tags() {
            return Ok(member);
        }
        let path = format!("{}/tags", self.member_path(&member_key(&member)));
        let mut tags = Vec::new();
        loop {
            let query = [
                ("count", "1000".to_string()),
                ("offset", tags.len().to_string()),
            ];
            let response = self
                .kit
                .send(self.request(reqwest::Method::GET, &path).query(&query))
                .await?;
            let page: MemberTags = read_json(expect_ok(response).await?).await?;
            let read = page.tags.len();
            tags.extend(page.tags);
            if read == 0 || tags.len() as u64 >= page.total_items {
                break;
            }
        }
        member.tags_count = Some(tags.len() as u64);
        member.tags = Some(tags);
        Ok(member)
    }

    /// [`Self::complete_tags`] for every member of a page that needs it,
    /// concurrently within the connection limit; the order is kept.
    async fn complete_all(&self, members: Vec<Member>) -> Result<Vec<Member>, ConnectorError> {
        if members.iter().all(Member::has_all_tags) {
            return Ok(members);
        }
        let mut slots: Vec<Option<Member>> = Vec::with_capacity(members.len());
        let mut tasks = tokio::task::JoinSet::new();
        for (i, member) in members.into_iter().enumerate() {
            if member.has_all_tags() {
                slots.push(Some(member));
            } else {
                slots.push(None);
                let client = self.clone();
                tasks.spawn(async move { (i, client.complete_tags(member).await) });
            }
        }
        while let Some(joined) = tasks.join_next().await {
            let (i, member) = joined.map_err(|e| ConnectorError::Protocol {
                vendor: VENDOR,
                message: format!("read task failed: {e}"),
            })?;
            slots[i] = Some(member?);
        }
        Ok(slots
            .into_iter()
            .map(|m| m.expect("every member is complete"))
            .collect())
    }

    /// Make a member's tags the wanted set, if the write names one: add and
    /// remove the difference with the tags endpoint, then read the member again
    /// so the outcome shows the tags (and `last_changed`) as Mailchimp now has them.
    async fn settle_tags(
        &self,
        member: Member,
        wanted: Option<&[String]>,
    ) -> Result<Member, ConnectorError> {
        let member = self.complete_tags(member).await?;
        let Some(wanted) = wanted else {
            return Ok(member);
        };
        let current: Vec<&str> = member
            .tags
            .iter()
            .flatten()
            .map(|tag| tag.name.as_str())
            .collect();
        let changes = tag_changes(&current, wanted);
        if changes.is_empty() {
            return Ok(member);
        }
        // The contact id, as for PATCH: it names the member even if its email just changed.
        let id = member_key(&member);
        let body = TagChanges {
            tags: changes,
            // A sync, not a person's decision: tag-triggered automations do not fire.
            is_syncing: Some(true),
        };
        let path = format!("{}/tags", self.member_path(&id));
        let response = self
            .kit
            .send(self.request(reqwest::Method::POST, &path).json(&body))
            .await?;
        expect_ok(response).await?;
        self.read_member(&id).await
    }

    async fn page(
        &self,
        since: Option<Millis>,
        offset: u32,
        archived: bool,
    ) -> Result<(MembersPage, Option<Millis>), ConnectorError> {
        let mut query = vec![
            ("count", self.page_size.to_string()),
            ("offset", offset.to_string()),
            ("sort_field", "last_changed".to_string()),
            ("sort_dir", "DESC".to_string()),
            ("fields", LISTED_FIELDS.to_string()),
        ];
        if let Some(since) = since {
            // reqwest encodes the `+` of `+00:00` as `%2B`, as Mailchimp needs.
            query.push(("since_last_changed", format_seconds_offset(since)));
        }
        if archived {
            query.push(("status", "archived".to_string()));
        }
        let path = format!("/lists/{}/members", self.list);
        let response = self
            .kit
            .send(self.request(reqwest::Method::GET, &path).query(&query))
            .await?;
        let server_now = server_time(&response);
        Ok((read_json(expect_ok(response).await?).await?, server_now))
    }

    async fn create_chunk(&self, writes: &[&Write]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; writes.len()];
        let mut wanted: Vec<Option<Vec<String>>> = vec![None; writes.len()];
        let mut members = Vec::new();
        for (i, write) in writes.iter().enumerate() {
            match wanted_tags(write) {
                Ok(tags) => {
                    members.push(self.batch_member(write, tags.as_deref()));
                    wanted[i] = tags;
                }
                Err(error) => outcomes[i] = Some(Err(error)),
            }
        }
        if members.is_empty() {
            return Ok(outcomes.into_iter().flatten().collect());
        }
        let body = BatchSubscribe {
            members,
            // `status` would overwrite an existing member's consent: members
            // that exist are reported instead, and upserted one by one below.
            update_existing: false,
            sync_tags: None,
        };
        let path = format!("/lists/{}?skip_merge_validation=true", self.list);
        let response = self
            .kit
            .send(self.request(reqwest::Method::POST, &path).json(&body))
            .await?;
        let answer: BatchSubscribeResponse = read_json(expect_ok(response).await?).await?;
        let mut done: HashMap<String, Member> = HashMap::new();
        for member in answer.new_members.into_iter().chain(answer.updated_members) {
            if let Some(key) = normalize_key(&member.email_address) {
                done.insert(key, member);
            }
        }
        let mut failed: HashMap<String, String> = HashMap::new();
        for error in answer.errors {
            let message = match (&error.field, &error.field_message) {
                (Some(field), Some(detail)) => format!("{} ({field}: {detail})", error.error),
                _ => error.error.clone(),
            };
            if let Some(key) = normalize_key(&error.email_address) {
                failed.insert(key, message);
            }
        }
        // Tags the batch did not set are settled one member at a time, and a
        // member the batch refused (most often: it exists already) is upserted
        // alone, concurrently within the connection limit.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, write) in writes.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let (client, wanted) = (self.clone(), wanted[i].take());
            match done.remove(&write.key) {
                Some(member) => {
                    tasks.spawn(async move {
                        // Listings name a member by its `contact_id`: one the batch
                        // answer leaves out is read, so the new record has the same id.
                        let member = match member_key(&member) == member.id {
                            true => client.read_member(&member.id).await,
                            false => Ok(member),
                        };
                        let member = match member {
                            Ok(member) => client.settle_tags(member, wanted.as_deref()).await,
                            Err(error) => Err(error),
                        };
                        (i, member.and_then(to_record))
                    });
                }
                None => {
                    let refused = failed.remove(&write.key).unwrap_or_else(|| {
                        "the batch response did not mention this member".to_string()
                    });
                    let write = (*write).clone();
                    tasks.spawn(async move {
                        let upserted = client.upsert_one(&write, wanted.as_deref()).await;
                        let outcome = upserted.map_err(|error| match error {
                            ConnectorError::Rejected {
                                status, message, ..
                            } => ConnectorError::Rejected {
                                vendor: VENDOR,
                                status,
                                message: format!("{message} (batch subscribe: {refused})"),
                            },
                            other => other,
                        });
                        (i, outcome)
                    });
                }
            }
        }
        while let Some(joined) = tasks.join_next().await {
            let (i, outcome) = joined.map_err(|e| ConnectorError::Protocol {
                vendor: VENDOR,
                message: format!("write task failed: {e}"),
            })?;
            // As in `apply`: a failure of the whole service fails the call (creates
            // upsert, so the retry is safe); a rejection belongs to the record.
            match outcome {
                Err(error) if error.kind() != tandem_core::ErrorKind::BadRecord => {
                    return Err(error);
                }
                outcome => outcomes[i] = Some(outcome),
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every create has an outcome"))
            .collect())
    }

    /// Add or update one member by PUT to its subscriber hash: a new member
    /// gets `status_if_new`, an existing one keeps its status (only an explicit
    /// status write sends `status`); then its tags are settled.
    async fn upsert_one(&self, write: &Write, wanted: Option<&[String]>) -> WriteOutcome {
        let mut body = member_body(write);
        body.insert("email_address".into(), Value::from(write.key.clone()));
        body.insert(
            "status_if_new".into(),
            Value::from(self.status_if_new.clone()),
        );
        let hash = subscriber_hash(&write.key);
        let member = self.send_member(reqwest::Method::PUT, &hash, body).await?;
        to_record(self.settle_tags(member, wanted).await?)
    }

    /// Send a member body to the member at `id` (contact id or subscriber
    /// hash) by PUT or PATCH; merge fields a form requires may be left out.
    async fn send_member(
        &self,
        method: reqwest::Method,
        id: &str,
        body: Map<String, Value>,
    ) -> Result<Member, ConnectorError> {
        let path = format!("{}?skip_merge_validation=true", self.member_path(id));
        let request = self.request(method, &path).json(&Value::Object(body));
        read_json(expect_ok(self.kit.send(request).await?).await?).await
    }

    fn batch_member(&self, write: &Write, tags: Option<&[String]>) -> BatchMember {
        let body = member_body(write);
        let mut member = BatchMember {
            email_address: write.key.clone(),
            // A new member's status (update_existing is off: no existing member is changed).
            status: Some(self.status_if_new.clone()),
            tags: tags.map(<[String]>::to_vec).unwrap_or_default(),
            ..BatchMember::default()
        };
        for (name, value) in body {
            match (name.as_str(), value) {
                ("merge_fields", Value::Object(fields)) => {
                    member.merge_fields = fields.into_iter().collect()
                }
                // Consent is changed only by an explicit status write, never implied by a create.
                ("status", Value::String(status)) => member.status = Some(status),
                ("email_address", _) => {}
                (_, value) => {
                    member.extra.insert(name, value);
                }
            }
        }
        member
    }

    /// Archive a member (DELETE; it can be re-added), or delete it for good
    /// (`actions/delete-permanent`; it can never be re-imported). A member already
    /// gone is no error, so a retry after a crash changes nothing.
    async fn remove(&self, id: &str, write: &Write, permanently: bool) -> WriteOutcome {
        let path = self.member_path(id);
        let request = if permanently {
            self.request(
                reqwest::Method::POST,
                &format!("{path}/actions/delete-permanent"),
            )
        } else {
            self.request(reqwest::Method::DELETE, &path)
        };
        let response = self.kit.send(request).await?;
        if response.status() != StatusCode::NOT_FOUND {
            expect_ok(response).await?;
        }
        Ok(Record {
            id: id.to_string(),
            key: Some(write.key.clone()),
            fields: tandem_core::FieldMap::new(),
            updated_at: now_millis(),
            changed_at: Default::default(),
            standing: Standing::Archived,
        })
    }

    /// PATCH the member's fields, then settle its tags if the write names them.
    /// A write of tags alone reads the member instead of sending an empty PATCH.
    async fn update_one(&self, id: &str, write: &Write) -> WriteOutcome {
        let wanted = wanted_tags(write)?;
        let body = member_body(write);
        let member = if body.is_empty() && wanted.is_some() {
            self.read_member(id).await?
        } else {
            self.send_member(reqwest::Method::PATCH, id, body).await?
        };
        to_record(self.settle_tags(member, wanted.as_deref()).await?)
    }
}

impl Connector for MailchimpClient {
    async fn check(&self) -> Result<(), ConnectorError> {
        let path = format!("/lists/{}", self.list);
        let response = self
            .kit
            .send(
                self.request(reqwest::Method::GET, &path)
                    .query(&[("fields", "id,name")]),
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ConnectorError::Settings {
                vendor: VENDOR,
                message: format!(
                    "audience (list) {:?} does not exist for this API key",
                    self.list
                ),
            });
        }
        expect_ok(response).await.map(drop)
    }

    async fn poll(&self, cursor: Option<&str>) -> Result<Page, ConnectorError> {
        let cursor = match cursor {
            None => Cursor::Listing {
                since: None,
                offset: 0,
                newest: 0,
                clock: None,
            },
            Some(text) => serde_json::from_str(text).map_err(|e| ConnectorError::Protocol {
                vendor: VENDOR,
                message: format!("stored cursor {text:?} is not a Mailchimp cursor: {e}"),
            })?,
        };
        let (since, offset, newest, clock, archived) = match cursor {
            Cursor::Listing {
                since,
                offset,
                newest,
                clock,
            } => (since, offset, newest, clock, false),
            Cursor::Archived {
                since,
                offset,
                newest,
                clock,
            } => (Some(since), offset, newest, clock, true),
            // `last_changed` has whole seconds and "changed after" may be strict: one more
            // second keeps a change made in the watermark's own second in view.
            // The last listing's clock becomes part of the watermark now that
            // this listing, taken after it, has been asked for: see below.
            Cursor::CaughtUp { watermark, clock } => (
                Some(watermark - self.overlap - 1000),
                0,
                watermark.max(clock.unwrap_or(Millis::MIN)),
                None,
                false,
            ),
        };
        let (page, server_now) = self.page(since, offset, archived).await?;
        // The watermark is the newest change a listing showed, or the server's
        // clock when it answered the listing before: Mailchimp stamps an answer
        // after taking its listing, so a member changed in between is in
        // neither that listing nor behind that clock, but it is in the next
        // listing, which is taken after that clock. A member that changes after
        // a listing changes at its second or later, which the next poll, from
        // a second before the watermark, reads.
        let clock = match (offset, archived) {
            (0, false) => server_now,
            _ => clock,
        };
        let read = offset as u64 + page.members.len() as u64;
        let records = self
            .complete_all(page.members)
            .await?
            .into_iter()
            .map(to_record)
            .collect::<Result<Vec<_>, _>>()?;
        // Not the archives' changes: they are taken later still.
        let newest = if archived {
            newest
        } else {
            records
                .iter()
                .map(|r| r.updated_at)
                .fold(newest, Millis::max)
        };
        let more = !records.is_empty() && read < page.total_items;
        let next = match (more, archived, since) {
            (true, false, _) => Cursor::Listing {
                since,
                offset: read as u32,
                newest,
                clock,
            },
            (true, true, Some(since)) => Cursor::Archived {
                since,
                offset: read as u32,
                newest,
                clock,
            },
            // An incremental listing is followed by the archives of the same window; a
            // first full listing is not (members archived before tandem began are no news).
            (false, false, Some(since)) => Cursor::Archived {
                since,
                offset: 0,
                newest,
                clock,
            },
            _ => Cursor::CaughtUp {
                watermark: newest,
                clock,
            },
        };
        let more = more || matches!(next, Cursor::Archived { offset: 0, .. }) && !archived;
        Ok(Page {
            records,
            cursor: serde_json::to_string(&next).expect("cursors serialize"),
            more,
            full_listing: since.is_none(),
        })
    }

    async fn lookup(&self, keys: &[String]) -> Result<Vec<Record>, ConnectorError> {
        let hashes: Vec<String> = keys.iter().map(|key| subscriber_hash(key)).collect();
        self.members(&hashes).await
    }

    async fn fetch(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        // Ids are contact ids, which Mailchimp accepts in a member's path.
        self.members(ids).await
    }

    async fn apply(&self, writes: &[Write]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; writes.len()];
        let creates: Vec<usize> = (0..writes.len())
            .filter(|&i| writes[i].op == WriteOp::Create)
            .collect();
        for chunk in creates.chunks(BATCH_LIMIT) {
            let batch: Vec<&Write> = chunk.iter().map(|&i| &writes[i]).collect();
            for (&i, outcome) in chunk.iter().zip(self.create_chunk(&batch).await?) {
                outcomes[i] = Some(outcome);
            }
        }
        // Updates, archives and deletions go one member at a time (Mailchimp has no
        // batch update that leaves consent alone), concurrently within the connection limit.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, write) in writes.iter().enumerate() {
            let (client, write) = (self.clone(), write.clone());
            match write.op.clone() {
                WriteOp::Create => continue,
                WriteOp::Update { id } => {
                    tasks.spawn(async move { (i, client.update_one(&id, &write).await) })
                }
                WriteOp::Archive { id } => {
                    tasks.spawn(async move { (i, client.remove(&id, &write, false).await) })
                }
                WriteOp::DeletePermanently { id } => {
                    tasks.spawn(async move { (i, client.remove(&id, &write, true).await) })
                }
            };
        }
        while let Some(joined) = tasks.join_next().await {
            let (i, outcome) = joined.map_err(|e| ConnectorError::Protocol {
                vendor: VENDOR,
                message: format!("write task failed: {e}"),
            })?;
            // A failure of the whole service fails the call; a rejection belongs to the record.
            match outcome {
                Err(error) if error.kind() != tandem_core::ErrorKind::BadRecord => {
                    return Err(error);
                }
                outcome => outcomes[i] = Some(outcome),
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every write has an outcome"))
            .collect())
    }
}

/// A write's fields as a member body: `merge_fields.X` nested, an empty merge
/// field as `""` (which clears it). An empty member field (`vip`, `language`,
/// `status`...) is left out: those have types or fixed values, and `""` is
/// none of them. Tags are left out: they go to the tags endpoint (or a batch
/// member's `tags`).
fn member_body(write: &Write) -> Map<String, Value> {
    let mut body = Map::new();
    let mut merge = Map::new();
    for (path, value) in &write.fields {
        if path == TAGS_FIELD {
            continue;
        }
        match merge_tag_of(path) {
            Some(tag) => {
                let value = if value.is_null() {
                    Value::String(String::new())
                } else {
                    value.clone()
                };
                merge.insert(tag.to_string(), value);
            }
            None if value.is_null() => {}
            None => {
                body.insert(path.clone(), value.clone());
            }
        }
    }
    if !merge.is_empty() {
        body.insert("merge_fields".into(), Value::Object(merge));
    }
    body
}

/// The tags a write asks for, if it writes `tags`: a JSON array of names, with
/// null or `""` for none. Names are trimmed; blank names and repeats (ignoring
/// case, as Mailchimp compares tags) are dropped.
fn wanted_tags(write: &Write) -> Result<Option<Vec<String>>, ConnectorError> {
    let Some(value) = write.fields.get(TAGS_FIELD) else {
        return Ok(None);
    };
    let refuse = |what: String| ConnectorError::Rejected {
        vendor: VENDOR,
        status: 0,
        message: format!(
            "`{TAGS_FIELD}` must be an array of tag names (or null for none); got {what}"
        ),
    };
    let items = match value {
        Value::Null => return Ok(Some(Vec::new())),
        Value::String(text) if text.trim().is_empty() => return Ok(Some(Vec::new())),
        Value::Array(items) => items,
        other => return Err(refuse(other.to_string())),
    };
    let mut names: Vec<String> = Vec::new();
    for item in items {
        let name = item
            .as_str()
            .ok_or_else(|| refuse(format!("an array holding {item}")))?
            .trim();
        if !name.is_empty() && !names.iter().any(|n| same_tag(n, name)) {
            names.push(name.to_string());
        }
    }
    Ok(Some(names))
}

/// Whether two tag names name the same tag. Mailchimp is reported to match tag
/// names without regard to case [unverified]; comparing that way never removes
/// a tag that a write wants under another spelling.
fn same_tag(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// The changes that turn a member's `current` tags into `wanted`: removals
/// (`inactive`) then additions (`active`), each sorted by name.
fn tag_changes(current: &[&str], wanted: &[String]) -> Vec<TagChange> {
    let mut remove: Vec<&str> = current
        .iter()
        .copied()
        .filter(|name| !wanted.iter().any(|w| same_tag(w, name)))
        .collect();
    remove.sort_unstable();
    remove.dedup();
    let mut add: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|name| !current.iter().any(|c| same_tag(c, name)))
        .collect();
    add.sort_unstable();
    let change = |name: &str, status: &str| TagChange {
        name: name.to_string(),
        status: status.to_string(),
    };
    remove
        .into_iter()
        .map(|name| change(name, "inactive"))
        .chain(add.into_iter().map(|name| change(name, "active")))
        .collect()
}

/// The member's `contact_id`, which survives a change of email address and
/// which Mailchimp accepts in a member's path; the subscriber hash if it has none.
fn member_key(member: &Member) -> String {
    member
        .extra
        .get("contact_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(|| member.id.clone(), String::from)
}

/// What a listing asks for: only what [`to_record`] reads of a member, and
/// the count. A whole member (stats, location, links...) is several times
/// larger, and an account's first listing reads every member.
const LISTED_FIELDS: &str = "total_items,members.id,members.contact_id,members.email_address,\
members.status,members.merge_fields,members.last_changed,members.tags,members.tags_count,\
members.email_type,members.language,members.vip";

/// A member as a [`Record`]: member fields by name, merge fields as
/// `merge_fields.<TAG>`, `tags` as the sorted names of its tags (only when the
/// payload lists them all), and the `contact_id` as its id.
pub fn to_record(member: Member) -> Result<Record, ConnectorError> {
    let updated_at =
        parse_rfc3339(&member.last_changed).ok_or_else(|| ConnectorError::Protocol {
            vendor: VENDOR,
            message: format!(
                "member {} has an unreadable last_changed {:?}",
                member.id, member.last_changed
            ),
        })?;
    let all_tags = member.has_all_tags();
    // The contact id stays when the email address (and with it the subscriber
    // hash) changes, and Mailchimp accepts it in a member's path.
    let id = member_key(&member);
    let mut fields = tandem_core::FieldMap::new();
    for (tag, value) in member.merge_fields {
        let value = match value {
            Value::String(text) if text.is_empty() => Value::Null,
            other => other,
        };
        fields.insert(format!("merge_fields.{tag}"), value);
    }
    for name in ["email_type", "language", "vip"] {
        if let Some(value) = member.extra.get(name) {
            let value = if value.as_str() == Some("") {
                Value::Null
            } else {
                value.clone()
            };
            fields.insert(name.to_string(), value);
        }
    }
    fields.insert(
        KEY_FIELD.into(),
        Value::String(member.email_address.clone()),
    );
    fields.insert("status".into(), Value::String(member.status.clone()));
    // A payload that shows only some of the member's tags gives no `tags` at all:
    // a missing path is unknown, while a short list would read as tags removed.
    if all_tags {
        let names: std::collections::BTreeSet<&str> = member
            .tags
            .iter()
            .flatten()
            .map(|tag| tag.name.as_str())
            .collect();
        fields.insert(
            TAGS_FIELD.into(),
            Value::Array(names.into_iter().map(Value::from).collect()),
        );
    }
    Ok(Record {
        id,
        key: Some(member.email_address),
        standing: match member.status.as_str() {
            "archived" => Standing::Archived,
            "unsubscribed" => Standing::Unsubscribed,
            "cleaned" => Standing::Cleaned,
            _ => Standing::Active,
        },
        fields,
        updated_at,
        changed_at: Default::default(),
    })
}

/// Turn a non-success status into the error it means for Mailchimp.
async fn expect_ok(response: Response) -> Result<Response, ConnectorError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let code = status.as_u16();
    let text = body_excerpt(response).await;
    let problem: Problem = serde_json::from_str(&text).unwrap_or_default();
    let mut message = if problem.title.is_empty() {
        text
    } else {
        format!("{}: {}", problem.title, problem.detail)
    };
    for field in &problem.errors {
        message.push_str(&format!(" [{}: {}]", field.field, field.message));
    }
    Err(match code {
        401 | 403 => ConnectorError::Auth {
            vendor: VENDOR,
            status: code,
            message,
        },
        404 => ConnectorError::Missing {
            vendor: VENDOR,
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

    #[test]
    fn a_403_without_json_is_throttling_and_one_with_a_problem_is_not() {
        let headers = HeaderMap::new();
        let forbidden = reqwest::StatusCode::FORBIDDEN;
        for shed in [
            &b""[..],
            b"  \n",
            b"<html><body>403 Forbidden</body></html>",
        ] {
            assert_eq!(
                MailchimpThrottle.refusal(forbidden, &headers, shed),
                Some(Throttle::Retry(None)),
                "{}",
                String::from_utf8_lossy(shed)
            );
        }
        let problem = br#"{"type":"https://mailchimp.com/developer/marketing/docs/errors/","title":"Forbidden","status":403,"detail":"You don't have permission","instance":"x"}"#;
        assert_eq!(
            MailchimpThrottle.refusal(forbidden, &headers, problem),
            None
        );
        assert_eq!(
            MailchimpThrottle.refusal(reqwest::StatusCode::TOO_MANY_REQUESTS, &headers, b""),
            Some(Throttle::Retry(None))
        );
    }

    #[test]
    fn an_empty_merge_field_is_cleared_and_an_empty_member_field_left_out() {
        let write = Write {
            op: WriteOp::Update { id: "c1".into() },
            key: "ada@example.com".into(),
            fields: [
                ("merge_fields.FNAME".to_string(), Value::Null),
                ("vip".to_string(), Value::Null),
                ("language".to_string(), Value::from("fr")),
            ]
            .into(),
        };
        assert_eq!(
            Value::Object(member_body(&write)),
            serde_json::json!({ "merge_fields": { "FNAME": "" }, "language": "fr" })
        );
    }

    fn write_with_tags(value: Value) -> Write {
        Write {
            op: WriteOp::Create,
            key: "ada@example.com".into(),
            fields: [(TAGS_FIELD.to_string(), value)].into(),
        }
    }

    #[test]
    fn written_tags_are_an_array_of_names_and_null_or_empty_means_none() {
        let wanted = |value: Value| wanted_tags(&write_with_tags(value));
        assert_eq!(wanted(Value::Null).unwrap(), Some(vec![]));
        assert_eq!(wanted(Value::from("")).unwrap(), Some(vec![]));
        assert_eq!(
            wanted(serde_json::json!([" vip ", "VIP", "", "lead"])).unwrap(),
            Some(vec!["vip".to_string(), "lead".to_string()])
        );
        for bad in [serde_json::json!("vip;lead"), serde_json::json!([1])] {
            let error = wanted(bad).unwrap_err();
            assert_eq!(error.kind(), tandem_core::ErrorKind::BadRecord, "{error}");
        }
        let untouched = Write {
            fields: tandem_core::FieldMap::new(),
            ..write_with_tags(Value::Null)
        };
        assert_eq!(wanted_tags(&untouched).unwrap(), None);
        assert!(
            member_body(&write_with_tags(serde_json::json!(["vip"]))).is_empty(),
            "tags never go in a member body"
        );
    }

    #[test]
    fn tags_are_written_as_the_difference_and_a_respelled_tag_is_kept() {
        let wanted = ["vip".to_string(), "new".to_string(), "kept".to_string()];
        let changes = tag_changes(&["kept", "VIP", "old", "older"], &wanted);
        let named: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.name.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("old", "inactive"),
                ("older", "inactive"),
                ("new", "active")
            ]
        );
        assert!(tag_changes(&["a", "b"], &["b".into(), "a".into()]).is_empty());
    }

    #[test]
    fn a_member_payload_with_part_of_its_tags_gives_no_tags_path() {
        let member = |names: &[&str], count: u64| Member {
            id: subscriber_hash("ada@example.com"),
            email_address: "ada@example.com".into(),
            status: "subscribed".into(),
            merge_fields: Default::default(),
            last_changed: "2026-03-01T09:00:00+00:00".into(),
            tags: Some(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| crate::model::Tag {
                        id: i as u64,
                        name: name.to_string(),
                        date_added: None,
                    })
                    .collect(),
            ),
            tags_count: Some(count),
            extra: Default::default(),
        };
        let tags = |m: Member| to_record(m).unwrap().fields.get(TAGS_FIELD).cloned();
        assert_eq!(
            tags(member(&["vip", "Lead", "vip"], 3)),
            Some(serde_json::json!(["Lead", "vip"]))
        );
        assert_eq!(tags(member(&[], 0)), Some(serde_json::json!([])));
        assert_eq!(tags(member(&["vip"], 51)), None);
    }

    #[test]
    fn the_datacenter_comes_from_the_key_suffix() {
        assert_eq!(
            MailchimpConfig::base_url_for_key("0123456789abcdef0123456789abcdef-us6").as_deref(),
            Some("https://us6.api.mailchimp.com/3.0")
        );
        assert_eq!(MailchimpConfig::base_url_for_key("nodatacenter"), None);
    }
}
