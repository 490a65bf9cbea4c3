//! Stage 2 end to end: `callrec serve` takes what OCP streams (10% or more never arrives), then
//! `callrec reconcile` (or the reconciler inside `callrec serve`) recovers the rest from
//! ocp-sim's Exports API on a loopback port (HTTPS with a CA made at start, OCP's password and
//! refresh grants, native CDR records) — with faults, with kills, with two replicas.

use callrec_ingest::store::CallStore as _;
use ocp_sim::SimCall;
use ocp_sim::exports::ExportsConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::ocp::Ocp;
use common::service::{Service, TOKEN, walk};

const OCP_PASSWORD: &str = "ocp-test-secret";

impl Ocp {
    /// Plays the calls against the service; every recording (streamed or not) goes to OCP.
    fn play(&self, sim: ocp_sim::SimConfig) -> Vec<SimCall> {
        self.runtime
            .block_on(ocp_sim::run_with_exports(
                sim,
                Default::default(),
                Some(self.api.clone()),
            ))
            .unwrap()
    }

    fn downloads(&self) -> u64 {
        self.api.downloads().values().sum()
    }
}

fn ocp_config() -> ExportsConfig {
    let mut config = ExportsConfig::new("callrec", OCP_PASSWORD);
    config.completion_delay = Duration::from_millis(800);
    config
}

/// A folder with `callrec.toml`: the embedded defaults (or `stores`), OCP at `ocp`, polling in
/// fractions of a second.
fn folder(ocp: &Ocp, stores: &str, reconcile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // Relative to the folder, which every command runs in.
    std::fs::write(dir.path().join("ocp-ca.pem"), &ocp.ca_pem).unwrap();
    std::fs::write(
        dir.path().join("callrec.toml"),
        format!(
            r#"
            {stores}
            [ocp]
            base_url = "{}"
            ca_file = "ocp-ca.pem"
            username = "callrec"
            [reconcile]
            scan_interval_s = 1.0
            grace_s = 0.0
            poll_initial_s = 0.3
            poll_max_s = 1.0
            lease_ttl_s = 2.0
            stale_after_s = 4.0
            job_deadline_s = 300.0
            {reconcile}
            "#,
            ocp.url
        ),
    )
    .unwrap();
    dir
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CALLREC_OCP__PASSWORD", OCP_PASSWORD),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

fn sim(url: &str, calls: usize, seed: u64, drop_rate: f64) -> ocp_sim::SimConfig {
    let mut sim = ocp_sim::SimConfig::new(url.to_string(), TOKEN);
    sim.calls = calls;
    sim.seed = seed;
    sim.min_call_s = 1.0;
    sim.max_call_s = 3.0;
    sim.drop_rate = drop_rate;
    sim.concurrency = 16;
    sim
}

/// Streams `sim` into a `callrec serve` in `dir` with reconciliation off, then stops it.
fn stage_one(
    ocp: &Ocp,
    dir: tempfile::TempDir,
    sim: ocp_sim::SimConfig,
) -> (tempfile::TempDir, Vec<SimCall>) {
    let mut env = env();
    env.push(("CALLREC_RECONCILE__ENABLED", "false"));
    let mut service = Service::start_in(dir, &env);
    let mut sim = sim;
    sim.target = service.url.clone();
    let played = ocp.play(sim);
    assert!(service.stop().success());
    (service.dir.take().unwrap(), played)
}

fn callrec_in(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callrec"));
    command
        .args(args)
        .args(["--config", "callrec.toml"])
        .current_dir(dir)
        .env("CALLREC_LOG", "warn")
        .envs(env());
    command
}

/// Runs `callrec args…` in `dir`; asserts it succeeded; returns its stdout.
fn run_ok(dir: &Path, args: &[&str]) -> String {
    let output = callrec_in(dir, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The fewest exports OCP's limits allow for the calls that were not streamed.
fn fewest_exports(played: &[SimCall]) -> usize {
    callrec_ingest::reconcile::plan::plan_exports(
        played
            .iter()
            .filter(|c| !c.streamed)
            .map(|c| (c.group_id.as_str(), c.start)),
    )
    .len()
}

/// Every call stored once: its record says stored, and the line-of-business folders hold
/// exactly one recording per call.
fn assert_all_stored_once(data: &Path, played: &[SimCall]) {
    let store = callrec_ingest::store::sqlite::SqliteStore::open(data.join("callrec.db")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut not_stored = Vec::new();
    for call in played {
        let id = callrec_ingest::CallId::parse(&call.call_id).unwrap();
        let record = runtime.block_on(store.get(&id)).unwrap();
        if record.is_none_or(|r| r.flags.stored.is_none()) {
            not_stored.push(call.call_id.clone());
        }
    }
    assert!(not_stored.is_empty(), "not stored: {not_stored:?}");
    let mut per_call: BTreeMap<String, usize> = BTreeMap::new();
    for path in walk(&data.join("objects")) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let in_lob = path.components().any(|c| {
            c.as_os_str()
                .to_string_lossy()
                .starts_with("callrec-general")
        });
        if in_lob && name.ends_with(".wav") {
            let call = played
                .iter()
                .find(|c| name.contains(&c.call_id))
                .unwrap_or_else(|| panic!("an object of no call: {name}"));
            *per_call.entry(call.call_id.clone()).or_default() += 1;
        }
    }
    assert_eq!(
        per_call.len(),
        played.len(),
        "calls with a stored recording"
    );
    assert!(per_call.values().all(|&n| n == 1), "a call stored twice");
}

#[test]
fn a_thousand_calls_ten_percent_dropped_all_stored_once_with_the_fewest_exports() {
    let ocp = Ocp::start(ocp_config());
    let (dir, played) = stage_one(&ocp, folder(&ocp, "", ""), sim("", 1000, 71, 0.10));
    let dropped: Vec<&SimCall> = played.iter().filter(|c| !c.streamed).collect();
    assert!((70..=130).contains(&dropped.len()), "{}", dropped.len());
    let stdout = run_ok(dir.path(), &["reconcile", "--once"]);
    assert!(
        stdout.contains(&format!("{} recordings recovered", dropped.len())),
        "{stdout}"
    );
    assert_all_stored_once(&dir.path().join("callrec-data"), &played);
    // As few exports as the grouping allows, not one per call.
    assert_eq!(ocp.api.exports_created() as usize, fewest_exports(&played));
    // Each recording that was never streamed downloaded once; none that was.
    let downloads = ocp.api.downloads();
    for call in &played {
        let n = downloads
            .iter()
            .filter(|(name, _)| name.contains(&call.call_id))
            .map(|(_, n)| *n)
            .sum::<u64>();
        assert_eq!(n, u64::from(!call.streamed), "{}", call.call_id);
    }
    // `callrec status` agrees: nothing open, every call complete.
    let status = callrec_in(dir.path(), &["status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["funnel"]["complete"], 1000);
    assert_eq!(status["open_jobs"].as_array().unwrap().len(), 0);
}

/// A `callrec reconcile` process, killed if the test ends first.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_reconciler(dir: &Path) -> Worker {
    Worker(
        callrec_in(dir, &["reconcile"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every call in `played` has its object and a record that says stored. The object
/// appears before the record's `stored` commit, so a worker stopped between the two leaves a
/// call for the next run: the wait is on the records.
fn wait_all_stored(data: &Path, played: &[SimCall], limit: Duration) {
    wait_for("every object", limit, || stored_count(data) >= played.len());
    let store = callrec_ingest::store::sqlite::SqliteStore::open(data.join("callrec.db")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut waiting: Vec<callrec_ingest::CallId> = played
        .iter()
        .map(|c| callrec_ingest::CallId::parse(&c.call_id).unwrap())
        .collect();
    wait_for("every record stored", Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(150));
        waiting.retain(|id| {
            let record = runtime.block_on(store.get(id)).unwrap();
            record.is_none_or(|r| r.flags.stored.is_none())
        });
        waiting.is_empty()
    });
}

fn stored_count(data: &Path) -> usize {
    walk(&data.join("objects"))
        .iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "wav")
                && p.components().any(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .starts_with("callrec-general")
                })
        })
        .count()
}

#[test]
fn faults_and_kills_while_polling_and_downloading_lose_nothing_and_store_nothing_twice() {
    let mut config = ocp_config();
    config.completion_delay = Duration::from_millis(1500);
    config.rate_limit_every = Some(13);
    config.unavailable_every = Some(17);
    // Exports that leave files out, and data that may expire while it is being fetched.
    config.omit_rate = 0.3;
    config.download_delay = Duration::from_millis(100);
    config.data_lifetime = Duration::from_millis(3000);
    let ocp = Ocp::start(config);
    let dir = folder(&ocp, "", "max_attempts = 50\ndownload_concurrency = 2");
    let (dir, played) = stage_one(&ocp, dir, sim("", 200, 72, 0.25));
    let data = dir.path().join("callrec-data");
    let streamed = played.iter().filter(|c| c.streamed).count();
    // Killed while polling: exports requested, nothing downloaded yet.
    let worker = spawn_reconciler(dir.path());
    wait_for("an export", Duration::from_secs(30), || {
        ocp.api.exports_created() > 0
    });
    assert_eq!(ocp.downloads(), 0);
    drop(worker);
    // Killed while downloading.
    let worker = spawn_reconciler(dir.path());
    wait_for("downloads", Duration::from_secs(60), || {
        ocp.downloads() >= 3
    });
    drop(worker);
    assert!(stored_count(&data) < played.len());
    // Restarted: it takes the dead one's jobs over once their leases run out, and finishes.
    let mut worker = spawn_reconciler(dir.path());
    wait_all_stored(&data, &played, Duration::from_secs(240));
    Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(worker.0.wait().unwrap().success());
    assert!(streamed < played.len());
    assert_all_stored_once(&data, &played);
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`) to `child`.
fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");
}

/// Pauses `child` (SIGSTOP) at a moment it holds no SQLite write lock. A process paused inside
/// a write transaction holds the database's one write lock for as long as it is paused, and
/// every other process on the file waits (SQLite is the single-host store: replicas that must
/// survive each other's pauses share DynamoDB); the pause this test is about — a replica frozen
/// past its lease — is one between writes.
fn pause_between_writes(child: &Child, db: &Path) {
    for _ in 0..100 {
        signal(child, "STOP");
        let probe = rusqlite::Connection::open(db).unwrap();
        probe.busy_timeout(Duration::from_millis(300)).unwrap();
        if probe.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_ok() {
            return;
        }
        signal(child, "CONT");
        std::thread::sleep(Duration::from_millis(23));
    }
    panic!("the replica was inside a write each time it was paused");
}

#[test]
fn a_replica_paused_past_its_lease_is_fenced_off_and_every_call_is_stored_once() {
    let mut config = ocp_config();
    config.download_delay = Duration::from_millis(150);
    let ocp = Ocp::start(config);
    let dir = folder(&ocp, "", "download_concurrency = 1\nmax_attempts = 50");
    let (dir, played) = stage_one(&ocp, dir, sim("", 60, 75, 1.0));
    let data = dir.path().join("callrec-data");
    let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
    let spawn = |name: &str| {
        Worker(
            callrec_in(dir.path(), &["reconcile"])
                .stdout(Stdio::null())
                .stderr(log(name))
                .spawn()
                .unwrap(),
        )
    };
    // Replica A fetches; it is paused (SIGSTOP) mid-fetch, for three lease lengths.
    let mut a = spawn("a.log");
    wait_for("A downloading", Duration::from_secs(60), || {
        ocp.downloads() >= 3
    });
    pause_between_writes(&a.0, &data.join("callrec.db"));
    let paused_at = ocp.downloads();
    let mut b = spawn("b.log");
    wait_for("B taking the job over", Duration::from_secs(60), || {
        ocp.downloads() >= paused_at + 3
    });
    std::thread::sleep(Duration::from_secs(2));
    // A wakes up past its lease: it stops the step, and whatever it still writes is fenced off.
    signal(&a.0, "CONT");
    wait_all_stored(&data, &played, Duration::from_secs(240));
    for worker in [&mut a, &mut b] {
        signal(&worker.0, "TERM");
        assert!(worker.0.wait().unwrap().success());
    }
    assert_all_stored_once(&data, &played);
    let a_log = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
    let b_log = std::fs::read_to_string(dir.path().join("b.log")).unwrap();
    assert!(b_log.contains("took over an export job"), "B:\n{b_log}");
    assert!(a_log.contains("lease lost"), "A:\n{a_log}");
    // Only the file A was fetching when it was paused may have been downloaded twice.
    let again: u64 = ocp.api.downloads().values().map(|n| n - 1).sum();
    assert!(again <= 2, "{again} downloads repeated");
}

#[test]
fn two_replicas_on_dynamodb_and_s3_share_a_backlog_and_one_finishes_alone() {
    let moto = callrec_fixtures::moto::Moto::start();
    let ocp = Ocp::start(ocp_config());
    let stores = format!(
        r#"
        [state]
        backend = "dynamodb"
        dynamodb_table = "callrec-replicas"
        endpoint_url = "{0}"
        region = "us-east-1"
        [objects]
        backend = "s3"
        endpoint_url = "{0}"
        region = "us-east-1"
        force_path_style = true
        "#,
        moto.endpoint
    );
    let dir = folder(&ocp, &stores, "");
    let init = callrec_in(dir.path(), &["init", "--create-buckets"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let (dir, played) = stage_one(&ocp, dir, sim("", 120, 73, 0.3));
    let dropped = played.iter().filter(|c| !c.streamed).count();
    // Two replicas, each `callrec serve` with its reconciler, on the same stores.
    let a = Service::start_in(dir, &env());
    let second = tempfile::tempdir().unwrap();
    for file in ["callrec.toml", "ocp-ca.pem"] {
        std::fs::copy(
            a.dir.as_ref().unwrap().path().join(file),
            second.path().join(file),
        )
        .unwrap();
    }
    let mut b = Service::start_in(second, &env());
    wait_for("a third of the downloads", Duration::from_secs(120), || {
        ocp.downloads() as usize >= dropped / 3
    });
    let _ = a.kill();
    let b_dir = b.dir.as_ref().unwrap().path().to_path_buf();
    let stored = || {
        let out = callrec_in(&b_dir, &["status", "--json"]).output().unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["funnel"]["stored"].as_u64().unwrap_or(0)
    };
    wait_for("every call stored", Duration::from_secs(240), || {
        std::thread::sleep(Duration::from_millis(500));
        stored() >= played.len() as u64
    });
    let client = reqwest::blocking::Client::new();
    let mut objects = BTreeSet::new();
    for call in &played {
        let view: serde_json::Value = client
            .get(format!("{}/v1/calls/{}", b.url, call.call_id))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let key = view["object"]["key"].as_str().expect("stored").to_string();
        assert!(objects.insert(key), "one object per call");
    }
    assert!(b.stop().success());
    // Both replicas scanned the same backlog: each export was requested once (same job ids,
    // same idempotency keys), and no more than the grouping needs.
    assert_eq!(ocp.api.exports_created() as usize, fewest_exports(&played));
    // A file is downloaded twice only if the replica killed was fetching it.
    let again: u64 = ocp.api.downloads().values().map(|n| n - 1).sum();
    assert!(again <= 8, "{again} downloads repeated");
}

#[test]
fn a_backfill_exports_a_whole_range_in_shards_and_fills_lost_cdr_events() {
    let ocp = Ocp::start(ocp_config());
    let dir = folder(&ocp, "", "backfill_shard_hours = 1");
    // Nothing streamed, and half the Start events lost: all from the exports.
    let mut plan = sim("", 120, 74, 1.0);
    plan.lost_start_rate = 0.5;
    let (dir, played) = stage_one(&ocp, dir, plan);
    let group = "grp-emea-01";
    let ours: Vec<&SimCall> = played.iter().filter(|c| c.group_id == group).collect();
    assert!(ours.iter().any(|c| !c.start_sent));
    let from = ours.iter().map(|c| c.start).min().unwrap();
    let to = ours.iter().map(|c| c.start).max().unwrap() + jiff::SignedDuration::from_secs(1);
    let stdout = run_ok(
        dir.path(),
        &[
            "backfill",
            "--group",
            group,
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ],
    );
    assert!(
        stdout.contains(&format!("{} recordings stored here", ours.len())),
        "{stdout}"
    );
    let data = dir.path().join("callrec-data");
    let store = callrec_ingest::store::sqlite::SqliteStore::open(data.join("callrec.db")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for call in &played {
        let id = callrec_ingest::CallId::parse(&call.call_id).unwrap();
        let record = runtime.block_on(store.get(&id)).unwrap().unwrap();
        if call.group_id == group {
            assert!(record.flags.stored.is_some(), "{}", call.call_id);
            // The export's CDR filled in the Start that never arrived.
            assert_eq!(record.flags.started, Some(call.start), "{}", call.call_id);
        } else {
            assert!(
                record.flags.stored.is_none(),
                "another group's call was backfilled"
            );
        }
    }
    // One export per shard (one hour each here).
    let hours = callrec_ingest::reconcile::plan::backfill_shards(group, from, to, 1).len();
    assert_eq!(
        ocp.api.exports_by_group().get(group).copied(),
        Some(hours as u64)
    );
}

/// `callrec audit --json`'s rows, and its exit code.
fn audit(dir: &Path, args: &[&str]) -> (Vec<serde_json::Value>, Option<i32>) {
    let out = callrec_in(dir, &[&["audit", "--json"], args].concat())
        .output()
        .unwrap();
    let rows = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (rows, out.status.code())
}

#[test]
fn the_daily_audit_finds_the_calls_nothing_arrived_of_and_every_call_of_the_day_is_stored() {
    let ocp = Ocp::start(ocp_config());
    let groups = r#"["grp-emea-01", "grp-amer-01"]"#;
    let dir = folder(
        &ocp,
        "",
        &format!("\n[audit]\ngroups = {groups}\nsettle_hours = 0.0\nlookback_days = 3\n"),
    );
    // Yesterday's calls: 10% of recordings never streamed, 5% of calls of which nothing came.
    let mut plan = sim("", 1000, 76, 0.10);
    plan.cdr_drop_rate = 0.05;
    // From yesterday noon (UTC): the 25 minutes of calls stay within one day.
    let now = jiff::Timestamp::now();
    let noon = now
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .unwrap()
        .at(12, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    plan.hours_ago = now.duration_since(noon).as_secs_f64() / 3600.0;
    let (dir, played) = stage_one(&ocp, dir, plan);
    let unknown = played.iter().filter(|c| !c.cdr_sent).count();
    let streamed = played.iter().filter(|c| c.streamed).count();
    assert!((30..=70).contains(&unknown), "{unknown}");
    let day = played[0].start.to_zoned(jiff::tz::TimeZone::UTC).date();
    assert!(
        played
            .iter()
            .all(|c| c.start.to_zoned(jiff::tz::TimeZone::UTC).date() == day)
    );

    // Before the audit: the day is not audited yet, and past a deadline that says so.
    let (rows, code) = audit(dir.path(), &["--day", &day.to_string()]);
    assert_eq!(code, Some(0));
    assert!(
        rows.iter().all(|r| r["state"] == "not audited yet"),
        "{rows:?}"
    );
    let overdue = callrec_in(dir.path(), &["audit", "--day", &day.to_string()])
        .env("CALLREC_AUDIT__DEADLINE_HOURS", "0.001")
        .output()
        .unwrap();
    assert_eq!(overdue.status.code(), Some(1), "{overdue:?}");
    assert!(String::from_utf8_lossy(&overdue.stdout).contains("(overdue)"));

    // The reconciler: recovery and the audit, until every call of the day is stored.
    let mut worker = spawn_reconciler(dir.path());
    let data = dir.path().join("callrec-data");
    wait_all_stored(&data, &played, Duration::from_secs(240));
    // Every day of the look-back audited (the days without calls too), and the calls' day
    // counted complete.
    wait_for(
        "the audit to count every day complete",
        Duration::from_secs(60),
        || {
            std::thread::sleep(Duration::from_millis(300));
            let (rows, _) = audit(dir.path(), &[]);
            rows.iter().all(|r| r["state"] == "complete")
        },
    );
    // The day's manifest, written once the day is complete.
    let manifest = data
        .join("objects/callrec-general")
        .join(callrec_ingest::reconcile::manifest::manifest_key(day));
    wait_for("the day's manifest", Duration::from_secs(60), || {
        manifest.is_file()
    });
    signal(&worker.0, "TERM");
    assert!(worker.0.wait().unwrap().success());
    assert_all_stored_once(&data, &played);
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(text.lines().count(), played.len() + 1);
    let verified = callrec_in(dir.path(), &["audit", "verify", "--day", &day.to_string()])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        String::from_utf8_lossy(&verified.stdout)
            .contains("1000 calls, every object as the manifest says"),
        "{verified:?}"
    );
    // A byte changed in one stored recording: named.
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let key = first["key"].as_str().unwrap();
    let path = data.join("objects/callrec-general").join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[200] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let tampered = callrec_in(dir.path(), &["audit", "verify", "--day", &day.to_string()])
        .output()
        .unwrap();
    assert_eq!(tampered.status.code(), Some(1), "{tampered:?}");
    let said = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        said.contains(&format!("PROBLEM {key} has SHA-256")),
        "{said}"
    );

    let (rows, code) = audit(dir.path(), &["--day", &day.to_string()]);
    assert_eq!(code, Some(0));
    let sum = |field: &str| {
        rows.iter()
            .map(|r| r["summary"][field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum("reported"), played.len() as u64, "{rows:?}");
    assert_eq!(sum("stored"), played.len() as u64);
    assert_eq!(sum("streamed"), streamed as u64);
    assert_eq!(sum("found"), unknown as u64);
    assert_eq!(sum("recovered"), (played.len() - streamed - unknown) as u64);
    assert_eq!(sum("lost") + sum("pending") + sum("not_in_ocp"), 0);
    // One CDR-only export per group for the day (its first job did it), none for the other
    // days of the look-back beyond theirs.
    for row in &rows {
        assert!(row["job"].as_str().unwrap().ends_with("-24h-0"), "{row}");
    }
    // One CDR-only export per group and day of the look-back (the days without calls too); for
    // recovery, the fewest exports for the calls missing audio, and at most one more round per
    // group for calls the audit alone made known (if it ran before the first round).
    let (every_day, code) = audit(dir.path(), &[]);
    assert_eq!(code, Some(0), "{every_day:?}");
    let exports = ocp.api.exports_created() as usize;
    let audits = every_day.len();
    let groups = rows.len();
    eprintln!(
        "exports: {exports} ({audits} audits; fewest for recovery: {})",
        fewest_exports(&played)
    );
    assert!(exports >= fewest_exports(&played) + audits, "{exports}");
    assert!(
        exports <= fewest_exports(&played) + audits + groups,
        "{exports}"
    );
}
