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

    pub fn frames(&self) -> usize {
        self.mean_square.first().map_or(0, Vec::len)
    }

    /// The loudest channel's level of frame `i`, in dBFS (RMS; −200 for digital zero).
    pub fn level_db(&self, i: usize) -> f64 {
        let ms = self.mean_square.iter().map(|c| c[i]).fold(0f32, f32::max) as f64;
        if ms > 0.0 { 10.0 * ms.log10() } else { -200.0 }
    }

    /// Channel `c`'s level of frame `i`, dBFS.
    pub fn channel_level_db(&self, c: usize, i: usize) -> f64 {
        let ms = self.mean_square[c][i] as f64;
        if ms > 0.0 { 10.0 * ms.log10() } else { -200.0 }
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
