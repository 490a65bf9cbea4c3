//! Prometheus metrics (`GET /metrics`): one registry shared by the HTTP service and the
//! reconciler.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// CDR events by type and outcome (changed, unchanged).
    pub events: IntCounterVec,
    /// Uploads by outcome (created, same, conflict, checksum_mismatch, too_large, busy, …).
    pub uploads: IntCounterVec,
    /// Bytes of recordings received.
    pub upload_bytes: IntCounter,
    /// Seconds per stage (receive, process, store).
    pub stage_seconds: HistogramVec,
    /// Recordings accepted and not yet stored or failed.
    pub queue_depth: IntGauge,
    /// Pipeline failures by kind.
    pub failures: IntCounterVec,
    /// Requests refused before any work, by reason.
    pub rejected: IntCounterVec,
    /// Calls per flag and status, read from the state store at scrape time.
    pub calls: prometheus::IntGaugeVec,
    /// Export jobs finished, by outcome (done, failed, expired).
    pub export_jobs: IntCounterVec,
    /// OCP exports requested (each job's create, retries that OCP answered with the same export
    /// included once).
    pub exports_created: IntCounter,
    /// Export status polls.
    pub export_polls: IntCounter,
    /// Export audio files by outcome (stored, already_stored, conflict, failed, bad_name).
    pub export_files: IntCounterVec,
    /// Export CDR records by outcome (filled, unchanged, known, bad).
    pub export_cdrs: IntCounterVec,
    /// What the daily audit found, by outcome (found, lost, not_in_ocp).
    pub audit_calls: IntCounterVec,
    /// Group-days past the audit's deadline and not complete (not audited, or calls OCP
    /// reported still not stored), as of the last scan.
    pub audit_days_incomplete: prometheus::IntGauge,
    /// OCP refused the credentials (or TLS failed): each step that stopped on it.
    pub ocp_auth_failures: IntCounter,
    /// Steps that found OCP (or its identity provider) unavailable and will try again.
    pub ocp_unavailable: IntCounter,
    /// Calls given up on (past OCP's retention, or out of attempts).
    pub calls_lost: IntCounter,
    /// Recordings the engine could not process, stored as they arrived (`unprocessed/`).
    pub calls_unprocessed: IntCounter,
    /// Seconds since the oldest call received and not yet stored was received (0: none), read
    /// from the state store at scrape time: the backlog's age, whatever its cause.
    pub oldest_unstored_age: IntGauge,
    /// Export-job leases taken over from a replica that stopped renewing (died or paused).
    pub lease_takeovers: IntCounter,
    /// Steps stopped because this replica lost its lease (its writes fenced off).
    pub leases_lost: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("callrec".into()), None).expect("a valid prefix");
        let events = IntCounterVec::new(
            Opts::new("cdr_events_total", "CDR events received"),
            &["type", "outcome"],
        )
        .expect("valid metric");
        let uploads = IntCounterVec::new(
            Opts::new("uploads_total", "Recording uploads by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let upload_bytes = IntCounter::new("upload_bytes_total", "Bytes of recordings received")
            .expect("valid metric");
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("stage_seconds", "Time per pipeline stage").buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["stage"],
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new(
            "pipeline_queue_depth",
            "Recordings accepted and not yet stored or failed",
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new("pipeline_failures_total", "Pipeline failures by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "requests_rejected_total",
                "Requests refused before any work",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let oldest_unstored_age = IntGauge::new(
            "oldest_unstored_age_seconds",
            "Seconds since the oldest call received and not stored was received (0: none)",
        )
        .expect("valid metric");
        let calls = prometheus::IntGaugeVec::new(
            Opts::new("calls", "Calls per flag and status (from the state store)"),
            &["state"],
        )
        .expect("valid metric");
        let export_jobs = IntCounterVec::new(
            Opts::new("export_jobs_total", "Export jobs finished, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let exports_created =
            IntCounter::new("exports_created_total", "OCP exports requested").expect("valid");
        let export_polls =
            IntCounter::new("export_polls_total", "Export status polls").expect("valid metric");
        let export_files = IntCounterVec::new(
            Opts::new("export_files_total", "Export audio files by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let export_cdrs = IntCounterVec::new(
            Opts::new("export_cdrs_total", "Export CDR records by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let audit_calls = IntCounterVec::new(
            Opts::new(
                "audit_calls_total",
                "What the daily audit found: calls OCP reported that nothing of had arrived \
                 (found), audited calls given up on (lost), calls OCP did not report (not_in_ocp)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let audit_days_incomplete = prometheus::IntGauge::new(
            "audit_days_incomplete",
            "Group-days past the audit's deadline and not complete, as of the last scan",
        )
        .expect("valid metric");
        let ocp_auth_failures = IntCounter::new(
            "ocp_auth_failures_total",
            "Export-job steps stopped because OCP refused the credentials or TLS failed",
        )
        .expect("valid metric");
        let ocp_unavailable = IntCounter::new(
            "ocp_unavailable_total",
            "Export-job steps that found OCP or its identity provider unavailable",
        )
        .expect("valid metric");
        let calls_lost = IntCounter::new(
            "calls_lost_total",
            "Calls given up on: past OCP's retention or out of attempts",
        )
        .expect("valid metric");
        let calls_unprocessed = IntCounter::new(
            "calls_unprocessed_total",
            "Recordings the engine could not process, stored as they arrived under unprocessed/",
        )
        .expect("valid metric");
        let lease_takeovers = IntCounter::new(
            "lease_takeovers_total",
            "Export-job leases taken over from a replica that stopped renewing",
        )
        .expect("valid metric");
        let leases_lost = IntCounter::new(
            "leases_lost_total",
            "Export-job steps stopped because the lease was lost (writes fenced off)",
        )
        .expect("valid metric");
        for metric in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(uploads.clone()),
            Box::new(upload_bytes.clone()),
            Box::new(stage_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(failures.clone()),
            Box::new(rejected.clone()),
            Box::new(calls.clone()),
            Box::new(oldest_unstored_age.clone()),
            Box::new(export_jobs.clone()),
            Box::new(exports_created.clone()),
            Box::new(export_polls.clone()),
            Box::new(export_files.clone()),
            Box::new(export_cdrs.clone()),
            Box::new(audit_calls.clone()),
            Box::new(audit_days_incomplete.clone()),
            Box::new(calls_lost.clone()),
            Box::new(ocp_auth_failures.clone()),
            Box::new(ocp_unavailable.clone()),
            Box::new(calls_unprocessed.clone()),
            Box::new(lease_takeovers.clone()),
            Box::new(leases_lost.clone()),
        ] {
            registry
                .register(metric)
                .expect("each metric registered once");
        }
        Metrics {
            registry,
            events,
            uploads,
            upload_bytes,
            stage_seconds,
            queue_depth,
            failures,
            rejected,
            calls,
            oldest_unstored_age,
            export_jobs,
            exports_created,
            export_polls,
            export_files,
            export_cdrs,
            audit_calls,
            audit_days_incomplete,
            ocp_auth_failures,
            ocp_unavailable,
            calls_lost,
            calls_unprocessed,
            lease_takeovers,
            leases_lost,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
