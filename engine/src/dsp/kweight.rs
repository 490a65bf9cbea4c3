//! K-weighting (ITU-R BS.1770-4): the pre-filter (high shelf, +4 dB above ~1.5 kHz) and the RLB
//! high-pass (~38 Hz), with coefficients computed for the actual sample rate.
//!
//! BS.1770 publishes the filter at 48 kHz only. Other meters move it to other rates with the
//! bilinear transform from an analog prototype, which at 8 kHz reads +0.2 dB at 100–300 Hz and
//! +0.4–0.5 dB at 2–3 kHz: telephone speech measures about 0.19 LU too loud. Here the 48 kHz
//! response itself is the target, fitted at the actual rate by [`super::design`]; from 20 Hz to
//! 0.425·fs the result is within a few thousandths of a dB of the 48 kHz filter (tested).

use super::biquad::{Biquad, cascade_response_db};
use super::design::{TargetPoint, fit_cascade};

/// BS.1770-4 Table 1: the pre-filter at 48 kHz.
pub const SHELF_48K: Biquad = Biquad {
    b: [
        1.535_124_859_586_97,
        -2.691_696_189_406_38,
        1.198_392_810_852_85,
    ],
    a: [1.0, -1.690_659_293_182_41, 0.732_480_774_215_85],
};
/// BS.1770-4 Table 2: the RLB high-pass at 48 kHz.
pub const HIGHPASS_48K: Biquad = Biquad {
    b: [1.0, -2.0, 1.0],
    a: [1.0, -1.990_047_454_833_98, 0.990_072_250_366_21],
};

/// The reference response: both 48 kHz stages, in dB, at `freq_hz` (< 24 kHz).
pub fn reference_response_db(freq_hz: f64) -> f64 {
    cascade_response_db(&[SHELF_48K, HIGHPASS_48K], freq_hz, 48_000.0)
}

/// Upper edge of the band where the fit is held to the 48 kHz response, as a fraction of the
/// sample rate (3.4 kHz at 8 kHz: the top of the telephone band).
pub const FIT_TOP: f64 = 0.425;

/// The RLB high-pass's analog prototype (the poles of [`HIGHPASS_48K`]): corner in Hz and Q.
const HIGHPASS_F0_HZ: f64 = 38.135_470_876_024_44;
const HIGHPASS_Q: f64 = 0.500_327_037_323_877_3;

/// The RLB high-pass at `rate`: the analog prototype through a bilinear transform prewarped at
/// its corner. The corner is far below Nyquist at every rate, so warping is negligible here. The
/// published 48 kHz stage has b = [1, −2, 1] unnormalized, i.e. a passband gain of
/// (1 + K/Q + K²) at 48 kHz (+0.043 dB); that gain is kept so every rate matches 48 kHz.
fn highpass(rate: f64) -> Biquad {
    let norm = |rate: f64| {
        let k = (std::f64::consts::PI * HIGHPASS_F0_HZ / rate).tan();
        (k, 1.0 + k / HIGHPASS_Q + k * k)
    };
    let (k, a0) = norm(rate);
    let (_, gain_48k) = norm(48_000.0);
    let g = gain_48k / a0;
    Biquad {
        b: [g, -2.0 * g, g],
        a: [
            1.0,
            2.0 * (k * k - 1.0) / a0,
            (1.0 - k / HIGHPASS_Q + k * k) / a0,
        ],
    }
}

/// The K-weighting cascade for `rate_hz`, shelf then high-pass: the published biquads at
/// 48 kHz; at any other rate the high-pass from its analog prototype and the shelf fitted to the
/// 48 kHz shelf's response.
///
/// A design costs about a millisecond (≈ 20% of the whole chain on a 30-second call, PERF.md),
/// so the designs of the first [`CACHED_RATES`] rates met are kept for the process's life; any
/// other rate (a hostile file may declare any) is designed each time, so the cache stays bounded.
pub fn k_weighting(rate_hz: u32) -> [Biquad; 2] {
    if rate_hz == 48_000 {
        return [SHELF_48K, HIGHPASS_48K];
    }
    static DESIGNED: std::sync::Mutex<Vec<(u32, [Biquad; 2])>> = std::sync::Mutex::new(Vec::new());
    let cached = |designs: &[(u32, [Biquad; 2])]| {
        designs
            .iter()
            .find(|(rate, _)| *rate == rate_hz)
            .map(|(_, sections)| *sections)
    };
    // A panic elsewhere while the lock was held cannot leave a half-written entry (pushes are
    // whole), so a poisoned cache is still good.
    if let Some(sections) = cached(&DESIGNED.lock().unwrap_or_else(|e| e.into_inner())) {
        return sections;
    }
    // Designed outside the lock: two threads meeting a new rate at once both design it.
    let sections = design_k_weighting(rate_hz);
    let mut designs = DESIGNED.lock().unwrap_or_else(|e| e.into_inner());
    if designs.len() < CACHED_RATES && cached(&designs).is_none() {
        designs.push((rate_hz, sections));
    }
    sections
}

/// How many sample rates' K-weighting designs [`k_weighting`] keeps.
pub const CACHED_RATES: usize = 16;

/// [`k_weighting`] designed afresh (a fit over 400 points), never from a cache.
pub fn design_k_weighting(rate_hz: u32) -> [Biquad; 2] {
    let rate = rate_hz as f64;
    let nyquist = rate / 2.0;
    // Above 48 kHz's Nyquist the reference is undefined; the shelf is flat there anyway.
    let shelf_db = |f: f64| cascade_response_db(&[SHELF_48K], f.min(23_900.0), 48_000.0);
    let top = (FIT_TOP * rate).min(20_000.0);
    let points = 400;
    let target: Vec<TargetPoint> = (0..points)
        .map(|i| {
            let f = 10.0 * ((nyquist * 0.995) / 10.0).powf(i as f64 / (points - 1) as f64);
            // Full weight in the band that is measured; a light hold above it keeps the fit
            // from wandering between 0.425·fs and Nyquist.
            let weight = if (20.0..=top).contains(&f) { 1.0 } else { 0.02 };
            TargetPoint {
                freq_hz: f,
                power: 10f64.powf(shelf_db(f) / 10.0),
                weight,
            }
        })
        .collect();
    let shelf =
        fit_cascade(rate, &target, 2, 2, false).expect("the shelf target is a valid design");
    [shelf[0], highpass(rate)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst_error_db(rate: u32) -> (f64, f64) {
        let sections = k_weighting(rate);
        assert!(
            sections.iter().all(Biquad::is_stable),
            "{rate} Hz: unstable"
        );
        let top = (FIT_TOP * rate as f64).min(20_000.0);
        let mut worst = (0.0f64, 0.0);
        let steps = 2000;
        for i in 0..=steps {
            let f = 20.0 * (top / 20.0).powf(i as f64 / steps as f64);
            let err = cascade_response_db(&sections, f, rate as f64) - reference_response_db(f);
            if err.abs() > worst.0.abs() {
                worst = (err, f);
            }
        }
        worst
    }

    #[test]
    fn the_cache_answers_what_a_fresh_design_does_and_stays_bounded() {
        for rate in [8000, 16_000, 8000] {
            assert_eq!(k_weighting(rate), design_k_weighting(rate));
        }
        // More rates than the cache keeps: every answer is still the design's.
        for rate in (0..2 * CACHED_RATES as u32).map(|i| 9000 + 100 * i) {
            assert_eq!(k_weighting(rate), design_k_weighting(rate));
        }
    }

    #[test]
    fn matches_the_48k_response_within_0_05_db_at_telephone_rates() {
        for rate in [8000, 16_000] {
            let (err, at) = worst_error_db(rate);
            eprintln!("K-weighting at {rate} Hz: worst {err:+.5} dB at {at:.0} Hz");
            assert!(err.abs() <= 0.05, "{rate} Hz: {err:+.4} dB at {at:.0} Hz");
        }
    }

    #[test]
    fn matches_at_every_common_rate() {
        for rate in [
            11_025, 12_000, 22_050, 24_000, 32_000, 44_100, 88_200, 96_000, 192_000,
        ] {
            let (err, at) = worst_error_db(rate);
            eprintln!("K-weighting at {rate} Hz: worst {err:+.5} dB at {at:.0} Hz");
            assert!(err.abs() <= 0.05, "{rate} Hz: {err:+.4} dB at {at:.0} Hz");
        }
    }

    #[test]
    fn highpass_prototype_reproduces_the_published_48k_stage() {
        let hp = highpass(48_000.0);
        for (got, want) in hp.a.iter().zip(HIGHPASS_48K.a) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!((hp.b[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reference_is_bs1770() {
        // The K-weighting gain at 1 kHz is +0.69 dB... and the shelf reaches ~+4 dB.
        assert!(
            (reference_response_db(997.0) - 0.69).abs() < 0.02,
            "{}",
            reference_response_db(997.0)
        );
        assert!((reference_response_db(10_000.0) - 4.0).abs() < 0.1);
        assert!(reference_response_db(20.0) < -10.0);
    }
}
