//! Second-order IIR sections: coefficients, frequency response and the f64 recursion.

use num_complex::Complex64;
use std::f64::consts::PI;

/// One biquad, `H(z) = (b0 + b1 z⁻¹ + b2 z⁻²) / (1 + a1 z⁻¹ + a2 z⁻²)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    pub b: [f64; 3],
    /// `a[0]` is 1.
    pub a: [f64; 3],
}

impl Biquad {
    /// The complex response at `freq_hz` for sample rate `rate_hz`.
    pub fn response(&self, freq_hz: f64, rate_hz: f64) -> Complex64 {
        let w = 2.0 * PI * freq_hz / rate_hz;
        let z1 = Complex64::from_polar(1.0, -w);
        let z2 = z1 * z1;
        (self.b[0] + z1 * self.b[1] + z2 * self.b[2])
            / (self.a[0] + z1 * self.a[1] + z2 * self.a[2])
    }

    /// Whether both poles lie strictly inside the unit circle.
    pub fn is_stable(&self) -> bool {
        let (a1, a2) = (self.a[1], self.a[2]);
        a2.abs() < 1.0 && a1.abs() < 1.0 + a2
    }
}

/// Magnitude in dB of a cascade at `freq_hz`.
pub fn cascade_response_db(sections: &[Biquad], freq_hz: f64, rate_hz: f64) -> f64 {
    let h: Complex64 = sections
        .iter()
        .map(|s| s.response(freq_hz, rate_hz))
        .product();
    20.0 * h.norm().log10()
}

/// Direct-form-I state of one section (x[n-1], x[n-2], y[n-1], y[n-2]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BiquadState {
    x1: f64,
    x2: f64,
    y1: f64,
    y2: f64,
}

impl BiquadState {
    /// Filters one sample.
    #[inline(always)]
    pub fn step(&mut self, s: &Biquad, x: f64) -> f64 {
        let y =
            s.b[0] * x + s.b[1] * self.x1 + s.b[2] * self.x2 - s.a[1] * self.y1 - s.a[2] * self.y2;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}
