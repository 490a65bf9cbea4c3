//! Inspection: checksums, integrity and metadata of one input, without changing it.

use crate::checksum::{Digests, ExpectedChecksums};
use crate::decode::{Decoder, StreamInfo};
use crate::dsp::levels::{ChannelLevels, LevelMeter};
use crate::error::{EngineError, Result};
use crate::limits::Limits;
use crate::report::Report;
use crate::source::AudioSource;

/// What to check besides the input's own consistency.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    pub limits: Limits,
    /// Digests the input must have.
    pub expected_checksums: ExpectedChecksums,
    /// The duration the audio should have (e.g. from the CDR), in ms.
    pub expected_duration_ms: Option<u64>,
    /// How far the actual duration may differ from the expected one, in ms.
    pub duration_tolerance_ms: u64,
    /// Compute MD5 even when no MD5 is expected (it is the costliest digest).
    pub compute_md5: bool,
}

/// The default tolerance between a CDR's duration and the recording's, in ms: OCP's recording
/// starts and stops within a second of the dialog's events.
pub const DEFAULT_DURATION_TOLERANCE_MS: u64 = 1500;

impl InspectOptions {
    pub fn new() -> Self {
        InspectOptions {
            duration_tolerance_ms: DEFAULT_DURATION_TOLERANCE_MS,
            ..Default::default()
        }
    }
}

/// Verifies and describes one input: digests (checked against any expected ones), container and
/// codec, exact duration, tags and per-channel levels.
pub fn inspect(source: &AudioSource, options: &InspectOptions) -> Result<Report> {
    let digests = input_digests(source, options)?;
    let mut decoder = Decoder::open(source, &options.limits)?;
    let mut meter: Option<LevelMeter> = None;
    let frames = {
        let info = decoder.info().clone();
        let full_scale = full_scale(&info);
        decoder.run(&mut |block: &[&[f32]]| {
            meter
                .get_or_insert_with(|| LevelMeter::new(block.len(), info.sample_rate, full_scale))
                .push(block);
            Ok(())
        })?
    };
    let info = decoder.info();
    check_duration(frames, info.sample_rate, options)?;
    let levels = meter.map(|m| m.finish()).unwrap_or_default();
    Ok(describe(source, info, frames, levels, &digests))
}

/// Checks the input's size, computes its digests (MD5 only when needed) and validates them.
pub(crate) fn input_digests(source: &AudioSource, options: &InspectOptions) -> Result<Digests> {
    source.require_non_empty()?;
    options.limits.check_input_bytes(source.len())?;
    if let Some(digests) = handed_in(source, options) {
        options.expected_checksums.validate(&digests)?;
        return Ok(digests);
    }
    let mut state = if options.compute_md5 || options.expected_checksums.needs_md5() {
        crate::checksum::DigestState::with_md5()
    } else {
        crate::checksum::DigestState::new()
    };
    // In pieces, each released once hashed: a long mapped file never stays resident whole.
    const PIECE: usize = 4 << 20;
    let bytes = source.bytes();
    for start in (0..bytes.len()).step_by(PIECE) {
        let end = (start + PIECE).min(bytes.len());
        state.update(&bytes[start..end]);
        source.release(start..end);
    }
    let digests = state.finish();
    options.expected_checksums.validate(&digests)?;
    Ok(digests)
}

/// The digests handed in with the source ([`AudioSource::with_digests`]), when they have all
/// these options need (MD5 only when asked for).
pub(crate) fn handed_in(source: &AudioSource, options: &InspectOptions) -> Option<Digests> {
    let wants_md5 = options.compute_md5 || options.expected_checksums.needs_md5();
    source
        .digests()
        .filter(|d| d.md5.is_some() || !wants_md5)
        .copied()
}

/// Checks the decoded duration against the expected one, if any.
pub(crate) fn check_duration(
    frames: u64,
    sample_rate: u32,
    options: &InspectOptions,
) -> Result<()> {
    if let Some(expected_ms) = options.expected_duration_ms {
        let actual_ms = (frames as f64 * 1000.0 / sample_rate as f64).round() as u64;
        if actual_ms.abs_diff(expected_ms) > options.duration_tolerance_ms {
            return Err(EngineError::DurationMismatch {
                expected_ms,
                tolerance_ms: options.duration_tolerance_ms,
                actual_ms,
            });
        }
    }
    Ok(())
}

/// The report of an input from what decoding it established.
pub(crate) fn describe(
    source: &AudioSource,
    info: &StreamInfo,
    frames: u64,
    levels: Vec<ChannelLevels>,
    digests: &Digests,
) -> Report {
    let duration_ms = frames as f64 * 1000.0 / info.sample_rate as f64;
    let bitrate_bps = if duration_ms > 0.0 {
        (source.len() as f64 * 8.0 * 1000.0 / duration_ms).round() as u64
    } else {
        0
    };
    Report {
        file: source.name().map(str::to_string),
        container: info.container.clone(),
        codec: info.codec.clone(),
        decoder: info.path,
        sample_rate: info.sample_rate,
        channels: info.channels,
        bits_per_sample: info.bits_per_sample,
        frames,
        duration_ms,
        file_bytes: source.len(),
        bitrate_bps,
        tags: info.tags.clone(),
        levels,
        checksums: digests.to_report(),
        warnings: info.warnings.clone(),
    }
}

/// The magnitude of the format's largest code, as decoded to f32: samples at or above it are
/// clipped. Lossy and float codecs have no largest code; 1.0 is used.
pub fn full_scale(info: &StreamInfo) -> f32 {
    let codec = info.codec.as_str();
    if codec == "pcm_mulaw" {
        return 32124.0 / 32768.0;
    }
    if codec == "pcm_alaw" {
        return 32256.0 / 32768.0;
    }
    if codec.starts_with("adpcm") {
        return 32767.0 / 32768.0;
    }
    let integer = codec.starts_with("pcm_s")
        || codec.starts_with("pcm_u")
        || matches!(codec, "flac" | "alac");
    match info.bits_per_sample {
        Some(bits @ 8..=24) if integer => {
            let half = (1u32 << (bits - 1)) as f32;
            (half - 1.0) / half
        }
        _ => 1.0,
    }
}
