//! `POST /v1/cdr`: CDR Start and End events, one or a batch, in callrec's v1 shape or as OCP's
//! own records ([`crate::ocp::cdr`]). Sets `started` / `ended`; repeated events change nothing.

use super::calls::CallView;
use super::{ApiError, AppState};
use crate::ids::{CallId, ClientId};
use crate::store::{CallChange, CdrFacts, Outcome};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Events per request at most.
pub const MAX_EVENTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Start,
    End,
}

/// One CDR event in callrec's own v1 shape (DESIGN.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrEvent {
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub call_id: String,
    pub timestamp: Timestamp,
    pub group_id: Option<String>,
    pub account_id: Option<String>,
    pub client_id: Option<String>,
    pub ivr_channel: Option<String>,
    pub application: Option<String>,
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The body: one event, or `{"events": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CdrBody {
    Batch { events: Vec<CdrEvent> },
    One(Box<CdrEvent>),
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// Checks one event; returns its call id and the change it makes.
pub(crate) fn validate(event: &CdrEvent) -> Result<(CallId, CallChange), String> {
    let call_id = CallId::parse(&event.call_id).map_err(|e| e.to_string())?;
    let client_id = event
        .client_id
        .as_deref()
        .map(ClientId::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    if event.event_type == EventType::Start && event.duration_ms.is_some() {
        return Err("duration_ms belongs to an end event".into());
    }
    let facts = CdrFacts {
        group_id: event.group_id.clone(),
        account_id: event.account_id.clone(),
        client_id,
        ivr_channel: event.ivr_channel.clone(),
        application: event.application.clone(),
        duration_ms: event.duration_ms,
        metadata: event.metadata.clone(),
        ..CdrFacts::default()
    };
    facts.validate()?;
    let at = event.timestamp;
    let change = match event.event_type {
        EventType::Start => CallChange::Start { at, facts },
        EventType::End => CallChange::End { at, facts },
    };
    Ok((call_id, change))
}

/// Where a native record's OCP group comes from: `?group=G`, else the `X-OCP-Group` header,
/// else `ocp.default_group`.
#[derive(Debug, Deserialize)]
pub struct CdrQuery {
    group: Option<String>,
}

/// A checked change and what to count it as.
#[derive(Debug, Clone)]
pub struct Checked {
    pub call_id: CallId,
    pub change: CallChange,
    /// `start` or `end`, for `callrec_cdr_events_total`.
    pub kind: &'static str,
}

/// Checks a whole `POST /v1/cdr` body without writing anything: callrec's v1 events (one, or
/// `{"events": [...]}`) or OCP's native records (one object with `message_type`, an array, or
/// NDJSON when `ndjson`). Native records are for `group` — the OCP group and where it came
/// from, or why there is none. Any bad event refuses the whole body with a message naming it.
/// Pure: the fuzz target `cdr_body` runs it on arbitrary bytes.
pub fn check_body(
    body: &[u8],
    ndjson: bool,
    group: &Result<(String, &'static str), String>,
) -> Result<Vec<Checked>, String> {
    if ndjson {
        let records = crate::ocp::cdr::ndjson_records(body, MAX_EVENTS)?;
        return native(group, &records);
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("not a CDR event, record or batch: {e}"))?;
    match value {
        serde_json::Value::Array(records) => native(group, &records),
        record if crate::ocp::cdr::is_record(&record) => {
            native(group, std::slice::from_ref(&record))
        }
        v1 => {
            let events = match serde_json::from_value::<CdrBody>(v1)
                .map_err(|e| format!("not a CDR event or batch: {e}"))?
            {
                CdrBody::Batch { events } => events,
                CdrBody::One(event) => vec![*event],
            };
            if events.is_empty() || events.len() > MAX_EVENTS {
                return Err(format!("1 to {MAX_EVENTS} events per request"));
            }
            events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let (call_id, change) = validate(e).map_err(|m| format!("event {i}: {m}"))?;
                    let kind = match e.event_type {
                        EventType::Start => "start",
                        EventType::End => "end",
                    };
                    Ok(Checked {
                        call_id,
                        change,
                        kind,
                    })
                })
                .collect()
        }
    }
}

/// `POST /v1/cdr`: the body checked by [`check_body`] (all of it before any write), then applied
/// in order; the answer holds each call's state afterwards.
pub async fn post_cdr(
    State(state): State<AppState>,
    Query(query): Query<CdrQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ndjson = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|v| matches!(v.as_str(), "application/x-ndjson" | "application/jsonl"));
    let group = group_of(&state, &query, &headers);
    let checked = check_body(&body, ndjson, &group).map_err(bad)?;
    let mut calls = Vec::with_capacity(checked.len());
    for item in &checked {
        let (record, applied) = state
            .pipeline
            .store
            .update(&item.call_id, &item.change, Timestamp::now())
            .await
            .map_err(ApiError::unavailable)?;
        let outcome = if applied.outcome == Outcome::Changed {
            "changed"
        } else {
            "unchanged"
        };
        state
            .metrics
            .events
            .with_label_values(&[item.kind, outcome])
            .inc();
        // Facts the record could not keep are kept whole for the sidecar, before the answer.
        let pipeline = &state.pipeline;
        crate::facts::keep_left_out(
            pipeline.objects.as_ref(),
            &pipeline.routing.staging.bucket,
            &item.change,
            &record,
        )
        .await
        .map_err(ApiError::unavailable)?;
        // A recording that waited for this End is routed and processed now.
        if item.kind == "end" && applied.outcome == Outcome::Changed {
            super::work::start_after_end(&state, &record);
        }
        calls.push(CallView::of(&record));
    }
    Ok(Json(serde_json::json!({ "calls": calls })))
}

/// The OCP group of a request's native records: `?group=G`, else the `X-OCP-Group` header,
/// else `ocp.default_group`; with where it came from, or why there is none.
fn group_of(
    state: &AppState,
    query: &CdrQuery,
    headers: &HeaderMap,
) -> Result<(String, &'static str), String> {
    if let Some(group) = &query.group {
        Ok((group.clone(), "?group="))
    } else if let Some(header) = headers.get("x-ocp-group") {
        let group = header
            .to_str()
            .map_err(|_| "X-OCP-Group: not text".to_string())?;
        Ok((group.to_string(), "X-OCP-Group"))
    } else if let Some(group) = &state.default_group {
        Ok((group.clone(), "ocp.default_group"))
    } else {
        Err(
            "OCP's records do not carry the OCP group (tenant) they belong to: give it as \
             ?group=G or the X-OCP-Group header (or set ocp.default_group)"
                .into(),
        )
    }
}

/// Checks OCP's native records (all of them, before any write) for the request's group.
fn native(
    group: &Result<(String, &'static str), String>,
    records: &[serde_json::Value],
) -> Result<Vec<Checked>, String> {
    if records.is_empty() || records.len() > MAX_EVENTS {
        return Err(format!("1 to {MAX_EVENTS} records per request"));
    }
    let (group, from) = group.clone()?;
    if !crate::ids::is_safe_id(&group) {
        return Err(format!(
            "{from}: an OCP group id, 1-128 of A-Z a-z 0-9 - _ ."
        ));
    }
    records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let mapped = crate::ocp::cdr::map_record(record, &group)
                .map_err(|m| format!("record {i}: {m}"))?;
            Ok(Checked {
                call_id: mapped.call_id,
                kind: match mapped.message_type {
                    crate::ocp::cdr::MessageType::DialogStart => "start",
                    crate::ocp::cdr::MessageType::DialogEnd => "end",
                },
                change: mapped.change,
            })
        })
        .collect()
}
