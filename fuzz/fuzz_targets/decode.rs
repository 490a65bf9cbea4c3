//! Arbitrary bytes through the decoders: the WAVE parser and fast path, GSM 06.10, symphonia.
//! Every input ends in samples or a typed error, within limits small enough that a header's
//! claims cannot make the fuzzer allocate gigabytes.
#![no_main]

use callrec_engine::decode::Decoder;
use callrec_engine::limits::Limits;
use callrec_engine::source::AudioSource;
use libfuzzer_sys::fuzz_target;

#[path = "shared/hook.rs"]
mod hook;

fuzz_target!(init: hook::let_symphonia_panics_reach_the_guard(), |data: &[u8]| {
    let limits = Limits {
        max_decoded_samples: 1 << 22,
        max_duration_ms: 10 * 60 * 1000,
        ..Limits::default()
    };
    let source = AudioSource::from_bytes(data.to_vec());
    if let Ok(decoder) = Decoder::open(&source, &limits) {
        let channels = decoder.info().channels;
        if let Ok(decoded) = decoder.decode_all(&limits) {
            assert!(decoded.planes.len() <= limits.max_channels as usize);
            assert!(channels == 0 || decoded.planes.len() == channels as usize);
            let frames = decoded.frames();
            assert!(decoded.planes.iter().all(|p| p.len() == frames));
        }
    }
});
