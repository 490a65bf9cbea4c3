//! # callrec-ingest
//!
//! The service around the engine: CDR events and streamed audio in, per-call flags in a state
//! store, processed audio out to the line of business's bucket, and the export-job
//! reconciliation loop (see `../shared/DESIGN.md`).
//!
//! - [`ids`]: identifiers from outside, validated before they touch a path, a key or a query;
//! - [`store`]: the call state store ([`store::CallStore`]: SQLite, DynamoDB) — flags, export
//!   jobs, leases, the funnel;
//! - [`objects`]: the object store ([`objects::ObjectStore`]: a folder, S3) — create-only,
//!   checksummed writes;
//! - [`ocp`]: everything that faces OCP — login, the HTTPS client, the Exports API, its CDR
//!   records and recording names, `callrec ocp check`;
//! - [`routing`]: line of business, bucket and key of each call;
//! - [`config`]: one TOML file + `CALLREC_*` overrides, embedded defaults;
//! - [`setup`]: opening the configured stores, and `callrec init`.

pub mod config;
pub mod facts;
pub mod ids;
pub mod intake;
pub mod metrics;
pub mod objects;
pub mod ocp;
pub mod pipeline;
pub mod reconcile;
pub mod routing;
pub mod server;
pub mod setup;
pub mod store;

pub use ids::{CallId, ClientId, IdError};
