//! Leases on export jobs: one replica works a job at a time, whatever the replicas' clocks say
//! and however long one of them is paused.
//!
//! The rule (the AWS DynamoDB Lock Client's: a relative lease and a record version number):
//!
//! - **Taking.** A job whose lease is free is taken with a conditional write. A job leased by
//!   another replica is taken over only when this replica has seen the holder's *lease token*
//!   unchanged for the holder's whole lease length, **measured on this replica's monotonic
//!   clock** from when it first read that token. The holder puts a fresh token on every renewal
//!   (every third of its lease), so a live holder is never taken over; a dead or paused one is,
//!   one lease length after it stopped renewing. No replica ever compares its wall clock with a
//!   time another replica wrote: a skew of any size between replicas changes when a job *looks*
//!   due, never who may work it.
//! - **Holding.** The holder counts its lease from *before* it sent the write that granted it,
//!   on its own monotonic clock, so its local expiry is never later than the earliest moment
//!   another replica could take over. The renewer renews every third of the lease; if it cannot
//!   (the store unreachable) it keeps trying until the local expiry, then cancels the work.
//! - **Fencing.** Every take bumps the job's `fence`; every write under the lease checks owner
//!   *and* fence in the same conditional write. A replica that lost its lease (paused past it,
//!   partitioned) has its writes refused even if it has not noticed yet, and its in-flight work
//!   touches only idempotent per-call state (create-only staging, conditional flags).
//!
//! Wall-clock times on the job (`lease_expires_at`, `next_poll_at`) are for people and for the
//! due index: they decide when a replica *looks* at a job, not what it may do.

use crate::store::{CallStore, ExportJob, JobId, LeaseError, StoreError, modify_job};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// This replica's wall clock, with an offset tests inject to play a skewed host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: SignedDuration,
}

impl Clock {
    /// The host's clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock `offset` away from the host's (a replica on a host whose clock is off).
    pub fn skewed(offset: SignedDuration) -> Self {
        Clock { offset }
    }

    pub fn now(&self) -> Timestamp {
        let now = Timestamp::now();
        now.checked_add(self.offset).unwrap_or(now)
    }
}

/// A lease this replica holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job: JobId,
    /// The fence every write under the lease carries.
    pub fence: u64,
    /// Until when this replica may act on it, by its monotonic clock.
    pub valid_until: Instant,
}

/// Why a job was not leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotLeased {
    /// Someone else holds it and has renewed within a lease length, or it is closed or not due.
    Busy,
    /// Taking it failed against the store.
    Store(String),
}

/// Takes, renews and gives back leases for one replica, remembering the tokens it has seen.
pub struct Leases {
    owner: String,
    ttl: SignedDuration,
    clock: Clock,
    /// The lease token seen on each job held by another replica, and when it was first seen.
    seen: Mutex<HashMap<JobId, (u64, Instant)>>,
}

impl Leases {
    pub fn new(owner: String, ttl: SignedDuration, clock: Clock) -> Self {
        Leases {
            owner,
            ttl,
            clock,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    fn ttl(&self) -> Duration {
        self.ttl.unsigned_abs()
    }

    /// Leases job `id` if it is open and due by this replica's clock, and either free or held by
    /// a replica that stopped renewing. While leased, the job's timer is the lease's end.
    /// Returns the job and the lease, or why not (`took_over` is set when the job was taken
    /// from another replica).
    pub async fn take(
        &self,
        store: &dyn CallStore,
        id: &JobId,
    ) -> Result<(ExportJob, Lease, bool), NotLeased> {
        let stale = self.stale_token(id);
        let sent = Instant::now();
        let now = self.clock.now();
        let (owner, ttl) = (self.owner.as_str(), self.ttl);
        let taken = modify_job(store, id, now, &|job: &mut ExportJob| {
            if !job.state.is_open() || job.next_poll_at.is_none_or(|t| t > now) && stale.is_none() {
                return Err(LeaseError::NotDue);
            }
            job.take_lease(owner, now, ttl, stale)?;
            job.next_poll_at = job.lease_expires_at;
            Ok(())
        })
        .await;
        match taken {
            Ok(Ok(job)) => {
                let took_over = self.forget(id).is_some() && stale.is_some();
                let lease = Lease {
                    job: id.clone(),
                    fence: job.fence,
                    valid_until: sent + self.ttl(),
                };
                Ok((job, lease, took_over))
            }
            Ok(Err(LeaseError::HeldBy { token, .. })) => {
                self.saw(id, token);
                Err(NotLeased::Busy)
            }
            Ok(Err(_)) => {
                self.forget(id);
                Err(NotLeased::Busy)
            }
            Err(e) => Err(NotLeased::Store(e.to_string())),
        }
    }

    /// The token of `id` this replica has seen unchanged for the holder's lease length, if any.
    fn stale_token(&self, id: &JobId) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(id)
            .filter(|(_, since)| since.elapsed() >= self.ttl())
            .map(|(token, _)| *token)
    }

    /// Notes `token` on `id` (keeping when it was first seen while it stays the same).
    fn saw(&self, id: &JobId, token: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= 4096 {
            // Jobs closed by others are never looked at again: forget what is long stale.
            let keep = self.ttl() * 4;
            seen.retain(|_, (_, since)| since.elapsed() < keep);
        }
        match seen.get(id) {
            Some((same, _)) if *same == token => {}
            _ => {
                seen.insert(id.clone(), (token, Instant::now()));
            }
        }
    }

    fn forget(&self, id: &JobId) -> Option<(u64, Instant)> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// Renews `lease` (a new token, a new local expiry counted from before the write).
    pub async fn renew(
        &self,
        store: &dyn CallStore,
        lease: &mut Lease,
    ) -> Result<Result<(), LeaseError>, StoreError> {
        let sent = Instant::now();
        let now = self.clock.now();
        let (owner, ttl, fence) = (self.owner.as_str(), self.ttl, lease.fence);
        let renewed = modify_job(store, &lease.job, now, &|job: &mut ExportJob| {
            job.renew_lease(owner, fence, now, ttl)?;
            job.next_poll_at = job.lease_expires_at;
            Ok(())
        })
        .await?;
        if renewed.is_ok() {
            lease.valid_until = sent + self.ttl();
        }
        Ok(renewed.map(|_| ()))
    }

    /// Keeps `lease` renewed until the work it guards ends (the caller drops this future); returns
    /// when the lease is lost — taken over, or not renewed by its local expiry — so the caller
    /// stops the work.
    pub async fn keep(&self, store: &dyn CallStore, mut lease: Lease) -> LeaseError {
        let every = (self.ttl() / 3).max(Duration::from_millis(50));
        let retry = (self.ttl() / 10).max(Duration::from_millis(20));
        let mut wait = every;
        loop {
            // Never sleep past the local expiry: a paused process wakes up to find it passed.
            let left = lease.valid_until.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait.min(left)).await;
            if Instant::now() >= lease.valid_until {
                return LeaseError::NotHolder;
            }
            match self.renew(store, &mut lease).await {
                Ok(Ok(())) => wait = every,
                Ok(Err(e)) => return e,
                Err(e) => {
                    tracing::warn!(job = %lease.job, error = %e, "renewing a lease failed; retrying until it runs out");
                    wait = retry;
                }
            }
            if Instant::now() >= lease.valid_until {
                return LeaseError::NotHolder;
            }
        }
    }

    /// A write under `lease`: `f` is applied only while this replica holds it with its fence.
    pub async fn write(
        &self,
        store: &dyn CallStore,
        lease: &Lease,
        f: &(dyn Fn(&mut ExportJob) -> Result<(), LeaseError> + Send + Sync),
    ) -> Result<Result<ExportJob, LeaseError>, StoreError> {
        let (owner, fence) = (self.owner.as_str(), lease.fence);
        modify_job(
            store,
            &lease.job,
            self.clock.now(),
            &|job: &mut ExportJob| {
                if !job.holds(owner, fence) {
                    return Err(LeaseError::NotHolder);
                }
                f(job)
            },
        )
        .await
    }
}
