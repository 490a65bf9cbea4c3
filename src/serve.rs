//! `callrec serve`: the ingest service.

use anyhow::{Context, Result, bail};
use callrec_ingest::config::{Config, Loaded};
use callrec_ingest::metrics::Metrics;
use callrec_ingest::pipeline::{EngineRunner, Pipeline};
use callrec_ingest::reconcile::{Reconciler, default_owner};
use callrec_ingest::server::{AppState, serve};
use clap::Args;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
        let stop = CancellationToken::new();
        let retrier = callrec_ingest::server::spawn_retrier(&state, stop.clone());
        if let Some(admin) = &loaded.config.server.admin_listen {
            let listener = tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("listening on {admin} (server.admin_listen)"))?;
            let address = listener.local_addr()?;
            // Not println!: whoever read the first line may have closed stdout.
            let _ = writeln!(std::io::stdout(), "operations on http://{address}");
            tracing::info!(%address, "operations listener (/healthz, /readyz, /metrics)");
            let admin_state = state.clone();
            let stopping = stop.clone().cancelled_owned();
            tokio::spawn(async move {
                if let Err(e) =
                    callrec_ingest::server::serve_admin(listener, admin_state, stopping).await
                {
                    tracing::error!(error = %e, "the operations listener stopped");
                }
            });
        }
        let reconciling = spawn_reconciler(&loaded, &state, stop.clone())?;
        let signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            signal.cancel();
        });
        serve(listener, state, stop.cancelled_owned()).await?;
        let _ = retrier.await;
        if let Some(task) = reconciling {
            task.await.context("the reconciler stopped")?;
        }
        tracing::info!("stopped: requests and accepted calls finished");
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts stage 2 (the scanner and the export-job timer loop) beside the service, when
/// OCP is configured (`ocp.region` or `ocp.base_url`) and `reconcile.enabled`.
pub fn spawn_reconciler(
    loaded: &Loaded,
    state: &AppState,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let config = &loaded.config;
    if !config.reconcile.enabled {
        tracing::info!("reconciliation off: reconcile.enabled = false");
        return Ok(None);
    }
    let Some(ocp) = state.ocp.clone() else {
        tracing::info!("reconciliation off: OCP is not configured (ocp.region or ocp.base_url)");
        return Ok(None);
    };
    let worker = config.worker_config(default_owner());
    let reconciler = Reconciler::new(state.pipeline.clone(), ocp, worker, state.metrics.clone());
    tracing::info!(
        owner = %reconciler.config().owner,
        scan_interval_s = config.reconcile.scan_interval_s,
        "reconciliation on"
    );
    Ok(Some(tokio::spawn(async move {
        reconciler.run(stop).await;
    })))
}

/// The reconciliation worker over `pipeline`, if OCP is configured.
pub fn reconciler(
    loaded: &Loaded,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
) -> Result<Option<Arc<Reconciler>>> {
    let Some(ocp) = callrec_ingest::setup::open_ocp(&loaded.config.ocp)? else {
        return Ok(None);
    };
    let config = loaded.config.worker_config(default_owner());
    Ok(Some(Reconciler::new(pipeline, ocp, config, metrics)))
}

/// Opens the stores and starts the engine.
pub async fn open_pipeline(loaded: &Loaded) -> Result<Pipeline> {
    let config = &loaded.config;
    let store = callrec_ingest::setup::open_state(&config.state).await?;
    let objects = callrec_ingest::setup::open_objects(&config.objects).await?;
    let engine = EngineRunner::start(
        config.server.engine_threads,
        config.server.engine_memory_mb << 20,
        config.engine_process_config(),
    )?;
    Ok(Pipeline {
        store,
        objects,
        routing: Arc::new(loaded.routing.clone()),
        engine,
        keep_staged: config.server.keep_staged,
        max_attempts: config.server.max_attempts,
        in_flight: Default::default(),
        end_wait: std::time::Duration::from_secs(config.server.end_wait_s),
    })
}

/// Opens the stores, starts the engine and binds the listener: a service ready to serve.
pub async fn bind(loaded: &Loaded) -> Result<(tokio::net::TcpListener, AppState)> {
    let config = &loaded.config;
    let state = AppState {
        pipeline: open_pipeline(loaded).await?,
        config: Arc::new(config.server.clone()),
        queue: Arc::new(tokio::sync::Semaphore::new(config.server.queue_depth)),
        metrics: Arc::new(Metrics::new()),
        tasks: tokio_util::task::TaskTracker::new(),
        ocp: callrec_ingest::setup::open_ocp(&config.ocp)?,
        default_group: config.ocp.default_group.clone(),
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
pub async fn shutdown_signal() {
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
    init_logging_at(json, "info");
}

/// As [`init_logging`], at `default` unless `CALLREC_LOG` says otherwise.
pub fn init_logging_at(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLREC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
