//! The scanner: finds calls that ended more than a grace period ago and are not stored, and
//! records the export jobs that will recover them.
//!
//! Calls already inside the range of an open job of their group are left to that job, so scans
//! that run again (every N minutes, on every replica) never ask OCP for the same call twice.
//! Job ids are derived from the range (`exp-{group}-{from}-{hours}h-{n}`), so two replicas that
//! scan at once create the same record, once (the create is conditional).

use super::plan::{ExportRange, plan_exports};
use crate::store::{CallRecord, CallStore, ExportJob, JobId, PendingQuery, StoreError};
use jiff::{SignedDuration, Timestamp};

/// What the scanner needs to know.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// How long after its End a call may still be streamed before it counts as missing.
    pub grace: SignedDuration,
    /// How long a job may take before it fails loudly.
    pub job_deadline: SignedDuration,
    /// How far back to look (OCP keeps recordings 60 days; older calls are reconciliation's
    /// finalize step's business).
    pub lookback: SignedDuration,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            grace: SignedDuration::from_mins(15),
            job_deadline: SignedDuration::from_hours(24),
            lookback: SignedDuration::from_hours(60 * 24),
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
    /// Jobs created now.
    pub created: Vec<JobId>,
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

/// The id of the `n`th job for `range`.
fn job_id(range: &ExportRange, n: u32) -> JobId {
    let hours = range.to.duration_since(range.from).as_hours();
    let from = range.from.strftime("%Y%m%d%H");
    JobId::parse(&format!("exp-{}-{from}-{hours}h-{n}", range.group_id))
        .expect("group ids are safe ids and the rest is digits")
}

/// One scan at `now`.
pub async fn scan(
    store: &dyn CallStore,
    config: &ScanConfig,
    now: Timestamp,
) -> Result<ScanReport, StoreError> {
    let mut report = ScanReport::default();
    let open = store.open_jobs(10_000).await?;
    let mut missing: Vec<(String, Timestamp)> = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .pending(&PendingQuery {
                group_id: None,
                ended_from: now.checked_sub(config.lookback).ok(),
                ended_before: now.checked_sub(config.grace).unwrap_or(now),
                limit: 1000,
                cursor,
            })
            .await?;
        for call in &page.items {
            report.missing += 1;
            let (Some(group), Some(at)) = (call.cdr.group_id.as_deref(), dialog_time(call)) else {
                report.without_group += 1;
                continue;
            };
            let covered = open
                .iter()
                .any(|job| job.group_id == group && job.from <= at && at < job.to);
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
        // The first free number for this range; an open job with the same range would have
        // covered its calls, so an existing id here is a finished job (or a replica's twin).
        for n in 0..1000 {
            let id = job_id(&range, n);
            match store.get_job(&id).await? {
                Some(job) if job.state.is_open() => break,
                Some(_) => continue,
                None => {
                    let job = ExportJob::new(
                        id.clone(),
                        &range.group_id,
                        (range.from, range.to),
                        "reconcile",
                        now,
                        deadline,
                    );
                    if store.create_job(&job).await? {
                        report.created.push(id);
                    }
                    break;
                }
            }
        }
    }
    Ok(report)
}
