//! Warnings about an input, bounded: a file of a million repeated odd chunks yields a handful of
//! lines with counts, not a million strings.

/// Distinct warnings kept, in the order first seen; past this, warnings are only counted.
pub const MAX_DISTINCT: usize = 16;

/// Collects warnings: each distinct message once with how often it came, at most
/// [`MAX_DISTINCT`] of them, and a count of the rest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Warnings {
    seen: Vec<(String, u64)>,
    more: u64,
}

impl Warnings {
    pub fn push(&mut self, message: impl Into<String>) {
        let message = message.into();
        if let Some((_, n)) = self.seen.iter_mut().find(|(m, _)| *m == message) {
            *n += 1;
        } else if self.seen.len() < MAX_DISTINCT {
            self.seen.push((message, 1));
        } else {
            self.more += 1;
        }
    }

    /// The lines of a report: `message`, or `message (×N)` when it came N > 1 times, then how
    /// many more were left out.
    pub fn into_lines(self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .seen
            .into_iter()
            .map(|(m, n)| if n > 1 { format!("{m} (×{n})") } else { m })
            .collect();
        if self.more > 0 {
            lines.push(format!("… and {} more warnings", self.more));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_and_the_list_is_bounded() {
        let mut w = Warnings::default();
        for _ in 0..1_000_000 {
            w.push("a second data chunk was ignored");
        }
        for i in 0..100 {
            w.push(format!("odd chunk {i}"));
        }
        let lines = w.into_lines();
        assert_eq!(lines.len(), MAX_DISTINCT + 1);
        assert_eq!(lines[0], "a second data chunk was ignored (×1000000)");
        assert_eq!(lines[1], "odd chunk 0");
        assert_eq!(lines[MAX_DISTINCT], "… and 85 more warnings");
    }
}
