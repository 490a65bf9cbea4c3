//! Loudness per ITU-R BS.1770-4 with the EBU Tech 3341/3342 definitions: K-weighted mean square
//! in 100 ms sub-blocks; 400 ms blocks with 75% overlap; absolute gate −70 LUFS and relative gate
//! −10 LU for integrated loudness; momentary (400 ms) and short-term (3 s) maxima; loudness range
//! from 3 s short-term values at 10 Hz with a −20 LU relative gate, as L95 − L10.
//!
//! Memory is one 16-byte record per 100 ms (58 KB per hour), so a call of any length streams.

use super::kfilter::{KChannel, coefficients};
use crate::simd::kernels::KwCoeffs;
use serde::Serialize;

/// The BS.1770 offset: a 997 Hz sine at 0 dBFS in one channel reads −3.01 LUFS.
const OFFSET: f64 = -0.691;
const ABSOLUTE_GATE_LUFS: f64 = -70.0;
const RELATIVE_GATE_LU: f64 = -10.0;
const LRA_RELATIVE_GATE_LU: f64 = -20.0;
/// Sub-blocks per momentary block (400 ms) and per short-term window (3 s).
const MOMENTARY_SUBBLOCKS: usize = 4;
const SHORT_TERM_SUBBLOCKS: usize = 30;

/// BS.1770 channel weights in WAVE order (L, R, C, LFE, Ls, Rs, …): LFE is excluded, surrounds
/// weigh +1.5 dB. Mono and stereo channels weigh 1.
pub fn channel_weights(channels: usize) -> Vec<f64> {
    (0..channels)
        .map(|c| match (channels, c) {
            (n, 3) if n >= 6 => 0.0,
            (n, 4 | 5) if n >= 6 => 1.41,
            _ => 1.0,
        })
        .collect()
}

/// What the meter measured. `None` where the programme is too short or entirely below the gate.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Loudness {
    /// Integrated (gated) loudness, LUFS.
    pub integrated_lufs: Option<f64>,
    /// Highest momentary (400 ms) loudness, LUFS.
    pub momentary_max_lufs: Option<f64>,
    /// Highest short-term (3 s) loudness, LUFS.
    pub short_term_max_lufs: Option<f64>,
    /// Loudness range (EBU Tech 3342), LU.
    pub loudness_range_lu: Option<f64>,
}

/// One 100 ms sub-block: channel-weighted sum of squared K-weighted samples, and its length.
#[derive(Debug, Clone, Copy)]
struct SubBlock {
    weighted_squares: f64,
    frames: u32,
}

/// A streaming BS.1770 meter. Blocks of any size may be pushed; a whole recording pushed at
/// once is filtered in segments side by side (SIMD lanes, and threads for a long one) with the
/// exact result of the serial filter ([`super::kfilter`]).
#[derive(Debug, Clone)]
pub struct LoudnessMeter {
    rate: u32,
    coefficients: KwCoeffs,
    channels: Vec<KChannel>,
    weights: Vec<f64>,
    frames_seen: u64,
    /// Sub-blocks completed so far.
    subblock_index: u64,
    subblocks: Vec<SubBlock>,
    /// Scratch: sub-block ends within the current push, and one channel's energies.
    ends: Vec<usize>,
    energies: Vec<f64>,
}

impl LoudnessMeter {
    pub fn new(channels: usize, rate: u32) -> Self {
        LoudnessMeter {
            rate,
            coefficients: coefficients(rate),
            channels: vec![KChannel::default(); channels],
            weights: channel_weights(channels),
            frames_seen: 0,
            subblock_index: 0,
            subblocks: Vec::new(),
            ends: Vec::new(),
            energies: Vec::new(),
        }
    }

    /// Adds one block of planar samples (all channels the same length).
    pub fn push(&mut self, planes: &[&[f32]]) {
        let len = planes.first().map_or(0, |p| p.len());
        let end = self.frames_seen + len as u64;
        self.ends.clear();
        let mut k = self.subblock_index + 1;
        while boundary(k, self.rate) <= end {
            self.ends
                .push((boundary(k, self.rate) - self.frames_seen) as usize);
            k += 1;
        }
        let mut totals = vec![0.0f64; self.ends.len()];
        for ((plane, channel), &weight) in planes.iter().zip(&mut self.channels).zip(&self.weights)
        {
            if weight == 0.0 {
                continue;
            }
            self.energies.clear();
            channel.push(
                &self.coefficients,
                &plane[..len],
                &self.ends,
                &mut self.energies,
            );
            for (total, &energy) in totals.iter_mut().zip(&self.energies) {
                *total += weight * energy;
            }
        }
        for total in totals {
            let index = self.subblock_index;
            let frames = boundary(index + 1, self.rate) - boundary(index, self.rate);
            self.subblocks.push(SubBlock {
                weighted_squares: total,
                frames: frames as u32,
            });
            self.subblock_index += 1;
        }
        self.frames_seen = end;
    }

    /// Mean-square power of the window of `n` sub-blocks starting at `start`.
    fn window_power(&self, start: usize, n: usize) -> f64 {
        let window = &self.subblocks[start..start + n];
        let squares: f64 = window.iter().map(|s| s.weighted_squares).sum();
        let frames: u64 = window.iter().map(|s| s.frames as u64).sum();
        squares / frames.max(1) as f64
    }

    fn window_loudness(&self, n: usize) -> Vec<f64> {
        let count = (self.subblocks.len() + 1).saturating_sub(n);
        (0..count)
            .map(|start| to_lufs(self.window_power(start, n)))
            .collect()
    }

    /// The measurements over everything pushed (an incomplete final 100 ms is not measured).
    pub fn finish(&self) -> Loudness {
        let momentary = self.window_loudness(MOMENTARY_SUBBLOCKS);
        let short_term = self.window_loudness(SHORT_TERM_SUBBLOCKS);
        Loudness {
            integrated_lufs: gated_mean(&momentary, RELATIVE_GATE_LU),
            momentary_max_lufs: max_finite(&momentary),
            short_term_max_lufs: max_finite(&short_term),
            loudness_range_lu: loudness_range(&short_term),
        }
    }
}

/// The first frame of sub-block `k` (k·rate/10, rounded), exact for any rate.
fn boundary(k: u64, rate: u32) -> u64 {
    (k * rate as u64 + 5) / 10
}

fn to_lufs(power: f64) -> f64 {
    if power > 0.0 {
        OFFSET + 10.0 * power.log10()
    } else {
        f64::NEG_INFINITY
    }
}

fn from_lufs(lufs: f64) -> f64 {
    10f64.powf((lufs - OFFSET) / 10.0)
}

fn max_finite(values: &[f64]) -> Option<f64> {
    values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .reduce(f64::max)
}

/// Two-stage gating: blocks above −70 LUFS, then above their power mean + `relative_lu`; the
/// power mean of what remains.
fn gated_mean(blocks: &[f64], relative_lu: f64) -> Option<f64> {
    let mean = |values: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = values.fold((0.0, 0usize), |(s, n), l| (s + from_lufs(l), n + 1));
        (n > 0).then(|| to_lufs(sum / n as f64))
    };
    let absolute = mean(&mut blocks.iter().copied().filter(|&l| l > ABSOLUTE_GATE_LUFS))?;
    let threshold = absolute + relative_lu;
    mean(
        &mut blocks
            .iter()
            .copied()
            .filter(|&l| l > ABSOLUTE_GATE_LUFS && l > threshold),
    )
}

/// EBU Tech 3342: short-term values gated at −70 LUFS and at −20 LU below their power mean;
/// LRA = 95th − 10th percentile.
fn loudness_range(short_term: &[f64]) -> Option<f64> {
    let absolute: Vec<f64> = short_term
        .iter()
        .copied()
        .filter(|&l| l > ABSOLUTE_GATE_LUFS)
        .collect();
    if absolute.is_empty() {
        return None;
    }
    let mean = to_lufs(absolute.iter().map(|&l| from_lufs(l)).sum::<f64>() / absolute.len() as f64);
    let mut gated: Vec<f64> = absolute
        .into_iter()
        .filter(|&l| l > mean + LRA_RELATIVE_GATE_LU)
        .collect();
    if gated.is_empty() {
        return None;
    }
    gated.sort_by(f64::total_cmp);
    let percentile = |p: f64| gated[((gated.len() - 1) as f64 * p).round() as usize];
    Some(percentile(0.95) - percentile(0.10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, dbfs: f64, seconds: f64) -> Vec<f32> {
        let amplitude = 10f64.powf(dbfs / 20.0);
        (0..(rate as f64 * seconds) as usize)
            .map(|i| {
                (amplitude * (std::f64::consts::TAU * freq * i as f64 / rate as f64).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn a_997_hz_sine_at_0_dbfs_reads_minus_3_01_lufs() {
        for rate in [8000, 16_000, 44_100, 48_000] {
            let tone = sine(rate, 997.0, 0.0, 5.0);
            let mut meter = LoudnessMeter::new(1, rate);
            for chunk in tone.chunks(1234) {
                meter.push(&[chunk]);
            }
            let l = meter.finish();
            let i = l.integrated_lufs.unwrap();
            assert!((i - -3.01).abs() < 0.02, "{rate} Hz: {i}");
            assert!(l.loudness_range_lu.unwrap() < 0.1);
        }
    }

    #[test]
    fn silence_has_no_loudness() {
        let mut meter = LoudnessMeter::new(2, 8000);
        let zeros = vec![0f32; 80_000];
        meter.push(&[&zeros, &zeros]);
        let l = meter.finish();
        assert_eq!(l.integrated_lufs, None);
        assert_eq!(l.loudness_range_lu, None);
    }

    #[test]
    fn surround_weights() {
        assert_eq!(channel_weights(1), vec![1.0]);
        assert_eq!(channel_weights(6), vec![1.0, 1.0, 1.0, 0.0, 1.41, 1.41]);
    }
}
