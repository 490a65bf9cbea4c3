//! One step of a leased job: [`super::step::step`] says what to do, [`Performer`] does it — the
//! store, OCP, [`super::fetch`] — feeds the answer back, and writes the step's end (the next
//! timer and the lease given back, or the close) in one fenced conditional write, with the
//! metrics and logs that go with it.

use super::fetch::{FetchReport, fetch};
use super::finalize::finalize;
use super::lease::{Lease, Leases};
use super::plan::ExportRange;
use super::scanner::create_job_for_range;
use super::step::{Ask, Close, Note, Observation, Reschedule, Rules, Step, step};
use super::{Context, WorkError};
use crate::ocp::{AUDIT_DATA, RECOVERY_DATA};
use crate::store::{ExportJob, JobId, JobState, LeaseError, first_open_job};

/// What working a step needs, borrowed from the replica's [`super::Reconciler`].
pub(super) struct Performer<'a> {
    pub ctx: &'a Context,
    pub rules: &'a Rules,
    pub leases: &'a Leases,
    /// Woken when a successor job is recorded.
    pub wake: &'a tokio::sync::Notify,
}

impl Performer<'_> {
    /// One step of a leased job: as far as it can go without waiting.
    pub async fn drive(&self, mut job: ExportJob, lease: &Lease) -> Result<(), WorkError> {
        let mut seen = Observation::Due;
        let mut fetched = FetchReport::default();
        loop {
            let now = self.ctx.clock.now();
            match step(&job, seen, now, self.rules, rand::random()) {
                Step::Ask(ask) => seen = self.ask(&job, ask, &mut fetched).await?,
                Step::Go(state) => {
                    let (owner, fence) = (self.leases.owner(), lease.fence);
                    job = self
                        .write(lease, &|job| {
                            job.transition(owner, fence, state)?;
                            job.waiting_on = None;
                            Ok(())
                        })
                        .await?;
                    seen = Observation::Due;
                }
                Step::Reschedule(next) => return self.reschedule(&job, lease, next).await,
                Step::Close(close) => return self.close(&job, lease, close, fetched).await,
            }
        }
    }

    /// Performs what a step asked; returns what it found.
    async fn ask(
        &self,
        job: &ExportJob,
        ask: Ask,
        fetched: &mut FetchReport,
    ) -> Result<Observation, WorkError> {
        Ok(match ask {
            Ask::GroupRunning => {
                let running = first_open_job(self.ctx.store(), &|j| {
                    j.group_id == job.group_id && j.state == JobState::Polling && j.id != job.id
                })
                .await?;
                match running {
                    Some(ahead) => Observation::GroupRunning { ahead: ahead.id },
                    None => Observation::GroupFree,
                }
            }
            Ask::Create => {
                let data: &[crate::ocp::DataType] = if job.purpose == "audit" {
                    &AUDIT_DATA
                } else {
                    &RECOVERY_DATA
                };
                let created = self
                    .ctx
                    .ocp
                    .create_export(
                        &job.group_id,
                        job.from,
                        job.to,
                        data,
                        &job.idempotency_token,
                    )
                    .await;
                match created {
                    Ok(export_id) => Observation::Created { export_id },
                    Err(e) => Observation::Failed(e),
                }
            }
            Ask::Status(export) => {
                self.ctx.metrics.export_polls.inc();
                match self.ctx.ocp.status(&export).await {
                    Ok(status) => Observation::Status(status),
                    Err(e) => Observation::Failed(e),
                }
            }
            Ask::Fetch(export) => match fetch(self.ctx, job, &export).await {
                Ok(mut report) => {
                    let seen = if report.out_of_time {
                        Observation::FetchOutOfTime
                    } else if let Some(error) = report.deferred_error.take() {
                        tracing::warn!(job = %job.id, export, deferred = report.deferred, error = %error, "files OCP could not serve now; the rest were fetched, the job fetches again later");
                        Observation::Failed(error)
                    } else {
                        Observation::Fetched
                    };
                    *fetched = report;
                    seen
                }
                Err(WorkError::Ocp(e)) => Observation::Failed(e),
                Err(e) => return Err(e),
            },
        })
    }

    /// A write under the lease.
    async fn write(
        &self,
        lease: &Lease,
        f: &(dyn Fn(&mut ExportJob) -> Result<(), LeaseError> + Send + Sync),
    ) -> Result<ExportJob, WorkError> {
        Ok(self.leases.write(self.ctx.store(), lease, f).await??)
    }

    /// Ends the step with the job open: counts and logs what the step says, then sets the timer
    /// and gives the lease back in one write.
    async fn reschedule(
        &self,
        job: &ExportJob,
        lease: &Lease,
        next: Reschedule,
    ) -> Result<(), WorkError> {
        let metrics = &self.ctx.metrics;
        let error = next.last_error.as_deref().unwrap_or_default();
        match next.note {
            Note::Quiet => {}
            Note::Requested => metrics.exports_created.inc(),
            Note::Unavailable => {
                metrics.ocp_unavailable.inc();
                tracing::warn!(job = %job.id, state = job.state.name(), error, "OCP unavailable; trying again later");
            }
            Note::NeedsPerson { first } => {
                metrics.ocp_auth_failures.inc();
                if first {
                    tracing::error!(job = %job.id, group = %job.group_id, error, "OCP refused callrec's credentials or TLS failed; the job waits for a person to fix it (no call is charged)");
                }
            }
        }
        let (owner, fence) = (self.leases.owner(), lease.fence);
        let written = self
            .write(lease, &|j: &mut ExportJob| {
                if next.state != j.state {
                    j.transition(owner, fence, next.state)?;
                }
                if let Some(export) = &next.export_id {
                    j.ocp_export_id = Some(export.clone());
                }
                j.attempt = next.attempt;
                j.last_error = next.last_error.clone();
                j.waiting_on = next.waiting_on.map(str::to_string);
                j.next_poll_at = Some(next.at);
                j.release(owner, fence)
            })
            .await?;
        if next.note == Note::Requested {
            tracing::info!(job = %job.id, export = ?written.ocp_export_id, group = %job.group_id, from = %job.from, to = %job.to, "export requested");
        }
        Ok(())
    }

    /// Ends the step with the job closed: the write, the metric and the log, then what the close
    /// asks for — a successor for the same range, the attempts of its missing calls.
    async fn close(
        &self,
        job: &ExportJob,
        lease: &Lease,
        close: Close,
        fetched: FetchReport,
    ) -> Result<(), WorkError> {
        let (owner, fence) = (self.leases.owner(), lease.fence);
        let reason = (!close.reason.is_empty()).then(|| close.reason.clone());
        let audited = job.purpose == "audit" && close.state == JobState::Done;
        let summary = if audited && job.state != close.state {
            Some(self.conclude_audit(job, &fetched).await?)
        } else {
            None
        };
        self.write(lease, &|j: &mut ExportJob| {
            if j.state != close.state {
                j.transition(owner, fence, close.state)?;
            }
            if summary.is_some() {
                j.audit = summary.clone();
            }
            j.last_error = reason.clone();
            j.next_poll_at = None;
            j.release(owner, fence)
        })
        .await?;
        if job.state == close.state {
            return Ok(()); // it was closed already: only the lease went back
        }
        self.ctx
            .metrics
            .export_jobs
            .with_label_values(&[close.state.name()])
            .inc();
        match close.state {
            JobState::Done => tracing::info!(
                job = %job.id, export = ?job.ocp_export_id, stored = fetched.stored,
                already_stored = fetched.already, failed = fetched.failed,
                cdrs_filled = fetched.cdrs_filled, "export job done"
            ),
            JobState::Expired => {}
            _ => {
                tracing::error!(job = %job.id, group = %job.group_id, from = %job.from, to = %job.to, reason = %close.reason, last_error = ?job.last_error, "export job failed")
            }
        }
        if close.successor {
            let now = self.ctx.clock.now();
            let range = ExportRange {
                group_id: job.group_id.clone(),
                from: job.from,
                to: job.to,
            };
            let expiries = job.expiries.saturating_add(1);
            let store = self.ctx.store();
            let deadline = now
                .checked_add(self.ctx.config.scan.job_deadline)
                .unwrap_or(now);
            let again =
                create_job_for_range(store, &range, &job.purpose, now, deadline, expiries).await?;
            tracing::warn!(job = %job.id, reason = %close.reason, expiries, successor = ?again.as_ref().map(JobId::as_str), "export expired; requesting it again");
            self.wake.notify_one();
        }
        // An audit's calls are charged nothing: those it found go to recovery as any missing
        // call does.
        if close.finalize && job.purpose != "audit" {
            finalize(self.ctx, job, fetched.reasons).await?;
        }
        Ok(())
    }

    /// An audit export read: marks what it found and counts the day.
    async fn conclude_audit(
        &self,
        job: &ExportJob,
        fetched: &FetchReport,
    ) -> Result<crate::store::jobs::AuditSummary, WorkError> {
        let day = job.from.to_zoned(jiff::tz::TimeZone::UTC).date();
        let now = self.ctx.clock.now();
        let summary = super::audit::conclude(
            self.ctx.store(),
            &job.group_id,
            day,
            &fetched.reported,
            fetched.unreadable,
            now,
        )
        .await?;
        let metrics = &self.ctx.metrics;
        metrics
            .audit_calls
            .with_label_values(&["found"])
            .inc_by(summary.found);
        metrics
            .audit_calls
            .with_label_values(&["not_in_ocp"])
            .inc_by(summary.not_in_ocp);
        if summary.unreadable > 0 {
            tracing::warn!(job = %job.id, group = %job.group_id, %day, records = summary.unreadable, "records of OCP's export could not be read: a call they name may be counted as not in OCP");
        }
        if summary.not_in_ocp > 0 {
            tracing::warn!(job = %job.id, group = %job.group_id, %day, calls = summary.not_in_ocp, first = ?summary.not_in_ocp_first, "calls callrec has that OCP's export of their day does not report; left as they are");
        }
        tracing::info!(job = %job.id, group = %job.group_id, %day, reported = summary.reported, stored = summary.stored, found = summary.found, pending = summary.pending, "day audited");
        Ok(summary)
    }
}
