//! The result of a run as it is printed, saved (`--json`) and read back (`--compare`): the
//! figures, the run's configuration, the time series the picture draws and, for idle runs,
//! the memory the held connections cost.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::memory::HeldMemory;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

/// A run's configuration as its report records it: what a reader of a saved report needs
/// to know what was measured (the target and mode are the report's own fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Concurrent workers (greeting, echo) or connections to hold (idle).
    pub connections: usize,
    /// Echo: block size in bytes.
    pub size: Option<usize>,
    /// Echo: bytes in flight per connection.
    pub window: Option<usize>,
    /// The measured span asked for, in seconds.
    pub duration_s: f64,
    /// The warm-up, in seconds (0 for idle runs, which have none).
    pub warmup_s: f64,
    /// Open loop: operations started per second; `None`: closed loop.
    pub rate: Option<f64>,
    /// Stop after this many completed operations.
    pub count: Option<u64>,
    /// Threads generating load.
    pub threads: usize,
}

impl Setup {
    /// The measured span asked for, as `--duration` takes it (`5s`, `300ms`).
    pub fn duration_text(&self) -> String {
        seconds_text(self.duration_s)
    }

    /// The warm-up, as `--warmup` takes it.
    pub fn warmup_text(&self) -> String {
        seconds_text(self.warmup_s)
    }

    /// The load in words, as the table's header shows it: mode, connections, block size,
    /// threads, rate (an idle run has none: it holds its connections), count.
    pub fn load(&self, mode: &str) -> String {
        let connections = match self.connections {
            1 => "1 connection".to_owned(),
            n => format!("{n} connections"),
        };
        let idle = mode == "idle";
        let mut load = vec![
            format!("mode {mode}"),
            if idle {
                format!("holding {connections}")
            } else {
                connections
            },
        ];
        if let (Some(size), Some(window)) = (self.size, self.window) {
            load.push(format!("{size}-byte blocks, {window} bytes in flight"));
        }
        load.push(match self.threads {
            1 => "1 thread".to_owned(),
            n => format!("{n} threads"),
        });
        if !idle {
            load.push(match self.rate {
                Some(rate) => format!("open loop at {rate}/s"),
                None => "closed loop".to_owned(),
            });
        }
        if let Some(count) = self.count {
            load.push(format!("stopping at {count} operations"));
        }
        load.join(", ")
    }
}

/// Seconds as a duration in humantime's words (`1s`, `300ms`), to the microsecond.
fn seconds_text(seconds: f64) -> String {
    let micros = (seconds.max(0.0) * 1e6).round() as u64;
    humantime::format_duration(Duration::from_micros(micros)).to_string()
}

/// The result of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The endpoint under test.
    pub endpoint: String,
    /// `greeting`, `echo` or `idle`.
    pub mode: String,
    /// How the run was configured.
    pub config: Setup,
    /// The measured span (warm-up excluded).
    pub seconds: f64,
    /// Operations completed: connections (greeting), round trips (echo), requests (UDP).
    pub completed: u64,
    /// Completed per second.
    pub rate_per_s: f64,
    /// Payload throughput (10⁶ bytes per second), echo mode.
    pub mb_per_s: f64,
    /// Payload bytes moved in the measured span (echo: sent and verified back), echo mode.
    pub bytes: u64,
    /// Latency percentiles of completed operations.
    pub latency_ms: Latency,
    /// Failures by errno name (`ECONNREFUSED`, `EMFILE`), or by a word where the failure
    /// had no errno (`timeout`, `wrong-bytes`, `tls`, `eof`, `other`); only those that
    /// happened.
    pub errors: BTreeMap<String, u64>,
    /// Open loop: arrivals that fell due in the measured span and never started in it (every
    /// one of `-c` was busy: the server could not keep up with the rate); `None` for a
    /// closed loop.
    #[serde(default)]
    pub not_started: Option<u64>,
    /// Idle mode: connections the server still held at the end.
    pub held: Option<u64>,
    /// Idle mode: what holding them cost in memory.
    pub memory: Option<HeldMemory>,
    /// Width of one timeline bucket, in seconds.
    pub interval_s: f64,
    /// Completed per second, bucket by bucket.
    pub rate_timeline: Vec<f64>,
}

impl Report {
    /// Failed operations, all kinds.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The run's configuration in words (`5s, mode echo, 64 connections, …`), as the
    /// picture's title shows it.
    pub fn configuration(&self) -> String {
        format!(
            "{}, {}",
            self.config.duration_text(),
            self.config.load(&self.mode)
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {} for {:.3}s",
            self.mode, self.endpoint, self.seconds
        )?;
        if let Some(held) = self.held {
            // Idle mode holds connections; a rate of operations means nothing there.
            writeln!(f, "  held        {held:>12} connections")?;
            if let Some(memory) = &self.memory {
                write!(f, "{memory}")?;
            }
        } else {
            writeln!(f, "  completed   {:>12}", self.completed)?;
            writeln!(f, "  rate        {:>12.1} /s", self.rate_per_s)?;
        }
        if self.bytes > 0 {
            writeln!(f, "  throughput  {:>12.2} MB/s", self.mb_per_s)?;
            writeln!(f, "  bytes       {:>12}", self.bytes)?;
        }
        let l = &self.latency_ms;
        if self.completed == 0 && self.held.is_none() {
            // No sample: zeros would read as an instant server (the JSON keeps its shape).
            writeln!(f, "  latency ms  none: nothing completed")?;
        } else {
            writeln!(
                f,
                "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                l.p50, l.p90, l.p99, l.p999, l.max
            )?;
        }
        if let Some(missed) = self.not_started.filter(|&n| n > 0) {
            writeln!(
                f,
                "  not started {missed:>12}  (due at the rate, but every connection was busy)"
            )?;
        }
        if self.errors.is_empty() {
            writeln!(f, "  errors      {:>12}", 0)
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(
                f,
                "  errors      {:>12}  ({})",
                self.failed(),
                list.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_they_were_given() {
        assert_eq!(seconds_text(0.3), "300ms");
        assert_eq!(seconds_text(5.0), "5s");
        assert_eq!(seconds_text(0.0), "0s");
        assert_eq!(seconds_text(1.5), "1s 500ms");
    }
}
