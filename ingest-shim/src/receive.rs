//! Receiving a recording: from a spooled, checksummed file to the `received` flag.
//!
//! One path for both stages: the upload endpoint (stage 1) and the export download task
//! (stage 2) spool the bytes, then call [`receive`], so a recovered recording gets the same
//! checksums, the same create-only staging and the same idempotency as a streamed one. The
//! same bytes again change nothing; different bytes for a call that has some are a conflict,
//! kept under `conflicts/` for review while the first stay untouched.

use crate::ids::CallId;
use crate::objects::{Body, ObjectError, ObjectMeta};
use crate::pipeline::Pipeline;
use crate::store::{CallChange, CallRecord, Outcome, StagedAudio, StoreError};
use jiff::Timestamp;
use std::path::PathBuf;

/// A recording spooled to a local file, with the checksums computed while it was written.
#[derive(Debug, Clone)]
pub struct Spooled {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256_hex: String,
    pub crc32c_base64: String,
    pub content_type: String,
}

/// Why a recording could not be received (nothing was marked; the sender may retry).
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
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

/// Stages `spooled` for `call_id` (create-only, keyed by its SHA-256) and sets `received`.
/// Returns the record afterwards and what happened: `Changed` (new: run the pipeline),
/// `Unchanged` (these bytes were received before), `Conflict` (different bytes: kept under
/// `conflicts/`, the call's own untouched). The spool file is the caller's to remove.
pub async fn receive(
    pipeline: &Pipeline,
    call_id: &CallId,
    spooled: &Spooled,
) -> Result<(CallRecord, Outcome), ReceiveError> {
    let store = &pipeline.store;
    let staging = &pipeline.routing.staging;
    let existing = store.get(call_id).await?;
    let mut conflicting = false;
    if let Some(record) = &existing
        && let Some(staged) = &record.staged
    {
        if staged.sha256 == spooled.sha256_hex {
            return Ok((record.clone(), Outcome::Unchanged));
        }
        conflicting = true;
    }
    // Keyed by content, so a retry finds its own bytes instead of writing twice.
    let location = if conflicting {
        format!("conflicts/{call_id}/{}.raw", spooled.sha256_hex)
    } else {
        pipeline.routing.staging_key(call_id, &spooled.sha256_hex)
    };
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("call-id".to_string(), call_id.to_string());
    let meta = ObjectMeta {
        content_type: spooled.content_type.clone(),
        crc32c: spooled.crc32c_base64.clone(),
        sha256: spooled.sha256_hex.clone(),
        metadata,
        storage_class: None,
        kms_key_id: None,
    };
    pipeline
        .objects
        .put_new(
            &staging.bucket,
            &location,
            Body::File(spooled.path.clone()),
            &meta,
        )
        .await?;
    let staged = StagedAudio {
        location,
        bytes: spooled.bytes,
        sha256: spooled.sha256_hex.clone(),
        crc32c: spooled.crc32c_base64.clone(),
    };
    let (record, applied) = store
        .update(call_id, &CallChange::Received(staged), Timestamp::now())
        .await?;
    Ok((record, applied.outcome))
}
