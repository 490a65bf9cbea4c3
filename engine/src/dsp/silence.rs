//! The silence map: leading and trailing silence (what trimming may remove), internal muted
//! spans (what it must never remove), and the speech ratio.
//!
//! OCP mutes a recording during sensitive steps (card numbers). In PCM that is digital zero; a
//! muted A-law stream decodes to a constant ±8/32768, never zero. A muted span is therefore any
//! run of samples no louder than a floor (default −66 dBFS, just above ±8/32768) lasting at least
//! a minimum time, found at 10 ms resolution and refined to the sample.

use super::frames::{FrameStats, ms_to_db};
use serde::Serialize;

/// How the speech/silence threshold is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SilenceThreshold {
    /// A fixed level, dBFS (frame RMS).
    Dbfs(f64),
    /// This many dB below the active speech level (P.56), or 10 dB above the noise floor where
    /// that is higher (at most 10 dB under the speech level); falls back to −50 dBFS when no
    /// speech level could be measured (still 10 dB above the floor).
    BelowSpeech(f64),
}

/// Silence detection settings. The defaults suit telephone speech.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceConfig {
    /// Default: 25 dB below the active speech level — raised to 10 dB above the recording's
    /// noise floor where that is higher (at most 10 dB under the speech level) — never below
    /// −70 dBFS.
    pub threshold: SilenceThreshold,
    /// Leading or trailing silence shorter than this is left alone, ms. Default 200.
    pub min_silence_ms: u64,
    /// Silence kept before the first and after the last speech when trimming, ms. Default 250.
    pub padding_ms: u64,
    /// Samples at or below this level may be a mute, dBFS. Default −66 (16/32768).
    pub mute_floor_dbfs: f64,
    /// Shortest muted span reported, ms. Default 200.
    pub min_mute_ms: u64,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        SilenceConfig {
            threshold: SilenceThreshold::BelowSpeech(25.0),
            min_silence_ms: 200,
            padding_ms: 250,
            mute_floor_dbfs: -66.0,
            min_mute_ms: 200,
        }
    }
}

/// Lowest threshold ever used, dBFS: below this everything is silence anyway.
const THRESHOLD_FLOOR_DBFS: f64 = -70.0;
/// Hysteresis: once speech is found, its edges extend while frames stay within this many dB
/// below the threshold (speech fades in and out) — and above the noise floor.
const EDGE_HYSTERESIS_DB: f64 = 15.0;
/// An edge frame is speech only this far above the recording's noise floor: a stationary floor's
/// 10 ms frames spread about ±1.5 dB around it (band-limited noise at 8 kHz), so 6 dB above its
/// 10th percentile is never reached by the floor alone, and fades and soft consonants above it
/// are kept.
const FLOOR_MARGIN_DB: f64 = 6.0;
/// The noise floor is the level of this share of the quietest frames (muted frames excluded).
const FLOOR_QUANTILE: f64 = 0.10;
/// Fewest unmuted frames (100 ms) from which a noise floor is estimated.
const MIN_FLOOR_FRAMES: usize = 10;
/// A threshold under the speech level (the default) is at least this far above the noise
/// floor: speech is what stands clear of the line's noise.
const FLOOR_TO_THRESHOLD_DB: f64 = 10.0;
/// …but never closer than this to the speech level.
const MIN_BELOW_SPEECH_DB: f64 = 10.0;

/// An internal span where the recording was muted, in ms of the original recording.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct MutedSpan {
    pub start_ms: f64,
    pub end_ms: f64,
}

/// Where the silence is.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SilenceMap {
    /// The frame-level threshold used, dBFS.
    pub threshold_dbfs: f64,
    /// Silence before the first speech, ms (0 when under the minimum).
    pub leading_silence_ms: f64,
    /// Silence after the last speech, ms (0 when under the minimum).
    pub trailing_silence_ms: f64,
    /// Muted spans strictly inside the speech.
    pub muted_spans: Vec<MutedSpan>,
    /// Fraction (0–1) of 10 ms frames above the threshold.
    pub speech_ratio: f64,
    /// The recording's noise floor, dBFS: the level of its quietest tenth of unmuted 10 ms
    /// frames (`None`: too few of them). The edges of speech are found above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_floor_dbfs: Option<f64>,
    /// Audio frames (samples per channel) trimming removes at the start: the leading silence
    /// less the padding.
    pub trim_start_frames: u64,
    /// Audio frames trimming removes at the end.
    pub trim_end_frames: u64,
}

/// Builds the silence map of `planes` from their frame statistics.
pub fn silence_map(
    planes: &[Vec<f32>],
    stats: &FrameStats,
    speech_level_dbov: Option<f64>,
    config: &SilenceConfig,
) -> SilenceMap {
    let total_samples = planes.first().map_or(0, Vec::len);
    let mut quiet_at = |i: usize, floor: f32| planes.iter().all(|p| p[i].abs() <= floor);
    silence_map_of(
        total_samples,
        &mut quiet_at,
        stats,
        speech_level_dbov,
        config,
    )
}

/// [`silence_map`] of a recording of `total_samples` frames that is not in memory: the map
/// works on the frame statistics, and reads single samples only to place the edges of muted
/// spans exactly (`quiet_at(i, floor)`: whether every channel's |sample i| is at most `floor`).
pub fn silence_map_of(
    total_samples: usize,
    quiet_at: &mut dyn FnMut(usize, f32) -> bool,
    stats: &FrameStats,
    speech_level_dbov: Option<f64>,
    config: &SilenceConfig,
) -> SilenceMap {
    let frames = stats.frames();
    let noise_floor_dbfs = noise_floor(stats, config.mute_floor_dbfs);
    let threshold_dbfs = match config.threshold {
        SilenceThreshold::Dbfs(t) => t,
        SilenceThreshold::BelowSpeech(db) => {
            let below = speech_level_dbov.map_or(-50.0, |l| l - db);
            // Over a loud floor, speech is what stands clear of it (up to 10 dB under the
            // speech level: a louder floor is no longer silence to trim).
            let clear = noise_floor_dbfs.map(|f| {
                let above = f + FLOOR_TO_THRESHOLD_DB;
                speech_level_dbov.map_or(above, |l| above.min(l - MIN_BELOW_SPEECH_DB))
            });
            clear.map_or(below, |c| below.max(c))
        }
    }
    .max(THRESHOLD_FLOOR_DBFS);
    let is_speech = stats.louder_than(threshold_dbfs);
    let speech_frames = (0..frames).filter(|&i| is_speech(i)).count();
    let speech_ratio = if frames == 0 {
        0.0
    } else {
        speech_frames as f64 / frames as f64
    };

    let (Some(first), Some(last)) = (
        (0..frames).find(|&i| is_speech(i)),
        (0..frames).rev().find(|&i| is_speech(i)),
    ) else {
        // No speech at all: nothing is trimmed, nothing is "inside".
        return SilenceMap {
            threshold_dbfs,
            leading_silence_ms: stats.samples_to_ms(total_samples),
            trailing_silence_ms: 0.0,
            muted_spans: Vec::new(),
            speech_ratio,
            noise_floor_dbfs,
            trim_start_frames: 0,
            trim_end_frames: 0,
        };
    };
    let edge = edge_level(threshold_dbfs, noise_floor_dbfs);
    let mut onset = first;
    let above_edge = stats.louder_than(edge);
    while onset > 0 && above_edge(onset - 1) {
        onset -= 1;
    }
    let mut offset = last;
    while offset + 1 < frames && above_edge(offset + 1) {
        offset += 1;
    }
    let speech_start = stats.start_sample(onset);
    let speech_end = stats.start_sample(offset + 1).min(total_samples);

    let ms_to_samples = |ms: u64| (ms as f64 * stats.rate as f64 / 1000.0).round() as usize;
    let min_silence = ms_to_samples(config.min_silence_ms);
    let padding = ms_to_samples(config.padding_ms);
    let leading = if speech_start >= min_silence {
        speech_start
    } else {
        0
    };
    let trailing = total_samples - speech_end;
    let trailing = if trailing >= min_silence { trailing } else { 0 };

    let floor = 10f64.powf(config.mute_floor_dbfs / 20.0) as f32;
    let min_mute = ms_to_samples(config.min_mute_ms).max(1);
    let mut quiet_sample = |i: usize| quiet_at(i, floor);
    let mut muted_spans = Vec::new();
    let mut i = onset;
    while i <= offset {
        if stats.peak(i) > floor {
            i += 1;
            continue;
        }
        let run_start = i;
        while i <= offset && stats.peak(i) <= floor {
            i += 1;
        }
        // Refine both edges to the sample.
        let mut start = stats.start_sample(run_start);
        while start > speech_start && quiet_sample(start - 1) {
            start -= 1;
        }
        let mut end = stats.start_sample(i).min(speech_end);
        while end < speech_end && quiet_sample(end) {
            end += 1;
        }
        if end - start >= min_mute && start > speech_start && end < speech_end {
            muted_spans.push(MutedSpan {
                start_ms: stats.samples_to_ms(start),
                end_ms: stats.samples_to_ms(end),
            });
        }
    }

    SilenceMap {
        threshold_dbfs,
        leading_silence_ms: stats.samples_to_ms(leading),
        trailing_silence_ms: stats.samples_to_ms(trailing),
        muted_spans,
        speech_ratio,
        noise_floor_dbfs,
        trim_start_frames: leading.saturating_sub(padding) as u64,
        trim_end_frames: trailing.saturating_sub(padding) as u64,
    }
}

/// The level, dBFS, down to which a speech edge extends: [`EDGE_HYSTERESIS_DB`] under the
/// threshold, or [`FLOOR_MARGIN_DB`] above the noise floor where that is higher — never above
/// the threshold itself.
pub fn edge_level(threshold_dbfs: f64, noise_floor_dbfs: Option<f64>) -> f64 {
    let hysteresis = threshold_dbfs - EDGE_HYSTERESIS_DB;
    noise_floor_dbfs
        .map_or(hysteresis, |floor| hysteresis.max(floor + FLOOR_MARGIN_DB))
        .min(threshold_dbfs)
}

/// The recording's noise floor: the [`FLOOR_QUANTILE`] quantile of the levels of its frames
/// that are not muted-quiet (a frame whose peak is above the mute floor); `None` with fewer
/// than [`MIN_FLOOR_FRAMES`] of them.
pub fn noise_floor(stats: &FrameStats, mute_floor_dbfs: f64) -> Option<f64> {
    let mute = 10f64.powf(mute_floor_dbfs / 20.0) as f32;
    // Mean squares (the loudest channel's, as `level_db`), ranked as they are: one logarithm.
    let mut powers: Vec<f32> = (0..stats.frames())
        .filter(|&i| stats.peak(i) > mute)
        .map(|i| stats.loudest_mean_square(i))
        .collect();
    if powers.len() < MIN_FLOOR_FRAMES {
        return None;
    }
    let k = ((powers.len() - 1) as f64 * FLOOR_QUANTILE).round() as usize;
    let (_, floor, _) = powers.select_nth_unstable_by(k, f32::total_cmp);
    Some(ms_to_db(f64::from(*floor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_stop_short_of_the_floor_and_never_above_the_threshold() {
        // Digital silence or a floor far under: 15 dB under the threshold.
        assert_eq!(edge_level(-50.0, None), -65.0);
        assert_eq!(edge_level(-50.0, Some(-75.0)), -65.0);
        // A line's floor: 6 dB above it.
        assert_eq!(edge_level(-42.0, Some(-52.0)), -46.0);
        // A floor at the threshold: the threshold.
        assert_eq!(edge_level(-50.0, Some(-48.0)), -50.0);
    }

    #[test]
    fn the_floor_is_the_quietest_tenth_of_unmuted_frames() {
        let rate = 8000;
        // 100 frames: 20 muted (zero), then levels −60 … −21 dBFS in 1 dB steps, twice.
        let mut plane = vec![0f32; 20 * 80];
        for k in 0..80 {
            let amplitude = 10f32.powf((-60.0 + (k % 40) as f32) / 20.0);
            plane.extend(std::iter::repeat_n(amplitude, 80));
        }
        let stats = FrameStats::compute(&[plane], rate);
        let floor = noise_floor(&stats, -66.0).unwrap();
        // The 10th percentile of the 80 unmuted frames (index 8 of them sorted): −56 dBFS.
        assert!((floor + 56.0).abs() < 0.01, "{floor}");
        // Too few unmuted frames: no floor.
        let short = FrameStats::compute(&[vec![0.01f32; 9 * 80]], rate);
        assert_eq!(noise_floor(&short, -66.0), None);
    }
}
