//! `callrec demo`, the README's main job: the service with its embedded defaults and the OCP
//! simulator (native CDR records; its Exports API over HTTPS with a CA made at start, a personal
//! access token) — every call of the run stored, by stage 1, stage 2 or the daily audit; the
//! day's manifests written and checked by `callrec audit verify`.

use std::process::Command;

#[test]
fn the_demo_stores_every_call_over_https_with_native_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["demo", "--calls", "30", "--seed", "5", "--drop-rate", "0.2"])
        .args(["--cdr-drop-rate", "0.2"])
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("simulated OCP on https://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("personal access token; native CDR records"),
        "{stdout}"
    );
    assert!(stdout.contains("this run: 30/30 calls stored"), "{stdout}");
    // Some by each stage (seed 5 drops recordings at 20%).
    let by = |label: &str| -> u64 {
        stdout
            .lines()
            .find(|l| l.contains(label))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
    };
    let audit = by("audit (found in OCP's CDR export)");
    assert_eq!(
        by("stage 1 (streamed)") + by("stage 2 (OCP exports)") + audit,
        30
    );
    assert!(by("stage 2 (OCP exports)") > 0, "{stdout}");
    assert!(audit > 0, "{stdout}");
    assert_eq!(by("missing"), 0);
    // The day's audit, per group, and its manifests, one per bucket, checked.
    assert_eq!(stdout.matches("OCP reported").count(), 2, "{stdout}");
    assert_eq!(
        stdout.matches("every object as it says").count(),
        2,
        "{stdout}"
    );
    let day = stdout
        .lines()
        .find_map(|l| l.strip_prefix("the daily audit of "))
        .and_then(|l| l.strip_suffix(':'))
        .unwrap_or_else(|| panic!("no audit line in {stdout}"))
        .to_string();
    // `callrec audit` and `callrec audit verify` read what the demo left, through the
    // configuration it wrote (with no secret in it).
    let config = data.join("callrec.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(!written.contains("demo-") && !written.contains("ocp-pat-"));
    let callrec = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args(args)
            .arg("-c")
            .arg(&config)
            .args(["--day", &day])
            .output()
            .unwrap()
    };
    let rows = callrec(&["audit", "--json"]);
    assert!(rows.status.success(), "{rows:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&rows.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    let found: u64 = rows
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "complete", "{r}");
            r["summary"]["found"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(found, audit);
    let verified = callrec(&["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
    // A byte changed in a stored recording: `callrec audit verify` names it.
    let manifest = std::fs::read_to_string(
        data.join("objects/callrec-care/manifests")
            .join(day.replace('-', "/") + ".jsonl"),
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    let key = first["key"].as_str().unwrap();
    let object = data.join("objects/callrec-care").join(key);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[64] ^= 1;
    std::fs::write(&object, bytes).unwrap();
    let verified = callrec(&["audit", "verify"]);
    assert_eq!(verified.status.code(), Some(1), "{verified:?}");
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(
        said.contains(&format!("PROBLEM {key} has SHA-256")),
        "{said}"
    );
    // The CA callrec trusted is where the demo says, and no secret reached the output.
    assert!(data.join("ocp-sim-ca.pem").is_file());
    assert!(!stdout.contains("ocp-pat-") && !stderr.contains("ocp-pat-"));
}
