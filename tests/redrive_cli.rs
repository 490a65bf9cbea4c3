//! `callrec redrive` end to end on the embedded SQLite store: a dry run says what it would do
//! and changes nothing; `--apply` puts a lost call back to pending (out of the funnel's lost)
//! and gives a call out of attempts its attempts back; what has nothing to re-drive is said;
//! an unknown call fails the run. By state: `--lost [--since T]` from the attention index,
//! past OCP's retention left alone; `--unprocessed` processes a recording `callrec serve`
//! stored as it arrived, once the limit that refused it is raised.

use callrec_ingest::CallId;
use callrec_ingest::store::sqlite::SqliteStore;
use callrec_ingest::store::{CallChange, CallStatus, CallStore, CdrFacts};
use jiff::Timestamp;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

mod common;
use common::service::{Service, TOKEN, walk};

fn redrive(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callrec"))
        .arg("redrive")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run callrec redrive")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_puts_lost_and_exhausted_calls_back_to_work_and_a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("callrec-data")).unwrap();
    let store = SqliteStore::open(dir.path().join("callrec-data/callrec.db")).unwrap();
    let now = Timestamp::now();
    let id = |s: &str| CallId::parse(s).unwrap();
    let ended = |call: &str| {
        let store = &store;
        let call = id(call);
        async move {
            let facts = CdrFacts {
                group_id: Some("g1".into()),
                ..CdrFacts::default()
            };
            for change in [
                CallChange::Start {
                    at: now,
                    facts: facts.clone(),
                },
                CallChange::End { at: now, facts },
            ] {
                store.update(&call, &change, now).await.unwrap();
            }
        }
    };
    for call in ["lost-1", "tired-1", "fresh-1"] {
        ended(call).await;
    }
    let lost = CallChange::Lost {
        reason: "not in OCP's export after 5 attempts".into(),
    };
    store.update(&id("lost-1"), &lost, now).await.unwrap();
    for _ in 0..2 {
        let failed = CallChange::Failed {
            error: "export: 503".into(),
        };
        store.update(&id("tired-1"), &failed, now).await.unwrap();
    }
    assert_eq!(store.funnel().await.unwrap().lost, 1);
    let args = ["--call", "lost-1", "tired-1", "fresh-1"];

    let dry = redrive(dir.path(), &args);
    assert!(dry.status.success(), "{dry:?}");
    let text = stdout(&dry);
    assert!(
        text.contains("lost-1: would re-drive: lost (not in OCP's export after 5 attempts)"),
        "{text}"
    );
    assert!(
        text.contains("tired-1: would re-drive: 2 failed attempts (last error: export: 503)"),
        "{text}"
    );
    assert!(
        text.contains("fresh-1: pending, no failed attempt"),
        "{text}"
    );
    assert!(
        text.contains("dry run of 3 calls: nothing changed"),
        "{text}"
    );
    let still = store.get(&id("lost-1")).await.unwrap().unwrap();
    assert_eq!(still.status, CallStatus::Lost, "a dry run changes nothing");

    let applied = redrive(dir.path(), &[&args[..], &["--apply"]].concat());
    assert!(applied.status.success(), "{applied:?}");
    assert!(
        stdout(&applied).contains("2 of 3 calls re-driven"),
        "{}",
        stdout(&applied)
    );
    let lost = store.get(&id("lost-1")).await.unwrap().unwrap();
    assert_eq!((lost.status, lost.attempts), (CallStatus::Pending, 0));
    assert_eq!(lost.last_error, None);
    let tired = store.get(&id("tired-1")).await.unwrap().unwrap();
    assert_eq!(tired.attempts, 0);
    assert_eq!(
        store.funnel().await.unwrap().lost,
        0,
        "out of the funnel's lost"
    );

    let again = redrive(dir.path(), &[&args[..], &["--apply"]].concat());
    assert!(
        stdout(&again).contains("0 of 3 calls re-driven"),
        "{}",
        stdout(&again)
    );
    let unknown = redrive(dir.path(), &["--call", "ghost-1"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stdout(&unknown).contains("ghost-1: no such call"));
    let bad = redrive(dir.path(), &["--call", "../etc"]);
    assert!(!bad.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_calls_are_selected_by_state_and_time_and_those_past_retention_are_left() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("callrec-data")).unwrap();
    let store = SqliteStore::open(dir.path().join("callrec-data/callrec.db")).unwrap();
    let now = Timestamp::now();
    let days_ago = |d: i64| {
        now.checked_sub(jiff::SignedDuration::from_hours(24 * d))
            .unwrap()
    };
    // Lost 1, 10 and 70 days after their dialog (OCP keeps recordings 60 days).
    for (call, age) in [("recent-1", 1), ("older-1", 10), ("ancient-1", 70)] {
        let call = CallId::parse(call).unwrap();
        let at = days_ago(age);
        let facts = CdrFacts {
            group_id: Some("g1".into()),
            ..CdrFacts::default()
        };
        store
            .update(
                &call,
                &CallChange::Start {
                    at,
                    facts: facts.clone(),
                },
                at,
            )
            .await
            .unwrap();
        store
            .update(&call, &CallChange::End { at, facts }, at)
            .await
            .unwrap();
        let lost = CallChange::Lost {
            reason: "gave up".into(),
        };
        store.update(&call, &lost, now).await.unwrap();
    }

    let all = redrive(dir.path(), &["--lost"]);
    assert!(all.status.success(), "{all:?}");
    let text = stdout(&all);
    // Oldest first.
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {text}"))
    };
    assert!(
        at("ancient-1: ") < at("older-1: would re-drive")
            && at("older-1") < at("recent-1: would re-drive")
    );
    assert!(
        text.contains(
            "ancient-1: not received, and its dialog is older than OCP's retention (60 days)"
        ),
        "{text}"
    );
    assert!(text.contains("dry run of 3 calls"), "{text}");

    let since = days_ago(5).to_string();
    let recent = redrive(dir.path(), &["--lost", "--since", &since, "--apply"]);
    assert!(recent.status.success(), "{recent:?}");
    let text = stdout(&recent);
    assert!(
        text.contains("recent-1: re-driven: lost (gave up)"),
        "{text}"
    );
    assert!(!text.contains("older-1"), "{text}");
    assert!(text.contains("1 of 1 calls re-driven"), "{text}");
    let record = store
        .get(&CallId::parse("recent-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, CallStatus::Pending);

    let rest = redrive(dir.path(), &["--lost", "--apply"]);
    let text = stdout(&rest);
    assert!(text.contains("1 of 2 calls re-driven"), "{text}");
    let ancient = store
        .get(&CallId::parse("ancient-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ancient.status, CallStatus::Lost, "left as it was");
    assert_eq!(store.funnel().await.unwrap().lost, 1);

    // What is not a selection is refused before anything is read.
    for args in [
        &["--since", "2026-01-01"][..],
        &[][..],
        &["--lost", "--since", "yesterday"][..],
    ] {
        let refused = redrive(dir.path(), args);
        assert!(!refused.status.success(), "{args:?}: {refused:?}");
        assert!(!String::from_utf8_lossy(&refused.stderr).is_empty());
    }
}

/// A 3-second call of telephone speech, 8 kHz 16-bit WAV.
fn three_seconds() -> Vec<u8> {
    use callrec_fixtures::synth::{CallShape, synth_call};
    use callrec_fixtures::wav::{WavEncoding, WavOptions, write_wav};
    let shape = CallShape::telephone(3000, 7);
    write_wav(
        &synth_call(&shape),
        8000,
        &WavOptions::new(WavEncoding::I16),
    )
}

#[test]
fn a_recording_stored_unprocessed_is_processed_once_the_limit_is_raised_and_replaces_its_original()
{
    // A service whose limit (1 s) refuses the 3 s recording: stored as it arrived.
    let mut service = Service::start(&[
        ("CALLREC_SERVER__MAX_CALL_LENGTH_S", "1"),
        ("CALLREC_SERVER__MAX_ATTEMPTS", "1"),
    ]);
    let original = three_seconds();
    let client = reqwest::blocking::Client::new();
    let status = client
        .put(format!("{}/v1/calls/long-1/audio", service.url))
        .bearer_auth(TOKEN)
        .body(original.clone())
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 201);
    let view = |service: &Service| -> serde_json::Value {
        client
            .get(format!("{}/v1/calls/long-1", service.url))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while view(&service)["flags"]["stored"].is_null() {
        assert!(std::time::Instant::now() < deadline, "never stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    let archived = view(&service);
    assert!(
        archived["unprocessed"].as_str().unwrap().contains("limit"),
        "{archived}"
    );
    let original_key = archived["object"]["key"].as_str().unwrap().to_string();
    assert!(original_key.contains("/unprocessed/"), "{original_key}");
    assert!(service.stop().success());
    let dir = service.dir.take().unwrap();
    let objects = dir.path().join("callrec-data/objects");
    let bucket = archived["object"]["bucket"].as_str().unwrap().to_string();
    let original_path = objects.join(&bucket).join(&original_key);
    assert_eq!(std::fs::read(&original_path).unwrap(), original);

    // Listed by state; a dry run changes nothing.
    let dry = redrive(dir.path(), &["--unprocessed"]);
    let text = stdout(&dry);
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        text.contains(&format!(
            "long-1: would re-drive: stored unprocessed at {original_key}"
        )),
        "{text}"
    );
    assert!(original_path.is_file());

    // Still refused under the same limit: reported, and the original stays the call's.
    let refused = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["redrive", "--unprocessed", "--apply"])
        .env("CALLREC_SERVER__MAX_CALL_LENGTH_S", "1")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        stdout(&refused).contains("long-1: re-processing failed, still stored unprocessed"),
        "{}",
        stdout(&refused)
    );
    assert!(original_path.is_file());

    // The limit raised (the default, 4 hours): processed, stored under its route, the original gone.
    let applied = redrive(dir.path(), &["--unprocessed", "--apply"]);
    let text = stdout(&applied);
    assert!(applied.status.success(), "{applied:?}");
    assert!(text.contains("long-1: re-processed: stored at "), "{text}");
    assert!(text.contains("original removed"), "{text}");
    assert!(
        text.contains("1 of 1 calls re-driven, 1 re-processed"),
        "{text}"
    );
    assert!(!original_path.exists());
    assert!(!Path::new(&format!("{}.json", original_path.display())).exists());
    let store = SqliteStore::open(dir.path().join("callrec-data/callrec.db")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let record = runtime
        .block_on(store.get(&CallId::parse("long-1").unwrap()))
        .unwrap()
        .unwrap();
    assert!(
        record.unprocessed.is_none() && record.superseded.is_none(),
        "{record:?}"
    );
    assert!(record.flags.processed.is_some());
    let object = record.object.unwrap();
    assert_eq!(object.key, original_key.replace("unprocessed/", ""));
    let stored = std::fs::read(objects.join(&object.bucket).join(&object.key)).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&stored)),
        object.sha256
    );
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            objects
                .join(&object.bucket)
                .join(format!("{}.json", object.key)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sidecar["reprocessed"]["original_key"],
        original_key.as_str()
    );
    assert!(
        sidecar["report"]["output"]["sha256"].is_string(),
        "{sidecar}"
    );
    let funnel = runtime.block_on(store.funnel()).unwrap();
    assert_eq!(
        (funnel.unprocessed, funnel.processed, funnel.stored),
        (0, 1, 1)
    );
    // One recording of the call in its bucket.
    let recordings: Vec<_> = walk(&objects.join(&bucket))
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains("long-1") && !p.to_string_lossy().ends_with(".json")
        })
        .collect();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    // Nothing left to do.
    let again = redrive(dir.path(), &["--unprocessed", "--apply"]);
    assert!(
        stdout(&again).contains("0 of 0 calls re-driven"),
        "{}",
        stdout(&again)
    );
}
