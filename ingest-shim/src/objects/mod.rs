//! The object store: where processed audio (and staged raw uploads) live.
//!
//! Writes are create-only and checksummed: writing a key that holds the same bytes (same
//! checksum) again is success, and one that holds different bytes is a conflict — never an
//! overwrite. Backends: [`folder::FolderStore`] (the embedded default) and [`s3::S3Store`].
//! `ingest-shim/tests/object_store.rs` runs one conformance suite against both.

pub mod folder;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The key (or bucket name) is not one callrec writes: refused before any I/O.
    #[error("invalid object key {key:?}: {reason}")]
    BadKey { key: String, reason: &'static str },
    /// The key holds different bytes. Nothing was overwritten.
    #[error("{bucket}/{key} already holds different bytes (crc32c {existing_crc32c})")]
    Conflict {
        bucket: String,
        key: String,
        existing_crc32c: String,
    },
    /// The bytes read for the upload did not match the checksum given with them.
    #[error("checksum mismatch for {key}: expected crc32c {expected}, the body has {actual}")]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("{bucket}/{key} not found")]
    NotFound { bucket: String, key: String },
    #[error("{backend} is unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = ObjectError> = std::result::Result<T, E>;

/// Longest key accepted (S3's limit is 1,024 bytes).
pub const MAX_KEY_LEN: usize = 1024;

/// Checks an object key: `/`-separated segments of letters, digits and `- _ . = +`, none empty,
/// none starting with `.` (so never `.` or `..`, and never a hidden file in the folder store).
/// Keys come from templates filled with validated ids; this is the last line of defence.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(ObjectError::BadKey {
            key: key.chars().take(200).collect(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 1024 bytes");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("empty segment (leading, trailing or double '/')");
        }
        if segment.starts_with('.') {
            return bad("segment starting with '.'");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b'+'))
        {
            return bad("character not allowed");
        }
    }
    Ok(())
}

/// Checks a bucket name against S3's rules (3–63 of a–z 0–9 . -, starting and ending with a
/// letter or digit).
pub fn validate_bucket(bucket: &str) -> Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric()
        && !bucket.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ObjectError::BadKey {
            key: bucket.chars().take(80).collect(),
            reason: "not a valid bucket name (3-63 of a-z 0-9 . -)",
        })
    }
}

/// What a put carries besides the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub content_type: String,
    /// Base64 big-endian CRC32C of the body, computed by the caller (S3 verifies it).
    pub crc32c: String,
    /// Hex SHA-256 of the body (kept as user metadata).
    pub sha256: String,
    /// User metadata (call id, line of business, loudness, duration…).
    pub metadata: BTreeMap<String, String>,
    /// S3 storage class (e.g. `STANDARD_IA`); the folder store records it only.
    pub storage_class: Option<String>,
    /// SSE-KMS key id or ARN; the folder store records it only.
    pub kms_key_id: Option<String>,
}

/// The body of a put: a file (streamed, never read whole into memory) or bytes in memory.
#[derive(Debug, Clone)]
pub enum Body {
    File(PathBuf),
    /// A scratch file handed over: nothing writes to it once it is given to a put, and its
    /// owner only removes it afterwards (an upload's spool, the engine's output). The folder
    /// store links it into place instead of copying it (on the same file system); S3 reads it
    /// as a [`Body::File`].
    Scratch(PathBuf),
    Bytes(Bytes),
}

/// What a successful create-only put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written now.
    Created,
    /// The key already held these bytes (same checksum): nothing written, nothing lost.
    AlreadyExists,
}

/// An object's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub crc32c: Option<String>,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<ObjectInfo>,
    /// Pass back for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// An object store.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// "folder", "s3": for logs and errors.
    fn backend(&self) -> &'static str;

    /// Writes `body` at `bucket/key` unless the key exists. Same checksum there: success
    /// ([`PutOutcome::AlreadyExists`]); different: [`ObjectError::Conflict`].
    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome>;

    /// The object's facts, `None` if absent.
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>>;

    /// Bytes `range` (end exclusive, clamped to the object) or the whole object.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes>;

    /// Objects whose key starts with `prefix`, in key order, `limit` (1–1000) at a time.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Listing>;

    /// Removes an object. Absent is fine. callrec removes staged uploads, and an original stored
    /// unprocessed once its processed recording is the call's (`callrec redrive
    /// --unprocessed`); no other stored audio.
    async fn delete(&self, bucket: &str, key: &str) -> Result<()>;
}

/// CRC32C (Castagnoli), the checksum S3 keeps: the one digest of it in the service.
pub struct Crc32c(crc_fast::Digest);

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
    }
}

impl Crc32c {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Base64 of the big-endian value: how S3 writes it.
    pub fn base64(&self) -> String {
        crc32c_base64(self.0.finalize() as u32)
    }

    /// The base64 CRC32C of `bytes`.
    pub fn of(bytes: &[u8]) -> String {
        let mut digest = Crc32c::new();
        digest.update(bytes);
        digest.base64()
    }
}

/// A CRC32C value in base64 of its big-endian bytes: how S3 writes it.
pub fn crc32c_base64(crc: u32) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// Streams a file through CRC32C and SHA-256; returns (crc32c base64, sha256 hex, size). The
/// whole read is one blocking step (not one per buffer).
pub async fn checksum_file(path: &std::path::Path) -> Result<(String, String, u64)> {
    let owned = path.to_path_buf();
    blocking("local files", move || checksum_file_blocking(&owned)).await
}

/// The CRC32C (base64) of the file at `path`, read in one blocking step.
pub async fn crc32c_file(path: &std::path::Path) -> Result<String> {
    let owned = path.to_path_buf();
    blocking("local files", move || crc32c_file_blocking(&owned))
        .await
        .map(|(_, crc)| crc)
}

/// Runs `work` on tokio's blocking pool: one hand-off for a whole file operation.
pub(crate) async fn blocking<T: Send + 'static>(
    backend: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ObjectError::Unavailable {
            backend,
            message: e.to_string(),
        })?
}

/// The size and CRC32C (base64) of the file at `path`, on the calling thread.
pub fn crc32c_file_blocking(path: &std::path::Path) -> Result<(u64, String)> {
    let mut crc = Crc32c::new();
    let size = read_in_pieces(path, |piece| {
        crc.update(piece);
        Ok(())
    })?;
    Ok((size, crc.base64()))
}

/// [`checksum_file`] on the calling thread (for code already off the async workers).
pub fn checksum_file_blocking(path: &std::path::Path) -> Result<(String, String, u64)> {
    use sha2::Digest as _;
    let mut crc = Crc32c::new();
    let mut sha = sha2::Sha256::new();
    let size = read_in_pieces(path, |piece| {
        crc.update(piece);
        sha.update(piece);
        Ok(())
    })?;
    Ok((crc.base64(), hex::encode(sha.finalize()), size))
}

/// Reads the file at `path` through `each`, [`COPY_BUFFER`] bytes at a time (blocking); the
/// bytes read.
pub fn read_in_pieces(
    path: &std::path::Path,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    use std::io::Read as _;
    let io = |source| ObjectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        each(&buffer[..n])?;
        size += n as u64;
    }
}

/// Buffer of a file read or copied through a digest: a one-minute call (~1 MB) in two reads.
pub const COPY_BUFFER: usize = 512 << 10;
