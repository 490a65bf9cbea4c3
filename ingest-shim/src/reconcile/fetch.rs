//! Fetching a completed export: first the metadata task (OCP's `dialog_start` / `dialog_end`
//! records fill in the Start/End events that never arrived, so a call has its facts before its
//! recording goes through the pipeline), then the download task (each recording of a call not
//! yet stored goes through [`crate::intake`], exactly as an upload does), with bounded
//! concurrency.
//!
//! Faults stay where they belong:
//! - one bad or missing file fails *that file* — its call is charged with the reason, the rest
//!   of the export goes on;
//! - a file that OCP could not serve now (unavailable, a stalled transfer stopped by the idle
//!   timeout) is tried again a few times, then *deferred*: the other files go on, and the job
//!   waits and fetches again (files already stored are skipped), charging nothing;
//! - the export's data expiring, refused credentials, or a local disk error stop the step;
//! - the job's deadline is checked between files;
//! - the listing is paged with a page limit and repeated-token detection.

use super::{Context, WorkError};
use crate::ids::CallId;
use crate::intake::{Digesting, Spool, Spooled, receive, run_pipeline};
use crate::ocp::{DataType, ExportFile, OcpError};
use crate::pipeline::{Ending, Finished};
use crate::store::{ExportJob, Outcome};
use futures_util::StreamExt as _;
use jiff::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};

/// Largest CDR batch file of an export read, bytes (a day of a busy group's records).
pub const MAX_CDR_FILE_BYTES: u64 = 1 << 30;
/// Most pages of one export's listing: a listing that goes on is an error, not a loop.
const MAX_PAGES: usize = 100_000;
/// Tries per file when OCP could not serve it now (the client retried each request already).
const FILE_TRIES: u32 = 3;

/// What fetching an export did.
#[derive(Debug, Default)]
pub struct FetchReport {
    pub stored: u64,
    pub already: u64,
    pub failed: u64,
    pub cdrs_filled: u64,
    /// Why a call's file was not taken: finalize writes it on the call with the attempt it
    /// counts (one attempt per export round, whatever went wrong).
    pub reasons: HashMap<CallId, String>,
    /// The deadline passed between files: the fetch stopped.
    pub out_of_time: bool,
    /// Files OCP could not serve now, and the last such error: the job fetches again later.
    pub deferred: u64,
    pub deferred_error: Option<OcpError>,
    /// An audit's export: every dialog its CDR records name.
    pub reported: HashSet<CallId>,
    /// CDR records that could not be read (not JSON, not an OCP record, too long).
    pub unreadable: u64,
}

/// What became of one file.
enum FileOutcome {
    /// A recording: the `callrec_export_files_total` outcome label, and the call and why it was
    /// not stored.
    Done(&'static str, Option<(CallId, String)>),
    /// A CDR batch: how many records filled something in; for an audit, the dialogs named;
    /// how many records could not be read.
    Cdr {
        filled: u64,
        reported: Vec<CallId>,
        unreadable: u64,
    },
    /// OCP could not serve it now.
    Deferred(OcpError),
    /// The deadline passed before it was started.
    OutOfTime,
}

/// The metadata task, then the download task. `Err`: the step stopped (expiry, credentials, the
/// store, local I/O).
pub async fn fetch(ctx: &Context, job: &ExportJob, export: &str) -> Result<FetchReport, WorkError> {
    let started = std::time::Instant::now();
    let report = Mutex::new(FetchReport::default());
    let cdr = |file: &ExportFile| file.data_type().is_some_and(DataType::is_cdr);
    each_file(ctx, job, export, cdr, &report, |file| {
        apply_cdr_file(ctx, job, export, file)
    })
    .await?;
    let filled = lock(&report).cdrs_filled;
    tracing::info!(job = %job.id, export, filled, seconds = started.elapsed().as_secs_f64(), "export CDR records applied");
    if job.purpose == "audit" {
        // A CDR-only export: its calls' recordings come through recovery jobs.
        return Ok(report.into_inner().unwrap_or_else(|e| e.into_inner()));
    }
    let audio = |file: &ExportFile| file.data_type() == Some(DataType::Audio);
    each_file(ctx, job, export, audio, &report, |file| {
        recover(ctx, job, export, file)
    })
    .await?;
    Ok(report.into_inner().unwrap_or_else(|e| e.into_inner()))
}

fn lock(report: &Mutex<FetchReport>) -> std::sync::MutexGuard<'_, FetchReport> {
    report.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every file of the export's listing that `wanted` accepts, through `each` (several at once),
/// its outcome added to `report`. Before each file the deadline is checked.
async fn each_file<'a, F, Fut>(
    ctx: &'a Context,
    job: &'a ExportJob,
    export: &str,
    wanted: impl Fn(&ExportFile) -> bool,
    report: &Mutex<FetchReport>,
    each: F,
) -> Result<(), WorkError>
where
    F: Fn(ExportFile) -> Fut,
    Fut: std::future::Future<Output = Result<FileOutcome, WorkError>>,
{
    let mut page: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let listing = ctx.ocp.files(export, page.as_deref()).await?;
        let files = listing.files.into_iter().filter(|f| wanted(f));
        let each = &each;
        let mut running = futures_util::stream::iter(files.map(|file| async move {
            if ctx.clock.now() > job.deadline {
                return Ok(FileOutcome::OutOfTime);
            }
            each(file).await
        }))
        .buffer_unordered(ctx.config.download_concurrency);
        while let Some(outcome) = running.next().await {
            let mut r = lock(report);
            match outcome? {
                FileOutcome::Cdr {
                    filled,
                    reported,
                    unreadable,
                } => {
                    r.cdrs_filled += filled;
                    r.reported.extend(reported);
                    r.unreadable += unreadable;
                }
                FileOutcome::Done(label, failure) => {
                    match label {
                        "stored" | "stored_unprocessed" => r.stored += 1,
                        "already_stored" | "already_received" => r.already += 1,
                        _ => r.failed += 1,
                    }
                    ctx.metrics.export_files.with_label_values(&[label]).inc();
                    if let Some((call_id, why)) = failure {
                        r.reasons.insert(call_id, why);
                    }
                }
                FileOutcome::Deferred(error) => {
                    r.deferred += 1;
                    r.deferred_error = Some(error);
                }
                FileOutcome::OutOfTime => r.out_of_time = true,
            }
        }
        if lock(report).out_of_time {
            return Ok(());
        }
        match listing.next {
            Some(next) if !seen.insert(next.clone()) => break,
            Some(next) => page = Some(next),
            None => return Ok(()),
        }
    }
    Err(OcpError::Unavailable {
        what: format!("listing export {export}"),
        reason: crate::ocp::Transient::BadAnswer,
        detail: "the listing does not end (a page token repeats)".into(),
        retry_after: None,
    }
    .into())
}

/// Downloads `file` into a new spool, trying again (a fresh spool each time) while OCP cannot
/// serve it now. `Ok(Err)`: OCP refused the file itself (charged to its call).
async fn download(
    ctx: &Context,
    export: &str,
    file: &ExportFile,
    label: &str,
    limit: u64,
    digesting: Digesting,
) -> Result<Result<Spooled, OcpError>, OcpError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut spool = Spool::create(&ctx.config.spool_dir, label, limit, digesting).await?;
        match ctx.ocp.download(export, file, &mut spool).await {
            Ok(_) => return Ok(Ok(spool.finish().await?)),
            Err(e @ OcpError::Refused { .. }) => return Ok(Err(e)),
            Err(e) if e.is_transient() && tries < FILE_TRIES => {
                tracing::debug!(file = %file.name.escape_debug(), error = %e, "download failed; trying again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sorts a download's error: deferred (OCP cannot serve it now) or a stop.
fn defer_or_stop(error: OcpError) -> Result<FileOutcome, WorkError> {
    if error.is_transient() {
        Ok(FileOutcome::Deferred(error))
    } else {
        Err(error.into())
    }
}

/// One CDR batch file: read through a spool, one record a line; records of calls missing their
/// Start, End or group are applied. A bad file or record is counted and logged, never fatal.
async fn apply_cdr_file(
    ctx: &Context,
    job: &ExportJob,
    export: &str,
    file: ExportFile,
) -> Result<FileOutcome, WorkError> {
    let spooled = match download(
        ctx,
        export,
        &file,
        "export-cdr",
        MAX_CDR_FILE_BYTES,
        Digesting::None,
    )
    .await
    {
        Ok(Ok(spooled)) => spooled,
        // An audit compares every dialog of the day: with a file missing it would take calls
        // for absent from OCP. The export is not read to its end; the day waits for another.
        Ok(Err(e)) if job.purpose == "audit" => return Err(e.into()),
        // Listed but not served, too large, not the size listed: that file is bad, the
        // export is not.
        Ok(Err(e)) => {
            ctx.metrics.export_cdrs.with_label_values(&["bad"]).inc();
            tracing::warn!(job = %job.id, file = %file.name.escape_debug(), error = %e, "CDR file not taken");
            return Ok(FileOutcome::Cdr {
                filled: 0,
                reported: Vec::new(),
                unreadable: 0,
            });
        }
        Err(e) => return defer_or_stop(e),
    };
    let io = |source| OcpError::Io {
        path: spooled.path().to_path_buf(),
        source,
    };
    let opened = tokio::fs::File::open(spooled.path()).await.map_err(io)?;
    let mut reader = tokio::io::BufReader::new(opened);
    let mut line = Vec::new();
    let (mut filled, mut bad, mut number) = (0u64, 0u64, 0u64);
    let mut reported = Vec::new();
    let mut first_bad = None;
    while let Some(whole) = next_line(&mut reader, &mut line).await.map_err(io)? {
        number += 1;
        let outcome = if !whole {
            Err(format!("above {} bytes", crate::ocp::cdr::MAX_LINE_BYTES))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            apply_cdr_record(ctx, job, &line).await?
        };
        match outcome {
            Ok(applied) => {
                filled += u64::from(applied.filled);
                if job.purpose == "audit" {
                    reported.push(applied.call_id);
                }
            }
            Err(why) => {
                bad += 1;
                ctx.metrics.export_cdrs.with_label_values(&["bad"]).inc();
                first_bad.get_or_insert(format!("line {number}: {why}"));
            }
        }
    }
    if let Some(first) = first_bad {
        tracing::warn!(job = %job.id, file = %file.name.escape_debug(), bad, first = %first, "bad CDR records in export; skipped");
    }
    Ok(FileOutcome::Cdr {
        filled,
        reported,
        unreadable: bad,
    })
}

/// What one CDR record did.
struct AppliedRecord {
    call_id: CallId,
    /// It filled something in.
    filled: bool,
}

/// Reads the next line into `line` (at most [`crate::ocp::cdr::MAX_LINE_BYTES`] of it kept):
/// `None` at the end, `Some(false)` for a line too long (skipped to its end, never held).
async fn next_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    let limit = crate::ocp::cdr::MAX_LINE_BYTES as u64 + 1;
    let mut whole = true;
    line.clear();
    loop {
        let n = (&mut *reader).take(limit).read_until(b'\n', line).await?;
        if n == 0 {
            return Ok((!line.is_empty() || !whole).then_some(whole));
        }
        if line.ends_with(b"\n") {
            return Ok(Some(whole));
        }
        if n as u64 == limit {
            // Too long: keep none of it, read on to its end.
            whole = false;
            line.clear();
        }
    }
}

/// One record line: what it did, or (the inner `Err`) what is wrong with the record.
async fn apply_cdr_record(
    ctx: &Context,
    job: &ExportJob,
    line: &[u8],
) -> Result<Result<AppliedRecord, String>, WorkError> {
    let mapped = match serde_json::from_slice::<serde_json::Value>(line)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|record| crate::ocp::cdr::map_record(&record, &job.group_id))
    {
        Ok(mapped) => mapped,
        Err(why) => return Ok(Err(why)),
    };
    let existing = ctx.store().get(&mapped.call_id).await?;
    let created = existing.is_none();
    let known = existing.is_some_and(|r| {
        r.flags.started.is_some() && r.flags.ended.is_some() && r.cdr.group_id.is_some()
    });
    if known {
        ctx.metrics.export_cdrs.with_label_values(&["known"]).inc();
        return Ok(Ok(AppliedRecord {
            call_id: mapped.call_id,
            filled: false,
        }));
    }
    let (record, applied) = ctx
        .store()
        .update(&mapped.call_id, &mapped.change, Timestamp::now())
        .await?;
    let pipeline = &ctx.pipeline;
    crate::facts::keep_left_out(
        pipeline.objects.as_ref(),
        &pipeline.routing.staging.bucket,
        &mapped.change,
        &record,
    )
    .await?;
    if created {
        // Nothing of the call had arrived: the export found it (the audit counts it so).
        let now = Timestamp::now();
        let found = crate::store::CallChange::Audited {
            mark: crate::store::AuditMark::Found,
            at: now,
        };
        ctx.store().update(&mapped.call_id, &found, now).await?;
    }
    let changed = applied.outcome == Outcome::Changed;
    let outcome = if changed { "filled" } else { "unchanged" };
    ctx.metrics.export_cdrs.with_label_values(&[outcome]).inc();
    Ok(Ok(AppliedRecord {
        call_id: mapped.call_id,
        filled: changed,
    }))
}

/// One recording of the export, through the intake and the pipeline.
async fn recover(
    ctx: &Context,
    job: &ExportJob,
    export: &str,
    file: ExportFile,
) -> Result<FileOutcome, WorkError> {
    let skipped = |label| Ok(FileOutcome::Done(label, None));
    let Some(name) = crate::ocp::name::parse(&file.name) else {
        tracing::warn!(job = %job.id, file = %file.name.escape_debug(), "not an OCP recording name; skipped");
        return skipped("bad_name");
    };
    let Ok(call_id) = CallId::parse(&name.dialog_id) else {
        return skipped("bad_name");
    };
    if name.group_id != job.group_id {
        tracing::warn!(job = %job.id, file = %file.name, "recording of another group in export; skipped");
        return skipped("bad_name");
    }
    let record = ctx.store().get(&call_id).await?;
    if record.as_ref().is_some_and(|r| r.flags.stored.is_some()) {
        return skipped("already_stored");
    }
    if record.as_ref().is_some_and(|r| r.flags.received.is_some()) {
        // Streamed after all and in the service's pipeline: not the export's business.
        return skipped("already_received");
    }
    let failed = |why: String| Ok(FileOutcome::Done("failed", Some((call_id.clone(), why))));
    let limit = ctx.config.max_file_bytes;
    let spooled = match download(
        ctx,
        export,
        &file,
        call_id.as_str(),
        limit,
        Digesting::Recording,
    )
    .await
    {
        Ok(Ok(spooled)) => spooled,
        Ok(Err(OcpError::Refused { status: 404, .. })) => {
            return failed(format!(
                "{} listed but not served by export {export}",
                file.name
            ));
        }
        // Too large, or not the size listed: the file's bytes are bad (charged to the call).
        Ok(Err(e)) => return failed(e.to_string()),
        Err(e) => return defer_or_stop(e),
    };
    if !spooled.is_audio() {
        return failed(format!(
            "export file {} is not an audio file callrec takes",
            file.name
        ));
    }
    let outcome = match receive(
        &ctx.pipeline,
        &call_id,
        &spooled,
        "audio/wav",
        crate::store::Via::Export,
    )
    .await
    {
        Ok((_, outcome)) => outcome,
        Err(crate::intake::ReceiveError::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(call_id = %call_id, error = %e, "staging a recovered recording failed");
            return failed(format!("staging the export's recording failed: {e}"));
        }
    };
    drop(spooled);
    if outcome == Outcome::Conflict {
        tracing::warn!(call_id = %call_id, job = %job.id, "the export's recording differs from the one received; kept for review");
        return skipped("conflict");
    }
    // A failure is recorded on the call by the pipeline; the call is received, so a later scan
    // takes it over (`resume_stale`) and finalize leaves it alone.
    match run_pipeline(
        &ctx.pipeline,
        &ctx.metrics,
        &call_id,
        // The export holds the dialog: it has ended, whatever reached the store.
        Ending::Known,
        "processing a recovered recording",
    )
    .await
    {
        Ok(Finished::Stored) => skipped("stored"),
        Ok(Finished::NothingToDo) => skipped("already_stored"),
        // (Waiting is not an answer to `Ending::Known`: received, the service's to finish.)
        Ok(Finished::InFlight | Finished::WaitingForEnd { .. }) => skipped("already_received"),
        Ok(Finished::Archived) => skipped("stored_unprocessed"),
        Err(_) => skipped("failed"),
    }
}
