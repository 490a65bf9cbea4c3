//! `callrec init`: creates the state store's table (or schema) and checks the buckets.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct InitArgs {
    /// The configuration file (TOML). Without one, the embedded defaults: SQLite and a folder
    /// under ./callrec-data. `CALLREC_*` environment variables override either.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Create missing S3 buckets too (normally they belong to your infrastructure code).
    #[arg(long)]
    create_buckets: bool,
}

pub fn run(args: InitArgs) -> Result<ExitCode> {
    let loaded = callrec_ingest::config::Config::load(args.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(callrec_ingest::setup::init(&loaded, args.create_buckets))?;
    for line in report {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
