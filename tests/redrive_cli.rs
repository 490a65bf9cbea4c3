//! `callrec redrive` end to end on the embedded SQLite store: a dry run says what it would do
//! and changes nothing; `--apply` puts a lost call back to pending (out of the funnel's lost)
//! and gives a call out of attempts its attempts back; what has nothing to re-drive is said;
//! an unknown call fails the run.

use callrec_ingest::CallId;
use callrec_ingest::store::sqlite::SqliteStore;
use callrec_ingest::store::{CallChange, CallStatus, CallStore, CdrFacts};
use jiff::Timestamp;
use std::path::Path;
use std::process::{Command, Output};

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
    assert!(text.contains("dry run: nothing changed"), "{text}");
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
