//! Scalar twins: the plainest correct form of each kernel, for the tests to compare every
//! dispatched level with. Not used on any hot path.

use super::kernels::FIR_TAPS;

pub fn pcm16_to_f32(src: &[u8], dst: &mut [f32]) {
    for i in 0..dst.len().min(src.len() / 2) {
        let v = i16::from_le_bytes([src[2 * i], src[2 * i + 1]]);
        dst[i] = v as f32 / 32768.0;
    }
}

pub fn quantize_i16(samples: &[f32], gain: f32, out: &mut [i16]) {
    for i in 0..out.len().min(samples.len()) {
        let scaled = (samples[i] * gain * 32768.0).clamp(-32768.0, 32767.0);
        out[i] = scaled.round_ties_even() as i16;
    }
}

pub fn fir_peak(x: &[f32], phases: &[[f32; FIR_TAPS]]) -> f32 {
    let mut max = 0f32;
    if x.len() < FIR_TAPS {
        return max;
    }
    for start in 0..=x.len() - FIR_TAPS {
        for phase in phases {
            let mut y = 0f32;
            for k in 0..FIR_TAPS {
                y += phase[k] * x[start + k];
            }
            max = max.max(y.abs());
        }
    }
    max
}
