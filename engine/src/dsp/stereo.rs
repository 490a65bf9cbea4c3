//! Two-party calls recorded as stereo (agent and customer on separate channels): each channel's
//! talk time and how much they talk over each other, and the mono downmix.

use super::frames::FrameStats;
use serde::Serialize;

/// One channel's talk time.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ChannelTalk {
    pub channel: u16,
    /// Time this channel is above its speech threshold, ms.
    pub talk_ms: f64,
    /// `talk_ms` over the whole duration (0–1).
    pub talk_ratio: f64,
}

/// Talk and overlap of a multichannel call.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StereoFacts {
    pub channels: Vec<ChannelTalk>,
    /// Time two or more channels talk at once, ms.
    pub overlap_ms: f64,
    /// Overlap over the time anyone talks (0–1).
    pub overlap_ratio: f64,
}

/// Per-channel activity at 10 ms resolution: a channel talks in a frame when its RMS is above its
/// own threshold (`thresholds_dbfs[c]`, e.g. 25 dB below that channel's speech level).
pub fn stereo_facts(stats: &FrameStats, thresholds_dbfs: &[f64]) -> StereoFacts {
    let frames = stats.frames();
    let frame_ms = stats.samples_to_ms(stats.frame_len);
    let channels = stats.mean_square.len();
    let mut talk = vec![0u64; channels];
    let (mut overlap, mut anyone) = (0u64, 0u64);
    for i in 0..frames {
        let mut talking = 0;
        for (c, count) in talk.iter_mut().enumerate() {
            if stats.channel_level_db(c, i) > thresholds_dbfs[c] {
                *count += 1;
                talking += 1;
            }
        }
        overlap += (talking >= 2) as u64;
        anyone += (talking >= 1) as u64;
    }
    StereoFacts {
        channels: talk
            .iter()
            .enumerate()
            .map(|(c, &n)| ChannelTalk {
                channel: c as u16,
                talk_ms: n as f64 * frame_ms,
                talk_ratio: if frames == 0 {
                    0.0
                } else {
                    n as f64 / frames as f64
                },
            })
            .collect(),
        overlap_ms: overlap as f64 * frame_ms,
        overlap_ratio: if anyone == 0 {
            0.0
        } else {
            overlap as f64 / anyone as f64
        },
    }
}

/// The mean of all channels: each party keeps its level relative to the other, and the sum of
/// two full-scale channels cannot clip.
pub fn downmix(planes: &[Vec<f32>]) -> Vec<f32> {
    let frames = planes.first().map_or(0, Vec::len);
    let mut mix = vec![0f32; frames];
    let views: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
    downmix_into(&views, &mut mix);
    mix
}

/// [`downmix`] of a block into `mix` (as long as the planes): the same value for each sample
/// whichever block it is in.
pub fn downmix_into(planes: &[&[f32]], mix: &mut [f32]) {
    let scale = 1.0 / planes.len().max(1) as f32;
    mix.fill(0.0);
    for plane in planes {
        for (m, &s) in mix.iter_mut().zip(*plane) {
            *m += s;
        }
    }
    for m in mix.iter_mut() {
        *m *= scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talk_and_overlap() {
        let rate = 8000;
        // Channel 0 talks 0–2 s, channel 1 talks 1.5–4 s: 0.5 s of overlap in 4 s of talk.
        let tone = |from: f64, to: f64| -> Vec<f32> {
            (0..rate * 5)
                .map(|i| {
                    let t = i as f64 / rate as f64;
                    if (from..to).contains(&t) {
                        (0.1 * (t * 2000.0).sin()) as f32
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let planes = vec![tone(0.0, 2.0), tone(1.5, 4.0)];
        let facts = stereo_facts(&FrameStats::compute(&planes, rate as u32), &[-50.0, -50.0]);
        assert!(
            (facts.channels[0].talk_ms - 2000.0).abs() <= 10.0,
            "{facts:?}"
        );
        assert!(
            (facts.channels[1].talk_ms - 2500.0).abs() <= 10.0,
            "{facts:?}"
        );
        assert!((facts.overlap_ms - 500.0).abs() <= 10.0, "{facts:?}");
        assert!((facts.overlap_ratio - 0.125).abs() < 0.005, "{facts:?}");
        let mix = downmix(&planes);
        assert_eq!(mix[4000], planes[0][4000] / 2.0);
    }
}
