//! Encoding the processed audio: WAV PCM16 (default), G.711 μ-law and A-law WAV, and FLAC
//! (lossless, about half the size of PCM16) through the `flacenc` crate.
//!
//! Every path goes through one quantizer, [`to_i16`]: gain, clamp to the 16-bit range, round to
//! nearest-even. The same f32 input always gives the same bytes.

use crate::error::{EngineError, Result};
use serde::Serialize;
use std::str::FromStr;

/// The output container and codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// WAV, 16-bit PCM.
    Wav,
    /// WAV, G.711 μ-law (8 bits per sample).
    Ulaw,
    /// WAV, G.711 A-law.
    Alaw,
    /// FLAC, 16-bit.
    Flac,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Flac => "flac",
            _ => "wav",
        }
    }

    /// The codec's short name, as the decoders report it.
    pub fn codec_name(self) -> &'static str {
        match self {
            OutputFormat::Wav => "pcm_s16le",
            OutputFormat::Ulaw => "pcm_mulaw",
            OutputFormat::Alaw => "pcm_alaw",
            OutputFormat::Flac => "flac",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Flac => "audio/flac",
            _ => "audio/wav",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "wav" | "pcm16" => Ok(OutputFormat::Wav),
            "ulaw" | "mulaw" | "u-law" => Ok(OutputFormat::Ulaw),
            "alaw" | "a-law" => Ok(OutputFormat::Alaw),
            "flac" => Ok(OutputFormat::Flac),
            other => Err(format!("unknown format {other:?}: wav, ulaw, alaw or flac")),
        }
    }
}

/// Scales by `gain`, clamps to [−32768, 32767] and rounds to nearest-even, sample by sample
/// (the dispatched [`crate::simd::Kernels::quantize_i16`]; no library call for the rounding).
pub fn to_i16(samples: &[f32], gain: f32, out: &mut [i16]) {
    (crate::simd::kernels().quantize_i16)(samples, gain, out)
}

/// Interleaves planar channels into 16-bit samples with `gain` applied.
pub fn interleave_i16<P: AsRef<[f32]>>(planes: &[P], gain: f32) -> Vec<i16> {
    let channels = planes.len();
    let frames = planes.first().map_or(0, |p| p.as_ref().len());
    let mut out = vec![0i16; frames * channels];
    if channels == 1 {
        to_i16(planes[0].as_ref(), gain, &mut out);
        return out;
    }
    let mut scratch = vec![0i16; frames];
    for (c, plane) in planes.iter().enumerate() {
        to_i16(plane.as_ref(), gain, &mut scratch);
        for (frame, &s) in scratch.iter().enumerate() {
            out[frame * channels + c] = s;
        }
    }
    out
}

/// G.711 μ-law encoding of a 16-bit sample (ITU-T G.711 segment rule, bias 0x84).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let sign: u8 = if sample < 0 { 0x80 } else { 0 };
    let magnitude = (sample as i32).unsigned_abs().min(32_635) + 0x84;
    // Segment: the position of the highest set bit above bit 7 (0..=7).
    let segment = (31 - magnitude.leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (magnitude >> (segment + 3)) & 0x0F;
    !(sign | (segment << 4) as u8 | mantissa as u8)
}

/// G.711 A-law encoding of a 16-bit sample (13-bit magnitude, even bits inverted).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, sample as i32)
    } else {
        (0x00, -(sample as i32) - 1)
    };
    let magnitude = (magnitude.min(0x7FFF) >> 3) as u32; // 0..=4095
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        // Segment 1..=7: magnitude in [32·2^(s−1), 32·2^s).
        let segment = (31 - magnitude.leading_zeros()) - 4;
        ((segment << 4) | ((magnitude >> segment) & 0x0F)) as u8
    };
    (sign | code) ^ 0x55
}

/// Encodes planar f32 audio (gain applied) in `format`.
/// Planes may be owned or borrowed (`Vec<f32>`, `&[f32]`), so trimmed input is encoded in place.
pub fn encode<P: AsRef<[f32]>>(
    planes: &[P],
    rate: u32,
    gain: f32,
    format: OutputFormat,
) -> Result<Vec<u8>> {
    let channels = planes.len();
    if channels == 0 || channels > u16::MAX as usize {
        return Err(EngineError::Unsupported(format!(
            "encoding {channels} channels"
        )));
    }
    let samples = interleave_i16(planes, gain);
    match format {
        OutputFormat::Wav => wav_file(
            1,
            16,
            channels as u16,
            rate,
            samples.len() * 2,
            None,
            |out| {
                for (bytes, s) in out.chunks_exact_mut(2).zip(&samples) {
                    bytes.copy_from_slice(&s.to_le_bytes());
                }
            },
        ),
        OutputFormat::Ulaw | OutputFormat::Alaw => {
            let (tag, law): (u16, fn(i16) -> u8) = if format == OutputFormat::Ulaw {
                (7, linear_to_ulaw)
            } else {
                (6, linear_to_alaw)
            };
            wav_file(
                tag,
                8,
                channels as u16,
                rate,
                samples.len(),
                Some((samples.len() / channels) as u32),
                |out| {
                    for (byte, &s) in out.iter_mut().zip(&samples) {
                        *byte = law(s);
                    }
                },
            )
        }
        OutputFormat::Flac => flac(&samples, channels, rate),
    }
}

/// A canonical RIFF/WAVE file: fmt (16 bytes for PCM, 18 with cbSize = 0 otherwise), a fact
/// chunk for non-PCM formats, data (`data_bytes` long, written in place by `write_data`).
fn wav_file(
    tag: u16,
    bits: u16,
    channels: u16,
    rate: u32,
    data_bytes: usize,
    fact_frames: Option<u32>,
    write_data: impl FnOnce(&mut [u8]),
) -> Result<Vec<u8>> {
    let mut out = wav_header(tag, bits, channels, rate, data_bytes, fact_frames)?;
    let start = out.len();
    out.resize(start + data_bytes, 0);
    write_data(&mut out[start..]);
    if data_bytes & 1 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// The header of [`wav_file`]: everything before the data chunk's bytes.
fn wav_header(
    tag: u16,
    bits: u16,
    channels: u16,
    rate: u32,
    data_bytes: usize,
    fact_frames: Option<u32>,
) -> Result<Vec<u8>> {
    let data_len = u32::try_from(data_bytes)
        .ok()
        .filter(|&n| n <= u32::MAX - 64)
        .ok_or_else(|| EngineError::Unsupported("output over 4 GiB does not fit in RIFF".into()))?;
    let block_align = channels * bits / 8;
    let fmt_len: u32 = if tag == 1 { 16 } else { 18 };
    let fact_len: u32 = if fact_frames.is_some() { 12 } else { 0 };
    let riff_len = 4 + (8 + fmt_len) + fact_len + 8 + data_len + (data_len & 1);
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&riff_len.to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&fmt_len.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * block_align as u32).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    if tag != 1 {
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    if let Some(frames) = fact_frames {
        out.extend_from_slice(b"fact");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&frames.to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    Ok(out)
}

/// An output encoded block by block, with nothing the size of the recording held. The bytes are
/// those of [`encode`] on the whole audio.
///
/// - WAV (PCM16, μ-law, A-law): the header comes from [`StreamEncoder::start`] (so the length
///   must be known), then each block's bytes as it comes, then [`StreamEncoder::finish`]'s pad
///   byte.
/// - FLAC: each block yields the FLAC frames it completes (4,096 samples a channel); `finish`
///   encodes the last, short one and gives the header, which goes *before* every frame: its
///   STREAMINFO holds the smallest and largest frame sizes and the MD5 of the samples, known
///   only at the end. The caller keeps the frames aside (a spool) until then.
pub struct StreamEncoder {
    flac: Option<Box<FlacFrames>>,
    law: Option<fn(i16) -> u8>,
    table: Option<&'static [f32; 256]>,
    channels: usize,
    odd: bool,
    quantized: Vec<i16>,
    interleaved: Vec<i16>,
    /// Per channel, what a decoder reads back from the last block (when asked for).
    decoded: Vec<Vec<f32>>,
}

impl StreamEncoder {
    /// The stream for `frames` frames of `channels` channels at `rate`, and the bytes that
    /// start the output (a WAV header; nothing for FLAC, whose header comes from `finish`).
    pub fn start(
        format: OutputFormat,
        channels: usize,
        rate: u32,
        frames: u64,
    ) -> Result<(StreamEncoder, Vec<u8>)> {
        use crate::decode::g711::{ALAW_TO_F32, ULAW_TO_F32};
        if channels == 0 || channels > u16::MAX as usize {
            return Err(EngineError::Unsupported(format!(
                "encoding {channels} channels"
            )));
        }
        let samples = usize::try_from(frames * channels as u64).map_err(|_| {
            EngineError::Unsupported("output over 4 GiB does not fit in RIFF".into())
        })?;
        type Law = Option<(fn(i16) -> u8, &'static [f32; 256])>;
        let (header, law, flac): (_, Law, _) = match format {
            OutputFormat::Wav => (
                wav_header(1, 16, channels as u16, rate, samples * 2, None)?,
                None,
                None,
            ),
            OutputFormat::Ulaw | OutputFormat::Alaw => {
                let frames = u32::try_from(frames).map_err(|_| {
                    EngineError::Unsupported("output over 4 GiB does not fit in RIFF".into())
                })?;
                let (tag, law, table): (u16, fn(i16) -> u8, &'static [f32; 256]) =
                    if format == OutputFormat::Ulaw {
                        (7, linear_to_ulaw, &ULAW_TO_F32)
                    } else {
                        (6, linear_to_alaw, &ALAW_TO_F32)
                    };
                (
                    wav_header(tag, 8, channels as u16, rate, samples, Some(frames))?,
                    Some((law, table)),
                    None,
                )
            }
            OutputFormat::Flac => (
                Vec::new(),
                None,
                Some(Box::new(FlacFrames::new(channels, rate)?)),
            ),
        };
        let (law, table) = (law.map(|l| l.0), law.map(|l| l.1));
        let odd = law.is_some() && samples & 1 == 1;
        Ok((
            StreamEncoder {
                flac,
                law,
                table,
                channels,
                odd,
                quantized: Vec::new(),
                interleaved: Vec::new(),
                decoded: vec![Vec::new(); channels],
            },
            header,
        ))
    }

    /// Encodes the next block (a slice per channel) with `gain` into `bytes` (cleared first):
    /// the bytes that follow the previous block's (for FLAC, the frames this block completes).
    /// With `decode`, [`StreamEncoder::decoded`] then holds what a decoder reads back from this
    /// block's samples. The caller may write one block's bytes while the next is encoded.
    pub fn encode_into(
        &mut self,
        planes: &[&[f32]],
        gain: f32,
        decode: bool,
        bytes: &mut Vec<u8>,
    ) -> Result<()> {
        let frames = planes.first().map_or(0, |p| p.len());
        let channels = self.channels;
        self.interleaved.resize(frames * channels, 0);
        for (c, plane) in planes.iter().enumerate() {
            if channels == 1 {
                to_i16(plane, gain, &mut self.interleaved);
            } else {
                self.quantized.resize(frames, 0);
                to_i16(plane, gain, &mut self.quantized);
                for (frame, &s) in self.quantized.iter().enumerate() {
                    self.interleaved[frame * channels + c] = s;
                }
            }
        }
        match (&mut self.flac, self.law) {
            (Some(flac), _) => flac.push(&self.interleaved, bytes)?,
            (None, None) => {
                bytes.resize(self.interleaved.len() * 2, 0);
                for (out, s) in bytes.chunks_exact_mut(2).zip(&self.interleaved) {
                    out.copy_from_slice(&s.to_le_bytes());
                }
            }
            (None, Some(law)) => {
                bytes.resize(self.interleaved.len(), 0);
                for (out, &s) in bytes.iter_mut().zip(&self.interleaved) {
                    *out = law(s);
                }
            }
        }
        if decode {
            for (c, out) in self.decoded.iter_mut().enumerate() {
                out.clear();
                match (self.law, self.table) {
                    (Some(_), Some(table)) => out.extend(
                        bytes[c..]
                            .iter()
                            .step_by(channels)
                            .map(|&code| table[code as usize]),
                    ),
                    _ => out.extend(
                        self.interleaved[c..]
                            .iter()
                            .step_by(channels)
                            .map(|&s| s as f32 * (1.0 / 32_768.0)),
                    ),
                }
            }
        }
        Ok(())
    }

    /// What a decoder reads back from the last block, per channel.
    pub fn decoded(&self) -> Vec<&[f32]> {
        self.decoded.iter().map(Vec::as_slice).collect()
    }

    /// Ends the stream: `bytes` (cleared first) gets what follows the last block (RIFF's pad
    /// byte for an odd-length data chunk; FLAC's last, short frame). For FLAC, the header comes
    /// back too: it goes before all the frames.
    pub fn finish(&mut self, bytes: &mut Vec<u8>) -> Result<Option<Vec<u8>>> {
        bytes.clear();
        match &mut self.flac {
            Some(flac) => flac.finish(bytes).map(Some),
            None => {
                if self.odd {
                    bytes.push(0);
                }
                Ok(None)
            }
        }
    }
}

/// flacenc's encoder as the whole-file [`flac`] configures it: single-threaded (files are
/// already encoded in parallel, one per worker), default block size and search.
fn flac_config() -> Result<flacenc::error::Verified<flacenc::config::Encoder>> {
    use flacenc::error::Verify;
    let mut config = flacenc::config::Encoder::default();
    config.multithread = false;
    config
        .into_verified()
        .map_err(|e| EngineError::Decoder(format!("FLAC config: {e:?}")))
}

/// FLAC frames made as the samples come, as `flacenc::encode_with_fixed_block_size` makes
/// them from a whole buffer: every `block_size` samples a channel become one frame (the same
/// function encodes it), the last frame takes what is left, and STREAMINFO gathers the frame
/// sizes and the samples' MD5 on the way.
///
/// The frames a block completes are encoded side by side on the rayon pool (each depends only
/// on its own samples; flacenc's LPC search is most of the cost of a FLAC output) and written in
/// order; the MD5 runs beside them.
struct FlacFrames {
    frame: FrameEncoder,
    /// Holds no frames: its STREAMINFO gets the frame sizes, the MD5 and the sample count at
    /// the end (the block sizes are the configured one from the start: RFC 9639 leaves the
    /// short last block out of the minimum).
    stream: flacenc::component::Stream,
    /// The smallest and largest frame so far, bytes.
    frame_bytes: Option<(usize, usize)>,
    /// The MD5 of the samples, 16-bit little-endian interleaved (flacenc's `Context` hashes the
    /// same bytes two at a time).
    md5: md5::Md5,
    /// Interleaved samples not yet a whole frame.
    pending: Vec<i16>,
    frames: usize,
    samples: usize,
    channels: usize,
    block: usize,
}

/// What encoding one frame needs; shared by the frames encoded side by side.
struct FrameEncoder {
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    /// STREAMINFO as it starts (a frame reads only its rate, channels and sample size).
    info: flacenc::component::StreamInfo,
    /// An empty frame buffer of the stream's shape, cloned for each worker.
    framebuf: flacenc::source::FrameBuf,
    /// Interleaved samples in a whole frame.
    whole: usize,
}

impl FlacFrames {
    fn new(channels: usize, rate: u32) -> Result<FlacFrames> {
        use md5::Digest;
        let config = flac_config()?;
        let block = config.block_size;
        let invalid = |e: flacenc::error::VerifyError| {
            EngineError::Unsupported(format!("FLAC of {channels} channels at {rate} Hz: {e}"))
        };
        let mut stream =
            flacenc::component::Stream::new(rate as usize, channels, 16).map_err(invalid)?;
        stream
            .stream_info_mut()
            .set_block_sizes(block, block)
            .map_err(invalid)?;
        Ok(FlacFrames {
            frame: FrameEncoder {
                info: stream.stream_info().clone(),
                framebuf: flacenc::source::FrameBuf::with_size(channels, block).map_err(invalid)?,
                config,
                whole: block * channels,
            },
            frame_bytes: None,
            md5: md5::Md5::new(),
            pending: Vec::with_capacity(block * channels),
            frames: 0,
            samples: 0,
            stream,
            channels,
            block,
        })
    }

    /// Takes interleaved samples; appends the frames they complete to `bytes` (cleared first).
    fn push(&mut self, samples: &[i16], bytes: &mut Vec<u8>) -> Result<()> {
        use md5::Digest;
        bytes.clear();
        self.samples += samples.len();
        let whole = self.frame.whole;
        // The frame begun in an earlier block first, then whole frames straight from `samples`;
        // what is left begins the next.
        let mut rest = samples;
        if !self.pending.is_empty() {
            let take = (whole - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        let (full, tail) = rest.split_at(rest.len() / whole * whole);
        let begun = (self.pending.len() == whole).then_some(self.pending.as_slice());
        let frames: Vec<&[i16]> = begun.into_iter().chain(full.chunks(whole)).collect();
        let (encoded, ()) = rayon::join(
            || self.frame.frames(&frames, self.frames),
            || {
                let mut le = [0u8; 8192];
                for chunk in samples.chunks(le.len() / 2) {
                    for (out, s) in le.chunks_exact_mut(2).zip(chunk) {
                        out.copy_from_slice(&s.to_le_bytes());
                    }
                    self.md5.update(&le[..chunk.len() * 2]);
                }
            },
        );
        let encoded = encoded?;
        if begun.is_some() {
            self.pending.clear();
        }
        self.pending.extend_from_slice(tail);
        self.append(encoded, bytes);
        Ok(())
    }

    /// Appends encoded frames to `bytes`, in order, and counts them.
    fn append(&mut self, frames: Vec<Vec<u8>>, bytes: &mut Vec<u8>) {
        for frame in frames {
            let (min, max) = self.frame_bytes.unwrap_or((usize::MAX, 0));
            self.frame_bytes = Some((min.min(frame.len()), max.max(frame.len())));
            bytes.extend_from_slice(&frame);
            self.frames += 1;
        }
    }

    /// Encodes the last frame into `bytes`; returns the header (`fLaC` and STREAMINFO).
    fn finish(&mut self, bytes: &mut Vec<u8>) -> Result<Vec<u8>> {
        use flacenc::component::BitRepr;
        use md5::Digest;
        if !self.pending.is_empty() {
            let mut framebuf = self.frame.framebuf.clone();
            let last =
                self.frame
                    .one(&mut framebuf, &mut Vec::new(), &self.pending, self.frames)?;
            self.append(vec![last], bytes);
            self.pending.clear();
        }
        let md5: [u8; 16] = std::mem::take(&mut self.md5).finalize().into();
        let total = self.samples / self.channels;
        let info = self.stream.stream_info_mut();
        info.set_md5_digest(&md5);
        info.set_total_samples(total);
        if let Some((min, max)) = self.frame_bytes {
            info.set_frame_sizes(min, max).map_err(|e| {
                EngineError::Unsupported(format!("FLAC frames of {min} to {max} bytes: {e}"))
            })?;
        }
        let mut sink = flacenc::bitsink::ByteSink::new();
        self.stream
            .write(&mut sink)
            .map_err(|e| EngineError::Decoder(format!("FLAC writing: {e:?}")))?;
        let mut header = sink.into_inner();
        fix_min_block_size(&mut header, self.block);
        Ok(header)
    }
}

impl FrameEncoder {
    /// Frames of interleaved samples, numbered from `first`, encoded side by side.
    fn frames(&self, frames: &[&[i16]], first: usize) -> Result<Vec<Vec<u8>>> {
        use rayon::prelude::*;
        frames
            .par_iter()
            .enumerate()
            .map_init(
                || (self.framebuf.clone(), Vec::with_capacity(self.whole)),
                |(framebuf, wide), (i, frame)| self.one(framebuf, wide, frame, first + i),
            )
            .collect()
    }

    /// The bytes of one frame of `samples` (interleaved: a whole frame, or the short last one).
    /// `wide` is scratch for the samples as flacenc takes them.
    fn one(
        &self,
        framebuf: &mut flacenc::source::FrameBuf,
        wide: &mut Vec<i32>,
        samples: &[i16],
        number: usize,
    ) -> Result<Vec<u8>> {
        use flacenc::component::BitRepr;
        use flacenc::source::Fill;
        let failed = |what: &str, e: &dyn std::fmt::Debug| {
            EngineError::Decoder(format!("FLAC {what}: {e:?}"))
        };
        wide.clear();
        wide.extend(samples.iter().map(|&s| i32::from(s)));
        framebuf
            .fill_interleaved(wide)
            .map_err(|e| failed("samples", &e))?;
        let frame = flacenc::encode_fixed_size_frame(&self.config, framebuf, number, &self.info)
            .map_err(|e| failed("encoding", &e))?;
        let mut sink = flacenc::bitsink::ByteSink::with_capacity(frame.count_bits());
        frame.write(&mut sink).map_err(|e| failed("writing", &e))?;
        Ok(sink.into_inner())
    }
}

/// flacenc 0.5.1 records the short last block in STREAMINFO's minimum block size; RFC 9639
/// excludes the last block, and symphonia rejects such a stream. Every block but the last has
/// the configured size, so that is the minimum. STREAMINFO follows "fLaC" and its 4-byte block
/// header: the minimum block size is bytes 8–9 (big-endian).
fn fix_min_block_size(bytes: &mut [u8], block: usize) {
    if bytes.len() >= 10 && &bytes[..4] == b"fLaC" && bytes[4] & 0x7F == 0 {
        let block = u16::try_from(block).unwrap_or(u16::MAX);
        bytes[8..10].copy_from_slice(&block.to_be_bytes());
    }
}

fn flac(samples: &[i16], channels: usize, rate: u32) -> Result<Vec<u8>> {
    use flacenc::component::BitRepr;
    let wide: Vec<i32> = samples.iter().map(|&s| s as i32).collect();
    let config = flac_config()?;
    let source = flacenc::source::MemSource::from_samples(&wide, channels, 16, rate as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| EngineError::Decoder(format!("FLAC encoding: {e:?}")))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| EngineError::Decoder(format!("FLAC writing: {e:?}")))?;
    let mut bytes = sink.as_slice().to_vec();
    fix_min_block_size(&mut bytes, config.block_size);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::g711::{ALAW_TO_I16, ULAW_TO_I16};
    use crate::{AudioSource, Limits, decode};

    #[test]
    fn rounding_is_nearest_even_and_clamped() {
        let input = [
            0.0,
            0.5 / 32768.0,
            1.5 / 32768.0,
            -0.5 / 32768.0,
            2.0,
            -2.0,
            32767.4 / 32768.0,
        ];
        let mut out = [0i16; 7];
        to_i16(&input, 1.0, &mut out);
        assert_eq!(out, [0, 0, 2, 0, 32767, -32768, 32767]);
    }

    #[test]
    fn g711_encoders_round_trip_every_codeword() {
        // Encoding a codeword's own reconstruction value must give the codeword back (both zero
        // codes of μ-law decode to 0; the encoder picks the positive one).
        for code in 0..=255u8 {
            let u = linear_to_ulaw(ULAW_TO_I16[code as usize]);
            assert!(
                u == code || (ULAW_TO_I16[code as usize] == 0 && u == 0xFF),
                "μ-law {code:#04x} → {u:#04x}"
            );
            assert_eq!(
                linear_to_alaw(ALAW_TO_I16[code as usize]),
                code,
                "A-law {code:#04x}"
            );
        }
        // Monotone over the whole 16-bit range.
        let mut last = i32::MIN;
        for s in i16::MIN..=i16::MAX {
            let v = ALAW_TO_I16[linear_to_alaw(s) as usize] as i32;
            assert!(v >= last);
            last = v;
        }
    }

    const FORMATS: [OutputFormat; 4] = [
        OutputFormat::Wav,
        OutputFormat::Ulaw,
        OutputFormat::Alaw,
        OutputFormat::Flac,
    ];

    /// A sine per channel, each `offset` samples behind the one before, `step` radians a sample.
    fn tones(
        channels: usize,
        frames: usize,
        amplitude: f32,
        offset: f32,
        step: f32,
    ) -> Vec<Vec<f32>> {
        (0..channels)
            .map(|c| {
                (0..frames)
                    .map(|i| amplitude * ((i as f32 + c as f32 * offset) * step).sin())
                    .collect()
            })
            .collect()
    }

    /// Block by block, in any block sizes, the stream gives [`encode`]'s bytes: FLAC's header
    /// (frame sizes, MD5, sample count) put first, frames split across blocks, a short last
    /// frame or none; and `decoded` gives back what a decoder reads from them.
    #[test]
    fn streamed_bytes_are_the_whole_encoding() {
        for channels in [1, 2] {
            for frames in [0, 1, 4095, 4096, 4097, 3 * 4096, 10_000] {
                let planes = tones(channels, frames, 0.7, 11.0, 0.013);
                for format in FORMATS {
                    let whole = encode(&planes, 8000, 0.9, format).unwrap();
                    let read_back = (frames > 0).then(|| {
                        decode(&AudioSource::from_bytes(whole.clone()), &Limits::default())
                            .unwrap()
                            .planes
                    });
                    for step in [7, 1000, 4096, 5000, frames.max(1)] {
                        let (mut encoder, mut out) =
                            StreamEncoder::start(format, channels, 8000, frames as u64).unwrap();
                        let mut decoded = vec![Vec::new(); channels];
                        let mut frames_out = Vec::new();
                        let mut bytes = Vec::new();
                        for start in (0..frames).step_by(step) {
                            let end = (start + step).min(frames);
                            let block: Vec<&[f32]> =
                                planes.iter().map(|p| &p[start..end]).collect();
                            encoder.encode_into(&block, 0.9, true, &mut bytes).unwrap();
                            frames_out.extend_from_slice(&bytes);
                            for (all, part) in decoded.iter_mut().zip(encoder.decoded()) {
                                all.extend_from_slice(part);
                            }
                        }
                        let header = encoder.finish(&mut bytes).unwrap();
                        frames_out.extend_from_slice(&bytes);
                        assert_eq!(header.is_some(), format == OutputFormat::Flac);
                        out.extend(header.unwrap_or_default());
                        out.extend(frames_out);
                        assert!(
                            out == whole,
                            "{format:?}, {channels} ch, {frames} frames, blocks of {step}"
                        );
                        if let Some(read_back) = &read_back {
                            assert_eq!(&decoded, read_back, "{format:?}, {frames}, {step}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_format_decodes_back() {
        // One short FLAC block, and several blocks with a short last one.
        for frames in [4000, 10_000] {
            round_trip(frames);
        }
    }

    fn round_trip(frames: usize) {
        let rate = 8000;
        let planes = tones(2, frames, 0.3, 7.0, 0.05);
        for format in FORMATS {
            let bytes = encode(&planes, rate, 1.0, format).unwrap();
            let decoded = decode(&AudioSource::from_bytes(bytes), &Limits::default()).unwrap();
            assert_eq!(decoded.info.sample_rate, rate);
            assert_eq!(decoded.planes.len(), 2);
            assert_eq!(decoded.frames(), frames, "{format:?}");
            let tolerance = if matches!(format, OutputFormat::Wav | OutputFormat::Flac) {
                1.0 / 32768.0
            } else {
                0.02
            };
            for (a, b) in planes.iter().flatten().zip(decoded.planes.iter().flatten()) {
                assert!((a - b).abs() <= tolerance, "{format:?}: {a} vs {b}");
            }
        }
        // PCM16 and FLAC carry the same samples.
        let wav = decode(
            &AudioSource::from_bytes(encode(&planes, rate, 1.0, OutputFormat::Wav).unwrap()),
            &Limits::default(),
        )
        .unwrap();
        let flac = decode(
            &AudioSource::from_bytes(encode(&planes, rate, 1.0, OutputFormat::Flac).unwrap()),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(wav.planes, flac.planes);
    }
}
