//! 10 ms frame statistics per channel (mean square and peak): the common input of the silence
//! map, stereo talk time and the noise-floor estimate, computed once.

/// Frame length in ms.
pub const FRAME_MS: u32 = 10;

/// Per-channel statistics of consecutive 10 ms frames (the last one may be shorter).
#[derive(Debug, Clone)]
pub struct FrameStats {
    pub rate: u32,
    /// Samples per frame.
    pub frame_len: usize,
    /// `mean_square[channel][frame]`.
    pub mean_square: Vec<Vec<f32>>,
    /// `peak[channel][frame]`: the largest |sample|.
    pub peak: Vec<Vec<f32>>,
}

impl FrameStats {
    pub fn compute(planes: &[Vec<f32>], rate: u32) -> Self {
        let frame_len = ((rate as u64 * FRAME_MS as u64 / 1000) as usize).max(1);
        let mut mean_square = Vec::with_capacity(planes.len());
        let mut peak = Vec::with_capacity(planes.len());
        for plane in planes {
            let mut ms = Vec::with_capacity(plane.len() / frame_len + 1);
            let mut pk = Vec::with_capacity(plane.len() / frame_len + 1);
            (crate::simd::kernels().frame_stats)(plane, frame_len, &mut ms, &mut pk);
            mean_square.push(ms);
            peak.push(pk);
        }
        FrameStats {
            rate,
            frame_len,
            mean_square,
            peak,
        }
    }

    /// Empty statistics, to be filled block by block with [`FrameStats::push`] and closed
    /// with [`FrameStats::finish`]: the same figures as [`FrameStats::compute`] on the whole
    /// recording, however it is cut.
    pub fn streaming(channels: usize, rate: u32) -> FrameStatsBuilder {
        let frame_len = ((rate as u64 * FRAME_MS as u64 / 1000) as usize).max(1);
        FrameStatsBuilder {
            stats: FrameStats {
                rate,
                frame_len,
                mean_square: vec![Vec::new(); channels],
                peak: vec![Vec::new(); channels],
            },
            pending: vec![Vec::with_capacity(frame_len); channels],
        }
    }

    pub fn frames(&self) -> usize {
        self.mean_square.first().map_or(0, Vec::len)
    }

    /// The loudest channel's level of frame `i`, in dBFS (RMS; −200 for digital zero).
    pub fn level_db(&self, i: usize) -> f64 {
        ms_to_db(self.loudest_mean_square(i) as f64)
    }

    /// The loudest channel's mean square of frame `i` (what [`FrameStats::level_db`] reads).
    pub fn loudest_mean_square(&self, i: usize) -> f32 {
        self.mean_square.iter().map(|c| c[i]).fold(0f32, f32::max)
    }

    /// `|i| self.level_db(i) > threshold_db`, the same answers, decided on the mean square: a
    /// logarithm only for a frame within a billionth of the threshold (an hour of 10 ms frames
    /// is 360,000 logarithms otherwise, a few ms each time a pass asks).
    pub fn louder_than(&self, threshold_db: f64) -> impl Fn(usize) -> bool + '_ {
        let linear = 10f64.powf(threshold_db / 10.0);
        let (low, high) = (linear * (1.0 - 1e-9), linear * (1.0 + 1e-9));
        move |i| {
            let ms = self.loudest_mean_square(i) as f64;
            if ms > high {
                true
            } else if ms > 0.0 && ms < low {
                false
            } else {
                ms_to_db(ms) > threshold_db
            }
        }
    }

    /// Channel `c`'s level of frame `i`, dBFS.
    pub fn channel_level_db(&self, c: usize, i: usize) -> f64 {
        ms_to_db(self.mean_square[c][i] as f64)
    }

    /// The largest |sample| of frame `i` across channels.
    pub fn peak(&self, i: usize) -> f32 {
        self.peak.iter().map(|c| c[i]).fold(0f32, f32::max)
    }

    /// First sample of frame `i`.
    pub fn start_sample(&self, i: usize) -> usize {
        i * self.frame_len
    }

    pub fn samples_to_ms(&self, samples: usize) -> f64 {
        samples as f64 * 1000.0 / self.rate as f64
    }
}

/// [`FrameStats`] built from consecutive blocks of any length: a frame cut by a block boundary
/// waits in `pending` until it is whole (or the recording ends), then goes through the same
/// kernel as it would in one piece.
#[derive(Debug, Clone)]
pub struct FrameStatsBuilder {
    stats: FrameStats,
    pending: Vec<Vec<f32>>,
}

impl FrameStatsBuilder {
    /// Adds the next block: a slice per channel, all the same length.
    pub fn push(&mut self, planes: &[&[f32]]) {
        let frame_len = self.stats.frame_len;
        let stats_of = crate::simd::kernels().frame_stats;
        for (c, plane) in planes.iter().enumerate() {
            let (ms, pk) = (&mut self.stats.mean_square[c], &mut self.stats.peak[c]);
            let pending = &mut self.pending[c];
            let mut rest = *plane;
            if !pending.is_empty() {
                let take = (frame_len - pending.len()).min(rest.len());
                pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if pending.len() == frame_len {
                    stats_of(pending, frame_len, ms, pk);
                    pending.clear();
                }
            }
            let whole = rest.len() / frame_len * frame_len;
            stats_of(&rest[..whole], frame_len, ms, pk);
            pending.extend_from_slice(&rest[whole..]);
        }
    }

    /// The statistics, the last (shorter) frame included.
    pub fn finish(mut self) -> FrameStats {
        let frame_len = self.stats.frame_len;
        let stats_of = crate::simd::kernels().frame_stats;
        for (c, pending) in self.pending.iter().enumerate() {
            if !pending.is_empty() {
                stats_of(
                    pending,
                    frame_len,
                    &mut self.stats.mean_square[c],
                    &mut self.stats.peak[c],
                );
            }
        }
        self.stats
    }
}

/// A mean square in dBFS (−200 for digital zero).
pub fn ms_to_db(ms: f64) -> f64 {
    if ms > 0.0 { 10.0 * ms.log10() } else { -200.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn louder_than_answers_as_the_levels_do() {
        let rate = 8000;
        // Frames from digital zero and denormal-small up to full scale, a few levels repeated.
        let mut plane = Vec::new();
        for k in 0..400 {
            let amplitude = match k % 5 {
                0 => 0.0,
                1 => f32::MIN_POSITIVE * (k as f32),
                _ => 10f32.powf(-(k as f32) / 4.0 / 20.0),
            };
            plane.extend((0..80).map(|i| if i % 2 == 0 { amplitude } else { -amplitude }));
        }
        let stats = FrameStats::compute(&[plane], rate);
        let mut thresholds: Vec<f64> = vec![
            -200.0,
            -199.999_999,
            -450.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        // Each frame's own level, and a hair either side: where the shortcut must not decide.
        for i in 0..stats.frames() {
            let db = stats.level_db(i);
            thresholds.extend([db, db - 1e-12, db + 1e-12, db - 0.01]);
        }
        for &t in &thresholds {
            let above = stats.louder_than(t);
            for i in 0..stats.frames() {
                assert_eq!(above(i), stats.level_db(i) > t, "frame {i}, threshold {t}");
            }
        }
    }

    #[test]
    fn blocks_of_any_length_give_the_whole_recordings_statistics() {
        let rate = 8000;
        let plane: Vec<f32> = (0..rate as usize * 3 + 37)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * (1.0 + (i / 800) as f32))
            .collect();
        let other: Vec<f32> = plane.iter().map(|v| v * 0.25).collect();
        let planes = vec![plane, other];
        let whole = FrameStats::compute(&planes, rate);
        for cut in [1, 79, 80, 81, 4096, 65_536] {
            let mut builder = FrameStats::streaming(2, rate);
            for start in (0..planes[0].len()).step_by(cut) {
                let end = (start + cut).min(planes[0].len());
                builder.push(&[&planes[0][start..end], &planes[1][start..end]]);
            }
            let got = builder.finish();
            for c in 0..2 {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got.mean_square[c]),
                    bits(&whole.mean_square[c]),
                    "cut {cut}"
                );
                assert_eq!(bits(&got.peak[c]), bits(&whole.peak[c]), "cut {cut}");
            }
        }
    }
}
