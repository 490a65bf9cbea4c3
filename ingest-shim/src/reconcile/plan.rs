//! Grouping missing calls into as few OCP export requests as OCP's limits allow.
//!
//! OCP exports one group at a time over an hour-aligned range of 1 hour to 2 days. For each
//! group the calls are sorted by dialog time and covered greedily: a window opens at the hour of
//! the earliest uncovered call and reaches as far as 2 days allow, then closes at the hour after
//! the last call it holds. Greedy covering with a fixed maximum length is optimal (no cover of
//! sorted points by intervals of bounded length uses fewer intervals), so the number of exports
//! is the minimum the limits allow.

use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;

/// OCP's shortest and longest export range.
pub const MIN_RANGE: SignedDuration = SignedDuration::from_hours(1);
pub const MAX_RANGE: SignedDuration = SignedDuration::from_hours(48);

/// One export to request: a group and an hour-aligned range `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExportRange {
    pub group_id: String,
    pub from: Timestamp,
    pub to: Timestamp,
}

/// The start of the hour holding `t` (UTC).
pub fn floor_hour(t: Timestamp) -> Timestamp {
    let seconds = t.as_second().div_euclid(3600) * 3600;
    Timestamp::from_second(seconds).expect("an hour boundary of a valid time is valid")
}

/// Covers every `(group, dialog time)` with the fewest hour-aligned ranges of 1 hour to 2 days
/// per group. Ranges come out ordered by group, then time.
pub fn plan_exports<'a>(calls: impl IntoIterator<Item = (&'a str, Timestamp)>) -> Vec<ExportRange> {
    let mut by_group: BTreeMap<&str, Vec<Timestamp>> = BTreeMap::new();
    for (group, at) in calls {
        by_group.entry(group).or_default().push(at);
    }
    let mut ranges = Vec::new();
    for (group, mut times) in by_group {
        times.sort_unstable();
        let mut i = 0;
        while i < times.len() {
            let from = floor_hour(times[i]);
            let limit = from.saturating_add(MAX_RANGE).expect("in range");
            let mut last = times[i];
            while i < times.len() && times[i] < limit {
                last = times[i];
                i += 1;
            }
            let to = floor_hour(last)
                .saturating_add(MIN_RANGE)
                .expect("in range")
                .min(limit);
            ranges.push(ExportRange {
                group_id: group.to_string(),
                from,
                to,
            });
        }
    }
    ranges
}

/// The shards of a backfill: `[from, to)` widened to whole hours, cut into ranges of at most
/// `shard_hours` (1–48).
pub fn backfill_shards(
    group_id: &str,
    from: Timestamp,
    to: Timestamp,
    shard_hours: u32,
) -> Vec<ExportRange> {
    let start = floor_hour(from);
    let mut end = floor_hour(to);
    if end < to {
        end = end
            .checked_add(SignedDuration::from_hours(1))
            .unwrap_or(end);
    }
    let step = SignedDuration::from_hours(i64::from(shard_hours.clamp(1, 48)));
    let mut shards = Vec::new();
    let mut at = start;
    while at < end {
        let next = at.checked_add(step).unwrap_or(end).min(end);
        let next = if next <= at { end } else { next };
        shards.push(ExportRange {
            group_id: group_id.to_string(),
            from: at,
            to: next,
        });
        at = next;
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn one_hour_at_least_and_hour_aligned() {
        let plan = plan_exports([("g", t("2026-11-24T10:17:00Z"))]);
        assert_eq!(
            plan,
            [ExportRange {
                group_id: "g".into(),
                from: t("2026-11-24T10:00:00Z"),
                to: t("2026-11-24T11:00:00Z"),
            }]
        );
    }

    #[test]
    fn calls_within_two_days_share_one_export_per_group() {
        let plan = plan_exports([
            ("a", t("2026-11-24T10:17:00Z")),
            ("a", t("2026-11-25T23:59:59Z")),
            ("a", t("2026-11-24T13:00:00Z")),
            ("b", t("2026-11-24T10:30:00Z")),
        ]);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].from, t("2026-11-24T10:00:00Z"));
        assert_eq!(plan[0].to, t("2026-11-26T00:00:00Z"));
        assert_eq!(plan[1].group_id, "b");
    }

    #[test]
    fn a_window_reaches_two_days_at_most() {
        let plan = plan_exports([
            ("a", t("2026-11-24T10:17:00Z")),
            ("a", t("2026-11-26T09:59:59Z")),
        ]);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].to.duration_since(plan[0].from), MAX_RANGE);
    }

    #[test]
    fn a_call_past_two_days_opens_the_next_export() {
        let plan = plan_exports([
            ("a", t("2026-11-24T10:17:00Z")),
            ("a", t("2026-11-26T10:00:00Z")),
            ("a", t("2026-11-26T10:59:59Z")),
        ]);
        assert_eq!(plan.len(), 2);
        // 10:00 two days on is just past the first window's reach, which closes after its call.
        assert_eq!(plan[0].to, t("2026-11-24T11:00:00Z"));
        assert_eq!(plan[1].from, t("2026-11-26T10:00:00Z"));
        assert_eq!(plan[1].to, t("2026-11-26T11:00:00Z"));
    }

    #[test]
    fn every_call_is_covered_by_a_legal_range_and_the_count_is_minimal() {
        // Random calls over ten days in three groups; the count is compared with the minimum.
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let base = t("2026-11-01T00:00:00Z").as_second();
        let calls: Vec<(String, Timestamp)> = (0..500)
            .map(|_| {
                let group = format!("g{}", next() % 3);
                let at = Timestamp::from_second(base + (next() % (10 * 86_400)) as i64).unwrap();
                (group, at)
            })
            .collect();
        let plan = plan_exports(calls.iter().map(|(g, at)| (g.as_str(), *at)));
        for range in &plan {
            let length = range.to.duration_since(range.from);
            assert!(length >= MIN_RANGE && length <= MAX_RANGE, "{range:?}");
            assert_eq!(range.from.as_second() % 3600, 0);
            assert_eq!(range.to.as_second() % 3600, 0);
        }
        for (group, at) in &calls {
            assert!(
                plan.iter()
                    .any(|r| &r.group_id == group && r.from <= *at && *at < r.to),
                "{group} {at} not covered"
            );
        }
        for group in ["g0", "g1", "g2"] {
            let mut times: Vec<Timestamp> = calls
                .iter()
                .filter(|(g, _)| g == group)
                .map(|(_, t)| *t)
                .collect();
            times.sort();
            // The true minimum by dynamic programming: the first uncovered call may open a
            // window at any hour from 47 h before its own hour up to its own hour.
            let n = times.len();
            let mut best = vec![0usize; n + 1];
            for i in (0..n).rev() {
                best[i] = (0..48)
                    .map(|back| {
                        let from = floor_hour(times[i])
                            .checked_sub(SignedDuration::from_hours(back))
                            .unwrap();
                        let end = from.saturating_add(MAX_RANGE).unwrap();
                        let next = (i..n).find(|&j| times[j] >= end).unwrap_or(n);
                        1 + best[next]
                    })
                    .min()
                    .unwrap();
            }
            let used = plan.iter().filter(|r| r.group_id == group).count();
            assert_eq!(used, best[0], "{group}");
        }
    }

    #[test]
    fn backfill_shards_are_whole_hours_of_at_most_two_days() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let shards = backfill_shards(
            "g",
            t("2026-11-01T10:30:00Z"),
            t("2026-11-05T09:10:00Z"),
            48,
        );
        assert_eq!(shards.first().unwrap().from, t("2026-11-01T10:00:00Z"));
        assert_eq!(shards.last().unwrap().to, t("2026-11-05T10:00:00Z"));
        assert_eq!(shards.len(), 2);
        for pair in shards.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
        for s in &shards {
            let hours = s.to.duration_since(s.from).as_hours();
            assert!((1..=48).contains(&hours), "{hours}");
        }
        let same = t("2026-11-01T10:00:00Z");
        assert!(backfill_shards("g", same, same, 48).is_empty());
        assert_eq!(
            backfill_shards("g", same, t("2026-11-01T13:00:00Z"), 1).len(),
            3
        );
    }
}
