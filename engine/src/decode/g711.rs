//! G.711 expansion tables (μ-law and A-law → 16-bit linear, then f32).
//!
//! The values are G.711's reconstruction levels left-justified in 16 bits: μ-law's 14-bit range
//! is scaled by 4 (±32,124 full scale) and A-law's 13-bit range by 8 (±32,256). Leaving them
//! unscaled is the classic bug that makes G.711 audio 12–18 dB too quiet; flipping the sign bit
//! inverts polarity. Both tables are built at compile time from the segment/mantissa rule.

/// μ-law codeword → 16-bit linear.
pub const ULAW_TO_I16: [i16; 256] = build_ulaw();
/// A-law codeword → 16-bit linear.
pub const ALAW_TO_I16: [i16; 256] = build_alaw();
/// μ-law codeword → f32 in [−1, 1), exactly `ULAW_TO_I16[c] / 32768`.
pub const ULAW_TO_F32: [f32; 256] = to_f32(&ULAW_TO_I16);
/// A-law codeword → f32 in [−1, 1), exactly `ALAW_TO_I16[c] / 32768`.
pub const ALAW_TO_F32: [f32; 256] = to_f32(&ALAW_TO_I16);

const fn build_ulaw() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        // Codewords are transmitted inverted.
        let u = !(code as u8);
        let segment = ((u >> 4) & 0x07) as i32;
        let mantissa = (u & 0x0F) as i32;
        // ((mantissa·8 + 132) << segment) − 132 = 4 · ((2·mantissa + 33)·2^segment − 33).
        let magnitude = (((mantissa << 3) + 0x84) << segment) - 0x84;
        table[code] = if u & 0x80 != 0 {
            -magnitude as i16
        } else {
            magnitude as i16
        };
        code += 1;
    }
    table
}

const fn build_alaw() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        // Even bits are transmitted inverted.
        let a = (code as u8) ^ 0x55;
        let segment = ((a >> 4) & 0x07) as i32;
        let mantissa = (a & 0x0F) as i32;
        let magnitude = match segment {
            0 => (mantissa << 4) + 8,
            _ => ((mantissa << 4) + 0x108) << (segment - 1),
        };
        // Sign bit set means positive in A-law.
        table[code] = if a & 0x80 != 0 {
            magnitude as i16
        } else {
            -magnitude as i16
        };
        code += 1;
    }
    table
}

const fn to_f32(table: &[i16; 256]) -> [f32; 256] {
    let mut out = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = table[i] as f32 / 32768.0;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G.711 Table 1 (μ-law), written from the standard's decision/reconstruction rule rather
    /// than the shift form above: value = (2m + 33)·2^e − 33 in 14-bit units, times 4.
    fn itu_ulaw(code: u8) -> i32 {
        let inverted = !code;
        let negative = inverted & 0x80 != 0;
        let e = ((inverted >> 4) & 7) as i32;
        let m = (inverted & 0xF) as i32;
        let v = ((2 * m + 33) * (1 << e) - 33) * 4;
        if negative { -v } else { v }
    }

    /// G.711 Table 2 (A-law): e = 0 → 2m + 1, e ≥ 1 → (2m + 33)·2^(e−1), in 13-bit units
    /// (half-steps of the 12-bit magnitude), times 8.
    fn itu_alaw(code: u8) -> i32 {
        let a = code ^ 0x55;
        let positive = a & 0x80 != 0;
        let e = ((a >> 4) & 7) as i32;
        let m = (a & 0xF) as i32;
        let v = if e == 0 {
            2 * m + 1
        } else {
            (2 * m + 33) * (1 << (e - 1))
        } * 8;
        if positive { v } else { -v }
    }

    #[test]
    fn every_ulaw_codeword_matches_g711() {
        for code in 0..=255u8 {
            assert_eq!(
                ULAW_TO_I16[code as usize] as i32,
                itu_ulaw(code),
                "code {code:#04x}"
            );
            assert_eq!(ULAW_TO_F32[code as usize], itu_ulaw(code) as f32 / 32768.0);
        }
        // Anchors: full scale, both zeros, polarity.
        assert_eq!(ULAW_TO_I16[0x00], -32124);
        assert_eq!(ULAW_TO_I16[0x80], 32124);
        assert_eq!(ULAW_TO_I16[0xFF], 0);
        assert_eq!(ULAW_TO_I16[0x7F], 0);
        assert_eq!(ULAW_TO_I16[0xFE], 8);
        assert_eq!(ULAW_TO_I16[0x7E], -8);
    }

    #[test]
    fn every_alaw_codeword_matches_g711() {
        for code in 0..=255u8 {
            assert_eq!(
                ALAW_TO_I16[code as usize] as i32,
                itu_alaw(code),
                "code {code:#04x}"
            );
            assert_eq!(ALAW_TO_F32[code as usize], itu_alaw(code) as f32 / 32768.0);
        }
        // Anchors: the idle pattern 0xD5/0x55 is ±8 (never zero), full scale is ±32256.
        assert_eq!(ALAW_TO_I16[0xD5], 8);
        assert_eq!(ALAW_TO_I16[0x55], -8);
        assert_eq!(ALAW_TO_I16[0xAA], 32256);
        assert_eq!(ALAW_TO_I16[0x2A], -32256);
    }

    #[test]
    fn tables_are_odd_symmetric() {
        for code in 0..128usize {
            assert_eq!(ULAW_TO_I16[code], -ULAW_TO_I16[code | 0x80]);
            assert_eq!(ALAW_TO_I16[code], -ALAW_TO_I16[code | 0x80]);
        }
    }
}
