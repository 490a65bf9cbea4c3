//! Arbitrary bytes through `inspect` (what `callrec inspect` and the pipeline's checks run):
//! a report or a typed error, never a panic.
#![no_main]

use callrec_engine::inspect::{InspectOptions, inspect};
use callrec_engine::limits::Limits;
use callrec_engine::source::AudioSource;
use libfuzzer_sys::fuzz_target;

/// libFuzzer aborts at any panic, before anything can catch it. The engine runs symphonia under
/// `catch_unwind` and turns its panics into typed errors (`decode/fallback.rs`): let those
/// unwind to that guard — a panic that escapes it still aborts the run — and abort at every
/// other.
fn let_symphonia_panics_reach_the_guard() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_symphonia = info
            .location()
            .is_some_and(|at| at.file().contains("/symphonia"));
        if !in_symphonia {
            abort(info);
        }
    }));
}

fuzz_target!(init: let_symphonia_panics_reach_the_guard(), |data: &[u8]| {
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
