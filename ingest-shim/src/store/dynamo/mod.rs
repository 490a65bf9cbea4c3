//! The production state store: one DynamoDB table.
//!
//! Single-table design (all keys strings; `{s}` is the item's shard, [`shard_of`] its id, `00`–`15`):
//!
//! | item | `pk` | `sk` | index attributes, present only while the item needs work |
//! | --- | --- | --- | --- |
//! | call | `CALL#{call_id}` | `CALL` | `pending_pk` = `PENDING#{s}`, `pending_sk` = `{group}#{ended_ms:013}#{call_id}`, `pending_ms`; `work_pk` = `WORK#{s}`, `work_sk` = `{received_ms:013}#{call_id}`; `attention_pk` = `ATTENTION#{s}`, `attention_sk` = `{lost\|unprocessed}#{filed_ms:013}#{call_id}`; `day_pk` = `DAY#{yyyy-mm-dd}#{s}`, `day_sk` = `{group}#{call_id}` (keys only) |
//! | export job | `JOB#{job_id}` | `JOB` | `due_pk` = `DUE#{s}`, `due_sk` = `{next_poll_ms:013}#{job_id}`; `open_pk` = `OPEN#{s}`, `open_sk` = `{created_ms:013}#{job_id}` |
//! | funnel counters | `COUNTERS#{s}` | `FUNNEL` | — |
//!
//! Five global secondary indexes (`pending`, `work`, `attention`, `due`, `open`) are sparse:
//! an item leaves an index when its attributes are removed (a call once stored, a job once
//! finished, a lost call re-driven), so the scanner, the timer loop and `callrec redrive` query
//! only what still needs something and never scan the table. The sixth, `day` (the calendar:
//! every call whose group is known, by the UTC day it is filed under), holds keys only, for the
//! daily audit and the day's manifests.
//!
//! **No hot key.** A call's write touches its own item and one of 16 counter items, and its
//! index entries live in one of 16 partitions of each index: see [`shards`] for why and how
//! queries read the shards back as one ordered index. The funnel is the sum of the 16 counter
//! items, read in one batch.
//!
//! Every write is a compare-and-swap on `version` (a condition expression); a call write and its
//! counter increments go in one `TransactWriteItems`, so the funnel is exact. A transaction
//! cancelled by another on the same item (`TransactionConflict`), throttling,
//! `ProvisionedThroughputExceeded` and the other transient codes are retried here with jittered
//! backoff (10 ms doubling to 640 ms, 8 tries), for writes, reads and queries alike; only then do
//! they surface, as [`StoreError::Unavailable`]. Index queries are eventually consistent in
//! DynamoDB: the scanner's grace period is far longer than the index lag.

use super::{
    AttentionQuery, CallRecord, CallStore, CounterDelta, DayQuery, ExportJob, Funnel, JobId, Page,
    PendingQuery, Result, StoreError,
};
use crate::ids::CallId;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TableStatus, TransactWriteItem,
    Update,
};
use jiff::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

const BACKEND: &str = "dynamodb";
/// The sparse global secondary indexes, each keyed `{name}_pk` / `{name}_sk`.
const INDEXES: [&str; 6] = ["pending", "work", "attention", "day", "due", "open"];

/// What an index holds of its items: every attribute (queries return whole records), or only
/// the keys — the calendar index (`day`), which every call enters, so that it is written only
/// when a call's day or group changes, not on every write of the call.
fn projection_of(index: &str) -> ProjectionType {
    if index == "day" {
        ProjectionType::KeysOnly
    } else {
        ProjectionType::All
    }
}
/// Attempts per request for throttling and transient errors (the SDK's default is 3).
pub const MAX_ATTEMPTS: u32 = 8;

type Item = HashMap<String, AttributeValue>;

mod shape;
pub mod shards;
pub use shape::{TableFacts, TableShape};
use shards::{IndexQuery, shard_key};
pub use shards::{SHARDS, shard_of};

/// Where the table is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    pub table: String,
    /// An endpoint other than AWS's (a local emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Overrides the region from the standard AWS chain.
    pub region: Option<String>,
}

/// The DynamoDB [`CallStore`].
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn unavailable<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    let message = match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("")
        ),
        None => format!("{e:?}"),
    };
    StoreError::Unavailable {
        backend: BACKEND,
        message,
    }
}

fn corrupt(key: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        backend: BACKEND,
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// A key-sortable rendering of a time (ms since 1970, 13 digits: good until the year 2286).
fn sortable(t: Timestamp) -> String {
    format!("{:013}", ms(t).max(0))
}

fn call_key(id: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), s(format!("CALL#{id}"))),
        ("sk".to_string(), s("CALL")),
    ])
}

fn job_key(id: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), s(format!("JOB#{id}"))),
        ("sk".to_string(), s("JOB")),
    ])
}

/// One of the [`shards::SHARDS`] funnel counter items.
fn counters_key(shard: u32) -> Item {
    HashMap::from([
        ("pk".to_string(), s(shards::shard_key("COUNTERS", shard))),
        ("sk".to_string(), s("FUNNEL")),
    ])
}

fn record_of<T: serde::de::DeserializeOwned>(key: &str, item: &Item) -> Result<T> {
    let json = item
        .get("record")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt(key, "no record attribute"))?;
    serde_json::from_str(json).map_err(|e| corrupt(key, e))
}

/// The version condition of a compare-and-swap put.
fn condition(
    put: aws_sdk_dynamodb::types::builders::PutBuilder,
    expected: Option<u64>,
) -> aws_sdk_dynamodb::types::builders::PutBuilder {
    match expected {
        None => put.condition_expression("attribute_not_exists(pk)"),
        Some(v) => put
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(v)),
    }
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

/// Error codes DynamoDB answers when a retry is all it takes: throttling (an item or partition
/// past its write rate, a table past its capacity), a transaction that met another on the same
/// item, a request limit, a passing internal error.
const TRANSIENT_CODES: [&str; 7] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
    "LimitExceededException",
];

/// Tries of one write before a transient failure is reported (as `Unavailable`).
const WRITE_TRIES: u32 = 8;

fn is_transient<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|code| TRANSIENT_CODES.contains(&code))
}

/// A cancelled transaction none of whose conditions failed, cancelled because of another
/// transaction or throttling on one of its items: nothing was written, try again.
fn transaction_transient<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            let codes = cancelled.cancellation_reasons();
            !codes
                .iter()
                .any(|r| r.code() == Some("ConditionalCheckFailed"))
                && codes.iter().any(|r| {
                    matches!(
                        r.code(),
                        Some(
                            "TransactionConflict"
                                | "ThrottlingError"
                                | "ProvisionedThroughputExceeded"
                        )
                    )
                })
        }
        _ => is_transient(e),
    }
}

/// The wait before try `attempt` (1-based) of a write: 10 ms doubling to 640 ms, jittered to
/// half-to-all of it so contending writers do not retry in step.
fn backoff(attempt: u32) -> std::time::Duration {
    let full = 10u64 << attempt.min(6);
    std::time::Duration::from_millis(full / 2 + rand::random::<u64>() % (full / 2 + 1))
}

/// Sends a request built by `request`, again while DynamoDB answers with a transient refusal
/// (up to [`WRITE_TRIES`], with [`backoff`]): reads and queries are throttled like writes.
async fn retrying<T, E, R, F, Fut>(request: F) -> std::result::Result<T, SdkError<E, R>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata,
{
    let mut attempt = 1;
    loop {
        match request().await {
            Err(e) if is_transient(&e) && attempt < WRITE_TRIES => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

fn transaction_condition_failed<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed")),
        _ => false,
    }
}

impl DynamoStore {
    /// Connects with the standard AWS chain (environment, profile, instance or task role), the
    /// configured region and endpoint, and [`MAX_ATTEMPTS`] retries.
    pub async fn connect(config: &DynamoConfig) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_dynamodb::config::Builder::from(&shared).retry_config(
            aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
        );
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        DynamoStore::from_client(Client::from_conf(builder.build()), &config.table)
    }

    /// Uses a client configured elsewhere.
    pub fn from_client(client: Client, table: &str) -> Self {
        DynamoStore {
            client,
            table: table.to_string(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table and its indexes when missing (on-demand billing) and waits until it is
    /// active. Returns what it created, for `callrec init` to say.
    pub async fn ensure_table(&self) -> Result<Vec<String>> {
        let setup = |message: String| StoreError::Setup {
            backend: BACKEND,
            message,
        };
        if let Some(existing) = self.describe().await? {
            // A table from an older callrec may lack an index added since: add it.
            let mut added = Vec::new();
            for name in INDEXES
                .iter()
                .filter(|n| !existing.shape.indexes.contains_key(**n))
            {
                self.add_index(name).await?;
                added.push(format!("index {name} (added to table {})", self.table));
            }
            return Ok(added);
        }
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("name and type are set")
        };
        let index = |name: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(&format!("{name}_pk"), KeyType::Hash))
                .key_schema(key(&format!("{name}_sk"), KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(projection_of(name))
                        .build(),
                )
                .build()
                .expect("name, keys and projection are set")
        };
        let mut create = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range));
        for name in ["pk", "sk"] {
            create = create.attribute_definitions(attribute(name));
        }
        for name in INDEXES {
            create = create
                .attribute_definitions(attribute(&format!("{name}_pk")))
                .attribute_definitions(attribute(&format!("{name}_sk")))
                .global_secondary_indexes(index(name));
        }
        match create.send().await {
            Ok(_) => {}
            // Another replica created it first: fine.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(unavailable(e)),
        }
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(unavailable)?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(vec![
                    format!("table {}", self.table),
                    "index pending (calls ended and not stored)".into(),
                    "index work (calls received and not stored)".into(),
                    "index attention (calls lost or stored unprocessed)".into(),
                    "index day (calls by the day they are filed under, and group)".into(),
                    "index due (export jobs by next poll time)".into(),
                    "index open (export jobs not finished)".into(),
                ]);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(setup(format!(
            "table {} did not become active in 60 s",
            self.table
        )))
    }

    /// Adds one sparse index to an existing table and waits until it is active.
    async fn add_index(&self, name: &str) -> Result<()> {
        use aws_sdk_dynamodb::types::{
            CreateGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate,
        };
        let key = |attribute: String, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(attribute)
                .key_type(kind)
                .build()
                .expect("name and type are set")
        };
        let attribute = |attribute: String| {
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(name)
            .key_schema(key(format!("{name}_pk"), KeyType::Hash))
            .key_schema(key(format!("{name}_sk"), KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(projection_of(name))
                    .build(),
            )
            .build()
            .expect("name, keys and projection are set");
        self.client
            .update_table()
            .table_name(&self.table)
            .attribute_definitions(attribute(format!("{name}_pk")))
            .attribute_definitions(attribute(format!("{name}_sk")))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(create).build(),
            )
            .send()
            .await
            .map_err(unavailable)?;
        for _ in 0..600 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(unavailable)?;
            let active = described.table().is_some_and(|t| {
                t.global_secondary_indexes().iter().any(|i| {
                    i.index_name() == Some(name)
                        && i.index_status() == Some(&aws_sdk_dynamodb::types::IndexStatus::Active)
                })
            });
            if active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Setup {
            backend: BACKEND,
            message: format!(
                "index {name} of {} did not become active in 5 minutes",
                self.table
            ),
        })
    }

    /// The record of the item at `key` (a strongly consistent read), `name` for errors.
    async fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        key: Item,
        name: &str,
    ) -> Result<Option<T>> {
        let got = retrying(|| {
            self.client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key.clone()))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(unavailable)?;
        got.item().map(|item| record_of(name, item)).transpose()
    }

    /// A page of every item of a sparse index, in its order, from `cursor`.
    async fn whole_index_page<T: serde::de::DeserializeOwned>(
        &self,
        index: &'static str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<T>> {
        let query = IndexQuery {
            index,
            scope: None,
            from: None,
            to: None,
            filter: None,
            limit,
            after: cursor
                .map(|c| shards::decode_cursor(index, c))
                .transpose()?,
        };
        let (items, next) = self.fan_out(&query, |_: &T| true).await?;
        Ok(Page { items, next })
    }

    fn call_item(record: &CallRecord) -> Result<Item> {
        let json =
            serde_json::to_string(record).map_err(|e| corrupt(record.call_id.as_str(), e))?;
        let mut item = call_key(record.call_id.as_str());
        let shard = shard_of(record.call_id.as_str());
        item.insert("version".into(), n(record.version));
        item.insert("record".into(), s(json));
        if let Some(ended) = record.pending_since() {
            let group = record.cdr.group_id.clone().unwrap_or_default();
            item.insert("pending_pk".into(), s(shard_key("PENDING", shard)));
            item.insert(
                "pending_sk".into(),
                s(format!("{group}#{}#{}", sortable(ended), record.call_id)),
            );
            item.insert("pending_ms".into(), n(ms(ended)));
        }
        if let Some(received) = record.work_since() {
            item.insert("work_pk".into(), s(shard_key("WORK", shard)));
            item.insert(
                "work_sk".into(),
                s(format!("{}#{}", sortable(received), record.call_id)),
            );
        }
        if let Some((day, group)) = record.calendar() {
            item.insert("day_pk".into(), s(shard_key(&format!("DAY#{day}"), shard)));
            item.insert("day_sk".into(), s(format!("{group}#{}", record.call_id)));
        }
        if let Some((kind, filed)) = record.attention() {
            item.insert("attention_pk".into(), s(shard_key("ATTENTION", shard)));
            item.insert(
                "attention_sk".into(),
                s(format!(
                    "{}#{}#{}",
                    kind.name(),
                    sortable(filed),
                    record.call_id
                )),
            );
        }
        Ok(item)
    }

    fn job_item(job: &ExportJob) -> Result<Item> {
        let json = serde_json::to_string(job).map_err(|e| corrupt(job.id.as_str(), e))?;
        let mut item = job_key(job.id.as_str());
        let shard = shard_of(job.id.as_str());
        item.insert("version".into(), n(job.version));
        item.insert("record".into(), s(json));
        if let Some(due) = job.due_at() {
            item.insert("due_pk".into(), s(shard_key("DUE", shard)));
            item.insert("due_sk".into(), s(format!("{}#{}", sortable(due), job.id)));
        }
        if job.state.is_open() {
            item.insert("open_pk".into(), s(shard_key("OPEN", shard)));
            item.insert(
                "open_sk".into(),
                s(format!("{}#{}", sortable(job.created_at), job.id)),
            );
        }
        Ok(item)
    }
}

#[async_trait]
impl CallStore for DynamoStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, call_id: &CallId) -> Result<Option<CallRecord>> {
        self.get_record(call_key(call_id.as_str()), call_id.as_str())
            .await
    }

    async fn put_if(
        &self,
        record: &CallRecord,
        expected: Option<u64>,
        counters: &CounterDelta,
    ) -> Result<bool> {
        let item = Self::call_item(record)?;
        let put = condition(
            Put::builder().table_name(&self.table).set_item(Some(item)),
            expected,
        )
        .build()
        .map_err(|e| corrupt(record.call_id.as_str(), e))?;
        if counters.0.is_empty() {
            let mut request = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(put.item().clone()))
                .condition_expression(put.condition_expression().unwrap_or_default());
            if let Some(values) = put.expression_attribute_values() {
                request = request.set_expression_attribute_values(Some(values.clone()));
            }
            for attempt in 1..=WRITE_TRIES {
                match request.clone().send().await {
                    Ok(_) => return Ok(true),
                    Err(e) if is_condition_failure(&e) => return Ok(false),
                    Err(e) if is_transient(&e) && attempt < WRITE_TRIES => {
                        tracing::debug!(error = ?e.as_service_error().and_then(|s| s.code()), "DynamoDB write throttled; retrying");
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Err(e) => return Err(unavailable(e)),
                }
            }
            unreachable!("the last try returns");
        }
        let mut expression = Vec::new();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(counters_key(shard_of(record.call_id.as_str()))));
        for (i, (name, delta)) in counters.0.iter().enumerate() {
            expression.push(format!("#c{i} :d{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), *name)
                .expression_attribute_values(format!(":d{i}"), n(delta));
        }
        let update = update
            .update_expression(format!("ADD {}", expression.join(", ")))
            .build()
            .map_err(|e| corrupt("COUNTERS", e))?;
        let request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build());
        // A transaction cancelled by another on the same item (or by throttling) wrote nothing:
        // retried here, with jittered backoff, a bounded number of times.
        for attempt in 1..=WRITE_TRIES {
            match request.clone().send().await {
                Ok(_) => return Ok(true),
                Err(e) if transaction_condition_failed(&e) => return Ok(false),
                Err(e) if transaction_transient(&e) && attempt < WRITE_TRIES => {
                    tracing::debug!("DynamoDB transaction conflicted or throttled; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        unreachable!("the last try returns")
    }

    async fn pending(&self, query: &PendingQuery) -> Result<Page<CallRecord>> {
        let from = query.ended_from.map_or(0, ms).max(0);
        let before = ms(query.ended_before);
        let after = query
            .cursor
            .as_deref()
            .map(|c| shards::decode_cursor("pending", c))
            .transpose()?;
        let (from_key, to_key, filter) = match &query.group_id {
            // One group: the window is a range of the sort key.
            Some(group) => {
                if after
                    .as_ref()
                    .is_some_and(|key| !key.starts_with(&format!("{group}#")))
                {
                    return Err(StoreError::BadCursor);
                }
                (
                    Some(format!("{group}#{from:013}#")),
                    Some(format!("{group}#{:013}#", before.max(0))),
                    None,
                )
            }
            // Every group: ordered by group, the window a filter.
            None => (
                None,
                None,
                Some((
                    "pending_ms >= :from AND pending_ms < :before",
                    vec![(":from", n(from)), (":before", n(before))],
                )),
            ),
        };
        let index = IndexQuery {
            index: "pending",
            scope: None,
            from: from_key,
            to: to_key,
            filter,
            limit: query.limit,
            after,
        };
        // The key range is inclusive at its top: leave out calls that ended exactly at `before`.
        let ended_before = |record: &CallRecord| record.flags.ended.is_some_and(|e| ms(e) < before);
        let (items, next) = self.fan_out(&index, ended_before).await?;
        Ok(Page { items, next })
    }

    async fn unfinished(&self, limit: u32, cursor: Option<&str>) -> Result<Page<CallRecord>> {
        self.whole_index_page("work", limit, cursor).await
    }

    async fn attention(&self, query: &AttentionQuery) -> Result<Page<CallRecord>> {
        let kind = query.kind.name();
        let after = query
            .cursor
            .as_deref()
            .map(|c| shards::decode_cursor("attention", c))
            .transpose()?;
        if after
            .as_ref()
            .is_some_and(|key| !key.starts_with(&format!("{kind}#")))
        {
            return Err(StoreError::BadCursor);
        }
        let from = query.filed_from.map_or(0, ms).max(0);
        let index = IndexQuery {
            index: "attention",
            scope: None,
            from: Some(format!("{kind}#{from:013}#")),
            // Past every `{kind}#{digits}…` key.
            to: Some(format!("{kind}#~")),
            filter: None,
            limit: query.limit,
            after,
        };
        let (items, next) = self.fan_out(&index, |_: &CallRecord| true).await?;
        Ok(Page { items, next })
    }

    async fn calls_of_day(&self, query: &DayQuery) -> Result<Page<CallId>> {
        let after = query
            .cursor
            .as_deref()
            .map(|c| shards::decode_cursor("day", c))
            .transpose()?;
        let (from, to) = match &query.group_id {
            Some(group) => {
                if after
                    .as_ref()
                    .is_some_and(|key| !key.starts_with(&format!("{group}#")))
                {
                    return Err(StoreError::BadCursor);
                }
                // `$` follows `#` in ASCII: past every `{group}#…` key.
                (Some(format!("{group}#")), Some(format!("{group}$")))
            }
            None => (None, None),
        };
        let index = IndexQuery {
            index: "day",
            scope: Some(query.day.to_string()),
            from,
            to,
            filter: None,
            limit: query.limit,
            after,
        };
        // Keys only: the call id is the part of the sort key after the group.
        let decode = |sort_key: &str, _: &Item| {
            let id = sort_key.rsplit_once('#').map_or(sort_key, |(_, id)| id);
            CallId::parse(id).map_err(|e| corrupt(sort_key, e))
        };
        let (items, next) = self.fan_out_as(&index, decode, |_| true).await?;
        Ok(Page { items, next })
    }

    async fn funnel(&self) -> Result<Funnel> {
        // Every counter shard in one consistent batch read (the rare keys DynamoDB leaves
        // unprocessed are asked again), summed.
        let mut keys: Vec<Item> = (0..shards::SHARDS).map(counters_key).collect();
        let mut totals: HashMap<String, i64> = HashMap::new();
        for _ in 0..WRITE_TRIES {
            if keys.is_empty() {
                break;
            }
            let batch = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(true)
                .build()
                .map_err(|e| corrupt("COUNTERS", e))?;
            let got = retrying(|| {
                self.client
                    .batch_get_item()
                    .request_items(&self.table, batch.clone())
                    .send()
            })
            .await
            .map_err(unavailable)?;
            for item in got
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                for (name, value) in item {
                    if let Ok(number) = value.as_n() {
                        let parsed: i64 = number.parse().map_err(|_| corrupt("COUNTERS", name))?;
                        *totals.entry(name.clone()).or_default() += parsed;
                    }
                }
            }
            if let Some(left) = got.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                keys = left.keys().to_vec();
                tokio::time::sleep(backoff(1)).await;
            }
        }
        if !keys.is_empty() {
            return Err(StoreError::Unavailable {
                backend: BACKEND,
                message: "counter shards left unread after retries".into(),
            });
        }
        let mut funnel = Funnel::default();
        for (name, total) in totals {
            funnel.set(&name, total);
        }
        Ok(funnel)
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<ExportJob>> {
        self.get_record(job_key(id.as_str()), id.as_str()).await
    }

    async fn put_job_if(&self, job: &ExportJob, expected: Option<u64>) -> Result<bool> {
        let item = Self::job_item(job)?;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        request = match expected {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(v) => request
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(v)),
        };
        match retrying(|| request.clone().send()).await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<ExportJob>> {
        // Every key for a time ≤ now sorts below "{now}#~" ('~' is above every id character).
        let index = IndexQuery {
            index: "due",
            scope: None,
            from: None,
            to: Some(format!("{}#~", sortable(now))),
            filter: None,
            limit,
            after: None,
        };
        let (jobs, _) = self.fan_out(&index, |_: &ExportJob| true).await?;
        Ok(jobs)
    }

    async fn open_jobs(&self, limit: u32, cursor: Option<&str>) -> Result<Page<ExportJob>> {
        self.whole_index_page("open", limit, cursor).await
    }
}
