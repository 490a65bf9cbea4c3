//! From a staged recording to a stored one: engine, `processed`, routed create-only write,
//! `stored`, staging removed.
//!
//! The engine runs on its own rayon pool ([`callrec_engine::Engine`]), fed by a bounded
//! crossbeam channel from a dedicated thread; each call's result comes back to the async side
//! through a oneshot. Every step sets its flag only after its effect is durable, so a crash
//! anywhere leaves a call that the next attempt continues from its last flag: the object write
//! is create-only and the engine deterministic, so a repeated step finds its own earlier result
//! ("already exists") instead of writing twice.

use crate::ids::CallId;
use crate::objects::{Body, ObjectError, ObjectMeta, ObjectStore, PutOutcome};
use crate::routing::Routing;
use crate::store::{
    CallChange, CallRecord, CallStore, Outcome, ProcessedFacts, StoreError, StoredObject,
};
use callrec_engine::{AudioSource, Engine, EngineConfig, JobInput, ProcessConfig, Processed};
use jiff::Timestamp;
use std::sync::Arc;
use tokio::sync::oneshot;

/// How far the recording's duration may differ from the CDR's, ms.
pub const DURATION_TOLERANCE_MS: f64 = 1500.0;

/// Why a call could not be taken further (recorded on the call as `last_error`).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("engine: {0}")]
    Engine(#[from] callrec_engine::EngineError),
    #[error("routing: {0}")]
    Route(#[from] crate::routing::RouteError),
    #[error("the recording lasts {actual_ms:.0} ms, the CDR says {expected_ms} ms")]
    DurationMismatch { expected_ms: u64, actual_ms: f64 },
    #[error("{0}")]
    Refused(&'static str),
    #[error("the engine has stopped")]
    EngineGone,
    /// Replaying the recorded decisions did not reproduce the recorded output: the stored
    /// report and this engine disagree. Never stored over; a person must look.
    #[error("replaying call {call_id} gave output {actual}, the recorded one is {expected}")]
    ReplayMismatch {
        call_id: String,
        expected: String,
        actual: String,
    },
    #[error("the recorded decisions of call {0} cannot be read: {1}")]
    BadDecisions(String, String),
    /// The engine was started on the recording this many times and never came back: each time
    /// the process stopped (killed for memory, a crash). It is not run again.
    #[error(
        "quarantined: processing started {runs} times and never finished (the process stopped \
         each time)"
    )]
    Quarantined { runs: u32 },
    /// The original stored unprocessed is not the bytes its record describes: never processed
    /// into the call's recording; a person must look.
    #[error("the original at {key} has SHA-256 {actual}, its record says {expected}")]
    OriginalAltered {
        key: String,
        expected: String,
        actual: String,
    },
}

/// What a sidecar says of how its call was routed: `None` when on the call's whole CDR.
fn routing_note(route: &crate::store::Route) -> Option<&'static str> {
    route.before_end.then_some(
        "routed before the call's CDR End arrived (it did not come within server.end_wait_s of \
         the upload): the line of business and key come from the facts known then",
    )
}

/// The key of a recording stored as it arrived: beside the route's key, under
/// `unprocessed/`, with the recording's own extension where the route's key has one.
fn unprocessed_key(route: &crate::store::Route, ext: &str) -> String {
    let (dir, file) = match route.key.rsplit_once('/') {
        Some((dir, file)) => (format!("{dir}/"), file),
        None => (String::new(), route.key.as_str()),
    };
    let file = match file.strip_suffix(&format!(".{}", route.ext)) {
        Some(stem) => format!("{stem}.{ext}"),
        None => file.to_string(),
    };
    format!("{dir}unprocessed/{file}")
}

/// The file extension of a recording, from its first bytes (`bin` when unknown).
fn extension_of(head: &[u8]) -> &'static str {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(8, b"WAVE") {
        "wav"
    } else if at(0, b"fLaC") {
        "flac"
    } else if at(0, b"OggS") {
        "ogg"
    } else if at(4, b"ftyp") {
        "m4a"
    } else if at(0, b"ID3") || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0) {
        "mp3"
    } else {
        "bin"
    }
}

impl PipelineError {
    /// Whether the recording itself is what fails (a format the engine does not take, broken
    /// or corrupt data, a duration the CDR contradicts): trying again will not help, so after
    /// the attempts it is stored as it arrived. Stores, buckets and the engine's own trouble
    /// are not.
    pub fn is_about_the_recording(&self) -> bool {
        use callrec_engine::EngineError as E;
        match self {
            PipelineError::DurationMismatch { .. } | PipelineError::Quarantined { .. } => true,
            PipelineError::Engine(e) => matches!(
                e,
                E::Empty
                    | E::Truncated { .. }
                    | E::Malformed { .. }
                    | E::UnknownFormat(_)
                    | E::Unsupported(_)
                    | E::NoAudio(_)
                    | E::CorruptFrames { .. }
                    | E::LimitExceeded(_)
                    | E::DurationMismatch { .. }
                    | E::Decoder(_)
            ),
            _ => false,
        }
    }

    /// A short stable name, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PipelineError::Store(_) => "store",
            PipelineError::Objects(ObjectError::Conflict { .. }) => "object_conflict",
            PipelineError::Objects(_) => "objects",
            PipelineError::Engine(e) => e.kind(),
            PipelineError::Route(_) => "routing",
            PipelineError::DurationMismatch { .. } => "duration_mismatch",
            PipelineError::Refused(_) => "refused",
            PipelineError::EngineGone => "engine_gone",
            PipelineError::ReplayMismatch { .. } => "replay_mismatch",
            PipelineError::BadDecisions(..) => "bad_decisions",
            PipelineError::Quarantined { .. } => "quarantined",
            PipelineError::OriginalAltered { .. } => "original_altered",
        }
    }
}

type Reply = oneshot::Sender<callrec_engine::Result<Processed>>;

/// A processed recording: its report, and its audio in a spool file (removed when dropped).
pub struct Output {
    pub processed: Processed,
    pub audio: tempfile::TempPath,
}

/// The engine behind a channel: submit a recording, await its result.
///
/// Memory is bounded twice: a recording is read from staging only once it is admitted
/// ([`EngineRunner::admit`]: twice the workers at most, so queued calls hold no bytes), and the
/// engine charges each admitted one for what it decodes to against `memory_bytes`
/// ([`callrec_engine::batch::memory_estimate`]), running one larger than that alone.
#[derive(Clone)]
pub struct EngineRunner {
    jobs: crossbeam_channel::Sender<((Reply, std::path::PathBuf), JobInput)>,
    threads: usize,
    admission: Arc<tokio::sync::Semaphore>,
    /// Where processed recordings are written (the config's spill folder, else the system's).
    spool: Option<std::path::PathBuf>,
}

impl EngineRunner {
    /// Starts the engine's thread and pool: `threads` workers (0: one per core), recordings in
    /// flight charged against `memory_bytes`, processed with `config` (its limits).
    pub fn start(
        threads: usize,
        memory_bytes: u64,
        config: ProcessConfig,
    ) -> callrec_engine::Result<Self> {
        let engine = Engine::new(EngineConfig {
            threads,
            queue_depth: 0,
            max_in_flight_bytes: memory_bytes,
        })?;
        let threads = engine.threads();
        let spool = config.spill.dir.clone();
        let (jobs, receiver) = crossbeam_channel::bounded(threads);
        std::thread::Builder::new()
            .name("callrec-engine-feed".into())
            .spawn(move || {
                engine.process_batch_to(
                    receiver,
                    &config,
                    |(_, path): &(Reply, std::path::PathBuf)| {
                        callrec_engine::JobOutput::File(path.clone())
                    },
                    |_, outcome| {
                        let ok = outcome.is_ok();
                        (outcome, ok)
                    },
                    |(reply, _): (Reply, _), outcome| {
                        // The caller may have gone (shutdown): nothing to tell then.
                        let _ = reply.send(outcome);
                    },
                );
            })
            .map_err(callrec_engine::EngineError::Io)?;
        Ok(EngineRunner {
            jobs,
            threads,
            admission: Arc::new(tokio::sync::Semaphore::new(2 * threads)),
            spool,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Waits for a turn in the engine: read a recording's bytes only while holding one.
    pub async fn admit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.admission
            .clone()
            .acquire_owned()
            .await
            .expect("the admission semaphore is never closed")
    }

    /// A new, empty spool file for a processed recording.
    fn spool_file(&self) -> Result<tempfile::TempPath, PipelineError> {
        let builder = tempfile::Builder::new()
            .prefix("processed-")
            .suffix(".audio")
            .to_owned();
        let file = match &self.spool {
            // The folder is made on first use (an upload's spool makes it too).
            Some(dir) => std::fs::create_dir_all(dir).and_then(|()| builder.tempfile_in(dir)),
            None => builder.tempfile(),
        }
        .map_err(|e| PipelineError::Engine(e.into()))?;
        Ok(file.into_temp_path())
    }

    /// Processes one recording with `decisions` replayed (a call resumed after `processed`).
    /// Rare, so it runs on tokio's blocking pool rather than the engine's.
    pub async fn replay(
        &self,
        source: AudioSource,
        decisions: callrec_engine::process::Decisions,
    ) -> Result<Output, PipelineError> {
        let config = ProcessConfig {
            replay: Some(decisions),
            spill: callrec_engine::decode::access::SpillConfig {
                dir: self.spool.clone(),
                ..Default::default()
            },
            ..ProcessConfig::default()
        };
        let audio = self.spool_file()?;
        let path = audio.to_path_buf();
        let outcome = tokio::task::spawn_blocking(move || -> callrec_engine::Result<_> {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let report = callrec_engine::process_into(&source, &config, &mut file)?;
            std::io::Write::flush(&mut file)?;
            Ok(report)
        })
        .await
        .map_err(|_| PipelineError::EngineGone)?;
        Ok(Output {
            processed: Processed {
                audio: Vec::new(),
                report: outcome?,
            },
            audio,
        })
    }

    /// Processes one recording on the engine's pool, its audio written to a spool file.
    pub async fn process(&self, source: AudioSource) -> Result<Output, PipelineError> {
        let audio = self.spool_file()?;
        let (reply, result) = oneshot::channel();
        let jobs = self.jobs.clone();
        let path = audio.to_path_buf();
        // The channel is bounded; waiting for room happens off the async threads.
        // The job comes back in the error only to be dropped: the closure drops it there.
        let send = move || {
            jobs.send(((reply, path), JobInput::Source(source)))
                .map_err(drop)
        };
        tokio::task::spawn_blocking(send)
            .await
            .map_err(|_| PipelineError::EngineGone)?
            .map_err(|_| PipelineError::EngineGone)?;
        let processed = result.await.map_err(|_| PipelineError::EngineGone)??;
        Ok(Output { processed, audio })
    }
}

/// The calls whose pipeline runs in this process now: a call never runs twice at once, whoever
/// starts it (an upload, the resume, the retrier, the reconciler's stale take-over).
#[derive(Debug, Default, Clone)]
pub struct InFlight(Arc<std::sync::Mutex<std::collections::HashSet<CallId>>>);

/// A call marked in flight until dropped.
pub struct Running {
    set: InFlight,
    call_id: CallId,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.set.lock().remove(&self.call_id);
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<CallId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `call_id` in flight, unless it already is.
    pub fn start(&self, call_id: &CallId) -> Option<Running> {
        self.lock().insert(call_id.clone()).then(|| Running {
            set: self.clone(),
            call_id: call_id.clone(),
        })
    }

    pub fn contains(&self, call_id: &CallId) -> bool {
        self.lock().contains(call_id)
    }
}

/// Hands the engine the digests recorded when the staged bytes were received, so it does not
/// hash them again (SHA-256 is the costliest thing the engine does to an input after its DSP),
/// once the bytes read back are shown to be those bytes: same length and CRC32C (a pass at
/// memory speed). Records from before CRC64NVME was kept, and bytes that differ, are hashed by
/// the engine as before; the difference is logged.
fn with_staged_digests(
    source: AudioSource,
    staged: &crate::store::StagedAudio,
    call_id: &CallId,
) -> AudioSource {
    let Some(crc64nvme) = &staged.crc64nvme else {
        return source;
    };
    let Ok(digests) = callrec_engine::Digests::from_recorded(
        staged.bytes,
        &staged.sha256,
        &staged.crc32c,
        crc64nvme,
        None,
    ) else {
        return source;
    };
    if source.len() != staged.bytes
        || callrec_engine::Digests::crc32c_of(source.bytes()) != digests.crc32c
    {
        tracing::warn!(
            call_id = %call_id,
            location = %staged.location,
            "the staged bytes read back are not the bytes received (length or CRC32C): the engine hashes them"
        );
        return source;
    }
    source.with_digests(digests)
}

/// Everything a pipeline step needs.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Arc<dyn CallStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub routing: Arc<Routing>,
    pub engine: EngineRunner,
    pub keep_staged: bool,
    /// Attempts after which a recording the engine cannot take is stored as it arrived
    /// (`unprocessed/`), never left out of the bucket.
    pub max_attempts: u32,
    /// The calls running now.
    pub in_flight: InFlight,
    /// How long an upload waits for its call's CDR End before it is routed and processed on
    /// the facts known then (`server.end_wait_s`).
    pub end_wait: std::time::Duration,
}

/// What the caller knows of the call's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Only what the call's record says: a call without its End waits for it, up to the
    /// pipeline's `end_wait` after the upload.
    AsRecorded,
    /// The dialog has ended (an OCP export holds it): no waiting.
    Known,
}

/// What re-processing a recording stored unprocessed did ([`Pipeline::reprocess`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reprocessed {
    /// Processed now: the processed recording at `key` is the call's object. The original is
    /// removed (`original_removed`), or left for the next run to remove (the removal failed).
    Processed { key: String, original_removed: bool },
    /// Processed by an earlier run that stopped before removing the original: removed now.
    OriginalRemoved,
    /// The call is not stored unprocessed.
    NothingToDo,
    /// The call is running in this process already.
    InFlight,
}

/// What one run of the pipeline did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Stored now.
    Stored,
    /// Stored now as it arrived, unprocessed: the engine could not take it, `max_attempts`
    /// times (the reason is on the call and in the sidecar).
    Archived,
    /// Not run: the call is running in this process already.
    InFlight,
    /// Nothing to do: not received yet, or stored already.
    NothingToDo,
    /// Not run yet: the call has no CDR End, and its upload is younger than the pipeline's
    /// `end_wait`. Its End starts it, or a run at `until` routes it on the facts known then.
    WaitingForEnd { until: Timestamp },
}

impl Pipeline {
    /// Takes the call as far as it can go from its last flag; records a failure on the call.
    /// A call not routed yet whose End has not come waits for it (see [`Ending`]).
    pub async fn run(&self, call_id: &CallId, ending: Ending) -> Result<Finished, PipelineError> {
        let Some(_running) = self.in_flight.start(call_id) else {
            return Ok(Finished::InFlight);
        };
        let result = self.advance(call_id, ending).await;
        let Err(e) = &result else {
            return result;
        };
        // Best effort: the error is also returned (and logged and counted by the caller).
        let failed = CallChange::Failed {
            error: e.to_string(),
        };
        let recorded = self.store.update(call_id, &failed, Timestamp::now()).await;
        // The recording itself is what fails, again and again (or it took the process down
        // again and again): store it as it came.
        let quarantined = matches!(e, PipelineError::Quarantined { .. });
        if e.is_about_the_recording()
            && let Ok((record, _)) = recorded
            && (record.attempts >= self.max_attempts || quarantined)
            && record.flags.stored.is_none()
        {
            match self.archive(&record, &e.to_string()).await {
                Ok(()) => return Ok(Finished::Archived),
                Err(archiving) => {
                    tracing::error!(call_id = %call_id, error = %archiving, "storing the unprocessable recording as it arrived failed");
                }
            }
        }
        result
    }

    /// Stores the staged recording unchanged in the call's line-of-business bucket under
    /// `…/unprocessed/{file}` with a sidecar giving `reason`, and marks the call stored (not
    /// processed).
    async fn archive(&self, record: &CallRecord, reason: &str) -> Result<(), PipelineError> {
        let staged = record
            .staged
            .as_ref()
            .ok_or(PipelineError::Refused("not received yet"))?;
        let raw = self
            .objects
            .get(&self.routing.staging.bucket, &staged.location, None)
            .await?;
        let (lob, route) = self.route_of(record, extension_of(&raw)).await?;
        let key = unprocessed_key(&route, extension_of(&raw));
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("call-id".to_string(), record.call_id.to_string());
        metadata.insert("line-of-business".to_string(), lob.name.clone());
        metadata.insert("processed".to_string(), "false".to_string());
        let meta = ObjectMeta {
            content_type: "application/octet-stream".into(),
            crc32c: staged.crc32c.clone(),
            sha256: staged.sha256.clone(),
            metadata: metadata.clone(),
            storage_class: lob.storage_class.clone(),
            kms_key_id: lob.kms_key_id.clone(),
        };
        self.objects
            .put_new(&route.bucket, &key, Body::Bytes(raw), &meta)
            .await?;
        let mut sidecar = serde_json::json!({
            "call_id": record.call_id,
            "line_of_business": lob.name,
            "processed": false,
            "route": route,
            "routing_note": routing_note(&route),
            "reason": reason,
            "attempts": record.attempts,
            "cdr": record.cdr,
            "flags": record.flags,
            "input": {"bytes": staged.bytes, "sha256": staged.sha256, "crc32c": staged.crc32c},
        });
        let kept_facts = self.add_overflow(record, &mut sidecar).await?;
        let sidecar = serde_json::to_vec_pretty(&sidecar).expect("the sidecar serializes");
        self.put_sidecar(lob, &format!("{key}.json"), sidecar, metadata)
            .await?;
        let object = StoredObject {
            line_of_business: route.line_of_business.clone(),
            bucket: route.bucket.clone(),
            key,
            crc32c: staged.crc32c.clone(),
            sha256: staged.sha256.clone(),
        };
        let change = CallChange::Archived {
            object,
            reason: reason.to_string(),
        };
        let (_, applied) = self
            .store
            .update(&record.call_id, &change, Timestamp::now())
            .await?;
        if let Outcome::Refused(why) = applied.outcome {
            return Err(PipelineError::Refused(why));
        }
        self.remove_staged(&record.call_id, staged, &kept_facts)
            .await;
        Ok(())
    }

    /// Processes again a recording stored as it arrived (`callrec redrive --unprocessed`: after
    /// an upgrade that takes its format, or a raised limit): the original is read back from the
    /// bucket and checked against its record, the engine runs, the processed recording and its
    /// sidecar are stored under the call's route (create-only), the record moves to it, and
    /// then the original and its sidecar are removed (a versioned bucket keeps them as
    /// noncurrent versions). A run stopped at any point is finished by the next: until the
    /// removal, the record keeps the original as [`CallRecord::superseded`].
    pub async fn reprocess(&self, call_id: &CallId) -> Result<Reprocessed, PipelineError> {
        let Some(_running) = self.in_flight.start(call_id) else {
            return Ok(Reprocessed::InFlight);
        };
        let Some(record) = self.store.get(call_id).await? else {
            return Ok(Reprocessed::NothingToDo);
        };
        if record.unprocessed.is_none() {
            return Ok(match &record.superseded {
                Some(original) => {
                    self.remove_original(call_id, original).await?;
                    Reprocessed::OriginalRemoved
                }
                None => Reprocessed::NothingToDo,
            });
        }
        let original = record.object.clone().ok_or(PipelineError::Refused(
            "stored unprocessed, without its object",
        ))?;
        let turn = self.engine.admit().await;
        let raw = self
            .objects
            .get(&original.bucket, &original.key, None)
            .await?;
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw));
        if actual != original.sha256 {
            return Err(PipelineError::OriginalAltered {
                key: original.key.clone(),
                expected: original.sha256.clone(),
                actual,
            });
        }
        let name = format!("{call_id}.{}", extension_of(&raw));
        let processed = self
            .engine
            .process(AudioSource::from_bytes(raw).with_name(name))
            .await?;
        drop(turn);
        let facts = self.check_and_summarize(&record, &processed.processed)?;
        // The original's sidecar holds what the record could not (the CDR facts it overflowed
        // with): carried over to the processed recording's.
        let mut carried = serde_json::Map::new();
        let old_sidecar = format!("{}.json", original.key);
        match self.objects.get(&original.bucket, &old_sidecar, None).await {
            Ok(bytes) => {
                if let Ok(serde_json::Value::Object(old)) = serde_json::from_slice(&bytes) {
                    for field in ["cdr_overflow", "cdr_overflow_left_in_staging"] {
                        if let Some(value) = old.get(field) {
                            carried.insert(field.into(), value.clone());
                        }
                    }
                }
            }
            Err(ObjectError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        carried.insert(
            "reprocessed".into(),
            serde_json::json!({
                "original_key": original.key,
                "original_sha256": original.sha256,
                "unprocessed_reason": record.unprocessed,
                "at": Timestamp::now(),
            }),
        );
        let (object, _) = self
            .write_object(&record, &processed, Some(carried))
            .await?;
        let key = object.key.clone();
        let change = CallChange::Reprocessed { facts, object };
        let (_, applied) = self
            .store
            .update(call_id, &change, Timestamp::now())
            .await?;
        if let Outcome::Refused(why) = applied.outcome {
            return Err(PipelineError::Refused(why));
        }
        let original_removed = match self.remove_original(call_id, &original).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(call_id = %call_id, key = %original.key, error = %e, "removing the original after re-processing failed; the next re-drive removes it");
                false
            }
        };
        Ok(Reprocessed::Processed {
            key,
            original_removed,
        })
    }

    /// Removes the superseded original and its sidecar, then says so on the record.
    async fn remove_original(
        &self,
        call_id: &CallId,
        original: &StoredObject,
    ) -> Result<(), PipelineError> {
        for key in [original.key.clone(), format!("{}.json", original.key)] {
            self.objects.delete(&original.bucket, &key).await?;
        }
        self.store
            .update(call_id, &CallChange::OriginalRemoved, Timestamp::now())
            .await?;
        Ok(())
    }

    /// Adds the CDR facts the call's record could not keep ([`crate::facts`]) to its sidecar
    /// (`cdr_overflow`); returns their staging keys, removed once the call is stored.
    async fn add_overflow(
        &self,
        record: &CallRecord,
        sidecar: &mut serde_json::Value,
    ) -> Result<Vec<String>, PipelineError> {
        if !record.cdr.facts_truncated {
            return Ok(Vec::new());
        }
        let overflow = crate::facts::read(
            self.objects.as_ref(),
            &self.routing.staging.bucket,
            &record.call_id,
        )
        .await?;
        sidecar["cdr_overflow"] = serde_json::Value::Array(overflow.events);
        if overflow.left > 0 {
            sidecar["cdr_overflow_left_in_staging"] = overflow.left.into();
        }
        Ok(overflow.keys)
    }

    /// The call is stored: its staging copy goes (unless `keep_staged`). One that cannot be
    /// removed now is left for the staging bucket's lifecycle rule, not reported as a failure of
    /// the call.
    async fn remove_staged(
        &self,
        call_id: &CallId,
        staged: &crate::store::StagedAudio,
        kept_facts: &[String],
    ) {
        let bucket = &self.routing.staging.bucket;
        crate::facts::remove(self.objects.as_ref(), bucket, call_id, kept_facts).await;
        if !self.keep_staged
            && let Err(e) = self
                .objects
                .delete(&self.routing.staging.bucket, &staged.location)
                .await
        {
            tracing::warn!(call_id = %call_id, location = %staged.location, error = %e, "removing the staged recording failed; left in the staging bucket");
        }
    }

    /// A JSON sidecar, create-only; one from an earlier attempt (its times may differ) stands.
    async fn put_sidecar(
        &self,
        lob: &crate::routing::LineOfBusiness,
        key: &str,
        sidecar: Vec<u8>,
        metadata: std::collections::BTreeMap<String, String>,
    ) -> Result<(), PipelineError> {
        let meta = ObjectMeta {
            content_type: "application/json".into(),
            crc32c: crate::objects::Crc32c::of(&sidecar),
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sidecar)),
            metadata,
            storage_class: lob.storage_class.clone(),
            kms_key_id: lob.kms_key_id.clone(),
        };
        match self
            .objects
            .put_new(&lob.bucket, key, Body::Bytes(sidecar.into()), &meta)
            .await
        {
            Ok(_) | Err(ObjectError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// When a call not routed yet may be routed and processed: now (`None`), or once its End
    /// arrives or at the returned time, whichever comes first.
    pub fn waits_for_end(
        &self,
        record: &CallRecord,
        ending: Ending,
        now: Timestamp,
    ) -> Option<Timestamp> {
        if ending == Ending::Known
            || record.flags.ended.is_some()
            || record.route.is_some()
            || record.processed.is_some()
        {
            return None;
        }
        let wait = jiff::SignedDuration::try_from(self.end_wait).ok()?;
        let until = record.flags.received?.checked_add(wait).ok()?;
        (now < until).then_some(until)
    }

    async fn advance(&self, call_id: &CallId, ending: Ending) -> Result<Finished, PipelineError> {
        let Some(record) = self.store.get(call_id).await? else {
            return Ok(Finished::NothingToDo);
        };
        if record.flags.stored.is_some() {
            return Ok(Finished::NothingToDo);
        }
        let Some(staged) = record.staged.clone() else {
            return Ok(Finished::NothingToDo);
        };
        if let Some(until) = self.waits_for_end(&record, ending, Timestamp::now()) {
            return Ok(Finished::WaitingForEnd { until });
        }
        let staging_bucket = &self.routing.staging.bucket;
        // The bytes are read only with a turn in the engine, given back once the engine is
        // done (before the `processed` write: a turn never waits on the store's commit after
        // the engine): calls waiting for a turn hold nothing.
        let turn = self.engine.admit().await;
        let raw = self
            .objects
            .get(staging_bucket, &staged.location, None)
            .await?;
        let source = AudioSource::from_bytes(raw).with_name(format!("{call_id}.wav"));
        let source = with_staged_digests(source, &staged, call_id);
        let (record, processed) = match &record.processed {
            // Resumed after `processed`: replay the recorded decisions; the output must be the
            // recorded one to the bit.
            Some(recorded) => {
                let decisions = serde_json::from_value(recorded.report["decisions"].clone())
                    .map_err(|e| PipelineError::BadDecisions(call_id.to_string(), e.to_string()))?;
                let processed = self.engine.replay(source, decisions).await?;
                drop(turn);
                let actual = &processed.processed.report.output.sha256;
                if *actual != recorded.output_sha256 {
                    return Err(PipelineError::ReplayMismatch {
                        call_id: call_id.to_string(),
                        expected: recorded.output_sha256.clone(),
                        actual: actual.clone(),
                    });
                }
                (record, processed)
            }
            None => {
                // Counted before the engine runs: a recording that takes the process down is
                // known by its unfinished runs, and quarantined instead of run forever.
                if record.runs_unfinished >= self.max_attempts {
                    return Err(PipelineError::Quarantined {
                        runs: record.runs_unfinished,
                    });
                }
                self.store
                    .update(call_id, &CallChange::Processing, Timestamp::now())
                    .await?;
                let processed = self.engine.process(source).await?;
                drop(turn);
                let facts = self.check_and_summarize(&record, &processed.processed)?;
                let (record, applied) = self
                    .store
                    .update(call_id, &CallChange::Processed(facts), Timestamp::now())
                    .await?;
                if let Outcome::Refused(why) = applied.outcome {
                    return Err(PipelineError::Refused(why));
                }
                (record, processed)
            }
        };
        let (object, kept_facts) = self.write_object(&record, &processed, None).await?;
        let (_, applied) = self
            .store
            .update(call_id, &CallChange::Stored(object), Timestamp::now())
            .await?;
        if let Outcome::Refused(why) = applied.outcome {
            return Err(PipelineError::Refused(why));
        }
        self.remove_staged(call_id, &staged, &kept_facts).await;
        Ok(Finished::Stored)
    }

    /// Checks the CDR's duration against the audio; the figures the call record keeps.
    fn check_and_summarize(
        &self,
        record: &CallRecord,
        processed: &Processed,
    ) -> Result<ProcessedFacts, PipelineError> {
        let report = &processed.report;
        if let Some(expected_ms) = record.cdr.duration_ms {
            let actual_ms = report.input.duration_ms;
            if (actual_ms - expected_ms as f64).abs() > DURATION_TOLERANCE_MS {
                return Err(PipelineError::DurationMismatch {
                    expected_ms,
                    actual_ms,
                });
            }
        }
        Ok(ProcessedFacts {
            duration_ms: report.output.duration_ms,
            integrated_lufs: report.analysis.loudness.integrated_lufs,
            true_peak_dbtp: report.output.true_peak_dbtp,
            speech_level_dbov: report.analysis.speech.level_dbov,
            gain_db: report.decisions.gain.gain_db,
            output_sha256: report.output.sha256.clone(),
            output_crc32c: report.output.crc32c.clone(),
            output_bytes: report.output.bytes,
            // The decisions (enough to replay) and the summary; the full report is the sidecar.
            report: serde_json::json!({
                "engine_version": report.engine_version,
                "decisions": report.decisions,
                "input": {
                    "codec": report.input.codec,
                    "sample_rate": report.input.sample_rate,
                    "channels": report.input.channels,
                    "duration_ms": report.input.duration_ms,
                    "sha256": report.input.checksums.sha256,
                },
            }),
        })
    }

    /// The processed audio and its JSON sidecar, create-only, in the routed bucket.
    /// Where the call's object goes: the recorded route, or one decided now from the call's
    /// facts (`ext`: its object's extension) and recorded before any object is written, so
    /// that a retry or a resumed run never writes a second object elsewhere after the facts
    /// changed. The line of business's settings (storage class, KMS key) are its current ones.
    async fn route_of(
        &self,
        record: &CallRecord,
        ext: &str,
    ) -> Result<(&crate::routing::LineOfBusiness, crate::store::Route), PipelineError> {
        let route = match &record.route {
            Some(route) => route.clone(),
            None => {
                let lob = self.routing.route(&record.cdr);
                let decided = crate::store::Route {
                    line_of_business: lob.name.clone(),
                    bucket: lob.bucket.clone(),
                    key: lob.object_key(&record.call_id, &record.cdr, record.filed_at(), ext)?,
                    ext: ext.to_string(),
                    before_end: record.flags.ended.is_none(),
                };
                let (stored, _) = self
                    .store
                    .update(
                        &record.call_id,
                        &CallChange::Routed(decided.clone()),
                        Timestamp::now(),
                    )
                    .await?;
                // Another run may have decided first: its decision stands.
                stored.route.unwrap_or(decided)
            }
        };
        let lob = self
            .routing
            .lines()
            .iter()
            .find(|l| l.name == route.line_of_business)
            .unwrap_or_else(|| self.routing.route(&record.cdr));
        Ok((lob, route))
    }

    /// Stores the processed recording and its sidecar under the call's route. The sidecar's
    /// overflow facts come from staging, or are `carried` (fields set as given) by a
    /// re-processing.
    async fn write_object(
        &self,
        record: &CallRecord,
        output: &Output,
        carried: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(StoredObject, Vec<String>), PipelineError> {
        let report = &output.processed.report;
        let ext = match report.decisions.format {
            callrec_engine::OutputFormat::Flac => "flac",
            _ => "wav",
        };
        let (lob, route) = self.route_of(record, ext).await?;
        // A route decided when the original was stored unprocessed carries the original's
        // extension (`.bin` for a format not known then): the processed recording has its own.
        let key = match route.key.strip_suffix(&format!(".{}", route.ext)) {
            Some(stem) if route.ext != ext => format!("{stem}.{ext}"),
            _ => route.key.clone(),
        };
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("call-id".to_string(), record.call_id.to_string());
        metadata.insert("line-of-business".to_string(), lob.name.clone());
        metadata.insert(
            "duration-ms".to_string(),
            format!("{:.0}", report.output.duration_ms),
        );
        if let Some(lufs) = report.analysis.loudness.integrated_lufs {
            metadata.insert("loudness-lufs".to_string(), format!("{lufs:.2}"));
        }
        let meta = ObjectMeta {
            content_type: report.output.content_type.clone(),
            crc32c: report.output.crc32c.clone(),
            sha256: report.output.sha256.clone(),
            metadata: metadata.clone(),
            storage_class: lob.storage_class.clone(),
            kms_key_id: lob.kms_key_id.clone(),
        };
        match self
            .objects
            .put_new(
                &route.bucket,
                &key,
                Body::Scratch(output.audio.to_path_buf()),
                &meta,
            )
            .await?
        {
            PutOutcome::Created | PutOutcome::AlreadyExists => {}
        }
        let mut sidecar = serde_json::json!({
            "call_id": record.call_id,
            "line_of_business": lob.name,
            "route": route,
            "routing_note": routing_note(&route),
            "cdr": record.cdr,
            "flags": record.flags,
            "report": report,
        });
        let kept_facts = match carried {
            None => self.add_overflow(record, &mut sidecar).await?,
            Some(fields) => {
                for (name, value) in fields {
                    sidecar[name] = value;
                }
                Vec::new()
            }
        };
        let sidecar = serde_json::to_vec_pretty(&sidecar).expect("the report serializes");
        // A sidecar from an earlier attempt may differ in its flag times: the audio is what
        // must not differ, and it did not.
        self.put_sidecar(lob, &format!("{key}.json"), sidecar, metadata)
            .await?;
        let object = StoredObject {
            line_of_business: route.line_of_business.clone(),
            bucket: route.bucket.clone(),
            key,
            crc32c: report.output.crc32c.clone(),
            sha256: report.output.sha256.clone(),
        };
        Ok((object, kept_facts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_in_flight_once() {
        let set = InFlight::default();
        let id = CallId::parse("c1").unwrap();
        let first = set.start(&id).unwrap();
        assert!(set.start(&id).is_none());
        assert!(set.contains(&id));
        drop(first);
        assert!(set.start(&id).is_some());
    }

    /// The digests recorded at intake reach the engine only for the bytes they describe.
    #[test]
    fn staged_digests_are_handed_in_only_for_the_same_bytes() {
        let id = CallId::parse("c1").unwrap();
        let bytes = b"RIFF....WAVE and some audio".to_vec();
        let d = callrec_engine::Digests::compute(&bytes);
        let staged = crate::store::StagedAudio {
            location: "staging/c1".into(),
            bytes: bytes.len() as u64,
            sha256: d.sha256_hex(),
            crc32c: d.crc32c_base64(),
            crc64nvme: Some(d.crc64nvme_base64()),
            via: None,
        };
        let handed = |staged: &crate::store::StagedAudio, bytes: &[u8]| {
            with_staged_digests(AudioSource::from_bytes(bytes.to_vec()), staged, &id)
                .digests()
                .copied()
        };
        assert_eq!(handed(&staged, &bytes), Some(d));
        // Other bytes of the same length (read back changed): hashed by the engine.
        let mut changed = bytes.clone();
        changed[3] ^= 1;
        assert_eq!(handed(&staged, &changed), None);
        assert_eq!(handed(&staged, &bytes[1..]), None);
        // A record from before CRC64NVME was kept, or with a malformed digest.
        let old = crate::store::StagedAudio {
            crc64nvme: None,
            ..staged.clone()
        };
        assert_eq!(handed(&old, &bytes), None);
        let malformed = crate::store::StagedAudio {
            sha256: "not hex".into(),
            ..staged
        };
        assert_eq!(handed(&malformed, &bytes), None);
    }
}
