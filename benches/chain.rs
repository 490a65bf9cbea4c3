//! The processing chain on a 5-minute 8 kHz mono PCM16 call: each analysis stage, the whole
//! chain, and the `ebur128` crate's loudness and loudness + true peak on the same samples.
//!
//! Run: `cargo bench --bench chain`. Figures and method: PERF.md.

use callrec_engine::dsp::frames::FrameStats;
use callrec_engine::dsp::levels::LevelMeter;
use callrec_engine::dsp::loudness::LoudnessMeter;
use callrec_engine::dsp::p56::SpeechLevelMeter;
use callrec_engine::dsp::silence::{SilenceConfig, silence_map};
use callrec_engine::dsp::true_peak::TruePeakMeter;
use callrec_engine::encode::{OutputFormat, encode};
use callrec_engine::{AudioSource, Limits, ProcessConfig, decode, process};
use callrec_fixtures::{CallShape, WavEncoding, WavOptions, synth_call, write_wav};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn chain(c: &mut Criterion) {
    // One core: the engine splits a long recording across rayon's threads; these figures are
    // per core, so the global pool gets one thread.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global();
    let planes = synth_call(&CallShape::telephone(5 * 60 * 1000, 42));
    let source =
        AudioSource::from_bytes(write_wav(&planes, 8000, &WavOptions::new(WavEncoding::I16)));
    let samples = decode(&source, &Limits::default()).unwrap().planes;
    let mono: &[f32] = &samples[0];
    let mut group = c.benchmark_group("chain/pcm16_8k_mono_5min");
    group.throughput(Throughput::Elements(mono.len() as u64));

    group.bench_function("whole_chain_default", |b| {
        b.iter(|| process(black_box(&source), &ProcessConfig::default()).unwrap())
    });
    // The service's case: the input's digests were computed as it arrived and are handed in,
    // so only the output is hashed.
    group.bench_function("whole_chain_digests_handed_in", |b| {
        let told = source
            .clone()
            .with_digests(callrec_engine::Digests::compute(source.bytes()));
        b.iter(|| process(black_box(&told), &ProcessConfig::default()).unwrap())
    });
    group.bench_function("whole_chain_trim", |b| {
        let config = ProcessConfig {
            trim: true,
            ..ProcessConfig::default()
        };
        b.iter(|| process(black_box(&source), &config).unwrap())
    });
    group.bench_function("loudness", |b| {
        b.iter(|| {
            let mut meter = LoudnessMeter::new(1, 8000);
            meter.push(&[black_box(mono)]);
            meter.finish()
        })
    });
    group.bench_function("true_peak", |b| {
        b.iter(|| {
            let mut meter = TruePeakMeter::new(1, 8000);
            meter.push(&[black_box(mono)]);
            meter.finish()
        })
    });
    // The same peak, every window interpolated (what `true_peak` did before its exact bounds):
    // the ratio of the two, measured in one run, is what the bounds save.
    group.bench_function("true_peak_every_window", |b| {
        let phases = callrec_engine::dsp::true_peak::design_phases(4);
        let mut padded = vec![0f32; 31];
        padded.extend_from_slice(mono);
        b.iter(|| {
            let fir = callrec_engine::simd::kernels().fir_peak;
            let sample = black_box(mono).iter().fold(0f32, |m, &s| m.max(s.abs()));
            sample.max(fir(black_box(&padded), &phases))
        })
    });
    group.bench_function("loudness+true_peak", |b| {
        b.iter(|| {
            let mut loudness = LoudnessMeter::new(1, 8000);
            let mut peak = TruePeakMeter::new(1, 8000);
            loudness.push(&[black_box(mono)]);
            peak.push(&[black_box(mono)]);
            (loudness.finish(), peak.finish())
        })
    });
    group.bench_function("ebur128_crate/loudness", |b| {
        b.iter(|| {
            let mut meter = ebur128::EbuR128::new(1, 8000, ebur128::Mode::I).unwrap();
            meter.add_frames_f32(black_box(mono)).unwrap();
            meter.loudness_global().unwrap()
        })
    });
    group.bench_function("ebur128_crate/loudness+true_peak", |b| {
        b.iter(|| {
            let mut meter =
                ebur128::EbuR128::new(1, 8000, ebur128::Mode::I | ebur128::Mode::TRUE_PEAK)
                    .unwrap();
            meter.add_frames_f32(black_box(mono)).unwrap();
            (
                meter.loudness_global().unwrap(),
                meter.true_peak(0).unwrap(),
            )
        })
    });
    group.bench_function("p56", |b| {
        b.iter(|| {
            let mut meter = SpeechLevelMeter::new(8000);
            meter.push(black_box(mono));
            meter.finish()
        })
    });
    group.bench_function("levels", |b| {
        b.iter(|| {
            let mut meter = LevelMeter::new(1, 8000, 32767.0 / 32768.0);
            // The render passes' blocks (64 decode blocks).
            for block in mono.chunks(64 * decode::BLOCK_FRAMES) {
                meter.push(&[black_box(block)]);
            }
            meter.finish()
        })
    });
    group.bench_function("frames+silence_map", |b| {
        b.iter(|| {
            let stats = FrameStats::compute(black_box(&samples), 8000);
            silence_map(&samples, &stats, Some(-26.0), &SilenceConfig::default())
        })
    });
    group.bench_function("encode_pcm16", |b| {
        b.iter(|| encode(black_box(&samples), 8000, 0.9, OutputFormat::Wav).unwrap())
    });
    group.bench_function("encode_flac", |b| {
        b.iter(|| encode(black_box(&samples), 8000, 0.9, OutputFormat::Flac).unwrap())
    });
    group.finish();

    // A short call: what is paid per recording whatever its length (filter design, buffers,
    // the report) weighs more here.
    let short = AudioSource::from_bytes(write_wav(
        &synth_call(&CallShape::telephone(30 * 1000, 7)),
        8000,
        &WavOptions::new(WavEncoding::I16),
    ));
    let mut group = c.benchmark_group("chain/pcm16_8k_mono_30s");
    group.throughput(Throughput::Elements(1));
    group.bench_function("whole_chain_default", |b| {
        b.iter(|| process(black_box(&short), &ProcessConfig::default()).unwrap())
    });
    group.bench_function("k_weighting_design_8k", |b| {
        b.iter(|| callrec_engine::dsp::kweight::design_k_weighting(black_box(8000)))
    });
    group.finish();
}

/// The whole chain on the other inputs the engine meets: a stereo call, a 48 kHz stereo file,
/// and an MP3 (the committed 10-second fixture, through symphonia).
fn inputs(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain/inputs");
    let wav = |ms: u64, rate: u32, channels: u16| {
        let shape = CallShape::telephone(ms, 7)
            .with_rate(rate)
            .with_channels(channels);
        AudioSource::from_bytes(write_wav(
            &synth_call(&shape),
            rate,
            &WavOptions::new(WavEncoding::I16),
        ))
    };
    let mp3_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/audio/speech_16k_mono.mp3"
    );
    let inputs = [
        (
            "pcm16_8k_stereo_5min",
            wav(300_000, 8000, 2),
            300 * 8000 * 2,
        ),
        (
            "pcm16_48k_stereo_1min",
            wav(60_000, 48_000, 2),
            60 * 48_000 * 2,
        ),
        (
            "mp3_16k_mono_10s",
            AudioSource::map_file(mp3_path.as_ref(), &Limits::default()).unwrap(),
            10 * 16_000,
        ),
    ];
    for (name, source, samples) in inputs {
        group.throughput(Throughput::Elements(samples));
        group.bench_function(name, |b| {
            b.iter(|| process(black_box(&source), &ProcessConfig::default()).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = chain, inputs
}
criterion_main!(benches);
