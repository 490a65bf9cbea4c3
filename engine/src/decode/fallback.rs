//! Every format the fast path does not take (MP3, FLAC, Vorbis, AAC/M4A, ADPCM WAV, …) goes
//! through symphonia, reading the same `Bytes` through a cursor (no copy of the file).
//!
//! symphonia is robust, but a decoder bug on hostile input must not take the process down: every
//! call into it runs under `catch_unwind` and a panic becomes [`EngineError::Decoder`].

use super::{DecoderPath, StreamInfo};
use crate::error::{EngineError, Result};
use crate::limits::Limits;
use crate::report::Tag;
use crate::source::AudioSource;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

/// After this many consecutive read errors the stream is given up as unreadable.
const MAX_CONSECUTIVE_READ_ERRORS: u32 = 64;

pub struct FallbackDecoder {
    format: Box<dyn FormatReader + 'static>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    info: StreamInfo,
    limits: Limits,
    /// Frames to keep at most (from a WAVE `fact` chunk); decoded frames past it are padding.
    max_frames: Option<u64>,
}

fn run_guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => Err(EngineError::Decoder(format!(
            "symphonia panicked while {what}: {}",
            crate::error::panic_message(panic.as_ref())
        ))),
    }
}

fn map_open_error(err: SymError) -> EngineError {
    match err {
        SymError::Unsupported(what) if what.contains("probe") || what.contains("format") => {
            EngineError::UnknownFormat("no audio container or stream recognized".into())
        }
        SymError::Unsupported(what) => EngineError::Unsupported(what.into()),
        SymError::DecodeError(what) => EngineError::Malformed {
            container: "stream",
            reason: what.into(),
        },
        SymError::LimitError(what) => EngineError::Malformed {
            container: "stream",
            reason: format!("decoder limit reached: {what}"),
        },
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            EngineError::UnknownFormat("input ended before any audio stream was recognized".into())
        }
        SymError::IoError(e) => EngineError::Io(e),
        other => EngineError::Decoder(other.to_string()),
    }
}

impl FallbackDecoder {
    pub fn open(source: &AudioSource, limits: &Limits) -> Result<Self> {
        run_guarded("probing", || Self::open_inner(source, limits))
    }

    fn open_inner(source: &AudioSource, limits: &Limits) -> Result<Self> {
        let cursor = Cursor::new(source.bytes().clone());
        let mss = MediaSourceStream::new(Box::new(cursor), MediaSourceStreamOptions::default());
        let mut hint = Hint::new();
        if let Some(ext) = source.hint() {
            hint.with_extension(ext);
        }
        let mut format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(map_open_error)?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| EngineError::NoAudio("the container has no audio track".into()))?;
        let track_id = track.id;
        let declared_frames = track.num_frames;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| EngineError::NoAudio("the track has no audio codec parameters".into()))?
            .clone();
        let sample_rate = params
            .sample_rate
            .ok_or_else(|| EngineError::malformed("stream", "no sample rate"))?;
        if sample_rate == 0 {
            return Err(EngineError::malformed("stream", "sample rate 0 Hz"));
        }
        let channels = params
            .channels
            .as_ref()
            .map(|c| c.count() as u32)
            .unwrap_or(0);
        limits.check_shape(sample_rate, channels)?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|e| match e {
                SymError::Unsupported(what) => EngineError::Unsupported(format!("codec: {what}")),
                other => map_open_error(other),
            })?;

        let mut tags = Vec::new();
        if let Some(revision) = format.metadata().skip_to_latest() {
            for tag in revision.media.tags.iter().take(limits.max_tags) {
                let key = match &tag.std {
                    Some(std) => format!("{std:?}")
                        .split('(')
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase(),
                    None => tag.raw.key.clone(),
                };
                let value: String = tag.raw.value.to_string().chars().take(1024).collect();
                tags.push(Tag { key, value });
            }
        }

        let info = StreamInfo {
            container: match format.format_info().short_name {
                "wave" => "wav".to_string(),
                name => name.to_string(),
            },
            codec: decoder.codec_info().short_name.to_string(),
            sample_rate,
            channels: channels as u16,
            bits_per_sample: params.bits_per_sample.map(|b| b as u16),
            declared_frames,
            tags,
            warnings: Vec::new(),
            path: DecoderPath::Symphonia,
        };
        Ok(FallbackDecoder {
            format,
            decoder,
            track_id,
            info,
            limits: limits.clone(),
            max_frames: None,
        })
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// Keeps only the first `frames` frames: the container's stated length, when decoding pads.
    pub fn limit_frames(&mut self, frames: u64) {
        self.max_frames = Some(frames);
        self.info.declared_frames = Some(frames);
    }

    /// Decodes every packet, handing planar f32 blocks to `sink`. Returns the frames decoded.
    pub fn run(&mut self, sink: &mut dyn FnMut(&[&[f32]]) -> Result<()>) -> Result<u64> {
        run_guarded("decoding", || self.run_inner(sink))
    }

    fn run_inner(&mut self, sink: &mut dyn FnMut(&[&[f32]]) -> Result<()>) -> Result<u64> {
        let mut planes: Vec<Vec<f32>> = Vec::new();
        let mut frames_total = 0u64;
        let mut packets = 0u64;
        let mut corrupt = 0u64;
        let mut first_error: Option<String> = None;
        let mut consecutive_read_errors = 0u32;
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => {
                    consecutive_read_errors = 0;
                    packet
                }
                Ok(None) => break,
                Err(SymError::ResetRequired) => {
                    self.info
                        .warnings
                        .push("stream changed parameters mid-way; decoding stopped there".into());
                    break;
                }
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    if frames_total > 0 {
                        self.info
                            .warnings
                            .push("the last packet is incomplete".into());
                    }
                    break;
                }
                Err(SymError::DecodeError(what)) => {
                    corrupt += 1;
                    first_error.get_or_insert_with(|| what.to_string());
                    consecutive_read_errors += 1;
                    if consecutive_read_errors >= MAX_CONSECUTIVE_READ_ERRORS {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(map_open_error(e)),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            packets += 1;
            let buffer = match self.decoder.decode(&packet) {
                Ok(buffer) => buffer,
                Err(SymError::DecodeError(what)) => {
                    corrupt += 1;
                    first_error.get_or_insert_with(|| what.to_string());
                    continue;
                }
                Err(SymError::IoError(e)) => {
                    corrupt += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                    continue;
                }
                Err(e) => return Err(map_open_error(e)),
            };
            let mut frames = buffer.frames();
            if let Some(max) = self.max_frames {
                frames = frames.min(max.saturating_sub(frames_total) as usize);
            }
            if frames == 0 {
                continue;
            }
            let channels = buffer.spec().channels().count();
            if self.info.channels == 0 {
                // Some codecs only know their layout after the first packet.
                self.limits
                    .check_shape(self.info.sample_rate, channels as u32)?;
                self.info.channels = channels as u16;
            } else if channels != self.info.channels as usize {
                return Err(EngineError::Unsupported(format!(
                    "channel count changed mid-stream from {} to {channels}",
                    self.info.channels
                )));
            }
            if buffer.spec().rate() != self.info.sample_rate {
                return Err(EngineError::Unsupported(
                    "sample rate changed mid-stream".into(),
                ));
            }
            frames_total += frames as u64;
            self.limits
                .check_frames(frames_total, self.info.sample_rate)?;
            planes.resize_with(channels, Vec::new);
            for plane in &mut planes {
                plane.resize(frames, 0.0);
            }
            let mut views: Vec<&mut [f32]> = planes.iter_mut().map(|p| &mut p[..frames]).collect();
            if frames == buffer.frames() {
                buffer.copy_to_slice_planar::<f32, &mut [f32]>(&mut views);
            } else {
                buffer
                    .slice(..frames)
                    .copy_to_slice_planar::<f32, &mut [f32]>(&mut views);
            }
            let views: Vec<&[f32]> = planes.iter().map(|p| &p[..frames]).collect();
            sink(&views)?;
        }
        if corrupt > 0 {
            return Err(EngineError::CorruptFrames {
                corrupt_packets: corrupt,
                total_packets: packets.max(corrupt),
                first_error: first_error.unwrap_or_default(),
            });
        }
        if frames_total == 0 {
            return Err(EngineError::NoAudio(
                "the stream decoded to 0 frames".into(),
            ));
        }
        Ok(frames_total)
    }
}
