//! Decoding: bytes → planar f32 frames.
//!
//! WAVE files with PCM, IEEE float or G.711 samples take the fast path: the RIFF/RF64 chunks are
//! parsed in place and samples are converted straight from the input bytes, with no copy of the
//! file and no intermediate buffers. Everything else goes through symphonia. Both paths give the
//! same f32 values for the same samples.
//!
//! Two ways to consume frames: [`Decoder::run`] hands fixed-size planar blocks to a callback
//! (constant memory, for analysis), [`Decoder::decode_all`] fills one buffer per channel.

pub mod access;
mod fallback;
pub mod g711;
pub mod gsm;
pub mod pcm;
pub mod riff;
pub mod warnings;

use crate::error::{EngineError, Result};
use crate::limits::Limits;
use crate::report::Tag;
use crate::source::AudioSource;
use bytes::Bytes;
use fallback::FallbackDecoder;
pub use pcm::SampleEncoding;
use riff::WavLayout;

/// Frames per block handed to a streaming consumer: 4,096 frames of f32 (16 KiB per channel)
/// stay in L1/L2 while every analysis stage reads them.
pub const BLOCK_FRAMES: usize = 4096;

/// Which decoder produced the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderPath {
    /// callrec's own zero-copy WAVE reader.
    FastWav,
    /// callrec's own GSM 06.10 decoder (WAVE format 0x0031).
    Gsm,
    Symphonia,
}

/// What is known about a stream once it is opened.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Container short name: `wav`, `rf64`, `mp3`, `flac`, `ogg`, `isomp4`, …
    pub container: String,
    /// Codec short name: `pcm_s16le`, `pcm_mulaw`, `mp3`, `flac`, `vorbis`, `aac`, …
    pub codec: String,
    /// Hz.
    pub sample_rate: u32,
    /// 0 only until a symphonia codec has decoded its first packet.
    pub channels: u16,
    /// Bits per coded sample where the format has one.
    pub bits_per_sample: Option<u16>,
    /// Frames the container declares (exact for WAVE; a hint elsewhere).
    pub declared_frames: Option<u64>,
    pub tags: Vec<Tag>,
    pub warnings: Vec<String>,
    pub path: DecoderPath,
}

/// A whole stream decoded to memory, one `Vec` per channel.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    pub info: StreamInfo,
    pub planes: Vec<Vec<f32>>,
}

impl DecodedAudio {
    pub fn frames(&self) -> usize {
        self.planes.first().map_or(0, Vec::len)
    }
}

/// An opened stream, ready to decode.
pub enum Decoder {
    Wav {
        bytes: Bytes,
        layout: WavLayout,
        encoding: SampleEncoding,
        info: StreamInfo,
    },
    /// GSM 06.10 in WAVE: `blocks` is the byte range of whole 65-byte blocks, `samples` the
    /// true length (the `fact` chunk's, else every block's 320).
    Gsm {
        bytes: Bytes,
        blocks: std::ops::Range<usize>,
        samples: u64,
        info: StreamInfo,
    },
    Fallback(FallbackDecoder),
}

impl Decoder {
    /// Recognizes the format and reads the headers. Fails fast on anything malformed, before any
    /// sample is decoded.
    pub fn open(source: &AudioSource, limits: &Limits) -> Result<Decoder> {
        source.require_non_empty()?;
        limits.check_input_bytes(source.len())?;
        let bytes = source.bytes();
        if riff::is_wave(bytes) {
            let layout = riff::parse(bytes, limits)?;
            if let Some(encoding) = layout.encoding {
                let info = StreamInfo {
                    container: layout.container.to_string(),
                    codec: encoding.codec_name().to_string(),
                    sample_rate: layout.sample_rate,
                    channels: layout.channels,
                    bits_per_sample: Some(layout.bits_per_sample),
                    declared_frames: Some(layout.frames),
                    tags: layout.tags.clone(),
                    warnings: layout.warnings.clone(),
                    path: DecoderPath::FastWav,
                };
                if layout.frames == 0 {
                    return Err(EngineError::NoAudio("the data chunk holds 0 frames".into()));
                }
                return Ok(Decoder::Wav {
                    bytes: bytes.clone(),
                    layout,
                    encoding,
                    info,
                });
            }
            if layout.format_tag == gsm::FORMAT_TAG {
                return Decoder::open_gsm(bytes, layout, limits);
            }
            if layout.container == "rf64" {
                return Err(EngineError::Unsupported(format!(
                    "RF64 with format tag {:#06x} (only PCM, float and G.711 are read from RF64)",
                    layout.format_tag
                )));
            }
            // A block codec (ADPCM) pads its last block; the fact chunk has the true length.
            let mut fallback = FallbackDecoder::open(source, limits)?;
            if let Some(frames) = layout.fact_frames {
                fallback.limit_frames(frames);
            }
            return Ok(Decoder::Fallback(fallback));
        } else if bytes.len() < 12 && matches!(bytes.get(..4), Some(b"RIFF" | b"RF64")) {
            return Err(EngineError::Truncated {
                what: "RIFF header",
                declared: 12,
                available: bytes.len() as u64,
                missing: 12 - bytes.len() as u64,
            });
        }
        Ok(Decoder::Fallback(FallbackDecoder::open(source, limits)?))
    }

    /// GSM 06.10 blocks, checked: mono, 65-byte blocks, a length within the limits.
    fn open_gsm(bytes: &Bytes, layout: WavLayout, limits: &Limits) -> Result<Decoder> {
        if layout.channels != 1 {
            return Err(EngineError::Unsupported(format!(
                "GSM 06.10 with {} channels (it is mono)",
                layout.channels
            )));
        }
        if layout.block_align != gsm::BLOCK_BYTES {
            return Err(EngineError::Unsupported(format!(
                "GSM 06.10 in {}-byte blocks (WAV49 blocks are {})",
                layout.block_align,
                gsm::BLOCK_BYTES
            )));
        }
        let coded = layout.frames * gsm::BLOCK_SAMPLES as u64;
        let mut warnings = layout.warnings.clone();
        let samples = match layout.fact_frames {
            Some(fact) if fact <= coded => fact,
            Some(fact) => {
                warnings.push(format!(
                    "fact chunk says {fact} samples, the blocks hold {coded}; decoding {coded}"
                ));
                coded
            }
            None => coded,
        };
        if samples == 0 {
            return Err(EngineError::NoAudio(
                "the data chunk holds no GSM block".into(),
            ));
        }
        limits.check_frames(samples, layout.sample_rate)?;
        let info = StreamInfo {
            container: layout.container.to_string(),
            codec: "gsm_ms".into(),
            sample_rate: layout.sample_rate,
            channels: 1,
            bits_per_sample: None,
            declared_frames: Some(samples),
            tags: layout.tags,
            warnings,
            path: DecoderPath::Gsm,
        };
        Ok(Decoder::Gsm {
            bytes: bytes.clone(),
            blocks: layout.data,
            samples,
            info,
        })
    }

    /// Opens `source` with symphonia even where the fast path could read it: for comparing the
    /// two decoders (tests, benchmarks) and as an escape hatch.
    pub fn open_symphonia(source: &AudioSource, limits: &Limits) -> Result<Decoder> {
        source.require_non_empty()?;
        limits.check_input_bytes(source.len())?;
        Ok(Decoder::Fallback(FallbackDecoder::open(source, limits)?))
    }

    pub fn info(&self) -> &StreamInfo {
        match self {
            Decoder::Wav { info, .. } | Decoder::Gsm { info, .. } => info,
            Decoder::Fallback(f) => f.info(),
        }
    }

    /// Decodes the whole stream in blocks of at most [`BLOCK_FRAMES`] frames, calling `sink`
    /// with one slice per channel. Returns the number of frames decoded. Memory stays constant.
    pub fn run(&mut self, sink: &mut dyn FnMut(&[&[f32]]) -> Result<()>) -> Result<u64> {
        match self {
            Decoder::Wav {
                bytes,
                layout,
                encoding,
                ..
            } => {
                let channels = layout.channels as usize;
                let mut planes = vec![vec![0f32; BLOCK_FRAMES]; channels];
                let data = &bytes[layout.data.clone()];
                for block in data.chunks(BLOCK_FRAMES * layout.block_align) {
                    let frames = block.len() / layout.block_align;
                    let mut views: Vec<&mut [f32]> =
                        planes.iter_mut().map(|p| &mut p[..frames]).collect();
                    pcm::convert(*encoding, block, &mut views);
                    let views: Vec<&[f32]> = planes.iter().map(|p| &p[..frames]).collect();
                    sink(&views)?;
                }
                Ok(layout.frames)
            }
            Decoder::Gsm {
                bytes,
                blocks,
                samples,
                ..
            } => {
                // Twelve blocks (3,840 samples) per hand-over: under BLOCK_FRAMES.
                const PER_RUN: usize = BLOCK_FRAMES / gsm::BLOCK_SAMPLES;
                let mut decoder = gsm::GsmDecoder::new();
                let mut pcm = [0i16; gsm::BLOCK_SAMPLES];
                let mut plane = Vec::with_capacity(PER_RUN * gsm::BLOCK_SAMPLES);
                let mut left = *samples as usize;
                for run in bytes[blocks.clone()].chunks(PER_RUN * gsm::BLOCK_BYTES) {
                    plane.clear();
                    for block in run.chunks_exact(gsm::BLOCK_BYTES) {
                        decoder.decode_block(block.try_into().expect("65 bytes"), &mut pcm);
                        let take = left.min(gsm::BLOCK_SAMPLES);
                        plane.extend(pcm[..take].iter().map(|&s| f32::from(s) / 32768.0));
                        left -= take;
                    }
                    if !plane.is_empty() {
                        sink(&[&plane])?;
                    }
                    if left == 0 {
                        break;
                    }
                }
                Ok(*samples)
            }
            Decoder::Fallback(f) => f.run(sink),
        }
    }

    /// Decodes the whole stream into one buffer per channel, bounded by
    /// [`Limits::max_decoded_samples`].
    pub fn decode_all(mut self, limits: &Limits) -> Result<DecodedAudio> {
        match self {
            Decoder::Wav {
                bytes,
                layout,
                encoding,
                info,
            } => {
                let frames = layout.frames as usize;
                limits.check_decoded_samples(layout.frames * layout.channels as u64)?;
                // The frame count comes from the data actually present, so this allocation is
                // bounded by the input's size, never by a header's claim.
                let mut planes = vec![vec![0f32; frames]; layout.channels as usize];
                let mut views: Vec<&mut [f32]> =
                    planes.iter_mut().map(|p| p.as_mut_slice()).collect();
                pcm::convert(encoding, &bytes[layout.data.clone()], &mut views);
                Ok(DecodedAudio { info, planes })
            }
            Decoder::Gsm { samples, .. } => {
                // The length comes from whole blocks present (or a smaller fact), so this
                // allocation is bounded by the input's size.
                limits.check_decoded_samples(samples)?;
                let mut plane = Vec::with_capacity(samples as usize);
                self.run(&mut |block: &[&[f32]]| {
                    plane.extend_from_slice(block[0]);
                    Ok(())
                })?;
                let info = self.info().clone();
                Ok(DecodedAudio {
                    info,
                    planes: vec![plane],
                })
            }
            Decoder::Fallback(_) => {
                let mut planes: Vec<Vec<f32>> = Vec::new();
                let mut total = 0u64;
                let max = limits.max_decoded_samples;
                self.run(&mut |block: &[&[f32]]| {
                    total += (block.len() * block.first().map_or(0, |b| b.len())) as u64;
                    if total > max {
                        return Err(crate::error::LimitError::DecodedSamples {
                            limit: max,
                            actual: total,
                        }
                        .into());
                    }
                    planes.resize_with(block.len(), Vec::new);
                    for (plane, samples) in planes.iter_mut().zip(block) {
                        plane.extend_from_slice(samples);
                    }
                    Ok(())
                })?;
                let info = self.info().clone();
                Ok(DecodedAudio { info, planes })
            }
        }
    }
}

/// Opens and decodes `source` completely: the convenience form of [`Decoder`].
pub fn decode(source: &AudioSource, limits: &Limits) -> Result<DecodedAudio> {
    Decoder::open(source, limits)?.decode_all(limits)
}
