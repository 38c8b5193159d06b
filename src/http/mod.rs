//! The engine's HTTP listener: webhook intake, a health check, and for people
//! the JSON API (`api`) and the web page (`web`) behind sign-in (`auth`). The only engine module that
//! knows axum.
//!
//! A webhook is verified, its hints are recorded, and it is answered at once;
//! the run loop then fetches the records and reconciles them (a webhook is a
//! hint, never data). Bodies are bounded, and refusals say no more than the
//! status code.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tandem_core::WebhookError;
use tandem_core::clock::now_millis;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConnectorSettings};
use crate::engine::Engine;
use crate::location::Located;

pub mod api;
pub mod auth;
pub mod error;
pub mod web;

/// What the API serves from: the engine, the people who may sign in, and
/// where each pair's policy file is.
pub struct App {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The configuration.
    pub config: Config,
    /// People who may sign in.
    pub users: Arc<auth::Users>,
    /// Sign-in attempts allowed.
    pub limits: auth::SignInLimits,
    /// How long a session lasts.
    pub session: std::time::Duration,
    /// Whether cookies are sent over HTTPS only (when the public URL is https).
    pub secure_cookies: bool,
    /// Each pair's policy file.
    pub policy_files: BTreeMap<String, std::path::PathBuf>,
}

impl App {
    /// The API of `engine`, if the configuration names people who may sign in.
    pub fn new(config: &Config, engine: Arc<Engine>) -> Result<Option<App>, Located> {
        let Some(http) = &config.http else {
            return Ok(None);
        };
        if http.users.is_empty() {
            return Ok(None);
        }
        let users = auth::Users::new(http, &config.file)?;
        let policy_files = engine
            .policies()
            .iter()
            .map(|p| (p.name.clone(), p.file.clone()))
            .collect();
        Ok(Some(App {
            engine,
            config: config.clone(),
            users: Arc::new(users),
            limits: auth::SignInLimits::new(),
            session: http.session,
            secure_cookies: http.public_url.starts_with("https://"),
            policy_files,
        }))
    }

    /// The routes.
    pub fn router(self: Arc<Self>) -> Router {
        api::router()
            .merge(web::router())
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

/// The largest webhook body accepted; HubSpot batches at most 100 small events.
pub const MAX_BODY: usize = 1 << 20;

enum Verifier {
    HubSpot(tandem_hubspot::webhook::Verifier),
    Mailchimp(tandem_mailchimp::webhook::Verifier),
}

/// Webhook intake for the connectors that have webhook secrets configured.
pub struct Intake {
    engine: Arc<Engine>,
    public_url: String,
    verifiers: BTreeMap<String, Verifier>,
    app: Option<Arc<App>>,
}

impl Intake {
    /// Read the webhook secrets of every connector that has them.
    pub fn new(config: &Config, engine: Arc<Engine>) -> Result<Intake, Located> {
        let mut verifiers = BTreeMap::new();
        for (name, settings) in &config.connectors {
            let verifier = match settings {
                ConnectorSettings::HubSpot {
                    client_secret: Some(secret),
                    legacy_signatures,
                    ..
                } => Verifier::HubSpot(tandem_hubspot::webhook::Verifier::new(
                    secret.read()?,
                    *legacy_signatures,
                )),
                ConnectorSettings::Mailchimp {
                    webhook_secret: Some(secret),
                    webhook_signing_secret,
                    ..
                } => {
                    let signing = webhook_signing_secret
                        .as_ref()
                        .map(|s| s.read())
                        .transpose()?;
                    Verifier::Mailchimp(tandem_mailchimp::webhook::Verifier::new(
                        secret.read()?,
                        signing,
                    ))
                }
                _ => continue,
            };
            verifiers.insert(name.clone(), verifier);
        }
        let public_url = config
            .http
            .as_ref()
            .map(|h| h.public_url.clone())
            .unwrap_or_default();
        let app = App::new(config, engine.clone())?.map(Arc::new);
        crate::telemetry::handle();
        Ok(Intake {
            engine,
            public_url,
            verifiers,
            app,
        })
    }

    /// The connectors that take webhooks, and the URL each should be registered at.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        self.verifiers
            .keys()
            .map(|name| (name.clone(), format!("{}/webhooks/{name}", self.public_url)))
            .collect()
    }

    /// Whether the API for people is served (the configuration names users).
    pub fn serves_people(&self) -> bool {
        self.app.is_some()
    }

    /// The routes.
    pub fn router(self: Arc<Self>) -> Router {
        let app = self.app.clone();
        let intake = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(metrics_page))
            .route("/webhooks/{connector}", get(validate).post(receive))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self);
        match app {
            Some(app) => intake.merge(app.router()),
            None => intake,
        }
    }

    /// Serve until `shutdown` fires.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let router = Arc::new(self).router();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

/// Prometheus' text format.
async fn metrics_page() -> Response {
    match crate::telemetry::render() {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are off in this process",
        )
            .into_response(),
    }
}

/// How long `/readyz` waits for the state store.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the state store answers for every pair within [`READY_WAIT`]:
/// 200 `ready`, else 503 with why. `/healthz` only says the process is up.
async fn ready(State(intake): State<Arc<Intake>>) -> Response {
    let pairs: Vec<String> = intake
        .engine
        .policies()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    if pairs.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no pair is configured").into_response();
    }
    let asked = intake.engine.store().call(move |s| {
        for pair in &pairs {
            s.counts(pair)?;
        }
        Ok(())
    });
    // A store held up (a stuck disk, a long lock) must not hold up the probe.
    let Ok(answered) = tokio::time::timeout(READY_WAIT, asked).await else {
        tracing::error!(
            wait_ms = READY_WAIT.as_millis() as u64,
            "Not ready: the state store did not answer in time."
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the state store did not answer in time",
        )
            .into_response();
    };
    match answered {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => {
            tracing::error!(%error, "Not ready: the state store does not answer.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the state store does not answer",
            )
                .into_response()
        }
    }
}

/// Mailchimp checks a new webhook URL with a GET, which carries no secret.
async fn validate(State(intake): State<Arc<Intake>>, Path(connector): Path<String>) -> Response {
    match intake.verifiers.get(&connector) {
        Some(Verifier::Mailchimp(_)) => (StatusCode::OK, "ok").into_response(),
        Some(Verifier::HubSpot(_)) => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn receive(
    State(intake): State<Arc<Intake>>,
    Path(connector): Path<String>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(verifier) = intake.verifiers.get(&connector) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now = now_millis();
    let hints = match verifier {
        Verifier::HubSpot(verifier) => {
            let full_uri = format!(
                "{}{}",
                intake.public_url,
                uri.path_and_query().map_or("", |p| p.as_str())
            );
            let request = tandem_hubspot::webhook::Request {
                method: "POST",
                uri: &full_uri,
                headers: &headers,
                body: &body,
                now,
            };
            verifier
                .verify(&request)
                .and_then(|()| tandem_hubspot::webhook::decode(&body))
        }
        Verifier::Mailchimp(verifier) => {
            let secret = query
                .iter()
                .find(|(k, _)| k == "secret")
                .map(|(_, v)| v.as_str());
            verifier
                .verify(secret, &headers, &body, now)
                .and_then(|()| tandem_mailchimp::webhook::decode(&body))
        }
    };
    let hints = match hints {
        Ok(hints) => hints,
        Err(error) => {
            tracing::warn!(connector, %error, "Webhook refused.");
            if let Err(error) = intake.engine.note_refused_webhook(&connector).await {
                tracing::warn!(connector, %error, "A refused webhook could not be counted.");
            }
            let status = match error {
                WebhookError::Forged | WebhookError::Stale => StatusCode::UNAUTHORIZED,
                WebhookError::Malformed(_) => StatusCode::BAD_REQUEST,
            };
            return status.into_response();
        }
    };
    let count = hints.len();
    match intake.engine.record_hints(&connector, hints).await {
        Ok(new) => {
            tracing::debug!(connector, hints = count, new, "Webhook recorded.");
            StatusCode::OK.into_response()
        }
        // The vendor retries a failed delivery; nothing is lost by refusing it now.
        Err(error) => {
            tracing::error!(connector, %error, "Webhook could not be recorded.");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
