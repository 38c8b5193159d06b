//! The web page for people, server-rendered from templates compiled into the
//! binary (askama; `templates/`), with one small script for keyboard use and
//! one stylesheet (`assets/`). Every page works without the script.
//!
//! It does what the JSON API does, through the same functions: a conflict
//! queue with the differences highlighted, a conflict's detail and its
//! resolution, bulk resolution, dead letters, the audit log, a health page,
//! and for admins a policy editor that checks, previews and saves. A form that
//! changes something carries the session's CSRF token in a hidden `csrf`
//! field; a page asked for without a session sends the browser to sign in.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::{CookieJar, Form};
use serde_json::Value;

use super::App;
use super::api::{self, Validated};
use super::auth::{self, Person, Role};
use super::error::{ApiError, Problem};
use crate::people::{self, BulkOutcome};
use crate::store::{AuditEntry, AuditFilter, Choice, ConflictFilter, ConflictRow, DeadLetter};

/// The page's routes.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/conflicts") }))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/conflicts", get(queue))
        .route("/conflicts/resolve", post(resolve_many))
        .route("/conflicts/{id}", get(detail))
        .route("/conflicts/{id}/resolve", post(resolve_one))
        .route("/deadletters", get(dead_letters))
        .route("/deadletters/{id}/{action}", post(settle_dead_letter))
        .route("/audit", get(audit))
        .route("/health", get(health))
        .route("/policies", get(policies))
        .route("/policies/{pair}", get(policy_page).post(policy_action))
        .route("/assets/tandem.css", get(stylesheet))
        .route("/assets/tandem.js", get(script))
        .layer(axum::middleware::map_response(page_headers))
}

/// Scripts and styles only from this origin, no framing, no caching of pages.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/tandem.css"),
    )
}

async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/tandem.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
}

/// Why a page was not served: no session (sign in first), or a refusal.
pub enum WebError {
    /// Not signed in: go to the sign-in page, then back to this path.
    SignIn(String),
    /// Refused or failed, shown as a page with the status code.
    Api(ApiError),
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        WebError::Api(e)
    }
}

impl From<crate::store::StoreError> for WebError {
    fn from(e: crate::store::StoreError) -> Self {
        WebError::Api(e.into())
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Api(ApiError::Internal(format!("rendering a page: {e}")))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: String,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn(next) => {
                let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
                Redirect::to(&format!("/sign-in?next={next}")).into_response()
            }
            WebError::Api(error) => {
                if let ApiError::Internal(why) = &error {
                    tracing::error!(error = %why, "A page failed.");
                }
                let status = error.status();
                let message = match &error {
                    ApiError::Internal(_) => "Something broke; the engine's log says what.".into(),
                    other => other.to_string(),
                };
                let page = ErrorPage {
                    status: status.to_string(),
                    message,
                };
                match page.render() {
                    Ok(html) => (status, Html(html)).into_response(),
                    Err(_) => status.into_response(),
                }
            }
        }
    }
}

type PageResult = Result<Response, WebError>;

fn render(status: StatusCode, page: &impl Template) -> PageResult {
    Ok((status, Html(page.render()?)).into_response())
}

/// A signed-in person of a page request; without a session, the browser is
/// sent to sign in and brought back.
pub struct WebPerson(pub Person);

impl FromRequestParts<Arc<App>> for WebPerson {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        match auth::person_of(app, &jar).await {
            Ok(person) => Ok(WebPerson(person)),
            Err(ApiError::Unauthorized) => {
                let back = if parts.method == axum::http::Method::GET {
                    parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string()
                } else {
                    "/".to_string()
                };
                Err(WebError::SignIn(back))
            }
            Err(other) => Err(WebError::Api(other)),
        }
    }
}

/// Refuse a form whose `csrf` field is not the session's token.
fn check_csrf(person: &Person, sent: &str) -> Result<(), WebError> {
    if person.csrf_matches(sent) {
        Ok(())
    } else {
        Err(WebError::Api(ApiError::Forbidden(
            "this form is out of date or not from this site; reload the page and try again".into(),
        )))
    }
}

/// What every page around its content shows: who is signed in and what they may do.
struct Chrome {
    user: String,
    role: &'static str,
    csrf: String,
    may_resolve: bool,
    is_admin: bool,
    here: &'static str,
    notice: Option<String>,
}

impl Chrome {
    fn new(person: &Person, here: &'static str, notice: Option<String>) -> Chrome {
        Chrome {
            user: person.user.clone(),
            role: person.role.as_str(),
            csrf: person.csrf.clone(),
            may_resolve: person.role >= Role::Support,
            is_admin: person.role >= Role::Admin,
            here,
            notice,
        }
    }
}

/// The notice a redirect after a change asks for (`?done=...`): a short code,
/// so that a link cannot put words on the page.
fn notice(done: Option<&str>) -> Option<String> {
    let done = done?;
    let mut parts = done.split('-');
    let what = parts.next()?;
    let numbers: Vec<u64> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
    Some(match (what, numbers.as_slice()) {
        ("resolved", [id]) => {
            format!("Conflict #{id} resolved; the engine writes it to both sides on its next pass.")
        }
        ("bulk", [resolved, refused]) => format!(
            "{resolved} conflict{} resolved{}.",
            plural(*resolved),
            if *refused > 0 {
                format!("; {refused} left open (the choice did not fit them)")
            } else {
                String::new()
            }
        ),
        ("retried", [id]) => format!("Dead letter #{id} queued again."),
        ("discarded", [id]) => format!("Dead letter #{id} discarded; its write will not be made."),
        ("saved", []) => "Policy saved; the engine activates it on its next pass.".into(),
        ("queue", []) => "No open conflict is left.".into(),
        _ => return None,
    })
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A time for people: `2026-11-22 06:23:11 UTC`.
fn when(at: i64) -> String {
    tandem_core::clock::format_seconds_offset(at)
        .replacen('T', " ", 1)
        .replace("+00:00", " UTC")
}

/// A canonical value as a person reads and types it: text as is, a list as
/// comma-separated items, anything else as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A piece of a shown value, marked when the other side's value lacks it.
struct Piece {
    text: String,
    changed: bool,
}

/// A value shown with what differs from another value marked.
struct Marked {
    pieces: Vec<Piece>,
    empty: bool,
}

impl Marked {
    fn plain(value: &Value) -> Marked {
        let text = shown(value);
        Marked {
            empty: text.is_empty(),
            pieces: vec![Piece {
                text,
                changed: false,
            }],
        }
    }
}

/// Both values with what each has that the other lacks marked, word by word.
fn differences(left: &Value, right: &Value) -> [Marked; 2] {
    let (left, right) = (shown(left), shown(right));
    let diff = similar::TextDiff::from_words(left.as_str(), right.as_str());
    let mut marked = [Vec::new(), Vec::new()];
    for change in diff.iter_all_changes() {
        let (sides, changed): (&[usize], bool) = match change.tag() {
            similar::ChangeTag::Equal => (&[0, 1], false),
            similar::ChangeTag::Delete => (&[0], true),
            similar::ChangeTag::Insert => (&[1], true),
        };
        for &side in sides {
            let pieces: &mut Vec<Piece> = &mut marked[side];
            match pieces.last_mut() {
                Some(last) if last.changed == changed => last.text.push_str(change.value()),
                _ => pieces.push(Piece {
                    text: change.value().to_string(),
                    changed,
                }),
            }
        }
    }
    let [l, r] = marked.map(bridge_spaces);
    [
        Marked {
            pieces: l,
            empty: left.is_empty(),
        },
        Marked {
            pieces: r,
            empty: right.is_empty(),
        },
    ]
}

/// Join changed pieces that only a space separates, so that a replaced phrase
/// reads as one mark rather than a mark per word.
fn bridge_spaces(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    let mut pieces = pieces.into_iter().peekable();
    while let Some(piece) = pieces.next() {
        let between = !piece.changed
            && piece.text.trim().is_empty()
            && out.last().is_some_and(|p| p.changed)
            && pieces.peek().is_some_and(|p| p.changed);
        match out.last_mut() {
            Some(last) if between || (last.changed && piece.changed) => {
                last.text.push_str(&piece.text)
            }
            _ => out.push(piece),
        }
    }
    out
}

/// The connectors' names of a pair, left then right.
fn side_names(app: &App, pair: &str) -> [String; 2] {
    app.engine
        .policy_named(pair)
        .map(|p| [p.left.clone(), p.right.clone()])
        .unwrap_or_else(|| ["left".into(), "right".into()])
}

/// A text field of a query or form: blank means not given.
fn given(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

// ---- sign-in ----

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    next: String,
    name: String,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only a path of this site: no scheme, no other host.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/conflicts".to_string(),
    }
}

async fn sign_in_page(Query(query): Query<NextQuery>) -> PageResult {
    render(
        StatusCode::OK,
        &SignInPage {
            next: safe_next(query.next.as_deref()),
            name: String::new(),
            error: None,
        },
    )
}

#[derive(serde::Deserialize)]
struct SignInForm {
    name: String,
    password: String,
    next: Option<String>,
}

/// A form posted from another site carries its own `Origin`; refuse it, so
/// that nobody is signed in to someone else's session unawares. The page's
/// own origin is the host it was asked for, or the configured public URL's
/// (behind a proxy that changes the host).
fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let public = public_url.trim_end_matches('/');
    let public = public.split_once("://").map_or(public, |(scheme, rest)| {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        &public[..scheme.len() + 3 + authority_end]
    });
    origin == public
        || origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host)
}

async fn sign_in(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> PageResult {
    let public_url = app
        .config
        .http
        .as_ref()
        .map_or("", |h| h.public_url.as_str());
    if !same_origin(&headers, public_url) {
        return Err(ApiError::Forbidden("sign in from this site's own page".into()).into());
    }
    let next = safe_next(form.next.as_deref());
    match app.sign_in(jar, &form.name, &form.password).await {
        Ok((jar, _)) => Ok((jar, Redirect::to(&next)).into_response()),
        Err(refusal @ (ApiError::Unauthorized | ApiError::TooMany(_))) => {
            let (status, error) = match &refusal {
                ApiError::TooMany(seconds) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many attempts; try again in {seconds} s."),
                ),
                _ => (
                    StatusCode::UNAUTHORIZED,
                    "That name and password do not match.".to_string(),
                ),
            };
            let page = SignInPage {
                next,
                name: form.name,
                error: Some(error),
            };
            let mut response = render(status, &page)?;
            if let ApiError::TooMany(seconds) = refusal {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&seconds.to_string()).expect("digits"),
                );
            }
            Ok(response)
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    WebPerson(person): WebPerson,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_csrf(&person, &form.csrf)?;
    let jar = app.sign_out(jar, &person).await?;
    Ok((jar, Redirect::to("/sign-in")).into_response())
}

// ---- the conflict queue ----

#[derive(serde::Deserialize, Default)]
struct QueueQuery {
    status: Option<String>,
    pair: Option<String>,
    field: Option<String>,
    rule: Option<String>,
    search: Option<String>,
    offset: Option<String>,
    done: Option<String>,
}

/// The queue's page size.
const PAGE: usize = 50;

impl QueueQuery {
    fn filter(self) -> Result<(ConflictFilter, Option<String>), WebError> {
        let offset = match given(self.offset) {
            None => None,
            Some(text) => Some(text.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!("offset `{text}`: give a whole number"))
            })?),
        };
        let filter = ConflictFilter {
            status: given(self.status),
            pair: given(self.pair),
            field: given(self.field),
            rule: given(self.rule),
            search: given(self.search),
            limit: Some(PAGE),
            offset,
        };
        filter.validate().map_err(ApiError::BadRequest)?;
        Ok((filter, self.done))
    }
}

struct QueueRow {
    id: i64,
    open: bool,
    key: String,
    field: String,
    rule: String,
    pair: String,
    opened: String,
    values: [Marked; 2],
    resolution: Option<String>,
}

#[derive(Template)]
#[template(path = "conflicts.html")]
struct QueuePage {
    chrome: Chrome,
    filter: ConflictFilter,
    statuses: Vec<(&'static str, bool)>,
    labels: [String; 2],
    rows: Vec<QueueRow>,
    total: u64,
    first: usize,
    last: usize,
    query: String,
    previous: Option<usize>,
    next: Option<usize>,
    bulk: bool,
}

impl QueuePage {
    fn text<'a>(&self, value: &'a Option<String>) -> &'a str {
        value.as_deref().unwrap_or_default()
    }
}

fn queue_row(conflict: &ConflictRow) -> QueueRow {
    let values = if conflict.kind == "field" {
        differences(&conflict.left, &conflict.right)
    } else {
        [
            Marked::plain(&conflict.left),
            Marked::plain(&conflict.right),
        ]
    };
    QueueRow {
        id: conflict.id,
        open: conflict.status == "open",
        key: conflict.key.clone(),
        field: if conflict.kind == "field" {
            conflict.field.clone()
        } else {
            "two records, one email".into()
        },
        rule: conflict.rule.clone(),
        pair: conflict.pair.clone(),
        opened: when(conflict.opened_at),
        values,
        resolution: conflict.resolution.clone(),
    }
}

async fn queue(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Query(query): Query<QueueQuery>,
) -> PageResult {
    person.require(Role::Viewer)?;
    let (filter, done) = query.filter()?;
    let page = {
        let filter = filter.clone();
        app.engine
            .store()
            .call(move |s| s.find_conflicts(&filter))
            .await?
    };
    let status = filter.status.as_deref().unwrap_or("open");
    let offset = filter.offset.unwrap_or(0);
    let mut query: form_urlencoded::Serializer<String> =
        form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("status", &filter.status),
        ("pair", &filter.pair),
        ("field", &filter.field),
        ("rule", &filter.rule),
        ("search", &filter.search),
    ] {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let pairs = app.engine.policies();
    let labels = match (&filter.pair, pairs.as_slice()) {
        (Some(pair), _) => side_names(&app, pair),
        (None, [only]) => [only.left.clone(), only.right.clone()],
        _ => ["left".into(), "right".into()],
    };
    let shown = page.conflicts.len();
    let rendered = QueuePage {
        chrome: Chrome::new(&person, "conflicts", notice(done.as_deref())),
        statuses: ["open", "resolved", "all"]
            .into_iter()
            .map(|s| (s, s == status))
            .collect(),
        labels,
        rows: page.conflicts.iter().map(queue_row).collect(),
        total: page.total,
        first: offset + 1,
        last: offset + shown,
        query: query.finish(),
        previous: (offset > 0).then(|| offset.saturating_sub(PAGE)),
        next: ((offset + shown) < page.total as usize).then_some(offset + shown),
        bulk: status == "open" && person.role >= Role::Support && page.total > 0,
        filter,
    };
    render(StatusCode::OK, &rendered)
}

// ---- one conflict ----

struct HistoryRow {
    at: String,
    actor: String,
    action: String,
    side: String,
    detail: String,
}

fn history_row(entry: &AuditEntry) -> HistoryRow {
    HistoryRow {
        at: when(entry.at),
        actor: entry.actor.clone(),
        action: entry.action.clone(),
        side: entry.side.clone().unwrap_or_default(),
        detail: if entry.detail.is_null() {
            String::new()
        } else {
            entry.detail.to_string()
        },
    }
}

#[derive(Template)]
#[template(path = "conflict.html")]
struct DetailPage {
    chrome: Chrome,
    c: QueueRow,
    labels: [String; 2],
    base: Option<Marked>,
    changed: [String; 2],
    reason: String,
    detail: String,
    proposal: Option<String>,
    resolved_by: String,
    resolved_at: String,
    chosen: Option<String>,
    outcome: String,
    history: Vec<HistoryRow>,
    next: Option<i64>,
    resolvable: bool,
    ambiguous: bool,
    error: Option<String>,
    typed: String,
}

async fn detail_page(
    app: &App,
    person: &Person,
    id: i64,
    done: Option<&str>,
    error: Option<(StatusCode, String, String)>,
) -> PageResult {
    let found = app
        .engine
        .store()
        .call(move |s| {
            let detail = people::conflict_detail(s, id)?;
            let next = s.next_open_conflict(id)?;
            Ok((detail, next))
        })
        .await?;
    let (Some(detail), next) = found else {
        return Err(ApiError::NotFound(format!("There is no conflict #{id}.")).into());
    };
    let conflict = &detail.conflict;
    let labels = side_names(app, &conflict.pair);
    let (status, error, typed) = match error {
        Some((status, message, typed)) => (status, Some(message), typed),
        None => (StatusCode::OK, None, String::new()),
    };
    let page = DetailPage {
        chrome: Chrome::new(person, "conflicts", notice(done)),
        c: queue_row(conflict),
        labels,
        base: conflict.base.as_ref().map(|(left, right)| {
            // The base is stored per side; they agree unless a transform maps them.
            Marked::plain(if left.is_null() { right } else { left })
        }),
        changed: conflict
            .changed_at
            .map(|at| at.map(when).unwrap_or_else(|| "unknown".into())),
        reason: conflict.reason.clone(),
        detail: conflict
            .detail
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
        proposal: detail.proposal.as_ref().map(shown),
        resolved_by: conflict.resolved_by.clone().unwrap_or_default(),
        resolved_at: conflict.resolved_at.map(when).unwrap_or_default(),
        chosen: conflict.chosen.as_ref().map(shown),
        outcome: conflict.outcome.clone().unwrap_or_default(),
        history: detail.history.iter().map(history_row).collect(),
        next,
        resolvable: conflict.status == "open"
            && conflict.kind == "field"
            && person.role >= Role::Support,
        ambiguous: conflict.kind != "field",
        error,
        typed,
    };
    render(status, &page)
}

#[derive(serde::Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn detail(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Path(id): Path<i64>,
    Query(query): Query<DoneQuery>,
) -> PageResult {
    person.require(Role::Viewer)?;
    detail_page(&app, &person, id, query.done.as_deref(), None).await
}

#[derive(serde::Deserialize)]
struct ResolveForm {
    csrf: String,
    take: String,
    value: Option<String>,
}

/// The choice a form's `take` (and `value`) names.
fn choice(take: &str, value: Option<String>) -> Result<Choice, String> {
    match take {
        "left" => Ok(Choice::Left),
        "right" => Ok(Choice::Right),
        "merge" => Ok(Choice::Merge),
        "value" => Ok(Choice::Value {
            value: Value::String(value.unwrap_or_default()),
        }),
        other => Err(format!(
            "`{other}` is not a choice: left, right, merge or value"
        )),
    }
}

async fn resolve_one(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Path(id): Path<i64>,
    Form(form): Form<ResolveForm>,
) -> PageResult {
    check_csrf(&person, &form.csrf)?;
    person.require(Role::Support)?;
    let typed = form.value.clone().unwrap_or_default();
    let choice = match choice(&form.take, form.value) {
        Ok(choice) => choice,
        Err(why) => {
            let error = Some((StatusCode::BAD_REQUEST, why, typed));
            return detail_page(&app, &person, id, None, error).await;
        }
    };
    let now = app.engine.clock().now();
    let who = person.user.clone();
    let outcome = app
        .engine
        .store()
        .call(move |s| {
            let done = people::resolve(s, id, &choice, &who, now);
            let next = s.next_open_conflict(id)?;
            Ok((done, next))
        })
        .await?;
    match outcome {
        (Ok(_), Some(next)) => {
            Ok(Redirect::to(&format!("/conflicts/{next}?done=resolved-{id}")).into_response())
        }
        (Ok(_), None) => {
            Ok(Redirect::to(&format!("/conflicts?done=resolved-{id}")).into_response())
        }
        (Err(refusal), _) => {
            let refusal = ApiError::from(refusal);
            match refusal {
                ApiError::BadRequest(why) | ApiError::Conflict(why) => {
                    let error = Some((StatusCode::BAD_REQUEST, why, typed));
                    detail_page(&app, &person, id, None, error).await
                }
                other => Err(other.into()),
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct BulkForm {
    csrf: String,
    take: String,
    /// `selected` (the ids given) or `filter` (every open conflict it matches).
    scope: String,
    #[serde(default)]
    id: Vec<i64>,
    pair: Option<String>,
    field: Option<String>,
    rule: Option<String>,
    search: Option<String>,
}

async fn resolve_many(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Form(form): Form<BulkForm>,
) -> PageResult {
    check_csrf(&person, &form.csrf)?;
    person.require(Role::Support)?;
    let choice = match form.take.as_str() {
        "left" | "right" => choice(&form.take, None).map_err(ApiError::BadRequest)?,
        other => {
            return Err(ApiError::BadRequest(format!(
                "`{other}` cannot be taken in bulk: left or right"
            ))
            .into());
        }
    };
    let now = app.engine.clock().now();
    let who = person.user.clone();
    let outcome: BulkOutcome = match form.scope.as_str() {
        "selected" if form.id.is_empty() => {
            return Err(ApiError::BadRequest(
                "no conflict was selected; tick the ones to resolve".into(),
            )
            .into());
        }
        "selected" => {
            let ids = form.id;
            app.engine
                .store()
                .call(move |s| people::resolve_each(s, &ids, &choice, &who, now))
                .await?
        }
        "filter" => {
            let filter = ConflictFilter {
                pair: given(form.pair),
                field: given(form.field),
                rule: given(form.rule),
                search: given(form.search),
                ..ConflictFilter::default()
            };
            app.engine
                .store()
                .call(move |s| people::resolve_matching(s, &filter, &choice, &who, now))
                .await?
        }
        other => {
            return Err(
                ApiError::BadRequest(format!("scope `{other}`: selected or filter")).into(),
            );
        }
    };
    Ok(Redirect::to(&format!(
        "/conflicts?done=bulk-{}-{}",
        outcome.resolved.len(),
        outcome.failed.len()
    ))
    .into_response())
}

// ---- dead letters ----

struct LetterRow {
    id: i64,
    pair: String,
    side: String,
    key: String,
    op: String,
    payload: String,
    attempts: u32,
    error: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct LettersPage {
    chrome: Chrome,
    letters: Vec<LetterRow>,
}

async fn dead_letters(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Query(query): Query<DoneQuery>,
) -> PageResult {
    person.require(Role::Viewer)?;
    let letters: Vec<DeadLetter> = app.engine.store().call(|s| s.dead_letters()).await?;
    let letters = letters
        .into_iter()
        .map(|l| LetterRow {
            side: side_names(&app, &l.pair)[l.side as usize].clone(),
            id: l.id,
            pair: l.pair,
            key: l.key,
            op: l.op,
            payload: serde_json::to_string_pretty(&l.payload).unwrap_or_default(),
            attempts: l.attempts,
            error: l.error,
            updated: when(l.updated_at),
        })
        .collect();
    let page = LettersPage {
        chrome: Chrome::new(&person, "deadletters", notice(query.done.as_deref())),
        letters,
    };
    render(StatusCode::OK, &page)
}

async fn settle_dead_letter(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_csrf(&person, &form.csrf)?;
    let retry = match action.as_str() {
        "retry" => true,
        "discard" => false,
        _ => return Err(ApiError::NotFound(format!("no action `{action}`")).into()),
    };
    person.require(if retry { Role::Support } else { Role::Admin })?;
    app.settle_dead_letter(id, &person.user, retry).await?;
    let word = if retry { "retried" } else { "discarded" };
    Ok(Redirect::to(&format!("/deadletters?done={word}-{id}")).into_response())
}

// ---- audit ----

#[derive(serde::Deserialize)]
struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    link: Option<String>,
    before: Option<String>,
}

struct AuditRow {
    id: i64,
    pair: String,
    link: String,
    entry: HistoryRow,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    action: String,
    actor: String,
    link: String,
    rows: Vec<AuditRow>,
    older: Option<String>,
}

/// The audit page's length.
const AUDIT_PAGE: usize = 100;

async fn audit(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Query(query): Query<AuditQuery>,
) -> PageResult {
    person.require(Role::Viewer)?;
    let number = |name: &str, text: Option<String>| -> Result<Option<i64>, WebError> {
        given(text)
            .map(|t| {
                t.parse::<i64>().map_err(|_| {
                    WebError::from(ApiError::BadRequest(format!(
                        "{name} `{t}`: give a whole number"
                    )))
                })
            })
            .transpose()
    };
    let filter = AuditFilter {
        action: given(query.action),
        actor: given(query.actor),
        link: number("link", query.link)?,
        before: number("before", query.before)?,
        limit: Some(AUDIT_PAGE),
    };
    let entries = {
        let filter = filter.clone();
        app.engine
            .store()
            .call(move |s| s.find_audit(&filter))
            .await?
    };
    let older = (entries.len() == AUDIT_PAGE)
        .then(|| entries.last().map(|e| e.id))
        .flatten()
        .map(|before| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (name, value) in [("action", &filter.action), ("actor", &filter.actor)] {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
            if let Some(link) = filter.link {
                query.append_pair("link", &link.to_string());
            }
            query.append_pair("before", &before.to_string());
            query.finish()
        });
    let page = AuditPage {
        chrome: Chrome::new(&person, "audit", None),
        action: filter.action.unwrap_or_default(),
        actor: filter.actor.unwrap_or_default(),
        link: filter.link.map(|l| l.to_string()).unwrap_or_default(),
        rows: entries
            .iter()
            .map(|e| AuditRow {
                id: e.id,
                pair: e.pair.clone().unwrap_or_default(),
                link: e.link.map(|l| l.to_string()).unwrap_or_default(),
                entry: history_row(e),
            })
            .collect(),
        older,
    };
    render(StatusCode::OK, &page)
}

// ---- health ----

struct ConnectorRow {
    name: String,
    last_poll: String,
    lag: String,
    requests: String,
    throttled: String,
    circuit: &'static str,
    today: String,
    webhooks: String,
}

struct PairHealth {
    pair: String,
    links: u64,
    in_sync: u64,
    in_sync_share: String,
    open_conflicts: u64,
    queued_writes: u64,
    dead_letters: u64,
    staged: u64,
    removals_waiting: usize,
    connectors: Vec<ConnectorRow>,
    policy: String,
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    chrome: Chrome,
    now: String,
    pairs: Vec<PairHealth>,
}

async fn health(State(app): State<Arc<App>>, WebPerson(person): WebPerson) -> PageResult {
    person.require(Role::Viewer)?;
    let status = app.status().await?;
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let pairs = status
        .pairs
        .into_iter()
        .map(|p| PairHealth {
            in_sync_share: if p.links == 0 {
                "-".into()
            } else {
                format!("{:.1} %", 100.0 * p.in_sync as f64 / p.links as f64)
            },
            connectors: p
                .connectors
                .into_iter()
                .map(|c| ConnectorRow {
                    last_poll: c.last_poll.map(when).unwrap_or_else(|| "never".into()),
                    lag: c
                        .lag_seconds
                        .map(|s| format!("{s} s"))
                        .unwrap_or_else(|| "-".into()),
                    requests: number(c.requests),
                    throttled: number(c.throttled),
                    circuit: c.circuit.as_str(),
                    today: format!(
                        "{} ({} throttled)",
                        c.health.requests_today, c.health.throttled_today
                    ),
                    webhooks: format!(
                        "{} accepted, {} refused; last {}",
                        c.health.webhooks_today,
                        c.health.webhooks_refused_today,
                        c.health
                            .last_webhook_at
                            .map(when)
                            .unwrap_or_else(|| "never".into())
                    ),
                    name: c.name,
                })
                .collect(),
            policy: p
                .policy
                .map(|v| {
                    format!(
                        "{} ({}…), activated {} by {}",
                        v.file,
                        &v.sha256[..v.sha256.len().min(12)],
                        when(v.at),
                        v.by
                    )
                })
                .unwrap_or_else(|| "none activated yet".into()),
            pair: p.pair,
            links: p.links,
            in_sync: p.in_sync,
            open_conflicts: p.open_conflicts,
            queued_writes: p.queued_writes,
            dead_letters: p.dead_letters,
            staged: p.staged,
            removals_waiting: p.removals_waiting,
        })
        .collect();
    let page = HealthPage {
        chrome: Chrome::new(&person, "health", None),
        now: when(status.now),
        pairs,
    };
    render(StatusCode::OK, &page)
}

// ---- policies ----

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    chrome: Chrome,
    policies: Vec<(String, String)>,
}

async fn policies(State(app): State<Arc<App>>, WebPerson(person): WebPerson) -> PageResult {
    person.require(Role::Viewer)?;
    let policies = app
        .policy_files
        .iter()
        .map(|(pair, file)| (pair.clone(), shown_path(&app, file)))
        .collect();
    let page = PoliciesPage {
        chrome: Chrome::new(&person, "policies", None),
        policies,
    };
    render(StatusCode::OK, &page)
}

/// A policy file's path as admins know it: relative to the configuration.
fn shown_path(app: &App, file: &std::path::Path) -> String {
    app.config
        .file
        .parent()
        .and_then(|dir| file.strip_prefix(dir).ok())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// A line of the submitted policy, with the problems found on it.
struct SourceLine {
    number: usize,
    text: String,
    problems: Vec<String>,
    /// Lines left out before the next one shown.
    gap: bool,
}

struct ProblemView {
    at: String,
    line: usize,
    message: String,
    hint: Option<String>,
}

struct PreviewView {
    links: usize,
    waiting: usize,
    /// (what, active, new)
    counts: Vec<(String, String, String)>,
    field_writes: Vec<(String, String, String)>,
    differences: Vec<(String, String, String)>,
    more: usize,
    unseen: Vec<String>,
}

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    chrome: Chrome,
    pair: String,
    file: String,
    source: String,
    problems: Vec<ProblemView>,
    listing: Vec<SourceLine>,
    validated: Option<Validated>,
    preview: Option<PreviewView>,
    failure: Option<String>,
}

async fn policy_page(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Path(pair): Path<String>,
    Query(query): Query<DoneQuery>,
) -> PageResult {
    person.require(Role::Viewer)?;
    let info = api::policy_info(&app, &pair)?;
    let page = PolicyPage {
        chrome: Chrome::new(&person, "policies", notice(query.done.as_deref())),
        file: shown_path(&app, std::path::Path::new(&info.file)),
        pair,
        source: info.source,
        problems: Vec::new(),
        listing: Vec::new(),
        validated: None,
        preview: None,
        failure: None,
    };
    render(StatusCode::OK, &page)
}

#[derive(serde::Deserialize)]
struct PolicyForm {
    csrf: String,
    source: String,
    /// `check`, `preview` or `save`.
    action: String,
}

async fn policy_action(
    State(app): State<Arc<App>>,
    WebPerson(person): WebPerson,
    Path(pair): Path<String>,
    Form(form): Form<PolicyForm>,
) -> PageResult {
    check_csrf(&person, &form.csrf)?;
    person.require(Role::Admin)?;
    let file = shown_path(&app, &api::policy_file(&app, &pair)?);
    // Browsers send text areas with CRLF line ends; the file keeps LF.
    let source = form.source.replace("\r\n", "\n");
    let mut page = PolicyPage {
        chrome: Chrome::new(&person, "policies", None),
        pair: pair.clone(),
        file,
        source,
        problems: Vec::new(),
        listing: Vec::new(),
        validated: None,
        preview: None,
        failure: None,
    };
    let compiled = match form.action.as_str() {
        "save" => app
            .save_policy(&person.user, &pair, &page.source)
            .await
            .map(|_| None),
        "check" | "preview" => api::compile(&app, &pair, &page.source).map(Some),
        other => {
            return Err(ApiError::BadRequest(format!(
                "`{other}` is not an action: check, preview or save"
            ))
            .into());
        }
    };
    match compiled {
        Ok(None) => Ok(Redirect::to(&format!("/policies/{pair}?done=saved")).into_response()),
        Ok(Some(policy)) => {
            page.validated = Some(Validated::of(&policy));
            if form.action == "preview" {
                page.preview = Some(preview_view(&app.preview_policy(policy).await?));
            }
            render(StatusCode::OK, &page)
        }
        Err(ApiError::Invalid(problems)) => {
            page.listing = listing(&page.source, &problems);
            page.problems = problems
                .iter()
                .map(|p| ProblemView {
                    at: if p.line == 0 {
                        page.file.clone()
                    } else {
                        format!("{}:{}:{}", page.file, p.line, p.column)
                    },
                    line: p.line,
                    message: p.message.clone(),
                    hint: p.hint.clone(),
                })
                .collect();
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(failure) => {
            // The text stays on the page: nothing typed is lost.
            let status = failure.status();
            if let ApiError::Internal(why) = &failure {
                tracing::error!(error = %why, "Saving a policy failed.");
            }
            page.failure = Some(match failure {
                ApiError::Internal(_) => "It could not be saved; the engine's log says why.".into(),
                other => other.to_string(),
            });
            render(status, &page)
        }
    }
}

/// Lines of source shown around each problem.
const CONTEXT: usize = 2;

/// The lines around each problem, numbered, with the problem under its line;
/// a gap where lines are left out.
fn listing(source: &str, problems: &[Problem]) -> Vec<SourceLine> {
    let lines: Vec<&str> = source.lines().collect();
    let near = |n: usize| {
        problems
            .iter()
            .any(|p| p.line > 0 && n + CONTEXT >= p.line && n <= p.line + CONTEXT)
    };
    let mut out: Vec<SourceLine> = Vec::new();
    for (i, text) in lines.iter().enumerate() {
        let number = i + 1;
        if !near(number) {
            continue;
        }
        if out.last().is_some_and(|l| l.number + 1 < number) {
            out.push(SourceLine {
                number: number - 1,
                text: String::new(),
                problems: Vec::new(),
                gap: true,
            });
        }
        out.push(SourceLine {
            number,
            text: text.to_string(),
            problems: problems
                .iter()
                .filter(|p| p.line == number)
                .map(|p| match &p.hint {
                    Some(hint) => format!("{} (hint: {hint})", p.message),
                    None => p.message.clone(),
                })
                .collect(),
            gap: false,
        });
    }
    out
}

/// The most differences a preview lists on the page.
const PREVIEW_LIST: usize = 200;

fn preview_view(preview: &crate::inspect::Preview) -> PreviewView {
    let (a, n) = (&preview.active, &preview.new);
    let pair = |x: [usize; 2]| format!("{} / {}", x[0], x[1]);
    let counts = vec![
        (
            "updates (left / right)".into(),
            pair(a.updates),
            pair(n.updates),
        ),
        (
            "creates (left / right)".into(),
            pair(a.creates),
            pair(n.creates),
        ),
        (
            "archives and deletes (left / right)".into(),
            pair(a.removals),
            pair(n.removals),
        ),
        (
            "fields left to a person".into(),
            a.conflicts.to_string(),
            n.conflicts.to_string(),
        ),
        (
            "open conflicts it settles".into(),
            "-".into(),
            n.conflicts_closed.to_string(),
        ),
        (
            "conflicts it opens".into(),
            "-".into(),
            n.conflicts_opened.to_string(),
        ),
    ];
    let fields: std::collections::BTreeSet<&String> =
        a.field_writes.keys().chain(n.field_writes.keys()).collect();
    let field_writes = fields
        .into_iter()
        .map(|f| {
            let of = |e: &crate::inspect::Effects| {
                pair(e.field_writes.get(f).copied().unwrap_or([0, 0]))
            };
            (f.clone(), of(a), of(n))
        })
        .collect();
    PreviewView {
        links: preview.links,
        waiting: preview.waiting,
        counts,
        field_writes,
        differences: preview
            .differences
            .iter()
            .take(PREVIEW_LIST)
            .map(|d| (d.key.clone(), d.active.clone(), d.new.clone()))
            .collect(),
        more: preview.differences.len().saturating_sub(PREVIEW_LIST),
        unseen: preview.unseen_paths.iter().flatten().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(marked: &Marked) -> Vec<(String, bool)> {
        marked
            .pieces
            .iter()
            .map(|p| (p.text.clone(), p.changed))
            .collect()
    }

    #[test]
    fn differences_mark_what_each_side_has_that_the_other_lacks() {
        let [left, right] = differences(&json!("Babbage & Co"), &json!("Analytical & Co"));
        assert_eq!(
            text(&left),
            [("Babbage".into(), true), (" & Co".into(), false)]
        );
        assert_eq!(
            text(&right),
            [("Analytical".into(), true), (" & Co".into(), false)]
        );
        let [left, right] = differences(&json!("Babbage & Co"), &json!("Analytical Engines"));
        assert_eq!(text(&left), [("Babbage & Co".into(), true)]);
        assert_eq!(text(&right), [("Analytical Engines".into(), true)]);
        let [left, right] = differences(&json!(["vip", "news"]), &Value::Null);
        assert!(!left.empty && right.empty);
        assert_eq!(text(&left), [("vip, news".into(), true)]);
        let [same, _] = differences(&json!(42), &json!(42));
        assert_eq!(text(&same), [("42".into(), false)]);
    }

    #[test]
    fn a_listing_shows_the_lines_around_each_problem() {
        let source: String = (1..=20).map(|n| format!("line {n}\n")).collect();
        let problem = |line| Problem {
            line,
            column: 1,
            message: format!("bad {line}"),
            hint: None,
        };
        let shown = listing(&source, &[problem(3), problem(15), problem(0)]);
        let numbers: Vec<(usize, bool)> = shown.iter().map(|l| (l.number, l.gap)).collect();
        assert_eq!(
            numbers,
            [
                (1, false),
                (2, false),
                (3, false),
                (4, false),
                (5, false),
                (12, true),
                (13, false),
                (14, false),
                (15, false),
                (16, false),
                (17, false)
            ]
        );
        assert_eq!(shown[2].problems, ["bad 3"]);
        assert_eq!(shown[8].text, "line 15");
        assert!(shown[3].problems.is_empty());
    }

    #[test]
    fn a_notice_comes_only_from_known_codes() {
        assert!(notice(Some("resolved-12")).unwrap().contains("#12"));
        assert!(notice(Some("bulk-3-1")).unwrap().contains("1 left open"));
        assert_eq!(notice(Some("resolved-<script>")), None);
        assert_eq!(notice(Some("anything")), None);
        assert_eq!(notice(None), None);
    }

    #[test]
    fn sign_in_goes_back_only_to_this_site() {
        assert_eq!(safe_next(Some("/conflicts/3")), "/conflicts/3");
        for elsewhere in ["//evil.example", "https://evil.example", "/\\evil", "x"] {
            assert_eq!(safe_next(Some(elsewhere)), "/conflicts", "{elsewhere}");
        }
        let public = "https://sync.example.com/";
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&headers, public));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers, public));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://sync.example.com"),
        );
        assert!(same_origin(&headers, public), "behind a proxy");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&headers, public));
        assert!(!same_origin(&headers, ""));
    }
}
