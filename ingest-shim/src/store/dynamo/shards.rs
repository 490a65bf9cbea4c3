//! Spreading the table's shared keys over shards, and reading the shards back as one.
//!
//! DynamoDB serves about 1,000 write units a second per partition key value (an item, or one
//! partition key of an index), and cancels a transaction that meets another on the same item.
//! So nothing every call writes may live under one key: the funnel counters are [`SHARDS`]
//! items (`COUNTERS#00` … `COUNTERS#15`), and each sparse index's partition key is one of
//! [`SHARDS`] values (`PENDING#07`, `WORK#07`, …). A call's shard is a hash of its id
//! ([`shard_of`]), so a call's writes always meet the same counter item and the same index
//! partitions, and each of those takes about 1/16 of the writes at any call rate (16,000 index
//! writes a second in all before one partition throttles: ~3,000 calls a second).
//!
//! A query of an index asks every shard and merges the answers in sort-key order
//! ([`DynamoStore::fan_out`]): the order callers see is the order one unsharded partition gave.
//! The cursor of a page is the sort key of the last item it consumed; the next page asks every
//! shard for the keys above it. Each shard is read a small page at a time, so a page of `limit`
//! items reads about `limit` items plus one small page per shard.

use super::{DynamoStore, Item, corrupt, record_of, s, unavailable};
use crate::store::{Result, StoreError};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use std::collections::VecDeque;

/// How many counter items and index partitions the shared keys are spread over. Fixed for a
/// table's life: readers ask exactly these shards.
pub const SHARDS: u32 = 16;

/// The shard of a call or job id: FNV-1a of its bytes (stable across versions and platforms).
pub fn shard_of(id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

/// The partition key value `{prefix}#{shard:02}`.
pub fn shard_key(prefix: &str, shard: u32) -> String {
    format!("{prefix}#{shard:02}")
}

/// Longest sort key a cursor may carry (group + time + id, with room).
const MAX_CURSOR_KEY: usize = 512;

/// A page cursor: the index and the last sort key consumed, URL-safe base64.
pub fn encode_cursor(index: &str, sort_key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{index}\n{sort_key}"))
}

/// The sort key of a cursor [`encode_cursor`] made for `index`; anything else is
/// [`StoreError::BadCursor`].
pub fn decode_cursor(index: &str, raw: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| StoreError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    let (of, key) = text.split_once('\n').ok_or(StoreError::BadCursor)?;
    let fine = of == index
        && !key.is_empty()
        && key.len() <= MAX_CURSOR_KEY
        && !key.chars().any(char::is_control);
    if fine {
        Ok(key.to_string())
    } else {
        Err(StoreError::BadCursor)
    }
}

/// One query of a sharded index: its name (attributes `{index}_pk`, `{index}_sk`; partition
/// key values `{INDEX}#{shard}`), sort-key bounds (both inclusive), an optional filter, a page size
/// and the cursor's sort key (exclusive).
pub struct IndexQuery<'a> {
    pub index: &'static str,
    /// Between the index's name and the shard in the partition key (`DAY#2026-12-01#07`).
    pub scope: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// A filter expression and its values (names are the index's own attributes).
    pub filter: Option<(&'a str, Vec<(&'a str, AttributeValue)>)>,
    pub limit: u32,
    pub after: Option<String>,
}

/// One shard's part of a merge: items read and not yet consumed, and where its next page starts.
struct ShardReader {
    shard: u32,
    items: VecDeque<(String, Item)>,
    next: Option<Item>,
    done: bool,
}

impl DynamoStore {
    /// Up to `query.limit` records of every shard of the index, in sort-key order, that `keep`
    /// says yes to; and the cursor of the next page (`None`: the index has no more).
    pub(super) async fn fan_out<T: serde::de::DeserializeOwned>(
        &self,
        query: &IndexQuery<'_>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<(Vec<T>, Option<String>)> {
        self.fan_out_as(query, record_of, keep).await
    }

    /// [`DynamoStore::fan_out`], each item made a `T` by `decode` (its sort key, the item).
    pub(super) async fn fan_out_as<T>(
        &self,
        query: &IndexQuery<'_>,
        decode: impl Fn(&str, &Item) -> Result<T>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<(Vec<T>, Option<String>)> {
        let limit = query.limit.clamp(1, 1000) as usize;
        // A lower bound, and whether it is the cursor (exclusive) or the range's own.
        let lower = match (&query.after, &query.from) {
            (Some(after), Some(from)) if after < from => Some((from.clone(), false)),
            (Some(after), _) => Some((after.clone(), true)),
            (None, Some(from)) => Some((from.clone(), false)),
            (None, None) => None,
        };
        if let (Some((lower, _)), Some(upper)) = (&lower, &query.to)
            && lower > upper
        {
            return Ok((Vec::new(), None));
        }
        let page = (2 * limit).div_ceil(SHARDS as usize).clamp(4, 1000) as i32;
        let mut readers: Vec<ShardReader> = (0..SHARDS)
            .map(|shard| ShardReader {
                shard,
                items: VecDeque::new(),
                next: None,
                done: false,
            })
            .collect();
        let mut out = Vec::new();
        let mut last: Option<String> = None;
        while out.len() < limit {
            // Every shard with nothing in hand and more to read reads its next page (at the
            // start, all of them at once).
            let empty: Vec<usize> = (0..readers.len())
                .filter(|&i| readers[i].items.is_empty() && !readers[i].done)
                .collect();
            if !empty.is_empty() {
                let pages = futures_util::future::try_join_all(
                    empty
                        .iter()
                        .map(|&i| self.shard_page(query, &lower, &readers[i], page)),
                )
                .await?;
                for (i, (items, next)) in empty.into_iter().zip(pages) {
                    let reader = &mut readers[i];
                    reader.items.extend(items);
                    reader.done = next.is_none();
                    reader.next = next;
                }
                continue;
            }
            let smallest = readers
                .iter_mut()
                .filter(|r| !r.items.is_empty())
                .min_by(|a, b| a.items[0].0.cmp(&b.items[0].0));
            let Some(reader) = smallest else {
                return Ok((out, None));
            };
            let (sort_key, item) = reader.items.pop_front().expect("not empty");
            let record: T = decode(&sort_key, &item)?;
            if keep(&record) {
                out.push(record);
            }
            last = Some(sort_key);
        }
        let more = readers.iter().any(|r| !r.items.is_empty() || !r.done);
        Ok((
            out,
            last.filter(|_| more)
                .map(|key| encode_cursor(query.index, &key)),
        ))
    }

    /// The next page of one shard: items with their sort keys (the cursor's own key left
    /// out), and the key to continue from.
    async fn shard_page(
        &self,
        query: &IndexQuery<'_>,
        lower: &Option<(String, bool)>,
        reader: &ShardReader,
        size: i32,
    ) -> Result<(Vec<(String, Item)>, Option<Item>)> {
        let sk = format!("{}_sk", query.index);
        let prefix = match &query.scope {
            Some(scope) => format!("{}#{scope}", query.index.to_ascii_uppercase()),
            None => query.index.to_ascii_uppercase(),
        };
        let request = || {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(query.index)
                .expression_attribute_names("#pk", format!("{}_pk", query.index))
                .expression_attribute_values(":pk", s(shard_key(&prefix, reader.shard)))
                .limit(size)
                .set_exclusive_start_key(reader.next.clone());
            let condition = match (lower, &query.to) {
                (Some((lo, _)), Some(hi)) => {
                    request = request
                        .expression_attribute_values(":lo", s(lo))
                        .expression_attribute_values(":hi", s(hi));
                    "#pk = :pk AND #sk BETWEEN :lo AND :hi"
                }
                (Some((lo, true)), None) => {
                    request = request.expression_attribute_values(":lo", s(lo));
                    "#pk = :pk AND #sk > :lo"
                }
                (Some((lo, false)), None) => {
                    request = request.expression_attribute_values(":lo", s(lo));
                    "#pk = :pk AND #sk >= :lo"
                }
                (None, Some(hi)) => {
                    request = request.expression_attribute_values(":hi", s(hi));
                    "#pk = :pk AND #sk <= :hi"
                }
                (None, None) => "#pk = :pk",
            };
            if condition.contains("#sk") {
                request = request.expression_attribute_names("#sk", &sk);
            }
            if let Some((filter, values)) = &query.filter {
                request = request.filter_expression(*filter);
                for (name, value) in values {
                    request = request.expression_attribute_values(*name, value.clone());
                }
            }
            request.key_condition_expression(condition).send()
        };
        let answer = super::retrying(request).await.map_err(unavailable)?;
        let exclusive = lower.as_ref().filter(|(_, e)| *e).map(|(key, _)| key);
        let mut items = Vec::with_capacity(answer.items().len());
        for item in answer.items() {
            let key = item
                .get(&sk)
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| corrupt(&sk, "an index item without its sort key"))?;
            if Some(key) != exclusive {
                items.push((key.clone(), item.clone()));
            }
        }
        Ok((items, answer.last_evaluated_key().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_every_shard_evenly() {
        let mut counts = [0u32; SHARDS as usize];
        for i in 0..16_000 {
            counts[shard_of(&format!("call-{i}")) as usize] += 1;
        }
        // 1,000 expected per shard; FNV-1a of sequential ids stays within a few percent.
        assert!(
            counts.iter().all(|&c| (900..=1100).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(shard_of("call-1"), shard_of("call-1"));
        assert_eq!(shard_key("WORK", 7), "WORK#07");
    }

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_make() {
        let cursor = encode_cursor("work", "0001800000000000#c-1");
        assert_eq!(
            decode_cursor("work", &cursor).unwrap(),
            "0001800000000000#c-1"
        );
        for bad in [
            encode_cursor("open", "x"),
            encode_cursor("work", ""),
            encode_cursor("work", &"x".repeat(600)),
            encode_cursor("work", "a\u{1}b"),
            "not base64!".into(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
        ] {
            assert!(
                matches!(decode_cursor("work", &bad), Err(StoreError::BadCursor)),
                "{bad}"
            );
        }
    }
}
