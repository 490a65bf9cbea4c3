//! OCP's CDR records of a simulated call, as OCP's CDR models schema describes them
//! (learn.ocp.ai, "CDR Models Schema"): a `dialog_start` with every documented field, and a
//! `dialog_end`, whose full schema the public documentation does not show — its fields beyond
//! the common ones (`duration`, `end_reason`) are this simulator's assumption (README).

use crate::SimCall;
use serde_json::{Value, json};
use sha2::Digest as _;

/// The IVR application of a call: `sales-ivr` for ids ending in `0`, else `care-ivr` (so routing
/// rules have something to route).
pub fn application(call: &SimCall) -> &'static str {
    if call.call_id.ends_with('0') {
        "sales-ivr"
    } else {
        "care-ivr"
    }
}

fn hex_of(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The fields a call's records share.
fn common(call: &SimCall, message_type: &str, time_ms: i64) -> serde_json::Map<String, Value> {
    let digest = hex_of(&call.call_id);
    let origin = format!(
        "+30210555{:04}",
        u32::from_str_radix(&digest[..4], 16).unwrap_or(0) % 10_000
    );
    let app = application(call);
    let Value::Object(fields) = json!({
        "message_type": message_type,
        "id": call.call_id,
        // The orchestrator dialog's common id: not the tenant group.
        "group": format!("{}.{}.{}", &digest[..40], call.start.as_millisecond(), &digest[40..63]),
        "time": time_ms,
        "origin_uri": origin,
        "hashed_origin_uri": hex_of(&origin),
        "destination_uri": "+18005550100",
        "connection_id": digest[..32].to_ascii_uppercase(),
        "channel": "omIVR",
        "device_type": if digest.as_bytes()[0].is_multiple_of(2) { "mobile" } else { "landline" },
        "direction": "inbound",
        "test_flag": false,
        "flow": {
            "id": format!("{}.{app}.Banking2.MiniApps.{}", call.account_id, call.group_id),
            "account_id": call.account_id,
            "name": app,
            "type": "Banking2",
            "diamant_app_name": "MiniApps",
            "uuid": format!("{}-{}-{}-{}-{}", &digest[0..8], &digest[8..12], &digest[12..16], &digest[16..20], &digest[20..32]),
        },
    }) else {
        unreachable!("a JSON object literal")
    };
    fields
}

/// The call's `dialog_start`.
pub fn dialog_start(call: &SimCall) -> Value {
    let mut fields = common(call, "dialog_start", call.start.as_millisecond());
    let digest = hex_of(&call.call_id);
    fields.insert(
        "incoming_attached_data".into(),
        json!({"ani_country": "GR", "language": "en-US"}),
    );
    fields.insert(
        "asr".into(),
        json!({"mrcp_session_id": digest[32..64].to_ascii_uppercase()}),
    );
    fields.insert(
        "diamant".into(),
        json!({"id": "sim-diamant-1", "version": "10.0.0", "region": "sim-local-1"}),
    );
    fields.insert(
        "app".into(),
        json!({"name": application(call), "version": "1.0"}),
    );
    Value::Object(fields)
}

/// The call's `dialog_end` (assumed fields: `duration` in ms, `end_reason`).
pub fn dialog_end(call: &SimCall) -> Value {
    let mut fields = common(call, "dialog_end", call.end.as_millisecond());
    fields.insert("duration".into(), call.duration_ms.into());
    fields.insert("end_reason".into(), "hangup".into());
    Value::Object(fields)
}
