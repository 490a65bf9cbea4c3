//! `callrec redrive`: puts named calls back to work — a lost call is pending again (stage 2's
//! next scan looks for it while OCP still holds its recording), a call out of attempts gets
//! them back (a serving replica's retrier runs it). A dry run unless `--apply`.

use anyhow::{Context, Result};
use callrec_ingest::CallId;
use callrec_ingest::config::Config;
use callrec_ingest::store::{CallChange, CallRecord, CallStatus, Outcome};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct RedriveArgs {
    /// The configuration file (TOML), as for `serve`. `CALLREC_*` environment variables
    /// override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// The calls to put back to work (their ids, as in the logs and `GET /v1/calls/{id}`).
    #[arg(long = "call", value_name = "ID", required = true, num_args = 1..)]
    calls: Vec<String>,
    /// Change them. Without it, only say what would be done.
    #[arg(long)]
    apply: bool,
}

/// What re-driving `record` does, in words; or why there is nothing to do. Whether it changes
/// anything is the store's own rule ([`CallChange::Redrive`]), tried on a copy.
fn plan(record: &CallRecord) -> std::result::Result<String, String> {
    let error = record.last_error.as_deref().unwrap_or("none");
    match record
        .clone()
        .apply(&CallChange::Redrive, jiff::Timestamp::now())
        .outcome
    {
        Outcome::Refused(why) => return Err(why.to_string()),
        Outcome::Changed => {}
        _ => return Err("pending, no failed attempt: already being worked on".into()),
    }
    if record.status == CallStatus::Lost {
        return Ok(format!(
            "lost ({error}): back to pending; stage 2's next scan looks for its recording"
        ));
    }
    let next = if record.flags.received.is_some() {
        "a serving replica's retrier runs it"
    } else {
        "stage 2's next scan looks for its recording"
    };
    Ok(format!(
        "{} failed attempts (last error: {error}): attempts reset; {next}",
        record.attempts.max(record.runs_unfinished)
    ))
}

pub fn run(args: RedriveArgs) -> Result<ExitCode> {
    let loaded = Config::load(args.config.as_deref())?;
    let ids = args
        .calls
        .iter()
        .map(|id| CallId::parse(id).with_context(|| format!("--call {id:?}")))
        .collect::<Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = callrec_ingest::setup::open_state(&loaded.config.state).await?;
        let (mut redriven, mut unknown) = (0, 0);
        for id in &ids {
            let Some(record) = store.get(id).await? else {
                println!("{id}: no such call");
                unknown += 1;
                continue;
            };
            match plan(&record) {
                Err(nothing) => println!("{id}: {nothing}"),
                Ok(what) if !args.apply => println!("{id}: would re-drive: {what}"),
                Ok(what) => {
                    let (_, applied) = store
                        .update(id, &CallChange::Redrive, jiff::Timestamp::now())
                        .await?;
                    match applied.outcome {
                        Outcome::Changed => {
                            redriven += 1;
                            println!("{id}: re-driven: {what}");
                        }
                        Outcome::Refused(why) => println!("{id}: {why}"),
                        _ => println!("{id}: nothing to do"),
                    }
                }
            }
        }
        if !args.apply {
            println!("dry run: nothing changed (--apply to re-drive)");
        } else {
            println!("{redriven} of {} calls re-driven", ids.len());
        }
        Ok(if unknown > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}
