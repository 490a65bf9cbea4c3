//! Spectrum facts from the long-term average spectrum (realfft): effective bandwidth
//! (narrowband vs wideband), a mains-hum flag (50/60 Hz), the noise floor and an SNR estimate.

use super::frames::{FrameStats, ms_to_db};
use rayon::prelude::*;
use realfft::RealFftPlanner;
use serde::Serialize;

/// Bandwidth classes as telephony names them (ITU-T P.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Up to 4 kHz (classic telephony, 300–3400 Hz).
    Narrowband,
    /// Up to 8 kHz (HD voice, 50–7000 Hz).
    Wideband,
    /// Up to 16 kHz.
    SuperWideband,
    Fullband,
}

/// What the spectrum says.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SpectrumFacts {
    /// Highest frequency where the speech spectrum is within 50 dB of its peak, Hz.
    pub bandwidth_hz: f64,
    pub band: Band,
    /// 50 or 60 when a mains-hum line stands out at that frequency in the non-speech parts
    /// (judged only with at least 2 s of them).
    pub mains_hum_hz: Option<u32>,
    /// Median RMS of the non-speech, non-muted 10 ms frames, dBFS; `null` without such frames.
    pub noise_floor_dbfs: Option<f64>,
    /// Active speech level (dBov) over the noise floor, dB.
    pub snr_db: Option<f64>,
}

/// How far below the spectrum's peak still counts as "in band", dB.
const BANDWIDTH_RANGE_DB: f64 = 50.0;
/// How far a hum line must stand above its neighbourhood, dB.
const HUM_PROMINENCE_DB: f64 = 12.0;
/// Quiet windows (about 0.25 s each, half-overlapping) needed before hum is judged at all.
const MIN_HUM_WINDOWS: usize = 8;
/// Most windows read of one call (about 2 minutes of audio, at any rate: the window is a
/// quarter second).
const MAX_WINDOWS: usize = 1024;

/// Computes the spectrum facts of a mono signal. `speech_frames[i]` says whether 10 ms frame `i`
/// holds speech and `muted_frames[i]` whether it is muted (both from the silence analysis).
pub fn spectrum_facts(
    mono: &[f32],
    rate: u32,
    stats: &FrameStats,
    speech_frames: &[bool],
    muted_frames: &[bool],
    speech_level_dbov: Option<f64>,
) -> SpectrumFacts {
    let mut read = |start: usize, out: &mut [f32]| out.copy_from_slice(&mono[start..][..out.len()]);
    spectrum_facts_within(
        mono.len(),
        &mut read,
        rate,
        stats,
        speech_frames,
        muted_frames,
        speech_level_dbov,
        MAX_WINDOWS,
    )
}

/// Windows read, then transformed side by side, at a time.
const BATCH: usize = 16;

/// One window of a batch: its samples (windowed in place), its power spectrum.
struct Window {
    samples: Vec<f32>,
    power: Vec<f32>,
    start: usize,
    end: usize,
    ok: bool,
}

/// [`spectrum_facts`] of a mono signal of `len` samples that is not in memory:
/// `read(start, out)` fills `out` with the samples from `start` on (at most [`MAX_WINDOWS`]
/// windows of a quarter second are read).
pub fn spectrum_facts_of(
    len: usize,
    read: &mut dyn FnMut(usize, &mut [f32]),
    rate: u32,
    stats: &FrameStats,
    speech_frames: &[bool],
    muted_frames: &[bool],
    speech_level_dbov: Option<f64>,
) -> SpectrumFacts {
    spectrum_facts_within(
        len,
        read,
        rate,
        stats,
        speech_frames,
        muted_frames,
        speech_level_dbov,
        MAX_WINDOWS,
    )
}

/// [`spectrum_facts_of`] reading at most `max_windows` windows.
#[allow(
    clippy::too_many_arguments,
    reason = "the facts' inputs, each used once"
)]
fn spectrum_facts_within(
    len: usize,
    read: &mut dyn FnMut(usize, &mut [f32]),
    rate: u32,
    stats: &FrameStats,
    speech_frames: &[bool],
    muted_frames: &[bool],
    speech_level_dbov: Option<f64>,
    max_windows: usize,
) -> SpectrumFacts {
    // About 4 Hz resolution, enough to resolve 50 Hz from 60 Hz.
    let size = ((rate / 4) as usize).next_power_of_two().max(256);
    let mut planner = RealFftPlanner::<f32>::new();
    let fft = planner.plan_fft_forward(size);
    let window: Vec<f32> = (0..size)
        .map(|i| (0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / size as f64).cos()) as f32)
        .collect();
    let bins = size / 2 + 1;
    let mut all = vec![0f64; bins];
    let mut speech = vec![0f64; bins];
    let mut quiet_spectrum = vec![0f64; bins];
    let (mut all_n, mut speech_n, mut quiet_n) = (0usize, 0usize, 0usize);
    let frame_len = stats.frame_len;
    // Half-overlapping windows (Welch): twice the averages for the same audio. A long call is
    // read at most MAX_WINDOWS of them, evenly spread over it: the averages settle long before
    // (2 minutes at 8 kHz), and the cost stays bounded whatever the length.
    let hop = size / 2;
    let positions = len.saturating_sub(size).div_ceil(hop) + 1;
    let windows = positions.min(max_windows.max(1));
    // Windows are read BATCH at a time in order, their power spectra computed side by side
    // (each FFT on its own buffers: any core may take any window), then added to the averages
    // in window order: the same sums, to the bit, whatever the thread count.
    let mut batch: Vec<Window> = (0..BATCH.min(windows))
        .map(|_| Window {
            samples: fft.make_input_vec(),
            power: vec![0f32; bins],
            start: 0,
            end: 0,
            ok: false,
        })
        .collect();
    'windows: for first in (0..windows).step_by(BATCH) {
        let filled = BATCH.min(windows - first);
        for (w, slot) in (first..first + filled).zip(batch.iter_mut()) {
            let position = if windows == positions {
                w
            } else {
                w * (positions - 1) / (windows - 1).max(1)
            };
            slot.start = position * hop;
            slot.end = (slot.start + size).min(len);
            let samples = &mut slot.samples[..slot.end - slot.start];
            read(slot.start, samples);
            // Only the last window can be short: zeros after the recording's end.
            slot.samples[slot.end - slot.start..].fill(0.0);
        }
        batch[..filled].par_iter_mut().for_each_init(
            || (fft.make_output_vec(), fft.make_scratch_vec()),
            |(output, scratch), slot| {
                for (x, &w) in slot.samples.iter_mut().zip(&window) {
                    *x *= w;
                }
                slot.ok = fft
                    .process_with_scratch(&mut slot.samples, output, scratch)
                    .is_ok();
                for (p, c) in slot.power.iter_mut().zip(output.iter()) {
                    *p = c.norm_sqr();
                }
            },
        );
        for slot in &batch[..filled] {
            if !slot.ok {
                break 'windows;
            }
            let first_frame = slot.start / frame_len;
            let last_frame = (slot.end / frame_len).min(speech_frames.len());
            let frames_in = last_frame.saturating_sub(first_frame).max(1);
            let count = |flags: &[bool]| {
                (first_frame..last_frame)
                    .filter(|&i| flags.get(i).copied().unwrap_or(false))
                    .count()
            };
            let speaking = count(speech_frames);
            let speechy = speaking * 2 > frames_in;
            // Hum is judged where nobody talks and nothing is muted.
            let is_quiet = speaking * 5 < frames_in && count(muted_frames) * 2 < frames_in;
            // Each average in its own loop: no branch per bin, and the loops vectorize.
            let add = |sums: &mut [f64]| {
                for (sum, &p) in sums.iter_mut().zip(&slot.power) {
                    *sum += p as f64;
                }
            };
            add(&mut all);
            if speechy {
                add(&mut speech);
            }
            if is_quiet {
                add(&mut quiet_spectrum);
            }
            all_n += 1;
            speech_n += speechy as usize;
            quiet_n += is_quiet as usize;
        }
    }
    let bin_hz = rate as f64 / size as f64;
    let to_db = |v: &[f64], n: usize| -> Vec<f64> {
        v.iter()
            .map(|&p| 10.0 * (p / n.max(1) as f64).max(1e-30).log10())
            .collect()
    };
    // The reference spectrum, kept linear (mean power per bin).
    let (reference, reference_n) = if speech_n > 0 {
        (&speech, speech_n)
    } else {
        (&all, all_n)
    };
    let hum_db = to_db(&quiet_spectrum, quiet_n);

    // Bandwidth: smooth over ~100 Hz (a running mean of the powers, by prefix sums: no power
    // function per bin), ignore DC and the lowest 40 Hz.
    let half = ((50.0 / bin_hz).round() as usize).max(1);
    let mut prefix = Vec::with_capacity(bins + 1);
    prefix.push(0.0f64);
    for &p in reference.iter() {
        let mean = (p / reference_n.max(1) as f64).max(1e-30);
        prefix.push(prefix[prefix.len() - 1] + mean);
    }
    let smoothed: Vec<f64> = (0..bins)
        .map(|k| {
            let lo = k.saturating_sub(half);
            let hi = (k + half + 1).min(bins);
            let mean = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
            10.0 * mean.max(1e-30).log10()
        })
        .collect();
    let low = (40.0 / bin_hz).ceil() as usize;
    let peak = smoothed[low.min(bins - 1)..]
        .iter()
        .copied()
        .fold(f64::MIN, f64::max);
    let top = (low..bins)
        .rev()
        .find(|&k| smoothed[k] >= peak - BANDWIDTH_RANGE_DB)
        .unwrap_or(0);
    let bandwidth_hz = top as f64 * bin_hz;
    let band = match bandwidth_hz {
        b if b <= 4000.0 => Band::Narrowband,
        b if b <= 8000.0 => Band::Wideband,
        b if b <= 16_000.0 => Band::SuperWideband,
        _ => Band::Fullband,
    };

    let prominence = |f: f64| -> f64 {
        let k = (f / bin_hz).round() as usize;
        if k + 8 >= bins || k < 8 {
            return 0.0;
        }
        let line = hum_db[k - 1..=k + 1]
            .iter()
            .copied()
            .fold(f64::MIN, f64::max);
        let mut neighbours: Vec<f64> = (k - 8..k - 2)
            .chain(k + 3..k + 9)
            .map(|j| hum_db[j])
            .collect();
        neighbours.sort_by(f64::total_cmp);
        line - neighbours[neighbours.len() / 2]
    };
    // The mains line itself must stand out (a voice's harmonics can sit on 100 or 120 Hz), in
    // enough averaged windows that a chance peak of the noise cannot pass for it.
    let mains_hum_hz = [50u32, 60]
        .into_iter()
        .filter(|&base| quiet_n >= MIN_HUM_WINDOWS && prominence(base as f64) >= HUM_PROMINENCE_DB)
        .max_by(|&a, &b| prominence(a as f64).total_cmp(&prominence(b as f64)));

    // The median level of those frames, selected on their mean squares (dB are monotonic in
    // them): one logarithm, not one per frame and a sort.
    let audible = stats.louder_than(-200.0);
    let mut quiet: Vec<f32> = (0..stats.frames())
        .filter(|&i| {
            !speech_frames.get(i).copied().unwrap_or(true)
                && !muted_frames.get(i).copied().unwrap_or(true)
                && audible(i)
        })
        .map(|i| stats.loudest_mean_square(i))
        .collect();
    let middle = quiet.len() / 2;
    let noise_floor_dbfs = (!quiet.is_empty()).then(|| {
        let (_, median, _) = quiet.select_nth_unstable_by(middle, f32::total_cmp);
        ms_to_db(*median as f64)
    });
    let snr_db = match (speech_level_dbov, noise_floor_dbfs) {
        (Some(s), Some(n)) => Some(s - n),
        _ => None,
    };
    SpectrumFacts {
        bandwidth_hz,
        band,
        mains_hum_hz,
        noise_floor_dbfs,
        snr_db,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    fn facts(signal: &[f32], rate: u32) -> SpectrumFacts {
        let stats = FrameStats::compute(&[signal.to_vec()], rate);
        let speech: Vec<bool> = (0..stats.frames())
            .map(|i| stats.level_db(i) > -45.0)
            .collect();
        let muted = vec![false; stats.frames()];
        spectrum_facts(signal, rate, &stats, &speech, &muted, Some(-20.0))
    }

    #[test]
    fn narrowband_vs_wideband_and_hum() {
        let rate = 16_000;
        let tones = |freqs: &[f64], hum: bool| -> Vec<f32> {
            let mut seed = 7u64;
            (0..rate as usize * 10)
                .map(|i| {
                    let t = i as f64 / rate as f64;
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let noise = ((seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 1e-4;
                    let speech: f64 = freqs.iter().map(|&f| 0.02 * (TAU * f * t).sin()).sum();
                    // Talk for 1 s, pause for 1 s.
                    let gate = if (t % 2.0) < 1.0 { 1.0 } else { 0.0 };
                    (speech * gate
                        + noise
                        + if hum {
                            0.003 * (TAU * 50.0 * t).sin()
                        } else {
                            0.0
                        }) as f32
                })
                .collect()
        };
        let narrow = facts(&tones(&[300.0, 800.0, 1500.0, 3000.0], false), rate);
        assert_eq!(narrow.band, Band::Narrowband, "{narrow:?}");
        assert_eq!(narrow.mains_hum_hz, None, "{narrow:?}");
        let wide = facts(&tones(&[300.0, 800.0, 1500.0, 3000.0, 6500.0], true), rate);
        assert_eq!(wide.band, Band::Wideband, "{wide:?}");
        assert_eq!(wide.mains_hum_hz, Some(50), "{wide:?}");
        // Noise floor: the ±5e-5 uniform noise (≈ −90 dBFS) plus the hum in the gaps.
        let floor = narrow.noise_floor_dbfs.unwrap();
        assert!((-95.0..-85.0).contains(&floor), "{floor}");
        assert!((narrow.snr_db.unwrap() - (-20.0 - floor)).abs() < 1e-9);
    }

    #[test]
    fn a_long_call_read_in_a_bounded_number_of_windows_gives_the_same_facts() {
        // Six minutes at 8 kHz (2,930 windows): talk and pauses, a 60 Hz hum in the pauses,
        // speech band-limited to 3.4 kHz.
        let rate = 8000;
        let mut seed = 11u64;
        let signal: Vec<f32> = (0..rate as usize * 360)
            .map(|i| {
                let t = i as f64 / rate as f64;
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let noise = ((seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 2e-4;
                let speech: f64 = [220.0, 700.0, 1300.0, 2400.0, 3300.0]
                    .iter()
                    .map(|&f| 0.02 * (TAU * f * t).sin())
                    .sum();
                let gate = if (t % 2.7) < 1.6 { 1.0 } else { 0.0 };
                (speech * gate + noise + 0.004 * (TAU * 60.0 * t).sin()) as f32
            })
            .collect();
        let stats = FrameStats::compute(std::slice::from_ref(&signal), rate);
        let speech: Vec<bool> = (0..stats.frames())
            .map(|i| stats.level_db(i) > -45.0)
            .collect();
        let muted = vec![false; stats.frames()];
        let mut read =
            |start: usize, out: &mut [f32]| out.copy_from_slice(&signal[start..][..out.len()]);
        let every = spectrum_facts_within(
            signal.len(),
            &mut read,
            rate,
            &stats,
            &speech,
            &muted,
            Some(-20.0),
            usize::MAX,
        );
        let bounded = spectrum_facts(&signal, rate, &stats, &speech, &muted, Some(-20.0));
        assert_eq!(bounded.band, every.band);
        assert_eq!(bounded.mains_hum_hz, Some(60));
        assert_eq!(bounded.mains_hum_hz, every.mains_hum_hz);
        assert!(
            (bounded.bandwidth_hz - every.bandwidth_hz).abs() <= 2.0 * rate as f64 / 2048.0,
            "{bounded:?} {every:?}"
        );
        assert_eq!(bounded.noise_floor_dbfs, every.noise_floor_dbfs);
        assert_eq!(bounded.snr_db, every.snr_db);
    }
}
