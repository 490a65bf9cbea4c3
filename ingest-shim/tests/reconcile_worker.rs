//! The reconciliation worker in process, against the SQLite store, the folder object store and
//! ocp-sim's Exports API on a loopback port (HTTPS, OCP's login): object-store errors while
//! recovering lose nothing and store nothing twice; a job past its deadline fails loudly and
//! never hangs; an identity-provider outage and revoked credentials make jobs wait without
//! charging or losing a call.

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use callrec_ingest::objects::folder::FolderStore;
use callrec_ingest::objects::{
    Body, Listing, ObjectError, ObjectInfo, ObjectMeta, ObjectStore, PutOutcome,
};
use callrec_ingest::store::{CallStatus, JobState};
use common::reconcile::*;
use jiff::SignedDuration;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        // Recovered from an export, and the record says so.
        let via = record.staged.as_ref().and_then(|s| s.via);
        assert_eq!(
            via,
            Some(callrec_ingest::store::Via::Export),
            "{}",
            call.call_id
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

    let job = rig.job(&report.created[0]).await;
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
    let open = rig.store.open_jobs(100, None).await.unwrap().items;
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
