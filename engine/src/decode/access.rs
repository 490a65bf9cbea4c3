//! Random access to a recording's decoded frames without holding the recording decoded.
//!
//! The processing chain reads a recording twice (analysis, then rendering) and a few short
//! pieces in between (spectrum windows, the edges of muted spans), block by block. Where those
//! blocks come from depends on the format:
//!
//! - **PCM, float and G.711 WAVE (RIFF/RF64)**, the fast path: straight from the input bytes
//!   (a memory map of the file, or the upload in memory), converted block by block; nothing the
//!   size of the recording is allocated, and pages of a mapped file already read are released.
//! - **Everything else** (compressed formats through symphonia, GSM 06.10, ADPCM) is decoded
//!   once, front to back, into a spill: planes in memory up to [`SpillConfig::memory_bytes`],
//!   past that an unnamed temporary file of interleaved f32, read back by position. Decoding
//!   twice instead would cost a second decode of every compressed input (symphonia's MP3 or FLAC
//!   decode is several times the cost of the whole chain on PCM); the spill costs a sequential
//!   write and reads from the page cache, and only for recordings longer than the budget.
//!
//! Every path gives the samples [`super::Decoder::decode_all`] gives, bit for bit.

use super::pcm::{self, SampleEncoding};
use super::{Decoder, StreamInfo};
use crate::error::{EngineError, LimitError, Result};
use crate::limits::Limits;
use crate::source::AudioSource;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a recording that is not read in place is decoded to (and a FLAC output's frames wait).
#[derive(Debug, Clone)]
pub struct SpillConfig {
    /// Decoded samples kept in memory (4 bytes each) before they go to a temporary file.
    /// Default 16 MiB: about 8.7 minutes of 8 kHz mono. A WAV input that decodes to no more is
    /// converted once into memory too (every pass then reads it in place; converting at each
    /// read costs more than the memory saves), a longer one is read from its bytes block by
    /// block. A FLAC output's frames wait in memory up to a quarter of this (the header, which
    /// goes first, is known only after the last frame), then in a temporary file.
    pub memory_bytes: usize,
    /// The temporary files' folder. Default: the system's (`TMPDIR`).
    pub dir: Option<PathBuf>,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            memory_bytes: 16 << 20,
            dir: None,
        }
    }
}

enum Store {
    /// Converted from the input bytes on each read.
    InPlace {
        source: AudioSource,
        data: Range<usize>,
        encoding: SampleEncoding,
        block_align: usize,
    },
    /// Decoded, one `Vec` per channel.
    Memory(Vec<Vec<f32>>),
    /// Decoded to an unnamed temporary file, interleaved little-endian f32.
    Spilled(std::fs::File),
}

/// What a front-to-back pass reads before releasing what it has read.
pub const RELEASE_BYTES: usize = 4 << 20;

/// A recording's decoded frames, read by position.
pub struct Frames {
    pub info: StreamInfo,
    channels: usize,
    frames: usize,
    store: Store,
    /// Input bytes before this were released by the current pass.
    released: AtomicUsize,
}

impl Frames {
    /// Opens `source`: the fast path reads in place; anything else is decoded now into a spill.
    pub fn open(source: &AudioSource, limits: &Limits, spill: &SpillConfig) -> Result<Frames> {
        match Decoder::open(source, limits)? {
            Decoder::Wav {
                layout,
                encoding,
                info,
                ..
            } => {
                // The same bound as decoding to memory: a recording the limits refuse is refused
                // here too, whatever its reading costs.
                limits.check_decoded_samples(layout.frames * layout.channels as u64)?;
                let samples = layout.frames as usize * layout.channels as usize;
                if samples * 4 <= spill.memory_bytes {
                    // Short: converted once, and every pass reads the planes in place.
                    let frames = layout.frames as usize;
                    let mut planes = vec![vec![0f32; frames]; layout.channels as usize];
                    let mut views: Vec<&mut [f32]> =
                        planes.iter_mut().map(|p| p.as_mut_slice()).collect();
                    pcm::convert(encoding, &source.bytes()[layout.data.clone()], &mut views);
                    return Ok(Frames {
                        released: AtomicUsize::new(0),
                        channels: layout.channels as usize,
                        frames,
                        store: Store::Memory(planes),
                        info,
                    });
                }
                Ok(Frames {
                    released: AtomicUsize::new(0),
                    channels: layout.channels as usize,
                    frames: layout.frames as usize,
                    store: Store::InPlace {
                        source: source.clone(),
                        data: layout.data.clone(),
                        encoding,
                        block_align: layout.block_align,
                    },
                    info,
                })
            }
            decoder => Self::decode(decoder, limits, spill),
        }
    }

    /// Decodes front to back into memory, then past the budget into a temporary file.
    fn decode(mut decoder: Decoder, limits: &Limits, spill: &SpillConfig) -> Result<Frames> {
        if let Decoder::Gsm { samples, .. } = &decoder {
            limits.check_decoded_samples(*samples)?;
        }
        let max = limits.max_decoded_samples;
        let mut planes: Vec<Vec<f32>> = Vec::new();
        let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut total = 0u64;
        let mut frames = 0usize;
        let mut bytes = Vec::new();
        decoder.run(&mut |block: &[&[f32]]| {
            let len = block.first().map_or(0, |b| b.len());
            total += (block.len() * len) as u64;
            if total > max {
                return Err(LimitError::DecodedSamples {
                    limit: max,
                    actual: total,
                }
                .into());
            }
            if planes.is_empty() && file.is_none() {
                planes.resize_with(block.len(), Vec::new);
            }
            let channels = planes.len();
            if block.len() != channels {
                return Err(EngineError::Decoder(format!(
                    "the channel count changed from {channels} to {} mid-stream",
                    block.len()
                )));
            }
            frames += len;
            if file.is_none() && total as usize * 4 > spill.memory_bytes {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, temp_file(spill)?);
                // What is in memory so far goes first, then the memory is freed.
                let held = planes.first().map_or(0, Vec::len);
                for start in (0..held).step_by(super::BLOCK_FRAMES) {
                    let end = (start + super::BLOCK_FRAMES).min(held);
                    let views: Vec<&[f32]> = planes.iter().map(|p| &p[start..end]).collect();
                    write_interleaved(&mut out, &views, &mut bytes)?;
                }
                for plane in &mut planes {
                    *plane = Vec::new();
                }
                file = Some(out);
            }
            match &mut file {
                Some(out) => write_interleaved(out, block, &mut bytes)?,
                None => {
                    for (plane, samples) in planes.iter_mut().zip(block) {
                        plane.extend_from_slice(samples);
                    }
                }
            }
            Ok(())
        })?;
        let info = decoder.info().clone();
        let channels = planes.len();
        let store = match file {
            Some(out) => Store::Spilled(out.into_inner().map_err(|e| e.into_error())?),
            None => Store::Memory(planes),
        };
        Ok(Frames {
            info,
            channels,
            frames,
            store,
            released: AtomicUsize::new(0),
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn rate(&self) -> u32 {
        self.info.sample_rate
    }

    /// Channel by channel, frames `start..start + len` (which must lie within the recording):
    /// the decoded planes themselves where they are in memory, else read into `scratch`.
    pub fn view<'a>(
        &'a self,
        start: usize,
        len: usize,
        scratch: &'a mut [Vec<f32>],
    ) -> Result<Vec<&'a [f32]>> {
        if let Store::Memory(planes) = &self.store {
            return Ok(planes.iter().map(|p| &p[start..start + len]).collect());
        }
        for plane in scratch.iter_mut() {
            if plane.len() < len {
                plane.resize(len, 0.0);
            }
        }
        self.read(start, len, scratch)?;
        Ok(scratch.iter().map(|p| &p[..len]).collect())
    }

    /// What [`Frames::view`] returned for the same `start` and `len` when it filled `scratch`
    /// (nothing is read again: the views a second reader takes on the same core).
    pub fn viewed<'a>(
        &'a self,
        start: usize,
        len: usize,
        scratch: &'a [Vec<f32>],
    ) -> Vec<&'a [f32]> {
        match &self.store {
            Store::Memory(planes) => planes.iter().map(|p| &p[start..start + len]).collect(),
            _ => scratch.iter().map(|p| &p[..len]).collect(),
        }
    }

    /// Fills `out[c][..len]` with channel `c`'s frames `start..start + len` (which must lie
    /// within the recording).
    pub fn read(&self, start: usize, len: usize, out: &mut [Vec<f32>]) -> Result<()> {
        debug_assert!(start + len <= self.frames);
        match &self.store {
            Store::InPlace {
                source,
                data,
                encoding,
                block_align,
            } => {
                let from = data.start + start * block_align;
                let bytes = &source.bytes()[from..from + len * block_align];
                let mut views: Vec<&mut [f32]> = out.iter_mut().map(|p| &mut p[..len]).collect();
                pcm::convert(*encoding, bytes, &mut views);
            }
            Store::Memory(planes) => {
                for (out, plane) in out.iter_mut().zip(planes) {
                    out[..len].copy_from_slice(&plane[start..start + len]);
                }
            }
            Store::Spilled(file) => {
                let mut bytes = vec![0u8; len * self.channels * 4];
                read_at(file, &mut bytes, (start * self.channels * 4) as u64)?;
                for (i, sample) in bytes.chunks_exact(4).enumerate() {
                    let value = f32::from_le_bytes(sample.try_into().expect("4 bytes"));
                    out[i % self.channels][i / self.channels] = value;
                }
            }
        }
        Ok(())
    }

    /// A front-to-back pass has read up to frame `end`: a mapped file's pages behind it leave
    /// the resident set, [`RELEASE_BYTES`] at a time (each release costs the kernel a TLB
    /// shootdown on every core the process runs on: per block, they took a fifth of a batch's
    /// time). A pass that starts again from an earlier frame starts counting again.
    pub fn release_behind(&self, end: usize) {
        if let Store::InPlace {
            source,
            data,
            block_align,
            ..
        } = &self.store
        {
            let end = data.start + end * block_align;
            let mut from = self.released.load(Ordering::Relaxed);
            if end < from {
                from = 0;
            }
            if end - from >= RELEASE_BYTES {
                source.release(from..end);
                from = end;
            }
            self.released.store(from, Ordering::Relaxed);
        }
    }

    /// Nothing read so far is read again soon (after the sparse reads between the passes): a
    /// mapped file's pages all leave the resident set, in one call, when the recording is long
    /// enough to matter.
    pub fn release_all(&self) {
        if let Store::InPlace { source, data, .. } = &self.store
            && data.len() >= RELEASE_BYTES
        {
            source.release(0..data.end);
            self.released.store(0, Ordering::Relaxed);
        }
    }

    /// The input bytes frames `range` are read from, for the fast path (`None` otherwise).
    pub fn byte_range(&self, range: Range<usize>) -> Option<Range<usize>> {
        match &self.store {
            Store::InPlace {
                data, block_align, ..
            } => Some(data.start + range.start * block_align..data.start + range.end * block_align),
            _ => None,
        }
    }

    /// Whether the frames are read in place from the input (the fast path).
    pub fn in_place(&self) -> bool {
        matches!(self.store, Store::InPlace { .. })
    }

    /// Whether the decoded frames went to a temporary file.
    pub fn spilled(&self) -> bool {
        matches!(self.store, Store::Spilled(_))
    }
}

fn temp_file(spill: &SpillConfig) -> Result<std::fs::File> {
    Ok(match &spill.dir {
        Some(dir) => tempfile::tempfile_in(dir)?,
        None => tempfile::tempfile()?,
    })
}

fn write_interleaved(
    out: &mut impl std::io::Write,
    block: &[&[f32]],
    bytes: &mut Vec<u8>,
) -> Result<()> {
    let len = block.first().map_or(0, |b| b.len());
    bytes.clear();
    bytes.reserve(len * block.len() * 4);
    for i in 0..len {
        for plane in block {
            bytes.extend_from_slice(&plane[i].to_le_bytes());
        }
    }
    out.write_all(bytes)?;
    Ok(())
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}
