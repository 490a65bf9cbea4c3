//! No hot key at scale, and what a call costs: 1,000 calls through the service (real HTTP on
//! loopback) into DynamoDB and S3 served by the emulator, with a proxy in between that counts
//! every write per item and per index partition, every read and every S3 request.
//!
//! moto serializes everything and has no partitions, so it cannot throttle a hot key; what it
//! can show is where the writes go. The bound asserted: no item and no index partition takes
//! more than 10% of the writes (one unsharded counter item would take half of them, one
//! unsharded index partition all of its index's).

mod common;
mod support;

use callrec_ingest::objects::s3::{S3Config, S3Store};
use callrec_ingest::store::CallStore;
use callrec_ingest::store::dynamo::DynamoStore;
use common::service::TOKEN;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::Moto;

const CALLS: usize = 1000;

fn share(counts: &BTreeMap<String, u64>) -> (String, u64, u64) {
    let total: u64 = counts.values().sum();
    let (key, most) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    (key.clone(), *most, total)
}

/// DynamoDB (table `table`) and S3 (the default configuration's buckets) on the emulator,
/// both through a counting proxy.
async fn through_proxy(
    moto: &Moto,
    table: &str,
) -> (Arc<common::aws_proxy::Proxy>, DynamoStore, S3Store) {
    let (proxy, endpoint) = common::aws_proxy::start(&moto.endpoint).await;
    let mut sdk = support::sdk_config(moto).to_builder();
    sdk.set_endpoint_url(Some(endpoint));
    let sdk = sdk.build();
    let store = DynamoStore::from_client(aws_sdk_dynamodb::Client::new(&sdk), table);
    store.ensure_table().await.unwrap();
    let objects = S3Store::from_sdk_config(
        &sdk,
        &S3Config {
            force_path_style: true,
            ..S3Config::default()
        },
    );
    let config = callrec_ingest::config::Config::default();
    for lob in config.lines_of_business.values() {
        objects.ensure_bucket(&lob.bucket).await.unwrap();
    }
    objects
        .ensure_bucket(&config.routing.staging.bucket)
        .await
        .unwrap();
    (proxy, store, objects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_calls_write_no_hot_item_or_index_partition() {
    let moto = Moto::start();
    let (proxy, store, objects) = through_proxy(&moto, "callrec-scale").await;
    let store: Arc<dyn CallStore> = Arc::new(store);
    let dir = tempfile::tempdir().unwrap();
    let mut config = callrec_ingest::config::Config::default();
    config.server.spool_dir = dir.path().join("spool");
    let service = common::service::serve(config, store.clone(), Arc::new(objects), None).await;
    proxy.reset();

    let audio = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/audio/extensible_ulaw_8k_mono.wav"),
    )
    .unwrap();
    let event = |kind: &str, i: usize| {
        serde_json::json!({
            "type": kind, "call_id": format!("scale-{i:04}"),
            "timestamp": format!("2026-11-24T09:{:02}:{:02}Z", i / 60 % 60, i % 60),
            "group_id": "grp-scale", "ivr_channel": "voice",
            "metadata": {"language": "en-US", "queue": format!("q{}", i % 7)}
        })
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for batch in 0..CALLS / 50 {
        let (service_url, http, audio, semaphore) = (
            service.url.clone(),
            service.http.clone(),
            audio.clone(),
            semaphore.clone(),
        );
        let calls: Vec<usize> = (batch * 50..batch * 50 + 50).collect();
        let starts: Vec<Value> = calls.iter().map(|&i| event("start", i)).collect();
        let ends: Vec<Value> = calls.iter().map(|&i| event("end", i)).collect();
        tasks.push(tokio::spawn(async move {
            let _slot = semaphore.acquire().await.unwrap();
            for events in [starts, ends] {
                let status = http
                    .post(format!("{service_url}/v1/cdr"))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({ "events": events }))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
            }
            for i in calls {
                // A full pipeline answers 503 (busy): the sender tries again, as OCP does.
                loop {
                    let status = http
                        .put(format!("{service_url}/v1/calls/scale-{i:04}/audio"))
                        .bearer_auth(TOKEN)
                        .body(audio.clone())
                        .send()
                        .await
                        .unwrap()
                        .status();
                    if status != 503 {
                        assert!(status.is_success(), "upload {i}: {status}");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let started = std::time::Instant::now();
    loop {
        let funnel = store.funnel().await.unwrap();
        if funnel.stored == CALLS as u64 {
            assert_eq!(
                (funnel.calls, funnel.processed, funnel.complete),
                (CALLS as u64, CALLS as u64, CALLS as u64)
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not all stored: {funnel:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the last staging removals land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let tally = proxy.tally.lock().unwrap();
    let (item, most, writes) = share(&tally.item_writes);
    eprintln!("item writes: {writes}; busiest item {item}: {most}");
    assert!(
        most * 10 <= writes,
        "{item} took {most} of {writes} item writes"
    );
    let (partition, most, index_writes) = share(&tally.index_writes);
    eprintln!("index writes: {index_writes}; busiest partition {partition}: {most}");
    assert!(
        most * 10 <= index_writes,
        "{partition} took {most} of {index_writes} index writes"
    );
    // Each index by itself is spread too: its busiest partition has ≤ 10% of its writes.
    for index in ["pending", "work"] {
        let of_index: BTreeMap<String, u64> = tally
            .index_writes
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{index}=")))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let (partition, most, total) = share(&of_index);
        assert!(
            most * 10 <= total,
            "{partition} took {most} of {total} {index} writes"
        );
        assert_eq!(
            of_index.len(),
            callrec_ingest::store::dynamo::SHARDS as usize
        );
    }
    // The counters are spread over their shards, each call's writes to one of them.
    let counters = tally
        .item_writes
        .keys()
        .filter(|k| k.starts_with("COUNTERS#"))
        .count();
    assert_eq!(counters, callrec_ingest::store::dynamo::SHARDS as usize);
    drop(tally);
    // What a call costs (README's cost model is made from these figures).
    proxy.report("stage 1", CALLS);
}

/// What a call reconciliation recovers costs: 100 calls whose CDRs are in DynamoDB and whose
/// recordings only OCP's export has; one scan, then every job worked to its end (polling every
/// 100–300 ms here, every 1–6 minutes in production: the per-job polls are the part that grows
/// with the wait, and are counted per job below).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_reconciled_call_costs() {
    const RECOVERED: usize = 100;
    let moto = Moto::start();
    let (proxy, store, s3) = through_proxy(&moto, "callrec-stage2").await;
    let rig = common::reconcile::rig_over(
        Some(Arc::new(store)),
        common::reconcile::GROUP,
        RECOVERED,
        common::reconcile::exports_config(),
        |_, _| Arc::new(s3),
        |_| {},
        |_| {},
    )
    .await;
    proxy.reset();
    rig.reconciler.scan_once().await.unwrap();
    common::reconcile::work_all(&rig.reconciler).await;
    let funnel = rig.store.funnel().await.unwrap();
    assert_eq!(funnel.stored, RECOVERED as u64, "{funnel:?}");
    let jobs = proxy
        .tally
        .lock()
        .unwrap()
        .item_writes
        .keys()
        .filter(|k| k.starts_with("JOB#"))
        .count();
    eprintln!("stage 2: {jobs} export jobs for {RECOVERED} calls");
    proxy.report("stage 2", RECOVERED);
}
