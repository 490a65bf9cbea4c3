//! The backfill benchmark (a measurement, not a test): `callrec backfill` over a multi-day range
//! of one OCP group, nothing of it streamed before, against ocp-sim's Exports API on a loopback
//! port; then the engine alone (`Engine::process_batch`, every core) on the very same
//! recordings, so the two rates compare within one run on one machine.
//!
//! ```sh
//! cargo bench --bench backfill                      # 1,500 calls of 20–40 s over 3 days
//! BACKFILL_CALLS=4000 BACKFILL_DAYS=7 BACKFILL_SHARD_HOURS=24 cargo bench --bench backfill
//! ```
//!
//! Knobs (environment): `BACKFILL_CALLS`, `BACKFILL_DAYS`, `BACKFILL_MIN_S`, `BACKFILL_MAX_S`
//! (call lengths), `BACKFILL_SHARD_HOURS` (1–48), `BACKFILL_DOWNLOADS`
//! (`reconcile.download_concurrency`), `BACKFILL_EXPORT_S` (how long OCP takes to complete an
//! export), `BACKFILL_WRAP` (a command the child runs under, e.g. `perf record -g -o FILE --`),
//! `BACKFILL_PLAIN_HTTP=1` (OCP over plain HTTP instead of HTTPS, to see what TLS costs).
//! Prints a Markdown table for PERF.md.

use bytes::Bytes;
use callrec_engine::{AudioSource, Engine, EngineConfig, JobInput, ProcessConfig};
use jiff::{SignedDuration, Timestamp};
use ocp_sim::exports::{ExportsApi, ExportsConfig};
use rayon::prelude::*;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{knob, proc_stats};

const GROUP: &str = "grp-backfill-01";
const PASSWORD: &str = "bench-ocp-secret";

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name us skips the run.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with("--") && !"backfill".contains(a.as_str()))
    {
        return;
    }
    let calls: usize = knob("BACKFILL_CALLS", 1500);
    let days: i64 = knob("BACKFILL_DAYS", 3);
    let min_s: f64 = knob("BACKFILL_MIN_S", 20.0);
    let max_s: f64 = knob("BACKFILL_MAX_S", 40.0);
    let shard_hours: u32 = knob("BACKFILL_SHARD_HOURS", 48);
    let downloads: usize = knob("BACKFILL_DOWNLOADS", 4);
    let export_s: f64 = knob("BACKFILL_EXPORT_S", 0.5);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The range: `days` whole days ending at the last full hour, calls spread evenly over it.
    let now = Timestamp::now();
    let to = jiff::Timestamp::from_second(now.as_second() - now.as_second().rem_euclid(3600))
        .expect("a valid hour");
    let from = to - SignedDuration::from_hours(24 * days);
    let spacing = SignedDuration::from_secs(24 * 3600 * days) / (calls.max(1) as i32);
    let mut sim = ocp_sim::SimConfig::new("", "");
    sim.calls = calls;
    sim.seed = 2026;
    sim.min_call_s = min_s;
    sim.max_call_s = max_s;
    sim.groups = vec![GROUP.into()];
    let sim = Arc::new(sim);
    eprintln!("synthesizing {calls} recordings of {min_s}-{max_s} s …");
    let made = Instant::now();
    let planned: Vec<(ocp_sim::SimCall, Bytes)> = (0..calls)
        .into_par_iter()
        .map(|index| {
            let mut call = ocp_sim::plan_call(&sim, index, from);
            let length = call.end.duration_since(call.start);
            call.start = from + spacing * (index as i32);
            call.end = call.start + length;
            let audio = Bytes::from(ocp_sim::recording(&sim, &call, index));
            (call, audio)
        })
        .collect();
    let audio_bytes: u64 = planned.iter().map(|(_, a)| a.len() as u64).sum();
    let audio_s: f64 = planned
        .iter()
        .map(|(c, _)| c.duration_ms as f64 / 1000.0)
        .sum();
    eprintln!(
        "  {:.1} s; {:.1} h of audio, {:.0} MB",
        made.elapsed().as_secs_f64(),
        audio_s / 3600.0,
        audio_bytes as f64 / 1e6
    );

    // 1. The backfill, as an operator runs it.
    let mut exports = ExportsConfig::new("callrec", PASSWORD);
    exports.completion_delay = Duration::from_secs_f64(export_s);
    let recordings = planned
        .iter()
        .enumerate()
        .map(|(index, (call, audio))| {
            ocp_sim::export_recording(&sim, call, index, audio.clone(), true)
        })
        .collect();
    let api = ExportsApi::new(exports, recordings);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    // Over HTTPS, as OCP is: the TLS cost (both ends: the simulator runs in this process) is part
    // of the figure, unless BACKFILL_PLAIN_HTTP asks to leave it out.
    let plain: u8 = knob("BACKFILL_PLAIN_HTTP", 0);
    let served = runtime
        .block_on(ocp_sim::exports::serve(api.clone(), plain == 0))
        .expect("serving the simulated OCP");
    let url = served.url;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let trust = match served.ca_pem {
        Some(pem) => {
            std::fs::write(dir.path().join("ocp-ca.pem"), pem).expect("writing the CA");
            "ca_file = \"ocp-ca.pem\""
        }
        None => "allow_insecure_http = true",
    };
    std::fs::write(
        dir.path().join("callrec.toml"),
        format!(
            "[ocp]\nbase_url = \"{url}\"\n{trust}\nusername = \"callrec\"\n\
             [reconcile]\npoll_initial_s = 0.2\npoll_max_s = 1.0\n\
             download_concurrency = {downloads}\n"
        ),
    )
    .expect("writing callrec.toml");
    eprintln!("callrec backfill over {days} days in {shard_hours}-hour shards …");
    let started = Instant::now();
    // A profiler may wrap the child: BACKFILL_WRAP="perf record -g -o /tmp/backfill.perf --".
    let wrap: Vec<String> = std::env::var("BACKFILL_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let program = env!("CARGO_BIN_EXE_callrec").to_string();
    let (program, prefix) = match wrap.split_first() {
        Some((first, rest)) => (first.clone(), [rest, &[program]].concat()),
        None => (program, Vec::new()),
    };
    let mut child = Command::new(program)
        .args(prefix)
        .args(["backfill", "--config", "callrec.toml", "--group", GROUP])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .args(["--shard-hours", &shard_hours.to_string()])
        .current_dir(dir.path())
        .env("CALLREC_OCP__PASSWORD", PASSWORD)
        .env("CALLREC_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting callrec backfill");
    let mut peak_kib = 0;
    while child.try_wait().expect("waiting for callrec").is_none() {
        if let Some((kib, _)) = proc_stats(child.id()) {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("callrec's output");
    let backfill_s = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    assert!(output.status.success(), "callrec backfill failed");
    assert!(
        stdout.contains(&format!("{calls} recordings stored here")),
        "not every recording was stored"
    );
    let exports_created = api.exports_created();
    let downloaded: u64 = api.downloads().values().sum();
    drop(runtime);

    // 2. The engine alone on the same recordings, every core.
    let engine = Engine::new(EngineConfig {
        threads: cores,
        ..EngineConfig::default()
    })
    .expect("an engine");
    let config = ProcessConfig::default();
    let jobs = planned
        .iter()
        .enumerate()
        .map(|(i, (_, audio))| (i, JobInput::Source(AudioSource::from_bytes(audio.clone()))));
    let started = Instant::now();
    let stats = engine.process_batch(jobs, &config, |_, r| ((), r.is_ok()), |_, ()| {});
    let engine_s = started.elapsed().as_secs_f64();
    assert_eq!(stats.failed, 0, "the engine failed a recording");

    let rate = calls as f64 / backfill_s;
    let engine_rate = calls as f64 / engine_s;
    println!();
    println!(
        "| {calls} recordings, {:.1} h of audio ({:.0} MB), {days} days, {shard_hours}-h shards, {cores} cores | figure |",
        audio_s / 3600.0,
        audio_bytes as f64 / 1e6
    );
    println!("| --- | --- |");
    println!(
        "| `callrec backfill`, start to exit | {backfill_s:.1} s: **{rate:.0} recordings/s**, {:.1} MB/s, {:.0}× real time |",
        audio_bytes as f64 / 1e6 / backfill_s,
        audio_s / backfill_s
    );
    println!("| exports requested / recordings downloaded | {exports_created} / {downloaded} |");
    println!(
        "| peak memory of `callrec backfill` (VmHWM) | {:.1} MiB |",
        peak_kib as f64 / 1024.0
    );
    println!(
        "| the engine alone, same recordings, {cores} threads | {engine_s:.1} s: **{engine_rate:.0} recordings/s** |"
    );
    println!(
        "| backfill ÷ engine | **{:.0}%** |",
        100.0 * rate / engine_rate
    );
}
