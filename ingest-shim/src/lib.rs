//! # callrec-ingest
//!
//! The service around the engine: CDR events and streamed audio in, per-call flags in a state
//! store, processed audio out to the line of business's bucket, and the export-job
//! reconciliation loop (see `../shared/DESIGN.md`). So far it holds the validated identifiers
//! every later part builds on: ids arrive from outside and must be checked before they touch a
//! path, an object key or a query.

pub mod ids;

pub use ids::{CallId, ClientId, IdError};
