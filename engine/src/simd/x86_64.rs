//! The AVX2 build of the kernels.

use super::kernels::{self, FIR_TAPS};
use super::{Kernels, Level};

pub fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

pub const AVX2: Kernels = Kernels {
    level: Level::Avx2,
    pcm16_to_f32,
    quantize_i16,
    fir_peak,
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
