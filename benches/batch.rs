//! Batch throughput: 48 one-minute 8 kHz calls through `Engine::process_batch` at 1, 2, …, N
//! threads (N = the cores this machine has). `benches/scaling.py` turns the results into
//! `docs/scaling.svg`. Run: `cargo bench --bench batch`.

use callrec_engine::{AudioSource, Engine, EngineConfig, JobInput, ProcessConfig};
use callrec_fixtures::{CallShape, WavEncoding, WavOptions, synth_call, write_wav};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

const CALLS: usize = 48;

fn batch(c: &mut Criterion) {
    let calls: Vec<AudioSource> = (0..CALLS)
        .map(|i| {
            let shape = CallShape::telephone(60_000, i as u64);
            AudioSource::from_bytes(write_wav(
                &synth_call(&shape),
                8000,
                &WavOptions::new(WavEncoding::I16),
            ))
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = ProcessConfig::default();
    let mut group = c.benchmark_group("batch/48_calls_1min_8k");
    group.throughput(Throughput::Elements(CALLS as u64));
    let mut threads = 1;
    while threads <= cores {
        let engine = Engine::new(EngineConfig {
            threads,
            ..EngineConfig::default()
        })
        .unwrap();
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter(|| {
                let jobs = calls
                    .iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, s)| (i, JobInput::Source(s)))
                    .collect::<Vec<_>>();
                let stats = engine.process_batch(jobs, &config, |_, r| ((), r.is_ok()), |_, ()| {});
                assert_eq!(stats.failed, 0);
            })
        });
        threads = if threads < 4 {
            threads + 1
        } else {
            threads * 2
        };
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    targets = batch
}
criterion_main!(benches);
