//! The embedded state store: one SQLite file (bundled SQLite, WAL mode).
//!
//! Each record is a JSON document plus the few columns its indexes need; the pending and due
//! columns are set only while a call is pending or a job is open, and partial indexes cover
//! only those rows, so the scanner's and the timer's queries never read finished work. Writes
//! are `BEGIN IMMEDIATE` transactions that check the version, so several processes on one file
//! are as safe as several tasks in one. SQLite calls block: they run on tokio's blocking pool.
//!
//! Call writes commit in groups: each commit is an fsync of the WAL (`synchronous=FULL`), one
//! at a time, and with one per write the service waited on fsyncs, not on its CPU. A write
//! joins a queue, then takes the connection; whoever takes it first writes everything queued
//! by then in one transaction (each write in a savepoint of its own, so one's failure is its
//! own) and commits once; the others find their answer waiting. Every write is answered only
//! once its transaction is durable, as before.

use super::{
    AttentionQuery, CallRecord, CallStore, CounterDelta, DayQuery, ExportJob, Funnel, JobId, Page,
    PendingQuery, Result, StoreError,
};
use crate::ids::CallId;
use async_trait::async_trait;
use base64::Engine as _;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BACKEND: &str = "sqlite";

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: calls, jobs, counters.
    "CREATE TABLE calls (
         call_id TEXT PRIMARY KEY,
         version INTEGER NOT NULL,
         pending_group TEXT,
         pending_ended_ms INTEGER,
         record TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX calls_pending ON calls (pending_group, pending_ended_ms, call_id)
         WHERE pending_ended_ms IS NOT NULL;
     CREATE TABLE jobs (
         job_id TEXT PRIMARY KEY,
         version INTEGER NOT NULL,
         due_ms INTEGER,
         open_created_ms INTEGER,
         record TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX jobs_due ON jobs (due_ms, job_id) WHERE due_ms IS NOT NULL;
     CREATE INDEX jobs_open ON jobs (open_created_ms, job_id) WHERE open_created_ms IS NOT NULL;
     CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;",
    // 2: the work index (received, not stored), filled for rows written before it existed.
    "ALTER TABLE calls ADD COLUMN work_ms INTEGER;
     UPDATE calls SET work_ms = CAST(
             (julianday(json_extract(record, '$.flags.received')) - 2440587.5) * 86400000 AS INTEGER)
         WHERE json_extract(record, '$.flags.received') IS NOT NULL
           AND json_extract(record, '$.flags.stored') IS NULL;
     CREATE INDEX calls_work ON calls (work_ms, call_id) WHERE work_ms IS NOT NULL;",
    // 3: the attention index (lost, or stored unprocessed), by the time a call is filed under,
    // filled for rows written before it existed.
    "ALTER TABLE calls ADD COLUMN attention TEXT;
     ALTER TABLE calls ADD COLUMN attention_ms INTEGER;
     UPDATE calls SET attention = CASE
         WHEN json_extract(record, '$.status') = 'lost'
              AND json_extract(record, '$.flags.stored') IS NULL THEN 'lost'
         WHEN json_extract(record, '$.flags.stored') IS NOT NULL
              AND (json_extract(record, '$.unprocessed') IS NOT NULL
                   OR json_extract(record, '$.superseded') IS NOT NULL) THEN 'unprocessed'
         END;
     UPDATE calls SET attention_ms = CAST(round((julianday(coalesce(
             json_extract(record, '$.flags.started'), json_extract(record, '$.flags.ended'),
             json_extract(record, '$.flags.received'), json_extract(record, '$.created_at')))
             - 2440587.5) * 86400000) AS INTEGER)
         WHERE attention IS NOT NULL;
     CREATE INDEX calls_attention ON calls (attention, attention_ms, call_id)
         WHERE attention IS NOT NULL;",
    // 4: the calendar index (the UTC day a call is filed under, and its group), filled for rows
    // written before it existed.
    "ALTER TABLE calls ADD COLUMN cal_day TEXT;
     ALTER TABLE calls ADD COLUMN cal_group TEXT;
     UPDATE calls SET cal_group = json_extract(record, '$.group_id'),
         cal_day = date(coalesce(
             json_extract(record, '$.flags.started'), json_extract(record, '$.flags.ended'),
             json_extract(record, '$.flags.received'), json_extract(record, '$.created_at')))
         WHERE json_extract(record, '$.group_id') IS NOT NULL;
     CREATE INDEX calls_calendar ON calls (cal_day, cal_group, call_id)
         WHERE cal_day IS NOT NULL;",
];

/// The SQLite [`CallStore`].
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    /// Call writes waiting for the next group commit.
    queued: Arc<Mutex<Vec<QueuedWrite>>>,
    path: PathBuf,
}

/// A call record to write if its stored version is `expected`, with its counters: everything
/// computed before it queues.
struct CallWrite {
    id: String,
    version: i64,
    expected: Option<u64>,
    pending: Option<i64>,
    work: Option<i64>,
    group: Option<String>,
    attention: Option<&'static str>,
    attention_ms: Option<i64>,
    cal_day: Option<String>,
    cal_group: Option<String>,
    json: String,
    counters: CounterDelta,
}

/// Where a queued write's answer is left for it.
type Answer = Arc<Mutex<Option<Result<bool>>>>;

struct QueuedWrite {
    write: CallWrite,
    answer: Answer,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        message: e.to_string(),
    }
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        backend: BACKEND,
        key: key.to_string(),
        message: e.to_string(),
    }
}

fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs any pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Setup {
                backend: BACKEND,
                message: format!("creating {}: {e}", parent.display()),
            })?;
        }
        let setup = |e: rusqlite::Error| StoreError::Setup {
            backend: BACKEND,
            message: format!("{}: {e}", path.display()),
        };
        let mut connection = Connection::open(&path).map_err(setup)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(setup)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(setup)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(setup)?;
        migrate(&mut connection).map_err(setup)?;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
            queued: Arc::default(),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on tokio's blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction half-done (SQLite rolls
            // back an unfinished one), so a poisoned lock is still usable.
            let mut guard = connection.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(unavailable)?
    }
}

fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()
}

/// The pagination cursor: the last row's index key.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor(String, i64, String);

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).expect("a cursor serializes"))
}

fn decode_cursor(raw: &str) -> Result<Cursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| StoreError::BadCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)
}

fn parse_call(key: &str, json: &str) -> Result<CallRecord> {
    serde_json::from_str(json).map_err(|e| corrupt(key, e))
}

/// A query's rows (`limit + 1` asked for) cut to a page: the first `limit`, and the cursor of
/// the last of them when there were more.
fn cut_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    cursor: impl Fn(&T) -> Cursor,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|row| encode_cursor(&cursor(row))))
        .flatten();
    (rows, next)
}

/// A page of calls from `sql`, which selects (time in ms, call id, record) ordered by both,
/// `limit + 1` rows; the cursor of the next page carries `tag` and the last row's key.
fn calls_page(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    limit: i64,
    tag: &str,
) -> Result<Page<CallRecord>> {
    let mut statement = c.prepare_cached(sql).map_err(unavailable)?;
    let mut rows = statement.query(params).map_err(unavailable)?;
    let mut found: Vec<(i64, String, String)> = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        found.push((
            row.get(0).map_err(unavailable)?,
            row.get(1).map_err(unavailable)?,
            row.get(2).map_err(unavailable)?,
        ));
    }
    let (found, next) = cut_page(found, limit, |(ms, id, _)| {
        Cursor(tag.into(), *ms, id.clone())
    });
    let items = found
        .iter()
        .map(|(_, id, json)| parse_call(id, json))
        .collect::<Result<Vec<_>>>()?;
    Ok(Page { items, next })
}

/// The version a compare-and-swap expects to find (`sql` selects it by id), inside `tx`.
fn stored_version(tx: &Connection, sql: &str, id: &str) -> Result<Option<u64>> {
    let version: Option<i64> = tx
        .query_row(sql, params![id], |row| row.get(0))
        .optional()
        .map_err(unavailable)?;
    Ok(version.map(|v| v as u64))
}

/// Jobs from rows of (job_id, record).
fn jobs_from(mut rows: rusqlite::Rows<'_>) -> Result<Vec<ExportJob>> {
    let mut jobs = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        let id: String = row.get(0).map_err(unavailable)?;
        let json: String = row.get(1).map_err(unavailable)?;
        jobs.push(parse_job(&id, &json)?);
    }
    Ok(jobs)
}

fn parse_job(key: &str, json: &str) -> Result<ExportJob> {
    serde_json::from_str(json).map_err(|e| corrupt(key, e))
}

/// Writes `group` in one transaction, each write in a savepoint of its own, and commits once;
/// leaves each write's answer in its slot (an error for all when the commit fails: none of them
/// is durable).
fn commit_group(connection: &mut Connection, group: Vec<QueuedWrite>) {
    let answers = match write_group(connection, &group) {
        Ok(answers) => answers,
        Err(e) => group.iter().map(|_| Err(unavailable(&e))).collect(),
    };
    for (queued, answer) in group.iter().zip(answers) {
        *queued.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
    }
}

fn write_group(connection: &mut Connection, group: &[QueuedWrite]) -> Result<Vec<Result<bool>>> {
    let mut tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let mut answers = Vec::with_capacity(group.len());
    for queued in group {
        let mut savepoint = tx.savepoint().map_err(unavailable)?;
        let answer = write_call(&savepoint, &queued.write);
        match answer {
            Ok(true) => savepoint.commit().map_err(unavailable)?,
            // Nothing written (a version mismatch) or a failure: undone, the others kept.
            _ => savepoint.rollback().map_err(unavailable)?,
        }
        answers.push(answer);
    }
    tx.commit().map_err(unavailable)?;
    Ok(answers)
}

/// One call write inside a transaction: false when the stored version is not the expected one.
fn write_call(tx: &Connection, w: &CallWrite) -> Result<bool> {
    if stored_version(tx, "SELECT version FROM calls WHERE call_id = ?1", &w.id)? != w.expected {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO calls (call_id, version, pending_group, pending_ended_ms, work_ms,
             attention, attention_ms, cal_day, cal_group, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (call_id) DO UPDATE SET version = excluded.version,
             pending_group = excluded.pending_group,
             pending_ended_ms = excluded.pending_ended_ms, work_ms = excluded.work_ms,
             attention = excluded.attention, attention_ms = excluded.attention_ms,
             cal_day = excluded.cal_day, cal_group = excluded.cal_group,
             record = excluded.record",
        params![
            w.id,
            w.version,
            w.group,
            w.pending,
            w.work,
            w.attention,
            w.attention_ms,
            w.cal_day,
            w.cal_group,
            w.json
        ],
    )
    .map_err(unavailable)?;
    for (name, delta) in &w.counters.0 {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            params![name, delta],
        )
        .map_err(unavailable)?;
    }
    Ok(true)
}

#[async_trait]
impl CallStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, call_id: &CallId) -> Result<Option<CallRecord>> {
        let id = call_id.to_string();
        self.with(move |c| {
            let json: Option<String> = c
                .query_row(
                    "SELECT record FROM calls WHERE call_id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            json.map(|j| parse_call(&id, &j)).transpose()
        })
        .await
    }

    async fn put_if(
        &self,
        record: &CallRecord,
        expected: Option<u64>,
        counters: &CounterDelta,
    ) -> Result<bool> {
        let json =
            serde_json::to_string(record).map_err(|e| corrupt(record.call_id.as_str(), e))?;
        let id = record.call_id.to_string();
        let version = record.version as i64;
        let pending = record.pending_since().map(millis);
        let work = record.work_since().map(millis);
        let group = pending.map(|_| record.cdr.group_id.clone().unwrap_or_default());
        let attention = record.attention();
        let attention_ms = attention.map(|(_, at)| millis(at));
        let attention = attention.map(|(kind, _)| kind.name());
        let (cal_day, cal_group) = record
            .calendar()
            .map(|(day, group)| (day.to_string(), group.to_string()))
            .unzip();
        let write = CallWrite {
            id,
            version,
            expected,
            pending,
            work,
            group,
            attention,
            attention_ms,
            cal_day,
            cal_group,
            json,
            counters: counters.clone(),
        };
        let answer = Answer::default();
        let (connection, queued) = (Arc::clone(&self.connection), Arc::clone(&self.queued));
        let mine = Arc::clone(&answer);
        tokio::task::spawn_blocking(move || {
            queued
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(QueuedWrite {
                    write,
                    answer: Arc::clone(&mine),
                });
            let mut guard = connection.lock().unwrap_or_else(|p| p.into_inner());
            // Written by the group commit that held the connection before us?
            if let Some(result) = mine.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return result;
            }
            let group = std::mem::take(&mut *queued.lock().unwrap_or_else(|p| p.into_inner()));
            commit_group(&mut guard, group);
            mine.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| Err(unavailable("a queued write was left unanswered")))
        })
        .await
        .map_err(unavailable)?
    }

    async fn pending(&self, query: &PendingQuery) -> Result<Page<CallRecord>> {
        let limit = query.limit.clamp(1, 1000) as i64;
        let from = query.ended_from.map_or(i64::MIN, millis);
        let before = millis(query.ended_before);
        let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let group = query.group_id.clone();
        if let (Some(g), Some(c)) = (&group, &cursor)
            && *g != c.0
        {
            return Err(StoreError::BadCursor);
        }
        self.with(move |c| {
            let (after_group, after_ms, after_id) = match &cursor {
                Some(Cursor(g, ms, id)) => (g.clone(), *ms, id.clone()),
                None => (String::new(), i64::MIN, String::new()),
            };
            let first = cursor.is_none();
            let mut rows: Vec<(String, i64, String, String)> = Vec::new();
            let mut collect = |row: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
                rows.push((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?));
                Ok(())
            };
            match &group {
                Some(g) => {
                    let mut statement = c
                        .prepare_cached(
                            "SELECT pending_group, pending_ended_ms, call_id, record FROM calls
                             WHERE pending_ended_ms IS NOT NULL AND pending_group = ?1
                               AND pending_ended_ms >= ?2 AND pending_ended_ms < ?3
                               AND (?4 OR (pending_ended_ms, call_id) > (?5, ?6))
                             ORDER BY pending_ended_ms, call_id LIMIT ?7",
                        )
                        .map_err(unavailable)?;
                    let mut q = statement
                        .query(params![
                            g,
                            from,
                            before,
                            first,
                            after_ms,
                            after_id,
                            limit + 1
                        ])
                        .map_err(unavailable)?;
                    while let Some(row) = q.next().map_err(unavailable)? {
                        collect(row).map_err(unavailable)?;
                    }
                }
                None => {
                    let mut statement = c
                        .prepare_cached(
                            "SELECT pending_group, pending_ended_ms, call_id, record FROM calls
                             WHERE pending_ended_ms IS NOT NULL
                               AND pending_ended_ms >= ?1 AND pending_ended_ms < ?2
                               AND (?3 OR (pending_group, pending_ended_ms, call_id) > (?4, ?5, ?6))
                             ORDER BY pending_group, pending_ended_ms, call_id LIMIT ?7",
                        )
                        .map_err(unavailable)?;
                    let mut q = statement
                        .query(params![
                            from,
                            before,
                            first,
                            after_group,
                            after_ms,
                            after_id,
                            limit + 1
                        ])
                        .map_err(unavailable)?;
                    while let Some(row) = q.next().map_err(unavailable)? {
                        collect(row).map_err(unavailable)?;
                    }
                }
            }
            let (rows, next) = cut_page(rows, limit, |(g, ms, id, _)| {
                Cursor(g.clone(), *ms, id.clone())
            });
            let items = rows
                .iter()
                .map(|(_, _, id, json)| parse_call(id, json))
                .collect::<Result<Vec<_>>>()?;
            Ok(Page { items, next })
        })
        .await
    }

    async fn unfinished(&self, limit: u32, cursor: Option<&str>) -> Result<Page<CallRecord>> {
        let limit = limit.clamp(1, 1000) as i64;
        let after = cursor.map(decode_cursor).transpose()?;
        self.with(move |c| {
            let (after_ms, after_id) =
                after.map_or((i64::MIN, String::new()), |Cursor(_, ms, id)| (ms, id));
            calls_page(
                c,
                "SELECT work_ms, call_id, record FROM calls
                 WHERE work_ms IS NOT NULL AND (work_ms, call_id) > (?1, ?2)
                 ORDER BY work_ms, call_id LIMIT ?3",
                params![after_ms, after_id, limit + 1],
                limit,
                "",
            )
        })
        .await
    }

    async fn attention(&self, query: &AttentionQuery) -> Result<Page<CallRecord>> {
        let limit = query.limit.clamp(1, 1000) as i64;
        let kind = query.kind.name();
        let from = query.filed_from.map_or(i64::MIN, millis);
        let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        if after.as_ref().is_some_and(|c| c.0 != kind) {
            return Err(StoreError::BadCursor);
        }
        self.with(move |c| {
            let (after_ms, after_id) =
                after.map_or((i64::MIN, String::new()), |Cursor(_, ms, id)| (ms, id));
            calls_page(
                c,
                "SELECT attention_ms, call_id, record FROM calls
                 WHERE attention = ?1 AND attention_ms >= ?2
                   AND (attention_ms, call_id) > (?3, ?4)
                 ORDER BY attention_ms, call_id LIMIT ?5",
                params![kind, from, after_ms, after_id, limit + 1],
                limit,
                kind,
            )
        })
        .await
    }

    async fn calls_of_day(&self, query: &DayQuery) -> Result<Page<CallId>> {
        let limit = query.limit.clamp(1, 1000) as i64;
        let day = query.day.to_string();
        let group = query.group_id.clone();
        let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        if let (Some(g), Some(c)) = (&group, &after)
            && *g != c.0
        {
            return Err(StoreError::BadCursor);
        }
        self.with(move |c| {
            let (after_group, after_id) =
                after.map_or((String::new(), String::new()), |Cursor(g, _, id)| (g, id));
            let mut statement = c
                .prepare_cached(
                    "SELECT cal_group, call_id FROM calls
                     WHERE cal_day = ?1 AND (?2 IS NULL OR cal_group = ?2)
                       AND (cal_group, call_id) > (?3, ?4)
                     ORDER BY cal_group, call_id LIMIT ?5",
                )
                .map_err(unavailable)?;
            let mut rows = statement
                .query(params![day, group, after_group, after_id, limit + 1])
                .map_err(unavailable)?;
            let mut found: Vec<(String, String)> = Vec::new();
            while let Some(row) = rows.next().map_err(unavailable)? {
                found.push((
                    row.get(0).map_err(unavailable)?,
                    row.get(1).map_err(unavailable)?,
                ));
            }
            let (found, next) = cut_page(found, limit, |(g, id)| Cursor(g.clone(), 0, id.clone()));
            let items = found
                .into_iter()
                .map(|(_, id)| CallId::parse(&id).map_err(|e| corrupt(&id, e)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Page { items, next })
        })
        .await
    }

    async fn funnel(&self) -> Result<Funnel> {
        self.with(|c| {
            let mut statement = c
                .prepare_cached("SELECT name, value FROM counters")
                .map_err(unavailable)?;
            let mut funnel = Funnel::default();
            let mut rows = statement.query([]).map_err(unavailable)?;
            while let Some(row) = rows.next().map_err(unavailable)? {
                let name: String = row.get(0).map_err(unavailable)?;
                let value: i64 = row.get(1).map_err(unavailable)?;
                funnel.set(&name, value);
            }
            Ok(funnel)
        })
        .await
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<ExportJob>> {
        let id = id.to_string();
        self.with(move |c| {
            let json: Option<String> = c
                .query_row(
                    "SELECT record FROM jobs WHERE job_id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            json.map(|j| parse_job(&id, &j)).transpose()
        })
        .await
    }

    async fn put_job_if(&self, job: &ExportJob, expected: Option<u64>) -> Result<bool> {
        let json = serde_json::to_string(job).map_err(|e| corrupt(job.id.as_str(), e))?;
        let id = job.id.to_string();
        let version = job.version as i64;
        let due = job.due_at().map(millis);
        let open = job.state.is_open().then(|| millis(job.created_at));
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            if stored_version(&tx, "SELECT version FROM jobs WHERE job_id = ?1", &id)? != expected {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO jobs (job_id, version, due_ms, open_created_ms, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (job_id) DO UPDATE SET version = excluded.version,
                     due_ms = excluded.due_ms, open_created_ms = excluded.open_created_ms,
                     record = excluded.record",
                params![id, version, due, open, json],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<ExportJob>> {
        let now = millis(now);
        let limit = limit.clamp(1, 1000) as i64;
        self.with(move |c| {
            let mut statement = c
                .prepare_cached(
                    "SELECT job_id, record FROM jobs WHERE due_ms IS NOT NULL AND due_ms <= ?1
                     ORDER BY due_ms, job_id LIMIT ?2",
                )
                .map_err(unavailable)?;
            let rows = statement.query(params![now, limit]).map_err(unavailable)?;
            jobs_from(rows)
        })
        .await
    }

    async fn open_jobs(&self, limit: u32, cursor: Option<&str>) -> Result<Page<ExportJob>> {
        let limit = limit.clamp(1, 1000);
        // Keyset paging: the cursor is the last row's (open_created_ms, job_id).
        let after = match cursor {
            None => (i64::MIN, String::new()),
            Some(c) => c
                .split_once(':')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
                .ok_or(StoreError::BadCursor)?,
        };
        let (jobs, last) = self
            .with(move |c| {
                let mut statement = c
                    .prepare_cached(
                        "SELECT job_id, record, open_created_ms FROM jobs
                         WHERE open_created_ms IS NOT NULL AND (open_created_ms, job_id) > (?1, ?2)
                         ORDER BY open_created_ms, job_id LIMIT ?3",
                    )
                    .map_err(unavailable)?;
                let mut rows = statement
                    .query(params![after.0, after.1, limit as i64])
                    .map_err(unavailable)?;
                let mut jobs = Vec::new();
                let mut last = None;
                while let Some(row) = rows.next().map_err(unavailable)? {
                    let id: String = row.get(0).map_err(unavailable)?;
                    let json: String = row.get(1).map_err(unavailable)?;
                    let ms: i64 = row.get(2).map_err(unavailable)?;
                    jobs.push(parse_job(&id, &json)?);
                    last = Some(format!("{ms}:{id}"));
                }
                Ok((jobs, last))
            })
            .await?;
        let next = if jobs.len() as u32 == limit {
            last
        } else {
            None
        };
        Ok(Page { items: jobs, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_of(id: &str, expected: Option<u64>) -> QueuedWrite {
        let mut record = CallRecord::new(CallId::parse(id).unwrap(), Timestamp::UNIX_EPOCH);
        record.version = expected.map_or(1, |v| v + 1);
        QueuedWrite {
            write: CallWrite {
                id: id.to_string(),
                version: record.version as i64,
                expected,
                pending: None,
                work: None,
                group: None,
                attention: None,
                attention_ms: None,
                cal_day: None,
                cal_group: None,
                json: serde_json::to_string(&record).unwrap(),
                counters: CounterDelta(vec![("calls", 1)]),
            },
            answer: Answer::default(),
        }
    }

    /// One write of a group that fails (a trigger refuses it) or finds another version is
    /// undone alone: the others of its transaction are written and counted.
    #[test]
    fn a_group_commit_keeps_the_writes_that_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("group.db")).unwrap();
        let mut connection = store.connection.lock().unwrap();
        connection
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON calls WHEN NEW.call_id = 'bad-1'
                 BEGIN SELECT RAISE(ABORT, 'injected'); END;",
            )
            .unwrap();
        let group = vec![
            write_of("good-1", None),
            write_of("bad-1", None),
            write_of("stale-1", Some(3)),
            write_of("good-2", None),
        ];
        let answers: Vec<_> = group.iter().map(|q| Arc::clone(&q.answer)).collect();
        commit_group(&mut connection, group);
        let answers: Vec<_> = answers
            .iter()
            .map(|a| a.lock().unwrap().take().unwrap())
            .collect();
        assert!(matches!(answers[0], Ok(true)), "{answers:?}");
        assert!(matches!(answers[1], Err(StoreError::Unavailable { .. })));
        assert!(matches!(answers[2], Ok(false)));
        assert!(matches!(answers[3], Ok(true)));
        let ids: Vec<String> = connection
            .prepare("SELECT call_id FROM calls ORDER BY call_id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, ["good-1", "good-2"]);
        let counted: i64 = connection
            .query_row("SELECT value FROM counters WHERE name = 'calls'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(counted, 2);
    }

    /// Many writers at once, several on each call, each retrying its compare-and-swap: every
    /// write lands exactly once, whatever groups they were committed in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_commit_in_groups_and_keep_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("race.db")).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..160 {
            let store = store.clone();
            tasks.spawn(async move {
                let id = CallId::parse(&format!("race-{}", writer % 40)).unwrap();
                let mut lost = 0;
                loop {
                    let current = store.get(&id).await.unwrap();
                    let expected = current.as_ref().map(|r| r.version);
                    let mut record = current
                        .unwrap_or_else(|| CallRecord::new(id.clone(), Timestamp::UNIX_EPOCH));
                    record.version = expected.map_or(1, |v| v + 1);
                    let counters = CounterDelta(vec![("writes", 1)]);
                    if store.put_if(&record, expected, &counters).await.unwrap() {
                        return lost;
                    }
                    lost += 1;
                }
            });
        }
        let mut retries = 0;
        while let Some(lost) = tasks.join_next().await {
            retries += lost.unwrap();
        }
        for call in 0..40 {
            let id = CallId::parse(&format!("race-{call}")).unwrap();
            assert_eq!(store.get(&id).await.unwrap().unwrap().version, 4, "{id}");
        }
        let connection = store.connection.lock().unwrap();
        let writes: i64 = connection
            .query_row(
                "SELECT value FROM counters WHERE name = 'writes'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(writes, 160, "after {retries} lost races");
        assert!(store.queued.lock().unwrap().is_empty());
    }

    /// The scanner's and the timer's queries read their partial indexes, not the table.
    #[test]
    fn queries_use_the_partial_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("plan.db")).unwrap();
        let connection = store.connection.lock().unwrap();
        let plan = |sql: &str| -> String {
            let mut statement = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = statement
                .query_map([], |row| row.get::<_, String>(3))
                .unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let pending = plan(
            "SELECT record FROM calls WHERE pending_ended_ms IS NOT NULL AND pending_group = 'g'
             AND pending_ended_ms >= 0 AND pending_ended_ms < 10 ORDER BY pending_ended_ms, call_id",
        );
        assert!(pending.contains("calls_pending"), "{pending}");
        assert!(
            !pending.contains("TEMP B-TREE"),
            "sorted by the index: {pending}"
        );
        let due = plan(
            "SELECT record FROM jobs WHERE due_ms IS NOT NULL AND due_ms <= 10 ORDER BY due_ms, job_id",
        );
        assert!(due.contains("jobs_due"), "{due}");
        assert!(!due.contains("TEMP B-TREE"), "{due}");
    }
}
