//! Export-job records: the durable state of one OCP export that reconciliation (or a backfill
//! shard) works through, with its poll timer and its lease.
//!
//! As for calls, the rules are pure functions here and the backends only compare-and-swap.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Our own id of an export job (also its idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Accepts the same characters as call ids (it ends up in keys and queries).
    pub fn parse(raw: &str) -> Result<Self, crate::ids::IdError> {
        if crate::ids::is_safe_id(raw) {
            Ok(JobId(raw.to_string()))
        } else {
            Err(crate::ids::IdError {
                what: "job id",
                reason: "empty, too long or a character not allowed",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = crate::ids::IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        JobId::parse(&raw)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an export job is. created → polling → completed → fetching → done, or failed /
/// expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Recorded; OCP's export not requested yet (or queued behind the group's running one).
    Created,
    /// OCP has the export; we poll it on a timer.
    Polling,
    /// OCP finished it; nothing fetched yet.
    Completed,
    /// Downloading its files and reading its CDRs.
    Fetching,
    /// Everything in it went through.
    Done,
    /// Gave up (deadline, or OCP refused): loud, never silent.
    Failed,
    /// OCP expired the data before we had it all; a new job is created for the same range.
    Expired,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::Polling => "polling",
            JobState::Completed => "completed",
            JobState::Fetching => "fetching",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Expired => "expired",
        }
    }

    /// Whether the job still needs work (and so sits in the due index).
    pub fn is_open(self) -> bool {
        !matches!(self, JobState::Done | JobState::Failed | JobState::Expired)
    }

    /// The transitions the state machine allows (staying put is allowed: a reschedule).
    pub fn can_go_to(self, next: JobState) -> bool {
        use JobState::*;
        self == next && self.is_open()
            || matches!(
                (self, next),
                (Created, Polling)
                    | (Polling, Completed)
                    | (Completed, Fetching)
                    | (Fetching, Done)
                    | (Created | Polling | Completed | Fetching, Failed)
                    | (Polling | Completed | Fetching, Expired)
            )
    }
}

/// Why a job operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("no such job")]
    NoSuchJob,
    #[error("leased by {owner} until {until}")]
    HeldBy { owner: String, until: Timestamp },
    #[error("the lease is not held by this owner")]
    NotHolder,
    /// The job's timer is not due yet (another replica just worked it), or it is closed.
    #[error("not due")]
    NotDue,
    #[error("job is {from}, cannot become {to}")]
    BadTransition {
        from: &'static str,
        to: &'static str,
    },
}

/// One export job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportJob {
    pub id: JobId,
    /// The OCP group the export is for.
    pub group_id: String,
    /// The export's range: hour-aligned, 1 hour to 2 days (OCP's limits).
    pub from: Timestamp,
    pub to: Timestamp,
    /// Sent to OCP with the create request so a retried create makes one export, not two.
    pub idempotency_token: String,
    /// "reconcile" or "backfill": who created it.
    pub purpose: String,
    pub state: JobState,
    /// OCP's id of the export, once created there.
    pub ocp_export_id: Option<String>,
    /// Polls (or fetch attempts) so far.
    pub attempt: u32,
    /// When the timer loop should look at it next; `None` once it needs no timer.
    pub next_poll_at: Option<Timestamp>,
    /// After this the job fails loudly instead of waiting on.
    pub deadline: Timestamp,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Why the job is waiting on OCP instead of moving (`credentials`, `tls`, or `unavailable`:
    /// OCP or its identity provider down): its calls are not charged for the wait, even when
    /// the deadline passes. Cleared by the next step that gets an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The compare-and-swap token.
    pub version: u64,
}

impl ExportJob {
    /// A new job, due at once.
    pub fn new(
        id: JobId,
        group_id: &str,
        range: (Timestamp, Timestamp),
        purpose: &str,
        now: Timestamp,
        deadline: Timestamp,
    ) -> Self {
        ExportJob {
            idempotency_token: format!("callrec-{id}"),
            id,
            group_id: group_id.to_string(),
            from: range.0,
            to: range.1,
            purpose: purpose.to_string(),
            state: JobState::Created,
            ocp_export_id: None,
            attempt: 0,
            next_poll_at: Some(now),
            deadline,
            lease_owner: None,
            lease_expires_at: None,
            last_error: None,
            waiting_on: None,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// Whether `owner` holds an unexpired lease at `now`.
    pub fn holds(&self, owner: &str, now: Timestamp) -> bool {
        self.lease_owner.as_deref() == Some(owner) && self.lease_expires_at.is_some_and(|t| t > now)
    }

    /// Takes or renews the lease for `owner` until `now + ttl`, unless someone else holds an
    /// unexpired one.
    pub fn lease(
        &mut self,
        owner: &str,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Result<(), LeaseError> {
        if let (Some(other), Some(until)) = (&self.lease_owner, self.lease_expires_at)
            && other != owner
            && until > now
        {
            return Err(LeaseError::HeldBy {
                owner: other.clone(),
                until,
            });
        }
        self.lease_owner = Some(owner.to_string());
        self.lease_expires_at = Some(now.saturating_add(ttl).unwrap_or(now));
        Ok(())
    }

    /// Gives the lease back.
    pub fn release(&mut self, owner: &str) -> Result<(), LeaseError> {
        if self.lease_owner.as_deref() != Some(owner) {
            return Err(LeaseError::NotHolder);
        }
        self.lease_owner = None;
        self.lease_expires_at = None;
        Ok(())
    }

    /// Moves to `next` if `owner` holds the lease and the state machine allows it.
    pub fn transition(
        &mut self,
        owner: &str,
        now: Timestamp,
        next: JobState,
    ) -> Result<(), LeaseError> {
        if !self.holds(owner, now) {
            return Err(LeaseError::NotHolder);
        }
        if !self.state.can_go_to(next) {
            return Err(LeaseError::BadTransition {
                from: self.state.name(),
                to: next.name(),
            });
        }
        self.state = next;
        if !next.is_open() {
            self.next_poll_at = None;
        }
        Ok(())
    }

    /// The due index key: the next poll time, only while the job is open.
    pub fn due_at(&self) -> Option<Timestamp> {
        if self.state.is_open() {
            self.next_poll_at
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn job() -> ExportJob {
        ExportJob::new(
            JobId::parse("j1").unwrap(),
            "g",
            (t(0), t(3600)),
            "reconcile",
            t(0),
            t(86_400),
        )
    }

    #[test]
    fn leases_exclude_others_until_they_expire() {
        let mut j = job();
        let ttl = SignedDuration::from_secs(30);
        j.lease("a", t(0), ttl).unwrap();
        assert!(matches!(
            j.lease("b", t(10), ttl),
            Err(LeaseError::HeldBy { .. })
        ));
        j.lease("a", t(20), ttl).unwrap(); // renew
        assert!(j.lease("b", t(40), ttl).is_err());
        j.lease("b", t(50), ttl).unwrap(); // a's lease ran out at t(50)
        assert_eq!(j.release("a"), Err(LeaseError::NotHolder));
        j.release("b").unwrap();
    }

    #[test]
    fn the_state_machine_only_moves_forward_and_needs_the_lease() {
        let mut j = job();
        assert_eq!(
            j.transition("a", t(1), JobState::Polling),
            Err(LeaseError::NotHolder)
        );
        j.lease("a", t(1), SignedDuration::from_secs(60)).unwrap();
        j.transition("a", t(2), JobState::Polling).unwrap();
        j.transition("a", t(3), JobState::Polling).unwrap();
        assert!(j.transition("a", t(4), JobState::Created).is_err());
        j.transition("a", t(5), JobState::Completed).unwrap();
        j.transition("a", t(6), JobState::Fetching).unwrap();
        j.transition("a", t(7), JobState::Done).unwrap();
        assert_eq!(j.due_at(), None);
        assert!(j.transition("a", t(8), JobState::Failed).is_err());
    }
}
