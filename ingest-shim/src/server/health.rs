//! `/healthz` (the process is up), `/readyz` (the stores answer), `/metrics`.

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the state store answers (the funnel read is one item / one small table): a bare
/// "ready" or "not ready" (503), for load balancers on the public port — the reason is logged,
/// and shown on the operations listener ([`readyz_detailed`]).
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.pipeline.store.funnel().await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the state store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        }
    }
}

/// As [`readyz`], with the reasons: the state store's error, and on a second line a credentials
/// or TLS problem with OCP (it does not decide readiness — stage 1 takes uploads without OCP).
pub async fn readyz_detailed(State(state): State<AppState>) -> impl IntoResponse {
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
    // Oldest first: the first call received and not stored is the backlog's age.
    if let Ok(page) = state.pipeline.store.unfinished(1, None).await {
        let age = page
            .items
            .first()
            .and_then(|r| r.flags.received)
            .map_or(0, |received| {
                jiff::Timestamp::now()
                    .duration_since(received)
                    .as_secs()
                    .max(0)
            });
        m.oldest_unstored_age.set(age);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        m.render(),
    )
}
