//! `callrec serve`: the HTTP interface of DESIGN.md ("The service's HTTP interface (v1)").
//!
//! One file per endpoint group: [`cdr`] (`POST /v1/cdr`), [`audio`] (`PUT
//! /v1/calls/{call_id}/audio`), [`calls`] (`GET /v1/calls/{call_id}`), [`health`] (`/healthz`,
//! `/readyz`, `/metrics`); [`auth`] guards the writes. Backpressure is a semaphore of
//! `server.queue_depth` permits: an upload takes one before its body is read and gives it back
//! when its call is stored (or fails), so a full pipeline answers 503 with `Retry-After` and
//! memory never grows with the load. Shutdown: stop accepting, finish the requests in flight,
//! then the calls in the pipeline, then exit.

pub mod audio;
pub mod auth;
pub mod calls;
pub mod cdr;
pub mod health;
pub mod listener;
pub mod work;

use crate::config::ServerConfig;
use crate::pipeline::Pipeline;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    pub config: Arc<ServerConfig>,
    /// Permits for recordings between upload and stored.
    pub queue: Arc<Semaphore>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The processing tasks, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// OCP's Exports API, when OCP is configured: stage 2 uses it, `/readyz` reports its
    /// credentials or TLS problems.
    pub ocp: Option<Arc<dyn crate::ocp::OcpExports>>,
    /// The OCP group of native CDR records posted without `?group=` or `X-OCP-Group`.
    pub default_group: Option<String>,
}

/// An error answer: `{"error": kind, "message": …}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// A store or object-store failure: the service cannot answer now. The details go to the
    /// log; the caller gets a generic answer (backend error text is not for outsiders).
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %error, "answering 503: a store cannot answer");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service cannot answer now; retry later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({"error": self.kind, "message": self.message}));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

/// The router with every route, its limits and its guards: writes need a write token, reads a
/// read or write token; `/healthz` and `/readyz` (a bare "ready" / "not ready", for load
/// balancers) need none.
pub fn router(state: AppState) -> Router {
    let writes = Router::new()
        .route("/v1/cdr", post(cdr::post_cdr))
        .route("/v1/calls/{call_id}/audio", put(audio::put_audio))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    let reads = Router::new()
        .route("/v1/calls/{call_id}", get(calls::get_call))
        .route("/metrics", get(health::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_reader,
        ));
    let open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    let timeout = Duration::from_secs(state.config.request_timeout_s);
    writes
        .merge(reads)
        .merge(open)
        // CDR batches are small; recordings are streamed and limited by the audio handler.
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

/// The operations listener's router (`server.admin_listen`): `/healthz`, `/readyz` with its
/// details (the state store's error, an OCP credentials or TLS problem) and `/metrics`, without
/// tokens — for where only the platform reaches.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz_detailed))
        .route("/metrics", get(health::metrics))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

pub use work::{resume, spawn_retrier};

/// Serves the operations router on `listener` until `shutdown` completes.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listener::ConnectionLimits {
        header_timeout: Duration::from_secs(state.config.header_timeout_s),
        max_connections: 64,
    };
    listener::serve_connections(listener, admin_router(state), limits, shutdown).await
}

/// Serves on `listener` until `shutdown` completes, then drains: requests in flight finish,
/// then every call already accepted is taken to `stored` (or its failure recorded).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tasks = state.tasks.clone();
    let limits = listener::ConnectionLimits {
        header_timeout: Duration::from_secs(state.config.header_timeout_s),
        max_connections: state.config.max_connections,
    };
    listener::serve_connections(listener, router(state), limits, shutdown).await?;
    tasks.close();
    tasks.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_503_tells_the_caller_nothing_of_the_backend() {
        let backend = crate::store::StoreError::Unavailable {
            backend: "dynamodb",
            message: "arn:aws:dynamodb:eu-west-1:123456789012:table/calls throttled".into(),
        };
        let response = ApiError::unavailable(backend).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("\"unavailable\""), "{text}");
        for secret in ["dynamodb", "arn:", "123456789012", "throttled"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
