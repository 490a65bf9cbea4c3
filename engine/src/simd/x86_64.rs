//! The x86-64 builds of the kernels: AVX2, and AVX-512 (F, BW, DQ, VL).
//!
//! Each level is the same source ([`kernels`]) compiled with more instructions enabled. AVX-512
//! matters less for its width than for its 32 vector registers: the K-weighting lanes keep six
//! state vectors and ten coefficients live, which AVX2's 16 registers cannot hold, and where the
//! register allocator puts the spills decides the speed (measured: the same AVX2 kernel took
//! 57 ms or 160 ms an hour of 8 kHz audio depending on how the crate happened to be split into
//! codegen units).

use super::kernels::{
    self, CENTRAL_TAPS, FIR_TAPS, KW_LANES, KwCoeffs, KwState, LevelSums, P56_LANES, P56State,
};
use super::{Kernels, Level};

pub fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

pub fn has_avx512() -> bool {
    has_avx2()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

/// Wraps `kernels::$name` compiled with `$features`.
macro_rules! kernel {
    ($features:literal, $name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)?) => {
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[target_feature(enable = $features)]
            unsafe fn inner($($arg: $ty),*) $(-> $ret)? {
                kernels::$name($($arg),*)
            }
            // SAFETY: this function is only reachable through the level's `KERNELS`, which
            // `kernels_at` hands out only after checking the CPU has `$features`.
            unsafe { inner($($arg),*) }
        }
    };
}

/// One level: every kernel compiled with `$features`, behind a safe wrapper that is only ever
/// installed in a [`Kernels`] table handed out after the CPU was found to have them.
macro_rules! level {
    ($module:ident, $features:literal, $level:expr) => {
        pub mod $module {
            use super::*;

            pub const KERNELS: Kernels = Kernels {
                level: $level,
                pcm16_to_f32,
                quantize_i16,
                fir_peak,
                fir_peak_central,
                level_sums,
                frame_stats,
                expand_g711,
                kweight_lanes,
                p56_lanes,
            };

            kernel!($features, pcm16_to_f32(src: &[u8], dst: &mut [f32]));
            kernel!($features, quantize_i16(samples: &[f32], gain: f32, out: &mut [i16]));
            kernel!($features, fir_peak(x: &[f32], phases: &[[f32; FIR_TAPS]]) -> f32);
            kernel!(
                $features,
                fir_peak_central(x: &[f32], phases: &[[f32; CENTRAL_TAPS]]) -> f32
            );
            kernel!($features, level_sums(samples: &[f32], full_scale: f32) -> LevelSums);
            kernel!($features, frame_stats(
                samples: &[f32],
                frame_len: usize,
                mean_square: &mut Vec<f32>,
                peak: &mut Vec<f32>
            ));
            kernel!($features, expand_g711(src: &[u8], table: &[f32; 256], dst: &mut [f32]));
            kernel!($features, kweight_lanes(
                x: &[f32],
                starts: &[usize; KW_LANES],
                len: usize,
                c: &KwCoeffs,
                states: &mut [KwState; KW_LANES],
                sums: &mut [f64; KW_LANES]
            ));
            kernel!($features, p56_lanes(
                x: &[f32],
                starts: &[usize; P56_LANES],
                len: usize,
                gh: [f64; 2],
                states: &mut [P56State; P56_LANES],
                events: &mut Vec<kernels::P56Event>
            ));
        }
    };
}

level!(avx2, "avx2", Level::Avx2);
level!(
    avx512,
    "avx2,avx512f,avx512bw,avx512dq,avx512vl",
    Level::Avx512
);

pub use avx2::KERNELS as AVX2;

/// The AVX-512 level, with three kernels from the AVX2 build, where it measured faster on a
/// Zen 4 host: the true-peak FIR (`chain` bench: 5.2 against 5.55 ms for a 5-minute call), the
/// G.711 table (`kernels` bench: 0.57 against 0.89 ms; 16-lane gathers are slow there) and P.56's
/// lanes (perf of `callrec process` on an hour: 263 samples against 332–836 in three builds —
/// its 512-bit loop kept its state on the stack). Every build of a kernel gives the same bits,
/// so the choice is speed alone.
pub const AVX512: Kernels = Kernels {
    fir_peak: avx2::KERNELS.fir_peak,
    fir_peak_central: avx2::KERNELS.fir_peak_central,
    expand_g711: avx2::KERNELS.expand_g711,
    p56_lanes: avx2::KERNELS.p56_lanes,
    ..avx512::KERNELS
};
