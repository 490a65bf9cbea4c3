//! True peak (ITU-R BS.1770-4 Annex 2): the signal is oversampled 4× below 96 kHz, 2× below
//! 192 kHz, and the largest absolute value of the oversampled signal is the true peak. It is
//! never below the sample peak (the original samples count too).
//!
//! The interpolator is a polyphase windowed-sinc (Kaiser β = 4, 32 taps per phase): flat within
//! 0.1 dB to 0.45·fs, so a 3.4 kHz tone in an 8 kHz call is measured right, with images 45 dB
//! down (a peak error under 0.05 dB).

use serde::Serialize;

/// Taps of each polyphase branch.
pub const TAPS_PER_PHASE: usize = crate::simd::kernels::FIR_TAPS;
const KAISER_BETA: f64 = 4.0;

/// The oversampling factor BS.1770 asks for at `rate`.
pub fn oversampling(rate: u32) -> usize {
    match rate {
        0..96_000 => 4,
        96_000..192_000 => 2,
        _ => 1,
    }
}

/// Zeroth-order modified Bessel function of the first kind (for the Kaiser window).
fn bessel_i0(x: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    let q = x * x / 4.0;
    for k in 1..50 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// The polyphase branches for `factor`× interpolation, each normalized to unity DC gain and
/// stored reversed so a branch is a plain dot product with the most recent samples.
pub fn design_phases(factor: usize) -> Vec<[f32; TAPS_PER_PHASE]> {
    let n = factor * TAPS_PER_PHASE;
    let centre = (n - 1) as f64 / 2.0;
    let prototype: Vec<f64> = (0..n)
        .map(|i| {
            let t = (i as f64 - centre) / factor as f64;
            let sinc = if t == 0.0 {
                1.0
            } else {
                (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t)
            };
            let r = (i as f64 - centre) / centre;
            sinc * bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(KAISER_BETA)
        })
        .collect();
    (0..factor)
        .map(|phase| {
            let taps: Vec<f64> = (0..TAPS_PER_PHASE)
                .map(|k| prototype[phase + factor * k])
                .collect();
            let dc: f64 = taps.iter().sum();
            let mut branch = [0f32; TAPS_PER_PHASE];
            for (b, t) in branch.iter_mut().zip(taps.iter().rev()) {
                *b = (t / dc) as f32;
            }
            branch
        })
        .collect()
}

/// Samples per rayon task of a long block (about 33 s at 8 kHz).
const SAMPLES_PER_TASK: usize = 1 << 18;

/// The FIR peak over every full window of `x`, on rayon's threads when `x` is long.
fn fir_peak_split(x: &[f32], phases: &[[f32; TAPS_PER_PHASE]]) -> f32 {
    use rayon::prelude::*;
    let fir = crate::simd::kernels().fir_peak;
    let tasks = (x.len() / SAMPLES_PER_TASK).min(rayon::current_num_threads());
    if tasks <= 1 {
        return fir(x, phases);
    }
    // Pieces overlap by the window length less one, so every window lies in exactly one piece.
    let step = x.len().div_ceil(tasks);
    (0..tasks)
        .into_par_iter()
        .map(|t| {
            let start = t * step;
            let end = ((t + 1) * step + TAPS_PER_PHASE - 1).min(x.len());
            if start >= end {
                0.0
            } else {
                fir(&x[start..end], phases)
            }
        })
        .reduce(|| 0.0, f32::max)
}

/// Per-channel true peak, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TruePeak {
    /// dBTP per channel; `null` for an all-zero channel.
    pub channels_dbtp: Vec<Option<f64>>,
    /// The largest of them.
    pub max_dbtp: Option<f64>,
}

/// A streaming true-peak meter.
#[derive(Debug, Clone)]
pub struct TruePeakMeter {
    phases: Vec<[f32; TAPS_PER_PHASE]>,
    /// Per channel: the last TAPS_PER_PHASE − 1 samples, then the current block.
    history: Vec<Vec<f32>>,
    peaks: Vec<f32>,
}

impl TruePeakMeter {
    pub fn new(channels: usize, rate: u32) -> Self {
        let factor = oversampling(rate);
        let phases = if factor == 1 {
            Vec::new()
        } else {
            design_phases(factor)
        };
        TruePeakMeter {
            phases,
            history: vec![vec![0.0; TAPS_PER_PHASE - 1]; channels],
            peaks: vec![0.0; channels],
        }
    }

    /// Adds one block of planar samples. A long block is measured in pieces on rayon's threads
    /// (the maximum does not depend on the order), with no copy of the samples.
    pub fn push(&mut self, planes: &[&[f32]]) {
        const HISTORY: usize = TAPS_PER_PHASE - 1;
        for ((plane, history), peak) in planes.iter().zip(&mut self.history).zip(&mut self.peaks) {
            let mut max = plane.iter().fold(*peak, |m, &s| m.max(s.abs()));
            if !self.phases.is_empty() {
                if plane.len() < 4 * TAPS_PER_PHASE {
                    history.extend_from_slice(plane);
                    max = max.max((crate::simd::kernels().fir_peak)(history, &self.phases));
                } else {
                    // Windows that start in the previous samples, then those inside `plane`.
                    history.extend_from_slice(&plane[..HISTORY]);
                    max = max.max((crate::simd::kernels().fir_peak)(history, &self.phases));
                    max = max.max(fir_peak_split(plane, &self.phases));
                    history.clear();
                    history.extend_from_slice(&plane[plane.len() - HISTORY..]);
                }
                let keep = history.len() - HISTORY;
                history.drain(..keep);
            }
            *peak = max;
        }
    }

    /// Linear true peak of each channel so far.
    pub fn peaks(&self) -> &[f32] {
        &self.peaks
    }

    pub fn finish(&self) -> TruePeak {
        let channels_dbtp: Vec<Option<f64>> = self
            .peaks
            .iter()
            .map(|&p| super::levels::to_dbfs(p as f64))
            .collect();
        let max_dbtp = channels_dbtp.iter().flatten().copied().reduce(f64::max);
        TruePeak {
            channels_dbtp,
            max_dbtp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_cut_of_the_input_gives_the_same_peak() {
        // Long enough to be split across threads; the peak sits right where pieces meet.
        let len = 5 * SAMPLES_PER_TASK + 123;
        let mut x: Vec<f32> = (0..len)
            .map(|i| 0.3 * ((i as f32 * 0.37).sin() + (i as f32 * 1.91).sin()))
            .collect();
        let step = len.div_ceil(2);
        for (k, v) in x[step - 3..step + 3].iter_mut().enumerate() {
            *v = if k % 2 == 0 { 0.9 } else { -0.9 };
        }
        let measure = |block: usize| {
            let mut meter = TruePeakMeter::new(1, 8000);
            for piece in x.chunks(block) {
                meter.push(&[piece]);
            }
            meter.peaks()[0]
        };
        let whole = measure(len);
        assert!(whole > 0.9, "{whole}");
        for block in [1, 31, 32, 127, 4096, 1 << 20] {
            assert_eq!(measure(block).to_bits(), whole.to_bits(), "block {block}");
        }
    }

    fn tone_peak_db(rate: u32, freq: f64, phase_deg: f64) -> f64 {
        let mut meter = TruePeakMeter::new(1, rate);
        let tone: Vec<f32> = (0..rate as usize / 2)
            .map(|i| {
                let t = i as f64 / rate as f64;
                // A 50 ms raised-cosine fade-in: a step onset is not band-limited and would
                // (rightly) overshoot.
                let fade = (t / 0.05).min(1.0);
                let fade = 0.5 - 0.5 * (std::f64::consts::PI * fade).cos();
                (0.5 * fade * (std::f64::consts::TAU * freq * t + phase_deg.to_radians()).sin())
                    as f32
            })
            .collect();
        meter.push(&[&tone]);
        meter.finish().max_dbtp.unwrap() - 20.0 * 0.5f64.log10()
    }

    #[test]
    fn tones_up_to_0_45_fs_read_their_true_peak() {
        for rate in [8000, 16_000, 44_100, 48_000] {
            for fraction in [0.05, 0.125, 0.25, 0.3, 0.425, 0.45] {
                for phase in [0.0, 45.0, 60.0, 67.5, 88.2] {
                    let err = tone_peak_db(rate, fraction * rate as f64, phase);
                    assert!(
                        (-0.4..=0.2).contains(&err),
                        "{rate} Hz, {fraction}·fs, {phase}°: {err:+.3} dB"
                    );
                }
            }
        }
    }

    #[test]
    fn branches_have_unity_gain() {
        for factor in [2, 4] {
            for phase in design_phases(factor) {
                assert!((phase.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }
}
