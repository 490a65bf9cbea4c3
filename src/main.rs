//! `callrec`: brings OCP call recordings into S3, processed and verified.

mod audit;
mod demo;
mod files;
mod init;
mod inspect;
mod ocp;
mod process;
mod reconcile;
mod redrive;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "callrec", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify audio files and report their format, duration, levels and checksums.
    Inspect(inspect::InspectArgs),
    /// Normalize, trim, resample and encode recordings, with a JSON report beside each.
    Process(process::ProcessArgs),
    /// Create the state store's table or schema, and check (or create) the buckets; says what
    /// it created.
    Init(init::InitArgs),
    /// Run the ingest service: CDR events and recordings in, processed audio out.
    Serve(serve::ServeArgs),
    /// Start the service with embedded defaults and the OCP simulator, run N calls of a past
    /// day through stage 1, stage 2 and the daily audit, check the day's manifests, show the
    /// funnel.
    Demo(demo::DemoArgs),
    /// Play OCP against a running service: CDR events and streamed recordings, with faults.
    Sim(demo::SimCliArgs),
    /// Recover missing recordings through OCP export jobs: once (`--once`), or as a
    /// reconciliation-only replica.
    Reconcile(reconcile::ReconcileArgs),
    /// Export and process everything of one OCP group in a time range, split into shards that
    /// replicas lease.
    Backfill(reconcile::BackfillArgs),
    /// The funnel and the open export jobs, from the state store.
    Status(reconcile::StatusArgs),
    /// Put calls back to work, named or by state: a lost call pending again, a call out of
    /// attempts given them back, a recording stored unprocessed processed again (a dry run
    /// unless --apply).
    Redrive(redrive::RedriveArgs),
    /// Where each audited day stands against OCP's CDR exports: reported, stored (and how),
    /// found by the audit, lost, not in OCP; exits 1 while a day is incomplete past its deadline.
    Audit(audit::AuditArgs),
    /// Talk to OCP: `callrec ocp check` says whether this configuration can reach it, log in,
    /// and see its groups' exports.
    Ocp(ocp::OcpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Process(args) => process::run(args),
        Command::Init(args) => init::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run_demo(args),
        Command::Sim(args) => demo::run_sim(args),
        Command::Reconcile(args) => reconcile::run_reconcile(args),
        Command::Backfill(args) => reconcile::run_backfill(args),
        Command::Status(args) => reconcile::run_status(args),
        Command::Redrive(args) => redrive::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Ocp(args) => ocp::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
