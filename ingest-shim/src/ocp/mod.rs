//! Everything that faces OCP, in one place: where it is ([`region`]), how to log in
//! ([`auth`]), the HTTPS client every request goes through ([`http`]), what can go wrong
//! ([`error`]), its Exports API ([`exports`]), its CDR records ([`cdr`]), its recording file
//! names ([`name`]), and `callrec ocp check` ([`check`]).
//!
//! Facts about OCP come from its public documentation (learn.ocp.ai: exports-api,
//! api-authentication, access-management-tab, cdr-models-schema, whole-call-recording) and
//! Omilia's public client; what those leave unsaid is what `ocp-sim` defines and documents in
//! its README. Adapting to a detail of the real OCP is meant to be a change here and nowhere
//! else.

pub mod auth;
pub mod cdr;
pub mod check;
pub mod error;
pub mod exports;
pub mod http;
pub mod name;
pub mod region;

pub use auth::{Credentials, Secret};
pub use error::{OcpError, Transient};
pub use exports::{
    AUDIT_DATA, DataType, ExportFile, ExportStatus, ExportSummary, FilePage, HttpOcp, OcpExports,
    RECOVERY_DATA,
};
pub use http::{OcpClient, OcpConfig, OcpHealth, OcpProblem, RetryPolicy, Timeouts};
pub use region::{Endpoints, Region};
