//! `callrec ocp check`: can this configuration reach OCP, log in, and see its groups' exports?

use anyhow::{Context, Result};
use callrec_ingest::config::Config;
use callrec_ingest::ocp::check::{CheckReport, check};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct OcpArgs {
    #[command(subcommand)]
    command: OcpCommand,
}

#[derive(Subcommand)]
enum OcpCommand {
    /// Log in with the configured mode, list the exports of each group for the last two hours
    /// (creating none), and say what works and what does not: DNS, TLS, credentials, group
    /// whitelisting, clock skew. Exit 0 when everything works, 1 otherwise.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The configuration file (TOML); `CALLREC_*` variables apply over it (the password and
    /// the personal access token come only from there).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// An OCP group whose exports to look for (repeatable; default: `ocp.default_group`).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: OcpArgs) -> Result<ExitCode> {
    match args.command {
        OcpCommand::Check(args) => run_check(args),
    }
}

fn run_check(args: CheckArgs) -> Result<ExitCode> {
    crate::serve::init_logging_at(false, "error");
    // A configuration that cannot work is the first thing the check reports, not a usage error.
    let loaded = match Config::load(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => return Ok(failed(args.json, "config", &e.to_string())),
    };
    let client = match loaded.config.ocp.client_config() {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Ok(failed(
                args.json,
                "config",
                "OCP is not configured: set ocp.region (or ocp.base_url) and credentials (README, \
                 \"Connecting to OCP\")",
            ));
        }
        Err(e) => return Ok(failed(args.json, "config", &e.to_string())),
    };
    let mut groups = args.groups.clone();
    if groups.is_empty() {
        groups.extend(loaded.config.ocp.default_group.clone());
    }
    if let Some(bad) = groups.iter().find(|g| !callrec_ingest::ids::is_safe_id(g)) {
        return Ok(failed(
            args.json,
            "config",
            &format!("--group {bad:?}: an OCP group id, 1-128 of A-Z a-z 0-9 - _ ."),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(check(client, &groups));
    print(&report, args.json)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn failed(json: bool, name: &str, detail: &str) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": false, "checks": [{"name": name, "ok": false, "detail": detail}]})
        );
    } else {
        println!("FAIL  {name}: {detail}");
        println!("OCP check failed");
    }
    ExitCode::from(1)
}

fn print(report: &CheckReport, json: bool) -> Result<()> {
    if json {
        let mut value = serde_json::to_value(report)?;
        value["ok"] = report.ok().into();
        println!("{value}");
        return Ok(());
    }
    println!("OCP API:        {}", report.api);
    println!("token endpoint: {}", report.token_endpoint);
    println!("credentials:    {}", report.mode);
    for check in &report.checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        println!("{mark}  {}: {}", check.name, check.detail);
    }
    println!(
        "{}",
        if report.ok() {
            "OCP check passed"
        } else {
            "OCP check failed"
        }
    );
    Ok(())
}
