//! Active speech level per ITU-T P.56 method B, the level telephony engineers use.
//!
//! A two-stage envelope (time constant 30 ms) is compared with thresholds a factor of two apart
//! (−96 to 0 dBov); each threshold counts the samples where the envelope is above it, plus a
//! 200 ms hangover. The active level is where the level of the counted samples exceeds its
//! threshold by the 15.9 dB margin (linear interpolation in dB between thresholds, as the G.191
//! reference `sv56` does). 0 dBov is the RMS of a full-scale square wave (f32 ±1.0).

use crate::simd::kernels::{P56_LANES, P56Event, P56State, p56_step};
use serde::Serialize;

const TIME_CONSTANT_S: f64 = 0.03;
const HANGOVER_S: f64 = 0.2;
/// The margin M between the active level and its threshold, dB.
pub const MARGIN_DB: f64 = 15.9;
/// Thresholds c_j = 2^(j − 16), j = 0..=16: −96.3 dBov to 0 dBov in 6.02 dB steps.
const THRESHOLDS: usize = 17;

/// The P.56 result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct SpeechLevel {
    /// Active speech level, dBov.
    pub active_level_dbov: f64,
    /// Fraction (0–1) of the time speech is active.
    pub activity: f64,
}

/// Samples between the checkpoints of a lane segment (see [`envelope`]).
const CHECK: usize = 1024;
/// A push is split into lane segments only when each gets at least this many checkpoint
/// intervals: the carry-over computes the first second or so of each segment twice.
const MIN_CHECKS_PER_SEGMENT: usize = 8;
/// How long a lane runs before its segment, s: the envelope's start is forgotten (to the last
/// bit) within about 40 time constants of sound, 1.2 s.
const WARM_UP_S: f64 = 1.5;

/// The counting: runs of equal reach, and per threshold the samples they make active.
///
/// A run [s, e) that reaches threshold j makes [s, e + hangover) active for it; the runs come in
/// order, so per threshold the union of those intervals is counted as they come.
#[derive(Debug, Clone)]
struct Runs {
    hangover: u64,
    /// The run still open: its reach and its first sample.
    value: u8,
    start: u64,
    /// Per threshold j: samples counted active, counted up to `covered[j]` (exclusive; it may
    /// lie past the samples pushed so far: the hangover of the last run reaching j).
    active: [u64; THRESHOLDS],
    covered: [u64; THRESHOLDS],
}

impl Runs {
    /// From sample `at` on, the reach is `reach`.
    #[inline]
    fn change(&mut self, at: u64, reach: u8) {
        if reach != self.value {
            self.close(at);
            (self.value, self.start) = (reach, at);
        }
    }

    /// Counts the open run as ending at `end`.
    fn close(&mut self, end: u64) {
        let until = end + self.hangover;
        for j in 0..self.value as usize {
            if until > self.covered[j] {
                self.active[j] += until - self.start.max(self.covered[j]);
                self.covered[j] = until;
            }
        }
    }

    /// Samples active at each threshold once `samples` have been pushed.
    fn counts(&self, samples: u64) -> [u64; THRESHOLDS] {
        let mut done = self.clone();
        done.close(samples);
        // The last hangovers counted samples that never came.
        std::array::from_fn(|j| done.active[j] - done.covered[j].saturating_sub(samples))
    }
}

/// A streaming P.56 meter for one channel.
///
/// Counting, as sv56 writes it, keeps a hangover counter per threshold and tests all 17 each
/// sample. The same counts follow from one number per sample: sample n is active for threshold
/// j exactly when some sample in n − hangover ..= n has an envelope reaching c_j. That reach
/// (how many thresholds the envelope reaches, from its exponent) changes seldom — the envelope is
/// smoothed twice over 30 ms — so only its changes are followed, as runs ([`Runs`]; `tests`
/// hold the counts to the per-threshold reference).
///
/// The envelope is a serial recursion; a long push is cut into [`P56_LANES`] segments run side
/// by side from a cold start, then made exact by carrying the true state over (as the
/// K-weighting does, `super::kfilter`): the same bits as the serial loop, whatever the cut.
#[derive(Debug, Clone)]
pub struct SpeechLevelMeter {
    /// [g, 1 − g].
    gh: [f64; 2],
    /// Samples a lane segment is run before its start ([`WARM_UP_S`], whole [`CHECK`]s).
    warm_up: usize,
    state: P56State,
    /// Σx² in four lanes: sample n goes to lane n mod 4 (counted from the first sample pushed),
    /// and the last samples that do not fill a group of four wait in `carry`; they go to lane 0
    /// at the end. The sum is therefore the same bits however the input is cut into pushes.
    lanes: [f64; 4],
    carry: Vec<f32>,
    samples: u64,
    runs: Runs,
    /// Scratch of the lane segments: their checkpoints and events.
    checkpoints: Vec<P56State>,
    events: Vec<P56Event>,
    thresholds: [f64; THRESHOLDS],
}

/// The envelope over `x` (whose first sample is sample `base`) from `state`, serially.
fn serial(gh: [f64; 2], state: &mut P56State, x: &[f32], base: u64, runs: &mut Runs) {
    for (i, &v) in x.iter().enumerate() {
        let reach = p56_step(gh, state, v);
        if reach != runs.value {
            runs.change(base + i as u64, reach);
        }
    }
}

fn same_bits(a: &P56State, b: &P56State) -> bool {
    a[0].to_bits() == b[0].to_bits() && a[1].to_bits() == b[1].to_bits()
}

/// The envelope over `x` (whose first sample is sample `base`) from `state` (updated), its
/// reaches counted into `runs`: the same as [`serial`], bit for bit.
///
/// A long `x` is cut into [`P56_LANES`] segments run in SIMD lanes, the first from the true
/// state, the others from zero `warm_up` samples before their segment (the end of the previous
/// one), so that they arrive at it with the state the serial loop has there, or next to it. Each
/// lane records its state every [`CHECK`] samples and its changes of exponent as events. The
/// true state is then carried over: from the end of one segment the next is computed again
/// serially, [`CHECK`] samples at a time, until the true state equals the lane's checkpoint
/// bit for bit; from there on the lane computed the same numbers from the same state, and its
/// events are the true changes. Over sound the envelope forgets its start within about 40 time
/// constants (~1.2 s: `warm_up` is a little more), so the first check usually holds; in
/// digital silence the true state decays through the subnormals to zero (~22 s at 8 kHz) and
/// the check simply goes on — at worst a whole segment is computed twice, never a different
/// count.
#[allow(
    clippy::too_many_arguments,
    reason = "the meter's parts, borrowed apart"
)]
fn envelope(
    gh: [f64; 2],
    warm_up: usize,
    state: &mut P56State,
    x: &[f32],
    base: u64,
    runs: &mut Runs,
    checkpoints: &mut Vec<P56State>,
    events: &mut Vec<P56Event>,
) {
    let per_lane = x.len().saturating_sub(warm_up) / (P56_LANES * CHECK);
    let segment = per_lane * CHECK;
    if per_lane < MIN_CHECKS_PER_SEGMENT || 2 * segment < warm_up {
        serial(gh, state, x, base, runs);
        return;
    }
    // Lane l reads from l × segment, `steps` blocks of CHECK: lane 0 its segment and the
    // warm-up length more, the others a warm-up, then their segment.
    let steps = (segment + warm_up) / CHECK;
    let covered = segment * P56_LANES + warm_up;
    let data_start = |l: usize| if l == 0 { 0 } else { l * segment + warm_up };
    checkpoints.clear();
    checkpoints.resize(P56_LANES * steps, [0.0; 2]);
    events.clear();
    let mut states = [[0.0; 2]; P56_LANES];
    states[0] = *state;
    let kernel = crate::simd::kernels().p56_lanes;
    for i in 0..steps {
        for (l, s) in states.iter().enumerate() {
            checkpoints[l * steps + i] = *s;
        }
        let starts = std::array::from_fn(|l| l * segment + i * CHECK);
        kernel(x, &starts, CHECK, gh, &mut states, events);
    }
    // Each lane's events together, in order (a stable sort keeps their order within a lane).
    events.sort_by_key(|&(_, lane, _)| lane);
    let mut true_state = *state;
    let mut lane_events = events.as_slice();
    for (l, lane_final) in states.iter().enumerate() {
        let mut converged = None;
        for i in (data_start(l) - l * segment) / CHECK..steps {
            let at = l * segment + i * CHECK;
            if same_bits(&true_state, &checkpoints[l * steps + i]) {
                converged = Some(at);
                break;
            }
            let block = &x[at..at + CHECK];
            serial(gh, &mut true_state, block, base + at as u64, runs);
        }
        let count = lane_events.partition_point(|&(_, lane, _)| lane as usize == l);
        let (mine, rest) = lane_events.split_at(count);
        lane_events = rest;
        if let Some(from) = converged {
            for &(at, _, reach) in mine.iter().filter(|e| e.0 >= from) {
                runs.change(base + at as u64, reach);
            }
            true_state = *lane_final;
        }
    }
    let rest = &x[covered..];
    serial(gh, &mut true_state, rest, base + covered as u64, runs);
    *state = true_state;
}

impl SpeechLevelMeter {
    pub fn new(rate: u32) -> Self {
        let hangover = (HANGOVER_S * rate as f64).round() as u64;
        let mut thresholds = [0.0; THRESHOLDS];
        for (j, c) in thresholds.iter_mut().enumerate() {
            *c = 2f64.powi(j as i32 - 16);
        }
        let g = (-1.0 / (rate as f64 * TIME_CONSTANT_S)).exp();
        SpeechLevelMeter {
            gh: [g, 1.0 - g],
            warm_up: (rate as f64 * WARM_UP_S / CHECK as f64).ceil() as usize * CHECK,
            state: [0.0; 2],
            lanes: [0.0; 4],
            carry: Vec::with_capacity(4),
            samples: 0,
            runs: Runs {
                hangover,
                value: 0,
                start: 0,
                active: [0; THRESHOLDS],
                covered: [0; THRESHOLDS],
            },
            checkpoints: Vec::new(),
            events: Vec::new(),
            thresholds,
        }
    }

    pub fn push(&mut self, samples: &[f32]) {
        envelope(
            self.gh,
            self.warm_up,
            &mut self.state,
            samples,
            self.samples,
            &mut self.runs,
            &mut self.checkpoints,
            &mut self.events,
        );
        // Σx² in four lanes (the envelope's chain is the latency that matters; this is not).
        let mut rest = samples;
        if !self.carry.is_empty() {
            let take = (4 - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() == 4 {
                for (lane, &x) in self.lanes.iter_mut().zip(&self.carry) {
                    *lane += x as f64 * x as f64;
                }
                self.carry.clear();
            }
        }
        let chunks = rest.chunks_exact(4);
        self.carry.extend_from_slice(chunks.remainder());
        for chunk in chunks {
            for (lane, &x) in self.lanes.iter_mut().zip(chunk) {
                *lane += x as f64 * x as f64;
            }
        }
        self.samples += samples.len() as u64;
    }

    /// Samples active at each threshold.
    fn active(&self) -> [u64; THRESHOLDS] {
        self.runs.counts(self.samples)
    }

    #[cfg(test)]
    fn counts(&self) -> [u64; THRESHOLDS] {
        self.active()
    }

    /// Σx² of everything pushed.
    fn squares(&self) -> f64 {
        let mut lanes = self.lanes;
        for &x in &self.carry {
            lanes[0] += x as f64 * x as f64;
        }
        (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    }

    /// `None` for silence (nothing ever crosses the margin).
    pub fn finish(&self) -> Option<SpeechLevel> {
        let squares = self.squares();
        if squares <= 0.0 || self.samples == 0 {
            return None;
        }
        let active = self.active();
        let level_db = |j: usize| 10.0 * (squares / active[j] as f64).log10();
        let threshold_db = |j: usize| 20.0 * self.thresholds[j].log10();
        let mut previous: Option<(f64, f64)> = None; // (A, delta) at the last threshold with activity
        #[allow(
            clippy::needless_range_loop,
            reason = "j indexes two tables and is a formula input"
        )]
        for j in 0..THRESHOLDS {
            if active[j] == 0 {
                break;
            }
            let a = level_db(j);
            let delta = a - threshold_db(j);
            if delta <= MARGIN_DB {
                let active_level_dbov = match previous {
                    Some((a_prev, delta_prev)) => {
                        let t = (delta_prev - MARGIN_DB) / (delta_prev - delta);
                        a_prev + t * (a - a_prev)
                    }
                    None => a,
                };
                let mean_square = squares / self.samples as f64;
                let activity = (mean_square / 10f64.powf(active_level_dbov / 10.0)).min(1.0);
                return Some(SpeechLevel {
                    active_level_dbov,
                    activity,
                });
            }
            previous = Some((a, delta));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    /// Noise-like speech bursts at a known RMS (dBov), `on` s active then `off` s of silence.
    fn bursts(
        rate: u32,
        level_dbov: f64,
        on: f64,
        off: f64,
        periods: usize,
        floor_dbov: Option<f64>,
    ) -> Vec<f32> {
        let rms = 10f64.powf(level_dbov / 20.0);
        let mut seed = 12345u64;
        let mut noise = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let mut out = Vec::new();
        for _ in 0..periods {
            for i in 0..(on * rate as f64) as usize {
                let t = i as f64 / rate as f64;
                // Three partials with a random-ish amplitude wobble: RMS exactly `rms` on average.
                let v = (TAU * 220.0 * t).sin()
                    + (TAU * 660.0 * t + 1.0).sin()
                    + (TAU * 1300.0 * t + 2.0).sin();
                out.push((rms * v * (2.0f64 / 3.0).sqrt()) as f32);
            }
            for _ in 0..(off * rate as f64) as usize {
                let floor =
                    floor_dbov.map_or(0.0, |f| 10f64.powf(f / 20.0) * noise() * 3f64.sqrt());
                out.push(floor as f32);
            }
        }
        out
    }

    #[test]
    fn known_level_and_activity() {
        for rate in [8000, 16_000, 48_000] {
            for (level, on, off, floor) in [
                (-20.0, 4.0, 2.67, None),
                (-30.0, 3.0, 3.0, Some(-70.0)),
                (-16.0, 6.0, 1.5, None),
            ] {
                let mut meter = SpeechLevelMeter::new(rate);
                let signal = bursts(rate, level, on, off, 6, floor);
                for chunk in signal.chunks(1000) {
                    meter.push(chunk);
                }
                let got = meter.finish().unwrap();
                let activity = on / (on + off);
                assert!(
                    (got.active_level_dbov - level).abs() <= 0.5,
                    "{rate} Hz: {got:?}, want {level} dBov"
                );
                assert!(
                    (got.activity - activity).abs() <= 0.05,
                    "{rate} Hz: {got:?}, want activity {activity}"
                );
            }
        }
    }

    /// The counting as P.56 / sv56 write it, per threshold with branches: the reference the
    /// lane form must equal.
    fn reference_counts(samples: &[f32], rate: u32) -> [u64; THRESHOLDS] {
        let g = (-1.0 / (rate as f64 * TIME_CONSTANT_S)).exp();
        let hangover = (HANGOVER_S * rate as f64).round() as u64;
        let (mut p, mut q) = (0.0f64, 0.0f64);
        let mut active = [0u64; THRESHOLDS];
        let mut hang = [hangover; THRESHOLDS];
        for &x in samples {
            p = g * p + (1.0 - g) * (x as f64).abs();
            q = g * q + (1.0 - g) * p;
            for j in 0..THRESHOLDS {
                if q >= 2f64.powi(j as i32 - 16) {
                    active[j] += 1;
                    hang[j] = 0;
                } else if hang[j] < hangover {
                    active[j] += 1;
                    hang[j] += 1;
                }
            }
        }
        active
    }

    #[test]
    fn windowed_counting_equals_the_reference() {
        for rate in [8000, 48_000] {
            for (level, floor) in [(-20.0, None), (-45.0, Some(-80.0)), (-3.0, Some(-60.0))] {
                let signal = bursts(rate, level, 1.3, 0.9, 4, floor);
                let want = reference_counts(&signal, rate);
                for chunk in [1, 777, 5000, signal.len()] {
                    let mut meter = SpeechLevelMeter::new(rate);
                    for piece in signal.chunks(chunk) {
                        meter.push(piece);
                    }
                    assert_eq!(
                        meter.counts(),
                        want,
                        "{rate} Hz, level {level}, chunk {chunk}"
                    );
                }
            }
        }
        use crate::simd::kernels::p56_reach;
        assert_eq!(p56_reach(0.0), 0);
        assert_eq!(p56_reach(1.0), 17);
        assert_eq!(p56_reach(0.5), 16);
        assert_eq!(p56_reach(2f64.powi(-16)), 1);
        assert_eq!(p56_reach(2f64.powi(-16) * 0.999), 0);
        assert_eq!(p56_reach(f64::MIN_POSITIVE / 3.0), 0);
        assert_eq!(p56_reach(f64::INFINITY), 17);
        assert_eq!(p56_reach(f64::NAN), 17);
        // Against the thresholds themselves, at and around each one.
        for j in 0..THRESHOLDS {
            let c = 2f64.powi(j as i32 - 16);
            for q in [
                c,
                c * (1.0 + f64::EPSILON),
                c * (1.0 - f64::EPSILON / 2.0),
                c * 1.5,
            ] {
                let want = (0..THRESHOLDS)
                    .filter(|&k| q >= 2f64.powi(k as i32 - 16))
                    .count() as u8;
                assert_eq!(p56_reach(q), want, "q = {q:e}");
            }
        }
    }

    /// The lane segments with their carry-over give the serial envelope's counts and final
    /// state bit for bit: over speech, over a long digital silence after loud speech (the true
    /// state decays through the subnormals), over a NaN, from a non-zero starting state.
    #[test]
    fn lane_segments_equal_the_serial_envelope() {
        for rate in [8000, 48_000] {
            let meter = SpeechLevelMeter::new(rate);
            let gh = meter.gh;
            let mut loud_then_silent = bursts(rate, -6.0, 2.0, 0.0, 1, None);
            loud_then_silent.extend(std::iter::repeat_n(0.0, 30 * rate as usize));
            loud_then_silent.extend(bursts(rate, -30.0, 1.0, 1.0, 4, Some(-70.0)));
            let mut with_nan = bursts(rate, -26.0, 0.8, 0.5, 60, Some(-60.0));
            let at = with_nan.len() / 3;
            with_nan[at] = f32::NAN;
            for (name, x) in [
                ("speech", bursts(rate, -26.0, 0.8, 0.5, 60, Some(-60.0))),
                ("loud then silent", loud_then_silent),
                ("nan", with_nan),
            ] {
                for start in [[0.0, 0.0], [0.3, 0.2]] {
                    // As after earlier pushes: the open run has the reach of the state's q.
                    let mut runs = meter.runs.clone();
                    runs.value = crate::simd::kernels::p56_reach(start[1]);
                    let (mut want_state, mut want) = (start, runs.clone());
                    serial(gh, &mut want_state, &x, 5, &mut want);
                    let (mut got_state, mut got) = (start, runs);
                    let (mut checkpoints, mut events) = (Vec::new(), Vec::new());
                    let state = &mut got_state;
                    let warm = meter.warm_up;
                    envelope(
                        gh,
                        warm,
                        state,
                        &x,
                        5,
                        &mut got,
                        &mut checkpoints,
                        &mut events,
                    );
                    assert!(!events.is_empty(), "{rate} Hz, {name}: the lanes ran");
                    let total = x.len() as u64 + 5;
                    let what = format!("{rate} Hz, {name}, from {start:?}");
                    assert_eq!(got.counts(total), want.counts(total), "{what}");
                    assert_eq!((got.value, got.start), (want.value, want.start));
                    assert_eq!(
                        got_state.map(f64::to_bits),
                        want_state.map(f64::to_bits),
                        "{rate} Hz, {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_continuous_tone_is_fully_active() {
        let rate = 8000;
        let tone: Vec<f32> = (0..rate * 5)
            .map(|i| (0.1 * (TAU * 440.0 * i as f64 / rate as f64).sin()) as f32)
            .collect();
        let mut meter = SpeechLevelMeter::new(rate);
        meter.push(&tone);
        let got = meter.finish().unwrap();
        assert!(
            (got.active_level_dbov - (-20.0 - 3.01)).abs() < 0.1,
            "{got:?}"
        );
        assert!(got.activity > 0.98, "{got:?}");
        assert_eq!(SpeechLevelMeter::new(rate).finish(), None);
    }

    #[test]
    fn any_cut_of_the_input_gives_the_same_bits() {
        let rate = 8000;
        let speech = bursts(rate, -26.0, 0.8, 0.5, 12, Some(-60.0));
        let mut whole = SpeechLevelMeter::new(rate);
        whole.push(&speech);
        let whole = whole.finish().unwrap();
        for cut in [1, 3, 4, 7, 80, 4095, 65_536] {
            let mut meter = SpeechLevelMeter::new(rate);
            for piece in speech.chunks(cut) {
                meter.push(piece);
            }
            let got = meter.finish().unwrap();
            assert_eq!(
                got.active_level_dbov.to_bits(),
                whole.active_level_dbov.to_bits(),
                "pieces of {cut}"
            );
            assert_eq!(
                got.activity.to_bits(),
                whole.activity.to_bits(),
                "pieces of {cut}"
            );
        }
    }
}
