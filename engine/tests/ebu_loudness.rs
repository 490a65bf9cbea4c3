//! EBU Tech 3341 (loudness meters, minimum requirements) and Tech 3342 (loudness range) test
//! cases, generated from their published definitions; plus accuracy at telephone rates and the
//! `ebur128` crate as an oracle at 44.1 and 48 kHz.

use callrec_engine::dsp::loudness::{Loudness, LoudnessMeter};
use callrec_engine::dsp::true_peak::TruePeakMeter;
use callrec_engine::{AudioSource, Decoder, Limits};
use std::f64::consts::TAU;

const RATE: u32 = 48_000;

/// Planar channels of 1 kHz sine segments: (seconds, peak dBFS per channel).
fn segments(channels: usize, parts: &[(f64, &[f64])]) -> Vec<Vec<f32>> {
    let mut planes = vec![Vec::new(); channels];
    let mut n = 0usize;
    for &(seconds, levels) in parts {
        let frames = (seconds * RATE as f64).round() as usize;
        for i in 0..frames {
            let phase = (TAU * 1000.0 * (n + i) as f64 / RATE as f64).sin();
            for (c, plane) in planes.iter_mut().enumerate() {
                let level = levels[c.min(levels.len() - 1)];
                plane.push((10f64.powf(level / 20.0) * phase) as f32);
            }
        }
        n += frames;
    }
    planes
}

fn measure(planes: &[Vec<f32>], rate: u32) -> Loudness {
    let mut meter = LoudnessMeter::new(planes.len(), rate);
    let len = planes[0].len();
    for start in (0..len).step_by(4096) {
        let end = (start + 4096).min(len);
        let block: Vec<&[f32]> = planes.iter().map(|p| &p[start..end]).collect();
        meter.push(&block);
    }
    meter.finish()
}

fn assert_near(what: &str, got: Option<f64>, want: f64, tolerance: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: no value"));
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got:.3}, want {want} ± {tolerance}"
    );
}

#[test]
fn tech_3341_integrated_loudness_cases() {
    let stereo = |parts: &[(f64, &[f64])]| segments(2, parts);
    let cases: Vec<(&str, Vec<Vec<f32>>)> = vec![
        ("case 1: -23 dBFS", stereo(&[(20.0, &[-23.0])])),
        (
            "case 3: relative gate",
            stereo(&[(10.0, &[-36.0]), (60.0, &[-23.0]), (10.0, &[-36.0])]),
        ),
        (
            "case 4: both gates",
            stereo(&[
                (10.0, &[-72.0]),
                (10.0, &[-36.0]),
                (60.0, &[-23.0]),
                (10.0, &[-36.0]),
                (10.0, &[-72.0]),
            ]),
        ),
        (
            "case 5: level changes",
            stereo(&[(20.0, &[-26.0]), (20.1, &[-20.0]), (20.0, &[-26.0])]),
        ),
        (
            "case 6: 5.1 weights",
            segments(6, &[(20.0, &[-28.0, -28.0, -24.0, -200.0, -30.0, -30.0])]),
        ),
    ];
    for (name, planes) in cases {
        let l = measure(&planes, RATE);
        assert_near(name, l.integrated_lufs, -23.0, 0.1);
    }
    assert_near(
        "case 2: -33 dBFS",
        measure(&stereo(&[(20.0, &[-33.0])]), RATE).integrated_lufs,
        -33.0,
        0.1,
    );
    // Cases 1 and 2 are steady: momentary and short-term read the same.
    let l = measure(&stereo(&[(20.0, &[-23.0])]), RATE);
    assert_near("case 1 momentary", l.momentary_max_lufs, -23.0, 0.1);
    assert_near("case 1 short-term", l.short_term_max_lufs, -23.0, 0.1);
}

#[test]
fn tech_3341_short_term_case_9() {
    // Alternating 1.34 s at −20 dBFS and 1.66 s at −30 dBFS: every 3 s window reads −23 LUFS.
    let mut parts = Vec::new();
    for _ in 0..5 {
        parts.push((1.34, &[-20.0][..]));
        parts.push((1.66, &[-30.0][..]));
    }
    let l = measure(&segments(2, &parts), RATE);
    assert_near("case 9 short-term max", l.short_term_max_lufs, -23.0, 0.1);
}

#[test]
fn tech_3342_loudness_range_cases() {
    let stereo = |parts: &[(f64, &[f64])]| segments(2, parts);
    let cases: Vec<(&str, Vec<Vec<f32>>, f64)> = vec![
        (
            "case 1",
            stereo(&[(20.0, &[-20.0]), (20.0, &[-30.0])]),
            10.0,
        ),
        ("case 2", stereo(&[(20.0, &[-20.0]), (20.0, &[-15.0])]), 5.0),
        (
            "case 3",
            stereo(&[(20.0, &[-40.0]), (20.0, &[-20.0])]),
            20.0,
        ),
        (
            "case 4",
            stereo(&[
                (20.0, &[-50.0]),
                (20.0, &[-35.0]),
                (20.0, &[-20.0]),
                (20.0, &[-35.0]),
                (20.0, &[-50.0]),
            ]),
            15.0,
        ),
    ];
    for (name, planes, want) in cases {
        assert_near(name, measure(&planes, RATE).loudness_range_lu, want, 1.0);
    }
}

#[test]
fn tech_3341_true_peak_cases() {
    // Cases 15–19: a sine at fs/4, −6 dBFS, at several phases; plus fs/6 and fs/8, and +3 dBTP
    // (floating point). Expected: the sine's own peak, within −0.4/+0.2 dB.
    let cases = [
        (RATE as f64 / 4.0, -6.0, 0.0f64),
        (RATE as f64 / 4.0, -6.0, 45.0),
        (RATE as f64 / 4.0, -6.0, 60.0),
        (RATE as f64 / 4.0, -6.0, 67.5),
        (RATE as f64 / 4.0, -6.0, 88.2),
        (RATE as f64 / 6.0, -6.0, 20.0),
        (RATE as f64 / 8.0, 0.0, 33.0),
        (RATE as f64 / 4.0, 3.0, 45.0),
    ];
    for (freq, peak_db, phase) in cases {
        let amplitude = 10f64.powf(peak_db / 20.0);
        let tone: Vec<f32> = (0..RATE as usize)
            .map(|i| {
                let t = i as f64 / RATE as f64;
                let fade = 0.5 - 0.5 * (std::f64::consts::PI * (t / 0.05).min(1.0)).cos();
                (amplitude * fade * (TAU * freq * t + phase.to_radians()).sin()) as f32
            })
            .collect();
        let mut meter = TruePeakMeter::new(2, RATE);
        meter.push(&[&tone, &tone]);
        let tp = meter.finish().max_dbtp.unwrap();
        let sample_peak = 20.0 * (tone.iter().fold(0f32, |m, s| m.max(s.abs())) as f64).log10();
        assert!(tp >= sample_peak, "true peak below sample peak");
        assert!(
            (-0.4..=0.2).contains(&(tp - peak_db)),
            "{freq} Hz {phase}°: {tp:.3} dBTP, want {peak_db}"
        );
    }
}

/// Speech-like, band-limited to the telephone band, evaluated analytically at any rate: the
/// "same signal" at 8, 16 and 48 kHz without any resampler in between.
fn telephone_speech(rate: u32, seconds: f64) -> Vec<f32> {
    let partials: Vec<(f64, f64)> = (1..=30)
        .map(|k| 118.0 * k as f64)
        .filter(|&f| (300.0..=3400.0).contains(&f))
        .map(|f| {
            (
                f,
                1.0 / (1.0 + ((f - 600.0) / 700.0).powi(2))
                    + 0.3 / (1.0 + ((f - 2400.0) / 500.0).powi(2)),
            )
        })
        .collect();
    (0..(rate as f64 * seconds) as usize)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let syllable = (std::f64::consts::PI * 4.0 * t).sin().powi(2)
                * (0.6 + 0.4 * (TAU * 0.3 * t).sin());
            let v: f64 = partials
                .iter()
                .enumerate()
                .map(|(k, &(f, a))| a * (TAU * f * t + k as f64).sin())
                .sum();
            (0.05 * syllable * v) as f32
        })
        .collect()
}

#[test]
fn telephone_rates_agree_with_48k_within_0_05_lu() {
    let reference = measure(&[telephone_speech(48_000, 20.0)], 48_000)
        .integrated_lufs
        .unwrap();
    for rate in [8000, 16_000] {
        let got = measure(&[telephone_speech(rate, 20.0)], rate)
            .integrated_lufs
            .unwrap();
        assert!(
            (got - reference).abs() <= 0.05,
            "{rate} Hz: {got:.3} LUFS vs {reference:.3} at 48 kHz"
        );
    }
}

fn ebur128_loudness(planes: &[Vec<f32>], rate: u32) -> (f64, f64) {
    let mut meter = ebur128::EbuR128::new(
        planes.len() as u32,
        rate,
        ebur128::Mode::I | ebur128::Mode::TRUE_PEAK,
    )
    .unwrap();
    let views: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
    meter.add_frames_planar_f32(&views).unwrap();
    let tp = (0..planes.len() as u32)
        .map(|c| meter.true_peak(c).unwrap())
        .fold(0.0, f64::max);
    (meter.loudness_global().unwrap(), 20.0 * tp.log10())
}

#[test]
fn ebur128_crate_agrees_at_44_1_and_48_khz() {
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/audio");
    let limits = Limits::default();
    let mut compared = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let source = AudioSource::map_file(&path, &limits).unwrap();
        let decoded = Decoder::open(&source, &limits)
            .unwrap()
            .decode_all(&limits)
            .unwrap();
        let rate = decoded.info.sample_rate;
        if rate != 44_100 && rate != 48_000 {
            continue;
        }
        let ours = measure(&decoded.planes, rate).integrated_lufs;
        let (theirs, _) = ebur128_loudness(&decoded.planes, rate);
        match ours {
            Some(ours) => {
                assert!(
                    (ours - theirs).abs() <= 0.02,
                    "{}: {ours:.4} vs ebur128 {theirs:.4}",
                    path.display()
                );
                compared += 1;
            }
            // Shorter than one 400 ms block: ebur128 says −∞ too.
            None => assert!(
                theirs == f64::NEG_INFINITY,
                "{}: ebur128 {theirs}",
                path.display()
            ),
        }
    }
    // And on longer synthetic speech at both rates, where gating has something to do.
    for rate in [44_100, 48_000] {
        let planes = callrec_fixtures::synth_call(
            &callrec_fixtures::CallShape::telephone(30_000, 5)
                .with_rate(rate)
                .with_channels(2),
        );
        let ours = measure(&planes, rate).integrated_lufs.unwrap();
        let (theirs, _) = ebur128_loudness(&planes, rate);
        assert!(
            (ours - theirs).abs() <= 0.02,
            "{rate} Hz speech: {ours:.4} vs {theirs:.4}"
        );
        compared += 1;
    }
    assert!(compared >= 5, "compared {compared}");
}
