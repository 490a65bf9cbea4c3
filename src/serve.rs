//! `callrec serve`: the ingest service.

use anyhow::{Context, Result, bail};
use callrec_ingest::config::{Config, Loaded};
use callrec_ingest::pipeline::{EngineRunner, Pipeline};
use callrec_ingest::server::{AppState, metrics::Metrics, serve};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// The configuration file (TOML). Without one, the embedded defaults: SQLite and a folder
    /// under ./callrec-data. `CALLREC_*` environment variables override either.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen here instead of `server.listen` (e.g. 127.0.0.1:0 for any free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Log as JSON lines (for CloudWatch and the like) instead of text.
    #[arg(long)]
    log_json: bool,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    init_logging(args.log_json);
    let mut loaded = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        loaded.config.server.listen = listen;
        loaded.config.validate()?;
    }
    if loaded.config.server.bearer_tokens.is_empty() {
        bail!(
            "config key `server.bearer_tokens` is empty: every write needs a token; set \
             CALLREC_SERVER__BEARER_TOKENS='[\"<token of 16+ characters>\"]'"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("callrec-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (listener, state) = bind(&loaded).await?;
        let address = listener.local_addr()?;
        // The first line on stdout says where to connect (tests and scripts read it).
        println!("listening on http://{address}");
        tracing::info!(%address, source = %loaded.source, "callrec serve started");
        spawn_resume(&state);
        serve(listener, state, shutdown_signal()).await?;
        tracing::info!("stopped: requests and accepted calls finished");
        Ok(ExitCode::SUCCESS)
    })
}

/// Opens the stores, starts the engine and binds the listener: a service ready to serve.
pub async fn bind(loaded: &Loaded) -> Result<(tokio::net::TcpListener, AppState)> {
    let config = &loaded.config;
    let store = callrec_ingest::setup::open_state(&config.state).await?;
    let objects = callrec_ingest::setup::open_objects(&config.objects).await?;
    let engine = EngineRunner::start(
        config.server.engine_threads,
        config.server.queue_depth,
        callrec_engine::ProcessConfig::default(),
    )?;
    let state = AppState {
        pipeline: Pipeline {
            store,
            objects,
            routing: Arc::new(loaded.routing.clone()),
            engine,
            keep_staged: config.server.keep_staged,
        },
        config: Arc::new(config.server.clone()),
        queue: Arc::new(tokio::sync::Semaphore::new(config.server.queue_depth)),
        metrics: Arc::new(Metrics::new()),
        tasks: tokio_util::task::TaskTracker::new(),
    };
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("listening on {}", config.server.listen))?;
    Ok((listener, state))
}

/// Calls a previous run accepted but did not finish go on, alongside new requests.
pub fn spawn_resume(state: &AppState) {
    let resuming = state.clone();
    tokio::spawn(async move {
        match callrec_ingest::server::resume(&resuming).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(calls = n, "resuming calls received but not stored"),
            Err(e) => tracing::error!(error = %e, "could not list the calls to resume"),
        }
    });
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down: no new requests; finishing what is in flight");
}

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLREC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
