//! The K-weighted energy of each 100 ms sub-block, with the serial IIR broken into segments.
//!
//! An IIR filter is a serial recursion: sample n needs the state after sample n − 1, so one
//! channel runs one multiply-add chain at a time (latency-bound, ~4 ns a sample here). Here a
//! channel is cut at sub-block boundaries into [`KW_LANES`] × G segments that run side by side —
//! in SIMD lanes, and in G rayon tasks for a long recording — each from a zero state. The exact
//! result is then restored by carrying the true state over, segment after segment:
//!
//! - every segment starts [`WARM_UP`] samples early (the samples before it, in the lanes), and
//!   records the state it reached at the start of each of its sub-blocks (checkpoints);
//! - the segment's true starting state is the previous segment's true final state; from it the
//!   sub-blocks are computed again serially until the true state equals the checkpoint **bit for
//!   bit**. From that point both runs are the same computation on the same numbers, so every
//!   later sub-block energy and the final state are already exact.
//!
//! The K-weighting's memory decays within a few hundred ms (the 38 Hz high-pass), but the two
//! runs may keep differing by an ulp for a while after that, so a few sub-blocks per segment
//! are computed twice (fewer after the warm-up); in digital silence the state may take longer
//! to reach the zeros of a cold start, and the check simply goes on (at worst the whole segment
//! is recomputed: never a wrong figure). Every sub-block's energy is therefore exactly
//! the serial one — the same bits whatever the segmentation, SIMD level or thread count — which
//! `tests` hold to a plain per-sample loop.

use super::biquad::Biquad;
use super::kweight::k_weighting;
use crate::simd::kernels::{KW_LANES, KwCoeffs, KwState, kweight_step};
use rayon::prelude::*;

/// Lane segments shorter than this (in sub-blocks) are not worth the carry-over.
const MIN_SUBBLOCKS_PER_SEGMENT: usize = 8;
/// Samples per rayon task: a recording is split across threads only when each gets at least
/// this much (about 65 s at 8 kHz).
const SAMPLES_PER_TASK: usize = 1 << 19;
/// Samples each lane runs, from a zero state, before its segment begins, so that the serial
/// carry-over meets the cold start sooner: bit-for-bit agreement takes far longer than the
/// filter's decay (the two runs keep differing by an ulp here and there). Counted on a 60-minute
/// call (111 pushes of 256 Ki frames, 8 segments each), sub-blocks computed again serially: 37
/// a push with 4,096 samples, 20 with 8,192, 11 with 16,384 (~60 without, from perf's share of
/// the serial loop). A lockstep step of the 8 lanes costs about two serial samples, so 8,192
/// gives the smallest sum.
const WARM_UP: usize = 8192;

/// The cascade's coefficients in the order the kernels take them.
pub fn coefficients(rate: u32) -> KwCoeffs {
    let [shelf, highpass]: [Biquad; 2] = k_weighting(rate);
    [
        shelf.b[0],
        shelf.b[1],
        shelf.b[2],
        shelf.a[1],
        shelf.a[2],
        highpass.b[0],
        highpass.b[1],
        highpass.b[2],
        highpass.a[1],
        highpass.a[2],
    ]
}

/// One channel's filter state and the energy of its current, unfinished interval.
#[derive(Debug, Clone, Default)]
pub struct KChannel {
    state: KwState,
    partial: f64,
}

/// Serial energy of `x` from `state`, summed onto `sum` in sample order.
fn serial(c: &KwCoeffs, state: &mut KwState, x: &[f32], mut sum: f64) -> f64 {
    for &v in x {
        let z = kweight_step(c, state, v as f64);
        sum += z * z;
    }
    sum
}

fn same_bits(a: &KwState, b: &KwState) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl KChannel {
    /// Filters `x` (the samples following everything pushed before). `ends` are the positions in
    /// `x` where intervals end, strictly increasing and at most `x.len()`; for each, the sum of
    /// the squared filter outputs over its interval is appended to `out` (the first interval
    /// began in an earlier push). What follows the last end is kept for the next push.
    pub fn push(&mut self, c: &KwCoeffs, x: &[f32], ends: &[usize], out: &mut Vec<f64>) {
        let Some(&last_end) = ends.last() else {
            self.partial = serial(c, &mut self.state, x, self.partial);
            return;
        };
        // The interval that began earlier, serially.
        let first = serial(c, &mut self.state, &x[..ends[0]], self.partial);
        out.push(first);
        // The complete intervals between ends[0] and last_end.
        let bounds = ends;
        let complete = bounds.len() - 1;
        let base = out.len();
        out.resize(base + complete, 0.0);
        self.complete_intervals(c, x, bounds, &mut out[base..]);
        self.partial = serial(c, &mut self.state, &x[last_end..], 0.0);
    }

    /// The energies of intervals `bounds[i]..bounds[i + 1]` into `sums[i]`, continuing from (and
    /// updating) `self.state`.
    fn complete_intervals(&mut self, c: &KwCoeffs, x: &[f32], bounds: &[usize], sums: &mut [f64]) {
        let count = sums.len();
        let span = bounds[count] - bounds[0];
        let tasks = (span / SAMPLES_PER_TASK).clamp(1, rayon::current_num_threads().max(1));
        let per_lane = count / (KW_LANES * tasks);
        if per_lane < MIN_SUBBLOCKS_PER_SEGMENT {
            for (i, sum) in sums.iter_mut().enumerate() {
                *sum = serial(c, &mut self.state, &x[bounds[i]..bounds[i + 1]], 0.0);
            }
            return;
        }
        let segments = KW_LANES * tasks;
        let covered = segments * per_lane;
        let mut checkpoints = vec![KwState::default(); covered];
        let mut finals = vec![KwState::default(); segments];
        let start_state = self.state;

        // Pass 1: every segment from a cold start [`WARM_UP`] samples before it (the first from
        // the true state), in lanes.
        let run_task =
            |task: usize, sums: &mut [f64], checkpoints: &mut [KwState], finals: &mut [KwState]| {
                let kernel = crate::simd::kernels().kweight_lanes;
                let mut states = [KwState::default(); KW_LANES];
                let first_segment = task * KW_LANES;
                // The warm-up, all lanes in lockstep: every segment but the very first is
                // preceded in `x` by at least MIN_SUBBLOCKS_PER_SEGMENT sub-blocks.
                let begins: [usize; KW_LANES] =
                    std::array::from_fn(|l| bounds[(first_segment + l) * per_lane]);
                let warm = WARM_UP.min(begins[1]);
                let from: [usize; KW_LANES] = std::array::from_fn(|l| begins[l].max(warm) - warm);
                let mut ignored = [0f64; KW_LANES];
                kernel(x, &from, warm, c, &mut states, &mut ignored);
                if task == 0 {
                    states[0] = start_state;
                }
                for i in 0..per_lane {
                    let interval = |lane: usize| (first_segment + lane) * per_lane + i;
                    let starts: [usize; KW_LANES] = std::array::from_fn(|l| bounds[interval(l)]);
                    let lens: [usize; KW_LANES] =
                        std::array::from_fn(|l| bounds[interval(l) + 1] - bounds[interval(l)]);
                    let common = *lens.iter().min().expect("KW_LANES > 0");
                    for (l, state) in states.iter().enumerate() {
                        checkpoints[l * per_lane + i] = *state;
                    }
                    let mut acc = [0f64; KW_LANES];
                    kernel(x, &starts, common, c, &mut states, &mut acc);
                    for l in 0..KW_LANES {
                        let rest = &x[starts[l] + common..starts[l] + lens[l]];
                        sums[l * per_lane + i] = serial(c, &mut states[l], rest, acc[l]);
                    }
                }
                finals.copy_from_slice(&states);
            };
        let chunk = KW_LANES * per_lane;
        if tasks == 1 {
            run_task(0, &mut sums[..covered], &mut checkpoints, &mut finals);
        } else {
            sums[..covered]
                .par_chunks_mut(chunk)
                .zip(checkpoints.par_chunks_mut(chunk))
                .zip(finals.par_chunks_mut(KW_LANES))
                .enumerate()
                .for_each(|(task, ((s, cp), f))| run_task(task, s, cp, f));
        }

        // Pass 2: carry the true state over until it meets the cold-start run.
        let mut state = start_state;
        for (segment, end_state) in finals.iter().enumerate() {
            let mut converged = false;
            for i in segment * per_lane..(segment + 1) * per_lane {
                if same_bits(&state, &checkpoints[i]) {
                    converged = true;
                    break;
                }
                sums[i] = serial(c, &mut state, &x[bounds[i]..bounds[i + 1]], 0.0);
            }
            if converged {
                state = *end_state;
            }
        }
        // Intervals left over after the whole segments, serially.
        for i in covered..count {
            sums[i] = serial(c, &mut state, &x[bounds[i]..bounds[i + 1]], 0.0);
        }
        self.state = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain per-sample loop: the reference every segmentation must equal bit for bit.
    fn reference(c: &KwCoeffs, x: &[f32], interval: usize) -> Vec<f64> {
        let mut state = KwState::default();
        x.chunks(interval)
            .filter(|chunk| chunk.len() == interval)
            .map(|chunk| serial(c, &mut state, chunk, 0.0))
            .collect()
    }

    fn signal(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut noise = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        (0..len)
            .map(|i| {
                // Speech-like bursts, digital silence between them, a DC step now and then.
                let t = i as f32 / 8000.0;
                let burst = ((t * 0.7).sin() > 0.2) as u8 as f32;
                let dc = if (i / 50_000) % 3 == 1 { 0.2 } else { 0.0 };
                burst * (0.3 * (t * 2513.0).sin() + 0.05 * noise()) + dc * burst
            })
            .collect()
    }

    fn pushed(c: &KwCoeffs, x: &[f32], interval: usize, block: usize) -> Vec<f64> {
        let mut channel = KChannel::default();
        let mut out = Vec::new();
        let mut done = 0;
        for chunk in x.chunks(block) {
            let ends: Vec<usize> = (1..)
                .map(|k| k * interval)
                .skip_while(|&e| e <= done)
                .take_while(|&e| e <= done + chunk.len())
                .map(|e| e - done)
                .collect();
            channel.push(c, chunk, &ends, &mut out);
            done += chunk.len();
        }
        out
    }

    #[test]
    fn segmented_energies_equal_the_serial_loop_bit_for_bit() {
        let c = coefficients(8000);
        for (len, seed) in [(2_400_000, 1), (1_000_003, 7), (200_000, 3)] {
            let x = signal(len, seed);
            let want = reference(&c, &x, 800);
            for block in [len, 4096, 77_777] {
                let got = pushed(&c, &x, 800, block);
                assert_eq!(got.len(), want.len(), "len {len}, block {block}");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "len {len} block {block} interval {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_long_silence_after_sound_still_comes_out_exact() {
        // The state decays towards zero through denormals: the carry-over must go on until it
        // meets the cold start, however long that takes.
        let c = coefficients(48_000);
        let mut x = signal(300_000, 9);
        x.extend(std::iter::repeat_n(0.0, 3_000_000));
        x.extend(signal(200_000, 11));
        let want = reference(&c, &x, 4800);
        let got = pushed(&c, &x, 4800, x.len());
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits())
        );
    }

    #[test]
    fn nan_input_does_not_break_the_carry_over() {
        let c = coefficients(8000);
        let mut x = signal(600_000, 5);
        x[300_123] = f32::NAN;
        let want = reference(&c, &x, 800);
        let got = pushed(&c, &x, 800, x.len());
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()));
        }
    }
}
