//! GSM 06.10 full-rate speech (ETSI EN 300 961), as WAVE files carry it: format tag 0x0031,
//! "WAV49" — 65-byte blocks of two 260-bit frames, 320 samples, packed least significant bit
//! first (the layout Microsoft's codec, Asterisk and most call recorders write).
//!
//! The decoder is the standard's fixed-point RPE-LTP decoder (section 4.3): RPE decoding of the
//! excitation, long-term (pitch) synthesis, short-term (LPC lattice) synthesis with interpolated
//! reflection coefficients, de-emphasis. The arithmetic is the standard's 16-bit saturating
//! operations, step for step, so the output is bit-exact with the reference implementation
//! (libgsm, which sox uses): `engine/tests/gsm.rs` checks it on every fixture.

/// The WAVE format tag of GSM 06.10.
pub const FORMAT_TAG: u16 = 0x0031;
/// Bytes of one WAV49 block (two frames).
pub const BLOCK_BYTES: usize = 65;
/// Samples one block decodes to.
pub const BLOCK_SAMPLES: usize = 320;
/// Samples of one frame.
const FRAME_SAMPLES: usize = 160;

/// One frame's parameters, as coded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Frame {
    /// Log-area ratios, 6, 6, 5, 5, 4, 4, 3, 3 bits.
    larc: [u8; 8],
    /// Per sub-frame: LTP lag (7 bits), LTP gain (2), RPE grid (2), block maximum (6).
    nc: [u8; 4],
    bc: [u8; 4],
    mc: [u8; 4],
    xmaxc: [u8; 4],
    /// Per sub-frame 13 RPE pulses of 3 bits.
    xmc: [[u8; 13]; 4],
}

/// Reads fields least significant bit first, as WAV49 packs them.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn take(&mut self, width: usize) -> u8 {
        let mut value = 0u16;
        for i in 0..width {
            let bit = self.at + i;
            value |= u16::from((self.bytes[bit / 8] >> (bit % 8)) & 1) << i;
        }
        self.at += width;
        value as u8
    }

    fn frame(&mut self) -> Frame {
        let mut frame = Frame::default();
        for (i, width) in [6, 6, 5, 5, 4, 4, 3, 3].into_iter().enumerate() {
            frame.larc[i] = self.take(width);
        }
        for j in 0..4 {
            frame.nc[j] = self.take(7);
            frame.bc[j] = self.take(2);
            frame.mc[j] = self.take(2);
            frame.xmaxc[j] = self.take(6);
            for pulse in &mut frame.xmc[j] {
                *pulse = self.take(3);
            }
        }
        frame
    }
}

// The standard's arithmetic on 16-bit words.

fn add(a: i16, b: i16) -> i16 {
    a.saturating_add(b)
}

fn sub(a: i16, b: i16) -> i16 {
    a.saturating_sub(b)
}

/// Rounded Q15 product; the one overflow (-1 × -1) saturates, any other result wraps to 16
/// bits as the reference's word assignment does.
fn mult_r(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        i16::MAX
    } else {
        ((i32::from(a) * i32::from(b) + 16384) >> 15) as i16
    }
}

/// Arithmetic shift right by `n` (left for negative `n`), as the standard defines it.
fn asr(a: i16, n: i16) -> i16 {
    if n >= 16 {
        -i16::from(a < 0)
    } else if n <= -16 {
        0
    } else if n < 0 {
        a.wrapping_shl((-n) as u32)
    } else {
        a >> n
    }
}

/// Arithmetic shift left by `n` (right for negative `n`).
fn asl(a: i16, n: i16) -> i16 {
    if n >= 16 {
        0
    } else if n <= -16 {
        -i16::from(a < 0)
    } else if n < 0 {
        asr(a, -n)
    } else {
        a.wrapping_shl(n as u32)
    }
}

/// Table 4.3b: the LTP gain's quantization levels.
const QLB: [i16; 4] = [3277, 11469, 21299, 32767];
/// Table 4.6: the normalized mantissas of the block maximum.
const FAC: [i16; 8] = [18431, 20479, 22527, 24575, 26623, 28671, 30719, 32767];
/// Per log-area ratio: 2·B, MIC and 1/A of tables 4.1 and 4.2.
const LAR_DECODING: [(i16, i16, i16); 8] = [
    (0, -32, 13107),
    (0, -32, 13107),
    (4096, -16, 13107),
    (-5120, -16, 13107),
    (188, -8, 19223),
    (-3584, -8, 17476),
    (-682, -4, 31454),
    (-2288, -4, 29708),
];

/// The decoder's memory between frames.
#[derive(Debug, Clone)]
pub struct GsmDecoder {
    /// Reconstructed short-term residual: 120 past samples, then the current sub-frame's 40.
    dp: [i16; 160],
    /// The previous frame's decoded log-area ratios.
    larpp_prev: [i16; 8],
    /// The last valid LTP lag (a lag out of 40..=120 repeats it).
    nrp: i16,
    /// The short-term synthesis filter's lattice state.
    v: [i16; 9],
    /// De-emphasis state.
    msr: i16,
}

impl Default for GsmDecoder {
    fn default() -> Self {
        GsmDecoder {
            dp: [0; 160],
            larpp_prev: [0; 8],
            nrp: 40,
            v: [0; 9],
            msr: 0,
        }
    }
}

impl GsmDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one 65-byte WAV49 block into 320 samples.
    pub fn decode_block(&mut self, block: &[u8; BLOCK_BYTES], out: &mut [i16; BLOCK_SAMPLES]) {
        let mut bits = Bits {
            bytes: block,
            at: 0,
        };
        for half in out.chunks_exact_mut(FRAME_SAMPLES) {
            let frame = bits.frame();
            self.decode_frame(&frame, half.try_into().expect("160 samples"));
        }
    }

    fn decode_frame(&mut self, frame: &Frame, out: &mut [i16; FRAME_SAMPLES]) {
        let mut wt = [0i16; FRAME_SAMPLES];
        for j in 0..4 {
            let erp = rpe_decoding(frame.xmaxc[j], frame.mc[j], &frame.xmc[j]);
            self.long_term_synthesis(frame.nc[j], frame.bc[j], &erp);
            wt[j * 40..j * 40 + 40].copy_from_slice(&self.dp[120..160]);
        }
        self.short_term_synthesis(&frame.larc, &wt, out);
        // De-emphasis, upscaling and truncation to 13 bits.
        for sample in out.iter_mut() {
            self.msr = add(*sample, mult_r(self.msr, 28180));
            *sample = add(self.msr, self.msr) & !7;
        }
    }

    /// 4.3.2: the reconstructed short-term residual of one sub-frame, from the excitation and
    /// the residual one lag back.
    fn long_term_synthesis(&mut self, ncr: u8, bcr: u8, erp: &[i16; 40]) {
        let ncr = i16::from(ncr);
        let lag = if (40..=120).contains(&ncr) {
            ncr
        } else {
            self.nrp
        };
        self.nrp = lag;
        let gain = QLB[usize::from(bcr & 3)];
        let lag = lag as usize;
        for (k, &excitation) in erp.iter().enumerate() {
            let predicted = mult_r(gain, self.dp[120 + k - lag]);
            self.dp[120 + k] = add(excitation, predicted);
        }
        // The history moves on by a sub-frame; dp[120..160] still holds the one just made,
        // which the caller reads.
        self.dp.copy_within(40..160, 0);
    }

    /// 4.2.8–4.2.10 and 4.3.4: the synthesis filter over the frame, its coefficients
    /// interpolated from the previous frame's over the first 40 samples.
    fn short_term_synthesis(
        &mut self,
        larc: &[u8; 8],
        wt: &[i16; FRAME_SAMPLES],
        out: &mut [i16; FRAME_SAMPLES],
    ) {
        let mut larpp = [0i16; 8];
        for (i, &(b2, mic, inva)) in LAR_DECODING.iter().enumerate() {
            // |LARc + MIC| ≤ 32, so the shift stays within 16 bits.
            let temp = add(i16::from(larc[i]), mic) << 10;
            let temp = mult_r(inva, sub(temp, b2));
            larpp[i] = add(temp, temp);
        }
        let prev = self.larpp_prev;
        let segments: [(usize, usize); 4] = [(0, 13), (13, 27), (27, 40), (40, 160)];
        for (segment, &(start, end)) in segments.iter().enumerate() {
            let mut rp = [0i16; 8];
            for i in 0..8 {
                let (p, c) = (prev[i], larpp[i]);
                rp[i] = match segment {
                    0 => add(add(p >> 2, c >> 2), p >> 1),
                    1 => add(p >> 1, c >> 1),
                    2 => add(add(p >> 2, c >> 2), c >> 1),
                    _ => c,
                };
                rp[i] = lar_to_rp(rp[i]);
            }
            self.lattice(&rp, &wt[start..end], &mut out[start..end]);
        }
        self.larpp_prev = larpp;
    }

    /// The 8th-order lattice synthesis filter (4.3.4).
    fn lattice(&mut self, rp: &[i16; 8], wt: &[i16], out: &mut [i16]) {
        let v = &mut self.v;
        for (input, output) in wt.iter().zip(out) {
            let mut sri = *input;
            for i in (0..8).rev() {
                sri = sub(sri, mult_r(rp[i], v[i]));
                v[i + 1] = add(v[i], mult_r(rp[i], sri));
            }
            v[0] = sri;
            *output = sri;
        }
    }
}

/// 4.2.9.2: a log-area ratio to a reflection coefficient (piecewise linear).
fn lar_to_rp(lar: i16) -> i16 {
    let magnitude = if lar == i16::MIN { i16::MAX } else { lar.abs() };
    let rp = if magnitude < 11059 {
        magnitude << 1
    } else if magnitude < 20070 {
        magnitude + 11059
    } else {
        add(magnitude >> 2, 26112)
    };
    if lar < 0 { -rp } else { rp }
}

/// 4.2.15–4.2.17 at the decoder: the 40-sample excitation of one sub-frame.
fn rpe_decoding(xmaxc: u8, mc: u8, xmc: &[u8; 13]) -> [i16; 40] {
    // The block maximum's exponent and mantissa.
    let xmaxc = i16::from(xmaxc & 63);
    let mut exp = if xmaxc > 15 { (xmaxc >> 3) - 1 } else { 0 };
    let mut mant = xmaxc - (exp << 3);
    if mant == 0 {
        exp = -4;
        mant = 7;
    } else {
        while mant <= 7 {
            mant = (mant << 1) | 1;
            exp -= 1;
        }
        mant -= 8;
    }
    // Inverse APCM quantization.
    let fac = FAC[mant as usize];
    let shift = sub(6, exp);
    let round = asl(1, sub(shift, 1));
    let mut erp = [0i16; 40];
    let grid = usize::from(mc & 3);
    for (i, &pulse) in xmc.iter().enumerate() {
        let signed = ((i16::from(pulse & 7) << 1) - 7) << 12;
        let scaled = add(mult_r(fac, signed), round);
        erp[grid + 3 * i] = asr(scaled, shift);
    }
    erp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_come_least_significant_first_and_frames_fill_a_block() {
        // The first frame's LARc[0] is the low 6 bits of byte 0, LARc[1] the next 6.
        let mut block = [0u8; BLOCK_BYTES];
        block[0] = 0b10_101010;
        block[1] = 0b0000_1111;
        let mut bits = Bits {
            bytes: &block,
            at: 0,
        };
        let frame = bits.frame();
        assert_eq!(frame.larc[0], 0b101010);
        assert_eq!(frame.larc[1], 0b111110);
        // Two frames of 260 bits take the whole 520-bit block.
        bits.frame();
        assert_eq!(bits.at, 8 * BLOCK_BYTES);
    }

    #[test]
    fn the_block_maximum_decodes_to_the_standard_exponents() {
        // xmaxc 0: exponent -4, mantissa 7 → tiny pulses; 63: the largest.
        let quiet = rpe_decoding(0, 0, &[7; 13]);
        let loud = rpe_decoding(63, 0, &[7; 13]);
        assert!(
            quiet[0] > 0 && quiet[0] < loud[0],
            "{} {}",
            quiet[0],
            loud[0]
        );
        // Pulses land on the grid every third sample, from position mc.
        let placed = rpe_decoding(40, 2, &[0; 13]);
        for (k, v) in placed.iter().enumerate() {
            assert_eq!(*v != 0, k >= 2 && (k - 2) % 3 == 0 && k < 2 + 39, "{k}");
        }
    }

    #[test]
    fn arbitrary_blocks_never_panic() {
        let mut decoder = GsmDecoder::new();
        let mut out = [0i16; BLOCK_SAMPLES];
        let mut state = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut block = [0u8; BLOCK_BYTES];
            for byte in &mut block {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *byte = state as u8;
            }
            decoder.decode_block(&block, &mut out);
        }
        let silence = [0u8; BLOCK_BYTES];
        decoder.decode_block(&[0xff; BLOCK_BYTES], &mut out);
        decoder.decode_block(&silence, &mut out);
        assert!(out.iter().all(|s| s & 7 == 0));
    }
}
