//! What holding idle connections costs in memory: the load generator's own, and (given its
//! pid) the server's, read from `/proc` before the connections are opened and while they
//! are held. PSS (`/proc/PID/smaps_rollup`, Linux 4.14) counts shared pages once per sharer,
//! so a forked server's workers add up. Its anonymous part (`Pss_Anon`, Linux 5.9) is read
//! where there is one: the file-backed part moves whenever another process maps the same
//! binary or libraries (a second `socketkit` starting halves the server's share of its
//! code), which is not what connections cost. Where PSS cannot be read (an older kernel,
//! another user's process) the resident set (`VmRSS` of `/proc/PID/status`) stands in; the
//! report says which was read. Socket buffers are kernel memory and count in none.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which figure of a process's memory was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The anonymous part of the proportional set size (`Pss_Anon:` of `smaps_rollup`).
    PssAnon,
    /// Proportional set size (`Pss:` of `smaps_rollup`).
    Pss,
    /// Resident set size (`VmRSS:` of `status`).
    Rss,
}

impl Measure {
    fn name(self) -> &'static str {
        match self {
            Measure::PssAnon => "PSS anon",
            Measure::Pss => "PSS",
            Measure::Rss => "RSS",
        }
    }

    /// Reads this figure of `pid` (`None`: this process), in bytes.
    fn read(self, pid: Option<u32>) -> Option<u64> {
        let proc = pid.map_or_else(|| "self".to_owned(), |pid| pid.to_string());
        let (file, field) = match self {
            Measure::PssAnon => ("smaps_rollup", "Pss_Anon:"),
            Measure::Pss => ("smaps_rollup", "Pss:"),
            Measure::Rss => ("status", "VmRSS:"),
        };
        let text = std::fs::read_to_string(format!("/proc/{proc}/{file}")).ok()?;
        let kib: u64 = text
            .lines()
            .find_map(|line| line.strip_prefix(field))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib * 1024)
    }
}

/// One process's memory before the connections were opened, to be compared with later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Baseline {
    pid: Option<u32>,
    measure: Measure,
    before: u64,
}

impl Baseline {
    /// Reads the memory of `pid` (`None`: this process): anonymous PSS, else PSS, else RSS;
    /// `None` if none can be read (no `/proc`, the process is gone).
    pub(crate) fn take(pid: Option<u32>) -> Option<Baseline> {
        [Measure::PssAnon, Measure::Pss, Measure::Rss]
            .into_iter()
            .find_map(|measure| {
                measure.read(pid).map(|before| Baseline {
                    pid,
                    measure,
                    before,
                })
            })
    }

    /// Reads the same figure again and spreads the growth over `held` connections.
    pub(crate) fn growth(self, held: u64) -> Option<MemoryUse> {
        let after = self.measure.read(self.pid)?;
        let grown = after as f64 - self.before as f64;
        Some(MemoryUse {
            measure: self.measure,
            before_bytes: self.before,
            after_bytes: after,
            per_connection_bytes: (held > 0).then(|| (grown / held as f64).round()),
        })
    }
}

/// How one process's memory changed while it held the connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryUse {
    /// Which figure was read.
    pub measure: Measure,
    /// Before the connections were opened, in bytes.
    pub before_bytes: u64,
    /// While they were held (at the end of the run), in bytes.
    pub after_bytes: u64,
    /// The growth divided by the connections held (negative if memory was given back);
    /// `None` when none was held.
    pub per_connection_bytes: Option<f64>,
}

/// What holding the connections of an idle run cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldMemory {
    /// The load generator's own memory (`None` without `/proc`).
    pub bench: Option<MemoryUse>,
    /// The server's (`--server-pid`), if asked for and readable at both ends.
    pub server: Option<MemoryUse>,
    /// The server's pid, if one was given.
    pub server_pid: Option<u32>,
}

impl fmt::Display for HeldMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = [
            ("bench", self.bench.as_ref(), String::new()),
            (
                "server",
                self.server.as_ref(),
                self.server_pid
                    .map(|pid| format!(", pid {pid}"))
                    .unwrap_or_default(),
            ),
        ];
        for (who, used, note) in rows {
            let Some(used) = used else {
                if who == "server" && self.server_pid.is_some() {
                    writeln!(f, "  memory      server: could not be read{note}")?;
                }
                continue;
            };
            let grown = used.after_bytes as f64 - used.before_bytes as f64;
            let per = used
                .per_connection_bytes
                .map_or_else(|| "-".to_owned(), bytes_text);
            writeln!(
                f,
                "  memory      {who:<6} {per:>10} per connection  ({} {} → {}, {}{note})",
                used.measure.name(),
                bytes_text(used.before_bytes as f64),
                bytes_text(used.after_bytes as f64),
                signed(grown),
            )?;
        }
        Ok(())
    }
}

/// A byte count in binary units: `512 B`, `6.1 KiB`, `3.40 MiB`.
fn bytes_text(bytes: f64) -> String {
    let size = bytes.abs();
    let sign = if bytes < 0.0 { "-" } else { "" };
    if size < 1024.0 {
        format!("{sign}{size:.0} B")
    } else if size < 1024.0 * 1024.0 {
        format!("{sign}{:.1} KiB", size / 1024.0)
    } else {
        format!("{sign}{:.2} MiB", size / (1024.0 * 1024.0))
    }
}

fn signed(bytes: f64) -> String {
    if bytes >= 0.0 {
        format!("+{}", bytes_text(bytes))
    } else {
        bytes_text(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_readable_memory_figure() {
        let baseline = Baseline::take(None).expect("/proc/self is readable on Linux");
        let used = baseline.growth(4).expect("read twice");
        assert!(used.before_bytes > 0 && used.after_bytes > 0);
        assert!(used.per_connection_bytes.is_some());
        assert_eq!(
            baseline.growth(0).and_then(|u| u.per_connection_bytes),
            None
        );
    }

    #[test]
    fn byte_counts_in_binary_units() {
        assert_eq!(bytes_text(512.0), "512 B");
        assert_eq!(bytes_text(6246.0), "6.1 KiB");
        assert_eq!(bytes_text(-2048.0), "-2.0 KiB");
        assert_eq!(bytes_text(3.4 * 1048576.0), "3.40 MiB");
    }
}
