//! Every dispatched kernel, at every level this CPU has, equals its scalar twin bit for bit.

use callrec_engine::dsp::true_peak::design_phases;
use callrec_engine::simd::{self, Level, kernels_at, scalar};
use callrec_fixtures::Rng;

fn levels() -> Vec<Level> {
    let levels = simd::available();
    eprintln!("testing levels: {levels:?}");
    levels
}

fn random_f32(rng: &mut Rng, n: usize, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.range(-1.0, 1.0) * scale) as f32)
        .collect()
}

#[test]
fn pcm16_to_f32_matches_its_twin() {
    let mut rng = Rng::new(1);
    for len in [0, 1, 7, 8, 9, 31, 64, 1000, 4097] {
        let mut bytes = vec![0u8; 2 * len];
        rng.fill_bytes(&mut bytes);
        let mut want = vec![f32::NAN; len];
        scalar::pcm16_to_f32(&bytes, &mut want);
        for level in levels() {
            let mut got = vec![f32::NAN; len];
            (kernels_at(level).unwrap().pcm16_to_f32)(&bytes, &mut got);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{level:?} len {len}"
            );
        }
    }
}

#[test]
fn quantize_i16_matches_its_twin() {
    let mut rng = Rng::new(2);
    for len in [0, 1, 5, 8, 33, 1000, 4099] {
        // Include exact halves (ties), out-of-range values and both signs.
        let mut samples = random_f32(&mut rng, len, 1.5);
        for (i, s) in samples.iter_mut().enumerate().step_by(7) {
            *s = (i as f32 - 2000.5) / 32768.0;
        }
        // And what a hostile float WAV holds: NaN (0 out), infinities (clamped).
        for (i, s) in samples.iter_mut().enumerate().skip(3).step_by(11) {
            *s = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN][i % 4];
        }
        for gain in [1.0f32, 0.5, 3.7, 0.001] {
            let mut want = vec![0i16; len];
            scalar::quantize_i16(&samples, gain, &mut want);
            for level in levels() {
                let mut got = vec![7i16; len];
                (kernels_at(level).unwrap().quantize_i16)(&samples, gain, &mut got);
                assert_eq!(got, want, "{level:?} len {len} gain {gain}");
            }
        }
    }
}

#[test]
fn fir_peak_matches_its_twin() {
    let mut rng = Rng::new(3);
    for factor in [2, 4] {
        let phases = design_phases(factor);
        for len in [0, 10, 31, 32, 33, 39, 40, 41, 100, 4127] {
            let x = random_f32(&mut rng, len, 0.9);
            let want = scalar::fir_peak(&x, &phases);
            for level in levels() {
                let got = (kernels_at(level).unwrap().fir_peak)(&x, &phases);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{level:?} ×{factor} len {len}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn fir_peak_central_matches_its_twin() {
    use callrec_engine::simd::kernels::{CENTRAL_FROM, CENTRAL_TAPS};
    let mut rng = Rng::new(31);
    for factor in [2, 4] {
        // The middle taps of each branch, as the true peak's bound takes them.
        let phases: Vec<[f32; CENTRAL_TAPS]> = design_phases(factor)
            .iter()
            .map(|p| std::array::from_fn(|k| p[CENTRAL_FROM + k]))
            .collect();
        for len in [0, 5, 15, 16, 17, 24, 79, 80, 81, 140, 4127] {
            let x = random_f32(&mut rng, len, 0.9);
            let want = scalar::fir_peak_central(&x, &phases);
            for level in levels() {
                let got = (kernels_at(level).unwrap().fir_peak_central)(&x, &phases);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{level:?} ×{factor} len {len}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn a_missing_level_is_a_typed_error() {
    if !simd::available().contains(&Level::Avx2) {
        assert!(kernels_at(Level::Avx2).is_err());
    }
    assert!(kernels_at(Level::Baseline).is_ok());
}

#[test]
fn level_sums_match_their_twin() {
    let mut rng = Rng::new(4);
    for len in [0, 1, 7, 8, 9, 100, 4096, 4103] {
        let mut samples = random_f32(&mut rng, len, 1.2);
        samples
            .iter_mut()
            .step_by(11)
            .for_each(|s| *s = s.clamp(-1.0, 1.0));
        let want = scalar::level_sums(&samples, 32767.0 / 32768.0);
        for level in levels() {
            let got = (kernels_at(level).unwrap().level_sums)(&samples, 32767.0 / 32768.0);
            assert_eq!(
                (
                    got.peak.to_bits(),
                    got.sum.to_bits(),
                    got.squares.to_bits(),
                    got.clipped
                ),
                (
                    want.peak.to_bits(),
                    want.sum.to_bits(),
                    want.squares.to_bits(),
                    want.clipped
                ),
                "{level:?} len {len}"
            );
        }
    }
}

#[test]
fn frame_stats_match_their_twin() {
    let mut rng = Rng::new(5);
    for (len, frame) in [
        (0, 80),
        (79, 80),
        (80, 80),
        (1000, 80),
        (4410, 441),
        (999, 7),
    ] {
        let samples = random_f32(&mut rng, len, 0.7);
        let (mut want_ms, mut want_pk) = (Vec::new(), Vec::new());
        scalar::frame_stats(&samples, frame, &mut want_ms, &mut want_pk);
        for level in levels() {
            let (mut ms, mut pk) = (Vec::new(), Vec::new());
            (kernels_at(level).unwrap().frame_stats)(&samples, frame, &mut ms, &mut pk);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                (bits(&ms), bits(&pk)),
                (bits(&want_ms), bits(&want_pk)),
                "{level:?} len {len}"
            );
        }
    }
}

#[test]
fn g711_expansion_matches_its_twin() {
    use callrec_engine::decode::g711::{ALAW_TO_F32, ULAW_TO_F32};
    let mut rng = Rng::new(6);
    let mut bytes = vec![0u8; 5003];
    rng.fill_bytes(&mut bytes);
    for table in [&ULAW_TO_F32, &ALAW_TO_F32] {
        let mut want = vec![0f32; bytes.len()];
        scalar::expand_g711(&bytes, table, &mut want);
        for level in levels() {
            let mut got = vec![f32::NAN; bytes.len()];
            (kernels_at(level).unwrap().expand_g711)(&bytes, table, &mut got);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{level:?}"
            );
        }
    }
}

#[test]
fn kweight_lanes_match_their_twin() {
    use callrec_engine::dsp::kfilter::coefficients;
    use callrec_engine::simd::kernels::{KW_LANES, KwState};
    let mut rng = Rng::new(8);
    let x = random_f32(&mut rng, 20_000, 0.9);
    for rate in [8000, 44_100] {
        let c = coefficients(rate);
        for len in [0, 1, 7, 800, 2047] {
            // Lanes at scattered, overlapping positions, from assorted non-zero states.
            let starts: [usize; KW_LANES] = std::array::from_fn(|l| (l * 2311) % (x.len() - len));
            let states: [KwState; KW_LANES] = std::array::from_fn(|l| {
                std::array::from_fn(|k| ((l * 6 + k) as f64 * 0.013).sin())
            });
            let sums: [f64; KW_LANES] = std::array::from_fn(|l| l as f64 * 0.5);
            let (mut want_states, mut want_sums) = (states, sums);
            scalar::kweight_lanes(&x, &starts, len, &c, &mut want_states, &mut want_sums);
            for level in levels() {
                let (mut got_states, mut got_sums) = (states, sums);
                (kernels_at(level).unwrap().kweight_lanes)(
                    &x,
                    &starts,
                    len,
                    &c,
                    &mut got_states,
                    &mut got_sums,
                );
                let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got_sums),
                    bits(&want_sums),
                    "{level:?} {rate} Hz len {len}"
                );
                assert_eq!(
                    bits(got_states.as_flattened()),
                    bits(want_states.as_flattened()),
                    "{level:?} {rate} Hz len {len}"
                );
            }
        }
    }
}

#[test]
fn p56_lanes_match_their_twin() {
    use callrec_engine::simd::kernels::{P56_LANES, P56State};
    let mut rng = Rng::new(9);
    let mut x = random_f32(&mut rng, 40_000, 0.9);
    x[1234] = f32::NAN;
    x[20_000..24_000].fill(0.0);
    for (i, v) in x.iter_mut().enumerate().skip(30_000) {
        // A slow swell: the exponent changes now and then, not every sample.
        *v = 0.3 * (i as f32 * 0.01).sin() * (i as f32 * 0.0003).sin();
    }
    for g in [0.995_842_607_245_486_3, 0.999_305_796_653_322_4] {
        let gh = [g, 1.0 - g];
        for len in [0, 1, 7, 1024, 4099] {
            // Lanes at scattered positions (overlapping ones too), from assorted states.
            let starts: [usize; P56_LANES] = std::array::from_fn(|l| (l * 4919) % (x.len() - len));
            let states: [P56State; P56_LANES] =
                std::array::from_fn(|l| [(l as f64 * 0.07).sin().abs(), l as f64 * 0.01]);
            let mut want_states = states;
            let mut want = vec![(0, 0, 0)];
            scalar::p56_lanes(&x, &starts, len, gh, &mut want_states, &mut want);
            if len > 1000 {
                assert!(want.len() > 10, "the test should see changes");
            }
            for level in levels() {
                let mut got_states = states;
                let mut got = vec![(0, 0, 0)];
                (kernels_at(level).unwrap().p56_lanes)(
                    &x,
                    &starts,
                    len,
                    gh,
                    &mut got_states,
                    &mut got,
                );
                assert_eq!(got, want, "{level:?} g {g} len {len}");
                let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(got_states.as_flattened()),
                    bits(want_states.as_flattened()),
                    "{level:?} g {g} len {len}"
                );
            }
        }
    }
}
