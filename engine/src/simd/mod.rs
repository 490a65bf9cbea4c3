//! Hot loops with runtime CPU dispatch.
//!
//! Each kernel is written once, in [`kernels`], as plain Rust whose arithmetic order is fixed:
//! independent lanes, no reassociation, and no fused multiply-add (Rust never contracts
//! `a * b + c` on its own). It is compiled at the target's baseline (SSE2 on x86-64, NEON on
//! aarch64) and, on x86-64, with AVX2 and with AVX-512 enabled — and the CPU is checked once to pick one
//! ([`Kernels`], cached like memchr's function pointers). Because the arithmetic is the same, every
//! level gives bit-identical results: the determinism that resuming on another machine relies on.
//! Each kernel has a deliberately naive scalar twin in [`scalar`], and the tests hold every level
//! the machine has to it.
//!
//! `CALLREC_SIMD=baseline` (or `avx2`, `avx512`) forces a level the CPU has, for tests and
//! benchmarks.

pub mod kernels;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use std::sync::OnceLock;

/// An instruction-set level the kernels can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The target's baseline: SSE2 on x86-64, NEON on aarch64, plain code elsewhere.
    Baseline,
    /// x86-64 AVX2 (8 f32 lanes).
    Avx2,
    /// x86-64 AVX-512 F, BW, DQ and VL (16 f32 lanes, 32 vector registers).
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// The kernels of one level, as plain function pointers.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    pub level: Level,
    /// Little-endian PCM16 bytes → f32 (÷ 32768), one channel.
    pub pcm16_to_f32: fn(&[u8], &mut [f32]),
    /// f32 × gain → i16, clamped, rounded to nearest-even.
    pub quantize_i16: fn(&[f32], f32, &mut [i16]),
    /// The largest |y| of a polyphase FIR over `x`: y_p[i] = Σ_k x[i + k] · phases[p][k], for
    /// every branch p and every i with a full window; `phases` are [`kernels::FIR_TAPS`] long.
    pub fir_peak: fn(&[f32], &[[f32; kernels::FIR_TAPS]]) -> f32,
    /// The same with [`kernels::CENTRAL_TAPS`]-tap branches (the true peak's bound).
    pub fir_peak_central: fn(&[f32], &[[f32; kernels::CENTRAL_TAPS]]) -> f32,
    /// Peak, sum, sum of squares and clipped count of a block (the level meter).
    pub level_sums: fn(&[f32], f32) -> kernels::LevelSums,
    /// Mean square and peak per frame (the 10 ms frame statistics).
    pub frame_stats: fn(&[f32], usize, &mut Vec<f32>, &mut Vec<f32>),
    /// G.711 bytes through a 256-entry f32 table.
    pub expand_g711: fn(&[u8], &[f32; 256], &mut [f32]),
    /// [`kernels::KW_LANES`] segments of one channel through the K-weighting cascade in
    /// lockstep (see [`kernels::kweight_lanes`]).
    pub kweight_lanes: KweightLanes,
    /// [`kernels::P56_LANES`] segments of one channel through P.56's envelope in lockstep (see
    /// [`kernels::p56_lanes`]).
    pub p56_lanes: P56Lanes,
}

/// The signature of [`kernels::p56_lanes`].
pub type P56Lanes = fn(
    &[f32],
    &[usize; kernels::P56_LANES],
    usize,
    [f64; 2],
    &mut [kernels::P56State; kernels::P56_LANES],
    &mut Vec<kernels::P56Event>,
);

/// The signature of [`kernels::kweight_lanes`].
pub type KweightLanes = fn(
    &[f32],
    &[usize; kernels::KW_LANES],
    usize,
    &kernels::KwCoeffs,
    &mut [kernels::KwState; kernels::KW_LANES],
    &mut [f64; kernels::KW_LANES],
);

const BASELINE: Kernels = Kernels {
    level: Level::Baseline,
    pcm16_to_f32: kernels::pcm16_to_f32,
    quantize_i16: kernels::quantize_i16,
    fir_peak: kernels::fir_peak,
    fir_peak_central: kernels::fir_peak_central,
    level_sums: kernels::level_sums,
    frame_stats: kernels::frame_stats,
    expand_g711: kernels::expand_g711,
    kweight_lanes: kernels::kweight_lanes,
    p56_lanes: kernels::p56_lanes,
};

/// The levels this CPU can run, baseline first.
pub fn available() -> Vec<Level> {
    let mut levels = vec![Level::Baseline];
    #[cfg(target_arch = "x86_64")]
    if x86_64::has_avx2() {
        levels.push(Level::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if x86_64::has_avx512() {
        levels.push(Level::Avx512);
    }
    levels
}

/// A missing CPU feature (rubato's approach: a typed error, not a crash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this CPU cannot run the {0} kernels")]
pub struct UnsupportedLevel(pub &'static str);

/// The kernels of `level`, if this CPU has it.
pub fn kernels_at(level: Level) -> Result<&'static Kernels, UnsupportedLevel> {
    match level {
        Level::Baseline => Ok(&BASELINE),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 if x86_64::has_avx2() => Ok(&x86_64::AVX2),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 if x86_64::has_avx512() => Ok(&x86_64::AVX512),
        other => Err(UnsupportedLevel(other.name())),
    }
}

/// The kernels for this process: the best level the CPU has, or the one `CALLREC_SIMD` names.
/// Decided once.
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let best = *available().last().expect("baseline is always available");
        let wanted = match std::env::var("CALLREC_SIMD").ok().as_deref().map(str::trim) {
            Some("baseline" | "scalar" | "sse2" | "neon") => Level::Baseline,
            Some("avx2") => Level::Avx2,
            Some("avx512") => Level::Avx512,
            _ => best,
        };
        kernels_at(wanted)
            .unwrap_or_else(|_| kernels_at(best).expect("the best level is available"))
    })
}
