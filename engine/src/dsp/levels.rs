//! Per-channel level statistics in one streaming pass: sample peak, RMS, DC offset, clipped
//! samples and the digital-silence ratio.

use serde::Serialize;

/// A sample within ±8/32768 (−72.2 dBFS) of zero counts as digital silence when it lies in a run
/// of at least [`SILENCE_MIN_RUN_MS`]. ±8 is the smallest non-zero level of both G.711 laws, so
/// an A-law idle pattern (which never decodes to 0) counts as silence, while a −60 dBFS noise
/// floor, whose samples cross ±8 every few samples, does not.
pub const DIGITAL_SILENCE_MAX: f32 = 8.0 / 32768.0;
/// Shortest run of near-zero samples counted as digital silence, in ms.
pub const SILENCE_MIN_RUN_MS: u32 = 10;

/// Statistics of one channel, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ChannelLevels {
    /// Zero-based channel index.
    pub channel: u16,
    /// Largest absolute sample in dBFS (0 dBFS = full scale); `null` for an all-zero channel.
    pub peak_dbfs: Option<f64>,
    /// RMS in dBFS relative to a full-scale square wave (a full-scale sine reads −3.01 dBFS);
    /// `null` for an all-zero channel.
    pub rms_dbfs: Option<f64>,
    /// Mean sample value, as a fraction of full scale.
    pub dc_offset: f64,
    /// Samples at or beyond the format's full-scale code.
    pub clipped_samples: u64,
    /// Fraction (0–1) of samples that are digital silence (see [`DIGITAL_SILENCE_MAX`]).
    pub digital_silence_ratio: f64,
}

#[derive(Debug, Clone, Default)]
struct ChannelAccumulator {
    peak: f32,
    sum: f64,
    sum_squares: f64,
    clipped: u64,
    silent: u64,
    /// Length of the near-zero run still open at the end of the last block.
    run: u64,
    samples: u64,
}

/// Accumulates [`ChannelLevels`] over planar blocks of any size.
#[derive(Debug, Clone)]
pub struct LevelMeter {
    channels: Vec<ChannelAccumulator>,
    full_scale: f32,
    min_run: u64,
}

impl LevelMeter {
    /// `full_scale` is the magnitude of the format's largest code as f32 (32767/32768 for 16-bit
    /// PCM, 32124/32768 for μ-law, 1.0 for float and lossy codecs): samples at or above it count
    /// as clipped.
    pub fn new(channels: usize, sample_rate: u32, full_scale: f32) -> Self {
        LevelMeter {
            channels: vec![ChannelAccumulator::default(); channels],
            full_scale,
            min_run: (sample_rate as u64 * SILENCE_MIN_RUN_MS as u64 / 1000).max(1),
        }
    }

    /// Adds one block: a slice per channel, all the same length.
    pub fn push(&mut self, planes: &[&[f32]]) {
        for (acc, plane) in self.channels.iter_mut().zip(planes) {
            let sums = (crate::simd::kernels().level_sums)(plane, self.full_scale);
            acc.peak = acc.peak.max(sums.peak);
            acc.sum += sums.sum;
            acc.sum_squares += sums.squares;
            acc.clipped += sums.clipped;
            acc.samples += plane.len() as u64;

            // Near-zero runs, carried across blocks.
            let mut run = acc.run;
            let mut silent = acc.silent;
            // 64 samples at a time, as a mask of the near-zero ones (sample by sample where the
            // minimum run is shorter than a chunk: rates under 6.4 kHz).
            let chunks = plane.chunks_exact(64);
            let tail = chunks.remainder();
            let min_run = self.min_run;
            let step = |run: &mut u64, silent: &mut u64, s: f32| {
                if s.abs() <= DIGITAL_SILENCE_MAX {
                    *run += 1;
                } else {
                    if *run >= min_run {
                        *silent += *run;
                    }
                    *run = 0;
                }
            };
            for chunk in chunks {
                // Bit i: sample i is near zero (NaN is not). Eight tests as eight 0/1 bytes
                // (compared side by side), gathered into eight bits by one multiplication:
                // byte j lands in bit 56 + j of the product (its other partial products miss
                // the top byte or fall in lower ones without a carry).
                let mut quiet = 0u64;
                for (g, eight) in chunk.chunks_exact(8).enumerate() {
                    let mut bytes = [0u8; 8];
                    for (b, s) in bytes.iter_mut().zip(eight) {
                        *b = u8::from(s.abs() <= DIGITAL_SILENCE_MAX);
                    }
                    let bits = u64::from_le_bytes(bytes).wrapping_mul(0x0102_0408_1020_4080) >> 56;
                    quiet |= bits << (8 * g);
                }
                let loud = !quiet;
                match loud {
                    0 => run += 64,
                    // A run between two loud samples of one chunk is at most 62 long: under the
                    // minimum it never counts, so only the chunk's two ends matter.
                    _ if min_run > 62 => {
                        run += u64::from(loud.trailing_zeros());
                        if run >= min_run {
                            silent += run;
                        }
                        run = u64::from(loud.leading_zeros());
                    }
                    _ => chunk.iter().for_each(|&s| step(&mut run, &mut silent, s)),
                }
            }
            tail.iter().for_each(|&s| step(&mut run, &mut silent, s));
            acc.run = run;
            acc.silent = silent;
        }
    }

    /// The statistics of everything pushed so far.
    pub fn finish(&self) -> Vec<ChannelLevels> {
        self.channels
            .iter()
            .enumerate()
            .map(|(channel, acc)| {
                let n = acc.samples.max(1) as f64;
                let silent = acc.silent + if acc.run >= self.min_run { acc.run } else { 0 };
                let rms = (acc.sum_squares / n).sqrt();
                ChannelLevels {
                    channel: channel as u16,
                    peak_dbfs: to_dbfs(acc.peak as f64),
                    rms_dbfs: to_dbfs(rms),
                    dc_offset: acc.sum / n,
                    clipped_samples: acc.clipped,
                    digital_silence_ratio: silent as f64 / n,
                }
            })
            .collect()
    }
}

/// 20·log10(amplitude), `None` for zero (−∞) or a non-finite value.
pub fn to_dbfs(amplitude: f64) -> Option<f64> {
    (amplitude > 0.0 && amplitude.is_finite()).then(|| 20.0 * amplitude.log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_and_square_levels() {
        let rate = 8000;
        let sine: Vec<f32> = (0..rate)
            .map(|i| 0.5 * (i as f32 * 0.25 * std::f32::consts::PI).sin())
            .collect();
        let square: Vec<f32> = (0..rate)
            .map(|i| if i % 8 < 4 { 0.25 } else { -0.25 })
            .collect();
        let mut meter = LevelMeter::new(2, rate as u32, 32767.0 / 32768.0);
        for (a, b) in sine.chunks(1000).zip(square.chunks(1000)) {
            meter.push(&[a, b]);
        }
        let levels = meter.finish();
        assert!((levels[0].peak_dbfs.unwrap() - -6.0206).abs() < 1e-3);
        assert!((levels[0].rms_dbfs.unwrap() - (-6.0206 - 3.0103)).abs() < 1e-3);
        assert!(levels[0].dc_offset.abs() < 1e-6);
        assert!((levels[1].rms_dbfs.unwrap() - -12.0412).abs() < 1e-3);
        assert_eq!(levels[1].digital_silence_ratio, 0.0);
    }

    #[test]
    fn clipping_silence_and_dc() {
        let mut plane = vec![0.0f32; 800]; // 100 ms of zero: silence
        plane.extend(std::iter::repeat_n(1.0, 10)); // clipped
        plane.extend(std::iter::repeat_n(-1.0, 5)); // clipped
        plane.extend((0..40).map(|i| if i % 2 == 0 { 0.0 } else { 0.1 })); // zeros in runs of 1: not silence
        plane.extend(std::iter::repeat_n(8.0 / 32768.0, 160)); // A-law idle, 20 ms: silence
        let mut meter = LevelMeter::new(1, 8000, 32767.0 / 32768.0);
        meter.push(&[&plane[..333]]);
        meter.push(&[&plane[333..]]);
        let l = &meter.finish()[0];
        assert_eq!(l.clipped_samples, 15);
        assert_eq!(l.peak_dbfs, Some(0.0));
        assert!((l.digital_silence_ratio - 960.0 / plane.len() as f64).abs() < 1e-12);
        let mean = plane.iter().map(|&s| s as f64).sum::<f64>() / plane.len() as f64;
        assert!((l.dc_offset - mean).abs() < 1e-7);
        assert!(
            LevelMeter::new(1, 8000, 1.0).finish()[0]
                .peak_dbfs
                .is_none()
        );
    }

    /// The near-zero runs counted 64 samples at a time equal a sample-by-sample count, for
    /// runs of every length around the minimum and chunk edges, loud stretches with zeros in
    /// them, a NaN, at rates whose minimum run is longer and shorter than a chunk, however the
    /// input is cut.
    #[test]
    fn digital_silence_equals_a_per_sample_count() {
        let mut plane = Vec::new();
        let mut seed = 7u64;
        for _ in 0..400 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let quiet = (seed >> 33) as usize % 300;
            let loud = (seed >> 20) as usize % 150;
            let gaps = 3 + (seed >> 45) as usize % 9;
            plane.extend(std::iter::repeat_n(0.0f32, quiet));
            plane.extend((0..loud).map(|i| {
                if i % gaps == 0 {
                    0.0
                } else {
                    0.2 * (i as f32 * 0.3).sin() + 0.01
                }
            }));
        }
        plane[5000] = f32::NAN;
        for rate in [4000u32, 8000, 16_000] {
            let min_run = rate as usize * SILENCE_MIN_RUN_MS as usize / 1000;
            let (mut run, mut silent) = (0usize, 0usize);
            for &s in &plane {
                if s.abs() <= DIGITAL_SILENCE_MAX {
                    run += 1;
                } else {
                    silent += if run >= min_run { run } else { 0 };
                    run = 0;
                }
            }
            silent += if run >= min_run { run } else { 0 };
            let want = silent as f64 / plane.len() as f64;
            for cut in [1, 63, 64, 65, 1000, plane.len()] {
                let mut meter = LevelMeter::new(1, rate, 1.0);
                for piece in plane.chunks(cut) {
                    meter.push(&[piece]);
                }
                let got = meter.finish()[0].digital_silence_ratio;
                assert_eq!(got, want, "{rate} Hz, pieces of {cut}");
            }
        }
    }
}
