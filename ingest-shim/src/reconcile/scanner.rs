//! The scanner: finds calls that ended more than a grace period ago and are not stored, and
//! records the export jobs that will recover them.
//!
//! Calls already inside the range of an open job of their group are left to that job, so scans
//! that run again (every N minutes, on every replica) never ask OCP for the same call twice.
//! Job ids are derived from the range (`exp-{group}-{from}-{hours}h-{n}`), so two replicas that
//! scan at once create the same record, once (the create is conditional). A missing call older
//! than OCP's retention can no longer be exported: the scan marks it `lost` (counted, logged by
//! the caller), never dropping it silently.

use super::Context;
use super::plan::{ExportRange, plan_exports};
use crate::ids::CallId;
use crate::store::{
    CallChange, CallRecord, CallStore, ExportJob, JobId, Outcome, PendingQuery, StoreError,
    open_jobs_paged, unfinished_calls,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;

/// What the scanner needs to know.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// How long after its End a call may still be streamed before it counts as missing.
    pub grace: SignedDuration,
    /// How long a job may take before it fails loudly.
    pub job_deadline: SignedDuration,
    /// How long OCP keeps recordings (60 days): a call missing for longer is `lost`.
    pub retention: SignedDuration,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            grace: SignedDuration::from_mins(15),
            job_deadline: SignedDuration::from_hours(24),
            retention: SignedDuration::from_hours(60 * 24),
        }
    }
}

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Missing calls seen.
    pub missing: usize,
    /// Of those, already covered by an open job.
    pub covered: usize,
    /// Missing calls without an OCP group (nothing to export by): counted, left alone.
    pub without_group: usize,
    /// Of those, received and still in the service's own pipeline (not missing a recording).
    pub in_progress: usize,
    /// Jobs created now.
    pub created: Vec<JobId>,
    /// Calls marked `lost` now: missing past OCP's retention.
    pub lost: Vec<CallId>,
}

/// The time OCP files a dialog under: its Start, else End minus the CDR duration, else End.
pub fn dialog_time(call: &CallRecord) -> Option<Timestamp> {
    let ended = call.flags.ended?;
    Some(call.flags.started.unwrap_or_else(|| {
        call.cdr
            .duration_ms
            .and_then(|ms| {
                ended
                    .checked_sub(SignedDuration::from_millis(ms as i64))
                    .ok()
            })
            .unwrap_or(ended)
    }))
}

/// The id of the `n`th job for `range`: `{prefix}-{group}-{YYYYMMDDHH}-{hours}h-{n}`. A group
/// id too long for that to fit in an id (128 bytes) is shortened to its first 40 characters
/// and 16 hex digits of its SHA-256: still unique, still readable, whatever the group's length.
pub fn job_id(prefix: &str, range: &ExportRange, n: u32) -> Option<JobId> {
    let hours = range.to.duration_since(range.from).as_hours();
    let from = range.from.strftime("%Y%m%d%H");
    let group = &range.group_id;
    let id = format!("{prefix}-{group}-{from}-{hours}h-{n}");
    if id.len() <= crate::ids::MAX_ID_LEN {
        return JobId::parse(&id).ok();
    }
    use sha2::Digest as _;
    let digest = hex::encode(&sha2::Sha256::digest(group.as_bytes())[..8]);
    let head: String = group.chars().take(40).collect();
    JobId::parse(&format!("{prefix}-{head}-{digest}-{from}-{hours}h-{n}")).ok()
}

/// Records a job for `range` under the first free number, unless an open job has this range
/// already. Returns the id of the job created now (`None`: an open one exists, or a replica
/// created it at the same moment). `purpose`: "reconcile" (ids `exp-…`), "backfill" (`bf-…`)
/// or "audit" (`aud-…`).
/// `expiries`: how many jobs of this range expired before it (0 for a new range).
pub async fn create_job_for_range(
    store: &dyn CallStore,
    range: &ExportRange,
    purpose: &str,
    now: Timestamp,
    deadline: Timestamp,
    expiries: u32,
) -> Result<Option<JobId>, StoreError> {
    let prefix = match purpose {
        "backfill" => "bf",
        // An expired audit's successor: the next of the day's audit ids.
        "audit" => "aud",
        _ => "exp",
    };
    for n in 0..10_000 {
        let Some(id) = job_id(prefix, range, n) else {
            // Not a safe id at all (the group was validated where it entered): refuse loudly.
            return Err(StoreError::Corrupt {
                backend: store.backend(),
                key: format!("group {:?}", range.group_id),
                message: "no export job id can be made for this group".into(),
            });
        };
        match store.get_job(&id).await? {
            Some(job) if job.state.is_open() => return Ok(None),
            Some(_) => continue,
            None => {
                let mut job = ExportJob::new(
                    id.clone(),
                    &range.group_id,
                    (range.from, range.to),
                    purpose,
                    now,
                    deadline,
                );
                job.expiries = expiries;
                return Ok(store.create_job(&job).await?.then_some(id));
            }
        }
    }
    Ok(None)
}

/// One scan at `now`.
pub async fn scan(
    store: &dyn CallStore,
    config: &ScanConfig,
    now: Timestamp,
) -> Result<ScanReport, StoreError> {
    let mut report = ScanReport::default();
    // The open jobs' ranges by group, read page by page.
    let mut open: HashMap<String, Vec<(Timestamp, Timestamp)>> = HashMap::new();
    let mut jobs = open_jobs_paged(store);
    while let Some(job) = jobs.try_next().await? {
        // An open audit covers its day too, though its export holds no recordings: the calls
        // it makes known join one recovery round after it, not a round per batch it finds.
        open.entry(job.group_id)
            .or_default()
            .push((job.from, job.to));
    }
    let mut missing: Vec<(String, Timestamp)> = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .pending(&PendingQuery {
                group_id: None,
                ended_from: None,
                ended_before: now.checked_sub(config.grace).unwrap_or(now),
                limit: 1000,
                cursor,
            })
            .await?;
        for call in &page.items {
            report.missing += 1;
            if call.flags.received.is_some() {
                // The recording is here; the service finishes it (resume, or a failure that a
                // person must look at): an export would bring the same bytes again.
                report.in_progress += 1;
                continue;
            }
            if dialog_time(call)
                .is_some_and(|at| at.checked_add(config.retention).is_ok_and(|t| t < now))
            {
                let change = CallChange::Lost {
                    reason: "missing past OCP's retention: it can no longer be exported".into(),
                };
                let (_, applied) = store.update(&call.call_id, &change, now).await?;
                if applied.outcome == Outcome::Changed {
                    report.lost.push(call.call_id.clone());
                }
                continue;
            }
            let (Some(group), Some(at)) = (call.cdr.group_id.as_deref(), dialog_time(call)) else {
                report.without_group += 1;
                continue;
            };
            let covered = open
                .get(group)
                .is_some_and(|ranges| ranges.iter().any(|(from, to)| *from <= at && at < *to));
            if covered {
                report.covered += 1;
            } else {
                missing.push((group.to_string(), at));
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let deadline = now.checked_add(config.job_deadline).unwrap_or(now);
    for range in plan_exports(missing.iter().map(|(g, at)| (g.as_str(), *at))) {
        // An open job with the same range would have covered its calls, so an existing id here
        // is a finished job (or a replica's twin).
        if let Some(id) = create_job_for_range(store, &range, "reconcile", now, deadline, 0).await?
        {
            report.created.push(id);
        }
    }
    Ok(report)
}

/// A scan (see [`scan`]) that logs and counts what it found, then the stale take-over.
pub async fn scan_once(ctx: &Context) -> Result<ScanReport, StoreError> {
    let report = scan(ctx.store(), &ctx.config.scan, ctx.clock.now()).await?;
    for call in &report.lost {
        ctx.metrics.calls_lost.inc();
        tracing::error!(call_id = %call, "recording lost: still missing past OCP's retention");
    }
    if report.missing > 0 || !report.created.is_empty() {
        tracing::info!(
            missing = report.missing,
            covered = report.covered,
            without_group = report.without_group,
            jobs_created = report.created.len(),
            lost = report.lost.len(),
            "reconciliation scan"
        );
    }
    if let Err(e) = super::audit::scan(ctx).await {
        tracing::warn!(error = %e, "the daily audit's scan failed; trying again at the next scan");
    }
    let resumed = resume_stale(ctx).await?;
    if resumed > 0 {
        tracing::warn!(
            calls = resumed,
            "took over calls received long ago and never stored (a replica died mid-pipeline?)"
        );
    }
    Ok(report)
}

/// Runs the pipeline for calls received more than `stale_after` ago and still not stored:
/// their replica died between `received` and `stored` (a replica resumes its own at start,
/// but a dead one never starts again). Returns how many it ran.
pub async fn resume_stale(ctx: &Context) -> Result<usize, StoreError> {
    let Ok(before) = ctx.clock.now().checked_sub(ctx.config.stale_after) else {
        return Ok(0);
    };
    let mut stale = Vec::new();
    let mut calls = unfinished_calls(ctx.store());
    while let Some(call) = calls.try_next().await? {
        // Oldest first: the rest are younger.
        if call.flags.received.is_none_or(|t| t > before) {
            break;
        }
        // Out of attempts (e.g. a recording that fails the duration check every time): left for
        // a person, with its last error on the record.
        if call.attempts < ctx.config.max_attempts {
            stale.push(call.call_id);
        }
    }
    let count = stale.len();
    let what = "taking over a stale call";
    let mut runs = futures_util::stream::iter(stale.into_iter().map(|call_id| async move {
        let _ = crate::intake::run_pipeline(
            &ctx.pipeline,
            &ctx.metrics,
            &call_id,
            crate::pipeline::Ending::AsRecorded,
            what,
        )
        .await;
    }))
    .buffer_unordered(ctx.config.download_concurrency);
    while runs.next().await.is_some() {}
    Ok(count)
}
