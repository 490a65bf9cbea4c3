//! Normalization: one gain to a target loudness (LUFS) or active speech level (dBov), capped so
//! the true peak stays under a ceiling and the gain under a maximum. A recording is never made
//! worse: no clipping, and a near-silent file is not boosted into noise.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// What "normalized" means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoudnessTarget {
    /// Integrated loudness (BS.1770), LUFS.
    Lufs(f64),
    /// Active speech level (P.56), dBov.
    Dbov(f64),
}

/// The default target: −26 dBov active speech level, the nominal level of telephone speech
/// (ITU-T P.800 series), which for typical speech lands near −23 LUFS.
pub const DEFAULT_TARGET: LoudnessTarget = LoudnessTarget::Dbov(-26.0);
/// Default true-peak ceiling, dBTP (EBU R128's −1 dBTP).
pub const DEFAULT_CEILING_DBTP: f64 = -1.0;
/// Default largest gain, dB: a quieter recording is raised by at most this much.
pub const DEFAULT_MAX_GAIN_DB: f64 = 20.0;

impl fmt::Display for LoudnessTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoudnessTarget::Lufs(v) => write!(f, "{v}LUFS"),
            LoudnessTarget::Dbov(v) => write!(f, "{v}dBov"),
        }
    }
}

impl FromStr for LoudnessTarget {
    type Err = String;

    /// `-18LUFS`, `-23 lufs`, `-26dBov`, `-26 dbov`.
    fn from_str(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (number, unit) = if let Some(n) = lower.strip_suffix("lufs") {
            (n, "lufs")
        } else if let Some(n) = lower.strip_suffix("dbov") {
            (n, "dbov")
        } else {
            return Err(format!(
                "{text:?}: give a level with its unit, e.g. -18LUFS or -26dBov"
            ));
        };
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: {number:?} is not a number"))?;
        if !(-70.0..=0.0).contains(&value) {
            return Err(format!("{text:?}: the level must be between -70 and 0"));
        }
        Ok(if unit == "lufs" {
            LoudnessTarget::Lufs(value)
        } else {
            LoudnessTarget::Dbov(value)
        })
    }
}

/// What limited the gain, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GainLimit {
    TruePeak,
    MaxGain,
}

/// The normalization decision, recorded in the report (and replayed on resume).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct GainDecision {
    /// The target as given (`-26dBov`), or `null` when not normalizing.
    pub target: Option<String>,
    /// The measured value in the target's unit; `null` for silence.
    pub measured: Option<f64>,
    /// The gain applied, dB.
    pub gain_db: f64,
    /// What capped the gain below `target − measured`, if anything.
    pub limited_by: Option<GainLimit>,
}

/// Decides the gain. `true_peak_dbtp` is the signal's true peak before gain.
pub fn decide_gain(
    target: Option<LoudnessTarget>,
    integrated_lufs: Option<f64>,
    speech_level_dbov: Option<f64>,
    true_peak_dbtp: Option<f64>,
    ceiling_dbtp: f64,
    max_gain_db: f64,
) -> GainDecision {
    let Some(target) = target else {
        return GainDecision {
            target: None,
            measured: None,
            gain_db: 0.0,
            limited_by: None,
        };
    };
    let (goal, measured) = match target {
        LoudnessTarget::Lufs(t) => (t, integrated_lufs),
        LoudnessTarget::Dbov(t) => (t, speech_level_dbov),
    };
    let Some(measured) = measured else {
        return GainDecision {
            target: Some(target.to_string()),
            measured: None,
            gain_db: 0.0,
            limited_by: None,
        };
    };
    let mut gain_db = goal - measured;
    let mut limited_by = None;
    if gain_db > max_gain_db {
        gain_db = max_gain_db;
        limited_by = Some(GainLimit::MaxGain);
    }
    if let Some(tp) = true_peak_dbtp
        && tp + gain_db > ceiling_dbtp
    {
        gain_db = ceiling_dbtp - tp;
        limited_by = Some(GainLimit::TruePeak);
    }
    GainDecision {
        target: Some(target.to_string()),
        measured: Some(measured),
        gain_db,
        limited_by,
    }
}

/// Linear factor of a gain in dB.
pub fn db_to_linear(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            "-18LUFS".parse::<LoudnessTarget>(),
            Ok(LoudnessTarget::Lufs(-18.0))
        );
        assert_eq!(
            " -26 dBov ".parse::<LoudnessTarget>(),
            Ok(LoudnessTarget::Dbov(-26.0))
        );
        assert!("-18".parse::<LoudnessTarget>().is_err());
        assert!("loudLUFS".parse::<LoudnessTarget>().is_err());
        assert!("+3LUFS".parse::<LoudnessTarget>().is_err());
    }

    #[test]
    fn caps() {
        let free = decide_gain(
            Some(LoudnessTarget::Lufs(-18.0)),
            Some(-24.0),
            None,
            Some(-12.0),
            -1.0,
            20.0,
        );
        assert_eq!((free.gain_db, free.limited_by), (6.0, None));
        let peak = decide_gain(
            Some(LoudnessTarget::Lufs(-18.0)),
            Some(-24.0),
            None,
            Some(-3.0),
            -1.0,
            20.0,
        );
        assert_eq!(
            (peak.gain_db, peak.limited_by),
            (2.0, Some(GainLimit::TruePeak))
        );
        let quiet = decide_gain(
            Some(LoudnessTarget::Dbov(-26.0)),
            None,
            Some(-60.0),
            Some(-40.0),
            -1.0,
            20.0,
        );
        assert_eq!(
            (quiet.gain_db, quiet.limited_by),
            (20.0, Some(GainLimit::MaxGain))
        );
        let silent = decide_gain(
            Some(LoudnessTarget::Dbov(-26.0)),
            None,
            None,
            None,
            -1.0,
            20.0,
        );
        assert_eq!(silent.gain_db, 0.0);
    }
}
