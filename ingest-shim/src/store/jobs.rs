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
    #[error("leased by {owner}")]
    HeldBy {
        owner: String,
        /// The holder's current lease token (changes on every renewal).
        token: u64,
        /// How long the holder's lease lasts.
        ttl: SignedDuration,
    },
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

/// A group's day as the audit found it: OCP reported `reported` dialogs; of those, `stored` are
/// stored (`streamed` by stage 1, `recovered` by stage 2, `found` by the audit itself), `lost`
/// given up on, `pending` still on their way; `not_in_ocp` calls callrec has for the day that
/// OCP did not report (the first of them named).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSummary {
    pub reported: u64,
    pub stored: u64,
    pub streamed: u64,
    pub recovered: u64,
    pub found: u64,
    pub lost: u64,
    pub pending: u64,
    pub not_in_ocp: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_in_ocp_first: Vec<crate::ids::CallId>,
    /// Records of OCP's export that could not be read: a call they name may be counted as not
    /// in OCP.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable: u64,
    pub counted_at: Timestamp,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AuditSummary {
    /// Every call OCP reported is stored or given up on.
    pub fn complete(&self) -> bool {
        self.pending == 0
    }
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
    /// When the lease ends by the holder's clock: shown to people, and the due index's key
    /// while leased; never compared by another replica (see `reconcile::lease`).
    pub lease_expires_at: Option<Timestamp>,
    /// A fresh random number on every take and renewal: a replica that sees the same token for
    /// longer than `lease_ttl_ms` on its own clock knows the holder stopped renewing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<u64>,
    /// How long the holder's lease lasts, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,
    /// The fencing token: bumped on every take of the lease, checked by every write made under
    /// it, so a replica that lost its lease (paused, partitioned) cannot write.
    #[serde(default)]
    pub fence: u64,
    /// How many jobs of this range expired before this one (its predecessors): the successor
    /// chain is bounded.
    #[serde(default)]
    pub expiries: u32,
    pub last_error: Option<String>,
    /// Why the job is waiting on OCP instead of moving (`credentials`, `tls`, or `unavailable`:
    /// OCP or its identity provider down): its calls are not charged for the wait, even when
    /// the deadline passes. Cleared by the next step that gets an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    /// An audit job's findings (purpose `audit`), once its export is read; recounted until the
    /// day is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSummary>,
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
            lease_token: None,
            lease_ttl_ms: None,
            fence: 0,
            expiries: 0,
            last_error: None,
            waiting_on: None,
            audit: None,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// Whether `owner` holds the lease granted with `fence` (no take-over since).
    pub fn holds(&self, owner: &str, fence: u64) -> bool {
        self.lease_owner.as_deref() == Some(owner) && self.fence == fence
    }

    /// Takes the lease for `owner` for `ttl` (as the holder's clock reads from `now`): when no
    /// one holds it, or when the holder's lease `token` is the one the caller saw unchanged for
    /// at least the holder's lease length on its own clock (`stale_token`: the holder stopped
    /// renewing). Bumps the fence and returns it. Never decided by comparing clocks.
    pub fn take_lease(
        &mut self,
        owner: &str,
        now: Timestamp,
        ttl: SignedDuration,
        stale_token: Option<u64>,
    ) -> Result<u64, LeaseError> {
        if let (Some(other), Some(token)) = (&self.lease_owner, self.lease_token)
            && stale_token != Some(token)
        {
            return Err(LeaseError::HeldBy {
                owner: other.clone(),
                token,
                ttl: SignedDuration::from_millis(self.lease_ttl_ms.unwrap_or(0) as i64),
            });
        }
        self.fence = self.fence.saturating_add(1);
        self.grant(owner, now, ttl);
        Ok(self.fence)
    }

    /// Renews the lease `owner` took with `fence`: a new token, so observers start again.
    pub fn renew_lease(
        &mut self,
        owner: &str,
        fence: u64,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Result<(), LeaseError> {
        if !self.holds(owner, fence) {
            return Err(LeaseError::NotHolder);
        }
        self.grant(owner, now, ttl);
        Ok(())
    }

    fn grant(&mut self, owner: &str, now: Timestamp, ttl: SignedDuration) {
        self.lease_owner = Some(owner.to_string());
        self.lease_token = Some(rand::random::<u64>());
        self.lease_ttl_ms = Some(ttl.as_millis().max(0) as u64);
        // For people and for the due index only: no replica decides by it.
        self.lease_expires_at = Some(now.saturating_add(ttl).unwrap_or(now));
    }

    /// Gives the lease back.
    pub fn release(&mut self, owner: &str, fence: u64) -> Result<(), LeaseError> {
        if !self.holds(owner, fence) {
            return Err(LeaseError::NotHolder);
        }
        self.lease_owner = None;
        self.lease_expires_at = None;
        self.lease_token = None;
        self.lease_ttl_ms = None;
        Ok(())
    }

    /// Moves to `next` if `owner` holds the lease and the state machine allows it.
    pub fn transition(
        &mut self,
        owner: &str,
        fence: u64,
        next: JobState,
    ) -> Result<(), LeaseError> {
        if !self.holds(owner, fence) {
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
    fn a_lease_is_taken_over_only_by_its_stale_token_and_bumps_the_fence() {
        let mut j = job();
        let ttl = SignedDuration::from_secs(30);
        let a = j.take_lease("a", t(0), ttl, None).unwrap();
        assert_eq!(a, 1);
        // Whatever b's clock says, a held lease is not b's to take…
        let Err(LeaseError::HeldBy {
            token, ttl: held, ..
        }) = j.take_lease("b", t(1_000_000), ttl, None)
        else {
            panic!("held")
        };
        assert_eq!(held, ttl);
        // …and a renewal changes the token b watches.
        j.renew_lease("a", a, t(10), ttl).unwrap();
        assert!(j.take_lease("b", t(20), ttl, Some(token)).is_err());
        let token = j.lease_token.unwrap();
        // b saw this token unchanged for a whole lease: a stopped renewing.
        let b = j.take_lease("b", t(20), ttl, Some(token)).unwrap();
        assert_eq!(b, 2);
        // a's writes are fenced off, even its renewals and its release.
        assert!(!j.holds("a", a));
        assert_eq!(
            j.renew_lease("a", a, t(21), ttl),
            Err(LeaseError::NotHolder)
        );
        assert_eq!(j.release("a", a), Err(LeaseError::NotHolder));
        assert_eq!(
            j.transition("a", a, JobState::Polling),
            Err(LeaseError::NotHolder)
        );
        j.release("b", b).unwrap();
        assert_eq!(j.take_lease("a", t(30), ttl, None).unwrap(), 3);
    }

    #[test]
    fn the_state_machine_only_moves_forward_and_needs_the_lease() {
        let mut j = job();
        assert_eq!(
            j.transition("a", 1, JobState::Polling),
            Err(LeaseError::NotHolder)
        );
        let f = j
            .take_lease("a", t(1), SignedDuration::from_secs(60), None)
            .unwrap();
        j.transition("a", f, JobState::Polling).unwrap();
        j.transition("a", f, JobState::Polling).unwrap();
        assert!(j.transition("a", f, JobState::Created).is_err());
        j.transition("a", f, JobState::Completed).unwrap();
        j.transition("a", f, JobState::Fetching).unwrap();
        j.transition("a", f, JobState::Done).unwrap();
        assert_eq!(j.due_at(), None);
        assert!(j.transition("a", f, JobState::Failed).is_err());
    }
}
