//! Scalar twins: the plainest correct form of each kernel, for the tests to compare every
//! dispatched level with. Not used on any hot path.

use super::kernels::{
    CENTRAL_TAPS, FIR_TAPS, KW_LANES, KwCoeffs, KwState, LevelSums, P56_EXPONENT, P56_LANES,
    P56Event, P56State, kweight_step, p56_step,
};

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
    fir_peak_of(x, phases)
}

pub fn fir_peak_central(x: &[f32], phases: &[[f32; CENTRAL_TAPS]]) -> f32 {
    fir_peak_of(x, phases)
}

fn fir_peak_of<const TAPS: usize>(x: &[f32], phases: &[[f32; TAPS]]) -> f32 {
    let mut max = 0f32;
    if x.len() < TAPS {
        return max;
    }
    for start in 0..=x.len() - TAPS {
        for phase in phases {
            let mut y = 0f32;
            for k in 0..TAPS {
                y += phase[k] * x[start + k];
            }
            max = max.max(y.abs());
        }
    }
    max
}

pub fn level_sums(samples: &[f32], full_scale: f32) -> LevelSums {
    let full = samples.len() / 8 * 8;
    let (mut peak, mut sum, mut squares, mut clipped) =
        ([0f32; 8], [0f32; 8], [0f32; 8], [0u32; 8]);
    for (i, &s) in samples.iter().enumerate() {
        let lane = if i < full { i % 8 } else { 0 };
        peak[lane] = peak[lane].max(s.abs());
        sum[lane] += s;
        squares[lane] += s * s;
        if s.abs() >= full_scale {
            clipped[lane] += 1;
        }
    }
    let mut out = LevelSums {
        peak: 0.0,
        sum: 0.0,
        squares: 0.0,
        clipped: 0,
    };
    for lane in 0..8 {
        out.peak = out.peak.max(peak[lane]);
        out.sum += sum[lane] as f64;
        out.squares += squares[lane] as f64;
        out.clipped += clipped[lane] as u64;
    }
    out
}

pub fn frame_stats(
    samples: &[f32],
    frame_len: usize,
    mean_square: &mut Vec<f32>,
    peak: &mut Vec<f32>,
) {
    let mut start = 0;
    while start < samples.len() {
        let frame = &samples[start..(start + frame_len).min(samples.len())];
        let full = frame.len() / 8 * 8;
        let (mut squares, mut max) = ([0f32; 8], [0f32; 8]);
        for (i, &s) in frame.iter().enumerate() {
            let lane = if i < full { i % 8 } else { 0 };
            squares[lane] += s * s;
            max[lane] = max[lane].max(s.abs());
        }
        let mut total = 0f32;
        for lane in squares {
            total += lane;
        }
        mean_square.push(total / frame.len() as f32);
        peak.push(max.iter().fold(0f32, |m, &p| m.max(p)));
        start += frame_len;
    }
}

pub fn expand_g711(src: &[u8], table: &[f32; 256], dst: &mut [f32]) {
    for i in 0..dst.len().min(src.len()) {
        dst[i] = table[src[i] as usize];
    }
}

/// Each lane on its own, one sample at a time.
pub fn kweight_lanes(
    x: &[f32],
    starts: &[usize; KW_LANES],
    len: usize,
    c: &KwCoeffs,
    states: &mut [KwState; KW_LANES],
    sums: &mut [f64; KW_LANES],
) {
    for l in 0..KW_LANES {
        for n in 0..len {
            let z = kweight_step(c, &mut states[l], x[starts[l] + n] as f64);
            sums[l] += z * z;
        }
    }
}

/// Each lane on its own, one sample at a time; the events sorted into the kernel's order.
pub fn p56_lanes(
    x: &[f32],
    starts: &[usize; P56_LANES],
    len: usize,
    gh: [f64; 2],
    states: &mut [P56State; P56_LANES],
    events: &mut Vec<P56Event>,
) {
    let first = events.len();
    for l in 0..P56_LANES {
        for n in 0..len {
            let before = states[l][1].to_bits() & P56_EXPONENT;
            let reach = p56_step(gh, &mut states[l], x[starts[l] + n]);
            if states[l][1].to_bits() & P56_EXPONENT != before {
                events.push((n, l as u8, reach));
            }
        }
    }
    events[first..].sort_by_key(|&(n, l, _)| (n, l));
    for event in &mut events[first..] {
        event.0 += starts[event.1 as usize];
    }
}
