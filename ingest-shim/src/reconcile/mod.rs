//! Stage 2: recovering the recordings that never arrived on the stream, through OCP export
//! jobs. So far: [`plan`] (the fewest exports OCP allows), [`scanner`] (missing calls to export
//! job records), [`schedule`] (when to poll a job next) and [`ocp`] (the Exports API client).

pub mod ocp;
pub mod plan;
pub mod scanner;
pub mod schedule;
