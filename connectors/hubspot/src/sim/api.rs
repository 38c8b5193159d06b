//! HTTP handlers of the HubSpot simulator: routing, auth, request parsing,
//! HubSpot's response and error shapes, and the request journal tests can
//! read. The portal's rules live in `state`.

use std::collections::{BTreeMap, HashSet};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tandem_core::clock::{format_millis_z, now_millis, parse_rfc3339};

use super::state::{DEFAULT_PROPERTIES, InputError, Source, State as Portal};
use super::{HubSpotSim, SimRequest};
use crate::model::{
    BatchId, BatchInputs, BatchReadRequest, BatchResponse, BatchWriteInput, CollectionResponse,
    ErrorBody, Filter, NextPage, Paging, SearchRequest, SimplePublicObject, StandardError,
};

type Query2 = Query<Vec<(String, String)>>;

pub fn router(sim: HubSpotSim) -> Router {
    Router::new()
        .route("/crm/v3/objects/contacts", get(list).post(create_one))
        .route("/crm/v3/objects/contacts/search", post(search))
        .route("/crm/v3/objects/contacts/batch/{action}", post(batch))
        .route(
            "/crm/v3/objects/contacts/{id}",
            get(read_one).patch(update_one).delete(archive_one),
        )
        .route("/crm/v3/properties/contacts", get(properties))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                "resource not found".into(),
            )
        })
        .layer(middleware::from_fn_with_state(sim.clone(), journal))
        .layer(middleware::from_fn_with_state(sim.clone(), lose_answers))
        .layer(middleware::from_fn_with_state(sim.clone(), faults))
        .layer(middleware::from_fn_with_state(sim.clone(), limit))
        .layer(middleware::from_fn_with_state(sim.clone(), authenticate))
        .layer(middleware::from_fn_with_state(sim.clone(), stamp_date))
        .with_state(sim)
}

/// HubSpot's error JSON.
fn error(status: StatusCode, category: &str, message: String) -> Response {
    let body = ErrorBody {
        status: Some("error".into()),
        message,
        correlation_id: Some(uuid::Uuid::new_v4().to_string()),
        category: Some(category.into()),
        ..ErrorBody::default()
    };
    (status, axum::Json(body)).into_response()
}

fn input_error(e: &InputError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({
        "status": "error",
        "message": e.message,
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "category": e.category,
    });
    if let Some(property) = &e.property {
        body["errors"] = json!([{ "message": e.message, "code": e.code, "context": { "propertyName": [property] } }]);
    }
    (status, axum::Json(body)).into_response()
}

fn validation(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message.into())
}

/// Set `Date` from the simulator's clock, which tests can move forward.
async fn stamp_date(State(sim): State<HubSpotSim>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let now = tandem_core::clock::now_millis() + sim.lock().clock_offset;
    if let Ok(value) = tandem_core::clock::format_http_date(now).parse() {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

/// Keep a copy of each request once a test asked for them; the body is read
/// whole and handed on unchanged.
async fn journal(State(sim): State<HubSpotSim>, request: Request, next: Next) -> Response {
    if sim.lock().journal.is_none() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return validation("The request body could not be read.");
    };
    let entry = SimRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    if let Some(journal) = sim.lock().journal.as_mut() {
        journal.push(entry);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The fault a test asked for: a write is applied, then its answer is replaced by a 500,
/// as when a response is lost after the vendor already wrote.
async fn lose_answers(State(sim): State<HubSpotSim>, request: Request, next: Next) -> Response {
    let writes = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if writes && response.status().is_success() {
        let mut state = sim.lock();
        if state.lost_answers > 0 {
            state.lost_answers -= 1;
            drop(state);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "internal error".into(),
            );
        }
    }
    response
}

/// What the budgets say of one request.
enum Budget {
    /// Refused: the policy that refused it and when to try again.
    Spent(&'static str, i64),
    /// Let through; the headers to report (none for search).
    Granted(Vec<(&'static str, String)>),
}

/// HubSpot's budgets: a rolling window for everything but search (which has its
/// own), and a daily count. Answers other than search's report them in
/// `X-HubSpot-RateLimit-*` headers.
async fn limit(State(sim): State<HubSpotSim>, request: Request, next: Next) -> Response {
    let search = request.uri().path().ends_with("/search");
    let config = &sim.config;
    let budget = {
        let mut state = sim.lock();
        let now = state.now();
        let day = now.div_euclid(86_400_000);
        if state.today.0 != day {
            state.today = (day, 0);
        }
        let window = if search {
            config.search_rate_limit
        } else {
            config.rate_limit
        };
        let daily_spent = config.daily_limit.is_some_and(|max| state.today.1 >= max);
        let queue = if search {
            &mut state.recent_searches
        } else {
            &mut state.recent
        };
        let mut budget = if daily_spent {
            Budget::Spent("DAILY", (day + 1) * 86_400_000 - now)
        } else {
            Budget::Granted(Vec::new())
        };
        if let (Budget::Granted(_), Some((max, per))) = (&budget, window) {
            let per = per.as_millis() as i64;
            while queue.front().is_some_and(|t| *t <= now - per) {
                queue.pop_front();
            }
            if queue.len() >= max as usize {
                let policy = if search {
                    "SECONDLY"
                } else {
                    "TEN_SECONDLY_ROLLING"
                };
                budget = Budget::Spent(
                    policy,
                    queue.front().map_or(per, |oldest| oldest + per - now),
                );
            } else {
                queue.push_back(now);
            }
        }
        match &mut budget {
            Budget::Spent(..) => state.stats.throttled += 1,
            Budget::Granted(headers) => {
                state.today.1 += 1;
                if !search {
                    if let Some((max, per)) = config.rate_limit {
                        headers.push(("x-hubspot-ratelimit-max", max.to_string()));
                        headers.push((
                            "x-hubspot-ratelimit-remaining",
                            (max as usize)
                                .saturating_sub(state.recent.len())
                                .to_string(),
                        ));
                        headers.push((
                            "x-hubspot-ratelimit-interval-milliseconds",
                            per.as_millis().to_string(),
                        ));
                    }
                    if let Some(max) = config.daily_limit {
                        headers.push(("x-hubspot-ratelimit-daily", max.to_string()));
                        headers.push((
                            "x-hubspot-ratelimit-daily-remaining",
                            max.saturating_sub(state.today.1).to_string(),
                        ));
                    }
                }
            }
        }
        budget
    };
    match budget {
        Budget::Spent(policy, wait_ms) => {
            rate_limited(policy, config.retry_after.then_some(wait_ms))
        }
        Budget::Granted(headers) => {
            if !config.latency.is_zero() {
                tokio::time::sleep(config.latency).await;
            }
            let mut response = next.run(request).await;
            for (name, value) in headers {
                if let Ok(value) = value.parse() {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
    }
}

/// HubSpot's 429: the policy that refused, and `Retry-After` when the simulator sends it.
fn rate_limited(policy: &str, wait_ms: Option<i64>) -> Response {
    let body = json!({
        "status": "error",
        "message": format!("You have reached your {} limit.", policy.to_lowercase()),
        "errorType": "RATE_LIMIT",
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "policyName": policy,
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if let Some(wait_ms) = wait_ms {
        let seconds = (wait_ms.max(0) + 999) / 1000;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.max(1).into());
    }
    response
}

/// The faults a test set on the API (see [`tandem_core::sim::ApiFaults`]).
async fn faults(State(sim): State<HubSpotSim>, request: Request, next: Next) -> Response {
    let retry_after = sim.config.retry_after;
    sim.faults
        .serve(
            request,
            next,
            |wait| {
                rate_limited(
                    "TEN_SECONDLY_ROLLING",
                    retry_after.then_some(wait.as_millis() as i64),
                )
            },
            |status| {
                error(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    "INTERNAL_ERROR",
                    "internal error".into(),
                )
            },
        )
        .await
}

async fn authenticate(State(sim): State<HubSpotSim>, request: Request, next: Next) -> Response {
    sim.lock().stats.requests += 1;
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match header.and_then(|h| h.strip_prefix("Bearer ")) {
        None => error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview".into(),
        ),
        Some(token) if token != sim.config.token => error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "The OAuth token used to make this call expired or is not valid.".into(),
        ),
        Some(_) => next.run(request).await,
    }
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        validation(format!(
            "Invalid input JSON on line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// The names a list parameter holds, repeated or comma-separated.
fn names_in(query: &[(String, String)], parameter: &str) -> Vec<String> {
    query
        .iter()
        .filter(|(k, _)| k == parameter)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

/// The `properties` parameter; HubSpot's defaults when absent.
fn requested_properties(query: &[(String, String)]) -> Vec<String> {
    let names = names_in(query, "properties");
    if names.is_empty() {
        DEFAULT_PROPERTIES.map(String::from).to_vec()
    } else {
        names
    }
}

/// The `propertiesWithHistory` parameter (or body field); `None` when it names none.
fn requested_history(names: Vec<String>) -> Option<Vec<String>> {
    (!names.is_empty()).then_some(names)
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn list(State(sim): State<HubSpotSim>, Query(query): Query2) -> Response {
    let mut limit = match param(&query, "limit").map(str::parse::<u32>) {
        None => 10,
        Some(Ok(n)) if (1..=sim.config.list_limit).contains(&n) => n as usize,
        Some(_) => {
            return validation(format!(
                "limit must be between 1 and {}",
                sim.config.list_limit
            ));
        }
    };
    let history = requested_history(names_in(&query, "propertiesWithHistory"));
    if history.is_some() {
        // Asking for history reduces how many contacts one page can hold.
        limit = limit.min(sim.config.list_history_limit as usize);
    }
    let start = match param(&query, "after").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return validation("after is not a valid paging cursor"),
    };
    let archived = param(&query, "archived") == Some("true");
    let properties = requested_properties(&query);
    let portal = sim.lock();
    let mut ids = portal
        .contacts
        .range(start..)
        .filter(|(_, c)| c.archived.is_some() == archived)
        .map(|(id, _)| *id);
    let results: Vec<SimplePublicObject> = ids
        .by_ref()
        .take(limit)
        .map(|id| portal.to_object(id, Some(&properties), history.as_deref()))
        .collect();
    let paging = ids.next().map(|next| Paging {
        next: Some(NextPage {
            after: next.to_string(),
            link: Some(format!("?after={next}")),
        }),
    });
    axum::Json(CollectionResponse {
        total: None,
        results,
        paging,
    })
    .into_response()
}

async fn properties(State(sim): State<HubSpotSim>) -> Response {
    let portal = sim.lock();
    let results: Vec<Value> = portal
        .schema
        .values()
        .map(|def| {
            json!({
                "name": def.name, "label": def.name, "type": def.kind, "fieldType": "text", "groupName": "contactinformation",
                "description": "", "options": def.options.iter().map(|o| json!({"label": o, "value": o, "hidden": false})).collect::<Vec<_>>(),
                "hubspotDefined": true, "modificationMetadata": { "archivable": false, "readOnlyDefinition": true, "readOnlyValue": def.read_only },
            })
        })
        .collect();
    axum::Json(json!({ "results": results })).into_response()
}

async fn read_one(
    State(sim): State<HubSpotSim>,
    Path(id): Path<String>,
    Query(query): Query2,
) -> Response {
    let properties = requested_properties(&query);
    let history = requested_history(names_in(&query, "propertiesWithHistory"));
    let portal = sim.lock();
    match portal.resolve(&id, param(&query, "idProperty")) {
        Ok(Some(found)) => {
            axum::Json(portal.to_object(found, Some(&properties), history.as_deref()))
                .into_response()
        }
        Ok(None) => input_error(&InputError::not_found(&id)),
        Err(e) => input_error(&e),
    }
}

#[derive(serde::Deserialize)]
struct PropertiesBody {
    properties: BTreeMap<String, String>,
}

async fn create_one(State(sim): State<HubSpotSim>, body: Bytes) -> Response {
    let body: PropertiesBody = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut portal = sim.lock();
    if let Err(e) = portal.validate(&body.properties, None) {
        return input_error(&e);
    }
    let id = portal.create(body.properties, Source::Api);
    (
        StatusCode::CREATED,
        axum::Json(portal.to_object(id, None, None)),
    )
        .into_response()
}

async fn update_one(
    State(sim): State<HubSpotSim>,
    Path(id): Path<String>,
    Query(query): Query2,
    body: Bytes,
) -> Response {
    let body: PropertiesBody = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut portal = sim.lock();
    let found = match portal.resolve(&id, param(&query, "idProperty")) {
        Ok(Some(found)) => found,
        Ok(None) => return input_error(&InputError::not_found(&id)),
        Err(e) => return input_error(&e),
    };
    if let Err(e) = portal.validate(&body.properties, Some(found)) {
        return input_error(&e);
    }
    portal.write_unchecked(found, body.properties, Source::Api);
    axum::Json(portal.to_object(found, None, None)).into_response()
}

async fn archive_one(State(sim): State<HubSpotSim>, Path(id): Path<String>) -> Response {
    let mut portal = sim.lock();
    if let Ok(Some(found)) = portal.resolve(&id, None) {
        portal.archive(found, Source::Api);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn search(State(sim): State<HubSpotSim>, body: Bytes) -> Response {
    let request: SearchRequest = match parse_body(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let config = &sim.config;
    let limit = request.limit.unwrap_or(10);
    if limit > config.search_limit {
        return validation(format!(
            "limit must be less than or equal to {}",
            config.search_limit
        ));
    }
    let offset = match request.after.as_deref().map(|after| {
        let number = match config.search_after_opaque {
            true => after.strip_prefix(OPAQUE_AFTER).unwrap_or("-"),
            false => after,
        };
        number.parse::<u32>()
    }) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return validation("after is not a valid paging cursor"),
    };
    if offset >= config.search_cap {
        return validation(format!(
            "The search API can page through at most {} results; narrow the filters.",
            config.search_cap
        ));
    }
    let groups = &request.filter_groups;
    let filters: usize = groups.iter().map(|g| g.filters.len()).sum();
    // The limits since the 2024-08-26 change: 5 groups, 10 filters a group, 25 in all.
    if groups.len() > 5 || groups.iter().any(|g| g.filters.len() > 10) || filters > 25 {
        return validation(
            "Too many filters: at most 5 filter groups of 10 filters, 25 filters in all",
        );
    }
    if request.sorts.len() > 1 {
        return validation("Only one sort is supported");
    }
    if request.query.as_ref().is_some_and(|q| q.len() > 3000) {
        return validation("query must be at most 3000 characters");
    }
    let properties = if request.properties.is_empty() {
        DEFAULT_PROPERTIES.map(String::from).to_vec()
    } else {
        request.properties.clone()
    };
    let portal = sim.lock();
    let matches = match matching_ids(&portal, &request) {
        Ok(ids) => ids,
        Err(response) => return response,
    };
    let total = matches.len();
    let end = (offset as usize + limit as usize)
        .min(total)
        .min(config.search_cap as usize);
    let results: Vec<SimplePublicObject> = matches
        .get(offset as usize..end)
        .unwrap_or_default()
        .iter()
        // Search has no `propertiesWithHistory`: its request cannot ask for it.
        .map(|&id| portal.to_object(id, Some(&properties), None))
        .collect();
    let paging = (end < total).then(|| Paging {
        next: Some(NextPage {
            after: match config.search_after_opaque {
                true => format!("{OPAQUE_AFTER}{end}"),
                false => end.to_string(),
            },
            link: None,
        }),
    });
    axum::Json(CollectionResponse {
        total: Some(total as u64),
        results,
        paging,
    })
    .into_response()
}

/// How an opaque search cursor begins (`SimConfig::search_after_opaque`).
const OPAQUE_AFTER: &str = "Q1VSU09S";

/// Ids of live contacts matching the search, in its sort order.
fn matching_ids(portal: &Portal, request: &SearchRequest) -> Result<Vec<u64>, Response> {
    let mut ids = matching_ids_now(portal, request)?;
    if !portal.unindexed.is_empty() || portal.search_lag > 0 {
        ids.retain(|id| portal.searchable(*id));
    }
    Ok(ids)
}

/// Matching ids as if search were up to date.
fn matching_ids_now(portal: &Portal, request: &SearchRequest) -> Result<Vec<u64>, Response> {
    for filter in request.filter_groups.iter().flat_map(|g| &g.filters) {
        if !portal.schema.contains_key(&filter.property_name) {
            return Err(validation(format!(
                "There was a problem with the request: property {} does not exist",
                filter.property_name
            )));
        }
        if !OPERATORS.contains(&filter.operator.as_str()) {
            return Err(validation(format!("Unknown operator {}", filter.operator)));
        }
    }
    let sort = request.sorts.first();
    if let Some(sort) = sort
        && !portal.schema.contains_key(&sort.property_name)
    {
        return Err(validation(format!(
            "Cannot sort on unknown property {}",
            sort.property_name
        )));
    }
    let descending = sort.is_some_and(|s| s.direction.eq_ignore_ascii_case("DESCENDING"));
    let matches_request = |id: u64| {
        let contact = &portal.contacts[&id];
        let text = request.query.as_deref().map(str::to_lowercase);
        let query_ok = text.is_none_or(|q| {
            contact
                .properties
                .values()
                .any(|v| v.to_lowercase().contains(&q))
        });
        let groups_ok = request.filter_groups.is_empty()
            || request.filter_groups.iter().any(|g| {
                g.filters
                    .iter()
                    .all(|f| filter_matches(portal, f, contact.properties.get(&f.property_name)))
            });
        query_ok && groups_ok
    };
    // Changes searched by modification time are the common case: walk the index,
    // within the bounds of a single group's filters on it.
    if sort.is_some_and(|s| s.property_name == "lastmodifieddate") {
        let bounds = modified_bounds(portal, request);
        let (low, high) = bounds.map_or((i64::MIN, i64::MAX), |b| (b.low, b.high));
        if low > high {
            return Ok(Vec::new());
        }
        let range = portal.modified.range((low, 0)..=(high, u64::MAX));
        let walk: Box<dyn Iterator<Item = &(i64, u64)>> = if descending {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let exact = bounds.is_some_and(|b| b.exact);
        return Ok(walk
            .map(|(_, id)| *id)
            .filter(|&id| exact || matches_request(id))
            .collect());
    }
    let mut ids: Vec<u64> = portal
        .live_ids()
        .filter(|&id| matches_request(id))
        .collect();
    if let Some(sort) = sort {
        let key = |id: &u64| {
            portal.contacts[id]
                .properties
                .get(&sort.property_name)
                .map(|v| sortable(portal, &sort.property_name, v))
        };
        ids.sort_by(|a, b| {
            let order = key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal);
            if descending { order.reverse() } else { order }.then(a.cmp(b))
        });
    }
    Ok(ids)
}

/// Bounds on `lastmodifieddate` set by a search's only filter group; `exact`
/// when that group filters on nothing else (and there is no free-text query).
#[derive(Clone, Copy)]
struct Bounds {
    low: i64,
    high: i64,
    exact: bool,
}

fn modified_bounds(portal: &Portal, request: &SearchRequest) -> Option<Bounds> {
    let [group] = request.filter_groups.as_slice() else {
        return None;
    };
    let mut bounds = Bounds {
        low: i64::MIN,
        high: i64::MAX,
        exact: request.query.is_none(),
    };
    let millis =
        |value: &Option<String>| match sortable(portal, "lastmodifieddate", value.as_deref()?) {
            Sortable::Number(n) if n.is_finite() => Some(n as i64),
            _ => None,
        };
    for filter in &group.filters {
        if filter.property_name != "lastmodifieddate" {
            bounds.exact = false;
            continue;
        }
        match (filter.operator.as_str(), millis(&filter.value)) {
            ("GTE", Some(v)) => bounds.low = bounds.low.max(v),
            ("GT", Some(v)) => bounds.low = bounds.low.max(v + 1),
            ("LTE", Some(v)) => bounds.high = bounds.high.min(v),
            ("LT", Some(v)) => bounds.high = bounds.high.min(v - 1),
            ("EQ", Some(v)) => {
                bounds.low = bounds.low.max(v);
                bounds.high = bounds.high.min(v);
            }
            ("BETWEEN", Some(v)) => {
                bounds.low = bounds.low.max(v);
                match millis(&filter.high_value) {
                    Some(high) => bounds.high = bounds.high.min(high),
                    None => bounds.exact = false,
                }
            }
            _ => bounds.exact = false,
        }
    }
    Some(bounds)
}

const OPERATORS: [&str; 13] = [
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];

/// A value as it compares: dates and numbers as numbers, text case-insensitively.
#[derive(PartialEq, PartialOrd)]
enum Sortable {
    Number(f64),
    Text(String),
}

fn sortable(portal: &Portal, property: &str, value: &str) -> Sortable {
    let kind = portal
        .schema
        .get(property)
        .map(|d| d.kind.as_str())
        .unwrap_or("string");
    match kind {
        "datetime" | "date" => Sortable::Number(
            value
                .parse::<f64>()
                .ok()
                .or_else(|| parse_rfc3339(value).map(|ms| ms as f64))
                .unwrap_or(f64::NAN),
        ),
        "number" => Sortable::Number(value.parse().unwrap_or(f64::NAN)),
        _ => Sortable::Text(value.to_lowercase()),
    }
}

fn filter_matches(portal: &Portal, filter: &Filter, actual: Option<&String>) -> bool {
    let name = &filter.property_name;
    let cmp = |wanted: &Option<String>| -> Option<std::cmp::Ordering> {
        let actual = sortable(portal, name, actual?);
        actual.partial_cmp(&sortable(portal, name, wanted.as_deref()?))
    };
    use std::cmp::Ordering::*;
    match filter.operator.as_str() {
        "HAS_PROPERTY" => actual.is_some(),
        "NOT_HAS_PROPERTY" => actual.is_none(),
        "EQ" => cmp(&filter.value) == Some(Equal),
        "NEQ" => cmp(&filter.value) != Some(Equal),
        "LT" => cmp(&filter.value) == Some(Less),
        "LTE" => matches!(cmp(&filter.value), Some(Less | Equal)),
        "GT" => cmp(&filter.value) == Some(Greater),
        "GTE" => matches!(cmp(&filter.value), Some(Greater | Equal)),
        "BETWEEN" => {
            matches!(cmp(&filter.value), Some(Greater | Equal))
                && matches!(cmp(&filter.high_value), Some(Less | Equal))
        }
        "IN" | "NOT_IN" => {
            let found = filter
                .values
                .iter()
                .flatten()
                .any(|v| cmp(&Some(v.clone())) == Some(Equal));
            found == (filter.operator == "IN")
        }
        "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => {
            let token = filter
                .value
                .as_deref()
                .unwrap_or_default()
                .trim_matches('*')
                .to_lowercase();
            let found = actual.is_some_and(|v| {
                v.to_lowercase()
                    .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
                    .any(|w| w.contains(&token))
            });
            found == (filter.operator == "CONTAINS_TOKEN")
        }
        _ => false,
    }
}

async fn batch(
    State(sim): State<HubSpotSim>,
    Path(action): Path<String>,
    Query(query): Query2,
    body: Bytes,
) -> Response {
    let started = format_millis_z(now_millis());
    let count = match parse_body::<BatchInputs<Value>>(&body) {
        Ok(inputs) => inputs.inputs.len(),
        Err(response) => return response,
    };
    if count > sim.config.batch_limit {
        return validation(format!(
            "The maximum number of inputs supported in a batch request is {}; got {count}",
            sim.config.batch_limit
        ));
    }
    match action.as_str() {
        "read" => match parse_body::<BatchReadRequest>(&body) {
            Ok(request)
                if !request.properties_with_history.is_empty()
                    && count > sim.config.history_batch_limit =>
            {
                validation(format!(
                    "The maximum number of inputs supported in a batch request for property histories is {}",
                    sim.config.history_batch_limit
                ))
            }
            Ok(request) => batch_read(
                &sim,
                request,
                param(&query, "archived") == Some("true"),
                started,
            ),
            Err(response) => response,
        },
        "archive" => match parse_body::<BatchInputs<BatchId>>(&body) {
            Ok(request) => {
                let mut portal = sim.lock();
                for input in request.inputs {
                    if let Ok(Some(id)) = portal.resolve(&input.id, None) {
                        portal.archive(id, Source::Api);
                    }
                }
                StatusCode::NO_CONTENT.into_response()
            }
            Err(response) => response,
        },
        "create" | "update" | "upsert" => match parse_body::<BatchInputs<BatchWriteInput>>(&body) {
            Ok(request) => batch_write(&sim, &action, request.inputs, started),
            Err(response) => response,
        },
        _ => error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            format!("Unknown batch action {action}"),
        ),
    }
}

/// Read contacts by id or unique property: live ones, or with `archived=true` archived ones.
fn batch_read(
    sim: &HubSpotSim,
    request: BatchReadRequest,
    archived: bool,
    started: String,
) -> Response {
    let properties = if request.properties.is_empty() {
        DEFAULT_PROPERTIES.map(String::from).to_vec()
    } else {
        request.properties
    };
    let history = requested_history(request.properties_with_history);
    let portal = sim.lock();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in &request.inputs {
        let found = if archived {
            Ok(input.id.parse::<u64>().ok().filter(|id| {
                portal
                    .contacts
                    .get(id)
                    .is_some_and(|c| c.archived.is_some())
            }))
        } else {
            portal.resolve(&input.id, request.id_property.as_deref())
        };
        match found {
            Ok(Some(id)) => {
                results.push(portal.to_object(id, Some(&properties), history.as_deref()))
            }
            Ok(None) => missing.push(input.id.clone()),
            Err(e) => return input_error(&e),
        }
    }
    let errors = if missing.is_empty() {
        vec![]
    } else {
        vec![StandardError {
            status: "error".into(),
            category: "OBJECT_NOT_FOUND".into(),
            message: "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.".into(),
            context: BTreeMap::from([("ids".to_string(), missing)]),
            errors: vec![],
        }]
    };
    batch_response(StatusCode::OK, results, errors, started)
}

fn batch_response(
    success: StatusCode,
    results: Vec<SimplePublicObject>,
    errors: Vec<StandardError>,
    started: String,
) -> Response {
    let status = if errors.is_empty() {
        success
    } else {
        StatusCode::MULTI_STATUS
    };
    let body = BatchResponse {
        status: "COMPLETE".into(),
        results,
        num_errors: (!errors.is_empty()).then_some(errors.len() as u32),
        errors,
        started_at: Some(started),
        completed_at: Some(format_millis_z(now_millis())),
    };
    (status, axum::Json(body)).into_response()
}

/// Create, update or upsert. Inputs that fail are answered one by one in a 207
/// when every one of them carries an `objectWriteTraceId`; otherwise the first
/// failure fails the whole batch and nothing is written, as HubSpot does.
fn batch_write(
    sim: &HubSpotSim,
    action: &str,
    inputs: Vec<BatchWriteInput>,
    started: String,
) -> Response {
    let mut portal = sim.lock();
    // Resolve and validate every input before writing any.
    let mut planned: Vec<Result<Option<u64>, InputError>> = Vec::with_capacity(inputs.len());
    let mut emails_in_batch = HashSet::new();
    for input in &inputs {
        let target = match action {
            "create" => Ok(None),
            _ => {
                let id = input.id.clone().unwrap_or_default();
                let id_property = input.id_property.as_deref();
                match portal.resolve(&id, id_property) {
                    Ok(Some(found)) => Ok(Some(found)),
                    Ok(None) if action == "upsert" && id_property == Some("email") => Ok(None),
                    Ok(None) if action == "upsert" => Err(InputError {
                        status: 400,
                        category: "VALIDATION_ERROR",
                        message: "Upsert needs a unique idProperty, such as email".into(),
                        code: "INVALID_ID_PROPERTY",
                        property: None,
                    }),
                    Ok(None) => Err(InputError::not_found(&id)),
                    Err(e) => Err(e),
                }
            }
        };
        let checked = target.and_then(|target| {
            let mut values = input.properties.clone();
            if action == "upsert" && target.is_none() {
                values.insert("email".into(), input.id.clone().unwrap_or_default());
            }
            portal.validate(&values, target)?;
            if let Some(email) = values.get("email").map(|e| e.trim().to_lowercase())
                && !emails_in_batch.insert(email.clone())
            {
                return Err(InputError {
                    status: 400,
                    category: "VALIDATION_ERROR",
                    message: format!("Duplicate email {email} in one batch"),
                    code: "DUPLICATE",
                    property: Some("email".into()),
                });
            }
            Ok(target)
        });
        planned.push(checked);
    }
    let all_traced = inputs.iter().all(|i| i.object_write_trace_id.is_some());
    if !all_traced && let Some(Err(first)) = planned.iter().find(|p| p.is_err()) {
        return input_error(first);
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (input, plan) in inputs.into_iter().zip(planned) {
        match plan {
            Err(e) => errors.push(StandardError {
                status: "error".into(),
                category: e.category.into(),
                message: e.message,
                context: BTreeMap::from([(
                    "objectWriteTraceId".to_string(),
                    vec![input.object_write_trace_id.unwrap_or_default()],
                )]),
                errors: vec![],
            }),
            Ok(target) => {
                let mut written: Vec<String> = input.properties.keys().cloned().collect();
                written
                    .extend(["createdate", "lastmodifieddate", "hs_object_id"].map(String::from));
                let (id, new) = match target {
                    Some(id) => {
                        portal.write_unchecked(id, input.properties, Source::Api);
                        (id, false)
                    }
                    None => {
                        let mut values = input.properties;
                        if action == "upsert" {
                            values.insert("email".into(), input.id.unwrap_or_default());
                            written.push("email".into());
                        }
                        (portal.create(values, Source::Api), true)
                    }
                };
                let mut object = portal.to_object(id, Some(&written), None);
                object.new = (action == "upsert").then_some(new);
                object.object_write_trace_id = input.object_write_trace_id;
                results.push(object);
            }
        }
    }
    let success = if action == "create" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    batch_response(success, results, errors, started)
}
