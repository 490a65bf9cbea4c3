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

/// A streaming P.56 meter for one channel.
#[derive(Debug, Clone)]
pub struct SpeechLevelMeter {
    g: f64,
    hangover: u64,
    p: f64,
    q: f64,
    squares: f64,
    samples: u64,
    active: [u64; THRESHOLDS],
    hang: [u64; THRESHOLDS],
    thresholds: [f64; THRESHOLDS],
}

impl SpeechLevelMeter {
    pub fn new(rate: u32) -> Self {
        let hangover = (HANGOVER_S * rate as f64).round() as u64;
        let mut thresholds = [0.0; THRESHOLDS];
        for (j, c) in thresholds.iter_mut().enumerate() {
            *c = 2f64.powi(j as i32 - 16);
        }
        SpeechLevelMeter {
            g: (-1.0 / (rate as f64 * TIME_CONSTANT_S)).exp(),
            hangover,
            p: 0.0,
            q: 0.0,
            squares: 0.0,
            samples: 0,
            active: [0; THRESHOLDS],
            // Start with the hangover spent: nothing is active before the first speech.
            hang: [hangover; THRESHOLDS],
            thresholds,
        }
    }

    pub fn push(&mut self, samples: &[f32]) {
        let g = self.g;
        for &x in samples {
            let x = x as f64;
            self.squares += x * x;
            self.p = g * self.p + (1.0 - g) * x.abs();
            self.q = g * self.q + (1.0 - g) * self.p;
            for j in 0..THRESHOLDS {
                if self.q >= self.thresholds[j] {
                    self.active[j] += 1;
                    self.hang[j] = 0;
                } else if self.hang[j] < self.hangover {
                    self.active[j] += 1;
                    self.hang[j] += 1;
                }
            }
        }
        self.samples += samples.len() as u64;
    }

    /// `None` for silence (nothing ever crosses the margin).
    pub fn finish(&self) -> Option<SpeechLevel> {
        if self.squares <= 0.0 || self.samples == 0 {
            return None;
        }
        let level_db = |j: usize| 10.0 * (self.squares / self.active[j] as f64).log10();
        let threshold_db = |j: usize| 20.0 * self.thresholds[j].log10();
        let mut previous: Option<(f64, f64)> = None; // (A, delta) at the last threshold with activity
        for j in 0..THRESHOLDS {
            if self.active[j] == 0 {
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
                let mean_square = self.squares / self.samples as f64;
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
}
