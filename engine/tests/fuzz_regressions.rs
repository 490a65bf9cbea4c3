//! Inputs the fuzzers found (`scripts/fuzz.sh`, docs/RELIABILITY.md), kept so they stay fixed:
//! each decodes or fails with a typed error, through `decode` and `inspect`, never a panic.
//!
//! - `ms_adpcm_overflow_*.wav`: Microsoft ADPCM whose coefficients overflow an `i32`
//!   multiplication in symphonia-codec-adpcm 0.6.1 (`codec_ms.rs:96`); a panic in builds with
//!   overflow checks (tests, fuzzing), wrapping in release. The engine's guard around symphonia
//!   turns the panic into `EngineError::Decoder`.

use callrec_engine::decode::decode;
use callrec_engine::inspect::{InspectOptions, inspect};
use callrec_engine::limits::Limits;
use callrec_engine::source::AudioSource;
use std::path::PathBuf;

#[test]
fn every_input_the_fuzzers_found_is_an_answer_not_a_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let limits = Limits::default();
        let source = AudioSource::map_file(&path, &limits).unwrap();
        match decode(&source, &limits) {
            Ok(decoded) => assert!(decoded.frames() > 0),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        let _ = inspect(&source, &InspectOptions::default());
        seen += 1;
    }
    assert!(seen >= 2, "{seen} inputs in {}", dir.display());
}
