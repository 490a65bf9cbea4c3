//! Decoding speed: callrec's WAVE fast path against symphonia on the same bytes, and the
//! one-pass checksums. Inputs are synthesized in memory (5-minute 8 kHz mono calls), so the
//! bench needs no files.
//!
//! Run: `cargo bench --bench decode`. Figures and method: PERF.md.

use callrec_engine::{AudioSource, Decoder, Digests, Limits};
use callrec_fixtures::{CallShape, WavEncoding, WavOptions, synth_call, write_wav};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn five_minute_call(encoding: WavEncoding) -> AudioSource {
    let planes = synth_call(&CallShape::telephone(5 * 60 * 1000, 42));
    AudioSource::from_bytes(write_wav(&planes, 8000, &WavOptions::new(encoding)))
}

/// Decodes in blocks and touches each one, as a streaming consumer would.
fn stream(mut decoder: Decoder) -> f32 {
    let mut sum = 0f32;
    decoder
        .run(&mut |block: &[&[f32]]| {
            sum += block[0][0];
            Ok(())
        })
        .unwrap();
    sum
}

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    for (label, encoding) in [
        ("pcm16_8k_mono_5min", WavEncoding::I16),
        ("ulaw_8k_mono_5min", WavEncoding::MuLaw),
    ] {
        let source = five_minute_call(encoding);
        let frames = 5 * 60 * 8000u64;
        let mut group = c.benchmark_group(format!("decode/{label}"));
        group.throughput(Throughput::Elements(frames));
        group.bench_function(BenchmarkId::new("fast_path", "to_buffer"), |b| {
            b.iter(|| {
                Decoder::open(black_box(&source), &limits)
                    .unwrap()
                    .decode_all(&limits)
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("symphonia", "to_buffer"), |b| {
            b.iter(|| {
                Decoder::open_symphonia(black_box(&source), &limits)
                    .unwrap()
                    .decode_all(&limits)
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("fast_path", "streamed_blocks"), |b| {
            b.iter(|| stream(Decoder::open(black_box(&source), &limits).unwrap()))
        });
        group.bench_function(BenchmarkId::new("symphonia", "streamed_blocks"), |b| {
            b.iter(|| stream(Decoder::open_symphonia(black_box(&source), &limits).unwrap()))
        });
        group.finish();
    }
}

fn checksums(c: &mut Criterion) {
    let source = five_minute_call(WavEncoding::I16);
    let mut group = c.benchmark_group("checksums/pcm16_8k_mono_5min");
    group.throughput(Throughput::Bytes(source.len()));
    group.bench_function("sha256+crc32c+crc64nvme", |b| {
        b.iter(|| Digests::compute(black_box(source.bytes())))
    });
    group.bench_function("sha256+crc32c+crc64nvme+md5", |b| {
        b.iter(|| Digests::compute_with_md5(black_box(source.bytes())))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = decode, checksums
}
criterion_main!(benches);
