//! Each SIMD kernel at each level this CPU has, on a 5-minute 8 kHz call (2.4 M samples), and
//! the scalar twin for reference. Run: `cargo bench --bench kernels`.

use callrec_engine::dsp::true_peak::design_phases;
use callrec_engine::simd::kernels::{
    CENTRAL_FROM, CENTRAL_TAPS, KW_LANES, KwState, P56_LANES, P56Event, P56State,
};
use callrec_engine::simd::{self, kernels_at, scalar};
use callrec_fixtures::{CallShape, synth_call};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn kernels(c: &mut Criterion) {
    let samples = synth_call(&CallShape::telephone(5 * 60 * 1000, 42)).remove(0);
    let bytes: Vec<u8> = samples
        .iter()
        .flat_map(|&s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    let phases = design_phases(4);
    let n = samples.len();
    // K-weighting: the call cut into KW_LANES segments run in lockstep (serially for the twin).
    let kw = callrec_engine::dsp::kfilter::coefficients(8000);
    let seg = n / KW_LANES;
    let starts: [usize; KW_LANES] = std::array::from_fn(|l| l * seg);
    let kweight = |f: simd::KweightLanes| {
        let mut states = [KwState::default(); KW_LANES];
        let mut sums = [0f64; KW_LANES];
        f(
            black_box(&samples),
            &starts,
            seg,
            &kw,
            &mut states,
            &mut sums,
        );
        sums
    };
    // The true peak's exact bound: the 16 middle taps of each branch.
    let central: Vec<[f32; CENTRAL_TAPS]> = phases
        .iter()
        .map(|p| std::array::from_fn(|k| p[CENTRAL_FROM + k]))
        .collect();
    // P.56's envelope (30 ms at 8 kHz): the call cut into P56_LANES segments.
    let g = (-1.0 / (8000.0 * 0.03f64)).exp();
    let p56_seg = n / P56_LANES;
    let p56_starts: [usize; P56_LANES] = std::array::from_fn(|l| l * p56_seg);
    let mut events: Vec<P56Event> = Vec::new();
    let mut p56 = |f: simd::P56Lanes| {
        let mut states: [P56State; P56_LANES] = [[0.0; 2]; P56_LANES];
        events.clear();
        f(
            black_box(&samples),
            &p56_starts,
            p56_seg,
            [g, 1.0 - g],
            &mut states,
            &mut events,
        );
        events.len()
    };

    let mut group = c.benchmark_group("kernels/5min_8k");
    group.throughput(Throughput::Elements(n as u64));
    let mut out_f32 = vec![0f32; n];
    let mut out_i16 = vec![0i16; n];
    group.bench_function(BenchmarkId::new("pcm16_to_f32", "scalar_twin"), |b| {
        b.iter(|| scalar::pcm16_to_f32(black_box(&bytes), &mut out_f32))
    });
    group.bench_function(BenchmarkId::new("quantize_i16", "scalar_twin"), |b| {
        b.iter(|| scalar::quantize_i16(black_box(&samples), 0.8, &mut out_i16))
    });
    group.bench_function(BenchmarkId::new("fir_peak_x4", "scalar_twin"), |b| {
        b.iter(|| scalar::fir_peak(black_box(&samples), &phases))
    });
    let ulaw: Vec<u8> = bytes.iter().step_by(2).copied().collect();
    let table = &callrec_engine::decode::g711::ULAW_TO_F32;
    let (mut ms, mut pk) = (
        Vec::with_capacity(n / 80 + 1),
        Vec::with_capacity(n / 80 + 1),
    );
    group.bench_function(BenchmarkId::new("level_sums", "scalar_twin"), |b| {
        b.iter(|| scalar::level_sums(black_box(&samples), 32767.0 / 32768.0))
    });
    group.bench_function(BenchmarkId::new("frame_stats", "scalar_twin"), |b| {
        b.iter(|| {
            ms.clear();
            pk.clear();
            scalar::frame_stats(black_box(&samples), 80, &mut ms, &mut pk)
        })
    });
    group.bench_function(BenchmarkId::new("expand_ulaw", "scalar_twin"), |b| {
        b.iter(|| scalar::expand_g711(black_box(&ulaw), table, &mut out_f32))
    });
    group.bench_function(BenchmarkId::new("kweight_8_lanes", "scalar_twin"), |b| {
        b.iter(|| kweight(scalar::kweight_lanes))
    });
    group.bench_function(BenchmarkId::new("fir_peak_central", "scalar_twin"), |b| {
        b.iter(|| scalar::fir_peak_central(black_box(&samples), &central))
    });
    group.bench_function(BenchmarkId::new("p56_8_lanes", "scalar_twin"), |b| {
        b.iter(|| p56(scalar::p56_lanes))
    });
    for level in simd::available() {
        let k = kernels_at(level).unwrap();
        group.bench_function(BenchmarkId::new("kweight_8_lanes", level.name()), |b| {
            b.iter(|| kweight(k.kweight_lanes))
        });
        group.bench_function(BenchmarkId::new("pcm16_to_f32", level.name()), |b| {
            b.iter(|| (k.pcm16_to_f32)(black_box(&bytes), &mut out_f32))
        });
        group.bench_function(BenchmarkId::new("quantize_i16", level.name()), |b| {
            b.iter(|| (k.quantize_i16)(black_box(&samples), 0.8, &mut out_i16))
        });
        group.bench_function(BenchmarkId::new("fir_peak_x4", level.name()), |b| {
            b.iter(|| (k.fir_peak)(black_box(&samples), &phases))
        });
        group.bench_function(BenchmarkId::new("level_sums", level.name()), |b| {
            b.iter(|| (k.level_sums)(black_box(&samples), 32767.0 / 32768.0))
        });
        group.bench_function(BenchmarkId::new("frame_stats", level.name()), |b| {
            b.iter(|| {
                ms.clear();
                pk.clear();
                (k.frame_stats)(black_box(&samples), 80, &mut ms, &mut pk)
            })
        });
        group.bench_function(BenchmarkId::new("expand_ulaw", level.name()), |b| {
            b.iter(|| (k.expand_g711)(black_box(&ulaw), table, &mut out_f32))
        });
        group.bench_function(BenchmarkId::new("fir_peak_central", level.name()), |b| {
            b.iter(|| (k.fir_peak_central)(black_box(&samples), &central))
        });
        group.bench_function(BenchmarkId::new("p56_8_lanes", level.name()), |b| {
            b.iter(|| p56(k.p56_lanes))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = kernels
}
criterion_main!(benches);
