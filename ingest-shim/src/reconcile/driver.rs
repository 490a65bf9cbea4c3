//! The driver: one timer loop per replica.
//!
//! The loop sleeps until the earliest due job (or the next scan), leases each due job it has a
//! slot for ([`super::lease`]) and has [`super::perform`] work it one step while the lease is
//! kept renewed; losing the lease, or shutdown, stops the step. Timers are the jobs'
//! `next_poll_at` in the store, so they survive restarts; while a replica works a job the timer
//! is the lease's end, so others leave it alone.

use super::lease::{Clock, Leases, NotLeased};
use super::perform::Performer;
use super::plan::{ExportRange, backfill_shards};
use super::scanner::{ScanReport, create_job_for_range, scan_once};
use super::step::Rules;
use super::{Context, WorkError, WorkerConfig};
use crate::metrics::Metrics;
use crate::ocp::OcpExports;
use crate::pipeline::Pipeline;
use crate::store::{ExportJob, JobId, LeaseError, StoreError, first_open_job};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The reconciler of one replica.
pub struct Reconciler {
    /// What every stage shares.
    ctx: Context,
    /// The state machine's knobs.
    rules: Rules,
    /// This replica's leases, and the tokens it watches on others'.
    leases: Leases,
    /// Jobs this replica is working now (a slot each, `jobs_concurrency` in all).
    working: Mutex<HashSet<JobId>>,
    /// Woken when a step ends or jobs are created (a slot is free, a timer may have moved).
    wake: tokio::sync::Notify,
}

impl Reconciler {
    pub fn new(
        pipeline: Pipeline,
        ocp: Arc<dyn OcpExports>,
        config: WorkerConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Self::with_clock(pipeline, ocp, config, metrics, Clock::system())
    }

    /// The same on a given wall clock (tests play replicas on skewed hosts).
    pub fn with_clock(
        pipeline: Pipeline,
        ocp: Arc<dyn OcpExports>,
        config: WorkerConfig,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Arc<Self> {
        Arc::new(Reconciler {
            rules: config.rules(),
            leases: Leases::new(config.owner.clone(), config.lease_ttl, clock),
            ctx: Context {
                pipeline,
                ocp,
                config,
                metrics,
                clock,
            },
            working: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn performer(&self) -> Performer<'_> {
        Performer {
            ctx: &self.ctx,
            rules: &self.rules,
            leases: &self.leases,
            wake: &self.wake,
        }
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.ctx.config
    }

    /// One scan for missing recordings (export jobs recorded for them, calls past retention
    /// lost), then the take-over of stale received calls.
    pub async fn scan_once(&self) -> Result<ScanReport, StoreError> {
        let report = scan_once(&self.ctx).await?;
        if !report.created.is_empty() {
            self.wake.notify_one();
        }
        Ok(report)
    }

    /// Records the export jobs of a backfill of `group_id` over `[from, to)` (widened to whole
    /// hours), one per shard of `shard_hours`. Returns every shard, the ones an earlier run
    /// (still open) created included.
    pub async fn plan_backfill(
        &self,
        group_id: &str,
        from: Timestamp,
        to: Timestamp,
        shard_hours: u32,
    ) -> Result<Vec<ExportRange>, StoreError> {
        let now = self.ctx.clock.now();
        let deadline = self.deadline(now);
        let shards = backfill_shards(group_id, from, to, shard_hours);
        for range in &shards {
            create_job_for_range(self.ctx.store(), range, "backfill", now, deadline, 0).await?;
        }
        self.wake.notify_one();
        Ok(shards)
    }

    fn deadline(&self, now: Timestamp) -> Timestamp {
        now.checked_add(self.ctx.config.scan.job_deadline)
            .unwrap_or(now)
    }

    /// The timer loop with a scan every `scan_interval`, until `shutdown`. Jobs in progress are
    /// stopped at shutdown and their leases given back, so another replica resumes them at once.
    pub async fn run(self: &Arc<Self>, shutdown: CancellationToken) {
        self.timer_loop(shutdown, true, &|_| false).await;
    }

    /// The timer loop without scans, until no open job is one `awaited` says it waits for
    /// (checked after each round, reading the open jobs page by page), or `shutdown`.
    pub async fn work_until(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        awaited: impl Fn(&ExportJob) -> bool + Send + Sync,
    ) {
        self.timer_loop(shutdown, false, &awaited).await;
    }

    async fn timer_loop(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        scanning: bool,
        awaited: &(dyn Fn(&ExportJob) -> bool + Send + Sync),
    ) {
        let tasks = TaskTracker::new();
        let mut next_scan = tokio::time::Instant::now();
        let poll_initial = self.ctx.config.poll.initial.unsigned_abs();
        loop {
            if scanning && tokio::time::Instant::now() >= next_scan {
                if let Err(e) = self.scan_once().await {
                    tracing::warn!(error = %e, "reconciliation scan failed; trying again later");
                }
                next_scan = tokio::time::Instant::now() + self.ctx.config.scan_interval;
            }
            let earliest = match self.launch_due(&tasks, &shutdown).await {
                Ok(earliest) => earliest,
                Err(e) => {
                    tracing::warn!(error = %e, "reading due export jobs failed");
                    None
                }
            };
            if !scanning {
                match first_open_job(self.ctx.store(), awaited).await {
                    Ok(None) => break,
                    Ok(Some(_)) => {}
                    Err(e) => tracing::warn!(error = %e, "reading open export jobs failed"),
                }
            }
            // Sleep until the earliest timer, the next scan, or at most the first poll wait
            // (jobs other replicas create are seen by then); a step ending wakes us earlier.
            let mut wait = poll_initial;
            if scanning {
                wait = wait.min(next_scan.saturating_duration_since(tokio::time::Instant::now()));
            }
            if let Some(at) = earliest {
                let until = at.duration_since(self.ctx.clock.now());
                let until = if until.is_positive() {
                    until.unsigned_abs()
                } else {
                    // Due but not taken (no free slot, or another replica's): not a spin.
                    Duration::from_millis(200)
                };
                wait = wait.min(until);
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
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
        let now = self.ctx.clock.now();
        let due = self.ctx.store().due_jobs(now, 100).await?;
        for job in &due {
            let id = job.id.clone();
            {
                let mut working = self.working.lock().unwrap_or_else(|e| e.into_inner());
                if working.len() >= self.ctx.config.jobs_concurrency || working.contains(&id) {
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
        let limit = 1 + self.ctx.config.jobs_concurrency as u32;
        let next = self.ctx.store().due_jobs(horizon, limit).await?;
        let working = self
            .working
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(next
            .into_iter()
            .filter(|j| !working.contains(&j.id))
            .find_map(|j| j.due_at()))
    }

    /// Leases job `id` if it is due and works one step of it, while the lease lasts.
    async fn work(self: &Arc<Self>, id: &JobId, stop: CancellationToken) {
        let store = self.ctx.store();
        let (job, lease, took_over) = match self.leases.take(store, id).await {
            Ok(taken) => taken,
            Err(NotLeased::Busy) => return,
            Err(NotLeased::Store(e)) => {
                tracing::warn!(job = %id, error = %e, "leasing an export job failed");
                return;
            }
        };
        if took_over {
            self.ctx.metrics.lease_takeovers.inc();
            tracing::warn!(job = %id, fence = lease.fence, "took over an export job whose holder stopped renewing its lease");
        }
        let performer = self.performer();
        let result = tokio::select! {
            result = performer.drive(job, &lease) => result,
            lost = self.leases.keep(store, lease.clone()) => Err(match lost {
                LeaseError::NotHolder => WorkError::LeaseLost,
                other => WorkError::Lease(other),
            }),
            _ = stop.cancelled() => Err(WorkError::Stopping),
        };
        let error = match result {
            Ok(()) => return,
            Err(WorkError::LeaseLost | WorkError::Lease(LeaseError::NotHolder)) => {
                self.ctx.metrics.leases_lost.inc();
                tracing::warn!(job = %id, "lease lost while working; the job's writes are fenced off and another replica continues it");
                return;
            }
            Err(e) => e,
        };
        let stopping = matches!(error, WorkError::Stopping);
        if !stopping {
            tracing::warn!(job = %id, error = %error, "export job step failed; trying again later");
        }
        // Give the lease back with the error recorded; when stopping, due at once so another
        // replica continues without waiting for the lease to run out.
        let now = self.ctx.clock.now();
        let next = if stopping {
            now
        } else {
            self.rules.poll.next_poll(now, 1, rand::random())
        };
        let message = error.to_string();
        let (owner, fence) = (self.leases.owner(), lease.fence);
        let _ = self
            .leases
            .write(store, &lease, &|job: &mut ExportJob| {
                if !stopping {
                    job.attempt = job.attempt.saturating_add(1);
                    job.last_error = Some(message.clone());
                }
                job.next_poll_at = job.state.is_open().then_some(next);
                job.release(owner, fence)
            })
            .await;
    }
}
