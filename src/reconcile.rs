//! `callrec reconcile`, `callrec backfill` and `callrec status`: stage 2 from the command line.

use anyhow::{Context, Result, bail};
use callrec_ingest::config::{Config, Loaded};
use callrec_ingest::metrics::Metrics;
use callrec_ingest::reconcile::Reconciler;
use callrec_ingest::store::{CallStore, ExportJob, count_open_jobs, open_jobs_paged};
use clap::Args;
use futures_util::{StreamExt as _, TryStreamExt as _};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct ReconcileArgs {
    /// The configuration file (TOML); `[ocp]` must name the Exports API. `CALLREC_*`
    /// environment variables override it (the password: `CALLREC_OCP__PASSWORD`).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// One scan, then work its export jobs until none is open, print a summary and exit.
    /// Without it: scan every `reconcile.scan_interval_s` and work jobs until SIGTERM (a
    /// reconciliation-only replica).
    #[arg(long)]
    once: bool,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(Args)]
pub struct BackfillArgs {
    /// The configuration file (TOML), as for `reconcile`.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// The OCP group to export.
    #[arg(long)]
    group: String,
    /// Start of the range: RFC 3339 (`2026-11-01T00:00:00Z`) or a date (`2026-11-01`, UTC
    /// midnight); widened down to the hour.
    #[arg(long)]
    from: String,
    /// End of the range (exclusive), as `--from`; widened up to the hour.
    #[arg(long)]
    to: String,
    /// Hours per shard: one export job each, leased by whichever replica is free (1–48;
    /// default `reconcile.backfill_shard_hours`).
    #[arg(long)]
    shard_hours: Option<u32>,
    /// Only record the shards; replicas running `callrec serve` (or `callrec reconcile`) work
    /// them.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The configuration file (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The pipeline and the reconciler from the configuration; an error if OCP is not configured.
async fn open(loaded: &Loaded, metrics: Arc<Metrics>) -> Result<Arc<Reconciler>> {
    let pipeline = crate::serve::open_pipeline(loaded).await?;
    match crate::serve::reconciler(loaded, pipeline, metrics)? {
        Some(reconciler) => Ok(reconciler),
        None => bail!(
            "OCP is not configured (config key `ocp.region` or `ocp.base_url`): reconciliation \
             needs OCP's Exports API; see README, \"Connecting to OCP\""
        ),
    }
}

fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        signal.cancel();
    });
    stop
}

fn counter(metrics: &Metrics, outcome: &str) -> u64 {
    metrics.export_files.with_label_values(&[outcome]).get()
}

pub fn run_reconcile(args: ReconcileArgs) -> Result<ExitCode> {
    crate::serve::init_logging(args.log_json);
    let loaded = Config::load(args.config.as_deref())?;
    runtime()?.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let reconciler = open(&loaded, metrics.clone()).await?;
        let stop = stop_on_signal();
        if !args.once {
            tracing::info!(owner = %reconciler.config().owner, "reconciliation worker started");
            reconciler.run(stop).await;
            return Ok(ExitCode::SUCCESS);
        }
        let started = std::time::Instant::now();
        let report = reconciler.scan_once().await?;
        println!(
            "scan: {} calls missing ({} already in open export jobs, {} without an OCP group), \
             {} export jobs created, {} lost (past OCP's retention)",
            report.missing,
            report.covered,
            report.without_group,
            report.created.len(),
            report.lost.len()
        );
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"),
        );
        let ticker = {
            let spinner = spinner.clone();
            let metrics = metrics.clone();
            let store = reconciler_store(&loaded).await?;
            tokio::spawn(async move {
                loop {
                    let open = count_open_jobs(store.as_ref(), &|_| true)
                        .await
                        .unwrap_or(0);
                    spinner.set_message(format!(
                        "{open} export jobs open, {} recordings recovered",
                        counter(&metrics, "stored")
                    ));
                    spinner.tick();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        reconciler.work_until(stop.clone(), |_| true).await;
        ticker.abort();
        spinner.finish_and_clear();
        let store = reconciler_store(&loaded).await?;
        let open = count_open_jobs(store.as_ref(), &|_| true).await?;
        println!(
            "{:.1} s: {} exports requested, {} jobs done, {} failed, {} expired (asked again); \
             {} recordings recovered, {} already stored, {} failed; {} CDRs filled in; {} calls lost",
            started.elapsed().as_secs_f64(),
            metrics.exports_created.get(),
            metrics.export_jobs.with_label_values(&["done"]).get(),
            metrics.export_jobs.with_label_values(&["failed"]).get(),
            metrics.export_jobs.with_label_values(&["expired"]).get(),
            counter(&metrics, "stored"),
            counter(&metrics, "already_stored"),
            counter(&metrics, "failed") + counter(&metrics, "conflict"),
            metrics.export_cdrs.with_label_values(&["filled"]).get(),
            metrics.calls_lost.get(),
        );
        print_funnel(store.as_ref()).await?;
        if stop.is_cancelled() {
            println!("interrupted: {open} export jobs still open (their timers are durable; any replica continues them)");
            return Ok(ExitCode::from(130));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A second handle on the configured state store (for progress and summaries).
async fn reconciler_store(loaded: &Loaded) -> Result<Arc<dyn CallStore>> {
    Ok(callrec_ingest::setup::open_state(&loaded.config.state).await?)
}

/// `2026-11-01T00:00:00Z` or `2026-11-01` (UTC midnight).
pub fn parse_time(flag: &str, text: &str) -> Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        return Ok(date.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp());
    }
    bail!("{flag} {text:?}: an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01)")
}

pub fn run_backfill(args: BackfillArgs) -> Result<ExitCode> {
    crate::serve::init_logging(false);
    let loaded = Config::load(args.config.as_deref())?;
    if !callrec_ingest::ids::is_safe_id(&args.group) {
        bail!("--group {:?}: 1-128 of A-Z a-z 0-9 - _ .", args.group);
    }
    let from = parse_time("--from", &args.from)?;
    let to = parse_time("--to", &args.to)?;
    if to <= from {
        bail!("--to must be after --from");
    }
    let shard_hours = args
        .shard_hours
        .unwrap_or(loaded.config.reconcile.backfill_shard_hours);
    if !(1..=48).contains(&shard_hours) {
        bail!("--shard-hours: 1 to 48 (an OCP export covers at most 2 days)");
    }
    runtime()?.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let reconciler = open(&loaded, metrics.clone()).await?;
        let shards = reconciler
            .plan_backfill(&args.group, from, to, shard_hours)
            .await?;
        println!(
            "backfill of {} from {} to {}: {} shards of up to {shard_hours} h",
            args.group,
            shards.first().map_or(from, |s| s.from),
            shards.last().map_or(to, |s| s.to),
            shards.len()
        );
        if args.no_wait {
            println!("recorded; replicas running `callrec serve` or `callrec reconcile` work them");
            return Ok(ExitCode::SUCCESS);
        }
        let ours = |job: &ExportJob| {
            job.purpose == "backfill"
                && job.group_id == args.group
                && shards.iter().any(|s| s.from == job.from && s.to == job.to)
        };
        let bar = ProgressBar::new(shards.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} shards  {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix("backfill");
        let started = std::time::Instant::now();
        let store = reconciler_store(&loaded).await?;
        let ticker = {
            let (bar, metrics, store) = (bar.clone(), metrics.clone(), store.clone());
            let total = shards.len() as u64;
            let shards = shards.clone();
            let group = args.group.clone();
            tokio::spawn(async move {
                loop {
                    let open = count_open_jobs(store.as_ref(), &|j| {
                        j.purpose == "backfill"
                            && j.group_id == group
                            && shards.iter().any(|s| s.from == j.from && s.to == j.to)
                    })
                    .await
                    .map(|n| n as u64)
                    .unwrap_or(total);
                    bar.set_position(total.saturating_sub(open));
                    let stored = counter(&metrics, "stored");
                    bar.set_message(format!(
                        "{stored} recordings stored, {:.1}/s",
                        stored as f64 / started.elapsed().as_secs_f64().max(1e-3)
                    ));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let stop = stop_on_signal();
        reconciler.work_until(stop.clone(), &ours).await;
        ticker.abort();
        bar.finish();
        let seconds = started.elapsed().as_secs_f64();
        let stored = counter(&metrics, "stored");
        println!(
            "{seconds:.1} s: {stored} recordings stored here ({:.1}/s), {} already stored, {} \
             failed; {} exports requested, {} expired (asked again), {} failed",
            stored as f64 / seconds.max(1e-3),
            counter(&metrics, "already_stored"),
            counter(&metrics, "failed") + counter(&metrics, "conflict"),
            metrics.exports_created.get(),
            metrics.export_jobs.with_label_values(&["expired"]).get(),
            metrics.export_jobs.with_label_values(&["failed"]).get(),
        );
        if stop.is_cancelled() {
            println!("interrupted: the open shards stay recorded; any replica continues them");
            return Ok(ExitCode::from(130));
        }
        let failed = count_open_jobs(store.as_ref(), &ours).await?;
        Ok(
            if failed == 0 && metrics.export_jobs.with_label_values(&["failed"]).get() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            },
        )
    })
}

async fn print_funnel(store: &dyn CallStore) -> Result<()> {
    let funnel = store.funnel().await?;
    println!("funnel:");
    for (name, value) in funnel.flags() {
        println!("  {name:<10} {value:>8}");
    }
    for (name, value) in funnel.statuses() {
        println!("  {name:<10} {value:>8}");
    }
    Ok(())
}

/// Most open jobs `callrec status` lists (the counts cover them all).
const MAX_JOBS_SHOWN: usize = 1000;

pub fn run_status(args: StatusArgs) -> Result<ExitCode> {
    let loaded = Config::load(args.config.as_deref())?;
    runtime()?.block_on(async move {
        let store = reconciler_store(&loaded).await?;
        let funnel = store.funnel().await?;
        let open: Vec<_> = open_jobs_paged(store.as_ref())
            .take(MAX_JOBS_SHOWN)
            .try_collect()
            .await?;
        // What the jobs are waiting on OCP for: credentials or TLS need a person.
        let mut waiting: std::collections::BTreeMap<&str, usize> = Default::default();
        for job in &open {
            if let Some(upstream) = job.waiting_on.as_deref() {
                *waiting.entry(upstream).or_default() += 1;
            }
        }
        if args.json {
            let jobs: Vec<serde_json::Value> = open.iter().map(job_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "funnel": funnel,
                    "open_jobs": jobs,
                    "jobs_waiting_on_ocp": waiting,
                }))?
            );
            return Ok(ExitCode::SUCCESS);
        }
        println!("state store: {} ({})", store.backend(), loaded.source);
        print_funnel(store.as_ref()).await?;
        println!(
            "  {:<10} {:>8}  (ended, not stored: reconciliation's work)",
            "missing",
            funnel.ended.saturating_sub(funnel.stored)
        );
        if funnel.unprocessed > 0 {
            println!(
                "  {:<10} {:>8}  (stored as they arrived: the engine could not process them; \
                 the reason is on each call and in its sidecar)",
                "unprocessed", funnel.unprocessed
            );
        }
        println!();
        if open.is_empty() {
            println!("no open export jobs");
            return Ok(ExitCode::SUCCESS);
        }
        for (upstream, jobs) in &waiting {
            let what = match *upstream {
                "credentials" => {
                    "OCP refuses callrec's credentials: fix them (README, \"Connecting to OCP\"; \
                     `callrec ocp check` tells what is wrong); no call is charged meanwhile"
                }
                "tls" => {
                    "OCP's certificate is not trusted: set ocp.ca_file if a proxy inspects TLS \
                     (`callrec ocp check`); no call is charged meanwhile"
                }
                _ => "OCP or its identity provider is unavailable; retried, no call is charged",
            };
            println!("OCP: {jobs} job(s) waiting on {upstream}: {what}");
        }
        println!("{} open export jobs:", open.len());
        println!(
            "  {:<40} {:<9} {:<14} {:<17} {:>7} {:<20} lease",
            "job", "state", "export", "range (UTC)", "attempt", "next poll"
        );
        for job in &open {
            let hours = job.to.duration_since(job.from).as_hours();
            println!(
                "  {:<40} {:<9} {:<14} {:<17} {:>7} {:<20} {}",
                job.id.as_str(),
                job.state.name(),
                job.ocp_export_id.as_deref().unwrap_or("-"),
                format!("{} +{hours}h", job.from.strftime("%m-%d %H:00")),
                job.attempt,
                job.next_poll_at
                    .map_or("-".into(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string()),
                job.lease_owner.as_deref().unwrap_or("-"),
            );
            if let Some(error) = &job.last_error {
                println!("      last error: {error}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn job_json(job: &ExportJob) -> serde_json::Value {
    serde_json::json!({
        "id": job.id,
        "state": job.state.name(),
        "purpose": job.purpose,
        "group_id": job.group_id,
        "from": job.from,
        "to": job.to,
        "export_id": job.ocp_export_id,
        "attempt": job.attempt,
        "next_poll_at": job.next_poll_at,
        "deadline": job.deadline,
        "lease_owner": job.lease_owner,
        "last_error": job.last_error,
        "waiting_on": job.waiting_on,
    })
}
