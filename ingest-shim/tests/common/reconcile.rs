//! The reconciliation rig shared by the worker tests: the SQLite store, the folder object
//! store, ocp-sim's Exports API on a loopback port (HTTPS, OCP's login) holding the calls'
//! recordings, and a reconciler — or several, on skewed clocks.

use bytes::Bytes;
use callrec_ingest::CallId;
use callrec_ingest::config::{Config, Loaded};
use callrec_ingest::metrics::Metrics;
use callrec_ingest::objects::ObjectStore;
use callrec_ingest::objects::folder::FolderStore;
use callrec_ingest::ocp::{Credentials, HttpOcp, OcpConfig, OcpExports, RetryPolicy, Secret};
use callrec_ingest::pipeline::{EngineRunner, Pipeline};
use callrec_ingest::reconcile::schedule::PollSchedule;
use callrec_ingest::reconcile::{Clock, Reconciler, WorkerConfig};
use callrec_ingest::store::CallStore;
use callrec_ingest::store::sqlite::SqliteStore;
use jiff::{SignedDuration, Timestamp};
use ocp_sim::exports::{ExportsApi, ExportsConfig};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const GROUP: &str = "grp-emea-01";

/// Everything one test needs: the stores, OCP with the calls' recordings, a reconciler.
pub struct Rig {
    pub _dir: tempfile::TempDir,
    pub objects_root: std::path::PathBuf,
    pub spool_dir: std::path::PathBuf,
    pub store: Arc<dyn CallStore>,
    pub api: ExportsApi,
    pub metrics: Arc<Metrics>,
    pub reconciler: Arc<Reconciler>,
    pub calls: Vec<ocp_sim::SimCall>,
    pub pipeline: Pipeline,
    pub ocp: Arc<dyn OcpExports>,
    /// The OCP client's settings: a replica makes its own client from them.
    pub ocp_config: OcpConfig,
    pub config: WorkerConfig,
}

/// `calls` calls of [`GROUP`] that ended hours ago, their Start and End events in the store and
/// none of their recordings: OCP holds them all. `objects` wraps the folder store.
pub async fn rig(
    calls: usize,
    exports: ExportsConfig,
    objects: impl FnOnce(FolderStore, String) -> Arc<dyn ObjectStore>,
    tune: impl FnOnce(&mut WorkerConfig),
) -> Rig {
    rig_of(GROUP, calls, exports, objects, |_| {}, tune).await
}

/// The same for `group`, with the OCP client's settings tuned by `client`.
pub async fn rig_of(
    group: &str,
    calls: usize,
    exports: ExportsConfig,
    objects: impl FnOnce(FolderStore, String) -> Arc<dyn ObjectStore>,
    client: impl FnOnce(&mut OcpConfig),
    tune: impl FnOnce(&mut WorkerConfig),
) -> Rig {
    rig_over(None, group, calls, exports, objects, client, tune).await
}

/// The same over `store` (`None`: SQLite in the rig's folder).
pub async fn rig_over(
    store: Option<Arc<dyn CallStore>>,
    group: &str,
    calls: usize,
    exports: ExportsConfig,
    objects: impl FnOnce(FolderStore, String) -> Arc<dyn ObjectStore>,
    client: impl FnOnce(&mut OcpConfig),
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
    let loaded: Loaded = Config::load(Some(&toml)).unwrap();
    callrec_ingest::setup::init(&loaded, true).await.unwrap();
    let store: Arc<dyn CallStore> =
        store.unwrap_or_else(|| Arc::new(SqliteStore::open(root.join("callrec.db")).unwrap()));
    let folder = FolderStore::open(root.join("objects")).unwrap();
    let objects = objects(folder, loaded.routing.staging.bucket.clone());

    // The calls: planned by the simulator three hours ago, Start and End from their CDRs.
    let mut sim = ocp_sim::SimConfig::new("", "");
    sim.calls = calls;
    sim.seed = 31;
    sim.min_call_s = 1.0;
    sim.max_call_s = 3.0;
    sim.groups = vec![group.into()];
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
            let mapped = callrec_ingest::ocp::cdr::map_record(&record, group).unwrap();
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
    client(&mut ocp_config);
    let ocp: Arc<dyn OcpExports> = Arc::new(HttpOcp::new(ocp_config.clone()).unwrap());

    let pipeline = Pipeline {
        store: store.clone(),
        objects,
        routing: Arc::new(loaded.routing.clone()),
        engine: EngineRunner::start(2, 1 << 30, callrec_engine::ProcessConfig::default()).unwrap(),
        keep_staged: false,
        max_attempts: loaded.config.server.max_attempts,
        in_flight: Default::default(),
        end_wait: std::time::Duration::ZERO,
    };
    let mut config = loaded.config.worker_config("replica-a".into());
    config.scan.grace = SignedDuration::ZERO;
    config.poll = PollSchedule {
        initial: SignedDuration::from_millis(100),
        max: SignedDuration::from_millis(300),
        growth: 1.5,
        jitter: 0.0,
    };
    tune(&mut config);
    let metrics = Arc::new(Metrics::new());
    let reconciler = Reconciler::new(
        pipeline.clone(),
        ocp.clone(),
        config.clone(),
        metrics.clone(),
    );
    Rig {
        objects_root: root.join("objects"),
        spool_dir: root.join("spool"),
        _dir: dir,
        store,
        api,
        metrics,
        reconciler,
        calls: planned,
        pipeline,
        ocp,
        ocp_config,
        config,
    }
}

impl Rig {
    pub async fn record(&self, call: &ocp_sim::SimCall) -> callrec_ingest::store::CallRecord {
        let id = CallId::parse(&call.call_id).unwrap();
        self.store.get(&id).await.unwrap().expect("a record")
    }

    pub async fn job(&self, id: &callrec_ingest::store::JobId) -> callrec_ingest::store::ExportJob {
        self.store.get_job(id).await.unwrap().expect("a job")
    }

    /// Another replica on the same stores and OCP: named `owner`, its wall clock `skew` off,
    /// with its own metrics and its own OCP client (its own login and connections, as another
    /// process has).
    pub fn replica(&self, owner: &str, skew: SignedDuration) -> (Arc<Reconciler>, Arc<Metrics>) {
        let mut config = self.config.clone();
        config.owner = owner.into();
        let metrics = Arc::new(Metrics::new());
        let ocp: Arc<dyn OcpExports> = Arc::new(HttpOcp::new(self.ocp_config.clone()).unwrap());
        let reconciler = Reconciler::with_clock(
            self.pipeline.clone(),
            ocp,
            config,
            metrics.clone(),
            Clock::skewed(skew),
        );
        (reconciler, metrics)
    }
}

pub fn exports_config() -> ExportsConfig {
    let mut config = ExportsConfig::new("callrec", "ocp-secret");
    config.completion_delay = Duration::from_millis(200);
    config
}

/// Works the open jobs until none is left, with a time limit (a hang fails the test).
pub async fn work_all(reconciler: &Arc<Reconciler>) {
    // Generous: a hang fails it, a loaded machine (tests in parallel) must not.
    tokio::time::timeout(
        Duration::from_secs(180),
        reconciler.work_until(CancellationToken::new(), |_| true),
    )
    .await
    .expect("the open jobs finish");
}

/// Files under `root` (recursively) whose name ends with `suffix`, skipping the store's own
/// `.tmp`/`.meta` folders and `skip`.
pub fn files(root: &Path, suffix: &str, skip: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
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

/// Warnings and errors logged on this test's thread (a current-thread runtime runs every task
/// here), kept until the guard is dropped.
pub fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || LogWriter(writer.clone()))
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

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
pub async fn run_until_stored(rig: &Rig, limit: Duration) -> bool {
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
