//! Limits that keep hostile or unexpected input from costing unbounded memory or time.

use crate::error::{EngineError, LimitError};

/// Configurable bounds checked before and during decoding. Header fields are checked against
/// these before anything is allocated from them, and decoding stops as soon as one is crossed.
///
/// The defaults suit call recordings: a 4-hour call at 48 kHz stereo fits, a file claiming
/// 65,535 channels or a 4 GB data chunk does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, in bytes. Default 2 GiB.
    pub max_input_bytes: u64,
    /// Longest audio accepted, in ms. Default 4 hours.
    pub max_duration_ms: u64,
    /// Most channels accepted. Default 8.
    pub max_channels: u32,
    /// Highest sample rate accepted, in Hz. Default 192,000.
    pub max_sample_rate: u32,
    /// Most decoded samples (frames × channels) held in memory at once when a whole file is
    /// decoded to a buffer. Default 2^30 (4 GiB of f32).
    pub max_decoded_samples: u64,
    /// Most metadata tags kept. Default 256.
    pub max_tags: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 2 << 30,
            max_duration_ms: 4 * 3600 * 1000,
            max_channels: 8,
            max_sample_rate: 192_000,
            max_decoded_samples: 1 << 30,
            max_tags: 256,
        }
    }
}

impl Limits {
    pub(crate) fn check_input_bytes(&self, bytes: u64) -> Result<(), EngineError> {
        if bytes > self.max_input_bytes {
            return Err(LimitError::InputBytes {
                limit: self.max_input_bytes,
                actual: bytes,
            }
            .into());
        }
        Ok(())
    }

    /// Checks a stream's shape before any sample is decoded.
    pub(crate) fn check_shape(&self, sample_rate: u32, channels: u32) -> Result<(), EngineError> {
        if channels > self.max_channels {
            return Err(LimitError::Channels {
                limit: self.max_channels,
                actual: channels,
            }
            .into());
        }
        if sample_rate > self.max_sample_rate {
            return Err(LimitError::SampleRate {
                limit: self.max_sample_rate,
                actual: sample_rate,
            }
            .into());
        }
        Ok(())
    }

    /// Checks a frame count (declared or decoded so far) against the duration limit.
    pub(crate) fn check_frames(&self, frames: u64, sample_rate: u32) -> Result<(), EngineError> {
        let ms = frames_to_ms(frames, sample_rate);
        if ms > self.max_duration_ms {
            return Err(LimitError::Duration {
                limit_ms: self.max_duration_ms,
                actual_ms: ms,
            }
            .into());
        }
        Ok(())
    }

    pub(crate) fn check_decoded_samples(&self, samples: u64) -> Result<(), EngineError> {
        if samples > self.max_decoded_samples {
            return Err(LimitError::DecodedSamples {
                limit: self.max_decoded_samples,
                actual: samples,
            }
            .into());
        }
        Ok(())
    }
}

/// Frames to whole milliseconds, rounded to nearest, without overflow.
pub fn frames_to_ms(frames: u64, sample_rate: u32) -> u64 {
    if sample_rate == 0 {
        return 0;
    }
    ((frames as u128 * 1000 + sample_rate as u128 / 2) / sample_rate as u128) as u64
}
