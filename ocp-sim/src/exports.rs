//! OCP's Exports API, simulated: what reconciliation talks to.
//!
//! - `POST /oauth/token` — OpenID Connect password grant (form: `grant_type=password`,
//!   `username`, `password`, `client_id`) → `{"access_token", "token_type": "Bearer",
//!   "expires_in"}`.
//! - `POST /exports/v1/groups/{group_id}/exports` — `{"from", "to", "data_types": ["audio",
//!   "cdr"], "idempotency_key"}` (RFC 3339, whole hours, 1 hour to 2 days, else 400; one running
//!   export per group, else 409) → 201 `{"export_id", "status"}`. The same `idempotency_key`
//!   again answers 200 with the export it created (a retried create makes one export); with
//!   another group or range, 422.
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
//! faults: a 429 with `Retry-After` every Nth request, a 503 every Mth, a share of audio files
//! left out of exports, slow exports (the completion delay) and slow downloads.
//!
//! Recordings can be added while the API serves ([`ExportsApi::add`]): the simulator adds each
//! call's as the call happens. Their audio is either held ([`Audio::held`]) or made again on
//! demand ([`Audio::lazy`]), so a simulator of thousands of calls does not hold them all.

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

/// The bytes of a recording: held, or made on demand (deterministically) by a function.
#[derive(Clone)]
pub struct Audio {
    size: u64,
    make: Arc<dyn Fn() -> Bytes + Send + Sync>,
}

impl Audio {
    /// Bytes held in memory.
    pub fn held(bytes: Bytes) -> Self {
        Audio {
            size: bytes.len() as u64,
            make: Arc::new(move || bytes.clone()),
        }
    }

    /// Bytes made by `make` whenever they are downloaded; `size` must be their length.
    pub fn lazy(size: u64, make: impl Fn() -> Bytes + Send + Sync + 'static) -> Self {
        Audio {
            size,
            make: Arc::new(make),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn bytes(&self) -> Bytes {
        (self.make)()
    }
}

impl std::fmt::Debug for Audio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Audio({} bytes)", self.size)
    }
}

/// One recording OCP holds (streamed or not), with its CDR.
#[derive(Debug, Clone)]
pub struct Recording {
    pub group_id: String,
    pub account_id: String,
    pub dialog_id: String,
    /// The dialog's start: what exports filter on.
    pub dialog_time: Timestamp,
    pub audio: Audio,
    /// The dialog's CDR, as the export's `{…}.cdr.json` file serves it.
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
    /// Each file download waits this long before answering (slow downloads).
    pub download_delay: Duration,
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
            download_delay: Duration::ZERO,
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
    recordings: std::sync::RwLock<Vec<Recording>>,
    tokens: Mutex<HashMap<String, Instant>>,
    exports: Mutex<Exports>,
    requests: AtomicU64,
    next_id: AtomicU64,
    /// Audio downloads per file name.
    downloads: Mutex<HashMap<String, u64>>,
    /// Each recording's index by its audio file name (downloads find their file in O(1)).
    by_name: std::sync::RwLock<HashMap<String, usize>>,
}

#[derive(Default)]
struct Exports {
    by_id: HashMap<String, Export>,
    /// Idempotency key → export id.
    by_key: HashMap<String, String>,
}

/// The Exports API's state: share it with [`router`].
#[derive(Clone)]
pub struct ExportsApi(Arc<Inner>);

impl ExportsApi {
    pub fn new(config: ExportsConfig, recordings: Vec<Recording>) -> Self {
        let by_name = recordings
            .iter()
            .enumerate()
            .map(|(i, r)| (r.file_name(), i))
            .collect();
        ExportsApi(Arc::new(Inner {
            by_name: std::sync::RwLock::new(by_name),
            config,
            recordings: std::sync::RwLock::new(recordings),
            tokens: Mutex::new(HashMap::new()),
            exports: Mutex::new(Exports::default()),
            requests: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            downloads: Mutex::new(HashMap::new()),
        }))
    }

    /// Adds a recording (OCP has it once its call ended); later exports of its range hold it.
    pub fn add(&self, recording: Recording) {
        let mut recordings = self.0.recordings.write().unwrap_or_else(|e| e.into_inner());
        self.0
            .by_name
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(recording.file_name(), recordings.len());
        recordings.push(recording);
    }

    /// Recordings held.
    pub fn recordings(&self) -> usize {
        self.0
            .recordings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Exports created so far.
    pub fn exports_created(&self) -> u64 {
        self.0.next_id.load(Ordering::Relaxed) - 1
    }

    /// Exports created so far per group.
    pub fn exports_by_group(&self) -> std::collections::BTreeMap<String, u64> {
        let exports = self.0.exports.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts = std::collections::BTreeMap::new();
        for export in exports.by_id.values() {
            *counts.entry(export.group_id.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Audio files downloaded so far, per file name (a name downloaded twice counts 2).
    pub fn downloads(&self) -> HashMap<String, u64> {
        self.0
            .downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

/// A number in [0, 1) from two integers (SplitMix64's finalizer).
fn unit_hash(a: u64, b: u64) -> f64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
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
    #[serde(default)]
    idempotency_key: Option<String>,
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
    if body
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 200)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_idempotency_key",
            "idempotency_key: 1 to 200 characters",
        );
    }
    let mut exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = body
        .idempotency_key
        .as_ref()
        .and_then(|k| exports.by_key.get(k))
    {
        let export = &exports.by_id[id];
        if export.group_id != group_id || export.from != body.from || export.to != body.to {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this idempotency_key created an export of another group or range",
            );
        }
        return Json(serde_json::json!({"export_id": id, "status": status_of(&api, export)}))
            .into_response();
    }
    let running = exports
        .by_id
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
    let recordings = api.0.recordings.read().unwrap_or_else(|e| e.into_inner());
    let files = recordings
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.group_id == group_id && body.from <= r.dialog_time && r.dialog_time < body.to
        })
        // Left out by a hash of (recording, export): deterministic, and independent from one
        // export to the next, so a later export of the range holds it with probability 1 − omit.
        .filter(|(i, _)| omit <= 0.0 || unit_hash(*i as u64, number) >= omit)
        .map(|(i, _)| i)
        .collect();
    drop(recordings);
    let id = format!("export-{number:06}");
    if let Some(key) = body.idempotency_key {
        exports.by_key.insert(key, id.clone());
    }
    exports.by_id.insert(
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
    match exports.by_id.get(&id) {
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
    let Some(export) = exports.by_id.get(&id) else {
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
    let recordings = api.0.recordings.read().unwrap_or_else(|e| e.into_inner());
    let files: Vec<serde_json::Value> = (start..total.min(start + size))
        .map(|k| {
            let recording = &recordings[export.files[k / 2]];
            let name = recording.file_name();
            if k % 2 == 0 {
                serde_json::json!({"name": name, "type": "audio", "size": recording.audio.size()})
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
    let found = {
        let exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
        let Some(export) = exports.by_id.get(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no export {id}"),
            );
        };
        if status_of(&api, export) == "expired" {
            return error(StatusCode::GONE, "expired", "the export's data has expired");
        }
        // `{stem}.cdr.json` is the CDR of recording `{stem}.wav`.
        let cdr_of = name
            .strip_suffix(".cdr.json")
            .map(|stem| format!("{stem}.wav"));
        let audio_name = cdr_of.as_deref().unwrap_or(&name);
        let index = api
            .0
            .by_name
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(audio_name)
            .copied();
        // `files` is in recording order: a binary search tells whether this export holds it.
        index
            .filter(|i| export.files.binary_search(i).is_ok())
            .map(|i| {
                let recordings = api.0.recordings.read().unwrap_or_else(|e| e.into_inner());
                (cdr_of.is_none(), recordings[i].clone())
            })
    };
    let Some((is_audio, recording)) = found else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no file {name} in {id}"),
        );
    };
    if !is_audio {
        return Json(recording.cdr).into_response();
    }
    tokio::time::sleep(api.0.config.download_delay).await;
    *api.0
        .downloads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name)
        .or_insert(0) += 1;
    // Making the audio may take a while (synthesis): off the async threads.
    match tokio::task::spawn_blocking(move || recording.audio.bytes()).await {
        Ok(bytes) => ([("content-type", "audio/wav")], bytes).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "making the recording failed",
        ),
    }
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
