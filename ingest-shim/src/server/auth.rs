//! Bearer-token authentication of the write endpoints (401 without a valid token).

use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq as _;

/// Lets the request through only with `Authorization: Bearer <one of server.bearer_tokens>`.
/// Tokens are compared in constant time and never logged.
pub async fn require_bearer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let accepted = presented.is_some_and(|token| {
        state
            .config
            .bearer_tokens
            .iter()
            // Fold over all tokens: the time taken does not say which one matched.
            .fold(false, |ok, known| {
                ok | bool::from(known.as_bytes().ct_eq(token.as_bytes()))
            })
    });
    if !accepted {
        state
            .metrics
            .rejected
            .with_label_values(&["unauthorized"])
            .inc();
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` is required",
        ));
    }
    Ok(next.run(request).await)
}
