//! OCP's own CDR records (learn.ocp.ai, "CDR Models Schema"): what its streaming subscriptions
//! post and its exports hold, mapped to callrec's call changes.
//!
//! A record is a JSON object with `message_type` (`dialog_start`, `dialog_end`), `id` (the
//! dialog id: the call id and the deduplication key) and `time` (epoch ms), and the rest of
//! OCP's fields. The record's own `group` is the common id of the orchestrator dialog and its
//! flow dialogs — *not* the tenant group that exports and recording names are per — so the tenant
//! group always comes from outside the record (the request's `?group=`, an export's group).
//!
//! | record field | call fact |
//! | --- | --- |
//! | `id` | call id |
//! | `time` | Start or End time |
//! | (the request's or export's group) | `group_id` |
//! | `flow.account_id` | `account_id` |
//! | `channel` | `ivr_channel` |
//! | `direction` | `direction` |
//! | `flow.name` | `application` |
//! | `flow.type` | `application_type` |
//! | `incoming_attached_data` | `metadata` (at most 64 entries) |
//! | `duration` (dialog_end, ms) | `duration_ms` |
//! | the whole record, at most [`MAX_RECORD_BYTES`] | `ocp_records[message_type]`, into the sidecar |
//!
//! Unknown fields are kept (in the stored record), never refused; a record without
//! `message_type`, `id` or `time`, or with one of the wrong type, is refused with the field
//! named. The public schema shows `dialog_start` in full; `dialog_end`'s fields beyond the
//! common ones (`duration`) are ocp-sim's documented assumption.

use crate::ids::CallId;
use crate::store::{CallChange, CdrFacts};
use jiff::Timestamp;
use serde_json::{Map, Value};

/// Largest record kept whole on the call (and in its sidecar), bytes of JSON.
pub const MAX_RECORD_BYTES: usize = 16 << 10;
/// Largest record line read at all (a longer line is refused).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The message types callrec takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    DialogStart,
    DialogEnd,
}

impl MessageType {
    pub fn name(self) -> &'static str {
        match self {
            MessageType::DialogStart => "dialog_start",
            MessageType::DialogEnd => "dialog_end",
        }
    }
}

/// Whether a JSON object posted alone is meant as an OCP record rather than callrec's own v1
/// shape: it has `message_type`, or none of v1's keys (`type`, `call_id`, `events`) — so that a
/// record missing `message_type` is refused for that, not for v1's fields.
pub fn is_record(value: &Value) -> bool {
    value.get("message_type").is_some()
        || ["type", "call_id", "events"]
            .iter()
            .all(|key| value.get(key).is_none())
}

/// One record, checked and mapped: the call it is about and the change it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub call_id: CallId,
    pub message_type: MessageType,
    pub change: CallChange,
}

fn text<'a>(record: &'a Map<String, Value>, path: &[&str]) -> Result<Option<&'a str>, String> {
    let mut value = record.get(path[0]);
    for key in &path[1..] {
        value = match value {
            Some(Value::Object(inner)) => inner.get(*key),
            Some(Value::Null) | None => None,
            Some(_) => return Err(format!("{}: an object", path[0])),
        };
    }
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{}: a string", path.join("."))),
    }
}

/// Maps one record of the tenant group `group_id` (already a safe id).
pub fn map_record(record: &Value, group_id: &str) -> Result<Mapped, String> {
    let Value::Object(fields) = record else {
        return Err("a record must be a JSON object".into());
    };
    let message_type = match fields.get("message_type") {
        None | Some(Value::Null) => return Err("message_type: missing".into()),
        Some(Value::String(t)) if t == "dialog_start" => MessageType::DialogStart,
        Some(Value::String(t)) if t == "dialog_end" => MessageType::DialogEnd,
        Some(Value::String(t)) => {
            return Err(format!(
                "message_type: {:?} is not taken here (dialog_start or dialog_end)",
                crate::ocp::http::printable(t)
            ));
        }
        Some(_) => return Err("message_type: a string".into()),
    };
    let call_id = match fields.get("id") {
        None | Some(Value::Null) => return Err("id: missing".into()),
        Some(Value::String(id)) => CallId::parse(id).map_err(|e| format!("id: {e}"))?,
        Some(_) => return Err("id: a string".into()),
    };
    let at = match fields.get("time") {
        None | Some(Value::Null) => return Err("time: missing".into()),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .filter(|t| *t > Timestamp::UNIX_EPOCH)
            .ok_or("time: epoch milliseconds after 1970")?,
        Some(_) => return Err("time: a number (epoch milliseconds)".into()),
    };
    let duration_ms = match (message_type, fields.get("duration")) {
        (_, None | Some(Value::Null)) => None,
        (MessageType::DialogEnd, Some(Value::Number(n))) => Some(
            n.as_u64()
                .filter(|&ms| ms <= 7 * 86_400_000)
                .ok_or("duration: milliseconds, 0 to 7 days")?,
        ),
        (MessageType::DialogEnd, Some(_)) => return Err("duration: a number (ms)".into()),
        // A dialog_start has no duration; an odd field is kept, not used.
        (MessageType::DialogStart, Some(_)) => None,
    };
    let mut metadata = std::collections::BTreeMap::new();
    match fields.get("incoming_attached_data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(data)) => {
            if data.len() > crate::store::record::MAX_METADATA_ENTRIES {
                return Err(format!(
                    "incoming_attached_data: at most {} entries",
                    crate::store::record::MAX_METADATA_ENTRIES
                ));
            }
            for (key, value) in data {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                metadata.insert(key.clone(), value);
            }
        }
        Some(_) => return Err("incoming_attached_data: an object of strings".into()),
    }
    let facts = CdrFacts {
        group_id: Some(group_id.to_string()),
        account_id: text(fields, &["flow", "account_id"])?.map(str::to_string),
        client_id: None,
        ivr_channel: text(fields, &["channel"])?.map(str::to_string),
        application: text(fields, &["flow", "name"])?.map(str::to_string),
        application_type: text(fields, &["flow", "type"])?.map(str::to_string),
        direction: text(fields, &["direction"])?.map(str::to_string),
        duration_ms,
        metadata,
        ocp_records: [(message_type.name().to_string(), capped(fields))].into(),
        facts_truncated: false,
    };
    facts.validate().map_err(|e| {
        // Name the record's field, not ours.
        e.replace("account_id", "flow.account_id")
            .replace("ivr_channel", "channel")
            .replace("application_type", "flow.type")
            .replace("application", "flow.name")
            .replace("metadata", "incoming_attached_data")
    })?;
    let change = match message_type {
        MessageType::DialogStart => CallChange::Start { at, facts },
        MessageType::DialogEnd => CallChange::End { at, facts },
    };
    Ok(Mapped {
        call_id,
        message_type,
        change,
    })
}

/// The record as kept on the call: whole up to [`MAX_RECORD_BYTES`], else its scalar fields
/// only, marked `"callrec_truncated": true`.
fn capped(fields: &Map<String, Value>) -> Value {
    let whole = Value::Object(fields.clone());
    if serde_json::to_vec(&whole).map_or(usize::MAX, |b| b.len()) <= MAX_RECORD_BYTES {
        return whole;
    }
    let mut kept: Map<String, Value> = fields
        .iter()
        .filter(|(_, v)| match v {
            Value::String(s) => s.len() <= 1024,
            Value::Number(_) | Value::Bool(_) => true,
            _ => false,
        })
        .take(64)
        .map(|(k, v)| (k.chars().take(128).collect(), v.clone()))
        .collect();
    kept.insert("callrec_truncated".into(), Value::Bool(true));
    Value::Object(kept)
}

/// The records of an NDJSON text: one JSON value per non-empty line. The error names the line.
pub fn ndjson_records(text: &[u8], max_records: usize) -> Result<Vec<Value>, String> {
    let mut records = Vec::new();
    for (number, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(format!("line {}: above {MAX_LINE_BYTES} bytes", number + 1));
        }
        if records.len() == max_records {
            return Err(format!("at most {max_records} records per request"));
        }
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| format!("line {}: not JSON: {e}", number + 1))?;
        records.push(value);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(extra: Value) -> Value {
        let mut r = serde_json::json!({
            "message_type": "dialog_start",
            "id": "0914D425259F0CD31DBFE2E72D3785E0",
            "time": 1683820113249_i64,
        });
        if let (Value::Object(r), Value::Object(extra)) = (&mut r, extra) {
            r.extend(extra);
        }
        r
    }

    #[test]
    fn a_record_without_its_keys_is_refused_naming_the_field() {
        for (bad, field) in [
            (serde_json::json!({"id": "d", "time": 1}), "message_type"),
            (
                serde_json::json!({"message_type": "dialog_start", "time": 1}),
                "id",
            ),
            (
                serde_json::json!({"message_type": "dialog_end", "id": "d"}),
                "time",
            ),
            (record(serde_json::json!({"time": "yesterday"})), "time"),
            (record(serde_json::json!({"id": "../x"})), "id"),
            (
                record(serde_json::json!({"message_type": "dialog_step"})),
                "message_type",
            ),
            (
                record(serde_json::json!({"message_type": 3})),
                "message_type",
            ),
            (
                record(serde_json::json!({"flow": {"account_id": "a#b"}})),
                "flow.account_id",
            ),
            (record(serde_json::json!({"channel": "a\u{0}b"})), "channel"),
            (record(serde_json::json!({"flow": "x"})), "flow"),
            (
                record(serde_json::json!({"incoming_attached_data": [1]})),
                "incoming_attached_data",
            ),
            (
                serde_json::json!({"message_type": "dialog_end", "id": "d", "time": 5, "duration": -1}),
                "duration",
            ),
        ] {
            let e = map_record(&bad, "grp-a").unwrap_err();
            assert!(e.starts_with(field), "{bad}: {e}");
        }
    }

    #[test]
    fn large_records_are_kept_capped() {
        let big =
            record(serde_json::json!({"app": {"blob": "x".repeat(40_000)}, "channel": "omIVR"}));
        let mapped = map_record(&big, "grp-a").unwrap();
        let CallChange::Start { facts, .. } = mapped.change else {
            panic!()
        };
        let kept = &facts.ocp_records["dialog_start"];
        assert_eq!(kept["callrec_truncated"], true);
        assert_eq!(kept["channel"], "omIVR");
        assert!(kept.get("app").is_none());
        assert!(serde_json::to_vec(kept).unwrap().len() < MAX_RECORD_BYTES);
    }

    #[test]
    fn ndjson_lines_are_records_and_errors_name_the_line() {
        let text = b"{\"a\":1}\r\n\n{\"b\":2}\n";
        assert_eq!(ndjson_records(text, 10).unwrap().len(), 2);
        assert!(
            ndjson_records(b"{}\nnope\n", 10)
                .unwrap_err()
                .starts_with("line 2")
        );
        assert!(ndjson_records(b"{}\n{}\n{}\n", 2).is_err());
    }
}
