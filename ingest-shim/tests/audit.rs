//! The daily audit, in process against ocp-sim's Exports API: calls streamed (stage 1), calls
//! whose recordings never came (stage 2), calls of which nothing came at all (only OCP's CDR
//! export names them: the audit finds them), and a call callrec has that OCP does not report.
//! Every call OCP reported ends stored once, the audit's figures say how each got there, and
//! the call OCP does not report is listed and kept. The audit's own export failing (429, 5xx,
//! expiry, a missing page or file) is tried again and leaves the day incomplete, never
//! concluded on part of OCP's records; a replica killed during an audit is replaced and nothing
//! is done twice.

mod common;

use bytes::Bytes;
use callrec_ingest::CallId;
use callrec_ingest::pipeline::Ending;
use callrec_ingest::reconcile::audit::{
    AuditState, AuditSummary, audit_state, day_range, settled_days,
};
use callrec_ingest::reconcile::scanner::job_id;
use callrec_ingest::store::{CallChange, CallStatus, CdrFacts, ExportJob, JobState, Via};
use common::reconcile::{GROUP, Rig, exports_config, files, rig};
use jiff::SignedDuration;
use ocp_sim::exports::Faults;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// More calls of the rig's plan (numbers `indexes`) that only OCP knows of: no CDR, no
/// recording arrived. The simulator's settings, and the calls.
fn only_ocp_knows(
    rig: &Rig,
    indexes: std::ops::Range<usize>,
) -> (Arc<ocp_sim::SimConfig>, Vec<ocp_sim::SimCall>) {
    let mut sim = ocp_sim::SimConfig::new("", "");
    sim.seed = 31;
    sim.min_call_s = 1.0;
    sim.max_call_s = 3.0;
    sim.groups = vec![GROUP.into()];
    let sim = Arc::new(sim);
    let base = rig.calls[0].start;
    let mut unknown = Vec::new();
    for index in indexes {
        let call = ocp_sim::plan_call(&sim, index, base);
        let audio = Bytes::from(ocp_sim::recording(&sim, &call, index));
        rig.api
            .add(ocp_sim::export_recording(&sim, &call, index, audio, true));
        unknown.push(call);
    }
    (sim, unknown)
}

/// The audit of the rig's group on: today counts as settled (the rig's calls are three hours
/// old), and yesterday; both are overdue at once (deadline zero).
fn audited(config: &mut callrec_ingest::reconcile::WorkerConfig) {
    config.audit.groups = vec![GROUP.into()];
    config.audit.settle = SignedDuration::from_hours(-24);
    config.audit.lookback_days = 1;
    config.audit.deadline = SignedDuration::ZERO;
    config.scan_interval = Duration::from_millis(150);
}

/// Every audit job of the group's `day`, in order.
async fn audit_jobs(rig: &Rig, day: jiff::civil::Date) -> Vec<ExportJob> {
    let range = day_range(GROUP, day).unwrap();
    let mut jobs = Vec::new();
    for n in 0.. {
        let id = job_id("aud", &range, n).unwrap();
        match rig.store.get_job(&id).await.unwrap() {
            Some(job) => jobs.push(job),
            None => return jobs,
        }
    }
    jobs
}

/// Every audit job of the settled days.
async fn all_audit_jobs(rig: &Rig) -> Vec<ExportJob> {
    let mut jobs = Vec::new();
    for day in settled_days(&rig.config.audit, jiff::Timestamp::now()) {
        jobs.extend(audit_jobs(rig, day).await);
    }
    jobs
}

/// Waits (at most 60 s) until some audit job satisfies `ok`; returns it.
async fn audit_job_when(rig: &Rig, what: &str, ok: impl Fn(&ExportJob) -> bool) -> ExportJob {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(job) = all_audit_jobs(rig).await.into_iter().find(|j| ok(j)) {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "no audit job {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most 120 s) until every settled day's audit is done and complete: the summaries.
async fn days_complete(rig: &Rig) -> Vec<AuditSummary> {
    let days = settled_days(&rig.config.audit, jiff::Timestamp::now());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut summaries = Vec::new();
        for day in &days {
            if let Some(AuditState::Done(job)) =
                audit_state(rig.store.as_ref(), GROUP, *day).await.unwrap()
                && let Some(summary) = job.audit.clone()
                && summary.complete()
            {
                summaries.push(summary);
            }
        }
        if summaries.len() == days.len() {
            return summaries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit did not complete: {:?}",
            all_audit_jobs(rig).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No audit of the calls' days concluded and no call was taken for absent from OCP.
async fn nothing_concluded(rig: &Rig, calls: &[&ocp_sim::SimCall]) {
    let days: std::collections::BTreeSet<jiff::civil::Date> = calls
        .iter()
        .map(|c| c.start.to_zoned(jiff::tz::TimeZone::UTC).date())
        .collect();
    for day in days {
        for job in audit_jobs(rig, day).await {
            assert_ne!(job.state, JobState::Done, "{job:?}");
        }
    }
    for call in calls {
        if let Some(record) = rig
            .store
            .get(&CallId::parse(&call.call_id).unwrap())
            .await
            .unwrap()
        {
            assert!(record.not_in_ocp.is_none(), "{record:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audits_own_export_failing_is_tried_again_and_the_day_says_it_is_incomplete() {
    let mut exports = exports_config();
    // One file a page: the listing of a CDR-only export has pages to lose.
    exports.max_page_size = 1;
    let rig = rig(
        6,
        exports,
        |folder, _| Arc::new(folder),
        |config| {
            audited(config);
            // Recovery jobs meet the same faults; their calls must not run out of attempts.
            config.max_attempts = 1000;
        },
    )
    .await;
    let (_, unknown) = only_ocp_knows(&rig, 6..8);
    let reported: Vec<&ocp_sim::SimCall> = rig.calls.iter().chain(&unknown).collect();
    let stop = CancellationToken::new();
    let task = {
        let reconciler = Arc::clone(&rig.reconciler);
        let stop = stop.clone();
        tokio::spawn(async move { reconciler.run(stop).await })
    };
    let gauge = || rig.metrics.audit_days_incomplete.get();

    // OCP throttles everything (429), then fails everything (500): the audit waits and says on
    // what; the days are incomplete past their deadline.
    rig.api.set_faults(Faults {
        throttle_all: Some(1),
        ..Faults::default()
    });
    let job = audit_job_when(&rig, "waiting on a 429", |j| {
        j.last_error.as_deref().is_some_and(|e| e.contains("429"))
    })
    .await;
    assert_eq!(job.waiting_on.as_deref(), Some("unavailable"), "{job:?}");
    assert!(job.state.is_open(), "{job:?}");
    assert!(gauge() >= 1, "the incomplete days are counted");
    rig.api.set_faults(Faults {
        fail_all: Some(500),
        ..Faults::default()
    });
    audit_job_when(&rig, "waiting on a 500", |j| {
        j.last_error.as_deref().is_some_and(|e| e.contains("500"))
            && j.waiting_on.as_deref() == Some("unavailable")
    })
    .await;
    nothing_concluded(&rig, &reported).await;
    assert!(gauge() >= 1);

    // Every export expires: the audit asks again under its next id, the expiry counted.
    rig.api.set_faults(Faults {
        expire_all: true,
        ..Faults::default()
    });
    let successor = audit_job_when(&rig, "succeeding an expired one", |j| j.expiries >= 1).await;
    assert!(!successor.id.as_str().ends_with("-0"), "{successor:?}");
    nothing_concluded(&rig, &reported).await;

    // A page of the listing is missing, then the CDR files are: the export is not read to its
    // end, the job fails with the reason, no call is taken for absent from OCP, and the day's
    // audit is tried again under a new job.
    let failed_before =
        |jobs: &[ExportJob]| jobs.iter().filter(|j| j.state == JobState::Failed).count();
    for faults in [
        Faults {
            missing_page: true,
            ..Faults::default()
        },
        Faults {
            missing_cdr_files: true,
            ..Faults::default()
        },
    ] {
        let before = failed_before(&all_audit_jobs(&rig).await);
        rig.api.set_faults(faults);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let failed = loop {
            let jobs = all_audit_jobs(&rig).await;
            let failed: Vec<&ExportJob> = jobs
                .iter()
                .filter(|j| j.state == JobState::Failed)
                .collect();
            if failed.len() > before
                && let Some(last) = failed.last()
                && last
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("404"))
            {
                break (*last).clone();
            }
            assert!(std::time::Instant::now() < deadline, "{jobs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(failed.audit.is_none(), "{failed:?}");
        nothing_concluded(&rig, &reported).await;
        assert!(gauge() >= 1);
    }

    // OCP answers again: every day is audited, every call OCP reported is stored once, none is
    // taken for absent from OCP, and nothing is overdue any more.
    rig.api.set_faults(Faults::default());
    let summaries = days_complete(&rig).await;
    let sum = |f: fn(&AuditSummary) -> u64| summaries.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.reported), 8);
    assert_eq!(sum(|s| s.stored), 8);
    assert_eq!(sum(|s| s.found), 2);
    assert_eq!(sum(|s| s.not_in_ocp + s.lost + s.pending), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gauge() != 0 {
        assert!(std::time::Instant::now() < deadline, "gauge {}", gauge());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let stored = files(
        &rig.objects_root,
        ".wav",
        &rig.pipeline.routing.staging.bucket,
    );
    assert_eq!(stored.len(), 8, "one object per call: {stored:?}");
    let downloads = rig.api.downloads();
    assert!(downloads.values().all(|&n| n == 1), "{downloads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_during_the_audit_is_replaced_and_nothing_is_done_twice() {
    let rig = rig(
        12,
        exports_config(),
        |folder, _| Arc::new(folder),
        |config| {
            audited(config);
            config.lease_ttl = SignedDuration::from_millis(400);
        },
    )
    .await;
    let (_, unknown) = only_ocp_knows(&rig, 12..15);
    // Every file comes slowly: an audit's fetch takes a second or more.
    rig.api.set_faults(Faults {
        trickle: Some(Duration::from_millis(60)),
        ..Faults::default()
    });
    // Replica A runs on a runtime of its own: shutting that down drops every task of A at
    // once, wherever it is, as a SIGKILL would (nothing released, nothing written after).
    let (a, _) = rig.replica("replica-a", SignedDuration::ZERO);
    let a_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    a_runtime.spawn(async move { a.run(CancellationToken::new()).await });
    let job = audit_job_when(&rig, "fetched by replica A", |j| {
        j.state == JobState::Fetching && j.lease_owner.as_deref() == Some("replica-a")
    })
    .await;
    // Replica A dies in the middle of the audit's fetch; B starts.
    a_runtime.shutdown_background();
    let (b, b_metrics) = rig.replica("replica-b", SignedDuration::ZERO);
    let stop = CancellationToken::new();
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move { b.run(stop).await })
    };
    let summaries = days_complete(&rig).await;
    stop.cancel();
    task.await.unwrap();

    // B took the audit over and finished it under the same job and export: one CDR-only export
    // a day, one audit job each, every call OCP reported stored once.
    assert!(b_metrics.lease_takeovers.get() >= 1);
    let finished = rig.job(&job.id).await;
    assert_eq!(finished.state, JobState::Done, "{finished:?}");
    assert_eq!(finished.ocp_export_id, job.ocp_export_id);
    let days = settled_days(&rig.config.audit, jiff::Timestamp::now());
    assert_eq!(rig.api.cdr_only_exports(), days.len() as u64);
    assert_eq!(all_audit_jobs(&rig).await.len(), days.len());
    let sum = |f: fn(&AuditSummary) -> u64| summaries.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.reported), 15);
    assert_eq!(sum(|s| s.stored), 15);
    assert_eq!(sum(|s| s.found), 3);
    assert_eq!(sum(|s| s.not_in_ocp + s.lost + s.pending), 0);
    for call in rig.calls.iter().chain(&unknown) {
        assert_eq!(rig.record(call).await.status, CallStatus::Complete);
    }
    let stored = files(
        &rig.objects_root,
        ".wav",
        &rig.pipeline.routing.staging.bucket,
    );
    assert_eq!(stored.len(), 15, "one object per call: {stored:?}");
    // A recording is downloaded twice only if A was downloading it when it died.
    let again: u64 = rig.api.downloads().values().map(|n| n - 1).sum();
    assert!(again <= rig.config.download_concurrency as u64, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_finds_calls_nothing_arrived_of_and_counts_every_call_of_the_day() {
    let rig = rig(
        40,
        exports_config(),
        |folder, _| Arc::new(folder),
        |config| {
            config.audit.groups = vec![GROUP.into()];
            // Today counts as settled (the rig's calls are three hours old), and yesterday.
            config.audit.settle = SignedDuration::from_hours(-24);
            config.audit.lookback_days = 1;
            config.scan_interval = Duration::from_millis(150);
        },
    )
    .await;
    let store = &rig.store;

    // Four more calls of the same plan that only OCP knows of: no CDR, no recording arrived.
    let (sim, unknown) = only_ocp_knows(&rig, 40..44);
    let base = rig.calls[0].start;
    // Ten of the forty were streamed (stage 1).
    for (index, call) in rig.calls.iter().enumerate().take(10) {
        let id = CallId::parse(&call.call_id).unwrap();
        let bytes = ocp_sim::recording(&sim, call, index);
        let mut spool = callrec_ingest::intake::Spool::create(
            &rig.spool_dir,
            &call.call_id,
            1 << 30,
            callrec_ingest::intake::Digesting::Recording,
        )
        .await
        .unwrap();
        spool.write(&bytes).await.unwrap();
        let spooled = spool.finish().await.unwrap();
        callrec_ingest::intake::receive(&rig.pipeline, &id, &spooled, "audio/wav", Via::Stream)
            .await
            .unwrap();
        rig.pipeline.run(&id, Ending::Known).await.unwrap();
    }
    // A call callrec has that OCP does not report (a test call): its day, its group.
    let stray = CallId::parse("test-call-1").unwrap();
    let facts = CdrFacts {
        group_id: Some(GROUP.into()),
        ..CdrFacts::default()
    };
    let start = CallChange::Start {
        at: base,
        facts: facts.clone(),
    };
    store.update(&stray, &start, base).await.unwrap();

    // The reconciler's loop: scans (recovery and audit), jobs, recounts.
    let stop = CancellationToken::new();
    let task = {
        let reconciler = Arc::clone(&rig.reconciler);
        let stop = stop.clone();
        tokio::spawn(async move { reconciler.run(stop).await })
    };
    let reported: Vec<&ocp_sim::SimCall> = rig.calls.iter().chain(&unknown).collect();
    let days = settled_days(&rig.config.audit, jiff::Timestamp::now());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let summaries = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the audit did not complete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut summaries = Vec::new();
        for day in &days {
            if let Some(AuditState::Done(job)) =
                audit_state(store.as_ref(), GROUP, *day).await.unwrap()
                && let Some(summary) = job.audit.clone()
            {
                // One audit export per day: the first job of the day's range did it.
                assert!(job.id.as_str().ends_with("-24h-0"), "{}", job.id);
                summaries.push(summary);
            }
        }
        if summaries.len() == days.len() && summaries.iter().all(|s| s.complete()) {
            break summaries;
        }
    };
    // The scan after a day is complete writes its manifests.
    let key_of = callrec_ingest::reconcile::manifest::manifest_key;
    let bucket = &rig.pipeline.routing.lines()[0].bucket;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for day in &days {
        while rig
            .pipeline
            .objects
            .head(bucket, &key_of(*day))
            .await
            .unwrap()
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no manifest for {day}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.cancel();
    task.await.unwrap();

    // Every call OCP reported is stored, once.
    for call in &reported {
        let record = store
            .get(&CallId::parse(&call.call_id).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} has no record", call.call_id));
        assert!(record.flags.stored.is_some(), "{record:?}");
    }
    let sum = |f: fn(&callrec_ingest::reconcile::audit::AuditSummary) -> u64| {
        summaries.iter().map(f).sum::<u64>()
    };
    assert_eq!(sum(|s| s.reported), 44);
    assert_eq!(sum(|s| s.stored), 44);
    assert_eq!(sum(|s| s.streamed), 10);
    assert_eq!(sum(|s| s.recovered), 30);
    assert_eq!(sum(|s| s.found), 4);
    assert_eq!(sum(|s| s.lost + s.pending), 0);
    assert_eq!(sum(|s| s.not_in_ocp), 1);
    assert!(
        summaries
            .iter()
            .any(|s| s.not_in_ocp_first.contains(&stray))
    );
    // The audit's marks are on the calls; the stray call is kept, not deleted.
    for call in &unknown {
        let record = store
            .get(&CallId::parse(&call.call_id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(record.found_in_export.is_some(), "{record:?}");
        assert_eq!(
            record.staged.as_ref().and_then(|s| s.via),
            Some(Via::Export)
        );
    }
    let kept = store.get(&stray).await.unwrap().expect("kept");
    assert!(kept.not_in_ocp.is_some());
    // The day's manifests, written by the scan once the day was complete: one line per stored
    // call, checked against the bucket; a byte changed in one object and another object gone
    // are named; a manifest is never rewritten.
    use callrec_ingest::objects::{Body, Crc32c, ObjectError, ObjectMeta};
    use callrec_ingest::reconcile::manifest::{Problem, lines_of_day, manifest_key, verify};
    let objects = rig.pipeline.objects.as_ref();
    let mut manifests = Vec::new();
    let mut listed = 0;
    for day in &days {
        for (bucket, lines) in lines_of_day(store.as_ref(), *day).await.unwrap() {
            let body = objects
                .get(&bucket, &manifest_key(*day), None)
                .await
                .expect("the scan wrote the day's manifest")
                .to_vec();
            let text = String::from_utf8(body.clone()).unwrap();
            assert_eq!(text.lines().count(), lines.len() + 1);
            listed += lines.len();
            manifests.push((bucket, body, lines, *day));
        }
    }
    assert_eq!(
        listed, 44,
        "every stored call of the days (the stray one is not stored)"
    );
    let (bucket, _, _, day) = &manifests[0];
    let other = b"{}\n";
    let meta = ObjectMeta {
        content_type: "application/x-ndjson".into(),
        crc32c: Crc32c::of(other),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(other)),
        metadata: Default::default(),
        storage_class: None,
        kms_key_id: None,
    };
    let rewrite = objects
        .put_new(
            bucket,
            &manifest_key(*day),
            Body::Bytes(other.to_vec().into()),
            &meta,
        )
        .await;
    assert!(
        matches!(rewrite, Err(ObjectError::Conflict { .. })),
        "{rewrite:?}"
    );
    for (bucket, body, _, _) in &manifests {
        let (checked, problems) = verify(objects, bucket, body).await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(checked > 0);
    }
    let (bucket, body, lines, _) = &manifests[0];
    let altered = rig.objects_root.join(bucket).join(&lines[0].key);
    let mut bytes = std::fs::read(&altered).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&altered, bytes).unwrap();
    std::fs::remove_file(rig.objects_root.join(bucket).join(&lines[1].key)).unwrap();
    let (_, problems) = verify(objects, bucket, body).await.unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(matches!(&problems[0], Problem::Altered { key, .. } if *key == lines[0].key));
    assert!(matches!(&problems[1], Problem::Absent { key } if *key == lines[1].key));
    let mut forged = body.clone();
    forged[5] ^= 1;
    let (_, problems) = verify(objects, bucket, &forged).await.unwrap();
    assert!(matches!(problems[0], Problem::Manifest(_)), "{problems:?}");

    let metrics = rig.metrics.render();
    assert!(
        metrics.contains("callrec_audit_calls_total{outcome=\"found\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callrec_audit_calls_total{outcome=\"not_in_ocp\"} 1"),
        "{metrics}"
    );
}
