//! The job state machine, as one pure function: what OCP answered (an [`Observation`]) and the
//! job as stored give the next [`Step`]. No I/O, no clock, no randomness of its own — the driver
//! ([`super::driver`]) performs what a step asks and writes what it decides; the tests below
//! walk every state × observation.
//!
//! ```text
//! created ──create──▶ polling ──completed──▶ completed ──▶ fetching ──all files──▶ done
//!    │ queued (group busy)  │ pending/running: poll again     │ OCP unavailable: wait
//!    ▼                      ▼ expired / 404: expired (+ successor, at most max_expiries)
//! failed (refused, OCP failed it, deadline, too many expiries)
//! ```
//!
//! What each answer costs: an unavailable OCP or identity provider, refused credentials and an
//! untrusted certificate make the job *wait* (rescheduled, `waiting_on` set, no call charged —
//! even past the deadline, when the job closes uncharged and the next scan asks again). A refusal
//! that concerns the job (a 4xx other than 404/409/410, an export OCP failed) closes it `failed`
//! and charges its calls an attempt ([`Close::finalize`]).

use super::schedule::PollSchedule;
use crate::ocp::{ExportStatus, OcpError};
use crate::store::{ExportJob, JobId, JobState};
use jiff::{SignedDuration, Timestamp};

/// The knobs of the rules, from `[reconcile]`.
#[derive(Debug, Clone)]
pub struct Rules {
    pub poll: PollSchedule,
    /// The longest wait a `Retry-After` may impose.
    pub max_retry_after: SignedDuration,
    /// Expiries of a range before its job fails instead of asking again.
    pub max_expiries: u32,
}

/// What the driver learned since the last step.
#[derive(Debug)]
pub enum Observation {
    /// Nothing asked yet: the job was just leased, or just moved.
    Due,
    /// Another export of the job's group is running at OCP (one per group), seen in the store.
    GroupRunning { ahead: JobId },
    /// No other export of the group is running: OCP may be asked.
    GroupFree,
    /// OCP made the export.
    Created { export_id: String },
    /// OCP's answer to a status poll.
    Status(ExportStatus),
    /// Every file of the export was taken (each bad or missing one failed on its own).
    Fetched,
    /// The deadline passed between two files: the fetch stopped there.
    FetchOutOfTime,
    /// OCP answered with an error (while creating, polling or fetching).
    Failed(OcpError),
}

/// What the driver asks OCP (or the store) next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Whether another export of the group is running (the store's open jobs).
    GroupRunning,
    /// Create the export (idempotently).
    Create,
    /// Poll the export.
    Status(String),
    /// Read its CDRs, then download its recordings.
    Fetch(String),
}

/// The next step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Perform this, then step again with what it found.
    Ask(Ask),
    /// Move to this state (written under the lease), then step again with [`Observation::Due`].
    Go(JobState),
    /// End the step: the job stays open and is due again at `at`.
    Reschedule(Reschedule),
    /// End the step: the job is closed.
    Close(Close),
}

/// A job that stays open.
#[derive(Debug, Clone, PartialEq)]
pub struct Reschedule {
    /// Its state afterwards (`polling` once created; otherwise unchanged).
    pub state: JobState,
    pub at: Timestamp,
    pub attempt: u32,
    /// OCP's export id, when created now.
    pub export_id: Option<String>,
    pub last_error: Option<String>,
    /// What the job waits on OCP for (`unavailable`, `credentials`, `tls`); `None` clears it.
    pub waiting_on: Option<&'static str>,
    /// What the driver counts and logs.
    pub note: Note,
}

/// What a reschedule tells people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Routine (a poll that found the export still running, a queue).
    Quiet,
    /// OCP created the export.
    Requested,
    /// OCP or its identity provider is unavailable (a warning, `callrec_ocp_unavailable_total`).
    Unavailable,
    /// Credentials refused or TLS untrusted: needs a person (`callrec_ocp_auth_failures_total`;
    /// an error log when `first`, i.e. the job was not already waiting on it).
    NeedsPerson { first: bool },
}

/// A job that ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Close {
    /// `done`, `failed` or `expired`.
    pub state: JobState,
    pub reason: String,
    /// Count an attempt for the range's calls still missing (and declare lost those out of
    /// attempts). Not when the job only waited on OCP, nor when a successor asks again.
    pub finalize: bool,
    /// Record a new job for the same range (the export expired before it was fetched).
    pub successor: bool,
}

impl Close {
    fn failed(reason: impl Into<String>, finalize: bool) -> Step {
        Step::Close(Close {
            state: JobState::Failed,
            reason: reason.into(),
            finalize,
            successor: false,
        })
    }
}

/// The next step of `job` given `seen`, at `now`. `jitter` (0–1) is the poll schedule's draw.
pub fn step(
    job: &ExportJob,
    seen: Observation,
    now: Timestamp,
    rules: &Rules,
    jitter: f64,
) -> Step {
    let next_poll = |attempt: u32| rules.poll.next_poll(now, attempt, jitter);
    let reschedule = |attempt: u32, last_error: Option<String>| Reschedule {
        state: job.state,
        at: next_poll(attempt),
        attempt,
        export_id: None,
        last_error,
        waiting_on: None,
        note: Note::Quiet,
    };
    match seen {
        Observation::Due => due(job, now),
        Observation::GroupRunning { ahead } => Step::Reschedule(reschedule(
            job.attempt,
            Some(format!(
                "queued behind {ahead} (one running export per group)"
            )),
        )),
        Observation::GroupFree => Step::Ask(Ask::Create),
        Observation::Created { export_id } => Step::Reschedule(Reschedule {
            state: JobState::Polling,
            export_id: Some(export_id),
            note: Note::Requested,
            ..reschedule(0, None)
        }),
        Observation::Status(status) => match status {
            ExportStatus::Pending | ExportStatus::Running => {
                Step::Reschedule(reschedule(job.attempt.saturating_add(1), None))
            }
            ExportStatus::Completed => Step::Go(JobState::Completed),
            ExportStatus::Expired => expire(job, rules, "expired before it was fetched"),
            ExportStatus::Failed => Close::failed(
                format!(
                    "OCP failed export {}",
                    job.ocp_export_id.as_deref().unwrap_or("?")
                ),
                true,
            ),
        },
        Observation::Fetched => Step::Close(Close {
            state: JobState::Done,
            reason: String::new(),
            finalize: true,
            successor: false,
        }),
        Observation::FetchOutOfTime => Close::failed("deadline passed while fetching", true),
        Observation::Failed(error) => failed(job, error, now, rules, jitter),
    }
}

/// A job just leased or moved: what to do in its state.
fn due(job: &ExportJob, now: Timestamp) -> Step {
    if !job.state.is_open() {
        // Closed between the due read and the lease: nothing to do but give the lease back.
        return Step::Close(Close {
            state: job.state,
            reason: job.last_error.clone().unwrap_or_default(),
            finalize: false,
            successor: false,
        });
    }
    if now > job.deadline {
        return match job.waiting_on {
            // It only waited on OCP: its calls are not charged; the next scan asks again.
            Some(ref upstream) => Close::failed(
                format!(
                    "deadline passed while waiting on OCP ({upstream}); its calls were not \
                     charged and the next scan asks again"
                ),
                false,
            ),
            None => Close::failed(format!("deadline passed while {}", job.state.name()), true),
        };
    }
    let export = job.ocp_export_id.clone();
    match (job.state, export) {
        (JobState::Created, _) => Step::Ask(Ask::GroupRunning),
        (JobState::Completed, _) => Step::Go(JobState::Fetching),
        (JobState::Polling, Some(export)) => Step::Ask(Ask::Status(export)),
        (JobState::Fetching, Some(export)) => Step::Ask(Ask::Fetch(export)),
        (state, None) => Close::failed(format!("{} without an export id", state.name()), true),
        (JobState::Done | JobState::Failed | JobState::Expired, _) => {
            unreachable!("closed jobs returned above")
        }
    }
}

/// OCP's data is gone: ask again under a new job, unless this range expired too often.
fn expire(job: &ExportJob, rules: &Rules, why: &str) -> Step {
    if job.expiries.saturating_add(1) > rules.max_expiries {
        return Close::failed(
            format!(
                "{why}, for the {} time: OCP expires this range's exports before they can be \
                 fetched; not asked again",
                ordinal(job.expiries.saturating_add(1))
            ),
            true,
        );
    }
    Step::Close(Close {
        state: JobState::Expired,
        reason: why.to_string(),
        finalize: false,
        successor: true,
    })
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// An error from OCP.
fn failed(job: &ExportJob, error: OcpError, now: Timestamp, rules: &Rules, jitter: f64) -> Step {
    match (&error, job.state) {
        (OcpError::Expired(_), _) => expire(job, rules, "expired before it was all fetched"),
        (OcpError::Refused { status: 404, .. }, JobState::Polling) => {
            expire(job, rules, "OCP does not know the export")
        }
        (OcpError::Refused { .. }, _) => Close::failed(error.to_string(), true),
        // Another replica (or another of our jobs) got the group's one running export first.
        (OcpError::GroupBusy(_), JobState::Created) => Step::Reschedule(Reschedule {
            state: job.state,
            at: rules.poll.next_poll(now, 0, jitter),
            attempt: job.attempt,
            export_id: None,
            last_error: Some(error.to_string()),
            waiting_on: None,
            note: Note::Quiet,
        }),
        _ => wait(job, &error, now, rules, jitter),
    }
}

/// OCP answered with something other than progress: the job keeps its place and waits, no call
/// charged. Rescheduled on the poll schedule, or when OCP asked (`Retry-After`), capped.
fn wait(job: &ExportJob, error: &OcpError, now: Timestamp, rules: &Rules, jitter: f64) -> Step {
    let attempt = job.attempt.saturating_add(1);
    let mut at = rules.poll.next_poll(now, attempt, jitter);
    if let Some(asked) = error.retry_after() {
        let asked = SignedDuration::try_from(asked)
            .unwrap_or(SignedDuration::MAX)
            .min(rules.max_retry_after);
        at = at.max(now.checked_add(asked).unwrap_or(at));
    }
    let (waiting_on, note) = if error.needs_person() {
        let upstream = error.kind();
        let first = job.waiting_on.as_deref() != Some(upstream);
        (upstream, Note::NeedsPerson { first })
    } else {
        ("unavailable", Note::Unavailable)
    };
    Step::Reschedule(Reschedule {
        state: job.state,
        at,
        attempt,
        export_id: None,
        last_error: Some(error.to_string()),
        waiting_on: Some(waiting_on),
        note,
    })
}

#[cfg(test)]
mod tests;
