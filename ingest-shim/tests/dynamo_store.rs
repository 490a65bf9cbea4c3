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
