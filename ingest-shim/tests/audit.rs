//! The daily audit, in process against ocp-sim's Exports API: calls streamed (stage 1), calls
//! whose recordings never came (stage 2), calls of which nothing came at all (only OCP's CDR
//! export names them: the audit finds them), and a call callrec has that OCP does not report.
//! Every call OCP reported ends stored once, the audit's figures say how each got there, and
//! the call OCP does not report is listed and kept.

mod common;

use bytes::Bytes;
use callrec_ingest::CallId;
use callrec_ingest::pipeline::Ending;
use callrec_ingest::reconcile::audit::{AuditState, audit_state, settled_days};
use callrec_ingest::store::{CallChange, CdrFacts, Via};
use common::reconcile::{GROUP, exports_config, rig};
use jiff::SignedDuration;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    let mut sim = ocp_sim::SimConfig::new("", "");
    sim.seed = 31;
    sim.min_call_s = 1.0;
    sim.max_call_s = 3.0;
    sim.groups = vec![GROUP.into()];
    let sim = Arc::new(sim);
    let base = rig.calls[0].start;
    let mut unknown = Vec::new();
    for index in 40..44 {
        let call = ocp_sim::plan_call(&sim, index, base);
        let audio = Bytes::from(ocp_sim::recording(&sim, &call, index));
        rig.api
            .add(ocp_sim::export_recording(&sim, &call, index, audio, true));
        unknown.push(call);
    }
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
