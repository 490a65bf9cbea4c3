//! Stage 2: recovering the recordings that never arrived on the stream, through OCP export
//! jobs. So far: [`plan`], the grouping of missing calls into the fewest exports OCP allows.

pub mod plan;
