//! RIFF / RF64 WAVE parsing for the fast path: find `fmt ` and `data`, read LIST/INFO tags,
//! skip everything else. Nothing here allocates by a size field: sizes are checked against the
//! bytes actually present before they are used, and the samples stay where they are.

use super::pcm::SampleEncoding;
use crate::error::{EngineError, Result};
use crate::limits::Limits;
use crate::report::Tag;
use std::ops::Range;

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// The tail shared by every KSDATAFORMAT_SUBTYPE GUID after its leading format tag.
const SUBTYPE_GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];
/// Longest tag value kept, in characters.
const MAX_TAG_CHARS: usize = 1024;

/// Whether the bytes start like a WAVE file (RIFF, RF64 or BW64).
pub fn is_wave(bytes: &[u8]) -> bool {
    bytes.len() >= 12
        && matches!(&bytes[0..4], b"RIFF" | b"RF64" | b"BW64")
        && &bytes[8..12] == b"WAVE"
}

/// Where the samples of a WAVE file are and how to read them.
#[derive(Debug, Clone)]
pub struct WavLayout {
    /// `"wav"` or `"rf64"`.
    pub container: &'static str,
    /// The fmt chunk's format tag (the sub-format's for EXTENSIBLE).
    pub format_tag: u16,
    pub extensible: bool,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    /// Bytes per frame (all channels).
    pub block_align: usize,
    /// Byte range of whole frames inside the input.
    pub data: Range<usize>,
    pub frames: u64,
    pub tags: Vec<Tag>,
    /// The `fact` chunk's sample length: the true frame count of block codecs (ADPCM) whose
    /// last block is padded.
    pub fact_frames: Option<u64>,
    /// Oddities that did not stop decoding (wrong RIFF size, partial last frame, …).
    pub warnings: Vec<String>,
    /// `None` when the format is valid WAVE but not one the fast path converts (ADPCM, …).
    pub encoding: Option<SampleEncoding>,
}

struct Fmt {
    format_tag: u16,
    extensible: bool,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    bits_per_sample: u16,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn chunk_name(id: &[u8]) -> String {
    id.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Parses a WAVE file's chunk structure. The input must satisfy [`is_wave`].
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<WavLayout> {
    let len = bytes.len();
    let rf64 = &bytes[0..4] != b"RIFF";
    let container = if rf64 { "rf64" } else { "wav" };
    let mut warnings = super::warnings::Warnings::default();
    let mut riff_size = u32_at(bytes, 4) as u64;
    let mut data_size_64: Option<u64> = None;
    let mut fmt: Option<Fmt> = None;
    let mut data: Option<(usize, u64)> = None;
    let mut tags = Vec::new();
    let mut fact_frames = None;

    let mut pos = 12usize;
    while pos < len {
        if len - pos < 8 {
            if data.is_some() {
                warnings.push(format!("{} stray bytes after the last chunk", len - pos));
                break;
            }
            return Err(EngineError::Truncated {
                what: "chunk header",
                declared: 8,
                available: (len - pos) as u64,
                missing: (8 - (len - pos)) as u64,
            });
        }
        let id = &bytes[pos..pos + 4];
        let mut size = u32_at(bytes, pos + 4) as u64;
        let body = pos + 8;
        let available = (len - body) as u64;

        if id == b"data" {
            if rf64 && size == u32::MAX as u64 {
                size = data_size_64.ok_or_else(|| {
                    EngineError::malformed(container, "data size refers to a missing ds64 chunk")
                })?;
            }
            if size > available {
                return Err(EngineError::Truncated {
                    what: "data chunk",
                    declared: size,
                    available,
                    missing: size - available,
                });
            }
            if data.is_some() {
                warnings.push("a second data chunk was ignored");
            } else {
                data = Some((body, size));
            }
        } else if size > available {
            // A chunk running past the end: fatal before the samples, a warning after them.
            if data.is_some() {
                warnings.push(format!(
                    "{:?} chunk after the data declares {size} bytes, {available} present; ignored",
                    chunk_name(id)
                ));
                break;
            }
            return Err(EngineError::Truncated {
                what: "chunk before the data",
                declared: size,
                available,
                missing: size - available,
            });
        } else {
            let chunk = &bytes[body..body + size as usize];
            match id {
                b"ds64" if rf64 => {
                    if chunk.len() < 24 {
                        return Err(EngineError::malformed(
                            container,
                            "ds64 chunk under 24 bytes",
                        ));
                    }
                    riff_size = u64_at(chunk, 0);
                    data_size_64 = Some(u64_at(chunk, 8));
                }
                b"fmt " => {
                    if fmt.is_some() {
                        warnings.push("a second fmt chunk was ignored");
                    } else {
                        fmt = Some(parse_fmt(chunk, container)?);
                    }
                }
                b"LIST" => read_info(chunk, limits, &mut tags, &mut warnings),
                b"fact" if chunk.len() >= 4 => fact_frames = Some(u32_at(chunk, 0) as u64),
                _ => {}
            }
        }
        // Chunks are word-aligned: an odd size is followed by one pad byte.
        let next = body as u64 + size + (size & 1);
        pos = usize::try_from(next).unwrap_or(usize::MAX);
    }

    let fmt = fmt.ok_or_else(|| EngineError::malformed(container, "no fmt chunk"))?;
    let (data_start, data_size) =
        data.ok_or_else(|| EngineError::malformed(container, "no data chunk"))?;
    if riff_size.saturating_add(8) != len as u64 {
        warnings.push(format!(
            "RIFF size says {} bytes, the file has {len}",
            riff_size.saturating_add(8)
        ));
    }

    let channels = fmt.channels;
    if channels == 0 {
        return Err(EngineError::malformed(container, "0 channels"));
    }
    if fmt.sample_rate == 0 {
        return Err(EngineError::malformed(container, "sample rate 0 Hz"));
    }
    limits.check_shape(fmt.sample_rate, channels as u32)?;
    if fmt.block_align == 0 {
        return Err(EngineError::malformed(container, "block align 0"));
    }

    let encoding = sample_encoding(&fmt, container)?;
    let block_align = fmt.block_align as usize;
    let frames = data_size / block_align as u64;
    let whole = frames * block_align as u64;
    if whole != data_size {
        warnings.push(format!(
            "data chunk ends with a partial frame ({} of {block_align} bytes); ignored",
            data_size - whole
        ));
    }
    if encoding.is_some() {
        limits.check_frames(frames, fmt.sample_rate)?;
    }
    Ok(WavLayout {
        container,
        format_tag: fmt.format_tag,
        extensible: fmt.extensible,
        channels,
        sample_rate: fmt.sample_rate,
        bits_per_sample: fmt.bits_per_sample,
        block_align,
        data: data_start..data_start + whole as usize,
        frames,
        tags,
        fact_frames,
        warnings: warnings.into_lines(),
        encoding,
    })
}

fn parse_fmt(chunk: &[u8], container: &'static str) -> Result<Fmt> {
    if chunk.len() < 16 {
        return Err(EngineError::malformed(
            container,
            format!("fmt chunk is {} bytes, at least 16 needed", chunk.len()),
        ));
    }
    let mut format_tag = u16_at(chunk, 0);
    let mut extensible = false;
    if format_tag == WAVE_FORMAT_EXTENSIBLE {
        if chunk.len() < 40 || u16_at(chunk, 16) < 22 {
            return Err(EngineError::malformed(
                container,
                "EXTENSIBLE fmt chunk under 40 bytes",
            ));
        }
        if chunk[26..40] != SUBTYPE_GUID_TAIL {
            return Err(EngineError::Unsupported(
                "WAVE_FORMAT_EXTENSIBLE with a non-standard sub-format GUID".into(),
            ));
        }
        format_tag = u16_at(chunk, 24);
        extensible = true;
    }
    Ok(Fmt {
        format_tag,
        extensible,
        channels: u16_at(chunk, 2),
        sample_rate: u32_at(chunk, 4),
        block_align: u16_at(chunk, 12),
        bits_per_sample: u16_at(chunk, 14),
    })
}

/// The fast path's sample encoding, `None` for WAVE codecs it leaves to symphonia.
fn sample_encoding(fmt: &Fmt, container: &'static str) -> Result<Option<SampleEncoding>> {
    let channels = fmt.channels as usize;
    let block_align = fmt.block_align as usize;
    let encoding = match fmt.format_tag {
        WAVE_FORMAT_PCM => match fmt.bits_per_sample {
            8 => SampleEncoding::U8,
            16 => SampleEncoding::I16,
            24 => SampleEncoding::I24,
            32 => SampleEncoding::I32,
            bits => {
                return Err(EngineError::Unsupported(format!("{bits}-bit integer PCM")));
            }
        },
        WAVE_FORMAT_IEEE_FLOAT => match fmt.bits_per_sample {
            32 => SampleEncoding::F32,
            64 => SampleEncoding::F64,
            bits => return Err(EngineError::Unsupported(format!("{bits}-bit float PCM"))),
        },
        WAVE_FORMAT_ALAW => SampleEncoding::ALaw,
        WAVE_FORMAT_MULAW => SampleEncoding::MuLaw,
        _ => return Ok(None),
    };
    let expected = encoding.bytes_per_sample() * channels;
    if block_align != expected {
        return Err(EngineError::malformed(
            container,
            format!(
                "block align {block_align}, expected {expected} for {channels} × {}",
                encoding.codec_name()
            ),
        ));
    }
    Ok(Some(encoding))
}

/// Reads a LIST/INFO chunk's text tags; other LIST types are skipped.
fn read_info(
    chunk: &[u8],
    limits: &Limits,
    tags: &mut Vec<Tag>,
    warnings: &mut super::warnings::Warnings,
) {
    if chunk.len() < 4 || &chunk[0..4] != b"INFO" {
        return;
    }
    let mut pos = 4;
    while chunk.len() - pos >= 8 {
        let id = &chunk[pos..pos + 4];
        let size = u32_at(chunk, pos + 4) as usize;
        let body = pos + 8;
        if size > chunk.len() - body {
            warnings.push(format!(
                "INFO tag {:?} runs past its LIST chunk; ignored",
                chunk_name(id)
            ));
            return;
        }
        if tags.len() >= limits.max_tags {
            warnings.push(format!(
                "more than {} tags; the rest were ignored",
                limits.max_tags
            ));
            return;
        }
        let raw = &chunk[body..body + size];
        let text = raw.split(|&b| b == 0).next().unwrap_or_default();
        let value: String = String::from_utf8_lossy(text)
            .trim()
            .chars()
            .take(MAX_TAG_CHARS)
            .collect();
        if !value.is_empty() {
            tags.push(Tag {
                key: info_key(id),
                value,
            });
        }
        pos = body + size + (size & 1);
    }
}

fn info_key(id: &[u8]) -> String {
    match id {
        b"INAM" => "title".into(),
        b"IART" => "artist".into(),
        b"IPRD" => "album".into(),
        b"ICMT" => "comment".into(),
        b"ICRD" => "date".into(),
        b"IGNR" => "genre".into(),
        b"ISFT" => "encoder".into(),
        b"ICOP" => "copyright".into(),
        b"IENG" => "engineer".into(),
        b"ISBJ" => "subject".into(),
        b"IKEY" => "keywords".into(),
        b"ITRK" | b"IPRT" => "track".into(),
        other => chunk_name(other),
    }
}
