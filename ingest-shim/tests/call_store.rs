//! The `CallStore` conformance suite against every backend: SQLite here; DynamoDB through the
//! local emulator (see `dynamo_store.rs`).

mod conformance;

use callrec_ingest::store::sqlite::SqliteStore;
use conformance::calls::{self, Store};
use std::sync::Arc;

fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("state/callrec.db")).unwrap();
    (dir, Arc::new(store))
}

macro_rules! sqlite_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (_dir, store) = sqlite();
                calls::$name(store).await;
            }
        )*
    };
}

sqlite_suite!(
    lifecycle_and_idempotency,
    any_order,
    conflicts,
    concurrent_writers,
    pending_pages,
    jobs_and_leases,
    unfinished_work,
    oversized_facts,
    attention_pages,
    calls_by_day,
);

#[tokio::test]
async fn reopening_keeps_everything_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callrec.db");
    {
        let store: Store = Arc::new(SqliteStore::open(&path).unwrap());
        calls::lifecycle_and_idempotency(store).await;
    }
    let store = SqliteStore::open(&path).unwrap();
    let funnel = callrec_ingest::store::CallStore::funnel(&store)
        .await
        .unwrap();
    assert_eq!(funnel.stored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_file_do_not_lose_updates() {
    // Two independent connections (as two `callrec serve` processes would have) racing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callrec.db");
    let a: Store = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Store = Arc::new(SqliteStore::open(&path).unwrap());
    let call = callrec_ingest::CallId::parse("shared-1").unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            store
                .update(
                    &call,
                    &callrec_ingest::store::CallChange::Failed {
                        error: format!("e{i}"),
                    },
                    jiff::Timestamp::now(),
                )
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.get(&call).await.unwrap().unwrap().attempts, 20);
}

#[tokio::test]
async fn a_database_from_before_the_attention_and_calendar_indexes_is_filled_in_when_opened() {
    use callrec_ingest::store::{Attention, AttentionQuery, CallChange, CallStore as _, DayQuery};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callrec.db");
    let started = "2026-11-02T10:00:00.250Z"
        .parse::<jiff::Timestamp>()
        .unwrap();
    let call = callrec_ingest::CallId::parse("old-lost").unwrap();
    {
        let store = SqliteStore::open(&path).unwrap();
        let start = CallChange::Start {
            at: started,
            facts: callrec_ingest::store::CdrFacts {
                group_id: Some("g-1".into()),
                ..Default::default()
            },
        };
        store.update(&call, &start, started).await.unwrap();
        let lost = CallChange::Lost {
            reason: "past retention".into(),
        };
        store.update(&call, &lost, started).await.unwrap();
    }
    // The database as version 2 left it: no attention or calendar columns, no such indexes.
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "DROP INDEX calls_attention;
         ALTER TABLE calls DROP COLUMN attention;
         ALTER TABLE calls DROP COLUMN attention_ms;
         DROP INDEX calls_calendar;
         ALTER TABLE calls DROP COLUMN cal_day;
         ALTER TABLE calls DROP COLUMN cal_group;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(old);
    let store = SqliteStore::open(&path).unwrap();
    let query = |filed_from| AttentionQuery {
        kind: Attention::Lost,
        filed_from,
        limit: 10,
        cursor: None,
    };
    let page = store.attention(&query(None)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].call_id, call);
    // Filed at its Start, to the millisecond.
    let at = |ms: i64| {
        Some(
            started
                .checked_add(jiff::SignedDuration::from_millis(ms))
                .unwrap(),
        )
    };
    assert_eq!(store.attention(&query(at(0))).await.unwrap().items.len(), 1);
    assert!(
        store
            .attention(&query(at(1)))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let day = |day: &str| DayQuery {
        day: day.parse().unwrap(),
        group_id: Some("g-1".into()),
        limit: 10,
        cursor: None,
    };
    let filed = store.calls_of_day(&day("2026-11-02")).await.unwrap();
    assert_eq!(filed.items, [call]);
    assert!(
        store
            .calls_of_day(&day("2026-11-01"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
