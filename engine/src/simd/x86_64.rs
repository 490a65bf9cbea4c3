//! The AVX2 build of the kernels.

use super::kernels::{self, FIR_TAPS, KW_LANES, KwCoeffs, KwState, LevelSums, P56_LANES, P56State};
use super::{Kernels, Level};

pub fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

pub const AVX2: Kernels = Kernels {
    level: Level::Avx2,
    pcm16_to_f32,
    quantize_i16,
    fir_peak,
    level_sums,
    frame_stats,
    expand_g711,
    kweight_lanes,
    p56_lanes,
};

#[target_feature(enable = "avx2")]
unsafe fn pcm16_to_f32_avx2(src: &[u8], dst: &mut [f32]) {
    kernels::pcm16_to_f32(src, dst)
}

#[target_feature(enable = "avx2")]
unsafe fn quantize_i16_avx2(samples: &[f32], gain: f32, out: &mut [i16]) {
    kernels::quantize_i16(samples, gain, out)
}

#[target_feature(enable = "avx2")]
unsafe fn fir_peak_avx2(x: &[f32], phases: &[[f32; FIR_TAPS]]) -> f32 {
    kernels::fir_peak(x, phases)
}

fn pcm16_to_f32(src: &[u8], dst: &mut [f32]) {
    // SAFETY: AVX2 is only ever selected after `has_avx2()` said the CPU has it.
    unsafe { pcm16_to_f32_avx2(src, dst) }
}

fn quantize_i16(samples: &[f32], gain: f32, out: &mut [i16]) {
    // SAFETY: as above, only reachable when the CPU has AVX2.
    unsafe { quantize_i16_avx2(samples, gain, out) }
}

fn fir_peak(x: &[f32], phases: &[[f32; FIR_TAPS]]) -> f32 {
    // SAFETY: as above, only reachable when the CPU has AVX2.
    unsafe { fir_peak_avx2(x, phases) }
}

#[target_feature(enable = "avx2")]
unsafe fn level_sums_avx2(samples: &[f32], full_scale: f32) -> LevelSums {
    kernels::level_sums(samples, full_scale)
}

#[target_feature(enable = "avx2")]
unsafe fn frame_stats_avx2(
    samples: &[f32],
    frame_len: usize,
    mean_square: &mut Vec<f32>,
    peak: &mut Vec<f32>,
) {
    kernels::frame_stats(samples, frame_len, mean_square, peak)
}

#[target_feature(enable = "avx2")]
unsafe fn expand_g711_avx2(src: &[u8], table: &[f32; 256], dst: &mut [f32]) {
    kernels::expand_g711(src, table, dst)
}

fn level_sums(samples: &[f32], full_scale: f32) -> LevelSums {
    // SAFETY: only reachable when the CPU has AVX2 (see `pcm16_to_f32`).
    unsafe { level_sums_avx2(samples, full_scale) }
}

fn frame_stats(samples: &[f32], frame_len: usize, mean_square: &mut Vec<f32>, peak: &mut Vec<f32>) {
    // SAFETY: only reachable when the CPU has AVX2.
    unsafe { frame_stats_avx2(samples, frame_len, mean_square, peak) }
}

fn expand_g711(src: &[u8], table: &[f32; 256], dst: &mut [f32]) {
    // SAFETY: only reachable when the CPU has AVX2.
    unsafe { expand_g711_avx2(src, table, dst) }
}

#[target_feature(enable = "avx2")]
unsafe fn kweight_lanes_avx2(
    x: &[f32],
    starts: &[usize; KW_LANES],
    len: usize,
    c: &KwCoeffs,
    states: &mut [KwState; KW_LANES],
    sums: &mut [f64; KW_LANES],
) {
    kernels::kweight_lanes(x, starts, len, c, states, sums)
}

fn kweight_lanes(
    x: &[f32],
    starts: &[usize; KW_LANES],
    len: usize,
    c: &KwCoeffs,
    states: &mut [KwState; KW_LANES],
    sums: &mut [f64; KW_LANES],
) {
    // SAFETY: only reachable when the CPU has AVX2.
    unsafe { kweight_lanes_avx2(x, starts, len, c, states, sums) }
}

#[target_feature(enable = "avx2")]
unsafe fn p56_lanes_avx2(
    x: &[f32],
    starts: &[usize; P56_LANES],
    len: usize,
    gh: [f64; 2],
    states: &mut [P56State; P56_LANES],
    events: &mut Vec<kernels::P56Event>,
) {
    kernels::p56_lanes(x, starts, len, gh, states, events)
}

fn p56_lanes(
    x: &[f32],
    starts: &[usize; P56_LANES],
    len: usize,
    gh: [f64; 2],
    states: &mut [P56State; P56_LANES],
    events: &mut Vec<kernels::P56Event>,
) {
    // SAFETY: only reachable when the CPU has AVX2.
    unsafe { p56_lanes_avx2(x, starts, len, gh, states, events) }
}
