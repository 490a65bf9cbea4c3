//! The `CallStore` conformance suite: every backend must pass all of it.

use callrec_ingest::CallId;
use callrec_ingest::store::{
    Attention, AttentionQuery, CallChange, CallStatus, CallStore, CdrFacts, DayQuery, ExportJob,
    Flag, JobId, JobState, LeaseError, Outcome, PendingQuery, ProcessedFacts, StagedAudio,
    StoreError, StoredObject,
};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;
use std::sync::Arc;

pub type Store = Arc<dyn CallStore>;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + s).unwrap()
}

fn id(s: &str) -> CallId {
    CallId::parse(s).unwrap()
}

fn facts(group: &str) -> CdrFacts {
    CdrFacts {
        group_id: Some(group.into()),
        account_id: Some("acct-1".into()),
        ivr_channel: Some("voice".into()),
        ..CdrFacts::default()
    }
}

fn staged(sha: &str) -> StagedAudio {
    StagedAudio {
        location: format!("staging/{sha}.wav"),
        bytes: 1234,
        sha256: sha.into(),
        crc32c: "AAAAAA==".into(),
        crc64nvme: None,
        via: None,
    }
}

fn processed(sha: &str) -> ProcessedFacts {
    ProcessedFacts {
        duration_ms: 60_000.0,
        integrated_lufs: Some(-23.0),
        true_peak_dbtp: Some(-3.0),
        speech_level_dbov: Some(-26.0),
        gain_db: 1.5,
        output_sha256: sha.into(),
        output_crc32c: "BBBBBB==".into(),
        output_bytes: 999,
        report: serde_json::json!({"engine_version": "test"}),
    }
}

fn object(key: &str) -> StoredObject {
    StoredObject {
        line_of_business: "sales".into(),
        bucket: "calls-sales".into(),
        key: key.into(),
        crc32c: "BBBBBB==".into(),
        sha256: "out".into(),
    }
}

/// Start, End, audio, processed, stored: each flag once; repeats change nothing; the funnel
/// counts each call once per flag.
pub async fn lifecycle_and_idempotency(store: Store) {
    let c = id("life-1");
    let start = CallChange::Start {
        at: t(0),
        facts: facts("g1"),
    };
    let (record, applied) = store.update(&c, &start, t(1)).await.unwrap();
    assert_eq!(applied.outcome, Outcome::Changed);
    assert_eq!(record.flags.started, Some(t(0)));
    assert_eq!(record.version, 1);
    let (again, applied) = store.update(&c, &start, t(2)).await.unwrap();
    assert_eq!(applied.outcome, Outcome::Unchanged);
    assert_eq!(again.version, 1, "a repeated event writes nothing");

    let end = CallChange::End {
        at: t(60),
        facts: CdrFacts {
            duration_ms: Some(60_000),
            ..CdrFacts::default()
        },
    };
    store.update(&c, &end, t(61)).await.unwrap();
    store
        .update(&c, &CallChange::Received(staged("aaa")), t(62))
        .await
        .unwrap();
    store
        .update(&c, &CallChange::Processed(processed("out")), t(63))
        .await
        .unwrap();
    let (done, applied) = store
        .update(&c, &CallChange::Stored(object("sales/life-1.wav")), t(64))
        .await
        .unwrap();
    assert_eq!(applied.outcome, Outcome::Changed);
    assert_eq!(done.status, CallStatus::Complete);
    for flag in Flag::ALL {
        assert!(done.flags.get(flag).is_some(), "{flag:?}");
    }
    // Everything again: nothing changes.
    for change in [
        start,
        end,
        CallChange::Received(staged("aaa")),
        CallChange::Processed(processed("out")),
        CallChange::Stored(object("sales/life-1.wav")),
    ] {
        let (r, applied) = store.update(&c, &change, t(100)).await.unwrap();
        assert_eq!(applied.outcome, Outcome::Unchanged, "{change:?}");
        assert_eq!(r, done);
    }
    let read = store.get(&c).await.unwrap().unwrap();
    assert_eq!(read, done);
    assert_eq!(read.cdr.group_id.as_deref(), Some("g1"));
    assert_eq!(read.cdr.duration_ms, Some(60_000));
    assert_eq!(store.get(&id("nobody")).await.unwrap(), None);

    let funnel = store.funnel().await.unwrap();
    assert_eq!(
        (
            funnel.calls,
            funnel.started,
            funnel.ended,
            funnel.received,
            funnel.processed,
            funnel.stored
        ),
        (1, 1, 1, 1, 1, 1)
    );
    assert_eq!((funnel.pending, funnel.complete), (0, 1));
}

/// End before Start, audio before End: the same final record as in order.
pub async fn any_order(store: Store) {
    let c = id("order-1");
    store
        .update(&c, &CallChange::Received(staged("bbb")), t(5))
        .await
        .unwrap();
    store
        .update(
            &c,
            &CallChange::End {
                at: t(60),
                facts: CdrFacts {
                    duration_ms: Some(60_000),
                    ..CdrFacts::default()
                },
            },
            t(6),
        )
        .await
        .unwrap();
    let (r, _) = store
        .update(
            &c,
            &CallChange::Start {
                at: t(0),
                facts: facts("g2"),
            },
            t(7),
        )
        .await
        .unwrap();
    assert_eq!(r.flags.started, Some(t(0)));
    assert_eq!(r.flags.ended, Some(t(60)));
    assert_eq!(r.flags.received, Some(t(5)));
    assert_eq!(r.cdr.group_id.as_deref(), Some("g2"));
    // Stored before processed is refused, and nothing moves.
    let (r2, applied) = store
        .update(&c, &CallChange::Stored(object("k")), t(8))
        .await
        .unwrap();
    assert!(matches!(applied.outcome, Outcome::Refused(_)));
    assert_eq!(r2, r);
}

/// Different bytes for a received call: a conflict, the first bytes stay.
pub async fn conflicts(store: Store) {
    let c = id("conflict-1");
    store
        .update(&c, &CallChange::Received(staged("first")), t(1))
        .await
        .unwrap();
    let (r, applied) = store
        .update(&c, &CallChange::Received(staged("second")), t(2))
        .await
        .unwrap();
    assert_eq!(applied.outcome, Outcome::Conflict);
    assert_eq!(r.staged.as_ref().unwrap().sha256, "first");
    assert_eq!(r.status, CallStatus::Conflict);
    let read = store.get(&c).await.unwrap().unwrap();
    assert_eq!(read.conflicts, 1);
    assert_eq!(store.funnel().await.unwrap().conflict, 1);
}

/// Many tasks racing on one call, each with different changes: none is lost.
pub async fn concurrent_writers(store: Store) {
    let c = id("race-1");
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let store = Arc::clone(&store);
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut metadata = std::collections::BTreeMap::new();
            metadata.insert(format!("k{i}"), format!("v{i}"));
            let change = if i % 2 == 0 {
                CallChange::Start {
                    at: t(0),
                    facts: CdrFacts {
                        metadata,
                        ..CdrFacts::default()
                    },
                }
            } else {
                CallChange::End {
                    at: t(60),
                    facts: CdrFacts {
                        metadata,
                        ..CdrFacts::default()
                    },
                }
            };
            store.update(&c, &change, t(i as i64)).await.unwrap();
            store
                .update(
                    &c,
                    &CallChange::Failed {
                        error: format!("attempt {i}"),
                    },
                    t(100),
                )
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let r = store.get(&c).await.unwrap().unwrap();
    assert_eq!(
        r.cdr.metadata.len(),
        16,
        "every writer's metadata key landed"
    );
    assert_eq!(r.attempts, 16, "every failure was counted");
    assert!(r.flags.started.is_some() && r.flags.ended.is_some());
    let funnel = store.funnel().await.unwrap();
    assert_eq!((funnel.calls, funnel.started, funnel.ended), (1, 1, 1));
}

/// The scanner's query: ended before a time, not stored, by group and window, across pages.
pub async fn pending_pages(store: Store) {
    // 25 calls in group A ending at t(i·10), 5 in group B; some stored, one lost, one not ended.
    for i in 0..25 {
        let c = id(&format!("pa-{i:02}"));
        store
            .update(
                &c,
                &CallChange::End {
                    at: t(i * 10),
                    facts: facts("A"),
                },
                t(1000),
            )
            .await
            .unwrap();
    }
    for i in 0..5 {
        let c = id(&format!("pb-{i}"));
        store
            .update(
                &c,
                &CallChange::End {
                    at: t(i * 10),
                    facts: facts("B"),
                },
                t(1000),
            )
            .await
            .unwrap();
    }
    // pa-03 is stored, pa-04 lost, pz-1 only started.
    let stored = id("pa-03");
    store
        .update(&stored, &CallChange::Received(staged("x")), t(1001))
        .await
        .unwrap();
    store
        .update(&stored, &CallChange::Processed(processed("y")), t(1002))
        .await
        .unwrap();
    store
        .update(&stored, &CallChange::Stored(object("k3")), t(1003))
        .await
        .unwrap();
    store
        .update(
            &id("pa-04"),
            &CallChange::Lost {
                reason: "past retention".into(),
            },
            t(1004),
        )
        .await
        .unwrap();
    store
        .update(
            &id("pz-1"),
            &CallChange::Start {
                at: t(0),
                facts: facts("A"),
            },
            t(1005),
        )
        .await
        .unwrap();

    let collect = |group: Option<&str>, from: Option<i64>, before: i64, limit: u32| {
        let store = Arc::clone(&store);
        let group = group.map(str::to_string);
        async move {
            let mut ids = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let page = store
                    .pending(&PendingQuery {
                        group_id: group.clone(),
                        ended_from: from.map(t),
                        ended_before: t(before),
                        limit,
                        cursor: cursor.take(),
                    })
                    .await
                    .unwrap();
                pages += 1;
                assert!(page.items.len() <= limit as usize);
                ids.extend(page.items.iter().map(|r| r.call_id.to_string()));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
                assert!(pages < 100, "pagination does not end");
            }
            (ids, pages)
        }
    };
    let (a, pages) = collect(Some("A"), None, 1000, 7).await;
    let want: Vec<String> = (0..25)
        .filter(|i| *i != 3 && *i != 4)
        .map(|i| format!("pa-{i:02}"))
        .collect();
    assert_eq!(a, want, "oldest first, stored and lost left out");
    assert!(pages >= 4, "23 results in pages of 7: {pages} pages");
    // A window: ended in [t(50), t(120)).
    let (window, _) = collect(Some("A"), Some(50), 120, 3).await;
    assert_eq!(
        window,
        [
            "pa-05", "pa-06", "pa-07", "pa-08", "pa-09", "pa-10", "pa-11"
        ]
    );
    // Every group at once: grouped, each oldest first.
    let (all, _) = collect(None, None, 1000, 4).await;
    assert_eq!(all.len(), 23 + 5);
    let groups: BTreeSet<&str> = all.iter().map(|s| &s[..2]).collect();
    assert_eq!(groups.len(), 2);
    assert_eq!(all.iter().filter(|s| s.starts_with("pb")).count(), 5);
    // A cursor from nowhere is refused.
    let bad = store
        .pending(&PendingQuery {
            group_id: Some("A".into()),
            ended_from: None,
            ended_before: t(1000),
            limit: 5,
            cursor: Some("not-a-cursor!".into()),
        })
        .await;
    assert!(matches!(bad, Err(StoreError::BadCursor)), "{bad:?}");
}

fn job(name: &str, due: i64) -> ExportJob {
    let mut j = ExportJob::new(
        JobId::parse(name).unwrap(),
        "A",
        (t(0), t(3600)),
        "reconcile",
        t(0),
        t(86_400),
    );
    j.next_poll_at = Some(t(due));
    j
}

/// Export jobs: idempotent create, due query, leases with expiry and takeover, transitions.
pub async fn jobs_and_leases(store: Store) {
    assert!(store.create_job(&job("job-1", 100)).await.unwrap());
    assert!(
        !store.create_job(&job("job-1", 5)).await.unwrap(),
        "created once"
    );
    assert!(store.create_job(&job("job-2", 50)).await.unwrap());
    assert!(store.create_job(&job("job-3", 500)).await.unwrap());
    let due: Vec<String> = store
        .due_jobs(t(200), 10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id.to_string())
        .collect();
    assert_eq!(
        due,
        ["job-2", "job-1"],
        "earliest first, not-yet-due left out"
    );

    let ttl = SignedDuration::from_secs(30);
    let j1 = JobId::parse("job-1").unwrap();
    let leased = store
        .take_lease(&j1, "replica-a", t(200), ttl, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.lease_owner.as_deref(), Some("replica-a"));
    let a = leased.fence;
    // Held: refused to another replica whatever its clock says, with the token to watch.
    let refused = store
        .take_lease(&j1, "replica-b", t(1_000_000), ttl, None)
        .await
        .unwrap();
    let Err(LeaseError::HeldBy { token, .. }) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(Some(token), leased.lease_token);
    // A renewal changes the token: a watcher that saw the old one cannot take over.
    let mut renewed = store.get_job(&j1).await.unwrap().unwrap();
    let expected = renewed.version;
    renewed.renew_lease("replica-a", a, t(210), ttl).unwrap();
    renewed.version = expected + 1;
    assert!(store.put_job_if(&renewed, Some(expected)).await.unwrap());
    assert!(
        store
            .take_lease(&j1, "replica-b", t(220), ttl, Some(token))
            .await
            .unwrap()
            .is_err()
    );
    // The token seen unchanged for a lease length: taken over, the fence bumped.
    let stale = renewed.lease_token;
    let taken = store
        .take_lease(&j1, "replica-b", t(250), ttl, stale)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.lease_owner.as_deref(), Some("replica-b"));
    assert_eq!(taken.fence, a + 1);
    assert_eq!(
        store
            .release_lease(&j1, "replica-a", a, t(251))
            .await
            .unwrap(),
        Err(LeaseError::NotHolder)
    );
    let missing = JobId::parse("job-404").unwrap();
    assert_eq!(
        store
            .take_lease(&missing, "replica-a", t(0), ttl, None)
            .await
            .unwrap(),
        Err(LeaseError::NoSuchJob)
    );

    // Two replicas racing for a lease: exactly one wins.
    let j3 = JobId::parse("job-3").unwrap();
    let mut racers = Vec::new();
    for r in 0..8 {
        let store = Arc::clone(&store);
        let j3 = j3.clone();
        racers.push(tokio::spawn(async move {
            store
                .take_lease(&j3, &format!("racer-{r}"), t(600), ttl, None)
                .await
                .unwrap()
                .is_ok()
        }));
    }
    let mut winners = 0;
    for racer in racers {
        winners += racer.await.unwrap() as u32;
    }
    assert_eq!(winners, 1);

    // A finished job leaves the due and open indexes.
    let b = taken.fence;
    let finish = |job: &mut ExportJob| {
        job.transition("replica-b", b, JobState::Polling)?;
        job.transition("replica-b", b, JobState::Completed)?;
        job.transition("replica-b", b, JobState::Fetching)?;
        job.transition("replica-b", b, JobState::Done)
    };
    let done = callrec_ingest::store::modify_job(store.as_ref(), &j1, t(260), &finish)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, JobState::Done);
    let due: Vec<String> = store
        .due_jobs(t(10_000), 10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id.to_string())
        .collect();
    assert_eq!(due, ["job-2", "job-3"]);
    let first = store.open_jobs(1, None).await.unwrap();
    let second = store.open_jobs(1, first.next.as_deref()).await.unwrap();
    let open: Vec<String> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|j| j.id.to_string())
        .collect();
    assert_eq!(open, ["job-2", "job-3"], "oldest first, one page at a time");
    if let Some(next) = &second.next {
        let rest = store.open_jobs(1, Some(next)).await.unwrap();
        assert!(rest.items.is_empty() && rest.next.is_none());
    }
    assert!(store.open_jobs(10, Some("not-a-cursor")).await.is_err());
    assert_eq!(
        store.get_job(&j1).await.unwrap().unwrap().state,
        JobState::Done
    );
}

/// The work a restarted service resumes: received and not stored, oldest first, across pages.
pub async fn unfinished_work(store: Store) {
    for i in 0..5 {
        store
            .update(
                &id(&format!("w-{i}")),
                &CallChange::Received(staged(&format!("sha{i}"))),
                t(i * 10),
            )
            .await
            .unwrap();
    }
    // w-1 goes all the way; e-1 only ended.
    let done = id("w-1");
    store
        .update(&done, &CallChange::Processed(processed("o")), t(100))
        .await
        .unwrap();
    store
        .update(&done, &CallChange::Stored(object("k")), t(101))
        .await
        .unwrap();
    store
        .update(
            &id("e-1"),
            &CallChange::End {
                at: t(5),
                facts: facts("A"),
            },
            t(5),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.unfinished(2, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 2);
        ids.extend(page.items.iter().map(|r| r.call_id.to_string()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(ids, ["w-0", "w-2", "w-3", "w-4"]);
}

/// A call whose CDR events carry far more metadata than an item may hold: kept within the
/// limit, flagged, and every later write of the call still succeeds.
pub async fn oversized_facts(store: Store) {
    let id = CallId::parse("oversized").unwrap();
    for event in 0..40 {
        let facts = CdrFacts {
            group_id: Some("A".into()),
            metadata: (0..64)
                .map(|i| (format!("key-{event}-{i}"), "v".repeat(1000)))
                .collect(),
            ..CdrFacts::default()
        };
        let change = if event == 0 {
            CallChange::Start { at: t(0), facts }
        } else {
            CallChange::End { at: t(60), facts }
        };
        store.update(&id, &change, t(event)).await.unwrap();
    }
    let record = store.get(&id).await.unwrap().unwrap();
    assert!(record.cdr.facts_truncated);
    assert!(record.serialized_bytes() <= callrec_ingest::store::record::MAX_RECORD_BYTES);
    // Later writes of the call go through.
    let (after, applied) = store
        .update(
            &id,
            &CallChange::Failed {
                error: "x".repeat(5000),
            },
            t(100),
        )
        .await
        .unwrap();
    assert_eq!(applied.outcome, Outcome::Changed);
    assert_eq!(after.attempts, 1);
}

/// Every page of the attention index of `kind` from `filed_from`, two at a time.
async fn attention_ids(
    store: &Store,
    kind: Attention,
    filed_from: Option<Timestamp>,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .attention(&AttentionQuery {
                kind,
                filed_from,
                limit: 2,
                cursor,
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        ids.extend(page.items.iter().map(|r| r.call_id.to_string()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// Lost calls and calls stored unprocessed are listed by kind and by the time they are filed
/// under, oldest first, a page at a time; a call leaves the list when a person's re-drive or a
/// re-processing (once its original is removed) settles it; the funnel's unprocessed count
/// follows.
pub async fn attention_pages(store: Store) {
    // Lost: l-1..l-4 started at 100, 200, 300, 400; l-4 is re-driven.
    for (i, at) in [(1, 100), (2, 200), (3, 300), (4, 400)] {
        let call = id(&format!("l-{i}"));
        store
            .update(
                &call,
                &CallChange::Start {
                    at: t(at),
                    facts: facts("A"),
                },
                t(at),
            )
            .await
            .unwrap();
        store
            .update(
                &call,
                &CallChange::End {
                    at: t(at + 60),
                    facts: facts("A"),
                },
                t(at + 60),
            )
            .await
            .unwrap();
        let (record, _) = store
            .update(
                &call,
                &CallChange::Lost {
                    reason: "past retention".into(),
                },
                t(9000),
            )
            .await
            .unwrap();
        assert_eq!(record.status, CallStatus::Lost);
    }
    store
        .update(&id("l-4"), &CallChange::Redrive, t(9001))
        .await
        .unwrap();
    // Stored unprocessed: u-1 (received at 50), u-2 (received at 500), then u-2 re-processed.
    for (i, at) in [(1, 50), (2, 500)] {
        let call = id(&format!("u-{i}"));
        store
            .update(
                &call,
                &CallChange::Received(staged(&format!("u{i}"))),
                t(at),
            )
            .await
            .unwrap();
        let archived = CallChange::Archived {
            object: object(&format!("unprocessed/u-{i}.wav")),
            reason: "engine: unrecognized format".into(),
        };
        store.update(&call, &archived, t(at + 1)).await.unwrap();
    }
    // An ordinary stored call is in neither list.
    let fine = id("s-1");
    store
        .update(&fine, &CallChange::Received(staged("s1")), t(10))
        .await
        .unwrap();
    store
        .update(&fine, &CallChange::Processed(processed("s1")), t(11))
        .await
        .unwrap();
    store
        .update(&fine, &CallChange::Stored(object("s-1.wav")), t(12))
        .await
        .unwrap();
    assert_eq!(store.funnel().await.unwrap().unprocessed, 2);

    assert_eq!(
        attention_ids(&store, Attention::Lost, None).await,
        ["l-1", "l-2", "l-3"]
    );
    assert_eq!(
        attention_ids(&store, Attention::Lost, Some(t(150))).await,
        ["l-2", "l-3"]
    );
    assert_eq!(
        attention_ids(&store, Attention::Lost, Some(t(301))).await,
        Vec::<String>::new()
    );
    assert_eq!(
        attention_ids(&store, Attention::Unprocessed, None).await,
        ["u-1", "u-2"]
    );

    // A cursor of one kind is refused for the other.
    let page = store
        .attention(&AttentionQuery {
            kind: Attention::Lost,
            filed_from: None,
            limit: 1,
            cursor: None,
        })
        .await
        .unwrap();
    let wrong = store
        .attention(&AttentionQuery {
            kind: Attention::Unprocessed,
            filed_from: None,
            limit: 1,
            cursor: page.next,
        })
        .await;
    assert!(matches!(wrong, Err(StoreError::BadCursor)), "{wrong:?}");

    // u-2 re-processed: its processed recording is the call's object, the original superseded
    // (still listed, so a stopped run is finished) until it is removed.
    let call = id("u-2");
    let reprocessed = CallChange::Reprocessed {
        facts: processed("u2-out"),
        object: object("u-2.wav"),
    };
    let (record, applied) = store.update(&call, &reprocessed, t(9100)).await.unwrap();
    assert_eq!(applied.outcome, Outcome::Changed);
    assert_eq!(applied.newly_set, vec![Flag::Processed]);
    assert_eq!(record.object.as_ref().unwrap().key, "u-2.wav");
    assert_eq!(
        record.superseded.as_ref().unwrap().key,
        "unprocessed/u-2.wav"
    );
    assert!(record.unprocessed.is_none());
    let (_, again) = store.update(&call, &reprocessed, t(9101)).await.unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);
    assert_eq!(
        attention_ids(&store, Attention::Unprocessed, None).await,
        ["u-1", "u-2"]
    );
    let funnel = store.funnel().await.unwrap();
    assert_eq!((funnel.unprocessed, funnel.processed), (1, 2));
    store
        .update(&call, &CallChange::OriginalRemoved, t(9102))
        .await
        .unwrap();
    assert_eq!(
        attention_ids(&store, Attention::Unprocessed, None).await,
        ["u-1"]
    );
    // A call that was never stored unprocessed cannot be re-processed.
    let (_, refused) = store.update(&fine, &reprocessed, t(9103)).await.unwrap();
    assert!(
        matches!(refused.outcome, Outcome::Refused(_)),
        "{refused:?}"
    );
}

/// Every page of the calendar index for `day` (and `group`), two at a time.
async fn day_ids(store: &Store, day: &str, group: Option<&str>) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .calls_of_day(&DayQuery {
                day: day.parse().unwrap(),
                group_id: group.map(str::to_string),
                limit: 2,
                cursor,
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        ids.extend(page.items.iter().map(ToString::to_string));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// The calendar: calls by the UTC day they are filed under (Start, else End, else arrival) and
/// group, ordered by group and id; a call whose group is not known is not in it; a call moves
/// when its Start puts it on another day.
pub async fn calls_by_day(store: Store) {
    let at = |text: &str| text.parse::<Timestamp>().unwrap();
    let start = |group: &str, when: &str| CallChange::Start {
        at: at(when),
        facts: facts(group),
    };
    for (call, group, when) in [
        ("d-3", "A", "2026-11-02T10:00:00Z"),
        ("d-1", "A", "2026-11-02T00:00:00Z"),
        ("d-2", "B", "2026-11-02T23:59:59.999Z"),
        ("d-4", "A", "2026-11-03T00:00:00Z"),
        ("d-5", "A-1", "2026-11-02T12:00:00Z"),
    ] {
        store
            .update(&id(call), &start(group, when), at(when))
            .await
            .unwrap();
    }
    // Received, no group: not in the calendar.
    store
        .update(
            &id("d-6"),
            &CallChange::Received(staged("d6")),
            at("2026-11-02T11:00:00Z"),
        )
        .await
        .unwrap();
    // End on the 2nd, then its Start on the 1st: filed on the 1st.
    let late = id("d-7");
    let end = CallChange::End {
        at: at("2026-11-02T00:10:00Z"),
        facts: facts("A"),
    };
    store
        .update(&late, &end, at("2026-11-02T00:10:00Z"))
        .await
        .unwrap();
    assert!(
        day_ids(&store, "2026-11-02", Some("A"))
            .await
            .contains(&"d-7".to_string())
    );
    store
        .update(
            &late,
            &start("A", "2026-11-01T23:55:00Z"),
            at("2026-11-02T00:11:00Z"),
        )
        .await
        .unwrap();

    assert_eq!(
        day_ids(&store, "2026-11-02", None).await,
        ["d-1", "d-3", "d-5", "d-2"],
        "by group (A, A-1, B), then id"
    );
    assert_eq!(
        day_ids(&store, "2026-11-02", Some("A")).await,
        ["d-1", "d-3"]
    );
    assert_eq!(day_ids(&store, "2026-11-02", Some("B")).await, ["d-2"]);
    assert_eq!(day_ids(&store, "2026-11-01", None).await, ["d-7"]);
    assert_eq!(day_ids(&store, "2026-11-03", Some("A")).await, ["d-4"]);
    assert!(day_ids(&store, "2026-11-04", None).await.is_empty());
    // A cursor of one group's pages is refused for another's.
    let page = store
        .calls_of_day(&DayQuery {
            day: "2026-11-02".parse().unwrap(),
            group_id: Some("A".into()),
            limit: 1,
            cursor: None,
        })
        .await
        .unwrap();
    let wrong = store
        .calls_of_day(&DayQuery {
            day: "2026-11-02".parse().unwrap(),
            group_id: Some("B".into()),
            limit: 1,
            cursor: page.next,
        })
        .await;
    assert!(matches!(wrong, Err(StoreError::BadCursor)), "{wrong:?}");
}
