//! `GET /v1/calls/{call_id}`: the flags, timestamps, report and object location.

use super::{ApiError, AppState};
use crate::ids::CallId;
use crate::store::{CallRecord, Flags, StoredObject};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

/// The public view of a call (DESIGN.md's field names).
#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub call_id: String,
    pub group_id: Option<String>,
    pub line_of_business: Option<String>,
    pub status: &'static str,
    pub flags: Flags,
    pub object: Option<ObjectView>,
    pub report: Option<serde_json::Value>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Stored as it arrived, unprocessed, and why (absent when processed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unprocessed: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectView {
    pub bucket: String,
    pub key: String,
    pub crc32c: String,
    pub sha256: String,
}

impl CallView {
    pub fn of(record: &CallRecord) -> Self {
        CallView {
            call_id: record.call_id.to_string(),
            group_id: record.cdr.group_id.clone(),
            line_of_business: record.line_of_business.clone(),
            status: record.status.name(),
            flags: record.flags.clone(),
            object: record.object.as_ref().map(|o: &StoredObject| ObjectView {
                bucket: o.bucket.clone(),
                key: o.key.clone(),
                crc32c: o.crc32c.clone(),
                sha256: o.sha256.clone(),
            }),
            report: record.processed.as_ref().map(|p| {
                serde_json::json!({
                    "duration_ms": p.duration_ms,
                    "integrated_lufs": p.integrated_lufs,
                    "true_peak_dbtp": p.true_peak_dbtp,
                    "speech_level_dbov": p.speech_level_dbov,
                    "gain_db": p.gain_db,
                    "output_bytes": p.output_bytes,
                    "engine": p.report,
                })
            }),
            attempts: record.attempts,
            last_error: record.last_error.clone(),
            unprocessed: record.unprocessed.clone(),
        }
    }
}

pub async fn get_call(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    let call_id = CallId::parse(&raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_call_id", e.to_string()))?;
    match state.pipeline.store.get(&call_id).await {
        Ok(Some(record)) => Ok(Json(CallView::of(&record))),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no call {call_id}"),
        )),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}
