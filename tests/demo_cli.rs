//! `callrec demo`, the README's main job: the service with its embedded defaults and the OCP
//! simulator (native CDR records; its Exports API over HTTPS with a CA made at start, a personal
//! access token) — every call of the run stored, by stage 1 or stage 2.

use std::process::Command;

#[test]
fn the_demo_stores_every_call_over_https_with_native_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["demo", "--calls", "30", "--seed", "5", "--drop-rate", "0.2"])
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
    assert_eq!(by("stage 1 (streamed)") + by("stage 2 (OCP exports)"), 30);
    assert!(by("stage 2 (OCP exports)") > 0, "{stdout}");
    assert_eq!(by("missing"), 0);
    // The CA callrec trusted is where the demo says, and no secret reached the output.
    assert!(data.join("ocp-sim-ca.pem").is_file());
    assert!(!stdout.contains("ocp-pat-") && !stderr.contains("ocp-pat-"));
}
