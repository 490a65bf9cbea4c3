//! A day's manifest per line of business, written by the audit's scan once every audited
//! group's day is complete; `callrec audit verify` checks one.
//!
//! `manifests/{yyyy}/{mm}/{dd}.jsonl` in each line of business's bucket, written create-only once
//! every audited group's day is complete: one line per call of the day stored in that bucket
//! (its id, key, bytes, SHA-256, CRC32C, processed or stored as it arrived, and the stage that
//! brought it), then a last line with the counts and the SHA-256 of every byte above it — so an
//! auditor checks the manifest with `sha256sum` and each object with its checksums.

use crate::ids::CallId;
use crate::objects::{ObjectError, ObjectStore};
use crate::store::{CallRecord, CallStore, StoreError, Via};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One call in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestLine {
    pub call_id: CallId,
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
    pub crc32c: String,
    /// Processed by the engine (false: stored as it arrived, under `unprocessed/`).
    pub processed: bool,
    /// `stream` (stage 1), `export` (stage 2) or `found` (nothing came through the stream: an
    /// export's CDR made it known).
    pub stage: String,
}

impl ManifestLine {
    /// The line of a stored call; `None` for a call not stored.
    pub fn of(record: &CallRecord) -> Option<(String, ManifestLine)> {
        let object = record.object.as_ref()?;
        record.flags.stored?;
        let processed = record.unprocessed.is_none() && record.processed.is_some();
        let bytes = match (&record.processed, &record.staged) {
            (Some(p), _) if processed => p.output_bytes,
            (_, Some(s)) => s.bytes,
            _ => 0,
        };
        let stage = if record.found_in_export.is_some() {
            "found"
        } else {
            match record.staged.as_ref().and_then(|s| s.via) {
                Some(Via::Export) => "export",
                _ => "stream",
            }
        };
        Some((
            object.bucket.clone(),
            ManifestLine {
                call_id: record.call_id.clone(),
                key: object.key.clone(),
                bytes,
                sha256: object.sha256.clone(),
                crc32c: object.crc32c.clone(),
                processed,
                stage: stage.into(),
            },
        ))
    }
}

/// The key of `day`'s manifest.
pub fn manifest_key(day: Date) -> String {
    format!(
        "manifests/{:04}/{:02}/{:02}.jsonl",
        day.year(),
        day.month(),
        day.day()
    )
}

/// The lines of `day`'s calls stored, by bucket, in call-id order (reads every call of the day).
pub async fn lines_of_day(
    store: &dyn CallStore,
    day: Date,
) -> Result<BTreeMap<String, Vec<ManifestLine>>, StoreError> {
    let mut by_bucket: BTreeMap<String, Vec<ManifestLine>> = BTreeMap::new();
    for id in super::audit::calls_of_day(store, None, day).await? {
        if let Some(record) = store.get(&id).await?
            && let Some((bucket, line)) = ManifestLine::of(&record)
        {
            by_bucket.entry(bucket).or_default().push(line);
        }
    }
    for lines in by_bucket.values_mut() {
        lines.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    }
    Ok(by_bucket)
}

/// The manifest's bytes: a JSON line per call, then the closing line with the counts and the
/// SHA-256 (hex) of every byte before it.
pub fn render(day: Date, bucket: &str, lines: &[ManifestLine]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut out, line).expect("a line serializes");
        out.push(b'\n');
    }
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&out));
    let processed = lines.iter().filter(|l| l.processed).count();
    let closing = serde_json::json!({
        "manifest": {
            "day": day.to_string(),
            "bucket": bucket,
            "calls": lines.len(),
            "processed": processed,
            "unprocessed": lines.len() - processed,
            "bytes": lines.iter().map(|l| l.bytes).sum::<u64>(),
            "sha256_of_lines_above": digest,
        }
    });
    serde_json::to_writer(&mut out, &closing).expect("the closing line serializes");
    out.push(b'\n');
    out
}

/// Writes `day`'s manifest into every line of business's bucket that has none yet (create-only:
/// one written is never rewritten); a bucket with no call that day gets a manifest of none.
pub async fn write_missing(ctx: &super::Context, day: Date) -> Result<(), super::WorkError> {
    let objects = ctx.pipeline.objects.as_ref();
    let key = manifest_key(day);
    let mut missing = Vec::new();
    for line in ctx.pipeline.routing.lines() {
        let seen = missing
            .iter()
            .any(|l: &&crate::routing::LineOfBusiness| l.bucket == line.bucket);
        if !seen && objects.head(&line.bucket, &key).await?.is_none() {
            missing.push(line);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let lines = lines_of_day(ctx.store(), day).await?;
    for line in missing {
        let calls = lines.get(&line.bucket).map_or(&[][..], Vec::as_slice);
        let body = render(day, &line.bucket, calls);
        let meta = crate::objects::ObjectMeta {
            content_type: "application/x-ndjson".into(),
            crc32c: crate::objects::Crc32c::of(&body),
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)),
            metadata: Default::default(),
            storage_class: line.storage_class.clone(),
            kms_key_id: line.kms_key_id.clone(),
        };
        match objects
            .put_new(
                &line.bucket,
                &key,
                crate::objects::Body::Bytes(body.into()),
                &meta,
            )
            .await
        {
            // Another replica wrote it first (the same lines, or the day changed since: its
            // stands, never rewritten).
            Ok(_) | Err(ObjectError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(bucket = %line.bucket, %key, calls = calls.len(), "manifest written");
    }
    Ok(())
}

/// What is wrong with a manifest and the objects it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The manifest itself: no closing line, or its lines do not hash to what it says.
    Manifest(String),
    /// An object named is not there.
    Absent { key: String },
    /// An object's bytes do not hash to the manifest's SHA-256.
    Altered {
        key: String,
        expected: String,
        actual: String,
    },
}

/// Checks `manifest` (its bytes) against its closing line, then every object it names, read
/// back and hashed. Returns the calls checked and every problem found.
pub async fn verify(
    objects: &dyn ObjectStore,
    bucket: &str,
    manifest: &[u8],
) -> Result<(usize, Vec<Problem>), ObjectError> {
    let mut problems = Vec::new();
    let body = manifest.strip_suffix(b"\n").unwrap_or(manifest);
    let (above, closing) = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => (&manifest[..=i], &body[i + 1..]),
        None => (&manifest[..0], body),
    };
    let said = serde_json::from_slice::<serde_json::Value>(closing)
        .ok()
        .and_then(|v| {
            v["manifest"]["sha256_of_lines_above"]
                .as_str()
                .map(str::to_string)
        });
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(above));
    match said {
        None => problems.push(Problem::Manifest("no closing line".into())),
        Some(said) if said != actual => problems.push(Problem::Manifest(format!(
            "its lines hash to {actual}, its closing line says {said}"
        ))),
        Some(_) => {}
    }
    let mut checked = 0;
    for raw in above.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(line) = serde_json::from_slice::<ManifestLine>(raw) else {
            problems.push(Problem::Manifest(format!(
                "a line that is not a call: {}",
                String::from_utf8_lossy(raw)
                    .chars()
                    .take(120)
                    .collect::<String>()
            )));
            continue;
        };
        checked += 1;
        match objects.get(bucket, &line.key, None).await {
            Ok(bytes) => {
                let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                if hash != line.sha256 {
                    problems.push(Problem::Altered {
                        key: line.key,
                        expected: line.sha256,
                        actual: hash,
                    });
                }
            }
            Err(ObjectError::NotFound { .. }) => problems.push(Problem::Absent { key: line.key }),
            Err(e) => return Err(e),
        }
    }
    Ok((checked, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, key: &str, sha: &str) -> ManifestLine {
        ManifestLine {
            call_id: CallId::parse(id).unwrap(),
            key: key.into(),
            bytes: 10,
            sha256: sha.into(),
            crc32c: "AAAAAA==".into(),
            processed: true,
            stage: "stream".into(),
        }
    }

    #[test]
    fn the_closing_line_hashes_the_lines_above_and_the_key_is_by_day() {
        let day: Date = "2026-12-03".parse().unwrap();
        assert_eq!(manifest_key(day), "manifests/2026/12/03.jsonl");
        let body = render(
            day,
            "b",
            &[line("c-1", "k1", "aa"), line("c-2", "k2", "bb")],
        );
        let text = String::from_utf8(body.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let above = format!("{}\n{}\n", lines[0], lines[1]);
        let closing: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(
            closing["manifest"]["sha256_of_lines_above"],
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(above.as_bytes()))
        );
        assert_eq!(closing["manifest"]["calls"], 2);
    }
}
