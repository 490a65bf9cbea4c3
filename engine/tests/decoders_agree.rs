//! The WAVE fast path and symphonia give the same f32 samples, bit for bit, on every WAV fixture
//! symphonia can read; RF64 (which symphonia cannot read) equals its RIFF twin.

use callrec_engine::{AudioSource, DecodedAudio, Decoder, DecoderPath, Limits};
use callrec_fixtures::{CallShape, WavEncoding, WavOptions, synth_call, write_wav};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn assert_bit_identical(name: &str, a: &DecodedAudio, b: &DecodedAudio) {
    assert_eq!(a.planes.len(), b.planes.len(), "{name}: channels");
    for (c, (pa, pb)) in a.planes.iter().zip(&b.planes).enumerate() {
        assert_eq!(pa.len(), pb.len(), "{name}: frames in channel {c}");
        if let Some(i) = pa
            .iter()
            .zip(pb)
            .position(|(x, y)| x.to_bits() != y.to_bits())
        {
            panic!("{name}: channel {c} frame {i}: {} vs {}", pa[i], pb[i]);
        }
    }
}

#[test]
fn fast_path_equals_symphonia_on_every_wav_fixture() {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
            .unwrap();
    let limits = Limits::default();
    let mut compared = 0;
    for entry in manifest.as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        if entry.get("error").is_some()
            || entry["symphonia_reads"] != true
            || !file.ends_with(".wav")
        {
            continue;
        }
        let source = AudioSource::map_file(&fixtures().join(file), &limits).unwrap();
        let fast = Decoder::open(&source, &limits).unwrap();
        if fast.info().path != DecoderPath::FastWav {
            continue; // ADPCM: symphonia is the only decoder.
        }
        let fast = fast.decode_all(&limits).unwrap();
        let reference = Decoder::open_symphonia(&source, &limits)
            .unwrap()
            .decode_all(&limits)
            .unwrap();
        assert_eq!(fast.info.sample_rate, reference.info.sample_rate, "{file}");
        assert_eq!(
            fast.info.codec, reference.info.codec,
            "{file}: codec names agree"
        );
        assert_bit_identical(file, &fast, &reference);
        compared += 1;
    }
    assert!(compared >= 15, "compared only {compared} WAV fixtures");
}

#[test]
fn streaming_blocks_equal_the_whole_buffer() {
    let limits = Limits::default();
    for file in [
        "audio/ulaw_8k_stereo.wav",
        "audio/speech_16k_mono.mp3",
        "audio/pcm24_48k_stereo.wav",
    ] {
        let source = AudioSource::map_file(&fixtures().join(file), &limits).unwrap();
        let whole = callrec_engine::decode(&source, &limits).unwrap();
        let mut decoder = Decoder::open(&source, &limits).unwrap();
        let mut planes: Vec<Vec<f32>> = Vec::new();
        let frames = decoder
            .run(&mut |block: &[&[f32]]| {
                planes.resize_with(block.len(), Vec::new);
                for (p, b) in planes.iter_mut().zip(block) {
                    assert!(b.len() <= callrec_engine::decode::BLOCK_FRAMES.max(4608));
                    p.extend_from_slice(b);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(frames as usize, whole.frames(), "{file}");
        assert_eq!(planes, whole.planes, "{file}");
    }
}

#[test]
fn rf64_equals_its_riff_twin_for_every_encoding() {
    let limits = Limits::default();
    let planes = synth_call(&CallShape::telephone(1500, 99).with_channels(2));
    for encoding in [
        WavEncoding::U8,
        WavEncoding::I16,
        WavEncoding::I24,
        WavEncoding::I32,
        WavEncoding::F32,
        WavEncoding::F64,
        WavEncoding::ALaw,
        WavEncoding::MuLaw,
    ] {
        let mut options = WavOptions::new(encoding);
        let riff = write_wav(&planes, 8000, &options);
        options.rf64 = true;
        let rf64 = write_wav(&planes, 8000, &options);
        options.extensible = true;
        let rf64_ext = write_wav(&planes, 8000, &options);
        let riff = callrec_engine::decode(&AudioSource::from_bytes(riff), &limits).unwrap();
        for twin in [rf64, rf64_ext] {
            let twin = callrec_engine::decode(&AudioSource::from_bytes(twin), &limits).unwrap();
            assert_eq!(twin.info.container, "rf64");
            assert_bit_identical(&format!("{encoding:?}"), &riff, &twin);
        }
        // And the RIFF file also equals symphonia.
        let bytes = write_wav(&planes, 8000, &WavOptions::new(encoding));
        let source = AudioSource::from_bytes(bytes);
        let reference = Decoder::open_symphonia(&source, &limits)
            .unwrap()
            .decode_all(&limits)
            .unwrap();
        assert_bit_identical(&format!("{encoding:?} vs symphonia"), &riff, &reference);
    }
}

#[test]
fn block_codecs_are_trimmed_to_their_fact_chunk() {
    let limits = Limits::default();
    let mut bytes = std::fs::read(fixtures().join("audio/adpcm_ima_8k_mono.wav")).unwrap();
    // ffmpeg's fact chunk counts the padded last block (81,640 frames); a writer that records the
    // true length (80,000) must get exactly that many frames back.
    let at = bytes.windows(4).position(|w| w == b"fact").unwrap() + 8;
    assert_eq!(
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()),
        81_640
    );
    let padded = callrec_engine::decode(&AudioSource::from_bytes(bytes.clone()), &limits).unwrap();
    assert_eq!(padded.frames(), 81_640);
    bytes[at..at + 4].copy_from_slice(&80_000u32.to_le_bytes());
    let trimmed = callrec_engine::decode(&AudioSource::from_bytes(bytes), &limits).unwrap();
    assert_eq!(trimmed.frames(), 80_000);
    assert_eq!(trimmed.planes[0][..], padded.planes[0][..80_000]);
}

#[test]
fn every_g711_codeword_decodes_to_its_itu_value_end_to_end() {
    use callrec_engine::decode::g711::{ALAW_TO_I16, ULAW_TO_I16};
    let limits = Limits::default();
    for (tag, table) in [(7u16, &ULAW_TO_I16), (6u16, &ALAW_TO_I16)] {
        let data: Vec<u8> = (0..=255u8).collect();
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(4 + 26 + 8 + 256u32).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&18u32.to_le_bytes());
        for field in [tag, 1] {
            wav.extend_from_slice(&field.to_le_bytes());
        }
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&8000u32.to_le_bytes());
        for field in [1u16, 8, 0] {
            wav.extend_from_slice(&field.to_le_bytes());
        }
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&256u32.to_le_bytes());
        wav.extend_from_slice(&data);
        let source = AudioSource::from_bytes(wav);
        let fast = callrec_engine::decode(&source, &limits).unwrap();
        assert_eq!(fast.info.path, DecoderPath::FastWav);
        for (code, &sample) in fast.planes[0].iter().enumerate() {
            assert_eq!(
                sample * 32768.0,
                table[code] as f32,
                "tag {tag} code {code:#04x}"
            );
        }
        let reference = Decoder::open_symphonia(&source, &limits)
            .unwrap()
            .decode_all(&limits)
            .unwrap();
        assert_bit_identical(&format!("G.711 tag {tag}"), &fast, &reference);
    }
}
