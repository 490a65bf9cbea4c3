//! # callrec-engine
//!
//! callrec's audio core. It knows nothing of calls, AWS or HTTP: bytes in, facts and audio out.
//!
//! - [`source`]: input as `bytes::Bytes` or a memory-mapped file, never copied.
//! - [`decode`]: a zero-copy WAVE fast path (RIFF/RF64, PCM, float, G.711, EXTENSIBLE) and
//!   symphonia for everything else, both to planar f32.
//! - [`checksum`]: SHA-256, CRC32C, MD5 and CRC64NVME in one pass, and their validation.
//! - [`dsp`]: one file per stage: levels, K-weighting, loudness, true peak, P.56 speech level,
//!   silence map, stereo talk, spectrum facts, gain decisions, resampling.
//! - [`encode`]: WAV PCM16 / μ-law / A-law and FLAC.
//! - [`inspect()`]: verify and describe an input, as one [`Report`].
//! - [`process()`]: the whole chain, as audio plus a [`ProcessReport`].
//!
//! Every failure is an [`EngineError`]; hostile input is bounded by [`Limits`].

pub mod batch;
pub mod checksum;
pub mod decode;
pub mod dsp;
pub mod encode;
pub mod error;
pub mod inspect;
pub mod limits;
pub mod process;
pub mod report;
pub mod simd;
pub mod source;

pub use batch::{BatchStats, Engine, EngineConfig, JobInput, JobOutput};
pub use checksum::{Checksums, DigestState, Digests, ExpectedChecksums};
pub use decode::{DecodedAudio, Decoder, DecoderPath, StreamInfo, decode};
pub use encode::OutputFormat;
pub use error::{ChecksumAlgorithm, EngineError, LimitError, Result};
pub use inspect::{InspectOptions, inspect};
pub use limits::Limits;
pub use process::{ProcessConfig, ProcessReport, Processed, process, process_into};
pub use report::{Report, Tag};
pub use source::AudioSource;
