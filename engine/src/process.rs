//! The processing chain every recording goes through before it is stored:
//!
//! bytes → decode → analysis (levels, loudness, true peak, P.56, silence map, stereo, spectrum)
//! → decisions (gain, trim) → transform (trim, downmix, resample, gain) → encode → report.
//!
//! The decisions are recorded in the report so a later run can replay them exactly
//! ([`Decisions`]), and the same input with the same configuration always gives the same bytes.

use crate::checksum::Digests;
use crate::decode::Decoder;
use crate::dsp::frames::FrameStats;
use crate::dsp::gain::{
    DEFAULT_CEILING_DBTP, DEFAULT_MAX_GAIN_DB, DEFAULT_TARGET, GainDecision, LoudnessTarget,
    db_to_linear, decide_gain,
};
use crate::dsp::levels::LevelMeter;
use crate::dsp::loudness::{Loudness, LoudnessMeter};
use crate::dsp::p56::{SpeechLevel, SpeechLevelMeter};
use crate::dsp::resample;
use crate::dsp::silence::{SilenceConfig, SilenceMap, silence_map};
use crate::dsp::spectrum::{SpectrumFacts, spectrum_facts};
use crate::dsp::stereo::{StereoFacts, downmix, stereo_facts};
use crate::dsp::true_peak::{TruePeak, TruePeakMeter};
use crate::encode::{OutputFormat, encode};
use crate::error::Result;
use crate::inspect::{InspectOptions, check_duration, describe, full_scale, input_digests};
use crate::report::Report;
use crate::source::AudioSource;
use serde::Serialize;

/// How to process. [`ProcessConfig::default`] gives the documented defaults for speech.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Limits and the checks on the input (expected checksums, expected duration).
    pub input: InspectOptions,
    /// Normalize to this; `None` leaves the level alone. Default −26 dBov.
    pub target: Option<LoudnessTarget>,
    /// The true peak of the output stays at or under this, dBTP. Default −1.
    pub ceiling_dbtp: f64,
    /// The gain never exceeds this, dB. Default +20.
    pub max_gain_db: f64,
    /// Remove leading and trailing silence (keeping the padding). Default off.
    pub trim: bool,
    pub silence: SilenceConfig,
    /// Resample the output to this rate, Hz. Default: keep the input's rate.
    pub resample_hz: Option<u32>,
    /// Mix all channels down to mono. Default off.
    pub downmix: bool,
    /// Default WAV PCM16.
    pub format: OutputFormat,
    /// Apply these recorded decisions (gain, trim, downmix, rate, format) instead of deciding
    /// again: the output of a replay is bit-identical to the recorded run's whatever the
    /// analysis says on this machine. The analysis still runs, for the report.
    pub replay: Option<Decisions>,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            input: InspectOptions::new(),
            target: Some(DEFAULT_TARGET),
            ceiling_dbtp: DEFAULT_CEILING_DBTP,
            max_gain_db: DEFAULT_MAX_GAIN_DB,
            trim: false,
            silence: SilenceConfig::default(),
            resample_hz: None,
            downmix: false,
            format: OutputFormat::Wav,
            replay: None,
        }
    }
}

/// Active speech level of each channel, and the level used for decisions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeechFacts {
    /// P.56 per channel; `null` for a channel without speech.
    pub channels: Vec<Option<SpeechLevel>>,
    /// The loudest channel's active level: the level normalization and the silence threshold
    /// use (in a two-party call, the louder party reaches the target).
    pub level_dbov: Option<f64>,
}

/// Everything measured on the input.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub loudness: Loudness,
    pub true_peak: TruePeak,
    pub speech: SpeechFacts,
    pub silence: SilenceMap,
    /// For two or more channels.
    pub stereo: Option<StereoFacts>,
    pub spectrum: SpectrumFacts,
}

/// What was done, in enough detail to do it again bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Decisions {
    pub gain: GainDecision,
    /// Input frames removed at the start and at the end (0 when not trimming).
    pub trim_start_frames: u64,
    pub trim_end_frames: u64,
    /// The same in ms: output time t corresponds to input time t + `trim_start_ms`.
    pub trim_start_ms: f64,
    pub trim_end_ms: f64,
    pub downmix: bool,
    pub output_rate: u32,
    pub format: OutputFormat,
}

/// The produced audio.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct OutputFacts {
    pub format: OutputFormat,
    pub content_type: String,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub frames: u64,
    pub duration_ms: f64,
    pub bytes: u64,
    pub sha256: String,
    /// Base64 big-endian CRC32C, as S3 reports it.
    pub crc32c: String,
    /// True peak of the output, dBTP (`null` for silence): measured on the encoded bytes when
    /// it comes within 1 dB of the ceiling, else the input's true peak plus the gain (the
    /// quantizer moves it by at most 2 LSB, 2/32768 of full scale, for PCM16/FLAC and 3.2% for
    /// G.711).
    pub true_peak_dbtp: Option<f64>,
    /// Whether `true_peak_dbtp` was measured on the encoded output.
    pub true_peak_measured: bool,
}

/// The full report of one processed recording.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    /// callrec-engine's version: decisions replay exactly within one version.
    pub engine_version: &'static str,
    pub input: Report,
    pub analysis: Analysis,
    pub decisions: Decisions,
    pub output: OutputFacts,
}

/// Processed audio and its report.
#[derive(Debug, Clone)]
pub struct Processed {
    pub audio: Vec<u8>,
    pub report: ProcessReport,
}

/// Feeds `planes` to `f` in blocks of [`crate::decode::BLOCK_FRAMES`].
fn for_each_block(planes: &[Vec<f32>], mut f: impl FnMut(&[&[f32]])) {
    let frames = planes.first().map_or(0, Vec::len);
    let mut block: Vec<&[f32]> = Vec::with_capacity(planes.len());
    for start in (0..frames).step_by(crate::decode::BLOCK_FRAMES) {
        let end = (start + crate::decode::BLOCK_FRAMES).min(frames);
        block.clear();
        block.extend(planes.iter().map(|p| &p[start..end]));
        f(&block);
    }
}

fn true_peak_of<P: AsRef<[f32]>>(planes: &[P], rate: u32) -> TruePeak {
    let mut meter = TruePeakMeter::new(planes.len(), rate);
    let whole: Vec<&[f32]> = planes.iter().map(AsRef::as_ref).collect();
    meter.push(&whole);
    meter.finish()
}

/// How close to the ceiling (dB) the predicted output peak must come before the encoded output
/// is measured again.
const VERIFY_MARGIN_DB: f64 = 1.0;

/// Quantization can raise peaks: 16-bit rounding by at most about one LSB after interpolation,
/// G.711 by up to 3.2% of the value at the top of its largest segment. The gain cap leaves this
/// much room so the encoded output, not just the float signal, stays under the ceiling.
fn quantization_headroom(format: OutputFormat, ceiling_dbtp: f64) -> f64 {
    match format {
        OutputFormat::Ulaw | OutputFormat::Alaw => 20.0 * (1.0f64 + 1.0 / 31.0).log10(),
        OutputFormat::Wav | OutputFormat::Flac => {
            let ceiling = 10f64.powf(ceiling_dbtp / 20.0);
            20.0 * (ceiling / (ceiling - 2.0 / 32768.0)).log10()
        }
    }
}

/// Runs the whole chain on one input.
pub fn process(source: &AudioSource, config: &ProcessConfig) -> Result<Processed> {
    let digests = input_digests(source, &config.input)?;
    let decoded = Decoder::open(source, &config.input.limits)?.decode_all(&config.input.limits)?;
    let info = decoded.info.clone();
    let rate = info.sample_rate;
    let planes = decoded.planes;
    let frames = planes.first().map_or(0, Vec::len);
    check_duration(frames as u64, rate, &config.input)?;

    // --- Analysis: one pass of the streaming meters, then the frame-based stages. ------------
    let channels = planes.len();
    let mut level_meter = LevelMeter::new(channels, rate, full_scale(&info));
    let mut loudness_meter = LoudnessMeter::new(channels, rate);
    let mut peak_meter = TruePeakMeter::new(channels, rate);
    let mut speech_meters: Vec<SpeechLevelMeter> =
        (0..channels).map(|_| SpeechLevelMeter::new(rate)).collect();
    // The loudness, true-peak and speech meters take the whole recording at once: the first two
    // split it across SIMD lanes and rayon's threads (a long call uses every core).
    let whole: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
    loudness_meter.push(&whole);
    peak_meter.push(&whole);
    for (meter, samples) in speech_meters.iter_mut().zip(&whole) {
        meter.push(samples);
    }
    for_each_block(&planes, |block| level_meter.push(block));
    let speech_channels: Vec<Option<SpeechLevel>> =
        speech_meters.iter().map(SpeechLevelMeter::finish).collect();
    let speech_level = speech_channels
        .iter()
        .flatten()
        .map(|s| s.active_level_dbov)
        .reduce(f64::max);
    let loudness = loudness_meter.finish();
    let true_peak = peak_meter.finish();
    let stats = FrameStats::compute(&planes, rate);
    let silence = silence_map(&planes, &stats, speech_level, &config.silence);
    let stereo = (channels >= 2).then(|| {
        let thresholds: Vec<f64> = speech_channels
            .iter()
            .map(|s| {
                s.map_or(silence.threshold_dbfs, |s| {
                    (s.active_level_dbov - 25.0).max(-70.0)
                })
            })
            .collect();
        stereo_facts(&stats, &thresholds)
    });
    let mono = if channels == 1 {
        None
    } else {
        Some(downmix(&planes))
    };
    let speech_frames: Vec<bool> = (0..stats.frames())
        .map(|i| stats.level_db(i) > silence.threshold_dbfs)
        .collect();
    let mut muted_frames = vec![false; stats.frames()];
    for span in &silence.muted_spans {
        let first = (span.start_ms / 10.0).floor() as usize;
        let last = ((span.end_ms / 10.0).ceil() as usize).min(muted_frames.len());
        muted_frames[first.min(last)..last].fill(true);
    }
    let spectrum = spectrum_facts(
        mono.as_deref().unwrap_or(&planes[0]),
        rate,
        &stats,
        &speech_frames,
        &muted_frames,
        speech_level,
    );
    let input_report = describe(source, &info, frames as u64, level_meter.finish(), &digests);

    // --- Decisions. -----------------------------------------------------------------------------
    let replay = config.replay.as_ref();
    let (trim_start, trim_end) = match replay {
        Some(d) => (
            (d.trim_start_frames as usize).min(frames),
            (d.trim_end_frames as usize).min(frames),
        ),
        None if config.trim => (
            silence.trim_start_frames as usize,
            silence.trim_end_frames as usize,
        ),
        None => (0, 0),
    };
    let output_rate = replay.map_or(config.resample_hz.unwrap_or(rate), |d| d.output_rate);
    let downmix_wanted = replay.map_or(config.downmix, |d| d.downmix);
    let format = replay.map_or(config.format, |d| d.format);

    // --- Transform. ---------------------------------------------------------------------------
    let end = frames.saturating_sub(trim_end).max(trim_start);
    // Trimming borrows the decoded planes; only a downmix or a resampling makes new ones.
    let mix: Option<Vec<f32>> =
        (downmix_wanted && channels > 1).then(|| mono.unwrap_or_else(|| downmix(&planes)));
    let trimmed: Vec<&[f32]> = match &mix {
        Some(mix) => vec![&mix[trim_start..end]],
        None => planes.iter().map(|p| &p[trim_start..end]).collect(),
    };
    let resampled = if output_rate != rate {
        let owned: Vec<Vec<f32>> = trimmed.iter().map(|p| p.to_vec()).collect();
        Some(resample::resample(&owned, rate, output_rate)?)
    } else {
        None
    };
    let out: Vec<&[f32]> = match &resampled {
        Some(planes) => planes.iter().map(Vec::as_slice).collect(),
        None => trimmed,
    };
    // The ceiling applies to what is written: re-measure when the signal changed shape.
    let changed_shape = output_rate != rate || (downmix_wanted && channels > 1);
    let peak_before_gain = if changed_shape {
        true_peak_of(&out, output_rate).max_dbtp
    } else {
        true_peak.max_dbtp
    };
    let headroom = quantization_headroom(format, config.ceiling_dbtp);
    let gain = match replay {
        Some(d) => d.gain.clone(),
        None => decide_gain(
            config.target,
            loudness.integrated_lufs,
            speech_level,
            peak_before_gain,
            config.ceiling_dbtp - headroom,
            config.max_gain_db,
        ),
    };
    let audio = encode(&out, output_rate, db_to_linear(gain.gain_db), format)?;

    // --- Output facts. -----------------------------------------------------------------------
    // The output's true peak is the peak before gain, plus the gain, plus what quantization adds
    // (at most `headroom`, which the gain cap already left free). Within VERIFY_MARGIN_DB of the
    // ceiling it is measured on the encoded bytes as well; further below, the bound alone proves
    // the ceiling holds and the second true-peak pass is skipped.
    let predicted_peak = peak_before_gain.map(|p| p + gain.gain_db);
    let verify =
        predicted_peak.is_some_and(|p| p + headroom > config.ceiling_dbtp - VERIFY_MARGIN_DB);
    let output_peak = if verify {
        let encoded = crate::decode::decode(
            &AudioSource::from_bytes(audio.clone()),
            &config.input.limits,
        )?;
        true_peak_of(&encoded.planes, output_rate).max_dbtp
    } else {
        predicted_peak
    };
    let out_frames = out.first().map_or(0, |p| p.len());
    let out_digests = Digests::compute(&audio);
    let output = OutputFacts {
        format,
        content_type: format.content_type().to_string(),
        codec: format.codec_name().to_string(),
        sample_rate: output_rate,
        channels: out.len() as u16,
        frames: out_frames as u64,
        duration_ms: out_frames as f64 * 1000.0 / output_rate as f64,
        bytes: audio.len() as u64,
        sha256: out_digests.sha256_hex(),
        crc32c: out_digests.crc32c_base64(),
        true_peak_dbtp: output_peak,
        true_peak_measured: verify,
    };
    let decisions = Decisions {
        gain,
        trim_start_frames: trim_start as u64,
        trim_end_frames: (frames - end) as u64,
        trim_start_ms: trim_start as f64 * 1000.0 / rate as f64,
        trim_end_ms: (frames - end) as f64 * 1000.0 / rate as f64,
        downmix: downmix_wanted && channels > 1,
        output_rate,
        format,
    };
    let report = ProcessReport {
        engine_version: env!("CARGO_PKG_VERSION"),
        input: input_report,
        analysis: Analysis {
            loudness,
            true_peak,
            speech: SpeechFacts {
                channels: speech_channels,
                level_dbov: speech_level,
            },
            silence,
            stereo,
            spectrum,
        },
        decisions,
        output,
    };
    Ok(Processed { audio, report })
}
