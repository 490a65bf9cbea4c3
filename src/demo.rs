//! `callrec demo` (the service and the simulator in one command) and `callrec sim` (the
//! simulator against a running service).

use anyhow::{Context, Result, bail};
use callrec_ingest::config::Config;
use callrec_ingest::routing::{LineOfBusinessConfig, RuleConfig};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ocp_sim::{Progress, SimConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The simulator's knobs, shared by `demo` and `sim`.
#[derive(Args, Clone)]
pub struct SimArgs {
    /// Calls to simulate.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// Seed of the calls (ids, lengths, faults, audio); default: from the clock, so each run
    /// makes new calls.
    #[arg(long)]
    seed: Option<u64>,
    /// Share of recordings OCP never streams (stage 2 recovers them).
    #[arg(long, default_value_t = 0.10)]
    drop_rate: f64,
    /// Share of calls whose events and recording are sent twice.
    #[arg(long, default_value_t = 0.05)]
    duplicate_rate: f64,
    /// Share of calls sent out of order (End before Start, audio before End).
    #[arg(long, default_value_t = 0.20)]
    reorder_rate: f64,
    /// Shortest and longest call, seconds.
    #[arg(long, default_value_t = 5.0)]
    min_call_s: f64,
    #[arg(long, default_value_t = 40.0)]
    max_call_s: f64,
    /// Calls started per second (0: as fast as the service takes them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Do not send checksums with the recordings.
    #[arg(long)]
    no_checksums: bool,
}

impl SimArgs {
    fn config(&self, target: String, token: String) -> Result<SimConfig> {
        for (name, value) in [
            ("--drop-rate", self.drop_rate),
            ("--duplicate-rate", self.duplicate_rate),
            ("--reorder-rate", self.reorder_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                bail!("{name} is a share between 0 and 1, not {value}");
            }
        }
        if !(self.min_call_s > 0.0
            && self.max_call_s >= self.min_call_s
            && self.max_call_s <= 7200.0)
        {
            bail!("call lengths: 0 < --min-call-s <= --max-call-s <= 7200");
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
        let mut config = SimConfig::new(target, token);
        config.calls = self.calls;
        config.seed = seed;
        config.drop_rate = self.drop_rate;
        config.duplicate_rate = self.duplicate_rate;
        config.reorder_rate = self.reorder_rate;
        config.min_call_s = self.min_call_s;
        config.max_call_s = self.max_call_s;
        config.rate_per_s = self.rate;
        config.concurrency = self.concurrency.max(1);
        config.checksums = !self.no_checksums;
        Ok(config)
    }
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where the demo keeps its database, objects and spool.
    #[arg(long, default_value = "callrec-demo", value_name = "DIR")]
    data: PathBuf,
    #[command(flatten)]
    sim: SimArgs,
}

#[derive(Args)]
pub struct SimCliArgs {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Environment variable holding the bearer token (tokens never go on a command line).
    #[arg(long, default_value = "CALLREC_SIM_TOKEN")]
    token_env: String,
    #[command(flatten)]
    sim: SimArgs,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

/// The demo's configuration: the embedded defaults under `data`, two lines of business.
fn demo_config(data: &std::path::Path, token: &str) -> Config {
    let mut config = Config::default();
    config.state.sqlite_path = data.join("callrec.db");
    config.objects.folder_root = data.join("objects");
    config.server.spool_dir = data.join("spool");
    config.server.listen = "127.0.0.1:0".into();
    config.server.bearer_tokens = vec![token.to_string()];
    config.routing.default = "care".into();
    config.routing.rules = vec![RuleConfig {
        line_of_business: "sales".into(),
        application: Some("sales-*".into()),
        ivr_channel: None,
        group_id: None,
    }];
    config.lines_of_business.clear();
    for (name, bucket) in [("sales", "callrec-sales"), ("care", "callrec-care")] {
        config.lines_of_business.insert(
            name.into(),
            LineOfBusinessConfig {
                bucket: bucket.into(),
                key_template: None,
                storage_class: None,
                kms_key_id: None,
            },
        );
    }
    config
}

pub fn run_demo(args: DemoArgs) -> Result<ExitCode> {
    crate::serve::init_logging(false);
    let token = format!("demo-{:032x}", rand::random::<u128>());
    let config = demo_config(&args.data, &token);
    let routing = config.validate()?;
    let loaded = callrec_ingest::config::Loaded {
        config,
        routing,
        source: format!("demo defaults under {}", args.data.display()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (listener, state) = crate::serve::bind(&loaded).await?;
        let address = listener.local_addr()?;
        crate::serve::spawn_resume(&state);
        let store = state.pipeline.store.clone();
        let before = store.funnel().await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(callrec_ingest::server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        let sim = args.sim.config(format!("http://{address}"), token)?;
        let base = jiff::Timestamp::now();
        let streamed = (0..sim.calls)
            .filter(|&i| ocp_sim::plan_call(&sim, i, base).streamed)
            .count() as u64;
        println!(
            "callrec demo: service on http://{address} ({}), {} calls, seed {}",
            loaded.source, sim.calls, sim.seed
        );
        let bars = MultiProgress::new();
        let simulated = bars.add(ProgressBar::new(sim.calls as u64));
        simulated.set_style(style("{prefix:>10} [{bar:40}] {pos}/{len} calls  {msg}"));
        simulated.set_prefix("simulated");
        let stored = bars.add(ProgressBar::new(streamed));
        stored.set_style(style("{prefix:>10} [{bar:40}] {pos}/{len} recordings  {msg}"));
        stored.set_prefix("stored");
        let progress = Arc::new(Progress::default());
        let calls = sim.calls;
        let mut sim_task = Some(tokio::spawn(ocp_sim::run(sim, Arc::clone(&progress))));
        let started = std::time::Instant::now();
        let mut played = None;
        loop {
            let funnel = store.funnel().await?;
            let done_sim = progress.calls_done.load(Ordering::Relaxed);
            simulated.set_position(done_sim);
            simulated.set_message(format!(
                "{} events, {} uploads, {} retries",
                progress.events_sent.load(Ordering::Relaxed),
                progress.uploads_sent.load(Ordering::Relaxed),
                progress.retries.load(Ordering::Relaxed),
            ));
            let new_stored = funnel.stored.saturating_sub(before.stored);
            stored.set_position(new_stored.min(streamed));
            stored.set_message(format!("{:.1} s", started.elapsed().as_secs_f64()));
            if let Some(task) = sim_task.take_if(|t| t.is_finished()) {
                played = Some(task.await.context("the simulator stopped")??);
                simulated.finish();
            }
            if played.is_some() && new_stored >= streamed {
                stored.finish();
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("not every streamed recording was stored after 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let played = played.expect("the loop ends after the simulator");
        let _ = stop.send(());
        server.await.context("the service stopped")??;
        let funnel = store.funnel().await?;
        let dropped = played.iter().filter(|c| !c.streamed).count();
        let duplicated = played.iter().filter(|c| c.duplicated).count();
        let reordered = played
            .iter()
            .filter(|c| c.order != ocp_sim::Order::InOrder)
            .count();
        println!();
        let seconds = started.elapsed().as_secs_f64();
        println!("{calls} calls in {seconds:.1} s, {:.1} calls/s ({duplicated} sent twice, {reordered} out of order, {dropped} recordings never streamed)", calls as f64 / seconds);
        if let (Some(p50), Some(p99)) = (progress.upload_quantile_ms(0.5), progress.upload_quantile_ms(0.99)) {
            println!("upload to acknowledgement: p50 {p50:.1} ms, p99 {p99:.1} ms");
        }
        println!();
        println!("funnel (all runs in {}):", args.data.display());
        for (name, value) in funnel.flags() {
            println!("  {name:<10} {value:>8}");
        }
        println!(
            "  {:<10} {:>8}  (ended, recording never streamed: stage 2, reconciliation, recovers them)",
            "missing",
            funnel.ended.saturating_sub(funnel.stored)
        );
        println!();
        println!("stored audio + JSON reports: {}/objects/callrec-{{sales,care}}/", args.data.display());
        println!("database (SQLite):           {}", args.data.join("callrec.db").display());
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_sim(args: SimCliArgs) -> Result<ExitCode> {
    let token = std::env::var(&args.token_env)
        .with_context(|| format!("the bearer token: set {}", args.token_env))?;
    let sim = args
        .sim
        .config(args.target.trim_end_matches('/').to_string(), token)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let bar = ProgressBar::new(sim.calls as u64);
        bar.set_style(style("{prefix:>10} [{bar:40}] {pos}/{len} calls  {msg}"));
        bar.set_prefix("simulated");
        let progress = Arc::new(Progress::default());
        let task = tokio::spawn(ocp_sim::run(sim, Arc::clone(&progress)));
        while !task.is_finished() {
            bar.set_position(progress.calls_done.load(Ordering::Relaxed));
            bar.set_message(format!(
                "{} retries",
                progress.retries.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let played = task.await.context("the simulator stopped")??;
        bar.finish();
        let streamed = played.iter().filter(|c| c.streamed).count();
        println!(
            "{} calls: {streamed} recordings streamed, {} not (as OCP drops them)",
            played.len(),
            played.len() - streamed
        );
        if let (Some(p50), Some(p99)) = (
            progress.upload_quantile_ms(0.5),
            progress.upload_quantile_ms(0.99),
        ) {
            println!("upload to acknowledgement: p50 {p50:.1} ms, p99 {p99:.1} ms");
        }
        Ok(ExitCode::SUCCESS)
    })
}
