//! The CDR files of an export: what fills in the Start and End events that never arrived.
//!
//! An export holds `{groupId}~{accountId}~{dialogTimestamp}~{dialogId}.cdr.json` beside each
//! recording (format: `ocp-sim/README.md`). Its facts are checked exactly as a CDR event posted
//! to `/v1/cdr` is (they come from outside just the same), then applied as a Start and an End:
//! they fill what the call record lacks and never overwrite what it has.

use crate::ids::CallId;
use crate::server::cdr::{CdrEvent, EventType, validate};
use crate::store::CallChange;
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Largest CDR file read, bytes (they are a few hundred).
pub const MAX_CDR_BYTES: u64 = 256 << 10;

/// One CDR file of an export.
#[derive(Debug, Clone, Deserialize)]
pub struct ExportCdr {
    pub dialog_id: String,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub group_id: Option<String>,
    pub account_id: Option<String>,
    pub client_id: Option<String>,
    pub ivr_channel: Option<String>,
    pub application: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The call and the changes (Start, End) a CDR file makes, after the same checks as a posted
/// CDR event. An error says what is wrong with the file.
pub fn parse(bytes: &[u8]) -> Result<(CallId, Vec<CallChange>), String> {
    if bytes.len() as u64 > MAX_CDR_BYTES {
        return Err(format!("a CDR file above {MAX_CDR_BYTES} bytes"));
    }
    let cdr: ExportCdr =
        serde_json::from_slice(bytes).map_err(|e| format!("not an export CDR: {e}"))?;
    let event = |event_type, timestamp, duration_ms| CdrEvent {
        event_type,
        call_id: cdr.dialog_id.clone(),
        timestamp,
        group_id: cdr.group_id.clone(),
        account_id: cdr.account_id.clone(),
        client_id: cdr.client_id.clone(),
        ivr_channel: cdr.ivr_channel.clone(),
        application: cdr.application.clone(),
        duration_ms,
        metadata: cdr.metadata.clone(),
    };
    let mut events = Vec::new();
    if let Some(start) = cdr.start {
        events.push(event(EventType::Start, start, None));
    }
    if let Some(end) = cdr.end {
        events.push(event(EventType::End, end, cdr.duration_ms));
    }
    if events.is_empty() {
        return Err("a CDR with neither start nor end".into());
    }
    let mut call = None;
    let mut changes = Vec::with_capacity(events.len());
    for event in &events {
        let (id, change) = validate(event)?;
        call = Some(id);
        changes.push(change);
    }
    Ok((call.expect("at least one event"), changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdr_file_becomes_a_start_and_an_end() {
        let text = br#"{"dialog_id": "dlg-1", "start": "2026-11-24T08:00:00Z",
            "end": "2026-11-24T08:01:00Z", "duration_ms": 60000, "group_id": "grp-a",
            "account_id": "acct-1", "client_id": "acme", "application": "sales-ivr",
            "extra": "ignored"}"#;
        let (call, changes) = parse(text).unwrap();
        assert_eq!(call.as_str(), "dlg-1");
        assert_eq!(changes.len(), 2);
        match &changes[1] {
            CallChange::End { facts, .. } => {
                assert_eq!(facts.duration_ms, Some(60_000));
                assert_eq!(facts.group_id.as_deref(), Some("grp-a"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_cdr_files_are_refused() {
        for text in [
            &br#"{"dialog_id": "../etc/passwd", "end": "2026-11-24T08:01:00Z"}"#[..],
            br#"{"dialog_id": "d", "end": "2026-11-24T08:01:00Z", "group_id": "a#b"}"#,
            br#"{"dialog_id": "d"}"#,
            br#"{"dialog_id": "d", "end": "2026-11-24T08:01:00Z", "application": "a\u0000b"}"#,
            b"not json",
            &[b'{'; 300_000][..],
        ] {
            assert!(
                parse(text).is_err(),
                "{}",
                String::from_utf8_lossy(&text[..40.min(text.len())])
            );
        }
    }
}
