//! Sample-rate conversion with rubato's synchronous FFT resampler (fixed ratio, e.g. 8 kHz →
//! 16 kHz for speech recognition). The resampler's delay is removed, so output frame `n`
//! corresponds to input time `n / rate_out`, and the length is `ceil(frames · out / in)`.

use crate::error::{EngineError, Result};
use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

/// Frames per FFT chunk, in one sub-chunk: the anti-alias filter spans the whole chunk, steep
/// enough to keep a 3.4 kHz tone in an 8 kHz call within 0.1 dB (rubato's default of 256-frame
/// sub-chunks droops 0.13 dB there). The delay this adds is trimmed.
const CHUNK_FRAMES: usize = 2048;

/// The resampler both forms use: one sub-chunk of [`CHUNK_FRAMES`], fixed input size.
fn fft_resampler(channels: usize, rate_in: u32, rate_out: u32) -> Result<Fft<f32>> {
    if rate_out == 0 || rate_out > 384_000 {
        return Err(EngineError::Unsupported(format!(
            "output sample rate {rate_out} Hz"
        )));
    }
    Fft::<f32>::new_custom(
        rate_in as usize,
        rate_out as usize,
        CHUNK_FRAMES,
        1,
        channels,
        WindowFunction::BlackmanHarris2,
        FixedSync::Input,
    )
    .map_err(|e| EngineError::Unsupported(format!("resampling {rate_in} → {rate_out} Hz: {e}")))
}

/// Resamples planar `planes` from `rate_in` to `rate_out` Hz.
pub fn resample(planes: &[Vec<f32>], rate_in: u32, rate_out: u32) -> Result<Vec<Vec<f32>>> {
    if rate_in == rate_out || planes.is_empty() {
        return Ok(planes.to_vec());
    }
    let channels = planes.len();
    let frames = planes[0].len();
    let mut resampler = fft_resampler(channels, rate_in, rate_out)?;
    let needed = resampler.process_all_needed_output_len(frames);
    let mut output = vec![vec![0f32; needed]; channels];
    let input = SequentialSliceOfVecs::new(planes, channels, frames)
        .map_err(|e| EngineError::Decoder(format!("resampler input: {e}")))?;
    let mut output_adapter = SequentialSliceOfVecs::new_mut(&mut output, channels, needed)
        .map_err(|e| EngineError::Decoder(format!("resampler output: {e}")))?;
    let (_, written) = resampler
        .process_all_into_buffer(&input, &mut output_adapter, frames, None)
        .map_err(|e| EngineError::Decoder(format!("resampling: {e}")))?;
    for plane in &mut output {
        plane.truncate(written);
    }
    Ok(output)
}

/// [`resample`] of a stream given block by block, in constant memory: the same frames, to the
/// bit, as resampling the whole signal at once. It replays what rubato's `process_all` does
/// (full chunks while more than a chunk is left, then the last partial chunk, then chunks of
/// silence until the delay and the expected length are covered) with the delay trimmed as the
/// frames go out.
pub struct StreamResampler {
    inner: Fft<f32>,
    channels: usize,
    /// Input not yet resampled: at most one chunk after each push.
    pending: Vec<Vec<f32>>,
    pending_len: usize,
    out: Vec<Vec<f32>>,
    /// Output frames still to drop (the resampler's delay).
    to_trim: usize,
    input_len: u64,
    /// Output frames produced (before trimming) and given out.
    produced: u64,
    emitted: u64,
}

impl StreamResampler {
    /// `None` when the rates are equal.
    pub fn new(channels: usize, rate_in: u32, rate_out: u32) -> Result<Option<Self>> {
        if rate_in == rate_out || channels == 0 {
            return Ok(None);
        }
        let inner = fft_resampler(channels, rate_in, rate_out)?;
        let chunk = inner.input_frames_next();
        let out_max = inner.output_frames_max();
        Ok(Some(StreamResampler {
            to_trim: inner.output_delay(),
            inner,
            channels,
            pending: vec![Vec::with_capacity(2 * chunk); channels],
            pending_len: 0,
            out: vec![vec![0f32; out_max]; channels],
            input_len: 0,
            produced: 0,
            emitted: 0,
        }))
    }

    /// The number of frames `input_len` input frames resample to (what [`resample`] returns).
    pub fn output_len(&self, input_len: u64) -> u64 {
        (self.inner.resample_ratio() * input_len as f64).ceil() as u64
    }

    /// One chunk from `pending` at `offset` (`partial`: how many frames are real), its output
    /// handed to `emit` with the delay trimmed and, at the end, capped at `limit` frames.
    fn run(
        &mut self,
        offset: usize,
        partial: Option<usize>,
        limit: Option<u64>,
        emit: &mut dyn FnMut(&[&[f32]]) -> Result<()>,
    ) -> Result<()> {
        let in_frames = self.pending[0].len();
        let input = SequentialSliceOfVecs::new(&self.pending, self.channels, in_frames)
            .map_err(|e| EngineError::Decoder(format!("resampler input: {e}")))?;
        let out_frames = self.out[0].len();
        let mut output = SequentialSliceOfVecs::new_mut(&mut self.out, self.channels, out_frames)
            .map_err(|e| EngineError::Decoder(format!("resampler output: {e}")))?;
        let indexing = rubato::Indexing {
            input_offset: offset,
            output_offset: 0,
            active_channels_mask: None,
            partial_len: partial,
        };
        let (_, written) = self
            .inner
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|e| EngineError::Decoder(format!("resampling: {e}")))?;
        self.produced += written as u64;
        let skip = self.to_trim.min(written);
        self.to_trim -= skip;
        let mut end = written;
        if let Some(limit) = limit {
            end = end.min(skip + limit.saturating_sub(self.emitted) as usize);
        }
        if end > skip {
            let views: Vec<&[f32]> = self.out.iter().map(|p| &p[skip..end]).collect();
            emit(&views)?;
            self.emitted += (end - skip) as u64;
        }
        Ok(())
    }

    /// Adds input; whole chunks are resampled (all but the last, which may be the stream's
    /// partial end) and their output handed to `emit`.
    pub fn push(
        &mut self,
        block: &[&[f32]],
        emit: &mut dyn FnMut(&[&[f32]]) -> Result<()>,
    ) -> Result<()> {
        let len = block.first().map_or(0, |b| b.len());
        self.input_len += len as u64;
        for (pending, samples) in self.pending.iter_mut().zip(block) {
            pending.extend_from_slice(samples);
        }
        self.pending_len += len;
        let chunk = self.inner.input_frames_next();
        let mut offset = 0;
        while self.pending_len - offset > chunk {
            self.run(offset, None, None, emit)?;
            offset += chunk;
        }
        if offset > 0 {
            for pending in &mut self.pending {
                pending.drain(..offset);
            }
            self.pending_len -= offset;
        }
        Ok(())
    }

    /// Resamples what is left and the resampler's tail: the stream ends at exactly
    /// [`StreamResampler::output_len`] frames.
    pub fn finish(mut self, emit: &mut dyn FnMut(&[&[f32]]) -> Result<()>) -> Result<()> {
        let expected = self.output_len(self.input_len);
        if self.pending_len > 0 {
            self.run(0, Some(self.pending_len), Some(expected), emit)?;
        }
        let delay = self.inner.output_delay() as u64;
        while self.produced < expected + delay && self.emitted < expected {
            self.run(0, Some(0), Some(expected), emit)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realfft::RealFftPlanner;
    use std::f64::consts::TAU;

    fn tone(rate: u32, freqs: &[(f64, f64)], seconds: f64) -> Vec<f32> {
        (0..(rate as f64 * seconds) as usize)
            .map(|i| {
                let t = i as f64 / rate as f64;
                freqs
                    .iter()
                    .map(|&(f, a)| a * (TAU * f * t).sin())
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// The middle of `signal` through a 4-term Blackman–Harris window (side lobes −92 dB):
    /// per-bin power spectrum and the window's energy.
    fn power_spectrum(signal: &[f32], size: usize) -> (Vec<f64>, f64) {
        let start = (signal.len() - size) / 2;
        let window: Vec<f64> = (0..size)
            .map(|i| {
                let x = TAU * i as f64 / size as f64;
                0.35875 - 0.48829 * x.cos() + 0.14128 * (2.0 * x).cos() - 0.01168 * (3.0 * x).cos()
            })
            .collect();
        let energy: f64 = window.iter().map(|w| w * w).sum();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(size);
        let mut input: Vec<f64> = signal[start..start + size]
            .iter()
            .zip(&window)
            .map(|(&s, w)| s as f64 * w)
            .collect();
        let mut output = fft.make_output_vec();
        fft.process(&mut input, &mut output).unwrap();
        (output.iter().map(|c| c.norm_sqr()).collect(), energy)
    }

    /// (the tone's peak amplitude in dB, the highest other bin relative to the tone's bin in dB).
    /// The amplitude comes from the power of the whole main lobe (Parseval), so it does not
    /// depend on where the tone falls between bins.
    fn tone_and_spurs(signal: &[f32], rate: u32, freq: f64) -> (f64, f64) {
        let size = 1 << 14;
        let (power, energy) = power_spectrum(signal, size);
        let k = (freq * size as f64 / rate as f64).round() as usize;
        let lobe: f64 = power[k - 5..=k + 5].iter().sum();
        let amplitude_db = 10.0 * (4.0 * lobe / (size as f64 * energy)).log10();
        let tone_bin = power[k - 5..=k + 5].iter().copied().fold(0.0, f64::max);
        let spur = power
            .iter()
            .enumerate()
            .filter(|&(j, _)| j > 8 && (j as i64 - k as i64).abs() > 8)
            .map(|(_, &p)| p)
            .fold(0.0, f64::max);
        (amplitude_db, 10.0 * (spur / tone_bin).max(1e-30).log10())
    }

    #[test]
    fn upsampling_keeps_level_and_images_are_80_db_down() {
        for (from, to, f) in [
            (8000, 16_000, 1000.0),
            (8000, 16_000, 3400.0),
            (8000, 48_000, 2000.0),
            (16_000, 44_100, 5000.0),
        ] {
            let input = tone(from, &[(f, 0.5)], 4.0);
            let output = resample(&[input], from, to).unwrap();
            assert_eq!(output[0].len(), (4.0 * to as f64) as usize);
            let (level, spurs) = tone_and_spurs(&output[0], to, f);
            let want = 20.0 * (0.5f64).log10();
            assert!(
                (level - want).abs() <= 0.1,
                "{from}→{to} {f} Hz: level {level:.3} dB, want {want:.3}"
            );
            assert!(
                spurs <= -80.0,
                "{from}→{to} {f} Hz: images at {spurs:.1} dB"
            );
        }
    }

    #[test]
    fn downsampling_keeps_level_and_aliases_are_80_db_down() {
        // A tone inside the new band, and one above the new Nyquist that must not fold back.
        for (from, to, f, above) in [
            (16_000, 8000, 1000.0, 6000.0),
            (48_000, 8000, 2500.0, 7000.0),
            (44_100, 16_000, 3000.0, 12_000.0),
        ] {
            let input = tone(from, &[(f, 0.25), (above, 0.25)], 10.0);
            let output = resample(&[input], from, to).unwrap();
            let (level, spurs) = tone_and_spurs(&output[0], to, f);
            let want = 20.0 * (0.25f64).log10();
            assert!(
                (level - want).abs() <= 0.1,
                "{from}→{to}: level {level:.3} dB, want {want:.3}"
            );
            assert!(
                spurs <= -80.0,
                "{from}→{to}: alias of {above} Hz at {spurs:.1} dB"
            );
        }
    }

    #[test]
    fn same_rate_is_a_copy() {
        let planes = vec![vec![0.5f32; 100]];
        assert_eq!(resample(&planes, 8000, 8000).unwrap(), planes);
    }

    #[test]
    fn a_stream_resamples_to_the_whole_signals_bits() {
        for (rate_in, rate_out) in [(8000, 16_000), (48_000, 8000), (8000, 11_025)] {
            for frames in [1, 100, 2047, 2048, 2049, 4096, 20_000, 65_537] {
                let signal: Vec<Vec<f32>> = (0..2)
                    .map(|c| {
                        (0..frames)
                            .map(|i| (0.3 * ((i * (c + 3)) as f64 * 0.01).sin()) as f32)
                            .collect()
                    })
                    .collect();
                let whole = resample(&signal, rate_in, rate_out).unwrap();
                for cut in [1000, 4096, 65_536] {
                    let mut stream = StreamResampler::new(2, rate_in, rate_out).unwrap().unwrap();
                    assert_eq!(stream.output_len(frames as u64), whole[0].len() as u64);
                    let mut got = [Vec::new(), Vec::new()];
                    let mut emit = |b: &[&[f32]]| {
                        for (g, s) in got.iter_mut().zip(b) {
                            g.extend_from_slice(s);
                        }
                        Ok(())
                    };
                    for start in (0..frames).step_by(cut) {
                        let end = (start + cut).min(frames);
                        stream
                            .push(&[&signal[0][start..end], &signal[1][start..end]], &mut emit)
                            .unwrap();
                    }
                    stream.finish(&mut emit).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    for c in 0..2 {
                        assert!(
                            bits(&got[c]) == bits(&whole[c]),
                            "{rate_in} → {rate_out}, {frames} frames in pieces of {cut}: {} vs {}",
                            got[c].len(),
                            whole[c].len()
                        );
                    }
                }
            }
        }
    }
}
