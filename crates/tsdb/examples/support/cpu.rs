//! Process CPU time for the examples' measurements.

use std::time::Duration;

/// CPU time of the whole process (all threads, also those already ended), from
/// `/proc/self/stat` in clock ticks (100 a second on Linux), so figures hold on a machine
/// busy with other work; None elsewhere.
pub fn process_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
