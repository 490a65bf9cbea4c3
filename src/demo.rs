//! `callrec demo` (the service and the simulator in one command) and `callrec sim` (the
//! simulator against a running service).

use anyhow::{Context, Result, bail};
use callrec_ingest::config::Config;
use callrec_ingest::reconcile::audit::{AuditState, audit_state};
use callrec_ingest::routing::{LineOfBusinessConfig, RuleConfig};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ocp_sim::exports::{ExportsApi, ExportsConfig};
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
    /// Share of calls of which nothing reaches callrec, neither CDR events nor recording (a
    /// dropped subscription): only OCP's exports hold them, and the daily audit finds them.
    #[arg(long, default_value_t = 0.05)]
    cdr_drop_rate: f64,
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

/// The simulated OCP the demo talks to: over HTTPS, its CA in a file callrec trusts
/// (`ocp.ca_file`), a personal access token as the credentials (the recommended mode).
struct DemoOcp {
    url: String,
    ca_file: PathBuf,
    personal_access_token: String,
}

/// The demo's configuration: the embedded defaults under `data`, two lines of business, and
/// reconciliation against the simulated Exports API with seconds, not minutes, between polls.
fn demo_config(data: &std::path::Path, token: &str, ocp: &DemoOcp) -> Config {
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
        application_type: None,
        direction: None,
        group_id: None,
    }];
    config.ocp.base_url = Some(ocp.url.clone());
    config.ocp.ca_file = Some(ocp.ca_file.clone());
    config.ocp.personal_access_token = ocp.personal_access_token.clone();
    config.reconcile.poll_initial_s = 1.0;
    config.reconcile.poll_max_s = 3.0;
    config.reconcile.grace_s = 0.0;
    config.reconcile.lease_ttl_s = 10.0;
    config.reconcile.scan_interval_s = 1.0;
    // The day's audit as soon as it has ended (the demo's calls are of a day that has).
    config.audit.settle_hours = 0.0;
    config.audit.deadline_hours = 1.0;
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

/// Serves OCP's simulated Exports API over HTTPS on a free loopback port, with a CA made now
/// whose certificate goes to `data/ocp-sim-ca.pem`.
async fn serve_exports(
    api: ExportsApi,
    data: &std::path::Path,
    personal_access_token: String,
) -> Result<DemoOcp> {
    let served = ocp_sim::exports::serve(api, true)
        .await
        .context("serving the simulated OCP")?;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let ca_file = data.join("ocp-sim-ca.pem");
    std::fs::write(&ca_file, served.ca_pem.as_deref().unwrap_or_default())
        .with_context(|| format!("writing {}", ca_file.display()))?;
    Ok(DemoOcp {
        url: served.url,
        ca_file,
        personal_access_token,
    })
}

pub fn run_demo(args: DemoArgs) -> Result<ExitCode> {
    // Progress bars and a summary; warnings and errors still show (CALLREC_LOG=info for more).
    crate::serve::init_logging_at(false, "warn");
    let token = format!("demo-{:032x}", rand::random::<u128>());
    let personal_access_token = format!("ocp-pat-{:032x}", rand::random::<u128>());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut ocp_config = ExportsConfig::new("callrec-demo", format!("{:032x}", rand::random::<u128>()));
        ocp_config.personal_access_tokens = vec![ocp_sim::idp::PersonalAccessToken {
            token: personal_access_token.clone(),
            groups: Vec::new(),
            expires_at: None,
        }];
        let exports = ExportsApi::new(ocp_config, Vec::new());
        let ocp = serve_exports(exports.clone(), &args.data, personal_access_token).await?;
        let config = demo_config(&args.data, &token, &ocp);
        let routing = config.validate()?;
        let mut loaded = callrec_ingest::config::Loaded {
            config,
            routing,
            source: format!("demo defaults under {}", args.data.display()),
        };
        let (listener, state) = crate::serve::bind(&loaded).await?;
        let address = listener.local_addr()?;
        crate::serve::spawn_resume(&state);
        let store = state.pipeline.store.clone();
        let state_pipeline = state.pipeline.clone();
        let before = store.funnel().await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(callrec_ingest::server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        let mut sim = args.sim.config(format!("http://{address}"), token)?;
        if !(0.0..=1.0).contains(&args.cdr_drop_rate) {
            bail!("--cdr-drop-rate is a share between 0 and 1, not {}", args.cdr_drop_rate);
        }
        sim.cdr_drop_rate = args.cdr_drop_rate;
        // The calls are of the latest day no earlier demo used, from its noon (UTC): a day
        // that has ended, so the daily audit takes it at once.
        let now = jiff::Timestamp::now();
        let day = demo_day(store.as_ref(), &sim.groups, now, loaded.config.reconcile.retention_days).await?;
        let noon = day.at(12, 0, 0, 0).to_zoned(jiff::tz::TimeZone::UTC)?.timestamp();
        sim.hours_ago = now.duration_since(noon).as_secs_f64() / 3600.0;
        loaded.config.audit.groups = sim.groups.clone();
        loaded.config.audit.lookback_days = u32::try_from((now.to_zoned(jiff::tz::TimeZone::UTC).date() - day).get_days())?;
        loaded.config.validate()?;
        write_demo_config(&args.data, &loaded.config)?;
        let base = jiff::Timestamp::now();
        let streamed = (0..sim.calls)
            .filter(|&i| ocp_sim::plan_call(&sim, i, base).streamed)
            .count() as u64;
        println!(
            "callrec demo: service on http://{address} ({}), {} calls of {day} (UTC), seed {}",
            loaded.source, sim.calls, sim.seed
        );
        println!(
            "simulated OCP on {} (TLS, its CA in {}; personal access token; native CDR records)",
            ocp.url,
            ocp.ca_file.display()
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
        let mut sim_task = Some(tokio::spawn(ocp_sim::run_with_exports(
            sim,
            Arc::clone(&progress),
            Some(exports.clone()),
        )));
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
        let stage1_seconds = started.elapsed().as_secs_f64();
        let duplicated = played.iter().filter(|c| c.duplicated).count();
        let reordered = played
            .iter()
            .filter(|c| c.order != ocp_sim::Order::InOrder)
            .count();
        // Stage 2 and the audit: the reconciler's loop (scans, export jobs, the day's audit)
        // until every call of the run is stored, the day is audited and its manifests written.
        let metrics = Arc::new(callrec_ingest::metrics::Metrics::new());
        let reconciler = crate::serve::reconciler(&loaded, state_pipeline.clone(), metrics)?
            .context("the demo configures OCP")?;
        let stage2 = std::time::Instant::now();
        let stop_reconciler = tokio_util::sync::CancellationToken::new();
        let work = {
            let reconciler = Arc::clone(&reconciler);
            let stop = stop_reconciler.clone();
            tokio::spawn(async move { reconciler.run(stop).await })
        };
        let watched = Watched::of(&played)?;
        let recovered = bars.add(ProgressBar::new(watched.count(Arrived::CdrsOnly)));
        recovered.set_style(style("{prefix:>10} [{bar:40}] {pos}/{len} recordings  {msg}"));
        recovered.set_prefix("recovered");
        let found = bars.add(ProgressBar::new(watched.count(Arrived::Nothing)));
        found.set_style(style("{prefix:>10} [{bar:40}] {pos}/{len} calls  {msg}"));
        found.set_prefix("audit");
        let buckets = loaded.routing.buckets();
        loop {
            let stored = watched.stored(store.as_ref()).await?;
            recovered.set_position(stored.recovered);
            recovered.set_message(format!(
                "{} OCP exports, {:.1} s",
                exports.exports_created(),
                stage2.elapsed().as_secs_f64()
            ));
            found.set_position(stored.found);
            let audited = audited_groups(store.as_ref(), &loaded.config.audit.groups, day).await?;
            found.set_message(format!(
                "found and stored; {audited}/{} groups' day complete",
                loaded.config.audit.groups.len()
            ));
            let all_stored = stored.all == watched.calls.len() as u64;
            if all_stored
                && audited == loaded.config.audit.groups.len()
                && manifests_written(state_pipeline.objects.as_ref(), &buckets, day).await?
            {
                break;
            }
            if stage2.elapsed() > Duration::from_secs(600) {
                bail!("reconciliation and the audit did not finish in 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        recovered.finish();
        found.finish();
        stop_reconciler.cancel();
        work.await.context("reconciliation stopped")?;
        let stage2_seconds = stage2.elapsed().as_secs_f64();
        let _ = stop.send(());
        server.await.context("the service stopped")??;

        // This run's calls, one by one: stored, and by which stage.
        let (mut by_stream, mut by_export, mut by_audit, mut missing) = (0usize, 0usize, 0usize, Vec::new());
        for call in &played {
            let id = callrec_ingest::CallId::parse(&call.call_id)?;
            match store.get(&id).await? {
                Some(r) if r.flags.stored.is_some() => {
                    if r.found_in_export.is_some() {
                        by_audit += 1
                    } else if call.streamed {
                        by_stream += 1
                    } else {
                        by_export += 1
                    }
                }
                _ => missing.push(call.call_id.clone()),
            }
        }
        let funnel = store.funnel().await?;
        println!();
        println!("{calls} calls in {stage1_seconds:.1} s, {:.1} calls/s ({duplicated} sent twice, {reordered} out of order; recordings never streamed: {}; calls of which nothing arrived: {})", calls as f64 / stage1_seconds, watched.count(Arrived::CdrsOnly), watched.count(Arrived::Nothing));
        if let (Some(p50), Some(p99)) = (progress.upload_quantile_ms(0.5), progress.upload_quantile_ms(0.99)) {
            println!("upload to acknowledgement: p50 {p50:.1} ms, p99 {p99:.1} ms");
        }
        println!(
            "reconciliation and audit: {} OCP exports ({} of them the audit's, CDR only), {stage2_seconds:.1} s",
            exports.exports_created(),
            exports.cdr_only_exports()
        );
        println!();
        let stored_now = by_stream + by_export + by_audit;
        println!("this run: {stored_now}/{calls} calls stored ({:.1}%)", 100.0 * stored_now as f64 / calls.max(1) as f64);
        println!("  {:<34} {by_stream:>8}", "stage 1 (streamed)");
        println!("  {:<34} {by_export:>8}", "stage 2 (OCP exports)");
        println!("  {:<34} {by_audit:>8}", "audit (found in OCP's CDR export)");
        println!("  {:<34} {:>8}", "missing", missing.len());
        println!();
        println!("the daily audit of {day}:");
        for group in &loaded.config.audit.groups {
            if let Some(AuditState::Done(job)) = audit_state(store.as_ref(), group, day).await?
                && let Some(a) = &job.audit
            {
                println!(
                    "  {group:<14} OCP reported {}, stored {} (streamed {}, recovered {}, found {}), lost {}, not in OCP {}",
                    a.reported, a.stored, a.streamed, a.recovered, a.found, a.lost, a.not_in_ocp
                );
            }
        }
        let mut manifests_ok = true;
        for bucket in &buckets {
            let key = callrec_ingest::reconcile::manifest::manifest_key(day);
            let body = state_pipeline.objects.get(bucket, &key, None).await?;
            let (checked, problems) =
                callrec_ingest::reconcile::manifest::verify(state_pipeline.objects.as_ref(), bucket, &body).await?;
            if problems.is_empty() {
                println!("  manifest {bucket}/{key}: {checked} calls, every object as it says");
            } else {
                manifests_ok = false;
                println!("  manifest {bucket}/{key}: PROBLEMS {problems:?}");
            }
        }
        println!();
        println!("funnel (all runs in {}):", args.data.display());
        for (name, value) in funnel.flags() {
            println!("  {name:<10} {value:>8}");
        }
        for (name, value) in funnel.statuses() {
            println!("  {name:<10} {value:>8}");
        }
        println!();
        println!("stored audio + JSON reports: {}/objects/callrec-{{sales,care}}/", args.data.display());
        println!("database (SQLite):           {}", args.data.join("callrec.db").display());
        let toml = args.data.join(DEMO_CONFIG);
        println!("check it again:              callrec audit -c {0} --day {day}; callrec audit verify -c {0} --day {day}", toml.display());
        if !missing.is_empty() {
            println!("not stored: {}", missing.join(", "));
            return Ok(ExitCode::from(1));
        }
        if !manifests_ok {
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The configuration `callrec audit` and `callrec audit verify` need to read the demo's stores
/// (no secret: the service's and OCP's tokens are left out).
const DEMO_CONFIG: &str = "callrec.toml";

fn write_demo_config(data: &std::path::Path, config: &Config) -> Result<()> {
    let mut table = toml::Table::try_from(config).context("writing the demo's configuration")?;
    // No secret goes in a file (the loader refuses them): the tokens and OCP's section.
    table.remove("ocp");
    if let Some(toml::Value::Table(server)) = table.get_mut("server") {
        server.remove("bearer_tokens");
        server.remove("read_tokens");
    }
    let text = format!(
        "# Written by `callrec demo` for `callrec audit -c` and `callrec status -c`: its stores and\n\
         # lines of business (no token; OCP is the demo's own, gone when it ends).\n{}",
        toml::to_string(&table).context("writing the demo's configuration")?
    );
    let path = data.join(DEMO_CONFIG);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// The latest day before today (UTC) that no earlier demo in the folder used for `groups`: the
/// day's audit has not started. At most `retention_days` back.
async fn demo_day(
    store: &dyn callrec_ingest::store::CallStore,
    groups: &[String],
    now: jiff::Timestamp,
    retention_days: u32,
) -> Result<jiff::civil::Date> {
    let mut day = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    for _ in 1..retention_days {
        day = day.yesterday()?;
        let mut unused = true;
        for group in groups {
            let state = audit_state(store, group, day).await?;
            unused &= matches!(state, Some(AuditState::NotStarted { last: None, .. }));
        }
        if unused {
            return Ok(day);
        }
    }
    bail!("every day of OCP's retention has a demo's calls in this folder: use a new --data")
}

/// The calls the demo watches in stage 2, each with what came of it through the stream: all
/// of it, the CDRs but not the recording (stage 2 recovers it), nothing (the audit finds it).
struct Watched {
    calls: Vec<(callrec_ingest::CallId, Arrived)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Arrived {
    All,
    CdrsOnly,
    Nothing,
}

/// How many of the watched calls are stored: all of them, and of those by stage 2 and the audit.
#[derive(Default)]
struct StoredCount {
    all: u64,
    recovered: u64,
    found: u64,
}

impl Watched {
    fn of(played: &[ocp_sim::SimCall]) -> Result<Self> {
        let calls = played
            .iter()
            .map(|c| {
                let arrived = match (c.cdr_sent, c.streamed) {
                    (false, _) => Arrived::Nothing,
                    (true, false) => Arrived::CdrsOnly,
                    (true, true) => Arrived::All,
                };
                Ok((callrec_ingest::CallId::parse(&c.call_id)?, arrived))
            })
            .collect::<Result<_>>()?;
        Ok(Watched { calls })
    }

    fn count(&self, arrived: Arrived) -> u64 {
        self.calls.iter().filter(|(_, a)| *a == arrived).count() as u64
    }

    /// One read per call.
    async fn stored(&self, store: &dyn callrec_ingest::store::CallStore) -> Result<StoredCount> {
        let mut stored = StoredCount::default();
        for (id, arrived) in &self.calls {
            if store
                .get(id)
                .await?
                .is_some_and(|r| r.flags.stored.is_some())
            {
                stored.all += 1;
                stored.recovered += u64::from(*arrived == Arrived::CdrsOnly);
                stored.found += u64::from(*arrived == Arrived::Nothing);
            }
        }
        Ok(stored)
    }
}

/// How many of `groups` have `day` audited and complete.
async fn audited_groups(
    store: &dyn callrec_ingest::store::CallStore,
    groups: &[String],
    day: jiff::civil::Date,
) -> Result<usize> {
    let mut complete = 0;
    for group in groups {
        if let Some(AuditState::Done(job)) = audit_state(store, group, day).await?
            && job.audit.as_ref().is_some_and(|a| a.complete())
        {
            complete += 1;
        }
    }
    Ok(complete)
}

/// Every bucket has `day`'s manifest.
async fn manifests_written(
    objects: &dyn callrec_ingest::objects::ObjectStore,
    buckets: &[&str],
    day: jiff::civil::Date,
) -> Result<bool> {
    let key = callrec_ingest::reconcile::manifest::manifest_key(day);
    for bucket in buckets {
        if objects.head(bucket, &key).await?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
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
