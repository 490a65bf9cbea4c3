//! Helpers shared by the benches that run `callrec` as a child process (`backfill`, `serve`):
//! each bench is a crate of its own and includes this module (`mod common;`; a folder, so that
//! cargo does not take it for a bench).

/// A knob from the environment, or `default` when unset; a value that does not parse stops the
/// bench with its name.
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

/// Peak resident memory (KiB) and CPU time (user + system, seconds) of a running process (Linux;
/// `None` elsewhere or once it exited).
pub fn proc_stats(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib = line.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((kib, ticks / 100.0))
}
