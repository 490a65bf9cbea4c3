//! Hostile input: truncations, flipped bytes and lying size fields over every kind of fixture.
//! Each must end in a report or a typed error — never a panic, never a hang, never a huge
//! allocation.

use callrec_engine::{AudioSource, EngineError, InspectOptions, Limits, inspect};
use callrec_fixtures::Rng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SEEDS: [&str; 9] = [
    "audio/grp-emea-01~acct-4711~20261124101500123~dlg-0001.wav",
    "audio/ulaw_8k_stereo.wav",
    "audio/rf64_pcm16_8k_mono.wav",
    "audio/extensible_float32_48k_stereo.wav",
    "audio/adpcm_ms_8k_mono.wav",
    "audio/speech_16k_mono.mp3",
    "audio/speech_8k_mono.flac",
    "audio/speech_16k_mono.ogg",
    "audio/speech_16k_mono.m4a",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs one mutated input; returns whether it was accepted.
fn check(label: &str, bytes: Vec<u8>) -> bool {
    let started = Instant::now();
    let options = InspectOptions::new();
    let result = inspect(
        &AudioSource::from_bytes(bytes).with_name("mutant.bin"),
        &options,
    );
    // Bounded work: a small input must never take long (generous for a loaded CI machine).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{label}: took {:?}",
        started.elapsed()
    );
    match result {
        Ok(report) => {
            assert!(
                report.sample_rate > 0 && report.channels > 0 && report.frames > 0,
                "{label}"
            );
            true
        }
        Err(err) => {
            assert!(
                !err.to_string().is_empty() && !err.kind().is_empty(),
                "{label}"
            );
            false
        }
    }
}

#[test]
fn truncation_at_any_point_is_an_error_or_a_shorter_file() {
    for name in SEEDS {
        let bytes = fixture(name);
        let mut rng = Rng::new(1);
        let mut cuts: Vec<usize> = (0..160.min(bytes.len())).collect();
        cuts.extend((0..40).map(|_| (rng.next_u64() % bytes.len() as u64) as usize));
        for cut in cuts {
            check(&format!("{name} cut at {cut}"), bytes[..cut].to_vec());
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    for name in SEEDS {
        let bytes = fixture(name);
        let mut rng = Rng::new(2);
        for round in 0..150 {
            let mut mutant = bytes.clone();
            let flips = 1 + rng.next_u64() % 16;
            for _ in 0..flips {
                // Favour the headers, where the parsing is.
                let span = if rng.next_u64().is_multiple_of(2) {
                    256.min(mutant.len())
                } else {
                    mutant.len()
                };
                let at = (rng.next_u64() % span as u64) as usize;
                mutant[at] = rng.next_u64() as u8;
            }
            check(&format!("{name} round {round}"), mutant);
        }
    }
}

#[test]
fn size_fields_claiming_gigabytes_are_caught_without_allocating() {
    let good = fixture("audio/ulaw_8k_mono.wav");
    // Every 4-byte window in the header set to a huge value.
    for at in 0..good.len().min(64) - 3 {
        for value in [u32::MAX, 0x8000_0000, 0x7FFF_FFFF] {
            let mut mutant = good.clone();
            mutant[at..at + 4].copy_from_slice(&value.to_le_bytes());
            check(&format!("u32 {value:#x} at {at}"), mutant);
        }
    }
    let bad = fixture("bad/claims_4gb.wav");
    match callrec_engine::decode(&AudioSource::from_bytes(bad), &Limits::default()) {
        Err(EngineError::Truncated {
            declared,
            available,
            missing,
            ..
        }) => {
            assert!(declared > 4_000_000_000);
            assert_eq!(available, 4000);
            assert_eq!(missing, declared - available);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn limits_stop_oversized_input() {
    let bytes = fixture("audio/pcm16_8k_stereo.wav");
    let source = AudioSource::from_bytes(bytes.clone());
    let check_limit = |limits: Limits| {
        let mut options = InspectOptions::new();
        options.limits = limits;
        match inspect(&source, &options) {
            Err(EngineError::LimitExceeded(e)) => e,
            other => panic!("{other:?}"),
        }
    };
    let e = check_limit(Limits {
        max_input_bytes: 1000,
        ..Limits::default()
    });
    assert!(e.to_string().contains("limit is 1000"), "{e}");
    check_limit(Limits {
        max_channels: 1,
        ..Limits::default()
    });
    check_limit(Limits {
        max_sample_rate: 4000,
        ..Limits::default()
    });
    check_limit(Limits {
        max_duration_ms: 1000,
        ..Limits::default()
    });
    // Through symphonia too: a 10 s MP3 against a 2 s limit stops while decoding.
    let mp3 = AudioSource::from_bytes(fixture("audio/speech_16k_mono.mp3"));
    let mut options = InspectOptions::new();
    options.limits.max_duration_ms = 2000;
    assert!(matches!(
        inspect(&mp3, &options),
        Err(EngineError::LimitExceeded(_))
    ));
    let limits = Limits {
        max_decoded_samples: 10_000,
        ..Limits::default()
    };
    assert!(matches!(
        callrec_engine::decode(&mp3, &limits),
        Err(EngineError::LimitExceeded(_))
    ));
    assert!(matches!(
        callrec_engine::decode(&source, &limits),
        Err(EngineError::LimitExceeded(_))
    ));
}

#[test]
fn a_file_of_repeated_odd_chunks_reports_a_bounded_list_of_warnings() {
    // A valid WAV followed by 100,000 empty `data` chunks (8 bytes each): 800 KB of input
    // that once meant 100,000 warning strings.
    let mut bytes = fixture("audio/ulaw_8k_stereo.wav");
    for _ in 0..100_000 {
        bytes.extend_from_slice(b"data\0\0\0\0");
    }
    let size = (bytes.len() - 8) as u32;
    bytes[4..8].copy_from_slice(&size.to_le_bytes());
    let report = inspect(
        &AudioSource::from_bytes(bytes).with_name("chunky.wav"),
        &InspectOptions::new(),
    )
    .unwrap();
    assert!(report.warnings.len() <= 17, "{:?}", report.warnings);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w == "a second data chunk was ignored (×100000)"),
        "{:?}",
        report.warnings
    );
}
