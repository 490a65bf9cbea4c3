//! The call record and the rules by which it changes.
//!
//! The rules are written once, here, as a pure function ([`CallRecord::apply`]); every backend
//! only provides an atomic compare-and-swap on a versioned record. So the backends cannot
//! disagree on what an event means, and a change that would move a flag backwards, or repeat one,
//! is decided before any write.

use crate::ids::{CallId, ClientId};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The five steps of a call's life, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// CDR Start seen.
    Started,
    /// CDR End seen: the call now expects a recording.
    Ended,
    /// The recording is staged durably (the upload was acknowledged after this).
    Received,
    /// The engine processed it; the report is stored.
    Processed,
    /// The processed audio is in its line of business's bucket.
    Stored,
}

impl Flag {
    pub const ALL: [Flag; 5] = [
        Flag::Started,
        Flag::Ended,
        Flag::Received,
        Flag::Processed,
        Flag::Stored,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flag::Started => "started",
            Flag::Ended => "ended",
            Flag::Received => "received",
            Flag::Processed => "processed",
            Flag::Stored => "stored",
        }
    }
}

/// When each flag was set (`None`: not yet). Started/ended carry the CDR's event time; the
/// others the time callrec reached the step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    pub received: Option<Timestamp>,
    pub processed: Option<Timestamp>,
    pub stored: Option<Timestamp>,
}

impl Flags {
    pub fn get(&self, flag: Flag) -> Option<Timestamp> {
        match flag {
            Flag::Started => self.started,
            Flag::Ended => self.ended,
            Flag::Received => self.received,
            Flag::Processed => self.processed,
            Flag::Stored => self.stored,
        }
    }

    fn slot(&mut self, flag: Flag) -> &mut Option<Timestamp> {
        match flag {
            Flag::Started => &mut self.started,
            Flag::Ended => &mut self.ended,
            Flag::Received => &mut self.received,
            Flag::Processed => &mut self.processed,
            Flag::Stored => &mut self.stored,
        }
    }

    /// Sets `flag` at `at` unless it is set already (a flag never moves). True if it was set now.
    fn set(&mut self, flag: Flag, at: Timestamp) -> bool {
        let slot = self.slot(flag);
        if slot.is_some() {
            return false;
        }
        *slot = Some(at);
        true
    }

    /// The latest step reached, if any.
    pub fn last(&self) -> Option<Flag> {
        Flag::ALL.into_iter().rev().find(|&f| self.get(f).is_some())
    }
}

/// What the daily audit found of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMark {
    /// Made known by an OCP export's CDR record: nothing of it had arrived.
    Found,
    /// Absent from OCP's CDR export of its day.
    NotInOcp,
}

/// Why a call waits for a person: what `callrec redrive` selects by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Reconciliation gave up on it (status `lost`).
    Lost,
    /// Stored as it arrived, unprocessed (or re-processed, its original not yet removed).
    Unprocessed,
}

impl Attention {
    pub fn name(self) -> &'static str {
        match self {
            Attention::Lost => "lost",
            Attention::Unprocessed => "unprocessed",
        }
    }
}

/// Where a call stands as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Still needs something.
    #[default]
    Pending,
    /// Stored and verified.
    Complete,
    /// Different bytes arrived for a call that already had some: kept for review, never
    /// overwritten. Sticky until a person clears it.
    Conflict,
    /// Reconciliation gave up: past OCP's retention or out of attempts. Counted and logged.
    Lost,
}

impl CallStatus {
    pub fn name(self) -> &'static str {
        match self {
            CallStatus::Pending => "pending",
            CallStatus::Complete => "complete",
            CallStatus::Conflict => "conflict",
            CallStatus::Lost => "lost",
        }
    }
}

/// Facts a CDR event carries. Empty fields are filled by later events, never overwritten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrFacts {
    /// OCP group id (the unit OCP exports by).
    pub group_id: Option<String>,
    pub account_id: Option<String>,
    pub client_id: Option<ClientId>,
    pub ivr_channel: Option<String>,
    /// The IVR application (OCP: the flow's name).
    pub application: Option<String>,
    /// The application's type (OCP: the flow's type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// `inbound` or `outbound`, as OCP reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Duration the CDR reports, ms (End events).
    pub duration_ms: Option<u64>,
    /// Correlation metadata (keys are kept; a later event adds keys, never replaces values).
    pub metadata: BTreeMap<String, String>,
    /// OCP's own CDR records of the call, by message type (`dialog_start`, `dialog_end`), each
    /// as received and size-capped ([`crate::ocp::cdr`]): they go into the sidecar whole.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ocp_records: BTreeMap<String, serde_json::Value>,
    /// Facts were left out to keep the record within its size (metadata past
    /// [`MAX_METADATA_ENTRIES`] or [`MAX_METADATA_BYTES`], or what [`CallRecord::fit`] dropped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub facts_truncated: bool,
}

/// Most metadata entries a call keeps.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Most bytes of metadata (keys and values) a call keeps, across all its events.
pub const MAX_METADATA_BYTES: usize = 32 << 10;
/// Largest serialized call record written: DynamoDB refuses items above 400 KB, and a record
/// that cannot be written can never record anything again.
pub const MAX_RECORD_BYTES: usize = 300 << 10;
/// Longest text fact or metadata value, bytes.
pub const MAX_TEXT: usize = 1024;

fn check_text(field: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_TEXT || v.chars().any(char::is_control) => Err(
            format!("{field}: 1-{MAX_TEXT} characters, no control characters"),
        ),
        _ => Ok(()),
    }
}

fn check_id(field: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(v) if !crate::ids::is_safe_id(v) => Err(format!(
            "{field}: 1-128 of A-Z a-z 0-9 - _ ., not starting with '.'"
        )),
        _ => Ok(()),
    }
}

impl CdrFacts {
    /// Checks facts that came from outside (an event, a record, an export): ids safe in keys
    /// and queries, texts bounded and printable, metadata bounded. The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        check_id("group_id", self.group_id.as_deref())?;
        check_id("account_id", self.account_id.as_deref())?;
        check_text("ivr_channel", self.ivr_channel.as_deref())?;
        check_text("application", self.application.as_deref())?;
        check_text("application_type", self.application_type.as_deref())?;
        check_text("direction", self.direction.as_deref())?;
        if self.metadata.len() > MAX_METADATA_ENTRIES {
            return Err(format!("metadata: at most {MAX_METADATA_ENTRIES} entries"));
        }
        for (key, value) in &self.metadata {
            check_text("metadata key", Some(key))?;
            if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
                return Err(format!(
                    "metadata.{key}: at most {MAX_TEXT} characters, no control characters"
                ));
            }
        }
        Ok(())
    }

    /// Fills what is missing from `other`; true if anything changed.
    fn fill_from(&mut self, other: &CdrFacts) -> bool {
        fn fill<T: Clone>(slot: &mut Option<T>, value: &Option<T>) -> bool {
            if slot.is_none() && value.is_some() {
                *slot = value.clone();
                return true;
            }
            false
        }
        let mut changed = fill(&mut self.group_id, &other.group_id);
        changed |= fill(&mut self.account_id, &other.account_id);
        changed |= fill(&mut self.client_id, &other.client_id);
        changed |= fill(&mut self.ivr_channel, &other.ivr_channel);
        changed |= fill(&mut self.application, &other.application);
        changed |= fill(&mut self.application_type, &other.application_type);
        changed |= fill(&mut self.direction, &other.direction);
        changed |= fill(&mut self.duration_ms, &other.duration_ms);
        let mut bytes: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        for (key, value) in &other.metadata {
            if self.metadata.contains_key(key) {
                continue;
            }
            let size = key.len() + value.len();
            if self.metadata.len() < MAX_METADATA_ENTRIES && bytes + size <= MAX_METADATA_BYTES {
                self.metadata.insert(key.clone(), value.clone());
                bytes += size;
                changed = true;
            } else if !self.facts_truncated {
                self.facts_truncated = true;
                changed = true;
            }
        }
        for (kind, record) in &other.ocp_records {
            if !self.ocp_records.contains_key(kind) {
                self.ocp_records.insert(kind.clone(), record.clone());
                changed = true;
            }
        }
        changed
    }
}

/// The raw upload, staged until the call is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedAudio {
    /// Object-store key (or path under the staging root) of the raw bytes.
    pub location: String,
    pub bytes: u64,
    /// Hex SHA-256 of the raw bytes: what tells the same upload from a different one.
    pub sha256: String,
    /// Base64 big-endian CRC32C, as S3 reports it.
    pub crc32c: String,
    /// Base64 big-endian CRC64NVME. With the two above, the input digests the engine's report
    /// needs, so the engine does not hash the bytes again (records from before it was kept have
    /// none: the engine hashes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    /// How the recording came: streamed by OCP (stage 1) or recovered from an OCP export
    /// (stage 2). Records from before it was kept have none (they were streamed or exported:
    /// not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// How a recording reached callrec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Uploaded by OCP's streaming side (stage 1).
    Stream,
    /// Downloaded from an OCP export (stage 2: reconciliation, a backfill, an audit's recovery).
    Export,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Stream => "stream",
            Via::Export => "export",
        }
    }
}

/// What processing established (the key figures; the full report lives beside the audio).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedFacts {
    pub duration_ms: f64,
    pub integrated_lufs: Option<f64>,
    pub true_peak_dbtp: Option<f64>,
    pub speech_level_dbov: Option<f64>,
    pub gain_db: f64,
    /// Output checksums: a replay must reproduce them exactly.
    pub output_sha256: String,
    pub output_crc32c: String,
    pub output_bytes: u64,
    /// The engine's decisions and report, as JSON, for replay and for `GET /v1/calls/{id}`.
    pub report: serde_json::Value,
}

/// Where the processed audio is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    pub line_of_business: String,
    pub bucket: String,
    pub key: String,
    pub crc32c: String,
    pub sha256: String,
}

/// Everything callrec knows about one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: CallId,
    #[serde(flatten)]
    pub cdr: CdrFacts,
    pub flags: Flags,
    pub status: CallStatus,
    pub line_of_business: Option<String>,
    /// Where the call's object goes, decided once before the first object write and kept:
    /// a retry or a resumed run writes there even if the facts changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    pub staged: Option<StagedAudio>,
    pub processed: Option<ProcessedFacts>,
    pub object: Option<StoredObject>,
    /// Processing or reconciliation attempts that failed or found nothing.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Different uploads refused for this call (kept under the conflict prefix).
    pub conflicts: u32,
    /// Why the recording was stored as it arrived instead of processed (the engine could not
    /// take it, attempt after attempt): the original bytes are in the bucket, never left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unprocessed: Option<String>,
    /// The original a re-processing replaced (`callrec redrive --unprocessed`): kept here from
    /// the moment the processed recording is the call's object until the original is removed
    /// from the bucket, so a run stopped in between is finished by the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<StoredObject>,
    /// An OCP export's CDR record made this call known: nothing of it had arrived through the
    /// stream (the daily audit counts it as found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_in_export: Option<Timestamp>,
    /// The daily audit found this call absent from OCP's CDR export of its day (a test call,
    /// another group's id): reported, never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_in_ocp: Option<Timestamp>,
    /// Engine runs started since the last one that ended (in a result or an error): each one
    /// that is still counted here stopped the process (killed for memory, a crash). Past the
    /// attempts, the recording is quarantined — stored as it arrived, never run again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub runs_unfinished: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Bumped by every write: the compare-and-swap token.
    pub version: u64,
}

impl CallRecord {
    /// A record that exists only because something arrived for `call_id`.
    pub fn new(call_id: CallId, now: Timestamp) -> Self {
        CallRecord {
            call_id,
            cdr: CdrFacts::default(),
            flags: Flags::default(),
            status: CallStatus::Pending,
            line_of_business: None,
            route: None,
            staged: None,
            processed: None,
            object: None,
            attempts: 0,
            last_error: None,
            conflicts: 0,
            unprocessed: None,
            superseded: None,
            found_in_export: None,
            not_in_ocp: None,
            runs_unfinished: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// Whether the reconciliation scanner should look at this call: ended, not stored, and not
    /// given up on. (A conflicting call that was stored is not pending; one that never was
    /// still is.)
    pub fn is_pending(&self) -> bool {
        self.flags.ended.is_some() && self.flags.stored.is_none() && self.status != CallStatus::Lost
    }

    /// The pending index key: the End time, only while pending.
    pub fn pending_since(&self) -> Option<Timestamp> {
        if self.is_pending() {
            self.flags.ended
        } else {
            None
        }
    }

    /// The work index key: the time the recording arrived, while it is received and not yet
    /// stored (what the service itself must finish, e.g. after a crash).
    pub fn work_since(&self) -> Option<Timestamp> {
        match (self.flags.received, self.flags.stored) {
            (Some(received), None) => Some(received),
            _ => None,
        }
    }

    /// The calendar index's key: the UTC day the call is filed under and its OCP group, once
    /// the group is known. What the daily audit and the day's manifests read.
    pub fn calendar(&self) -> Option<(jiff::civil::Date, &str)> {
        let group = self.cdr.group_id.as_deref()?;
        let day = self.filed_at().to_zoned(jiff::tz::TimeZone::UTC).date();
        Some((day, group))
    }

    /// Whether the call waits for a person (`callrec redrive --lost` / `--unprocessed`), and the
    /// time it is filed under: the attention index's key.
    pub fn attention(&self) -> Option<(Attention, Timestamp)> {
        let kind = if self.status == CallStatus::Lost && self.flags.stored.is_none() {
            Attention::Lost
        } else if self.flags.stored.is_some()
            && (self.unprocessed.is_some() || self.superseded.is_some())
        {
            Attention::Unprocessed
        } else {
            return None;
        };
        Some((kind, self.filed_at()))
    }

    /// The record's size as written (JSON).
    pub fn serialized_bytes(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |b| b.len())
    }

    /// Keeps the record within `max` serialized bytes, whatever it was given: drops the largest
    /// metadata entries, then OCP's kept records, then shortens the last error, flagging the
    /// facts as truncated. True if anything was dropped.
    pub fn fit(&mut self, max: usize) -> bool {
        let mut dropped = false;
        let mut size = self.serialized_bytes();
        while size > max {
            // Drop by estimate (an entry costs at least its text and its JSON punctuation), then
            // measure again: one serialization per round, not per entry.
            let mut estimate = size;
            while estimate > max {
                let largest = self
                    .cdr
                    .metadata
                    .iter()
                    .max_by_key(|(k, v)| k.len() + v.len())
                    .map(|(k, v)| (k.clone(), k.len() + v.len() + 6));
                let freed = if let Some((key, cost)) = largest {
                    self.cdr.metadata.remove(&key);
                    cost
                } else if let Some(kind) = self.cdr.ocp_records.keys().next().cloned() {
                    let record = self.cdr.ocp_records.remove(&kind);
                    serde_json::to_vec(&record).map_or(0, |b| b.len())
                } else if self.last_error.as_ref().is_some_and(|e| e.len() > 200) {
                    let before = self.last_error.as_ref().map_or(0, String::len);
                    self.last_error = self.last_error.as_deref().map(|e| truncate(e, 200));
                    before - 200
                } else {
                    return dropped;
                };
                self.cdr.facts_truncated = true;
                dropped = true;
                estimate = estimate.saturating_sub(freed.max(1));
            }
            size = self.serialized_bytes();
        }
        dropped
    }

    /// Records where the call's recording is stored (once: the same place again changes
    /// nothing, another place is refused).
    fn store_object(&mut self, object: &StoredObject, now: Timestamp) -> Outcome {
        match &self.object {
            Some(existing) if existing == object => Outcome::Unchanged,
            Some(_) => Outcome::Refused("stored already, elsewhere"),
            None => {
                self.object = Some(object.clone());
                self.line_of_business = Some(object.line_of_business.clone());
                self.flags.set(Flag::Stored, now);
                if self.status == CallStatus::Pending || self.status == CallStatus::Lost {
                    self.status = CallStatus::Complete;
                }
                Outcome::Changed
            }
        }
    }

    /// The time a call's objects are filed under: its Start, else End, else when received.
    pub fn filed_at(&self) -> Timestamp {
        self.flags
            .started
            .or(self.flags.ended)
            .or(self.flags.received)
            .unwrap_or(self.created_at)
    }

    /// Applies `change` at time `now`. Returns what happened; the record is modified only when
    /// the outcome says it changed.
    pub fn apply(&mut self, change: &CallChange, now: Timestamp) -> Applied {
        let before = self.flags.clone();
        let outcome = match change {
            CallChange::Start { at, facts } => {
                let set = self.flags.set(Flag::Started, *at);
                let filled = self.cdr.fill_from(facts);
                changed_if(set || filled)
            }
            CallChange::End { at, facts } => {
                let set = self.flags.set(Flag::Ended, *at);
                let filled = self.cdr.fill_from(facts);
                changed_if(set || filled)
            }
            CallChange::Received(staged) => match &self.staged {
                Some(existing) if existing.sha256 == staged.sha256 => Outcome::Unchanged,
                Some(_) => {
                    self.conflicts += 1;
                    self.status = CallStatus::Conflict;
                    Outcome::Conflict
                }
                None => {
                    self.staged = Some(staged.clone());
                    self.flags.set(Flag::Received, now);
                    Outcome::Changed
                }
            },
            CallChange::Processed(facts) => {
                if self.flags.received.is_none() {
                    Outcome::Refused("not received yet")
                } else {
                    match &self.processed {
                        Some(existing) if existing.output_sha256 == facts.output_sha256 => {
                            Outcome::Unchanged
                        }
                        Some(_) => Outcome::Refused("processed already, with a different output"),
                        None => {
                            self.processed = Some(facts.clone());
                            self.flags.set(Flag::Processed, now);
                            self.runs_unfinished = 0;
                            Outcome::Changed
                        }
                    }
                }
            }
            CallChange::Stored(object) => {
                if self.flags.processed.is_none() {
                    Outcome::Refused("not processed yet")
                } else {
                    self.store_object(object, now)
                }
            }
            CallChange::Archived { object, reason } => {
                if self.staged.is_none() {
                    Outcome::Refused("not received yet")
                } else {
                    let outcome = self.store_object(object, now);
                    if outcome == Outcome::Changed {
                        self.unprocessed = Some(truncate(reason, 2000));
                    }
                    outcome
                }
            }
            CallChange::Routed(route) => {
                if self.route.is_some() || self.flags.stored.is_some() {
                    Outcome::Unchanged
                } else {
                    self.line_of_business = Some(route.line_of_business.clone());
                    self.route = Some(route.clone());
                    Outcome::Changed
                }
            }
            CallChange::Processing => {
                self.runs_unfinished = self.runs_unfinished.saturating_add(1);
                Outcome::Changed
            }
            CallChange::Failed { error } => {
                // The run ended (in an error): it did not take the process down.
                self.runs_unfinished = 0;
                self.attempts = self.attempts.saturating_add(1);
                self.last_error = Some(truncate(error, 2000));
                Outcome::Changed
            }
            CallChange::Lost { reason } => {
                if self.flags.stored.is_some() {
                    Outcome::Refused("stored: cannot be lost")
                } else if self.status == CallStatus::Lost {
                    Outcome::Unchanged
                } else {
                    self.status = CallStatus::Lost;
                    self.last_error = Some(truncate(reason, 2000));
                    Outcome::Changed
                }
            }
            CallChange::Reprocessed { facts, object } => match self.object.clone() {
                Some(original) if self.unprocessed.is_some() && self.processed.is_none() => {
                    self.superseded = Some(original);
                    self.object = Some(object.clone());
                    self.processed = Some(facts.clone());
                    self.flags.set(Flag::Processed, now);
                    self.unprocessed = None;
                    self.attempts = 0;
                    self.runs_unfinished = 0;
                    self.last_error = None;
                    Outcome::Changed
                }
                _ if self.object.as_ref() == Some(object) => Outcome::Unchanged,
                _ => Outcome::Refused("not stored unprocessed"),
            },
            CallChange::Audited { mark, at } => {
                let field = match mark {
                    AuditMark::Found => &mut self.found_in_export,
                    AuditMark::NotInOcp => &mut self.not_in_ocp,
                };
                if field.is_some() {
                    Outcome::Unchanged
                } else {
                    *field = Some(*at);
                    Outcome::Changed
                }
            }
            CallChange::OriginalRemoved => {
                if self.superseded.take().is_some() {
                    Outcome::Changed
                } else {
                    Outcome::Unchanged
                }
            }
            CallChange::Redrive => {
                if self.flags.stored.is_some() {
                    Outcome::Refused("stored: nothing to re-drive")
                } else if self.status == CallStatus::Conflict {
                    Outcome::Refused("in conflict: a person decides which recording stands")
                } else if self.status == CallStatus::Pending
                    && self.attempts == 0
                    && self.runs_unfinished == 0
                {
                    Outcome::Unchanged
                } else {
                    self.status = CallStatus::Pending;
                    self.attempts = 0;
                    self.runs_unfinished = 0;
                    self.last_error = None;
                    Outcome::Changed
                }
            }
        };
        let newly_set: Vec<Flag> = Flag::ALL
            .into_iter()
            .filter(|&f| before.get(f).is_none() && self.flags.get(f).is_some())
            .collect();
        if matches!(outcome, Outcome::Changed | Outcome::Conflict) {
            self.updated_at = now;
        }
        Applied { outcome, newly_set }
    }
}

fn changed_if(changed: bool) -> Outcome {
    if changed {
        Outcome::Changed
    } else {
        Outcome::Unchanged
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One thing that happened to a call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallChange {
    /// CDR Start at `at`.
    Start { at: Timestamp, facts: CdrFacts },
    /// CDR End at `at`.
    End { at: Timestamp, facts: CdrFacts },
    /// The raw recording is staged.
    Received(StagedAudio),
    /// The engine's result.
    Processed(ProcessedFacts),
    /// The processed audio is stored.
    Stored(StoredObject),
    /// The recording is stored as it arrived, unprocessed, for this reason.
    Archived {
        object: StoredObject,
        reason: String,
    },
    /// Routing decided where the call's object goes (before the first object write). The
    /// first decision stays: a later one changes nothing.
    Routed(Route),
    /// An engine run is about to start (counted until it ends: see
    /// [`CallRecord::runs_unfinished`]).
    Processing,
    /// An attempt failed.
    Failed { error: String },
    /// Reconciliation gave up on the call.
    Lost { reason: String },
    /// A recording stored unprocessed was processed after all (`callrec redrive
    /// --unprocessed`): `object` (the processed recording) is now the call's, the original is
    /// [`CallRecord::superseded`] until it is removed from the bucket.
    Reprocessed {
        facts: ProcessedFacts,
        object: StoredObject,
    },
    /// The superseded original is gone from the bucket.
    OriginalRemoved,
    /// What the daily audit found of the call (set once).
    Audited { mark: AuditMark, at: Timestamp },
    /// A person puts the call back to work (`callrec redrive`): a lost call is pending again
    /// (stage 2's scans look for it), and a call out of attempts gets them back (the retrier
    /// runs it). Its last error goes; the logs keep the history.
    Redrive,
}

/// Where a call's object goes: its line of business, bucket and key (of the processed audio;
/// a recording stored as it arrived goes beside it, under `unprocessed/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub line_of_business: String,
    pub bucket: String,
    pub key: String,
    /// The extension the key was made with (`{ext}` of the key template).
    pub ext: String,
    /// The facts it was decided on were incomplete (no CDR End yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before_end: bool,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record changed and was written.
    Changed,
    /// Nothing to do: the same event again, or a flag already set.
    Unchanged,
    /// Different bytes for a call that already had some: counted, status `conflict`, the
    /// staged bytes untouched.
    Conflict,
    /// The change does not fit the record's state (e.g. stored before processed).
    Refused(&'static str),
}

/// The outcome of [`CallRecord::apply`], with the flags it set (for the funnel counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub newly_set: Vec<Flag>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn staged(sha: &str) -> StagedAudio {
        StagedAudio {
            location: format!("staging/{sha}"),
            bytes: 10,
            sha256: sha.into(),
            crc32c: "AAAAAA==".into(),
            crc64nvme: None,
            via: None,
        }
    }

    #[test]
    fn flags_never_move_and_repeats_change_nothing() {
        let mut r = CallRecord::new(CallId::parse("c1").unwrap(), t(0));
        let end = CallChange::End {
            at: t(60),
            facts: CdrFacts {
                duration_ms: Some(60_000),
                ..CdrFacts::default()
            },
        };
        assert_eq!(r.apply(&end, t(61)).outcome, Outcome::Changed);
        assert_eq!(r.apply(&end, t(62)).outcome, Outcome::Unchanged);
        let later_end = CallChange::End {
            at: t(90),
            facts: CdrFacts::default(),
        };
        assert_eq!(r.apply(&later_end, t(91)).outcome, Outcome::Unchanged);
        assert_eq!(r.flags.ended, Some(t(60)));
        // Start after End: fills in, End stays.
        let start = CallChange::Start {
            at: t(0),
            facts: CdrFacts {
                group_id: Some("g1".into()),
                ..CdrFacts::default()
            },
        };
        let applied = r.apply(&start, t(92));
        assert_eq!(applied.newly_set, vec![Flag::Started]);
        assert_eq!(r.cdr.group_id.as_deref(), Some("g1"));
        assert_eq!(r.cdr.duration_ms, Some(60_000));
    }

    #[test]
    fn same_bytes_are_a_no_op_and_different_bytes_a_conflict() {
        let mut r = CallRecord::new(CallId::parse("c2").unwrap(), t(0));
        assert_eq!(
            r.apply(&CallChange::Received(staged("aa")), t(1)).outcome,
            Outcome::Changed
        );
        assert_eq!(
            r.apply(&CallChange::Received(staged("aa")), t(2)).outcome,
            Outcome::Unchanged
        );
        assert_eq!(
            r.apply(&CallChange::Received(staged("bb")), t(3)).outcome,
            Outcome::Conflict
        );
        assert_eq!(r.staged.as_ref().unwrap().sha256, "aa");
        assert_eq!(r.status, CallStatus::Conflict);
        assert_eq!(r.conflicts, 1);
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let mut r = CallRecord::new(CallId::parse("c3").unwrap(), t(0));
        let object = StoredObject {
            line_of_business: "sales".into(),
            bucket: "b".into(),
            key: "k".into(),
            crc32c: "x".into(),
            sha256: "y".into(),
        };
        assert!(matches!(
            r.apply(&CallChange::Stored(object), t(1)).outcome,
            Outcome::Refused(_)
        ));
        assert_eq!(r.flags, Flags::default());
    }

    #[test]
    fn metadata_is_capped_in_total_and_the_cut_is_flagged() {
        let mut r = CallRecord::new(CallId::parse("big").unwrap(), t(0));
        // Forty events of 64 entries of 1 KB: far past the budget if kept.
        for event in 0..40 {
            let facts = CdrFacts {
                metadata: (0..64)
                    .map(|i| (format!("k{event}-{i}"), "v".repeat(1000)))
                    .collect(),
                ..CdrFacts::default()
            };
            r.apply(
                &CallChange::End {
                    at: t(1),
                    facts: facts.clone(),
                },
                t(1),
            );
        }
        let bytes: usize = r.cdr.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(bytes <= MAX_METADATA_BYTES, "{bytes}");
        assert!(r.cdr.facts_truncated);
        assert!(r.serialized_bytes() < MAX_RECORD_BYTES);
    }

    #[test]
    fn a_record_is_fitted_under_its_size_limit_however_it_grew() {
        let mut r = CallRecord::new(CallId::parse("huge").unwrap(), t(0));
        // Grown past any limit by other means (an older version, a future field).
        r.cdr.metadata = (0..500)
            .map(|i| (format!("k{i}"), "x".repeat(1000)))
            .collect();
        r.cdr.ocp_records.insert(
            "dialog_start".into(),
            serde_json::json!({"x": "y".repeat(100_000)}),
        );
        assert!(r.serialized_bytes() > 400_000);
        assert!(r.fit(MAX_RECORD_BYTES));
        assert!(r.serialized_bytes() <= MAX_RECORD_BYTES);
        assert!(r.cdr.facts_truncated);
        // Already small: nothing to do.
        assert!(!r.fit(MAX_RECORD_BYTES));
    }
}
