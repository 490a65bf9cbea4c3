//! # ocp-sim
//!
//! Plays OCP against a callrec service: it makes up calls (deterministic from a seed), sends
//! their CDR Start and End events, and streams their recordings — synthetic speech-like audio
//! from `callrec-fixtures` — the way OCP's streaming subscription does. Faults are part of the
//! play: a share of recordings is never streamed (OCP loses about 10%), some events and uploads
//! are sent twice, some calls arrive out of order (End before Start, audio before End), and
//! of some calls nothing arrives at all (`cdr_drop_rate`: a dropped subscription; OCP's
//! exports still hold them).
//!
//! CDR events are OCP's own records ([`records`]: `dialog_start`, `dialog_end`), posted the way
//! a streaming subscription delivers them: NDJSON, with the tenant group in the query. The wire
//! formats are documented in this crate's README.md. [`exports`] plays OCP's Exports API (what
//! reconciliation talks to) over the recordings it holds, streamed or not, behind [`idp`] (OCP's
//! identity provider) and over HTTPS ([`tls`]).

pub mod exports;
pub mod idp;
pub mod records;
pub mod tls;

use base64::Engine as _;
use callrec_fixtures::{CallShape, Rng, WavEncoding, WavOptions, synth_call, write_wav};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use sha2::Digest as _;
use std::sync::Arc;
use std::time::Duration;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The service's base URL, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    /// Bearer token for the service's write endpoints.
    pub token: String,
    pub calls: usize,
    pub seed: u64,
    /// Calls started per second; 0 for as fast as the service takes them.
    pub rate_per_s: f64,
    /// Call lengths are uniform in this range, seconds.
    pub min_call_s: f64,
    pub max_call_s: f64,
    /// Share of recordings never streamed (default 0.10, as OCP).
    pub drop_rate: f64,
    /// Share of calls whose events and recording are sent twice.
    pub duplicate_rate: f64,
    /// Share of calls sent out of order (End before Start, or audio before End).
    pub reorder_rate: f64,
    /// Share of calls whose CDR Start event is never sent (reconciliation fills it in from the
    /// export's CDRs).
    pub lost_start_rate: f64,
    /// Share of calls of which nothing reaches the service — no CDR Start, no End, no
    /// recording (a dropped subscription) — while OCP's exports hold them all: only an audit
    /// against OCP's CDR exports finds them.
    pub cdr_drop_rate: f64,
    /// Send `x-checksum-sha256` and `x-checksum-crc32c` with each recording.
    pub checksums: bool,
    /// OCP groups the calls are spread over.
    pub groups: Vec<String>,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// How long ago the first call started, hours (default 2: recent calls; above a day, the
    /// calls of a day that has ended, as the daily audit looks at).
    pub hours_ago: f64,
}

impl SimConfig {
    /// The defaults: 300 calls of 5–40 s over two groups, 10% dropped, 5% duplicated, 20%
    /// reordered, checksums on, 8 at a time, as fast as the service takes them.
    pub fn new(target: impl Into<String>, token: impl Into<String>) -> Self {
        SimConfig {
            target: target.into(),
            token: token.into(),
            calls: 300,
            seed: 1,
            rate_per_s: 0.0,
            min_call_s: 5.0,
            max_call_s: 40.0,
            drop_rate: 0.10,
            duplicate_rate: 0.05,
            reorder_rate: 0.20,
            lost_start_rate: 0.0,
            cdr_drop_rate: 0.0,
            checksums: true,
            groups: vec!["grp-emea-01".into(), "grp-amer-01".into()],
            concurrency: 8,
            hours_ago: 2.0,
        }
    }
}

/// The order a call's messages are sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Start, End, audio.
    InOrder,
    /// End, Start, audio.
    EndBeforeStart,
    /// Start, audio, End.
    AudioBeforeEnd,
}

/// One simulated call and what was done with it.
#[derive(Debug, Clone, Serialize)]
pub struct SimCall {
    pub call_id: String,
    pub group_id: String,
    pub account_id: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub duration_ms: u64,
    /// Whether the recording was streamed (false: dropped, as OCP sometimes does).
    pub streamed: bool,
    pub duplicated: bool,
    pub order: Order,
    /// Whether the Start event was sent (false: lost, as OCP sometimes does).
    pub start_sent: bool,
    /// Whether any CDR event was sent (false: nothing of the call reached the service, neither
    /// its events nor its recording; OCP's exports still hold it).
    pub cdr_sent: bool,
    /// Hex SHA-256 of the recording (streamed or not).
    pub sha256: String,
}

/// Counters for progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    pub calls_done: std::sync::atomic::AtomicU64,
    pub events_sent: std::sync::atomic::AtomicU64,
    pub uploads_sent: std::sync::atomic::AtomicU64,
    pub bytes_sent: std::sync::atomic::AtomicU64,
    pub retries: std::sync::atomic::AtomicU64,
    /// Upload latencies (request to acknowledgement, retries included), ms.
    pub upload_ms: std::sync::Mutex<Vec<f64>>,
}

impl Progress {
    /// The `q` quantile (0–1) of the upload latencies so far, ms.
    pub fn upload_quantile_ms(&self, q: f64) -> Option<f64> {
        let mut all = self
            .upload_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if all.is_empty() {
            return None;
        }
        all.sort_by(f64::total_cmp);
        let index = ((all.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(all[index])
    }
}

/// Why the simulation stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: the service answered {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    #[error("a simulated call panicked: {0}")]
    Task(String),
}

/// The plan of call `index`: everything but the audio, decided from the seed alone.
pub fn plan_call(config: &SimConfig, index: usize, base: Timestamp) -> SimCall {
    let mut rng = Rng::new(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let group = &config.groups[index % config.groups.len().max(1)];
    let duration_ms =
        (rng.range(config.min_call_s, config.max_call_s.max(config.min_call_s)) * 1000.0) as u64;
    // OCP's times are epoch milliseconds.
    let base = Timestamp::from_millisecond(base.as_millisecond()).unwrap_or(base);
    let start = base
        .checked_add(SignedDuration::from_millis(index as i64 * 1500))
        .unwrap_or(base);
    let end = start
        .checked_add(SignedDuration::from_millis(duration_ms as i64))
        .unwrap_or(start);
    let streamed = rng.next_f64() >= config.drop_rate;
    let duplicated = rng.next_f64() < config.duplicate_rate;
    let order = if rng.next_f64() < config.reorder_rate {
        if rng.next_f64() < 0.5 {
            Order::EndBeforeStart
        } else {
            Order::AudioBeforeEnd
        }
    } else {
        Order::InOrder
    };
    // Drawn last, so adding them kept every earlier decision of a seed as it was.
    let start_sent = rng.next_f64() >= config.lost_start_rate;
    let cdr_sent = rng.next_f64() >= config.cdr_drop_rate;
    let streamed = streamed && cdr_sent;
    SimCall {
        call_id: format!("dlg-{}-{index:06}", config.seed),
        group_id: group.clone(),
        account_id: format!("acct-{}", 4700 + index % 3),
        start,
        end,
        duration_ms,
        streamed,
        duplicated,
        order,
        start_sent,
        cdr_sent,
        sha256: String::new(),
    }
}

/// What OCP's Exports API holds for a call: its CDR and its recording (held in memory when
/// `held`, else made again from the seed whenever it is downloaded).
pub fn export_recording(
    config: &Arc<SimConfig>,
    call: &SimCall,
    index: usize,
    audio: bytes::Bytes,
    held: bool,
) -> exports::Recording {
    let audio = if held {
        exports::Audio::held(audio)
    } else {
        let (config, plan) = (Arc::clone(config), call.clone());
        exports::Audio::lazy(audio.len() as u64, move || {
            bytes::Bytes::from(recording(&config, &plan, index))
        })
    };
    exports::Recording {
        group_id: call.group_id.clone(),
        account_id: call.account_id.clone(),
        dialog_id: call.call_id.clone(),
        dialog_time: call.start,
        audio,
        start_record: Some(records::dialog_start(call)),
        end_record: Some(records::dialog_end(call)),
    }
}

/// The recording of a planned call: synthetic 8 kHz mono PCM16 speech, as OCP writes it.
pub fn recording(config: &SimConfig, call: &SimCall, index: usize) -> Vec<u8> {
    let shape = CallShape::telephone(call.duration_ms, config.seed ^ ((index as u64) << 20));
    write_wav(
        &synth_call(&shape),
        8000,
        &WavOptions::new(WavEncoding::I16),
    )
}

struct Client {
    http: reqwest::Client,
    config: Arc<SimConfig>,
    progress: Arc<Progress>,
    exports: Option<exports::ExportsApi>,
}

impl Client {
    /// Sends with retries: 503 and 5xx after `Retry-After` (or a backoff), and connection
    /// failures after a backoff, as a good client does; any other non-2xx answer is an error.
    async fn send(
        &self,
        what: String,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(), SimError> {
        let mut delay = Duration::from_millis(100);
        for attempt in 0..50 {
            let response = match request().bearer_auth(&self.config.token).send().await {
                Ok(response) => response,
                // The service is restarting (or the connection broke mid-request): OCP sends
                // again; every message is idempotent on the service's side.
                Err(e) if (e.is_connect() || e.is_request()) && attempt < 49 => {
                    self.progress
                        .retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(source) => {
                    return Err(SimError::Http {
                        what: what.clone(),
                        source,
                    });
                }
            };
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            if status.as_u16() == 503 || status.is_server_error() {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(delay)
                    .min(Duration::from_secs(2));
                self.progress
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            return Err(SimError::Refused {
                what,
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        Err(SimError::Refused {
            what,
            status: 503,
            body: "still busy after 50 attempts".into(),
        })
    }

    /// Posts the call's `dialog_start` or `dialog_end` record as a streaming subscription
    /// delivers it: NDJSON, the tenant group in the query.
    async fn event(&self, call: &SimCall, kind: &str) -> Result<(), SimError> {
        if !call.cdr_sent || kind == "start" && !call.start_sent {
            return Ok(());
        }
        let record = if kind == "start" {
            records::dialog_start(call)
        } else {
            records::dialog_end(call)
        };
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        let line = bytes::Bytes::from(line);
        let url = format!("{}/v1/cdr", self.config.target);
        self.send(format!("{kind} record of {}", call.call_id), || {
            self.http
                .post(&url)
                .query(&[("group", call.group_id.as_str())])
                .header("content-type", "application/x-ndjson")
                .body(line.clone())
        })
        .await?;
        self.progress
            .events_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn upload(&self, call: &SimCall, audio: &bytes::Bytes) -> Result<(), SimError> {
        let url = format!("{}/v1/calls/{}/audio", self.config.target, call.call_id);
        let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
        crc.update(audio);
        let crc32c =
            base64::engine::general_purpose::STANDARD.encode((crc.finalize() as u32).to_be_bytes());
        let started = std::time::Instant::now();
        self.send(format!("recording of {}", call.call_id), || {
            let mut request = self
                .http
                .put(&url)
                .header("content-type", "audio/wav")
                .body(audio.clone());
            if self.config.checksums {
                request = request
                    .header("x-checksum-sha256", &call.sha256)
                    .header("x-checksum-crc32c", &crc32c);
            }
            request
        })
        .await?;
        self.progress
            .upload_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(started.elapsed().as_secs_f64() * 1000.0);
        self.progress
            .uploads_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.progress
            .bytes_sent
            .fetch_add(audio.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn play(&self, mut call: SimCall, index: usize) -> Result<SimCall, SimError> {
        let config = Arc::clone(&self.config);
        let audio = {
            let plan = call.clone();
            tokio::task::spawn_blocking(move || recording(&config, &plan, index))
                .await
                .map_err(|e| SimError::Task(e.to_string()))?
        };
        call.sha256 = hex::encode(sha2::Sha256::digest(&audio));
        let audio = bytes::Bytes::from(audio);
        if let Some(exports) = &self.exports {
            // OCP holds every recording, streamed or not; the dropped ones are what its
            // exports are for, so those are held (the rest are made again if asked for).
            exports.add(export_recording(
                &self.config,
                &call,
                index,
                audio.clone(),
                !call.streamed,
            ));
        }
        let times = if call.duplicated { 2 } else { 1 };
        for _ in 0..times {
            match call.order {
                Order::InOrder => {
                    self.event(&call, "start").await?;
                    self.event(&call, "end").await?;
                    if call.streamed {
                        self.upload(&call, &audio).await?;
                    }
                }
                Order::EndBeforeStart => {
                    self.event(&call, "end").await?;
                    self.event(&call, "start").await?;
                    if call.streamed {
                        self.upload(&call, &audio).await?;
                    }
                }
                Order::AudioBeforeEnd => {
                    self.event(&call, "start").await?;
                    if call.streamed {
                        self.upload(&call, &audio).await?;
                    }
                    self.event(&call, "end").await?;
                }
            }
        }
        self.progress
            .calls_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(call)
    }
}

/// Plays `config.calls` calls against the service; returns what was done with each, in call
/// order. `progress` is updated as it goes.
pub async fn run(config: SimConfig, progress: Arc<Progress>) -> Result<Vec<SimCall>, SimError> {
    run_with_exports(config, progress, None).await
}

/// As [`run`], and adds every call's recording and CDR to `exports` (OCP's Exports API) as
/// the call happens, so that reconciliation can recover the ones never streamed.
pub async fn run_with_exports(
    config: SimConfig,
    progress: Arc<Progress>,
    exports: Option<exports::ExportsApi>,
) -> Result<Vec<SimCall>, SimError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|source| SimError::Http {
            what: "building the HTTP client".into(),
            source,
        })?;
    let ago = SignedDuration::try_from_secs_f64(config.hours_ago.clamp(0.0, 24.0 * 365.0) * 3600.0)
        .unwrap_or(SignedDuration::from_hours(2));
    let base = Timestamp::now()
        .checked_sub(ago)
        .unwrap_or_else(|_| Timestamp::now());
    let client = Arc::new(Client {
        http,
        config: Arc::new(config.clone()),
        progress,
        exports,
    });
    let limit = Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    for index in 0..config.calls {
        if config.rate_per_s > 0.0 {
            let due = started + Duration::from_secs_f64(index as f64 / config.rate_per_s);
            tokio::time::sleep_until(due).await;
        }
        let permit = Arc::clone(&limit)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let call = plan_call(&config, index, base);
        let client = Arc::clone(&client);
        tasks.spawn(async move {
            let _permit = permit;
            client.play(call, index).await.map(|c| (index, c))
        });
    }
    let mut done = Vec::with_capacity(config.calls);
    while let Some(joined) = tasks.join_next().await {
        let played = joined.map_err(|e| SimError::Task(e.to_string()))??;
        done.push(played);
    }
    done.sort_by_key(|(index, _)| *index);
    Ok(done.into_iter().map(|(_, call)| call).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_whose_cdrs_are_dropped_are_never_streamed_and_the_other_draws_stay() {
        let base = Timestamp::from_second(1_800_000_000).unwrap();
        let mut config = SimConfig::new("http://127.0.0.1:9", "t");
        let before: Vec<SimCall> = (0..1000).map(|i| plan_call(&config, i, base)).collect();
        config.cdr_drop_rate = 0.05;
        let after: Vec<SimCall> = (0..1000).map(|i| plan_call(&config, i, base)).collect();
        let dropped = after.iter().filter(|c| !c.cdr_sent).count();
        assert!((30..=70).contains(&dropped), "{dropped}");
        for (b, a) in before.iter().zip(&after) {
            assert!(b.cdr_sent);
            assert_eq!(
                (&b.call_id, b.start, b.duration_ms),
                (&a.call_id, a.start, a.duration_ms)
            );
            assert_eq!(
                (b.order, b.start_sent, b.duplicated),
                (a.order, a.start_sent, a.duplicated)
            );
            assert_eq!(a.streamed, b.streamed && a.cdr_sent, "{}", a.call_id);
        }
    }
}
