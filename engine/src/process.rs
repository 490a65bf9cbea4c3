//! The processing chain every recording goes through before it is stored:
//!
//! bytes → decode → analysis (levels, loudness, true peak, P.56, silence map, stereo, spectrum)
//! → decisions (gain, trim) → transform (trim, downmix, resample, gain) → encode → report.
//!
//! The decisions are recorded in the report so a later run can replay them exactly
//! ([`Decisions`]), and the same input with the same configuration always gives the same bytes.

use crate::decode::access::{Frames, SpillConfig};
use crate::dsp::frames::FrameStats;
use crate::dsp::gain::{
    DEFAULT_CEILING_DBTP, DEFAULT_MAX_GAIN_DB, DEFAULT_TARGET, GainDecision, LoudnessTarget,
    db_to_linear, decide_gain,
};
use crate::dsp::levels::LevelMeter;
use crate::dsp::loudness::{Loudness, LoudnessMeter};
use crate::dsp::p56::{SpeechLevel, SpeechLevelMeter};
use crate::dsp::resample::StreamResampler;
use crate::dsp::silence::{SilenceConfig, SilenceMap, silence_map_of};
use crate::dsp::spectrum::{SpectrumFacts, spectrum_facts_of};
use crate::dsp::stereo::{StereoFacts, downmix_into, stereo_facts};
use crate::dsp::true_peak::{TruePeak, TruePeakMeter};
use crate::encode::{OutputFormat, StreamEncoder};
use crate::error::{EngineError, Result};
use crate::inspect::{
    InspectOptions, check_duration, describe, full_scale, handed_in, input_digests,
};
use crate::report::Report;
use crate::source::AudioSource;
use serde::Serialize;
use std::io::{Read, Seek, Write};
use std::sync::PoisonError;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Where a compressed input is decoded to (the fast path reads WAV in place).
    pub spill: SpillConfig,
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
            spill: SpillConfig::default(),
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
    /// True peak of the output, dBTP (`null` for silence): measured on the encoded samples (what
    /// a decoder reads back: the 16-bit samples of PCM16 and of lossless FLAC, G.711's
    /// reconstruction levels) when it comes within 1 dB of the ceiling, else the input's true
    /// peak plus the gain (the quantizer moves it by at most 2 LSB, 2/32768 of full scale, for
    /// PCM16/FLAC and 3.2% for G.711).
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

/// Frames per block of the analysis and render passes: 256 Ki frames (1 MiB of f32 per
/// channel) stay in the L2/L3 caches while every meter reads them. Measured on 1,000 one-minute
/// calls: 64 Ki-frame blocks cost 8% more time, most of it the K-weighting's carry-over between
/// its SIMD lanes (a few sub-blocks computed serially at every push). A multiple of
/// [`crate::decode::BLOCK_FRAMES`], so the level meter sees the blocks it always saw.
const PASS_FRAMES: usize = 64 * crate::decode::BLOCK_FRAMES;

/// One block of samples around a position, for the few single samples the silence map reads.
struct SampleCache<'a> {
    input: &'a Frames,
    start: usize,
    len: usize,
    planes: Vec<Vec<f32>>,
    error: Option<EngineError>,
}

impl<'a> SampleCache<'a> {
    const FRAMES: usize = crate::decode::BLOCK_FRAMES;

    fn new(input: &'a Frames) -> Self {
        SampleCache {
            input,
            start: 0,
            len: 0,
            planes: vec![vec![0f32; Self::FRAMES]; input.channels()],
            error: None,
        }
    }

    /// Whether every channel's |sample i| is at most `floor` (`false` once a read failed).
    fn quiet(&mut self, i: usize, floor: f32) -> bool {
        if i < self.start || i >= self.start + self.len {
            self.start = i / Self::FRAMES * Self::FRAMES;
            self.len = Self::FRAMES.min(self.input.frames() - self.start);
            if let Err(e) = self.input.read(self.start, self.len, &mut self.planes) {
                self.error.get_or_insert(e);
                self.len = 0;
                return false;
            }
            self.input.release_behind(self.start + self.len);
        }
        self.planes.iter().all(|p| p[i - self.start].abs() <= floor)
    }
}

/// The input's digests: computed before decoding, or being computed as the analysis reads.
enum InputHash {
    Done(crate::checksum::Digests),
    Running(Box<crate::checksum::DigestState>),
}

/// A writer that hashes and counts what goes through it.
struct Hashing<'a> {
    out: &'a mut (dyn Write + Send),
    digests: crate::checksum::DigestState,
}

impl Hashing<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.digests.update(bytes);
        Ok(())
    }
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

/// Runs the whole chain on one input, the output in memory.
pub fn process(source: &AudioSource, config: &ProcessConfig) -> Result<Processed> {
    // The usual output (WAV at the input's rate) is about the input's size: reserved once
    // rather than grown by copies (a hint, capped; the Vec still grows past it if need be).
    let mut audio = Vec::with_capacity(source.len().min(64 << 20) as usize);
    let report = process_into(source, config, &mut audio)?;
    Ok(Processed { audio, report })
}

/// Runs the whole chain on one input, writing the output to `out` as it is encoded.
///
/// Two passes over the input, block by block ([`PASS_FRAMES`]): the analysis feeds every meter
/// from one block before the next; the decisions are made from the report; the render pass
/// reads the input again and writes trim → downmix → resample → gain → quantize → encode
/// straight to `out` (a mixed or resampled signal is rendered once more before, for its true
/// peak). For WAV (PCM, float, G.711) input nothing the size of the recording is held: the
/// input is read in place ([`Frames`]), the per-10 ms frame statistics (8 bytes per frame and
/// channel) are the largest thing kept. Compressed input is decoded once into a bounded spill.
/// A FLAC output is encoded frame by frame too; its frames wait in a bounded spool until the
/// header, which holds facts of them all, has been written.
pub fn process_into(
    source: &AudioSource,
    config: &ProcessConfig,
    out: &mut (dyn Write + Send),
) -> Result<ProcessReport> {
    // The input's digests: before anything else when they are to be checked (a wrong file fails
    // first, as in `inspect`); otherwise, for the fast path, block by block in the analysis pass
    // (beside the meters, on another core where there is one).
    // Digests handed in with the source are taken as they are (and checked when expected).
    let checked = !config.input.expected_checksums.is_empty();
    let early = if checked || handed_in(source, &config.input).is_some() {
        Some(input_digests(source, &config.input)?)
    } else {
        source.require_non_empty()?;
        config.input.limits.check_input_bytes(source.len())?;
        None
    };
    let input = Frames::open(source, &config.input.limits, &config.spill)?;
    let mut hasher = match early {
        Some(digests) => InputHash::Done(digests),
        None if config.input.compute_md5 => {
            InputHash::Running(Box::new(crate::checksum::DigestState::with_md5()))
        }
        None => InputHash::Running(Box::default()),
    };
    let bytes = source.bytes();
    // Everything before the first block's bytes (all of it when the frames are not read in
    // place), then each block's, then what follows the last.
    let data = input.byte_range(0..input.frames());
    let head = data.as_ref().map_or(bytes.len(), |d| d.start);
    if let InputHash::Running(hasher) = &mut hasher {
        for start in (0..head).step_by(4 << 20) {
            let end = (start + (4 << 20)).min(head);
            hasher.update(&bytes[start..end]);
            source.release(start..end);
        }
    }
    let info = input.info.clone();
    let rate = info.sample_rate;
    let frames = input.frames();
    let channels = input.channels();
    if channels == 0 {
        return Err(EngineError::NoAudio("no channel was decoded".into()));
    }
    check_duration(frames as u64, rate, &config.input)?;

    // --- Analysis: one pass, every meter fed from each block before the next. ----------------
    let mut level_meter = LevelMeter::new(channels, rate, full_scale(&info));
    let mut loudness_meter = LoudnessMeter::new(channels, rate);
    let mut peak_meter = TruePeakMeter::new(channels, rate);
    let mut speech_meters: Vec<SpeechLevelMeter> =
        (0..channels).map(|_| SpeechLevelMeter::new(rate)).collect();
    let mut stats = FrameStats::streaming(channels, rate);
    // Two halves of about equal cost (an hour at 8 kHz, one core: K-weighting + true peak
    // ~120 ms; P.56 + frame statistics + level meter ~75 ms, and the hash ~35 ms as a task of
    // its own for whichever core is free first). A half another core takes converts the block
    // for itself from the input's bytes, which nobody writes: reading the samples this core has
    // just written would move their cache lines between the cores twice a block (measured: the
    // shared conversion took 55 ms an hour on two cores against 10–18 ms on one). A half that
    // stays on this core runs after the first and reads its conversion.
    let mut block = vec![Vec::new(); channels];
    let mut other_block = vec![Vec::new(); channels];
    for start in (0..frames).step_by(PASS_FRAMES) {
        let len = PASS_FRAMES.min(frames - start);
        let hashed = input.byte_range(start..start + len);
        // The worker the first half runs on (set by it: a call from outside the pool is run
        // inside it).
        let here = AtomicUsize::new(usize::MAX);
        let converted = std::sync::Mutex::new(&mut block);
        let (near, far) = rayon::join(
            || -> Result<()> {
                let mut block = converted.lock().unwrap_or_else(PoisonError::into_inner);
                here.store(
                    rayon::current_thread_index().unwrap_or(usize::MAX - 1),
                    Ordering::Relaxed,
                );
                let views = input.view(start, len, &mut block)?;
                loudness_meter.push(&views);
                peak_meter.push(&views);
                Ok(())
            },
            || -> Result<()> {
                let (measured, ()) = rayon::join(
                    || -> Result<()> {
                        // The first half's block, if it ran here and is done with it (a half
                        // waiting inside a nested join holds the lock: then convert anew).
                        let reused = (rayon::current_thread_index()
                            == Some(here.load(Ordering::Relaxed)))
                        .then(|| converted.try_lock().ok())
                        .flatten();
                        let views = match &reused {
                            Some(block) => input.viewed(start, len, block),
                            None => input.view(start, len, &mut other_block)?,
                        };
                        for (meter, samples) in speech_meters.iter_mut().zip(&views) {
                            meter.push(samples);
                        }
                        stats.push(&views);
                        for piece in (0..len).step_by(crate::decode::BLOCK_FRAMES) {
                            let end = (piece + crate::decode::BLOCK_FRAMES).min(len);
                            let pieces: Vec<&[f32]> =
                                views.iter().map(|v| &v[piece..end]).collect();
                            level_meter.push(&pieces);
                        }
                        Ok(())
                    },
                    || {
                        if let (InputHash::Running(hasher), Some(range)) = (&mut hasher, hashed) {
                            hasher.update(&bytes[range]);
                        }
                    },
                );
                measured
            },
        );
        near?;
        far?;
        input.release_behind(start + len);
    }
    let digests = match hasher {
        InputHash::Done(digests) => digests,
        InputHash::Running(mut hasher) => {
            if let Some(data) = &data {
                for start in (data.end..bytes.len()).step_by(4 << 20) {
                    let end = (start + (4 << 20)).min(bytes.len());
                    hasher.update(&bytes[start..end]);
                }
            }
            hasher.finish()
        }
    };
    let speech_channels: Vec<Option<SpeechLevel>> =
        speech_meters.iter().map(SpeechLevelMeter::finish).collect();
    let speech_level = speech_channels
        .iter()
        .flatten()
        .map(|s| s.active_level_dbov)
        .reduce(f64::max);
    let loudness = loudness_meter.finish();
    let true_peak = peak_meter.finish();
    let stats = stats.finish();
    let mut cache = SampleCache::new(&input);
    let silence = silence_map_of(
        frames,
        &mut |i, floor| cache.quiet(i, floor),
        &stats,
        speech_level,
        &config.silence,
    );
    if let Some(e) = cache.error {
        return Err(e);
    }
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
    let is_speech = stats.louder_than(silence.threshold_dbfs);
    let speech_frames: Vec<bool> = (0..stats.frames()).map(is_speech).collect();
    let mut muted_frames = vec![false; stats.frames()];
    for span in &silence.muted_spans {
        let first = (span.start_ms / 10.0).floor() as usize;
        let last = ((span.end_ms / 10.0).ceil() as usize).min(muted_frames.len());
        muted_frames[first.min(last)..last].fill(true);
    }
    // The spectrum reads its windows (a bounded number) of the mono mix.
    let mut read_error = None;
    let mut planes = vec![Vec::new(); channels];
    let spectrum = spectrum_facts_of(
        frames,
        &mut |start, mono| {
            match input.view(start, mono.len(), &mut planes) {
                Err(e) => {
                    read_error.get_or_insert(e);
                    mono.fill(0.0);
                }
                Ok(views) if channels == 1 => mono.copy_from_slice(views[0]),
                Ok(views) => downmix_into(&views, mono),
            }
            input.release_behind(start + mono.len());
        },
        rate,
        &stats,
        &speech_frames,
        &muted_frames,
        speech_level,
    );
    if let Some(e) = read_error {
        return Err(e);
    }
    drop(planes);
    input.release_all();
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

    // --- Render. --------------------------------------------------------------------------------
    let end = frames.saturating_sub(trim_end).max(trim_start);
    let mixing = downmix_wanted && channels > 1;
    let out_channels = if mixing { 1 } else { channels };
    // Reads the kept frames block by block, mixed down where asked: `f(block)`.
    let mut mix = vec![0f32; if mixing { PASS_FRAMES } else { 0 }];
    let mut render = |f: &mut dyn FnMut(&[&[f32]]) -> Result<()>| -> Result<()> {
        for start in (trim_start..end).step_by(PASS_FRAMES) {
            let len = PASS_FRAMES.min(end - start);
            let views = input.view(start, len, &mut block)?;
            if mixing {
                downmix_into(&views, &mut mix[..len]);
                f(&[&mix[..len]])?;
            } else {
                f(&views)?;
            }
            input.release_behind(start + len);
        }
        Ok(())
    };
    let headroom = quantization_headroom(format, config.ceiling_dbtp);
    let decide = |peak_before_gain: Option<f64>| match replay {
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
    // The output's true peak is the peak before gain, plus the gain, plus what quantization adds
    // (at most `headroom`, which the gain cap already left free). Within VERIFY_MARGIN_DB of the
    // ceiling it is measured on the encoded output as well; further below, the bound alone
    // proves the ceiling holds and the second true-peak pass is skipped.
    let verifies = |predicted: Option<f64>| {
        predicted.is_some_and(|p| p + headroom > config.ceiling_dbtp - VERIFY_MARGIN_DB)
    };
    let mut sink = Hashing {
        out,
        digests: crate::checksum::DigestState::new(),
    };
    let resampling = output_rate != rate;
    // The kept frames at the output's rate, block by block (resampled as they stream).
    let mut render_out = |f: &mut dyn FnMut(&[&[f32]]) -> Result<()>| -> Result<()> {
        match StreamResampler::new(out_channels, rate, output_rate)? {
            None => render(f),
            Some(mut resampler) => {
                render(&mut |b| resampler.push(b, f))?;
                resampler.finish(f)
            }
        }
    };
    // The ceiling applies to what is written: re-measure a mix or a resampled signal.
    let peak_before_gain = if mixing || resampling {
        let mut meter = TruePeakMeter::new(out_channels, output_rate);
        render_out(&mut |b| {
            meter.push(b);
            Ok(())
        })?;
        meter.finish().max_dbtp
    } else {
        true_peak.max_dbtp
    };
    let gain = decide(peak_before_gain);
    let predicted = peak_before_gain.map(|p| p + gain.gain_db);
    let verify = verifies(predicted);
    let kept = (end - trim_start) as u64;
    let out_frames = match StreamResampler::new(out_channels, rate, output_rate)? {
        Some(resampler) => resampler.output_len(kept) as usize,
        None => kept as usize,
    };
    let (mut encoder, header) =
        StreamEncoder::start(format, out_channels, output_rate, out_frames as u64)?;
    sink.write(&header)?;
    // FLAC's header, which holds facts of every frame, comes last from the encoder and goes
    // first in the output: the frames wait in a spool (memory up to a quarter of the spill
    // budget, 4 MiB by default — seven minutes of 8 kHz speech —, then a temporary file) and
    // are hashed as they are copied out behind it.
    let spool_memory = config.spill.memory_bytes / 4;
    let mut spool = (format == OutputFormat::Flac).then(|| match &config.spill.dir {
        Some(dir) => tempfile::spooled_tempfile_in(spool_memory, dir),
        None => tempfile::spooled_tempfile(spool_memory),
    });
    let direct = spool.is_none();
    let linear = db_to_linear(gain.gain_db);
    let mut output_meter = TruePeakMeter::new(out_channels, output_rate);
    // The core that has just read a block encodes it and writes the block before; the hash
    // of that one (the slowest, SHA-256) is a task for the other core.
    let (mut ready, mut next) = (Vec::new(), Vec::new());
    render_out(&mut |b| {
        let Hashing { out, digests } = &mut sink;
        let (written, ()) = rayon::join(
            || {
                encoder.encode_into(b, linear, verify, &mut next)?;
                if verify {
                    output_meter.push(&encoder.decoded());
                }
                match &mut spool {
                    Some(spool) => spool.write_all(&ready)?,
                    None => out.write_all(&ready)?,
                }
                Ok::<_, EngineError>(())
            },
            || {
                if direct {
                    digests.update(&ready)
                }
            },
        );
        written?;
        std::mem::swap(&mut ready, &mut next);
        Ok(())
    })?;
    let flac_header = encoder.finish(&mut next)?;
    match (spool, flac_header) {
        (Some(mut spool), Some(header)) => {
            spool.write_all(&ready)?;
            spool.write_all(&next)?;
            sink.write(&header)?;
            spool.seek(std::io::SeekFrom::Start(0))?;
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = spool.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                sink.write(&chunk[..n])?;
            }
        }
        _ => {
            sink.write(&ready)?;
            sink.write(&next)?;
        }
    }
    let output_peak = if verify {
        output_meter.finish().max_dbtp
    } else {
        predicted
    };

    // --- Output facts. -----------------------------------------------------------------------
    let out_digests = sink.digests.finish();
    let output = OutputFacts {
        format,
        content_type: format.content_type().to_string(),
        codec: format.codec_name().to_string(),
        sample_rate: output_rate,
        channels: out_channels as u16,
        frames: out_frames as u64,
        duration_ms: out_frames as f64 * 1000.0 / output_rate as f64,
        bytes: out_digests.bytes,
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
        downmix: mixing,
        output_rate,
        format,
    };
    Ok(ProcessReport {
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
    })
}
