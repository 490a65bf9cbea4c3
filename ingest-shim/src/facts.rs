//! CDR facts a call record could not keep.
//!
//! A call record has a size bound ([`crate::store::MAX_RECORD_BYTES`], metadata capped in
//! entries and bytes): an event whose facts do not all fit leaves a truncated, flagged copy
//! (`cdr.facts_truncated`). Such an event's facts are kept whole in the staging bucket, under
//! `facts/{call_id}/{sha256}.json` (create-only, keyed by content: an event sent again finds its
//! own object), and go into the call's sidecar beside the audio when it is stored
//! (`cdr_overflow`), then leave staging. Like `conflicts/`, `facts/` is outside the staging
//! prefix, so the staging lifecycle rule does not expire facts still waiting for their audio.

use crate::ids::CallId;
use crate::objects::{Body, ObjectError, ObjectMeta, ObjectStore};
use crate::store::{CallChange, CallRecord, CdrFacts};
use sha2::Digest as _;

/// Most events' facts a sidecar carries in `cdr_overflow` (each one event's, bounded by the
/// event limits): further ones stay in staging, and the sidecar says how many were left.
pub const MAX_OVERFLOW_EVENTS: usize = 64;

fn prefix(call_id: &CallId) -> String {
    format!("facts/{call_id}/")
}

/// The facts of `change` that `record` (the call after the change) did not keep, with the
/// event's kind (`start`, `end`): `None` when it kept them all. A key already present with
/// another value is not a loss (the first value of a key stands, by design).
pub fn left_out<'c>(
    change: &'c CallChange,
    record: &CallRecord,
) -> Option<(&'static str, &'c CdrFacts)> {
    let (kind, facts) = match change {
        CallChange::Start { facts, .. } => ("start", facts),
        CallChange::End { facts, .. } => ("end", facts),
        _ => return None,
    };
    if !record.cdr.facts_truncated {
        return None;
    }
    let kept = &record.cdr;
    let lost = facts
        .metadata
        .keys()
        .any(|k| !kept.metadata.contains_key(k))
        || facts
            .ocp_records
            .keys()
            .any(|k| !kept.ocp_records.contains_key(k));
    lost.then_some((kind, facts))
}

/// After `change` was applied to the call (now `record`): keeps the event's facts whole if the
/// record left any out.
pub async fn keep_left_out(
    objects: &dyn ObjectStore,
    bucket: &str,
    change: &CallChange,
    record: &CallRecord,
) -> Result<(), ObjectError> {
    match left_out(change, record) {
        Some((kind, facts)) => keep(objects, bucket, &record.call_id, kind, facts).await,
        None => Ok(()),
    }
}

/// Keeps `facts` (an event's, whole) for `call_id` in the staging bucket, create-only.
async fn keep(
    objects: &dyn ObjectStore,
    bucket: &str,
    call_id: &CallId,
    event: &str,
    facts: &CdrFacts,
) -> Result<(), ObjectError> {
    let body = serde_json::to_vec(&serde_json::json!({ "event": event, "facts": facts }))
        .expect("facts serialize");
    let sha256 = hex::encode(sha2::Sha256::digest(&body));
    let key = format!("{}{sha256}.json", prefix(call_id));
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("call-id".to_string(), call_id.to_string());
    let meta = ObjectMeta {
        content_type: "application/json".into(),
        crc32c: crate::objects::Crc32c::of(&body),
        sha256,
        metadata,
        storage_class: None,
        kms_key_id: None,
    };
    match objects
        .put_new(bucket, &key, Body::Bytes(body.into()), &meta)
        .await
    {
        Ok(_) | Err(ObjectError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What the sidecar carries of the facts kept for `call_id`: the events (at most
/// [`MAX_OVERFLOW_EVENTS`]) and how many more there were.
#[derive(Debug, Default)]
pub struct Overflow {
    pub events: Vec<serde_json::Value>,
    pub left: usize,
    /// The objects read, to remove once the sidecar is written.
    pub keys: Vec<String>,
}

/// Reads the facts kept for `call_id`.
pub async fn read(
    objects: &dyn ObjectStore,
    bucket: &str,
    call_id: &CallId,
) -> Result<Overflow, ObjectError> {
    let mut overflow = Overflow::default();
    let mut cursor = None;
    loop {
        let page = objects
            .list(bucket, &prefix(call_id), 1000, cursor.as_deref())
            .await?;
        for info in page.objects {
            if overflow.events.len() >= MAX_OVERFLOW_EVENTS {
                overflow.left += 1;
                continue;
            }
            let body = objects.get(bucket, &info.key, None).await?;
            // Written by `keep`; anything else under the prefix is not ours to interpret.
            if let Ok(event) = serde_json::from_slice(&body) {
                overflow.events.push(event);
                overflow.keys.push(info.key);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(overflow),
        }
    }
}

/// Removes the facts read into a stored call's sidecar. Best effort: one left behind is a copy.
pub async fn remove(objects: &dyn ObjectStore, bucket: &str, call_id: &CallId, keys: &[String]) {
    for key in keys {
        if let Err(e) = objects.delete(bucket, key).await {
            tracing::warn!(call_id = %call_id, key = %key, error = %e, "removing kept CDR facts failed; left in the staging bucket");
        }
    }
}
