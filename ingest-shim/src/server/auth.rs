//! Bearer-token authentication: writes need a write token (`server.bearer_tokens`); reads — a
//! call's state, the metrics — need a read token (`server.read_tokens`) or a write token.
//! Missing or wrong: 401. Tokens are compared in constant time and never logged.

use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq as _;

/// The token of `Authorization: Bearer <token>`, if the request has one.
fn presented(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Whether `token` is one of `known`, folding over all of them: the time taken does not say
/// which one matched, or how much of one did.
fn one_of<'a>(known: impl Iterator<Item = &'a String>, token: &str) -> bool {
    known.fold(false, |ok, k| {
        ok | bool::from(k.as_bytes().ct_eq(token.as_bytes()))
    })
}

fn refuse(state: &AppState) -> ApiError {
    state
        .metrics
        .rejected
        .with_label_values(&["unauthorized"])
        .inc();
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid `Authorization: Bearer <token>` is required",
    )
}

/// Lets the request through only with a write token.
pub async fn require_bearer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let config = &state.config;
    if !presented(&request).is_some_and(|t| one_of(config.bearer_tokens.iter(), t)) {
        return Err(refuse(&state));
    }
    Ok(next.run(request).await)
}

/// Lets the request through with a read token or a write token.
pub async fn require_reader(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let config = &state.config;
    let tokens = config.read_tokens.iter().chain(&config.bearer_tokens);
    if !presented(&request).is_some_and(|t| one_of(tokens, t)) {
        return Err(refuse(&state));
    }
    Ok(next.run(request).await)
}
