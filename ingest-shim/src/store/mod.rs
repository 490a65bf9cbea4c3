//! The call state store: per-call flags and export-job records.
//!
//! [`CallStore`] is deliberately small: read a record, write it **if its version is still the
//! one read** (compare-and-swap), and two indexed queries. Everything a flag means lives in
//! [`record`] and [`jobs`], written once and shared by every backend; the provided methods
//! ([`CallStore::update`], [`CallStore::take_lease`], …) retry the compare-and-swap, so concurrent
//! writers never lose each other's updates.
//!
//! Backends: [`sqlite::SqliteStore`] (the embedded default) and [`dynamo::DynamoStore`]
//! (production). `ingest-shim/tests/call_store.rs` runs one conformance suite against both.

pub mod dynamo;
pub mod jobs;
pub mod record;
pub mod sqlite;

pub use jobs::{ExportJob, JobId, JobState, LeaseError};
pub use record::{
    Applied, Attention, AuditMark, CallChange, CallRecord, CallStatus, CdrFacts, Flag, Flags,
    Outcome, ProcessedFacts, Route, StagedAudio, StoredObject, Via,
};

use crate::ids::CallId;
use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused (after retries).
    #[error("{backend} is unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
    /// Stored data could not be read back (a bug or tampering: never silently skipped).
    #[error("corrupt record {key} in {backend}: {message}")]
    Corrupt {
        backend: &'static str,
        key: String,
        message: String,
    },
    /// A pagination cursor that this store did not hand out.
    #[error("invalid cursor")]
    BadCursor,
    /// Too many writers raced on one record for too long.
    #[error("gave up after {attempts} contended writes to {key}")]
    Contended { key: String, attempts: u32 },
    /// Setting the store up (schema, table) failed.
    #[error("{backend} setup failed: {message}")]
    Setup {
        backend: &'static str,
        message: String,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Counter deltas that go with a write, applied in the same transaction: the funnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterDelta(pub Vec<(&'static str, i64)>);

impl CounterDelta {
    /// What changed between `before` (None: a new record) and `after`.
    pub fn between(before: Option<&CallRecord>, after: &CallRecord) -> Self {
        let mut deltas = Vec::new();
        if before.is_none() {
            deltas.push(("calls", 1));
        }
        for flag in Flag::ALL {
            let was = before.is_some_and(|b| b.flags.get(flag).is_some());
            if !was && after.flags.get(flag).is_some() {
                deltas.push((flag.name(), 1));
            }
        }
        let was_unprocessed = before.is_some_and(|b| b.unprocessed.is_some());
        match (was_unprocessed, after.unprocessed.is_some()) {
            (false, true) => deltas.push(("unprocessed", 1)),
            (true, false) => deltas.push(("unprocessed", -1)),
            _ => {}
        }
        let old_status = before.map_or(CallStatus::Pending, |b| b.status);
        if before.is_none() || old_status != after.status {
            if before.is_some() {
                deltas.push((old_status.name(), -1));
            }
            deltas.push((after.status.name(), 1));
        }
        CounterDelta(deltas)
    }
}

/// Counts of calls per flag and per status: where calls are in their life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Funnel {
    pub calls: u64,
    pub started: u64,
    pub ended: u64,
    pub received: u64,
    pub processed: u64,
    pub stored: u64,
    pub pending: u64,
    pub complete: u64,
    pub conflict: u64,
    pub lost: u64,
    /// Stored as they arrived: the engine could not process them (`unprocessed/` keys).
    pub unprocessed: u64,
}

impl Funnel {
    /// The five flags, in the order of a call's life.
    pub fn flags(&self) -> [(&'static str, u64); 5] {
        [
            ("started", self.started),
            ("ended", self.ended),
            ("received", self.received),
            ("processed", self.processed),
            ("stored", self.stored),
        ]
    }

    /// The terminal statuses (and pending).
    pub fn statuses(&self) -> [(&'static str, u64); 4] {
        [
            ("pending", self.pending),
            ("complete", self.complete),
            ("conflict", self.conflict),
            ("lost", self.lost),
        ]
    }

    /// Sets the counter called `name` (unknown names are ignored: a newer version may count
    /// more).
    pub fn set(&mut self, name: &str, value: i64) {
        let value = value.max(0) as u64;
        match name {
            "calls" => self.calls = value,
            "started" => self.started = value,
            "ended" => self.ended = value,
            "received" => self.received = value,
            "processed" => self.processed = value,
            "stored" => self.stored = value,
            "pending" => self.pending = value,
            "complete" => self.complete = value,
            "conflict" => self.conflict = value,
            "lost" => self.lost = value,
            "unprocessed" => self.unprocessed = value,
            _ => {}
        }
    }
}

/// The reconciliation scanner's question: calls that ended in `[ended_from, ended_before)` and
/// are not stored (nor given up on), oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingQuery {
    /// Only this OCP group; `None`: every group (ordered by group, then End time).
    pub group_id: Option<String>,
    pub ended_from: Option<Timestamp>,
    pub ended_before: Timestamp,
    /// Page size (1–1000).
    pub limit: u32,
    /// From a previous page's [`Page::next`].
    pub cursor: Option<String>,
}

/// Calls that wait for a person, of one kind, filed at or after `filed_from`, oldest first:
/// what `callrec redrive --lost` / `--unprocessed` read (the sparse attention index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionQuery {
    pub kind: Attention,
    pub filed_from: Option<Timestamp>,
    /// Page size (1–1000).
    pub limit: u32,
    /// From a previous page's [`Page::next`].
    pub cursor: Option<String>,
}

/// The calls filed under one UTC day (their Start, else End, else arrival) whose OCP group is
/// known — of one group, or of every group — ordered by group and call id: what the daily audit
/// and the day's manifests read (the calendar index). Ids only: a reader gets the records it
/// needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayQuery {
    pub day: jiff::civil::Date,
    pub group_id: Option<String>,
    /// Page size (1–1000).
    pub limit: u32,
    /// From a previous page's [`Page::next`].
    pub cursor: Option<String>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// How often a contended compare-and-swap is retried before giving up.
const MAX_CAS_ATTEMPTS: u32 = 64;

/// A call state store. Implementations provide the versioned reads, compare-and-swap writes and
/// indexed queries; the semantics are the provided methods'.
#[async_trait]
pub trait CallStore: Send + Sync + 'static {
    /// "sqlite", "dynamodb": for logs and errors.
    fn backend(&self) -> &'static str;

    /// One call, with its version.
    async fn get(&self, call_id: &CallId) -> Result<Option<CallRecord>>;

    /// Writes `record` (whose `version` is already the new one) only if the stored version is
    /// `expected` (`None`: only if absent), applying `counters` in the same transaction. `false`
    /// when another writer got there first.
    async fn put_if(
        &self,
        record: &CallRecord,
        expected: Option<u64>,
        counters: &CounterDelta,
    ) -> Result<bool>;

    /// See [`PendingQuery`].
    async fn pending(&self, query: &PendingQuery) -> Result<Page<CallRecord>>;

    /// Calls received and not yet stored, oldest first: the work a service resumes at start.
    /// `limit` 1–1000; `cursor` from the previous page.
    async fn unfinished(&self, limit: u32, cursor: Option<&str>) -> Result<Page<CallRecord>>;

    /// See [`AttentionQuery`].
    async fn attention(&self, query: &AttentionQuery) -> Result<Page<CallRecord>>;

    /// See [`DayQuery`].
    async fn calls_of_day(&self, query: &DayQuery) -> Result<Page<CallId>>;

    /// The counters.
    async fn funnel(&self) -> Result<Funnel>;

    /// One export job.
    async fn get_job(&self, id: &JobId) -> Result<Option<ExportJob>>;

    /// Compare-and-swap of a job, as [`CallStore::put_if`].
    async fn put_job_if(&self, job: &ExportJob, expected: Option<u64>) -> Result<bool>;

    /// Active jobs whose `next_poll_at` is at or before `now`, earliest first.
    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<ExportJob>>;

    /// Jobs not yet finished (done, failed, expired), oldest first, a page of `limit` (1–1000)
    /// at a time; `cursor` from the previous page. See [`open_jobs_paged`].
    async fn open_jobs(&self, limit: u32, cursor: Option<&str>) -> Result<Page<ExportJob>>;

    /// Applies `change` to the call (creating its record if needed), retrying on contention.
    /// Returns the record as stored afterwards and what the change did.
    async fn update(
        &self,
        call_id: &CallId,
        change: &CallChange,
        now: Timestamp,
    ) -> Result<(CallRecord, Applied)> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.get(call_id).await?;
            let mut record = current
                .clone()
                .unwrap_or_else(|| CallRecord::new(call_id.clone(), now));
            let applied = record.apply(change, now);
            let write = matches!(applied.outcome, Outcome::Changed | Outcome::Conflict);
            if !write {
                return Ok((current.unwrap_or(record), applied));
            }
            let expected = current.as_ref().map(|r| r.version);
            record.version = expected.map_or(1, |v| v + 1);
            // Never a record too large to write (every later write of the call would fail).
            if record.fit(record::MAX_RECORD_BYTES) {
                tracing::warn!(call_id = %call_id, "call record at its size limit: facts left out (facts_truncated)");
            }
            let counters = CounterDelta::between(current.as_ref(), &record);
            if self.put_if(&record, expected, &counters).await? {
                return Ok((record, applied));
            }
            tokio::task::yield_now().await;
        }
        Err(StoreError::Contended {
            key: call_id.to_string(),
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// Records `job` unless a job with its id exists. True if it was created now (the id is the
    /// idempotency key: creating twice is harmless).
    async fn create_job(&self, job: &ExportJob) -> Result<bool> {
        let mut job = job.clone();
        job.version = 1;
        self.put_job_if(&job, None).await
    }

    /// Takes the lease of job `id` for `owner` (see [`ExportJob::take_lease`]): free, or held
    /// by a token the caller saw unchanged for the holder's whole lease (`stale_token`).
    /// Returns the leased job; its `fence` is the one every write under the lease must carry.
    async fn take_lease(
        &self,
        id: &JobId,
        owner: &str,
        now: Timestamp,
        ttl: jiff::SignedDuration,
        stale_token: Option<u64>,
    ) -> Result<Result<ExportJob, LeaseError>> {
        modify_job(self, id, now, &|job: &mut ExportJob| {
            job.take_lease(owner, now, ttl, stale_token).map(|_| ())
        })
        .await
    }

    /// Gives the lease back (only its holder, with its fence, can).
    async fn release_lease(
        &self,
        id: &JobId,
        owner: &str,
        fence: u64,
        now: Timestamp,
    ) -> Result<Result<ExportJob, LeaseError>> {
        modify_job(self, id, now, &|job: &mut ExportJob| {
            job.release(owner, fence)
        })
        .await
    }
}

/// Every item of a cursor-paged query, read one page at a time: `page(cursor)` fetches the
/// page after `cursor` (`None`: the first).
fn paged<'a, T, F, Fut>(page: F) -> futures_util::stream::BoxStream<'a, Result<T>>
where
    T: Send + 'a,
    F: Fn(Option<String>) -> Fut + Send + 'a,
    Fut: std::future::Future<Output = Result<Page<T>>> + Send + 'a,
{
    use futures_util::{StreamExt as _, TryStreamExt as _};
    futures_util::stream::try_unfold((page, Some(None)), |(page, cursor)| async move {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        let got = page(cursor).await?;
        let items = futures_util::stream::iter(got.items.into_iter().map(Ok));
        Ok(Some((items, (page, got.next.map(Some)))))
    })
    .try_flatten()
    .boxed()
}

/// Every call received and not yet stored, oldest first: the one pager over unfinished work
/// (resume at start, stale take-over).
pub fn unfinished_calls(
    store: &dyn CallStore,
) -> futures_util::stream::BoxStream<'_, Result<CallRecord>> {
    paged(move |cursor| async move { store.unfinished(200, cursor.as_deref()).await })
}

/// Every call waiting for a person of `kind`, filed at or after `since`, oldest first, read page
/// by page (the attention index: see [`AttentionQuery`]).
pub fn attention_calls(
    store: &dyn CallStore,
    kind: Attention,
    since: Option<Timestamp>,
) -> futures_util::stream::BoxStream<'_, Result<CallRecord>> {
    paged(move |cursor| async move {
        store
            .attention(&AttentionQuery {
                kind,
                filed_from: since,
                limit: 500,
                cursor,
            })
            .await
    })
}

/// Every open export job, oldest first, read page by page (never all at once).
pub fn open_jobs_paged(
    store: &dyn CallStore,
) -> futures_util::stream::BoxStream<'_, Result<ExportJob>> {
    paged(move |cursor| async move { store.open_jobs(500, cursor.as_deref()).await })
}

/// The first open job `matching` says yes to, reading page by page and stopping there.
pub async fn first_open_job(
    store: &dyn CallStore,
    matching: &(dyn Fn(&ExportJob) -> bool + Send + Sync),
) -> Result<Option<ExportJob>> {
    use futures_util::TryStreamExt as _;
    let mut jobs = open_jobs_paged(store);
    while let Some(job) = jobs.try_next().await? {
        if matching(&job) {
            return Ok(Some(job));
        }
    }
    Ok(None)
}

/// How many open jobs `matching` says yes to (read page by page).
pub async fn count_open_jobs(
    store: &dyn CallStore,
    matching: &(dyn Fn(&ExportJob) -> bool + Send + Sync),
) -> Result<usize> {
    use futures_util::TryStreamExt as _;
    open_jobs_paged(store)
        .try_fold(0, |n, job| {
            let add = usize::from(matching(&job));
            async move { Ok(n + add) }
        })
        .await
}

/// Applies `f` to job `id` under compare-and-swap, retrying on contention. `f` decides from the
/// current job; an `Err` from it is returned without writing, and a job `f` leaves as it was is
/// not written.
pub async fn modify_job<S: CallStore + ?Sized>(
    store: &S,
    id: &JobId,
    now: Timestamp,
    f: &(dyn Fn(&mut ExportJob) -> Result<(), LeaseError> + Send + Sync),
) -> Result<Result<ExportJob, LeaseError>> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(current) = store.get_job(id).await? else {
            return Ok(Err(LeaseError::NoSuchJob));
        };
        let mut job = current.clone();
        if let Err(e) = f(&mut job) {
            return Ok(Err(e));
        }
        if job == current {
            return Ok(Ok(current));
        }
        job.version = current.version + 1;
        job.updated_at = now;
        if store.put_job_if(&job, Some(current.version)).await? {
            return Ok(Ok(job));
        }
        tokio::task::yield_now().await;
    }
    Err(StoreError::Contended {
        key: id.to_string(),
        attempts: MAX_CAS_ATTEMPTS,
    })
}
