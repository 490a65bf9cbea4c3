//! OCP's Exports API, simulated: what reconciliation talks to. Paths, status values and the
//! listing's fields are this simulator's definitions (OCP's public documentation does not give
//! them); every one is in the README, with what follows OCP's documentation and what is assumed.
//!
//! - `POST /exports/v1/groups/{group_id}/exports` — `{"from", "to", "data_types":
//!   ["dialog_start", "dialog_end", "Audio"], "idempotency_key"}` (RFC 3339, whole hours, 1 hour
//!   to 2 days, else 400; one running export per group, else 409) → 201 `{"export_id",
//!   "status"}`. The same `idempotency_key` again answers 200 with the export it created (a
//!   retried create makes one export); with another group or range, 422.
//! - `GET /exports/v1/groups/{group_id}/exports?from=&to=` → `{"exports": [{"export_id",
//!   "status", "from", "to"}]}`: the group's exports overlapping the range.
//! - `GET /exports/v1/exports/{export_id}` → `{"export_id", "group_id", "from", "to",
//!   "data_types", "status"}`: `pending`, then `running`, then `completed` after the configured
//!   delay; `expired` once the data is older than the configured lifetime (OCP keeps it a day).
//! - `GET /exports/v1/exports/{export_id}/files?page_token=&page_size=` (completed exports) →
//!   `{"files": [{"name", "type", "size"}], "next_page_token"}`: first the CDR files, one per
//!   hour and CDR data type (`{groupId}~{YYYYMMDDHH}~{type}.jsonl`, OCP's records one a line),
//!   then the recordings (`{groupId}~{accountId}~{dialogTimestamp}~{dialogId}.wav`, type
//!   `Audio`).
//! - `GET /exports/v1/exports/{export_id}/files/{name}` → the file; 410 once expired.
//!
//! Every request needs a token from [`crate::idp`] (a bearer access token or a personal access
//! token), and a group the caller is whitelisted for (403). Injectable faults: a 429 with
//! `Retry-After` every Nth request, a 503 every Mth, a share of audio files left out of exports,
//! slow exports (the completion delay) and slow downloads, a skewed `Date`.
//!
//! Recordings can be added while the API serves ([`ExportsApi::add`]): the simulator adds each
//! call's as the call happens. Their audio is either held ([`Audio::held`]) or made again on
//! demand ([`Audio::lazy`]), so a simulator of thousands of calls does not hold them all.

use crate::idp::{Caller, IdpState, PersonalAccessToken, Refusal, forbidden, gate, gate_group};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt as _;
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

/// One recording OCP holds (streamed or not), with its CDR records.
#[derive(Debug, Clone)]
pub struct Recording {
    pub group_id: String,
    pub account_id: String,
    pub dialog_id: String,
    /// The dialog's start: what exports filter on.
    pub dialog_time: Timestamp,
    pub audio: Audio,
    /// OCP's `dialog_start` record of the dialog, if OCP has one.
    pub start_record: Option<serde_json::Value>,
    /// OCP's `dialog_end` record of the dialog, if OCP has one.
    pub end_record: Option<serde_json::Value>,
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

/// The data types an export may hold, by OCP's names.
pub const DATA_TYPES: [&str; 3] = ["dialog_start", "dialog_end", "Audio"];

/// The simulated API's behaviour.
#[derive(Debug, Clone)]
pub struct ExportsConfig {
    /// The user of the password grant.
    pub username: String,
    pub password: String,
    /// Keycloak's realm in the token endpoint's path (`master`; `ocp` on the Kubernetes
    /// regions).
    pub realm: String,
    /// The client id the token endpoint takes (`ocp`).
    pub client_id: String,
    /// The groups the user may export (`None`: all).
    pub whitelist: Option<Vec<String>>,
    /// Personal access tokens OCP accepts.
    pub personal_access_tokens: Vec<PersonalAccessToken>,
    /// Access tokens live this long.
    pub token_lifetime: Duration,
    /// Refresh tokens live this long.
    pub refresh_lifetime: Duration,
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
    /// The `Date` of every answer is this far from the true time (a skewed clock).
    pub clock_offset: SignedDuration,
}

impl ExportsConfig {
    /// No faults, exports done in 2 s, data kept a day, tokens of 5 minutes refreshed for 30,
    /// realm `master`, client `ocp`, every group whitelisted, no personal access token.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        ExportsConfig {
            username: username.into(),
            password: password.into(),
            realm: "master".into(),
            client_id: "ocp".into(),
            whitelist: None,
            personal_access_tokens: Vec::new(),
            token_lifetime: Duration::from_secs(300),
            refresh_lifetime: Duration::from_secs(1800),
            completion_delay: Duration::from_secs(2),
            data_lifetime: Duration::from_secs(86_400),
            max_page_size: 100,
            rate_limit_every: None,
            unavailable_every: None,
            omit_rate: 0.0,
            download_delay: Duration::ZERO,
            clock_offset: SignedDuration::ZERO,
        }
    }
}

/// One CDR file of an export: the records of one data type of the dialogs that started in one
/// hour.
#[derive(Debug, Clone)]
struct CdrBatch {
    /// `dialog_start` or `dialog_end`.
    kind: &'static str,
    name: String,
    /// Indexes into the recordings.
    members: Vec<usize>,
}

struct Export {
    group_id: String,
    from: Timestamp,
    to: Timestamp,
    data_types: Vec<String>,
    created: Instant,
    cdr_files: Vec<CdrBatch>,
    /// Audio: indexes into the recordings, in order, fixed at creation.
    files: Vec<usize>,
}

/// Hostile or unlucky answers, switched on and off while the API serves
/// ([`ExportsApi::set_faults`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Answer every authenticated API request with 429 and this `Retry-After` (seconds).
    pub throttle_all: Option<u64>,
    /// Answer every authenticated API request with this status (a 5xx: OCP failing).
    pub fail_all: Option<u16>,
    /// File listings never end: every page's `next_page_token` is the first page's.
    pub repeat_page_token: bool,
    /// Every page of a file listing after the first answers 404 (a page OCP lost).
    pub missing_page: bool,
    /// CDR files are listed but answer 404 when fetched.
    pub missing_cdr_files: bool,
    /// Every export reads as expired (status `expired`, its files 410).
    pub expire_all: bool,
    /// Every Nth recording (by index) is served as ten times the bytes its listing declares.
    pub oversize_every: Option<usize>,
    /// Files (recordings and CDR batches) are sent in 8 pieces this far apart (a slow link
    /// that keeps sending).
    pub trickle: Option<Duration>,
    /// The first download of every Nth recording (by index) sends half its bytes, then stalls
    /// (the connection stays open, nothing more comes).
    pub stall_every: Option<usize>,
}

pub(crate) struct Inner {
    config: ExportsConfig,
    faults: Mutex<Faults>,
    recordings: std::sync::RwLock<Vec<Recording>>,
    idp: Mutex<IdpState>,
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

/// The Exports API's state (and its identity provider's): share it with [`router`].
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
            faults: Mutex::new(Faults::default()),
            recordings: std::sync::RwLock::new(recordings),
            idp: Mutex::new(IdpState::default()),
            exports: Mutex::new(Exports::default()),
            requests: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            downloads: Mutex::new(HashMap::new()),
        }))
    }

    pub(crate) fn config(&self) -> &ExportsConfig {
        &self.0.config
    }

    /// Switches the runtime faults (all off: `Faults::default()`).
    pub fn set_faults(&self, faults: Faults) {
        *self.0.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    pub(crate) fn faults(&self) -> Faults {
        self.0
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn idp(&self) -> std::sync::MutexGuard<'_, IdpState> {
        self.0.idp.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn requests(&self) -> &AtomicU64 {
        &self.0.requests
    }

    /// Unique and unguessable enough for a simulator's tokens: a counter mixed with the clock.
    pub(crate) fn random(&self) -> u128 {
        let n = self.0.requests.fetch_add(1, Ordering::Relaxed) as u128;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        (t << 20) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
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

    /// Exports created so far that asked for no audio (CDR-only: an audit's).
    pub fn cdr_only_exports(&self) -> u64 {
        let exports = self.0.exports.lock().unwrap_or_else(|e| e.into_inner());
        let audio = |e: &&Export| e.data_types.iter().any(|d| d == "Audio");
        exports.by_id.values().filter(|e| !audio(e)).count() as u64
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

pub(crate) fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({"error": kind, "message": message.into()})),
    )
        .into_response()
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
    if age >= config.data_lifetime || api.faults().expire_all {
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

/// The CDR files of an export: per hour of dialog time and per CDR data type asked for.
fn cdr_batches(
    recordings: &[Recording],
    group_id: &str,
    members: &[usize],
    data_types: &[String],
) -> Vec<CdrBatch> {
    let mut by_hour: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for &i in members {
        by_hour
            .entry(recordings[i].dialog_time.as_second().div_euclid(3600))
            .or_default()
            .push(i);
    }
    let mut batches = Vec::new();
    for (hour, members) in by_hour {
        let stamp = Timestamp::from_second(hour * 3600)
            .map(|t| t.strftime("%Y%m%d%H").to_string())
            .unwrap_or_default();
        for kind in ["dialog_start", "dialog_end"] {
            if data_types.iter().any(|d| d == kind) {
                batches.push(CdrBatch {
                    kind,
                    name: format!("{group_id}~{stamp}~{kind}.jsonl"),
                    members: members.clone(),
                });
            }
        }
    }
    batches
}

/// A CDR file's bytes: its records, one a line.
fn batch_bytes(recordings: &[Recording], batch: &CdrBatch) -> Vec<u8> {
    let mut out = Vec::new();
    for &i in &batch.members {
        let record = match batch.kind {
            "dialog_start" => recordings[i].start_record.as_ref(),
            _ => recordings[i].end_record.as_ref(),
        };
        if let Some(record) = record {
            out.extend(serde_json::to_vec(record).unwrap_or_default());
            out.push(b'\n');
        }
    }
    out
}

fn check_range(from: Timestamp, to: Timestamp) -> Option<Response> {
    let whole_hours = |t: Timestamp| t.as_second() % 3600 == 0 && t.subsec_nanosecond() == 0;
    let length = to.duration_since(from);
    if !whole_hours(from) || !whole_hours(to) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "bad_range",
            "from and to must be whole hours",
        ));
    }
    if length < SignedDuration::from_hours(1) || length > SignedDuration::from_hours(48) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "bad_range",
            "an export covers 1 hour to 2 days",
        ));
    }
    None
}

async fn create_export(
    State(api): State<ExportsApi>,
    Path(group_id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Json<CreateExport>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(refused) = gate_group(&api, &headers, &group_id) {
        return *refused;
    }
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected {from, to, data_types}",
        );
    };
    if let Some(refused) = check_range(body.from, body.to) {
        return refused;
    }
    if body.data_types.is_empty()
        || body
            .data_types
            .iter()
            .any(|d| !DATA_TYPES.contains(&d.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data_type",
            "data_types: one or more of dialog_start, dialog_end, Audio",
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
    let members: Vec<usize> = recordings
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.group_id == group_id && body.from <= r.dialog_time && r.dialog_time < body.to
        })
        .map(|(i, _)| i)
        .collect();
    let cdr_files = cdr_batches(&recordings, &group_id, &members, &body.data_types);
    let files = if body.data_types.iter().any(|d| d == "Audio") {
        members
            .into_iter()
            // Left out by a hash of (recording, export): deterministic, and independent from
            // one export to the next, so a later export of the range holds it with probability
            // 1 − omit.
            .filter(|i| omit <= 0.0 || unit_hash(*i as u64, number) >= omit)
            .collect()
    } else {
        Vec::new()
    };
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
            data_types: body.data_types,
            created: Instant::now(),
            cdr_files,
            files,
        },
    );
    (
        StatusCode::CREATED,
        Json(serde_json::json!({"export_id": id, "status": "pending"})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct RangeQuery {
    from: Timestamp,
    to: Timestamp,
}

async fn list_exports(
    State(api): State<ExportsApi>,
    Path(group_id): Path<String>,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(refused) = gate_group(&api, &headers, &group_id) {
        return *refused;
    }
    let Ok(Query(range)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_range",
            "from and to: RFC 3339",
        );
    };
    let exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
    let mut found: Vec<(&String, &Export)> = exports
        .by_id
        .iter()
        .filter(|(_, e)| e.group_id == group_id && e.from < range.to && range.from < e.to)
        .collect();
    found.sort_by_key(|(id, _)| id.as_str());
    let listed: Vec<serde_json::Value> = found
        .into_iter()
        .map(|(id, e)| {
            serde_json::json!({"export_id": id, "status": status_of(&api, e), "from": e.from, "to": e.to})
        })
        .collect();
    Json(serde_json::json!({ "exports": listed })).into_response()
}

/// The export `id` if the caller may see it.
fn find<'a>(exports: &'a Exports, caller: &Caller, id: &str) -> Result<&'a Export, Refusal> {
    let Some(export) = exports.by_id.get(id) else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no export {id}"),
        )));
    };
    if !caller.may(&export.group_id) {
        return Err(Box::new(forbidden(&export.group_id)));
    }
    Ok(export)
}

async fn get_export(
    State(api): State<ExportsApi>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let caller = match gate(&api, &headers) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
    match find(&exports, &caller, &id) {
        Ok(e) => Json(serde_json::json!({
            "export_id": id,
            "group_id": e.group_id,
            "from": e.from,
            "to": e.to,
            "data_types": e.data_types,
            "status": status_of(&api, e),
        }))
        .into_response(),
        Err(refused) => *refused,
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
    headers: axum::http::HeaderMap,
) -> Response {
    let caller = match gate(&api, &headers) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
    let export = match find(&exports, &caller, &id) {
        Ok(export) => export,
        Err(refused) => return *refused,
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
    // The CDR files first, then one entry per recording.
    let start: usize = match page.page_token.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(_)) if api.faults().missing_page => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such page of export {id}'s files"),
            );
        }
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
    let cdrs = export.cdr_files.len();
    let total = cdrs + export.files.len();
    let recordings = api.0.recordings.read().unwrap_or_else(|e| e.into_inner());
    let files: Vec<serde_json::Value> = (start..total.min(start + size))
        .map(|k| {
            if k < cdrs {
                let batch = &export.cdr_files[k];
                let size = batch_bytes(&recordings, batch).len();
                serde_json::json!({"name": batch.name, "type": batch.kind, "size": size})
            } else {
                let recording = &recordings[export.files[k - cdrs]];
                serde_json::json!({"name": recording.file_name(), "type": "Audio", "size": recording.audio.size()})
            }
        })
        .collect();
    let next = if api.faults().repeat_page_token {
        Some("0".to_string())
    } else {
        (start + size < total).then(|| (start + size).to_string())
    };
    Json(serde_json::json!({"files": files, "next_page_token": next})).into_response()
}

async fn get_file(
    State(api): State<ExportsApi>,
    Path((id, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    let caller = match gate(&api, &headers) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    enum Found {
        Cdr(Vec<u8>),
        Audio(usize, Recording),
    }
    let found = {
        let exports = api.0.exports.lock().unwrap_or_else(|e| e.into_inner());
        let export = match find(&exports, &caller, &id) {
            Ok(export) => export,
            Err(refused) => return *refused,
        };
        if status_of(&api, export) == "expired" {
            return error(StatusCode::GONE, "expired", "the export's data has expired");
        }
        let recordings = api.0.recordings.read().unwrap_or_else(|e| e.into_inner());
        if let Some(batch) = export.cdr_files.iter().find(|b| b.name == name) {
            Some(Found::Cdr(batch_bytes(&recordings, batch)))
        } else {
            let index = api
                .0
                .by_name
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .copied();
            // `files` is in recording order: a binary search tells whether this export holds it.
            index
                .filter(|i| export.files.binary_search(i).is_ok())
                .map(|i| Found::Audio(i, recordings[i].clone()))
        }
    };
    let (index, recording) = match found {
        None => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no file {name} in {id}"),
            );
        }
        Some(Found::Cdr(_)) if api.faults().missing_cdr_files => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no file {name} in {id}"),
            );
        }
        Some(Found::Cdr(bytes)) => {
            let body = paced(Bytes::from(bytes), api.faults().trickle);
            return ([("content-type", "application/x-ndjson")], body).into_response();
        }
        Some(Found::Audio(index, recording)) => (index, recording),
    };
    tokio::time::sleep(api.0.config.download_delay).await;
    let attempt = {
        let mut downloads = api.0.downloads.lock().unwrap_or_else(|e| e.into_inner());
        let n = downloads.entry(name).or_insert(0);
        *n += 1;
        *n
    };
    // Making the audio may take a while (synthesis): off the async threads.
    let bytes = match tokio::task::spawn_blocking(move || recording.audio.bytes()).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "making the recording failed",
            );
        }
    };
    let faults = api.faults();
    let every = |n: Option<usize>| n.is_some_and(|n| n > 0 && index.is_multiple_of(n));
    let bytes = if every(faults.oversize_every) {
        Bytes::from(bytes.repeat(10))
    } else {
        bytes
    };
    let body = if every(faults.stall_every) && attempt == 1 {
        let half = bytes.slice(..bytes.len() / 2);
        let pieces = futures_util::stream::iter([Ok::<_, std::io::Error>(half)])
            .chain(futures_util::stream::pending());
        axum::body::Body::from_stream(pieces)
    } else {
        paced(bytes, faults.trickle)
    };
    ([("content-type", "audio/wav")], body).into_response()
}

/// A body sent at once, or (`trickle`) in 8 pieces that far apart.
fn paced(bytes: Bytes, trickle: Option<Duration>) -> axum::body::Body {
    let Some(gap) = trickle else {
        return axum::body::Body::from(bytes);
    };
    let step = bytes.len().div_ceil(8).max(1);
    let pieces: Vec<Bytes> = (0..bytes.len())
        .step_by(step)
        .map(|at| bytes.slice(at..(at + step).min(bytes.len())))
        .collect();
    let paced = futures_util::stream::iter(pieces).then(move |piece| async move {
        tokio::time::sleep(gap).await;
        Ok::<_, std::io::Error>(piece)
    });
    axum::body::Body::from_stream(paced)
}

/// Every answer's `Date`, from the (possibly skewed) simulated clock.
async fn date(
    State(api): State<ExportsApi>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let now = Timestamp::now()
        .checked_add(api.0.config.clock_offset)
        .unwrap_or_else(|_| Timestamp::now());
    let text = now.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(value) = axum::http::HeaderValue::from_str(&text) {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, value);
    }
    response
}

/// The routes of the simulated Exports API and its identity provider.
pub fn router(api: ExportsApi) -> Router {
    Router::new()
        .route(
            "/auth/realms/{realm}/protocol/openid-connect/token",
            post(crate::idp::token),
        )
        .route(
            "/exports/v1/groups/{group_id}/exports",
            post(create_export).get(list_exports),
        )
        .route("/exports/v1/exports/{export_id}", get(get_export))
        .route("/exports/v1/exports/{export_id}/files", get(list_files))
        .route(
            "/exports/v1/exports/{export_id}/files/{name}",
            get(get_file),
        )
        .layer(axum::middleware::from_fn_with_state(api.clone(), date))
        .with_state(api)
}

/// A running simulated OCP: its URL, and the CA to trust when it is HTTPS.
#[derive(Debug)]
pub struct Served {
    /// `https://127.0.0.1:PORT` (or `http://` when served without TLS).
    pub url: String,
    /// The CA's certificate (PEM) that the server's certificate chains to; `None` over HTTP.
    pub ca_pem: Option<String>,
    /// Stops the server when cancelled.
    pub stop: tokio_util::sync::CancellationToken,
}

/// Serves `api` on a free loopback port: over HTTPS with a CA made now (`tls`), as OCP is, or
/// over plain HTTP.
pub async fn serve(api: ExportsApi, tls: bool) -> std::io::Result<Served> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone().cancelled_owned();
    let app = router(api);
    if tls {
        let ca = crate::tls::TestCa::generate().map_err(std::io::Error::other)?;
        let ca_pem = ca.ca_pem().to_string();
        tokio::spawn(async move {
            let _ = ca.serve(listener, app, stopped).await;
        });
        Ok(Served {
            url: format!("https://{address}"),
            ca_pem: Some(ca_pem),
            stop,
        })
    } else {
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Ok(Served {
            url: format!("http://{address}"),
            ca_pem: None,
            stop,
        })
    }
}
