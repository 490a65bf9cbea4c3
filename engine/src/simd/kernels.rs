//! The kernels, written once. `#[inline(always)]` so each dispatch wrapper compiles its own copy
//! with its own target features; the lane structure is what the compiler vectorizes.

/// Taps per polyphase branch of the true-peak interpolator.
pub const FIR_TAPS: usize = 32;
/// Output positions computed together: eight 8-lane AVX2 vectors (sixteen 4-lane SSE2 ones), so
/// eight independent add chains hide the adder's latency. Measured on the 5-minute call: 8 lanes
/// 21.2 ms, 32 lanes 9.8 ms, 64 lanes 9.2 ms (AVX2).
const LANES: usize = 64;

#[inline(always)]
pub fn pcm16_to_f32(src: &[u8], dst: &mut [f32]) {
    for (out, bytes) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *out = i16::from_le_bytes([bytes[0], bytes[1]]) as f32 * (1.0 / 32768.0);
    }
}

/// 1.5 · 2²³: adding and subtracting it rounds an f32 under 2²² to the nearest integer, ties to
/// even, with no library call.
const ROUND_MAGIC: f32 = 12_582_912.0;

#[inline(always)]
pub fn quantize_i16(samples: &[f32], gain: f32, out: &mut [i16]) {
    for (o, &s) in out.iter_mut().zip(samples) {
        let scaled = s * gain * 32768.0;
        // NaN is 0 (what `as` makes of it); the rest clamped, then rounded by the magic number,
        // whose sum's low mantissa bits are the integer. No float → int cast: LLVM scalarizes
        // the saturating casts (`as i16`, `as i32`: extracts, compares and inserts per sample,
        // 5% of the whole chain, measured).
        let scaled = if scaled.is_nan() { 0.0 } else { scaled }.clamp(-32768.0, 32767.0);
        let rounded = (scaled + ROUND_MAGIC).to_bits() as i32 - ROUND_MAGIC.to_bits() as i32;
        *o = rounded as i16;
    }
}

/// Taps of the central part of each branch that the true-peak bound computes exactly (the tails
/// are bounded): the middle [`CENTRAL_TAPS`] of [`FIR_TAPS`] (16 measured fastest of 8–20).
pub const CENTRAL_TAPS: usize = 16;

/// Where the [`CENTRAL_TAPS`] begin in a branch of [`FIR_TAPS`].
pub const CENTRAL_FROM: usize = (FIR_TAPS - CENTRAL_TAPS) / 2;

/// The largest |y| of the polyphase FIR with [`FIR_TAPS`] taps (see [`fir_peak_of`]).
#[inline(always)]
pub fn fir_peak(x: &[f32], phases: &[[f32; FIR_TAPS]]) -> f32 {
    fir_peak_of(x, phases)
}

/// The same with the [`CENTRAL_TAPS`] middle taps of each branch (the true peak's bound).
#[inline(always)]
pub fn fir_peak_central(x: &[f32], phases: &[[f32; CENTRAL_TAPS]]) -> f32 {
    fir_peak_of(x, phases)
}

/// [`LANES`] output positions at a time, each summed over the taps in order (k = 0, 1, …): the same
/// order as the scalar twin, so the same result to the bit.
#[inline(always)]
pub fn fir_peak_of<const TAPS: usize>(x: &[f32], phases: &[[f32; TAPS]]) -> f32 {
    if x.len() < TAPS {
        return 0.0;
    }
    let outputs = x.len() + 1 - TAPS;
    let mut peak = [0f32; LANES];
    let mut i = 0;
    while i + LANES <= outputs {
        for phase in phases {
            let mut acc = [0f32; LANES];
            for (k, &h) in phase.iter().enumerate() {
                let xs = &x[i + k..i + k + LANES];
                for lane in 0..LANES {
                    acc[lane] += h * xs[lane];
                }
            }
            for lane in 0..LANES {
                peak[lane] = peak[lane].max(acc[lane].abs());
            }
        }
        i += LANES;
    }
    let mut max = peak.iter().copied().fold(0f32, f32::max);
    for start in i..outputs {
        for phase in phases {
            let mut y = 0f32;
            for (k, &h) in phase.iter().enumerate() {
                y += h * x[start + k];
            }
            max = max.max(y.abs());
        }
    }
    max
}

/// Sums of one block of samples for the level meter, reduced in a fixed lane order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelSums {
    pub peak: f32,
    pub sum: f64,
    pub squares: f64,
    pub clipped: u64,
}

/// Lanes of the statistics kernels: sample i goes to lane i mod 8, the tail to lane 0, and the
/// lanes are added in order 0..8.
const STAT_LANES: usize = 8;

#[inline(always)]
pub fn level_sums(samples: &[f32], full_scale: f32) -> LevelSums {
    let mut peak = [0f32; STAT_LANES];
    let mut sum = [0f32; STAT_LANES];
    let mut squares = [0f32; STAT_LANES];
    let mut clipped = [0u32; STAT_LANES];
    let chunks = samples.chunks_exact(STAT_LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for lane in 0..STAT_LANES {
            let s = chunk[lane];
            peak[lane] = peak[lane].max(s.abs());
            sum[lane] += s;
            squares[lane] += s * s;
            clipped[lane] += (s.abs() >= full_scale) as u32;
        }
    }
    for &s in tail {
        peak[0] = peak[0].max(s.abs());
        sum[0] += s;
        squares[0] += s * s;
        clipped[0] += (s.abs() >= full_scale) as u32;
    }
    LevelSums {
        peak: peak.iter().fold(0f32, |m, &p| m.max(p)),
        sum: sum.iter().map(|&v| v as f64).sum(),
        squares: squares.iter().map(|&v| v as f64).sum(),
        clipped: clipped.iter().map(|&v| v as u64).sum(),
    }
}

/// Mean square and peak of each `frame_len`-sample frame (the last may be shorter), appended.
#[inline(always)]
pub fn frame_stats(
    samples: &[f32],
    frame_len: usize,
    mean_square: &mut Vec<f32>,
    peak: &mut Vec<f32>,
) {
    for frame in samples.chunks(frame_len.max(1)) {
        let mut squares = [0f32; STAT_LANES];
        let mut max = [0f32; STAT_LANES];
        let chunks = frame.chunks_exact(STAT_LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            for lane in 0..STAT_LANES {
                squares[lane] += chunk[lane] * chunk[lane];
                max[lane] = max[lane].max(chunk[lane].abs());
            }
        }
        for &s in tail {
            squares[0] += s * s;
            max[0] = max[0].max(s.abs());
        }
        let total: f32 = squares.iter().sum();
        mean_square.push(total / frame.len() as f32);
        peak.push(max.iter().fold(0f32, |m, &p| m.max(p)));
    }
}

/// G.711 bytes → f32 through a 256-entry table.
#[inline(always)]
pub fn expand_g711(src: &[u8], table: &[f32; 256], dst: &mut [f32]) {
    for (out, &code) in dst.iter_mut().zip(src) {
        *out = table[code as usize];
    }
}

/// Segments of one channel run through P.56's envelope together, one lane per segment (see
/// `dsp::p56`): two AVX2 vectors of f64, whose two-stage recursions hide each other's latency.
pub const P56_LANES: usize = 8;

/// P.56's envelope state: the first and the second smoothing stage (p, q).
pub type P56State = [f64; 2];

/// How many of P.56's thresholds c_j = 2^(j − 16), j = 0..=16, the envelope `q` reaches (0..=17):
/// from q's exponent, since ⌊log2 q⌋ = exponent for every normal positive f64 (zero and
/// subnormals reach none, infinities and NaN all).
#[inline(always)]
pub fn p56_reach(q: f64) -> u8 {
    let biased = (((q.to_bits() >> 32) as u32 >> 20) & 0x7FF) as i32;
    (biased - 1006).clamp(0, 17) as u8
}

/// One sample through P.56's envelope (`gh` = [g, 1 − g]); returns the reach of the new q. The
/// arithmetic order is the one every lane and the serial path use.
#[inline(always)]
pub fn p56_step(gh: [f64; 2], s: &mut P56State, x: f32) -> u8 {
    let x = x as f64;
    s[0] = gh[0] * s[0] + gh[1] * x.abs();
    s[1] = gh[0] * s[1] + gh[1] * s[0];
    p56_reach(s[1])
}

/// The bits of an f64's exponent: P.56's reach can change only where they do.
pub const P56_EXPONENT: u64 = 0x7FF0_0000_0000_0000;

/// A change in one lane of [`p56_lanes`]: the position in `x` of the sample after which the
/// envelope's exponent differs from the one before it, the lane, and the reach there.
pub type P56Event = (usize, u8, u8);

/// Runs [`P56_LANES`] segments of `x` through P.56's envelope in lockstep for `len` samples:
/// lane l reads `x[starts[l]..starts[l] + len]` and continues from `states[l]`. Rather than a
/// reach per sample, it appends an event wherever a lane's exponent of q changes (a few per
/// thousand samples of speech), lane by lane within a sample, in sample order. Each lane
/// computes exactly what [`p56_step`] computes serially.
#[inline(always)]
pub fn p56_lanes(
    x: &[f32],
    starts: &[usize; P56_LANES],
    len: usize,
    gh: [f64; 2],
    states: &mut [P56State; P56_LANES],
    events: &mut Vec<P56Event>,
) {
    let lanes: [&[f32]; P56_LANES] = std::array::from_fn(|l| &x[starts[l]..starts[l] + len]);
    let (g, h) = (gh[0], gh[1]);
    let mut p: [f64; P56_LANES] = std::array::from_fn(|l| states[l][0]);
    let mut q: [f64; P56_LANES] = std::array::from_fn(|l| states[l][1]);
    let mut exponent: [u64; P56_LANES] = std::array::from_fn(|l| q[l].to_bits() & P56_EXPONENT);
    #[allow(
        clippy::needless_range_loop,
        reason = "one index across all lanes vectorizes"
    )]
    for n in 0..len {
        let mut xs = [0f64; P56_LANES];
        for l in 0..P56_LANES {
            xs[l] = lanes[l][n] as f64;
        }
        let mut now = [0u64; P56_LANES];
        let mut changed = 0u64;
        for l in 0..P56_LANES {
            p[l] = g * p[l] + h * xs[l].abs();
            q[l] = g * q[l] + h * p[l];
            now[l] = q[l].to_bits() & P56_EXPONENT;
            changed |= now[l] ^ exponent[l];
        }
        if changed != 0 {
            for l in 0..P56_LANES {
                if now[l] != exponent[l] {
                    events.push((starts[l] + n, l as u8, p56_reach(q[l])));
                }
            }
            exponent = now;
        }
    }
    for l in 0..P56_LANES {
        states[l] = [p[l], q[l]];
    }
}

/// Segments of one channel run through the K-weighting cascade together: one lane per segment.
/// Eight lanes are two AVX2 vectors (four SSE2 ones) of f64, enough independent recursions to
/// hide the multiply-add latency of each.
pub const KW_LANES: usize = 8;

/// The K-weighting cascade (two direct-form-I biquads) as one recursion: b0, b1, b2, a1, a2 of
/// the first section, then of the second.
pub type KwCoeffs = [f64; 10];

/// The cascade's state: x[n−1], x[n−2] (input), y[n−1], y[n−2] (first section, which are also the
/// second section's inputs), z[n−1], z[n−2] (output).
pub type KwState = [f64; 6];

/// One sample through the cascade; returns z[n]. The arithmetic order is the one every lane, every
/// level and the serial path use, so a state reached either way continues identically.
#[inline(always)]
pub fn kweight_step(c: &KwCoeffs, s: &mut KwState, x: f64) -> f64 {
    let y = c[0] * x + c[1] * s[0] + c[2] * s[1] - c[3] * s[2] - c[4] * s[3];
    let z = c[5] * y + c[6] * s[2] + c[7] * s[3] - c[8] * s[4] - c[9] * s[5];
    *s = [x, s[0], y, s[2], z, s[4]];
    z
}

/// Runs [`KW_LANES`] segments of `x` in lockstep for `len` samples: lane l reads
/// `x[starts[l]..starts[l] + len]`, continues from `states[l]` and adds each squared output to
/// `sums[l]` in order. Each lane computes exactly what [`kweight_step`] computes serially.
#[inline(always)]
pub fn kweight_lanes(
    x: &[f32],
    starts: &[usize; KW_LANES],
    len: usize,
    c: &KwCoeffs,
    states: &mut [KwState; KW_LANES],
    sums: &mut [f64; KW_LANES],
) {
    let lanes: [&[f32]; KW_LANES] = std::array::from_fn(|l| &x[starts[l]..starts[l] + len]);
    // Structure of arrays, so each state variable of all lanes is one or two vectors.
    let mut s: [[f64; KW_LANES]; 6] =
        std::array::from_fn(|k| std::array::from_fn(|l| states[l][k]));
    let mut acc = *sums;
    #[allow(
        clippy::needless_range_loop,
        reason = "one index across all lanes vectorizes"
    )]
    for n in 0..len {
        let mut xs = [0f64; KW_LANES];
        for l in 0..KW_LANES {
            xs[l] = lanes[l][n] as f64;
        }
        for l in 0..KW_LANES {
            let x = xs[l];
            let y = c[0] * x + c[1] * s[0][l] + c[2] * s[1][l] - c[3] * s[2][l] - c[4] * s[3][l];
            let z = c[5] * y + c[6] * s[2][l] + c[7] * s[3][l] - c[8] * s[4][l] - c[9] * s[5][l];
            s[1][l] = s[0][l];
            s[0][l] = x;
            s[3][l] = s[2][l];
            s[2][l] = y;
            s[5][l] = s[4][l];
            s[4][l] = z;
            acc[l] += z * z;
        }
    }
    for l in 0..KW_LANES {
        states[l] = std::array::from_fn(|k| s[k][l]);
    }
    *sums = acc;
}
