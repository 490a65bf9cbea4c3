//! The export-job worker: the timer loop, the job state machine, the fetch tasks, finalize.
//!
//! One loop per replica sleeps until the earliest due job (or the next scan), leases each due job
//! with a conditional write and works it one step: create the export at OCP, poll it, or fetch
//! it. Timers are the jobs' `next_poll_at` in the store, so they survive restarts; while a
//! replica works a job, the job's timer is pushed to the end of its lease (renewed every third
//! of the lease), so other replicas leave it alone — and take it over when the lease runs out
//! because the replica died. Every write a step makes checks that the lease is still held; the
//! write that ends a step sets the next timer and gives the lease back at once.
//!
//! On `completed` the metadata task reads the export's CDR records (OCP's `dialog_start` and
//! `dialog_end`, filling Start/End events that never arrived), then the download task streams
//! each audio file of a call not yet stored through the stage-1 path ([`crate::receive`], then
//! the pipeline), with bounded concurrency. Then finalize: calls of the job's range that are
//! still missing get an attempt counted; out of attempts (or past OCP's retention, see
//! [`super::scanner`]) they are `lost` — counted and logged as errors. An export whose data
//! expired is created again (a new job for the same range); a job past its deadline fails loudly.
//!
//! What OCP's failures cost ([`crate::ocp::error`]): an unavailable OCP or identity provider
//! (5xx, 429, timeouts) and refused credentials or an untrusted certificate make the job *wait*
//! — rescheduled, `waiting_on` set, no call charged, even past the deadline (the job then closes
//! and the next scan makes another). Refused credentials are logged as an error once per job and
//! counted (`callrec_ocp_auth_failures_total`). A call is charged an attempt only for what
//! concerns the call itself: its file absent from a completed export, or its bytes bad.

use super::plan::ExportRange;
use super::scanner::{ScanConfig, ScanReport, create_job_for_range, dialog_time, scan};
use super::schedule::PollSchedule;
use crate::ids::CallId;
use crate::ocp::{DataType, ExportFile, ExportStatus, OcpError, OcpExports, RECOVERY_DATA};
use crate::pipeline::{Finished, Pipeline};
use crate::receive::{Spooled, looks_like_audio, receive};

/// Largest CDR batch file of an export read, bytes (a day of a busy group's records).
pub const MAX_CDR_FILE_BYTES: u64 = 1 << 30;
/// Most pages of one export's listing: a listing that goes on (a repeating page token) is an
/// error, not a loop.
const MAX_PAGES: usize = 100_000;
use crate::server::metrics::Metrics;
use crate::store::{
    CallChange, CallStore, ExportJob, JobId, JobState, LeaseError, Outcome, PendingQuery,
    StoreError, modify_job,
};
use futures_util::StreamExt as _;
use jiff::{SignedDuration, Timestamp};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the worker behaves (from `[reconcile]`, `[server]`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This replica's name in leases.
    pub owner: String,
    pub scan: ScanConfig,
    pub scan_interval: Duration,
    pub poll: PollSchedule,
    pub lease_ttl: SignedDuration,
    pub max_attempts: u32,
    pub download_concurrency: usize,
    pub jobs_concurrency: usize,
    /// Where downloads are spooled.
    pub spool_dir: PathBuf,
    /// Largest recording accepted from an export, bytes.
    pub max_file_bytes: u64,
    /// A call received this long ago and not stored is taken over by a scan.
    pub stale_after: SignedDuration,
}

impl WorkerConfig {
    pub fn from_config(config: &crate::config::Config, owner: String) -> Self {
        let r = &config.reconcile;
        let secs = |s: f64| SignedDuration::from_secs_f64(s);
        WorkerConfig {
            owner,
            scan: ScanConfig {
                grace: secs(r.grace_s),
                job_deadline: secs(r.job_deadline_s),
                retention: SignedDuration::from_hours(24 * i64::from(r.retention_days)),
            },
            scan_interval: Duration::from_secs_f64(r.scan_interval_s),
            poll: config.poll_schedule(),
            lease_ttl: secs(r.lease_ttl_s),
            max_attempts: r.max_attempts,
            download_concurrency: r.download_concurrency,
            jobs_concurrency: r.jobs_concurrency,
            spool_dir: config.server.spool_dir.clone(),
            max_file_bytes: config.server.max_body_bytes,
            stale_after: secs(r.stale_after_s),
        }
    }
}

/// A name for this replica in leases and logs: host, process, and a random suffix (two
/// processes on one host, or a restarted one, are different owners).
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "callrec".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// Why a step of a job stopped.
#[derive(Debug, thiserror::Error)]
enum WorkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("lease: {0}")]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Ocp(#[from] OcpError),
    #[error("the lease was lost to another replica")]
    LeaseLost,
    #[error("stopping")]
    Stopping,
}

/// What fetching an export did.
#[derive(Debug, Default)]
struct Fetched {
    stored: u64,
    already: u64,
    failed: u64,
    cdrs_filled: u64,
    /// Why a call's file in the export was not taken: finalize writes it on the call with the
    /// attempt it counts (one attempt per export round, whatever went wrong).
    reasons: HashMap<CallId, String>,
}

/// What became of one audio file of an export.
struct Recovered {
    /// The `callrec_export_files_total` outcome label.
    outcome: &'static str,
    /// The call and why it was not stored, when it was not.
    failure: Option<(CallId, String)>,
}

impl Recovered {
    fn only(outcome: &'static str) -> Self {
        Recovered {
            outcome,
            failure: None,
        }
    }

    fn failed(call_id: CallId, why: String) -> Self {
        Recovered {
            outcome: "failed",
            failure: Some((call_id, why)),
        }
    }
}

/// The reconciliation worker of one replica.
pub struct Reconciler {
    pipeline: Pipeline,
    ocp: Arc<dyn OcpExports>,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
    /// Jobs this replica is working now.
    working: Mutex<HashSet<JobId>>,
    /// Woken when a job step ends (a slot is free, a timer may have moved).
    wake: tokio::sync::Notify,
}

/// A spool file that removes itself.
struct SpoolFile(PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Reconciler {
    pub fn new(
        pipeline: Pipeline,
        ocp: Arc<dyn OcpExports>,
        config: WorkerConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Reconciler {
            pipeline,
            ocp,
            config,
            metrics,
            working: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    fn store(&self) -> &dyn CallStore {
        self.pipeline.store.as_ref()
    }

    /// One scan for missing recordings; records export jobs for them. Calls past OCP's
    /// retention are marked lost, counted and logged.
    pub async fn scan_once(&self) -> Result<ScanReport, StoreError> {
        let report = scan(self.store(), &self.config.scan, Timestamp::now()).await?;
        for call in &report.lost {
            self.metrics.calls_lost.inc();
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
        if !report.created.is_empty() {
            self.wake.notify_one();
        }
        let resumed = self.resume_stale().await?;
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
    pub async fn resume_stale(&self) -> Result<usize, StoreError> {
        let Ok(before) = Timestamp::now().checked_sub(self.config.stale_after) else {
            return Ok(0);
        };
        let mut stale = Vec::new();
        let mut cursor: Option<String> = None;
        'pages: loop {
            let page = self.store().unfinished(200, cursor.as_deref()).await?;
            for call in page.items {
                // Oldest first: the rest are younger.
                if call.flags.received.is_none_or(|t| t > before) {
                    break 'pages;
                }
                // Out of attempts (e.g. a recording that fails the duration check every time):
                // left for a person, with its last error on the record.
                if call.attempts < self.config.max_attempts {
                    stale.push(call.call_id);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let count = stale.len();
        let mut runs = futures_util::stream::iter(stale.into_iter().map(|call_id| async move {
            if let Err(e) = self.pipeline.run(&call_id).await {
                self.metrics.failures.with_label_values(&[e.kind()]).inc();
                tracing::error!(call_id = %call_id, kind = e.kind(), error = %e, "taking over a stale call failed");
            }
        }))
        .buffer_unordered(self.config.download_concurrency);
        while runs.next().await.is_some() {}
        Ok(count)
    }

    /// Records the export jobs of a backfill of `group_id` over `[from, to)` (widened to whole
    /// hours), one per shard of `shard_hours`. Returns every shard's job id, the ones an earlier
    /// run (still open) created included.
    pub async fn plan_backfill(
        &self,
        group_id: &str,
        from: Timestamp,
        to: Timestamp,
        shard_hours: u32,
    ) -> Result<Vec<ExportRange>, StoreError> {
        let now = Timestamp::now();
        let deadline = now
            .checked_add(self.config.scan.job_deadline)
            .unwrap_or(now);
        let shards = backfill_shards(group_id, from, to, shard_hours);
        for range in &shards {
            create_job_for_range(self.store(), range, "backfill", now, deadline).await?;
        }
        self.wake.notify_one();
        Ok(shards)
    }

    /// The timer loop with a scan every `scan_interval`, until `shutdown`. Jobs in progress are
    /// stopped at shutdown and their leases given back, so another replica resumes them at once.
    pub async fn run(self: &Arc<Self>, shutdown: CancellationToken) {
        self.timer_loop(shutdown, true, |_| false).await;
    }

    /// The timer loop without scans, until `done` says the open jobs are finished (checked after
    /// each round), or `shutdown`.
    pub async fn work_until(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        done: impl Fn(&[ExportJob]) -> bool,
    ) {
        self.timer_loop(shutdown, false, done).await;
    }

    async fn timer_loop(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        scanning: bool,
        done: impl Fn(&[ExportJob]) -> bool,
    ) {
        let tasks = TaskTracker::new();
        let mut next_scan = tokio::time::Instant::now();
        loop {
            if scanning && tokio::time::Instant::now() >= next_scan {
                if let Err(e) = self.scan_once().await {
                    tracing::warn!(error = %e, "reconciliation scan failed; trying again later");
                }
                next_scan = tokio::time::Instant::now() + self.config.scan_interval;
            }
            let earliest = match self.launch_due(&tasks, &shutdown).await {
                Ok(earliest) => earliest,
                Err(e) => {
                    tracing::warn!(error = %e, "reading due export jobs failed");
                    None
                }
            };
            if !scanning {
                match self.store().open_jobs(10_000).await {
                    Ok(open) if done(&open) => break,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reading open export jobs failed"),
                }
            }
            // Sleep until the earliest timer, the next scan, or at most the first poll wait
            // (jobs other replicas create are seen by then); a step ending wakes us earlier.
            let mut wait = self.config.poll.initial.unsigned_abs();
            if scanning {
                wait = wait.min(next_scan.saturating_duration_since(tokio::time::Instant::now()));
            }
            if let Some(at) = earliest {
                let until = at.duration_since(Timestamp::now());
                let until = if until.is_positive() {
                    until.unsigned_abs()
                } else {
                    // Due now but not taken (no free slot, or another replica's): not a spin.
                    Duration::from_millis(200)
                };
                wait = wait.min(until);
            }
            let wait = wait.max(Duration::from_millis(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tasks.close();
        tasks.wait().await;
    }

    /// Starts a task for each due job there is a slot for; returns the earliest timer of the
    /// jobs not started.
    async fn launch_due(
        self: &Arc<Self>,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Result<Option<Timestamp>, StoreError> {
        let now = Timestamp::now();
        let due = self.store().due_jobs(now, 100).await?;
        for job in &due {
            let id = job.id.clone();
            {
                let mut working = self.working.lock().unwrap_or_else(|e| e.into_inner());
                if working.len() >= self.config.jobs_concurrency || working.contains(&id) {
                    continue;
                }
                working.insert(id.clone());
            }
            let this = Arc::clone(self);
            let stop = shutdown.child_token();
            tasks.spawn(async move {
                this.work(&id, stop).await;
                this.working
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                this.wake.notify_one();
            });
        }
        let horizon = now
            .checked_add(SignedDuration::from_hours(24 * 365))
            .unwrap_or(now);
        let next = self
            .store()
            .due_jobs(horizon, 1 + self.config.jobs_concurrency as u32);
        let working = self
            .working
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(next
            .await?
            .into_iter()
            .filter(|j| !working.contains(&j.id))
            .find_map(|j| j.due_at()))
    }

    /// Leases job `id` if it is due and works one step of it.
    async fn work(self: &Arc<Self>, id: &JobId, stop: CancellationToken) {
        let owner = self.config.owner.clone();
        let ttl = self.config.lease_ttl;
        let now = Timestamp::now();
        let leased = modify_job(self.store(), id, now, &|job: &mut ExportJob| {
            if !job.state.is_open() || job.next_poll_at.is_none_or(|t| t > now) {
                return Err(LeaseError::NotDue);
            }
            job.lease(&owner, now, ttl)?;
            // While leased, the timer is the lease's end: others leave the job alone until then.
            job.next_poll_at = job.lease_expires_at;
            Ok(())
        })
        .await;
        let job = match leased {
            Ok(Ok(job)) => job,
            Ok(Err(_)) => return, // someone else's, or not due any more
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "leasing an export job failed");
                return;
            }
        };
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(Arc::clone(self).renew(id.clone(), lost.clone()));
        let result = tokio::select! {
            result = self.advance(job) => result,
            _ = lost.cancelled() => Err(WorkError::LeaseLost),
            _ = stop.cancelled() => Err(WorkError::Stopping),
        };
        renewer.abort();
        match result {
            Ok(()) => {}
            Err(WorkError::LeaseLost) => {
                tracing::warn!(job = %id, "lease lost while working; another replica has the job");
            }
            Err(e) => {
                let stopping = matches!(e, WorkError::Stopping);
                if !stopping {
                    tracing::warn!(job = %id, error = %e, "export job step failed; trying again later");
                }
                // Give the lease back with the error recorded; when stopping, due at once so
                // another replica continues without waiting for the lease to run out.
                let message = e.to_string();
                let next = if stopping {
                    Timestamp::now()
                } else {
                    self.next_poll(Timestamp::now(), 1)
                };
                let _ = self
                    .finish(id, next.into(), move |job| {
                        if !stopping {
                            job.attempt = job.attempt.saturating_add(1);
                            job.last_error = Some(message.clone());
                        }
                        Ok(())
                    })
                    .await;
            }
        }
    }

    /// Renews the lease every third of its lifetime; cancels `lost` if it cannot.
    async fn renew(self: Arc<Self>, id: JobId, lost: CancellationToken) {
        let every = (self.config.lease_ttl.unsigned_abs() / 3).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            let now = Timestamp::now();
            let owner = self.config.owner.clone();
            let ttl = self.config.lease_ttl;
            let renewed = modify_job(self.store(), &id, now, &|job: &mut ExportJob| {
                if !job.holds(&owner, now) {
                    return Err(LeaseError::NotHolder);
                }
                job.lease(&owner, now, ttl)?;
                job.next_poll_at = job.lease_expires_at;
                Ok(())
            })
            .await;
            match renewed {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    lost.cancel();
                    return;
                }
                // The store is unreachable: keep trying while the lease lasts.
                Err(e) => tracing::warn!(job = %id, error = %e, "renewing a lease failed"),
            }
        }
    }

    fn next_poll(&self, now: Timestamp, attempt: u32) -> Timestamp {
        self.config
            .poll
            .next_poll(now, attempt, rand::random::<f64>())
    }

    /// A write during a step: only while this replica holds the lease.
    async fn save(
        &self,
        id: &JobId,
        f: impl Fn(&mut ExportJob) -> Result<(), LeaseError> + Send + Sync,
    ) -> Result<ExportJob, WorkError> {
        let owner = self.config.owner.clone();
        let now = Timestamp::now();
        let job = modify_job(self.store(), id, now, &|job: &mut ExportJob| {
            if !job.holds(&owner, now) {
                return Err(LeaseError::NotHolder);
            }
            f(job)
        })
        .await??;
        Ok(job)
    }

    /// The write that ends a step: applies `f`, sets the next timer (`None`: closed) and gives
    /// the lease back, in one conditional write.
    async fn finish(
        &self,
        id: &JobId,
        next: Option<Timestamp>,
        f: impl Fn(&mut ExportJob) -> Result<(), LeaseError> + Send + Sync,
    ) -> Result<ExportJob, WorkError> {
        let owner = self.config.owner.clone();
        self.save(id, move |job| {
            f(job)?;
            job.next_poll_at = if job.state.is_open() { next } else { None };
            job.release(&owner)
        })
        .await
    }

    /// Moves to `state` (under the lease).
    async fn go(&self, id: &JobId, state: JobState) -> Result<ExportJob, WorkError> {
        let owner = self.config.owner.clone();
        self.save(id, move |job| {
            job.transition(&owner, Timestamp::now(), state)?;
            job.waiting_on = None;
            Ok(())
        })
        .await
    }

    /// OCP answered with something other than progress: the job keeps its place and waits
    /// (rescheduled on the poll schedule, or later if OCP asked for it), and no call is charged.
    /// Refused credentials and untrusted certificates need a person: an error log the first time
    /// a job meets one, and `callrec_ocp_auth_failures_total`.
    async fn wait_on(&self, job: &ExportJob, error: &OcpError) -> Result<(), WorkError> {
        let upstream = if error.needs_person() {
            error.kind()
        } else {
            "unavailable"
        };
        if error.needs_person() {
            self.metrics.ocp_auth_failures.inc();
            if job.waiting_on.as_deref() != Some(upstream) {
                tracing::error!(job = %job.id, group = %job.group_id, error = %error, "OCP refused callrec's credentials or TLS failed; the job waits for a person to fix it (no call is charged)");
            }
        } else {
            self.metrics.ocp_unavailable.inc();
            tracing::warn!(job = %job.id, state = job.state.name(), error = %error, "OCP unavailable; trying again later");
        }
        let message = error.to_string();
        let now = Timestamp::now();
        let mut next = self.next_poll(now, job.attempt.saturating_add(1));
        if let Some(asked) = error.retry_after() {
            // OCP's Retry-After, but never past the longest poll wait: the timer stays bounded.
            let asked = SignedDuration::try_from(asked)
                .unwrap_or(SignedDuration::MAX)
                .min(self.config.poll.max);
            next = next.max(now.checked_add(asked).unwrap_or(next));
        }
        let upstream = upstream.to_string();
        self.finish(&job.id, Some(next), move |job| {
            job.attempt = job.attempt.saturating_add(1);
            job.last_error = Some(message.clone());
            job.waiting_on = Some(upstream.clone());
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The deadline passed while the job waited on OCP (down, or credentials refused): closed as
    /// `failed`, loudly, but its calls are not charged — they are still missing, and the next
    /// scan gives them a new job.
    async fn give_up_waiting(&self, job: &ExportJob, upstream: &str) -> Result<(), WorkError> {
        let reason = format!(
            "deadline passed while waiting on OCP ({upstream}); its calls were not charged and \
             the next scan asks again"
        );
        self.close(job, JobState::Failed, &reason).await?;
        tracing::error!(job = %job.id, group = %job.group_id, from = %job.from, to = %job.to, reason = %reason, last_error = ?job.last_error, "export job failed");
        Ok(())
    }

    /// One step of a leased job: as far as it can go without waiting.
    async fn advance(&self, mut job: ExportJob) -> Result<(), WorkError> {
        loop {
            let now = Timestamp::now();
            if job.state.is_open() && now > job.deadline {
                if let Some(upstream) = job.waiting_on.clone() {
                    return self.give_up_waiting(&job, &upstream).await;
                }
                return self
                    .fail(&job, format!("deadline passed while {}", job.state.name()))
                    .await;
            }
            match job.state {
                JobState::Created => return self.create(&job).await,
                JobState::Polling => {
                    let Some(export) = job.ocp_export_id.clone() else {
                        return self.fail(&job, "polling without an export id".into()).await;
                    };
                    self.metrics.export_polls.inc();
                    match self.ocp.status(&export).await {
                        Ok(ExportStatus::Pending | ExportStatus::Running) => {
                            let attempt = job.attempt.saturating_add(1);
                            let next = self.next_poll(now, attempt);
                            self.finish(&job.id, Some(next), move |job| {
                                job.attempt = attempt;
                                job.waiting_on = None;
                                Ok(())
                            })
                            .await?;
                            return Ok(());
                        }
                        Ok(ExportStatus::Completed) => {
                            job = self.go(&job.id, JobState::Completed).await?;
                        }
                        Ok(ExportStatus::Expired) | Err(OcpError::Expired(_)) => {
                            return self.expire(&job, "expired before it was fetched").await;
                        }
                        Ok(ExportStatus::Failed) => {
                            return self.fail(&job, format!("OCP failed export {export}")).await;
                        }
                        Err(OcpError::Refused { status: 404, .. }) => {
                            return self.expire(&job, "OCP does not know the export").await;
                        }
                        Err(e @ OcpError::Refused { .. }) => {
                            return self.fail(&job, e.to_string()).await;
                        }
                        Err(e) => return self.wait_on(&job, &e).await,
                    }
                }
                JobState::Completed => {
                    job = self.go(&job.id, JobState::Fetching).await?;
                }
                JobState::Fetching => {
                    let Some(export) = job.ocp_export_id.clone() else {
                        return self
                            .fail(&job, "fetching without an export id".into())
                            .await;
                    };
                    return match self.fetch(&job, &export).await {
                        Ok(mut fetched) => {
                            let owner = self.config.owner.clone();
                            self.finish(&job.id, None, move |job| {
                                job.transition(&owner, Timestamp::now(), JobState::Done)?;
                                job.last_error = None;
                                Ok(())
                            })
                            .await?;
                            self.metrics.export_jobs.with_label_values(&["done"]).inc();
                            tracing::info!(
                                job = %job.id, export = %export, stored = fetched.stored,
                                already_stored = fetched.already, failed = fetched.failed,
                                cdrs_filled = fetched.cdrs_filled, "export job done"
                            );
                            self.finalize(&job, std::mem::take(&mut fetched.reasons))
                                .await
                        }
                        Err(WorkError::Ocp(OcpError::Expired(_))) => {
                            self.expire(&job, "expired while it was being fetched")
                                .await
                        }
                        Err(WorkError::Ocp(e)) => self.wait_on(&job, &e).await,
                        Err(e) => Err(e),
                    };
                }
                JobState::Done | JobState::Failed | JobState::Expired => {
                    self.finish(&job.id, None, |_| Ok(())).await?;
                    return Ok(());
                }
            }
        }
    }

    /// `created`: asks OCP for the export, one running export per group.
    async fn create(&self, job: &ExportJob) -> Result<(), WorkError> {
        let now = Timestamp::now();
        // Queue behind this group's export that OCP is running (OCP allows one per group).
        let open = self.store().open_jobs(10_000).await?;
        if let Some(ahead) = open
            .iter()
            .find(|j| j.group_id == job.group_id && j.state == JobState::Polling && j.id != job.id)
        {
            let message = format!("queued behind {} (one running export per group)", ahead.id);
            return self.queue(job, message).await;
        }
        match self
            .ocp
            .create_export(
                &job.group_id,
                job.from,
                job.to,
                &RECOVERY_DATA,
                &job.idempotency_token,
            )
            .await
        {
            Ok(export) => {
                let owner = self.config.owner.clone();
                let next = self.next_poll(now, 0);
                let id = export.clone();
                self.finish(&job.id, Some(next), move |job| {
                    job.transition(&owner, Timestamp::now(), JobState::Polling)?;
                    job.ocp_export_id = Some(id.clone());
                    job.attempt = 0;
                    job.last_error = None;
                    job.waiting_on = None;
                    Ok(())
                })
                .await?;
                self.metrics.exports_created.inc();
                tracing::info!(job = %job.id, export = %export, group = %job.group_id, from = %job.from, to = %job.to, "export requested");
                Ok(())
            }
            Err(e @ OcpError::Refused { .. }) => self.fail(job, e.to_string()).await,
            // Another replica (or another of our jobs, launched at the same moment) got the
            // group's one running export first: queued, as above.
            Err(e @ OcpError::GroupBusy(_)) => {
                tracing::debug!(job = %job.id, error = %e, "queued behind the group's running export");
                self.queue(job, e.to_string()).await
            }
            Err(e) => self.wait_on(job, &e).await,
        }
    }

    /// A `created` job waits for its group's running export: asks again at the first poll
    /// interval, saying why.
    async fn queue(&self, job: &ExportJob, message: String) -> Result<(), WorkError> {
        let next = self.next_poll(Timestamp::now(), 0);
        self.finish(&job.id, Some(next), move |job| {
            job.last_error = Some(message.clone());
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Closes the job as `failed` or `expired` with `reason`, and counts it.
    async fn close(&self, job: &ExportJob, state: JobState, reason: &str) -> Result<(), WorkError> {
        let owner = self.config.owner.clone();
        let message = reason.to_string();
        self.finish(&job.id, None, move |job| {
            job.transition(&owner, Timestamp::now(), state)?;
            job.last_error = Some(message.clone());
            Ok(())
        })
        .await?;
        self.metrics
            .export_jobs
            .with_label_values(&[state.name()])
            .inc();
        Ok(())
    }

    /// Fails the job loudly (metric, error log) and counts an attempt for its missing calls.
    async fn fail(&self, job: &ExportJob, reason: String) -> Result<(), WorkError> {
        self.close(job, JobState::Failed, &reason).await?;
        tracing::error!(job = %job.id, group = %job.group_id, from = %job.from, to = %job.to, reason = %reason, "export job failed");
        self.finalize(job, HashMap::new()).await
    }

    /// The export's data is gone: this job ends `expired`, and a new one asks again for the
    /// same range.
    async fn expire(&self, job: &ExportJob, reason: &str) -> Result<(), WorkError> {
        self.close(job, JobState::Expired, reason).await?;
        let now = Timestamp::now();
        let range = ExportRange {
            group_id: job.group_id.clone(),
            from: job.from,
            to: job.to,
        };
        let deadline = now
            .checked_add(self.config.scan.job_deadline)
            .unwrap_or(now);
        let again = create_job_for_range(self.store(), &range, &job.purpose, now, deadline).await?;
        tracing::warn!(job = %job.id, reason, successor = ?again.as_ref().map(JobId::as_str), "export expired; requesting it again");
        self.wake.notify_one();
        Ok(())
    }

    /// The metadata task, then the download task; the first OCP error (e.g. expiry) stops the
    /// step. CDRs first, so a call whose End never arrived has its facts (duration, routing)
    /// before its recording goes through the pipeline.
    async fn fetch(&self, job: &ExportJob, export: &str) -> Result<Fetched, WorkError> {
        let started = std::time::Instant::now();
        let cdrs_filled = self.metadata_task(job, export).await?;
        tracing::info!(job = %job.id, export, filled = cdrs_filled, seconds = started.elapsed().as_secs_f64(), "export CDR records applied");
        let mut fetched = self.download_task(job, export).await?;
        fetched.cdrs_filled = cdrs_filled;
        Ok(fetched)
    }

    /// Every page of the export's files that `wanted` accepts, passed to `each` (which may run
    /// several at once). A listing that never ends (a page token seen before, or more than
    /// [`MAX_PAGES`] pages) is OCP's fault: the step stops, the job tries again later.
    async fn each_file<F, Fut>(
        &self,
        export: &str,
        wanted: impl Fn(&ExportFile) -> bool,
        each: F,
    ) -> Result<(), WorkError>
    where
        F: Fn(ExportFile) -> Fut,
        Fut: std::future::Future<Output = Result<(), WorkError>>,
    {
        let mut page: Option<String> = None;
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let listing = self.ocp.files(export, page.as_deref()).await?;
            let files = listing.files.into_iter().filter(|f| wanted(f));
            let mut running = futures_util::stream::iter(files.map(&each))
                .buffer_unordered(self.config.download_concurrency);
            while let Some(result) = running.next().await {
                result?;
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

    /// The metadata task: reads every CDR file of the export (batches of OCP's `dialog_start`
    /// and `dialog_end` records, one a line) and applies the records of calls that lack
    /// something. Returns how many records filled something in.
    async fn metadata_task(&self, job: &ExportJob, export: &str) -> Result<u64, WorkError> {
        let filled = std::sync::atomic::AtomicU64::new(0);
        self.each_file(
            export,
            |file| file.data_type().is_some_and(DataType::is_cdr),
            |file| {
                let filled = &filled;
                async move {
                    let n = self.apply_cdr_file(job, export, &file).await?;
                    filled.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                }
            },
        )
        .await?;
        Ok(filled.into_inner())
    }

    /// Reads one CDR batch file of the export through a spool file, one record a line; applies
    /// the records of calls missing their Start, End or group. A bad file or record is counted
    /// and logged, never fatal. Returns how many records filled something in.
    async fn apply_cdr_file(
        &self,
        job: &ExportJob,
        export: &str,
        file: &ExportFile,
    ) -> Result<u64, WorkError> {
        let spool = self.spool_path("cdr").await?;
        match self
            .ocp
            .download(export, file, &spool.0, MAX_CDR_FILE_BYTES)
            .await
        {
            Ok(_) => {}
            // Listed but not served, too large, not the size listed: that file is bad, the
            // export is not (other errors, e.g. expiry, stop the step).
            Err(e @ OcpError::Refused { .. }) => {
                self.metrics.export_cdrs.with_label_values(&["bad"]).inc();
                tracing::warn!(job = %job.id, file = %file.name.escape_debug(), error = %e, "CDR file not taken");
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        }
        let io = |source| OcpError::Io {
            path: spool.0.clone(),
            source,
        };
        let opened = tokio::fs::File::open(&spool.0).await.map_err(io)?;
        let mut reader = tokio::io::BufReader::new(opened);
        let mut line = Vec::new();
        let (mut filled, mut bad, mut number) = (0u64, 0u64, 0u64);
        let mut first_bad = None;
        loop {
            line.clear();
            let limit = crate::ocp::cdr::MAX_LINE_BYTES as u64 + 1;
            let n = (&mut reader)
                .take(limit)
                .read_until(b'\n', &mut line)
                .await
                .map_err(io)?;
            if n == 0 {
                break;
            }
            number += 1;
            let outcome = if line.len() as u64 == limit && !line.ends_with(b"\n") {
                // Too long: skip to its end.
                let mut rest = Vec::new();
                loop {
                    rest.clear();
                    let m = (&mut reader)
                        .take(limit)
                        .read_until(b'\n', &mut rest)
                        .await
                        .map_err(io)?;
                    if m == 0 || rest.ends_with(b"\n") {
                        break;
                    }
                }
                Err(format!("above {} bytes", crate::ocp::cdr::MAX_LINE_BYTES))
            } else if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            } else {
                self.apply_cdr_record(job, &line).await?
            };
            match outcome {
                Ok(true) => filled += 1,
                Ok(false) => {}
                Err(why) => {
                    bad += 1;
                    self.metrics.export_cdrs.with_label_values(&["bad"]).inc();
                    first_bad.get_or_insert(format!("line {number}: {why}"));
                }
            }
        }
        if let Some(first) = first_bad {
            tracing::warn!(job = %job.id, file = %file.name.escape_debug(), bad, first = %first, "bad CDR records in export; skipped");
        }
        Ok(filled)
    }

    /// One record line: `Ok(true)` it filled something in, `Ok(false)` nothing to fill, the
    /// inner `Err` what is wrong with the record.
    async fn apply_cdr_record(
        &self,
        job: &ExportJob,
        line: &[u8],
    ) -> Result<Result<bool, String>, WorkError> {
        let mapped = match serde_json::from_slice::<serde_json::Value>(line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|record| crate::ocp::cdr::map_record(&record, &job.group_id))
        {
            Ok(mapped) => mapped,
            Err(why) => return Ok(Err(why)),
        };
        let known = self.store().get(&mapped.call_id).await?.is_some_and(|r| {
            r.flags.started.is_some() && r.flags.ended.is_some() && r.cdr.group_id.is_some()
        });
        if known {
            self.metrics.export_cdrs.with_label_values(&["known"]).inc();
            return Ok(Ok(false));
        }
        let (_, applied) = self
            .store()
            .update(&mapped.call_id, &mapped.change, Timestamp::now())
            .await?;
        let changed = applied.outcome == Outcome::Changed;
        let outcome = if changed { "filled" } else { "unchanged" };
        self.metrics.export_cdrs.with_label_values(&[outcome]).inc();
        Ok(Ok(changed))
    }

    async fn spool_path(&self, what: &str) -> Result<SpoolFile, WorkError> {
        let dir = &self.config.spool_dir;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| OcpError::Io {
                path: dir.clone(),
                source,
            })?;
        Ok(SpoolFile(dir.join(format!(
            "export-{what}.{:016x}.part",
            rand::random::<u64>()
        ))))
    }

    /// The download task: every audio file of a call not yet stored goes through the stage-1
    /// path.
    async fn download_task(&self, job: &ExportJob, export: &str) -> Result<Fetched, WorkError> {
        let counts = Mutex::new(Fetched::default());
        let audio = |file: &ExportFile| file.data_type() == Some(DataType::Audio);
        self.each_file(export, audio, |file| {
            let counts = &counts;
            async move {
                let recovered = self.recover(job, export, &file).await?;
                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                match recovered.outcome {
                    "stored" => c.stored += 1,
                    "already_stored" | "already_received" => c.already += 1,
                    _ => c.failed += 1,
                }
                if let Some((call_id, why)) = recovered.failure {
                    c.reasons.insert(call_id, why);
                }
                self.metrics
                    .export_files
                    .with_label_values(&[recovered.outcome])
                    .inc();
                Ok(())
            }
        })
        .await?;
        Ok(counts.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// One audio file of an export. OCP errors stop the step (the job is tried again); a bad
    /// file, or an object store that refused the staging write, is counted and its reason given
    /// to finalize (which records it on the call with the round's attempt).
    async fn recover(
        &self,
        job: &ExportJob,
        export: &str,
        file: &ExportFile,
    ) -> Result<Recovered, WorkError> {
        let Some(name) = crate::ocp::name::parse(&file.name) else {
            tracing::warn!(job = %job.id, file = %file.name.escape_debug(), "not an OCP recording name; skipped");
            return Ok(Recovered::only("bad_name"));
        };
        let Ok(call_id) = CallId::parse(&name.dialog_id) else {
            return Ok(Recovered::only("bad_name"));
        };
        if name.group_id != job.group_id {
            tracing::warn!(job = %job.id, file = %file.name, "recording of another group in export; skipped");
            return Ok(Recovered::only("bad_name"));
        }
        let record = self.store().get(&call_id).await?;
        if record.as_ref().is_some_and(|r| r.flags.stored.is_some()) {
            return Ok(Recovered::only("already_stored"));
        }
        if record.as_ref().is_some_and(|r| r.flags.received.is_some()) {
            // Streamed after all and in the service's pipeline: not the export's business.
            return Ok(Recovered::only("already_received"));
        }
        // The download refuses a file above the limit (declared or streamed) before writing it.
        let spool = self.spool_path("audio").await?;
        match self
            .ocp
            .download(export, file, &spool.0, self.config.max_file_bytes)
            .await
        {
            Ok(_) => {}
            Err(OcpError::Refused { status: 404, .. }) => {
                let why = format!("{} listed but not served by export {export}", file.name);
                return Ok(Recovered::failed(call_id, why));
            }
            // Too large, or not the size listed: the file's bytes are bad (charged to the call).
            Err(e @ OcpError::Refused { .. }) => {
                return Ok(Recovered::failed(call_id, e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        let io = |source| OcpError::Io {
            path: spool.0.clone(),
            source,
        };
        let (crc32c, sha256, bytes) =
            crate::objects::checksum_file(&spool.0)
                .await
                .map_err(|e| OcpError::Io {
                    path: spool.0.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
        let mut head = [0u8; 12];
        let mut opened = tokio::fs::File::open(&spool.0).await.map_err(io)?;
        let n = opened.read(&mut head).await.map_err(io)?;
        if !looks_like_audio(&head[..n]) {
            let why = format!(
                "export file {} is not an audio file callrec takes",
                file.name
            );
            return Ok(Recovered::failed(call_id, why));
        }
        let spooled = Spooled {
            path: spool.0.clone(),
            bytes,
            sha256_hex: sha256,
            crc32c_base64: crc32c,
            content_type: "audio/wav".into(),
        };
        let outcome = match receive(&self.pipeline, &call_id, &spooled).await {
            Ok((_, outcome)) => outcome,
            Err(crate::receive::ReceiveError::Store(e)) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(call_id = %call_id, error = %e, "staging a recovered recording failed");
                let why = format!("staging the export's recording failed: {e}");
                return Ok(Recovered::failed(call_id, why));
            }
        };
        drop(spool);
        if outcome == Outcome::Conflict {
            tracing::warn!(call_id = %call_id, job = %job.id, "the export's recording differs from the one received; kept for review");
            return Ok(Recovered::only("conflict"));
        }
        match self.pipeline.run(&call_id).await {
            Ok(Finished::Stored) => Ok(Recovered::only("stored")),
            Ok(Finished::NothingToDo) => Ok(Recovered::only("already_stored")),
            Err(e) => {
                // Received: the pipeline recorded the failure on the call, and a later scan
                // takes it over (`resume_stale`); finalize leaves received calls alone.
                self.metrics.failures.with_label_values(&[e.kind()]).inc();
                tracing::error!(call_id = %call_id, kind = e.kind(), error = %e, "processing a recovered recording failed");
                Ok(Recovered::only("failed"))
            }
        }
    }

    async fn record_failure(&self, call_id: &CallId, error: String) -> Result<(), WorkError> {
        self.store()
            .update(call_id, &CallChange::Failed { error }, Timestamp::now())
            .await?;
        Ok(())
    }

    /// Calls of the job's range that were missing when it was recorded and still are: one more
    /// attempt counted (with the reason the fetch gave for the call's file, if it had one);
    /// out of attempts, `lost` (metric + error log).
    async fn finalize(
        &self,
        job: &ExportJob,
        mut reasons: HashMap<CallId, String>,
    ) -> Result<(), WorkError> {
        let result = self.count_attempts(job, &mut reasons).await;
        // Files of calls the range's query did not return (e.g. ended after the job was
        // recorded): their reason still goes on the call.
        for (call_id, why) in reasons {
            self.record_failure(&call_id, format!("export job {}: {why}", job.id))
                .await?;
        }
        result
    }

    async fn count_attempts(
        &self,
        job: &ExportJob,
        reasons: &mut HashMap<CallId, String>,
    ) -> Result<(), WorkError> {
        if job.from >= job.created_at {
            return Ok(());
        }
        let mut cursor = None;
        let mut missing = 0u64;
        let mut lost = 0u64;
        loop {
            let page = self
                .store()
                .pending(&PendingQuery {
                    group_id: Some(job.group_id.clone()),
                    ended_from: Some(job.from),
                    ended_before: job.created_at,
                    limit: 500,
                    cursor,
                })
                .await?;
            for call in &page.items {
                let in_range = dialog_time(call).is_some_and(|t| job.from <= t && t < job.to);
                // Received calls are the service's own work (resumed, not re-exported).
                if !in_range || call.flags.received.is_some() {
                    continue;
                }
                missing += 1;
                let error = match reasons.remove(&call.call_id) {
                    Some(why) => format!("export job {}: {why}", job.id),
                    None => format!("not recovered by export job {}", job.id),
                };
                let (record, _) = self
                    .store()
                    .update(
                        &call.call_id,
                        &CallChange::Failed { error },
                        Timestamp::now(),
                    )
                    .await?;
                if record.attempts >= self.config.max_attempts {
                    let reason = format!(
                        "still missing after {} export attempts (last: job {})",
                        record.attempts, job.id
                    );
                    let (_, applied) = self
                        .store()
                        .update(
                            &call.call_id,
                            &CallChange::Lost {
                                reason: reason.clone(),
                            },
                            Timestamp::now(),
                        )
                        .await?;
                    if applied.outcome == Outcome::Changed {
                        lost += 1;
                        self.metrics.calls_lost.inc();
                        tracing::error!(call_id = %call.call_id, job = %job.id, reason, "recording lost");
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if missing > 0 {
            tracing::warn!(job = %job.id, missing, lost, "calls the export did not recover; the next scan tries again");
        }
        Ok(())
    }
}

/// The shards of a backfill: `[from, to)` widened to whole hours, cut into ranges of at most
/// `shard_hours` (1–48).
pub fn backfill_shards(
    group_id: &str,
    from: Timestamp,
    to: Timestamp,
    shard_hours: u32,
) -> Vec<ExportRange> {
    let start = super::plan::floor_hour(from);
    let mut end = super::plan::floor_hour(to);
    if end < to {
        end = end
            .checked_add(SignedDuration::from_hours(1))
            .unwrap_or(end);
    }
    let step = SignedDuration::from_hours(i64::from(shard_hours.clamp(1, 48)));
    let mut shards = Vec::new();
    let mut at = start;
    while at < end {
        let next = at.checked_add(step).unwrap_or(end).min(end);
        let next = if next <= at { end } else { next };
        shards.push(ExportRange {
            group_id: group_id.to_string(),
            from: at,
            to: next,
        });
        at = next;
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_shards_are_whole_hours_of_at_most_two_days() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let shards = backfill_shards(
            "g",
            t("2026-11-01T10:30:00Z"),
            t("2026-11-05T09:10:00Z"),
            48,
        );
        assert_eq!(shards.first().unwrap().from, t("2026-11-01T10:00:00Z"));
        assert_eq!(shards.last().unwrap().to, t("2026-11-05T10:00:00Z"));
        assert_eq!(shards.len(), 2);
        for pair in shards.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
        for s in &shards {
            let hours = s.to.duration_since(s.from).as_hours();
            assert!((1..=48).contains(&hours), "{hours}");
        }
        assert!(
            backfill_shards(
                "g",
                t("2026-11-01T10:00:00Z"),
                t("2026-11-01T10:00:00Z"),
                48
            )
            .is_empty()
        );
        assert_eq!(
            backfill_shards("g", t("2026-11-01T10:00:00Z"), t("2026-11-01T13:00:00Z"), 1).len(),
            3
        );
    }
}
