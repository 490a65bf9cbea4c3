//! `callrec redrive`: puts calls back to work, named (`--call`) or by state (`--lost`,
//! `--unprocessed`, `--since`). A lost call is pending again (stage 2's next scan looks for it
//! while OCP still holds its recording); a call out of attempts gets them back (a serving
//! replica's retrier runs it); a recording stored unprocessed is processed again here, with
//! this version's engine and limits, and replaces its original. A dry run unless `--apply`.

use anyhow::{Context, Result};
use callrec_ingest::CallId;
use callrec_ingest::config::Loaded;
use callrec_ingest::pipeline::{Pipeline, Reprocessed};
use callrec_ingest::store::{
    Attention, CallChange, CallRecord, CallStatus, CallStore, Outcome, attention_calls,
};
use clap::{ArgGroup, Args};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(group(
    ArgGroup::new("selection").args(["calls", "lost", "unprocessed"]).required(true).multiple(true)
))]
#[command(group(ArgGroup::new("by_state").args(["lost", "unprocessed"]).multiple(true)))]
pub struct RedriveArgs {
    /// The configuration file (TOML), as for `serve`. `CALLREC_*` environment variables
    /// override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Calls to put back to work, by id (as in the logs and `GET /v1/calls/{id}`).
    #[arg(long = "call", value_name = "ID", num_args = 1..)]
    calls: Vec<String>,
    /// Every lost call (stage 2 gave up on it) whose recording OCP still holds.
    #[arg(long)]
    lost: bool,
    /// Every recording stored unprocessed: processed again with this version's engine.
    #[arg(long)]
    unprocessed: bool,
    /// With --lost / --unprocessed: only calls filed at or after this time (the call's Start,
    /// else its End, else when its recording arrived): `2026-11-01T00:00:00Z` or `2026-11-01`.
    #[arg(long, value_name = "TIME", requires = "by_state")]
    since: Option<String>,
    /// Change them. Without it, only say what would be done.
    #[arg(long)]
    apply: bool,
}

/// What to do with one call.
enum Plan {
    /// The store's re-drive: pending again, attempts back.
    Redrive(String),
    /// Process the original stored unprocessed (or finish removing it).
    Reprocess(String),
}

/// What re-driving `record` does, in words; or why there is nothing to do. Whether a re-drive
/// changes anything is the store's own rule ([`CallChange::Redrive`]), tried on a copy.
fn plan(record: &CallRecord, retention: SignedDuration, now: Timestamp) -> Result<Plan, String> {
    if let Some(reason) = &record.unprocessed {
        let at = record.object.as_ref().map_or("?", |o| o.key.as_str());
        return Ok(Plan::Reprocess(format!(
            "stored unprocessed at {at} ({reason}): processed again, stored under its route, \
             the original removed"
        )));
    }
    if let Some(original) = &record.superseded {
        return Ok(Plan::Reprocess(format!(
            "re-processed; its original {} still to remove",
            original.key
        )));
    }
    let error = record.last_error.as_deref().unwrap_or("none");
    match record.clone().apply(&CallChange::Redrive, now).outcome {
        Outcome::Refused(why) => return Err(why.to_string()),
        Outcome::Changed => {}
        _ => return Err("pending, no failed attempt: already being worked on".into()),
    }
    let exportable = record.flags.received.is_some()
        || callrec_ingest::reconcile::scanner::dialog_time(record)
            .is_none_or(|at| at.checked_add(retention).is_ok_and(|until| now < until));
    if !exportable {
        return Err(format!(
            "not received, and its dialog is older than OCP's retention ({} days): no export \
             can bring it back",
            retention.as_hours() / 24
        ));
    }
    if record.status == CallStatus::Lost {
        return Ok(Plan::Redrive(format!(
            "lost ({error}): back to pending; stage 2's next scan looks for its recording"
        )));
    }
    let next = if record.flags.received.is_some() {
        "a serving replica's retrier runs it"
    } else {
        "stage 2's next scan looks for its recording"
    };
    Ok(Plan::Redrive(format!(
        "{} failed attempts (last error: {error}): attempts reset; {next}",
        record.attempts.max(record.runs_unfinished)
    )))
}

/// Every call of the attention index of `kind` filed at or after `since`.
async fn every(
    store: &dyn CallStore,
    kind: Attention,
    since: Option<Timestamp>,
) -> Result<Vec<CallId>> {
    use futures_util::TryStreamExt as _;
    let records: Vec<CallRecord> = attention_calls(store, kind, since).try_collect().await?;
    Ok(records.into_iter().map(|r| r.call_id).collect())
}

/// What the run did, for its last line and its exit code.
#[derive(Default)]
struct Tally {
    selected: usize,
    redriven: usize,
    reprocessed: usize,
    unknown: usize,
    failed: usize,
}

pub fn run(args: RedriveArgs) -> Result<ExitCode> {
    crate::serve::init_logging(false);
    let loaded = callrec_ingest::config::Config::load(args.config.as_deref())?;
    let named = args
        .calls
        .iter()
        .map(|id| CallId::parse(id).with_context(|| format!("--call {id:?}")))
        .collect::<Result<Vec<_>>>()?;
    let since = args
        .since
        .as_deref()
        .map(|t| crate::reconcile::parse_time("--since", t))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = callrec_ingest::setup::open_state(&loaded.config.state).await?;
        let mut ids = named;
        if args.lost {
            ids.extend(every(store.as_ref(), Attention::Lost, since).await?);
        }
        if args.unprocessed {
            ids.extend(every(store.as_ref(), Attention::Unprocessed, since).await?);
        }
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        let tally = redrive_each(&loaded, store, &ids, args.apply).await?;
        if args.apply {
            println!(
                "{} of {} calls re-driven, {} re-processed; {} failed, {} unknown",
                tally.redriven, tally.selected, tally.reprocessed, tally.failed, tally.unknown
            );
        } else {
            println!(
                "dry run of {} calls: nothing changed (--apply to re-drive)",
                tally.selected
            );
        }
        Ok(if tally.unknown + tally.failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

async fn redrive_each(
    loaded: &Loaded,
    store: std::sync::Arc<dyn CallStore>,
    ids: &[CallId],
    apply: bool,
) -> Result<Tally> {
    let retention =
        SignedDuration::from_hours(24 * i64::from(loaded.config.reconcile.retention_days));
    let mut tally = Tally {
        selected: ids.len(),
        ..Tally::default()
    };
    // The engine starts only if a recording is to be processed.
    let mut pipeline: Option<Pipeline> = None;
    for id in ids {
        let Some(record) = store.get(id).await? else {
            println!("{id}: no such call");
            tally.unknown += 1;
            continue;
        };
        let plan = match plan(&record, retention, Timestamp::now()) {
            Err(nothing) => {
                println!("{id}: {nothing}");
                continue;
            }
            Ok(Plan::Redrive(what) | Plan::Reprocess(what)) if !apply => {
                println!("{id}: would re-drive: {what}");
                continue;
            }
            Ok(plan) => plan,
        };
        match plan {
            Plan::Redrive(what) => {
                let (_, applied) = store
                    .update(id, &CallChange::Redrive, Timestamp::now())
                    .await?;
                match applied.outcome {
                    Outcome::Changed => {
                        tally.redriven += 1;
                        println!("{id}: re-driven: {what}");
                    }
                    Outcome::Refused(why) => println!("{id}: {why}"),
                    _ => println!("{id}: nothing to do"),
                }
            }
            Plan::Reprocess(_) => {
                if pipeline.is_none() {
                    pipeline = Some(crate::serve::open_pipeline(loaded).await?);
                }
                let pipeline = pipeline.as_ref().expect("opened above");
                match pipeline.reprocess(id).await {
                    Ok(Reprocessed::Processed {
                        key,
                        original_removed,
                    }) => {
                        tally.redriven += 1;
                        tally.reprocessed += 1;
                        let removed = if original_removed {
                            "original removed"
                        } else {
                            "removing the original failed: the next re-drive removes it"
                        };
                        println!("{id}: re-processed: stored at {key}; {removed}");
                    }
                    Ok(Reprocessed::OriginalRemoved) => {
                        tally.redriven += 1;
                        println!("{id}: original removed (re-processed before)");
                    }
                    Ok(Reprocessed::NothingToDo) => println!("{id}: nothing to do"),
                    Ok(Reprocessed::InFlight) => println!("{id}: already running"),
                    Err(e) => {
                        tally.failed += 1;
                        println!("{id}: re-processing failed, still stored unprocessed: {e}");
                    }
                }
            }
        }
    }
    Ok(tally)
}
