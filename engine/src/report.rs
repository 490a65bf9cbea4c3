//! The report: everything the engine learned about one input, serializable as JSON.

use crate::checksum::Checksums;
use crate::decode::DecoderPath;
use crate::dsp::levels::ChannelLevels;
use serde::Serialize;

/// A metadata tag (`title`, `comment`, … or the container's raw key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Format facts, levels and checksums of one input.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file name, when known.
    pub file: Option<String>,
    /// Container short name (`wav`, `rf64`, `mp3`, `flac`, `ogg`, `isomp4`, …).
    pub container: String,
    /// Codec short name (`pcm_s16le`, `pcm_mulaw`, `pcm_alaw`, `mp3`, `flac`, `vorbis`, `aac`, …).
    pub codec: String,
    /// Which decoder read it.
    pub decoder: DecoderPath,
    /// Hz.
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: Option<u16>,
    /// Samples per channel actually decoded.
    pub frames: u64,
    /// Exact duration: frames × 1000 / sample rate, in ms.
    pub duration_ms: f64,
    /// Size of the input in bytes.
    pub file_bytes: u64,
    /// Average bitrate of the whole file (bits per second of audio).
    pub bitrate_bps: u64,
    pub tags: Vec<Tag>,
    /// One entry per channel.
    pub levels: Vec<ChannelLevels>,
    /// Digests of the input bytes.
    pub checksums: Checksums,
    /// Oddities that did not make the input invalid.
    pub warnings: Vec<String>,
}
