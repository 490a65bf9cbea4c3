//! Stage 2: recovering the recordings that never arrived on the stream, through OCP export
//! jobs: [`scanner`] (missing calls → export-job records), [`plan`] (the fewest exports OCP
//! allows), [`schedule`] (when to poll a job next) and [`worker`] (the timer loop, leases, the
//! fetch tasks and finalize). OCP itself — its client, records and names — is [`crate::ocp`].

pub mod plan;
pub mod scanner;
pub mod schedule;
pub mod worker;
