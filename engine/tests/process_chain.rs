//! The processing chain end to end: trimming and muted spans, normalization under the ceiling,
//! determinism.

use callrec_engine::dsp::gain::{GainLimit, LoudnessTarget};
use callrec_engine::dsp::p56::SpeechLevelMeter;
use callrec_engine::dsp::true_peak::TruePeakMeter;
use callrec_engine::{AudioSource, Limits, OutputFormat, ProcessConfig, decode, process};
use callrec_fixtures::{CallShape, Rng, Span, WavEncoding, WavOptions, synth_call, write_wav};

fn wav(shape: &CallShape) -> AudioSource {
    AudioSource::from_bytes(write_wav(
        &synth_call(shape),
        shape.sample_rate,
        &WavOptions::new(WavEncoding::I16),
    ))
}

/// Where clean speech (a call's samples without its noise) passes `edge` dBFS, in 10 ms
/// frames: the leading and trailing silence, ms, each as (at `edge` − 3 dB, at `edge` + 3 dB) —
/// the range a silence map's edges over the noisy call may fall in.
struct CleanEdges {
    lead: (f64, f64),
    tail: (f64, f64),
}

fn clean_edges(clean: &[f32], rate: u32, edge: f64) -> CleanEdges {
    let frame = rate as usize / 100;
    let levels: Vec<f64> = clean
        .chunks(frame)
        .map(|c| {
            let ms = c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / c.len() as f64;
            10.0 * ms.max(1e-30).log10()
        })
        .collect();
    let span = |above: f64| {
        let first = levels.iter().position(|&l| l > above).unwrap();
        let last = levels.iter().rposition(|&l| l > above).unwrap();
        (first as f64 * 10.0, (levels.len() - 1 - last) as f64 * 10.0)
    };
    let (lead_min, tail_min) = span(edge - 3.0);
    let (lead_max, tail_max) = span(edge + 3.0);
    CleanEdges {
        lead: (lead_min, lead_max),
        tail: (tail_min, tail_max),
    }
}

/// `got` is in `(low, high)`, 20 ms either side allowed.
fn within(got: f64, (low, high): (f64, f64), what: &str) {
    assert!(
        got >= low - 20.0 && got <= high + 20.0,
        "{what}: {got:.1} ms, want {low:.0}–{high:.0}"
    );
}

#[test]
fn trims_known_silence_within_20_ms_and_keeps_muted_spans() {
    let mut rng = Rng::new(3);
    for case in 0..12 {
        let rate = [8000, 16_000, 48_000][case % 3];
        let lead = 300 + (rng.next_u64() % 2500);
        let tail = 300 + (rng.next_u64() % 2500);
        let mute_start = lead + 3000;
        let mut shape =
            CallShape::telephone(lead + tail + 12_000, case as u64 + 10).with_rate(rate);
        shape.leading_silence_ms = lead;
        shape.trailing_silence_ms = tail;
        shape = shape.with_muted(Span {
            start_ms: mute_start,
            len_ms: 1500,
        });
        let config = ProcessConfig {
            trim: true,
            ..ProcessConfig::default()
        };
        let out = process(&wav(&shape), &config).unwrap();
        let silence = &out.report.analysis.silence;
        let near = |got: f64, want: u64, what: &str| {
            assert!(
                (got - want as f64).abs() <= 20.0,
                "case {case} ({rate} Hz): {what} {got:.1} ms, want {want}"
            );
        };
        // The speech starts at `lead`; it ends where its last talk spurt does (the noise under
        // the speech goes on to the trailing silence through the last pause: trimmed too).
        let mut clean_shape = shape.clone();
        clean_shape.noise_dbfs = None;
        let clean = synth_call(&clean_shape);
        let edge = callrec_engine::dsp::silence::edge_level(
            silence.threshold_dbfs,
            silence.noise_floor_dbfs,
        );
        let edges = clean_edges(&clean[0], rate, edge);
        let what = |label: &str| format!("case {case} ({rate} Hz): {label} ({silence:?})");
        near(silence.leading_silence_ms, lead, "leading");
        within(silence.trailing_silence_ms, edges.tail, &what("trailing"));
        assert!(silence.trailing_silence_ms >= tail as f64 - 20.0);
        assert_eq!(
            silence.muted_spans.len(),
            1,
            "case {case}: {:?}",
            silence.muted_spans
        );
        near(silence.muted_spans[0].start_ms, mute_start, "mute start");
        near(silence.muted_spans[0].end_ms, mute_start + 1500, "mute end");
        // Trimmed to the padding (250 ms) at each end, never inside.
        let d = &out.report.decisions;
        near(d.trim_start_ms, lead - 250, "trim start");
        near(
            d.trim_end_ms,
            (silence.trailing_silence_ms - 250.0).round() as u64,
            "trim end",
        );
        let decoded = decode(&AudioSource::from_bytes(out.audio), &Limits::default()).unwrap();
        let frames = shape.frames() as f64;
        let kept_ms =
            (frames - d.trim_start_frames as f64 - d.trim_end_frames as f64) * 1000.0 / rate as f64;
        assert!((decoded.frames() as f64 * 1000.0 / rate as f64 - kept_ms).abs() < 0.5);
        // The muted span is still there, shifted by the trim.
        let start = ((mute_start as f64 - d.trim_start_ms + 20.0) * rate as f64 / 1000.0) as usize;
        let end = ((mute_start as f64 + 1480.0 - d.trim_start_ms) * rate as f64 / 1000.0) as usize;
        assert!(
            decoded.planes[0][start..end].iter().all(|&s| s == 0.0),
            "case {case}: mute removed or altered"
        );
    }
}

/// A real line's recording: band-limited noise (white or pink) under the whole call at −75 to
/// −52 dBFS, speech near −26 dBov, with and without an internal mute, a soft consonant before
/// the first word. The speech's edges are found where they are in the clean speech (the same
/// samples without the noise) at the levels the map chose, within 20 ms (a ±3 dB grey zone
/// around the edge level), so trimming removes the noise and keeps the padding; the mute stays.
#[test]
fn trims_to_the_speech_over_a_line_noise_floor_and_keeps_soft_edges() {
    use callrec_engine::dsp::silence::edge_level;
    use callrec_fixtures::LineNoise;
    let mut rng = Rng::new(18);
    let mut case = 0u64;
    for floor in [-75.0, -65.0, -59.0, -52.0] {
        for pink in [false, true] {
            for rate in [8000u32, 16_000, 48_000] {
                case += 1;
                let what = format!(
                    "{floor} dBFS {} at {rate} Hz",
                    ["white", "pink"][pink as usize]
                );
                let lead = 800 + rng.next_u64() % 1700;
                let tail = 800 + rng.next_u64() % 1700;
                let muted = case.is_multiple_of(2);
                let mut shape = CallShape::telephone(lead + tail + 8000, case + 40).with_rate(rate);
                shape.leading_silence_ms = lead;
                shape.trailing_silence_ms = tail;
                shape.noise_dbfs = None;
                if muted {
                    shape = shape.with_muted(Span {
                        start_ms: lead + 3000,
                        len_ms: 2000,
                    });
                }
                // The clean speech (the noise is drawn after it: the same speech samples).
                let mut clean = synth_call(&shape);
                let mut planes = synth_call(&shape.clone().with_line_noise(LineNoise {
                    rms_dbfs: floor,
                    pink,
                }));
                // A soft consonant (a fricative's noise, −45 dBFS) for the 80 ms before the
                // first word, in both.
                let start = ((lead - 80) * rate as u64 / 1000) as usize;
                let end = (lead * rate as u64 / 1000) as usize;
                for i in start..end {
                    let v = (10f64.powf(-45.0 / 20.0) * rng.gauss()) as f32;
                    clean[0][i] += v;
                    planes[0][i] += v;
                }
                let source = AudioSource::from_bytes(write_wav(
                    &planes,
                    rate,
                    &WavOptions::new(WavEncoding::I16),
                ));
                let config = ProcessConfig {
                    trim: true,
                    ..ProcessConfig::default()
                };
                let out = process(&source, &config).unwrap();
                let silence = &out.report.analysis.silence;
                let estimated = silence.noise_floor_dbfs.expect("a floor");
                assert!(
                    floor < -66.0 || (estimated - floor).abs() < 3.0,
                    "{what}: floor estimated at {estimated:.1}"
                );
                assert!(
                    silence.threshold_dbfs - estimated >= 10.0 - 1e-9,
                    "{what}: {silence:?}"
                );

                // Where the clean speech passes the edge level the map chose: the noise before
                // and after it is trimmed to the padding, the consonant kept where it stands
                // clear of the floor.
                let edge = edge_level(silence.threshold_dbfs, silence.noise_floor_dbfs);
                let edges = clean_edges(&clean[0], rate, edge);
                let label = |l: &str| format!("{what}: {l} ({silence:?})");
                within(silence.leading_silence_ms, edges.lead, &label("leading"));
                within(silence.trailing_silence_ms, edges.tail, &label("trailing"));
                let padded = |(low, high): (f64, f64)| (low - 250.0, high - 250.0);
                let d = &out.report.decisions;
                within(d.trim_start_ms, padded(edges.lead), &label("trim start"));
                within(d.trim_end_ms, padded(edges.tail), &label("trim end"));
                assert!(silence.leading_silence_ms <= lead as f64 + 20.0, "{what}");
                assert_eq!(silence.muted_spans.len(), usize::from(muted), "{what}");
            }
        }
    }
}

#[test]
fn an_alaw_mute_is_a_muted_span() {
    let shape = CallShape::telephone(10_000, 12).with_muted(Span {
        start_ms: 3000,
        len_ms: 2000,
    });
    let bytes = write_wav(
        &synth_call(&shape),
        8000,
        &WavOptions::new(WavEncoding::ALaw),
    );
    let out = process(&AudioSource::from_bytes(bytes), &ProcessConfig::default()).unwrap();
    let spans = &out.report.analysis.silence.muted_spans;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert!(
        (spans[0].start_ms - 3000.0).abs() <= 20.0 && (spans[0].end_ms - 5000.0).abs() <= 20.0,
        "{spans:?}"
    );
}

/// A random test signal: a few tones and noise, random level, sometimes with sharp peaks.
fn random_signal(rng: &mut Rng, rate: u32) -> Vec<f32> {
    let frames = rate as usize * (2 + (rng.next_u64() % 4) as usize);
    let tones: Vec<(f64, f64)> = (0..1 + rng.next_u64() % 4)
        .map(|_| (rng.range(50.0, rate as f64 * 0.45), rng.range(0.01, 0.4)))
        .collect();
    let noise = rng.range(0.0, 0.1);
    let spike_every = 1 + (rng.next_u64() % 5000) as usize;
    let mut noise_rng = rng.clone();
    (0..frames)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let mut v: f64 = tones
                .iter()
                .map(|&(f, a)| a * (std::f64::consts::TAU * f * t).sin())
                .sum();
            v += noise * noise_rng.gauss();
            if i % spike_every == 0 {
                v += 0.5;
            }
            v.clamp(-1.0, 1.0) as f32
        })
        .collect()
}

#[test]
fn the_output_true_peak_never_exceeds_the_ceiling() {
    let mut rng = Rng::new(2026);
    for case in 0..40 {
        let rate = [8000, 16_000, 44_100][case % 3];
        let signal = random_signal(&mut rng, rate);
        let bytes = write_wav(&[signal], rate, &WavOptions::new(WavEncoding::F32));
        let format = [
            OutputFormat::Wav,
            OutputFormat::Ulaw,
            OutputFormat::Alaw,
            OutputFormat::Flac,
        ][case % 4];
        let ceiling = rng.range(-6.0, -0.1);
        let target = if case % 2 == 0 {
            LoudnessTarget::Lufs(rng.range(-30.0, -5.0))
        } else {
            LoudnessTarget::Dbov(rng.range(-30.0, -5.0))
        };
        let config = ProcessConfig {
            target: Some(target),
            ceiling_dbtp: ceiling,
            max_gain_db: 40.0,
            format,
            resample_hz: if case % 5 == 0 { Some(48_000) } else { None },
            ..ProcessConfig::default()
        };
        let out = process(&AudioSource::from_bytes(bytes), &config).unwrap();
        // Measured here on the decoded output, independently of what the report says.
        let decoded = decode(
            &AudioSource::from_bytes(out.audio.clone()),
            &Limits::default(),
        )
        .unwrap();
        let mut meter = TruePeakMeter::new(decoded.planes.len(), decoded.info.sample_rate);
        let views: Vec<&[f32]> = decoded.planes.iter().map(|p| p.as_slice()).collect();
        meter.push(&views);
        let tp = meter.finish().max_dbtp.unwrap();
        assert!(
            tp <= ceiling,
            "case {case} {format:?} {target}: output {tp:.4} dBTP over the ceiling {ceiling:.4}"
        );
        let reported = out.report.output.true_peak_dbtp.unwrap();
        // The quantizer moves the peak by at most 2 LSB (PCM16, FLAC) or 3.2% (G.711).
        let (r, m) = (10f64.powf(reported / 20.0), 10f64.powf(tp / 20.0));
        let slack = if matches!(format, OutputFormat::Ulaw | OutputFormat::Alaw) {
            0.032 * r
        } else {
            2.0 / 32768.0
        };
        assert!(
            (r - m).abs() <= slack,
            "case {case} {format:?}: reported {reported:.4}, measured {tp:.4}"
        );
    }
}

#[test]
fn normalization_reaches_the_target_when_nothing_limits_it() {
    let source = wav(&CallShape::telephone(20_000, 77));
    for target in [-26.0, -20.0, -32.0] {
        let config = ProcessConfig {
            target: Some(LoudnessTarget::Dbov(target)),
            ..ProcessConfig::default()
        };
        let out = process(&source, &config).unwrap();
        assert_eq!(out.report.decisions.gain.limited_by, None);
        let decoded = decode(&AudioSource::from_bytes(out.audio), &Limits::default()).unwrap();
        let mut meter = SpeechLevelMeter::new(8000);
        meter.push(&decoded.planes[0]);
        let level = meter.finish().unwrap().active_level_dbov;
        assert!(
            (level - target).abs() < 0.1,
            "target {target}: output at {level:.3} dBov"
        );
    }
    // A target the true peak forbids is capped, and says so.
    let config = ProcessConfig {
        target: Some(LoudnessTarget::Lufs(-3.0)),
        ..ProcessConfig::default()
    };
    let out = process(&source, &config).unwrap();
    assert_eq!(
        out.report.decisions.gain.limited_by,
        Some(GainLimit::TruePeak)
    );
    assert!(out.report.output.true_peak_dbtp.unwrap() <= -1.0);
}

#[test]
fn same_input_same_config_same_bytes() {
    let source = wav(&CallShape::telephone(15_000, 5).with_channels(2));
    for format in [OutputFormat::Wav, OutputFormat::Ulaw, OutputFormat::Flac] {
        let config = ProcessConfig {
            trim: true,
            resample_hz: Some(16_000),
            format,
            ..ProcessConfig::default()
        };
        let a = process(&source, &config).unwrap();
        let b = process(&source, &config).unwrap();
        assert_eq!(a.audio, b.audio, "{format:?}");
        assert_eq!(a.report.output.sha256, b.report.output.sha256);
        assert_eq!(a.report.decisions, b.report.decisions);
    }
}

#[test]
fn stereo_calls_report_talk_and_can_be_downmixed() {
    let source = wav(&CallShape::telephone(20_000, 9).with_channels(2));
    let out = process(
        &source,
        &ProcessConfig {
            downmix: true,
            ..ProcessConfig::default()
        },
    )
    .unwrap();
    let stereo = out.report.analysis.stereo.as_ref().unwrap();
    assert_eq!(stereo.channels.len(), 2);
    assert!(
        stereo.channels.iter().all(|c| c.talk_ms > 1000.0),
        "{stereo:?}"
    );
    assert!(stereo.overlap_ratio < 0.5);
    assert_eq!(out.report.output.channels, 1);
    assert!(out.report.decisions.downmix);
}

#[test]
fn replaying_recorded_decisions_gives_the_same_bytes_whatever_the_config() {
    let mut shape = CallShape::telephone(9000, 77);
    shape.channels = 2;
    let source = wav(&shape);
    let first = process(
        &source,
        &ProcessConfig {
            trim: true,
            downmix: true,
            target: Some("-20LUFS".parse::<LoudnessTarget>().unwrap()),
            format: OutputFormat::Ulaw,
            ..ProcessConfig::default()
        },
    )
    .unwrap();
    let decisions = first.report.decisions.clone();
    // Round-trip through JSON, as the state store keeps them.
    let stored: callrec_engine::process::Decisions =
        serde_json::from_value(serde_json::to_value(&decisions).unwrap()).unwrap();
    // A replay under the defaults (no trim, another target, WAV) follows the recording.
    let replay = process(
        &source,
        &ProcessConfig {
            replay: Some(stored),
            ..ProcessConfig::default()
        },
    )
    .unwrap();
    assert_eq!(replay.audio, first.audio);
    assert_eq!(replay.report.output.sha256, first.report.output.sha256);
    assert_eq!(replay.report.decisions, decisions);
}

/// Digests handed in with the source are the report's and are what expected checksums are held
/// to — the input is not hashed again — and the output is the same bytes either way. Digests of
/// another length, or without the MD5 asked for, are not used.
#[test]
fn digests_handed_in_are_used_not_recomputed() {
    use callrec_engine::{ChecksumAlgorithm, Digests, EngineError, ExpectedChecksums};
    let source = wav(&CallShape::telephone(20_000, 5));
    let plain = process(&source, &ProcessConfig::default()).unwrap();
    let real = Digests::compute(source.bytes());
    assert_eq!(plain.report.input.checksums, real.to_report());

    // Distinct from the real ones, so their use shows in the report.
    let mut told = real;
    told.sha256[0] ^= 0xFF;
    told.crc64nvme ^= 1;
    let handed = process(
        &source.clone().with_digests(told),
        &ProcessConfig::default(),
    )
    .unwrap();
    assert_eq!(handed.report.input.checksums, told.to_report());
    assert_eq!(handed.audio, plain.audio);

    // Expected checksums are checked against what was handed in.
    let expecting = |value: &str| ProcessConfig {
        input: callrec_engine::InspectOptions {
            expected_checksums: ExpectedChecksums::new()
                .expect(ChecksumAlgorithm::Sha256, value)
                .unwrap(),
            ..callrec_engine::InspectOptions::new()
        },
        ..ProcessConfig::default()
    };
    let told_source = source.clone().with_digests(told);
    assert!(process(&told_source, &expecting(&told.sha256_hex())).is_ok());
    assert!(matches!(
        process(&told_source, &expecting(&real.sha256_hex())),
        Err(EngineError::ChecksumMismatch { .. })
    ));

    // Another length: not attached; no MD5 when MD5 is asked for: computed.
    let mut short = told;
    short.bytes -= 1;
    let ignored = process(
        &source.clone().with_digests(short),
        &ProcessConfig::default(),
    )
    .unwrap();
    assert_eq!(ignored.report.input.checksums, real.to_report());
    let md5 = ProcessConfig {
        input: callrec_engine::InspectOptions {
            compute_md5: true,
            ..callrec_engine::InspectOptions::new()
        },
        ..ProcessConfig::default()
    };
    let computed = process(&told_source, &md5).unwrap();
    assert_eq!(computed.report.input.checksums.sha256, real.sha256_hex());
    assert!(computed.report.input.checksums.md5.is_some());
}
