//! The simulator's audience: members, merge field definitions, tags,
//! validation and the clock that stamps `last_changed`. No HTTP here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tandem_core::Millis;
use tandem_core::clock::{format_seconds_offset, now_millis, parse_rfc3339};

use super::{Seed, SimStats};
use crate::model::{FieldError, Member, Tag};
use crate::subscriber_hash;

/// A merge field definition, as `GET /lists/{id}/merge-fields` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeFieldDef {
    /// The tag (`FNAME`).
    pub tag: String,
    /// The label.
    #[serde(default)]
    pub name: String,
    /// `text`, `number`, `address`, `phone`, `date`, `birthday`, `url`, `dropdown`, ...
    #[serde(rename = "type", default = "text_type")]
    pub kind: String,
    /// Whether new members need a value.
    #[serde(default)]
    pub required: bool,
}

fn text_type() -> String {
    "text".into()
}

/// Statuses a client may set.
pub const STATUSES: [&str; 5] = [
    "subscribed",
    "unsubscribed",
    "cleaned",
    "pending",
    "transactional",
];

/// Most tags the member payload shows; `tags_count` counts them all.
pub const PAYLOAD_TAGS: usize = 50;

/// One tag on a member.
#[derive(Debug, Clone)]
pub struct StoredTag {
    /// The tag's id, the same for every member with the tag.
    pub id: u64,
    /// The tag's name as the audience spells it.
    pub name: String,
    /// When the tag was added to this member.
    pub added: Millis,
}

/// One member as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub email: String,
    pub status: String,
    pub merge_fields: BTreeMap<String, Value>,
    pub language: String,
    pub vip: bool,
    pub email_type: String,
    pub contact_id: String,
    pub web_id: u64,
    pub signed_up: Millis,
    /// Milliseconds, strictly increasing; shown to clients at second precision.
    pub changed: Millis,
    /// Tags in the order they were added.
    pub tags: Vec<StoredTag>,
}

/// A rejected write: Mailchimp's title, detail and field errors, and the status code.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl Rejection {
    pub fn invalid(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            status: 400,
            title: "Invalid Resource",
            detail: detail.into(),
            errors,
        }
    }

    pub fn not_found() -> Self {
        Self {
            status: 404,
            title: "Resource Not Found",
            detail: "The requested resource could not be found.".into(),
            errors: vec![],
        }
    }
}

pub struct State {
    pub list_id: String,
    pub merge_defs: Vec<MergeFieldDef>,
    members: HashMap<String, Stored>,
    /// `contact_id` to subscriber hash: the contact id survives an email change.
    contact_ids: HashMap<String, String>,
    /// (changed, hash) of every member, for listing by `last_changed`.
    changes: BTreeSet<(Millis, String)>,
    /// The audience's tags: the name as compared to its id and spelling.
    tag_ids: HashMap<String, (u64, String)>,
    next_tag_id: u64,
    /// Whether a tag change advances the member's `last_changed` ([`super::SimConfig`]).
    pub tags_change_last_changed: bool,
    /// Whether tag names match without regard to case ([`super::SimConfig`]).
    pub tag_names_ignore_case: bool,
    /// Requests as received, once a test asks for them.
    pub journal: Option<Vec<super::SimRequest>>,
    last_tick: Millis,
    next_web_id: u64,
    /// Added to the system clock, so tests can make later edits look later.
    pub clock_offset: Millis,
    /// How many more writes are applied but answered with a 500.
    pub lost_answers: u32,
    /// Writes still to refuse with a 503 before applying them.
    pub refused_writes: u32,
    /// Addresses refused as "fake or invalid", lowercased.
    pub rejected_emails: Vec<String>,
    /// Where webhook events go, once a test or the demo asks for them.
    pub webhooks: Option<tandem_core::sim::Webhooks>,
    /// Whether changes made through the API send webhooks (Mailchimp's `sources.api`).
    pub webhooks_for_api: bool,
    /// Whether the change being made is a person's (a form, the app) rather than the API's.
    pub by_person: bool,
    pub stats: SimStats,
}

impl State {
    pub fn new(list_id: &str) -> Self {
        let def = |tag: &str, name: &str, kind: &str| MergeFieldDef {
            tag: tag.into(),
            name: name.into(),
            kind: kind.into(),
            required: false,
        };
        Self {
            list_id: list_id.to_string(),
            merge_defs: vec![
                def("FNAME", "First Name", "text"),
                def("LNAME", "Last Name", "text"),
                def("ADDRESS", "Address", "address"),
                def("PHONE", "Phone Number", "phone"),
                def("BIRTHDAY", "Birthday", "birthday"),
            ],
            members: HashMap::new(),
            contact_ids: HashMap::new(),
            changes: BTreeSet::new(),
            tag_ids: HashMap::new(),
            next_tag_id: 4_000_001,
            tags_change_last_changed: true,
            tag_names_ignore_case: true,
            journal: None,
            last_tick: 0,
            next_web_id: 100_001,
            clock_offset: 0,
            lost_answers: 0,
            refused_writes: 0,
            rejected_emails: Vec::new(),
            webhooks: None,
            webhooks_for_api: false,
            by_person: false,
            stats: SimStats::default(),
        }
    }

    fn tick(&mut self) -> Millis {
        self.last_tick = (now_millis() + self.clock_offset).max(self.last_tick + 1);
        self.last_tick
    }

    pub fn load(&mut self, seed: Seed) -> Result<(), String> {
        for def in seed.merge_fields {
            if !self.merge_defs.iter().any(|d| d.tag == def.tag) {
                self.merge_defs.push(def);
            }
        }
        for (index, member) in seed.members.into_iter().enumerate() {
            let changed = match &member.last_changed {
                Some(text) => parse_rfc3339(text)
                    .ok_or_else(|| format!("member {index}: unreadable last_changed {text:?}"))?,
                None => self.tick(),
            };
            let hash = subscriber_hash(&member.email_address);
            if self.members.contains_key(&hash) {
                return Err(format!(
                    "member {index}: {} is listed twice",
                    member.email_address
                ));
            }
            if let Some(tag) = member
                .merge_fields
                .keys()
                .find(|t| !self.merge_defs.iter().any(|d| &d.tag == *t))
            {
                return Err(format!("member {index}: merge field {tag} is not defined"));
            }
            let stored = self.new_member(
                &member.email_address,
                member.status.unwrap_or_else(|| "subscribed".into()),
                member.merge_fields,
                changed,
            );
            self.put(hash, stored);
        }
        Ok(())
    }

    fn new_member(
        &mut self,
        email: &str,
        status: String,
        merge_fields: BTreeMap<String, Value>,
        changed: Millis,
    ) -> Stored {
        let web_id = self.next_web_id;
        self.next_web_id += 1;
        Stored {
            email: email.trim().to_string(),
            status,
            merge_fields,
            language: String::new(),
            vip: false,
            email_type: "html".into(),
            contact_id: format!(
                "{:032x}",
                u128::from(web_id).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
            ),
            web_id,
            signed_up: changed,
            changed,
            tags: Vec::new(),
        }
    }

    /// A tag name as the audience compares it.
    fn tag_key(&self, name: &str) -> String {
        if self.tag_names_ignore_case {
            name.trim().to_lowercase()
        } else {
            name.trim().to_string()
        }
    }

    /// The audience's id and spelling of a tag, created on first use.
    fn tag(&mut self, name: &str) -> (u64, String) {
        let key = self.tag_key(name);
        if let Some(known) = self.tag_ids.get(&key) {
            return known.clone();
        }
        let tag = (self.next_tag_id, name.trim().to_string());
        self.next_tag_id += 1;
        self.tag_ids.insert(key, tag.clone());
        tag
    }

    /// Apply tag changes (name, whether active) in order to a member not yet
    /// stored back: an active tag it lacks is added (and created in the audience
    /// if new), an inactive one it has is removed, anything else is left alone.
    /// Returns whether a tag changed.
    fn apply_tags(&mut self, member: &mut Stored, changes: &[(String, bool)], at: Millis) -> bool {
        let mut changed = false;
        for (name, active) in changes {
            if name.trim().is_empty() {
                continue;
            }
            let key = self.tag_key(name);
            let position = member
                .tags
                .iter()
                .position(|tag| self.tag_key(&tag.name) == key);
            match (position, active) {
                (None, true) => {
                    let (id, name) = self.tag(name);
                    member.tags.push(StoredTag {
                        id,
                        name,
                        added: at,
                    });
                    changed = true;
                }
                (Some(index), false) => {
                    member.tags.remove(index);
                    changed = true;
                }
                _ => {}
            }
        }
        changed
    }

    /// The changes that leave a member with exactly these tags.
    pub fn replacing_tags(&self, hash: &str, names: &[String]) -> Vec<(String, bool)> {
        let wanted: Vec<String> = names.iter().map(|n| self.tag_key(n)).collect();
        let current = self.members.get(hash).map_or(&[][..], |m| &m.tags[..]);
        current
            .iter()
            .filter(|tag| !wanted.contains(&self.tag_key(&tag.name)))
            .map(|tag| (tag.name.clone(), false))
            .chain(names.iter().map(|name| (name.clone(), true)))
            .collect()
    }

    /// Add and remove a member's tags, as `POST …/members/{hash}/tags` does.
    /// Advances `last_changed` when a tag changed, unless configured not to;
    /// sends no webhook, as tags are not among Mailchimp's member events.
    /// Returns whether a tag changed.
    pub fn change_tags(&mut self, hash: &str, changes: &[(String, bool)]) -> bool {
        let Some(mut member) = self.members.get(hash).cloned() else {
            return false;
        };
        let at = if self.tags_change_last_changed {
            self.tick()
        } else {
            self.now()
        };
        if !self.apply_tags(&mut member, changes, at) {
            return false;
        }
        if self.tags_change_last_changed {
            member.changed = at;
        }
        self.put(hash.to_string(), member);
        self.stats.writes += 1;
        true
    }

    fn put(&mut self, hash: String, member: Stored) {
        if let Some(old) = self.members.get(&hash) {
            self.changes.remove(&(old.changed, hash.clone()));
        }
        self.changes.insert((member.changed, hash.clone()));
        self.contact_ids
            .insert(member.contact_id.clone(), hash.clone());
        self.members.insert(hash, member);
    }

    /// A member by subscriber hash, `contact_id` or email address.
    pub fn get(&self, id: &str) -> Option<&Stored> {
        self.members.get(&self.hash_of(id)?)
    }

    /// The subscriber hash of a member named by hash, `contact_id` or email address,
    /// all of which Mailchimp accepts in a member's path.
    pub fn hash_of(&self, id: &str) -> Option<String> {
        if self.members.contains_key(id) {
            return Some(id.to_string());
        }
        if let Some(hash) = self.contact_ids.get(id) {
            return Some(hash.clone());
        }
        let hash = subscriber_hash(id);
        self.members.contains_key(&hash).then_some(hash)
    }

    /// Members ordered by last change, oldest first.
    pub fn by_change(&self) -> impl DoubleEndedIterator<Item = &Stored> + '_ {
        self.changes.iter().map(|(_, hash)| &self.members[hash])
    }

    /// Check an email and merge fields for a write; `creating` also checks required fields.
    pub fn validate(
        &self,
        email: Option<&str>,
        status: Option<&str>,
        merge_fields: &BTreeMap<String, Value>,
        creating: bool,
        skip_merge_validation: bool,
    ) -> Result<(), Rejection> {
        if let Some(email) = email
            && (!looks_like_email(email)
                || self.rejected_emails.contains(&email.trim().to_lowercase()))
        {
            return Err(Rejection::invalid(
                format!("{email} looks fake or invalid, please enter a real email address."),
                vec![FieldError {
                    field: "email_address".into(),
                    message: "Please provide a valid email address.".into(),
                }],
            ));
        }
        if let Some(status) = status
            && !STATUSES.contains(&status)
        {
            return Err(Rejection::invalid(
                "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
                vec![FieldError {
                    field: "status".into(),
                    message: format!("Status must be one of: {}", STATUSES.join(", ")),
                }],
            ));
        }
        let mut errors = Vec::new();
        for (tag, value) in merge_fields {
            match self.merge_defs.iter().find(|d| &d.tag == tag) {
                None => errors.push(FieldError {
                    field: tag.clone(),
                    message: format!("Merge field \"{tag}\" does not exist on this audience."),
                }),
                Some(def) if def.kind == "number" && !value_is_number(value) => {
                    errors.push(FieldError {
                        field: tag.clone(),
                        message: "Please enter a number".into(),
                    })
                }
                Some(def) if def.kind == "address" && !(value.is_object() || value == "") => errors
                    .push(FieldError {
                        field: tag.clone(),
                        message: "Please enter a complete address".into(),
                    }),
                Some(def)
                    if !(matches!(def.kind.as_str(), "number" | "address")
                        || value.is_string()
                        || value.is_number()) =>
                {
                    errors.push(FieldError {
                        field: tag.clone(),
                        message: "Please enter a text value".into(),
                    })
                }
                _ => {}
            }
        }
        if creating && !skip_merge_validation {
            for def in self.merge_defs.iter().filter(|d| d.required) {
                if merge_fields.get(&def.tag).is_none_or(|v| v == "") {
                    errors.push(FieldError {
                        field: def.tag.clone(),
                        message: "This value should not be blank.".into(),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Rejection::invalid(
                "Your merge fields were invalid.",
                errors,
            ))
        }
    }

    /// Create a member from validated values, with these tags; returns its hash.
    pub fn create(
        &mut self,
        email: &str,
        status: &str,
        merge_fields: BTreeMap<String, Value>,
        extra: &BTreeMap<String, Value>,
        tags: &[String],
    ) -> String {
        let changed = self.tick();
        let mut member = self.new_member(email, status.to_string(), BTreeMap::new(), changed);
        merge_into(&mut member.merge_fields, merge_fields);
        apply_extra(&mut member, extra);
        let adds: Vec<(String, bool)> = tags.iter().map(|name| (name.clone(), true)).collect();
        self.apply_tags(&mut member, &adds, changed);
        let hash = subscriber_hash(email);
        let event = (member.status == "subscribed").then(|| self.event("subscribe", &member, &[]));
        self.put(hash.clone(), member);
        self.stats.writes += 1;
        self.emit(event);
        hash
    }

    /// Change a member from validated values; a new email renames it. Returns its (new) hash.
    pub fn update(
        &mut self,
        hash: &str,
        email: Option<&str>,
        status: Option<&str>,
        merge_fields: BTreeMap<String, Value>,
    ) -> String {
        self.update_with(hash, email, status, merge_fields, &BTreeMap::new(), &[])
    }

    /// [`State::update`] with other member fields and tag changes (name, whether active).
    pub fn update_with(
        &mut self,
        hash: &str,
        email: Option<&str>,
        status: Option<&str>,
        merge_fields: BTreeMap<String, Value>,
        extra: &BTreeMap<String, Value>,
        tags: &[(String, bool)],
    ) -> String {
        let changed = self.tick();
        let Some(mut member) = self.members.get(hash).cloned() else {
            return hash.to_string();
        };
        self.changes.remove(&(member.changed, hash.to_string()));
        let before = member.clone();
        member.changed = changed;
        if let Some(status) = status {
            member.status = status.to_string();
        }
        merge_into(&mut member.merge_fields, merge_fields);
        apply_extra(&mut member, extra);
        self.apply_tags(&mut member, tags, changed);
        let mut key = hash.to_string();
        if let Some(email) = email.filter(|e| subscriber_hash(e) != hash) {
            self.members.remove(hash);
            member.email = email.trim().to_string();
            key = subscriber_hash(email);
        }
        let mut events = Vec::new();
        if member.email != before.email {
            events.push(self.event(
                "upemail",
                &member,
                &[
                    ("data[old_email]", before.email.clone()),
                    ("data[new_email]", member.email.clone()),
                ],
            ));
        }
        if member.status != before.status {
            events.push(match member.status.as_str() {
                "unsubscribed" => self.event(
                    "unsubscribe",
                    &member,
                    &[
                        ("data[action]", "unsub".into()),
                        ("data[reason]", "manual".into()),
                    ],
                ),
                "archived" => self.event(
                    "unsubscribe",
                    &member,
                    &[
                        ("data[action]", "delete".into()),
                        ("data[reason]", "manual".into()),
                    ],
                ),
                "cleaned" => self.event("cleaned", &member, &[("data[reason]", "hard".into())]),
                _ => self.event("subscribe", &member, &[]),
            });
        } else if member.merge_fields != before.merge_fields {
            events.push(self.event("profile", &member, &[]));
        }
        self.put(key.clone(), member);
        self.stats.writes += 1;
        for event in events {
            self.emit(Some(event));
        }
        key
    }

    /// A webhook event about a member, form-encoded as Mailchimp sends it.
    fn event(&self, kind: &str, member: &Stored, extra: &[(&str, String)]) -> String {
        let at = time::OffsetDateTime::from_unix_timestamp(self.now() / 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let fired_at = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        let hash = subscriber_hash(&member.email);
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("type", kind)
            .append_pair("fired_at", &fired_at);
        form.append_pair("data[id]", &hash[..10])
            .append_pair("data[list_id]", &self.list_id);
        if kind != "upemail" {
            form.append_pair("data[email]", &member.email)
                .append_pair("data[email_type]", &member.email_type);
            form.append_pair("data[merges][EMAIL]", &member.email);
            for (tag, value) in &member.merge_fields {
                form.append_pair(
                    &format!("data[merges][{tag}]"),
                    value.as_str().unwrap_or_default(),
                );
            }
        }
        for (name, value) in extra {
            form.append_pair(name, value);
        }
        form.finish()
    }

    /// Send an event, if webhooks are on and the change's source is one Mailchimp reports.
    fn emit(&self, event: Option<String>) {
        if let (Some(webhooks), Some(event)) = (&self.webhooks, event)
            && (self.by_person || self.webhooks_for_api)
        {
            webhooks.send(Value::String(event));
        }
    }

    /// The simulator's clock, without advancing it.
    pub fn now(&self) -> Millis {
        now_millis() + self.clock_offset
    }

    /// Remove a member entirely and refuse its address from now on.
    pub fn erase(&mut self, hash: &str) {
        if let Some(member) = self.members.remove(hash) {
            self.changes.remove(&(member.changed, hash.to_string()));
            self.contact_ids.remove(&member.contact_id);
            self.rejected_emails.push(member.email.to_lowercase());
            self.stats.writes += 1;
        }
    }

    pub fn archive(&mut self, hash: &str) {
        if self
            .members
            .get(hash)
            .is_some_and(|m| m.status != "archived")
        {
            self.update(hash, None, Some("archived"), BTreeMap::new());
        }
    }

    /// The member in the API's shape.
    pub fn render(&self, m: &Stored) -> Member {
        let hash = subscriber_hash(&m.email);
        let mut merge_fields: BTreeMap<String, Value> = self
            .merge_defs
            .iter()
            .map(|d| (d.tag.clone(), Value::String(String::new())))
            .collect();
        merge_fields.extend(m.merge_fields.clone());
        let extra = json!({
            "unique_email_id": &hash[..10],
            "contact_id": m.contact_id,
            "full_name": format!("{} {}", text(&m.merge_fields, "FNAME"), text(&m.merge_fields, "LNAME")).trim(),
            "web_id": m.web_id,
            "email_type": m.email_type,
            "unsubscribe_reason": if m.status == "unsubscribed" { "N/A (Unsubscribed by an admin)" } else { "" },
            "consents_to_one_to_one_messaging": true,
            "interests": {},
            "stats": { "avg_open_rate": 0, "avg_click_rate": 0 },
            "ip_signup": "",
            "timestamp_signup": format_seconds_offset(m.signed_up),
            "ip_opt": "",
            "timestamp_opt": format_seconds_offset(m.signed_up),
            "member_rating": 2,
            "language": m.language,
            "vip": m.vip,
            "email_client": "",
            "location": { "latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0, "country_code": "", "timezone": "", "region": "" },
            "source": "API - Generic",
            "list_id": self.list_id,
            "_links": [],
        });
        Member {
            id: hash,
            email_address: m.email.clone(),
            status: m.status.clone(),
            merge_fields,
            last_changed: format_seconds_offset(m.changed),
            tags: Some(
                m.tags
                    .iter()
                    .take(PAYLOAD_TAGS)
                    .map(|tag| Tag {
                        id: tag.id,
                        name: tag.name.clone(),
                        date_added: None,
                    })
                    .collect(),
            ),
            tags_count: Some(m.tags.len() as u64),
            extra: serde_json::from_value(extra).expect("an object"),
        }
    }
}

fn text(fields: &BTreeMap<String, Value>, tag: &str) -> String {
    fields
        .get(tag)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn merge_into(target: &mut BTreeMap<String, Value>, values: BTreeMap<String, Value>) {
    for (tag, value) in values {
        if value == "" {
            target.remove(&tag);
        } else {
            target.insert(tag, value);
        }
    }
}

fn apply_extra(member: &mut Stored, extra: &BTreeMap<String, Value>) {
    if let Some(language) = extra.get("language").and_then(Value::as_str) {
        member.language = language.to_string();
    }
    if let Some(vip) = extra.get("vip").and_then(Value::as_bool) {
        member.vip = vip;
    }
    if let Some(kind) = extra.get("email_type").and_then(Value::as_str) {
        member.email_type = kind.to_string();
    }
}

fn value_is_number(value: &Value) -> bool {
    value.is_number()
        || value == ""
        || value
            .as_str()
            .is_some_and(|s| s.trim().parse::<f64>().is_ok())
}

/// A local part, one `@`, and a dotted domain without empty labels or spaces.
pub fn looks_like_email(value: &str) -> bool {
    let value = value.trim();
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !value.contains(char::is_whitespace)
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
}
