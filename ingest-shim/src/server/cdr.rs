//! `POST /v1/cdr`: CDR Start and End events, one or a batch. Sets `started` / `ended`; repeated
//! events change nothing.

use super::calls::CallView;
use super::{ApiError, AppState};
use crate::ids::{CallId, ClientId};
use crate::store::{CallChange, CdrFacts, Outcome};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Events per request at most.
pub const MAX_EVENTS: usize = 1000;
const MAX_METADATA_ENTRIES: usize = 64;
const MAX_TEXT: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Start,
    End,
}

/// One CDR event as OCP (or `ocp-sim`) sends it.
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

fn check_text(field: &str, value: &Option<String>) -> Result<(), String> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_TEXT || v.chars().any(char::is_control) => Err(
            format!("{field}: 1-{MAX_TEXT} characters, no control characters"),
        ),
        _ => Ok(()),
    }
}

fn check_id(field: &str, value: &Option<String>) -> Result<(), String> {
    match value {
        Some(v) if !callrec_engine::ocp_name::is_safe_id(v) => Err(format!(
            "{field}: 1-128 of A-Z a-z 0-9 - _ ., not starting with '.'"
        )),
        _ => Ok(()),
    }
}

/// Checks one event; returns its call id and the change it makes.
pub(crate) fn validate(event: &CdrEvent) -> Result<(CallId, CallChange), String> {
    let call_id = CallId::parse(&event.call_id).map_err(|e| e.to_string())?;
    check_id("group_id", &event.group_id)?;
    check_id("account_id", &event.account_id)?;
    check_text("ivr_channel", &event.ivr_channel)?;
    check_text("application", &event.application)?;
    let client_id = event
        .client_id
        .as_deref()
        .map(ClientId::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    if event.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(format!("metadata: at most {MAX_METADATA_ENTRIES} entries"));
    }
    for (key, value) in &event.metadata {
        check_text("metadata key", &Some(key.clone()))?;
        if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
            return Err(format!(
                "metadata.{key}: at most {MAX_TEXT} characters, no control characters"
            ));
        }
    }
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
    };
    let at = event.timestamp;
    let change = match event.event_type {
        EventType::Start => CallChange::Start { at, facts },
        EventType::End => CallChange::End { at, facts },
    };
    Ok((call_id, change))
}

/// Applies the events in order; answers with each call's state afterwards.
pub async fn post_cdr(
    State(state): State<AppState>,
    body: Result<Json<CdrBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(|e| bad(format!("not a CDR event or batch: {e}")))?;
    let events = match body {
        CdrBody::Batch { events } => events,
        CdrBody::One(event) => vec![*event],
    };
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(bad(format!("1 to {MAX_EVENTS} events per request")));
    }
    // All or nothing at validation: a bad event refuses the batch before any write.
    let changes = events
        .iter()
        .enumerate()
        .map(|(i, e)| validate(e).map_err(|m| bad(format!("event {i}: {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut calls = Vec::with_capacity(changes.len());
    for ((call_id, change), event) in changes.iter().zip(&events) {
        let (record, applied) = state
            .pipeline
            .store
            .update(call_id, change, Timestamp::now())
            .await
            .map_err(ApiError::unavailable)?;
        let kind = match event.event_type {
            EventType::Start => "start",
            EventType::End => "end",
        };
        let outcome = if applied.outcome == Outcome::Changed {
            "changed"
        } else {
            "unchanged"
        };
        state
            .metrics
            .events
            .with_label_values(&[kind, outcome])
            .inc();
        calls.push(CallView::of(&record));
    }
    Ok(Json(serde_json::json!({ "calls": calls })))
}
