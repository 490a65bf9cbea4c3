//! Intake: how a recording enters callrec, whatever brought it — an HTTP upload (stage 1) or an
//! export download (stage 2). One path, so a recovered recording gets the same checksums, the
//! same limits, the same create-only staging and the same idempotency as a streamed one.
//!
//! 1. [`Spool::create`] opens a scratch file; [`Spool::write`] takes the bytes as they arrive,
//!    refusing the first one past the byte limit *before* writing it, while SHA-256 and CRC32C
//!    (MD5 only when asked, for a sender's `Content-MD5`) are computed and the first bytes are
//!    kept for the format check — the file is never read back for any of it.
//! 2. [`Spool::finish`] gives a [`Spooled`] file with its digests; it removes itself when dropped.
//! 3. [`receive`] stages it durably (create-only, keyed by its SHA-256) and sets `received`.
//!    The same bytes again change nothing; different bytes for a call that has some are a
//!    conflict, kept under `conflicts/` for review while the first stay untouched.
//! 4. [`run_pipeline`] runs the call's pipeline and accounts for a failure (metric + error log),
//!    for every caller alike.

use crate::ids::CallId;
use crate::metrics::Metrics;
use crate::objects::{Body, ObjectError, ObjectMeta};
use crate::pipeline::{Ending, Finished, Pipeline, PipelineError};
use crate::store::{CallChange, CallRecord, Outcome, StagedAudio, StoreError, Via};
use callrec_engine::{DigestState, Digests};
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt as _;

/// Bytes kept from the start of a file for the format check.
const HEAD_BYTES: usize = 12;

/// Why bytes could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// More bytes than the limit: refused as soon as they showed, nothing past it written.
    #[error("above the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("spool file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which digests a spool computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digesting {
    /// None (a CDR batch read once and thrown away).
    None,
    /// SHA-256 and CRC32C: what staging and the record need.
    Recording,
    /// The same plus MD5, for a sender's `Content-MD5`.
    WithMd5,
}

/// A file being written, digested as it goes. Dropped before [`Spool::finish`], it removes
/// itself.
pub struct Spool {
    file: tokio::fs::File,
    path: Scratch,
    limit: u64,
    bytes: u64,
    digests: Option<DigestState>,
    head: Vec<u8>,
}

/// A scratch file's path that removes the file when dropped.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Spool {
    /// A new spool file under `dir` (created if missing), named after `label` (a safe id or a
    /// fixed word), for at most `limit` bytes.
    pub async fn create(
        dir: &Path,
        label: &str,
        limit: u64,
        digesting: Digesting,
    ) -> Result<Spool, SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        let path = dir.join(format!("{label}.{:016x}.part", rand::random::<u64>()));
        let file = tokio::fs::File::create(&path).await.map_err(io(&path))?;
        let digests = match digesting {
            Digesting::None => None,
            Digesting::Recording => Some(DigestState::new()),
            Digesting::WithMd5 => Some(DigestState::with_md5()),
        };
        Ok(Spool {
            file,
            path: Scratch(path),
            limit,
            bytes: 0,
            digests,
            head: Vec::with_capacity(HEAD_BYTES),
        })
    }

    /// Appends `chunk`; past the limit, nothing of it is written and the spool is refused.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        let total = self.bytes.saturating_add(chunk.len() as u64);
        if total > self.limit {
            return Err(SpoolError::TooLarge { limit: self.limit });
        }
        if self.head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if let Some(d) = self.digests.as_mut() {
            d.update(chunk);
        }
        self.file
            .write_all(chunk)
            .await
            .map_err(|source| SpoolError::Io {
                path: self.path.0.clone(),
                source,
            })?;
        self.bytes = total;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The byte limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Flushes (not fsynced: the spool is scratch; what makes a recording durable is its staging
    /// write) and hands the file over with its digests.
    pub async fn finish(mut self) -> Result<Spooled, SpoolError> {
        self.file.flush().await.map_err(|source| SpoolError::Io {
            path: self.path.0.clone(),
            source,
        })?;
        let digests = self.digests.take().map(DigestState::finish);
        Ok(Spooled {
            path: self.path,
            bytes: self.bytes,
            digests,
            audio: looks_like_audio(&self.head),
        })
    }
}

/// A file spooled whole, with what was learned while it was written. Removes itself when dropped.
#[derive(Debug)]
pub struct Spooled {
    path: Scratch,
    bytes: u64,
    digests: Option<Digests>,
    audio: bool,
}

impl Spooled {
    pub fn path(&self) -> &Path {
        &self.path.0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether it starts like an audio file callrec decodes ([`looks_like_audio`]).
    pub fn is_audio(&self) -> bool {
        self.audio
    }

    /// SHA-256 in hex (empty when spooled without digests).
    pub fn sha256_hex(&self) -> String {
        self.digests.map(|d| d.sha256_hex()).unwrap_or_default()
    }

    /// CRC32C in base64, as S3 writes it (empty when spooled without digests).
    pub fn crc32c_base64(&self) -> String {
        self.digests.map(|d| d.crc32c_base64()).unwrap_or_default()
    }

    /// CRC64NVME in base64, as S3 writes it (`None` when spooled without digests).
    pub fn crc64nvme_base64(&self) -> Option<String> {
        self.digests.map(|d| d.crc64nvme_base64())
    }

    /// MD5, when asked for.
    pub fn md5(&self) -> Option<[u8; 16]> {
        self.digests.and_then(|d| d.md5)
    }
}

/// Whether `head` (the first bytes of a file) starts like an audio file callrec decodes: RIFF
/// or RF64 WAVE, FLAC, Ogg, MP3 (an ID3 tag or a frame sync), MP4/M4A (`ftyp`).
pub fn looks_like_audio(head: &[u8]) -> bool {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    ((at(0, b"RIFF") || at(0, b"RF64") || at(0, b"BW64")) && at(8, b"WAVE"))
        || at(0, b"fLaC")
        || at(0, b"OggS")
        || at(0, b"ID3")
        || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0)
        || at(4, b"ftyp")
}

/// Why a recording could not be received (nothing was marked; the sender may retry).
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
}

/// Stages `spooled` for `call_id` (create-only, keyed by its SHA-256) and sets `received`.
/// Returns the record afterwards and what happened: `Changed` (new: run the pipeline),
/// `Unchanged` (these bytes were received before), `Conflict` (different bytes: kept under
/// `conflicts/`, the call's own untouched).
pub async fn receive(
    pipeline: &Pipeline,
    call_id: &CallId,
    spooled: &Spooled,
    content_type: &str,
    via: Via,
) -> Result<(CallRecord, Outcome), ReceiveError> {
    let store = &pipeline.store;
    let staging = &pipeline.routing.staging;
    let (sha256, crc32c) = (spooled.sha256_hex(), spooled.crc32c_base64());
    let existing = store.get(call_id).await?;
    let mut conflicting = false;
    if let Some(record) = &existing
        && let Some(staged) = &record.staged
    {
        if staged.sha256 == sha256 {
            return Ok((record.clone(), Outcome::Unchanged));
        }
        conflicting = true;
    }
    // Keyed by content, so a retry finds its own bytes instead of writing twice.
    let location = if conflicting {
        format!("conflicts/{call_id}/{sha256}.raw")
    } else {
        pipeline.routing.staging_key(call_id, &sha256)
    };
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("call-id".to_string(), call_id.to_string());
    let meta = ObjectMeta {
        content_type: content_type.to_string(),
        crc32c: crc32c.clone(),
        sha256: sha256.clone(),
        metadata,
        storage_class: None,
        kms_key_id: None,
    };
    pipeline
        .objects
        .put_new(
            &staging.bucket,
            &location,
            Body::Scratch(spooled.path().to_path_buf()),
            &meta,
        )
        .await?;
    let staged = StagedAudio {
        location,
        bytes: spooled.bytes(),
        sha256,
        crc32c,
        crc64nvme: spooled.crc64nvme_base64(),
        via: Some(via),
    };
    let (record, applied) = store
        .update(call_id, &CallChange::Received(staged), Timestamp::now())
        .await?;
    Ok((record, applied.outcome))
}

/// Runs `call_id` through the pipeline; a failure is counted (`callrec_failures_total`) and
/// logged as an error saying `what` was being done. The pipeline has recorded it on the call.
pub async fn run_pipeline(
    pipeline: &Pipeline,
    metrics: &Metrics,
    call_id: &CallId,
    ending: Ending,
    what: &'static str,
) -> Result<Finished, PipelineError> {
    let started = std::time::Instant::now();
    let result = pipeline.run(call_id, ending).await;
    match &result {
        Ok(Finished::Stored) => metrics
            .stage_seconds
            .with_label_values(&["process_and_store"])
            .observe(started.elapsed().as_secs_f64()),
        Ok(Finished::NothingToDo | Finished::InFlight) => {}
        Ok(Finished::WaitingForEnd { until }) => {
            tracing::debug!(call_id = %call_id, %until, "waiting for the call's CDR End");
        }
        Ok(Finished::Archived) => {
            metrics.calls_unprocessed.inc();
            tracing::warn!(call_id = %call_id, "the engine cannot process this recording: stored as it arrived, under unprocessed/");
        }
        Err(e) => {
            metrics.failures.with_label_values(&[e.kind()]).inc();
            tracing::error!(call_id = %call_id, kind = e.kind(), error = %e, "{what} failed");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_digests_as_it_writes_and_refuses_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend(std::iter::repeat_n(7u8, 1000));
        let mut spool = Spool::create(dir.path(), "c1", 2000, Digesting::WithMd5)
            .await
            .unwrap();
        for piece in wav.chunks(5) {
            spool.write(piece).await.unwrap();
        }
        let spooled = spool.finish().await.unwrap();
        let whole = Digests::compute_with_md5(&wav);
        assert_eq!(spooled.bytes(), wav.len() as u64);
        assert_eq!(spooled.sha256_hex(), whole.sha256_hex());
        assert_eq!(spooled.crc32c_base64(), whole.crc32c_base64());
        assert_eq!(spooled.crc64nvme_base64(), Some(whole.crc64nvme_base64()));
        assert_eq!(spooled.md5(), whole.md5);
        assert!(spooled.is_audio());
        assert_eq!(std::fs::read(spooled.path()).unwrap(), wav);
        let path = spooled.path().to_path_buf();
        drop(spooled);
        assert!(!path.exists(), "a spooled file removes itself");

        let mut small = Spool::create(dir.path(), "c2", 10, Digesting::Recording)
            .await
            .unwrap();
        small.write(b"0123456789").await.unwrap();
        assert!(matches!(
            small.write(b"x").await,
            Err(SpoolError::TooLarge { limit: 10 })
        ));
        assert_eq!(small.bytes(), 10, "nothing past the limit is written");
        let plain = small.finish().await.unwrap();
        assert!(!plain.is_audio());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn audio_formats_are_recognised_by_their_first_bytes() {
        for head in [
            &b"RIFF\0\0\0\0WAVE"[..],
            b"RF64\0\0\0\0WAVE",
            b"fLaC",
            b"OggS",
            b"ID3\x04",
            &[0xFF, 0xFB],
            b"\0\0\0\x20ftypM4A ",
        ] {
            assert!(looks_like_audio(head), "{head:?}");
        }
        for head in [&b"RIFF\0\0\0\0AVI "[..], b"{\"a\":1}", b"", b"\xFF"] {
            assert!(!looks_like_audio(head), "{head:?}");
        }
    }
}
