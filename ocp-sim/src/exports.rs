//! OCP's Exports API, simulated: what reconciliation talks to.
//!
//! - `POST /oauth/token` — OpenID Connect password grant (form: `grant_type=password`,
//!   `username`, `password`, `client_id`) → `{"access_token", "token_type": "Bearer",
//!   "expires_in"}`.
//! - `POST /exports/v1/groups/{group_id}/exports` — `{"from", "to", "data_types": ["audio",
//!   "cdr"]}` (RFC 3339, whole hours, 1 hour to 2 days, else 400; one running export per group,
//!   else 409) → 201 `{"export_id", "status"}`.
//! - `GET /exports/v1/exports/{export_id}` → `{"export_id", "group_id", "from", "to", "status"}`:
//!   `pending`, then `running`, then `completed` after the configured delay; `expired` once the
//!   data is older than the configured lifetime (OCP keeps it a day).
//! - `GET /exports/v1/exports/{export_id}/files?page_token=&page_size=` (completed exports) →
//!   `{"files": [{"name", "type": "audio" | "cdr", "size"}], "next_page_token"}`; audio files are
//!   named `{groupId}~{accountId}~{dialogTimestamp}~{dialogId}.wav`, each with a
//!   `{…}.cdr.json` beside it.
//! - `GET /exports/v1/exports/{export_id}/files/{name}` → the file; 410 once expired.
//!
//! Every request but the token's needs `Authorization: Bearer <token>` (401). Injectable
//! faults: a 429 with `Retry-After` every Nth request, a 503 every Mth, and a share of audio
//! files left out of exports.

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One recording OCP holds (streamed or not), with its CDR.
#[derive(Debug, Clone)]
pub struct Recording {
    pub group_id: String,
    pub account_id: String,
    pub dialog_id: String,
    /// The dialog's start: what exports filter on.
    pub dialog_time: Timestamp,
    pub wav: Bytes,
    pub cdr: serde_json::Value,
}

impl Recording {
    /// `{groupId}~{accountId}~{dialogTimestamp}~{dialogId}.wav`, the timestamp as
    /// `YYYYMMDDhhmmssSSS` in UTC.
    pub fn file_name(&self) -> String {
        format!(
            "{}~{}~{}~{}.wav",
            self.group_id,
            self.account_id,
            self.dialog_time.strftime("%Y%m%d%H%M%S%3f"),
            self.dialog_id
        )
    }
}

/// The simulated API's behaviour.
#[derive(Debug, Clone)]
pub struct ExportsConfig {
    pub username: String,
    pub password: String,
    /// Access tokens live this long.
    pub token_lifetime: Duration,
    /// From creation to `completed` (half of it `pending`, half `running`).
    pub completion_delay: Duration,
    /// From creation to `expired`.
    pub data_lifetime: Duration,
    /// Largest page of a file listing.
    pub max_page_size: usize,
    /// Answer 429 (with `Retry-After: 1`) to every Nth authenticated request.
    pub rate_limit_every: Option<u64>,
    /// Answer 503 to every Mth authenticated request.
    pub unavailable_every: Option<u64>,
    /// Share of audio files an export leaves out (they stay in OCP for a later export).
    pub omit_rate: f64,
}

impl ExportsConfig {
    /// No faults, exports done in 2 s, data kept a day.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        ExportsConfig {
            username: username.into(),
            password: password.into(),
            token_lifetime: Duration::from_secs(3600),
            completion_delay: Duration::from_secs(2),
            data_lifetime: Duration::from_secs(86_400),
            max_page_size: 100,
            rate_limit_every: None,
            unavailable_every: None,
            omit_rate: 0.0,
        }
    }
}

struct Export {
    group_id: String,
    from: Timestamp,
    to: Timestamp,
    created: Instant,
    /// Indexes into the recordings, fixed at creation.
    files: Vec<usize>,
}

struct Inner {
    config: ExportsConfig,
    recordings: Vec<Recording>,
    tokens: Mutex<HashMap<String, Instant>>,
    exports: Mutex<HashMap<String, Export>>,
    requests: AtomicU64,
    next_id: AtomicU64,
}

/// The Exports API's state: share it with [`router`].
#[derive(Clone)]
pub struct ExportsApi(Arc<Inner>);

impl ExportsApi {
    pub fn new(config: ExportsConfig, recordings: Vec<Recording>) -> Self {
        ExportsApi(Arc::new(Inner {
            config,
            recordings,
            tokens: Mutex::new(HashMap::new()),
            exports: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        }))
    }

    /// Exports created so far.
    pub fn exports_created(&self) -> u64 {
        self.0.next_id.load(Ordering::Relaxed) - 1
    }
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({"error": kind, "message": message.into()})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    username: String,
    password: String,
}

async fn token(State(api): State<ExportsApi>, Form(form): Form<TokenForm>) -> Response {
    let config = &api.0.config;
    if form.grant_type != "password" {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "password grant only",
        );
    }
    if form.username != config.username || form.password != config.password {
        return error(StatusCode::UNAUTHORIZED, "invalid_grant", "bad credentials");
    }
    let token = format!("ocp-{:032x}", rand_token(&api));
    api.0
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone(), Instant::now() + config.token_lifetime);
    Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": config.token_lifetime.as_secs(),
    }))
    .into_response()
}

fn rand_token(api: &ExportsApi) -> u128 {
    // Unique and unguessable enough for a simulator: a counter mixed with the clock.
    let n = api.0.requests.fetch_add(1, Ordering::Relaxed) as u128;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (t << 20) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
}

/// Authentication and injected faults, before any handler.
fn gate(api: &ExportsApi, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = presented.is_some_and(|t| {
        api.0
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(t)
            .is_some_and(|until| *until > Instant::now())
    });
    if !valid {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or expired token",
        ));
    }
    let n = api.0.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let config = &api.0.config;
    if config.rate_limit_every.is_some_and(|k| n.is_multiple_of(k)) {
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return Some(response);
    }
    if config
        .unavailable_every
        .is_some_and(|k| n.is_multiple_of(k))
    {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "try again",
        ));
    }
    None
}

fn status_of(api: &ExportsApi, export: &Export) -> &'static str {
    let age = export.created.elapsed();
    let config = &api.0.config;
    if age >= config.data_lifetime {
        "expired"
    } else if age >= config.completion_delay {
        "completed"
    } else if age >= config.completion_delay / 2 {
        "running"
    } else {
        "pending"
    }
}

#[derive(Deserialize)]
struct CreateExport {
    from: Timestamp,
    to: Timestamp,
    #[serde(default)]
    data_types: Vec<String>,
}

async fn create_export(
    State(api): State<ExportsApi>,
    Path(group_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<CreateExport>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = gate(&api, &headers) {
        return refused;
    }
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected {from, to, data_types}",
        );
    };
    let whole_hours = |t: Timestamp| t.as_second() % 3600 == 0 && t.subsec_nanosecond() == 0;
    let length = body.to.duration_since(body.from);
    if !whole_hours(body.from) || !whole_hours(body.to) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_range",
            "from and to must be whole hours",
        );
    }
    if length < SignedDuration::from_hours(1) || length > SignedDuration::from_hours(48) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_range",
            "an export covers 1 hour to 2 days",
        );
    }
    if body.data_types.iter().any(|d| d != "audio" && d != "cdr") {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data_type",
            "data_types: audio, cdr",
        );
    }
    let mut exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
    let running = exports
        .values()
        .any(|e| e.group_id == group_id && matches!(status_of(&api, e), "pending" | "running"));
    if running {
        return error(
            StatusCode::CONFLICT,
            "export_running",
            format!("group {group_id} already has a running export"),
        );
    }
    let number = api.0.next_id.fetch_add(1, Ordering::Relaxed);
    let omit = api.0.config.omit_rate;
    let files = api
        .0
        .recordings
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.group_id == group_id && body.from <= r.dialog_time && r.dialog_time < body.to
        })
        // Left out deterministically by position, so a later export of the range has them.
        .filter(|(i, _)| {
            omit <= 0.0 || ((i * 7919 + number as usize) % 1000) as f64 >= omit * 1000.0
        })
        .map(|(i, _)| i)
        .collect();
    let id = format!("export-{number:06}");
    exports.insert(
        id.clone(),
        Export {
            group_id,
            from: body.from,
            to: body.to,
            created: Instant::now(),
            files,
        },
    );
    (
        StatusCode::CREATED,
        Json(serde_json::json!({"export_id": id, "status": "pending"})),
    )
        .into_response()
}

async fn get_export(
    State(api): State<ExportsApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&api, &headers) {
        return refused;
    }
    let exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
    match exports.get(&id) {
        Some(e) => Json(serde_json::json!({
            "export_id": id,
            "group_id": e.group_id,
            "from": e.from,
            "to": e.to,
            "status": status_of(&api, e),
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no export {id}"),
        ),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    page_token: Option<String>,
    page_size: Option<usize>,
}

async fn list_files(
    State(api): State<ExportsApi>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&api, &headers) {
        return refused;
    }
    let exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
    let Some(export) = exports.get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no export {id}"),
        );
    };
    match status_of(&api, export) {
        "completed" => {}
        "expired" => return error(StatusCode::GONE, "expired", "the export's data has expired"),
        other => {
            return error(
                StatusCode::CONFLICT,
                "not_ready",
                format!("the export is {other}"),
            );
        }
    }
    // Two entries per recording: its audio and its CDR.
    let start: usize = match page.page_token.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_page_token",
                "not a page token",
            );
        }
    };
    let size = page
        .page_size
        .unwrap_or(50)
        .clamp(1, api.0.config.max_page_size);
    let total = export.files.len() * 2;
    let files: Vec<serde_json::Value> = (start..total.min(start + size))
        .map(|k| {
            let recording = &api.0.recordings[export.files[k / 2]];
            let name = recording.file_name();
            if k % 2 == 0 {
                serde_json::json!({"name": name, "type": "audio", "size": recording.wav.len()})
            } else {
                let cdr = serde_json::to_vec(&recording.cdr).unwrap_or_default();
                serde_json::json!({"name": format!("{}.cdr.json", name.trim_end_matches(".wav")), "type": "cdr", "size": cdr.len()})
            }
        })
        .collect();
    let next = (start + size < total).then(|| (start + size).to_string());
    Json(serde_json::json!({"files": files, "next_page_token": next})).into_response()
}

async fn get_file(
    State(api): State<ExportsApi>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&api, &headers) {
        return refused;
    }
    let exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
    let Some(export) = exports.get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no export {id}"),
        );
    };
    if status_of(&api, export) == "expired" {
        return error(StatusCode::GONE, "expired", "the export's data has expired");
    }
    for &i in &export.files {
        let recording = &api.0.recordings[i];
        let audio = recording.file_name();
        if name == audio {
            return ([("content-type", "audio/wav")], recording.wav.clone()).into_response();
        }
        if name == format!("{}.cdr.json", audio.trim_end_matches(".wav")) {
            return Json(recording.cdr.clone()).into_response();
        }
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no file {name} in {id}"),
    )
}

/// The routes of the simulated Exports API.
pub fn router(api: ExportsApi) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/exports/v1/groups/{group_id}/exports", post(create_export))
        .route("/exports/v1/exports/{export_id}", get(get_export))
        .route("/exports/v1/exports/{export_id}/files", get(list_files))
        .route(
            "/exports/v1/exports/{export_id}/files/{name}",
            get(get_file),
        )
        .with_state(api)
}
