//! Sample conversion: interleaved little-endian PCM / float / G.711 bytes → planar f32.
//!
//! Each loop reads fixed-size byte groups with `chunks_exact` so the compiler can vectorize it
//! (loads, sign extension, int→float, one multiply by an exact power of two). The scale factors
//! are the ones symphonia uses, so both decoders give bit-identical samples.

use super::g711::{ALAW_TO_F32, ULAW_TO_F32};

/// How one sample is stored in a WAV data chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleEncoding {
    /// 8-bit unsigned integer, 128 = zero.
    U8,
    I16,
    I24,
    I32,
    F32,
    F64,
    ALaw,
    MuLaw,
}

impl SampleEncoding {
    /// Bytes one sample occupies in the data chunk.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            SampleEncoding::U8 | SampleEncoding::ALaw | SampleEncoding::MuLaw => 1,
            SampleEncoding::I16 => 2,
            SampleEncoding::I24 => 3,
            SampleEncoding::I32 | SampleEncoding::F32 => 4,
            SampleEncoding::F64 => 8,
        }
    }

    /// The codec's short name in reports.
    pub fn codec_name(self) -> &'static str {
        match self {
            SampleEncoding::U8 => "pcm_u8",
            SampleEncoding::I16 => "pcm_s16le",
            SampleEncoding::I24 => "pcm_s24le",
            SampleEncoding::I32 => "pcm_s32le",
            SampleEncoding::F32 => "pcm_f32le",
            SampleEncoding::F64 => "pcm_f64le",
            SampleEncoding::ALaw => "pcm_alaw",
            SampleEncoding::MuLaw => "pcm_mulaw",
        }
    }
}

const SCALE_8: f32 = 1.0 / 128.0;
const SCALE_16: f32 = 1.0 / 32_768.0;
const SCALE_24: f32 = 1.0 / 8_388_608.0;
const SCALE_32: f32 = 1.0 / 2_147_483_648.0;

/// Converts whole frames of `src` into `dst`, one slice per channel.
///
/// `src.len()` must be a multiple of the frame size and every `dst` slice at least
/// `src.len() / frame_size` long; extra destination samples are left untouched. Callers in this
/// crate guarantee both (the RIFF parser rounds the data chunk down to whole frames).
pub fn convert(encoding: SampleEncoding, src: &[u8], dst: &mut [&mut [f32]]) {
    match encoding {
        SampleEncoding::U8 => convert_with::<1>(src, dst, |b| b[0] as f32 * SCALE_8 - 1.0),
        // Mono PCM16, the OCP recording, takes the dispatched kernel (AVX2 where the CPU has it).
        SampleEncoding::I16 if dst.len() == 1 => (crate::simd::kernels().pcm16_to_f32)(src, dst[0]),
        SampleEncoding::I16 => {
            convert_with::<2>(src, dst, |b| i16::from_le_bytes(b) as f32 * SCALE_16)
        }
        SampleEncoding::I24 => convert_with::<3>(src, dst, |b| {
            (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 * SCALE_24
        }),
        // (s as f32) · 2^−31 rounds exactly as symphonia's (s as f64 / 2^31) as f32: the scale is a
        // power of two, so the only rounding is of s to 24 bits, the same in both.
        SampleEncoding::I32 => {
            convert_with::<4>(src, dst, |b| i32::from_le_bytes(b) as f32 * SCALE_32)
        }
        SampleEncoding::F32 => convert_with::<4>(src, dst, f32::from_le_bytes),
        SampleEncoding::F64 => convert_with::<8>(src, dst, |b| f64::from_le_bytes(b) as f32),
        SampleEncoding::ALaw if dst.len() == 1 => {
            (crate::simd::kernels().expand_g711)(src, &ALAW_TO_F32, dst[0])
        }
        SampleEncoding::MuLaw if dst.len() == 1 => {
            (crate::simd::kernels().expand_g711)(src, &ULAW_TO_F32, dst[0])
        }
        SampleEncoding::ALaw => convert_with::<1>(src, dst, |b| ALAW_TO_F32[b[0] as usize]),
        SampleEncoding::MuLaw => convert_with::<1>(src, dst, |b| ULAW_TO_F32[b[0] as usize]),
    }
}

/// The de-interleaving loop, specialized for mono and stereo (almost every call) so those
/// compile to straight vectorizable loops; other layouts take a strided loop per channel.
#[inline(always)]
fn convert_with<const B: usize>(
    src: &[u8],
    dst: &mut [&mut [f32]],
    sample: impl Fn([u8; B]) -> f32,
) {
    let read = |bytes: &[u8]| -> [u8; B] {
        let mut array = [0u8; B];
        array.copy_from_slice(bytes);
        array
    };
    match dst {
        [] => {}
        [mono] => {
            for (out, bytes) in mono.iter_mut().zip(src.chunks_exact(B)) {
                *out = sample(read(bytes));
            }
        }
        [left, right] => {
            let frames = left.iter_mut().zip(right.iter_mut());
            for ((l, r), bytes) in frames.zip(src.chunks_exact(2 * B)) {
                *l = sample(read(&bytes[..B]));
                *r = sample(read(&bytes[B..]));
            }
        }
        planes => {
            let channels = planes.len();
            for (channel, plane) in planes.iter_mut().enumerate() {
                let frames = src.chunks_exact(channels * B);
                for (out, frame) in plane.iter_mut().zip(frames) {
                    *out = sample(read(&frame[channel * B..(channel + 1) * B]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(encoding: SampleEncoding, src: &[u8], channels: usize) -> Vec<Vec<f32>> {
        let frames = src.len() / (encoding.bytes_per_sample() * channels);
        let mut planes = vec![vec![f32::NAN; frames]; channels];
        let mut views: Vec<&mut [f32]> = planes.iter_mut().map(|p| p.as_mut_slice()).collect();
        convert(encoding, src, &mut views);
        planes
    }

    #[test]
    fn integer_widths_use_exact_scales() {
        assert_eq!(
            run(SampleEncoding::U8, &[0, 128, 255], 1),
            vec![vec![-1.0, 0.0, 127.0 / 128.0]]
        );
        let i16s: Vec<u8> = [i16::MIN, -1, 0, 1, i16::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            run(SampleEncoding::I16, &i16s, 1)[0],
            vec![-1.0, -1.0 / 32768.0, 0.0, 1.0 / 32768.0, 32767.0 / 32768.0]
        );
        // 24-bit: 0x800000 is the most negative, sign-extended.
        let i24 = [0x00, 0x00, 0x80, 0xFF, 0xFF, 0x7F, 0x01, 0x00, 0x00];
        assert_eq!(
            run(SampleEncoding::I24, &i24, 1)[0],
            vec![-1.0, 8_388_607.0 / 8_388_608.0, 1.0 / 8_388_608.0]
        );
        let i32s: Vec<u8> = [i32::MIN, i32::MAX, 12345]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for (got, v) in
            run(SampleEncoding::I32, &i32s, 1)[0]
                .iter()
                .zip([i32::MIN, i32::MAX, 12345])
        {
            assert_eq!(*got, (v as f64 / 2_147_483_648.0) as f32);
        }
    }

    #[test]
    fn deinterleaves_any_channel_count() {
        let frames: Vec<i16> = (0..30).collect();
        let bytes: Vec<u8> = frames.iter().flat_map(|v| v.to_le_bytes()).collect();
        for channels in 1..=5 {
            let planes = run(
                SampleEncoding::I16,
                &bytes[..bytes.len() / (2 * channels) * 2 * channels],
                channels,
            );
            for (c, plane) in planes.iter().enumerate() {
                for (i, &s) in plane.iter().enumerate() {
                    assert_eq!(s, (i * channels + c) as f32 / 32768.0);
                }
            }
        }
    }
}
