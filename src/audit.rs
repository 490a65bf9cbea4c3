//! `callrec audit`: where each audited group's days stand against OCP's own CDR exports — how
//! many calls OCP reported, how many are stored and how each got there, how many callrec has
//! that OCP does not report. Exits 1 while a day is incomplete past its deadline.

use anyhow::{Result, bail};
use callrec_ingest::config::Config;
use callrec_ingest::reconcile::audit::{
    AuditState, AuditSummary, audit_state, due, recount, retry_at, settled_days,
};
use clap::Args;
use jiff::Timestamp;
use jiff::civil::Date;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    action: Option<AuditAction>,
    /// The configuration file (TOML), as for `serve`.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only this OCP group (default: every group of `[audit] groups`).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Only this UTC day, `2026-12-01` (default: every settled day of the look-back).
    #[arg(long, value_name = "DAY")]
    day: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum AuditAction {
    /// Check a day's manifests: each one's closing line against its lines, and every object it
    /// names read back and hashed. Exits 1 naming any manifest missing, altered, or object
    /// absent or altered.
    Verify {
        /// The configuration file (TOML), as for `serve`.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// The UTC day, `2026-12-01`.
        #[arg(long, value_name = "DAY")]
        day: String,
    },
}

/// `--day`: a UTC day, `2026-12-01`.
fn parse_day(text: &str) -> Result<Date> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("--day {text:?}: a UTC day, 2026-12-01"))
}

/// `callrec audit verify`.
fn verify(config: Option<PathBuf>, day: &str) -> Result<ExitCode> {
    use callrec_ingest::reconcile::manifest::{Problem, manifest_key};
    let loaded = Config::load(config.as_deref())?;
    let day = parse_day(day)?;
    let key = manifest_key(day);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let objects = callrec_ingest::setup::open_objects(&loaded.config.objects).await?;
        let mut failed = false;
        for bucket in loaded.routing.buckets() {
            let manifest = match objects.get(bucket, &key, None).await {
                Ok(bytes) => bytes,
                Err(callrec_ingest::objects::ObjectError::NotFound { .. }) => {
                    println!("{bucket}/{key}: no manifest (the day is not complete, or not audited)");
                    failed = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let (checked, problems) =
                callrec_ingest::reconcile::manifest::verify(objects.as_ref(), bucket, &manifest)
                    .await?;
            if problems.is_empty() {
                println!("{bucket}/{key}: {checked} calls, every object as the manifest says");
                continue;
            }
            failed = true;
            for problem in problems {
                match problem {
                    Problem::Manifest(why) => println!("{bucket}/{key}: PROBLEM the manifest: {why}"),
                    Problem::Absent { key: object } => {
                        println!("{bucket}/{key}: PROBLEM {object} is absent")
                    }
                    Problem::Altered {
                        key: object,
                        expected,
                        actual,
                    } => println!(
                        "{bucket}/{key}: PROBLEM {object} has SHA-256 {actual}, the manifest says {expected}"
                    ),
                }
            }
        }
        anyhow::Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// One group's day.
#[derive(serde::Serialize)]
struct Row {
    day: Date,
    group: String,
    /// `not audited yet`, `auditing`, `audit failed` (tried again later), `recovering` (audited,
    /// calls on their way), `complete`.
    state: &'static str,
    job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<AuditSummary>,
    /// Why the day is not moving: what its audit job waits on, or why its last one failed and
    /// when the next is tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// Past the time by which it should be complete, and not.
    overdue: bool,
}

pub fn run(args: AuditArgs) -> Result<ExitCode> {
    if let Some(AuditAction::Verify { config, day }) = args.action {
        return verify(config, &day);
    }
    let loaded = Config::load(args.config.as_deref())?;
    let config = loaded.config.worker_config(String::new()).audit;
    let groups = match &args.group {
        Some(group) if callrec_ingest::ids::is_safe_id(group) => vec![group.clone()],
        Some(group) => bail!("--group {group:?}: 1-128 of A-Z a-z 0-9 - _ ."),
        None if config.groups.is_empty() => {
            bail!("no group to audit: list them in [audit] groups, or name one with --group")
        }
        None => config.groups.clone(),
    };
    let now = Timestamp::now();
    let days = match &args.day {
        Some(day) => vec![parse_day(day)?],
        None => settled_days(&config, now),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let store = callrec_ingest::setup::open_state(&loaded.config.state).await?;
        let mut rows = Vec::new();
        for day in &days {
            for group in &groups {
                let state = audit_state(store.as_ref(), group, *day).await?;
                let (state, job, summary, note) = match state {
                    None | Some(AuditState::NotStarted { last: None, .. }) => {
                        ("not audited yet", None, None, None)
                    }
                    Some(AuditState::NotStarted {
                        last: Some(last),
                        failures,
                        ..
                    }) => {
                        let retry = loaded.config.poll_schedule().max;
                        let at = retry_at(&last, failures, retry);
                        let why = last.last_error.as_deref().unwrap_or("no reason recorded");
                        let note = format!(
                            "audit export failed ({failures} so far): {why}; tried again from {at}"
                        );
                        ("audit failed", Some(last.id.to_string()), None, Some(note))
                    }
                    Some(AuditState::Running(job)) => {
                        let note = job.last_error.as_ref().map(|e| match &job.waiting_on {
                            Some(on) => format!("waiting on {on}: {e}"),
                            None => e.clone(),
                        });
                        ("auditing", Some(job.id.to_string()), None, note)
                    }
                    Some(AuditState::Done(job)) => {
                        // Counted live while calls are on their way.
                        let summary = match &job.audit {
                            Some(summary) if summary.complete() => summary.clone(),
                            _ => recount(store.as_ref(), &job, now).await?,
                        };
                        let state = if summary.complete() {
                            "complete"
                        } else {
                            "recovering"
                        };
                        let note = (summary.unreadable > 0).then(|| {
                            format!(
                                "{} records of OCP's export could not be read",
                                summary.unreadable
                            )
                        });
                        (state, Some(job.id.to_string()), Some(summary), note)
                    }
                };
                let deadline = due(&config, *day);
                let overdue = state != "complete" && deadline.is_some_and(|at| now > at);
                rows.push(Row {
                    day: *day,
                    group: group.clone(),
                    state,
                    job,
                    summary,
                    note,
                    overdue,
                });
            }
        }
        anyhow::Ok(rows)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    Ok(if rows.iter().any(|r| r.overdue) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<10}  {:<24}  {:<16}  {:>8} {:>8} {:>8} {:>9} {:>6} {:>5} {:>7} {:>10}",
        "day",
        "group",
        "state",
        "reported",
        "stored",
        "streamed",
        "recovered",
        "found",
        "lost",
        "pending",
        "not in OCP"
    );
    for row in rows {
        let state = if row.overdue {
            format!("{} (overdue)", row.state)
        } else {
            row.state.to_string()
        };
        match &row.summary {
            Some(s) => println!(
                "{:<10}  {:<24}  {:<16}  {:>8} {:>8} {:>8} {:>9} {:>6} {:>5} {:>7} {:>10}",
                row.day.to_string(),
                row.group,
                state,
                s.reported,
                s.stored,
                s.streamed,
                s.recovered,
                s.found,
                s.lost,
                s.pending,
                s.not_in_ocp
            ),
            None => println!("{:<10}  {:<24}  {state}", row.day.to_string(), row.group),
        }
        if let Some(note) = &row.note {
            println!("{:<10}  {:<24}  {note}", "", "");
        }
    }
    let absent: Vec<String> = rows
        .iter()
        .filter_map(|r| r.summary.as_ref())
        .flat_map(|s| s.not_in_ocp_first.iter().map(ToString::to_string))
        .collect();
    if !absent.is_empty() {
        println!(
            "\ncalls callrec has that OCP does not report (kept, never deleted): {}",
            absent.join(", ")
        );
    }
}
