//! `callrec process` end to end: the real binary on the committed fixtures.

mod common;

use common::{callrec, root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh output folder under the target directory (removed first).
fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found
}

#[test]
fn processes_every_fixture_with_a_report_beside_it() {
    let out = out_dir("process-all");
    let result = callrec(&[
        "process",
        "fixtures/audio",
        "-o",
        out.to_str().unwrap(),
        "--trim",
    ]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("28 files: 28 processed, 0 failed"),
        "{stdout}"
    );
    let audio = files_with(&out, "wav");
    let reports = files_with(&out, "json");
    assert_eq!((audio.len(), reports.len()), (28, 28));
    // Same-named inputs keep their extension rather than overwrite each other.
    assert!(
        out.join("speech_16k_mono.mp3.wav").exists()
            && out.join("speech_16k_mono.m4a.wav").exists()
    );
    for report in reports {
        let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let audio = report.with_extension("wav");
        let bytes = std::fs::read(&audio).unwrap();
        assert_eq!(
            r["output"]["bytes"].as_u64().unwrap(),
            bytes.len() as u64,
            "{}",
            audio.display()
        );
        // The stored checksum is the checksum of what was written.
        let inspected = callrec(&[
            "inspect",
            "--json",
            audio.to_str().unwrap(),
            "--expect-sha256",
            r["output"]["sha256"].as_str().unwrap(),
        ]);
        assert_eq!(inspected.status.code(), Some(0), "{}", audio.display());
        let tp = r["output"]["true_peak_dbtp"].as_f64().unwrap();
        assert!(tp <= -1.0, "{}: {tp}", audio.display());
        assert!(
            r["analysis"]["loudness"]["integrated_lufs"].is_number()
                || r["input"]["duration_ms"].as_f64().unwrap() < 400.0
        );
    }
}

#[test]
fn formats_resampling_and_json_lines() {
    let out = out_dir("process-flac");
    let result = callrec(&[
        "process",
        "fixtures/audio/ulaw_8k_stereo.wav",
        "fixtures/audio/speech_8k_mono.flac",
        "-o",
        out.to_str().unwrap(),
        "--format",
        "flac",
        "--resample",
        "16000",
        "--downmix",
        "--target",
        "-20LUFS",
        "--json",
    ]);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(result.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for r in &lines {
        assert_eq!(r["output"]["format"], "flac");
        assert_eq!(r["output"]["sample_rate"], 16000);
        assert_eq!(r["output"]["channels"], 1);
        assert_eq!(r["decisions"]["gain"]["target"], "-20LUFS");
    }
    assert_eq!(files_with(&out, "flac").len(), 2);
}

#[test]
fn bad_files_fail_alone() {
    let out = out_dir("process-bad");
    let result = callrec(&[
        "process",
        "fixtures/bad",
        "fixtures/audio/alaw_8k_mono.wav",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("empty.wav: empty"), "{stderr}");
    assert!(stderr.contains("claims_4gb.wav: truncated"), "{stderr}");
    // The good file is written; nothing is written for the bad ones.
    assert_eq!(files_with(&out, "wav"), vec![out.join("alaw_8k_mono.wav")]);
}

#[test]
fn usage_errors_exit_two() {
    for args in [
        vec![
            "process",
            "fixtures/audio",
            "-o",
            "/tmp/x",
            "--target",
            "-18",
        ],
        vec![
            "process",
            "fixtures/audio",
            "-o",
            "/tmp/x",
            "--format",
            "mp3",
        ],
        vec![
            "process",
            "fixtures/audio",
            "-o",
            "/tmp/x",
            "--ceiling",
            "3",
        ],
        vec!["process", "fixtures/audio"],
    ] {
        let output = callrec(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn the_same_run_twice_writes_the_same_bytes() {
    let (a, b) = (out_dir("process-det-a"), out_dir("process-det-b"));
    for dir in [&a, &b] {
        let result = callrec(&[
            "process",
            "fixtures/audio/pcm16_8k_stereo.wav",
            "-o",
            dir.to_str().unwrap(),
            "--trim",
            "--resample",
            "16000",
        ]);
        assert_eq!(result.status.code(), Some(0));
    }
    assert_eq!(
        std::fs::read(a.join("pcm16_8k_stereo.wav")).unwrap(),
        std::fs::read(b.join("pcm16_8k_stereo.wav")).unwrap()
    );
}

#[test]
fn every_simd_level_writes_the_same_bytes() {
    let mut outputs = Vec::new();
    // A level the CPU lacks falls back to the best it has: still a comparison with the baseline.
    for level in ["baseline", "avx2", "avx512"] {
        let dir = out_dir(&format!("process-simd-{level}"));
        let result = Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args([
                "process",
                "fixtures/audio",
                "-o",
                dir.to_str().unwrap(),
                "--trim",
                "--target",
                "-18LUFS",
            ])
            .env("CALLREC_SIMD", level)
            .current_dir(root())
            .output()
            .unwrap();
        assert_eq!(result.status.code(), Some(0));
        let audio: Vec<Vec<u8>> = files_with(&dir, "wav")
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        outputs.push(audio);
    }
    assert_eq!(outputs[0].len(), 28);
    for (level, audio) in ["avx2", "avx512"].iter().zip(&outputs[1..]) {
        assert!(
            outputs[0] == *audio,
            "the baseline and {level} kernels wrote different audio"
        );
    }
}

/// A long FLAC output is encoded as it streams: its frames wait in a bounded spool, not in
/// memory with the whole recording (a 20-minute call took ~220 MB when FLAC was encoded from a
/// buffer; the streaming chain holds ~30 MB for any length). The file decodes to every frame.
#[cfg(target_os = "linux")]
#[test]
fn a_long_flac_output_streams_in_bounded_memory() {
    use callrec_fixtures::{WavEncoding, WavOptions, write_wav};
    let out = out_dir("process-long-flac");
    std::fs::create_dir_all(&out).unwrap();
    let rate = 8000;
    let frames = 20 * 60 * rate as usize;
    // Syllable-like bursts of a tone over a little noise: FLAC's predictors have work to do.
    let mut seed = 0x2545_f491_u32;
    let samples: Vec<f32> = (0..frames)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed as f32 / u32::MAX as f32 - 0.5) * 0.002;
            let t = i as f32 / rate as f32;
            let burst = if ((t * 4.0) as u32).is_multiple_of(3) {
                0.0
            } else {
                0.3
            };
            burst * (std::f32::consts::TAU * 310.0 * t).sin() + noise
        })
        .collect();
    let input = out.join("long.wav");
    std::fs::write(
        &input,
        write_wav(&[samples], rate, &WavOptions::new(WavEncoding::I16)),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args([
            "process",
            "--format",
            "flac",
            "--trim",
            "--threads",
            "2",
            "-o",
        ])
        .arg(&out)
        .arg(&input)
        .spawn()
        .unwrap();
    let mut peak_kb = 0u64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok());
            peak_kb = peak_kb.max(kb.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(status.success());
    assert!(peak_kb > 0, "the peak was read");
    assert!(peak_kb < 64 << 10, "peak RSS {} MiB", peak_kb >> 10);
    let flac = std::fs::read(out.join("long.flac")).unwrap();
    let decoded = callrec_engine::decode::decode(
        &callrec_engine::AudioSource::from_bytes(flac),
        &callrec_engine::Limits::default(),
    )
    .unwrap();
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("long.json")).unwrap()).unwrap();
    assert_eq!(
        decoded.frames() as u64,
        report["output"]["frames"].as_u64().unwrap()
    );
    assert!(decoded.frames() > frames / 2, "{}", decoded.frames());
    std::fs::remove_dir_all(&out).unwrap();
}
