//! The ingest service under load (a measurement, not a test): `callrec serve` with its embedded
//! stores (SQLite, a folder) on a loopback port, and a lean client in this process — every
//! recording synthesized and its checksums computed *before* the clock starts, so the client's
//! only work on the clock is HTTP — sending each call as OCP's streaming subscription does
//! (`dialog_start`, `dialog_end`, the recording with its checksums), `SERVE_INFLIGHT` calls at
//! once. The clock runs from the first request to the last `stored` (the service's
//! `callrec_stage_seconds_count{stage="process_and_store"}`, read from `/metrics`). Then the
//! engine alone (`Engine::process_batch`, as many threads as the service's engine) on the very
//! same recordings, so that the service/engine ratio compares within one run on one machine.
//!
//! ```sh
//! cargo bench --bench serve              # 600 one-minute calls, 16 in flight
//! SERVE_CALLS=300 SERVE_ROUNDS=2 SERVE_BINS=/tmp/callrec-old,target/release/callrec \
//!   cargo bench --bench serve            # two builds alternating, same recordings
//! TMPDIR=/dev/shm cargo bench --bench serve   # the service's data on tmpfs
//! ```
//!
//! Knobs (environment): `SERVE_CALLS`, `SERVE_CALL_S` (each call's length), `SERVE_INFLIGHT`,
//! `SERVE_ENGINE_THREADS` (`server.engine_threads`; 0: one per core), `SERVE_BINS` (the
//! `callrec` binaries to serve, comma-separated; default this build), `SERVE_ROUNDS` (each
//! binary this many times, alternating), `SERVE_WRAP` (a command the service runs under, e.g.
//! `perf record -g -o FILE --`). The service's data goes to a temporary folder (`TMPDIR`).
//! Prints a Markdown table for PERF.md.

use base64::Engine as _;
use bytes::Bytes;
use callrec_engine::{AudioSource, Engine, EngineConfig, JobInput, ProcessConfig};
use rayon::prelude::*;
use sha2::Digest as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{knob, proc_stats};

const TOKEN: &str = "serve-bench-token-0123456789";

/// A recording made ready before the clock starts.
struct Prepared {
    call: ocp_sim::SimCall,
    start: Bytes,
    end: Bytes,
    audio: Bytes,
    crc32c: String,
}

fn ndjson(record: &impl serde::Serialize) -> Bytes {
    let mut line = serde_json::to_vec(record).expect("a record serializes");
    line.push(b'\n');
    Bytes::from(line)
}

/// The `stored` count the service reports.
async fn stored(http: &reqwest::Client, base: &str) -> Option<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("callrec_stage_seconds_count{stage=\"process_and_store\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

async fn send(
    request: impl Fn() -> reqwest::RequestBuilder,
    retries: &std::sync::atomic::AtomicU64,
) {
    for _ in 0..100 {
        match request().bearer_auth(TOKEN).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if r.status().as_u16() == 503 => {
                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(r) => panic!("the service refused a request: {}", r.status()),
            // A kept-alive connection the service closed as the request went out: sent again
            // (every message is idempotent), counted.
            Err(e) if e.is_request() || e.is_connect() => {
                eprintln!("sent again after: {e:?}");
                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => panic!("a request failed: {e:?}"),
        }
    }
    panic!("still refused after 100 attempts");
}

/// The service in a process group of its own (with the wrapper, if any): stopped as a whole
/// with SIGINT (the service shuts down; `perf record` writes its data), killed if it lingers.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let stopping = Instant::now();
        while stopping.elapsed() < Duration::from_secs(20) {
            if self.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// The `callrec` process under `pid` (itself, or a wrapper's descendant): the first whose name
/// starts so (a copy named `callrec-old` counts).
fn callrec_pid(pid: u32) -> Option<u32> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.starts_with("callrec") {
        return Some(pid);
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find_map(callrec_pid)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name us skips the run.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with("--") && !"serve".contains(a.as_str()))
    {
        return;
    }
    let calls: usize = knob("SERVE_CALLS", 600);
    let call_s: f64 = knob("SERVE_CALL_S", 60.0);
    let inflight: usize = knob("SERVE_INFLIGHT", 16);
    let engine_threads: usize = knob("SERVE_ENGINE_THREADS", 0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if engine_threads == 0 {
        cores
    } else {
        engine_threads
    };

    let mut sim = ocp_sim::SimConfig::new("", "");
    sim.calls = calls;
    sim.seed = 4242;
    sim.min_call_s = call_s;
    sim.max_call_s = call_s;
    sim.drop_rate = 0.0;
    sim.duplicate_rate = 0.0;
    sim.reorder_rate = 0.0;
    eprintln!("synthesizing {calls} recordings of {call_s} s …");
    let made = Instant::now();
    let base = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    let prepared: Vec<Prepared> = (0..calls)
        .into_par_iter()
        .map(|index| {
            let mut call = ocp_sim::plan_call(&sim, index, base);
            let audio = ocp_sim::recording(&sim, &call, index);
            call.sha256 = hex::encode(sha2::Sha256::digest(&audio));
            let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
            crc.update(&audio);
            let crc32c = base64::engine::general_purpose::STANDARD
                .encode((crc.finalize() as u32).to_be_bytes());
            Prepared {
                start: ndjson(&ocp_sim::records::dialog_start(&call)),
                end: ndjson(&ocp_sim::records::dialog_end(&call)),
                audio: Bytes::from(audio),
                crc32c,
                call,
            }
        })
        .collect();
    let audio_bytes: u64 = prepared.iter().map(|p| p.audio.len() as u64).sum();
    eprintln!(
        "  {:.1} s, {:.0} MB",
        made.elapsed().as_secs_f64(),
        audio_bytes as f64 / 1e6
    );

    // The binaries to serve (this build unless SERVE_BINS names others), alternating by round.
    let programs: Vec<String> = match std::env::var("SERVE_BINS") {
        Ok(list) => list.split(',').map(str::to_string).collect(),
        Err(_) => vec![env!("CARGO_BIN_EXE_callrec").to_string()],
    };
    let rounds: usize = knob("SERVE_ROUNDS", 1);
    let prepared = Arc::new(prepared);
    let mut runs = Vec::new();
    for round in 0..rounds {
        for program in &programs {
            eprintln!("round {}: {program}", round + 1);
            runs.push((
                program.clone(),
                run_service(program, &prepared, engine_threads, inflight),
            ));
        }
    }

    // The engine alone on the same recordings, as many threads as the service's engine.
    let engine = Engine::new(EngineConfig {
        threads,
        ..EngineConfig::default()
    })
    .expect("an engine");
    let config = ProcessConfig::default();
    let jobs = prepared.iter().enumerate().map(|(i, p)| {
        (
            i,
            JobInput::Source(AudioSource::from_bytes(p.audio.clone())),
        )
    });
    let engine_started = Instant::now();
    let stats = engine.process_batch(jobs, &config, |_, r| ((), r.is_ok()), |_, ()| {});
    let engine_s = engine_started.elapsed().as_secs_f64();
    assert_eq!(stats.failed, 0, "the engine failed a recording");

    let engine_rate = calls as f64 / engine_s;
    println!();
    println!(
        "{calls} calls of {call_s} s ({:.0} MB), {inflight} in flight, engine threads {threads}, {cores} cores; \
         the engine alone on the same recordings, {threads} threads: {engine_s:.2} s, **{engine_rate:.1} calls/s**",
        audio_bytes as f64 / 1e6
    );
    println!();
    println!(
        "| binary | first request → last `stored` | calls/s | service ÷ engine | last upload acknowledged | upload → ack p50 / p99 | receive / process+store, mean | service CPU a call | sent again | peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (program, run) in &runs {
        let rate = calls as f64 / run.stored_s;
        println!(
            "| `{program}` | {:.2} s | **{rate:.1}** | {:.0}% | {:.2} s | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.2} ms | {} | {:.1} MiB |",
            run.stored_s,
            100.0 * rate / engine_rate,
            run.acked_s,
            run.upload_p50_ms,
            run.upload_p99_ms,
            run.receive_ms,
            run.process_ms,
            1000.0 * run.cpu_s / calls as f64,
            run.retries,
            run.peak_kib as f64 / 1024.0,
        );
    }
}

/// What one service run measured.
struct Run {
    stored_s: f64,
    acked_s: f64,
    upload_p50_ms: f64,
    upload_p99_ms: f64,
    receive_ms: f64,
    process_ms: f64,
    cpu_s: f64,
    retries: u64,
    peak_kib: u64,
}

/// Serves `program` on a port of its own, its data in a temporary folder, and plays the calls.
fn run_service(
    program: &str,
    prepared: &Arc<Vec<Prepared>>,
    engine_threads: usize,
    inflight: usize,
) -> Run {
    let calls = prepared.len();
    // The service, on a port of its own, its data in a temporary folder.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let wrap: Vec<String> = std::env::var("SERVE_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let (program, prefix) = match wrap.split_first() {
        Some((first, rest)) => (first.clone(), [rest, &[program.to_string()]].concat()),
        None => (program.to_string(), Vec::new()),
    };
    let service = Service(
        Command::new(program)
            .args(prefix)
            .args(["serve", "--listen", &listen])
            .current_dir(dir.path())
            .env("CALLREC_SERVER__BEARER_TOKENS", format!("[\"{TOKEN}\"]"))
            .env("CALLREC_SERVER__ENGINE_THREADS", engine_threads.to_string())
            .env("CALLREC_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("starting callrec serve"),
    );
    let base_url = format!("http://{listen}");

    // A lean client: one runtime thread, one connection pool; nothing on the clock but HTTP.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client");
    let ready = Instant::now();
    runtime.block_on(async {
        loop {
            let answer = http.get(format!("{base_url}/readyz")).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                ready.elapsed() < Duration::from_secs(30),
                "the service did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let pid = callrec_pid(service.0.id()).expect("the callrec process");
    let cpu_before = proc_stats(pid).map_or(0.0, |(_, cpu)| cpu);

    eprintln!("{calls} calls, {inflight} in flight …");
    let prepared = Arc::clone(prepared);
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let (acked_s, stored_s, peak_kib, upload_ms) = runtime.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..inflight.max(1) {
            let (http, base_url, prepared, next, retries) = (
                http.clone(),
                base_url.clone(),
                Arc::clone(&prepared),
                Arc::clone(&next),
                Arc::clone(&retries),
            );
            tasks.spawn(async move {
                let mut upload_ms = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(p) = prepared.get(i) else {
                        return upload_ms;
                    };
                    let cdr = format!("{base_url}/v1/cdr");
                    let group = p.call.group_id.as_str();
                    for body in [&p.start, &p.end] {
                        send(
                            || {
                                http.post(&cdr)
                                    .query(&[("group", group)])
                                    .header("content-type", "application/x-ndjson")
                                    .body(body.clone())
                            },
                            &retries,
                        )
                        .await;
                    }
                    let url = format!("{base_url}/v1/calls/{}/audio", p.call.call_id);
                    let sent = Instant::now();
                    send(
                        || {
                            http.put(&url)
                                .header("content-type", "audio/wav")
                                .header("x-checksum-sha256", &p.call.sha256)
                                .header("x-checksum-crc32c", &p.crc32c)
                                .body(p.audio.clone())
                        },
                        &retries,
                    )
                    .await;
                    upload_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
            });
        }
        let mut upload_ms = Vec::new();
        while let Some(done) = tasks.join_next().await {
            upload_ms.extend(done.expect("a client task"));
        }
        let acked_s = started.elapsed().as_secs_f64();
        let mut peak_kib = 0;
        loop {
            if let Some((kib, _)) = proc_stats(pid) {
                peak_kib = kib.max(peak_kib);
            }
            if stored(&http, &base_url).await.unwrap_or(0) >= calls as u64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "not every call was stored within 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (
            acked_s,
            started.elapsed().as_secs_f64(),
            peak_kib,
            upload_ms,
        )
    });
    let cpu_s = proc_stats(pid).map_or(0.0, |(_, cpu)| cpu) - cpu_before;
    let metrics = runtime.block_on(async {
        http.get(format!("{base_url}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the metrics")
            .text()
            .await
            .expect("the metrics' text")
    });
    drop(service);
    let failures: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("callrec_pipeline_failures_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    assert_eq!(failures, 0, "the pipeline failed calls:\n{metrics}");
    let stage = |name: &str| -> f64 {
        let value = |what: &str| {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with(&format!("callrec_stage_seconds_{what}{{stage=\"{name}\"}}"))
                })
                .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        1000.0 * value("sum") / value("count").max(1.0)
    };
    let mut upload_ms = upload_ms;
    upload_ms.sort_by(f64::total_cmp);
    let q = |p: f64| upload_ms[((upload_ms.len() - 1) as f64 * p).round() as usize];
    Run {
        stored_s,
        acked_s,
        upload_p50_ms: q(0.5),
        upload_p99_ms: q(0.99),
        receive_ms: stage("receive"),
        process_ms: stage("process_and_store"),
        cpu_s,
        retries: retries.load(std::sync::atomic::Ordering::Relaxed),
        peak_kib,
    }
}
