//! Active speech level per ITU-T P.56 method B, the level telephony engineers use.
//!
//! A two-stage envelope (time constant 30 ms) is compared with thresholds a factor of two apart
//! (−96 to 0 dBov); each threshold counts the samples where the envelope is above it, plus a
//! 200 ms hangover. The active level is where the level of the counted samples exceeds its
//! threshold by the 15.9 dB margin (linear interpolation in dB between thresholds, as the G.191
//! reference `sv56` does). 0 dBov is the RMS of a full-scale square wave (f32 ±1.0).

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

/// How many thresholds c_j = 2^(j − 16) the envelope `q` reaches (0..=17): from the exponent of
/// `q`, since ⌊log2 q⌋ = exponent for every normal positive f64 (zero and subnormals reach none).
#[inline(always)]
fn thresholds_reached(q: f64) -> u8 {
    let exponent = ((q.to_bits() >> 52) & 0x7FF) as i32 - 1023;
    (exponent + 17).clamp(0, THRESHOLDS as i32) as u8
}

/// A streaming P.56 meter for one channel.
///
/// Counting, as sv56 writes it, keeps a hangover counter per threshold and tests all 17 each
/// sample. The same counts follow from one number per sample: a sample is active for threshold
/// j exactly when, within the hangover window ending at it, the envelope reached a threshold above
/// j. So each sample's reach e(n) (from the envelope's exponent) goes through a sliding maximum
/// over hangover + 1 samples (van Herk / Gil–Werman: three comparisons a sample, whatever the
/// window), and one histogram of that maximum gives all 17 counts (`tests` hold it to the
/// per-threshold reference).
#[derive(Debug, Clone)]
pub struct SpeechLevelMeter {
    g: f64,
    hangover: usize,
    p: f64,
    q: f64,
    /// Σx² in four lanes: sample n goes to lane n mod 4 (counted from the first sample pushed),
    /// and the last samples that do not fill a group of four wait in `carry`; they go to lane 0
    /// at the end. The sum is therefore the same bits however the input is cut into pushes.
    lanes: [f64; 4],
    carry: Vec<f32>,
    samples: u64,
    /// Samples whose windowed reach was m, m = 0..=17.
    histogram: [u64; THRESHOLDS + 1],
    /// The reaches of the last `hangover` samples (zeros before the first: nothing is active
    /// before the first speech), then the current push's; and the van Herk scratch.
    reach: Vec<u8>,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    thresholds: [f64; THRESHOLDS],
}

impl SpeechLevelMeter {
    pub fn new(rate: u32) -> Self {
        let hangover = (HANGOVER_S * rate as f64).round() as usize;
        let mut thresholds = [0.0; THRESHOLDS];
        for (j, c) in thresholds.iter_mut().enumerate() {
            *c = 2f64.powi(j as i32 - 16);
        }
        SpeechLevelMeter {
            g: (-1.0 / (rate as f64 * TIME_CONSTANT_S)).exp(),
            hangover,
            p: 0.0,
            q: 0.0,
            lanes: [0.0; 4],
            carry: Vec::with_capacity(4),
            samples: 0,
            histogram: [0; THRESHOLDS + 1],
            reach: vec![0; hangover],
            prefix: Vec::new(),
            suffix: Vec::new(),
            thresholds,
        }
    }

    pub fn push(&mut self, samples: &[f32]) {
        let (g, h) = (self.g, 1.0 - self.g);
        // The envelope: a serial recursion, one reach per sample.
        let (mut p, mut q) = (self.p, self.q);
        self.reach.reserve(samples.len());
        for &x in samples {
            let x = x as f64;
            p = g * p + h * x.abs();
            q = g * q + h * p;
            self.reach.push(thresholds_reached(q));
        }
        (self.p, self.q) = (p, q);
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
        // Small pushes are gathered first, so the window pass always has more new samples than
        // carried ones (the cost stays linear however the input is cut).
        if self.reach.len() >= 2 * self.hangover + 4096 {
            self.count_windows();
        }
    }

    /// Histograms the maximum reach over each window of `hangover + 1` samples ending at a new
    /// sample, and keeps the last `hangover` reaches for the next push.
    fn count_windows(&mut self) {
        let window = self.hangover + 1;
        let a = &self.reach;
        let len = a.len();
        // Blocks of `window` from the start of `a`: prefix and suffix maxima within each.
        self.prefix.clear();
        self.prefix.resize(len, 0);
        self.suffix.clear();
        self.suffix.resize(len, 0);
        for (block, (pre, suf)) in a.chunks(window).zip(
            self.prefix
                .chunks_mut(window)
                .zip(self.suffix.chunks_mut(window)),
        ) {
            let mut m = 0u8;
            for (v, out) in block.iter().zip(pre.iter_mut()) {
                m = m.max(*v);
                *out = m;
            }
            let mut m = 0u8;
            for (v, out) in block.iter().zip(suf.iter_mut()).rev() {
                m = m.max(*v);
                *out = m;
            }
        }
        // max(a[i − hangover ..= i]) = max(suffix[i − hangover], prefix[i]): the two ends lie in
        // the same block or in neighbouring ones.
        let mut histogram = [0u64; THRESHOLDS + 1];
        for (s, p) in self.suffix[..len - self.hangover]
            .iter()
            .zip(&self.prefix[self.hangover..])
        {
            histogram[(*s).max(*p) as usize] += 1;
        }
        for (total, count) in self.histogram.iter_mut().zip(histogram) {
            *total += count;
        }
        self.reach.drain(..len - self.hangover);
    }

    /// Samples active at each threshold: those whose windowed reach is above it.
    fn active(&self) -> [u64; THRESHOLDS] {
        let mut done = self.clone();
        if done.reach.len() > done.hangover {
            done.count_windows();
        }
        std::array::from_fn(|j| done.histogram[j + 1..].iter().sum())
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
        assert_eq!(thresholds_reached(0.0), 0);
        assert_eq!(thresholds_reached(1.0), 17);
        assert_eq!(thresholds_reached(0.5), 16);
        assert_eq!(thresholds_reached(2f64.powi(-16)), 1);
        assert_eq!(thresholds_reached(2f64.powi(-16) * 0.999), 0);
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
