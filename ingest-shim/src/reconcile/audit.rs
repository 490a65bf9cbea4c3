//! The daily audit: once a day has settled, a CDR-only OCP export per group lists every dialog
//! OCP reported that day; calls callrec never heard of are created from those records (and
//! recovered as any missing call), calls callrec has that OCP does not report are marked and
//! listed, never deleted, and the day's figures are kept on the audit job, counted again at
//! each scan until every call OCP reported is stored or given up on.
//!
//! Audit jobs are export jobs with purpose `audit` and ids `aud-{group}-{YYYYMMDD}00-24h-{n}`:
//! leased, polled and fetched as every job, one running export per group respected alongside
//! recovery jobs.

use super::plan::ExportRange;
use super::scanner::job_id;
use crate::ids::CallId;
pub use crate::store::jobs::AuditSummary;
use crate::store::{
    AuditMark, CallChange, CallStatus, CallStore, DayQuery, ExportJob, JobId, JobState, StoreError,
    Via,
};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashSet;

/// The audit's settings (`[audit]`).
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// The OCP groups audited (none: no audit).
    pub groups: Vec<String>,
    /// How long after a day's end it is audited (OCP's late records settle).
    pub settle: SignedDuration,
    /// How many days back the audit looks (at most OCP's retention).
    pub lookback_days: u32,
    /// How long after a day has settled it should be complete.
    pub deadline: SignedDuration,
}

/// The UTC days settled at `now` and within the look-back, oldest first.
pub fn settled_days(config: &AuditConfig, now: Timestamp) -> Vec<Date> {
    let Ok(latest_end) = now.checked_sub(config.settle) else {
        return Vec::new();
    };
    // The last day whose end (next midnight) is at or before `latest_end`.
    let utc = jiff::tz::TimeZone::UTC;
    let Ok(last) = latest_end.to_zoned(utc).date().yesterday() else {
        return Vec::new();
    };
    let Ok(first_allowed) = now
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_sub(jiff::Span::new().days(i64::from(config.lookback_days)))
    else {
        return Vec::new();
    };
    let mut days = Vec::new();
    let mut day = first_allowed;
    while day <= last {
        days.push(day);
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    days
}

/// A day's range: `[00:00, 24:00)` UTC.
pub fn day_range(group: &str, day: Date) -> Option<ExportRange> {
    let from = day.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    let to = from.checked_add(SignedDuration::from_hours(24)).ok()?;
    Some(ExportRange {
        group_id: group.to_string(),
        from,
        to,
    })
}

/// Where a group's day stands with its audit jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditState {
    /// No audit job is open and none finished: one should be created as `next`. `last`: the
    /// latest job of the day that failed (its reason; the next waits a while after it).
    NotStarted {
        next: JobId,
        last: Option<Box<ExportJob>>,
        failures: u32,
    },
    /// An audit job is open (what it waits on, its last error).
    Running(Box<ExportJob>),
    /// Audited by this job (its summary on it).
    Done(Box<ExportJob>),
}

/// The audit jobs of `group`'s `day`, read by id (`aud-…-0`, `-1`, … until one is missing):
/// where the day stands.
pub async fn audit_state(
    store: &dyn CallStore,
    group: &str,
    day: Date,
) -> Result<Option<AuditState>, StoreError> {
    let Some(range) = day_range(group, day) else {
        return Ok(None);
    };
    let mut last = None;
    let mut failures = 0;
    for n in 0..10_000 {
        let Some(id) = job_id("aud", &range, n) else {
            return Ok(None);
        };
        match store.get_job(&id).await? {
            None => {
                return Ok(Some(AuditState::NotStarted {
                    next: id,
                    last,
                    failures,
                }));
            }
            Some(job) if job.state == JobState::Done => {
                return Ok(Some(AuditState::Done(Box::new(job))));
            }
            Some(job) if job.state.is_open() => {
                return Ok(Some(AuditState::Running(Box::new(job))));
            }
            Some(job) => {
                // Expired (its successor is the next id) or failed.
                if job.state == JobState::Failed {
                    failures += 1;
                    last = Some(Box::new(job));
                }
            }
        }
    }
    Ok(None)
}

/// The longest wait before a failed audit is tried again.
const MAX_RETRY_WAIT: SignedDuration = SignedDuration::from_hours(6);

/// When the audit of a day whose last job failed (`failures` so far) is tried again: `retry`
/// after the failure, doubling with each failure, at most [`MAX_RETRY_WAIT`].
pub fn retry_at(last: &ExportJob, failures: u32, retry: SignedDuration) -> Timestamp {
    let doublings = failures.saturating_sub(1).min(16);
    let wait = retry
        .checked_mul(1 << doublings)
        .unwrap_or(MAX_RETRY_WAIT)
        .min(MAX_RETRY_WAIT);
    last.updated_at.checked_add(wait).unwrap_or(last.updated_at)
}

/// Creates the audit job of every configured group's settled day that has none open or done
/// (after a failed one, once [`retry_at`] has passed). Returns the jobs created now.
pub async fn ensure_audit_jobs(
    store: &dyn CallStore,
    config: &AuditConfig,
    now: Timestamp,
    deadline: Timestamp,
    retry: SignedDuration,
) -> Result<Vec<JobId>, StoreError> {
    let mut created = Vec::new();
    for day in settled_days(config, now) {
        for group in &config.groups {
            let Some(AuditState::NotStarted {
                next,
                last,
                failures,
            }) = audit_state(store, group, day).await?
            else {
                continue;
            };
            if last.is_some_and(|last| now < retry_at(&last, failures, retry)) {
                continue;
            }
            let Some(range) = day_range(group, day) else {
                continue;
            };
            let job = ExportJob::new(
                next.clone(),
                group,
                (range.from, range.to),
                "audit",
                now,
                deadline,
            );
            if store.create_job(&job).await? {
                created.push(next);
            }
        }
    }
    Ok(created)
}

/// How many calls not in OCP's export are named in a summary.
const NAMED: usize = 20;

/// Every call of `day` in the calendar (of `group`, or of every group), read page by page (ids
/// only: a day of a busy group is a few MB).
pub(super) async fn calls_of_day(
    store: &dyn CallStore,
    group: Option<&str>,
    day: Date,
) -> Result<Vec<CallId>, StoreError> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .calls_of_day(&DayQuery {
                day,
                group_id: group.map(str::to_string),
                limit: 1000,
                cursor,
            })
            .await?;
        ids.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(ids),
        }
    }
}

/// At the end of an audit's export: marks the calls of the day OCP did not report
/// (`reported`: the export's dialog ids; `unreadable`: its records that could not be read),
/// then counts the day. (The calls the export made known were marked found as its records were
/// applied.)
pub async fn conclude(
    store: &dyn CallStore,
    group: &str,
    day: Date,
    reported: &HashSet<CallId>,
    unreadable: u64,
    now: Timestamp,
) -> Result<AuditSummary, StoreError> {
    let absent = CallChange::Audited {
        mark: AuditMark::NotInOcp,
        at: now,
    };
    for id in calls_of_day(store, Some(group), day).await? {
        if !reported.contains(&id) {
            store.update(&id, &absent, now).await?;
        }
    }
    let mut summary = count(store, group, day, now).await?;
    // A reported dialog the store has no record of under this day (its record could not be
    // read from the export): not stored, so pending.
    let missing = (reported.len() as u64).saturating_sub(summary.reported);
    summary.reported += missing;
    summary.pending += missing;
    summary.unreadable = unreadable;
    Ok(summary)
}

/// Counts `group`'s `day` from the calendar and the audit's marks: every call of the day not
/// marked absent from OCP's export is one OCP reported.
pub async fn count(
    store: &dyn CallStore,
    group: &str,
    day: Date,
    now: Timestamp,
) -> Result<AuditSummary, StoreError> {
    let mut summary = AuditSummary {
        counted_at: now,
        ..AuditSummary::default()
    };
    for id in calls_of_day(store, Some(group), day).await? {
        let Some(record) = store.get(&id).await? else {
            continue;
        };
        if record.not_in_ocp.is_some() {
            summary.not_in_ocp += 1;
            if summary.not_in_ocp_first.len() < NAMED {
                summary.not_in_ocp_first.push(id);
            }
            continue;
        }
        summary.reported += 1;
        let found = record.found_in_export.is_some();
        summary.found += u64::from(found);
        if record.flags.stored.is_some() {
            summary.stored += 1;
            if !found {
                match record.staged.as_ref().and_then(|s| s.via) {
                    Some(Via::Export) => summary.recovered += 1,
                    _ => summary.streamed += 1,
                }
            }
        } else if record.status == CallStatus::Lost {
            summary.lost += 1;
        } else {
            summary.pending += 1;
        }
    }
    Ok(summary)
}

/// The day an audit job audited counted again (calls went on their way since), carrying what
/// only its export could tell (the records that could not be read).
pub async fn recount(
    store: &dyn CallStore,
    job: &ExportJob,
    now: Timestamp,
) -> Result<AuditSummary, StoreError> {
    let day = job.from.to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut counted = count(store, &job.group_id, day, now).await?;
    counted.unreadable = job.audit.as_ref().map_or(0, |a| a.unreadable);
    Ok(counted)
}

/// The audit's part of a scan: creates the audit jobs of settled days, recounts the audited
/// days not complete yet (their found calls go through recovery meanwhile), and sets the
/// incomplete-days gauge. Nothing without audited groups.
pub async fn scan(ctx: &super::Context) -> Result<(), super::WorkError> {
    let config = &ctx.config.audit;
    if config.groups.is_empty() {
        return Ok(());
    }
    let store = ctx.store();
    let now = ctx.clock.now();
    let deadline = now.checked_add(ctx.config.scan.job_deadline).unwrap_or(now);
    let retry = ctx.config.poll.max;
    let created = ensure_audit_jobs(store, config, now, deadline, retry).await?;
    if !created.is_empty() {
        tracing::info!(jobs = ?created, "audit jobs created");
    }
    let mut overdue = 0;
    for day in settled_days(config, now) {
        let late = due(config, day).is_some_and(|due| now > due);
        let mut complete = 0;
        for group in &config.groups {
            let Some(AuditState::Done(job)) = audit_state(store, group, day).await? else {
                overdue += i64::from(late);
                continue;
            };
            if job.audit.as_ref().is_some_and(AuditSummary::complete) {
                complete += 1;
                continue;
            }
            let counted = recount(store, &job, now).await?;
            if counted.complete() {
                complete += 1;
                ctx.metrics
                    .audit_calls
                    .with_label_values(&["lost"])
                    .inc_by(counted.lost);
                tracing::info!(group, %day, reported = counted.reported, stored = counted.stored, lost = counted.lost, "day complete: every call OCP reported is stored or given up on");
            } else {
                overdue += i64::from(late);
            }
            crate::store::modify_job(store, &job.id, now, &|j: &mut ExportJob| {
                j.audit = Some(counted.clone());
                Ok(())
            })
            .await?
            .map_err(|e| StoreError::Corrupt {
                backend: store.backend(),
                key: job.id.to_string(),
                message: e.to_string(),
            })?;
        }
        if complete == config.groups.len() {
            super::manifest::write_missing(ctx, day).await?;
        }
    }
    ctx.metrics.audit_days_incomplete.set(overdue);
    Ok(())
}

/// When `day` should be complete: its end, then `settle`, then `deadline`.
pub fn due(config: &AuditConfig, day: Date) -> Option<Timestamp> {
    day_range("", day)?
        .to
        .checked_add(config.settle)
        .ok()?
        .checked_add(config.deadline)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_audited_once_settled_and_within_the_look_back() {
        let config = AuditConfig {
            groups: vec!["g".into()],
            settle: SignedDuration::from_hours(6),
            lookback_days: 3,
            deadline: SignedDuration::from_hours(24),
        };
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let days = |now: &str| -> Vec<String> {
            settled_days(&config, at(now))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        // At 05:59 on the 10th the 9th has not settled; at 06:00 it has.
        assert_eq!(days("2026-12-10T05:59:59Z"), ["2026-12-07", "2026-12-08"]);
        assert_eq!(
            days("2026-12-10T06:00:00Z"),
            ["2026-12-07", "2026-12-08", "2026-12-09"]
        );
        let range = day_range("g", "2026-12-09".parse().unwrap()).unwrap();
        assert_eq!(range.from, at("2026-12-09T00:00:00Z"));
        assert_eq!(range.to, at("2026-12-10T00:00:00Z"));
        assert_eq!(
            job_id("aud", &range, 0).unwrap().as_str(),
            "aud-g-2026120900-24h-0"
        );
    }

    #[test]
    fn a_failed_audit_is_tried_again_later_each_time_at_most_six_hours_on() {
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let range = day_range("g", "2026-12-09".parse().unwrap()).unwrap();
        let mut last = ExportJob::new(
            job_id("aud", &range, 0).unwrap(),
            "g",
            (range.from, range.to),
            "audit",
            at("2026-12-10T07:00:00Z"),
            at("2026-12-11T07:00:00Z"),
        );
        last.updated_at = at("2026-12-10T08:00:00Z");
        let six_minutes = SignedDuration::from_mins(6);
        let waits: Vec<String> = [1, 2, 3, 7, 8, 40]
            .into_iter()
            .map(|failures| retry_at(&last, failures, six_minutes).to_string())
            .collect();
        assert_eq!(
            waits,
            [
                "2026-12-10T08:06:00Z",
                "2026-12-10T08:12:00Z",
                "2026-12-10T08:24:00Z",
                "2026-12-10T14:00:00Z",
                "2026-12-10T14:00:00Z",
                "2026-12-10T14:00:00Z",
            ]
        );
    }
}
