//! How the API says no: a status code and a JSON body `{"error": "..."}`, with
//! the compile problems of a refused policy where there are some.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::{ResolveError, StoreError};

/// A refused or failed API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not signed in, or the session ended.
    #[error("sign in first")]
    Unauthorized,
    /// Signed in, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The request does not make sense.
    #[error("{0}")]
    BadRequest(String),
    /// It cannot be done in the current state.
    #[error("{0}")]
    Conflict(String),
    /// A policy that does not compile: every problem, located.
    #[error("the policy does not compile")]
    Invalid(Vec<Problem>),
    /// Too many attempts; try again after this many seconds.
    #[error("too many sign-in attempts; try again in {0} s")]
    TooMany(u64),
    /// Something broke on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

/// One compile problem of a policy, located.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// 1-based line, 0 for the whole file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl From<&crate::location::Located> for Problem {
    fn from(located: &crate::location::Located) -> Self {
        Problem {
            line: located.line,
            column: located.column,
            message: located.message.clone(),
            hint: located.hint.clone(),
        }
    }
}

/// The body of every refusal.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// A refused policy's problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

impl ApiError {
    /// Its status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(why) = &self {
            tracing::error!(error = %why, "An API request failed.");
        }
        let status = self.status();
        let retry = match &self {
            ApiError::TooMany(seconds) => Some(*seconds),
            _ => None,
        };
        let problems = match &self {
            ApiError::Invalid(problems) => problems.clone(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: match &self {
                ApiError::Internal(_) => "internal error; see the engine's log".to_string(),
                other => other.to_string(),
            },
            problems,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("digits"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ResolveError::NotOpen(_) => ApiError::Conflict(e.to_string()),
            ResolveError::Invalid { .. } => ApiError::BadRequest(e.to_string()),
            ResolveError::Store(e) => e.into(),
        }
    }
}
