//! `PUT /v1/calls/{call_id}/audio`: the recording, streamed.
//!
//! The body goes to a spool file while SHA-256 and CRC32C (and MD5, only when the sender gave a
//! `Content-MD5`) are computed on the fly — it is never held whole in memory. The sender's
//! checksums are checked, the bytes are staged durably (create-only, keyed by their SHA-256),
//! and only then is `received` set and the upload acknowledged (201). The same bytes again
//! answer 200 with the call's state; different bytes for a received call answer 409 and are
//! kept under `conflicts/` in the staging bucket for review, the first upload untouched.

use super::calls::CallView;
use super::work::spawn_pipeline;
use super::{ApiError, AppState};
use crate::ids::CallId;
use crate::intake::{Digesting, Spool, SpoolError, Spooled, receive};
use crate::store::Outcome;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use futures_util::StreamExt as _;
use std::time::{Duration, Instant};

/// Checksums the sender may give.
#[derive(Debug, Default)]
struct SenderChecksums {
    sha256_hex: Option<String>,
    crc32c_base64: Option<String>,
    md5: Option<[u8; 16]>,
}

fn bad(kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, kind, message)
}

fn sender_checksums(headers: &HeaderMap) -> Result<SenderChecksums, ApiError> {
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(|s| s.trim().to_string())
                    .map_err(|_| bad("bad_checksum", format!("{name}: not text")))
            })
            .transpose()
    };
    let sha256_hex = text("x-checksum-sha256")?
        .map(|v| {
            let v = v.to_ascii_lowercase();
            if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(v)
            } else {
                Err(bad("bad_checksum", "x-checksum-sha256: 64 hex digits"))
            }
        })
        .transpose()?;
    let crc32c_base64 = text("x-checksum-crc32c")?
        .map(
            |v| match base64::engine::general_purpose::STANDARD.decode(&v) {
                Ok(bytes) if bytes.len() == 4 => Ok(v),
                _ => Err(bad("bad_checksum", "x-checksum-crc32c: base64 of 4 bytes")),
            },
        )
        .transpose()?;
    let md5 = text("content-md5")?
        .map(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(&v)
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or_else(|| bad("bad_checksum", "Content-MD5: base64 of 16 bytes"))
        })
        .transpose()?;
    Ok(SenderChecksums {
        sha256_hex,
        crc32c_base64,
        md5,
    })
}

/// 413, counted.
fn too_large(state: &AppState) -> ApiError {
    state
        .metrics
        .uploads
        .with_label_values(&["too_large"])
        .inc();
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "recordings are limited to {} bytes",
            state.config.max_body_bytes
        ),
    )
}

/// Streams the body into a spool ([`crate::intake`]) and checks it against what the sender
/// said.
async fn spool_body(
    state: &AppState,
    call_id: &CallId,
    body: axum::body::Body,
    checksums: &SenderChecksums,
) -> Result<Spooled, ApiError> {
    let digesting = if checksums.md5.is_some() {
        Digesting::WithMd5
    } else {
        Digesting::Recording
    };
    let max = state.config.max_body_bytes;
    let spool_error = |e: SpoolError| match e {
        SpoolError::TooLarge { .. } => too_large(state),
        e @ SpoolError::Io { .. } => ApiError::unavailable(e),
    };
    let mut spool = Spool::create(&state.config.spool_dir, call_id.as_str(), max, digesting)
        .await
        .map_err(spool_error)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad("bad_body", format!("reading the body: {e}")))?;
        spool.write(&chunk).await.map_err(spool_error)?;
    }
    let spooled = spool.finish().await.map_err(spool_error)?;
    if spooled.bytes() == 0 {
        return Err(bad("empty_body", "the recording is empty"));
    }
    if !spooled.is_audio() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_audio",
            "the body is not an audio file (WAV, FLAC, Ogg, MP3 or M4A)",
        ));
    }
    let mismatch = |which: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "checksum_mismatch",
            format!("the body does not match the {which} sent with it"),
        )
    };
    if checksums
        .sha256_hex
        .as_ref()
        .is_some_and(|s| *s != spooled.sha256_hex())
    {
        return Err(mismatch("x-checksum-sha256"));
    }
    if checksums
        .crc32c_base64
        .as_ref()
        .is_some_and(|c| *c != spooled.crc32c_base64())
    {
        return Err(mismatch("x-checksum-crc32c"));
    }
    if checksums.md5.is_some() && checksums.md5 != spooled.md5() {
        return Err(mismatch("Content-MD5"));
    }
    Ok(spooled)
}

pub async fn put_audio(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<CallView>), ApiError> {
    let started = Instant::now();
    let call_id = CallId::parse(&raw).map_err(|e| bad("bad_call_id", e.to_string()))?;
    let checksums = sender_checksums(&headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.config.max_body_bytes) {
        return Err(too_large(&state));
    }
    // A place in the pipeline first, waited for a little when it is full (the body unread
    // meanwhile; at most half the request's time); when none frees, say so before reading it.
    let wait = Duration::from_millis(state.config.queue_wait_ms)
        .min(Duration::from_secs(state.config.request_timeout_s) / 2);
    let permit = match state.queue.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) if !wait.is_zero() => {
            tokio::time::timeout(wait, state.queue.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
        }
        Err(_) => None,
    };
    let Some(permit) = permit else {
        state.metrics.uploads.with_label_values(&["busy"]).inc();
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the processing queue is full; retry later",
        );
        error.retry_after_s = Some(state.config.retry_after_s);
        return Err(error);
    };
    // The staged object keeps the sender's type only when it names audio (or bytes): a client
    // default such as curl's `application/x-www-form-urlencoded` is not what the bytes are, and
    // some S3 front ends treat such a body as a form.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 200)
        .filter(|v| v.starts_with("audio/") || *v == "application/octet-stream")
        .unwrap_or("application/octet-stream")
        .to_string();
    let spooled = match spool_body(&state, &call_id, body, &checksums).await {
        Ok(s) => s,
        Err(e) => {
            if e.kind == "checksum_mismatch" {
                state
                    .metrics
                    .uploads
                    .with_label_values(&["checksum_mismatch"])
                    .inc();
            }
            return Err(e);
        }
    };
    state.metrics.upload_bytes.inc_by(spooled.bytes());
    // Receiving and starting the pipeline run in a task of their own: if this request is dropped
    // now (the client went away, the request timed out), a call that became `received` still
    // gets its pipeline.
    let task_state = state.clone();
    let task_call = call_id.clone();
    let received = state.tasks.spawn(async move {
        let received = receive(
            &task_state.pipeline,
            &task_call,
            &spooled,
            &content_type,
            crate::store::Via::Stream,
        )
        .await;
        drop(spooled);
        if let Ok((record, outcome)) = &received {
            // New bytes; or the same again for a call not stored yet (its run may have been
            // lost): the pipeline runs, once.
            let again = *outcome == Outcome::Unchanged && record.flags.stored.is_none();
            if *outcome == Outcome::Changed || again {
                spawn_pipeline(&task_state, task_call, permit, "processing");
            }
        }
        received
    });
    let (record, outcome) = received
        .await
        .map_err(ApiError::unavailable)?
        .map_err(ApiError::unavailable)?;
    state
        .metrics
        .stage_seconds
        .with_label_values(&["receive"])
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Outcome::Changed => {
            state.metrics.uploads.with_label_values(&["created"]).inc();
            Ok((StatusCode::CREATED, Json(CallView::of(&record))))
        }
        Outcome::Unchanged => {
            state.metrics.uploads.with_label_values(&["same"]).inc();
            Ok((StatusCode::OK, Json(CallView::of(&record))))
        }
        Outcome::Conflict => {
            state.metrics.uploads.with_label_values(&["conflict"]).inc();
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "call {call_id} already has a different recording; this one is kept for review"
                ),
            ))
        }
        Outcome::Refused(why) => Err(ApiError::new(StatusCode::CONFLICT, "refused", why)),
    }
}
