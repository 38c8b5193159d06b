//! The simulator's portal: contacts, the property schema, validation, the
//! clock that stamps `lastmodifieddate` and each property's history of values.
//! No HTTP here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tandem_core::Millis;
use tandem_core::clock::{format_millis_z, now_millis, parse_rfc3339};

use super::{Seed, SimConfig, SimStats};
use crate::model::{SimplePublicObject, ValueWithTimestamp};

/// A contact property definition, as `GET /crm/v3/properties/contacts` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDef {
    /// Internal name.
    pub name: String,
    /// `string`, `number`, `enumeration`, `datetime`, `bool`, ...
    #[serde(rename = "type", default = "string_type")]
    pub kind: String,
    /// Allowed values of an enumeration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Whether the value is set by HubSpot only.
    #[serde(default)]
    pub read_only: bool,
}

fn string_type() -> String {
    "string".into()
}

/// The portal and app the simulator's webhook events name.
pub const SIM_PORTAL: u64 = 62515;
pub const SIM_APP: u64 = 54321;
/// The user who makes the changes [`super::HubSpotSim::edit`] stands for.
pub const SIM_USER: u64 = 45678;

/// Who set a property value, as its history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A seed: data imported into the portal (`IMPORT`).
    Import,
    /// A client of the API, that is an app (`INTEGRATION` by default).
    Api,
    /// A person in HubSpot's own interface (`CRM_UI`).
    Person,
}

/// One entry of a property's history, as the simulator keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The value set; `""` when the property was cleared.
    pub value: String,
    /// When, by the simulator's clock (the seed's `updatedAt` for seeded values).
    pub at: Millis,
    /// Who set it.
    pub source: Source,
}

/// Properties returned when a request names none.
pub const DEFAULT_PROPERTIES: [&str; 6] = [
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
];

fn default_schema() -> BTreeMap<String, PropertyDef> {
    let plain = |name: &str, kind: &str| PropertyDef {
        name: name.into(),
        kind: kind.into(),
        options: vec![],
        read_only: false,
    };
    let mut defs = vec![
        plain("email", "string"),
        plain("firstname", "string"),
        plain("lastname", "string"),
        plain("phone", "string"),
        plain("mobilephone", "string"),
        plain("company", "string"),
        plain("jobtitle", "string"),
        plain("website", "string"),
        plain("address", "string"),
        plain("city", "string"),
        plain("state", "string"),
        plain("zip", "string"),
        plain("country", "string"),
        plain("hs_email_optout", "bool"),
        plain("notes_last_updated", "datetime"),
        PropertyDef {
            name: "lifecyclestage".into(),
            kind: "enumeration".into(),
            options: [
                "subscriber",
                "lead",
                "marketingqualifiedlead",
                "salesqualifiedlead",
                "opportunity",
                "customer",
                "evangelist",
                "other",
            ]
            .map(String::from)
            .to_vec(),
            read_only: false,
        },
    ];
    for name in ["hs_object_id", "createdate", "lastmodifieddate"] {
        defs.push(PropertyDef {
            name: name.into(),
            kind: if name == "hs_object_id" {
                "number"
            } else {
                "datetime"
            }
            .into(),
            options: vec![],
            read_only: true,
        });
    }
    defs.into_iter().map(|d| (d.name.clone(), d)).collect()
}

/// One contact as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct Contact {
    pub properties: BTreeMap<String, String>,
    pub created: Millis,
    pub updated: Millis,
    pub archived: Option<Millis>,
    /// Every value each property was set to, oldest first.
    pub history: BTreeMap<String, Vec<HistoryEntry>>,
}

impl Contact {
    /// Record that `value` was set on `name`. A value equal to the current
    /// one is recorded only if `repeats` (see [`SimConfig::history_repeats`]).
    fn record(&mut self, name: &str, value: &str, at: Millis, source: Source, repeats: bool) {
        let entries = self.history.entry(name.to_string()).or_default();
        let current = entries.last().map_or("", |last| last.value.as_str());
        // Clearing a property that never had a value sets nothing.
        if value == current && (!repeats || entries.is_empty()) {
            return;
        }
        entries.push(HistoryEntry {
            value: value.to_string(),
            at,
            source,
        });
    }
}

/// A rejected input: HubSpot's category, message, code, and the property concerned.
#[derive(Debug, Clone)]
pub struct InputError {
    pub status: u16,
    pub category: &'static str,
    pub message: String,
    pub code: &'static str,
    pub property: Option<String>,
}

impl InputError {
    /// The `{"isValid":false,...}` entry HubSpot embeds in a validation message.
    fn validation(name: &str, code: &'static str, message: String) -> Self {
        let entry = json!([{ "isValid": false, "message": message, "error": code, "name": name, "localizedErrorMessage": message }]);
        Self {
            status: 400,
            category: "VALIDATION_ERROR",
            message: format!("Property values were not valid: {entry}"),
            code,
            property: Some(name.to_string()),
        }
    }

    pub fn not_found(id: &str) -> Self {
        Self {
            status: 404,
            category: "OBJECT_NOT_FOUND",
            message: format!(
                "Object not found.  objectId are usually numeric. Could not find {id}"
            ),
            code: "OBJECT_NOT_FOUND",
            property: None,
        }
    }
}

#[derive(Default)]
pub struct State {
    pub schema: BTreeMap<String, PropertyDef>,
    pub contacts: BTreeMap<u64, Contact>,
    /// Lowercased email to id, live contacts only.
    emails: HashMap<String, u64>,
    /// (lastmodifieddate, id) of live contacts, for searches on changes.
    pub modified: BTreeSet<(Millis, u64)>,
    next_id: u64,
    last_tick: Millis,
    /// Added to the system clock, so tests can make later edits look later.
    pub clock_offset: Millis,
    /// How many more writes are applied but answered with a 500.
    pub lost_answers: u32,
    /// Times of the requests in the current rolling windows, for the rate limits.
    pub recent: std::collections::VecDeque<Millis>,
    pub recent_searches: std::collections::VecDeque<Millis>,
    /// Requests counted against the daily limit: (day number, count).
    pub today: (i64, u32),
    /// Addresses HubSpot refuses, as after a GDPR delete, lowercased.
    pub blocklist: std::collections::HashSet<String>,
    /// Contacts whose latest change search does not show until then (search lags).
    pub unindexed: HashMap<u64, Millis>,
    /// How long every change stays out of search after it is made.
    pub search_lag: Millis,
    /// Where webhook events go, once a test or the demo asks for them.
    pub webhooks: Option<tandem_core::sim::Webhooks>,
    next_event_id: u64,
    pub stats: SimStats,
    /// Whether setting a property to the value it holds adds a history entry.
    history_repeats: bool,
    /// How `sourceType` names writes through the API.
    api_source_type: String,
    /// Requests kept for tests, once asked for.
    pub journal: Option<Vec<super::SimRequest>>,
}

impl State {
    pub fn new(config: &SimConfig) -> Self {
        Self {
            schema: default_schema(),
            next_id: 1001,
            history_repeats: config.history_repeats,
            api_source_type: config.api_source_type.clone(),
            ..Self::default()
        }
    }

    /// A strictly increasing clock, so every write has its own `lastmodifieddate`.
    /// The simulator's clock, without advancing it.
    pub fn now(&self) -> Millis {
        now_millis() + self.clock_offset
    }

    fn tick(&mut self) -> Millis {
        self.last_tick = (now_millis() + self.clock_offset).max(self.last_tick + 1);
        self.last_tick
    }

    pub fn load(&mut self, seed: Seed) -> Result<(), String> {
        for def in seed.properties {
            self.schema.insert(def.name.clone(), def);
        }
        for (index, contact) in seed.contacts.into_iter().enumerate() {
            let parse = |field: &Option<String>| match field {
                None => Ok(None),
                Some(text) => parse_rfc3339(text)
                    .map(Some)
                    .ok_or_else(|| format!("contact {index}: unreadable time {text:?}")),
            };
            let updated = parse(&contact.updated_at)?.unwrap_or_else(|| self.tick());
            let created = parse(&contact.created_at)?.unwrap_or(updated);
            if let Some(unknown) = contact
                .properties
                .keys()
                .find(|k| !self.schema.contains_key(*k))
            {
                return Err(format!(
                    "contact {index}: property {unknown:?} is not defined"
                ));
            }
            let mut properties = contact.properties;
            if let Some(email) = properties.get_mut("email") {
                *email = email.trim().to_lowercase();
                if self.emails.contains_key(email.as_str()) {
                    return Err(format!("contact {index}: email {email} is used twice"));
                }
            }
            let id = self.next_id;
            self.next_id += 1;
            let mut contact = Contact {
                properties,
                created,
                updated,
                archived: None,
                history: BTreeMap::new(),
            };
            for (name, value) in contact.properties.clone() {
                contact.record(&name, &value, updated, Source::Import, true);
            }
            self.insert(id, contact, Source::Import);
        }
        Ok(())
    }

    /// Store a contact, setting the properties HubSpot keeps itself (and
    /// recording their changes in their history, as made by `source`).
    fn insert(&mut self, id: u64, mut contact: Contact, source: Source) {
        let own = [
            ("hs_object_id", id.to_string()),
            ("createdate", format_millis_z(contact.created)),
            ("lastmodifieddate", format_millis_z(contact.updated)),
        ];
        for (name, value) in own {
            if contact.properties.get(name) != Some(&value) {
                contact.record(name, &value, contact.updated, source, true);
                contact.properties.insert(name.into(), value);
            }
        }
        if let Some(old) = self.contacts.get(&id) {
            self.modified.remove(&(old.updated, id));
            if let Some(email) = old.properties.get("email") {
                self.emails.remove(email);
            }
        }
        if contact.archived.is_none() {
            self.modified.insert((contact.updated, id));
            if let Some(email) = contact.properties.get("email").filter(|e| !e.is_empty()) {
                self.emails.insert(email.clone(), id);
            }
        }
        self.contacts.insert(id, contact);
    }

    pub fn find_email(&self, email: &str) -> Option<u64> {
        self.emails.get(&email.trim().to_lowercase()).copied()
    }

    /// Whether search shows the contact's latest change yet.
    pub fn searchable(&self, id: u64) -> bool {
        let now = self.now();
        self.unindexed.get(&id).is_none_or(|at| *at <= now)
            && (self.search_lag == 0
                || self
                    .contacts
                    .get(&id)
                    .is_none_or(|c| c.updated + self.search_lag <= now))
    }

    pub fn live_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.contacts
            .iter()
            .filter(|(_, c)| c.archived.is_none())
            .map(|(id, _)| *id)
    }

    /// Resolve an id, or a value of `id_property` (only `email` and `hs_object_id` are unique).
    pub fn resolve(&self, id: &str, id_property: Option<&str>) -> Result<Option<u64>, InputError> {
        match id_property {
            None | Some("hs_object_id") => Ok(id
                .parse()
                .ok()
                .filter(|n| self.contacts.get(n).is_some_and(|c| c.archived.is_none()))),
            Some("email") => Ok(self.find_email(id)),
            Some(other) => Err(InputError {
                status: 400,
                category: "VALIDATION_ERROR",
                message: format!("Property {other} is not a unique identifier property"),
                code: "INVALID_ID_PROPERTY",
                property: Some(other.to_string()),
            }),
        }
    }

    /// Check values a client wants to write, as HubSpot does.
    pub fn validate(
        &self,
        values: &BTreeMap<String, String>,
        existing: Option<u64>,
    ) -> Result<(), InputError> {
        for (name, value) in values {
            let Some(def) = self.schema.get(name) else {
                return Err(InputError::validation(
                    name,
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{name}\" does not exist"),
                ));
            };
            if def.read_only {
                return Err(InputError::validation(
                    name,
                    "READ_ONLY_VALUE",
                    format!("\"{name}\" is a read only property; its value cannot be set."),
                ));
            }
            if value.is_empty() {
                continue;
            }
            match def.kind.as_str() {
                "enumeration" if !def.options.iter().any(|o| o == value) => {
                    return Err(InputError::validation(
                        name,
                        "INVALID_OPTION",
                        format!(
                            "{value} was not one of the allowed options: {}",
                            def.options.join(", ")
                        ),
                    ));
                }
                "number" if value.parse::<f64>().is_err() => {
                    return Err(InputError::validation(
                        name,
                        "INVALID_INTEGER",
                        format!("{value} is not a valid number"),
                    ));
                }
                "bool" if value != "true" && value != "false" => {
                    return Err(InputError::validation(
                        name,
                        "INVALID_BOOLEAN",
                        format!("{value} is not a valid boolean"),
                    ));
                }
                "datetime" | "date"
                    if value.parse::<i64>().is_err() && parse_rfc3339(value).is_none() =>
                {
                    return Err(InputError::validation(
                        name,
                        "INVALID_DATE",
                        format!("{value} is not a valid date"),
                    ));
                }
                _ => {}
            }
            if name == "email" {
                if self.blocklist.contains(&value.trim().to_lowercase()) {
                    return Err(InputError::validation(
                        name,
                        "INVALID_EMAIL",
                        format!("Email address {value} is blocklisted"),
                    ));
                }
                if !looks_like_email(value) {
                    return Err(InputError::validation(
                        name,
                        "INVALID_EMAIL",
                        format!("Email address {value} is invalid"),
                    ));
                }
                if let Some(other) = self
                    .find_email(value)
                    .filter(|other| Some(*other) != existing)
                {
                    return Err(InputError {
                        status: 409,
                        category: "CONFLICT",
                        message: format!("Contact already exists. Existing ID: {other}"),
                        code: "CONFLICT",
                        property: Some("email".into()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Create a contact from validated values, set by `source`.
    pub fn create(&mut self, values: BTreeMap<String, String>, source: Source) -> u64 {
        let now = self.tick();
        let id = self.next_id;
        self.next_id += 1;
        let mut contact = Contact {
            properties: BTreeMap::new(),
            created: now,
            updated: now,
            archived: None,
            history: BTreeMap::new(),
        };
        let set = apply_values(&mut contact.properties, values);
        for (name, value) in set {
            // An empty value on a new contact sets nothing, so it leaves no history.
            if !value.is_empty() {
                contact.record(&name, &value, now, source, true);
            }
        }
        self.insert(id, contact, source);
        self.emit(id, "contact.creation", None, now);
        self.stats.writes += 1;
        id
    }

    /// Set validated values on a contact, as `source`; an empty string clears a property.
    pub fn write_unchecked(&mut self, id: u64, values: BTreeMap<String, String>, source: Source) {
        let now = self.tick();
        let Some(mut contact) = self.contacts.get(&id).cloned() else {
            return;
        };
        let before = contact.properties.clone();
        let set = apply_values(&mut contact.properties, values);
        for (name, value) in set {
            let repeats = self.history_repeats;
            contact.record(&name, &value, now, source, repeats);
        }
        contact.updated = now;
        let changed: Vec<(String, String)> = contact
            .properties
            .iter()
            .filter(|(name, value)| before.get(*name) != Some(*value))
            .map(|(name, value)| (name.clone(), value.clone()))
            .chain(
                before
                    .keys()
                    .filter(|name| !contact.properties.contains_key(*name))
                    .map(|name| (name.clone(), String::new())),
            )
            .collect();
        self.insert(id, contact, source);
        self.stats.writes += 1;
        for (name, value) in changed {
            self.emit(id, "contact.propertyChange", Some((&name, &value)), now);
        }
    }

    /// Send a webhook event about a contact, if webhooks are on.
    fn emit(&mut self, id: u64, kind: &str, property: Option<(&str, &str)>, at: Millis) {
        let Some(webhooks) = &self.webhooks else {
            return;
        };
        self.next_event_id += 1;
        let mut event = serde_json::json!({
            "eventId": self.next_event_id,
            "subscriptionId": 1,
            "portalId": SIM_PORTAL,
            "appId": SIM_APP,
            "occurredAt": at,
            "subscriptionType": kind,
            "attemptNumber": 0,
            "objectId": id,
            "changeSource": "CRM",
        });
        if let Some((name, value)) = property {
            event["propertyName"] = name.into();
            event["propertyValue"] = value.into();
        }
        webhooks.send(event);
    }

    /// Bring an archived contact back, as HubSpot allows for 90 days.
    pub fn restore(&mut self, id: u64, source: Source) {
        let now = self.tick();
        if let Some(mut contact) = self
            .contacts
            .get(&id)
            .cloned()
            .filter(|c| c.archived.is_some())
        {
            contact.archived = None;
            contact.updated = now;
            self.insert(id, contact, source);
            self.stats.writes += 1;
            self.emit(id, "contact.restore", None, now);
        }
    }

    /// Archive a contact, as `source`.
    pub fn archive(&mut self, id: u64, source: Source) {
        let now = self.tick();
        if let Some(mut contact) = self
            .contacts
            .get(&id)
            .cloned()
            .filter(|c| c.archived.is_none())
        {
            contact.archived = Some(now);
            contact.updated = now;
            self.insert(id, contact, source);
            self.stats.writes += 1;
            self.emit(id, "contact.deletion", None, now);
        }
    }

    /// A contact in the API's shape, with the requested properties (`None`: all
    /// of them) and, if `with_history`, the history of those it names.
    pub fn to_object(
        &self,
        id: u64,
        requested: Option<&[String]>,
        with_history: Option<&[String]>,
    ) -> SimplePublicObject {
        let contact = &self.contacts[&id];
        let properties = match requested {
            None => contact
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
            Some(names) => names
                .iter()
                .filter(|name| self.schema.contains_key(*name))
                .map(|name| (name.clone(), contact.properties.get(name).cloned()))
                .collect(),
        };
        SimplePublicObject {
            id: id.to_string(),
            properties,
            created_at: format_millis_z(contact.created),
            updated_at: format_millis_z(contact.updated),
            archived: contact.archived.is_some(),
            archived_at: contact.archived.map(format_millis_z),
            properties_with_history: with_history.map(|names| self.history_of(contact, names)),
            new: None,
            object_write_trace_id: None,
        }
    }

    /// The history of the named properties, newest entry first. A name the
    /// schema does not know is left out, as HubSpot ignores it; a known
    /// property that was never set has an empty history.
    fn history_of(
        &self,
        contact: &Contact,
        names: &[String],
    ) -> BTreeMap<String, Vec<ValueWithTimestamp>> {
        names
            .iter()
            .filter(|name| self.schema.contains_key(*name))
            .map(|name| {
                let entries = contact.history.get(name).map_or(&[][..], Vec::as_slice);
                let entries = entries
                    .iter()
                    .rev()
                    .map(|entry| self.entry_of(entry))
                    .collect();
                (name.clone(), entries)
            })
            .collect()
    }

    /// One history entry in the API's shape. The source names follow captures
    /// of real answers: an app's writes are `INTEGRATION` with the app id, a
    /// person's `CRM_UI` with `userId:<id>`, imports `IMPORT`.
    fn entry_of(&self, entry: &HistoryEntry) -> ValueWithTimestamp {
        let (source_type, source_id, user) = match entry.source {
            Source::Import => ("IMPORT".to_string(), None, None),
            Source::Api => (
                self.api_source_type.clone(),
                Some(SIM_APP.to_string()),
                None,
            ),
            Source::Person => (
                "CRM_UI".to_string(),
                Some(format!("userId:{SIM_USER}")),
                Some(SIM_USER.into()),
            ),
        };
        ValueWithTimestamp {
            value: Some(entry.value.clone()),
            timestamp: format_millis_z(entry.at),
            source_type,
            source_id,
            source_label: None,
            updated_by_user_id: user,
        }
    }
}

/// Set values (an empty one clears); returns them as stored, for the history.
fn apply_values(
    properties: &mut BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut set = Vec::with_capacity(values.len());
    for (name, value) in values {
        let value = if name == "email" {
            value.trim().to_lowercase()
        } else {
            value
        };
        if value.is_empty() {
            properties.remove(&name);
        } else {
            properties.insert(name.clone(), value.clone());
        }
        set.push((name, value));
    }
    set
}

/// HubSpot's check is stricter than a regex can state; this one asks for a
/// local part, one `@`, and a dotted domain without empty labels or spaces.
pub fn looks_like_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !value.contains(char::is_whitespace)
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
}
