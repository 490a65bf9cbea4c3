//! Arbitrary bytes through `inspect` (what `callrec inspect` and the pipeline's checks run):
//! a report or a typed error, never a panic.
#![no_main]

use callrec_engine::inspect::{InspectOptions, inspect};
use callrec_engine::limits::Limits;
use callrec_engine::source::AudioSource;
use libfuzzer_sys::fuzz_target;

#[path = "shared/hook.rs"]
mod hook;

fuzz_target!(init: hook::let_symphonia_panics_reach_the_guard(), |data: &[u8]| {
    let options = InspectOptions {
        limits: Limits {
            max_decoded_samples: 1 << 22,
            max_duration_ms: 10 * 60 * 1000,
            ..Limits::default()
        },
        expected_duration_ms: Some(1000),
        compute_md5: true,
        ..InspectOptions::default()
    };
    let source = AudioSource::from_bytes(data.to_vec());
    if let Ok(report) = inspect(&source, &options) {
        assert!(report.duration_ms.is_finite() && report.duration_ms >= 0.0);
    }
});
