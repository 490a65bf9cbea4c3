//! No call left behind in the service (in process, real HTTP on loopback, SQLite and a folder):
//! an upload whose request is dropped right after `received` is committed is stored anyway; the
//! same bytes again for a call whose pipeline never ran make it run; a transient failure heals
//! through the local retrier, with reconciliation off.

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use callrec_ingest::CallId;
use callrec_ingest::objects::folder::FolderStore;
use callrec_ingest::objects::{
    Body, Listing, ObjectError, ObjectInfo, ObjectMeta, ObjectStore, PutOutcome,
};
use callrec_ingest::store::sqlite::SqliteStore;
use callrec_ingest::store::{
    AttentionQuery, CallRecord, CallStore, CounterDelta, DayQuery, ExportJob, Funnel, JobId, Page,
    PendingQuery, StoreError, Via,
};
use common::service::{InProcess, TOKEN};
use jiff::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

type Result<T> = std::result::Result<T, StoreError>;

/// The SQLite store, answering slowly (after the write is committed) to the write that sets
/// `received`, while `slow` is on: the request times out with the call received.
struct SlowAfterReceived {
    inner: SqliteStore,
    slow: AtomicBool,
}

#[async_trait]
impl CallStore for SlowAfterReceived {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn get(&self, call_id: &CallId) -> Result<Option<CallRecord>> {
        self.inner.get(call_id).await
    }
    async fn put_if(
        &self,
        record: &CallRecord,
        expected: Option<u64>,
        counters: &CounterDelta,
    ) -> Result<bool> {
        let written = self.inner.put_if(record, expected, counters).await?;
        let receiving = record.flags.received.is_some() && record.flags.processed.is_none();
        if written && receiving && self.slow.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        Ok(written)
    }
    async fn pending(&self, query: &PendingQuery) -> Result<Page<CallRecord>> {
        self.inner.pending(query).await
    }
    async fn unfinished(&self, limit: u32, cursor: Option<&str>) -> Result<Page<CallRecord>> {
        self.inner.unfinished(limit, cursor).await
    }
    async fn attention(&self, query: &AttentionQuery) -> Result<Page<CallRecord>> {
        self.inner.attention(query).await
    }
    async fn calls_of_day(&self, query: &DayQuery) -> Result<Page<CallId>> {
        self.inner.calls_of_day(query).await
    }
    async fn funnel(&self) -> Result<Funnel> {
        self.inner.funnel().await
    }
    async fn get_job(&self, id: &JobId) -> Result<Option<ExportJob>> {
        self.inner.get_job(id).await
    }
    async fn put_job_if(&self, job: &ExportJob, expected: Option<u64>) -> Result<bool> {
        self.inner.put_job_if(job, expected).await
    }
    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<ExportJob>> {
        self.inner.due_jobs(now, limit).await
    }
    async fn open_jobs(&self, limit: u32, cursor: Option<&str>) -> Result<Page<ExportJob>> {
        self.inner.open_jobs(limit, cursor).await
    }
}

/// The folder store, refusing the first `failures` writes to a line-of-business bucket (S3
/// briefly down).
struct OutputDown {
    inner: FolderStore,
    failures: AtomicU64,
    /// Only keys ending so fail ("" for all).
    suffix: &'static str,
}

#[async_trait]
impl ObjectStore for OutputDown {
    fn backend(&self) -> &'static str {
        "folder"
    }
    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        meta: &ObjectMeta,
    ) -> std::result::Result<PutOutcome, ObjectError> {
        let staging = bucket.contains("staging");
        if !staging
            && key.ends_with(self.suffix)
            && self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(ObjectError::Unavailable {
                backend: "folder",
                message: "injected: the bucket is briefly unavailable".into(),
            });
        }
        self.inner.put_new(bucket, key, body, meta).await
    }
    async fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> std::result::Result<Option<ObjectInfo>, ObjectError> {
        self.inner.head(bucket, key).await
    }
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> std::result::Result<Bytes, ObjectError> {
        self.inner.get(bucket, key, range).await
    }
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> std::result::Result<Listing, ObjectError> {
        self.inner.list(bucket, prefix, limit, cursor).await
    }
    async fn delete(&self, bucket: &str, key: &str) -> std::result::Result<(), ObjectError> {
        self.inner.delete(bucket, key).await
    }
}

fn recording() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/audio/ulaw_8k_mono.wav"),
    )
    .unwrap()
}

async fn upload(service: &InProcess, call: &str) -> u16 {
    service
        .http
        .put(format!("{}/v1/calls/{call}/audio", service.url))
        .bearer_auth(TOKEN)
        .body(recording())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until `call` is stored, at most `limit`.
async fn stored_within(store: &dyn CallStore, call: &str, limit: Duration) -> bool {
    let id = CallId::parse(call).unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if store
            .get(&id)
            .await
            .unwrap()
            .is_some_and(|r| r.flags.stored.is_some())
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A service in process over SQLite and a folder in a temporary directory, `tune`d.
struct Local {
    dir: tempfile::TempDir,
    store: Arc<dyn CallStore>,
    objects_root: std::path::PathBuf,
    service: InProcess,
}

async fn local(tune: impl FnOnce(&mut callrec_ingest::config::Config)) -> Local {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CallStore> =
        Arc::new(SqliteStore::open(dir.path().join("callrec.db")).unwrap());
    let mut config = callrec_ingest::config::Config::default();
    // These calls have no CDR: processed at once, not after waiting for an End.
    config.server.end_wait_s = 0;
    config.server.spool_dir = dir.path().join("spool");
    tune(&mut config);
    let objects_root = dir.path().join("objects");
    let objects = Arc::new(FolderStore::open(&objects_root).unwrap());
    let service = common::service::serve(config, store.clone(), objects, None).await;
    Local {
        dir,
        store,
        objects_root,
        service,
    }
}

impl Local {
    /// `bytes` received for `call` by an earlier process that died before its pipeline ran
    /// (staged, `received` set, nothing running).
    async fn received_earlier(&self, call: &str, bytes: &[u8]) -> CallId {
        let mut spool = callrec_ingest::intake::Spool::create(
            &self.dir.path().join("spool"),
            call,
            1 << 30,
            callrec_ingest::intake::Digesting::Recording,
        )
        .await
        .unwrap();
        spool.write(bytes).await.unwrap();
        let spooled = spool.finish().await.unwrap();
        let id = CallId::parse(call).unwrap();
        let pipeline = &self.service.state.pipeline;
        callrec_ingest::intake::receive(pipeline, &id, &spooled, "audio/wav", Via::Stream)
            .await
            .unwrap();
        id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_request_is_dropped_after_received_is_stored_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SlowAfterReceived {
        inner: SqliteStore::open(dir.path().join("callrec.db")).unwrap(),
        slow: AtomicBool::new(true),
    });
    let mut config = callrec_ingest::config::Config::default();
    // These calls have no CDR: processed at once, not after waiting for an End.
    config.server.end_wait_s = 0;
    config.server.request_timeout_s = 1;
    config.server.spool_dir = dir.path().join("spool");
    let objects = Arc::new(FolderStore::open(dir.path().join("objects")).unwrap());
    let service = common::service::serve(config, store.clone(), objects, None).await;
    // The request times out (408) after `received` was committed, before any answer.
    assert_eq!(upload(&service, "dropped-1").await, 408);
    assert!(
        stored_within(store.as_ref(), "dropped-1", Duration::from_secs(20)).await,
        "the call was left received"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_again_run_the_pipeline_of_a_call_not_stored() {
    let local = local(|_| {}).await;
    let store = local.store.as_ref();
    local.received_earlier("orphan-1", &recording()).await;
    assert!(!stored_within(store, "orphan-1", Duration::from_millis(300)).await);
    // The sender retries: 200 (the same bytes), and the call's pipeline runs.
    assert_eq!(upload(&local.service, "orphan-1").await, 200);
    assert!(stored_within(store, "orphan-1", Duration::from_secs(20)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_heals_through_the_local_retrier_without_reconciliation() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CallStore> =
        Arc::new(SqliteStore::open(dir.path().join("callrec.db")).unwrap());
    let mut config = callrec_ingest::config::Config::default();
    // These calls have no CDR: processed at once, not after waiting for an End.
    config.server.end_wait_s = 0;
    config.server.spool_dir = dir.path().join("spool");
    config.server.retry_base_s = 1;
    config.reconcile.enabled = false;
    let objects = Arc::new(OutputDown {
        inner: FolderStore::open(dir.path().join("objects")).unwrap(),
        failures: AtomicU64::new(2),
        suffix: "",
    });
    let service = common::service::serve(config, store.clone(), objects, None).await;
    let retrier = callrec_ingest::server::spawn_retrier(
        &service.state,
        tokio_util::sync::CancellationToken::new(),
    );
    assert_eq!(upload(&service, "healed-1").await, 201);
    // The first run fails (the bucket is down), then the retrier runs it again (twice: after
    // 2 s, then 4 s), and it is stored.
    assert!(stored_within(store.as_ref(), "healed-1", Duration::from_secs(30)).await);
    let record = store
        .get(&CallId::parse("healed-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.attempts, 2, "{record:?}");
    assert_eq!(
        service
            .state
            .metrics
            .failures
            .with_label_values(&["objects"])
            .get(),
        2
    );
    retrier.abort();
}

/// A RIFF/WAVE file whose codec no decoder knows (format tag 0x1234), with noise for data.
fn undecodable() -> Vec<u8> {
    let data: Vec<u8> = (0..8000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&0x1234u16.to_le_bytes()); // format tag
    fmt.extend_from_slice(&1u16.to_le_bytes()); // channels
    fmt.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    fmt.extend_from_slice(&8000u32.to_le_bytes()); // bytes per second
    fmt.extend_from_slice(&1u16.to_le_bytes()); // block align
    fmt.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&((4 + 8 + fmt.len() + 8 + data.len()) as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    wav.extend_from_slice(&fmt);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_the_engine_cannot_take_is_stored_as_it_arrived_after_the_attempts() {
    let local = local(|config| {
        config.server.retry_base_s = 1;
        config.server.max_attempts = 2;
    })
    .await;
    let (store, service, objects_root) = (&local.store, &local.service, &local.objects_root);
    let _retrier = callrec_ingest::server::spawn_retrier(
        &service.state,
        tokio_util::sync::CancellationToken::new(),
    );
    let original = undecodable();
    let status = service
        .http
        .put(format!("{}/v1/calls/odd-codec-1/audio", service.url))
        .bearer_auth(TOKEN)
        .body(original.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 201);
    // Fails once, is retried, fails again: out of attempts, it is stored as it arrived.
    assert!(stored_within(store.as_ref(), "odd-codec-1", Duration::from_secs(30)).await);
    let record = store
        .get(&CallId::parse("odd-codec-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(record.flags.processed.is_none(), "{record:?}");
    assert_eq!(record.attempts, 2);
    let reason = record.unprocessed.clone().expect("a reason");
    assert!(reason.contains("engine"), "{reason}");
    let object = record.object.clone().unwrap();
    assert!(object.key.contains("/unprocessed/"), "{}", object.key);
    assert!(object.key.ends_with("odd-codec-1.wav"), "{}", object.key);
    let path = objects_root.join(&object.bucket).join(&object.key);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "the bytes unchanged"
    );
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", path.display())).unwrap())
            .unwrap();
    assert_eq!(sidecar["processed"], false);
    assert_eq!(sidecar["reason"].as_str(), Some(reason.as_str()));
    assert_eq!(service.state.metrics.calls_unprocessed.get(), 1);
    assert_eq!(store.funnel().await.unwrap().unprocessed, 1);
    // The call's view says so.
    let view: serde_json::Value = service
        .http
        .get(format!("{}/v1/calls/odd-codec-1", service.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "complete");
    assert!(view["flags"]["processed"].is_null());
    assert_eq!(view["unprocessed"].as_str(), Some(reason.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_took_the_process_down_each_time_is_quarantined_not_run_again() {
    let local = local(|config| config.server.max_attempts = 2).await;
    let (store, service, objects_root) = (&local.store, &local.service, &local.objects_root);
    // Received by an earlier process, whose engine runs on it never came back: twice, the
    // process died while processing it (each run was counted before it started).
    let bytes = recording();
    let id = local.received_earlier("bomb-1", &bytes).await;
    for _ in 0..2 {
        store
            .update(
                &id,
                &callrec_ingest::store::CallChange::Processing,
                Timestamp::now(),
            )
            .await
            .unwrap();
    }
    // The next start resumes it: not run again, stored as it arrived.
    let queued = callrec_ingest::server::resume(&service.state)
        .await
        .unwrap();
    assert_eq!(queued, 1);
    assert!(stored_within(store.as_ref(), "bomb-1", Duration::from_secs(20)).await);
    let record = store.get(&id).await.unwrap().unwrap();
    assert!(record.flags.processed.is_none());
    let reason = record.unprocessed.clone().unwrap();
    assert!(reason.contains("quarantined"), "{reason}");
    let object = record.object.unwrap();
    assert!(object.key.contains("/unprocessed/"), "{}", object.key);
    let stored = std::fs::read(objects_root.join(&object.bucket).join(&object.key)).unwrap();
    assert_eq!(stored, bytes);
    // A normal run leaves no unfinished run behind.
    assert_eq!(upload(service, "fine-1").await, 201);
    assert!(stored_within(store.as_ref(), "fine-1", Duration::from_secs(20)).await);
    let fine = store
        .get(&CallId::parse("fine-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((fine.runs_unfinished, fine.attempts), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gsm_610_recording_is_processed_and_stored() {
    let local = local(|_| {}).await;
    let (store, service) = (&local.store, &local.service);
    let gsm = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/audio/gsm_8k_mono.wav"),
    )
    .unwrap();
    let status = service
        .http
        .put(format!("{}/v1/calls/wav49-1/audio", service.url))
        .bearer_auth(TOKEN)
        .body(gsm)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 201);
    assert!(stored_within(store.as_ref(), "wav49-1", Duration::from_secs(30)).await);
    let record = store
        .get(&CallId::parse("wav49-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(record.flags.processed.is_some(), "{record:?}");
    assert!(record.unprocessed.is_none());
    assert_eq!(record.attempts, 0, "{record:?}");
    // Streamed, and the record says so.
    assert_eq!(
        record.staged.as_ref().and_then(|s| s.via),
        Some(Via::Stream)
    );
    let object = record.object.unwrap();
    assert!(!object.key.contains("unprocessed"), "{}", object.key);
    assert!(
        local
            .objects_root
            .join(&object.bucket)
            .join(&object.key)
            .is_file(),
        "{}",
        object.key
    );
}

/// Routing: calls of OCP group `g-care` go to the care line (bucket `acme-care`); every other
/// call to general.
fn with_care_line(config: &mut callrec_ingest::config::Config) {
    config.lines_of_business.insert(
        "care".into(),
        callrec_ingest::routing::LineOfBusinessConfig {
            bucket: "acme-care".into(),
            key_template: None,
            storage_class: None,
            kms_key_id: None,
        },
    );
    config
        .routing
        .rules
        .push(callrec_ingest::routing::RuleConfig {
            line_of_business: "care".into(),
            ivr_channel: None,
            application: None,
            application_type: None,
            direction: None,
            group_id: Some("g-care".into()),
        });
}

/// Posts one v1 CDR event (`start` or `end`) for `call` of group `g-care`.
async fn cdr(service: &InProcess, kind: &str, call: &str) {
    let status = service
        .http
        .post(format!("{}/v1/cdr", service.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "type": kind, "call_id": call,
            "timestamp": "2026-11-24T09:00:00Z", "group_id": "g-care"
        }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// The JSON sidecar of a stored call.
async fn sidecar_of(local: &Local, call: &str) -> serde_json::Value {
    let record = local
        .store
        .get(&CallId::parse(call).unwrap())
        .await
        .unwrap()
        .unwrap();
    let object = record.object.expect("stored");
    let path = local
        .objects_root
        .join(&object.bucket)
        .join(format!("{}.json", object.key));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_before_its_cdr_waits_for_the_end_and_is_routed_by_it() {
    let local = local(|config| {
        config.server.end_wait_s = 300;
        with_care_line(config);
    })
    .await;
    let store = local.store.as_ref();
    assert_eq!(upload(&local.service, "early-1").await, 201);
    // No End yet: nothing is routed, processed or written.
    assert!(!stored_within(store, "early-1", Duration::from_millis(800)).await);
    let id = CallId::parse("early-1").unwrap();
    let waiting = store.get(&id).await.unwrap().unwrap();
    assert!(waiting.route.is_none(), "{waiting:?}");
    assert!(waiting.processed.is_none(), "{waiting:?}");
    assert_eq!((waiting.attempts, waiting.runs_unfinished), (0, 0));
    // The backlog's age shows it waiting.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while oldest_unstored_age(&local.service).await < 1 {
        assert!(std::time::Instant::now() < deadline, "the age never grew");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its Start (group g-care: the care line) and End arrive; the End starts it.
    cdr(&local.service, "start", "early-1").await;
    assert!(!stored_within(store, "early-1", Duration::from_millis(300)).await);
    cdr(&local.service, "end", "early-1").await;
    assert!(stored_within(store, "early-1", Duration::from_secs(20)).await);
    let record = store.get(&id).await.unwrap().unwrap();
    let route = record.route.unwrap();
    assert_eq!(route.line_of_business, "care");
    assert!(!route.before_end);
    assert_eq!(record.object.unwrap().bucket, "acme-care");
    assert!(sidecar_of(&local, "early-1").await["routing_note"].is_null());
    assert_eq!(oldest_unstored_age(&local.service).await, 0, "no backlog");
}

/// `callrec_oldest_unstored_age_seconds`, from the operations listener.
async fn oldest_unstored_age(service: &InProcess) -> i64 {
    let text = service
        .http
        .get(format!("{}/metrics", service.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("callrec_oldest_unstored_age_seconds "))
        .expect("the gauge is exported")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_whose_end_never_comes_is_routed_after_the_wait_and_its_sidecar_says_so() {
    let local = local(|config| {
        config.server.end_wait_s = 2;
        with_care_line(config);
    })
    .await;
    let store = local.store.as_ref();
    let started = std::time::Instant::now();
    assert_eq!(upload(&local.service, "lonely-1").await, 201);
    // One received by a process that stopped before running it: the resume at start waits too.
    local.received_earlier("lonely-2", &recording()).await;
    assert_eq!(
        callrec_ingest::server::resume(&local.service.state)
            .await
            .unwrap(),
        2,
        "both calls are queued (and wait)"
    );
    assert!(!stored_within(store, "lonely-1", Duration::from_millis(1200)).await);
    for call in ["lonely-1", "lonely-2"] {
        assert!(stored_within(store, call, Duration::from_secs(20)).await);
        let record = store
            .get(&CallId::parse(call).unwrap())
            .await
            .unwrap()
            .unwrap();
        let route = record.route.unwrap();
        assert_eq!(route.line_of_business, "general", "no CDR: the default");
        assert!(route.before_end);
        let note = sidecar_of(&local, call).await["routing_note"].clone();
        assert!(
            note.as_str()
                .is_some_and(|n| n.contains("before the call's CDR End")),
            "{note}"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "stored only after the wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_object_write_keeps_the_recorded_route_when_the_facts_change() {
    // Routing: group g-care goes to the care line; every other call to general.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CallStore> =
        Arc::new(SqliteStore::open(dir.path().join("callrec.db")).unwrap());
    let mut config = callrec_ingest::config::Config::default();
    // These calls have no CDR: processed at once, not after waiting for an End.
    config.server.end_wait_s = 0;
    config.server.spool_dir = dir.path().join("spool");
    with_care_line(&mut config);
    // The audio object is written; its sidecar is refused once: the run fails after the
    // first object write, before `stored`.
    let root = dir.path().join("objects");
    let objects = Arc::new(OutputDown {
        inner: FolderStore::open(&root).unwrap(),
        failures: AtomicU64::new(1),
        suffix: ".json",
    });
    let service = common::service::serve(config, store.clone(), objects, None).await;
    assert_eq!(upload(&service, "moved-1").await, 201);
    let id = CallId::parse("moved-1").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let record = store.get(&id).await.unwrap().unwrap();
        if record.attempts == 1 {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "{record:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let route = record
        .route
        .clone()
        .expect("routed before the first object write");
    assert_eq!(route.line_of_business, "general");
    assert!(route.before_end, "decided without a CDR End");
    // Now the CDR arrives and would route the call to care.
    cdr(&service, "start", "moved-1").await;
    // The retry (the same bytes again) stores the call where it was routed first.
    assert_eq!(upload(&service, "moved-1").await, 200);
    assert!(stored_within(store.as_ref(), "moved-1", Duration::from_secs(20)).await);
    let record = store.get(&id).await.unwrap().unwrap();
    let object = record.object.unwrap();
    assert_eq!(
        (object.bucket.as_str(), object.key.as_str()),
        (route.bucket.as_str(), route.key.as_str())
    );
    assert!(
        !root.join("acme-care").exists(),
        "nothing was written to the care bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdr_facts_the_record_cannot_keep_reach_the_sidecar_whole() {
    let local = local(|config| config.server.end_wait_s = 300).await;
    let staging = local.service.state.pipeline.routing.staging.bucket.clone();
    // Two events of 64 metadata entries of 1,000 bytes: far past what a record keeps (32 KiB).
    for (kind, event) in [("start", 0), ("end", 1)] {
        let metadata: serde_json::Map<String, serde_json::Value> = (0..64)
            .map(|i| (format!("key-{event}-{i:02}"), "v".repeat(1000).into()))
            .collect();
        let status = local
            .service
            .http
            .post(format!("{}/v1/cdr", local.service.url))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({
                "type": kind, "call_id": "chatty-1",
                "timestamp": "2026-11-24T09:00:00Z", "metadata": metadata
            }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let id = CallId::parse("chatty-1").unwrap();
    let record = local.store.get(&id).await.unwrap().unwrap();
    assert!(record.cdr.facts_truncated);
    assert!(
        record.cdr.metadata.len() < 64,
        "{}",
        record.cdr.metadata.len()
    );
    let kept = local.objects_root.join(&staging).join("facts/chatty-1");
    assert_eq!(
        std::fs::read_dir(&kept).unwrap().count(),
        2,
        "both events kept"
    );
    // The recording (the End is here: processed at once) and its sidecar.
    assert_eq!(upload(&local.service, "chatty-1").await, 201);
    assert!(stored_within(local.store.as_ref(), "chatty-1", Duration::from_secs(20)).await);
    let sidecar = sidecar_of(&local, "chatty-1").await;
    let events = sidecar["cdr_overflow"].as_array().expect("cdr_overflow");
    assert_eq!(events.len(), 2);
    let mut keys: Vec<&str> = events
        .iter()
        .flat_map(|e| e["facts"]["metadata"].as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys.len(), 128, "every fact, whole");
    assert_eq!((keys[0], keys[127]), ("key-0-00", "key-1-63"));
    let value = events
        .iter()
        .find_map(|e| e["facts"]["metadata"]["key-1-63"].as_str())
        .unwrap();
    assert_eq!(value.len(), 1000, "values whole");
    // Out of staging once in the sidecar: the pipeline removes them after it commits `stored`
    // (what the test waited for), so give the removal its moment.
    let gone = || !kept.exists() || std::fs::read_dir(&kept).unwrap().count() == 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gone() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone(), "the overflowing facts left staging");
}
