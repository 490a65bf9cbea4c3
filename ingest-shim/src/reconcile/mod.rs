//! Stage 2: recovering the recordings that never arrived on the stream, through OCP export
//! jobs, as small stages around a pure state machine:
//!
//! - [`scanner`]: missing calls → export-job records (and calls past retention → `lost`);
//!   received calls whose replica died → taken over;
//! - [`plan`]: the fewest exports OCP allows for a set of calls, and backfill shards;
//! - [`step`]: **the job state machine, pure**: what OCP answered → the next step;
//! - [`driver`]: the timer loop — due jobs, slots, leases kept while a step runs;
//! - `perform`: one step of a leased job — the I/O the state machine asks for and the fenced
//!   write that ends it;
//! - [`lease`]: relative leases with a fencing token (clock skew and pauses cannot let two
//!   replicas work a job);
//! - [`fetch`]: a completed export's CDR records (metadata task), then its recordings (download
//!   task) through the same intake as uploads ([`crate::intake`]);
//! - [`finalize`]: after a job, an attempt counted for each call still missing; out of attempts,
//!   `lost`;
//! - [`schedule`]: when to poll next.
//!
//! OCP itself — its client, records and names — is [`crate::ocp`]; the settings come from
//! [`crate::config::Config::worker_config`].

pub mod audit;
pub mod driver;
pub mod fetch;
pub mod finalize;
pub mod lease;
pub mod manifest;
mod perform;
pub mod plan;
pub mod scanner;
pub mod schedule;
pub mod step;

pub use driver::Reconciler;
pub use lease::Clock;

use crate::metrics::Metrics;
use crate::ocp::{OcpError, OcpExports};
use crate::pipeline::Pipeline;
use crate::store::{CallStore, LeaseError, StoreError};
use jiff::SignedDuration;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the reconciler behaves (from `[reconcile]` and `[server]`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This replica's name in leases and logs ([`default_owner`]).
    pub owner: String,
    pub scan: scanner::ScanConfig,
    pub scan_interval: Duration,
    pub poll: schedule::PollSchedule,
    pub lease_ttl: SignedDuration,
    /// Export rounds a missing call may miss before it is `lost`.
    pub max_attempts: u32,
    /// The longest wait OCP's `Retry-After` may impose on a job.
    pub max_retry_after: SignedDuration,
    /// Expiries of one range's export before its job fails instead of asking again.
    pub max_expiries: u32,
    pub download_concurrency: usize,
    pub jobs_concurrency: usize,
    /// Where downloads are spooled.
    pub spool_dir: PathBuf,
    /// Largest recording accepted from an export, bytes (the upload limit).
    pub max_file_bytes: u64,
    /// A call received this long ago and not stored is taken over by a scan.
    pub stale_after: SignedDuration,
    /// The daily audit (no groups: none).
    pub audit: audit::AuditConfig,
}

impl WorkerConfig {
    /// The state machine's rules.
    pub fn rules(&self) -> step::Rules {
        step::Rules {
            poll: self.poll.clone(),
            max_retry_after: self.max_retry_after,
            max_expiries: self.max_expiries,
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

/// What every stage shares: the stores and the pipeline, OCP, the settings, the metrics, the
/// clock.
pub struct Context {
    pub pipeline: Pipeline,
    pub ocp: Arc<dyn OcpExports>,
    pub config: WorkerConfig,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
}

impl Context {
    pub fn store(&self) -> &dyn CallStore {
        self.pipeline.store.as_ref()
    }
}

/// Why a step of a job stopped short.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("lease: {0}")]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Ocp(#[from] OcpError),
    #[error(transparent)]
    Objects(#[from] crate::objects::ObjectError),
    #[error("the lease was lost (taken over, or not renewed in time)")]
    LeaseLost,
    #[error("stopping")]
    Stopping,
}
