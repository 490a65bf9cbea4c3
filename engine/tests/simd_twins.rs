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
fn a_missing_level_is_a_typed_error() {
    if !simd::available().contains(&Level::Avx2) {
        assert!(kernels_at(Level::Avx2).is_err());
    }
    assert!(kernels_at(Level::Baseline).is_ok());
}
