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

/// A WAV output (PCM16, μ-law or A-law) encoded block by block: the header first (so the
/// length must be known), then each block as it comes, then [`WavStream::trailer`]. The bytes
/// are those of [`encode`] on the whole audio.
pub struct WavStream {
    law: Option<fn(i16) -> u8>,
    table: Option<&'static [f32; 256]>,
    channels: usize,
    odd: bool,
    quantized: Vec<i16>,
    interleaved: Vec<i16>,
    bytes: Vec<u8>,
    /// Per channel, what a decoder reads back from the last block (when asked for).
    decoded: Vec<Vec<f32>>,
}

impl WavStream {
    /// The stream for `frames` frames of `channels` channels at `rate`, and its header.
    /// `None` for a format that is not WAV.
    pub fn start(
        format: OutputFormat,
        channels: usize,
        rate: u32,
        frames: u64,
    ) -> Result<Option<(WavStream, Vec<u8>)>> {
        use crate::decode::g711::{ALAW_TO_F32, ULAW_TO_F32};
        if channels == 0 || channels > u16::MAX as usize {
            return Err(EngineError::Unsupported(format!(
                "encoding {channels} channels"
            )));
        }
        let samples = usize::try_from(frames * channels as u64).map_err(|_| {
            EngineError::Unsupported("output over 4 GiB does not fit in RIFF".into())
        })?;
        type Law = Option<fn(i16) -> u8>;
        let (header, law, table): (_, Law, _) = match format {
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
                    Some(law),
                    Some(table),
                )
            }
            OutputFormat::Flac => return Ok(None),
        };
        let odd = law.is_some() && samples & 1 == 1;
        Ok(Some((
            WavStream {
                law,
                table,
                channels,
                odd,
                quantized: Vec::new(),
                interleaved: Vec::new(),
                bytes: Vec::new(),
                decoded: vec![Vec::new(); channels],
            },
            header,
        )))
    }

    /// Encodes the next block (a slice per channel) with `gain`: the bytes to write. With
    /// `decode`, [`WavStream::decoded`] then holds what a decoder reads back from them.
    pub fn encode(&mut self, planes: &[&[f32]], gain: f32, decode: bool) -> &[u8] {
        let mut bytes = std::mem::take(&mut self.bytes);
        self.encode_into(planes, gain, decode, &mut bytes);
        self.bytes = bytes;
        &self.bytes
    }

    /// [`WavStream::encode`] into `bytes` (cleared first): the caller may write one block's bytes
    /// while the next is encoded.
    pub fn encode_into(&mut self, planes: &[&[f32]], gain: f32, decode: bool, bytes: &mut Vec<u8>) {
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
        match self.law {
            None => {
                bytes.resize(self.interleaved.len() * 2, 0);
                for (out, s) in bytes.chunks_exact_mut(2).zip(&self.interleaved) {
                    out.copy_from_slice(&s.to_le_bytes());
                }
            }
            Some(law) => {
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
    }

    /// What a decoder reads back from the last block, per channel.
    pub fn decoded(&self) -> Vec<&[f32]> {
        self.decoded.iter().map(Vec::as_slice).collect()
    }

    /// The bytes after the last block: RIFF's pad byte for an odd-length data chunk.
    pub fn trailer(&self) -> &'static [u8] {
        if self.odd { &[0] } else { &[] }
    }
}

fn flac(samples: &[i16], channels: usize, rate: u32) -> Result<Vec<u8>> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let wide: Vec<i32> = samples.iter().map(|&s| s as i32).collect();
    let mut config = flacenc::config::Encoder::default();
    // Files are already encoded in parallel, one per worker.
    config.multithread = false;
    let config = config
        .into_verified()
        .map_err(|e| EngineError::Decoder(format!("FLAC config: {e:?}")))?;
    let source = flacenc::source::MemSource::from_samples(&wide, channels, 16, rate as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| EngineError::Decoder(format!("FLAC encoding: {e:?}")))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| EngineError::Decoder(format!("FLAC writing: {e:?}")))?;
    let mut bytes = sink.as_slice().to_vec();
    // flacenc 0.5.1 records the short last block in STREAMINFO's minimum block size; RFC 9639
    // excludes the last block, and symphonia rejects such a stream. Every block but the last has
    // the configured size, so that is the minimum. STREAMINFO follows "fLaC" and its 4-byte
    // block header: the minimum block size is bytes 8–9 (big-endian).
    if bytes.len() >= 10 && &bytes[..4] == b"fLaC" && bytes[4] & 0x7F == 0 {
        let block = u16::try_from(config.block_size).unwrap_or(u16::MAX);
        bytes[8..10].copy_from_slice(&block.to_be_bytes());
    }
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

    #[test]
    fn every_format_decodes_back() {
        // One short FLAC block, and several blocks with a short last one.
        for frames in [4000, 10_000] {
            round_trip(frames);
        }
    }

    fn round_trip(frames: usize) {
        let rate = 8000;
        let planes: Vec<Vec<f32>> = (0..2)
            .map(|c| {
                (0..frames)
                    .map(|i| 0.3 * ((i as f32 + c as f32 * 7.0) * 0.05).sin())
                    .collect()
            })
            .collect();
        for format in [
            OutputFormat::Wav,
            OutputFormat::Ulaw,
            OutputFormat::Alaw,
            OutputFormat::Flac,
        ] {
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
