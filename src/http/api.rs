//! The JSON API under `/api`, described by the OpenAPI document it serves at
//! `/api/openapi.json`. Reading needs the viewer role; resolving conflicts and
//! retrying dead letters needs support; policies and discarding dead letters
//! need admin. Requests that change something carry the session's CSRF token.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use utoipa::OpenApi;

use super::App;
use super::auth::{self, ApiPerson, COOKIE, Role};
use super::error::{ApiError, ErrorBody, Problem};
use crate::people::{self, BulkOutcome, ConflictDetail};
use crate::policy::{self, Policy};
use crate::store::{AuditEntry, AuditFilter, Choice, ConflictFilter, ConflictPage, DeadLetter};

/// The API's routes.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/session", get(session).post(sign_in).delete(sign_out))
        .route("/api/status", get(status))
        .route("/api/conflicts", get(list_conflicts))
        .route("/api/conflicts/resolve", post(resolve_many))
        .route("/api/conflicts/{id}", get(show_conflict))
        .route("/api/conflicts/{id}/resolve", post(resolve_one))
        .route("/api/deadletters", get(list_dead_letters))
        .route("/api/deadletters/{id}/retry", post(retry_dead_letter))
        .route("/api/deadletters/{id}/discard", post(discard_dead_letter))
        .route("/api/removals", get(list_removals))
        .route("/api/removals/approve", post(approve_removals))
        .route("/api/removals/cancel", post(cancel_removals))
        .route("/api/audit", get(audit))
        .route("/api/policies", get(list_policies))
        .route("/api/policies/{pair}", get(get_policy).put(save_policy))
        .route("/api/policies/{pair}/validate", post(validate_policy))
        .route("/api/policies/{pair}/preview", post(preview_policy))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tandem",
        description = "Conflicts, dead letters, audit, policies and status of a tandem sync engine."
    ),
    paths(
        sign_in,
        session,
        sign_out,
        status,
        list_conflicts,
        show_conflict,
        resolve_one,
        resolve_many,
        list_dead_letters,
        retry_dead_letter,
        discard_dead_letter,
        list_removals,
        approve_removals,
        cancel_removals,
        audit,
        list_policies,
        get_policy,
        validate_policy,
        preview_policy,
        save_policy
    ),
    components(schemas(
        ErrorBody,
        Problem,
        SignIn,
        SessionInfo,
        PolicySource,
        PolicyInfo,
        Validated,
        BulkResolve,
        RemovalScope,
        Settled
    ))
)]
struct ApiDoc;

/// The OpenAPI document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

/// Name and password.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The user name.
    pub name: String,
    /// The password.
    pub password: String,
}

/// Without the password, so that no debug print of a sign-in can log it.
impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("name", &self.name)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// Who is signed in, and the token to send as `X-CSRF-Token` with every change.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// The user name.
    pub user: String,
    /// `admin`, `support` or `viewer`.
    pub role: String,
    /// The session's CSRF token.
    pub csrf: String,
}

/// Sign in: sets the session cookie.
#[utoipa::path(post, path = "/api/session", request_body = SignIn,
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn sign_in(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    Json(form): Json<SignIn>,
) -> Result<(CookieJar, Json<SessionInfo>), ApiError> {
    let (jar, session) = app.sign_in(jar, &form.name, &form.password).await?;
    Ok((jar, Json(session)))
}

/// Who is signed in.
#[utoipa::path(get, path = "/api/session", responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody)))]
async fn session(ApiPerson(person): ApiPerson) -> Json<SessionInfo> {
    Json(SessionInfo {
        user: person.user,
        role: person.role.as_str().to_string(),
        csrf: person.csrf,
    })
}

/// Sign out: ends the session.
#[utoipa::path(delete, path = "/api/session", responses((status = 204), (status = 401, body = ErrorBody)))]
async fn sign_out(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    ApiPerson(person): ApiPerson,
) -> Result<(CookieJar, StatusCode), ApiError> {
    let jar = app.sign_out(jar, &person).await?;
    Ok((jar, StatusCode::NO_CONTENT))
}

/// Per pair: links, conflicts, queued writes, dead letters, last polls and lag,
/// API requests made, the active policy.
#[utoipa::path(get, path = "/api/status", responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
async fn status(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
) -> Result<Json<Status>, ApiError> {
    person.require(Role::Viewer)?;
    Ok(Json(app.status().await?))
}

/// Conflicts, open ones unless `status` says otherwise, oldest first.
#[utoipa::path(get, path = "/api/conflicts",
    params(("status" = Option<String>, Query, description = "open (default), resolved or all"),
           ("pair" = Option<String>, Query), ("field" = Option<String>, Query), ("rule" = Option<String>, Query),
           ("search" = Option<String>, Query, description = "part of the email"),
           ("limit" = Option<usize>, Query), ("offset" = Option<usize>, Query)),
    responses((status = 200, body = Object, description = "{total, conflicts}"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_conflicts(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Query(filter): Query<ConflictFilter>,
) -> Result<Json<ConflictPage>, ApiError> {
    person.require(Role::Viewer)?;
    filter.validate().map_err(ApiError::BadRequest)?;
    Ok(Json(
        app.engine
            .store()
            .call(move |s| s.find_conflicts(&filter))
            .await?,
    ))
}

/// One conflict: base, both values with their change times, the rule that gave
/// up, a proposed text merge, and the record's recent history.
#[utoipa::path(get, path = "/api/conflicts/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_conflict(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<i64>,
) -> Result<Json<ConflictDetail>, ApiError> {
    person.require(Role::Viewer)?;
    app.engine
        .store()
        .call(move |s| people::conflict_detail(s, id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no conflict {id}")))
}

/// Settle a conflict: `{"take": "left" | "right" | "merge"}` or
/// `{"take": "value", "value": ...}`. The engine writes it on its next pass.
#[utoipa::path(post, path = "/api/conflicts/{id}/resolve", params(("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resolve_one(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<i64>,
    Json(choice): Json<Choice>,
) -> Result<Json<crate::store::ConflictRow>, ApiError> {
    person.require(Role::Support)?;
    let now = app.engine.clock().now();
    let row = app
        .engine
        .store()
        .call(move |s| Ok(people::resolve(s, id, &choice, &person.user, now)))
        .await??;
    Ok(Json(row))
}

/// A choice for every open conflict a filter matches.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkResolve {
    /// Which conflicts (status is always open).
    #[schema(value_type = Object)]
    pub filter: ConflictFilter,
    /// The choice, as for one conflict.
    #[schema(value_type = Object)]
    pub resolution: Choice,
}

/// Settle every open conflict a filter matches (at most 1,000).
#[utoipa::path(post, path = "/api/conflicts/resolve", request_body = BulkResolve,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn resolve_many(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Json(bulk): Json<BulkResolve>,
) -> Result<Json<BulkOutcome>, ApiError> {
    person.require(Role::Support)?;
    bulk.filter.validate().map_err(ApiError::BadRequest)?;
    let now = app.engine.clock().now();
    Ok(Json(
        app.engine
            .store()
            .call(move |s| {
                people::resolve_matching(s, &bulk.filter, &bulk.resolution, &person.user, now)
            })
            .await?,
    ))
}

/// Writes parked after too many failures.
#[utoipa::path(get, path = "/api/deadletters", responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
async fn list_dead_letters(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    person.require(Role::Viewer)?;
    Ok(Json(app.engine.store().call(|s| s.dead_letters()).await?))
}

/// Queue a dead letter again, due now.
#[utoipa::path(post, path = "/api/deadletters/{id}/retry", params(("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn retry_dead_letter(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    person.require(Role::Support)?;
    app.settle_dead_letter(id, &person.user, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drop a dead letter: its write is not made.
#[utoipa::path(post, path = "/api/deadletters/{id}/discard", params(("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn discard_dead_letter(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    person.require(Role::Admin)?;
    app.settle_dead_letter(id, &person.user, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Archives and deletes waiting for approval: more at once than the engine's
/// `removal_limit` are held until a person approves or cancels them.
#[utoipa::path(get, path = "/api/removals", params(("pair" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
async fn list_removals(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Query(scope): Query<RemovalScope>,
) -> Result<Json<Vec<crate::store::Removal>>, ApiError> {
    person.require(Role::Viewer)?;
    Ok(Json(
        app.engine
            .store()
            .call(move |s| s.removals(scope.pair.as_deref()))
            .await?,
    ))
}

/// Which pair's removals; every pair's without one.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RemovalScope {
    /// Only this pair.
    pub pair: Option<String>,
}

/// How many were approved or cancelled.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Settled {
    /// The count.
    pub count: usize,
}

/// Approve the waiting archives and deletes: the engine makes them on its next pass.
#[utoipa::path(post, path = "/api/removals/approve", request_body = RemovalScope,
    responses((status = 200, body = Settled), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn approve_removals(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Json(scope): Json<RemovalScope>,
) -> Result<Json<Settled>, ApiError> {
    settle_removals(&app, person, scope, true).await
}

/// Drop the waiting archives and deletes: the other records stay as they are.
#[utoipa::path(post, path = "/api/removals/cancel", request_body = RemovalScope,
    responses((status = 200, body = Settled), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn cancel_removals(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Json(scope): Json<RemovalScope>,
) -> Result<Json<Settled>, ApiError> {
    settle_removals(&app, person, scope, false).await
}

async fn settle_removals(
    app: &App,
    person: auth::Person,
    scope: RemovalScope,
    approve: bool,
) -> Result<Json<Settled>, ApiError> {
    person.require(Role::Admin)?;
    let now = app.engine.clock().now();
    let count = app
        .engine
        .store()
        .call(move |s| {
            let pair = scope.pair.as_deref();
            if approve {
                s.approve_removals(pair, &person.user, now)
            } else {
                s.cancel_removals(pair, &person.user, now)
            }
        })
        .await?;
    Ok(Json(Settled { count }))
}

/// The audit log, newest first; page back with `before`.
#[utoipa::path(get, path = "/api/audit",
    params(("action" = Option<String>, Query), ("actor" = Option<String>, Query), ("link" = Option<i64>, Query),
           ("before" = Option<i64>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
async fn audit(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    person.require(Role::Viewer)?;
    Ok(Json(
        app.engine
            .store()
            .call(move |s| s.find_audit(&filter))
            .await?,
    ))
}

/// A pair's policy file.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PolicyInfo {
    /// The pair.
    pub pair: String,
    /// The file.
    pub file: String,
    /// Its content now.
    pub source: String,
}

/// A policy's text.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// The TOML.
    pub source: String,
}

/// A policy that compiles.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Validated {
    /// The pair it names.
    pub pair: String,
    /// Fields it syncs.
    pub fields: usize,
    /// Examples it carries; all passed.
    pub examples: usize,
}

impl Validated {
    pub(super) fn of(policy: &Policy) -> Validated {
        Validated {
            pair: policy.name.clone(),
            fields: policy.fields.len(),
            examples: policy.examples,
        }
    }
}

/// Every pair's policy file.
#[utoipa::path(get, path = "/api/policies", responses((status = 200, body = [PolicyInfo]), (status = 401, body = ErrorBody)))]
async fn list_policies(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
) -> Result<Json<Vec<PolicyInfo>>, ApiError> {
    person.require(Role::Viewer)?;
    let mut out = Vec::new();
    for policy in app.engine.policies() {
        out.push(policy_info(&app, &policy.name)?);
    }
    Ok(Json(out))
}

/// One pair's policy file.
#[utoipa::path(get, path = "/api/policies/{pair}", params(("pair" = String, Path)),
    responses((status = 200, body = PolicyInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_policy(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Path(pair): Path<String>,
) -> Result<Json<PolicyInfo>, ApiError> {
    person.require(Role::Viewer)?;
    Ok(Json(policy_info(&app, &pair)?))
}

pub(super) fn policy_file(app: &App, pair: &str) -> Result<PathBuf, ApiError> {
    app.policy_files
        .get(pair)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no pair `{pair}`")))
}

pub(super) fn policy_info(app: &App, pair: &str) -> Result<PolicyInfo, ApiError> {
    let file = policy_file(app, pair)?;
    let source = std::fs::read_to_string(&file)
        .map_err(|e| ApiError::Internal(format!("reading {}: {e}", file.display())))?;
    Ok(PolicyInfo {
        pair: pair.to_string(),
        file: file.display().to_string(),
        source,
    })
}

/// Compile `source` as the pair's policy: every problem, located, or the policy.
pub(super) fn compile(app: &App, pair: &str, source: &str) -> Result<Policy, ApiError> {
    let file = policy_file(app, pair)?;
    let schemas = crate::engine::ConfigSchemas(&app.config);
    let policy = policy::compile(&file, source, &schemas)
        .map_err(|problems| ApiError::Invalid(problems.0.iter().map(Problem::from).collect()))?;
    if policy.name != pair {
        return Err(ApiError::Invalid(vec![Problem {
            line: 0,
            column: 0,
            message: format!(
                "the policy names pair `{}`; this file is pair `{pair}`'s",
                policy.name
            ),
            hint: Some(format!("keep name = \"{pair}\"")),
        }]));
    }
    Ok(policy)
}

/// Compile a policy text and run its examples, changing nothing.
#[utoipa::path(post, path = "/api/policies/{pair}/validate", params(("pair" = String, Path)), request_body = PolicySource,
    responses((status = 200, body = Validated), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn validate_policy(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Path(pair): Path<String>,
    Json(body): Json<PolicySource>,
) -> Result<Json<Validated>, ApiError> {
    person.require(Role::Admin)?;
    let policy = compile(&app, &pair, &body.source)?;
    Ok(Json(Validated::of(&policy)))
}

/// What a policy text would do differently from the active one, over every
/// stored link; writes nothing.
#[utoipa::path(post, path = "/api/policies/{pair}/preview", params(("pair" = String, Path)), request_body = PolicySource,
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn preview_policy(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Path(pair): Path<String>,
    Json(body): Json<PolicySource>,
) -> Result<Json<crate::inspect::Preview>, ApiError> {
    person.require(Role::Admin)?;
    let new = compile(&app, &pair, &body.source)?;
    Ok(Json(app.preview_policy(new).await?))
}

/// Save a policy text to the pair's file if it compiles; the engine activates
/// it on its next pass, as for any edit of the file.
#[utoipa::path(put, path = "/api/policies/{pair}", params(("pair" = String, Path)), request_body = PolicySource,
    responses((status = 200, body = Validated), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn save_policy(
    State(app): State<Arc<App>>,
    ApiPerson(person): ApiPerson,
    Path(pair): Path<String>,
    Json(body): Json<PolicySource>,
) -> Result<Json<Validated>, ApiError> {
    person.require(Role::Admin)?;
    Ok(Json(
        app.save_policy(&person.user, &pair, &body.source).await?,
    ))
}

impl App {
    /// Check a name and password and open a session: the cookie and the session.
    pub async fn sign_in(
        &self,
        jar: CookieJar,
        name: &str,
        password: &str,
    ) -> Result<(CookieJar, SessionInfo), ApiError> {
        if let Err(wait) = self.limits.check(name) {
            return Err(ApiError::TooMany(wait.as_secs().max(1)));
        }
        let users = self.users.clone();
        let (name_owned, password) = (name.to_string(), password.to_string());
        let role = tokio::task::spawn_blocking(move || users.verify(&name_owned, &password))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let now = self.engine.clock().now();
        let Some(role) = role else {
            let detail = serde_json::json!({ "name": name });
            self.engine
                .store()
                .call(move |s| s.audit_person("anonymous", "sign_in_refused", None, &detail, now))
                .await?;
            return Err(ApiError::Unauthorized);
        };
        let (token, session) = auth::new_session(name, role, self.session, now);
        let hash = auth::token_hash(&token);
        let row = session.clone();
        self.engine
            .store()
            .call(move |s| s.create_session(&hash, &row, now))
            .await?;
        let cookie = Cookie::build((COOKIE, token))
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(time::Duration::seconds(self.session.as_secs() as i64))
            .build();
        Ok((
            jar.add(cookie),
            SessionInfo {
                user: session.user,
                role: session.role,
                csrf: session.csrf,
            },
        ))
    }

    /// End a session and clear its cookie.
    pub async fn sign_out(
        &self,
        jar: CookieJar,
        person: &auth::Person,
    ) -> Result<CookieJar, ApiError> {
        let hash = person.token_hash.clone();
        self.engine
            .store()
            .call(move |s| s.end_session(&hash))
            .await?;
        Ok(jar.remove(Cookie::build(COOKIE).path("/")))
    }

    /// Per pair: counts, polls and lag, API requests, the active policy.
    pub async fn status(&self) -> Result<Status, ApiError> {
        let now = self.engine.clock().now();
        let mut pairs = Vec::new();
        for policy in self.engine.policies() {
            let name = policy.name.clone();
            let sides = [policy.left.clone(), policy.right.clone()];
            let (counts, polls, version, removals, health) = self
                .engine
                .store()
                .call(move |s| {
                    Ok((
                        s.counts(&name)?,
                        s.last_polls(&name)?,
                        s.policy_version(&name, true)?,
                        s.removals(Some(&name))?.len(),
                        [
                            s.connector_health(&sides[0], now)?,
                            s.connector_health(&sides[1], now)?,
                        ],
                    ))
                })
                .await?;
            let connectors = [&policy.left, &policy.right]
                .into_iter()
                .zip(polls)
                .zip(health)
                .map(|((name, poll), health)| {
                    let traffic = self.engine.traffic(name);
                    ConnectorStatus {
                        name: name.clone(),
                        last_poll: poll,
                        lag_seconds: poll.map(|at| (now - at).max(0) / 1000),
                        requests: traffic.map(|t| t.requests),
                        throttled: traffic.map(|t| t.throttled),
                        circuit: self
                            .engine
                            .breaker(name)
                            .map_or(health.breaker, |b| b.state),
                        health,
                    }
                })
                .collect();
            pairs.push(PairStatus {
                pair: policy.name.clone(),
                links: counts.links,
                in_sync: counts.in_sync,
                open_conflicts: counts.open_conflicts,
                queued_writes: counts.pending_writes,
                dead_letters: counts.dead_letters,
                staged: counts.inbox,
                removals_waiting: removals,
                connectors,
                policy: version,
            });
        }
        Ok(Status { now, pairs })
    }

    /// Retry (`retry`) or discard a dead letter as `who`; 404 if there is none `id`.
    pub async fn settle_dead_letter(
        &self,
        id: i64,
        who: &str,
        retry: bool,
    ) -> Result<(), ApiError> {
        let (who, now) = (who.to_string(), self.engine.clock().now());
        let done = self
            .engine
            .store()
            .call(move |s| {
                if retry {
                    s.retry_dead_letter(id, &who, now)
                } else {
                    s.discard_dead_letter(id, &who, now)
                }
            })
            .await?;
        if done {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("no dead letter #{id}")))
        }
    }

    /// What a compiled policy would do differently from its pair's active one.
    pub async fn preview_policy(&self, new: Policy) -> Result<crate::inspect::Preview, ApiError> {
        let active = self
            .engine
            .policy_named(&new.name)
            .ok_or_else(|| ApiError::NotFound(format!("no pair `{}`", new.name)))?;
        Ok(self
            .engine
            .store()
            .call(move |s| crate::inspect::preview(s, &active, &new))
            .await?)
    }

    /// Save a policy text to the pair's file if it compiles, audit it as `who`'s,
    /// and have the engine look at it now.
    pub async fn save_policy(
        &self,
        who: &str,
        pair: &str,
        source: &str,
    ) -> Result<Validated, ApiError> {
        let policy = compile(self, pair, source)?;
        let file = policy_file(self, pair)?;
        let saved = file.with_extension("toml.saving");
        std::fs::write(&saved, source)
            .and_then(|()| std::fs::rename(&saved, &file))
            .map_err(|e| ApiError::Internal(format!("writing {}: {e}", file.display())))?;
        let detail = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(source.as_bytes())),
        });
        let (who, now, pair_name) = (who.to_string(), self.engine.clock().now(), pair.to_string());
        self.engine
            .store()
            .call(move |s| s.audit_person(&who, "policy_saved", Some(&pair_name), &detail, now))
            .await?;
        self.engine.recheck_policies().await;
        Ok(Validated::of(&policy))
    }
}

/// What `GET /api/status` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The engine's clock, ms since the epoch.
    pub now: i64,
    /// Each pair.
    pub pairs: Vec<PairStatus>,
}

/// One pair's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairStatus {
    /// The pair.
    pub pair: String,
    /// Linked records.
    pub links: u64,
    /// Links with no open conflict and no queued or dead write.
    pub in_sync: u64,
    /// Conflicts waiting for a person.
    pub open_conflicts: u64,
    /// Writes waiting in the outbox.
    pub queued_writes: u64,
    /// Writes parked after too many failures.
    pub dead_letters: u64,
    /// Records read and not yet reconciled.
    pub staged: u64,
    /// Archives and deletes no person approved yet (held beyond the limit).
    pub removals_waiting: usize,
    /// The two connectors, left then right.
    pub connectors: Vec<ConnectorStatus>,
    /// The active policy version.
    pub policy: Option<crate::store::PolicyVersion>,
}

/// One connector's polls and traffic.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectorStatus {
    /// The connector.
    pub name: String,
    /// When its last full poll finished.
    pub last_poll: Option<i64>,
    /// Seconds since then.
    pub lag_seconds: Option<i64>,
    /// API requests sent since start.
    pub requests: Option<u64>,
    /// Answers that throttled (429) since start.
    pub throttled: Option<u64>,
    /// Its circuit breaker now.
    pub circuit: tandem_core::breaker::BreakerState,
    /// Calls and webhooks today, as recorded in the store.
    pub health: crate::store::ConnectorHealth,
}

impl IntoResponse for SessionInfo {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}
