//! Shared by the decoder targets.

/// libFuzzer aborts at any panic, before anything can catch it. The engine runs symphonia under
/// `catch_unwind` and turns its panics into typed errors (`decode/fallback.rs`): let those
/// unwind to that guard — a panic that escapes it still aborts the run — and abort at every
/// other.
pub fn let_symphonia_panics_reach_the_guard() {
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
