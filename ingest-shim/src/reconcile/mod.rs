//! Stage 2: recovering the recordings that never arrived on the stream, through OCP export
//! jobs. So far: [`plan`] (the fewest exports OCP allows) and [`scanner`] (missing calls to export
//! job records).

pub mod plan;
pub mod scanner;
