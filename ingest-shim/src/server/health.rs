//! `/healthz` (the process is up), `/readyz` (the stores answer), `/metrics`.

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the state store answers (the funnel read is one item / one small table). OCP's
/// state does not decide readiness — stage 1 takes uploads without it — but a credentials or
/// TLS problem with OCP is reported on a second line, for whoever looks.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let ocp = state
        .ocp
        .as_ref()
        .and_then(|ocp| ocp.health().problem())
        .map(|p| {
            format!(
                "\nOCP: {} problem since {}: stage 2 waits ({})",
                p.kind, p.since, p.message
            )
        })
        .unwrap_or_default();
    match state.pipeline.store.funnel().await {
        Ok(_) => (StatusCode::OK, format!("ready{ocp}")),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {e}{ocp}"),
        ),
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    m.queue_depth
        .set((state.config.queue_depth - state.queue.available_permits()) as i64);
    if let Ok(funnel) = state.pipeline.store.funnel().await {
        for (name, value) in funnel.flags().into_iter().chain(funnel.statuses()) {
            m.calls.with_label_values(&[name]).set(value as i64);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        m.render(),
    )
}
