//! IIR design by magnitude fitting: a target power response |H(f)|² is fitted with a minimum-phase
//! cascade of biquads, at any sample rate.
//!
//! Why: a filter defined at 48 kHz (BS.1770's K-weighting) and moved to 8 kHz by the bilinear
//! transform is warped near Nyquist, and telephone audio lives right there (0.3–3.4 kHz of a
//! 4 kHz band). Fitting the 48 kHz response itself keeps the error to hundredths of a dB.
//!
//! Method: with x = cos ω, the power response of a real rational filter is a ratio of
//! polynomials in x, `|H|² = Z(x) · P(x) / Q(x)`, where `Z(x) = (2 − 2x)²` carries a known double
//! zero at DC (a high-pass) when asked for. P and Q (Chebyshev basis, Q's constant term fixed) are
//! found by weighted linear least squares, iterated Sanathanan–Koerner style so the equation error
//! becomes the relative error. Each root r of P and Q then gives a factor `1 − ρ z⁻¹` with
//! ρ + 1/ρ = 2r and |ρ| < 1: stable poles, minimum-phase zeros.

use super::biquad::{Biquad, cascade_response_db};
use num_complex::Complex64;
use std::f64::consts::PI;

/// Why a design failed (a property of the target, not of any input audio).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DesignError {
    #[error("the least-squares system is singular")]
    Singular,
    #[error("the fitted {0} is not positive on the unit circle")]
    NotPositive(&'static str),
}

/// One point of the target: frequency (Hz), power |H|², weight.
#[derive(Debug, Clone, Copy)]
pub struct TargetPoint {
    pub freq_hz: f64,
    pub power: f64,
    pub weight: f64,
}

/// Chebyshev polynomials T_0..T_n at x.
fn chebyshev(x: f64, n: usize) -> Vec<f64> {
    let mut t = vec![1.0; n + 1];
    if n >= 1 {
        t[1] = x;
    }
    for k in 2..=n {
        t[k] = 2.0 * x * t[k - 1] - t[k - 2];
    }
    t
}

/// Chebyshev coefficients → power-basis coefficients (lowest degree first).
fn chebyshev_to_power(c: &[f64]) -> Vec<f64> {
    let n = c.len();
    // Power-basis coefficients of T_k, built by the recurrence.
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(n);
    for k in 0..n {
        let poly = match k {
            0 => vec![1.0],
            1 => vec![0.0, 1.0],
            _ => {
                let mut p = vec![0.0; k + 1];
                for (i, &v) in basis[k - 1].iter().enumerate() {
                    p[i + 1] += 2.0 * v;
                }
                for (i, &v) in basis[k - 2].iter().enumerate() {
                    p[i] -= v;
                }
                p
            }
        };
        basis.push(poly);
    }
    let mut out = vec![0.0; n];
    for (k, &ck) in c.iter().enumerate() {
        for (i, &v) in basis[k].iter().enumerate() {
            out[i] += ck * v;
        }
    }
    out
}

/// Solves min ‖A x − b‖ by Householder QR. `a` is row-major, `rows × cols`.
// Textbook column operations: the index walks a column across rows.
#[allow(clippy::needless_range_loop)]
fn least_squares(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Result<Vec<f64>, DesignError> {
    let rows = a.len();
    let cols = a.first().map_or(0, Vec::len);
    for k in 0..cols {
        let norm = (k..rows).map(|i| a[i][k] * a[i][k]).sum::<f64>().sqrt();
        if norm < 1e-300 {
            return Err(DesignError::Singular);
        }
        let alpha = if a[k][k] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (k..rows).map(|i| a[i][k]).collect();
        v[0] -= alpha;
        let vnorm2: f64 = v.iter().map(|x| x * x).sum();
        if vnorm2 < 1e-300 {
            continue;
        }
        for j in k..cols {
            let dot: f64 = (k..rows).map(|i| v[i - k] * a[i][j]).sum::<f64>() * 2.0 / vnorm2;
            for i in k..rows {
                a[i][j] -= dot * v[i - k];
            }
        }
        let dot: f64 = (k..rows).map(|i| v[i - k] * b[i]).sum::<f64>() * 2.0 / vnorm2;
        for i in k..rows {
            b[i] -= dot * v[i - k];
        }
    }
    let mut x = vec![0.0; cols];
    for k in (0..cols).rev() {
        if a[k][k].abs() < 1e-14 * a[0][0].abs().max(1e-300) {
            return Err(DesignError::Singular);
        }
        let s: f64 = (k + 1..cols).map(|j| a[k][j] * x[j]).sum();
        x[k] = (b[k] - s) / a[k][k];
    }
    Ok(x)
}

/// Roots of a polynomial (power basis, lowest degree first) by Durand–Kerner iteration.
fn roots(poly: &[f64]) -> Vec<Complex64> {
    let mut coeffs = poly.to_vec();
    while coeffs.len() > 1 && coeffs.last().is_some_and(|c| c.abs() < 1e-300) {
        coeffs.pop();
    }
    let n = coeffs.len() - 1;
    if n == 0 {
        return Vec::new();
    }
    let lead = coeffs[n];
    let monic: Vec<f64> = coeffs.iter().map(|c| c / lead).collect();
    let eval = |z: Complex64| {
        monic
            .iter()
            .rev()
            .fold(Complex64::new(0.0, 0.0), |acc, &c| acc * z + c)
    };
    let radius = 1.0 + monic[..n].iter().fold(0.0f64, |m, c| m.max(c.abs()));
    let mut z: Vec<Complex64> = (0..n)
        .map(|k| Complex64::from_polar(radius * 0.9, 0.4 + 2.0 * PI * k as f64 / n as f64))
        .collect();
    for _ in 0..500 {
        let mut moved = 0.0f64;
        for i in 0..n {
            let mut denom = Complex64::new(1.0, 0.0);
            for j in 0..n {
                if i != j {
                    denom *= z[i] - z[j];
                }
            }
            let step = eval(z[i]) / denom;
            z[i] -= step;
            moved = moved.max(step.norm());
        }
        if moved < 1e-15 * radius {
            break;
        }
    }
    z
}

/// Turns roots in x into z-domain quadratics `[1, c1, c2]` (first-order ones have c2 = 0).
fn factor(roots_x: &[Complex64], what: &'static str) -> Result<Vec<[f64; 3]>, DesignError> {
    let mut real = Vec::new();
    let mut complex = Vec::new();
    for &r in roots_x {
        let s = (r * r - 1.0).sqrt();
        let mut rho = r - s;
        if rho.norm() > 1.0 {
            rho = r + s;
        }
        if (rho.norm() - 1.0).abs() < 1e-9 {
            // A root on [−1, 1]: the polynomial changes sign on the unit circle.
            return Err(DesignError::NotPositive(what));
        }
        if r.im.abs() < 1e-9 * r.norm().max(1.0) {
            real.push(rho.re);
        } else if r.im > 0.0 {
            complex.push(rho);
        }
    }
    let mut quads: Vec<[f64; 3]> = complex
        .iter()
        .map(|rho| [1.0, -2.0 * rho.re, rho.norm_sqr()])
        .collect();
    real.sort_by(f64::total_cmp);
    for pair in real.chunks(2) {
        quads.push(match pair {
            [a, b] => [1.0, -(a + b), a * b],
            [a] => [1.0, -a, 0.0],
            _ => unreachable!("chunks(2) yields one or two"),
        });
    }
    Ok(quads)
}

/// Fits `target` with `|H|² = Z(x)·P(x)/Q(x)`, deg P = `num_degree`, deg Q = `den_degree`
/// (even), Z = (2 − 2x)² when `dc_double_zero`. Returns the biquads, scaled so the response
/// equals the target at the point of largest weight × power.
pub fn fit_cascade(
    rate_hz: f64,
    target: &[TargetPoint],
    num_degree: usize,
    den_degree: usize,
    dc_double_zero: bool,
) -> Result<Vec<Biquad>, DesignError> {
    let xs: Vec<f64> = target
        .iter()
        .map(|p| (2.0 * PI * p.freq_hz / rate_hz).cos())
        .collect();
    let base = |x: f64| {
        if dc_double_zero {
            (2.0 - 2.0 * x).powi(2)
        } else {
            1.0
        }
    };
    let residual: Vec<f64> = target
        .iter()
        .zip(&xs)
        .map(|(p, &x)| p.power / base(x))
        .collect();
    let unknowns = num_degree + 1 + den_degree;
    let mut q_prev: Vec<f64> = vec![1.0; target.len()];
    let mut solution = vec![0.0; unknowns];
    for _ in 0..30 {
        let mut rows = Vec::with_capacity(target.len());
        let mut rhs = Vec::with_capacity(target.len());
        for (i, &x) in xs.iter().enumerate() {
            let w = target[i].weight / (residual[i] * q_prev[i].abs()).max(1e-300);
            let t = chebyshev(x, num_degree.max(den_degree));
            let mut row = Vec::with_capacity(unknowns);
            row.extend(t[..=num_degree].iter().map(|v| v * w));
            row.extend(t[1..=den_degree].iter().map(|v| -residual[i] * v * w));
            rows.push(row);
            rhs.push(residual[i] * w);
        }
        solution = least_squares(rows, rhs)?;
        for (i, &x) in xs.iter().enumerate() {
            let t = chebyshev(x, den_degree);
            q_prev[i] = 1.0
                + (1..=den_degree)
                    .map(|k| solution[num_degree + k] * t[k])
                    .sum::<f64>();
        }
    }
    let p_cheb = &solution[..=num_degree];
    let mut q_cheb = vec![1.0];
    q_cheb.extend_from_slice(&solution[num_degree + 1..]);
    let numerators = factor(&roots(&chebyshev_to_power(p_cheb)), "numerator")?;
    let denominators = factor(&roots(&chebyshev_to_power(&q_cheb)), "denominator")?;

    let mut numerators = numerators;
    if dc_double_zero {
        numerators.push([1.0, -2.0, 1.0]);
    }
    let sections_count = numerators.len().max(denominators.len());
    let mut sections: Vec<Biquad> = (0..sections_count)
        .map(|k| Biquad {
            b: numerators.get(k).copied().unwrap_or([1.0, 0.0, 0.0]),
            a: denominators.get(k).copied().unwrap_or([1.0, 0.0, 0.0]),
        })
        .collect();
    // Overall gain: match the target where it matters most.
    let reference = target
        .iter()
        .max_by(|a, b| (a.weight * a.power).total_cmp(&(b.weight * b.power)))
        .expect("a non-empty target");
    let have_db = cascade_response_db(&sections, reference.freq_hz, rate_hz);
    let want_db = 10.0 * reference.power.log10();
    let gain = 10f64.powf((want_db - have_db) / 20.0);
    for b in &mut sections[0].b {
        *b *= gain;
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chebyshev_conversion() {
        // 2·T0 + 3·T1 + 4·T2 = 2 + 3x + 4(2x² − 1) = −2 + 3x + 8x².
        assert_eq!(chebyshev_to_power(&[2.0, 3.0, 4.0]), vec![-2.0, 3.0, 8.0]);
    }

    #[test]
    fn roots_of_a_quartic() {
        // (x − 2)(x + 3)(x² + 1) = x⁴ + x³ − 5x² + x − 6
        let mut r = roots(&[-6.0, 1.0, -5.0, 1.0, 1.0]);
        r.sort_by(|a, b| {
            (a.re.round() as i64, a.im.round() as i64)
                .cmp(&(b.re.round() as i64, b.im.round() as i64))
        });
        let want = [(-3.0, 0.0), (0.0, -1.0), (0.0, 1.0), (2.0, 0.0)];
        for (got, (re, im)) in r.iter().zip(want) {
            assert!(
                (got.re - re).abs() < 1e-9 && (got.im - im).abs() < 1e-9,
                "{got}"
            );
        }
    }

    #[test]
    fn refits_a_known_biquad_exactly() {
        // A peaking filter at 1 kHz, 16 kHz: fitting its own response must give it back.
        let known = Biquad {
            b: [1.05, -1.6, 0.72],
            a: [1.0, -1.55, 0.75],
        };
        let rate = 16_000.0;
        let target: Vec<TargetPoint> = (0..200)
            .map(|i| {
                let f = 20.0 * (7900.0f64 / 20.0).powf(i as f64 / 199.0);
                TargetPoint {
                    freq_hz: f,
                    power: known.response(f, rate).norm_sqr(),
                    weight: 1.0,
                }
            })
            .collect();
        let fitted = fit_cascade(rate, &target, 2, 2, false).unwrap();
        for p in &target {
            let err = cascade_response_db(&fitted, p.freq_hz, rate) - 10.0 * p.power.log10();
            assert!(err.abs() < 1e-6, "{} Hz: {err} dB", p.freq_hz);
        }
        assert!(fitted.iter().all(Biquad::is_stable));
    }
}
