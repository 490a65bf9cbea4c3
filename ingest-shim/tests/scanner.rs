//! The reconciliation scanner against the SQLite store: missing calls become the fewest export
//! jobs, once, however often and however many replicas scan.

use callrec_ingest::CallId;
use callrec_ingest::reconcile::scanner::{ScanConfig, scan};
use callrec_ingest::store::sqlite::SqliteStore;
use callrec_ingest::store::{
    CallChange, CallStore, CdrFacts, JobState, ProcessedFacts, StagedAudio, StoredObject,
};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

async fn ended(store: &dyn CallStore, id: &str, group: Option<&str>, start: Timestamp) {
    let call = CallId::parse(id).unwrap();
    let facts = CdrFacts {
        group_id: group.map(str::to_string),
        ..CdrFacts::default()
    };
    store
        .update(
            &call,
            &CallChange::Start {
                at: start,
                facts: facts.clone(),
            },
            start,
        )
        .await
        .unwrap();
    let end = start + SignedDuration::from_secs(90);
    store
        .update(&call, &CallChange::End { at: end, facts }, end)
        .await
        .unwrap();
}

async fn store_fully(store: &dyn CallStore, id: &str) {
    let call = CallId::parse(id).unwrap();
    let now = Timestamp::now();
    let staged = StagedAudio {
        location: "s".into(),
        bytes: 1,
        sha256: "a".into(),
        crc32c: "b".into(),
        crc64nvme: None,
        via: None,
    };
    store
        .update(&call, &CallChange::Received(staged), now)
        .await
        .unwrap();
    let facts = ProcessedFacts {
        duration_ms: 1.0,
        integrated_lufs: None,
        true_peak_dbtp: None,
        speech_level_dbov: None,
        gain_db: 0.0,
        output_sha256: "o".into(),
        output_crc32c: "c".into(),
        output_bytes: 1,
        report: serde_json::Value::Null,
    };
    store
        .update(&call, &CallChange::Processed(facts), now)
        .await
        .unwrap();
    let object = StoredObject {
        line_of_business: "l".into(),
        bucket: "b".into(),
        key: "k".into(),
        crc32c: "c".into(),
        sha256: "o".into(),
    };
    store
        .update(&call, &CallChange::Stored(object), now)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_calls_become_the_fewest_jobs_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CallStore> = Arc::new(SqliteStore::open(dir.path().join("s.db")).unwrap());
    let base = t("2026-11-20T08:10:00Z");
    // Group A: 30 calls over 3 hours, a third stored; group B: 5 calls; one call without group.
    for i in 0..30 {
        let id = format!("a-{i:02}");
        ended(
            store.as_ref(),
            &id,
            Some("grp-a"),
            base + SignedDuration::from_mins(6 * i),
        )
        .await;
        if i % 3 == 0 {
            store_fully(store.as_ref(), &id).await;
        }
    }
    for i in 0..5 {
        ended(
            store.as_ref(),
            &format!("b-{i}"),
            Some("grp-b"),
            base + SignedDuration::from_mins(i),
        )
        .await;
    }
    ended(store.as_ref(), "nogroup", None, base).await;
    // A call that ended moments ago is still within the grace period.
    let now = t("2026-11-21T00:00:00Z");
    ended(
        store.as_ref(),
        "a-fresh",
        Some("grp-a"),
        now - SignedDuration::from_mins(3),
    )
    .await;

    let config = ScanConfig::default();
    let first = scan(store.as_ref(), &config, now).await.unwrap();
    assert_eq!(first.missing, 20 + 5 + 1, "{first:?}");
    assert_eq!(first.without_group, 1);
    assert_eq!(first.created.len(), 2, "one export per group: {first:?}");
    let jobs = store.open_jobs(100, None).await.unwrap().items;
    let a = jobs.iter().find(|j| j.group_id == "grp-a").unwrap();
    assert_eq!(a.from, t("2026-11-20T08:00:00Z"));
    assert_eq!(
        a.to,
        t("2026-11-20T12:00:00Z"),
        "the last call starts at 11:04"
    );
    assert_eq!(a.state, JobState::Created);
    assert!(a.next_poll_at.is_some());

    // Scanning again, and two replicas at once, creates nothing more.
    let again = scan(store.as_ref(), &config, now).await.unwrap();
    assert!(again.created.is_empty(), "{again:?}");
    assert_eq!(again.covered, 25);
    let (x, y) = tokio::join!(
        scan(store.as_ref(), &config, now),
        scan(store.as_ref(), &config, now)
    );
    assert!(x.unwrap().created.is_empty() && y.unwrap().created.is_empty());

    // Job A finishes without recovering its calls: the next scan asks OCP again, under a new id.
    let ttl = SignedDuration::from_secs(60);
    let fence = store
        .take_lease(&a.id, "r1", now, ttl, None)
        .await
        .unwrap()
        .unwrap()
        .fence;
    let finish = |job: &mut callrec_ingest::store::ExportJob| {
        for state in [
            JobState::Polling,
            JobState::Completed,
            JobState::Fetching,
            JobState::Done,
        ] {
            job.transition("r1", fence, state)?;
        }
        Ok(())
    };
    callrec_ingest::store::modify_job(store.as_ref(), &a.id, now, &finish)
        .await
        .unwrap()
        .unwrap();
    let retry = scan(store.as_ref(), &config, now).await.unwrap();
    assert_eq!(retry.created.len(), 1, "{retry:?}");
    assert!(retry.created[0].as_str().ends_with("-1"), "{retry:?}");
    assert_ne!(retry.created[0], a.id);
}

#[tokio::test]
async fn calls_missing_past_retention_are_lost_loudly_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let now = t("2026-11-24T00:00:00Z");
    ended(
        &store,
        "old",
        Some("grp-a"),
        now - SignedDuration::from_hours(61 * 24),
    )
    .await;
    ended(
        &store,
        "recent",
        Some("grp-a"),
        now - SignedDuration::from_hours(59 * 24),
    )
    .await;
    let report = scan(&store, &ScanConfig::default(), now).await.unwrap();
    assert_eq!(report.lost.len(), 1, "{report:?}");
    assert_eq!(report.lost[0].as_str(), "old");
    assert_eq!(
        report.created.len(),
        1,
        "the recent call still gets its export"
    );
    let old = store
        .get(&CallId::parse("old").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.status, callrec_ingest::store::CallStatus::Lost);
    assert!(old.last_error.unwrap().contains("retention"));
    assert_eq!(store.funnel().await.unwrap().lost, 1);
    // Lost calls leave the pending index: the next scan does not count them again.
    let again = scan(&store, &ScanConfig::default(), now).await.unwrap();
    assert!(again.lost.is_empty());
    assert_eq!(again.missing, 1);
}

#[test]
fn job_ids_fit_whatever_the_group_length_and_stay_unique() {
    use callrec_ingest::reconcile::plan::ExportRange;
    use callrec_ingest::reconcile::scanner::job_id;
    let range = |group: String| ExportRange {
        group_id: group,
        from: t("2026-11-24T08:00:00Z"),
        to: t("2026-11-26T08:00:00Z"),
    };
    // Short groups keep the readable form.
    let short = job_id("exp", &range("grp-a".into()), 3).unwrap();
    assert_eq!(short.as_str(), "exp-grp-a-2026112408-48h-3");
    // Up to 200 characters (beyond what ids at the edge allow): still an id, still distinct.
    let mut seen = std::collections::HashSet::new();
    for len in [100, 108, 109, 128, 200] {
        for last in ['a', 'b'] {
            let group = format!("{}{last}", "g".repeat(len - 1));
            for prefix in ["exp", "bf"] {
                let id = job_id(prefix, &range(group.clone()), 10_000).unwrap();
                assert!(id.as_str().len() <= callrec_ingest::ids::MAX_ID_LEN, "{id}");
                assert!(id.as_str().starts_with(prefix), "{id}");
                assert!(seen.insert(id.clone()), "{id} twice");
            }
        }
    }
}
