//! `callrec inspect` end to end: the real binary on the committed fixtures, checked against the
//! expectations the generator wrote to fixtures/manifest.json.

mod common;

use common::{callrec, root};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("fixtures/manifest.json")).expect("manifest");
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn every_fixture_reports_what_the_manifest_says() {
    let output = callrec(&["inspect", "--json", "fixtures"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "bad fixtures make the exit status 1"
    );
    let lines = json_lines(&output);
    let manifest = manifest();
    assert_eq!(lines.len(), manifest.len(), "one line per fixture");
    for expect in &manifest {
        let file = expect["file"].as_str().unwrap();
        let path = Path::new("fixtures").join(file);
        let line = lines
            .iter()
            .find(|l| l["path"].as_str() == Some(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("no line for {file}"));
        if let Some(kind) = expect.get("error") {
            assert_eq!(line["ok"], false, "{file} must be invalid");
            assert_eq!(
                line["error"]["kind"], *kind,
                "{file}: {}",
                line["error"]["message"]
            );
            assert!(!line["error"]["message"].as_str().unwrap().is_empty());
            continue;
        }
        assert_eq!(line["ok"], true, "{file}: {}", line["error"]);
        let report = &line["report"];
        for key in ["container", "codec", "sample_rate", "channels", "frames"] {
            if let Some(want) = expect.get(key) {
                assert_eq!(report[key], *want, "{file}: {key}");
            }
        }
        let duration = report["duration_ms"].as_f64().unwrap();
        let want = expect["duration_ms"].as_f64().unwrap();
        let tolerance = expect
            .get("duration_tolerance_ms")
            .and_then(Value::as_f64)
            .unwrap_or(1e-9);
        assert!(
            (duration - want).abs() <= tolerance,
            "{file}: {duration} ms, want {want} ± {tolerance}"
        );
        let levels = report["levels"].as_array().unwrap();
        assert_eq!(levels.len() as u64, report["channels"].as_u64().unwrap());
        // Synthetic speech peaks near −6…−12 dBFS on the channel that talks most (in a short
        // stereo file the other channel may hold only the −60 dBFS noise floor).
        let loudest = levels
            .iter()
            .filter_map(|l| l["peak_dbfs"].as_f64())
            .fold(f64::MIN, f64::max);
        if expect.get("clipping") == Some(&Value::Bool(true)) {
            // A full-scale test signal: it reaches full scale and says so.
            assert_eq!(loudest, 0.0, "{file}");
            assert!(levels[0]["clipped_samples"].as_u64().unwrap() > 0, "{file}");
        } else {
            assert!(
                (-14.0..=-5.0).contains(&loudest),
                "{file}: loudest peak {loudest} dBFS"
            );
            for level in levels {
                assert_eq!(level["clipped_samples"], 0, "{file}");
            }
        }
        assert_eq!(report["checksums"]["sha256"].as_str().unwrap().len(), 64);
    }
}

#[test]
fn valid_files_exit_zero_and_print_a_table() {
    let output = callrec(&["inspect", "fixtures/audio"]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("wav/pcm_mulaw"), "{stdout}");
    assert!(stdout.contains("8000 Hz"));
    assert!(stdout.trim_end().ends_with("valid, 0 invalid"), "{stdout}");
}

#[test]
fn ocp_names_and_muted_spans_are_reported() {
    let output = callrec(&[
        "inspect",
        "--json",
        "fixtures/audio/grp-emea-01~acct-4711~20261124101500123~dlg-0001.wav",
    ]);
    let line = &json_lines(&output)[0];
    let ocp = &line["ocp"];
    assert_eq!(ocp["group_id"], "grp-emea-01");
    assert_eq!(ocp["account_id"], "acct-4711");
    assert_eq!(ocp["dialog_id"], "dlg-0001");
    assert_eq!(ocp["dialog_time"], "2026-11-24T10:15:00.123Z");
    // 0.5 s lead-in + 0.5 s tail + 1.5 s muted, of 6 s.
    let silence = line["report"]["levels"][0]["digital_silence_ratio"]
        .as_f64()
        .unwrap();
    assert!((silence - 2.5 / 6.0).abs() < 0.005, "{silence}");
    // The A-law mute decodes to ±8/32768, not zero, and still counts as silence.
    let output = callrec(&["inspect", "--json", "fixtures/audio/alaw_8k_mono.wav"]);
    let silence = json_lines(&output)[0]["report"]["levels"][0]["digital_silence_ratio"]
        .as_f64()
        .unwrap();
    assert!((silence - 3.0 / 10.0).abs() < 0.005, "{silence}");
}

#[test]
fn tags_are_read_from_list_info() {
    let output = callrec(&[
        "inspect",
        "--json",
        "fixtures/audio/tags_chunks_pcm16_8k_mono.wav",
    ]);
    let tags = &json_lines(&output)[0]["report"]["tags"];
    assert_eq!(tags[0]["key"], "title");
    assert_eq!(tags[0]["value"], "Call dlg-0002");
    assert_eq!(tags[2]["key"], "encoder");
}

#[test]
fn expected_checksums_and_duration_are_enforced() {
    let file = "fixtures/audio/ulaw_8k_mono.wav";
    let first = json_lines(&callrec(&["inspect", "--json", file]))[0].clone();
    let sums = &first["report"]["checksums"];
    let sha = sums["sha256"].as_str().unwrap();
    let crc_b64 = sums["crc32c_base64"].as_str().unwrap();
    let crc_hex = sums["crc32c"].as_str().unwrap();
    for args in [
        vec!["inspect", file, "--expect-sha256", sha],
        vec!["inspect", file, "--expect-crc32c", crc_b64],
        vec![
            "inspect",
            file,
            "--expect-crc32c",
            crc_hex,
            "--expect-duration-ms",
            "10200",
        ],
    ] {
        assert_eq!(callrec(&args).status.code(), Some(0), "{args:?}");
    }
    let wrong = callrec(&["inspect", "--json", file, "--expect-crc32c", "00000000"]);
    assert_eq!(wrong.status.code(), Some(1));
    let line = &json_lines(&wrong)[0];
    assert_eq!(line["error"]["kind"], "checksum_mismatch");
    assert!(line["error"]["message"].as_str().unwrap().contains(crc_hex));
    // MD5 is computed only on request: --md5, or implied by --expect-md5.
    assert!(sums["content_md5"].is_null());
    let with_md5 = json_lines(&callrec(&["inspect", "--json", "--md5", file]))[0].clone();
    let content_md5 = with_md5["report"]["checksums"]["content_md5"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        with_md5["report"]["checksums"]["md5"]
            .as_str()
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        callrec(&["inspect", file, "--expect-md5", &content_md5])
            .status
            .code(),
        Some(0)
    );
    let bad_md5 = callrec(&[
        "inspect",
        "--json",
        file,
        "--expect-md5",
        "00000000000000000000000000000000",
    ]);
    assert_eq!(
        json_lines(&bad_md5)[0]["error"]["kind"],
        "checksum_mismatch"
    );
    let long = callrec(&["inspect", "--json", file, "--expect-duration-ms", "60000"]);
    assert_eq!(long.status.code(), Some(1));
    assert_eq!(json_lines(&long)[0]["error"]["kind"], "duration_mismatch");
}

#[test]
fn usage_errors_exit_two() {
    for args in [
        vec!["inspect"],
        vec!["inspect", "--no-such-flag", "fixtures"],
        vec!["inspect", "fixtures", "--expect-sha256", "not-a-digest"],
        vec!["inspect", "fixtures", "--threads", "0"],
        vec!["no-such-command"],
    ] {
        let output = callrec(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} says why");
    }
    let help = callrec(&["inspect", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(
        String::from_utf8(help.stdout)
            .unwrap()
            .contains("--expect-crc32c")
    );
}

#[test]
fn a_missing_file_is_reported_and_the_others_still_print() {
    let output = callrec(&[
        "inspect",
        "--json",
        "fixtures/audio/ulaw_8k_mono.wav",
        "no/such/file.wav",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[1]["error"]["kind"], "io");
}
