//! The engine's one error type. Every failure on any input, hostile or not, is one of these:
//! the engine never panics on input and never allocates by a header's word.

use std::fmt;

/// The checksum algorithms the engine computes and validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Sha256,
    Crc32c,
    Md5,
    Crc64nvme,
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChecksumAlgorithm::Sha256 => "SHA-256",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Md5 => "MD5",
            ChecksumAlgorithm::Crc64nvme => "CRC64NVME",
        })
    }
}

/// A configured limit that the input went past (see [`crate::Limits`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("input is {actual} bytes, the limit is {limit}")]
    InputBytes { limit: u64, actual: u64 },
    #[error("duration is {actual_ms} ms or more, the limit is {limit_ms} ms")]
    Duration { limit_ms: u64, actual_ms: u64 },
    #[error("{actual} channels, the limit is {limit}")]
    Channels { limit: u32, actual: u32 },
    #[error("sample rate {actual} Hz, the limit is {limit} Hz")]
    SampleRate { limit: u32, actual: u32 },
    #[error("{actual} decoded samples or more, the limit is {limit}")]
    DecodedSamples { limit: u64, actual: u64 },
}

/// Everything that can go wrong between bytes in and a report out.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The input has no bytes at all.
    #[error("empty input: 0 bytes")]
    Empty,
    /// A size field promises more bytes than the input holds.
    #[error(
        "truncated {what}: declares {declared} bytes, {available} present, {missing} bytes missing"
    )]
    Truncated {
        what: &'static str,
        declared: u64,
        available: u64,
        missing: u64,
    },
    /// The container's structure is broken (a field out of range, a chunk missing).
    #[error("malformed {container}: {reason}")]
    Malformed {
        container: &'static str,
        reason: String,
    },
    /// Not an audio format the engine recognizes.
    #[error("unrecognized format: {0}")]
    UnknownFormat(String),
    /// A recognized container with a codec or feature the engine does not decode.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A valid container holding no audio frames.
    #[error("no audio: {0}")]
    NoAudio(String),
    /// Packets failed to decode (corrupt frames).
    #[error(
        "corrupt audio: {corrupt_packets} of {total_packets} packets failed to decode (first: {first_error})"
    )]
    CorruptFrames {
        corrupt_packets: u64,
        total_packets: u64,
        first_error: String,
    },
    /// A configured limit was exceeded (hostile or unexpected input).
    #[error("limit exceeded: {0}")]
    LimitExceeded(#[from] LimitError),
    /// The input's digest differs from the one expected.
    #[error("{algorithm} mismatch: expected {expected}, actual {actual}")]
    ChecksumMismatch {
        algorithm: ChecksumAlgorithm,
        expected: String,
        actual: String,
    },
    /// An expected digest that is neither valid hex nor valid base64 of the right length.
    #[error("invalid expected {algorithm} value {value:?}: {reason}")]
    InvalidExpectedChecksum {
        algorithm: ChecksumAlgorithm,
        value: String,
        reason: &'static str,
    },
    /// The audio's duration is not the one expected (e.g. from the CDR).
    #[error(
        "duration mismatch: expected {expected_ms} ms ± {tolerance_ms} ms, actual {actual_ms} ms"
    )]
    DurationMismatch {
        expected_ms: u64,
        tolerance_ms: u64,
        actual_ms: u64,
    },
    /// Reading or mapping the input failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The third-party decoder failed in a way that is not the input's fault, or panicked
    /// (caught and turned into this error).
    #[error("decoder failure: {0}")]
    Decoder(String),
}

impl EngineError {
    /// A short stable name for the kind of error, for JSON output, metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Empty => "empty",
            EngineError::Truncated { .. } => "truncated",
            EngineError::Malformed { .. } => "malformed",
            EngineError::UnknownFormat(_) => "unknown_format",
            EngineError::Unsupported(_) => "unsupported",
            EngineError::NoAudio(_) => "no_audio",
            EngineError::CorruptFrames { .. } => "corrupt_frames",
            EngineError::LimitExceeded(_) => "limit_exceeded",
            EngineError::ChecksumMismatch { .. } => "checksum_mismatch",
            EngineError::InvalidExpectedChecksum { .. } => "invalid_expected_checksum",
            EngineError::DurationMismatch { .. } => "duration_mismatch",
            EngineError::Io(_) => "io",
            EngineError::Decoder(_) => "decoder",
        }
    }

    pub(crate) fn malformed(container: &'static str, reason: impl Into<String>) -> Self {
        EngineError::Malformed {
            container,
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The message of a caught panic, for the error that replaces it.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
