//! A proxy in front of the AWS emulator that forwards everything and counts what went through:
//! DynamoDB writes per item and per index partition (as DynamoDB counts index writes), write
//! units, and every DynamoDB and S3 request. The figures of README's cost model come from it.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

const INDEXES: [&str; 6] = ["pending", "work", "attention", "day", "due", "open"];
/// The index that holds keys only: an entry is written when its keys change, not on every
/// write of its item, and costs one unit (a small item).
const KEYS_ONLY: &str = "day";

/// What went through the proxy.
#[derive(Default)]
pub struct Tally {
    /// Successful writes per table item (`pk`).
    pub item_writes: BTreeMap<String, u64>,
    /// Write request units: 1 per KB of item, twice in a transaction, plus the index writes'.
    pub write_units: u64,
    /// Read request units, in halves: a strongly consistent `GetItem` (or item of a
    /// `BatchGetItem`) 1 per 4 KB; a `Query` (eventually consistent, on an index) half a unit
    /// per 4 KB of the items it returned together, at least half a unit.
    pub read_half_units: u64,
    /// Writes per index partition (`{index}={partition key}`), as DynamoDB counts them: an entry
    /// put, updated or deleted is one write; one moved between keys is a delete and a put.
    pub index_writes: BTreeMap<String, u64>,
    /// The index keys each item has now (`(index, partition, sort)`).
    index_keys: HashMap<String, Vec<(String, String, String)>>,
    /// DynamoDB requests per operation and S3 requests per method.
    pub requests: BTreeMap<String, u64>,
}

impl Tally {
    /// A written item (its full attributes): counts it and its index entries.
    fn put(&mut self, item: &serde_json::Map<String, Value>, transactional: bool) {
        let pk = item["pk"]["S"].as_str().unwrap().to_string();
        *self.item_writes.entry(pk.clone()).or_default() += 1;
        let units = item_kb(item) * if transactional { 2 } else { 1 };
        self.write_units += units;
        let new: Vec<(String, String, String)> = INDEXES
            .iter()
            .filter_map(|index| {
                let key = |suffix: &str| {
                    item.get(&format!("{index}_{suffix}"))
                        .and_then(|v| v["S"].as_str())
                        .map(str::to_string)
                };
                Some((index.to_string(), key("pk")?, key("sk")?))
            })
            .collect();
        let old = self.index_keys.remove(&pk).unwrap_or_default();
        for index in INDEXES {
            let before = old.iter().find(|(i, ..)| i == index);
            let after = new.iter().find(|(i, ..)| i == index);
            let mut write = |(_, partition, _): &(String, String, String)| {
                *self
                    .index_writes
                    .entry(format!("{index}={partition}"))
                    .or_default() += 1;
                self.write_units += if index == KEYS_ONLY { 1 } else { item_kb(item) };
            };
            match (before, after) {
                (Some(b), Some(a)) if b == a && index == KEYS_ONLY => {}
                (Some(b), Some(a)) if b == a => write(a),
                (b, a) => {
                    b.into_iter().for_each(&mut write);
                    a.into_iter().for_each(&mut write);
                }
            }
        }
        self.index_keys.insert(pk, new);
    }

    /// An `ADD` to an item (the counters): one write of a small item.
    fn update(&mut self, key: &serde_json::Map<String, Value>, transactional: bool) {
        let pk = key["pk"]["S"].as_str().unwrap().to_string();
        *self.item_writes.entry(pk).or_default() += 1;
        self.write_units += if transactional { 2 } else { 1 };
    }
}

/// An item's size in bytes, as DynamoDB counts it (names plus values).
fn item_bytes(item: &serde_json::Map<String, Value>) -> u64 {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + value
                    .as_object()
                    .and_then(|v| v.values().next())
                    .and_then(Value::as_str)
                    .map_or(8, str::len)
        })
        .sum::<usize>() as u64
}

/// Read units (in halves) of an answer to `operation`.
fn read_half_units(operation: &str, answer: &Value) -> u64 {
    let items = |v: &Value| -> Vec<u64> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_object)
                    .map(item_bytes)
                    .collect()
            })
            .unwrap_or_default()
    };
    match operation {
        "GetItem" => answer["Item"]
            .as_object()
            .map_or(2, |i| 2 * item_bytes(i).div_ceil(4096).max(1)),
        "BatchGetItem" => answer["Responses"]
            .as_object()
            .map(|tables| {
                tables
                    .values()
                    .flat_map(&items)
                    .map(|b| 2 * b.div_ceil(4096).max(1))
                    .sum()
            })
            .unwrap_or(0),
        "Query" => items(&answer["Items"])
            .iter()
            .sum::<u64>()
            .div_ceil(4096)
            .max(1),
        _ => 0,
    }
}

/// An item's size in whole KB, rounded up, as DynamoDB bills it (names plus values).
fn item_kb(item: &serde_json::Map<String, Value>) -> u64 {
    item_bytes(item).div_ceil(1024).max(1)
}

pub struct Proxy {
    pub moto: String,
    pub http: reqwest::Client,
    pub tally: Mutex<Tally>,
    turns: tokio::sync::Semaphore,
}

/// Forwards every request to the emulator; counts the DynamoDB writes that succeeded and every
/// request.
async fn forward(
    axum::extract::State(proxy): axum::extract::State<Arc<Proxy>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let headers = request.headers().clone();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_string());
    let body = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = proxy
        .http
        .request(method.clone(), format!("{}{path}", proxy.moto))
        .body(body.clone());
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    // The emulator answers one request at a time: a few at once reach it, the rest wait here
    // (rather than overflow its listen queue).
    let _turn = proxy.turns.acquire().await.unwrap();
    // The emulator dropping a connection under load is a 502 to the client, which retries it
    // (as it would a load balancer's).
    let bad_gateway = || {
        axum::response::Response::builder()
            .status(502)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let Ok(answer) = out.send().await else {
        return bad_gateway();
    };
    let status = answer.status();
    let mut response = axum::response::Response::builder().status(status.as_u16());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    let Ok(bytes) = answer.bytes().await else {
        return bad_gateway();
    };
    {
        let mut tally = proxy.tally.lock().unwrap();
        let operation = match &target {
            Some(op) => op.clone(),
            None if uri.query().is_some_and(|q| q.contains("list-type")) => "S3 LIST".into(),
            None => format!("S3 {method}"),
        };
        *tally.requests.entry(operation).or_default() += 1;
        if status.is_success()
            && let Some(op) = &target
        {
            let json: Value = serde_json::from_slice(&body).unwrap();
            if let Ok(answer) = serde_json::from_slice::<Value>(&bytes) {
                tally.read_half_units += read_half_units(op, &answer);
            }
            match op.as_str() {
                "PutItem" => tally.put(json["Item"].as_object().unwrap(), false),
                "UpdateItem" => tally.update(json["Key"].as_object().unwrap(), false),
                "TransactWriteItems" => {
                    for part in json["TransactItems"].as_array().unwrap() {
                        if let Some(put) = part.get("Put") {
                            tally.put(put["Item"].as_object().unwrap(), true);
                        } else if let Some(update) = part.get("Update") {
                            tally.update(update["Key"].as_object().unwrap(), true);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    response.body(axum::body::Body::from(bytes)).unwrap()
}

/// Starts a proxy to the emulator at `moto` on a loopback port; returns it and its URL.
pub async fn start(moto: &str) -> (Arc<Proxy>, String) {
    let proxy = Arc::new(Proxy {
        moto: moto.to_string(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        tally: Mutex::default(),
        turns: tokio::sync::Semaphore::new(4),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (proxy, url)
}

impl Proxy {
    /// Forgets what was counted (set-up traffic is not the calls').
    pub fn reset(&self) {
        *self.tally.lock().unwrap() = Tally::default();
    }

    /// Prints what went through per `calls` calls, for the cost model.
    pub fn report(&self, what: &str, calls: usize) {
        let tally = self.tally.lock().unwrap();
        let per = |n: u64| n as f64 / calls as f64;
        eprintln!(
            "{what}, per call: {:.2} item writes, {:.2} index writes, {:.2} write units, \
             {:.2} read units",
            per(tally.item_writes.values().sum()),
            per(tally.index_writes.values().sum()),
            per(tally.write_units),
            per(tally.read_half_units) / 2.0
        );
        for (operation, n) in &tally.requests {
            eprintln!("{what}, per call: {:.2} {operation} ({n})", per(*n));
        }
    }
}
