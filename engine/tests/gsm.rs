//! GSM 06.10 in WAVE: callrec's decoder against the reference. Every GSM fixture's samples, as
//! callrec decodes them, hash to what sox decoded them to (sox decodes GSM with libgsm, the
//! reference implementation; `fixtures/src/main.rs` records the hashes in the manifest).

use callrec_engine::decode::{Decoder, DecoderPath};
use callrec_engine::limits::Limits;
use callrec_engine::source::AudioSource;
use serde_json::Value;
use sha2::Digest as _;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn pcm16_sha256(samples: &[f32]) -> String {
    let mut hasher = sha2::Sha256::new();
    for &s in samples {
        let value = (s * 32768.0) as i16;
        assert_eq!(f32::from(value) / 32768.0, s, "not a 16-bit sample: {s}");
        hasher.update(value.to_le_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_gsm_fixture_decodes_bit_exact_with_the_reference() {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
            .unwrap();
    let limits = Limits::default();
    let mut checked = 0;
    let mut longest = 0u64;
    for entry in manifest.as_array().unwrap() {
        let Some(want) = entry.get("sox_pcm16_sha256").and_then(Value::as_str) else {
            continue;
        };
        let file = entry["file"].as_str().unwrap();
        let source = AudioSource::map_file(&fixtures().join(file), &limits).unwrap();
        let decoder = Decoder::open(&source, &limits).unwrap();
        assert_eq!(decoder.info().path, DecoderPath::Gsm, "{file}");
        assert_eq!(decoder.info().codec, "gsm_ms", "{file}");
        let decoded = decoder.decode_all(&limits).unwrap();
        assert_eq!(decoded.planes.len(), 1);
        let frames = decoded.frames() as u64;
        assert_eq!(Some(frames), entry["frames"].as_u64(), "{file}: length");
        assert_eq!(pcm16_sha256(&decoded.planes[0]), want, "{file}: samples");
        longest = longest.max(frames);
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} GSM fixtures");
    assert!(
        longest >= 30 * 8000,
        "the longest GSM fixture is {longest} samples"
    );
}

#[test]
fn streaming_gsm_equals_the_whole_buffer() {
    let limits = Limits::default();
    let source =
        AudioSource::map_file(&fixtures().join("audio/gsm_8k_mono_32s.wav"), &limits).unwrap();
    let whole = Decoder::open(&source, &limits)
        .unwrap()
        .decode_all(&limits)
        .unwrap();
    let mut streamed = Vec::new();
    let total = Decoder::open(&source, &limits)
        .unwrap()
        .run(&mut |block: &[&[f32]]| {
            assert!(block[0].len() <= callrec_engine::decode::BLOCK_FRAMES);
            streamed.extend_from_slice(block[0]);
            Ok(())
        })
        .unwrap();
    assert_eq!(total as usize, streamed.len());
    assert_eq!(streamed, whole.planes[0]);
}

#[test]
fn malformed_gsm_headers_are_typed_errors() {
    let limits = Limits::default();
    let good = std::fs::read(fixtures().join("audio/gsm_8k_mono.wav")).unwrap();
    let fmt = good.windows(4).position(|w| w == b"fmt ").unwrap() + 8;
    // Stereo GSM, and blocks that are not 65 bytes: unsupported, said so.
    for (offset, value, says) in [(2, 2u16, "channels"), (12, 64u16, "blocks")] {
        let mut bad = good.clone();
        bad[fmt + offset..fmt + offset + 2].copy_from_slice(&value.to_le_bytes());
        let source = AudioSource::from_bytes(bad);
        let err = Decoder::open(&source, &limits).err().expect("refused");
        assert!(err.to_string().contains(says), "{err}");
    }
    // Cut to the headers and part of one block: no audio, not a panic.
    let data = good.windows(4).position(|w| w == b"data").unwrap() + 8;
    let source = AudioSource::from_bytes(good[..data + 30].to_vec());
    assert!(Decoder::open(&source, &limits).is_err());
}
