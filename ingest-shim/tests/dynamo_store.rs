//! The `CallStore` conformance suite against DynamoDB, served by the local emulator (moto) that
//! this test starts on a free loopback port and stops afterwards.

mod conformance;
mod support;

use callrec_ingest::store::CallStore;
use callrec_ingest::store::dynamo::DynamoStore;
use conformance::calls::{self, Store};
use std::sync::Arc;
use support::Moto;

async fn dynamo(moto: &Moto) -> Store {
    let client = aws_sdk_dynamodb::Client::new(&support::sdk_config(moto));
    let store = DynamoStore::from_client(client, "callrec-test");
    let created = store.ensure_table().await.unwrap();
    assert!(
        created.iter().any(|c| c.contains("table callrec-test")),
        "{created:?}"
    );
    assert!(
        store.ensure_table().await.unwrap().is_empty(),
        "created once"
    );
    Arc::new(store)
}

macro_rules! dynamo_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let moto = Moto::start();
                let store = dynamo(&moto).await;
                calls::$name(store).await;
            }
        )*
    };
}

dynamo_suite!(
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
async fn an_unreachable_endpoint_is_a_typed_error() {
    let moto = Moto::start();
    let mut config = support::sdk_config(&moto).to_builder();
    config.set_endpoint_url(Some("http://127.0.0.1:9".into()));
    let sdk = config.build();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build(),
    );
    let store = DynamoStore::from_client(client, "nowhere");
    let err = store
        .get(&callrec_ingest::CallId::parse("x").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, callrec_ingest::store::StoreError::Unavailable { .. }),
        "{err}"
    );
}

/// A proxy in front of the emulator that answers some requests the way DynamoDB does under load
/// (moto serializes everything and never does): every 3rd `TransactWriteItems` cancelled with
/// `TransactionConflict`, every 7th refused for throughput, every 11th `GetItem` throttled. The
/// rest go to the emulator.
struct FaultProxy {
    moto: String,
    http: reqwest::Client,
    seen: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    injected: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

async fn through_faults(
    axum::extract::State(proxy): axum::extract::State<Arc<FaultProxy>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap();
    let n = {
        let mut seen = proxy.seen.lock().unwrap();
        let n = seen.entry(target.clone()).or_default();
        *n += 1;
        *n
    };
    let fault = |kind: &'static str, json: serde_json::Value| {
        *proxy.injected.lock().unwrap().entry(kind).or_default() += 1;
        (
            axum::http::StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.0")],
            json.to_string(),
        )
            .into_response()
    };
    if target.ends_with(".TransactWriteItems") && n.is_multiple_of(3) {
        return fault(
            "TransactionConflict",
            serde_json::json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict, None]",
                "CancellationReasons": [
                    {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
                    {"Code": "None"}
                ]
            }),
        );
    }
    if target.ends_with(".TransactWriteItems") && n % 7 == 1 && n > 1 {
        return fault(
            "Throttling",
            serde_json::json!({
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded"
            }),
        );
    }
    if target.ends_with(".GetItem") && n.is_multiple_of(11) {
        return fault(
            "ReadThrottling",
            serde_json::json!({
                "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "message": "Throughput exceeds the current capacity of your table or index"
            }),
        );
    }
    let mut forward = proxy.http.post(&proxy.moto).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.send().await.unwrap();
    let status = axum::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-amz-json-1.0")
        .to_string();
    let bytes = answer.bytes().await.unwrap();
    (status, [("content-type", content_type)], bytes).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transaction_conflicts_and_throttling_are_retried_and_nothing_is_lost() {
    use callrec_ingest::store::{CallChange, CdrFacts};
    let moto = Moto::start();
    let proxy = Arc::new(FaultProxy {
        moto: moto.endpoint.clone(),
        http: reqwest::Client::new(),
        seen: Default::default(),
        injected: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(through_faults)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = support::sdk_config(&moto).to_builder();
    config.set_endpoint_url(Some(endpoint));
    let client = aws_sdk_dynamodb::Client::new(&config.build());
    let store = DynamoStore::from_client(client, "callrec-faults");
    store.ensure_table().await.unwrap();
    let store: Store = Arc::new(store);
    // 60 calls, each Start and End from 4 writers at once: contention and injected faults.
    let t = |s: i64| jiff::Timestamp::from_second(1_800_000_000 + s).unwrap();
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for c in 0..60 {
                let id = callrec_ingest::CallId::parse(&format!("c{c}")).unwrap();
                let facts = CdrFacts {
                    group_id: Some("g".into()),
                    ..CdrFacts::default()
                };
                let change = if w % 2 == 0 {
                    CallChange::Start { at: t(c), facts }
                } else {
                    CallChange::End {
                        at: t(c + 60),
                        facts,
                    }
                };
                store
                    .update(&id, &change, t(c))
                    .await
                    .expect("no error surfaces");
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let injected = proxy.injected.lock().unwrap().clone();
    assert!(
        injected.get("TransactionConflict").copied().unwrap_or(0) >= 10,
        "{injected:?}"
    );
    assert!(
        injected.get("Throttling").copied().unwrap_or(0) >= 1,
        "{injected:?}"
    );
    // Every write counted once: the funnel is exact.
    let funnel = store.funnel().await.unwrap();
    assert_eq!((funnel.calls, funnel.started, funnel.ended), (60, 60, 60));
}
