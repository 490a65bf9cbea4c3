//! `callrec init`: creates the state store's table (or schema) and checks the buckets; with
//! `--check`, creates nothing and says whether what exists is what callrec needs.

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
    #[arg(long, conflicts_with = "check")]
    create_buckets: bool,
    /// Create nothing: check that the table (its keys and every index) and the buckets exist
    /// as callrec needs them — a table made by Terraform, say. Exit 1 if anything differs.
    #[arg(long)]
    check: bool,
    /// With --check: print what was found as JSON (the table's shape and settings included).
    #[arg(long, requires = "check")]
    json: bool,
}

pub fn run(args: InitArgs) -> Result<ExitCode> {
    let loaded = callrec_ingest::config::Config::load(args.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.check {
        let check = runtime.block_on(callrec_ingest::setup::check(&loaded))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&check)?);
        } else {
            for line in &check.report {
                println!("{line}");
            }
            for problem in &check.problems {
                println!("PROBLEM {problem}");
            }
            if check.problems.is_empty() {
                println!("ok: the stores are what callrec needs");
            }
        }
        return Ok(if check.problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let report = runtime.block_on(callrec_ingest::setup::init(&loaded, args.create_buckets))?;
    for line in report {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
