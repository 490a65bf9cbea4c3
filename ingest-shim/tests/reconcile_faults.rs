//! Upstream faults bounded, against ocp-sim's Exports API (HTTPS, OCP's login): a `Retry-After`
//! of days, a listing whose page token repeats, a file ten times its declared size, a slow
//! download that keeps sending, one that stalls, the longest group id — and two replicas whose
//! clocks are two lease lengths apart.

mod common;

use callrec_ingest::store::{CallStatus, ExportJob, JobState};
use common::reconcile::*;
use jiff::{SignedDuration, Timestamp};
use ocp_sim::exports::Faults;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The one job a scan made.
async fn only_job(rig: &Rig) -> ExportJob {
    let mut jobs = rig.store.open_jobs(10, None).await.unwrap().items;
    if jobs.is_empty() {
        panic!("no open job");
    }
    jobs.remove(0)
}

/// Polls the job until `ok` holds (a step may be in flight), at most `limit`.
async fn job_when(rig: &Rig, limit: Duration, ok: impl Fn(&ExportJob) -> bool) -> ExportJob {
    let started = std::time::Instant::now();
    loop {
        let job = only_job(rig).await;
        if ok(&job) || started.elapsed() > limit {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Works the open jobs in the background; stopped by the returned token.
fn work_in_background(rig: &Rig) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let reconciler = Arc::clone(&rig.reconciler);
    let token = stop.clone();
    let task = tokio::spawn(async move { reconciler.work_until(token, |_| true).await });
    (stop, task)
}

/// OCP's faults end: the background work finishes every job (a hang fails the test) and every
/// call is stored.
async fn faults_over(rig: &Rig, stop: CancellationToken, task: tokio::task::JoinHandle<()>) {
    rig.api.set_faults(Faults::default());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the jobs finish once OCP answers")
        .unwrap();
    stop.cancel();
    all_stored(rig).await;
}

async fn all_stored(rig: &Rig) {
    for call in &rig.calls {
        let record = rig.record(call).await;
        assert_eq!(record.status, CallStatus::Complete, "{}", call.call_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_days_reschedules_within_the_cap_and_gives_the_lease_back() {
    let rig = rig(
        6,
        exports_config(),
        |inner, _| Arc::new(inner),
        |config| config.max_retry_after = SignedDuration::from_secs(1),
    )
    .await;
    rig.api.set_faults(Faults {
        throttle_all: Some(999_999),
        ..Faults::default()
    });
    rig.reconciler.scan_once().await.unwrap();
    let (stop, task) = work_in_background(&rig);
    let job = job_when(&rig, Duration::from_secs(10), |j| {
        j.waiting_on.is_some() && j.lease_owner.is_none()
    })
    .await;
    // Waiting, lease given back, due again within the cap — not in eleven days.
    assert_eq!(job.waiting_on.as_deref(), Some("unavailable"), "{job:?}");
    assert_eq!(job.lease_owner, None);
    let due_in = job.next_poll_at.unwrap().duration_since(Timestamp::now());
    assert!(due_in <= SignedDuration::from_millis(1100), "{due_in:?}");
    assert!(job.last_error.unwrap().contains("429"));
    // OCP lets up: everything is stored, nothing was charged.
    faults_over(&rig, stop, task).await;
    for call in &rig.calls {
        assert_eq!(rig.record(call).await.attempts, 0, "{}", call.call_id);
    }
    assert!(rig.metrics.ocp_unavailable.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_whose_page_token_repeats_ends_and_the_job_tries_again() {
    let rig = rig(6, exports_config(), |inner, _| Arc::new(inner), |_| {}).await;
    rig.api.set_faults(Faults {
        repeat_page_token: true,
        ..Faults::default()
    });
    rig.reconciler.scan_once().await.unwrap();
    let (stop, task) = work_in_background(&rig);
    let job = job_when(&rig, Duration::from_secs(10), |j| {
        j.last_error
            .as_deref()
            .is_some_and(|e| e.contains("page token repeats"))
    })
    .await;
    assert_eq!(job.state, JobState::Fetching, "{job:?}");
    assert_eq!(job.waiting_on.as_deref(), Some("unavailable"));
    // The files of the pages read went through; a later round finishes the job.
    faults_over(&rig, stop, task).await;
    // Each recording was downloaded once: a repeated page skips what is stored.
    assert!(rig.api.downloads().values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_ten_times_its_declared_size_is_refused_and_the_rest_are_stored() {
    let rig = rig(6, exports_config(), |inner, _| Arc::new(inner), |_| {}).await;
    // Recordings 0 and 3 come with ten times the bytes their listing declares.
    rig.api.set_faults(Faults {
        oversize_every: Some(3),
        ..Faults::default()
    });
    let report = rig.reconciler.scan_once().await.unwrap();
    work_all(&rig.reconciler).await;
    let job = rig.job(&report.created[0]).await;
    assert_eq!(
        job.state,
        JobState::Done,
        "one bad file does not fail the job"
    );
    let mut refused = 0;
    for (index, call) in rig.calls.iter().enumerate() {
        let record = rig.record(call).await;
        if index % 3 == 0 {
            refused += 1;
            assert_eq!(record.status, CallStatus::Pending, "{}", call.call_id);
            assert_eq!(record.attempts, 1);
            let error = record.last_error.unwrap_or_default();
            assert!(error.contains("longer than"), "{error}");
        } else {
            assert_eq!(record.status, CallStatus::Complete, "{}", call.call_id);
        }
    }
    assert_eq!(refused, 2);
    // Nothing of the refused bytes stays behind.
    assert!(files(&rig.spool_dir, "", "").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_download_that_keeps_sending_completes() {
    let rig = rig_of(
        GROUP,
        4,
        exports_config(),
        |inner, _| Arc::new(inner),
        |client| {
            // Each download takes ~0.8 s, longer than any API call may.
            client.timeouts.request = Duration::from_millis(300);
            client.timeouts.read_idle = Duration::from_secs(2);
        },
        |_| {},
    )
    .await;
    rig.api.set_faults(Faults {
        trickle: Some(Duration::from_millis(100)),
        ..Faults::default()
    });
    rig.reconciler.scan_once().await.unwrap();
    work_all(&rig.reconciler).await;
    all_stored(&rig).await;
    let downloads = rig.api.downloads();
    assert_eq!(downloads.len(), 4);
    assert!(downloads.values().all(|&n| n == 1), "{downloads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_times_out_and_is_tried_again() {
    let rig = rig_of(
        GROUP,
        4,
        exports_config(),
        |inner, _| Arc::new(inner),
        |client| client.timeouts.read_idle = Duration::from_millis(300),
        |_| {},
    )
    .await;
    // Recordings 0 and 2 stall half-way on their first download.
    rig.api.set_faults(Faults {
        stall_every: Some(2),
        ..Faults::default()
    });
    let report = rig.reconciler.scan_once().await.unwrap();
    work_all(&rig.reconciler).await;
    all_stored(&rig).await;
    let job = rig.job(&report.created[0]).await;
    assert_eq!(job.state, JobState::Done);
    let mut tries: Vec<u64> = rig.api.downloads().into_values().collect();
    tries.sort();
    assert_eq!(tries, [1, 1, 2, 2]);
    for call in &rig.calls {
        assert_eq!(rig.record(call).await.attempts, 0, "nothing charged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_group_id_is_reconciled() {
    let group = format!("g{}", "x".repeat(127));
    assert_eq!(group.len(), callrec_ingest::ids::MAX_ID_LEN);
    let rig = rig_of(
        &group,
        3,
        exports_config(),
        |inner, _| Arc::new(inner),
        |_| {},
        |_| {},
    )
    .await;
    let report = rig.reconciler.scan_once().await.unwrap();
    assert_eq!(report.created.len(), 1, "{report:?}");
    assert!(report.created[0].as_str().len() <= callrec_ingest::ids::MAX_ID_LEN);
    work_all(&rig.reconciler).await;
    all_stored(&rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_clocks_two_leases_apart_never_work_a_job_at_once() {
    let ttl = SignedDuration::from_millis(400);
    let mut exports = exports_config();
    // Fetching takes ~2 s: five lease lengths, so leases are renewed while replicas watch.
    exports.download_delay = Duration::from_millis(150);
    let rig = rig(
        12,
        exports,
        |inner, _| Arc::new(inner),
        |config| {
            config.lease_ttl = ttl;
            config.download_concurrency = 1;
        },
    )
    .await;
    rig.reconciler.scan_once().await.unwrap();
    let two = ttl * 2;
    let (behind, behind_metrics) = rig.replica("replica-behind", -two);
    let (ahead, ahead_metrics) = rig.replica("replica-ahead", two);
    let work = |r: Arc<callrec_ingest::reconcile::Reconciler>| {
        tokio::spawn(async move { r.work_until(CancellationToken::new(), |_| true).await })
    };
    // The replica whose clock is behind takes the job and starts fetching; then the one whose
    // clock is ahead joins: by its clock, the holder's lease ended two lease lengths ago.
    let x = work(behind);
    tokio::time::timeout(Duration::from_secs(30), async {
        while rig.api.downloads().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first replica fetches");
    let y = work(ahead);
    tokio::time::timeout(Duration::from_secs(60), async {
        x.await.unwrap();
        y.await.unwrap();
    })
    .await
    .expect("the job finishes");
    all_stored(&rig).await;
    // One replica at a time: no take-over of a live lease, no lease lost, every recording
    // downloaded once.
    for metrics in [&behind_metrics, &ahead_metrics] {
        assert_eq!(metrics.lease_takeovers.get(), 0);
        assert_eq!(metrics.leases_lost.get(), 0);
    }
    let downloads = rig.api.downloads();
    assert_eq!(downloads.len(), 12);
    assert!(downloads.values().all(|&n| n == 1), "{downloads:?}");
    assert_eq!(rig.api.exports_created(), 1);
}
