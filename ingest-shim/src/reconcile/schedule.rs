//! When to look at an export job again: controlled polling, not busy waiting.
//!
//! The first poll is `initial` after the export is created (1 minute by default); each further
//! wait is `growth` times the last, capped at `max` (6 minutes), and spread by ± `jitter` (a
//! share of the wait) so that replicas and jobs created together do not poll in lockstep. Tests
//! use seconds instead of minutes.

use jiff::{SignedDuration, Timestamp};

/// The polling schedule of export jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct PollSchedule {
    pub initial: SignedDuration,
    pub max: SignedDuration,
    /// Each wait is this many times the previous one (≥ 1).
    pub growth: f64,
    /// Waits vary by up to this share either way (0–0.5).
    pub jitter: f64,
}

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule {
            initial: SignedDuration::from_mins(1),
            max: SignedDuration::from_mins(6),
            growth: 1.5,
            jitter: 0.2,
        }
    }
}

/// Why a schedule cannot work (named by its configuration key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("poll {key}: {message}")]
pub struct ScheduleError {
    pub key: &'static str,
    pub message: &'static str,
}

impl PollSchedule {
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if !self.initial.is_positive() {
            return Err(ScheduleError {
                key: "initial",
                message: "must be above zero",
            });
        }
        if self.max < self.initial {
            return Err(ScheduleError {
                key: "max",
                message: "must be at least the initial wait",
            });
        }
        if !(self.growth.is_finite() && self.growth >= 1.0) {
            return Err(ScheduleError {
                key: "growth",
                message: "must be 1 or more",
            });
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(ScheduleError {
                key: "jitter",
                message: "must be between 0 and 0.5",
            });
        }
        Ok(())
    }

    /// The wait before poll number `attempt` (0 for the first), before jitter.
    pub fn base_wait(&self, attempt: u32) -> SignedDuration {
        let initial = self.initial.as_secs_f64();
        let grown = initial * self.growth.powi(attempt.min(64) as i32);
        SignedDuration::from_secs_f64(grown.min(self.max.as_secs_f64()))
    }

    /// When to poll next after `now`, for poll number `attempt`; `unit` in [0, 1) picks the
    /// jitter (a random number in production, fixed in tests).
    pub fn next_poll(&self, now: Timestamp, attempt: u32, unit: f64) -> Timestamp {
        let base = self.base_wait(attempt).as_secs_f64();
        let spread = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let wait = SignedDuration::from_secs_f64(base * spread);
        now.checked_add(wait).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minute_growing_to_six_with_jitter() {
        let s = PollSchedule::default();
        s.validate().unwrap();
        let waits: Vec<f64> = (0..8).map(|a| s.base_wait(a).as_secs_f64()).collect();
        assert_eq!(waits[0], 60.0);
        assert_eq!(waits[1], 90.0);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), 360.0);
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for unit in [0.0, 0.25, 0.5, 0.999] {
            let next = s.next_poll(now, 0, unit).duration_since(now).as_secs_f64();
            assert!((48.0..=72.0).contains(&next), "{unit}: {next}");
        }
        assert_eq!(
            s.next_poll(now, 0, 0.5).duration_since(now).as_secs_f64(),
            60.0
        );
        // A huge attempt count neither overflows nor exceeds the cap.
        assert_eq!(s.base_wait(u32::MAX).as_secs_f64(), 360.0);
    }

    #[test]
    fn bad_schedules_name_their_key() {
        let bad = |f: fn(&mut PollSchedule)| {
            let mut s = PollSchedule::default();
            f(&mut s);
            s.validate().unwrap_err().key
        };
        assert_eq!(bad(|s| s.initial = SignedDuration::ZERO), "initial");
        assert_eq!(bad(|s| s.max = SignedDuration::from_secs(1)), "max");
        assert_eq!(bad(|s| s.growth = 0.5), "growth");
        assert_eq!(bad(|s| s.jitter = 0.9), "jitter");
    }
}
