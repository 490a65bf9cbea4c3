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
