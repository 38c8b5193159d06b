//! HTTP handlers of the Mailchimp simulator: routing under `/3.0`, auth,
//! request parsing, `fields`/`exclude_fields`, `problem+json` errors, and the
//! request journal tests can read. The audience's rules live in `state`.

use std::collections::{BTreeMap, HashSet};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tandem_core::clock::parse_rfc3339;

use super::state::{Rejection, STATUSES};
use super::{MailchimpSim, SimRequest};
use crate::model::{
    BatchError, BatchSubscribe, BatchSubscribeResponse, FieldError, Problem, TagChanges,
};
use crate::subscriber_hash;

type Params = Query<Vec<(String, String)>>;

pub fn router(sim: MailchimpSim) -> Router {
    let api = Router::new()
        .route(
            "/ping",
            get(|| async { axum::Json(json!({ "health_status": "Everything's Chimpy!" })) }),
        )
        .route("/lists/{list_id}", get(list_info).post(batch_subscribe))
        .route("/lists/{list_id}/merge-fields", get(merge_fields))
        .route(
            "/lists/{list_id}/members",
            get(list_members).post(create_member),
        )
        .route(
            "/lists/{list_id}/members/{hash}/actions/delete-permanent",
            axum::routing::post(delete_permanently),
        )
        .route(
            "/lists/{list_id}/members/{hash}/tags",
            get(member_tags).post(change_member_tags),
        )
        .route(
            "/lists/{list_id}/members/{hash}",
            get(read_member)
                .put(put_member)
                .patch(patch_member)
                .delete(archive_member),
        )
        .fallback(|| async { problem(&Rejection::not_found()) })
        .layer(middleware::from_fn_with_state(sim.clone(), journal))
        .layer(middleware::from_fn_with_state(sim.clone(), lose_answers))
        .layer(middleware::from_fn_with_state(sim.clone(), refuse_writes))
        .layer(middleware::from_fn_with_state(sim.clone(), faults))
        .layer(middleware::from_fn_with_state(
            sim.clone(),
            limit_connections,
        ))
        .layer(middleware::from_fn_with_state(sim.clone(), authenticate))
        .layer(middleware::from_fn_with_state(sim.clone(), stamp_date))
        .with_state(sim);
    Router::new()
        .nest("/3.0", api)
        .fallback(|| async { problem(&Rejection::not_found()) })
}

fn problem(rejection: &Rejection) -> Response {
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = Problem {
        kind: "https://mailchimp.com/developer/marketing/docs/errors/".into(),
        title: rejection.title.into(),
        status: rejection.status,
        detail: rejection.detail.clone(),
        instance: uuid::Uuid::new_v4().to_string(),
        errors: rejection.errors.clone(),
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json; charset=utf-8"),
    );
    response
}

fn reject(status: u16, title: &'static str, detail: impl Into<String>) -> Response {
    problem(&Rejection {
        status,
        title,
        detail: detail.into(),
        errors: vec![],
    })
}

/// Set `Date` from the simulator's clock, which tests can move forward.
async fn stamp_date(State(sim): State<MailchimpSim>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let now = tandem_core::clock::now_millis() + sim.lock().clock_offset;
    if let Ok(value) = tandem_core::clock::format_http_date(now).parse() {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

/// Keep a copy of each request once a test asked for them; the body is read
/// whole and handed on unchanged.
async fn journal(State(sim): State<MailchimpSim>, request: Request, next: Next) -> Response {
    if sim.lock().journal.is_none() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return reject(400, "Bad Request", "The request body could not be read.");
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
async fn lose_answers(State(sim): State<MailchimpSim>, request: Request, next: Next) -> Response {
    let writes = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if writes && response.status().is_success() {
        let mut state = sim.lock();
        if state.lost_answers > 0 {
            state.lost_answers -= 1;
            drop(state);
            return reject(
                500,
                "Internal Server Error",
                "An unexpected internal error has occurred.",
            );
        }
    }
    response
}

/// The fault a test asked for: a write is refused with a 503 before it is applied,
/// as by an API that is briefly down.
async fn refuse_writes(State(sim): State<MailchimpSim>, request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::GET {
        let mut state = sim.lock();
        if state.refused_writes > 0 {
            state.refused_writes -= 1;
            drop(state);
            return reject(
                503,
                "Service Unavailable",
                "The service is temporarily unavailable.",
            );
        }
    }
    next.run(request).await
}

/// Mailchimp's limit: simultaneous connections per user. One over it is refused
/// with a 429 (or, if configured, the bodiless 403 seen at very high volumes).
async fn limit_connections(
    State(sim): State<MailchimpSim>,
    request: Request,
    next: Next,
) -> Response {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Counts a request in flight until it is answered or its client goes away.
    struct InFlight(std::sync::Arc<AtomicUsize>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let in_flight = sim.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(sim.in_flight.clone());
    if sim
        .config
        .max_connections
        .is_some_and(|max| in_flight > max)
    {
        sim.lock().stats.throttled += 1;
        return too_many(&sim);
    }
    if !sim.config.latency.is_zero() {
        tokio::time::sleep(sim.config.latency).await;
    }
    next.run(request).await
}

/// Mailchimp's throttling answer: a 429 problem (Mailchimp sends no
/// `Retry-After`), or, if configured, the bodiless 403 seen at very high volumes.
fn too_many(sim: &MailchimpSim) -> Response {
    if sim.config.refuse_with_403 {
        return StatusCode::FORBIDDEN.into_response();
    }
    reject(
        429,
        "TooManyRequests",
        "You have exceeded the limit of 10 simultaneous connections.",
    )
}

/// The faults a test set on the API (see [`tandem_core::sim::ApiFaults`]).
async fn faults(State(sim): State<MailchimpSim>, request: Request, next: Next) -> Response {
    sim.faults
        .serve(
            request,
            next,
            |_| too_many(&sim),
            |status| {
                reject(
                    status,
                    "Internal Server Error",
                    "An unexpected internal error has occurred.",
                )
            },
        )
        .await
}

async fn authenticate(State(sim): State<MailchimpSim>, request: Request, next: Next) -> Response {
    sim.lock().stats.requests += 1;
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let key = if let Some(encoded) = header.strip_prefix("Basic ") {
        decode_basic(encoded.trim())
            .and_then(|pair| pair.split_once(':').map(|(_, key)| key.to_string()))
    } else {
        header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("OAuth "))
            .map(|k| k.trim().to_string())
    };
    match key {
        None => reject(
            401,
            "API Key Missing",
            "Your request did not include an API key.",
        ),
        Some(key) if key != sim.config.api_key => reject(
            401,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        ),
        Some(_) => next.run(request).await,
    }
}

/// The `user:password` of HTTP Basic credentials.
fn decode_basic(encoded: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            reject(
                400,
                "Invalid Resource",
                format!("The resource submitted could not be validated: {e}"),
            )
        } else {
            reject(
                400,
                "JSON Parse Exception",
                "We encountered an unspecified JSON parsing error.",
            )
        }
    })
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `count` (default 10, at most `max`) and `offset` (default 0) of a collection.
fn count_and_offset(params: &[(String, String)], max: u32) -> Result<(usize, usize), Response> {
    let number = |name: &str, default: u32| -> Result<u32, Response> {
        match param(params, name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                reject(
                    400,
                    "Invalid Resource",
                    format!("{name} must be a non-negative integer"),
                )
            }),
        }
    };
    let (count, offset) = (number("count", 10)?, number("offset", 0)?);
    if count > max {
        return Err(reject(
            400,
            "Invalid Resource",
            format!("count must be at most {max}"),
        ));
    }
    Ok((count as usize, offset as usize))
}

fn check_list(sim: &MailchimpSim, list_id: &str) -> Result<(), Response> {
    if list_id == sim.config.list_id {
        Ok(())
    } else {
        Err(problem(&Rejection::not_found()))
    }
}

/// Apply `fields` or `exclude_fields` (comma-separated dot paths) to a response body.
fn select(mut body: Value, params: &[(String, String)]) -> Result<Value, Response> {
    let split = |v: &str| {
        v.split(',')
            .map(|p| p.trim().split('.').map(String::from).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    match (param(params, "fields"), param(params, "exclude_fields")) {
        (Some(_), Some(_)) => Err(reject(
            400,
            "Invalid Resource",
            "fields and exclude_fields cannot be used together",
        )),
        (Some(fields), None) => Ok(keep(&body, &split(fields))),
        (None, Some(excluded)) => {
            for path in split(excluded) {
                drop_path(&mut body, &path);
            }
            Ok(body)
        }
        (None, None) => Ok(body),
    }
}

fn keep(value: &Value, paths: &[Vec<String>]) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|item| keep(item, paths)).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for (name, inner) in map {
                let below: Vec<Vec<String>> = paths
                    .iter()
                    .filter(|p| p.first() == Some(name))
                    .map(|p| p[1..].to_vec())
                    .collect();
                if below.iter().any(Vec::is_empty) {
                    out.insert(name.clone(), inner.clone());
                } else if !below.is_empty() {
                    out.insert(name.clone(), keep(inner, &below));
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn drop_path(value: &mut Value, path: &[String]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| drop_path(item, path)),
        Value::Object(map) => match path {
            [] => {}
            [last] => {
                map.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(inner) = map.get_mut(first) {
                    drop_path(inner, rest);
                }
            }
        },
        _ => {}
    }
}

async fn list_info(
    State(sim): State<MailchimpSim>,
    Path(list_id): Path<String>,
    Query(params): Params,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let members = sim
        .lock()
        .by_change()
        .filter(|m| m.status != "archived")
        .count();
    let body = json!({
        "id": list_id, "web_id": 1, "name": "tandem simulator audience",
        "stats": { "member_count": members }, "_links": [],
    });
    match select(body, &params) {
        Ok(body) => axum::Json(body).into_response(),
        Err(response) => response,
    }
}

async fn merge_fields(State(sim): State<MailchimpSim>, Path(list_id): Path<String>) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let state = sim.lock();
    let fields: Vec<Value> = state
        .merge_defs
        .iter()
        .enumerate()
        .map(|(i, d)| json!({ "merge_id": i + 1, "tag": d.tag, "name": d.name, "type": d.kind, "required": d.required, "list_id": list_id }))
        .collect();
    axum::Json(json!({ "merge_fields": fields, "list_id": list_id, "total_items": fields.len() }))
        .into_response()
}

async fn list_members(
    State(sim): State<MailchimpSim>,
    Path(list_id): Path<String>,
    Query(params): Params,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let (count, offset) = match count_and_offset(&params, sim.config.max_count) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let time = |name: &str| -> Result<Option<i64>, Response> {
        match param(&params, name) {
            None => Ok(None),
            Some(text) => parse_rfc3339(text).map(Some).ok_or_else(|| {
                reject(
                    400,
                    "Invalid Resource",
                    format!("{name} must be an ISO 8601 time, got {text:?}"),
                )
            }),
        }
    };
    let (since, before) = match (time("since_last_changed"), time("before_last_changed")) {
        (Ok(since), Ok(before)) => (since, before),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let status = param(&params, "status");
    if let Some(status) = status.filter(|s| !STATUSES.contains(s) && *s != "archived") {
        return reject(
            400,
            "Invalid Resource",
            format!(
                "status {status:?} is not one of {}, archived",
                STATUSES.join(", ")
            ),
        );
    }
    let descending = match param(&params, "sort_dir") {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(other) => {
            return reject(
                400,
                "Invalid Resource",
                format!("sort_dir must be ASC or DESC, got {other:?}"),
            );
        }
    };
    if let Some(field) = param(&params, "sort_field")
        .filter(|f| !["timestamp_opt", "timestamp_signup", "last_changed"].contains(f))
    {
        return reject(
            400,
            "Invalid Resource",
            format!("sort_field {field:?} is not supported"),
        );
    }
    let inclusive = sim.config.since_inclusive;
    let state = sim.lock();
    // `last_changed` is shown at second precision; filters compare at that precision.
    let second = |ms: i64| ms.div_euclid(1000);
    let matches = |m: &&super::state::Stored| {
        let changed = second(m.changed);
        let status_ok = match status {
            Some(wanted) => m.status == wanted,
            None => m.status != "archived",
        };
        let since_ok = since.is_none_or(|s| {
            if inclusive {
                changed >= second(s)
            } else {
                changed > second(s)
            }
        });
        let before_ok = before.is_none_or(|b| changed < second(b));
        status_ok && since_ok && before_ok
    };
    let mut selected: Vec<&super::state::Stored> = if descending {
        state.by_change().rev().filter(matches).collect()
    } else {
        state.by_change().filter(matches).collect()
    };
    // The simulator keeps one sign-up time, shown as both `timestamp_signup` and `timestamp_opt`.
    if matches!(
        param(&params, "sort_field"),
        Some("timestamp_opt" | "timestamp_signup")
    ) {
        selected.sort_by_key(|m| m.signed_up);
        if descending {
            selected.reverse();
        }
    }
    let members: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(count)
        .map(|m| serde_json::to_value(state.render(m)).expect("members serialize"))
        .collect();
    let body = json!({ "members": members, "list_id": list_id, "total_items": selected.len(), "_links": [] });
    match select(body, &params) {
        Ok(body) => axum::Json(body).into_response(),
        Err(response) => response,
    }
}

async fn read_member(
    State(sim): State<MailchimpSim>,
    Path((list_id, hash)): Path<(String, String)>,
    Query(params): Params,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let state = sim.lock();
    match state.get(&hash) {
        Some(member) => match select(
            serde_json::to_value(state.render(member)).expect("members serialize"),
            &params,
        ) {
            Ok(body) => axum::Json(body).into_response(),
            Err(response) => response,
        },
        None => problem(&Rejection::not_found()),
    }
}

/// Body of POST, PUT and PATCH on a member.
#[derive(Deserialize)]
struct MemberBody {
    email_address: Option<String>,
    status: Option<String>,
    status_if_new: Option<String>,
    #[serde(default)]
    merge_fields: BTreeMap<String, Value>,
    /// Tags for a new member; an existing member's tags change only through the tags endpoint.
    #[serde(default)]
    tags: Vec<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// Tag names as changes that add them.
fn adding(tags: &[String]) -> Vec<(String, bool)> {
    tags.iter().map(|name| (name.clone(), true)).collect()
}

fn skip_merge_validation(params: &[(String, String)]) -> bool {
    param(params, "skip_merge_validation") == Some("true")
}

async fn create_member(
    State(sim): State<MailchimpSim>,
    Path(list_id): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let body: MemberBody = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (Some(email), Some(status)) = (body.email_address.as_deref(), body.status.as_deref())
    else {
        return problem(&Rejection::invalid(
            "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
            vec![FieldError {
                field: "email_address, status".into(),
                message: "Both are required.".into(),
            }],
        ));
    };
    let mut state = sim.lock();
    let archived = state
        .hash_of(email)
        .filter(|h| state.get(h).is_some_and(|m| m.status == "archived"));
    if archived.is_none() && state.get(email).is_some() {
        return reject(
            400,
            "Member Exists",
            format!("{email} is already a list member. Use PUT to insert or update list members."),
        );
    }
    if let Err(rejection) = state.validate(
        Some(email),
        Some(status),
        &body.merge_fields,
        true,
        skip_merge_validation(&params),
    ) {
        return problem(&rejection);
    }
    // An archived member is re-added, keeping its history.
    let hash = match archived {
        Some(hash) => state.update_with(
            &hash,
            None,
            Some(status),
            body.merge_fields,
            &body.extra,
            &adding(&body.tags),
        ),
        None => state.create(email, status, body.merge_fields, &body.extra, &body.tags),
    };
    let member = state.render(state.get(&hash).expect("just created"));
    axum::Json(member).into_response()
}

async fn put_member(
    State(sim): State<MailchimpSim>,
    Path((list_id, hash)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let body: MemberBody = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = sim.lock();
    let existing = state.hash_of(&hash);
    let Some(email) = body.email_address.clone() else {
        return problem(&Rejection::invalid(
            "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
            vec![FieldError {
                field: "email_address".into(),
                message: "This value should not be blank.".into(),
            }],
        ));
    };
    let skip = skip_merge_validation(&params);
    let new_status = body.status.as_deref().or(body.status_if_new.as_deref());
    let result = match &existing {
        Some(current) if subscriber_hash(&email) != *current && state.get(&email).is_some() => {
            return reject(
                400,
                "Member Exists",
                format!("{email} is already a list member."),
            );
        }
        Some(current) => state
            .validate(
                Some(&email),
                body.status.as_deref(),
                &body.merge_fields,
                false,
                skip,
            )
            .map(|()| {
                state.update_with(
                    current,
                    Some(&email),
                    body.status.as_deref(),
                    body.merge_fields,
                    &body.extra,
                    &[],
                )
            }),
        None => {
            if subscriber_hash(&email) != hash && state.get(&hash).is_none() && hash != email {
                Err(Rejection::invalid(
                    "The subscriber hash does not match the email address.",
                    vec![],
                ))
            } else if let Some(status) = new_status {
                state
                    .validate(Some(&email), Some(status), &body.merge_fields, true, skip)
                    .map(|()| {
                        state.create(&email, status, body.merge_fields, &body.extra, &body.tags)
                    })
            } else {
                Err(Rejection::invalid(
                    "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
                    vec![FieldError {
                        field: "status_if_new".into(),
                        message: "status_if_new is required for new members".into(),
                    }],
                ))
            }
        }
    };
    match result {
        Ok(hash) => {
            axum::Json(state.render(state.get(&hash).expect("just written"))).into_response()
        }
        Err(rejection) => problem(&rejection),
    }
}

async fn patch_member(
    State(sim): State<MailchimpSim>,
    Path((list_id, hash)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let body: MemberBody = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = sim.lock();
    let Some(current) = state.hash_of(&hash) else {
        return problem(&Rejection::not_found());
    };
    if let Some(email) = &body.email_address
        && state
            .get(email)
            .is_some_and(|other| subscriber_hash(&other.email) != current)
    {
        return reject(
            400,
            "Member Exists",
            format!("{email} is already a list member."),
        );
    }
    if let Err(rejection) = state.validate(
        body.email_address.as_deref(),
        body.status.as_deref(),
        &body.merge_fields,
        false,
        skip_merge_validation(&params),
    ) {
        return problem(&rejection);
    }
    let hash = state.update_with(
        &current,
        body.email_address.as_deref(),
        body.status.as_deref(),
        body.merge_fields,
        &body.extra,
        &[],
    );
    axum::Json(state.render(state.get(&hash).expect("just written"))).into_response()
}

/// `GET …/members/{hash}/tags`: the member's tags with ids and the dates they
/// were added, paged with `count` and `offset`.
async fn member_tags(
    State(sim): State<MailchimpSim>,
    Path((list_id, hash)): Path<(String, String)>,
    Query(params): Params,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let (count, offset) = match count_and_offset(&params, 1000) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let state = sim.lock();
    let Some(member) = state.get(&hash) else {
        return problem(&Rejection::not_found());
    };
    let tags: Vec<Value> = member
        .tags
        .iter()
        .skip(offset)
        .take(count)
        .map(|tag| {
            json!({
                "id": tag.id,
                "name": tag.name,
                "date_added": tandem_core::clock::format_seconds_offset(tag.added),
            })
        })
        .collect();
    let body = json!({ "tags": tags, "total_items": member.tags.len(), "_links": [] });
    match select(body, &params) {
        Ok(body) => axum::Json(body).into_response(),
        Err(response) => response,
    }
}

/// `POST …/members/{hash}/tags`: add (`active`) and remove (`inactive`) tags,
/// creating unknown active tags; 204 with no body.
async fn change_member_tags(
    State(sim): State<MailchimpSim>,
    Path((list_id, hash)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let body: TagChanges = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut errors = Vec::new();
    for (index, tag) in body.tags.iter().enumerate() {
        if !matches!(tag.status.as_str(), "active" | "inactive") {
            errors.push(FieldError {
                field: format!("tags.{index}.status"),
                message: format!(
                    "Status must be one of: active, inactive; got {:?}",
                    tag.status
                ),
            });
        }
        if tag.name.trim().is_empty() {
            errors.push(FieldError {
                field: format!("tags.{index}.name"),
                message: "This value should not be blank.".into(),
            });
        }
    }
    if !errors.is_empty() {
        return problem(&Rejection::invalid(
            "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
            errors,
        ));
    }
    let mut state = sim.lock();
    let Some(found) = state.hash_of(&hash) else {
        return problem(&Rejection::not_found());
    };
    let changes: Vec<(String, bool)> = body
        .tags
        .into_iter()
        .map(|tag| (tag.name, tag.status == "active"))
        .collect();
    state.change_tags(&found, &changes);
    StatusCode::NO_CONTENT.into_response()
}

async fn archive_member(
    State(sim): State<MailchimpSim>,
    Path((list_id, hash)): Path<(String, String)>,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let mut state = sim.lock();
    match state.hash_of(&hash) {
        Some(found) => {
            state.archive(&found);
            StatusCode::NO_CONTENT.into_response()
        }
        None => problem(&Rejection::not_found()),
    }
}

/// Erase a member and everything known of it; the address can never be imported again.
async fn delete_permanently(
    State(sim): State<MailchimpSim>,
    Path((list_id, hash)): Path<(String, String)>,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let mut state = sim.lock();
    match state.hash_of(&hash) {
        Some(found) => {
            state.erase(&found);
            StatusCode::NO_CONTENT.into_response()
        }
        None => problem(&Rejection::not_found()),
    }
}

async fn batch_subscribe(
    State(sim): State<MailchimpSim>,
    Path(list_id): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Response {
    if let Err(response) = check_list(&sim, &list_id) {
        return response;
    }
    let request: BatchSubscribe = match parse_body(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if request.members.len() > sim.config.batch_limit {
        return problem(&Rejection::invalid(
            format!(
                "You can subscribe at most {} members in one call; got {}.",
                sim.config.batch_limit,
                request.members.len()
            ),
            vec![FieldError {
                field: "members".into(),
                message: format!("at most {} items", sim.config.batch_limit),
            }],
        ));
    }
    let skip = skip_merge_validation(&params);
    let status_if_new = sim.config.batch_status_if_new;
    let contact_id = sim.config.batch_answers_contact_id;
    let mut state = sim.lock();
    let mut answer = BatchSubscribeResponse {
        new_members: vec![],
        updated_members: vec![],
        errors: vec![],
        total_created: 0,
        total_updated: 0,
        error_count: 0,
    };
    let mut seen = HashSet::new();
    for member in request.members {
        let email = member.email_address.clone();
        let fail = |error: String, code: &str, field: Option<(String, String)>| BatchError {
            email_address: email.clone(),
            error,
            error_code: code.into(),
            field: field.as_ref().map(|f| f.0.clone()),
            field_message: field.map(|f| f.1),
        };
        if !seen.insert(email.trim().to_lowercase()) {
            answer.errors.push(fail(
                format!("{email} is listed twice in this request"),
                "ERROR_GENERIC",
                None,
            ));
            continue;
        }
        let existing = state.hash_of(&email);
        let outcome = match (&existing, request.update_existing) {
            (Some(_), false) => Err(fail(
                format!(
                    "{email} is already a list member, do you want to update? please provide update_existing:true in the request body"
                ),
                "ERROR_CONTACT_EXISTS",
                None,
            )),
            (Some(hash), true) => state
                .validate(
                    Some(&email),
                    member.status.as_deref(),
                    &member.merge_fields,
                    false,
                    skip,
                )
                .map(|()| {
                    // `sync_tags` makes the given tags the member's only ones; otherwise they are added.
                    let tags = if request.sync_tags == Some(true) {
                        state.replacing_tags(hash, &member.tags)
                    } else {
                        adding(&member.tags)
                    };
                    (
                        state.update_with(
                            hash,
                            None,
                            member.status.as_deref(),
                            member.merge_fields,
                            &member.extra,
                            &tags,
                        ),
                        false,
                    )
                })
                .map_err(|r| batch_failure(&email, r)),
            (None, _) => match member
                .status
                .as_deref()
                .or(member.status_if_new.as_deref().filter(|_| status_if_new))
            {
                None => Err(fail(
                    "Status is required for new members.".into(),
                    "ERROR_GENERIC",
                    Some(("status".into(), "required".into())),
                )),
                Some(status) => state
                    .validate(Some(&email), Some(status), &member.merge_fields, true, skip)
                    .map(|()| {
                        (
                            state.create(
                                &email,
                                status,
                                member.merge_fields,
                                &member.extra,
                                &member.tags,
                            ),
                            true,
                        )
                    })
                    .map_err(|r| batch_failure(&email, r)),
            },
        };
        match outcome {
            Ok((hash, created)) => {
                let mut rendered = state.render(state.get(&hash).expect("just written"));
                if !contact_id {
                    rendered.extra.remove("contact_id");
                }
                if created {
                    answer.new_members.push(rendered);
                } else {
                    answer.updated_members.push(rendered);
                }
            }
            Err(error) => answer.errors.push(error),
        }
    }
    answer.total_created = answer.new_members.len() as u64;
    answer.total_updated = answer.updated_members.len() as u64;
    answer.error_count = answer.errors.len() as u64;
    axum::Json(answer).into_response()
}

fn batch_failure(email: &str, rejection: Rejection) -> BatchError {
    let first = rejection.errors.first();
    BatchError {
        email_address: email.to_string(),
        error: rejection.detail.clone(),
        error_code: "ERROR_GENERIC".into(),
        field: first.map(|e| e.field.clone()),
        field_message: first.map(|e| e.message.clone()),
    }
}
