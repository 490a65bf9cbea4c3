//! The reconciliation worker in process, against the SQLite store, the folder object store and
//! ocp-sim's Exports API on a loopback port (HTTPS, OCP's login): object-store errors while
//! recovering lose nothing and store nothing twice; a job past its deadline fails loudly and
//! never hangs; an identity-provider outage and revoked credentials make jobs wait without
//! charging or losing a call.

use async_trait::async_trait;
use bytes::Bytes;
use callrec_ingest::CallId;
use callrec_ingest::config::Config;
use callrec_ingest::objects::folder::FolderStore;
use callrec_ingest::objects::{
    Body, Listing, ObjectError, ObjectInfo, ObjectMeta, ObjectStore, PutOutcome,
};
use callrec_ingest::ocp::{Credentials, HttpOcp, OcpConfig, RetryPolicy, Secret};
use callrec_ingest::pipeline::{EngineRunner, Pipeline};
use callrec_ingest::reconcile::schedule::PollSchedule;
use callrec_ingest::reconcile::worker::{Reconciler, WorkerConfig};
use callrec_ingest::server::metrics::Metrics;
use callrec_ingest::store::sqlite::SqliteStore;
use callrec_ingest::store::{CallStatus, CallStore, JobState};
use jiff::{SignedDuration, Timestamp};
use ocp_sim::exports::{ExportsApi, ExportsConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const GROUP: &str = "grp-emea-01";

/// Which object-store operation a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    StagePut,
    OutputPut,
    Get,
    Delete,
}

/// The folder store, failing every `every`-th call of each operation (as S3 answers 503
/// SlowDown or a connection resets) until `budget` faults of that operation were injected.
struct Flaky {
    inner: FolderStore,
    staging_bucket: String,
    every: u64,
    budget: u64,
    calls: Mutex<BTreeMap<Op, u64>>,
    injected: Mutex<BTreeMap<Op, u64>>,
}

impl Flaky {
    fn fault(&self, op: Op) -> Result<(), ObjectError> {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(op).or_default();
        *n += 1;
        let mut injected = self.injected.lock().unwrap();
        let done = injected.entry(op).or_default();
        if (*n).is_multiple_of(self.every) && *done < self.budget {
            *done += 1;
            return Err(ObjectError::Unavailable {
                backend: "folder",
                message: format!("injected fault in {op:?}"),
            });
        }
        Ok(())
    }

    fn injected(&self) -> BTreeMap<Op, u64> {
        self.injected.lock().unwrap().clone()
    }
}

#[async_trait]
impl ObjectStore for Flaky {
    fn backend(&self) -> &'static str {
        "folder"
    }

    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, ObjectError> {
        let op = if bucket == self.staging_bucket {
            Op::StagePut
        } else {
            Op::OutputPut
        };
        self.fault(op)?;
        self.inner.put_new(bucket, key, body, meta).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        self.inner.head(bucket, key).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes, ObjectError> {
        self.fault(Op::Get)?;
        self.inner.get(bucket, key, range).await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Listing, ObjectError> {
        self.inner.list(bucket, prefix, limit, cursor).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.fault(Op::Delete)?;
        self.inner.delete(bucket, key).await
    }
}

/// Everything one test needs: the stores, OCP with the calls' recordings, a reconciler.
struct Rig {
    _dir: tempfile::TempDir,
    objects_root: std::path::PathBuf,
    store: Arc<dyn CallStore>,
    api: ExportsApi,
    metrics: Arc<Metrics>,
    reconciler: Arc<Reconciler>,
    calls: Vec<ocp_sim::SimCall>,
}

/// `calls` calls of one group that ended hours ago, their Start and End events in the store and
/// none of their recordings: OCP holds them all. `objects` wraps the folder store.
async fn rig(
    calls: usize,
    exports: ExportsConfig,
    objects: impl FnOnce(FolderStore, String) -> Arc<dyn ObjectStore>,
    tune: impl FnOnce(&mut WorkerConfig),
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let toml = root.join("callrec.toml");
    std::fs::write(
        &toml,
        format!(
            "[state]\nsqlite_path = {:?}\n[objects]\nfolder_root = {:?}\n[server]\nspool_dir = {:?}\n",
            root.join("callrec.db"),
            root.join("objects"),
            root.join("spool"),
        ),
    )
    .unwrap();
    let loaded = Config::load(Some(&toml)).unwrap();
    callrec_ingest::setup::init(&loaded, true).await.unwrap();
    let store: Arc<dyn CallStore> = Arc::new(SqliteStore::open(root.join("callrec.db")).unwrap());
    let folder = FolderStore::open(root.join("objects")).unwrap();
    let objects = objects(folder, loaded.routing.staging.bucket.clone());

    // The calls: planned by the simulator three hours ago, Start and End from their CDRs.
    let mut sim = ocp_sim::SimConfig::new("", "");
    sim.calls = calls;
    sim.seed = 31;
    sim.min_call_s = 1.0;
    sim.max_call_s = 3.0;
    sim.groups = vec![GROUP.into()];
    let sim = Arc::new(sim);
    let base = Timestamp::now() - SignedDuration::from_hours(3);
    let mut planned = Vec::new();
    let mut recordings = Vec::new();
    for index in 0..calls {
        let call = ocp_sim::plan_call(&sim, index, base);
        for record in [
            ocp_sim::records::dialog_start(&call),
            ocp_sim::records::dialog_end(&call),
        ] {
            let mapped = callrec_ingest::ocp::cdr::map_record(&record, GROUP).unwrap();
            store
                .update(&mapped.call_id, &mapped.change, call.end)
                .await
                .unwrap();
        }
        let audio = Bytes::from(ocp_sim::recording(&sim, &call, index));
        recordings.push(ocp_sim::export_recording(&sim, &call, index, audio, true));
        planned.push(call);
    }
    let api = ExportsApi::new(exports, recordings);
    let served = ocp_sim::exports::serve(api.clone(), true).await.unwrap();
    let credentials = Credentials::Password {
        username: "callrec".into(),
        password: Secret::new("ocp-secret"),
    };
    let mut ocp_config = OcpConfig::new(&served.url, credentials, false)
        .unwrap()
        .trusting(served.ca_pem.as_deref().unwrap());
    ocp_config.retry = RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
    };
    let ocp = HttpOcp::new(ocp_config).unwrap();

    let pipeline = Pipeline {
        store: store.clone(),
        objects,
        routing: Arc::new(loaded.routing.clone()),
        engine: EngineRunner::start(2, 8, callrec_engine::ProcessConfig::default()).unwrap(),
        keep_staged: false,
    };
    let mut config = WorkerConfig::from_config(&loaded.config, "replica-a".into());
    config.scan.grace = SignedDuration::ZERO;
    config.poll = PollSchedule {
        initial: SignedDuration::from_millis(100),
        max: SignedDuration::from_millis(300),
        growth: 1.5,
        jitter: 0.0,
    };
    tune(&mut config);
    let metrics = Arc::new(Metrics::new());
    let reconciler = Reconciler::new(pipeline, Arc::new(ocp), config, metrics.clone());
    Rig {
        objects_root: root.join("objects"),
        _dir: dir,
        store,
        api,
        metrics,
        reconciler,
        calls: planned,
    }
}

impl Rig {
    async fn record(&self, call: &ocp_sim::SimCall) -> callrec_ingest::store::CallRecord {
        let id = CallId::parse(&call.call_id).unwrap();
        self.store.get(&id).await.unwrap().expect("a record")
    }
}

fn exports_config() -> ExportsConfig {
    let mut config = ExportsConfig::new("callrec", "ocp-secret");
    config.completion_delay = Duration::from_millis(200);
    config
}

/// Works the open jobs until none is left, with a time limit (a hang fails the test).
async fn work_all(reconciler: &Arc<Reconciler>) {
    tokio::time::timeout(
        Duration::from_secs(60),
        reconciler.work_until(CancellationToken::new(), |open| open.is_empty()),
    )
    .await
    .expect("the open jobs finish");
}

/// Files under `root` (recursively) whose name ends with `suffix`, skipping the store's own
/// `.tmp`/`.meta` folders and `skip`.
fn files(root: &Path, suffix: &str, skip: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('.') || (dir == root && name == skip) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_errors_while_recovering_lose_nothing_and_store_nothing_twice() {
    let flaky = Arc::new(Mutex::new(None::<Arc<Flaky>>));
    let keep = flaky.clone();
    let rig = rig(
        30,
        exports_config(),
        move |inner, staging_bucket| {
            let store = Arc::new(Flaky {
                inner,
                staging_bucket,
                every: 3,
                budget: 5,
                calls: Mutex::default(),
                injected: Mutex::default(),
            });
            *keep.lock().unwrap() = Some(store.clone());
            store
        },
        |config| config.stale_after = SignedDuration::ZERO,
    )
    .await;
    let flaky = flaky.lock().unwrap().clone().unwrap();

    // Scan, work the jobs, again — as the service's loop does — until every call is stored.
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 10, "not every call stored after 10 rounds");
        rig.reconciler.scan_once().await.unwrap();
        work_all(&rig.reconciler).await;
        let funnel = rig.store.funnel().await.unwrap();
        if funnel.stored == rig.calls.len() as u64 {
            break;
        }
    }
    // Each kind of fault happened, and each cost a round, not a call.
    let injected = flaky.injected();
    for op in [Op::StagePut, Op::OutputPut, Op::Get, Op::Delete] {
        assert_eq!(injected.get(&op), Some(&5), "{op:?}: {injected:?}");
    }
    assert!(rounds >= 2, "the faults needed a second round");
    // A failed read of the staged copy or write of the output is a pipeline failure, resumed
    // by the next scan; a failed removal of the staged copy after `stored` is not.
    assert_eq!(
        rig.metrics.failures.with_label_values(&["objects"]).get(),
        10,
        "{injected:?}"
    );
    assert_eq!(rig.metrics.calls_lost.get(), 0);
    assert!(
        rig.metrics
            .export_files
            .with_label_values(&["failed"])
            .get()
            > 0
    );

    // Every call stored once: one audio object each, the bytes the record names.
    let staging = flaky.staging_bucket.clone();
    let stored = files(&rig.objects_root, ".wav", &staging);
    assert_eq!(stored.len(), rig.calls.len(), "one object per call");
    for call in &rig.calls {
        let record = rig.record(call).await;
        assert_eq!(record.status, CallStatus::Complete, "{}", call.call_id);
        // One attempt per round at most, whatever failed in it.
        assert!(
            record.attempts < rounds,
            "{}: {} attempts in {rounds} rounds",
            call.call_id,
            record.attempts
        );
        let object = record.object.as_ref().expect("stored object");
        let path = rig.objects_root.join(&object.bucket).join(&object.key);
        let bytes = std::fs::read(&path).unwrap();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert_eq!(sha, object.sha256, "{}", call.call_id);
    }
    // A recording is downloaded again only when staging it failed (a failure after staging is
    // resumed from the staged copy, not downloaded again).
    let downloads: u64 = rig.api.downloads().values().sum();
    assert!(
        downloads >= rig.calls.len() as u64 && downloads <= rig.calls.len() as u64 + 5,
        "{downloads} downloads"
    );
    // Staging copies are removed, except those whose removal was refused (left, not failed).
    let staged = files(&rig.objects_root.join(&staging), ".raw", "");
    assert!(staged.len() <= 5, "{} staged copies left", staged.len());
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_past_its_deadline_fails_loudly_and_counts_an_attempt() {
    let (logs, _guard) = capture_logs();

    let mut exports = exports_config();
    // OCP never finishes the export within the job's deadline.
    exports.completion_delay = Duration::from_secs(3600);
    let rig = rig(
        4,
        exports,
        |inner, _| Arc::new(inner),
        |config| {
            config.scan.job_deadline = SignedDuration::from_millis(1500);
            config.max_attempts = 1;
        },
    )
    .await;
    let started = std::time::Instant::now();
    let report = rig.reconciler.scan_once().await.unwrap();
    assert_eq!(report.created.len(), 1);
    work_all(&rig.reconciler).await;
    assert!(started.elapsed() < Duration::from_secs(20));

    let job = rig
        .store
        .get_job(&report.created[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.last_error.as_deref().unwrap_or("").contains("deadline"),
        "{:?}",
        job.last_error
    );
    assert!(job.next_poll_at.is_none(), "a failed job has no timer");
    assert!(job.attempt >= 2, "it was polled until the deadline");
    assert_eq!(
        rig.metrics.export_jobs.with_label_values(&["failed"]).get(),
        1
    );
    // Out of attempts (1 here): its calls are lost — counted and logged, not dropped.
    assert_eq!(rig.metrics.calls_lost.get(), 4);
    for call in &rig.calls {
        let record = rig.record(call).await;
        assert_eq!(record.status, CallStatus::Lost);
        assert_eq!(record.attempts, 1);
    }
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().any(|l| l.contains("ERROR")
            && l.contains("export job failed")
            && l.contains("deadline")),
        "{logs}"
    );
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("ERROR") && l.contains("recording lost"))
            .count(),
        4,
        "{logs}"
    );
}

/// Warnings and errors logged on this test's thread (a current-thread runtime runs every task
/// here), kept until the guard is dropped.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || LogWriter(writer.clone()))
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the replica's loop (scans every 150 ms) until every call is stored or `limit` passes.
async fn run_until_stored(rig: &Rig, limit: Duration) -> bool {
    let stop = CancellationToken::new();
    let task = {
        let reconciler = Arc::clone(&rig.reconciler);
        let stop = stop.clone();
        tokio::spawn(async move { reconciler.run(stop).await })
    };
    let started = std::time::Instant::now();
    let mut all = false;
    while started.elapsed() < limit {
        if rig.store.funnel().await.unwrap().stored == rig.calls.len() as u64 {
            all = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.unwrap();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_outage_longer_than_max_attempts_rounds_charges_no_call() {
    let rig = rig(
        6,
        exports_config(),
        |inner, _| Arc::new(inner),
        |config| {
            config.max_attempts = 2;
            config.scan_interval = Duration::from_millis(150);
        },
    )
    .await;
    // The token endpoint answers 503 for 3 s: 20 scan rounds, 10 times max_attempts.
    rig.api.idp_outage(503, Duration::from_secs(3));
    let stored = run_until_stored(&rig, Duration::from_secs(60)).await;
    assert!(
        stored,
        "every call stored once the identity provider is back"
    );
    assert!(rig.api.grants().unavailable >= 2, "{:?}", rig.api.grants());
    assert!(rig.metrics.ocp_unavailable.get() >= 2);
    assert_eq!(rig.metrics.ocp_auth_failures.get(), 0);
    assert_eq!(rig.metrics.calls_lost.get(), 0);
    for call in &rig.calls {
        let record = rig.record(call).await;
        assert_eq!(record.status, CallStatus::Complete, "{}", call.call_id);
        assert_eq!(record.attempts, 0, "{} was charged", call.call_id);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn revoked_credentials_make_jobs_wait_loudly_and_charge_no_call() {
    let (logs, _guard) = capture_logs();

    let rig = rig(
        4,
        exports_config(),
        |inner, _| Arc::new(inner),
        |config| {
            config.max_attempts = 1;
            config.scan_interval = Duration::from_millis(150);
            // Past the deadline while waiting: closed, but its calls still not charged.
            config.scan.job_deadline = SignedDuration::from_millis(1200);
        },
    )
    .await;
    rig.api.revoke_credentials();
    assert!(!run_until_stored(&rig, Duration::from_secs(3)).await);
    assert!(rig.metrics.ocp_auth_failures.get() >= 2);
    assert_eq!(rig.metrics.calls_lost.get(), 0);
    for call in &rig.calls {
        let record = rig.record(call).await;
        assert_eq!(record.status, CallStatus::Pending, "{}", call.call_id);
        assert_eq!(record.attempts, 0, "{} was charged", call.call_id);
    }
    // The jobs say why they wait (or why the one past its deadline closed).
    let open = rig.store.open_jobs(100).await.unwrap();
    assert!(
        open.iter()
            .all(|j| j.waiting_on.as_deref() == Some("credentials")),
        "{open:?}"
    );
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let refused = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("refused callrec's credentials"))
        .count();
    // Once per job, not once per attempt.
    let jobs = rig.api.grants().refused;
    assert!(
        refused >= 1 && (refused as u64) < jobs,
        "{refused} error lines, {jobs} refusals:\n{text}"
    );
    assert!(!text.contains("ocp-secret"), "a secret in the logs");

    // A person fixes the credentials: every call is stored, still uncharged.
    rig.api.restore_credentials();
    assert!(run_until_stored(&rig, Duration::from_secs(60)).await);
    for call in &rig.calls {
        assert_eq!(rig.record(call).await.attempts, 0);
    }
}
